//! The hook's verdict over fakes: every check outcome ends in exactly one report.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::codedeploy::CodeDeployLifecycleEvent;
use common::FakeProber;
use greenlight_health_hook::probe::Prober;
use greenlight_health_hook::{handle, Deps, HookReport};
use greenlight_shared::aws::codedeploy::{
    Deployment, EcsDeploymentTarget, HookVerdict, TaskSetInfo,
};
use greenlight_shared::aws::ecs::TaskSetState;
use greenlight_shared::aws::elb::TargetState;
use greenlight_shared::fakes::{
    healthy_targets, Calls, FakeCodeDeploy, FakeEcs, FakeLedger, FakeLoadBalancing,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseRecord, ReleaseStatus};
use greenlight_shared::{AwsError, AwsErrorKind, Config};

const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
[apps.web1.health]
path = "/api/health"
successes = 3
failures = 3
interval_ms = 5
timeout_ms = 100
"#;
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

struct World {
    deps: Deps,
    calls: Arc<Calls>,
    codedeploy: Arc<FakeCodeDeploy>,
    ecs: Arc<FakeEcs>,
    elb: Arc<FakeLoadBalancing>,
    prober: Arc<FakeProber>,
    ledger: Arc<FakeLedger>,
}

fn green_target(event_in_progress: Option<&str>) -> EcsDeploymentTarget {
    EcsDeploymentTarget {
        task_sets: vec![
            TaskSetInfo {
                id: "ecs-svc/blue".into(),
                label: Some("Blue".into()),
                desired_count: 2,
                running_count: 2,
                status: Some("PRIMARY".into()),
                target_group: Some("web1-blue".into()),
                traffic_weight: 100.0,
            },
            TaskSetInfo {
                id: "ecs-svc/green".into(),
                label: Some("Green".into()),
                desired_count: 2,
                running_count: 2,
                status: Some("ACTIVE".into()),
                target_group: Some("web1-green".into()),
                traffic_weight: 0.0,
            },
        ],
        lifecycle_event_in_progress: event_in_progress.map(str::to_string),
        lifecycle_event_count: 5,
    }
}

fn steady(running: i32, desired: i32, stability: &str) -> Vec<TaskSetState> {
    vec![TaskSetState {
        id: "ecs-svc/green".into(),
        task_definition_arn: None,
        stability: Some(stability.into()),
        desired_count: desired,
        running_count: running,
        target_group_arn: None,
    }]
}

impl World {
    fn new(prober: FakeProber) -> Self {
        let calls = Arc::new(Calls::default());
        let codedeploy = Arc::new(FakeCodeDeploy::new(calls.clone()));
        codedeploy.deployments.lock().unwrap().insert(
            "d-1".into(),
            Deployment {
                id: "d-1".into(),
                application: "web1".into(),
                deployment_group: "web1-bluegreen".into(),
                status: "InProgress".into(),
                description: Some(format!(
                    "greenlight app=web1 version=v1.4.2 digest={DIGEST}"
                )),
                ..Default::default()
            },
        );
        codedeploy
            .targets
            .lock()
            .unwrap()
            .insert("d-1".into(), green_target(Some("AfterAllowTestTraffic")));
        let ecs = Arc::new(FakeEcs::new(calls.clone(), "img"));
        *ecs.task_set_answers.lock().unwrap() = vec![Ok(steady(2, 2, "STEADY_STATE"))];
        let elb = Arc::new(FakeLoadBalancing::new(calls.clone()));
        let prober = Arc::new(prober);
        let ledger = Arc::new(FakeLedger::default());
        ledger.insert(ReleaseRecord {
            app: "web1".into(),
            digest: DIGEST.into(),
            version: "v1.4.2".into(),
            image: "img".into(),
            pushed_at: chrono::Utc::now(),
            status: ReleaseStatus::Deploying,
            owner: None,
            lease_until: None,
            task_definition_arn: None,
            deployment_id: Some("d-1".into()),
            superseded_by: None,
            hook_reason: None,
            hook_reported_execution: None,
            provenance: Default::default(),
            request: None,
        });
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            codedeploy: codedeploy.clone(),
            ecs: ecs.clone(),
            elb: elb.clone(),
            prober: prober.clone(),
            ledger: Some(ledger.clone() as Arc<dyn Ledger>),
            safety_margin: Duration::from_millis(200),
        };
        Self {
            deps,
            calls,
            codedeploy,
            ecs,
            elb,
            prober,
            ledger,
        }
    }

    async fn run_with_budget(&self, budget: Duration) -> HookReport {
        let event: CodeDeployLifecycleEvent = serde_json::from_value(serde_json::json!({
            "DeploymentId": "d-1", "LifecycleEventHookExecutionId": "exec-1"
        }))
        .unwrap();
        handle(&self.deps, event, &Invocation::for_test("req", budget))
            .await
            .unwrap()
    }

    async fn run(&self) -> HookReport {
        self.run_with_budget(Duration::from_secs(5)).await
    }

    async fn run_deps(&self, deps: &Deps, budget: Duration) -> HookReport {
        let event: CodeDeployLifecycleEvent = serde_json::from_value(serde_json::json!({
            "DeploymentId": "d-1", "LifecycleEventHookExecutionId": "exec-1"
        }))
        .unwrap();
        handle(deps, event, &Invocation::for_test("req", budget))
            .await
            .unwrap()
    }

    /// The deployment's AppSpec deploys `task_definition`.
    fn deploys(&self, task_definition: &str) {
        self.codedeploy
            .deployments
            .lock()
            .unwrap()
            .get_mut("d-1")
            .unwrap()
            .appspec = Some(
            greenlight_shared::appspec::AppSpec {
                task_definition_arn: task_definition.into(),
                container_name: "web1".into(),
                container_port: 3000,
                hooks: vec![],
            }
            .to_json(),
        );
    }

    fn deps_clone(&self) -> Deps {
        Deps {
            config: self.deps.config.clone(),
            codedeploy: self.deps.codedeploy.clone(),
            ecs: self.deps.ecs.clone(),
            elb: self.deps.elb.clone(),
            prober: self.deps.prober.clone(),
            ledger: self.deps.ledger.clone(),
            safety_margin: self.deps.safety_margin,
        }
    }

    fn reports(&self) -> Vec<HookVerdict> {
        self.codedeploy
            .reports
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| *v)
            .collect()
    }
}

#[tokio::test]
async fn healthy_green_reports_succeeded_once() {
    let w = World::new(FakeProber::answering(vec![Ok(200)]));
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded");
    assert_eq!(report.reason, "all checks passed");
    assert_eq!(
        report.lifecycle_event.as_deref(),
        Some("AfterAllowTestTraffic")
    );
    assert_eq!(report.version.as_deref(), Some("v1.4.2"));
    assert_eq!(
        report
            .checks
            .iter()
            .map(|c| (c.check, c.passed))
            .collect::<Vec<_>>(),
        vec![
            ("task_set", true),
            ("target_health", true),
            ("http_probe", true)
        ]
    );
    assert_eq!(w.reports(), vec![HookVerdict::Succeeded]);
    // Probed through the test listener of the deployment group, never a URL from the event.
    assert_eq!(w.prober.urls.lock().unwrap().len(), 3);
    assert!(w
        .prober
        .urls
        .lock()
        .unwrap()
        .iter()
        .all(|u| u == "http://web1-test.elb.local:8080/api/health"));
}

#[tokio::test]
async fn never_healthy_probe_reports_failed_with_the_reason() {
    let w = World::new(FakeProber::answering(vec![Ok(500)]));
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert_eq!(report.reason, "http_probe failed: http://web1-test.elb.local:8080/api/health: 3 failed probes in a row (last: HTTP 500, expected 200)");
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
    // The reason is kept for the notifier.
    assert_eq!(
        w.ledger.record(DIGEST).unwrap().hook_reason,
        Some(report.reason.clone())
    );
}

#[tokio::test]
async fn connection_refused_counts_as_a_failed_probe() {
    let w = World::new(FakeProber::answering(vec![Err("connection failed".into())]));
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert!(
        report
            .reason
            .ends_with("3 failed probes in a row (last: connection failed)"),
        "{}",
        report.reason
    );
}

#[tokio::test]
async fn green_that_becomes_healthy_late_succeeds() {
    let w = World::new(FakeProber::answering(vec![
        Err("connection failed".into()),
        Ok(502),
        Ok(200),
        Ok(200),
        Ok(200),
    ]));
    *w.elb.health_answers.lock().unwrap() = vec![
        Ok(vec![TargetState {
            id: "10.0.0.1".into(),
            port: Some(3000),
            state: "initial".into(),
            reason: Some("Elb.RegistrationInProgress".into()),
        }]),
        Ok(healthy_targets(1)),
    ];
    *w.ecs.task_set_answers.lock().unwrap() = vec![
        Ok(steady(0, 2, "STABILIZING")),
        Ok(steady(2, 2, "STEADY_STATE")),
    ];
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
    assert_eq!(w.reports(), vec![HookVerdict::Succeeded]);
    assert_eq!(w.calls.count("DescribeTaskSets"), 2);
    assert_eq!(w.calls.count("DescribeTargetHealth"), 2);
}

#[tokio::test]
async fn flapping_probe_never_passes_and_fails_when_the_budget_runs_out() {
    let flapping: Vec<_> = (0..10_000)
        .map(|i| if i % 2 == 0 { Ok(200) } else { Ok(503) })
        .collect();
    let w = World::new(FakeProber::answering(flapping));
    let report = w.run_with_budget(Duration::from_millis(600)).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report
            .reason
            .contains("good answers in a row when the budget ran out"),
        "{}",
        report.reason
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn unhealthy_target_group_reports_failed() {
    let w = World::new(FakeProber::default());
    *w.elb.health_answers.lock().unwrap() = vec![Ok(vec![
        TargetState {
            id: "10.0.0.1".into(),
            port: Some(3000),
            state: "healthy".into(),
            reason: None,
        },
        TargetState {
            id: "10.0.0.2".into(),
            port: Some(3000),
            state: "unhealthy".into(),
            reason: Some("Target.ResponseCodeMismatch".into()),
        },
    ])];
    let report = w.run_with_budget(Duration::from_millis(500)).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report.reason.starts_with(
            "target_health failed: not healthy before the deadline: 1 of 2 targets not healthy in"
        ),
        "{}",
        report.reason
    );
    assert!(report
        .reason
        .contains("10.0.0.2 unhealthy (Target.ResponseCodeMismatch)"));
    assert!(
        w.prober.urls.lock().unwrap().is_empty(),
        "no probe after a failed check"
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn task_set_not_steady_or_under_count_reports_failed() {
    for answer in [steady(2, 2, "STABILIZING"), steady(1, 2, "STEADY_STATE")] {
        let w = World::new(FakeProber::default());
        *w.ecs.task_set_answers.lock().unwrap() = vec![Ok(answer)];
        let report = w.run_with_budget(Duration::from_millis(400)).await;
        assert_eq!(report.status, "Failed");
        assert!(
            report.reason.starts_with(
                "task_set failed: not ready before the deadline: ecs-svc/green running"
            ),
            "{}",
            report.reason
        );
        assert_eq!(w.reports(), vec![HookVerdict::Failed]);
    }
}

#[tokio::test]
async fn aws_error_mid_check_reports_failed() {
    let w = World::new(FakeProber::default());
    *w.ecs.task_set_answers.lock().unwrap() = vec![Err(AwsError::new(
        "DescribeTaskSets",
        "ECS service apps/web1",
        AwsErrorKind::AccessDenied,
        "AccessDeniedException: not authorized",
    ))];
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert_eq!(report.reason, "task_set failed: DescribeTaskSets on ECS service apps/web1: access denied: AccessDeniedException: not authorized");
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn deadline_close_still_reports_before_the_end() {
    let w = World::new(FakeProber::default());
    // A budget smaller than the safety margin: no time for checks at all, still one report.
    let report = w.run_with_budget(Duration::from_millis(150)).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report.reason.contains("budget ran out") || report.reason.contains("deadline"),
        "{}",
        report.reason
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn unknown_deployment_reports_failed() {
    let w = World::new(FakeProber::default());
    w.codedeploy.deployments.lock().unwrap().clear();
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        report.reason,
        "GetDeployment on d-1: not found: no such deployment"
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn unmanaged_deployment_group_reports_failed() {
    let w = World::new(FakeProber::default());
    w.codedeploy
        .deployments
        .lock()
        .unwrap()
        .get_mut("d-1")
        .unwrap()
        .deployment_group = "other".into();
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        report.reason,
        "deployment group web1/other is not managed by Greenlight"
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn a_target_read_showing_no_event_in_progress_still_reports() {
    // A stale read of the target (or the published output, which may list no lifecycle
    // events) must not skip the answer: a skipped answer holds the deployment for an hour.
    let w = World::new(FakeProber::default());
    w.codedeploy
        .targets
        .lock()
        .unwrap()
        .insert("d-1".into(), green_target(None));
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
    assert_eq!(w.reports(), vec![HookVerdict::Succeeded]);
}

#[tokio::test]
async fn redelivered_invocation_after_the_hook_was_answered_does_not_report_again() {
    let w = World::new(FakeProber::default());
    assert_eq!(w.run().await.status, "Succeeded");
    assert_eq!(
        w.ledger
            .record(DIGEST)
            .unwrap()
            .hook_reported_execution
            .as_deref(),
        Some("exec-1")
    );
    let again = w.run().await;
    assert_eq!(again.status, "Skipped");
    assert!(again.already_reported);
    assert_eq!(w.calls.count("PutLifecycleEventHookExecutionStatus"), 1);
}

#[tokio::test]
async fn green_without_a_label_is_found_by_the_task_definition_of_the_appspec() {
    let w = World::new(FakeProber::default());
    let td = "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8";
    let mut target = green_target(Some("AfterAllowTestTraffic"));
    for set in &mut target.task_sets {
        set.label = None;
    }
    w.codedeploy
        .targets
        .lock()
        .unwrap()
        .insert("d-1".into(), target);
    w.deploys(td);
    let mut sets = steady(2, 2, "STEADY_STATE");
    sets[0].task_definition_arn = Some(td.into());
    sets[0].target_group_arn = Some("arn:tg-green".into());
    *w.ecs.task_set_answers.lock().unwrap() = vec![Ok(sets)];
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
    assert_eq!(w.reports(), vec![HookVerdict::Succeeded]);
}

#[tokio::test]
async fn a_green_task_set_that_wants_no_tasks_fails() {
    let w = World::new(FakeProber::default());
    *w.ecs.task_set_answers.lock().unwrap() = vec![Ok(steady(0, 0, "STEADY_STATE"))];
    let report = w.run_with_budget(Duration::from_millis(400)).await;
    assert_eq!(report.status, "Failed", "{report:?}");
    assert!(
        report.reason.starts_with("task_set failed"),
        "{}",
        report.reason
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

/// A prober that panics, or never answers.
struct BrokenProber {
    hang: bool,
}

#[async_trait]
impl Prober for BrokenProber {
    async fn get(
        &self,
        _url: &str,
        _host: Option<&str>,
        _timeout: Duration,
    ) -> Result<u16, String> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        panic!("index out of bounds: the len is 0 but the index is 0")
    }
}

#[tokio::test]
async fn a_check_that_panics_is_reported_failed() {
    let w = World::new(FakeProber::default());
    let deps = Deps {
        prober: Arc::new(BrokenProber { hang: false }),
        ..w.deps_clone()
    };
    let report = w.run_deps(&deps, Duration::from_secs(5)).await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        report.reason,
        "a check failed unexpectedly: index out of bounds: the len is 0 but the index is 0"
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
}

#[tokio::test]
async fn a_check_that_hangs_is_reported_failed_before_the_deadline() {
    let w = World::new(FakeProber::default());
    let deps = Deps {
        prober: Arc::new(BrokenProber { hang: true }),
        ..w.deps_clone()
    };
    let started = std::time::Instant::now();
    let budget = Duration::from_millis(800);
    let report = w.run_deps(&deps, budget).await;
    assert_eq!(report.status, "Failed");
    assert!(
        report.reason.starts_with("time budget ran out"),
        "{}",
        report.reason
    );
    assert_eq!(w.reports(), vec![HookVerdict::Failed]);
    assert!(started.elapsed() < budget, "answered after the deadline");
}

#[tokio::test]
async fn already_completed_answer_is_treated_as_done() {
    let w = World::new(FakeProber::default());
    w.codedeploy
        .report_errors
        .lock()
        .unwrap()
        .push(AwsError::new(
            "PutLifecycleEventHookExecutionStatus",
            "deployment d-1",
            AwsErrorKind::AlreadyCompleted,
            "LifecycleEventAlreadyCompletedException",
        ));
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded");
    assert!(report.already_reported);
    assert_eq!(w.calls.count("PutLifecycleEventHookExecutionStatus"), 1);
}

#[tokio::test]
async fn report_that_cannot_be_delivered_fails_the_invocation() {
    let w = World::new(FakeProber::default());
    w.codedeploy
        .report_errors
        .lock()
        .unwrap()
        .push(AwsError::new(
            "PutLifecycleEventHookExecutionStatus",
            "deployment d-1",
            AwsErrorKind::Throttled,
            "ThrottlingException: Rate exceeded",
        ));
    let event: CodeDeployLifecycleEvent = serde_json::from_value(
        serde_json::json!({"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "exec-1"}),
    )
    .unwrap();
    let err = handle(
        &w.deps,
        event,
        &Invocation::for_test("req", Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("could not report Succeeded to CodeDeploy"),
        "{err}"
    );
}

#[tokio::test]
async fn without_a_deployment_target_the_task_set_is_found_from_the_appspec() {
    let w = World::new(FakeProber::default());
    w.codedeploy.targets.lock().unwrap().clear();
    let td = "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8";
    w.deploys(td);
    let mut set = steady(1, 1, "STEADY_STATE");
    set[0].task_definition_arn = Some(td.into());
    set[0].target_group_arn = Some("arn:tg-green".into());
    *w.ecs.task_set_answers.lock().unwrap() = vec![Ok(set)];
    let report = w.run().await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
}

#[tokio::test]
async fn an_https_test_listener_without_a_host_fails_saying_what_to_set() {
    let w = World::new(FakeProber::default());
    let mut elb = FakeLoadBalancing::new(w.calls.clone());
    elb.test_listener.protocol = "HTTPS".into();
    let deps = Deps {
        elb: Arc::new(elb),
        ..w.deps_clone()
    };
    let report = w.run_deps(&deps, Duration::from_secs(5)).await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        report.reason,
        "http_probe failed: the test listener is HTTPS: its certificate cannot be checked against the load balancer's name web1-test.elb.local; set apps.web1.health.host to the name it is for"
    );
    assert!(w.prober.urls.lock().unwrap().is_empty(), "nothing probed");
}

#[tokio::test]
async fn a_probe_through_the_listener_that_fails_hints_at_host_routing() {
    let w = World::new(FakeProber::answering(vec![Ok(404)]));
    let report = w.run().await;
    assert_eq!(report.status, "Failed");
    assert!(
        report
            .reason
            .ends_with("(if the test listener routes by host header, set apps.web1.health.host)"),
        "{}",
        report.reason
    );
}
