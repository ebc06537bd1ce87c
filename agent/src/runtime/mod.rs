//! The container runtime seam: what the agent asks of whatever runs containers (create
//! and start a pod's sandbox and containers, stop, remove, restart one container, list
//! what is there) and the plain data it observes. `main` picks the implementation.

mod simulated;

use chrono::{DateTime, Utc};
use skiff_api::resources::Pod;

pub use simulated::{SIMULATE_EXIT_CODE, SimulatedRuntime};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime records in {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("runtime record {path} is unreadable: {message}")]
    Corrupt {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("pod {uid} is not known to the runtime")]
    NoSuchPod { uid: String },
    #[error("pod {uid} has no container {container}")]
    NoSuchContainer { uid: String, container: String },
}

/// A pod to start, with the identity the runtime records so a later listing can be
/// matched to desired state.
#[derive(Debug, Clone, Copy)]
pub struct PodToStart<'a> {
    pub uid: &'a str,
    pub revision: u64,
    pub spec_hash: u64,
    pub pod: &'a Pod,
}

/// Runs pods. Implementations keep their own records so that pods outlive the agent
/// process: a restarted agent lists them and adopts them instead of starting them again.
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug {
    /// Creates the sandbox and starts every container. Replaces any pod with this uid.
    fn start_pod(&self, pod: PodToStart<'_>) -> Result<(), RuntimeError>;
    /// Stops every container; the pod stays listed, terminated, until removed.
    fn stop_pod(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Forgets a stopped pod and frees its sandbox.
    fn remove_pod(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Starts an exited container again, counting the restart.
    fn restart_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError>;
    /// Every pod the runtime holds.
    fn list(&self) -> Result<Vec<ObservedPod>, RuntimeError>;
}

/// A pod as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The revision of the desired pod it was started from.
    pub revision: u64,
    /// Hash of the spec it was started from (see [`crate::reconcile::spec_hash`]).
    pub spec_hash: u64,
    pub started_at: DateTime<Utc>,
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub init_containers: Vec<ObservedContainer>,
    pub containers: Vec<ObservedContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedContainer {
    pub name: String,
    pub image: String,
    pub container_id: String,
    pub restart_count: i32,
    pub state: RunState,
    /// How the previous run ended, once the container has restarted.
    pub last_exit: Option<Exit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum RunState {
    Running { started_at: DateTime<Utc> },
    Exited(Exit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub exit_code: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl ObservedPod {
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| matches!(c.state, RunState::Running { .. }))
    }
}
