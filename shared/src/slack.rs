//! Posting to Slack, with bounded retries inside the invocation's deadline: to an incoming
//! webhook ([`SlackPoster`]), or as a Slack app through the Web API ([`SlackApp`]: one message
//! per release, edited in place, details in its thread).
//!
//! 429 is retried after its Retry-After; 5xx and connection failures with exponential backoff.
//! Any other 4xx is a clear error at once (retrying a bad payload cannot help). When Slack
//! stays down past the deadline, the error fails the invocation so Lambda's retry and the
//! on-failure destination keep the event. The webhook URL never appears in an error or log.

use std::time::Duration;

use tokio::time::Instant;

use crate::http::{Http, Request};
use crate::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack refused the message: HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("Slack still failing after {attempts} attempts before the deadline: {last}")]
    GaveUp { attempts: u32, last: String },
}

#[derive(Debug, Clone)]
pub struct SlackPoster {
    http: Http,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl SlackPoster {
    pub fn new(http: Http) -> Self {
        Self {
            http,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }

    /// Shorter backoffs, for tests.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// Posts `payload`; returns the number of attempts it took.
    pub async fn post(
        &self,
        webhook: &Secret,
        payload: &serde_json::Value,
        deadline: Instant,
    ) -> Result<u32, SlackError> {
        let mut backoff = self.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let request = Request::post_json(webhook.expose(), payload);
            let (wait, last) = match self
                .http
                .send(request, remaining.min(Duration::from_secs(10)))
                .await
            {
                Ok(resp) if resp.is_success() => return Ok(attempts),
                Ok(resp) if resp.status == 429 => (
                    resp.retry_after.unwrap_or(backoff),
                    "HTTP 429 rate limited".to_string(),
                ),
                Ok(resp) if resp.is_server_error() => (backoff, format!("HTTP {}", resp.status)),
                Ok(resp) => {
                    return Err(SlackError::Rejected {
                        status: resp.status,
                        body: resp.text(200),
                    })
                }
                Err(e) => (backoff, e.to_string()),
            };
            if Instant::now() + wait >= deadline {
                return Err(SlackError::GaveUp { attempts, last });
            }
            tracing::warn!(attempt = attempts, retry_in_ms = wait.as_millis() as u64, reason = %last, "Slack post failed, retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// Why a Slack Web API call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SlackApiError {
    /// The token, the channel or the app's scopes are wrong (`invalid_auth`,
    /// `channel_not_found`, `not_in_channel`, …): only a change of config or of the Slack app
    /// helps. Carries Slack's error code, never the token.
    #[error("Slack refused the app: {error}")]
    Setup { error: String },
    /// The message to edit is gone (deleted in Slack).
    #[error("the Slack message is gone (message_not_found)")]
    MessageNotFound,
    /// Any other refusal of this call (a payload Slack does not take).
    #[error("Slack refused {method}: {error}")]
    Rejected { method: &'static str, error: String },
    /// Rate limited, failing or unreachable until the deadline.
    #[error("Slack still failing after {attempts} attempts before the deadline: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// Slack's error codes that only a change of the config or of the Slack app can fix.
const SETUP_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "missing_scope",
    "no_permission",
    "restricted_action",
    "ekm_access_denied",
];

/// A message posted: where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

/// The Slack Web API as a Slack app uses it to keep one message per release: post, edit, and
/// reply in its thread. Retries as [`SlackPoster`] does (429 after Retry-After, the
/// `ratelimited` error likewise, 5xx and connection failures with backoff) inside the deadline.
#[derive(Debug, Clone)]
pub struct SlackApp {
    http: Http,
    /// `https://slack.com/api` (another base only for local runs and tests).
    base: String,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl SlackApp {
    pub fn new(http: Http, base: impl Into<String>) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_string(),
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }

    /// Shorter backoffs, for tests.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// Posts a message (in a thread with `thread_ts`; also to the channel with `broadcast`).
    pub async fn post(
        &self,
        token: &Secret,
        channel: &str,
        message: &serde_json::Value,
        thread: Option<(&str, bool)>,
        deadline: Instant,
    ) -> Result<Posted, SlackApiError> {
        let mut body = message.clone();
        body["channel"] = channel.into();
        if let Some((ts, broadcast)) = thread {
            body["thread_ts"] = ts.into();
            if broadcast {
                body["reply_broadcast"] = true.into();
            }
        }
        let answer = self
            .call(token, "chat.postMessage", Body::Json(&body), deadline)
            .await?;
        match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(channel), Some(ts)) => Ok(Posted {
                channel: channel.to_string(),
                ts: ts.to_string(),
            }),
            _ => Err(SlackApiError::Rejected {
                method: "chat.postMessage",
                error: "the answer names no channel and ts".into(),
            }),
        }
    }

    /// Replaces the text of the message at `ts` (the same edit twice is the same message).
    pub async fn update(
        &self,
        token: &Secret,
        channel: &str,
        ts: &str,
        message: &serde_json::Value,
        deadline: Instant,
    ) -> Result<(), SlackApiError> {
        let mut body = message.clone();
        body["channel"] = channel.into();
        body["ts"] = ts.into();
        self.call(token, "chat.update", Body::Json(&body), deadline)
            .await
            .map(drop)
    }

    /// The message's permalink, for people (the command's status and history).
    pub async fn permalink(
        &self,
        token: &Secret,
        channel: &str,
        ts: &str,
        deadline: Instant,
    ) -> Result<String, SlackApiError> {
        // A read method: a form body, as Slack takes it.
        let form = [("channel", channel), ("message_ts", ts)];
        let answer = self
            .call(token, "chat.getPermalink", Body::Form(&form), deadline)
            .await?;
        answer["permalink"]
            .as_str()
            .filter(|p| p.starts_with("https://"))
            .map(str::to_string)
            .ok_or_else(|| SlackApiError::Rejected {
                method: "chat.getPermalink",
                error: "the answer names no https permalink".into(),
            })
    }

    /// The members of a user group (`usergroups.users.list`, scope `usergroups:read`): who an
    /// approver group names.
    pub async fn group_members(
        &self,
        token: &Secret,
        group: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, SlackApiError> {
        let form = [("usergroup", group)];
        let answer = self
            .call(token, "usergroups.users.list", Body::Form(&form), deadline)
            .await?;
        Ok(answer["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect())
    }

    /// One Web API method, retried while Slack is busy or failing and time remains.
    async fn call(
        &self,
        token: &Secret,
        method: &'static str,
        body: Body<'_>,
        deadline: Instant,
    ) -> Result<serde_json::Value, SlackApiError> {
        let url = format!("{}/{method}", self.base);
        let mut backoff = self.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let request = match body {
                Body::Json(json) => Request::post_json(&url, json),
                Body::Form(form) => Request::post_form(&url, form),
            }
            .bearer(token.expose());
            let sent = self
                .http
                .send(request, remaining.min(Duration::from_secs(10)))
                .await;
            let (wait, last) = match sent {
                Ok(resp) if resp.status == 429 => (
                    resp.retry_after.unwrap_or(backoff),
                    "HTTP 429 rate limited".to_string(),
                ),
                Ok(resp) if resp.is_server_error() => (backoff, format!("HTTP {}", resp.status)),
                Ok(resp) => {
                    let status = resp.status;
                    let after = resp.retry_after;
                    let answer = resp.json();
                    if answer["ok"] == true {
                        return Ok(answer);
                    }
                    let error = answer["error"]
                        .as_str()
                        .map(|e| e.chars().take(80).collect::<String>())
                        .unwrap_or_else(|| format!("HTTP {status} without an answer"));
                    match error.as_str() {
                        "ratelimited"
                        | "internal_error"
                        | "fatal_error"
                        | "service_unavailable"
                        | "request_timeout" => (after.unwrap_or(backoff), error),
                        // The message, or the thread's parent, was deleted.
                        "message_not_found" | "thread_not_found" => {
                            return Err(SlackApiError::MessageNotFound)
                        }
                        e if SETUP_ERRORS.contains(&e) => {
                            return Err(SlackApiError::Setup { error })
                        }
                        _ => return Err(SlackApiError::Rejected { method, error }),
                    }
                }
                Err(e) => (backoff, e.to_string()),
            };
            if Instant::now() + wait >= deadline {
                return Err(SlackApiError::GaveUp { attempts, last });
            }
            tracing::warn!(method, attempt = attempts, retry_in_ms = wait.as_millis() as u64, reason = %last, "Slack call failed, retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// A Web API request body: JSON for the write methods, a form for the read ones.
#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a serde_json::Value),
    Form(&'a [(&'a str, &'a str)]),
}
