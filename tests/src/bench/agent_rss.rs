//! `skiff-bench agent-rss`: the resident memory of one real agent (release build,
//! simulated runtime) idle with no pods and with 50 pods Running, and the size of the
//! stripped release binary.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Agents, Hub, HubSetup, binary, load, median, rss_kib};

const PODS: usize = 50;

pub(crate) fn run(rounds: usize, settle_s: u64) -> Result<()> {
    let size = std::fs::metadata(binary("skiff-agent")?)?.len();
    println!(
        "agent-rss: one skiff-agent, idle then with {PODS} pods Running, RSS after {settle_s} s settling, {rounds} rounds ({})",
        load()
    );
    let (mut idle, mut busy) = (vec![], vec![]);
    for round in 0..rounds {
        let tmp = tempfile::tempdir()?;
        let setup = HubSetup::new(&tmp.path().join("hub"), None)?;
        let hub = Hub::start(&setup)?;
        let agent = Agents::start(&hub, &tmp.path().join("agent"), 1, "10s")?;
        let nodes = hub.wait_nodes_ready(1, Duration::from_secs(60))?;
        std::thread::sleep(Duration::from_secs(settle_s));
        let rss_idle = rss_kib(agent.pids()[0])? as f64 / 1024.0;
        let pods: Vec<(String, String)> = (0..PODS)
            .map(|i| (format!("r-{i}"), nodes[0].clone()))
            .collect();
        hub.create_bound(&pods, 8)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while hub.running_pods()?.len() < PODS {
            if Instant::now() > deadline {
                bail!("{PODS} pods were not Running within 120 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(settle_s));
        let rss_busy = rss_kib(agent.pids()[0])? as f64 / 1024.0;
        println!(
            "    round {}: idle {rss_idle:.1} MB, {PODS} pods {rss_busy:.1} MB ({})",
            round + 1,
            load()
        );
        idle.push(rss_idle);
        busy.push(rss_busy);
        drop(agent);
        hub.stop()?;
    }
    println!(
        "  agent RSS median: idle {:.1} MB, with {PODS} pods {:.1} MB (target <= 10 MB); stripped release binary {:.1} MB ({size} bytes)",
        median(&mut idle),
        median(&mut busy),
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
