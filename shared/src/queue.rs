//! The deployment queue of one app, and the pure rules that move releases through it.
//!
//! One queue per app holds the release being deployed (`active`), at most one release waiting
//! (`pending`) and the newest release that ever started (`newest_started`). Every decision the
//! deployer takes about "who deploys next" is a function here from the queue as read to the
//! queue to write, the release records to change with it, and the one thing to do next
//! ([`Plan`]). The ledger writes a plan in one transaction, conditional on the queue's version:
//! a plan is either wholly written or not at all, and a writer that lost a race reads the queue
//! again and decides again. Because each rule recognises the state its own write leaves behind,
//! deciding again after a write whose answer was lost is always safe.
//!
//! The rules:
//! - **Newest wins, everywhere.** Releases are ordered by push time, then version, then digest
//!   ([`Ticket`]), so two pushes of one second still have the order their versions say. A release older than the newest one that started, or
//!   than the one waiting, is superseded; it never starts after a newer one has.
//! - **One at a time.** A release starts only in a free queue; otherwise it waits, replacing an
//!   older waiting release.
//! - **Nothing lost.** A release that took the queue and whose invocation died (its lease ran
//!   out with no deployment recorded) is resumed by the next event of the app, whatever it is.
//!   A release that waits starts when the active deployment ends, or when the queue is found
//!   free.
//! - **Foreign deployments.** A deployment that Greenlight did not start (a rollback, a manual
//!   deployment) may hold the group: the release goes back to waiting behind it.

use serde::{Deserialize, Serialize};

use crate::model::ReleaseStatus;
use crate::tag_rule::compare_versions;

/// A release's place in the order "newest wins" uses: push time, then the version (by
/// [`compare_versions`]: two CI runs can push within one second), then the digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket {
    pub pushed_at_ms: i64,
    pub digest: String,
    pub version: String,
}

impl Ord for Ticket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.pushed_at_ms
            .cmp(&other.pushed_at_ms)
            .then_with(|| compare_versions(&self.version, &other.version))
            .then_with(|| self.digest.cmp(&other.digest))
    }
}

impl PartialOrd for Ticket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    /// The release deploying; `None` for a deployment Greenlight did not start (which always
    /// has a deployment id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Ticket>,
    /// Set once the deployment exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The invocation driving it until the deployment exists, and until when.
    pub owner: String,
    pub lease_until_ms: i64,
    /// When the release took the queue: deployments older than this are not its own.
    pub since_ms: i64,
}

impl Active {
    fn is_release(&self, digest: &str) -> bool {
        self.release.as_ref().is_some_and(|t| t.digest == digest)
    }

    /// Whether the invocation `lease` belongs to may drive it: its own, or one whose holder died.
    fn resumable_by(&self, lease: &Lease) -> bool {
        self.deployment_id.is_none()
            && (self.owner == lease.owner || self.lease_until_ms < lease.now_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Queue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<Active>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Ticket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_started: Option<Ticket>,
    /// End events that arrived while the active release's deployment was not recorded yet (a
    /// deployment can fail within a second of its creation, and events arrive out of order):
    /// the one for its deployment is applied when that is recorded. At most
    /// [`EARLY_ENDS_KEPT`], the newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_ends: Vec<EarlyEnd>,
    /// Bumped by every write; 0 when the queue was never written.
    pub version: u64,
}

pub const EARLY_ENDS_KEPT: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyEnd {
    pub deployment_id: String,
    pub outcome: ReleaseStatus,
}

/// Who is deciding, and until when it may hold the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until_ms: i64,
    pub now_ms: i64,
}

/// A change to one release record, written with the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub release: Ticket,
    pub status: ReleaseStatus,
    pub deployment_id: Option<String>,
    pub superseded_by: Option<String>,
    /// The release's claim passes to this owner until this time.
    pub lease: Option<(String, i64)>,
}

impl Change {
    fn status(release: &Ticket, status: ReleaseStatus) -> Self {
        Self {
            release: release.clone(),
            status,
            deployment_id: None,
            superseded_by: None,
            lease: None,
        }
    }

    fn superseded(release: &Ticket, by: &Ticket) -> Self {
        Self {
            superseded_by: Some(by.digest.clone()),
            ..Self::status(release, ReleaseStatus::Superseded)
        }
    }

    fn claimed(release: &Ticket, lease: &Lease) -> Self {
        Self {
            lease: Some((lease.owner.clone(), lease.until_ms)),
            ..Self::status(release, ReleaseStatus::Claimed)
        }
    }
}

/// What to do after the plan is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// This invocation holds the queue for the release: deploy it. `resumed` when it may have
    /// been started before (reconcile with the engine before creating anything).
    Deploy { digest: String, resumed: bool },
    /// The release waits; `replaced` is the older release it superseded.
    Waiting { replaced: Option<String> },
    /// A newer release waits or has started.
    Superseded { by: String },
    /// Another live invocation is deploying it.
    HeldElsewhere,
    /// Its deployment exists.
    Deploying { deployment_id: String },
    /// Nothing to do.
    Idle,
}

/// The queue to write, the release changes that go with it, and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub queue: Queue,
    pub changes: Vec<Change>,
    pub next: Next,
}

impl Plan {
    /// Whether there is anything to write.
    pub fn writes(&self, read: &Queue) -> bool {
        self.queue != *read || !self.changes.is_empty()
    }
}

impl Queue {
    /// Whether the release is in this queue: deploying, or waiting.
    pub fn names(&self, digest: &str) -> bool {
        self.active.as_ref().is_some_and(|a| a.is_release(digest))
            || self.pending.as_ref().is_some_and(|p| p.digest == digest)
    }

    fn keep(&self, next: Next) -> Plan {
        Plan {
            queue: self.clone(),
            changes: vec![],
            next,
        }
    }

    /// Makes `release` the active one in this (free) queue.
    fn start(&mut self, release: &Ticket, lease: &Lease, changes: &mut Vec<Change>) -> Next {
        if let Some(older) = self.pending.take().filter(|p| p != release) {
            changes.push(Change::superseded(&older, release));
        }
        self.active = Some(Active {
            release: Some(release.clone()),
            deployment_id: None,
            owner: lease.owner.clone(),
            lease_until_ms: lease.until_ms,
            since_ms: lease.now_ms,
        });
        self.newest_started = Some(release.clone());
        self.early_ends.clear();
        changes.push(Change::claimed(release, lease));
        Next::Deploy {
            digest: release.digest.clone(),
            resumed: false,
        }
    }

    /// A claimed push asks to deploy `release`.
    pub fn admit(&self, release: &Ticket, lease: &Lease) -> Plan {
        if let Some(active) = self
            .active
            .as_ref()
            .filter(|a| a.is_release(&release.digest))
        {
            if let Some(id) = &active.deployment_id {
                return self.keep(Next::Deploying {
                    deployment_id: id.clone(),
                });
            }
            if !active.resumable_by(lease) {
                return self.keep(Next::HeldElsewhere);
            }
            return self.take_over(active, release, lease);
        }
        let mut q = self.clone();
        let mut changes = vec![];
        let waiting_already = self.pending.as_ref() == Some(release);
        if !waiting_already {
            if let Some(newer) = self.newer_than(release) {
                return Plan {
                    queue: q,
                    changes: vec![Change::superseded(release, newer)],
                    next: Next::Superseded {
                        by: newer.digest.clone(),
                    },
                };
            }
            if self.newest_started.as_ref() == Some(release) {
                // It started before and has ended: a late duplicate.
                return self.keep(Next::Idle);
            }
        }
        if self.active.is_some() {
            if waiting_already {
                return self.keep(Next::Waiting { replaced: None });
            }
            let replaced = q.pending.replace(release.clone()).map(|older| {
                changes.push(Change::superseded(&older, release));
                older.digest
            });
            changes.push(Change::status(release, ReleaseStatus::Pending));
            return Plan {
                queue: q,
                changes,
                next: Next::Waiting { replaced },
            };
        }
        let next = q.start(release, lease, &mut changes);
        Plan {
            queue: q,
            changes,
            next,
        }
    }

    /// The newest release that rules `release` out: a newer one started, or a newer one waiting.
    fn newer_than(&self, release: &Ticket) -> Option<&Ticket> {
        [self.newest_started.as_ref(), self.pending.as_ref()]
            .into_iter()
            .flatten()
            .filter(|t| *t > release)
            .max()
    }

    fn take_over(&self, active: &Active, release: &Ticket, lease: &Lease) -> Plan {
        let mut q = self.clone();
        q.active = Some(Active {
            owner: lease.owner.clone(),
            lease_until_ms: lease.until_ms,
            ..active.clone()
        });
        Plan {
            queue: q,
            changes: vec![Change::claimed(release, lease)],
            next: Next::Deploy {
                digest: release.digest.clone(),
                resumed: true,
            },
        }
    }

    /// After any event: resume a release whose invocation died, or start the waiting release
    /// in a free queue.
    pub fn advance(&self, lease: &Lease) -> Plan {
        match &self.active {
            Some(active) => match &active.release {
                Some(t) if active.resumable_by(lease) => self.take_over(active, t, lease),
                _ => self.keep(Next::Idle),
            },
            None => {
                let Some(waiting) = &self.pending else {
                    return self.keep(Next::Idle);
                };
                let mut q = self.clone();
                let mut changes = vec![];
                if let Some(newer) = self.newest_started.as_ref().filter(|n| *n > waiting) {
                    q.pending = None;
                    changes.push(Change::superseded(waiting, newer));
                    return Plan {
                        queue: q,
                        changes,
                        next: Next::Idle,
                    };
                }
                let next = q.start(waiting, lease, &mut changes);
                Plan {
                    queue: q,
                    changes,
                    next,
                }
            }
        }
    }

    /// A deployment ended: free the queue if it held it, record how its release ended, and
    /// go on with the next one.
    pub fn end(&self, deployment_id: &str, outcome: ReleaseStatus, lease: &Lease) -> Plan {
        let holds = self
            .active
            .as_ref()
            .is_some_and(|a| a.deployment_id.as_deref() == Some(deployment_id));
        if !holds {
            let being_created = self
                .active
                .as_ref()
                .is_some_and(|a| a.release.is_some() && a.deployment_id.is_none());
            if !being_created {
                return self.advance(lease);
            }
            // Possibly the deployment the active release is creating: keep its end for when
            // the deployment is recorded.
            let mut q = self.clone();
            if !q
                .early_ends
                .iter()
                .any(|e| e.deployment_id == deployment_id)
            {
                q.early_ends.push(EarlyEnd {
                    deployment_id: deployment_id.to_string(),
                    outcome,
                });
                let excess = q.early_ends.len().saturating_sub(EARLY_ENDS_KEPT);
                q.early_ends.drain(..excess);
            }
            return q.advance(lease);
        }
        let mut freed = self.clone();
        let mut changes = vec![];
        if let Some(t) = freed.active.take().and_then(|a| a.release) {
            changes.push(Change::status(&t, outcome));
        }
        let mut plan = freed.advance(lease);
        changes.append(&mut plan.changes);
        plan.changes = changes;
        plan
    }

    /// The release's deployment exists: record it.
    /// An operator asked for the waiting release `digest`: it keeps waiting, with the request's
    /// place in the order (`asked`), so a push made before the request cannot supersede it.
    pub fn promote_pending(&self, asked: &Ticket) -> Plan {
        match &self.pending {
            Some(waiting) if waiting.digest == asked.digest && asked > waiting => {
                let mut q = self.clone();
                q.pending = Some(asked.clone());
                Plan {
                    queue: q,
                    changes: vec![],
                    next: Next::Waiting { replaced: None },
                }
            }
            _ => self.keep(Next::Idle),
        }
    }

    pub fn deploying(&self, digest: &str, deployment_id: &str, lease: &Lease) -> Plan {
        match &self.active {
            Some(Active {
                release: Some(release),
                deployment_id: None,
                ..
            }) if release.digest == digest => {
                if let Some(ended) = self
                    .early_ends
                    .iter()
                    .find(|e| e.deployment_id == deployment_id)
                {
                    // Its end event came first: the deployment is recorded as ended.
                    let mut freed = self.clone();
                    freed.active = None;
                    freed.early_ends.clear();
                    let mut plan = freed.advance(lease);
                    plan.changes.insert(
                        0,
                        Change {
                            deployment_id: Some(deployment_id.to_string()),
                            ..Change::status(release, ended.outcome)
                        },
                    );
                    return plan;
                }
                let mut q = self.clone();
                if let Some(a) = q.active.as_mut() {
                    a.deployment_id = Some(deployment_id.to_string());
                }
                Plan {
                    queue: q,
                    changes: vec![Change {
                        deployment_id: Some(deployment_id.to_string()),
                        ..Change::status(release, ReleaseStatus::Deploying)
                    }],
                    next: Next::Deploying {
                        deployment_id: deployment_id.to_string(),
                    },
                }
            }
            Some(a) if a.deployment_id.as_deref() == Some(deployment_id) => {
                self.keep(Next::Deploying {
                    deployment_id: deployment_id.to_string(),
                })
            }
            // Another invocation took the release over; it will adopt this deployment.
            _ => self.keep(Next::Idle),
        }
    }

    /// The group is busy with a deployment Greenlight did not start: the release waits behind it.
    pub fn blocked_by_foreign(&self, digest: &str, deployment_id: &str, lease: &Lease) -> Plan {
        let Some(Active {
            release: Some(release),
            deployment_id: None,
            ..
        }) = self.active.as_ref().filter(|a| a.is_release(digest))
        else {
            return self.keep(Next::Idle);
        };
        let mut q = self.clone();
        q.active = Some(Active {
            release: None,
            deployment_id: Some(deployment_id.to_string()),
            owner: lease.owner.clone(),
            lease_until_ms: lease.until_ms,
            since_ms: lease.now_ms,
        });
        let mut changes = vec![];
        let next = match q.pending.as_ref().filter(|p| *p > release) {
            Some(newer) => {
                changes.push(Change::superseded(release, newer));
                Next::Superseded {
                    by: newer.digest.clone(),
                }
            }
            None => {
                let replaced = q.pending.replace(release.clone()).map(|older| {
                    changes.push(Change::superseded(&older, release));
                    older.digest
                });
                changes.push(Change::status(release, ReleaseStatus::Pending));
                Next::Waiting { replaced }
            }
        };
        Plan {
            queue: q,
            changes,
            next,
        }
    }

    /// The release needs no deployment (the service runs it already) or cannot have one:
    /// record `status`, free the queue and go on.
    pub fn close_without_deployment(
        &self,
        digest: &str,
        status: ReleaseStatus,
        lease: &Lease,
    ) -> Plan {
        match &self.active {
            Some(Active {
                release: Some(release),
                deployment_id: None,
                ..
            }) if release.digest == digest => {
                let mut freed = self.clone();
                freed.active = None;
                let mut plan = freed.advance(lease);
                plan.changes.insert(0, Change::status(release, status));
                plan
            }
            _ => self.keep(Next::Idle),
        }
    }

    /// The deployment to ask the engine about, when one holds the queue.
    pub fn active_deployment(&self) -> Option<&str> {
        self.active.as_ref()?.deployment_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64, d: &str) -> Ticket {
        Ticket {
            pushed_at_ms: ms,
            digest: d.into(),
            version: format!("v-{d}"),
        }
    }

    fn me() -> Lease {
        lease("me", 1_000)
    }

    fn lease(owner: &str, now_ms: i64) -> Lease {
        Lease {
            owner: owner.into(),
            until_ms: now_ms + 60_000,
            now_ms,
        }
    }

    fn statuses(plan: &Plan) -> Vec<(String, ReleaseStatus)> {
        plan.changes
            .iter()
            .map(|c| (c.release.digest.clone(), c.status))
            .collect()
    }

    #[test]
    fn a_push_to_a_free_queue_starts_and_becomes_the_newest_started() {
        let plan = Queue::default().admit(&t(10, "a"), &me());
        assert_eq!(
            plan.next,
            Next::Deploy {
                digest: "a".into(),
                resumed: false
            }
        );
        assert_eq!(plan.queue.newest_started, Some(t(10, "a")));
        assert_eq!(statuses(&plan), vec![("a".into(), ReleaseStatus::Claimed)]);
    }

    #[test]
    fn a_push_to_a_busy_queue_waits_and_replaces_an_older_waiting_one() {
        let busy = Queue::default().admit(&t(10, "a"), &me()).queue;
        let waiting = busy.admit(&t(20, "b"), &me());
        assert_eq!(waiting.next, Next::Waiting { replaced: None });
        let newer = waiting.queue.admit(&t(30, "c"), &me());
        assert_eq!(
            newer.next,
            Next::Waiting {
                replaced: Some("b".into())
            }
        );
        assert_eq!(
            statuses(&newer),
            vec![
                ("b".into(), ReleaseStatus::Superseded),
                ("c".into(), ReleaseStatus::Pending)
            ]
        );
        let older = newer.queue.admit(&t(25, "x"), &me());
        assert_eq!(older.next, Next::Superseded { by: "c".into() });
        assert_eq!(older.queue, newer.queue);
    }

    #[test]
    fn a_late_push_older_than_the_one_that_started_is_superseded_not_deployed() {
        let mut q = Queue::default().admit(&t(20, "new"), &me()).queue;
        q = q.deploying("new", "d-1", &me()).queue;
        q = q.end("d-1", ReleaseStatus::Succeeded, &me()).queue;
        assert_eq!(q.active, None);
        let late = q.admit(&t(10, "old"), &me());
        assert_eq!(late.next, Next::Superseded { by: "new".into() });
        assert_eq!(late.queue, q);
    }

    #[test]
    fn the_end_of_a_deployment_starts_the_waiting_release_in_the_same_write() {
        let mut q = Queue::default().admit(&t(10, "a"), &me()).queue;
        q = q.deploying("a", "d-1", &me()).queue;
        q = q.admit(&t(20, "b"), &me()).queue;
        let end = q.end("d-1", ReleaseStatus::Failed, &lease("ender", 2_000));
        assert_eq!(
            statuses(&end),
            vec![
                ("a".into(), ReleaseStatus::Failed),
                ("b".into(), ReleaseStatus::Claimed)
            ]
        );
        assert_eq!(
            end.next,
            Next::Deploy {
                digest: "b".into(),
                resumed: false
            }
        );
        assert_eq!(end.queue.active.as_ref().unwrap().owner, "ender");
        // Redelivered: the queue no longer holds d-1 and b is owned by a live invocation, so it
        // changes no release; it is kept as a possible early end, which b's own deployment
        // (another id) ignores.
        let again = end
            .queue
            .end("d-1", ReleaseStatus::Failed, &lease("ender-2", 3_000));
        assert_eq!(again.next, Next::Idle);
        assert!(again.changes.is_empty());
        let b_deploys = again.queue.deploying("b", "d-2", &me());
        assert_eq!(
            statuses(&b_deploys),
            vec![("b".into(), ReleaseStatus::Deploying)]
        );
    }

    #[test]
    fn a_release_whose_invocation_died_is_resumed_by_the_next_event_once_its_lease_ran_out() {
        let q = Queue::default().admit(&t(10, "a"), &lease("dead", 0)).queue;
        assert_eq!(q.advance(&lease("other", 30_000)).next, Next::Idle);
        let later = q.advance(&lease("other", 61_000));
        assert_eq!(
            later.next,
            Next::Deploy {
                digest: "a".into(),
                resumed: true
            }
        );
        // Its own retry may resume at once.
        assert!(matches!(
            q.advance(&lease("dead", 1_000)).next,
            Next::Deploy { resumed: true, .. }
        ));
        // A duplicate of the push while it is live does nothing.
        assert_eq!(
            q.admit(&t(10, "a"), &lease("dup", 5_000)).next,
            Next::HeldElsewhere
        );
    }

    #[test]
    fn a_free_queue_with_a_waiting_release_starts_the_newest_of_the_two() {
        let free_with_waiting = Queue {
            pending: Some(t(20, "b")),
            newest_started: Some(t(10, "a")),
            ..Default::default()
        };
        let older = free_with_waiting.admit(&t(15, "x"), &me());
        assert_eq!(older.next, Next::Superseded { by: "b".into() });
        let newer = free_with_waiting.admit(&t(30, "c"), &me());
        assert_eq!(
            newer.next,
            Next::Deploy {
                digest: "c".into(),
                resumed: false
            }
        );
        assert_eq!(newer.queue.pending, None);
        assert!(statuses(&newer).contains(&("b".into(), ReleaseStatus::Superseded)));
        let same = free_with_waiting.admit(&t(20, "b"), &me());
        assert!(matches!(same.next, Next::Deploy { ref digest, .. } if digest == "b"));
    }

    #[test]
    fn a_foreign_deployment_sends_the_release_back_to_wait_behind_it() {
        let q = Queue::default().admit(&t(10, "a"), &me()).queue;
        let blocked = q.blocked_by_foreign("a", "d-9", &me());
        assert_eq!(blocked.next, Next::Waiting { replaced: None });
        assert_eq!(blocked.queue.pending, Some(t(10, "a")));
        assert_eq!(blocked.queue.active_deployment(), Some("d-9"));
        // When the foreign deployment ends, the release starts even though it is the newest started.
        let end = blocked
            .queue
            .end("d-9", ReleaseStatus::Succeeded, &lease("ender", 2_000));
        assert_eq!(statuses(&end), vec![("a".into(), ReleaseStatus::Claimed)]);
        assert!(matches!(end.next, Next::Deploy { ref digest, .. } if digest == "a"));
    }

    #[test]
    fn recording_a_deployment_twice_or_after_losing_the_release_writes_nothing() {
        let q = Queue::default().admit(&t(10, "a"), &me()).queue;
        let once = q.deploying("a", "d-1", &me());
        let twice = once.queue.deploying("a", "d-1", &me());
        assert!(!twice.writes(&once.queue));
        assert_eq!(
            twice.next,
            Next::Deploying {
                deployment_id: "d-1".into()
            }
        );
        assert_eq!(
            Queue::default().deploying("a", "d-1", &me()).next,
            Next::Idle
        );
    }

    #[test]
    fn an_end_event_that_overtakes_the_deployment_record_is_applied_when_it_is_recorded() {
        let mut q = Queue::default().admit(&t(10, "a"), &me()).queue;
        q = q.admit(&t(20, "b"), &me()).queue;
        // The deployment failed at once; its end event is handled before `deploying` is written.
        let early = q.end("d-1", ReleaseStatus::Failed, &lease("ender", 2_000));
        assert_eq!(early.next, Next::Idle);
        assert!(early.writes(&q));
        let recorded = early.queue.deploying("a", "d-1", &me());
        assert_eq!(
            statuses(&recorded),
            vec![
                ("a".into(), ReleaseStatus::Failed),
                ("b".into(), ReleaseStatus::Claimed)
            ]
        );
        assert_eq!(recorded.changes[0].deployment_id.as_deref(), Some("d-1"));
        assert!(matches!(recorded.next, Next::Deploy { ref digest, .. } if digest == "b"));
        assert!(recorded.queue.early_ends.is_empty());
    }

    #[test]
    fn a_late_end_of_an_older_deployment_does_not_hide_the_early_end_of_the_new_one() {
        let q = Queue::default().admit(&t(10, "a"), &me()).queue;
        let early = q.end("d-2", ReleaseStatus::Succeeded, &me()).queue;
        let stale = early.end("d-1", ReleaseStatus::Succeeded, &me()).queue;
        let recorded = stale.deploying("a", "d-2", &me());
        assert_eq!(
            statuses(&recorded),
            vec![("a".into(), ReleaseStatus::Succeeded)]
        );
        assert_eq!(recorded.queue.active, None);
    }

    #[test]
    fn an_image_already_running_frees_the_queue_for_the_waiting_release() {
        let mut q = Queue::default().admit(&t(10, "a"), &me()).queue;
        q = q.admit(&t(20, "b"), &me()).queue;
        let closed = q.close_without_deployment("a", ReleaseStatus::AlreadyRunning, &me());
        assert_eq!(
            statuses(&closed),
            vec![
                ("a".into(), ReleaseStatus::AlreadyRunning),
                ("b".into(), ReleaseStatus::Claimed)
            ]
        );
    }
}
