//! The health hook's verdicts, to the release's living message (Slack app mode).
//!
//! The hook writes each verdict on the release item in the ledger, as it always did; the
//! ledger's DynamoDB stream (filtered by the stack to release items that carry a verdict,
//! [`crate::stream`]) brings the write here. So the hook makes no Slack call and waits for none, and needs no
//! permission or client of the notifier's. A verdict goes to the run's thread ("Health hook at
//! POST_TEST_TRAFFIC_SHIFT: green passed — all checks passed"); on a native deployment, whose
//! engine sends no state between started and ended, green passing its checks before production
//! traffic moves the message itself to "ready on green". Once per verdict (an announcement
//! marker per deployment, stage and verdict); apps on a webhook are left as they are.

use greenlight_shared::invocation::Invocation;
use greenlight_shared::model::is_service_deployment_arn;
use tracing::info;

use crate::core::{once, run_notice, Deps, Notified, NotifyError};
use crate::delivery::{destination_for, post_notice};
use crate::message::{run_anchor, Notice};
use crate::stream::LedgerVerdict;

/// Says a verdict in its release's thread, once; `None` when there is nothing to say.
pub(crate) async fn say_verdict(
    deps: &Deps,
    verdict: LedgerVerdict,
    invocation: &Invocation,
) -> Result<Option<Notified>, NotifyError> {
    let Some(app) = deps.config.app_named(&verdict.app) else {
        return Ok(None);
    };
    let (Some(_), Some(deployment_id)) = (&app.slack.token, &verdict.deployment_id) else {
        info!(app = %verdict.app, "verdict not said: the app posts to a webhook, or no deployment yet");
        return Ok(None);
    };
    let key = match &verdict.round {
        Some((n, _)) => format!("HOOK_ROUND:{}:{n}", verdict.stage),
        None => format!(
            "HOOK:{}:{}",
            verdict.stage,
            if verdict.passed { "PASSED" } else { "FAILED" }
        ),
    };
    once(deps, &app.name, deployment_id, &key, invocation, async {
        let destination = destination_for(deps, app).await?;
        let notice = notice_of(deps, app, deployment_id, &verdict);
        post_notice(deps, app, &destination, &notice, invocation).await
    })
    .await
}

/// The notice of a verdict: the thread's line, and for a native deployment whose green passed
/// before production traffic, the message's move to "ready on green".
fn notice_of(
    deps: &Deps,
    app: &greenlight_shared::AppConfig,
    deployment_id: &str,
    verdict: &LedgerVerdict,
) -> Notice {
    let native = is_service_deployment_arn(deployment_id);
    let run = verdict
        .digest
        .as_deref()
        .zip(verdict.pushed_at_ms)
        .map(|(digest, pushed)| run_anchor(&app.name, digest, pushed));
    let release = run_notice(
        deps,
        app,
        deployment_id,
        verdict.version.clone(),
        verdict.digest.clone(),
        run,
    );
    if let Some((n, found)) = &verdict.round {
        // The message says how checking green goes, until a state further on replaces it.
        return Notice {
            state: "START".into(),
            checking: Some(format!(
                "checking green at {}, round {n}: {found}",
                verdict.stage
            )),
            ..release
        };
    }
    let ready = native && verdict.passed && verdict.stage == "POST_TEST_TRAFFIC_SHIFT";
    Notice {
        state: if verdict.passed { "READY" } else { "FAILURE" }.into(),
        thread_note: Some(format!(
            "Health hook at {}: green {} — {}",
            verdict.stage,
            if verdict.passed { "passed" } else { "failed" },
            verdict.reason
        )),
        thread_only: !ready,
        ..release
    }
}
