//! Operators' requests from the `greenlight` command: the release a request names, found in the
//! app's own repository, deployed like a push; or planned (read, never written).

use crate::core::{location, with_provenance, DeployError, Deps, Outcome};
use crate::driver::deploy_release;
use crate::target::{appspec_of, target, Target};
use chrono::Utc;
use greenlight_shared::engine::EngineKind;
use greenlight_shared::events::{
    clipped, is_sha256_digest, registry_host, ImagePush, Location, SHOWN_NAME_MAX,
};
use greenlight_shared::invocation::Invocation;
use greenlight_shared::request::{OperatorRequest, RequestKind};
use greenlight_shared::tag_rule::compare_versions;
use greenlight_shared::task_definition::{
    container_image, next_revision, revision_changes, ReleaseImage,
};
use greenlight_shared::{AppConfig, AwsErrorKind};
use tracing::info;

/// An operator asks to deploy (or roll back to, or plan) a release of an app: the release is
/// read from the app's own repository in ECR, then goes the way of a push.
pub(crate) async fn handle_request(
    deps: &Deps,
    request: &OperatorRequest,
    invocation: &Invocation,
) -> Result<Outcome, DeployError> {
    let here = location(invocation)?;
    let app = deps
        .config
        .app_named(&request.app)
        .ok_or_else(|| DeployError::UnknownApp(clipped(&request.app, SHOWN_NAME_MAX)))?;
    if matches!(
        request.greenlight,
        RequestKind::Approve | RequestKind::Reject
    ) {
        return decided(deps, app, request).await;
    }
    let push = requested_release(deps, app, request, &here).await?;
    info!(app = %push.app, version = %push.version, digest = %push.digest,
          request = request.greenlight.as_str(), request_id = %request.request_id,
          requested_by = %request.requested_by, "operator request");
    match request.greenlight {
        RequestKind::Plan => plan(deps, app, &push).await,
        RequestKind::Approve | RequestKind::Reject => unreachable!("decided above"),
        RequestKind::Deploy | RequestKind::Rollback => Ok(Outcome::Requested {
            request_id: request.request_id.clone(),
            version: push.version.clone(),
            digest: push.digest.clone(),
            result: Box::new(deploy_release(deps, &push, app, invocation).await?),
        }),
    }
}

/// An operator approves or rejects the app's release that waits for approval: the same
/// decision as a Slack button's (`greenlight_shared::approval`), by the identity STS named.
async fn decided(
    deps: &Deps,
    app: &AppConfig,
    request: &OperatorRequest,
) -> Result<Outcome, DeployError> {
    use greenlight_shared::approval::{decide, person, Choice, Decided, DecisionRequest};
    let choice = match request.greenlight {
        RequestKind::Approve => Choice::Approve,
        _ => Choice::Reject,
    };
    let decision = DecisionRequest {
        app: app.name.clone(),
        binding: None,
        expects: Some(request.release.clone()).filter(|r| r != greenlight_shared::request::WAITING),
        choice,
        by: request.requested_by.clone(),
        reason: request.reason.clone(),
    };
    let (outcome, said) = if !app.approval.required {
        (
            "refused",
            format!(
                "{} asks for no approval (apps.{}.approval)",
                app.name, app.name
            ),
        )
    } else {
        match decide(deps.ledger.as_ref(), &deps.gates, &decision, Utc::now()).await {
            Ok(Decided::Applied { version, choice }) => (
                choice.as_str(),
                match choice {
                    Choice::Approve => format!(
                        "{} {version} approved: it takes production traffic",
                        app.name
                    ),
                    Choice::Reject => format!("{} {version} rejected: it rolls back", app.name),
                },
            ),
            Ok(Decided::AlreadyDecided { version, decision }) => (
                "already_decided",
                format!(
                    "{} {version} was already {} by {} at {} UTC: nothing changed",
                    app.name,
                    decision.choice.as_str(),
                    person(&decision.by),
                    decision.at.format("%H:%M")
                ),
            ),
            Ok(Decided::Refused(why)) => ("refused", format!("nothing changed: {why}")),
            Err(e) => {
                // The decision may be recorded: the next approve, reject or click carries it out.
                tracing::warn!(app = %app.name, error = %e, "decision failed");
                return Err(match e {
                    greenlight_shared::approval::ApprovalError::Ledger(e) => e.into(),
                    greenlight_shared::approval::ApprovalError::Engine(e) => e.into(),
                });
            }
        }
    };
    info!(app = %app.name, request_id = %request.request_id, requested_by = %request.requested_by,
          decision = outcome, said = %said, "operator decision");
    Ok(Outcome::Decided {
        app: app.name.clone(),
        request_id: request.request_id.clone(),
        decision: outcome.to_string(),
        said,
    })
}

/// The release a request names, found in the app's repository (never another): by tag, or by
/// digest with the release tag the image carries.
pub(crate) async fn requested_release(
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
pub(crate) async fn plan(
    deps: &Deps,
    app: &AppConfig,
    push: &ImagePush,
) -> Result<Outcome, DeployError> {
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
        rollout: match engine.kind() {
            EngineKind::Ecs => service.rollout.as_ref().map(|r| r.describe()),
            EngineKind::CodeDeploy => None,
        },
        task_definition: service.task_definition_arn,
        engine: engine.kind(),
        appspec: match engine.kind() {
            EngineKind::CodeDeploy => serde_json::from_str(&appspec.to_json()).unwrap_or_default(),
            EngineKind::Ecs => serde_json::Value::Null,
        },
    })
}
