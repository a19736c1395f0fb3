//! The real deployer handler, with the real SDK clients, against moto server (ECR, ECS,
//! DynamoDB) and the CodeDeploy stand-in, all on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use greenlight_deployer::{handle, Deps, Outcome};
use greenlight_shared::aws::{codedeploy::CodeDeploy, ecr::Ecr, ecs::Ecs};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{DynamoLedger, ReleaseLedger, ReleaseStatus};
use greenlight_shared::Config;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::moto::MotoServer;
use greenlight_tests::world::{push_event, seed_app, Clients, SeededApp, ACCOUNT, REGION, TABLE};
use serde_json::Value;

const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
[apps.web2]
repository = "web2"
application = "web2"
deployment_group = "web2-bluegreen"
"#;

struct Env {
    _moto: MotoServer,
    stand_in: CodeDeployStandIn,
    clients: Clients,
    deps: Arc<Deps>,
    ledger: Arc<DynamoLedger>,
}

async fn env(apps: &[&str]) -> (Env, Vec<SeededApp>) {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let mut seeded = vec![];
    for (i, app) in apps.iter().enumerate() {
        let s = seed_app(&clients, app, 80 + i as i32).await;
        stand_in.add_group(s.group.clone(), &s.task_definition);
        seeded.push(s);
    }
    let ledger = Arc::new(DynamoLedger::new(clients.dynamodb.clone(), TABLE));
    let deps = Arc::new(Deps {
        config: Config::parse(CONFIG).unwrap(),
        codedeploy: Arc::new(CodeDeploy(clients.codedeploy.clone())),
        ecs: Arc::new(Ecs(clients.ecs.clone())),
        registry: Arc::new(Ecr(clients.ecr.clone())),
        ledger: ledger.clone(),
        hook_function: "CodeDeployHook_greenlight".into(),
        lease_margin: Duration::ZERO,
        readback_pause: Duration::ZERO,
        gates: greenlight_shared::fakes::idle_gates(),
    });
    (
        Env {
            _moto: moto,
            stand_in,
            clients,
            deps,
            ledger,
        },
        seeded,
    )
}

async fn run(deps: &Deps, event: Value, request: &str) -> Outcome {
    handle(
        deps,
        event,
        &Invocation::for_test(request, Duration::from_secs(30)),
    )
    .await
    .unwrap()
}

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, minute, 0).unwrap()
}

#[tokio::test]
async fn version_push_registers_one_pinned_revision_and_creates_one_deployment() {
    let (e, apps) = env(&["web1"]).await;
    let digest = e.clients.push_image("web1", "v1.4.2", "web1-v1.4.2").await;
    e.clients.push_image("web1", "latest", "web1-v1.4.2").await;

    // The `latest` twin and a DELETE make no AWS call.
    let mut latest = push_event("web1", "latest", &digest, at(0));
    assert!(matches!(
        run(&e.deps, latest.clone(), "r0").await,
        Outcome::Skipped { .. }
    ));
    latest["detail"]["action-type"] = "DELETE".into();
    latest["detail"]["image-tag"] = "v1.4.2".into();
    assert!(matches!(
        run(&e.deps, latest, "r0b").await,
        Outcome::Skipped { .. }
    ));
    assert!(e.stand_in.calls().is_empty());
    assert_eq!(e.clients.revisions("web1").await.len(), 1);

    let out = run(&e.deps, push_event("web1", "v1.4.2", &digest, at(1)), "r1").await;
    let Outcome::Deployed {
        task_definition,
        deployment_id,
        ..
    } = out
    else {
        panic!("{out:?}")
    };

    // One new revision, running the pushed image pinned by digest, everything else preserved.
    assert_eq!(e.clients.revisions("web1").await.len(), 2);
    let described = e
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(&task_definition)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let (before, after) = {
        let old = e
            .clients
            .ecs
            .describe_task_definition()
            .task_definition(&apps[0].task_definition)
            .send()
            .await
            .unwrap();
        (
            old.task_definition.unwrap(),
            described.task_definition.clone().unwrap(),
        )
    };
    let c = &after.container_definitions()[0];
    assert_eq!(
        c.image(),
        Some(format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/web1@{digest}").as_str())
    );
    let b = &before.container_definitions()[0];
    assert_eq!(c.environment(), b.environment());
    assert_eq!(c.secrets(), b.secrets());
    assert_eq!(c.port_mappings(), b.port_mappings());
    assert_eq!(c.memory_reservation(), b.memory_reservation());
    assert_eq!(
        (after.cpu(), after.memory()),
        (before.cpu(), before.memory())
    );
    assert_eq!(
        (after.task_role_arn(), after.execution_role_arn()),
        (before.task_role_arn(), before.execution_role_arn())
    );
    assert_eq!(after.network_mode(), before.network_mode());
    assert_eq!(
        after.requires_compatibilities(),
        before.requires_compatibilities()
    );
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().into(),
                t.value().unwrap_or_default().into(),
            )
        })
        .collect();
    assert!(
        tags.contains(&("greenlight:version".into(), "v1.4.2".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("greenlight:digest".into(), digest.clone())),
        "{tags:?}"
    );

    // One deployment, whose AppSpec names the revision, the container and the hook.
    let deployments = e.stand_in.deployments();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].id, deployment_id);
    let appspec: Value = serde_json::from_str(deployments[0].appspec.as_deref().unwrap()).unwrap();
    assert_eq!(
        appspec["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"],
        Value::from(task_definition.clone())
    );
    assert_eq!(
        appspec["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"],
        serde_json::json!({"ContainerName": "web1", "ContainerPort": 3000})
    );
    assert_eq!(
        appspec["Hooks"],
        serde_json::json!([{"AfterAllowTestTraffic": "CodeDeployHook_greenlight"}])
    );
    assert_eq!(
        deployments[0].description.as_deref(),
        Some(format!("greenlight app=web1 version=v1.4.2 digest={digest}").as_str())
    );
    // The deployer goes through CodeDeploy: it never updates the service itself.
    assert_eq!(
        e.clients.service_image("web1").await.0,
        apps[0].task_definition
    );

    let record = e.ledger.release("web1", &digest).await.unwrap().unwrap();
    assert_eq!(record.status, ReleaseStatus::Deploying);
    assert_eq!(
        record.deployment_id.as_deref(),
        Some(deployment_id.as_str())
    );
    assert_eq!(
        record.task_definition_arn.as_deref(),
        Some(task_definition.as_str())
    );
}

#[tokio::test]
async fn the_same_push_from_concurrent_invocations_deploys_once() {
    let (e, _) = env(&["web1"]).await;
    let digest = e.clients.push_image("web1", "v2.0.0", "web1-v2.0.0").await;
    let event = push_event("web1", "v2.0.0", &digest, at(1));
    let mut tasks = vec![];
    for i in 0..6 {
        let deps = e.deps.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            run(&deps, event, &format!("racer-{i}")).await
        }));
    }
    let mut outcomes = vec![];
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let deployed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Deployed { .. }))
        .count();
    assert_eq!(deployed, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Outcome::Deployed { .. }
                | Outcome::InProgressElsewhere { .. }
                | Outcome::Duplicate { .. }
        )),
        "{outcomes:?}"
    );
    assert_eq!(e.clients.revisions("web1").await.len(), 2);
    assert_eq!(e.stand_in.deployments().len(), 1);
}

#[tokio::test]
async fn pushes_during_a_deployment_wait_and_the_newest_ships() {
    let (e, _) = env(&["web2"]).await;
    let d1 = e.clients.push_image("web2", "v1", "web2-v1").await;
    let d2 = e.clients.push_image("web2", "v2", "web2-v2").await;
    let d3 = e.clients.push_image("web2", "v3", "web2-v3").await;
    let first = run(&e.deps, push_event("web2", "v1", &d1, at(1)), "p1").await;
    let Outcome::Deployed { deployment_id, .. } = first else {
        panic!("{first:?}")
    };
    assert!(matches!(
        run(&e.deps, push_event("web2", "v2", &d2, at(2)), "p2").await,
        Outcome::Waiting { replaced: None, .. }
    ));
    let third = run(&e.deps, push_event("web2", "v3", &d3, at(3)), "p3").await;
    assert_eq!(
        third,
        Outcome::Waiting {
            app: "web2".into(),
            version: "v3".into(),
            replaced: Some(d2.clone())
        }
    );
    assert_eq!(e.stand_in.deployments().len(), 1);

    let end = e.stand_in.complete(&deployment_id, "Succeeded");
    let finished = run(&e.deps, end, "end-1").await;
    let Outcome::Finished {
        next: Some(next), ..
    } = finished
    else {
        panic!("{finished:?}")
    };
    assert!(
        matches!(*next, Outcome::Deployed { ref version, .. } if version == "v3"),
        "{next:?}"
    );

    let deployments = e.stand_in.deployments();
    assert_eq!(deployments.len(), 2);
    assert!(deployments[1]
        .description
        .as_deref()
        .unwrap()
        .contains("version=v3"));
    let status = |d: &str| {
        let ledger = e.ledger.clone();
        let d = d.to_string();
        async move { ledger.release("web2", &d).await.unwrap().unwrap() }
    };
    assert_eq!(status(&d1).await.status, ReleaseStatus::Succeeded);
    let v2 = status(&d2).await;
    assert_eq!(v2.status, ReleaseStatus::Superseded);
    assert_eq!(v2.superseded_by.as_deref(), Some(d3.as_str()));
    assert_eq!(status(&d3).await.status, ReleaseStatus::Deploying);
    assert_eq!(e.ledger.superseded_by("web2", &d3).await.unwrap().len(), 1);
    assert_eq!(
        e.ledger
            .last_succeeded("web2")
            .await
            .unwrap()
            .unwrap()
            .version,
        "v1"
    );
    // A revision only for what shipped: v1 and v3 (v2 never registered).
    assert_eq!(e.clients.revisions("web2").await.len(), 3);
}

#[tokio::test]
async fn a_rollback_request_finds_the_release_in_ecr_and_keeps_the_first_run_as_history() {
    use greenlight_shared::ledger::HistoryLedger;
    let (e, _) = env(&["web1"]).await;
    let d1 = e.clients.push_image("web1", "v1.4.2", "web1-v142").await;
    let d2 = e.clients.push_image("web1", "v1.4.4", "web1-v144").await;
    for (n, (version, digest)) in [("v1.4.2", &d1), ("v1.4.4", &d2)].into_iter().enumerate() {
        let out = run(
            &e.deps,
            push_event("web1", version, digest, at(n as u32)),
            "p",
        )
        .await;
        let Outcome::Deployed { deployment_id, .. } = out else {
            panic!("{out:?}")
        };
        let end = e.stand_in.complete(&deployment_id, "Succeeded");
        run(&e.deps, end, "end").await;
    }
    let request = |kind: &str, release: &str| {
        serde_json::json!({
            "greenlight": kind, "app": "web1", "release": release,
            "request_id": "5f0c9a51-1d7e-4c3b-9a0e-7f3c2b1a0d99",
            "requested_by": "arn:aws:sts::123456789012:assumed-role/Operators/alice",
            "requested_at": Utc::now().to_rfc3339(),
        })
    };

    let plan = run(&e.deps, request("plan", "v1.4.2"), "plan").await;
    let Outcome::Planned { changes, .. } = &plan else {
        panic!("{plan:?}")
    };
    assert!(changes.iter().any(|c| c.contains(&d1)), "{changes:?}");
    assert_eq!(e.stand_in.deployments().len(), 2, "a plan deploys nothing");

    let out = run(&e.deps, request("rollback", "v1.4.2"), "r1").await;
    let Outcome::Requested { result, digest, .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(digest, &d1);
    let Outcome::Deployed { deployment_id, .. } = result.as_ref() else {
        panic!("{out:?}")
    };
    let again = run(&e.deps, request("rollback", "v1.4.2"), "r2").await;
    assert!(
        matches!(&again, Outcome::Requested { result, .. } if matches!(**result, Outcome::Duplicate { .. })),
        "{again:?}"
    );
    let deployments = e.stand_in.deployments();
    assert_eq!(deployments.len(), 3);
    assert!(deployments[2]
        .description
        .as_deref()
        .unwrap()
        .ends_with("request=5f0c9a51-1d7e-4c3b-9a0e-7f3c2b1a0d99"));
    let end = e.stand_in.complete(deployment_id, "Succeeded");
    run(&e.deps, end, "end").await;

    let v1 = e.ledger.release("web1", &d1).await.unwrap().unwrap();
    assert_eq!(v1.status, ReleaseStatus::Succeeded);
    assert_eq!(v1.request.unwrap().requester_name(), "alice");
    let production = e.ledger.last_succeeded("web1").await.unwrap().unwrap();
    assert_eq!(production.digest, d1);
    let history = e.ledger.history("web1").await.unwrap();
    let runs_of_v1: Vec<_> = history.iter().filter(|h| h.record.digest == d1).collect();
    assert_eq!(runs_of_v1.len(), 2, "the first run of v1.4.2 is kept");
    assert!(runs_of_v1
        .iter()
        .any(|h| h.record.request.is_none() && h.record.status == ReleaseStatus::Succeeded));
}
