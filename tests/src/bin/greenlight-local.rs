//! `greenlight-local`: the whole Greenlight pipeline on this machine, no AWS account needed.
//! Plays seven acts of a five-app monorepo (web1 deployed by CodeDeploy, web2 by ECS's native
//! blue/green, web3 by ECS with a canary, web4 and web5 behind an approval on each engine) and
//! prints what happens, as it happens.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use greenlight_tests::pipeline::{Entry, Pipeline, Timeline};
use greenlight_tests::scenario;

const STEPS: usize = 7;

#[tokio::main]
async fn main() {
    let printer: Arc<dyn Fn(&Entry) + Send + Sync> = Arc::new(|e: &Entry| {
        println!(
            "  {:>6.1}s  {:<11}  {}",
            e.at.as_secs_f64(),
            e.actor,
            e.text
        );
        let _ = std::io::stdout().flush();
    });
    println!(
        "Greenlight local pipeline: moto (AWS), CodeDeploy and ECS blue/green stand-ins, local Slack and web apps\n"
    );
    let pipeline = tokio::time::timeout(
        Duration::from_secs(120),
        Pipeline::start(Timeline::new(printer)),
    )
    .await;
    let Ok(pipeline) = pipeline else {
        eprintln!("\nVerdict: FAILED — the local world did not start within 120 s (logs: target/greenlight-logs/)");
        std::process::exit(1);
    };
    let checks = scenario::run(&pipeline, |n, title| {
        println!("\n[{n}/{STEPS}] {title}");
    })
    .await;

    let payloads = serde_json::to_string_pretty(&pipeline.slack.messages()).unwrap_or_default();
    let _ = std::fs::write("target/greenlight-logs/slack-messages.json", payloads);
    println!(
        "\nweb2's Slack webhook received (payloads in target/greenlight-logs/slack-messages.json):"
    );
    for headline in pipeline.slack.headlines() {
        println!("  • {headline}");
    }
    println!(
        "\nThe Slack app's channel {} as a person reads it (web1, web3, web4, web5: one message per release, its thread below):",
        greenlight_tests::pipeline::SLACK_CHANNEL
    );
    for line in pipeline
        .slack_app
        .render(greenlight_tests::pipeline::SLACK_CHANNEL)
        .lines()
    {
        println!("  {line}");
    }
    for args in [&["status"][..], &["history", "web1"][..]] {
        println!("\n$ greenlight {}", args.join(" "));
        print!("{}", pipeline.greenlight(args).await.1);
    }
    println!("\nChecks:");
    for (what, passed, detail) in &checks {
        let mark = if *passed { "ok  " } else { "FAIL" };
        if *passed || detail.is_empty() {
            println!("  {mark} {what}");
        } else {
            println!("  {mark} {what} — {detail}");
        }
    }
    let failed = checks.iter().filter(|c| !c.1).count();
    if failed == 0 {
        println!("\nVerdict: PASS — {} checks: on CodeDeploy (web1) and on ECS blue/green (web2) alike, a healthy release shipped, a bad one was rolled back before taking traffic, a release pushed mid-deployment waited and shipped; an operator rolled back through the same blue/green; on ECS's canary (web3) a release shipped through its canary step and the next was rolled back by its alarm; behind an approval on both engines (web4, web5), a forged click and a stranger's changed nothing, the approver's click shipped a release, Roll back and an expired wait rolled the next two back.", checks.len());
    } else {
        println!("\nVerdict: FAIL — {failed} of {} checks failed (function logs: target/greenlight-logs/)", checks.len());
        std::process::exit(1);
    }
}
