//! What every function does once per cold start: logging, the SDK configuration, the config
//! document, and the release ledger.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::ledger::{DynamoLedger, Ledger};

/// A claim outlives the longest deployer invocation (30 s) with room to spare, and expires
/// before Lambda's first asynchronous retry of an invocation that died.
pub const LEDGER_LEASE: Duration = Duration::from_secs(120);

pub struct Startup {
    pub sdk: SdkConfig,
    pub config: Config,
}

impl Startup {
    /// Initialises logging, loads the SDK configuration and the config (`GREENLIGHT_CONFIG`).
    pub async fn load() -> Result<Self, ConfigError> {
        crate::telemetry::init();
        let sdk = crate::aws::sdk_config().await;
        let config =
            Config::load(&ConfigSource::from_env()?, &aws_sdk_ssm::Client::new(&sdk)).await?;
        Ok(Self { sdk, config })
    }

    /// The ledger's table: `GREENLIGHT_LEDGER_TABLE`, else the config's `[ledger] table`.
    pub fn ledger(&self) -> Option<Arc<dyn Ledger>> {
        let table = std::env::var("GREENLIGHT_LEDGER_TABLE")
            .ok()
            .or(self.config.ledger_table.clone())?;
        Some(Arc::new(DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
            LEDGER_LEASE,
        )))
    }
}
