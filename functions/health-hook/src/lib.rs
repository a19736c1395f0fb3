//! greenlight-health-hook: the lifecycle hook that decides whether green may take production
//! traffic, for CodeDeploy blue/green deployments and (`native`) for native ECS blue/green
//! deployments, with the same checks.
//!
//! It always answers CodeDeploy, exactly once: `Succeeded` when every configured check passed,
//! `Failed` when one failed, when the time budget ran out, or on any error or unexpected state.
//! The budget is the Lambda deadline minus a safety margin, so the report is sent before the
//! function could be stopped: CodeDeploy is never left waiting for its one-hour timeout.
//!
//! Checks (each can be switched off per app, all must pass):
//! 1. task set: the green task set is STEADY_STATE and runs its desired count;
//! 2. target health: every target registered in the green target group is healthy;
//! 3. HTTP probe: the test route (the deployment group's test listener, or `health.url` from
//!    config, never a URL from the event) answers the expected status N times in a row;
//!    M failures in a row fail at once.

//!
//! Layout: `handler` routes an invocation to its engine's hook, `codedeploy` and `native`,
//! which share `core` (dependencies, errors), `checks` and `probe`.

pub mod checks;
pub mod codedeploy;
pub mod core;
pub mod handler;
pub mod native;
pub mod probe;

pub use codedeploy::{handle, parse_event, report_unusable, HookReport};
pub use core::{Deps, HookError};
pub use native::{answer_unusable, handle_native, parse_ecs_event};
