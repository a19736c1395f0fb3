//! Slack app mode: the notifier keeps one living message per release run, against the Slack
//! Web API stand-in, with the in-memory ledger and ECS (native deployments).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use greenlight_notifier::{notify, parse_event, Deps, Notified, NotifyError, SecretSource};
use greenlight_shared::aws::ecs::ServiceDeploymentBrief;
use greenlight_shared::fakes::{digest, sample_event, Calls, FakeCodeDeploy, FakeEcs, FakeLedger};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, NoticeLedger, ReleaseRecord, ReleaseStatus};
use greenlight_shared::secrets::{Secret, SecretError, SecretRef};
use greenlight_shared::slack::{SlackApp, SlackPoster};
use greenlight_shared::Config;
use greenlight_tests::slack_api::{SlackApiStandIn, SlackFault};
use serde_json::json;

const TOKEN: &str = "xoxb-1111-2222-secrettoken";
const CHANNEL: &str = "C0DEPLOYS";
const TD: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web3:12";

fn config(channel: &str) -> String {
    format!(
        r##"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
[apps.web1.slack]
token = "env:SLACK_TOKEN"
channel = "{channel}"
mention_on_failure = "<!here>"

[apps.web3]
repository = "web3"
cluster = "default"
service = "web3"
[apps.web3.slack]
token = "env:SLACK_TOKEN"
channel = "{channel}"
mention_on_failure = "<!here>"
"##
    )
}

struct Token(String);

#[async_trait]
impl SecretSource for Token {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        match r {
            SecretRef::Env(var) if var == "SLACK_TOKEN" => Ok(Secret::new(self.0.clone())),
            other => Err(SecretError {
                reference: other.to_string(),
                message: "no such secret".into(),
            }),
        }
    }
}

struct World {
    deps: Deps,
    codedeploy: Arc<FakeCodeDeploy>,
    ecs: Arc<FakeEcs>,
    ledger: Arc<FakeLedger>,
    slack: SlackApiStandIn,
}

impl World {
    async fn new() -> Self {
        Self::with(&config(CHANNEL), TOKEN).await
    }

    async fn with(config: &str, token: &str) -> Self {
        let slack = SlackApiStandIn::start(TOKEN, &[CHANNEL]).await;
        let calls = Arc::new(Calls::default());
        let ecs = Arc::new(FakeEcs::new(calls.clone(), "").native());
        *ecs.tags.lock().unwrap() = [
            ("greenlight:app", "web3"),
            ("greenlight:version", "v2.0.0"),
            ("greenlight:digest", digest(5).as_str()),
        ]
        .iter()
        .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(*k).value(*v).build())
        .collect();
        let ledger = Arc::new(FakeLedger::default());
        let codedeploy = Arc::new(FakeCodeDeploy::new(calls.clone()));
        let deps = Deps {
            config: Config::parse(config).unwrap(),
            codedeploy: codedeploy.clone(),
            ecs: ecs.clone(),
            ledger: Some(ledger.clone() as Arc<dyn Ledger>),
            secrets: Arc::new(Token(token.to_string())),
            slack: SlackPoster::new(greenlight_shared::http::Http::new()),
            slack_app: SlackApp::new(greenlight_shared::http::Http::new(), slack.base.clone())
                .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
            default_webhook: None,
            region: "us-east-1".into(),
            webhooks: Default::default(),
        };
        Self {
            deps,
            codedeploy,
            ecs,
            ledger,
            slack,
        }
    }

    /// web3's service has deployment 1 in `status`.
    fn deployment(&self, status: &str, reason: Option<&str>) {
        let base = "arn:aws:ecs:us-east-1:123456789012";
        *self.ecs.service_deployments.lock().unwrap() = vec![(
            ServiceDeploymentBrief {
                arn: format!("{base}:service-deployment/default/web3/dep1"),
                status: status.into(),
                status_reason: reason.map(str::to_string),
                target_revision: Some(format!("{base}:service-revision/default/web3/1")),
                created_at: Some(Utc::now() - chrono::Duration::minutes(3)),
            },
            TD.to_string(),
        )];
    }

    async fn event(&self, name: &str, request_id: &str) -> Result<Notified, NotifyError> {
        self.event_within(name, request_id, Duration::from_secs(20))
            .await
    }

    async fn event_within(
        &self,
        name: &str,
        request_id: &str,
        time: Duration,
    ) -> Result<Notified, NotifyError> {
        let mut event = sample_event("ecs-deployment-state-change-completed");
        event["detail"]["eventName"] = json!(name);
        event["time"] = json!(Utc::now());
        event["resources"] = json!(["arn:aws:ecs:us-east-1:123456789012:service/default/web3"]);
        notify(
            &self.deps,
            parse_event(event).unwrap(),
            &Invocation::for_test(request_id, time),
        )
        .await
    }

    fn channel(&self) -> Vec<greenlight_tests::slack_api::ChannelMessage> {
        self.slack.channel(CHANNEL)
    }
}

fn serving(w: &World) {
    w.ledger.insert(ReleaseRecord {
        app: "web3".into(),
        digest: digest(4),
        version: "v1.9.0".into(),
        image: String::new(),
        pushed_at: Utc::now() - chrono::Duration::hours(1),
        status: ReleaseStatus::Succeeded,
        owner: None,
        lease_until: None,
        task_definition_arn: None,
        deployment_id: None,
        superseded_by: None,
        hook_reason: None,
        hook_reported_execution: None,
        provenance: Default::default(),
        request: None,
    });
}

#[tokio::test]
async fn a_release_is_one_message_edited_to_its_end_with_the_failure_in_its_thread() {
    let w = World::new().await;
    serving(&w);
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1);
    assert_eq!(
        channel[0].text,
        ":rocket: web3 v2.0.0 deploying to production"
    );

    w.deployment(
        "ROLLBACK_SUCCESSFUL",
        Some("the POST_TEST_TRAFFIC_SHIFT hook returned FAILED"),
    );
    w.event("SERVICE_DEPLOYMENT_FAILED", "req-2").await.unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1, "{}", w.slack.render(CHANNEL));
    let message = &channel[0];
    assert_eq!(
        message.text,
        ":x: web3 v2.0.0 FAILED on production — rolled back to v1.9.0"
    );
    assert_eq!(message.edits, 1);
    assert!(
        message
            .attachments
            .to_string()
            .contains("*Engine*\\nECS blue/green"),
        "{}",
        message.attachments
    );
    // The failure's detail in the thread, sent to the channel too, with the mention.
    assert_eq!(message.replies.len(), 1, "{:?}", message.replies);
    let (reply, broadcast) = &message.replies[0];
    assert!(*broadcast);
    assert!(
        reply.starts_with("<!here> :x: web3 v2.0.0 FAILED"),
        "{reply}"
    );
    assert!(
        reply.contains("Error: the POST_TEST_TRAFFIC_SHIFT hook returned FAILED"),
        "{reply}"
    );
    // Post, its permalink (once, for people), the edit, the reply.
    assert_eq!(
        w.slack.calls(),
        [
            "chat.postMessage",
            "chat.getPermalink",
            "chat.update",
            "chat.postMessage"
        ]
    );
    let kept = w
        .ledger
        .release_message("arn:aws:ecs:us-east-1:123456789012:service-deployment/default/web3/dep1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.permalink.as_deref(),
        Some(
            format!(
                "https://greenlight-local.slack.com/archives/{CHANNEL}/p{}",
                message.ts.replace('.', "")
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn a_late_or_repeated_state_never_takes_the_message_back_from_its_end() {
    let w = World::new().await;
    w.deployment("ROLLBACK_SUCCESSFUL", Some("rolled back"));
    w.event("SERVICE_DEPLOYMENT_FAILED", "req-1").await.unwrap();
    // A late IN_PROGRESS for the same deployment (its marker lost): announced to nobody's
    // harm, the message stays FAILED.
    w.ledger.notices.lock().unwrap().clear();
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-2")
        .await
        .unwrap();
    // And the FAILED again (its marker lost too): the same edit, no new message.
    w.ledger.notices.lock().unwrap().clear();
    w.deployment("ROLLBACK_SUCCESSFUL", Some("rolled back"));
    w.event("SERVICE_DEPLOYMENT_FAILED", "req-3").await.unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1, "{}", w.slack.render(CHANNEL));
    assert!(
        channel[0].text.starts_with(":x: web3 v2.0.0 FAILED"),
        "{}",
        channel[0].text
    );
    assert!(!channel[0].text.contains("deployed"));
}

#[tokio::test]
async fn slack_faults_are_retried_and_a_deleted_message_is_posted_again() {
    let w = World::new().await;
    w.slack
        .fail_next(Some("chat.postMessage"), SlackFault::RateLimited);
    w.slack.fail_next(
        Some("chat.postMessage"),
        SlackFault::Error("ratelimited".into()),
    );
    w.slack
        .fail_next(Some("chat.postMessage"), SlackFault::ServerError);
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    let first = w.channel();
    assert_eq!(first.len(), 1);
    // Someone deletes it; the next state posts it again and carries on.
    w.slack.delete(&first[0].ts);
    w.slack
        .fail_next(Some("chat.update"), SlackFault::LostAfterActing);
    w.deployment("SUCCESSFUL", None);
    w.event("SERVICE_DEPLOYMENT_COMPLETED", "req-2")
        .await
        .unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1, "{}", w.slack.render(CHANNEL));
    assert!(
        channel[0]
            .text
            .starts_with(":white_check_mark: web3 v2.0.0 deployed to production"),
        "{}",
        channel[0].text
    );
    // Slack down for the whole invocation: it fails (EventBridge retries), the message kept.
    w.ledger.notices.lock().unwrap().clear();
    w.slack.set_down(true);
    let down = w
        .event_within(
            "SERVICE_DEPLOYMENT_COMPLETED",
            "req-3",
            Duration::from_secs(4),
        )
        .await;
    w.slack.set_down(false);
    assert!(
        matches!(&down, Err(NotifyError::SlackApp { .. })),
        "{down:?}"
    );
    assert_eq!(w.channel().len(), 1);
}

#[tokio::test]
async fn a_channel_or_token_slack_refuses_is_one_error_naming_the_key_never_the_token() {
    let w = World::with(&config("C0ELSEWHERE"), TOKEN).await;
    w.deployment("IN_PROGRESS", None);
    let err = w
        .event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("apps.web3.slack.channel"), "{text}");
    assert!(text.contains("channel_not_found"), "{text}");
    assert!(!text.contains(TOKEN));

    let w = World::with(&config(CHANNEL), "xoxb-revoked-secret").await;
    w.deployment("IN_PROGRESS", None);
    let err = w
        .event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("apps.web3.slack.token") && text.contains("invalid_auth"),
        "{text}"
    );
    assert!(!text.contains("xoxb-revoked-secret"), "{text}");
    assert!(w.channel().is_empty());
}

#[tokio::test]
async fn a_message_another_invocation_is_writing_is_waited_for_then_retried() {
    let w = World::new().await;
    w.deployment("IN_PROGRESS", None);
    let anchor = "arn:aws:ecs:us-east-1:123456789012:service-deployment/default/web3/dep1";
    // Another invocation holds the message for the next minute.
    let holder = greenlight_shared::queue::Lease {
        owner: "req-other".into(),
        until_ms: Utc::now().timestamp_millis() + 60_000,
        now_ms: Utc::now().timestamp_millis(),
    };
    assert!(w
        .ledger
        .take_message(anchor, &holder)
        .await
        .unwrap()
        .is_some());
    let busy = w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1").await;
    assert!(
        matches!(&busy, Err(NotifyError::MessageBusy { .. })),
        "{busy:?}"
    );
    assert!(w.channel().is_empty());
    // Its invocation ends (the lease runs out): the retried event posts the one message.
    w.ledger.messages.lock().unwrap().get_mut(anchor).unwrap().1 = None;
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    assert_eq!(w.channel().len(), 1);
}

// ---- the fault matrix: CodeDeploy's failed release and its rollback deployment -------------

const DEPLOYMENT: &str = "d-7GQK2M4XB";
const ROLLBACK: &str = "d-ROLLBACK1";
const HOOK_REASON: &str = "http_probe failed: 3 failed probes in a row";

fn release(n: u8, version: &str, status: ReleaseStatus) -> ReleaseRecord {
    ReleaseRecord {
        app: "web1".into(),
        digest: digest(n),
        version: version.into(),
        status,
        ..serving_record()
    }
}

fn serving_record() -> ReleaseRecord {
    ReleaseRecord {
        app: "web3".into(),
        digest: digest(4),
        version: "v1.9.0".into(),
        image: String::new(),
        pushed_at: Utc::now() - chrono::Duration::hours(1),
        status: ReleaseStatus::Succeeded,
        owner: None,
        lease_until: None,
        task_definition_arn: None,
        deployment_id: None,
        superseded_by: None,
        hook_reason: None,
        hook_reported_execution: None,
        provenance: Default::default(),
        request: None,
    }
}

/// A deployment of web1's release `n` (`version`), as Greenlight describes it.
fn codedeploy_release(
    id: &str,
    n: u8,
    version: &str,
    status: &str,
) -> greenlight_shared::aws::codedeploy::Deployment {
    use greenlight_shared::appspec::ReleaseDescription;
    greenlight_shared::aws::codedeploy::Deployment {
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
        ..Default::default()
    }
}

/// web1 v1.4.3 (release 3) failed its hook; CodeDeploy rolled it back to v1.4.2.
fn failed_and_rolled_back(w: &World) {
    use greenlight_shared::aws::codedeploy::Deployment;
    w.ledger
        .insert(release(2, "v1.4.2", ReleaseStatus::Succeeded));
    w.ledger.insert(ReleaseRecord {
        hook_reason: Some(HOOK_REASON.into()),
        ..release(3, "v1.4.3", ReleaseStatus::Failed)
    });
    let of = codedeploy_release;
    let mut deployments = w.codedeploy.deployments.lock().unwrap();
    deployments.insert(
        DEPLOYMENT.into(),
        Deployment {
            rollback_deployment_id: Some(ROLLBACK.into()),
            error_message: Some("the AfterAllowTestTraffic hook failed".into()),
            ..of(DEPLOYMENT, 3, "v1.4.3", "Failed")
        },
    );
    deployments.insert(
        ROLLBACK.into(),
        Deployment {
            description: None,
            creator: Some("codeDeployRollback".into()),
            rolls_back_deployment_id: Some(DEPLOYMENT.into()),
            ..of(ROLLBACK, 2, "v1.4.2", "Succeeded")
        },
    );
}

fn codedeploy_event(id: &str, state: &str) -> serde_json::Value {
    let name = match state {
        "START" => "codedeploy-start",
        "FAILURE" => "codedeploy-failure",
        _ => "codedeploy-success",
    };
    let mut e = sample_event(name);
    e["detail"]["deploymentId"] = json!(id);
    e["detail"]["state"] = json!(state);
    e
}

/// Delivers an event as EventBridge does: again, as a new invocation, while it fails (at most
/// five times); the errors' texts.
async fn deliver(w: &World, event: &serde_json::Value, attempt: &mut u32) -> Vec<String> {
    let mut errors = vec![];
    for _ in 0..5 {
        *attempt += 1;
        let out = notify(
            &w.deps,
            parse_event(event.clone()).unwrap(),
            &Invocation::for_test(&format!("req-{attempt}"), Duration::from_secs(3)),
        )
        .await;
        match out {
            Ok(_) => break,
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slack_fault_at_every_call_keeps_one_message_per_release_run_ending_failed() {
    let in_order = [
        (DEPLOYMENT, "START"),
        (DEPLOYMENT, "FAILURE"),
        (ROLLBACK, "START"),
        (ROLLBACK, "SUCCESS"),
    ];
    let reordered = [
        (ROLLBACK, "SUCCESS"),
        (DEPLOYMENT, "FAILURE"),
        (DEPLOYMENT, "START"),
        (ROLLBACK, "START"),
    ];
    let twice: Vec<_> = in_order.iter().flat_map(|e| [*e, *e]).collect();
    let orders: [(&str, Vec<(&str, &str)>); 3] = [
        ("in order", in_order.to_vec()),
        ("reordered", reordered.to_vec()),
        ("each twice", twice),
    ];
    // A clean run: how many Slack calls each order makes.
    let mut points = vec![];
    for (name, events) in &orders {
        let w = World::new().await;
        failed_and_rolled_back(&w);
        let mut attempt = 0;
        for (id, state) in events {
            deliver(&w, &codedeploy_event(id, state), &mut attempt).await;
        }
        points.push((*name, events.clone(), w.slack.calls().len()));
    }
    let faults = [
        SlackFault::RateLimited,
        SlackFault::ServerError,
        SlackFault::Error("ratelimited".into()),
        SlackFault::Deleted,
        SlackFault::LostAfterActing,
    ];
    let (mut cases, mut failures, mut doubled) = (0, vec![], 0);
    for (name, events, calls) in &points {
        for call in 1..=*calls {
            for fault in &faults {
                cases += 1;
                let w = World::new().await;
                failed_and_rolled_back(&w);
                w.slack.fail_call(call, fault.clone());
                let mut attempt = 0;
                let mut errors = vec![];
                for (id, state) in events {
                    errors.extend(deliver(&w, &codedeploy_event(id, state), &mut attempt).await);
                }
                let channel = w.channel();
                let case = format!("{name}, call {call}, {fault:?}");
                // The one place Slack's lost answer cannot be found again with chat:write: a
                // post of the message itself (see delivery.rs); every other fault keeps one.
                let lost_post = *fault == SlackFault::LostAfterActing
                    && w.slack.calls().get(call - 1).map(String::as_str)
                        == Some("chat.postMessage");
                let most = if lost_post { 2 } else { 1 };
                if channel.is_empty() || channel.len() > most {
                    failures.push(format!(
                        "{case}: {} messages\n{}",
                        channel.len(),
                        w.slack.render(CHANNEL)
                    ));
                    continue;
                }
                doubled += usize::from(channel.len() == 2);
                let last = channel.last().unwrap();
                if last.text != ":x: web1 v1.4.3 FAILED on production — rolled back to v1.4.2" {
                    failures.push(format!("{case}: the message reads {:?}", last.text));
                }
                let broadcast: Vec<_> = channel
                    .iter()
                    .flat_map(|m| m.replies.iter())
                    .filter(|(r, b)| *b && r.contains("FAILED") && r.contains(HOOK_REASON))
                    .collect();
                // A message a person deleted takes its thread with it: posted again, it shows
                // the release's furthest state; the replies before are gone.
                if broadcast.is_empty() && *fault != SlackFault::Deleted {
                    failures.push(format!(
                        "{case}: no failure with the hook's reason in the thread\n{}",
                        w.slack.render(CHANNEL)
                    ));
                }
                if errors.iter().any(|e| e.contains(TOKEN)) {
                    failures.push(format!("{case}: the token in an error"));
                }
            }
        }
    }
    println!(
        "notifier app-mode fault matrix: {} orders x their Slack calls x {} faults = {cases} cases, {} violated; {doubled} with a second message (a post's answer lost after Slack acted)",
        points.len(),
        faults.len(),
        failures.len()
    );
    assert!(cases >= 60, "{cases}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- the hook's verdicts, from the ledger's stream --------------------------------------------

/// A stream batch with the release item of web3's release 5 after the hook's verdict.
fn verdict_batch(stage: &str, passed: bool, reason: &str) -> serde_json::Value {
    let arn = "arn:aws:ecs:us-east-1:123456789012:service-deployment/default/web3/dep1";
    json!({"Records": [{
        "eventID": "1", "eventName": "MODIFY", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": {"S": "app#web3"}, "sk": {"S": format!("release#{}", digest(5))}},
            "NewImage": {
                "pk": {"S": "app#web3"}, "sk": {"S": format!("release#{}", digest(5))},
                "app": {"S": "web3"}, "digest": {"S": digest(5)},
                "release_version": {"S": "v2.0.0"}, "release_status": {"S": "deploying"},
                "deployment_id": {"S": arn},
                "hook_event": {"S": stage}, "hook_passed": {"BOOL": passed},
                "hook_reason": {"S": reason}
            },
            "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_IMAGE"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/greenlight-releases/stream/2026-12-05T00:00:00.000"
    }]})
}

impl World {
    async fn stream(
        &self,
        batch: serde_json::Value,
        request_id: &str,
    ) -> Result<Notified, NotifyError> {
        notify(
            &self.deps,
            parse_event(batch).unwrap(),
            &Invocation::for_test(request_id, Duration::from_secs(5)),
        )
        .await
    }
}

#[tokio::test]
async fn a_native_verdict_moves_the_message_to_ready_on_green_and_says_itself_once_in_the_thread() {
    let w = World::new().await;
    // Before the release's message exists, a verdict for its thread waits (the stream
    // retries the batch).
    let early = w
        .stream(
            verdict_batch("PRODUCTION_TRAFFIC_SHIFT", true, "all checks passed"),
            "req-0",
        )
        .await;
    assert!(
        matches!(&early, Err(NotifyError::MessageBusy { .. })),
        "{early:?}"
    );
    assert!(w.channel().is_empty());

    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    let batch = verdict_batch("POST_TEST_TRAFFIC_SHIFT", true, "all checks passed");
    w.stream(batch.clone(), "req-2").await.unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1);
    assert!(
        channel[0].text.contains("web3 v2.0.0") && channel[0].text.contains("ready on green"),
        "{}",
        channel[0].text
    );
    assert!(channel[0].replies.contains(&(
        "Health hook at POST_TEST_TRAFFIC_SHIFT: green passed — all checks passed".to_string(),
        false
    )));
    // The batch again (the stream delivers at least once): nothing more said.
    let calls = w.slack.calls().len();
    w.stream(batch, "req-3").await.unwrap();
    assert_eq!(w.slack.calls().len(), calls);
    // The end moves it on as ever.
    w.deployment("SUCCESSFUL", None);
    w.event("SERVICE_DEPLOYMENT_COMPLETED", "req-4")
        .await
        .unwrap();
    assert!(w.channel()[0]
        .text
        .starts_with(":white_check_mark: web3 v2.0.0 deployed"));
}

#[tokio::test]
async fn a_failed_verdict_is_said_in_the_thread_and_the_message_waits_for_the_engine() {
    let w = World::new().await;
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    w.stream(
        verdict_batch(
            "POST_TEST_TRAFFIC_SHIFT",
            false,
            "http_probe failed: HTTP 500",
        ),
        "req-2",
    )
    .await
    .unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1);
    assert!(
        channel[0]
            .text
            .starts_with(":rocket: web3 v2.0.0 deploying"),
        "{}",
        channel[0].text
    );
    // Not sent to the channel: the engine's FAILED, with the mention, follows.
    assert_eq!(
        channel[0].replies,
        [(
            "Health hook at POST_TEST_TRAFFIC_SHIFT: green failed — http_probe failed: HTTP 500"
                .to_string(),
            false
        )]
    );
}

#[tokio::test]
async fn a_native_round_shows_how_checking_green_goes_until_a_further_state() {
    let w = World::new().await;
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    let round = |n: u32, found: &str| {
        let mut batch = verdict_batch("POST_TEST_TRAFFIC_SHIFT", false, "");
        let image = &mut batch["Records"][0]["dynamodb"]["NewImage"];
        image.as_object_mut().unwrap().remove("hook_event");
        image["hook_round"] = json!({"S": found});
        image["hook_round_n"] = json!({"N": n.to_string()});
        image["hook_round_stage"] = json!({"S": "POST_TEST_TRAFFIC_SHIFT"});
        batch
    };
    w.stream(
        round(2, "1/3 good answers in a row (last: HTTP 200)"),
        "req-2",
    )
    .await
    .unwrap();
    let channel = w.channel();
    assert_eq!(channel.len(), 1);
    assert_eq!(
        channel[0].text,
        ":mag: web3 v2.0.0 checking green at POST_TEST_TRAFFIC_SHIFT, round 2: 1/3 good answers in a row (last: HTTP 200)"
    );
    assert!(channel[0].replies.is_empty(), "rounds are not thread noise");
    // The verdict moves it on; a round that arrives late never takes it back.
    w.stream(
        verdict_batch("POST_TEST_TRAFFIC_SHIFT", true, "all checks passed"),
        "req-3",
    )
    .await
    .unwrap();
    w.stream(round(3, "2/3 good answers in a row"), "req-4")
        .await
        .unwrap();
    assert!(
        w.channel()[0].text.contains("ready on green"),
        "{}",
        w.channel()[0].text
    );
}

// ---- a release the queue holds or skips, from the ledger's stream -----------------------------

const UNDER_WAY: &str = "d-UNDERWAY1";
const QUEUED_RUN: &str = "d-QUEUEDRUN";

/// web1: v1.4.2 (release 2) deploys as `UNDER_WAY`; v1.4.3 (release 3), pushed meanwhile,
/// waits, and later deploys as `QUEUED_RUN`; v1.4.4 (release 4) is a newer push.
fn queue_scene(w: &World) {
    use greenlight_shared::queue::{Active, Queue, Ticket};
    w.ledger.insert(ReleaseRecord {
        deployment_id: Some(UNDER_WAY.into()),
        ..release(2, "v1.4.2", ReleaseStatus::Deploying)
    });
    w.ledger.insert(ReleaseRecord {
        pushed_at: Utc::now() - chrono::Duration::minutes(2),
        ..release(3, "v1.4.3", ReleaseStatus::Pending)
    });
    w.ledger
        .insert(release(4, "v1.4.4", ReleaseStatus::Pending));
    w.ledger.set_queue(
        "web1",
        Queue {
            active: Some(Active {
                release: Some(Ticket {
                    pushed_at_ms: 1,
                    digest: digest(2),
                    version: "v1.4.2".into(),
                }),
                deployment_id: Some(UNDER_WAY.into()),
                owner: "req-0".into(),
                lease_until_ms: 0,
                since_ms: 0,
            }),
            version: 3,
            ..Queue::default()
        },
    );
    let of = |id: &str, n: u8, version: &str| codedeploy_release(id, n, version, "InProgress");
    let mut deployments = w.codedeploy.deployments.lock().unwrap();
    deployments.insert(UNDER_WAY.into(), of(UNDER_WAY, 2, "v1.4.2"));
    deployments.insert(QUEUED_RUN.into(), of(QUEUED_RUN, 3, "v1.4.3"));
}

/// A stream batch with web1's release `n` as the queue left it (`pending`, or `superseded`
/// by release `by`).
fn queue_batch(w: &World, n: u8, by: Option<u8>) -> serde_json::Value {
    let record = w.ledger.record(&digest(n)).unwrap();
    let mut image = json!({
        "pk": {"S": "app#web1"}, "sk": {"S": format!("release#{}", digest(n))},
        "app": {"S": "web1"}, "digest": {"S": digest(n)},
        "release_version": {"S": record.version},
        "pushed_at_ms": {"N": record.pushed_at.timestamp_millis().to_string()},
        "release_status": {"S": if by.is_some() { "superseded" } else { "pending" }},
    });
    if let Some(by) = by {
        image["superseded_by"] = json!({"S": digest(by)});
    }
    json!({"Records": [{
        "eventID": "2", "eventName": "MODIFY", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"NewImage": image, "SequenceNumber": "222", "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/greenlight-releases/stream/2026-12-05T00:00:00.000"
    }]})
}

impl World {
    async fn codedeploy_state(&self, id: &str, state: &str, request_id: &str) {
        notify(
            &self.deps,
            parse_event(codedeploy_event(id, state)).unwrap(),
            &Invocation::for_test(request_id, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    }

    fn message_of(&self, version: &str) -> Vec<greenlight_tests::slack_api::ChannelMessage> {
        let subject = format!("web1 {version} ");
        self.channel()
            .into_iter()
            .filter(|m| m.text.contains(&subject))
            .collect()
    }
}

#[tokio::test]
async fn a_release_pushed_during_a_deployment_is_one_message_from_queued_to_its_end() {
    let w = World::new().await;
    queue_scene(&w);
    w.codedeploy_state(UNDER_WAY, "START", "req-1").await;
    w.stream(queue_batch(&w, 3, None), "req-2").await.unwrap();
    let queued = w.message_of("v1.4.3");
    assert_eq!(queued.len(), 1, "{}", w.slack.render(CHANNEL));
    assert_eq!(
        queued[0].text,
        ":hourglass_flowing_sand: web1 v1.4.3 queued — waits for v1.4.2 to finish deploying to production"
    );
    assert!(
        queued[0]
            .attachments
            .to_string()
            .contains("codesuite/codedeploy/applications/web1/deployment-groups/web1-bluegreen"),
        "a link to where it will deploy: {}",
        queued[0].attachments
    );
    // The release under way says what waits behind it, in its thread, not to the channel.
    let under_way = w.message_of("v1.4.2");
    assert_eq!(
        under_way[0].replies,
        [(
            ":hourglass_flowing_sand: v1.4.3 was pushed during this deployment: it waits, and deploys when this one ends".to_string(),
            false
        )]
    );
    // The stream delivers at least once: nothing more said.
    let calls = w.slack.calls().len();
    w.stream(queue_batch(&w, 3, None), "req-3").await.unwrap();
    assert_eq!(w.slack.calls().len(), calls);

    // v1.4.2 ends; v1.4.3 starts: its deployment takes the queued message over.
    w.codedeploy_state(UNDER_WAY, "SUCCESS", "req-4").await;
    w.ledger.insert(ReleaseRecord {
        deployment_id: Some(QUEUED_RUN.into()),
        status: ReleaseStatus::Deploying,
        ..w.ledger.record(&digest(3)).unwrap()
    });
    w.codedeploy_state(QUEUED_RUN, "START", "req-5").await;
    let started = w.message_of("v1.4.3");
    assert_eq!(started.len(), 1, "{}", w.slack.render(CHANNEL));
    assert_eq!(started[0].ts, queued[0].ts);
    // The living message names its engine (a webhook's messages stay as they were).
    assert!(
        started[0]
            .attachments
            .to_string()
            .contains("*Engine*\\nCodeDeploy blue/green"),
        "{}",
        started[0].attachments
    );
    assert_eq!(
        started[0].text,
        ":rocket: web1 v1.4.3 deploying to production"
    );
    // A late "queued" (its marker lost) never takes it back, nor posts another.
    w.ledger
        .notices
        .lock()
        .unwrap()
        .retain(|k, _| !k.starts_with("run#"));
    w.stream(queue_batch(&w, 3, None), "req-6").await.unwrap();
    w.codedeploy_state(QUEUED_RUN, "SUCCESS", "req-7").await;
    let ended = w.message_of("v1.4.3");
    assert_eq!(ended.len(), 1, "{}", w.slack.render(CHANNEL));
    assert!(
        ended[0]
            .text
            .starts_with(":white_check_mark: web1 v1.4.3 deployed to production"),
        "{}",
        ended[0].text
    );
    assert_eq!(w.channel().len(), 2, "one message per release run");
}

#[tokio::test]
async fn a_release_superseded_while_it_waits_ends_as_superseded_and_a_late_queued_changes_nothing()
{
    let w = World::new().await;
    queue_scene(&w);
    // Its message is posted while the release under way has none yet: that thread is skipped.
    w.stream(queue_batch(&w, 3, None), "req-1").await.unwrap();
    w.stream(queue_batch(&w, 3, Some(4)), "req-2")
        .await
        .unwrap();
    let superseded = w.message_of("v1.4.3");
    assert_eq!(superseded.len(), 1, "{}", w.slack.render(CHANNEL));
    assert_eq!(
        superseded[0].text,
        ":fast_forward: web1 v1.4.3 superseded by v1.4.4 — not deployed"
    );
    assert!(
        superseded[0].replies.is_empty(),
        "no mention: nothing happened to production"
    );
    // Reordered: the "queued" again after the end (its marker lost) leaves the end.
    w.ledger.notices.lock().unwrap().clear();
    w.stream(queue_batch(&w, 3, None), "req-3").await.unwrap();
    let after = w.message_of("v1.4.3");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].text, superseded[0].text);
    assert_eq!(w.channel().len(), 1);
}

#[tokio::test]
async fn a_start_that_outruns_its_queued_record_keeps_one_message() {
    let w = World::new().await;
    queue_scene(&w);
    w.ledger.insert(ReleaseRecord {
        deployment_id: Some(QUEUED_RUN.into()),
        status: ReleaseStatus::Deploying,
        ..w.ledger.record(&digest(3)).unwrap()
    });
    w.codedeploy_state(QUEUED_RUN, "START", "req-1").await;
    w.stream(queue_batch(&w, 3, None), "req-2").await.unwrap();
    let messages = w.message_of("v1.4.3");
    assert_eq!(messages.len(), 1, "{}", w.slack.render(CHANNEL));
    assert_eq!(
        messages[0].text,
        ":rocket: web1 v1.4.3 deploying to production"
    );
}

#[tokio::test]
async fn a_webhook_app_hears_nothing_of_its_queue_from_the_stream() {
    let config = config(CHANNEL).replace(
        "token = \"env:SLACK_TOKEN\"\nchannel = \"C0DEPLOYS\"\nmention_on_failure = \"<!here>\"\n\n[apps.web3]",
        "webhook = \"env:SLACK_WEBHOOK\"\n\n[apps.web3]",
    );
    assert!(config.contains("webhook = "), "{config}");
    let w = World::with(&config, TOKEN).await;
    queue_scene(&w);
    let said = w.stream(queue_batch(&w, 3, None), "req-1").await.unwrap();
    assert!(matches!(said, Notified::Ignored { .. }), "{said:?}");
    assert!(w.slack.calls().is_empty());
}

// ---- the approval gate on the living message --------------------------------------------------

/// web3's release 5 after green passed and the wait began (`decision`: approved or rejected
/// by whom).
fn approval_batch(decision: Option<(&str, &str)>) -> serde_json::Value {
    let mut batch = verdict_batch("POST_TEST_TRAFFIC_SHIFT", true, "all checks passed");
    let image = &mut batch["Records"][0]["dynamodb"]["NewImage"];
    image["pushed_at_ms"] = json!({"N": "1764900000000"});
    image["approval_deployment"] = image["deployment_id"].clone();
    image["approval_expires_ms"] = json!({"N": "1764903120000"});
    if let Some((choice, by)) = decision {
        image["approval_decision"] = json!({"S": choice});
        image["approval_by"] = json!({"S": by});
        image["approval_at"] = json!({"S": "2026-12-05T14:05:00Z"});
    }
    batch
}

#[tokio::test]
async fn a_wait_for_approval_shows_its_buttons_until_someone_decides_and_the_thread_keeps_who() {
    let w = World::new().await;
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    w.stream(approval_batch(None), "req-2").await.unwrap();
    let message = &w.channel()[0];
    assert_eq!(
        message.text,
        ":raised_hand: web3 v2.0.0 green checked — waiting for approval (expires 02:52 UTC)"
    );
    let buttons = message.attachments.to_string();
    let binding = format!(
        "web3|{}|1764900000000|arn:aws:ecs:us-east-1:123456789012:service-deployment/default/web3/dep1",
        digest(5)
    );
    assert!(
        buttons.contains("\"action_id\":\"approve\"")
            && buttons.contains("\"action_id\":\"reject\"")
            && buttons.contains(&binding),
        "{buttons}"
    );
    // Approved: who, in the message and its thread; the buttons are gone.
    w.stream(
        approval_batch(Some(("approved", "slack:U024BE7LH"))),
        "req-3",
    )
    .await
    .unwrap();
    let message = &w.channel()[0];
    assert_eq!(
        message.text,
        ":+1: web3 v2.0.0 approved by <@U024BE7LH> — shifting production traffic"
    );
    assert!(!message.attachments.to_string().contains("\"action_id\""));
    assert!(message.replies.contains(&(
        "Approved by <@U024BE7LH> at 2026-12-05 14:05 UTC".to_string(),
        false
    )));
    // The wait redelivered late (its marker lost) never brings the buttons back.
    w.ledger.notices.lock().unwrap().clear();
    w.stream(approval_batch(None), "req-4").await.unwrap();
    assert!(w.channel()[0].text.contains("approved by"));
    // The end moves it on as ever.
    w.deployment("SUCCESSFUL", None);
    w.event("SERVICE_DEPLOYMENT_COMPLETED", "req-5")
        .await
        .unwrap();
    assert!(w.channel()[0]
        .text
        .starts_with(":white_check_mark: web3 v2.0.0 deployed"));
    assert_eq!(w.channel().len(), 1);
}

#[tokio::test]
async fn a_rejection_says_who_rolled_it_back_and_never_shows_a_success() {
    let w = World::new().await;
    w.deployment("IN_PROGRESS", None);
    w.event("SERVICE_DEPLOYMENT_IN_PROGRESS", "req-1")
        .await
        .unwrap();
    w.stream(approval_batch(None), "req-2").await.unwrap();
    w.stream(
        approval_batch(Some((
            "rejected",
            "arn:aws:sts::123456789012:assumed-role/release-managers/alice",
        ))),
        "req-3",
    )
    .await
    .unwrap();
    let message = &w.channel()[0];
    assert_eq!(
        message.text,
        ":leftwards_arrow_with_hook: web3 v2.0.0 rejected by arn:aws:sts::123456789012:assumed-role/release-managers/alice — rolling back"
    );
    w.deployment("ROLLBACK_SUCCESSFUL", Some("rolled back by a person"));
    w.event("SERVICE_DEPLOYMENT_FAILED", "req-4").await.unwrap();
    assert!(
        w.channel()[0].text.starts_with(":x: web3 v2.0.0 FAILED"),
        "{}",
        w.channel()[0].text
    );
}

/// The webhook a test's app posts to (a webhook app's secret, `env:SLACK_WEBHOOK`).
struct TokenAndWebhook(String);

#[async_trait]
impl SecretSource for TokenAndWebhook {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        match r {
            SecretRef::Env(var) if var == "SLACK_WEBHOOK" => Ok(Secret::new(self.0.clone())),
            other => Token(TOKEN.into()).read(other).await,
        }
    }
}

#[tokio::test]
async fn a_webhook_app_hears_the_wait_with_the_command_that_decides_and_who_decided() {
    let receiver = greenlight_tests::receivers::SlackReceiver::start().await;
    let config = config(CHANNEL).replace(
        "[apps.web3.slack]\ntoken = \"env:SLACK_TOKEN\"\nchannel = \"C0DEPLOYS\"",
        "[apps.web3.slack]\nwebhook = \"env:SLACK_WEBHOOK\"",
    );
    assert!(
        config.contains("webhook = \"env:SLACK_WEBHOOK\""),
        "{config}"
    );
    let mut w = World::with(&config, TOKEN).await;
    w.deps.secrets = Arc::new(TokenAndWebhook(receiver.url.clone()));
    w.stream(approval_batch(None), "req-1").await.unwrap();
    // Redelivered: said once.
    w.stream(approval_batch(None), "req-2").await.unwrap();
    w.stream(
        approval_batch(Some(("approved", "slack:U024BE7LH"))),
        "req-3",
    )
    .await
    .unwrap();
    assert_eq!(
        receiver.headlines(),
        [
            ":raised_hand: web3 v2.0.0 green checked — waiting for approval (expires 02:52 UTC): `greenlight approve web3` or `greenlight reject web3`",
            ":+1: web3 v2.0.0 approved by <@U024BE7LH> — shifting production traffic",
        ]
    );
    assert!(w.channel().is_empty(), "nothing in the Slack app's channel");
}
