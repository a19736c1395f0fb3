//! The HTTP prober against a real local server that routes by host header, as an ALB
//! listener rule can: with `host`, the probe names that host while connecting to the
//! listener's address.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use greenlight_health_hook::probe::{HttpProber, Prober};

async fn routed_by_host(headers: HeaderMap) -> StatusCode {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if host.split(':').next() == Some("green.web1.internal") {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

#[tokio::test]
async fn with_a_host_the_probe_reaches_the_rule_that_routes_by_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = Router::new().route("/api/health", get(routed_by_host));
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://localhost:{port}/api/health");
    let prober = HttpProber::new();
    let timeout = Duration::from_secs(2);

    assert_eq!(prober.get(&url, None, timeout).await, Ok(404));
    assert_eq!(
        prober.get(&url, Some("green.web1.internal"), timeout).await,
        Ok(200)
    );
}
