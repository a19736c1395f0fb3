//! Announcement markers (partition `notice#<deployment id>`, sort key the state): each state
//! of a deployment is posted to Slack once.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::{failed, get_n, get_s, is_condition_failure, n, s, update_if, DynamoLedger};
use crate::ledger::{LedgerError, NoticeLedger, ReleaseMessage};
use crate::queue::Lease;

/// The sort key of a release run's Slack message, in its deployment's notice partition.
const MESSAGE_KEY: &str = "message";

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

    async fn take_message(
        &self,
        anchor: &str,
        lease: &Lease,
    ) -> Result<Option<ReleaseMessage>, LedgerError> {
        let now = Utc::now();
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", notice_key(anchor))
            .key("sk", s(MESSAGE_KEY))
            .update_expression(
                "SET lock_owner = :me, lock_until = :until, expires_at = if_not_exists(expires_at, :expires)",
            )
            .condition_expression(
                "attribute_not_exists(lock_until) OR lock_until < :now OR lock_owner = :me",
            )
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":until", n(lease.until_ms))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .expression_attribute_values(
                ":expires",
                n(now.timestamp() + NOTICE_RETENTION_SECS),
            )
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match taken {
            Ok(out) => Ok(Some(message_of(&out.attributes.unwrap_or_default()))),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(failed("UpdateItem")(e)),
        }
    }

    async fn release_message(&self, anchor: &str) -> Result<Option<ReleaseMessage>, LedgerError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", notice_key(anchor))
            .key("sk", s(MESSAGE_KEY))
            .send()
            .await
            .map_err(failed("GetItem"))?
            .item;
        Ok(item.map(|item| message_of(&item)))
    }

    async fn keep_message(
        &self,
        anchor: &str,
        message: &ReleaseMessage,
        lease: &Lease,
        done: bool,
    ) -> Result<(), LedgerError> {
        let mut set = vec!["shown_rank = :rank".to_string()];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", notice_key(anchor))
            .key("sk", s(MESSAGE_KEY))
            .condition_expression("lock_owner = :me")
            .expression_attribute_values(":me", s(&lease.owner))
            .expression_attribute_values(":rank", n(i64::from(message.rank)));
        for (attribute, placeholder, value) in [
            ("slack_channel", ":channel", &message.channel),
            ("slack_ts", ":ts", &message.ts),
            ("shown_deployment", ":deployment", &message.deployment),
            ("shown_message", ":message", &message.payload),
            ("slack_permalink", ":permalink", &message.permalink),
        ] {
            if let Some(value) = value {
                set.push(format!("{attribute} = {placeholder}"));
                request = request.expression_attribute_values(placeholder, s(value));
            }
        }
        let release = if done {
            " REMOVE lock_owner, lock_until"
        } else {
            ""
        };
        let request = request.update_expression(format!("SET {}{release}", set.join(", ")));
        // A lease that ran out is another invocation's now: it records what it shows.
        update_if(request).await.map(drop)
    }
}

fn message_of(item: &super::Item) -> ReleaseMessage {
    ReleaseMessage {
        channel: get_s(item, "slack_channel"),
        ts: get_s(item, "slack_ts"),
        rank: get_n(item, "shown_rank")
            .unwrap_or(0)
            .clamp(0, i64::from(u8::MAX)) as u8,
        deployment: get_s(item, "shown_deployment"),
        payload: get_s(item, "shown_message"),
        permalink: get_s(item, "slack_permalink"),
    }
}
