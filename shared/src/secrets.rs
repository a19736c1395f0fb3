//! Secret references (`secretsmanager:<id>`, `ssm:<name>`, `env:<VAR>`) and their resolution.
//!
//! Values are read once per cold start by the caller and never logged: [`Secret`]'s Debug
//! output is redacted.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    SecretsManager(String),
    Ssm(String),
    /// For local runs only.
    Env(String),
}

impl SecretRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, name) = text
            .split_once(':')
            .filter(|(_, name)| !name.is_empty())
            .ok_or_else(|| {
                "must be `secretsmanager:<id>`, `ssm:<name>` or `env:<VAR>`".to_string()
            })?;
        match scheme {
            "secretsmanager" => Ok(Self::SecretsManager(name.to_string())),
            "ssm" => Ok(Self::Ssm(name.to_string())),
            "env" => Ok(Self::Env(name.to_string())),
            _ => Err("must be `secretsmanager:<id>`, `ssm:<name>` or `env:<VAR>` (never the secret itself)".to_string()),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecretsManager(id) => write!(f, "secretsmanager:{id}"),
            Self::Ssm(name) => write!(f, "ssm:{name}"),
            Self::Env(var) => write!(f, "env:{var}"),
        }
    }
}

/// A secret value. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read secret {reference}: {message}")]
pub struct SecretError {
    pub reference: String,
    pub message: String,
}

/// Reads secrets from Secrets Manager or SSM Parameter Store.
#[derive(Clone, Debug)]
pub struct SecretReader {
    pub secrets_manager: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl SecretReader {
    pub async fn read(&self, reference: &SecretRef) -> Result<Secret, SecretError> {
        let fail = |message: String| SecretError {
            reference: reference.to_string(),
            message,
        };
        let value = match reference {
            SecretRef::SecretsManager(id) => {
                self.secrets_manager
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| fail(crate::error::describe_sdk_error(&e)))?
                    .secret_string
            }
            SecretRef::Ssm(name) => self
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| fail(crate::error::describe_sdk_error(&e)))?
                .parameter
                .and_then(|p| p.value),
            SecretRef::Env(var) => std::env::var(var).ok(),
        };
        value
            .map(|v| Secret::new(v.trim()))
            .filter(|s| !s.expose().is_empty())
            .ok_or_else(|| fail("the secret is empty".to_string()))
    }
}

/// Where secrets come from (Secrets Manager, SSM, or the environment for local runs): a port,
/// so that handlers are tested without AWS.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError>;
}

#[async_trait::async_trait]
impl SecretSource for SecretReader {
    async fn read(&self, r: &SecretRef) -> Result<Secret, SecretError> {
        SecretReader::read(self, r).await
    }
}

/// Secrets already read during this cold start, by reference: each is read once (the value
/// never leaves the process, the log names the reference only).
#[derive(Default)]
pub struct SecretCache(tokio::sync::Mutex<std::collections::HashMap<String, Secret>>);

impl SecretCache {
    /// The secret `reference` names, read from `source` the first time.
    pub async fn get(
        &self,
        source: &dyn SecretSource,
        reference: &SecretRef,
    ) -> Result<Secret, SecretError> {
        let key = reference.to_string();
        let mut cache = self.0.lock().await;
        if let Some(secret) = cache.get(&key) {
            return Ok(secret.clone());
        }
        let secret = source.read(reference).await?;
        tracing::info!(secret_ref = %key, "secret read (reference only, never the value)");
        cache.insert(key, secret.clone());
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        assert_eq!(
            SecretRef::parse("secretsmanager:greenlight/slack"),
            Ok(SecretRef::SecretsManager("greenlight/slack".into()))
        );
        assert_eq!(
            SecretRef::parse("ssm:/greenlight/slack"),
            Ok(SecretRef::Ssm("/greenlight/slack".into()))
        );
        assert_eq!(
            SecretRef::parse("env:SLACK_WEBHOOK"),
            Ok(SecretRef::Env("SLACK_WEBHOOK".into()))
        );
    }

    #[test]
    fn a_plain_url_is_not_a_reference_and_is_not_echoed() {
        let err = SecretRef::parse("https://hooks.slack.com/services/T/B/x").unwrap_err();
        assert!(!err.contains("hooks.slack.com"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("https://hooks.slack.com/services/T/B/x");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
