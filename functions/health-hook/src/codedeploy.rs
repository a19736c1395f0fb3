//! The hook for CodeDeploy blue/green deployments: the checks, polled within the invocation,
//! and the one report of their verdict to CodeDeploy.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployLifecycleEvent;
use futures_util::FutureExt;
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::{CodeDeployApi, HookVerdict, TaskSetInfo};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::{AwsError, AwsErrorKind};
use serde::Serialize;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::checks::{self, CheckResult};
use crate::core::{panic_message, record_approval_wait, record_briefly, Deps, HookError};

/// Reads a lifecycle hook invocation; one that is not (it cannot be answered: it names no
/// deployment or execution) is a `MalformedEvent` with a short reason.
pub fn parse_event(payload: serde_json::Value) -> Result<CodeDeployLifecycleEvent, HookError> {
    serde_json::from_value::<CodeDeployLifecycleEvent>(payload)
        .map_err(|e| {
            HookError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
        })
        .and_then(|event| {
            if !greenlight_shared::events::is_deployment_id(&event.deployment_id)
                || event.lifecycle_event_hook_execution_id.is_empty()
                || event.lifecycle_event_hook_execution_id.len() > 1024
            {
                Err(HookError::MalformedEvent(
                    "the event names no valid DeploymentId and LifecycleEventHookExecutionId"
                        .into(),
                ))
            } else {
                Ok(event)
            }
        })
}

/// What the hook decided and did (the invocation's response payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookReport {
    pub deployment_id: String,
    pub lifecycle_event: Option<String>,
    pub app: Option<String>,
    pub version: Option<String>,
    /// `Succeeded`, `Failed`, or `Skipped` when the hook had already been answered.
    pub status: &'static str,
    pub reason: String,
    pub checks: Vec<CheckResult>,
    /// CodeDeploy had already recorded a status for this hook.
    pub already_reported: bool,
}

/// Why there is no verdict from the checks themselves.
#[derive(Debug, thiserror::Error)]
enum Unfit {
    #[error("{0}")]
    Aws(#[from] AwsError),
    #[error("deployment group {0} is not managed by Greenlight")]
    NotManaged(String),
    #[error("{0}")]
    Unexpected(String),
    #[error("hook already answered")]
    AlreadyAnswered,
}

#[derive(Default)]
struct Findings {
    app: Option<String>,
    version: Option<String>,
    digest: Option<String>,
    lifecycle_event: Option<String>,
    checks: Vec<CheckResult>,
}

/// How long before the Lambda deadline the report must be sent at the latest.
const REPORT_GUARD: Duration = Duration::from_millis(250);
/// The most a ledger read or write (before the report) may take.
const LEDGER_WRITE_BUDGET: Duration = Duration::from_secs(1);

pub async fn handle(
    deps: &Deps,
    event: CodeDeployLifecycleEvent,
    invocation: &Invocation,
) -> Result<HookReport, HookError> {
    let checks_deadline = invocation.deadline_minus(deps.safety_margin);
    let report_deadline = invocation.deadline_minus(REPORT_GUARD);
    let deployment_id = event.deployment_id.clone();
    let execution_id = event.lifecycle_event_hook_execution_id.clone();
    let mut found = Findings::default();
    // The checks run where a panic is a verdict, and never past their deadline: whatever
    // happens in them, the report below is sent.
    let outcome = tokio::time::timeout_at(
        checks_deadline,
        AssertUnwindSafe(evaluate(
            deps,
            &deployment_id,
            &execution_id,
            checks_deadline,
            &mut found,
        ))
        .catch_unwind(),
    )
    .await;
    let (verdict, reason) = match outcome {
        Ok(Ok(Ok(()))) => match found.checks.iter().find(|c| !c.passed) {
            Some(failed) => (
                HookVerdict::Failed,
                format!("{} failed: {}", failed.check, failed.detail),
            ),
            None => (HookVerdict::Succeeded, "all checks passed".to_string()),
        },
        Ok(Ok(Err(Unfit::AlreadyAnswered))) => {
            info!(deployment_id = %deployment_id, execution_id = %execution_id, "this hook execution was already answered");
            return Ok(HookReport {
                deployment_id,
                lifecycle_event: found.lifecycle_event,
                app: found.app,
                version: found.version,
                status: "Skipped",
                reason: "this hook execution was already answered".to_string(),
                checks: found.checks,
                already_reported: true,
            });
        }
        Ok(Ok(Err(e))) => (HookVerdict::Failed, e.to_string()),
        Ok(Err(panic)) => (
            HookVerdict::Failed,
            format!("a check failed unexpectedly: {}", panic_message(&panic)),
        ),
        Err(_) => (
            HookVerdict::Failed,
            format!(
                "time budget ran out before the checks finished ({} checks done)",
                found.checks.len()
            ),
        ),
    };
    let status = match verdict {
        HookVerdict::Succeeded => "Succeeded",
        HookVerdict::Failed => "Failed",
    };
    for c in &found.checks {
        info!(deployment_id = %deployment_id, check = c.check, passed = c.passed, detail = %c.detail, "check");
    }
    info!(deployment_id = %deployment_id, app = found.app.as_deref().unwrap_or(""),
          version = found.version.as_deref().unwrap_or(""),
          lifecycle_event = found.lifecycle_event.as_deref().unwrap_or(""),
          verdict = status, reason = %reason, "verdict");

    // Keep the reason for the notifier before CodeDeploy acts on the verdict; best effort,
    // and never with the time the report needs.
    if let (Some(ledger), Some(app), Some(digest)) = (&deps.ledger, &found.app, &found.digest) {
        let event_name = found.lifecycle_event.as_deref().unwrap_or("unknown");
        let until = (Instant::now() + LEDGER_WRITE_BUDGET).min(report_deadline - REPORT_GUARD);
        let write = ledger.record_hook_verdict(
            app,
            digest,
            event_name,
            verdict == HookVerdict::Succeeded,
            &reason,
        );
        record_briefly(write, until, "the verdict").await;
        if verdict == HookVerdict::Succeeded {
            record_approval_wait(deps, app, digest, event_name, &deployment_id, until).await;
        }
    }

    let report = send_report(
        deps.codedeploy.as_ref(),
        &deployment_id,
        &execution_id,
        verdict,
        report_deadline,
    );
    let already_reported = match report.await {
        Ok(false) => false,
        Ok(true) => {
            info!(deployment_id = %deployment_id, "CodeDeploy already had a status for this hook");
            true
        }
        Err(source) => {
            error!(deployment_id = %deployment_id, error = %source, "could not report the verdict");
            return Err(HookError::Report {
                verdict: status,
                source,
            });
        }
    };
    if let (Some(ledger), Some(app), Some(digest)) = (&deps.ledger, &found.app, &found.digest) {
        let marked = ledger.record_hook_reported(app, digest, &execution_id);
        if let Ok(Err(e)) = tokio::time::timeout_at(report_deadline, marked).await {
            warn!(error = %e, "could not mark the hook execution as answered in the ledger");
        }
    }
    Ok(HookReport {
        deployment_id,
        lifecycle_event: found.lifecycle_event,
        app: found.app,
        version: found.version,
        status,
        reason,
        checks: found.checks,
        already_reported,
    })
}

/// Answers a lifecycle event when the hook cannot run its checks at all (its config could not
/// be loaded at cold start): CodeDeploy still gets its one `Failed` answer, with the reason
/// (which names the config key at fault, never a value), rather than waiting an hour.
pub async fn report_unusable(
    codedeploy: &dyn CodeDeployApi,
    event: CodeDeployLifecycleEvent,
    reason: &str,
    invocation: &Invocation,
) -> Result<HookReport, HookError> {
    let deployment_id = event.deployment_id.clone();
    error!(deployment_id = %deployment_id, reason = %reason, verdict = "Failed", "verdict");
    let report = send_report(
        codedeploy,
        &deployment_id,
        &event.lifecycle_event_hook_execution_id,
        HookVerdict::Failed,
        invocation.deadline_minus(REPORT_GUARD),
    );
    let already_reported = report.await.map_err(|source| HookError::Report {
        verdict: "Failed",
        source,
    })?;
    Ok(HookReport {
        deployment_id,
        lifecycle_event: None,
        app: None,
        version: None,
        status: "Failed",
        reason: reason.to_string(),
        checks: vec![],
        already_reported,
    })
}

/// Reports the verdict, answered before `deadline` or failed as unavailable; `true` when
/// CodeDeploy already had a status for this hook execution.
async fn send_report(
    codedeploy: &dyn CodeDeployApi,
    deployment_id: &str,
    execution_id: &str,
    verdict: HookVerdict,
    deadline: Instant,
) -> Result<bool, AwsError> {
    let report = codedeploy.report_hook(deployment_id, execution_id, verdict);
    match tokio::time::timeout_at(deadline, report).await {
        Ok(Ok(())) => Ok(false),
        Ok(Err(e)) if e.kind == AwsErrorKind::AlreadyCompleted => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AwsError::new(
            "PutLifecycleEventHookExecutionStatus",
            format!("deployment {deployment_id}"),
            AwsErrorKind::Unavailable,
            "no answer before the invocation's deadline",
        )),
    }
}

/// Finds the green task set and runs the app's checks, in order, stopping at the first failure.
async fn evaluate(
    deps: &Deps,
    deployment_id: &str,
    execution_id: &str,
    deadline: Instant,
    found: &mut Findings,
) -> Result<(), Unfit> {
    let deployment = deps.codedeploy.deployment(deployment_id).await?;
    let group_name = format!("{}/{}", deployment.application, deployment.deployment_group);
    let app = deps
        .config
        .app_for_deployment_group(&deployment.application, &deployment.deployment_group)
        .ok_or(Unfit::NotManaged(group_name))?;
    found.app = Some(app.name.clone());
    if let Some(release) = deployment
        .description
        .as_deref()
        .and_then(ReleaseDescription::parse)
    {
        found.version = Some(release.version);
        found.digest = Some(release.digest);
    }
    // A redelivered invocation skips only what the ledger says CodeDeploy accepted: a
    // duplicate report costs one LifecycleEventAlreadyCompletedException, a skipped one can
    // hold the deployment for an hour.
    if let (Some(ledger), Some(digest)) = (&deps.ledger, &found.digest) {
        let read = tokio::time::timeout(LEDGER_WRITE_BUDGET, ledger.release(&app.name, digest));
        match read.await {
            Ok(Ok(Some(r))) if r.hook_reported_execution.as_deref() == Some(execution_id) => {
                return Err(Unfit::AlreadyAnswered);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not read the release ledger; checking anyway"),
            Err(_) => warn!("the release ledger did not answer in time; checking anyway"),
        }
    }
    let group = deps
        .codedeploy
        .deployment_group(&deployment.application, &deployment.deployment_group)
        .await?;

    let target = deps.codedeploy.ecs_target(deployment_id).await?;
    found.lifecycle_event = target
        .as_ref()
        .and_then(|t| t.lifecycle_event_in_progress.clone());
    // Green by its label when CodeDeploy gives one; otherwise (the published
    // GetDeploymentTarget output has none) the task set running the AppSpec's task definition.
    let green = match target.as_ref().and_then(|t| t.green()).cloned() {
        Some(green) => {
            let arn = match &green.target_group {
                Some(name) => Some(deps.elb.target_group_arn(name).await?),
                None => None,
            };
            (green, arn)
        }
        None => {
            let wanted = deployment
                .appspec
                .as_deref()
                .and_then(AppSpec::task_definition_of)
                .ok_or_else(|| {
                    Unfit::Unexpected("the deployment names no task definition".to_string())
                })?;
            let sets = deps
                .ecs
                .task_sets(&group.cluster, &group.service, &[])
                .await?;
            let set = sets
                .into_iter()
                .find(|t| t.task_definition_arn.as_deref() == Some(wanted.as_str()))
                .ok_or_else(|| Unfit::Unexpected(format!("no task set runs {wanted}")))?;
            let info = TaskSetInfo {
                id: set.id.clone(),
                label: Some("Green".to_string()),
                desired_count: set.desired_count.into(),
                running_count: set.running_count.into(),
                status: None,
                target_group: None,
                traffic_weight: 0.0,
            };
            (info, set.target_group_arn)
        }
    };
    let (green, target_group_arn) = green;
    let settings = &app.health;
    let interval = Duration::from_millis(settings.interval_ms);

    if settings.check_task_set {
        let result = checks::task_set(
            deps.ecs.as_ref(),
            &group.cluster,
            &group.service,
            &green.id,
            interval,
            deadline,
        )
        .await;
        if !push(found, result) {
            return Ok(());
        }
    }
    if settings.check_target_health {
        let result = match &target_group_arn {
            Some(arn) => checks::target_health(deps.elb.as_ref(), arn, interval, deadline).await,
            None => CheckResult {
                check: "target_health",
                passed: false,
                detail: "the green task set has no target group".to_string(),
            },
        };
        if !push(found, result) {
            return Ok(());
        }
    }
    if settings.check_http {
        let (url, through_listener) = match &settings.url {
            Some(url) => (url.clone(), false),
            None => {
                let listener = group.test_listeners.first().ok_or_else(|| {
                    Unfit::Unexpected(format!(
                        "deployment group {} has no test listener and apps.{}.health.url is not set",
                        deployment.deployment_group, app.name
                    ))
                })?;
                let endpoint = deps.elb.listener_endpoint(listener).await?;
                if endpoint.protocol.eq_ignore_ascii_case("HTTPS") && settings.host.is_none() {
                    push(found, CheckResult {
                        check: "http_probe",
                        passed: false,
                        detail: format!(
                            "the test listener is HTTPS: its certificate cannot be checked against the load balancer's name {}; set apps.{}.health.host to the name it is for",
                            endpoint.host, app.name
                        ),
                    });
                    return Ok(());
                }
                (endpoint.url(&settings.path), true)
            }
        };
        let mut result = checks::http_probe(deps.prober.as_ref(), &url, settings, deadline).await;
        // What a listener answers when no rule matches the host: its default action.
        let unrouted = ["HTTP 404", "HTTP 421", "HTTP 503"]
            .iter()
            .any(|status| result.detail.contains(&format!("(last: {status},")));
        if !result.passed && through_listener && settings.host.is_none() && unrouted {
            result.detail.push_str(&format!(
                " (if the test listener routes by host header, set apps.{}.health.host)",
                app.name
            ));
        }
        push(found, result);
    }
    Ok(())
}

/// Records a check; whether the next one should run.
fn push(found: &mut Findings, result: CheckResult) -> bool {
    let passed = result.passed;
    found.checks.push(result);
    passed
}
