//! Joining a fleet with real processes: a good token registers a Ready node with the
//! well-known labels and the operator's `--label`; a spent or an expired token makes
//! the agent exit non-zero with the hub's own message, and no Node appears. Run with the
//! embedded broker and with Mosquitto.

use std::time::Duration;

use skiff_tests::{BrokerKind, Fleet, node_ready};

const WAIT: Duration = Duration::from_secs(20);

/// The architecture name Kubernetes uses for this machine.
fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn join(kind: BrokerKind) {
    let fleet = Fleet::start(kind, &[], false);
    let hub = &fleet.hub;

    // A good token with one use: the node registers, Ready, with its labels.
    let (token, _) = hub.create_token(600, 1);
    let good = fleet.agent("join-good", &token, &["--label", "zone=north"]);
    let node = fleet.wait_ready("join-good", "True", WAIT);
    let labels = node["metadata"]["labels"].as_object().expect("labels");
    let expect = [
        ("kubernetes.io/hostname", "join-good"),
        ("kubernetes.io/arch", kube_arch()),
        ("kubernetes.io/os", "linux"),
        ("zone", "north"),
    ];
    for (k, v) in expect {
        assert_eq!(
            labels.get(k).and_then(|l| l.as_str()),
            Some(v),
            "{k} in {labels:?}"
        );
    }
    assert_eq!(labels.len(), expect.len(), "unexpected labels {labels:?}");
    assert_eq!(node_ready(&node).map(|(s, _)| s).as_deref(), Some("True"));
    assert_eq!(good.credentials()["nodeName"], "join-good");

    // The same token again: spent.
    let mut spent = fleet.agent("join-spent", &token, &[]);
    let status = spent.wait_exit(WAIT);
    assert!(
        !status.success(),
        "an agent with a spent token exited with {status}"
    );
    let log = spent.log();
    assert!(
        log.contains("join token already used"),
        "the hub's message is not shown:\n{log}"
    );
    assert!(!spent.state_dir().join("credentials.json").exists());
    assert_eq!(
        hub.request("GET", "/api/v1/nodes/join-spent", None, true).0,
        404
    );

    // A token that lived one second.
    let (short, _) = hub.create_token(1, 1);
    std::thread::sleep(Duration::from_millis(2100));
    let mut expired = fleet.agent("join-expired", &short, &[]);
    let status = expired.wait_exit(WAIT);
    assert!(
        !status.success(),
        "an agent with an expired token exited with {status}"
    );
    let log = expired.log();
    assert!(
        log.contains("join token expired"),
        "the hub's message is not shown:\n{log}"
    );
    assert!(!expired.state_dir().join("credentials.json").exists());
    assert_eq!(
        hub.request("GET", "/api/v1/nodes/join-expired", None, true)
            .0,
        404
    );

    // Exactly one node joined.
    let nodes = hub.get_json("/api/v1/nodes");
    let names: Vec<&str> = nodes["items"]
        .as_array()
        .expect("a node list")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["join-good"]);
}

#[test]
fn join_with_embedded_broker() {
    join(BrokerKind::Embedded);
}

#[test]
fn join_with_mosquitto() {
    join(BrokerKind::Mosquitto);
}
