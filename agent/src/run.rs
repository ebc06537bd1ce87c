//! Starting agents from a configuration: one node, or `--simulate N` nodes sharing this
//! process and its tokio runtime, each with its own state dir, credentials, database,
//! simulated runtime and MQTT connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, error, info, info_span};

use crate::config::{AgentConfig, RuntimeKind};
use crate::image::{HubRegistry, ImageError, ImageStore, OciImageStore, OciStoreConfig};
use crate::node::HostPaths;
use crate::runtime::{ContainerRuntime, LinuxConfig, LinuxRuntime, RuntimeError, SimulatedRuntime};
use crate::state::{Credentials, CredentialsError, DbError, StateDb};
use crate::sync::{JoinError, LinkError, MqttLink, NodeAgent, Seq, join};

/// Where the simulated runtime keeps its records, inside a node's state dir.
const SIMULATED_DIR: &str = "simulated";
/// Where the Linux runtime keeps its records and container files, inside the state dir.
const CONTAINERS_DIR: &str = "containers";
/// Where the image store keeps blobs and unpacked layers, inside a node's state dir.
const IMAGES_DIR: &str = "images";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error("--registry-ca {path}: {message}")]
    RegistryCa { path: PathBuf, message: String },
    #[error("{failed} of {total} simulated agents could not start")]
    Simulated { failed: usize, total: usize },
}

/// Reads the node's credentials, joining the hub first when there are none.
fn credentials(
    state_dir: &Path,
    node: &str,
    hub: Option<&str>,
    token: Option<&str>,
) -> Result<Credentials, RunError> {
    std::fs::create_dir_all(state_dir).map_err(|source| RunError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    if let Some(c) = Credentials::load(state_dir)? {
        return Ok(c);
    }
    let hub = hub.ok_or(JoinError::NoHub)?;
    let token = token.ok_or(JoinError::NoToken)?;
    let mut creds = join(hub, token, node)?;
    creds.hub = Some(hub.to_string());
    creds.save(state_dir)?;
    info!(node, broker = %creds.broker, "joined the hub");
    Ok(creds)
}

/// Everything one node needs, ready to run.
fn prepare(
    cfg: &AgentConfig,
    node: &str,
    state_dir: &Path,
    creds: &Credentials,
    seq: Seq,
    connect_permits: Option<Arc<Semaphore>>,
) -> Result<NodeAgent, RunError> {
    let db = StateDb::open(state_dir)?;
    let runtime: Arc<dyn ContainerRuntime> = match cfg.runtime {
        RuntimeKind::Simulated => Arc::new(SimulatedRuntime::open(&state_dir.join(SIMULATED_DIR))?),
        RuntimeKind::Linux => {
            // The runtime re-executes this very binary as its single-threaded helper.
            let helper =
                std::fs::read_link("/proc/self/exe").map_err(|source| RunError::StateDir {
                    path: PathBuf::from("/proc/self/exe"),
                    source,
                })?;
            let mut rc = LinuxConfig::new(&state_dir.join(CONTAINERS_DIR), &helper);
            rc.cgroup_root = cfg.cgroup_root.clone();
            rc.cgroup_parent = cfg.cgroup_parent.clone();
            rc.pids_limit = cfg.pids_limit;
            rc.etc_dir = cfg.etc_dir.clone();
            let rt = LinuxRuntime::open(rc)?;
            info!(cgroups = ?rt.cgroup_version(), "linux container runtime ready");
            Arc::new(rt)
        }
    };
    let images = match cfg.runtime {
        RuntimeKind::Simulated => None,
        RuntimeKind::Linux => Some(image_store(cfg, state_dir, creds)?),
    };
    let (link, events) = MqttLink::start(creds, seq.clone(), connect_permits)?;
    Ok(NodeAgent {
        node: node.to_string(),
        db,
        runtime,
        link: Arc::new(link),
        events,
        seq,
        host: HostPaths {
            proc_dir: cfg.proc_dir.clone(),
            etc_dir: cfg.etc_dir.clone(),
        },
        max_pods: cfg.max_pods,
        internal_ip: cfg.internal_ip,
        broker: creds.broker_addr(),
        labels: cfg.labels.clone(),
        taints: cfg.taints.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        images,
    })
}

/// The node's image store: the hub is its default registry (names without a registry
/// host are the hub's), pulled from with the node's own login.
fn image_store(
    cfg: &AgentConfig,
    state_dir: &Path,
    creds: &Credentials,
) -> Result<Arc<dyn ImageStore>, RunError> {
    let mut sc = OciStoreConfig::new(state_dir.join(IMAGES_DIR));
    if let Some(url) = cfg.hub.clone().or_else(|| creds.hub.clone()) {
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        sc.default_registry = Some(host);
        sc.registry.hub = Some(HubRegistry {
            url,
            username: creds.username.clone(),
            password: creds.password.clone(),
        });
    }
    sc.registry.mirrors = cfg.registry_mirrors.clone();
    sc.registry.plain_http = cfg.insecure_registries.iter().cloned().collect();
    if cfg.registry_cas.is_empty() {
        sc.registry.ca_certs = crate::image::system_roots();
        if sc.registry.ca_certs.is_empty() {
            tracing::warn!(
                bundle = crate::image::SYSTEM_CA_BUNDLE,
                "no CA certificates found: https registries will fail until the bundle is \
                 installed or --registry-ca is given"
            );
        }
    }
    for path in &cfg.registry_cas {
        let certs = crate::image::load_ca_file(path).map_err(|message| RunError::RegistryCa {
            path: path.clone(),
            message,
        })?;
        sc.registry.ca_certs.extend(certs);
    }
    Ok(Arc::new(OciImageStore::open(sc)?))
}

/// The name of simulated agent `i` of `n`: `<base>-<i>`, zero-padded to the width of
/// the largest index so names sort in order.
pub fn simulated_name(base: &str, i: u32, n: u32) -> String {
    let width = n.saturating_sub(1).max(1).to_string().len();
    format!("{base}-{i:0width$}")
}

/// Runs the configured agent(s) until `shutdown` resolves. A single agent that cannot
/// join or open its state is an error; with `--simulate` each failure is logged and
/// the rest keep running.
/// How long the agent must have been quiet (after start-up, or after applying desired
/// state) before it gives back the code pages that work faulted in.
const PAGES_QUIET: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let Some(n) = cfg.simulate else {
        let creds = {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || {
                credentials(
                    &cfg.state_dir,
                    &cfg.node_name,
                    cfg.hub.as_deref(),
                    cfg.token.as_deref(),
                )
            })
            .await
            .expect("join task")?
        };
        let agent = prepare(
            &cfg,
            &cfg.node_name,
            &cfg.state_dir,
            &creds,
            Seq::from_clock(),
            None,
        )?;
        info!(node = %cfg.node_name, "agent started");
        if !cfg.keep_code_pages {
            tokio::spawn(crate::node::pages::give_back_when_quiet(PAGES_QUIET));
        }
        agent.run(shutdown).await;
        return Ok(());
    };

    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(cfg.connect_concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let cfg = cfg.clone();
        let permits = permits.clone();
        let stop = stopped(stop_rx.clone());
        let name = simulated_name(&cfg.node_name, i, n);
        let span = info_span!("simulated", node = %name);
        tasks.spawn(
            async move {
                let dir = cfg.state_dir.join(&name);
                let creds = {
                    let _permit = permits.acquire().await.expect("semaphore open");
                    let (dir, name, cfg) = (dir.clone(), name.clone(), cfg.clone());
                    tokio::task::spawn_blocking(move || {
                        credentials(&dir, &name, cfg.hub.as_deref(), cfg.token.as_deref())
                    })
                    .await
                    .expect("join task")
                };
                let agent = creds.and_then(|creds| {
                    prepare(&cfg, &name, &dir, &creds, Seq::from_clock(), Some(permits))
                });
                match agent {
                    Ok(agent) => {
                        agent.run(stop).await;
                        true
                    }
                    Err(e) => {
                        error!(error = %e, "simulated agent cannot start");
                        false
                    }
                }
            }
            .instrument(span),
        );
    }
    info!(agents = n, "simulated agents starting");
    shutdown.await;
    let _ = stop_tx.send(true);
    let mut failed = 0;
    while let Some(res) = tasks.join_next().await {
        if !matches!(res, Ok(true)) {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(RunError::Simulated {
            failed,
            total: n as usize,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_names_are_zero_padded() {
        assert_eq!(simulated_name("edge", 0, 1), "edge-0");
        assert_eq!(simulated_name("edge", 7, 10), "edge-7");
        assert_eq!(simulated_name("edge", 7, 11), "edge-07");
        assert_eq!(simulated_name("edge", 42, 5000), "edge-0042");
    }
}
