use std::sync::Arc;

use greenlight_deployer::{handle, Deps, LEASE_MARGIN};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::startup::Startup;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = Startup::load().await?;
    let deps = Deps {
        ledger: startup
            .ledger()
            .ok_or("GREENLIGHT_LEDGER_TABLE is not set and the config names no [ledger] table")?,
        hook_function: std::env::var("GREENLIGHT_HOOK_FUNCTION")
            .map_err(|_| "GREENLIGHT_HOOK_FUNCTION is not set")?,
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&startup.sdk))),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(&startup.sdk))),
        config: startup.config,
        lease_margin: LEASE_MARGIN,
    };
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move { handle(deps, event.payload, &invocation).await }
    }))
    .await
}
