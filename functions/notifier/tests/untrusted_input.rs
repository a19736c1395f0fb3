//! Property tests over untrusted input (the events themselves: `tests/tests/untrusted_events.rs`):
//! a message built from fields of any size and content stays within Slack's
//! documented limits (at most 50 blocks; section text at most 3,000 characters; at most 10
//! fields per section, each at most 2,000 characters). `PROPTEST_CASES=100000 cargo test -p
//! greenlight-notifier --test untrusted_input` runs the long pass.

use greenlight_notifier::message::{build, Notice, Rollback, StartedBy};
use proptest::prelude::*;
use serde_json::Value;

/// Text of any size, including markup Slack gives meaning to.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,60}",
        "[<>&*_~`|@!]{0,40}",
        (0usize..3_000).prop_map(|n| "é<".repeat(n)),
    ]
}

fn notice() -> impl Strategy<Value = Notice> {
    (
        (text(), text(), text(), text()),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        (
            prop::collection::vec(text(), 0..300),
            prop::sample::select(vec!["START", "READY", "SUCCESS", "FAILURE", "STOP", "X"]),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (app, env, group, id),
                (version, error, reason, mention),
                (superseded, state, rollback, unknown),
            )| {
                Notice {
                    app,
                    environment: env,
                    scope: "web1".into(),
                    target: group,
                    deployment_id: id,
                    state: state.into(),
                    region: "us-east-1".into(),
                    mention_on_failure: mention,
                    version: None,
                    error_message: error,
                    hook_reason: reason,
                    started_by: rollback.then_some(StartedBy::Rollback),
                    rollback: rollback.then(|| Rollback::IsRollback {
                        of: Some("d-7GQK2M4XB".into()),
                        undoing: version,
                    }),
                    superseded,
                    details_unavailable: unknown,
                    ..Notice::default()
                }
            },
        )
}

fn section_texts(payload: &Value) -> Vec<(usize, Vec<usize>)> {
    let blocks = payload["attachments"][0]["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    blocks
        .iter()
        .map(|b| {
            let text = b["text"]["text"]
                .as_str()
                .map(|t| t.chars().count())
                .unwrap_or(0);
            let fields = b["fields"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|x| x["text"].as_str().unwrap_or_default().chars().count())
                        .collect()
                })
                .unwrap_or_default();
            (text, fields)
        })
        .collect()
}

proptest! {
    #[test]
    fn any_notice_becomes_a_message_within_slack_limits(notice in notice()) {
        let message = build(&notice);
        let blocks = message.payload["attachments"][0]["blocks"].as_array().map(Vec::len).unwrap_or(0);
        prop_assert!(blocks <= 50, "{} blocks", blocks);
        for (text, fields) in section_texts(&message.payload) {
            prop_assert!(text <= 3000, "section text of {} characters", text);
            prop_assert!(fields.len() <= 10, "{} fields", fields.len());
            for f in fields {
                prop_assert!(f <= 2000, "field of {} characters", f);
            }
        }
        prop_assert!(message.payload["text"].as_str().unwrap_or_default().chars().count() <= 3000);
        if notice.is_rollback() || notice.details_unavailable {
            prop_assert!(!message.headline.contains(":white_check_mark:"), "{}", message.headline);
        }
    }
}
