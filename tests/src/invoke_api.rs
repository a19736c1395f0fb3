//! The Lambda Invoke API for the local deployer: `POST /2015-03-31/functions/{name}/invocations`
//! on a loopback port, so the `greenlight` command's real SDK call reaches the real deployer
//! binary (through its Runtime API host), as `lambda:InvokeFunction` would in AWS.
//!
//! As Lambda answers: 200 with the function's response as the body; a function error is 200
//! too, with `X-Amz-Function-Error: Unhandled` and the error document; an unknown function is
//! 404 `ResourceNotFoundException`. Only `RequestResponse` invocations (the command's).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use crate::runtime::Invoked;

/// Runs one invocation of the function and returns how it ended.
pub type Invoke = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Invoked> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Api {
    function: String,
    invoke: Invoke,
}

pub struct InvokeApi {
    pub endpoint: String,
    server: tokio::task::JoinHandle<()>,
}

impl InvokeApi {
    /// Serves `function` (by name or ARN) with `invoke`.
    pub async fn start(function: &str, invoke: Invoke) -> Self {
        let api = Api {
            function: function.to_string(),
            invoke,
        };
        let app = Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                post(invoke_function),
            )
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Invoke API");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint, server }
    }
}

impl Drop for InvokeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({"Type": "User", "message": message}).to_string();
    (
        status,
        [
            ("x-amzn-errortype", error_type.to_string()),
            ("content-type", "application/json".to_string()),
        ],
        body,
    )
        .into_response()
}

async fn invoke_function(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let named = name.rsplit(':').next().unwrap_or(&name);
    if named != api.function {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    }
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if kind != "RequestResponse" {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "this local Invoke API serves RequestResponse invocations only",
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    };
    let (body, function_error) = match (api.invoke)(payload).await {
        Invoked::Response(v) => (v, None),
        Invoked::Error(e) => (e, Some("Unhandled")),
    };
    let mut response = (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-amz-executed-version", "$LATEST"),
        ],
        body.to_string(),
    )
        .into_response();
    if let Some(kind) = function_error {
        response
            .headers_mut()
            .insert("x-amz-function-error", kind.parse().expect("header"));
    }
    response
}
