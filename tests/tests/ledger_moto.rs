//! The ledger's conditional writes against moto's DynamoDB: the announcement markers.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use greenlight_shared::ledger::{DynamoLedger, NoticeLedger};
use greenlight_shared::queue::Lease;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::moto::MotoServer;
use greenlight_tests::world::{Clients, TABLE};

/// The lease of an invocation `owner` with `budget` left.
fn lease(owner: &str, budget_ms: i64) -> Lease {
    let now_ms = chrono::Utc::now().timestamp_millis();
    Lease {
        owner: owner.into(),
        until_ms: now_ms + budget_ms,
        now_ms,
    }
}

#[tokio::test]
async fn each_deployment_state_is_claimed_for_announcement_once() {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);

    let me = lease("req-1", 60_000);
    assert!(ledger.claim_notice("d-1", "SUCCESS", &me).await.unwrap());
    assert!(
        !ledger
            .claim_notice("d-1", "SUCCESS", &lease("req-2", 60_000))
            .await
            .unwrap(),
        "in flight elsewhere"
    );
    assert!(
        ledger.claim_notice("d-1", "START", &me).await.unwrap(),
        "another state is its own notice"
    );

    // A failed post gives the claim back: the retried event may post.
    ledger.release_notice("d-1", "SUCCESS").await.unwrap();
    assert!(ledger
        .claim_notice("d-1", "SUCCESS", &lease("req-3", 60_000))
        .await
        .unwrap());

    // Once posted, never again.
    ledger.notice_posted("d-1", "SUCCESS").await.unwrap();
    assert!(!ledger.claim_notice("d-1", "SUCCESS", &me).await.unwrap());
}

#[tokio::test]
async fn an_announcement_claim_is_retaken_by_its_own_retry_or_after_its_deadline() {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);

    // The invocation that claimed it crashed with a minute left: Lambda's retry keeps the
    // request id, and may claim it again at once (no notice is lost to its own marker).
    assert!(ledger
        .claim_notice("d-2", "FAILURE", &lease("req-1", 60_000))
        .await
        .unwrap());
    assert!(ledger
        .claim_notice("d-2", "FAILURE", &lease("req-1", 60_000))
        .await
        .unwrap());
    // Another invocation may take it once the holder's deadline has passed.
    assert!(!ledger
        .claim_notice("d-2", "FAILURE", &lease("req-2", 60_000))
        .await
        .unwrap());
    assert!(ledger
        .claim_notice("d-3", "FAILURE", &lease("req-dead", 0))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(ledger
        .claim_notice("d-3", "FAILURE", &lease("req-2", 60_000))
        .await
        .unwrap());
    ledger.notice_posted("d-3", "FAILURE").await.unwrap();
    assert!(
        !ledger
            .claim_notice("d-3", "FAILURE", &lease("req-1", 60_000))
            .await
            .unwrap(),
        "a posted notice is never taken over"
    );
}

fn push(digest: &str, version: &str) -> greenlight_shared::events::ImagePush {
    greenlight_shared::events::ImagePush {
        app: "web1".into(),
        repository: "web1".into(),
        version: version.into(),
        digest: digest.into(),
        image: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@{digest}"),
        pushed_at: chrono::Utc::now(),
        provenance: Default::default(),
        request: None,
    }
}

#[tokio::test]
async fn claims_whose_lease_ran_out_are_found_for_the_sweep_and_others_are_not() {
    use greenlight_shared::ledger::{Claim, ReleaseLedger};
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);
    let dead = format!("sha256:{}", "1".repeat(64));
    let live = format!("sha256:{}", "2".repeat(64));
    let registered = format!("sha256:{}", "3".repeat(64));
    for (digest, budget_ms) in [(&dead, -1_000), (&live, 60_000), (&registered, -1_000)] {
        let claim = ledger
            .claim(&push(digest, "v1"), &lease("req", budget_ms))
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
    }
    ledger
        .record_registered("web1", &registered, "arn:td:1")
        .await
        .unwrap();
    let stale = ledger
        .stale_claims("web1", chrono::Utc::now())
        .await
        .unwrap();
    let digests: Vec<&str> = stale.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(digests, [dead.as_str()]);
    assert!(ledger
        .stale_claims("web2", chrono::Utc::now())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_release_runs_message_has_one_writer_at_a_time_and_keeps_where_it_is() {
    use greenlight_shared::ledger::{NoticeLedger, ReleaseMessage};
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);
    let anchor = "d-7GQK2M4XB";
    let first = ledger
        .take_message(anchor, &lease("req-1", 60_000))
        .await
        .unwrap();
    assert_eq!(first, Some(ReleaseMessage::default()));
    // Another invocation waits while the first holds it.
    assert_eq!(
        ledger
            .take_message(anchor, &lease("req-2", 60_000))
            .await
            .unwrap(),
        None
    );
    let posted = ReleaseMessage {
        channel: Some("C0DEPLOYS".into()),
        ts: Some("1764900000.000200".into()),
        rank: 1,
        deployment: Some(anchor.into()),
        payload: Some(r#"{"text":"web1 v1.4.3 deploying"}"#.into()),
        permalink: Some("https://acme.slack.com/archives/C0DEPLOYS/p1764900000000200".into()),
    };
    // Kept as soon as Slack names it, still held.
    ledger
        .keep_message(anchor, &posted, &lease("req-1", 60_000), false)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .take_message(anchor, &lease("req-2", 60_000))
            .await
            .unwrap(),
        None
    );
    let ended = ReleaseMessage {
        rank: 3,
        ..posted.clone()
    };
    ledger
        .keep_message(anchor, &ended, &lease("req-1", 60_000), true)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .take_message(anchor, &lease("req-2", 60_000))
            .await
            .unwrap(),
        Some(ended.clone())
    );
    // The operator's command reads it without taking it.
    assert_eq!(
        ledger.release_message(anchor).await.unwrap(),
        Some(ended.clone())
    );
    assert_eq!(ledger.release_message("d-NONE").await.unwrap(), None);
    // A holder whose invocation died is taken over once its lease ran out.
    assert_eq!(
        ledger
            .take_message("d-OTHER", &lease("req-3", -1_000))
            .await
            .unwrap(),
        Some(ReleaseMessage::default())
    );
    assert!(ledger
        .take_message("d-OTHER", &lease("req-4", 60_000))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_native_round_is_noted_on_the_release_until_its_verdict_replaces_it() {
    use greenlight_shared::ledger::{Claim, ReleaseLedger, VerdictLedger};
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);
    let digest = format!("sha256:{}", "4".repeat(64));
    let claim = ledger
        .claim(&push(&digest, "v1"), &lease("req", 60_000))
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
    let item = || async {
        clients
            .dynamodb
            .get_item()
            .table_name(TABLE)
            .key("pk", AttributeValue::S("app#web1".into()))
            .key("sk", AttributeValue::S(format!("release#{digest}")))
            .send()
            .await
            .unwrap()
            .item
            .unwrap()
    };
    ledger
        .record_hook_round(
            "web1",
            &digest,
            "POST_TEST_TRAFFIC_SHIFT",
            2,
            "1/3 good answers",
        )
        .await
        .unwrap();
    let noted = item().await;
    assert_eq!(noted["hook_round"].as_s().unwrap(), "1/3 good answers");
    assert_eq!(noted["hook_round_n"].as_n().unwrap(), "2");
    ledger
        .record_hook_verdict(
            "web1",
            &digest,
            "POST_TEST_TRAFFIC_SHIFT",
            true,
            "all checks passed",
        )
        .await
        .unwrap();
    let judged = item().await;
    assert!(!judged.contains_key("hook_round") && !judged.contains_key("hook_round_n"));
    assert_eq!(judged["hook_reason"].as_s().unwrap(), "all checks passed");
}

#[tokio::test]
async fn an_approval_is_decided_once_for_its_run_and_deployment_and_marked_applied() {
    use greenlight_shared::ledger::{
        ApprovalLedger, Choice, Claim, Decision, ReleaseLedger, VerdictLedger, Wait,
    };
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE);
    let digest = format!("sha256:{}", "5".repeat(64));
    let pushed = push(&digest, "v1.4.3");
    let claim = ledger.claim(&pushed, &lease("req", 60_000)).await.unwrap();
    assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
    assert_eq!(ledger.approval("web1", &digest).await.unwrap(), None);
    let expires_at =
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() + 3_600_000)
            .unwrap();
    let wait = Wait {
        deployment_id: "d-WAITING01".into(),
        expires_at,
    };
    ledger
        .record_approval_wait("web1", &digest, &wait)
        .await
        .unwrap();
    let record = ledger.approval("web1", &digest).await.unwrap().unwrap();
    assert_eq!(record.wait, wait);
    assert_eq!(record.version, "v1.4.3");
    assert_eq!(record.pushed_at_ms, pushed.pushed_at.timestamp_millis());
    let decision = |choice, by: &str| Decision {
        choice,
        by: by.into(),
        at: chrono::DateTime::parse_from_rfc3339("2026-12-05T14:05:00Z")
            .unwrap()
            .into(),
        reason: Some("looks wrong".into()),
        applied: false,
    };
    let pushed_ms = record.pushed_at_ms;
    // Another deployment's button, or another run's, writes nothing.
    assert!(!ledger
        .record_decision(
            "web1",
            &digest,
            pushed_ms,
            "d-OTHER0001",
            &decision(Choice::Approve, "slack:U1")
        )
        .await
        .unwrap());
    assert!(!ledger
        .record_decision(
            "web1",
            &digest,
            pushed_ms - 1,
            "d-WAITING01",
            &decision(Choice::Approve, "slack:U1")
        )
        .await
        .unwrap());
    // The first decision wins; the racing one finds it.
    assert!(ledger
        .record_decision(
            "web1",
            &digest,
            pushed_ms,
            "d-WAITING01",
            &decision(Choice::Reject, "slack:U2")
        )
        .await
        .unwrap());
    assert!(!ledger
        .record_decision(
            "web1",
            &digest,
            pushed_ms,
            "d-WAITING01",
            &decision(Choice::Approve, "slack:U1")
        )
        .await
        .unwrap());
    ledger.decision_applied("web1", &digest).await.unwrap();
    let decided = ledger.approval("web1", &digest).await.unwrap().unwrap();
    assert_eq!(
        decided.decision,
        Some(Decision {
            applied: true,
            ..decision(Choice::Reject, "slack:U2")
        })
    );
    // A later wait of the item (its next run) starts undecided.
    ledger
        .record_approval_wait(
            "web1",
            &digest,
            &Wait {
                deployment_id: "d-NEXTRUN01".into(),
                ..wait
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ledger
            .approval("web1", &digest)
            .await
            .unwrap()
            .unwrap()
            .decision,
        None
    );
}
