//! Greenlight's configuration: one TOML document shared by the three functions.
//!
//! Read at cold start from `GREENLIGHT_CONFIG`: a file path, or `ssm:<parameter-name>` (so
//! onboarding an app needs no redeploy), and read again by a warm function once the copy it
//! uses is older than `GREENLIGHT_CONFIG_MAX_AGE_S` ([`crate::startup::ConfigRefresh`]). Only what cannot be discovered from AWS is
//! configured: an app names its ECR repository and where it deploys, as its ECS service
//! (`cluster`, `service`), its CodeDeploy deployment group (`application`, `deployment_group`),
//! or both; the blue/green engine, task definition, container and target groups are read from
//! AWS ([`crate::engine`]). A service deployed by CodeDeploy needs its group named.
//! A bad document fails the cold start with a message that names the offending key.

mod approval;
mod source;

pub use approval::{
    ApprovalSettings, APPROVAL_TIMEOUT_DEFAULT_MINUTES, APPROVAL_TIMEOUT_MAX_MINUTES,
};
pub use source::ConfigSource;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::EngineKind;
use crate::tag_rule::{TagRule, DEFAULT_TAG_PATTERN};

/// Lifecycle events of an ECS blue/green deployment that may run a hook function.
pub const ECS_HOOK_EVENTS: &[&str] = &[
    "BeforeInstall",
    "AfterInstall",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Never carries a value from the document (it may hold a webhook URL): the line, and
    /// the problem with every quoted value taken out.
    #[error("config line {line}: {problem}")]
    Syntax { line: usize, problem: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
    #[error("cannot read config file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read config parameter {name}: {message}")]
    Parameter { name: String, message: String },
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
}

/// A parse error as a line number and a problem, with values redacted: serde and toml quote
/// values in double quotes (`invalid type: string "https://…"`), keys in backticks.
fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(0);
    ConfigError::Syntax {
        line,
        problem: crate::error::redact_quoted(e.message()),
    }
}

impl ConfigError {
    /// The errorType a failed cold start reports to Lambda.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "ConfigSyntax",
            Self::Invalid { .. } => "ConfigInvalid",
            Self::File { .. } | Self::Parameter { .. } => "ConfigUnreadable",
            Self::MissingEnv(_) => "ConfigMissing",
        }
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    apps: BTreeMap<String, RawApp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    tag_pattern: Option<String>,
    hooks: Option<Vec<String>>,
    busy_policy: Option<BusyPolicy>,
    #[serde(default)]
    health: RawHealth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    table: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    webhook: Option<String>,
    token: Option<String>,
    mention_on_failure: Option<String>,
    channel: Option<String>,
    announce_outside: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<String>,
    url: Option<String>,
    host: Option<String>,
    expect_status: Option<u16>,
    successes: Option<u32>,
    failures: Option<u32>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    check_task_set: Option<bool>,
    check_target_health: Option<bool>,
    check_http: Option<bool>,
    window_s: Option<u64>,
    check_production: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    repository: Option<String>,
    application: Option<String>,
    deployment_group: Option<String>,
    cluster: Option<String>,
    service: Option<String>,
    engine: Option<EngineKind>,
    container: Option<String>,
    tag_pattern: Option<String>,
    hooks: Option<Vec<String>>,
    environment: Option<String>,
    busy_policy: Option<BusyPolicy>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    approval: approval::RawApproval,
}

/// What a push does when its deployment group is already deploying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BusyPolicy {
    /// Wait for the running deployment to end, then ship the newest waiting release.
    #[default]
    Wait,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Path probed through the test listener of the deployment group.
    pub path: String,
    /// Explicit URL to probe instead of the test listener (from config only, never from events).
    pub url: Option<String>,
    /// The name the probe asks for (Host header and TLS server name) while connecting to the
    /// listener's address: for HTTPS test listeners and listeners that route by host header.
    pub host: Option<String>,
    pub expect_status: u16,
    /// Consecutive good answers needed.
    pub successes: u32,
    /// Consecutive bad answers that fail the probe at once.
    pub failures: u32,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub check_task_set: bool,
    pub check_target_health: bool,
    pub check_http: bool,
    /// How long green may take to pass, from the first check (native hook rounds).
    pub window_s: u64,
    /// Native ECS: check green again at the production traffic stages the hook is registered
    /// for (it is always checked at POST_TEST_TRAFFIC_SHIFT).
    pub check_production: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlackSettings {
    /// A secret reference: `secretsmanager:<id>`, `ssm:<name>` or `env:<VAR>`.
    pub webhook: Option<String>,
    /// A Slack app's bot token, as a secret reference like the webhook: with it, each release
    /// run is one message in `channel`, edited as it moves, its details in the thread.
    pub token: Option<String>,
    pub mention_on_failure: Option<String>,
    pub channel: Option<String>,
    /// Whether deployments that Greenlight did not start (a service's creation, a manual or
    /// infrastructure-as-code update) are announced, as such.
    pub announce_outside: bool,
}

/// A CodeDeploy deployment group, by application and group name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName {
    pub application: String,
    pub deployment_group: String,
}

/// The longest ECR repository name.
const REPOSITORY_MAX: usize = 256;

/// Whether `name` is a plain ECS cluster or service name (not an ARN).
fn is_ecs_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An ECS service, by cluster and service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    pub cluster: String,
    pub service: String,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: String,
    pub repository: String,
    /// The CodeDeploy deployment group (needed for a service CodeDeploy deploys).
    pub group: Option<GroupName>,
    /// The ECS service (needed for one ECS deploys itself; read from the group otherwise).
    pub service: Option<ServiceName>,
    /// The engine the operator pinned; a service that disagrees is not deployed.
    pub engine: Option<EngineKind>,
    pub container: Option<String>,
    pub environment: String,
    pub tag_rule: TagRule,
    pub hooks: Vec<String>,
    pub busy_policy: BusyPolicy,
    pub health: HealthSettings,
    pub slack: SlackSettings,
    pub approval: ApprovalSettings,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub apps: Vec<AppConfig>,
    pub ledger_table: Option<String>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let default_pattern = raw
            .defaults
            .tag_pattern
            .clone()
            .unwrap_or_else(|| DEFAULT_TAG_PATTERN.to_string());
        let default_hooks = raw
            .defaults
            .hooks
            .clone()
            .unwrap_or_else(|| vec!["AfterAllowTestTraffic".to_string()]);
        check_hooks("defaults.hooks", &default_hooks)?;
        TagRule::new(&default_pattern)
            .map_err(|e| invalid("defaults.tag_pattern", e.to_string()))?;

        let mut apps = Vec::with_capacity(raw.apps.len());
        for (name, app) in raw.apps {
            let key = |field: &str| format!("apps.{name}.{field}");
            let required = |value: Option<String>, field: &str| {
                value
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| invalid(key(field), "is required"))
            };
            let pattern = app.tag_pattern.unwrap_or_else(|| default_pattern.clone());
            let tag_rule =
                TagRule::new(&pattern).map_err(|e| invalid(key("tag_pattern"), e.to_string()))?;
            let hooks = app.hooks.unwrap_or_else(|| default_hooks.clone());
            check_hooks(&key("hooks"), &hooks)?;
            let health = merge_health(&raw.defaults.health, &app.health, &key("health"))?;
            let slack = SlackSettings {
                webhook: app.slack.webhook.or_else(|| raw.slack.webhook.clone()),
                token: app.slack.token.or_else(|| raw.slack.token.clone()),
                mention_on_failure: app
                    .slack
                    .mention_on_failure
                    .or_else(|| raw.slack.mention_on_failure.clone()),
                channel: app.slack.channel.or_else(|| raw.slack.channel.clone()),
                announce_outside: app
                    .slack
                    .announce_outside
                    .or(raw.slack.announce_outside)
                    .unwrap_or(true),
            };
            if let Some(webhook) = &slack.webhook {
                crate::secrets::SecretRef::parse(webhook)
                    .map_err(|problem| invalid(key("slack.webhook"), problem))?;
            }
            if let Some(token) = &slack.token {
                crate::secrets::SecretRef::parse(token)
                    .map_err(|problem| invalid(key("slack.token"), problem))?;
                if slack.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    return Err(invalid(
                        key("slack.channel"),
                        "a Slack app token (slack.token) posts to a channel: name it",
                    ));
                }
            }
            let group = match (app.application, app.deployment_group) {
                (None, None) => None,
                (application, group) => Some(GroupName {
                    application: required(application, "application")?,
                    deployment_group: required(group, "deployment_group")?,
                }),
            };
            let service = match (app.cluster, app.service) {
                (None, None) => None,
                (cluster, service) => {
                    let plain = |value: Option<String>, field: &str| {
                        let value = required(value, field)?;
                        if is_ecs_name(&value) {
                            Ok(value)
                        } else {
                            // An ARN would name the service a second way, which the events
                            // (plain names) and the duplicate check below never match.
                            Err(invalid(
                                key(field),
                                "must be a plain ECS name (letters, digits, `-`, `_`; at most 255), not an ARN",
                            ))
                        }
                    };
                    Some(ServiceName {
                        cluster: plain(cluster, "cluster")?,
                        service: plain(service, "service")?,
                    })
                }
            };
            match app.engine {
                _ if group.is_none() && service.is_none() => {
                    return Err(invalid(
                        key("service"),
                        "is required: name the ECS service (`cluster`, `service`) or its CodeDeploy deployment group (`application`, `deployment_group`)",
                    ))
                }
                Some(EngineKind::CodeDeploy) if group.is_none() => {
                    return Err(invalid(
                        key("deployment_group"),
                        "is required with engine = \"codedeploy\"",
                    ))
                }
                Some(EngineKind::Ecs) if service.is_none() => {
                    return Err(invalid(key("service"), "is required with engine = \"ecs\""))
                }
                _ => {}
            }
            let approval = approval::approval_of(app.approval, &key)?;
            let repository = required(app.repository, "repository")?;
            if repository.len() > REPOSITORY_MAX {
                return Err(invalid(
                    key("repository"),
                    "is longer than an ECR repository name can be (256)",
                ));
            }
            apps.push(AppConfig {
                repository,
                group,
                service,
                engine: app.engine,
                container: app.container,
                environment: app.environment.unwrap_or_else(|| "production".to_string()),
                tag_rule,
                hooks,
                busy_policy: app
                    .busy_policy
                    .or(raw.defaults.busy_policy)
                    .unwrap_or_default(),
                health,
                slack,
                approval,
                name,
            });
        }
        for (i, a) in apps.iter().enumerate() {
            for b in &apps[i + 1..] {
                if a.repository == b.repository {
                    return Err(invalid(
                        format!("apps.{}.repository", b.name),
                        format!(
                            "repository `{}` is already used by app `{}`",
                            b.repository, a.name
                        ),
                    ));
                }
                if a.group.is_some() && a.group == b.group {
                    return Err(invalid(
                        format!("apps.{}.deployment_group", b.name),
                        format!("deployment group is already used by app `{}`", a.name),
                    ));
                }
                if a.service.is_some() && a.service == b.service {
                    return Err(invalid(
                        format!("apps.{}.service", b.name),
                        format!("service is already used by app `{}`", a.name),
                    ));
                }
            }
        }
        Ok(Self {
            apps,
            ledger_table: raw.ledger.table,
        })
    }

    pub fn app_for_repository(&self, repository: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.repository == repository)
    }

    pub fn app_for_deployment_group(&self, application: &str, group: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| {
            a.group
                .as_ref()
                .is_some_and(|g| g.application == application && g.deployment_group == group)
        })
    }

    pub fn app_for_service(&self, cluster: &str, service: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| {
            a.service
                .as_ref()
                .is_some_and(|s| s.cluster == cluster && s.service == service)
        })
    }

    pub fn app_named(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub fn manages_application(&self, application: &str) -> bool {
        self.apps.iter().any(|a| {
            a.group
                .as_ref()
                .is_some_and(|g| g.application == application)
        })
    }
}

fn check_hooks(key: &str, hooks: &[String]) -> Result<(), ConfigError> {
    for hook in hooks {
        if !ECS_HOOK_EVENTS.contains(&hook.as_str()) {
            return Err(invalid(
                key,
                format!(
                    "`{hook}` is not an ECS lifecycle hook (one of {})",
                    ECS_HOOK_EVENTS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn merge_health(
    defaults: &RawHealth,
    app: &RawHealth,
    key: &str,
) -> Result<HealthSettings, ConfigError> {
    let settings = HealthSettings {
        path: app
            .path
            .clone()
            .or_else(|| defaults.path.clone())
            .unwrap_or_else(|| "/".to_string()),
        url: app.url.clone().or_else(|| defaults.url.clone()),
        host: app.host.clone().or_else(|| defaults.host.clone()),
        expect_status: app.expect_status.or(defaults.expect_status).unwrap_or(200),
        successes: app.successes.or(defaults.successes).unwrap_or(3),
        failures: app.failures.or(defaults.failures).unwrap_or(3),
        interval_ms: app.interval_ms.or(defaults.interval_ms).unwrap_or(2000),
        timeout_ms: app.timeout_ms.or(defaults.timeout_ms).unwrap_or(2000),
        check_task_set: app
            .check_task_set
            .or(defaults.check_task_set)
            .unwrap_or(true),
        check_target_health: app
            .check_target_health
            .or(defaults.check_target_health)
            .unwrap_or(true),
        check_http: app.check_http.or(defaults.check_http).unwrap_or(true),
        window_s: app.window_s.or(defaults.window_s).unwrap_or(15 * 60),
        check_production: app
            .check_production
            .or(defaults.check_production)
            .unwrap_or(false),
    };
    if !settings.path.starts_with('/') {
        return Err(invalid(format!("{key}.path"), "must start with `/`"));
    }
    if let Some(host) = &settings.host {
        let name_chars = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if host.is_empty() || host.len() > 253 || !host.chars().all(name_chars) {
            return Err(invalid(
                format!("{key}.host"),
                "must be a DNS name (letters, digits, `.` and `-`), without scheme or port",
            ));
        }
    }
    if let Some(url) = &settings.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                format!("{key}.url"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    if settings.successes == 0 {
        return Err(invalid(format!("{key}.successes"), "must be at least 1"));
    }
    if settings.failures == 0 {
        return Err(invalid(format!("{key}.failures"), "must be at least 1"));
    }
    // ECS waits at most 24 hours at a stage.
    if !(1..=24 * 3600).contains(&settings.window_s) {
        return Err(invalid(
            format!("{key}.window_s"),
            "must be between 1 and 86400 seconds",
        ));
    }
    if settings.timeout_ms == 0 {
        return Err(invalid(format!("{key}.timeout_ms"), "must be at least 1"));
    }
    if !(100..=599).contains(&settings.expect_status) {
        return Err(invalid(
            format!("{key}.expect_status"),
            "must be an HTTP status code",
        ));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slack_app_token_is_a_secret_reference_with_a_channel() {
        let base = "[apps.web1]\nrepository = 'web1'\napplication = 'web1'\ndeployment_group = 'g'\n[apps.web1.slack]\n";
        let with = |slack: &str| Config::parse(&format!("{base}{slack}"));
        let app =
            with("token = 'secretsmanager:greenlight/slack/app'\nchannel = 'C0DEPLOYS'\n").unwrap();
        let slack = &app.app_named("web1").unwrap().slack;
        assert_eq!(
            slack.token.as_deref(),
            Some("secretsmanager:greenlight/slack/app")
        );
        let no_channel = with("token = 'secretsmanager:greenlight/slack/app'\n")
            .unwrap_err()
            .to_string();
        assert!(
            no_channel.contains("apps.web1.slack.channel"),
            "{no_channel}"
        );
        let raw = with("token = 'xoxb-1234-secret'\nchannel = 'C0DEPLOYS'\n")
            .unwrap_err()
            .to_string();
        assert!(raw.contains("apps.web1.slack.token"), "{raw}");
        assert!(!raw.contains("xoxb-1234-secret"), "{raw}");
    }

    #[test]
    fn a_webhook_under_a_wrong_key_or_type_never_reaches_the_error() {
        const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let documents = [
            format!("[slack]\nwebhook_url = '{URL}'\n"),
            format!("[slack]\nwebhook = {{ url = '{URL}' }}\n"),
            format!("[slack]\nmention_on_failure = ['{URL}']\n"),
            format!("[apps.web1]\nrepository = 'web1'\napplication = 'web1'\ndeployment_group = 'g'\n[apps.web1.health]\nsuccesses = '{URL}'\n"),
            format!("[apps.web1.slack]\nhook = \"{URL}\"\n"),
            format!("[slack]\nwebhook = '{URL}\n"),
            format!("{URL}\n"),
            format!("[ledger]\ntable = 7\nsecret = '{URL}'\n"),
        ];
        for doc in &documents {
            let err = Config::parse(doc).expect_err(doc);
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("SECRET"), "{shown}");
                assert!(!shown.contains("hooks.slack.com"), "{shown}");
            }
        }
        let err = Config::parse(&documents[0]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config line 2: unknown field `webhook_url`"),
            "{err}"
        );
    }

    const EXAMPLE: &str = r#"
[defaults]
tag_pattern = '^v[0-9A-Za-z._-]+$'
hooks = ["AfterAllowTestTraffic"]

[slack]
webhook = "secretsmanager:greenlight/slack"
mention_on_failure = "<!here>"

[apps.web1]
repository = "web1"
application = "web1"
deployment_group = "web1-bluegreen"
[apps.web1.health]
path = "/api/health"
successes = 2

[apps.web2]
repository = "web2"
application = "web2"
deployment_group = "web2-bluegreen"
container = "next"
[apps.web2.slack]
webhook = "ssm:/greenlight/slack/web2"
"#;

    #[test]
    fn example_config_parses_with_defaults_applied() {
        let config = Config::parse(EXAMPLE).unwrap();
        let web1 = config.app_for_repository("web1").unwrap();
        assert_eq!(
            web1.group.as_ref().map(|g| g.deployment_group.as_str()),
            Some("web1-bluegreen")
        );
        assert_eq!(web1.service, None);
        assert_eq!(web1.hooks, vec!["AfterAllowTestTraffic"]);
        assert_eq!(web1.health.path, "/api/health");
        assert_eq!(web1.health.successes, 2);
        assert_eq!(web1.health.expect_status, 200);
        assert_eq!(
            web1.slack.webhook.as_deref(),
            Some("secretsmanager:greenlight/slack")
        );
        assert_eq!(web1.environment, "production");
        let web2 = config
            .app_for_deployment_group("web2", "web2-bluegreen")
            .unwrap();
        assert_eq!(web2.container.as_deref(), Some("next"));
        assert_eq!(
            web2.slack.webhook.as_deref(),
            Some("ssm:/greenlight/slack/web2")
        );
        assert_eq!(web2.slack.mention_on_failure.as_deref(), Some("<!here>"));
        assert!(config.app_for_repository("web3").is_none());
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn missing_deployment_group_names_the_key() {
        let err = error_of("[apps.web1]\nrepository = 'web1'\napplication = 'web1'\n");
        assert_eq!(err, "config key `apps.web1.deployment_group`: is required");
    }

    #[test]
    fn bad_tag_pattern_names_the_key() {
        let err = error_of(
            "[apps.web1]\nrepository='r'\napplication='a'\ndeployment_group='g'\ntag_pattern='^v[('\n",
        );
        assert!(
            err.starts_with("config key `apps.web1.tag_pattern`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_hook_is_rejected() {
        let err = error_of("[defaults]\nhooks = ['AfterEverything']\n");
        assert!(err.starts_with("config key `defaults.hooks`"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = error_of(
            "[apps.web1]\nrepository='r'\napplication='a'\ndeployment_group='g'\nreposity='x'\n",
        );
        assert!(err.contains("reposity"), "{err}");
    }

    #[test]
    fn two_apps_cannot_share_a_repository() {
        let err = error_of(
            "[apps.a]\nrepository='r'\napplication='a'\ndeployment_group='g'\n[apps.b]\nrepository='r'\napplication='b'\ndeployment_group='g'\n",
        );
        assert!(err.starts_with("config key `apps.b.repository`"), "{err}");
    }

    #[test]
    fn webhook_must_be_a_secret_reference() {
        let err = error_of(
            "[slack]\nwebhook='https://hooks.slack.com/services/x'\n[apps.a]\nrepository='r'\napplication='a'\ndeployment_group='g'\n",
        );
        assert!(
            err.starts_with("config key `apps.a.slack.webhook`"),
            "{err}"
        );
        assert!(
            !err.contains("hooks.slack.com"),
            "the URL must not be echoed: {err}"
        );
    }

    #[test]
    fn an_app_names_its_service_its_deployment_group_or_both() {
        let config = Config::parse(
            "[apps.web2]\nrepository='web2'\ncluster='default'\nservice='web2'\n\
             [apps.web3]\nrepository='web3'\ncluster='default'\nservice='web3'\napplication='web3'\ndeployment_group='g3'\nengine='codedeploy'\n",
        )
        .unwrap();
        let web2 = config.app_for_service("default", "web2").unwrap();
        assert_eq!(web2.name, "web2");
        assert_eq!(web2.group, None);
        assert_eq!(web2.engine, None);
        let web3 = config.app_for_deployment_group("web3", "g3").unwrap();
        assert_eq!(web3.engine, Some(EngineKind::CodeDeploy));
        assert_eq!(
            config
                .app_for_service("default", "web3")
                .map(|a| a.name.as_str()),
            Some("web3")
        );
        assert!(config.app_for_service("other", "web2").is_none());
    }

    #[test]
    fn where_an_app_deploys_is_required_and_checked() {
        for (doc, expected) in [
            (
                "[apps.a]\nrepository='r'\n",
                "config key `apps.a.service`: is required: name the ECS service",
            ),
            (
                "[apps.a]\nrepository='r'\ncluster='c'\n",
                "config key `apps.a.service`: is required",
            ),
            (
                "[apps.a]\nrepository='r'\nservice='s'\n",
                "config key `apps.a.cluster`: is required",
            ),
            (
                "[apps.a]\nrepository='r'\ncluster='c'\nservice='s'\nengine='codedeploy'\n",
                "config key `apps.a.deployment_group`: is required with engine",
            ),
            (
                "[apps.a]\nrepository='r'\napplication='a'\ndeployment_group='g'\nengine='ecs'\n",
                "config key `apps.a.service`: is required with engine",
            ),
            (
                "[apps.a]\nrepository='r'\ncluster='c'\nservice='s'\n[apps.b]\nrepository='q'\ncluster='c'\nservice='s'\n",
                "config key `apps.b.service`: service is already used by app `a`",
            ),
            (
                "[apps.a]\nrepository='r'\ncluster='arn:aws:ecs:us-east-1:123456789012:cluster/c'\nservice='s'\n",
                "config key `apps.a.cluster`: must be a plain ECS name",
            ),
            (
                "[apps.a]\nrepository='r'\ncluster='c'\nservice='arn:aws:ecs:us-east-1:123456789012:service/c/s'\n",
                "config key `apps.a.service`: must be a plain ECS name",
            ),
        ] {
            let err = error_of(doc);
            assert!(err.starts_with(expected), "{doc}: {err}");
        }
        let err = error_of("[apps.a]\nrepository='r'\ncluster='c'\nservice='s'\nengine='lambda'\n");
        assert!(err.contains("unknown variant"), "{err}");
    }

    #[test]
    fn an_approval_names_its_approvers_and_a_bounded_wait() {
        let base = "[apps.web1]\nrepository = \"web1\"\ncluster = \"apps\"\nservice = \"web1\"\n";
        let config = Config::parse(&format!(
            "{base}[apps.web1.approval]\nrequired = true\napprovers = [\"U024BE7LH\", \"S0614TZR7\"]\n"
        ))
        .unwrap();
        let approval = &config.apps[0].approval;
        assert!(approval.required);
        assert_eq!(approval.timeout_minutes, 60);
        assert!(approval.allows("U024BE7LH", &[]));
        assert!(approval.allows("U0OTHER", &["S0614TZR7".to_string()]));
        assert!(!approval.allows("U0OTHER", &[]));
        assert!(approval.names_groups());
        // Without the section: no wait.
        assert!(!Config::parse(base).unwrap().apps[0].approval.required);
        for (bad, key) in [
            ("timeout_minutes = 0", "approval.timeout_minutes"),
            ("timeout_minutes = 1441", "approval.timeout_minutes"),
            ("approvers = [\"alice\"]", "approval.approvers"),
            ("approvers = [\"<@U1>\"]", "approval.approvers"),
        ] {
            let err = Config::parse(&format!(
                "{base}[apps.web1.approval]\nrequired = true\n{bad}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("apps.web1.{key}")), "{bad}: {err}");
        }
    }
}
