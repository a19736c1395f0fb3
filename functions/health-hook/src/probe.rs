//! The HTTP probe of the green task set.

use std::time::Duration;

use async_trait::async_trait;

#[async_trait]
pub trait Prober: Send + Sync {
    /// One GET; the status code, or why there was none (refused, timed out, ...).
    async fn get(&self, url: &str, timeout: Duration) -> Result<u16, String>;
}

/// Probes over HTTP with reqwest (rustls). Redirects are not followed: a health endpoint
/// that redirects is answering something else.
#[derive(Debug, Clone)]
pub struct HttpProber(pub reqwest::Client);

impl HttpProber {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .user_agent("greenlight-health-hook")
            .build()
            .unwrap_or_default();
        Self(client)
    }
}

impl Default for HttpProber {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str, timeout: Duration) -> Result<u16, String> {
        match self.0.get(url).timeout(timeout).send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", timeout.as_millis())),
            Err(e) if e.is_connect() => Err("connection failed".to_string()),
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}
