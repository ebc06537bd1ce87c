//! The MQTT-path benchmarks of `skiff-bench` and what they share: a release hub with
//! the embedded broker or an external Mosquitto, `skiff-agent --simulate` processes
//! whose logs are followed line by line, REST helpers, and /proc sampling.
//!
//! Node, pod and process counts run into the thousands, so every child is started
//! through `sh -c 'ulimit -n …'` (65,536, or the hard limit where that cannot be raised):
//! each simulated agent holds a socket and its SQLite files, the hub and broker a socket
//! per agent.

pub(crate) mod agent_rss;
pub(crate) mod fanout;
pub(crate) mod lifecycle;
pub(crate) mod pods;
pub(crate) mod scale;
pub(crate) mod storm;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// File descriptors each child may hold (5,000 agents need about four each).
const NOFILE: u32 = 65_536;
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
const DYNSEC: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
/// The largest MQTT packet Skiff sends (`skiff_api::protocol::MAX_PACKET`).
const MOSQUITTO_MAX_PACKET: usize = skiff_api::protocol::MAX_PACKET;

/// The release binaries next to this one.
pub(crate) fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build --release --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// `program args…` run with a raised descriptor limit.
fn with_nofile(program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {NOFILE} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\"; exec \"$0\" \"$@\""
        ))
        .arg(program);
    cmd
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub(crate) fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Which broker carries the hub ↔ agent traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broker {
    Embedded,
    Mosquitto,
}

impl Broker {
    pub(crate) fn parse(s: &str) -> Result<Broker> {
        match s {
            "embedded" => Ok(Broker::Embedded),
            "mosquitto" => Ok(Broker::Mosquitto),
            _ => bail!("--broker is embedded or mosquitto, not {s:?}"),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Broker::Embedded => "embedded",
            Broker::Mosquitto => "mosquitto",
        }
    }
}

/// Debian's Mosquitto with the dynamic-security plugin, the hub as its admin.
pub(crate) struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    const ADMIN: &'static str = "hub-admin";
    const SECRET: &'static str = "bench-admin-secret";

    pub(crate) fn start(dir: &Path) -> Result<Mosquitto> {
        for f in [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC] {
            if !Path::new(f).exists() {
                bail!("{f} is missing: apt-get install mosquitto mosquitto-clients");
            }
        }
        std::fs::create_dir_all(dir)?;
        let dynsec = dir.join("dynsec.json");
        let init = Command::new(MOSQUITTO_CTRL)
            .args(["dynsec", "init"])
            .arg(&dynsec)
            .args([Self::ADMIN, Self::SECRET])
            .output()?;
        if !init.status.success() {
            bail!(
                "mosquitto_ctrl dynsec init: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        let port = free_port()?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n\
                 user {user}\nmax_packet_size {MOSQUITTO_MAX_PACKET}\npersistence false\n\
                 plugin {DYNSEC}\nplugin_opt_config_file {}\n",
                dynsec.display(),
                // As root Mosquitto would switch to the `mosquitto` user, which cannot
                // write the dynsec file in this private temp dir.
                user = std::env::var("USER").unwrap_or_else(|_| "root".into()),
            ),
        )?;
        let child = with_nofile(Path::new(MOSQUITTO))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto")?;
        let m = Mosquitto { child, port };
        wait_listening(port, "mosquitto")?;
        Ok(m)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a hub is started; kept so it can be restarted on the same ports and data.
#[derive(Debug, Clone)]
pub(crate) struct HubSetup {
    pub(crate) data: PathBuf,
    http_port: u16,
    mqtt_port: u16,
    broker_url: Option<String>,
}

impl HubSetup {
    /// A hub with the embedded broker on fresh loopback ports, or one using `mosquitto`.
    pub(crate) fn new(data: &Path, mosquitto: Option<&Mosquitto>) -> Result<HubSetup> {
        Ok(HubSetup {
            data: data.to_path_buf(),
            http_port: free_port()?,
            mqtt_port: free_port()?,
            broker_url: mosquitto.map(|m| format!("mqtt://127.0.0.1:{}", m.port)),
        })
    }
}

/// A running release `skiff-hub serve`.
pub(crate) struct Hub {
    child: Child,
    pub(crate) base: String,
    pub(crate) auth: String,
    setup: HubSetup,
}

impl Hub {
    pub(crate) fn start(setup: &HubSetup) -> Result<Hub> {
        let mut cmd = with_nofile(&binary("skiff-hub")?);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&setup.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", setup.http_port))
            .args(["--log-level", "warn"]);
        match &setup.broker_url {
            Some(url) => {
                cmd.args(["--broker", url])
                    .args(["--broker-username", Mosquitto::ADMIN])
                    .args(["--broker-password", Mosquitto::SECRET]);
            }
            None => {
                cmd.arg("--mqtt-listen")
                    .arg(format!("127.0.0.1:{}", setup.mqtt_port));
            }
        }
        // rumqttd logs every dropped connection at error level, thousands at a shutdown:
        // the log goes beside the data dir, not to the benchmark's output.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(setup.data.with_extension("log"))?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting skiff-hub")?;
        let mut hub = Hub {
            child,
            base: format!("http://127.0.0.1:{}", setup.http_port),
            auth: String::new(),
            setup: setup.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let agent = http();
        loop {
            if let Some(status) = hub.child.try_wait()? {
                bail!("skiff-hub exited during start-up with {status}");
            }
            let healthy = agent
                .get(format!("{}/healthz", hub.base))
                .call()
                .is_ok_and(|r| r.status().is_success());
            if healthy && let Ok(t) = std::fs::read_to_string(setup.data.join("admin.token")) {
                hub.auth = format!("Bearer {}", t.trim());
                return Ok(hub);
            }
            if Instant::now() > deadline {
                bail!("skiff-hub was not healthy within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A join token good for `uses` nodes.
    pub(crate) fn token(&self, uses: usize) -> Result<String> {
        let out = Command::new(binary("skiff-hub")?)
            .args(["token", "create", "--uses", &uses.to_string()])
            .arg("--data-dir")
            .arg(&self.setup.data)
            .args(["--server", &self.base])
            .output()?;
        if !out.status.success() {
            bail!(
                "skiff-hub token create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    pub(crate) fn get(&self, path: &str) -> Result<Value> {
        let mut resp = http()
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()?;
        let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        if !resp.status().is_success() {
            bail!("GET {path}: {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Nodes known and nodes whose Ready condition is True.
    pub(crate) fn nodes_ready(&self) -> Result<(usize, usize)> {
        let list = self.get("/api/v1/nodes")?;
        let items = list["items"].as_array().context("node list")?;
        let ready = items.iter().filter(|n| node_ready(n)).count();
        Ok((items.len(), ready))
    }

    /// Waits until `n` nodes are Ready; returns the names of the Ready nodes.
    pub(crate) fn wait_nodes_ready(&self, n: usize, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let list = self.get("/api/v1/nodes")?;
            let items = list["items"].as_array().context("node list")?;
            let ready: Vec<String> = items
                .iter()
                .filter(|n| node_ready(n))
                .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            if ready.len() >= n {
                return Ok(ready);
            }
            if Instant::now() > deadline {
                bail!("only {} of {n} nodes Ready after {timeout:?}", ready.len());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Creates one pod per `(pod, node)` bound through `spec.nodeName`, from `clients`
    /// threads; returns when each create returned.
    pub(crate) fn create_bound(
        &self,
        pods: &[(String, String)],
        clients: usize,
    ) -> Result<HashMap<String, Instant>> {
        let work = Arc::new(Mutex::new(pods.to_vec()));
        let url = format!("{}/api/v1/namespaces/default/pods", self.base);
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let (work, url, auth) = (work.clone(), url.clone(), self.auth.clone());
                std::thread::spawn(move || -> Result<Vec<(String, Instant)>> {
                    let agent = http();
                    let mut done = vec![];
                    loop {
                        let Some((pod, node)) = work.lock().expect("work list").pop() else {
                            return Ok(done);
                        };
                        let mut resp = agent
                            .post(&url)
                            .header("Authorization", &auth)
                            .header("Content-Type", "application/json")
                            .send(bound_pod(&pod, &node))?;
                        let at = Instant::now();
                        if resp.status().as_u16() != 201 {
                            bail!(
                                "create {pod} returned {}: {}",
                                resp.status(),
                                resp.body_mut().read_to_string()?
                            );
                        }
                        done.push((pod, at));
                    }
                })
            })
            .collect();
        let mut created = HashMap::new();
        for h in handles {
            let done = h
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
            created.extend(done);
        }
        Ok(created)
    }

    /// Every pod in `default` with phase Running, by name, with its container statuses.
    pub(crate) fn running_pods(&self) -> Result<HashMap<String, Value>> {
        let list = self.get("/api/v1/namespaces/default/pods")?;
        Ok(list["items"]
            .as_array()
            .context("pod list")?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["status"]["containerStatuses"].clone(),
                ))
            })
            .collect())
    }

    /// SIGTERM and wait; fails unless the hub exits cleanly.
    pub(crate) fn stop(mut self) -> Result<Duration> {
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("skiff-hub exited with {status}");
        }
        Ok(start.elapsed())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn node_ready(n: &Value) -> bool {
    n["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A small pod bound to `node` without the scheduler.
fn bound_pod(name: &str, node: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.local/bench/app:1.0"}]
        }
    })
    .to_string()
}

/// What the agents' log said, as lines arrived (bench clock, not log timestamps).
#[derive(Debug, Default)]
pub(crate) struct AgentLog {
    /// Per node, when its last `sync complete` line was read.
    pub(crate) synced: HashMap<String, Instant>,
    /// Per node, when its last `connected to broker` line was read, and the number of
    /// failed attempts that line reported.
    pub(crate) connected: HashMap<String, (Instant, u32)>,
    /// Per pod name, when a `desired state changed` line for it was first read: the
    /// agent had persisted the pod.
    pub(crate) persisted: HashMap<String, Instant>,
    /// How long each of those writes took, as the agent logged it (`write_ms`).
    pub(crate) write_ms: Vec<f64>,
    /// How long each pod start took in the runtime, as the agent logged it (`ms`).
    pub(crate) start_ms: Vec<f64>,
    pub(crate) started_pods: usize,
    pub(crate) stopped_pods: usize,
    pub(crate) restarted_containers: usize,
    pub(crate) lost_broker: usize,
    pub(crate) errors: usize,
}

/// Simulated agents per `skiff-agent` process: each holds about four descriptors (its
/// broker socket and the database with its WAL and shared-memory files), and the hard
/// limit where this was measured is 20,000.
const AGENTS_PER_PROCESS: usize = 2_500;

/// `skiff-agent --simulate` processes, together running N agents; one plain agent when
/// N is 1. Process `p` names its nodes `bench<p>-<i>`.
pub(crate) struct Agents {
    children: Vec<Child>,
    pub(crate) log: Arc<Mutex<AgentLog>>,
}

impl Agents {
    pub(crate) fn start(hub: &Hub, state: &Path, n: usize, heartbeat: &str) -> Result<Agents> {
        let token = hub.token(n)?;
        let log = Arc::new(Mutex::new(AgentLog::default()));
        let mut children = vec![];
        let processes = n.div_ceil(AGENTS_PER_PROCESS);
        for p in 0..processes {
            let count = AGENTS_PER_PROCESS.min(n - p * AGENTS_PER_PROCESS);
            let mut cmd = with_nofile(&binary("skiff-agent")?);
            cmd.args(["--hub", &hub.base, "--token", &token])
                .args(["--node-name", &format!("bench{p}")])
                .arg("--state-dir")
                .arg(state)
                .args(["--heartbeat-interval", heartbeat])
                .env(
                    "RUST_LOG",
                    "warn,skiff_agent::sync::agent=info,skiff_agent::sync::link=info,skiff_agent::sync::worker=info",
                )
                .env("NO_COLOR", "1")
                // Agents here never run real containers, one alone included.
                .env("SKIFF_AGENT_RUNTIME", "simulated");
            if n > 1 {
                cmd.args(["--simulate", &count.to_string()]);
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting skiff-agent")?;
            let stderr = child.stderr.take().context("agent stderr")?;
            children.push(child);
            let sink = log.clone();
            std::thread::spawn(move || follow(stderr, &sink));
        }
        Ok(Agents { children, log })
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// Reads an agent process's log, noting what the benchmarks look for.
fn follow(stderr: std::process::ChildStderr, sink: &Mutex<AgentLog>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let now = Instant::now();
        let mut l = sink.lock().expect("agent log");
        if line.contains("sync complete") {
            if let Some(node) = span_node(&line) {
                l.synced.insert(node, now);
            }
        } else if line.contains("desired state changed") {
            if let Some(pod) = span_pod(&line) {
                l.persisted.entry(pod).or_insert(now);
            }
            if let Some(ms) = field(&line, "write_ms") {
                l.write_ms.push(ms);
            }
        } else if line.contains("connected to broker") {
            if let Some(node) = span_node(&line) {
                let attempts = line
                    .split_once("attempts=")
                    .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
                    .unwrap_or(0);
                l.connected.insert(node, (now, attempts));
            }
        } else if line.contains("started pod") {
            l.started_pods += 1;
            if let Some(ms) = field(&line, "ms") {
                l.start_ms.push(ms);
            }
        } else if line.contains("stopped pod") {
            l.stopped_pods += 1;
        } else if line.contains("restarted container") {
            l.restarted_containers += 1;
        } else if line.contains("lost the broker") {
            l.lost_broker += 1;
        } else if line.contains("ERROR") {
            l.errors += 1;
            if l.errors <= 5 {
                eprintln!("agent: {line}");
            }
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &self.children {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for child in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The node of a tracing line, from its `agent{node=…}` or `mqtt{node=…}` span.
fn span_node(line: &str) -> Option<String> {
    let at = line
        .find("agent{node=")
        .map(|i| i + "agent{node=".len())
        .or_else(|| line.find("mqtt{node=").map(|i| i + "mqtt{node=".len()))?;
    let rest = &line[at..];
    let end = rest.find(['}', ' '])?;
    Some(rest[..end].to_string())
}

/// A numeric `name=value` field of a tracing line.
fn field(line: &str, name: &str) -> Option<f64> {
    let key = format!(" {name}=");
    let rest = &line[line.find(&key)? + key.len()..];
    rest.split([' ', '}']).next()?.parse().ok()
}

/// The pod name of a tracing line's `message{… pod=namespace/name …}` span.
fn span_pod(line: &str) -> Option<String> {
    let rest = &line[line.find(" pod=")? + " pod=".len()..];
    let full = &rest[..rest.find(['}', ' '])?];
    Some(full.rsplit('/').next()?.to_string())
}

/// Resident set size of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let after = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Bytes a process has passed to write-like syscalls (sockets included).
pub(crate) fn wchar(pid: u32) -> Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no wchar in /proc/PID/io")
}

pub(crate) fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The 1-minute load average, for every printout (the machine is shared).
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .map_or_else(|| "load ?".into(), |l| format!("load {l}"))
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// "p50 12 p99 30 ms" for the given percentiles of sorted values (100 prints as max).
pub(crate) fn percentiles(sorted: &[f64], ps: &[f64]) -> String {
    let parts: Vec<String> = ps
        .iter()
        .map(|&p| match p {
            100.0 => format!("max {:.0}", percentile(sorted, p)),
            _ => format!("p{p} {:.0}", percentile(sorted, p)),
        })
        .collect();
    format!("{} ms", parts.join(" "))
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_node_reads_the_agent_span() {
        let line = "2026-01-01T00:00:00Z  INFO simulated{node=bench0-0042}:agent{node=bench0-0042}:message{kind=\"syncDone\"}: skiff_agent::sync::agent: sync complete";
        assert_eq!(span_node(line).as_deref(), Some("bench0-0042"));
        let line = "2026-01-01T00:00:00Z  INFO simulated{node=bench0-0007}:mqtt{node=bench0-0007}: skiff_agent::sync::link: connected to broker session_present=true attempts=3";
        assert_eq!(span_node(line).as_deref(), Some("bench0-0007"));
        let line = "2026-01-01T00:00:00Z  INFO simulated{node=bench0-0042}:agent{node=bench0-0042}:message{kind=\"upsert\" pod=default/f0-bench0-0042 revision=77}: skiff_agent::sync::agent: desired state changed";
        assert_eq!(span_pod(line).as_deref(), Some("f0-bench0-0042"));
        assert_eq!(span_node("no span here"), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn percentiles_name_each_percentile_and_the_max() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&v, &[50.0, 99.0]), "p50 50 p99 99 ms");
        assert_eq!(percentiles(&v, &[10.0, 100.0]), "p10 10 max 100 ms");
    }
}
