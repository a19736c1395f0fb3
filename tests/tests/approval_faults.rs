//! The approval path under faults, on both engines and through both doors: every AWS call a
//! decision makes (the ledger's reads and conditional writes, the engine's wait read, its
//! continue or rollback) fails once, fails for every attempt, loses its answer after the
//! server acted, or kills the invocation right after it; then the person clicks again (or runs
//! the command again). The engine continues or rolls back exactly once, as asked, and the
//! ledger ends with that decision, applied. The real approver handler and the deployer's
//! request path, with real SDK clients, talk through fault proxies to moto (DynamoDB), the ECS
//! stand-in (the pause hook) and the CodeDeploy stand-in (the wait before rerouting).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use greenlight_approver::signature::sign;
use greenlight_approver::{handle, Deps, HttpRequest, Responder};
use greenlight_shared::approval::{Binding, EngineGates};
use greenlight_shared::aws::codedeploy::CodeDeploy;
use greenlight_shared::aws::ecr::Ecr;
use greenlight_shared::aws::ecs::Ecs;
use greenlight_shared::events::ImagePush;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{
    ApprovalLedger, Choice, Claim, DynamoLedger, Ledger, ReleaseLedger, VerdictLedger, Wait,
};
use greenlight_shared::queue::Lease;
use greenlight_shared::secrets::{Secret, SecretError, SecretRef, SecretSource};
use greenlight_shared::slack::SlackApp;
use greenlight_shared::Config;
use greenlight_tests::codedeploy::{CodeDeployStandIn, GroupSpec};
use greenlight_tests::ecs_native::EcsNativeStandIn;
use greenlight_tests::faults::{injection_points, record_calls, Fault, FaultProxy, Faults};
use greenlight_tests::moto::MotoServer;
use greenlight_tests::world::{sdk_config_retrying, Clients, TABLE};
use serde_json::json;

const SIGNING: &str = "approval-signing-secret";
const APPROVER: &str = "U0APPROVER";
const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
cluster = "apps"
service = "web1"
[apps.web1.approval]
required = true
approvers = ["U0APPROVER"]
"#;

struct Secrets;

#[async_trait]
impl SecretSource for Secrets {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        Ok(Secret::new(match r {
            SecretRef::Env(v) if v == "SIGNING" => SIGNING,
            _ => "unused",
        }))
    }
}

#[derive(Default)]
struct Told(Mutex<Vec<String>>);

#[async_trait]
impl Responder for Told {
    async fn say(&self, _url: &str, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    Ecs,
    CodeDeploy,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Door {
    /// The Slack button, through the approver.
    Slack,
    /// `greenlight approve|reject`, through the deployer.
    Command,
}

struct World {
    _moto: MotoServer,
    moto: String,
    clients: Clients,
    ecs: EcsNativeStandIn,
    codedeploy: CodeDeployStandIn,
    faults: Faults,
    /// DynamoDB, ECS and CodeDeploy clients through the proxies.
    proxied: (
        aws_sdk_dynamodb::Client,
        aws_sdk_ecs::Client,
        aws_sdk_codedeploy::Client,
    ),
    cases: u32,
    /// The calls each door was seen making: (approver, deployer).
    seen: (Vec<String>, Vec<String>),
}

/// One release run held for approval on one engine.
struct Held {
    digest: String,
    pushed_at_ms: i64,
    deployment: String,
}

impl World {
    async fn start() -> Self {
        let moto = MotoServer::start().await;
        let codedeploy = CodeDeployStandIn::start(Duration::from_secs(5)).await;
        let clients = Clients::new(&moto.endpoint, &codedeploy.endpoint).await;
        clients.create_ledger_table().await;
        let ecs = EcsNativeStandIn::start(&moto.endpoint).await;
        let faults = Faults::default();
        let ddb_proxy = FaultProxy::start(&moto.endpoint, &faults).await.endpoint;
        let ecs_proxy = FaultProxy::start(&ecs.endpoint, &faults).await.endpoint;
        let codedeploy_proxy = FaultProxy::start(&codedeploy.endpoint, &faults)
            .await
            .endpoint;
        // The SDK's standard retries (three attempts), with short pauses between them.
        let retry = || {
            aws_config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50))
        };
        let proxied = (
            aws_sdk_dynamodb::Client::new(&sdk_config_retrying(&ddb_proxy, retry()).await),
            aws_sdk_ecs::Client::new(&sdk_config_retrying(&ecs_proxy, retry()).await),
            aws_sdk_codedeploy::Client::new(&sdk_config_retrying(&codedeploy_proxy, retry()).await),
        );
        Self {
            proxied,
            moto: moto.endpoint.clone(),
            _moto: moto,
            clients,
            ecs,
            codedeploy,
            faults,
            cases: 0,
            seen: (vec![], vec![]),
        }
    }

    /// A new release run of web1, its green checked, held by `engine`.
    async fn held(&mut self, engine: Engine) -> Held {
        self.cases += 1;
        let n = self.cases;
        let digest = format!("sha256:{n:064x}");
        let ledger = DynamoLedger::new(self.clients.dynamodb.clone(), TABLE);
        let now = Utc::now();
        let push = ImagePush {
            app: "web1".into(),
            repository: "web1".into(),
            version: format!("v1.{n}.0"),
            digest: digest.clone(),
            image: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@{digest}"),
            pushed_at: now,
            provenance: Default::default(),
            request: None,
        };
        let lease = Lease {
            owner: "req-push".into(),
            until_ms: now.timestamp_millis() + 60_000,
            now_ms: now.timestamp_millis(),
        };
        let claim = ledger.claim(&push, &lease).await.unwrap();
        assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
        let deployment = match engine {
            Engine::Ecs => {
                let d = self.ecs.deploy(
                    "apps",
                    "web1",
                    n,
                    "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:9",
                    "arn:tg-green",
                );
                self.ecs.hold_at_pause(
                    &d.arn,
                    &format!("pause-{n}"),
                    now + chrono::Duration::minutes(60),
                );
                d.arn
            }
            Engine::CodeDeploy => {
                let group = format!("web1-bg-{n}");
                self.codedeploy.add_group(
                    GroupSpec {
                        application: "web1".into(),
                        group: group.clone(),
                        cluster: "apps".into(),
                        service: "web1".into(),
                        target_groups: ("blue".into(), "green".into()),
                        prod_listener: "prod".into(),
                        test_listener: "test".into(),
                        wait_before_reroute: Some(Duration::from_secs(3600)),
                    },
                    "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8",
                );
                self.codedeploy.ready("web1", &group)
            }
        };
        let wait = Wait {
            deployment_id: deployment.clone(),
            expires_at: now + chrono::Duration::minutes(60),
        };
        ledger
            .record_approval_wait("web1", &digest, &wait)
            .await
            .unwrap();
        // The command decides for the queue's active release.
        let read = greenlight_shared::ledger::QueueLedger::queue(&ledger, "web1")
            .await
            .unwrap();
        let plan = greenlight_shared::queue::Plan {
            queue: greenlight_shared::queue::Queue {
                active: Some(greenlight_shared::queue::Active {
                    release: Some(greenlight_shared::queue::Ticket {
                        pushed_at_ms: now.timestamp_millis(),
                        digest: digest.clone(),
                        version: push.version.clone(),
                    }),
                    deployment_id: Some(deployment.clone()),
                    owner: "req-push".into(),
                    lease_until_ms: 0,
                    since_ms: 0,
                }),
                ..read.clone()
            },
            changes: vec![],
            next: greenlight_shared::queue::Next::Idle,
        };
        assert!(
            greenlight_shared::ledger::QueueLedger::commit(&ledger, "web1", &read, &plan)
                .await
                .unwrap()
        );
        Held {
            digest,
            pushed_at_ms: now.timestamp_millis(),
            deployment,
        }
    }

    /// The functions' clients, through the fault proxies (made once: a new invocation's
    /// clients are the same clients).
    fn clients(
        &self,
    ) -> (
        DynamoLedger,
        EngineGates,
        aws_sdk_codedeploy::Client,
        aws_sdk_ecs::Client,
    ) {
        let (ddb, ecs, codedeploy) = &self.proxied;
        let gates = EngineGates {
            ecs: Arc::new(Ecs(ecs.clone())),
            codedeploy: Arc::new(CodeDeploy(codedeploy.clone())),
        };
        (
            DynamoLedger::new(ddb.clone(), TABLE),
            gates,
            codedeploy.clone(),
            ecs.clone(),
        )
    }

    /// One decision through `door`; `false` when the invocation was killed.
    async fn decide(&self, door: Door, held: &Held, choice: Choice, attempt: u32) -> bool {
        let (ledger, gates, codedeploy, ecs) = self.clients();
        let decided = async {
            match door {
                Door::Slack => {
                    let deps = Deps {
                        config: Config::parse(CONFIG).unwrap(),
                        ledger: Some(Arc::new(ledger) as Arc<dyn Ledger>),
                        gates,
                        secrets: Arc::new(Secrets),
                        signing_secret: SecretRef::Env("SIGNING".into()),
                        slack_app: SlackApp::new(
                            greenlight_shared::http::Http::new(),
                            "http://127.0.0.1:9/api",
                        ),
                        responder: Arc::new(Told::default()),
                        response_base: "https://hooks.slack.com/".into(),
                        cache: Default::default(),
                    };
                    let binding = Binding {
                        app: "web1".into(),
                        digest: held.digest.clone(),
                        pushed_at_ms: held.pushed_at_ms,
                        deployment_id: held.deployment.clone(),
                    };
                    let action = match choice {
                        Choice::Approve => "approve",
                        Choice::Reject => "reject",
                    };
                    let payload = json!({"type": "block_actions", "user": {"id": APPROVER},
                        "actions": [{"action_id": action, "value": binding.to_value()}],
                        "response_url": "https://hooks.slack.com/actions/T1/1/x"});
                    let body = format!(
                        "payload={}",
                        form_urlencoded::byte_serialize(payload.to_string().as_bytes())
                            .collect::<String>()
                    );
                    let ts = Utc::now().timestamp().to_string();
                    let request = HttpRequest {
                        headers: [
                            ("x-slack-request-timestamp".to_string(), ts.clone()),
                            (
                                "x-slack-signature".to_string(),
                                sign(SIGNING.as_bytes(), &ts, body.as_bytes()),
                            ),
                        ]
                        .into(),
                        body: body.into_bytes(),
                    };
                    assert_eq!(handle(&deps, &request, Utc::now()).await.status, 200);
                }
                Door::Command => {
                    let deps = greenlight_deployer::Deps {
                        config: Config::parse(CONFIG).unwrap(),
                        codedeploy: Arc::new(CodeDeploy(codedeploy)),
                        ecs: Arc::new(Ecs(ecs)),
                        registry: Arc::new(Ecr(self.clients.ecr.clone())),
                        ledger: Arc::new(ledger),
                        hook_function: "CodeDeployHook_greenlight".into(),
                        lease_margin: Duration::ZERO,
                        readback_pause: Duration::ZERO,
                        gates,
                    };
                    let request = json!({
                        "greenlight": match choice { Choice::Approve => "approve", Choice::Reject => "reject" },
                        "app": "web1",
                        "release": "waiting",
                        "request_id": format!("5e0c4b8a-0000-4000-8000-{attempt:012}"),
                        "requested_by": "arn:aws:sts::123456789012:assumed-role/release-managers/alice",
                        "requested_at": Utc::now().to_rfc3339(),
                    });
                    let invocation =
                        Invocation::for_test(&format!("req-{attempt}"), Duration::from_secs(30));
                    // An error is the command's failure; the operator runs it again.
                    let _ = greenlight_deployer::handle(&deps, request, &invocation).await;
                }
            }
        };
        tokio::select! {
            _ = decided => true,
            _ = self.faults.killed() => false,
        }
    }

    /// What the engine did for `held`: each continue or rollback that acted.
    fn acted(&self, engine: Engine, held: &Held) -> Vec<String> {
        match engine {
            Engine::Ecs => self
                .ecs
                .continued()
                .into_iter()
                .filter(|(d, _)| *d == held.deployment)
                .map(|(_, a)| a)
                .collect(),
            Engine::CodeDeploy => self
                .codedeploy
                .acted()
                .into_iter()
                .filter(|(d, _)| *d == held.deployment)
                .map(|(_, a)| a)
                .collect(),
        }
    }
}

fn expected_action(engine: Engine, choice: Choice) -> &'static str {
    match (engine, choice) {
        (Engine::Ecs, Choice::Approve) => "CONTINUE",
        (Engine::Ecs, Choice::Reject) => "ROLLBACK",
        (Engine::CodeDeploy, Choice::Approve) => "ContinueDeployment",
        (Engine::CodeDeploy, Choice::Reject) => "StopDeployment",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_the_approval_path_moves_the_engine_once_as_asked() {
    let mut w = World::start().await;
    let mut cases = 0;
    let mut failures = vec![];
    let mut attempt = 0;
    for engine in [Engine::Ecs, Engine::CodeDeploy] {
        for door in [Door::Slack, Door::Command] {
            for choice in [Choice::Approve, Choice::Reject] {
                // A calm decision shows the calls to inject at.
                let held = w.held(engine).await;
                w.faults.reset();
                attempt += 1;
                assert!(w.decide(door, &held, choice, attempt).await);
                let calls = w.faults.calls();
                match door {
                    Door::Slack => w.seen.0.extend(calls.iter().cloned()),
                    Door::Command => w.seen.1.extend(calls.iter().cloned()),
                }
                assert_eq!(
                    w.acted(engine, &held),
                    [expected_action(engine, choice)],
                    "{engine:?} {door:?} calm"
                );
                for (operation, nth) in injection_points(&calls) {
                    for fault in Fault::ALL {
                        cases += 1;
                        let held = w.held(engine).await;
                        w.faults.reset();
                        w.faults.arm(&operation, nth, fault);
                        attempt += 1;
                        w.decide(door, &held, choice, attempt).await;
                        w.faults.disarm();
                        // The person clicks again, or runs the command again.
                        attempt += 1;
                        w.decide(door, &held, choice, attempt).await;
                        let acted = w.acted(engine, &held);
                        let ledger = DynamoLedger::new(w.clients.dynamodb.clone(), TABLE);
                        let decision = ledger
                            .approval("web1", &held.digest)
                            .await
                            .unwrap()
                            .and_then(|r| r.decision);
                        let ok = acted == [expected_action(engine, choice)]
                            && decision
                                .as_ref()
                                .is_some_and(|d| d.choice == choice && d.applied);
                        if !ok {
                            failures.push(format!(
                                "{engine:?} {door:?} {choice:?} {operation}#{nth} {fault:?}: engine {acted:?}, ledger {decision:?}"
                            ));
                        }
                    }
                }
            }
        }
    }
    let _ = &w.moto;
    record_calls("approver", &w.seen.0);
    record_calls("deployer", &w.seen.1);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("approval fault matrix: {cases} cases, all holding");
}
