//! Typed events: the ECR image push that starts a release, and what the deployer makes of it.
//!
//! aws_lambda_events has no type for EventBridge "ECR Image Action" events, so the detail is
//! ours (kebab-case keys). Tag and digest are optional: DELETE and archive events exist.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, Config};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EcrImageAction {
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub repository_name: Option<String>,
    #[serde(default)]
    pub action_type: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
    #[serde(default)]
    pub image_tag: Option<String>,
}

pub type EcrImageEvent = EventBridgeEvent<EcrImageAction>;

/// The detail of an "ECS Deployment State Change" event (`events/ecs-deployment-state-change-*.json`,
/// from the ECS developer guide). `deploymentId` is the service's `ecs-svc/…` deployment, not
/// the service deployment ARN the ledger records, and how a native rollback shows in these
/// events is not documented: they are a signal to read the service deployment, never a verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsDeploymentChange {
    #[serde(default)]
    pub event_type: Option<String>,
    /// `SERVICE_DEPLOYMENT_IN_PROGRESS`, `…_COMPLETED`, `…_FAILED`.
    #[serde(default)]
    pub event_name: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

pub type EcsDeploymentEvent = EventBridgeEvent<EcsDeploymentChange>;

/// The EventBridge detail type of ECS service deployment state changes.
pub const ECS_DEPLOYMENT_STATE_CHANGE: &str = "ECS Deployment State Change";

/// The (cluster, service) an ECS deployment event is about: its resource, the service ARN.
/// Only names ECS accepts (1 to 255 letters, digits, `-` and `_`), so what comes back is
/// bounded and safe to log, compare and send on as is.
pub fn service_of_event(event: &EcsDeploymentEvent) -> Option<(&str, &str)> {
    let valid = |name: &str| {
        (1..=255).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    event
        .resources
        .iter()
        .flatten()
        .find_map(|arn| crate::model::service_of_arn(arn))
        .filter(|(cluster, service)| valid(cluster) && valid(service))
}

/// Whether an ECS deployment event may say a deployment ended (IN_PROGRESS never does).
pub fn may_end(change: &EcsDeploymentChange) -> bool {
    matches!(
        change.event_name.as_str(),
        "SERVICE_DEPLOYMENT_COMPLETED" | "SERVICE_DEPLOYMENT_FAILED"
    )
}

/// Where the function runs: only pushes to this account and region are deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub account: String,
    pub region: String,
}

impl Location {
    /// The account from the function's own ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
    pub fn from_function_arn(arn: &str) -> Option<Self> {
        let mut parts = arn.split(':');
        let (_, _, _, region, account) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        (!region.is_empty() && !account.is_empty()).then(|| Self {
            account: account.to_string(),
            region: region.to_string(),
        })
    }
}

/// A pushed image that is a release of a configured app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePush {
    pub app: String,
    pub repository: String,
    pub version: String,
    pub digest: String,
    /// `<registry>/<repository>@<digest>`: what the new task definition runs.
    pub image: String,
    pub pushed_at: DateTime<Utc>,
    /// Who shipped it, from the image's annotations (read by the deployer; empty until then).
    pub provenance: crate::provenance::Provenance,
    /// The operator's request that asked for it; `None` for a push.
    pub request: Option<crate::request::Requested>,
}

/// Why an ECR event does not deploy anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("not an ECR image push (action-type {0})")]
    NotAPush(String),
    #[error("push did not succeed (result {0})")]
    NotSuccessful(String),
    #[error("event carries no image tag")]
    Untagged,
    #[error("tag `{0}` is not a release tag")]
    NotAReleaseTag(String),
    #[error("repository `{0}` is not managed by Greenlight")]
    UnknownRepository(String),
    #[error("image is in account {found}, Greenlight runs in {expected}")]
    ForeignAccount { found: String, expected: String },
    #[error("image is in region {found}, Greenlight runs in {expected}")]
    ForeignRegion { found: String, expected: String },
    #[error("event carries no valid sha256 image digest")]
    NoDigest,
    /// Its `time` is later than now by more than clocks differ: it would outrank every real
    /// push and request to come.
    #[error("event time {0} is in the future")]
    FromTheFuture(String),
}

impl SkipReason {
    /// A stable label for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAPush(_) => "not_a_push",
            Self::NotSuccessful(_) => "not_successful",
            Self::Untagged => "untagged",
            Self::NotAReleaseTag(_) => "not_a_release_tag",
            Self::UnknownRepository(_) => "unknown_repository",
            Self::ForeignAccount { .. } => "foreign_account",
            Self::ForeignRegion { .. } => "foreign_region",
            Self::NoDigest => "no_digest",
            Self::FromTheFuture(_) => "from_the_future",
        }
    }
}

pub fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `id` has the form of a CodeDeploy deployment id (`d-` and nine upper-case letters
/// or digits). Ids come from events: anything else is not a deployment Greenlight can know,
/// and is not worth a log line of its size, a ledger key or a Slack message.
pub fn is_deployment_id(id: &str) -> bool {
    id.len() == 11
        && id.starts_with("d-")
        && id[2..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// The longest name from an event shown in a log line or a reason, before the event is known to
/// be a managed app's (CodeDeploy's application and group names are at most 100 characters).
pub const SHOWN_NAME_MAX: usize = 100;

/// At most `max` characters of untrusted text, for a log line.
pub fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The first 12 hex characters of an image digest, as `docker images` shows them.
pub fn short_digest(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

/// The registry host of an account's private ECR registry in a region.
pub fn registry_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// How far ahead of the deployer's clock an event's time may be: EventBridge stamps events
/// with AWS's clock; more than this is not a clock difference.
pub const MAX_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// Decides whether an ECR event is a release to deploy. Pure: no AWS call. Every value it
/// quotes back is clipped: an event can carry anything, of any size.
pub fn classify_push<'c>(
    event: &EcrImageEvent,
    config: &'c Config,
    here: &Location,
) -> Result<(ImagePush, &'c AppConfig), SkipReason> {
    let d = &event.detail;
    let field = |v: &Option<String>| {
        v.as_deref()
            .map_or_else(|| "<none>".to_string(), |v| clipped(v, SHOWN_NAME_MAX))
    };
    if d.action_type.as_deref() != Some("PUSH") {
        return Err(SkipReason::NotAPush(field(&d.action_type)));
    }
    if d.result.as_deref() != Some("SUCCESS") {
        return Err(SkipReason::NotSuccessful(field(&d.result)));
    }
    let account = event.account.clone().unwrap_or_default();
    if account != here.account {
        return Err(SkipReason::ForeignAccount {
            found: clipped(&account, SHOWN_NAME_MAX),
            expected: here.account.clone(),
        });
    }
    let region = event.region.clone().unwrap_or_default();
    if region != here.region {
        return Err(SkipReason::ForeignRegion {
            found: clipped(&region, SHOWN_NAME_MAX),
            expected: here.region.clone(),
        });
    }
    let repository = d.repository_name.clone().unwrap_or_default();
    let app = config
        .app_for_repository(&repository)
        .ok_or_else(|| SkipReason::UnknownRepository(clipped(&repository, SHOWN_NAME_MAX)))?;
    let tag = d
        .image_tag
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or(SkipReason::Untagged)?;
    if !app.tag_rule.is_release(&tag) {
        return Err(SkipReason::NotAReleaseTag(clipped(&tag, SHOWN_NAME_MAX)));
    }
    let digest = d
        .image_digest
        .clone()
        .filter(|d| is_sha256_digest(d))
        .ok_or(SkipReason::NoDigest)?;
    let now = Utc::now();
    let pushed_at = event.time.unwrap_or(now);
    if pushed_at > now + MAX_CLOCK_SKEW {
        return Err(SkipReason::FromTheFuture(pushed_at.to_rfc3339()));
    }
    let push = ImagePush {
        app: app.name.clone(),
        image: format!(
            "{}/{}@{}",
            registry_host(&account, &region),
            repository,
            digest
        ),
        repository,
        version: tag,
        digest,
        pushed_at,
        provenance: Default::default(),
        request: None,
    };
    Ok((push, app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_are_recognised_by_their_format() {
        assert!(is_deployment_id("d-7GQK2M4XB"));
        assert!(is_deployment_id("d-000000001"));
        for not_one in [
            "",
            "d-",
            "d-7gqk2m4xb",
            "d-7GQK2M4X",
            "d-7GQK2M4XBB",
            "x-7GQK2M4XB",
            "d-7GQK2M4X\u{e9}",
        ] {
            assert!(!is_deployment_id(not_one), "{not_one}");
        }
        assert_eq!(clipped(&"x".repeat(500_000), 8), "xxxxxxxx…");
        assert_eq!(clipped("short", 8), "short");
    }

    const CONFIG: &str =
        "[apps.web1]\nrepository='web1'\napplication='web1'\ndeployment_group='web1-bluegreen'\n";

    fn here() -> Location {
        Location {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        }
    }

    fn sample(name: &str) -> EcrImageEvent {
        serde_json::from_value(crate::fakes::sample_event(name)).unwrap()
    }

    fn classify(event: &EcrImageEvent) -> Result<ImagePush, SkipReason> {
        let config = Config::parse(CONFIG).unwrap();
        classify_push(event, &config, &here()).map(|(push, _)| push)
    }

    #[test]
    fn version_push_is_a_release_pinned_by_digest() {
        let push = classify(&sample("ecr-push-version")).unwrap();
        assert_eq!(push.app, "web1");
        assert_eq!(push.version, "v1.4.2");
        assert_eq!(
            push.image,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378e3a4c1b7d2e9"
        );
        assert_eq!(push.pushed_at.to_rfc3339(), "2026-11-25T10:12:03+00:00");
    }

    #[test]
    fn latest_tag_alone_does_not_deploy() {
        assert_eq!(
            classify(&sample("ecr-push-latest")),
            Err(SkipReason::NotAReleaseTag("latest".into()))
        );
    }

    #[test]
    fn failed_push_does_not_deploy() {
        assert_eq!(
            classify(&sample("ecr-push-failed")),
            Err(SkipReason::NotSuccessful("FAILURE".into()))
        );
    }

    #[test]
    fn delete_does_not_deploy() {
        assert_eq!(
            classify(&sample("ecr-delete")),
            Err(SkipReason::NotAPush("DELETE".into()))
        );
    }

    #[test]
    fn archive_without_tag_does_not_deploy() {
        assert_eq!(
            classify(&sample("ecr-archive-untagged")),
            Err(SkipReason::NotAPush("ARCHIVE".into()))
        );
        let mut untagged_push = sample("ecr-archive-untagged");
        untagged_push.detail.action_type = Some("PUSH".into());
        assert_eq!(classify(&untagged_push), Err(SkipReason::Untagged));
    }

    #[test]
    fn unknown_repository_does_not_deploy() {
        let mut event = sample("ecr-push-version");
        event.detail.repository_name = Some("billing".into());
        assert_eq!(
            classify(&event),
            Err(SkipReason::UnknownRepository("billing".into()))
        );
    }

    #[test]
    fn push_from_another_account_or_region_does_not_deploy() {
        let mut event = sample("ecr-push-version");
        event.account = Some("999999999999".into());
        assert_eq!(classify(&event).unwrap_err().code(), "foreign_account");
        let mut event = sample("ecr-push-version");
        event.region = Some("eu-west-1".into());
        assert_eq!(classify(&event).unwrap_err().code(), "foreign_region");
    }

    #[test]
    fn malformed_digest_does_not_deploy() {
        let mut event = sample("ecr-push-version");
        event.detail.image_digest = Some("sha256:not-hex".into());
        assert_eq!(classify(&event), Err(SkipReason::NoDigest));
    }

    #[test]
    fn location_comes_from_the_function_arn() {
        assert_eq!(
            Location::from_function_arn(
                "arn:aws:lambda:us-east-1:123456789012:function:greenlight-deployer"
            ),
            Some(here())
        );
        assert_eq!(Location::from_function_arn("not-an-arn"), None);
    }
}
