//! What the notifier's two paths share: their dependencies and errors, the one-announcement-
//! per-state helper (claim in the ledger, post, record) and the ledger lookups. CodeDeploy's
//! path (`handler`) and native ECS's (`native`) are siblings over it and over `delivery` (to
//! Slack); neither imports the other's internals.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::aws::ecs::ServiceReads;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseRecord};
use greenlight_shared::secrets::{SecretError, SecretRef};
use greenlight_shared::slack::{SlackApiError, SlackApp, SlackError, SlackPoster};
use greenlight_shared::{AppConfig, Config};
use serde::Serialize;
use tracing::warn;

/// Time kept back from the invocation's deadline when posting, so a failure is reported by
/// this invocation rather than cut off by Lambda.
pub(crate) const SLACK_DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// An event older than this has been through Lambda's retries (the stack allows two, about a
/// minute and two minutes after the first attempt): if CodeDeploy still cannot be read, the
/// state is announced without details rather than not at all.
pub const LAST_ATTEMPT_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

pub use greenlight_shared::secrets::SecretSource;

/// Slack secrets (webhook URLs, app tokens) already read during this cold start.
pub use greenlight_shared::secrets::SecretCache as WebhookCache;

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    /// Native blue/green deployments are read from ECS.
    pub ecs: Arc<dyn ServiceReads>,
    /// The release ledger; without it messages carry only what CodeDeploy says.
    pub ledger: Option<Arc<dyn Ledger>>,
    pub secrets: Arc<dyn SecretSource>,
    pub slack: SlackPoster,
    /// Slack app mode (an app with `slack.token`): the Web API.
    pub slack_app: SlackApp,
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
    /// Slack app mode: Slack refused the app's token, channel or scopes (config or app setup).
    #[error("Slack refused app `{app}`'s message ({error}): check `{key}` and the Slack app (invited to the channel, chat:write)")]
    SlackAppSetup {
        app: String,
        key: String,
        error: String,
    },
    #[error("the {state} message of app `{app}` was not posted: {source}")]
    SlackApp {
        app: String,
        state: String,
        #[source]
        source: SlackApiError,
    },
    /// Another invocation is writing this release's message right now: retried.
    #[error("the Slack message of app `{app}`'s release is being written by another invocation; retried")]
    MessageBusy { app: String },
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
            Self::SlackAppSetup { .. } => "SlackAppSetup",
            Self::SlackApp {
                source: SlackApiError::GaveUp { .. },
                ..
            } => "SlackUnavailable",
            Self::SlackApp { .. } => "SlackRejected",
            Self::MessageBusy { .. } => "SlackMessageBusy",
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
pub(crate) fn notice_lease(invocation: &Invocation) -> greenlight_shared::queue::Lease {
    greenlight_shared::queue::Lease {
        owner: invocation.request_id.clone(),
        until_ms: invocation.deadline_ms as i64 + 2_000,
        now_ms: Utc::now().timestamp_millis(),
    }
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

/// Where the app deploys, as a notice names it: cluster and service (native ECS, `true`), or
/// CodeDeploy application and deployment group.
pub(crate) fn app_target(app: &AppConfig) -> (String, String, bool) {
    match (&app.service, &app.group) {
        (Some(s), _) => (s.cluster.clone(), s.service.clone(), true),
        (None, Some(g)) => (g.application.clone(), g.deployment_group.clone(), false),
        (None, None) => (String::new(), String::new(), false),
    }
}

/// The release run a deployment's notice belongs to: the release item's current run, when its
/// deployment is this one or not recorded yet (the start can outrun the deployer's write).
pub(crate) fn run_of(record: &ReleaseRecord, deployment_id: &str) -> Option<String> {
    record
        .deployment_id
        .as_deref()
        .is_none_or(|id| id == deployment_id)
        .then(|| {
            crate::message::run_anchor(
                &record.app,
                &record.digest,
                record.pushed_at.timestamp_millis(),
            )
        })
}

/// The notice of a release run's deployment that no engine event brought (a verdict, an
/// approval): what the ledger's item says of it, and where the app deploys.
pub(crate) fn run_notice(
    deps: &Deps,
    app: &AppConfig,
    deployment_id: &str,
    version: Option<String>,
    digest: Option<String>,
    run: Option<String>,
) -> crate::message::Notice {
    let (scope, target, _) = app_target(app);
    crate::message::Notice {
        app: app.name.clone(),
        environment: app.environment.clone(),
        scope,
        target,
        deployment_id: deployment_id.to_string(),
        region: deps.region.clone(),
        channel: app.slack.channel.clone(),
        version,
        digest,
        started_by: Some(crate::message::StartedBy::Push),
        native: greenlight_shared::model::is_service_deployment_arn(deployment_id),
        run,
        ..Default::default()
    }
}

/// Why a release of an app that asks for approval ended without shipping, when the gate says:
/// a person rolled it back (who, when, why), or nobody decided before the wait ran out. `None`
/// when the app asks for no approval, green never reached the wait (the hook or the engine
/// says why), someone approved it, or the ledger cannot be read. Green passed its checks
/// whenever there is a wait, so the hook is never blamed then.
pub(crate) async fn approval_cause(deps: &Deps, app: &AppConfig, digest: &str) -> Option<String> {
    use greenlight_shared::approval::{person, Choice};
    if !app.approval.required {
        return None;
    }
    let ledger = deps.ledger.as_deref()?;
    let record = match ledger.approval(&app.name, digest).await {
        Ok(record) => record?,
        Err(e) => {
            warn!(app = %app.name, error = %e, "cannot read the approval from the ledger");
            return None;
        }
    };
    match record.decision {
        Some(d) if d.choice == Choice::Reject => Some(format!(
            "rolled back by {} at {} UTC{}",
            person(&d.by),
            d.at.format("%H:%M"),
            d.reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
        Some(_) => None,
        None => Some(format!(
            "nobody approved it before the wait ran out ({} UTC)",
            record.wait.expires_at.format("%H:%M")
        )),
    }
}
