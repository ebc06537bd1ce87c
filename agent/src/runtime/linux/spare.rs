//! Parts of a pod made ahead of time, as the container helper is: a sandbox (network, IPC
//! and UTS namespaces, held by bind mounts of their files) and a skeleton of the pod's
//! directories on the disk (the first container's root, upper and work directories and
//! its log file). A start takes each with one rename, so no namespace is made and no
//! inode allocated on its path (the disk's allocator is slow under churn, and a new
//! network namespace costs most of a millisecond), and a low-priority thread makes the
//! next ones while the container runs.
//!
//! A removed pod's directory becomes the next skeleton where it can (see [`recycle`]):
//! its container's writable layer and work directory are made anew, its log file
//! emptied and everything else deleted, so a steady turnover of pods neither allocates
//! nor frees most of those inodes (nor wears the flash with them). A fresh skeleton is
//! made only when no removed pod supplied one for a while.
//!
//! A skeleton also comes with its container's overlay mounted, over the layers of the
//! image the last pod started with: pods of one image started one after another (a
//! crash loop, a job, a rollout of replicas) find their root filesystem ready. Mounting
//! an overlay allocates about seven inodes on the disk (overlayfs makes its work
//! directory and probes the filesystem each time); a start that finds its image's
//! overlay mounted allocates none.
//!
//! Spares live in `spare/` under the run dir (sandboxes) and the state dir (skeletons),
//! on the filesystems their pods' directories are on. What a crash leaves there is
//! removed when the runtime opens again; a stopped runtime removes its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::warn;

use super::busy::Busy;
use super::trash::{remove as remove_dir, remove_any, remove_unmounted};
use super::{logs, rootfs, sandbox, sys};

/// The name of the spares' directory under the run dir and the state dir.
pub(crate) const SPARE: &str = "spare";

/// Where a skeleton keeps its container's directories and log directory, until the
/// start that takes it renames them after the container.
pub(crate) const SKELETON_CONTAINER: &str = "containers/_";
pub(crate) const SKELETON_LOGS: &str = "logs/_";

/// Niceness of the thread that makes spares: it yields to the starts that use them.
const NICE: i32 = 10;

/// The longest the making of a spare waits for the starts under way.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after a skeleton was taken a fresh one waits for a removed pod to supply it.
const FRESH_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// How many spares of each kind are kept ready. Two: a removed pod's directory reaches
/// the pool only after the start that follows the removal has taken its skeleton, so
/// with pods replaced one after another a pool of one would be empty every other start.
const POOL: usize = 2;

/// What a container's overlay is mounted over: the image's layers (bottom first) and the
/// layer of mount points above them, if it goes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lower {
    pub layers: Vec<PathBuf>,
    pub top: Option<PathBuf>,
}

/// The (device, inode) identity of each of a [`Lower`]'s directories.
type LowerIds = Vec<(u64, u64)>;

impl Lower {
    /// Mounts a container's overlay over these layers in its directory `cdir`.
    pub fn mount(&self, cdir: &Path) -> Result<(), rootfs::RootfsError> {
        rootfs::mount_overlay(cdir, &self.layers, self.top.as_deref()).map(drop)
    }

    /// The identities of its directories now, or `None` when one is gone: a layer removed
    /// and pulled again is another directory than the one a skeleton was mounted over.
    fn ids(&self) -> Option<LowerIds> {
        use std::os::unix::fs::MetadataExt;
        self.layers
            .iter()
            .chain(&self.top)
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
            .collect()
    }
}

#[derive(Debug)]
struct Skeleton {
    dir: PathBuf,
    /// What its container's overlay is mounted over, if it is mounted.
    mounted: Option<(Lower, LowerIds)>,
}

/// A skeleton handed to a start: its directory, and whether its container's overlay is
/// mounted over the layers the start asked for.
#[derive(Debug)]
pub(crate) struct Taken {
    pub dir: PathBuf,
    pub mounted: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Sandboxes' directories (their namespace files inside), ready.
    sandboxes: Vec<PathBuf>,
    /// Skeleton pod directories, ready.
    skeletons: Vec<Skeleton>,
    /// What the skeletons' overlays are mounted over: the last start's.
    wanted: Option<Lower>,
    /// Empty files for pods' first records, ready.
    records: Vec<PathBuf>,
    stop: bool,
    /// When the last skeleton was taken.
    skeleton_taken: Option<std::time::Instant>,
    /// Kinds that failed to be made once: not tried again.
    no_sandbox: bool,
    no_skeleton: bool,
    no_records: bool,
}

impl State {
    /// A skeleton whose overlay is not mounted over the wanted layers, if one is wanted.
    fn to_mount(&self) -> Option<usize> {
        let wanted = self.wanted.as_ref()?;
        self.skeletons
            .iter()
            .position(|s| s.mounted.as_ref().is_none_or(|(l, _)| l != wanted))
    }
}

#[derive(Debug)]
struct Shared {
    run: PathBuf,
    disk: PathBuf,
    busy: Arc<Busy>,
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
pub(crate) struct Spares {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Spares {
    /// Starts the thread that removes what an earlier runtime left in `<run>/spare` and
    /// `<disk>/spare`, then keeps [`POOL`] spares of each kind ready.
    /// They are made while `busy` has no start under way.
    pub fn open(run: &Path, disk: &Path, busy: Arc<Busy>) -> std::io::Result<Spares> {
        let shared = Arc::new(Shared {
            run: run.join(SPARE),
            disk: disk.join(SPARE),
            busy,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        std::fs::create_dir_all(&shared.run)?;
        std::fs::create_dir_all(&shared.disk)?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("skiff-rt-spares".into())
            .stack_size(128 * 1024)
            .spawn(move || make_spares(&s))?;
        Ok(Spares {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A ready sandbox's directory, if there is one (another is made meanwhile).
    pub fn take_sandbox(&self) -> Option<PathBuf> {
        let taken = self.shared.lock().sandboxes.pop();
        self.shared.cond.notify_all();
        taken
    }

    /// A ready empty file for a pod's first record, if there is one.
    pub fn take_record_file(&self) -> Option<PathBuf> {
        let taken = self.shared.lock().records.pop();
        self.shared.cond.notify_all();
        taken
    }

    /// A ready skeleton pod directory, if there is one (another is made meanwhile): one
    /// whose overlay is mounted over `lower` when there is such a one. The skeletons made
    /// from now on are mounted over `lower`.
    pub fn take_skeleton(&self, lower: Option<&Lower>) -> Option<Taken> {
        let taken = {
            let mut st = self.shared.lock();
            st.skeleton_taken = Some(std::time::Instant::now());
            if lower.is_some() {
                st.wanted = lower.cloned();
            }
            let same = |s: &Skeleton| s.mounted.as_ref().map(|(l, _)| l) == lower;
            let pick = lower
                .and_then(|_| st.skeletons.iter().position(same))
                .or_else(|| st.skeletons.iter().position(|s| s.mounted.is_none()))
                .or_else(|| st.skeletons.len().checked_sub(1));
            pick.map(|i| st.skeletons.swap_remove(i))
        };
        self.shared.cond.notify_all();
        let Skeleton { dir, mounted } = taken?;
        match mounted {
            None => Some(Taken {
                dir,
                mounted: false,
            }),
            Some((l, ids)) if Some(&l) == lower && l.ids().as_ref() == Some(&ids) => {
                Some(Taken { dir, mounted: true })
            }
            // Mounted over other layers (or over a layer since removed): made plain again.
            Some(_) => match rootfs::renew_dirs(&dir.join(SKELETON_CONTAINER)) {
                Ok(_) => Some(Taken {
                    dir,
                    mounted: false,
                }),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot unmount a spare pod directory");
                    remove_unmounted(&dir);
                    None
                }
            },
        }
    }

    /// What takes the directories of removed pods (from the trash) as skeletons: true
    /// when it took `dir`, which the trash then leaves alone.
    pub fn recycler(&self) -> impl Fn(&Path) -> bool + Send + 'static {
        let shared = self.shared.clone();
        move |dir| {
            {
                let st = shared.lock();
                if st.stop || st.no_skeleton || st.skeletons.len() >= POOL {
                    return false;
                }
            }
            let target = shared.disk.join(format!(
                "{}-r{}",
                std::process::id(),
                RECYCLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            if let Err(e) = recycle(dir, &target) {
                tracing::debug!(dir = %dir.display(), error = %e, "not recycling a removed pod's directory");
                return false;
            }
            let mut st = shared.lock();
            if st.stop || st.skeletons.len() >= POOL {
                drop(st);
                remove_dir(&target);
            } else {
                st.skeletons.push(Skeleton {
                    dir: target,
                    mounted: None,
                });
                drop(st);
                // To be mounted.
                shared.cond.notify_all();
            }
            true
        }
    }

    /// Stops making spares and removes the ready ones.
    pub fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let (sandboxes, skeletons, records) = {
            let mut st = self.shared.lock();
            (
                std::mem::take(&mut st.sandboxes),
                std::mem::take(&mut st.skeletons),
                std::mem::take(&mut st.records),
            )
        };
        for f in records {
            remove_dir(&f);
        }
        for d in sandboxes {
            remove_sandbox(&d);
        }
        for s in skeletons {
            remove_unmounted(&s.dir);
        }
    }
}

static RECYCLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Turns `dir`, the directory of a removed pod (its containers ended, their root
/// filesystems unmounted), into a skeleton at `target` on the same filesystem: one
/// container's directories are kept, with a new writable layer and work directory
/// (whatever the container wrote, and whatever attributes it gave its root, go) and an
/// emptied log file; every other container's, every volume and every rotated or
/// previous log is deleted. A directory that does not look like a pod's is refused
/// untouched.
pub(crate) fn recycle(dir: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: &str| Err(std::io::Error::other(why.to_string()));
    let parent = target.parent().unwrap_or(Path::new("/"));
    if std::fs::metadata(dir)?.dev() != std::fs::metadata(parent)?.dev() {
        return refuse("on another filesystem");
    }
    let containers = dir.join("containers");
    let Some(keep) = std::fs::read_dir(&containers)?
        .flatten()
        .map(|e| e.file_name())
        .find(|n| {
            let c = containers.join(n);
            ["rootfs", "upper", "work"]
                .iter()
                .all(|d| std::fs::symlink_metadata(c.join(d)).is_ok_and(|m| m.is_dir()))
        })
    else {
        return refuse("no container directory");
    };
    let cdir = containers.join(&keep);
    let rootfs = cdir.join("rootfs");
    if std::fs::metadata(&rootfs)?.dev() != std::fs::metadata(&cdir)?.dev()
        || std::fs::read_dir(&rootfs)?.next().is_some()
    {
        return refuse("the root filesystem is still mounted or not empty");
    }
    // From here on the directory is changed; any failure leaves it to be deleted.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        if name != "containers" && name != "logs" {
            remove_any(&entry.path())?;
        }
    }
    for entry in std::fs::read_dir(&containers)?.flatten() {
        if entry.file_name() != keep {
            remove_any(&entry.path())?;
        }
    }
    // A new writable layer and work directory (the old ones are discarded).
    rootfs::renew_dirs(&cdir).map_err(std::io::Error::other)?;
    let logs_dir = dir.join("logs");
    std::fs::create_dir_all(&logs_dir)?;
    for entry in std::fs::read_dir(&logs_dir)?.flatten() {
        if entry.file_name() != keep {
            remove_any(&entry.path())?;
        }
    }
    let logs = logs::LogFiles::at(&logs_dir.join(&keep));
    logs.create_dir()?;
    for entry in std::fs::read_dir(logs_dir.join(&keep))?.flatten() {
        if entry.path() != logs.current() {
            remove_any(&entry.path())?;
        }
    }
    let current = logs.current();
    if std::fs::symlink_metadata(&current).is_ok_and(|m| !m.is_file()) {
        remove_any(&current)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&current)?;
    std::fs::rename(&cdir, dir.join(SKELETON_CONTAINER))?;
    std::fs::rename(logs_dir.join(&keep), dir.join(SKELETON_LOGS))?;
    std::fs::rename(dir, target)
}

/// Makes a skeleton the directory `pod_dir` of a pod whose first container is named
/// `container` (its file-safe name).
pub(crate) fn claim_skeleton(
    skeleton: &Path,
    pod_dir: &Path,
    container: &str,
) -> std::io::Result<()> {
    std::fs::rename(skeleton, pod_dir)?;
    std::fs::rename(
        pod_dir.join(SKELETON_CONTAINER),
        pod_dir.join("containers").join(container),
    )?;
    std::fs::rename(
        pod_dir.join(SKELETON_LOGS),
        pod_dir.join("logs").join(container),
    )
}

/// The spares thread: leftovers first, then one spare of each kind whenever one is
/// missing, until stopped.
fn make_spares(s: &Shared) {
    if let Err(e) = sys::set_thread_nice(NICE) {
        warn!(error = %e, "cannot lower the priority of the spares thread");
    }
    remove_leftovers(s);
    let mut seq = 0u64;
    loop {
        let (need_sandbox, need_skeleton, need_record, need_mount) = {
            let mut st = s.lock();
            loop {
                if st.stop {
                    return;
                }
                let sb = st.sandboxes.len() < POOL && !st.no_sandbox;
                let wanted = st.skeletons.len() < POOL && !st.no_skeleton;
                // A removed pod may supply the skeleton: a fresh one waits a little.
                let due = st.skeleton_taken.map_or(std::time::Duration::ZERO, |t| {
                    FRESH_DELAY.saturating_sub(t.elapsed())
                });
                let sk = wanted && due.is_zero();
                let rec = st.records.len() < POOL && !st.no_records;
                let mnt = st.to_mount().is_some();
                if sb || sk || rec || mnt {
                    break (sb, sk, rec, mnt);
                }
                st = if wanted {
                    s.cond
                        .wait_timeout(st, due)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                } else {
                    s.cond.wait(st).unwrap_or_else(|p| p.into_inner())
                };
            }
        };
        seq += 1;
        let name = format!("{}-{seq}", std::process::id());
        s.busy.wait_idle(MAX_WAIT);
        if need_record {
            let file = s.disk.join(format!("record-{name}"));
            match std::fs::File::create(&file) {
                Ok(_) => s.lock().records.push(file),
                Err(e) => {
                    warn!(file = %file.display(), error = %e, "cannot make a spare record file; pods make their own");
                    s.lock().no_records = true;
                }
            }
        }
        if need_skeleton {
            let dir = s.disk.join(&name);
            match make_skeleton(&dir) {
                Ok(()) => {
                    let mut st = s.lock();
                    if st.skeletons.len() >= POOL {
                        // Removed pods' directories came first.
                        drop(st);
                        remove_dir(&dir);
                    } else {
                        st.skeletons.push(Skeleton { dir, mounted: None });
                    }
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot make a spare pod directory; pods make their own");
                    remove_dir(&dir);
                    s.lock().no_skeleton = true;
                }
            }
        }
        if need_mount {
            s.busy.wait_idle(MAX_WAIT);
            mount_one(s);
        }
        if need_sandbox {
            s.busy.wait_idle(MAX_WAIT);
            let dir = s.run.join(&name);
            match sandbox::start(&dir, false, "localhost").and_then(sandbox::Pending::wait) {
                Ok(_) => s.lock().sandboxes.push(dir),
                Err(e) => {
                    warn!(error = %e, "cannot make a spare sandbox; pods make their own");
                    remove_sandbox(&dir);
                    s.lock().no_sandbox = true;
                }
            }
        }
    }
}

/// Mounts the overlay of a skeleton that is not mounted over the wanted layers.
fn mount_one(s: &Shared) {
    let taken = {
        let mut st = s.lock();
        let wanted = st.wanted.clone();
        st.to_mount()
            .map(|i| st.skeletons.swap_remove(i))
            .zip(wanted)
    };
    let Some((Skeleton { dir, mounted }, lower)) = taken else {
        return;
    };
    let cdir = dir.join(SKELETON_CONTAINER);
    let mounted_now = lower
        .ids()
        .ok_or_else(|| "a layer is gone".to_string())
        .and_then(|ids| {
            // One mounted over other layers is unmounted and given a new writable layer.
            if mounted.is_some() {
                rootfs::renew_dirs(&cdir).map_err(|e| e.to_string())?;
            }
            lower.mount(&cdir).map(|()| ids).map_err(|e| e.to_string())
        });
    let mounted = match mounted_now {
        Ok(ids) => Some((lower, ids)),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "not mounting a spare pod directory");
            // Not tried again until a start asks for layers.
            s.lock().wanted = None;
            // Whatever the failed mount left in the work directory goes.
            if let Err(e) = rootfs::renew_dirs(&cdir) {
                warn!(dir = %dir.display(), error = %e, "cannot renew a spare pod directory");
                remove_unmounted(&dir);
                return;
            }
            None
        }
    };
    let mut st = s.lock();
    if st.stop {
        drop(st);
        remove_unmounted(&dir);
    } else {
        st.skeletons.push(Skeleton { dir, mounted });
    }
}

/// A pod directory with one container's directories and its empty log file.
fn make_skeleton(dir: &Path) -> std::io::Result<()> {
    rootfs::renew_dirs(&dir.join(SKELETON_CONTAINER)).map_err(std::io::Error::other)?;
    let logs = logs::LogFiles::at(&dir.join(SKELETON_LOGS));
    logs.create_dir()?;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(logs.current())?;
    Ok(())
}

fn remove_leftovers(s: &Shared) {
    for (base, is_sandbox) in [(&s.run, true), (&s.disk, false)] {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            if is_sandbox {
                remove_sandbox(&e.path());
            } else {
                remove_unmounted(&e.path());
            }
        }
    }
}

pub(crate) fn remove_sandbox(dir: &Path) {
    sandbox::destroy(&sandbox::Sandbox::paths(dir, false));
    remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::super::trash::unmount_under;
    use super::*;

    #[test]
    fn a_claimed_skeleton_becomes_the_pods_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sk = dir.path().join("sk");
        make_skeleton(&sk).unwrap();
        let pod = dir.path().join("pods/uid");
        std::fs::create_dir_all(dir.path().join("pods")).unwrap();
        claim_skeleton(&sk, &pod, "web").unwrap();
        assert!(!sk.exists());
        assert!(pod.join("containers/web/upper").is_dir());
        assert!(pod.join("logs/web/current.log").is_file());
        // A pod directory that exists already (not empty) is not taken over.
        let sk2 = dir.path().join("sk2");
        make_skeleton(&sk2).unwrap();
        assert!(claim_skeleton(&sk2, &pod, "web").is_err());
        assert!(sk2.exists());
    }

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    stack.push(p);
                } else {
                    let len = e.metadata().unwrap().len();
                    out.push(format!("{rel} {len}"));
                }
            }
        }
        out.sort();
        out
    }

    fn removed_pod(dir: &Path) {
        for c in ["a", "b"] {
            let cdir = dir.join("containers").join(c);
            for d in ["rootfs", "upper/etc", "work/work/incompat/volatile"] {
                std::fs::create_dir_all(cdir.join(d)).unwrap();
            }
            std::fs::write(cdir.join("upper/etc/secret"), b"pod data").unwrap();
            let logs = dir.join("logs").join(c);
            std::fs::create_dir_all(&logs).unwrap();
            for f in ["current.log", "current.log.1", "previous.log"] {
                std::fs::write(logs.join(f), b"log lines").unwrap();
            }
        }
        std::fs::create_dir_all(dir.join("volumes/v")).unwrap();
        std::fs::write(dir.join("volumes/v/data"), b"volume data").unwrap();
    }

    #[test]
    fn a_removed_pods_directory_becomes_a_skeleton_with_nothing_of_the_pod_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("trash/pod.1.0");
        removed_pod(&dir);
        std::fs::create_dir_all(root.path().join("spare")).unwrap();
        let target = root.path().join("spare/r1");
        recycle(&dir, &target).unwrap();
        assert!(!dir.exists());
        assert_eq!(
            tree(&target),
            vec![
                "containers/",
                "containers/_/",
                "containers/_/rootfs/",
                "containers/_/upper/",
                "containers/_/work/",
                "logs/",
                "logs/_/",
                "logs/_/current.log 0",
            ]
        );
        // It serves as a fresh one does.
        let fresh = root.path().join("fresh");
        make_skeleton(&fresh).unwrap();
        assert_eq!(tree(&fresh), tree(&target));
    }

    #[test]
    fn what_does_not_look_like_a_removed_pod_is_refused_untouched() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("spare")).unwrap();
        // A pod's directory under the run dir: bundles, no writable layers.
        let run = root.path().join("run-pod");
        std::fs::create_dir_all(run.join("containers/a/bundle")).unwrap();
        std::fs::write(run.join("containers/a/bundle/config.json"), b"{}").unwrap();
        let before = tree(&run);
        assert!(recycle(&run, &root.path().join("spare/x")).is_err());
        assert_eq!(tree(&run), before);
        // A root filesystem that is not empty (still mounted, say).
        let busy = root.path().join("busy-pod");
        removed_pod(&busy);
        std::fs::write(busy.join("containers/a/rootfs/f"), b"x").unwrap();
        std::fs::write(busy.join("containers/b/rootfs/f"), b"x").unwrap();
        let before = tree(&busy);
        assert!(recycle(&busy, &root.path().join("spare/y")).is_err());
        assert_eq!(tree(&busy), before);
    }

    /// Waits until `ready` holds of the spares' state.
    fn wait_for(spares: &Spares, what: &str, ready: impl Fn(&State) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ready(&spares.shared.lock()) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn layer(root: &Path, name: &str, file: &str) -> PathBuf {
        let l = root.join(name);
        std::fs::create_dir_all(&l).unwrap();
        std::fs::write(l.join(file), name).unwrap();
        l
    }

    #[test]
    fn skeletons_come_mounted_over_the_layers_the_last_start_asked_for() {
        let root = tempfile::tempdir().unwrap();
        let (run, disk) = (root.path().join("run"), root.path().join("disk"));
        let spares = Spares::open(&run, &disk, Default::default()).unwrap();
        let one = Lower {
            layers: vec![layer(root.path(), "one", "a")],
            top: None,
        };
        let two = Lower {
            layers: vec![layer(root.path(), "two", "b")],
            top: Some(layer(root.path(), "top", "t")),
        };
        wait_for(&spares, "skeletons made", |st| st.skeletons.len() == POOL);
        // Nothing was asked for yet: a plain skeleton, and the rest get mounted over
        // what this start asked for.
        let first = spares.take_skeleton(Some(&one)).unwrap();
        assert!(!first.mounted);
        wait_for(&spares, "skeletons mounted", |st| {
            st.skeletons.len() == POOL && st.to_mount().is_none()
        });
        let warm = spares.take_skeleton(Some(&one)).unwrap();
        assert!(warm.mounted);
        let merged = warm.dir.join(SKELETON_CONTAINER).join("rootfs");
        assert_eq!(std::fs::read(merged.join("a")).unwrap(), b"one");
        assert!(unmount_under(&warm.dir));
        // Another image: the skeleton handed out is not mounted (over the wrong layers),
        // and the next ones are mounted over the new layers.
        let other = spares.take_skeleton(Some(&two)).unwrap();
        assert!(!other.mounted);
        assert!(sys::mounts_under(&other.dir).unwrap().is_empty());
        wait_for(&spares, "skeletons mounted again", |st| {
            st.skeletons.len() == POOL && st.to_mount().is_none()
        });
        // A layer removed and made again since the mount is another directory: the
        // mounted skeleton is not handed out as mounted.
        std::fs::remove_dir_all(&two.layers[0]).unwrap();
        layer(root.path(), "two", "b");
        let stale = spares.take_skeleton(Some(&two)).unwrap();
        assert!(!stale.mounted);
        assert!(sys::mounts_under(&stale.dir).unwrap().is_empty());
        // A stopped spares thread unmounts what it kept.
        spares.stop();
        assert!(sys::mounts_under(&disk).unwrap().is_empty());
        assert!(sys::mounts_under(root.path()).unwrap().is_empty());
    }

    #[test]
    fn a_skeleton_holds_the_first_containers_directories_and_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let sk = dir.path().join("sk");
        make_skeleton(&sk).unwrap();
        for d in ["rootfs", "upper", "work"] {
            assert!(sk.join(SKELETON_CONTAINER).join(d).is_dir(), "{d}");
        }
        let log = logs::LogFiles::at(&sk.join(SKELETON_LOGS)).current();
        assert_eq!(std::fs::metadata(log).unwrap().len(), 0);
    }
}
