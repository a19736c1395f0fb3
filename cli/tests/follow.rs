//! `--wait`: following a release in the ledger to its end, over the in-memory ledger.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use greenlight_cli::deploy::{follow, Failed};
use greenlight_shared::fakes::FakeLedger;
use greenlight_shared::ledger::{ReleaseRecord, ReleaseStatus};

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

#[tokio::test]
async fn a_waiting_release_is_followed_until_it_succeeds() {
    let ledger = playing(vec![
        record(ReleaseStatus::Claimed),
        record(ReleaseStatus::Deploying),
        record(ReleaseStatus::Succeeded),
    ]);
    let done = follow(
        ledger.as_ref(),
        "web1",
        DIGEST,
        POLL,
        Duration::from_secs(5),
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
        ledger.as_ref(),
        "web1",
        DIGEST,
        POLL,
        Duration::from_secs(5),
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
        ledger.as_ref(),
        "web1",
        DIGEST,
        POLL,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::NotDeployed(why)) if why.contains("superseded")),
        "{:?}",
        outcome.err()
    );
    let ledger = playing(vec![record(ReleaseStatus::Deploying)]);
    let outcome = follow(
        ledger.as_ref(),
        "web1",
        DIGEST,
        POLL,
        Duration::from_millis(100),
    )
    .await;
    assert!(
        matches!(&outcome, Err(Failed::TimedOut(why)) if why.contains("still deploying")),
        "{:?}",
        outcome.err()
    );
}
