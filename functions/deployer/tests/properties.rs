//! Property: whatever the order of pushes, redeliveries, deployment ends (delivered, lost, or
//! failed) and sweeps, the deployer over the in-memory ledger and a CodeDeploy fake that
//! refuses a second active deployment never deploys a release twice, never deploys an older
//! release after a newer one, and once everything running has ended, the newest push has
//! shipped, every release is final and the queue is idle. The reference model is the list of
//! pushes: the newest push is the one that must have shipped, and deployments must follow
//! push order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use greenlight_deployer::{handle, Deps};
use greenlight_shared::appspec::ReleaseDescription;
use greenlight_shared::fakes::{
    digest, sample_event, Calls, FakeCodeDeploy, FakeEcs, FakeLedger, FakeRegistry,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::Config;
use proptest::prelude::*;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
"#;

#[derive(Debug, Clone)]
enum Op {
    /// Push release `n` (its push time is `n` minutes: a higher `n` is newer).
    Push(u8),
    /// The same push delivered again.
    Redeliver(u8),
    /// The running deployment ends; `delivered` false when its end event is lost.
    End { success: bool, delivered: bool },
    /// The periodic sweep.
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..12).prop_map(Op::Push),
        1 => (1u8..12).prop_map(Op::Redeliver),
        3 => (any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(success, delivered)| Op::End { success, delivered }),
        1 => Just(Op::Sweep),
    ]
}

struct World {
    deps: Deps,
    codedeploy: Arc<FakeCodeDeploy>,
    ledger: Arc<FakeLedger>,
    requests: usize,
}

impl World {
    fn new() -> Self {
        let calls = Arc::new(Calls::default());
        let mut codedeploy = FakeCodeDeploy::new(calls.clone());
        codedeploy.one_at_a_time = true;
        let codedeploy = Arc::new(codedeploy);
        let ledger = Arc::new(FakeLedger::default());
        let deps = Deps {
            config: Config::parse(CONFIG).unwrap(),
            codedeploy: codedeploy.clone(),
            ecs: Arc::new(FakeEcs::new(calls.clone(), "old-image")),
            registry: Arc::new(FakeRegistry::new(calls)),
            ledger: ledger.clone(),
            hook_function: "CodeDeployHook_greenlight".into(),
            lease_margin: Duration::ZERO,
            readback_pause: Duration::ZERO,
            gates: greenlight_shared::fakes::idle_gates(),
        };
        Self {
            deps,
            codedeploy,
            ledger,
            requests: 0,
        }
    }

    async fn deliver(&mut self, event: Value) {
        self.requests += 1;
        let invocation =
            Invocation::for_test(&format!("req-{}", self.requests), Duration::from_secs(30));
        handle(&self.deps, event, &invocation)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn push_event(n: u8) -> Value {
        let mut e = sample_event("ecr-push-version");
        e["detail"]["image-tag"] = json!(format!("v1.0.{n}"));
        e["detail"]["image-digest"] = json!(digest(n));
        e["time"] = json!(Utc
            .with_ymd_and_hms(2026, 11, 25, 10, n.into(), 0)
            .unwrap()
            .to_rfc3339());
        e
    }

    /// Ends the active deployment, if any; returns its end event.
    fn end_active(&self, success: bool) -> Option<Value> {
        let mut deployments = self.codedeploy.deployments.lock().unwrap();
        let active = deployments.values_mut().find(|d| d.is_active())?;
        active.status = if success { "Succeeded" } else { "Failed" }.into();
        let mut e = sample_event("codedeploy-success");
        e["detail"]["deploymentId"] = json!(active.id);
        e["detail"]["state"] = json!(if success { "SUCCESS" } else { "FAILURE" });
        Some(e)
    }

    /// Created deployments as (release number, status), in creation order.
    fn deployed(&self) -> Vec<(u8, String)> {
        let created = self.codedeploy.created.lock().unwrap().clone();
        let deployments = self.codedeploy.deployments.lock().unwrap();
        created
            .iter()
            .enumerate()
            .map(|(i, request)| {
                let d = ReleaseDescription::parse(&request.description).unwrap();
                let n = (1u8..=255).find(|n| digest(*n) == d.digest).unwrap();
                let status = deployments[&format!("d-FAKE{:05}", i + 1)].status.clone();
                (n, status)
            })
            .collect()
    }
}

fn check(world: &World, pushed: &[u8], settled: bool) -> Result<(), TestCaseError> {
    let deployed = world.deployed();
    let mut per_release: HashMap<u8, usize> = HashMap::new();
    for (n, _) in &deployed {
        *per_release.entry(*n).or_default() += 1;
    }
    prop_assert!(
        per_release.values().all(|c| *c == 1),
        "a release deployed twice: {deployed:?}"
    );
    prop_assert!(
        deployed.windows(2).all(|w| w[0].0 < w[1].0),
        "an older release deployed after a newer one: {deployed:?}"
    );
    if settled {
        if let Some(newest) = pushed.iter().max() {
            prop_assert!(
                deployed.iter().any(|(n, _)| n == newest),
                "the newest push {newest} never shipped: {deployed:?}"
            );
        }
        for n in pushed {
            let record = world.ledger.record(&digest(*n)).unwrap();
            prop_assert!(
                record.status.is_final(),
                "release {n} left {}",
                record.status.as_str()
            );
        }
        let queue = world.ledger.queue_of("web1");
        prop_assert!(
            queue.active.is_none() && queue.pending.is_none(),
            "queue not idle: {queue:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_order_of_pushes_ends_and_redeliveries_keeps_the_release_promises(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut world = World::new();
            let mut pushed = vec![];
            for op in &ops {
                match op {
                    Op::Push(n) => {
                        pushed.push(*n);
                        world.deliver(World::push_event(*n)).await;
                    }
                    Op::Redeliver(n) if pushed.contains(n) => {
                        world.deliver(World::push_event(*n)).await;
                    }
                    Op::Redeliver(_) => {}
                    Op::End { success, delivered } => {
                        if let Some(event) = world.end_active(*success) {
                            if *delivered {
                                world.deliver(event).await;
                            }
                        }
                    }
                    Op::Sweep => world.deliver(sample_event("scheduled-sweep")).await,
                }
                check(&world, &pushed, false)?;
            }
            // Everything running ends (its events delivered), then a sweep.
            for _ in 0..pushed.len() + 1 {
                match world.end_active(true) {
                    Some(event) => world.deliver(event).await,
                    None => world.deliver(sample_event("scheduled-sweep")).await,
                }
            }
            world.deliver(sample_event("scheduled-sweep")).await;
            check(&world, &pushed, true)
        })?;
    }
}
