//! `hookd`: parse the command line, set up logging, run the command until it
//! finishes or a signal asks it to stop.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use hookd::cli;
use hookd::config::Cli;

/// BSD `EX_USAGE`: the command line was wrong.
const EXIT_USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("hookd: a command is required: serve, migrate or project (see hookd --help)");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(err) => {
            let text = err.to_string();
            let line = text.lines().next().unwrap_or("invalid command line");
            eprintln!(
                "hookd: {} (see hookd --help)",
                line.trim_start_matches("error: ")
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(err) = hookd::telemetry::init(&cli.log, cli.command.default_log_level()) {
        eprintln!("hookd: {err}");
        return ExitCode::from(EXIT_USAGE);
    }
    match cli::run(cli.command, cli.database, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookd: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
