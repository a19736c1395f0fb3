//! Posting to a Slack incoming webhook, with bounded retries inside the invocation's deadline.
//!
//! 429 is retried after its Retry-After; 5xx and connection failures with exponential backoff.
//! Any other 4xx is a clear error at once (retrying a bad payload cannot help). When Slack
//! stays down past the deadline, the error fails the invocation so Lambda's retry and the
//! on-failure destination keep the event. The webhook URL never appears in an error or log.

use std::time::Duration;

use tokio::time::Instant;

use crate::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack refused the message: HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("Slack still failing after {attempts} attempts before the deadline: {last}")]
    GaveUp { attempts: u32, last: String },
}

#[derive(Debug, Clone)]
pub struct SlackPoster {
    http: reqwest::Client,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl SlackPoster {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }

    /// Shorter backoffs, for tests.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// Posts `payload`; returns the number of attempts it took.
    pub async fn post(
        &self,
        webhook: &Secret,
        payload: &serde_json::Value,
        deadline: Instant,
    ) -> Result<u32, SlackError> {
        let mut backoff = self.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (wait, last) = match self
                .http
                .post(webhook.expose())
                .timeout(remaining.min(Duration::from_secs(10)))
                .json(payload)
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => return Ok(attempts),
                Ok(resp) if resp.status().as_u16() == 429 => {
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    (
                        retry_after.unwrap_or(backoff),
                        "HTTP 429 rate limited".to_string(),
                    )
                }
                Ok(resp) if resp.status().is_server_error() => {
                    (backoff, format!("HTTP {}", resp.status().as_u16()))
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: String = resp
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    return Err(SlackError::Rejected { status, body });
                }
                Err(e) => (backoff, e.without_url().to_string()),
            };
            if Instant::now() + wait >= deadline {
                return Err(SlackError::GaveUp { attempts, last });
            }
            tracing::warn!(attempt = attempts, retry_in_ms = wait.as_millis() as u64, reason = %last, "Slack post failed, retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}
