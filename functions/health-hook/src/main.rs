use std::sync::Arc;
use std::time::Duration;

use greenlight_health_hook::handler::{route, route_unusable};
use greenlight_health_hook::probe::HttpProber;
use greenlight_health_hook::Deps;
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, elb::LoadBalancing};
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
                async move { route_unusable(codedeploy, event.payload, reason, &invocation).await }
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
    startup.profile.ready();
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move { route(&*deps.current().await, event.payload, &invocation).await }
    }))
    .await
}
