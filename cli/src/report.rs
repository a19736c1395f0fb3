//! What `status` and `history` show, as data (the `--json` output) and as text, built from
//! the ledger's records by pure functions.

use chrono::{DateTime, Utc};
use greenlight_shared::events::short_digest;
use greenlight_shared::ledger::{ReleaseEntry, ReleaseStatus};
use greenlight_shared::queue::Queue;
use serde::Serialize;

/// Ledger text shown on a terminal came from events and images: control characters (terminal
/// escapes) are replaced and long text is clipped.
fn shown(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    greenlight_shared::events::clipped(&clean, max)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    pub version: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Running {
    #[serde(flatten)]
    pub release: Release,
    /// When its deployment succeeded.
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InProgress {
    /// `None` for a deployment Greenlight did not start (a rollback, a manual one).
    #[serde(flatten)]
    pub release: Option<Release>,
    pub deployment_id: Option<String>,
    /// The release's step: claimed, registered or deploying.
    pub step: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// A native deployment: where production traffic stands, as ECS says now ("canary 5%
    /// until 14:32 UTC, then 100%").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<String>,
    /// The release's Slack message (Slack app mode), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
    /// Green checked, it waits for a person's approval until then (`greenlight approve|reject`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting_approval_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    #[serde(flatten)]
    pub release: Release,
    pub outcome: String,
    pub at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppStatus {
    pub app: String,
    pub running: Option<Running>,
    pub deploying: Option<InProgress>,
    pub waiting: Option<Release>,
    pub last_failure: Option<Failure>,
}

fn release_of(entry: &ReleaseEntry) -> Release {
    Release {
        version: entry.record.version.clone(),
        digest: entry.record.digest.clone(),
    }
}

/// An app's status from its queue and its releases.
pub fn status_of(app: &str, queue: &Queue, releases: &[ReleaseEntry]) -> AppStatus {
    let ended_at = |e: &ReleaseEntry| e.reached(e.record.status);
    let running = releases
        .iter()
        .filter(|e| e.record.status == ReleaseStatus::Succeeded)
        .max_by_key(|e| ended_at(e))
        .map(|e| Running {
            release: release_of(e),
            since: ended_at(e),
        });
    let deploying = queue.active.as_ref().map(|active| {
        // The run of the digest the queue names (an earlier run of it may be in the history).
        let record = active.release.as_ref().and_then(|ticket| {
            releases.iter().find(|e| {
                e.record.digest == ticket.digest
                    && e.record.pushed_at.timestamp_millis() == ticket.pushed_at_ms
            })
        });
        InProgress {
            release: active.release.as_ref().map(|t| Release {
                version: t.version.clone(),
                digest: t.digest.clone(),
            }),
            deployment_id: active.deployment_id.clone(),
            step: record.map(|e| e.record.status.as_str().to_string()),
            traffic: None,
            slack: None,
            // The wait of this deployment, undecided (an earlier run's wait is not this one).
            awaiting_approval_until: record
                .and_then(|e| e.approval.as_ref())
                .filter(|a| {
                    a.decision.is_none()
                        && active.deployment_id.as_deref() == Some(a.wait.deployment_id.as_str())
                })
                .map(|a| a.wait.expires_at),
            since: DateTime::from_timestamp_millis(active.since_ms),
        }
    });
    let waiting = queue.pending.as_ref().map(|t| Release {
        version: t.version.clone(),
        digest: t.digest.clone(),
    });
    let last_failure = releases
        .iter()
        .filter(|e| {
            matches!(
                e.record.status,
                ReleaseStatus::Failed | ReleaseStatus::Stopped
            )
        })
        .max_by_key(|e| ended_at(e))
        .map(|e| Failure {
            release: release_of(e),
            outcome: e.record.status.as_str().to_string(),
            at: ended_at(e),
            reason: e.record.hook_reason.clone(),
        });
    AppStatus {
        app: app.to_string(),
        running,
        deploying,
        waiting,
        last_failure,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub version: String,
    pub digest: String,
    pub pushed_at: DateTime<Utc>,
    /// Who asked: `rollback by <name>` or `deploy by <name>` for an operator's request, else
    /// the actor the image names, else `push`.
    pub by: String,
    /// The operator's identity (ARN) for a request.
    pub requested_by: Option<String>,
    pub commit: Option<String>,
    pub outcome: String,
    pub deployment_id: Option<String>,
    /// From the deployment's start to its end, for releases that deployed.
    pub duration_s: Option<i64>,
    pub hook_reason: Option<String>,
    /// Who approved or rejected it, and when, at the approval gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<String>,
    /// The release's Slack message (Slack app mode), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
}

/// The app's releases, newest push first, at most `limit`.
pub fn history_rows(releases: &[ReleaseEntry], limit: usize) -> Vec<HistoryRow> {
    let mut rows: Vec<&ReleaseEntry> = releases.iter().collect();
    rows.sort_by_key(|e| std::cmp::Reverse(e.record.pushed_at));
    rows.into_iter()
        .take(limit)
        .map(|e| {
            let r = &e.record;
            let started = e.reached(ReleaseStatus::Deploying);
            let ended = r.status.is_final().then(|| e.reached(r.status)).flatten();
            HistoryRow {
                version: r.version.clone(),
                digest: r.digest.clone(),
                pushed_at: r.pushed_at,
                by: match &r.request {
                    Some(q) => format!("{} by {}", q.kind.as_str(), q.requester_name()),
                    None => r
                        .provenance
                        .actor
                        .clone()
                        .unwrap_or_else(|| "push".to_string()),
                },
                requested_by: r.request.as_ref().map(|q| q.by.clone()),
                commit: r.provenance.short_revision().map(String::from),
                outcome: r.status.as_str().to_string(),
                deployment_id: r.deployment_id.clone(),
                duration_s: started
                    .zip(ended)
                    .map(|(s, e)| (e - s).num_seconds())
                    .filter(|d| *d >= 0),
                hook_reason: r.hook_reason.clone(),
                decided: e
                    .approval
                    .as_ref()
                    .and_then(|a| a.decision.as_ref())
                    .map(|d| {
                        format!(
                            "{} by {} at {}{}",
                            d.choice.as_str(),
                            d.by.strip_prefix("slack:").map_or_else(
                                || d.by.rsplit('/').next().unwrap_or(&d.by).to_string(),
                                |u| format!("Slack user {u}")
                            ),
                            d.at.format("%Y-%m-%d %H:%M UTC"),
                            d.reason
                                .as_deref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        )
                    }),
                slack: None,
            }
        })
        .collect()
}

/// What `greenlight rollback APP` deploys: the newest release that succeeded before the one
/// production runs now succeeded (another digest). `None` when there is none.
pub fn rollback_target(releases: &[ReleaseEntry]) -> Option<Release> {
    let succeeded = |e: &ReleaseEntry| e.reached(ReleaseStatus::Succeeded);
    let running = releases
        .iter()
        .filter(|e| e.record.status == ReleaseStatus::Succeeded)
        .max_by_key(|e| succeeded(e))?;
    let since = succeeded(running)?;
    releases
        .iter()
        .filter(|e| e.record.digest != running.record.digest)
        .filter_map(|e| Some((succeeded(e)?, e)))
        .filter(|(at, _)| *at < since)
        .max_by_key(|(at, _)| *at)
        .map(|(_, e)| release_of(e))
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".to_string())
}

fn version_of(r: &Release) -> String {
    format!("{} ({})", shown(&r.version, 64), short_digest(&r.digest))
}

/// `status` as text: one block per app.
pub fn render_status(apps: &[AppStatus]) -> String {
    let mut out = String::new();
    for a in apps {
        out += &format!("{}\n", shown(&a.app, 64));
        out += &match &a.running {
            Some(r) => format!(
                "  running    {} since {}\n",
                version_of(&r.release),
                when(r.since)
            ),
            None => "  running    - (no release of Greenlight's has succeeded)\n".to_string(),
        };
        out += &match &a.deploying {
            Some(d) => format!(
                "  deploying  {} {} {} since {}{}\n",
                d.release
                    .as_ref()
                    .map(version_of)
                    .unwrap_or_else(|| "a deployment Greenlight did not start".to_string()),
                d.deployment_id.as_deref().unwrap_or("(not created yet)"),
                d.step.as_deref().unwrap_or("-"),
                when(d.since),
                d.awaiting_approval_until
                    .map(|t| format!(
                        "\n  approval   green checked, waiting for approval until {} (greenlight approve|reject {})",
                        t.format("%H:%M UTC"),
                        shown(&a.app, 64)
                    ))
                    .unwrap_or_default()
                    + &d.traffic
                        .as_deref()
                        .map(|t| format!("\n  traffic    {}", shown(t, 200)))
                        .unwrap_or_default()
                    + &d.slack
                        .as_deref()
                        .map(|s| format!("\n  slack      {}", shown(s, 200)))
                        .unwrap_or_default()
            ),
            None => "  deploying  -\n".to_string(),
        };
        out += &format!(
            "  waiting    {}\n",
            a.waiting
                .as_ref()
                .map(version_of)
                .unwrap_or_else(|| "-".to_string())
        );
        out += &match &a.last_failure {
            Some(f) => format!(
                "  last failure {} {} at {}{}\n",
                version_of(&f.release),
                f.outcome,
                when(f.at),
                f.reason
                    .as_deref()
                    .map(|r| format!(": {}", shown(r, 200)))
                    .unwrap_or_default()
            ),
            None => "  last failure -\n".to_string(),
        };
    }
    out
}

/// `history` as text: a table, newest first.
pub fn render_history(app: &str, rows: &[HistoryRow]) -> String {
    let mut out = format!(
        "{}: {} release(s), newest first\n{:<14} {:<12} {:<20} {:<22} {:<8} {:<16} {:<12} {:>8}  {}\n",
        shown(app, 64),
        rows.len(),
        "VERSION",
        "DIGEST",
        "PUSHED (UTC)",
        "BY",
        "COMMIT",
        "OUTCOME",
        "DEPLOYMENT",
        "TOOK",
        "HOOK REASON"
    );
    for r in rows {
        let slack = r
            .decided
            .as_deref()
            .map(|d| format!("\n{:<14} approval: {}", "", shown(d, 200)))
            .unwrap_or_default()
            + &r.slack
                .as_deref()
                .map(|s| format!("\n{:<14} slack: {}", "", shown(s, 200)))
                .unwrap_or_default();
        out += &format!(
            "{:<14} {:<12} {:<20} {:<22} {:<8} {:<16} {:<12} {:>8}  {}\n",
            shown(&r.version, 14),
            short_digest(&r.digest),
            r.pushed_at.format("%Y-%m-%d %H:%M:%S"),
            shown(&r.by, 22),
            r.commit.as_deref().unwrap_or("-"),
            r.outcome,
            r.deployment_id.as_deref().unwrap_or("-"),
            r.duration_s
                .map(|d| format!("{d}s"))
                .unwrap_or_else(|| "-".to_string()),
            r.hook_reason
                .as_deref()
                .map(|h| shown(h, 120))
                .unwrap_or_default()
        );
        if !slack.is_empty() {
            out.pop();
            out += &slack;
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_shared::ledger::ReleaseRecord;
    use greenlight_shared::queue::{Active, Ticket};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn entry(n: u8, version: &str, timeline: &[(ReleaseStatus, &str)]) -> ReleaseEntry {
        let (status, _) = *timeline.last().unwrap();
        ReleaseEntry {
            approval: None,
            record: ReleaseRecord {
                app: "web1".into(),
                digest: format!("sha256:{n:02x}{}", "0".repeat(62)),
                version: version.into(),
                image: String::new(),
                pushed_at: at(timeline[0].1),
                status,
                owner: None,
                lease_until: None,
                task_definition_arn: None,
                deployment_id: Some(format!("d-00000000{n}")),
                superseded_by: None,
                hook_reason: (status == ReleaseStatus::Failed)
                    .then(|| "http_probe failed: 3 failed probes in a row\u{1b}[2J".to_string()),
                hook_reported_execution: None,
                provenance: Default::default(),
                request: None,
            },
            timeline: timeline.iter().map(|(s, t)| (*s, at(t))).collect(),
        }
    }

    fn releases() -> Vec<ReleaseEntry> {
        use ReleaseStatus::*;
        vec![
            entry(
                1,
                "v1.4.1",
                &[
                    (Claimed, "2026-11-20T10:00:00Z"),
                    (Deploying, "2026-11-20T10:00:01Z"),
                    (Succeeded, "2026-11-20T10:04:13Z"),
                ],
            ),
            entry(
                2,
                "v1.4.2",
                &[
                    (Claimed, "2026-11-25T10:00:00Z"),
                    (Deploying, "2026-11-25T10:00:01Z"),
                    (Succeeded, "2026-11-25T10:05:00Z"),
                ],
            ),
            entry(
                3,
                "v1.4.3",
                &[
                    (Claimed, "2026-11-26T10:00:00Z"),
                    (Deploying, "2026-11-26T10:00:02Z"),
                    (Failed, "2026-11-26T10:02:00Z"),
                ],
            ),
        ]
    }

    #[test]
    fn status_names_what_runs_the_last_failure_and_what_deploys_and_waits() {
        let queue = Queue {
            active: Some(Active {
                release: Some(Ticket {
                    pushed_at_ms: at("2026-11-27T10:00:00Z").timestamp_millis(),
                    digest: "sha256:04".into(),
                    version: "v1.4.4".into(),
                }),
                deployment_id: Some("d-000000004".into()),
                owner: "req".into(),
                lease_until_ms: 0,
                since_ms: at("2026-11-27T10:00:01Z").timestamp_millis(),
            }),
            pending: Some(Ticket {
                pushed_at_ms: at("2026-11-27T10:01:00Z").timestamp_millis(),
                digest: "sha256:05".into(),
                version: "v1.4.5".into(),
            }),
            ..Queue::default()
        };
        let s = status_of("web1", &queue, &releases());
        assert_eq!(s.running.as_ref().unwrap().release.version, "v1.4.2");
        assert_eq!(
            s.running.as_ref().unwrap().since,
            Some(at("2026-11-25T10:05:00Z"))
        );
        assert_eq!(
            s.deploying.as_ref().unwrap().deployment_id.as_deref(),
            Some("d-000000004")
        );
        assert_eq!(s.waiting.as_ref().unwrap().version, "v1.4.5");
        let failure = s.last_failure.as_ref().unwrap();
        assert_eq!(
            (failure.release.version.as_str(), failure.outcome.as_str()),
            ("v1.4.3", "failed")
        );
        let text = render_status(&[s]);
        assert!(text.contains("running    v1.4.2"), "{text}");
        assert!(text.contains("waiting    v1.4.5"), "{text}");
        assert!(text.contains("last failure v1.4.3"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no terminal escape from the ledger reaches the screen"
        );
    }

    #[test]
    fn an_idle_app_shows_dashes() {
        let s = status_of("web9", &Queue::default(), &[]);
        assert_eq!(
            (
                s.running.is_none(),
                s.deploying.is_none(),
                s.waiting.is_none()
            ),
            (true, true, true)
        );
        assert!(render_status(&[s]).contains("deploying  -"));
    }

    #[test]
    fn history_is_newest_first_with_outcome_duration_and_reason() {
        let rows = history_rows(&releases(), 2);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].version, "v1.4.3");
        assert_eq!(rows[0].outcome, "failed");
        assert_eq!(rows[0].duration_s, Some(118));
        assert_eq!(rows[0].by, "push");
        assert!(rows[0]
            .hook_reason
            .as_deref()
            .unwrap()
            .starts_with("http_probe failed"));
        assert_eq!(rows[1].version, "v1.4.2");
        assert_eq!(rows[1].duration_s, Some(299));
        let text = render_history("web1", &rows);
        assert!(text.lines().nth(2).unwrap().starts_with("v1.4.3"), "{text}");
        assert!(!text.contains('\u{1b}'));
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(json[0]["outcome"], "failed");
    }

    #[test]
    fn rollback_goes_to_the_last_success_before_what_runs() {
        let mut releases = releases();
        // v1.4.2 runs (v1.4.3 failed): the one before it is v1.4.1.
        assert_eq!(rollback_target(&releases).unwrap().version, "v1.4.1");
        // After a rollback to v1.4.1, the same rule goes forward to v1.4.2 (its "before").
        let mut again = entry(
            1,
            "v1.4.1",
            &[
                (ReleaseStatus::Claimed, "2026-11-27T09:00:00Z"),
                (ReleaseStatus::Deploying, "2026-11-27T09:00:01Z"),
                (ReleaseStatus::Succeeded, "2026-11-27T09:03:00Z"),
            ],
        );
        again.record.request = Some(greenlight_shared::request::Requested {
            id: "7d8e2c1a-0000".into(),
            by: "arn:aws:sts::123456789012:assumed-role/Operators/alice".into(),
            kind: greenlight_shared::request::RequestKind::Rollback,
        });
        releases.push(again);
        assert_eq!(rollback_target(&releases).unwrap().version, "v1.4.2");
        let rows = history_rows(&releases, 1);
        assert_eq!(rows[0].by, "rollback by alice");
        assert!(rows[0].requested_by.as_deref().unwrap().ends_with("/alice"));
        // Nothing succeeded before the only success: nothing to roll back to.
        assert_eq!(rollback_target(&releases[1..3]), None);
        assert_eq!(rollback_target(&[]), None);
    }

    #[test]
    fn status_shows_the_wait_for_approval_and_history_who_decided() {
        use greenlight_shared::ledger::{ApprovalRecord, Choice, Decision, Wait};
        use ReleaseStatus::*;
        let mut waiting = entry(
            4,
            "v1.4.4",
            &[
                (Claimed, "2026-11-27T10:00:00Z"),
                (Deploying, "2026-11-27T10:00:01Z"),
            ],
        );
        let wait = Wait {
            deployment_id: "d-000000004".into(),
            expires_at: at("2026-11-27T11:00:00Z"),
        };
        waiting.approval = Some(ApprovalRecord {
            app: "web1".into(),
            digest: waiting.record.digest.clone(),
            version: "v1.4.4".into(),
            pushed_at_ms: waiting.record.pushed_at.timestamp_millis(),
            wait: wait.clone(),
            decision: None,
        });
        let queue = Queue {
            active: Some(Active {
                release: Some(Ticket {
                    pushed_at_ms: waiting.record.pushed_at.timestamp_millis(),
                    digest: waiting.record.digest.clone(),
                    version: "v1.4.4".into(),
                }),
                deployment_id: Some("d-000000004".into()),
                owner: "req".into(),
                lease_until_ms: 0,
                since_ms: 0,
            }),
            ..Queue::default()
        };
        let mut all = releases();
        all.push(waiting.clone());
        let text = render_status(&[status_of("web1", &queue, &all)]);
        assert!(
            text.contains("approval   green checked, waiting for approval until 11:00 UTC (greenlight approve|reject web1)"),
            "{text}"
        );
        // Decided: the status no longer waits; the history says who and when.
        let decided = Decision {
            choice: Choice::Reject,
            by: "slack:U024BE7LH".into(),
            at: at("2026-11-27T10:05:00Z"),
            reason: Some("error rate".into()),
            applied: true,
        };
        waiting.approval.as_mut().unwrap().decision = Some(decided);
        all.pop();
        all.push(waiting);
        let text = render_status(&[status_of("web1", &queue, &all)]);
        assert!(!text.contains("waiting for approval"), "{text}");
        let rows = history_rows(&all, 10);
        assert_eq!(
            rows[0].decided.as_deref(),
            Some("rejected by Slack user U024BE7LH at 2026-11-27 10:05 UTC: error rate")
        );
        assert!(
            render_history("web1", &rows).contains("approval: rejected by Slack user U024BE7LH")
        );
    }
}
