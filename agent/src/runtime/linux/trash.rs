//! Directories of removed pods, deleted in the background. Removing a pod renames its
//! directories into a `trash` directory on the same filesystem (one rename, after which
//! nothing of the pod is reachable under its own name) and a low-priority thread deletes
//! them: unlinking a container's writable layer, logs and volumes costs an inode free
//! (and on many flash devices a discard) per file, which need not delay the removal.
//! Whatever a crash or a stopped runtime leaves in a trash directory is deleted the next
//! time the runtime opens.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::busy::Busy;
use super::sys;

/// The name of the trash directory under each of the runtime's directories.
pub(crate) const TRASH: &str = "trash";

/// Niceness of the deleting thread: it yields to container starts and the agent.
const NICE: i32 = 10;

/// The longest a deletion waits for the starts under way.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Trash {
    queue: Mutex<Sender<PathBuf>>,
    seq: AtomicU64,
    dirs: Vec<PathBuf>,
}

impl Trash {
    /// Starts the deleting thread and hands it what `dirs` (trash directories, made
    /// when missing) still hold. It deletes while `busy` has no start under way, and
    /// offers each directory to `recycle` first, which may take it instead.
    pub fn open(
        dirs: &[PathBuf],
        busy: Arc<Busy>,
        recycle: impl Fn(&Path) -> bool + Send + 'static,
    ) -> std::io::Result<Trash> {
        let (tx, rx) = channel::<PathBuf>();
        for d in dirs {
            std::fs::create_dir_all(d)?;
            for e in std::fs::read_dir(d)? {
                let _ = tx.send(e?.path());
            }
        }
        std::thread::Builder::new()
            .name("skiff-rt-trash".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                if let Err(e) = sys::set_thread_nice(NICE) {
                    warn!(error = %e, "cannot lower the priority of the trash thread");
                }
                for p in rx {
                    busy.wait_idle(MAX_WAIT);
                    if unmount_under(&p) && !recycle(&p) {
                        remove(&p);
                    }
                }
            })?;
        Ok(Trash {
            queue: Mutex::new(tx),
            seq: AtomicU64::new(0),
            dirs: dirs.to_vec(),
        })
    }

    /// Unmounts what the trash still holds mounted, for a runtime that closes: its
    /// directories may wait for the next runtime, its mounts should not.
    pub fn unmount_all(&self) {
        for d in &self.dirs {
            unmount_under(d);
        }
    }

    /// Takes `dir` (or a file) out of the way for deletion: renamed into `trash` (on the
    /// same filesystem) when it can be, deleted here otherwise. A missing one is fine.
    pub fn discard(&self, dir: &Path, trash: &Path) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = trash.join(format!(
            "{name}.{}.{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::rename(dir, &target) {
            Ok(()) => {
                let sent = self
                    .queue
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send(target.clone());
                if sent.is_err() {
                    remove_unmounted(&target);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot move a directory to the trash; removing it in place");
                remove_unmounted(dir);
            }
        }
    }
}

/// Unmounts whatever is mounted at or under `dir` (a removed container's overlay goes
/// to the trash still mounted: unmounting waits for the kernel to retire the mount, which
/// need not delay the removal either). Returns whether nothing is mounted there any more:
/// a directory is deleted only then, as deleting through a mount would reach into the
/// filesystem mounted there.
pub(crate) fn unmount_under(dir: &Path) -> bool {
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return true;
    }
    let listed = || {
        sys::mounts_under(dir).map_err(|e| {
            warn!(dir = %dir.display(), error = %e, "cannot read the mount table");
        })
    };
    let Ok(mounts) = listed() else { return false };
    for m in &mounts {
        // Stacked mounts come off one at a time.
        while nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    }
    if mounts.is_empty() {
        return true;
    }
    match listed() {
        Ok(left) if left.is_empty() => true,
        Ok(left) => {
            warn!(dir = %dir.display(), mounts = ?left, "cannot unmount; the directory is kept");
            false
        }
        Err(()) => false,
    }
}

/// [`remove`], after unmounting what is mounted under it; kept when something stays
/// mounted there.
pub(crate) fn remove_unmounted(p: &Path) {
    if unmount_under(p) {
        remove(p);
    }
}

/// Removes a directory tree or a file; one already gone is fine.
pub(crate) fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`remove_any`], with a warning when it fails.
pub(crate) fn remove(p: &Path) {
    if let Err(e) = remove_any(p) {
        warn!(path = %p.display(), error = %e, "cannot remove a directory or file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn empty_soon(d: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::fs::read_dir(d).unwrap().next().is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn tree(at: &Path) {
        std::fs::create_dir_all(at.join("a/b/c")).unwrap();
        std::fs::write(at.join("a/b/c/f"), b"x").unwrap();
        std::fs::write(at.join("g"), b"y").unwrap();
    }

    #[test]
    fn a_discarded_directory_is_gone_at_once_and_deleted_soon_after() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join(TRASH);
        let trash = Trash::open(std::slice::from_ref(&bin), Default::default(), |_| false).unwrap();
        for name in ["pod", "pod"] {
            // The same name twice: each goes to the trash under a name of its own.
            let dir = root.path().join(name);
            tree(&dir);
            trash.discard(&dir, &bin);
            assert!(!dir.exists());
        }
        trash.discard(&root.path().join("never-made"), &bin);
        let file = root.path().join("record.json");
        std::fs::write(&file, b"{}").unwrap();
        trash.discard(&file, &bin);
        assert!(!file.exists());
        assert!(empty_soon(&bin), "the trash was not emptied");
    }

    #[test]
    fn what_a_crash_left_in_the_trash_is_deleted_on_open() {
        let root = tempfile::tempdir().unwrap();
        let bins = [
            root.path().join("disk/trash"),
            root.path().join("run/trash"),
        ];
        for b in &bins {
            tree(&b.join("left.1.0"));
        }
        let _trash = Trash::open(&bins, Default::default(), |_| false).unwrap();
        for b in &bins {
            assert!(empty_soon(b), "{} was not emptied", b.display());
        }
    }

    /// Binds `source` onto `target` (the tests run as root).
    fn bind(source: &Path, target: &Path) {
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount (the tests run as root)");
    }

    #[test]
    fn what_is_mounted_in_a_discarded_directory_is_unmounted_and_left_whole() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join(TRASH);
        // A directory of somebody else's, mounted inside the pod's (as an overlay or a
        // volume would be): deleting the pod must not reach into it.
        let outside = root.path().join("outside");
        tree(&outside);
        let dir = root.path().join("pod");
        let target = dir.join("containers/c/rootfs");
        std::fs::create_dir_all(&target).unwrap();
        bind(&outside, &target);
        std::fs::create_dir_all(dir.join("volumes/v")).unwrap();
        bind(&outside, &dir.join("volumes/v"));
        bind(&outside, &dir.join("volumes/v"));
        let trash = Trash::open(std::slice::from_ref(&bin), Default::default(), |_| false).unwrap();
        trash.discard(&dir, &bin);
        assert!(!dir.exists());
        assert!(empty_soon(&bin), "the trash was not emptied");
        assert!(sys::mounts_under(root.path()).unwrap().is_empty());
        assert_eq!(std::fs::read(outside.join("a/b/c/f")).unwrap(), b"x");
        assert_eq!(std::fs::read(outside.join("g")).unwrap(), b"y");
    }

    #[test]
    fn a_closing_trash_unmounts_what_it_still_holds() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join(TRASH);
        let outside = root.path().join("outside");
        tree(&outside);
        // A start that never ends keeps the trash from working.
        let busy = std::sync::Arc::new(Busy::default());
        let _start = busy.start();
        let trash = Trash::open(std::slice::from_ref(&bin), busy.clone(), |_| false).unwrap();
        let dir = root.path().join("pod");
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        bind(&outside, &dir.join("rootfs"));
        trash.discard(&dir, &bin);
        assert_eq!(sys::mounts_under(&bin).unwrap().len(), 1);
        trash.unmount_all();
        assert!(sys::mounts_under(root.path()).unwrap().is_empty());
        assert_eq!(std::fs::read(outside.join("g")).unwrap(), b"y");
    }

    #[test]
    fn a_directory_on_another_filesystem_is_removed_in_place() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join(TRASH);
        let trash = Trash::open(std::slice::from_ref(&bin), Default::default(), |_| false).unwrap();
        // /dev/shm is a tmpfs of its own: the rename fails with EXDEV.
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        let dir = other.path().join("pod");
        tree(&dir);
        trash.discard(&dir, &bin);
        assert!(!dir.exists());
    }
}
