//! `skiff logs POD [-c C] [-f] [--tail N] [--previous]`: the container's log from its
//! node, through the hub, printed as it arrives.

use std::io::Read;

use clap::Args;

use super::Ctx;
use super::error::CliError;

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The pod (NAME or pod/NAME)
    pod: String,
    /// The container, when the pod has several
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Keep printing what the container writes until it ends (or Ctrl-C)
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    /// The log of the container's previous instance (before its last restart)
    #[arg(short = 'p', long)]
    previous: bool,
    /// Stop after this many bytes
    #[arg(long, value_name = "BYTES")]
    limit_bytes: Option<u64>,
}

/// The pod name of `NAME`, `pod/NAME` or `pods/NAME`.
pub(crate) fn pod_name(arg: &str) -> Result<&str, CliError> {
    let name = match arg.split_once('/') {
        None => arg,
        Some(("pod" | "pods" | "po", name)) => name,
        Some((kind, _)) => {
            return Err(CliError::Usage(format!(
                "{arg:?}: only pods have logs and run commands, not {kind}"
            )));
        }
    };
    if name.is_empty() {
        return Err(CliError::Usage("a pod name is required".into()));
    }
    Ok(name)
}

pub(crate) fn run(ctx: &mut Ctx<'_>, args: &LogsArgs) -> Result<(), CliError> {
    let name = pod_name(&args.pod)?;
    let path = format!("/api/v1/namespaces/{}/pods/{name}/log", ctx.namespace);
    let mut query = Vec::new();
    if let Some(c) = &args.container {
        query.push(("container", c.clone()));
    }
    if args.follow {
        query.push(("follow", "true".to_string()));
    }
    if let Some(n) = args.tail {
        query.push(("tailLines", n.to_string()));
    }
    if args.previous {
        query.push(("previous", "true".to_string()));
    }
    if let Some(n) = args.limit_bytes {
        query.push(("limitBytes", n.to_string()));
    }
    let mut body = ctx.client.stream(&path, &query)?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CliError::Stream {
                    what: format!("the log stream of pod {name} broke off"),
                    source,
                });
            }
        };
        ctx.out.write_all(&buf[..n])?;
        ctx.out.flush()?;
    }
}
