//! A pod's sandbox: the network, IPC and UTS namespaces its containers share, kept alive
//! by bind mounts of the namespace files under the pod's directory (as `ip netns add`
//! does), so they exist before the first container starts and outlive container
//! restarts. The namespaces are made on a short-lived thread of its own: unshare(2) of
//! these three affects only the calling thread, so the agent's other threads and the
//! agent's own namespaces are untouched.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use super::sys;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {dir}: {what}: {source}")]
    Io {
        dir: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("sandbox {dir}: {what}: {source}")]
    Sys {
        dir: PathBuf,
        what: &'static str,
        source: nix::Error,
    },
    #[error("sandbox {dir}: the namespace thread panicked")]
    Thread { dir: PathBuf },
}

/// The namespace files of one sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: Option<PathBuf>,
}

impl Sandbox {
    /// The files a sandbox in `dir` has (whether or not they exist yet).
    pub fn paths(dir: &Path, host_network: bool) -> Sandbox {
        Sandbox {
            net: (!host_network).then(|| dir.join("net")),
            ipc: dir.join("ipc"),
            uts: (!host_network).then(|| dir.join("uts")),
        }
    }

    fn all(&self) -> Vec<(&Path, &'static str)> {
        let mut v = vec![(self.ipc.as_path(), "ipc")];
        if let Some(n) = &self.net {
            v.push((n.as_path(), "net"));
        }
        if let Some(u) = &self.uts {
            v.push((u.as_path(), "uts"));
        }
        v
    }
}

/// Sandbox namespaces being made on their thread: the caller carries on (writing the
/// pod's files and bundles) meanwhile. Dropping it waits for the thread, so no mount
/// appears after its pod was given up.
pub(crate) struct Pending {
    dir: PathBuf,
    sb: Sandbox,
    thread: Option<std::thread::JoinHandle<Result<(), SandboxError>>>,
}

impl Pending {
    /// The files the sandbox will have.
    pub fn paths(&self) -> &Sandbox {
        &self.sb
    }

    /// Waits for the namespaces; on failure nothing of the sandbox is left.
    pub fn wait(mut self) -> Result<Sandbox, SandboxError> {
        let thread = self.thread.take().expect("joined once");
        let res = thread.join().map_err(|_| SandboxError::Thread {
            dir: self.dir.clone(),
        });
        match res {
            Ok(Ok(())) => Ok(self.sb.clone()),
            Ok(Err(e)) | Err(e) => {
                destroy(&self.sb);
                Err(e)
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts making the sandbox namespaces in `dir`; with `host_network` only an IPC
/// namespace (the host's network and hostname are used).
pub(crate) fn start(
    dir: &Path,
    host_network: bool,
    hostname: &str,
) -> Result<Pending, SandboxError> {
    let sb = Sandbox::paths(dir, host_network);
    std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
        dir: dir.to_path_buf(),
        what: "creating the directory",
        source,
    })?;
    let (d, s, h) = (dir.to_path_buf(), sb.clone(), hostname.to_string());
    on_thread(dir, sb, move || make_namespaces(&d, &s, &h))
}

/// Runs `work` on a short-lived thread of its own, for the sandbox `sb` in `dir`.
fn on_thread(
    dir: &Path,
    sb: Sandbox,
    work: impl FnOnce() -> Result<(), SandboxError> + Send + 'static,
) -> Result<Pending, SandboxError> {
    let thread = std::thread::Builder::new()
        .name("skiff-sandbox".into())
        .spawn(work)
        .map_err(|source| SandboxError::Io {
            dir: dir.to_path_buf(),
            what: "spawning the namespace thread",
            source,
        })?;
    Ok(Pending {
        dir: dir.to_path_buf(),
        sb,
        thread: Some(thread),
    })
}

/// Takes over a sandbox made ahead in `spare` (by [`start`], without host networking):
/// renames it to `dir` (whose parent exists) and sets the pod's hostname in its UTS
/// namespace on a thread, as [`start`] makes one.
pub(crate) fn take_over(spare: &Path, dir: &Path, hostname: &str) -> Result<Pending, SandboxError> {
    std::fs::rename(spare, dir).map_err(|source| SandboxError::Io {
        dir: dir.to_path_buf(),
        what: "taking over a spare sandbox",
        source,
    })?;
    let sb = Sandbox::paths(dir, false);
    let (d, uts, h) = (dir.to_path_buf(), sb.uts.clone(), hostname.to_string());
    on_thread(dir, sb, move || set_hostname(&d, uts.as_deref(), &h))
}

/// Joins the UTS namespace behind `uts` (this thread only) and names it.
fn set_hostname(dir: &Path, uts: Option<&Path>, hostname: &str) -> Result<(), SandboxError> {
    let Some(uts) = uts else { return Ok(()) };
    let f = std::fs::File::open(uts).map_err(|source| SandboxError::Io {
        dir: dir.to_path_buf(),
        what: "opening the UTS namespace",
        source,
    })?;
    let sys_err = |what, source| SandboxError::Sys {
        dir: dir.to_path_buf(),
        what,
        source,
    };
    nix::sched::setns(&f, CloneFlags::CLONE_NEWUTS).map_err(|e| sys_err("setns", e))?;
    nix::unistd::sethostname(hostname).map_err(|e| sys_err("sethostname", e))
}

/// Runs on its own thread, which ends right after: the namespaces stay alive through
/// the bind mounts.
fn make_namespaces(dir: &Path, sb: &Sandbox, hostname: &str) -> Result<(), SandboxError> {
    let sys_err = |what, source| SandboxError::Sys {
        dir: dir.to_path_buf(),
        what,
        source,
    };
    let mut flags = CloneFlags::CLONE_NEWIPC;
    if sb.net.is_some() {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
    }
    unshare(flags).map_err(|e| sys_err("unshare", e))?;
    if sb.uts.is_some() {
        nix::unistd::sethostname(hostname).map_err(|e| sys_err("sethostname", e))?;
    }
    if sb.net.is_some() {
        sys::set_loopback_up().map_err(|source| SandboxError::Io {
            dir: dir.to_path_buf(),
            what: "setting lo up",
            source,
        })?;
    }
    for (file, ns) in sb.all() {
        std::fs::File::create(file).map_err(|source| SandboxError::Io {
            dir: dir.to_path_buf(),
            what: "creating a namespace file",
            source,
        })?;
        let src = format!("/proc/thread-self/ns/{ns}");
        mount(
            Some(src.as_str()),
            file,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys_err("bind-mounting a namespace", e))?;
    }
    Ok(())
}

/// Unmounts and removes the namespace files; the namespaces end with their last user.
pub(crate) fn destroy(sb: &Sandbox) {
    for (file, _) in sb.all() {
        let _ = umount2(file, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(file);
    }
}
