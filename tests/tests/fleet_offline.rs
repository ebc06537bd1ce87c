//! Offline autonomy with real processes. With four pods running on a node: the hub stops
//! and the agent keeps every pod; the agent restarts while the hub is down and adopts
//! them (same container ids, no restarts); then, while the agent is away, pod A is
//! deleted, pod B deleted and recreated under its name (new uid), pod C's image changed
//! and pod D left alone. On reconnect A is gone, B runs once under its new uid, C runs
//! the new image, D was not touched: no orphans, no duplicates, and the hub deleted or
//! evicted nothing because the node was away. Run with the embedded broker (on a fixed
//! port, so the restarted hub is found again) and with Mosquitto.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::{Agent, BrokerKind, Fleet, RuntimePod};

const NODE: &str = "off-1";
const WAIT: Duration = Duration::from_secs(20);
/// How long a state that must not change is watched.
const HOLD: Duration = Duration::from_millis(1500);

/// How many times the agent logged `event` (`started pod`, `stopped pod`) with `field`.
fn count(agent: &Agent, event: &str, field: &str) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains(event) && l.split_whitespace().any(|w| w == field))
        .count()
}

/// Watches the runtime for `HOLD` and fails if it differs from `expect` at any point.
fn holds(agent: &Agent, expect: &[RuntimePod], why: &str) {
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        assert_eq!(agent.runtime_pods(), expect, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn by_name(pods: &[RuntimePod]) -> BTreeMap<String, RuntimePod> {
    pods.iter().map(|p| (p.name.clone(), p.clone())).collect()
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().expect("a uid").to_string()
}

/// Pods the hub binds to `NODE`: name → uid; asserts none is being deleted.
fn hub_pods(fleet: &Fleet) -> BTreeMap<String, String> {
    let list = fleet.hub.get_json("/api/v1/namespaces/default/pods");
    let mut out = BTreeMap::new();
    for p in list["items"].as_array().expect("a pod list") {
        assert!(
            p["metadata"]["deletionTimestamp"].is_null(),
            "the hub is deleting {p}"
        );
        if p["spec"]["nodeName"] == NODE {
            out.insert(
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                uid(p),
            );
        }
    }
    out
}

fn offline(kind: BrokerKind) {
    let mut fleet = Fleet::start(kind, &["--node-grace", "3s"], true);
    let mut agent = fleet.joined_agent(NODE, &["--heartbeat-interval", "1s"]);
    let mut uids = BTreeMap::new();
    for name in ["off-a", "off-b", "off-c", "off-d"] {
        uids.insert(name, uid(&fleet.hub.create_pod(name, NODE, "busybox")));
    }
    for name in uids.keys() {
        fleet.hub.wait_for(
            &format!("/api/v1/namespaces/default/pods/{name}"),
            WAIT,
            |p| p["status"]["phase"] == "Running",
        );
    }
    let running = agent.wait_runtime(WAIT, "four pods running", |p| p.len() == 4);
    for p in &running {
        assert_eq!(uids[p.name.as_str()], p.uid);
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.containers[0].state, "running");
        assert_eq!(p.containers[0].restart_count, 0);
    }

    // The hub goes away: the agent keeps running its pods.
    fleet.hub.stop();
    holds(
        &agent,
        &running,
        "the agent changed its pods without the hub",
    );
    assert_eq!(count(&agent, "stopped pod", "pod="), 0);

    // The agent restarts (SIGKILL, as a power cut) while the hub is down: it adopts
    // the same pods; nothing is started again.
    agent.kill();
    let starts_before = agent.log().matches("started pod").count();
    let boots = agent.log().matches("agent started").count();
    agent.start_again();
    let deadline = Instant::now() + WAIT;
    while agent.log().matches("agent started").count() == boots {
        assert!(
            Instant::now() < deadline,
            "the agent did not come back:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    holds(&agent, &running, "the restarted agent changed its pods");
    assert_eq!(agent.log().matches("started pod").count(), starts_before);

    // The node goes away and the hub comes back; desired state changes meanwhile.
    agent.stop();
    fleet.hub.restart();
    fleet.wait_ready(NODE, "Unknown", WAIT);
    fleet.hub.delete_pod("off-a");
    fleet.hub.delete_pod("off-b");
    let new_b = uid(&fleet.hub.create_pod("off-b", NODE, "busybox"));
    assert_ne!(new_b, uids["off-b"]);
    let c_path = "/api/v1/namespaces/default/pods/off-c";
    let mut c = fleet.hub.get_json(c_path);
    c["spec"]["containers"][0]["image"] = Value::from("busybox:1.36");
    let (code, body) = fleet.hub.request("PUT", c_path, Some(&c), true);
    assert_eq!(code, 200, "updating off-c: {body}");
    // Away past its grace period, the node still has every pod it should.
    let expected: BTreeMap<String, String> = [
        ("off-b".to_string(), new_b.clone()),
        ("off-c".to_string(), uids["off-c"].clone()),
        ("off-d".to_string(), uids["off-d"].clone()),
    ]
    .into();
    assert_eq!(hub_pods(&fleet), expected);

    let logged_before = agent.log().len();
    agent.start_again();
    fleet.wait_ready(NODE, "True", WAIT);
    let after = agent.wait_runtime(WAIT, "the node converged", |pods| {
        let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        names == ["off-b", "off-c", "off-d"]
            && pods
                .iter()
                .all(|p| p.containers.iter().all(|c| c.state == "running"))
            && pods[1].containers[0].image == "busybox:1.36"
            && pods[0].uid == new_b
    });
    let before = by_name(&running);
    let now = by_name(&after);
    // Orphans: pods the runtime holds that the hub does not bind here. Duplicates: two
    // records under one name.
    let hub_uids: BTreeSet<&String> = expected.values().collect();
    let orphans = after.iter().filter(|p| !hub_uids.contains(&p.uid)).count();
    let names: BTreeSet<&String> = after.iter().map(|p| &p.name).collect();
    assert_eq!(orphans, 0, "orphans in {after:#?}");
    assert_eq!(after.len() - names.len(), 0, "duplicates in {after:#?}");
    // D untouched: same record, same container, no restart.
    assert_eq!(now["off-d"], before["off-d"]);
    assert_eq!(now["off-d"].containers[0].restart_count, 0);
    // C started again from the new spec.
    assert_eq!(now["off-c"].uid, uids["off-c"]);
    assert_ne!(now["off-c"].spec_hash, before["off-c"].spec_hash);
    assert_ne!(now["off-c"].started_at, before["off-c"].started_at);
    // Counters from the agent's log since it came back: one start each for B (new uid)
    // and C (new spec), none for D; one stop each for A, old B and old C.
    let since: String = agent.log()[logged_before..].to_string();
    let starts: Vec<&str> = since
        .lines()
        .filter(|l| l.contains("started pod"))
        .collect();
    let stops: Vec<&str> = since
        .lines()
        .filter(|l| l.contains("stopped pod"))
        .collect();
    let has = |lines: &[&str], word: &str| {
        lines
            .iter()
            .filter(|l| l.split_whitespace().any(|w| w == word))
            .count()
    };
    assert_eq!(starts.len(), 2, "starts after reconnect: {starts:#?}");
    assert_eq!(has(&starts, "name=off-b"), 1);
    assert_eq!(has(&starts, "name=off-c"), 1);
    assert_eq!(has(&starts, "name=off-d"), 0);
    assert_eq!(stops.len(), 3, "stops after reconnect: {stops:#?}");
    for old in [&uids["off-a"], &uids["off-b"], &uids["off-c"]] {
        assert_eq!(has(&stops, &format!("pod={old}")), 1, "{old} in {stops:#?}");
    }

    // The hub's view: B, C, D Running under the expected uids, C with its new image.
    for name in ["off-b", "off-c", "off-d"] {
        let p = fleet.hub.wait_for(
            &format!("/api/v1/namespaces/default/pods/{name}"),
            WAIT,
            |p| {
                p["status"]["phase"] == "Running" && p["metadata"]["uid"] == expected[name].as_str()
            },
        );
        assert!(p["metadata"]["deletionTimestamp"].is_null());
    }
    assert_eq!(hub_pods(&fleet), expected);
}

#[test]
fn offline_autonomy_and_reconnect_with_embedded_broker() {
    offline(BrokerKind::Embedded);
}

#[test]
fn offline_autonomy_and_reconnect_with_mosquitto() {
    offline(BrokerKind::Mosquitto);
}
