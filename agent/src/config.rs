//! The agent's configuration: command-line flags, `SKIFF_AGENT_*` environment variables
//! and an optional TOML file, resolved (flags and environment win over the file) into
//! one [`AgentConfig`] with defaults applied and labels and taints parsed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use skiff_api::resources::{Taint, TaintEffect};

/// Pods a node accepts unless told otherwise (the Kubernetes default).
const DEFAULT_MAX_PODS: u32 = 110;
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
const DEFAULT_STATE_DIR: &str = "/var/lib/skiff-agent";
const DEFAULT_CONNECT_CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "--node-name is required (flag, SKIFF_AGENT_NODE_NAME or node-name in the config file)"
    )]
    MissingNodeName,
    #[error(
        "invalid node name {0:?}: lower-case letters, digits, '-' and '.', at most 63 characters"
    )]
    BadNodeName(String),
    #[error("invalid label {0:?}: expected key=value")]
    BadLabel(String),
    #[error(
        "invalid taint {0:?}: expected key=value:Effect or key:Effect (NoSchedule, PreferNoSchedule, NoExecute)"
    )]
    BadTaint(String),
    #[error("invalid duration {0:?}: expected a number with unit ms, s, m or h (e.g. 10s)")]
    BadDuration(String),
    #[error("--simulate needs at least one agent")]
    ZeroSimulate,
    #[error("invalid cgroup parent {0:?}: letters, digits, '-', '_', '.' and '/' only")]
    BadCgroupParent(String),
    #[error("invalid pids limit {0}: must be at least 1")]
    BadPidsLimit(i64),
    #[error("invalid registry mirror {0:?}: expected HOST=http(s)://URL")]
    BadMirror(String),
}

/// Which container runtime runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Real containers through libcontainer (the default).
    Linux,
    /// Containers "run" instantly and are recorded on disk; no processes are started.
    Simulated,
}

/// Skiff agent: runs the pods the hub binds to this device.
///
/// Every flag can also be set with an environment variable `SKIFF_AGENT_<FLAG>` (for
/// example SKIFF_AGENT_NODE_NAME) or in the TOML file given with --config (keys spelled
/// as the flags, e.g. `node-name = "edge-1"`, `label = ["zone=a"]`). Flags and
/// environment win over the file.
#[derive(Debug, Parser)]
#[command(name = "skiff-agent", version)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "SKIFF_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The hub's URL (for example http://hub.example:8080); needed only to join.
    #[arg(long, env = "SKIFF_AGENT_HUB")]
    pub hub: Option<String>,
    /// This node's name.
    #[arg(long, env = "SKIFF_AGENT_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where the agent keeps its database, credentials and runtime records
    /// [default: /var/lib/skiff-agent].
    #[arg(long, env = "SKIFF_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Join token from `skiff-hub token create`; only needed on the first start.
    #[arg(long, env = "SKIFF_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A label for this node, key=value (repeatable).
    #[arg(long = "label", env = "SKIFF_AGENT_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// A taint for this node, key=value:Effect (repeatable).
    #[arg(long = "taint", env = "SKIFF_AGENT_TAINTS", value_delimiter = ',')]
    pub taints: Vec<String>,
    /// The most pods this node accepts [default: 110].
    #[arg(long, env = "SKIFF_AGENT_MAX_PODS")]
    pub max_pods: Option<u32>,
    /// How often to send a heartbeat [default: 10s].
    #[arg(long, env = "SKIFF_AGENT_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// The container runtime [default: linux; --simulate always uses simulated].
    #[arg(long, env = "SKIFF_AGENT_RUNTIME")]
    pub runtime: Option<RuntimeKind>,
    /// The cgroup the Linux runtime puts containers under [default: skiff].
    #[arg(long, env = "SKIFF_AGENT_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    /// Where the cgroup hierarchy is mounted [default: /sys/fs/cgroup].
    #[arg(long, env = "SKIFF_AGENT_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// The most processes one container may have [default: 1024].
    #[arg(long, env = "SKIFF_AGENT_PIDS_LIMIT")]
    pub pids_limit: Option<i64>,
    /// A mirror for a registry host, HOST=URL (repeatable; tried in order before HOST)
    #[arg(
        long = "registry-mirror",
        env = "SKIFF_AGENT_REGISTRY_MIRRORS",
        value_delimiter = ','
    )]
    pub registry_mirrors: Vec<String>,
    /// A registry host reached over plain http (repeatable; the hub always is)
    #[arg(
        long = "insecure-registry",
        env = "SKIFF_AGENT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// A PEM file of CA certificates to trust for https registries (repeatable). When
    /// given, these are the only roots trusted (add /etc/ssl/certs/ca-certificates.crt to
    /// keep public registries); otherwise the system's bundle is ($SSL_CERT_FILE or
    /// /etc/ssl/certs/ca-certificates.crt).
    #[arg(
        long = "registry-ca",
        env = "SKIFF_AGENT_REGISTRY_CAS",
        value_delimiter = ','
    )]
    pub registry_cas: Vec<PathBuf>,
    /// Run N agents in this process, named <node-name>-<i> with state dirs
    /// <state-dir>/<name>, all joining with --token (for fleet-scale tests).
    #[arg(long, env = "SKIFF_AGENT_SIMULATE")]
    pub simulate: Option<u32>,
    /// How many simulated agents may join or connect at once [default: 64].
    #[arg(long, env = "SKIFF_AGENT_CONNECT_CONCURRENCY")]
    pub connect_concurrency: Option<usize>,
    /// The InternalIP to report [default: the address this host uses to reach the broker].
    #[arg(long, env = "SKIFF_AGENT_INTERNAL_IP")]
    pub internal_ip: Option<IpAddr>,
    /// Where procfs is mounted [default: /proc].
    #[arg(long, env = "SKIFF_AGENT_PROC_DIR")]
    pub proc_dir: Option<PathBuf>,
    /// Where os-release and machine-id are read from [default: /etc].
    #[arg(long, env = "SKIFF_AGENT_ETC_DIR")]
    pub etc_dir: Option<PathBuf>,
    /// Keep the agent's own code pages resident, instead of giving them back to the
    /// kernel whenever the agent has been quiet for a few seconds (after start-up or a
    /// burst of work).
    #[arg(long, env = "SKIFF_AGENT_KEEP_CODE_PAGES")]
    pub keep_code_pages: bool,
}

/// The same settings as [`Args`], as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    hub: Option<String>,
    node_name: Option<String>,
    state_dir: Option<PathBuf>,
    token: Option<String>,
    #[serde(default)]
    label: Vec<String>,
    #[serde(default)]
    taint: Vec<String>,
    max_pods: Option<u32>,
    heartbeat_interval: Option<String>,
    runtime: Option<RuntimeKind>,
    cgroup_parent: Option<String>,
    cgroup_root: Option<PathBuf>,
    pids_limit: Option<i64>,
    #[serde(default)]
    registry_mirror: Vec<String>,
    #[serde(default)]
    insecure_registry: Vec<String>,
    #[serde(default)]
    registry_ca: Vec<PathBuf>,
    simulate: Option<u32>,
    connect_concurrency: Option<usize>,
    internal_ip: Option<IpAddr>,
    proc_dir: Option<PathBuf>,
    etc_dir: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub hub: Option<String>,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub token: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub max_pods: u32,
    pub heartbeat_interval: Duration,
    pub runtime: RuntimeKind,
    pub cgroup_parent: String,
    pub cgroup_root: PathBuf,
    pub pids_limit: i64,
    /// Registry host → mirror base URLs, in order.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    pub insecure_registries: Vec<String>,
    pub registry_cas: Vec<PathBuf>,
    pub simulate: Option<u32>,
    pub connect_concurrency: usize,
    pub internal_ip: Option<IpAddr>,
    pub proc_dir: PathBuf,
    pub etc_dir: PathBuf,
    pub keep_code_pages: bool,
}

impl AgentConfig {
    /// Resolves parsed flags, reading the config file they name.
    pub fn from_args(args: Args) -> Result<AgentConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let node_name = args
            .node_name
            .or(file.node_name)
            .ok_or(ConfigError::MissingNodeName)?;
        check_node_name(&node_name)?;
        let labels = if args.labels.is_empty() {
            file.label
        } else {
            args.labels
        };
        let taints = if args.taints.is_empty() {
            file.taint
        } else {
            args.taints
        };
        let heartbeat_interval = match args.heartbeat_interval.or(file.heartbeat_interval) {
            Some(s) => parse_duration(&s)?,
            None => DEFAULT_HEARTBEAT,
        };
        let simulate = args.simulate.or(file.simulate);
        if simulate == Some(0) {
            return Err(ConfigError::ZeroSimulate);
        }
        let cgroup_parent = args
            .cgroup_parent
            .or(file.cgroup_parent)
            .unwrap_or_else(|| "skiff".to_string());
        let cgroup_parent = cgroup_parent.trim_matches('/').to_string();
        if cgroup_parent.is_empty()
            || cgroup_parent
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
            || !cgroup_parent
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(ConfigError::BadCgroupParent(cgroup_parent));
        }
        let pids_limit = args
            .pids_limit
            .or(file.pids_limit)
            .unwrap_or(crate::runtime::linux::DEFAULT_PIDS_LIMIT);
        if pids_limit < 1 {
            return Err(ConfigError::BadPidsLimit(pids_limit));
        }
        let mut registry_mirrors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mirrors = if args.registry_mirrors.is_empty() {
            file.registry_mirror
        } else {
            args.registry_mirrors
        };
        for m in &mirrors {
            match m.split_once('=') {
                Some((host, url))
                    if !host.is_empty()
                        && (url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    registry_mirrors
                        .entry(host.to_string())
                        .or_default()
                        .push(url.to_string());
                }
                _ => return Err(ConfigError::BadMirror(m.clone())),
            }
        }
        let insecure_registries = if args.insecure_registries.is_empty() {
            file.insecure_registry
        } else {
            args.insecure_registries
        };
        let registry_cas = if args.registry_cas.is_empty() {
            file.registry_ca
        } else {
            args.registry_cas
        };
        Ok(AgentConfig {
            registry_mirrors,
            insecure_registries,
            registry_cas,
            hub: args.hub.or(file.hub),
            node_name,
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            token: args.token.or(file.token),
            labels: labels
                .iter()
                .map(|l| parse_label(l))
                .collect::<Result<_, _>>()?,
            taints: taints
                .iter()
                .map(|t| parse_taint(t))
                .collect::<Result<_, _>>()?,
            max_pods: args.max_pods.or(file.max_pods).unwrap_or(DEFAULT_MAX_PODS),
            heartbeat_interval,
            // Simulated agents share one process: they never run real containers.
            runtime: if simulate.is_some() {
                RuntimeKind::Simulated
            } else {
                args.runtime.or(file.runtime).unwrap_or(RuntimeKind::Linux)
            },
            cgroup_parent,
            cgroup_root: args
                .cgroup_root
                .or(file.cgroup_root)
                .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
            pids_limit,
            simulate,
            connect_concurrency: args
                .connect_concurrency
                .or(file.connect_concurrency)
                .unwrap_or(DEFAULT_CONNECT_CONCURRENCY)
                .max(1),
            internal_ip: args.internal_ip.or(file.internal_ip),
            proc_dir: args
                .proc_dir
                .or(file.proc_dir)
                .unwrap_or_else(|| PathBuf::from("/proc")),
            etc_dir: args
                .etc_dir
                .or(file.etc_dir)
                .unwrap_or_else(|| PathBuf::from("/etc")),
            keep_code_pages: args.keep_code_pages,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Node names become MQTT topic levels and client ids, so they must be DNS-1123 labels
/// or subdomains: never `/`, `+` or `#`.
pub(crate) fn check_node_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadNodeName(name.to_string()))
    }
}

fn parse_label(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ConfigError::BadLabel(s.to_string())),
    }
}

fn parse_taint(s: &str) -> Result<Taint, ConfigError> {
    let bad = || ConfigError::BadTaint(s.to_string());
    let (kv, effect) = s.rsplit_once(':').ok_or_else(bad)?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return Err(bad()),
    };
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err(bad());
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.to_string(),
        effect,
        time_added: None,
    })
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::BadDuration(s.to_string());
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let mut all = vec!["skiff-agent"];
        all.extend_from_slice(args);
        AgentConfig::from_args(Args::try_parse_from(all).unwrap())
    }

    #[test]
    fn defaults_and_flags() {
        let c = parse(&["--node-name", "edge-1"]).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/skiff-agent"));
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(c.runtime, RuntimeKind::Linux);
        assert_eq!(c.cgroup_parent, "skiff");
        assert_eq!(c.pids_limit, 1024);
        let c = parse(&[
            "--node-name",
            "edge-1",
            "--simulate",
            "3",
            "--runtime",
            "linux",
        ])
        .unwrap();
        assert_eq!(c.runtime, RuntimeKind::Simulated);
        let c = parse(&["--node-name", "edge-1", "--runtime", "simulated"]).unwrap();
        assert_eq!(c.runtime, RuntimeKind::Simulated);
        assert!(matches!(
            parse(&["--node-name", "a", "--cgroup-parent", "../x"]),
            Err(ConfigError::BadCgroupParent(_))
        ));
        assert!(matches!(
            parse(&["--node-name", "a", "--pids-limit", "0"]),
            Err(ConfigError::BadPidsLimit(0))
        ));
        let c = parse(&[
            "--node-name",
            "edge-1",
            "--label",
            "zone=a",
            "--label",
            "tier=",
            "--taint",
            "dedicated=edge:NoSchedule",
            "--taint",
            "gpu:NoExecute",
            "--heartbeat-interval",
            "500ms",
        ])
        .unwrap();
        assert_eq!(c.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(c.labels.get("tier").map(String::as_str), Some(""));
        assert_eq!(c.taints[0].value, "edge");
        assert_eq!(c.taints[1].key, "gpu");
        assert_eq!(c.taints[1].effect, TaintEffect::NoExecute);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(500));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(matches!(parse(&[]), Err(ConfigError::MissingNodeName)));
        assert!(matches!(
            parse(&["--node-name", "a/b"]),
            Err(ConfigError::BadNodeName(_))
        ));
        assert!(matches!(
            parse(&["--node-name", "a", "--taint", "k=v:Sometimes"]),
            Err(ConfigError::BadTaint(_))
        ));
        assert!(matches!(
            parse(&["--node-name", "a", "--label", "=v"]),
            Err(ConfigError::BadLabel(_))
        ));
        assert!(matches!(
            parse(&["--node-name", "a", "--heartbeat-interval", "10 parsecs"]),
            Err(ConfigError::BadDuration(_))
        ));
    }

    #[test]
    fn file_values_fill_what_flags_leave_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "node-name = \"from-file\"\nmax-pods = 20\nlabel = [\"zone=b\"]\nhub = \"http://h:1\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["--config", p, "--max-pods", "30"]).unwrap();
        assert_eq!(c.node_name, "from-file");
        assert_eq!(c.max_pods, 30);
        assert_eq!(c.labels.get("zone").map(String::as_str), Some("b"));
        assert_eq!(c.hub.as_deref(), Some("http://h:1"));
        std::fs::write(&path, "nodename = \"typo\"\n").unwrap();
        assert!(matches!(
            parse(&["--config", p]),
            Err(ConfigError::Parse { .. })
        ));
    }
}
