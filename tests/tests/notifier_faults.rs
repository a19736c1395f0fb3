//! The notifier's promise under faults: every call it makes (the ledger's announcement
//! markers and release reads, the webhook secret, GetDeployment, the Slack post) fails once, or
//! for every attempt, and after Lambda's retries each state of a deployment is posted exactly
//! once, and a rollback is never announced with a success headline. The real handler and SDK
//! clients talk through a fault proxy to moto (DynamoDB, Secrets Manager) and the CodeDeploy
//! stand-in, or, for a service ECS deploys itself, the ECS stand-in in front of moto (the
//! service deployments and revisions, the task definition's tags); Slack is a real local
//! receiver.

use std::sync::Arc;
use std::time::Duration;

use greenlight_notifier::{notify, parse_event, Deps};
use greenlight_shared::aws::codedeploy::CodeDeploy;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::DynamoLedger;
use greenlight_shared::secrets::{SecretReader, SecretRef};
use greenlight_shared::slack::SlackPoster;
use greenlight_shared::Config;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::deployer_case::Engine;
use greenlight_tests::ecs_native::{EcsNativeStandIn, NativeService};
use greenlight_tests::faults::{injection_points, record_calls, Fault, FaultProxy, Faults};
use greenlight_tests::moto::MotoServer;
use greenlight_tests::receivers::SlackReceiver;
use greenlight_tests::world::{
    create_release_deployment, record_release, sdk_config, seed_app_deployed_by, Clients,
    SeededApp, CLUSTER,
};
use serde_json::Value;

const DIGEST: &str = "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
"#;
const NATIVE_CONFIG: &str = r#"
[apps.web1]
repository = "web1"
cluster = "apps"
service = "web1"
"#;

struct World {
    _moto: MotoServer,
    moto_endpoint: String,
    clients: Clients,
    slack: SlackReceiver,
    app: SeededApp,
    engine: Engine,
    /// Native: the release's revision, tagged as the deployer tags it.
    release_revision: String,
}

/// One case: its own ledger table, proxies and a cold notifier (the webhook is read once per
/// cold start).
struct Case {
    deps: Deps,
    faults: Faults,
    stand_in: CodeDeployStandIn,
    native: Option<EcsNativeStandIn>,
    green_target_group: String,
    release_revision: String,
}

async fn world(engine: Engine) -> World {
    use aws_sdk_ecs::types::{DeploymentControllerType, Tag};
    let moto = MotoServer::start().await;
    let clients = Clients::new(&moto.endpoint, &moto.endpoint).await;
    let controller = match engine {
        Engine::CodeDeploy => DeploymentControllerType::CodeDeploy,
        Engine::Ecs => DeploymentControllerType::Ecs,
    };
    let app = seed_app_deployed_by(&clients, "web1", 80, controller).await;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let release_revision = clients
        .ecs
        .register_task_definition()
        .family("web1")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("web1")
                .image(format!("web1@{DIGEST}"))
                .memory(256)
                .build(),
        )
        .tags(tag("greenlight:app", "web1"))
        .tags(tag("greenlight:version", "v1.4.3"))
        .tags(tag("greenlight:digest", DIGEST))
        .send()
        .await
        .unwrap()
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_string();
    let slack = SlackReceiver::start().await;
    clients
        .secrets
        .create_secret()
        .name("greenlight/slack")
        .secret_string(&slack.url)
        .send()
        .await
        .unwrap();
    World {
        moto_endpoint: moto.endpoint.clone(),
        _moto: moto,
        clients,
        slack,
        app,
        engine,
        release_revision,
    }
}

impl World {
    async fn case(&self, n: usize) -> Case {
        let table = format!("notices-{n}");
        self.clients.create_table(&table).await;
        record_release(&self.clients, &table, "web1", "v1.4.3", DIGEST).await;
        // Each case has its own CodeDeploy (its deployment ids start again at d-000000001).
        let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
        stand_in.add_group(self.app.group.clone(), &self.app.task_definition);
        let native = match self.engine {
            Engine::CodeDeploy => None,
            Engine::Ecs => {
                let ecs = EcsNativeStandIn::start(&self.moto_endpoint).await;
                ecs.manage(NativeService {
                    cluster: CLUSTER.into(),
                    service: "web1".into(),
                    green_target_group: self.app.green_target_group.clone(),
                    test_listener_rule: self.app.test_rule.clone(),
                    hook_function: "CodeDeployHook_greenlight".into(),
                    hook_stages: vec!["POST_TEST_TRAFFIC_SHIFT".into()],
                    rollout: Default::default(),
                    pause: None,
                });
                Some(ecs)
            }
        };
        let faults = Faults::default();
        let via_moto = sdk_config(
            &FaultProxy::start(&self.moto_endpoint, &faults)
                .await
                .endpoint,
        )
        .await;
        let via_codedeploy = sdk_config(
            &FaultProxy::start(&stand_in.endpoint, &faults)
                .await
                .endpoint,
        )
        .await;
        let via_ecs = match &native {
            Some(ecs) => {
                sdk_config(&FaultProxy::start(&ecs.endpoint, &faults).await.endpoint).await
            }
            None => via_moto.clone(),
        };
        let deps = Deps {
            config: Config::parse(match self.engine {
                Engine::CodeDeploy => CONFIG,
                Engine::Ecs => NATIVE_CONFIG,
            })
            .unwrap(),
            codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&via_codedeploy))),
            ecs: Arc::new(greenlight_shared::aws::ecs::Ecs(aws_sdk_ecs::Client::new(
                &via_ecs,
            ))),
            ledger: Some(Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&via_moto),
                table,
            ))),
            secrets: Arc::new(SecretReader {
                secrets_manager: aws_sdk_secretsmanager::Client::new(&via_moto),
                ssm: aws_sdk_ssm::Client::new(&via_moto),
            }),
            slack: SlackPoster::new(greenlight_shared::http::Http::new()),
            slack_app: greenlight_shared::slack::SlackApp::new(
                greenlight_shared::http::Http::new(),
                "http://127.0.0.1:9/api",
            ),
            default_webhook: Some(SecretRef::parse("secretsmanager:greenlight/slack").unwrap()),
            region: "us-east-1".into(),
            webhooks: Default::default(),
        };
        Case {
            deps,
            faults,
            stand_in,
            native,
            green_target_group: self.app.green_target_group.clone(),
            release_revision: self.release_revision.clone(),
        }
    }
}

impl Case {
    /// The release's deployment fails and is rolled back; each event delivered as it comes.
    /// CodeDeploy: its FAILURE, then the rollback deployment's SUCCESS. ECS: the deployment's
    /// IN_PROGRESS, then its FAILED once it has rolled back.
    async fn fail_and_roll_back(&self, request: &str) {
        let Some(ecs) = &self.native else {
            let codedeploy =
                aws_sdk_codedeploy::Client::new(&sdk_config(&self.stand_in.endpoint).await);
            let id = create_release_deployment(&codedeploy, "web1", "v1.4.3", DIGEST, None).await;
            let (failure, rollback) = self.stand_in.fail_and_roll_back(&id);
            for (i, e) in [failure, rollback].iter().enumerate() {
                self.deliver(e, &format!("{request}-{i}")).await;
            }
            return;
        };
        let deployment = ecs.deploy(
            CLUSTER,
            "web1",
            1,
            &self.release_revision,
            &self.green_target_group,
        );
        let event = |name: &str| {
            let mut e: Value = serde_json::from_str(include_str!(
                "../../events/ecs-deployment-state-change-in-progress.json"
            ))
            .unwrap();
            e["detail"]["eventName"] = name.into();
            e["time"] = chrono::Utc::now().to_rfc3339().into();
            e["resources"] = serde_json::json!([format!(
                "arn:aws:ecs:us-east-1:{}:service/{CLUSTER}/web1",
                greenlight_tests::world::ACCOUNT
            )]);
            e
        };
        self.deliver(
            &event("SERVICE_DEPLOYMENT_IN_PROGRESS"),
            &format!("{request}-0"),
        )
        .await;
        ecs.set_status(
            &deployment.arn,
            "ROLLBACK_SUCCESSFUL",
            "the POST_TEST_TRAFFIC_SHIFT hook failed",
        );
        self.deliver(&event("SERVICE_DEPLOYMENT_FAILED"), &format!("{request}-1"))
            .await;
    }

    /// Delivers as Lambda would: retried (same request id) while it fails.
    async fn deliver(&self, event: &Value, request: &str) -> usize {
        for attempt in 1..=4 {
            let invocation = Invocation::for_test(request, Duration::from_secs(6));
            let event = parse_event(event.clone()).unwrap();
            if notify(&self.deps, event, &invocation).await.is_ok() {
                return attempt;
            }
            self.faults.disarm();
        }
        panic!("still failing after 4 attempts: {event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_every_notifier_call_posts_each_state_once_and_never_a_success_for_a_rollback(
) {
    matrix(
        Engine::CodeDeploy,
        &[
            "PutItem",
            "GetDeployment",
            "GetSecretValue",
            "GetItem",
            "Query",
            "UpdateItem",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_native_engine_every_fault_at_every_notifier_call_posts_each_state_once_and_never_a_success(
) {
    matrix(
        Engine::Ecs,
        &[
            "PutItem",
            "ListServiceDeployments",
            "DescribeServiceRevisions",
            "ListTagsForResource",
            "GetSecretValue",
            "GetItem",
            "Query",
            "UpdateItem",
        ],
    )
    .await;
}

async fn matrix(engine: Engine, expected_calls: &[&str]) {
    let w = world(engine).await;

    // The fault-free run: the calls to break.
    let clean = w.case(0).await;
    clean.fail_and_roll_back("clean").await;
    let calls = clean.faults.calls();
    for op in expected_calls {
        assert!(calls.iter().any(|c| c == op), "no {op} in {calls:?}");
    }
    let points = injection_points(&calls);
    let baseline = w.slack.messages().len();
    assert_eq!(baseline, 2);

    let mut failures = vec![];
    let mut seen_calls = calls.clone();
    let mut cases = 0;
    let mut n = 1;
    // Slack down once, and down for longer than one invocation's budget.
    let slack_faults = [vec![(500, None)], vec![(500, None); 6]];
    for (point, slack) in points
        .iter()
        .map(|p| (Some(p.clone()), None))
        .chain(slack_faults.iter().map(|s| (None, Some(s.clone()))))
        .collect::<Vec<_>>()
    {
        let kinds: &[Fault] = if point.is_some() {
            &[Fault::ServerError, Fault::Down]
        } else {
            &[Fault::ServerError]
        };
        for fault in kinds {
            cases += 1;
            let c = w.case(n).await;
            n += 1;
            let before = w.slack.messages().len();
            if let Some((op, nth)) = &point {
                c.faults.arm(op, *nth, *fault);
            }
            if let Some(answers) = &slack {
                w.slack.script(answers);
            }
            c.fail_and_roll_back(&format!("case-{n}")).await;
            seen_calls.extend(c.faults.calls());
            let posted: Vec<Value> = w.slack.messages()[before..].to_vec();
            let headlines: Vec<String> = posted
                .iter()
                .map(|m| m["text"].as_str().unwrap_or_default().to_string())
                .collect();
            let label = match &point {
                Some((op, nth)) => format!("{fault:?} at {op} #{nth}"),
                None => format!("Slack answering 500 x{}", slack.as_ref().unwrap().len()),
            };
            if headlines.len() != 2 {
                failures.push(format!("{label}: {} posts: {headlines:?}", headlines.len()));
                continue;
            }
            // CodeDeploy: FAILED, then the rollback's own success; ECS: started, then FAILED
            // with the version rolled back to.
            let (first, last) = match engine {
                Engine::CodeDeploy => ("FAILED", "rolled back"),
                Engine::Ecs => (
                    "deploying to production",
                    "FAILED on production — rolled back",
                ),
            };
            if !headlines[0].contains(first) {
                failures.push(format!(
                    "{label}: the first message read {:?}",
                    headlines[0]
                ));
            }
            if !headlines[1].contains(last)
                || posted
                    .iter()
                    .any(|p| p.to_string().contains("white_check_mark"))
            {
                failures.push(format!("{label}: the rollback read {:?}", headlines[1]));
            }
        }
    }
    record_calls("notifier", &seen_calls);
    println!(
        "notifier fault matrix ({engine:?}): {} calls x 2 faults + 2 Slack outages = {cases} cases, {} violated",
        points.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
