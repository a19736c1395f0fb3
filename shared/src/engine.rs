//! The blue/green engine that deploys a service: CodeDeploy, or ECS itself (native blue/green).
//!
//! Discovered per service from DescribeServices ([`discover`]): a `CODE_DEPLOY` deployment
//! controller means CodeDeploy; the `ECS` controller with the `BLUE_GREEN`, `LINEAR` or
//! `CANARY` strategy means native (ECS shifts production traffic at once, in steps, or after a
//! canary: [`crate::rollout`]; the deployer starts each the same way and never changes it). The deployer's decisions (claim, newest wins, resume, no downgrade) are the same for
//! both: they speak to a [`DeploymentEngine`], which starts a deployment of a registered
//! revision, says which deployments are active, and finds one an earlier attempt started.
//!
//! What differs, and why:
//! - CodeDeploy refuses a second deployment of a busy group; ECS would start it and supersede
//!   the running one. The native engine therefore reads the service's active deployments
//!   before UpdateService and answers "busy" itself, so both engines report a busy service the
//!   same way (`AwsErrorKind::DeploymentLimitExceeded`). Unlike CodeDeploy's refusal, the read
//!   and the update are two calls: a deployment someone else starts between them is
//!   superseded by ours (ECS offers no conditional UpdateService).
//! - A CodeDeploy deployment names its release in its description; a native one carries none,
//!   so it is recognised by the task definition revision it deploys (registered for this run).
//! - A CodeDeploy rollback is a deployment of its own; a native rollback is a state of the
//!   deployment it rolls back (`ROLLBACK_IN_PROGRESS` → `ROLLBACK_SUCCESSFUL`), which holds the
//!   service until it ends.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::aws::codedeploy::{CodeDeployApi, Deployment, NewDeployment};
use crate::aws::ecs::{EcsApi, EcsServiceInfo, ServiceDeploymentBrief, ServiceReads};
use crate::error::{AwsError, AwsErrorKind};
use crate::model::{is_active_service_deployment, phase_of, Phase, ReleaseStatus};
pub use crate::model::{is_service_deployment_arn, service_of_arn, EngineKind};

/// The engine a service's deployment settings call for; `None` for a service no blue/green
/// engine deploys (a rolling or external one). ECS's controller defaults to `ECS` when absent.
pub fn discover(service: &EcsServiceInfo) -> Option<EngineKind> {
    match (service.controller.as_deref(), service.strategy.as_deref()) {
        (Some("CODE_DEPLOY"), _) => Some(EngineKind::CodeDeploy),
        // ECS's own traffic shifts: all at once, in steps, or a canary first.
        (None | Some("ECS"), Some("BLUE_GREEN" | "LINEAR" | "CANARY")) => Some(EngineKind::Ecs),
        _ => None,
    }
}

/// One deployment, by either engine, as the deployer's decisions read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// A CodeDeploy deployment id, or a service deployment ARN.
    pub id: String,
    /// The status as the engine names it.
    pub status: String,
    pub active: bool,
    /// How it ended, for the ledger (meaningful once it is not active).
    pub ended: ReleaseStatus,
    /// The release it deploys: CodeDeploy's description (`ReleaseDescription`).
    pub description: Option<String>,
    /// The revision a native deployment deploys.
    pub task_definition: Option<String>,
}

/// What a deployment of a release is started with.
#[derive(Debug, Clone)]
pub struct Launch {
    pub task_definition: String,
    /// The `ReleaseDescription` (CodeDeploy keeps it on the deployment).
    pub description: String,
    /// CodeDeploy's AppSpec (the native engine deploys the task definition itself).
    pub appspec: String,
}

#[async_trait]
pub trait DeploymentEngine: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// Starts a deployment; a service already deploying is `AwsErrorKind::DeploymentLimitExceeded`.
    async fn start(&self, launch: &Launch) -> Result<String, AwsError>;
    /// Deployments created at or after `since` (to find one whose answer was lost).
    async fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, AwsError>;
    /// Deployments in progress.
    async fn active_runs(&self) -> Result<Vec<Run>, AwsError>;
}

/// A deployment read back by id: a service deployment ARN is native, anything else CodeDeploy's.
pub async fn run_by_id(
    codedeploy: &dyn CodeDeployApi,
    ecs: &dyn ServiceReads,
    id: &str,
) -> Result<Run, AwsError> {
    if is_service_deployment_arn(id) {
        let state = ecs.service_deployment(id).await?;
        Ok(native_run(
            ServiceDeploymentBrief {
                arn: id.to_string(),
                status: state.status,
                status_reason: state.status_reason,
                target_revision: state.target_revision,
                created_at: None,
            },
            None,
        ))
    } else {
        Ok(codedeploy_run(codedeploy.deployment(id).await?))
    }
}

fn codedeploy_run(d: Deployment) -> Run {
    Run {
        active: d.is_active(),
        ended: phase_of(EngineKind::CodeDeploy, &d.status)
            .map_or(ReleaseStatus::Failed, Phase::ended_as),
        id: d.id,
        status: d.status,
        description: d.description,
        task_definition: None,
    }
}

fn native_run(d: ServiceDeploymentBrief, task_definition: Option<String>) -> Run {
    Run {
        active: is_active_service_deployment(&d.status),
        // ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED: the release did not ship.
        ended: phase_of(EngineKind::Ecs, &d.status).map_or(ReleaseStatus::Failed, Phase::ended_as),
        id: d.arn,
        status: d.status,
        description: None,
        task_definition,
    }
}

/// How often a throttled CreateDeployment is sent, and the first wait between two sends.
const START_ATTEMPTS: usize = 3;
const THROTTLE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// CodeDeploy deploying a service through a deployment group.
pub struct CodeDeployEngine {
    pub api: Arc<dyn CodeDeployApi>,
    pub application: String,
    pub deployment_group: String,
}

#[async_trait]
impl DeploymentEngine for CodeDeployEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::CodeDeploy
    }

    /// CreateDeployment is sent again only after a throttle (refused before CodeDeploy acted);
    /// any other failure may have created the deployment, and is left to the caller, which
    /// reads the group's deployments back before creating anything.
    async fn start(&self, launch: &Launch) -> Result<String, AwsError> {
        let request = NewDeployment {
            application: self.application.clone(),
            deployment_group: self.deployment_group.clone(),
            appspec: launch.appspec.clone(),
            description: launch.description.clone(),
        };
        let mut backoff = THROTTLE_BACKOFF;
        for _ in 1..START_ATTEMPTS {
            match self.api.create_deployment(&request).await {
                Err(e) if e.kind == AwsErrorKind::Throttled => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                }
                answer => return answer,
            }
        }
        self.api.create_deployment(&request).await
    }

    async fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, AwsError> {
        let found = self
            .api
            .deployments_since(&self.application, &self.deployment_group, since)
            .await?;
        Ok(found.into_iter().map(codedeploy_run).collect())
    }

    async fn active_runs(&self) -> Result<Vec<Run>, AwsError> {
        let found = self
            .api
            .active_deployments(&self.application, &self.deployment_group)
            .await?;
        Ok(found.into_iter().map(codedeploy_run).collect())
    }
}

/// ECS deploying a service itself (`BLUE_GREEN`, `LINEAR`, `CANARY`): UpdateService starts a
/// deployment, which runs by the service's own deployment configuration.
pub struct EcsEngine {
    pub api: Arc<dyn EcsApi>,
    pub cluster: String,
    pub service: String,
}

impl EcsEngine {
    /// The runs listed, each with the revision it deploys (one DescribeServiceRevisions each:
    /// a service rarely has more than one deployment in a window).
    async fn with_revisions(
        &self,
        listed: Vec<ServiceDeploymentBrief>,
    ) -> Result<Vec<Run>, AwsError> {
        let mut runs = Vec::with_capacity(listed.len());
        for d in listed {
            let task_definition = match &d.target_revision {
                Some(revision) => Some(
                    self.api
                        .service_revision(revision)
                        .await?
                        .task_definition_arn,
                ),
                None => None,
            };
            runs.push(native_run(d, task_definition));
        }
        Ok(runs)
    }
}

#[async_trait]
impl DeploymentEngine for EcsEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Ecs
    }

    async fn start(&self, launch: &Launch) -> Result<String, AwsError> {
        let busy = self
            .api
            .service_deployments(&self.cluster, &self.service, None, true)
            .await?;
        if let Some(running) = busy.first() {
            return Err(AwsError::new(
                "UpdateService",
                format!("ECS service {}/{}", self.cluster, self.service),
                AwsErrorKind::DeploymentLimitExceeded,
                format!(
                    "the service is deploying already ({} is {})",
                    running.arn, running.status
                ),
            ));
        }
        let asked_at = Utc::now();
        let started = self
            .api
            .update_service(&self.cluster, &self.service, &launch.task_definition)
            .await?;
        if let Some(arn) = started {
            return Ok(arn);
        }
        // UpdateService named no deployment: the newest one created since, for this revision.
        let since = asked_at - chrono::TimeDelta::minutes(1);
        let runs = self.runs_since(since).await?;
        runs.into_iter()
            .find(|r| r.task_definition.as_deref() == Some(launch.task_definition.as_str()))
            .map(|r| r.id)
            .ok_or_else(|| {
                AwsError::new(
                    "ListServiceDeployments",
                    format!("ECS service {}/{}", self.cluster, self.service),
                    AwsErrorKind::Unavailable,
                    "UpdateService was accepted but no service deployment of the revision is listed yet",
                )
            })
    }

    async fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, AwsError> {
        let listed = self
            .api
            .service_deployments(&self.cluster, &self.service, Some(since), false)
            .await?;
        self.with_revisions(listed).await
    }

    async fn active_runs(&self) -> Result<Vec<Run>, AwsError> {
        let listed = self
            .api
            .service_deployments(&self.cluster, &self.service, None, true)
            .await?;
        self.with_revisions(listed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(controller: Option<&str>, strategy: Option<&str>) -> EcsServiceInfo {
        EcsServiceInfo {
            controller: controller.map(str::to_string),
            strategy: strategy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_engine_is_read_from_the_service() {
        assert_eq!(
            discover(&service(Some("CODE_DEPLOY"), None)),
            Some(EngineKind::CodeDeploy)
        );
        assert_eq!(
            discover(&service(Some("ECS"), Some("BLUE_GREEN"))),
            Some(EngineKind::Ecs)
        );
        assert_eq!(
            discover(&service(None, Some("BLUE_GREEN"))),
            Some(EngineKind::Ecs)
        );
        for progressive in ["LINEAR", "CANARY"] {
            assert_eq!(
                discover(&service(None, Some(progressive))),
                Some(EngineKind::Ecs),
                "{progressive}"
            );
        }
        assert_eq!(discover(&service(Some("ECS"), Some("ROLLING"))), None);
        assert_eq!(discover(&service(Some("ECS"), None)), None);
        assert_eq!(
            discover(&service(Some("EXTERNAL"), Some("BLUE_GREEN"))),
            None
        );
    }

    #[test]
    fn service_deployment_arns_name_their_service() {
        let arn = "arn:aws:ecs:us-east-1:111122223333:service-deployment/default/web2/AbC123";
        assert!(is_service_deployment_arn(arn));
        assert!(!is_service_deployment_arn("d-ABCDEF123"));
        assert_eq!(service_of_arn(arn), Some(("default", "web2")));
        assert_eq!(
            service_of_arn("arn:aws:ecs:us-east-1:111122223333:service/default/web2"),
            Some(("default", "web2"))
        );
        assert_eq!(
            service_of_arn("arn:aws:ecs:us-east-1:1:service/default"),
            None
        );
        assert_eq!(service_of_arn("d-ABCDEF123"), None);
    }

    #[test]
    fn a_native_rollback_holds_the_service_and_ends_as_failed() {
        let run = |status: &str| {
            native_run(
                ServiceDeploymentBrief {
                    arn: "a".into(),
                    status: status.into(),
                    ..Default::default()
                },
                None,
            )
        };
        assert!(run("ROLLBACK_IN_PROGRESS").active);
        assert!(run("PENDING").active);
        assert!(!run("ROLLBACK_SUCCESSFUL").active);
        assert!(run("").active, "no status is not an end");
        assert!(run("SOMETHING_NEW").active);
        assert_eq!(run("ROLLBACK_SUCCESSFUL").ended, ReleaseStatus::Failed);
        assert_eq!(run("ROLLBACK_FAILED").ended, ReleaseStatus::Failed);
        assert_eq!(run("SUCCESSFUL").ended, ReleaseStatus::Succeeded);
        assert_eq!(run("STOPPED").ended, ReleaseStatus::Stopped);
    }
}
