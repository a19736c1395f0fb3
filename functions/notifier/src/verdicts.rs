//! The health hook's verdicts, to the release's living message (Slack app mode).
//!
//! The hook writes each verdict on the release item in the ledger, as it always did; the
//! ledger's DynamoDB stream (filtered by the stack to release items that carry a verdict)
//! brings the write here. So the hook makes no Slack call and waits for none, and needs no
//! permission or client of the notifier's. A verdict goes to the run's thread ("Health hook at
//! POST_TEST_TRAFFIC_SHIFT: green passed — all checks passed"); on a native deployment, whose
//! engine sends no state between started and ended, green passing its checks before production
//! traffic moves the message itself to "ready on green". Once per verdict (an announcement
//! marker per deployment, stage and verdict); apps on a webhook are left as they are.

use greenlight_shared::invocation::Invocation;
use greenlight_shared::model::is_service_deployment_arn;
use serde::Deserialize;
use tracing::info;

use crate::core::{once, Deps, Notified, NotifyError};
use crate::delivery::{destination_for, post_notice};
use crate::message::{Notice, StartedBy};

/// One verdict, as the release item in the stream's record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVerdict {
    pub app: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub deployment_id: Option<String>,
    /// The lifecycle event or stage it judged.
    pub stage: String,
    pub passed: bool,
    pub reason: String,
    /// A native round that did not decide yet (its number, what it found): no verdict.
    pub round: Option<(u32, String)>,
}

/// A DynamoDB stream batch (the shape Lambda invokes with), reduced to what is read.
#[derive(Deserialize)]
struct StreamBatch {
    #[serde(rename = "Records")]
    records: Vec<StreamRecord>,
}

#[derive(Deserialize)]
struct StreamRecord {
    #[serde(rename = "eventSource", default)]
    source: String,
    dynamodb: Option<StreamImage>,
}

#[derive(Deserialize)]
struct StreamImage {
    #[serde(rename = "NewImage", default)]
    new_image: std::collections::HashMap<String, serde_json::Value>,
}

/// Whether a payload is a batch of the ledger's stream.
pub fn is_ledger_stream(payload: &serde_json::Value) -> bool {
    payload["Records"][0]["eventSource"] == "aws:dynamodb"
}

/// The verdicts a stream batch carries (records of other items, or without a verdict, are
/// not verdicts); a batch that is not one is a `MalformedEvent`.
pub fn parse_stream(payload: serde_json::Value) -> Result<Vec<LedgerVerdict>, NotifyError> {
    let batch: StreamBatch = serde_json::from_value(payload).map_err(|e| {
        NotifyError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
    })?;
    Ok(batch
        .records
        .into_iter()
        .filter(|r| r.source == "aws:dynamodb")
        .filter_map(|r| verdict_of(&r.dynamodb?.new_image))
        .collect())
}

fn verdict_of(
    image: &std::collections::HashMap<String, serde_json::Value>,
) -> Option<LedgerVerdict> {
    let s = |key: &str| image.get(key)?["S"].as_str().map(str::to_string);
    if !s("pk")?.starts_with("app#") || !s("sk")?.starts_with("release#") {
        return None;
    }
    // A round is noted until the verdict replaces it.
    let round = match (s("hook_round"), s("hook_round_stage")) {
        (Some(found), Some(stage)) => image
            .get("hook_round_n")
            .and_then(|n| n["N"].as_str()?.parse().ok())
            .map(|n| (stage, n, found)),
        _ => None,
    };
    let (stage, passed, reason, round) = match round {
        Some((stage, n, found)) => (stage, false, String::new(), Some((n, found))),
        None => (
            s("hook_event")?,
            image.get("hook_passed")?["BOOL"].as_bool()?,
            s("hook_reason").unwrap_or_default(),
            None,
        ),
    };
    Some(LedgerVerdict {
        app: s("app")?,
        version: s("release_version"),
        digest: s("digest"),
        deployment_id: s("deployment_id"),
        stage,
        passed,
        reason,
        round,
    })
}

/// Says each verdict in its release's thread, once.
pub async fn handle_verdicts(
    deps: &Deps,
    verdicts: Vec<LedgerVerdict>,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let mut last = Notified::Ignored {
        reason: "no verdict for a Slack app's message".into(),
    };
    for verdict in verdicts {
        let Some(app) = deps.config.app_named(&verdict.app) else {
            continue;
        };
        let (Some(_), Some(deployment_id)) = (&app.slack.token, &verdict.deployment_id) else {
            info!(app = %verdict.app, "verdict not said: the app posts to a webhook, or no deployment yet");
            continue;
        };
        let key = match &verdict.round {
            Some((n, _)) => format!("HOOK_ROUND:{}:{n}", verdict.stage),
            None => format!(
                "HOOK:{}:{}",
                verdict.stage,
                if verdict.passed { "PASSED" } else { "FAILED" }
            ),
        };
        let said = once(deps, &app.name, deployment_id, &key, invocation, async {
            let destination = destination_for(deps, app).await?;
            let notice = notice_of(deps, app, deployment_id, &verdict);
            post_notice(deps, app, &destination, &notice, invocation).await
        })
        .await?;
        if let Some(said) = said {
            last = said;
        }
    }
    Ok(last)
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
    let (scope, target) = match (&app.service, &app.group) {
        (Some(s), _) => (s.cluster.clone(), s.service.clone()),
        (None, Some(g)) => (g.application.clone(), g.deployment_group.clone()),
        (None, None) => (String::new(), String::new()),
    };
    let release = Notice {
        app: app.name.clone(),
        environment: app.environment.clone(),
        scope,
        target,
        deployment_id: deployment_id.to_string(),
        region: deps.region.clone(),
        channel: app.slack.channel.clone(),
        version: verdict.version.clone(),
        digest: verdict.digest.clone(),
        started_by: Some(StartedBy::Push),
        ..Notice::default()
    };
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
        verdict: Some(format!(
            "Health hook at {}: green {} — {}",
            verdict.stage,
            if verdict.passed { "passed" } else { "failed" },
            verdict.reason
        )),
        thread_only: !ready,
        ..release
    }
}
