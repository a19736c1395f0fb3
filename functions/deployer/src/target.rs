//! Where and how an app deploys: its ECS service, the engine its settings call for, the
//! load-balanced container, and the AppSpec a CodeDeploy deployment carries.

use crate::core::{DeployError, Deps};
use greenlight_shared::appspec::AppSpec;
use greenlight_shared::aws::ecs::{EcsServiceInfo, LoadBalancedContainer};
use greenlight_shared::engine::{self, CodeDeployEngine, DeploymentEngine, EcsEngine, EngineKind};
use greenlight_shared::AppConfig;

/// The AppSpec of a deployment of `task_definition` (the same for a deploy and its plan).
pub(crate) fn appspec_of(
    deps: &Deps,
    app: &AppConfig,
    lb: &greenlight_shared::aws::ecs::LoadBalancedContainer,
    task_definition: String,
) -> AppSpec {
    AppSpec {
        task_definition_arn: task_definition,
        container_name: lb.container_name.clone(),
        container_port: lb.container_port,
        hooks: app
            .hooks
            .iter()
            .map(|h| (h.clone(), deps.hook_function.clone()))
            .collect(),
    }
}

/// Where and how an app deploys, read for one deployment.
pub(crate) struct Target {
    pub(crate) engine: Box<dyn DeploymentEngine>,
    pub(crate) service: EcsServiceInfo,
    /// The load-balanced container, and the container a release replaces the image of.
    pub(crate) lb: LoadBalancedContainer,
    pub(crate) container: String,
}

/// The app's ECS service (named, or read from its deployment group) and the engine its
/// deployment settings call for (`greenlight_shared::engine`).
pub(crate) async fn target(deps: &Deps, app: &AppConfig) -> Result<Target, DeployError> {
    let mut group_waits = None;
    let (cluster, name) = match (&app.service, &app.group) {
        (Some(s), _) => (s.cluster.clone(), s.service.clone()),
        (None, Some(g)) => {
            let group = deps
                .codedeploy
                .deployment_group(&g.application, &g.deployment_group)
                .await?;
            group_waits = Some(group.waits_before_reroute);
            (group.cluster, group.service)
        }
        (None, None) => unreachable!("the config names a service or a deployment group"),
    };
    let service = deps.ecs.service(&cluster, &name).await?;
    let kind = match (engine::discover(&service), &app.group) {
        (Some(kind), _) => kind,
        // The operator says CodeDeploy deploys it; CodeDeploy checks the rest.
        (None, Some(_)) => EngineKind::CodeDeploy,
        (None, None) => {
            return Err(DeployError::NotBlueGreen {
                cluster,
                service: name,
            })
        }
    };
    if let Some(pinned) = app.engine.filter(|pinned| *pinned != kind) {
        return Err(DeployError::EngineMismatch {
            app: app.name.clone(),
            pinned,
            found: kind,
        });
    }
    if app.approval.required {
        check_approval_wait(app, kind, &service, group_waits, &cluster, &name)?;
    }
    let engine: Box<dyn DeploymentEngine> = match (kind, &app.group) {
        (EngineKind::CodeDeploy, Some(g)) => Box::new(CodeDeployEngine {
            api: deps.codedeploy.clone(),
            application: g.application.clone(),
            deployment_group: g.deployment_group.clone(),
        }),
        (EngineKind::CodeDeploy, None) => {
            return Err(DeployError::NoDeploymentGroup {
                app: app.name.clone(),
                cluster,
                service: name,
            })
        }
        (EngineKind::Ecs, _) => Box::new(EcsEngine {
            api: deps.ecs.clone(),
            cluster: cluster.clone(),
            service: name.clone(),
        }),
    };
    let lb = service
        .load_balancers
        .first()
        .cloned()
        .ok_or(DeployError::NoLoadBalancer {
            cluster,
            service: name,
        })?;
    let container = app
        .container
        .clone()
        .unwrap_or_else(|| lb.container_name.clone());
    Ok(Target {
        engine,
        service,
        lb,
        container,
    })
}

/// An app that asks for approval deploys only where its engine holds the release for the
/// decision and rolls back when nobody decides: ECS with a PAUSE hook at
/// PRE_PRODUCTION_TRAFFIC_SHIFT whose timeout action is ROLLBACK; CodeDeploy with a group that
/// waits before rerouting and stops on timeout.
fn check_approval_wait(
    app: &AppConfig,
    kind: EngineKind,
    service: &EcsServiceInfo,
    group_waits: Option<bool>,
    cluster: &str,
    name: &str,
) -> Result<(), DeployError> {
    let missing = |engine_setting: String| {
        Err(DeployError::NoApprovalWait {
            app: app.name.clone(),
            engine_setting,
        })
    };
    match kind {
        EngineKind::Ecs => {
            let pause = service.lifecycle_hooks.iter().find(|h| {
                h.pause && h.stages.iter().any(|s| s == "PRE_PRODUCTION_TRAFFIC_SHIFT")
            });
            match pause {
                None => missing(format!("ECS service {cluster}/{name} has no PAUSE lifecycle hook at PRE_PRODUCTION_TRAFFIC_SHIFT")),
                Some(h) if h.timeout_action.as_deref() == Some("CONTINUE") => missing(format!(
                    "the PAUSE hook of ECS service {cluster}/{name} continues when its wait runs out (its timeout action must be ROLLBACK)"
                )),
                Some(_) => Ok(()),
            }
        }
        EngineKind::CodeDeploy => match (group_waits, &app.group) {
            (Some(false), Some(g)) => missing(format!(
                "deployment group {}/{} reroutes traffic at once (set its deploymentReadyOption: actionOnTimeout STOP_DEPLOYMENT, waitTimeInMinutes {})",
                g.application, g.deployment_group, app.approval.timeout_minutes
            )),
            _ => Ok(()),
        },
    }
}
