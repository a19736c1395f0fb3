//! The deployer over fakes, for a service ECS deploys itself (native blue/green): the same
//! decisions as with CodeDeploy, through UpdateService and the service deployment APIs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use greenlight_deployer::{handle, DeployError, Deps, Outcome};
use greenlight_shared::aws::ecs::ServiceDeploymentBrief;
use greenlight_shared::fakes::{
    digest, sample_event as sample, Calls, FakeCodeDeploy, FakeEcs, FakeLedger, FakeRegistry,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::ReleaseStatus;
use greenlight_shared::Config;
use serde_json::{json, Value};

/// web1 names its service only: its engine is read from it.
const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
cluster = "default"
service = "web1"
"#;
const OLD_IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@sha256:0000000000000000000000000000000000000000000000000000000000000000";
const FOREIGN: &str =
    "arn:aws:ecs:us-east-1:123456789012:service-deployment/default/web1/someone-else";

struct World {
    deps: Deps,
    calls: Arc<Calls>,
    ledger: Arc<FakeLedger>,
    ecs: Arc<FakeEcs>,
}

impl World {
    fn new() -> Self {
        Self::configured(CONFIG)
    }

    fn configured(config: &str) -> Self {
        let calls = Arc::new(Calls::default());
        let ledger = Arc::new(FakeLedger::default());
        let ecs = Arc::new(FakeEcs::new(calls.clone(), OLD_IMAGE).native());
        let deps = Deps {
            config: Config::parse(config).unwrap(),
            codedeploy: Arc::new(FakeCodeDeploy::new(calls.clone())),
            ecs: ecs.clone(),
            registry: Arc::new(FakeRegistry::new(calls.clone())),
            ledger: ledger.clone(),
            hook_function: "greenlight-health-hook".into(),
            lease_margin: Duration::ZERO,
            readback_pause: Duration::ZERO,
            gates: greenlight_shared::fakes::idle_gates(),
        };
        Self {
            deps,
            calls,
            ledger,
            ecs,
        }
    }

    async fn run(&self, event: Value, request_id: &str) -> Result<Outcome, DeployError> {
        handle(
            &self.deps,
            event,
            &Invocation::for_test(request_id, Duration::from_secs(30)),
        )
        .await
    }

    fn deployments(&self) -> Vec<ServiceDeploymentBrief> {
        let listed = self.ecs.service_deployments.lock().unwrap();
        listed.iter().map(|(d, _)| d.clone()).collect()
    }
}

fn push(version: &str, n: u8, time: &str) -> Value {
    let mut e = sample("ecr-push-version");
    e["detail"]["image-tag"] = json!(version);
    e["detail"]["image-digest"] = json!(digest(n));
    e["time"] = json!(time);
    e
}

fn ecs_event(name: &str, service: &str) -> Value {
    let mut e = sample("ecs-deployment-state-change-completed");
    e["detail"]["eventName"] = json!(name);
    e["resources"] = json!([format!(
        "arn:aws:ecs:us-east-1:123456789012:service/default/{service}"
    )]);
    e
}

fn out_rollout(out: &Outcome) -> Option<String> {
    match out {
        Outcome::Planned { rollout, .. } => rollout.clone(),
        other => panic!("not planned: {other:?}"),
    }
}

fn deployed_id(out: &Outcome) -> String {
    match out {
        Outcome::Deployed { deployment_id, .. } => deployment_id.clone(),
        other => panic!("not deployed: {other:?}"),
    }
}

#[tokio::test]
async fn a_push_to_a_native_service_starts_one_service_deployment_and_records_its_arn() {
    let w = World::new();
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let id = deployed_id(&out);
    assert!(id.contains(":service-deployment/default/web1/"), "{id}");
    assert_eq!(
        w.ecs.updated_to(),
        vec!["arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8"]
    );
    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(r.status, ReleaseStatus::Deploying);
    assert_eq!(r.deployment_id.as_deref(), Some(id.as_str()));
    // BatchGetImage, DescribeServices, DescribeTaskDefinition, RegisterTaskDefinition,
    // ListServiceDeployments (busy?), UpdateService; nothing of CodeDeploy.
    assert_eq!(w.calls.total(), 6, "{:?}", w.calls.0.lock().unwrap());
    assert_eq!(w.calls.count("ListServiceDeployments"), 1);
    assert_eq!(w.calls.count("GetDeploymentGroup"), 0);
    assert_eq!(w.calls.count("CreateDeployment"), 0);
}

#[tokio::test]
async fn a_push_during_a_native_deployment_waits_and_ships_when_ecs_says_it_ended() {
    let w = World::new();
    let first = deployed_id(
        &w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
            .await
            .unwrap(),
    );
    let out = w
        .run(push("v1.4.3", 2, "2026-11-25T10:13:00Z"), "req-2")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Waiting { .. }), "{out:?}");
    assert_eq!(w.ecs.updated_to().len(), 1, "one deployment at a time");

    // An event while green is still being checked changes nothing.
    let calls = w.calls.total();
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_IN_PROGRESS", "web1"), "req-3")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    assert_eq!(w.calls.total(), calls, "no AWS call for IN_PROGRESS");
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-4")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Skipped { reason } if reason.contains("still in progress")),
        "the event is read back, not believed: {out:?}"
    );

    w.ecs.set_deployment_status(&first, "SUCCESSFUL");
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-5")
        .await
        .unwrap();
    let Outcome::Finished {
        deployment_id,
        next: Some(next),
        ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(deployment_id, &first);
    let second = deployed_id(next);
    assert_ne!(second, first);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Succeeded
    );
    assert_eq!(
        w.ledger
            .record(&digest(2))
            .unwrap()
            .deployment_id
            .as_deref(),
        Some(second.as_str())
    );
}

#[tokio::test]
async fn a_native_rollback_fails_the_release_and_its_late_event_is_a_no_op() {
    let w = World::new();
    let first = deployed_id(
        &w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
            .await
            .unwrap(),
    );
    // The hook said FAILED: ECS rolls back; the deployment holds the service until it is done.
    w.ecs.set_deployment_status(&first, "ROLLBACK_IN_PROGRESS");
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_FAILED", "web1"), "req-2")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    w.ecs.set_deployment_status(&first, "ROLLBACK_SUCCESSFUL");
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-3")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Finished { .. }), "{out:?}");
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Failed,
        "a rollback is never a success"
    );
    // Duplicate and late deliveries find nothing deploying the service.
    for id in ["req-4", "req-5"] {
        let out = w
            .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), id)
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    }
    assert_eq!(w.ecs.updated_to().len(), 1);
}

#[tokio::test]
async fn a_service_deploying_without_greenlight_is_busy_and_the_release_waits_for_it() {
    let w = World::new();
    w.ecs.service_deployments.lock().unwrap().push((
        ServiceDeploymentBrief {
            arn: FOREIGN.into(),
            status: "IN_PROGRESS".into(),
            target_revision: Some("arn:rev/foreign".into()),
            created_at: Some(chrono::Utc::now()),
            ..Default::default()
        },
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:7".into(),
    ));
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Waiting { .. }), "{out:?}");
    assert_eq!(
        w.calls.count("UpdateService"),
        0,
        "never supersede a deployment"
    );
    assert_eq!(w.ledger.queue_of("web1").active_deployment(), Some(FOREIGN));

    w.ecs.set_deployment_status(FOREIGN, "SUCCESSFUL");
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-2")
        .await
        .unwrap();
    let Outcome::Finished {
        next: Some(next), ..
    } = &out
    else {
        panic!("{out:?}")
    };
    deployed_id(next);
    assert_eq!(w.calls.count("UpdateService"), 1);
}

#[tokio::test]
async fn an_update_service_answer_without_the_deployment_finds_it_by_its_revision() {
    let w = World::new();
    w.ecs
        .names_current_deployment
        .store(false, Ordering::SeqCst);
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let id = deployed_id(&out);
    assert_eq!(id, w.deployments()[0].arn);
    assert_eq!(w.calls.count("UpdateService"), 1);
}

#[tokio::test]
async fn a_resumed_release_adopts_the_deployment_its_lost_answer_started() {
    let w = World::new();
    w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let started = w.deployments()[0].arn.clone();
    // The invocation died after UpdateService, before the ledger knew: the ledger says the
    // release holds the queue with its revision registered and no deployment.
    let mut queue = w.ledger.queue_of("web1");
    let active = queue.active.as_mut().unwrap();
    active.deployment_id = None;
    active.owner = "req-dead".into();
    active.lease_until_ms = chrono::Utc::now().timestamp_millis() - 5_000;
    w.ledger.set_queue("web1", queue);
    let mut record = w.ledger.record(&digest(1)).unwrap();
    record.status = ReleaseStatus::Claimed;
    record.deployment_id = None;
    record.owner = Some("req-dead".into());
    record.lease_until = Some(chrono::Utc::now() - chrono::Duration::seconds(5));
    w.ledger.insert(record);

    let out = w.run(sample("scheduled-sweep"), "req-2").await.unwrap();
    let Outcome::Swept { actions, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(actions.len(), 1, "{out:?}");
    assert_eq!(deployed_id(&actions[0]), started);
    assert_eq!(w.calls.count("UpdateService"), 1, "never deployed twice");
    assert_eq!(
        w.ledger.queue_of("web1").active_deployment(),
        Some(started.as_str())
    );
}

#[tokio::test]
async fn a_pinned_engine_the_service_does_not_use_fails_the_release_with_the_reason() {
    let w = World::configured(&format!("{CONFIG}engine = \"codedeploy\"\napplication = \"web1\"\ndeployment_group = \"web1-bluegreen\"\n"));
    let err = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::EngineMismatch { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "app `web1` pins engine CodeDeploy, but its service is deployed by ECS blue/green"
    );
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(
        w.calls.count("UpdateService") + w.calls.count("CreateDeployment"),
        0
    );
}

#[tokio::test]
async fn a_canary_or_linear_service_ships_through_the_native_engine_as_it_is_configured() {
    for strategy in ["CANARY", "LINEAR"] {
        let mut w = World::new();
        let ecs = Arc::new(FakeEcs::new(w.calls.clone(), OLD_IMAGE).progressive(strategy));
        w.deps.ecs = ecs.clone();
        w.ecs = ecs;
        let out = w
            .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
            .await
            .unwrap();
        let id = deployed_id(&out);
        assert!(
            id.contains(":service-deployment/default/web1/"),
            "{strategy}: {id}"
        );
        // One UpdateService with the new revision, and nothing else asked of the service:
        // its deployment configuration stays the team's.
        assert_eq!(w.calls.count("UpdateService"), 1, "{strategy}");
        assert_eq!(w.calls.count("CreateDeployment"), 0, "{strategy}");
        assert_eq!(w.calls.total(), 6, "{strategy}");
        let r = w.ledger.record(&digest(1)).unwrap();
        assert_eq!(r.status, ReleaseStatus::Deploying, "{strategy}");
        // ECS says it ended: the release succeeded, as for blue/green.
        w.ecs.set_deployment_status(&id, "SUCCESSFUL");
        w.run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-2")
            .await
            .unwrap();
        assert_eq!(
            w.ledger.record(&digest(1)).unwrap().status,
            ReleaseStatus::Succeeded,
            "{strategy}"
        );
    }
}

#[tokio::test]
async fn a_rolling_service_is_not_deployed() {
    let w = World::new();
    *w.ecs.strategy.lock().unwrap() = Some("ROLLING".into());
    let err = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::NotBlueGreen { .. }), "{err}");
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Failed
    );
}

#[tokio::test]
async fn an_app_named_by_its_codedeploy_group_follows_its_service_to_the_native_engine() {
    // The service was moved from CodeDeploy to ECS blue/green; the config still names the group.
    let w = World::configured(
        "[apps.web1]\nrepository = \"web1\"\napplication = \"web1\"\ndeployment_group = \"web1-bluegreen\"\n",
    );
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    deployed_id(&out);
    assert_eq!(w.calls.count("UpdateService"), 1);
    assert_eq!(w.calls.count("CreateDeployment"), 0);
}

#[tokio::test]
async fn events_of_services_nobody_deploys_are_skipped_after_one_ledger_read() {
    let w = World::new();
    let out = w
        .run(
            ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "billing"),
            "req-1",
        )
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    assert_eq!(w.calls.total(), 0);
    let mut nameless = ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1");
    nameless["resources"] = json!([]);
    let out = w.run(nameless, "req-2").await.unwrap();
    assert!(matches!(out, Outcome::Skipped { .. }), "{out:?}");
    // Names ECS could not have made are not looked for (nor logged in full).
    for service in ["web1|x".to_string(), "w".repeat(256)] {
        let out = w
            .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", &service), "req-3")
            .await
            .unwrap();
        assert!(
            matches!(&out, Outcome::Skipped { reason } if reason.contains("no valid service")),
            "{out:?}"
        );
    }
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn a_plan_for_a_native_service_names_its_engine_and_writes_nothing() {
    let w = World::new();
    let registry = Arc::new(FakeRegistry::new(w.calls.clone()));
    registry
        .images
        .lock()
        .unwrap()
        .push(greenlight_shared::aws::ecr::RegistryImage {
            digest: digest(1),
            tags: vec!["v1.4.2".into()],
        });
    let mut deps = w.deps;
    deps.registry = registry;
    let plan = json!({
        "greenlight": "plan", "app": "web1", "release": "v1.4.2",
        "request_id": "7d8e2c1a-0000-4000-8000-000000000008",
        "requested_by": "arn:aws:iam::123456789012:user/alice",
        "requested_at": chrono::Utc::now().to_rfc3339(),
    });
    let out = handle(
        &deps,
        plan,
        &Invocation::for_test("req-1", Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let Outcome::Planned {
        engine, appspec, ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(*engine, greenlight_shared::engine::EngineKind::Ecs);
    assert!(appspec.is_null(), "{appspec}");
    assert_eq!(
        out_rollout(&out),
        Some("blue/green: 100% at once".to_string())
    );
    assert_eq!(w.calls.count("UpdateService"), 0);
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
    assert!(w.ledger.record(&digest(1)).is_none());
}

#[tokio::test]
async fn the_retry_of_an_end_event_that_failed_to_start_the_next_release_starts_it_at_once() {
    let w = World::new();
    let first = deployed_id(
        &w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
            .await
            .unwrap(),
    );
    w.run(push("v1.4.3", 2, "2026-11-25T10:13:00Z"), "req-2")
        .await
        .unwrap();
    w.ecs.set_deployment_status(&first, "SUCCESSFUL");
    *w.ecs.failing_updates.lock().unwrap() = 1;
    let err = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-3")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UpdateService"), "{err}");
    // Lambda retries the event with the same request id: the release it holds goes on now,
    // not when its lease runs out and a sweep comes.
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-3")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Deployed { version, .. } if version == "v1.4.3"),
        "{out:?}"
    );
    assert_eq!(w.ecs.updated_to().len(), 2);
    assert_eq!(
        w.ledger.record(&digest(2)).unwrap().status,
        ReleaseStatus::Deploying
    );
}

#[tokio::test]
async fn an_end_event_while_the_deployment_is_being_recorded_is_read_again_then_let_go() {
    let w = World::new();
    w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    // Another invocation holds the queue and has not recorded its deployment yet.
    let mut queue = w.ledger.queue_of("web1");
    let active = queue.active.as_mut().unwrap();
    active.deployment_id = None;
    active.owner = "req-live".into();
    active.lease_until_ms = chrono::Utc::now().timestamp_millis() + 60_000;
    w.ledger.set_queue("web1", queue.clone());
    let out = w
        .run(ecs_event("SERVICE_DEPLOYMENT_COMPLETED", "web1"), "req-2")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Skipped { reason } if reason.contains("still being recorded")),
        "{out:?}"
    );
    // Read again three times, and nothing written.
    assert_eq!(w.ledger.queue_of("web1"), queue);
}
