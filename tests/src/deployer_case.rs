//! One isolated deployer world per test case, for the fault matrix and the push storm: the
//! real deployer handler with the real SDK clients, talking through fault proxies to a shared
//! moto server (its own ledger table) and its own CodeDeploy stand-in, or, for a service ECS
//! deploys itself, its own ECS stand-in in front of moto. Invocations can be failed or killed;
//! the checks read the truth from the stand-ins and the ledger directly.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use greenlight_deployer::{handle, Deps, Outcome};
use greenlight_shared::appspec::ReleaseDescription;
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecr::Ecr, ecs::Ecs};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{DynamoLedger, QueueLedger, ReleaseLedger, ReleaseRecord};
use greenlight_shared::queue::Queue;
use greenlight_shared::Config;
use serde_json::{json, Value};

use crate::codedeploy::{CodeDeployStandIn, DeploymentState};
use crate::ecs_native::{EcsNativeStandIn, NativeService, StandInRollout};
use crate::faults::{FaultProxy, Faults};
use crate::moto::MotoServer;
use crate::world::{
    push_event, sdk_config, sdk_config_retrying, seed_app_deployed_by, Clients, SeededApp, ACCOUNT,
    CLUSTER, REGION,
};

pub const APP: &str = "web1";

const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
"#;

/// The same app when ECS deploys its service: named by the service.
const NATIVE_CONFIG: &str = r#"
[apps.web1]
repository = "web1"
cluster = "apps"
service = "web1"
"#;

/// Which engine deploys the case's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    CodeDeploy,
    Ecs,
}

/// A deployment of either engine, as the checks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub digest: String,
    /// The operator's request it deploys (CodeDeploy's description names it).
    pub request: Option<String>,
    /// Succeeded, Failed, Stopped or InProgress.
    pub status: String,
}

/// What one delivery of an event came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    Done(Outcome),
    Failed(String),
    /// Dropped after a call, as Lambda ends an invocation at its timeout.
    Killed,
}

pub struct Case {
    pub deps: Arc<Deps>,
    pub stand_in: CodeDeployStandIn,
    /// The ECS stand-in, when ECS deploys the service.
    pub native: Option<EcsNativeStandIn>,
    clients: Clients,
    pub faults: Faults,
    /// The ledger read directly (not through the proxies), for the checks.
    pub ledger: DynamoLedger,
    /// Each invocation's time budget: its leases end with it.
    pub budget: Duration,
}

/// An SDK config on `endpoint` whose retries back off in milliseconds, so that injected
/// errors cost the matrix little time (the retry policy itself is the SDK's standard one).
async fn fast_retry_config(endpoint: &str) -> SdkConfig {
    sdk_config_retrying(
        endpoint,
        RetryConfig::standard()
            .with_initial_backoff(Duration::from_millis(2))
            .with_max_backoff(Duration::from_millis(20)),
    )
    .await
}

impl Case {
    /// A new world on `moto` (where `app` is seeded), with the ledger in table `table`.
    pub async fn start(
        moto_endpoint: &str,
        clients: &Clients,
        app: &SeededApp,
        table: &str,
        budget: Duration,
        engine: Engine,
        strategy: &str,
    ) -> Self {
        clients.create_table(table).await;
        let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
        stand_in.add_group(app.group.clone(), &app.task_definition);
        let faults = Faults::default();
        let moto = FaultProxy::start(moto_endpoint, &faults).await;
        let native = match engine {
            Engine::CodeDeploy => None,
            Engine::Ecs => {
                let ecs = EcsNativeStandIn::start(moto_endpoint).await;
                ecs.manage(NativeService {
                    cluster: CLUSTER.into(),
                    service: APP.into(),
                    green_target_group: app.green_target_group.clone(),
                    test_listener_rule: app.test_rule.clone(),
                    hook_function: "CodeDeployHook_greenlight".into(),
                    hook_stages: vec!["POST_TEST_TRAFFIC_SHIFT".into()],
                    rollout: StandInRollout::of(strategy),
                    pause: None,
                });
                Some(ecs)
            }
        };
        let ecs_proxy = match &native {
            Some(ecs) => FaultProxy::start(&ecs.endpoint, &faults).await.endpoint,
            None => moto.endpoint.clone(),
        };
        let via_ecs = fast_retry_config(&ecs_proxy).await;
        let codedeploy = FaultProxy::start(&stand_in.endpoint, &faults).await;
        let via_moto = fast_retry_config(&moto.endpoint).await;
        let via_codedeploy = fast_retry_config(&codedeploy.endpoint).await;
        let deps = Arc::new(Deps {
            config: Config::parse(match engine {
                Engine::CodeDeploy => CONFIG,
                Engine::Ecs => NATIVE_CONFIG,
            })
            .expect("config"),
            codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&via_codedeploy))),
            ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(&via_ecs))),
            registry: Arc::new(Ecr(aws_sdk_ecr::Client::new(&via_moto))),
            ledger: Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&via_moto),
                table,
            )),
            hook_function: "CodeDeployHook_greenlight".into(),
            lease_margin: Duration::ZERO,
            readback_pause: Duration::ZERO,
            gates: greenlight_shared::approval::EngineGates {
                ecs: Arc::new(Ecs(aws_sdk_ecs::Client::new(&via_ecs))),
                codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&via_codedeploy))),
            },
        });
        let direct = sdk_config(moto_endpoint).await;
        Self {
            deps,
            stand_in,
            native,
            clients: clients.clone(),
            faults,
            ledger: DynamoLedger::new(aws_sdk_dynamodb::Client::new(&direct), table),
            budget,
        }
    }

    /// Delivers one event to the real handler, as Lambda would with `request_id`.
    pub async fn deliver(&self, event: &Value, request_id: &str) -> Delivered {
        let invocation = Invocation::for_test(request_id, self.budget);
        tokio::select! {
            result = handle(&self.deps, event.clone(), &invocation) => match result {
                Ok(outcome) => Delivered::Done(outcome),
                Err(e) => Delivered::Failed(e.to_string()),
            },
            _ = self.faults.killed() => Delivered::Killed,
        }
    }

    /// The stand-in's deployments that name `digest`, in creation order.
    pub fn deployments_of(&self, digest: &str) -> Vec<DeploymentState> {
        self.stand_in
            .deployments()
            .into_iter()
            .filter(|d| {
                d.description
                    .as_deref()
                    .and_then(ReleaseDescription::parse)
                    .is_some_and(|r| r.digest == digest)
            })
            .collect()
    }

    /// Every deployment of either engine, in creation order.
    pub async fn runs(&self) -> Vec<Run> {
        let Some(ecs) = &self.native else {
            return self
                .stand_in
                .deployments()
                .into_iter()
                .map(|d| {
                    let release = d.description.as_deref().and_then(ReleaseDescription::parse);
                    Run {
                        status: match d.status.as_str() {
                            "Created" | "InProgress" => "InProgress".into(),
                            other => other.to_string(),
                        },
                        id: d.id,
                        digest: release
                            .as_ref()
                            .map(|r| r.digest.clone())
                            .unwrap_or_default(),
                        request: release.and_then(|r| r.request),
                    }
                })
                .collect();
        };
        let mut runs = vec![];
        for d in ecs.deployments() {
            let digest = self
                .clients
                .task_definition_tag(&d.task_definition, "greenlight:digest")
                .await
                .unwrap_or_default();
            runs.push(Run {
                id: d.arn,
                digest,
                request: None,
                status: match d.status.as_str() {
                    "SUCCESSFUL" => "Succeeded",
                    "STOPPED" => "Stopped",
                    s if s.starts_with("ROLLBACK_") => "Failed",
                    _ => "InProgress",
                }
                .into(),
            });
        }
        runs
    }

    /// The deployments of `digest`, in creation order.
    pub async fn runs_of(&self, digest: &str) -> Vec<Run> {
        let mut runs = self.runs().await;
        runs.retain(|r| r.digest == digest);
        runs
    }

    /// Ends a running deployment (succeeded, or failed and rolled back); returns the event
    /// its engine sends.
    pub async fn finish(&self, id: &str, succeeded: bool) -> Value {
        let Some(ecs) = &self.native else {
            return self
                .stand_in
                .complete(id, if succeeded { "Succeeded" } else { "Failed" });
        };
        // The service's own record is left as it is (moto's service is shared by the cases,
        // as the CodeDeploy stand-in's completions leave it too).
        let status = if succeeded {
            "SUCCESSFUL"
        } else {
            "ROLLBACK_SUCCESSFUL"
        };
        ecs.set_status(id, status, "");
        let mut event: Value = serde_json::from_str(include_str!(
            "../../events/ecs-deployment-state-change-completed.json"
        ))
        .expect("sample event");
        event["resources"] = json!([format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{APP}"
        )]);
        event["account"] = json!(ACCOUNT);
        event
    }

    /// Ends every deployment still running (successfully, or as `fail` says) and delivers
    /// its end event.
    pub async fn end_running(&self, fail: &(dyn Fn(&str) -> bool + Sync), request: &str) {
        for run in self.runs().await {
            if run.status == "InProgress" {
                let event = self.finish(&run.id, !fail(&run.digest)).await;
                let id = run.id.rsplit('/').next().unwrap_or_default();
                self.deliver_until_done(&event, &format!("{request}-{id}"))
                    .await;
            }
        }
    }

    /// Delivers until the handler answers (a retried event keeps its request id, as Lambda's
    /// retries do); after a kill, waits for the dead invocation's lease to run out first.
    pub async fn deliver_until_done(&self, event: &Value, request_id: &str) -> Outcome {
        for _ in 0..6 {
            match self.deliver(event, request_id).await {
                Delivered::Done(outcome) => return outcome,
                Delivered::Killed => tokio::time::sleep(self.budget).await,
                Delivered::Failed(_) => {}
            }
        }
        panic!("event {event} still failing after 6 deliveries");
    }

    /// Ends what is running and sweeps until the queue is idle and nothing runs.
    pub async fn drain(&self, fail: &(dyn Fn(&str) -> bool + Sync)) {
        for round in 0..10 {
            self.end_running(fail, &format!("drain-{round}")).await;
            self.deliver_until_done(&sweep_event(), &format!("sweep-{round}"))
                .await;
            let queue = self.queue().await;
            let running = self.runs().await.iter().any(|r| r.status == "InProgress");
            if queue.active.is_none() && queue.pending.is_none() && !running {
                return;
            }
        }
        panic!("the queue did not settle: {:?}", self.queue().await);
    }

    pub async fn queue(&self) -> Queue {
        self.ledger.queue(APP).await.expect("queue")
    }

    pub async fn release(&self, digest: &str) -> Option<ReleaseRecord> {
        self.ledger.release(APP, digest).await.expect("release")
    }

    /// The release promises, checked against the stand-in and the ledger; each violation as
    /// a sentence: at most one deployment per release and exactly one for the newest push;
    /// deployments in push order; every release final and recorded as its deployment ended;
    /// the queue idle.
    pub async fn violations(&self, releases: &[Release]) -> Vec<String> {
        let case = self;
        let mut found = vec![];
        let pushed_at = |digest: &str| {
            releases
                .iter()
                .find(|r| r.digest == digest)
                .map(|r| r.pushed_at)
        };
        for r in releases {
            let deployments = case.runs_of(&r.digest).await;
            if deployments.len() > 1 {
                found.push(format!(
                    "{} deployed {} times",
                    r.version,
                    deployments.len()
                ));
            }
            match case.release(&r.digest).await {
                None => found.push(format!("{} has no release record", r.version)),
                Some(record) if !record.status.is_final() => found.push(format!(
                    "{} left {} (not final)",
                    r.version,
                    record.status.as_str()
                )),
                Some(record) => {
                    if let Some(d) = deployments.first() {
                        let expected = match d.status.as_str() {
                            "Succeeded" => "succeeded",
                            "Stopped" => "stopped",
                            _ => "failed",
                        };
                        if record.status.as_str() != expected {
                            found.push(format!(
                                "{} recorded {} but its deployment {} {}",
                                r.version,
                                record.status.as_str(),
                                d.id,
                                d.status
                            ));
                        }
                    }
                }
            }
        }
        let newest = releases.iter().max_by_key(|r| r.pushed_at).unwrap();
        if case.runs_of(&newest.digest).await.len() != 1 {
            found.push(format!(
                "the newest push {} did not ship once",
                newest.version
            ));
        }
        let order: Vec<_> = case
            .runs()
            .await
            .iter()
            .filter_map(|d| {
                let r = releases.iter().find(|r| r.digest == d.digest)?;
                pushed_at(&d.digest).map(|t| (t, r.version.clone()))
            })
            .collect();
        if order.windows(2).any(|w| w[1].0 < w[0].0) {
            found.push(format!(
                "an older release deployed after a newer one: {order:?}"
            ));
        }
        let queue = case.queue().await;
        if queue.active.is_some() || queue.pending.is_some() {
            found.push(format!("the queue did not end idle: {queue:?}"));
        }
        found
    }
}

/// An EventBridge scheduled event (`events/scheduled-sweep.json`).
pub fn sweep_event() -> Value {
    json!({
        "version": "0",
        "id": "sweep",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [],
        "detail": {},
    })
}

/// A release of the storm or the matrix: its tag, digest and push time.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub digest: String,
    pub pushed_at: chrono::DateTime<chrono::Utc>,
}

impl Release {
    pub fn push(&self) -> Value {
        push_event(APP, &self.version, &self.digest, self.pushed_at)
    }

    /// The `latest` twin ECR sends for the same push.
    pub fn latest(&self) -> Value {
        push_event(APP, "latest", &self.digest, self.pushed_at)
    }
}

/// One moto server with the app seeded, shared by the cases of a test.
pub struct MotoWorld {
    _moto: MotoServer,
    pub endpoint: String,
    pub clients: Clients,
    pub app: SeededApp,
    pub engine: Engine,
    cases: std::sync::atomic::AtomicUsize,
}

/// ECS's strategies, as the native matrices run them in turn.
pub const STRATEGIES: [&str; 3] = ["BLUE_GREEN", "LINEAR", "CANARY"];

impl MotoWorld {
    /// moto with the app seeded, its service deployed by CodeDeploy.
    pub async fn start() -> Arc<Self> {
        Self::deployed_by(Engine::CodeDeploy).await
    }

    pub async fn deployed_by(engine: Engine) -> Arc<Self> {
        use aws_sdk_ecs::types::DeploymentControllerType;
        let moto = MotoServer::start().await;
        let clients = Clients::new(&moto.endpoint, &moto.endpoint).await;
        let controller = match engine {
            Engine::CodeDeploy => DeploymentControllerType::CodeDeploy,
            Engine::Ecs => DeploymentControllerType::Ecs,
        };
        let app = seed_app_deployed_by(&clients, APP, 80, controller).await;
        Arc::new(Self {
            endpoint: moto.endpoint.clone(),
            _moto: moto,
            clients,
            app,
            engine,
            cases: Default::default(),
        })
    }

    /// Pushes `count` releases to ECR, `v1.0.1` at 10:01 and so on, one minute apart.
    pub async fn push_releases(&self, count: u32) -> Vec<Release> {
        let mut out = vec![];
        for i in 1..=count {
            let version = format!("v1.0.{i}");
            let digest = self
                .clients
                .push_image(APP, &version, &format!("{APP}-{version}"))
                .await;
            out.push(Release {
                version,
                digest,
                pushed_at: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 25, 10, i, 0)
                    .unwrap(),
            });
        }
        out
    }

    /// A new case. On the native engine the cases take ECS's three strategies in turn, so
    /// every fault meets each of them: the deployer must start and finish each the same way.
    pub async fn case(&self, table: &str, budget: Duration) -> Case {
        let n = self.cases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Case::start(
            &self.endpoint,
            &self.clients,
            &self.app,
            table,
            budget,
            self.engine,
            STRATEGIES[n % STRATEGIES.len()],
        )
        .await
    }

    /// How many cases ran on each strategy (native engine), in `STRATEGIES`' order.
    pub fn cases_per_strategy(&self) -> [usize; 3] {
        let n = self.cases.load(std::sync::atomic::Ordering::SeqCst);
        [0, 1, 2].map(|i| n / 3 + usize::from(i < n % 3))
    }
}
