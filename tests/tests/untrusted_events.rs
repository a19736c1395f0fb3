//! Property tests over the events all three functions are invoked with: any payload — any JSON,
//! or a sample of `events/` (the corpus seeds) with one value replaced by anything, an
//! oversized string or a secret — is read, or refused with errorType `MalformedEvent` and a
//! short reason that repeats no value of the payload. A short pass runs in `scripts/test`;
//! `PROPTEST_CASES=100000 cargo test -p greenlight-tests --test untrusted_events` is the long
//! one, and a failure it finds is kept as a seed in `untrusted_events.proptest-regressions`.

use proptest::prelude::*;
use serde_json::Value;

const SECRET: &str = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET";

/// Every sample event, as the functions receive them.
const SEEDS: &[&str] = &[
    include_str!("../../events/codedeploy-failure.json"),
    include_str!("../../events/codedeploy-lifecycle-hook.json"),
    include_str!("../../events/codedeploy-ready.json"),
    include_str!("../../events/codedeploy-start.json"),
    include_str!("../../events/codedeploy-stop.json"),
    include_str!("../../events/codedeploy-success.json"),
    include_str!("../../events/ecs-deployment-state-change-completed.json"),
    include_str!("../../events/ecs-deployment-state-change-failed.json"),
    include_str!("../../events/ecs-deployment-state-change-in-progress.json"),
    include_str!("../../events/ecs-lifecycle-hook-post-test-traffic-shift.json"),
    include_str!("../../events/ecr-archive-untagged.json"),
    include_str!("../../events/ecr-delete.json"),
    include_str!("../../events/ecr-push-failed.json"),
    include_str!("../../events/ecr-push-latest.json"),
    include_str!("../../events/ecr-push-version.json"),
    include_str!("../../events/function-url-unsigned.json"),
    include_str!("../../events/operator-rollback-request.json"),
    include_str!("../../events/scheduled-sweep.json"),
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String(SECRET.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("detail".to_string()),
                    Just("state".to_string()),
                    Just("deploymentId".to_string()),
                    Just("DeploymentId".to_string()),
                    Just("LifecycleEventHookExecutionId".to_string()),
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

/// A value to put where a sample had one: anything, a huge string, the secret, or a source
/// of another function.
fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        (1usize..600_000).prop_map(|n| Value::String(format!("{SECRET}{}", "x".repeat(n)))),
        Just(Value::String(SECRET.into())),
        prop::sample::select(vec!["aws.ecr", "aws.codedeploy", "aws.events", ""])
            .prop_map(|s| Value::String(s.into())),
    ]
}

/// Every path to a value of the document (objects by key, arrays by index).
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => vec![],
    };
    for (key, child) in children {
        prefix.push(key);
        paths(child, prefix, out);
        prefix.pop();
    }
}

fn replace_at(doc: &mut Value, path: &[String], with: Value) {
    match path.split_first() {
        None => *doc = with,
        Some((key, rest)) => {
            let child = match doc {
                Value::Object(map) => map.get_mut(key),
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            };
            if let Some(child) = child {
                replace_at(child, rest, with);
            }
        }
    }
}

/// A sample event with one value (possibly the whole document, or a whole object) replaced.
fn mutated_sample() -> impl Strategy<Value = Value> {
    (0..SEEDS.len(), any::<prop::sample::Index>(), replacement()).prop_map(|(seed, at, with)| {
        let mut doc: Value = serde_json::from_str(SEEDS[seed]).expect("sample events are JSON");
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        replace_at(&mut doc, &all[at.index(all.len())], with);
        doc
    })
}

fn any_payload() -> impl Strategy<Value = Value> {
    prop_oneof![any_json(), mutated_sample()]
}

/// A refusal: the function's typed error, a reason short enough for one log line and the
/// Lambda console, and nothing of the payload's secret in it.
fn assert_refusal(error_type: &str, reason: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(error_type, "MalformedEvent", "{}", reason);
    prop_assert!(reason.len() <= 300, "a reason of {} bytes", reason.len());
    prop_assert!(!reason.contains("SECRET"), "{}", reason);
    Ok(())
}

proptest! {
    #[test]
    fn the_approver_reads_any_payload_as_a_request_and_refuses_it_unsigned(payload in any_payload()) {
        let request = greenlight_approver::request_of(&payload);
        let screened = greenlight_approver::signature::screen(
            request.headers.get("x-slack-request-timestamp").map(String::as_str),
            request.headers.get("x-slack-signature").map(String::as_str),
            &request.body,
            chrono::Utc::now().timestamp(),
        );
        // Nothing generated carries Slack's two headers with a fresh timestamp.
        prop_assert!(screened.is_err());
    }

    #[test]
    fn the_deployer_reads_or_refuses_any_payload(payload in any_payload()) {
        if let Err(e) = greenlight_deployer::parse_event(payload) {
            let diagnostic = lambda_runtime::Diagnostic::from(e);
            assert_refusal(&diagnostic.error_type, &diagnostic.error_message)?;
        }
    }

    #[test]
    fn the_health_hook_reads_or_refuses_any_payload(payload in any_payload()) {
        match greenlight_health_hook::parse_event(payload) {
            Ok(event) => {
                // What it goes on with is bounded: an id CodeDeploy could have issued.
                prop_assert!(greenlight_shared::events::is_deployment_id(&event.deployment_id));
                prop_assert!(event.lifecycle_event_hook_execution_id.len() <= 1024);
            }
            Err(e) => {
                let diagnostic = lambda_runtime::Diagnostic::from(e);
                assert_refusal(&diagnostic.error_type, &diagnostic.error_message)?;
            }
        }
    }

    #[test]
    fn the_health_hook_reads_or_refuses_any_ecs_payload(payload in any_payload()) {
        match greenlight_health_hook::parse_ecs_event(payload) {
            Ok(event) => {
                // What it goes on with is bounded and has the shape of what ECS sends.
                prop_assert!(event.problem().is_none());
                prop_assert!(event.resource_arn.len() <= 1024);
            }
            Err(e) => {
                let diagnostic = lambda_runtime::Diagnostic::from(e);
                assert_refusal(&diagnostic.error_type, &diagnostic.error_message)?;
            }
        }
    }

    #[test]
    fn the_notifier_reads_or_refuses_any_payload(payload in any_payload()) {
        if let Err(e) = greenlight_notifier::parse_event(payload) {
            let diagnostic = lambda_runtime::Diagnostic::from(e);
            assert_refusal(&diagnostic.error_type, &diagnostic.error_message)?;
        }
    }
}

#[test]
fn every_seed_is_read_by_the_function_it_is_for() {
    let samples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../events"))
        .unwrap()
        .count();
    assert_eq!(SEEDS.len(), samples, "every sample of events/ is a seed");
    for seed in SEEDS {
        let event: Value = serde_json::from_str(seed).unwrap();
        if event.get("requestContext").is_some() {
            // The approval endpoint's: an HTTP request, refused unless Slack signed it.
            let request = greenlight_approver::request_of(&event);
            assert!(!request.body.is_empty() && request.headers.contains_key("content-type"));
            assert!(greenlight_approver::signature::screen(
                request
                    .headers
                    .get("x-slack-request-timestamp")
                    .map(String::as_str),
                request.headers.get("x-slack-signature").map(String::as_str),
                &request.body,
                chrono::Utc::now().timestamp(),
            )
            .is_err());
        } else if event.get("LifecycleEventHookExecutionId").is_some() {
            assert!(greenlight_health_hook::parse_event(event).is_ok());
        } else if greenlight_shared::ecs_hook::is_ecs_hook_event(&event) {
            assert!(greenlight_health_hook::parse_ecs_event(event).is_ok());
        } else {
            assert!(
                greenlight_deployer::parse_event(event.clone()).is_ok(),
                "{seed}"
            );
            if event["source"] == "aws.codedeploy" || event["source"] == "aws.ecs" {
                assert!(greenlight_notifier::parse_event(event).is_ok());
            }
        }
    }
}
