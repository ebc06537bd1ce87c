//! Helpers for Skiff's end-to-end tests and benchmarks: start a real `skiff-hub` on a
//! throwaway data directory and loopback port, and run the real `skiff` CLI against it.
//!
//! The binaries are taken from the cargo target directory the tests were built into, so
//! `cargo build --workspace --bins` must run before `cargo test -p skiff-tests`. A
//! missing binary fails the test with that instruction, never skips it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a hub may take to answer `/healthz` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the workspace binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    deps.parent()
        .expect("the deps directory has a parent")
        .to_path_buf()
}

/// The path of a workspace binary, or a panic telling how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "binary {} not found: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// A running `skiff-hub serve` with its own data directory; stopped on drop.
#[derive(Debug)]
pub struct Hub {
    child: Child,
    /// Holds `data/` (the hub's data directory), `hub.log` and `home/` (an empty home
    /// for the CLI, so no real config file is read).
    root: tempfile::TempDir,
    url: String,
    token: String,
}

impl Hub {
    /// Starts a hub, waits until it is healthy and reads its admin token. Panics with
    /// the hub's log when it does not come up.
    pub fn start() -> Hub {
        match Hub::try_start() {
            Ok(h) => h,
            Err(e) => panic!("starting skiff-hub failed: {e:#}"),
        }
    }

    pub fn try_start() -> Result<Hub> {
        let hub_bin = binary("skiff-hub");
        // The port is picked before the hub binds it; another process may take it in
        // between, so a hub that does not come up is retried on a new port.
        let mut last_err = None;
        for _ in 0..3 {
            let root = tempfile::tempdir().context("creating a temp dir")?;
            let data = root.path().join("data");
            std::fs::create_dir_all(root.path().join("home"))?;
            let port = free_port()?;
            let log_path = root.path().join("hub.log");
            let log = std::fs::File::create(&log_path)?;
            let child = Command::new(&hub_bin)
                .arg("serve")
                .arg("--data-dir")
                .arg(&data)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {}", hub_bin.display()))?;
            let mut hub = Hub {
                child,
                root,
                url: format!("http://127.0.0.1:{port}"),
                token: String::new(),
            };
            match hub.wait_ready() {
                Ok(()) => return Ok(hub),
                Err(e) => {
                    hub.stop();
                    last_err = Some(e.context(format!("hub log:\n{}", hub.log())));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("the hub did not start")))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let health = format!("{}/healthz", self.url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("skiff-hub exited during start-up with {status}");
            }
            let healthy = agent
                .get(&health)
                .call()
                .is_ok_and(|r| r.status().is_success());
            let token_path = self.data_dir().join("admin.token");
            if healthy && let Ok(token) = std::fs::read_to_string(&token_path) {
                let token = token.trim().to_string();
                if !token.is_empty() {
                    self.token = token;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "skiff-hub at {} was not healthy with {} after {START_TIMEOUT:?}",
                    self.url,
                    token_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A scratch directory for test files, removed with the hub.
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// The hub's combined stdout and stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("hub.log")).unwrap_or_default()
    }

    /// A `skiff` command aimed at this hub with its admin token, and with an empty home
    /// so no config file of the machine interferes.
    pub fn skiff_command(&self) -> Command {
        let mut cmd = Command::new(binary("skiff"));
        let home = self.root.path().join("home");
        cmd.env("SKIFF_SERVER", &self.url)
            .env("SKIFF_TOKEN", &self.token)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("SKIFF_CONFIG")
            .env_remove("SKIFF_TOKEN_FILE")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `skiff ARGS` to completion.
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.skiff_command()
            .args(args)
            .output()
            .expect("running skiff")
    }

    /// Runs `skiff ARGS` with `input` on standard input.
    pub fn skiff_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .skiff_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning skiff");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("writing skiff's stdin");
        child.wait_with_output().expect("waiting for skiff")
    }

    /// Runs `skiff ARGS` and asserts it succeeded; returns its stdout.
    pub fn skiff_ok(&self, args: &[&str]) -> String {
        let out = self.skiff(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("skiff prints UTF-8")
    }

    /// Stops the hub: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM, a grace period, then SIGKILL; always reaps the child.
pub fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A background process whose stdout lines are collected as they come; killed on drop.
#[derive(Debug)]
pub struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    /// Spawns `cmd` with stdout piped.
    pub fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning a background process");
        let stdout: ChildStdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line satisfying `pred`; panics with everything seen on timeout.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "no matching line within {timeout:?}; process status {status:?}; lines so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Every line seen so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
