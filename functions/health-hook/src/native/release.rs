//! The release a round checks, read afresh every round from ECS, ELB and the config (never from
//! `hookDetails`): its app, version and digest (the target revision's task definition tags), the
//! green target group, the URL to probe and how long ECS waits at this stage.

use std::time::Duration;

use greenlight_shared::aws::ecs::EcsServiceInfo;
use greenlight_shared::ecs_hook::{service_of, EcsHookEvent};
use greenlight_shared::task_definition::{tag_value, TAG_APP, TAG_DIGEST, TAG_VERSION};

use super::rule::{listener_of_rule, probe_of};
use super::{call_failed, Round};
use crate::core::Deps;

/// The release a round checks, read afresh every round (never from `hookDetails`).
#[derive(Debug, Clone, Default)]
pub struct Release {
    pub app: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub target_group: Option<String>,
    pub url: Option<String>,
    /// The host the probe names (`health.host`, or the one the test listener rule matches).
    pub probe_host: Option<String>,
    /// How long ECS waits at this stage before it goes on without the hook's answer (its
    /// timeout action is CONTINUE): green must be failed before then.
    pub continues_after: Option<Duration>,
}

/// The release the target revision runs, its app, the green target group and the URL to
/// probe, read from ECS, ELB and the config; `Err` when the hook cannot go on.
pub async fn find_release(
    deps: &Deps,
    event: &EcsHookEvent,
    service: &EcsServiceInfo,
) -> Result<Release, Round> {
    let details = &event.execution_details;
    let revision = match deps
        .ecs
        .service_revision(&details.target_service_revision_arn)
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(call_failed(e)),
    };
    let tags = match deps
        .ecs
        .task_definition_tags(&revision.task_definition_arn)
        .await
    {
        Ok(td) => td,
        Err(e) => return Err(call_failed(e)),
    };
    let tag = |key: &str| tag_value(&tags, key);
    let Some(app) = tag(TAG_APP).and_then(|name| deps.config.app_named(&name)) else {
        return Err(Round::Failed(format!(
            "the revision's task definition {} is not a release of an app Greenlight manages (no known {TAG_APP} tag)",
            revision.task_definition_arn
        )));
    };
    // The release must be the app's whose service this is: a verdict is written onto it.
    let event_service = service_of(&details.service_arn);
    let revision_service = arn_service(&details.target_service_revision_arn, "service-revision");
    let configured = app
        .service
        .as_ref()
        .map(|s| (s.cluster.as_str(), s.service.as_str()));
    if revision_service != event_service || configured.is_some_and(|c| Some(c) != event_service) {
        return Err(Round::Failed(format!(
            "the target revision is not a revision of app {}'s service",
            app.name
        )));
    }
    let mut release = Release {
        app: app.name.clone(),
        version: tag(TAG_VERSION),
        digest: tag(TAG_DIGEST),
        target_group: revision.target_groups.first().cloned(),
        url: None,
        probe_host: app.health.host.clone(),
        continues_after: None,
    };
    let settings = &app.health;
    if !settings.check_http {
        return Ok(release);
    }
    if let Some(url) = &settings.url {
        release.url = Some(url.clone());
        return Ok(release);
    }
    // The test listener rule's listener: `…:listener-rule/app/<lb>/<id>/<listener>/<rule>` is
    // a rule of `…:listener/app/<lb>/<id>/<listener>`.
    let (cluster, name) = event_service.unwrap_or_default();
    let Some(rule) = service
        .load_balancers
        .iter()
        .find_map(|lb| lb.test_listener_rule.as_deref())
    else {
        return Err(Round::Failed(format!(
            "service {cluster}/{name} has no test listener rule and apps.{}.health.url is not set",
            app.name
        )));
    };
    let Some(listener) = listener_of_rule(rule) else {
        return Err(Round::Failed(format!(
            "the service's test listener rule {rule} is not a listener rule ARN"
        )));
    };
    let endpoint = match deps.elb.listener_endpoint(&listener).await {
        Ok(e) => e,
        Err(e) => return Err(call_failed(e)),
    };
    // The probe must be a request the rule matches, or it reaches another rule (blue's).
    let matched = match deps.elb.rule_match(rule).await {
        Ok(m) => m,
        Err(e) => return Err(call_failed(e)),
    };
    let (host, query) = match probe_of(&matched, settings.host.as_deref(), &settings.path) {
        Ok(probe) => probe,
        Err(why) => {
            return Err(Round::Failed(format!(
                "the test listener rule {why}: a probe would reach another rule; set apps.{}.health.url (or health.host and health.path to what the rule matches)",
                app.name
            )))
        }
    };
    release.probe_host = host;
    if endpoint.protocol.eq_ignore_ascii_case("HTTPS") && release.probe_host.is_none() {
        return Err(Round::Failed(format!(
            "the test listener is HTTPS: its certificate cannot be checked against the load balancer's name {}; set apps.{}.health.host to the name it is for",
            endpoint.host, app.name
        )));
    }
    release.url = Some(endpoint.url(&settings.path) + &query);
    Ok(release)
}

/// How long ECS waits for this hook at `stage` before it goes on without it, when the
/// service's hook configuration says it then continues (a timeout that rolls back needs no
/// care: failing late fails the same).
pub fn continues_after(
    service: &EcsServiceInfo,
    function_arn: &str,
    stage: &str,
) -> Option<Duration> {
    let name = |arn: &str| {
        let after = arn.split_once(":function:").map_or(arn, |(_, f)| f);
        after.split(':').next().unwrap_or(after).to_string()
    };
    service
        .lifecycle_hooks
        .iter()
        .find(|h| {
            name(&h.function_arn) == name(function_arn) && h.stages.iter().any(|s| s == stage)
        })
        .filter(|h| h.timeout_action.as_deref() == Some("CONTINUE"))
        // ECS waits a day at a stage unless told otherwise.
        .map(|h| h.timeout_minutes.unwrap_or(24 * 60))
        .map(|m| Duration::from_secs(u64::try_from(m).unwrap_or(0) * 60))
}

/// `(cluster, service)` of an ECS ARN of `kind` whose path is `<kind>/<cluster>/<service>/<id>`
/// (a service deployment or a service revision).
pub fn arn_service<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let path = arn.split(':').nth(5)?;
    let mut parts = path.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(k), Some(cluster), Some(service), Some(id), None)
            if k == kind && !cluster.is_empty() && !service.is_empty() && !id.is_empty() =>
        {
            Some((cluster, service))
        }
        _ => None,
    }
}
