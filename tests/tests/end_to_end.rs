//! The local pipeline as a test: the three real function binaries (built by
//! `cargo build --workspace --bins`, as scripts/test does first) against moto, the CodeDeploy
//! stand-in (web1), the ECS stand-in for native blue/green (web2) and a canary (web3), green web
//! apps and a Slack receiver.

use std::sync::Arc;

use greenlight_tests::pipeline::{Pipeline, Timeline};
use greenlight_tests::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_release_ships_a_bad_one_rolls_back_and_a_mid_deployment_push_waits() {
    let timeline = Timeline::new(Arc::new(|e| {
        eprintln!("{:>6.1}s {:<11} {}", e.at.as_secs_f64(), e.actor, e.text)
    }));
    let pipeline = Pipeline::start(timeline).await;
    let checks = scenario::run(&pipeline, |n, title| eprintln!("\n[{n}/7] {title}")).await;
    let failed: Vec<_> = checks.iter().filter(|c| !c.1).collect();
    assert!(
        failed.is_empty(),
        "failed checks: {failed:#?}\nSlack: {:#?}",
        pipeline.slack.headlines()
    );
    assert_eq!(checks.len(), 72);
    // The Slack app's channel: one message per release run of web1 and web3, each read as a
    // person reads it, with a console link; web1's bad release FAILED with the hook's reason
    // in its thread.
    let channel = pipeline
        .slack_app
        .channel(greenlight_tests::pipeline::SLACK_CHANNEL);
    let bad: Vec<_> = channel
        .iter()
        .filter(|m| m.text.starts_with(":x: web1 v1.4.3 FAILED") && !m.text.contains("(by "))
        .collect();
    assert_eq!(
        bad.len(),
        1,
        "{}",
        pipeline
            .slack_app
            .render(greenlight_tests::pipeline::SLACK_CHANNEL)
    );
    assert!(
        bad[0].text.contains("rolled back to v1.4.2")
            && bad[0]
                .replies
                .iter()
                .any(|(r, broadcast)| *broadcast && r.contains("http_probe failed")),
        "{bad:?}"
    );
    for m in &channel {
        let text = m.attachments.to_string();
        assert!(
            text.contains("console.aws.amazon.com/codesuite/codedeploy/deployments/")
                || text.contains(
                    "console.aws.amazon.com/ecs/v2/clusters/apps/services/web3/deployments"
                )
                || text.contains(
                    "console.aws.amazon.com/ecs/v2/clusters/apps/services/web5/deployments"
                ),
            "{m:?}"
        );
    }
    // Every Slack message is a Block Kit message with a colour and a console link.
    for m in pipeline.slack.messages() {
        let attachment = &m["attachments"][0];
        assert!(
            attachment["color"]
                .as_str()
                .is_some_and(|c| c.starts_with('#')),
            "{m}"
        );
        let text = m.to_string();
        assert!(
            text.contains("console.aws.amazon.com/codesuite/codedeploy/deployments/")
                || text.contains(
                    "console.aws.amazon.com/ecs/v2/clusters/apps/services/web2/deployments"
                )
                || text.contains(
                    "console.aws.amazon.com/ecs/v2/clusters/apps/services/web3/deployments"
                ),
            "{m}"
        );
    }
}
