//! `--wait`: following a release in the ledger to its end, or a native deployment to a stage
//! read from ECS, over the in-memory ledger and ECS.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use greenlight_cli::deploy::{follow, Failed, Follow, Until};
use greenlight_shared::aws::ecs::{ServiceDeploymentState, ServiceReads};
use greenlight_shared::error::{AwsError, AwsErrorKind};
use greenlight_shared::fakes::FakeLedger;
use greenlight_shared::fakes::{Calls, FakeEcs};
use greenlight_shared::ledger::{ReleaseRecord, ReleaseStatus};
use greenlight_shared::rollout::{Milestone, Position, Rollout, Strategy};

const DIGEST: &str = "sha256:4b8ac0fc55d78e30e37b7ba35297eed691a177465351ed89473d4ee99d53488e";

fn record(status: ReleaseStatus) -> ReleaseRecord {
    ReleaseRecord {
        app: "web1".into(),
        digest: DIGEST.into(),
        version: "v1.4.2".into(),
        image: String::new(),
        pushed_at: Utc::now(),
        status,
        owner: None,
        lease_until: None,
        task_definition_arn: None,
        deployment_id: Some("d-ABCDEFGHI".into()),
        superseded_by: None,
        hook_reason: None,
        hook_reported_execution: None,
        provenance: Default::default(),
        request: None,
    }
}

/// The release goes through `steps`, one every 30 ms.
fn playing(steps: Vec<ReleaseRecord>) -> Arc<FakeLedger> {
    let ledger = Arc::new(FakeLedger::default());
    ledger.insert(record(ReleaseStatus::Pending));
    let writer = ledger.clone();
    tokio::spawn(async move {
        for step in steps {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer.insert(step);
        }
    });
    ledger
}

const POLL: Duration = Duration::from_millis(5);

fn over<'a>(
    ledger: &'a FakeLedger,
    ecs: Option<&'a dyn ServiceReads>,
    timeout: Duration,
) -> Follow<'a> {
    Follow {
        ledger,
        ecs,
        poll: POLL,
        timeout,
    }
}

const NATIVE: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web3/dep1";

/// A native canary deployment at `stage`, green at `weight`%.
fn at(stage: &str, weight: f64) -> Result<ServiceDeploymentState, AwsError> {
    Ok(ServiceDeploymentState {
        status: "IN_PROGRESS".into(),
        position: Position {
            stage: Some(stage.into()),
            weight: Some(weight),
            since: Some(Utc::now()),
        },
        rollout: Some(Rollout {
            strategy: Strategy::Canary {
                percent: 10.0,
                bake_minutes: 5,
            },
            bake_minutes: 60,
            ..Rollout::default()
        }),
        ..Default::default()
    })
}

#[tokio::test]
async fn wait_until_traffic_shifted_stops_at_the_stage_through_throttling_and_before_the_bake() {
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        deployment_id: Some(NATIVE.into()),
        ..record(ReleaseStatus::Deploying)
    });
    let throttled = || {
        Err(AwsError::new(
            "DescribeServiceDeployments",
            NATIVE,
            AwsErrorKind::Throttled,
            "Rate exceeded",
        ))
    };
    let ecs = FakeEcs::new(std::sync::Arc::new(Calls::default()), "unused");
    *ecs.deployment_answers.lock().unwrap() = vec![
        at("POST_TEST_TRAFFIC_SHIFT", 0.0),
        throttled(),
        at("PRODUCTION_TRAFFIC_SHIFT", 10.0),
        throttled(),
        throttled(),
        at("PRODUCTION_TRAFFIC_SHIFT", 10.0),
        at("BAKE_TIME", 100.0),
    ];
    let shifted = follow(
        &over(&ledger, Some(&ecs), Duration::from_secs(5)),
        "web3",
        DIGEST,
        Until::Milestone(Milestone::TrafficShifted),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    // The release is still deploying (its bake runs): the CI job goes on.
    assert_eq!(shifted.status, ReleaseStatus::Deploying);
    assert_eq!(
        ecs.deployment_answers.lock().unwrap().len(),
        1,
        "every answer read"
    );

    // Baked is later: the same bake does not reach it, and the wait times out.
    let outcome = follow(
        &over(&ledger, Some(&ecs), Duration::from_millis(100)),
        "web3",
        DIGEST,
        Until::Milestone(Milestone::Baked),
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::TimedOut(why)) if why.contains("baking")),
        "{:?}",
        outcome.err()
    );
}

#[tokio::test]
async fn reads_that_keep_failing_give_up_and_a_rollback_before_the_stage_is_not_deployed() {
    let ledger = FakeLedger::default();
    ledger.insert(ReleaseRecord {
        deployment_id: Some(NATIVE.into()),
        ..record(ReleaseStatus::Deploying)
    });
    let ecs = FakeEcs::new(std::sync::Arc::new(Calls::default()), "unused");
    *ecs.deployment_answers.lock().unwrap() = vec![Err(AwsError::new(
        "DescribeServiceDeployments",
        NATIVE,
        AwsErrorKind::Throttled,
        "Rate exceeded",
    ))];
    let outcome = follow(
        &over(&ledger, Some(&ecs), Duration::from_secs(30)),
        "web3",
        DIGEST,
        Until::Milestone(Milestone::TrafficShifted),
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::Aws(why)) if why.contains("Rate exceeded")),
        "{:?}",
        outcome.err()
    );

    let ledger = playing(vec![ReleaseRecord {
        deployment_id: Some(NATIVE.into()),
        ..record(ReleaseStatus::Failed)
    }]);
    *ecs.deployment_answers.lock().unwrap() = vec![at("PRODUCTION_TRAFFIC_SHIFT", 10.0)];
    let outcome = follow(
        &over(ledger.as_ref(), Some(&ecs), Duration::from_secs(5)),
        "web3",
        DIGEST,
        Until::Milestone(Milestone::TrafficShifted),
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::NotDeployed(why)) if why.contains("failed and was rolled back")),
        "{:?}",
        outcome.err()
    );
}

#[tokio::test]
async fn a_waiting_release_is_followed_until_it_succeeds() {
    let ledger = playing(vec![
        record(ReleaseStatus::Claimed),
        record(ReleaseStatus::Deploying),
        record(ReleaseStatus::Succeeded),
    ]);
    let done = follow(
        &over(ledger.as_ref(), None, Duration::from_secs(5)),
        "web1",
        DIGEST,
        Until::Completed,
    )
    .await
    .unwrap_or_else(|_| panic!("not a success"));
    assert_eq!(done.status, ReleaseStatus::Succeeded);
}

#[tokio::test]
async fn a_release_that_fails_is_not_deployed_with_the_hooks_reason() {
    let failed = ReleaseRecord {
        hook_reason: Some("http_probe failed: 3 failed probes in a row\u{1b}[2J".into()),
        ..record(ReleaseStatus::Failed)
    };
    let ledger = playing(vec![record(ReleaseStatus::Deploying), failed]);
    let Err(Failed::NotDeployed(why)) = follow(
        &over(ledger.as_ref(), None, Duration::from_secs(5)),
        "web1",
        DIGEST,
        Until::Completed,
    )
    .await
    else {
        panic!("a failed release followed as something else")
    };
    assert!(
        why.starts_with("web1 v1.4.2 failed and was rolled back: http_probe failed"),
        "{why}"
    );
    assert!(
        !why.contains('\u{1b}'),
        "no terminal escape from the ledger"
    );
}

#[tokio::test]
async fn a_superseded_release_is_not_deployed_and_a_slow_one_times_out() {
    let ledger = playing(vec![record(ReleaseStatus::Superseded)]);
    let outcome = follow(
        &over(ledger.as_ref(), None, Duration::from_secs(5)),
        "web1",
        DIGEST,
        Until::Completed,
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::NotDeployed(why)) if why.contains("superseded")),
        "{:?}",
        outcome.err()
    );
    let ledger = playing(vec![record(ReleaseStatus::Deploying)]);
    let outcome = follow(
        &over(ledger.as_ref(), None, Duration::from_millis(100)),
        "web1",
        DIGEST,
        Until::Completed,
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::TimedOut(why)) if why.contains("still deploying")),
        "{:?}",
        outcome.err()
    );
}
