//! The notifier's work for one deployment state change: find the app, learn what CodeDeploy
//! and the ledger know about the deployment, build the message, deliver it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::codedeploy::CodeDeployEvent;
use chrono::{DateTime, Utc};
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::{CodeDeployApi, Deployment};
use greenlight_shared::aws::ecs::ServiceReads;
use greenlight_shared::events::EcsDeploymentEvent;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseRecord};
use greenlight_shared::secrets::{Secret, SecretError, SecretReader, SecretRef};
use greenlight_shared::slack::{SlackError, SlackPoster};
use greenlight_shared::{AppConfig, Config};
use serde::Serialize;
use tracing::{info, warn};

use crate::message::{self, Notice, Rollback, StartedBy, ROLLBACK_CREATOR};

/// The EventBridge detail type the notifier serves.
pub const DEPLOYMENT_STATE_CHANGE: &str = "CodeDeploy Deployment State-change Notification";

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

/// The fields of a state-change event the notifier keys on (empty when the event omits one).
struct StateChange<'e> {
    application: &'e str,
    group: &'e str,
    deployment_id: &'e str,
    state: &'e str,
}

impl<'e> StateChange<'e> {
    fn of(event: &'e CodeDeployEvent) -> Self {
        let d = &event.detail;
        Self {
            application: d.application.as_deref().unwrap_or(""),
            group: d.deployment_group.as_deref().unwrap_or(""),
            deployment_id: d.deployment_id.as_deref().unwrap_or(""),
            state: d.state.as_str(),
        }
    }
}

/// A deployment state change of either engine.
#[derive(Debug)]
pub enum NotifierEvent {
    CodeDeploy(CodeDeployEvent),
    /// A native blue/green deployment ("ECS Deployment State Change").
    ServiceDeployment(EcsDeploymentEvent),
}

/// Reads a deployment state-change event (by its source); anything else is a
/// `MalformedEvent` with a short reason.
pub fn parse_event(payload: serde_json::Value) -> Result<NotifierEvent, NotifyError> {
    let malformed = |e: serde_json::Error| {
        NotifyError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
    };
    if payload.get("source").and_then(|s| s.as_str()) == Some("aws.ecs") {
        return serde_json::from_value(payload)
            .map(NotifierEvent::ServiceDeployment)
            .map_err(malformed);
    }
    serde_json::from_value(payload)
        .map(NotifierEvent::CodeDeploy)
        .map_err(malformed)
}

/// Entry point: a state change of either engine becomes Slack messages.
pub async fn notify(
    deps: &Deps,
    event: NotifierEvent,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    match event {
        NotifierEvent::CodeDeploy(event) => handle(deps, event, invocation).await,
        NotifierEvent::ServiceDeployment(event) => {
            crate::native::handle_service_deployment(deps, &event, invocation).await
        }
    }
}

/// Entry point: one CodeDeploy deployment state change becomes one Slack message.
pub async fn handle(
    deps: &Deps,
    event: CodeDeployEvent,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let StateChange {
        application,
        group,
        deployment_id,
        state,
    } = StateChange::of(&event);

    // Until the event is known to be a managed app's, every field is shown clipped: any
    // application's events reach this function, and anyone allowed to invoke it can send any.
    let shown = |text: &str| {
        greenlight_shared::events::clipped(text, greenlight_shared::events::SHOWN_NAME_MAX)
    };
    if let Some(kind) = event
        .detail_type
        .as_deref()
        .filter(|k| *k != DEPLOYMENT_STATE_CHANGE)
    {
        let (kind, id) = (shown(kind), shown(deployment_id));
        info!(detail_type = %kind, deployment_id = %id, "ignored: not a deployment state change");
        return Ok(Notified::Ignored {
            reason: format!("`{kind}` is not a deployment state change"),
        });
    }
    let Some(app) = managing_app(&deps.config, application, group) else {
        let (application, group) = (shown(application), shown(group));
        info!(application = %application, deployment_group = %group, deployment_id = %shown(deployment_id), state = %shown(state),
              "ignored: deployment group not managed by Greenlight");
        return Ok(Notified::Ignored {
            reason: format!("deployment group {application}/{group} is not managed"),
        });
    };
    if !greenlight_shared::events::is_deployment_id(deployment_id) {
        let shown = greenlight_shared::events::clipped(deployment_id, 40);
        info!(app = %app.name, deployment_id = %shown, "ignored: not a CodeDeploy deployment id");
        return Ok(Notified::Ignored {
            reason: format!("`{shown}` is not a CodeDeploy deployment id"),
        });
    }

    let announced = once(deps, &app.name, deployment_id, state, invocation, async {
        announce(deps, &event, app, invocation).await
    })
    .await?;
    Ok(announced.unwrap_or_else(|| {
        info!(app = %app.name, deployment_id = %deployment_id, state = %state, "ignored: already announced");
        Notified::Ignored {
            reason: format!("{state} of {deployment_id} was already announced"),
        }
    }))
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

/// Builds the message of one state change and posts it.
async fn announce(
    deps: &Deps,
    event: &CodeDeployEvent,
    app: &AppConfig,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let detail = &event.detail;
    let StateChange {
        application,
        group,
        deployment_id,
        state,
    } = StateChange::of(event);
    let webhook = webhook_for(deps, app).await?;
    let configured_group = app.group.as_ref();

    let mut notice = Notice {
        app: app.name.clone(),
        environment: app.environment.clone(),
        scope: non_empty(application, configured_group.map_or("", |g| &g.application)),
        target: non_empty(group, configured_group.map_or("", |g| &g.deployment_group)),
        deployment_id: deployment_id.to_string(),
        state: state.to_string(),
        region: detail
            .region
            .clone()
            .or_else(|| event.region.clone())
            .filter(|r| is_region(r))
            .unwrap_or_else(|| deps.region.clone()),
        mention_on_failure: app.slack.mention_on_failure.clone(),
        channel: app.slack.channel.clone(),
        ..Notice::default()
    };
    match deps.codedeploy.deployment(deployment_id).await {
        Ok(deployment) => enrich(deps, app, &deployment, event.time, &mut notice).await,
        // Whether the deployment is a rollback decides the headline: without it, fail so that
        // Lambda retries; on the last attempt, announce without details (never as a success).
        Err(source) => {
            let age = Utc::now() - event.time;
            if age < LAST_ATTEMPT_AGE {
                warn!(app = %app.name, deployment_id = %deployment_id, state = %state, error = %source,
                      "cannot read the deployment: failing so that the event is retried");
                return Err(NotifyError::DeploymentUnreadable {
                    app: app.name.clone(),
                    deployment_id: deployment_id.to_string(),
                    state: state.to_string(),
                    source: Box::new(source),
                });
            }
            warn!(app = %app.name, deployment_id = %deployment_id, state = %state, error = %source,
                  "cannot read the deployment on the last attempt: announcing without details");
            notice.details_unavailable = true;
        }
    }

    post_notice(deps, app, &webhook, &notice, invocation).await
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

/// The app of a deployment group; another group of a managed CodeDeploy application belongs
/// to the first app of that application.
fn managing_app<'a>(config: &'a Config, application: &str, group: &str) -> Option<&'a AppConfig> {
    config
        .app_for_deployment_group(application, group)
        .or_else(|| {
            if config.manages_application(application) {
                config.apps.iter().find(|a| {
                    a.group
                        .as_ref()
                        .is_some_and(|g| g.application == application)
                })
            } else {
                None
            }
        })
}

/// A region's shape (`us-east-1`, `us-gov-west-1`): the event's region goes into a console link,
/// so anything else is replaced by the function's own.
fn is_region(text: &str) -> bool {
    (4..=30).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn non_empty(from_event: &str, configured: &str) -> String {
    let value = if from_event.is_empty() {
        configured
    } else {
        from_event
    };
    value.to_string()
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

/// Adds what GetDeployment and the ledger say. Nothing here fails the invocation: a lookup
/// that fails is logged and the message says less.
async fn enrich(
    deps: &Deps,
    app: &AppConfig,
    deployment: &Deployment,
    event_time: DateTime<Utc>,
    notice: &mut Notice,
) {
    let state = notice.state.clone();
    let release = deployment
        .description
        .as_deref()
        .and_then(ReleaseDescription::parse);
    let is_rollback = deployment.rolls_back_deployment_id.is_some()
        || deployment.creator.as_deref() == Some(ROLLBACK_CREATOR);
    notice.started_by = StartedBy::classify(
        deployment.creator.as_deref(),
        release.is_some(),
        is_rollback,
    );
    notice.task_definition = deployment
        .appspec
        .as_deref()
        .and_then(AppSpec::task_definition_of);
    notice.duration = duration_of(deployment, &state, event_time);
    notice.error_code = deployment.error_code.clone();
    notice.error_message = deployment.error_message.clone();
    let ledger = deps.ledger.as_deref();

    if is_rollback {
        // A rollback's own description is usually not Greenlight's: what it undoes is read
        // from the deployment it rolls back, what it restores from the ledger.
        let undone = match &deployment.rolls_back_deployment_id {
            Some(id) => match deps.codedeploy.deployment(id).await {
                Ok(original) => original
                    .description
                    .as_deref()
                    .and_then(ReleaseDescription::parse),
                Err(e) => {
                    warn!(app = %app.name, deployment_id = %deployment.id, rolls_back = %id, error = %e,
                          "cannot read the deployment being rolled back");
                    None
                }
            },
            None => None,
        };
        let undone_digest = undone.as_ref().map(|r| r.digest.as_str());
        if let Some(ledger) = ledger {
            if let Some(restored) = last_good(ledger, app, undone_digest).await {
                notice.version = Some(restored.version);
                notice.digest = Some(restored.digest);
                notice.provenance = restored.provenance;
            }
            if let Some(digest) = undone_digest {
                notice.hook_reason = release_record(ledger, app, digest)
                    .await
                    .and_then(|r| r.hook_reason);
            }
        }
        notice.rollback = Some(Rollback::IsRollback {
            of: deployment.rolls_back_deployment_id.clone(),
            undoing: undone.map(|r| r.version),
        });
        return;
    }

    if let Some(release) = &release {
        notice.version = Some(release.version.clone());
        notice.digest = Some(release.digest.clone());
    }
    let digest = release.as_ref().map(|r| r.digest.as_str());
    if let Some(by) = &deployment.rollback_deployment_id {
        let to = match ledger {
            Some(ledger) => last_good(ledger, app, digest).await.map(|r| r.version),
            None => None,
        };
        notice.rollback = Some(Rollback::RolledBack { by: by.clone(), to });
    }
    let (Some(ledger), Some(digest)) = (ledger, digest) else {
        return;
    };
    if let Some(record) = release_record(ledger, app, digest).await {
        notice.provenance = record.provenance;
        // The operator's request, when this deployment is the one it made (the description
        // names the request; an earlier run of the digest names none or another).
        let requested_here = release.as_ref().and_then(|r| r.request.as_deref());
        notice.requested = record
            .request
            .filter(|q| requested_here == Some(q.id.as_str()));
        if matches!(state.as_str(), "FAILURE" | "STOP") {
            notice.hook_reason = record.hook_reason;
        }
    }
    // Announced once: the START of the release that replaced them.
    if state == "START" {
        notice.superseded = superseded(ledger, app, digest).await;
    }
}

/// How long a deployment that ended took (its end time, or the event's when CodeDeploy has
/// not recorded it yet).
fn duration_of(
    deployment: &Deployment,
    state: &str,
    event_time: DateTime<Utc>,
) -> Option<Duration> {
    if !matches!(state, "SUCCESS" | "FAILURE" | "STOP") {
        return None;
    }
    let started = deployment.created_at?;
    let ended = deployment.completed_at.unwrap_or(event_time);
    (ended - started).to_std().ok()
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

/// Versions superseded in favour of `digest`, oldest push first.
async fn superseded(ledger: &dyn Ledger, app: &AppConfig, digest: &str) -> Vec<String> {
    match ledger.superseded_by(&app.name, digest).await {
        Ok(mut records) => {
            records.sort_by_key(|r| r.pushed_at);
            records.into_iter().map(|r| r.version).collect()
        }
        Err(e) => {
            warn!(app = %app.name, digest = %digest, error = %e, "cannot read superseded releases from the ledger");
            Vec::new()
        }
    }
}
