//! The vocabulary every part of Greenlight shares: how a release stands, which engine deploys a
//! service, how an ECS ARN names its service, and which service deployment statuses hold a
//! service or have ended. A leaf: it imports nothing of Greenlight's, so every module may
//! depend on it and none of it depends back.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Claimed,
    Registered,
    Pending,
    Deploying,
    Succeeded,
    Failed,
    Stopped,
    Superseded,
    /// The service already ran this digest when the push arrived.
    AlreadyRunning,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Registered => "registered",
            Self::Pending => "pending",
            Self::Deploying => "deploying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Superseded => "superseded",
            Self::AlreadyRunning => "already_running",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Claimed,
            Self::Registered,
            Self::Pending,
            Self::Deploying,
            Self::Succeeded,
            Self::Failed,
            Self::Stopped,
            Self::Superseded,
            Self::AlreadyRunning,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether an invocation holding the claim still has work to do.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Claimed | Self::Registered)
    }

    /// Whether the release has ended (nothing will happen to it any more).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Stopped
                | Self::Superseded
                | Self::AlreadyRunning
        )
    }
}

/// Which engine deploys a service (`engine = "codedeploy" | "ecs"` pins it in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    CodeDeploy,
    Ecs,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CodeDeploy => "CodeDeploy",
            Self::Ecs => "ECS blue/green",
        })
    }
}

/// `arn:aws:ecs:<region>:<account>:service-deployment/<cluster>/<service>/<id>`.
pub fn is_service_deployment_arn(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":service-deployment/")
}

/// The (cluster, service) a service deployment ARN or a service ARN
/// (`…:service/<cluster>/<service>`) names.
pub fn service_of_arn(arn: &str) -> Option<(&str, &str)> {
    let (_, path) = arn
        .split_once(":service-deployment/")
        .or_else(|| arn.split_once(":service/"))?;
    let mut parts = path.split('/');
    let (cluster, service) = (parts.next()?, parts.next()?);
    (!cluster.is_empty() && !service.is_empty()).then_some((cluster, service))
}

/// Service deployment statuses that hold the service (a rollback holds it until it ends): the
/// filter of the busy check.
pub const ACTIVE_SERVICE_DEPLOYMENT: &[&str] = &[
    "PENDING",
    "IN_PROGRESS",
    "STOP_REQUESTED",
    "ROLLBACK_REQUESTED",
    "ROLLBACK_IN_PROGRESS",
];

/// The statuses a service deployment ends in. Any other (one ECS adds later, or none) is
/// taken as still running: a deployment is never finished, nor deployed over, on a guess.
pub const ENDED_SERVICE_DEPLOYMENT: &[&str] = &[
    "SUCCESSFUL",
    "STOPPED",
    "ROLLBACK_SUCCESSFUL",
    "ROLLBACK_FAILED",
];
