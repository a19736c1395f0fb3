//! The next task-definition revision of a release: the current one with the app's container
//! running the pushed image, pinned by digest.
//!
//! Every writable field is carried over untouched (cpu, memory, roles, network mode, ports,
//! environment, secrets, volumes, ...) and the read-only fields that DescribeTaskDefinition
//! returns (ARN, revision, status, compatibilities, requiresAttributes, registered*/deregistered*)
//! are dropped, as are inference accelerators (retired by ECS, refused on registration). The input is the SDK's own `TaskDefinition`, so nothing is lost in a
//! translation of ours; the output is the SDK's request builder, sent by the ECS adapter.

use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionInputBuilder;
use aws_sdk_ecs::types::{Tag, TaskDefinition};

/// Tag keys Greenlight writes on each revision it registers.
pub const TAG_APP: &str = "greenlight:app";
pub const TAG_VERSION: &str = "greenlight:version";
pub const TAG_DIGEST: &str = "greenlight:digest";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("task definition {task_definition} has no container named `{container}` (it has: {available})")]
    NoSuchContainer {
        task_definition: String,
        container: String,
        available: String,
    },
    #[error("task definition {0} has no family")]
    NoFamily(String),
}

/// What a release changes in the task definition.
#[derive(Debug, Clone)]
pub struct ReleaseImage<'a> {
    pub app: &'a str,
    pub container: &'a str,
    pub image: &'a str,
    pub version: &'a str,
    pub digest: &'a str,
}

/// The image a container of the task definition runs, if the container exists.
pub fn container_image<'t>(
    task_definition: &'t TaskDefinition,
    container: &str,
) -> Option<&'t str> {
    task_definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
}

/// Builds the RegisterTaskDefinition request of the next revision. Pure.
pub fn next_revision(
    current: &TaskDefinition,
    current_tags: &[Tag],
    release: &ReleaseImage<'_>,
) -> Result<RegisterTaskDefinitionInputBuilder, RewriteError> {
    let arn = current
        .task_definition_arn()
        .unwrap_or("<unknown>")
        .to_string();
    let family = current
        .family
        .clone()
        .ok_or_else(|| RewriteError::NoFamily(arn.clone()))?;
    let mut containers = current.container_definitions.clone().unwrap_or_default();
    let target = containers
        .iter_mut()
        .find(|c| c.name.as_deref() == Some(release.container))
        .ok_or_else(|| RewriteError::NoSuchContainer {
            task_definition: arn.clone(),
            container: release.container.to_string(),
            available: current
                .container_definitions()
                .iter()
                .filter_map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    target.image = Some(release.image.to_string());

    let ours = [
        (TAG_APP, release.app),
        (TAG_VERSION, release.version),
        (TAG_DIGEST, release.digest),
    ];
    let mut tags: Vec<Tag> = current_tags
        .iter()
        .filter(|t| !ours.iter().any(|(k, _)| t.key() == Some(*k)))
        .cloned()
        .collect();
    tags.extend(
        ours.iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build()),
    );

    Ok(RegisterTaskDefinitionInputBuilder::default()
        .family(family)
        .set_task_role_arn(current.task_role_arn.clone())
        .set_execution_role_arn(current.execution_role_arn.clone())
        .set_network_mode(current.network_mode.clone())
        .set_container_definitions(Some(containers))
        .set_volumes(current.volumes.clone())
        .set_placement_constraints(current.placement_constraints.clone())
        .set_requires_compatibilities(current.requires_compatibilities.clone())
        .set_cpu(current.cpu.clone())
        .set_memory(current.memory.clone())
        .set_tags(Some(tags))
        .set_pid_mode(current.pid_mode.clone())
        .set_ipc_mode(current.ipc_mode.clone())
        .set_proxy_configuration(current.proxy_configuration.clone())
        .set_ephemeral_storage(current.ephemeral_storage.clone())
        .set_runtime_platform(current.runtime_platform.clone())
        .set_enable_fault_injection(current.enable_fault_injection))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_http::{ecs_client_answering, RecordedRequests};
    use serde_json::{json, Value};

    const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378e3a4c1b7d2e9";
    const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378e3a4c1b7d2e9";

    fn reference() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/describe-task-definition-reference.json"
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The reference task definition read through the SDK's own deserializer, as the adapter gets it.
    async fn described() -> (TaskDefinition, Vec<Tag>) {
        let (client, _) = ecs_client_answering(vec![reference().to_string()]);
        let out = client
            .describe_task_definition()
            .task_definition("web1")
            .send()
            .await
            .unwrap();
        (out.task_definition.unwrap(), out.tags.unwrap_or_default())
    }

    /// What the SDK puts on the wire for the rewritten request.
    async fn registered_body(input: RegisterTaskDefinitionInputBuilder) -> Value {
        let answer = json!({"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/CODE-DEPLOY:8"}});
        let (client, requests): (_, RecordedRequests) =
            ecs_client_answering(vec![answer.to_string()]);
        input.send_with(&client).await.unwrap();
        let bodies = requests.bodies();
        serde_json::from_str(&bodies[0]).unwrap()
    }

    fn release() -> ReleaseImage<'static> {
        ReleaseImage {
            app: "web1",
            container: "web1",
            image: IMAGE,
            version: "v1.4.2",
            digest: DIGEST,
        }
    }

    #[tokio::test]
    async fn new_revision_pins_the_image_and_preserves_every_other_field() {
        let (current, tags) = described().await;
        let body = registered_body(next_revision(&current, &tags, &release()).unwrap()).await;

        let mut expected = reference()["taskDefinition"].clone();
        let map = expected.as_object_mut().unwrap();
        for read_only in [
            "taskDefinitionArn",
            "revision",
            "status",
            "requiresAttributes",
            "compatibilities",
            "registeredAt",
            "registeredBy",
        ] {
            map.remove(read_only);
        }
        map["containerDefinitions"][0]["image"] = json!(IMAGE);
        map.insert(
            "tags".into(),
            json!([
                {"key": "team", "value": "frontend"},
                {"key": "greenlight:app", "value": "web1"},
                {"key": "greenlight:version", "value": "v1.4.2"},
                {"key": "greenlight:digest", "value": DIGEST},
            ]),
        );
        assert_eq!(body, expected);
        // The reference's tricky fields survive: EC2, awsvpc, memoryReservation only, hostPort 0.
        assert_eq!(body["requiresCompatibilities"], json!(["EC2"]));
        assert_eq!(body["networkMode"], json!("awsvpc"));
        assert_eq!(
            body["containerDefinitions"][0]["memoryReservation"],
            json!(256)
        );
        assert!(body["containerDefinitions"][0].get("memory").is_none());
        assert_eq!(
            body["containerDefinitions"][0]["portMappings"][0]["hostPort"],
            json!(0)
        );
    }

    #[tokio::test]
    async fn unknown_container_is_a_clear_error() {
        let (current, tags) = described().await;
        let err = next_revision(
            &current,
            &tags,
            &ReleaseImage {
                container: "api",
                ..release()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "task definition arn:aws:ecs:us-east-1:123456789012:task-definition/CODE-DEPLOY:7 has no container named `api` (it has: web1)"
        );
    }

    #[tokio::test]
    async fn container_image_reads_the_running_image() {
        let (current, _) = described().await;
        assert_eq!(
            container_image(&current, "web1"),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/web1-repository")
        );
        assert_eq!(container_image(&current, "api"), None);
    }
}
