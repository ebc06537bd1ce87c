//! `skiff-bench pods`: pods on one real device. A release hub (embedded broker) and one
//! release `skiff-agent` with the Linux runtime on this machine, a busybox image imported
//! into the hub and already pulled by the agent (image cached), then:
//!
//! - **pod start**: pods created one after another through the REST API (what `skiff
//!   apply` does), unbound, so each goes through the scheduler, the MQTT dispatch, the
//!   agent's database, the runtime and the status report back; timed from just before
//!   the create request was sent to the moment the watch on the hub showed it Running in
//!   the store. At most `KEEP` pods run at once: the pod created `KEEP` before is deleted
//!   as each new one is created, so deletions run alongside the starts.
//! - **agent RSS** with the last `KEEP` (20) pods Running, after settling.
//! - the size of the release agent binary (the release profile strips symbols).
//!
//! Pod start has no peer that runs on this machine (no Kubernetes or KubeEdge here); the
//! ratio printed is against the target and the published figures named in the output.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use skiff_tests::image::TestImage;

use super::fanout::watch_running;
use super::{Hub, HubSetup, binary, http, load, median, percentile, rss_kib};

/// Pods kept Running while the next ones start, and counted for the RSS figure.
const KEEP: usize = 20;
const TARGET_P99_MS: f64 = 150.0;
const KUBEEDGE_P99_MS: f64 = 4_090.0;
const K8S_SLO_P99_MS: f64 = 5_000.0;

pub(crate) fn run(pods: usize, rounds: usize, settle_s: u64) -> Result<()> {
    if pods < KEEP {
        bail!("--pods must be at least {KEEP}");
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!("pods runs real containers: run skiff-bench as root");
    }
    let agent_bin = binary("skiff-agent")?;
    let size = std::fs::metadata(&agent_bin)?.len();
    println!(
        "pods: one skiff-agent (Linux runtime), {pods} busybox pods created one after another, \
         at most {KEEP} Running at once, image cached; {rounds} rounds ({})",
        load()
    );
    let work = tempfile::tempdir()?;
    let tar = work.path().join("busybox.tar");
    TestImage::busybox()
        .reference("busybox:1")
        .write_oci_layout_tar(&tar)
        .context("building the busybox image")?;

    let (mut p50s, mut p99s, mut maxes, mut rsss) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let dir = work.path().join(format!("round-{round}"));
        let r = one_round(&dir, &tar, pods, settle_s)?;
        println!(
            "    round {}: pod start p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; agent RSS with {KEEP} pods {:.1} MB ({})",
            round + 1,
            r.p50,
            r.p99,
            r.max,
            r.rss_mb,
            load()
        );
        p50s.push(r.p50);
        p99s.push(r.p99);
        maxes.push(r.max);
        rsss.push(r.rss_mb);
    }
    let p99 = median(&mut p99s);
    println!("  medians of {rounds} rounds:");
    println!(
        "    pod start, create -> Running in the store: p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        median(&mut p50s),
        median(&mut maxes)
    );
    println!(
        "    p99 x target ({TARGET_P99_MS} ms): {:.2}; x KubeEdge's reported p99 ({:.2} s): {:.3}; x Kubernetes' SLO ({:.0} s): {:.3}",
        p99 / TARGET_P99_MS,
        KUBEEDGE_P99_MS / 1000.0,
        p99 / KUBEEDGE_P99_MS,
        K8S_SLO_P99_MS / 1000.0,
        p99 / K8S_SLO_P99_MS
    );
    println!(
        "    agent RSS with {KEEP} pods Running: {:.1} MB (target <= 20 MB)",
        median(&mut rsss)
    );
    println!(
        "    release skiff-agent binary (symbols stripped): {:.1} MB = {:.1} MiB ({size} bytes; target <= 15 MB)",
        size as f64 / 1e6,
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

struct Round {
    p50: f64,
    p99: f64,
    max: f64,
    rss_mb: f64,
}

fn one_round(dir: &Path, tar: &Path, pods: usize, settle_s: u64) -> Result<Round> {
    std::fs::create_dir_all(dir)?;
    let setup = HubSetup::new(&dir.join("hub"), None)?;
    let hub = Hub::start(&setup)?;
    import(&hub, tar)?;
    let state = dir.join("agent");
    let mut agent = RealAgent::start(&hub, &state, &dir.join("agent.log"))?;
    let result = measure(&hub, &agent, pods, settle_s);
    let cleanup = delete_all(&hub, &state, pods);
    agent.stop();
    hub.stop()?;
    let r = result?;
    cleanup?;
    Ok(r)
}

fn measure(hub: &Hub, agent: &RealAgent, pods: usize, settle_s: u64) -> Result<Round> {
    hub.wait_nodes_ready(1, Duration::from_secs(60))?;
    let running = watch_running(hub)?;
    // Warm-up: the image is pulled and unpacked once; every measured pod starts from
    // the cached image.
    create(hub, "warm")?;
    wait_running(&running, "warm", Duration::from_secs(120), agent)?;
    delete(hub, "warm")?;

    let mut times = Vec::with_capacity(pods);
    for i in 0..pods {
        let name = format!("ps-{i}");
        let t0 = Instant::now();
        create(hub, &name)?;
        let at = wait_running(&running, &name, Duration::from_secs(60), agent)?;
        times.push((at - t0).as_secs_f64() * 1000.0);
        if i >= KEEP {
            delete(hub, &format!("ps-{}", i - KEEP))?;
        }
    }
    times.sort_by(f64::total_cmp);

    // The last KEEP pods keep running; the deleted ones must be gone before RSS counts.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = hub.get("/api/v1/namespaces/default/pods")?;
        let n = list["items"].as_array().map_or(0, Vec::len);
        let running = hub.running_pods()?.len();
        if n == KEEP && running == KEEP {
            break;
        }
        if Instant::now() > deadline {
            bail!("{n} pods stored, {running} Running; expected {KEEP} after the deletions");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(settle_s));
    let mut samples = vec![];
    for _ in 0..5 {
        samples.push(rss_kib(agent.pid())? as f64 * 1024.0 / 1e6);
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(Round {
        p50: percentile(&times, 50.0),
        p99: percentile(&times, 99.0),
        max: *times.last().context("no pods timed")?,
        rss_mb: median(&mut samples),
    })
}

/// `skiff image import` through the release CLI, as a user would.
fn import(hub: &Hub, tar: &Path) -> Result<()> {
    let out = Command::new(binary("skiff")?)
        .args(["image", "import"])
        .arg(tar)
        .args(["--tag", "busybox:1"])
        .env("SKIFF_SERVER", &hub.base)
        .env("SKIFF_TOKEN", hub.auth.trim_start_matches("Bearer "))
        .output()?;
    if !out.status.success() {
        bail!(
            "skiff image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn pod_json(name: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "podstart"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app",
                "image": "busybox:1",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
            }]
        }
    })
    .to_string()
}

fn create(hub: &Hub, name: &str) -> Result<()> {
    let mut resp = http()
        .post(format!("{}/api/v1/namespaces/default/pods", hub.base))
        .header("Authorization", &hub.auth)
        .header("Content-Type", "application/json")
        .send(pod_json(name))?;
    if resp.status().as_u16() != 201 {
        bail!(
            "create {name} returned {}: {}",
            resp.status(),
            resp.body_mut().read_to_string()?
        );
    }
    Ok(())
}

fn delete(hub: &Hub, name: &str) -> Result<()> {
    let mut resp = http()
        .delete(format!(
            "{}/api/v1/namespaces/default/pods/{name}",
            hub.base
        ))
        .header("Authorization", &hub.auth)
        .call()?;
    if !resp.status().is_success() {
        bail!(
            "delete {name} returned {}: {}",
            resp.status(),
            resp.body_mut().read_to_string()?
        );
    }
    Ok(())
}

/// Waits for the watch to have shown `name` Running; returns when it was read.
fn wait_running(
    running: &Arc<Mutex<HashMap<String, Instant>>>,
    name: &str,
    timeout: Duration,
    agent: &RealAgent,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(at) = running.lock().expect("running map").get(name) {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            bail!(
                "pod {name} was not Running within {timeout:?}; agent log tail:\n{}",
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Deletes whatever pods remain and waits until the hub has none and no mount is left
/// under the agent's state directory, so no container outlives the benchmark.
fn delete_all(hub: &Hub, state: &Path, pods: usize) -> Result<()> {
    let list = hub.get("/api/v1/namespaces/default/pods")?;
    for p in list["items"].as_array().into_iter().flatten() {
        if let Some(name) = p["metadata"]["name"].as_str() {
            delete(hub, name)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60 + pods as u64 / 10);
    loop {
        let left = hub.get("/api/v1/namespaces/default/pods")?["items"]
            .as_array()
            .map_or(0, Vec::len);
        // The spare pod directories the runtime keeps ready stay mounted.
        let (pods, spares) = skiff_tests::agent_mounts(state)?;
        if left == 0 && pods.is_empty() && spares.len() <= skiff_tests::SPARE_OVERLAYS {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "cleanup: {left} pods, {} pod mounts and {} spare mounts left under {}",
                pods.len(),
                spares.len(),
                state.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One release `skiff-agent` with the Linux runtime, joined to `hub`, logging to a file.
struct RealAgent {
    child: Child,
    log: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl RealAgent {
    fn start(hub: &Hub, state: &Path, log: &Path) -> Result<RealAgent> {
        let token = hub.token(1)?;
        let file = std::fs::File::create(log)?;
        let child = Command::new(binary("skiff-agent")?)
            .args(["--hub", &hub.base, "--token", &token])
            .args(["--node-name", "dev-1", "--runtime", "linux"])
            .args(["--cgroup-parent", "skiff-bench-pods"])
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting skiff-agent")?;
        Ok(RealAgent {
            child,
            log: log.to_path_buf(),
            state: state.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Its run dir on /run (and anything a killed agent left mounted).
        skiff_tests::release_mounts(&self.state.join("containers"));
    }
}
