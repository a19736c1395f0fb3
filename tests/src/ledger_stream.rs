//! Lambda's event source mapping of the ledger's stream to the notifier, played in front of
//! moto: reads moto's DynamoDB stream of the table (DescribeTable, DescribeStream,
//! GetShardIterator, GetRecords, in the DynamoDB Streams JSON protocol), keeps the records the
//! stack's filters keep (a MODIFY of an `app#` item that carries `hook_event` or `hook_round`,
//! or of a release that waits or was superseded), and hands each
//! batch to the notifier as Lambda does (`{"Records": [...]}`, each with its
//! `eventSourceARN`), again after a second while the notifier fails it (at most five times).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

/// Delivers one batch; `false` when the function failed it.
pub type Deliver = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Starts following `table`'s stream on moto; records from now on reach `deliver`.
pub async fn follow(moto: &str, table: &str, deliver: Deliver) {
    let http = reqwest::Client::new();
    let moto = moto.trim_end_matches('/').to_string();
    let described = call(
        &http,
        &moto,
        "DynamoDB_20120810.DescribeTable",
        json!({"TableName": table}),
    )
    .await;
    let Some(stream) = described["Table"]["LatestStreamArn"]
        .as_str()
        .map(str::to_string)
    else {
        panic!("the ledger table has no stream: {described}");
    };
    let shards = call(
        &http,
        &moto,
        "DynamoDBStreams_20120810.DescribeStream",
        json!({"StreamArn": stream}),
    )
    .await;
    let shard = shards["StreamDescription"]["Shards"][0]["ShardId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let iterator = call(
        &http,
        &moto,
        "DynamoDBStreams_20120810.GetShardIterator",
        json!({"StreamArn": stream, "ShardId": shard, "ShardIteratorType": "LATEST"}),
    )
    .await;
    let mut iterator = iterator["ShardIterator"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let got = call(
                &http,
                &moto,
                "DynamoDBStreams_20120810.GetRecords",
                json!({"ShardIterator": iterator}),
            )
            .await;
            if let Some(next) = got["NextShardIterator"].as_str() {
                iterator = next.to_string();
            }
            let records: Vec<Value> = got["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| passes_filter(r))
                .map(|r| {
                    let mut r = r.clone();
                    r["eventSourceARN"] = json!(stream);
                    r
                })
                .collect();
            for batch in records.chunks(10) {
                let batch = json!({ "Records": batch });
                for _ in 0..5 {
                    if deliver(batch.clone()).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// The stack's filters (`VerdictStreamMapping`): a MODIFY of an `app#` item with a verdict or
/// a round, or of a release (not archived) that waits or was superseded.
fn passes_filter(record: &Value) -> bool {
    let image = &record["dynamodb"]["NewImage"];
    let queued = matches!(
        image["release_status"]["S"].as_str(),
        Some("pending" | "superseded")
    ) && image["archived_at"].is_null();
    record["eventName"] == "MODIFY"
        && image["pk"]["S"]
            .as_str()
            .is_some_and(|pk| pk.starts_with("app#"))
        && (image["hook_event"]["S"].is_string() || image["hook_round"]["S"].is_string() || queued)
}

async fn call(http: &reqwest::Client, moto: &str, target: &str, body: Value) -> Value {
    let sent = http
        .post(moto)
        .header("X-Amz-Target", target)
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261205/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await;
    match sent {
        Ok(resp) => resp.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}
