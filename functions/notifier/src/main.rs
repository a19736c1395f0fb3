use std::sync::Arc;

use greenlight_notifier::{notify, parse_event, Deps};
use greenlight_shared::aws::codedeploy::CodeDeploy;
use greenlight_shared::aws::ecs::Ecs;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::secrets::{SecretReader, SecretRef};
use greenlight_shared::slack::{SlackApp, SlackPoster};
use greenlight_shared::startup::{report_init_error, Live, Startup};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = match Startup::load().await {
        Ok(startup) => startup,
        Err(failed) => failed.report_and_exit().await,
    };
    let sdk = &startup.sdk;
    let default_webhook = match std::env::var("GREENLIGHT_SLACK_WEBHOOK")
        .ok()
        .map(|v| SecretRef::parse(&v))
        .transpose()
    {
        Ok(reference) => reference,
        Err(problem) => {
            let message = format!("GREENLIGHT_SLACK_WEBHOOK {problem}");
            tracing::error!("cold start failed: {message}");
            report_init_error("ConfigInvalid", &message).await;
            std::process::exit(1);
        }
    };
    let http = startup.http.clone();
    let deps = Deps {
        codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(sdk))),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(sdk))),
        ledger: startup.ledger(),
        secrets: Arc::new(SecretReader {
            secrets_manager: aws_sdk_secretsmanager::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }),
        slack: SlackPoster::new(http.clone()),
        // Slack's Web API; another base only for local runs.
        slack_app: SlackApp::new(
            http,
            std::env::var("GREENLIGHT_SLACK_API_URL")
                .unwrap_or_else(|_| "https://slack.com/api".to_string()),
        ),
        default_webhook,
        region: sdk.region().map(|r| r.to_string()).unwrap_or_default(),
        webhooks: Default::default(),
        config: startup.config,
    };
    let deps = Live::new(deps, startup.refresh);
    startup.profile.ready();
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let invocation = Invocation::from_context(&event.context);
        let deps = &deps;
        async move {
            let event = parse_event(event.payload)?;
            notify(&*deps.current().await, event, &invocation).await
        }
    }))
    .await
}
