//! The HTTP probe of the green task set.

use std::time::Duration;

use async_trait::async_trait;

#[async_trait]
pub trait Prober: Send + Sync {
    /// One GET of `url`; with `host`, the request names that host (Host header, TLS server
    /// name and certificate check) while connecting to the address `url` names. The status
    /// code, or why there was none (refused, timed out, ...).
    async fn get(&self, url: &str, host: Option<&str>, timeout: Duration) -> Result<u16, String>;
}

/// Probes over HTTP with reqwest (rustls). Redirects are not followed: a health endpoint
/// that redirects is answering something else.
#[derive(Debug, Clone)]
pub struct HttpProber(pub reqwest::Client);

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .user_agent("greenlight-health-hook")
}

impl HttpProber {
    pub fn new() -> Self {
        Self(client_builder().build().unwrap_or_default())
    }
}

impl Default for HttpProber {
    fn default() -> Self {
        Self::new()
    }
}

/// `url` rewritten to name `host`, and a client that connects `host` to the addresses of
/// `url`'s own host (the load balancer).
async fn addressed_to(url: &str, host: &str) -> Result<(reqwest::Client, reqwest::Url), String> {
    let mut target = reqwest::Url::parse(url).map_err(|e| format!("bad probe URL: {e}"))?;
    let listener = target.host_str().unwrap_or_default().to_string();
    let port = target.port_or_known_default().unwrap_or(80);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((listener.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {listener}: {e}"))?
        .collect();
    target
        .set_host(Some(host))
        .map_err(|e| format!("bad probe host: {e}"))?;
    let client = client_builder()
        .resolve_to_addrs(host, &addrs)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((client, target))
}

#[async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str, host: Option<&str>, timeout: Duration) -> Result<u16, String> {
        let (client, target) = match host {
            Some(host) => addressed_to(url, host).await?,
            None => (
                self.0.clone(),
                reqwest::Url::parse(url).map_err(|e| format!("bad probe URL: {e}"))?,
            ),
        };
        match client.get(target).timeout(timeout).send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", timeout.as_millis())),
            Err(e) if e.is_connect() => Err("connection failed".to_string()),
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}
