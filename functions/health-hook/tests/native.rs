//! The hook for native ECS blue/green over fakes: one round per invocation, progress carried
//! in `hookDetails`, and always one of SUCCEEDED, FAILED or IN_PROGRESS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types::Tag;
use common::FakeProber;
use greenlight_health_hook::{handle_native, parse_ecs_event, Deps};
use greenlight_shared::aws::ecs::{ServiceDeploymentState, ServiceRevisionInfo};
use greenlight_shared::ecs_hook::{EcsHookAnswer, EcsHookEvent, HookStatus};
use greenlight_shared::fakes::{
    healthy_targets, Calls, FakeCodeDeploy, FakeEcs, FakeLedger, FakeLoadBalancing,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::{AwsError, AwsErrorKind, Config};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[apps.web2]
repository = "web2"
application = "web2"
deployment_group = "web2-bluegreen"
[apps.web2.health]
path = "/api/health"
successes = 3
failures = 2
interval_ms = 4000
timeout_ms = 100
"#;
const REVISION: &str =
    "arn:aws:ecs:us-east-1:123456789012:service-revision/my-cluster/web2/9313423515462893900";
const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web2/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee";

struct World {
    deps: Deps,
    calls: Arc<Calls>,
    ecs: Arc<FakeEcs>,
    elb: Arc<FakeLoadBalancing>,
    prober: Arc<FakeProber>,
    ledger: Arc<FakeLedger>,
}

fn in_progress(running: i32, requested: i32) -> ServiceDeploymentState {
    ServiceDeploymentState {
        status: "IN_PROGRESS".into(),
        target_revision: Some(REVISION.into()),
        requested_tasks: requested,
        running_tasks: running,
        ..Default::default()
    }
}

const EXECUTION: &str = "e8d5a28f-eb01-4f3c-9454-a30ba6dc54bc";

impl World {
    fn new(probes: Vec<Result<u16, String>>) -> Self {
        Self::configured(CONFIG, probes)
    }

    fn configured(config: &str, probes: Vec<Result<u16, String>>) -> Self {
        let calls = Arc::new(Calls::default());
        let ecs = Arc::new(FakeEcs::new(calls.clone(), "unused"));
        *ecs.tags.lock().unwrap() = [
            ("greenlight:app", "web2"),
            ("greenlight:version", "v2.1.0"),
            ("greenlight:digest", "sha256:2222"),
        ]
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect();
        *ecs.revision.lock().unwrap() = ServiceRevisionInfo {
            task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web2:9".into(),
            target_groups: vec!["arn:tg-green".into()],
        };
        *ecs.test_listener_rule.lock().unwrap() = Some(RULE.into());
        *ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(2, 2))];
        let elb = Arc::new(FakeLoadBalancing::new(calls.clone()));
        *elb.health_answers.lock().unwrap() = vec![Ok(healthy_targets(2))];
        let prober = Arc::new(FakeProber::answering(probes));
        let ledger = Arc::new(FakeLedger::default());
        let deps = Deps {
            config: Config::parse(config).unwrap(),
            codedeploy: Arc::new(FakeCodeDeploy::new(calls.clone())),
            ecs: ecs.clone(),
            elb: elb.clone(),
            prober: prober.clone(),
            ledger: Some(ledger.clone()),
            safety_margin: Duration::from_millis(500),
        };
        Self {
            deps,
            calls,
            ecs,
            elb,
            prober,
            ledger,
        }
    }

    /// One invocation, as ECS makes it: with the `hookDetails` the last answer returned.
    async fn invoke(&self, details: Option<&Value>) -> EcsHookAnswer {
        self.invoke_at("POST_TEST_TRAFFIC_SHIFT", details).await
    }

    async fn invoke_at(&self, stage: &str, details: Option<&Value>) -> EcsHookAnswer {
        self.invoke_with(|p| {
            p["lifecycleStage"] = json!(stage);
            if let Some(details) = details {
                p["hookDetails"] = details.clone();
            }
        })
        .await
    }

    async fn invoke_with(&self, change: impl FnOnce(&mut Value)) -> EcsHookAnswer {
        let mut payload: Value = serde_json::from_str(include_str!(
            "../../../events/ecs-lifecycle-hook-post-test-traffic-shift.json"
        ))
        .unwrap();
        change(&mut payload);
        let event: EcsHookEvent = parse_ecs_event(payload).unwrap();
        handle_native(
            &self.deps,
            &event,
            &Invocation::for_test("req", Duration::from_secs(10)),
        )
        .await
    }

    /// Invokes until the hook stops answering IN_PROGRESS; every answer.
    async fn run(&self) -> Vec<EcsHookAnswer> {
        let mut answers: Vec<EcsHookAnswer> = vec![];
        for _ in 0..20 {
            let details = answers.last().and_then(|a| a.hook_details.clone());
            let answer = self.invoke(details.as_ref()).await;
            let done = answer.hook_status != HookStatus::InProgress;
            answers.push(answer);
            if done {
                break;
            }
        }
        answers
    }
}

fn statuses(answers: &[EcsHookAnswer]) -> Vec<HookStatus> {
    answers.iter().map(|a| a.hook_status).collect()
}

#[tokio::test]
async fn healthy_green_succeeds_after_n_rounds_each_answering_at_once() {
    let w = World::new(vec![Ok(200)]);
    let answers = w.run().await;
    use HookStatus::*;
    assert_eq!(statuses(&answers), [InProgress, InProgress, Succeeded]);
    // The app's probe interval (4 s), in seconds, between rounds.
    assert_eq!(answers[0].call_back_delay, Some(4));
    assert_eq!(answers[2].call_back_delay, None);
    // Through the test listener rule's listener; one probe per round.
    assert_eq!(
        *w.prober.urls.lock().unwrap(),
        vec!["http://web1-test.elb.local:8080/api/health"; 3]
    );
    // The release is read again every round: hookDetails carry counters only.
    assert_eq!(w.calls.count("DescribeServiceRevisions"), 3);
    assert_eq!(w.calls.count("ListTagsForResource"), 3);
    assert_eq!(w.calls.count("DescribeServiceDeployments"), 3);
    let progress = &answers[2].hook_details.as_ref().unwrap()["greenlight"];
    assert_eq!(progress["good"], 3);
    assert_eq!(progress["revision"], REVISION);
    assert!(
        progress.get("url").is_none() && progress.get("app").is_none(),
        "{progress}"
    );
}

#[tokio::test]
async fn a_failing_probe_fails_after_n_bad_answers_in_a_row() {
    let w = World::new(vec![Ok(500)]);
    let answers = w.run().await;
    use HookStatus::*;
    assert_eq!(statuses(&answers), [InProgress, Failed]);
    let reason = answers[1].hook_details.as_ref().unwrap()["greenlight"]["last"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.starts_with("http_probe failed:"), "{reason}");
    assert!(
        reason.contains("2 failed probes in a row (last: HTTP 500, expected 200)"),
        "{reason}"
    );
}

#[tokio::test]
async fn green_not_ready_waits_without_probing() {
    let w = World::new(vec![Ok(200)]);
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(1, 2)), Ok(in_progress(2, 2))];
    *w.elb.health_answers.lock().unwrap() = vec![Ok(vec![]), Ok(healthy_targets(2))];
    let answers = w.run().await;
    use HookStatus::*;
    assert_eq!(
        statuses(&answers),
        [InProgress, InProgress, InProgress, InProgress, Succeeded]
    );
    let first = answers[0].hook_details.as_ref().unwrap()["greenlight"]["last"].clone();
    assert_eq!(first, "green runs 1 of 2 tasks");
    let second = answers[1].hook_details.as_ref().unwrap()["greenlight"]["last"].clone();
    assert!(
        second.as_str().unwrap().contains("no targets registered"),
        "{second}"
    );
    // Probes only once green runs and its targets are healthy.
    assert_eq!(w.prober.urls.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_deployment_that_is_rolling_back_is_never_stalled_or_failed_at_any_stage() {
    for stage in [
        "POST_TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
    ] {
        // Checked at the production stages too, so the rollback is what answers there.
        let w = World::configured(
            &CONFIG.replace(
                "timeout_ms = 100",
                "timeout_ms = 100\ncheck_production = true",
            ),
            vec![Ok(500)],
        );
        *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(ServiceDeploymentState {
            status: "ROLLBACK_IN_PROGRESS".into(),
            status_reason: Some("alarm web2-5xx in ALARM".into()),
            ..Default::default()
        })];
        let answer = w.invoke_at(stage, None).await;
        assert_eq!(answer.hook_status, HookStatus::Succeeded, "{stage}");
        let reason = answer.hook_details.as_ref().unwrap()["greenlight"]["last"].clone();
        assert_eq!(
            reason,
            "the service deployment is ROLLBACK_IN_PROGRESS: nothing to check while it rolls back"
        );
        assert!(w.prober.urls.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn stages_with_nothing_to_check_succeed_at_once_without_a_call() {
    for stage in [
        "RECONCILE_SERVICE",
        "PRE_SCALE_UP",
        "POST_SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "A_STAGE_ECS_ADDS_LATER",
    ] {
        let w = World::new(vec![Ok(500)]);
        *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(0, 2))];
        let answer = w.invoke_at(stage, None).await;
        assert_eq!(answer.hook_status, HookStatus::Succeeded, "{stage}");
        assert_eq!(w.calls.total(), 0, "{stage}");
        assert!(w.prober.urls.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn production_stages_are_checked_only_when_the_config_asks() {
    let w = World::new(vec![Ok(500)]);
    let answer = w.invoke_at("PRODUCTION_TRAFFIC_SHIFT", None).await;
    assert_eq!(answer.hook_status, HookStatus::Succeeded);
    assert!(w.prober.urls.lock().unwrap().is_empty());

    let w = World::configured(
        &CONFIG.replace(
            "timeout_ms = 100",
            "timeout_ms = 100\ncheck_production = true",
        ),
        vec![Ok(500)],
    );
    let first = w.invoke_at("POST_PRODUCTION_TRAFFIC_SHIFT", None).await;
    assert_eq!(first.hook_status, HookStatus::InProgress);
    let second = w
        .invoke_at("POST_PRODUCTION_TRAFFIC_SHIFT", first.hook_details.as_ref())
        .await;
    assert_eq!(second.hook_status, HookStatus::Failed);
    assert_eq!(w.prober.urls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn each_step_of_production_traffic_is_checked_afresh() {
    // A linear or canary deployment runs the production hook at each step: good answers at
    // 20% do not count for 40%.
    let w = World::configured(
        &CONFIG.replace(
            "timeout_ms = 100",
            "timeout_ms = 100\ncheck_production = true",
        ),
        vec![Ok(200)],
    );
    let at_weight = |weight: f64| {
        let mut state = in_progress(2, 2);
        state.position.weight = Some(weight);
        state
    };
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(at_weight(20.0))];
    let mut details = None;
    for _ in 0..2 {
        let answer = w
            .invoke_at("PRODUCTION_TRAFFIC_SHIFT", details.as_ref())
            .await;
        assert_eq!(answer.hook_status, HookStatus::InProgress);
        details = answer.hook_details;
    }
    assert_eq!(details.as_ref().unwrap()["greenlight"]["good"], 2);
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(at_weight(40.0))];
    let next_step = w
        .invoke_at("PRODUCTION_TRAFFIC_SHIFT", details.as_ref())
        .await;
    assert_eq!(next_step.hook_status, HookStatus::InProgress);
    let progress = &next_step.hook_details.as_ref().unwrap()["greenlight"];
    assert_eq!(progress["good"], 1, "{progress}");
    assert_eq!(progress["weight"], 40.0, "{progress}");
    // At the same step, the counts go on to the verdict.
    let mut details = next_step.hook_details;
    let mut last = None;
    for _ in 0..2 {
        let answer = w
            .invoke_at("PRODUCTION_TRAFFIC_SHIFT", details.as_ref())
            .await;
        details = answer.hook_details.clone();
        last = Some(answer.hook_status);
    }
    assert_eq!(last, Some(HookStatus::Succeeded));
}

#[tokio::test]
async fn forged_hook_details_choose_nothing_that_is_checked() {
    let w = World::new(vec![Ok(200)]);
    let started = chrono::Utc::now().timestamp_millis() - 4_000;
    let forged = json!({"greenlight": {
        "execution": EXECUTION, "revision": REVISION, "stage": "POST_TEST_TRAFFIC_SHIFT",
        "started_ms": started, "rounds": 1, "good": 0, "bad": 0,
        "app": "web1", "digest": "sha256:1111", "target_group": "arn:tg-forged",
        "url": "http://attacker.example/"
    }});
    let answer = w.invoke(Some(&forged)).await;
    assert_eq!(answer.hook_status, HookStatus::InProgress);
    assert_eq!(
        *w.prober.urls.lock().unwrap(),
        vec!["http://web1-test.elb.local:8080/api/health"]
    );
    // Counters that could not have been counted are not trusted either.
    let impossible = json!({"greenlight": {
        "execution": EXECUTION, "revision": REVISION, "stage": "POST_TEST_TRAFFIC_SHIFT",
        "started_ms": started, "rounds": 1, "good": 99, "bad": 0
    }});
    let answer = w.invoke(Some(&impossible)).await;
    assert_eq!(answer.hook_status, HookStatus::InProgress);
    assert_eq!(
        answer.hook_details.unwrap()["greenlight"]["good"],
        1,
        "counted afresh"
    );
}

#[tokio::test]
async fn a_deployment_revision_or_service_that_do_not_belong_together_fail_without_a_probe() {
    // The service deployment deploys another revision than the event says.
    let w = World::new(vec![Ok(200)]);
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(ServiceDeploymentState {
        target_revision: Some(
            "arn:aws:ecs:us-east-1:123456789012:service-revision/my-cluster/web2/1".into(),
        ),
        ..in_progress(2, 2)
    })];
    let answer = w.invoke(None).await;
    assert_eq!(answer.hook_status, HookStatus::Failed);
    assert!(w.prober.urls.lock().unwrap().is_empty());
    // The event pairs a deployment of one service with another service.
    let w = World::new(vec![Ok(200)]);
    let answer = w
        .invoke_with(|p| {
            p["executionDetails"]["serviceArn"] =
                json!("arn:aws:ecs:us-east-1:123456789012:service/my-cluster/other");
        })
        .await;
    assert_eq!(answer.hook_status, HookStatus::Failed);
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn a_revision_that_is_not_a_release_is_failed_as_unmanaged() {
    let w = World::new(vec![Ok(200)]);
    w.ecs.tags.lock().unwrap().clear();
    let answers = w.run().await;
    assert_eq!(statuses(&answers), [HookStatus::Failed]);
    let reason = answers[0].hook_details.as_ref().unwrap()["greenlight"]["last"].clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .contains("not a release of an app Greenlight manages"),
        "{reason}"
    );
    assert_eq!(w.prober.urls.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn throttling_is_another_round_and_a_missing_deployment_fails() {
    let w = World::new(vec![Ok(200)]);
    let throttled = AwsError::new(
        "DescribeServiceDeployments",
        "ECS service deployment",
        AwsErrorKind::Throttled,
        "Rate exceeded",
    );
    let missing = AwsError::new(
        "DescribeServiceDeployments",
        "ECS service deployment",
        AwsErrorKind::NotFound,
        "MISSING",
    );
    *w.ecs.deployment_answers.lock().unwrap() = vec![Err(throttled), Err(missing)];
    let answers = w.run().await;
    assert_eq!(
        statuses(&answers),
        [HookStatus::InProgress, HookStatus::Failed]
    );
}

#[tokio::test]
async fn progress_of_another_execution_is_not_trusted() {
    let w = World::new(vec![Ok(200)]);
    let forged = json!({"greenlight": {
        "execution": "someone-else", "started_ms": 0, "rounds": 9, "good": 99, "bad": 0,
        "app": "web2", "url": "http://attacker.example/"
    }});
    let answer = w.invoke(Some(&forged)).await;
    assert_eq!(answer.hook_status, HookStatus::InProgress);
    assert_eq!(
        *w.prober.urls.lock().unwrap(),
        vec!["http://web1-test.elb.local:8080/api/health"]
    );
}

#[tokio::test]
async fn green_not_ready_within_the_window_is_failed() {
    let w = World::new(vec![Ok(200)]);
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(0, 2))];
    let first = w.invoke(None).await;
    let mut details = first.hook_details.unwrap();
    // The first round was sixteen minutes ago.
    let started = chrono::Utc::now().timestamp_millis() - 16 * 60 * 1000;
    details["greenlight"]["started_ms"] = json!(started);
    let answer = w.invoke(Some(&details)).await;
    assert_eq!(answer.hook_status, HookStatus::Failed);
    let reason = answer.hook_details.unwrap()["greenlight"]["last"].clone();
    assert!(
        reason.as_str().unwrap().starts_with("not ready 9"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_window_is_the_apps_own() {
    let w = World::configured(
        &CONFIG.replace("timeout_ms = 100", "timeout_ms = 100\nwindow_s = 60"),
        vec![Ok(200)],
    );
    *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(0, 2))];
    let first = w.invoke(None).await;
    assert_eq!(first.hook_status, HookStatus::InProgress);
    let mut details = first.hook_details.unwrap();
    details["greenlight"]["started_ms"] = json!(chrono::Utc::now().timestamp_millis() - 61_000);
    let answer = w.invoke(Some(&details)).await;
    assert_eq!(answer.hook_status, HookStatus::Failed);
}

#[test]
fn malformed_invocations_are_refused_with_a_short_reason() {
    for bad in [
        json!({"executionId": "x", "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT"}),
        json!({"executionId": "x", "lifecycleStage": "S", "resourceArn": "arn:aws:s3:::bucket",
               "executionDetails": {"serviceArn": "a", "targetServiceRevisionArn": "b"}}),
    ] {
        let err = parse_ecs_event(bad).unwrap_err();
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "MalformedEvent");
        assert!(diagnostic.error_message.len() < 200);
    }
}

#[tokio::test]
async fn green_is_failed_before_a_stage_that_continues_on_timeout_would_ship_it_unchecked() {
    use greenlight_shared::aws::ecs::LifecycleHook;
    for (action, after_115_s) in [
        ("CONTINUE", HookStatus::Failed),
        ("ROLLBACK", HookStatus::InProgress),
    ] {
        let w = World::new(vec![Ok(200)]);
        *w.ecs.lifecycle_hooks.lock().unwrap() = vec![LifecycleHook {
            pause: false,
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:greenlight-test:live"
                .into(),
            stages: vec!["POST_TEST_TRAFFIC_SHIFT".into()],
            timeout_minutes: Some(2),
            timeout_action: Some(action.into()),
        }];
        *w.ecs.deployment_answers.lock().unwrap() = vec![Ok(in_progress(0, 2))];
        let first = w.invoke(None).await;
        assert_eq!(first.hook_status, HookStatus::InProgress);
        let started = |ago_s: i64| {
            let mut details = first.hook_details.clone().unwrap();
            details["greenlight"]["started_ms"] =
                json!(chrono::Utc::now().timestamp_millis() - ago_s * 1000);
            details
        };
        // Two callback delays (4 s each) before ECS's two minutes: 112 s.
        let answer = w.invoke(Some(&started(100))).await;
        assert_eq!(answer.hook_status, HookStatus::InProgress, "{action}");
        let answer = w.invoke(Some(&started(115))).await;
        assert_eq!(answer.hook_status, after_115_s, "{action}");
    }
}

#[tokio::test]
async fn the_probe_sends_what_the_test_listener_rule_matches_on_or_fails_saying_why() {
    use greenlight_shared::aws::elb::RuleMatch;
    // A shared test listener: green's rule matches a host and a query; blue's takes the rest.
    let w = World::new(vec![Ok(200)]);
    *w.elb.test_rule.lock().unwrap() = RuleMatch {
        hosts: vec!["web2.test.internal".into()],
        paths: vec!["/api/*".into()],
        queries: vec![vec![(Some("lane".into()), "green".into())]],
        unsatisfiable: vec![],
    };
    let answer = w.invoke(None).await;
    assert_eq!(answer.hook_status, HookStatus::InProgress);
    assert_eq!(
        *w.prober.urls.lock().unwrap(),
        vec!["http://web1-test.elb.local:8080/api/health?lane=green"]
    );
    assert_eq!(
        *w.prober.hosts.lock().unwrap(),
        vec![Some("web2.test.internal".to_string())]
    );
    // A rule a probe cannot match fails at once, naming the condition; nothing is probed.
    let w = World::new(vec![Ok(200)]);
    *w.elb.test_rule.lock().unwrap() = RuleMatch {
        unsatisfiable: vec!["http-header".into()],
        ..RuleMatch::default()
    };
    let answer = w.invoke(None).await;
    assert_eq!(answer.hook_status, HookStatus::Failed);
    let reason = answer.hook_details.unwrap()["greenlight"]["last"].clone();
    assert!(
        reason.as_str().unwrap().contains("matches on http-header"),
        "{reason}"
    );
    assert!(w.prober.urls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn green_passing_before_production_records_the_approval_wait_of_an_app_that_asks() {
    let approving = format!(
        "{CONFIG}[apps.web2.approval]\nrequired = true\napprovers = [\"U024BE7LH\"]\ntimeout_minutes = 30\n"
    );
    let w = World::configured(&approving, vec![Ok(200)]);
    let before = chrono::Utc::now();
    let answers = w.run().await;
    assert_eq!(answers.last().unwrap().hook_status, HookStatus::Succeeded);
    let approvals = w.ledger.approvals.lock().unwrap().clone();
    let (wait, decision) = approvals.get("sha256:2222").expect("the wait is recorded");
    let event: Value = serde_json::from_str(include_str!(
        "../../../events/ecs-lifecycle-hook-post-test-traffic-shift.json"
    ))
    .unwrap();
    assert_eq!(wait.deployment_id, event["resourceArn"].as_str().unwrap());
    let minutes = (wait.expires_at - before).num_minutes();
    assert!((29..=30).contains(&minutes), "{minutes}");
    assert!(decision.is_none());

    // A failed green, or an app that asks for nothing, waits for nobody.
    let failing = World::configured(&approving, vec![Ok(500)]);
    failing.run().await;
    assert!(failing.ledger.approvals.lock().unwrap().is_empty());
    let plain = World::new(vec![Ok(200)]);
    plain.run().await;
    assert!(plain.ledger.approvals.lock().unwrap().is_empty());
}
