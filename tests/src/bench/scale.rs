//! `skiff-bench scale`: thousands of simulated agents heartbeating to one hub over the
//! embedded broker; the hub's RSS and CPU while they idle, bytes per heartbeat (computed
//! from a real sealed frame and measured from the agents' writes), agents' RSS per node.

use std::time::{Duration, Instant};

use anyhow::Result;
use skiff_api::protocol::{Heartbeat, NodeKey, SCHEMA_VERSION, TopicKind, encode, topic};

use super::{Agents, Hub, HubSetup, clock_ticks, cpu_ticks, load, median, rss_kib, wchar};

/// CPU is measured over this many equal windows and the median reported.
const WINDOWS: usize = 3;

pub(crate) fn run(agents: usize, interval_s: u64, duration_s: u64) -> Result<()> {
    println!(
        "scale: {agents} simulated agents, heartbeat every {interval_s} s, hub sampled for {duration_s} s ({})",
        load()
    );
    let tmp = tempfile::tempdir()?;
    let setup = HubSetup::new(&tmp.path().join("hub"), None)?;
    let hub = Hub::start(&setup)?;
    let start = Instant::now();
    let fleet = Agents::start(
        &hub,
        &tmp.path().join("agents"),
        agents,
        &format!("{interval_s}s"),
    )?;
    hub.wait_nodes_ready(agents, Duration::from_secs(1800))?;
    println!(
        "  {agents} nodes joined and Ready in {:.1} s ({})",
        start.elapsed().as_secs_f64(),
        load()
    );
    // Joining and the first syncs are over; let the last status writes finish.
    std::thread::sleep(Duration::from_secs(interval_s.max(5)));

    let (hub_pid, fleet_pids) = (hub.pid(), fleet.pids());
    let fleet_wchar = || -> Result<u64> { fleet_pids.iter().map(|p| wchar(*p)).sum() };
    let window = Duration::from_secs(duration_s) / WINDOWS as u32;
    let ticks = clock_ticks();
    let (mut cpu, mut rss) = (vec![], vec![]);
    let wchar_start = fleet_wchar()?;
    let wall_start = Instant::now();
    for w in 0..WINDOWS {
        let (t0, c0) = (Instant::now(), cpu_ticks(hub_pid)?);
        while t0.elapsed() < window {
            std::thread::sleep(Duration::from_secs(1));
            rss.push(rss_kib(hub_pid)? as f64 / 1024.0);
        }
        let pct = (cpu_ticks(hub_pid)? - c0) as f64 / ticks / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "    window {}: hub CPU {pct:.1}% of one core ({})",
            w + 1,
            load()
        );
        cpu.push(pct);
    }
    let wall = wall_start.elapsed().as_secs_f64();
    let written = fleet_wchar()? - wchar_start;
    let (total, ready) = hub.nodes_ready()?;
    let fleet_rss = fleet_pids
        .iter()
        .map(|p| rss_kib(*p))
        .sum::<Result<u64>>()? as f64;

    let beats = agents as f64 * wall / interval_s as f64;
    // A name as long as the simulated agents' (`bench<p>-` and the zero-padded index).
    let width = agents
        .min(super::AGENTS_PER_PROCESS)
        .saturating_sub(1)
        .max(1)
        .to_string()
        .len();
    let name = format!("bench0-{:0width$}", 42);
    let frame = heartbeat_packet(&name);
    println!(
        "  hub RSS median {:.1} MB (target <= 300 MB), hub CPU median {:.1}% of one core (target < 25%)",
        median(&mut rss),
        median(&mut cpu)
    );
    println!(
        "  heartbeat on the wire: {} bytes computed (MQTT 3.1.1 QoS 0 PUBLISH for {name:?}: {} header + {} sealed payload; target <= 100); \
         measured {:.1} bytes written by the agents per expected heartbeat ({written} bytes over {wall:.0} s)",
        frame.0 + frame.1,
        frame.0,
        frame.1,
        written as f64 / beats
    );
    println!(
        "  agent processes ({}) RSS {:.1} MB = {:.1} KiB per simulated agent; nodes Ready at the end {ready}/{total} ({})",
        fleet_pids.len(),
        fleet_rss / 1024.0,
        fleet_rss / agents as f64,
        load()
    );
    drop(fleet);
    hub.stop()?;
    Ok(())
}

/// The MQTT header and sealed payload sizes of one heartbeat from `node`, built the way
/// the agent builds it: a `Heartbeat` sealed under a node key with a millisecond `s`.
fn heartbeat_packet(node: &str) -> (usize, usize) {
    let t = topic(node, TopicKind::Heartbeat);
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let hb = Heartbeat {
        v: SCHEMA_VERSION,
        s,
        gone: false,
    };
    let key = NodeKey::from_bytes(rand::random());
    let payload = encode(&key, &t, rand::random(), &hb)
        .expect("a heartbeat is far below the payload limit")
        .len();
    // QoS 0 PUBLISH: 2-byte topic length and topic, no packet id, then the payload.
    let remaining = 2 + t.len() + payload;
    let mut varint = 1;
    while remaining >= 1 << (7 * varint) {
        varint += 1;
    }
    (1 + varint + 2 + t.len(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_packet_counts_header_and_frame() {
        // skiff/v1/n/bench0-0042/h is 24 bytes; the plaintext {"v":1,"s":<13 digits>} 25.
        let (header, payload) = heartbeat_packet("bench0-0042");
        assert_eq!(header, 1 + 1 + 2 + 24);
        assert_eq!(payload, 1 + 24 + 25 + 16);
    }
}
