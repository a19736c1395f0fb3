//! A CodeDeploy stand-in: a test double, not an emulator.
//!
//! moto serves CodeDeploy only partly (deployments never progress; a busy group accepts a
//! second deployment; the target and hook APIs answer 500), so the tests and the local
//! pipeline point `AWS_ENDPOINT_URL_CODEDEPLOY` here. It speaks the real wire protocol
//! (awsJson1_1, `X-Amz-Target: CodeDeploy_20141006.<Operation>`, epoch-second timestamps, the
//! `identifer` spelling), refuses a second deployment for a busy group as CodeDeploy does,
//! and records every call and every hook status reported.
//!
//! With a [`Lifecycle`] attached (the local pipeline) it also drives each deployment the way
//! CodeDeploy drives an ECS blue/green deployment: green task set created in moto's ECS, each
//! hook invoked and awaited (one that never reports fails the deployment after a timeout),
//! then green made primary, or the deployment failed and rolled back; each state change is
//! published in the EventBridge envelope of `events/codedeploy-*.json`. A group that waits
//! before rerouting holds its deployment Ready (the READY state) until ContinueDeployment, or
//! stops it and rolls it back on StopDeployment or when the wait runs out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// The ECS blue/green lifecycle events that may run hooks, in CodeDeploy's order.
const HOOK_ORDER: &[&str] = &[
    "BeforeInstall",
    "AfterInstall",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// A deployment group as configured by the harness.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub application: String,
    pub group: String,
    pub cluster: String,
    pub service: String,
    /// (blue, green) target group names.
    pub target_groups: (String, String),
    pub prod_listener: String,
    pub test_listener: String,
    /// Wait before rerouting production traffic (`deploymentReadyOption` with
    /// `STOP_DEPLOYMENT`): the deployment is Ready until ContinueDeployment, or is stopped and
    /// rolled back by StopDeployment or when the wait runs out. `None`: reroute at once.
    pub wait_before_reroute: Option<Duration>,
}

/// What the stand-in needs from the world to drive a deployment (the local pipeline).
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Creates the green task set for `task_definition`; returns its id.
    async fn create_green(
        &self,
        group: &GroupSpec,
        task_definition: &str,
        container: &str,
        port: i64,
    ) -> Result<String, String>;
    /// Makes the green task set primary (traffic shifted) and the service run `task_definition`.
    async fn promote_green(
        &self,
        group: &GroupSpec,
        green: &str,
        task_definition: &str,
    ) -> Result<(), String>;
    /// Removes the green task set (rollback).
    async fn discard_green(&self, group: &GroupSpec, green: &str);
    /// Invokes the hook function (asynchronously, as CodeDeploy does).
    async fn invoke_hook(&self, function: &str, payload: Value);
    /// Delivers a state-change event to its subscribers.
    async fn publish(&self, event: Value);
}

#[derive(Debug, Clone, Default)]
struct LifecycleEventState {
    name: String,
    status: String,
    start: Option<f64>,
    end: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct DeploymentState {
    pub id: String,
    pub application: String,
    pub group: String,
    pub status: String,
    pub description: Option<String>,
    pub creator: String,
    pub appspec: Option<String>,
    pub create_time: f64,
    pub complete_time: Option<f64>,
    pub error: Option<(String, String)>,
    pub rollback_deployment_id: Option<String>,
    pub rolls_back: Option<String>,
    pub rollback_message: Option<String>,
    lifecycle: Vec<LifecycleEventState>,
    green_task_set: Option<String>,
    blue_task_set: Option<String>,
}

impl DeploymentState {
    fn active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Created" | "Queued" | "InProgress" | "Ready" | "Baking"
        )
    }
}

/// One reported hook status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReport {
    pub deployment_id: String,
    pub execution_id: String,
    pub status: String,
}

#[derive(Default)]
struct Inner {
    groups: Vec<GroupSpec>,
    deployments: HashMap<String, DeploymentState>,
    order: Vec<String>,
    /// execution id -> (deployment id, lifecycle event, reported status)
    executions: HashMap<String, (String, String, Option<String>)>,
    reports: Vec<HookReport>,
    calls: Vec<String>,
    /// The task definition each group serves, for rollbacks.
    serving: HashMap<String, String>,
    counter: u64,
    instant_success: bool,
    /// Deployments ContinueDeployment released from their wait.
    continued: std::collections::HashSet<String>,
    /// Deployments StopDeployment stopped.
    stopped: std::collections::HashSet<String>,
    /// Every ContinueDeployment or StopDeployment that acted: (deployment, operation).
    acted: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct CodeDeployStandIn {
    inner: Arc<Mutex<Inner>>,
    reported: Arc<Notify>,
    lifecycle: Arc<Mutex<Option<Arc<dyn Lifecycle>>>>,
    pub hook_timeout: Duration,
    pub endpoint: String,
    pub account: String,
    pub region: String,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        json!({"__type": code, "message": message.into()}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

impl CodeDeployStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start(hook_timeout: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let addr: SocketAddr = listener.local_addr().expect("stand-in address");
        let stand_in = Self {
            inner: Arc::default(),
            reported: Arc::new(Notify::new()),
            lifecycle: Arc::default(),
            hook_timeout,
            endpoint: format!("http://{addr}"),
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let app = Router::new()
            .route("/", post(serve))
            .with_state(stand_in.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        stand_in
    }

    pub fn add_group(&self, spec: GroupSpec, serving_task_definition: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .serving
            .insert(spec.group.clone(), serving_task_definition.to_string());
        inner.groups.push(spec);
    }

    /// Deployments succeed as soon as they are created (for timing a deploy command alone).
    /// A deployment of the group (not driven) held Ready, waiting to reroute.
    pub fn ready(&self, application: &str, group: &str) -> String {
        let id = self
            .new_deployment(application, group, None, None, "user")
            .expect("the group is free");
        self.update(&id, |d| d.status = "Ready".into());
        id
    }

    /// Every ContinueDeployment or StopDeployment that acted: (deployment, operation).
    pub fn acted(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().acted.clone()
    }

    pub fn succeed_instantly(&self) {
        self.inner.lock().unwrap().instant_success = true;
    }

    pub fn attach(&self, lifecycle: Arc<dyn Lifecycle>) {
        *self.lifecycle.lock().unwrap() = Some(lifecycle);
    }

    /// Every operation called, in order.
    pub fn calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn reports(&self) -> Vec<HookReport> {
        self.inner.lock().unwrap().reports.clone()
    }

    /// Deployments in creation order.
    pub fn deployments(&self) -> Vec<DeploymentState> {
        let inner = self.inner.lock().unwrap();
        inner
            .order
            .iter()
            .map(|id| inner.deployments[id].clone())
            .collect()
    }

    pub fn deployment(&self, id: &str) -> Option<DeploymentState> {
        self.inner.lock().unwrap().deployments.get(id).cloned()
    }

    /// Ends a deployment by hand (tests without a lifecycle); returns its state-change event.
    pub fn complete(&self, id: &str, status: &str) -> Value {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.deployments.get_mut(id).expect("known deployment");
        d.status = status.to_string();
        d.complete_time = Some(now());
        let state = match status {
            "Succeeded" => "SUCCESS",
            "Stopped" => "STOP",
            _ => "FAILURE",
        };
        let d = d.clone();
        self.state_event(&d, state)
    }

    /// Fails a deployment by hand and rolls it back as CodeDeploy does (tests without a
    /// lifecycle): the rollback deployment (created by `codeDeployRollback`) succeeds. Returns
    /// the FAILURE event of the deployment and the SUCCESS event of its rollback.
    pub fn fail_and_roll_back(&self, id: &str) -> (Value, Value) {
        let d = self.update(id, |d| {
            d.status = "Failed".into();
            d.complete_time = Some(now());
            d.error = Some((
                "HOOK_EXECUTION_FAILURE".into(),
                "The deployment failed because a specified lifecycle event hook failed".into(),
            ));
        });
        let rollback = self
            .new_deployment(&d.application, &d.group, None, None, "codeDeployRollback")
            .expect("the group is free once the deployment failed");
        let d = self.update(id, |d| {
            d.rollback_deployment_id = Some(rollback.clone());
            d.rollback_message = Some(format!("Rolled back by {rollback}"));
        });
        let r = self.update(&rollback, |r| {
            r.status = "Succeeded".into();
            r.complete_time = Some(now());
            r.rolls_back = Some(id.to_string());
            r.rollback_message = Some(format!("Automatic rollback of {id}"));
        });
        (
            self.state_event(&d, "FAILURE"),
            self.state_event(&r, "SUCCESS"),
        )
    }

    /// Starts a hook execution on a deployment by hand; returns its execution id.
    pub fn open_hook(&self, deployment_id: &str, event: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        let execution = format!("exec-{}-{}", deployment_id, inner.counter);
        inner.executions.insert(
            execution.clone(),
            (deployment_id.to_string(), event.to_string(), None),
        );
        if let Some(d) = inner.deployments.get_mut(deployment_id) {
            d.lifecycle.push(LifecycleEventState {
                name: event.into(),
                status: "InProgress".into(),
                start: Some(now()),
                end: None,
            });
        }
        execution
    }

    /// Sets the task sets a deployment's ECS target reports (tests without a lifecycle).
    pub fn set_task_sets(&self, deployment_id: &str, blue: Option<&str>, green: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(d) = inner.deployments.get_mut(deployment_id) {
            d.blue_task_set = blue.map(str::to_string);
            d.green_task_set = Some(green.to_string());
        }
    }

    /// The EventBridge state-change event of a deployment, as `events/codedeploy-*.json`.
    pub fn state_event(&self, d: &DeploymentState, state: &str) -> Value {
        json!({
            "version": "0",
            "id": format!("{}-{}", d.id, state.to_lowercase()),
            "detail-type": "CodeDeploy Deployment State-change Notification",
            "source": "aws.codedeploy",
            "account": self.account,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": self.region,
            "resources": [
                format!("arn:aws:codedeploy:{}:{}:application:{}", self.region, self.account, d.application),
                format!("arn:aws:codedeploy:{}:{}:deploymentgroup:{}/{}", self.region, self.account, d.application, d.group),
            ],
            "detail": {
                "account": self.account,
                "region": self.region,
                "deploymentId": d.id,
                "instanceGroupId": format!("ig-{}", d.group),
                "deploymentGroup": d.group,
                "state": state,
                "application": d.application,
            }
        })
    }

    fn group(&self, application: &str, group: &str) -> Option<GroupSpec> {
        self.inner
            .lock()
            .unwrap()
            .groups
            .iter()
            .find(|g| g.application == application && g.group == group)
            .cloned()
    }

    fn new_deployment(
        &self,
        application: &str,
        group: &str,
        appspec: Option<String>,
        description: Option<String>,
        creator: &str,
    ) -> Result<String, String> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(active) = inner
            .deployments
            .values()
            .find(|d| d.application == application && d.group == group && d.active())
        {
            return Err(format!(
                "The Deployment Group '{group}' already has an active Deployment '{}'",
                active.id
            ));
        }
        inner.counter += 1;
        let id = format!("d-{:09}", inner.counter);
        inner.deployments.insert(
            id.clone(),
            DeploymentState {
                id: id.clone(),
                application: application.into(),
                group: group.into(),
                status: "Created".into(),
                description,
                creator: creator.into(),
                appspec,
                create_time: now(),
                ..Default::default()
            },
        );
        inner.order.push(id.clone());
        Ok(id)
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut DeploymentState)) -> DeploymentState {
        let mut inner = self.inner.lock().unwrap();
        let d = inner.deployments.get_mut(id).expect("known deployment");
        f(d);
        d.clone()
    }

    /// Drives one deployment through the ECS blue/green lifecycle.
    async fn drive(self, lifecycle: Arc<dyn Lifecycle>, id: String, group: GroupSpec) {
        let d = self.update(&id, |d| d.status = "InProgress".into());
        lifecycle.publish(self.state_event(&d, "START")).await;
        let appspec: Value = d
            .appspec
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or(Value::Null);
        let props = &appspec["Resources"][0]["TargetService"]["Properties"];
        let task_definition = props["TaskDefinition"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let container = props["LoadBalancerInfo"]["ContainerName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let port = props["LoadBalancerInfo"]["ContainerPort"]
            .as_i64()
            .unwrap_or(80);
        let hooks: Vec<(String, String)> = appspec["Hooks"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| h.as_object())
                    .flat_map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();

        let green = match lifecycle
            .create_green(&group, &task_definition, &container, port)
            .await
        {
            Ok(green) => green,
            Err(e) => {
                return self
                    .fail(lifecycle, &id, &group, None, "ECS_UPDATE_ERROR", &e)
                    .await
            }
        };
        self.update(&id, |d| d.green_task_set = Some(green.clone()));
        for event in HOOK_ORDER {
            if *event == "BeforeAllowTraffic" {
                let d = self.update(&id, |d| d.status = "Ready".into());
                lifecycle.publish(self.state_event(&d, "READY")).await;
                if let Some(wait) = group.wait_before_reroute {
                    if let Err((code, why)) = self.wait_to_reroute(&id, wait).await {
                        return self
                            .end_and_roll_back(
                                lifecycle,
                                &id,
                                &group,
                                Some(green),
                                code,
                                &why,
                                true,
                            )
                            .await;
                    }
                }
                self.update(&id, |d| d.status = "InProgress".into());
            }
            for (_, function) in hooks.iter().filter(|(e, _)| e == event) {
                if let Err(why) = self
                    .run_hook(lifecycle.as_ref(), &id, event, function)
                    .await
                {
                    return self
                        .fail(
                            lifecycle,
                            &id,
                            &group,
                            Some(green),
                            "HOOK_EXECUTION_FAILURE",
                            &why,
                        )
                        .await;
                }
            }
        }
        if let Err(e) = lifecycle
            .promote_green(&group, &green, &task_definition)
            .await
        {
            return self
                .fail(lifecycle, &id, &group, Some(green), "ECS_UPDATE_ERROR", &e)
                .await;
        }
        self.inner
            .lock()
            .unwrap()
            .serving
            .insert(group.group.clone(), task_definition);
        let d = self.update(&id, |d| {
            d.status = "Succeeded".into();
            d.complete_time = Some(now());
        });
        lifecycle.publish(self.state_event(&d, "SUCCESS")).await;
    }

    /// Invokes a hook and waits for its report.
    async fn run_hook(
        &self,
        lifecycle: &dyn Lifecycle,
        id: &str,
        event: &str,
        function: &str,
    ) -> Result<(), String> {
        let execution = self.open_hook(id, event);
        lifecycle
            .invoke_hook(
                function,
                json!({"DeploymentId": id, "LifecycleEventHookExecutionId": execution}),
            )
            .await;
        let waited = tokio::time::timeout(self.hook_timeout, async {
            loop {
                let notified = self.reported.notified();
                if let Some(status) = self
                    .inner
                    .lock()
                    .unwrap()
                    .executions
                    .get(&execution)
                    .and_then(|e| e.2.clone())
                {
                    return status;
                }
                notified.await;
            }
        })
        .await;
        let status = waited.unwrap_or_else(|_| "TimedOut".to_string());
        self.update(id, |d| {
            if let Some(l) = d
                .lifecycle
                .iter_mut()
                .find(|l| l.name == event && l.status == "InProgress")
            {
                l.status = status.clone();
                l.end = Some(now());
            }
        });
        match status.as_str() {
            "Succeeded" => Ok(()),
            "TimedOut" => Err(format!("The {event} hook did not report within {} s", self.hook_timeout.as_secs())),
            other => Err(format!("The deployment failed because a specified lifecycle event hook failed: {event} reported {other}")),
        }
    }

    /// Holds a Ready deployment until ContinueDeployment (Ok), StopDeployment or the end of
    /// the wait (Err: CodeDeploy's error code and message).
    async fn wait_to_reroute(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<(), (&'static str, String)> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            {
                let mut inner = self.inner.lock().unwrap();
                if inner.continued.remove(id) {
                    return Ok(());
                }
                if inner.stopped.remove(id) {
                    return Err((
                        "MANUAL_STOP",
                        "The deployment was stopped by a user (StopDeployment).".into(),
                    ));
                }
            }
            if tokio::time::Instant::now() >= until {
                return Err(("TIMEOUT", "The deployment timed out while waiting to reroute traffic (actionOnTimeout STOP_DEPLOYMENT).".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails a deployment and rolls it back, as auto-rollback on failure does.
    async fn fail(
        &self,
        lifecycle: Arc<dyn Lifecycle>,
        id: &str,
        group: &GroupSpec,
        green: Option<String>,
        code: &str,
        message: &str,
    ) {
        self.end_and_roll_back(lifecycle, id, group, green, code, message, false)
            .await
    }

    /// Ends a deployment as Failed (or Stopped) and rolls it back in a deployment of its own.
    #[allow(clippy::too_many_arguments)]
    async fn end_and_roll_back(
        &self,
        lifecycle: Arc<dyn Lifecycle>,
        id: &str,
        group: &GroupSpec,
        green: Option<String>,
        code: &str,
        message: &str,
        stopped: bool,
    ) {
        if let Some(green) = &green {
            lifecycle.discard_green(group, green).await;
        }
        // The failed deployment ends first: the rollback is a new deployment of the same group.
        self.update(id, |d| {
            d.status = if stopped { "Stopped" } else { "Failed" }.into();
            d.complete_time = Some(now());
            d.error = Some((code.into(), message.into()));
        });
        let rollback = self
            .new_deployment(
                &group.application,
                &group.group,
                None,
                None,
                "codeDeployRollback",
            )
            .ok();
        let d = self.update(id, |d| {
            d.rollback_deployment_id = rollback.clone();
            d.rollback_message = rollback.as_ref().map(|r| format!("Rolled back by {r}"));
        });
        let state = if stopped { "STOP" } else { "FAILURE" };
        lifecycle.publish(self.state_event(&d, state)).await;
        if let Some(rollback) = rollback {
            let serving = self
                .inner
                .lock()
                .unwrap()
                .serving
                .get(&group.group)
                .cloned()
                .unwrap_or_default();
            let r = self.update(&rollback, |r| {
                r.status = "InProgress".into();
                r.rolls_back = Some(id.to_string());
                r.rollback_message = Some(format!("Automatic rollback of {id}"));
                r.appspec = Some(json!({"version": 0.0, "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": serving}}}]}).to_string());
            });
            lifecycle.publish(self.state_event(&r, "START")).await;
            let r = self.update(&rollback, |r| {
                r.status = "Succeeded".into();
                r.complete_time = Some(now());
            });
            lifecycle.publish(self.state_event(&r, "SUCCESS")).await;
        }
    }

    fn deployment_json(&self, d: &DeploymentState) -> Value {
        let mut info = json!({
            "applicationName": d.application,
            "deploymentGroupName": d.group,
            "deploymentId": d.id,
            "status": d.status,
            "creator": d.creator,
            "createTime": d.create_time,
            "computePlatform": "ECS",
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "deploymentConfigName": "CodeDeployDefault.ECSAllAtOnce",
        });
        if let Some(desc) = &d.description {
            info["description"] = json!(desc);
        }
        if let Some(t) = d.complete_time {
            info["completeTime"] = json!(t);
        }
        if let Some(appspec) = &d.appspec {
            info["revision"] =
                json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}});
        }
        if let Some((code, message)) = &d.error {
            info["errorInformation"] = json!({"code": code, "message": message});
        }
        if d.rollback_deployment_id.is_some() || d.rolls_back.is_some() {
            let mut rb = json!({});
            if let Some(r) = &d.rollback_deployment_id {
                rb["rollbackDeploymentId"] = json!(r);
            }
            if let Some(r) = &d.rolls_back {
                rb["rollbackTriggeringDeploymentId"] = json!(r);
            }
            if let Some(m) = &d.rollback_message {
                rb["rollbackMessage"] = json!(m);
            }
            info["rollbackInfo"] = rb;
        }
        info
    }

    fn target_json(&self, d: &DeploymentState, group: &GroupSpec) -> Value {
        let mut sets = vec![];
        if let Some(blue) = &d.blue_task_set {
            sets.push(json!({"identifer": blue, "desiredCount": 1, "pendingCount": 0, "runningCount": 1, "status": "PRIMARY", "trafficWeight": 100.0, "targetGroup": {"name": group.target_groups.0}, "taskSetLabel": "Blue"}));
        }
        if let Some(green) = &d.green_task_set {
            sets.push(json!({"identifer": green, "desiredCount": 1, "pendingCount": 0, "runningCount": 1, "status": "ACTIVE", "trafficWeight": 0.0, "targetGroup": {"name": group.target_groups.1}, "taskSetLabel": "Green"}));
        }
        let events: Vec<Value> = d
            .lifecycle
            .iter()
            .map(|l| {
                let mut e = json!({"lifecycleEventName": l.name, "status": l.status});
                if let Some(s) = l.start {
                    e["startTime"] = json!(s);
                }
                if let Some(s) = l.end {
                    e["endTime"] = json!(s);
                }
                e
            })
            .collect();
        json!({
            "deploymentTargetType": "ECSTarget",
            "ecsTarget": {
                "deploymentId": d.id,
                "targetId": format!("{}:{}", group.cluster, group.service),
                "targetArn": format!("arn:aws:ecs:{}:{}:service/{}/{}", self.region, self.account, group.cluster, group.service),
                "lastUpdatedAt": now(),
                "lifecycleEvents": events,
                "status": if d.active() { "InProgress" } else { "Succeeded" },
                "taskSetsInfo": sets,
            }
        })
    }
}

async fn serve(State(s): State<CodeDeployStandIn>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(op) = target.strip_prefix("CodeDeploy_20141006.") else {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("unknown target {target}"),
        );
    };
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    s.inner.lock().unwrap().calls.push(op.to_string());
    let text = |k: &str| input[k].as_str().unwrap_or_default().to_string();
    match op {
        "GetDeploymentGroup" => {
            match s.group(&text("applicationName"), &text("deploymentGroupName")) {
                None => error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentGroupDoesNotExistException",
                    format!(
                        "No Deployment Group found for name: {}",
                        text("deploymentGroupName")
                    ),
                ),
                Some(g) => ok(json!({"deploymentGroupInfo": {
                    "applicationName": g.application,
                    "deploymentGroupId": format!("dg-{}", g.group),
                    "deploymentGroupName": g.group,
                    "computePlatform": "ECS",
                    "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                    "autoRollbackConfiguration": {"enabled": true, "events": ["DEPLOYMENT_FAILURE"]},
                "blueGreenDeploymentConfiguration": {
                    "deploymentReadyOption": match g.wait_before_reroute {
                        Some(wait) => json!({"actionOnTimeout": "STOP_DEPLOYMENT", "waitTimeInMinutes": wait.as_secs().div_ceil(60).max(1)}),
                        None => json!({"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0}),
                    },
                    "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 5},
                },
                    "ecsServices": [{"serviceName": g.service, "clusterName": g.cluster}],
                    "loadBalancerInfo": {"targetGroupPairInfoList": [{
                        "targetGroups": [{"name": g.target_groups.0}, {"name": g.target_groups.1}],
                        "prodTrafficRoute": {"listenerArns": [g.prod_listener]},
                        "testTrafficRoute": {"listenerArns": [g.test_listener]},
                    }]},
                }})),
            }
        }
        "GetApplication" => {
            let name = text("applicationName");
            if s.inner
                .lock()
                .unwrap()
                .groups
                .iter()
                .any(|g| g.application == name)
            {
                ok(
                    json!({"application": {"applicationName": name, "applicationId": format!("app-{name}"), "computePlatform": "ECS", "createTime": now()}}),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "ApplicationDoesNotExistException",
                    format!("No application found for name: {name}"),
                )
            }
        }
        "CreateDeployment" => {
            let (application, group_name) = (text("applicationName"), text("deploymentGroupName"));
            let Some(group) = s.group(&application, &group_name) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentGroupDoesNotExistException",
                    format!("No Deployment Group found for name: {group_name}"),
                );
            };
            let appspec = input["revision"]["appSpecContent"]["content"]
                .as_str()
                .map(str::to_string);
            let description = input["description"].as_str().map(str::to_string);
            match s.new_deployment(&application, &group_name, appspec, description, "user") {
                Err(message) => error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentLimitExceededException",
                    message,
                ),
                Ok(id) => {
                    let lifecycle = s.lifecycle.lock().unwrap().clone();
                    match lifecycle {
                        Some(lifecycle) => {
                            tokio::spawn(s.clone().drive(lifecycle, id.clone(), group));
                        }
                        None => {
                            let instant = s.inner.lock().unwrap().instant_success;
                            s.update(&id, |d| {
                                d.status = if instant { "Succeeded" } else { "InProgress" }.into();
                                d.complete_time = instant.then(now);
                            });
                        }
                    }
                    ok(json!({"deploymentId": id}))
                }
            }
        }
        "ContinueDeployment" => {
            let id = text("deploymentId");
            let ready = s.deployment(&id).is_some_and(|d| d.status == "Ready");
            if !ready || input["deploymentWaitType"] != "READY_WAIT" {
                return error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentIsNotInReadyStateException",
                    format!("The deployment {id} is not in a ready state"),
                );
            }
            let driven = s.lifecycle.lock().unwrap().is_some();
            let mut inner = s.inner.lock().unwrap();
            inner.acted.push((id.clone(), "ContinueDeployment".into()));
            inner.continued.insert(id.clone());
            // Without a driver, the deployment goes on at once.
            if let (false, Some(d)) = (driven, inner.deployments.get_mut(&id)) {
                d.status = "InProgress".into();
            }
            ok(json!({}))
        }
        "StopDeployment" => {
            let id = text("deploymentId");
            match s.deployment(&id) {
                None => error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentDoesNotExistException",
                    format!("The deployment {id} could not be found"),
                ),
                Some(d) if !d.active() => error(
                    StatusCode::BAD_REQUEST,
                    "DeploymentAlreadyCompletedException",
                    format!("The deployment {id} has already completed"),
                ),
                Some(_) => {
                    let driven = s.lifecycle.lock().unwrap().is_some();
                    let mut inner = s.inner.lock().unwrap();
                    inner.acted.push((id.clone(), "StopDeployment".into()));
                    inner.stopped.insert(id.clone());
                    if let (false, Some(d)) = (driven, inner.deployments.get_mut(&id)) {
                        d.status = "Stopped".into();
                        d.complete_time = Some(now());
                    }
                    ok(json!({"status": "Pending", "statusMessage": "Stop is pending"}))
                }
            }
        }
        "GetDeployment" => match s.deployment(&text("deploymentId")) {
            None => error(
                StatusCode::BAD_REQUEST,
                "DeploymentDoesNotExistException",
                format!("The deployment {} could not be found", text("deploymentId")),
            ),
            Some(d) => ok(json!({"deploymentInfo": s.deployment_json(&d)})),
        },
        "ListDeployments" => {
            // Filters as CodeDeploy applies them: statuses, and creation time (epoch seconds).
            let statuses: Vec<&str> = input["includeOnlyStatuses"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let created_from = input["createTimeRange"]["start"].as_f64();
            let inner = s.inner.lock().unwrap();
            let ids: Vec<&String> = inner
                .order
                .iter()
                .filter(|id| {
                    let d = &inner.deployments[*id];
                    d.application == text("applicationName")
                        && d.group == text("deploymentGroupName")
                        && (statuses.is_empty() || statuses.contains(&d.status.as_str()))
                        && created_from.is_none_or(|t| d.create_time >= t.floor())
                })
                .collect();
            ok(json!({"deployments": ids}))
        }
        "ListDeploymentTargets" => match s.deployment(&text("deploymentId")) {
            None => error(
                StatusCode::BAD_REQUEST,
                "DeploymentDoesNotExistException",
                "no such deployment",
            ),
            Some(d) => match s.group(&d.application, &d.group) {
                Some(g) => ok(json!({"targetIds": [format!("{}:{}", g.cluster, g.service)]})),
                None => ok(json!({"targetIds": []})),
            },
        },
        "BatchGetDeploymentTargets" => match s.deployment(&text("deploymentId")) {
            None => error(
                StatusCode::BAD_REQUEST,
                "DeploymentDoesNotExistException",
                "no such deployment",
            ),
            Some(d) => match s.group(&d.application, &d.group) {
                Some(g) => ok(json!({"deploymentTargets": [s.target_json(&d, &g)]})),
                None => ok(json!({"deploymentTargets": []})),
            },
        },
        "PutLifecycleEventHookExecutionStatus" => {
            let (deployment, execution, status) = (
                text("deploymentId"),
                text("lifecycleEventHookExecutionId"),
                text("status"),
            );
            let mut inner = s.inner.lock().unwrap();
            let Some(entry) = inner
                .executions
                .get_mut(&execution)
                .filter(|e| e.0 == deployment)
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidLifecycleEventHookExecutionIdException",
                    "unknown hook execution",
                );
            };
            if entry.2.is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "LifecycleEventAlreadyCompletedException",
                    format!("The lifecycle event hook execution {execution} is already completed"),
                );
            }
            if !matches!(status.as_str(), "Succeeded" | "Failed") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidLifecycleEventHookExecutionStatusException",
                    format!("invalid status {status}"),
                );
            }
            entry.2 = Some(status.clone());
            let (event, _) = (entry.1.clone(), ());
            inner.reports.push(HookReport {
                deployment_id: deployment.clone(),
                execution_id: execution.clone(),
                status: status.clone(),
            });
            if let Some(d) = inner.deployments.get_mut(&deployment) {
                if let Some(l) = d
                    .lifecycle
                    .iter_mut()
                    .find(|l| l.name == event && l.status == "InProgress")
                {
                    // The driver closes the event when it sees the report; without a driver, close it here.
                    if s.lifecycle.lock().unwrap().is_none() {
                        l.status = status.clone();
                        l.end = Some(now());
                    }
                }
            }
            drop(inner);
            s.reported.notify_waiters();
            ok(json!({"lifecycleEventHookExecutionId": execution}))
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            format!("the stand-in does not serve {other}"),
        ),
    }
}
