//! An approval's wait and decision, on the release item of the run that waits
//! (`approval_deployment`, `approval_expires_ms`; `approval_decision`, `approval_by`,
//! `approval_at`, `approval_reason`, `approval_applied`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::{get_n, get_s, n, release_key, s, update_if, DynamoLedger, Item};
use crate::ledger::{ApprovalLedger, ApprovalRecord, Choice, Decision, LedgerError, Wait};

fn time_of(text: Option<String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&text?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn approval_of(item: &Item) -> Option<ApprovalRecord> {
    let wait = Wait {
        deployment_id: get_s(item, "approval_deployment")?,
        expires_at: DateTime::from_timestamp_millis(get_n(item, "approval_expires_ms")?)?,
    };
    let decision = get_s(item, "approval_decision")
        .and_then(|d| Choice::parse(&d))
        .map(|choice| Decision {
            choice,
            by: get_s(item, "approval_by").unwrap_or_default(),
            at: time_of(get_s(item, "approval_at")).unwrap_or_default(),
            reason: get_s(item, "approval_reason"),
            applied: matches!(
                item.get("approval_applied"),
                Some(AttributeValue::Bool(true))
            ),
        });
    Some(ApprovalRecord {
        app: get_s(item, "app")?,
        digest: get_s(item, "digest")?,
        version: get_s(item, "release_version").unwrap_or_default(),
        pushed_at_ms: get_n(item, "pushed_at_ms")?,
        wait,
        decision,
    })
}

impl DynamoLedger {
    /// The wait begins: green passed; a decision of an earlier wait of the item is cleared.
    pub(super) async fn write_wait(
        &self,
        app: &str,
        digest: &str,
        wait: &Wait,
    ) -> Result<(), LedgerError> {
        let written = self
            .update(app, release_key(digest))
            .update_expression("SET approval_deployment = :deployment, approval_expires_ms = :expires REMOVE approval_decision, approval_by, approval_at, approval_reason, approval_applied")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":deployment", s(&wait.deployment_id))
            .expression_attribute_values(":expires", n(wait.expires_at.timestamp_millis()));
        update_if(written).await.map(drop)
    }
}

#[async_trait]
impl ApprovalLedger for DynamoLedger {
    async fn approval(
        &self,
        app: &str,
        digest: &str,
    ) -> Result<Option<ApprovalRecord>, LedgerError> {
        Ok(self
            .get(app, release_key(digest))
            .await?
            .as_ref()
            .and_then(approval_of))
    }

    async fn record_decision(
        &self,
        app: &str,
        digest: &str,
        pushed_at_ms: i64,
        deployment_id: &str,
        decision: &Decision,
    ) -> Result<bool, LedgerError> {
        let mut set = "SET approval_decision = :choice, approval_by = :by, approval_at = :at, approval_applied = :no".to_string();
        let mut write = self
            .update(app, release_key(digest))
            .condition_expression("approval_deployment = :deployment AND pushed_at_ms = :pushed AND attribute_not_exists(approval_decision)")
            .expression_attribute_values(":deployment", s(deployment_id))
            .expression_attribute_values(":pushed", n(pushed_at_ms))
            .expression_attribute_values(":choice", s(decision.choice.as_str()))
            .expression_attribute_values(":by", s(&decision.by))
            .expression_attribute_values(":at", s(decision.at.to_rfc3339()))
            .expression_attribute_values(":no", AttributeValue::Bool(false));
        if let Some(reason) = &decision.reason {
            set.push_str(", approval_reason = :reason");
            write = write.expression_attribute_values(":reason", s(reason));
        }
        update_if(write.update_expression(set)).await
    }

    async fn decision_applied(&self, app: &str, digest: &str) -> Result<(), LedgerError> {
        let applied = self
            .update(app, release_key(digest))
            .update_expression("SET approval_applied = :yes")
            .condition_expression("attribute_exists(approval_decision)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true));
        update_if(applied).await.map(drop)
    }
}
