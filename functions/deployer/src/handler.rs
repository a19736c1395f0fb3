//! The deployer's router: reads an invocation's payload by its source and hands it to the
//! job that handles it (a push, an operator's request, a deployment's end, the sweep).

use crate::core::{location, with_provenance, DeployError, Deps, Outcome};
use crate::driver::deploy_release;
use crate::ends::{handle_deployment_end, handle_service_deployment_change, sweep};
use crate::requests::handle_request;
use aws_lambda_events::codedeploy::CodeDeployEvent;
use greenlight_shared::events::{
    classify_push, clipped, EcrImageEvent, EcsDeploymentEvent, SHOWN_NAME_MAX,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::request::OperatorRequest;
use tracing::info;

/// What the deployer is invoked with, read from the EventBridge envelope by its source.
#[derive(Debug)]
pub enum DeployerEvent {
    Push(EcrImageEvent),
    DeploymentEnd(CodeDeployEvent),
    /// A native blue/green deployment changed state.
    ServiceDeploymentChange(EcsDeploymentEvent),
    Sweep,
    /// An operator's request, from the `greenlight` command.
    Request(OperatorRequest),
}

/// Reads an invocation's payload; anything else is a `MalformedEvent` with a short reason that
/// repeats none of the payload's values.
pub fn parse_event(event: serde_json::Value) -> Result<DeployerEvent, DeployError> {
    if event.get("greenlight").is_some() {
        let request: OperatorRequest =
            serde_json::from_value(event).map_err(|e| malformed("operator request", &e))?;
        if let Some(problem) = request.problem() {
            return Err(DeployError::MalformedEvent(format!(
                "operator request: {problem}"
            )));
        }
        return Ok(DeployerEvent::Request(request));
    }
    match event.get("source").and_then(|s| s.as_str()) {
        Some("aws.ecr") => serde_json::from_value(event)
            .map(DeployerEvent::Push)
            .map_err(|e| malformed("ECR event", &e)),
        Some("aws.codedeploy") => serde_json::from_value(event)
            .map(DeployerEvent::DeploymentEnd)
            .map_err(|e| malformed("CodeDeploy event", &e)),
        Some("aws.ecs") => serde_json::from_value(event)
            .map(DeployerEvent::ServiceDeploymentChange)
            .map_err(|e| malformed("ECS deployment event", &e)),
        Some("aws.events") => Ok(DeployerEvent::Sweep),
        Some(_) => Err(DeployError::MalformedEvent(
            "unexpected event source".into(),
        )),
        None => Err(DeployError::MalformedEvent(
            "the event names no source".into(),
        )),
    }
}

/// Entry point: routes an EventBridge event by its source.
pub async fn handle(
    deps: &Deps,
    event: serde_json::Value,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    match parse_event(event)? {
        DeployerEvent::Push(event) => handle_push(deps, &event, invocation).await,
        DeployerEvent::DeploymentEnd(event) => {
            handle_deployment_end(deps, &event, invocation).await
        }
        DeployerEvent::ServiceDeploymentChange(event) => {
            handle_service_deployment_change(deps, &event, invocation).await
        }
        DeployerEvent::Sweep => sweep(deps, invocation).await,
        DeployerEvent::Request(request) => handle_request(deps, &request, invocation).await,
    }
}

/// A short reason, without the values the parser quoted (they may be anything, of any size).
pub(crate) fn malformed(what: &str, e: &serde_json::Error) -> DeployError {
    DeployError::MalformedEvent(format!(
        "{what}: {}",
        greenlight_shared::error::redact_event_error(&e.to_string())
    ))
}

pub(crate) async fn handle_push(
    deps: &Deps,
    event: &EcrImageEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let here = location(invocation)?;
    let (push, app) = match classify_push(event, &deps.config, &here) {
        Ok(found) => found,
        Err(reason) => {
            let shown = |v: &Option<String>| clipped(v.as_deref().unwrap_or(""), SHOWN_NAME_MAX);
            info!(
                skip = reason.code(),
                repository = %shown(&event.detail.repository_name),
                tag = %shown(&event.detail.image_tag),
                action = %shown(&event.detail.action_type),
                "skipped: {reason}"
            );
            return Ok(Outcome::Skipped {
                reason: reason.to_string(),
            });
        }
    };
    let push = with_provenance(deps, push).await;
    info!(app = %push.app, version = %push.version, digest = %push.digest,
          commit = push.provenance.short_revision().unwrap_or(""),
          actor = push.provenance.actor.as_deref().unwrap_or(""), "release pushed");
    deploy_release(deps, &push, app, invocation).await
}
