//! Release items (partition `app#<name>`, sort key `release#<digest>`): the claim, each step
//! recorded, a final run reopened for a request or a retag (its earlier run archived), and the
//! history the operator's command reads.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, Utc};

use super::{
    failed, get_n, get_s, is_condition_failure, n, partition, release_key, s, update_if,
    DynamoLedger, Item, QUEUE_KEY,
};
use crate::events::ImagePush;
use crate::ledger::{
    Claim, HistoryLedger, LedgerError, ReleaseEntry, ReleaseLedger, ReleaseRecord, ReleaseStatus,
};
use crate::provenance::Provenance;
use crate::queue::Lease;
use crate::request::Requested;

/// Release items are history: DynamoDB's TTL removes them 400 days after the push.
const RELEASE_RETENTION_SECS: i64 = 400 * 24 * 3600;

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
}

/// The update expression and values that set a release's status, append it to the status
/// history, and set `extra` attributes.
pub(super) fn status_update(
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
                    approval: super::approvals::approval_of(item),
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
