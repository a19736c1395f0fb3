//! What is known of one deployment state (or a queued release run, a verdict, an approval):
//! the facts the message is built from ([`crate::message`]), gathered from the event, the
//! engine, the ledger and the config. Data and the few rules about it; no wording.

use std::fmt;
use std::time::Duration;

use greenlight_shared::approval::Choice;
use greenlight_shared::provenance::Provenance;
use greenlight_shared::request::{RequestKind, Requested};

/// The `creator` CodeDeploy gives the deployments it starts to roll another one back.
pub const ROLLBACK_CREATOR: &str = "codeDeployRollback";

/// Who started a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedBy {
    /// Greenlight, for an image push.
    Push,
    /// CodeDeploy, rolling another deployment back.
    Rollback,
    /// Someone, by hand (console, CLI), outside Greenlight.
    Manual,
    /// Any other creator CodeDeploy names (`autoscaling`, `CodeDeploy`, `CloudFormation`, ...).
    Other(String),
}

impl StartedBy {
    /// Reads GetDeployment's `creator`; `greenlight_release` says whether the description is
    /// Greenlight's, `rollback` whether the deployment rolls another one back.
    pub fn classify(
        creator: Option<&str>,
        greenlight_release: bool,
        rollback: bool,
    ) -> Option<Self> {
        if rollback || creator == Some(ROLLBACK_CREATOR) {
            return Some(Self::Rollback);
        }
        match creator {
            Some("user") | None if greenlight_release => Some(Self::Push),
            Some("user") => Some(Self::Manual),
            Some(other) => Some(Self::Other(other.to_string())),
            None => None,
        }
    }
}

impl fmt::Display for StartedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Push => f.write_str("push"),
            Self::Rollback => f.write_str("rollback"),
            Self::Manual => f.write_str("manual"),
            Self::Other(creator) => f.write_str(creator),
        }
    }
}

/// How a deployment relates to a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// This deployment was rolled back by the deployment `by`; `to` is the version serving
    /// now, when known.
    RolledBack { by: String, to: Option<String> },
    /// This deployment is a rollback: of the deployment `of` (when CodeDeploy names it), which
    /// deployed the version `undoing` (when known). The version it restores is the notice's
    /// `version`.
    IsRollback {
        of: Option<String>,
        undoing: Option<String>,
    },
}

/// Everything known about one deployment state change. The first block comes from the event
/// and the config; the rest is empty when CodeDeploy or the ledger could not be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notice {
    /// Greenlight's name of the app.
    pub app: String,
    pub environment: String,
    /// Where it deploys: CodeDeploy application and deployment group, or, for a native
    /// deployment, ECS cluster and service.
    pub scope: String,
    pub target: String,
    pub deployment_id: String,
    /// START, READY, SUCCESS, FAILURE, STOP, or a state CodeDeploy adds later.
    pub state: String,
    pub region: String,
    pub mention_on_failure: Option<String>,
    pub channel: Option<String>,

    /// The version deployed; for a rollback, the version it restores.
    pub version: Option<String>,
    /// The image digest (`sha256:...`) of that version.
    pub digest: Option<String>,
    pub started_by: Option<StartedBy>,
    /// How long the deployment took (terminal states only).
    pub duration: Option<Duration>,
    /// The task definition ARN the AppSpec deploys.
    pub task_definition: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Why the health hook failed the release.
    pub hook_reason: Option<String>,
    /// Native ECS: how production traffic moves and where it stands ("canary 5% until 14:32
    /// UTC, then 100% (canary 5% for 10 min, then 100%; bake 15 min)").
    pub rollout: Option<String>,
    /// Native ECS: why it rolled back, in words (an alarm, the circuit breaker, the hook).
    pub rollback_cause: Option<String>,
    /// Slack app mode: a line said in the release's thread (the health hook's verdict, a
    /// release that waits behind this one).
    pub thread_note: Option<String>,
    /// Slack app mode: said in the thread only; the message itself stays as it is.
    pub thread_only: bool,
    /// Slack app mode: how checking green goes (a native hook round), in the headline.
    pub checking: Option<String>,
    pub rollback: Option<Rollback>,
    /// Versions skipped in favour of this one (announced once, on its START).
    pub superseded: Vec<String>,
    /// CodeDeploy could not be read, so whether this is a rollback is unknown: the message
    /// says only what the event says.
    pub details_unavailable: bool,
    /// Who shipped the version (commit, CI run, actor), as its image says.
    pub provenance: Provenance,
    /// Slack app mode: the release run this notice belongs to ([`run_anchor`]), so that the
    /// message posted while it was queued is the one its deployment edits.
    pub run: Option<String>,
    /// QUEUED: the version it waits for; SUPERSEDED: the version that replaced it.
    pub behind: Option<String>,
    /// Deployed by ECS's native blue/green (`scope` is the cluster, `target` the service).
    pub native: bool,
    /// Slack app mode: the release run's one message, which also names its engine.
    pub living: bool,
    /// The approval gate: the wait (with its buttons) or the decision.
    pub approval: Option<ApprovalNote>,
    /// The operator's request that started this deployment (`greenlight deploy|rollback`).
    pub requested: Option<Requested>,
}

impl Notice {
    /// Whether Greenlight did not start this deployment (a person, IaC, a service's creation).
    pub fn is_outside(&self) -> bool {
        matches!(
            self.started_by,
            Some(StartedBy::Manual) | Some(StartedBy::Other(_))
        ) && !self.is_rollback()
    }

    /// Whether this deployment is itself a rollback.
    pub fn is_rollback(&self) -> bool {
        matches!(self.rollback, Some(Rollback::IsRollback { .. }))
            || self.started_by == Some(StartedBy::Rollback)
            || self
                .requested
                .as_ref()
                .is_some_and(|q| q.kind == RequestKind::Rollback)
    }

    /// Where the release run's message is kept (Slack app mode keeps one message per run):
    /// the deployment that started the run (a CodeDeploy rollback deployment's states belong
    /// to the run it undoes), or the run itself while it has no deployment (queued).
    pub fn anchor(&self) -> &str {
        match (&self.rollback, &self.run) {
            (Some(Rollback::IsRollback { of: Some(of), .. }), _) => of,
            (_, Some(run)) if self.deployment_id.is_empty() => run,
            _ => &self.deployment_id,
        }
    }

    /// The engine that deploys it, as people name it.
    pub fn engine(&self) -> &'static str {
        if self.native || greenlight_shared::engine::is_service_deployment_arn(&self.deployment_id)
        {
            "ECS blue/green"
        } else {
            "CodeDeploy blue/green"
        }
    }

    /// ` (by alice)` when an operator asked for this deployment.
    pub(crate) fn requester_suffix(&self) -> String {
        self.requested
            .as_ref()
            .map(|q| format!(" (by {})", q.requester_name()))
            .unwrap_or_default()
    }
}

/// The approval gate on a release's message.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalNote {
    /// Held for a person until `expires_at`; the buttons carry `binding`.
    Waiting {
        expires_at: chrono::DateTime<chrono::Utc>,
        binding: String,
    },
    /// Someone decided (`by`: `slack:U…` or an AWS identity; `at`: RFC 3339).
    Decided {
        choice: Choice,
        by: String,
        at: String,
        reason: Option<String>,
    },
}

/// The key of a release run's message while it has no deployment: the app, the digest and
/// the push (an operator's request of the same digest is another run).
pub fn run_anchor(app: &str, digest: &str, pushed_at_ms: i64) -> String {
    format!("run#{app}#{digest}#{pushed_at_ms}")
}
