//! `greenlight status [APP...]` and `greenlight history APP [--limit N]`, text or `--json`.
//!
//! Exit codes: 0 done; 1 the ledger could not be read (the message says why); 2 the command
//! line is wrong; 3 an app the ledger knows nothing of.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use greenlight_cli::report;
use greenlight_shared::ledger::{DynamoLedger, HistoryLedger, QueueLedger};

#[derive(Parser)]
#[command(
    name = "greenlight",
    version,
    about = "Greenlight for operators: what production runs, what deploys and waits, what happened"
)]
struct Cli {
    /// JSON on standard output instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// The release ledger's DynamoDB table (the stack's `ReleaseLedgerTableName` output);
    /// required, here or in the environment.
    #[arg(long, global = true, env = "GREENLIGHT_LEDGER_TABLE")]
    table: Option<String>,
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
}

enum Failed {
    Ledger(String),
    UnknownApp(String),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(table) = cli.table.clone() else {
        eprintln!("greenlight: name the ledger table with --table or GREENLIGHT_LEDGER_TABLE (the stack's ReleaseLedgerTableName output)");
        return ExitCode::from(2);
    };
    let sdk = greenlight_shared::aws::sdk_config().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), &table);
    let output = match &cli.command {
        Command::Status { apps } => status(&ledger, apps, cli.json).await,
        Command::History { app, limit } => history(&ledger, app, *limit, cli.json).await,
    };
    match output {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failed::Ledger(message)) => {
            eprintln!("greenlight: cannot read the ledger {}: {message}", table);
            ExitCode::from(1)
        }
        Err(Failed::UnknownApp(app)) => {
            eprintln!(
                "greenlight: the ledger {} knows no app `{app}` (no release of it was ever pushed)",
                table
            );
            ExitCode::from(3)
        }
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

async fn status(ledger: &DynamoLedger, apps: &[String], as_json: bool) -> Result<String, Failed> {
    let apps = match apps {
        [] => ledger
            .apps()
            .await
            .map_err(|e| Failed::Ledger(e.to_string()))?,
        given => given.to_vec(),
    };
    let mut statuses = vec![];
    for app in &apps {
        let queue = ledger
            .queue(app)
            .await
            .map_err(|e| Failed::Ledger(e.to_string()))?;
        let releases = ledger
            .history(app)
            .await
            .map_err(|e| Failed::Ledger(e.to_string()))?;
        if queue.version == 0 && releases.is_empty() {
            return Err(Failed::UnknownApp(app.clone()));
        }
        statuses.push(report::status_of(app, &queue, &releases));
    }
    Ok(if as_json {
        json(&statuses)
    } else {
        report::render_status(&statuses)
    })
}

async fn history(
    ledger: &DynamoLedger,
    app: &str,
    limit: usize,
    as_json: bool,
) -> Result<String, Failed> {
    let releases = ledger
        .history(app)
        .await
        .map_err(|e| Failed::Ledger(e.to_string()))?;
    if releases.is_empty() {
        return Err(Failed::UnknownApp(app.to_string()));
    }
    let rows = report::history_rows(&releases, limit);
    Ok(if as_json {
        json(&rows)
    } else {
        report::render_history(app, &rows)
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
