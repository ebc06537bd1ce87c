//! `skiff-hub`: the hub server. Settings, wiring and serving live in the library; this
//! only parses the command line, installs logging and runs.

use anyhow::Context;
use clap::Parser;
use skiff_hub::config::{Cli, Command, HubConfig, TokenCommand};

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
