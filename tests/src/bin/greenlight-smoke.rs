//! `greenlight-smoke`: runs each function's bootstrap once, as Lambda would, behind the local
//! Runtime API host, and checks that it starts, answers one sample event and exits on SIGTERM.
//! It proves an artifact (for example the arm64 bootstraps `sam build` made, run under
//! `qemu-aarch64`), not its speed. `scripts/package` runs it.
//!
//! ```text
//! greenlight-smoke [--launcher "qemu-aarch64 -L /usr/aarch64-linux-gnu"] \
//!     --deployer PATH --health-hook PATH --notifier PATH --approver PATH
//! ```
//!
//! The events: a push of `latest` (the deployer skips it without an AWS call), a lifecycle
//! event without an execution id (the hook refuses it as `MalformedEvent`), a state change of
//! an application the config does not name (the notifier ignores it). AWS is a local stub that
//! counts calls; none is expected.

use std::path::PathBuf;
use std::time::Duration;

use greenlight_tests::aws_stub::AwsStub;
use greenlight_tests::moto::workspace_root;
use greenlight_tests::runtime::{FunctionHost, Invoked};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    flag: &'static str,
    event: Value,
    expect: fn(&Invoked) -> bool,
}

fn sample(name: &str) -> Value {
    let path = workspace_root().join(format!("events/{name}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("sample event")).expect("JSON")
}

fn cases() -> Vec<Case> {
    let mut lifecycle = sample("codedeploy-lifecycle-hook");
    lifecycle
        .as_object_mut()
        .expect("object")
        .remove("LifecycleEventHookExecutionId");
    vec![
        Case {
            name: "deployer",
            flag: "--deployer",
            event: sample("ecr-push-latest"),
            expect: |answer| matches!(answer, Invoked::Response(r) if r["outcome"] == "skipped"),
        },
        Case {
            name: "health-hook",
            flag: "--health-hook",
            event: lifecycle,
            expect: |answer| matches!(answer, Invoked::Error(e) if e["errorType"] == "MalformedEvent"),
        },
        Case {
            name: "notifier",
            flag: "--notifier",
            event: sample("codedeploy-start"),
            expect: |answer| matches!(answer, Invoked::Response(r) if r["outcome"] == "ignored"),
        },
        Case {
            name: "approver",
            flag: "--approver",
            // A function URL request Slack did not sign: refused before any read.
            event: sample("function-url-unsigned"),
            expect: |answer| matches!(answer, Invoked::Response(r) if r["statusCode"] == 401),
        },
    ]
}

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let launcher: Vec<String> = arg_after(&args, "--launcher")
        .map(|l| l.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let out_dir = workspace_root().join("target/greenlight-smoke");
    std::fs::create_dir_all(&out_dir).expect("smoke dir");
    let stub = AwsStub::start().await;
    let config = out_dir.join("config.toml");
    std::fs::write(
        &config,
        "[slack]\nwebhook = \"secretsmanager:greenlight/slack\"\n\
         [apps.web9]\nrepository = \"web9\"\napplication = \"web9\"\ndeployment_group = \"web9-bluegreen\"\n",
    )
    .expect("smoke config");
    let env = stub.function_env(&config);

    let mut failures = Vec::new();
    for case in cases() {
        let Some(binary) = arg_after(&args, case.flag).map(PathBuf::from) else {
            failures.push(format!("{}: no {} PATH given", case.name, case.flag));
            continue;
        };
        let log = out_dir.join(format!("{}.log", case.name));
        // Emulated, a cold start takes seconds, not milliseconds: a generous timeout.
        let host = FunctionHost::start_under(
            &launcher,
            case.name,
            &binary,
            &env,
            Duration::from_secs(60),
            &log,
        )
        .await;
        let answer = host.invoke(case.event).await;
        let init = host.init_duration();
        let calls = stub.take_calls();
        let exit = host.shut_down(Duration::from_secs(10));
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let clean_exit = match exit {
            Some(status) => {
                status.success()
                    || std::os::unix::process::ExitStatusExt::signal(&status) == Some(15)
            }
            None => false,
        };
        let ok = (case.expect)(&answer)
            && calls.is_empty()
            && clean_exit
            && !output.contains("panicked")
            && host.init_error().await.is_none();
        println!(
            "{:<12} {}  init {:>7}  answer {}  AWS calls {:?}  exit {:?}",
            case.name,
            if ok { "ok  " } else { "FAIL" },
            init.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into()),
            match &answer {
                Invoked::Response(v) => json!({ "response": v }),
                Invoked::Error(v) => json!({ "error": v }),
            },
            calls,
            exit,
        );
        if !ok {
            failures.push(format!(
                "{}: see {} ({} bytes of output)",
                case.name,
                log.display(),
                output.len()
            ));
        }
    }
    if failures.is_empty() {
        println!(
            "smoke: PASS: the four bootstraps{} started, answered and exited",
            if launcher.is_empty() {
                String::new()
            } else {
                format!(" under `{}`", launcher.join(" "))
            }
        );
    } else {
        for f in &failures {
            eprintln!("smoke: FAIL: {f}");
        }
        std::process::exit(1);
    }
}
