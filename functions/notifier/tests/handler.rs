//! Notifier handler against a real webhook receiver on 127.0.0.1 playing Slack (scripted
//! answers, every JSON body recorded), with fakes for CodeDeploy, the ledger and the secrets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::codedeploy::CodeDeployEvent;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use greenlight_notifier::{handle, Deps, Notified, NotifyError, SecretSource};
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::Deployment;
use greenlight_shared::aws::ecs::ServiceDeploymentBrief;
use greenlight_shared::fakes::{
    digest, sample_event as sample, Calls, FakeCodeDeploy, FakeEcs, FakeLedger,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseRecord, ReleaseStatus};
use greenlight_shared::secrets::{Secret, SecretError, SecretRef};
use greenlight_shared::slack::SlackPoster;
use greenlight_shared::Config;
use serde_json::{json, Value};

const CONFIG: &str = r##"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
[apps.web1.slack]
webhook = "env:TEST_WEBHOOK"
mention_on_failure = "<!here>"
channel = "#deploys"

[apps.web2]
repository = "web2"
application = "web2"
deployment_group = "web2-bluegreen"
environment = "staging"

[apps.web3]
repository = "web3"
cluster = "default"
service = "web3"
[apps.web3.slack]
webhook = "env:TEST_WEBHOOK"
mention_on_failure = "<!here>"
"##;

const WEBHOOK_PATH: &str = "/services/T0000000/B0000000/local";
const DEPLOYMENT: &str = "d-7GQK2M4XB";
const ROLLBACK: &str = "d-ROLLBACK1";

// ---- the receiver playing Slack ----------------------------------------------------------

/// One scripted answer of the receiver.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
}

impl Answer {
    const OK: Answer = Answer {
        status: 200,
        retry_after: None,
    };

    fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }
}

#[derive(Clone)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    then: Answer,
}

impl Receiver {
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

async fn receive(State(receiver): State<Receiver>, body: Bytes) -> Response {
    receiver
        .bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let answer = receiver
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(receiver.then);
    let text = match answer.status {
        200 => "ok",
        400 => "invalid_payload",
        429 => "rate_limited",
        _ => "internal_error",
    };
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), text).into_response();
    if let Some(seconds) = answer.retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Starts the receiver: it answers `script` in order, then `then` forever. Returns its URL.
async fn start_slack(script: Vec<Answer>, then: Answer) -> (String, Receiver) {
    let receiver = Receiver {
        bodies: Arc::default(),
        script: Arc::new(Mutex::new(script.into())),
        then,
    };
    let app = Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, receiver)
}

// ---- fakes and fixtures ------------------------------------------------------------------

/// Plays Secrets Manager: `env:TEST_WEBHOOK` is the receiver's URL; counts reads.
struct FakeSecrets {
    url: String,
    reads: AtomicUsize,
}

#[async_trait]
impl SecretSource for FakeSecrets {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        match r {
            SecretRef::Env(var) if var == "TEST_WEBHOOK" => Ok(Secret::new(self.url.clone())),
            other => Err(SecretError {
                reference: other.to_string(),
                message: "no such secret".into(),
            }),
        }
    }
}

struct World {
    deps: Deps,
    calls: Arc<Calls>,
    codedeploy: Arc<FakeCodeDeploy>,
    ecs: Arc<FakeEcs>,
    ledger: Arc<FakeLedger>,
    secrets: Arc<FakeSecrets>,
    slack: Receiver,
    url: String,
}

impl World {
    /// Slack answers `then` to every post; a ledger; no default webhook.
    async fn new(then: Answer) -> Self {
        Self::with(vec![], then, true, None).await
    }

    async fn with(
        script: Vec<Answer>,
        then: Answer,
        with_ledger: bool,
        default_webhook: Option<&str>,
    ) -> Self {
        let (url, slack) = start_slack(script, then).await;
        let calls = Arc::new(Calls::default());
        let codedeploy = Arc::new(FakeCodeDeploy::new(calls.clone()));
        let ecs = Arc::new(FakeEcs::new(calls.clone(), "").native());
        let ledger = Arc::new(FakeLedger::default());
        let secrets = Arc::new(FakeSecrets {
            url: url.clone(),
            reads: AtomicUsize::new(0),
        });
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            codedeploy: codedeploy.clone(),
            ecs: ecs.clone(),
            ledger: with_ledger.then(|| ledger.clone() as Arc<dyn Ledger>),
            secrets: secrets.clone(),
            slack: SlackPoster::new(greenlight_shared::http::Http::new())
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
            // Webhook mode only here (app mode: tests/tests/notifier_app.rs).
            slack_app: greenlight_shared::slack::SlackApp::new(
                greenlight_shared::http::Http::new(),
                "http://127.0.0.1:9/api",
            ),
            default_webhook: default_webhook.map(|r| SecretRef::parse(r).unwrap()),
            region: "us-east-1".into(),
            webhooks: Default::default(),
        };
        Self {
            deps,
            calls,
            codedeploy,
            ecs,
            ledger,
            secrets,
            slack,
            url,
        }
    }

    async fn run(&self, event: CodeDeployEvent) -> Result<Notified, NotifyError> {
        handle(
            &self.deps,
            event,
            &Invocation::for_test("req-1", Duration::from_secs(30)),
        )
        .await
    }

    fn add_deployment(&self, deployment: Deployment) {
        self.codedeploy
            .deployments
            .lock()
            .unwrap()
            .insert(deployment.id.clone(), deployment);
    }

    /// The only message posted.
    /// CodeDeploy knows the deployment, but nothing of a release (no Greenlight description).
    fn knows_the_deployment(&self, application: &str, group: &str) {
        self.codedeploy.deployments.lock().unwrap().insert(
            DEPLOYMENT.into(),
            Deployment {
                id: DEPLOYMENT.into(),
                application: application.into(),
                deployment_group: group.into(),
                status: "InProgress".into(),
                creator: Some("user".into()),
                ..Default::default()
            },
        );
    }

    fn posted(&self) -> Value {
        let bodies = self.slack.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:#?}");
        bodies[0].clone()
    }
}

/// The sample event of `state` (SUCCESS's envelope for states without a sample), for `id`.
fn sample_of(id: &str, state: &str) -> Value {
    let name = match state {
        "START" => "codedeploy-start",
        "READY" => "codedeploy-ready",
        "FAILURE" => "codedeploy-failure",
        "STOP" => "codedeploy-stop",
        _ => "codedeploy-success",
    };
    let mut e = sample(name);
    e["detail"]["deploymentId"] = json!(id);
    e["detail"]["state"] = json!(state);
    e
}

fn event_for(id: &str, state: &str) -> CodeDeployEvent {
    serde_json::from_value(sample_of(id, state)).unwrap()
}

fn event(state: &str) -> CodeDeployEvent {
    event_for(DEPLOYMENT, state)
}

fn event_of_app(application: &str, group: &str, state: &str) -> CodeDeployEvent {
    let mut e = sample_of(DEPLOYMENT, state);
    e["detail"]["application"] = json!(application);
    e["detail"]["deploymentGroup"] = json!(group);
    serde_json::from_value(e).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn task_definition(n: u8) -> String {
    format!(
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:{}",
        7 + n
    )
}

/// A deployment Greenlight started for release `n` (`version`), which took 4m12s.
fn greenlight_deployment(id: &str, version: &str, n: u8, status: &str) -> Deployment {
    Deployment {
        id: id.into(),
        application: "web1".into(),
        deployment_group: "web1-bluegreen".into(),
        status: status.into(),
        description: Some(
            ReleaseDescription {
                app: "web1".into(),
                version: version.into(),
                digest: digest(n),
                request: None,
            }
            .to_string(),
        ),
        creator: Some("user".into()),
        created_at: Some(at("2026-11-25T10:12:03Z")),
        completed_at: Some(at("2026-11-25T10:16:15Z")),
        appspec: Some(
            AppSpec {
                task_definition_arn: task_definition(n),
                container_name: "web1".into(),
                container_port: 3000,
                hooks: vec![(
                    "AfterAllowTestTraffic".into(),
                    "CodeDeployHook_greenlight".into(),
                )],
            }
            .to_json(),
        ),
        ..Deployment::default()
    }
}

fn record(n: u8, version: &str, status: ReleaseStatus) -> ReleaseRecord {
    ReleaseRecord {
        app: "web1".into(),
        digest: digest(n),
        version: version.into(),
        image: format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@{}",
            digest(n)
        ),
        pushed_at: at("2026-11-25T10:00:00Z") + chrono::Duration::minutes(i64::from(n)),
        status,
        owner: None,
        lease_until: None,
        task_definition_arn: Some(task_definition(n)),
        deployment_id: None,
        superseded_by: None,
        hook_reason: None,
        hook_reported_execution: None,
        provenance: Default::default(),
        request: None,
    }
}

/// v1.4.2 (release 2) served production; v1.4.3 (release 3) failed its health hook and
/// CodeDeploy rolled it back with `ROLLBACK`.
fn rolled_back_release(w: &World) {
    w.ledger
        .insert(record(2, "v1.4.2", ReleaseStatus::Succeeded));
    w.ledger.insert(ReleaseRecord {
        hook_reason: Some("green target group web1-green: 0 of 2 targets healthy".into()),
        ..record(3, "v1.4.3", ReleaseStatus::Failed)
    });
    w.add_deployment(Deployment {
        rollback_deployment_id: Some(ROLLBACK.into()),
        error_code: Some("HOOK_EXECUTION_FAILURE".into()),
        error_message: Some(
            "The deployment failed because the AfterAllowTestTraffic hook failed".into(),
        ),
        ..greenlight_deployment(DEPLOYMENT, "v1.4.3", 3, "Failed")
    });
    w.add_deployment(Deployment {
        id: ROLLBACK.into(),
        description: None,
        creator: Some("codeDeployRollback".into()),
        rolls_back_deployment_id: Some(DEPLOYMENT.into()),
        created_at: Some(at("2026-11-25T10:16:20Z")),
        completed_at: Some(at("2026-11-25T10:17:05Z")),
        ..greenlight_deployment(ROLLBACK, "v1.4.2", 2, "Succeeded")
    });
}

fn blocks(body: &Value) -> &Vec<Value> {
    body["attachments"][0]["blocks"].as_array().unwrap()
}

fn lead(body: &Value) -> &str {
    blocks(body)[0]["text"]["text"].as_str().unwrap()
}

fn colour(body: &Value) -> &str {
    body["attachments"][0]["color"].as_str().unwrap()
}

/// The value of the field titled `title`, across all sections.
fn field(body: &Value, title: &str) -> Option<String> {
    let prefix = format!("*{title}*\n");
    blocks(body)
        .iter()
        .filter_map(|b| b["fields"].as_array())
        .flatten()
        .filter_map(|f| f["text"].as_str())
        .find_map(|t| t.strip_prefix(prefix.as_str()).map(str::to_string))
}

fn posted_headline(out: &Notified) -> &str {
    match out {
        Notified::Posted { headline, .. } => headline.as_str(),
        other => panic!("expected a post, got {other:?}"),
    }
}

// ---- delivery ------------------------------------------------------------------------------

#[tokio::test]
async fn success_is_posted_once_with_headline_fields_and_console_link() {
    let w = World::new(Answer::OK).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.2", 1, "Succeeded"));

    let out = w.run(event("SUCCESS")).await.unwrap();

    let headline = ":white_check_mark: web1 v1.4.2 deployed to production in 4m12s";
    assert_eq!(
        out,
        Notified::Posted {
            app: "web1".into(),
            state: "SUCCESS".into(),
            headline: headline.into(),
            attempts: 1
        }
    );
    let body = w.posted();
    assert_eq!(body["text"], json!(headline));
    assert_eq!(lead(&body), headline);
    assert_eq!(body["channel"], json!("#deploys"));
    assert_eq!(colour(&body), "#2EB67D");
    assert_eq!(field(&body, "App").as_deref(), Some("web1"));
    assert_eq!(
        field(&body, "Environment").as_deref(),
        Some("production (web1/web1-bluegreen)")
    );
    assert_eq!(field(&body, "Version").as_deref(), Some("v1.4.2"));
    assert_eq!(
        field(&body, "Image digest").as_deref(),
        Some("111111111111")
    );
    assert_eq!(field(&body, "Started by").as_deref(), Some("push"));
    assert_eq!(field(&body, "Duration").as_deref(), Some("4m12s"));
    assert_eq!(field(&body, "Task definition").as_deref(), Some("web1:8"));
    assert_eq!(field(&body, "Deployment").as_deref(), Some(DEPLOYMENT));
    assert_eq!(field(&body, "Reason"), None);
    assert_eq!(
        blocks(&body).last().unwrap()["elements"][0]["text"],
        json!("<https://us-east-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-7GQK2M4XB?region=us-east-1|View deployment d-7GQK2M4XB in the AWS console>")
    );
    assert_eq!(w.calls.count("GetDeployment"), 1);
}

#[tokio::test]
async fn rate_limited_post_is_retried_after_retry_after() {
    let w = World::with(
        vec![Answer {
            status: 429,
            retry_after: Some(1),
        }],
        Answer::OK,
        true,
        None,
    )
    .await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.2", 1, "InProgress"));

    let started = Instant::now();
    let out = w.run(event("START")).await.unwrap();

    assert!(
        matches!(out, Notified::Posted { attempts: 2, .. }),
        "{out:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    let bodies = w.slack.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1], "the same message is sent again");
    assert_eq!(
        bodies[1]["text"],
        json!(":rocket: web1 v1.4.2 deploying to production")
    );
}

#[tokio::test]
async fn slack_down_fails_the_invocation_before_its_deadline() {
    let w = World::new(Answer::status(500)).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.3", 3, "Failed"));

    let started = Instant::now();
    let err = handle(
        &w.deps,
        event("FAILURE"),
        &Invocation::for_test("req-1", Duration::from_secs(4)),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, NotifyError::SlackGaveUp { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(w.slack.bodies().len() >= 2, "5xx answers are retried");
    let text = err.to_string();
    assert!(
        text.starts_with("the FAILURE message of app `web1` was not posted: "),
        "{text}"
    );
    assert!(
        !text.contains(&w.url) && !text.contains("127.0.0.1"),
        "the webhook URL must not leak: {text}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "SlackUnavailable"
    );
}

#[tokio::test]
async fn refused_message_fails_at_once_without_retrying() {
    let w = World::new(Answer::status(400)).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.2", 1, "Succeeded"));

    let err = w.run(event("SUCCESS")).await.unwrap_err();

    assert!(matches!(err, NotifyError::SlackRejected { .. }), "{err:?}");
    assert_eq!(w.slack.bodies().len(), 1, "exactly one attempt");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("invalid_payload"),
        "{text}"
    );
    assert!(
        !text.contains(&w.url),
        "the webhook URL must not leak: {text}"
    );
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "SlackRejected"
    );
}

#[tokio::test]
async fn every_sample_event_posts_its_headline() {
    let w = World::new(Answer::OK).await;
    w.knows_the_deployment("web1", "web1-bluegreen");
    // The samples' deployment carries no release of Greenlight's: a person started it.
    let outside = "web1: a deployment outside Greenlight (d-7GQK2M4XB)";
    let expected = [
        (
            "codedeploy-start",
            format!(":information_source: {outside} started on production"),
        ),
        (
            "codedeploy-ready",
            format!(":information_source: {outside} is ready on green"),
        ),
        (
            "codedeploy-success",
            format!(":information_source: {outside} finished on production; not a release"),
        ),
        (
            "codedeploy-failure",
            format!(":x: {outside} FAILED on production"),
        ),
        (
            "codedeploy-stop",
            format!(":black_square_for_stop: {outside} STOPPED on production"),
        ),
    ];
    for (name, headline) in &expected {
        let event: CodeDeployEvent = serde_json::from_value(sample(name)).unwrap();
        let out = w.run(event).await.unwrap();
        assert_eq!(posted_headline(&out), headline, "{name}");
    }
    let texts: Vec<Value> = w.slack.bodies().iter().map(|b| b["text"].clone()).collect();
    assert_eq!(
        texts,
        vec![
            json!(expected[0].1),
            json!(expected[1].1),
            json!(expected[2].1),
            json!(format!("<!here> {}", expected[3].1)),
            json!(format!("<!here> {}", expected[4].1)),
        ]
    );
}

// ---- what is posted ------------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_unmanaged_application_is_ignored_with_a_short_reason() {
    // Every application's events reach the notifier: a name of any size must not become a
    // reason (the invocation's response) or a log line of that size.
    let w = World::new(Answer::OK).await;
    let huge = "a".repeat(500_000);
    let out = w.run(event_of_app(&huge, &huge, &huge)).await.unwrap();
    let Notified::Ignored { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.len() < 300, "a reason of {} bytes", reason.len());
    assert!(w.slack.bodies().is_empty());
}

#[tokio::test]
async fn unmanaged_application_is_ignored_and_posts_nothing() {
    let w = World::new(Answer::OK).await;

    let out = w
        .run(event_of_app("billing", "billing-bluegreen", "FAILURE"))
        .await
        .unwrap();

    assert_eq!(
        out,
        Notified::Ignored {
            reason: "deployment group billing/billing-bluegreen is not managed".into()
        }
    );
    assert!(w.slack.bodies().is_empty());
    assert_eq!(w.calls.total(), 0);
    assert_eq!(w.secrets.reads.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreadable_deployment_fails_the_invocation_so_that_it_is_retried() {
    let w = World::new(Answer::OK).await; // d-7GQK2M4XB is unknown to CodeDeploy
    let mut fresh = event("SUCCESS");
    fresh.time = chrono::Utc::now();

    let err = w.run(fresh).await.unwrap_err();

    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "DeploymentUnreadable"
    );
    assert!(w.slack.bodies().is_empty(), "nothing posted");
    assert_eq!(w.calls.count("GetDeployment"), 1);
}

#[tokio::test]
async fn unreadable_deployment_on_the_last_attempt_is_announced_without_a_success_headline() {
    let w = World::new(Answer::OK).await;
    let mut late = event("SUCCESS");
    late.time = chrono::Utc::now() - chrono::TimeDelta::minutes(3);

    let out = w.run(late).await.unwrap();

    // It may have been a rollback: never a success headline without the facts.
    let headline = posted_headline(&out);
    assert_eq!(
        headline,
        ":grey_question: web1 deployment d-7GQK2M4XB SUCCEEDED on production; details unavailable"
    );
    let body = w.posted();
    assert!(!body.to_string().contains("white_check_mark"), "{body}");
    assert_eq!(colour(&body), "#8D8D8D");
    assert_eq!(field(&body, "Deployment").as_deref(), Some(DEPLOYMENT));
}

#[tokio::test]
async fn rollback_success_is_announced_as_rolled_back_not_deployed() {
    let w = World::new(Answer::OK).await;
    rolled_back_release(&w);

    let out = w.run(event_for(ROLLBACK, "SUCCESS")).await.unwrap();

    let headline = ":leftwards_arrow_with_hook: web1 rolled back to v1.4.2 on production";
    assert_eq!(posted_headline(&out), headline);
    let body = w.posted();
    assert!(
        !body["text"].as_str().unwrap().contains("deployed"),
        "{body}"
    );
    assert_eq!(body["text"], json!(format!("<!here> {headline}")));
    assert_eq!(colour(&body), "#ECB22E");
    assert_eq!(field(&body, "Version").as_deref(), Some("v1.4.2"));
    assert_eq!(field(&body, "Started by").as_deref(), Some("rollback"));
    assert_eq!(field(&body, "Task definition").as_deref(), Some("web1:9"));
    assert_eq!(
        field(&body, "Rollback").as_deref(),
        Some("rolls back d-7GQK2M4XB (v1.4.3)")
    );
    assert_eq!(
        field(&body, "Reason").as_deref(),
        Some("green target group web1-green: 0 of 2 targets healthy")
    );
    assert_eq!(field(&body, "Duration").as_deref(), Some("45s"));
    // The rollback, then the deployment it rolls back.
    assert_eq!(w.calls.count("GetDeployment"), 2);
}

#[tokio::test]
async fn failure_of_a_rolled_back_release_names_the_version_serving_now_and_why() {
    let w = World::new(Answer::OK).await;
    rolled_back_release(&w);

    let out = w.run(event("FAILURE")).await.unwrap();

    assert_eq!(
        posted_headline(&out),
        ":x: web1 v1.4.3 FAILED on production — rolled back to v1.4.2"
    );
    let body = w.posted();
    assert_eq!(
        field(&body, "Reason").as_deref(),
        Some("green target group web1-green: 0 of 2 targets healthy")
    );
    assert_eq!(
        field(&body, "Error").as_deref(),
        Some("HOOK_EXECUTION_FAILURE: The deployment failed because the AfterAllowTestTraffic hook failed")
    );
    assert_eq!(
        field(&body, "Rollback").as_deref(),
        Some("rolled back by d-ROLLBACK1")
    );
    assert_eq!(field(&body, "Version").as_deref(), Some("v1.4.3"));
}

#[tokio::test]
async fn without_a_ledger_a_rolled_back_release_names_the_previous_version() {
    let w = World::with(vec![], Answer::OK, false, None).await;
    rolled_back_release(&w);

    let out = w.run(event("STOP")).await.unwrap();

    assert_eq!(posted_headline(&out), ":black_square_for_stop: web1 v1.4.3 STOPPED on production — rolled back to the previous version");
    assert_eq!(field(&w.posted(), "Reason"), None);
}

#[tokio::test]
async fn superseded_release_is_announced_once_in_the_start_of_the_newer_one() {
    let w = World::new(Answer::OK).await;
    w.ledger.insert(ReleaseRecord {
        superseded_by: Some(digest(2)),
        ..record(1, "v2.0.0", ReleaseStatus::Superseded)
    });
    w.ledger
        .insert(record(2, "v2.0.1", ReleaseStatus::Deploying));
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v2.0.1", 2, "Succeeded"));

    let start = w.run(event("START")).await.unwrap();
    let success = w.run(event("SUCCESS")).await.unwrap();

    assert_eq!(
        posted_headline(&start),
        ":rocket: web1 v2.0.1 deploying to production"
    );
    assert_eq!(
        posted_headline(&success),
        ":white_check_mark: web1 v2.0.1 deployed to production in 4m12s"
    );
    let bodies = w.slack.bodies();
    let skipped: Vec<&str> = blocks(&bodies[0])
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .filter(|t| t.contains("Skipped"))
        .collect();
    assert_eq!(
        skipped,
        vec![":fast_forward: Skipped v2.0.0 in favour of v2.0.1"]
    );
    assert!(
        !bodies[1].to_string().contains("Skipped"),
        "announced once: {}",
        bodies[1]
    );
}

#[tokio::test]
async fn unknown_state_is_reported_as_is() {
    let w = World::new(Answer::OK).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.3", 3, "InProgress"));

    let out = w.run(event("QUEUED_FOR_MARS")).await.unwrap();

    assert_eq!(
        posted_headline(&out),
        ":grey_question: web1 v1.4.3 deployment is now QUEUED_FOR_MARS"
    );
    assert_eq!(colour(&w.posted()), "#8D8D8D");
}

// ---- webhooks ------------------------------------------------------------------------------

#[tokio::test]
async fn app_without_a_webhook_and_no_default_is_a_clear_error() {
    let w = World::new(Answer::OK).await;

    let err = w
        .run(event_of_app("web2", "web2-bluegreen", "START"))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, NotifyError::NoWebhook { app } if app == "web2"),
        "{err:?}"
    );
    assert!(w.slack.bodies().is_empty());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "NoSlackWebhook"
    );
}

#[tokio::test]
async fn default_webhook_serves_apps_without_one_and_is_read_once_per_cold_start() {
    let w = World::with(vec![], Answer::OK, true, Some("env:TEST_WEBHOOK")).await;
    w.knows_the_deployment("web2", "web2-bluegreen");

    let start = w
        .run(event_of_app("web2", "web2-bluegreen", "START"))
        .await
        .unwrap();
    let success = w
        .run(event_of_app("web2", "web2-bluegreen", "SUCCESS"))
        .await
        .unwrap();

    assert_eq!(
        posted_headline(&start),
        ":information_source: web2: a deployment outside Greenlight (d-7GQK2M4XB) started on staging"
    );
    assert_eq!(
        posted_headline(&success),
        ":information_source: web2: a deployment outside Greenlight (d-7GQK2M4XB) finished on staging; not a release"
    );
    let bodies = w.slack.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].get("channel"), None, "web2 names no channel");
    assert_eq!(
        field(&bodies[0], "Environment").as_deref(),
        Some("staging (web2/web2-bluegreen)")
    );
    assert_eq!(w.secrets.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreadable_webhook_fails_without_posting() {
    let w = World::with(vec![], Answer::OK, true, Some("env:NOT_SET_ANYWHERE")).await;

    let err = w
        .run(event_of_app("web2", "web2-bluegreen", "FAILURE"))
        .await
        .unwrap_err();

    assert!(matches!(err, NotifyError::WebhookUnreadable(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot read secret env:NOT_SET_ANYWHERE: no such secret"
    );
    assert!(w.slack.bodies().is_empty());
}

#[tokio::test]
async fn redelivered_event_is_announced_once() {
    let w = World::new(Answer::OK).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.2", 1, "Succeeded"));

    assert!(matches!(
        w.run(event("SUCCESS")).await.unwrap(),
        Notified::Posted { .. }
    ));
    let again = w.run(event("SUCCESS")).await.unwrap();

    assert_eq!(
        again,
        Notified::Ignored {
            reason: format!("SUCCESS of {DEPLOYMENT} was already announced")
        }
    );
    assert_eq!(w.slack.bodies().len(), 1);
    assert_eq!(
        w.calls.count("GetDeployment"),
        1,
        "a duplicate costs no AWS call"
    );
    // Other states of the same deployment are their own announcements.
    assert!(matches!(
        w.run(event("READY")).await.unwrap(),
        Notified::Posted { .. }
    ));
}

#[tokio::test]
async fn failed_announcement_is_posted_by_the_retried_event() {
    let w = World::with(vec![Answer::status(400)], Answer::OK, true, None).await;
    w.add_deployment(greenlight_deployment(DEPLOYMENT, "v1.4.2", 1, "Succeeded"));

    assert!(w.run(event("SUCCESS")).await.is_err());
    let retried = w.run(event("SUCCESS")).await.unwrap();

    assert!(matches!(retried, Notified::Posted { .. }), "{retried:?}");
    assert_eq!(
        w.slack.bodies().len(),
        2,
        "one refused attempt, then the message"
    );
    let marker = format!("{DEPLOYMENT}/SUCCESS");
    assert_eq!(w.ledger.notices.lock().unwrap().get(&marker), Some(&true));
}

#[tokio::test]
async fn an_oversized_deployment_id_is_ignored_without_a_call_a_marker_or_a_post() {
    let w = World::new(Answer::OK).await;
    let mut e = sample_of(&"D".repeat(500_000), "FAILURE");
    e["detail"]["deploymentId"] = json!("d-".to_string() + &"D".repeat(500_000));
    let out = w.run(serde_json::from_value(e).unwrap()).await.unwrap();
    let Notified::Ignored { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.len() < 100, "{} bytes", reason.len());
    assert!(
        reason.ends_with("is not a CodeDeploy deployment id"),
        "{reason}"
    );
    assert_eq!(w.calls.total(), 0);
    assert!(w.slack.bodies().is_empty());
}

// ---- native ECS blue/green ----------------------------------------------------------------

const WEB3_TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web3:12";

fn service_deployment(n: u32, status: &str, reason: Option<&str>) -> ServiceDeploymentBrief {
    let base = "arn:aws:ecs:us-east-1:123456789012";
    ServiceDeploymentBrief {
        arn: format!("{base}:service-deployment/default/web3/dep{n}"),
        status: status.into(),
        status_reason: reason.map(str::to_string),
        target_revision: Some(format!("{base}:service-revision/default/web3/{n}")),
        created_at: Some(Utc::now() - chrono::Duration::minutes(i64::from(10 - n))),
    }
}

impl World {
    /// web3's service runs a native deployment of v2.0.0 (release 5), tagged by Greenlight.
    fn native_release(&self, deployments: Vec<ServiceDeploymentBrief>) {
        *self.ecs.tags.lock().unwrap() = [
            ("greenlight:app", "web3"),
            ("greenlight:version", "v2.0.0"),
            ("greenlight:digest", digest(5).as_str()),
        ]
        .iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build())
        .collect();
        *self.ecs.service_deployments.lock().unwrap() = deployments
            .into_iter()
            .map(|d| (d, WEB3_TD.to_string()))
            .collect();
    }

    fn set_native_status(&self, n: u32, status: &str, reason: Option<&str>) {
        for (d, _) in self.ecs.service_deployments.lock().unwrap().iter_mut() {
            if d.arn.ends_with(&format!("/dep{n}")) {
                d.status = status.into();
                d.status_reason = reason.map(str::to_string);
            }
        }
    }

    async fn run_native(&self, name: &str, service: &str) -> Result<Notified, NotifyError> {
        let mut event = sample("ecs-deployment-state-change-completed");
        event["detail"]["eventName"] = json!(name);
        event["time"] = json!(Utc::now());
        event["resources"] = json!([format!(
            "arn:aws:ecs:us-east-1:123456789012:service/default/{service}"
        )]);
        let event = greenlight_notifier::parse_event(event).unwrap();
        greenlight_notifier::notify(
            &self.deps,
            event,
            &Invocation::for_test("req-1", Duration::from_secs(30)),
        )
        .await
    }
}

#[tokio::test]
async fn a_native_deployment_is_announced_started_then_succeeded_each_once() {
    let w = World::new(Answer::OK).await;
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);

    let out = w
        .run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    assert_eq!(
        posted_headline(&out),
        ":rocket: web3 v2.0.0 deploying to production"
    );
    let body = w.posted();
    assert_eq!(
        field(&body, "Environment").as_deref(),
        Some("production (default/web3)")
    );
    assert_eq!(field(&body, "Task definition").as_deref(), Some("web3:12"));
    assert_eq!(
        blocks(&body).last().unwrap()["elements"][0]["text"],
        json!("<https://us-east-1.console.aws.amazon.com/ecs/v2/clusters/default/services/web3/deployments?region=us-east-1|View the deployments of web3 in the AWS console>")
    );
    // A duplicate delivery, and an event that changes nothing, post nothing, and cost one
    // listing: the release is read only for a state not announced yet.
    let reads = |w: &World| {
        (
            w.calls.count("ListServiceDeployments"),
            w.calls.count("DescribeServiceRevisions") + w.calls.count("ListTagsForResource"),
        )
    };
    let (listed, read) = reads(&w);
    assert_eq!(
        read, 2,
        "one revision and one tag read for the announcement"
    );
    let again = w
        .run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    assert!(matches!(again, Notified::Ignored { .. }), "{again:?}");
    assert_eq!(w.slack.bodies().len(), 1);
    assert_eq!(reads(&w), (listed + 1, read));

    w.set_native_status(1, "SUCCESSFUL", None);
    let out = w
        .run_native("SERVICE_DEPLOYMENT_COMPLETED", "web3")
        .await
        .unwrap();
    assert!(
        posted_headline(&out)
            .starts_with(":white_check_mark: web3 v2.0.0 deployed to production in "),
        "{out:?}"
    );
    assert_eq!(w.slack.bodies().len(), 2);
}

#[tokio::test]
async fn a_native_rollback_is_announced_as_a_failure_with_ecs_reason_never_a_success() {
    let w = World::new(Answer::OK).await;
    let mut serving = record(4, "v1.9.0", ReleaseStatus::Succeeded);
    serving.app = "web3".into();
    w.ledger.insert(serving);
    let reason = "The deployment was rolled back: the POST_TEST_TRAFFIC_SHIFT hook returned FAILED";
    w.native_release(vec![service_deployment(
        1,
        "ROLLBACK_SUCCESSFUL",
        Some(reason),
    )]);
    // ECS's words for the end of a rollback are not documented: whatever the event says,
    // the deployment's status decides.
    let out = w
        .run_native("SERVICE_DEPLOYMENT_COMPLETED", "web3")
        .await
        .unwrap();
    let headline = posted_headline(&out);
    assert_eq!(
        headline,
        ":x: web3 v2.0.0 FAILED on production — rolled back to v1.9.0"
    );
    let body = w.posted();
    assert_eq!(colour(&body), "#E01E5A");
    assert!(lead(&body).starts_with("<!here> "), "{}", lead(&body));
    assert_eq!(field(&body, "Error").as_deref(), Some(reason));
    assert!(!headline.contains("deployed"));
}

#[tokio::test]
async fn a_canary_says_where_traffic_stands_and_an_alarm_rollback_says_which_alarm() {
    use greenlight_shared::rollout::{Position, RollbackSignals, Rollout, Strategy};
    let w = World::new(Answer::OK).await;
    *w.ecs.rollout.lock().unwrap() = Some(Rollout {
        strategy: Strategy::Canary {
            percent: 5.0,
            bake_minutes: 10,
        },
        bake_minutes: 15,
        alarms: vec!["web3-5xx".into()],
        alarms_roll_back: true,
        ..Rollout::default()
    });
    *w.ecs.position.lock().unwrap() = Position {
        stage: Some("PRODUCTION_TRAFFIC_SHIFT".into()),
        weight: Some(5.0),
        since: chrono::DateTime::parse_from_rfc3339("2026-12-05T14:22:00Z")
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    };
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);
    w.run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    assert_eq!(
        field(&w.posted(), "Traffic").as_deref(),
        Some("canary 5% until 14:32 UTC, then 100% (canary 5% for 10 min, then 100%; bake 15 min; alarms web3-5xx (roll back))")
    );

    *w.ecs.rollback_signals.lock().unwrap() = RollbackSignals {
        reason: Some("CloudWatch alarm web3-5xx is in ALARM".into()),
        triggered_alarms: vec!["web3-5xx".into()],
        circuit_breaker: None,
    };
    w.set_native_status(1, "ROLLBACK_SUCCESSFUL", Some("rolled back"));
    let out = w
        .run_native("SERVICE_DEPLOYMENT_FAILED", "web3")
        .await
        .unwrap();
    assert!(
        posted_headline(&out).starts_with(":x: web3 v2.0.0 FAILED"),
        "{out:?}"
    );
    let body = w.slack.bodies().last().cloned().unwrap();
    assert_eq!(
        field(&body, "Rolled back because").as_deref(),
        Some("alarm web3-5xx went to ALARM (CloudWatch alarm web3-5xx is in ALARM)")
    );
    assert_eq!(field(&body, "Traffic"), None);
}

#[tokio::test]
async fn a_lost_event_is_made_up_by_the_next_one_of_the_service() {
    let w = World::new(Answer::OK).await;
    // dep1 ended while its COMPLETED event was lost; dep2 (the next release) started.
    w.native_release(vec![
        service_deployment(1, "SUCCESSFUL", None),
        service_deployment(2, "IN_PROGRESS", None),
    ]);
    w.run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    let heads: Vec<String> = w
        .slack
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with(":white_check_mark:"),
        "oldest first: {heads:?}"
    );
    assert!(heads[1].starts_with(":rocket:"), "{heads:?}");
}

#[tokio::test]
async fn events_of_services_no_app_deploys_post_nothing() {
    let w = World::new(Answer::OK).await;
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);
    let out = w
        .run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "billing")
        .await
        .unwrap();
    assert!(matches!(out, Notified::Ignored { .. }), "{out:?}");
    assert!(w.slack.bodies().is_empty());
}

#[tokio::test]
async fn a_refused_announcement_of_a_native_state_is_posted_by_the_retried_event() {
    let w = World::with(vec![Answer::status(400)], Answer::OK, true, None).await;
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);
    let err = w
        .run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::SlackRejected { .. }), "{err}");
    let out = w
        .run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    assert!(matches!(out, Notified::Posted { .. }), "{out:?}");
    assert_eq!(w.slack.bodies().len(), 2);
}

#[tokio::test]
async fn an_end_ecs_announces_before_its_deployment_reads_ended_is_retried_then_let_go() {
    let w = World::new(Answer::OK).await;
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);
    w.run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    // COMPLETED while ECS still lists the deployment as running: retried, nothing posted.
    let err = w
        .run_native("SERVICE_DEPLOYMENT_COMPLETED", "web3")
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::NotEndedYet { .. }), "{err}");
    // On the last attempt (an old event) it is let go rather than failed for good.
    let mut old = sample("ecs-deployment-state-change-completed");
    old["resources"] = json!(["arn:aws:ecs:us-east-1:123456789012:service/default/web3"]);
    old["time"] = json!(Utc::now() - chrono::Duration::minutes(5));
    let out = greenlight_notifier::notify(
        &w.deps,
        greenlight_notifier::parse_event(old).unwrap(),
        &Invocation::for_test("req-9", Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert!(matches!(out, Notified::Ignored { .. }), "{out:?}");
    assert_eq!(w.slack.bodies().len(), 1);
}

#[tokio::test]
async fn a_rollback_that_fails_is_announced_after_the_failure() {
    let w = World::new(Answer::OK).await;
    w.native_release(vec![service_deployment(
        1,
        "ROLLBACK_IN_PROGRESS",
        Some("hook failed"),
    )]);
    w.run_native("SERVICE_DEPLOYMENT_IN_PROGRESS", "web3")
        .await
        .unwrap();
    w.set_native_status(1, "ROLLBACK_FAILED", Some("blue could not start"));
    let out = w
        .run_native("SERVICE_DEPLOYMENT_FAILED", "web3")
        .await
        .unwrap();
    assert!(matches!(out, Notified::Posted { .. }), "{out:?}");
    let bodies = w.slack.bodies();
    assert_eq!(bodies.len(), 2);
    let last = &bodies[1];
    assert!(
        lead(last).contains("web3 v2.0.0 FAILED on production"),
        "{}",
        lead(last)
    );
    assert!(!lead(last).contains("rolled back to"), "{}", lead(last));
    assert_eq!(
        field(last, "Error").as_deref(),
        Some("ECS could not roll back: blue could not start")
    );
}

#[tokio::test]
async fn an_ecs_event_cannot_steer_the_console_link_or_name_an_invalid_service() {
    let w = World::new(Answer::OK).await;
    w.native_release(vec![service_deployment(1, "IN_PROGRESS", None)]);
    let mut forged = sample("ecs-deployment-state-change-in-progress");
    forged["resources"] = json!(["arn:aws:ecs:us-east-1:123456789012:service/default/web3"]);
    forged["region"] = json!("evil.example|click me>");
    greenlight_notifier::notify(
        &w.deps,
        greenlight_notifier::parse_event(forged).unwrap(),
        &Invocation::for_test("req-1", Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let text = w.posted().to_string();
    assert!(!text.contains("evil"), "{text}");
    assert!(
        text.contains("https://us-east-1.console.aws.amazon.com/ecs/"),
        "{text}"
    );

    let calls = w.calls.total();
    for service in ["web3|x", &"w".repeat(256), ""] {
        let out = w
            .run_native("SERVICE_DEPLOYMENT_COMPLETED", service)
            .await
            .unwrap();
        assert!(matches!(out, Notified::Ignored { .. }), "{out:?}");
    }
    assert_eq!(
        w.calls.total(),
        calls,
        "no AWS call for an invalid service name"
    );
}

impl World {
    /// web3's service was created, or updated by hand: the deployment that ends deploys a
    /// revision without release tags.
    async fn outside_deployment_ends(&self) -> Notified {
        *self.ecs.service_deployments.lock().unwrap() = vec![(
            service_deployment(1, "SUCCESSFUL", None),
            WEB3_TD.to_string(),
        )];
        self.run_native("SERVICE_DEPLOYMENT_COMPLETED", "web3")
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_deployment_greenlight_did_not_start_is_said_so_never_as_a_release_success() {
    let w = World::new(Answer::OK).await;
    let out = w.outside_deployment_ends().await;
    let headline = posted_headline(&out);
    assert_eq!(
        headline,
        ":information_source: web3: a deployment outside Greenlight (web3:12) finished on production; not a release"
    );
    assert!(!headline.contains("white_check_mark") && !headline.contains("deployed to"));
    assert_eq!(colour(&w.posted()), "#8D8D8D");
}

#[tokio::test]
async fn the_config_can_keep_deployments_outside_greenlight_out_of_slack() {
    let mut w = World::new(Answer::OK).await;
    w.deps.config = Config::parse(&CONFIG.replace(
        "[apps.web3.slack]\n",
        "[apps.web3.slack]\nannounce_outside = false\n",
    ))
    .unwrap();
    let out = w.outside_deployment_ends().await;
    assert!(matches!(out, Notified::Ignored { .. }), "{out:?}");
    assert!(w.slack.bodies().is_empty());
    // A release of Greenlight's is still announced.
    w.native_release(vec![service_deployment(2, "SUCCESSFUL", None)]);
    let out = w
        .run_native("SERVICE_DEPLOYMENT_COMPLETED", "web3")
        .await
        .unwrap();
    assert!(
        posted_headline(&out).starts_with(":white_check_mark: web3 v2.0.0 deployed"),
        "{out:?}"
    );
}
