//! A fast local stub of every AWS API the functions call, and of Slack and the green task's
//! health endpoint, for the benchmark: canned answers, no state, one counter per operation.
//! What it measures is Greenlight's own cost, not an emulator's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

const TD_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/CODE-DEPLOY:7";
const GREEN_TG: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web1-green/0123456789abcdef";
pub const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378e3a4c1b7d2e9";

#[derive(Clone, Default)]
pub struct AwsStub {
    pub endpoint: String,
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl AwsStub {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind AWS stub");
        let addr = listener.local_addr().expect("stub address");
        let stub = Self {
            endpoint: format!("http://{addr}"),
            calls: Arc::default(),
        };
        let app = Router::new()
            .route("/", post(aws))
            .route("/slack", post(|| async { "ok" }))
            .route("/health", get(|| async { "ok" }))
            .with_state(stub.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        stub
    }

    /// The environment a function binary runs with against this stub, as the stack sets it
    /// (config from the file `config`).
    pub fn function_env(&self, config: &std::path::Path) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "stub"),
            ("AWS_SECRET_ACCESS_KEY", "stub"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("GREENLIGHT_CONFIG", config.to_str().expect("utf-8 path")),
            ("GREENLIGHT_LEDGER_TABLE", "greenlight-releases"),
            ("GREENLIGHT_HOOK_FUNCTION", "CodeDeployHook_greenlight"),
            (
                "GREENLIGHT_SLACK_WEBHOOK",
                "secretsmanager:greenlight/slack",
            ),
            (
                "GREENLIGHT_SLACK_SIGNING_SECRET",
                "secretsmanager:greenlight/slack-signing",
            ),
            ("RUST_LOG", "info"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Calls per operation (`Service.Operation`) since the last reset.
    pub fn take_calls(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn json_ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

fn xml_ok(action: &str, result: &str) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></{action}Response>"
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn reference_task_definition() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/tests/fixtures/describe-task-definition-reference.json"
    );
    serde_json::from_slice(&std::fs::read(path).expect("reference task definition")).expect("JSON")
}

async fn aws(State(stub): State<AwsStub>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let op = if target.is_empty() {
        // ELBv2 speaks the query protocol: the action is a form field.
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or_default()
            .to_string();
        format!("ElasticLoadBalancing.{action}")
    } else {
        target
            .replace("DynamoDB_20120810", "DynamoDB")
            .replace("CodeDeploy_20141006", "CodeDeploy")
            .replace("AmazonEC2ContainerServiceV20141113", "ECS")
            .replace("secretsmanager", "SecretsManager")
            .replace("AmazonEC2ContainerRegistry_V20150921", "ECR")
    };
    *stub.calls.lock().unwrap().entry(op.clone()).or_default() += 1;
    let description = format!("greenlight app=web1 version=v1.4.2 digest={DIGEST}");
    match op.as_str() {
        "DynamoDB.GetItem" | "DynamoDB.PutItem" | "DynamoDB.TransactWriteItems" => {
            json_ok(json!({}))
        }
        "DynamoDB.BatchGetItem" => json_ok(json!({"Responses": {}})),
        "DynamoDB.UpdateItem" => json_ok(json!({"Attributes": {}})),
        "DynamoDB.Query" => json_ok(json!({"Items": [], "Count": 0, "ScannedCount": 0})),
        "CodeDeploy.GetDeploymentGroup" => json_ok(json!({"deploymentGroupInfo": {
            "applicationName": "web1", "deploymentGroupName": "web1-bluegreen", "computePlatform": "ECS",
            "ecsServices": [{"serviceName": "web1", "clusterName": "apps"}],
            "loadBalancerInfo": {"targetGroupPairInfoList": [{"targetGroups": [{"name": "web1-blue"}, {"name": "web1-green"}],
                "prodTrafficRoute": {"listenerArns": ["arn:prod"]}, "testTrafficRoute": {"listenerArns": ["arn:test"]}}]}}})),
        "CodeDeploy.CreateDeployment" => json_ok(json!({"deploymentId": "d-BENCH0001"})),
        "CodeDeploy.GetDeployment" => json_ok(json!({"deploymentInfo": {
            "applicationName": "web1", "deploymentGroupName": "web1-bluegreen", "deploymentId": "d-BENCH0001",
            "status": "Succeeded", "creator": "user", "description": description,
            "createTime": 1764064800.0, "completeTime": 1764065052.0,
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": format!("{{\"Resources\":[{{\"TargetService\":{{\"Properties\":{{\"TaskDefinition\":\"{TD_ARN}\"}}}}}}]}}")}}}})),
        "CodeDeploy.ListDeploymentTargets" => json_ok(json!({"targetIds": ["apps:web1"]})),
        "CodeDeploy.BatchGetDeploymentTargets" => json_ok(json!({"deploymentTargets": [{"deploymentTargetType": "ECSTarget", "ecsTarget": {
            "deploymentId": "d-BENCH0001", "targetId": "apps:web1", "status": "InProgress",
            "lifecycleEvents": [{"lifecycleEventName": "AfterAllowTestTraffic", "status": "InProgress"}],
            "taskSetsInfo": [{"identifer": "ecs-svc/green", "desiredCount": 1, "pendingCount": 0, "runningCount": 1, "status": "ACTIVE",
                "trafficWeight": 0.0, "targetGroup": {"name": "web1-green"}, "taskSetLabel": "Green"}]}}]})),
        "CodeDeploy.PutLifecycleEventHookExecutionStatus" => json_ok(json!({"lifecycleEventHookExecutionId": "exec"})),
        "ECS.DescribeServices" => json_ok(json!({"services": [{"serviceName": "web1", "status": "ACTIVE", "taskDefinition": TD_ARN,
            "loadBalancers": [{"targetGroupArn": "arn:blue", "containerName": "web1", "containerPort": 3000}]}], "failures": []})),
        "ECS.DescribeTaskDefinition" => json_ok(reference_task_definition()),
        "ECR.BatchGetImage" => json_ok(json!({"images": [{"repositoryName": "web1",
            "imageId": {"imageDigest": DIGEST, "imageTag": "v1.4.2"},
            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
            "imageManifest": json!({"schemaVersion": 2, "annotations": {
                "org.opencontainers.image.revision": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "org.opencontainers.image.source": "https://github.com/acme/web",
                "dev.greenlight.run-url": "https://github.com/acme/web/actions/runs/1/attempts/1",
                "dev.greenlight.actor": "octocat"}}).to_string()}], "failures": []})),
        "ECS.RegisterTaskDefinition" => json_ok(json!({"taskDefinition": {"taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/CODE-DEPLOY:8"}})),
        "ECS.DescribeTaskSets" => json_ok(json!({"taskSets": [{"id": "ecs-svc/green", "stabilityStatus": "STEADY_STATE", "computedDesiredCount": 1, "runningCount": 1}]})),
        "SecretsManager.GetSecretValue" => json_ok(json!({"SecretString": format!("{}/slack", stub.endpoint), "Name": "greenlight/slack"})),
        "ElasticLoadBalancing.DescribeTargetGroups" => xml_ok("DescribeTargetGroups", &format!(
            "<TargetGroups><member><TargetGroupArn>{GREEN_TG}</TargetGroupArn><TargetGroupName>web1-green</TargetGroupName></member></TargetGroups>")),
        "ElasticLoadBalancing.DescribeTargetHealth" => xml_ok("DescribeTargetHealth",
            "<TargetHealthDescriptions><member><Target><Id>10.0.1.10</Id><Port>3000</Port></Target><TargetHealth><State>healthy</State></TargetHealth></member></TargetHealthDescriptions>"),
        other => (StatusCode::BAD_REQUEST, [("content-type", "application/x-amz-json-1.1")], json!({"__type": "UnknownOperation", "message": other}).to_string()).into_response(),
    }
}
