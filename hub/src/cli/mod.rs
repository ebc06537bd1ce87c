//! The `skiff` command line, a kubectl for Skiff hubs: the clap definitions of every
//! command and the dispatch to the module that carries it out.
//!
//! The binary only parses, calls [`run`] and turns a [`CliError`] into a line on stderr
//! and an exit code. Environment, output streams and standard input come in as
//! parameters, so the whole command can run against buffers.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, CommandFactory, Parser, Subcommand};

mod apply;
mod args;
mod client;
mod config;
mod delete;
mod describe;
mod edit;
mod error;
mod exec;
mod get;
mod image;
mod logs;
mod printers;
mod run;
mod table;

pub use client::{ApiError, Status};
pub use config::ConfigError;
pub use error::CliError;

use client::Client;

const AFTER_HELP: &str = "\
Connection settings, strongest first: flags, then SKIFF_SERVER / SKIFF_TOKEN /
SKIFF_TOKEN_FILE, then the config file (--config, SKIFF_CONFIG, or
$XDG_CONFIG_HOME/skiff/config.toml, else ~/.config/skiff/config.toml) with
`server = \"http://host:6443\"` and `token = \"...\"`, then http://127.0.0.1:6443.";

/// Control a Skiff hub: apply manifests, list, inspect and change resources.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Hub URL, e.g. http://hub:6443 [env: SKIFF_SERVER] [default: http://127.0.0.1:6443]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL"
    )]
    server: Option<String>,
    /// Bearer token for the hub [env: SKIFF_TOKEN]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Read the bearer token from this file [env: SKIFF_TOKEN_FILE]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    token_file: Option<PathBuf>,
    /// Config file to read instead of the default one [env: SKIFF_CONFIG]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
    /// Namespace to work in [default: default]
    #[arg(
        short = 'n',
        long,
        global = true,
        help_heading = "Global options",
        value_name = "NAMESPACE"
    )]
    namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update resources from manifest files (YAML or JSON, multi-document)
    #[command(after_help = "\
Each object is created if it does not exist and replaced by the manifest otherwise:
the manifest is the desired state. Namespaces are applied first, then service accounts
and services, then workloads, so one file can hold a namespace and its contents.

Examples:
  skiff apply -f web.yaml
  skiff apply -f manifests/          # every *.yaml, *.yml and *.json, sorted
  cat web.yaml | skiff apply -f -")]
    Apply(ApplyArgs),
    /// List resources, or show them as YAML, JSON or names
    #[command(after_help = "\
Examples:
  skiff get pods
  skiff get deploy web -o yaml
  skiff get pods -A -l app=web,tier!=db -o wide
  skiff get pod/web-1 svc/web
  skiff get pods -w")]
    Get(get::GetArgs),
    /// Show details of resources and their recent events
    #[command(after_help = "\
Examples:
  skiff describe pod web-1
  skiff describe node edge-7
  skiff describe deploy -l app=web")]
    Describe(describe::DescribeArgs),
    /// Delete resources by name, selector, or the objects of manifest files
    #[command(after_help = "\
Examples:
  skiff delete pod web-1
  skiff delete deploy/web svc/web
  skiff delete pods -l app=web
  skiff delete -f web.yaml --wait")]
    Delete(delete::DeleteArgs),
    /// Create a pod that runs one image
    #[command(after_help = "\
Examples:
  skiff run hello --image busybox:1 -- sh -c 'echo hello; sleep 3600'
  skiff run once --image busybox:1 --restart Never -- date
  skiff run web --image nginx:1 --env MODE=edge --node edge-7")]
    Run(run::RunArgs),
    /// Print the log of a pod's container
    #[command(after_help = "\
Examples:
  skiff logs web-1
  skiff logs web-1 -c sidecar --tail 20
  skiff logs web-1 -f
  skiff logs web-1 --previous")]
    Logs(logs::LogsArgs),
    /// Run a command in a pod's container
    #[command(after_help = "\
Examples:
  skiff exec web-1 -- ls /
  skiff exec web-1 -c app -i -- sh < script.sh")]
    Exec(exec::ExecArgs),
    /// Add, change (--overwrite) or remove (`key-`) labels
    #[command(after_help = "\
Examples:
  skiff label node edge-7 zone=north
  skiff label pod web-1 tier=fe --overwrite
  skiff label deploy/web canary-")]
    Label(edit::MetaArgs),
    /// Add, change (--overwrite) or remove (`key-`) annotations
    #[command(after_help = "\
Examples:
  skiff annotate pod web-1 owner=ops
  skiff annotate pod web-1 owner-")]
    Annotate(edit::MetaArgs),
    /// Add or remove taints on a node
    #[command(after_help = "\
Taint forms: key=value:Effect, key:Effect (add); key:Effect-, key- (remove).
Effect is one of NoSchedule, PreferNoSchedule, NoExecute.

Examples:
  skiff taint node edge-7 dedicated=gpu:NoSchedule
  skiff taint edge-7 maintenance:NoExecute
  skiff taint node edge-7 dedicated-")]
    Taint(edit::TaintArgs),
    /// Mark a node unschedulable
    Cordon(edit::NodeArgs),
    /// Mark a node schedulable again
    Uncordon(edit::NodeArgs),
    /// Import, list and remove images of the hub's registry
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List the resource kinds the hub serves
    ApiResources,
    /// Print the client version and the hub's version
    Version(VersionArgs),
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  skiff completion bash > /etc/bash_completion.d/skiff
  skiff completion zsh > \"${fpath[1]}/_skiff\"")]
    Completion(CompletionArgs),
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// Manifest file, directory or `-` for standard input (repeatable)
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    files: Vec<String>,
}

#[derive(Debug, Args)]
struct VersionArgs {
    /// Print the client version only, without asking the hub
    #[arg(long)]
    client: bool,
}

#[derive(Debug, Args)]
struct CompletionArgs {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// The streams and environment a command works with.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// Looks an environment variable up.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

/// What every command that talks to the hub gets.
pub(crate) struct Ctx<'a> {
    client: Client,
    /// The `-n` namespace, or `default`.
    namespace: String,
    /// Whether `-n` was given (apply refuses a manifest namespace that contradicts it).
    namespace_explicit: bool,
    now: DateTime<Utc>,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    stdin: &'a mut dyn Read,
}

impl Cli {
    /// Parses the process arguments; exits with clap's message and code 2 on a usage
    /// error (0 for `--help` and `--version`).
    pub fn from_args() -> Cli {
        Cli::parse()
    }
}

/// Runs one command.
pub fn run(cli: Cli, io: Io<'_>) -> Result<(), CliError> {
    let Io {
        stdin,
        stdout,
        stderr,
        env,
    } = io;
    match &cli.command {
        Command::Completion(a) => {
            let mut cmd = Cli::command();
            clap_complete::generate(a.shell, &mut cmd, "skiff", stdout);
            return Ok(());
        }
        Command::ApiResources => return api_resources(stdout),
        Command::Version(v) if v.client => {
            writeln!(stdout, "Client Version: v{}", env!("CARGO_PKG_VERSION"))?;
            return Ok(());
        }
        _ => {}
    }

    let flags = config::Flags {
        server: cli.global.server.clone(),
        token: cli.global.token.clone(),
        token_file: cli.global.token_file.clone(),
        config: cli.global.config.clone(),
    };
    let settings = config::resolve(&flags, env)?;
    let mut ctx = Ctx {
        client: Client::new(settings.server, settings.token),
        namespace: cli
            .global
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        namespace_explicit: cli.global.namespace.is_some(),
        now: Utc::now(),
        out: stdout,
        err: stderr,
        stdin,
    };
    match cli.command {
        Command::Apply(a) => apply::run(&mut ctx, &a.files),
        Command::Get(a) => get::run(&mut ctx, &a),
        Command::Describe(a) => describe::run(&mut ctx, &a),
        Command::Delete(a) => delete::run(&mut ctx, &a),
        Command::Run(a) => run::run(&mut ctx, &a),
        Command::Label(a) => edit::run_meta(&mut ctx, edit::MetaField::Labels, &a),
        Command::Annotate(a) => edit::run_meta(&mut ctx, edit::MetaField::Annotations, &a),
        Command::Taint(a) => edit::run_taint(&mut ctx, &a),
        Command::Cordon(a) => edit::run_cordon(&mut ctx, &a, true),
        Command::Uncordon(a) => edit::run_cordon(&mut ctx, &a, false),
        Command::Image(c) => image::run(&mut ctx, &c),
        Command::Version(_) => version(&mut ctx),
        Command::Logs(a) => logs::run(&mut ctx, &a),
        Command::Exec(a) => exec::run(&mut ctx, &a),
        Command::ApiResources | Command::Completion(_) => Ok(()),
    }
}

fn api_resources(out: &mut dyn Write) -> Result<(), CliError> {
    let mut kinds = skiff_api::Kind::ALL.to_vec();
    kinds.sort_by_key(|k| k.plural());
    let mut t = table::Table::new(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for k in kinds {
        t.push(vec![
            k.plural().to_string(),
            k.short_names().join(","),
            k.api_version().to_string(),
            k.namespaced().to_string(),
            k.name().to_string(),
        ]);
    }
    out.write_all(t.render().as_bytes())?;
    Ok(())
}

/// Prints the client version, then the hub's, and fails if the hub cannot say.
fn version(ctx: &mut Ctx<'_>) -> Result<(), CliError> {
    writeln!(ctx.out, "Client Version: v{}", env!("CARGO_PKG_VERSION"))?;
    ctx.out.flush()?;
    let v = ctx.client.version()?;
    let server = ["/gitVersion", "/version"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(|x| x.as_str()))
        .map(|s| {
            if s.starts_with('v') {
                s.to_string()
            } else {
                format!("v{s}")
            }
        })
        .unwrap_or_else(|| v.to_string());
    writeln!(ctx.out, "Server Version: {server}")?;
    Ok(())
}

/// Polls `done` with a growing delay until it says yes or `timeout` passes.
pub(crate) fn poll_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, CliError>,
) -> Result<bool, CliError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        if done()? {
            return Ok(true);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn run_args(args: &[&str]) -> (Result<(), CliError>, String) {
        let cli = Cli::try_parse_from(args).unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdin = std::io::empty();
        let env = |_: &str| None;
        let r = run(
            cli,
            Io {
                stdin: &mut stdin,
                stdout: &mut out,
                stderr: &mut err,
                env: &env,
            },
        );
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn api_resources_lists_every_kind() {
        let (r, out) = run_args(&["skiff", "api-resources"]);
        r.unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), skiff_api::Kind::ALL.len() + 1);
        assert!(lines[0].starts_with("NAME "));
        assert!(out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["deployments", "deploy", "apps/v1", "true", "Deployment"]));
        assert!(
            out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["nodes", "no", "v1", "false", "Node"])
        );
    }

    #[test]
    fn completion_scripts_are_generated() {
        let (r, out) = run_args(&["skiff", "completion", "bash"]);
        r.unwrap();
        assert!(out.contains("skiff"));
        assert!(out.contains("apply"));
    }

    #[test]
    fn unreachable_hub_is_reported_with_a_hint() {
        // Port 1 on loopback is not listening: the connection is refused at once.
        let (r, out) = run_args(&["skiff", "--server", "127.0.0.1:1", "get", "pods"]);
        let e = r.unwrap_err();
        let line = e.render().unwrap();
        assert!(
            line.starts_with(
                "error: cannot reach the hub at http://127.0.0.1:1: connection refused"
            ),
            "{line}"
        );
        assert!(line.contains("SKIFF_SERVER"), "{line}");
        assert_eq!(e.exit_code(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn version_prints_the_client_before_failing_on_the_hub() {
        let (r, out) = run_args(&["skiff", "--server", "127.0.0.1:1", "version"]);
        assert!(r.is_err());
        assert_eq!(
            out,
            format!("Client Version: v{}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn polling_stops_when_done_or_at_the_deadline() {
        let mut calls = 0;
        assert!(
            poll_until(Duration::from_secs(5), || {
                calls += 1;
                Ok(calls == 3)
            })
            .unwrap()
        );
        assert_eq!(calls, 3);
        let start = std::time::Instant::now();
        assert!(!poll_until(Duration::from_millis(120), || Ok(false)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(120));
    }
}
