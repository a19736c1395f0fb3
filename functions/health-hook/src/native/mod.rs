//! The hook for native ECS blue/green deployments.
//!
//! ECS invokes the hook at each lifecycle stage it is registered for, and invokes it again
//! after `callBackDelay` while it answers `IN_PROGRESS`. So the hook never waits through a
//! check window: each invocation makes one round of the same checks as for CodeDeploy (green's
//! tasks running, its targets healthy, the HTTP probe through the test listener rule or
//! `health.url`), keeps its counters in `hookDetails` and answers at once. A ten-minute check
//! costs seconds of Lambda time.
//!
//! By stage ([`Stage`]): green is checked at `POST_TEST_TRAFFIC_SHIFT` (test traffic reaches
//! it, production does not yet), and at the production traffic stages when
//! `health.check_production` is set; every other stage has nothing to check and is answered
//! `SUCCEEDED` at once without a call. A deployment that is rolling back is never stalled or
//! failed: ECS runs the traffic-shift hooks again during a rollback, and they answer
//! `SUCCEEDED` at once.
//!
//! Nothing that decides what is checked is taken from the event's `hookDetails` (anyone
//! allowed to invoke the hook can write them): they carry only the execution, the revision
//! they count for, times and counters. The release (from the target revision's task
//! definition, which carries the `greenlight:app|version|digest` tags the deployer writes),
//! its green target group and the URL to probe (from the config and the service's test
//! listener) are read again every round, and the service deployment must name the event's
//! target revision and service. A revision without the tags is not a release of Greenlight's
//! and is failed as unmanaged. Every answer is one of `SUCCEEDED`, `FAILED` or `IN_PROGRESS`:
//! an error or a panic in a round is `FAILED` with the reason, a round cut short by the
//! deadline or a throttled call is `IN_PROGRESS` (the next round tries again) until
//! `health.window_s` has passed since the first round.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use greenlight_shared::ecs_hook::{service_of, EcsHookAnswer, EcsHookEvent, HookStatus};
use greenlight_shared::events::clipped;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::model::{phase_of, EngineKind, Phase};
use greenlight_shared::AwsErrorKind;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::checks;
use crate::core::{record_approval_wait, record_briefly, Deps, HookError};
use release::{arn_service, continues_after, find_release, Release};

mod release;
mod rule;

pub use rule::listener_of_rule;

/// The longest ECS runs a lifecycle stage: progress that claims to be older is not ECS's.
const STAGE_MAX_MS: i64 = 24 * 3600 * 1000;

/// The window when the app cannot be told (its release could not be read).
const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Time kept before the deadline for the answer (there is no report call to make), and for
/// keeping a verdict's reason in the ledger.
const ANSWER_GUARD: Duration = Duration::from_millis(500);
const VERDICT_RECORD_BUDGET: Duration = Duration::from_secs(1);

/// Where the progress lives in `hookDetails` (the hook's own configured details sit beside it).
const DETAILS_KEY: &str = "greenlight";

/// What one hook execution has counted so far, returned in `hookDetails` and read back: times
/// and counters only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The hook execution and the revision it counts for: progress of another is not trusted.
    pub execution: String,
    #[serde(default)]
    pub revision: String,
    /// The stage it counts at: a later stage checks afresh.
    #[serde(default)]
    pub stage: String,
    pub started_ms: i64,
    pub rounds: u32,
    /// Consecutive good and bad probe answers.
    pub good: u32,
    pub bad: u32,
    /// What the last round found.
    pub last: Option<String>,
    /// Green's share of production traffic the counters are for: each step of a linear or
    /// canary deployment is checked afresh.
    #[serde(default)]
    pub weight: Option<f64>,
}

impl Progress {
    /// The progress `hookDetails` holds for this execution, or a fresh one.
    fn of(event: &EcsHookEvent, now_ms: i64) -> Self {
        let revision = &event.execution_details.target_service_revision_arn;
        event
            .hook_details
            .as_ref()
            .and_then(|d| d.get(DETAILS_KEY))
            .and_then(|p| serde_json::from_value::<Progress>(p.clone()).ok())
            .filter(|p| {
                p.execution == event.execution_id
                    && p.revision == *revision
                    && p.stage == event.lifecycle_stage
                    && p.started_ms <= now_ms
                    && now_ms - p.started_ms <= STAGE_MAX_MS
                    && p.good <= p.rounds
                    && p.bad <= p.rounds
            })
            .unwrap_or_else(|| Progress {
                execution: event.execution_id.clone(),
                revision: revision.clone(),
                stage: event.lifecycle_stage.clone(),
                started_ms: now_ms,
                ..Progress::default()
            })
    }
}

/// A lifecycle stage, as far as checking green goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Test traffic reaches green and production does not: the check before production.
    PostTestTraffic,
    /// Production traffic is moving to green, or has moved.
    Production,
    /// Green has no traffic to be probed through yet (or the stage is unknown to the hook).
    NothingToCheck,
}

impl Stage {
    pub fn of(name: &str) -> Self {
        match name {
            "POST_TEST_TRAFFIC_SHIFT" => Self::PostTestTraffic,
            "PRODUCTION_TRAFFIC_SHIFT" | "POST_PRODUCTION_TRAFFIC_SHIFT" => Self::Production,
            _ => Self::NothingToCheck,
        }
    }
}

/// What one round came to.
#[derive(Debug)]
enum Round {
    Passed,
    NotYet(String),
    Failed(String),
    /// Nothing to check here (a rollback under way, a production stage not checked).
    Skip(String),
}

/// Reads an ECS lifecycle hook invocation; anything else is a `MalformedEvent` with a short
/// reason that repeats none of its values.
pub fn parse_ecs_event(payload: serde_json::Value) -> Result<EcsHookEvent, HookError> {
    let event: EcsHookEvent = serde_json::from_value(payload).map_err(|e| {
        HookError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
    })?;
    match event.problem() {
        Some(problem) => Err(HookError::MalformedEvent(problem.to_string())),
        None => Ok(event),
    }
}

/// Answers when the hook cannot run its checks (its config could not be loaded): FAILED, with
/// the reason, so ECS rolls back rather than wait for the hook's timeout.
pub fn answer_unusable(event: &EcsHookEvent, reason: &str) -> EcsHookAnswer {
    if Stage::of(&event.lifecycle_stage) == Stage::NothingToCheck {
        return nothing_to_check(event);
    }
    warn!(deployment = %event.resource_arn, stage = %event.lifecycle_stage, reason = %reason,
          verdict = "FAILED", "verdict");
    EcsHookAnswer {
        hook_status: HookStatus::Failed,
        call_back_delay: None,
        hook_details: Some(serde_json::json!({ DETAILS_KEY: { "reason": reason } })),
    }
}

/// One invocation: one round of checks, then SUCCEEDED, FAILED or IN_PROGRESS.
pub async fn handle_native(
    deps: &Deps,
    event: &EcsHookEvent,
    invocation: &Invocation,
) -> EcsHookAnswer {
    let stage = Stage::of(&event.lifecycle_stage);
    // No app checks the production stages: nothing to read there either (a rollback that
    // runs the hook again there is never held up by a read that fails).
    let production_checked = deps.config.apps.iter().any(|a| a.health.check_production);
    if stage == Stage::NothingToCheck || stage == Stage::Production && !production_checked {
        return nothing_to_check(event);
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut progress = Progress::of(event, now_ms);
    progress.rounds += 1;
    let mut release = None;
    let deadline = invocation.deadline_minus(ANSWER_GUARD + VERDICT_RECORD_BUDGET);
    let outcome = tokio::time::timeout_at(
        deadline,
        AssertUnwindSafe(round(
            deps,
            event,
            stage,
            &invocation.function_arn,
            &mut progress,
            &mut release,
            deadline,
        ))
        .catch_unwind(),
    )
    .await;
    let round = match outcome {
        Ok(Ok(round)) => round,
        Ok(Err(_)) => Round::Failed("a check failed unexpectedly (panic)".to_string()),
        Err(_) => Round::NotYet("the round did not finish before the invocation's deadline".into()),
    };
    let app = release
        .as_ref()
        .and_then(|r: &Release| deps.config.app_named(&r.app));
    let mut window = app.map_or(DEFAULT_WINDOW, |a| Duration::from_secs(a.health.window_s));
    if let Some(continues) = release.as_ref().and_then(|r| r.continues_after) {
        // The last answer must reach ECS before it goes on unchecked: two callback delays early.
        let interval = Duration::from_secs(callback_delay(deps, release.as_ref()));
        window = window.min(continues.saturating_sub(interval * 2));
    }
    let elapsed = Duration::from_millis((now_ms - progress.started_ms).max(0) as u64);
    let (status, reason, verdict) = match round {
        Round::Passed => (HookStatus::Succeeded, "all checks passed".to_string(), true),
        Round::Skip(why) => (HookStatus::Succeeded, why, false),
        Round::Failed(why) => (HookStatus::Failed, why, true),
        Round::NotYet(why) if elapsed >= window => (
            HookStatus::Failed,
            format!(
                "not ready {} s after the first check: {why}",
                elapsed.as_secs()
            ),
            true,
        ),
        Round::NotYet(why) => (HookStatus::InProgress, why, false),
    };
    progress.last = Some(reason.clone());
    let (app, version) = release
        .as_ref()
        .map(|r| (r.app.as_str(), r.version.as_deref().unwrap_or("")))
        .unwrap_or_default();
    info!(deployment = %event.resource_arn, stage = %event.lifecycle_stage, app = %app, version = %version,
          round = progress.rounds, verdict = ?status, reason = %reason, "round");
    if verdict {
        if let Some(release) = &release {
            record_verdict(
                deps,
                event,
                release,
                status == HookStatus::Succeeded,
                &reason,
            )
            .await;
        }
    }
    if let (HookStatus::InProgress, Some(release)) = (status, &release) {
        record_round(deps, event, release, progress.rounds, &reason).await;
    }
    let delay = match status {
        HookStatus::InProgress => Some(callback_delay(deps, release.as_ref())),
        _ => None,
    };
    EcsHookAnswer {
        hook_status: status,
        call_back_delay: delay,
        hook_details: Some(serde_json::json!({ DETAILS_KEY: progress })),
    }
}

/// SUCCEEDED at once, without a call: green cannot be (or is not to be) checked here.
fn nothing_to_check(event: &EcsHookEvent) -> EcsHookAnswer {
    info!(deployment = %event.resource_arn, stage = %event.lifecycle_stage, verdict = "SUCCEEDED",
          "nothing to check at this stage");
    EcsHookAnswer {
        hook_status: HookStatus::Succeeded,
        call_back_delay: None,
        hook_details: Some(serde_json::json!({ DETAILS_KEY: {
            "last": format!("nothing to check at {}", clipped(&event.lifecycle_stage, 64))
        } })),
    }
}

/// The app's probe interval, in whole seconds (ECS counts in seconds), at least one.
fn callback_delay(deps: &Deps, release: Option<&Release>) -> u64 {
    let interval_ms = release
        .and_then(|r| deps.config.app_named(&r.app))
        .map(|a| a.health.interval_ms)
        .unwrap_or(5_000);
    interval_ms.div_ceil(1000).max(1)
}

/// Keeps the verdict's reason for the notifier, best effort and briefly.
async fn record_verdict(
    deps: &Deps,
    event: &EcsHookEvent,
    release: &Release,
    passed: bool,
    reason: &str,
) {
    if let (Some(ledger), Some(digest)) = (&deps.ledger, &release.digest) {
        let stage = &event.lifecycle_stage;
        let until = Instant::now() + VERDICT_RECORD_BUDGET;
        let write = ledger.record_hook_verdict(&release.app, digest, stage, passed, reason);
        record_briefly(write, until, "the verdict").await;
        if passed {
            record_approval_wait(
                deps,
                &release.app,
                digest,
                stage,
                &event.resource_arn,
                until,
            )
            .await;
        }
    }
}

/// Notes a round that did not decide yet, for the release's Slack message.
async fn record_round(
    deps: &Deps,
    event: &EcsHookEvent,
    release: &Release,
    round: u32,
    found: &str,
) {
    if let (Some(ledger), Some(digest)) = (&deps.ledger, &release.digest) {
        let stage = &event.lifecycle_stage;
        let write = ledger.record_hook_round(&release.app, digest, stage, round, found);
        record_briefly(write, Instant::now() + VERDICT_RECORD_BUDGET, "the round").await;
    }
}

/// A call that failed: for good when what it names does not exist or may not be read,
/// otherwise (throttled, unavailable) the next round tries again.
fn call_failed(e: greenlight_shared::AwsError) -> Round {
    match e.kind {
        AwsErrorKind::NotFound | AwsErrorKind::AccessDenied | AwsErrorKind::Invalid => {
            Round::Failed(e.to_string())
        }
        _ => Round::NotYet(e.to_string()),
    }
}

macro_rules! or_round {
    ($call:expr) => {
        match $call {
            Ok(value) => value,
            Err(e) => return call_failed(e),
        }
    };
}

async fn round(
    deps: &Deps,
    event: &EcsHookEvent,
    stage: Stage,
    function_arn: &str,
    progress: &mut Progress,
    found: &mut Option<Release>,
    deadline: Instant,
) -> Round {
    let details = &event.execution_details;
    // The deployment, its service and its revision must be one: the event is not trusted to
    // pair them.
    let same_service = match (
        arn_service(&event.resource_arn, "service-deployment"),
        service_of(&details.service_arn),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    if !same_service {
        return Round::Failed(
            "the event's service deployment is not of the event's service".to_string(),
        );
    }
    let deployment = or_round!(deps.ecs.service_deployment(&event.resource_arn).await);
    let phase = phase_of(EngineKind::Ecs, &deployment.status);
    if phase.is_some_and(Phase::is_rollback) {
        return Round::Skip(format!(
            "the service deployment is {}: nothing to check while it rolls back",
            deployment.status
        ));
    }
    if deployment
        .target_revision
        .as_deref()
        .is_some_and(|r| r != details.target_service_revision_arn)
    {
        return Round::Failed(
            "the service deployment does not deploy the event's target revision".to_string(),
        );
    }
    if phase != Some(Phase::Forward) {
        return Round::Failed(format!(
            "the service deployment is {}{}",
            deployment.status,
            deployment
                .status_reason
                .map(|r| format!(": {}", clipped(&r, 200)))
                .unwrap_or_default()
        ));
    }
    let weight = deployment.position.weight;
    if stage == Stage::Production && progress.weight != weight {
        // A new step of production traffic (or the first read of it): its own checks.
        if progress.weight.is_some() {
            let now_ms = chrono::Utc::now().timestamp_millis();
            *progress = Progress {
                execution: progress.execution.clone(),
                revision: progress.revision.clone(),
                stage: progress.stage.clone(),
                started_ms: now_ms,
                rounds: 1,
                ..Progress::default()
            };
        }
        progress.weight = weight;
    }
    let Some((cluster, service_name)) = service_of(&details.service_arn) else {
        return Round::Failed("the event names no valid service".to_string());
    };
    let service = or_round!(deps.ecs.service(cluster, service_name).await);
    let release = match find_release(deps, event, &service).await {
        Ok(mut release) => {
            release.continues_after =
                continues_after(&service, function_arn, &event.lifecycle_stage);
            found.insert(release)
        }
        Err(unfit) => return unfit,
    };
    let Some(app) = deps.config.app_named(&release.app) else {
        return Round::Failed("the app of this release left the config".to_string());
    };
    let settings = &app.health;
    if stage == Stage::Production && !settings.check_production {
        return Round::Skip(format!(
            "apps.{}.health.check_production is not set: nothing to check at {}",
            app.name, event.lifecycle_stage
        ));
    }
    if settings.check_task_set {
        let (running, wanted) = (deployment.running_tasks, deployment.requested_tasks);
        if wanted == 0 || running < wanted {
            return Round::NotYet(format!("green runs {running} of {wanted} tasks"));
        }
    }
    if settings.check_target_health {
        let Some(target_group) = release.target_group.as_deref() else {
            return Round::Failed("the green revision has no target group".to_string());
        };
        // One read: `now` as the deadline makes the check answer without waiting.
        let health = checks::target_health(
            deps.elb.as_ref(),
            target_group,
            Duration::ZERO,
            Instant::now(),
        )
        .await;
        if !health.passed {
            return Round::NotYet(health.detail);
        }
    }
    if settings.check_http {
        let Some(url) = release.url.clone() else {
            return Round::Failed("no URL to probe".to_string());
        };
        let timeout = Duration::from_millis(settings.timeout_ms)
            .min(deadline.saturating_duration_since(Instant::now()));
        let answer = deps
            .prober
            .get(&url, release.probe_host.as_deref(), timeout)
            .await;
        let last = match answer {
            Ok(status) if status == settings.expect_status => {
                progress.good += 1;
                progress.bad = 0;
                format!("HTTP {status}")
            }
            Ok(status) => {
                progress.good = 0;
                progress.bad += 1;
                format!("HTTP {status}, expected {}", settings.expect_status)
            }
            Err(why) => {
                progress.good = 0;
                progress.bad += 1;
                why
            }
        };
        if progress.bad >= settings.failures {
            return Round::Failed(format!(
                "http_probe failed: {url}: {} failed probes in a row (last: {last})",
                progress.bad
            ));
        }
        if progress.good < settings.successes {
            return Round::NotYet(format!(
                "{url}: {}/{} good answers in a row (last: {last})",
                progress.good, settings.successes
            ));
        }
    }
    Round::Passed
}
