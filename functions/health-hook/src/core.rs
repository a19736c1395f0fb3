//! What both engines' hooks share: the dependencies, the errors that fail an invocation, and
//! the message of a panic caught in a round of checks.

use std::sync::Arc;
use std::time::Duration;

use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::aws::ecs::TaskSetsApi;
use greenlight_shared::aws::elb::LoadBalancingApi;
use greenlight_shared::ledger::Ledger;
use greenlight_shared::{AwsError, Config};

use crate::probe::Prober;

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    pub ecs: Arc<dyn TaskSetsApi>,
    pub elb: Arc<dyn LoadBalancingApi>,
    pub prober: Arc<dyn Prober>,
    /// Where the verdict's reason is kept for the notifier (optional).
    pub ledger: Option<Arc<dyn Ledger>>,
    /// Time kept in reserve before the Lambda deadline to report the verdict.
    pub safety_margin: Duration,
}

impl greenlight_shared::startup::UsesConfig for Deps {
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("malformed lifecycle event: {0}")]
    MalformedEvent(String),
    /// The verdict could not be delivered: failing the invocation lets Lambda retry it.
    #[error("could not report {verdict} to CodeDeploy: {source}")]
    Report {
        verdict: &'static str,
        #[source]
        source: AwsError,
    },
}

impl From<HookError> for lambda_runtime::Diagnostic {
    fn from(e: HookError) -> Self {
        let error_type = match e {
            HookError::Report { .. } => "HookReportFailed",
            HookError::MalformedEvent(_) => "MalformedEvent",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: e.to_string(),
        }
    }
}

/// The message of a panic, clipped (it is logged and sent to CodeDeploy's console).
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string());
    text.chars().take(200).collect()
}

/// A ledger write for the notifier that the answer does not wait for: done by `until`, or
/// skipped with one warning line.
pub async fn record_briefly(
    write: impl std::future::Future<Output = Result<(), greenlight_shared::ledger::LedgerError>>,
    until: tokio::time::Instant,
    what: &str,
) {
    match tokio::time::timeout_at(until, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not record {what} in the release ledger"),
        Err(_) => tracing::warn!("recording {what} in the release ledger took too long: skipped"),
    }
}

/// The checks after which an engine holds a release for a person's approval (CodeDeploy's
/// wait before rerouting follows AfterAllowTestTraffic; ECS's pause hook at
/// PRE_PRODUCTION_TRAFFIC_SHIFT follows POST_TEST_TRAFFIC_SHIFT).
const BEFORE_PRODUCTION: [&str; 2] = ["AfterAllowTestTraffic", "POST_TEST_TRAFFIC_SHIFT"];

/// Green passed the last check before production traffic of an app that asks for approval:
/// records the wait the decision binds to (the deployment, and when the engine's timeout
/// rolls it back). Written after the verdict, within the same budget; without it no decision
/// is taken and the engine's timeout rolls the release back, never forward.
pub async fn record_approval_wait(
    deps: &Deps,
    app: &str,
    digest: &str,
    stage: &str,
    deployment_id: &str,
    until: tokio::time::Instant,
) {
    let (Some(config), Some(ledger)) = (deps.config.app_named(app), &deps.ledger) else {
        return;
    };
    if !config.approval.required || !BEFORE_PRODUCTION.contains(&stage) {
        return;
    }
    let wait = greenlight_shared::ledger::Wait {
        deployment_id: deployment_id.to_string(),
        expires_at: chrono::Utc::now()
            + chrono::Duration::minutes(i64::from(config.approval.timeout_minutes)),
    };
    let write = ledger.record_approval_wait(app, digest, &wait);
    record_briefly(write, until, "the approval's wait").await;
    tracing::info!(app = %app, deployment_id = %deployment_id, expires_at = %wait.expires_at.to_rfc3339(),
                   "green passed: the release waits for approval");
}
