//! Announcement markers (partition `notice#<deployment id>`, sort key the state): each state
//! of a deployment is posted to Slack once.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::{failed, is_condition_failure, n, s, update_if, DynamoLedger};
use crate::ledger::{LedgerError, NoticeLedger};
use crate::queue::Lease;

/// Announcement markers expire (DynamoDB TTL on `expires_at`) after 30 days.
const NOTICE_RETENTION_SECS: i64 = 30 * 24 * 3600;

fn notice_key(deployment_id: &str) -> AttributeValue {
    s(format!("notice#{deployment_id}"))
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
