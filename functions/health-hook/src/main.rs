use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployLifecycleEvent;
use greenlight_health_hook::probe::HttpProber;
use greenlight_health_hook::{handle, Deps};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, elb::LoadBalancing};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::startup::Startup;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = Startup::load().await?;
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
    run(service_fn(
        |event: LambdaEvent<CodeDeployLifecycleEvent>| {
            let invocation = Invocation::from_context(&event.context);
            let deps = &deps;
            async move { handle(deps, event.payload, &invocation).await }
        },
    ))
    .await
}
