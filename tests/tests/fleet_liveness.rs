//! Heartbeat loss and return with real processes: a frozen agent (SIGSTOP keeps its TCP
//! connection open but silent) turns its Node's Ready to Unknown once `--node-grace`
//! passes, and thawing it turns Ready back to True. Its pod is neither deleted nor
//! restarted meanwhile. Run with the embedded broker and with Mosquitto.

use std::time::{Duration, Instant};

use skiff_tests::{BrokerKind, Fleet, node_ready};

const GRACE: Duration = Duration::from_secs(3);
/// Room for the hub's lease check and a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

fn heartbeat_loss_and_return(kind: BrokerKind) {
    let fleet = Fleet::start(kind, &["--node-grace", "3s"], false);
    let hub = &fleet.hub;
    let agent = fleet.joined_agent("live-1", &["--heartbeat-interval", "1s"]);
    let created = hub.create_pod("live-pod", "live-1", "busybox");
    let uid = created["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();
    let pod_path = "/api/v1/namespaces/default/pods/live-pod";
    hub.wait_for(pod_path, WAIT, |p| p["status"]["phase"] == "Running");
    let before = agent.wait_runtime(WAIT, "the pod running", |p| p.len() == 1);

    agent.freeze();
    let frozen = Instant::now();
    let node = fleet.wait_ready("live-1", "Unknown", GRACE + MARGIN);
    let took = frozen.elapsed();
    assert_eq!(
        node_ready(&node),
        Some(("Unknown".to_string(), "NodeStatusUnknown".to_string()))
    );
    // The last heartbeat came at most one interval before the freeze.
    assert!(
        took >= GRACE - Duration::from_secs(1),
        "Ready went Unknown {took:?} after the freeze, before the {GRACE:?} grace"
    );

    agent.thaw();
    fleet.wait_ready("live-1", "True", WAIT);

    let pod = hub.get_json(pod_path);
    assert_eq!(pod["metadata"]["uid"], uid.as_str());
    assert!(pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(agent.runtime_pods(), before, "the pod was touched");
}

#[test]
fn heartbeat_loss_and_return_with_embedded_broker() {
    heartbeat_loss_and_return(BrokerKind::Embedded);
}

#[test]
fn heartbeat_loss_and_return_with_mosquitto() {
    heartbeat_loss_and_return(BrokerKind::Mosquitto);
}
