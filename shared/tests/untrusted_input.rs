//! Property tests over untrusted input (a short pass in `scripts/test`; `PROPTEST_CASES=100000
//! cargo test -p greenlight-shared --test untrusted_input` for the long one; failures found are
//! kept as seeds in `proptest-regressions/`): the config parser never panics and never repeats
//! a value it was given, whatever key or type the value sits under; the tag rule and the push
//! classification take any text without a panic; reasons stay short.

use greenlight_shared::config::Config;
use greenlight_shared::events::{classify_push, EcrImageAction, EcrImageEvent, Location};
use greenlight_shared::tag_rule::{TagRule, DEFAULT_TAG_PATTERN};
use proptest::prelude::*;

const SECRET: &str = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET";

/// A key path of the config: real sections and keys, misspelt ones, and anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "slack.webhook",
            "slack.webhook_url",
            "slack.mention_on_failure",
            "slack.channel",
            "defaults.tag_pattern",
            "defaults.hooks",
            "defaults.health.url",
            "defaults.health.host",
            "apps.web1.repository",
            "apps.web1.health.successes",
            "apps.web1.slack.webhook",
            "apps.web1.health.timeout_ms",
            "ledger.table",
            "ledger.secret",
            "apps.web1.deployment_grop",
        ])
        .prop_map(String::from),
        "[a-z_]{1,10}(\\.[a-z_]{1,10}){0,2}",
    ]
}

/// The secret as a TOML value of some type.
fn secret_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        format!("'{SECRET}'"),
        format!("\"{SECRET}\""),
        format!("['{SECRET}']"),
        format!("{{ url = '{SECRET}' }}"),
        format!("'''{SECRET}'''"),
        format!("'{SECRET}"),
        SECRET.to_string(),
    ])
}

fn release_event(repository: String, tag: String, digest: String, action: String) -> EcrImageEvent {
    serde_json::from_value(serde_json::json!({
        "version": "0", "id": "e", "detail-type": "ECR Image Action", "source": "aws.ecr",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": [],
        "detail": EcrImageAction {
            result: Some("SUCCESS".into()),
            repository_name: Some(repository),
            action_type: Some(action),
            image_digest: Some(digest),
            image_tag: Some(tag),
        },
    }))
    .unwrap()
}

proptest! {
    #[test]
    fn a_value_under_any_key_never_reaches_a_config_error(
        prefix in ".{0,40}",
        key in key(),
        value in secret_value(),
        suffix in ".{0,40}",
    ) {
        let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
        let document = format!("{prefix}\n[{section}]\n{leaf} = {value}\n{suffix}");
        if let Err(e) = Config::parse(&document) {
            for shown in [e.to_string(), format!("{e:?}")] {
                prop_assert!(!shown.contains("SECRET"), "{}", shown);
                prop_assert!(!shown.contains("hooks.slack.com"), "{}", shown);
                prop_assert!(shown.len() < 600, "{} bytes", shown.len());
            }
        }
    }

    #[test]
    fn any_text_is_a_config_or_a_short_error(text in ".{0,400}") {
        if let Err(e) = Config::parse(&text) {
            prop_assert!(e.to_string().len() < 600);
        }
    }

    #[test]
    fn the_default_tag_rule_takes_any_tag(tag in ".{0,200}") {
        let rule = TagRule::new(DEFAULT_TAG_PATTERN).unwrap();
        let release = rule.is_release(&tag);
        let expected = tag.len() > 1
            && tag.starts_with('v')
            && tag[1..].chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        prop_assert_eq!(release, expected, "{}", tag);
    }

    #[test]
    fn any_push_is_classified_without_a_panic(
        repository in prop_oneof![Just("web1".to_string()), ".{0,80}"],
        tag in prop_oneof![Just("v1.4.2".to_string()), Just("latest".to_string()), ".{0,80}"],
        digest in prop_oneof![Just(format!("sha256:{}", "a".repeat(64))), ".{0,80}"],
        action in prop_oneof![Just("PUSH".to_string()), ".{0,10}"],
    ) {
        let config = Config::parse(
            "[apps.web1]\nrepository = 'web1'\napplication = 'web1'\ndeployment_group = 'g'\n",
        )
        .unwrap();
        let here = Location { account: "123456789012".into(), region: "us-east-1".into() };
        let event = release_event(repository, tag, digest.clone(), action);
        if let Ok((push, _)) = classify_push(&event, &config, &here) {
            prop_assert_eq!(push.digest, digest);
            prop_assert!(push.image.starts_with("123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@"));
        }
    }
}
