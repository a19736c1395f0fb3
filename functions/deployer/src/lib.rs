//! greenlight-deployer: an ECR image push becomes a CodeDeploy blue/green deployment.
//!
//! Two kinds of event arrive here:
//! - "ECR Image Action" (EventBridge): a release push is claimed in the ledger, its next
//!   task-definition revision is registered and a deployment started, or it waits when the
//!   app's deployment group is busy (newest wins);
//! - "CodeDeploy Deployment State-change Notification" SUCCESS/FAILURE/STOP: the deployment
//!   that ended frees the group, and the waiting release, if any, starts.
//!
//! Everything that is not a release (DELETE, failed push, `latest`, unknown repository,
//! another account) is skipped with one log line and no AWS call.

pub mod handler;

pub use handler::{handle, parse_event, DeployError, DeployerEvent, Deps, Outcome, LEASE_MARGIN};
