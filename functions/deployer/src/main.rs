use std::sync::Arc;

use greenlight_deployer::{handle, Deps, LEASE_MARGIN, READBACK_PAUSE};
use greenlight_shared::approval::EngineGates;
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecr::Ecr, ecs::Ecs};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::startup::{report_init_error, Live, Startup};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = match Startup::load().await {
        Ok(startup) => startup,
        Err(failed) => failed.report_and_exit().await,
    };
    let (Some(ledger), Ok(hook_function)) =
        (startup.ledger(), std::env::var("GREENLIGHT_HOOK_FUNCTION"))
    else {
        let message = "GREENLIGHT_LEDGER_TABLE (or the config's [ledger] table) and GREENLIGHT_HOOK_FUNCTION must be set";
        tracing::error!("cold start failed: {message}");
        report_init_error("ConfigMissing", message).await;
        std::process::exit(1);
    };
    let codedeploy = Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&startup.sdk)));
    let ecs = Arc::new(Ecs(aws_sdk_ecs::Client::new(&startup.sdk)));
    let deps = Deps {
        ledger,
        hook_function,
        gates: EngineGates {
            ecs: ecs.clone(),
            codedeploy: codedeploy.clone(),
        },
        codedeploy,
        ecs,
        registry: Arc::new(Ecr(aws_sdk_ecr::Client::new(&startup.sdk))),
        config: startup.config,
        lease_margin: LEASE_MARGIN,
        readback_pause: READBACK_PAUSE,
    };
    let deps = Live::new(deps, startup.refresh);
    startup.profile.ready();
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move { handle(&*deps.current().await, event.payload, &invocation).await }
    }))
    .await
}
