//! A push storm: many releases of one app, with their `latest` twins and duplicate deliveries,
//! in shuffled order, delivered by several deployer invocations running at once while
//! deployments end and their end events join the stream. The races live between invocations,
//! so every AWS and ledger request goes through a proxy that forwards one at a time (moto's
//! DynamoDB takes no lock): a pass or a failure is the deployer's. The same promises as the
//! fault matrix are checked, for several shuffles.
//!
//! Then faults together: the same storm while every few CodeDeploy calls fail (throttled, a
//! 500, a 500 after CodeDeploy acted), each failed invocation retried twice with its request id
//! as Lambda does and then given up (the failed-events queue), deployments ending within
//! milliseconds (sooner than the SDK's retry backoff), and a newest push claimed whose admission
//! to the queue fails on every delivery; once the faults stop, three scheduled sweeps must
//! bring every release to its end, the newest shipped once, none twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenlight_tests::deployer_case::{sweep_event, Case, Delivered, MotoWorld, Release};
use serde_json::Value;

const RELEASES: u32 = 20;
const INVOCATIONS_AT_ONCE: usize = 4;
const SHUFFLES: u64 = 3;
/// Long enough that no live invocation's lease runs out during the storm.
const BUDGET: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(30);

/// A small deterministic generator (xorshift64*): the storm is the same for a given seed.
struct Shuffle(u64);

impl Shuffle {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every push event of the storm, twins and duplicates included, in push order locally
/// shuffled: each event may arrive up to a few places early or late (as EventBridge reorders),
/// so releases both wait and supersede each other.
fn storm_events(releases: &[Release], rng: &mut Shuffle) -> Vec<Value> {
    let mut events = vec![];
    for (i, r) in releases.iter().enumerate() {
        events.push((i * 3 + rng.below(10), r.push()));
        events.push((i * 3 + rng.below(10), r.latest()));
        if rng.below(3) == 0 {
            events.push((i * 3 + rng.below(10), r.push()));
        }
    }
    events.sort_by_key(|(place, _)| *place);
    events.into_iter().map(|(_, e)| e).collect()
}

/// Events waiting for an invocation, with the request id of the attempt that failed, if any,
/// and how many attempts failed.
type Inbox = VecDeque<(Value, Option<String>, u32)>;

/// How Lambda treats a failed invocation in the storm.
#[derive(Clone, Copy)]
enum Retries {
    /// Until it succeeds, and the storm settles by itself: no event is lost.
    UntilDone,
    /// Twice with the same request id, then the event is given up: the sweeps finish.
    LikeLambda,
}

async fn storm(case: Arc<Case>, events: Vec<Value>, seed: u64, retries: Retries) -> Option<String> {
    let inbox: Arc<Mutex<Inbox>> = Arc::default();
    // Pushes arrive a few milliseconds apart, so that they interleave with deployments ending.
    let feeder = {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let mut rng = Shuffle(seed ^ 0xC0FF_EE00);
            for event in events {
                inbox.lock().unwrap().push_back((event, None, 0));
                tokio::time::sleep(Duration::from_millis(rng.below(8) as u64)).await;
            }
        })
    };
    let (stop, busy, requests) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = vec![];
    for _ in 0..INVOCATIONS_AT_ONCE {
        let (case, inbox, stop, busy, requests) = (
            case.clone(),
            inbox.clone(),
            stop.clone(),
            busy.clone(),
            requests.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                busy.fetch_add(1, Ordering::SeqCst);
                let next = inbox.lock().unwrap().pop_front();
                let Some((event, retry_of, failed)) = next else {
                    busy.fetch_sub(1, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                // Lambda retries a failed invocation with the same request id.
                let id = retry_of.unwrap_or_else(|| {
                    format!("storm-{}", requests.fetch_add(1, Ordering::SeqCst))
                });
                let given_up = matches!(retries, Retries::LikeLambda) && failed >= 2;
                if !matches!(case.deliver(&event, &id).await, Delivered::Done(_)) && !given_up {
                    inbox
                        .lock()
                        .unwrap()
                        .push_back((event, Some(id), failed + 1));
                }
                busy.fetch_sub(1, Ordering::SeqCst);
            }
        }));
    }
    // CodeDeploy: each deployment runs a few milliseconds, then its end event joins the stream.
    let ender = {
        let (case, inbox, stop) = (case.clone(), inbox.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = Shuffle(seed ^ 0x9E37_79B9);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(3 + rng.below(12) as u64)).await;
                for d in case.stand_in.deployments() {
                    if d.status == "InProgress" {
                        let event = case.stand_in.complete(&d.id, "Succeeded");
                        inbox.lock().unwrap().push_back((event, None, 0));
                    }
                }
            }
        })
    };
    feeder.await.unwrap();
    let started = Instant::now();
    while started.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let quiet = inbox.lock().unwrap().is_empty() && busy.load(Ordering::SeqCst) == 0;
        let running = case
            .stand_in
            .deployments()
            .iter()
            .any(|d| d.status == "InProgress");
        let queue = case.queue().await;
        let idle = queue.active.is_none() && queue.pending.is_none();
        if quiet && !running && (idle || matches!(retries, Retries::LikeLambda)) {
            break;
        }
    }
    // No event is lost in the storm: it must settle without the sweep.
    let unsettled = if started.elapsed() >= SETTLE && matches!(retries, Retries::UntilDone) {
        Some(format!(
            "did not settle by itself within {SETTLE:?}: {:?}",
            case.queue().await
        ))
    } else {
        None
    };
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    ender.await.unwrap();
    unsettled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_storm_over_concurrent_invocations_ships_the_newest_once_and_never_goes_back() {
    let w = MotoWorld::start().await;
    let releases = w.push_releases(RELEASES).await;
    let mut failures = vec![];
    for seed in 1..=SHUFFLES {
        let mut rng = Shuffle(seed * 0x1234_5678_9ABC);
        let events = storm_events(&releases, &mut rng);
        let case = Arc::new(w.case(&format!("storm-{seed}"), BUDGET).await);
        let unsettled = storm(case.clone(), events, seed, Retries::UntilDone).await;
        // Whatever the storm left is finished as the sweep would.
        case.drain(&|_| false).await;
        let mut found = case.violations(&releases).await;
        found.extend(unsettled);
        let shipped = case.stand_in.deployments().len();
        println!(
            "storm {seed}: {RELEASES} releases, {} calls, {shipped} deployments, {} violations",
            case.faults.calls().len(),
            found.len()
        );
        if !found.is_empty() {
            failures.push(format!("shuffle {seed}: {}", found.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The CodeDeploy calls that fail now and then in the storm with faults.
const CODEDEPLOY_CALLS: [&str; 4] = [
    "CreateDeployment",
    "GetDeployment",
    "ListDeployments",
    "GetDeploymentGroup",
];
const FAULTY_RELEASES: u32 = 12;
/// Short, so that the claims of invocations that gave up run out before the sweeps.
const FAULTY_BUDGET: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_under_codedeploy_faults_and_lambdas_retries_ends_on_the_newest_push_once_after_the_sweeps(
) {
    let w = MotoWorld::start().await;
    let releases = w.push_releases(FAULTY_RELEASES + 1).await;
    let (stormed, newest) = releases.split_at(FAULTY_RELEASES as usize);
    let mut failures = vec![];
    for seed in 1..=SHUFFLES {
        let mut rng = Shuffle(seed * 0x0F0F_1234_5678);
        let events = storm_events(stormed, &mut rng);
        let case = Arc::new(w.case(&format!("faulty-storm-{seed}"), FAULTY_BUDGET).await);
        case.faults.chaos(&CODEDEPLOY_CALLS, 3 + seed as usize);
        storm(case.clone(), events, seed, Retries::LikeLambda).await;
        // The newest push is claimed, and its admission to the queue fails on the first
        // delivery and both of Lambda's retries (the ledger's transactions are down for them).
        case.faults.fail_next("TransactWriteItems", 9);
        for _ in 0..3 {
            let outcome = case.deliver(&newest[0].push(), "newest").await;
            assert!(
                !matches!(outcome, Delivered::Done(_)),
                "the newest push got through: {outcome:?}"
            );
        }
        case.faults.disarm();
        case.faults.calm();
        // The schedule is all that is left: the claims of given-up invocations run out, then
        // three sweeps (the deployments they find running end as CodeDeploy's would).
        tokio::time::sleep(FAULTY_BUDGET).await;
        for round in 0..3 {
            case.end_running(&|_| false, &format!("after-{seed}-{round}"))
                .await;
            case.deliver_until_done(&sweep_event(), &format!("sweep-{seed}-{round}"))
                .await;
        }
        // What they started runs to its end, its end event delivered as CodeDeploy sends it.
        for round in 0..5 {
            if !case.runs().await.iter().any(|r| r.status == "InProgress") {
                break;
            }
            case.end_running(&|_| false, &format!("last-{seed}-{round}"))
                .await;
        }
        let found = case.violations(&releases).await;
        println!(
            "faulty storm {seed}: {FAULTY_RELEASES} releases, {} calls, {} deployments, {} violations",
            case.faults.calls().len(),
            case.stand_in.deployments().len(),
            found.len()
        );
        if !found.is_empty() {
            failures.push(format!("shuffle {seed}: {}", found.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
