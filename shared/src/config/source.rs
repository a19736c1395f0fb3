//! Where the config document lives (`GREENLIGHT_CONFIG`: a file path, or `ssm:<name>`) and
//! how its text is read.

use super::ConfigError;

/// Where the config document lives, as given by `GREENLIGHT_CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(String),
    SsmParameter(String),
}

impl ConfigSource {
    pub fn parse(value: &str) -> Self {
        match value.strip_prefix("ssm:") {
            Some(name) => Self::SsmParameter(name.to_string()),
            None => Self::File(value.to_string()),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        std::env::var("GREENLIGHT_CONFIG")
            .map(|v| Self::parse(&v))
            .map_err(|_| ConfigError::MissingEnv("GREENLIGHT_CONFIG"))
    }

    /// The document's text, from the file or the SSM parameter (SecureString allowed).
    pub async fn read(&self, ssm: &aws_sdk_ssm::Client) -> Result<String, ConfigError> {
        Ok(match self {
            ConfigSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                    path: path.clone(),
                    source,
                })?
            }
            ConfigSource::SsmParameter(name) => ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| ConfigError::Parameter {
                    name: name.clone(),
                    message: crate::error::describe_sdk_error(&e),
                })?
                .parameter
                .and_then(|p| p.value)
                .ok_or_else(|| ConfigError::Parameter {
                    name: name.clone(),
                    message: "parameter has no value".to_string(),
                })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_source_reads_ssm_prefix() {
        assert_eq!(
            ConfigSource::parse("ssm:/greenlight/config"),
            ConfigSource::SsmParameter("/greenlight/config".into())
        );
        assert_eq!(
            ConfigSource::parse("./greenlight.toml"),
            ConfigSource::File("./greenlight.toml".into())
        );
    }
}
