//! Onboarding without a redeploy: a warm function picks up a changed config once its copy is
//! older than `GREENLIGHT_CONFIG_MAX_AGE_S`, keeps the one in use when the new document is
//! broken or cannot be read, and reads nothing in between. The real deployer binary (config in
//! a file, AWS answered by the stub) and `ConfigRefresh` against moto's SSM.

use std::path::Path;
use std::time::Duration;

use greenlight_shared::config::ConfigSource;
use greenlight_shared::startup::ConfigRefresh;
use greenlight_tests::aws_stub::AwsStub;
use greenlight_tests::moto::{workspace_root, MotoServer};
use greenlight_tests::pipeline::binary;
use greenlight_tests::runtime::FunctionHost;
use greenlight_tests::world::Clients;
use serde_json::Value;

const SECRET: &str = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET";

fn app(name: &str) -> String {
    format!("[apps.{name}]\nrepository = '{name}'\napplication = '{name}'\ndeployment_group = '{name}-bluegreen'\n")
}

fn push() -> Value {
    serde_json::from_str(include_str!("../../events/ecr-push-version.json")).unwrap()
}

async fn deployer(stub: &AwsStub, config: &Path, max_age_s: &str, log: &str) -> FunctionHost {
    let mut env = stub.function_env(config);
    env.push(("GREENLIGHT_CONFIG_MAX_AGE_S".into(), max_age_s.into()));
    let logs = workspace_root().join("target/greenlight-logs");
    FunctionHost::start(
        "greenlight-deployer",
        &binary("greenlight-deployer"),
        &env,
        Duration::from_secs(10),
        &logs.join(log),
    )
    .await
}

#[tokio::test]
async fn a_warm_deployer_deploys_an_app_added_to_the_config_and_keeps_it_through_a_broken_edit() {
    let stub = AwsStub::start().await;
    let logs = workspace_root().join("target/greenlight-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = logs.join("refresh-config.toml");
    std::fs::write(&config, app("web9")).unwrap();
    let host = deployer(&stub, &config, "0", "deployer-config-refresh.log").await;

    let before = host.invoke(push()).await.response();
    assert_eq!(before["outcome"], "skipped", "{before}");
    assert!(before["reason"].as_str().unwrap().contains("not managed"));
    assert!(stub.take_calls().is_empty());

    // web1 is onboarded: the same warm process now deploys its push.
    std::fs::write(&config, format!("{}{}", app("web9"), app("web1"))).unwrap();
    let after = host.invoke(push()).await.response();
    assert_eq!(after["outcome"], "deployed", "{after}");
    assert!(stub
        .take_calls()
        .contains_key("CodeDeploy.CreateDeployment"));

    // A broken edit (a misspelt key holding a secret) keeps the config in use.
    std::fs::write(
        &config,
        format!("{}[slack]\nwebhook_url = '{SECRET}'\n", app("web1")),
    )
    .unwrap();
    let kept = host.invoke(push()).await.response();
    assert_ne!(kept["outcome"], "skipped", "{kept}");
    assert_eq!(host.init_error().await, None);
    let output = std::fs::read_to_string(logs.join("deployer-config-refresh.log")).unwrap();
    assert!(output.contains("config not refreshed: the new document is invalid"));
    assert!(output.contains("webhook_url"), "the warning names the key");
    assert!(
        !output.contains("SECRET"),
        "no value of the document is logged"
    );
}

#[tokio::test]
async fn within_its_maximum_age_a_warm_deployer_keeps_the_config_it_has() {
    let stub = AwsStub::start().await;
    let logs = workspace_root().join("target/greenlight-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let config = logs.join("refresh-config-aged.toml");
    std::fs::write(&config, app("web9")).unwrap();
    let host = deployer(&stub, &config, "3600", "deployer-config-aged.log").await;
    assert_eq!(host.invoke(push()).await.response()["outcome"], "skipped");
    std::fs::write(&config, app("web1")).unwrap();
    // Not read again before an hour has passed: still the cold start's document.
    assert_eq!(host.invoke(push()).await.response()["outcome"], "skipped");
}

#[tokio::test]
async fn the_parameter_is_read_again_when_due_and_a_failed_read_keeps_the_config_in_use() {
    let moto = MotoServer::start().await;
    let clients = Clients::new(&moto.endpoint, &moto.endpoint).await;
    let put = |text: String| {
        clients
            .ssm
            .put_parameter()
            .name("/greenlight/config")
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .value(text)
            .send()
    };
    put(app("web1")).await.unwrap();
    let source = ConfigSource::SsmParameter("/greenlight/config".into());
    let in_use = source.read(&clients.ssm).await.unwrap();

    let due = ConfigRefresh::new(
        source.clone(),
        clients.ssm.clone(),
        Duration::ZERO,
        in_use.clone(),
    );
    assert!(due.changed().await.is_none(), "unchanged: nothing new");
    put(format!("{}{}", app("web1"), app("web2")))
        .await
        .unwrap();
    let changed = due.changed().await.expect("the changed document");
    assert_eq!(changed.apps.len(), 2);
    assert!(due.changed().await.is_none(), "taken once");

    clients
        .ssm
        .delete_parameter()
        .name("/greenlight/config")
        .send()
        .await
        .unwrap();
    assert!(
        due.changed().await.is_none(),
        "a failed read keeps the config in use"
    );

    let not_due = ConfigRefresh::new(
        source,
        clients.ssm.clone(),
        Duration::from_secs(3600),
        in_use,
    );
    put(app("web3")).await.unwrap();
    assert!(
        not_due.changed().await.is_none(),
        "not read before its maximum age"
    );
}
