//! The whole pipeline on one machine: the three real function binaries behind Runtime API
//! hosts, moto for ECR, ECS, ELBv2, SSM, Secrets Manager and DynamoDB, a green web app per
//! service, and a Slack receiver. web1's service is deployed by CodeDeploy (the CodeDeploy
//! stand-in drives each deployment); web2's by ECS itself, native blue/green (the ECS stand-in
//! in front of moto drives each service deployment). Used by `greenlight-local` (the demo)
//! and by the end-to-end test.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ecs::types::DeploymentControllerType;
use serde_json::{json, Value};

use crate::codedeploy::{CodeDeployStandIn, GroupSpec, Lifecycle};
use crate::ecs_native::{EcsNativeStandIn, NativeLifecycle, NativeService, StandInRollout};
use crate::invoke_api::InvokeApi;
use crate::moto::{workspace_root, MotoServer};
use crate::receivers::{GreenApp, Health, SlackReceiver};
use crate::runtime::{FunctionHost, Invoked};
use crate::slack_api::SlackApiStandIn;
use crate::world::{
    create_green_task_set, push_event, seed_app_deployed_by, start_green_task, stop_green_task,
    Clients, SeededApp, CLUSTER, TABLE,
};

pub const HOOK_FUNCTION: &str = "CodeDeployHook_greenlight";
/// The app whose service ECS deploys itself (native blue/green); the other uses CodeDeploy.
pub const NATIVE_APP: &str = "web2";
/// The app whose service ECS deploys with a canary (CANARY: 20% for a minute, then 100%, a
/// minute's bake, watched by [`CANARY_ALARM`]); a minute of the stand-in lasts two seconds.
pub const CANARY_APP: &str = "web3";
pub const CANARY_ALARM: &str = "web3-5xx";

/// The apps that ask for approval before production traffic: web4 on CodeDeploy (its group
/// waits before rerouting), web5 on ECS (its service's pause hook at
/// PRE_PRODUCTION_TRAFFIC_SHIFT). Either engine rolls back after [`APPROVAL_WAIT`].
pub const APPROVAL_APPS: [&str; 2] = ["web4", "web5"];
pub const APPROVAL_WAIT: Duration = Duration::from_secs(8);
/// The one approver the config names, and the Slack app's signing secret.
pub const APPROVER: &str = "U0APPROVER";
pub const SIGNING_SECRET: &str = "local-signing-secret-0000";
const SIGNING_SECRET_NAME: &str = "greenlight/slack/signing";

/// Whether ECS deploys the app itself (native), rather than CodeDeploy.
pub fn is_native(app: &str) -> bool {
    app == NATIVE_APP || app == CANARY_APP || app == "web5"
}

/// How a native app's service shifts production traffic.
fn rollout_of(app: &str) -> StandInRollout {
    if app != CANARY_APP {
        return StandInRollout::default();
    }
    StandInRollout {
        strategy: "CANARY".into(),
        percent: 20.0,
        step_bake_minutes: 1,
        bake_minutes: 1,
        alarm: Some(CANARY_ALARM.into()),
        minute: Duration::from_secs(2),
    }
}
pub const DEPLOYER_FUNCTION: &str = "greenlight-deployer";
const CONFIG_PARAMETER: &str = "/greenlight/config";
const SLACK_SECRET: &str = "greenlight/slack";
/// The Slack app's bot token (web1 and web3 post as a Slack app; web2 to the webhook).
const SLACK_APP_SECRET: &str = "greenlight/slack/app-token";
const SLACK_APP_TOKEN: &str = "xoxb-local-0000-greenlight";
/// The channel the Slack app posts to.
pub const SLACK_CHANNEL: &str = "C0DEPLOYS";

/// Whether the app posts as a Slack app (one living message per release) rather than to the
/// webhook (a message per state).
pub fn uses_slack_app(app: &str) -> bool {
    app != NATIVE_APP
}

/// One line of the timeline: when, who, what.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Duration,
    pub actor: &'static str,
    pub text: String,
}

/// The timeline of what happened, printed live by the demo.
#[derive(Clone)]
pub struct Timeline {
    started: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
    printer: Arc<dyn Fn(&Entry) + Send + Sync>,
}

impl Timeline {
    pub fn new(printer: Arc<dyn Fn(&Entry) + Send + Sync>) -> Self {
        Self {
            started: Instant::now(),
            entries: Arc::default(),
            printer,
        }
    }

    pub fn log(&self, actor: &'static str, text: impl Into<String>) {
        let entry = Entry {
            at: self.started.elapsed(),
            actor,
            text: text.into(),
        };
        (self.printer)(&entry);
        self.entries.lock().unwrap().push(entry);
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }
}

/// A deployment of an app by either engine, as the scenario checks it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// CodeDeploy's deployment id, or the service deployment ARN.
    pub id: String,
    pub version: String,
    /// Succeeded, Failed, Stopped, or (still running) InProgress / CodeDeploy's word.
    pub status: String,
    /// Rolled back (a CodeDeploy rollback deployment, or a native ROLLBACK_* status).
    pub rolled_back: bool,
    /// The hook's verdicts: Succeeded or Failed (a native hook's IN_PROGRESS rounds aside).
    pub verdicts: Vec<String>,
    /// What the hook said last.
    pub hook_reason: String,
}

/// What the hook reported, per deployment, as the runtime host saw it.
#[derive(Debug, Clone)]
pub struct HookOutcome {
    pub deployment_id: String,
    pub status: String,
    pub reason: String,
}

pub struct Pipeline {
    moto: MotoServer,
    pub stand_in: CodeDeployStandIn,
    /// ECS's native blue/green, in front of moto.
    pub ecs: EcsNativeStandIn,
    pub clients: Clients,
    pub slack: SlackReceiver,
    /// The Slack app's workspace (web1 and web3 post there).
    pub slack_app: SlackApiStandIn,
    pub green: Vec<(String, GreenApp)>,
    pub apps: Vec<SeededApp>,
    pub timeline: Timeline,
    pub world: Arc<World>,
    invoke_api: InvokeApi,
}

/// Where Slack stood: posts to the webhook, and messages in the Slack app's channel.
#[derive(Debug, Clone, Copy)]
pub struct SlackMark {
    webhook: usize,
    channel: usize,
}

/// The part the stand-in calls back into.
pub struct World {
    me: std::sync::Weak<World>,
    pub clients: Clients,
    pub deployer: FunctionHost,
    pub hook: FunctionHost,
    pub notifier: FunctionHost,
    /// The approval endpoint, behind its function URL.
    pub approver: FunctionHost,
    pub apps: Vec<SeededApp>,
    pub timeline: Timeline,
    pub hook_outcomes: Mutex<Vec<HookOutcome>>,
    pub deployer_outcomes: Mutex<Vec<Value>>,
    /// Invocations still running (hooks are invoked asynchronously).
    pub busy: std::sync::atomic::AtomicUsize,
}

pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = std::env::var("GREENLIGHT_PROFILE").unwrap_or_else(|_| "debug".to_string());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: build the functions first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

fn config(apps: &[(String, String)]) -> String {
    let mut text = String::from(
        "[defaults]\nhooks = [\"AfterAllowTestTraffic\"]\n\n[slack]\nwebhook = \"secretsmanager:greenlight/slack\"\nmention_on_failure = \"<!here>\"\n",
    );
    for (app, url) in apps {
        // A native app names its service; a CodeDeploy one its deployment group. Neither says
        // which engine: the deployer reads it from the service.
        let deploys = if is_native(app) {
            format!("cluster = \"{CLUSTER}\"\nservice = \"{app}\"")
        } else {
            format!("application = \"{app}\"\ndeployment_group = \"{app}-bluegreen\"")
        };
        let mut slack = if uses_slack_app(app) {
            format!("[apps.{app}.slack]\ntoken = \"secretsmanager:{SLACK_APP_SECRET}\"\nchannel = \"{SLACK_CHANNEL}\"\n")
        } else {
            String::new()
        };
        if APPROVAL_APPS.contains(&app.as_str()) {
            slack.push_str(&format!(
                "[apps.{app}.approval]\nrequired = true\napprovers = [\"{APPROVER}\"]\ntimeout_minutes = 1\n"
            ));
        }
        text.push_str(&format!(
            "\n[apps.{app}]\nrepository = \"{app}\"\n{deploys}\n{slack}\
             [apps.{app}.health]\nurl = \"{url}\"\nsuccesses = 3\nfailures = 3\ninterval_ms = 200\ntimeout_ms = 1000\n"
        ));
    }
    text
}

fn short_td(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl Pipeline {
    /// Runs the operator's command (`greenlight`) against this world: the ledger and STS in
    /// moto, the deployer behind the local Invoke API. Its exit code, standard output and
    /// standard error.
    pub async fn greenlight(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::process::Command::new(binary("greenlight"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ENDPOINT_URL_LAMBDA", &self.invoke_api.endpoint)
            .env("AWS_REGION", crate::world::REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("GREENLIGHT_LEDGER_TABLE", TABLE)
            .env("GREENLIGHT_DEPLOYER_FUNCTION", DEPLOYER_FUNCTION)
            .output()
            .await
            .expect("run greenlight");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts everything and seeds the two-app monorepo (web1, web2).
    pub async fn start(timeline: Timeline) -> Self {
        timeline.log(
            "local",
            "starting moto server, the CodeDeploy and ECS stand-ins, Slack and the green apps",
        );
        let moto = MotoServer::start().await;
        let stand_in = CodeDeployStandIn::start(Duration::from_secs(60)).await;
        let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
        let slack = SlackReceiver::start().await;
        let slack_app = SlackApiStandIn::start(SLACK_APP_TOKEN, &[SLACK_CHANNEL]).await;
        clients.create_ledger_table().await;

        let mut apps = vec![];
        let mut green = vec![];
        for (i, name) in ["web1", "web2", "web3", "web4", "web5"].iter().enumerate() {
            let native = is_native(name);
            let controller = if native {
                DeploymentControllerType::Ecs
            } else {
                DeploymentControllerType::CodeDeploy
            };
            let app = seed_app_deployed_by(&clients, name, 80 + i as i32, controller).await;
            if native {
                let rollout = rollout_of(name);
                timeline.log("local", format!("seeded {name}: ECR repository, ECS service {CLUSTER}/{name} (ECS, {}, hook at POST_TEST_TRAFFIC_SHIFT{}), ALB with listeners :{} and :{} (test)", rollout.strategy, rollout.alarm.map(|a| format!(", alarm {a}")).unwrap_or_default(), 80 + i, 8080 + i));
            } else {
                let mut group = app.group.clone();
                if APPROVAL_APPS.contains(name) {
                    group.wait_before_reroute = Some(APPROVAL_WAIT);
                }
                stand_in.add_group(group, &app.task_definition);
                timeline.log("local", format!("seeded {name}: ECR repository, ECS service {CLUSTER}/{name} (CODE_DEPLOY), ALB with listeners :{} and :{} (test), deployment group {name}-bluegreen", 80 + i, 8080 + i));
            }
            green.push((name.to_string(), GreenApp::start().await));
            apps.push(app);
        }
        let urls: Vec<(String, String)> = green
            .iter()
            .map(|(n, g)| (n.clone(), g.url.clone()))
            .collect();
        clients
            .ssm
            .put_parameter()
            .name(CONFIG_PARAMETER)
            .value(config(&urls))
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .expect("config parameter");
        clients
            .secrets
            .create_secret()
            .name(SLACK_SECRET)
            .secret_string(&slack.url)
            .send()
            .await
            .expect("Slack secret");
        clients
            .secrets
            .create_secret()
            .name(SLACK_APP_SECRET)
            .secret_string(SLACK_APP_TOKEN)
            .send()
            .await
            .expect("Slack app token");
        clients
            .secrets
            .create_secret()
            .name(SIGNING_SECRET_NAME)
            .secret_string(SIGNING_SECRET)
            .send()
            .await
            .expect("Slack signing secret");

        let response_base = slack_app.response_base();
        let moto_ecs = crate::faults::FaultProxy::moto_ecs(&moto.endpoint).await;
        let ecs = EcsNativeStandIn::start(&moto_ecs.endpoint).await;
        let env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_ECS", ecs.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_CODEDEPLOY", stand_in.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("GREENLIGHT_CONFIG", "ssm:/greenlight/config"),
            ("GREENLIGHT_LEDGER_TABLE", TABLE),
            ("GREENLIGHT_HOOK_FUNCTION", HOOK_FUNCTION),
            (
                "GREENLIGHT_SLACK_WEBHOOK",
                "secretsmanager:greenlight/slack",
            ),
            ("GREENLIGHT_HOOK_SAFETY_MARGIN_MS", "2000"),
            ("GREENLIGHT_SLACK_API_URL", slack_app.base.as_str()),
            (
                "GREENLIGHT_SLACK_SIGNING_SECRET",
                "secretsmanager:greenlight/slack/signing",
            ),
            ("GREENLIGHT_SLACK_RESPONSE_BASE", response_base.as_str()),
            ("RUST_LOG", "info"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let logs = workspace_root().join("target/greenlight-logs");
        std::fs::create_dir_all(&logs).ok();
        let host = |name: &'static str, bin: &'static str, timeout: u64| {
            let env = env.clone();
            let log = logs.join(format!("{bin}.log"));
            async move {
                FunctionHost::start(name, &binary(bin), &env, Duration::from_secs(timeout), &log)
                    .await
            }
        };
        let deployer = host(DEPLOYER_FUNCTION, "greenlight-deployer", 30).await;
        let hook = host(HOOK_FUNCTION, "greenlight-health-hook", 30).await;
        let notifier = host("greenlight-notifier", "greenlight-notifier", 30).await;
        let approver = host("greenlight-approver", "greenlight-approver", 10).await;
        let world = Arc::new_cyclic(|me| World {
            me: me.clone(),
            deployer,
            hook,
            notifier,
            approver,
            clients: clients.clone(),
            apps: apps.clone(),
            timeline: timeline.clone(),
            hook_outcomes: Mutex::default(),
            deployer_outcomes: Mutex::default(),
            busy: Default::default(),
        });
        stand_in.attach(world.clone());
        for native in world.apps.iter().filter(|a| is_native(&a.name)) {
            ecs.drive(
                NativeService {
                    cluster: CLUSTER.into(),
                    service: native.name.clone(),
                    green_target_group: native.green_target_group.clone(),
                    test_listener_rule: native.test_rule.clone(),
                    hook_function: HOOK_FUNCTION.into(),
                    hook_stages: vec!["POST_TEST_TRAFFIC_SHIFT".into()],
                    rollout: rollout_of(&native.name),
                    pause: APPROVAL_APPS.contains(&native.name.as_str()).then(|| {
                        crate::ecs_native::PauseHook {
                            timeout: APPROVAL_WAIT,
                            timeout_action: "ROLLBACK".into(),
                        }
                    }),
                },
                world.clone(),
            );
        }
        // Lambda's mapping of the ledger's stream to the notifier: the hook's verdicts.
        let streamed = world.clone();
        crate::ledger_stream::follow(
            &moto.endpoint,
            TABLE,
            Arc::new(move |batch| {
                let world = streamed.clone();
                Box::pin(async move { world.deliver_verdicts(batch).await })
            }),
        )
        .await;
        let invoked = world.clone();
        let invoke_api = InvokeApi::start(
            DEPLOYER_FUNCTION,
            Arc::new(move |payload| {
                let world = invoked.clone();
                Box::pin(async move { world.invoke_deployer(payload).await })
            }),
        )
        .await;
        timeline.log("local", "functions running behind local Lambda Runtime API hosts: greenlight-deployer (also behind a local Lambda Invoke API, for the greenlight command), CodeDeployHook_greenlight, greenlight-notifier, greenlight-approver (behind its function URL, for Slack's buttons)");
        Self {
            moto,
            stand_in,
            ecs,
            clients,
            slack,
            slack_app,
            green,
            apps,
            timeline,
            world,
            invoke_api,
        }
    }

    pub fn green_app(&self, app: &str) -> &GreenApp {
        &self
            .green
            .iter()
            .find(|(n, _)| n == app)
            .expect("known app")
            .1
    }

    /// `docker push app:version` and `app:latest`: ECR's two events reach the deployer.
    pub async fn push(&self, app: &str, version: &str, health: Health) -> String {
        self.green_app(app).set(health);
        let digest = self
            .clients
            .push_image(app, version, &format!("{app}-{version}"))
            .await;
        self.clients
            .push_image(app, "latest", &format!("{app}-{version}"))
            .await;
        self.timeline.log(
            "ecr",
            format!(
                "pushed {app}:{version} and {app}:latest ({})",
                &digest[..19]
            ),
        );
        let now = chrono::Utc::now();
        for tag in [version, "latest"] {
            self.world
                .deliver_to_deployer(push_event(app, tag, &digest, now))
                .await;
        }
        digest
    }

    /// Greenlight's deployments of an app by either engine, oldest first (CodeDeploy's own
    /// rollback deployments are not the app's: they show as `rolled_back` on the one undone).
    pub async fn deployments_of(&self, app: &str) -> Vec<Observed> {
        if !is_native(app) {
            let reports = self.stand_in.reports();
            let outcomes = self.world.hook_outcomes.lock().unwrap().clone();
            return self
                .stand_in
                .deployments()
                .into_iter()
                .filter(|d| d.application == app && d.creator != "codeDeployRollback")
                .map(|d| Observed {
                    version: d
                        .description
                        .as_deref()
                        .and_then(greenlight_shared::appspec::ReleaseDescription::parse)
                        .map(|r| r.version)
                        .unwrap_or_default(),
                    status: d.status.clone(),
                    rolled_back: d.rollback_deployment_id.is_some(),
                    verdicts: reports
                        .iter()
                        .filter(|r| r.deployment_id == d.id)
                        .map(|r| r.status.clone())
                        .collect(),
                    hook_reason: outcomes
                        .iter()
                        .rfind(|o| o.deployment_id == d.id)
                        .map(|o| o.reason.clone())
                        .unwrap_or_default(),
                    id: d.id,
                })
                .collect();
        }
        let answers = self.ecs.hook_answers();
        let mut observed = vec![];
        for d in self
            .ecs
            .deployments()
            .into_iter()
            .filter(|d| d.service == app)
        {
            let version = self
                .clients
                .task_definition_tag(&d.task_definition, "greenlight:version")
                .await;
            let mine: Vec<_> = answers.iter().filter(|a| a.deployment == d.arn).collect();
            observed.push(Observed {
                id: d.arn.clone(),
                version: version.unwrap_or_default(),
                status: match d.status.as_str() {
                    "SUCCESSFUL" => "Succeeded",
                    "STOPPED" => "Stopped",
                    s if s.starts_with("ROLLBACK_") => "Failed",
                    _ => "InProgress",
                }
                .to_string(),
                rolled_back: d.status.starts_with("ROLLBACK_"),
                verdicts: mine
                    .iter()
                    .filter(|a| a.status != "IN_PROGRESS")
                    .map(|a| match a.status.as_str() {
                        "SUCCEEDED" => "Succeeded".to_string(),
                        "FAILED" => "Failed".to_string(),
                        other => other.to_string(),
                    })
                    .collect(),
                hook_reason: mine.last().map(|a| a.reason.clone()).unwrap_or_default(),
            });
        }
        observed
    }

    /// Where Slack stands now, to read what is said after.
    pub fn slack_mark(&self) -> SlackMark {
        SlackMark {
            webhook: self.slack.messages().len(),
            channel: self.slack_app.channel(SLACK_CHANNEL).len(),
        }
    }

    /// The headline of each webhook post since `mark`, then the text of each Slack app message
    /// posted since, as it reads now (edited to its release's furthest state).
    pub fn slack_headlines(&self, mark: SlackMark) -> Vec<String> {
        let mut said = self.slack.headlines()[mark.webhook..].to_vec();
        said.extend(
            self.slack_app.channel(SLACK_CHANNEL)[mark.channel..]
                .iter()
                .map(|m| m.text.clone()),
        );
        said
    }

    /// A person clicks a button of the message about `subject` (`web4 v4.0.0`), as Slack sends
    /// it to the Interactivity URL, signed with `secret`; the function URL's HTTP status
    /// (`None` when no message has that button).
    pub async fn click(
        &self,
        subject: &str,
        action: &str,
        user: &str,
        secret: &str,
    ) -> Option<u16> {
        let click = self
            .slack_app
            .click(SLACK_CHANNEL, subject, action, user, secret)?;
        self.deliver_click(click, &format!("{user} clicked {action} on {subject}"))
            .await
    }

    /// Delivers a click (made by [`SlackApiStandIn::click`], perhaps a while ago) to the
    /// approver's function URL; its HTTP status.
    pub async fn deliver_click(
        &self,
        (headers, body): (Vec<(String, String)>, String),
        what: &str,
    ) -> Option<u16> {
        let headers: serde_json::Map<String, Value> = headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        // A function URL's event (payload format 2.0).
        let event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": headers,
            "requestContext": {"http": {"method": "POST", "path": "/", "sourceIp": "127.0.0.1"}},
            "body": body, "isBase64Encoded": false,
        });
        let answer = self.world.approver.invoke(event).await;
        let status = match &answer {
            crate::runtime::Invoked::Response(r) => r["statusCode"].as_u64().map(|s| s as u16),
            _ => None,
        };
        self.timeline.log(
            "slack",
            format!(
                "{what}: HTTP {}",
                status.map_or("-".into(), |s| s.to_string())
            ),
        );
        status
    }

    /// The Slack app messages posted since `mark`, as they read now.
    pub fn slack_messages(&self, mark: SlackMark) -> Vec<crate::slack_api::ChannelMessage> {
        self.slack_app.channel(SLACK_CHANNEL)[mark.channel..].to_vec()
    }

    /// The replies in the threads of the Slack app messages posted since `mark`.
    pub fn slack_replies(&self, mark: SlackMark) -> Vec<String> {
        self.slack_app.channel(SLACK_CHANNEL)[mark.channel..]
            .iter()
            .flat_map(|m| m.replies.iter().map(|(r, _)| r.clone()))
            .collect()
    }

    /// Each webhook post and each Slack app message since `mark`, as JSON text.
    pub fn slack_bodies(&self, mark: SlackMark) -> Vec<String> {
        let mut bodies: Vec<String> = self.slack.messages()[mark.webhook..]
            .iter()
            .map(|m| m.to_string())
            .collect();
        bodies.extend(
            self.slack_app.channel(SLACK_CHANNEL)[mark.channel..]
                .iter()
                .map(|m| json!({"text": m.text, "attachments": m.attachments}).to_string()),
        );
        bodies
    }

    /// Waits until no deployment is active and no invocation is running (or the timeout).
    pub async fn settle(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        while started.elapsed() < timeout {
            let active = self
                .stand_in
                .deployments()
                .iter()
                .any(|d| matches!(d.status.as_str(), "Created" | "InProgress" | "Ready"))
                || self.ecs.active();
            let busy = self.world.busy.load(std::sync::atomic::Ordering::SeqCst) > 0;
            if active || busy {
                quiet_since = None;
            } else if quiet_since.get_or_insert_with(Instant::now).elapsed()
                > Duration::from_millis(500)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Busy<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl World {
    fn app(&self, group: &GroupSpec) -> &SeededApp {
        self.apps
            .iter()
            .find(|a| a.group.group == group.group)
            .expect("seeded app")
    }

    pub async fn deliver_to_deployer(&self, event: Value) {
        self.invoke_deployer(event).await;
    }

    /// One invocation of the deployer, logged to the timeline.
    async fn invoke_deployer(&self, event: Value) -> Invoked {
        let _busy = Busy::new(&self.busy);
        let answer = self.deployer.invoke(event).await;
        let text = match &answer {
            Invoked::Response(v) => describe_deployer(v),
            Invoked::Error(e) => format!(
                "FAILED ({}): {}",
                e["errorType"].as_str().unwrap_or_default(),
                e["errorMessage"].as_str().unwrap_or_default()
            ),
        };
        self.timeline.log("deployer", text);
        if let Invoked::Response(v) = &answer {
            self.deployer_outcomes.lock().unwrap().push(v.clone());
        }
        answer
    }
}

fn describe_deployer(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    match v["outcome"].as_str().unwrap_or_default() {
        "skipped" => format!("skipped: {}", s("reason")),
        "deployed" => format!(
            "{} {}: registered {} and started deployment {}",
            s("app"),
            s("version"),
            short_td(&s("task_definition")),
            s("deployment_id")
        ),
        "waiting" => match v["replaced"].as_str() {
            Some(old) => format!(
                "{} {}: busy, waits (replaces the older pending {})",
                s("app"),
                s("version"),
                &old[..19.min(old.len())]
            ),
            None => format!(
                "{} {}: busy, waits for the running deployment",
                s("app"),
                s("version")
            ),
        },
        "superseded" => format!(
            "{} {}: superseded by a newer pending release",
            s("app"),
            s("version")
        ),
        "duplicate" => format!(
            "{} {}: already handled ({}), nothing to do",
            s("app"),
            s("version"),
            s("status")
        ),
        "already_running" => format!(
            "{} {}: the service already runs this image",
            s("app"),
            s("version")
        ),
        "in_progress_elsewhere" => {
            format!("{} {}: another invocation is on it", s("app"), s("version"))
        }
        "requested" => format!(
            "operator request {}: {}",
            &s("request_id")[..8.min(s("request_id").len())],
            describe_deployer(&v["result"])
        ),
        "planned" => format!(
            "{} {}: planned ({} change(s)), nothing written",
            s("app"),
            s("version"),
            v["changes"].as_array().map(Vec::len).unwrap_or_default()
        ),
        "finished" => match v.get("next").filter(|n| !n.is_null()) {
            Some(next) => format!(
                "deployment {} ended; next: {}",
                s("deployment_id"),
                describe_deployer(next)
            ),
            None => format!("deployment {} ended; nothing waiting", s("deployment_id")),
        },
        other => format!("{other}: {v}"),
    }
}

#[async_trait]
impl Lifecycle for World {
    async fn create_green(
        &self,
        group: &GroupSpec,
        task_definition: &str,
        container: &str,
        port: i64,
    ) -> Result<String, String> {
        let id = create_green_task_set(
            &self.clients,
            self.app(group),
            task_definition,
            container,
            port as i32,
        )
        .await?;
        self.timeline.log(
            "codedeploy",
            format!(
                "{}: green task set {id} started with {}, test listener routed to it",
                group.application,
                short_td(task_definition)
            ),
        );
        Ok(id)
    }

    async fn promote_green(
        &self,
        group: &GroupSpec,
        green: &str,
        task_definition: &str,
    ) -> Result<(), String> {
        let app = self.app(group);
        self.clients
            .ecs
            .update_service()
            .cluster(&group.cluster)
            .service(&group.service)
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| format!("UpdateService: {e:?}"))?;
        self.discard(app, group, green).await;
        self.timeline.log(
            "codedeploy",
            format!(
                "{}: production traffic shifted to green ({}), blue retired",
                group.application,
                short_td(task_definition)
            ),
        );
        Ok(())
    }

    async fn discard_green(&self, group: &GroupSpec, green: &str) {
        let app = self.app(group);
        self.discard(app, group, green).await;
        self.timeline.log(
            "codedeploy",
            format!(
                "{}: green task set removed, blue keeps production traffic",
                group.application
            ),
        );
    }

    async fn invoke_hook(&self, function: &str, payload: Value) {
        let Some(world) = self.me.upgrade() else {
            return;
        };
        let function = function.to_string();
        // Asynchronous, as CodeDeploy invokes hooks; the deployment stays active meanwhile, so
        // `settle` cannot end before the hook has answered.
        tokio::spawn(async move {
            let answer = {
                let _busy = Busy::new(&world.busy);
                world.hook.invoke(payload).await
            };
            match answer {
                Invoked::Response(v) => {
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    world.timeline.log(
                        "health-hook",
                        format!(
                            "{} {} {}: {} ({})",
                            s("app"),
                            s("version"),
                            s("lifecycle_event"),
                            s("status"),
                            s("reason")
                        ),
                    );
                    world.hook_outcomes.lock().unwrap().push(HookOutcome {
                        deployment_id: s("deployment_id"),
                        status: s("status"),
                        reason: s("reason"),
                    });
                }
                Invoked::Error(e) => world
                    .timeline
                    .log("health-hook", format!("{function} FAILED: {e}")),
            }
        });
    }

    async fn publish(&self, event: Value) {
        let _busy = Busy::new(&self.busy);
        let state = event["detail"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let id = event["detail"]["deploymentId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.timeline.log(
            "codedeploy",
            format!(
                "{} deployment {id}: {state}",
                event["detail"]["application"].as_str().unwrap_or_default()
            ),
        );
        match self.notifier.invoke(event.clone()).await {
            Invoked::Response(v) => self.timeline.log(
                "notifier",
                format!(
                    "slack: {}",
                    v["headline"].as_str().unwrap_or(&v.to_string())
                ),
            ),
            Invoked::Error(e) => self.timeline.log(
                "notifier",
                format!("FAILED: {}", e["errorMessage"].as_str().unwrap_or_default()),
            ),
        }
        if matches!(state.as_str(), "SUCCESS" | "FAILURE" | "STOP") {
            self.deliver_to_deployer(event).await;
        }
    }
}

impl World {
    /// A batch of the ledger's stream (the hook's verdicts) to the notifier; whether it took it.
    async fn deliver_verdicts(&self, batch: Value) -> bool {
        let _busy = Busy::new(&self.busy);
        let said: Vec<String> = batch["Records"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let image = &r["dynamodb"]["NewImage"];
                let s = |k: &str| image[k]["S"].as_str().unwrap_or_default().to_string();
                match image["hook_round"]["S"].as_str() {
                    Some(found) => format!(
                        "round {} at {} of {} {}: {found}",
                        image["hook_round_n"]["N"].as_str().unwrap_or_default(),
                        s("hook_round_stage"),
                        s("app"),
                        s("release_version"),
                    ),
                    None => format!(
                        "verdict at {} of {} {}: {}",
                        s("hook_event"),
                        s("app"),
                        s("release_version"),
                        if image["hook_passed"]["BOOL"] == true {
                            "passed"
                        } else {
                            "failed"
                        }
                    ),
                }
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        match self.notifier.invoke(batch).await {
            Invoked::Response(v) => {
                if v["outcome"] == "posted" {
                    self.timeline.log(
                        "notifier",
                        format!(
                            "ledger stream: the hook's {} reached the release's message",
                            said.join(", ")
                        ),
                    );
                }
                true
            }
            Invoked::Error(e) => {
                self.timeline.log(
                    "notifier",
                    format!("FAILED: {}", e["errorMessage"].as_str().unwrap_or_default()),
                );
                false
            }
        }
    }

    async fn discard(&self, app: &SeededApp, group: &GroupSpec, green: &str) {
        let _ = self
            .clients
            .ecs
            .delete_task_set()
            .cluster(&group.cluster)
            .service(&group.service)
            .task_set(green)
            .force(true)
            .send()
            .await;
        stop_green_task(&self.clients, &app.green_target_group).await;
    }
}

#[async_trait]
impl NativeLifecycle for World {
    async fn start_green(
        &self,
        service: &NativeService,
        task_definition: &str,
    ) -> Result<(), String> {
        start_green_task(&self.clients, &service.green_target_group).await?;
        self.timeline.log(
            "ecs",
            format!(
                "{}: green revision started with {}, test traffic routed to it",
                service.service,
                short_td(task_definition)
            ),
        );
        Ok(())
    }

    async fn promote_green(
        &self,
        service: &NativeService,
        task_definition: &str,
    ) -> Result<(), String> {
        self.clients
            .ecs
            .update_service()
            .cluster(&service.cluster)
            .service(&service.service)
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| format!("UpdateService: {e:?}"))?;
        stop_green_task(&self.clients, &service.green_target_group).await;
        self.timeline.log(
            "ecs",
            format!(
                "{}: production traffic shifted to green ({}), blue retired",
                service.service,
                short_td(task_definition)
            ),
        );
        Ok(())
    }

    async fn traffic(&self, service: &NativeService, weight: f64, bake_minutes: i32) {
        let minute = service.rollout.minute.as_secs_f64();
        self.timeline.log(
            "ecs",
            format!(
                "{}: {weight}% of production traffic on green ({}), baking {bake_minutes} min ({} s here)",
                service.service,
                service.rollout.strategy.to_lowercase(),
                minute * f64::from(bake_minutes)
            ),
        );
    }

    async fn discard_green(&self, service: &NativeService) {
        stop_green_task(&self.clients, &service.green_target_group).await;
        self.timeline.log(
            "ecs",
            format!(
                "{}: rolled back: green removed, blue keeps production traffic",
                service.service
            ),
        );
    }

    async fn invoke_hook(&self, function: &str, payload: Value) -> Result<Value, String> {
        let answer = {
            let _busy = Busy::new(&self.busy);
            self.hook.invoke(payload.clone()).await
        };
        let stage = payload["lifecycleStage"].as_str().unwrap_or_default();
        match answer {
            Invoked::Response(v) => {
                let progress = &v["hookDetails"]["greenlight"];
                self.timeline.log(
                    "health-hook",
                    format!(
                        "{} {} {stage} round {}: {} ({})",
                        progress["app"].as_str().unwrap_or_default(),
                        progress["version"].as_str().unwrap_or_default(),
                        progress["rounds"],
                        v["hookStatus"].as_str().unwrap_or_default(),
                        progress["last"].as_str().unwrap_or_default(),
                    ),
                );
                Ok(v)
            }
            Invoked::Error(e) => {
                self.timeline
                    .log("health-hook", format!("{function} FAILED: {e}"));
                Err(e["errorMessage"]
                    .as_str()
                    .unwrap_or("the hook failed")
                    .to_string())
            }
        }
    }

    async fn publish(&self, event: Value) {
        let _busy = Busy::new(&self.busy);
        let detail = &event["detail"];
        self.timeline.log(
            "ecs",
            format!(
                "{} {}: {}",
                event["resources"][0]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default(),
                detail["eventName"].as_str().unwrap_or_default(),
                detail["reason"].as_str().unwrap_or_default()
            ),
        );
        match self.notifier.invoke(event.clone()).await {
            Invoked::Response(v) => self.timeline.log(
                "notifier",
                match v["outcome"].as_str() {
                    Some("posted") => {
                        format!("slack: {}", v["headline"].as_str().unwrap_or_default())
                    }
                    _ => format!(
                        "nothing posted: {}",
                        v["reason"].as_str().unwrap_or_default()
                    ),
                },
            ),
            Invoked::Error(e) => self.timeline.log(
                "notifier",
                format!("FAILED: {}", e["errorMessage"].as_str().unwrap_or_default()),
            ),
        }
        self.deliver_to_deployer(event).await;
    }
}
