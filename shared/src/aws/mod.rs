//! Ports (small traits speaking domain types) and their adapters over the AWS SDK.
//!
//! Handlers depend on the traits; the adapters are the only code that builds SDK requests or
//! reads SDK outputs. One exception, on purpose: the task definition travels as the SDK's own
//! `TaskDefinition`, because it has dozens of nested fields that must all survive the rewrite
//! untouched, and a translation of ours could only lose some.

pub mod codedeploy;
pub mod ecr;
pub mod ecs;
pub mod elb;

use aws_types::SdkConfig;

/// The SDK configuration every function builds once per cold start, from its environment.
///
/// Lambda puts all of it there: the region (`AWS_REGION`) and the execution role's
/// credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, valid for
/// the execution environment's life), so the functions do not link aws-config's provider
/// chain (profile files, SSO, web identity through STS, IMDS, container credentials), which
/// weighed about a megabyte of each bootstrap and resolved a dozen settings at every cold
/// start. Endpoint overrides are read as the SDK documents them (`AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`), so local stand-ins
/// need no code path of their own; `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`
/// too. The HTTP client is [`crate::http`]'s (rustls on `ring`); standard
/// retries (3 attempts), and every call bounded ([`timeouts`]): a hung endpoint costs a retry,
/// never the invocation's deadline. The `greenlight` command, run by people with profiles and
/// SSO, keeps aws-config's chain.
pub fn sdk_config(
    connector: aws_smithy_runtime_api::client::http::SharedHttpConnector,
) -> SdkConfig {
    use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
    let region = env_value("AWS_REGION").or_else(|| env_value("AWS_DEFAULT_REGION"));
    let mut builder = SdkConfig::builder()
        .behavior_version(
            aws_smithy_runtime_api::client::behavior_version::BehaviorVersion::latest(),
        )
        .region(region.map(aws_types::region::Region::new))
        .use_fips(env_flag("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(env_flag("AWS_USE_DUALSTACK_ENDPOINT"))
        .http_client(http_client_on(connector))
        .timeout_config(timeouts())
        .retry_config(aws_smithy_types::retry::RetryConfig::standard())
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .service_config(EnvEndpoints);
    // Always set in Lambda. Without them no provider is set, and each AWS call fails naming
    // the missing credentials where that failure is logged, rather than a line at every start.
    if let (Some(id), Some(secret)) = (
        env_value("AWS_ACCESS_KEY_ID"),
        env_value("AWS_SECRET_ACCESS_KEY"),
    ) {
        let credentials = Credentials::new(
            id,
            secret,
            env_value("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    builder.build()
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A setting the SDK documents as `true` or `false` (any case); unset is false.
fn env_flag(name: &str) -> bool {
    env_value(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The endpoint overrides of the environment, as the SDK documents them: a service's own
/// (`AWS_ENDPOINT_URL_ECS`: its service id upper-cased, spaces as underscores) before the
/// global one (`AWS_ENDPOINT_URL`); none with `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.
#[derive(Debug)]
struct EnvEndpoints;

impl aws_types::service_config::LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() == "AWS_ENDPOINT_URL" && env_flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
            return None;
        }
        let service = key.service_id().to_uppercase().replace(' ', "_");
        env_value(&format!("{}_{service}", key.env())).or_else(|| env_value(key.env()))
    }
}

/// Connect within 3 s, an attempt within 5 s, a call with its retries within 12 s: AWS control
/// planes answer in well under a second, and the shortest budget (the hook's, 5 s kept back
/// from its deadline for the report) must survive one hung attempt.
pub fn timeouts() -> aws_smithy_types::timeout::TimeoutConfig {
    use std::time::Duration;
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// The SDK's HTTP client, for the `greenlight` command: one connector of [`crate::http`].
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    http_client_on(crate::http::connector(CONNECT_TIMEOUT, None))
}

/// Every SDK client built from the configuration shares `connector`: one TLS configuration
/// and one connection pool. The SDK's own HTTP client builds a connector per client to
/// validate it and another at each client's first call, each parsing the whole trust store
/// again: six clients cost a cold start seven parses. The connector enforces the connect
/// timeout of [`timeouts`] itself (the SDK passes its settings only to connectors it builds);
/// attempt and operation timeouts are the SDK's.
fn http_client_on(
    connector: aws_smithy_runtime_api::client::http::SharedHttpConnector,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_runtime_api::client::http::http_client_fn(move |_, _| connector.clone())
}

/// Within how long a connection to AWS must be established.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Seconds since the epoch as a UTC time (CodeDeploy API timestamps).
pub(crate) fn to_utc(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
