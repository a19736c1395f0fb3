//! The real health-hook binary behind the local Runtime API host, with CodeDeploy played by
//! the stand-in: a cold start without a usable config still answers every lifecycle event,
//! CodeDeploy's and native ECS blue/green's.

use std::time::Duration;

use greenlight_tests::codedeploy::{CodeDeployStandIn, GroupSpec};
use greenlight_tests::moto::workspace_root;
use greenlight_tests::pipeline::binary;
use greenlight_tests::runtime::FunctionHost;
use greenlight_tests::world::Clients;
use serde_json::json;

const SECRET: &str = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET";

#[tokio::test]
async fn a_hook_whose_config_is_broken_answers_failed_naming_the_key_and_no_value() {
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    stand_in.add_group(
        GroupSpec {
            application: "web1".into(),
            group: "web1-bluegreen".into(),
            cluster: "apps".into(),
            service: "web1".into(),
            target_groups: ("web1-blue".into(), "web1-green".into()),
            prod_listener: "arn:prod".into(),
            test_listener: "arn:test".into(),
            wait_before_reroute: None,
        },
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:1",
    );
    let clients = Clients::new(&stand_in.endpoint, &stand_in.endpoint).await;
    let deployment_id = clients
        .codedeploy
        .create_deployment()
        .application_name("web1")
        .deployment_group_name("web1-bluegreen")
        .send()
        .await
        .unwrap()
        .deployment_id
        .unwrap();
    let execution_id = stand_in.open_hook(&deployment_id, "AfterAllowTestTraffic");

    // One misspelt key, holding a webhook URL.
    let logs = workspace_root().join("target/greenlight-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = logs.join("broken-config.toml");
    std::fs::write(
        &config,
        format!("[slack]\nwebhook_url = '{SECRET}'\n[apps.web1]\nrepository = 'web1'\n"),
    )
    .unwrap();
    let log = logs.join("hook-broken-config.log");
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", stand_in.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("GREENLIGHT_CONFIG", config.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let hook = FunctionHost::start(
        "CodeDeployHook_greenlight",
        &binary("greenlight-health-hook"),
        &env,
        Duration::from_secs(10),
        &log,
    )
    .await;

    let answer = hook
        .invoke(
            json!({"DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution_id}),
        )
        .await
        .response();

    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(
        answer["reason"],
        "the health hook cannot start: config line 2: unknown field `webhook_url`, expected one of `webhook`, `token`, `mention_on_failure`, `channel`, `announce_outside`",
        "{answer}"
    );
    let reports = stand_in.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].execution_id.as_str(), reports[0].status.as_str()),
        (execution_id.as_str(), "Failed")
    );
    // A native ECS invocation gets its answer too: FAILED with the reason (ECS rolls back).
    let native: serde_json::Value = serde_json::from_str(include_str!(
        "../../events/ecs-lifecycle-hook-post-test-traffic-shift.json"
    ))
    .unwrap();
    let answer = hook.invoke(native).await.response();
    assert_eq!(answer["hookStatus"], "FAILED", "{answer}");
    assert!(
        answer["hookDetails"]["greenlight"]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown field `webhook_url`"),
        "{answer}"
    );
    assert_eq!(stand_in.reports().len(), 1, "no CodeDeploy report for ECS");
    drop(hook);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("SECRET"), "{logged}");
    assert!(logged.contains("unknown field `webhook_url`"), "{logged}");
}
