//! Native ECS blue/green lifecycle hooks: what ECS invokes a hook function with, and what the
//! function answers (ECS developer guide, "Lambda hooks for Amazon ECS service deployments").
//!
//! The hook does not call an API to report: it returns `SUCCEEDED`, `FAILED`, or `IN_PROGRESS`
//! with a `callBackDelay`, after which ECS invokes it again with the `hookDetails` it returned
//! (merged into the hook's own configured details).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The invocation payload. `executionDetails` wraps the deployment's facts (the current guide
/// and AWS's sample functions; some older translations show them at the top level).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsHookEvent {
    /// The hook execution: the same for every re-invocation after IN_PROGRESS.
    pub execution_id: String,
    /// `POST_TEST_TRAFFIC_SHIFT`, … (a string: ECS adds stages).
    pub lifecycle_stage: String,
    /// The service deployment's ARN.
    pub resource_arn: String,
    pub execution_details: ExecutionDetails,
    #[serde(default)]
    pub hook_details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetails {
    pub service_arn: String,
    /// The revision being deployed (green); it stays green during a rollback.
    pub target_service_revision_arn: String,
    /// Revision ARN → percent; empty at the POST_* stages.
    #[serde(default)]
    pub test_traffic_weights: HashMap<String, f64>,
    #[serde(default)]
    pub production_traffic_weights: HashMap<String, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HookStatus {
    Succeeded,
    Failed,
    InProgress,
}

/// The function's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsHookAnswer {
    pub hook_status: HookStatus,
    /// Seconds until ECS invokes the hook again (IN_PROGRESS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_back_delay: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_details: Option<serde_json::Value>,
}

/// Whether a payload is an ECS lifecycle hook invocation (rather than CodeDeploy's).
pub fn is_ecs_hook_event(payload: &serde_json::Value) -> bool {
    payload.get("executionId").is_some() && payload.get("lifecycleStage").is_some()
}

/// `(cluster, service)` of `arn:<partition>:ecs:<region>:<account>:service/<cluster>/<service>`.
pub fn service_of(arn: &str) -> Option<(&str, &str)> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("service"), Some(cluster), Some(service), None)
            if !cluster.is_empty() && !service.is_empty() =>
        {
            Some((cluster, service))
        }
        _ => None,
    }
}

/// Whether `arn` is an ECS ARN of `kind` (`service-deployment`, `service-revision`) with the
/// characters ARNs have, at most 1,024 of them.
pub fn is_ecs_arn(arn: &str, kind: &str) -> bool {
    arn.len() <= 1024
        && arn.starts_with("arn:")
        && arn.split(':').nth(2) == Some("ecs")
        && arn
            .split(':')
            .nth(5)
            .is_some_and(|path| path.starts_with(&format!("{kind}/")))
        && arn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-.".contains(&b))
}

impl EcsHookEvent {
    /// Why the event cannot be answered as it is (its values are not repeated).
    pub fn problem(&self) -> Option<&'static str> {
        if self.execution_id.is_empty() || self.execution_id.len() > 128 {
            return Some("executionId must be 1 to 128 characters");
        }
        if !is_ecs_arn(&self.resource_arn, "service-deployment") {
            return Some("resourceArn is not an ECS service deployment ARN");
        }
        if !is_ecs_arn(&self.execution_details.service_arn, "service")
            || service_of(&self.execution_details.service_arn).is_none()
        {
            return Some("executionDetails.serviceArn is not an ECS service ARN");
        }
        if !is_ecs_arn(
            &self.execution_details.target_service_revision_arn,
            "service-revision",
        ) {
            return Some(
                "executionDetails.targetServiceRevisionArn is not an ECS service revision ARN",
            );
        }
        if self.lifecycle_stage.len() > 64 {
            return Some("lifecycleStage is too long");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::from_str(include_str!(
            "../../events/ecs-lifecycle-hook-post-test-traffic-shift.json"
        ))
        .unwrap()
    }

    #[test]
    fn the_guides_payload_reads_and_names_its_service() {
        let payload = sample();
        assert!(is_ecs_hook_event(&payload));
        let event: EcsHookEvent = serde_json::from_value(payload).unwrap();
        assert_eq!(event.lifecycle_stage, "POST_TEST_TRAFFIC_SHIFT");
        assert_eq!(event.problem(), None);
        assert_eq!(
            service_of(&event.execution_details.service_arn),
            Some(("my-cluster", "web2"))
        );
        assert!(event.execution_details.test_traffic_weights.is_empty());
    }

    #[test]
    fn arns_of_another_kind_or_shape_are_refused() {
        let mut event: EcsHookEvent = serde_json::from_value(sample()).unwrap();
        event.resource_arn = event.execution_details.service_arn.clone();
        assert!(event.problem().is_some());
        assert_eq!(service_of("arn:aws:ecs:us-east-1:1:service/web2"), None);
        assert!(!is_ecs_arn(
            "arn:aws:ecs:us-east-1:1:service-revision/c/s/1\n",
            "service-revision"
        ));
    }

    #[test]
    fn answers_are_the_shape_ecs_reads() {
        let answer = EcsHookAnswer {
            hook_status: HookStatus::InProgress,
            call_back_delay: Some(5),
            hook_details: Some(serde_json::json!({"greenlight": {"good": 1}})),
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"hookStatus": "IN_PROGRESS", "callBackDelay": 5, "hookDetails": {"greenlight": {"good": 1}}})
        );
        let done = EcsHookAnswer {
            hook_status: HookStatus::Succeeded,
            call_back_delay: None,
            hook_details: None,
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            serde_json::json!({"hookStatus": "SUCCEEDED"})
        );
    }
}
