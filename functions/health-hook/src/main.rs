use std::sync::Arc;
use std::time::Duration;

use greenlight_health_hook::probe::HttpProber;
use greenlight_health_hook::{handle, Deps};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, elb::LoadBalancing, sdk_config};
use greenlight_shared::config::{Config, ConfigSource};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{DynamoLedger, Ledger};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    greenlight_shared::telemetry::init();
    let sdk = sdk_config().await;
    let config = Config::load(&ConfigSource::from_env()?, &aws_sdk_ssm::Client::new(&sdk)).await?;
    let table = std::env::var("GREENLIGHT_LEDGER_TABLE")
        .ok()
        .or(config.ledger_table.clone());
    let margin_ms = std::env::var("GREENLIGHT_HOOK_SAFETY_MARGIN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let deps = Deps {
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&sdk))),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(&sdk))),
        elb: Arc::new(LoadBalancing(aws_sdk_elasticloadbalancingv2::Client::new(
            &sdk,
        ))),
        prober: Arc::new(HttpProber::new()),
        ledger: table.map(|t| {
            Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                t,
                Duration::from_secs(120),
            )) as Arc<dyn Ledger>
        }),
        safety_margin: Duration::from_millis(margin_ms),
        config,
    };
    run(service_fn(
        |event: LambdaEvent<aws_lambda_events::codedeploy::CodeDeployLifecycleEvent>| {
            let invocation = Invocation::from_context(&event.context);
            let deps = &deps;
            async move { handle(deps, event.payload, &invocation).await }
        },
    ))
    .await
}
