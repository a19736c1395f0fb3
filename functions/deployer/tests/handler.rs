//! Deployer handler over fakes: each decision of a push and of a deployment's end.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use greenlight_deployer::{handle, DeployError, Deps, Outcome};
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::Deployment;
use greenlight_shared::fakes::{
    digest, sample_event as sample, Calls, FakeCodeDeploy, FakeEcs, FakeLedger, FakeRegistry,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{ReleaseRecord, ReleaseStatus};
use greenlight_shared::queue::{Active, Queue, Ticket};
use greenlight_shared::{AwsError, AwsErrorKind, Config};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
"#;
const OLD_IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@sha256:0000000000000000000000000000000000000000000000000000000000000000";

struct World {
    deps: Deps,
    calls: Arc<Calls>,
    ledger: Arc<FakeLedger>,
    codedeploy: Arc<FakeCodeDeploy>,
    ecs: Arc<FakeEcs>,
    registry: Arc<FakeRegistry>,
}

impl World {
    fn new() -> Self {
        Self::with(FakeLedger::default(), |_| {})
    }

    fn with(ledger: FakeLedger, tweak: impl FnOnce(&mut FakeCodeDeploy)) -> Self {
        let calls = Arc::new(Calls::default());
        let mut codedeploy = FakeCodeDeploy::new(calls.clone());
        tweak(&mut codedeploy);
        let (codedeploy, ledger) = (Arc::new(codedeploy), Arc::new(ledger));
        let ecs = Arc::new(FakeEcs::new(calls.clone(), OLD_IMAGE));
        let registry = Arc::new(FakeRegistry::new(calls.clone()));
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            codedeploy: codedeploy.clone(),
            ecs: ecs.clone(),
            registry: registry.clone(),
            ledger: ledger.clone(),
            hook_function: "CodeDeployHook_greenlight".into(),
            lease_margin: Duration::ZERO,
            readback_pause: Duration::ZERO,
            gates: greenlight_shared::fakes::idle_gates(),
        };
        Self {
            deps,
            calls,
            ledger,
            codedeploy,
            ecs,
            registry,
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
}

fn image(n: u8) -> String {
    format!(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@{}",
        digest(n)
    )
}

fn push(version: &str, n: u8, time: &str) -> Value {
    let mut e = sample("ecr-push-version");
    e["detail"]["image-tag"] = json!(version);
    e["detail"]["image-digest"] = json!(digest(n));
    e["time"] = json!(time);
    e
}

fn deployment_end(id: &str, state: &str) -> Value {
    let mut e = sample("codedeploy-success");
    e["detail"]["deploymentId"] = json!(id);
    e["detail"]["state"] = json!(state);
    e
}

/// A queue whose active release `n` was taken by an invocation that died.
fn held_by_dead_invocation(n: u8, deployment_id: Option<&str>) -> Queue {
    let ticket = Ticket {
        pushed_at_ms: "2026-11-25T10:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_millis(),
        digest: digest(n),
        version: "v1.4.2".into(),
    };
    Queue {
        active: Some(Active {
            release: Some(ticket.clone()),
            deployment_id: deployment_id.map(str::to_string),
            owner: "req-dead".into(),
            lease_until_ms: Utc::now().timestamp_millis() - 5_000,
            since_ms: Utc::now().timestamp_millis() - 60_000,
        }),
        pending: None,
        newest_started: Some(ticket),
        early_ends: vec![],
        version: 3,
    }
}

fn record(n: u8, version: &str, status: ReleaseStatus) -> ReleaseRecord {
    ReleaseRecord {
        app: "web1".into(),
        digest: digest(n),
        version: version.into(),
        image: image(n),
        pushed_at: "2026-11-25T10:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        status,
        owner: Some("req-dead".into()),
        lease_until: Some(Utc::now() - chrono::Duration::seconds(5)),
        task_definition_arn: None,
        deployment_id: None,
        superseded_by: None,
        hook_reason: None,
        hook_reported_execution: None,
        provenance: Default::default(),
        request: None,
    }
}

#[tokio::test]
async fn version_push_registers_one_revision_and_starts_one_deployment() {
    let w = World::new();
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let Outcome::Deployed {
        deployment_id,
        task_definition,
        ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(deployment_id, "d-FAKE00001");
    assert_eq!(
        task_definition,
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8"
    );
    assert_eq!(w.ecs.registered_images(), vec![image(1)]);

    let created = w.codedeploy.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    assert_eq!(
        (
            created[0].application.as_str(),
            created[0].deployment_group.as_str()
        ),
        ("web1", "web1-bluegreen")
    );
    let appspec: Value = serde_json::from_str(&created[0].appspec).unwrap();
    let props = &appspec["Resources"][0]["TargetService"]["Properties"];
    assert_eq!(props["TaskDefinition"], json!(task_definition));
    assert_eq!(
        props["LoadBalancerInfo"],
        json!({"ContainerName": "web1", "ContainerPort": 3000})
    );
    assert_eq!(
        appspec["Hooks"],
        json!([{"AfterAllowTestTraffic": "CodeDeployHook_greenlight"}])
    );
    assert_eq!(
        AppSpec::task_definition_of(&created[0].appspec).as_deref(),
        Some(task_definition.as_str())
    );
    let description = ReleaseDescription::parse(&created[0].description).unwrap();
    assert_eq!(
        (description.app.as_str(), description.version.as_str()),
        ("web1", "v1.4.2")
    );
    assert_eq!(description.digest, digest(1));

    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(r.status, ReleaseStatus::Deploying);
    assert_eq!(r.deployment_id.as_deref(), Some("d-FAKE00001"));
    assert_eq!(
        w.ledger.queue_of("web1").active_deployment(),
        Some("d-FAKE00001")
    );
    // BatchGetImage (provenance), GetDeploymentGroup, DescribeServices, DescribeTaskDefinition,
    // RegisterTaskDefinition, CreateDeployment.
    assert_eq!(w.calls.total(), 6);
    assert_eq!(w.calls.count("BatchGetImage"), 1);
}

#[tokio::test]
async fn the_images_provenance_is_kept_with_the_release() {
    let w = World::new();
    *w.registry.provenance.lock().unwrap() = greenlight_shared::provenance::Provenance {
        revision: Some("9fceb02d0ae598e95dc970b74767f19372d61af8".into()),
        source: Some("https://github.com/acme/web".into()),
        run_url: Some("https://github.com/acme/web/actions/runs/7".into()),
        actor: Some("octocat".into()),
    };
    w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(r.provenance.actor.as_deref(), Some("octocat"));
    assert_eq!(r.provenance.short_revision(), Some("9fceb02"));
}

#[tokio::test]
async fn an_image_whose_provenance_cannot_be_read_deploys_without_it() {
    let w = World::new();
    *w.registry.fails.lock().unwrap() = true;
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    assert!(w.ledger.record(&digest(1)).unwrap().provenance.is_empty());
    assert_eq!(w.calls.count("CreateDeployment"), 1);
}

#[tokio::test]
async fn skipped_events_make_no_aws_or_ledger_call() {
    let ledger = FakeLedger {
        unreachable: true, // any ledger call would fail the test
        ..Default::default()
    };
    let w = World::with(ledger, |_| {});
    for name in [
        "ecr-push-latest",
        "ecr-push-failed",
        "ecr-delete",
        "ecr-archive-untagged",
    ] {
        let out = w.run(sample(name), "req-1").await.unwrap();
        assert!(matches!(out, Outcome::Skipped { .. }), "{name}: {out:?}");
    }
    let mut other_repo = sample("ecr-push-version");
    other_repo["detail"]["repository-name"] = json!("billing");
    let mut other_account = sample("ecr-push-version");
    other_account["account"] = json!("999999999999");
    for event in [other_repo, other_account] {
        assert!(matches!(
            w.run(event, "req-1").await.unwrap(),
            Outcome::Skipped { .. }
        ));
    }
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn redelivered_push_and_latest_twin_deploy_once() {
    let w = World::new();
    let first = push("v1.4.2", 1, "2026-11-25T10:12:03Z");
    w.run(first.clone(), "req-1").await.unwrap();
    let again = w.run(first, "req-2").await.unwrap();
    assert_eq!(
        again,
        Outcome::Duplicate {
            app: "web1".into(),
            version: "v1.4.2".into(),
            status: "deploying".into()
        }
    );
    let mut latest = push("latest", 1, "2026-11-25T10:12:04Z");
    latest["detail"]["image-tag"] = json!("latest");
    assert!(matches!(
        w.run(latest, "req-3").await.unwrap(),
        Outcome::Skipped { .. }
    ));
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 1);
    assert_eq!(w.calls.count("CreateDeployment"), 1);
}

#[tokio::test]
async fn concurrent_duplicate_with_live_claim_does_nothing() {
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        owner: Some("req-other".into()),
        lease_until: Some(Utc::now() + chrono::Duration::seconds(60)),
        ..record(1, "v1.4.2", ReleaseStatus::Claimed)
    });
    let w = World::with(ledger, |_| {});
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::InProgressElsewhere {
            app: "web1".into(),
            version: "v1.4.2".into()
        }
    );
    // Only the read-only provenance read, which comes before the claim.
    assert_eq!(w.calls.total(), 1);
    assert_eq!(w.calls.count("BatchGetImage"), 1);
}

#[tokio::test]
async fn crash_after_registration_resumes_without_registering_again() {
    let ledger = FakeLedger::default();
    let td = "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:42";
    ledger.insert(ReleaseRecord {
        task_definition_arn: Some(td.into()),
        ..record(1, "v1.4.2", ReleaseStatus::Registered)
    });
    ledger.set_queue("web1", held_by_dead_invocation(1, None));
    let w = World::with(ledger, |_| {});
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-retry")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Deployed { task_definition, .. } if task_definition == td),
        "{out:?}"
    );
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
    // Resumed: it first looks for a deployment of its own whose answer was lost.
    assert_eq!(w.calls.count("ListDeployments"), 1);
    assert_eq!(w.calls.count("CreateDeployment"), 1);
    assert_eq!(
        AppSpec::task_definition_of(&w.codedeploy.created.lock().unwrap()[0].appspec).as_deref(),
        Some(td)
    );
}

#[tokio::test]
async fn claim_with_expired_lease_is_taken_over() {
    let ledger = FakeLedger::default();
    ledger.insert(record(1, "v1.4.2", ReleaseStatus::Claimed));
    ledger.set_queue("web1", held_by_dead_invocation(1, None));
    let w = World::with(ledger, |_| {});
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-2")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().owner.as_deref(),
        Some("req-2")
    );
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 1);
}

#[tokio::test]
async fn push_of_the_running_digest_does_nothing() {
    let w = World::new();
    *w.ecs.running_image.lock().unwrap() = image(1);
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::AlreadyRunning {
            app: "web1".into(),
            version: "v1.4.2".into()
        }
    );
    assert_eq!(
        w.calls.count("RegisterTaskDefinition") + w.calls.count("CreateDeployment"),
        0
    );
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::AlreadyRunning
    );
}

#[tokio::test]
async fn busy_group_makes_the_push_wait_and_newest_wins() {
    let w = World::new();
    w.run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    let v2 = w
        .run(push("v2", 2, "2026-11-25T10:01:00Z"), "req-2")
        .await
        .unwrap();
    assert_eq!(
        v2,
        Outcome::Waiting {
            app: "web1".into(),
            version: "v2".into(),
            replaced: None
        }
    );
    let v3 = w
        .run(push("v3", 3, "2026-11-25T10:02:00Z"), "req-3")
        .await
        .unwrap();
    assert_eq!(
        v3,
        Outcome::Waiting {
            app: "web1".into(),
            version: "v3".into(),
            replaced: Some(digest(2))
        }
    );
    assert_eq!(
        w.ledger.record(&digest(2)).unwrap().status,
        ReleaseStatus::Superseded
    );
    assert_eq!(
        w.ledger.record(&digest(2)).unwrap().superseded_by,
        Some(digest(3))
    );
    // Waiting releases register nothing yet.
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 1);
    assert_eq!(w.calls.count("CreateDeployment"), 1);
}

#[tokio::test]
async fn older_push_does_not_replace_a_newer_pending_one() {
    let w = World::new();
    w.run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    w.run(push("v3", 3, "2026-11-25T10:02:00Z"), "req-3")
        .await
        .unwrap();
    let late = w
        .run(push("v2", 2, "2026-11-25T10:01:00Z"), "req-2")
        .await
        .unwrap();
    assert_eq!(
        late,
        Outcome::Superseded {
            app: "web1".into(),
            version: "v2".into(),
            by: digest(3)
        }
    );
    assert_eq!(
        w.ledger.queue_of("web1").pending.map(|t| t.digest),
        Some(digest(3))
    );
}

#[tokio::test]
async fn end_of_running_deployment_starts_the_pending_release() {
    let w = World::new();
    w.run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    w.run(push("v2", 2, "2026-11-25T10:01:00Z"), "req-2")
        .await
        .unwrap();
    let out = w
        .run(deployment_end("d-FAKE00001", "SUCCESS"), "req-3")
        .await
        .unwrap();
    let Outcome::Finished {
        next: Some(next), ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert!(
        matches!(next.as_ref(), Outcome::Deployed { version, deployment_id, .. } if version == "v2" && deployment_id == "d-FAKE00002"),
        "{next:?}"
    );
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Succeeded
    );
    assert_eq!(
        w.ledger.record(&digest(2)).unwrap().status,
        ReleaseStatus::Deploying
    );
    assert_eq!(w.ecs.registered_images(), vec![image(1), image(2)]);
}

#[tokio::test]
async fn end_of_deployment_with_nothing_pending_does_nothing_more() {
    let w = World::new();
    w.run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    let calls_before = w.calls.total();
    let out = w
        .run(deployment_end("d-FAKE00001", "FAILURE"), "req-2")
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::Finished {
            app: "web1".into(),
            deployment_id: "d-FAKE00001".into(),
            next: None
        }
    );
    assert_eq!(w.calls.total(), calls_before);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(w.ledger.queue_of("web1").active, None);
}

#[tokio::test]
async fn start_and_ready_events_are_not_ends() {
    let w = World::new();
    for state in ["START", "READY"] {
        assert!(matches!(
            w.run(deployment_end("d-1", state), "req").await.unwrap(),
            Outcome::Skipped { .. }
        ));
    }
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn group_busy_outside_greenlight_waits_for_its_end() {
    let w = World::with(FakeLedger::default(), |cd| {
        cd.create_errors.lock().unwrap().push(AwsError::new(
            "CreateDeployment",
            "deployment group web1/web1-bluegreen",
            AwsErrorKind::DeploymentLimitExceeded,
            "DeploymentLimitExceededException: The Deployment Group 'web1-bluegreen' already has an active Deployment 'd-MANUAL001'",
        ));
        cd.deployments.lock().unwrap().insert(
            "d-MANUAL001".into(),
            Deployment {
                id: "d-MANUAL001".into(),
                status: "InProgress".into(),
                description: Some("hotfix by hand".into()),
                ..Default::default()
            },
        );
    });
    let out = w
        .run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    assert_eq!(
        out,
        Outcome::Waiting {
            app: "web1".into(),
            version: "v1".into(),
            replaced: None
        }
    );
    let queue = w.ledger.queue_of("web1");
    assert_eq!(
        queue.active_deployment(),
        Some("d-MANUAL001"),
        "the foreign deployment holds the queue"
    );
    assert_eq!(queue.pending.map(|t| t.digest), Some(digest(1)));
    let pending = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(pending.status, ReleaseStatus::Pending);
    assert!(
        pending.task_definition_arn.is_some(),
        "the registered revision is kept"
    );
    // The manual deployment ends: the release ships, without registering a second revision.
    w.codedeploy
        .deployments
        .lock()
        .unwrap()
        .get_mut("d-MANUAL001")
        .unwrap()
        .status = "Succeeded".into();
    let out = w
        .run(deployment_end("d-MANUAL001", "SUCCESS"), "req-2")
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Finished { next: Some(_), .. }),
        "{out:?}"
    );
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 1);
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Deploying
    );
}

#[tokio::test]
async fn slot_held_by_an_ended_deployment_is_reconciled() {
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        deployment_id: Some("d-LOST00001".into()),
        ..record(9, "v0", ReleaseStatus::Deploying)
    });
    let mut queue = held_by_dead_invocation(9, Some("d-LOST00001"));
    queue.newest_started.as_mut().unwrap().pushed_at_ms -= 60_000;
    queue.active.as_mut().unwrap().release = queue.newest_started.clone();
    ledger.set_queue("web1", queue);
    let w = World::with(ledger, |cd| {
        cd.deployments.lock().unwrap().insert(
            "d-LOST00001".into(),
            Deployment {
                id: "d-LOST00001".into(),
                status: "Succeeded".into(),
                ..Default::default()
            },
        );
    });
    let out = w
        .run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    assert_eq!(
        w.ledger.record(&digest(9)).unwrap().status,
        ReleaseStatus::Succeeded,
        "the ended deployment's result is recorded"
    );
}

#[tokio::test]
async fn missing_deployment_group_is_a_clear_error_and_frees_nothing_it_did_not_take() {
    let w = World::with(FakeLedger::default(), |cd| cd.group_missing = true);
    let err = w
        .run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "GetDeploymentGroup on deployment group web1/web1-bluegreen: not found: DeploymentGroupDoesNotExistException: No Deployment Group found");
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "AwsResourceNotFound"
    );
    assert_eq!(w.calls.count("CreateDeployment"), 0);
}

#[tokio::test]
async fn unreachable_ledger_fails_before_any_aws_call() {
    let ledger = FakeLedger {
        unreachable: true, // any ledger call would fail the test
        ..Default::default()
    };
    let w = World::with(ledger, |_| {});
    let err = w
        .run(push("v1", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap_err();
    assert!(matches!(err, DeployError::Ledger(_)), "{err:?}");
    // Nothing but the read-only provenance read: no claim, no deployment step.
    assert_eq!(w.calls.total(), 1);
    assert_eq!(w.calls.count("BatchGetImage"), 1);
}

#[tokio::test]
async fn malformed_events_are_clear_errors() {
    let w = World::new();
    let err = w
        .run(json!({"source": "aws.ecr", "detail": "nope"}), "req")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("malformed event: ECR event:"),
        "{err}"
    );
    let err = w.run(json!({"hello": "world"}), "req").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed event: the event names no source"
    );
    // The source is not repeated: it may be anything, of any size.
    let source = "x".repeat(100_000);
    let err = w.run(json!({ "source": source }), "req").await.unwrap_err();
    assert_eq!(err.to_string(), "malformed event: unexpected event source");
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn an_end_event_of_an_oversized_unmanaged_application_is_skipped_with_a_short_reason() {
    let w = World::new();
    let huge = "a".repeat(500_000);
    for (field, state) in [
        ("application", "SUCCESS"),
        ("deploymentGroup", "SUCCESS"),
        ("state", huge.as_str()),
    ] {
        let mut event = deployment_end("d-ABCDEFGHI", state);
        event["detail"][field] = json!(huge);
        let out = w.run(event, "req-1").await.unwrap();
        let Outcome::Skipped { reason } = out else {
            panic!("{out:?}")
        };
        assert!(
            reason.len() < 300,
            "{field}: a reason of {} bytes",
            reason.len()
        );
    }
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn an_end_event_whose_id_is_not_a_deployment_id_is_skipped_without_a_call() {
    let w = World::new();
    let out = w
        .run(deployment_end(&"d-".repeat(250_000), "SUCCESS"), "req-1")
        .await
        .unwrap();
    let Outcome::Skipped { reason } = out else {
        panic!("{out:?}")
    };
    assert!(reason.len() < 100, "{} bytes", reason.len());
    assert_eq!(w.calls.total(), 0);
}

// Operators' requests (the `greenlight` command, through Lambda Invoke).

const OPERATOR: &str = "arn:aws:sts::123456789012:assumed-role/Operators/alice";

fn request(kind: &str, release: &str, id: &str) -> Value {
    json!({
        "greenlight": kind,
        "app": "web1",
        "release": release,
        "request_id": id,
        "requested_by": OPERATOR,
        "requested_at": Utc::now().to_rfc3339(),
    })
}

/// What became of a deploy or rollback request.
fn result(out: Outcome) -> Outcome {
    match out {
        Outcome::Requested { result, .. } => *result,
        other => panic!("not a request's outcome: {other:?}"),
    }
}

/// ECR holds release `n` under `version` (and `latest` for the newest).
fn in_ecr(w: &World, images: &[(u8, &str)]) {
    *w.registry.images.lock().unwrap() = images
        .iter()
        .map(|(n, version)| greenlight_shared::aws::ecr::RegistryImage {
            digest: digest(*n),
            tags: vec![version.to_string()],
        })
        .collect();
}

/// v1.4.2 (1) shipped, then v1.4.4 (2) shipped and runs.
fn after_two_releases() -> World {
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        deployment_id: Some("d-AAAAAAAA1".into()),
        ..record(1, "v1.4.2", ReleaseStatus::Succeeded)
    });
    ledger.insert(ReleaseRecord {
        deployment_id: Some("d-AAAAAAAA2".into()),
        pushed_at: "2026-11-26T10:00:00Z".parse().unwrap(),
        ..record(2, "v1.4.4", ReleaseStatus::Succeeded)
    });
    let w = World::with(ledger, |_| {});
    in_ecr(&w, &[(1, "v1.4.2"), (2, "v1.4.4")]);
    w
}

#[tokio::test]
async fn a_rollback_redeploys_a_release_that_shipped_before_once_per_request() {
    let w = after_two_releases();
    let id = "7d8e2c1a-0000-4000-8000-000000000001";
    let out = result(
        w.run(request("rollback", &digest(1), id), "req-1")
            .await
            .unwrap(),
    );
    let Outcome::Deployed { version, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(version, "v1.4.2");
    assert_eq!(w.ecs.registered_images(), vec![image(1)]);
    // A push's six AWS calls and the DescribeImages that finds the release.
    assert_eq!(
        *w.calls.0.lock().unwrap(),
        [
            "DescribeImages",
            "BatchGetImage",
            "GetDeploymentGroup",
            "DescribeServices",
            "DescribeTaskDefinition",
            "RegisterTaskDefinition",
            "CreateDeployment"
        ]
    );
    let created = w.codedeploy.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    let description = ReleaseDescription::parse(&created[0].description).unwrap();
    assert_eq!(description.request.as_deref(), Some(id));

    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(r.status, ReleaseStatus::Deploying);
    let requested = r.request.clone().unwrap();
    assert_eq!(
        (requested.id.as_str(), requested.by.as_str()),
        (id, OPERATOR)
    );
    assert!(r.pushed_at > Utc::now() - chrono::Duration::minutes(1));
    // The first run is kept as history.
    let archived = w.ledger.archived.lock().unwrap().clone();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        (archived[0].status, archived[0].deployment_id.as_deref()),
        (ReleaseStatus::Succeeded, Some("d-AAAAAAAA1"))
    );

    // The command's retry of the same request, and a late push of the image, deploy nothing.
    let again = result(
        w.run(request("rollback", &digest(1), id), "req-2")
            .await
            .unwrap(),
    );
    assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
    let late_push = w
        .run(push("v1.4.2", 1, "2026-11-25T10:00:00Z"), "req-3")
        .await
        .unwrap();
    assert!(
        matches!(late_push, Outcome::Duplicate { .. }),
        "{late_push:?}"
    );
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_request_is_newer_than_a_push_made_before_it() {
    let w = after_two_releases();
    in_ecr(&w, &[(1, "v1.4.2"), (2, "v1.4.4"), (3, "v1.4.5")]);
    let out = result(
        w.run(
            request("rollback", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000002"),
            "req-1",
        )
        .await
        .unwrap(),
    );
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    // v1.4.5 was pushed before the rollback was asked for; its event comes late.
    let late = w
        .run(push("v1.4.5", 3, "2026-11-27T10:00:00Z"), "req-2")
        .await
        .unwrap();
    assert!(matches!(late, Outcome::Superseded { .. }), "{late:?}");
    // One pushed after it waits for the rollback's deployment, then ships.
    let newer = w
        .run(push("v1.4.6", 4, &Utc::now().to_rfc3339()), "req-3")
        .await
        .unwrap();
    assert!(matches!(newer, Outcome::Waiting { .. }), "{newer:?}");
}

#[tokio::test]
async fn a_request_for_the_running_image_redeploys_it() {
    let w = World::new();
    // OLD_IMAGE runs: release 0.
    in_ecr(&w, &[(0, "v1.4.0")]);
    let out = result(
        w.run(
            request("deploy", "v1.4.0", "7d8e2c1a-0000-4000-8000-000000000003"),
            "req-1",
        )
        .await
        .unwrap(),
    );
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
    // A push of what runs stays a no-op.
    let w = World::new();
    let out = w
        .run(push("v1.4.0", 0, "2026-11-25T10:00:00Z"), "req-1")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::AlreadyRunning { .. }), "{out:?}");
}

#[tokio::test]
async fn a_request_while_the_release_is_under_way_deploys_it_no_second_time() {
    let w = World::new();
    in_ecr(&w, &[(1, "v1.4.2")]);
    w.run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    let out = result(
        w.run(
            request("deploy", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000004"),
            "req-2",
        )
        .await
        .unwrap(),
    );
    let Outcome::Duplicate { status, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(status, "deploying");
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn requests_that_name_nothing_deployable_are_refused_and_write_nothing() {
    let w = after_two_releases();
    let cases = [
        ("deploy", "web9", "v1.4.2", "UnknownApp"),
        ("deploy", "web1", "v9.9.9", "ReleaseNotFound"),
        ("deploy", "web1", "latest", "ReleaseNotFound"),
        ("rollback", "web1", &digest(7), "ReleaseNotFound"),
        ("deploy", "web1", "sha256:../../etc", "ReleaseNotFound"),
    ];
    for (kind, app, release, error_type) in cases {
        let mut r = request(kind, release, "7d8e2c1a-0000-4000-8000-000000000005");
        r["app"] = json!(app);
        let err = w.run(r, "req-1").await.unwrap_err();
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, error_type, "{app} {release}");
    }
    // A digest in ECR without a release tag.
    w.registry
        .images
        .lock()
        .unwrap()
        .push(greenlight_shared::aws::ecr::RegistryImage {
            digest: digest(8),
            tags: vec!["latest".into()],
        });
    let err = w
        .run(
            request("deploy", &digest(8), "7d8e2c1a-0000-4000-8000-000000000006"),
            "req-1",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no release tag"), "{err}");
    for n in [1, 2] {
        assert_eq!(
            w.ledger.record(&digest(n)).unwrap().status,
            ReleaseStatus::Succeeded
        );
    }
    assert!(w.ledger.record(&digest(8)).is_none());
    assert_eq!(w.calls.count("CreateDeployment"), 0);
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
}

#[tokio::test]
async fn malformed_requests_are_refused_without_a_call() {
    let w = World::new();
    let mut bad_id = request("deploy", "v1.4.2", "x");
    let mut forged = request("deploy", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000007");
    forged["requested_by"] = json!("alice\n{\"level\":\"INFO\"}");
    let mut unknown = request("deploy", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000007");
    unknown["greenlight"] = json!("delete");
    bad_id["extra"] = json!(1);
    for r in [bad_id, forged, unknown] {
        let err = w.run(r, "req-1").await.unwrap_err();
        assert!(matches!(err, DeployError::MalformedEvent(_)), "{err}");
    }
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn a_plan_shows_the_revision_diff_and_appspec_and_writes_nothing() {
    let w = after_two_releases();
    let out = w
        .run(
            request("plan", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000008"),
            "req-1",
        )
        .await
        .unwrap();
    let Outcome::Planned {
        version,
        changes,
        appspec,
        already_running,
        task_definition,
        ..
    } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!(version, "v1.4.2");
    assert_eq!(task_definition, greenlight_shared::fakes::CURRENT_TD);
    assert!(!already_running);
    assert!(
        changes.contains(&format!(
            "container web1: image {OLD_IMAGE} -> {}",
            image(1)
        )),
        "{changes:?}"
    );
    assert_eq!(
        appspec["Hooks"],
        json!([{"AfterAllowTestTraffic": "CodeDeployHook_greenlight"}])
    );
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
    assert_eq!(w.calls.count("CreateDeployment"), 0);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Succeeded
    );
    assert_eq!(w.ledger.queue_of("web1"), Queue::default());
}

#[tokio::test]
async fn a_request_from_a_clock_ahead_is_not_newer_than_now() {
    let w = after_two_releases();
    let mut r = request("deploy", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000009");
    r["requested_at"] = json!("2099-01-01T00:00:00Z");
    let out = result(w.run(r, "req-1").await.unwrap());
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    assert!(w.ledger.record(&digest(1)).unwrap().pushed_at <= Utc::now());
}

/// The release item's claim runs out as if its invocation had died long ago.
fn expire_claim(w: &World, n: u8) {
    let mut releases = w.ledger.releases.lock().unwrap();
    let r = releases.get_mut(&digest(n)).unwrap();
    r.lease_until = Some(Utc::now() - chrono::Duration::seconds(1));
}

fn swept(out: Outcome) -> Vec<Outcome> {
    match out {
        Outcome::Swept { actions, .. } => actions,
        other => panic!("not a sweep's outcome: {other:?}"),
    }
}

#[tokio::test]
async fn a_release_whose_deliveries_all_fail_after_its_claim_is_shipped_by_the_sweep() {
    let ledger = FakeLedger {
        // The first delivery and Lambda's two retries all fail at the queue's admission.
        failing_commits: std::sync::Mutex::new(3),
        ..Default::default()
    };
    let w = World::with(ledger, |_| {});
    for _ in 0..3 {
        let err = w
            .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
            .await
            .unwrap_err();
        assert!(matches!(err, DeployError::Ledger(_)), "{err}");
    }
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Claimed
    );
    assert_eq!(w.ledger.queue_of("web1"), Queue::default());
    // The push is in the failed-events queue now; the schedule is all that is left.
    expire_claim(&w, 1);
    let actions = swept(w.run(sample("scheduled-sweep"), "req-sweep").await.unwrap());
    assert!(
        matches!(actions.as_slice(), [Outcome::Deployed { version, .. }] if version == "v1.4.2"),
        "{actions:?}"
    );
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Deploying
    );
    // The next sweep finds nothing left to do.
    let again = swept(
        w.run(sample("scheduled-sweep"), "req-sweep-2")
            .await
            .unwrap(),
    );
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_sweep_ships_the_newest_of_several_stranded_claims_and_supersedes_the_rest() {
    let ledger = FakeLedger {
        failing_commits: std::sync::Mutex::new(2),
        ..Default::default()
    };
    let w = World::with(ledger, |_| {});
    for (version, n, time) in [
        ("v1.4.3", 2, "2026-11-25T10:13:00Z"),
        ("v1.4.2", 1, "2026-11-25T10:12:00Z"),
    ] {
        w.run(push(version, n, time), "req-dead").await.unwrap_err();
        expire_claim(&w, n);
    }
    let actions = swept(w.run(sample("scheduled-sweep"), "req-sweep").await.unwrap());
    assert!(
        matches!(actions.as_slice(), [Outcome::Deployed { version, .. }, Outcome::Superseded { .. }] if version == "v1.4.3"),
        "{actions:?}"
    );
    assert_eq!(w.ecs.registered_images(), vec![image(2)]);
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Superseded
    );
}

#[tokio::test]
async fn a_request_whose_invocation_died_after_its_claim_is_taken_over_by_the_next_request() {
    let w = after_two_releases();
    *w.ledger.failing_commits.lock().unwrap() = 1;
    let first = "7d8e2c1a-0000-4000-8000-000000000011";
    w.run(request("rollback", &digest(1), first), "req-1")
        .await
        .unwrap_err();
    // Still claimed by the request whose invocation died: the next request waits for its lease.
    let early = result(
        w.run(
            request(
                "rollback",
                &digest(1),
                "7d8e2c1a-0000-4000-8000-000000000012",
            ),
            "req-2",
        )
        .await
        .unwrap(),
    );
    assert!(matches!(early, Outcome::Duplicate { .. }), "{early:?}");
    expire_claim(&w, 1);
    let out = result(
        w.run(
            request(
                "rollback",
                &digest(1),
                "7d8e2c1a-0000-4000-8000-000000000013",
            ),
            "req-3",
        )
        .await
        .unwrap(),
    );
    assert!(
        matches!(&out, Outcome::Deployed { version, .. } if version == "v1.4.2"),
        "{out:?}"
    );
    let created = w.codedeploy.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    // The run that was claimed goes on: it is the first request's.
    let description = ReleaseDescription::parse(&created[0].description).unwrap();
    assert_eq!(description.request.as_deref(), Some(first));
}

#[tokio::test]
async fn a_request_whose_invocation_died_after_its_claim_is_shipped_by_the_sweep() {
    let w = after_two_releases();
    *w.ledger.failing_commits.lock().unwrap() = 1;
    w.run(
        request(
            "rollback",
            &digest(1),
            "7d8e2c1a-0000-4000-8000-000000000021",
        ),
        "req-1",
    )
    .await
    .unwrap_err();
    expire_claim(&w, 1);
    let actions = swept(w.run(sample("scheduled-sweep"), "req-sweep").await.unwrap());
    assert!(
        matches!(actions.as_slice(), [Outcome::Deployed { version, .. }] if version == "v1.4.2"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_of_a_deployment_that_failed_at_once_is_adopted_not_made_again() {
    let w = World::with(FakeLedger::default(), |cd| {
        *cd.lost_create_answers.get_mut().unwrap() = 1;
        cd.ends_at_once = Some("Failed");
    });
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), "req-1")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Deployed { deployment_id, .. } if deployment_id == "d-FAKE00001"),
        "{out:?}"
    );
    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(
        (r.status, r.deployment_id.as_deref()),
        (ReleaseStatus::Failed, Some("d-FAKE00001"))
    );
    assert_eq!(w.ledger.queue_of("web1").active, None);
    // Lambda's retry of the invocation, and a redelivery, make nothing either.
    for id in ["req-1", "req-2"] {
        let again = w
            .run(push("v1.4.2", 1, "2026-11-25T10:12:03Z"), id)
            .await
            .unwrap();
        assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
    }
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_push_from_the_future_is_refused_and_does_not_outrank_later_pushes() {
    let ledger = FakeLedger {
        unreachable: true, // refused before the ledger is read
        ..Default::default()
    };
    let w = World::with(ledger, |_| {});
    let out = w
        .run(push("v9.9.9", 9, "2099-01-01T00:00:00Z"), "req-1")
        .await
        .unwrap();
    let Outcome::Skipped { reason } = &out else {
        panic!("{out:?}")
    };
    assert!(reason.contains("in the future"), "{reason}");
    assert_eq!(w.calls.total(), 0);
    // A minute ahead is a clock difference, not a forgery.
    let w = World::new();
    let soon = (Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let out = w.run(push("v1.4.2", 1, &soon), "req-1").await.unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
}

#[tokio::test]
async fn a_request_from_a_slow_clock_is_not_superseded_by_the_push_it_rolls_back() {
    let w = after_two_releases();
    in_ecr(&w, &[(1, "v1.4.2"), (2, "v1.4.4"), (3, "v1.4.5")]);
    let mut r = request("rollback", "v1.4.2", "7d8e2c1a-0000-4000-8000-000000000031");
    // The operator's laptop is ten minutes slow.
    r["requested_at"] = json!((Utc::now() - chrono::Duration::minutes(10)).to_rfc3339());
    let out = result(w.run(r, "req-1").await.unwrap());
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
    // v1.4.5, the release being rolled back, was pushed five minutes ago; its event comes late.
    let five_ago = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let late = w.run(push("v1.4.5", 3, &five_ago), "req-2").await.unwrap();
    assert!(matches!(late, Outcome::Superseded { .. }), "{late:?}");
}

#[tokio::test]
async fn two_releases_pushed_in_one_second_are_ordered_by_version() {
    const T: &str = "2026-11-25T10:12:03Z";
    // digest(1) sorts before digest(2): the version, not the digest, decides.
    for (first, second, expected) in [
        (("v1.10.0", 1), ("v1.9.0", 2), "superseded"),
        (("v1.9.0", 2), ("v1.10.0", 1), "waiting"),
    ] {
        let w = World::new();
        let out = w.run(push(first.0, first.1, T), "req-1").await.unwrap();
        assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
        let out = w.run(push(second.0, second.1, T), "req-2").await.unwrap();
        match expected {
            "superseded" => assert!(matches!(out, Outcome::Superseded { .. }), "{out:?}"),
            _ => assert!(
                matches!(&out, Outcome::Waiting { version, .. } if version == "v1.10.0"),
                "{out:?}"
            ),
        }
    }
}

#[tokio::test]
async fn a_request_by_digest_takes_the_highest_release_tag_by_version_order() {
    let w = World::new();
    *w.registry.images.lock().unwrap() = vec![greenlight_shared::aws::ecr::RegistryImage {
        digest: digest(1),
        tags: vec!["v1.10.0".into(), "latest".into(), "v1.9.0".into()],
    }];
    let out = result(
        w.run(
            request("deploy", &digest(1), "7d8e2c1a-0000-4000-8000-000000000032"),
            "req-1",
        )
        .await
        .unwrap(),
    );
    assert!(
        matches!(&out, Outcome::Deployed { version, .. } if version == "v1.10.0"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_new_release_tag_on_a_digest_that_shipped_before_deploys_it_again() {
    // v1.4.2 (1) shipped, then v1.4.4 (2); a revert rebuilt reproducibly is v1.4.5 = image 1.
    let w = after_two_releases();
    let out = w
        .run(push("v1.4.5", 1, "2026-11-27T10:00:00Z"), "req-1")
        .await
        .unwrap();
    assert!(
        matches!(&out, Outcome::Deployed { version, .. } if version == "v1.4.5"),
        "{out:?}"
    );
    assert_eq!(w.ecs.registered_images(), vec![image(1)]);
    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(
        (r.status, r.version.as_str()),
        (ReleaseStatus::Deploying, "v1.4.5")
    );
    // The first run is kept as history.
    assert_eq!(w.ledger.archived.lock().unwrap()[0].version, "v1.4.2");
    // Its redelivery, and a late delivery of the digest's first tag, deploy nothing more.
    for (version, id) in [("v1.4.5", "req-2"), ("v1.4.2", "req-3")] {
        let time = if version == "v1.4.5" {
            "2026-11-27T10:00:00Z"
        } else {
            "2026-11-25T10:00:00Z"
        };
        let again = w.run(push(version, 1, time), id).await.unwrap();
        assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
    }
    assert_eq!(w.codedeploy.created.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_oversized_unmanaged_repository_or_tag_is_skipped_with_a_short_reason() {
    let w = World::new();
    let mut e = push("v1.4.2", 1, "2026-11-25T10:12:03Z");
    e["detail"]["repository-name"] = json!("r".repeat(500_000));
    let Outcome::Skipped { reason } = w.run(e, "req-1").await.unwrap() else {
        panic!("not skipped")
    };
    assert!(reason.len() < 300, "{} bytes", reason.len());
    let long_tag = format!("v{}", "1".repeat(200));
    let Outcome::Skipped { reason } = w
        .run(push(&long_tag, 1, "2026-11-25T10:12:03Z"), "req-2")
        .await
        .unwrap()
    else {
        panic!("not skipped")
    };
    assert!(
        reason.contains("not a release tag") && reason.len() < 300,
        "{reason}"
    );
    assert_eq!(w.calls.total(), 0);
}

#[tokio::test]
async fn a_deployment_that_can_no_longer_be_read_is_closed_as_stopped_after_a_grace() {
    let gone = |since_minutes: i64| {
        let mut queue = held_by_dead_invocation(1, Some("d-GONE00001"));
        queue.active.as_mut().unwrap().since_ms =
            Utc::now().timestamp_millis() - since_minutes * 60_000;
        let ledger = FakeLedger::default();
        ledger.insert(ReleaseRecord {
            deployment_id: Some("d-GONE00001".into()),
            ..record(1, "v1.4.2", ReleaseStatus::Deploying)
        });
        ledger.set_queue("web1", queue);
        World::with(ledger, |_| {})
    };
    // Just made: a read that misses it is not proof it is gone.
    let w = gone(1);
    let err = w
        .run(sample("scheduled-sweep"), "req-sweep")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeployError::Aws(e) if e.kind == AwsErrorKind::NotFound),
        "{err}"
    );
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Deploying
    );
    // Long gone: closed, and the app's next release is free to go.
    let w = gone(60);
    w.run(sample("scheduled-sweep"), "req-sweep").await.unwrap();
    assert_eq!(
        w.ledger.record(&digest(1)).unwrap().status,
        ReleaseStatus::Stopped
    );
    assert_eq!(w.ledger.queue_of("web1").active, None);
    let out = w
        .run(push("v1.4.3", 2, "2026-11-25T10:13:00Z"), "req-2")
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Deployed { .. }), "{out:?}");
}

#[tokio::test]
async fn a_request_for_a_waiting_release_gives_it_the_requests_place() {
    let w = World::new();
    in_ecr(&w, &[(1, "v1.4.2"), (2, "v1.4.3"), (3, "v1.4.4")]);
    w.run(push("v1.4.2", 1, "2026-11-25T10:12:00Z"), "req-1")
        .await
        .unwrap();
    let waits = w
        .run(push("v1.4.3", 2, "2026-11-25T10:13:00Z"), "req-2")
        .await
        .unwrap();
    assert!(matches!(waits, Outcome::Waiting { .. }), "{waits:?}");
    // The operator asks for the waiting v1.4.3 now.
    let out = result(
        w.run(
            request("deploy", "v1.4.3", "7d8e2c1a-0000-4000-8000-000000000041"),
            "req-3",
        )
        .await
        .unwrap(),
    );
    assert!(matches!(out, Outcome::Waiting { .. }), "{out:?}");
    // v1.4.4 was pushed before the request was made; its event comes late.
    let late = w
        .run(push("v1.4.4", 3, "2026-11-25T10:20:00Z"), "req-4")
        .await
        .unwrap();
    assert!(matches!(late, Outcome::Superseded { .. }), "{late:?}");
    assert_eq!(
        w.ledger.record(&digest(2)).unwrap().status,
        ReleaseStatus::Pending
    );
    assert_eq!(
        w.ledger.queue_of("web1").pending.map(|t| t.digest),
        Some(digest(2))
    );
}

#[tokio::test]
async fn a_new_tag_run_of_a_digest_never_adopts_the_deployment_of_its_earlier_run() {
    let w = World::new();
    // v1.4.2 (image 1) ships, then v1.4.3 (image 2).
    for (version, n, time) in [
        ("v1.4.2", 1, "2026-11-25T10:12:00Z"),
        ("v1.4.3", 2, "2026-11-25T10:13:00Z"),
    ] {
        let id = deployed_id_of(&w.run(push(version, n, time), version).await.unwrap());
        w.codedeploy
            .deployments
            .lock()
            .unwrap()
            .get_mut(&id)
            .unwrap()
            .status = "Succeeded".into();
        w.run(deployment_end(&id, "SUCCESS"), &format!("end-{version}"))
            .await
            .unwrap();
    }
    // A revert to image 1 under v1.4.5; its CreateDeployment fails before CodeDeploy acted.
    w.codedeploy
        .create_errors
        .lock()
        .unwrap()
        .push(AwsError::new(
            "CreateDeployment",
            "deployment group web1/web1-bluegreen",
            AwsErrorKind::Unavailable,
            "dispatch failure: connection reset",
        ));
    let revert = push("v1.4.5", 1, "2026-11-25T10:20:00Z");
    let err = w.run(revert.clone(), "req-revert").await.unwrap_err();
    assert!(err.to_string().contains("CreateDeployment"), "{err}");
    // v1.4.2's deployment names the same digest, not this run: Lambda's retry creates one.
    let out = w.run(revert, "req-revert").await.unwrap();
    assert_eq!(deployed_id_of(&out), "d-FAKE00003");
    let r = w.ledger.record(&digest(1)).unwrap();
    assert_eq!(
        (r.version.as_str(), r.status, r.deployment_id.as_deref()),
        ("v1.4.5", ReleaseStatus::Deploying, Some("d-FAKE00003"))
    );
}

fn deployed_id_of(out: &Outcome) -> String {
    match out {
        Outcome::Deployed { deployment_id, .. } => deployment_id.clone(),
        other => panic!("not deployed: {other:?}"),
    }
}

/// web1 asks for approval; v1.4.3 (3) deploys as d-WAITING01, its green checked, and CodeDeploy
/// holds it READY.
fn waiting_for_approval() -> (World, Arc<greenlight_shared::fakes::FakeGate>) {
    use greenlight_shared::ledger::Wait;
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        deployment_id: Some("d-WAITING01".into()),
        ..record(3, "v1.4.3", ReleaseStatus::Deploying)
    });
    ledger.set_queue(
        "web1",
        Queue {
            active: Some(Active {
                release: Some(Ticket {
                    pushed_at_ms: 1,
                    digest: digest(3),
                    version: "v1.4.3".into(),
                }),
                deployment_id: Some("d-WAITING01".into()),
                owner: "req-0".into(),
                lease_until_ms: 0,
                since_ms: 0,
            }),
            version: 4,
            ..Queue::default()
        },
    );
    ledger.approvals.lock().unwrap().insert(
        digest(3),
        (
            Wait {
                deployment_id: "d-WAITING01".into(),
                expires_at: Utc::now() + chrono::Duration::minutes(60),
            },
            None,
        ),
    );
    let mut w = World::with(ledger, |_| {});
    w.deps.config = Config::parse(&format!(
        "{CONFIG}[apps.web1.approval]\nrequired = true\napprovers = [\"U024BE7LH\"]\n"
    ))
    .unwrap();
    let gate = Arc::new(greenlight_shared::fakes::FakeGate::holding(None, None));
    w.deps.gates = greenlight_shared::approval::EngineGates {
        ecs: Arc::new(greenlight_shared::fakes::FakeGate::default()),
        codedeploy: gate.clone(),
    };
    (w, gate)
}

fn decided(out: Outcome) -> (String, String) {
    match out {
        Outcome::Decided { decision, said, .. } => (decision, said),
        other => panic!("not a decision: {other:?}"),
    }
}

#[tokio::test]
async fn an_operator_approves_the_release_that_waits_once_as_the_identity_sts_named() {
    let (w, gate) = waiting_for_approval();
    let id = "7d8e2c1a-0000-4000-8000-0000000000a1";
    let (decision, said) = decided(
        w.run(request("approve", "waiting", id), "req-1")
            .await
            .unwrap(),
    );
    assert_eq!(decision, "approved");
    assert_eq!(said, "web1 v1.4.3 approved: it takes production traffic");
    assert_eq!(
        *gate.resolved.lock().unwrap(),
        [(
            "d-WAITING01".to_string(),
            None,
            greenlight_shared::approval::Choice::Approve
        )]
    );
    let kept = w.ledger.approvals.lock().unwrap()[&digest(3)]
        .1
        .clone()
        .unwrap();
    assert_eq!(kept.by, OPERATOR);
    // Asked again (or a reject after it): nothing changes, and it says who decided.
    let (decision, said) = decided(
        w.run(
            request("reject", "v1.4.3", "7d8e2c1a-0000-4000-8000-0000000000a2"),
            "req-2",
        )
        .await
        .unwrap(),
    );
    assert_eq!(decision, "already_decided");
    assert!(
        said.contains("was already approved by arn:aws:sts::"),
        "{said}"
    );
    assert_eq!(gate.resolved.lock().unwrap().len(), 1);
    // Nothing is deployed or registered by a decision.
    assert_eq!(w.calls.count("CreateDeployment"), 0);
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
}

#[tokio::test]
async fn a_reject_naming_another_release_or_an_app_without_approval_changes_nothing() {
    let (w, gate) = waiting_for_approval();
    let mut asked = request("reject", "v1.4.4", "7d8e2c1a-0000-4000-8000-0000000000b1");
    asked["reason"] = json!("error rate on green");
    let (decision, said) = decided(w.run(asked, "req-1").await.unwrap());
    assert_eq!(decision, "refused");
    assert_eq!(
        said,
        "nothing changed: web1 v1.4.3 waits for approval, not v1.4.4"
    );
    let plain = World::new();
    let (decision, said) = decided(
        plain
            .run(
                request("approve", "waiting", "7d8e2c1a-0000-4000-8000-0000000000b2"),
                "req-2",
            )
            .await
            .unwrap(),
    );
    assert_eq!(decision, "refused");
    assert!(said.contains("asks for no approval"), "{said}");
    // The right release, with a reason: rejected, the reason kept.
    let mut asked = request("reject", &digest(3), "7d8e2c1a-0000-4000-8000-0000000000b3");
    asked["reason"] = json!("error rate on green");
    let (decision, _) = decided(w.run(asked, "req-3").await.unwrap());
    assert_eq!(decision, "rejected");
    let kept = w.ledger.approvals.lock().unwrap()[&digest(3)]
        .1
        .clone()
        .unwrap();
    assert_eq!(kept.reason.as_deref(), Some("error rate on green"));
    assert_eq!(gate.resolved.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_app_that_asks_for_approval_is_not_deployed_where_nothing_would_hold_it() {
    // The fake group reroutes at once (no wait before rerouting).
    let mut w = World::new();
    w.deps.config = Config::parse(&format!(
        "{CONFIG}[apps.web1.approval]\nrequired = true\napprovers = [\"U024BE7LH\"]\n"
    ))
    .unwrap();
    let out = w
        .run(push("v1.4.2", 1, "2026-11-25T10:00:00Z"), "req-1")
        .await;
    let said = match &out {
        Ok(outcome) => format!("{outcome:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        said.contains("asks for approval") && said.contains("reroutes traffic at once"),
        "{said}"
    );
    assert_eq!(w.calls.count("CreateDeployment"), 0);
    assert_eq!(w.calls.count("RegisterTaskDefinition"), 0);
}
