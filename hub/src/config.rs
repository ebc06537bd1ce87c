//! `skiff-hub` settings: the command line, the environment, an optional TOML file and
//! defaults, resolved in that order of precedence (flag > environment > file > default).
//!
//! | flag | environment | file key | default |
//! |---|---|---|---|
//! | `--data-dir` | `SKIFF_HUB_DATA_DIR` | `data-dir` | `/var/lib/skiff-hub` |
//! | `--listen` | `SKIFF_HUB_LISTEN` | `listen` | `127.0.0.1:6443` (loopback only: exposing the API is a choice) |
//! | `--config` | `SKIFF_HUB_CONFIG` | | `DATA_DIR/hub.toml` when that file exists |
//! | `--body-limit` | `SKIFF_HUB_BODY_LIMIT` | `body-limit` | `3Mi` (bytes, or with a `Ki`/`Mi`/`Gi` suffix) |
//! | `--history-retention` | `SKIFF_HUB_HISTORY_RETENTION` | `history-retention` | 50000 revisions |
//! | `--log-format` | `SKIFF_HUB_LOG_FORMAT` | `log-format` | `text` (or `json`) |
//! | `--log-level` | `RUST_LOG` | `log-level` | `info` (any `tracing` env-filter directive) |
//! | `--mqtt-listen` | `SKIFF_HUB_MQTT_LISTEN` | `mqtt-listen` | `127.0.0.1:1883` (the embedded broker; port 0 picks one) |
//! | `--mqtt-advertise` | `SKIFF_HUB_MQTT_ADVERTISE` | `mqtt-advertise` | `mqtt://<the embedded broker's address>` (what joining agents are told) |
//! | `--broker` | `SKIFF_HUB_BROKER` | `broker` | none: use the embedded broker. `mqtt://HOST[:PORT]` uses an external one |
//! | `--broker-username` | `SKIFF_HUB_BROKER_USERNAME` | `broker-username` | the hub's login on the external broker |
//! | `--broker-password` | `SKIFF_HUB_BROKER_PASSWORD` | `broker-password` | |
//! | `--node-grace` | `SKIFF_HUB_NODE_GRACE` | `node-grace` | `40s`: time without heartbeat before a node's Ready is Unknown |
//! | `--registry-anonymous-pull` | `SKIFF_HUB_REGISTRY_ANONYMOUS_PULL` | `registry-anonymous-pull` | `false`: pulls from `/v2/` need the admin token or a node's login |
//! | `--image-import-limit` | `SKIFF_HUB_IMAGE_IMPORT_LIMIT` | `image-import-limit` | `4Gi`: largest image archive `skiff image import` may send |
//!
//! The default config file is looked up in the data directory chosen by flag,
//! environment or default (the file itself cannot move it there); a `--config` that
//! does not exist is an error.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::dispatch::BrokerUrl;
use crate::nodes::DEFAULT_NODE_GRACE;
use crate::server::DEFAULT_BODY_LIMIT;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/skiff-hub";
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6443));
pub const CONFIG_FILE_NAME: &str = "hub.toml";
/// Revisions of history kept for watches to resume from.
pub const DEFAULT_HISTORY_RETENTION: u64 = 50_000;
// The embedded broker logs every connect and subscribe at info: with thousands of devices
// that drowns the hub's own lines, so it is held to warnings unless asked.
pub const DEFAULT_LOG_LEVEL: &str = "info,rumqttd=warn";
pub const DEFAULT_MQTT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1883));

/// The `skiff-hub` command line.
#[derive(Debug, Parser)]
#[command(
    name = "skiff-hub",
    version,
    about = "Skiff hub: API server and state store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server until SIGTERM or SIGINT.
    Serve(Box<ServeArgs>),
    /// Join tokens for new nodes.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Ask the running hub for a join token and print it.
    Create(TokenCreateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    /// How long the token stays valid, e.g. 24h, 30m, 3600s.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,
    /// How many nodes may join with it.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
    /// The hub's data directory (for the admin token).
    #[arg(long, env = "SKIFF_HUB_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The hub's API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:6443")]
    pub server: String,
}

/// Flags of `skiff-hub serve`; each can also come from the environment.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// Directory for the database and the admin token (created with mode 0700).
    #[arg(long, env = "SKIFF_HUB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (printed at startup).
    #[arg(long, env = "SKIFF_HUB_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TOML config file [default: DATA_DIR/hub.toml, if present].
    #[arg(long, env = "SKIFF_HUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest accepted request body, e.g. 3145728 or 3Mi.
    #[arg(long, env = "SKIFF_HUB_BODY_LIMIT", value_name = "BYTES", value_parser = parse_size)]
    pub body_limit: Option<usize>,
    /// Revisions of history kept so watches can resume.
    #[arg(long, env = "SKIFF_HUB_HISTORY_RETENTION", value_name = "REVISIONS")]
    pub history_retention: Option<u64>,
    /// Log line format.
    #[arg(long, env = "SKIFF_HUB_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `skiff_hub=debug,info`.
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Where the embedded MQTT broker listens [default: 127.0.0.1:1883].
    #[arg(long, env = "SKIFF_HUB_MQTT_LISTEN", value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    /// The broker URL joining agents are told [default: mqtt://<mqtt-listen>].
    #[arg(long, env = "SKIFF_HUB_MQTT_ADVERTISE", value_name = "URL")]
    pub mqtt_advertise: Option<String>,
    /// Use an external broker (mqtt://HOST[:PORT]) instead of the embedded one.
    #[arg(long, env = "SKIFF_HUB_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// The hub's user name on the external broker.
    #[arg(long, env = "SKIFF_HUB_BROKER_USERNAME", value_name = "USER")]
    pub broker_username: Option<String>,
    /// The hub's password on the external broker.
    #[arg(long, env = "SKIFF_HUB_BROKER_PASSWORD", value_name = "PASSWORD")]
    pub broker_password: Option<String>,
    /// Time without a heartbeat before a node's Ready condition becomes Unknown.
    #[arg(long, env = "SKIFF_HUB_NODE_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub node_grace: Option<std::time::Duration>,
    /// Let anyone pull images from the registry at /v2/, without credentials.
    #[arg(long, env = "SKIFF_HUB_REGISTRY_ANONYMOUS_PULL")]
    pub registry_anonymous_pull: bool,
    /// Largest image archive accepted by `skiff image import`, e.g. 4Gi.
    #[arg(long, env = "SKIFF_HUB_IMAGE_IMPORT_LIMIT", value_name = "BYTES", value_parser = parse_size)]
    pub image_import_limit: Option<usize>,
}

/// Which broker the hub uses.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerMode {
    /// rumqttd inside the hub.
    Embedded {
        listen: SocketAddr,
        /// The URL agents are told; `None`: `mqtt://` and the listen address.
        advertise: Option<String>,
    },
    /// Any MQTT broker; with Mosquitto's dynamic security plugin the hub keeps per-node
    /// clients and roles there.
    External {
        url: BrokerUrl,
        username: Option<String>,
        password: Option<String>,
    },
}

impl std::fmt::Debug for BrokerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerMode::Embedded { listen, advertise } => f
                .debug_struct("Embedded")
                .field("listen", listen)
                .field("advertise", advertise)
                .finish(),
            BrokerMode::External { url, username, .. } => f
                .debug_struct("External")
                .field("url", url)
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How the hub logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive.
    pub filter: String,
}

/// Every setting of a running hub, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub body_limit: usize,
    pub history_retention: u64,
    pub log: LogConfig,
    pub broker: BrokerMode,
    pub node_grace: std::time::Duration,
    pub registry_anonymous_pull: bool,
    pub image_import_limit: u64,
}

/// Why the settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: body-limit: {message}")]
    Size { path: PathBuf, message: String },
    #[error("log filter {filter:?}: {source}")]
    LogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("broker: {0}")]
    Broker(#[from] crate::dispatch::UrlError),
    #[error("config file {path}: node-grace: {message}")]
    Duration { path: PathBuf, message: String },
    #[error("--mqtt-listen and --mqtt-advertise apply to the embedded broker, not with --broker")]
    BrokerConflict,
    #[error("installing the log subscriber: {0}")]
    LogInit(#[source] tracing_subscriber::util::TryInitError),
}

impl LogConfig {
    /// Installs the global tracing subscriber. Logs go to stderr, so stdout carries
    /// only what the hub prints for people and scripts (the startup line).
    pub fn install(&self) -> Result<(), ConfigError> {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::{EnvFilter, fmt};

        let filter = EnvFilter::try_new(&self.filter).map_err(|source| ConfigError::LogFilter {
            filter: self.filter.clone(),
            source,
        })?;
        let registry = tracing_subscriber::registry().with(filter);
        match self.format {
            // Colours only on a terminal: under systemd the journal gets plain text.
            LogFormat::Text => registry
                .with(
                    fmt::layer()
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .with_writer(std::io::stderr),
                )
                .try_init(),
            LogFormat::Json => registry
                .with(fmt::layer().json().with_writer(std::io::stderr))
                .try_init(),
        }
        .map_err(ConfigError::LogInit)
    }
}

/// The TOML file's contents. Keys are the long flag names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    body_limit: Option<SizeValue>,
    history_retention: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    mqtt_listen: Option<SocketAddr>,
    mqtt_advertise: Option<String>,
    broker: Option<String>,
    broker_username: Option<String>,
    broker_password: Option<String>,
    node_grace: Option<String>,
    registry_anonymous_pull: Option<bool>,
    image_import_limit: Option<SizeValue>,
}

/// A size in a file: a number of bytes or a string with a suffix.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(usize),
    Text(String),
}

/// Parses `1048576`, `512Ki`, `3Mi`, `1Gi`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with Ki, Mi or Gi)"))?;
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use Ki, Mi or Gi)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `40s`, `500ms`, `2m`, `24h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 40s, 500ms, 2m, 24h)"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
    .ok_or_else(|| format!("{s:?} is too long"))?;
    Ok(std::time::Duration::from_millis(ms))
}

impl HubConfig {
    /// Resolves the settings, reading the config file if one applies.
    pub fn resolve(args: ServeArgs) -> Result<HubConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => Some((path.clone(), read_file(path)?)),
            None => {
                let dir = args
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let path = dir.join(CONFIG_FILE_NAME);
                if path.is_file() {
                    Some((path.clone(), read_file(&path)?))
                } else {
                    None
                }
            }
        };
        let (path, file) = match file {
            Some((p, f)) => (p, f),
            None => (PathBuf::new(), FileConfig::default()),
        };
        merge(args, file, &path)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn merge(args: ServeArgs, file: FileConfig, path: &Path) -> Result<HubConfig, ConfigError> {
    let file_body_limit = match file.body_limit {
        None => None,
        Some(SizeValue::Bytes(n)) => Some(n),
        Some(SizeValue::Text(s)) => Some(parse_size(&s).map_err(|message| ConfigError::Size {
            path: path.to_path_buf(),
            message,
        })?),
    };
    let file_grace = match file.node_grace {
        None => None,
        Some(s) => Some(parse_duration(&s).map_err(|message| ConfigError::Duration {
            path: path.to_path_buf(),
            message,
        })?),
    };
    let file_import_limit = match file.image_import_limit {
        None => None,
        Some(SizeValue::Bytes(n)) => Some(n),
        Some(SizeValue::Text(s)) => Some(parse_size(&s).map_err(|message| ConfigError::Size {
            path: path.to_path_buf(),
            message,
        })?),
    };
    let listen = args.mqtt_listen.or(file.mqtt_listen);
    let advertise = args.mqtt_advertise.or(file.mqtt_advertise);
    let broker = match args.broker.or(file.broker) {
        None => BrokerMode::Embedded {
            listen: listen.unwrap_or(DEFAULT_MQTT_LISTEN),
            advertise,
        },
        Some(url) => {
            if listen.is_some() || advertise.is_some() {
                return Err(ConfigError::BrokerConflict);
            }
            BrokerMode::External {
                url: BrokerUrl::parse(&url)?,
                username: args.broker_username.or(file.broker_username),
                password: args.broker_password.or(file.broker_password),
            }
        }
    };
    Ok(HubConfig {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        listen: args.listen.or(file.listen).unwrap_or(DEFAULT_LISTEN),
        body_limit: args
            .body_limit
            .or(file_body_limit)
            .unwrap_or(DEFAULT_BODY_LIMIT),
        history_retention: args
            .history_retention
            .or(file.history_retention)
            .unwrap_or(DEFAULT_HISTORY_RETENTION),
        log: LogConfig {
            format: args.log_format.or(file.log_format).unwrap_or_default(),
            filter: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string()),
        },
        broker,
        node_grace: args.node_grace.or(file_grace).unwrap_or(DEFAULT_NODE_GRACE),
        registry_anonymous_pull: args.registry_anonymous_pull
            || file.registry_anonymous_pull.unwrap_or(false),
        image_import_limit: args
            .image_import_limit
            .or(file_import_limit)
            .map_or(crate::registry::DEFAULT_IMPORT_LIMIT, |n| n as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("3Mi"), Ok(3 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert!(parse_size("3MB").is_err());
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let cfg = HubConfig::resolve(args).unwrap();
        assert_eq!(cfg.data_dir, dir.path());
        assert_eq!(cfg.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(cfg.body_limit, 3 * 1024 * 1024);
        assert_eq!(cfg.history_retention, DEFAULT_HISTORY_RETENTION);
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert_eq!(cfg.log.filter, DEFAULT_LOG_LEVEL);
    }

    #[test]
    fn the_file_in_the_data_dir_is_read_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "listen = \"0.0.0.0:7000\"\nbody-limit = \"1Mi\"\nhistory-retention = 10\nlog-format = \"json\"\nlog-level = \"debug\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            history_retention: Some(99),
            ..ServeArgs::default()
        };
        let cfg = HubConfig::resolve(args).unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(cfg.body_limit, 1 << 20);
        assert_eq!(cfg.history_retention, 99);
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.log.filter, "debug");
    }

    #[test]
    fn an_explicit_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ServeArgs {
            config: Some(dir.path().join("nope.toml")),
            ..ServeArgs::default()
        };
        assert!(matches!(
            HubConfig::resolve(missing),
            Err(ConfigError::Read { .. })
        ));
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        let bad = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let err = HubConfig::resolve(bad).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");

        std::fs::write(&path, "data-dir = \"/srv/hub\"\nbody-limit = 4096\n").unwrap();
        let cfg = HubConfig::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(cfg.data_dir, Path::new("/srv/hub"));
        assert_eq!(cfg.body_limit, 4096);
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "skiff-hub",
            "serve",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "127.0.0.1:0",
            "--body-limit",
            "2Mi",
            "--log-format",
            "json",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(args.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(args.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(args.body_limit, Some(2 << 20));
        assert_eq!(args.log_format, Some(LogFormat::Json));
        assert!(Cli::try_parse_from(["skiff-hub", "serve", "--body-limit", "lots"]).is_err());
    }

    #[test]
    fn broker_flags() {
        let dir = tempfile::tempdir().unwrap();
        let base = ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..ServeArgs::default()
        };
        let cfg = HubConfig::resolve(base.clone()).unwrap();
        assert_eq!(
            cfg.broker,
            BrokerMode::Embedded {
                listen: DEFAULT_MQTT_LISTEN,
                advertise: None
            }
        );
        assert_eq!(cfg.node_grace, std::time::Duration::from_secs(40));
        let ext = HubConfig::resolve(ServeArgs {
            broker: Some("mqtt://mosq:1884".into()),
            broker_username: Some("hub".into()),
            node_grace: Some(std::time::Duration::from_secs(5)),
            ..base.clone()
        })
        .unwrap();
        assert!(matches!(ext.broker, BrokerMode::External { ref url, .. } if url.port == 1884));
        assert_eq!(ext.node_grace, std::time::Duration::from_secs(5));
        assert!(matches!(
            HubConfig::resolve(ServeArgs {
                broker: Some("mqtt://mosq".into()),
                mqtt_listen: Some("127.0.0.1:1".parse().unwrap()),
                ..base.clone()
            }),
            Err(ConfigError::BrokerConflict)
        ));
        assert!(
            HubConfig::resolve(ServeArgs {
                broker: Some("http://x".into()),
                ..base
            })
            .is_err()
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("24h"),
            Ok(std::time::Duration::from_secs(86400))
        );
        assert_eq!(parse_duration("7"), Ok(std::time::Duration::from_secs(7)));
        assert!(parse_duration("1d").is_err());
        let cli =
            Cli::try_parse_from(["skiff-hub", "token", "create", "--ttl", "1h", "--uses", "3"])
                .unwrap();
        let Command::Token(TokenCommand::Create(t)) = cli.command else {
            panic!("token create expected")
        };
        assert_eq!((t.ttl.as_secs(), t.uses), (3600, 3));
    }
}
