//! A fault-injecting loopback proxy for the AWS endpoints (moto, the CodeDeploy stand-in).
//!
//! The functions' SDK clients point at the proxy, which forwards each request to the real
//! endpoint one at a time (moto's DynamoDB takes no lock, so racing conditional writes are only
//! atomic when they arrive one by one) and records each operation by its `X-Amz-Target`. One
//! fault may be armed at a time, on the n-th call of an operation:
//!
//! - [`Fault::ServerError`]: answered 500 without forwarding, once (the SDK retries);
//! - [`Fault::Throttled`]: answered `ThrottlingException` without forwarding, once;
//! - [`Fault::Down`]: answered 500 without forwarding for every attempt the SDK makes (three),
//!   so the invocation sees the error;
//! - [`Fault::AnswerLost`]: forwarded (the server acts) and then answered 500, as a timeout
//!   after the server acted looks to the SDK, which retries;
//! - [`Fault::KilledAfter`]: forwarded, then never answered; [`Faults::killed`] fires so that
//!   the test drops the invocation, as Lambda ends one at its timeout;
//! - [`Fault::Hung`]: never forwarded and never answered, for every attempt (an endpoint that
//!   accepts the connection and then says nothing).
//!
//! Faults together ([`Faults::chaos`]): every n-th call of a set of operations fails in turn
//! as throttled, as a 500, and as a 500 after the server acted, until [`Faults::calm`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Notify;

/// The SDK's attempts per call (its standard retry policy).
const SDK_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    ServerError,
    Throttled,
    Down,
    AnswerLost,
    KilledAfter,
    Hung,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ServerError,
        Fault::Throttled,
        Fault::Down,
        Fault::AnswerLost,
        Fault::KilledAfter,
    ];

    /// Whether the invocation itself fails (so it is delivered again).
    pub fn fails_the_invocation(self) -> bool {
        matches!(self, Fault::Down | Fault::KilledAfter)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Armed {
    operation: String,
    /// 1-based occurrence of the operation.
    nth: usize,
    fault: Fault,
    /// Requests still to fail (for `Down`).
    left: usize,
}

#[derive(Default)]
struct State0 {
    calls: Vec<String>,
    counts: HashMap<String, usize>,
    armed: Option<Armed>,
    fired: bool,
    chaos: Option<Chaos>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Chaos {
    operations: Vec<String>,
    every: usize,
    seen: usize,
}

/// The fault plan and the call log, shared by every proxy of one test case.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State0>>,
    killed: Arc<Notify>,
    /// One request at a time through every proxy of the case.
    serial: Arc<tokio::sync::Mutex<()>>,
}

enum Action {
    Forward,
    Refuse(Fault),
    ForwardThen(Fault),
}

impl Faults {
    /// Arms `fault` on the `nth` call of `operation` (e.g. `TransactWriteItems`).
    pub fn arm(&self, operation: &str, nth: usize, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.armed = Some(Armed {
            operation: operation.to_string(),
            nth,
            fault,
            left: match fault {
                Fault::Down => SDK_ATTEMPTS,
                Fault::Hung => usize::MAX,
                _ => 1,
            },
        });
        s.fired = false;
    }

    /// From now on every `every`-th call of `operations` fails: throttled, then a 500, then a
    /// 500 after the server acted, in turn.
    pub fn chaos(&self, operations: &[&str], every: usize) {
        self.state.lock().unwrap().chaos = Some(Chaos {
            operations: operations.iter().map(|o| o.to_string()).collect(),
            every,
            seen: 0,
        });
    }

    /// The next `times` calls of `operation` answer 500 without being forwarded (an outage
    /// that outlasts the SDK's retries of several invocations).
    pub fn fail_next(&self, operation: &str, times: usize) {
        let mut s = self.state.lock().unwrap();
        let nth = s.counts.get(operation).copied().unwrap_or_default() + 1;
        s.armed = Some(Armed {
            operation: operation.to_string(),
            nth,
            fault: Fault::Down,
            left: times,
        });
        s.fired = false;
    }

    /// The faults stop.
    pub fn calm(&self) {
        self.state.lock().unwrap().chaos = None;
    }

    /// Takes the armed fault away (a retry after it), keeping the calls seen.
    pub fn disarm(&self) {
        self.state.lock().unwrap().armed = None;
    }

    /// Forgets the calls counted and the fault armed (a new case on the same proxies).
    pub fn reset(&self) {
        *self.state.lock().unwrap() = State0::default();
    }

    /// Whether the armed fault has been injected.
    pub fn fired(&self) -> bool {
        self.state.lock().unwrap().fired
    }

    /// Every operation forwarded or refused, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Resolves when an invocation was "killed" after a call.
    pub async fn killed(&self) {
        self.killed.notified().await
    }

    fn decide(&self, operation: &str) -> Action {
        let mut s = self.state.lock().unwrap();
        s.calls.push(operation.to_string());
        let count = {
            let c = s.counts.entry(operation.to_string()).or_default();
            *c += 1;
            *c
        };
        if let Some(chaos) = s
            .chaos
            .as_mut()
            .filter(|c| c.operations.iter().any(|o| o == operation))
        {
            chaos.seen += 1;
            if chaos.seen % chaos.every == 0 {
                let turn = (chaos.seen / chaos.every) % 3;
                s.fired = true;
                return match turn {
                    0 => Action::Refuse(Fault::Throttled),
                    1 => Action::Refuse(Fault::ServerError),
                    _ => Action::ForwardThen(Fault::AnswerLost),
                };
            }
        }
        let Some(armed) = s.armed.as_mut() else {
            return Action::Forward;
        };
        // `Down` and `Hung` fail the n-th call and the SDK's retries of it.
        let repeats = matches!(armed.fault, Fault::Down | Fault::Hung);
        let hit = armed.operation == operation
            && (count == armed.nth || (repeats && count > armed.nth))
            && armed.left > 0;
        if !hit {
            return Action::Forward;
        }
        armed.left -= 1;
        let fault = armed.fault;
        s.fired = true;
        match fault {
            Fault::ServerError | Fault::Throttled | Fault::Down | Fault::Hung => {
                Action::Refuse(fault)
            }
            Fault::AnswerLost | Fault::KilledAfter => Action::ForwardThen(fault),
        }
    }
}

/// Each call of `calls` as (operation, which call of it): the points a matrix injects at.
pub fn injection_points(calls: &[String]) -> Vec<(String, usize)> {
    let mut seen = HashMap::<&str, usize>::new();
    calls
        .iter()
        .map(|op| {
            let n = seen.entry(op.as_str()).or_default();
            *n += 1;
            (op.clone(), *n)
        })
        .collect()
}

/// One proxy in front of one endpoint.
pub struct FaultProxy {
    pub endpoint: String,
}

#[derive(Clone)]
struct Route {
    upstream: String,
    faults: Faults,
    http: reqwest::Client,
    /// Fill in the task counts moto leaves out of DescribeTaskSets.
    task_set_counts: bool,
}

impl FaultProxy {
    pub async fn start(upstream: &str, faults: &Faults) -> Self {
        Self::serve(upstream, faults, false).await
    }

    /// A proxy to moto's ECS whose DescribeTaskSets answers carry the task counts real ECS
    /// reports (`computedDesiredCount`, `runningCount`; moto leaves both out): one task wanted
    /// and running, as a started task set has. A harness workaround, like the others in
    /// `world.rs`, so that the hook's "no task wanted is not ready" rule can run locally.
    pub async fn moto_ecs(upstream: &str) -> Self {
        Self::moto(upstream, &Faults::default()).await
    }

    /// A fault proxy to moto that also fills in the task counts (see [`Self::moto_ecs`]).
    pub async fn moto(upstream: &str, faults: &Faults) -> Self {
        Self::serve(upstream, faults, true).await
    }

    async fn serve(upstream: &str, faults: &Faults, task_set_counts: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let route = Route {
            upstream: upstream.trim_end_matches('/').to_string(),
            faults: faults.clone(),
            http: reqwest::Client::new(),
            task_set_counts,
        };
        let app = Router::new().fallback(forward).with_state(route);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
        }
    }
}

fn aws_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#),
    )
        .into_response()
}

async fn forward(
    State(route): State<Route>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = operation_of(&headers, &body);
    let serial = route.faults.serial.clone();
    let answer = {
        let _one_at_a_time = serial.lock().await;
        let action = route.faults.decide(&operation);
        if let Action::Refuse(fault) = action {
            return match fault {
                Fault::Throttled => aws_error(StatusCode::BAD_REQUEST, "ThrottlingException"),
                Fault::Hung => {
                    drop(_one_at_a_time);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
                }
                _ => aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
            };
        }
        let answer = match relay(&route.http, &route.upstream, method, &uri, &headers, body).await {
            Ok((status, content_type, mut bytes)) => {
                if route.task_set_counts && operation == "DescribeTaskSets" {
                    bytes = with_task_counts(&bytes).into();
                }
                (status, [("content-type", content_type)], bytes).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        };
        match action {
            Action::ForwardThen(Fault::AnswerLost) => {
                aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }
            Action::ForwardThen(_) => {
                route.faults.killed.notify_one();
                // The invocation is dropped; this answer never arrives.
                drop(_one_at_a_time);
                tokio::time::sleep(Duration::from_secs(30)).await;
                return aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError");
            }
            _ => answer,
        }
    };
    answer
}

/// The AWS operation a request calls: JSON protocols name it in X-Amz-Target, the query
/// protocol (ELBv2) in the form's `Action`; `unknown` otherwise.
pub fn operation_of(headers: &HeaderMap, body: &[u8]) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_string)
        .or_else(|| {
            std::str::from_utf8(body)
                .ok()?
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Sends a request on to `upstream` as it came (but its Host and length); the answer's status,
/// content type and body.
pub async fn relay(
    http: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, String, Bytes), reqwest::Error> {
    let mut request = http.request(
        method,
        format!(
            "{upstream}{}",
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        ),
    );
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.body(body).send().await?;
    let status = answer.status();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-amz-json-1.0")
        .to_string();
    Ok((status, content_type, answer.bytes().await?))
}

fn with_task_counts(body: &[u8]) -> Vec<u8> {
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    if let Some(sets) = answer["taskSets"].as_array_mut() {
        for set in sets {
            for key in ["computedDesiredCount", "runningCount"] {
                if set.get(key).is_none() {
                    set[key] = 1.into();
                }
            }
        }
    }
    answer.to_string().into_bytes()
}

/// Adds `calls` (operation names) to the record of what `function` was seen calling, in
/// `target/greenlight-calls/<function>.json`; the template checks derive each role's IAM
/// actions from these records.
pub fn record_calls(function: &str, calls: &[String]) {
    let dir = crate::moto::workspace_root().join("target/greenlight-calls");
    std::fs::create_dir_all(&dir).expect("calls directory");
    let path = dir.join(format!("{function}.json"));
    let mut all: std::collections::BTreeSet<String> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    all.extend(calls.iter().cloned());
    std::fs::write(&path, serde_json::to_vec_pretty(&all).expect("JSON")).expect("write calls");
}
