//! The health hook's promise under faults, proven on the real binary behind the local Runtime
//! API host with a short deadline: for every remote call it makes (CodeDeploy, ECS, ELB, the
//! ledger, the probe, SSM at cold start and at each config refresh), the call fails once, fails for every attempt, or
//! hangs past the deadline, and CodeDeploy still gets exactly one answer for the lifecycle
//! event, with the right verdict, before the invocation's deadline. An invocation whose report
//! could not be delivered fails (Lambda retries it); the retry must answer.

use std::time::{Duration, Instant};

use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::faults::{injection_points, record_calls, Fault, FaultProxy, Faults};
use greenlight_tests::moto::{workspace_root, MotoServer};
use greenlight_tests::pipeline::binary;
use greenlight_tests::receivers::{GreenApp, Health};
use greenlight_tests::runtime::{FunctionHost, Invoked};
use greenlight_tests::world::{
    create_green_task_set, create_release_deployment, record_release, seed_app, Clients, SeededApp,
};
use serde_json::{json, Value};

/// The function's timeout: each case's deadline (room for a debug build on a busy machine to
/// spend 1 s on a hung ledger read and still run every check).
const TIMEOUT: Duration = Duration::from_secs(6);
const DIGEST: &str = "sha256:5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de5e1f0c0de";
const TABLE: &str = "hook-ledger";

struct World {
    _moto: MotoServer,
    stand_in: CodeDeployStandIn,
    clients: Clients,
    app: SeededApp,
    faults: Faults,
    env: Vec<(String, String)>,
    green: GreenApp,
}

async fn world() -> World {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    let app = seed_app(&clients, "web1", 80).await;
    stand_in.add_group(app.group.clone(), &app.task_definition);
    clients.create_table(TABLE).await;
    record_release(&clients, TABLE, "web1", "v1.4.2", DIGEST).await;
    let green = GreenApp::start().await;
    let config = format!(
        "[apps.web1]\nrepository='web1'\napplication='web1'\ndeployment_group='web1-bluegreen'\n\
         [apps.web1.health]\nurl='{}'\nsuccesses=2\nfailures=2\ninterval_ms=50\ntimeout_ms=300\n",
        green.url
    );
    clients
        .ssm
        .put_parameter()
        .name("/greenlight/config")
        .value(config)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let faults = Faults::default();
    let via_moto = FaultProxy::moto(&moto.endpoint, &faults).await;
    let via_codedeploy = FaultProxy::start(&stand_in.endpoint, &faults).await;
    let env = [
        ("AWS_ENDPOINT_URL", via_moto.endpoint.as_str()),
        (
            "AWS_ENDPOINT_URL_CODEDEPLOY",
            via_codedeploy.endpoint.as_str(),
        ),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("GREENLIGHT_CONFIG", "ssm:/greenlight/config"),
        ("GREENLIGHT_LEDGER_TABLE", TABLE),
        ("GREENLIGHT_HOOK_SAFETY_MARGIN_MS", "1500"),
        // The config is read again before every invocation, so that the refresh is a call of
        // every case (and of the matrix) rather than of whichever case passes the minute.
        ("GREENLIGHT_CONFIG_MAX_AGE_S", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    World {
        _moto: moto,
        stand_in,
        clients,
        app,
        faults,
        env,
        green,
    }
}

impl World {
    async fn hook(&self, name: &str) -> FunctionHost {
        let logs = workspace_root().join("target/greenlight-logs");
        std::fs::create_dir_all(&logs).unwrap();
        FunctionHost::start(
            "CodeDeployHook_greenlight",
            &binary("greenlight-health-hook"),
            &self.env,
            TIMEOUT,
            &logs.join(format!("hook-faults-{name}.log")),
        )
        .await
    }

    /// A new deployment of the release with its green task set, and its hook execution open.
    async fn new_hook_execution(&self) -> (String, String) {
        for d in self.stand_in.deployments() {
            if d.status == "InProgress" || d.status == "Created" {
                self.stand_in.complete(&d.id, "Succeeded");
            }
        }
        let deployment_id = create_release_deployment(
            &self.clients.codedeploy,
            "web1",
            "v1.4.2",
            DIGEST,
            Some(&self.app.task_definition),
        )
        .await;
        let green = create_green_task_set(
            &self.clients,
            &self.app,
            &self.app.task_definition,
            "web1",
            3000,
        )
        .await
        .unwrap();
        self.stand_in.set_task_sets(&deployment_id, None, &green);
        let execution = self
            .stand_in
            .open_hook(&deployment_id, "AfterAllowTestTraffic");
        (deployment_id, execution)
    }

    /// The verdicts CodeDeploy accepted for this execution.
    fn answers(&self, execution: &str) -> Vec<String> {
        self.stand_in
            .reports()
            .into_iter()
            .filter(|r| r.execution_id == execution)
            .map(|r| r.status)
            .collect()
    }
}

/// Invokes once and checks the answer came before the deadline; `None` when it failed.
async fn invoke(hook: &FunctionHost, deployment: &str, execution: &str) -> Option<Value> {
    let started = Instant::now();
    let answer = hook
        .invoke(json!({"DeploymentId": deployment, "LifecycleEventHookExecutionId": execution}))
        .await;
    assert!(
        started.elapsed() < TIMEOUT,
        "answered after the deadline ({:?}): {answer:?}",
        started.elapsed()
    );
    match answer {
        Invoked::Response(v) => Some(v),
        Invoked::Error(e) => {
            assert_ne!(e["errorType"], "Timeout", "{e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_hook_call_still_gets_codedeploy_one_answer_in_time() {
    let w = world().await;
    let hook = w.hook("warm").await;

    // The fault-free run: the calls to break, in order.
    let (deployment, execution) = w.new_hook_execution().await;
    w.faults.reset();
    let answer = invoke(&hook, &deployment, &execution).await.unwrap();
    assert_eq!(answer["status"], "Succeeded", "{answer}");
    let calls = w.faults.calls();
    for op in [
        "GetItem",
        "GetDeployment",
        "GetDeploymentGroup",
        "ListDeploymentTargets",
        "BatchGetDeploymentTargets",
        "DescribeTargetGroups",
        "DescribeTaskSets",
        "DescribeTargetHealth",
        "UpdateItem",
        "PutLifecycleEventHookExecutionStatus",
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
            let (deployment, execution) = w.new_hook_execution().await;
            w.faults.reset();
            w.faults.arm(op, *nth, fault);
            let first = invoke(&hook, &deployment, &execution).await;
            seen_calls.extend(w.faults.calls());
            w.faults.reset();
            if first.is_none() {
                // The report could not be delivered: Lambda retries the invocation.
                invoke(&hook, &deployment, &execution).await;
            }
            let answers = w.answers(&execution);
            // A check that cannot be done fails the release; the ledger and the config refresh
            // (which keeps the config in use) are best effort; the report itself is retried
            // until it lands.
            let check = !matches!(
                op.as_str(),
                "GetItem" | "UpdateItem" | "PutLifecycleEventHookExecutionStatus" | "GetParameter"
            );
            let expected = if check && matches!(fault, Fault::Down | Fault::Hung) {
                "Failed"
            } else {
                "Succeeded"
            };
            if answers != [expected] {
                failures.push(format!(
                    "{fault:?} at {op} #{nth}: CodeDeploy got {answers:?}, expected [{expected}] (first answer {first:?})"
                ));
            }
        }
    }

    // The probe: the green app answers 500, or too slowly, for the whole window.
    for (mode, name) in [
        (Health::Failing, "failing"),
        (Health::Slow(Duration::from_secs(5)), "hung"),
    ] {
        cases += 1;
        w.green.set(mode);
        let (deployment, execution) = w.new_hook_execution().await;
        w.faults.reset();
        invoke(&hook, &deployment, &execution).await;
        if w.answers(&execution) != ["Failed"] {
            failures.push(format!(
                "probe {name}: CodeDeploy got {:?}",
                w.answers(&execution)
            ));
        }
    }
    w.green.set(Health::Healthy);
    drop(hook);

    // SSM down at cold start: the new process still answers, Failed, saying why.
    cases += 1;
    w.faults.reset();
    w.faults.arm("GetParameter", 1, Fault::Down);
    let cold = w.hook("ssm-down").await;
    let (deployment, execution) = w.new_hook_execution().await;
    let answer = invoke(&cold, &deployment, &execution).await.unwrap();
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the health hook cannot start: cannot read config parameter"),
        "{answer}"
    );
    if w.answers(&execution) != ["Failed"] {
        failures.push(format!(
            "SSM down: CodeDeploy got {:?}",
            w.answers(&execution)
        ));
    }
    seen_calls.extend(w.faults.calls());
    drop(cold);

    // Probing through the group's test listener (no `health.url`): the listener is read from
    // ELB; moto's load balancer name resolves nowhere here, so the probe fails, and says so.
    cases += 1;
    w.faults.reset();
    w.clients
        .ssm
        .put_parameter()
        .name("/greenlight/config")
        .overwrite(true)
        .value(
            "[apps.web1]\nrepository='web1'\napplication='web1'\ndeployment_group='web1-bluegreen'\n\
             [apps.web1.health]\npath='/api/health'\nsuccesses=1\nfailures=1\ninterval_ms=50\ntimeout_ms=300\n",
        )
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let through_listener = w.hook("listener").await;
    let (deployment, execution) = w.new_hook_execution().await;
    let answer = invoke(&through_listener, &deployment, &execution)
        .await
        .unwrap();
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http_probe failed"),
        "{answer}"
    );
    seen_calls.extend(w.faults.calls());
    for op in ["DescribeListeners", "DescribeLoadBalancers"] {
        assert!(seen_calls.iter().any(|c| c == op), "no {op}");
    }
    record_calls("health-hook", &seen_calls);

    println!(
        "hook fault matrix: {} calls x 4 faults + 2 probe faults + SSM at cold start = {cases} cases, {} violated",
        points.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
