//! `greenlight-bench`: size, cold start (with each function's own profile of it), memory, warm
//! latency and AWS calls of the four functions (release builds), beside a minimal
//! lambda_runtime echo function as the floor, and one deploy by Greenlight beside one by
//! `aws ecs deploy`, and the Lambda time each engine's deployments cost (the local pipeline on
//! release builds). Run it with `scripts/bench`; `--quick` measures the functions only.
//!
//! Everything runs through the same local Runtime API host; AWS and Slack are answered by a
//! fast local stub (so latency is Greenlight's own cost), except the deploy comparison, which
//! runs against moto and the CodeDeploy stand-in like the local pipeline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use greenlight_tests::aws_stub::AwsStub;
use greenlight_tests::codedeploy::CodeDeployStandIn;
use greenlight_tests::moto::{workspace_root, MotoServer};
use greenlight_tests::runtime::{FunctionHost, Invoked};
use greenlight_tests::world::{push_event, seed_app, Clients};
use serde_json::{json, Value};

const COLD_RUNS: usize = 15;
const WARM_INVOCATIONS: usize = 1000;

struct Function {
    name: &'static str,
    binary: &'static str,
    event: Value,
}

fn sample(name: &str) -> Value {
    let path = workspace_root().join(format!("events/{name}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("sample event")).expect("JSON")
}

/// Where `scripts/bench` puts the release builds (built for the target explicitly, as Lambda's
/// bootstraps are).
const RELEASE_DIR: &str = "x86_64-unknown-linux-gnu/release";

fn release_binary(name: &str) -> PathBuf {
    let path = workspace_root().join("target").join(RELEASE_DIR).join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/bench",
        path.display()
    );
    path
}

fn zip_size(binary: &Path, out: &Path) -> u64 {
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9); z.write(sys.argv[1], 'bootstrap'); z.close()"])
        .arg(binary)
        .arg(out)
        .status()
        .expect("python3 zip");
    assert!(status.success());
    std::fs::metadata(out).map(|m| m.len()).unwrap_or(0)
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The phases of a cold start a function logs once it is ready (`InitProfile::ready`).
const INIT_PHASES: [&str; 5] = ["logging_ms", "sdk_ms", "config_ms", "clients_ms", "init_ms"];

/// The cold-start profile line in a function's log, if it wrote one.
fn init_profile(log: &Path) -> Option<Value> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "cold start: ready for events")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

async fn invoke_ok(host: &FunctionHost, event: Value) -> Duration {
    let started = Instant::now();
    let answer = host.invoke(event).await;
    let took = started.elapsed();
    if let Invoked::Error(e) = answer {
        panic!("{} failed: {e}", host.name);
    }
    took
}

async fn wait_init(host: &FunctionHost) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(d) = host.init_duration() {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} did not start",
            host.name
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let out_dir = workspace_root().join("target/greenlight-bench");
    std::fs::create_dir_all(&out_dir).expect("bench dir");
    let stub = AwsStub::start().await;
    let config = out_dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[slack]\nwebhook = \"secretsmanager:greenlight/slack\"\n[apps.web1]\nrepository = \"web1\"\napplication = \"web1\"\ndeployment_group = \"web1-bluegreen\"\n\
             [apps.web1.health]\nurl = \"{}/health\"\nsuccesses = 1\ninterval_ms = 10\n",
            stub.endpoint
        ),
    )
    .expect("bench config");
    let env = stub.function_env(&config);

    let functions = [
        Function {
            name: "echo (floor)",
            binary: "greenlight-echo",
            event: sample("ecr-push-version"),
        },
        Function {
            name: "deployer",
            binary: "greenlight-deployer",
            event: sample("ecr-push-version"),
        },
        Function {
            name: "health-hook",
            binary: "greenlight-health-hook",
            event: sample("codedeploy-lifecycle-hook"),
        },
        Function {
            name: "notifier",
            binary: "greenlight-notifier",
            event: sample("codedeploy-success"),
        },
        // An unsigned request: verified and refused (401) before anything else is read.
        Function {
            name: "approver",
            binary: "greenlight-approver",
            event: sample("function-url-unsigned"),
        },
    ];
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rows = vec![];
    for f in &functions {
        let binary = release_binary(f.binary);
        let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        let zipped = zip_size(&binary, &out_dir.join(format!("{}.zip", f.binary)));
        let log = out_dir.join(format!("{}.log", f.binary));

        // Cold starts: init (process start to the first poll) and the first invocation's extra time.
        let mut inits = vec![];
        let mut first_extra = vec![];
        let mut phases: Vec<Vec<f64>> = vec![vec![]; INIT_PHASES.len()];
        for _ in 0..COLD_RUNS {
            let host =
                FunctionHost::start(f.binary, &binary, &env, Duration::from_secs(30), &log).await;
            inits.push(wait_init(&host).await);
            if let Some(profile) = init_profile(&log) {
                for (i, phase) in INIT_PHASES.iter().enumerate() {
                    phases[i].push(profile[phase].as_f64().unwrap_or(0.0));
                }
            }
            let first = invoke_ok(&host, f.event.clone()).await;
            let mut warm = vec![];
            for _ in 0..10 {
                warm.push(invoke_ok(&host, f.event.clone()).await);
            }
            warm.sort();
            first_extra.push(first.saturating_sub(percentile(&warm, 0.5)));
        }
        inits.sort();
        first_extra.sort();
        // Each phase's median; the rest of the measured init is the process start, the
        // runtime and the first poll (the echo floor is nothing else).
        let profile: serde_json::Map<String, Value> = INIT_PHASES
            .iter()
            .zip(phases.iter_mut())
            .filter(|(_, values)| !values.is_empty())
            .map(|(phase, values)| {
                values.sort_by(f64::total_cmp);
                (phase.to_string(), json!(values[values.len() / 2]))
            })
            .collect();

        // Warm: 1,000 invocations, then the process's peak RSS; AWS calls of one more event.
        let host =
            FunctionHost::start(f.binary, &binary, &env, Duration::from_secs(30), &log).await;
        wait_init(&host).await;
        stub.take_calls();
        invoke_ok(&host, f.event.clone()).await;
        let cold_calls = stub.take_calls();
        let mut latencies = Vec::with_capacity(WARM_INVOCATIONS);
        for _ in 0..WARM_INVOCATIONS {
            latencies.push(invoke_ok(&host, f.event.clone()).await);
        }
        latencies.sort();
        let rss_kb = host.pid().map(vm_hwm_kb).unwrap_or(0);
        stub.take_calls();
        invoke_ok(&host, f.event.clone()).await;
        let calls = stub.take_calls();
        let aws_calls: usize = calls
            .iter()
            .filter(|(op, _)| !op.starts_with("DynamoDB."))
            .map(|(_, n)| n)
            .sum();
        let ledger_calls: usize = calls
            .iter()
            .filter(|(op, _)| op.starts_with("DynamoDB."))
            .map(|(_, n)| n)
            .sum();
        let skipped_calls = if f.binary == "greenlight-deployer" {
            invoke_ok(&host, sample("ecr-push-latest")).await;
            Some(stub.take_calls().values().sum::<usize>())
        } else {
            None
        };
        rows.push(json!({
            "function": f.name,
            "bootstrap_bytes": size,
            "zip_bytes": zipped,
            "init_ms_p50": ms(percentile(&inits, 0.5)),
            "init_profile_ms_p50": profile,
            "first_invocation_extra_ms_p50": ms(percentile(&first_extra, 0.5)),
            "peak_rss_kb": rss_kb,
            "warm_ms_p50": ms(percentile(&latencies, 0.5)),
            "warm_ms_p99": ms(percentile(&latencies, 0.99)),
            "aws_calls_per_event": aws_calls,
            "ledger_calls_per_event": ledger_calls,
            "aws_calls_first_event": cold_calls.values().sum::<usize>(),
            "calls": calls,
            "aws_calls_skipped_event": skipped_calls,
        }));
        eprintln!("measured {}", f.name);
    }

    let (refresh, comparison, lambda_time) = if quick {
        (Value::Null, Value::Null, Value::Null)
    } else {
        (
            config_refresh_cost(&env, &out_dir).await,
            compare_with_aws_cli(&env).await,
            lambda_time_per_deployment().await,
        )
    };
    // The arm64 bootstraps and zips `scripts/package` measured, when it has run.
    let arm64: Option<Value> =
        std::fs::read(workspace_root().join("target/greenlight-package/sizes.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let report = json!({"functions": rows, "arm64": arm64, "config_refresh": refresh, "deploy_comparison": comparison, "lambda_time_per_deployment": lambda_time, "cold_runs": COLD_RUNS, "warm_invocations": WARM_INVOCATIONS});
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(&report).expect("JSON"),
    )
    .expect("results");
    print_table(&report);
    println!("\nJSON: target/greenlight-bench/results.json");
}

/// The Lambda time of whole deployments on each engine: the local pipeline (release builds,
/// the pipeline's health settings: 3 good probes 200 ms apart, 3 bad ones fail) ships a
/// healthy release and rolls back a failing one on web1 (CodeDeploy) and web2 (ECS blue/
/// green); per function, the invocations and the time they took. The CodeDeploy hook probes
/// inside one invocation; the native hook answers a round per invocation and is called back.
async fn lambda_time_per_deployment() -> Value {
    use greenlight_tests::pipeline::{Pipeline, Timeline};
    use greenlight_tests::receivers::Health;
    // The pipeline runs the release builds (`pipeline::binary` reads the profile from here).
    std::env::set_var("GREENLIGHT_PROFILE", RELEASE_DIR);
    let p = Pipeline::start(Timeline::new(std::sync::Arc::new(|_| {}))).await;
    let hosts = [
        ("deployer", &p.world.deployer),
        ("health-hook", &p.world.hook),
        ("notifier", &p.world.notifier),
    ];
    let mut rows = vec![];
    for (app, engine, good, bad) in [
        ("web1", "CodeDeploy", "v1.0.0", "v1.0.1"),
        ("web2", "ECS blue/green", "v2.0.0", "v2.0.1"),
    ] {
        for (version, health, deployment) in [
            (good, Health::Healthy, "ships"),
            (bad, Health::Failing, "rolled back"),
        ] {
            let before: Vec<_> = hosts.iter().map(|(_, h)| h.billed()).collect();
            p.push(app, version, health).await;
            let settled = p.settle(Duration::from_secs(90)).await;
            let mut functions = serde_json::Map::new();
            let mut total = Duration::ZERO;
            for ((name, host), (n0, t0)) in hosts.iter().zip(before) {
                let (n1, t1) = host.billed();
                total += t1 - t0;
                functions.insert(
                    name.to_string(),
                    json!({"invocations": n1 - n0, "ms": ms(t1 - t0)}),
                );
            }
            rows.push(json!({
                "engine": engine, "deployment": deployment, "settled": settled,
                "functions": functions, "total_ms": ms(total),
            }));
        }
    }
    json!(rows)
}

/// What keeping the config fresh costs a warm deployer: its warm p50 with the config read
/// again (and compared) before every invocation (`GREENLIGHT_CONFIG_MAX_AGE_S=0`, the file
/// source) beside the default (read again once a minute, so not within this run).
async fn config_refresh_cost(base_env: &[(String, String)], out_dir: &Path) -> Value {
    let binary = release_binary("greenlight-deployer");
    let log = out_dir.join("greenlight-deployer-refresh.log");
    let mut p50 = vec![];
    for max_age in ["60", "0"] {
        let mut env = base_env.to_vec();
        env.push(("GREENLIGHT_CONFIG_MAX_AGE_S".into(), max_age.into()));
        let host =
            FunctionHost::start("deployer", &binary, &env, Duration::from_secs(30), &log).await;
        wait_init(&host).await;
        let mut latencies = Vec::with_capacity(WARM_INVOCATIONS);
        for _ in 0..WARM_INVOCATIONS {
            latencies.push(invoke_ok(&host, sample("ecr-push-version")).await);
        }
        latencies.sort();
        p50.push(ms(percentile(&latencies, 0.5)));
    }
    json!({"warm_ms_p50_max_age_60s": p50[0], "warm_ms_p50_read_every_invocation": p50[1]})
}

/// One deploy of the same release, against moto and the CodeDeploy stand-in: Greenlight's
/// deployer (process start + first invocation) beside `aws ecs deploy` (AWS CLI).
async fn compare_with_aws_cli(base_env: &[(String, String)]) -> Value {
    let aws = workspace_root().join(".venv/bin/aws");
    let moto = MotoServer::start().await;
    let stand_in = CodeDeployStandIn::start(Duration::from_secs(30)).await;
    stand_in.succeed_instantly();
    let clients = Clients::new(&moto.endpoint, &stand_in.endpoint).await;
    clients.create_ledger_table().await;
    let app = seed_app(&clients, "web1", 80).await;
    stand_in.add_group(app.group.clone(), &app.task_definition);
    let out_dir = workspace_root().join("target/greenlight-bench");
    let config = out_dir.join("config-moto.toml");
    std::fs::write(&config, "[apps.web1]\nrepository = \"web1\"\napplication = \"web1\"\ndeployment_group = \"web1-bluegreen\"\n").expect("config");
    let mut env: Vec<(String, String)> = base_env
        .iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL" && k != "GREENLIGHT_CONFIG")
        .cloned()
        .collect();
    env.push(("AWS_ENDPOINT_URL".into(), moto.endpoint.clone()));
    env.push((
        "AWS_ENDPOINT_URL_CODEDEPLOY".into(),
        stand_in.endpoint.clone(),
    ));
    env.push((
        "GREENLIGHT_CONFIG".into(),
        config.to_string_lossy().to_string(),
    ));

    // Greenlight: a cold deployer handling one push.
    let digest = clients.push_image("web1", "v9.0.0", "web1-v9.0.0").await;
    let started = Instant::now();
    let host = FunctionHost::start(
        "greenlight-deployer",
        &release_binary("greenlight-deployer"),
        &env,
        Duration::from_secs(30),
        &out_dir.join("deploy-compare.log"),
    )
    .await;
    let answer = host
        .invoke(push_event("web1", "v9.0.0", &digest, chrono::Utc::now()))
        .await;
    let greenlight = started.elapsed();
    drop(host);
    let deployed = matches!(&answer, Invoked::Response(v) if v["outcome"] == "deployed");

    // The AWS CLI: the same register + deploy, from files as a CI job would run it.
    let td = clients
        .ecs
        .describe_task_definition()
        .task_definition(&app.task_definition)
        .send()
        .await
        .expect("task definition");
    let container = td
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .cloned()
        .expect("container");
    let task_def = json!({
        "family": "web1", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
        "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "containerDefinitions": [{"name": container.name(), "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/web1@{digest}"),
            "essential": true, "memoryReservation": 256, "portMappings": [{"containerPort": 3000, "hostPort": 3000, "protocol": "tcp"}]}],
    });
    let td_file = out_dir.join("task-definition.json");
    let appspec_file = out_dir.join("appspec.yaml");
    std::fs::write(&td_file, task_def.to_string()).expect("td file");
    std::fs::write(&appspec_file, "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: <TASK_DEFINITION>\n        LoadBalancerInfo:\n          ContainerName: web1\n          ContainerPort: 3000\n").expect("appspec");
    let cli = if aws.exists() {
        let started = Instant::now();
        let output = Command::new(&aws)
            .args([
                "ecs",
                "deploy",
                "--region",
                "us-east-1",
                "--cluster",
                "apps",
                "--service",
                "web1",
            ])
            .arg("--task-definition")
            .arg(&td_file)
            .arg("--codedeploy-appspec")
            .arg(&appspec_file)
            .args([
                "--codedeploy-application",
                "web1",
                "--codedeploy-deployment-group",
                "web1-bluegreen",
            ])
            .env("AWS_ENDPOINT_URL", &moto.endpoint)
            .env("AWS_ENDPOINT_URL_CODEDEPLOY", &stand_in.endpoint)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("aws ecs deploy");
        let took = started.elapsed();
        let ok = output.status.success();
        if !ok {
            eprintln!(
                "aws ecs deploy failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        json!({"ms": ms(took), "succeeded": ok})
    } else {
        json!({"ms": null, "succeeded": false, "note": "AWS CLI not installed (scripts/bench installs it)"})
    };
    json!({
        "greenlight_cold_deployer_ms": ms(greenlight),
        "greenlight_deployed": deployed,
        "aws_ecs_deploy": cli,
        "deployments_created": stand_in.deployments().len(),
    })
}

fn print_table(report: &Value) {
    let rows = report["functions"].as_array().cloned().unwrap_or_default();
    let floor = rows[0].clone();
    let ratio = |v: &Value, key: &str| -> String {
        let (a, b) = (
            v[key].as_f64().unwrap_or(0.0),
            floor[key].as_f64().unwrap_or(0.0),
        );
        if b > 0.0 {
            format!("{:.1}×", a / b)
        } else {
            "-".into()
        }
    };
    println!("\n| function | bootstrap | zip | init (p50) | first-call extra | peak RSS | warm p50 | warm p99 | AWS calls/event |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let calls = match r["function"].as_str() {
            Some("echo (floor)") => "-".to_string(),
            Some("deployer") => format!(
                "{} (+{} ledger); skipped event: {}",
                r["aws_calls_per_event"], r["ledger_calls_per_event"], r["aws_calls_skipped_event"]
            ),
            _ => format!(
                "{} (+{} ledger)",
                r["aws_calls_per_event"], r["ledger_calls_per_event"]
            ),
        };
        println!(
            "| {} | {:.2} MB ({}) | {:.2} MB ({}) | {} ms ({}) | {} ms | {:.1} MB ({}) | {} ms | {} ms | {} |",
            r["function"].as_str().unwrap_or_default(),
            r["bootstrap_bytes"].as_f64().unwrap_or(0.0) / 1e6, ratio(r, "bootstrap_bytes"),
            r["zip_bytes"].as_f64().unwrap_or(0.0) / 1e6, ratio(r, "zip_bytes"),
            r["init_ms_p50"], ratio(r, "init_ms_p50"),
            r["first_invocation_extra_ms_p50"],
            r["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0, ratio(r, "peak_rss_kb"),
            r["warm_ms_p50"], r["warm_ms_p99"], calls
        );
    }
    print_init_profile(&rows);
    if let Some(arm64) = report.get("arm64").filter(|v| !v.is_null()) {
        println!("\narm64, as `sam build` made them (scripts/package):");
        for (function, sizes) in arm64.as_object().into_iter().flatten() {
            println!(
                "| {function} | bootstrap {:.2} MB | zip {:.2} MB |",
                sizes["bootstrap_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                sizes["zip_bytes"].as_f64().unwrap_or(0.0) / 1e6
            );
        }
    }
    let r = &report["config_refresh"];
    if r.is_null() {
        return;
    }
    println!(
        "\nConfig refresh, deployer warm p50: {} ms as deployed (read again once a minute); {} ms reading it before every invocation.",
        r["warm_ms_p50_max_age_60s"], r["warm_ms_p50_read_every_invocation"]
    );
    println!("\nLambda time per deployment (local pipeline, release builds; hook: 3 good probes 200 ms apart, or 3 bad):");
    println!("| engine | deployment | deployer | health-hook | notifier | total |");
    println!("|---|---|---|---|---|---|");
    for r in report["lambda_time_per_deployment"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let f = |name: &str| {
            format!(
                "{} ms ({}×)",
                r["functions"][name]["ms"], r["functions"][name]["invocations"]
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {} ms |",
            r["engine"].as_str().unwrap_or_default(),
            r["deployment"].as_str().unwrap_or_default(),
            f("deployer"),
            f("health-hook"),
            f("notifier"),
            r["total_ms"]
        );
    }
    let c = &report["deploy_comparison"];
    println!("\nOne deploy against moto + the CodeDeploy stand-in: Greenlight deployer (cold process + first invocation) {} ms; `aws ecs deploy` {} ms.",
        c["greenlight_cold_deployer_ms"], c["aws_ecs_deploy"]["ms"]);
}

/// Where each function's cold start goes: the phases it logs from inside `main`, and the rest
/// (process start, the runtime, the first poll) against the echo floor's whole init.
fn print_init_profile(rows: &[Value]) {
    let floor = rows[0]["init_ms_p50"].as_f64().unwrap_or(0.0);
    println!("\nCold start profile (medians, ms; `rest` = process start, runtime and first poll, against the echo floor's {floor} ms):");
    println!("| function | init | logging | SDK config | config | clients | rest |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows.iter().skip(1) {
        let p = &r["init_profile_ms_p50"];
        let phase = |k: &str| p[k].as_f64().unwrap_or(0.0);
        let init = r["init_ms_p50"].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {init} | {} | {} | {} | {} | {:.2} |",
            r["function"].as_str().unwrap_or_default(),
            phase("logging_ms"),
            phase("sdk_ms"),
            phase("config_ms"),
            phase("clients_ms"),
            init - phase("init_ms"),
        );
    }
}
