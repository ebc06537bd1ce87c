//! `skiff-bench fanout`: pods created through the REST API, each bound to a different
//! simulated node, until a hub watch shows them Running; with the embedded broker and
//! with Mosquitto in the same run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{
    Agents, Broker, Hub, HubSetup, Mosquitto, clock_ticks, cpu_ticks, load, median, percentile,
    percentiles,
};

/// Medians over the rounds of one broker, milliseconds.
struct Figures {
    p50: f64,
    p99: f64,
    total: f64,
}

pub(crate) fn run(nodes: usize, brokers: &[Broker], rounds: usize) -> Result<()> {
    println!(
        "fanout: {nodes} simulated agents, {rounds} rounds of {nodes} pods (one per node, spec.nodeName preset, 32 REST clients), create returned -> watch shows Running ({})",
        load()
    );
    let mut results = vec![];
    for &broker in brokers {
        let f = one_broker(nodes, broker, rounds)?;
        println!(
            "  {}: median p50 {:.0} ms, p99 {:.0} ms (target <= 1000 ms), total {:.0} ms ({})",
            broker.name(),
            f.p50,
            f.p99,
            f.total,
            load()
        );
        results.push((broker, f));
    }
    if let [(Broker::Embedded, e), (Broker::Mosquitto, m)] = results.as_slice() {
        println!(
            "  mosquitto/embedded: p50 {:.2}x, p99 {:.2}x, total {:.2}x",
            m.p50 / e.p50,
            m.p99 / e.p99,
            m.total / e.total
        );
    }
    Ok(())
}

fn one_broker(nodes: usize, broker: Broker, rounds: usize) -> Result<Figures> {
    let tmp = tempfile::tempdir()?;
    let mosquitto = match broker {
        Broker::Mosquitto => Some(Mosquitto::start(&tmp.path().join("mosquitto"))?),
        Broker::Embedded => None,
    };
    let setup = HubSetup::new(&tmp.path().join("hub"), mosquitto.as_ref())?;
    let hub = Hub::start(&setup)?;
    let start = Instant::now();
    let agents = Agents::start(&hub, &tmp.path().join("agents"), nodes, "10s")?;
    let mut names = hub.wait_nodes_ready(nodes, Duration::from_secs(900))?;
    names.sort();
    println!(
        "  {}: {nodes} nodes joined and Ready in {:.1} s",
        broker.name(),
        start.elapsed().as_secs_f64()
    );
    let running = watch_running(&hub)?;
    let (mut p50s, mut p99s, mut totals) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let pods: Vec<(String, String)> = names
            .iter()
            .map(|n| (format!("f{round}-{n}"), n.clone()))
            .collect();
        let cpu = |pids: &[u32]| pids.iter().filter_map(|p| cpu_ticks(*p).ok()).sum::<u64>();
        let (hub0, agents0) = (cpu(&[hub.pid()]), cpu(&agents.pids()));
        let first = Instant::now();
        let created = hub.create_bound(&pods, 32)?;
        let create_s = first.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(300);
        let seen = loop {
            {
                let r = running.lock().expect("running map");
                if pods.iter().all(|(p, _)| r.contains_key(p)) {
                    break pods
                        .iter()
                        .map(|(p, _)| (p.clone(), r[p]))
                        .collect::<HashMap<_, _>>();
                }
                if Instant::now() > deadline {
                    let n = pods.iter().filter(|(p, _)| r.contains_key(p)).count();
                    bail!("only {n} of {} pods Running after 300 s", pods.len());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lat: Vec<f64> = pods
            .iter()
            .map(|(p, _)| seen[p].saturating_duration_since(created[p]).as_secs_f64() * 1000.0)
            .collect();
        lat.sort_by(f64::total_cmp);
        let last = seen.values().max().context("no pods")?;
        let total = last.duration_since(first).as_secs_f64() * 1000.0;
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        split(&agents, &pods, &created, &seen);
        println!(
            "      CPU from the first create to the last Running: hub {:.2} s, agents {:.2} s",
            (cpu(&[hub.pid()]) - hub0) as f64 / clock_ticks(),
            (cpu(&agents.pids()) - agents0) as f64 / clock_ticks()
        );
        println!(
            "    round {}: creates took {create_s:.2} s; p50 {p50:.0} ms, p99 {p99:.0} ms, max {:.0} ms, total {total:.0} ms ({})",
            round + 1,
            lat[lat.len() - 1],
            load()
        );
        p50s.push(p50);
        p99s.push(p99);
        totals.push(total);
    }
    hub.stop()?;
    Ok(Figures {
        p50: median(&mut p50s),
        p99: median(&mut p99s),
        total: median(&mut totals),
    })
}

/// Prints where the latency went: create returned -> the agent persisted the pod
/// (hub store, watch, dispatch, broker, agent write) and persisted -> watch shows
/// Running (start, status up, hub status write, watch).
fn split(
    agents: &Agents,
    pods: &[(String, String)],
    created: &HashMap<String, Instant>,
    seen: &HashMap<String, Instant>,
) {
    let mut l = agents.log.lock().expect("agent log");
    let mut writes = std::mem::take(&mut l.write_ms);
    let mut starts = std::mem::take(&mut l.start_ms);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut down, mut up) = (vec![], vec![]);
    for (p, _) in pods {
        if let (Some(c), Some(at), Some(s)) = (created.get(p), l.persisted.get(p), seen.get(p)) {
            down.push(ms(at.saturating_duration_since(*c)));
            up.push(ms(s.saturating_duration_since(*at)));
        }
    }
    drop(l);
    if down.is_empty() {
        return;
    }
    down.sort_by(f64::total_cmp);
    up.sort_by(f64::total_cmp);
    let pct = |v: &[f64]| percentiles(v, &[50.0, 90.0, 99.0]);
    println!(
        "      {} pods: created -> agent persisted {}; persisted -> watch Running {}",
        down.len(),
        pct(&down),
        pct(&up)
    );
    writes.sort_by(f64::total_cmp);
    starts.sort_by(f64::total_cmp);
    if !writes.is_empty() && !starts.is_empty() {
        println!(
            "      agent desired-state write {}; runtime start {}",
            pct(&writes),
            pct(&starts)
        );
    }
}

/// Follows `GET /api/v1/pods?watch=true`; records when each pod is first seen Running.
pub(crate) fn watch_running(hub: &Hub) -> Result<Arc<Mutex<HashMap<String, Instant>>>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(format!("{}/api/v1/pods?watch=true", hub.base))
        .header("Authorization", &hub.auth)
        .call()?;
    if !resp.status().is_success() {
        bail!("watch returned {}", resp.status());
    }
    let reader = BufReader::new(resp.into_body().into_reader());
    let running = Arc::new(Mutex::new(HashMap::new()));
    let sink = running.clone();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let pod = &ev["object"];
            if pod["status"]["phase"] == "Running"
                && let Some(name) = pod["metadata"]["name"].as_str()
            {
                sink.lock()
                    .expect("running map")
                    .entry(name.to_string())
                    .or_insert(now);
            }
        }
    });
    Ok(running)
}
