//! `skiff-bench podstart`: pod start end to end with the image cached on the device: from
//! the create call returning (what `skiff apply` does) until a hub watch shows the pod
//! Running, for pods of one real agent running real containers; and the agent's RSS with
//! 20 pods running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Agents, Hub, HubSetup, binary, load, percentile, rss_kib, watch_running};

/// Pods running at once: the batch size, and the pod count of the RSS figure.
const BATCH: usize = 20;

pub(crate) fn run(pods: usize, image_tar: &std::path::Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let setup = HubSetup::new(&tmp.path().join("hub"), None)?;
    let hub = Hub::start(&setup)?;
    import(&hub, image_tar)?;
    let agent = Agents::start_with(&hub, &tmp.path().join("agent"), 1, "10s", &[])?;
    let nodes = hub.wait_nodes_ready(1, Duration::from_secs(60))?;
    let node = &nodes[0];
    println!(
        "podstart: {pods} pods (busybox, `sleep 3600`) on one agent, {BATCH} at a time, create returned -> watch shows Running ({})",
        load()
    );
    // One pod first, so the image is pulled and cached before anything is timed.
    let warm = vec![("warm".to_string(), node.clone())];
    hub.create_bound_image(&warm, 1, "busybox:1", &["sleep", "3600"])?;
    wait_running(&hub, &["warm".to_string()], Duration::from_secs(120))?;
    hub.delete_pods(&["warm".to_string()])?;

    let running = watch_running(&hub)?;
    let mut lat = vec![];
    let mut rss = None;
    let mut batch_no = 0;
    while lat.len() < pods {
        let n = BATCH.min(pods - lat.len());
        let batch: Vec<(String, String)> = (0..n)
            .map(|i| (format!("ps{batch_no}-{i}"), node.clone()))
            .collect();
        let created = hub.create_bound_image(&batch, 4, "busybox:1", &["sleep", "3600"])?;
        let names: Vec<String> = batch.iter().map(|(p, _)| p.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        let seen: HashMap<String, Instant> = loop {
            {
                let r = running.lock().expect("running map");
                if names.iter().all(|p| r.contains_key(p)) {
                    break names.iter().map(|p| (p.clone(), r[p])).collect();
                }
            }
            if Instant::now() > deadline {
                bail!("batch {batch_no} not Running within 120 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for p in &names {
            lat.push(seen[p].saturating_duration_since(created[p]).as_secs_f64() * 1000.0);
        }
        if rss.is_none() && n == BATCH {
            std::thread::sleep(Duration::from_secs(5));
            rss = Some(rss_kib(agent.pids()[0])? as f64 / 1024.0);
        }
        hub.delete_pods(&names)?;
        wait_gone(&hub, &names, Duration::from_secs(120))?;
        batch_no += 1;
    }
    lat.sort_by(f64::total_cmp);
    let size = std::fs::metadata(binary("skiff-agent")?)?.len();
    println!(
        "  pod start p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} pods (target p99 <= 150 ms) ({})",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat[lat.len() - 1],
        lat.len(),
        load()
    );
    println!(
        "  agent RSS with {BATCH} pods running: {:.1} MB (target <= 20 MB); stripped release binary {:.1} MB (target <= 15 MB)",
        rss.context("no full batch ran")?,
        size as f64 / (1024.0 * 1024.0)
    );
    drop(agent);
    hub.stop()?;
    Ok(())
}

fn import(hub: &Hub, tar: &std::path::Path) -> Result<()> {
    let out = std::process::Command::new(binary("skiff")?)
        .args(["--server", &hub.base, "--token", hub.token_value()])
        .args(["image", "import"])
        .arg(tar)
        .args(["--tag", "busybox:1"])
        .output()?;
    if !out.status.success() {
        bail!(
            "skiff image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn wait_running(hub: &Hub, names: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let running = hub.running_pods()?;
        if names.iter().all(|n| running.contains_key(n)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{names:?} not Running within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_gone(hub: &Hub, names: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = hub.get("/api/v1/namespaces/default/pods")?;
        let left = list["items"]
            .as_array()
            .context("pod list")?
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|x| x == n))
            })
            .count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} pods not gone within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
