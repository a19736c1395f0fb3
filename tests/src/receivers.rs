//! Local HTTP stand-ins: a Slack webhook receiver and the green task's web app.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

/// A scripted answer: HTTP status and optional Retry-After seconds.
type Answer = (u16, Option<u64>);

/// Records every message posted; answers are scripted (default 200 "ok").
#[derive(Clone, Default)]
pub struct SlackReceiver {
    pub url: String,
    messages: Arc<Mutex<Vec<Value>>>,
    /// (status, Retry-After seconds) answers, used in order before falling back to 200.
    answers: Arc<Mutex<VecDeque<Answer>>>,
}

impl SlackReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind Slack receiver");
        let addr = listener.local_addr().expect("Slack receiver address");
        let receiver = Self {
            url: format!("http://{addr}/services/T000/B000/local"),
            ..Default::default()
        };
        let app = Router::new()
            .route("/services/{a}/{b}/{c}", post(slack_post))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn script(&self, answers: &[Answer]) {
        self.answers.lock().unwrap().extend(answers.iter().copied());
    }

    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// The headline (fallback text) of each message received.
    pub fn headlines(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

async fn slack_post(State(r): State<SlackReceiver>, body: String) -> Response {
    let answer = r.answers.lock().unwrap().pop_front();
    match answer {
        Some((status, retry_after)) if status != 200 => {
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "rate_limited_or_failing",
            )
                .into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("header"));
            }
            resp
        }
        _ => {
            match serde_json::from_str::<Value>(&body) {
                Ok(v) => r.messages.lock().unwrap().push(v),
                Err(_) => return (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
            }
            (StatusCode::OK, "ok").into_response()
        }
    }
}

/// How the green task's app answers its health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// HTTP 500.
    Failing,
    /// Answers after `delay`.
    Slow(Duration),
}

/// The web app of the green task set: `GET /api/health`.
#[derive(Clone)]
pub struct GreenApp {
    pub url: String,
    mode: Arc<Mutex<Health>>,
    pub hits: Arc<AtomicU16>,
}

impl GreenApp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind green app");
        let addr = listener.local_addr().expect("green app address");
        let app = Self {
            url: format!("http://{addr}/api/health"),
            mode: Arc::new(Mutex::new(Health::Healthy)),
            hits: Arc::default(),
        };
        let router = Router::new()
            .route("/api/health", get(health))
            .with_state(app.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        app
    }

    pub fn set(&self, mode: Health) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn health(State(app): State<GreenApp>) -> Response {
    app.hits.fetch_add(1, Ordering::SeqCst);
    let mode = *app.mode.lock().unwrap();
    match mode {
        Health::Healthy => (StatusCode::OK, "{\"status\":\"ok\"}").into_response(),
        Health::Failing => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"status\":\"database unreachable\"}",
        )
            .into_response(),
        Health::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, "{\"status\":\"ok\"}").into_response()
        }
    }
}
