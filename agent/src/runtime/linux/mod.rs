//! The Linux container runtime: pods run through youki's libcontainer, in-process (no
//! runc, no daemon). A pod is a sandbox (network, IPC and UTS namespaces held open by
//! bind mounts, see [`sandbox`]) and one libcontainer container per container, each
//! with its own mount and pid namespace and an overlay root filesystem over the image's
//! layers. libcontainer's create/start/exec run in a re-executed single-threaded copy of
//! the agent ([`helper`]); the agent is a child subreaper, so each container's init
//! process becomes its child, and a watcher thread per container reaps it through a
//! pidfd and records the exact exit status. Records ([`record`]) are written before
//! acting, so a restarted agent adopts running containers instead of duplicating them.
//!
//! On-disk layout under the state dir:
//! `records/<uid>.json`, `pods/<uid>/{volumes/<name>/, containers/<name>/{rootfs/, upper/,
//! work/}, logs/<name>/}`, `trash/` (removed pods' directories and records, deleted in
//! the background, see [`trash`]) and `spare/` (pod directories and record files made
//! ahead, see [`spare`]). What does not outlive a reboot lives under the run dir (a
//! tmpfs, as runc keeps its state in /run): `libcontainer/<id>/` (libcontainer's state),
//! `pods/<uid>/{ns/, etc/, containers/<name>/bundle/}`, the shared mount-point layer
//! `mountpoints/`, the compiled default seccomp filter `seccomp-default.bpf` (linked
//! into bundles as `seccomp.bpf`), sandboxes made ahead in `spare/` and a `trash/`.
//! Besides sparing the disk (flash) the writes, this keeps the files a container start
//! creates and a delete removes off the disk's inode allocator, which is slow under
//! churn.

mod busy;
mod cgroups;
mod helper;
mod logs;
mod record;
mod rootfs;
mod sandbox;
mod seccomp;
mod spare;
mod spec;
mod sys;
mod trash;
mod zygote;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use skiff_api::resources::{Container, HostPathType, Pod, StorageMedium};
use tracing::{debug, warn};

use super::{
    ContainerRuntime, ExecProcess, ExecRequest, Exit, ExitReason, LogPaths, ObservedContainer,
    ObservedPod, PodToStart, RunState, RuntimeError,
};
use crate::image::LocalImage;

pub use cgroups::{CgroupVersion, detect as detect_cgroup_version};
pub use helper::{HELPER_ARG, run_helper_if_asked};
pub use logs::LogRotation;
pub use spec::SpecError;

use record::{ContainerRecord, PodRecord};

/// Pids a container may have unless configured otherwise.
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;
/// Kubernetes' default grace period.
const DEFAULT_GRACE_SECS: u64 = 30;
/// How long to wait for SIGKILLed containers to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often logs are checked for rotation.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Where and how the runtime works.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// The runtime's own directory (records, pod files that must survive a reboot).
    pub state_dir: PathBuf,
    /// Where transient runtime state lives (libcontainer's state, the sandbox namespace
    /// files, bundles, the pods' /etc files): best a tmpfs, none of it outlives a reboot.
    pub run_dir: PathBuf,
    /// The executable re-executed as the helper: the agent binary itself.
    pub helper: PathBuf,
    /// Where the cgroup hierarchy is mounted (/sys/fs/cgroup).
    pub cgroup_root: PathBuf,
    /// The cgroup every container's cgroup is made under (e.g. `skiff`).
    pub cgroup_parent: String,
    pub pids_limit: i64,
    pub log_rotation: LogRotation,
    /// Where the host's resolv.conf is read from (/etc).
    pub etc_dir: PathBuf,
}

impl LinuxConfig {
    /// Defaults for a runtime in `state_dir` re-executing `helper`.
    pub fn new(state_dir: &Path, helper: &Path) -> LinuxConfig {
        LinuxConfig {
            state_dir: state_dir.to_path_buf(),
            run_dir: default_run_dir(state_dir),
            helper: helper.to_path_buf(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "skiff".to_string(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            log_rotation: LogRotation::default(),
            etc_dir: PathBuf::from("/etc"),
        }
    }
}

/// Whether a path exists only where an earlier agent, which kept everything under the
/// state dir, put it (`old`) and not where this one does (`new`).
fn earlier_agents_only(new: &Path, old: &Path) -> bool {
    !new.exists() && old.exists()
}

/// The tmpfs the default run dirs live in.
const RUN_BASE: &str = "/run/skiff";
/// The kernel's magic number for a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// `/run/skiff/<state dir as a file name>` when /run exists (one per state dir, so an
/// agent restarted on the same state dir finds it again), else `<state dir>/run`.
fn default_run_dir(state_dir: &Path) -> PathBuf {
    if Path::new("/run").is_dir() {
        let abs = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        Path::new(RUN_BASE).join(record::safe_name(&abs.to_string_lossy()))
    } else {
        state_dir.join("run")
    }
}

fn is_tmpfs(p: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)] // the field's type differs between architectures
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 as i64 == TMPFS_MAGIC)
}

/// Makes [`RUN_BASE`] a tmpfs when the run dir is under it and /run is not one already
/// (not every system mounts one there), as the agent's own runtime directory.
fn ensure_run_tmpfs(run_dir: &Path) -> std::io::Result<()> {
    let base = Path::new(RUN_BASE);
    if !run_dir.starts_with(base) {
        return Ok(());
    }
    std::fs::create_dir_all(base)?;
    if is_tmpfs(base) {
        return Ok(());
    }
    // Two runtimes opening at once must not stack two mounts: the second would hide
    // what the first put in its run dir.
    let lock = std::fs::File::create(base.with_extension("lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))?;
    if !is_tmpfs(base) {
        mount(
            Some("tmpfs"),
            base,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700,size=64m"),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Runs pods as real containers. Dropping it stops watching them; they keep running
/// and a later [`LinuxRuntime::open`] on the same state dir adopts them.
#[derive(Debug)]
pub struct LinuxRuntime {
    inner: Arc<Inner>,
    /// Closing it tells the watcher and housekeeping threads to stop.
    _stop_tx: OwnedFd,
}

#[derive(Debug)]
struct Inner {
    cfg: LinuxConfig,
    cgroups: CgroupVersion,
    pods: Mutex<BTreeMap<String, PodState>>,
    /// Signalled whenever a container's state changes.
    changed: Condvar,
    stop_rx: OwnedFd,
    /// The helper that starts containers, forking a child for each.
    zygote: zygote::Zygote,
    /// The mount-point layer put over images it fits (see [`rootfs::make_mountpoints`]).
    mountpoints: Option<PathBuf>,
    /// The default seccomp profile, compiled once (see [`seccomp::compile_default`]).
    seccomp_filter: Option<PathBuf>,
    /// Deletes removed pods' directories in the background.
    trash: trash::Trash,
    /// Sandboxes and pod directories made ahead of time.
    spares: spare::Spares,
    /// Starts under way, which the trash and the spares wait for.
    busy: Arc<busy::Busy>,
}

#[derive(Debug)]
struct PodState {
    rec: PodRecord,
    /// pidfds of the running init processes, by container name.
    pidfds: BTreeMap<String, Arc<OwnedFd>>,
    /// The pod's first record being made durable while its first containers start.
    first_flush: Option<record::Flushing>,
    /// The container whose directories came with the pod (from a spare) unused, and
    /// whose overlay was mounted with them: its first start needs neither again.
    fresh: Option<String>,
}

fn err(uid: &str, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Container {
        uid: uid.to_string(),
        message: message.to_string(),
    }
}

impl LinuxRuntime {
    /// Opens the runtime in `cfg.state_dir`, adopting the containers its records name
    /// that still run, and making this process the reaper of the containers it starts.
    pub fn open(cfg: LinuxConfig) -> Result<LinuxRuntime, RuntimeError> {
        let io = |path: &Path, source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Err(e) = ensure_run_tmpfs(&cfg.run_dir) {
            warn!(error = %e, dir = RUN_BASE, "cannot mount a tmpfs for the run dir; it stays on disk");
        }
        for d in [
            cfg.state_dir.clone(),
            cfg.state_dir.join("pods"),
            cfg.run_dir.join("pods"),
            cfg.run_dir.join("libcontainer"),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        if !cfg.helper.exists() {
            return Err(io(
                &cfg.helper,
                std::io::Error::new(std::io::ErrorKind::NotFound, "helper executable missing"),
            ));
        }
        sys::set_child_subreaper().map_err(|e| io(Path::new("PR_SET_CHILD_SUBREAPER"), e))?;
        let cgroups = cgroups::detect(&cfg.cgroup_root).map_err(|e| err("-", e))?;
        let (stop_rx, stop_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
            io(
                Path::new("pipe"),
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        let records = record::read_all(&cfg.state_dir)?;
        let bins = [
            cfg.state_dir.join(trash::TRASH),
            cfg.run_dir.join(trash::TRASH),
        ];
        let busy = Arc::new(busy::Busy::default());
        let spares = spare::Spares::open(&cfg.run_dir, &cfg.state_dir, busy.clone())
            .map_err(|e| io(&cfg.run_dir.join(spare::SPARE), e))?;
        let trash = trash::Trash::open(&bins, busy.clone(), spares.recycler())
            .map_err(|e| io(&bins[0], e))?;
        let layer = cfg.run_dir.join("mountpoints");
        let mountpoints = match rootfs::make_mountpoints(&layer) {
            Ok(()) => Some(layer),
            Err(e) => {
                warn!(dir = %layer.display(), error = %e, "cannot make the mount-point layer; containers create their mount points");
                None
            }
        };
        let compiled = cfg.run_dir.join("seccomp-default.bpf");
        let seccomp_filter = match seccomp::compile_default(&compiled) {
            Ok(()) => Some(compiled),
            Err(e) => {
                warn!(error = %e, "cannot precompile the default seccomp profile; libcontainer compiles it at every start");
                None
            }
        };
        let zygote = zygote::Zygote::new(&cfg.helper);
        let inner = Arc::new(Inner {
            cfg,
            cgroups,
            pods: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            stop_rx,
            zygote,
            mountpoints,
            seccomp_filter,
            trash,
            spares,
            busy,
        });
        for rec in records {
            inner.adopt(rec)?;
        }
        inner.zygote.warm_up();
        let hk = inner.clone();
        std::thread::Builder::new()
            .name("skiff-rt-housekeeping".into())
            .spawn(move || hk.housekeeping())
            .map_err(|e| io(Path::new("thread"), e))?;
        Ok(LinuxRuntime {
            inner,
            _stop_tx: stop_tx,
        })
    }

    /// The cgroup hierarchy in use.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.inner.cgroups
    }

    /// The pid of the helper that starts containers (the zygote), while one runs.
    pub fn helper_pid(&self) -> Option<u32> {
        self.inner.zygote.pid()
    }

    /// The pid of a running container's init process (as the host sees it).
    pub fn container_pid(&self, uid: &str, container: &str) -> Option<i32> {
        let pods = self.inner.lock();
        let p = pods.get(uid)?;
        p.pidfds.get(container)?;
        p.rec.containers.get(container)?.pid
    }

    /// The cgroup path (relative to the hierarchy roots) of a container.
    pub fn container_cgroup(&self, uid: &str, container: &str) -> Option<String> {
        let pods = self.inner.lock();
        Some(
            pods.get(uid)?
                .rec
                .containers
                .get(container)?
                .cgroups_path
                .clone(),
        )
    }
}

impl Drop for LinuxRuntime {
    fn drop(&mut self) {
        // `_stop_tx` closes after this: watcher threads see the hang-up and end without
        // reaping anything, leaving the containers to the next runtime.
        self.inner.zygote.end();
        self.inner.spares.stop();
        self.inner.trash.unmount_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, PodState>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(record::safe_name(uid))
    }

    /// A pod's transient files (sandbox namespace files, /etc files, bundles).
    fn run_pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.run_dir.join("pods").join(record::safe_name(uid))
    }

    fn lc_root(&self) -> PathBuf {
        self.cfg.run_dir.join("libcontainer")
    }

    /// Where libcontainer's state of container `id` is: the run dir, or the state dir
    /// for a container an earlier agent started there.
    fn lc_root_of(&self, id: &str) -> PathBuf {
        let old = self.cfg.state_dir.join("libcontainer");
        if earlier_agents_only(&self.lc_root().join(id), &old.join(id)) {
            old
        } else {
            self.lc_root()
        }
    }

    /// Takes over a recorded pod: containers still running get a watcher, the others
    /// are recorded as ended while no agent watched.
    fn adopt(self: &Arc<Self>, mut rec: PodRecord) -> Result<(), RuntimeError> {
        let uid = rec.observed.uid.clone();
        let mut pidfds = BTreeMap::new();
        let mut dirty = false;
        let names: Vec<String> = rec.containers.keys().cloned().collect();
        for name in names {
            let running_since =
                observed_mut(&mut rec.observed, &name).and_then(|c| match c.state {
                    RunState::Running { started_at } => Some(started_at),
                    RunState::Exited(_) | RunState::Waiting => None,
                });
            let Some(started_at) = running_since else {
                continue;
            };
            let c = &rec.containers[&name];
            let alive = match (c.pid, c.pid_start) {
                (Some(pid), Some(start)) if record::pid_start_time(pid) == Some(start) => {
                    sys::pidfd_open(pid).ok()
                }
                _ => None,
            };
            match alive {
                Some(fd) => {
                    let fd = Arc::new(fd);
                    pidfds.insert(name.clone(), fd.clone());
                    self.watch(&uid, &name, fd, None, started_at);
                }
                None => {
                    let oc = observed_mut(&mut rec.observed, &name).expect("checked above");
                    oc.state = RunState::Exited(Exit {
                        exit_code: 137,
                        started_at,
                        finished_at: Utc::now(),
                        reason: ExitReason::Unknown,
                    });
                    dirty = true;
                }
            }
        }
        if dirty {
            record::write(&self.cfg.state_dir, &rec)?;
        }
        self.lock().insert(
            uid,
            PodState {
                rec,
                pidfds,
                first_flush: None,
                fresh: None,
            },
        );
        Ok(())
    }

    /// Starts the thread that waits for a container's init process to end.
    fn watch(
        self: &Arc<Self>,
        uid: &str,
        name: &str,
        pidfd: Arc<OwnedFd>,
        helper: Option<OwnedFd>,
        started_at: chrono::DateTime<Utc>,
    ) {
        let inner = self.clone();
        let (uid, name) = (uid.to_string(), name.to_string());
        let spawned = std::thread::Builder::new()
            .name("skiff-rt-watch".into())
            .stack_size(64 * 1024)
            .spawn(move || inner.watch_loop(&uid, &name, &pidfd, helper, started_at));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a container watcher");
        }
    }

    fn watch_loop(
        &self,
        uid: &str,
        name: &str,
        pidfd: &OwnedFd,
        helper: Option<OwnedFd>,
        started_at: chrono::DateTime<Utc>,
    ) {
        loop {
            match sys::poll_readable(&[pidfd.as_fd(), self.stop_rx.as_fd()], -1) {
                Ok(ready) if ready[1] => return,
                Ok(ready) if ready[0] => break,
                Ok(_) => continue,
                Err(e) => {
                    warn!(pod = uid, container = name, error = %e, "watching a container failed");
                    return;
                }
            }
        }
        let mut reaped = sys::waitid_pidfd(pidfd.as_fd(), false);
        if let (Ok(sys::Reaped::NotOurs), Some(helper)) = (&reaped, &helper) {
            // libcontainer makes the init process a child of the helper that created
            // it; a container that ends before its helper is still the helper's. Once
            // the helper has exited (its pidfd turns readable), the init process has
            // been handed to this process, its subreaper.
            let _ = sys::poll_readable(&[helper.as_fd()], KILL_WAIT.as_millis() as i32);
            reaped = sys::waitid_pidfd(pidfd.as_fd(), false);
        }
        let finished_at = Utc::now();
        let mut pods = self.lock();
        let Some(p) = pods.get_mut(uid) else { return };
        let cgroup = p
            .rec
            .containers
            .get(name)
            .map(|c| c.cgroups_path.clone())
            .unwrap_or_default();
        let (exit_code, reason) = match reaped {
            Ok(sys::Reaped::Code(code)) => {
                let oom = cgroups::oom_kills(&self.cfg.cgroup_root, self.cgroups, &cgroup) > 0;
                if oom && code == 128 + 9 {
                    (code, ExitReason::OomKilled)
                } else {
                    (code, ExitReason::Plain)
                }
            }
            Ok(sys::Reaped::NotOurs) | Ok(sys::Reaped::Running) | Err(_) => {
                (137, ExitReason::Unknown)
            }
        };
        debug!(pod = uid, container = name, exit_code, "container exited");
        p.pidfds.remove(name);
        if let Some(c) = observed_mut(&mut p.rec.observed, name) {
            c.state = RunState::Exited(Exit {
                exit_code,
                started_at,
                finished_at,
                reason,
            });
        }
        if let Err(e) = record::write(&self.cfg.state_dir, &p.rec) {
            warn!(pod = uid, error = %e, "cannot record a container's exit");
        }
        drop(pods);
        self.changed.notify_all();
    }

    /// Rotates logs until the runtime is dropped.
    fn housekeeping(&self) {
        loop {
            match sys::poll_readable(&[self.stop_rx.as_fd()], HOUSEKEEPING.as_millis() as i32) {
                Ok(r) if r[0] => return,
                Ok(_) => {}
                Err(_) => return,
            }
            let dirs: Vec<PathBuf> = {
                let pods = self.lock();
                pods.iter()
                    .flat_map(|(uid, p)| {
                        let base = self.pod_dir(uid).join("logs");
                        p.pidfds
                            .keys()
                            .map(move |n| base.join(n))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            for d in dirs {
                if let Err(e) = logs::LogFiles::at(&d).rotate_if_needed(self.cfg.log_rotation) {
                    warn!(dir = %d.display(), error = %e, "log rotation failed");
                }
            }
        }
    }

    fn save(&self, rec: &PodRecord) -> Result<(), RuntimeError> {
        record::write(&self.cfg.state_dir, rec)
    }

    /// Creates and starts one container through the helper; returns its pid.
    fn start_container(
        self: &Arc<Self>,
        uid: &str,
        name: &str,
        c: &ContainerRecord,
        fresh: bool,
    ) -> Result<(i32, Arc<OwnedFd>, Option<OwnedFd>), RuntimeError> {
        let cdir = self.pod_dir(uid).join("containers").join(name);
        let log_dir = self.pod_dir(uid).join("logs").join(name);
        let logs = logs::LogFiles::at(&log_dir);
        // A fresh container's overlay was mounted with its pod's directory.
        if !fresh {
            logs.create_dir().map_err(|e| RuntimeError::Io {
                path: log_dir.clone(),
                source: e,
            })?;
            rootfs::renew_dirs(&cdir).map_err(|e| err(uid, e))?;
            self.lower(&c.layers)
                .mount(&cdir)
                .map_err(|e| err(uid, e))?;
        }
        // A leftover from an earlier run of this container (restart, or a crash).
        self.delete_container_state(c);
        let request: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--root".into(),
            self.lc_root().into(),
            "--id".into(),
            c.id.clone().into(),
            "--bundle".into(),
            self.bundle_of(uid, name).into(),
            "--log".into(),
            logs.current().into(),
        ];
        let started = self
            .zygote
            .run(&request)
            .map_err(|e| format!("running {}: {e}", self.cfg.helper.display()));
        let (pid, helper) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(msg)) | Err(msg) => {
                self.delete_container_state(c);
                rootfs::unmount(&rootfs::Rootfs::at(&cdir));
                return Err(err(uid, format!("container {name}: {msg}")));
            }
        };
        let fd = sys::pidfd_open(pid)
            .map_err(|e| err(uid, format!("container {name}: pidfd_open({pid}): {e}")))?;
        Ok((pid, Arc::new(fd), helper))
    }

    /// What a container's overlay goes over: the image's `layers` (bottom first), under
    /// the layer of mount points when they fit it.
    fn lower(&self, layers: &[PathBuf]) -> spare::Lower {
        spare::Lower {
            layers: layers.to_vec(),
            top: self
                .mountpoints
                .clone()
                .filter(|_| rootfs::mountpoints_fit(layers)),
        }
    }

    /// A container's bundle: under the run dir, or where an earlier agent made it.
    fn bundle_of(&self, uid: &str, name: &str) -> PathBuf {
        let safe = record::safe_name(name);
        let b = self
            .run_pod_dir(uid)
            .join("containers")
            .join(&safe)
            .join("bundle");
        let old = self
            .pod_dir(uid)
            .join("containers")
            .join(&safe)
            .join("bundle");
        if earlier_agents_only(&b, &old) {
            old
        } else {
            b
        }
    }

    /// Removes libcontainer's state and the cgroup of a container that no longer runs.
    fn delete_container_state(&self, c: &ContainerRecord) {
        for root in [self.lc_root(), self.cfg.state_dir.join("libcontainer")] {
            let dir = root.join(&c.id);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        // A cgroup stays busy for a moment after its last task was reaped.
        for _ in 0..50 {
            cgroups::remove_leftovers(&self.cfg.cgroup_root, self.cgroups, &c.cgroups_path);
            if !cgroups::exists(&self.cfg.cgroup_root, self.cgroups, &c.cgroups_path) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        warn!(cgroup = %c.cgroups_path, "cgroup could not be removed");
    }

    /// Runs one container to its start and records it running.
    fn launch(self: &Arc<Self>, uid: &str, name: &str) -> Result<(), RuntimeError> {
        let _start = self.busy.start();
        let (c, fresh) = {
            let mut pods = self.lock();
            let p = pods.get_mut(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            let c = p.rec.containers.get(name).cloned().ok_or_else(|| {
                RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: name.to_string(),
                }
            })?;
            (c, p.fresh.take_if(|n| n == name).is_some())
        };
        let started = self.start_container(uid, name, &c, fresh);
        // The record is written again below: its first version must be durable first.
        let flushed = self.first_record_flushed(uid);
        let mut pods = self.lock();
        let p = pods.get_mut(uid).ok_or_else(|| RuntimeError::NoSuchPod {
            uid: uid.to_string(),
        })?;
        let now = Utc::now();
        match started {
            Ok((pid, fd, helper)) => {
                let cr = p.rec.containers.get_mut(name).expect("present");
                cr.pid = Some(pid);
                cr.pid_start = record::pid_start_time(pid);
                if let Some(oc) = observed_mut(&mut p.rec.observed, name) {
                    oc.state = RunState::Running { started_at: now };
                }
                p.pidfds.insert(name.to_string(), fd.clone());
                // The pid matters only while the process runs, which no power loss
                // outlives: a restarted agent finds it in the page cache.
                let written =
                    flushed.and_then(|()| record::write_cached(&self.cfg.state_dir, &p.rec));
                drop(pods);
                self.watch(uid, name, fd, helper, now);
                written
            }
            Err(e) => {
                if let Some(oc) = observed_mut(&mut p.rec.observed, name) {
                    oc.state = RunState::Exited(Exit {
                        exit_code: 128,
                        started_at: now,
                        finished_at: now,
                        reason: ExitReason::Plain,
                    });
                }
                self.save(&p.rec)?;
                Err(e)
            }
        }
    }

    /// Makes a spare skeleton `dir`, the directory of a pod whose first container is
    /// `container` with an overlay over `lower`; returns whether its overlay came
    /// mounted, when it did.
    fn claim_skeleton(
        &self,
        dir: &Path,
        container: &str,
        lower: Option<&spare::Lower>,
    ) -> Option<bool> {
        let skeleton = self.spares.take_skeleton(lower)?;
        match spare::claim_skeleton(&skeleton.dir, dir, &record::safe_name(container)) {
            Ok(()) => Some(skeleton.mounted),
            Err(e) => {
                debug!(dir = %dir.display(), error = %e, "cannot take a spare pod directory");
                self.trash
                    .discard(&skeleton.dir, &self.cfg.state_dir.join(trash::TRASH));
                None
            }
        }
    }

    /// A pod's sandbox in `<run>/ns`: a spare one taken over when there is one (not for
    /// host networking), or new namespaces.
    fn sandbox(
        &self,
        run: &Path,
        host_network: bool,
        hostname: &str,
    ) -> Result<sandbox::Pending, sandbox::SandboxError> {
        let ns = run.join("ns");
        if !host_network && let Some(spare) = self.spares.take_sandbox() {
            let taken = std::fs::create_dir_all(run)
                .map_err(|source| sandbox::SandboxError::Io {
                    dir: run.to_path_buf(),
                    what: "creating the directory",
                    source,
                })
                .and_then(|()| sandbox::take_over(&spare, &ns, hostname));
            match taken {
                Ok(p) => return Ok(p),
                Err(e) => {
                    debug!(error = %e, "cannot take over a spare sandbox; making one");
                    spare::remove_sandbox(&spare);
                }
            }
        }
        sandbox::start(&ns, host_network, hostname)
    }

    /// Waits for the flush of a pod's first record, if it is still under way.
    fn first_record_flushed(&self, uid: &str) -> Result<(), RuntimeError> {
        let flushing = self.lock().get_mut(uid).and_then(|p| p.first_flush.take());
        flushing.map_or(Ok(()), record::Flushing::wait)
    }

    /// Waits until none of `names` runs or `deadline` passes; returns those still running.
    fn wait_exited(&self, uid: &str, names: &[String], deadline: Instant) -> Vec<String> {
        let mut pods = self.lock();
        loop {
            let running: Vec<String> = match pods.get(uid) {
                Some(p) => names
                    .iter()
                    .filter(|n| p.pidfds.contains_key(*n))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            let now = Instant::now();
            if running.is_empty() || now >= deadline {
                return running;
            }
            pods = self
                .changed
                .wait_timeout(pods, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn signal(&self, uid: &str, names: &[String], signal: i32) {
        let pods = self.lock();
        if let Some(p) = pods.get(uid) {
            for n in names {
                if let Some(fd) = p.pidfds.get(n) {
                    let _ = sys::pidfd_send_signal(fd.as_fd(), signal);
                }
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once every container has ended.
    fn stop(&self, uid: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.stop_some(uid, None, grace)
    }

    /// As [`Inner::stop`], for one container (`Some`) or all of them.
    fn stop_some(
        &self,
        uid: &str,
        only: Option<&str>,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let names: Vec<String> = {
            let pods = self.lock();
            let p = pods.get(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            p.pidfds
                .keys()
                .filter(|n| only.is_none_or(|o| o == n.as_str()))
                .cloned()
                .collect()
        };
        if names.is_empty() {
            return Ok(());
        }
        let mut left = names;
        if !grace.is_zero() {
            self.signal(uid, &left, nix::libc::SIGTERM);
            left = self.wait_exited(uid, &left, Instant::now() + grace);
        }
        if !left.is_empty() {
            self.signal(uid, &left, nix::libc::SIGKILL);
            left = self.wait_exited(uid, &left, Instant::now() + KILL_WAIT);
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(err(
                uid,
                format!("containers {left:?} did not die after SIGKILL"),
            ))
        }
    }
}

fn observed_mut<'a>(o: &'a mut ObservedPod, name: &str) -> Option<&'a mut ObservedContainer> {
    o.containers
        .iter_mut()
        .chain(o.init_containers.iter_mut())
        .find(|c| c.name == name)
}

/// `rel` joined to `base` when it stays inside it.
fn join_inside(base: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.components().all(|c| matches!(c, Component::Normal(_))) {
        Some(base.join(p))
    } else {
        None
    }
}

/// A pod made ready to start: its record (being flushed) and the container whose
/// directories came with it.
struct Prepared {
    rec: PodRecord,
    flushing: record::Flushing,
    fresh: Option<String>,
}

impl LinuxRuntime {
    fn prepare_pod(&self, pod: &PodToStart<'_>) -> Result<Prepared, RuntimeError> {
        let inner = &self.inner;
        let uid = pod.uid;
        let spec = &pod.pod.spec;
        let dir = inner.pod_dir(uid);
        let run = inner.run_pod_dir(uid);
        let io = |path: &Path, source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let first = spec.init_containers.iter().chain(&spec.containers).next();
        let lower = first
            .and_then(|c| pod.images.get(&c.image))
            .map(|image| inner.lower(&image.layers));
        let claimed = first.and_then(|c| {
            inner
                .claim_skeleton(&dir, &c.name, lower.as_ref())
                .map(|mounted| (c, mounted))
        });
        let fresh = claimed.map(|(c, _)| c.name.clone());
        if fresh.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }

        let hostname = if spec.host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into())
        } else {
            spec::pod_hostname(pod.pod)
        };
        // The namespaces are made (or a spare's hostname set) on their own thread while
        // the pod's files and bundles are written.
        let sandbox = inner
            .sandbox(&run, spec.host_network, &hostname)
            .map_err(|e| err(uid, e))?;
        // The first container's overlay, unless it came mounted with its skeleton, is
        // mounted now, before the record's flush starts: mounting writes to the same
        // filesystem (overlayfs sets up its work directory) and would wait behind it.
        if let (Some((c, false)), Some(lower)) = (claimed, &lower) {
            let cdir = dir.join("containers").join(record::safe_name(&c.name));
            lower.mount(&cdir).map_err(|e| err(uid, e))?;
        }
        let etc = run.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| io(&etc, e))?;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        let resolv = std::fs::read(inner.cfg.etc_dir.join("resolv.conf")).unwrap_or_default();
        for (name, content) in [
            ("hosts", hosts.into_bytes()),
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n").into_bytes()),
        ] {
            let p = etc.join(name);
            std::fs::write(&p, content).map_err(|e| io(&p, e))?;
        }

        let mut tmpfs = Vec::new();
        let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
        for v in &spec.volumes {
            if let Some(ed) = &v.empty_dir {
                let p = dir.join("volumes").join(record::safe_name(&v.name));
                std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
                if ed.medium == Some(StorageMedium::Memory) {
                    let size = ed
                        .size_limit
                        .as_ref()
                        .map(|q| format!(",size={}", q.value().max(4096)))
                        .unwrap_or_default();
                    let data = format!("mode=1777{size}");
                    mount(
                        Some("tmpfs"),
                        &p,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some(data.as_str()),
                    )
                    .map_err(|e| err(uid, format!("volume {}: tmpfs: {e}", v.name)))?;
                    tmpfs.push(p.clone());
                }
                volumes.insert(v.name.clone(), p);
            } else if let Some(hp) = &v.host_path {
                let p = PathBuf::from(&hp.path);
                if !p.is_absolute() {
                    return Err(err(
                        uid,
                        format!("volume {}: hostPath {:?} is not absolute", v.name, hp.path),
                    ));
                }
                if hp.type_ == Some(HostPathType::DirectoryOrCreate) {
                    std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
                }
                volumes.insert(v.name.clone(), p);
            }
        }

        let sb_paths = spec::SandboxPaths {
            net: sandbox.paths().net.clone(),
            ipc: sandbox.paths().ipc.clone(),
            uts: sandbox.paths().uts.clone(),
        };

        let mut containers = BTreeMap::new();
        let observe = |c: &Container| ObservedContainer {
            name: c.name.clone(),
            image: c.image.clone(),
            container_id: String::new(),
            restart_count: 0,
            state: RunState::Waiting,
            last_exit: None,
        };
        let mut observed = ObservedPod {
            uid: uid.to_string(),
            namespace: pod.pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.pod.metadata.name.clone(),
            revision: pod.revision,
            spec_hash: pod.spec_hash,
            started_at: Utc::now(),
            pod_ip: None,
            init_containers: spec.init_containers.iter().map(observe).collect(),
            containers: spec.containers.iter().map(observe).collect(),
        };
        for c in spec.init_containers.iter().chain(&spec.containers) {
            let image: &LocalImage = pod.images.get(&c.image).ok_or_else(|| {
                err(
                    uid,
                    format!("container {}: image {} was not provided", c.name, c.image),
                )
            })?;
            let id = format!("{}-{}", record::safe_name(uid), record::safe_name(&c.name));
            let cgroups_path = format!("/{}/{}", inner.cfg.cgroup_parent, id);
            let cdir = dir.join("containers").join(record::safe_name(&c.name));
            let bundle = run
                .join("containers")
                .join(record::safe_name(&c.name))
                .join("bundle");
            std::fs::create_dir_all(&bundle).map_err(|e| io(&bundle, e))?;
            let mut mounts = Vec::new();
            for vm in &c.volume_mounts {
                let base = volumes.get(&vm.name).ok_or_else(|| {
                    err(
                        uid,
                        spec::SpecError::NoSuchVolume {
                            container: c.name.clone(),
                            volume: vm.name.clone(),
                        },
                    )
                })?;
                let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                    Some(sp) => {
                        let p = join_inside(base, sp).ok_or_else(|| {
                            err(
                                uid,
                                format!("container {}: subPath {sp:?} leaves its volume", c.name),
                            )
                        })?;
                        if !p.exists() {
                            std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
                        }
                        p
                    }
                    None => base.clone(),
                };
                mounts.push(spec::HostMount {
                    source,
                    destination: vm.mount_path.clone(),
                    read_only: vm.read_only,
                });
            }
            let layers_top_first: Vec<&Path> =
                image.layers.iter().rev().map(PathBuf::as_path).collect();
            let rootfs = cdir.join("rootfs");
            let input = spec::SpecInput {
                pod: pod.pod,
                container: c,
                image: &image.config,
                layers_top_first,
                rootfs: &rootfs,
                sandbox: &sb_paths,
                mounts,
                etc_files: [
                    (&etc.join("hosts"), "/etc/hosts"),
                    (&etc.join("resolv.conf"), "/etc/resolv.conf"),
                    (&etc.join("hostname"), "/etc/hostname"),
                ],
                cgroups_path: cgroups_path.clone(),
                pids_limit: inner.cfg.pids_limit,
                nofile_hard: spec::own_nofile_hard(),
                precompiled_seccomp: inner.seccomp_filter.is_some(),
            };
            let config = spec::build(&input).map_err(|e| err(uid, e))?;
            let cfg_path = bundle.join("config.json");
            std::fs::write(
                &cfg_path,
                serde_json::to_vec(&config).expect("spec serializes"),
            )
            .map_err(|e| io(&cfg_path, e))?;
            let filter = bundle.join(seccomp::FILTER_FILE);
            let _ = std::fs::remove_file(&filter);
            if let (Some(compiled), Some(_)) = (
                &inner.seccomp_filter,
                config["annotations"].get(seccomp::PRECOMPILED),
            ) {
                std::fs::hard_link(compiled, &filter)
                    .or_else(|_| std::fs::copy(compiled, &filter).map(drop))
                    .map_err(|e| io(&filter, e))?;
            }
            if let Some(oc) = observe_named(&mut observed, &c.name) {
                oc.container_id = id.clone();
            }
            containers.insert(
                c.name.clone(),
                ContainerRecord {
                    id,
                    cgroups_path,
                    layers: image.layers.clone(),
                    pid: None,
                    pid_start: None,
                },
            );
        }
        let rec = PodRecord {
            observed,
            host_network: spec.host_network,
            grace_secs: spec
                .termination_grace_period_seconds
                .map(|s| s.max(0) as u64)
                .unwrap_or(DEFAULT_GRACE_SECS),
            tmpfs,
            containers,
        };
        // The record is flushed while the namespaces are made and the first containers
        // start; a failure after this point removes it again (see `start_pod`).
        let flushing =
            record::write_first(&inner.cfg.state_dir, &rec, inner.spares.take_record_file())?;
        if let Err(e) = sandbox.wait() {
            // Dropping the flush waits for it, before the record is removed.
            drop(flushing);
            return Err(err(uid, e));
        }
        Ok(Prepared {
            rec,
            flushing,
            fresh,
        })
    }

    /// Frees everything of a pod whose containers have all ended.
    fn teardown(&self, uid: &str, rec: &PodRecord) {
        let inner = &self.inner;
        let dir = inner.pod_dir(uid);
        let run = inner.run_pod_dir(uid);
        // The containers' overlays go to the trash with the pod's directory, still
        // mounted: the trash unmounts them.
        for c in rec.containers.values() {
            inner.delete_container_state(c);
        }
        sandbox::destroy(&sandbox::Sandbox::paths(&run.join("ns"), rec.host_network));
        // A pod started by an agent that kept its sandbox under the state dir.
        let old_ns = dir.join("ns");
        if old_ns.exists() {
            sandbox::destroy(&sandbox::Sandbox::paths(&old_ns, rec.host_network));
        }
        for t in &rec.tmpfs {
            let _ = umount2(t, MntFlags::MNT_DETACH);
        }
        inner
            .trash
            .discard(&run, &inner.cfg.run_dir.join(trash::TRASH));
        inner
            .trash
            .discard(&dir, &inner.cfg.state_dir.join(trash::TRASH));
    }
}

fn observe_named<'a>(o: &'a mut ObservedPod, name: &str) -> Option<&'a mut ObservedContainer> {
    observed_mut(o, name)
}

impl ContainerRuntime for LinuxRuntime {
    fn start_pod(&self, pod: PodToStart<'_>) -> Result<(), RuntimeError> {
        let _start = self.inner.busy.start();
        let uid = pod.uid;
        if self.inner.lock().contains_key(uid) {
            self.remove_pod(uid)?;
        }
        let Prepared {
            rec,
            flushing,
            fresh,
        } = match self.prepare_pod(&pod) {
            Ok(r) => r,
            Err(e) => {
                let partial = PodRecord {
                    observed: ObservedPod {
                        uid: uid.to_string(),
                        namespace: String::new(),
                        name: String::new(),
                        revision: 0,
                        spec_hash: 0,
                        started_at: Utc::now(),
                        pod_ip: None,
                        init_containers: Vec::new(),
                        containers: Vec::new(),
                    },
                    host_network: pod.pod.spec.host_network,
                    grace_secs: 0,
                    tmpfs: pod
                        .pod
                        .spec
                        .volumes
                        .iter()
                        .map(|v| {
                            self.inner
                                .pod_dir(uid)
                                .join("volumes")
                                .join(record::safe_name(&v.name))
                        })
                        .collect(),
                    containers: BTreeMap::new(),
                };
                self.teardown(uid, &partial);
                if let Err(re) = record::remove(&self.inner.cfg.state_dir, uid) {
                    warn!(pod = uid, error = %re, "cannot remove the record of a pod that did not start");
                }
                return Err(e);
            }
        };
        self.inner.lock().insert(
            uid.to_string(),
            PodState {
                rec,
                pidfds: BTreeMap::new(),
                first_flush: Some(flushing),
                fresh,
            },
        );
        // Init containers run one after another, each to completion: the first starts
        // now, the next when the reconciler sees this one completed (and restarts a
        // failed one with back-off); app containers start once all have completed.
        let spec: &Pod = pod.pod;
        match spec.spec.init_containers.first() {
            Some(first) => self.inner.launch(uid, &first.name)?,
            None => {
                for c in &spec.spec.containers {
                    self.inner.launch(uid, &c.name)?;
                }
            }
        }
        // Reported started only once its record is durable.
        self.inner.first_record_flushed(uid)
    }

    fn start_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        {
            let mut pods = self.inner.lock();
            let p = pods.get_mut(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            let waiting = observed_mut(&mut p.rec.observed, container)
                .ok_or_else(|| RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: container.to_string(),
                })?
                .state
                == RunState::Waiting;
            if !waiting {
                return Err(err(
                    uid,
                    format!("container {container} has started already"),
                ));
            }
        }
        self.inner.launch(uid, container)
    }

    fn stop_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        let grace = {
            let pods = self.inner.lock();
            let p = pods.get(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            Duration::from_secs(p.rec.grace_secs)
        };
        self.inner.stop(uid, grace)
    }

    fn kill_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        // As the kubelet kills a container that failed its liveness probe: SIGTERM, and
        // SIGKILL after the pod's grace period. The watcher records the exit.
        let grace = {
            let pods = self.inner.lock();
            let p = pods.get(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            if !p.rec.containers.contains_key(container) {
                return Err(RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: container.to_string(),
                });
            }
            Duration::from_secs(p.rec.grace_secs)
        };
        self.inner.stop_some(uid, Some(container), grace)
    }

    fn remove_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        if !self.inner.lock().contains_key(uid) {
            return Err(RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            });
        }
        self.inner.stop(uid, Duration::ZERO)?;
        let state = self.inner.lock().remove(uid);
        if let Some(state) = state {
            self.teardown(uid, &state.rec);
        }
        // Renamed away at once (its blocks are freed in the background).
        let bin = self.inner.cfg.state_dir.join(trash::TRASH);
        for f in record::files_of(&self.inner.cfg.state_dir, uid) {
            self.inner.trash.discard(&f, &bin);
        }
        Ok(())
    }

    fn restart_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        {
            let mut pods = self.inner.lock();
            let p = pods.get_mut(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            if p.pidfds.contains_key(container) {
                return Err(err(uid, format!("container {container} is still running")));
            }
            let oc = observed_mut(&mut p.rec.observed, container).ok_or_else(|| {
                RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: container.to_string(),
                }
            })?;
            if let RunState::Exited(e) = oc.state {
                oc.last_exit = Some(e);
            }
            oc.restart_count += 1;
            self.inner.save(&p.rec)?;
        }
        let log_dir = self.inner.pod_dir(uid).join("logs").join(container);
        logs::LogFiles::at(&log_dir)
            .start_new_instance(self.inner.cfg.log_rotation.keep)
            .map_err(|e| RuntimeError::Io {
                path: log_dir,
                source: e,
            })?;
        self.inner.launch(uid, container)
    }

    fn list(&self) -> Result<Vec<ObservedPod>, RuntimeError> {
        Ok(self
            .inner
            .lock()
            .values()
            .map(|p| p.rec.observed.clone())
            .collect())
    }

    fn exec(&self, request: ExecRequest<'_>) -> Result<Box<dyn ExecProcess>, RuntimeError> {
        let uid = request.uid;
        let id = {
            let pods = self.inner.lock();
            let p = pods.get(uid).ok_or_else(|| RuntimeError::NoSuchPod {
                uid: uid.to_string(),
            })?;
            let c = p.rec.containers.get(request.container).ok_or_else(|| {
                RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: request.container.to_string(),
                }
            })?;
            if !p.pidfds.contains_key(request.container) {
                return Err(RuntimeError::NotRunning {
                    uid: uid.to_string(),
                    container: request.container.to_string(),
                });
            }
            c.id.clone()
        };
        if request.command.is_empty() {
            return Err(err(uid, "exec needs a command"));
        }
        let pid_file = self
            .inner
            .pod_dir(uid)
            .join(format!("exec-{}.pid", rand::random::<u64>()));
        let stdin = match request.stdin {
            Some(fd) => Stdio::from(fd),
            None => Stdio::null(),
        };
        let child = Command::new(&self.inner.cfg.helper)
            .arg(HELPER_ARG)
            .arg("exec")
            .arg("--root")
            .arg(self.inner.lc_root_of(&id))
            .arg("--id")
            .arg(&id)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--bundle")
            .arg(self.inner.bundle_of(uid, request.container))
            .arg("--")
            .args(request.command)
            .stdin(stdin)
            .stdout(Stdio::from(request.stdout))
            .stderr(Stdio::from(request.stderr))
            .spawn()
            .map_err(|e| {
                err(
                    uid,
                    format!("running {}: {e}", self.inner.cfg.helper.display()),
                )
            })?;
        // A pidfd for the helper, so a kill racing its exit can never hit a recycled pid.
        let helper = sys::pidfd_open(child.id() as i32).ok();
        Ok(Box::new(LinuxExec {
            child: Mutex::new(child),
            helper,
            pid_file,
        }))
    }

    fn netns_path(&self, uid: &str) -> Option<PathBuf> {
        let pods = self.inner.lock();
        let p = pods.get(uid)?;
        if p.rec.host_network {
            return None;
        }
        let net = self.inner.run_pod_dir(uid).join("ns").join("net");
        let old = self.inner.pod_dir(uid).join("ns").join("net");
        Some(if earlier_agents_only(&net, &old) {
            old
        } else {
            net
        })
    }

    fn log_paths(&self, uid: &str, container: &str) -> Option<LogPaths> {
        let pods = self.inner.lock();
        let p = pods.get(uid)?;
        p.rec.containers.get(container)?;
        let dir = self.inner.pod_dir(uid).join("logs").join(container);
        Some(logs::LogFiles::at(&dir).paths(self.inner.cfg.log_rotation.keep))
    }
}

/// How long [`LinuxExec::kill`] waits for the helper to start the process it kills.
const EXEC_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A process started in a container: the helper waits for it and exits with its code.
#[derive(Debug)]
struct LinuxExec {
    child: Mutex<std::process::Child>,
    helper: Option<OwnedFd>,
    pid_file: PathBuf,
}

impl ExecProcess for LinuxExec {
    fn wait(&self) -> Result<i32, RuntimeError> {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let status = child.wait().map_err(|source| RuntimeError::Io {
            path: self.pid_file.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&self.pid_file);
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn kill(&self) -> Result<(), RuntimeError> {
        // The helper writes the pid file once libcontainer has created the process, and
        // is its parent from then on, so the pid cannot have been recycled. Killing the
        // helper before then would strand the half-made process inside the container
        // (it waits for a start signal that would never come): wait for the pid first,
        // and only kill the helper if it never comes.
        // A helper that has ended waited for its process first: nothing is left to kill.
        let ended = |wait_ms| {
            self.helper
                .as_ref()
                .is_some_and(|fd| sys::poll_readable(&[fd.as_fd()], wait_ms).map_or(true, |r| r[0]))
        };
        let deadline = std::time::Instant::now() + EXEC_START_WAIT;
        while !ended(0) {
            if let Some(pid) = std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Ok(());
            }
            let Some(fd) = &self.helper else {
                return Ok(());
            };
            if std::time::Instant::now() >= deadline {
                warn!(pid_file = %self.pid_file.display(), "the exec helper never started its process; killing it");
                let _ = sys::pidfd_send_signal(fd.as_fd(), nix::libc::SIGKILL);
                return Ok(());
            }
            // Wait a little for the pid file, or for the helper to end.
            ended(5);
        }
        Ok(())
    }
}
