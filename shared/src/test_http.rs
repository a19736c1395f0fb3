//! Test support: SDK clients whose HTTP layer is a fake that answers canned bodies in order
//! and records each request body, so tests see exactly what the SDK put on the wire.

use std::sync::{Arc, Mutex};

use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;

#[derive(Clone, Default)]
pub struct RecordedRequests(Arc<Mutex<Vec<(String, String)>>>);

impl RecordedRequests {
    pub fn bodies(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn fake_http(
    answers: Vec<String>,
) -> (
    aws_smithy_runtime_api::client::http::SharedHttpClient,
    RecordedRequests,
) {
    let recorded = RecordedRequests::default();
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let log = recorded.clone();
    let client = infallible_client_fn(move |req: http::Request<SdkBody>| {
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = String::from_utf8_lossy(req.body().bytes().unwrap_or_default()).to_string();
        log.0.lock().unwrap().push((target, body));
        let answer = answers
            .lock()
            .unwrap()
            .next()
            .unwrap_or_else(|| "{}".to_string());
        http::Response::builder().status(200).body(answer).unwrap()
    });
    (client, recorded)
}

pub fn ecs_client_answering(answers: Vec<String>) -> (aws_sdk_ecs::Client, RecordedRequests) {
    let (http, recorded) = fake_http(answers);
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
        .region(aws_sdk_ecs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ecs::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .http_client(http)
        .build();
    (aws_sdk_ecs::Client::from_conf(config), recorded)
}

/// An SDK client whose operations are answered by aws-smithy-mocks rules (the first that matches the operation), with the
/// standard retry policy (3 attempts, 1 ms backoff) so retries are exercised quickly.
#[macro_export]
macro_rules! mocked {
    ($krate:ident, $($rule:expr),+ $(,)?) => {{
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(aws_smithy_mocks::RuleMode::MatchAny);
        $( interceptor = interceptor.with_rule($rule); )+
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version($krate::config::BehaviorVersion::latest())
                .region($krate::config::Region::new("us-east-1"))
                .credentials_provider($krate::config::Credentials::new("AKIDTEST", "secret", None, None, "test"))
                .retry_config(
                    $krate::config::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(std::time::Duration::from_millis(1)),
                )
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}
