//! A container's root filesystem: an overlay of the image's unpacked layers (read-only
//! lower dirs, shared by every container and image that uses them) and a writable upper
//! and work dir of the container's own, made fresh for every start.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The most the kernel accepts as mount data (one page).
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("rootfs {path}: mounting the overlay: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("rootfs {path}: the image has no layers")]
    NoLayers { path: PathBuf },
    #[error(
        "rootfs {path}: layer path {layer} cannot be an overlay lower dir (contains ':' or ',')"
    )]
    BadLayer { path: PathBuf, layer: PathBuf },
    #[error("rootfs {path}: the overlay options are {len} bytes, more than the kernel takes")]
    TooLong { path: PathBuf, len: usize },
}

/// The directories of one container's root filesystem under `dir`.
#[derive(Debug, Clone)]
pub(crate) struct Rootfs {
    pub merged: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Rootfs {
    pub fn at(dir: &Path) -> Rootfs {
        Rootfs {
            merged: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }
}

/// Mounts a fresh overlay of `layers` (bottom first) at `<dir>/rootfs`, discarding any
/// writable layer an earlier start left behind.
pub(crate) fn mount_overlay(dir: &Path, layers: &[PathBuf]) -> Result<Rootfs, RootfsError> {
    let r = Rootfs::at(dir);
    let io = |what, source| RootfsError::Io {
        path: dir.to_path_buf(),
        what,
        source,
    };
    if layers.is_empty() {
        return Err(RootfsError::NoLayers {
            path: dir.to_path_buf(),
        });
    }
    for l in layers {
        let s = l.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            return Err(RootfsError::BadLayer {
                path: dir.to_path_buf(),
                layer: l.clone(),
            });
        }
    }
    unmount(&r);
    for d in [&r.upper, &r.work] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| io("removing an old writable layer", e))?;
        }
    }
    for d in [&r.merged, &r.upper, &r.work] {
        std::fs::create_dir_all(d).map_err(|e| io("creating overlay dirs", e))?;
    }
    // The overlay's lowerdir lists the top layer first.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        r.upper.display(),
        r.work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooLong {
            path: dir.to_path_buf(),
            len: data.len(),
        });
    }
    mount(
        Some("overlay"),
        &r.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        path: r.merged.clone(),
        source,
    })?;
    Ok(r)
}

/// Unmounts the overlay (if mounted); the directories stay.
pub(crate) fn unmount(r: &Rootfs) {
    // Lazily: a container that is still being torn down may hold it a moment longer.
    while umount2(&r.merged, MntFlags::MNT_DETACH).is_ok() {}
}
