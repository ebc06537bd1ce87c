//! What the runtime itself reads from the cgroup tree: which hierarchy the host uses
//! (v1, possibly hybrid, or v2, detected once at startup), the OOM-kill counter of a
//! container's memory cgroup, and whether a container's cgroup is gone. libcontainer
//! creates, limits and removes the cgroups.

use std::path::{Path, PathBuf};

/// The kernel's magic number for a cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy or hybrid: one hierarchy per controller.
    V1,
    /// Unified hierarchy.
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup root {path}: {source}")]
    Stat { path: PathBuf, source: nix::Error },
}

/// Which cgroup hierarchy is mounted at `root` (normally /sys/fs/cgroup).
pub fn detect(root: &Path) -> Result<CgroupVersion, CgroupError> {
    let st = nix::sys::statfs::statfs(root).map_err(|source| CgroupError::Stat {
        path: root.to_path_buf(),
        source,
    })?;
    #[allow(clippy::unnecessary_cast)] // the field's type differs between architectures
    let magic = st.filesystem_type().0 as i64;
    Ok(if magic == CGROUP2_SUPER_MAGIC {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    })
}

/// The directories that hold a cgroup at `path` (relative to the hierarchy roots).
pub(crate) fn dirs(root: &Path, version: CgroupVersion, path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => vec![root.join(rel)],
        CgroupVersion::V1 => [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio",
        ]
        .iter()
        .map(|c| root.join(c).join(rel))
        .filter(|p| p.parent().is_some_and(|d| d.exists()) || p.exists())
        .collect(),
    }
}

/// How many times the kernel's OOM killer has killed a process of the cgroup.
pub(crate) fn oom_kills(root: &Path, version: CgroupVersion, path: &str) -> u64 {
    let rel = path.trim_start_matches('/');
    let file = match version {
        CgroupVersion::V1 => root.join("memory").join(rel).join("memory.oom_control"),
        CgroupVersion::V2 => root.join(rel).join("memory.events"),
    };
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Removes what is left of a cgroup after its container is deleted (libcontainer
/// removes the ones it knows; a crashed create can leave empty ones behind).
pub(crate) fn remove_leftovers(root: &Path, version: CgroupVersion, path: &str) {
    for d in dirs(root, version, path) {
        if d.exists() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Whether any directory of a cgroup exists.
pub fn exists(root: &Path, version: CgroupVersion, path: &str) -> bool {
    dirs(root, version, path).iter().any(|d| d.exists())
}
