//! `skiff-agent`: reads the configuration, sets up logging to stderr (journald picks it
//! up under systemd) and runs the agent until SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use skiff_agent::{AgentConfig, Args};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        .with(log_filter())
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

/// `RUST_LOG` as `target=level` directives (`info`, `skiff_agent=debug,rumqttc=warn`),
/// `info` when unset. A plain target filter, not `EnvFilter`: that one compiles its
/// directive grammar into a regular expression at start, which costs an idle agent
/// memory for the rest of its life.
fn log_filter() -> Targets {
    let default = Targets::new().with_default(LevelFilter::INFO);
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => s.parse().unwrap_or_else(|e| {
            eprintln!("skiff-agent: RUST_LOG={s:?} is not a list of target=level directives ({e}); logging at info");
            default
        }),
        _ => default,
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
