//! The local harness of Greenlight's integration and end-to-end tests, and of the local
//! pipeline (`greenlight-local`): moto server, a CodeDeploy stand-in, a Lambda Runtime API
//! host for the real function binaries, a Slack webhook receiver and the green task's web app.

pub mod aws_stub;
pub mod codedeploy;
pub mod deployer_case;
pub mod ecs_native;
pub mod faults;
pub mod invoke_api;
pub mod ledger_stream;
pub mod moto;
pub mod pipeline;
pub mod receivers;
pub mod runtime;
pub mod scenario;
pub mod slack_api;
pub mod world;
