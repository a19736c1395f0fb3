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
/// standard chain, so local stand-ins need no code path of their own. Every call is bounded
/// ([`timeouts`]): a hung endpoint costs a retry, never the invocation's deadline.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts())
        .load()
        .await
}

/// Connect within 3 s, an attempt within 5 s, a call with its retries within 12 s: AWS control
/// planes answer in well under a second, and the shortest budget (the hook's, 5 s kept back
/// from its deadline for the report) must survive one hung attempt.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    use std::time::Duration;
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// The roots AWS endpoints chain to (Amazon Trust Services and the Starfield roots that
/// cross-sign them), from the Mozilla CA bundle.
const AWS_TRUST_ROOTS: &[u8] = include_bytes!("amazon-trust-roots.pem");

/// The SDK's HTTP client: hyper with rustls on the `ring` provider (HTTP and HTTPS).
///
/// It trusts only the roots AWS endpoints use: parsing the system's whole CA store (hundreds
/// of certificates) was most of a cold start's time beyond the Lambda runtime itself.
/// `GREENLIGHT_SYSTEM_ROOTS=1` trusts the system store instead (an endpoint behind another CA,
/// such as a TLS-inspecting proxy).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust = match std::env::var_os("GREENLIGHT_SYSTEM_ROOTS") {
        Some(_) => TrustStore::default(),
        None => TrustStore::empty().with_pem_certificate(AWS_TRUST_ROOTS),
    };
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        // Unreachable with the bundled PEM; fall back to the defaults rather than fail.
        Err(_) => builder.build_https(),
    }
}

/// Seconds since the epoch as a UTC time (CodeDeploy API timestamps).
pub(crate) fn to_utc(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_aws_roots_build_a_tls_context() {
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        let pem = String::from_utf8_lossy(AWS_TRUST_ROOTS);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 6);
        let store = TrustStore::empty().with_pem_certificate(AWS_TRUST_ROOTS);
        assert!(TlsContext::builder()
            .with_trust_store(store)
            .build()
            .is_ok());
    }
}
