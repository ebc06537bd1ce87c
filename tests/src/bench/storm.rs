//! `skiff-bench storm`: thousands of connected simulated agents, a pod Running on each,
//! then the hub is stopped with SIGTERM and started again on the same data dir and
//! ports. Measures the time until every agent has reconnected and finished its sync
//! with the new hub, and checks that no pod was started, stopped or restarted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Agents, Hub, HubSetup, load, median, percentiles};

pub(crate) fn run(agents: usize, rounds: usize) -> Result<()> {
    println!(
        "storm: {agents} simulated agents with one Running pod each; SIGTERM the hub, restart it on the same data dir, {rounds} rounds ({})",
        load()
    );
    let tmp = tempfile::tempdir()?;
    let setup = HubSetup::new(&tmp.path().join("hub"), None)?;
    let mut hub = Hub::start(&setup)?;
    let start = Instant::now();
    let fleet = Agents::start(&hub, &tmp.path().join("agents"), agents, "10s")?;
    let mut names = hub.wait_nodes_ready(agents, Duration::from_secs(1800))?;
    names.sort();
    println!(
        "  {agents} nodes joined and Ready in {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        load()
    );
    let pods: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("s-{n}"), n.clone()))
        .collect();
    let start = Instant::now();
    hub.create_bound(&pods, 32)?;
    let before = wait_all_running(&hub, agents, Duration::from_secs(900))?;
    println!(
        "  {agents} pods created and Running in {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        load()
    );

    let mut times = vec![];
    for round in 0..rounds {
        let (started0, stopped0, restarted0, lost0) = {
            let l = fleet.log.lock().expect("agent log");
            (
                l.started_pods,
                l.stopped_pods,
                l.restarted_containers,
                l.lost_broker,
            )
        };
        let stop_took = hub.stop()?;
        let t0 = Instant::now();
        hub = Hub::start(&setup)?;
        let healthy = t0.elapsed().as_secs_f64();
        let deadline = t0 + Duration::from_secs(600);
        let last = loop {
            {
                let l = fleet.log.lock().expect("agent log");
                let synced: Vec<Instant> = names
                    .iter()
                    .filter_map(|n| l.synced.get(n).copied().filter(|t| *t > t0))
                    .collect();
                if synced.len() == agents {
                    break synced.into_iter().max().context("no agents")?;
                }
                if Instant::now() > deadline {
                    bail!(
                        "only {} of {agents} agents synced with the restarted hub within 600 s",
                        synced.len()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let converged = last.duration_since(t0).as_secs_f64();
        spread(&fleet, &names, t0);
        // Statuses the agents re-report after the sync land moments later.
        std::thread::sleep(Duration::from_secs(3));
        let (total, ready) = hub.nodes_ready()?;
        let after = wait_all_running(&hub, agents, Duration::from_secs(120))?;
        let changed = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .count();
        let l = fleet.log.lock().expect("agent log");
        let (started, stopped, restarted, lost) = (
            l.started_pods - started0,
            l.stopped_pods - stopped0,
            l.restarted_containers - restarted0,
            l.lost_broker - lost0,
        );
        drop(l);
        println!(
            "    round {}: hub stopped in {:.2} s; restarted, healthy after {healthy:.2} s; all {agents} agents re-synced after {converged:.2} s (target <= 30 s); \
             {lost} agents logged the lost broker; nodes Ready {ready}/{total}; pods started {started}, stopped {stopped}, containers restarted {restarted}, statuses changed {changed} ({})",
            round + 1,
            stop_took.as_secs_f64(),
            load()
        );
        if ready != agents || started + stopped + restarted + changed > 0 {
            bail!("the fleet did not come back untouched after the hub restart");
        }
        times.push(converged);
    }
    println!(
        "  median time from restart to every node re-synced: {:.2} s over {rounds} rounds (target <= 30 s)",
        median(&mut times)
    );
    drop(fleet);
    hub.stop()?;
    Ok(())
}

/// Prints when, after the restart at `t0`, the agents reconnected and re-synced, and
/// how many failed attempts their reconnects took: where the time went.
fn spread(fleet: &Agents, names: &[String], t0: Instant) {
    let l = fleet.log.lock().expect("agent log");
    let since = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    let mut connected = vec![];
    let mut lag = vec![];
    let mut attempts: std::collections::BTreeMap<u32, usize> = Default::default();
    for n in names {
        let Some(&(c, a)) = l.connected.get(n).filter(|(c, _)| *c > t0) else {
            continue;
        };
        connected.push(since(c));
        *attempts.entry(a).or_default() += 1;
        if let Some(&s) = l.synced.get(n).filter(|s| **s > t0) {
            lag.push(s.saturating_duration_since(c).as_secs_f64() * 1000.0);
        }
    }
    drop(l);
    if connected.is_empty() {
        return;
    }
    connected.sort_by(f64::total_cmp);
    lag.sort_by(f64::total_cmp);
    let pct = |v: &[f64]| percentiles(v, &[10.0, 50.0, 90.0, 99.0, 100.0]);
    println!(
        "      reconnected after restart: {} agents, {}; failed attempts before it {attempts:?}",
        connected.len(),
        pct(&connected)
    );
    if !lag.is_empty() {
        println!("      connect -> sync complete: {}", pct(&lag));
    }
}

/// Waits until `n` pods are Running; returns, per pod, what identifies its containers'
/// lives: container id, restart count and start time.
fn wait_all_running(hub: &Hub, n: usize, timeout: Duration) -> Result<HashMap<String, Value>> {
    let deadline = Instant::now() + timeout;
    loop {
        let running = hub.running_pods()?;
        if running.len() >= n {
            return Ok(running
                .into_iter()
                .map(|(name, statuses)| {
                    let lives: Vec<Value> = statuses
                        .as_array()
                        .map(|cs| {
                            cs.iter()
                                .map(|c| {
                                    serde_json::json!([
                                        c["containerID"],
                                        c["restartCount"],
                                        c["state"]["running"]["startedAt"]
                                    ])
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (name, Value::Array(lives))
                })
                .collect());
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} pods Running after {timeout:?}",
                running.len()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
