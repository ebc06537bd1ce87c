use super::*;
use crate::resources::{Pod, PodStatus};

fn key(b: u8) -> NodeKey {
    NodeKey::from_bytes([b; 32])
}

#[test]
fn topics_round_trip_and_reject_others() {
    let t = topic("edge-7", TopicKind::Up);
    assert_eq!(t, "skiff/v1/n/edge-7/u");
    assert_eq!(
        parse_topic(&t),
        Some(NodeTopic {
            node: "edge-7".into(),
            kind: TopicKind::Up
        })
    );
    assert_eq!(
        parse_topic(&topic("a.b", TopicKind::Heartbeat)).map(|t| t.kind),
        Some(TopicKind::Heartbeat)
    );
    for bad in [
        "skiff/v1/n//u",
        "skiff/v1/n/a/b/u",
        "skiff/v1/n/a/x",
        "skiff/v2/n/a/u",
        "other",
        "skiff/v1/n/+/u",
    ] {
        assert_eq!(parse_topic(bad), None, "{bad}");
    }
    assert_eq!(TopicKind::Up.all_nodes_filter(), "skiff/v1/n/+/u");
}

#[test]
fn messages_round_trip_through_the_sealed_frame() {
    let t = topic("n1", TopicKind::Down);
    let mut pod = Pod::default();
    pod.metadata.name = "web".into();
    let msgs = [
        Down::PodUpsert {
            v: SCHEMA_VERSION,
            revision: 7,
            pod: Box::new(pod),
        },
        Down::PodDelete {
            v: SCHEMA_VERSION,
            revision: 8,
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
        },
        Down::SyncDone {
            v: SCHEMA_VERSION,
            revision: 9,
            pods: 0,
        },
    ];
    for (i, m) in msgs.iter().enumerate() {
        let frame = encode(&key(1), &t, [i as u8; 24], m).unwrap();
        let back: Down = decode(&key(1), &t, &frame).unwrap();
        assert_eq!(&back, m);
    }
}

#[test]
fn wrong_key_topic_or_tampering_is_unauthenticated() {
    let t = topic("n1", TopicKind::Up);
    let msg = Up::PodStatus {
        v: SCHEMA_VERSION,
        seq: 1,
        namespace: "default".into(),
        name: "web".into(),
        uid: "u".into(),
        status: Box::new(PodStatus::default()),
    };
    let frame = encode(&key(1), &t, [3; 24], &msg).unwrap();
    assert_eq!(
        decode::<Up>(&key(2), &t, &frame),
        Err(ProtocolError::Unauthenticated)
    );
    assert_eq!(
        decode::<Up>(&key(1), &topic("n2", TopicKind::Up), &frame),
        Err(ProtocolError::Unauthenticated)
    );
    let mut bad = frame.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        decode::<Up>(&key(1), &t, &bad),
        Err(ProtocolError::Unauthenticated)
    );
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let t = topic("n1", TopicKind::Up);
    assert_eq!(
        decode::<Up>(&key(1), &t, &[]),
        Err(ProtocolError::BadFrame("empty"))
    );
    assert_eq!(
        decode::<Up>(&key(1), &t, &[9, 1, 2]),
        Err(ProtocolError::UnknownFrameVersion(9))
    );
    assert_eq!(
        decode::<Up>(&key(1), &t, &[1, 1, 2]),
        Err(ProtocolError::BadFrame("shorter than nonce and tag"))
    );
    let huge = vec![1u8; MAX_PAYLOAD + 1];
    assert!(matches!(
        decode::<Up>(&key(1), &t, &huge),
        Err(ProtocolError::TooLarge { .. })
    ));
    // Sealed garbage and sealed JSON of the wrong shape.
    let frame = seal(&key(1), &t, [0; 24], b"not json");
    assert!(matches!(
        decode::<Up>(&key(1), &t, &frame),
        Err(ProtocolError::Decode { .. })
    ));
    let frame = seal(&key(1), &t, [0; 24], br#"{"t":"sync","v":1}"#);
    assert!(matches!(
        decode::<Up>(&key(1), &t, &frame),
        Err(ProtocolError::Decode { .. })
    ));
}

#[test]
fn unknown_schema_versions_are_rejected() {
    let t = topic("n1", TopicKind::Heartbeat);
    let frame = encode(
        &key(1),
        &t,
        [0; 24],
        &Heartbeat {
            v: 2,
            s: 1,
            gone: false,
        },
    )
    .unwrap();
    assert_eq!(
        decode::<Heartbeat>(&key(1), &t, &frame),
        Err(ProtocolError::UnknownVersion(2))
    );
}

#[test]
fn a_heartbeat_is_tiny_on_the_wire() {
    let node = "edge-00001";
    let t = topic(node, TopicKind::Heartbeat);
    let frame = encode(
        &key(1),
        &t,
        [0; 24],
        &Heartbeat {
            v: SCHEMA_VERSION,
            s: 1_763_700_000_000,
            gone: false,
        },
    )
    .unwrap();
    // MQTT PUBLISH at QoS 0: fixed header (2), topic length (2), topic, payload.
    let wire = 2 + 2 + t.len() + frame.len();
    assert!(wire <= 100, "heartbeat is {wire} bytes on the wire");
}

#[test]
fn keys_round_trip_through_hex_and_never_print() {
    let k = key(0xab);
    assert_eq!(NodeKey::from_hex(&k.to_hex()), Ok(k.clone()));
    assert_eq!(NodeKey::from_hex("zz"), Err(ProtocolError::BadKey));
    assert_eq!(format!("{k:?}"), "NodeKey(..)");
}
