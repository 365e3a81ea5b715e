//! `pushd`: parse options, set up logging, run the daemon until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use pushd_daemon::{Config, DaemonArgs, Listeners, Start, logging, run, take_over};

/// jemalloc rather than glibc's malloc: an idle connection is a few
/// allocations, two of them tokio's 128-byte-aligned ones (its task and its
/// I/O registration), which glibc serves through memalign with a header and
/// leftover holes, and jemalloc from exact size classes; about a fifth less
/// memory per idle connection (docs/PERFORMANCE.md, "Where the bytes go").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    logging::init(args.log_format);
    let config = Config::from(args);
    // Started by a live upgrade: everything comes from the running pushd.
    let inherited = match take_over() {
        Some(Ok(inherited)) => Some(inherited),
        Some(Err(err)) => {
            eprintln!("pushd: {err:#}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("pushd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Handlers first: a SIGTERM that arrives as soon as pushd reports
        // ready must start a graceful shutdown, not kill the process.
        let shutdown = shutdown_signal()?;
        let start = match inherited {
            Some(inherited) => Start::Inherited(inherited),
            None => Start::Fresh(Listeners::bind(&config).await?),
        };
        run(start, config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pushd: {err:#}");
            // A place to refuse, like a bad option, is the operator's to fix.
            if err.downcast_ref::<pushd_daemon::NotPrivate>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
