//! The deployer's promises under faults, proven by a matrix: for every AWS and ledger call the
//! deployer makes in a scenario of pushes and deployment ends, each fault kind of
//! `greenlight_tests::faults` is injected at that call, the failed or killed invocation is
//! delivered again as Lambda (a retry with the same request id) or EventBridge (late, after the
//! events that followed it, plus a duplicate of every event) would, and the invariants are
//! checked against the CodeDeploy stand-in and the ledger:
//!
//! - at most one deployment per release, and the newest push deployed exactly once;
//! - no release deployed after a newer one was (deployments start in push order);
//! - the newest push ships; every release ends `succeeded`, `failed`, `stopped`,
//!   `superseded` or `already_running`, as its deployment did;
//! - the queue ends idle (nothing active, nothing waiting).

use std::sync::Arc;
use std::time::Duration;

use greenlight_tests::deployer_case::{Case, Delivered, MotoWorld, Release};
use greenlight_tests::faults::{injection_points, record_calls, Fault};
use serde_json::Value;

/// Each invocation's budget (and lease): a killed one is resumed after it.
const BUDGET: Duration = Duration::from_millis(300);
/// Cases run at once (each has its own table, stand-in and proxies).
const PARALLEL: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redelivery {
    /// Lambda's retry: the same event again at once, same request id.
    Retry,
    /// EventBridge: the failed event arrives late, after the rest, and every event twice.
    LateAndDuplicated,
}

/// v1 ships; v2 and v3 are pushed while it deploys (v3 replaces v2); v1 ends and v3 starts; a
/// push of v0, older than all, arrives late; v3 ends. (`releases` are v0..v3 in push order.)
fn scenario(releases: &[Release]) -> Vec<Step> {
    let [v0, v1, v2, v3] = releases else {
        panic!("four releases")
    };
    vec![
        Step::Event(v1.push()),
        Step::Event(v1.latest()),
        Step::Event(v2.push()),
        Step::Event(v3.push()),
        Step::End(v1.digest.clone()),
        Step::Event(v0.push()),
        Step::End(v3.digest.clone()),
    ]
}

enum Step {
    Event(Value),
    /// The running deployment of this digest ends successfully (skipped when there is none).
    End(String),
}

async fn play(case: &Case, releases: &[Release], redelivery: Redelivery) {
    let mut late = vec![];
    let mut delivered = vec![];
    for (i, step) in scenario(releases).into_iter().enumerate() {
        let event = match step {
            Step::Event(e) => e,
            Step::End(digest) => {
                let Some(d) = case
                    .deployments_of(&digest)
                    .into_iter()
                    .find(|d| d.status == "InProgress")
                else {
                    continue;
                };
                case.stand_in.complete(&d.id, "Succeeded")
            }
        };
        let request = format!("step-{i}");
        match redelivery {
            Redelivery::Retry => {
                case.deliver_until_done(&event, &request).await;
            }
            Redelivery::LateAndDuplicated => {
                if !matches!(case.deliver(&event, &request).await, Delivered::Done(_)) {
                    late.push(event.clone());
                }
            }
        }
        delivered.push(event);
    }
    if redelivery == Redelivery::LateAndDuplicated {
        tokio::time::sleep(BUDGET).await;
        for (i, event) in late.iter().chain(delivered.iter()).enumerate() {
            case.deliver_until_done(event, &format!("again-{i}")).await;
        }
    }
    case.drain(&|_| false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_at_every_call_deploys_each_release_at_most_once_and_the_newest_ships() {
    let w = MotoWorld::start().await;
    let releases = w.push_releases(4).await;

    // The fault-free run: its invariants, and the calls to inject faults into.
    let clean = w.case("ledger-clean", BUDGET).await;
    play(&clean, &releases, Redelivery::Retry).await;
    assert_eq!(clean.violations(&releases).await, Vec::<String>::new());
    let calls = clean.faults.calls();
    let points = injection_points(&calls);
    for op in [
        "PutItem",
        "GetItem",
        "TransactWriteItems",
        "UpdateItem",
        "BatchGetItem",
        "GetDeploymentGroup",
        "DescribeServices",
        "DescribeTaskDefinition",
        "RegisterTaskDefinition",
        "CreateDeployment",
        "GetDeployment",
    ] {
        assert!(
            calls.iter().any(|c| c == op),
            "the scenario never calls {op}: {calls:?}"
        );
    }

    let mut cases = vec![];
    for (op, nth) in &points {
        for fault in Fault::ALL {
            cases.push((op.clone(), *nth, fault, Redelivery::Retry));
            if fault.fails_the_invocation() {
                cases.push((op.clone(), *nth, fault, Redelivery::LateAndDuplicated));
            }
        }
    }
    let total = cases.len();
    let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut runs = vec![];
    for (i, (op, nth, fault, redelivery)) in cases.into_iter().enumerate() {
        let (w, gate, releases) = (w.clone(), gate.clone(), releases.clone());
        runs.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.unwrap();
            let c = w.case(&format!("ledger-{i}"), BUDGET).await;
            c.faults.arm(&op, nth, fault);
            play(&c, &releases, redelivery).await;
            let label = format!("{fault:?} at {op} #{nth}, {redelivery:?}");
            let mut found = c.violations(&releases).await;
            if !c.faults.fired() {
                found.push("the fault was never injected".into());
            }
            (label, found, c.faults.calls())
        }));
    }
    let mut failures = vec![];
    let mut seen_calls = calls.clone();
    for run in runs {
        let (label, found, calls) = run.await.unwrap();
        seen_calls.extend(calls);
        if !found.is_empty() {
            failures.push(format!("{label}: {}", found.join("; ")));
        }
    }
    record_calls("deployer", &seen_calls);
    println!(
        "fault matrix: {} calls x {} fault kinds (+ late/duplicate redelivery for the 2 that fail the invocation) = {total} cases, {} violated",
        points.len(),
        Fault::ALL.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
