//! greenlight-deployer: an ECR image push becomes a blue/green deployment of the app's ECS
//! service, by CodeDeploy or by ECS itself (native blue/green), as the service says
//! (`greenlight_shared::engine`).
//!
//! What arrives here:
//! - "ECR Image Action" (EventBridge): a release push is claimed in the ledger, its next
//!   task-definition revision is registered and a deployment started, or it waits when the
//!   app's service is deploying already (newest wins);
//! - "CodeDeploy Deployment State-change Notification" SUCCESS/FAILURE/STOP, and "ECS
//!   Deployment State Change" COMPLETED/FAILED (read back, never believed): the deployment
//!   that ended frees the service, and the waiting release, if any, starts;
//! - the scheduled sweep, which finishes what lost events left;
//! - an operator's request from the `greenlight` command (Lambda Invoke): deploy, roll back
//!   to, or plan a release of the app's repository.
//!
//! Everything that is not a release (DELETE, failed push, `latest`, unknown repository,
//! another account) is skipped with one log line and no AWS call.

mod core;
mod driver;
mod ends;
pub mod handler;
mod requests;
mod target;

pub use crate::core::{DeployError, Deps, Outcome, LEASE_MARGIN};
pub use ends::READBACK_PAUSE;
pub use handler::{handle, parse_event, DeployerEvent};
