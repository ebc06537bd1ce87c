//! End to end with Debian's Mosquitto and its dynamic security plugin as the external
//! broker: the hub creates a client and a role per node there, nodes only reach their
//! own topics, and the hub resubscribes after the broker restarts.

mod dispatch_support;

// The launcher the cross-crate tests and benchmarks use, shared as a file.
#[allow(dead_code)]
#[path = "../../tests/src/mosquitto.rs"]
mod mosquitto;

use std::time::{Duration, Instant};

use dispatch_support::{FakeAgent, Hub, ready_status};
use mosquitto::Mosquitto;
use rumqttc::QoS;
use skiff_api::protocol::{Down, SCHEMA_VERSION, TopicKind, Up, topic};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn mosquitto_with_dynamic_security_isolates_nodes_and_survives_a_restart() {
    let mut mosquitto = Mosquitto::start();
    let port = mosquitto.port();
    let url = mosquitto.url();
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(hub_dir.path(), &mosquitto.hub_args());
    let a = hub.join("mq-a");
    let b = hub.join("mq-b");
    assert_eq!(a.broker, url);

    // Wrong password, or another node's client id: refused by Mosquitto.
    assert!(FakeAgent::connect_as(port, "mq-a", "mq-a", "wrong", &a.key, 1).is_err());
    assert!(FakeAgent::connect_as(port, "mq-b", "mq-a", &a.password, &a.key, 1).is_err());

    let mut agent_a = FakeAgent::connect(&a, port);
    let mut agent_b = FakeAgent::connect(&b, port);
    agent_a.subscribe("mq-a");
    agent_b.subscribe("mq-b");
    // a also tries b's desired state: the broker refuses that subscription.
    agent_a.subscribe("mq-b");

    agent_a.node_status(&[]);
    hub.wait_for("/api/v1/nodes/mq-a", WAIT, |n| {
        ready_status(n).is_some_and(|(s, _)| s == "True")
    });
    let pod = hub.create_pod("pa", "mq-a");
    match agent_a.recv(WAIT) {
        Down::PodUpsert { pod, .. } => assert_eq!(pod.metadata.name, "pa"),
        other => panic!("expected an upsert, got {other:?}"),
    }
    agent_a.pod_status("pa", pod["metadata"]["uid"].as_str().unwrap(), "Running");
    hub.wait_for("/api/v1/namespaces/default/pods/pa", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });

    // b's pod reaches b, and nothing reaches a.
    hub.create_pod("pb", "mq-b");
    assert!(matches!(agent_b.recv(WAIT), Down::PodUpsert { .. }));
    agent_a.expect_nothing(Duration::from_millis(500));

    // a publishing as b (b's topics) is dropped by the broker: the hub never sees it,
    // while b's own message right after is processed.
    let seq = agent_a.next_seq();
    agent_a.send_up_as(
        "mq-b",
        &Up::Sync {
            v: SCHEMA_VERSION,
            seq,
            revision: 0,
            pods: vec![],
        },
    );
    agent_a.publish_raw(
        &topic("mq-b", TopicKind::Up),
        QoS::AtLeastOnce,
        b"garbage".to_vec(),
    );
    agent_a.publish_raw(
        &topic("mq-b", TopicKind::Down),
        QoS::AtLeastOnce,
        b"fake".to_vec(),
    );
    agent_b.node_status(&[]);
    hub.wait_for("/api/v1/nodes/mq-b", WAIT, |n| {
        n["metadata"]["name"] == "mq-b"
    });
    assert_eq!(hub.metric("unauthenticated"), 0);
    assert_eq!(hub.metric("malformed"), 0);
    assert_eq!(hub.metric("unknown_version"), 0);
    agent_b.expect_nothing(Duration::from_millis(300));

    // The broker restarts: the hub reconnects and resubscribes, a reconnecting agent
    // syncs and gets its pod again.
    drop(agent_a);
    drop(agent_b);
    mosquitto.restart();
    let deadline = Instant::now() + WAIT;
    let mut agent_a = loop {
        if let Ok(agent) = FakeAgent::connect_as(port, "mq-a", "mq-a", &a.password, &a.key, 2) {
            break agent;
        }
        assert!(
            Instant::now() < deadline,
            "mq-a cannot log in after the broker restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    agent_a.subscribe("mq-a");
    agent_a.seq = 1000;
    // The hub may still be reconnecting: sync until it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        agent_a.sync(0, vec![]);
        let got: Vec<Down> =
            std::iter::from_fn(|| agent_a.try_recv(Duration::from_millis(700))).collect();
        if got.iter().any(|m| matches!(m, Down::SyncDone { .. })) {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not answer a sync after the broker restart"
        );
    };
    assert!(
        answer
            .iter()
            .any(|m| matches!(m, Down::PodUpsert { pod, .. } if pod.metadata.name == "pa")),
        "{answer:?}"
    );
    drop(mosquitto);
}
