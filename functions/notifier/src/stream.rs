//! The ledger's DynamoDB stream, as the stack's mapping filters it, read for the living
//! message (Slack app mode): a release item that carries a health hook verdict or round (said
//! by [`crate::verdicts`]), or that the queue made wait or superseded (said by
//! [`crate::queued`]). This module alone knows the item's attributes as the stream shows them.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use greenlight_shared::approval::Choice;

use crate::core::NotifyError;

/// What one record of the stream says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChange {
    Verdict(LedgerVerdict),
    Queue(QueueChange),
    Approval(ApprovalChange),
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
    new_image: Image,
}

/// A release item as the stream shows it (DynamoDB's typed JSON).
#[derive(Deserialize, Default)]
#[serde(transparent)]
struct Image(HashMap<String, Value>);

impl Image {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn s(&self, key: &str) -> Option<String> {
        self.0.get(key)?["S"].as_str().map(str::to_string)
    }

    fn n(&self, key: &str) -> Option<i64> {
        self.0.get(key)?["N"].as_str()?.parse().ok()
    }

    fn is_release(&self) -> bool {
        self.s("pk").is_some_and(|pk| pk.starts_with("app#"))
            && self.s("sk").is_some_and(|sk| sk.starts_with("release#"))
    }
}

/// Whether a payload is a batch of the ledger's stream.
pub fn is_ledger_stream(payload: &Value) -> bool {
    payload["Records"][0]["eventSource"] == "aws:dynamodb"
}

/// The changes a stream batch carries (records of other items, or of nothing said, are left
/// out); a batch that is not one is a `MalformedEvent`.
pub fn parse_stream(payload: Value) -> Result<Vec<LedgerChange>, NotifyError> {
    let batch: StreamBatch = serde_json::from_value(payload).map_err(|e| {
        NotifyError::MalformedEvent(greenlight_shared::error::redact_event_error(&e.to_string()))
    })?;
    Ok(batch
        .records
        .into_iter()
        .filter(|r| r.source == "aws:dynamodb")
        .filter_map(|r| r.dynamodb.map(|d| d.new_image))
        .filter(Image::is_release)
        .flat_map(|image| {
            // A release the queue holds or skipped has no verdict yet; a wait for approval
            // follows its verdict on the same item.
            match queued_of(&image) {
                Some(queued) => vec![LedgerChange::Queue(queued)],
                None => verdict_of(&image)
                    .map(LedgerChange::Verdict)
                    .into_iter()
                    .chain(approval_of(&image).map(LedgerChange::Approval))
                    .collect(),
            }
        })
        .collect())
}

/// One verdict, as the release item in the stream's record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVerdict {
    pub app: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub deployment_id: Option<String>,
    /// When its release run was pushed (the run's key).
    pub pushed_at_ms: Option<i64>,
    /// The lifecycle event or stage it judged.
    pub stage: String,
    pub passed: bool,
    pub reason: String,
    /// A native round that did not decide yet (its number, what it found): no verdict.
    pub round: Option<(u32, String)>,
}

/// The verdict or round a release item's image carries, if any.
fn verdict_of(image: &Image) -> Option<LedgerVerdict> {
    let s = |key: &str| image.s(key);
    // A round is noted until the verdict replaces it.
    let round = match (s("hook_round"), s("hook_round_stage")) {
        (Some(found), Some(stage)) => image.n("hook_round_n").map(|n| (stage, n as u32, found)),
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
        pushed_at_ms: image.n("pushed_at_ms"),
        stage,
        passed,
        reason,
        round,
    })
}

/// A release item the queue wrote, as the stream's record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChange {
    pub app: String,
    pub version: String,
    pub digest: String,
    pub pushed_at_ms: i64,
    /// Superseded (by this digest, when the item names it); else it waits.
    pub superseded: Option<Option<String>>,
}

/// The queue change a release item's image shows: waiting or superseded (an archived run is
/// history, not news).
fn queued_of(image: &Image) -> Option<QueueChange> {
    if image.s("archived_at").is_some() {
        return None;
    }
    let superseded = match image.s("release_status")?.as_str() {
        "pending" => None,
        "superseded" => Some(image.s("superseded_by")),
        _ => return None,
    };
    Some(QueueChange {
        app: image.s("app")?,
        version: image.s("release_version")?,
        digest: image.s("digest")?,
        pushed_at_ms: image.n("pushed_at_ms")?,
        superseded,
    })
}

/// An approval's wait, or its decision, as the release item shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalChange {
    pub app: String,
    pub version: String,
    pub digest: String,
    pub pushed_at_ms: i64,
    pub deployment_id: String,
    pub expires_at_ms: i64,
    /// Approved or rejected, by whom, when (RFC 3339), and why.
    pub decision: Option<(Choice, String, String, Option<String>)>,
}

fn approval_of(image: &Image) -> Option<ApprovalChange> {
    let decision = image
        .s("approval_decision")
        .and_then(|d| Choice::parse(&d))
        .map(|choice| {
            (
                choice,
                image.s("approval_by").unwrap_or_default(),
                image.s("approval_at").unwrap_or_default(),
                image.s("approval_reason"),
            )
        });
    Some(ApprovalChange {
        app: image.s("app")?,
        version: image.s("release_version")?,
        digest: image.s("digest")?,
        pushed_at_ms: image.n("pushed_at_ms")?,
        deployment_id: image.s("approval_deployment")?,
        expires_at_ms: image.n("approval_expires_ms")?,
        decision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(image: Value) -> Value {
        json!({"Records": [{"eventSource": "aws:dynamodb", "eventName": "MODIFY",
                            "dynamodb": {"NewImage": image}}]})
    }

    fn release(status: &str) -> Value {
        json!({"pk": {"S": "app#web1"}, "sk": {"S": "release#sha256:aa"}, "app": {"S": "web1"},
               "digest": {"S": "sha256:aa"}, "release_version": {"S": "v1.4.3"},
               "pushed_at_ms": {"N": "1700000000000"}, "release_status": {"S": status}})
    }

    #[test]
    fn a_waiting_or_superseded_release_is_a_queue_change_and_an_archived_run_is_not() {
        let waiting = parse_stream(batch(release("pending"))).unwrap();
        assert_eq!(
            waiting,
            [LedgerChange::Queue(QueueChange {
                app: "web1".into(),
                version: "v1.4.3".into(),
                digest: "sha256:aa".into(),
                pushed_at_ms: 1_700_000_000_000,
                superseded: None,
            })]
        );
        let mut superseded = release("superseded");
        superseded["superseded_by"] = json!({"S": "sha256:bb"});
        assert!(matches!(
            &parse_stream(batch(superseded.clone())).unwrap()[..],
            [LedgerChange::Queue(QueueChange { superseded: Some(Some(by)), .. })] if by == "sha256:bb"
        ));
        superseded["archived_at"] = json!({"S": "2026-12-05T00:00:00Z"});
        assert!(parse_stream(batch(superseded)).unwrap().is_empty());
        // Neither waiting nor judged: nothing to say.
        assert!(parse_stream(batch(release("deploying")))
            .unwrap()
            .is_empty());
        let mut judged = release("deploying");
        judged["hook_event"] = json!({"S": "AfterAllowTestTraffic"});
        judged["hook_passed"] = json!({"BOOL": true});
        assert!(matches!(
            &parse_stream(batch(judged)).unwrap()[..],
            [LedgerChange::Verdict(v)] if v.passed && v.pushed_at_ms == Some(1_700_000_000_000)
        ));
    }

    #[test]
    fn an_item_other_than_a_release_says_nothing() {
        let mut queue = release("pending");
        queue["sk"] = json!({"S": "queue"});
        assert!(parse_stream(batch(queue)).unwrap().is_empty());
        assert!(parse_stream(json!({"Records": "no"})).is_err());
    }
}
