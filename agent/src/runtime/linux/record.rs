//! The runtime's records: one JSON file per pod under `<state>/records/`, written
//! atomically (temp file, fsync, rename, fsync of the directory) before the runtime acts
//! on it, so a restarted agent finds every container it started and adopts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::runtime::{ObservedPod, RuntimeError, records};

/// What the runtime remembers of a pod.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodRecord {
    pub observed: ObservedPod,
    pub host_network: bool,
    pub grace_secs: u64,
    /// tmpfs mounts of emptyDir volumes with medium Memory.
    #[serde(default)]
    pub tmpfs: Vec<PathBuf>,
    /// By container name (init and app containers).
    pub containers: BTreeMap<String, ContainerRecord>,
}

/// What the runtime remembers of one container beyond what it reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerRecord {
    /// libcontainer's id.
    pub id: String,
    pub cgroups_path: String,
    /// The image's layers, bottom first, for mounting a fresh rootfs on restart.
    pub layers: Vec<PathBuf>,
    /// The init process while it runs (or ran, until its exit is recorded).
    pub pid: Option<i32>,
    /// The pid's start time (clock ticks after boot), telling it from a recycled pid.
    pub pid_start: Option<u64>,
}

pub(crate) fn record_dir(state: &Path) -> PathBuf {
    state.join("records")
}

pub(crate) use crate::runtime::records::safe_name;

pub(crate) fn path_for(state: &Path, uid: &str) -> PathBuf {
    record_dir(state).join(format!("{}.json", safe_name(uid)))
}

pub(crate) fn write(state: &Path, rec: &PodRecord) -> Result<(), RuntimeError> {
    records::write_json(&record_dir(state), &path_for(state, &rec.observed.uid), rec)
}

pub(crate) fn remove(state: &Path, uid: &str) -> Result<(), RuntimeError> {
    records::remove(&path_for(state, uid))
}

pub(crate) fn read_all(state: &Path) -> Result<Vec<PodRecord>, RuntimeError> {
    let dir = record_dir(state);
    let io = |source| RuntimeError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        let rec: PodRecord = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot.
pub(crate) fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
