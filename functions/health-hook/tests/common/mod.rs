//! What the hook's tests share: a prober whose answers are scripted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use greenlight_health_hook::probe::Prober;

/// A prober whose answers are scripted; the last one repeats. Records each URL probed.
#[derive(Default)]
pub struct FakeProber {
    answers: Mutex<VecDeque<Result<u16, String>>>,
    pub urls: Mutex<Vec<String>>,
    /// The host each probe named, if any.
    pub hosts: Mutex<Vec<Option<String>>>,
}

impl FakeProber {
    pub fn answering(answers: Vec<Result<u16, String>>) -> Self {
        Self {
            answers: Mutex::new(answers.into()),
            urls: Mutex::default(),
            hosts: Mutex::default(),
        }
    }
}

#[async_trait]
impl Prober for FakeProber {
    async fn get(&self, url: &str, host: Option<&str>, _timeout: Duration) -> Result<u16, String> {
        self.urls.lock().unwrap().push(url.to_string());
        self.hosts.lock().unwrap().push(host.map(str::to_string));
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap_or(Ok(200))
        }
    }
}
