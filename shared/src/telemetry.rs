//! Logging: JSON lines in Lambda (CloudWatch reads the fields), readable text locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`);
/// `GREENLIGHT_LOG_FORMAT=json|text` overrides the choice made from the environment.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("GREENLIGHT_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time()
            .try_init()
    } else {
        builder
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
