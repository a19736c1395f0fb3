//! Logging: JSON lines in Lambda (CloudWatch reads the fields), readable text locally.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `RUST_LOG` filters (`info` by default) with the
/// `target=level` directives of [`Targets`] (`info,aws_smithy_runtime=debug`): the same
/// syntax as an env filter's, without span filters and their regex engine.
/// `GREENLIGHT_LOG_FORMAT=json|text` overrides the choice made from the environment.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = match std::env::var("GREENLIGHT_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(),
    };
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .without_time(),
            )
            .try_init()
    } else {
        registry
            .with(layer.with_ansi(false).with_writer(std::io::stderr))
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
