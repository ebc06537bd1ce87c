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

/// Directories every container mounts something on (/dev, /proc, /sys) or creates files
/// in (/etc), and the files of /etc the runtime bind-mounts.
const MOUNTPOINT_DIRS: [&str; 4] = ["dev", "etc", "proc", "sys"];
const MOUNTPOINT_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// Makes (or completes) the mount-point layer in `dir`: the empty directories and files
/// above, shared read-only by every container as its topmost lower layer. With it, the
/// targets of the runtime's mounts exist in every root filesystem, so starting a
/// container copies nothing up and creates nothing in its writable layer (on the disk).
/// Docker's per-container init layer serves the same end.
pub(crate) fn make_mountpoints(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for d in MOUNTPOINT_DIRS {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir.join(d))?;
    }
    for f in MOUNTPOINT_FILES {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(dir.join(f))?;
    }
    Ok(())
}

/// Whether the mount-point layer may go over an image's `layers` (bottom first): each of
/// its top-level directories must be a directory (or absent) where the image has it. An
/// image whose /etc is a symbolic link, say, would otherwise see it hidden.
pub(crate) fn mountpoints_fit(layers: &[PathBuf]) -> bool {
    use std::os::unix::fs::FileTypeExt;
    MOUNTPOINT_DIRS.iter().all(|name| {
        // The topmost layer that has the name decides; a whiteout (a character device)
        // means the image removed it, which leaves it free.
        layers
            .iter()
            .rev()
            .find_map(|l| std::fs::symlink_metadata(l.join(name)).ok())
            .is_none_or(|m| m.is_dir() || m.file_type().is_char_device())
    })
}

/// Makes a container's overlay directories under `dir` fresh: unmounts a leftover
/// overlay and discards the writable layer an earlier start left behind.
pub(crate) fn renew_dirs(dir: &Path) -> Result<Rootfs, RootfsError> {
    let r = Rootfs::at(dir);
    let io = |what, source| RootfsError::Io {
        path: dir.to_path_buf(),
        what,
        source,
    };
    unmount(&r);
    for d in [&r.upper, &r.work] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| io("removing an old writable layer", e))?;
        }
    }
    for d in [&r.merged, &r.upper, &r.work] {
        std::fs::create_dir_all(d).map_err(|e| io("creating overlay dirs", e))?;
    }
    Ok(r)
}

/// Mounts an overlay of `layers` (bottom first), under `top` when given, at
/// `<dir>/rootfs`, over the fresh directories [`renew_dirs`] made.
pub(crate) fn mount_overlay(
    dir: &Path,
    layers: &[PathBuf],
    top: Option<&Path>,
) -> Result<Rootfs, RootfsError> {
    let r = Rootfs::at(dir);
    if layers.is_empty() {
        return Err(RootfsError::NoLayers {
            path: dir.to_path_buf(),
        });
    }
    for l in layers.iter().map(PathBuf::as_path).chain(top) {
        let s = l.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            return Err(RootfsError::BadLayer {
                path: dir.to_path_buf(),
                layer: l.to_path_buf(),
            });
        }
    }
    // The overlay's lowerdir lists the top layer first.
    let lower: Vec<String> = top
        .into_iter()
        .chain(layers.iter().rev().map(PathBuf::as_path))
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        r.upper.display(),
        r.work.display()
    );
    let volatile = format!("{data},volatile");
    if volatile.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooLong {
            path: dir.to_path_buf(),
            len: volatile.len(),
        });
    }
    // `volatile`: the writable layer is thrown away whenever the container ends (a
    // restart gets a fresh one), so flushing it buys nothing; without the option every
    // sync in the container and the unmount at its end would flush the whole upper
    // filesystem. Kernels before 5.10 do not know it.
    let overlay = |data: &str| {
        mount(
            Some("overlay"),
            &r.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data),
        )
    };
    match overlay(&volatile) {
        Err(nix::errno::Errno::EINVAL) => overlay(&data),
        other => other,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let l = root.join(name);
        std::fs::create_dir_all(&l).unwrap();
        l
    }

    #[test]
    fn the_mountpoint_layer_holds_the_targets_and_is_made_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("mp");
        make_mountpoints(&top).unwrap();
        std::fs::write(top.join("etc/hosts"), b"kept").unwrap();
        make_mountpoints(&top).unwrap();
        for d in MOUNTPOINT_DIRS {
            assert!(top.join(d).is_dir(), "{d}");
        }
        for f in MOUNTPOINT_FILES {
            assert!(top.join(f).is_file(), "{f}");
        }
        // A second make neither fails nor truncates.
        assert_eq!(std::fs::read(top.join("etc/hosts")).unwrap(), b"kept");
    }

    #[test]
    fn the_mountpoint_layer_fits_only_where_the_image_has_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // No layer has any of the names: it fits.
        let bare = layer(root, "bare");
        assert!(mountpoints_fit(std::slice::from_ref(&bare)));
        // Directories: it fits.
        let dirs = layer(root, "dirs");
        for d in ["etc", "proc", "dev"] {
            std::fs::create_dir(dirs.join(d)).unwrap();
        }
        assert!(mountpoints_fit(&[bare.clone(), dirs.clone()]));
        // /etc a symbolic link in the top layer that has it: it would be hidden.
        let link = layer(root, "link");
        std::os::unix::fs::symlink("usr/etc", link.join("etc")).unwrap();
        assert!(!mountpoints_fit(&[dirs.clone(), link.clone()]));
        // The topmost layer decides: a directory above the link fits again.
        assert!(mountpoints_fit(&[link.clone(), dirs.clone()]));
        // /proc a plain file: no.
        let file = layer(root, "file");
        std::fs::write(file.join("proc"), b"").unwrap();
        assert!(!mountpoints_fit(&[dirs.clone(), file]));
        // A whiteout (character device 0/0) over the link: the image removed /etc.
        let whiteout = layer(root, "whiteout");
        nix::sys::stat::mknod(
            &whiteout.join("etc"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .expect("mknod of a whiteout (the tests run as root)");
        assert!(mountpoints_fit(&[link, whiteout]));
    }
}
