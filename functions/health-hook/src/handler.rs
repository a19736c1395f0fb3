//! The hook's entry: which engine invoked it. ECS (native blue/green) reads the answer from
//! the invocation's response; CodeDeploy gets a report call and reads the response nowhere.

use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::ecs_hook::is_ecs_hook_event;
use greenlight_shared::invocation::Invocation;

use crate::codedeploy::{handle, parse_event, report_unusable};
use crate::core::{Deps, HookError};
use crate::native::{answer_unusable, handle_native, parse_ecs_event};

/// One lifecycle hook invocation, of either engine.
pub async fn route(
    deps: &Deps,
    payload: serde_json::Value,
    invocation: &Invocation,
) -> Result<serde_json::Value, HookError> {
    if is_ecs_hook_event(&payload) {
        let event = parse_ecs_event(payload)?;
        return answer(handle_native(deps, &event, invocation).await);
    }
    let event = parse_event(payload)?;
    answer(handle(deps, event, invocation).await?)
}

/// One invocation when the hook cannot run its checks (its config could not be loaded): each
/// engine still gets its answer, FAILED with the reason, through a CodeDeploy client that needs
/// nothing from the config.
pub async fn route_unusable(
    codedeploy: &dyn CodeDeployApi,
    payload: serde_json::Value,
    reason: &str,
    invocation: &Invocation,
) -> Result<serde_json::Value, HookError> {
    if is_ecs_hook_event(&payload) {
        let event = parse_ecs_event(payload)?;
        return answer(answer_unusable(&event, reason));
    }
    let event = parse_event(payload)?;
    answer(report_unusable(codedeploy, event, reason, invocation).await?)
}

fn answer(response: impl serde::Serialize) -> Result<serde_json::Value, HookError> {
    serde_json::to_value(response).map_err(|e| HookError::MalformedEvent(e.to_string()))
}
