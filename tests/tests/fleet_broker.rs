//! Mosquitto restarting without persistence (sessions and queued messages lost; the
//! dynsec file, holding the accounts the hub created, kept): the hub and the agents
//! reconnect, the agents resync, pods that did not change are not restarted, and new
//! desired state and pod status flow again.

use std::time::Duration;

use skiff_tests::{BrokerKind, Fleet};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn mosquitto_restart_reconverges() {
    let mut fleet = Fleet::start(BrokerKind::Mosquitto, &["--node-grace", "3s"], false);
    let a = fleet.joined_agent("brk-a", &["--heartbeat-interval", "1s"]);
    let b = fleet.joined_agent("brk-b", &["--heartbeat-interval", "1s"]);
    fleet.hub.create_pod("brk-pa", "brk-a", "busybox");
    fleet.hub.create_pod("brk-pb", "brk-b", "busybox");
    let ra = a.wait_runtime(WAIT, "brk-pa running", |p| p.len() == 1);
    let rb = b.wait_runtime(WAIT, "brk-pb running", |p| p.len() == 1);
    for name in ["brk-pa", "brk-pb"] {
        fleet.hub.wait_for(
            &format!("/api/v1/namespaces/default/pods/{name}"),
            WAIT,
            |p| p["status"]["phase"] == "Running",
        );
    }
    let syncs_a = a.log().matches("sync complete").count();
    let syncs_b = b.log().matches("sync complete").count();

    let broker = fleet.broker.as_mut().expect("a Mosquitto fleet");
    broker.restart();

    // Both agents resync after the restart.
    for (agent, before) in [(&a, syncs_a), (&b, syncs_b)] {
        let deadline = std::time::Instant::now() + WAIT;
        while agent.log().matches("sync complete").count() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not resync after the broker restart:\n{}",
                agent.node(),
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fleet.wait_ready("brk-a", "True", WAIT);
    fleet.wait_ready("brk-b", "True", WAIT);

    // New desired state reaches each node and its status reaches the hub.
    let created = fleet.hub.create_pod("brk-pa2", "brk-a", "busybox");
    let uid = created["metadata"]["uid"].as_str().expect("a uid");
    let now_a = a.wait_runtime(WAIT, "brk-pa2 running", |p| p.len() == 2);
    assert!(now_a.iter().any(|p| p.uid == uid));
    fleet
        .hub
        .wait_for("/api/v1/namespaces/default/pods/brk-pa2", WAIT, |p| {
            p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
        });
    fleet.hub.delete_pod("brk-pb");
    b.wait_runtime(WAIT, "brk-pb removed", |p| p.is_empty());

    // The pod that did not change was not restarted.
    let kept = now_a
        .iter()
        .find(|p| p.name == "brk-pa")
        .expect("brk-pa still there");
    assert_eq!(kept, &ra[0]);
    assert_eq!(rb.len(), 1);
    assert_eq!(a.log().matches("started pod").count(), 2);
    assert_eq!(b.log().matches("started pod").count(), 1);
}
