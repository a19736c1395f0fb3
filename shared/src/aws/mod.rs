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
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// The SDK's HTTP client: hyper with rustls on the `ring` provider (HTTP and HTTPS), one
/// connector (one TLS configuration, one connection pool) shared by every client built from
/// the SDK configuration.
///
/// The SDK's own client builds a connector per client to validate it, and another at each
/// client's first call, each parsing the whole trust store again: six clients cost a cold
/// start seven parses. Handing the clients one connector built here makes that one.
/// The connector enforces the connect timeout of [`timeouts`] itself (the SDK passes its
/// settings only to connectors it builds); attempt and operation timeouts are the SDK's.
///
/// It trusts the Mozilla root program as the `webpki-root-certs` crate keeps it (compiled in,
/// updated with the crate), so every partition's endpoints (commercial, China, GovCloud) and
/// any future AWS root are covered without a file of ours to maintain, and no CA file is read
/// at cold start (parsing the system's store was most of a cold start's time beyond the Lambda
/// runtime itself). `GREENLIGHT_SYSTEM_ROOTS=1` trusts the system store instead (an endpoint
/// behind another CA, such as a TLS-inspecting proxy).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpConnector};
    let connector = SharedHttpConnector::new(connector());
    http_client_fn(move |_, _| connector.clone())
}

/// Within how long a connection must be established.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn connector() -> aws_smithy_http_client::Connector {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    use aws_smithy_runtime_api::client::http::HttpConnectorSettings;
    let trust = match std::env::var_os("GREENLIGHT_SYSTEM_ROOTS") {
        Some(_) => TrustStore::default(),
        None => TrustStore::empty().with_pem_certificate(mozilla_roots_pem()),
    };
    let builder = aws_smithy_http_client::Connector::builder()
        .connector_settings(
            HttpConnectorSettings::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => builder.tls_context(context).build(),
        // Unreachable with well-formed roots; fall back to the defaults rather than fail.
        Err(_) => builder.build(),
    }
}

/// The `webpki-root-certs` roots as PEM: the SDK's `TrustStore` takes nothing else (it cannot
/// be handed trust anchors), and encoding them costs far less than reading a CA file.
fn mozilla_roots_pem() -> Vec<u8> {
    let mut pem = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        pem.extend_from_slice(aws_smithy_types::base64::encode(cert.as_ref()).as_bytes());
        pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
    }
    pem
}

/// Seconds since the epoch as a UTC time (CodeDeploy API timestamps).
pub(crate) fn to_utc(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mozilla_roots_build_a_tls_context_that_trusts_every_partitions_roots() {
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        let pem = mozilla_roots_pem();
        let text = String::from_utf8_lossy(&pem);
        assert_eq!(
            text.matches("-----BEGIN CERTIFICATE-----").count(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
        // The SDK parses the store with these two and panics on a certificate they refuse:
        // every root must come back out of the PEM and be accepted as a trust anchor.
        use rustls_pki_types::pem::PemObject;
        let decoded: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        let originals: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| c.as_ref())
            .collect();
        assert_eq!(
            decoded.iter().map(|c| c.as_ref()).collect::<Vec<_>>(),
            originals
        );
        let mut roots = rustls::RootCertStore::empty();
        for cert in decoded {
            roots.add(cert).expect("a root rustls accepts");
        }
        assert_eq!(roots.len(), originals.len());
        // Amazon Root CA 1 (commercial and GovCloud endpoints) and Starfield Services Root
        // Certificate Authority - G2 (its cross-signer) are among them, by subject.
        for subject in [
            "Amazon Root CA 1",
            "Starfield Services Root Certificate Authority - G2",
        ] {
            assert!(
                originals
                    .iter()
                    .any(|der| der.windows(subject.len()).any(|w| w == subject.as_bytes())),
                "{subject} missing"
            );
        }
        let store = TrustStore::empty().with_pem_certificate(pem);
        assert!(TlsContext::builder()
            .with_trust_store(store)
            .build()
            .is_ok());
    }
}
