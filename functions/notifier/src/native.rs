//! Native ECS blue/green deployments: the same Slack messages, read from ECS.
//!
//! An "ECS Deployment State Change" event names the service and an `ecs-svc/…` id, not the
//! service deployment, and AWS does not document how a rollback shows in these events. So an
//! event is only a signal: the notifier lists the service's recent deployments and announces
//! the state each one is in now, once per deployment and state (the ledger's notice claims).
//! A lost, late, duplicated or reordered event therefore never announces a wrong state, and
//! the next event of the service announces what a lost one would have.
//!
//! States map to CodeDeploy's words by the one status table (`greenlight_shared::model`), so
//! the messages are the same: PENDING and IN_PROGRESS are START, SUCCESSFUL is SUCCESS,
//! STOP_REQUESTED and STOPPED are STOP, and every ROLLBACK_* status is FAILURE with "rolled
//! back to …" and ECS's reason: a rollback is never a success.

use chrono::{DateTime, Utc};
use greenlight_shared::aws::ecs::ServiceDeploymentBrief;
use greenlight_shared::events::{may_end, service_of_event, EcsDeploymentEvent};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::model::{phase_of, EngineKind, Phase};
use greenlight_shared::rollout::{rollback_cause, traffic_line};
use greenlight_shared::task_definition::{tag_value, TAG_APP, TAG_DIGEST, TAG_VERSION};
use greenlight_shared::{AppConfig, AwsErrorKind};
use tracing::{info, warn};

use crate::core::{
    approval_cause, last_good, once, release_record, run_of, Deps, Notified, NotifyError,
};
use crate::delivery::{destination_for, post_notice};
use crate::message::{Notice, Rollback, StartedBy};

/// The deployments of a service announced per event: the newest few cover one that a newer
/// deployment followed at once (the deployer starts the next release when one ends).
const RECENT_DEPLOYMENTS: usize = 3;

/// How far back an event looks for deployments to announce: longer than ECS's longest bake
/// time (24 h), so the end of any deployment still running is found.
const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::hours(25);

/// The word CodeDeploy would use for a service deployment status (see the module docs).
pub fn state_of(status: &str) -> &'static str {
    phase_of(EngineKind::Ecs, status).map_or("UNKNOWN", Phase::state)
}

/// What an announcement is claimed under: its state, except that a rollback that failed is
/// announced again after the failure (whose message said it was rolling back).
fn notice_key(status: &str) -> &'static str {
    match phase_of(EngineKind::Ecs, status) {
        Some(Phase::RollbackFailed) => "ROLLBACK_FAILED",
        _ => state_of(status),
    }
}

/// One service deployment event: announces the current state of the service's recent
/// deployments, each state once.
pub async fn handle_service_deployment(
    deps: &Deps,
    event: &EcsDeploymentEvent,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let Some((cluster, service)) = service_of_event(event) else {
        info!("ignored: the ECS deployment event names no valid service");
        return Ok(Notified::Ignored {
            reason: "the ECS deployment event names no valid service".into(),
        });
    };
    // Apps that name their service are matched here; one named by its CodeDeploy group only
    // is found by the `greenlight:app` tag of the revision deployed.
    let named = deps.config.app_for_service(cluster, service);
    if named.is_none() && deps.config.apps.iter().all(|a| a.service.is_some()) {
        info!(cluster = %cluster, service = %service, "ignored: service not managed by Greenlight");
        return Ok(Notified::Ignored {
            reason: format!("ECS service {cluster}/{service} is not managed"),
        });
    }
    let since = event.time.unwrap_or_else(Utc::now) - LOOK_BACK;
    let mut recent = match deps
        .ecs
        .service_deployments(cluster, service, Some(since), false)
        .await
    {
        Ok(recent) => recent,
        // Not a service the stack lets it read (another cluster), or gone: not Greenlight's.
        Err(e) if matches!(e.kind, AwsErrorKind::AccessDenied | AwsErrorKind::NotFound) => {
            info!(cluster = %cluster, service = %service, error = %e, "ignored: the service's deployments cannot be read");
            return Ok(Notified::Ignored {
                reason: format!(
                    "the deployments of ECS service {cluster}/{service} cannot be read"
                ),
            });
        }
        Err(e) => {
            return Err(NotifyError::ServiceUnreadable {
                cluster: cluster.to_string(),
                service: service.to_string(),
                source: Box::new(e),
            })
        }
    };
    recent.truncate(RECENT_DEPLOYMENTS);
    recent.reverse();
    // ECS says a deployment ended while its newest still reads as running (its record lags the
    // event): fail, so that Lambda's retry reads it again, unless this was the last attempt.
    let lagging = may_end(&event.detail)
        && recent
            .last()
            .is_some_and(|d| state_of(&d.status) == "START")
        && event
            .time
            .is_some_and(|t| Utc::now() - t < crate::core::LAST_ATTEMPT_AGE);
    let mut last = None;
    let mut first_error = None;
    for deployment in recent {
        match announce_once(deps, named, &deployment, event, invocation).await {
            Ok(Some(posted)) => last = Some(posted),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (first_error, last) {
        (Some(e), _) => Err(e),
        (None, Some(posted)) => Ok(posted),
        (None, None) if lagging => Err(NotifyError::NotEndedYet {
            cluster: cluster.to_string(),
            service: service.to_string(),
        }),
        (None, None) => Ok(Notified::Ignored {
            reason: format!("nothing new to announce for ECS service {cluster}/{service}"),
        }),
    }
}

/// Announces one deployment's current state unless it was announced already.
async fn announce_once(
    deps: &Deps,
    named: Option<&AppConfig>,
    deployment: &ServiceDeploymentBrief,
    event: &EcsDeploymentEvent,
    invocation: &Invocation,
) -> Result<Option<Notified>, NotifyError> {
    let state = state_of(&deployment.status);
    let key = notice_key(&deployment.status);
    // The release it deploys, from the tags of its revision's task definition: read first only
    // when they must tell the app; for an app named by its service, only for a state not
    // announced yet (a redelivered event costs no read).
    let (app, read) = match named {
        Some(app) => (app, None),
        None => {
            let read = released_or_nothing(deps, deployment).await;
            match tag_value(&read.tags, TAG_APP).and_then(|n| deps.config.app_named(&n)) {
                Some(app) => (app, Some(read)),
                None => {
                    info!(deployment = %deployment.arn, "ignored: a deployment of a service no app names");
                    return Ok(None);
                }
            }
        }
    };
    let id = deployment.arn.as_str();
    once(deps, &app.name, id, key, invocation, async {
        let released = match read {
            Some(read) => read,
            None => released_or_nothing(deps, deployment).await,
        };
        let Released {
            task_definition,
            tags,
            read,
        } = released;
        let destination = destination_for(deps, app).await?;
        let (cluster, service) = greenlight_shared::engine::service_of_arn(id).unwrap_or_default();
        let mut notice = Notice {
            app: app.name.clone(),
            environment: app.environment.clone(),
            scope: cluster.to_string(),
            target: service.to_string(),
            deployment_id: id.to_string(),
            state: state.to_string(),
            // ECS is read in the function's own region; the event's is not trusted.
            region: deps.region.clone(),
            mention_on_failure: app.slack.mention_on_failure.clone(),
            channel: app.slack.channel.clone(),
            task_definition,
            version: tag_value(&tags, TAG_VERSION),
            digest: tag_value(&tags, TAG_DIGEST),
            ..Notice::default()
        };
        let at = event.time.unwrap_or_else(Utc::now);
        enrich(deps, app, deployment, at, read, &mut notice).await;
        describe_rollout(deps, deployment, &mut notice).await;
        if let (Some(digest), "FAILURE" | "STOP") = (&notice.digest, notice.state.as_str()) {
            if let Some(cause) = approval_cause(deps, app, digest).await {
                notice.rollback_cause = Some(cause);
                notice.hook_reason = None;
            }
        }
        post_notice(deps, app, &destination, &notice, invocation).await
    })
    .await
}

/// How a deployment moves production traffic and where it stands, or, once it rolls back,
/// what caused it: one DescribeServiceDeployments after the claim (a redelivered event costs
/// nothing), for states that say it. Announced without it when the read fails.
async fn describe_rollout(deps: &Deps, deployment: &ServiceDeploymentBrief, notice: &mut Notice) {
    let Some(phase) = phase_of(EngineKind::Ecs, &deployment.status) else {
        return;
    };
    if phase != Phase::Forward && !phase.is_rollback() {
        return;
    }
    let state = match deps.ecs.service_deployment(&deployment.arn).await {
        Ok(state) => state,
        Err(e) => {
            warn!(deployment = %deployment.arn, error = %e, "cannot read how the deployment shifts traffic");
            return;
        }
    };
    if phase.is_rollback() {
        notice.rollback_cause =
            rollback_cause(&state.rollback, notice.hook_reason.as_deref(), None);
        return;
    }
    notice.rollout = state
        .rollout
        .as_ref()
        .filter(|r| !r.is_plain())
        .map(|r| traffic_line(r, &state.position));
}

/// What a deployment deploys: its task definition and tags, and whether they could be read.
struct Released {
    task_definition: Option<String>,
    tags: Vec<aws_sdk_ecs::types::Tag>,
    /// False when the revision could not be read: who started it is then unknown.
    read: bool,
}

/// The release a deployment deploys, or nothing when it cannot be read: announced without the
/// release rather than not at all.
async fn released_or_nothing(deps: &Deps, deployment: &ServiceDeploymentBrief) -> Released {
    match released(deps, deployment).await {
        Ok((task_definition, tags)) => Released {
            task_definition,
            tags,
            read: true,
        },
        Err(e) => {
            warn!(deployment = %deployment.arn, error = %e, "cannot read the revision deployed");
            Released {
                task_definition: None,
                tags: vec![],
                read: false,
            }
        }
    }
}

/// The task definition a deployment deploys, and its tags.
async fn released(
    deps: &Deps,
    deployment: &ServiceDeploymentBrief,
) -> Result<(Option<String>, Vec<aws_sdk_ecs::types::Tag>), greenlight_shared::AwsError> {
    let Some(revision) = &deployment.target_revision else {
        return Ok((None, vec![]));
    };
    let arn = deps
        .ecs
        .service_revision(revision)
        .await?
        .task_definition_arn;
    let tags = deps.ecs.task_definition_tags(&arn).await?;
    Ok((Some(arn), tags))
}

/// Adds what the ledger knows: who started it, its provenance, the operator's request, why
/// the hook failed it and the version serving after a rollback.
async fn enrich(
    deps: &Deps,
    app: &AppConfig,
    deployment: &ServiceDeploymentBrief,
    event_time: DateTime<Utc>,
    revision_read: bool,
    notice: &mut Notice,
) {
    let ended = !matches!(notice.state.as_str(), "START");
    if ended {
        notice.duration = deployment
            .created_at
            .and_then(|started| (event_time.max(started) - started).to_std().ok());
    }
    let phase = phase_of(EngineKind::Ecs, &deployment.status);
    if notice.state != "SUCCESS" {
        notice.error_message = deployment.status_reason.clone();
    }
    let ledger = deps.ledger.as_deref();
    let record = match (ledger, &notice.digest) {
        (Some(ledger), Some(digest)) => release_record(ledger, app, digest).await,
        _ => None,
    };
    notice.run = record.as_ref().and_then(|r| run_of(r, &deployment.arn));
    let record = record.filter(|r| r.deployment_id.as_deref() == Some(deployment.arn.as_str()));
    // Outside Greenlight only when its revision was read and carries no release of ours; a
    // revision that could not be read says nothing of who started it.
    notice.started_by = match &record {
        Some(_) => Some(StartedBy::Push),
        None if notice.digest.is_some() => Some(StartedBy::Push),
        None if revision_read => Some(StartedBy::Manual),
        None => None,
    };
    if let Some(record) = record {
        notice.provenance = record.provenance;
        notice.requested = record.request;
        if ended {
            notice.hook_reason = record.hook_reason;
        }
    }
    if phase == Some(Phase::RollbackFailed) {
        notice.error_message = Some(format!(
            "ECS could not roll back: {}",
            deployment
                .status_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    } else if phase.is_some_and(Phase::is_rollback) {
        let to = match ledger {
            Some(ledger) => last_good(ledger, app, notice.digest.as_deref())
                .await
                .map(|r| r.version),
            None => None,
        };
        notice.rollback = Some(Rollback::RolledBack {
            by: "ECS (the deployment's own rollback)".into(),
            to,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rollback_status_reads_as_a_failure_never_a_success() {
        for status in [
            "ROLLBACK_REQUESTED",
            "ROLLBACK_IN_PROGRESS",
            "ROLLBACK_SUCCESSFUL",
            "ROLLBACK_FAILED",
        ] {
            assert_eq!(state_of(status), "FAILURE", "{status}");
        }
        assert_eq!(state_of("SUCCESSFUL"), "SUCCESS");
        assert_eq!(state_of("IN_PROGRESS"), "START");
        assert_eq!(state_of("PENDING"), "START");
        assert_eq!(state_of("STOPPED"), "STOP");
        assert_eq!(state_of("SOMETHING_NEW"), "UNKNOWN");
    }
}
