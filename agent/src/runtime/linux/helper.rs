//! The re-executed helper: `skiff-agent __container run|exec ...`. libcontainer forks
//! with a raw clone3, which is not safe in the agent's multi-threaded process (another
//! thread may hold the allocator's or stdio's lock at that instant), so the agent runs
//! each libcontainer call in a fresh, single-threaded copy of itself. `main` hands the
//! arguments here before any thread or async runtime exists.
//!
//! `run` creates and starts a container, prints its init pid and exits: the init process
//! is re-parented to the agent (a child subreaper), which reaps it. `exec` starts a
//! process in a running container, becomes its reaper, waits for it and exits with its
//! exit code (128 + signal when a signal ended it).
//!
//! `standby` is `run` started ahead of time: the runtime keeps one helper spawned and
//! waiting, so the exec of the agent binary and its start-up are off the path of the
//! next container start. It reads one request (the arguments of `run`, each ended by a
//! NUL byte) from its stdin until end of file, serves it and exits like `run`; an empty
//! request (the runtime closing) makes it exit at once.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use oci_spec::runtime::Spec;

use super::seccomp::{FILTER_FILE, PRECOMPILED};

/// The hidden first argument that selects the helper.
pub const HELPER_ARG: &str = "__container";

/// Niceness of a waiting helper until its request arrives (see `spawn_standby`).
pub(crate) const STANDBY_NICE: i32 = 10;

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
        .ok_or_else(|| format!("{HELPER_ARG}: expected run, standby or exec"))?;
    if verb == "standby" {
        return standby();
    }
    let p = parse(rest)?;
    match verb.as_str() {
        "run" => run(&p),
        "exec" => exec(&p),
        other => Err(format!("{HELPER_ARG}: unknown verb {other:?}")),
    }
}

/// Waits for one `run` request on stdin and serves it.
fn standby() -> Result<ExitCode, String> {
    // libcontainer's processes open /proc files through a private procfs instance,
    // made on first use and cached for the process (and the processes it forks):
    // making it here, before the request, takes a mount off the start's path.
    if let Err(e) = pathrs::procfs::ProcfsHandle::new() {
        let _ = writeln!(
            std::io::stderr(),
            "{HELPER_ARG} standby: procfs handle: {e}"
        );
    }
    let mut request = Vec::new();
    std::io::stdin()
        .read_to_end(&mut request)
        .map_err(|e| format!("{HELPER_ARG} standby: reading the request: {e}"))?;
    if request.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Started at a low priority, served at the normal one: every process of the
    // container is forked from here on and inherits it.
    super::sys::set_thread_nice(0)
        .map_err(|e| format!("{HELPER_ARG} standby: resetting the priority: {e}"))?;
    let args: Vec<String> = request
        .strip_suffix(b"\0")
        .unwrap_or(&request)
        .split(|b| *b == 0)
        .map(|a| {
            String::from_utf8(a.to_vec())
                .map_err(|_| format!("{HELPER_ARG} standby: an argument is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    match args.split_first() {
        Some((verb, rest)) if verb == "run" => run(&parse(rest)?),
        _ => Err(format!("{HELPER_ARG} standby: expected a run request")),
    }
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

fn run(p: &Parsed) -> Result<ExitCode, String> {
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
    let pid = container
        .pid()
        .ok_or_else(|| format!("container {id} has no pid after start"))?;
    println!("{pid}");
    Ok(ExitCode::SUCCESS)
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
