//! The three real binaries behind the local Runtime API host answer what is not their event
//! (`{}`, `[]`, a string, a missing or oversized field) with a typed `MalformedEvent` and a
//! short reason: no internal error type, no echo of the input.

use std::time::Duration;

use greenlight_tests::moto::workspace_root;
use greenlight_tests::pipeline::binary;
use greenlight_tests::runtime::{FunctionHost, Invoked};
use serde_json::{json, Value};

const CONFIG: &str =
    "[apps.web1]\nrepository = 'web1'\napplication = 'web1'\ndeployment_group = 'web1-bluegreen'\n";

async fn host(bin: &str) -> FunctionHost {
    let logs = workspace_root().join("target/greenlight-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = logs.join("malformed-config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let env: Vec<(String, String)> = [
        // Nothing listens here: a malformed event must not need AWS.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("GREENLIGHT_CONFIG", config.to_str().unwrap()),
        ("GREENLIGHT_LEDGER_TABLE", "greenlight-releases"),
        ("GREENLIGHT_HOOK_FUNCTION", "CodeDeployHook_greenlight"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    FunctionHost::start(
        bin,
        &binary(bin),
        &env,
        Duration::from_secs(10),
        &logs.join(format!("malformed-{bin}.log")),
    )
    .await
}

#[tokio::test]
async fn every_function_answers_a_malformed_event_with_a_typed_short_error() {
    let huge = "x".repeat(500_000);
    let cases: [(&str, Vec<Value>); 3] = [
        (
            "greenlight-deployer",
            vec![
                json!({}),
                json!([]),
                json!("push"),
                json!({"source": "aws.ecr", "detail": "nope"}),
                json!({"source": "aws.codedeploy", "detail": {"deploymentId": huge}}),
            ],
        ),
        (
            "greenlight-health-hook",
            vec![
                json!({}),
                json!([]),
                json!("hook"),
                json!({"DeploymentId": "d-ABCDEFGHI"}),
                json!({"DeploymentId": 7, "LifecycleEventHookExecutionId": huge}),
            ],
        ),
        (
            "greenlight-notifier",
            vec![json!([]), json!("state"), json!({"detail": huge})],
        ),
    ];
    for (bin, events) in cases {
        let host = host(bin).await;
        for event in events {
            let shown = event.to_string().chars().take(60).collect::<String>();
            match host.invoke(event).await {
                Invoked::Error(e) => {
                    assert_eq!(e["errorType"], "MalformedEvent", "{bin} {shown}: {e}");
                    let message = e["errorMessage"].as_str().unwrap_or_default();
                    assert!(
                        message.len() < 400,
                        "{bin} {shown}: {} bytes",
                        message.len()
                    );
                    assert!(!message.contains("xxxxxxxx"), "{bin} echoed the input");
                }
                Invoked::Response(r) => panic!("{bin} {shown}: answered {r}"),
            }
        }
    }
}

#[tokio::test]
async fn a_broken_config_is_one_json_line_and_an_init_error_naming_the_key_never_the_value() {
    const SECRET: &str = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET";
    let logs = workspace_root().join("target/greenlight-logs");
    std::fs::create_dir_all(&logs).unwrap();
    for (bin, document, error_type, message) in [
        (
            "greenlight-deployer",
            format!("[slack]\nwebhook_url = '{SECRET}'\n"),
            "ConfigSyntax",
            "config line 2: unknown field `webhook_url`, expected one of `webhook`, `token`, `mention_on_failure`, `channel`, `announce_outside`",
        ),
        (
            "greenlight-notifier",
            format!("[slack]\nwebhook = '{SECRET}'\n[apps.web1]\nrepository = 'web1'\napplication = 'web1'\n"),
            "ConfigInvalid",
            "config key `apps.web1.slack.webhook`: must be `secretsmanager:<id>`, `ssm:<name>` or `env:<VAR>` (never the secret itself)",
        ),
    ] {
        let config = logs.join(format!("init-error-{bin}.toml"));
        std::fs::write(&config, document).unwrap();
        let log = logs.join(format!("init-error-{bin}.log"));
        let env: Vec<(String, String)> = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("GREENLIGHT_CONFIG", config.to_str().unwrap()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let host = FunctionHost::start(bin, &binary(bin), &env, Duration::from_secs(5), &log).await;
        let mut reported = None;
        for _ in 0..100 {
            reported = host.init_error().await;
            if reported.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (header, body) = reported.unwrap_or_else(|| panic!("{bin} reported no init error"));
        assert_eq!(header, error_type, "{bin}");
        assert_eq!(body, json!({"errorType": error_type, "errorMessage": message}), "{bin}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(!logged.contains("SECRET"), "{bin}: {logged}");
        let lines: Vec<Value> = logged
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("{bin} logged a line that is not JSON: {l}")))
            .collect();
        assert_eq!(lines.len(), 1, "{bin}: {logged}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["error"], message);
    }
}
