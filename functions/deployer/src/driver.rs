//! The queue driver: claims a release and takes it through the app's queue (admit, deploy,
//! adopt what a lost answer made), each decision a pure rule of `greenlight_shared::queue`
//! written in one conditional transaction.

use crate::core::{lease_of, DeployError, Deps, Outcome};
use crate::target::{appspec_of, target, Target};
use chrono::Utc;
use greenlight_shared::appspec::ReleaseDescription;
use greenlight_shared::engine::{self, DeploymentEngine, Launch, Run};
use greenlight_shared::events::ImagePush;
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Claim, LedgerError, ReleaseRecord, ReleaseStatus};
use greenlight_shared::queue::{Lease, Next, Plan, Queue, Ticket};
use greenlight_shared::task_definition::{container_image, next_revision, ReleaseImage};
use greenlight_shared::{AppConfig, AwsErrorKind};
use tracing::{info, warn};

/// How long a recorded deployment that AWS answers NotFound for may hold the queue: right
/// after its creation a read can miss it; long after, it is gone for good.
pub(crate) const NOT_FOUND_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// How far back a resumed release looks for a deployment of its own, before it took the queue
/// (clock differences between CodeDeploy and the function).
pub(crate) const ADOPTION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Claims a release (a push, or an operator's request) and takes it through the app's queue.
pub(crate) async fn deploy_release(
    deps: &Deps,
    push: &ImagePush,
    app: &AppConfig,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let mut driver = Driver::new(deps, app, invocation);
    let record = match deps.ledger.claim(push, &driver.lease).await? {
        Claim::HeldElsewhere(record) => {
            info!(app = %record.app, version = %record.version, digest = %record.digest, "another invocation is deploying this release");
            return Ok(Outcome::InProgressElsewhere {
                app: record.app,
                version: record.version,
            });
        }
        Claim::Done(record)
            if record.status == ReleaseStatus::Pending && push.request.is_some() =>
        {
            // An operator asks for the release that waits: it takes the request's place.
            let asked = Ticket {
                pushed_at_ms: push.pushed_at.timestamp_millis(),
                ..ticket_of(&record)
            };
            let next = driver.apply(|q, _| q.promote_pending(&asked)).await?;
            info!(app = %record.app, version = %record.version, digest = %record.digest,
                  promoted = matches!(next, Next::Waiting { .. }), "the requested release waits, in the request's place");
            return Ok(Outcome::Waiting {
                app: record.app,
                version: record.version,
                replaced: None,
            });
        }
        Claim::Done(record) => {
            info!(app = %record.app, version = %record.version, digest = %record.digest, status = record.status.as_str(), "release already handled");
            return Ok(Outcome::Duplicate {
                app: record.app,
                version: record.version,
                status: record.status.as_str().to_string(),
            });
        }
        Claim::Acquired(record) => record,
    };
    let ticket = ticket_of(&record);
    let next = driver.apply(|q, lease| q.admit(&ticket, lease)).await?;
    let outcome = match &next {
        Next::Waiting { replaced } => {
            info!(app = %app.name, version = %record.version, digest = %record.digest,
                  replaced = replaced.as_deref().unwrap_or(""), "a deployment is in progress (deployment group or service busy): the release waits");
            Outcome::Waiting {
                app: app.name.clone(),
                version: record.version.clone(),
                replaced: replaced.clone(),
            }
        }
        Next::Superseded { by } => {
            warn!(app = %app.name, version = %record.version, digest = %record.digest, by = %by,
                  "superseded: a newer release has started or is waiting; this one will not deploy");
            Outcome::Superseded {
                app: app.name.clone(),
                version: record.version.clone(),
                by: by.clone(),
            }
        }
        Next::HeldElsewhere => Outcome::InProgressElsewhere {
            app: app.name.clone(),
            version: record.version.clone(),
        },
        Next::Deploying { .. } | Next::Idle => Outcome::Duplicate {
            app: app.name.clone(),
            version: record.version.clone(),
            status: record.status.as_str().to_string(),
        },
        Next::Deploy { .. } => Outcome::Skipped {
            reason: String::new(),
        },
    };
    let next = match next {
        // A waiting push looks at what holds the group: its end event may have been lost, or
        // its invocation may have died.
        Next::Waiting { .. } => driver.settle().await?,
        next => next,
    };
    driver.follow(next, outcome, Some(record)).await
}

pub(crate) fn ticket_of(record: &ReleaseRecord) -> Ticket {
    Ticket {
        pushed_at_ms: record.pushed_at.timestamp_millis(),
        digest: record.digest.clone(),
        version: record.version.clone(),
    }
}

/// Drives one app's queue for one invocation: each decision is a pure function of the queue
/// (`greenlight_shared::queue`), written with the release changes it implies in one
/// conditional transaction, decided again from a fresh read when another writer got there first.
pub(crate) struct Driver<'a> {
    pub(crate) deps: &'a Deps,
    pub(crate) app: &'a AppConfig,
    pub(crate) lease: Lease,
    /// The queue as this invocation last read or wrote it.
    pub(crate) known: Option<Queue>,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(deps: &'a Deps, app: &'a AppConfig, invocation: &Invocation) -> Self {
        Self {
            deps,
            app,
            lease: lease_of(deps, invocation),
            known: None,
        }
    }

    /// Decides with `decide` and writes the plan; returns what to do next.
    pub(crate) async fn apply(
        &mut self,
        decide: impl Fn(&Queue, &Lease) -> Plan,
    ) -> Result<Next, DeployError> {
        for _ in 0..16 {
            self.lease.now_ms = Utc::now().timestamp_millis();
            let (read, cached) = match self.known.take() {
                Some(q) => (q, true),
                None => (self.deps.ledger.queue(&self.app.name).await?, false),
            };
            let plan = decide(&read, &self.lease);
            if !plan.writes(&read) {
                if cached {
                    // Deciding to do nothing is only trusted on a fresh read.
                    continue;
                }
                self.known = Some(read);
                return Ok(plan.next);
            }
            if self
                .deps
                .ledger
                .commit(&self.app.name, &read, &plan)
                .await?
            {
                for change in &plan.changes {
                    if change.status == ReleaseStatus::Superseded {
                        warn!(app = %self.app.name, version = %change.release.version, digest = %change.release.digest,
                              by = change.superseded_by.as_deref().unwrap_or(""), "superseded by a newer release");
                    }
                }
                self.known = Some(Queue {
                    version: read.version + 1,
                    ..plan.queue
                });
                return Ok(plan.next);
            }
        }
        Err(DeployError::Contention(self.app.name.clone()))
    }

    /// Reads back the deployment holding the queue; one that has ended (its end event was
    /// lost) is finished here.
    pub(crate) async fn check_active(&mut self) -> Result<Next, DeployError> {
        let queue = match self.known.clone() {
            Some(q) => q,
            None => self.deps.ledger.queue(&self.app.name).await?,
        };
        let Some(id) = queue.active_deployment().map(str::to_string) else {
            self.known = Some(queue);
            return Ok(Next::Idle);
        };
        let since_ms = queue.active.as_ref().map_or(0, |a| a.since_ms);
        self.known = Some(queue);
        let run = match engine::run_by_id(
            self.deps.codedeploy.as_ref(),
            self.deps.ecs.as_ref(),
            &id,
        )
        .await
        {
            Ok(run) => run,
            Err(e)
                if e.kind == AwsErrorKind::NotFound
                    && Utc::now().timestamp_millis() - since_ms
                        > NOT_FOUND_GRACE.num_milliseconds() =>
            {
                // Gone for good (the service was recreated, the deployment aged out): it can
                // never be read again, so it must not hold the app's releases for ever.
                warn!(app = %self.app.name, deployment_id = %id, error = %e,
                      "the deployment holding the queue can no longer be read: closed as stopped, the queue moves on");
                return self
                    .apply(|q, lease| q.end(&id, ReleaseStatus::Stopped, lease))
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        if run.active {
            return Ok(Next::Idle);
        }
        warn!(app = %self.app.name, deployment_id = %id, status = %run.status,
              "the queue was held by a deployment that has ended (its end event was lost): finishing it");
        self.apply(|q, lease| q.end(&id, run.ended, lease)).await
    }

    /// Finishes what lost events left: a deployment that ended, a release whose invocation
    /// died, a waiting release in a free queue.
    pub(crate) async fn settle(&mut self) -> Result<Next, DeployError> {
        match self.check_active().await? {
            Next::Idle => self.apply(|q, lease| q.advance(lease)).await,
            next => Ok(next),
        }
    }

    /// Carries out `next` and whatever it leads to; returns the outcome of the last action.
    pub(crate) async fn follow(
        &mut self,
        mut next: Next,
        mut outcome: Outcome,
        mut fresh: Option<ReleaseRecord>,
    ) -> Result<Outcome, DeployError> {
        for _ in 0..8 {
            let Next::Deploy { digest, resumed } = next else {
                return Ok(outcome);
            };
            let record = match fresh.take().filter(|r| r.digest == digest) {
                Some(r) => r,
                None => self
                    .deps
                    .ledger
                    .release(&self.app.name, &digest)
                    .await?
                    .ok_or_else(|| LedgerError {
                        operation: "GetItem",
                        message: format!(
                            "the queue names release {}/{digest}, which has no item",
                            self.app.name
                        ),
                    })?,
            };
            (outcome, next) = match self.deploy(&record, resumed).await {
                Ok(done) => done,
                Err(e) if e.is_permanent() => {
                    warn!(app = %self.app.name, version = %record.version, digest = %record.digest, error = %e,
                          "the release cannot be deployed: closed as failed, the queue moves on");
                    let digest = record.digest.clone();
                    self.apply(|q, lease| {
                        q.close_without_deployment(&digest, ReleaseStatus::Failed, lease)
                    })
                    .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
        }
        Ok(outcome)
    }

    /// Deploys the release that holds the queue: reconcile when resumed, register its revision
    /// unless done, create the deployment, record it.
    pub(crate) async fn deploy(
        &mut self,
        record: &ReleaseRecord,
        resumed: bool,
    ) -> Result<(Outcome, Next), DeployError> {
        let (deps, app) = (self.deps, self.app);
        let Target {
            engine,
            service,
            lb,
            container,
        } = target(deps, app).await?;
        if resumed {
            if let Some(own) = self.own_run(engine.as_ref(), record).await? {
                return self.adopt(record, &own).await;
            }
        }

        let task_definition = match &record.task_definition_arn {
            Some(arn) => {
                info!(app = %app.name, task_definition = %arn, "resuming after registration");
                arn.clone()
            }
            None => {
                let (td, tags) = deps
                    .ecs
                    .task_definition(&service.task_definition_arn)
                    .await?;
                // A push of what runs is a no-op; an operator's request of it redeploys.
                if record.request.is_none()
                    && container_image(&td, &container) == Some(record.image.as_str())
                {
                    info!(app = %app.name, version = %record.version, digest = %record.digest, "service already runs this image");
                    let digest = record.digest.clone();
                    let next = self
                        .apply(|q, lease| {
                            q.close_without_deployment(
                                &digest,
                                ReleaseStatus::AlreadyRunning,
                                lease,
                            )
                        })
                        .await?;
                    let outcome = Outcome::AlreadyRunning {
                        app: app.name.clone(),
                        version: record.version.clone(),
                    };
                    return Ok((outcome, next));
                }
                let request = next_revision(
                    &td,
                    &tags,
                    &ReleaseImage {
                        app: &app.name,
                        container: &container,
                        image: &record.image,
                        version: &record.version,
                        digest: &record.digest,
                    },
                )?;
                let arn = deps.ecs.register_task_definition(request).await?;
                info!(app = %app.name, version = %record.version, task_definition = %arn, "task definition registered");
                deps.ledger
                    .record_registered(&app.name, &record.digest, &arn)
                    .await?;
                arn
            }
        };

        let launch = Launch {
            appspec: appspec_of(deps, app, &lb, task_definition.clone()).to_json(),
            description: ReleaseDescription {
                app: app.name.clone(),
                version: record.version.clone(),
                digest: record.digest.clone(),
                request: record.request.as_ref().map(|r| r.id.clone()),
            }
            .to_string(),
            task_definition: task_definition.clone(),
        };
        match engine.start(&launch).await {
            Ok(deployment_id) => {
                info!(app = %app.name, version = %record.version, digest = %record.digest, deployment_id = %deployment_id,
                      task_definition = %task_definition, engine = %engine.kind(), "deployment created");
                let next = self
                    .apply(|q, lease| q.deploying(&record.digest, &deployment_id, lease))
                    .await?;
                Ok((deployed(record, &task_definition, &deployment_id), next))
            }
            Err(e) if e.kind == AwsErrorKind::DeploymentLimitExceeded => {
                // Ours, created by an earlier attempt whose answer was lost (the SDK's retry
                // then meets it), or someone else's (a rollback, a manual deployment).
                let active = engine.active_runs().await?;
                if let Some(own) = active.iter().find(|d| names_release(d, record)) {
                    return self.adopt(record, own).await;
                }
                let Some(foreign) = active.first() else {
                    // It ended in between: fail so that the retry creates it.
                    return Err(e.into());
                };
                info!(app = %app.name, version = %record.version, digest = %record.digest, deployment_id = %foreign.id,
                      "busy with a deployment Greenlight did not start: the release waits for its end");
                let next = self
                    .apply(|q, lease| q.blocked_by_foreign(&record.digest, &foreign.id, lease))
                    .await?;
                let outcome = match &next {
                    Next::Superseded { by } => Outcome::Superseded {
                        app: app.name.clone(),
                        version: record.version.clone(),
                        by: by.clone(),
                    },
                    _ => Outcome::Waiting {
                        app: app.name.clone(),
                        version: record.version.clone(),
                        replaced: None,
                    },
                };
                Ok((outcome, next))
            }
            Err(e) if e.kind == AwsErrorKind::Unavailable => {
                // The answer may be lost after the engine acted (a deployment that fails at
                // once has ended before any retry could meet it as busy): what it made is
                // adopted; otherwise the invocation fails and its retry, or the sweep, starts it.
                warn!(app = %app.name, version = %record.version, digest = %record.digest, error = %e,
                      "starting the deployment failed: reading back whether it was made");
                match self.own_run(engine.as_ref(), record).await {
                    Ok(Some(own)) => self.adopt(record, &own).await,
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A deployment of this run of the release that an earlier attempt made, if any.
    pub(crate) async fn own_run(
        &self,
        engine: &dyn DeploymentEngine,
        record: &ReleaseRecord,
    ) -> Result<Option<Run>, DeployError> {
        let since = self
            .known
            .as_ref()
            .and_then(|q| q.active.as_ref())
            .and_then(|a| chrono::DateTime::from_timestamp_millis(a.since_ms))
            .unwrap_or(record.pushed_at)
            - ADOPTION_WINDOW;
        let earlier = engine.runs_since(since).await?;
        Ok(earlier.into_iter().find(|d| names_release(d, record)))
    }

    /// Records an existing deployment of the release (created by an attempt whose answer was
    /// lost) instead of creating another; finishes it at once when it has already ended.
    pub(crate) async fn adopt(
        &mut self,
        record: &ReleaseRecord,
        found: &Run,
    ) -> Result<(Outcome, Next), DeployError> {
        warn!(app = %self.app.name, version = %record.version, digest = %record.digest, deployment_id = %found.id,
              status = %found.status, "adopting this release's deployment, created by an attempt whose answer was lost");
        let mut next = self
            .apply(|q, lease| q.deploying(&record.digest, &found.id, lease))
            .await?;
        if !found.active {
            next = self
                .apply(|q, lease| q.end(&found.id, found.ended, lease))
                .await?;
        }
        let task_definition = record.task_definition_arn.clone().unwrap_or_default();
        Ok((deployed(record, &task_definition, &found.id), next))
    }
}

/// Whether a deployment is this release's: its description names the release (CodeDeploy), or
/// it deploys the revision registered for this run of the release (native).
pub(crate) fn names_release(deployment: &Run, record: &ReleaseRecord) -> bool {
    if deployment.task_definition.is_some() {
        return deployment.task_definition == record.task_definition_arn;
    }
    deployment
        .description
        .as_deref()
        .and_then(ReleaseDescription::parse)
        .is_some_and(|d| {
            d.app == record.app
                && d.digest == record.digest
                && d.version == record.version
                && d.request.as_deref() == record.request.as_ref().map(|r| r.id.as_str())
        })
}

pub(crate) fn deployed(
    record: &ReleaseRecord,
    task_definition: &str,
    deployment_id: &str,
) -> Outcome {
    Outcome::Deployed {
        app: record.app.clone(),
        version: record.version.clone(),
        digest: record.digest.clone(),
        task_definition: task_definition.to_string(),
        deployment_id: deployment_id.to_string(),
    }
}
