//! Node isolation against a real MQTT client holding node A's credentials (read from
//! A's state directory, with A's agent stopped so its client id is free):
//! - subscribing to node B's desired-state topic: Mosquitto refuses (dynsec ACL) and
//!   nothing arrives; the embedded broker (no topic ACLs) delivers B's frames, and none
//!   of them opens with A's key — the guarantee docs/protocol.md gives for that mode;
//! - publishing a status for B's pod on B's topic, sealed with A's key: the embedded
//!   broker passes it and the hub rejects it as `unauthenticated`; Mosquitto drops it
//!   before the hub. Either way B's pod status does not change.
//!
//! A's own desired-state topic is the control: a frame there opens with A's key, so
//! the client demonstrably receives what it is allowed to.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use skiff_api::protocol::{Down, NodeKey, SCHEMA_VERSION, TopicKind, Up, decode, encode, topic};
use skiff_tests::{BrokerKind, Fleet, node_ready};

const WAIT: Duration = Duration::from_secs(20);

enum Heard {
    SubAck(Vec<SubscribeReasonCode>),
    Frame(String, Vec<u8>),
}

fn isolation(kind: BrokerKind) {
    let fleet = Fleet::start(kind, &[], false);
    let hub = &fleet.hub;
    let mut a = fleet.joined_agent("iso-a", &[]);
    let b = fleet.joined_agent("iso-b", &[]);
    let pb = hub.create_pod("iso-pb", "iso-b", "busybox");
    let pb_uid = pb["metadata"]["uid"].as_str().expect("a uid").to_string();
    let pb_path = "/api/v1/namespaces/default/pods/iso-pb";
    hub.wait_for(pb_path, WAIT, |p| p["status"]["phase"] == "Running");

    let creds = a.credentials();
    a.stop();
    let key = NodeKey::from_hex(creds["key"].as_str().expect("a key")).expect("a valid key");
    let port: u16 = creds["broker"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a broker port");
    let mut opts = MqttOptions::new("iso-a", "127.0.0.1", port);
    opts.set_credentials("iso-a", creds["password"].as_str().expect("a password"));
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut connection) = Client::new(opts, 16);
    let (tx, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            let msg = match event {
                Ok(Event::Incoming(Packet::SubAck(ack))) => Heard::SubAck(ack.return_codes),
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Heard::Frame(p.topic.clone(), p.payload.to_vec())
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    let own_d = topic("iso-a", TopicKind::Down);
    let b_d = topic("iso-b", TopicKind::Down);
    client
        .subscribe(&own_d, QoS::AtLeastOnce)
        .expect("subscribing");
    client
        .subscribe(&b_d, QoS::AtLeastOnce)
        .expect("subscribing");
    let mut acks = Vec::new();
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while acks.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match heard.recv_timeout(left) {
            Ok(Heard::SubAck(codes)) => acks.extend(codes),
            Ok(Heard::Frame(t, p)) => frames.push((t, p)),
            Err(e) => panic!("no SUBACKs from the broker: {e}"),
        }
    }
    match kind {
        BrokerKind::Embedded => assert!(
            acks.iter()
                .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
            "{acks:?}"
        ),
        BrokerKind::Mosquitto => assert_eq!(
            acks,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure
            ]
        ),
    }

    // Traffic for B, then for A (the control).
    hub.create_pod("iso-pb2", "iso-b", "busybox");
    b.wait_runtime(WAIT, "iso-pb2 running", |p| p.len() == 2);
    hub.create_pod("iso-pa", "iso-a", "busybox");
    let mut control = None;
    let deadline = Instant::now() + WAIT;
    while control.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(msg) = heard.recv_timeout(left) else {
            panic!("nothing arrived on {own_d}");
        };
        if let Heard::Frame(t, p) = msg {
            if t == own_d
                && let Ok(Down::PodUpsert { pod, .. }) = decode::<Down>(&key, &t, &p)
                && pod.metadata.name == "iso-pa"
            {
                control = Some(pod);
            } else {
                frames.push((t, p));
            }
        }
    }
    while let Ok(msg) = heard.recv_timeout(Duration::from_millis(300)) {
        if let Heard::Frame(t, p) = msg {
            frames.push((t, p));
        }
    }
    let on_b: Vec<&(String, Vec<u8>)> = frames.iter().filter(|(t, _)| *t == b_d).collect();
    for (t, p) in &on_b {
        assert!(
            decode::<Down>(&key, t, p).is_err(),
            "a frame for iso-b opened with iso-a's key"
        );
    }
    match kind {
        // At least the upsert of iso-pb2 went by, unreadable.
        BrokerKind::Embedded => assert!(!on_b.is_empty(), "no frame of iso-b seen"),
        BrokerKind::Mosquitto => assert_eq!(on_b.len(), 0),
    }

    // Speaking for B with A's key, then garbage on A's own topic as a marker: when the
    // hub has counted the marker, it has seen (or never got) the forgery.
    let unauthenticated = hub.rejected("unauthenticated");
    let malformed = hub.rejected("malformed");
    let b_u = topic("iso-b", TopicKind::Up);
    let status =
        serde_json::from_value(serde_json::json!({"phase": "Failed"})).expect("a pod status");
    let forged = Up::PodStatus {
        v: SCHEMA_VERSION,
        seq: u64::MAX / 2,
        namespace: "default".into(),
        name: "iso-pb".into(),
        uid: pb_uid.clone(),
        status: Box::new(status),
    };
    let frame = encode(&key, &b_u, rand::random(), &forged).expect("sealing");
    client
        .publish(&b_u, QoS::AtLeastOnce, false, frame)
        .expect("publishing");
    client
        .publish(
            topic("iso-a", TopicKind::Up),
            QoS::AtLeastOnce,
            false,
            vec![1u8; 10],
        )
        .expect("publishing");
    let deadline = Instant::now() + WAIT;
    while hub.rejected("malformed") == malformed {
        assert!(
            Instant::now() < deadline,
            "the marker never reached the hub"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hub.rejected("malformed"), malformed + 1);
    let expected = match kind {
        BrokerKind::Embedded => unauthenticated + 1,
        BrokerKind::Mosquitto => unauthenticated,
    };
    assert_eq!(hub.rejected("unauthenticated"), expected);

    let pod = hub.get_json(pb_path);
    assert_eq!(pod["metadata"]["uid"], pb_uid.as_str());
    assert_eq!(pod["status"]["phase"], "Running");
    let node = hub.get_json("/api/v1/nodes/iso-b");
    assert_eq!(node_ready(&node).map(|(s, _)| s).as_deref(), Some("True"));
    assert_eq!(b.runtime_pods().len(), 2);
    let _ = client.disconnect();
}

#[test]
fn isolation_with_embedded_broker() {
    isolation(BrokerKind::Embedded);
}

#[test]
fn isolation_with_mosquitto() {
    isolation(BrokerKind::Mosquitto);
}
