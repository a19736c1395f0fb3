//! What every function does once per cold start: logging, the SDK configuration, the config
//! document, and the release ledger.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::ledger::{DynamoLedger, Ledger};

pub struct Startup {
    pub sdk: SdkConfig,
    pub config: Config,
}

/// A cold start whose config could not be loaded; the SDK configuration is still usable
/// (the health hook answers CodeDeploy with it).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StartupError {
    pub sdk: SdkConfig,
    pub error: ConfigError,
}

impl StartupError {
    /// Tells the Lambda Runtime API why the cold start failed (Lambda then shows this errorType
    /// and message rather than `Runtime.ExitError`), and ends the process. The error was
    /// already logged, once, as a structured line.
    pub async fn report_and_exit(self) -> ! {
        report_init_error(self.error.error_type(), &self.error.to_string()).await;
        std::process::exit(1)
    }
}

/// Posts an init error to the Runtime API (`/runtime/init/error`), when there is one.
pub async fn report_init_error(error_type: &str, message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let sent = reqwest::Client::new()
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .timeout(std::time::Duration::from_secs(2))
        .json(&serde_json::json!({"errorType": error_type, "errorMessage": message}))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e.without_url(), "could not report the init error to the Runtime API");
    }
}

impl Startup {
    /// Initialises logging, loads the SDK configuration and the config (`GREENLIGHT_CONFIG`).
    pub async fn load() -> Result<Self, StartupError> {
        crate::telemetry::init();
        let sdk = crate::aws::sdk_config().await;
        let loaded = match ConfigSource::from_env() {
            Ok(source) => Config::load(&source, &aws_sdk_ssm::Client::new(&sdk)).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(config) => Ok(Self { sdk, config }),
            Err(error) => {
                tracing::error!(error = %error, "cold start failed: the config cannot be used");
                Err(StartupError { sdk, error })
            }
        }
    }

    /// The ledger's table: `GREENLIGHT_LEDGER_TABLE`, else the config's `[ledger] table`.
    pub fn ledger(&self) -> Option<Arc<dyn Ledger>> {
        let table = std::env::var("GREENLIGHT_LEDGER_TABLE")
            .ok()
            .or(self.config.ledger_table.clone())?;
        Some(Arc::new(DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
        )))
    }
}
