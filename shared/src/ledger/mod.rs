//! The release ledger: exactly once, newest wins, nothing lost.
//!
//! One table, three kinds of item:
//! - a release item per pushed digest (partition `app#<name>`, sort key `release#<digest>`):
//!   claimed with a conditional write before any other call, then records each step done
//!   (`registered` task definition, `deploying` deployment id) and its end (`succeeded`,
//!   `failed`, `stopped`, `superseded`, `already_running`), with a status history. A claim
//!   carries a lease until the claiming invocation's deadline: an invocation that died is taken
//!   over after it, and the release resumes after the last step recorded. Release items are
//!   the history; they expire (DynamoDB TTL) 400 days after the push. An operator's request
//!   (`crate::request`) for a digest whose release has ended reopens its item for the request,
//!   in one transaction that keeps the earlier run as an archived item (sort key
//!   `release#<digest>#<its push time in ms>`, `archived_at` set): history reads it, decisions
//!   never do.
//! - one queue per app (sort key `queue`): the release being deployed, the one waiting and the
//!   newest that started (`crate::queue`). It changes only by [`QueueLedger::commit`]: one
//!   TransactWriteItems that writes the queue, conditional on the version read, together with
//!   every release item the change touches. No step can tear between two items.
//! - one announcement marker per deployment state (partition `notice#<deployment id>`), so a
//!   redelivered state-change event is not posted to Slack twice; it expires after 30 days.
//!
//! Every error other than a failed condition fails the invocation (so Lambda retries it):
//! nothing is deployed without a claim.
//! - hook verdicts, kept on the release item they judge (`VerdictLedger`), and an approval's
//!   wait and decision (`ApprovalLedger`, `crate::approval`).
//!
//! This module holds the records and the ports the functions hold (one trait per item family);
//! [`dynamo`] implements them on one DynamoDB table, one file per item family.

mod dynamo;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::events::ImagePush;
pub use crate::model::ReleaseStatus;
use crate::provenance::Provenance;
use crate::queue::{Lease, Plan, Queue};
use crate::request::Requested;
pub use dynamo::DynamoLedger;

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRecord {
    pub app: String,
    pub digest: String,
    pub version: String,
    pub image: String,
    pub pushed_at: DateTime<Utc>,
    pub status: ReleaseStatus,
    pub owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub task_definition_arn: Option<String>,
    pub deployment_id: Option<String>,
    pub superseded_by: Option<String>,
    /// Why the health hook failed the release, when it did.
    pub hook_reason: Option<String>,
    /// The last hook execution whose verdict CodeDeploy accepted.
    pub hook_reported_execution: Option<String>,
    /// Who shipped it (commit, source, CI run, actor), when the image says.
    pub provenance: Provenance,
    /// The operator's request that deployed it this time; `None` for a push.
    pub request: Option<Requested>,
}

impl ReleaseRecord {
    pub fn from_push(push: &ImagePush) -> Self {
        Self {
            app: push.app.clone(),
            digest: push.digest.clone(),
            version: push.version.clone(),
            image: push.image.clone(),
            pushed_at: push.pushed_at,
            status: ReleaseStatus::Claimed,
            owner: None,
            lease_until: None,
            task_definition_arn: None,
            deployment_id: None,
            superseded_by: None,
            hook_reason: None,
            hook_reported_execution: None,
            provenance: push.provenance.clone(),
            request: push.request.clone(),
        }
    }
}

impl ReleaseRecord {
    /// The push (or request) this release run was claimed for, to claim it again.
    pub fn as_push(&self, repository: &str) -> ImagePush {
        ImagePush {
            app: self.app.clone(),
            repository: repository.to_string(),
            version: self.version.clone(),
            digest: self.digest.clone(),
            image: self.image.clone(),
            pushed_at: self.pushed_at,
            provenance: self.provenance.clone(),
            request: self.request.clone(),
        }
    }

    /// Whether `push` is a later push of this finished release's digest under another release
    /// tag (a redelivery of the same push, or a late one of an earlier tag, is not).
    pub fn is_retagged_by(&self, push: &ImagePush) -> bool {
        self.status.is_final() && push.version != self.version && push.pushed_at > self.pushed_at
    }

    /// Claimed, and its claimer's lease has run out: the invocation died before it went on.
    pub fn is_stale_claim(&self, now: DateTime<Utc>) -> bool {
        self.status == ReleaseStatus::Claimed && self.lease_until.is_none_or(|t| t <= now)
    }
}

/// The outcome of claiming a release.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This invocation owns the release: new, or taken over from one whose lease expired.
    /// Resume after the last step the record shows.
    Acquired(ReleaseRecord),
    /// Another invocation holds a live claim on it.
    HeldElsewhere(ReleaseRecord),
    /// Nothing left to do here (waiting, deploying, or finished).
    Done(ReleaseRecord),
}

#[derive(Debug, thiserror::Error)]
#[error("release ledger: {operation} failed: {message}")]
pub struct LedgerError {
    pub operation: &'static str,
    pub message: String,
}

/// Release items: claims, steps, and the history the notifier and operators read.
#[async_trait]
pub trait ReleaseLedger: Send + Sync {
    /// Claims a pushed release for the invocation `lease` names, until its lease ends. For an
    /// operator's request (`push.request`), a release of the digest that has ended is reopened
    /// for it; one still under way is `Done` (it is not deployed twice); the same request again
    /// is claimed as a push's retry is.
    async fn claim(&self, push: &ImagePush, lease: &Lease) -> Result<Claim, LedgerError>;
    async fn record_registered(
        &self,
        app: &str,
        digest: &str,
        task_definition_arn: &str,
    ) -> Result<(), LedgerError>;
    async fn release(&self, app: &str, digest: &str) -> Result<Option<ReleaseRecord>, LedgerError>;
    /// The app's releases still `claimed` by an invocation whose lease ran out before `now`:
    /// one that died between its claim and the queue's admission left nothing else behind,
    /// so the sweep reads these and takes them on.
    async fn stale_claims(
        &self,
        app: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleaseRecord>, LedgerError>;
    /// Releases superseded in favour of `digest`.
    async fn superseded_by(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Vec<ReleaseRecord>, LedgerError>;
    /// The app's most recent release that deployed successfully (what production serves).
    async fn last_succeeded(&self, app: &str) -> Result<Option<ReleaseRecord>, LedgerError>;
}

/// The apps' deployment queues (`crate::queue`).
#[async_trait]
pub trait QueueLedger: Send + Sync {
    /// The app's queue as last written (strongly consistent).
    async fn queue(&self, app: &str) -> Result<Queue, LedgerError>;
    /// The queues of several apps, in the order asked.
    async fn queues(&self, apps: &[String]) -> Result<Vec<Queue>, LedgerError>;
    /// Writes `plan` if the queue is still as `read`; `false` when another writer got there first.
    async fn commit(&self, app: &str, read: &Queue, plan: &Plan) -> Result<bool, LedgerError>;
}

/// Announcement markers: each state of a deployment is posted to Slack once.
#[async_trait]
pub trait NoticeLedger: Send + Sync {
    /// Claims the announcement of one state of one deployment. `false` when it was announced
    /// already, or another invocation is announcing it now (EventBridge delivers at least once).
    async fn claim_notice(
        &self,
        deployment_id: &str,
        state: &str,
        lease: &Lease,
    ) -> Result<bool, LedgerError>;
    /// The announcement was delivered: redeliveries of the event post nothing.
    async fn notice_posted(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError>;
    /// The announcement failed: give the claim back so the retried event can post it.
    async fn release_notice(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError>;
    /// Takes the one Slack message of a release run (`anchor`: the deployment that started it)
    /// for this invocation, one writer at a time: what it shows so far, or `None` while
    /// another invocation writes it (its lease runs out with its invocation).
    async fn take_message(
        &self,
        anchor: &str,
        lease: &Lease,
    ) -> Result<Option<ReleaseMessage>, LedgerError>;
    /// The run's message as last kept, read without taking it (the operator's command).
    async fn release_message(&self, anchor: &str) -> Result<Option<ReleaseMessage>, LedgerError>;
    /// Records where the message is and what it shows; gives it back when `done`.
    async fn keep_message(
        &self,
        anchor: &str,
        message: &ReleaseMessage,
        lease: &Lease,
        done: bool,
    ) -> Result<(), LedgerError>;
}

/// The one Slack message of a release run (Slack app mode): where it is, and the furthest
/// state it shows (it never goes back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseMessage {
    pub channel: Option<String>,
    pub ts: Option<String>,
    /// 0 nothing posted, 1 queued or started, 2 ready on green, 3 waiting for approval,
    /// 4 approved or rejected, 5 ended.
    pub rank: u8,
    /// The deployment whose state it shows (a rollback deployment's states go to the thread).
    pub deployment: Option<String>,
    /// What it shows (the message's JSON), to post again if someone deletes it.
    pub payload: Option<String>,
    /// Its link, for people.
    pub permalink: Option<String>,
}

/// A release with the timeline of its statuses, as the operator's history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseEntry {
    pub record: ReleaseRecord,
    /// Each status the release went through, and when, oldest first.
    pub timeline: Vec<(ReleaseStatus, DateTime<Utc>)>,
    /// Its wait for approval and the decision, when it had one.
    pub approval: Option<ApprovalRecord>,
}

impl ReleaseEntry {
    /// When the release last reached `status`.
    pub fn reached(&self, status: ReleaseStatus) -> Option<DateTime<Utc>> {
        self.timeline
            .iter()
            .rev()
            .find(|(s, _)| *s == status)
            .map(|(_, at)| *at)
    }
}

/// What the operator's command reads: the apps with a queue, and every release of an app.
#[async_trait]
pub trait HistoryLedger: Send + Sync {
    /// The apps Greenlight has deployed (those with a queue item), sorted.
    async fn apps(&self) -> Result<Vec<String>, LedgerError>;
    /// Every release of the app still kept (400 days), in no particular order.
    async fn history(&self, app: &str) -> Result<Vec<ReleaseEntry>, LedgerError>;
}

/// The health hook's verdicts, kept on the release item they judge.
#[async_trait]
pub trait VerdictLedger: Send + Sync {
    /// Records the health hook's verdict on a release (`reason` is kept for the notifier).
    async fn record_hook_verdict(
        &self,
        app: &str,
        digest: &str,
        lifecycle_event: &str,
        passed: bool,
        reason: &str,
    ) -> Result<(), LedgerError>;
    /// A native hook round that did not decide yet ("round 2: 1/3 good answers in a row"):
    /// the release's Slack message says how checking green goes.
    async fn record_hook_round(
        &self,
        app: &str,
        digest: &str,
        stage: &str,
        round: u32,
        found: &str,
    ) -> Result<(), LedgerError>;
    /// Green passed and the app asks for approval: the engine holds the release until a
    /// person decides or the wait expires (`crate::approval`).
    async fn record_approval_wait(
        &self,
        app: &str,
        digest: &str,
        wait: &Wait,
    ) -> Result<(), LedgerError>;
    /// CodeDeploy accepted the verdict of this hook execution: a redelivery may skip it.
    async fn record_hook_reported(
        &self,
        app: &str,
        digest: &str,
        execution_id: &str,
    ) -> Result<(), LedgerError>;
}

/// What a person decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Production traffic moves to green.
    Approve,
    /// The release rolls back; production stays on blue.
    Reject,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approved",
            Self::Reject => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approved" => Some(Self::Approve),
            "rejected" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// An engine's wait for one release run's decision, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub deployment_id: String,
    /// When the engine's timeout rolls it back (Greenlight's reckoning: green's pass plus the
    /// configured timeout; the engine's own clock decides).
    pub expires_at: DateTime<Utc>,
}

/// A decision, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub choice: Choice,
    /// Who: a Slack user (`slack:U024BE7LH`) or an AWS identity (`arn:aws:sts::…`).
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
    /// Carried out on the engine.
    pub applied: bool,
}

/// The approval state of a release run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub app: String,
    pub digest: String,
    pub version: String,
    pub pushed_at_ms: i64,
    pub wait: Wait,
    pub decision: Option<Decision>,
}

/// The approval items of the ledger.
#[async_trait]
pub trait ApprovalLedger: QueueLedger + Send + Sync {
    /// The release run's wait and decision, if it has a wait.
    async fn approval(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Option<ApprovalRecord>, LedgerError>;
    /// Writes the decision if the run still waits on `deployment_id` (pushed at
    /// `pushed_at_ms`) and nobody decided yet; `false` otherwise.
    async fn record_decision(
        &self,
        app: &str,
        digest: &str,
        pushed_at_ms: i64,
        deployment_id: &str,
        decision: &Decision,
    ) -> Result<bool, LedgerError>;
    /// The decision was carried out on the engine.
    async fn decision_applied(&self, app: &str, digest: &str) -> Result<(), LedgerError>;
}

/// The whole ledger, as one table serves it.
pub trait Ledger:
    ReleaseLedger + QueueLedger + NoticeLedger + VerdictLedger + ApprovalLedger
{
}

impl<T: ReleaseLedger + QueueLedger + NoticeLedger + VerdictLedger + ApprovalLedger> Ledger for T {}
