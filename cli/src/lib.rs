//! `greenlight`, the operator's command: what production runs, what is deploying and waiting,
//! what happened. It reads the release ledger (DynamoDB) and nothing else: an operator needs
//! only read access to the ledger table (`dynamodb:Query`, `GetItem`, `Scan`), which the
//! stack's `OperatorReadPolicy` grants.

pub mod report;
