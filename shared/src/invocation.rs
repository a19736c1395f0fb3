//! What a handler needs to know about the invocation it serves, taken from the Lambda context
//! so that handlers can be driven by tests without a runtime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub function_arn: String,
    /// Milliseconds since the epoch when Lambda stops the invocation.
    pub deadline_ms: u64,
}

impl Invocation {
    pub fn from_context(ctx: &lambda_runtime::Context) -> Self {
        Self {
            request_id: ctx.request_id.clone(),
            function_arn: ctx.invoked_function_arn.clone(),
            deadline_ms: ctx.deadline,
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Duration::from_millis(self.deadline_ms.saturating_sub(now_ms))
    }

    /// A tokio instant `margin` before the deadline.
    pub fn deadline_minus(&self, margin: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.remaining().saturating_sub(margin)
    }

    /// For tests: an invocation with `budget` left.
    pub fn for_test(request_id: &str, budget: Duration) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            request_id: request_id.to_string(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:greenlight-test"
                .to_string(),
            deadline_ms: now_ms + budget.as_millis() as u64,
        }
    }
}
