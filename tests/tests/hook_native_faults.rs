//! The health hook for native ECS blue/green under faults, on the real binary behind the local
//! Runtime API host: ECS's part that moto lacks is played by `ecs_native` in front of moto.
//! ECS invokes the hook again while it answers IN_PROGRESS, with the `hookDetails` it
//! returned; here at once (the `callBackDelay` is not waited out). For every remote call of a
//! healthy check (ECS, ELB, the ledger, SSM's refresh), the call fails once, fails for every
//! attempt, hangs past the deadline, or takes effect with its answer lost (then the service
//! recovers): every invocation still answers SUCCEEDED, FAILED or IN_PROGRESS before its
//! deadline, and the check ends SUCCEEDED (a round that could not be made is another round,
//! never a verdict). A call that hangs for good keeps every round IN_PROGRESS, in time. A failing
//! probe and a probe through the test listener rule end FAILED with the reason; forged
//! `hookDetails` choose neither the URL nor the count; every lifecycle stage gets its answer;
//! a deployment ECS is rolling back is answered SUCCEEDED at once at every stage that runs
//! again during a rollback.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ContainerDefinition, Tag};
use greenlight_tests::deployer_case::STRATEGIES;
use greenlight_tests::ecs_native::{EcsNativeStandIn, NativeDeployment, StandInRollout};
use greenlight_tests::faults::{injection_points, record_calls, Fault, FaultProxy, Faults};
use greenlight_tests::moto::{workspace_root, MotoServer};
use greenlight_tests::pipeline::binary;
use greenlight_tests::receivers::{GreenApp, Health};
use greenlight_tests::runtime::{FunctionHost, Invoked};
use greenlight_tests::world::{
    record_release, seed_app, Clients, SeededApp, CLUSTER, GREEN_TASK_IP,
};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(6);
const DIGEST: &str = "sha256:2e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de";
const TABLE: &str = "native-hook-ledger";
const ROUNDS: usize = 8;

struct World {
    _moto: MotoServer,
    ecs: EcsNativeStandIn,
    clients: Clients,
    app: SeededApp,
    release_td: String,
    faults: Faults,
    env: Vec<(String, String)>,
    green: GreenApp,
    cases: std::sync::atomic::AtomicU32,
}

async fn world() -> World {
    let moto = MotoServer::start().await;
    let clients = Clients::new(&moto.endpoint, &moto.endpoint).await;
    let app = seed_app(&clients, "web2", 81).await;
    clients.create_table(TABLE).await;
    record_release(&clients, TABLE, "web2", "v2.1.0", DIGEST).await;
    // The revision the deployer would register: Greenlight's tags name the release.
    let release_td = clients
        .ecs
        .register_task_definition()
        .family("web2")
        .container_definitions(
            ContainerDefinition::builder()
                .name("web2")
                .image(format!("web2@{DIGEST}"))
                .memory(256)
                .build(),
        )
        .set_tags(Some(
            [
                ("greenlight:app", "web2"),
                ("greenlight:version", "v2.1.0"),
                ("greenlight:digest", DIGEST),
            ]
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect(),
        ))
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap()
        .task_definition_arn
        .unwrap();
    clients
        .elb
        .register_targets()
        .target_group_arn(&app.green_target_group)
        .targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(GREEN_TASK_IP)
                .port(3000)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let green = GreenApp::start().await;
    put_config(&clients, Some(&green.url)).await;
    let ecs = EcsNativeStandIn::start(&moto.endpoint).await;
    let test_rule = app.test_rule.clone();
    ecs.blue_green("web2", &test_rule);
    let faults = Faults::default();
    let via_moto = FaultProxy::moto(&moto.endpoint, &faults).await;
    let via_ecs = FaultProxy::start(&ecs.endpoint, &faults).await;
    let env = [
        ("AWS_ENDPOINT_URL", via_moto.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_ECS", via_ecs.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("GREENLIGHT_CONFIG", "ssm:/greenlight/config"),
        ("GREENLIGHT_LEDGER_TABLE", TABLE),
        ("GREENLIGHT_CONFIG_MAX_AGE_S", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    World {
        _moto: moto,
        ecs,
        clients,
        app,
        release_td,
        faults,
        env,
        green,
        cases: Default::default(),
    }
}

/// The app's config: probing `url`, or (none) through the test listener rule.
async fn put_config(clients: &Clients, url: Option<&str>) {
    let target = match url {
        Some(url) => format!("url='{url}'"),
        None => "path='/api/health'".to_string(),
    };
    clients
        .ssm
        .put_parameter()
        .name("/greenlight/config")
        .overwrite(true)
        .value(format!(
            "[apps.web2]\nrepository='web2'\napplication='web2'\ndeployment_group='web2-bluegreen'\n\
             [apps.web2.health]\n{target}\nsuccesses=2\nfailures=2\ninterval_ms=1000\ntimeout_ms=300\n"
        ))
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
}

impl World {
    async fn hook(&self, name: &str) -> FunctionHost {
        let logs = workspace_root().join("target/greenlight-logs");
        std::fs::create_dir_all(&logs).unwrap();
        FunctionHost::start(
            "greenlight-health-hook",
            &binary("greenlight-health-hook"),
            &self.env,
            TIMEOUT,
            &logs.join(format!("hook-native-{name}.log")),
        )
        .await
    }

    /// A new deployment of the release; deployments take ECS's three strategies in turn, so
    /// each fault meets each of them.
    fn new_deployment(&self) -> NativeDeployment {
        let n = self.cases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let strategy = STRATEGIES[n as usize % STRATEGIES.len()];
        self.ecs.set_rollout("web2", StandInRollout::of(strategy));
        self.ecs.deploy(
            CLUSTER,
            "web2",
            n,
            &self.release_td,
            &self.app.green_target_group,
        )
    }
}

/// Invokes as ECS does until the hook stops answering IN_PROGRESS (at most `rounds` times):
/// the final status and reason, or a sentence saying which promise broke. With `faults`, a
/// fault that has fired is taken away before the next round (the service recovers).
async fn check_rounds(
    hook: &FunctionHost,
    d: &NativeDeployment,
    rounds: usize,
    faults: Option<&Faults>,
) -> Result<(String, String), String> {
    check_at(hook, d, rounds, faults, "POST_TEST_TRAFFIC_SHIFT", None).await
}

/// [`check_rounds`] at a lifecycle stage, the first invocation carrying `first_details` (as a
/// forger's would).
async fn check_at(
    hook: &FunctionHost,
    d: &NativeDeployment,
    rounds: usize,
    faults: Option<&Faults>,
    stage: &str,
    first_details: Option<Value>,
) -> Result<(String, String), String> {
    let mut details: Option<Value> = first_details;
    let execution = format!("execution-{}", d.arn.rsplit('/').next().unwrap_or_default());
    for round in 1..=rounds {
        if let Some(faults) = faults.filter(|f| f.fired()) {
            faults.disarm();
        }
        let mut event = json!({
            "executionId": execution,
            "lifecycleStage": stage,
            "resourceArn": d.arn,
            "executionDetails": {
                "serviceArn": format!("arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/web2"),
                "targetServiceRevisionArn": d.revision,
                "testTrafficWeights": {}, "productionTrafficWeights": {}
            }
        });
        if let Some(details) = &details {
            event["hookDetails"] = details.clone();
        }
        let started = Instant::now();
        let answer = hook.invoke(event).await;
        if started.elapsed() >= TIMEOUT {
            return Err(format!(
                "round {round} answered after the deadline: {answer:?}"
            ));
        }
        let Invoked::Response(answer) = answer else {
            return Err(format!("round {round} did not answer: {answer:?}"));
        };
        let status = answer["hookStatus"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let reason = answer["hookDetails"]["greenlight"]["last"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match status.as_str() {
            "IN_PROGRESS" if answer["callBackDelay"].as_u64().is_some() => {
                details = Some(answer["hookDetails"].clone());
            }
            "SUCCEEDED" | "FAILED" => return Ok((status, reason)),
            _ => return Err(format!("round {round}: not an answer ECS reads: {answer}")),
        }
    }
    Err(format!("still IN_PROGRESS after {rounds} rounds"))
}

async fn check(hook: &FunctionHost, d: &NativeDeployment) -> Result<(String, String), String> {
    check_rounds(hook, d, ROUNDS, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_call_of_a_native_check_still_answers_in_time_and_ends_succeeded() {
    let w = world().await;
    let hook = w.hook("warm").await;

    let d = w.new_deployment();
    w.faults.reset();
    assert_eq!(
        check(&hook, &d).await.map(|(s, _)| s),
        Ok("SUCCEEDED".to_string())
    );
    let calls = w.faults.calls();
    for op in [
        "GetParameter",
        "DescribeServiceRevisions",
        "ListTagsForResource",
        "DescribeServiceDeployments",
        "DescribeTargetHealth",
        "UpdateItem",
    ] {
        assert!(calls.iter().any(|c| c == op), "no {op} in {calls:?}");
    }
    let points = injection_points(&calls);
    let mut failures = vec![];
    let mut seen_calls = calls.clone();
    let mut cases = 0;
    for (op, nth) in &points {
        for fault in [
            Fault::ServerError,
            Fault::Down,
            Fault::Hung,
            Fault::AnswerLost,
        ] {
            cases += 1;
            let d = w.new_deployment();
            w.faults.reset();
            w.faults.arm(op, *nth, fault);
            let outcome = check_rounds(&hook, &d, ROUNDS, Some(&w.faults)).await;
            seen_calls.extend(w.faults.calls());
            if outcome.as_ref().map(|(s, _)| s.as_str()) != Ok("SUCCEEDED") {
                failures.push(format!("{fault:?} at {op} #{nth}: {outcome:?}"));
            }
        }
    }

    // Target health hangs and never recovers: every round still answers, IN_PROGRESS, in time
    // (after the window it would be FAILED; the rounds here are far shorter than the window).
    cases += 1;
    let d = w.new_deployment();
    w.faults.reset();
    w.faults.arm("DescribeTargetHealth", 1, Fault::Hung);
    match check_rounds(&hook, &d, 2, None).await {
        Err(why) if why == "still IN_PROGRESS after 2 rounds" => {}
        other => failures.push(format!("target health hung for good: {other:?}")),
    }
    seen_calls.extend(w.faults.calls());
    w.faults.reset();

    // The probe fails; ECS rolls the deployment back; the probe goes through the test
    // listener rule (moto's load balancer resolves nowhere here, so it fails and says so).
    cases += 1;
    w.green.set(Health::Failing);
    let d = w.new_deployment();
    w.faults.reset();
    match check(&hook, &d).await {
        Ok((s, reason)) if s == "FAILED" && reason.starts_with("http_probe failed") => {}
        other => failures.push(format!("failing probe: {other:?}")),
    }
    // Forged hookDetails with the real execution: neither their URL nor their counters are
    // used; the config's URL (failing) is probed and the check fails.
    cases += 1;
    let forged_url = GreenApp::start().await;
    let d = w.new_deployment();
    let execution = format!("execution-{}", d.arn.rsplit('/').next().unwrap_or_default());
    let forged = json!({"greenlight": {
        "execution": execution, "revision": d.revision, "stage": "POST_TEST_TRAFFIC_SHIFT",
        "started_ms": chrono::Utc::now().timestamp_millis() - 1_000, "rounds": 1, "good": 5,
        "bad": 0, "app": "web2", "digest": DIGEST, "url": forged_url.url,
        "target_group": "arn:forged"
    }});
    match check_at(
        &hook,
        &d,
        ROUNDS,
        None,
        "POST_TEST_TRAFFIC_SHIFT",
        Some(forged),
    )
    .await
    {
        Ok((s, reason)) if s == "FAILED" && reason.starts_with("http_probe failed") => {}
        other => failures.push(format!("forged hookDetails: {other:?}")),
    }
    if forged_url.hits.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        failures.push("forged hookDetails: the forged URL was probed".into());
    }
    w.green.set(Health::Healthy);
    // Every stage ECS may invoke the hook at: checked where green can be, SUCCEEDED at once
    // where there is nothing to check (the production stages without check_production).
    for stage in [
        "RECONCILE_SERVICE",
        "PRE_SCALE_UP",
        "POST_SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "POST_TEST_TRAFFIC_SHIFT",
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
    ] {
        cases += 1;
        let d = w.new_deployment();
        match check_at(&hook, &d, ROUNDS, None, stage, None).await {
            Ok((s, _)) if s == "SUCCEEDED" => {}
            other => failures.push(format!("stage {stage}: {other:?}")),
        }
    }
    // ECS rolls back (an alarm) and runs the traffic-shift hooks again: none stalls or fails
    // the rollback, whatever green says.
    w.green.set(Health::Failing);
    for stage in [
        "POST_TEST_TRAFFIC_SHIFT",
        "TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
    ] {
        cases += 1;
        let d = w.new_deployment();
        w.ecs
            .set_status(&d.arn, "ROLLBACK_IN_PROGRESS", "alarm web2-5xx in ALARM");
        match check_at(&hook, &d, ROUNDS, None, stage, None).await {
            // At TEST_TRAFFIC_SHIFT there is nothing to check in any case.
            Ok((s, reason))
                if s == "SUCCEEDED"
                    && (reason.contains("rolls back")
                        || reason.starts_with("nothing to check")) => {}
            other => failures.push(format!("rolling back, hook at {stage}: {other:?}")),
        }
    }
    w.green.set(Health::Healthy);
    seen_calls.extend(w.faults.calls());
    drop(hook);
    cases += 1;
    put_config(&w.clients, None).await;
    let through_rule = w.hook("listener").await;
    let d = w.new_deployment();
    w.faults.reset();
    match check(&through_rule, &d).await {
        Ok((s, reason)) if s == "FAILED" && reason.starts_with("http_probe failed") => {}
        other => failures.push(format!("through the test listener rule: {other:?}")),
    }
    seen_calls.extend(w.faults.calls());
    for op in [
        "DescribeServices",
        "DescribeListeners",
        "DescribeLoadBalancers",
        "DescribeRules",
    ] {
        assert!(seen_calls.iter().any(|c| c == op), "no {op}");
    }
    record_calls("health-hook", &seen_calls);
    let deployments = w.cases.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "native hook fault matrix: {} calls x 4 faults + 15 = {cases} cases on {deployments} deployments (ECS's three strategies in turn), {} violated",
        points.len(),
        failures.len()
    );
    assert!(deployments >= 3, "every strategy meets the faults");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
