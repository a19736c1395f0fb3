//! The deployer's decisions, over the ports of `greenlight_shared::aws` and the ledger.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::codedeploy::CodeDeployEvent;
use chrono::Utc;
use greenlight_shared::appspec::{AppSpec, ReleaseDescription};
use greenlight_shared::aws::codedeploy::CodeDeployApi;
use greenlight_shared::aws::ecr::RegistryApi;
use greenlight_shared::aws::ecs::{EcsApi, EcsServiceInfo, LoadBalancedContainer};
use greenlight_shared::engine::{
    self, CodeDeployEngine, DeploymentEngine, EcsEngine, EngineKind, Launch, Run,
};
use greenlight_shared::events::{
    classify_push, clipped, is_deployment_id, is_sha256_digest, may_end, registry_host,
    service_of_event, EcrImageEvent, EcsDeploymentEvent, ImagePush, Location, SHOWN_NAME_MAX,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Claim, Ledger, LedgerError, ReleaseRecord, ReleaseStatus};
use greenlight_shared::queue::{Lease, Next, Plan, Queue, Ticket};
use greenlight_shared::request::{OperatorRequest, RequestKind};
use greenlight_shared::tag_rule::compare_versions;
use greenlight_shared::task_definition::{
    container_image, next_revision, revision_changes, ReleaseImage, RewriteError,
};
use greenlight_shared::{AppConfig, AwsError, AwsErrorKind, Config};
use serde::Serialize;
use tracing::{info, warn};

/// How long after an invocation's deadline its claims and queue lease stay its own: Lambda
/// has stopped it by then; the margin covers clock differences between hosts.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// How long a recorded deployment that AWS answers NotFound for may hold the queue: right
/// after its creation a read can miss it; long after, it is gone for good.
const NOT_FOUND_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// How far back a resumed release looks for a deployment of its own, before it took the queue
/// (clock differences between CodeDeploy and the function).
const ADOPTION_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub struct Deps {
    pub config: Config,
    pub codedeploy: Arc<dyn CodeDeployApi>,
    pub ecs: Arc<dyn EcsApi>,
    /// Where the provenance of a pushed image is read.
    pub registry: Arc<dyn RegistryApi>,
    pub ledger: Arc<dyn Ledger>,
    /// Name or ARN of the health-hook function, written into each AppSpec.
    pub hook_function: String,
    /// How long past its deadline an invocation's leases last ([`LEASE_MARGIN`] in Lambda).
    pub lease_margin: Duration,
    /// The first pause before a native end event is read back again ([`READBACK_PAUSE`] in
    /// Lambda); each next pause is twice as long.
    pub readback_pause: Duration,
}

impl greenlight_shared::startup::UsesConfig for Deps {
    fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
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
    #[error("ECS service {cluster}/{service} is not deployed blue/green (its deployment controller is neither CODE_DEPLOY nor ECS with the BLUE_GREEN strategy)")]
    NotBlueGreen { cluster: String, service: String },
    #[error("app `{app}` pins engine {pinned}, but its service is deployed by {found}")]
    EngineMismatch {
        app: String,
        pinned: EngineKind,
        found: EngineKind,
    },
    #[error("ECS service {cluster}/{service} is deployed by CodeDeploy: name its deployment group in the config (apps.{app}.application, deployment_group)")]
    NoDeploymentGroup {
        app: String,
        cluster: String,
        service: String,
    },
    #[error("the queue of app {0} kept changing under contention")]
    Contention(String),
    #[error("no app named `{0}` in the config")]
    UnknownApp(String),
    #[error("{0}")]
    ReleaseNotFound(String),
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
            Self::NotBlueGreen { .. } => "NotBlueGreen",
            Self::EngineMismatch { .. } => "EngineMismatch",
            Self::NoDeploymentGroup { .. } => "NoDeploymentGroup",
            Self::Contention(_) => "LedgerContention",
            Self::UnknownApp(_) => "UnknownApp",
            Self::ReleaseNotFound(_) => "ReleaseNotFound",
        }
    }

    /// Whether retrying cannot help: the release is closed as failed rather than holding the
    /// queue for ever.
    fn is_permanent(&self) -> bool {
        match self {
            Self::Aws(e) => matches!(
                e.kind,
                AwsErrorKind::NotFound | AwsErrorKind::AccessDenied | AwsErrorKind::Invalid
            ),
            Self::Rewrite(_)
            | Self::NoLoadBalancer { .. }
            | Self::NotBlueGreen { .. }
            | Self::EngineMismatch { .. }
            | Self::NoDeploymentGroup { .. } => true,
            _ => false,
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
    /// The periodic sweep: what it found to do in each app's queue.
    Swept {
        apps: usize,
        actions: Vec<Outcome>,
    },
    /// An operator's request to deploy: the release it resolved to, and what became of it.
    Requested {
        request_id: String,
        version: String,
        digest: String,
        result: Box<Outcome>,
    },
    /// What a deploy of the release would do (an operator's `plan`); nothing was written.
    Planned {
        app: String,
        version: String,
        digest: String,
        /// The revision the service runs, which the new one is made from.
        task_definition: String,
        /// One line per difference between the two revisions.
        changes: Vec<String>,
        /// The engine that would deploy it.
        engine: EngineKind,
        /// The AppSpec a CodeDeploy deployment would carry (its new revision is named when
        /// registered); null for ECS blue/green, which deploys the revision itself.
        appspec: serde_json::Value,
        /// The service runs this image already (a deploy would replace its tasks).
        already_running: bool,
    },
}

/// What the deployer is invoked with, read from the EventBridge envelope by its source.
#[derive(Debug)]
pub enum DeployerEvent {
    Push(EcrImageEvent),
    DeploymentEnd(CodeDeployEvent),
    /// A native blue/green deployment changed state.
    ServiceDeploymentChange(EcsDeploymentEvent),
    Sweep,
    /// An operator's request, from the `greenlight` command.
    Request(OperatorRequest),
}

/// Reads an invocation's payload; anything else is a `MalformedEvent` with a short reason that
/// repeats none of the payload's values.
pub fn parse_event(event: serde_json::Value) -> Result<DeployerEvent, DeployError> {
    if event.get("greenlight").is_some() {
        let request: OperatorRequest =
            serde_json::from_value(event).map_err(|e| malformed("operator request", &e))?;
        if let Some(problem) = request.problem() {
            return Err(DeployError::MalformedEvent(format!(
                "operator request: {problem}"
            )));
        }
        return Ok(DeployerEvent::Request(request));
    }
    match event.get("source").and_then(|s| s.as_str()) {
        Some("aws.ecr") => serde_json::from_value(event)
            .map(DeployerEvent::Push)
            .map_err(|e| malformed("ECR event", &e)),
        Some("aws.codedeploy") => serde_json::from_value(event)
            .map(DeployerEvent::DeploymentEnd)
            .map_err(|e| malformed("CodeDeploy event", &e)),
        Some("aws.ecs") => serde_json::from_value(event)
            .map(DeployerEvent::ServiceDeploymentChange)
            .map_err(|e| malformed("ECS deployment event", &e)),
        Some("aws.events") => Ok(DeployerEvent::Sweep),
        Some(_) => Err(DeployError::MalformedEvent(
            "unexpected event source".into(),
        )),
        None => Err(DeployError::MalformedEvent(
            "the event names no source".into(),
        )),
    }
}

/// Entry point: routes an EventBridge event by its source.
pub async fn handle(
    deps: &Deps,
    event: serde_json::Value,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    match parse_event(event)? {
        DeployerEvent::Push(event) => handle_push(deps, &event, invocation).await,
        DeployerEvent::DeploymentEnd(event) => {
            handle_deployment_end(deps, &event, invocation).await
        }
        DeployerEvent::ServiceDeploymentChange(event) => {
            handle_service_deployment_change(deps, &event, invocation).await
        }
        DeployerEvent::Sweep => sweep(deps, invocation).await,
        DeployerEvent::Request(request) => handle_request(deps, &request, invocation).await,
    }
}

/// A short reason, without the values the parser quoted (they may be anything, of any size).
fn malformed(what: &str, e: &serde_json::Error) -> DeployError {
    DeployError::MalformedEvent(format!(
        "{what}: {}",
        greenlight_shared::error::redact_event_error(&e.to_string())
    ))
}

/// The account and region the function runs in, from its ARN.
fn location(invocation: &Invocation) -> Result<Location, DeployError> {
    Location::from_function_arn(&invocation.function_arn)
        .ok_or_else(|| DeployError::UnknownLocation(invocation.function_arn.clone()))
}

fn lease_of(deps: &Deps, invocation: &Invocation) -> Lease {
    Lease {
        owner: invocation.request_id.clone(),
        until_ms: (invocation.deadline_ms + deps.lease_margin.as_millis() as u64) as i64,
        now_ms: Utc::now().timestamp_millis(),
    }
}

async fn handle_push(
    deps: &Deps,
    event: &EcrImageEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let here = location(invocation)?;
    let (push, app) = match classify_push(event, &deps.config, &here) {
        Ok(found) => found,
        Err(reason) => {
            let shown = |v: &Option<String>| clipped(v.as_deref().unwrap_or(""), SHOWN_NAME_MAX);
            info!(
                skip = reason.code(),
                repository = %shown(&event.detail.repository_name),
                tag = %shown(&event.detail.image_tag),
                action = %shown(&event.detail.action_type),
                "skipped: {reason}"
            );
            return Ok(Outcome::Skipped {
                reason: reason.to_string(),
            });
        }
    };
    let push = with_provenance(deps, push).await;
    info!(app = %push.app, version = %push.version, digest = %push.digest,
          commit = push.provenance.short_revision().unwrap_or(""),
          actor = push.provenance.actor.as_deref().unwrap_or(""), "release pushed");
    deploy_release(deps, &push, app, invocation).await
}

/// An operator asks to deploy (or roll back to, or plan) a release of an app: the release is
/// read from the app's own repository in ECR, then goes the way of a push.
async fn handle_request(
    deps: &Deps,
    request: &OperatorRequest,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let here = location(invocation)?;
    let app = deps
        .config
        .app_named(&request.app)
        .ok_or_else(|| DeployError::UnknownApp(clipped(&request.app, SHOWN_NAME_MAX)))?;
    let push = requested_release(deps, app, request, &here).await?;
    info!(app = %push.app, version = %push.version, digest = %push.digest,
          request = request.greenlight.as_str(), request_id = %request.request_id,
          requested_by = %request.requested_by, "operator request");
    match request.greenlight {
        RequestKind::Plan => plan(deps, app, &push).await,
        RequestKind::Deploy | RequestKind::Rollback => Ok(Outcome::Requested {
            request_id: request.request_id.clone(),
            version: push.version.clone(),
            digest: push.digest.clone(),
            result: Box::new(deploy_release(deps, &push, app, invocation).await?),
        }),
    }
}

/// The release a request names, found in the app's repository (never another): by tag, or by
/// digest with the release tag the image carries.
async fn requested_release(
    deps: &Deps,
    app: &AppConfig,
    request: &OperatorRequest,
    here: &Location,
) -> Result<ImagePush, DeployError> {
    let reference = request.release.as_str();
    let by_digest = reference.starts_with("sha256:");
    let shown = clipped(reference, SHOWN_NAME_MAX);
    if !(by_digest && is_sha256_digest(reference) || app.tag_rule.is_release(reference)) {
        return Err(DeployError::ReleaseNotFound(format!(
            "`{shown}` is neither a release tag of app {} nor an image digest",
            app.name
        )));
    }
    let image = match deps.registry.image(&app.repository, reference).await {
        Ok(image) => image,
        Err(e) if e.kind == AwsErrorKind::NotFound => {
            return Err(DeployError::ReleaseNotFound(format!(
                "ECR repository {} has no image {shown}",
                app.repository
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let version = if by_digest {
        let mut releases: Vec<&String> = image
            .tags
            .iter()
            .filter(|t| app.tag_rule.is_release(t))
            .collect();
        releases.sort_by(|a, b| compare_versions(a, b));
        releases.pop().cloned().ok_or_else(|| {
            DeployError::ReleaseNotFound(format!(
                "image {shown} of {} has no release tag",
                app.repository
            ))
        })?
    } else {
        reference.to_string()
    };
    let push = ImagePush {
        app: app.name.clone(),
        image: format!(
            "{}/{}@{}",
            registry_host(&here.account, &here.region),
            app.repository,
            image.digest
        ),
        repository: app.repository.clone(),
        version,
        digest: image.digest,
        // Its place in the order is when the deployer received it: the operator's clock,
        // ahead or behind, does not move it.
        pushed_at: Utc::now(),
        provenance: Default::default(),
        request: Some(request.requested()),
    };
    Ok(with_provenance(deps, push).await)
}

/// What a deploy of `push` would do, read and not written: the revision diff and the AppSpec.
async fn plan(deps: &Deps, app: &AppConfig, push: &ImagePush) -> Result<Outcome, DeployError> {
    let Target {
        engine,
        service,
        lb,
        container,
    } = target(deps, app).await?;
    let (td, tags) = deps
        .ecs
        .task_definition(&service.task_definition_arn)
        .await?;
    let next = next_revision(
        &td,
        &tags,
        &ReleaseImage {
            app: &app.name,
            container: &container,
            image: &push.image,
            version: &push.version,
            digest: &push.digest,
        },
    )?;
    let appspec = appspec_of(
        deps,
        app,
        &lb,
        format!(
            "(the next revision of {}, registered by the deploy)",
            td.family().unwrap_or("the family")
        ),
    );
    Ok(Outcome::Planned {
        app: app.name.clone(),
        version: push.version.clone(),
        digest: push.digest.clone(),
        already_running: container_image(&td, &container) == Some(push.image.as_str()),
        changes: revision_changes(&td, &tags, &next),
        task_definition: service.task_definition_arn,
        engine: engine.kind(),
        appspec: match engine.kind() {
            EngineKind::CodeDeploy => serde_json::from_str(&appspec.to_json()).unwrap_or_default(),
            EngineKind::Ecs => serde_json::Value::Null,
        },
    })
}

/// The AppSpec of a deployment of `task_definition` (the same for a deploy and its plan).
fn appspec_of(
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
struct Target {
    engine: Box<dyn DeploymentEngine>,
    service: EcsServiceInfo,
    /// The load-balanced container, and the container a release replaces the image of.
    lb: LoadBalancedContainer,
    container: String,
}

/// The app's ECS service (named, or read from its deployment group) and the engine its
/// deployment settings call for (`greenlight_shared::engine`).
async fn target(deps: &Deps, app: &AppConfig) -> Result<Target, DeployError> {
    let (cluster, name) = match (&app.service, &app.group) {
        (Some(s), _) => (s.cluster.clone(), s.service.clone()),
        (None, Some(g)) => {
            let group = deps
                .codedeploy
                .deployment_group(&g.application, &g.deployment_group)
                .await?;
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

/// Claims a release (a push, or an operator's request) and takes it through the app's queue.
async fn deploy_release(
    deps: &Deps,
    push: &ImagePush,
    app: &AppConfig,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let mut driver = Driver::new(deps, app, invocation);
    let record = match deps.ledger.claim(push, &driver.lease).await? {
        Claim::HeldElsewhere(record) => {
            info!(app = %record.app, version = %record.version, digest = %record.digest, "another invocation is deploying this release");
            return Ok(Outcome::InProgressElsewhere {
                app: record.app,
                version: record.version,
            });
        }
        Claim::Done(record)
            if record.status == ReleaseStatus::Pending && push.request.is_some() =>
        {
            // An operator asks for the release that waits: it takes the request's place.
            let asked = Ticket {
                pushed_at_ms: push.pushed_at.timestamp_millis(),
                ..ticket_of(&record)
            };
            let next = driver.apply(|q, _| q.promote_pending(&asked)).await?;
            info!(app = %record.app, version = %record.version, digest = %record.digest,
                  promoted = matches!(next, Next::Waiting { .. }), "the requested release waits, in the request's place");
            return Ok(Outcome::Waiting {
                app: record.app,
                version: record.version,
                replaced: None,
            });
        }
        Claim::Done(record) => {
            info!(app = %record.app, version = %record.version, digest = %record.digest, status = record.status.as_str(), "release already handled");
            return Ok(Outcome::Duplicate {
                app: record.app,
                version: record.version,
                status: record.status.as_str().to_string(),
            });
        }
        Claim::Acquired(record) => record,
    };
    let ticket = ticket_of(&record);
    let next = driver.apply(|q, lease| q.admit(&ticket, lease)).await?;
    let outcome = match &next {
        Next::Waiting { replaced } => {
            info!(app = %app.name, version = %record.version, digest = %record.digest,
                  replaced = replaced.as_deref().unwrap_or(""), "a deployment is in progress (deployment group or service busy): the release waits");
            Outcome::Waiting {
                app: app.name.clone(),
                version: record.version.clone(),
                replaced: replaced.clone(),
            }
        }
        Next::Superseded { by } => {
            warn!(app = %app.name, version = %record.version, digest = %record.digest, by = %by,
                  "superseded: a newer release has started or is waiting; this one will not deploy");
            Outcome::Superseded {
                app: app.name.clone(),
                version: record.version.clone(),
                by: by.clone(),
            }
        }
        Next::HeldElsewhere => Outcome::InProgressElsewhere {
            app: app.name.clone(),
            version: record.version.clone(),
        },
        Next::Deploying { .. } | Next::Idle => Outcome::Duplicate {
            app: app.name.clone(),
            version: record.version.clone(),
            status: record.status.as_str().to_string(),
        },
        Next::Deploy { .. } => Outcome::Skipped {
            reason: String::new(),
        },
    };
    let next = match next {
        // A waiting push looks at what holds the group: its end event may have been lost, or
        // its invocation may have died.
        Next::Waiting { .. } => driver.settle().await?,
        next => next,
    };
    driver.follow(next, outcome, Some(record)).await
}

/// The push with who shipped it, as the image's annotations say. Best effort: provenance is
/// for people, so an image that cannot be read deploys without it (one warning line) rather
/// than wait for it.
async fn with_provenance(deps: &Deps, mut push: ImagePush) -> ImagePush {
    match deps
        .registry
        .provenance(&push.repository, &push.digest)
        .await
    {
        Ok(provenance) => push.provenance = provenance,
        Err(e) => warn!(app = %push.app, version = %push.version, error = %e,
                        "provenance unavailable: deploying without it"),
    }
    push
}

/// A deployment of the app ended: free its group and start the waiting release, if any.
async fn handle_deployment_end(
    deps: &Deps,
    event: &CodeDeployEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let d = &event.detail;
    let deployment_id = d.deployment_id.clone().unwrap_or_default();
    if !is_deployment_id(&deployment_id) {
        let shown = clipped(&deployment_id, 40);
        info!(deployment_id = %shown, "skipped: not a CodeDeploy deployment id");
        return Ok(Outcome::Skipped {
            reason: format!("`{shown}` is not a CodeDeploy deployment id"),
        });
    }
    let Some(outcome) = end_status(&d.state) else {
        let state = clipped(&d.state, greenlight_shared::events::SHOWN_NAME_MAX);
        info!(deployment_id = %deployment_id, state = %state, "skipped: not the end of a deployment");
        return Ok(Outcome::Skipped {
            reason: format!("state {state} is not the end of a deployment"),
        });
    };
    let (application, group) = (
        d.application.as_deref().unwrap_or(""),
        d.deployment_group.as_deref().unwrap_or(""),
    );
    let Some(app) = deps.config.app_for_deployment_group(application, group) else {
        // Every application's end events reach the deployer: names are shown clipped.
        let (application, group) = (
            clipped(application, greenlight_shared::events::SHOWN_NAME_MAX),
            clipped(group, greenlight_shared::events::SHOWN_NAME_MAX),
        );
        info!(
            application = %application,
            deployment_group = %group,
            "skipped: deployment group not managed by Greenlight"
        );
        return Ok(Outcome::Skipped {
            reason: format!("deployment group {application}/{group} is not managed"),
        });
    };
    let mut driver = Driver::new(deps, app, invocation);
    info!(app = %app.name, deployment_id = %deployment_id, state = %d.state, "deployment ended");
    let next = driver
        .apply(|q, lease| q.end(&deployment_id, outcome, lease))
        .await?;
    finish(&mut driver, next, deployment_id).await
}

/// A native deployment of a service changed state: when it may have ended, the app whose
/// release is deploying that service reads its deployment back (the event names the service,
/// not the service deployment, and is not the verdict) and, if it ended, frees its queue.
///
/// The event can come before the ledger or ECS agrees with it: the deployment is still being
/// recorded by the invocation that started it, or ECS still lists it as active. Both are read
/// again a few times over seconds ([`READBACK_PAUSE`]) before the event is let go (the sweep
/// is left). An app with nothing deploying on the service resumes whatever its queue holds:
/// this is how the retry of an end event that started the next release, and failed doing
/// so, carries on at once.
async fn handle_service_deployment_change(
    deps: &Deps,
    event: &EcsDeploymentEvent,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let Some((cluster, service)) = service_of_event(event) else {
        info!("skipped: the ECS deployment event names no valid service");
        return Ok(Outcome::Skipped {
            reason: "the ECS deployment event names no valid service".into(),
        });
    };
    let name = clipped(&event.detail.event_name, SHOWN_NAME_MAX);
    if !may_end(&event.detail) {
        info!(cluster = %cluster, service = %service, event = %name, "skipped: not the end of a deployment");
        return Ok(Outcome::Skipped {
            reason: format!("{name} is not the end of a deployment"),
        });
    }
    let on_service =
        |arn: &str| engine::service_of_arn(arn).is_some_and(|(c, s)| c == cluster && s == service);
    let mut pauses = (0..READBACKS).map(|i| deps.readback_pause * 2u32.pow(i));
    loop {
        let names: Vec<String> = deps.config.apps.iter().map(|a| a.name.clone()).collect();
        let queues = deps.ledger.queues(&names).await?;
        let apps_queues = || deps.config.apps.iter().zip(queues.iter());
        let deploying = apps_queues()
            .find(|(_, q)| q.active_deployment().is_some_and(on_service))
            .or_else(|| {
                let app = deps.config.app_for_service(cluster, service)?;
                apps_queues().find(|(a, _)| a.name == app.name)
            });
        let Some((app, queue)) = deploying else {
            info!(cluster = %cluster, service = %service, event = %name, "skipped: no release of Greenlight is deploying this service");
            return Ok(Outcome::Skipped {
                reason: format!("no release is deploying ECS service {cluster}/{service}"),
            });
        };
        let mut driver = Driver::new(deps, app, invocation);
        let Some(deployment_id) = queue
            .active_deployment()
            .filter(|id| on_service(id))
            .map(str::to_string)
        else {
            let being_recorded = queue.active.as_ref().is_some_and(|a| {
                a.deployment_id.is_none()
                    && a.owner != driver.lease.owner
                    && a.lease_until_ms > driver.lease.now_ms
            });
            if being_recorded {
                // Its deployment is being started: the event may be its end.
                if let Some(pause) = pauses.next() {
                    tokio::time::sleep(pause).await;
                    continue;
                }
                info!(app = %app.name, event = %name, "skipped: the service's deployment is still being recorded (the sweep reads it back)");
                return Ok(Outcome::Skipped {
                    reason: format!(
                        "the deployment of ECS service {cluster}/{service} is still being recorded"
                    ),
                });
            }
            // Nothing of ours runs there: resume what the queue holds (this invocation's own
            // retry, a release whose invocation died, one waiting in a free queue).
            info!(app = %app.name, event = %name, "service deployment ended: moving the app's queue on");
            driver.known = Some(queue.clone());
            let next = driver.settle().await?;
            let idle = Outcome::Skipped {
                reason: format!("no release is deploying ECS service {cluster}/{service}"),
            };
            return driver.follow(next, idle, None).await;
        };
        info!(app = %app.name, deployment_id = %deployment_id, event = %name, "service deployment may have ended");
        driver.known = Some(queue.clone());
        let next = driver.check_active().await?;
        let still = matches!(&driver.known, Some(q) if q.active_deployment() == Some(deployment_id.as_str()));
        if still && next == Next::Idle {
            if let Some(pause) = pauses.next() {
                tokio::time::sleep(pause).await;
                continue;
            }
            warn!(app = %app.name, deployment_id = %deployment_id, event = %name,
                  "ECS still lists the deployment as in progress after the event: left to its next event or the sweep");
            return Ok(Outcome::Skipped {
                reason: format!("deployment {deployment_id} is still in progress"),
            });
        }
        return finish(&mut driver, next, deployment_id).await;
    }
}

/// The first pause between read-backs of a native end event that ECS or the ledger does not
/// agree with yet; three pauses, each twice the last, are 3.5 s in all, well within the
/// function's timeout.
pub const READBACK_PAUSE: Duration = Duration::from_millis(500);
const READBACKS: u32 = 3;

/// A deployment ended (`next` is what its end leads to): carries `next` out and says so.
async fn finish(
    driver: &mut Driver<'_>,
    next: Next,
    deployment_id: String,
) -> Result<Outcome, DeployError> {
    let app = driver.app.name.clone();
    let finished = Outcome::Finished {
        app: app.clone(),
        deployment_id: deployment_id.clone(),
        next: None,
    };
    let after = driver.follow(next, finished.clone(), None).await?;
    Ok(if after == finished {
        finished
    } else {
        Outcome::Finished {
            app,
            deployment_id,
            next: Some(Box::new(after)),
        }
    })
}

/// The periodic sweep (an EventBridge schedule): finishes what lost events and dead
/// invocations left behind. A release claimed by an invocation that died before the queue
/// admitted it is taken on (newest first); a deployment whose end event never arrived is read
/// back; a release whose invocation died is resumed; a waiting release in a free queue starts.
/// One ledger read for the queues and one per app for stale claims; no AWS call when every
/// queue is idle.
async fn sweep(deps: &Deps, invocation: &Invocation) -> Result<Outcome, DeployError> {
    let names: Vec<String> = deps.config.apps.iter().map(|a| a.name.clone()).collect();
    let queues = deps.ledger.queues(&names).await?;
    let now = Utc::now();
    let mut actions = vec![];
    let mut first_error = None;
    for (app, queue) in deps.config.apps.iter().zip(queues) {
        let result = async {
            let mut done = vec![];
            let mut stale = deps.ledger.stale_claims(&app.name, now).await?;
            stale.retain(|r| !queue.names(&r.digest));
            // Newest first: an older one then finds it started and is superseded.
            stale.sort_by_key(|r| std::cmp::Reverse(ticket_of(r)));
            let mut stale_error = None;
            for record in &stale {
                warn!(app = %app.name, version = %record.version, digest = %record.digest,
                      "a release was claimed by an invocation that died before queueing it: taking it on");
                let push = record.as_push(&app.repository);
                // One that fails still leaves the others and the queue to be moved on.
                match deploy_release(deps, &push, app, invocation).await {
                    Ok(outcome) => done.push(outcome),
                    Err(e) => {
                        warn!(app = %app.name, digest = %record.digest, error = %e, "sweep could not take the claim on");
                        stale_error.get_or_insert(e);
                    }
                }
            }
            if stale.is_empty() && queue.active.is_none() && queue.pending.is_none() {
                return Ok(done);
            }
            let mut driver = Driver::new(deps, app, invocation);
            driver.known = stale.is_empty().then_some(queue);
            let next = driver.settle().await?;
            let idle = Outcome::Skipped {
                reason: "nothing to do".into(),
            };
            done.push(driver.follow(next, idle, None).await?);
            match stale_error {
                Some(e) => Err(e),
                None => Ok::<_, DeployError>(done),
            }
        }
        .await;
        match result {
            Ok(done) => {
                for outcome in done {
                    if !matches!(outcome, Outcome::Skipped { .. }) {
                        info!(app = %app.name, ?outcome, "sweep moved the queue on");
                        actions.push(outcome);
                    }
                }
            }
            Err(e) => {
                warn!(app = %app.name, error = %e, "sweep could not move the queue on");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Outcome::Swept {
            apps: names.len(),
            actions,
        }),
    }
}

fn end_status(state: &str) -> Option<ReleaseStatus> {
    match state {
        "SUCCESS" => Some(ReleaseStatus::Succeeded),
        "FAILURE" => Some(ReleaseStatus::Failed),
        "STOP" => Some(ReleaseStatus::Stopped),
        _ => None,
    }
}

fn ticket_of(record: &ReleaseRecord) -> Ticket {
    Ticket {
        pushed_at_ms: record.pushed_at.timestamp_millis(),
        digest: record.digest.clone(),
        version: record.version.clone(),
    }
}

/// Drives one app's queue for one invocation: each decision is a pure function of the queue
/// (`greenlight_shared::queue`), written with the release changes it implies in one
/// conditional transaction, decided again from a fresh read when another writer got there first.
struct Driver<'a> {
    deps: &'a Deps,
    app: &'a AppConfig,
    lease: Lease,
    /// The queue as this invocation last read or wrote it.
    known: Option<Queue>,
}

impl<'a> Driver<'a> {
    fn new(deps: &'a Deps, app: &'a AppConfig, invocation: &Invocation) -> Self {
        Self {
            deps,
            app,
            lease: lease_of(deps, invocation),
            known: None,
        }
    }

    /// Decides with `decide` and writes the plan; returns what to do next.
    async fn apply(
        &mut self,
        decide: impl Fn(&Queue, &Lease) -> Plan,
    ) -> Result<Next, DeployError> {
        for _ in 0..16 {
            self.lease.now_ms = Utc::now().timestamp_millis();
            let (read, cached) = match self.known.take() {
                Some(q) => (q, true),
                None => (self.deps.ledger.queue(&self.app.name).await?, false),
            };
            let plan = decide(&read, &self.lease);
            if !plan.writes(&read) {
                if cached {
                    // Deciding to do nothing is only trusted on a fresh read.
                    continue;
                }
                self.known = Some(read);
                return Ok(plan.next);
            }
            if self
                .deps
                .ledger
                .commit(&self.app.name, &read, &plan)
                .await?
            {
                for change in &plan.changes {
                    if change.status == ReleaseStatus::Superseded {
                        warn!(app = %self.app.name, version = %change.release.version, digest = %change.release.digest,
                              by = change.superseded_by.as_deref().unwrap_or(""), "superseded by a newer release");
                    }
                }
                self.known = Some(Queue {
                    version: read.version + 1,
                    ..plan.queue
                });
                return Ok(plan.next);
            }
        }
        Err(DeployError::Contention(self.app.name.clone()))
    }

    /// Reads back the deployment holding the queue; one that has ended (its end event was
    /// lost) is finished here.
    async fn check_active(&mut self) -> Result<Next, DeployError> {
        let queue = match self.known.clone() {
            Some(q) => q,
            None => self.deps.ledger.queue(&self.app.name).await?,
        };
        let Some(id) = queue.active_deployment().map(str::to_string) else {
            self.known = Some(queue);
            return Ok(Next::Idle);
        };
        let since_ms = queue.active.as_ref().map_or(0, |a| a.since_ms);
        self.known = Some(queue);
        let run = match engine::run_by_id(
            self.deps.codedeploy.as_ref(),
            self.deps.ecs.as_ref(),
            &id,
        )
        .await
        {
            Ok(run) => run,
            Err(e)
                if e.kind == AwsErrorKind::NotFound
                    && Utc::now().timestamp_millis() - since_ms
                        > NOT_FOUND_GRACE.num_milliseconds() =>
            {
                // Gone for good (the service was recreated, the deployment aged out): it can
                // never be read again, so it must not hold the app's releases for ever.
                warn!(app = %self.app.name, deployment_id = %id, error = %e,
                      "the deployment holding the queue can no longer be read: closed as stopped, the queue moves on");
                return self
                    .apply(|q, lease| q.end(&id, ReleaseStatus::Stopped, lease))
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        if run.active {
            return Ok(Next::Idle);
        }
        warn!(app = %self.app.name, deployment_id = %id, status = %run.status,
              "the queue was held by a deployment that has ended (its end event was lost): finishing it");
        self.apply(|q, lease| q.end(&id, run.ended, lease)).await
    }

    /// Finishes what lost events left: a deployment that ended, a release whose invocation
    /// died, a waiting release in a free queue.
    async fn settle(&mut self) -> Result<Next, DeployError> {
        match self.check_active().await? {
            Next::Idle => self.apply(|q, lease| q.advance(lease)).await,
            next => Ok(next),
        }
    }

    /// Carries out `next` and whatever it leads to; returns the outcome of the last action.
    async fn follow(
        &mut self,
        mut next: Next,
        mut outcome: Outcome,
        mut fresh: Option<ReleaseRecord>,
    ) -> Result<Outcome, DeployError> {
        for _ in 0..8 {
            let Next::Deploy { digest, resumed } = next else {
                return Ok(outcome);
            };
            let record = match fresh.take().filter(|r| r.digest == digest) {
                Some(r) => r,
                None => self
                    .deps
                    .ledger
                    .release(&self.app.name, &digest)
                    .await?
                    .ok_or_else(|| LedgerError {
                        operation: "GetItem",
                        message: format!(
                            "the queue names release {}/{digest}, which has no item",
                            self.app.name
                        ),
                    })?,
            };
            (outcome, next) = match self.deploy(&record, resumed).await {
                Ok(done) => done,
                Err(e) if e.is_permanent() => {
                    warn!(app = %self.app.name, version = %record.version, digest = %record.digest, error = %e,
                          "the release cannot be deployed: closed as failed, the queue moves on");
                    let digest = record.digest.clone();
                    self.apply(|q, lease| {
                        q.close_without_deployment(&digest, ReleaseStatus::Failed, lease)
                    })
                    .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
        }
        Ok(outcome)
    }

    /// Deploys the release that holds the queue: reconcile when resumed, register its revision
    /// unless done, create the deployment, record it.
    async fn deploy(
        &mut self,
        record: &ReleaseRecord,
        resumed: bool,
    ) -> Result<(Outcome, Next), DeployError> {
        let (deps, app) = (self.deps, self.app);
        let Target {
            engine,
            service,
            lb,
            container,
        } = target(deps, app).await?;
        if resumed {
            if let Some(own) = self.own_run(engine.as_ref(), record).await? {
                return self.adopt(record, &own).await;
            }
        }

        let task_definition = match &record.task_definition_arn {
            Some(arn) => {
                info!(app = %app.name, task_definition = %arn, "resuming after registration");
                arn.clone()
            }
            None => {
                let (td, tags) = deps
                    .ecs
                    .task_definition(&service.task_definition_arn)
                    .await?;
                // A push of what runs is a no-op; an operator's request of it redeploys.
                if record.request.is_none()
                    && container_image(&td, &container) == Some(record.image.as_str())
                {
                    info!(app = %app.name, version = %record.version, digest = %record.digest, "service already runs this image");
                    let digest = record.digest.clone();
                    let next = self
                        .apply(|q, lease| {
                            q.close_without_deployment(
                                &digest,
                                ReleaseStatus::AlreadyRunning,
                                lease,
                            )
                        })
                        .await?;
                    let outcome = Outcome::AlreadyRunning {
                        app: app.name.clone(),
                        version: record.version.clone(),
                    };
                    return Ok((outcome, next));
                }
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
        };

        let launch = Launch {
            appspec: appspec_of(deps, app, &lb, task_definition.clone()).to_json(),
            description: ReleaseDescription {
                app: app.name.clone(),
                version: record.version.clone(),
                digest: record.digest.clone(),
                request: record.request.as_ref().map(|r| r.id.clone()),
            }
            .to_string(),
            task_definition: task_definition.clone(),
        };
        match engine.start(&launch).await {
            Ok(deployment_id) => {
                info!(app = %app.name, version = %record.version, digest = %record.digest, deployment_id = %deployment_id,
                      task_definition = %task_definition, engine = %engine.kind(), "deployment created");
                let next = self
                    .apply(|q, lease| q.deploying(&record.digest, &deployment_id, lease))
                    .await?;
                Ok((deployed(record, &task_definition, &deployment_id), next))
            }
            Err(e) if e.kind == AwsErrorKind::DeploymentLimitExceeded => {
                // Ours, created by an earlier attempt whose answer was lost (the SDK's retry
                // then meets it), or someone else's (a rollback, a manual deployment).
                let active = engine.active_runs().await?;
                if let Some(own) = active.iter().find(|d| names_release(d, record)) {
                    return self.adopt(record, own).await;
                }
                let Some(foreign) = active.first() else {
                    // It ended in between: fail so that the retry creates it.
                    return Err(e.into());
                };
                info!(app = %app.name, version = %record.version, digest = %record.digest, deployment_id = %foreign.id,
                      "busy with a deployment Greenlight did not start: the release waits for its end");
                let next = self
                    .apply(|q, lease| q.blocked_by_foreign(&record.digest, &foreign.id, lease))
                    .await?;
                let outcome = match &next {
                    Next::Superseded { by } => Outcome::Superseded {
                        app: app.name.clone(),
                        version: record.version.clone(),
                        by: by.clone(),
                    },
                    _ => Outcome::Waiting {
                        app: app.name.clone(),
                        version: record.version.clone(),
                        replaced: None,
                    },
                };
                Ok((outcome, next))
            }
            Err(e) if e.kind == AwsErrorKind::Unavailable => {
                // The answer may be lost after the engine acted (a deployment that fails at
                // once has ended before any retry could meet it as busy): what it made is
                // adopted; otherwise the invocation fails and its retry, or the sweep, starts it.
                warn!(app = %app.name, version = %record.version, digest = %record.digest, error = %e,
                      "starting the deployment failed: reading back whether it was made");
                match self.own_run(engine.as_ref(), record).await {
                    Ok(Some(own)) => self.adopt(record, &own).await,
                    _ => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A deployment of this run of the release that an earlier attempt made, if any.
    async fn own_run(
        &self,
        engine: &dyn DeploymentEngine,
        record: &ReleaseRecord,
    ) -> Result<Option<Run>, DeployError> {
        let since = self
            .known
            .as_ref()
            .and_then(|q| q.active.as_ref())
            .and_then(|a| chrono::DateTime::from_timestamp_millis(a.since_ms))
            .unwrap_or(record.pushed_at)
            - ADOPTION_WINDOW;
        let earlier = engine.runs_since(since).await?;
        Ok(earlier.into_iter().find(|d| names_release(d, record)))
    }

    /// Records an existing deployment of the release (created by an attempt whose answer was
    /// lost) instead of creating another; finishes it at once when it has already ended.
    async fn adopt(
        &mut self,
        record: &ReleaseRecord,
        found: &Run,
    ) -> Result<(Outcome, Next), DeployError> {
        warn!(app = %self.app.name, version = %record.version, digest = %record.digest, deployment_id = %found.id,
              status = %found.status, "adopting this release's deployment, created by an attempt whose answer was lost");
        let mut next = self
            .apply(|q, lease| q.deploying(&record.digest, &found.id, lease))
            .await?;
        if !found.active {
            next = self
                .apply(|q, lease| q.end(&found.id, found.ended, lease))
                .await?;
        }
        let task_definition = record.task_definition_arn.clone().unwrap_or_default();
        Ok((deployed(record, &task_definition, &found.id), next))
    }
}

/// Whether a deployment is this release's: its description names the release (CodeDeploy), or
/// it deploys the revision registered for this run of the release (native).
fn names_release(deployment: &Run, record: &ReleaseRecord) -> bool {
    if deployment.task_definition.is_some() {
        return deployment.task_definition == record.task_definition_arn;
    }
    deployment
        .description
        .as_deref()
        .and_then(ReleaseDescription::parse)
        .is_some_and(|d| {
            d.app == record.app
                && d.digest == record.digest
                && d.version == record.version
                && d.request.as_deref() == record.request.as_ref().map(|r| r.id.as_str())
        })
}

fn deployed(record: &ReleaseRecord, task_definition: &str, deployment_id: &str) -> Outcome {
    Outcome::Deployed {
        app: record.app.clone(),
        version: record.version.clone(),
        digest: record.digest.clone(),
        task_definition: task_definition.to_string(),
        deployment_id: deployment_id.to_string(),
    }
}
