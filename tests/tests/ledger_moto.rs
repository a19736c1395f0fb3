//! The ledger's conditional writes against moto's DynamoDB: the announcement markers.

use std::time::Duration;

use greenlight_shared::ledger::{DynamoLedger, NoticeLedger};
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::moto::MotoServer;
use greenlight_tests::world::{Clients, TABLE};

#[tokio::test]
async fn each_deployment_state_is_claimed_for_announcement_once() {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE, Duration::from_secs(60));

    assert!(ledger.claim_notice("d-1", "SUCCESS").await.unwrap());
    assert!(
        !ledger.claim_notice("d-1", "SUCCESS").await.unwrap(),
        "in flight elsewhere"
    );
    assert!(
        ledger.claim_notice("d-1", "START").await.unwrap(),
        "another state is its own notice"
    );

    // A failed post gives the claim back: the retried event may post.
    ledger.release_notice("d-1", "SUCCESS").await.unwrap();
    assert!(ledger.claim_notice("d-1", "SUCCESS").await.unwrap());

    // Once posted, never again.
    ledger.notice_posted("d-1", "SUCCESS").await.unwrap();
    assert!(!ledger.claim_notice("d-1", "SUCCESS").await.unwrap());
}

#[tokio::test]
async fn an_announcement_whose_claim_expired_can_be_taken_over() {
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(5)).await;
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    // A lease of zero: the claim of an invocation that died is stale at once.
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), TABLE, Duration::ZERO);

    assert!(ledger.claim_notice("d-2", "FAILURE").await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(ledger.claim_notice("d-2", "FAILURE").await.unwrap());
    ledger.notice_posted("d-2", "FAILURE").await.unwrap();
    assert!(
        !ledger.claim_notice("d-2", "FAILURE").await.unwrap(),
        "a posted notice is never taken over"
    );
}
