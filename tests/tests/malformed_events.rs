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
