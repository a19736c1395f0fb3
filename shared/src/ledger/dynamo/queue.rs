//! The queue item of each app (sort key `queue`): read alone or in batches, and changed only by
//! [`QueueLedger::commit`], one transaction with every release item the change touches.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem, Update};

use super::releases::status_update;
use super::{failed, get_s, n, partition, release_key, s, DynamoLedger, Item, QUEUE_KEY};
use crate::ledger::{LedgerError, QueueLedger};
use crate::queue::{Change, Plan, Queue};

impl DynamoLedger {
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

fn queue_of(item: Item) -> Result<Queue, LedgerError> {
    serde_dynamo::from_item(item).map_err(|e| LedgerError {
        operation: "GetItem",
        message: format!("queue item is malformed: {e}"),
    })
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
