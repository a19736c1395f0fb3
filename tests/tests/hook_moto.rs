//! The real health-hook handler with the real SDK clients: ECS and ELBv2 served by moto,
//! CodeDeploy by the stand-in (which records every status reported), and a local HTTP
//! server standing in for the green task (healthy, 500, slow, connection refused).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployLifecycleEvent;
use greenlight_health_hook::probe::HttpProber;
use greenlight_health_hook::{handle, Deps, HookReport};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecs::Ecs, elb::LoadBalancing};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::Config;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::faults::FaultProxy;
use greenlight_tests::moto::{free_port, MotoServer};
use greenlight_tests::receivers::{GreenApp, Health};
use greenlight_tests::world::{
    create_green_task_set, create_release_deployment, sdk_config, seed_app, Clients,
};

struct Case {
    _moto: MotoServer,
    stand_in: CodeDeployStandIn,
    deps: Deps,
    deployment_id: String,
    execution_id: String,
}

async fn case(health_url: &str) -> Case {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    let app = seed_app(&clients, "web1", 80).await;
    stand_in.add_group(app.group.clone(), &app.task_definition);
    let deployment_id = create_release_deployment(
        &clients.codedeploy,
        "web1",
        "v1.4.2",
        "sha256:ab",
        Some(&app.task_definition),
    )
    .await;
    let green = create_green_task_set(&clients, &app, &app.task_definition, "web1", 3000)
        .await
        .unwrap();
    stand_in.set_task_sets(&deployment_id, None, &green);
    let execution_id = stand_in.open_hook(&deployment_id, "AfterAllowTestTraffic");
    let config = format!(
        "[apps.web1]\nrepository='web1'\napplication='web1'\ndeployment_group='web1-bluegreen'\n\
         [apps.web1.health]\nurl='{health_url}'\nsuccesses=2\nfailures=2\ninterval_ms=50\ntimeout_ms=300\n"
    );
    let deps = Deps {
        config: Config::parse(&config).unwrap(),
        codedeploy: Arc::new(CodeDeploy(clients.codedeploy.clone())),
        ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(
            &sdk_config(&FaultProxy::moto_ecs(&moto.endpoint).await.endpoint).await,
        ))),
        elb: Arc::new(LoadBalancing(clients.elb.clone())),
        prober: Arc::new(HttpProber::new()),
        ledger: None,
        safety_margin: Duration::from_millis(500),
    };
    Case {
        _moto: moto,
        stand_in,
        deps,
        deployment_id,
        execution_id,
    }
}

async fn run(c: &Case) -> HookReport {
    let event: CodeDeployLifecycleEvent = serde_json::from_value(serde_json::json!({
        "DeploymentId": c.deployment_id, "LifecycleEventHookExecutionId": c.execution_id
    }))
    .unwrap();
    handle(
        &c.deps,
        event,
        &Invocation::for_test("req", Duration::from_secs(8)),
    )
    .await
    .unwrap()
}

fn reported(c: &Case) -> Vec<String> {
    c.stand_in.reports().into_iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn healthy_green_task_reports_succeeded_once() {
    let green = GreenApp::start().await;
    let c = case(&green.url).await;
    let report = run(&c).await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
    assert_eq!(
        report.lifecycle_event.as_deref(),
        Some("AfterAllowTestTraffic")
    );
    assert_eq!(
        report.checks.iter().map(|c| c.check).collect::<Vec<_>>(),
        ["task_set", "target_health", "http_probe"]
    );
    assert_eq!(reported(&c), ["Succeeded"]);

    // Redelivered, without a ledger to say it was answered: it checks and reports again, and
    // CodeDeploy's LifecycleEventAlreadyCompletedException counts as done.
    let again = run(&c).await;
    assert!(again.already_reported, "{again:?}");
    assert_eq!(reported(&c), ["Succeeded"]);
}

#[tokio::test]
async fn green_task_answering_500_reports_failed_once() {
    let green = GreenApp::start().await;
    green.set(Health::Failing);
    let c = case(&green.url).await;
    let report = run(&c).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report
            .reason
            .ends_with("2 failed probes in a row (last: HTTP 500, expected 200)"),
        "{}",
        report.reason
    );
    assert_eq!(reported(&c), ["Failed"]);
}

#[tokio::test]
async fn slow_green_task_reports_failed_once() {
    let green = GreenApp::start().await;
    green.set(Health::Slow(Duration::from_secs(2)));
    let c = case(&green.url).await;
    let report = run(&c).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report.reason.ends_with("(last: no answer within 300 ms)"),
        "{}",
        report.reason
    );
    assert_eq!(reported(&c), ["Failed"]);
}

#[tokio::test]
async fn refused_connection_reports_failed_once() {
    let c = case(&format!("http://127.0.0.1:{}/api/health", free_port())).await;
    let report = run(&c).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report.reason.ends_with("(last: connection failed)"),
        "{}",
        report.reason
    );
    assert_eq!(reported(&c), ["Failed"]);
}
