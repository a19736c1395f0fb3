//! Property tests over untrusted input: state-change events of any shape are read without a
//! panic, and a message built from fields of any size and content stays within Slack's
//! documented limits (at most 50 blocks; section text at most 3,000 characters; at most 10
//! fields per section, each at most 2,000 characters). `PROPTEST_CASES=100000 cargo test -p
//! greenlight-notifier --test untrusted_input` runs the long pass.

use greenlight_notifier::message::{build, Notice, Rollback, StartedBy};
use greenlight_notifier::parse_event;
use proptest::prelude::*;
use serde_json::Value;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("detail".to_string()),
                    Just("state".to_string()),
                    Just("deploymentId".to_string()),
                    Just("application".to_string()),
                    Just("detail-type".to_string()),
                    Just("source".to_string()),
                    Just("time".to_string()),
                    ".{0,12}".prop_map(String::from),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

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
                    application: "web1".into(),
                    deployment_group: group,
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
    fn any_event_is_read_or_refused_without_a_panic_and_with_a_short_reason(event in any_json()) {
        if let Err(e) = parse_event(event) {
            prop_assert!(e.to_string().len() < 400, "{}", e);
        }
    }

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
