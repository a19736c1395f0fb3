//! The health hook's verdicts, written on the release item they judge (`hook_event`,
//! `hook_passed`, `hook_reason`, `hook_reported_execution`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use super::{release_key, s, update_if, DynamoLedger};
use crate::ledger::{LedgerError, VerdictLedger};

#[async_trait]
impl VerdictLedger for DynamoLedger {
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
            // The verdict ends the rounds before it.
            .update_expression("SET hook_event = :event, hook_passed = :passed, hook_reason = :reason, updated_at = :now REMOVE hook_round, hook_round_n, hook_round_stage")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":event", s(lifecycle_event))
            .expression_attribute_values(":passed", AttributeValue::Bool(passed))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", s(Utc::now().to_rfc3339()));
        update_if(verdict).await.map(drop)
    }

    async fn record_hook_round(
        &self,
        app: &str,
        digest: &str,
        stage: &str,
        round: u32,
        found: &str,
    ) -> Result<(), LedgerError> {
        let noted = self
            .update(app, release_key(digest))
            .update_expression(
                "SET hook_round = :found, hook_round_n = :n, hook_round_stage = :stage",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":found", s(found))
            .expression_attribute_values(":n", AttributeValue::N(round.to_string()))
            .expression_attribute_values(":stage", s(stage));
        update_if(noted).await.map(drop)
    }

    async fn record_approval_wait(
        &self,
        app: &str,
        digest: &str,
        wait: &crate::ledger::Wait,
    ) -> Result<(), LedgerError> {
        self.write_wait(app, digest, wait).await
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
