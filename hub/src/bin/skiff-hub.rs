//! `skiff-hub`: the hub server. Settings, wiring and serving live in the library; this
//! only parses the command line, installs logging and runs.

use anyhow::Context;
use clap::Parser;
use skiff_hub::config::{Cli, Command, HubConfig, TokenCommand};

/// jemalloc rather than glibc's malloc. The embedded broker (rumqttd) gives every MQTT
/// connection buffers sized for its worst case — about 480 KB of capacity, of which an
/// idle agent's connection writes a few KB — and glibc carves them from its heaps with
/// chunk headers inside, touching pages of capacity that is never used and handing freed,
/// already resident memory to new connections. jemalloc keeps its metadata apart and
/// places large buffers on whole pages, so capacity never written stays out of the
/// resident set (docs/benchmarks.md, "hub RSS").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (its `malloc_conf`; the crate prefixes its symbols with
/// `_rjem_`). Freed pages go back to the kernel at once instead of after ten seconds, so
/// a connection's buffers land on fresh pages, not on ones a departed request dirtied.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 34] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command } = Cli::parse();
    match command {
        Command::Serve(args) => {
            let config = HubConfig::resolve(*args).context("reading settings")?;
            config.log.install().context("setting up logging")?;
            skiff_hub::server::run(config).await?;
        }
        Command::Token(TokenCommand::Create(args)) => {
            let created = tokio::task::spawn_blocking(move || {
                skiff_hub::join::create_token(&args.server, &args.data_dir, args.ttl, args.uses)
            })
            .await?
            .context("creating a join token")?;
            eprintln!("join token (expires {}):", created.expires);
            println!("{}", created.token);
        }
    }
    Ok(())
}
