//! Skiff's benchmark command. Each scenario measures Skiff and its named peer in the same
//! run on the same machine and prints medians, absolute figures and the ratio.
//!
//! `skiff-bench hub-writes`: durable pod creates per second through the REST API by
//! concurrent clients, against a raw single-row-commit loop in the `sqlite3` shell (WAL,
//! synchronous=FULL); then the hub's RSS with the pods stored and the latency of listing them.
//!
//! The hub ↔ agents scenarios over MQTT live in `bench/`: `fanout`, `scale`, `storm`
//! and `agent-rss`; `lifecycle` (container create/start/exit/delete against runc and
//! youki) too.

// The MQTT scenarios are benchmark code only, so they stay out of the test library.
#[path = "../bench/mod.rs"]
mod bench;

use bench::binary;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("");
    let opt = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} takes a whole number")),
            None => Ok(default),
        }
    };
    let text = |name: &str| -> Result<Option<String>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(Some(
                args.get(i + 1)
                    .with_context(|| format!("{name} needs a value"))?
                    .clone(),
            )),
            None => Ok(None),
        }
    };
    // Whole seconds, written `60` or `60s`.
    let seconds = |name: &str, default: u64| -> Result<u64> {
        match text(name)? {
            Some(v) => v
                .trim_end_matches('s')
                .parse()
                .with_context(|| format!("{name} takes whole seconds, e.g. 10s")),
            None => Ok(default),
        }
    };
    match scenario {
        "hub-writes" => hub_writes(
            opt("--pods", 10_000)?,
            opt("--clients", 16)?,
            opt("--rounds", 3)?,
        ),
        "fanout" => {
            let brokers = match text("--broker")?.as_deref() {
                None | Some("both") => vec![bench::Broker::Embedded, bench::Broker::Mosquitto],
                Some(b) => vec![bench::Broker::parse(b)?],
            };
            bench::fanout::run(opt("--nodes", 1_000)?, &brokers, opt("--rounds", 3)?)
        }
        "scale" => bench::scale::run(
            opt("--agents", 5_000)?,
            seconds("--interval", 10)?,
            seconds("--duration", 60)?,
        ),
        "storm" => bench::storm::run(opt("--agents", 5_000)?, opt("--rounds", 3)?),
        "agent-rss" => bench::agent_rss::run(opt("--rounds", 3)?, seconds("--settle", 10)?),
        "lifecycle" => bench::lifecycle::run(opt("--runs", 100)?),
        "pods" => bench::pods::run(
            opt("--pods", 200)?,
            opt("--rounds", 3)?,
            seconds("--settle", 10)?,
        ),
        _ => bail!(
            "usage: skiff-bench hub-writes [--pods N] [--clients N] [--rounds N]\n\
             \x20      skiff-bench fanout [--nodes 1000] [--broker embedded|mosquitto|both] [--rounds 3]\n\
             \x20      skiff-bench scale [--agents 5000] [--interval 10s] [--duration 60s]\n\
             \x20      skiff-bench storm [--agents 5000] [--rounds 3]\n\
             \x20      skiff-bench agent-rss [--rounds 3] [--settle 10s]\n\
             \x20      skiff-bench lifecycle [--runs 100]\n\
             \x20      skiff-bench pods [--pods 200] [--rounds 3] [--settle 10s]\n\
             (run from the workspace root after `cargo build --release --workspace --bins`)"
        ),
    }
}

struct HubProcess {
    child: Child,
    base: String,
    auth: String,
}

impl HubProcess {
    fn start(data: &Path) -> Result<HubProcess> {
        let mut child = Command::new(binary("skiff-hub")?)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
                "--log-level",
                "warn",
            ])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting skiff-hub")?;
        let stdout = child.stdout.take().context("hub stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let base = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .with_context(|| format!("unexpected hub banner {line:?}"))?;
        let token = std::fs::read_to_string(data.join("admin.token"))?;
        Ok(HubProcess {
            child,
            base: format!("http://{base}"),
            auth: format!("Bearer {}", token.trim()),
        })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    fn stop(mut self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("skiff-hub exited with {status}");
        }
        Ok(())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A pod of realistic size (about 700 bytes of JSON), already bound to one of 100
/// nodes, so the benchmark measures the API and the store rather than scheduling.
fn pod_json(name: &str) -> String {
    let node = format!(
        "edge-{:03}",
        name.bytes().map(usize::from).sum::<usize>() % 100
    );
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "bench", "tier": "web", "release": "stable"},
            "annotations": {"skiff.io/bench": "hub-writes"}
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.local/bench/app:1.4.2",
                "command": ["/bin/app"],
                "args": ["--listen", ":8080", "--log-level", "info"],
                "env": [{"name": "MODE", "value": "production"}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "128Mi"}
                },
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
            }],
            "nodeName": node,
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}]
        }
    })
    .to_string()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The wrk script: each of wrk's threads posts unique pods until it has had its share
/// of 201 answers, and reports any other status.
const WRK_SCRIPT: &str = r#"
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  sent = 0
  created = 0
  bad = 0
end
function request()
  sent = sent + 1
  local body = string.gsub(template, "__NAME__", "pod-" .. id .. "-" .. sent)
  return wrk.format("POST", path, headers, body)
end
function response(status, hdrs, body)
  if status == 201 then
    created = created + 1
  else
    bad = bad + 1
    if bad == 1 then io.write("FIRST-REFUSAL " .. status .. " " .. body .. "\n") end
  end
  if created >= share then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local c, b = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    b = b + t:get("bad")
  end
  io.write(string.format("CREATED %d BAD %d\n", c, b))
end
"#;

/// Posts pods through `wrk` (2 threads, `clients` keep-alive connections) for `seconds`,
/// each thread stopping once `per_thread` pods were created; returns how many were
/// created. wrk is the load generator because it costs the shared two cores far less
/// than the hub it measures; a heavier client caps the figure at its own speed.
fn wrk_creates(
    hub: &HubProcess,
    dir: &Path,
    per_thread: usize,
    clients: usize,
    seconds: u64,
) -> Result<usize> {
    let threads = 2;
    let template = pod_json("__NAME__")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let script = dir.join("create.lua");
    std::fs::write(
        &script,
        format!(
            "path = \"/api/v1/namespaces/default/pods\"\nheaders = {{[\"Authorization\"] = \"{}\", [\"Content-Type\"] = \"application/json\"}}\ntemplate = \"{template}\"\nshare = {per_thread}\n{WRK_SCRIPT}",
            hub.auth,
        ),
    )?;
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &clients.to_string()])
        .args(["-d", &format!("{seconds}s")])
        .arg("-s")
        .arg(&script)
        .arg(&hub.base)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (created, bad) = text
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("CREATED"), Some(c), Some("BAD"), Some(b)) => {
                    Some((c.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                }
                _ => None,
            }
        })
        .with_context(|| {
            format!(
                "wrk printed no totals:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    if bad > 0 {
        let first = text
            .lines()
            .find(|l| l.starts_with("FIRST-REFUSAL"))
            .unwrap_or("");
        bail!("{bad} creates were refused by the hub: {first}");
    }
    Ok(created)
}

/// The peer: `rows` single-row INSERT commits in the sqlite3 shell, WAL and
/// synchronous=FULL, each row the same pod JSON the hub stores. Returns rows per second.
fn sqlite3_loop(dir: &Path, rows: usize) -> Result<f64> {
    let db = dir.join("raw.db");
    let script = dir.join("raw.sql");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&script)?);
    writeln!(f, "PRAGMA journal_mode=WAL;")?;
    writeln!(f, "PRAGMA synchronous=FULL;")?;
    writeln!(
        f,
        "CREATE TABLE objects(name TEXT PRIMARY KEY, revision INTEGER, data TEXT);"
    )?;
    for i in 0..rows {
        let json = pod_json(&format!("raw-{i}")).replace('\'', "''");
        writeln!(
            f,
            "INSERT INTO objects VALUES('raw-{i}', {}, '{json}');",
            i + 1
        )?;
    }
    f.flush()?;
    drop(f);
    let input = std::fs::File::open(&script)?;
    let start = Instant::now();
    let out = Command::new("sqlite3")
        .arg(&db)
        .stdin(input)
        .stdout(Stdio::null())
        .output()
        .context("running sqlite3 (apt-get install sqlite3)")?;
    let elapsed = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::remove_file(&db).ok();
    std::fs::remove_file(dir.join("raw.db-wal")).ok();
    std::fs::remove_file(dir.join("raw.db-shm")).ok();
    Ok(rows as f64 / elapsed)
}

fn list_count(hub: &HubProcess) -> Result<usize> {
    let mut resp = agent()
        .get(format!("{}/api/v1/namespaces/default/pods", hub.base))
        .header("Authorization", &hub.auth)
        .call()?;
    let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["items"].as_array().map_or(0, Vec::len))
}

fn list_latency_ms(hub: &HubProcess, runs: usize, expect: usize) -> Result<f64> {
    let agent = agent();
    let url = format!("{}/api/v1/namespaces/default/pods", hub.base);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut resp = agent.get(&url).header("Authorization", &hub.auth).call()?;
        let body = resp.body_mut().with_config().limit(1 << 30).read_to_vec()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let n = v["items"].as_array().map_or(0, Vec::len);
        if n != expect {
            bail!("list returned {n} pods, expected {expect}");
        }
    }
    Ok(median(&mut times))
}

fn hub_writes(pods: usize, clients: usize, rounds: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    // The sqlite3 loop is much slower per row than a batched commit; a few thousand rows
    // give a stable rate without dominating the run.
    let raw_rows = pods.min(2_000);
    println!(
        "hub-writes: pod creates for 5 s by {clients} connections (wrk) through the REST API vs sqlite3 single-row commits ({raw_rows} rows), {rounds} rounds; then {pods} pods on a fresh hub for memory and list figures"
    );
    let (mut hub_rates, mut raw_rates, mut ratios) = (vec![], vec![], vec![]);
    let mut last_data = None;
    for round in 0..rounds {
        let data = tmp.path().join(format!("hub-{round}"));
        let hub = HubProcess::start(&data)?;
        // A fixed window: wrk runs for exactly its duration.
        let window = 5;
        let hub_rate =
            wrk_creates(&hub, tmp.path(), usize::MAX / 4, clients, window)? as f64 / window as f64;
        let raw_rate = sqlite3_loop(tmp.path(), raw_rows)?;
        println!(
            "  round {}: hub {hub_rate:.0} pods/s, sqlite3 {raw_rate:.0} rows/s, ratio {:.2}x",
            round + 1,
            hub_rate / raw_rate
        );
        hub_rates.push(hub_rate);
        raw_rates.push(raw_rate);
        ratios.push(hub_rate / raw_rate);
        if round + 1 == rounds {
            last_data = Some((hub, data));
        } else {
            hub.stop()?;
        }
    }
    println!(
        "durable creates: hub median {:.0} pods/s, sqlite3 median {:.0} rows/s, median ratio {:.2}x (target >= 1.0x)",
        median(&mut hub_rates),
        median(&mut raw_rates),
        median(&mut ratios)
    );

    let (hub, _) = last_data.context("no rounds run")?;
    hub.stop()?;
    // Memory and list figures on a fresh hub holding exactly what was asked for (each
    // wrk thread stops at its share; a few requests still in flight may add a handful).
    let data = tmp.path().join("hub-memory");
    let hub = HubProcess::start(&data)?;
    let seconds = (pods as f64 / median(&mut hub_rates) * 2.0).ceil() as u64 + 2;
    wrk_creates(&hub, tmp.path(), pods / 2, clients, seconds)?;
    let pods = list_count(&hub)?;
    let rss = hub.rss_kib()?;
    let list = list_latency_ms(&hub, 21, pods)?;
    println!(
        "with {pods} pods stored: hub RSS {:.1} MB (target <= 100 MB), list all pods median {list:.1} ms over 21 lists",
        rss as f64 / 1024.0
    );
    hub.stop()?;
    let hub = HubProcess::start(&data)?;
    let rss = hub.rss_kib()?;
    let list = list_latency_ms(&hub, 21, pods)?;
    println!(
        "after a restart (loaded from disk): hub RSS {:.1} MB, list median {list:.1} ms",
        rss as f64 / 1024.0
    );
    hub.stop()?;
    Ok(())
}
