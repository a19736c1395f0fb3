//! The release ledger: exactly-once deployment and "newest wins" in DynamoDB.
//!
//! One table, two kinds of item per app (partition `app#<name>`):
//! - a release item per pushed digest (`release#<digest>`): claimed with a conditional write
//!   before any other call, then records each step done (`registered` task definition,
//!   `deploying` deployment id) and its end (`succeeded`, `failed`, `stopped`, `superseded`,
//!   `already_running`), with a status history. A claim carries a lease: an invocation that
//!   died is taken over once its lease expires, and resumes after the last step recorded.
//! - one deployment slot (`slot`): the release being deployed (`active_*`) and at most one
//!   release waiting (`pending_*`). A push that finds the slot busy waits there; a newer push
//!   replaces an older waiting one (which is marked superseded), never the other way round.
//! - one announcement marker per deployment state (partition `notice#<deployment id>`), so a
//!   redelivered state-change event is not posted to Slack twice; it expires after 30 days.
//!
//! Every error other than a failed condition fails the invocation (so Lambda retries it):
//! nothing is deployed without a claim.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use crate::events::ImagePush;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

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
        }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Acquired,
    Busy {
        active_digest: String,
        active_deployment_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parked {
    /// Waiting for the running deployment; `replaced` is the older release it superseded.
    Waiting { replaced: Option<String> },
    /// A newer release is already waiting: this one is superseded by it.
    Superseded { by: String },
}

#[derive(Debug, thiserror::Error)]
#[error("release ledger: {operation} failed: {message}")]
pub struct LedgerError {
    pub operation: &'static str,
    pub message: String,
}

#[async_trait]
pub trait Ledger: Send + Sync {
    async fn claim(&self, push: &ImagePush, owner: &str) -> Result<Claim, LedgerError>;
    async fn record_registered(
        &self,
        app: &str,
        digest: &str,
        task_definition_arn: &str,
    ) -> Result<(), LedgerError>;
    async fn record_status(
        &self,
        app: &str,
        digest: &str,
        status: ReleaseStatus,
    ) -> Result<(), LedgerError>;
    /// Takes the app's deployment slot for this release.
    async fn acquire_slot(&self, app: &str, digest: &str) -> Result<Slot, LedgerError>;
    /// Gives the slot back (the deployment could not be started).
    async fn release_slot(&self, app: &str, digest: &str) -> Result<(), LedgerError>;
    async fn record_deploying(
        &self,
        app: &str,
        digest: &str,
        deployment_id: &str,
    ) -> Result<(), LedgerError>;
    /// Stores the release as the app's pending release ("newest wins").
    async fn park(&self, release: &ReleaseRecord) -> Result<Parked, LedgerError>;
    /// Frees the slot if this deployment holds it and records how it ended; the digest it held.
    async fn finish(
        &self,
        app: &str,
        deployment_id: &str,
        outcome: ReleaseStatus,
    ) -> Result<Option<String>, LedgerError>;
    /// Moves the pending release into a free slot and claims it for `owner`.
    async fn take_pending(
        &self,
        app: &str,
        owner: &str,
    ) -> Result<Option<ReleaseRecord>, LedgerError>;
    async fn release(&self, app: &str, digest: &str) -> Result<Option<ReleaseRecord>, LedgerError>;
    /// Releases superseded in favour of `digest`.
    async fn superseded_by(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Vec<ReleaseRecord>, LedgerError>;
    /// The app's most recent release that deployed successfully (what production serves).
    async fn last_succeeded(&self, app: &str) -> Result<Option<ReleaseRecord>, LedgerError>;
    /// Claims the announcement of one state of one deployment. `false` when it was announced
    /// already, or another invocation is announcing it now (EventBridge delivers at least once).
    async fn claim_notice(&self, deployment_id: &str, state: &str) -> Result<bool, LedgerError>;
    /// The announcement was delivered: redeliveries of the event post nothing.
    async fn notice_posted(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError>;
    /// The announcement failed: give the claim back so the retried event can post it.
    async fn release_notice(&self, deployment_id: &str, state: &str) -> Result<(), LedgerError>;
    /// Records the health hook's verdict on a release (`reason` is kept for the notifier).
    async fn record_hook_verdict(
        &self,
        app: &str,
        digest: &str,
        lifecycle_event: &str,
        passed: bool,
        reason: &str,
    ) -> Result<(), LedgerError>;
}

/// The ledger in a DynamoDB table (`pk`, `sk` string keys).
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    lease: Duration,
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

const SLOT_KEY: &str = "slot";

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
    })
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

impl DynamoLedger {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        lease: Duration,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            lease,
        }
    }

    fn lease_until(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp_millis() + self.lease.as_millis() as i64
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

    /// The app's release items matching `filter` (which names its one value `:v`).
    async fn query_releases(
        &self,
        app: &str,
        filter: &str,
        value: AttributeValue,
    ) -> Result<Vec<Item>, LedgerError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :release)")
            .filter_expression(filter)
            .expression_attribute_values(":pk", partition(app))
            .expression_attribute_values(":release", s("release#"))
            .expression_attribute_values(":v", value)
            .send()
            .await
            .map_err(failed("Query"))?;
        Ok(out.items.unwrap_or_default())
    }

    /// Sets a release's status (and extra attributes), appending to its history.
    async fn update_release(
        &self,
        app: &str,
        digest: &str,
        status: ReleaseStatus,
        extra: &[(&str, AttributeValue)],
    ) -> Result<(), LedgerError> {
        let now = Utc::now();
        let mut expr = "SET release_status = :status, updated_at = :now, status_history = list_append(if_not_exists(status_history, :empty), :entry)".to_string();
        let mut req = self
            .update(app, release_key(digest))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":entry", history_entry(status, now));
        for (name, value) in extra {
            expr.push_str(&format!(", {name} = :{name}"));
            req = req.expression_attribute_values(format!(":{name}"), value.clone());
        }
        // A release item that does not exist has nothing to record (a deployment not started
        // by Greenlight, or a ledger emptied by hand).
        update_if(req.update_expression(expr)).await.map(drop)
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn claim(&self, push: &ImagePush, owner: &str) -> Result<Claim, LedgerError> {
        for _ in 0..3 {
            let now = Utc::now();
            // Write first: a fresh push costs one call; a claim that exists comes back with the
            // failed condition.
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", partition(&push.app))
                .item("sk", release_key(&push.digest))
                .item("app", s(&push.app))
                .item("digest", s(&push.digest))
                .item("release_version", s(&push.version))
                .item("image", s(&push.image))
                .item("pushed_at_ms", n(push.pushed_at.timestamp_millis()))
                .item("pushed_at", s(push.pushed_at.to_rfc3339()))
                .item("release_status", s(ReleaseStatus::Claimed.as_str()))
                .item("lease_owner", s(owner))
                .item("lease_until", n(self.lease_until(now)))
                .item("created_at", s(now.to_rfc3339()))
                .item("updated_at", s(now.to_rfc3339()))
                .item("status_history", history_entry(ReleaseStatus::Claimed, now))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let returned = match put {
                Ok(_) => {
                    return Ok(Claim::Acquired(ReleaseRecord {
                        owner: Some(owner.to_string()),
                        lease_until: DateTime::from_timestamp_millis(self.lease_until(now)),
                        ..ReleaseRecord::from_push(push)
                    }))
                }
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
            if !record.status.is_in_flight() {
                return Ok(Claim::Done(record));
            }
            let lease_live = record.lease_until.is_some_and(|t| t > now);
            if lease_live && record.owner.as_deref() != Some(owner) {
                return Ok(Claim::HeldElsewhere(record));
            }
            // Take over: the holder died (lease expired) or this is its own retry.
            let take = self
                .update(&push.app, release_key(&push.digest))
                .update_expression("SET lease_owner = :me, lease_until = :lease")
                .condition_expression("lease_owner = :old_owner AND lease_until = :old_lease")
                .expression_attribute_values(":me", s(owner))
                .expression_attribute_values(":lease", n(self.lease_until(now)))
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
                        lease_until: DateTime::from_timestamp_millis(self.lease_until(now)),
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

    async fn record_status(
        &self,
        app: &str,
        digest: &str,
        status: ReleaseStatus,
    ) -> Result<(), LedgerError> {
        self.update_release(app, digest, status, &[]).await
    }

    async fn acquire_slot(&self, app: &str, digest: &str) -> Result<Slot, LedgerError> {
        let now = Utc::now();
        let take = self
            .update(app, s(SLOT_KEY))
            .update_expression("SET active_digest = :d, active_lease_until = :lease")
            .condition_expression(
                "attribute_not_exists(active_digest) OR active_digest = :d OR \
                 (attribute_not_exists(active_deployment_id) AND active_lease_until < :now)",
            )
            .expression_attribute_values(":d", s(digest))
            .expression_attribute_values(":lease", n(self.lease_until(now)))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        match take {
            Ok(_) => Ok(Slot::Acquired),
            Err(e) if is_condition_failure(&e) => {
                let slot = self.get(app, s(SLOT_KEY)).await?.unwrap_or_default();
                Ok(Slot::Busy {
                    active_digest: get_s(&slot, "active_digest").unwrap_or_default(),
                    active_deployment_id: get_s(&slot, "active_deployment_id"),
                })
            }
            Err(e) => Err(failed("UpdateItem")(e)),
        }
    }

    async fn release_slot(&self, app: &str, digest: &str) -> Result<(), LedgerError> {
        let free = self
            .update(app, s(SLOT_KEY))
            .update_expression("REMOVE active_digest, active_lease_until, active_deployment_id")
            .condition_expression("active_digest = :d")
            .expression_attribute_values(":d", s(digest));
        update_if(free).await.map(drop)
    }

    async fn record_deploying(
        &self,
        app: &str,
        digest: &str,
        deployment_id: &str,
    ) -> Result<(), LedgerError> {
        let slot = self
            .update(app, s(SLOT_KEY))
            .update_expression("SET active_deployment_id = :id")
            .condition_expression("active_digest = :d")
            .expression_attribute_values(":id", s(deployment_id))
            .expression_attribute_values(":d", s(digest));
        if !update_if(slot).await? {
            tracing::warn!(
                app,
                digest,
                deployment_id,
                "deployment started without holding the slot"
            );
        }
        self.update_release(
            app,
            digest,
            ReleaseStatus::Deploying,
            &[("deployment_id", s(deployment_id))],
        )
        .await
    }

    async fn park(&self, release: &ReleaseRecord) -> Result<Parked, LedgerError> {
        let pushed = release.pushed_at.timestamp_millis();
        let parked = self.update(&release.app, s(SLOT_KEY))
            .update_expression("SET pending_digest = :d, pending_pushed_at = :t")
            .condition_expression("attribute_not_exists(pending_digest) OR pending_digest = :d OR pending_pushed_at < :t")
            .expression_attribute_values(":d", s(&release.digest))
            .expression_attribute_values(":t", n(pushed))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match parked {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let replaced = get_s(&old, "pending_digest").filter(|d| *d != release.digest);
                self.update_release(&release.app, &release.digest, ReleaseStatus::Pending, &[])
                    .await?;
                if let Some(older) = &replaced {
                    self.update_release(
                        &release.app,
                        older,
                        ReleaseStatus::Superseded,
                        &[("superseded_by", s(&release.digest))],
                    )
                    .await?;
                }
                Ok(Parked::Waiting { replaced })
            }
            Err(e) if is_condition_failure(&e) => {
                let slot = self
                    .get(&release.app, s(SLOT_KEY))
                    .await?
                    .unwrap_or_default();
                let newer = get_s(&slot, "pending_digest").unwrap_or_default();
                self.update_release(
                    &release.app,
                    &release.digest,
                    ReleaseStatus::Superseded,
                    &[("superseded_by", s(&newer))],
                )
                .await?;
                Ok(Parked::Superseded { by: newer })
            }
            Err(e) => Err(failed("UpdateItem")(e)),
        }
    }

    async fn finish(
        &self,
        app: &str,
        deployment_id: &str,
        outcome: ReleaseStatus,
    ) -> Result<Option<String>, LedgerError> {
        let freed = self
            .update(app, s(SLOT_KEY))
            .update_expression("REMOVE active_digest, active_lease_until, active_deployment_id")
            .condition_expression("active_deployment_id = :id")
            .expression_attribute_values(":id", s(deployment_id))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        let digest = match freed {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(|a| get_s(a, "active_digest")),
            Err(e) if is_condition_failure(&e) => None,
            Err(e) => return Err(failed("UpdateItem")(e)),
        };
        if let Some(digest) = &digest {
            self.update_release(app, digest, outcome, &[]).await?;
        }
        Ok(digest)
    }

    async fn take_pending(
        &self,
        app: &str,
        owner: &str,
    ) -> Result<Option<ReleaseRecord>, LedgerError> {
        let now = Utc::now();
        let moved = self
            .update(app, s(SLOT_KEY))
            .update_expression(
                "SET active_digest = pending_digest, active_lease_until = :lease \
                 REMOVE pending_digest, pending_pushed_at, active_deployment_id",
            )
            .condition_expression(
                "attribute_exists(pending_digest) AND (attribute_not_exists(active_digest) OR \
                 (attribute_not_exists(active_deployment_id) AND active_lease_until < :now))",
            )
            .expression_attribute_values(":lease", n(self.lease_until(now)))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let digest = match moved {
            Ok(out) => match out
                .attributes
                .as_ref()
                .and_then(|a| get_s(a, "active_digest"))
            {
                Some(d) => d,
                None => return Ok(None),
            },
            Err(e) if is_condition_failure(&e) => return Ok(None),
            Err(e) => return Err(failed("UpdateItem")(e)),
        };
        let claimed = self.update(app, release_key(&digest))
            .update_expression(
                "SET release_status = :claimed, lease_owner = :me, lease_until = :lease, updated_at = :now_s, \
                 status_history = list_append(if_not_exists(status_history, :empty), :entry)",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":claimed", s(ReleaseStatus::Claimed.as_str()))
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":lease", n(self.lease_until(now)))
            .expression_attribute_values(":now_s", s(now.to_rfc3339()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":entry", history_entry(ReleaseStatus::Claimed, now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(failed("UpdateItem"))?;
        Ok(claimed.attributes.as_ref().and_then(record_of))
    }

    async fn release(&self, app: &str, digest: &str) -> Result<Option<ReleaseRecord>, LedgerError> {
        Ok(self
            .get(app, release_key(digest))
            .await?
            .as_ref()
            .and_then(record_of))
    }

    async fn superseded_by(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Vec<ReleaseRecord>, LedgerError> {
        let items = self
            .query_releases(app, "superseded_by = :v", s(digest))
            .await?;
        Ok(items.iter().filter_map(record_of).collect())
    }

    async fn last_succeeded(&self, app: &str) -> Result<Option<ReleaseRecord>, LedgerError> {
        let items = self
            .query_releases(
                app,
                "release_status = :v",
                s(ReleaseStatus::Succeeded.as_str()),
            )
            .await?;
        // ISO-8601 UTC timestamps sort as text.
        Ok(items
            .iter()
            .max_by_key(|item| get_s(item, "updated_at").unwrap_or_default())
            .and_then(record_of))
    }

    async fn claim_notice(&self, deployment_id: &str, state: &str) -> Result<bool, LedgerError> {
        let now = Utc::now();
        let claim = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", notice_key(deployment_id))
            .item("sk", s(state))
            .item("notice_status", s("posting"))
            .item("lease_until", n(self.lease_until(now)))
            .item("expires_at", n(now.timestamp() + NOTICE_RETENTION_SECS))
            .condition_expression(
                "attribute_not_exists(pk) OR (notice_status = :posting AND lease_until < :now)",
            )
            .expression_attribute_values(":posting", s("posting"))
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

    fn push() -> ImagePush {
        ImagePush {
            app: "web1".into(),
            repository: "web1".into(),
            version: "v1.4.2".into(),
            digest: "sha256:aa".into(),
            image: "img".into(),
            pushed_at: DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
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
        let ledger = DynamoLedger::new(
            mocked!(aws_sdk_dynamodb, &put),
            "ledger",
            Duration::from_secs(60),
        );
        let claim = ledger.claim(&push(), "req-1").await.unwrap();
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
        let ledger = DynamoLedger::new(
            mocked!(aws_sdk_dynamodb, &put),
            "ledger",
            Duration::from_secs(60),
        );
        let err = ledger.claim(&push(), "req-1").await.unwrap_err();
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
        let ledger = DynamoLedger::new(
            mocked!(aws_sdk_dynamodb, &put),
            "ledger",
            Duration::from_secs(60),
        );
        let claim = ledger.claim(&push(), "req-1").await.unwrap();
        assert!(
            matches!(claim, Claim::HeldElsewhere(ref r) if r.owner.as_deref() == Some("req-other")),
            "{claim:?}"
        );
        assert_eq!(put.num_calls(), 1);
    }
}
