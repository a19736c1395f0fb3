//! `greenlight`, the operator's command: what production runs, what is deploying and waiting,
//! what happened (read from the release ledger), and deploy, rollback and plan (asked of the
//! deployer through Lambda Invoke; the command never deploys by itself). An operator needs read
//! access to the ledger table and `lambda:InvokeFunction` on the deployer: the stack's
//! `OperatorPolicy` grants exactly that.

pub mod deploy;
pub mod report;
