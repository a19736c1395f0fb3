//! The HTTP probe of the green task set.

use std::time::Duration;

use async_trait::async_trait;
use greenlight_shared::http::{connector, Http, HttpError, PinnedName, Request};

#[async_trait]
pub trait Prober: Send + Sync {
    /// One GET of `url`; with `host`, the request names that host (Host header, TLS server
    /// name and certificate check) while connecting to the address `url` names. The status
    /// code, or why there was none (refused, timed out, ...).
    async fn get(&self, url: &str, host: Option<&str>, timeout: Duration) -> Result<u16, String>;
}

/// Probes over HTTP on the function's HTTP stack ([`Http`]: rustls, the Mozilla roots).
/// Redirects are not followed: a health endpoint that redirects is answering something else.
/// A probe that names a host connects through a connector that pins that name to the load
/// balancer's addresses, kept while the host and the addresses stay the same (its pool and
/// TLS configuration with it).
#[derive(Debug, Default)]
pub struct HttpProber {
    plain: std::sync::OnceLock<Http>,
    pinned: std::sync::Mutex<Option<(PinnedName, Http)>>,
}

/// Within how long a probe's connection must be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl HttpProber {
    pub fn new() -> Self {
        Self::default()
    }

    /// The client for probes that name no host (built at the first one).
    fn plain(&self) -> Http {
        self.plain
            .get_or_init(|| Http::on(connector(CONNECT_TIMEOUT, None)))
            .clone()
    }

    /// The client that connects `host` to the addresses of `url`'s own host (the load
    /// balancer), and `url` rewritten to name `host`.
    async fn addressed_to(&self, url: &str, host: &str) -> Result<(Http, String), String> {
        let bad = |e: &dyn std::fmt::Display| format!("bad probe URL: {e}");
        let uri: http::Uri = url.parse().map_err(|e| bad(&e))?;
        let (Some(scheme), Some(listener)) = (uri.scheme_str(), uri.host()) else {
            return Err(bad(&"no scheme or host"));
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let listener = listener.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<std::net::IpAddr> = tokio::net::lookup_host((listener, port))
            .await
            .map_err(|e| format!("cannot resolve {listener}: {e}"))?
            .map(|a| a.ip())
            .collect();
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let target = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
            .build()
            .map_err(|e| format!("bad probe host: {e}"))?;
        let target = target.to_string();
        let pin = PinnedName {
            name: host.to_string(),
            addresses,
        };
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let http = match pinned.as_ref() {
            Some((kept, http)) if kept.name == pin.name && kept.addresses == pin.addresses => {
                http.clone()
            }
            _ => {
                let http = Http::on(connector(CONNECT_TIMEOUT, Some(pin.clone())));
                *pinned = Some((pin, http.clone()));
                http
            }
        };
        Ok((http, target))
    }
}

#[async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str, host: Option<&str>, timeout: Duration) -> Result<u16, String> {
        let (http, target) = match host {
            Some(host) => self.addressed_to(url, host).await?,
            None => (self.plain(), url.to_string()),
        };
        let request = Request::get(target)
            .header("user-agent", "greenlight-health-hook")
            .status_only();
        match http.send(request, timeout).await {
            Ok(resp) => Ok(resp.status),
            Err(HttpError::BadUrl) => Err("bad probe URL".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
