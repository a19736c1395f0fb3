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

use greenlight_shared::ledger::ReleaseRecord;
use greenlight_tests::deployer_case::{Case, Delivered, Engine, MotoWorld, Release, APP};
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
    /// An operator's request whose invocation died: Lambda does not retry a synchronous
    /// Invoke, so the operator asks again (a new request) once the dead one's lease ran out.
    SecondRequest,
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
    /// Whatever deployment runs ends successfully (skipped when there is none).
    EndAny,
}

async fn play(case: &Case, releases: &[Release], redelivery: Redelivery) {
    let mut late = vec![];
    let mut delivered = vec![];
    for (i, step) in scenario(releases).into_iter().enumerate() {
        let event = match step {
            Step::Event(e) => e,
            Step::EndAny => unreachable!(),
            Step::End(digest) => {
                let Some(d) = case
                    .runs_of(&digest)
                    .await
                    .into_iter()
                    .find(|d| d.status == "InProgress")
                else {
                    continue;
                };
                case.finish(&d.id, true).await
            }
        };
        let request = format!("step-{i}");
        match redelivery {
            Redelivery::Retry | Redelivery::SecondRequest => {
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

    let (total, failures) = run_matrix(Scenario::Pushes, &w, &releases, &calls).await;
    println!(
        "fault matrix: {} calls x {} fault kinds (+ late/duplicate redelivery for the 2 that fail the invocation) = {total} cases, {} violated",
        points.len(),
        Fault::ALL.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_the_native_engine_every_fault_at_every_call_deploys_each_release_at_most_once_and_the_newest_ships(
) {
    // The same scenario and promises when ECS deploys the service itself: UpdateService, the
    // service deployment APIs and "ECS Deployment State Change" events instead of CodeDeploy.
    let w = MotoWorld::deployed_by(Engine::Ecs).await;
    let releases = w.push_releases(4).await;
    let clean = w.case("native-clean", BUDGET).await;
    play(&clean, &releases, Redelivery::Retry).await;
    assert_eq!(clean.violations(&releases).await, Vec::<String>::new());
    let calls = clean.faults.calls();
    for op in [
        "DescribeServices",
        "RegisterTaskDefinition",
        "ListServiceDeployments",
        "UpdateService",
        "DescribeServiceDeployments",
        "TransactWriteItems",
    ] {
        assert!(calls.iter().any(|c| c == op), "never calls {op}: {calls:?}");
    }
    assert!(
        !calls
            .iter()
            .any(|c| c == "CreateDeployment" || c == "GetDeploymentGroup"),
        "CodeDeploy is not this service's engine: {calls:?}"
    );
    let points = injection_points(&calls);
    let (total, failures) = run_matrix(Scenario::Pushes, &w, &releases, &calls).await;
    // The clean run took the first strategy (BLUE_GREEN); the matrix the rest in turn.
    let [blue_green, linear, canary] = w.cases_per_strategy();
    let blue_green = blue_green - 1;
    println!(
        "native fault matrix: {} calls x {} fault kinds (+ late/duplicate redelivery) = {total} cases ({blue_green} BLUE_GREEN, {linear} LINEAR, {canary} CANARY), {} violated",
        points.len(),
        Fault::ALL.len(),
        failures.len()
    );
    assert!(
        linear > 50 && canary > 50,
        "every strategy meets the faults"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The operator's rollback request of the second matrix, and the one they send when the
/// first one's invocation died.
const ROLLBACK: &str = "5f0c9a51-1d7e-4c3b-9a0e-7f3c2b1a0d99";
const ROLLBACK_AGAIN: &str = "5f0c9a51-1d7e-4c3b-9a0e-7f3c2b1a0daa";

fn rollback_request(to: &Release, asked_at: chrono::DateTime<chrono::Utc>) -> Value {
    serde_json::json!({
        "greenlight": "rollback",
        "app": greenlight_tests::deployer_case::APP,
        "release": to.digest,
        "request_id": ROLLBACK,
        "requested_by": "arn:aws:sts::123456789012:assumed-role/Operators/alice",
        "requested_at": asked_at.to_rfc3339(),
    })
}

/// Before the faults: v1 ships, then v2 ships.
async fn ship_two(case: &Case, releases: &[Release]) {
    for (i, r) in releases[..2].iter().enumerate() {
        case.deliver_until_done(&r.push(), &format!("setup-push-{i}"))
            .await;
        case.end_running(&|_| false, &format!("setup-end-{i}"))
            .await;
    }
}

/// Under faults: the operator asks to roll back to v1; v3 is pushed just after the request was
/// sent (while the rollback deploys); the running deployment ends, then the next. A request's
/// place in the order is when the deployer first received it (the operator's clock, here a
/// week slow, does not count), so v3 is pushed at the wall clock's time.
async fn play_rollback(case: &Case, releases: &[Release], redelivery: Redelivery) {
    let slow_clock = chrono::Utc::now() - chrono::Duration::days(7);
    let steps = vec![
        Step::Event(rollback_request(&releases[0], slow_clock)),
        Step::Event(Value::Null),
        Step::EndAny,
        Step::EndAny,
    ];
    let mut late = vec![];
    let mut delivered = vec![];
    for (i, step) in steps.into_iter().enumerate() {
        let event = match step {
            // v3, pushed now: after the request was sent (and, unless it failed, received).
            Step::Event(Value::Null) => Release {
                pushed_at: chrono::Utc::now() + chrono::Duration::milliseconds(5),
                ..releases[2].clone()
            }
            .push(),
            Step::Event(e) => e,
            Step::EndAny => {
                let Some(d) = case
                    .stand_in
                    .deployments()
                    .into_iter()
                    .find(|d| d.status == "InProgress")
                else {
                    continue;
                };
                case.stand_in.complete(&d.id, "Succeeded")
            }
            Step::End(_) => unreachable!(),
        };
        let request = format!("op-step-{i}");
        match redelivery {
            Redelivery::SecondRequest if i == 0 => {
                if !matches!(case.deliver(&event, &request).await, Delivered::Done(_)) {
                    tokio::time::sleep(BUDGET).await;
                    let mut again = event.clone();
                    again["request_id"] = serde_json::json!(ROLLBACK_AGAIN);
                    case.deliver_until_done(&again, "op-second-request").await;
                }
            }
            Redelivery::Retry | Redelivery::SecondRequest => {
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
            case.deliver_until_done(event, &format!("op-again-{i}"))
                .await;
        }
    }
    case.drain(&|_| false).await;
}

/// The request's promises: of the rollback and v3, the newer (by the places the ledger
/// recorded: the request's first receipt, v3's push) ships exactly once and the older at most
/// once and never after it; v1 keeps its first run; every record final as its deployment
/// ended; the queue idle.
async fn rollback_violations(case: &Case, releases: &[Release]) -> Vec<String> {
    use greenlight_shared::appspec::ReleaseDescription;
    let mut found = vec![];
    let described: Vec<_> = case
        .stand_in
        .deployments()
        .into_iter()
        .filter_map(|d| {
            let r = d
                .description
                .as_deref()
                .and_then(ReleaseDescription::parse)?;
            Some((d, r))
        })
        .collect();
    // The rollback is either request's (a second one resumes the first's claim, or makes its
    // own when the first died before claiming).
    let same = |found: Option<&str>, wanted: Option<&str>| {
        found == wanted || (wanted == Some(ROLLBACK) && found == Some(ROLLBACK_AGAIN))
    };
    let count = |digest: &str, request: Option<&str>| {
        described
            .iter()
            .filter(|(_, r)| r.digest == digest && same(r.request.as_deref(), request))
            .count()
    };
    let (v1, v2, v3) = (&releases[0], &releases[1], &releases[2]);
    let place = |record: Option<ReleaseRecord>| record.map(|r| r.pushed_at);
    let rollback_newer = match (
        place(case.release(&v1.digest).await),
        place(case.release(&v3.digest).await),
    ) {
        (Some(rollback), Some(pushed)) => rollback > pushed,
        (found, _) => found.is_some(),
    };
    let (rollback_runs, v3_runs) = if rollback_newer {
        (1..=1, 0..=1)
    } else {
        (0..=1, 1..=1)
    };
    for (what, n, expected) in [
        ("v1's push", count(&v1.digest, None), 1..=1),
        ("v2", count(&v2.digest, None), 1..=1),
        ("v3", count(&v3.digest, None), v3_runs),
        (
            "the rollback",
            count(&v1.digest, Some(ROLLBACK)),
            rollback_runs,
        ),
    ] {
        if !expected.contains(&n) {
            found.push(format!("{what} deployed {n} times"));
        }
    }
    let position = |digest: &str, request: Option<&str>| {
        described
            .iter()
            .position(|(_, r)| r.digest == digest && same(r.request.as_deref(), request))
    };
    if let (Some(rollback), Some(pushed)) = (
        position(&v1.digest, Some(ROLLBACK)),
        position(&v3.digest, None),
    ) {
        if rollback > pushed && !rollback_newer {
            found.push("the rollback deployed after the newer v3".into());
        }
        if pushed > rollback && rollback_newer {
            found.push("v3 deployed after the newer rollback".into());
        }
    }
    for (r, request) in [(v1, Some(ROLLBACK)), (v3, None)] {
        let Some(record) = case.release(&r.digest).await else {
            found.push(format!("{} has no release record", r.version));
            continue;
        };
        if !same(record.request.as_ref().map(|q| q.id.as_str()), request) {
            found.push(format!("{} does not record the request", r.version));
        }
        if !record.status.is_final() {
            found.push(format!("{} left {}", r.version, record.status.as_str()));
        }
        let deployment = described
            .iter()
            .find(|(_, d)| d.digest == r.digest && same(d.request.as_deref(), request));
        let expected = match deployment.map(|(d, _)| d.status.as_str()) {
            Some("Succeeded") => "succeeded",
            Some(_) => "failed",
            None => "superseded",
        };
        if record.status.as_str() != expected {
            found.push(format!(
                "{} recorded {}, expected {expected}",
                r.version,
                record.status.as_str()
            ));
        }
    }
    let runs_of_v1 = greenlight_shared::ledger::HistoryLedger::history(&case.ledger, APP)
        .await
        .map(|h| h.iter().filter(|e| e.record.digest == v1.digest).count())
        .unwrap_or_default();
    if runs_of_v1 != 2 {
        found.push(format!("v1 has {runs_of_v1} runs in the history, not 2"));
    }
    let queue = case.queue().await;
    if queue.active.is_some() || queue.pending.is_some() {
        found.push(format!("the queue did not end idle: {queue:?}"));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_at_every_call_of_a_rollback_request_deploys_it_at_most_once_and_never_after_a_newer_push(
) {
    let w = MotoWorld::start().await;
    let releases = w.push_releases(3).await;

    let clean = w.case("request-clean", BUDGET).await;
    ship_two(&clean, &releases).await;
    clean.faults.reset();
    play_rollback(&clean, &releases, Redelivery::Retry).await;
    assert_eq!(
        rollback_violations(&clean, &releases).await,
        Vec::<String>::new()
    );
    let rolled_back = clean.stand_in.deployments().iter().any(|d| {
        d.description
            .as_deref()
            .is_some_and(|t| t.contains(ROLLBACK))
    });
    assert!(rolled_back, "without faults the rollback deploys");
    let calls = clean.faults.calls();
    for op in [
        "DescribeImages",
        "BatchGetImage",
        "TransactWriteItems",
        "CreateDeployment",
    ] {
        assert!(calls.iter().any(|c| c == op), "never calls {op}: {calls:?}");
    }
    let points = injection_points(&calls);
    let (total, failures) = run_matrix(Scenario::Rollback, &w, &releases, &calls).await;
    println!(
        "request fault matrix: {} calls x {} fault kinds (+ late/duplicate redelivery) = {total} cases, {} violated",
        points.len(),
        Fault::ALL.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The two scenarios of the matrices.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    Pushes,
    Rollback,
}

impl Scenario {
    /// Plays the scenario on a fresh case with `fault` armed; the promises it broke.
    async fn run(
        self,
        c: &Case,
        releases: &[Release],
        (op, nth, fault): (&str, usize, Fault),
        redelivery: Redelivery,
    ) -> Vec<String> {
        match self {
            Self::Pushes => {
                c.faults.arm(op, nth, fault);
                play(c, releases, redelivery).await;
                c.violations(releases).await
            }
            Self::Rollback => {
                ship_two(c, releases).await;
                c.faults.reset();
                c.faults.arm(op, nth, fault);
                play_rollback(c, releases, redelivery).await;
                rollback_violations(c, releases).await
            }
        }
    }
}

/// Every fault kind at every call of the fault-free run (`calls`), and the late/duplicate
/// redelivery for the kinds that fail the invocation; PARALLEL cases at a time, each on its
/// own table and stand-in. Records every call seen as the deployer's; the number of cases and
/// a line per case that broke a promise.
async fn run_matrix(
    scenario: Scenario,
    w: &Arc<MotoWorld>,
    releases: &[Release],
    calls: &[String],
) -> (usize, Vec<String>) {
    let mut cases = vec![];
    for (op, nth) in injection_points(calls) {
        for fault in Fault::ALL {
            cases.push((op.clone(), nth, fault, Redelivery::Retry));
            if fault.fails_the_invocation() {
                cases.push((op.clone(), nth, fault, Redelivery::LateAndDuplicated));
                if matches!(scenario, Scenario::Rollback) {
                    cases.push((op.clone(), nth, fault, Redelivery::SecondRequest));
                }
            }
        }
    }
    let total = cases.len();
    let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut runs = vec![];
    for (i, (op, nth, fault, redelivery)) in cases.into_iter().enumerate() {
        let (w, gate, releases) = (w.clone(), gate.clone(), releases.to_vec());
        runs.push(tokio::spawn(async move {
            let _slot = gate.acquire().await.unwrap();
            let c = w
                .case(&format!("{scenario:?}-{i}").to_lowercase(), BUDGET)
                .await;
            let mut found = scenario
                .run(&c, &releases, (&op, nth, fault), redelivery)
                .await;
            if !c.faults.fired() {
                found.push("the fault was never injected".into());
            }
            let label = format!("{fault:?} at {op} #{nth}, {redelivery:?}");
            (label, found, c.faults.calls())
        }));
    }
    let mut failures = vec![];
    let mut seen_calls = calls.to_vec();
    for run in runs {
        let (label, found, calls) = run.await.unwrap();
        seen_calls.extend(calls);
        if !found.is_empty() {
            failures.push(format!("{label}: {}", found.join("; ")));
        }
    }
    record_calls("deployer", &seen_calls);
    (total, failures)
}
