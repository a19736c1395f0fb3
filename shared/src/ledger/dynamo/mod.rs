//! The ledger on one DynamoDB table (`pk`, `sk` string keys), one file per item family:
//! [`releases`] (release items and their history), [`queue`] (one queue per app), [`notices`]
//! (announcement markers), [`verdicts`] (the hook's verdicts on a release item) and
//! [`approvals`] (an approval's wait and decision on it). This file
//! holds the table handle and the attribute and error helpers they share.

mod approvals;
mod notices;
mod queue;
mod releases;
mod verdicts;

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

use super::LedgerError;

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

/// The sort key of an app's queue item.
const QUEUE_KEY: &str = "queue";

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
}
