//! Deployments that end, on both engines (CodeDeploy's state changes, ECS's read back), and
//! the periodic sweep that finishes what lost events and dead invocations left.

use std::time::Duration;

use crate::core::{DeployError, Deps, Outcome};
use crate::driver::{deploy_release, ticket_of, Driver};
use aws_lambda_events::codedeploy::CodeDeployEvent;
use chrono::Utc;
use greenlight_shared::engine::{self};
use greenlight_shared::events::{
    clipped, is_deployment_id, may_end, service_of_event, EcsDeploymentEvent, SHOWN_NAME_MAX,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::ReleaseStatus;
use greenlight_shared::queue::Next;
use tracing::{info, warn};

/// A deployment of the app ended: free its group and start the waiting release, if any.
pub(crate) async fn handle_deployment_end(
    deps: &Deps,
    event: &CodeDeployEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let d = &event.detail;
    let deployment_id = d.deployment_id.clone().unwrap_or_default();
    if !is_deployment_id(&deployment_id) {
        let shown = clipped(&deployment_id, 40);
        info!(deployment_id = %shown, "skipped: not a CodeDeploy deployment id");
        return Ok(Outcome::Skipped {
            reason: format!("`{shown}` is not a CodeDeploy deployment id"),
        });
    }
    let Some(outcome) = end_status(&d.state) else {
        let state = clipped(&d.state, greenlight_shared::events::SHOWN_NAME_MAX);
        info!(deployment_id = %deployment_id, state = %state, "skipped: not the end of a deployment");
        return Ok(Outcome::Skipped {
            reason: format!("state {state} is not the end of a deployment"),
        });
    };
    let (application, group) = (
        d.application.as_deref().unwrap_or(""),
        d.deployment_group.as_deref().unwrap_or(""),
    );
    let Some(app) = deps.config.app_for_deployment_group(application, group) else {
        // Every application's end events reach the deployer: names are shown clipped.
        let (application, group) = (
            clipped(application, greenlight_shared::events::SHOWN_NAME_MAX),
            clipped(group, greenlight_shared::events::SHOWN_NAME_MAX),
        );
        info!(
            application = %application,
            deployment_group = %group,
            "skipped: deployment group not managed by Greenlight"
        );
        return Ok(Outcome::Skipped {
            reason: format!("deployment group {application}/{group} is not managed"),
        });
    };
    let mut driver = Driver::new(deps, app, invocation);
    info!(app = %app.name, deployment_id = %deployment_id, state = %d.state, "deployment ended");
    let next = driver
        .apply(|q, lease| q.end(&deployment_id, outcome, lease))
        .await?;
    finish(&mut driver, next, deployment_id).await
}

/// A native deployment of a service changed state: when it may have ended, the app whose
/// release is deploying that service reads its deployment back (the event names the service,
/// not the service deployment, and is not the verdict) and, if it ended, frees its queue.
///
/// The event can come before the ledger or ECS agrees with it: the deployment is still being
/// recorded by the invocation that started it, or ECS still lists it as active. Both are read
/// again a few times over seconds ([`READBACK_PAUSE`]) before the event is let go (the sweep
/// is left). An app with nothing deploying on the service resumes whatever its queue holds:
/// this is how the retry of an end event that started the next release, and failed doing
/// so, carries on at once.
pub(crate) async fn handle_service_deployment_change(
    deps: &Deps,
    event: &EcsDeploymentEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let Some((cluster, service)) = service_of_event(event) else {
        info!("skipped: the ECS deployment event names no valid service");
        return Ok(Outcome::Skipped {
            reason: "the ECS deployment event names no valid service".into(),
        });
    };
    let name = clipped(&event.detail.event_name, SHOWN_NAME_MAX);
    if !may_end(&event.detail) {
        info!(cluster = %cluster, service = %service, event = %name, "skipped: not the end of a deployment");
        return Ok(Outcome::Skipped {
            reason: format!("{name} is not the end of a deployment"),
        });
    }
    let on_service =
        |arn: &str| engine::service_of_arn(arn).is_some_and(|(c, s)| c == cluster && s == service);
    let mut pauses = (0..READBACKS).map(|i| deps.readback_pause * 2u32.pow(i));
    loop {
        let names: Vec<String> = deps.config.apps.iter().map(|a| a.name.clone()).collect();
        let queues = deps.ledger.queues(&names).await?;
        let apps_queues = || deps.config.apps.iter().zip(queues.iter());
        let deploying = apps_queues()
            .find(|(_, q)| q.active_deployment().is_some_and(on_service))
            .or_else(|| {
                let app = deps.config.app_for_service(cluster, service)?;
                apps_queues().find(|(a, _)| a.name == app.name)
            });
        let Some((app, queue)) = deploying else {
            info!(cluster = %cluster, service = %service, event = %name, "skipped: no release of Greenlight is deploying this service");
            return Ok(Outcome::Skipped {
                reason: format!("no release is deploying ECS service {cluster}/{service}"),
            });
        };
        let mut driver = Driver::new(deps, app, invocation);
        let Some(deployment_id) = queue
            .active_deployment()
            .filter(|id| on_service(id))
            .map(str::to_string)
        else {
            let being_recorded = queue.active.as_ref().is_some_and(|a| {
                a.deployment_id.is_none()
                    && a.owner != driver.lease.owner
                    && a.lease_until_ms > driver.lease.now_ms
            });
            if being_recorded {
                // Its deployment is being started: the event may be its end.
                if let Some(pause) = pauses.next() {
                    tokio::time::sleep(pause).await;
                    continue;
                }
                info!(app = %app.name, event = %name, "skipped: the service's deployment is still being recorded (the sweep reads it back)");
                return Ok(Outcome::Skipped {
                    reason: format!(
                        "the deployment of ECS service {cluster}/{service} is still being recorded"
                    ),
                });
            }
            // Nothing of ours runs there: resume what the queue holds (this invocation's own
            // retry, a release whose invocation died, one waiting in a free queue).
            info!(app = %app.name, event = %name, "service deployment ended: moving the app's queue on");
            driver.known = Some(queue.clone());
            let next = driver.settle().await?;
            let idle = Outcome::Skipped {
                reason: format!("no release is deploying ECS service {cluster}/{service}"),
            };
            return driver.follow(next, idle, None).await;
        };
        info!(app = %app.name, deployment_id = %deployment_id, event = %name, "service deployment may have ended");
        driver.known = Some(queue.clone());
        let next = driver.check_active().await?;
        let still = matches!(&driver.known, Some(q) if q.active_deployment() == Some(deployment_id.as_str()));
        if still && next == Next::Idle {
            if let Some(pause) = pauses.next() {
                tokio::time::sleep(pause).await;
                continue;
            }
            warn!(app = %app.name, deployment_id = %deployment_id, event = %name,
                  "ECS still lists the deployment as in progress after the event: left to its next event or the sweep");
            return Ok(Outcome::Skipped {
                reason: format!("deployment {deployment_id} is still in progress"),
            });
        }
        return finish(&mut driver, next, deployment_id).await;
    }
}

/// The first pause between read-backs of a native end event that ECS or the ledger does not
/// agree with yet; three pauses, each twice the last, are 3.5 s in all, well within the
/// function's timeout.
pub const READBACK_PAUSE: Duration = Duration::from_millis(500);
pub(crate) const READBACKS: u32 = 3;

/// A deployment ended (`next` is what its end leads to): carries `next` out and says so.
pub(crate) async fn finish(
    driver: &mut Driver<'_>,
    next: Next,
    deployment_id: String,
) -> Result<Outcome, DeployError> {
    let app = driver.app.name.clone();
    let finished = Outcome::Finished {
        app: app.clone(),
        deployment_id: deployment_id.clone(),
        next: None,
    };
    let after = driver.follow(next, finished.clone(), None).await?;
    Ok(if after == finished {
        finished
    } else {
        Outcome::Finished {
            app,
            deployment_id,
            next: Some(Box::new(after)),
        }
    })
}

/// The periodic sweep (an EventBridge schedule): finishes what lost events and dead
/// invocations left behind. A release claimed by an invocation that died before the queue
/// admitted it is taken on (newest first); a deployment whose end event never arrived is read
/// back; a release whose invocation died is resumed; a waiting release in a free queue starts.
/// One ledger read for the queues and one per app for stale claims; no AWS call when every
/// queue is idle.
pub(crate) async fn sweep(deps: &Deps, invocation: &Invocation) -> Result<Outcome, DeployError> {
    let names: Vec<String> = deps.config.apps.iter().map(|a| a.name.clone()).collect();
    let queues = deps.ledger.queues(&names).await?;
    let now = Utc::now();
    let mut actions = vec![];
    let mut first_error = None;
    for (app, queue) in deps.config.apps.iter().zip(queues) {
        let result = async {
            let mut done = vec![];
            let mut stale = deps.ledger.stale_claims(&app.name, now).await?;
            stale.retain(|r| !queue.names(&r.digest));
            // Newest first: an older one then finds it started and is superseded.
            stale.sort_by_key(|r| std::cmp::Reverse(ticket_of(r)));
            let mut stale_error = None;
            for record in &stale {
                warn!(app = %app.name, version = %record.version, digest = %record.digest,
                      "a release was claimed by an invocation that died before queueing it: taking it on");
                let push = record.as_push(&app.repository);
                // One that fails still leaves the others and the queue to be moved on.
                match deploy_release(deps, &push, app, invocation).await {
                    Ok(outcome) => done.push(outcome),
                    Err(e) => {
                        warn!(app = %app.name, digest = %record.digest, error = %e, "sweep could not take the claim on");
                        stale_error.get_or_insert(e);
                    }
                }
            }
            if stale.is_empty() && queue.active.is_none() && queue.pending.is_none() {
                return Ok(done);
            }
            let mut driver = Driver::new(deps, app, invocation);
            driver.known = stale.is_empty().then_some(queue);
            let next = driver.settle().await?;
            let idle = Outcome::Skipped {
                reason: "nothing to do".into(),
            };
            done.push(driver.follow(next, idle, None).await?);
            match stale_error {
                Some(e) => Err(e),
                None => Ok::<_, DeployError>(done),
            }
        }
        .await;
        match result {
            Ok(done) => {
                for outcome in done {
                    if !matches!(outcome, Outcome::Skipped { .. }) {
                        info!(app = %app.name, ?outcome, "sweep moved the queue on");
                        actions.push(outcome);
                    }
                }
            }
            Err(e) => {
                warn!(app = %app.name, error = %e, "sweep could not move the queue on");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Outcome::Swept {
            apps: names.len(),
            actions,
        }),
    }
}

pub(crate) fn end_status(state: &str) -> Option<ReleaseStatus> {
    match state {
        "SUCCESS" => Some(ReleaseStatus::Succeeded),
        "FAILURE" => Some(ReleaseStatus::Failed),
        "STOP" => Some(ReleaseStatus::Stopped),
        _ => None,
    }
}
