//! The AppSpec of an ECS blue/green deployment, and the deployment description that lets the
//! notifier and the health hook read a deployment back as a release.

use serde_json::json;

/// What the AppSpec names: the new revision, the load-balanced container, the hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub task_definition_arn: String,
    pub container_name: String,
    pub container_port: i32,
    /// `(lifecycle event, function name or ARN)`.
    pub hooks: Vec<(String, String)>,
}

impl AppSpec {
    /// The AppSpec as the JSON document CodeDeploy accepts as `AppSpecContent`.
    pub fn to_json(&self) -> String {
        let hooks: Vec<_> = self
            .hooks
            .iter()
            .map(|(event, function)| json!({ event: function }))
            .collect();
        json!({
            "version": 0.0,
            "Resources": [{
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": self.task_definition_arn,
                        "LoadBalancerInfo": {
                            "ContainerName": self.container_name,
                            "ContainerPort": self.container_port,
                        }
                    }
                }
            }],
            "Hooks": hooks,
        })
        .to_string()
    }

    /// The task definition an AppSpec document deploys (JSON; the form Greenlight writes).
    pub fn task_definition_of(content: &str) -> Option<String> {
        let doc: serde_json::Value = serde_json::from_str(content).ok()?;
        doc["Resources"]
            .as_array()?
            .iter()
            .find_map(|r| r["TargetService"]["Properties"]["TaskDefinition"].as_str())
            .map(str::to_string)
    }
}

/// The deployment description: `greenlight app=web1 version=v1.4.2 digest=sha256:...`, and
/// `request=<id>` when an operator's request deployed it (so that a resumed request never takes
/// an earlier deployment of the same digest for its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseDescription {
    pub app: String,
    pub version: String,
    pub digest: String,
    pub request: Option<String>,
}

const DESCRIPTION_PREFIX: &str = "greenlight";

impl std::fmt::Display for ReleaseDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{DESCRIPTION_PREFIX} app={} version={} digest={}",
            self.app, self.version, self.digest
        )?;
        match &self.request {
            Some(id) => write!(f, " request={id}"),
            None => Ok(()),
        }
    }
}

impl ReleaseDescription {
    /// Reads a description back; `None` for deployments Greenlight did not start.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        if words.next()? != DESCRIPTION_PREFIX {
            return None;
        }
        let (mut app, mut version, mut digest, mut request) = (None, None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("app", v) => app = Some(v.to_string()),
                ("version", v) => version = Some(v.to_string()),
                ("digest", v) => digest = Some(v.to_string()),
                ("request", v) => request = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Self {
            app: app?,
            version: version?,
            digest: digest?,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AppSpec {
        AppSpec {
            task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8".into(),
            container_name: "web1".into(),
            container_port: 3000,
            hooks: vec![(
                "AfterAllowTestTraffic".into(),
                "CodeDeployHook_greenlight".into(),
            )],
        }
    }

    #[test]
    fn appspec_names_revision_container_port_and_hooks() {
        let doc: serde_json::Value = serde_json::from_str(&spec().to_json()).unwrap();
        assert_eq!(
            doc,
            json!({
                "version": 0.0,
                "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
                    "TaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8",
                    "LoadBalancerInfo": {"ContainerName": "web1", "ContainerPort": 3000}}}}],
                "Hooks": [{"AfterAllowTestTraffic": "CodeDeployHook_greenlight"}]
            })
        );
    }

    #[test]
    fn appspec_task_definition_reads_back() {
        assert_eq!(
            AppSpec::task_definition_of(&spec().to_json()).as_deref(),
            Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web1:8")
        );
        assert_eq!(AppSpec::task_definition_of("version: 0.0"), None);
    }

    #[test]
    fn description_round_trips() {
        let d = ReleaseDescription {
            app: "web1".into(),
            version: "v1.4.2".into(),
            digest: "sha256:abc".into(),
            request: None,
        };
        assert_eq!(
            d.to_string(),
            "greenlight app=web1 version=v1.4.2 digest=sha256:abc"
        );
        assert_eq!(ReleaseDescription::parse(&d.to_string()), Some(d.clone()));
        let requested = ReleaseDescription {
            request: Some("0b6f6d2c-5b8e".into()),
            ..d
        };
        assert_eq!(
            requested.to_string(),
            "greenlight app=web1 version=v1.4.2 digest=sha256:abc request=0b6f6d2c-5b8e"
        );
        assert_eq!(
            ReleaseDescription::parse(&requested.to_string()),
            Some(requested)
        );
    }

    #[test]
    fn foreign_descriptions_are_not_releases() {
        assert_eq!(ReleaseDescription::parse("manual hotfix"), None);
        assert_eq!(ReleaseDescription::parse("greenlight app=web1"), None);
        assert_eq!(ReleaseDescription::parse(""), None);
    }
}
