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

/// The value of one tag, by key.
pub fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

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

/// What registering `next` changes from `current`, one line per difference, for `greenlight
/// plan`: containers by name, Greenlight's and other tags by key, and every other field the
/// rewrite carries (which should not change; a line here would say it did).
pub fn revision_changes(
    current: &TaskDefinition,
    current_tags: &[Tag],
    next: &RegisterTaskDefinitionInputBuilder,
) -> Vec<String> {
    let mut changes = vec![];
    let shown = |v: Option<&str>| v.unwrap_or("(none)").to_string();
    let next_containers = next
        .get_container_definitions()
        .as_deref()
        .unwrap_or_default();
    for after in next_containers {
        let name = after.name().unwrap_or("(unnamed)");
        match current
            .container_definitions()
            .iter()
            .find(|c| c.name() == after.name())
        {
            None => changes.push(format!("container {name}: added")),
            Some(before) if before == after => {}
            Some(before) if before.image() != after.image() => {
                changes.push(format!(
                    "container {name}: image {} -> {}",
                    shown(before.image()),
                    shown(after.image())
                ));
                let without_image = |c: &aws_sdk_ecs::types::ContainerDefinition| {
                    let mut c = c.clone();
                    c.image = None;
                    c
                };
                if without_image(before) != without_image(after) {
                    changes.push(format!("container {name}: other settings changed"));
                }
            }
            Some(_) => changes.push(format!("container {name}: settings changed")),
        }
    }
    for before in current.container_definitions() {
        if !next_containers.iter().any(|c| c.name() == before.name()) {
            changes.push(format!("container {}: removed", shown(before.name())));
        }
    }
    let tag = |tags: &[Tag], key: &str| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let next_tags = next.get_tags().as_deref().unwrap_or_default();
    let mut keys: Vec<&str> = current_tags
        .iter()
        .chain(next_tags)
        .filter_map(|t| t.key())
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (before, after) = (tag(current_tags, key), tag(next_tags, key));
        if before != after {
            changes.push(format!(
                "tag {key}: {} -> {}",
                shown(before.as_deref()),
                shown(after.as_deref())
            ));
        }
    }
    let carried = [
        (
            "family",
            format!("{:?}", current.family),
            format!("{:?}", next.get_family()),
        ),
        (
            "task role",
            format!("{:?}", current.task_role_arn),
            format!("{:?}", next.get_task_role_arn()),
        ),
        (
            "execution role",
            format!("{:?}", current.execution_role_arn),
            format!("{:?}", next.get_execution_role_arn()),
        ),
        (
            "network mode",
            format!("{:?}", current.network_mode),
            format!("{:?}", next.get_network_mode()),
        ),
        (
            "cpu",
            format!("{:?}", current.cpu),
            format!("{:?}", next.get_cpu()),
        ),
        (
            "memory",
            format!("{:?}", current.memory),
            format!("{:?}", next.get_memory()),
        ),
        (
            "volumes",
            format!("{:?}", current.volumes),
            format!("{:?}", next.get_volumes()),
        ),
        (
            "runtime platform",
            format!("{:?}", current.runtime_platform),
            format!("{:?}", next.get_runtime_platform()),
        ),
    ];
    for (field, before, after) in carried {
        if before != after {
            changes.push(format!("{field}: {before} -> {after}"));
        }
    }
    changes
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

    #[tokio::test]
    async fn the_plan_lists_the_image_and_tags_a_release_changes_and_nothing_else() {
        let (current, tags) = described().await;
        let next = next_revision(&current, &tags, &release()).unwrap();
        assert_eq!(
            revision_changes(&current, &tags, &next),
            vec![
                format!("container web1: image 123456789012.dkr.ecr.us-east-1.amazonaws.com/web1-repository -> {IMAGE}"),
                "tag greenlight:app: (none) -> web1".to_string(),
                format!("tag greenlight:digest: (none) -> {DIGEST}"),
                "tag greenlight:version: v1.4.1 -> v1.4.2".to_string(),
            ]
        );
        // A change the rewrite should never make is shown, not hidden.
        let changed = next.clone().cpu("4096");
        assert!(revision_changes(&current, &tags, &changed)
            .iter()
            .any(|c| c.starts_with("cpu: ")));
        // The same image again: only nothing, or tags, change.
        let (mut same, _) = described().await;
        same.container_definitions.as_mut().unwrap()[0].image = Some(IMAGE.into());
        let again = next_revision(&same, &tags, &release()).unwrap();
        assert!(revision_changes(&same, &tags, &again)
            .iter()
            .all(|c| c.starts_with("tag ")));
    }
}
