//! The AWS side of the local world: SDK clients pointed at moto and the CodeDeploy stand-in,
//! and the seeding of a monorepo's apps (ECR repository, ECS service with the CODE_DEPLOY
//! controller, load balancer with production and test listeners, two target groups),
//! the release ledger's table, the config parameter and the Slack secret.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, Compatibility, ContainerDefinition, DeploymentController,
    DeploymentControllerType, KeyValuePair, LaunchType, LoadBalancer, NetworkConfiguration,
    NetworkMode, PortMapping, Secret, TransportProtocol,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ProtocolEnum, RuleCondition, TargetTypeEnum,
};
use serde_json::{json, Value};

use crate::codedeploy::GroupSpec;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const CLUSTER: &str = "apps";
pub const TABLE: &str = "greenlight-releases";

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    sdk_config_retrying(endpoint, aws_config::retry::RetryConfig::standard()).await
}

/// An SDK config on `endpoint` with its own retry settings.
pub async fn sdk_config_retrying(
    endpoint: &str,
    retry: aws_config::retry::RetryConfig,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "greenlight-tests",
        ))
        .retry_config(retry)
        .http_client(greenlight_shared::aws::http_client())
        .load()
        .await
}

/// SDK clients on moto (and CodeDeploy on the stand-in).
#[derive(Clone)]
pub struct Clients {
    pub moto: SdkConfig,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    moto_endpoint: String,
}

impl Clients {
    pub async fn new(moto_endpoint: &str, codedeploy_endpoint: &str) -> Self {
        let moto = sdk_config(moto_endpoint).await;
        let cd = sdk_config(codedeploy_endpoint).await;
        Self {
            ecr: aws_sdk_ecr::Client::new(&moto),
            ecs: aws_sdk_ecs::Client::new(&moto),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&moto),
            dynamodb: aws_sdk_dynamodb::Client::new(&moto),
            ssm: aws_sdk_ssm::Client::new(&moto),
            secrets: aws_sdk_secretsmanager::Client::new(&moto),
            codedeploy: aws_sdk_codedeploy::Client::new(&cd),
            moto,
            moto_endpoint: moto_endpoint.to_string(),
        }
    }

    /// One EC2 query-protocol call to moto (the tests need two reads; not worth the SDK crate).
    async fn ec2(&self, action: &str, tag: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .post(format!("{}/", self.moto_endpoint))
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
            .form(&[("Action", action), ("Version", "2016-11-15")])
            .send()
            .await
            .expect("EC2 call")
            .text()
            .await
            .expect("EC2 answer");
        body.split(&format!("<{tag}>"))
            .skip(1)
            .filter_map(|s| s.split(&format!("</{tag}>")).next())
            .map(str::to_string)
            .collect()
    }

    /// The default VPC, two of its subnets and a security group (moto creates them).
    pub async fn default_network(&self) -> (String, Vec<String>, String) {
        let vpc = self
            .ec2("DescribeSubnets", "vpcId")
            .await
            .into_iter()
            .next()
            .expect("a default VPC");
        let mut subnets = self.ec2("DescribeSubnets", "subnetId").await;
        subnets.truncate(2);
        let group = self
            .ec2("DescribeSecurityGroups", "groupId")
            .await
            .into_iter()
            .next()
            .expect("a default security group");
        (vpc, subnets, group)
    }

    pub async fn create_ledger_table(&self) {
        self.create_table(TABLE).await
    }

    /// A table shaped like the stack's release ledger.
    pub async fn create_table(&self, name: &str) {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        self.dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()
                    .unwrap(),
            )
            // As the stack's: the verdicts reach the notifier through the stream.
            .stream_specification(
                aws_sdk_dynamodb::types::StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewImage)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("create ledger table");
    }

    /// Pushes an image with `tag` (content unique to `build`); returns its digest as ECR reports it.
    /// The manifest carries the provenance annotations the release workflow writes (a commit
    /// derived from `build`, the run, the actor `octocat`).
    pub async fn push_image(&self, repository: &str, tag: &str, build: &str) -> String {
        let layer = format!("sha256:{:0>64}", hex_of(build));
        // A commit per build: its hex backwards, so that builds with a common prefix differ.
        let backwards: String = hex_of(build).chars().rev().collect();
        let revision: String = format!("{backwards:0<40}").chars().take(40).collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1024, "digest": format!("sha256:{:0>64}", hex_of(&format!("config-{build}")))},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 4096, "digest": layer}],
            "annotations": {
                "org.opencontainers.image.revision": revision,
                "org.opencontainers.image.source": "https://github.com/acme/monorepo",
                "dev.greenlight.run-url": format!("https://github.com/acme/monorepo/actions/runs/{}/attempts/1", build.len()),
                "dev.greenlight.actor": "octocat",
            },
        });
        let out = self
            .ecr
            .put_image()
            .repository_name(repository)
            .image_manifest(manifest.to_string())
            .image_tag(tag)
            .send()
            .await
            .expect("ECR PutImage");
        out.image
            .and_then(|i| i.image_id)
            .and_then(|id| id.image_digest)
            .expect("pushed digest")
    }

    /// The image the service's current task definition runs in its first container.
    pub async fn service_image(&self, service: &str) -> (String, String) {
        let svc = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(service)
            .send()
            .await
            .expect("DescribeServices");
        let td_arn = svc.services()[0]
            .task_definition()
            .expect("service task definition")
            .to_string();
        let td = self
            .ecs
            .describe_task_definition()
            .task_definition(&td_arn)
            .send()
            .await
            .expect("DescribeTaskDefinition");
        let image = td
            .task_definition()
            .and_then(|t| t.container_definitions().first())
            .and_then(|c| c.image())
            .unwrap_or_default()
            .to_string();
        (td_arn, image)
    }

    /// ARNs of every revision of a task-definition family.
    /// One tag of a task definition, as moto keeps it.
    pub async fn task_definition_tag(&self, arn: &str, key: &str) -> Option<String> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .ok()?;
        greenlight_shared::task_definition::tag_value(out.tags(), key)
    }

    pub async fn revisions(&self, family: &str) -> Vec<String> {
        self.ecs
            .list_task_definitions()
            .family_prefix(family)
            .send()
            .await
            .expect("ListTaskDefinitions")
            .task_definition_arns()
            .to_vec()
    }
}

fn hex_of(text: &str) -> String {
    text.bytes()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(64)
        .collect()
}

/// One seeded app of the monorepo.
#[derive(Debug, Clone)]
pub struct SeededApp {
    pub name: String,
    pub group: GroupSpec,
    pub task_definition: String,
    pub blue_target_group: String,
    pub green_target_group: String,
    /// The test listener's rule that forwards to green (what a native service names).
    pub test_rule: String,
    pub subnets: Vec<String>,
    pub security_group: String,
}

/// Creates everything one app needs, as a real account would have it before Greenlight: its
/// service deployed by CodeDeploy.
pub async fn seed_app(c: &Clients, name: &str, listener_port: i32) -> SeededApp {
    seed_app_deployed_by(c, name, listener_port, DeploymentControllerType::CodeDeploy).await
}

/// The same, with the service's deployment controller `controller` (`Ecs` for a native
/// blue/green service: moto keeps the controller, the ECS stand-in adds the strategy).
pub async fn seed_app_deployed_by(
    c: &Clients,
    name: &str,
    listener_port: i32,
    controller: DeploymentControllerType,
) -> SeededApp {
    let (vpc, subnets, security_group) = c.default_network().await;
    c.ecr
        .create_repository()
        .repository_name(name)
        .send()
        .await
        .expect("create repository");
    let _ = c.ecs.create_cluster().cluster_name(CLUSTER).send().await;
    let bootstrap = c
        .push_image(name, "v0.0.1", &format!("{name}-v0.0.1"))
        .await;
    let registry = greenlight_shared::events::registry_host(ACCOUNT, REGION);
    let td = c
        .ecs
        .register_task_definition()
        .family(name)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .execution_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"))
        .task_role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{name}-task"))
        .container_definitions(
            ContainerDefinition::builder()
                .name(name)
                .image(format!("{registry}/{name}@{bootstrap}"))
                .essential(true)
                .memory_reservation(256)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(3000)
                        .host_port(3000)
                        .protocol(TransportProtocol::Tcp)
                        .build(),
                )
                .environment(
                    KeyValuePair::builder()
                        .name("NODE_ENV")
                        .value("production")
                        .build(),
                )
                .secrets(
                    Secret::builder()
                        .name("DATABASE_URL")
                        .value_from(format!(
                            "arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}/database-url"
                        ))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .expect("register task definition");
    let td_arn = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("task definition ARN")
        .to_string();

    let target_group = |color: &str| {
        let elb = c.elb.clone();
        let vpc = vpc.clone();
        let name = format!("{name}-{color}");
        async move {
            elb.create_target_group()
                .name(&name)
                .protocol(ProtocolEnum::Http)
                .port(3000)
                .vpc_id(vpc)
                .target_type(TargetTypeEnum::Ip)
                .health_check_path("/api/health")
                .send()
                .await
                .expect("create target group")
                .target_groups()[0]
                .target_group_arn()
                .expect("target group ARN")
                .to_string()
        }
    };
    let blue = target_group("blue").await;
    let green = target_group("green").await;
    let lb = c
        .elb
        .create_load_balancer()
        .name(format!("{name}-alb"))
        .set_subnets(Some(subnets.clone()))
        .send()
        .await
        .expect("create load balancer");
    let lb_arn = lb.load_balancers()[0]
        .load_balancer_arn()
        .expect("load balancer ARN")
        .to_string();
    let listener = |port: i32, tg: String| {
        let elb = c.elb.clone();
        let lb_arn = lb_arn.clone();
        async move {
            elb.create_listener()
                .load_balancer_arn(lb_arn)
                .protocol(ProtocolEnum::Http)
                .port(port)
                .default_actions(
                    Action::builder()
                        .r#type(ActionTypeEnum::Forward)
                        .target_group_arn(tg)
                        .build(),
                )
                .send()
                .await
                .expect("create listener")
                .listeners()[0]
                .listener_arn()
                .expect("listener ARN")
                .to_string()
        }
    };
    let prod = listener(listener_port, blue.clone()).await;
    let test = listener(listener_port + 8000, green.clone()).await;
    // The test listener's rule for green, as a native blue/green service names one.
    let test_rule = c
        .elb
        .create_rule()
        .listener_arn(&test)
        .priority(1)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/*")
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&green)
                .build(),
        )
        .send()
        .await
        .expect("create the test listener rule")
        .rules()[0]
        .rule_arn()
        .expect("rule ARN")
        .to_string();

    c.ecs
        .create_service()
        .cluster(CLUSTER)
        .service_name(name)
        .task_definition(&td_arn)
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .deployment_controller(
            DeploymentController::builder()
                .r#type(controller)
                .build()
                .unwrap(),
        )
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&blue)
                .container_name(name)
                .container_port(3000)
                .build(),
        )
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(subnets.clone()))
                        .security_groups(&security_group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create service");

    SeededApp {
        name: name.to_string(),
        group: GroupSpec {
            application: name.to_string(),
            group: format!("{name}-bluegreen"),
            cluster: CLUSTER.to_string(),
            service: name.to_string(),
            target_groups: (format!("{name}-blue"), format!("{name}-green")),
            prod_listener: prod,
            test_listener: test,
            wait_before_reroute: None,
        },
        task_definition: td_arn,
        blue_target_group: blue,
        green_target_group: green,
        test_rule,
        subnets,
        security_group,
    }
}

/// Creates a green task set for `task_definition` in the app's service and registers its task
/// in the green target group, as CodeDeploy's Install step would; returns the task set id.
pub async fn create_green_task_set(
    c: &Clients,
    app: &SeededApp,
    task_definition: &str,
    container: &str,
    port: i32,
) -> Result<String, String> {
    let network = AwsVpcConfiguration::builder()
        .set_subnets(Some(app.subnets.clone()))
        .security_groups(&app.security_group)
        .build()
        .map_err(|e| e.to_string())?;
    let set = c
        .ecs
        .create_task_set()
        .cluster(&app.group.cluster)
        .service(&app.group.service)
        .task_definition(task_definition)
        .launch_type(LaunchType::Fargate)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(&app.green_target_group)
                .container_name(container)
                .container_port(port)
                .build(),
        )
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(network)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("CreateTaskSet: {e:?}"))?;
    let id = set
        .task_set()
        .and_then(|t| t.id())
        .unwrap_or_default()
        .to_string();
    start_green_task(c, &app.green_target_group).await?;
    Ok(id)
}

/// The address the green task registers in its target group.
pub const GREEN_TASK_IP: &str = "10.0.1.10";

/// Green's task registers in the green target group (where the hook reads its health).
pub async fn start_green_task(c: &Clients, green_target_group: &str) -> Result<(), String> {
    c.elb
        .register_targets()
        .target_group_arn(green_target_group)
        .targets(green_task())
        .send()
        .await
        .map_err(|e| format!("RegisterTargets: {e:?}"))?;
    Ok(())
}

/// Green's task leaves the green target group (promoted or rolled back).
pub async fn stop_green_task(c: &Clients, green_target_group: &str) {
    let _ = c
        .elb
        .deregister_targets()
        .target_group_arn(green_target_group)
        .targets(green_task())
        .send()
        .await;
}

fn green_task() -> aws_sdk_elasticloadbalancingv2::types::TargetDescription {
    aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
        .id(GREEN_TASK_IP)
        .port(3000)
        .build()
}

/// The EventBridge "ECR Image Action" event of a push, shaped like `events/ecr-push-version.json`.
pub fn push_event(
    repository: &str,
    tag: &str,
    digest: &str,
    time: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "version": "0",
        "id": format!("push-{repository}-{tag}-{}", &digest[7..15]),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "region": REGION,
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": digest,
            "action-type": "PUSH",
            "image-tag": tag,
        }
    })
}

/// Starts a deployment of release `version`/`digest` of `app` as Greenlight would (its
/// description names the release; with `task_definition`, an AppSpec deploys it); its id.
pub async fn create_release_deployment(
    codedeploy: &aws_sdk_codedeploy::Client,
    app: &str,
    version: &str,
    digest: &str,
    task_definition: Option<&str>,
) -> String {
    use aws_sdk_codedeploy::types::{AppSpecContent, RevisionLocation, RevisionLocationType};
    let revision = task_definition.map(|td| {
        let appspec = greenlight_shared::appspec::AppSpec {
            task_definition_arn: td.to_string(),
            container_name: app.to_string(),
            container_port: 3000,
            hooks: vec![],
        };
        RevisionLocation::builder()
            .revision_type(RevisionLocationType::AppSpecContent)
            .app_spec_content(AppSpecContent::builder().content(appspec.to_json()).build())
            .build()
    });
    codedeploy
        .create_deployment()
        .application_name(app)
        .deployment_group_name(format!("{app}-bluegreen"))
        .description(
            greenlight_shared::appspec::ReleaseDescription {
                app: app.to_string(),
                version: version.to_string(),
                digest: digest.to_string(),
                request: None,
            }
            .to_string(),
        )
        .set_revision(revision)
        .send()
        .await
        .expect("CreateDeployment")
        .deployment_id
        .expect("deployment id")
}

/// Writes the release record of `version`/`digest` of `app` into the ledger `table`, as the
/// deployer's claim does (its lease already over).
pub async fn record_release(
    clients: &Clients,
    table: &str,
    app: &str,
    version: &str,
    digest: &str,
) {
    use greenlight_shared::ledger::{DynamoLedger, ReleaseLedger};
    let now = chrono::Utc::now();
    let push = greenlight_shared::events::ImagePush {
        app: app.to_string(),
        repository: app.to_string(),
        version: version.to_string(),
        digest: digest.to_string(),
        image: format!("{app}@{digest}"),
        pushed_at: now,
        provenance: Default::default(),
        request: None,
    };
    let lease = greenlight_shared::queue::Lease {
        owner: "deployer".into(),
        until_ms: now.timestamp_millis(),
        now_ms: now.timestamp_millis(),
    };
    DynamoLedger::new(clients.dynamodb.clone(), table)
        .claim(&push, &lease)
        .await
        .expect("claim the release");
}
