//! `skiff-agent`: reads the configuration, sets up logging to stderr (journald picks it
//! up under systemd) and runs the agent until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use skiff_agent::{AgentConfig, Args};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // The container helper must run before any thread exists (libcontainer forks with a
    // raw clone3): it is this same binary, re-executed by the runtime.
    if let Some(code) = skiff_agent::runtime::linux::run_helper_if_asked() {
        return code;
    }
    let cfg = match AgentConfig::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skiff-agent: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(skiff_agent::run(cfg, shutdown_signal()));
    // Runtime work still in flight (a stop waiting out a grace period, a pull) is left:
    // containers outlive the agent, its records are on disk, and the next agent adopts
    // them and carries on. Waiting for it would hold SIGTERM up for up to a grace period.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
