//! ECS: the service a deployment group deploys, its task definition, new revisions, task sets;
//! and, for native blue/green, service deployments and revisions.

use async_trait::async_trait;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionInputBuilder;
use aws_sdk_ecs::types::{DeploymentLifecycleHookAction, Tag, TaskDefinition, TaskDefinitionField};

use crate::approval::{ApprovalGate, Choice, EngineWait};
use crate::error::{AwsError, AwsErrorKind};
use crate::rollout::{Position, RollbackSignals, Rollout};

/// The load-balanced container of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancedContainer {
    pub container_name: String,
    pub container_port: i32,
    pub target_group_arn: Option<String>,
    /// Native blue/green: the listener rule that routes test traffic to green.
    pub test_listener_rule: Option<String>,
}

/// A native blue/green service deployment, as DescribeServiceDeployments reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceDeploymentState {
    /// `PENDING`, `IN_PROGRESS`, `SUCCESSFUL`, `ROLLBACK_IN_PROGRESS`, … as ECS names it.
    pub status: String,
    pub status_reason: Option<String>,
    /// The revision being deployed (green), and its tasks.
    pub target_revision: Option<String>,
    pub requested_tasks: i32,
    pub running_tasks: i32,
    /// Its stage, green's share of production traffic, and when it last changed.
    pub position: Position,
    /// The rollout it runs with (the service's settings when it started).
    pub rollout: Option<Rollout>,
    /// What ECS says of a rollback: its reason, alarms in ALARM, the circuit breaker.
    pub rollback: RollbackSignals,
    /// A PAUSE lifecycle hook awaiting `ContinueServiceDeployment`: its id, and when its
    /// timeout action is taken.
    pub pause: Option<(String, Option<chrono::DateTime<chrono::Utc>>)>,
}

/// A service revision: what it runs and the target groups it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRevisionInfo {
    pub task_definition_arn: String,
    pub target_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EcsServiceInfo {
    pub task_definition_arn: String,
    pub load_balancers: Vec<LoadBalancedContainer>,
    /// The deployment controller (`ECS`, `CODE_DEPLOY`, `EXTERNAL`); ECS omits it for `ECS`.
    pub controller: Option<String>,
    /// The ECS controller's strategy (`ROLLING`, `BLUE_GREEN`, `LINEAR`, `CANARY`).
    pub strategy: Option<String>,
    /// How a native deployment moves production traffic (`None` for ROLLING or CodeDeploy).
    pub rollout: Option<Rollout>,
    /// Native blue/green: the Lambda hooks the service runs, with their stages and timeouts.
    pub lifecycle_hooks: Vec<LifecycleHook>,
}

/// A lifecycle hook of a service's deployments: a Lambda function, or a pause.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LifecycleHook {
    /// A PAUSE hook (`ContinueServiceDeployment` ends its wait), not a Lambda function.
    pub pause: bool,
    /// The Lambda function (empty for a PAUSE hook).
    pub function_arn: String,
    pub stages: Vec<String>,
    /// How long ECS waits for the hook at a stage, and what it does then (`ROLLBACK`,
    /// `CONTINUE`), when the service says.
    pub timeout_minutes: Option<i32>,
    pub timeout_action: Option<String>,
}

/// A service deployment as ListServiceDeployments lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDeploymentBrief {
    pub arn: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub target_revision: Option<String>,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
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

/// The ECS reads of a service and its native blue/green deployments: all the notifier holds.
/// Ports are split by who needs them: a function linked to a `dyn` port links every method's
/// request and response shapes, used or not (the task definition's alone are most of a MB).
#[async_trait]
pub trait ServiceReads: Send + Sync {
    async fn service(&self, cluster: &str, service: &str) -> Result<EcsServiceInfo, AwsError>;
    /// A native blue/green service deployment by ARN.
    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeploymentState, AwsError>;
    /// A service revision by ARN.
    async fn service_revision(&self, arn: &str) -> Result<ServiceRevisionInfo, AwsError>;
    /// The service's deployments, newest first: those created at or after `since`, or only
    /// those in progress (one page of up to 20: a window or the active ones, never a history).
    async fn service_deployments(
        &self,
        cluster: &str,
        service: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        active_only: bool,
    ) -> Result<Vec<ServiceDeploymentBrief>, AwsError>;
    /// A task definition's tags alone (ListTagsForResource): what the hook and the notifier
    /// read a release from, without the task definition's large shape.
    async fn task_definition_tags(&self, arn: &str) -> Result<Vec<Tag>, AwsError>;
}

/// The deployer's ECS: the reads, and a new revision of the task definition deployed.
#[async_trait]
pub trait EcsApi: ServiceReads {
    /// The task definition and its tags.
    async fn task_definition(&self, arn: &str) -> Result<(TaskDefinition, Vec<Tag>), AwsError>;
    /// Registers a revision; returns its ARN.
    async fn register_task_definition(
        &self,
        request: RegisterTaskDefinitionInputBuilder,
    ) -> Result<String, AwsError>;
    /// Native blue/green: starts a deployment of `task_definition` (UpdateService); the
    /// service deployment it started, when ECS names it in the answer.
    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<Option<String>, AwsError>;
}

/// The health hook's ECS: the reads, and the task sets of a CodeDeploy deployment.
#[async_trait]
pub trait TaskSetsApi: ServiceReads {
    /// The service's task sets with these ids (all of them when `ids` is empty).
    async fn task_sets(
        &self,
        cluster: &str,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<TaskSetState>, AwsError>;
}

/// The most pages of ListServiceDeployments read for one answer.
const LIST_PAGES_MAX: usize = 10;

#[derive(Debug, Clone)]
pub struct Ecs(pub aws_sdk_ecs::Client);

/// ECS's Describe… calls report what is missing as a failure entry, not an error: NotFound,
/// with the failure's reason.
fn found_or_missing<'a, T>(
    found: Option<&'a T>,
    failures: &[aws_sdk_ecs::types::Failure],
    operation: &'static str,
    resource: &str,
) -> Result<&'a T, AwsError> {
    found.ok_or_else(|| {
        let reason = failures
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("MISSING");
        AwsError::new(operation, resource, AwsErrorKind::NotFound, reason)
    })
}

/// The service's PAUSE hook is the approval's wait on native ECS.
#[async_trait]
impl ApprovalGate for Ecs {
    async fn wait_state(&self, deployment_id: &str) -> Result<EngineWait, AwsError> {
        let state = self.service_deployment(deployment_id).await?;
        let active = crate::model::phase_of(crate::model::EngineKind::Ecs, &state.status)
            .is_some_and(|p| p.is_active() && !p.is_rollback());
        Ok(match state.pause {
            Some((hook_id, expires_at)) if active => EngineWait::Waiting {
                hook_id: Some(hook_id),
                expires_at,
            },
            None if active => EngineWait::NotYet,
            _ => EngineWait::Over,
        })
    }

    async fn resolve(
        &self,
        deployment_id: &str,
        hook_id: Option<&str>,
        choice: Choice,
    ) -> Result<(), AwsError> {
        let action = match choice {
            Choice::Approve => DeploymentLifecycleHookAction::Continue,
            Choice::Reject => DeploymentLifecycleHookAction::Rollback,
        };
        self.0
            .continue_service_deployment()
            .service_deployment_arn(deployment_id)
            .set_hook_id(hook_id.map(str::to_string))
            .action(action)
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                AwsError::from_sdk(
                    "ContinueServiceDeployment",
                    format!("ECS service deployment {deployment_id}"),
                    e,
                )
            })
    }
}

#[async_trait]
impl ServiceReads for Ecs {
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
        let found = found_or_missing(
            out.services()
                .iter()
                .find(|s| s.status() != Some("INACTIVE")),
            out.failures(),
            "DescribeServices",
            &resource,
        )?;
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
                        test_listener_rule: lb
                            .advanced_configuration()
                            .and_then(|a| a.test_listener_rule())
                            .map(str::to_string),
                    })
                })
                .collect(),
            controller: found
                .deployment_controller()
                .map(|c| c.r#type().as_str().to_string()),
            strategy: found
                .deployment_configuration()
                .and_then(|c| c.strategy())
                .map(|s| s.as_str().to_string()),
            rollout: found.deployment_configuration().and_then(Rollout::of),
            lifecycle_hooks: found
                .deployment_configuration()
                .map(|c| c.lifecycle_hooks())
                .unwrap_or_default()
                .iter()
                .map(|h| LifecycleHook {
                    pause: h.target_type().is_some_and(|t| t.as_str() == "PAUSE"),
                    function_arn: h.hook_target_arn().unwrap_or_default().to_string(),
                    stages: h
                        .lifecycle_stages()
                        .iter()
                        .map(|s| s.as_str().to_string())
                        .collect(),
                    timeout_minutes: h
                        .timeout_configuration()
                        .and_then(|t| t.timeout_in_minutes()),
                    timeout_action: h
                        .timeout_configuration()
                        .and_then(|t| t.action())
                        .map(|a| a.as_str().to_string()),
                })
                .collect(),
        })
    }

    async fn service_deployment(&self, arn: &str) -> Result<ServiceDeploymentState, AwsError> {
        let resource = format!("ECS service deployment {arn}");
        let out = self
            .0
            .describe_service_deployments()
            .service_deployment_arns(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeServiceDeployments", &resource, e))?;
        let found = found_or_missing(
            out.service_deployments().first(),
            out.failures(),
            "DescribeServiceDeployments",
            &resource,
        )?;
        let target = found.target_service_revision();
        Ok(ServiceDeploymentState {
            status: found
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            status_reason: found.status_reason().map(str::to_string),
            target_revision: target.and_then(|t| t.arn()).map(str::to_string),
            requested_tasks: target.map(|t| t.requested_task_count()).unwrap_or_default(),
            running_tasks: target.map(|t| t.running_task_count()).unwrap_or_default(),
            position: Position {
                stage: found.lifecycle_stage().map(|s| s.as_str().to_string()),
                weight: target.and_then(|t| t.requested_production_traffic_weight()),
                since: found
                    .updated_at()
                    .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?)),
            },
            rollout: found.deployment_configuration().and_then(Rollout::of),
            rollback: RollbackSignals {
                reason: found
                    .rollback()
                    .and_then(|r| r.reason())
                    .map(str::to_string),
                triggered_alarms: found
                    .alarms()
                    .map(|a| a.triggered_alarm_names().to_vec())
                    .unwrap_or_default(),
                circuit_breaker: found
                    .deployment_circuit_breaker()
                    .filter(|c| c.status().is_some_and(|s| s.as_str() == "TRIGGERED"))
                    .map(|c| (c.failure_count(), c.threshold())),
            },
            pause: found
                .lifecycle_hook_details()
                .iter()
                .find(|h| {
                    h.target_type().is_some_and(|t| t.as_str() == "PAUSE")
                        && h.status().is_some_and(|s| s.as_str() == "AWAITING_ACTION")
                })
                .and_then(|h| {
                    let expires = h
                        .expires_at()
                        .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?));
                    Some((h.hook_id()?.to_string(), expires))
                }),
        })
    }

    async fn service_revision(&self, arn: &str) -> Result<ServiceRevisionInfo, AwsError> {
        let resource = format!("ECS service revision {arn}");
        let out = self
            .0
            .describe_service_revisions()
            .service_revision_arns(arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeServiceRevisions", &resource, e))?;
        let found = found_or_missing(
            out.service_revisions().first(),
            out.failures(),
            "DescribeServiceRevisions",
            &resource,
        )?;
        Ok(ServiceRevisionInfo {
            task_definition_arn: found.task_definition().unwrap_or_default().to_string(),
            target_groups: found
                .resolved_configuration()
                .map(|c| c.load_balancers())
                .unwrap_or_default()
                .iter()
                .filter_map(|lb| lb.target_group_arn().map(str::to_string))
                .collect(),
        })
    }

    async fn service_deployments(
        &self,
        cluster: &str,
        service: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        active_only: bool,
    ) -> Result<Vec<ServiceDeploymentBrief>, AwsError> {
        use aws_sdk_ecs::types::{CreatedAt, ServiceDeploymentStatus};
        let active: Vec<ServiceDeploymentStatus> =
            crate::model::active_statuses(crate::model::EngineKind::Ecs)
                .map(ServiceDeploymentStatus::from)
                .collect();
        // Every page (ECS promises no order within or across them), sorted here; a bound on
        // the pages keeps a service with years of deployments from eating the deadline.
        let mut found = vec![];
        let mut token = None;
        for _ in 0..LIST_PAGES_MAX {
            let out = self
                .0
                .list_service_deployments()
                .cluster(cluster)
                .service(service)
                .set_status(active_only.then(|| active.clone()))
                .set_created_at(since.map(|t| {
                    CreatedAt::builder()
                        .after(aws_smithy_types::DateTime::from_millis(
                            t.timestamp_millis(),
                        ))
                        .build()
                }))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk(
                        "ListServiceDeployments",
                        format!("ECS service {cluster}/{service}"),
                        e,
                    )
                })?;
            token = out.next_token().map(str::to_string);
            found.extend(out.service_deployments.unwrap_or_default());
            if token.is_none() {
                break;
            }
        }
        let mut listed: Vec<ServiceDeploymentBrief> = found
            .iter()
            .map(|d| ServiceDeploymentBrief {
                arn: d.service_deployment_arn().unwrap_or_default().to_string(),
                status: d
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                status_reason: d.status_reason().map(str::to_string),
                target_revision: d.target_service_revision_arn().map(str::to_string),
                created_at: d.created_at().and_then(super::to_utc),
            })
            .filter(|d| !d.arn.is_empty())
            .collect();
        listed.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(listed)
    }
    async fn task_definition_tags(&self, arn: &str) -> Result<Vec<Tag>, AwsError> {
        let out = self
            .0
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("ListTagsForResource", format!("task definition {arn}"), e)
            })?;
        Ok(out.tags.unwrap_or_default())
    }
}

#[async_trait]
impl EcsApi for Ecs {
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

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<Option<String>, AwsError> {
        let out = self
            .0
            .update_service()
            .cluster(cluster)
            .service(service)
            .task_definition(task_definition)
            // Not retried by the SDK: a retry after a lost answer would start a second
            // deployment that supersedes the first. The deployer's own retry first reads the
            // service's deployments and adopts the one it started (`engine::EcsEngine`).
            .customize()
            .config_override(
                aws_sdk_ecs::config::Builder::default()
                    .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "UpdateService",
                    format!("ECS service {cluster}/{service}"),
                    e,
                )
            })?;
        Ok(out
            .service()
            .and_then(|s| s.current_service_deployment())
            .map(str::to_string))
    }
}

#[async_trait]
impl TaskSetsApi for Ecs {
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
    async fn service_deployments_are_read_from_every_page_newest_first() {
        use aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsOutput;
        use aws_sdk_ecs::types::ServiceDeploymentBrief as Brief;
        let brief = |n: i64| {
            Brief::builder()
                .service_deployment_arn(format!(
                    "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web1/d{n}"
                ))
                .status(aws_sdk_ecs::types::ServiceDeploymentStatus::Successful)
                .created_at(aws_smithy_types::DateTime::from_secs(1_700_000_000 + n))
                .build()
        };
        let pages = mock!(aws_sdk_ecs::Client::list_service_deployments)
            .sequence()
            .output(move || {
                ListServiceDeploymentsOutput::builder()
                    .service_deployments(brief(1))
                    .service_deployments(brief(3))
                    .next_token("page-2")
                    .build()
            })
            .output(move || {
                ListServiceDeploymentsOutput::builder()
                    .service_deployments(brief(2))
                    .build()
            })
            .build();
        let listed = Ecs(mocked!(aws_sdk_ecs, &pages))
            .service_deployments("apps", "web1", None, false)
            .await
            .unwrap();
        let ids: Vec<&str> = listed
            .iter()
            .map(|d| d.arn.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(ids, ["d3", "d2", "d1"]);
        assert_eq!(pages.num_calls(), 2);
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

    /// DescribeServiceDeployments and DescribeServiceRevisions answered on the wire, as the
    /// API reference shapes them (timestamps as epoch seconds), through the SDK's deserializer.
    #[tokio::test]
    async fn a_native_deployment_and_its_revision_read_from_the_wire() {
        let deployment = serde_json::json!({"failures": [], "serviceDeployments": [{
            "serviceDeploymentArn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/EZe5RNVLH6PPzHXINuP28",
            "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/apps/web2",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/apps",
            "createdAt": 1764480000.0, "updatedAt": 1764480060.5,
            "status": "IN_PROGRESS", "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
            "targetServiceRevision": {"arn": "arn:aws:ecs:us-east-1:123456789012:service-revision/apps/web2/9313423515462893900",
                "requestedTaskCount": 2, "runningTaskCount": 1, "pendingTaskCount": 1,
                "requestedTestTrafficWeight": 100.0, "requestedProductionTrafficWeight": 0.0},
            "sourceServiceRevisions": [{"arn": "arn:aws:ecs:us-east-1:123456789012:service-revision/apps/web2/1920498462936580504",
                "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}]
        }]});
        let missing = serde_json::json!({"serviceDeployments": [], "failures": [
            {"arn": "arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/x", "reason": "MISSING"}]});
        let revision = serde_json::json!({"failures": [], "serviceRevisions": [{
            "serviceRevisionArn": "arn:aws:ecs:us-east-1:123456789012:service-revision/apps/web2/9313423515462893900",
            "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/apps/web2",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/apps",
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web2:9",
            "createdAt": 1764480000.0,
            "loadBalancers": [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web2-blue/1",
                "containerName": "web2", "containerPort": 3000}],
            "resolvedConfiguration": {"loadBalancers": [{
                "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web2-green/2",
                "productionListenerRule": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web2/1/2/3"}]}
        }]});
        let (client, requests) = crate::test_http::ecs_client_answering(vec![
            deployment.to_string(),
            missing.to_string(),
            revision.to_string(),
        ]);
        let ecs = Ecs(client);
        let state = ecs
            .service_deployment("arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/EZe5RNVLH6PPzHXINuP28")
            .await
            .unwrap();
        assert_eq!(state.status, "IN_PROGRESS");
        assert_eq!((state.running_tasks, state.requested_tasks), (1, 2));
        assert!(state
            .target_revision
            .unwrap()
            .ends_with("/9313423515462893900"));
        let err = ecs
            .service_deployment("arn:aws:ecs:us-east-1:123456789012:service-deployment/apps/web2/x")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        let revision = ecs
            .service_revision(
                "arn:aws:ecs:us-east-1:123456789012:service-revision/apps/web2/9313423515462893900",
            )
            .await
            .unwrap();
        assert_eq!(
            revision,
            ServiceRevisionInfo {
                task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web2:9"
                    .into(),
                target_groups: vec![
                    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web2-green/2"
                        .into()
                ],
            }
        );
        let bodies = requests.bodies();
        assert!(
            bodies[0].contains("\"serviceDeploymentArns\""),
            "{}",
            bodies[0]
        );
        assert!(
            bodies[2].contains("\"serviceRevisionArns\""),
            "{}",
            bodies[2]
        );
    }
}
