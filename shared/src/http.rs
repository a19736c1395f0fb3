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
/// by the system, or with `pinned` one name answered by the addresses it holds. Building one
/// parses the trust store (about a millisecond): a function builds one per cold start and
/// shares it.
pub fn connector(connect_timeout: Duration, pinned: Option<PinnedName>) -> SharedHttpConnector {
    let builder = aws_smithy_http_client::Connector::builder()
        .connector_settings(settings(connect_timeout))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context().unwrap_or_default());
    SharedHttpConnector::new(match pinned {
        Some(resolver) => builder.build_with_resolver(resolver),
        None => builder.build(),
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
/// instead (an endpoint behind another CA, such as a TLS-inspecting proxy). `None` (then the
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
    /// Whether the answer's body is read (not for a probe, which needs only the status).
    read_body: bool,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET",
            url: url.into(),
            headers: vec![],
            body: vec![],
            read_body: true,
        }
    }

    /// A POST of `json` (`content-type: application/json`).
    pub fn post_json(url: impl Into<String>, json: &serde_json::Value) -> Self {
        Self {
            method: "POST",
            url: url.into(),
            headers: vec![("content-type", "application/json".into())],
            body: json.to_string().into_bytes(),
            read_body: true,
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
            read_body: true,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Only the status and headers are awaited; the body is left unread (and the connection
    /// with it): a health page that streams slowly does not hold a probe past its answer.
    pub fn status_only(mut self) -> Self {
        self.read_body = false;
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

/// The most of an answer's body that is read.
const MAX_BODY: usize = 256 * 1024;

/// How long a connection may take to be established, for the requests of [`Http::new`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Http {
    /// A client on a connector of its own (it parses the trust store once).
    pub fn new() -> Self {
        Self(connector(CONNECT_TIMEOUT, None))
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
            // At most MAX_BODY of it: an answer is read for its status and a short JSON document;
            // a bigger one (a health page, a misdirected request) is cut, not held in memory.
            let mut stream = ByteStream::new(response.into_body());
            let mut body = Vec::new();
            while request.read_body && body.len() < MAX_BODY {
                match stream.try_next().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(_) => return Err(HttpError::Other("the answer broke off".into())),
                }
            }
            body.truncate(MAX_BODY);
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection HTTP server on loopback: answers `answer` (a whole HTTP response) and
    /// hands back the request it read.
    async fn serve_once(answer: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(&answer).await.unwrap();
            let _ = socket.shutdown().await;
            String::from_utf8_lossy(&request).to_string()
        });
        (url, server)
    }

    #[tokio::test]
    async fn a_post_carries_its_body_and_headers_and_its_answer_comes_back_whole() {
        let body = r#"{"ok":true,"ts":"1.2"}"#;
        let (url, server) = serve_once(
            format!("HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes(),
        )
        .await;
        let request = Request::post_json(
            format!("{url}/api/chat.update"),
            &serde_json::json!({"text": "hi"}),
        )
        .bearer("xoxb-token");
        let answer = Http::new()
            .send(request, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(answer.status, 429);
        assert_eq!(answer.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(answer.json()["ts"], "1.2");
        assert!(!answer.is_success() && !answer.is_server_error());
        let seen = server.await.unwrap();
        assert!(
            seen.starts_with("POST /api/chat.update HTTP/1.1\r\n"),
            "{seen}"
        );
        let lower = seen.to_ascii_lowercase();
        assert!(
            lower.contains("authorization: bearer xoxb-token\r\n"),
            "{seen}"
        );
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{seen}"
        );
        assert!(seen.ends_with(r#"{"text":"hi"}"#), "{seen}");
    }

    #[tokio::test]
    async fn a_form_is_encoded_and_an_oversized_answer_is_cut() {
        let big = "x".repeat(MAX_BODY + 10_000);
        let (url, server) = serve_once(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{big}",
                big.len()
            )
            .into_bytes(),
        )
        .await;
        let request = Request::post_form(
            format!("{url}/api/conversations.replies"),
            &[("channel", "C1"), ("ts", "1.2 3&")],
        );
        let answer = Http::new()
            .send(request, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(answer.is_success());
        assert_eq!(answer.body.len(), MAX_BODY);
        let seen = server.await.unwrap();
        assert!(seen.ends_with("channel=C1&ts=1.2+3%26"), "{seen}");
    }

    #[tokio::test]
    async fn a_status_only_request_does_not_wait_for_a_slow_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        // Each connection: the status line and headers at once, the body never finished.
        let _server = tokio::spawn(async move {
            let mut held = vec![];
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
                    .await
                    .unwrap();
                held.push(socket);
            }
        });
        let http = Http::new();
        let timeout = Duration::from_millis(400);
        let answer = http
            .send(Request::get(&url).status_only(), timeout)
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.body.is_empty());
        assert_eq!(
            http.send(Request::get(&url), timeout).await.unwrap_err(),
            HttpError::Timeout(timeout)
        );
    }

    #[tokio::test]
    async fn no_answer_is_a_timeout_and_a_refused_connection_a_connect_error_neither_naming_the_url(
    ) {
        // Accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = format!(
            "http://{}/services/T0/B0/secret-path",
            listener.local_addr().unwrap()
        );
        let _held = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let http = Http::new();
        let error = http
            .send(Request::get(silent.clone()), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(error, HttpError::Timeout(Duration::from_millis(300)));
        assert_eq!(error.to_string(), "no answer within 300 ms");

        // Nothing listens on a port just released.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!(
                "http://{}/services/T0/B0/secret-path",
                l.local_addr().unwrap()
            )
        };
        let error = http
            .send(Request::get(closed), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error, HttpError::Connect);
        assert!(!error.to_string().contains("secret-path"));
        assert_eq!(
            http.send(Request::get("not a url"), Duration::from_secs(1))
                .await
                .unwrap_err(),
            HttpError::BadUrl
        );
    }

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
