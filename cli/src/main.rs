//! `greenlight status|history|deploy|rollback|plan`, text or `--json`.
//!
//! Exit codes: 0 done (with `--wait`: the release deployed; with `--wait-until STAGE`: it
//! reached the stage); 1 AWS could not be reached or refused (five reads in a row), or the
//! deployer failed (the message says why); 2 the command line is wrong or incomplete; 3 nothing
//! to do: an app the ledger or config knows nothing of, a release not in ECR, nothing to roll
//! back to; 4 `--wait`: the release ended, not as a success, before the stage (failed and
//! rolled back, stopped, superseded); 5 `--wait`: still under way at `--timeout`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use greenlight_cli::deploy::{self, Deployer, Failed, Follow, Until};
use greenlight_cli::report;
use greenlight_shared::aws::ecs::{Ecs, ServiceReads};
use greenlight_shared::ledger::{DynamoLedger, HistoryLedger, QueueLedger};
use greenlight_shared::request::RequestKind;
use greenlight_shared::rollout::Milestone;

#[derive(Parser)]
#[command(
    name = "greenlight",
    version,
    about = "Greenlight for operators: what production runs, what deploys and waits, what happened; deploy, roll back, plan"
)]
struct Cli {
    /// JSON on standard output instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// The release ledger's DynamoDB table (the stack's `ReleaseLedgerTableName` output).
    #[arg(long, global = true, env = "GREENLIGHT_LEDGER_TABLE")]
    table: Option<String>,
    /// The deployer function, name or ARN (the stack's `DeployerFunctionName` output); for
    /// deploy, rollback and plan.
    #[arg(long, global = true, env = "GREENLIGHT_DEPLOYER_FUNCTION")]
    function: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per app: the release production runs, the deployment in progress, the release waiting,
    /// the last failure and why.
    Status {
        /// Apps to show (default: every app Greenlight has deployed).
        apps: Vec<String>,
    },
    /// An app's releases, newest first: version, digest, pushed at, who, commit, outcome,
    /// deployment, duration, the health hook's reason.
    History {
        app: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Deploy a release that is in ECR (redeploy, roll forward, retry after a fix), through
    /// the same blue/green and health hook as a push.
    Deploy {
        app: String,
        /// A release tag (v1.4.2) or an image digest (sha256:…) of the app's repository.
        release: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Deploy the last release that succeeded before the one running now (or `--to`).
    Rollback {
        app: String,
        /// The release to go back to (a tag or digest) instead.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// What a deploy would do, without writing anything: the task definition diff and the
    /// AppSpec.
    Plan { app: String, release: String },
    /// Let the release that waits for approval (green checked) take production traffic.
    Approve {
        app: String,
        /// The release expected to wait (a tag or digest): refused if another one waits.
        #[arg(long)]
        release: Option<String>,
    },
    /// Roll back the release that waits for approval; production stays where it is.
    Reject {
        app: String,
        #[arg(long)]
        release: Option<String>,
        /// Why, kept with the decision (history, the release's Slack thread).
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
struct Wait {
    /// Follow the deployment to its end; exit 0 only if it succeeded.
    #[arg(long)]
    wait: bool,
    /// Follow it until this stage only (implies --wait): `traffic-shifted` (all production
    /// traffic on green), `baked` (the final bake over) or `completed`. The first two are read
    /// from ECS for native deployments; a CodeDeploy one is followed until completed.
    #[arg(long, value_enum)]
    wait_until: Option<Stage>,
    /// How long `--wait` follows it, in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// How often `--wait` reads the ledger, in seconds.
    #[arg(long, default_value_t = 5.0)]
    poll: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Stage {
    TrafficShifted,
    Baked,
    Completed,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sdk = sdk_config().await;
    let ledger = || -> Result<DynamoLedger, Failed> {
        let table = cli.table.clone().ok_or_else(|| {
            Failed::Usage("name the ledger table with --table or GREENLIGHT_LEDGER_TABLE (the stack's ReleaseLedgerTableName output)".into())
        })?;
        Ok(DynamoLedger::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        ))
    };
    let output = match &cli.command {
        Command::Status { apps } => {
            let ecs = Ecs(aws_sdk_ecs::Client::new(&sdk));
            async { status(&ledger()?, &ecs, apps, cli.json).await }.await
        }
        Command::History { app, limit } => {
            async { history(&ledger()?, app, *limit, cli.json).await }.await
        }
        Command::Deploy { app, release, wait } => {
            request(
                &cli,
                &sdk,
                &ledger,
                RequestKind::Deploy,
                app,
                Some(release),
                Some(wait),
            )
            .await
        }
        Command::Rollback { app, to, wait } => {
            request(
                &cli,
                &sdk,
                &ledger,
                RequestKind::Rollback,
                app,
                to.as_ref(),
                Some(wait),
            )
            .await
        }
        Command::Plan { app, release } => {
            request(
                &cli,
                &sdk,
                &ledger,
                RequestKind::Plan,
                app,
                Some(release),
                None,
            )
            .await
        }
        Command::Approve { app, release } => {
            decide(&cli, &sdk, RequestKind::Approve, app, release, None).await
        }
        Command::Reject {
            app,
            release,
            reason,
        } => {
            decide(
                &cli,
                &sdk,
                RequestKind::Reject,
                app,
                release,
                reason.clone(),
            )
            .await
        }
    };
    let (code, message) = match output {
        Ok(text) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Failed::Aws(m)) => (1, m),
        Err(Failed::Usage(m)) => (2, m),
        Err(Failed::Nothing(m)) => (3, m),
        Err(Failed::NotDeployed(m)) => (4, m),
        Err(Failed::TimedOut(m)) => (5, m),
    };
    eprintln!("greenlight: {message}");
    ExitCode::from(code)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

fn unreadable(e: greenlight_shared::ledger::LedgerError) -> Failed {
    Failed::Aws(format!("cannot read the ledger: {e}"))
}

fn unknown(app: &str) -> Failed {
    Failed::Nothing(format!(
        "the ledger knows no app `{app}` (no release of it was ever pushed)"
    ))
}

async fn status(
    ledger: &DynamoLedger,
    ecs: &dyn ServiceReads,
    apps: &[String],
    as_json: bool,
) -> Result<String, Failed> {
    let apps = match apps {
        [] => ledger.apps().await.map_err(unreadable)?,
        given => given.to_vec(),
    };
    let mut statuses = vec![];
    for app in &apps {
        let queue = ledger.queue(app).await.map_err(unreadable)?;
        let releases = ledger.history(app).await.map_err(unreadable)?;
        if queue.version == 0 && releases.is_empty() {
            return Err(unknown(app));
        }
        let mut status = report::status_of(app, &queue, &releases);
        if let Some(deploying) = &mut status.deploying {
            deploying.traffic = traffic_of(ecs, deploying.deployment_id.as_deref()).await;
            deploying.slack = permalink_of(ledger, deploying.deployment_id.as_deref()).await;
        }
        statuses.push(status);
    }
    Ok(if as_json {
        json(&statuses)
    } else {
        report::render_status(&statuses)
    })
}

/// Where a native deployment's production traffic stands, as ECS says now; nothing for a
/// CodeDeploy deployment, or when ECS cannot be read (the status is shown without it).
async fn traffic_of(ecs: &dyn ServiceReads, deployment: Option<&str>) -> Option<String> {
    let id = deployment.filter(|id| greenlight_shared::model::is_service_deployment_arn(id))?;
    let state = ecs.service_deployment(id).await.ok()?;
    let rollout = state.rollout?;
    Some(greenlight_shared::rollout::traffic_line(
        &rollout,
        &state.position,
    ))
}

/// The Slack message of the release run a deployment started (Slack app mode); nothing when
/// there is none or the ledger cannot say (the row is shown without it).
async fn permalink_of(ledger: &DynamoLedger, deployment: Option<&str>) -> Option<String> {
    use greenlight_shared::ledger::NoticeLedger;
    let message = ledger.release_message(deployment?).await.ok()??;
    message.permalink
}

async fn history(
    ledger: &DynamoLedger,
    app: &str,
    limit: usize,
    as_json: bool,
) -> Result<String, Failed> {
    let releases = ledger.history(app).await.map_err(unreadable)?;
    if releases.is_empty() {
        return Err(unknown(app));
    }
    let mut rows = report::history_rows(&releases, limit);
    for row in &mut rows {
        row.slack = permalink_of(ledger, row.deployment_id.as_deref()).await;
    }
    Ok(if as_json {
        json(&rows)
    } else {
        report::render_history(app, &rows)
    })
}

/// Deploy, rollback or plan: ask the deployer, then follow the release when asked to wait.
async fn request(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    ledger: &dyn Fn() -> Result<DynamoLedger, Failed>,
    kind: RequestKind,
    app: &str,
    release: Option<&String>,
    wait: Option<&Wait>,
) -> Result<String, Failed> {
    let function = deployer_function(cli)?;
    let release = match release {
        Some(r) => r.clone(),
        None => {
            let entries = ledger()?.history(app).await.map_err(unreadable)?;
            if entries.is_empty() {
                return Err(unknown(app));
            }
            let target = report::rollback_target(&entries).ok_or_else(|| {
                Failed::Nothing(format!(
                    "{app}: nothing to roll back to (no other release succeeded before the one running)"
                ))
            })?;
            eprintln!("greenlight: rolling {app} back to {}", target.version);
            target.digest
        }
    };
    let requested_by = deploy::caller(&aws_sdk_sts::Client::new(sdk)).await?;
    let deployer = deployer(function, sdk);
    let asked = deploy::request(kind, app, &release, &requested_by);
    let answer = deployer.ask(&asked).await?;
    if kind == RequestKind::Plan {
        return Ok(if cli.json {
            json(&answer)
        } else {
            deploy::render_plan(&answer)
        });
    }
    let (line, deploys) = deploy::accepted(&answer);
    if !deploys {
        return Err(Failed::NotDeployed(line));
    }
    let wait = wait.filter(|w| w.wait || w.wait_until.is_some());
    let Some(wait) = wait else {
        return Ok(if cli.json { json(&answer) } else { line + "\n" });
    };
    follow(cli, sdk, ledger, app, &answer, &line, wait).await
}

/// Approve or reject: ask the deployer (the same decision as a Slack button's).
async fn decide(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    kind: RequestKind,
    app: &str,
    release: &Option<String>,
    reason: Option<String>,
) -> Result<String, Failed> {
    let function = deployer_function(cli)?;
    let requested_by = deploy::caller(&aws_sdk_sts::Client::new(sdk)).await?;
    let release = release
        .clone()
        .unwrap_or_else(|| greenlight_shared::request::WAITING.to_string());
    let asked = greenlight_shared::request::OperatorRequest {
        reason,
        ..deploy::request(kind, app, &release, &requested_by)
    };
    let answer = deployer(function, sdk).ask(&asked).await?;
    let said = answer["said"].as_str().unwrap_or_default().to_string();
    match answer["decision"].as_str().unwrap_or_default() {
        "approved" | "rejected" | "already_decided" => {
            Ok(if cli.json { json(&answer) } else { said + "\n" })
        }
        _ => Err(Failed::Nothing(said)),
    }
}

fn deployer_function(cli: &Cli) -> Result<String, Failed> {
    cli.function.clone().ok_or_else(|| {
        Failed::Usage("name the deployer with --function or GREENLIGHT_DEPLOYER_FUNCTION (the stack's DeployerFunctionName output)".into())
    })
}

/// The SDK configuration of a person's shell: aws-config's whole chain (profiles, SSO, web
/// identity, the environment), unlike the functions, whose environment holds everything
/// (`greenlight_shared::aws::sdk_config`); the same HTTP client and timeouts as theirs.
async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(greenlight_shared::aws::http_client())
        .timeout_config(greenlight_shared::aws::timeouts())
        .load()
        .await
}

/// The deployer, asked through Lambda Invoke.
fn deployer(function: String, sdk: &aws_config::SdkConfig) -> Deployer {
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(sdk)
            // The deployer runs for up to its 30 s timeout; a retried Invoke is the same
            // request (its id), so retrying is safe.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(40))
                    .operation_timeout(Duration::from_secs(130))
                    .build(),
            )
            .build(),
    );
    Deployer { lambda, function }
}

/// `--wait`: follows the release the deployer took to the end (or the stage) asked.
async fn follow(
    cli: &Cli,
    sdk: &aws_config::SdkConfig,
    ledger: &dyn Fn() -> Result<DynamoLedger, Failed>,
    app: &str,
    answer: &serde_json::Value,
    line: &str,
    wait: &Wait,
) -> Result<String, Failed> {
    eprintln!("greenlight: {line}");
    let digest = answer["digest"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failed::Aws(format!("the deployer's answer names no digest: {answer}")))?;
    let ledger = ledger()?;
    let until = match wait.wait_until {
        None | Some(Stage::Completed) => Until::Completed,
        Some(Stage::TrafficShifted) => Until::Milestone(Milestone::TrafficShifted),
        Some(Stage::Baked) => Until::Milestone(Milestone::Baked),
    };
    let ecs = Ecs(aws_sdk_ecs::Client::new(sdk));
    let how = Follow {
        ledger: &ledger,
        ecs: Some(&ecs),
        poll: Duration::from_secs_f64(wait.poll.max(0.1)),
        timeout: Duration::from_secs(wait.timeout),
    };
    let record = deploy::follow(&how, app, &digest, until).await?;
    let reached = match until {
        Until::Completed => "deployed",
        Until::Milestone(Milestone::TrafficShifted) => "has all production traffic",
        Until::Milestone(Milestone::Baked) => "has baked",
    };
    let done = format!(
        "{app} {} {reached} ({})\n",
        record.version,
        record.deployment_id.as_deref().unwrap_or("-")
    );
    Ok(if cli.json {
        json(
            &serde_json::json!({"app": app, "version": record.version, "digest": digest, "outcome": if until == Until::Completed { "succeeded" } else { reached }, "deployment_id": record.deployment_id}),
        )
    } else {
        done
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
