//! The notifier's promise under faults: every call it makes (the ledger's announcement
//! markers and release reads, the webhook secret, GetDeployment, the Slack post) fails once, or
//! for every attempt, and after Lambda's retries each state of a deployment is posted exactly
//! once, and a rollback is never announced with a success headline. The real handler and SDK
//! clients talk through a fault proxy to moto (DynamoDB, Secrets Manager) and the CodeDeploy
//! stand-in; Slack is a real local receiver.

use std::sync::Arc;
use std::time::Duration;

use greenlight_notifier::{handle, Deps};
use greenlight_shared::aws::codedeploy::CodeDeploy;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::DynamoLedger;
use greenlight_shared::secrets::{SecretReader, SecretRef};
use greenlight_shared::slack::SlackPoster;
use greenlight_shared::Config;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::faults::{injection_points, record_calls, Fault, FaultProxy, Faults};
use greenlight_tests::moto::MotoServer;
use greenlight_tests::receivers::SlackReceiver;
use greenlight_tests::world::{
    create_release_deployment, record_release, sdk_config, seed_app, Clients,
};
use serde_json::Value;

const DIGEST: &str = "sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
"#;

struct World {
    _moto: MotoServer,
    moto_endpoint: String,
    clients: Clients,
    slack: SlackReceiver,
    group: greenlight_tests::codedeploy::GroupSpec,
    serving: String,
}

/// One case: its own ledger table, proxies and a cold notifier (the webhook is read once per
/// cold start).
struct Case {
    deps: Deps,
    faults: Faults,
    stand_in: CodeDeployStandIn,
}

async fn world() -> World {
    let moto = MotoServer::start().await;
    let clients = Clients::new(&moto.endpoint, &moto.endpoint).await;
    let app = seed_app(&clients, "web1", 80).await;
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
        group: app.group,
        serving: app.task_definition,
    }
}

impl World {
    async fn case(&self, n: usize) -> Case {
        let table = format!("notices-{n}");
        self.clients.create_table(&table).await;
        record_release(&self.clients, &table, "web1", "v1.4.3", DIGEST).await;
        // Each case has its own CodeDeploy (its deployment ids start again at d-000000001).
        let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
        stand_in.add_group(self.group.clone(), &self.serving);
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
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            codedeploy: Arc::new(CodeDeploy(aws_sdk_codedeploy::Client::new(&via_codedeploy))),
            ecs: Arc::new(greenlight_shared::aws::ecs::Ecs(aws_sdk_ecs::Client::new(
                &via_moto,
            ))),
            ledger: Some(Arc::new(DynamoLedger::new(
                aws_sdk_dynamodb::Client::new(&via_moto),
                table,
            ))),
            secrets: Arc::new(SecretReader {
                secrets_manager: aws_sdk_secretsmanager::Client::new(&via_moto),
                ssm: aws_sdk_ssm::Client::new(&via_moto),
            }),
            slack: SlackPoster::new(reqwest::Client::new()),
            default_webhook: Some(SecretRef::parse("secretsmanager:greenlight/slack").unwrap()),
            region: "us-east-1".into(),
            webhooks: Default::default(),
        };
        Case {
            deps,
            faults,
            stand_in,
        }
    }
}

impl Case {
    /// The release's deployment fails and is rolled back: its FAILURE and the rollback's
    /// SUCCESS, as EventBridge delivers them (now).
    async fn failed_and_rolled_back(&self) -> Vec<Value> {
        let codedeploy =
            aws_sdk_codedeploy::Client::new(&sdk_config(&self.stand_in.endpoint).await);
        let id = create_release_deployment(&codedeploy, "web1", "v1.4.3", DIGEST, None).await;
        let (failure, rollback) = self.stand_in.fail_and_roll_back(&id);
        vec![failure, rollback]
    }

    /// Delivers as Lambda would: retried (same request id) while it fails.
    async fn deliver(&self, event: &Value, request: &str) -> usize {
        for attempt in 1..=4 {
            let invocation = Invocation::for_test(request, Duration::from_secs(6));
            let event = serde_json::from_value(event.clone()).unwrap();
            if handle(&self.deps, event, &invocation).await.is_ok() {
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
    let w = world().await;

    // The fault-free run: the calls to break.
    let clean = w.case(0).await;
    let events = clean.failed_and_rolled_back().await;
    for (i, e) in events.iter().enumerate() {
        clean.deliver(e, &format!("clean-{i}")).await;
    }
    let calls = clean.faults.calls();
    for op in [
        "PutItem",
        "GetDeployment",
        "GetSecretValue",
        "GetItem",
        "Query",
        "UpdateItem",
    ] {
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
            let events = c.failed_and_rolled_back().await;
            let before = w.slack.messages().len();
            if let Some((op, nth)) = &point {
                c.faults.arm(op, *nth, *fault);
            }
            if let Some(answers) = &slack {
                w.slack.script(answers);
            }
            for (i, e) in events.iter().enumerate() {
                c.deliver(e, &format!("case-{n}-{i}")).await;
            }
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
            if !headlines[0].contains("FAILED") {
                failures.push(format!("{label}: the failure read {:?}", headlines[0]));
            }
            if !headlines[1].contains("rolled back")
                || posted[1].to_string().contains("white_check_mark")
            {
                failures.push(format!("{label}: the rollback read {:?}", headlines[1]));
            }
        }
    }
    record_calls("notifier", &seen_calls);
    println!(
        "notifier fault matrix: {} calls x 2 faults + 2 Slack outages = {cases} cases, {} violated",
        points.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
