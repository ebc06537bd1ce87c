//! `skiff-bench lifecycle`: the time from "start this pod" to "it is gone again" for one
//! pod with one container running `/bin/true` from a busybox layer, through the agent's
//! Linux runtime (sandbox namespaces, overlay rootfs, cgroups, seccomp, re-executed
//! libcontainer helper, reaping, teardown), against `runc run` and `youki run` of an
//! equivalent bundle and `unshare -fmuipn /bin/true` as the floor, all in the same run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use skiff_agent::image::{ImageConfig, LocalImage};
use skiff_agent::runtime::{ContainerRuntime, LinuxConfig, LinuxRuntime, PodToStart, RunState};
use skiff_api::resources::Pod;

const RUNC: &str = "/usr/sbin/runc";
const YOUKI: &str = "/opt/youki/bin/youki";

/// Median and 90th percentile, in milliseconds.
fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
    )
}

/// Per-run times of the three phases of a Skiff cycle.
#[derive(Default)]
struct Phases {
    start: Vec<Duration>,
    exit_seen: Vec<Duration>,
    remove: Vec<Duration>,
}

fn skiff(runs: usize, work: &Path, layer: &Path) -> Result<(Vec<Duration>, Phases)> {
    let helper = super::binary("skiff-agent")?;
    let mut cfg = LinuxConfig::new(&work.join("skiff"), &helper);
    cfg.cgroup_parent = "skiff-bench".into();
    let run_dir = cfg.run_dir.clone();
    let rt = LinuxRuntime::open(cfg).context("opening the Linux runtime")?;
    let image = LocalImage {
        reference: "busybox".into(),
        digest: "sha256:bench".into(),
        layers: vec![layer.to_path_buf()],
        config: ImageConfig::default(),
    };
    let images = BTreeMap::from([("busybox".to_string(), image)]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "bench", "namespace": "default" },
        "spec": { "containers": [{ "name": "c", "image": "busybox", "command": ["/bin/true"] }] }
    }))?;
    let mut times = Vec::with_capacity(runs);
    let mut phases = Phases::default();
    for i in 0..runs + 1 {
        let uid = format!("bench-{i}");
        let t = Instant::now();
        rt.start_pod(PodToStart {
            uid: &uid,
            revision: 1,
            spec_hash: 1,
            pod: &pod,
            images: &images,
        })?;
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = rt.list()?.iter().any(|p| {
                p.uid == uid
                    && p.containers
                        .iter()
                        .all(|c| matches!(c.state, RunState::Exited(_)))
            });
            if done {
                break;
            }
            if Instant::now() > deadline {
                bail!("pod {uid} did not finish");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let exited = Instant::now();
        rt.remove_pod(&uid)?;
        // The first run warms caches (page cache of the helper binary, cgroup parents).
        if i > 0 {
            times.push(t.elapsed());
            phases.start.push(started - t);
            phases.exit_seen.push(exited - started);
            phases.remove.push(exited.elapsed());
        }
    }
    drop(rt);
    // The runtime's transient dir under /run (empty now that every pod is gone).
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok((times, phases))
}

/// A runc-style bundle: busybox rootfs and `runc spec`'s config, running /bin/true.
fn bundle(work: &Path, layer: &Path) -> Result<PathBuf> {
    let b = work.join("bundle");
    std::fs::create_dir_all(&b)?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(layer)
        .arg(b.join("rootfs"))
        .status()?;
    if !st.success() {
        bail!("copying the rootfs failed");
    }
    let st = Command::new(RUNC).arg("spec").current_dir(&b).status()?;
    if !st.success() {
        bail!("runc spec failed");
    }
    let path = b.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/bin/true"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(b)
}

fn oci_cli(bin: &str, runs: usize, bundle: &Path, root: &Path) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 1 {
        let id = format!("bench-{i}");
        let t = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.arg("--root")
            .arg(root)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if bin == YOUKI {
            // `youki run` waits for its container with sigtimedwait(SIGCHLD) but does not
            // block SIGCHLD first: a container that exits before the wait starts (a
            // loaded machine, /bin/true) leaves it waiting forever. Starting it with
            // SIGCHLD blocked keeps that signal pending for the wait.
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs between fork and exec and only calls
            // pthread_sigmask, which is async-signal-safe; it allocates nothing.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set = nix::sys::signal::SigSet::empty();
                    set.add(nix::sys::signal::Signal::SIGCHLD);
                    nix::sys::signal::pthread_sigmask(
                        nix::sys::signal::SigmaskHow::SIG_BLOCK,
                        Some(&set),
                        None,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("running {bin}"))?;
        // A peer that hangs (seen once with youki) must not hang the benchmark.
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{bin} run {id} did not finish within 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        if !st.success() {
            bail!("{bin} run failed: {st}");
        }
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    Ok(times)
}

fn unshare(runs: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new("unshare")
            .args(["-fmuipn", "/bin/true"])
            .status()?;
        if !st.success() {
            bail!("unshare failed");
        }
        times.push(t.elapsed());
    }
    Ok(times)
}

pub(crate) fn run(runs: usize) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the lifecycle benchmark runs real containers and needs root");
    }
    let work = tempfile::tempdir()?;
    let layer = work.path().join("layer");
    skiff_tests::busybox::populate_rootfs(&layer).context("busybox rootfs")?;
    println!("lifecycle: create + start + /bin/true exits + delete, {runs} runs each");
    let mut rows: Vec<(&str, Vec<Duration>)> = Vec::new();
    let (skiff_times, phases) = skiff(runs, work.path(), &layer)?;
    rows.push(("skiff (LinuxRuntime)", skiff_times));
    let b = bundle(work.path(), &layer)?;
    rows.push((
        "runc run",
        oci_cli(RUNC, runs, &b, &work.path().join("runc-root"))?,
    ));
    if Path::new(YOUKI).exists() {
        rows.push((
            "youki run",
            oci_cli(YOUKI, runs, &b, &work.path().join("youki-root"))?,
        ));
    } else {
        println!("  ({YOUKI} is not installed: no youki row)");
    }
    rows.push(("unshare -fmuipn /bin/true", unshare(runs)?));
    let (runc_median, _) = stats(rows[1].1.clone());
    println!(
        "  {:<28} {:>10} {:>10} {:>10}",
        "", "median ms", "p90 ms", "x runc"
    );
    for (name, times) in rows {
        let (median, p90) = stats(times);
        println!(
            "  {name:<28} {median:>10.1} {p90:>10.1} {:>10.2}",
            median / runc_median
        );
    }
    println!(
        "  skiff phases, median ms: start_pod {:.1}, until the exit is seen {:.1}, remove_pod {:.1}",
        stats(phases.start).0,
        stats(phases.exit_seen).0,
        stats(phases.remove).0
    );
    Ok(())
}
