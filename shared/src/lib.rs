//! Code shared by the Greenlight functions: configuration, typed events, the pure deployment
//! logic (tag rule, task-definition rewrite, AppSpec), the release ledger, AWS adapters behind
//! small port traits, Slack delivery, telemetry and error types.

pub mod approval;
pub mod appspec;
pub mod aws;
pub mod config;
pub mod ecs_hook;
pub mod engine;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod http;
pub mod invocation;
pub mod ledger;
pub mod model;
pub mod provenance;
pub mod queue;
pub mod request;
pub mod rollout;
pub mod secrets;
pub mod slack;
pub mod startup;
pub mod tag_rule;
pub mod task_definition;
pub mod telemetry;

#[cfg(test)]
mod test_http;

pub use config::{AppConfig, Config};
pub use error::{AwsError, AwsErrorKind};
