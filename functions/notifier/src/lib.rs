//! greenlight-notifier: every CodeDeploy deployment state change of a Greenlight app becomes
//! one Slack message; so does every state of a native ECS blue/green deployment
//! ([`native`]: "ECS Deployment State Change" events, read back from ECS).
//!
//! EventBridge delivers "CodeDeploy Deployment State-change Notification" events (START,
//! READY, SUCCESS, FAILURE, STOP, or a state added later, which is reported as is). For each:
//!
//! 1. The app is found by CodeDeploy application and deployment group (another group of a
//!    managed application belongs to that application's app). Events of anything else are
//!    ignored with one log line, and nothing is posted.
//! 2. The message is enriched from GetDeployment: the release (version and digest, from the
//!    description Greenlight writes), who started it (`push`, `rollback`, `manual`, or
//!    CodeDeploy's creator), how long it took, the task definition it deploys, CodeDeploy's
//!    error, and its rollback links. With a release ledger, also why the health hook failed
//!    the release, the version production serves after a rollback, and, on the START of a
//!    release, the older releases it superseded (each announced this once). A lookup that
//!    fails only makes the message say less: without GetDeployment it says what the event
//!    says, naming the deployment id instead of a version.
//! 3. The message is posted to the app's webhook (`slack.webhook` in the config, else
//!    `GREENLIGHT_SLACK_WEBHOOK`), read once per cold start and never logged. Slack's 429
//!    and 5xx answers are retried within the invocation's deadline; a refused message or a
//!    Slack that stays down fails the invocation, so Lambda's retry and the on-failure
//!    destination keep the event.
//!
//! A rollback is never announced as a success: the SUCCESS of a rollback deployment reads
//! "web1 rolled back to v1.4.2 on production" in the warning colour, and the FAILURE or STOP
//! of a deployment CodeDeploy rolled back says which version is serving now. Failures, stops
//! and rollbacks carry the app's `mention_on_failure`.

pub mod approvals;
pub mod core;
pub mod delivery;
pub mod handler;
pub mod message;
pub mod native;
pub mod notice;
pub mod queued;
pub mod stream;
pub mod verdicts;

pub use core::{Deps, Notified, NotifyError, SecretSource, WebhookCache};
pub use handler::{handle, notify, parse_event, NotifierEvent};
