//! The native ECS blue/green part of ECS that moto does not model, in front of moto: service
//! deployments and service revisions (`DescribeServiceDeployments`, `DescribeServiceRevisions`,
//! answered from what the test set up, in the API reference's wire shapes), and a blue/green
//! service's load balancer `advancedConfiguration` added to moto's `DescribeServices` answer.
//! Every other ECS call goes to moto unchanged. A stand-in, kept to what the hook reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Model {
    /// Service deployment ARN → its wire shape.
    deployments: HashMap<String, Value>,
    /// Service revision ARN → its wire shape.
    revisions: HashMap<String, Value>,
    /// Service name → its test listener rule.
    test_rules: HashMap<String, String>,
}

#[derive(Clone)]
struct Shared {
    moto: String,
    model: Arc<Mutex<Model>>,
    http: reqwest::Client,
}

pub struct EcsNativeStandIn {
    pub endpoint: String,
    model: Arc<Mutex<Model>>,
}

/// A native blue/green deployment of a service to a revision, as the stand-in reports it.
pub struct NativeDeployment {
    pub arn: String,
    pub revision: String,
}

impl EcsNativeStandIn {
    pub async fn start(moto_endpoint: &str) -> Self {
        let model = Arc::new(Mutex::new(Model::default()));
        let shared = Shared {
            moto: moto_endpoint.trim_end_matches('/').to_string(),
            model: model.clone(),
            http: reqwest::Client::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ECS stand-in");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new().fallback(serve).with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint, model }
    }

    /// `service` becomes a native blue/green service whose test traffic goes through `rule`.
    pub fn blue_green(&self, service: &str, test_listener_rule: &str) {
        self.model
            .lock()
            .unwrap()
            .test_rules
            .insert(service.to_string(), test_listener_rule.to_string());
    }

    /// A deployment of `service` in `cluster` to a revision running `task_definition`, attached
    /// to `green_target_group`, with `running` of `wanted` tasks started.
    pub fn deploy(
        &self,
        cluster: &str,
        service: &str,
        n: u32,
        task_definition: &str,
        green_target_group: &str,
    ) -> NativeDeployment {
        let base = format!("arn:aws:ecs:us-east-1:{}", crate::world::ACCOUNT);
        let arn = format!("{base}:service-deployment/{cluster}/{service}/deployment{n:04}");
        let revision = format!("{base}:service-revision/{cluster}/{service}/9000000000000{n:04}");
        let now = chrono::Utc::now().timestamp() as f64;
        let mut model = self.model.lock().unwrap();
        model.deployments.insert(
            arn.clone(),
            json!({
                "serviceDeploymentArn": arn,
                "serviceArn": format!("{base}:service/{cluster}/{service}"),
                "clusterArn": format!("{base}:cluster/{cluster}"),
                "createdAt": now, "startedAt": now, "updatedAt": now,
                "status": "IN_PROGRESS",
                "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
                "targetServiceRevision": {"arn": revision, "requestedTaskCount": 1,
                    "runningTaskCount": 1, "pendingTaskCount": 0,
                    "requestedTestTrafficWeight": 100.0, "requestedProductionTrafficWeight": 0.0},
            }),
        );
        model.revisions.insert(
            revision.clone(),
            json!({
                "serviceRevisionArn": revision,
                "serviceArn": format!("{base}:service/{cluster}/{service}"),
                "clusterArn": format!("{base}:cluster/{cluster}"),
                "taskDefinition": task_definition,
                "createdAt": now,
                "resolvedConfiguration": {"loadBalancers": [{"targetGroupArn": green_target_group}]},
            }),
        );
        NativeDeployment { arn, revision }
    }

    /// Sets a deployment's status (`ROLLBACK_IN_PROGRESS`, …) and reason.
    pub fn set_status(&self, deployment: &str, status: &str, reason: &str) {
        if let Some(d) = self.model.lock().unwrap().deployments.get_mut(deployment) {
            d["status"] = status.into();
            d["statusReason"] = reason.into();
        }
    }
}

fn answer(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

/// The answer of a Describe… call: the items found, a `MISSING` failure for each other ARN.
fn described(key: &str, arns: &[Value], known: &HashMap<String, Value>) -> Response {
    let (mut found, mut failures) = (vec![], vec![]);
    for arn in arns.iter().filter_map(Value::as_str) {
        match known.get(arn) {
            Some(item) => found.push(item.clone()),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    answer(json!({ key: found, "failures": failures }))
}

async fn serve(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = crate::faults::operation_of(&headers, &body);
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    match operation.as_str() {
        "DescribeServiceDeployments" => {
            let model = shared.model.lock().unwrap();
            let arns = request["serviceDeploymentArns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            return described("serviceDeployments", &arns, &model.deployments);
        }
        "DescribeServiceRevisions" => {
            let model = shared.model.lock().unwrap();
            let arns = request["serviceRevisionArns"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            return described("serviceRevisions", &arns, &model.revisions);
        }
        _ => {}
    }
    let relayed = crate::faults::relay(&shared.http, &shared.moto, method, &uri, &headers, body);
    let Ok((status, content_type, bytes)) = relayed.await else {
        return (StatusCode::BAD_GATEWAY, "moto did not answer").into_response();
    };
    let bytes = if operation == "DescribeServices" {
        with_advanced_configuration(&bytes, &shared.model.lock().unwrap().test_rules)
    } else {
        bytes.to_vec()
    };
    (status, [("content-type", content_type)], bytes).into_response()
}

/// moto's DescribeServices answer, with each blue/green service's test listener rule.
fn with_advanced_configuration(body: &[u8], rules: &HashMap<String, String>) -> Vec<u8> {
    let Ok(mut described) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    for service in described["services"].as_array_mut().into_iter().flatten() {
        let name = service["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let Some(rule) = rules.get(&name) else {
            continue;
        };
        for lb in service["loadBalancers"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            lb["advancedConfiguration"] = json!({"testListenerRule": rule});
        }
    }
    described.to_string().into_bytes()
}
