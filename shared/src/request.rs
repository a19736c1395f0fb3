//! An operator's request to the deployer: the payload the `greenlight` command sends through
//! Lambda Invoke, and what a release records of it.
//!
//! A request is a release request of its own. It deploys through the same ledger and queue as a
//! push (one deployment at a time, resumable, exactly once per request id), is not blocked by
//! the digest's earlier success, and takes its place in "newest wins" at the time it was made
//! (it is explicit, so it is the newest thing asked). Who asked is what the command read from
//! STS; CloudTrail's record of the Invoke is the authoritative one.

use serde::{Deserialize, Serialize};

/// The longest `requested_by` kept (an STS ARN with a long role and session name fits).
pub const REQUESTER_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Deploy a release that exists in ECR (redeploy, roll forward, retry after a fix).
    Deploy,
    /// Deploy an earlier release again; the same as `Deploy`, shown as a rollback.
    Rollback,
    /// Say what a deploy would do; write nothing.
    Plan,
    /// Let the release that waits for approval take production traffic.
    Approve,
    /// Roll back the release that waits for approval.
    Reject,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
            Self::Plan => "plan",
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Deploy,
            Self::Rollback,
            Self::Plan,
            Self::Approve,
            Self::Reject,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// The Invoke payload. `greenlight` tells it from an EventBridge event (which has `source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRequest {
    pub greenlight: RequestKind,
    pub app: String,
    /// A release tag (`v1.4.2`) or an image digest (`sha256:…`) of the app's repository;
    /// for approve and reject, the release expected to wait, or `waiting` for whichever does.
    pub release: String,
    /// Chosen by the command: the same id again (a retried Invoke) is the same request.
    pub request_id: String,
    /// Who asked: the caller identity (ARN) the command read from STS.
    pub requested_by: String,
    /// When the operator asked: the request's place in "newest wins" (never later than when
    /// the deployer reads it), so a late or retried delivery keeps it.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// Why (reject), kept with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `release` says when an approval names no release: the one that waits.
pub const WAITING: &str = "waiting";

/// The longest reason kept.
pub const REASON_MAX: usize = 300;

/// What a release records of the request that deployed it (none for a push).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requested {
    pub id: String,
    pub by: String,
    pub kind: RequestKind,
}

impl Requested {
    /// Read back from the ledger: checked by shape again (a hand-edited item is not trusted).
    pub fn checked(id: Option<String>, by: Option<String>, kind: Option<String>) -> Option<Self> {
        let (id, by) = (id?, by?);
        let kind = RequestKind::parse(kind.as_deref()?)?;
        (is_request_id(&id) && is_requester(&by)).then_some(Self { id, by, kind })
    }

    /// The name part of the requester's ARN (`alice` of `…:assumed-role/Operators/alice`), for
    /// people; the whole ARN when it has none.
    pub fn requester_name(&self) -> &str {
        self.by
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.by)
    }
}

/// 8 to 64 letters, digits and `-` (a UUID fits).
pub fn is_request_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An IAM or STS ARN's characters, at most [`REQUESTER_MAX`].
pub fn is_requester(by: &str) -> bool {
    !by.is_empty()
        && by.len() <= REQUESTER_MAX
        && by
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-:/".contains(&b))
}

impl OperatorRequest {
    /// Why the request cannot be taken as it is (its values are not repeated).
    pub fn problem(&self) -> Option<&'static str> {
        if !is_request_id(&self.request_id) {
            return Some("request_id must be 8 to 64 letters, digits or -");
        }
        if !is_requester(&self.requested_by) {
            return Some("requested_by must be an ARN of at most 256 characters");
        }
        if self.release.is_empty() || self.release.len() > 128 {
            return Some("release must be a tag or digest of at most 128 characters");
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > REASON_MAX || r.chars().any(char::is_control))
        {
            return Some("reason must be one line of at most 300 characters");
        }
        None
    }

    pub fn requested(&self) -> Requested {
        Requested {
            id: self.request_id.clone(),
            by: self.requested_by.clone(),
            kind: self.greenlight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> OperatorRequest {
        OperatorRequest {
            greenlight: RequestKind::Rollback,
            app: "web1".into(),
            release: "v1.4.2".into(),
            request_id: "0b6f6d2c-5b8e-4a43-9d59-2f1e0c7b9a11".into(),
            requested_by: "arn:aws:sts::123456789012:assumed-role/Operators/alice".into(),
            requested_at: "2026-11-30T09:00:00Z".parse().unwrap(),
            reason: None,
        }
    }

    #[test]
    fn the_payload_reads_back_and_refuses_unknown_fields() {
        let json = serde_json::to_value(request()).unwrap();
        assert_eq!(json["greenlight"], "rollback");
        let back: OperatorRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, request());
        let mut extra = json;
        extra["force"] = true.into();
        assert!(serde_json::from_value::<OperatorRequest>(extra).is_err());
    }

    #[test]
    fn request_ids_and_requesters_are_checked_by_shape() {
        assert_eq!(request().problem(), None);
        for (id, by) in [
            ("short", "arn:aws:iam::123456789012:user/bob"),
            ("has space in it", "arn:aws:iam::123456789012:user/bob"),
            ("0b6f6d2c-5b8e", "alice\nforged log line"),
            ("0b6f6d2c-5b8e", &"a".repeat(REQUESTER_MAX + 1)),
        ] {
            let r = OperatorRequest {
                request_id: id.into(),
                requested_by: by.into(),
                ..request()
            };
            assert!(r.problem().is_some(), "{id:?} {by:?} accepted");
        }
        assert!(
            Requested::checked(Some("x".into()), Some("a".into()), Some("deploy".into())).is_none()
        );
    }

    #[test]
    fn the_requester_is_shown_by_name() {
        let r = request().requested();
        assert_eq!(r.requester_name(), "alice");
        let user = Requested {
            by: "arn:aws:iam::123456789012:root".into(),
            ..r
        };
        assert_eq!(user.requester_name(), "arn:aws:iam::123456789012:root");
    }
}
