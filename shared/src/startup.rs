//! What every function does once per cold start: logging, the SDK configuration, the config
//! document, and the release ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_types::SdkConfig;

use crate::config::{Config, ConfigError, ConfigSource};
use crate::http::{Http, Request};
use crate::ledger::{DynamoLedger, Ledger};

pub struct Startup {
    pub sdk: SdkConfig,
    /// HTTP beyond AWS (Slack), on the SDK clients' connector.
    pub http: Http,
    pub config: Config,
    /// Reads the config again when the copy in use is older than its maximum age.
    pub refresh: ConfigRefresh,
    /// Where this cold start's time went so far; [`InitProfile::ready`] logs it.
    pub profile: InitProfile,
}

/// Where a cold start's time goes inside `main`: logging, the SDK configuration (the HTTP
/// client and its trust store), the config document (read and parsed), and the clients and
/// the rest a function builds before it takes its first event. Logged once per cold start, as
/// one line (`scripts/bench` prints it beside the init it measures from outside the process).
#[derive(Debug, Clone)]
pub struct InitProfile {
    started: Instant,
    logging: Duration,
    sdk: Duration,
    config: Duration,
}

impl InitProfile {
    /// Logs the profile (one line) once the function is ready for its first event: the time
    /// since [`Startup::load`] began, split into its phases.
    pub fn ready(&self) {
        let ms = |d: Duration| (d.as_secs_f64() * 100_000.0).round() / 100.0;
        let total = self.started.elapsed();
        let clients = total.saturating_sub(self.logging + self.sdk + self.config);
        tracing::info!(
            init_ms = ms(total),
            logging_ms = ms(self.logging),
            sdk_ms = ms(self.sdk),
            config_ms = ms(self.config),
            clients_ms = ms(clients),
            "cold start: ready for events"
        );
    }
}

/// A function's dependencies, which hold the config it decides with.
pub trait UsesConfig {
    fn config_mut(&mut self) -> &mut Config;
}

/// A warm function's dependencies with their config kept fresh (see [`ConfigRefresh`]).
pub struct Live<D> {
    deps: tokio::sync::RwLock<D>,
    refresh: ConfigRefresh,
}

impl<D: UsesConfig> Live<D> {
    pub fn new(deps: D, refresh: ConfigRefresh) -> Self {
        Self {
            deps: tokio::sync::RwLock::new(deps),
            refresh,
        }
    }

    /// The dependencies for this invocation, with a changed config swapped in first.
    pub async fn current(&self) -> tokio::sync::RwLockReadGuard<'_, D> {
        if let Some(config) = self.refresh.changed().await {
            *self.deps.write().await.config_mut() = config;
        }
        self.deps.read().await
    }
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
    let request = Request::post_json(
        format!("http://{api}/2018-06-01/runtime/init/error"),
        &serde_json::json!({"errorType": error_type, "errorMessage": message}),
    )
    .header("Lambda-Runtime-Function-Error-Type", error_type);
    if let Err(e) = Http::new().send(request, Duration::from_secs(2)).await {
        tracing::warn!(error = %e, "could not report the init error to the Runtime API");
    }
}

impl Startup {
    /// Initialises logging, loads the SDK configuration and the config (`GREENLIGHT_CONFIG`).
    pub async fn load() -> Result<Self, StartupError> {
        let started = Instant::now();
        crate::telemetry::init();
        let logging = started.elapsed();
        let connector = crate::http::connector(crate::aws::CONNECT_TIMEOUT, None);
        let sdk = crate::aws::sdk_config(connector.clone());
        let sdk_ready = started.elapsed();
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let loaded = async {
            let source = ConfigSource::from_env()?;
            let text = source.read(&ssm).await?;
            let config = Config::parse(&text)?;
            let refresh = ConfigRefresh::new(source, ssm.clone(), max_age_from_env(), text);
            Ok::<_, ConfigError>((config, refresh))
        }
        .await;
        match loaded {
            Ok((config, refresh)) => Ok(Self {
                sdk,
                http: Http::on(connector),
                config,
                refresh,
                profile: InitProfile {
                    started,
                    logging,
                    sdk: sdk_ready - logging,
                    config: started.elapsed() - sdk_ready,
                },
            }),
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

/// How old the config in use may get before a warm function reads it again:
/// `GREENLIGHT_CONFIG_MAX_AGE_S`, 60 seconds by default.
fn max_age_from_env() -> Duration {
    std::env::var("GREENLIGHT_CONFIG_MAX_AGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(60))
}

/// The longest a refresh may delay an invocation; a slower read keeps the config in use.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// Keeps a warm function's config fresh: an app added to the parameter is deployed, checked and
/// announced within the maximum age, without a redeploy or a cold start.
///
/// Consulted before each invocation: nothing is read while the copy in use is younger than the
/// maximum age; after that, one read (a GetParameter for `ssm:`), bounded by
/// [`REFRESH_TIMEOUT`]. A read that fails or a document that does not parse keeps the config in
/// use, with one warning line naming the problem (never a value), until the next maximum age.
pub struct ConfigRefresh {
    source: ConfigSource,
    ssm: aws_sdk_ssm::Client,
    max_age: Duration,
    state: tokio::sync::Mutex<RefreshState>,
}

struct RefreshState {
    read_at: Instant,
    text: String,
}

impl ConfigRefresh {
    pub fn new(
        source: ConfigSource,
        ssm: aws_sdk_ssm::Client,
        max_age: Duration,
        text_in_use: String,
    ) -> Self {
        Self {
            source,
            ssm,
            max_age,
            state: tokio::sync::Mutex::new(RefreshState {
                read_at: Instant::now(),
                text: text_in_use,
            }),
        }
    }

    /// A changed config, when the copy in use is due for a read and the source now holds a
    /// different, valid document; `None` otherwise.
    pub async fn changed(&self) -> Option<Config> {
        let mut state = self.state.lock().await;
        if state.read_at.elapsed() < self.max_age {
            return None;
        }
        state.read_at = Instant::now();
        let text = match tokio::time::timeout(REFRESH_TIMEOUT, self.source.read(&self.ssm)).await {
            Ok(Ok(text)) => text,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "config not refreshed: keeping the one in use");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = REFRESH_TIMEOUT.as_millis() as u64,
                    "config not refreshed: the read timed out; keeping the one in use"
                );
                return None;
            }
        };
        if text == state.text {
            return None;
        }
        match Config::parse(&text) {
            Ok(config) => {
                state.text = text;
                tracing::info!(
                    apps = config.apps.len(),
                    "config refreshed: a changed document is in use"
                );
                Some(config)
            }
            Err(error) => {
                tracing::warn!(error = %error, "config not refreshed: the new document is invalid; keeping the one in use");
                None
            }
        }
    }
}
