//! The approval gate: a person decides whether a release whose green passed its checks takes
//! production traffic (`[apps.<app>.approval] required = true`).
//!
//! Each engine holds the release itself, so nothing here keeps it waiting and a Greenlight that
//! is down never ships a release unapproved: ECS with the service's PAUSE lifecycle hook at
//! PRE_PRODUCTION_TRAFFIC_SHIFT (continued or rolled back by `ContinueServiceDeployment` naming
//! its `hookId`), CodeDeploy with the deployment group's wait before rerouting (its READY
//! state, continued by `ContinueDeployment`, rolled back by `StopDeployment` with automatic
//! rollback). Both roll back when the wait times out.
//!
//! The health hook records the wait on the release item when green passes ([`Wait`]: the
//! deployment and when it expires); a decision ([`decide`], from the Slack button or from
//! `greenlight approve|reject` through the deployer) binds to that release run and that
//! deployment, is written once with a condition (a second click, a replay, or a reject racing
//! an approve finds the first decision and changes nothing), then carried out on the engine,
//! then marked applied. A decision recorded but not carried out (the invocation died, the
//! engine's answer was lost) is carried out by the next click or command while the engine
//! still waits; if nobody comes, the engine's timeout rolls the release back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::AwsError;
use crate::ledger::LedgerError;
pub use crate::ledger::{ApprovalLedger, ApprovalRecord, Choice, Decision, Wait};

/// What a Slack button carries: the release run and the deployment it was posted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub app: String,
    pub digest: String,
    pub pushed_at_ms: i64,
    pub deployment_id: String,
}

impl Binding {
    /// The button's `value` (Slack keeps at most 2000 characters; this is far below).
    pub fn to_value(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.app, self.digest, self.pushed_at_ms, self.deployment_id
        )
    }

    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.splitn(4, '|');
        let (app, digest, pushed, deployment) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Self {
            app: app.to_string(),
            digest: digest.to_string(),
            pushed_at_ms: pushed.parse().ok()?,
            deployment_id: deployment.to_string(),
        })
    }
}

/// Where an engine's wait stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineWait {
    /// Green is not held yet (the pause or the READY wait has not begun).
    NotYet,
    /// Held: `hook_id` names ECS's pause hook to continue.
    Waiting {
        hook_id: Option<String>,
        expires_at: Option<DateTime<Utc>>,
    },
    /// The deployment went on, rolled back, or ended.
    Over,
}

/// An engine's wait, read and resolved (ECS pause hooks; CodeDeploy's wait before rerouting).
#[async_trait]
pub trait ApprovalGate: Send + Sync {
    async fn wait_state(&self, deployment_id: &str) -> Result<EngineWait, AwsError>;
    async fn resolve(
        &self,
        deployment_id: &str,
        hook_id: Option<&str>,
        choice: Choice,
    ) -> Result<(), AwsError>;
}

/// Each engine's gate, chosen by the deployment id's shape (an ECS service deployment ARN, or
/// a CodeDeploy deployment id).
#[derive(Clone)]
pub struct EngineGates {
    pub ecs: std::sync::Arc<dyn ApprovalGate>,
    pub codedeploy: std::sync::Arc<dyn ApprovalGate>,
}

impl EngineGates {
    fn of(&self, deployment_id: &str) -> &dyn ApprovalGate {
        if crate::model::is_service_deployment_arn(deployment_id) {
            self.ecs.as_ref()
        } else {
            self.codedeploy.as_ref()
        }
    }
}

#[async_trait]
impl ApprovalGate for EngineGates {
    async fn wait_state(&self, deployment_id: &str) -> Result<EngineWait, AwsError> {
        self.of(deployment_id).wait_state(deployment_id).await
    }

    async fn resolve(
        &self,
        deployment_id: &str,
        hook_id: Option<&str>,
        choice: Choice,
    ) -> Result<(), AwsError> {
        self.of(deployment_id)
            .resolve(deployment_id, hook_id, choice)
            .await
    }
}

/// A decision asked for: by a Slack button (with its binding) or by the command (the app's
/// release that waits now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub app: String,
    pub binding: Option<Binding>,
    /// The command's: the release expected to wait (a tag or digest), if it names one.
    pub expects: Option<String>,
    pub choice: Choice,
    pub by: String,
    pub reason: Option<String>,
}

/// What came of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// This decision was taken and carried out.
    Applied { version: String, choice: Choice },
    /// Someone decided before: nothing changed (an unapplied earlier decision was carried out).
    AlreadyDecided { version: String, decision: Decision },
    /// Nothing to decide, and why.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the decision is recorded but {0}: the next click or command carries it out while the engine waits; otherwise the wait times out and rolls back")]
    Engine(AwsError),
}

/// Who decided, as people read it: `<@U024BE7LH>` for a Slack user (`slack:U024BE7LH`), else
/// the identity as recorded (an AWS principal).
pub fn person(by: &str) -> String {
    match by.strip_prefix("slack:") {
        Some(user) => format!("<@{user}>"),
        None => by.to_string(),
    }
}

/// Takes a decision on the release run that waits: exactly once, then on the engine.
pub async fn decide(
    ledger: &dyn ApprovalLedger,
    gate: &dyn ApprovalGate,
    request: &DecisionRequest,
    now: DateTime<Utc>,
) -> Result<Decided, ApprovalError> {
    let app = request.app.as_str();
    let digest = match &request.binding {
        Some(binding) => binding.digest.clone(),
        None => {
            let queue = ledger.queue(app).await?;
            match queue.active.and_then(|a| a.release) {
                Some(release) => release.digest,
                None => return Ok(refused(format!("nothing of {app} is deploying"))),
            }
        }
    };
    let Some(record) = ledger.approval(app, &digest).await? else {
        return Ok(refused(format!(
            "no release of {app} waits for approval (green not checked yet, or no approval asked)"
        )));
    };
    if let Some(expected) = &request.expects {
        if *expected != record.version && *expected != record.digest {
            return Ok(refused(format!(
                "{app} {} waits for approval, not {expected}",
                record.version
            )));
        }
    }
    if let Some(binding) = &request.binding {
        if binding.deployment_id != record.wait.deployment_id
            || binding.pushed_at_ms != record.pushed_at_ms
        {
            return Ok(refused(format!(
                "this button belongs to an earlier run of {app} {}: it decides nothing now",
                record.version
            )));
        }
    }
    let deployment = record.wait.deployment_id.as_str();
    if let Some(decision) = record.decision {
        if !decision.applied {
            // Recorded, never carried out: carry it out while the engine still waits.
            carry_out(
                ledger,
                gate,
                &record.app,
                &digest,
                deployment,
                decision.choice,
            )
            .await?;
        }
        return Ok(Decided::AlreadyDecided {
            version: record.version,
            decision,
        });
    }
    if now >= record.wait.expires_at {
        return Ok(refused(format!(
            "the wait for {app} {} ended at {} UTC: the engine rolls it back",
            record.version,
            record.wait.expires_at.format("%H:%M")
        )));
    }
    let hook_id = match gate.wait_state(deployment).await.map_err(ApprovalError::Engine)? {
        EngineWait::NotYet => {
            return Ok(refused(format!(
                "green of {app} {} passed its checks; the engine is not holding it yet: try again in a moment",
                record.version
            )))
        }
        EngineWait::Over => {
            return Ok(refused(format!(
                "deployment {deployment} no longer waits for a decision"
            )))
        }
        EngineWait::Waiting { expires_at, .. } if expires_at.is_some_and(|t| now >= t) => {
            return Ok(refused(format!(
                "the wait for {app} {} has expired: the engine rolls it back",
                record.version
            )))
        }
        EngineWait::Waiting { hook_id, .. } => hook_id,
    };
    let decision = Decision {
        choice: request.choice,
        by: request.by.clone(),
        at: now,
        reason: request.reason.clone(),
        applied: false,
    };
    let taken = ledger
        .record_decision(app, &digest, record.pushed_at_ms, deployment, &decision)
        .await?;
    if !taken {
        // Someone decided in between (a double click, approve and reject racing).
        return match ledger.approval(app, &digest).await? {
            Some(ApprovalRecord {
                version,
                decision: Some(decision),
                ..
            }) => Ok(Decided::AlreadyDecided { version, decision }),
            _ => Ok(refused(format!("{app}'s wait changed: look again"))),
        };
    }
    resolve(gate, deployment, hook_id.as_deref(), request.choice).await?;
    mark_applied(ledger, app, &digest).await;
    Ok(Decided::Applied {
        version: record.version,
        choice: request.choice,
    })
}

fn refused(why: String) -> Decided {
    Decided::Refused(why)
}

async fn carry_out(
    ledger: &dyn ApprovalLedger,
    gate: &dyn ApprovalGate,
    app: &str,
    digest: &str,
    deployment: &str,
    choice: Choice,
) -> Result<(), ApprovalError> {
    match gate
        .wait_state(deployment)
        .await
        .map_err(ApprovalError::Engine)?
    {
        EngineWait::Waiting { hook_id, .. } => {
            resolve(gate, deployment, hook_id.as_deref(), choice).await?
        }
        // A decision is recorded only while the engine holds the release, so an engine that
        // no longer holds it went on (this decision's call acted before its answer was lost,
        // or the wait timed out): nothing left to carry out.
        EngineWait::Over | EngineWait::NotYet => {}
    }
    mark_applied(ledger, app, digest).await;
    Ok(())
}

async fn resolve(
    gate: &dyn ApprovalGate,
    deployment: &str,
    hook_id: Option<&str>,
    choice: Choice,
) -> Result<(), ApprovalError> {
    gate.resolve(deployment, hook_id, choice)
        .await
        .map_err(ApprovalError::Engine)
}

async fn mark_applied(ledger: &dyn ApprovalLedger, app: &str, digest: &str) {
    if let Err(e) = ledger.decision_applied(app, digest).await {
        // The engine acted: a later click finds the engine no longer waiting and says so.
        tracing::warn!(app = %app, error = %e, "decision carried out but not marked applied");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{digest, FakeGate, FakeLedger};
    use crate::ledger::{ReleaseRecord, ReleaseStatus, VerdictLedger};

    const DEPLOYMENT: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/d1";

    fn waiting(now: DateTime<Utc>) -> (FakeLedger, FakeGate, Binding) {
        let ledger = FakeLedger::default();
        let pushed = now - chrono::Duration::minutes(5);
        ledger.insert(ReleaseRecord {
            app: "web2".into(),
            digest: digest(3),
            version: "v2.1.0".into(),
            image: String::new(),
            pushed_at: pushed,
            status: ReleaseStatus::Deploying,
            owner: None,
            lease_until: None,
            task_definition_arn: None,
            deployment_id: Some(DEPLOYMENT.into()),
            superseded_by: None,
            hook_reason: None,
            hook_reported_execution: None,
            provenance: Default::default(),
            request: None,
        });
        let gate = FakeGate::holding(Some("hook-1"), Some(now + chrono::Duration::minutes(60)));
        let binding = Binding {
            app: "web2".into(),
            digest: digest(3),
            pushed_at_ms: pushed.timestamp_millis(),
            deployment_id: DEPLOYMENT.into(),
        };
        (ledger, gate, binding)
    }

    async fn wait_begins(ledger: &FakeLedger, now: DateTime<Utc>) {
        let wait = Wait {
            deployment_id: DEPLOYMENT.into(),
            expires_at: now + chrono::Duration::minutes(60),
        };
        ledger
            .record_approval_wait("web2", &digest(3), &wait)
            .await
            .unwrap();
    }

    fn click(binding: &Binding, choice: Choice, who: &str) -> DecisionRequest {
        DecisionRequest {
            app: "web2".into(),
            binding: Some(binding.clone()),
            expects: None,
            choice,
            by: format!("slack:{who}"),
            reason: None,
        }
    }

    #[tokio::test]
    async fn an_approval_continues_the_pause_once_and_a_second_click_changes_nothing() {
        let now = Utc::now();
        let (ledger, gate, binding) = waiting(now);
        wait_begins(&ledger, now).await;
        let first = decide(&ledger, &gate, &click(&binding, Choice::Approve, "U1"), now)
            .await
            .unwrap();
        assert_eq!(
            first,
            Decided::Applied {
                version: "v2.1.0".into(),
                choice: Choice::Approve
            }
        );
        // The double click, and a reject after it: the first decision stands.
        for choice in [Choice::Approve, Choice::Reject] {
            let again = decide(&ledger, &gate, &click(&binding, choice, "U2"), now)
                .await
                .unwrap();
            assert!(
                matches!(&again, Decided::AlreadyDecided { decision, .. } if decision.by == "slack:U1" && decision.choice == Choice::Approve && decision.applied),
                "{again:?}"
            );
        }
        assert_eq!(
            *gate.resolved.lock().unwrap(),
            [(
                DEPLOYMENT.to_string(),
                Some("hook-1".to_string()),
                Choice::Approve
            )]
        );
    }

    #[tokio::test]
    async fn a_stale_button_an_expired_wait_and_an_engine_not_holding_yet_decide_nothing() {
        let now = Utc::now();
        let (ledger, gate, binding) = waiting(now);
        // Before green passed: no wait recorded.
        let early = decide(&ledger, &gate, &click(&binding, Choice::Approve, "U1"), now)
            .await
            .unwrap();
        assert!(
            matches!(early, Decided::Refused(ref why) if why.contains("waits for approval")),
            "{early:?}"
        );
        wait_begins(&ledger, now).await;
        // A button of an earlier run of the same digest.
        let stale = Binding {
            pushed_at_ms: binding.pushed_at_ms - 1,
            ..binding.clone()
        };
        let refused = decide(&ledger, &gate, &click(&stale, Choice::Approve, "U1"), now)
            .await
            .unwrap();
        assert!(
            matches!(refused, Decided::Refused(ref why) if why.contains("earlier run")),
            "{refused:?}"
        );
        // The engine has not begun to hold green.
        *gate.state.lock().unwrap() = Some(EngineWait::NotYet);
        let not_yet = decide(&ledger, &gate, &click(&binding, Choice::Approve, "U1"), now)
            .await
            .unwrap();
        assert!(
            matches!(not_yet, Decided::Refused(ref why) if why.contains("try again")),
            "{not_yet:?}"
        );
        // After the wait's end.
        let late = now + chrono::Duration::minutes(61);
        let expired = decide(
            &ledger,
            &gate,
            &click(&binding, Choice::Approve, "U1"),
            late,
        )
        .await
        .unwrap();
        assert!(
            matches!(expired, Decided::Refused(ref why) if why.contains("ended")),
            "{expired:?}"
        );
        assert!(gate.resolved.lock().unwrap().is_empty());
        assert!(ledger
            .approval("web2", &digest(3))
            .await
            .unwrap()
            .unwrap()
            .decision
            .is_none());
    }

    #[tokio::test]
    async fn a_decision_whose_engine_answer_was_lost_is_carried_out_by_the_next_click_at_most_once()
    {
        let now = Utc::now();
        let (ledger, gate, binding) = waiting(now);
        wait_begins(&ledger, now).await;
        *gate.lose_answers.lock().unwrap() = 1;
        let lost = decide(&ledger, &gate, &click(&binding, Choice::Reject, "U1"), now).await;
        assert!(matches!(lost, Err(ApprovalError::Engine(_))), "{lost:?}");
        // The engine acted (it no longer waits): the next click marks it done, calls nothing.
        let next = decide(&ledger, &gate, &click(&binding, Choice::Approve, "U2"), now)
            .await
            .unwrap();
        assert!(
            matches!(&next, Decided::AlreadyDecided { decision, .. } if decision.choice == Choice::Reject),
            "{next:?}"
        );
        assert_eq!(gate.resolved.lock().unwrap().len(), 1);
        let kept = ledger.approval("web2", &digest(3)).await.unwrap().unwrap();
        assert!(kept.decision.unwrap().applied);
    }

    #[tokio::test]
    async fn a_decision_recorded_but_never_sent_is_sent_by_the_next_click() {
        let now = Utc::now();
        let (ledger, gate, binding) = waiting(now);
        wait_begins(&ledger, now).await;
        // An invocation recorded the decision and died before the engine call.
        let decision = Decision {
            choice: Choice::Approve,
            by: "slack:U1".into(),
            at: now,
            reason: None,
            applied: false,
        };
        assert!(ledger
            .record_decision(
                "web2",
                &digest(3),
                binding.pushed_at_ms,
                DEPLOYMENT,
                &decision
            )
            .await
            .unwrap());
        let next = decide(&ledger, &gate, &click(&binding, Choice::Reject, "U2"), now)
            .await
            .unwrap();
        assert!(
            matches!(&next, Decided::AlreadyDecided { decision, .. } if decision.choice == Choice::Approve),
            "{next:?}"
        );
        assert_eq!(
            *gate.resolved.lock().unwrap(),
            [(
                DEPLOYMENT.to_string(),
                Some("hook-1".to_string()),
                Choice::Approve
            )]
        );
    }

    #[test]
    fn a_binding_reads_back_what_it_wrote_and_nothing_else() {
        let binding = Binding {
            app: "web2".into(),
            digest: digest(3),
            pushed_at_ms: 1_700_000_000_000,
            deployment_id: DEPLOYMENT.into(),
        };
        assert_eq!(Binding::parse(&binding.to_value()), Some(binding));
        assert_eq!(Binding::parse("web2|sha256:aa|soon|d-1"), None);
        assert_eq!(Binding::parse("web2"), None);
    }
}
