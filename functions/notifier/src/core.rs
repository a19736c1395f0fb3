//! What the notifier's two paths share: their dependencies and errors, the one-announcement-
//! per-state helper (claim in the ledger, post, record), the post to Slack, the app's webhook,
//! and the ledger lookups. CodeDeploy's path (`handler`) and native ECS's (`native`) are
//! siblings over it; neither imports the other's internals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::aws::ecs::ServiceReads;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseRecord};
use greenlight_shared::secrets::{Secret, SecretError, SecretReader, SecretRef};
use greenlight_shared::slack::{SlackError, SlackPoster};
use greenlight_shared::{AppConfig, Config};
use serde::Serialize;
use tracing::{info, warn};

use crate::message::{self, Notice};

/// Time kept back from the invocation's deadline when posting, so a failure is reported by
/// this invocation rather than cut off by Lambda.
const SLACK_DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// An event older than this has been through Lambda's retries (the stack allows two, about a
/// minute and two minutes after the first attempt): if CodeDeploy still cannot be read, the
/// state is announced without details rather than not at all.
pub const LAST_ATTEMPT_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Where webhook URLs come from (Secrets Manager, SSM, or the environment for local runs).
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError>;
}

#[async_trait]
impl SecretSource for SecretReader {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        SecretReader::read(self, r).await
    }
}

/// Webhook URLs already read during this cold start, by secret reference.
#[derive(Default)]
pub struct WebhookCache(tokio::sync::Mutex<HashMap<String, Secret>>);

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    /// Native blue/green deployments are read from ECS.
    pub ecs: Arc<dyn ServiceReads>,
    /// The release ledger; without it messages carry only what CodeDeploy says.
    pub ledger: Option<Arc<dyn Ledger>>,
    pub secrets: Arc<dyn SecretSource>,
    pub slack: SlackPoster,
    /// The webhook of apps whose config names none (`GREENLIGHT_SLACK_WEBHOOK`).
    pub default_webhook: Option<SecretRef>,
    /// The region this function runs in, for console links when the event names none.
    pub region: String,
    pub webhooks: WebhookCache,
}

impl greenlight_shared::startup::UsesConfig for Deps {
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("malformed state-change event: {0}")]
    MalformedEvent(String),
    #[error(
        "no Slack webhook for app `{app}`: set `slack.webhook` for it (or in [slack]) in the config, or GREENLIGHT_SLACK_WEBHOOK"
    )]
    NoWebhook { app: String },
    #[error("Slack webhook of app `{app}` {problem}")]
    BadWebhookReference { app: String, problem: String },
    #[error(transparent)]
    WebhookUnreadable(#[from] SecretError),
    #[error("the {state} message of app `{app}` was not posted: {source}")]
    SlackRejected {
        app: String,
        state: String,
        #[source]
        source: SlackError,
    },
    #[error("deployment {deployment_id} of app `{app}` cannot be read, so its {state} message would not be reliable; retried: {source}")]
    DeploymentUnreadable {
        app: String,
        deployment_id: String,
        state: String,
        #[source]
        source: Box<greenlight_shared::AwsError>,
    },
    #[error(
        "the deployments of ECS service {cluster}/{service} cannot be read; retried: {source}"
    )]
    ServiceUnreadable {
        cluster: String,
        service: String,
        #[source]
        source: Box<greenlight_shared::AwsError>,
    },
    #[error("ECS says a deployment of service {cluster}/{service} ended, but it still reads as running; retried")]
    NotEndedYet { cluster: String, service: String },
    #[error("the {state} message of app `{app}` was not posted: {source}")]
    SlackGaveUp {
        app: String,
        state: String,
        #[source]
        source: SlackError,
    },
}

impl NotifyError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedEvent(_) => "MalformedEvent",
            Self::NoWebhook { .. } => "NoSlackWebhook",
            Self::BadWebhookReference { .. } => "BadSlackWebhookReference",
            Self::WebhookUnreadable(_) => "SlackWebhookUnreadable",
            Self::SlackRejected { .. } => "SlackRejected",
            Self::SlackGaveUp { .. } => "SlackUnavailable",
            Self::DeploymentUnreadable { .. } | Self::ServiceUnreadable { .. } => {
                "DeploymentUnreadable"
            }
            Self::NotEndedYet { .. } => "DeploymentNotEndedYet",
        }
    }
}

impl From<NotifyError> for lambda_runtime::Diagnostic {
    fn from(e: NotifyError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What the notifier did with an event (also the invocation's response payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Notified {
    Ignored {
        reason: String,
    },
    Posted {
        app: String,
        state: String,
        headline: String,
        attempts: u32,
    },
}

/// Announces one state of a deployment at most once (EventBridge delivers at least once):
/// claims it in the ledger, runs `post`, then marks it posted, or gives the claim back when the
/// post failed so that the retried event posts it. `Ok(None)`: announced already (`post` did not
/// run). Without a reachable ledger, a possible duplicate message beats a lost one.
pub(crate) async fn once(
    deps: &Deps,
    app: &str,
    deployment_id: &str,
    state: &str,
    invocation: &Invocation,
    post: impl std::future::Future<Output = Result<Notified, NotifyError>>,
) -> Result<Option<Notified>, NotifyError> {
    let claimed = match &deps.ledger {
        Some(ledger) => match ledger
            .claim_notice(deployment_id, state, &notice_lease(invocation))
            .await
        {
            Ok(true) => true,
            Ok(false) => return Ok(None),
            Err(e) => {
                warn!(app = %app, deployment_id = %deployment_id, error = %e, "announcing without de-duplication");
                false
            }
        },
        None => false,
    };
    let result = post.await;
    if let (true, Some(ledger)) = (claimed, &deps.ledger) {
        let recorded = match &result {
            Ok(_) => ledger.notice_posted(deployment_id, state).await,
            Err(_) => ledger.release_notice(deployment_id, state).await,
        };
        if let Err(e) = recorded {
            warn!(app = %app, deployment_id = %deployment_id, error = %e, "could not record the announcement");
        }
    }
    result.map(Some)
}

/// The announcement's claim lasts as long as this invocation (and 2 s): a retry after a crash
/// (same request id) or after the deadline can always claim it again.
fn notice_lease(invocation: &Invocation) -> greenlight_shared::queue::Lease {
    greenlight_shared::queue::Lease {
        owner: invocation.request_id.clone(),
        until_ms: invocation.deadline_ms as i64 + 2_000,
        now_ms: Utc::now().timestamp_millis(),
    }
}

/// Posts the message of a notice to the app's webhook.
pub(crate) async fn post_notice(
    deps: &Deps,
    app: &AppConfig,
    webhook: &Secret,
    notice: &Notice,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let (deployment_id, state) = (notice.deployment_id.as_str(), notice.state.as_str());
    if notice.is_outside() && !app.slack.announce_outside {
        info!(app = %app.name, deployment_id = %deployment_id, state = %state,
              "not announced: a deployment outside Greenlight (apps.<app>.slack.announce_outside = false)");
        return Ok(Notified::Ignored {
            reason: format!("deployment {deployment_id} was not started by Greenlight"),
        });
    }
    let message = message::build(notice);
    let deadline = invocation.deadline_minus(SLACK_DEADLINE_MARGIN);
    let attempts = match deps.slack.post(webhook, &message.payload, deadline).await {
        Ok(attempts) => attempts,
        Err(source) => {
            warn!(app = %app.name, deployment_id = %deployment_id, state = %state, error = %source, "Slack post failed");
            let (app, state) = (app.name.clone(), state.to_string());
            return Err(match source {
                SlackError::Rejected { .. } => NotifyError::SlackRejected { app, state, source },
                SlackError::GaveUp { .. } => NotifyError::SlackGaveUp { app, state, source },
            });
        }
    };
    info!(app = %app.name, deployment_id = %deployment_id, state = %state, attempts = attempts,
          version = notice.version.as_deref().unwrap_or(""), "posted to Slack");
    Ok(Notified::Posted {
        app: app.name.clone(),
        state: state.to_string(),
        headline: message.headline,
        attempts,
    })
}

/// The app's webhook URL, read once per cold start. Neither the URL nor the secret appears
/// in a log line or an error.
pub(crate) async fn webhook_for(deps: &Deps, app: &AppConfig) -> Result<Secret, NotifyError> {
    let reference = match &app.slack.webhook {
        Some(text) => {
            SecretRef::parse(text).map_err(|problem| NotifyError::BadWebhookReference {
                app: app.name.clone(),
                problem,
            })?
        }
        None => deps
            .default_webhook
            .clone()
            .ok_or_else(|| NotifyError::NoWebhook {
                app: app.name.clone(),
            })?,
    };
    let key = reference.to_string();
    let mut cache = deps.webhooks.0.lock().await;
    if let Some(secret) = cache.get(&key) {
        return Ok(secret.clone());
    }
    let secret = deps.secrets.read(&reference).await?;
    info!(app = %app.name, webhook_ref = %key, "Slack webhook read (reference only, never the value)");
    cache.insert(key, secret.clone());
    Ok(secret)
}

/// The release production serves now: the last that succeeded, other than `not`.
pub(crate) async fn last_good(
    ledger: &dyn Ledger,
    app: &AppConfig,
    not: Option<&str>,
) -> Option<ReleaseRecord> {
    match ledger.last_succeeded(&app.name).await {
        Ok(record) => record.filter(|r| Some(r.digest.as_str()) != not),
        Err(e) => {
            warn!(app = %app.name, error = %e, "cannot read the last good release from the ledger");
            None
        }
    }
}

pub(crate) async fn release_record(
    ledger: &dyn Ledger,
    app: &AppConfig,
    digest: &str,
) -> Option<ReleaseRecord> {
    match ledger.release(&app.name, digest).await {
        Ok(record) => record,
        Err(e) => {
            warn!(app = %app.name, digest = %digest, error = %e, "cannot read the release from the ledger");
            None
        }
    }
}
