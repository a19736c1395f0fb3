//! The notifier's work for one deployment state change: find the app, learn what CodeDeploy
//! and the ledger know about the deployment, build the message, deliver it.

use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployEvent;
use chrono::{DateTime, Utc};
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::Deployment;
use greenlight_shared::events::EcsDeploymentEvent;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::Ledger;
use greenlight_shared::{AppConfig, Config};
use tracing::{info, warn};

use crate::core::{approval_cause, last_good, once, release_record, run_of};
pub use crate::core::{Deps, Notified, NotifyError, SecretSource, WebhookCache, LAST_ATTEMPT_AGE};
use crate::delivery::{destination_for, post_notice};
use crate::message::{Notice, Rollback, StartedBy, ROLLBACK_CREATOR};
use crate::stream::LedgerChange;

/// The EventBridge detail type the notifier serves.
pub const DEPLOYMENT_STATE_CHANGE: &str = "CodeDeploy Deployment State-change Notification";

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
    /// The health hook's verdicts and the queue's changes, from the ledger's stream.
    Ledger(Vec<LedgerChange>),
}

/// Reads a deployment state-change event (by its source); anything else is a
/// `MalformedEvent` with a short reason.
pub fn parse_event(payload: serde_json::Value) -> Result<NotifierEvent, NotifyError> {
    let malformed = |e: serde_json::Error| {
        NotifyError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
    };
    if crate::stream::is_ledger_stream(&payload) {
        return crate::stream::parse_stream(payload).map(NotifierEvent::Ledger);
    }
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
        NotifierEvent::Ledger(changes) => say_ledger_changes(deps, changes, invocation).await,
    }
}

/// Says each change of a ledger stream batch, in the batch's order (each item's writes in
/// the order they were made).
async fn say_ledger_changes(
    deps: &Deps,
    changes: Vec<LedgerChange>,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let mut last = Notified::Ignored {
        reason: "nothing for a Slack app's message".into(),
    };
    for change in changes {
        let said = match change {
            LedgerChange::Verdict(verdict) => {
                crate::verdicts::say_verdict(deps, verdict, invocation).await?
            }
            LedgerChange::Queue(change) => {
                crate::queued::say_queue_change(deps, change, invocation).await?
            }
            LedgerChange::Approval(change) => {
                crate::approvals::say_approval(deps, change, invocation).await?
            }
        };
        if let Some(said) = said {
            last = said;
        }
    }
    Ok(last)
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
    let destination = destination_for(deps, app).await?;
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

    post_notice(deps, app, &destination, &notice, invocation).await
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
        notice.run = run_of(&record, &deployment.id);
        notice.provenance = record.provenance;
        // The operator's request, when this deployment is the one it made (the description
        // names the request; an earlier run of the digest names none or another).
        let requested_here = release.as_ref().and_then(|r| r.request.as_deref());
        notice.requested = record
            .request
            .filter(|q| requested_here == Some(q.id.as_str()));
        if matches!(state.as_str(), "FAILURE" | "STOP") {
            notice.hook_reason = record.hook_reason;
            if let Some(cause) = approval_cause(deps, app, digest).await {
                notice.rollback_cause = Some(cause);
                notice.hook_reason = None;
            }
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
