//! The approval endpoint (the Slack buttons) over the Slack API stand-in, the in-memory ledger
//! and an engine that holds the release: every request verified before it is read, a decision
//! taken once for its run and deployment, and the person told why when nothing changed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use greenlight_approver::signature::sign;
use greenlight_approver::{handle, Deps, HttpRequest, Responder};
use greenlight_shared::approval::{Binding, Choice, EngineGates, EngineWait};
use greenlight_shared::fakes::{digest, FakeGate, FakeLedger};
use greenlight_shared::ledger::{
    ApprovalLedger, Ledger, ReleaseRecord, ReleaseStatus, VerdictLedger, Wait,
};
use greenlight_shared::secrets::{Secret, SecretError, SecretRef, SecretSource};
use greenlight_shared::slack::SlackApp;
use greenlight_shared::Config;
use greenlight_tests::slack_api::{SlackApiStandIn, SlackFault};
use serde_json::json;

const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TOKEN: &str = "xoxb-1111-2222-secrettoken";
const DEPLOYMENT: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/d1";
const APPROVER: &str = "U024BE7LH";
const IN_GROUP: &str = "U0GROUPIE";
const STRANGER: &str = "U0STRANGE";
const RESPONSE_URL: &str = "https://hooks.slack.com/actions/T1/1/x";

const CONFIG: &str = r#"
[apps.web2]
repository = "web2"
cluster = "apps"
service = "web2"
[apps.web2.slack]
token = "env:SLACK_TOKEN"
channel = "C0DEPLOYS"
[apps.web2.approval]
required = true
approvers = ["U024BE7LH", "S0RELEASE"]
timeout_minutes = 60
"#;

struct Secrets;

#[async_trait]
impl SecretSource for Secrets {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        match r {
            SecretRef::Env(v) if v == "SLACK_SIGNING" => Ok(Secret::new(SIGNING)),
            SecretRef::Env(v) if v == "SLACK_TOKEN" => Ok(Secret::new(TOKEN)),
            other => Err(SecretError {
                reference: other.to_string(),
                message: "no such secret".into(),
            }),
        }
    }
}

/// What the people who clicked were told.
#[derive(Default)]
struct Told(Mutex<Vec<String>>);

#[async_trait]
impl Responder for Told {
    async fn say(&self, response_url: &str, text: &str) {
        assert_eq!(response_url, RESPONSE_URL);
        self.0.lock().unwrap().push(text.to_string());
    }
}

struct World {
    deps: Deps,
    ledger: Arc<FakeLedger>,
    gate: Arc<FakeGate>,
    told: Arc<Told>,
    now: DateTime<Utc>,
    binding: Binding,
    slack: SlackApiStandIn,
}

impl World {
    async fn new() -> Self {
        let slack = SlackApiStandIn::start(TOKEN, &["C0DEPLOYS"]).await;
        slack.set_group("S0RELEASE", &[IN_GROUP]);
        let now = Utc::now();
        let ledger = Arc::new(FakeLedger::default());
        let pushed = now - chrono::Duration::minutes(4);
        ledger.insert(ReleaseRecord {
            app: "web2".into(),
            digest: digest(3),
            version: "v2.1.0".into(),
            image: String::new(),
            pushed_at: pushed,
            status: ReleaseStatus::Deploying,
            owner: None,
            lease_until: None,
            task_definition_arn: None,
            deployment_id: Some(DEPLOYMENT.into()),
            superseded_by: None,
            hook_reason: None,
            hook_reported_execution: None,
            provenance: Default::default(),
            request: None,
        });
        ledger
            .record_approval_wait(
                "web2",
                &digest(3),
                &Wait {
                    deployment_id: DEPLOYMENT.into(),
                    expires_at: now + chrono::Duration::minutes(60),
                },
            )
            .await
            .unwrap();
        let gate = Arc::new(FakeGate::holding(
            Some("hook-1"),
            Some(now + chrono::Duration::minutes(60)),
        ));
        let told = Arc::new(Told::default());
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            ledger: Some(ledger.clone() as Arc<dyn Ledger>),
            gates: EngineGates {
                ecs: gate.clone(),
                codedeploy: gate.clone(),
            },
            secrets: Arc::new(Secrets),
            signing_secret: SecretRef::Env("SLACK_SIGNING".into()),
            slack_app: SlackApp::new(greenlight_shared::http::Http::new(), slack.base.clone())
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
            responder: told.clone(),
            response_base: "https://hooks.slack.com/".into(),
            cache: Default::default(),
        };
        let binding = Binding {
            app: "web2".into(),
            digest: digest(3),
            pushed_at_ms: pushed.timestamp_millis(),
            deployment_id: DEPLOYMENT.into(),
        };
        Self {
            deps,
            ledger,
            gate,
            told,
            now,
            binding,
            slack,
        }
    }

    /// A click as Slack sends it: the form-encoded payload, signed at `signed_at`.
    fn click(&self, user: &str, action: &str, binding: &Binding, signed_at: i64) -> HttpRequest {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "someone", "team_id": "T1"},
            "team": {"id": "T1"},
            "actions": [{"action_id": action, "block_id": "approval", "type": "button",
                         "value": binding.to_value(), "action_ts": "1765000000.000100"}],
            "response_url": RESPONSE_URL,
            "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
        });
        let body = format!(
            "payload={}",
            form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
        );
        let ts = signed_at.to_string();
        HttpRequest {
            headers: [
                ("x-slack-request-timestamp".to_string(), ts.clone()),
                (
                    "x-slack-signature".to_string(),
                    sign(SIGNING.as_bytes(), &ts, body.as_bytes()),
                ),
            ]
            .into(),
            body: body.into_bytes(),
        }
    }

    fn decision(&self) -> Option<greenlight_shared::ledger::Decision> {
        self.ledger.approvals.lock().unwrap()[&digest(3)].1.clone()
    }

    fn told(&self) -> Vec<String> {
        self.told.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn an_approvers_click_continues_the_pause_once_and_a_second_click_or_replay_changes_nothing()
{
    let w = World::new().await;
    let click = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    assert_eq!(handle(&w.deps, &click, w.now).await.status, 200);
    assert_eq!(
        *w.gate.resolved.lock().unwrap(),
        [(
            DEPLOYMENT.to_string(),
            Some("hook-1".to_string()),
            Choice::Approve
        )]
    );
    let decision = w.decision().unwrap();
    assert_eq!(decision.by, format!("slack:{APPROVER}"));
    assert!(decision.applied);
    // The same request again (a replay inside five minutes), and a second click of Roll back.
    assert_eq!(handle(&w.deps, &click, w.now).await.status, 200);
    let reject = w.click(APPROVER, "reject", &w.binding, w.now.timestamp());
    assert_eq!(handle(&w.deps, &reject, w.now).await.status, 200);
    assert_eq!(w.gate.resolved.lock().unwrap().len(), 1);
    let told = w.told();
    assert_eq!(
        told[0],
        ":white_check_mark: Approved: web2 v2.1.0 takes production traffic."
    );
    for later in &told[1..] {
        assert!(
            later.starts_with("Nothing changed: web2 v2.1.0 was already approved by <@U024BE7LH>"),
            "{later}"
        );
    }
}

#[tokio::test]
async fn a_forged_a_stale_or_an_unsigned_request_is_refused_before_it_is_read() {
    let w = World::new().await;
    let mut forged = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    forged.body = String::from_utf8(forged.body)
        .unwrap()
        .replace("approve", "reject")
        .into_bytes();
    let stale = w.click(APPROVER, "approve", &w.binding, w.now.timestamp() - 301);
    let mut unsigned = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    unsigned.headers.remove("x-slack-signature");
    let mut other_secret = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    let ts = w.now.timestamp().to_string();
    other_secret.headers.insert(
        "x-slack-signature".into(),
        sign(b"not-the-signing-secret", &ts, &other_secret.body),
    );
    for request in [forged, stale, unsigned, other_secret] {
        assert_eq!(handle(&w.deps, &request, w.now).await.status, 401);
    }
    assert!(w.gate.resolved.lock().unwrap().is_empty());
    assert!(w.decision().is_none());
    assert!(
        w.told().is_empty(),
        "nobody is answered: the request is nobody's"
    );
    // A verified body that is not an interaction.
    let mut junk = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    junk.body = b"text=hello".to_vec();
    junk.headers.insert(
        "x-slack-signature".into(),
        sign(SIGNING.as_bytes(), &ts, &junk.body),
    );
    assert_eq!(handle(&w.deps, &junk, w.now).await.status, 400);
}

#[tokio::test]
async fn only_approvers_decide_by_id_or_through_their_group() {
    let w = World::new().await;
    let stranger = w.click(STRANGER, "approve", &w.binding, w.now.timestamp());
    assert_eq!(handle(&w.deps, &stranger, w.now).await.status, 200);
    assert!(w.decision().is_none());
    assert_eq!(
        w.told(),
        ["You are not an approver of web2: nothing changed."]
    );
    // A member of the approver group S0RELEASE (asked of Slack).
    let member = w.click(IN_GROUP, "reject", &w.binding, w.now.timestamp());
    handle(&w.deps, &member, w.now).await;
    assert_eq!(
        *w.gate.resolved.lock().unwrap(),
        [(
            DEPLOYMENT.to_string(),
            Some("hook-1".to_string()),
            Choice::Reject
        )]
    );
    assert_eq!(
        w.told()[1],
        ":leftwards_arrow_with_hook: Rolled back: web2 v2.1.0 takes no production traffic."
    );
}

#[tokio::test]
async fn a_button_of_an_earlier_run_or_a_click_after_the_wait_decides_nothing() {
    let w = World::new().await;
    let earlier = Binding {
        deployment_id: "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/d0".into(),
        ..w.binding.clone()
    };
    let old_button = w.click(APPROVER, "approve", &earlier, w.now.timestamp());
    handle(&w.deps, &old_button, w.now).await;
    assert!(
        w.told()[0].contains("belongs to an earlier run"),
        "{:?}",
        w.told()
    );
    // After the wait: the engine rolled it back.
    let late = w.now + chrono::Duration::minutes(61);
    let after = w.click(APPROVER, "approve", &w.binding, late.timestamp());
    handle(&w.deps, &after, late).await;
    assert!(w.told()[1].contains("ended"), "{:?}", w.told());
    *w.gate.state.lock().unwrap() = Some(EngineWait::Over);
    let over = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    handle(&w.deps, &over, w.now).await;
    assert!(w.told()[2].contains("no longer waits"), "{:?}", w.told());
    assert!(w.gate.resolved.lock().unwrap().is_empty());
    assert!(w.decision().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_racing_continue_or_roll_back_once() {
    let w = World::new().await;
    let approve = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
    let reject = w.click(IN_GROUP, "reject", &w.binding, w.now.timestamp());
    let (a, b) = tokio::join!(
        handle(&w.deps, &approve, w.now),
        handle(&w.deps, &reject, w.now)
    );
    assert_eq!((a.status, b.status), (200, 200));
    let resolved = w.gate.resolved.lock().unwrap().clone();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let decision = w.decision().unwrap();
    assert_eq!(decision.choice, resolved[0].2);
    let told = w.told();
    assert_eq!(told.len(), 2);
    assert_eq!(
        told.iter()
            .filter(|t| t.starts_with("Nothing changed"))
            .count(),
        1,
        "{told:?}"
    );
}

#[tokio::test]
async fn every_fault_on_the_approval_path_ends_with_at_most_one_engine_action_and_a_true_record() {
    // Each call of the path fails once (a throttled read, an engine answer lost after it
    // acted, the ledger down), then the person clicks again: the release is continued at most
    // once, and the decision ends recorded and applied.
    for fault in ["read", "lost", "ledger"] {
        let w = World::new().await;
        match fault {
            "read" => *w.gate.failing_reads.lock().unwrap() = 1,
            "lost" => *w.gate.lose_answers.lock().unwrap() = 1,
            _ => {}
        }
        let deps = if fault == "ledger" {
            Deps {
                ledger: Some(Arc::new(FakeLedger {
                    unreachable: true,
                    ..FakeLedger::default()
                }) as Arc<dyn Ledger>),
                ..clone_deps(&w)
            }
        } else {
            clone_deps(&w)
        };
        let click = w.click(APPROVER, "approve", &w.binding, w.now.timestamp());
        assert_eq!(handle(&deps, &click, w.now).await.status, 200, "{fault}");
        assert!(
            w.told()[0].starts_with("Could not approve web2"),
            "{fault}: {:?}",
            w.told()
        );
        handle(&w.deps, &click, w.now).await;
        let resolved = w.gate.resolved.lock().unwrap().clone();
        assert_eq!(resolved.len(), 1, "{fault}: {resolved:?}");
        let decision = w.decision().unwrap();
        assert!(
            decision.applied && decision.choice == Choice::Approve,
            "{fault}"
        );
        let second = &w.told()[1];
        assert!(
            second.starts_with(":white_check_mark: Approved")
                || second.starts_with("Nothing changed: web2 v2.1.0 was already approved"),
            "{fault}: {second}"
        );
        let record = w
            .ledger
            .approval("web2", &digest(3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.wait.deployment_id, DEPLOYMENT);
    }
}

fn clone_deps(w: &World) -> Deps {
    Deps {
        config: w.deps.config.clone(),
        ledger: w.deps.ledger.clone(),
        gates: w.deps.gates.clone(),
        secrets: w.deps.secrets.clone(),
        signing_secret: w.deps.signing_secret.clone(),
        slack_app: w.deps.slack_app.clone(),
        responder: w.deps.responder.clone(),
        response_base: w.deps.response_base.clone(),
        cache: Default::default(),
    }
}

#[tokio::test]
async fn any_body_is_refused_unread_unless_signed_and_a_signed_one_is_read_or_refused() {
    use proptest::strategy::{Strategy, ValueTree};
    let w = World::new().await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // Anything, and anything that looks like Slack's form (a payload of any JSON-ish text).
    let bytes = proptest::collection::vec(proptest::num::u8::ANY, 0..3000);
    let forms = "[ -~]{0,400}".prop_map(|t| {
        format!(
            "payload={}",
            form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        )
        .into_bytes()
    });
    let body = proptest::prop_oneof![bytes, forms];
    let now = w.now.timestamp().to_string();
    for _ in 0..300 {
        let body = body.new_tree(&mut runner).unwrap().current();
        let unsigned = HttpRequest {
            headers: [("x-slack-request-timestamp".to_string(), now.clone())].into(),
            body: body.clone(),
        };
        assert_eq!(handle(&w.deps, &unsigned, w.now).await.status, 401);
        let signed = HttpRequest {
            headers: [
                ("x-slack-request-timestamp".to_string(), now.clone()),
                (
                    "x-slack-signature".to_string(),
                    sign(SIGNING.as_bytes(), &now, &body),
                ),
            ]
            .into(),
            body,
        };
        let status = handle(&w.deps, &signed, w.now).await.status;
        assert!(matches!(status, 200 | 400 | 401), "{status}");
    }
    // Nothing of it decided anything.
    assert!(w.gate.resolved.lock().unwrap().is_empty());
    assert!(w.decision().is_none());
}

#[tokio::test]
async fn an_approver_group_slack_cannot_list_is_refused_and_a_failure_once_is_retried() {
    let w = World::new().await;
    // Slack down for the whole click: a member of the approver group is refused (never
    // allowed on a guess), and nothing is decided.
    w.slack.set_down(true);
    let member = w.click(IN_GROUP, "approve", &w.binding, w.now.timestamp());
    assert_eq!(handle(&w.deps, &member, w.now).await.status, 200);
    assert_eq!(
        w.told(),
        ["You are not an approver of web2: nothing changed."]
    );
    assert!(w.decision().is_none());
    // A 500 once: retried within the click's budget, and the member decides.
    w.slack.set_down(false);
    w.slack
        .fail_next(Some("usergroups.users.list"), SlackFault::ServerError);
    handle(&w.deps, &member, w.now).await;
    assert_eq!(w.decision().unwrap().by, format!("slack:{IN_GROUP}"));
    assert_eq!(w.gate.resolved.lock().unwrap().len(), 1);
}
