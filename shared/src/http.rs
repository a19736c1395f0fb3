//! HTTP: the one stack a function has (hyper, rustls on `ring`, the Mozilla roots), for its AWS
//! SDK clients ([`crate::aws::sdk_config`]) and for what is not an AWS API: Slack, the health
//! probes, the Runtime API's init error ([`Http`]). A second client library beside the SDK's
//! cost each function its own hyper client, TLS configuration and root store.

use std::net::IpAddr;
use std::time::Duration;

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::dns::ResolveDns;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

/// A connector: one TLS configuration and one connection pool, HTTP and HTTPS, names resolved
/// by the system. Building one parses the trust store (about a millisecond): a function
/// builds one per cold start and shares it.
pub fn connector(connect_timeout: Duration) -> SharedHttpConnector {
    let builder = aws_smithy_http_client::Connector::builder()
        .connector_settings(settings(connect_timeout))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    SharedHttpConnector::new(match tls_context() {
        Some(context) => builder.tls_context(context).build(),
        None => builder.build(),
    })
}

/// A connector whose names are resolved by `resolver`.
pub fn connector_resolving_with(
    connect_timeout: Duration,
    resolver: impl ResolveDns + Clone + 'static,
) -> SharedHttpConnector {
    let builder = aws_smithy_http_client::Connector::builder()
        .connector_settings(settings(connect_timeout))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    SharedHttpConnector::new(match tls_context() {
        Some(context) => builder.tls_context(context).build_with_resolver(resolver),
        None => builder.build_with_resolver(resolver),
    })
}

fn settings(connect_timeout: Duration) -> HttpConnectorSettings {
    HttpConnectorSettings::builder()
        .connect_timeout(connect_timeout)
        .build()
}

/// The trust store: the Mozilla root program as the `webpki-root-certs` crate keeps it
/// (compiled in, updated with the crate), so every partition's endpoints (commercial, China,
/// GovCloud) and any future AWS root are covered without a file of ours to maintain, and no
/// CA file is read at cold start (parsing the system's store was most of a cold start's time
/// beyond the Lambda runtime itself). `GREENLIGHT_SYSTEM_ROOTS=1` trusts the system store
/// instead (an endpoint behind another CA, such as a TLS-inspecting proxy). `None` (the
/// connector's defaults) is unreachable with well-formed roots.
fn tls_context() -> Option<TlsContext> {
    let trust = match std::env::var_os("GREENLIGHT_SYSTEM_ROOTS") {
        Some(_) => TrustStore::default(),
        None => TrustStore::empty().with_pem_certificate(mozilla_roots_pem()),
    };
    TlsContext::builder().with_trust_store(trust).build().ok()
}

/// The `webpki-root-certs` roots as PEM: the SDK's `TrustStore` takes nothing else (it cannot
/// be handed trust anchors), and encoding them costs far less than reading a CA file.
pub(crate) fn mozilla_roots_pem() -> Vec<u8> {
    let mut pem = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        pem.extend_from_slice(aws_smithy_types::base64::encode(cert.as_ref()).as_bytes());
        pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
    }
    pem
}

/// A resolver that answers one name with the addresses it was given and asks the system for
/// any other (a probe that names a host while connecting to the load balancer).
#[derive(Debug, Clone)]
pub struct PinnedName {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

impl ResolveDns for PinnedName {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDnsError};
        if name.eq_ignore_ascii_case(&self.name) {
            return DnsFuture::ready(Ok(self.addresses.clone()));
        }
        DnsFuture::new(async move {
            tokio::net::lookup_host((name, 0))
                .await
                .map(|found| found.map(|a| a.ip()).collect())
                .map_err(ResolveDnsError::new)
        })
    }
}

/// One HTTP request: its method, URL, headers and body.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET",
            url: url.into(),
            headers: vec![],
            body: vec![],
        }
    }

    /// A POST of `json` (`content-type: application/json`).
    pub fn post_json(url: impl Into<String>, json: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            url: url.into(),
            headers: vec![("content-type", "application/json".into())],
            body: json.to_string().into_bytes(),
        }
    }

    /// A POST of a form (`application/x-www-form-urlencoded`).
    pub fn post_form(url: impl Into<String>, form: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        Self {
            method: "POST",
            url: url.into(),
            headers: vec![("content-type", "application/x-www-form-urlencoded".into())],
            body: body.into_bytes(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
}

/// An answer: its status, its Retry-After (seconds) and its body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_server_error(&self) -> bool {
        (500..600).contains(&self.status)
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The body's first `chars` characters (lossy UTF-8).
    pub fn text(&self, chars: usize) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(chars)
            .collect()
    }
}

/// Why there was no answer. Never names the URL (a Slack webhook's is a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL")]
    BadUrl,
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("connection failed")]
    Connect,
    #[error("{0}")]
    Other(String),
}

/// An HTTP client on a connector of this module: requests without the SDK's signing,
/// retries or endpoint rules, each bounded by its timeout. Redirects are not followed.
#[derive(Debug, Clone)]
pub struct Http(SharedHttpConnector);

/// How long a connection may take to be established, for the requests of [`Http::new`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Http {
    /// A client on a connector of its own (it parses the trust store once).
    pub fn new() -> Self {
        Self(connector(CONNECT_TIMEOUT))
    }

    /// A client on `connector` (shared with the SDK's clients, say).
    pub fn on(connector: SharedHttpConnector) -> Self {
        Self(connector)
    }

    /// Sends `request` and reads the whole answer, all within `timeout`.
    pub async fn send(&self, request: Request, timeout: Duration) -> Result<Response, HttpError> {
        let mut http = HttpRequest::new(SdkBody::from(request.body));
        http.set_uri(request.url.as_str())
            .map_err(|_| HttpError::BadUrl)?;
        http.set_method(request.method)
            .map_err(|e| HttpError::Other(e.to_string()))?;
        for (name, value) in request.headers {
            http.headers_mut()
                .try_insert(name, value)
                .map_err(|_| HttpError::Other(format!("bad {name} header")))?;
        }
        let exchange = async {
            let response = self.0.call(http).await.map_err(|e| {
                if e.is_timeout() {
                    HttpError::Timeout(timeout)
                } else if e.is_io() {
                    HttpError::Connect
                } else {
                    // The connector's message and its causes, never the URL.
                    let message = aws_smithy_types::error::display::DisplayErrorContext(&e)
                        .to_string()
                        .replace(&request.url, "<url>");
                    HttpError::Other(message)
                }
            })?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|_| HttpError::Other("the answer broke off".into()))?
                .to_vec();
            Ok(Response {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(HttpError::Timeout(timeout)))
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
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
