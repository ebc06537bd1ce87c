//! The container runtime seam: what the agent asks of whatever runs containers (create
//! and start a pod's sandbox and containers, stop, remove, restart one container, list
//! what is there) and the plain data it observes. `main` picks the implementation.

pub mod linux;
mod records;
mod simulated;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use skiff_api::resources::Pod;

use crate::image::LocalImage;

pub use linux::{LinuxConfig, LinuxRuntime};
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
    #[error("pod {uid}: container {container} is not running")]
    NotRunning { uid: String, container: String },
    #[error("this runtime cannot {what}")]
    Unsupported { what: &'static str },
    #[error("pod {uid}: {message}")]
    Container { uid: String, message: String },
}

/// A pod to start, with the identity the runtime records so a later listing can be
/// matched to desired state.
#[derive(Debug, Clone, Copy)]
pub struct PodToStart<'a> {
    pub uid: &'a str,
    pub revision: u64,
    pub spec_hash: u64,
    pub pod: &'a Pod,
    /// The unpacked image of every container and init container, by image reference as
    /// written in the spec. The executor has pulled them all before asking for a start.
    pub images: &'a BTreeMap<String, LocalImage>,
}

/// A command to run inside a running container (`skiff exec`, exec probes).
#[derive(Debug)]
pub struct ExecRequest<'a> {
    pub uid: &'a str,
    pub container: &'a str,
    pub command: &'a [String],
    /// Where the process reads and writes: the caller keeps the other ends.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A process started by [`ContainerRuntime::exec`]. Shared: one thread may block in
/// [`ExecProcess::wait`] while another kills it.
pub trait ExecProcess: Send + Sync + std::fmt::Debug {
    /// Blocks until the process ends and returns its exit code (128 + signal when killed).
    fn wait(&self) -> Result<i32, RuntimeError>;
    /// Kills the process (SIGKILL) without waiting for it to end; works while another
    /// thread waits. A process still being started may be waited for until it exists.
    fn kill(&self) -> Result<(), RuntimeError>;
}

/// Runs pods. Implementations keep their own records so that pods outlive the agent
/// process: a restarted agent lists them and adopts them instead of starting them again.
pub trait ContainerRuntime: Send + Sync + std::fmt::Debug {
    /// Creates the sandbox and every container, and starts the first init container, or
    /// every container when there are none; the rest wait for
    /// [`ContainerRuntime::start_container`]. Replaces any pod with this uid.
    fn start_pod(&self, pod: PodToStart<'_>) -> Result<(), RuntimeError>;
    /// Starts a container of the pod that has not run yet ([`RunState::Waiting`]): the
    /// next init container, or the app containers once every init container completed.
    fn start_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        let _ = (uid, container);
        Err(RuntimeError::Unsupported {
            what: "start a waiting container",
        })
    }
    /// Stops every container; the pod stays listed, terminated, until removed.
    fn stop_pod(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Forgets a stopped pod and frees its sandbox.
    fn remove_pod(&self, uid: &str) -> Result<(), RuntimeError>;
    /// Starts an exited container again, counting the restart.
    fn restart_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError>;
    /// Kills one running container (its liveness or startup probe failed); it then shows
    /// as exited, and restarts only through [`ContainerRuntime::restart_container`].
    fn kill_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        let _ = (uid, container);
        Err(RuntimeError::Unsupported {
            what: "kill a single container",
        })
    }
    /// Whether its containers have anything for probes to reach. A runtime without
    /// processes answers false, and every probe then counts as passing.
    fn runs_probes(&self) -> bool {
        true
    }
    /// Every pod the runtime holds.
    fn list(&self) -> Result<Vec<ObservedPod>, RuntimeError>;
    /// Starts a process inside a running container.
    fn exec(&self, request: ExecRequest<'_>) -> Result<Box<dyn ExecProcess>, RuntimeError>;
    /// The network namespace the pod's containers share (`None`: the host's, or the
    /// runtime has none), for probes that connect to the pod.
    fn netns_path(&self, uid: &str) -> Option<PathBuf>;
    /// Where a container's output goes, so logs can be served without asking the runtime.
    fn log_paths(&self, uid: &str, container: &str) -> Option<LogPaths>;
}

/// The log files of one container: `current` is the file the running (or last) instance
/// writes, `rotated` the older pieces of that instance newest first, `previous` the file
/// of the instance before the last restart, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    pub current: PathBuf,
    pub rotated: Vec<PathBuf>,
    pub previous: Option<PathBuf>,
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
    /// Created with its pod but not started yet: an init container whose turn has not
    /// come, or an app container waiting for the init containers to complete.
    Waiting,
    Running {
        started_at: DateTime<Utc>,
    },
    Exited(Exit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub exit_code: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Why it ended, when the exit code alone does not say (out of memory, or the exit
    /// code was lost because the container ended while the agent was down).
    #[serde(default, skip_serializing_if = "ExitReason::is_plain")]
    pub reason: ExitReason,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExitReason {
    /// Completed (code 0) or Error.
    #[default]
    Plain,
    /// The kernel's OOM killer ended it.
    OomKilled,
    /// It ended while no agent watched it; the code is unknown (reported as 137).
    Unknown,
}

impl ExitReason {
    pub fn is_plain(&self) -> bool {
        *self == ExitReason::Plain
    }
}

impl ObservedPod {
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| matches!(c.state, RunState::Running { .. }))
    }
}
