//! The native ECS blue/green part of ECS that moto does not model, in front of moto: service
//! deployments and service revisions (`DescribeServiceDeployments`, `DescribeServiceRevisions`,
//! `ListServiceDeployments`, answered from its model in the API reference's wire shapes), and a
//! blue/green service's deployment settings (`deploymentController` ECS, strategy BLUE_GREEN,
//! LINEAR or CANARY with their steps and bake times, alarms, lifecycle hooks, the load
//! balancer's `advancedConfiguration`) added to moto's `DescribeServices` answer. Every other ECS call goes to moto unchanged. A stand-in, not an
//! emulator.
//!
//! With a [`NativeLifecycle`] attached (the local pipeline), `UpdateService` of a blue/green
//! service with a new task definition starts a service deployment and drives it the way ECS
//! does: green started, the hook function invoked at each configured stage and invoked again
//! after its `callBackDelay` while it answers IN_PROGRESS, production shifted to green on
//! success, rolled back on FAILED (or an invocation error); LINEAR and CANARY shift production
//! in steps (`requestedProductionTrafficWeight` of the target revision), bake between them and
//! at the end (a configured minute lasts [`StandInRollout::minute`]), and roll back with
//! `rollback.reason` and `alarms.triggeredAlarmNames` when the watched alarm goes to ALARM
//! ([`EcsNativeStandIn::set_alarm`]); each state change is published
//! as an "ECS Deployment State Change" event shaped like `events/ecs-deployment-state-change-*.json`.
//! `UpdateService`'s answer names the deployment in `currentServiceDeployment` unless told not
//! to ([`EcsNativeStandIn::omit_current_deployment`]: AWS does not document that it does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// The lifecycle stages of a native blue/green deployment that may run hooks, in ECS's order.
pub const STAGES: &[&str] = &[
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

/// How a stand-in service shifts production traffic: ECS's strategy with its settings, the
/// alarm that watches its deployments, and how long one of its minutes lasts here.
#[derive(Debug, Clone)]
pub struct StandInRollout {
    /// `BLUE_GREEN`, `LINEAR` or `CANARY`.
    pub strategy: String,
    /// The canary's share, or each linear step's.
    pub percent: f64,
    pub step_bake_minutes: i32,
    pub bake_minutes: i32,
    pub alarm: Option<String>,
    pub minute: Duration,
}

impl StandInRollout {
    /// ECS's strategy `strategy` as the matrices run it: a canary of 10% or linear steps of
    /// 50%, no bake (a deployment the test ends itself).
    pub fn of(strategy: &str) -> Self {
        Self {
            strategy: strategy.to_string(),
            percent: if strategy == "CANARY" { 10.0 } else { 50.0 },
            step_bake_minutes: 0,
            bake_minutes: 0,
            alarm: None,
            minute: Duration::from_millis(100),
        }
    }

    /// Green's share of production traffic at each step.
    pub fn weights(&self) -> Vec<f64> {
        match self.strategy.as_str() {
            "CANARY" => vec![self.percent, 100.0],
            "LINEAR" => {
                let mut w = vec![];
                let mut at = self.percent.max(1.0);
                while at < 100.0 {
                    w.push(at);
                    at += self.percent.max(1.0);
                }
                w.push(100.0);
                w
            }
            _ => vec![100.0],
        }
    }

    /// The `deploymentConfiguration` ECS reports for it (without the hooks).
    fn configuration(&self) -> Value {
        let mut c = json!({"strategy": self.strategy, "bakeTimeInMinutes": self.bake_minutes});
        match self.strategy.as_str() {
            "CANARY" => {
                c["canaryConfiguration"] = json!({"canaryPercent": self.percent,
                    "canaryBakeTimeInMinutes": self.step_bake_minutes})
            }
            "LINEAR" => {
                c["linearConfiguration"] = json!({"stepPercent": self.percent,
                    "stepBakeTimeInMinutes": self.step_bake_minutes})
            }
            _ => {}
        }
        if let Some(alarm) = &self.alarm {
            c["alarms"] = json!({"alarmNames": [alarm], "enable": true, "rollback": true});
        }
        c
    }
}

impl Default for StandInRollout {
    fn default() -> Self {
        Self::of("BLUE_GREEN")
    }
}

/// A native blue/green service the stand-in drives deployments of.
#[derive(Debug, Clone)]
pub struct NativeService {
    pub cluster: String,
    pub service: String,
    pub green_target_group: String,
    pub test_listener_rule: String,
    /// The hook function and the stages it runs at.
    pub hook_function: String,
    pub hook_stages: Vec<String>,
    pub rollout: StandInRollout,
    /// A PAUSE lifecycle hook at PRE_PRODUCTION_TRAFFIC_SHIFT (the approval gate).
    pub pause: Option<PauseHook>,
}

/// A PAUSE lifecycle hook as the service defines it: the deployment waits at its stage for
/// `ContinueServiceDeployment` naming the hook, or takes `timeout_action` (`ROLLBACK` or
/// `CONTINUE`) once `timeout` has passed (ECS counts whole minutes; here it is shortened).
#[derive(Debug, Clone)]
pub struct PauseHook {
    pub timeout: Duration,
    pub timeout_action: String,
}

/// The stage a pause hook holds a deployment at.
pub const PAUSE_STAGE: &str = "PRE_PRODUCTION_TRAFFIC_SHIFT";

/// What the stand-in needs from the world to drive a deployment (the local pipeline).
#[async_trait]
pub trait NativeLifecycle: Send + Sync {
    /// Starts green's task for `task_definition` in the green target group.
    async fn start_green(
        &self,
        service: &NativeService,
        task_definition: &str,
    ) -> Result<(), String>;
    /// Shifts production to green: the service runs `task_definition`, green becomes blue.
    async fn promote_green(
        &self,
        service: &NativeService,
        task_definition: &str,
    ) -> Result<(), String>;
    /// Removes green (rollback).
    async fn discard_green(&self, service: &NativeService);
    /// Invokes the hook function and waits for its answer (ECS reads the hook's response).
    async fn invoke_hook(&self, function: &str, payload: Value) -> Result<Value, String>;
    /// Delivers an "ECS Deployment State Change" event to its subscribers.
    async fn publish(&self, event: Value);
    /// Production traffic moved: green has `weight`% (a step of a linear or canary service),
    /// and bakes `bake_minutes` before the next.
    async fn traffic(&self, _service: &NativeService, _weight: f64, _bake_minutes: i32) {}
}

/// One hook invocation of a deployment and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    pub deployment: String,
    pub stage: String,
    /// SUCCEEDED, FAILED, IN_PROGRESS, or `ERROR` when the invocation itself failed.
    pub status: String,
    /// What the hook said last (`hookDetails.greenlight.last`).
    pub reason: String,
}

/// A deployment as the local pipeline's checks read it.
#[derive(Debug, Clone, Default)]
pub struct NativeDeploymentState {
    pub arn: String,
    pub service: String,
    pub task_definition: String,
    pub status: String,
    pub status_reason: Option<String>,
    /// ECS's lifecycle stage.
    pub stage: Option<String>,
}

#[derive(Default)]
struct Model {
    /// Service deployment ARN → its wire shape, in creation order.
    deployments: HashMap<String, Value>,
    order: Vec<String>,
    /// Service revision ARN → its wire shape.
    revisions: HashMap<String, Value>,
    /// Service name → its test listener rule.
    test_rules: HashMap<String, String>,
    /// Service name → the service whose deployments are driven.
    services: HashMap<String, NativeService>,
    hook_answers: Vec<HookAnswer>,
    /// Service name → how it shifts traffic (BLUE_GREEN when not set).
    rollouts: HashMap<String, StandInRollout>,
    /// Alarms in the ALARM state.
    alarms_firing: std::collections::HashSet<String>,
    /// Pause hook id → the action ContinueServiceDeployment asked for.
    pause_actions: HashMap<String, String>,
    /// Every ContinueServiceDeployment that acted: (deployment, action).
    continued: Vec<(String, String)>,
}

#[derive(Clone)]
struct Shared {
    moto: String,
    model: Arc<Mutex<Model>>,
    http: reqwest::Client,
    lifecycle: Arc<Mutex<Option<Arc<dyn NativeLifecycle>>>>,
    counter: Arc<AtomicU32>,
    omit_current: Arc<AtomicBool>,
}

pub struct EcsNativeStandIn {
    pub endpoint: String,
    model: Arc<Mutex<Model>>,
    shared: Shared,
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
            lifecycle: Arc::default(),
            counter: Arc::new(AtomicU32::new(100)),
            omit_current: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the ECS stand-in");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new().fallback(serve).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            model,
            shared,
        }
    }

    /// `service` becomes a blue/green service whose deployments this stand-in drives.
    pub fn drive(&self, service: NativeService, lifecycle: Arc<dyn NativeLifecycle>) {
        *self.shared.lifecycle.lock().unwrap() = Some(lifecycle);
        self.manage(service);
    }

    /// `service` becomes a blue/green service: UpdateService starts a service deployment,
    /// which stays IN_PROGRESS until the test ends it ([`Self::set_status`]) unless a
    /// lifecycle drives it ([`Self::drive`]).
    pub fn manage(&self, service: NativeService) {
        self.blue_green(&service.service, &service.test_listener_rule);
        let mut model = self.model.lock().unwrap();
        model
            .rollouts
            .insert(service.service.clone(), service.rollout.clone());
        model.services.insert(service.service.clone(), service);
    }

    /// How `service`'s deployments shift production traffic from now on.
    pub fn set_rollout(&self, service: &str, rollout: StandInRollout) {
        self.model
            .lock()
            .unwrap()
            .rollouts
            .insert(service.to_string(), rollout);
    }

    /// Puts a CloudWatch alarm in ALARM (`true`) or back to OK: a deployment it watches that
    /// is baking rolls back.
    pub fn set_alarm(&self, alarm: &str, firing: bool) {
        let mut model = self.model.lock().unwrap();
        if firing {
            model.alarms_firing.insert(alarm.to_string());
        } else {
            model.alarms_firing.remove(alarm);
        }
    }

    /// Moves a deployment to `stage` with green at `weight`% of production traffic.
    pub fn set_stage(&self, deployment: &str, stage: &str, weight: f64) {
        set_stage(&self.model, deployment, stage, weight);
    }

    /// UpdateService's answer leaves `currentServiceDeployment` out.
    pub fn omit_current_deployment(&self) {
        self.shared.omit_current.store(true, Ordering::SeqCst);
    }

    /// Every deployment, oldest first.
    pub fn deployments(&self) -> Vec<NativeDeploymentState> {
        let model = self.model.lock().unwrap();
        model
            .order
            .iter()
            .filter_map(|arn| model.deployments.get(arn))
            .map(|d| {
                let revision = d["targetServiceRevision"]["arn"]
                    .as_str()
                    .unwrap_or_default();
                NativeDeploymentState {
                    arn: d["serviceDeploymentArn"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    service: d["serviceArn"]
                        .as_str()
                        .unwrap_or_default()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .into(),
                    task_definition: model.revisions.get(revision).map_or(String::new(), |r| {
                        r["taskDefinition"].as_str().unwrap_or_default().into()
                    }),
                    status: d["status"].as_str().unwrap_or_default().into(),
                    status_reason: d["statusReason"].as_str().map(str::to_string),
                    stage: d["lifecycleStage"].as_str().map(str::to_string),
                }
            })
            .collect()
    }

    /// Every hook invocation and its answer.
    pub fn hook_answers(&self) -> Vec<HookAnswer> {
        self.model.lock().unwrap().hook_answers.clone()
    }

    /// Whether a deployment is in progress.
    pub fn active(&self) -> bool {
        self.deployments().iter().any(|d| {
            greenlight_shared::model::active_statuses(greenlight_shared::model::EngineKind::Ecs)
                .any(|s| s == d.status)
        })
    }

    /// A deployment (not driven) held by a PAUSE hook `hook_id` at PRE_PRODUCTION_TRAFFIC_SHIFT
    /// until `expires_at`, as DescribeServiceDeployments then reports it.
    pub fn hold_at_pause(
        &self,
        deployment: &str,
        hook_id: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) {
        let mut model = self.model.lock().unwrap();
        if let Some(d) = model.deployments.get_mut(deployment) {
            d["lifecycleStage"] = json!(PAUSE_STAGE);
            d["lifecycleHookDetails"] = json!([{"hookId": hook_id, "targetType": "PAUSE",
                "status": "AWAITING_ACTION", "expiresAt": expires_at.timestamp_millis() as f64 / 1000.0,
                "timeoutAction": "ROLLBACK"}]);
        }
    }

    /// Every ContinueServiceDeployment that acted: (deployment, CONTINUE or ROLLBACK).
    pub fn continued(&self) -> Vec<(String, String)> {
        self.model.lock().unwrap().continued.clone()
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
    /// to `green_target_group`, its one task running, at POST_TEST_TRAFFIC_SHIFT.
    pub fn deploy(
        &self,
        cluster: &str,
        service: &str,
        n: u32,
        task_definition: &str,
        green_target_group: &str,
    ) -> NativeDeployment {
        new_deployment(
            &self.model,
            cluster,
            service,
            n,
            task_definition,
            green_target_group,
        )
    }

    /// Sets a deployment's status (`ROLLBACK_IN_PROGRESS`, …) and reason.
    pub fn set_status(&self, deployment: &str, status: &str, reason: &str) {
        set_status(&self.model, deployment, status, reason);
    }
}

fn new_deployment(
    model: &Mutex<Model>,
    cluster: &str,
    service: &str,
    n: u32,
    task_definition: &str,
    green_target_group: &str,
) -> NativeDeployment {
    let base = format!("arn:aws:ecs:us-east-1:{}", crate::world::ACCOUNT);
    let arn = format!("{base}:service-deployment/{cluster}/{service}/deployment{n:04}");
    let revision = format!("{base}:service-revision/{cluster}/{service}/9000000000000{n:04}");
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut model = model.lock().unwrap();
    let configuration = model
        .rollouts
        .get(service)
        .cloned()
        .unwrap_or_default()
        .configuration();
    model.order.push(arn.clone());
    model.deployments.insert(
        arn.clone(),
        json!({
            "serviceDeploymentArn": arn,
            "serviceArn": format!("{base}:service/{cluster}/{service}"),
            "clusterArn": format!("{base}:cluster/{cluster}"),
            "createdAt": now, "startedAt": now, "updatedAt": now,
            "status": "IN_PROGRESS",
            "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT",
            "deploymentConfiguration": configuration,
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

fn set_status(model: &Mutex<Model>, deployment: &str, status: &str, reason: &str) {
    if let Some(d) = model.lock().unwrap().deployments.get_mut(deployment) {
        d["status"] = status.into();
        d["statusReason"] = reason.into();
        d["updatedAt"] = (chrono::Utc::now().timestamp_millis() as f64 / 1000.0).into();
        if !greenlight_shared::model::active_statuses(greenlight_shared::model::EngineKind::Ecs)
            .any(|s| s == status)
        {
            d["finishedAt"] = d["updatedAt"].clone();
        }
    }
}

fn set_stage(model: &Mutex<Model>, deployment: &str, stage: &str, weight: f64) {
    if let Some(d) = model.lock().unwrap().deployments.get_mut(deployment) {
        d["lifecycleStage"] = json!(stage);
        d["targetServiceRevision"]["requestedProductionTrafficWeight"] = json!(weight);
        d["updatedAt"] = (chrono::Utc::now().timestamp_millis() as f64 / 1000.0).into();
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
        "ContinueServiceDeployment" => return continue_deployment(&shared, &request),
        "UpdateService" => {
            if let Some(answer) = start_deployment(&shared, &request) {
                return answer;
            }
        }
        "ListServiceDeployments" => {
            let model = shared.model.lock().unwrap();
            let service = name_of(&request["service"]);
            let statuses: Vec<&str> = request["status"]
                .as_array()
                .map(|s| s.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let after = request["createdAt"]["after"].as_f64();
            let mut listed: Vec<Value> = model
                .order
                .iter()
                .rev()
                .filter_map(|arn| model.deployments.get(arn))
                .filter(|d| name_of(&d["serviceArn"]) == service)
                .filter(|d| {
                    statuses.is_empty()
                        || statuses.contains(&d["status"].as_str().unwrap_or_default())
                })
                .filter(|d| after.is_none_or(|t| d["createdAt"].as_f64() >= Some(t)))
                .map(|d| {
                    json!({
                        "serviceDeploymentArn": d["serviceDeploymentArn"],
                        "serviceArn": d["serviceArn"],
                        "clusterArn": d["clusterArn"],
                        "createdAt": d["createdAt"],
                        "startedAt": d["startedAt"],
                        "targetServiceRevisionArn": d["targetServiceRevision"]["arn"],
                        "status": d["status"],
                    })
                })
                .collect();
            listed.truncate(20);
            return answer(json!({ "serviceDeployments": listed }));
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
        let model = shared.model.lock().unwrap();
        with_blue_green_settings(&bytes, &model.test_rules, &model.services, &model.rollouts)
    } else {
        bytes.to_vec()
    };
    (status, [("content-type", content_type)], bytes).into_response()
}

/// moto's DescribeServices answer, with each blue/green service's test listener rule and, for
/// a service whose deployments are driven, its deployment controller, strategy and hooks.
fn with_blue_green_settings(
    body: &[u8],
    rules: &HashMap<String, String>,
    driven: &HashMap<String, NativeService>,
    rollouts: &HashMap<String, StandInRollout>,
) -> Vec<u8> {
    let Ok(mut described) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    for service in described["services"].as_array_mut().into_iter().flatten() {
        let name = service["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(rollout) = rollouts.get(&name) {
            service["deploymentController"] = json!({"type": "ECS"});
            service["deploymentConfiguration"] = rollout.configuration();
        }
        if let Some(spec) = driven.get(&name) {
            service["deploymentController"] = json!({"type": "ECS"});
            let mut hooks = vec![json!({
                "targetType": "AWS_LAMBDA",
                "hookTargetArn": format!("arn:aws:lambda:us-east-1:{}:function:{}", crate::world::ACCOUNT, spec.hook_function),
                "roleArn": format!("arn:aws:iam::{}:role/ecs-hook-invoke", crate::world::ACCOUNT),
                "lifecycleStages": spec.hook_stages,
            })];
            if let Some(pause) = &spec.pause {
                // As ECS describes a pause hook: no target ARN, no role.
                hooks.push(json!({
                    "targetType": "PAUSE",
                    "lifecycleStages": [PAUSE_STAGE],
                    "timeoutConfiguration": {
                        "timeoutInMinutes": pause.timeout.as_secs().div_ceil(60).max(1),
                        "action": pause.timeout_action,
                    },
                }));
            }
            service["deploymentConfiguration"]["lifecycleHooks"] = json!(hooks);
        }
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

/// The last part of a name or ARN (`service/default/web2` → `web2`).
fn name_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// ContinueServiceDeployment: the deployment's pause hook, if it awaits an action, takes
/// this one; anything else is refused as ECS refuses it.
fn continue_deployment(shared: &Shared, request: &Value) -> Response {
    let arn = request["serviceDeploymentArn"].as_str().unwrap_or_default();
    let hook = request["hookId"].as_str().unwrap_or_default();
    let action = request["action"].as_str().unwrap_or_default();
    let mut model = shared.model.lock().unwrap();
    let awaiting = model.deployments.get(arn).is_some_and(|d| {
        d["lifecycleHookDetails"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["hookId"] == hook && h["status"] == "AWAITING_ACTION")
    });
    if !awaiting || !matches!(action, "CONTINUE" | "ROLLBACK") {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            json!({"__type": "InvalidParameterException",
                   "message": format!("The lifecycle hook {hook} of {arn} is not awaiting an action.")})
            .to_string(),
        )
            .into_response();
    }
    model
        .pause_actions
        .insert(hook.to_string(), action.to_string());
    model.continued.push((arn.to_string(), action.to_string()));
    // The hook has its action: a second call finds it no longer awaiting one.
    if let Some(d) = model.deployments.get_mut(arn) {
        for h in d["lifecycleHookDetails"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if h["hookId"] == hook {
                h["status"] = json!("SUCCEEDED");
            }
        }
    }
    answer(json!({ "serviceDeploymentArn": arn }))
}

/// UpdateService of a driven service to a new task definition: a new service deployment,
/// driven in the background. `None` for any other UpdateService (moto answers it).
fn start_deployment(shared: &Shared, request: &Value) -> Option<Response> {
    let task_definition = request["taskDefinition"].as_str()?.to_string();
    let service = name_of(&request["service"]);
    let spec = shared.model.lock().unwrap().services.get(&service)?.clone();
    let lifecycle = shared.lifecycle.lock().unwrap().clone();
    // A second deployment supersedes the one in progress, as ECS does.
    let superseded: Vec<String> = {
        let model = shared.model.lock().unwrap();
        model
            .deployments
            .values()
            .filter(|d| name_of(&d["serviceArn"]) == service)
            .filter(|d| d["status"] == "IN_PROGRESS" || d["status"] == "PENDING")
            .filter_map(|d| d["serviceDeploymentArn"].as_str().map(str::to_string))
            .collect()
    };
    for arn in superseded {
        set_status(
            &shared.model,
            &arn,
            "STOPPED",
            "superseded by a newer deployment",
        );
    }
    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let started = new_deployment(
        &shared.model,
        &spec.cluster,
        &spec.service,
        n,
        &task_definition,
        &spec.green_target_group,
    );
    if let Some(lifecycle) = lifecycle {
        set_status(&shared.model, &started.arn, "PENDING", "");
        let driver = Driver {
            model: shared.model.clone(),
            lifecycle,
            spec: spec.clone(),
            deployment: started.arn.clone(),
            revision: started.revision.clone(),
            task_definition: task_definition.clone(),
            ecs_id: format!("ecs-svc/{n:019}"),
        };
        tokio::spawn(driver.run());
    }
    let base = format!("arn:aws:ecs:us-east-1:{}", crate::world::ACCOUNT);
    let mut service_json = json!({
        "serviceArn": format!("{base}:service/{}/{}", spec.cluster, spec.service),
        "serviceName": spec.service,
        "clusterArn": format!("{base}:cluster/{}", spec.cluster),
        "taskDefinition": task_definition,
        "status": "ACTIVE",
        "deploymentController": {"type": "ECS"},
        "deploymentConfiguration": spec.rollout.configuration(),
    });
    if !shared.omit_current.load(Ordering::SeqCst) {
        service_json["currentServiceDeployment"] = json!(started.arn);
    }
    Some(answer(json!({ "service": service_json })))
}

/// Drives one service deployment through ECS's blue/green stages.
struct Driver {
    model: Arc<Mutex<Model>>,
    lifecycle: Arc<dyn NativeLifecycle>,
    spec: NativeService,
    deployment: String,
    revision: String,
    task_definition: String,
    /// The `ecs-svc/…` id the state-change events carry.
    ecs_id: String,
}

/// Hook rounds before a deployment gives up on a hook that keeps answering IN_PROGRESS.
const MAX_HOOK_ROUNDS: u32 = 120;

impl Driver {
    fn status(&self, status: &str, reason: &str) {
        set_status(&self.model, &self.deployment, status, reason);
    }

    fn superseded(&self) -> bool {
        let model = self.model.lock().unwrap();
        model
            .deployments
            .get(&self.deployment)
            .is_some_and(|d| d["status"] == "STOPPED")
    }

    fn event(&self, name: &str, kind: &str, reason: &str) -> Value {
        let base = format!("arn:aws:ecs:us-east-1:{}", crate::world::ACCOUNT);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({
            "version": "0",
            "id": format!("{}-{name}", self.ecs_id),
            "detail-type": "ECS Deployment State Change",
            "source": "aws.ecs",
            "account": crate::world::ACCOUNT,
            "time": now,
            "region": "us-east-1",
            "resources": [format!("{base}:service/{}/{}", self.spec.cluster, self.spec.service)],
            "detail": {
                "eventType": kind,
                "eventName": name,
                "deploymentId": self.ecs_id,
                "updatedAt": now,
                "reason": reason,
            }
        })
    }

    async fn run(self) {
        self.status("IN_PROGRESS", "");
        let started = self.event(
            "SERVICE_DEPLOYMENT_IN_PROGRESS",
            "INFO",
            &format!("ECS deployment {} in progress.", self.ecs_id),
        );
        self.lifecycle.publish(started).await;
        if let Err(why) = self
            .lifecycle
            .start_green(&self.spec, &self.task_definition)
            .await
        {
            return self.roll_back(&why).await;
        }
        let rollout = &self.spec.rollout;
        for stage in STAGES {
            if self.superseded() {
                return;
            }
            // Production moves in the strategy's steps, each checked by the hooks registered
            // at the stage and baked before the next; the other stages are one step at 0 or 100%.
            let weights = match *stage {
                "PRODUCTION_TRAFFIC_SHIFT" => rollout.weights(),
                "POST_PRODUCTION_TRAFFIC_SHIFT" => vec![100.0],
                _ => vec![0.0],
            };
            for weight in weights {
                set_stage(&self.model, &self.deployment, stage, weight);
                if *stage == "PRODUCTION_TRAFFIC_SHIFT" && rollout.strategy != "BLUE_GREEN" {
                    let bake = if weight < 100.0 {
                        rollout.step_bake_minutes
                    } else {
                        rollout.bake_minutes
                    };
                    self.lifecycle.traffic(&self.spec, weight, bake).await;
                }
                if self.spec.hook_stages.iter().any(|s| s == stage) {
                    if let Err(why) = self.run_hook(stage).await {
                        return self.roll_back(&why).await;
                    }
                }
                if *stage == PAUSE_STAGE {
                    if let Err(why) = self.pause().await {
                        return self.roll_back(&why).await;
                    }
                }
                if *stage == "PRODUCTION_TRAFFIC_SHIFT" && weight < 100.0 {
                    if let Err(why) = self.bake(rollout.step_bake_minutes).await {
                        return self.roll_back(&why).await;
                    }
                }
            }
        }
        set_stage(&self.model, &self.deployment, "BAKE_TIME", 100.0);
        if let Err(why) = self.bake(rollout.bake_minutes).await {
            return self.roll_back(&why).await;
        }
        if let Err(why) = self
            .lifecycle
            .promote_green(&self.spec, &self.task_definition)
            .await
        {
            return self.roll_back(&why).await;
        }
        self.status("SUCCESSFUL", "");
        let done = self.event(
            "SERVICE_DEPLOYMENT_COMPLETED",
            "INFO",
            &format!("ECS deployment {} completed.", self.ecs_id),
        );
        self.lifecycle.publish(done).await;
    }

    /// Invokes the hook at `stage` until it answers SUCCEEDED (Ok) or FAILED (Err, the reason).
    async fn run_hook(&self, stage: &str) -> Result<(), String> {
        let base = format!("arn:aws:ecs:us-east-1:{}", crate::world::ACCOUNT);
        let execution = format!("{}-{stage}", self.ecs_id.trim_start_matches("ecs-svc/"));
        let mut details = Value::Null;
        for _ in 0..MAX_HOOK_ROUNDS {
            let mut payload = json!({
                "executionId": execution,
                "lifecycleStage": stage,
                "resourceArn": self.deployment,
                "executionDetails": {
                    "serviceArn": format!("{base}:service/{}/{}", self.spec.cluster, self.spec.service),
                    "targetServiceRevisionArn": self.revision,
                    "testTrafficWeights": {},
                    "productionTrafficWeights": {},
                },
            });
            if !details.is_null() {
                payload["hookDetails"] = details.clone();
            }
            let answered = self
                .lifecycle
                .invoke_hook(&self.spec.hook_function, payload)
                .await;
            let (status, reason, delay) = match &answered {
                Ok(a) => (
                    a["hookStatus"].as_str().unwrap_or("FAILED").to_string(),
                    a["hookDetails"]["greenlight"]["last"]
                        .as_str()
                        .or(a["hookDetails"]["greenlight"]["reason"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    a["callBackDelay"].as_u64().unwrap_or(30),
                ),
                Err(e) => ("ERROR".to_string(), e.clone(), 0),
            };
            self.model.lock().unwrap().hook_answers.push(HookAnswer {
                deployment: self.deployment.clone(),
                stage: stage.to_string(),
                status: status.clone(),
                reason: reason.clone(),
            });
            match status.as_str() {
                "SUCCEEDED" => return Ok(()),
                "IN_PROGRESS" => {
                    details = answered
                        .ok()
                        .map(|a| a["hookDetails"].clone())
                        .unwrap_or_default();
                    tokio::time::sleep(Duration::from_secs(delay)).await;
                }
                _ => {
                    return Err(format!(
                        "the {stage} lifecycle hook answered {status}: {reason}"
                    ))
                }
            }
        }
        Err(format!(
            "the {stage} lifecycle hook did not finish in {MAX_HOOK_ROUNDS} rounds"
        ))
    }

    /// The service's pause hook, if it has one: AWAITING_ACTION until ContinueServiceDeployment
    /// names it (CONTINUE goes on, ROLLBACK rolls back) or its timeout takes its action.
    async fn pause(&self) -> Result<(), String> {
        let Some(pause) = &self.spec.pause else {
            return Ok(());
        };
        let hook_id = format!("pause-{}", self.ecs_id.trim_start_matches("ecs-svc/"));
        let expires =
            chrono::Utc::now() + chrono::Duration::from_std(pause.timeout).unwrap_or_default();
        let detail = |status: &str| {
            json!([{"hookId": hook_id, "targetType": "PAUSE", "status": status,
                    "expiresAt": expires.timestamp_millis() as f64 / 1000.0,
                    "timeoutAction": pause.timeout_action}])
        };
        let set = |status: &str| {
            if let Some(d) = self
                .model
                .lock()
                .unwrap()
                .deployments
                .get_mut(&self.deployment)
            {
                d["lifecycleHookDetails"] = detail(status);
            }
        };
        set("AWAITING_ACTION");
        let until = tokio::time::Instant::now() + pause.timeout;
        loop {
            let asked = self.model.lock().unwrap().pause_actions.remove(&hook_id);
            let (status, action) = match asked {
                Some(action) => ("SUCCEEDED", action),
                None if tokio::time::Instant::now() >= until => {
                    ("TIMED_OUT", pause.timeout_action.clone())
                }
                None if self.superseded() => return Ok(()),
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            set(status);
            return match action.as_str() {
                "CONTINUE" => Ok(()),
                _ if status == "TIMED_OUT" => Err(format!(
                    "the {PAUSE_STAGE} pause hook timed out; its timeout action is ROLLBACK"
                )),
                _ => Err(format!(
                    "ContinueServiceDeployment asked to roll back at {PAUSE_STAGE}"
                )),
            };
        }
    }

    /// Waits `minutes` of the service's (shortened) minutes, watching its alarm: one that goes
    /// to ALARM ends the bake with the rollback's reason, recorded as ECS records it.
    async fn bake(&self, minutes: i32) -> Result<(), String> {
        let rollout = &self.spec.rollout;
        let until = tokio::time::Instant::now() + rollout.minute * minutes.max(0) as u32;
        loop {
            if let Some(alarm) = &rollout.alarm {
                let mut model = self.model.lock().unwrap();
                if model.alarms_firing.contains(alarm) {
                    let why = format!("CloudWatch alarm {alarm} is in ALARM state");
                    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                    if let Some(d) = model.deployments.get_mut(&self.deployment) {
                        d["rollback"] = json!({"reason": why, "startedAt": now});
                        d["alarms"] = json!({"status": "TRIGGERED", "alarmNames": [alarm],
                            "triggeredAlarmNames": [alarm]});
                    }
                    return Err(why);
                }
            }
            if tokio::time::Instant::now() >= until || self.superseded() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn roll_back(&self, why: &str) {
        self.status("ROLLBACK_IN_PROGRESS", why);
        let rolling = self.event(
            "SERVICE_DEPLOYMENT_IN_PROGRESS",
            "INFO",
            &format!("ECS deployment: rolling back {}: {why}", self.ecs_id),
        );
        self.lifecycle.publish(rolling).await;
        self.lifecycle.discard_green(&self.spec).await;
        self.status("ROLLBACK_SUCCESSFUL", why);
        let failed = self.event("SERVICE_DEPLOYMENT_FAILED", "ERROR", why);
        self.lifecycle.publish(failed).await;
    }
}
