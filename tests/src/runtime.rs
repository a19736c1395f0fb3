//! A small Lambda Runtime API host: runs a real function binary as Lambda would, one
//! invocation at a time, and returns each invocation's response or error.
//!
//! Serves `GET /2018-06-01/runtime/invocation/next`, `POST .../invocation/{id}/response`,
//! `POST .../invocation/{id}/error` and `POST .../runtime/init/error` on a free loopback port,
//! and starts the binary with `AWS_LAMBDA_RUNTIME_API` and the usual Lambda variables.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Mutex};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Invoked {
    Response(Value),
    Error(Value),
}

impl Invoked {
    pub fn response(self) -> Value {
        match self {
            Self::Response(v) => v,
            Self::Error(e) => panic!("invocation failed: {e}"),
        }
    }
}

struct Pending {
    id: String,
    payload: Value,
    deadline_ms: u64,
}

#[derive(Clone)]
struct HostState {
    queue: Arc<Mutex<mpsc::Receiver<Pending>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Invoked>>>>,
    function_arn: String,
    first_poll: Arc<std::sync::OnceLock<std::time::Instant>>,
    /// What the function reported to `/runtime/init/error`: (error type header, body).
    init_error: Arc<Mutex<Option<(String, Value)>>>,
}

pub struct FunctionHost {
    pub name: String,
    sender: mpsc::Sender<Pending>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Invoked>>>>,
    child: std::sync::Mutex<Option<Child>>,
    /// When the process was started, and when it first asked for an invocation (its init done).
    pub spawned_at: std::time::Instant,
    first_poll: Arc<std::sync::OnceLock<std::time::Instant>>,
    timeout: Duration,
    counter: std::sync::atomic::AtomicU64,
    /// Serialises invocations: Lambda runs one at a time per execution environment.
    turn: Mutex<()>,
    init_error: Arc<Mutex<Option<(String, Value)>>>,
    /// Invocations answered and the time they took (what Lambda bills), in microseconds.
    invoked: std::sync::atomic::AtomicU64,
    busy_us: std::sync::atomic::AtomicU64,
}

impl FunctionHost {
    /// Starts the host and the function binary; `timeout` is the function's configured timeout.
    pub async fn start(
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        timeout: Duration,
        log: &Path,
    ) -> Self {
        Self::start_under(&[], name, binary, env, timeout, log).await
    }

    /// As [`start`](Self::start), with the binary run by a launcher (for example
    /// `qemu-aarch64 -L /usr/aarch64-linux-gnu`, to run an arm64 bootstrap on x86_64).
    pub async fn start_under(
        launcher: &[String],
        name: &str,
        binary: &Path,
        env: &[(String, String)],
        timeout: Duration,
        log: &Path,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        let (sender, receiver) = mpsc::channel(64);
        let waiting = Arc::new(Mutex::new(HashMap::new()));
        let first_poll = Arc::new(std::sync::OnceLock::new());
        let init_error = Arc::new(Mutex::new(None));
        let state = HostState {
            init_error: init_error.clone(),
            first_poll: first_poll.clone(),
            queue: Arc::new(Mutex::new(receiver)),
            waiting: waiting.clone(),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(record_init_error))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let log_file = std::fs::File::create(log).expect("function log file");
        let spawned_at = std::time::Instant::now();
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("GREENLIGHT_LOG_FORMAT", "json")
            .stdout(Stdio::from(log_file.try_clone().expect("log handle")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Self {
            name: name.to_string(),
            sender,
            waiting,
            child: std::sync::Mutex::new(Some(child)),
            spawned_at,
            first_poll,
            timeout,
            counter: Default::default(),
            turn: Mutex::new(()),
            init_error,
            invoked: Default::default(),
            busy_us: Default::default(),
        }
    }

    /// The init error the function reported, if any: (error type header, body).
    pub async fn init_error(&self) -> Option<(String, Value)> {
        self.init_error.lock().await.clone()
    }

    /// Invokes the function and waits for its answer (or the timeout, reported as an error).
    pub async fn invoke(&self, payload: Value) -> Invoked {
        let _turn = self.turn.lock().await;
        let started = std::time::Instant::now();
        let answer = self.invoke_now(payload).await;
        self.invoked
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.busy_us.fetch_add(
            started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
        answer
    }

    /// How many invocations were answered, and the time they took together.
    pub fn billed(&self) -> (u64, Duration) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.invoked.load(SeqCst),
            Duration::from_micros(self.busy_us.load(SeqCst)),
        )
    }

    async fn invoke_now(&self, payload: Value) -> Invoked {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{}-{n:06}", self.name);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().await.insert(id.clone(), tx);
        let deadline_ms = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + self.timeout)
            .as_millis() as u64;
        if self
            .sender
            .send(Pending {
                id: id.clone(),
                payload,
                deadline_ms,
            })
            .await
            .is_err()
        {
            return Invoked::Error(serde_json::json!({"errorType": "HostClosed"}));
        }
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(answer)) => answer,
            _ => Invoked::Error(
                serde_json::json!({"errorType": "Timeout", "errorMessage": format!("{} did not answer within {:?}", self.name, self.timeout)}),
            ),
        }
    }

    /// Time from process start to its first request for an invocation (the cold start's init),
    /// once it has happened.
    pub fn init_duration(&self) -> Option<Duration> {
        self.first_poll
            .get()
            .map(|t| t.duration_since(self.spawned_at))
    }

    /// Ends the function as Lambda ends an execution environment (SIGTERM) and waits up to
    /// `grace` for it to exit; its exit status, or `None` if it had to be killed.
    pub fn shut_down(&self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap();
        let child = guard.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(status)) = child.try_wait() {
                guard.take();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id of the function (for memory measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn next(State(s): State<HostState>) -> Response {
    s.first_poll.get_or_init(std::time::Instant::now);
    let pending = s.queue.lock().await.recv().await;
    let Some(p) = pending else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    headers.insert("lambda-runtime-aws-request-id", header(&p.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&p.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&s.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-00000000-000000000000000000000000;Sampled=0"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, p.payload.to_string()).into_response()
}

async fn respond(
    State(s): State<HostState>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    if let Some(tx) = s.waiting.lock().await.remove(&id) {
        let _ = tx.send(Invoked::Response(
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ));
    }
    StatusCode::ACCEPTED
}

async fn fail(
    State(s): State<HostState>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    if let Some(tx) = s.waiting.lock().await.remove(&id) {
        let _ = tx.send(Invoked::Error(
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ));
    }
    StatusCode::ACCEPTED
}

async fn record_init_error(
    State(s): State<HostState>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    *s.init_error.lock().await = Some((error_type, body));
    StatusCode::ACCEPTED
}
