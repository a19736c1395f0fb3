use std::sync::Arc;

use greenlight_approver::{handle, request_of, Deps, SlackResponder};
use greenlight_shared::approval::EngineGates;
use greenlight_shared::aws::codedeploy::CodeDeploy;
use greenlight_shared::aws::ecs::Ecs;
use greenlight_shared::secrets::{SecretReader, SecretRef};
use greenlight_shared::slack::SlackApp;
use greenlight_shared::startup::{report_init_error, Live, Startup};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let startup = match Startup::load().await {
        Ok(startup) => startup,
        Err(failed) => failed.report_and_exit().await,
    };
    let signing_secret = match std::env::var("GREENLIGHT_SLACK_SIGNING_SECRET")
        .map_err(|_| "is not set".to_string())
        .and_then(|v| SecretRef::parse(&v))
    {
        Ok(reference) => reference,
        Err(problem) => {
            let message = format!("GREENLIGHT_SLACK_SIGNING_SECRET {problem}");
            tracing::error!("cold start failed: {message}");
            report_init_error("ConfigInvalid", &message).await;
            std::process::exit(1);
        }
    };
    let sdk = &startup.sdk;
    let http = startup.http.clone();
    let deps = Deps {
        ledger: startup.ledger(),
        gates: EngineGates {
            ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(sdk))),
            codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(sdk))),
        },
        secrets: Arc::new(SecretReader {
            secrets_manager: aws_sdk_secretsmanager::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }),
        signing_secret,
        // Slack's Web API and response URLs; other bases only for local runs.
        slack_app: SlackApp::new(
            http.clone(),
            std::env::var("GREENLIGHT_SLACK_API_URL")
                .unwrap_or_else(|_| "https://slack.com/api".to_string()),
        ),
        responder: Arc::new(SlackResponder(http)),
        response_base: std::env::var("GREENLIGHT_SLACK_RESPONSE_BASE")
            .unwrap_or_else(|_| "https://hooks.slack.com/".to_string()),
        cache: Default::default(),
        config: startup.config,
    };
    let deps = Live::new(deps, startup.refresh);
    startup.profile.ready();
    run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            let request = request_of(&event.payload);
            let response = handle(&*deps.current().await, &request, chrono::Utc::now()).await;
            Ok::<Value, Error>(json!({
                "statusCode": response.status,
                "headers": {"content-type": "text/plain"},
                "body": response.body,
            }))
        }
    }))
    .await
}
