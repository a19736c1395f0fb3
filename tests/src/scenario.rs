//! The local pipeline's scenario, shared by the demo and the end-to-end test. web1's service
//! is deployed by CodeDeploy, web2's by ECS itself (native blue/green); the first three acts
//! run on both, with the same checks:
//! 1. a healthy release (and its `latest` twin) ships: one revision, one deployment, hook
//!    Succeeded (web1 v1.4.2, web2 v2.0.0);
//! 2. a release whose green endpoint fails: hook Failed, rolled back before it took traffic,
//!    the previous release still serves (web1 v1.4.3, web2 v2.0.1);
//! 3. a push while a deployment runs waits, then ships (web2 v2.1.0 then v2.1.1; web1's is
//!    act 5);
//! 4. web1 v1.4.4 ships, then an operator's `greenlight rollback web1 --wait` brings v1.4.2
//!    back through the same blue/green and health hook; retrying the bad v1.4.3 while it still
//!    fails exits 4;
//! 5. web1 v1.5.0 then v1.5.1 while the first deploys: v1.5.1 waits, then ships;
//! 6. web3, deployed by ECS with a canary (20% for a minute, then 100%, a minute's bake): v3.0.0
//!    ships through its canary step, and the channel says the step and when it ends; v3.0.1 is
//!    rolled back when alarm web3-5xx goes to ALARM during its deployment, and the channel says
//!    which alarm;
//! 7. approvals, on web4 (CodeDeploy, its group waits before rerouting) and web5 (ECS, its
//!    service's pause hook): a release waits for approval with Approve and Roll back; a click
//!    signed with another secret and one by a non-approver change nothing; the approver's click
//!    ships it; the next release is rolled back by the approver's click; a third waits until
//!    the engine's timeout rolls it back, and a click after that changes nothing.

use std::time::Duration;

use crate::pipeline::{
    is_native, uses_slack_app, Observed, Pipeline, APPROVAL_WAIT, APPROVER, CANARY_ALARM,
    CANARY_APP, SIGNING_SECRET,
};
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

const SETTLE: Duration = Duration::from_secs(90);

fn engine_of(app: &str) -> &'static str {
    if app == CANARY_APP {
        "ECS canary"
    } else if is_native(app) {
        "ECS blue/green"
    } else {
        "CodeDeploy"
    }
}

/// Act 1 on one app: a healthy release ships. Returns its digest.
async fn ships(p: &Pipeline, checks: &mut Vec<Check>, app: &str, version: &str) -> String {
    let engine = engine_of(app);
    let revisions_before = p.clients.revisions(app).await.len();
    let deployments_before = p.deployments_of(app).await.len();
    let mark = p.slack_mark();
    let digest = p.push(app, version, Health::Healthy).await;
    let settled = p.settle(SETTLE).await;
    check(checks, &format!("{app} {version} settled"), settled, "");
    let revisions = p.clients.revisions(app).await.len() - revisions_before;
    check(
        checks,
        &format!("{app}: one task-definition revision for {version} and its latest twin"),
        revisions == 1,
        format!("{revisions} registered"),
    );
    let deployments: Vec<Observed> = p.deployments_of(app).await.split_off(deployments_before);
    let first = deployments.first().cloned().unwrap_or_default();
    check(
        checks,
        &format!(
            "{app}: one {engine} deployment for {version}, succeeded, its hook Succeeded once"
        ),
        deployments.len() == 1
            && first.version == version
            && first.status == "Succeeded"
            && first.verdicts == ["Succeeded"],
        format!("{deployments:?}"),
    );
    let (_, serving) = p.clients.service_image(app).await;
    check(
        checks,
        &format!("{app} serves {version} pinned by digest"),
        serving == image_of(app, &digest),
        serving,
    );
    let headlines = p.slack_headlines(mark);
    // CodeDeploy pauses at READY before the production shift; ECS has no such state. A Slack
    // app's one message reads the end.
    let expected: &[&str] = if uses_slack_app(app) {
        &["deployed to production in"]
    } else if is_native(app) {
        &["deploying to production", "deployed to production in"]
    } else {
        &[
            "deploying to production",
            "is ready on green",
            "deployed to production in",
        ]
    };
    let subject = format!("{app} {version}");
    let in_order = headlines.len() == expected.len()
        && headlines
            .iter()
            .zip(expected)
            .all(|(h, e)| h.contains(&subject) && h.contains(e));
    let said = match (uses_slack_app(app), is_native(app)) {
        (true, _) => "Slack: one message for {app}, reading succeeded",
        (false, true) => "Slack: {app} started → succeeded",
        (false, false) => "Slack: {app} started → ready → succeeded",
    };
    check(
        checks,
        &said.replace("{app}", app),
        in_order,
        headlines.join(" | "),
    );
    // Who shipped it, from the image's annotations: the commit (linked) and the actor.
    let shipped = p.slack_bodies(mark).pop().unwrap_or_default();
    check(
        checks,
        &format!("Slack names the commit of {app} {version} and who pushed it"),
        shipped.contains("*Pushed by*\\noctocat")
            && shipped.contains("https://github.com/acme/monorepo/commit/"),
        shipped.chars().take(300).collect::<String>(),
    );
    digest
}

/// Act 2 on one app: a release whose green fails is rolled back before it takes traffic.
async fn rolled_back(
    p: &Pipeline,
    checks: &mut Vec<Check>,
    app: &str,
    bad: &str,
    (good, good_digest): (&str, &str),
) {
    let engine = engine_of(app);
    let mark = p.slack_mark();
    p.push(app, bad, Health::Failing).await;
    let settled = p.settle(SETTLE).await;
    check(checks, &format!("{app} {bad} settled"), settled, "");
    let failed = p
        .deployments_of(app)
        .await
        .into_iter()
        .find(|d| d.version == bad)
        .unwrap_or_default();
    check(
        checks,
        &format!("{app}: the {engine} deployment of {bad} failed and was rolled back"),
        failed.status == "Failed" && failed.rolled_back,
        format!("{failed:?}"),
    );
    check(
        checks,
        &format!("{app}: the hook failed {bad} once, with its reason"),
        failed.verdicts == ["Failed"] && failed.hook_reason.contains("HTTP 500"),
        format!("{:?} {:?}", failed.verdicts, failed.hook_reason),
    );
    let (_, serving) = p.clients.service_image(app).await;
    check(
        checks,
        &format!("{app} still serves {good}"),
        serving == image_of(app, good_digest),
        serving,
    );
    let headlines = p.slack_headlines(mark);
    let announced_failed = headlines.iter().any(|h| {
        h.contains(&format!("{app} {bad} FAILED")) && h.contains(&format!("rolled back to {good}"))
    });
    let no_false_success = !headlines
        .iter()
        .any(|h| h.contains(&format!("{bad} deployed")));
    check(
        checks,
        &format!("Slack: {app} {bad} failed, rolled back to {good}, never called a success"),
        announced_failed && no_false_success,
        headlines.join(" | "),
    );
    if uses_slack_app(app) {
        // One message for the release, its thread carrying the hook's reason.
        let replies = p.slack_replies(mark);
        check(
            checks,
            &format!(
                "Slack: {app} {bad} is one message, the hook's verdict and reason in its thread"
            ),
            headlines.len() == 1
                && replies
                    .iter()
                    .any(|r| r.contains("FAILED") && r.contains("http_probe failed"))
                && replies
                    .iter()
                    .any(|r| r.starts_with("Health hook at AfterAllowTestTraffic: green failed")),
            format!("{} | {}", headlines.join(" | "), replies.join(" | ")),
        );
    }
}

/// Act 3 on one app: a push while a deployment runs waits, then ships. The second's digest.
async fn waits(
    p: &Pipeline,
    checks: &mut Vec<Check>,
    app: &str,
    first: &str,
    second: &str,
) -> String {
    let mark = p.slack_mark();
    let before = p.deployments_of(app).await.len();
    let first_push = p.push(app, first, Health::Healthy);
    let second_push = async {
        // Push as soon as the first deployment exists.
        for _ in 0..100 {
            if p.deployments_of(app).await.len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.push(app, second, Health::Healthy).await
    };
    let (_, digest) = tokio::join!(first_push, second_push);
    let settled = p.settle(SETTLE).await;
    check(
        checks,
        &format!("{app} {first} and {second} settled"),
        settled,
        "",
    );
    let deployments = p.deployments_of(app).await.split_off(before);
    let versions: Vec<&str> = deployments.iter().map(|d| d.version.as_str()).collect();
    check(
        checks,
        &format!("{app} deployed {first} then {second}, one deployment each, both succeeded"),
        versions == [first, second] && deployments.iter().all(|d| d.status == "Succeeded"),
        format!("{deployments:?}"),
    );
    let waited = p
        .world
        .deployer_outcomes
        .lock()
        .unwrap()
        .iter()
        .any(|o| o["outcome"] == "waiting" && o["app"] == app && o["version"] == second);
    check(
        checks,
        &format!("{app} {second} waited for {first}"),
        waited,
        "",
    );
    if crate::pipeline::uses_slack_app(app) {
        // The waiting release's one message was posted as it queued, then edited to its end.
        let subject = format!("{app} {second} ");
        let messages: Vec<_> = p
            .slack_messages(mark)
            .into_iter()
            .filter(|m| m.text.contains(&subject))
            .collect();
        check(
            checks,
            &format!(
                "Slack: {app} {second} is one message, from queued behind {first} to deployed"
            ),
            messages.len() == 1
                && messages[0]
                    .posted_as
                    .contains(&format!("queued — waits for {first}"))
                && messages[0].text.contains("deployed to production"),
            format!("{messages:?}"),
        );
    }
    let (_, serving) = p.clients.service_image(app).await;
    check(
        checks,
        &format!("{app} serves {second}"),
        serving == image_of(app, &digest),
        serving,
    );
    let successes = p
        .slack_headlines(mark)
        .iter()
        .filter(|h| h.contains(app) && h.contains("deployed to production"))
        .count();
    check(
        checks,
        &format!("Slack: both {app} releases announced as deployed"),
        successes == 2,
        format!("{successes}"),
    );
    digest
}

/// Runs the acts; returns every check made (none panics, so the demo can report).
pub async fn run(p: &Pipeline, step: impl Fn(usize, &str)) -> Vec<Check> {
    let mut checks = vec![];
    let settle = SETTLE;

    step(
        1,
        "push web1:v1.4.2 (CodeDeploy) and web2:v2.0.0 (ECS blue/green) — healthy releases",
    );
    let v142 = ships(p, &mut checks, "web1", "v1.4.2").await;
    let v200 = ships(p, &mut checks, "web2", "v2.0.0").await;

    step(
        2,
        "push web1:v1.4.3 and web2:v2.0.1 whose green endpoints answer HTTP 500",
    );
    rolled_back(p, &mut checks, "web1", "v1.4.3", ("v1.4.2", &v142)).await;
    rolled_back(p, &mut checks, "web2", "v2.0.1", ("v2.0.0", &v200)).await;

    step(3, "push web2:v2.1.0, then web2:v2.1.1 while v2.1.0 deploys");
    waits(p, &mut checks, "web2", "v2.1.0", "v2.1.1").await;

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
    let linked = |i: usize| {
        read(i, "slack").starts_with("https://greenlight-local.slack.com/archives/C0DEPLOYS/p")
    };
    check(
        &mut checks,
        "greenlight history web1: each release links its Slack message",
        linked(0) && linked(1),
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
        "greenlight status: web1 runs v1.4.2 (last failure v1.4.3), web2 runs v2.1.1, nothing deploying",
        code == Some(0)
            && of("web1")["running"]["version"] == "v1.4.2"
            && of("web1")["last_failure"]["version"] == "v1.4.3"
            && of("web2")["running"]["version"] == "v2.1.1"
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
    let mark = p.slack_mark();
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
    let headlines = p.slack_headlines(mark);
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

    step(5, "push web1:v1.5.0, then web1:v1.5.1 while v1.5.0 deploys");
    waits(p, &mut checks, "web1", "v1.5.0", "v1.5.1").await;

    step(
        6,
        "push web3:v3.0.0 (ECS CANARY: 20% for a minute, then 100%, a minute's bake), then web3:v3.0.1, during whose deployment alarm web3-5xx goes to ALARM",
    );
    canary(p, &mut checks).await;

    step(
        7,
        "approvals: web4 (CodeDeploy, wait before rerouting) and web5 (ECS pause hook): approved, rejected, expired",
    );
    for (app, base) in [("web4", "v4.0"), ("web5", "v5.0")] {
        approvals(p, &mut checks, app, base).await;
    }
    checks
}

/// Waits until the channel's message about `subject` reads `words` (or a minute passed).
async fn message_reading(p: &Pipeline, subject: &str, words: &str) -> Option<String> {
    for _ in 0..600 {
        let found = p
            .slack_app
            .channel(crate::pipeline::SLACK_CHANNEL)
            .into_iter()
            .rev()
            .find(|m| m.text.contains(subject) && m.text.contains(words));
        if let Some(m) = found {
            return Some(m.text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The thread of the channel's message about `subject`.
fn thread_of(p: &Pipeline, subject: &str) -> Vec<String> {
    p.slack_app
        .channel(crate::pipeline::SLACK_CHANNEL)
        .into_iter()
        .rev()
        .find(|m| m.text.contains(subject))
        .map(|m| m.replies.into_iter().map(|(r, _)| r).collect())
        .unwrap_or_default()
}

/// Act 7 on one app: approved, rejected, expired.
async fn approvals(p: &Pipeline, checks: &mut Vec<Check>, app: &str, base: &str) {
    let engine = engine_of(app);
    let (shipped, rejected, expired) = (
        format!("{base}.0"),
        format!("{base}.1"),
        format!("{base}.2"),
    );
    let waiting = "green checked — waiting for approval";

    // Approved: after a forged click and a stranger's, both refused.
    let digest = p.push(app, &shipped, Health::Healthy).await;
    let subject = format!("{app} {shipped} ");
    let held = message_reading(p, &subject, waiting).await;
    check(
        checks,
        &format!(
            "Slack: {app} {shipped} ({engine}) waits for approval, with Approve and Roll back"
        ),
        held.is_some(),
        held.unwrap_or_default(),
    );
    let forged = p
        .click(&subject, "approve", APPROVER, "not-the-signing-secret")
        .await;
    let stranger = p
        .click(&subject, "approve", "U0STRANGER", SIGNING_SECRET)
        .await;
    let told = p.slack_app.ephemeral();
    let still = message_reading(p, &subject, waiting).await;
    check(
        checks,
        &format!("{app}: a click signed with another secret (HTTP 401) and a non-approver's change nothing"),
        forged == Some(401)
            && stranger == Some(200)
            && told.last().is_some_and(|t| t.contains("not an approver"))
            && still.is_some(),
        format!("{forged:?} {stranger:?} {told:?}"),
    );
    let approved = p.click(&subject, "approve", APPROVER, SIGNING_SECRET).await;
    let settled = p.settle(SETTLE).await;
    let (_, serving) = p.clients.service_image(app).await;
    let last = p.deployments_of(app).await.pop().unwrap_or_default();
    check(
        checks,
        &format!("{app} {shipped} shipped on the approver's click"),
        approved == Some(200)
            && settled
            && last.version == shipped
            && last.status == "Succeeded"
            && serving == image_of(app, &digest),
        format!("{last:?} {serving}"),
    );
    let thread = thread_of(p, &subject);
    let ended = message_reading(p, &subject, "deployed to production").await;
    check(
        checks,
        &format!("Slack: {app} {shipped} reads deployed, its thread says who approved"),
        ended.is_some()
            && thread
                .iter()
                .any(|r| r.starts_with(&format!("Approved by <@{APPROVER}>"))),
        format!("{ended:?} {thread:?}"),
    );

    // Rejected: rolled back, production stays on the approved release.
    p.push(app, &rejected, Health::Healthy).await;
    let subject = format!("{app} {rejected} ");
    let held = message_reading(p, &subject, waiting).await.is_some();
    let clicked = p.click(&subject, "reject", APPROVER, SIGNING_SECRET).await;
    let settled = p.settle(SETTLE).await;
    let (_, serving) = p.clients.service_image(app).await;
    let last = p.deployments_of(app).await.pop().unwrap_or_default();
    check(
        checks,
        &format!(
            "{app} {rejected} rolled back on the approver's Roll back; {shipped} still serves"
        ),
        held && clicked == Some(200)
            && settled
            && last.version == rejected
            && last.rolled_back
            && serving == image_of(app, &digest),
        format!("{last:?} {serving}"),
    );
    let text = message_reading(p, &subject, &format!("rolled back to {shipped}")).await;
    let thread = thread_of(p, &subject);
    check(
        checks,
        &format!(
            "Slack: {app} {rejected} never reads as a success; its thread says who rolled it back"
        ),
        text.as_deref().is_some_and(|t| !t.contains("deployed"))
            && thread
                .iter()
                .any(|r| r.starts_with(&format!("Rolled back by <@{APPROVER}>"))),
        format!("{text:?} {thread:?}"),
    );

    // Expired: nobody decides; the engine's timeout rolls it back; a late click changes nothing.
    p.push(app, &expired, Health::Healthy).await;
    let subject = format!("{app} {expired} ");
    let held = message_reading(p, &subject, waiting).await.is_some();
    // The approver's click, made in time but arriving after the wait ran out.
    let click = p.slack_app.click(
        crate::pipeline::SLACK_CHANNEL,
        &subject,
        "approve",
        APPROVER,
        SIGNING_SECRET,
    );
    tokio::time::sleep(APPROVAL_WAIT).await;
    let settled = p.settle(SETTLE).await;
    let late = match click {
        Some(click) => {
            p.deliver_click(click, &format!("{APPROVER}'s late click on {subject}"))
                .await
        }
        None => None,
    };
    let told = p.slack_app.ephemeral();
    let (_, serving) = p.clients.service_image(app).await;
    let last = p.deployments_of(app).await.pop().unwrap_or_default();
    check(
        checks,
        &format!("{app} {expired}: nobody decided, the wait ran out and {engine} rolled it back; a late click changes nothing"),
        held && settled && last.version == expired && last.rolled_back
            && serving == image_of(app, &digest)
            && late == Some(200)
            && told.last().is_some_and(|t| t.starts_with("Nothing changed")),
        format!("{last:?} {late:?} {told:?}"),
    );
}

/// Act 6: a canary ships through its step; an alarm rolls the next release back.
async fn canary(p: &Pipeline, checks: &mut Vec<Check>) {
    let mark = p.slack_mark();
    let v300 = ships(p, checks, CANARY_APP, "v3.0.0").await;
    let said = p.slack_replies(mark);
    check(
        checks,
        "Slack: web3's thread says how its canary moves traffic",
        said.iter()
            .any(|m| m.contains("Traffic:") && m.contains("canary 20% for 1 min, then 100%")),
        said.join(" | "),
    );
    let mark = p.slack_mark();
    let before = p.deployments_of(CANARY_APP).await.len();
    p.push(CANARY_APP, "v3.0.1", Health::Healthy).await;
    // The alarm goes off once the release takes production traffic.
    let mut shifting = false;
    for _ in 0..300 {
        shifting = p.ecs.deployments().iter().any(|d| {
            d.service == CANARY_APP
                && d.status == "IN_PROGRESS"
                && matches!(
                    d.stage.as_deref(),
                    Some("PRODUCTION_TRAFFIC_SHIFT" | "BAKE_TIME")
                )
        });
        if shifting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(checks, "web3 v3.0.1 takes production traffic", shifting, "");
    p.ecs.set_alarm(CANARY_ALARM, true);
    let settled = p.settle(SETTLE).await;
    p.ecs.set_alarm(CANARY_ALARM, false);
    let last = p
        .deployments_of(CANARY_APP)
        .await
        .split_off(before)
        .pop()
        .unwrap_or_default();
    check(
        checks,
        "web3 v3.0.1 rolled back by ECS when its alarm went off",
        settled && last.version == "v3.0.1" && last.rolled_back,
        format!("{last:?}"),
    );
    let (_, serving) = p.clients.service_image(CANARY_APP).await;
    check(
        checks,
        "web3 still serves v3.0.0",
        serving == image_of(CANARY_APP, &v300),
        serving,
    );
    let said = p.slack_bodies(mark);
    let replies = p.slack_replies(mark);
    check(
        checks,
        "Slack: web3 v3.0.1 is one message, FAILED, rolled back because alarm web3-5xx went to ALARM, said in its thread too",
        said.len() == 1
            && said[0].contains("web3 v3.0.1 FAILED")
            && said[0].contains("*Rolled back because*\\nalarm web3-5xx went to ALARM")
            && replies
                .iter()
                .any(|r| r.contains("Rolled back because: alarm web3-5xx went to ALARM")),
        format!("{} | {}", said.join(" | "), replies.join(" | ")),
    );
}
