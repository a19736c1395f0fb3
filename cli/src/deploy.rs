//! `deploy`, `rollback` and `plan`: the command asks the deployer (Lambda Invoke with a typed
//! request) and never deploys by itself, so a manual deploy has every guarantee a push has.
//! `--wait` then follows the release in the ledger to its end, or (`--wait-until`) a native
//! deployment to the point a CI job cares about, read from ECS.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use greenlight_shared::aws::ecs::ServiceReads;
use greenlight_shared::error::AwsErrorKind;
use greenlight_shared::events::short_digest;
use greenlight_shared::ledger::{ReleaseLedger, ReleaseRecord, ReleaseStatus};
use greenlight_shared::request::{OperatorRequest, RequestKind};
use greenlight_shared::rollout::Milestone;
use serde_json::Value;

/// Why a command did not do what was asked; each maps to an exit code (`main.rs`).
#[derive(Debug)]
pub enum Failed {
    /// AWS could not be reached or refused (the ledger, STS, Lambda), or the deployer failed.
    Aws(String),
    /// The command line is incomplete.
    Usage(String),
    /// Nothing to do: an unknown app, a release not in ECR, nothing to roll back to.
    Nothing(String),
    /// `--wait`: the release ended, not as a success.
    NotDeployed(String),
    /// `--wait`: still under way when the time ran out.
    TimedOut(String),
}

/// The deployer's function and the caller's identity.
pub struct Deployer {
    pub lambda: aws_sdk_lambda::Client,
    pub function: String,
}

/// Who is asking: the caller identity's ARN, as STS says.
pub async fn caller(sts: &aws_sdk_sts::Client) -> Result<String, Failed> {
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Failed::Aws(format!("STS GetCallerIdentity: {}", describe(&e))))?;
    identity
        .arn
        .ok_or_else(|| Failed::Aws("STS GetCallerIdentity returned no ARN".into()))
}

fn describe<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    greenlight_shared::error::describe_sdk_error(e)
}

impl Deployer {
    /// Sends the request and returns the deployer's answer. A function error comes back as the
    /// failure it names (`UnknownApp`, `ReleaseNotFound` are "nothing to do").
    pub async fn ask(&self, request: &OperatorRequest) -> Result<Value, Failed> {
        let payload = serde_json::to_vec(request).map_err(|e| Failed::Usage(e.to_string()))?;
        let out = self
            .lambda
            .invoke()
            .function_name(&self.function)
            .payload(aws_smithy_types::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                Failed::Aws(format!(
                    "Lambda Invoke of {}: {}",
                    self.function,
                    describe(&e)
                ))
            })?;
        let answer: Value = out
            .payload
            .as_ref()
            .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
            .unwrap_or_default();
        if out.function_error.is_none() {
            return Ok(answer);
        }
        let message = answer["errorMessage"]
            .as_str()
            .unwrap_or("the deployer failed without a message")
            .to_string();
        Err(match answer["errorType"].as_str().unwrap_or_default() {
            "UnknownApp" | "ReleaseNotFound" => Failed::Nothing(message),
            "MalformedEvent" => Failed::Usage(message),
            error_type => Failed::Aws(format!("the deployer failed ({error_type}): {message}")),
        })
    }
}

/// A new request of `kind`, with an id of its own (a retried Invoke carries the same one).
pub fn request(kind: RequestKind, app: &str, release: &str, requested_by: &str) -> OperatorRequest {
    OperatorRequest {
        greenlight: kind,
        app: app.to_string(),
        release: release.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        requested_by: requested_by.to_string(),
        requested_at: chrono::Utc::now(),
        reason: None,
    }
}

/// The deployer's answer to a deploy or rollback (`{"outcome": "requested", "result": …}`), in
/// a sentence; and whether anything will deploy (`false` when a newer release rules it out).
pub fn accepted(answer: &Value) -> (String, bool) {
    let answer = &answer["result"];
    let s = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    let release = format!("{} {}", s("app"), s("version"));
    match answer["outcome"].as_str().unwrap_or_default() {
        "deployed" => (
            format!(
                "{release}: deployment {} started ({})",
                s("deployment_id"),
                short_revision(&s("task_definition"))
            ),
            true,
        ),
        "waiting" => (
            format!("{release}: waits for the deployment in progress, then deploys"),
            true,
        ),
        "duplicate" => (
            format!("{release}: already {} (nothing new started)", s("status")),
            true,
        ),
        "in_progress_elsewhere" => (
            format!("{release}: another invocation of the deployer is starting it"),
            true,
        ),
        "superseded" => (
            format!("{release}: superseded by a newer release; it will not deploy"),
            false,
        ),
        other => (format!("{release}: {other}"), true),
    }
}

fn short_revision(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// `plan` as text: the revision diff and the AppSpec.
pub fn render_plan(answer: &Value) -> String {
    let s = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "{} {} ({}) would replace {}:\n",
        s("app"),
        s("version"),
        short_digest(&s("digest")),
        short_revision(&s("task_definition"))
    );
    if answer["already_running"] == true {
        out += "  the service runs this image already: the deploy would replace its tasks\n";
    }
    for change in answer["changes"].as_array().into_iter().flatten() {
        out += &format!("  {}\n", change.as_str().unwrap_or_default());
    }
    if answer["engine"] == "ecs" {
        out += "ECS: UpdateService with the new revision; the service's lifecycle hooks check it\n";
        if let Some(rollout) = answer["rollout"].as_str() {
            out += &format!("  production traffic: {}\n", clean(rollout));
        }
        return out;
    }
    out += "AppSpec:\n";
    out += &serde_json::to_string_pretty(&answer["appspec"]).unwrap_or_default();
    out += "\n";
    out
}

/// How far `--wait` follows a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The release deployed and Greenlight recorded it (the default).
    Completed,
    /// A point of a native ECS deployment: production traffic all on green, or the bake over.
    Milestone(Milestone),
}

/// Where to read a native deployment's stage: ECS, and how long a poll may wait at most.
pub struct Follow<'a> {
    pub ledger: &'a dyn ReleaseLedger,
    /// ECS reads, for `--wait-until` a milestone of a native deployment.
    pub ecs: Option<&'a dyn ServiceReads>,
    pub poll: Duration,
    pub timeout: Duration,
}

/// The longest pause between two reads: polling backs off to it while nothing changes.
const POLL_MAX: Duration = Duration::from_secs(60);
/// Reads that fail in a row (throttled, unreachable) before `--wait` gives up.
const READ_FAILURES_MAX: u32 = 5;

/// Follows the release `digest` of `app` until it reaches `until` (or `timeout`), with a
/// progress line on standard error: `Ok` when it got there. Polling starts at `poll`, backs
/// off while nothing changes, and rides out reads that fail (throttling, a network blip) a few
/// times in a row.
pub async fn follow(
    how: &Follow<'_>,
    app: &str,
    digest: &str,
    until: Until,
) -> Result<ReleaseRecord, Failed> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut pause = how.poll;
    let mut failures = 0;
    let mut said_engine = false;
    loop {
        let read = read_progress(how, app, digest, until).await;
        let (record, reached, stage) = match read {
            Ok(found) => {
                failures = 0;
                found
            }
            Err(why) => {
                failures += 1;
                if failures >= READ_FAILURES_MAX {
                    return Err(Failed::Aws(why));
                }
                if terminal {
                    eprintln!();
                }
                eprintln!("greenlight: {why} (reading again)");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL_MAX.max(how.poll));
                continue;
            }
        };
        if let (Until::Milestone(_), false, Some(id)) =
            (until, said_engine, record.deployment_id.as_deref())
        {
            if !greenlight_shared::model::is_service_deployment_arn(id) {
                eprintln!("greenlight: {app} deploys through CodeDeploy, followed to its end: waiting until completed");
            }
            said_engine = true;
        }
        let line = progress(&record, stage.as_deref(), started.elapsed());
        if line != last_line {
            let mut err = std::io::stderr();
            if terminal {
                let _ = write!(err, "\r\x1b[2K{line}");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
            last_line = line;
            pause = how.poll;
        } else {
            pause = (pause.mul_f64(1.5)).min(POLL_MAX.max(how.poll));
        }
        if reached || record.status.is_final() {
            if terminal {
                eprintln!();
            }
            return match record.status {
                _ if reached => Ok(record),
                ReleaseStatus::Succeeded => Ok(record),
                status => Err(Failed::NotDeployed(format!(
                    "{app} {} {}{}",
                    record.version,
                    ended_as(status),
                    record
                        .hook_reason
                        .as_deref()
                        .map(|r| format!(": {}", clean(r)))
                        .unwrap_or_default()
                ))),
            };
        }
        if started.elapsed() >= how.timeout {
            if terminal {
                eprintln!();
            }
            return Err(Failed::TimedOut(format!(
                "{app} {} is still {} after {} s",
                record.version,
                stage.unwrap_or_else(|| record.status.as_str().to_string()),
                how.timeout.as_secs()
            )));
        }
        tokio::time::sleep(pause.min(how.timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// One read: the release in the ledger, whether it reached `until`, and (native, while it
/// deploys) where its deployment stands in words. `Err` for a read that failed.
async fn read_progress(
    how: &Follow<'_>,
    app: &str,
    digest: &str,
    until: Until,
) -> Result<(ReleaseRecord, bool, Option<String>), String> {
    let record = how
        .ledger
        .release(app, digest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the ledger has no release {app} {digest}"))?;
    let native = record
        .deployment_id
        .as_deref()
        .filter(|id| greenlight_shared::model::is_service_deployment_arn(id));
    let (Some(ecs), Some(id), ReleaseStatus::Deploying) = (how.ecs, native, record.status) else {
        let reached = record.status == ReleaseStatus::Succeeded;
        return Ok((record, reached, None));
    };
    let state = match ecs.service_deployment(id).await {
        Ok(state) => state,
        // Gone or not readable: the ledger still tells the end.
        Err(e) if !matches!(e.kind, AwsErrorKind::Throttled | AwsErrorKind::Unavailable) => {
            return Ok((record, false, None));
        }
        Err(e) => return Err(e.to_string()),
    };
    let reached = match until {
        Until::Completed => false,
        Until::Milestone(m) => m.reached(&state.status, &state.position),
    };
    let words = state
        .rollout
        .as_ref()
        .and_then(|r| greenlight_shared::rollout::progress(r, &state.position));
    Ok((record, reached, words))
}

fn ended_as(status: ReleaseStatus) -> &'static str {
    match status {
        ReleaseStatus::Failed => "failed and was rolled back",
        ReleaseStatus::Stopped => "was stopped",
        ReleaseStatus::Superseded => "was superseded by a newer release",
        ReleaseStatus::AlreadyRunning => "was already running",
        _ => "ended",
    }
}

fn progress(record: &ReleaseRecord, stage: Option<&str>, elapsed: Duration) -> String {
    format!(
        "{} {}: {}{}{} ({} s)",
        record.app,
        record.version,
        record.status.as_str(),
        record
            .deployment_id
            .as_deref()
            .map(|id| format!(" {id}"))
            .unwrap_or_default(),
        stage.map(|s| format!(": {}", clean(s))).unwrap_or_default(),
        elapsed.as_secs()
    )
}

/// Ledger text without control characters (no terminal escapes reach the screen).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_deployers_answers_read_as_sentences() {
        let (line, deploys) = accepted(
            &json!({"outcome": "requested", "result": {"outcome": "deployed", "app": "web1", "version": "v1.4.2", "deployment_id": "d-ABCDEFGHI", "task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:9"}}),
        );
        assert_eq!(line, "web1 v1.4.2: deployment d-ABCDEFGHI started (web1:9)");
        assert!(deploys);
        let (line, deploys) = accepted(
            &json!({"outcome": "requested", "result": {"outcome": "superseded", "app": "web1", "version": "v1.4.2", "by": "sha256:x"}}),
        );
        assert!(line.contains("superseded"), "{line}");
        assert!(!deploys);
    }

    #[test]
    fn a_plan_reads_as_the_diff_then_the_appspec() {
        let text = render_plan(&json!({
            "outcome": "planned", "app": "web1", "version": "v1.4.2",
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web1:7",
            "changes": ["container web1: image a -> b"], "already_running": false,
            "appspec": {"version": 0.0},
        }));
        assert!(text.starts_with("web1 v1.4.2 (abababababab)"), "{text}");
        assert!(text.contains("would replace web1:7"), "{text}");
        assert!(
            text.contains("  container web1: image a -> b\nAppSpec:\n{"),
            "{text}"
        );
    }

    #[test]
    fn a_native_plan_says_how_ecs_deploys_it_instead_of_an_appspec() {
        let text = render_plan(&json!({
            "outcome": "planned", "app": "web2", "version": "v2.0.0",
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web2:7",
            "changes": ["container web2: image a -> b"], "already_running": false,
            "engine": "ecs", "appspec": null,
            "rollout": "canary 5% for 10 min, then 100%; bake 15 min",
        }));
        assert!(text.ends_with("container web2: image a -> b\nECS: UpdateService with the new revision; the service's lifecycle hooks check it\n  production traffic: canary 5% for 10 min, then 100%; bake 15 min\n"), "{text}");
        assert!(!text.contains("AppSpec"), "{text}");
    }

    #[test]
    fn requests_carry_a_fresh_valid_id() {
        let a = request(
            RequestKind::Deploy,
            "web1",
            "v1.4.2",
            "arn:aws:iam::123456789012:user/bob",
        );
        let b = request(
            RequestKind::Deploy,
            "web1",
            "v1.4.2",
            "arn:aws:iam::123456789012:user/bob",
        );
        assert_ne!(a.request_id, b.request_id);
        assert_eq!(a.problem(), None);
    }
}
