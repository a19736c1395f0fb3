//! An app's approval gate (`[apps.<app>.approval]`): who may decide, and how long the engine
//! waits for them.

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    pub(super) required: Option<bool>,
    pub(super) approvers: Option<Vec<String>>,
    pub(super) timeout_minutes: Option<u32>,
}

/// A person's approval before production traffic (`[apps.<app>.approval]`): green is checked,
/// then the engine holds the release until an approver decides or the wait times out (and the
/// engine rolls back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalSettings {
    pub required: bool,
    /// Slack user ids (`U…`, `W…`) and user group ids (`S…`) who may decide in Slack.
    pub approvers: Vec<String>,
    /// How long the engine waits for a decision before it rolls back.
    pub timeout_minutes: u32,
}

/// The wait when the config names none, and the longest an ECS pause hook allows.
pub const APPROVAL_TIMEOUT_DEFAULT_MINUTES: u32 = 60;
pub const APPROVAL_TIMEOUT_MAX_MINUTES: u32 = 1440;

impl ApprovalSettings {
    /// Whether a Slack user (or one of their groups) may decide.
    pub fn allows(&self, user: &str, groups: &[String]) -> bool {
        self.approvers
            .iter()
            .any(|a| a == user || groups.iter().any(|g| g == a))
    }

    /// Whether some approvers are user groups (whose members Slack is asked for).
    pub fn names_groups(&self) -> bool {
        self.approvers.iter().any(|a| a.starts_with('S'))
    }
}

pub(super) fn approval_of(
    raw: RawApproval,
    key: &dyn Fn(&str) -> String,
) -> Result<ApprovalSettings, ConfigError> {
    let approval = ApprovalSettings {
        required: raw.required.unwrap_or(false),
        approvers: raw.approvers.unwrap_or_default(),
        timeout_minutes: raw
            .timeout_minutes
            .unwrap_or(APPROVAL_TIMEOUT_DEFAULT_MINUTES),
    };
    if !(1..=APPROVAL_TIMEOUT_MAX_MINUTES).contains(&approval.timeout_minutes) {
        return Err(invalid(
            key("approval.timeout_minutes"),
            format!("must be 1 to {APPROVAL_TIMEOUT_MAX_MINUTES} minutes (what ECS's pause hook allows)"),
        ));
    }
    for id in &approval.approvers {
        let shaped = (3..=24).contains(&id.len())
            && matches!(id.as_bytes()[0], b'U' | b'W' | b'S')
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !shaped {
            return Err(invalid(
                key("approval.approvers"),
                format!(
                    "`{}` is not a Slack user id (U…, W…) or user group id (S…)",
                    id.chars().take(40).collect::<String>()
                ),
            ));
        }
    }
    Ok(approval)
}
