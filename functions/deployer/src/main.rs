use std::sync::Arc;
use std::time::Duration;

use greenlight_deployer::{handle, Deps};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, sdk_config};
use greenlight_shared::config::{Config, ConfigSource};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::DynamoLedger;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    greenlight_shared::telemetry::init();
    let sdk = sdk_config().await;
    let config = Config::load(&ConfigSource::from_env()?, &aws_sdk_ssm::Client::new(&sdk)).await?;
    let table = std::env::var("GREENLIGHT_LEDGER_TABLE")
        .ok()
        .or(config.ledger_table.clone())
        .ok_or("GREENLIGHT_LEDGER_TABLE is not set and the config names no [ledger] table")?;
    let deps = Deps {
        hook_function: std::env::var("GREENLIGHT_HOOK_FUNCTION")
            .map_err(|_| "GREENLIGHT_HOOK_FUNCTION is not set")?,
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&sdk))),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(&sdk))),
        ledger: Arc::new(DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
            Duration::from_secs(120),
        )),
        config,
    };
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move { handle(deps, event.payload, &invocation).await }
    }))
    .await
}
