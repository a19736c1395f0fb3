use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployEvent;
use greenlight_notifier::{handle, Deps};
use greenlight_shared::aws::{codedeploy::CodeDeploy, sdk_config};
use greenlight_shared::config::{Config, ConfigSource};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{DynamoLedger, Ledger};
use greenlight_shared::secrets::{SecretReader, SecretRef};
use greenlight_shared::slack::SlackPoster;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    greenlight_shared::telemetry::init();
    let sdk = sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let config = Config::load(&ConfigSource::from_env()?, &ssm).await?;
    let table = std::env::var("GREENLIGHT_LEDGER_TABLE")
        .ok()
        .or(config.ledger_table.clone());
    let default_webhook = std::env::var("GREENLIGHT_SLACK_WEBHOOK")
        .ok()
        .map(|v| SecretRef::parse(&v))
        .transpose()
        .map_err(|problem| format!("GREENLIGHT_SLACK_WEBHOOK {problem}"))?;
    let deps = Deps {
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&sdk))),
        ledger: table.map(|t| {
            Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                t,
                Duration::from_secs(120),
            )) as Arc<dyn Ledger>
        }),
        secrets: Arc::new(SecretReader {
            secrets_manager: aws_sdk_secretsmanager::Client::new(&sdk),
            ssm,
        }),
        slack: SlackPoster::new(reqwest::Client::new()),
        default_webhook,
        region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        webhooks: Default::default(),
        config,
    };
    run(service_fn(|event: LambdaEvent<CodeDeployEvent>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move { handle(deps, event.payload, &invocation).await }
    }))
    .await
}
