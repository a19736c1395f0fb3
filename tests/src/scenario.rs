//! The local pipeline's scenario, shared by the demo and the end-to-end test:
//! 1. web1 v1.4.2 (and its `latest` twin) ships: one revision, one deployment, hook Succeeded;
//! 2. web1 v1.4.3 whose green endpoint fails: hook Failed, rolled back, v1.4.2 still serves;
//! 3. web2 v2.0.0 then v2.0.1 while the first deploys: v2.0.1 waits, then ships;
//! 4. web1 v1.4.4 ships, then an operator's `greenlight rollback web1 --wait` brings v1.4.2
//!    back through the same blue/green and health hook; retrying the bad v1.4.3 while it still
//!    fails exits 4.

use std::time::Duration;

use crate::pipeline::Pipeline;
use crate::receivers::Health;
use crate::world::ACCOUNT;

/// What a scenario step checked: (what, passed, detail).
pub type Check = (String, bool, String);

fn check(checks: &mut Vec<Check>, what: &str, passed: bool, detail: impl Into<String>) {
    checks.push((what.to_string(), passed, detail.into()));
}

fn image_of(app: &str, digest: &str) -> String {
    format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{app}@{digest}")
}

/// Runs the three steps; returns every check made (none panics, so the demo can report).
pub async fn run(p: &Pipeline, step: impl Fn(usize, &str)) -> Vec<Check> {
    let mut checks = vec![];
    let settle = Duration::from_secs(90);

    // 1. A healthy release.
    step(1, "push web1:v1.4.2 (and :latest) — a healthy release");
    let revisions_before = p.clients.revisions("web1").await.len();
    let slack_before = p.slack.messages().len();
    let v142 = p.push("web1", "v1.4.2", Health::Healthy).await;
    let settled = p.settle(settle).await;
    check(&mut checks, "web1 v1.4.2 settled", settled, "");
    let revisions = p.clients.revisions("web1").await.len() - revisions_before;
    check(
        &mut checks,
        "one task-definition revision for v1.4.2 and its latest twin",
        revisions == 1,
        format!("{revisions} registered"),
    );
    let deployments: Vec<_> = p
        .stand_in
        .deployments()
        .into_iter()
        .filter(|d| d.application == "web1")
        .collect();
    check(
        &mut checks,
        "one deployment for v1.4.2",
        deployments.len() == 1,
        format!("{} deployments", deployments.len()),
    );
    let first = deployments.first().cloned().unwrap_or_default();
    check(
        &mut checks,
        "v1.4.2 deployment succeeded",
        first.status == "Succeeded",
        first.status.clone(),
    );
    let hook = p
        .stand_in
        .reports()
        .into_iter()
        .filter(|r| r.deployment_id == first.id)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    check(
        &mut checks,
        "hook reported Succeeded exactly once",
        hook == ["Succeeded"],
        format!("{hook:?}"),
    );
    let (_, serving) = p.clients.service_image("web1").await;
    check(
        &mut checks,
        "web1 serves v1.4.2 pinned by digest",
        serving == image_of("web1", &v142),
        serving,
    );
    let headlines: Vec<String> = p.slack.headlines()[slack_before..].to_vec();
    let expected = [
        "deploying to production",
        "is ready on green",
        "deployed to production in",
    ];
    let in_order = headlines.len() == 3
        && headlines
            .iter()
            .zip(expected)
            .all(|(h, e)| h.contains("web1 v1.4.2") && h.contains(e));
    check(
        &mut checks,
        "Slack: started → ready → succeeded",
        in_order,
        headlines.join(" | "),
    );
    // Who shipped it, from the image's annotations: the commit (linked) and the actor.
    let shipped = p
        .slack
        .messages()
        .last()
        .map(|m| m.to_string())
        .unwrap_or_default();
    check(
        &mut checks,
        "Slack names the commit and who pushed it",
        shipped.contains("*Pushed by*\\noctocat")
            && shipped.contains("https://github.com/acme/monorepo/commit/"),
        shipped.chars().take(300).collect::<String>(),
    );

    // 2. An unhealthy release is rolled back before it takes traffic.
    step(2, "push web1:v1.4.3 whose green endpoint answers HTTP 500");
    let slack_before = p.slack.messages().len();
    p.push("web1", "v1.4.3", Health::Failing).await;
    let settled = p.settle(settle).await;
    check(&mut checks, "web1 v1.4.3 settled", settled, "");
    let deployments: Vec<_> = p
        .stand_in
        .deployments()
        .into_iter()
        .filter(|d| d.application == "web1")
        .collect();
    let bad = deployments
        .iter()
        .find(|d| {
            d.description
                .as_deref()
                .is_some_and(|t| t.contains("version=v1.4.3"))
        })
        .cloned()
        .unwrap_or_default();
    check(
        &mut checks,
        "v1.4.3 deployment failed",
        bad.status == "Failed",
        bad.status.clone(),
    );
    check(
        &mut checks,
        "v1.4.3 was rolled back",
        bad.rollback_deployment_id.is_some(),
        format!("{:?}", bad.rollback_deployment_id),
    );
    let hook = p
        .world
        .hook_outcomes
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.deployment_id == bad.id)
        .cloned()
        .collect::<Vec<_>>();
    let reported = p
        .stand_in
        .reports()
        .into_iter()
        .filter(|r| r.deployment_id == bad.id)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    check(
        &mut checks,
        "hook reported Failed exactly once, with its reason",
        reported == ["Failed"] && hook.iter().any(|h| h.reason.contains("HTTP 500")),
        format!("{reported:?} {:?}", hook.first().map(|h| &h.reason)),
    );
    let (_, serving) = p.clients.service_image("web1").await;
    check(
        &mut checks,
        "web1 still serves v1.4.2",
        serving == image_of("web1", &v142),
        serving,
    );
    let headlines: Vec<String> = p.slack.headlines()[slack_before..].to_vec();
    let failed = headlines
        .iter()
        .any(|h| h.contains("web1 v1.4.3 FAILED") && h.contains("rolled back to v1.4.2"));
    let rolled_back = headlines
        .iter()
        .any(|h| h.contains("rolled back to v1.4.2") && !h.contains("FAILED"));
    let no_false_success = !headlines.iter().any(|h| h.contains("v1.4.3 deployed"));
    check(
        &mut checks,
        "Slack: v1.4.3 failed, rolled back to v1.4.2, never called a success",
        failed && rolled_back && no_false_success,
        headlines.join(" | "),
    );

    // 3. A push during a deployment waits, then ships.
    step(3, "push web2:v2.0.0, then web2:v2.0.1 while v2.0.0 deploys");
    let slack_before = p.slack.messages().len();
    let world = p.world.clone();
    let clients = p.clients.clone();
    let first_push = p.push("web2", "v2.0.0", Health::Healthy);
    let second_push = async {
        // Push as soon as the first deployment exists.
        for _ in 0..100 {
            if p.stand_in
                .deployments()
                .iter()
                .any(|d| d.application == "web2")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.push("web2", "v2.0.1", Health::Healthy).await
    };
    let (_, v201) = tokio::join!(first_push, second_push);
    let _ = (world, clients);
    let settled = p.settle(settle).await;
    check(&mut checks, "web2 settled", settled, "");
    let deployments: Vec<_> = p
        .stand_in
        .deployments()
        .into_iter()
        .filter(|d| d.application == "web2")
        .collect();
    let versions: Vec<String> = deployments
        .iter()
        .map(|d| {
            d.description
                .clone()
                .unwrap_or_default()
                .split_whitespace()
                .find(|w| w.starts_with("version="))
                .unwrap_or_default()
                .trim_start_matches("version=")
                .to_string()
        })
        .collect();
    check(
        &mut checks,
        "web2 deployed v2.0.0 then v2.0.1, one deployment each",
        versions == ["v2.0.0", "v2.0.1"],
        format!("{versions:?}"),
    );
    check(
        &mut checks,
        "both web2 deployments succeeded",
        deployments.iter().all(|d| d.status == "Succeeded"),
        format!(
            "{:?}",
            deployments.iter().map(|d| &d.status).collect::<Vec<_>>()
        ),
    );
    let waited = p
        .world
        .deployer_outcomes
        .lock()
        .unwrap()
        .iter()
        .any(|o| o["outcome"] == "waiting" && o["version"] == "v2.0.1");
    check(&mut checks, "v2.0.1 waited for v2.0.0", waited, "");
    let (_, serving) = p.clients.service_image("web2").await;
    check(
        &mut checks,
        "web2 serves v2.0.1",
        serving == image_of("web2", &v201),
        serving,
    );
    let successes = p.slack.headlines()[slack_before..]
        .iter()
        .filter(|h| h.contains("web2") && h.contains("deployed to production"))
        .count();
    check(
        &mut checks,
        "Slack: both web2 releases announced as deployed",
        successes == 2,
        format!("{successes}"),
    );

    // The operator's side: the command reads the same story back from the ledger.
    let (code, out, _) = p.greenlight(&["history", "web1", "--json"]).await;
    let history: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let read = |i: usize, key: &str| history[i][key].as_str().unwrap_or_default().to_string();
    check(
        &mut checks,
        "greenlight history web1: v1.4.3 failed with the hook's reason, then v1.4.2 succeeded, pushed by octocat",
        code == Some(0)
            && read(0, "version") == "v1.4.3"
            && read(0, "outcome") == "failed"
            && read(0, "hook_reason").contains("http_probe failed")
            && read(1, "version") == "v1.4.2"
            && read(1, "outcome") == "succeeded"
            && read(1, "by") == "octocat"
            && !read(1, "commit").is_empty(),
        out.chars().take(400).collect::<String>(),
    );
    let (code, out, _) = p.greenlight(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let of = |app: &str| {
        status
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["app"] == app).cloned())
            .unwrap_or_default()
    };
    check(
        &mut checks,
        "greenlight status: web1 runs v1.4.2 (last failure v1.4.3), web2 runs v2.0.1, nothing deploying",
        code == Some(0)
            && of("web1")["running"]["version"] == "v1.4.2"
            && of("web1")["last_failure"]["version"] == "v1.4.3"
            && of("web2")["running"]["version"] == "v2.0.1"
            && of("web1")["deploying"].is_null()
            && of("web2")["deploying"].is_null()
            && of("web2")["waiting"].is_null(),
        out.chars().take(400).collect::<String>(),
    );

    // 4. An operator rolls back.
    step(
        4,
        "push web1:v1.4.4 (healthy), then an operator runs `greenlight rollback web1 --wait`",
    );
    let v144 = p.push("web1", "v1.4.4", Health::Healthy).await;
    let settled = p.settle(settle).await;
    let (_, serving) = p.clients.service_image("web1").await;
    check(
        &mut checks,
        "web1 v1.4.4 ships",
        settled && serving == image_of("web1", &v144),
        serving,
    );
    let web1_deployments = |p: &Pipeline| -> Vec<_> {
        p.stand_in
            .deployments()
            .into_iter()
            .filter(|d| d.application == "web1")
            .collect()
    };
    let before = web1_deployments(p).len();
    let slack_before = p.slack.messages().len();
    let (code, out, _) = p.greenlight(&["plan", "web1", "v1.4.2"]).await;
    p.timeline.log("operator", "$ greenlight plan web1 v1.4.2");
    for line in out.lines().take(5) {
        p.timeline.log("operator", format!("  {line}"));
    }
    check(
        &mut checks,
        "greenlight plan web1 v1.4.2: the image change from v1.4.4 to v1.4.2, nothing deployed",
        code == Some(0)
            && out.contains(&format!(
                "image {} -> {}",
                image_of("web1", &v144),
                image_of("web1", &v142)
            ))
            && web1_deployments(p).len() == before,
        out.chars().take(400).collect::<String>(),
    );
    let (code, _, err) = p.greenlight(&["deploy", "web1", "v9.9.9"]).await;
    check(
        &mut checks,
        "greenlight deploy web1 v9.9.9 (not in ECR): exit 3, a clear message, nothing deployed",
        code == Some(3)
            && err.contains("has no image v9.9.9")
            && web1_deployments(p).len() == before,
        format!("exit {code:?}: {err}"),
    );
    p.timeline
        .log("operator", "$ greenlight rollback web1 --wait");
    let (code, out, err) = p
        .greenlight(&[
            "rollback",
            "web1",
            "--wait",
            "--poll",
            "0.5",
            "--timeout",
            "120",
        ])
        .await;
    for line in err.lines().chain(out.lines()) {
        p.timeline.log("operator", format!("  {line}"));
    }
    check(
        &mut checks,
        "greenlight rollback web1 --wait: rolls back to v1.4.2 and exits 0 when it has deployed",
        code == Some(0)
            && err.contains("rolling web1 back to v1.4.2")
            && out.contains("v1.4.2 deployed"),
        format!("exit {code:?}: {err} {out}"),
    );
    p.settle(settle).await;
    let (_, serving) = p.clients.service_image("web1").await;
    check(
        &mut checks,
        "web1 serves v1.4.2 again",
        serving == image_of("web1", &v142),
        serving,
    );
    let new: Vec<_> = web1_deployments(p).into_iter().skip(before).collect();
    let rollback = new.first().cloned().unwrap_or_default();
    let hook = p
        .stand_in
        .reports()
        .into_iter()
        .filter(|r| r.deployment_id == rollback.id)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    check(
        &mut checks,
        "one blue/green deployment for the rollback, the hook checked it and it succeeded",
        new.len() == 1
            && rollback.status == "Succeeded"
            && hook == ["Succeeded"]
            && rollback
                .description
                .as_deref()
                .is_some_and(|d| d.contains("version=v1.4.2") && d.contains("request=")),
        format!(
            "{} deployment(s): {:?} hook {hook:?}",
            new.len(),
            rollback.description
        ),
    );
    let headlines = p.slack.headlines()[slack_before..].to_vec();
    check(
        &mut checks,
        "Slack: web1 rolled back to v1.4.2 by the operator, never called a success",
        headlines
            .iter()
            .any(|h| h.contains("web1 rolled back to v1.4.2") && h.ends_with("(by moto)"))
            && !headlines.iter().any(|h| h.contains("v1.4.2 deployed")),
        headlines.join(" | "),
    );
    // Retrying the bad release while it is still bad: the command says it did not ship.
    p.green_app("web1").set(Health::Failing);
    p.timeline.log(
        "operator",
        "$ greenlight deploy web1 v1.4.3 --wait   (still failing)",
    );
    let (code, _, err) = p
        .greenlight(&[
            "deploy",
            "web1",
            "v1.4.3",
            "--wait",
            "--poll",
            "0.5",
            "--timeout",
            "120",
        ])
        .await;
    for line in err.lines() {
        p.timeline.log("operator", format!("  {line}"));
    }
    p.settle(settle).await;
    p.green_app("web1").set(Health::Healthy);
    let (_, serving) = p.clients.service_image("web1").await;
    check(
        &mut checks,
        "greenlight deploy web1 v1.4.3 --wait while it still fails: exit 4 with the hook's reason, v1.4.2 keeps serving",
        code == Some(4)
            && err.contains("failed and was rolled back: http_probe failed")
            && serving == image_of("web1", &v142),
        format!("exit {code:?}: {err} serving {serving}"),
    );
    let (code, out, _) = p.greenlight(&["history", "web1", "--json"]).await;
    let history: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let runs_of_v142 = history
        .as_array()
        .map(|rows| rows.iter().filter(|r| r["version"] == "v1.4.2").count())
        .unwrap_or_default();
    check(
        &mut checks,
        "greenlight history web1: the retry (failed), the rollback (succeeded), both by the operator, and v1.4.2's first run kept",
        code == Some(0)
            && history[0]["version"] == "v1.4.3"
            && history[0]["by"] == "deploy by moto"
            && history[0]["outcome"] == "failed"
            && history[1]["version"] == "v1.4.2"
            && history[1]["by"] == "rollback by moto"
            && history[1]["outcome"] == "succeeded"
            && history[2]["version"] == "v1.4.4"
            && runs_of_v142 == 2,
        out.chars().take(600).collect::<String>(),
    );
    let (code, out, _) = p.greenlight(&["status", "web1", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    check(
        &mut checks,
        "greenlight status web1: runs v1.4.2, nothing deploying",
        code == Some(0)
            && status[0]["running"]["version"] == "v1.4.2"
            && status[0]["deploying"].is_null(),
        out.chars().take(400).collect::<String>(),
    );
    checks
}
