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

/// Where a deployment stands, whichever engine runs it: the one reading of a status that the
/// deployer (busy or ended, and what the ledger records), the hook (is green to be checked) and
/// the notifier (what Slack says) all share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Moving to the new release (CodeDeploy's Created … Ready, ECS's PENDING, IN_PROGRESS).
    Forward,
    /// A stop was asked for and has not finished.
    Stopping,
    /// Going back to the release before.
    RollingBack,
    Succeeded,
    /// Failed without a rollback (CodeDeploy's `Failed`; its rollback is a deployment of its own).
    Failed,
    Stopped,
    RolledBack,
    RollbackFailed,
}

impl Phase {
    /// Whether the deployment still holds its service (nothing else may deploy it).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Forward | Self::Stopping | Self::RollingBack)
    }

    /// Whether the release is being, or has been, rolled back.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            Self::RollingBack | Self::RolledBack | Self::RollbackFailed
        )
    }

    /// What the ledger records for the release once the deployment has ended: a rollback is
    /// never a success.
    pub fn ended_as(self) -> ReleaseStatus {
        match self {
            Self::Succeeded => ReleaseStatus::Succeeded,
            Self::Stopped | Self::Stopping => ReleaseStatus::Stopped,
            _ => ReleaseStatus::Failed,
        }
    }

    /// CodeDeploy's word for the state, which the notifier's messages speak for both engines.
    pub fn state(self) -> &'static str {
        match self {
            Self::Forward => "START",
            Self::Succeeded => "SUCCESS",
            Self::Stopping | Self::Stopped => "STOP",
            Self::Failed | Self::RollingBack | Self::RolledBack | Self::RollbackFailed => "FAILURE",
        }
    }
}

/// Every deployment status either engine documents, and its phase. A status not listed (one an
/// engine adds later) has no phase: each reader says what it does with one (the deployer never
/// takes an ECS deployment for ended on a guess).
pub const DEPLOYMENT_STATUSES: &[(EngineKind, &str, Phase)] = &[
    (EngineKind::CodeDeploy, "Created", Phase::Forward),
    (EngineKind::CodeDeploy, "Queued", Phase::Forward),
    (EngineKind::CodeDeploy, "InProgress", Phase::Forward),
    (EngineKind::CodeDeploy, "Baking", Phase::Forward),
    (EngineKind::CodeDeploy, "Ready", Phase::Forward),
    (EngineKind::CodeDeploy, "Succeeded", Phase::Succeeded),
    (EngineKind::CodeDeploy, "Failed", Phase::Failed),
    (EngineKind::CodeDeploy, "Stopped", Phase::Stopped),
    (EngineKind::Ecs, "PENDING", Phase::Forward),
    (EngineKind::Ecs, "IN_PROGRESS", Phase::Forward),
    (EngineKind::Ecs, "STOP_REQUESTED", Phase::Stopping),
    (EngineKind::Ecs, "ROLLBACK_REQUESTED", Phase::RollingBack),
    (EngineKind::Ecs, "ROLLBACK_IN_PROGRESS", Phase::RollingBack),
    (EngineKind::Ecs, "SUCCESSFUL", Phase::Succeeded),
    (EngineKind::Ecs, "STOPPED", Phase::Stopped),
    (EngineKind::Ecs, "ROLLBACK_SUCCESSFUL", Phase::RolledBack),
    (EngineKind::Ecs, "ROLLBACK_FAILED", Phase::RollbackFailed),
];

/// The phase of an engine's deployment status, when the table knows it.
pub fn phase_of(engine: EngineKind, status: &str) -> Option<Phase> {
    DEPLOYMENT_STATUSES
        .iter()
        .find(|(e, s, _)| *e == engine && *s == status)
        .map(|(_, _, phase)| *phase)
}

/// The statuses of an engine's deployments that hold the service (the busy check's filter).
pub fn active_statuses(engine: EngineKind) -> impl Iterator<Item = &'static str> {
    DEPLOYMENT_STATUSES
        .iter()
        .filter(move |(e, _, phase)| *e == engine && phase.is_active())
        .map(|(_, status, _)| *status)
}

/// Whether an ECS service deployment still holds its service: one in a status the table does
/// not know is taken as still running (never deployed over, nor finished, on a guess).
pub fn is_active_service_deployment(status: &str) -> bool {
    phase_of(EngineKind::Ecs, status).is_none_or(Phase::is_active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_one_reading() {
        let ecs = |s| phase_of(EngineKind::Ecs, s);
        let active: Vec<_> = active_statuses(EngineKind::Ecs).collect();
        assert_eq!(
            active,
            [
                "PENDING",
                "IN_PROGRESS",
                "STOP_REQUESTED",
                "ROLLBACK_REQUESTED",
                "ROLLBACK_IN_PROGRESS"
            ]
        );
        for ended in [
            "SUCCESSFUL",
            "STOPPED",
            "ROLLBACK_SUCCESSFUL",
            "ROLLBACK_FAILED",
        ] {
            assert!(!is_active_service_deployment(ended), "{ended}");
        }
        assert!(is_active_service_deployment("SOMETHING_NEW"));
        assert_eq!(
            ecs("ROLLBACK_SUCCESSFUL").unwrap().ended_as(),
            ReleaseStatus::Failed
        );
        assert_eq!(ecs("ROLLBACK_SUCCESSFUL").unwrap().state(), "FAILURE");
        assert!(ecs("ROLLBACK_REQUESTED").unwrap().is_rollback());
        let cd = |s| phase_of(EngineKind::CodeDeploy, s);
        assert!(cd("Ready").unwrap().is_active());
        assert!(!cd("Failed").unwrap().is_rollback());
        assert_eq!(cd("Stopped").unwrap().ended_as(), ReleaseStatus::Stopped);
        assert_eq!(cd("Succeeded").unwrap().state(), "SUCCESS");
    }
}
