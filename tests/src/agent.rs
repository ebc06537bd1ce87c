//! A real `skiff-agent` process for end-to-end tests: started with a hub URL, node name,
//! state directory and join token, its log kept in a file; it can be SIGKILLed,
//! stopped, frozen (SIGSTOP/SIGCONT) and started again on the same state directory. Its
//! simulated runtime's records and its credentials are read straight from that
//! directory, as an operator would on the device.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{binary, stop_child};

/// A `skiff-agent` process; stopped on drop.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    node: String,
    state_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// Starts `skiff-agent --hub HUB --node-name NODE --state-dir STATE --token TOKEN`
    /// plus `extra` flags (e.g. `--heartbeat-interval 1s`, `--label k=v`). The log goes
    /// to `STATE/../NODE.log`, appended across restarts.
    pub fn start(hub: &str, node: &str, state_dir: &Path, token: &str, extra: &[&str]) -> Agent {
        let mut args: Vec<String> = vec![
            "--hub".into(),
            hub.into(),
            "--node-name".into(),
            node.into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--token".into(),
            token.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let log_path = state_dir.with_file_name(format!("{node}.log"));
        let mut agent = Agent {
            child: None,
            node: node.to_string(),
            state_dir: state_dir.to_path_buf(),
            log_path,
            args,
        };
        agent.start_again();
        agent
    }

    /// Starts the process again with the same flags (after [`Agent::kill`] or
    /// [`Agent::stop`]); the state directory, and so the joined identity, is kept.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "agent {} is already running",
            self.node
        );
        match self.spawn() {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("starting skiff-agent {} failed: {e:#}", self.node),
        }
    }

    fn spawn(&self) -> Result<Child> {
        if let Some(parent) = self.state_dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let bin = binary("skiff-agent");
        Command::new(&bin)
            .env("SKIFF_AGENT_RUNTIME", "simulated")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Everything the agent logged so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("agent {} is not running", self.node));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
        kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to agent {}: {e}", self.node));
    }

    /// SIGKILL, as a power cut would: nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after a grace period).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Freezes the process (SIGSTOP): its connection stays open but it says nothing.
    pub fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Thaws a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its status, or
    /// panics with the log if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("agent {} is not running", self.node));
        loop {
            if let Some(status) = child.try_wait().expect("polling the agent") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} still runs after {timeout:?}; log:\n{}",
                self.node,
                std::fs::read_to_string(&self.log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The credentials the agent saved when it joined (`credentials.json`).
    pub fn credentials(&self) -> serde_json::Value {
        let path = self.state_dir.join("credentials.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The pods the simulated runtime holds, from its records on disk, by name.
    pub fn runtime_pods(&self) -> Vec<RuntimePod> {
        runtime_pods(&self.state_dir)
    }

    /// Polls the runtime records until `check` holds, up to `timeout`; returns them.
    pub fn wait_runtime(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&[RuntimePod]) -> bool,
    ) -> Vec<RuntimePod> {
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.runtime_pods();
            if check(&pods) {
                return pods;
            }
            assert!(
                Instant::now() < deadline,
                "agent {}: {what} not reached within {timeout:?}; runtime holds {pods:#?}\nlog:\n{}",
                self.node,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref()
            && let Ok(pid) = i32::try_from(child.id())
        {
            // A frozen process ignores SIGTERM until thawed.
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        self.stop();
        if self.args.iter().any(|a| a == "linux") {
            release_mounts(&self.state_dir.join("containers"));
        }
    }
}

/// Detaches what a real-runtime agent left mounted when its test ended with pods still
/// on it (their rootfs and namespace files, under its state and run dirs), and removes
/// its run dir on the /run tmpfs, so that test runs pile up neither mounts nor
/// directories on the machine. `runtime_dir` is the agent's `<state dir>/containers`.
pub fn release_mounts(runtime_dir: &Path) {
    let abs = std::path::absolute(runtime_dir).unwrap_or_else(|_| runtime_dir.to_path_buf());
    let name: String = abs
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let run = Path::new("/run/skiff").join(name);
    for dir in [abs.clone(), run.clone()] {
        let mut left = crate::mounts_under(&dir).unwrap_or_default();
        // Deepest first.
        left.reverse();
        for line in left {
            if let Some(target) = line.split(' ').nth(4) {
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&run);
}

/// One pod record of the simulated runtime (`STATE/simulated/<uid>.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub revision: u64,
    pub spec_hash: u64,
    pub started_at: String,
    pub containers: Vec<RuntimeContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub name: String,
    pub image: String,
    pub container_id: String,
    pub restart_count: i64,
    /// `running` or `exited`.
    pub state: String,
}

/// Reads every record of the simulated runtime under `state_dir`, sorted by name.
pub fn runtime_pods(state_dir: &Path) -> Vec<RuntimePod> {
    let dir = state_dir.join("simulated");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut pods = Vec::new();
    for entry in entries {
        let path = entry.expect("listing runtime records").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let o = &v["observed"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        pods.push(RuntimePod {
            uid: s(&o["uid"]),
            namespace: s(&o["namespace"]),
            name: s(&o["name"]),
            revision: o["revision"].as_u64().unwrap_or_default(),
            spec_hash: o["specHash"].as_u64().unwrap_or_default(),
            started_at: s(&o["startedAt"]),
            containers: o["containers"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| RuntimeContainer {
                            name: s(&c["name"]),
                            image: s(&c["image"]),
                            container_id: s(&c["containerId"]),
                            restart_count: c["restartCount"].as_i64().unwrap_or(-1),
                            state: s(&c["state"]["state"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    pods.sort_by(|a, b| (&a.name, &a.uid).cmp(&(&b.name, &b.uid)));
    pods
}
