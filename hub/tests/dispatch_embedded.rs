//! End to end with the embedded broker: the real `skiff-hub serve` process, joins over
//! HTTP, and fake agents on real MQTT connections.

mod dispatch_support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use dispatch_support::{FakeAgent, Hub, Joined, ready_status};
use rumqttc::QoS;
use serde_json::json;
use skiff_api::protocol::{
    Down, MAX_PAYLOAD, NodeKey, PodRef, SCHEMA_VERSION, TopicKind, Up, encode, seal, topic,
};

const WAIT: Duration = Duration::from_secs(10);

fn uid(pod: &serde_json::Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_string()
}

fn rev(pod: &serde_json::Value) -> u64 {
    pod["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn join_tokens_are_spent_expire_and_rotate_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);

    // Creating tokens needs the admin token.
    let (code, _) = hub.send("POST", "/skiff/v1/tokens", &json!({"uses": 1}), false);
    assert_eq!(code, 401);

    // `skiff-hub token create` asks the running hub.
    let out = Command::new(env!("CARGO_BIN_EXE_skiff-hub"))
        .args([
            "token", "create", "--ttl", "1h", "--uses", "2", "--server", &hub.base,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 23, "{token:?}");

    let join = |token: &str, node: &str| {
        hub.send(
            "POST",
            "/skiff/v1/join",
            &json!({"token": token, "nodeName": node}),
            false,
        )
    };
    let (code, body) = join(&token, "edge-1");
    assert_eq!(code, 200, "{body}");
    let first = Joined::from_json(&body);
    assert_eq!(first.broker, format!("mqtt://127.0.0.1:{}", hub.mqtt_port));
    // Joining again with a valid token rotates the node's credentials.
    let (code, body) = join(&token, "edge-1");
    assert_eq!(code, 200, "{body}");
    let second = Joined::from_json(&body);
    assert_ne!(first.password, second.password);
    assert_ne!(first.key, second.key);
    let old = FakeAgent::connect_as(
        hub.mqtt_port,
        "edge-1",
        "edge-1",
        &first.password,
        &first.key,
        1,
    );
    assert!(old.is_err(), "the rotated password still logs in");
    FakeAgent::connect(&second, hub.mqtt_port).disconnect();

    let (code, body) = join(&token, "edge-2");
    assert_eq!(
        (code, body["message"].as_str()),
        (403, Some("join token already used")),
        "{body}"
    );
    assert_eq!(body["kind"], "Status");

    let (code, body) = join("abcdef.0123456789abcdef", "edge-2");
    assert_eq!(code, 401, "{body}");
    let (code, _) = join("not a token", "edge-2");
    assert_eq!(code, 401);
    let (code, body) = join(&hub.token(60, 1), "Not_A_Name");
    assert_eq!(code, 422, "{body}");

    let short = hub.token(1, 1);
    std::thread::sleep(Duration::from_millis(2100));
    let (code, body) = join(&short, "edge-2");
    assert_eq!(
        (code, body["message"].as_str()),
        (403, Some("join token expired")),
        "{body}"
    );

    // Credentials survive a restart of the hub (a new process on the same data dir).
    let data = dir.path().to_path_buf();
    drop(hub);
    let hub = Hub::start(&data, &[]);
    FakeAgent::connect(&second, hub.mqtt_port).disconnect();
    let meta = std::fs::metadata(data.join("credentials.db")).unwrap();
    assert!(meta.len() > 0);
}

#[test]
fn node_registers_receives_pods_reports_status_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let j = hub.join("edge-a");
    let mut agent = FakeAgent::connect(&j, hub.mqtt_port);
    agent.subscribe("edge-a");

    agent.node_status(&[("skiff.dev/site", "north")]);
    let node = hub.wait_for("/api/v1/nodes/edge-a", WAIT, |n| {
        ready_status(n).is_some_and(|(s, _)| s == "True")
    });
    assert_eq!(node["metadata"]["labels"]["skiff.dev/site"], "north");
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "edge-a"
    );
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(node["status"]["addresses"][0]["address"], "10.0.0.7");

    // A pod bound to the node arrives as an upsert, without status.
    let web = hub.create_pod("web", "edge-a");
    match agent.recv(WAIT) {
        Down::PodUpsert { revision, pod, .. } => {
            assert_eq!(revision, rev(&web));
            assert_eq!(pod.metadata.name, "web");
            assert_eq!(pod.metadata.uid.as_ref().unwrap().0, uid(&web));
            assert!(pod.status.is_none());
        }
        other => panic!("expected an upsert, got {other:?}"),
    }
    // A pod bound elsewhere is not sent here.
    hub.create_pod("elsewhere", "edge-other");

    // Status flows up into the store; a status-only change sends nothing down.
    agent.pod_status("web", &uid(&web), "Running");
    hub.wait_for("/api/v1/namespaces/default/pods/web", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });
    agent.expect_nothing(Duration::from_millis(500));

    // A label change is desired state: one upsert for that pod only.
    let (code, body) = hub.send(
        "PATCH",
        "/api/v1/namespaces/default/pods/web",
        &json!({"metadata": {"labels": {"tier": "front"}}}),
        true,
    );
    assert_eq!(code, 200, "{body}");
    match agent.recv(WAIT) {
        Down::PodUpsert { revision, pod, .. } => {
            assert_eq!(revision, rev(&body));
            assert_eq!(pod.metadata.labels["tier"], "front");
        }
        other => panic!("expected an upsert, got {other:?}"),
    }
    agent.expect_nothing(Duration::from_millis(300));

    // Changes while the agent is away.
    let keep = hub.create_pod("keep", "edge-a");
    let edit = hub.create_pod("edit", "edge-a");
    let gone = hub.create_pod("gone", "edge-a");
    for _ in 0..3 {
        assert!(matches!(agent.recv(WAIT), Down::PodUpsert { .. }));
    }
    let held = |p: &serde_json::Value| PodRef {
        namespace: "default".into(),
        name: p["metadata"]["name"].as_str().unwrap().into(),
        uid: uid(p),
        revision: rev(p),
    };
    let web_now = hub.get("/api/v1/namespaces/default/pods/web").1;
    let agent_holds = vec![held(&web_now), held(&keep), held(&edit), held(&gone)];
    agent.disconnect();

    assert_eq!(hub.delete("/api/v1/namespaces/default/pods/gone").0, 200);
    assert_eq!(hub.delete("/api/v1/namespaces/default/pods/web").0, 200);
    let web2 = hub.create_pod("web", "edge-a");
    let (code, edited) = hub.send(
        "PATCH",
        "/api/v1/namespaces/default/pods/edit",
        &json!({"spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}),
        true,
    );
    assert_eq!(code, 200, "{edited}");

    let mut agent = FakeAgent::connect(&j, hub.mqtt_port);
    agent.seq = 100;
    agent.subscribe("edge-a");
    agent.sync(1, agent_holds);
    let answer = agent.recv_until_sync_done(WAIT);
    let mut got = BTreeSet::new();
    for m in &answer {
        match m {
            Down::PodUpsert { pod, revision, .. } => {
                got.insert((
                    "upsert",
                    pod.metadata.name.clone(),
                    pod.metadata.uid.clone().unwrap().0,
                ));
                assert_eq!(
                    *revision,
                    if pod.metadata.name == "web" {
                        rev(&web2)
                    } else {
                        rev(&edited)
                    }
                );
            }
            Down::PodDelete { name, uid, .. } => {
                got.insert(("delete", name.clone(), uid.clone()));
            }
            Down::SyncDone { pods, .. } => assert_eq!(*pods, 3),
            other => panic!("unexpected answer to a sync: {other:?}"),
        }
    }
    let want: BTreeSet<_> = [
        ("upsert", "web".to_string(), uid(&web2)),
        ("upsert", "edit".to_string(), uid(&edit)),
        ("delete", "web".to_string(), uid(&web_now)),
        ("delete", "gone".to_string(), uid(&gone)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{answer:?}");

    // A node in sync gets only SyncDone.
    let in_sync = vec![held(&web2), held(&keep), held(&edited)];
    agent.sync(2, in_sync);
    assert!(matches!(
        agent.recv_until_sync_done(WAIT)[..],
        [Down::SyncDone { pods: 3, .. }]
    ));
}

#[test]
fn leases_expire_recover_and_the_last_will_marks_unknown_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let j = hub.join("edge-l");
    let mut agent = FakeAgent::connect(&j, hub.mqtt_port);
    agent.node_status(&[]);
    hub.wait_for("/api/v1/nodes/edge-l", WAIT, |n| {
        ready_status(n).is_some_and(|(s, _)| s == "True")
    });
    hub.create_pod("stays", "edge-l");

    // Heartbeats keep it Ready past the 2 s grace period.
    for _ in 0..6 {
        agent.heartbeat();
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, node) = hub.get("/api/v1/nodes/edge-l");
    assert_eq!(ready_status(&node).unwrap().0, "True");
    let heartbeat_time = node["status"]["conditions"][0]["lastHeartbeatTime"].clone();

    // Silence: Unknown after the grace period, pods untouched.
    let node = hub.wait_for("/api/v1/nodes/edge-l", WAIT, |n| {
        ready_status(n).is_some_and(|(s, _)| s == "Unknown")
    });
    let cond = &node["status"]["conditions"][0];
    assert_eq!(cond["reason"], "NodeStatusUnknown");
    assert_eq!(cond["message"], "Kubelet stopped posting node status.");
    assert_eq!(cond["lastHeartbeatTime"], heartbeat_time);
    assert_eq!(hub.get("/api/v1/namespaces/default/pods/stays").0, 200);

    // Heartbeats return: Ready again.
    agent.heartbeat();
    hub.wait_for("/api/v1/nodes/edge-l", WAIT, |n| {
        ready_status(n).is_some_and(|(s, _)| s == "True")
    });

    // The connection drops without DISCONNECT: the broker publishes the last will and
    // the node is Unknown well before the grace period would end.
    agent.heartbeat();
    std::thread::sleep(Duration::from_millis(200));
    agent.cut();
    hub.wait_for("/api/v1/nodes/edge-l", Duration::from_millis(1500), |n| {
        ready_status(n).is_some_and(|(s, _)| s == "Unknown")
    });
    assert_eq!(hub.get("/api/v1/namespaces/default/pods/stays").0, 200);
}

#[test]
fn spoofed_garbage_and_replayed_messages_are_counted_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let a = hub.join("node-a");
    let b = hub.join("node-b");
    let mut agent_a = FakeAgent::connect(&a, hub.mqtt_port);

    // Wrong password, or a client id that is not the user name: refused.
    assert!(FakeAgent::connect_as(hub.mqtt_port, "node-a", "node-a", "wrong", &a.key, 1).is_err());
    assert!(
        FakeAgent::connect_as(hub.mqtt_port, "other-id", "node-a", &a.password, &a.key, 1).is_err()
    );
    assert!(
        FakeAgent::connect_as(hub.mqtt_port, "nobody", "nobody", &a.password, &a.key, 1).is_err()
    );

    // Node a speaks for node b, sealing with its own key: unauthenticated.
    let seq = agent_a.next_seq();
    agent_a.send_up_as(
        "node-b",
        &Up::Sync {
            v: SCHEMA_VERSION,
            seq,
            revision: 0,
            pods: vec![],
        },
    );
    let tb = topic("node-b", TopicKind::Up);
    // Garbage on b's topic: a broken frame, then a frame of unknown version.
    agent_a.publish_raw(&tb, QoS::AtLeastOnce, vec![1, 2, 3]);
    agent_a.publish_raw(&tb, QoS::AtLeastOnce, b"{\"not\":\"sealed\"}".to_vec());
    // Oversized, but within what the broker lets through.
    let ta = topic("node-a", TopicKind::Up);
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, vec![1u8; MAX_PAYLOAD + 10]);
    // Properly sealed with a's key but a schema version from the future.
    let future = br#"{"t":"sync","v":7,"seq":50,"revision":0,"pods":[]}"#;
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, seal(&a.key, &ta, [7; 24], future));
    // Sealed JSON that is no message.
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, seal(&a.key, &ta, [8; 24], b"[1,2]"));
    // A replay of an accepted message.
    let hello = encode(
        &a.key,
        &ta,
        [9; 24],
        &Up::Sync {
            v: SCHEMA_VERSION,
            seq: 60,
            revision: 0,
            pods: vec![],
        },
    )
    .unwrap();
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, hello.clone());
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, hello);
    // Status for a pod bound to b, sent by a with a's key on a's topic.
    let bpod = hub.create_pod("bees", "node-b");
    agent_a.seq = 70;
    agent_a.pod_status("bees", &uid(&bpod), "Failed");
    // A stranger's key on a's topic.
    let stranger = NodeKey::from_bytes([42; 32]);
    let forged = encode(
        &stranger,
        &ta,
        [10; 24],
        &Up::Sync {
            v: SCHEMA_VERSION,
            seq: 80,
            revision: 0,
            pods: vec![],
        },
    )
    .unwrap();
    agent_a.publish_raw(&ta, QoS::AtLeastOnce, forged);

    let deadline = std::time::Instant::now() + WAIT;
    let want = [
        ("unauthenticated", 2),
        ("malformed", 2),
        ("unknown_version", 2),
        ("too_large", 1),
        ("replay", 1),
        ("not_bound", 1),
    ];
    loop {
        let got: Vec<(&str, u64)> = want.iter().map(|(r, _)| (*r, hub.metric(r))).collect();
        if got == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // b's pod status was not touched, and nothing got b registered.
    let (_, pod) = hub.get("/api/v1/namespaces/default/pods/bees");
    assert!(pod["status"]["phase"] != "Failed", "{pod}");
    assert_eq!(hub.get("/api/v1/nodes/node-b").0, 404);

    // The loop is alive: a's next proper message is processed, and b's own one too.
    agent_a.seq = 200;
    agent_a.node_status(&[]);
    hub.wait_for("/api/v1/nodes/node-a", WAIT, |n| {
        n["metadata"]["name"] == "node-a"
    });
    let mut agent_b = FakeAgent::connect(&b, hub.mqtt_port);
    agent_b.node_status(&[]);
    hub.wait_for("/api/v1/nodes/node-b", WAIT, |n| {
        n["metadata"]["name"] == "node-b"
    });

    // rumqttd has no topic ACLs: a may subscribe to b's topic, but what arrives there is
    // sealed with b's key and does not open with a's.
    agent_a.subscribe("node-b");
    hub.create_pod("secret", "node-b");
    let (code, text) = {
        let (c, body) = hub.get("/skiff/v1/metrics");
        (c, body.as_str().unwrap_or_default().to_string())
    };
    assert_eq!(code, 200);
    assert!(
        text.contains("skiff_mqtt_rejected_total{reason=\"not_bound\"} 1"),
        "{text}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let seen = agent_a.try_unreadable(Duration::from_millis(200));
        if let Some(t) = seen {
            assert_eq!(t, topic("node-b", TopicKind::Down));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing arrived on node-b's topic"
        );
    }
}

#[test]
fn pod_events_are_recorded_on_the_pod_counted_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let a = hub.join("node-a");
    let b = hub.join("node-b");
    let mut agent = FakeAgent::connect(&a, hub.mqtt_port);
    agent.node_status(&[]);
    hub.wait_for("/api/v1/nodes/node-a", WAIT, |n| {
        n["metadata"]["name"] == "node-a"
    });
    let web = hub.create_pod("web", "node-a");
    let theirs = hub.create_pod("theirs", "node-b");
    // The link learns about the binding from its watch; a status that lands shows it has.
    agent.pod_status("web", &uid(&web), "Pending");
    hub.wait_for("/api/v1/namespaces/default/pods/web", WAIT, |p| {
        p["status"]["phase"] == "Pending"
    });

    let backoff = "Back-off restarting failed container app";
    agent.pod_event("web", &uid(&web), "Warning", "BackOff", backoff);
    agent.pod_event(
        "web",
        &uid(&web),
        "Normal",
        "Pulled",
        "image busybox pulled",
    );
    agent.pod_event("web", &uid(&web), "Warning", "BackOff", backoff);
    // Another node's pod, and a type the protocol does not know: rejected.
    agent.pod_event("theirs", &uid(&theirs), "Warning", "BackOff", backoff);
    agent.pod_event("web", &uid(&web), "Fatal", "BackOff", backoff);

    let events = |reason: &str| -> Vec<serde_json::Value> {
        let (code, list) = hub.get("/api/v1/namespaces/default/events");
        assert_eq!(code, 200, "{list}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["reason"] == reason && e["source"]["component"] == "skiff-agent")
            .cloned()
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let back = events("BackOff");
        if back.len() == 1 && back[0]["count"] == 2 && events("Pulled").len() == 1 {
            let e = &back[0];
            assert_eq!(e["involvedObject"]["kind"], "Pod");
            assert_eq!(e["involvedObject"]["name"], "web");
            assert_eq!(e["involvedObject"]["uid"], uid(&web));
            assert_eq!(e["source"]["host"], "node-a");
            assert_eq!(e["type"], "Warning");
            assert_eq!(e["message"], backoff);
            assert!(e["lastTimestamp"].is_string(), "{e}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events: {:?} {:?}",
            events("BackOff"),
            events("Pulled")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(hub.metric("not_bound"), 1);
    assert_eq!(hub.metric("malformed"), 1);

    // A flood from one node is cut at its budget, and status still gets through.
    for i in 0..300 {
        agent.pod_event("web", &uid(&web), "Warning", "Flood", &format!("event {i}"));
    }
    agent.pod_status("web", &uid(&web), "Running");
    hub.wait_for("/api/v1/namespaces/default/pods/web", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });
    let deadline = std::time::Instant::now() + WAIT;
    while hub.metric("event_flood") + (events("Flood").len() as u64) < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "flood not accounted for"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recorded = events("Flood").len();
    assert!(
        recorded < 100 && hub.metric("event_flood") >= 200,
        "{recorded} flood events recorded, {} dropped",
        hub.metric("event_flood")
    );
    drop(b);
}

#[test]
fn a_restarted_hub_does_not_resend_what_its_agents_hold() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path(), &[]);
    let port = hub.mqtt_port;
    let j = hub.join("edge-a");
    let mut agent = FakeAgent::connect(&j, port);
    agent.subscribe("edge-a");
    let web = hub.create_pod("web", "edge-a");
    let sent = match agent.recv(WAIT) {
        Down::PodUpsert { revision, .. } => revision,
        other => panic!("expected an upsert, got {other:?}"),
    };
    // Status moves the pod's resourceVersion past what the agent holds.
    agent.pod_status("web", &uid(&web), "Running");
    let running = hub.wait_for("/api/v1/namespaces/default/pods/web", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });
    assert!(rev(&running) > sent);
    agent.disconnect();
    hub.terminate();
    assert!(dir.path().join("dispatch-sent.json").exists());

    let hub = Hub::start_on(dir.path(), &[], port);
    let mut agent = FakeAgent::connect(&j, port);
    agent.seq = 1_000;
    agent.subscribe("edge-a");
    let held = vec![PodRef {
        namespace: "default".into(),
        name: "web".into(),
        uid: uid(&web),
        revision: sent,
    }];
    agent.sync(sent, held.clone());
    assert!(
        matches!(
            agent.recv_until_sync_done(WAIT)[..],
            [Down::SyncDone { pods: 1, .. }]
        ),
        "the restarted hub sent the pod again"
    );

    // Without the record (lost data), the pod is sent again: correct, only slower.
    agent.disconnect();
    hub.terminate();
    std::fs::remove_file(dir.path().join("dispatch-sent.json")).unwrap();
    let _hub = Hub::start_on(dir.path(), &[], port);
    let mut agent = FakeAgent::connect(&j, port);
    agent.seq = 2_000;
    agent.subscribe("edge-a");
    agent.sync(sent, held);
    // (Twice if the new hub's first listing reached the agent's subscription too.)
    let answer = agent.recv_until_sync_done(WAIT);
    let (done, upserts) = answer.split_last().unwrap();
    assert!(
        matches!(done, Down::SyncDone { pods: 1, .. })
            && !upserts.is_empty()
            && upserts
                .iter()
                .all(|m| matches!(m, Down::PodUpsert { pod, .. } if pod.metadata.name == "web")),
        "{answer:?}"
    );
}
