//! A release the queue holds or skipped, to its living message (Slack app mode).
//!
//! A release pushed while another deploys waits (`pending`); a newer push, or a late push of
//! an older version, supersedes it. Neither engine knows of it yet, so no engine event says
//! it: the queue's write on the release item, carried by the ledger's stream
//! ([`crate::stream`]), does. The run's message is posted at once ("queued — waits for v1.4.2
//! to finish deploying"), kept under the run itself (app, digest, push: no deployment yet),
//! and the release it waits for says so in its thread. When the run's deployment starts, its
//! first state takes that message over ([`crate::delivery`]) and edits it on; a run that never
//! starts ends as "superseded by v1.4.4 — not deployed". Once per run and change (an
//! announcement marker under the run's key).

use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::Ledger;
use greenlight_shared::AppConfig;
use tracing::info;

use crate::core::{app_target, once, release_record, Deps, Notified, NotifyError};
use crate::delivery::{destination_for, post_notice};
use crate::message::{run_anchor, Notice, StartedBy};
use crate::stream::QueueChange;

/// Says a queue change on the run's message, once; `None` when there is nothing to say.
pub(crate) async fn say_queue_change(
    deps: &Deps,
    change: QueueChange,
    invocation: &Invocation,
) -> Result<Option<Notified>, NotifyError> {
    let (Some(app), Some(ledger)) = (deps.config.app_named(&change.app), deps.ledger.as_deref())
    else {
        return Ok(None);
    };
    if app.slack.token.is_none() {
        info!(app = %app.name, version = %change.version, "queue change not said: the app posts to a webhook");
        return Ok(None);
    }
    let run = run_anchor(&app.name, &change.digest, change.pushed_at_ms);
    let state = match change.superseded {
        Some(_) => "SUPERSEDED",
        None => "QUEUED",
    };
    once(deps, &app.name, &run, state, invocation, async {
        let destination = destination_for(deps, app).await?;
        let mut notice = notice_of(deps, app, &change, run.clone(), state);
        if let Some(record) = release_record(ledger, app, &change.digest).await {
            notice.provenance = record.provenance;
            notice.requested = record.request;
        }
        let waits_for = match &change.superseded {
            Some(by) => {
                notice.behind = match by {
                    Some(digest) => release_record(ledger, app, digest).await.map(|r| r.version),
                    None => None,
                };
                None
            }
            None => deployment_under_way(ledger, app).await,
        };
        if let Some((_, version)) = &waits_for {
            notice.behind = version.clone();
        }
        let said = post_notice(deps, app, &destination, &notice, invocation).await?;
        if let Some((deployment, _)) = waits_for {
            say_in_thread_of(deps, app, &destination, &notice, deployment, invocation).await?;
        }
        Ok(said)
    })
    .await
}

/// The deployment the queue's active release runs, and its version: what a waiting release
/// waits for.
async fn deployment_under_way(
    ledger: &dyn Ledger,
    app: &AppConfig,
) -> Option<(String, Option<String>)> {
    let queue = match ledger.queue(&app.name).await {
        Ok(queue) => queue,
        Err(e) => {
            tracing::warn!(app = %app.name, error = %e, "cannot read the queue: the waiting release's message names no deployment");
            return None;
        }
    };
    let active = queue.active?;
    Some((active.deployment_id?, active.release.map(|t| t.version)))
}

/// "v1.4.3 waits for this release" in the thread of the release under way; skipped when that
/// message is not posted yet (its own start says nothing of it, and the waiting release's
/// message says what it waits for).
async fn say_in_thread_of(
    deps: &Deps,
    app: &AppConfig,
    destination: &crate::delivery::Destination,
    waiting: &Notice,
    deployment: String,
    invocation: &Invocation,
) -> Result<(), NotifyError> {
    let version = waiting.version.as_deref().unwrap_or("a newer release");
    let note = Notice {
        deployment_id: deployment,
        state: "START".into(),
        thread_only: true,
        thread_note: Some(format!(
            ":hourglass_flowing_sand: {version} was pushed during this deployment: it waits, and deploys when this one ends"
        )),
        run: None,
        behind: None,
        ..waiting.clone()
    };
    match post_notice(deps, app, destination, &note, invocation).await {
        Ok(_) => Ok(()),
        Err(NotifyError::MessageBusy { .. }) => {
            info!(app = %app.name, version = %version, "the release under way has no message yet: its thread is not told");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn notice_of(
    deps: &Deps,
    app: &AppConfig,
    change: &QueueChange,
    run: String,
    state: &str,
) -> Notice {
    let (scope, target, native) = app_target(app);
    Notice {
        app: app.name.clone(),
        environment: app.environment.clone(),
        scope,
        target,
        deployment_id: String::new(),
        state: state.into(),
        region: deps.region.clone(),
        channel: app.slack.channel.clone(),
        version: Some(change.version.clone()),
        digest: Some(change.digest.clone()),
        started_by: Some(StartedBy::Push),
        run: Some(run),
        native,
        ..Notice::default()
    }
}
