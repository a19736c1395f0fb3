//! Ports (small traits speaking domain types) and their adapters over the AWS SDK.
//!
//! Handlers depend on the traits; the adapters are the only code that builds SDK requests or
//! reads SDK outputs. One exception, on purpose: the task definition travels as the SDK's own
//! `TaskDefinition`, because it has dozens of nested fields that must all survive the rewrite
//! untouched, and a translation of ours could only lose some.

pub mod codedeploy;
pub mod ecs;
pub mod elb;

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration every function builds once per cold start.
///
/// rustls with the `ring` provider (smaller and faster to build than aws-lc); credentials,
/// region and endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) from the
/// standard chain, so local stand-ins need no code path of their own.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// The SDK's HTTP client: hyper with rustls on the `ring` provider (HTTP and HTTPS).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Seconds since the epoch as a UTC time (CodeDeploy API timestamps).
pub(crate) fn to_utc(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}
