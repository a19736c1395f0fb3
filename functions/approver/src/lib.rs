//! greenlight-approver: the approval gate's Slack endpoint (a Lambda function URL), the one
//! part of Greenlight the internet can reach.
//!
//! Every request is verified with Slack's signing secret before any of it is parsed
//! ([`signature`]): HMAC-SHA256 over `v0:timestamp:body`, compared in constant time, the
//! timestamp within five minutes, the body bounded. A verified click ([`interaction`]) is
//! decided only if its user is one of the app's approvers (a Slack user id, or a member of an
//! approver user group), and the decision binds to the release run and the deployment the
//! button was posted for (`greenlight_shared::approval`): a button of an earlier run, a
//! replayed or second click, or a click after the wait ended changes nothing and says why to
//! the person alone. Its role may read the ledger, write an approval's decision on a release
//! item, continue or roll back a waiting deployment, and read its two secrets: nothing more.

pub mod handler;
pub mod interaction;
pub mod signature;

pub use handler::{handle, request_of, Deps, HttpRequest, HttpResponse, Responder, SlackResponder};
