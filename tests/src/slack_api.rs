//! A Slack Web API stand-in on 127.0.0.1: `chat.postMessage`, `chat.update` and
//! `chat.getPermalink` (a form body, as Slack's read methods take) in Slack's
//! documented request and answer shapes (JSON bodies, `Authorization: Bearer`, answers
//! `{"ok": true, "channel", "ts", "message"}` or `{"ok": false, "error"}` with HTTP 200; 429
//! with `Retry-After` when rate limited). It checks the token and the channel as Slack does
//! (`invalid_auth`, `channel_not_found`), keeps every message's current text and attachments
//! and each thread's replies, and can be scripted to fail: HTTP 429 or 500, an `ok: false`
//! error, or an answer lost after Slack acted (the call is done, the client sees a 502).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// One scripted answer, used by the next call of its method (or any method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackFault {
    /// HTTP 429 with `Retry-After: 1`.
    RateLimited,
    /// HTTP 500.
    ServerError,
    /// `{"ok": false, "error": …}` (`ratelimited`, `message_not_found`, `not_in_channel`, …).
    Error(String),
    /// The call is done, and its answer lost (HTTP 502 to the client).
    LostAfterActing,
    /// A person deleted the message the call names (its `ts` or `thread_ts`) just before.
    Deleted,
}

/// A message as the channel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    pub ts: String,
    pub text: String,
    pub attachments: Value,
    /// Replies in its thread, oldest first: (text, also sent to the channel).
    pub replies: Vec<(String, bool)>,
    /// How many times it was edited.
    pub edits: u32,
    /// Its text when it was posted.
    pub posted_as: String,
}

#[derive(Default)]
struct Workspace {
    token: String,
    channels: Vec<String>,
    messages: Vec<(String, ChannelMessage)>,
    next_ts: u64,
    script: VecDeque<(Option<String>, SlackFault)>,
    calls: Vec<String>,
    /// Slack is down: every call answers HTTP 503.
    down: bool,
    /// Faults for the calls with these numbers (the first call is 1).
    at_call: Vec<(usize, SlackFault)>,
    /// User groups (`S…`) and their members, for `usergroups.users.list`.
    groups: std::collections::HashMap<String, Vec<String>>,
    /// What the app answered people through a click's `response_url` (only they see it).
    ephemeral: Vec<String>,
}

#[derive(Clone)]
pub struct SlackApiStandIn {
    /// The API base (`…/api`), as `GREENLIGHT_SLACK_API_URL` takes it.
    pub base: String,
    workspace: Arc<Mutex<Workspace>>,
}

impl SlackApiStandIn {
    /// A workspace where `token` may post to `channels`.
    pub async fn start(token: &str, channels: &[&str]) -> Self {
        let workspace = Arc::new(Mutex::new(Workspace {
            token: token.to_string(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            next_ts: 1_764_900_000_000_100,
            ..Workspace::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Slack API stand-in");
        let base = format!("http://{}/api", listener.local_addr().expect("address"));
        let app = Router::new()
            .route("/api/{method}", post(serve))
            .route("/actions/{team}/{id}/{token}", post(respond))
            .with_state(workspace.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, workspace }
    }

    /// The next call of `method` (any method when `None`) answers with `fault`.
    pub fn fail_next(&self, method: Option<&str>, fault: SlackFault) {
        self.workspace
            .lock()
            .unwrap()
            .script
            .push_back((method.map(str::to_string), fault));
    }

    /// The `n`th call from now on (1: the next) answers with `fault`.
    pub fn fail_call(&self, n: usize, fault: SlackFault) {
        let mut w = self.workspace.lock().unwrap();
        let at = w.calls.len() + n;
        w.at_call.push((at, fault));
    }

    /// The root a click's `response_url` is under (`GREENLIGHT_SLACK_RESPONSE_BASE`).
    pub fn response_base(&self) -> String {
        self.base.trim_end_matches("api").to_string()
    }

    /// What the app answered people who clicked, oldest first.
    pub fn ephemeral(&self) -> Vec<String> {
        self.workspace.lock().unwrap().ephemeral.clone()
    }

    /// A person clicks the button `action_id` of the channel's message whose text contains
    /// `subject`: the request Slack sends to the app's Interactivity URL (a form-encoded
    /// `payload` of type `block_actions`, signed with `signing_secret` as Slack signs), as
    /// (headers, body); `None` when no such message has that button.
    pub fn click(
        &self,
        channel: &str,
        subject: &str,
        action_id: &str,
        user: &str,
        signing_secret: &str,
    ) -> Option<(Vec<(String, String)>, String)> {
        let message = self
            .channel(channel)
            .into_iter()
            .rev()
            .find(|m| m.text.contains(subject))?;
        let button = message.attachments[0]["blocks"]
            .as_array()?
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action_id"] == action_id)?;
        let now = chrono::Utc::now();
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0LOCAL"},
            "api_app_id": "A0GREENLIGHT",
            "team": {"id": "T0LOCAL", "domain": "greenlight-local"},
            "container": {"type": "message", "message_ts": message.ts, "channel_id": channel},
            "channel": {"id": channel, "name": "deploys"},
            "message": {"type": "message", "ts": message.ts, "text": message.text},
            "trigger_id": format!("{}.1.local", now.timestamp_millis()),
            "response_url": format!("{}actions/T0LOCAL/{}/local", self.response_base(), now.timestamp_millis()),
            "actions": [{
                "type": "button",
                "action_id": action_id,
                "block_id": "greenlight_approval",
                "value": button["value"],
                "action_ts": format!("{}.000100", now.timestamp()),
            }],
        });
        let body = format!(
            "payload={}",
            form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
        );
        let ts = now.timestamp().to_string();
        let signature =
            greenlight_approver::signature::sign(signing_secret.as_bytes(), &ts, body.as_bytes());
        Some((
            vec![
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("x-slack-request-timestamp".into(), ts),
                ("x-slack-signature".into(), signature),
            ],
            body,
        ))
    }

    /// A user group and its members.
    pub fn set_group(&self, group: &str, members: &[&str]) {
        self.workspace.lock().unwrap().groups.insert(
            group.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// Slack goes down (every call answers HTTP 503) or comes back.
    pub fn set_down(&self, down: bool) {
        self.workspace.lock().unwrap().down = down;
    }

    /// Deletes a message, as a person can in Slack.
    pub fn delete(&self, ts: &str) {
        self.workspace
            .lock()
            .unwrap()
            .messages
            .retain(|(_, m)| m.ts != ts);
    }

    /// The channel's messages, oldest first, each with its thread.
    pub fn channel(&self, channel: &str) -> Vec<ChannelMessage> {
        let workspace = self.workspace.lock().unwrap();
        workspace
            .messages
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every method called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.workspace.lock().unwrap().calls.clone()
    }

    /// The channel as a person reads it: each message's text, then its thread indented.
    pub fn render(&self, channel: &str) -> String {
        let mut out = String::new();
        for m in self.channel(channel) {
            out += &format!("{}\n", m.text);
            for (reply, broadcast) in &m.replies {
                let also = if *broadcast {
                    " (also sent to the channel)"
                } else {
                    ""
                };
                out += &format!("    ↳ {}{also}\n", reply.replace('\n', "\n      "));
            }
        }
        out
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

/// A `response_url`: what the app tells the person who clicked (ephemeral).
async fn respond(
    State(workspace): State<Arc<Mutex<Workspace>>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let text = body["text"].as_str().unwrap_or_default().to_string();
    workspace.lock().unwrap().ephemeral.push(text);
    ok(json!({"ok": true}))
}

fn refused(error: &str) -> Response {
    ok(json!({"ok": false, "error": error}))
}

async fn serve(
    State(workspace): State<Arc<Mutex<Workspace>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    // Write methods take JSON; read methods (chat.getPermalink) a form.
    let body: Value = serde_json::from_slice(&raw).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(&raw);
        let pairs = text.split('&').filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), Value::String(v.replace("%2E", "."))))
        });
        Value::Object(pairs.collect())
    });
    let mut w = workspace.lock().unwrap();
    w.calls.push(method.clone());
    if w.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let scripted = w
        .script
        .iter()
        .position(|(m, _)| m.as_deref().is_none_or(|m| m == method));
    let numbered = w.calls.len();
    let fault = match w.at_call.iter().position(|(n, _)| *n == numbered) {
        Some(i) => Some(w.at_call.remove(i).1),
        None => scripted.and_then(|i| w.script.remove(i)).map(|(_, f)| f),
    };
    match &fault {
        Some(SlackFault::RateLimited) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "rate limited",
            )
                .into_response()
        }
        Some(SlackFault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()
        }
        Some(SlackFault::Error(e)) => return refused(e),
        Some(SlackFault::Deleted) => {
            let named = body["ts"].as_str().or(body["thread_ts"].as_str());
            if let Some(ts) = named.map(str::to_string) {
                w.messages.retain(|(_, m)| m.ts != ts);
            }
        }
        _ => {}
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(w.token.as_str()) {
        return refused("invalid_auth");
    }
    if method == "usergroups.users.list" {
        let group = body["usergroup"].as_str().unwrap_or_default();
        return match w.groups.get(group) {
            Some(users) => ok(json!({"ok": true, "users": users})),
            None => refused("no_such_subteam"),
        };
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_string();
    if !w.channels.contains(&channel) {
        return refused("channel_not_found");
    }
    let text = body["text"].as_str().unwrap_or_default().to_string();
    let answer = match method.as_str() {
        "chat.postMessage" => {
            w.next_ts += 100;
            let ts = format!("{}.{:06}", w.next_ts / 1_000_000, w.next_ts % 1_000_000);
            match body["thread_ts"].as_str() {
                Some(parent) => {
                    let broadcast = body["reply_broadcast"] == true;
                    match w.messages.iter_mut().find(|(_, m)| m.ts == parent) {
                        Some((_, m)) => m.replies.push((text.clone(), broadcast)),
                        None => return refused("thread_not_found"),
                    }
                }
                None => {
                    let message = ChannelMessage {
                        ts: ts.clone(),
                        text: text.clone(),
                        attachments: body["attachments"].clone(),
                        replies: vec![],
                        edits: 0,
                        posted_as: text.clone(),
                    };
                    w.messages.push((channel.clone(), message));
                }
            }
            json!({"ok": true, "channel": channel, "ts": ts, "message": {"type": "message", "text": text, "ts": ts}})
        }
        "chat.update" => {
            let ts = body["ts"].as_str().unwrap_or_default().to_string();
            match w
                .messages
                .iter_mut()
                .find(|(c, m)| *c == channel && m.ts == ts)
            {
                Some((_, m)) => {
                    m.text = text.clone();
                    m.attachments = body["attachments"].clone();
                    m.edits += 1;
                }
                None => return refused("message_not_found"),
            }
            json!({"ok": true, "channel": channel, "ts": ts, "text": text})
        }
        "chat.getPermalink" => {
            let ts = body["message_ts"].as_str().unwrap_or_default().to_string();
            if !w.messages.iter().any(|(c, m)| *c == channel && m.ts == ts) {
                return refused("message_not_found");
            }
            let permalink = format!(
                "https://greenlight-local.slack.com/archives/{channel}/p{}",
                ts.replace('.', "")
            );
            json!({"ok": true, "channel": channel, "permalink": permalink})
        }
        _ => return refused("unknown_method"),
    };
    if fault == Some(SlackFault::LostAfterActing) {
        return (StatusCode::BAD_GATEWAY, "connection reset").into_response();
    }
    ok(answer)
}
