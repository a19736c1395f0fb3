//! The approval gate on the living message (Slack app mode): when green passed and the app
//! asks for approval, the release's message reads "green checked — waiting for approval
//! (expires 14:32 UTC)" with **Approve** and **Roll back** buttons (their value binds the click
//! to this run and deployment: `greenlight_shared::approval::Binding`); when someone decides,
//! the message says who and the buttons go, and the thread keeps who decided and when. Both
//! come from the ledger's stream (the hook records the wait, the approver or the deployer the
//! decision), once each (an announcement marker per deployment and change). An app on a
//! webhook hears both as messages of their own (the wait names the command that decides).

use chrono::{DateTime, Utc};
use greenlight_shared::approval::Binding;
use greenlight_shared::invocation::Invocation;

use crate::core::{once, run_notice, Deps, Notified, NotifyError};
use crate::delivery::{destination_for, post_notice};
use crate::message::{run_anchor, ApprovalNote};
use crate::stream::ApprovalChange;

/// Says a wait or a decision on the run's message, once; `None` when there is nothing to say.
pub(crate) async fn say_approval(
    deps: &Deps,
    change: ApprovalChange,
    invocation: &Invocation,
) -> Result<Option<Notified>, NotifyError> {
    let Some(app) = deps.config.app_named(&change.app) else {
        return Ok(None);
    };
    let (state, key) = match &change.decision {
        None => ("APPROVAL", "APPROVAL_WAIT".to_string()),
        Some((choice, ..)) => {
            let state = match choice {
                greenlight_shared::approval::Choice::Approve => "APPROVED",
                greenlight_shared::approval::Choice::Reject => "REJECTED",
            };
            (state, format!("APPROVAL:{}", choice.as_str()))
        }
    };
    let deployment = change.deployment_id.clone();
    once(deps, &app.name, &deployment, &key, invocation, async {
        let destination = destination_for(deps, app).await?;
        let run = run_anchor(&app.name, &change.digest, change.pushed_at_ms);
        let mut notice = run_notice(
            deps,
            app,
            &deployment,
            Some(change.version.clone()),
            Some(change.digest.clone()),
            Some(run),
        );
        notice.state = state.into();
        notice.approval = Some(match change.decision.clone() {
            None => ApprovalNote::Waiting {
                expires_at: DateTime::from_timestamp_millis(change.expires_at_ms)
                    .unwrap_or_else(Utc::now),
                binding: Binding {
                    app: app.name.clone(),
                    digest: change.digest.clone(),
                    pushed_at_ms: change.pushed_at_ms,
                    deployment_id: deployment.clone(),
                }
                .to_value(),
            },
            Some((choice, by, at, reason)) => ApprovalNote::Decided {
                choice,
                by,
                at,
                reason,
            },
        });
        post_notice(deps, app, &destination, &notice, invocation).await
    })
    .await
}
