//! The checks of the green task set, each polled until it passes, fails for good, or the
//! budget runs out.

use std::time::Duration;

use greenlight_shared::aws::ecs::TaskSetsApi;
use greenlight_shared::aws::elb::LoadBalancingApi;
use greenlight_shared::config::HealthSettings;
use serde::Serialize;
use tokio::time::{sleep, Instant};

use crate::probe::Prober;

/// The result of one check, logged as fields and returned in the hook's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub check: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl CheckResult {
    fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            passed: true,
            detail: detail.into(),
        }
    }
    fn fail(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            passed: false,
            detail: detail.into(),
        }
    }
}

/// Waits `interval`, unless that would pass the deadline.
async fn wait_or_give_up(interval: Duration, deadline: Instant) -> bool {
    if Instant::now() + interval >= deadline {
        return false;
    }
    sleep(interval).await;
    true
}

/// The green task set is STEADY_STATE and runs its desired count.
pub async fn task_set(
    ecs: &dyn TaskSetsApi,
    cluster: &str,
    service: &str,
    task_set_id: &str,
    interval: Duration,
    deadline: Instant,
) -> CheckResult {
    const NAME: &str = "task_set";
    loop {
        let last = match ecs
            .task_sets(cluster, service, &[task_set_id.to_string()])
            .await
        {
            Err(e) => return CheckResult::fail(NAME, e.to_string()),
            Ok(sets) => match sets
                .into_iter()
                .find(|t| t.id == task_set_id || task_set_id.ends_with(&t.id))
            {
                None => {
                    return CheckResult::fail(NAME, format!("task set {task_set_id} not found"))
                }
                Some(t) => {
                    let steady = t.stability.as_deref() == Some("STEADY_STATE");
                    let detail = format!(
                        "{} running {}/{} ({})",
                        t.id,
                        t.running_count,
                        t.desired_count,
                        t.stability.as_deref().unwrap_or("stability unknown")
                    );
                    // A set that wants no task, or runs fewer than it wants, is not ready.
                    if steady && t.desired_count > 0 && t.running_count >= t.desired_count {
                        return CheckResult::pass(NAME, detail);
                    }
                    detail
                }
            },
        };
        if !wait_or_give_up(interval, deadline).await {
            return CheckResult::fail(NAME, format!("not ready before the deadline: {last}"));
        }
    }
}

/// Every registered target of the green target group is healthy (and there is at least one).
pub async fn target_health(
    elb: &dyn LoadBalancingApi,
    target_group_arn: &str,
    interval: Duration,
    deadline: Instant,
) -> CheckResult {
    const NAME: &str = "target_health";
    // `arn:...:targetgroup/<name>/<id>`: the name reads better in the verdict.
    let target_group = target_group_arn
        .split('/')
        .nth(1)
        .unwrap_or(target_group_arn);
    loop {
        let last = match elb.target_health(target_group_arn).await {
            Err(e) => return CheckResult::fail(NAME, e.to_string()),
            Ok(targets) if targets.is_empty() => format!("no targets registered in {target_group}"),
            Ok(targets) => {
                let unhealthy: Vec<String> = targets
                    .iter()
                    .filter(|t| t.state != "healthy")
                    .map(|t| match &t.reason {
                        Some(r) => format!("{} {} ({r})", t.id, t.state),
                        None => format!("{} {}", t.id, t.state),
                    })
                    .collect();
                if unhealthy.is_empty() {
                    return CheckResult::pass(
                        NAME,
                        format!(
                            "{} of {} targets healthy in {target_group}",
                            targets.len(),
                            targets.len()
                        ),
                    );
                }
                format!(
                    "{} of {} targets not healthy in {target_group}: {}",
                    unhealthy.len(),
                    targets.len(),
                    unhealthy.join(", ")
                )
            }
        };
        if !wait_or_give_up(interval, deadline).await {
            return CheckResult::fail(NAME, format!("not healthy before the deadline: {last}"));
        }
    }
}

/// The URL answers the expected status `successes` times in a row; `failures` bad answers in a
/// row fail at once.
pub async fn http_probe(
    prober: &dyn Prober,
    url: &str,
    settings: &HealthSettings,
    deadline: Instant,
) -> CheckResult {
    let host = settings.host.as_deref();
    const NAME: &str = "http_probe";
    let timeout = Duration::from_millis(settings.timeout_ms);
    let interval = Duration::from_millis(settings.interval_ms);
    let (mut good, mut bad, mut attempts) = (0u32, 0u32, 0u32);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return CheckResult::fail(NAME, format!("{url}: {good}/{} good answers in a row when the budget ran out after {attempts} probes", settings.successes));
        }
        attempts += 1;
        let answer = prober.get(url, host, timeout.min(remaining)).await;
        let last = match answer {
            Ok(status) if status == settings.expect_status => {
                good += 1;
                bad = 0;
                if good >= settings.successes {
                    return CheckResult::pass(
                        NAME,
                        format!("{url}: HTTP {status} {good} times in a row"),
                    );
                }
                format!("HTTP {status}")
            }
            Ok(status) => {
                good = 0;
                bad += 1;
                format!("HTTP {status}, expected {}", settings.expect_status)
            }
            Err(why) => {
                good = 0;
                bad += 1;
                why
            }
        };
        if bad >= settings.failures {
            return CheckResult::fail(
                NAME,
                format!("{url}: {bad} failed probes in a row (last: {last})"),
            );
        }
        if !wait_or_give_up(interval, deadline).await {
            return CheckResult::fail(
                NAME,
                format!(
                    "{url}: {good}/{} good answers in a row when the budget ran out (last: {last})",
                    settings.successes
                ),
            );
        }
    }
}
