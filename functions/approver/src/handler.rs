//! One request to the approval endpoint: verified, then read, then decided.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use greenlight_shared::approval::{
    decide, person, Binding, Choice, Decided, DecisionRequest, EngineGates,
};
use greenlight_shared::http::{Http, Request};
use greenlight_shared::ledger::Ledger;
use greenlight_shared::secrets::{Secret, SecretCache, SecretRef, SecretSource};
use greenlight_shared::slack::SlackApp;
use greenlight_shared::{AppConfig, Config};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::interaction::{click_of, Click};
use crate::signature::{screen, verify};

/// Slack wants an answer within 3 s; the group lookup gets part of it.
const SLACK_LOOKUP_BUDGET: Duration = Duration::from_millis(1200);

/// Answers a person in Slack (the click's `response_url`, only to you).
#[async_trait]
pub trait Responder: Send + Sync {
    async fn say(&self, response_url: &str, text: &str);
}

/// Posts to Slack's `response_url` (best effort: the decision stands either way).
pub struct SlackResponder(pub Http);

#[async_trait]
impl Responder for SlackResponder {
    async fn say(&self, response_url: &str, text: &str) {
        let body = serde_json::json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": text,
        });
        let sent = self
            .0
            .send(
                Request::post_json(response_url, &body),
                Duration::from_secs(2),
            )
            .await;
        match sent {
            Ok(answer) if answer.is_success() => {}
            Ok(answer) => {
                warn!(
                    status = answer.status,
                    "could not answer the person who clicked"
                )
            }
            Err(e) => warn!(error = %e, "could not answer the person who clicked"),
        }
    }
}

pub struct Deps {
    pub config: Config,
    pub ledger: Option<Arc<dyn Ledger>>,
    /// ECS's pause hooks and CodeDeploy's wait before rerouting.
    pub gates: EngineGates,
    pub secrets: Arc<dyn SecretSource>,
    /// Where the signing secret is (`GREENLIGHT_SLACK_SIGNING_SECRET`, a reference).
    pub signing_secret: SecretRef,
    pub slack_app: SlackApp,
    pub responder: Arc<dyn Responder>,
    /// Only answers under this base are posted (`https://hooks.slack.com/`).
    pub response_base: String,
    /// Secrets read during this cold start, by reference.
    pub cache: SecretCache,
}

impl greenlight_shared::startup::UsesConfig for Deps {
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// The request as the function URL hands it over.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    fn status(status: u16) -> Self {
        Self {
            status,
            body: String::new(),
        }
    }
}

/// A function URL's request (API Gateway's payload format 2.0): header names lower-cased, the
/// body decoded when base64. Nothing else of it is read; anything else is an empty request,
/// which the signature check refuses.
pub fn request_of(payload: &serde_json::Value) -> HttpRequest {
    use base64::Engine;
    let headers: HashMap<String, String> = payload["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
        .collect();
    let text = payload["body"].as_str().unwrap_or_default();
    let body = if payload["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default()
    } else {
        text.as_bytes().to_vec()
    };
    HttpRequest { headers, body }
}

/// What the person who clicked is told, and the log's word for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: &'static str,
    pub text: String,
}

/// Verifies, reads and decides one request; Slack gets 200 for every verified request (the
/// person is told the outcome), 401 for anything unverified, 400 for a verified body that is
/// not an interaction.
pub async fn handle(deps: &Deps, request: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    let (timestamp, signature) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    );
    if let Err(refused) = screen(timestamp, signature, &request.body, now.timestamp()) {
        warn!(reason = %refused, bytes = request.body.len(), "request refused before it was read");
        return HttpResponse::status(401);
    }
    let secret = match read_secret(deps, &deps.signing_secret).await {
        Ok(secret) => secret,
        Err(e) => {
            warn!(error = %e, "the signing secret cannot be read: every request is refused");
            return HttpResponse::status(500);
        }
    };
    if let Err(refused) = verify(
        secret.expose().as_bytes(),
        timestamp,
        signature,
        &request.body,
        now.timestamp(),
    ) {
        warn!(reason = %refused, bytes = request.body.len(), "request refused before it was read");
        return HttpResponse::status(401);
    }
    let click = match click_of(&request.body) {
        Ok(Some(click)) => click,
        Ok(None) => {
            info!("ignored: a verified interaction that is not a button click");
            return HttpResponse::status(200);
        }
        Err(problem) => {
            warn!(problem = %problem, "a verified request that is not an interaction");
            return HttpResponse::status(400);
        }
    };
    let answer = answer(deps, &click, now).await;
    info!(user = %click.user, action = %click.action, outcome = answer.outcome, said = %answer.text, "click");
    match click
        .response_url
        .as_deref()
        .filter(|url| url.starts_with(&deps.response_base))
    {
        Some(url) => deps.responder.say(url, &answer.text).await,
        None => warn!("the click names no Slack response URL: the person is not told"),
    }
    HttpResponse::status(200)
}

/// Who may decide what, then the decision.
async fn answer(deps: &Deps, click: &Click, now: DateTime<Utc>) -> Answer {
    let refuse = |outcome, text: String| Answer { outcome, text };
    let choice = match click.action.as_str() {
        "approve" => Choice::Approve,
        "reject" => Choice::Reject,
        other => {
            let other: String = other.chars().take(40).collect();
            return refuse(
                "unknown_action",
                format!("`{other}` is not a Greenlight button."),
            );
        }
    };
    let Some(binding) = Binding::parse(&click.value) else {
        return refuse(
            "malformed",
            "This button carries no release: nothing changed.".into(),
        );
    };
    let Some(app) = deps
        .config
        .app_named(&binding.app)
        .filter(|a| a.approval.required)
    else {
        return refuse(
            "not_gated",
            format!(
                "No app named `{}` asks for approval: nothing changed.",
                short(&binding.app)
            ),
        );
    };
    if !may_decide(deps, app, &click.user).await {
        warn!(app = %app.name, user = %click.user, "refused: not an approver");
        return refuse(
            "not_an_approver",
            format!("You are not an approver of {}: nothing changed.", app.name),
        );
    }
    let Some(ledger) = deps.ledger.as_deref() else {
        return refuse(
            "no_ledger",
            "Greenlight has no ledger to decide in: nothing changed.".into(),
        );
    };
    let request = DecisionRequest {
        app: app.name.clone(),
        binding: Some(binding),
        expects: None,
        choice,
        by: format!("slack:{}", click.user),
        reason: None,
    };
    match decide(ledger, &deps.gates, &request, now).await {
        Ok(Decided::Applied { version, choice }) => Answer {
            outcome: choice.as_str(),
            text: match choice {
                Choice::Approve => format!(":white_check_mark: Approved: {} {version} takes production traffic.", app.name),
                Choice::Reject => format!(":leftwards_arrow_with_hook: Rolled back: {} {version} takes no production traffic.", app.name),
            },
        },
        Ok(Decided::AlreadyDecided { version, decision }) => refuse(
            "already_decided",
            format!(
                "Nothing changed: {} {version} was already {} by {} at {} UTC.",
                app.name,
                said(decision.choice),
                person(&decision.by),
                decision.at.format("%H:%M")
            ),
        ),
        Ok(Decided::Refused(why)) => refuse("refused", format!("Nothing changed: {why}.")),
        Err(e) => {
            warn!(app = %app.name, error = %e, "decision failed");
            refuse("failed", format!("Could not {} {}: {e}", click.action, app.name))
        }
    }
}

/// Whether the user is an approver of the app, by id or through a user group (asked of
/// Slack with the app's token; a lookup that fails refuses).
async fn may_decide(deps: &Deps, app: &AppConfig, user: &str) -> bool {
    if app.approval.allows(user, &[]) {
        return true;
    }
    if !app.approval.names_groups() {
        return false;
    }
    let Some(token) = app
        .slack
        .token
        .as_deref()
        .and_then(|t| SecretRef::parse(t).ok())
    else {
        return false;
    };
    let token = match read_secret(deps, &token).await {
        Ok(token) => token,
        Err(e) => {
            warn!(app = %app.name, error = %e, "cannot read the Slack app token to look up approver groups");
            return false;
        }
    };
    let deadline = Instant::now() + SLACK_LOOKUP_BUDGET;
    for group in app.approval.approvers.iter().filter(|a| a.starts_with('S')) {
        match deps.slack_app.group_members(&token, group, deadline).await {
            Ok(members) if members.iter().any(|m| m == user) => return true,
            Ok(_) => {}
            Err(e) => {
                warn!(app = %app.name, group = %group, error = %e, "cannot read an approver group")
            }
        }
    }
    false
}

async fn read_secret(
    deps: &Deps,
    reference: &SecretRef,
) -> Result<Secret, greenlight_shared::secrets::SecretError> {
    deps.cache.get(deps.secrets.as_ref(), reference).await
}

fn said(choice: Choice) -> &'static str {
    match choice {
        Choice::Approve => "approved",
        Choice::Reject => "rolled back",
    }
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}
