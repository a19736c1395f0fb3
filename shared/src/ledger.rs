//! The release ledger in DynamoDB: exactly once, newest wins, nothing lost.
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

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use chrono::{DateTime, Utc};

use crate::events::ImagePush;
pub use crate::model::ReleaseStatus;
use crate::provenance::Provenance;
use crate::queue::{Change, Lease, Plan, Queue};
use crate::request::Requested;

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
    /// Records the health hook's verdict on a release (`reason` is kept for the notifier).
    async fn record_hook_verdict(
        &self,
        app: &str,
        digest: &str,
        lifecycle_event: &str,
        passed: bool,
        reason: &str,
    ) -> Result<(), LedgerError>;
    /// CodeDeploy accepted the verdict of this hook execution: a redelivery may skip it.
    async fn record_hook_reported(
        &self,
        app: &str,
        digest: &str,
        execution_id: &str,
    ) -> Result<(), LedgerError>;
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
}

/// A release with the timeline of its statuses, as the operator's history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseEntry {
    pub record: ReleaseRecord,
    /// Each status the release went through, and when, oldest first.
    pub timeline: Vec<(ReleaseStatus, DateTime<Utc>)>,
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

/// The whole ledger, as one table serves it.
pub trait Ledger: ReleaseLedger + QueueLedger + NoticeLedger {}

impl<T: ReleaseLedger + QueueLedger + NoticeLedger> Ledger for T {}

/// The ledger in a DynamoDB table (`pk`, `sk` string keys).
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn partition(app: &str) -> AttributeValue {
    s(format!("app#{app}"))
}

fn release_key(digest: &str) -> AttributeValue {
    s(format!("release#{digest}"))
}

const QUEUE_KEY: &str = "queue";

/// Release items are history: DynamoDB's TTL removes them 400 days after the push.
const RELEASE_RETENTION_SECS: i64 = 400 * 24 * 3600;

/// Announcement markers expire (DynamoDB TTL on `expires_at`) after 30 days.
const NOTICE_RETENTION_SECS: i64 = 30 * 24 * 3600;

fn notice_key(deployment_id: &str) -> AttributeValue {
    s(format!("notice#{deployment_id}"))
}

fn history_entry(status: ReleaseStatus, at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::L(vec![AttributeValue::M(HashMap::from([
        ("status".to_string(), s(status.as_str())),
        ("at".to_string(), s(at.to_rfc3339())),
    ]))])
}

fn record_of(item: &Item) -> Option<ReleaseRecord> {
    Some(ReleaseRecord {
        app: get_s(item, "app")?,
        digest: get_s(item, "digest")?,
        version: get_s(item, "release_version").unwrap_or_default(),
        image: get_s(item, "image").unwrap_or_default(),
        pushed_at: get_n(item, "pushed_at_ms")
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_default(),
        status: get_s(item, "release_status").and_then(|s| ReleaseStatus::parse(&s))?,
        owner: get_s(item, "lease_owner"),
        lease_until: get_n(item, "lease_until").and_then(DateTime::from_timestamp_millis),
        task_definition_arn: get_s(item, "task_definition"),
        deployment_id: get_s(item, "deployment_id"),
        superseded_by: get_s(item, "superseded_by"),
        hook_reason: get_s(item, "hook_reason"),
        hook_reported_execution: get_s(item, "hook_reported_execution"),
        provenance: Provenance {
            revision: get_s(item, "commit"),
            source: get_s(item, "source"),
            run_url: get_s(item, "run_url"),
            actor: get_s(item, "pushed_by"),
        }
        .checked(),
        request: Requested::checked(
            get_s(item, "request_id"),
            get_s(item, "requested_by"),
            get_s(item, "request_kind"),
        ),
    })
}

fn timeline_of(item: &Item) -> Vec<(ReleaseStatus, DateTime<Utc>)> {
    let Some(AttributeValue::L(entries)) = item.get("status_history") else {
        return vec![];
    };
    entries
        .iter()
        .filter_map(|entry| {
            let entry = entry.as_m().ok()?;
            let status = ReleaseStatus::parse(get_s(entry, "status")?.as_str())?;
            let at = DateTime::parse_from_rfc3339(&get_s(entry, "at")?).ok()?;
            Some((status, at.with_timezone(&Utc)))
        })
        .collect()
}

/// The provenance attributes of a release item, those the image has.
fn provenance_attributes(
    p: &Provenance,
) -> impl Iterator<Item = (&'static str, AttributeValue)> + '_ {
    [
        ("commit", &p.revision),
        ("source", &p.source),
        ("run_url", &p.run_url),
        ("pushed_by", &p.actor),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| (name, s(v.as_str()))))
}

fn failed<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_smithy_runtime_api::client::result::SdkError<E, R>) -> LedgerError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| LedgerError {
        operation,
        message: crate::error::describe_sdk_error(&e),
    }
}

/// Whether an SDK error is a failed condition (someone else got there first).
fn is_condition_failure<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error,
{
    e.as_service_error()
        .map(crate::error::error_code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// Sends a conditional update; whether its condition held (a failed condition is not an error:
/// someone else got there first, or there was nothing to change).
async fn update_if(request: UpdateItemFluentBuilder) -> Result<bool, LedgerError> {
    match request.send().await {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(failed("UpdateItem")(e)),
    }
}

/// A new release item for `push`, claimed by the invocation `lease` names.
fn release_item(push: &ImagePush, lease: &Lease, now: DateTime<Utc>) -> Item {
    let mut item = HashMap::from([
        ("pk".to_string(), partition(&push.app)),
        ("sk".to_string(), release_key(&push.digest)),
        ("app".to_string(), s(&push.app)),
        ("digest".to_string(), s(&push.digest)),
        ("release_version".to_string(), s(&push.version)),
        ("image".to_string(), s(&push.image)),
        (
            "pushed_at_ms".to_string(),
            n(push.pushed_at.timestamp_millis()),
        ),
        ("pushed_at".to_string(), s(push.pushed_at.to_rfc3339())),
        (
            "release_status".to_string(),
            s(ReleaseStatus::Claimed.as_str()),
        ),
        ("lease_owner".to_string(), s(&lease.owner)),
        ("lease_until".to_string(), n(lease.until_ms)),
        (
            "expires_at".to_string(),
            n(push.pushed_at.timestamp() + RELEASE_RETENTION_SECS),
        ),
        ("created_at".to_string(), s(now.to_rfc3339())),
        ("updated_at".to_string(), s(now.to_rfc3339())),
        (
            "status_history".to_string(),
            history_entry(ReleaseStatus::Claimed, now),
        ),
    ]);
    for (name, value) in provenance_attributes(&push.provenance) {
        item.insert(name.to_string(), value);
    }
    if let Some(request) = &push.request {
        item.insert("request_id".to_string(), s(&request.id));
        item.insert("requested_by".to_string(), s(&request.by));
        item.insert("request_kind".to_string(), s(request.kind.as_str()));
    }
    item
}

fn acquired(push: &ImagePush, lease: &Lease) -> ReleaseRecord {
    ReleaseRecord {
        owner: Some(lease.owner.clone()),
        lease_until: DateTime::from_timestamp_millis(lease.until_ms),
        ..ReleaseRecord::from_push(push)
    }
}

/// Items that are history only: an earlier run of a digest that a request deployed again.
const NOT_ARCHIVED: &str = "attribute_not_exists(archived_at)";

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(&self, app: &str, sort_key: AttributeValue) -> Result<Option<Item>, LedgerError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", partition(app))
            .key("sk", sort_key)
            .consistent_read(true)
            .send()
            .await
            .map_err(failed("GetItem"))?
            .item)
    }

    /// An UpdateItem on one of the app's items, table and key filled in.
    fn update(&self, app: &str, sort_key: AttributeValue) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", partition(app))
            .key("sk", sort_key)
    }

    /// The app's release items, every page: all of them (history), or the live ones matching
    /// `filter` (which names its one value `:v`).
    async fn query_releases(
        &self,
        app: &str,
        filter: Option<(&str, AttributeValue)>,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :release)")
            .expression_attribute_values(":pk", partition(app))
            .expression_attribute_values(":release", s("release#"));
        if let Some((filter, value)) = filter {
            query = query
                .filter_expression(format!("{filter} AND {NOT_ARCHIVED}"))
                .expression_attribute_values(":v", value);
        }
        query
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(failed("Query"))
    }

    /// Sets a release's status (and extra attributes), appending to its history.
    async fn update_release(
        &self,
        app: &str,
        digest: &str,
        status: ReleaseStatus,
        extra: &[(&str, AttributeValue)],
    ) -> Result<(), LedgerError> {
        let (expr, values) = status_update(status, extra);
        let req = self
            .update(app, release_key(digest))
            .condition_expression("attribute_exists(pk)")
            .update_expression(expr)
            .set_expression_attribute_values(Some(values));
        // A release item that does not exist has nothing to record (a deployment not started
        // by Greenlight, or a ledger emptied by hand).
        update_if(req).await.map(drop)
    }

    /// Opens a final release item again for an operator's request, in one transaction that
    /// keeps its earlier run as an archived item (`release#<digest>#<pushed_at_ms>`, history
    /// only). `false` when the item changed since `old` was read.
    async fn reopen(
        &self,
        push: &ImagePush,
        lease: &Lease,
        old: Item,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let built = |e: aws_sdk_dynamodb::error::BuildError| LedgerError {
            operation: "TransactWriteItems",
            message: e.to_string(),
        };
        let (status, pushed) = (
            old.get("release_status").cloned().unwrap_or(s("")),
            old.get("pushed_at_ms").cloned().unwrap_or(n(0)),
        );
        let mut archived = old;
        archived.insert(
            "sk".to_string(),
            s(format!(
                "release#{}#{}",
                push.digest,
                pushed.as_n().map(String::as_str).unwrap_or("0")
            )),
        );
        archived.insert("archived_at".to_string(), s(now.to_rfc3339()));
        let archive = Put::builder()
            .table_name(&self.table)
            .set_item(Some(archived))
            .build()
            .map_err(built)?;
        let reopened = Put::builder()
            .table_name(&self.table)
            .set_item(Some(release_item(push, lease, now)))
            .condition_expression("release_status = :status AND pushed_at_ms = :pushed")
            .expression_attribute_values(":status", status)
            .expression_attribute_values(":pushed", pushed)
            .build()
            .map_err(built)?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(archive).build())
            .transact_items(TransactWriteItem::builder().put(reopened).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => {
                let message = crate::error::describe_sdk_error(&e);
                match e.into_service_error() {
                    TransactWriteItemsError::TransactionCanceledException(_) => Ok(false),
                    _ => Err(LedgerError {
                        operation: "TransactWriteItems",
                        message,
                    }),
                }
            }
        }
    }

    fn queue_key(&self, app: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), partition(app)),
            ("sk".to_string(), s(QUEUE_KEY)),
        ])
    }

    /// One release change of a queue transaction.
    fn change_item(&self, app: &str, change: &Change) -> Result<TransactWriteItem, LedgerError> {
        let mut extra = vec![];
        if let Some(id) = &change.deployment_id {
            extra.push(("deployment_id", s(id)));
        }
        if let Some(by) = &change.superseded_by {
            extra.push(("superseded_by", s(by)));
        }
        if let Some((owner, until)) = &change.lease {
            extra.push(("lease_owner", s(owner)));
            extra.push(("lease_until", n(*until)));
        }
        let (expr, values) = status_update(change.status, &extra);
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", partition(app))
            .key("sk", release_key(&change.release.digest))
            .update_expression(expr)
            .set_expression_attribute_values(Some(values))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| LedgerError {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The update expression and values that set a release's status, append it to the status
/// history, and set `extra` attributes.
fn status_update(
    status: ReleaseStatus,
    extra: &[(&str, AttributeValue)],
) -> (String, HashMap<String, AttributeValue>) {
    let now = Utc::now();
    let mut expr = "SET release_status = :status, updated_at = :now, status_history = list_append(if_not_exists(status_history, :empty), :entry)".to_string();
    let mut values = HashMap::from([
        (":status".to_string(), s(status.as_str())),
        (":now".to_string(), s(now.to_rfc3339())),
        (":empty".to_string(), AttributeValue::L(vec![])),
        (":entry".to_string(), history_entry(status, now)),
    ]);
    for (name, value) in extra {
        expr.push_str(&format!(", {name} = :{name}"));
        values.insert(format!(":{name}"), value.clone());
    }
    (expr, values)
}

fn queue_of(item: Item) -> Result<Queue, LedgerError> {
    serde_dynamo::from_item(item).map_err(|e| LedgerError {
        operation: "GetItem",
        message: format!("queue item is malformed: {e}"),
    })
}

#[async_trait]
impl ReleaseLedger for DynamoLedger {
    async fn claim(&self, push: &ImagePush, lease: &Lease) -> Result<Claim, LedgerError> {
        for _ in 0..3 {
            let now = Utc::now();
            let owner = lease.owner.as_str();
            // Write first: a fresh push costs one call; a claim that exists comes back with the
            // failed condition.
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(release_item(push, lease, now)))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let returned = match put {
                Ok(_) => return Ok(Claim::Acquired(acquired(push, lease))),
                Err(e) if is_condition_failure(&e) => match e.into_service_error() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                },
                Err(e) => return Err(failed("PutItem")(e)),
            };
            let item = match returned {
                Some(item) => item,
                None => match self.get(&push.app, release_key(&push.digest)).await? {
                    Some(item) => item,
                    None => continue,
                },
            };
            let record = record_of(&item).ok_or_else(|| LedgerError {
                operation: "GetItem",
                message: format!("release item {}/{} is malformed", push.app, push.digest),
            })?;
            if let Some(request) = &push.request {
                let same_request = record.request.as_ref().is_some_and(|r| r.id == request.id);
                if !same_request {
                    // Another push or request of this digest: a final one is reopened for this
                    // request; one still under way is left to finish.
                    if record.status.is_final() {
                        if self.reopen(push, lease, item, now).await? {
                            return Ok(Claim::Acquired(acquired(push, lease)));
                        }
                        continue;
                    }
                    // A claim whose invocation died is taken over as it stands (the run it
                    // was claimed for goes on); any other run under way is left to finish.
                    if !record.is_stale_claim(now) {
                        return Ok(Claim::Done(record));
                    }
                }
            }
            if push.request.is_none() && record.is_retagged_by(push) {
                // A release tag new to a digest that shipped before (a revert rebuilt to an
                // earlier image): a new run of it, as an operator's request would make.
                if self.reopen(push, lease, item, now).await? {
                    return Ok(Claim::Acquired(acquired(push, lease)));
                }
                continue;
            }
            if !record.status.is_in_flight() {
                return Ok(Claim::Done(record));
            }
            let lease_live = record.lease_until.is_some_and(|t| t > now);
            if lease_live && record.owner.as_deref() != Some(owner) {
                return Ok(Claim::HeldElsewhere(record));
            }
            // Take over: the holder died (lease expired) or this is its own retry. Another
            // request that takes a dead request's claim over gives the run its own place in the
            // order (its receipt); the run stays the first request's, whose deployment an
            // earlier attempt may have made.
            let replaces = push
                .request
                .as_ref()
                .is_some_and(|q| record.request.as_ref().map(|r| &r.id) != Some(&q.id));
            let pushed_at = if replaces {
                push.pushed_at
            } else {
                record.pushed_at
            };
            let take = self
                .update(&push.app, release_key(&push.digest))
                .update_expression(
                    "SET lease_owner = :me, lease_until = :lease, pushed_at_ms = :pushed_ms, pushed_at = :pushed",
                )
                .expression_attribute_values(":pushed_ms", n(pushed_at.timestamp_millis()))
                .expression_attribute_values(":pushed", s(pushed_at.to_rfc3339()))
                .condition_expression("lease_owner = :old_owner AND lease_until = :old_lease")
                .expression_attribute_values(":me", s(owner))
                .expression_attribute_values(":lease", n(lease.until_ms))
                .expression_attribute_values(
                    ":old_owner",
                    s(record.owner.clone().unwrap_or_default()),
                )
                .expression_attribute_values(
                    ":old_lease",
                    item.get("lease_until").cloned().unwrap_or(n(0)),
                )
                .send()
                .await;
            match take {
                Ok(_) => {
                    return Ok(Claim::Acquired(ReleaseRecord {
                        owner: Some(owner.to_string()),
                        lease_until: DateTime::from_timestamp_millis(lease.until_ms),
                        pushed_at,
                        ..record
                    }))
                }
                Err(e) if is_condition_failure(&e) => continue,
                Err(e) => return Err(failed("UpdateItem")(e)),
            }
        }
        Err(LedgerError {
            operation: "claim",
            message: format!(
                "release {}/{} kept changing under contention",
                push.app, push.digest
            ),
        })
    }

    async fn record_registered(
        &self,
        app: &str,
        digest: &str,
        task_definition_arn: &str,
    ) -> Result<(), LedgerError> {
        self.update_release(
            app,
            digest,
            ReleaseStatus::Registered,
            &[("task_definition", s(task_definition_arn))],
        )
        .await
    }

    async fn release(&self, app: &str, digest: &str) -> Result<Option<ReleaseRecord>, LedgerError> {
        Ok(self
            .get(app, release_key(digest))
            .await?
            .as_ref()
            .and_then(record_of))
    }

    async fn stale_claims(
        &self,
        app: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleaseRecord>, LedgerError> {
        let items = self
            .query_releases(
                app,
                Some(("release_status = :v", s(ReleaseStatus::Claimed.as_str()))),
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(record_of)
            .filter(|r| r.is_stale_claim(now))
            .collect())
    }

    async fn superseded_by(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Vec<ReleaseRecord>, LedgerError> {
        let items = self
            .query_releases(app, Some(("superseded_by = :v", s(digest))))
            .await?;
        Ok(items.iter().filter_map(record_of).collect())
    }

    async fn last_succeeded(&self, app: &str) -> Result<Option<ReleaseRecord>, LedgerError> {
        let items = self
            .query_releases(
                app,
                Some(("release_status = :v", s(ReleaseStatus::Succeeded.as_str()))),
            )
            .await?;
        // ISO-8601 UTC timestamps sort as text.
        Ok(items
            .iter()
            .max_by_key(|item| get_s(item, "updated_at").unwrap_or_default())
            .and_then(record_of))
    }

    async fn record_hook_verdict(
        &self,
        app: &str,
        digest: &str,
        lifecycle_event: &str,
        passed: bool,
        reason: &str,
    ) -> Result<(), LedgerError> {
        let verdict = self
            .update(app, release_key(digest))
            .update_expression("SET hook_event = :event, hook_passed = :passed, hook_reason = :reason, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":event", s(lifecycle_event))
            .expression_attribute_values(":passed", AttributeValue::Bool(passed))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()));
        update_if(verdict).await.map(drop)
    }

    async fn record_hook_reported(
        &self,
        app: &str,
        digest: &str,
        execution_id: &str,
    ) -> Result<(), LedgerError> {
        let reported = self
            .update(app, release_key(digest))
            .update_expression("SET hook_reported_execution = :execution")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":execution", s(execution_id));
        update_if(reported).await.map(drop)
    }
}

#[async_trait]
impl QueueLedger for DynamoLedger {
    async fn queue(&self, app: &str) -> Result<Queue, LedgerError> {
        match self.get(app, s(QUEUE_KEY)).await? {
            Some(item) => queue_of(item),
            None => Ok(Queue::default()),
        }
    }

    async fn queues(&self, apps: &[String]) -> Result<Vec<Queue>, LedgerError> {
        let mut found: HashMap<String, Queue> = HashMap::new();
        // BatchGetItem takes 100 keys a call and may hand some back unprocessed.
        for chunk in apps.chunks(100) {
            let mut keys: Vec<Item> = chunk.iter().map(|a| self.queue_key(a)).collect();
            for _ in 0..5 {
                if keys.is_empty() {
                    break;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LedgerError {
                        operation: "BatchGetItem",
                        message: e.to_string(),
                    })?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(failed("BatchGetItem"))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let app = get_s(&item, "pk")
                        .and_then(|pk| pk.strip_prefix("app#").map(str::to_string))
                        .unwrap_or_default();
                    found.insert(app, queue_of(item)?);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !keys.is_empty() {
                return Err(LedgerError {
                    operation: "BatchGetItem",
                    message: "queues left unprocessed after retries".into(),
                });
            }
        }
        Ok(apps
            .iter()
            .map(|a| found.remove(a).unwrap_or_default())
            .collect())
    }

    async fn commit(&self, app: &str, read: &Queue, plan: &Plan) -> Result<bool, LedgerError> {
        let written = Queue {
            version: read.version + 1,
            ..plan.queue.clone()
        };
        let mut item: Item = serde_dynamo::to_item(written).map_err(|e| LedgerError {
            operation: "TransactWriteItems",
            message: e.to_string(),
        })?;
        item.extend(self.queue_key(app));
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = if read.version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :read")
                .expression_attribute_values(":read", n(read.version as i64))
        };
        let put = put.build().map_err(|e| LedgerError {
            operation: "TransactWriteItems",
            message: e.to_string(),
        })?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        for change in &plan.changes {
            items.push(self.change_item(app, change)?);
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) => {
                let message = crate::error::describe_sdk_error(&e);
                let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    e.into_service_error().into()
                else {
                    return Err(LedgerError {
                        operation: "TransactWriteItems",
                        message,
                    });
                };
                let codes: Vec<&str> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None"))
                    .collect();
                match codes.first() {
                    // The queue moved (or another transaction holds it): read it again.
                    Some(&"ConditionalCheckFailed") | Some(&"TransactionConflict") | None => {
                        Ok(false)
                    }
                    _ if codes.iter().skip(1).any(|c| *c == "ConditionalCheckFailed") => {
                        Err(LedgerError {
                            operation: "TransactWriteItems",
                            message: format!(
                                "a release item of app {app} that the queue names is missing"
                            ),
                        })
                    }
                    _ => Err(LedgerError {
                        operation: "TransactWriteItems",
                        message,
                    }),
                }
            }
        }
    }
}

#[async_trait]
impl NoticeLedger for DynamoLedger {
    async fn claim_notice(
        &self,
        deployment_id: &str,
        state: &str,
        lease: &Lease,
    ) -> Result<bool, LedgerError> {
        let now = Utc::now();
        // A claim still "posting" is taken over when its invocation has ended, or by that
        // invocation's own retry.
        let claim = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", notice_key(deployment_id))
            .item("sk", s(state))
            .item("notice_status", s("posting"))
            .item("lease_owner", s(&lease.owner))
            .item("lease_until", n(lease.until_ms))
            .item("expires_at", n(now.timestamp() + NOTICE_RETENTION_SECS))
            .condition_expression(
                "attribute_not_exists(pk) OR (notice_status = :posting AND \
                 (lease_until < :now OR lease_owner = :me))",
            )
            .expression_attribute_values(":posting", s("posting"))
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        match claim {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(failed("PutItem")(e)),
        }
    }

    async fn notice_posted(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError> {
        let posted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", notice_key(deployment_id))
            .key("sk", s(state))
            .update_expression("SET notice_status = :posted")
            .expression_attribute_values(":posted", s("posted"));
        update_if(posted).await.map(drop)
    }

    async fn release_notice(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", notice_key(deployment_id))
            .key("sk", s(state))
            .send()
            .await
            .map_err(failed("DeleteItem"))?;
        Ok(())
    }
}

#[async_trait]
impl HistoryLedger for DynamoLedger {
    async fn apps(&self) -> Result<Vec<String>, LedgerError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :queue")
            .expression_attribute_values(":queue", s(QUEUE_KEY))
            .projection_expression("pk")
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(failed("Scan"))?;
        let mut apps: Vec<String> = items
            .iter()
            .filter_map(|item| get_s(item, "pk")?.strip_prefix("app#").map(String::from))
            .collect();
        apps.sort();
        Ok(apps)
    }

    async fn history(&self, app: &str) -> Result<Vec<ReleaseEntry>, LedgerError> {
        let items = self.query_releases(app, None).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                Some(ReleaseEntry {
                    record: record_of(item)?,
                    timeline: timeline_of(item),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mocked;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
    };
    use aws_smithy_mocks::mock;

    fn lease(owner: &str) -> Lease {
        let now_ms = Utc::now().timestamp_millis();
        Lease {
            owner: owner.into(),
            until_ms: now_ms + 60_000,
            now_ms,
        }
    }

    fn push() -> ImagePush {
        ImagePush {
            app: "web1".into(),
            repository: "web1".into(),
            version: "v1.4.2".into(),
            digest: "sha256:aa".into(),
            image: "img".into(),
            pushed_at: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            provenance: Default::default(),
            request: None,
        }
    }

    #[tokio::test]
    async fn throttled_claim_is_retried_then_claims() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .sequence()
            .error(|| {
                PutItemError::ProvisionedThroughputExceededException(
                    ProvisionedThroughputExceededException::builder()
                        .message("slow down")
                        .meta(
                            aws_smithy_types::error::ErrorMetadata::builder()
                                .code("ProvisionedThroughputExceededException")
                                .build(),
                        )
                        .build(),
                )
            })
            .output(|| PutItemOutput::builder().build())
            .build();
        let ledger = DynamoLedger::new(mocked!(aws_sdk_dynamodb, &put), "ledger");
        let claim = ledger.claim(&push(), &lease("req-1")).await.unwrap();
        assert!(
            matches!(claim, Claim::Acquired(ref r) if r.owner.as_deref() == Some("req-1")),
            "{claim:?}"
        );
        assert_eq!(put.num_calls(), 2);
    }

    #[tokio::test]
    async fn unreachable_ledger_fails_the_claim() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .sequence()
            .http_status(500, None)
            .times(3)
            .build();
        let ledger = DynamoLedger::new(mocked!(aws_sdk_dynamodb, &put), "ledger");
        let err = ledger.claim(&push(), &lease("req-1")).await.unwrap_err();
        assert_eq!(err.operation, "PutItem");
        assert_eq!(put.num_calls(), 3);
    }

    #[tokio::test]
    async fn lost_race_reads_the_winner() {
        let winner = || {
            HashMap::from([
                ("app".to_string(), s("web1")),
                ("digest".to_string(), s("sha256:aa")),
                ("release_status".to_string(), s("claimed")),
                ("lease_owner".to_string(), s("req-other")),
                (
                    "lease_until".to_string(),
                    n(Utc::now().timestamp_millis() + 60_000),
                ),
            ])
        };
        // The failed condition carries the winner's item: no second read.
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(move || {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .set_item(Some(winner()))
                    .build(),
            )
        });
        let ledger = DynamoLedger::new(mocked!(aws_sdk_dynamodb, &put), "ledger");
        let claim = ledger.claim(&push(), &lease("req-1")).await.unwrap();
        assert!(
            matches!(claim, Claim::HeldElsewhere(ref r) if r.owner.as_deref() == Some("req-other")),
            "{claim:?}"
        );
        assert_eq!(put.num_calls(), 1);
    }
}
