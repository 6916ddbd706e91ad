//! `hookd`: parse the command line, set up logging, run the command until it
//! finishes or a signal asks it to stop.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use hookd::cli;
use hookd::config::Cli;

/// mimalloc: glibc's malloc spent about 15 % of the engine's CPU in the
/// end-to-end burst (`malloc_consolidate`, `_int_free`), measured with perf;
/// with mimalloc the burst runs about twice as fast.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of the mimalloc v3 that libmimalloc-sys 0.1.49
/// vendors (its `mimalloc.h`, `mi_option_e`); the crate names only v2's.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's defaults doubled the peak RSS of the burst (52 → 106–124 MiB):
/// it backs arenas with transparent huge pages (off by the `no_thp` feature)
/// and hands freed pages back to the OS only a second later. 20 ms keeps the
/// burst's peak at 55–59 MiB; 0 (at once) cost 4–8 % of throughput in page
/// faults and zeroing, 100 ms let the peak pass 64 MiB.
const PURGE_DELAY_MS: std::ffi::c_long = 20;

#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: a plain setter of a process-wide option, called before any
    // other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// BSD `EX_USAGE`: the command line was wrong.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hookd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
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
