//! CodeDeploy: the deployment engine of an ECS blue/green release.

use async_trait::async_trait;
use aws_sdk_codedeploy::types::{
    AppSpecContent, DeploymentStatus, DeploymentWaitType, LifecycleEventStatus, RevisionLocation,
    RevisionLocationType, TargetLabel,
};
use chrono::{DateTime, Utc};

use crate::approval::{ApprovalGate, Choice, EngineWait};
use crate::error::{AwsError, AwsErrorKind};

/// What a deployment group deploys: one ECS service behind a pair of target groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentGroup {
    pub cluster: String,
    pub service: String,
    pub target_groups: Vec<String>,
    pub prod_listeners: Vec<String>,
    pub test_listeners: Vec<String>,
    /// It waits before rerouting production traffic, and stops (rolls back) when the wait
    /// runs out (`deploymentReadyOption.actionOnTimeout = STOP_DEPLOYMENT`): the approval gate.
    pub waits_before_reroute: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub application: String,
    pub deployment_group: String,
    pub appspec: String,
    pub description: String,
}

/// A deployment as Greenlight reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Deployment {
    pub id: String,
    pub application: String,
    pub deployment_group: String,
    /// Created, Queued, InProgress, Baking, Ready, Succeeded, Failed, Stopped.
    pub status: String,
    pub description: Option<String>,
    /// `user`, `autoscaling`, `codeDeployRollback`, `CodeDeploy`, `CloudFormation`, ...
    pub creator: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Set on a deployment that was rolled back: the rollback deployment.
    pub rollback_deployment_id: Option<String>,
    /// Set on a rollback deployment: the deployment it rolls back.
    pub rolls_back_deployment_id: Option<String>,
    pub rollback_message: Option<String>,
    pub appspec: Option<String>,
}

impl Deployment {
    pub fn is_active(&self) -> bool {
        crate::model::phase_of(crate::model::EngineKind::CodeDeploy, &self.status)
            .is_some_and(crate::model::Phase::is_active)
    }
}

/// One task set of an ECS deployment target.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetInfo {
    pub id: String,
    pub label: Option<String>,
    pub desired_count: i64,
    pub running_count: i64,
    pub status: Option<String>,
    pub target_group: Option<String>,
    pub traffic_weight: f64,
}

/// The ECS target of a deployment: its task sets and the lifecycle event in progress.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EcsDeploymentTarget {
    pub task_sets: Vec<TaskSetInfo>,
    pub lifecycle_event_in_progress: Option<String>,
    /// How many lifecycle events the target listed (0: CodeDeploy did not say).
    pub lifecycle_event_count: usize,
}

impl EcsDeploymentTarget {
    /// Whether the target said nothing about its lifecycle events (so none can be judged done).
    pub fn lifecycle_events_unknown(&self) -> bool {
        self.lifecycle_event_count == 0
    }

    pub fn green(&self) -> Option<&TaskSetInfo> {
        self.task_sets
            .iter()
            .find(|t| t.label.as_deref() == Some("Green"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookVerdict {
    Succeeded,
    Failed,
}

#[async_trait]
pub trait CodeDeployApi: Send + Sync {
    async fn deployment_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<DeploymentGroup, AwsError>;
    /// Starts a deployment; a busy group is `AwsErrorKind::DeploymentLimitExceeded`.
    async fn create_deployment(&self, request: &NewDeployment) -> Result<String, AwsError>;
    async fn deployment(&self, id: &str) -> Result<Deployment, AwsError>;
    /// The group's deployments created at or after `since`, newest first (to find one whose
    /// answer was lost).
    async fn deployments_since(
        &self,
        application: &str,
        group: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, AwsError>;
    /// The group's deployments in progress (CodeDeploy runs at most one).
    async fn active_deployments(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<Deployment>, AwsError>;
    /// The ECS target of a deployment (`None` when CodeDeploy lists none yet).
    async fn ecs_target(
        &self,
        deployment_id: &str,
    ) -> Result<Option<EcsDeploymentTarget>, AwsError>;
    /// Reports a lifecycle hook; a hook already reported is `AwsErrorKind::AlreadyCompleted`.
    async fn report_hook(
        &self,
        deployment_id: &str,
        execution_id: &str,
        verdict: HookVerdict,
    ) -> Result<(), AwsError>;
}

#[derive(Debug, Clone)]
pub struct CodeDeploy(pub aws_sdk_codedeploy::Client);

/// The deployment group's wait before rerouting is the approval's wait on CodeDeploy: the
/// deployment is `Ready` until `ContinueDeployment`, or `StopDeployment` rolls it back (as its
/// timeout does, with `actionOnTimeout = STOP_DEPLOYMENT`).
#[async_trait]
impl ApprovalGate for CodeDeploy {
    async fn wait_state(&self, deployment_id: &str) -> Result<EngineWait, AwsError> {
        let deployment = self.deployment(deployment_id).await?;
        Ok(match deployment.status.as_str() {
            "Ready" => EngineWait::Waiting {
                hook_id: None,
                expires_at: None,
            },
            "Created" | "Queued" | "InProgress" => EngineWait::NotYet,
            _ => EngineWait::Over,
        })
    }

    async fn resolve(
        &self,
        deployment_id: &str,
        _hook_id: Option<&str>,
        choice: Choice,
    ) -> Result<(), AwsError> {
        let resource = format!("CodeDeploy deployment {deployment_id}");
        match choice {
            Choice::Approve => self
                .0
                .continue_deployment()
                .deployment_id(deployment_id)
                .deployment_wait_type(DeploymentWaitType::ReadyWait)
                .send()
                .await
                .map(drop)
                .map_err(|e| AwsError::from_sdk("ContinueDeployment", &resource, e)),
            Choice::Reject => self
                .0
                .stop_deployment()
                .deployment_id(deployment_id)
                .auto_rollback_enabled(true)
                .send()
                .await
                .map(drop)
                .map_err(|e| AwsError::from_sdk("StopDeployment", &resource, e)),
        }
    }
}

impl CodeDeploy {
    /// Every deployment a ListDeployments request names, read with GetDeployment, newest first.
    async fn listed(
        &self,
        list: aws_sdk_codedeploy::operation::list_deployments::builders::ListDeploymentsFluentBuilder,
        application: &str,
        group: &str,
    ) -> Result<Vec<Deployment>, AwsError> {
        let ids: Vec<String> = list
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "ListDeployments",
                    format!("deployment group {application}/{group}"),
                    e,
                )
            })?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.push(self.deployment(&id).await?);
        }
        found.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(found)
    }
}

#[async_trait]
impl CodeDeployApi for CodeDeploy {
    async fn deployment_group(
        &self,
        application: &str,
        group: &str,
    ) -> Result<DeploymentGroup, AwsError> {
        let resource = format!("deployment group {application}/{group}");
        let out = self
            .0
            .get_deployment_group()
            .application_name(application)
            .deployment_group_name(group)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetDeploymentGroup", &resource, e))?;
        let info = out.deployment_group_info.ok_or_else(|| {
            AwsError::new(
                "GetDeploymentGroup",
                &resource,
                AwsErrorKind::NotFound,
                "no deployment group info",
            )
        })?;
        let ecs = info.ecs_services().first().ok_or_else(|| {
            AwsError::new(
                "GetDeploymentGroup",
                &resource,
                AwsErrorKind::Invalid,
                "the group deploys no ECS service",
            )
        })?;
        let pair = info
            .load_balancer_info
            .as_ref()
            .and_then(|lb| lb.target_group_pair_info_list().first().cloned());
        let listeners = |route: Option<&aws_sdk_codedeploy::types::TrafficRoute>| {
            route
                .map(|r| r.listener_arns().to_vec())
                .unwrap_or_default()
        };
        let waits_before_reroute = info
            .blue_green_deployment_configuration()
            .and_then(|b| b.deployment_ready_option())
            .and_then(|r| r.action_on_timeout())
            .is_some_and(|a| a.as_str() == "STOP_DEPLOYMENT");
        Ok(DeploymentGroup {
            waits_before_reroute,
            cluster: ecs.cluster_name().unwrap_or_default().to_string(),
            service: ecs.service_name().unwrap_or_default().to_string(),
            target_groups: pair
                .as_ref()
                .map(|p| {
                    p.target_groups()
                        .iter()
                        .filter_map(|t| t.name().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            prod_listeners: listeners(pair.as_ref().and_then(|p| p.prod_traffic_route())),
            test_listeners: listeners(pair.as_ref().and_then(|p| p.test_traffic_route())),
        })
    }

    async fn create_deployment(&self, request: &NewDeployment) -> Result<String, AwsError> {
        let resource = format!(
            "deployment group {}/{}",
            request.application, request.deployment_group
        );
        let revision = RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(&request.appspec).build())
            .build();
        let out = self
            .0
            .create_deployment()
            .application_name(&request.application)
            .deployment_group_name(&request.deployment_group)
            .revision(revision)
            .description(&request.description)
            // Not retried by the SDK: a retry after a lost answer creates a second deployment
            // when the first has already ended (CodeDeploy refuses a second one only while the
            // first is active). The engine retries a throttle, which never acted, and reads the
            // group's deployments back after any other failure (`engine::CodeDeployEngine`).
            .customize()
            .config_override(
                aws_sdk_codedeploy::config::Builder::default()
                    .retry_config(aws_sdk_codedeploy::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("CreateDeployment", &resource, e))?;
        out.deployment_id.ok_or_else(|| {
            AwsError::new(
                "CreateDeployment",
                resource,
                AwsErrorKind::Unavailable,
                "no deployment id returned",
            )
        })
    }

    async fn deployment(&self, id: &str) -> Result<Deployment, AwsError> {
        let resource = format!("deployment {id}");
        let out = self
            .0
            .get_deployment()
            .deployment_id(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetDeployment", &resource, e))?;
        let info = out.deployment_info.ok_or_else(|| {
            AwsError::new(
                "GetDeployment",
                &resource,
                AwsErrorKind::NotFound,
                "no deployment info",
            )
        })?;
        let rollback = info.rollback_info.as_ref();
        Ok(Deployment {
            id: info.deployment_id.clone().unwrap_or_else(|| id.to_string()),
            application: info.application_name.clone().unwrap_or_default(),
            deployment_group: info.deployment_group_name.clone().unwrap_or_default(),
            status: info
                .status
                .as_ref()
                .map(DeploymentStatus::as_str)
                .unwrap_or("Unknown")
                .to_string(),
            description: info.description.clone(),
            creator: info.creator.as_ref().map(|c| c.as_str().to_string()),
            created_at: info.create_time.as_ref().and_then(super::to_utc),
            completed_at: info.complete_time.as_ref().and_then(super::to_utc),
            error_code: info
                .error_information
                .as_ref()
                .and_then(|e| e.code.as_ref())
                .map(|c| c.as_str().to_string()),
            error_message: info
                .error_information
                .as_ref()
                .and_then(|e| e.message.clone()),
            rollback_deployment_id: rollback.and_then(|r| r.rollback_deployment_id.clone()),
            rolls_back_deployment_id: rollback
                .and_then(|r| r.rollback_triggering_deployment_id.clone()),
            rollback_message: rollback.and_then(|r| r.rollback_message.clone()),
            appspec: info
                .revision
                .as_ref()
                .and_then(|r| r.app_spec_content.as_ref())
                .and_then(|a| a.content.clone()),
        })
    }

    async fn deployments_since(
        &self,
        application: &str,
        group: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Deployment>, AwsError> {
        let list = self
            .0
            .list_deployments()
            .application_name(application)
            .deployment_group_name(group)
            .create_time_range(
                aws_sdk_codedeploy::types::TimeRange::builder()
                    .start(aws_smithy_types::DateTime::from_secs(since.timestamp()))
                    .build(),
            );
        self.listed(list, application, group).await
    }

    async fn active_deployments(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<Deployment>, AwsError> {
        let list = self
            .0
            .list_deployments()
            .application_name(application)
            .deployment_group_name(group)
            .set_include_only_statuses(Some(vec![
                DeploymentStatus::Created,
                DeploymentStatus::Queued,
                DeploymentStatus::InProgress,
                DeploymentStatus::Baking,
                DeploymentStatus::Ready,
            ]));
        self.listed(list, application, group).await
    }

    async fn ecs_target(
        &self,
        deployment_id: &str,
    ) -> Result<Option<EcsDeploymentTarget>, AwsError> {
        let resource = format!("deployment {deployment_id}");
        let ids = self
            .0
            .list_deployment_targets()
            .deployment_id(deployment_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ListDeploymentTargets", &resource, e))?
            .target_ids
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(None);
        }
        let out = self
            .0
            .batch_get_deployment_targets()
            .deployment_id(deployment_id)
            .set_target_ids(Some(ids))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("BatchGetDeploymentTargets", &resource, e))?;
        let Some(target) = out
            .deployment_targets()
            .iter()
            .find_map(|t| t.ecs_target.as_ref())
        else {
            return Ok(None);
        };
        Ok(Some(EcsDeploymentTarget {
            task_sets: target
                .task_sets_info()
                .iter()
                .map(|t| TaskSetInfo {
                    id: t.identifer.clone().unwrap_or_default(),
                    label: t
                        .task_set_label
                        .as_ref()
                        .map(TargetLabel::as_str)
                        .map(str::to_string),
                    desired_count: t.desired_count,
                    running_count: t.running_count,
                    status: t.status.clone(),
                    target_group: t.target_group.as_ref().and_then(|g| g.name.clone()),
                    traffic_weight: t.traffic_weight,
                })
                .collect(),
            lifecycle_event_in_progress: target
                .lifecycle_events()
                .iter()
                .find(|e| e.status == Some(LifecycleEventStatus::InProgress))
                .and_then(|e| e.lifecycle_event_name.clone()),
            lifecycle_event_count: target.lifecycle_events().len(),
        }))
    }

    async fn report_hook(
        &self,
        deployment_id: &str,
        execution_id: &str,
        verdict: HookVerdict,
    ) -> Result<(), AwsError> {
        let status = match verdict {
            HookVerdict::Succeeded => LifecycleEventStatus::Succeeded,
            HookVerdict::Failed => LifecycleEventStatus::Failed,
        };
        self.0
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(deployment_id)
            .lifecycle_event_hook_execution_id(execution_id)
            .status(status)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "PutLifecycleEventHookExecutionStatus",
                    format!("deployment {deployment_id}"),
                    e,
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mocked;
    use aws_sdk_codedeploy::operation::create_deployment::{
        CreateDeploymentError, CreateDeploymentOutput,
    };
    use aws_sdk_codedeploy::operation::get_deployment_group::{
        GetDeploymentGroupError, GetDeploymentGroupOutput,
    };
    use aws_sdk_codedeploy::operation::put_lifecycle_event_hook_execution_status::PutLifecycleEventHookExecutionStatusError;
    use aws_sdk_codedeploy::types::error::{
        DeploymentGroupDoesNotExistException, DeploymentLimitExceededException,
        LifecycleEventAlreadyCompletedException,
    };
    use aws_sdk_codedeploy::types::{
        DeploymentGroupInfo, EcsService, LoadBalancerInfo, TargetGroupInfo, TargetGroupPairInfo,
        TrafficRoute,
    };
    use aws_smithy_mocks::mock;

    fn request() -> NewDeployment {
        NewDeployment {
            application: "web1".into(),
            deployment_group: "web1-bluegreen".into(),
            appspec: "{}".into(),
            description: "greenlight app=web1 version=v1 digest=sha256:x".into(),
        }
    }

    #[tokio::test]
    async fn busy_group_is_deployment_limit_exceeded() {
        let busy = mock!(aws_sdk_codedeploy::Client::create_deployment).then_error(|| {
            CreateDeploymentError::DeploymentLimitExceededException(
                DeploymentLimitExceededException::builder()
                    .message("The Deployment Group 'web1-bluegreen' already has an active Deployment 'd-1'")
                    .build(),
            )
        });
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &busy))
            .create_deployment(&request())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::DeploymentLimitExceeded);
        assert!(err.to_string().contains("web1/web1-bluegreen"), "{err}");
    }

    #[tokio::test]
    async fn create_deployment_is_sent_once_when_throttled() {
        let throttled = mock!(aws_sdk_codedeploy::Client::create_deployment)
            .sequence()
            .error(|| {
                CreateDeploymentError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("ThrottlingException")
                        .message("Rate exceeded")
                        .build(),
                )
            })
            .output(|| {
                CreateDeploymentOutput::builder()
                    .deployment_id("d-123")
                    .build()
            })
            .build();
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &throttled))
            .create_deployment(&request())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Throttled);
        assert_eq!(throttled.num_calls(), 1);
    }

    #[tokio::test]
    async fn create_deployment_is_sent_once_when_the_server_fails() {
        // A 5xx may come after CodeDeploy acted: a second send could make a second deployment.
        let flaky = mock!(aws_sdk_codedeploy::Client::create_deployment)
            .sequence()
            .http_status(503, None)
            .output(|| {
                CreateDeploymentOutput::builder()
                    .deployment_id("d-9")
                    .build()
            })
            .build();
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &flaky))
            .create_deployment(&request())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::Unavailable);
        assert_eq!(flaky.num_calls(), 1);
    }

    #[tokio::test]
    async fn missing_group_and_access_denied_name_the_group() {
        let missing = mock!(aws_sdk_codedeploy::Client::get_deployment_group).then_error(|| {
            GetDeploymentGroupError::DeploymentGroupDoesNotExistException(
                DeploymentGroupDoesNotExistException::builder()
                    .message("No Deployment Group found for name: web1-bluegreen")
                    .build(),
            )
        });
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &missing))
            .deployment_group("web1", "web1-bluegreen")
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::NotFound);
        assert_eq!(err.resource, "deployment group web1/web1-bluegreen");

        let denied = mock!(aws_sdk_codedeploy::Client::create_deployment).then_error(|| {
            CreateDeploymentError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: codedeploy:CreateDeployment")
                    .build(),
            )
        });
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &denied))
            .create_deployment(&request())
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::AccessDenied);
        assert!(
            err.to_string().contains("codedeploy:CreateDeployment"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn deployment_group_reads_service_target_groups_and_listeners() {
        let group = mock!(aws_sdk_codedeploy::Client::get_deployment_group).then_output(|| {
            GetDeploymentGroupOutput::builder()
                .deployment_group_info(
                    DeploymentGroupInfo::builder()
                        .ecs_services(
                            EcsService::builder()
                                .cluster_name("apps")
                                .service_name("web1")
                                .build(),
                        )
                        .load_balancer_info(
                            LoadBalancerInfo::builder()
                                .target_group_pair_info_list(
                                    TargetGroupPairInfo::builder()
                                        .target_groups(
                                            TargetGroupInfo::builder().name("web1-blue").build(),
                                        )
                                        .target_groups(
                                            TargetGroupInfo::builder().name("web1-green").build(),
                                        )
                                        .prod_traffic_route(
                                            TrafficRoute::builder()
                                                .listener_arns("arn:prod")
                                                .build(),
                                        )
                                        .test_traffic_route(
                                            TrafficRoute::builder()
                                                .listener_arns("arn:test")
                                                .build(),
                                        )
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let g = CodeDeploy(mocked!(aws_sdk_codedeploy, &group))
            .deployment_group("web1", "web1-bluegreen")
            .await
            .unwrap();
        assert_eq!(
            g,
            DeploymentGroup {
                cluster: "apps".into(),
                service: "web1".into(),
                target_groups: vec!["web1-blue".into(), "web1-green".into()],
                prod_listeners: vec!["arn:prod".into()],
                test_listeners: vec!["arn:test".into()],
                waits_before_reroute: false,
            }
        );
    }

    #[tokio::test]
    async fn second_report_is_already_completed() {
        let done = mock!(aws_sdk_codedeploy::Client::put_lifecycle_event_hook_execution_status)
            .then_error(|| {
                PutLifecycleEventHookExecutionStatusError::LifecycleEventAlreadyCompletedException(
                    LifecycleEventAlreadyCompletedException::builder()
                        .message("already completed")
                        .build(),
                )
            });
        let err = CodeDeploy(mocked!(aws_sdk_codedeploy, &done))
            .report_hook("d-1", "exec", HookVerdict::Succeeded)
            .await
            .unwrap_err();
        assert_eq!(err.kind, AwsErrorKind::AlreadyCompleted);
    }
}
