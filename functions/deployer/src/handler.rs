//! The deployer's decisions, over the ports of `greenlight_shared::aws` and the ledger.

use std::sync::Arc;

use aws_lambda_events::codedeploy::CodeDeployEvent;
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::{CodeDeployApi, NewDeployment};
use greenlight_shared::aws::ecs::EcsApi;
use greenlight_shared::events::{classify_push, EcrImageEvent, Location};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{
    Claim, Ledger, LedgerError, Parked, ReleaseRecord, ReleaseStatus, Slot,
};
use greenlight_shared::task_definition::{
    container_image, next_revision, ReleaseImage, RewriteError,
};
use greenlight_shared::{AppConfig, AwsError, AwsErrorKind, Config};
use serde::Serialize;
use tracing::{info, warn};

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    pub ecs: Arc<dyn EcsApi>,
    pub ledger: Arc<dyn Ledger>,
    /// Name or ARN of the health-hook function, written into each AppSpec.
    pub hook_function: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    #[error("cannot tell the account this function runs in from its ARN `{0}`")]
    UnknownLocation(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    #[error(
        "ECS service {cluster}/{service} has no load-balanced container: blue/green needs one"
    )]
    NoLoadBalancer { cluster: String, service: String },
}

impl DeployError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::MalformedEvent(_) => "MalformedEvent",
            Self::UnknownLocation(_) => "UnknownLocation",
            Self::Aws(e) => match e.kind {
                AwsErrorKind::NotFound => "AwsResourceNotFound",
                AwsErrorKind::AccessDenied => "AwsAccessDenied",
                AwsErrorKind::Throttled => "AwsThrottled",
                _ => "AwsError",
            },
            Self::Ledger(_) => "LedgerUnavailable",
            Self::Rewrite(_) => "TaskDefinitionRewrite",
            Self::NoLoadBalancer { .. } => "NoLoadBalancer",
        }
    }
}

impl From<DeployError> for lambda_runtime::Diagnostic {
    fn from(e: DeployError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: e.to_string(),
        }
    }
}

/// What the deployer did with an event (also the invocation's response payload).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Skipped {
        reason: String,
    },
    Deployed {
        app: String,
        version: String,
        digest: String,
        task_definition: String,
        deployment_id: String,
    },
    AlreadyRunning {
        app: String,
        version: String,
    },
    Waiting {
        app: String,
        version: String,
        replaced: Option<String>,
    },
    Superseded {
        app: String,
        version: String,
        by: String,
    },
    Duplicate {
        app: String,
        version: String,
        status: String,
    },
    InProgressElsewhere {
        app: String,
        version: String,
    },
    Finished {
        app: String,
        deployment_id: String,
        next: Option<Box<Outcome>>,
    },
}

/// Entry point: routes an EventBridge event by its source.
pub async fn handle(
    deps: &Deps,
    event: serde_json::Value,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    match event.get("source").and_then(|s| s.as_str()) {
        Some("aws.ecr") => {
            let event: EcrImageEvent = serde_json::from_value(event)
                .map_err(|e| DeployError::MalformedEvent(format!("ECR event: {e}")))?;
            handle_push(deps, &event, invocation).await
        }
        Some("aws.codedeploy") => {
            let event: CodeDeployEvent = serde_json::from_value(event)
                .map_err(|e| DeployError::MalformedEvent(format!("CodeDeploy event: {e}")))?;
            handle_deployment_end(deps, &event, invocation).await
        }
        other => Err(DeployError::MalformedEvent(format!(
            "unexpected event source {}",
            other.unwrap_or("<none>")
        ))),
    }
}

async fn handle_push(
    deps: &Deps,
    event: &EcrImageEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let here = Location::from_function_arn(&invocation.function_arn)
        .ok_or_else(|| DeployError::UnknownLocation(invocation.function_arn.clone()))?;
    let (push, app) = match classify_push(event, &deps.config, &here) {
        Ok(found) => found,
        Err(reason) => {
            info!(
                skip = reason.code(),
                repository = event.detail.repository_name.as_deref().unwrap_or(""),
                tag = event.detail.image_tag.as_deref().unwrap_or(""),
                action = event.detail.action_type.as_deref().unwrap_or(""),
                "skipped: {reason}"
            );
            return Ok(Outcome::Skipped {
                reason: reason.to_string(),
            });
        }
    };
    info!(app = %push.app, version = %push.version, digest = %push.digest, "release pushed");
    match deps.ledger.claim(&push, &invocation.request_id).await? {
        Claim::HeldElsewhere(record) => {
            info!(app = %record.app, version = %record.version, "another invocation is deploying this release");
            Ok(Outcome::InProgressElsewhere {
                app: record.app,
                version: record.version,
            })
        }
        Claim::Done(record) => {
            info!(app = %record.app, version = %record.version, status = record.status.as_str(), "release already handled");
            Ok(Outcome::Duplicate {
                app: record.app,
                version: record.version,
                status: record.status.as_str().to_string(),
            })
        }
        Claim::Acquired(record) => match deploy_or_wait(deps, app, record).await? {
            Step::WaitingBehindGreenlight(outcome) => {
                // The running release may have ended while this one was being parked: its end
                // found nothing pending, so start the pending release now if the group is free.
                Ok(start_pending(deps, app, &invocation.request_id)
                    .await?
                    .unwrap_or(outcome))
            }
            Step::Done(outcome) => Ok(outcome),
        },
    }
}

/// A deployment of the app ended: free its group and start the waiting release, if any.
async fn handle_deployment_end(
    deps: &Deps,
    event: &CodeDeployEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let d = &event.detail;
    let deployment_id = d.deployment_id.clone().unwrap_or_default();
    let outcome = match d.state.as_str() {
        "SUCCESS" => ReleaseStatus::Succeeded,
        "FAILURE" => ReleaseStatus::Failed,
        "STOP" => ReleaseStatus::Stopped,
        other => {
            info!(deployment_id = %deployment_id, state = other, "skipped: not the end of a deployment");
            return Ok(Outcome::Skipped {
                reason: format!("state {other} is not the end of a deployment"),
            });
        }
    };
    let (application, group) = (
        d.application.as_deref().unwrap_or(""),
        d.deployment_group.as_deref().unwrap_or(""),
    );
    let Some(app) = deps.config.app_for_deployment_group(application, group) else {
        info!(
            application,
            deployment_group = group,
            "skipped: deployment group not managed by Greenlight"
        );
        return Ok(Outcome::Skipped {
            reason: format!("deployment group {application}/{group} is not managed"),
        });
    };
    let finished = deps
        .ledger
        .finish(&app.name, &deployment_id, outcome)
        .await?;
    info!(app = %app.name, deployment_id = %deployment_id, state = %d.state, digest = finished.as_deref().unwrap_or(""), "deployment ended");
    let next = start_pending(deps, app, &invocation.request_id).await?;
    Ok(Outcome::Finished {
        app: app.name.clone(),
        deployment_id,
        next: next.map(Box::new),
    })
}

/// Starts the app's pending release if the group is free.
async fn start_pending(
    deps: &Deps,
    app: &AppConfig,
    owner: &str,
) -> Result<Option<Outcome>, DeployError> {
    let Some(record) = deps.ledger.take_pending(&app.name, owner).await? else {
        return Ok(None);
    };
    info!(app = %app.name, version = %record.version, "starting the pending release");
    Ok(Some(
        deploy_or_wait(deps, app, record).await?.into_outcome(),
    ))
}

/// Where a release stands after an attempt to deploy it.
enum Step {
    Done(Outcome),
    /// Parked behind a release Greenlight is deploying (the ledger's slot was taken).
    WaitingBehindGreenlight(Outcome),
}

impl Step {
    fn into_outcome(self) -> Outcome {
        match self {
            Self::Done(o) | Self::WaitingBehindGreenlight(o) => o,
        }
    }
}

/// Deploys a claimed release, resuming after the last step its record shows; waits when busy.
async fn deploy_or_wait(
    deps: &Deps,
    app: &AppConfig,
    record: ReleaseRecord,
) -> Result<Step, DeployError> {
    let group = deps
        .codedeploy
        .deployment_group(&app.application, &app.deployment_group)
        .await?;
    let service = deps.ecs.service(&group.cluster, &group.service).await?;
    let lb = service
        .load_balancers
        .first()
        .ok_or_else(|| DeployError::NoLoadBalancer {
            cluster: group.cluster.clone(),
            service: group.service.clone(),
        })?;
    let container = app
        .container
        .clone()
        .unwrap_or_else(|| lb.container_name.clone());

    // A fresh release: read the service's task definition (needed to register the next one).
    let current = match &record.task_definition_arn {
        Some(_) => None,
        None => {
            let (td, tags) = deps
                .ecs
                .task_definition(&service.task_definition_arn)
                .await?;
            if container_image(&td, &container) == Some(record.image.as_str()) {
                info!(app = %app.name, version = %record.version, digest = %record.digest, "service already runs this image");
                deps.ledger
                    .record_status(&app.name, &record.digest, ReleaseStatus::AlreadyRunning)
                    .await?;
                deps.ledger.release_slot(&app.name, &record.digest).await?;
                return Ok(Step::Done(Outcome::AlreadyRunning {
                    app: app.name.clone(),
                    version: record.version,
                }));
            }
            Some((td, tags))
        }
    };

    if let Slot::Busy {
        active_digest,
        active_deployment_id,
    } = acquire_slot(deps, app, &record).await?
    {
        info!(app = %app.name, version = %record.version, active_digest = %active_digest,
              active_deployment = active_deployment_id.as_deref().unwrap_or(""), "deployment group busy");
        return Ok(Step::WaitingBehindGreenlight(park(deps, &record).await?));
    }

    let task_definition = match (&record.task_definition_arn, current) {
        (Some(arn), _) => {
            info!(app = %app.name, task_definition = %arn, "resuming after registration");
            arn.clone()
        }
        (None, Some((td, tags))) => {
            let request = next_revision(
                &td,
                &tags,
                &ReleaseImage {
                    app: &app.name,
                    container: &container,
                    image: &record.image,
                    version: &record.version,
                    digest: &record.digest,
                },
            )?;
            let arn = deps.ecs.register_task_definition(request).await?;
            info!(app = %app.name, version = %record.version, task_definition = %arn, "task definition registered");
            deps.ledger
                .record_registered(&app.name, &record.digest, &arn)
                .await?;
            arn
        }
        // A release without a registered revision always reads the current task definition above.
        (None, None) => {
            return Err(DeployError::Ledger(LedgerError {
                operation: "resume",
                message: format!(
                    "release {}/{} has no task definition to deploy",
                    app.name, record.digest
                ),
            }))
        }
    };

    let appspec = AppSpec {
        task_definition_arn: task_definition.clone(),
        container_name: lb.container_name.clone(),
        container_port: lb.container_port,
        hooks: app
            .hooks
            .iter()
            .map(|h| (h.clone(), deps.hook_function.clone()))
            .collect(),
    };
    let request = NewDeployment {
        application: app.application.clone(),
        deployment_group: app.deployment_group.clone(),
        appspec: appspec.to_json(),
        description: ReleaseDescription {
            app: app.name.clone(),
            version: record.version.clone(),
            digest: record.digest.clone(),
        }
        .to_string(),
    };
    match deps.codedeploy.create_deployment(&request).await {
        Ok(deployment_id) => {
            info!(app = %app.name, version = %record.version, deployment_id = %deployment_id, task_definition = %task_definition, "deployment created");
            deps.ledger
                .record_deploying(&app.name, &record.digest, &deployment_id)
                .await?;
            Ok(Step::Done(Outcome::Deployed {
                app: app.name.clone(),
                version: record.version,
                digest: record.digest,
                task_definition,
                deployment_id,
            }))
        }
        Err(e) if e.kind == AwsErrorKind::DeploymentLimitExceeded => {
            // Someone else (a manual deployment, a rollback) holds the group: wait for its end.
            info!(app = %app.name, version = %record.version, reason = %e.message, "deployment group busy outside Greenlight");
            deps.ledger.release_slot(&app.name, &record.digest).await?;
            let parked = ReleaseRecord {
                task_definition_arn: Some(task_definition),
                ..record
            };
            Ok(Step::Done(park(deps, &parked).await?))
        }
        Err(e) => {
            deps.ledger.release_slot(&app.name, &record.digest).await?;
            Err(e.into())
        }
    }
}

/// Takes the slot; a slot held by a deployment that has in fact ended (its end event was
/// lost) is reconciled with CodeDeploy once.
async fn acquire_slot(
    deps: &Deps,
    app: &AppConfig,
    record: &ReleaseRecord,
) -> Result<Slot, DeployError> {
    let slot = deps.ledger.acquire_slot(&app.name, &record.digest).await?;
    let Slot::Busy {
        active_deployment_id: Some(active),
        ..
    } = &slot
    else {
        return Ok(slot);
    };
    let deployment = deps.codedeploy.deployment(active).await?;
    if deployment.is_active() {
        return Ok(slot);
    }
    let outcome = match deployment.status.as_str() {
        "Succeeded" => ReleaseStatus::Succeeded,
        "Stopped" => ReleaseStatus::Stopped,
        _ => ReleaseStatus::Failed,
    };
    warn!(app = %app.name, deployment_id = %active, status = %deployment.status, "slot held by an ended deployment: freeing it");
    deps.ledger.finish(&app.name, active, outcome).await?;
    Ok(deps.ledger.acquire_slot(&app.name, &record.digest).await?)
}

async fn park(deps: &Deps, record: &ReleaseRecord) -> Result<Outcome, DeployError> {
    match deps.ledger.park(record).await? {
        Parked::Waiting { replaced } => {
            if let Some(older) = &replaced {
                warn!(app = %record.app, superseded = %older, by = %record.digest, version = %record.version, "older pending release superseded");
            }
            info!(app = %record.app, version = %record.version, "release waits for the running deployment");
            Ok(Outcome::Waiting {
                app: record.app.clone(),
                version: record.version.clone(),
                replaced,
            })
        }
        Parked::Superseded { by } => {
            warn!(app = %record.app, version = %record.version, by = %by, "a newer release is already waiting: this one is superseded");
            Ok(Outcome::Superseded {
                app: record.app.clone(),
                version: record.version.clone(),
                by,
            })
        }
    }
}
