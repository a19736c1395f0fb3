//! What every job of the deployer shares: its dependencies, its errors, what it answers, and
//! the small facts of an invocation (where it runs, its lease, the image's provenance).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::aws::ecr::RegistryApi;
use greenlight_shared::aws::ecs::EcsApi;
use greenlight_shared::engine::EngineKind;
use greenlight_shared::events::{ImagePush, Location};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, LedgerError};
use greenlight_shared::queue::Lease;
use greenlight_shared::task_definition::RewriteError;
use greenlight_shared::{AwsError, AwsErrorKind, Config};
use serde::Serialize;
use tracing::warn;

/// How long after an invocation's deadline its claims and queue lease stay its own: Lambda
/// has stopped it by then; the margin covers clock differences between hosts.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    pub ecs: Arc<dyn EcsApi>,
    /// Where the provenance of a pushed image is read.
    pub registry: Arc<dyn RegistryApi>,
    pub ledger: Arc<dyn Ledger>,
    /// Name or ARN of the health-hook function, written into each AppSpec.
    pub hook_function: String,
    /// How long past its deadline an invocation's leases last ([`LEASE_MARGIN`] in Lambda).
    pub lease_margin: Duration,
    /// The first pause before a native end event is read back again ([`READBACK_PAUSE`] in
    /// Lambda); each next pause is twice as long.
    pub readback_pause: Duration,
    /// The engines' waits for approval (`greenlight approve|reject`).
    pub gates: greenlight_shared::approval::EngineGates,
}

impl greenlight_shared::startup::UsesConfig for Deps {
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    #[error("cannot tell the account this function runs in from its ARN `{0}`")]
    UnknownLocation(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(
        "ECS service {cluster}/{service} has no load-balanced container: blue/green needs one"
    )]
    NoLoadBalancer { cluster: String, service: String },
    #[error("ECS service {cluster}/{service} is not deployed by a traffic-shifting engine (its deployment controller is neither CODE_DEPLOY nor ECS with the BLUE_GREEN, LINEAR or CANARY strategy)")]
    NotBlueGreen { cluster: String, service: String },
    #[error("app `{app}` pins engine {pinned}, but its service is deployed by {found}")]
    EngineMismatch {
        app: String,
        pinned: EngineKind,
        found: EngineKind,
    },
    #[error("ECS service {cluster}/{service} is deployed by CodeDeploy: name its deployment group in the config (apps.{app}.application, deployment_group)")]
    NoDeploymentGroup {
        app: String,
        cluster: String,
        service: String,
    },
    #[error("app `{app}` asks for approval (apps.{app}.approval.required), but {engine_setting}: nothing would hold the release for a decision, so it is not deployed")]
    NoApprovalWait { app: String, engine_setting: String },
    #[error("the queue of app {0} kept changing under contention")]
    Contention(String),
    #[error("no app named `{0}` in the config")]
    UnknownApp(String),
    #[error("{0}")]
    ReleaseNotFound(String),
}

impl DeployError {
    pub(crate) fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedEvent(_) => "MalformedEvent",
            Self::UnknownLocation(_) => "UnknownLocation",
            Self::Aws(e) => match e.kind {
                AwsErrorKind::NotFound => "AwsResourceNotFound",
                AwsErrorKind::AccessDenied => "AwsAccessDenied",
                AwsErrorKind::Throttled => "AwsThrottled",
                _ => "AwsError",
            },
            Self::Ledger(_) => "LedgerUnavailable",
            Self::Rewrite(_) => "TaskDefinitionRewrite",
            Self::NoLoadBalancer { .. } => "NoLoadBalancer",
            Self::NotBlueGreen { .. } => "NotBlueGreen",
            Self::EngineMismatch { .. } => "EngineMismatch",
            Self::NoDeploymentGroup { .. } => "NoDeploymentGroup",
            Self::NoApprovalWait { .. } => "NoApprovalWait",
            Self::Contention(_) => "LedgerContention",
            Self::UnknownApp(_) => "UnknownApp",
            Self::ReleaseNotFound(_) => "ReleaseNotFound",
        }
    }

    /// Whether retrying cannot help: the release is closed as failed rather than holding the
    /// queue for ever.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Self::Aws(e) => matches!(
                e.kind,
                AwsErrorKind::NotFound | AwsErrorKind::AccessDenied | AwsErrorKind::Invalid
            ),
            Self::Rewrite(_)
            | Self::NoLoadBalancer { .. }
            | Self::NotBlueGreen { .. }
            | Self::EngineMismatch { .. }
            | Self::NoDeploymentGroup { .. }
            | Self::NoApprovalWait { .. } => true,
            _ => false,
        }
    }
}

impl From<DeployError> for lambda_runtime::Diagnostic {
    fn from(e: DeployError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What the deployer did with an event (also the invocation's response payload).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Skipped {
        reason: String,
    },
    Deployed {
        app: String,
        version: String,
        digest: String,
        task_definition: String,
        deployment_id: String,
    },
    AlreadyRunning {
        app: String,
        version: String,
    },
    Waiting {
        app: String,
        version: String,
        replaced: Option<String>,
    },
    Superseded {
        app: String,
        version: String,
        by: String,
    },
    Duplicate {
        app: String,
        version: String,
        status: String,
    },
    InProgressElsewhere {
        app: String,
        version: String,
    },
    Finished {
        app: String,
        deployment_id: String,
        next: Option<Box<Outcome>>,
    },
    /// The periodic sweep: what it found to do in each app's queue.
    Swept {
        apps: usize,
        actions: Vec<Outcome>,
    },
    /// An operator's request to deploy: the release it resolved to, and what became of it.
    Requested {
        request_id: String,
        version: String,
        digest: String,
        result: Box<Outcome>,
    },
    /// An operator's approve or reject: what came of it.
    Decided {
        app: String,
        request_id: String,
        /// `approved`, `rejected`, `already_decided` or `refused`.
        decision: String,
        /// The sentence for the operator.
        said: String,
    },
    /// What a deploy of the release would do (an operator's `plan`); nothing was written.
    Planned {
        app: String,
        version: String,
        digest: String,
        /// The revision the service runs, which the new one is made from.
        task_definition: String,
        /// One line per difference between the two revisions.
        changes: Vec<String>,
        /// The engine that would deploy it.
        engine: EngineKind,
        /// The AppSpec a CodeDeploy deployment would carry (its new revision is named when
        /// registered); null for ECS blue/green, which deploys the revision itself.
        appspec: serde_json::Value,
        /// How ECS would move production traffic (the service's own settings, in words); null
        /// for CodeDeploy, whose deployment configuration the AppSpec's group names.
        rollout: Option<String>,
        /// The service runs this image already (a deploy would replace its tasks).
        already_running: bool,
    },
}

/// The account and region the function runs in, from its ARN.
pub(crate) fn location(invocation: &Invocation) -> Result<Location, DeployError> {
    Location::from_function_arn(&invocation.function_arn)
        .ok_or_else(|| DeployError::UnknownLocation(invocation.function_arn.clone()))
}

pub(crate) fn lease_of(deps: &Deps, invocation: &Invocation) -> Lease {
    Lease {
        owner: invocation.request_id.clone(),
        until_ms: (invocation.deadline_ms + deps.lease_margin.as_millis() as u64) as i64,
        now_ms: Utc::now().timestamp_millis(),
    }
}

/// The push with who shipped it, as the image's annotations say. Best effort: provenance is
/// for people, so an image that cannot be read deploys without it (one warning line) rather
/// than wait for it.
pub(crate) async fn with_provenance(deps: &Deps, mut push: ImagePush) -> ImagePush {
    match deps
        .registry
        .provenance(&push.repository, &push.digest)
        .await
    {
        Ok(provenance) => push.provenance = provenance,
        Err(e) => warn!(app = %push.app, version = %push.version, error = %e,
                        "provenance unavailable: deploying without it"),
    }
    push
}
