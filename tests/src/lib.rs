//! Helpers for Skiff's end-to-end tests and benchmarks: start a real `skiff-hub` on a
//! throwaway data directory and loopback port, and run the real `skiff` CLI against it.
//!
//! The binaries are taken from the cargo target directory the tests were built into, so
//! `cargo build --workspace --bins` must run before `cargo test -p skiff-tests`. A
//! missing binary fails the test with that instruction, never skips it.
//!
//! Also real agents ([`Agent`]) and Debian's Mosquitto as an external broker
//! ([`Mosquitto`]).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod agent;
pub mod busybox;
pub mod image;
mod mosquitto;

pub use agent::{Agent, RuntimeContainer, RuntimePod, release_mounts, runtime_pods};
pub use mosquitto::Mosquitto;

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
pub fn free_port() -> Result<u16> {
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
    port: u16,
    /// The flags after `serve --data-dir --listen`, kept for [`Hub::restart`].
    args: Vec<String>,
    token: String,
}

impl Hub {
    /// Starts a hub, waits until it is healthy and reads its admin token. Panics with
    /// the hub's log when it does not come up.
    pub fn start() -> Hub {
        Hub::start_with(&[])
    }

    /// Like [`Hub::start`], with extra `skiff-hub serve` flags (e.g. `--node-grace 3s`,
    /// `--broker URL`). Unless `extra` names a broker or an MQTT listen address, the
    /// embedded broker listens on a port of its own.
    pub fn start_with(extra: &[&str]) -> Hub {
        match Hub::try_start_with(extra) {
            Ok(h) => h,
            Err(e) => panic!("starting skiff-hub failed: {e:#}"),
        }
    }

    pub fn try_start() -> Result<Hub> {
        Hub::try_start_with(&[])
    }

    pub fn try_start_with(extra: &[&str]) -> Result<Hub> {
        let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        if !extra
            .iter()
            .any(|a| *a == "--broker" || *a == "--mqtt-listen")
        {
            // Each test hub gets its own broker port so suites can run in parallel.
            args.extend(["--mqtt-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        // The port is picked before the hub binds it; another process may take it in
        // between, so a hub that does not come up is retried on a new port.
        let mut last_err = None;
        for _ in 0..3 {
            let root = tempfile::tempdir().context("creating a temp dir")?;
            std::fs::create_dir_all(root.path().join("home"))?;
            let port = free_port()?;
            let child = Hub::spawn(root.path(), port, &args)?;
            let mut hub = Hub {
                child,
                root,
                url: format!("http://127.0.0.1:{port}"),
                port,
                args: args.clone(),
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

    fn spawn(root: &Path, port: u16, args: &[String]) -> Result<Child> {
        let hub_bin = binary("skiff-hub");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("hub.log"))?;
        Command::new(&hub_bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", hub_bin.display()))
    }

    /// Starts the hub again after [`Hub::stop`], on the same data directory, port and
    /// flags (so an embedded broker must have been given a fixed `--mqtt-listen`).
    pub fn restart(&mut self) {
        self.stop();
        let started = Hub::spawn(self.root.path(), self.port, &self.args).and_then(|child| {
            self.child = child;
            self.wait_ready()
        });
        if let Err(e) = started {
            panic!(
                "restarting skiff-hub failed: {e:#}\nhub log:\n{}",
                self.log()
            );
        }
    }

    /// Whether the hub process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

    /// Calls the REST API with the admin token (or none, when `auth` is false);
    /// returns the status code and the body as JSON (a string if it is not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        auth: bool,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.url);
        let bearer = format!("Bearer {}", self.token);
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json");
        let builder = if auth {
            builder.header("authorization", &bearer)
        } else {
            builder
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = builder.body(payload).expect("a valid request");
        let mut resp = http_agent()
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (code, value)
    }

    /// GET `path` as the admin; panics unless it answers 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.request("GET", path, None, true);
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    /// Polls `path` until `check` holds on a 200 answer, up to `timeout`; returns that
    /// body, or panics with the last answer.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.request("GET", path, None, true);
            if code == 200 && check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not reach the expected state within {timeout:?}: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a join token valid for `ttl_seconds` and `uses` joins; returns the token
    /// and its expiry as the hub wrote it.
    pub fn create_token(&self, ttl_seconds: u64, uses: u32) -> (String, String) {
        let (code, body) = self.request(
            "POST",
            "/skiff/v1/tokens",
            Some(&serde_json::json!({"ttlSeconds": ttl_seconds, "uses": uses})),
            true,
        );
        assert_eq!(code, 201, "creating a join token: {body}");
        (
            body["token"].as_str().expect("a token").to_string(),
            body["expires"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// How many upward MQTT messages the hub rejected for `reason` (`unauthenticated`,
    /// `replay`, `not_bound`, ...), from `GET /skiff/v1/metrics?format=json`.
    pub fn rejected(&self, reason: &str) -> u64 {
        let body = self.get_json("/skiff/v1/metrics?format=json");
        body["rejected"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("no rejected.{reason} counter in {body}"))
    }

    /// Creates pod `name` in `default` bound to `node` with one container running
    /// `image`; returns the created pod.
    pub fn create_pod(&self, name: &str, node: &str, image: &str) -> serde_json::Value {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": image}]},
        });
        let (code, body) =
            self.request("POST", "/api/v1/namespaces/default/pods", Some(&pod), true);
        assert_eq!(code, 201, "creating pod {name}: {body}");
        body
    }

    /// Deletes pod `name` in `default` and waits until it is gone from the store.
    pub fn delete_pod(&self, name: &str) {
        let path = format!("/api/v1/namespaces/default/pods/{name}");
        let (code, body) = self.request("DELETE", &path, None, true);
        assert!(
            code == 200 || code == 202,
            "deleting pod {name}: {code} {body}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.request("GET", &path, None, true).0 != 404 {
            assert!(Instant::now() < deadline, "pod {name} was not removed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// The status and reason of a Node's Ready condition, if it has one.
pub fn node_ready(node: &serde_json::Value) -> Option<(String, String)> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
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

/// Which broker carries a fleet's MQTT traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// rumqttd inside `skiff-hub serve`.
    Embedded,
    /// Debian's Mosquitto with the dynamic security plugin.
    Mosquitto,
}

/// A hub, its broker and a directory for the agents' state: the fixture of the fleet
/// tests. Agents made with [`Fleet::agent`] are owned by the caller and must be
/// dropped before the fleet (declare them after it).
#[derive(Debug)]
pub struct Fleet {
    pub hub: Hub,
    pub broker: Option<Mosquitto>,
    nodes: tempfile::TempDir,
}

impl Fleet {
    /// Starts the broker (for [`BrokerKind::Mosquitto`]) and a hub using it, with
    /// `hub_flags` added to `skiff-hub serve`. With the embedded broker on a fixed port
    /// (`fixed_mqtt_port`), the hub can be restarted and agents find it again.
    pub fn start(kind: BrokerKind, hub_flags: &[&str], fixed_mqtt_port: bool) -> Fleet {
        let broker = match kind {
            BrokerKind::Embedded => None,
            BrokerKind::Mosquitto => Some(Mosquitto::start()),
        };
        let mut flags: Vec<String> = hub_flags.iter().map(|f| f.to_string()).collect();
        match &broker {
            Some(m) => flags.extend(m.hub_args()),
            None if fixed_mqtt_port => {
                let port = free_port().expect("a free port");
                flags.extend(["--mqtt-listen".into(), format!("127.0.0.1:{port}")]);
            }
            None => {}
        }
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        Fleet {
            hub: Hub::start_with(&refs),
            broker,
            nodes: tempfile::tempdir().expect("a temp dir for node state"),
        }
    }

    /// The state directory node `name` uses.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.nodes.path().join(name).join("state")
    }

    /// Starts a real agent for node `name` joining with `token`, plus `extra` flags.
    pub fn agent(&self, name: &str, token: &str, extra: &[&str]) -> Agent {
        Agent::start(self.hub.url(), name, &self.state_dir(name), token, extra)
    }

    /// Starts an agent with a fresh single-use token and waits until its Node is Ready.
    pub fn joined_agent(&self, name: &str, extra: &[&str]) -> Agent {
        let (token, _) = self.hub.create_token(600, 1);
        let agent = self.agent(name, &token, extra);
        let path = format!("/api/v1/nodes/{name}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, node) = self.hub.request("GET", &path, None, true);
            if code == 200 && node_ready(&node).is_some_and(|(s, _)| s == "True") {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} is not Ready: {code} {node}\nagent log:\n{}\nhub log:\n{}",
                agent.log(),
                self.hub.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `name`'s Ready condition has `status`; returns the Node.
    pub fn wait_ready(&self, name: &str, status: &str, timeout: Duration) -> serde_json::Value {
        self.hub
            .wait_for(&format!("/api/v1/nodes/{name}"), timeout, |n| {
                node_ready(n).is_some_and(|(s, _)| s == status)
            })
    }
}

/// Mount points under `dir` in this mount namespace (overlays, namespace files,
/// volumes), as lines of `/proc/self/mountinfo`.
pub fn mounts_under(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let prefix = dir.display().to_string();
    Ok(std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .map(str::to_string)
        .collect())
}

/// How many spare pod directories an agent's runtime keeps ready, each with its
/// container's overlay mounted.
pub const SPARE_OVERLAYS: usize = 2;

/// The mounts under an agent's state dir `state`: those of its pods, and those of the
/// spare pod directories its runtime keeps ready in `containers/spare/`.
pub fn agent_mounts(state: &std::path::Path) -> std::io::Result<(Vec<String>, Vec<String>)> {
    let spare = state.join("containers/spare").display().to_string();
    Ok(mounts_under(state)?.into_iter().partition(|m| {
        m.split(' ')
            .nth(4)
            .is_none_or(|p| !p.starts_with(&format!("{spare}/")))
    }))
}
