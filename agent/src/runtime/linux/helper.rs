//! The re-executed helper: `skiff-agent __container zygote|exec ...`. libcontainer forks
//! with a raw clone3, which is not safe in the agent's multi-threaded process (another
//! thread may hold the allocator's or stdio's lock at that instant), so the agent runs
//! each libcontainer call in a single-threaded copy of itself. `main` hands the
//! arguments here before any thread or async runtime exists.
//!
//! `zygote` serves container starts for as long as the runtime is open. The agent
//! executes it once; each start is one message on its stdin, a unix socket (see
//! [`super::zygote`]). For each the zygote forks a child, which creates and starts the
//! container, answers with the init pid and exits: the init process is re-parented to
//! the agent (a child subreaper), which reaps it. A fork of a process that has already
//! loaded, linked and warmed up costs a fraction of an exec of the agent binary, and
//! nothing of it is left on the start's path.
//!
//! `exec` starts a process in a running container, becomes its reaper, waits for it and
//! exits with its exit code (128 + signal when a signal ended it).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use oci_spec::runtime::Spec;

use super::seccomp::{FILTER_FILE, PRECOMPILED};
use super::zygote;

/// The hidden first argument that selects the helper.
pub const HELPER_ARG: &str = "__container";

/// Exit code of the helper when it could not do its job (its stderr says why).
pub(crate) const HELPER_FAILED: u8 = 125;

/// Runs the helper when the process was started as one. Call it first thing in `main`,
/// before any thread is spawned; returns `None` for a normal agent start.
pub fn run_helper_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return None;
    }
    let rest: Vec<OsString> = args.collect();
    // libcontainer's own tracing, for diagnosing a failing container start.
    if let Ok(filter) = std::env::var("SKIFF_HELPER_LOG")
        && let Ok(filter) = filter.parse::<tracing_subscriber::filter::Targets>()
    {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .finish()
            .with(filter)
            .try_init();
    }
    Some(match helper(&rest) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::from(HELPER_FAILED)
        }
    })
}

/// Named options before `--`, and what follows it.
struct Parsed {
    opts: Vec<(String, String)>,
    rest: Vec<String>,
}

impl Parsed {
    fn get(&self, name: &str) -> Result<&str, String> {
        self.opts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("{HELPER_ARG}: missing --{name}"))
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.opts
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut opts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            return Ok(Parsed {
                opts,
                rest: it.cloned().collect(),
            });
        }
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("{HELPER_ARG}: unexpected argument {a:?}"))?;
        let value = it
            .next()
            .ok_or_else(|| format!("{HELPER_ARG}: --{name} needs a value"))?;
        opts.push((name.to_string(), value.clone()));
    }
    Ok(Parsed {
        opts,
        rest: Vec::new(),
    })
}

/// Formats an error with its whole chain of causes: libcontainer's top-level errors
/// alone rarely say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn helper(args: &[OsString]) -> Result<ExitCode, String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(String::from)
                .ok_or_else(|| format!("{HELPER_ARG}: argument {a:?} is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let (verb, rest) = args
        .split_first()
        .ok_or_else(|| format!("{HELPER_ARG}: expected zygote or exec"))?;
    match verb.as_str() {
        "zygote" => zygote(),
        "exec" => exec(&parse(rest)?),
        other => Err(format!("{HELPER_ARG}: unknown verb {other:?}")),
    }
}

/// How often the zygote looks for ended children while some have not been reaped (it
/// sleeps without a timeout when all have).
const REAP_EVERY_MS: i32 = 100;

/// Serves `run` requests on stdin until the agent closes its end.
fn zygote() -> Result<ExitCode, String> {
    // libcontainer's processes open /proc files through a private procfs instance,
    // made on first use and cached for the process and the processes it forks: making
    // it here takes a mount off every start's path.
    if let Err(e) = pathrs::procfs::ProcfsHandle::new() {
        let _ = writeln!(std::io::stderr(), "{HELPER_ARG} zygote: procfs handle: {e}");
    }
    let stdin = std::io::stdin();
    let control = stdin.as_fd();
    let mut buf = vec![0u8; zygote::REQUEST_MAX];
    let mut children = 0usize;
    loop {
        children -= reap_children().min(children);
        let timeout = if children > 0 { REAP_EVERY_MS } else { -1 };
        let ready = super::sys::poll_readable(&[control], timeout)
            .map_err(|e| format!("{HELPER_ARG} zygote: poll: {e}"))?;
        if !ready[0] {
            continue;
        }
        let (n, answer) = match super::sys::recv_message(control, &mut buf) {
            Ok(m) => m,
            // A request too long is dropped with its socket, which answers it.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(format!("{HELPER_ARG} zygote: receiving a request: {e}")),
        };
        if n == 0 {
            // The runtime closed (or the agent is gone).
            reap_children();
            return Ok(ExitCode::SUCCESS);
        }
        // A request comes with the socket to answer on; one without is no request.
        let Some(answer) = answer else { continue };
        match super::sys::fork_single_threaded() {
            Ok(None) => {
                // The child: the control socket stays with the zygote alone, so that
                // the zygote's end is the last one and its exit hangs up on the agent.
                if let Ok(null) = File::open("/dev/null") {
                    let _ = nix::unistd::dup2_stdin(&null);
                }
                std::process::exit(serve(&buf[..n], answer));
            }
            Ok(Some(_)) => children += 1,
            Err(e) => {
                let _ = zygote::answer(answer.as_fd(), Err(format!("fork: {e}")));
            }
        }
    }
}

/// Reaps the zygote's children that have ended, without waiting; returns how many.
fn reap_children() -> usize {
    use nix::sys::wait::WaitPidFlag;
    let mut reaped = 0;
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
        reaped += 1;
    }
    reaped
}

/// Serves one request in a child of the zygote; returns its exit code.
fn serve(request: &[u8], answer: OwnedFd) -> i32 {
    let started = zygote::decode_request(request).and_then(|args| match args.split_first() {
        Some((verb, rest)) if verb == "run" => run(&parse(rest)?),
        _ => Err(format!("{HELPER_ARG} zygote: expected a run request")),
    });
    let failed = started.is_err();
    if let Err(e) = zygote::answer(answer.as_fd(), started) {
        let _ = writeln!(std::io::stderr(), "{HELPER_ARG} zygote: answering: {e}");
        return HELPER_FAILED.into();
    }
    if failed { HELPER_FAILED.into() } else { 0 }
}

/// Runs the container's program as libcontainer's default executor does, after loading
/// the bundle's precompiled seccomp filter when it has one. The filter goes on last,
/// right before the program is executed, when the container's no_new_privs is set.
#[derive(Clone)]
struct Workload {
    filter: Option<Vec<u8>>,
}

impl Workload {
    fn from_bundle(bundle: &std::path::Path) -> Result<Workload, String> {
        let path = bundle.join(FILTER_FILE);
        match std::fs::read(&path) {
            Ok(program) => Ok(Workload {
                filter: Some(program),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Workload { filter: None }),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }
}

impl Executor for Workload {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let wanted = spec
            .annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key(PRECOMPILED));
        if wanted && self.filter.is_none() {
            // Never run a container unconfined because its filter went missing.
            return Err(ExecutorValidationError::ArgValidationError(format!(
                "the container's seccomp filter ({FILTER_FILE}) is missing from its bundle"
            )));
        }
        DefaultExecutor {}.validate(spec)
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(program) = &self.filter {
            super::sys::load_seccomp_filter(program)
                .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }
}

/// Creates and starts a container; returns its init pid.
fn run(p: &Parsed) -> Result<i32, String> {
    let root = PathBuf::from(p.get("root")?);
    let id = p.get("id")?.to_string();
    let bundle = PathBuf::from(p.get("bundle")?);
    let log_path = p.get("log")?;
    // O_APPEND, so the agent's copy-then-truncate rotation never leaves a hole.
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log_path)
        .map_err(|e| format!("opening log file {log_path}: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("duplicating log fd: {e}"))?;
    let null = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
    let workload = Workload::from_bundle(&bundle)?;
    let mut container = ContainerBuilder::new(id.clone(), SyscallType::Linux)
        .with_executor(workload)
        .with_root_path(&root)
        .map_err(|e| format!("container root {}: {}", root.display(), chain(&e)))?
        .with_stdin(null)
        .with_stdout(log)
        .with_stderr(log2)
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("creating container {id}: {}", chain(&e)))?;
    container
        .start()
        .map_err(|e| format!("starting container {id}: {}", chain(&e)))?;
    container
        .pid()
        .map(|pid| pid.as_raw())
        .ok_or_else(|| format!("container {id} has no pid after start"))
}

fn exec(p: &Parsed) -> Result<ExitCode, String> {
    let root = PathBuf::from(p.get("root")?);
    let id = p.get("id")?.to_string();
    let pid_file = PathBuf::from(p.get("pid-file")?);
    let workload = Workload::from_bundle(std::path::Path::new(p.get("bundle")?))?;
    if p.rest.is_empty() {
        return Err(format!("{HELPER_ARG} exec: no command after --"));
    }
    let env = p
        .all("env")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // The exec'd process's parent (libcontainer's intermediate process) exits at once;
    // as subreaper this helper inherits it and can report its exit code.
    super::sys::set_child_subreaper().map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let pid = ContainerBuilder::new(id.clone(), SyscallType::Linux)
        .with_executor(workload)
        .with_root_path(&root)
        .map_err(|e| format!("container root {}: {}", root.display(), chain(&e)))?
        .with_pid_file(Some(&pid_file))
        .map_err(|e| format!("pid file {}: {}", pid_file.display(), chain(&e)))?
        .as_tenant()
        .with_container_args(p.rest.clone())
        .with_env(env)
        .with_detach(true)
        .build()
        .map_err(|e| format!("exec in container {id}: {}", chain(&e)))?;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid.as_raw()), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitCode::from(code as u8)),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok(ExitCode::from(128u8.wrapping_add(sig as u8)));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for exec'd process {pid}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotated: bool) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": ["/bin/true"], "env": ["PATH=/usr/bin:/bin"], "cwd": "/",
                         "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" },
        });
        if annotated {
            v["annotations"] = serde_json::json!({ PRECOMPILED: "default" });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_container_marked_for_the_precompiled_filter_does_not_run_without_it() {
        let none = Workload { filter: None };
        let err = none.validate(&spec(true)).unwrap_err();
        assert!(err.to_string().contains(FILTER_FILE), "{err}");
        // Unmarked containers (privileged, or with privilege escalation allowed) carry
        // their profile in the spec, for libcontainer.
        none.validate(&spec(false)).unwrap();
        Workload {
            filter: Some(vec![0; 8]),
        }
        .validate(&spec(true))
        .unwrap();
    }

    #[test]
    fn the_filter_comes_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Workload::from_bundle(dir.path()).unwrap().filter.is_none());
        std::fs::write(dir.path().join(FILTER_FILE), [1u8; 16]).unwrap();
        assert_eq!(
            Workload::from_bundle(dir.path()).unwrap().filter,
            Some(vec![1u8; 16])
        );
    }
}
