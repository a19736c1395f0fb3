use std::sync::Arc;
use std::time::Duration;

use greenlight_health_hook::probe::HttpProber;
use greenlight_health_hook::{
    answer_unusable, handle, handle_native, parse_ecs_event, parse_event, report_unusable, Deps,
    HookError,
};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, elb::LoadBalancing};
use greenlight_shared::ecs_hook::is_ecs_hook_event;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::startup::{Live, Startup};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = match Startup::load().await {
        Ok(startup) => startup,
        // Without a usable config the hook still answers every lifecycle event: Failed, with
        // the reason, through a CodeDeploy client that needs nothing from the config.
        Err(failed) => {
            let codedeploy = CodeDeploy(aws_sdk_codedeploy::Client::new(&failed.sdk));
            let reason = format!("the health hook cannot start: {}", failed.error);
            return run(service_fn(|event: LambdaEvent<serde_json::Value>| {
                let invocation = Invocation::from_context(&event.context);
                let (codedeploy, reason) = (&codedeploy, reason.as_str());
                async move {
                    if is_ecs_hook_event(&event.payload) {
                        let payload = parse_ecs_event(event.payload)?;
                        return answer(answer_unusable(&payload, reason));
                    }
                    let payload = parse_event(event.payload)?;
                    answer(report_unusable(codedeploy, payload, reason, &invocation).await?)
                }
            }))
            .await;
        }
    };
    let margin_ms = std::env::var("GREENLIGHT_HOOK_SAFETY_MARGIN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let sdk = &startup.sdk;
    let deps = Deps {
        ledger: startup.ledger(),
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(sdk))),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(sdk))),
        elb: Arc::new(LoadBalancing(aws_sdk_elasticloadbalancingv2::Client::new(
            sdk,
        ))),
        prober: Arc::new(HttpProber::new()),
        safety_margin: Duration::from_millis(margin_ms),
        config: startup.config,
    };
    let deps = Live::new(deps, startup.refresh);
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move {
            // ECS (native blue/green) reads the answer; CodeDeploy gets a report call.
            if is_ecs_hook_event(&event.payload) {
                let event = parse_ecs_event(event.payload)?;
                return answer(handle_native(&*deps.current().await, &event, &invocation).await);
            }
            let event = parse_event(event.payload)?;
            answer(handle(&*deps.current().await, event, &invocation).await?)
        }
    }))
    .await
}

fn answer(response: impl serde::Serialize) -> Result<serde_json::Value, HookError> {
    serde_json::to_value(response).map_err(|e| HookError::MalformedEvent(e.to_string()))
}
