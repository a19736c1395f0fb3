//! ECS: the service a deployment group deploys, its task definition, new revisions, task sets.

use async_trait::async_trait;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionInputBuilder;
use aws_sdk_ecs::types::{Tag, TaskDefinition, TaskDefinitionField};

use crate::error::{AwsError, AwsErrorKind};

/// The load-balanced container of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancedContainer {
    pub container_name: String,
    pub container_port: i32,
    pub target_group_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsServiceInfo {
    pub task_definition_arn: String,
    pub load_balancers: Vec<LoadBalancedContainer>,
}

/// The state of one task set as ECS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSetState {
    pub id: String,
    pub task_definition_arn: Option<String>,
    pub stability: Option<String>,
    pub desired_count: i32,
    pub running_count: i32,
    pub target_group_arn: Option<String>,
}

#[async_trait]
pub trait EcsApi: Send + Sync {
    async fn service(&self, cluster: &str, service: &str) -> Result<EcsServiceInfo, AwsError>;
    /// The task definition and its tags.
    async fn task_definition(&self, arn: &str) -> Result<(TaskDefinition, Vec<Tag>), AwsError>;
    /// Registers a revision; returns its ARN.
    async fn register_task_definition(
        &self,
        request: RegisterTaskDefinitionInputBuilder,
    ) -> Result<String, AwsError>;
    /// The service's task sets with these ids (all of them when `ids` is empty).
    async fn task_sets(
        &self,
        cluster: &str,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<TaskSetState>, AwsError>;
}

#[derive(Debug, Clone)]
pub struct Ecs(pub aws_sdk_ecs::Client);

#[async_trait]
impl EcsApi for Ecs {
    async fn service(&self, cluster: &str, service: &str) -> Result<EcsServiceInfo, AwsError> {
        let resource = format!("ECS service {cluster}/{service}");
        let out = self
            .0
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeServices", &resource, e))?;
        // DescribeServices reports a missing service as a failure entry, not an error.
        let found = out
            .services()
            .iter()
            .find(|s| s.status() != Some("INACTIVE"))
            .ok_or_else(|| {
                let reason = out
                    .failures()
                    .first()
                    .and_then(|f| f.reason())
                    .unwrap_or("MISSING");
                AwsError::new(
                    "DescribeServices",
                    &resource,
                    AwsErrorKind::NotFound,
                    reason,
                )
            })?;
        let task_definition_arn = found.task_definition().map(str::to_string).ok_or_else(|| {
            AwsError::new(
                "DescribeServices",
                &resource,
                AwsErrorKind::Invalid,
                "service has no task definition",
            )
        })?;
        Ok(EcsServiceInfo {
            task_definition_arn,
            load_balancers: found
                .load_balancers()
                .iter()
                .filter_map(|lb| {
                    Some(LoadBalancedContainer {
                        container_name: lb.container_name()?.to_string(),
                        container_port: lb.container_port()?,
                        target_group_arn: lb.target_group_arn().map(str::to_string),
                    })
                })
                .collect(),
        })
    }

    async fn task_definition(&self, arn: &str) -> Result<(TaskDefinition, Vec<Tag>), AwsError> {
        let out = self
            .0
            .describe_task_definition()
            .task_definition(arn)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "DescribeTaskDefinition",
                    format!("task definition {arn}"),
                    e,
                )
            })?;
        let tags = out.tags.unwrap_or_default();
        let td = out.task_definition.ok_or_else(|| {
            AwsError::new(
                "DescribeTaskDefinition",
                format!("task definition {arn}"),
                AwsErrorKind::NotFound,
                "no task definition returned",
            )
        })?;
        Ok((td, tags))
    }

    async fn register_task_definition(
        &self,
        request: RegisterTaskDefinitionInputBuilder,
    ) -> Result<String, AwsError> {
        let family = request.get_family().clone().unwrap_or_default();
        let resource = format!("task definition family {family}");
        let out = request
            .send_with(&self.0)
            .await
            .map_err(|e| AwsError::from_sdk("RegisterTaskDefinition", &resource, e))?;
        out.task_definition
            .and_then(|t| t.task_definition_arn)
            .ok_or_else(|| {
                AwsError::new(
                    "RegisterTaskDefinition",
                    resource,
                    AwsErrorKind::Unavailable,
                    "no ARN returned",
                )
            })
    }

    async fn task_sets(
        &self,
        cluster: &str,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<TaskSetState>, AwsError> {
        let out = self
            .0
            .describe_task_sets()
            .cluster(cluster)
            .service(service)
            .set_task_sets((!ids.is_empty()).then(|| ids.to_vec()))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "DescribeTaskSets",
                    format!("ECS service {cluster}/{service}"),
                    e,
                )
            })?;
        Ok(out
            .task_sets()
            .iter()
            .map(|t| TaskSetState {
                id: t.id().unwrap_or_default().to_string(),
                task_definition_arn: t.task_definition().map(str::to_string),
                stability: t.stability_status().map(|s| s.as_str().to_string()),
                desired_count: t.computed_desired_count(),
                running_count: t.running_count(),
                target_group_arn: t
                    .load_balancers()
                    .first()
                    .and_then(|lb| lb.target_group_arn())
                    .map(str::to_string),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mocked;
    use aws_sdk_ecs::operation::describe_services::{
        DescribeServicesError, DescribeServicesOutput,
    };
    use aws_sdk_ecs::types::error::ClusterNotFoundException;
    use aws_sdk_ecs::types::{Failure, LoadBalancer, Service};
    use aws_smithy_mocks::mock;

    #[tokio::test]
    async fn service_reads_task_definition_and_load_balanced_container() {
        let rule = mock!(aws_sdk_ecs::Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .services(
                    Service::builder()
                        .status("ACTIVE")
                        .task_definition(
                            "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:7",
                        )
                        .load_balancers(
                            LoadBalancer::builder()
                                .container_name("web1")
                                .container_port(3000)
                                .target_group_arn("arn:tg")
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let info = Ecs(mocked!(aws_sdk_ecs, &rule))
            .service("apps", "web1")
            .await
            .unwrap();
        assert_eq!(
            info.task_definition_arn,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:7"
        );
        assert_eq!(info.load_balancers[0].container_name, "web1");
        assert_eq!(info.load_balancers[0].container_port, 3000);
    }

    #[tokio::test]
    async fn missing_service_is_not_found_naming_it() {
        let rule = mock!(aws_sdk_ecs::Client::describe_services).then_output(|| {
            DescribeServicesOutput::builder()
                .failures(
                    Failure::builder()
                        .arn("arn:aws:ecs:us-east-1:123456789012:service/apps/web1")
                        .reason("MISSING")
                        .build(),
                )
                .build()
        });
        let err = Ecs(mocked!(aws_sdk_ecs, &rule))
            .service("apps", "web1")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "DescribeServices on ECS service apps/web1: not found: MISSING"
        );
    }

    #[tokio::test]
    async fn missing_cluster_is_not_found() {
        let rule = mock!(aws_sdk_ecs::Client::describe_services).then_error(|| {
            DescribeServicesError::ClusterNotFoundException(
                ClusterNotFoundException::builder()
                    .message("Cluster not found.")
                    .build(),
            )
        });
        let err = Ecs(mocked!(aws_sdk_ecs, &rule))
            .service("apps", "web1")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
    }
}
