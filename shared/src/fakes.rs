//! Fakes of the ports, for handler tests (feature `fakes`): an in-memory ledger with the same rules
//! as the DynamoDB one, and AWS fakes that record every call.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::aws::codedeploy::{
    CodeDeployApi, Deployment, DeploymentGroup, EcsDeploymentTarget, HookVerdict, NewDeployment,
};
use crate::aws::ecs::{
    EcsApi, EcsServiceInfo, LoadBalancedContainer, ServiceDeploymentBrief, ServiceDeploymentState,
    ServiceReads, ServiceRevisionInfo, TaskSetState, TaskSetsApi,
};
use crate::aws::elb::{ListenerEndpoint, LoadBalancingApi, TargetState};
use crate::events::ImagePush;
use crate::ledger::{
    Claim, LedgerError, NoticeLedger, QueueLedger, ReleaseLedger, ReleaseMessage, ReleaseRecord,
    ReleaseStatus, VerdictLedger,
};
use crate::queue::{Lease, Plan, Queue};
use crate::{AwsError, AwsErrorKind};
use async_trait::async_trait;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionInputBuilder;
use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition};
use chrono::Utc;

/// The ledger in memory: release records, queues and notices, with DynamoDB's rules (claims by
/// lease, queue writes conditional on the version read, transactions all or nothing).
#[derive(Default)]
pub struct FakeLedger {
    pub releases: Mutex<HashMap<String, ReleaseRecord>>,
    pub queues: Mutex<HashMap<String, Queue>>,
    /// Announcements claimed, by `deployment/state`: whether they were posted.
    pub notices: Mutex<HashMap<String, bool>>,
    /// Release runs' Slack messages by anchor, with the holder of each (owner, until ms).
    pub messages: Mutex<HashMap<String, MessageSlot>>,
    /// Earlier runs of digests that a request deployed again, oldest first.
    pub archived: Mutex<Vec<ReleaseRecord>>,
    /// Approval waits and decisions, by digest.
    pub approvals: Mutex<HashMap<String, (crate::ledger::Wait, Option<crate::ledger::Decision>)>>,
    pub unreachable: bool,
    /// How many queue transactions fail (the ledger errs) before they are written again.
    pub failing_commits: Mutex<usize>,
}

impl FakeLedger {
    pub fn record(&self, digest: &str) -> Option<ReleaseRecord> {
        self.releases.lock().unwrap().get(digest).cloned()
    }
    pub fn queue_of(&self, app: &str) -> Queue {
        self.queues
            .lock()
            .unwrap()
            .get(app)
            .cloned()
            .unwrap_or_default()
    }
    pub fn insert(&self, record: ReleaseRecord) {
        self.releases
            .lock()
            .unwrap()
            .insert(record.digest.clone(), record);
    }
    pub fn set_queue(&self, app: &str, queue: Queue) {
        self.queues.lock().unwrap().insert(app.to_string(), queue);
    }
    fn check(&self) -> Result<(), LedgerError> {
        if self.unreachable {
            return Err(LedgerError {
                operation: "GetItem",
                message: "dispatch failure: connection refused".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ReleaseLedger for FakeLedger {
    async fn claim(&self, push: &ImagePush, lease: &Lease) -> Result<Claim, LedgerError> {
        self.check()?;
        let until = chrono::DateTime::from_timestamp_millis(lease.until_ms);
        let mut releases = self.releases.lock().unwrap();
        let other_request = |r: &ReleaseRecord| {
            push.request.as_ref().is_some_and(|request| {
                r.request.as_ref().map(|r| r.id.as_str()) != Some(request.id.as_str())
            })
        };
        match releases.get_mut(&push.digest) {
            Some(r)
                if other_request(r)
                    && !r.status.is_final()
                    && !r.is_stale_claim(
                        chrono::DateTime::from_timestamp_millis(lease.now_ms).unwrap_or_default(),
                    ) =>
            {
                Ok(Claim::Done(r.clone()))
            }
            Some(r)
                if (other_request(r) || push.request.is_none() && r.is_retagged_by(push))
                    && r.status.is_final() =>
            {
                let record = ReleaseRecord {
                    owner: Some(lease.owner.clone()),
                    lease_until: until,
                    ..ReleaseRecord::from_push(push)
                };
                self.archived.lock().unwrap().push(r.clone());
                *r = record.clone();
                Ok(Claim::Acquired(record))
            }
            None => {
                let record = ReleaseRecord {
                    owner: Some(lease.owner.clone()),
                    lease_until: until,
                    ..ReleaseRecord::from_push(push)
                };
                releases.insert(push.digest.clone(), record.clone());
                Ok(Claim::Acquired(record))
            }
            Some(r) if !r.status.is_in_flight() => Ok(Claim::Done(r.clone())),
            Some(r)
                if r.lease_until
                    .is_some_and(|t| t.timestamp_millis() > lease.now_ms)
                    && r.owner.as_deref() != Some(lease.owner.as_str()) =>
            {
                Ok(Claim::HeldElsewhere(r.clone()))
            }
            Some(r) => {
                if other_request(r) {
                    r.pushed_at = push.pushed_at;
                }
                r.owner = Some(lease.owner.clone());
                r.lease_until = until;
                Ok(Claim::Acquired(r.clone()))
            }
        }
    }
    async fn record_registered(
        &self,
        _app: &str,
        digest: &str,
        arn: &str,
    ) -> Result<(), LedgerError> {
        self.check()?;
        if let Some(r) = self.releases.lock().unwrap().get_mut(digest) {
            r.status = ReleaseStatus::Registered;
            r.task_definition_arn = Some(arn.into());
        }
        Ok(())
    }
    async fn release(
        &self,
        _app: &str,
        digest: &str,
    ) -> Result<Option<ReleaseRecord>, LedgerError> {
        self.check()?;
        Ok(self.record(digest))
    }
    async fn stale_claims(
        &self,
        app: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<Vec<ReleaseRecord>, LedgerError> {
        self.check()?;
        Ok(self
            .releases
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.app == app && r.is_stale_claim(now))
            .cloned()
            .collect())
    }
    async fn superseded_by(
        &self,
        _app: &str,
        digest: &str,
    ) -> Result<Vec<ReleaseRecord>, LedgerError> {
        self.check()?;
        Ok(self
            .releases
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.superseded_by.as_deref() == Some(digest))
            .cloned()
            .collect())
    }
    async fn last_succeeded(&self, _app: &str) -> Result<Option<ReleaseRecord>, LedgerError> {
        self.check()?;
        Ok(self
            .releases
            .lock()
            .unwrap()
            .values()
            .find(|r| r.status == ReleaseStatus::Succeeded)
            .cloned())
    }
}

#[async_trait]
impl VerdictLedger for FakeLedger {
    async fn record_hook_verdict(
        &self,
        _app: &str,
        digest: &str,
        _event: &str,
        _passed: bool,
        reason: &str,
    ) -> Result<(), LedgerError> {
        self.check()?;
        if let Some(r) = self.releases.lock().unwrap().get_mut(digest) {
            r.hook_reason = Some(reason.into());
        }
        Ok(())
    }
    async fn record_hook_round(
        &self,
        _app: &str,
        _digest: &str,
        _stage: &str,
        _round: u32,
        _found: &str,
    ) -> Result<(), LedgerError> {
        self.check()
    }
    async fn record_hook_reported(
        &self,
        _app: &str,
        digest: &str,
        execution_id: &str,
    ) -> Result<(), LedgerError> {
        self.check()?;
        if let Some(r) = self.releases.lock().unwrap().get_mut(digest) {
            r.hook_reported_execution = Some(execution_id.into());
        }
        Ok(())
    }
    async fn record_approval_wait(
        &self,
        _app: &str,
        digest: &str,
        wait: &crate::ledger::Wait,
    ) -> Result<(), LedgerError> {
        self.check()?;
        self.approvals
            .lock()
            .unwrap()
            .insert(digest.to_string(), (wait.clone(), None));
        Ok(())
    }
}

#[async_trait]
impl crate::ledger::ApprovalLedger for FakeLedger {
    async fn approval(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Option<crate::ledger::ApprovalRecord>, LedgerError> {
        self.check()?;
        let Some((wait, decision)) = self.approvals.lock().unwrap().get(digest).cloned() else {
            return Ok(None);
        };
        let record = self.record(digest);
        Ok(Some(crate::ledger::ApprovalRecord {
            app: app.to_string(),
            digest: digest.to_string(),
            version: record
                .as_ref()
                .map(|r| r.version.clone())
                .unwrap_or_default(),
            pushed_at_ms: record.map_or(0, |r| r.pushed_at.timestamp_millis()),
            wait,
            decision,
        }))
    }
    async fn record_decision(
        &self,
        _app: &str,
        digest: &str,
        pushed_at_ms: i64,
        deployment_id: &str,
        decision: &crate::ledger::Decision,
    ) -> Result<bool, LedgerError> {
        self.check()?;
        let pushed = self
            .record(digest)
            .map_or(0, |r| r.pushed_at.timestamp_millis());
        let mut approvals = self.approvals.lock().unwrap();
        match approvals.get_mut(digest) {
            Some((wait, slot @ None))
                if wait.deployment_id == deployment_id && pushed == pushed_at_ms =>
            {
                *slot = Some(decision.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn decision_applied(&self, _app: &str, digest: &str) -> Result<(), LedgerError> {
        self.check()?;
        if let Some((_, Some(decision))) = self.approvals.lock().unwrap().get_mut(digest) {
            decision.applied = true;
        }
        Ok(())
    }
}

#[async_trait]
impl QueueLedger for FakeLedger {
    async fn queue(&self, app: &str) -> Result<Queue, LedgerError> {
        self.check()?;
        Ok(self.queue_of(app))
    }
    async fn queues(&self, apps: &[String]) -> Result<Vec<Queue>, LedgerError> {
        self.check()?;
        Ok(apps.iter().map(|a| self.queue_of(a)).collect())
    }
    async fn commit(&self, app: &str, read: &Queue, plan: &Plan) -> Result<bool, LedgerError> {
        self.check()?;
        {
            let mut failing = self.failing_commits.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(LedgerError {
                    operation: "TransactWriteItems",
                    message: "ProvisionedThroughputExceededException".into(),
                });
            }
        }
        let mut queues = self.queues.lock().unwrap();
        let current = queues.entry(app.to_string()).or_default();
        if current.version != read.version {
            return Ok(false);
        }
        let mut releases = self.releases.lock().unwrap();
        if plan
            .changes
            .iter()
            .any(|c| !releases.contains_key(&c.release.digest))
        {
            return Err(LedgerError {
                operation: "TransactWriteItems",
                message: format!("a release item of app {app} that the queue names is missing"),
            });
        }
        *current = Queue {
            version: read.version + 1,
            ..plan.queue.clone()
        };
        for change in &plan.changes {
            let r = releases
                .get_mut(&change.release.digest)
                .expect("checked above");
            r.status = change.status;
            if let Some(id) = &change.deployment_id {
                r.deployment_id = Some(id.clone());
            }
            if let Some(by) = &change.superseded_by {
                r.superseded_by = Some(by.clone());
            }
            if let Some((owner, until)) = &change.lease {
                r.owner = Some(owner.clone());
                r.lease_until = chrono::DateTime::from_timestamp_millis(*until);
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl NoticeLedger for FakeLedger {
    async fn claim_notice(
        &self,
        deployment_id: &str,
        state: &str,
        _lease: &Lease,
    ) -> Result<bool, LedgerError> {
        self.check()?;
        let mut notices = self.notices.lock().unwrap();
        let key = format!("{deployment_id}/{state}");
        if notices.contains_key(&key) {
            return Ok(false);
        }
        notices.insert(key, false);
        Ok(true)
    }
    async fn notice_posted(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError> {
        self.check()?;
        self.notices
            .lock()
            .unwrap()
            .insert(format!("{deployment_id}/{state}"), true);
        Ok(())
    }
    async fn release_notice(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError> {
        self.check()?;
        self.notices
            .lock()
            .unwrap()
            .remove(&format!("{deployment_id}/{state}"));
        Ok(())
    }
    async fn take_message(
        &self,
        anchor: &str,
        lease: &Lease,
    ) -> Result<Option<ReleaseMessage>, LedgerError> {
        self.check()?;
        let mut messages = self.messages.lock().unwrap();
        let (message, holder) = messages.entry(anchor.to_string()).or_default();
        let free = holder
            .as_ref()
            .is_none_or(|(owner, until)| *owner == lease.owner || *until < lease.now_ms);
        if !free {
            return Ok(None);
        }
        *holder = Some((lease.owner.clone(), lease.until_ms));
        Ok(Some(message.clone()))
    }
    async fn release_message(&self, anchor: &str) -> Result<Option<ReleaseMessage>, LedgerError> {
        self.check()?;
        Ok(self
            .messages
            .lock()
            .unwrap()
            .get(anchor)
            .map(|(m, _)| m.clone()))
    }
    async fn keep_message(
        &self,
        anchor: &str,
        message: &ReleaseMessage,
        lease: &Lease,
        done: bool,
    ) -> Result<(), LedgerError> {
        self.check()?;
        let mut messages = self.messages.lock().unwrap();
        if let Some((kept, holder)) = messages.get_mut(anchor) {
            if holder
                .as_ref()
                .is_some_and(|(owner, _)| *owner == lease.owner)
            {
                *kept = message.clone();
                if done {
                    *holder = None;
                }
            }
        }
        Ok(())
    }
}

/// A release run's Slack message in the fake ledger, and who holds it (owner, until ms).
pub type MessageSlot = (ReleaseMessage, Option<(String, i64)>);

/// Every AWS call the fakes received, by operation name.
#[derive(Default)]
pub struct Calls(pub Mutex<Vec<String>>);

impl Calls {
    pub fn count(&self, op: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|c| *c == op).count()
    }
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn push(&self, op: &str) {
        self.0.lock().unwrap().push(op.to_string());
    }
}

pub struct FakeCodeDeploy {
    pub calls: std::sync::Arc<Calls>,
    pub created: Mutex<Vec<NewDeployment>>,
    /// ECS deployment targets by deployment id.
    pub targets: Mutex<HashMap<String, EcsDeploymentTarget>>,
    /// Every hook status reported.
    pub reports: Mutex<Vec<(String, HookVerdict)>>,
    /// Answers of PutLifecycleEventHookExecutionStatus, in order; default: accepted.
    pub report_errors: Mutex<Vec<AwsError>>,
    /// Answers of CreateDeployment, in order; default: a new id.
    pub create_errors: Mutex<Vec<AwsError>>,
    pub deployments: Mutex<HashMap<String, Deployment>>,
    pub group_missing: bool,
    /// Refuse a deployment while another is active, as CodeDeploy does.
    pub one_at_a_time: bool,
    /// How many CreateDeployments act and then lose their answer (an error after the fact).
    pub lost_create_answers: Mutex<usize>,
    /// The status a new deployment ends in at once (CodeDeploy fails a broken one within a
    /// second); `None`: it runs until the test ends it.
    pub ends_at_once: Option<&'static str>,
}

impl FakeCodeDeploy {
    pub fn new(calls: std::sync::Arc<Calls>) -> Self {
        Self {
            calls,
            created: Mutex::default(),
            targets: Mutex::default(),
            reports: Mutex::default(),
            report_errors: Mutex::default(),
            create_errors: Mutex::default(),
            deployments: Mutex::default(),
            group_missing: false,
            one_at_a_time: false,
            lost_create_answers: Mutex::default(),
            ends_at_once: None,
        }
    }
}

#[async_trait]
impl CodeDeployApi for FakeCodeDeploy {
    async fn deployment_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<DeploymentGroup, AwsError> {
        self.calls.push("GetDeploymentGroup");
        if self.group_missing {
            return Err(AwsError::new(
                "GetDeploymentGroup",
                format!("deployment group {application}/{group}"),
                AwsErrorKind::NotFound,
                "DeploymentGroupDoesNotExistException: No Deployment Group found",
            ));
        }
        Ok(DeploymentGroup {
            cluster: "apps".into(),
            service: "web1".into(),
            target_groups: vec!["web1-blue".into(), "web1-green".into()],
            prod_listeners: vec!["arn:prod".into()],
            test_listeners: vec!["arn:test".into()],
            waits_before_reroute: false,
        })
    }
    async fn create_deployment(&self, request: &NewDeployment) -> Result<String, AwsError> {
        self.calls.push("CreateDeployment");
        let mut errors = self.create_errors.lock().unwrap();
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        if self.one_at_a_time {
            if let Some(active) = self
                .deployments
                .lock()
                .unwrap()
                .values()
                .find(|d| d.is_active())
            {
                return Err(AwsError::new(
                    "CreateDeployment",
                    format!("deployment group {}/{}", request.application, request.deployment_group),
                    AwsErrorKind::DeploymentLimitExceeded,
                    format!("DeploymentLimitExceededException: the group already has an active Deployment '{}'", active.id),
                ));
            }
        }
        let mut created = self.created.lock().unwrap();
        created.push(request.clone());
        let id = format!("d-FAKE{:05}", created.len());
        self.deployments.lock().unwrap().insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                application: request.application.clone(),
                deployment_group: request.deployment_group.clone(),
                status: self.ends_at_once.unwrap_or("InProgress").into(),
                description: Some(request.description.clone()),
                created_at: Some(Utc::now()),
                ..Default::default()
            },
        );
        let mut lost = self.lost_create_answers.lock().unwrap();
        if *lost > 0 {
            *lost -= 1;
            return Err(AwsError::new(
                "CreateDeployment",
                format!(
                    "deployment group {}/{}",
                    request.application, request.deployment_group
                ),
                AwsErrorKind::Unavailable,
                "dispatch failure: the connection closed before the answer",
            ));
        }
        Ok(id)
    }
    async fn deployment(&self, id: &str) -> Result<Deployment, AwsError> {
        self.calls.push("GetDeployment");
        self.deployments
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| {
                AwsError::new(
                    "GetDeployment",
                    id,
                    AwsErrorKind::NotFound,
                    "no such deployment",
                )
            })
    }
    async fn deployments_since(
        &self,
        _application: &str,
        _group: &str,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<Deployment>, AwsError> {
        self.calls.push("ListDeployments");
        let mut found: Vec<Deployment> = self
            .deployments
            .lock()
            .unwrap()
            .values()
            .filter(|d| d.created_at.is_none_or(|t| t >= since))
            .cloned()
            .collect();
        found.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(found)
    }
    async fn active_deployments(
        &self,
        _application: &str,
        _group: &str,
    ) -> Result<Vec<Deployment>, AwsError> {
        self.calls.push("ListDeployments");
        Ok(self
            .deployments
            .lock()
            .unwrap()
            .values()
            .filter(|d| d.is_active())
            .cloned()
            .collect())
    }
    async fn ecs_target(
        &self,
        deployment_id: &str,
    ) -> Result<Option<EcsDeploymentTarget>, AwsError> {
        self.calls.push("BatchGetDeploymentTargets");
        Ok(self.targets.lock().unwrap().get(deployment_id).cloned())
    }
    async fn report_hook(
        &self,
        deployment_id: &str,
        _e: &str,
        verdict: HookVerdict,
    ) -> Result<(), AwsError> {
        self.calls.push("PutLifecycleEventHookExecutionStatus");
        let mut errors = self.report_errors.lock().unwrap();
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        self.reports
            .lock()
            .unwrap()
            .push((deployment_id.to_string(), verdict));
        Ok(())
    }
}

/// ECR's side: every image has this provenance (none by default), or the read fails; the
/// images a request may name.
pub struct FakeRegistry {
    pub calls: std::sync::Arc<Calls>,
    pub provenance: Mutex<crate::provenance::Provenance>,
    pub fails: Mutex<bool>,
    pub images: Mutex<Vec<crate::aws::ecr::RegistryImage>>,
}

impl FakeRegistry {
    pub fn new(calls: std::sync::Arc<Calls>) -> Self {
        Self {
            calls,
            provenance: Mutex::default(),
            fails: Mutex::new(false),
            images: Mutex::default(),
        }
    }
}

#[async_trait]
impl crate::aws::ecr::RegistryApi for FakeRegistry {
    async fn provenance(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<crate::provenance::Provenance, AwsError> {
        self.calls.push("BatchGetImage");
        if *self.fails.lock().unwrap() {
            return Err(AwsError::new(
                "BatchGetImage",
                format!("ECR image {repository}@{digest}"),
                AwsErrorKind::Throttled,
                "rate exceeded",
            ));
        }
        Ok(self.provenance.lock().unwrap().clone())
    }

    async fn image(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<crate::aws::ecr::RegistryImage, AwsError> {
        self.calls.push("DescribeImages");
        self.images
            .lock()
            .unwrap()
            .iter()
            .find(|image| image.digest == reference || image.tags.iter().any(|t| t == reference))
            .cloned()
            .ok_or_else(|| {
                AwsError::new(
                    "DescribeImages",
                    format!("ECR image {repository}:{reference}"),
                    AwsErrorKind::NotFound,
                    "no such image",
                )
            })
    }
}

pub const CURRENT_TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:7";

pub struct FakeEcs {
    pub calls: std::sync::Arc<Calls>,
    pub running_image: Mutex<String>,
    pub registered: Mutex<Vec<RegisterTaskDefinitionInputBuilder>>,
    /// Answers of DescribeTaskSets, in order; the last one repeats.
    pub task_set_answers: Mutex<Vec<Result<Vec<TaskSetState>, AwsError>>>,
    /// The tags of every task definition described.
    pub tags: Mutex<Vec<Tag>>,
    /// Native blue/green: answers of DescribeServiceDeployments (the last repeats), the
    /// revision DescribeServiceRevisions describes, the service's test listener rule.
    pub deployment_answers: Mutex<Vec<Result<ServiceDeploymentState, AwsError>>>,
    pub revision: Mutex<ServiceRevisionInfo>,
    pub test_listener_rule: Mutex<Option<String>>,
    /// The service's deployment controller and strategy (CodeDeploy's unless set).
    pub controller: Mutex<Option<String>>,
    pub strategy: Mutex<Option<String>>,
    /// How the service's native deployments move production traffic, where each stands and
    /// what ECS says of a rollback (DescribeServiceDeployments of a listed deployment).
    pub rollout: Mutex<Option<crate::rollout::Rollout>>,
    pub position: Mutex<crate::rollout::Position>,
    pub rollback_signals: Mutex<crate::rollout::RollbackSignals>,
    /// Native blue/green: the service's deployments (UpdateService adds one, IN_PROGRESS),
    /// with the revision each deploys.
    pub service_deployments: Mutex<Vec<(ServiceDeploymentBrief, String)>>,
    /// Whether UpdateService's answer names the deployment it started (`currentServiceDeployment`).
    pub names_current_deployment: std::sync::atomic::AtomicBool,
    /// How many UpdateServices are refused (throttled, nothing started).
    pub failing_updates: Mutex<usize>,
    /// The service's Lambda lifecycle hooks.
    pub lifecycle_hooks: Mutex<Vec<crate::aws::ecs::LifecycleHook>>,
}

impl FakeEcs {
    pub fn new(calls: std::sync::Arc<Calls>, running_image: &str) -> Self {
        Self {
            calls,
            running_image: Mutex::new(running_image.into()),
            registered: Mutex::default(),
            task_set_answers: Mutex::default(),
            tags: Mutex::default(),
            deployment_answers: Mutex::default(),
            revision: Mutex::default(),
            test_listener_rule: Mutex::default(),
            controller: Mutex::new(Some("CODE_DEPLOY".into())),
            strategy: Mutex::default(),
            rollout: Mutex::default(),
            position: Mutex::default(),
            rollback_signals: Mutex::default(),
            service_deployments: Mutex::default(),
            names_current_deployment: std::sync::atomic::AtomicBool::new(true),
            failing_updates: Mutex::default(),
            lifecycle_hooks: Mutex::default(),
        }
    }

    /// The service deploys with ECS blue/green.
    pub fn native(self) -> Self {
        *self.controller.lock().unwrap() = Some("ECS".into());
        *self.strategy.lock().unwrap() = Some("BLUE_GREEN".into());
        *self.rollout.lock().unwrap() = Some(crate::rollout::Rollout::default());
        self
    }

    /// The service deploys with ECS's canary strategy (5% for 10 minutes, then a 15-minute
    /// bake) or its linear one (20% every 3 minutes).
    pub fn progressive(self, strategy: &str) -> Self {
        use crate::rollout::{Rollout, Strategy};
        let native = self.native();
        *native.strategy.lock().unwrap() = Some(strategy.into());
        *native.rollout.lock().unwrap() = Some(match strategy {
            "CANARY" => Rollout {
                strategy: Strategy::Canary {
                    percent: 5.0,
                    bake_minutes: 10,
                },
                bake_minutes: 15,
                ..Rollout::default()
            },
            _ => Rollout {
                strategy: Strategy::Linear {
                    step_percent: 20.0,
                    bake_minutes: 3,
                },
                ..Rollout::default()
            },
        });
        native
    }

    /// Sets the status of a native deployment (`SUCCESSFUL`, `ROLLBACK_SUCCESSFUL`, …).
    pub fn set_deployment_status(&self, arn: &str, status: &str) {
        for (d, _) in self.service_deployments.lock().unwrap().iter_mut() {
            if d.arn == arn {
                d.status = status.into();
            }
        }
    }

    /// The task definitions UpdateService was asked to deploy, in order.
    pub fn updated_to(&self) -> Vec<String> {
        self.service_deployments
            .lock()
            .unwrap()
            .iter()
            .map(|(_, td)| td.clone())
            .collect()
    }
    pub fn registered_images(&self) -> Vec<String> {
        self.registered
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                r.get_container_definitions().as_ref().unwrap()[0]
                    .image()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

#[async_trait]
impl ServiceReads for FakeEcs {
    async fn service(&self, _cluster: &str, _service: &str) -> Result<EcsServiceInfo, AwsError> {
        self.calls.push("DescribeServices");
        Ok(EcsServiceInfo {
            task_definition_arn: CURRENT_TD.into(),
            load_balancers: vec![LoadBalancedContainer {
                container_name: "web1".into(),
                container_port: 3000,
                target_group_arn: Some("arn:tg".into()),
                test_listener_rule: self.test_listener_rule.lock().unwrap().clone(),
            }],
            controller: self.controller.lock().unwrap().clone(),
            strategy: self.strategy.lock().unwrap().clone(),
            rollout: self.rollout.lock().unwrap().clone(),
            lifecycle_hooks: self.lifecycle_hooks.lock().unwrap().clone(),
        })
    }
    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeploymentState, AwsError> {
        self.calls.push("DescribeServiceDeployments");
        let listed = self.service_deployments.lock().unwrap();
        if let Some((d, _)) = listed.iter().find(|(d, _)| d.arn == arn) {
            return Ok(ServiceDeploymentState {
                status: d.status.clone(),
                status_reason: d.status_reason.clone(),
                target_revision: d.target_revision.clone(),
                position: self.position.lock().unwrap().clone(),
                rollout: self.rollout.lock().unwrap().clone(),
                rollback: self.rollback_signals.lock().unwrap().clone(),
                ..Default::default()
            });
        }
        next_answer(
            &self.deployment_answers,
            Ok(ServiceDeploymentState::default()),
        )
    }
    async fn service_revision(&self, arn: &str) -> Result<ServiceRevisionInfo, AwsError> {
        self.calls.push("DescribeServiceRevisions");
        let listed = self.service_deployments.lock().unwrap();
        if let Some((_, td)) = listed
            .iter()
            .find(|(d, _)| d.target_revision.as_deref() == Some(arn))
        {
            return Ok(ServiceRevisionInfo {
                task_definition_arn: td.clone(),
                ..self.revision.lock().unwrap().clone()
            });
        }
        Ok(self.revision.lock().unwrap().clone())
    }
    async fn service_deployments(
        &self,
        cluster: &str,
        service: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        active_only: bool,
    ) -> Result<Vec<ServiceDeploymentBrief>, AwsError> {
        self.calls.push("ListServiceDeployments");
        let listed = self.service_deployments.lock().unwrap();
        let mut found: Vec<ServiceDeploymentBrief> = listed
            .iter()
            .map(|(d, _)| d.clone())
            .filter(|d| crate::engine::service_of_arn(&d.arn) == Some((cluster, service)))
            .filter(|d| {
                !active_only
                    || crate::model::active_statuses(crate::model::EngineKind::Ecs)
                        .any(|s| s == d.status)
            })
            .filter(|d| since.is_none_or(|t| d.created_at.is_some_and(|c| c >= t)))
            .collect();
        found.reverse();
        Ok(found)
    }
    async fn task_definition_tags(&self, _arn: &str) -> Result<Vec<Tag>, AwsError> {
        self.calls.push("ListTagsForResource");
        Ok(self.tags.lock().unwrap().clone())
    }
}

#[async_trait]
impl EcsApi for FakeEcs {
    async fn task_definition(&self, arn: &str) -> Result<(TaskDefinition, Vec<Tag>), AwsError> {
        self.calls.push("DescribeTaskDefinition");
        let td = TaskDefinition::builder()
            .task_definition_arn(arn)
            .family("web1")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web1")
                    .image(self.running_image.lock().unwrap().clone())
                    .build(),
            )
            .build();
        Ok((td, self.tags.lock().unwrap().clone()))
    }
    async fn register_task_definition(
        &self,
        request: RegisterTaskDefinitionInputBuilder,
    ) -> Result<String, AwsError> {
        self.calls.push("RegisterTaskDefinition");
        let mut registered = self.registered.lock().unwrap();
        registered.push(request);
        Ok(format!(
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:{}",
            7 + registered.len()
        ))
    }
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<Option<String>, AwsError> {
        self.calls.push("UpdateService");
        {
            let mut failing = self.failing_updates.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(AwsError::new(
                    "UpdateService",
                    format!("ECS service {cluster}/{service}"),
                    AwsErrorKind::Throttled,
                    "ThrottlingException: Rate exceeded",
                ));
            }
        }
        let mut listed = self.service_deployments.lock().unwrap();
        let n = listed.len() + 1;
        let base = "arn:aws:ecs:us-east-1:123456789012";
        let arn = format!("{base}:service-deployment/{cluster}/{service}/deployment{n}");
        listed.push((
            ServiceDeploymentBrief {
                arn: arn.clone(),
                status: "IN_PROGRESS".into(),
                status_reason: None,
                target_revision: Some(format!("{base}:service-revision/{cluster}/{service}/{n}")),
                created_at: Some(chrono::Utc::now()),
            },
            task_definition.to_string(),
        ));
        let named = self
            .names_current_deployment
            .load(std::sync::atomic::Ordering::SeqCst);
        Ok(named.then_some(arn))
    }
}

#[async_trait]
impl TaskSetsApi for FakeEcs {
    async fn task_sets(
        &self,
        _c: &str,
        _s: &str,
        _ids: &[String],
    ) -> Result<Vec<TaskSetState>, AwsError> {
        self.calls.push("DescribeTaskSets");
        next_answer(&self.task_set_answers, Ok(vec![]))
    }
}

/// The next scripted answer; the last one repeats; `default` when none is scripted.
fn next_answer<T: Clone>(
    answers: &Mutex<Vec<Result<T, AwsError>>>,
    default: Result<T, AwsError>,
) -> Result<T, AwsError> {
    let mut answers = answers.lock().unwrap();
    match answers.len() {
        0 => default,
        1 => clone_answer(&answers[0]),
        _ => answers.remove(0),
    }
}

fn clone_answer<T: Clone>(answer: &Result<T, AwsError>) -> Result<T, AwsError> {
    match answer {
        Ok(v) => Ok(v.clone()),
        Err(e) => Err(AwsError::new(
            e.operation,
            e.resource.clone(),
            e.kind,
            e.message.clone(),
        )),
    }
}

/// A load balancer whose target health answers are scripted.
pub struct FakeLoadBalancing {
    pub calls: std::sync::Arc<Calls>,
    /// Answers of DescribeTargetHealth, in order; the last one repeats.
    pub health_answers: Mutex<Vec<Result<Vec<TargetState>, AwsError>>>,
    pub test_listener: ListenerEndpoint,
    /// What the service's test listener rule matches on (anything, by default).
    pub test_rule: Mutex<crate::aws::elb::RuleMatch>,
}

impl FakeLoadBalancing {
    pub fn new(calls: std::sync::Arc<Calls>) -> Self {
        Self {
            calls,
            health_answers: Mutex::default(),
            test_listener: ListenerEndpoint {
                protocol: "HTTP".into(),
                host: "web1-test.elb.local".into(),
                port: 8080,
            },
            test_rule: Mutex::default(),
        }
    }
}

pub fn healthy_targets(n: usize) -> Vec<TargetState> {
    (0..n)
        .map(|i| TargetState {
            id: format!("10.0.0.{i}"),
            port: Some(3000),
            state: "healthy".into(),
            reason: None,
        })
        .collect()
}

#[async_trait]
impl LoadBalancingApi for FakeLoadBalancing {
    async fn target_group_arn(&self, name: &str) -> Result<String, AwsError> {
        self.calls.push("DescribeTargetGroups");
        Ok(format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123456789abcdef"))
    }
    async fn target_health(&self, _arn: &str) -> Result<Vec<TargetState>, AwsError> {
        self.calls.push("DescribeTargetHealth");
        next_answer(&self.health_answers, Ok(healthy_targets(2)))
    }
    async fn listener_endpoint(&self, _arn: &str) -> Result<ListenerEndpoint, AwsError> {
        self.calls.push("DescribeListeners");
        Ok(self.test_listener.clone())
    }
    async fn rule_match(&self, _arn: &str) -> Result<crate::aws::elb::RuleMatch, AwsError> {
        self.calls.push("DescribeRules");
        Ok(self.test_rule.lock().unwrap().clone())
    }
}

/// A sample event of `events/`, as `cargo lambda invoke` and the tests send it.
pub fn sample_event(name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A well-formed image digest: `sha256:` and 64 times the hex digits of `n`.
pub fn digest(n: u8) -> String {
    let hex: String = format!("{n:x}").repeat(64).chars().take(64).collect();
    format!("sha256:{hex}")
}

/// An engine holding deployments for approval: what `wait_state` answers, each `resolve`
/// recorded (the engine then holds nothing); `lose_answers` resolves act and then fail (the
/// answer lost), `failing_reads` reads fail before anything happens.
#[derive(Default)]
pub struct FakeGate {
    pub state: Mutex<Option<crate::approval::EngineWait>>,
    pub resolved: Mutex<Vec<(String, Option<String>, crate::approval::Choice)>>,
    pub lose_answers: Mutex<u32>,
    pub failing_reads: Mutex<u32>,
}

impl FakeGate {
    /// Holding the release: the pause hook `hook-1` (ECS) or READY (CodeDeploy: no hook).
    pub fn holding(
        hook_id: Option<&str>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        let gate = Self::default();
        *gate.state.lock().unwrap() = Some(crate::approval::EngineWait::Waiting {
            hook_id: hook_id.map(str::to_string),
            expires_at,
        });
        gate
    }
}

#[async_trait]
impl crate::approval::ApprovalGate for FakeGate {
    async fn wait_state(
        &self,
        deployment_id: &str,
    ) -> Result<crate::approval::EngineWait, AwsError> {
        {
            let mut failing = self.failing_reads.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(AwsError::new(
                    "DescribeServiceDeployments",
                    deployment_id,
                    AwsErrorKind::Throttled,
                    "Rate exceeded",
                ));
            }
        }
        Ok(self
            .state
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(crate::approval::EngineWait::NotYet))
    }

    async fn resolve(
        &self,
        deployment_id: &str,
        hook_id: Option<&str>,
        choice: crate::approval::Choice,
    ) -> Result<(), AwsError> {
        self.resolved.lock().unwrap().push((
            deployment_id.to_string(),
            hook_id.map(str::to_string),
            choice,
        ));
        *self.state.lock().unwrap() = Some(crate::approval::EngineWait::Over);
        let mut lose = self.lose_answers.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(AwsError::new(
                "ContinueServiceDeployment",
                deployment_id,
                AwsErrorKind::Unavailable,
                "connection reset after the request was sent",
            ));
        }
        Ok(())
    }
}

/// Engines that hold nothing for approval (the deployer's tests that decide nothing).
pub fn idle_gates() -> crate::approval::EngineGates {
    crate::approval::EngineGates {
        ecs: std::sync::Arc::new(FakeGate::default()),
        codedeploy: std::sync::Arc::new(FakeGate::default()),
    }
}
