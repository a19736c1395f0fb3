//! The Slack message for a deployment state change.
//!
//! A pure function of a [`Notice`] (what the event, CodeDeploy and the ledger said about the
//! deployment), so every wording, colour and field is tested without a network. The payload is
//! a one-line headline as `text` (what notifications and old clients show) and one coloured
//! attachment of Block Kit blocks: the headline, the facts as section fields, the releases a
//! newer one skipped, and a link to the deployment in the AWS console.
//!
//! A rollback deployment is never announced as a success: its SUCCESS reads "rolled back to
//! v1.4.2", in the warning colour.

use greenlight_shared::approval::{person, Choice};
use greenlight_shared::events::short_digest;
use greenlight_shared::provenance::Provenance;
use std::time::Duration;

use serde_json::{json, Value};

pub use crate::notice::{run_anchor, ApprovalNote, Notice, Rollback, StartedBy, ROLLBACK_CREATOR};

/// Said when the version a rollback restores is not known.
const PREVIOUS_VERSION: &str = "the previous version";

/// Slack accepts at most 10 fields per section block.
const FIELDS_PER_SECTION: usize = 10;

/// Slack accepts at most 2000 characters per field text; titles and markup need some room.
const FIELD_VALUE_MAX_CHARS: usize = 1900;

/// Slack accepts at most 3000 characters of section text (the headline, with its mention).
const SECTION_TEXT_MAX_CHARS: usize = 2900;

/// What the message says happened; it picks the colour and whether to mention anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// A rollback deployment finished: production is back on the previous version.
    RolledBack,
    /// A deployment Greenlight did not start ended well: not a release, never a success.
    Outside,
    Stopped,
    /// A newer release took its place before it deployed: nothing happened to production.
    Superseded,
    InProgress,
    Unknown,
}

impl Outcome {
    pub fn of(notice: &Notice) -> Self {
        if notice.details_unavailable {
            return Self::Unknown;
        }
        match notice.state.as_str() {
            "SUCCESS" if notice.is_rollback() => Self::RolledBack,
            "SUCCESS" if notice.is_outside() => Self::Outside,
            "SUCCESS" => Self::Succeeded,
            "FAILURE" => Self::Failed,
            "STOP" => Self::Stopped,
            "QUEUED" | "START" | "READY" | "APPROVAL" | "APPROVED" | "REJECTED" => Self::InProgress,
            "SUPERSEDED" => Self::Superseded,
            _ => Self::Unknown,
        }
    }

    /// The attachment's colour bar.
    pub fn colour(self) -> &'static str {
        match self {
            Self::Succeeded => "#2EB67D",
            Self::Failed => "#E01E5A",
            Self::RolledBack | Self::Stopped => "#ECB22E",
            Self::InProgress => "#1D9BD1",
            Self::Unknown | Self::Outside | Self::Superseded => "#8D8D8D",
        }
    }

    /// Whether the app's `mention_on_failure` is added.
    pub fn mentions(self) -> bool {
        matches!(self, Self::Failed | Self::Stopped | Self::RolledBack)
    }
}

/// A message ready to post.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The one-line summary, without any mention.
    pub headline: String,
    pub outcome: Outcome,
    /// The incoming-webhook payload.
    pub payload: Value,
}

/// What a state adds to the living message's thread, if anything: why it failed or stopped
/// (broadcast to the channel by the caller), a rollback, the operator's request, the releases
/// it skipped.
pub fn thread_detail(n: &Notice) -> Option<String> {
    if let Some(note) = &n.thread_note {
        return Some(clip_to(note, SECTION_TEXT_MAX_CHARS));
    }
    if let Some(ApprovalNote::Decided {
        choice,
        by,
        at,
        reason,
    }) = &n.approval
    {
        let when = chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|_| at.clone());
        let verb = match choice {
            Choice::Approve => "Approved",
            Choice::Reject => "Rolled back",
        };
        let why = reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        return Some(clip_to(
            &format!("{verb} by {} at {when}{why}", person(by)),
            SECTION_TEXT_MAX_CHARS,
        ));
    }
    let outcome = Outcome::of(n);
    let mut lines = vec![];
    // A rollback deployment's states go to the thread of the run it undoes.
    let in_anothers_thread = matches!(n.rollback, Some(Rollback::IsRollback { of: Some(_), .. }));
    if in_anothers_thread || outcome.mentions() || outcome == Outcome::Unknown {
        lines.push(headline(n));
    }
    if let Some(q) = &n.requested {
        if n.state == "START" {
            lines.push(format!(
                "Requested by {} ({} with the greenlight command)",
                q.by,
                q.kind.as_str()
            ));
        }
    }
    if !n.superseded.is_empty() {
        lines.push(skipped_line(n));
    }
    for (title, value) in fields(n) {
        // The plan of its traffic, said once on its start (the message itself moves on).
        let traffic = title == "Traffic" && n.state == "START";
        if traffic
            || matches!(
                title,
                "Error" | "Reason" | "Rolled back because" | "Rollback"
            )
        {
            lines.push(format!("{title}: {value}"));
        }
    }
    if lines.is_empty() {
        return None;
    }
    let text = lines.join("\n");
    let text = match n
        .mention_on_failure
        .as_deref()
        .filter(|m| !m.trim().is_empty())
    {
        Some(mention) if outcome.mentions() => format!("{mention} {text}"),
        _ => text,
    };
    Some(clip_to(&text, SECTION_TEXT_MAX_CHARS))
}

/// Builds the message for a notice.
pub fn build(notice: &Notice) -> Message {
    let headline = headline(notice);
    let outcome = Outcome::of(notice);
    let lead = match notice
        .mention_on_failure
        .as_deref()
        .filter(|m| !m.trim().is_empty())
    {
        Some(mention) if outcome.mentions() => format!("{mention} {}", escape(&headline)),
        _ => escape(&headline),
    };
    // Who decided is a mention, the one markup a headline keeps: a Slack user id the
    // approver verified (letters and digits only), never text from an event.
    let lead = match &notice.approval {
        Some(ApprovalNote::Decided { by, .. }) if is_slack_user(by) => {
            lead.replace(&escape(&person(by)), &person(by))
        }
        _ => lead,
    };
    let lead = clip_to(&lead, SECTION_TEXT_MAX_CHARS);

    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": lead },
    })];
    let fields: Vec<Value> = fields(notice)
        .into_iter()
        .map(|(title, value)| json!({ "type": "mrkdwn", "text": format!("*{title}*\n{}", clip(&escape(&value))) }))
        .collect();
    for chunk in fields.chunks(FIELDS_PER_SECTION) {
        blocks.push(json!({ "type": "section", "fields": chunk }));
    }
    if !notice.superseded.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": clip(&escape(&skipped_line(notice))) },
        }));
    }
    if let (Some(ApprovalNote::Waiting { binding, .. }), "APPROVAL") =
        (&notice.approval, notice.state.as_str())
    {
        blocks.push(approval_buttons(binding));
    }
    let links: Vec<Value> = provenance_links(&notice.provenance)
        .into_iter()
        .chain([match notice.deployment_id.as_str() {
            "" => target_link(&notice.region, notice.native, &notice.scope, &notice.target),
            id => console_link(&notice.region, id),
        }])
        .map(|text| json!({ "type": "mrkdwn", "text": text }))
        .collect();
    blocks.push(json!({ "type": "context", "elements": links }));

    let mut payload = json!({
        "text": lead,
        "attachments": [{ "color": outcome.colour(), "blocks": blocks }],
    });
    if let Some(channel) = notice.channel.as_deref().filter(|c| !c.trim().is_empty()) {
        payload["channel"] = json!(channel);
    }
    Message {
        headline,
        outcome,
        payload,
    }
}

fn is_slack_user(by: &str) -> bool {
    by.strip_prefix("slack:").is_some_and(|id| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

/// Approve and Roll back, each carrying the run's binding; Roll back asks to confirm.
fn approval_buttons(binding: &str) -> Value {
    json!({
        "type": "actions",
        "block_id": "greenlight_approval",
        "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": binding,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "reject", "style": "danger", "value": binding,
             "text": {"type": "plain_text", "text": "Roll back"},
             "confirm": {
                 "title": {"type": "plain_text", "text": "Roll back this release?"},
                 "text": {"type": "mrkdwn", "text": "Production stays on the version it serves."},
                 "confirm": {"type": "plain_text", "text": "Roll back"},
                 "deny": {"type": "plain_text", "text": "Cancel"}
             }}
        ]
    })
}

/// The one line read at a glance.
pub fn headline(n: &Notice) -> String {
    let line = state_headline(n);
    if n.details_unavailable {
        return line;
    }
    line + &n.requester_suffix()
}

fn state_headline(n: &Notice) -> String {
    let (app, env) = (&n.app, &n.environment);
    if n.details_unavailable {
        // Never a success headline: the deployment may be a rollback.
        let state = match n.state.as_str() {
            "START" => "STARTED",
            "READY" => "READY",
            "SUCCESS" => "SUCCEEDED",
            "FAILURE" => "FAILED",
            "STOP" => "STOPPED",
            other => other,
        };
        return format!(
            ":grey_question: {app} deployment {} {state} on {env}; details unavailable",
            n.deployment_id
        );
    }
    if n.is_rollback() {
        let to = n.version.as_deref().unwrap_or(PREVIOUS_VERSION);
        return match n.state.as_str() {
            "START" => format!(":leftwards_arrow_with_hook: {app} rolling back to {to} on {env}"),
            "READY" => format!(":leftwards_arrow_with_hook: {app} rollback to {to} is ready on green — shifting traffic"),
            "SUCCESS" => format!(":leftwards_arrow_with_hook: {app} rolled back to {to} on {env}"),
            "FAILURE" => format!(":x: {app} rollback to {to} FAILED on {env}"),
            "STOP" => format!(":black_square_for_stop: {app} rollback to {to} STOPPED on {env}"),
            other => format!(":grey_question: {app} rollback to {to} is now {other}"),
        };
    }
    if n.is_outside() {
        return outside_headline(n);
    }
    if let (Some(checking), "START") = (&n.checking, n.state.as_str()) {
        let version = n.version.as_deref().unwrap_or("");
        return format!(":mag: {app} {version} {checking}");
    }
    let subject = match &n.version {
        Some(version) => format!("{app} {version}"),
        None => format!("{app} deployment {}", n.deployment_id),
    };
    let rolled_back = match &n.rollback {
        Some(Rollback::RolledBack { to, .. }) => {
            format!(
                " — rolled back to {}",
                to.as_deref().unwrap_or(PREVIOUS_VERSION)
            )
        }
        _ => String::new(),
    };
    let behind = n.behind.as_deref();
    match n.state.as_str() {
        "QUEUED" => format!(
            ":hourglass_flowing_sand: {subject} queued — waits for {} to finish deploying to {env}",
            behind.unwrap_or("the deployment under way")
        ),
        "SUPERSEDED" => format!(
            ":fast_forward: {subject} superseded by {} — not deployed",
            behind.unwrap_or("a newer release")
        ),
        "APPROVAL" => match &n.approval {
            Some(ApprovalNote::Waiting { expires_at, .. }) if n.living => format!(
                ":raised_hand: {subject} green checked — waiting for approval (expires {} UTC)",
                expires_at.format("%H:%M")
            ),
            // A webhook's message cannot be edited: it also says how to decide.
            Some(ApprovalNote::Waiting { expires_at, .. }) => format!(
                ":raised_hand: {subject} green checked — waiting for approval (expires {} UTC): `greenlight approve {app}` or `greenlight reject {app}`",
                expires_at.format("%H:%M")
            ),
            _ => format!(":raised_hand: {subject} green checked — waiting for approval"),
        },
        "APPROVED" | "REJECTED" => match &n.approval {
            Some(ApprovalNote::Decided {
                choice: Choice::Approve,
                by,
                ..
            }) => format!(
                ":+1: {subject} approved by {} — shifting production traffic",
                person(by)
            ),
            Some(ApprovalNote::Decided { by, .. }) => format!(
                ":leftwards_arrow_with_hook: {subject} rejected by {} — rolling back",
                person(by)
            ),
            _ => format!(":grey_question: {subject} decided"),
        },
        "START" => format!(":rocket: {subject} deploying to {env}"),
        "READY" => format!(":large_blue_circle: {subject} is ready on green — shifting traffic"),
        "SUCCESS" => match n.duration {
            Some(took) => format!(
                ":white_check_mark: {subject} deployed to {env} in {}",
                format_duration(took)
            ),
            None => format!(":white_check_mark: {subject} deployed to {env}"),
        },
        "FAILURE" => format!(":x: {subject} FAILED on {env}{rolled_back}"),
        "STOP" => format!(":black_square_for_stop: {subject} STOPPED on {env}{rolled_back}"),
        other => match &n.version {
            Some(version) => format!(":grey_question: {app} {version} deployment is now {other}"),
            None => format!(
                ":grey_question: {app} deployment {} is now {other}",
                n.deployment_id
            ),
        },
    }
}

/// A deployment that Greenlight did not start: what it deploys and who started it where the
/// engine says, never in a release's words.
fn outside_headline(n: &Notice) -> String {
    let (app, env) = (&n.app, &n.environment);
    let what = n
        .task_definition
        .as_deref()
        .map(|td| td.rsplit('/').next().unwrap_or(td))
        .unwrap_or(n.deployment_id.as_str());
    let by = match &n.started_by {
        Some(StartedBy::Other(creator)) => format!(", started by {creator}"),
        _ => String::new(),
    };
    let subject = format!("{app}: a deployment outside Greenlight ({what}{by})");
    match n.state.as_str() {
        "START" => format!(":information_source: {subject} started on {env}"),
        "READY" => format!(":information_source: {subject} is ready on green"),
        "SUCCESS" => format!(":information_source: {subject} finished on {env}; not a release"),
        "FAILURE" => format!(":x: {subject} FAILED on {env}"),
        "STOP" => format!(":black_square_for_stop: {subject} STOPPED on {env}"),
        other => format!(":grey_question: {subject} is now {other}"),
    }
}

/// The facts, as `(title, value)`, in the order shown.
fn fields(n: &Notice) -> Vec<(&'static str, String)> {
    let mut fields = vec![("App", n.app.clone())];
    fields.push((
        "Environment",
        format!("{} ({}/{})", n.environment, n.scope, n.target),
    ));
    if n.living {
        fields.push(("Engine", n.engine().to_string()));
    }
    if let Some(version) = &n.version {
        fields.push(("Version", version.clone()));
    }
    if let Some(digest) = &n.digest {
        fields.push(("Image digest", short_digest(digest)));
    }
    if let Some(who) = &n.started_by {
        fields.push(("Started by", who.to_string()));
    }
    if let Some(commit) = n.provenance.short_revision() {
        fields.push(("Commit", commit.to_string()));
    }
    if let Some(actor) = &n.provenance.actor {
        fields.push(("Pushed by", actor.clone()));
    }
    if let Some(q) = &n.requested {
        fields.push((
            "Requested by",
            format!("{} ({} with the greenlight command)", q.by, q.kind.as_str()),
        ));
    }
    if let Some(took) = n.duration {
        fields.push(("Duration", format_duration(took)));
    }
    if let Some(arn) = &n.task_definition {
        fields.push(("Task definition", task_definition_name(arn).to_string()));
    }
    if let Some(rollout) = &n.rollout {
        fields.push(("Traffic", rollout.clone()));
    }
    if !n.deployment_id.is_empty() {
        fields.push(("Deployment", n.deployment_id.clone()));
    }
    let error = match (&n.error_code, &n.error_message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(only), None) | (None, Some(only)) => Some(only.clone()),
        (None, None) => None,
    };
    if let Some(error) = error {
        fields.push(("Error", error));
    }
    match (&n.rollback_cause, &n.hook_reason) {
        (Some(cause), _) => fields.push(("Rolled back because", cause.clone())),
        (None, Some(reason)) => fields.push(("Reason", reason.clone())),
        (None, None) => {}
    }
    match &n.rollback {
        Some(Rollback::RolledBack { by, .. }) => {
            fields.push(("Rollback", format!("rolled back by {by}")))
        }
        Some(Rollback::IsRollback {
            of: Some(of),
            undoing,
        }) => fields.push((
            "Rollback",
            match undoing {
                Some(version) => format!("rolls back {of} ({version})"),
                None => format!("rolls back {of}"),
            },
        )),
        Some(Rollback::IsRollback { of: None, .. }) | None => {}
    }
    fields
}

/// "Skipped v2.0.0 in favour of v2.0.1".
fn skipped_line(n: &Notice) -> String {
    format!(
        ":fast_forward: Skipped {} in favour of {}",
        n.superseded.join(", "),
        n.version.as_deref().unwrap_or("this release")
    )
}

/// The commit and the CI run that built the version, as Slack links (their URLs were checked
/// when read: `https://`, nothing Slack's link syntax gives meaning to).
fn provenance_links(p: &Provenance) -> Vec<String> {
    let commit = p
        .commit_url()
        .zip(p.short_revision())
        .map(|(url, short)| format!("<{url}|Commit {short}>"));
    let run = p.run_url.as_ref().map(|url| format!("<{url}|CI run>"));
    commit.into_iter().chain(run).collect()
}

/// The deployment's page in the AWS console, as a Slack link.
pub fn console_link(region: &str, deployment_id: &str) -> String {
    if let Some((cluster, service)) = greenlight_shared::engine::service_of_arn(deployment_id)
        .filter(|_| greenlight_shared::engine::is_service_deployment_arn(deployment_id))
    {
        return format!(
            "<https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/services/{service}/deployments?region={region}|View the deployments of {service} in the AWS console>"
        );
    }
    format!(
        "<https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}?region={region}|View deployment {deployment_id} in the AWS console>"
    )
}

/// A release with no deployment yet (queued, superseded): its service's deployments (native
/// ECS: `scope` is the cluster, `target` the service), or its CodeDeploy deployment group.
fn target_link(region: &str, native: bool, scope: &str, target: &str) -> String {
    if native {
        return format!(
            "<https://{region}.console.aws.amazon.com/ecs/v2/clusters/{scope}/services/{target}/deployments?region={region}|View the deployments of {target} in the AWS console>"
        );
    }
    format!(
        "<https://{region}.console.aws.amazon.com/codesuite/codedeploy/applications/{scope}/deployment-groups/{target}?region={region}|View {scope}/{target} in the AWS console>"
    )
}

/// `4m12s`, `38s`, `1h02m`.
pub fn format_duration(took: Duration) -> String {
    let secs = took.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `family:revision` of a task-definition ARN (the ARN itself if it is not one).
pub fn task_definition_name(arn: &str) -> &str {
    arn.rsplit_once("task-definition/")
        .map(|(_, name)| name)
        .unwrap_or(arn)
}

/// Slack's mrkdwn control characters, escaped as Slack asks.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str) -> String {
    clip_to(text, FIELD_VALUE_MAX_CHARS)
}

/// At most `max` characters, the last an ellipsis when cut.
fn clip_to(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(max - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_shared::request::{RequestKind, Requested};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const TASK_DEFINITION: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8";

    /// A Greenlight release of web1 v1.4.2, everything known.
    fn release(state: &str) -> Notice {
        Notice {
            app: "web1".into(),
            environment: "production".into(),
            scope: "web1".into(),
            target: "web1-bluegreen".into(),
            deployment_id: "d-7GQK2M4XB".into(),
            state: state.into(),
            region: "us-east-1".into(),
            mention_on_failure: Some("<!here>".into()),
            channel: None,
            version: Some("v1.4.2".into()),
            digest: Some(DIGEST.into()),
            started_by: Some(StartedBy::Push),
            duration: matches!(state, "SUCCESS" | "FAILURE" | "STOP")
                .then(|| Duration::from_secs(252)),
            task_definition: Some(TASK_DEFINITION.into()),
            ..Notice::default()
        }
    }

    /// A release of v1.4.3 that CodeDeploy rolled back to v1.4.2.
    fn rolled_back(state: &str) -> Notice {
        Notice {
            version: Some("v1.4.3".into()),
            rollback: Some(Rollback::RolledBack {
                by: "d-ROLLBACK1".into(),
                to: Some("v1.4.2".into()),
            }),
            ..release(state)
        }
    }

    /// The rollback deployment that restores v1.4.2 after v1.4.3 failed.
    fn rollback(state: &str) -> Notice {
        Notice {
            version: Some("v1.4.2".into()),
            started_by: Some(StartedBy::Rollback),
            rollback: Some(Rollback::IsRollback {
                of: Some("d-7GQK2M4XB".into()),
                undoing: Some("v1.4.3".into()),
            }),
            deployment_id: "d-ROLLBACK1".into(),
            ..release(state)
        }
    }

    /// Only what the event and the config say (GetDeployment failed).
    fn event_only(state: &str) -> Notice {
        Notice {
            app: "web1".into(),
            environment: "production".into(),
            scope: "web1".into(),
            target: "web1-bluegreen".into(),
            deployment_id: "d-7GQK2M4XB".into(),
            state: state.into(),
            region: "us-east-1".into(),
            mention_on_failure: Some("<!here>".into()),
            ..Notice::default()
        }
    }

    fn colour(m: &Message) -> &str {
        m.payload["attachments"][0]["color"].as_str().unwrap()
    }

    fn blocks(m: &Message) -> &Vec<Value> {
        m.payload["attachments"][0]["blocks"].as_array().unwrap()
    }

    fn lead(m: &Message) -> &str {
        blocks(m)[0]["text"]["text"].as_str().unwrap()
    }

    /// Every field as `(title, value)`, across all sections.
    fn all_fields(m: &Message) -> Vec<(String, String)> {
        blocks(m)
            .iter()
            .filter_map(|b| b["fields"].as_array())
            .flatten()
            .map(|f| {
                let text = f["text"].as_str().unwrap();
                let (title, value) = text.split_once('\n').unwrap();
                (title.trim_matches('*').to_string(), value.to_string())
            })
            .collect()
    }

    fn field(m: &Message, title: &str) -> Option<String> {
        all_fields(m)
            .into_iter()
            .find(|(t, _)| t == title)
            .map(|(_, v)| v)
    }

    fn titles(m: &Message) -> Vec<String> {
        all_fields(m).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn start_announces_the_version_and_the_environment() {
        let m = build(&release("START"));
        assert_eq!(m.headline, ":rocket: web1 v1.4.2 deploying to production");
        assert_eq!(m.outcome, Outcome::InProgress);
        assert_eq!(colour(&m), "#1D9BD1");
        assert_eq!(
            m.payload["text"],
            json!(":rocket: web1 v1.4.2 deploying to production")
        );
        assert_eq!(field(&m, "Duration"), None);
    }

    fn context(m: &Message) -> Vec<String> {
        blocks(m)
            .iter()
            .filter(|b| b["type"] == "context")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn who_shipped_it_is_shown_with_links_to_the_commit_and_the_run() {
        let m = build(&Notice {
            provenance: Provenance {
                revision: Some("9fceb02d0ae598e95dc970b74767f19372d61af8".into()),
                source: Some("https://github.com/acme/web".into()),
                run_url: Some("https://github.com/acme/web/actions/runs/7/attempts/1".into()),
                actor: Some("octocat".into()),
            },
            ..release("SUCCESS")
        });
        assert_eq!(field(&m, "Commit").as_deref(), Some("9fceb02"));
        assert_eq!(field(&m, "Pushed by").as_deref(), Some("octocat"));
        let links = context(&m);
        assert_eq!(
            links[..2],
            [
                "<https://github.com/acme/web/commit/9fceb02d0ae598e95dc970b74767f19372d61af8|Commit 9fceb02>".to_string(),
                "<https://github.com/acme/web/actions/runs/7/attempts/1|CI run>".to_string(),
            ]
        );
        assert!(links[2].contains("View deployment d-7GQK2M4XB"));
    }

    #[test]
    fn an_image_without_provenance_shows_none() {
        let m = build(&release("SUCCESS"));
        assert_eq!(field(&m, "Commit"), None);
        assert_eq!(field(&m, "Pushed by"), None);
        assert_eq!(context(&m).len(), 1, "only the console link");
    }

    #[test]
    fn ready_says_green_is_up_and_traffic_is_shifting() {
        let m = build(&release("READY"));
        assert_eq!(
            m.headline,
            ":large_blue_circle: web1 v1.4.2 is ready on green — shifting traffic"
        );
        assert_eq!(colour(&m), "#1D9BD1");
    }

    #[test]
    fn success_says_deployed_and_how_long_it_took() {
        let m = build(&release("SUCCESS"));
        assert_eq!(
            m.headline,
            ":white_check_mark: web1 v1.4.2 deployed to production in 4m12s"
        );
        assert_eq!(m.outcome, Outcome::Succeeded);
        assert_eq!(colour(&m), "#2EB67D");
        assert_eq!(field(&m, "Duration").as_deref(), Some("4m12s"));
    }

    #[test]
    fn success_without_a_known_duration_still_reads_deployed() {
        let m = build(&Notice {
            duration: None,
            ..release("SUCCESS")
        });
        assert_eq!(
            m.headline,
            ":white_check_mark: web1 v1.4.2 deployed to production"
        );
    }

    #[test]
    fn success_mentions_nobody() {
        let m = build(&release("SUCCESS"));
        assert!(!lead(&m).contains("<!here>"), "{}", lead(&m));
        assert!(!m.payload["text"].as_str().unwrap().contains("<!here>"));
        let start = build(&release("START"));
        assert!(!lead(&start).contains("<!here>"));
    }

    #[test]
    fn failure_is_red_and_mentions_the_team() {
        let m = build(&Notice {
            version: Some("v1.4.3".into()),
            ..release("FAILURE")
        });
        assert_eq!(m.headline, ":x: web1 v1.4.3 FAILED on production");
        assert_eq!(m.outcome, Outcome::Failed);
        assert_eq!(colour(&m), "#E01E5A");
        assert_eq!(lead(&m), "<!here> :x: web1 v1.4.3 FAILED on production");
        assert_eq!(
            m.payload["text"],
            json!("<!here> :x: web1 v1.4.3 FAILED on production")
        );
    }

    #[test]
    fn failure_that_was_rolled_back_names_the_version_serving_now() {
        let m = build(&rolled_back("FAILURE"));
        assert_eq!(
            m.headline,
            ":x: web1 v1.4.3 FAILED on production — rolled back to v1.4.2"
        );
        assert_eq!(
            field(&m, "Rollback").as_deref(),
            Some("rolled back by d-ROLLBACK1")
        );
        assert_eq!(colour(&m), "#E01E5A");
    }

    #[test]
    fn rolled_back_failure_without_a_known_good_version_says_the_previous_version() {
        let notice = Notice {
            rollback: Some(Rollback::RolledBack {
                by: "d-ROLLBACK1".into(),
                to: None,
            }),
            ..rolled_back("FAILURE")
        };
        assert_eq!(
            build(&notice).headline,
            ":x: web1 v1.4.3 FAILED on production — rolled back to the previous version"
        );
    }

    #[test]
    fn stop_is_amber_and_mentions_the_team() {
        let m = build(&Notice {
            version: Some("v1.4.3".into()),
            ..release("STOP")
        });
        assert_eq!(
            m.headline,
            ":black_square_for_stop: web1 v1.4.3 STOPPED on production"
        );
        assert_eq!(colour(&m), "#ECB22E");
        assert!(lead(&m).starts_with("<!here> "), "{}", lead(&m));
    }

    #[test]
    fn stop_that_was_rolled_back_names_the_version_serving_now() {
        let m = build(&rolled_back("STOP"));
        assert_eq!(
            m.headline,
            ":black_square_for_stop: web1 v1.4.3 STOPPED on production — rolled back to v1.4.2"
        );
        assert_eq!(m.outcome, Outcome::Stopped);
    }

    #[test]
    fn rollback_success_is_never_announced_as_a_success() {
        let m = build(&rollback("SUCCESS"));
        assert_eq!(
            m.headline,
            ":leftwards_arrow_with_hook: web1 rolled back to v1.4.2 on production"
        );
        assert!(!m.headline.contains("deployed"), "{}", m.headline);
        assert!(!m.headline.contains(":white_check_mark:"), "{}", m.headline);
        assert_eq!(m.outcome, Outcome::RolledBack);
        assert_eq!(colour(&m), "#ECB22E");
        assert_eq!(
            lead(&m),
            "<!here> :leftwards_arrow_with_hook: web1 rolled back to v1.4.2 on production"
        );
        assert_eq!(
            field(&m, "Rollback").as_deref(),
            Some("rolls back d-7GQK2M4XB (v1.4.3)")
        );
        assert_eq!(field(&m, "Started by").as_deref(), Some("rollback"));
        assert_eq!(field(&m, "Version").as_deref(), Some("v1.4.2"));
    }

    #[test]
    fn rollback_by_creator_alone_is_still_a_rollback() {
        let notice = Notice {
            rollback: None,
            ..rollback("SUCCESS")
        };
        let m = build(&notice);
        assert_eq!(
            m.headline,
            ":leftwards_arrow_with_hook: web1 rolled back to v1.4.2 on production"
        );
        assert_eq!(field(&m, "Rollback"), None);
    }

    #[test]
    fn rollback_to_an_unknown_version_says_the_previous_version() {
        let m = build(&Notice {
            version: None,
            digest: None,
            ..rollback("SUCCESS")
        });
        assert_eq!(
            m.headline,
            ":leftwards_arrow_with_hook: web1 rolled back to the previous version on production"
        );
    }

    #[test]
    fn rollback_start_ready_failure_and_stop_say_rollback() {
        assert_eq!(
            build(&rollback("START")).headline,
            ":leftwards_arrow_with_hook: web1 rolling back to v1.4.2 on production"
        );
        assert_eq!(
            build(&rollback("READY")).headline,
            ":leftwards_arrow_with_hook: web1 rollback to v1.4.2 is ready on green — shifting traffic"
        );
        let failed = build(&rollback("FAILURE"));
        assert_eq!(
            failed.headline,
            ":x: web1 rollback to v1.4.2 FAILED on production"
        );
        assert_eq!(colour(&failed), "#E01E5A");
        assert_eq!(
            build(&rollback("STOP")).headline,
            ":black_square_for_stop: web1 rollback to v1.4.2 STOPPED on production"
        );
        // A rollback starting is not yet an outcome: the failure that caused it already mentioned.
        assert!(!lead(&build(&rollback("START"))).contains("<!here>"));
    }

    #[test]
    fn unknown_state_is_reported_as_is_in_grey() {
        let m = build(&Notice {
            version: Some("v1.4.3".into()),
            ..release("QUEUED_FOR_MARS")
        });
        assert_eq!(
            m.headline,
            ":grey_question: web1 v1.4.3 deployment is now QUEUED_FOR_MARS"
        );
        assert_eq!(m.outcome, Outcome::Unknown);
        assert_eq!(colour(&m), "#8D8D8D");
        assert!(!lead(&m).contains("<!here>"));
    }

    #[test]
    fn without_enrichment_the_deployment_id_stands_for_the_version() {
        let failed = build(&event_only("FAILURE"));
        assert_eq!(
            failed.headline,
            ":x: web1 deployment d-7GQK2M4XB FAILED on production"
        );
        assert_eq!(
            lead(&failed),
            "<!here> :x: web1 deployment d-7GQK2M4XB FAILED on production"
        );
        assert_eq!(titles(&failed), vec!["App", "Environment", "Deployment"]);
        assert_eq!(
            field(&failed, "Environment").as_deref(),
            Some("production (web1/web1-bluegreen)")
        );
        assert_eq!(
            build(&event_only("START")).headline,
            ":rocket: web1 deployment d-7GQK2M4XB deploying to production"
        );
        assert_eq!(
            build(&event_only("SUCCESS")).headline,
            ":white_check_mark: web1 deployment d-7GQK2M4XB deployed to production"
        );
        assert_eq!(
            build(&event_only("QUEUED_FOR_MARS")).headline,
            ":grey_question: web1 deployment d-7GQK2M4XB is now QUEUED_FOR_MARS"
        );
    }

    #[test]
    fn fields_show_the_release_facts() {
        let m = build(&release("SUCCESS"));
        assert_eq!(
            titles(&m),
            vec![
                "App",
                "Environment",
                "Version",
                "Image digest",
                "Started by",
                "Duration",
                "Task definition",
                "Deployment"
            ]
        );
        assert_eq!(field(&m, "App").as_deref(), Some("web1"));
        assert_eq!(
            field(&m, "Environment").as_deref(),
            Some("production (web1/web1-bluegreen)")
        );
        assert_eq!(field(&m, "Version").as_deref(), Some("v1.4.2"));
        assert_eq!(field(&m, "Started by").as_deref(), Some("push"));
        assert_eq!(field(&m, "Task definition").as_deref(), Some("web1:8"));
        assert_eq!(field(&m, "Deployment").as_deref(), Some("d-7GQK2M4XB"));
    }

    #[test]
    fn image_digest_is_shortened_to_twelve_hex_characters() {
        let m = build(&release("START"));
        assert_eq!(field(&m, "Image digest").as_deref(), Some("0123456789ab"));
        assert_eq!(short_digest(DIGEST), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }

    #[test]
    fn error_information_is_shown_as_code_and_message() {
        let notice = Notice {
            error_code: Some("HEALTH_CONSTRAINTS".into()),
            error_message: Some("The overall deployment failed because too many individual instances failed deployment".into()),
            ..release("FAILURE")
        };
        let m = build(&notice);
        assert_eq!(
            field(&m, "Error").as_deref(),
            Some("HEALTH_CONSTRAINTS: The overall deployment failed because too many individual instances failed deployment")
        );
        let code_only = build(&Notice {
            error_code: Some("TIMEOUT".into()),
            ..release("FAILURE")
        });
        assert_eq!(field(&code_only, "Error").as_deref(), Some("TIMEOUT"));
        assert_eq!(field(&build(&release("FAILURE")), "Error"), None);
    }

    #[test]
    fn health_hook_reason_is_shown_as_the_reason() {
        let notice = Notice {
            hook_reason: Some("green target group: 0 of 2 targets healthy".into()),
            ..rolled_back("FAILURE")
        };
        let m = build(&notice);
        assert_eq!(
            field(&m, "Reason").as_deref(),
            Some("green target group: 0 of 2 targets healthy")
        );
    }

    #[test]
    fn values_are_escaped_for_slack() {
        let notice = Notice {
            error_message: Some("expected <200> & got 503".into()),
            ..release("FAILURE")
        };
        assert_eq!(
            field(&build(&notice), "Error").as_deref(),
            Some("expected &lt;200&gt; &amp; got 503")
        );
    }

    #[test]
    fn long_values_are_clipped_below_slacks_limit() {
        let notice = Notice {
            error_message: Some("x".repeat(5000)),
            ..release("FAILURE")
        };
        let error = field(&build(&notice), "Error").unwrap();
        assert_eq!(error.chars().count(), FIELD_VALUE_MAX_CHARS);
        assert!(error.ends_with('…'));
    }

    #[test]
    fn no_section_carries_more_than_ten_fields() {
        let notice = Notice {
            error_code: Some("HEALTH_CONSTRAINTS".into()),
            error_message: Some("failed".into()),
            hook_reason: Some("unhealthy".into()),
            ..rolled_back("FAILURE")
        };
        let m = build(&notice);
        assert_eq!(all_fields(&m).len(), 11);
        for block in blocks(&m) {
            if let Some(fields) = block["fields"].as_array() {
                assert!(fields.len() <= 10, "{block}");
            }
        }
        assert_eq!(
            field(&m, "Rollback").as_deref(),
            Some("rolled back by d-ROLLBACK1")
        );
    }

    #[test]
    fn superseded_releases_are_listed_once_in_the_newer_release_start() {
        let notice = Notice {
            version: Some("v2.0.1".into()),
            superseded: vec!["v2.0.0".into()],
            ..release("START")
        };
        let m = build(&notice);
        let texts: Vec<&str> = blocks(&m)
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .collect();
        assert_eq!(
            texts,
            vec![
                ":rocket: web1 v2.0.1 deploying to production",
                ":fast_forward: Skipped v2.0.0 in favour of v2.0.1"
            ]
        );
        let two = build(&Notice {
            superseded: vec!["v2.0.0-rc1".into(), "v2.0.0".into()],
            ..notice
        });
        assert!(blocks(&two).iter().any(|b| b["text"]["text"]
            == json!(":fast_forward: Skipped v2.0.0-rc1, v2.0.0 in favour of v2.0.1")));
    }

    #[test]
    fn no_skipped_section_without_superseded_releases() {
        let m = build(&release("START"));
        assert!(!m.payload.to_string().contains("Skipped"));
    }

    #[test]
    fn context_links_to_the_deployment_in_the_console() {
        let m = build(&release("SUCCESS"));
        let context = blocks(&m).last().unwrap();
        assert_eq!(context["type"], json!("context"));
        assert_eq!(
            context["elements"][0]["text"],
            json!("<https://us-east-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-7GQK2M4XB?region=us-east-1|View deployment d-7GQK2M4XB in the AWS console>")
        );
        assert_eq!(
            console_link("eu-west-1", "d-1"),
            "<https://eu-west-1.console.aws.amazon.com/codesuite/codedeploy/deployments/d-1?region=eu-west-1|View deployment d-1 in the AWS console>"
        );
    }

    #[test]
    fn channel_is_set_only_when_configured() {
        assert_eq!(build(&release("START")).payload.get("channel"), None);
        let m = build(&Notice {
            channel: Some("#deploys".into()),
            ..release("START")
        });
        assert_eq!(m.payload["channel"], json!("#deploys"));
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_duration(Duration::from_secs(38)), "38s");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m12s");
        assert_eq!(format_duration(Duration::from_secs(305)), "5m05s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(format_duration(Duration::from_millis(400)), "0s");
    }

    #[test]
    fn task_definition_shows_family_and_revision() {
        assert_eq!(task_definition_name(TASK_DEFINITION), "web1:8");
        assert_eq!(task_definition_name("web1:8"), "web1:8");
    }

    #[test]
    fn started_by_reads_the_creator() {
        assert_eq!(
            StartedBy::classify(Some("user"), true, false),
            Some(StartedBy::Push)
        );
        assert_eq!(
            StartedBy::classify(Some("user"), false, false),
            Some(StartedBy::Manual)
        );
        assert_eq!(
            StartedBy::classify(Some("codeDeployRollback"), true, false),
            Some(StartedBy::Rollback)
        );
        assert_eq!(
            StartedBy::classify(Some("user"), false, true),
            Some(StartedBy::Rollback)
        );
        assert_eq!(
            StartedBy::classify(Some("autoscaling"), false, false),
            Some(StartedBy::Other("autoscaling".into()))
        );
        assert_eq!(StartedBy::classify(None, false, false), None);
        assert_eq!(
            StartedBy::Other("CodeDeploy".into()).to_string(),
            "CodeDeploy"
        );
    }

    fn requested(kind: RequestKind) -> Option<Requested> {
        Some(Requested {
            id: "5f0c9a51-1d7e-4c3b-9a0e-7f3c2b1a0d99".into(),
            by: "arn:aws:sts::123456789012:assumed-role/Operators/alice".into(),
            kind,
        })
    }

    #[test]
    fn an_operators_rollback_says_who_and_is_never_a_success() {
        for state in ["START", "SUCCESS"] {
            let n = Notice {
                requested: requested(RequestKind::Rollback),
                ..release(state)
            };
            let m = build(&n);
            assert_ne!(m.outcome, Outcome::Succeeded);
            assert!(m.headline.ends_with("(by alice)"), "{}", m.headline);
            assert!(m.headline.contains("v1.4.2"), "{}", m.headline);
            assert!(!m.headline.contains("deployed"), "{}", m.headline);
            assert_eq!(
                field(&m, "Requested by").as_deref(),
                Some("arn:aws:sts::123456789012:assumed-role/Operators/alice (rollback with the greenlight command)")
            );
        }
        let m = build(&Notice {
            requested: requested(RequestKind::Rollback),
            ..release("SUCCESS")
        });
        assert_eq!(m.outcome, Outcome::RolledBack);
        assert!(
            m.headline.contains("rolled back to v1.4.2"),
            "{}",
            m.headline
        );
    }

    #[test]
    fn an_operators_deploy_reads_as_a_release_with_who_asked() {
        let m = build(&Notice {
            requested: requested(RequestKind::Deploy),
            ..release("SUCCESS")
        });
        assert_eq!(m.outcome, Outcome::Succeeded);
        assert!(
            m.headline.contains("v1.4.2 deployed to production")
                && m.headline.ends_with("(by alice)"),
            "{}",
            m.headline
        );
    }
}
