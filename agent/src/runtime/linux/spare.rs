//! Parts of a pod made ahead of time, as the waiting helper is: a sandbox (network, IPC
//! and UTS namespaces, held by bind mounts of their files) and a skeleton of the pod's
//! directories on the disk (the first container's root, upper and work directories and
//! its log file). A start takes each with one rename, so no namespace is made and no
//! inode allocated on its path (the disk's allocator is slow under churn, and a new
//! network namespace costs most of a millisecond), and a low-priority thread makes the
//! next ones while the container runs.
//!
//! Spares live in `spare/` under the run dir (sandboxes) and the state dir (skeletons),
//! on the filesystems their pods' directories are on. What a crash leaves there is
//! removed when the runtime opens again; a stopped runtime removes its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::warn;

use super::busy::Busy;
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

#[derive(Debug, Default)]
struct State {
    /// A sandbox's directory (its namespace files inside), ready.
    sandbox: Option<PathBuf>,
    /// A skeleton pod directory, ready.
    skeleton: Option<PathBuf>,
    stop: bool,
    /// Kinds that failed to be made once: not tried again.
    no_sandbox: bool,
    no_skeleton: bool,
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
    /// `<disk>/spare`, then keeps one spare of each kind ready.
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
        let taken = self.shared.lock().sandbox.take();
        self.shared.cond.notify_all();
        taken
    }

    /// A ready skeleton pod directory, if there is one (another is made meanwhile).
    pub fn take_skeleton(&self) -> Option<PathBuf> {
        let taken = self.shared.lock().skeleton.take();
        self.shared.cond.notify_all();
        taken
    }

    /// Stops making spares and removes the ready ones.
    pub fn stop(&self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let (sb, sk) = {
            let mut st = self.shared.lock();
            (st.sandbox.take(), st.skeleton.take())
        };
        if let Some(d) = sb {
            remove_sandbox(&d);
        }
        if let Some(d) = sk {
            remove_dir(&d);
        }
    }
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
        let (need_sandbox, need_skeleton) = {
            let mut st = s.lock();
            loop {
                if st.stop {
                    return;
                }
                let sb = st.sandbox.is_none() && !st.no_sandbox;
                let sk = st.skeleton.is_none() && !st.no_skeleton;
                if sb || sk {
                    break (sb, sk);
                }
                st = s.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        seq += 1;
        let name = format!("{}-{seq}", std::process::id());
        s.busy.wait_idle(MAX_WAIT);
        if need_skeleton {
            let dir = s.disk.join(&name);
            match make_skeleton(&dir) {
                Ok(()) => s.lock().skeleton = Some(dir),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot make a spare pod directory; pods make their own");
                    remove_dir(&dir);
                    s.lock().no_skeleton = true;
                }
            }
        }
        if need_sandbox {
            s.busy.wait_idle(MAX_WAIT);
            let dir = s.run.join(&name);
            match sandbox::start(&dir, false, "localhost").and_then(sandbox::Pending::wait) {
                Ok(_) => s.lock().sandbox = Some(dir),
                Err(e) => {
                    warn!(error = %e, "cannot make a spare sandbox; pods make their own");
                    remove_sandbox(&dir);
                    s.lock().no_sandbox = true;
                }
            }
        }
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
                remove_dir(&e.path());
            }
        }
    }
}

pub(crate) fn remove_sandbox(dir: &Path) {
    sandbox::destroy(&sandbox::Sandbox::paths(dir, false));
    remove_dir(dir);
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "cannot remove a spare");
    }
}

#[cfg(test)]
mod tests {
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
