//! `skiff logs` end to end: the real hub (embedded broker), a real `skiff-agent` with the
//! simulated runtime (whose containers write `started <name>` to a real log file at each
//! start), and the `skiff` binary. The log travels from the device's file through the
//! agent's outbound MQTT connection and the hub's REST endpoint to the CLI.
//!
//! Covered: whole log, `--tail`, `--limit-bytes`, a log larger than the credit window
//! (byte for byte), `-f` seeing lines appended while it runs and its session closing on
//! the node when the client goes away, `--previous` after a restart, the errors
//! (unknown container, missing pod, no previous instance, exec on a runtime that
//! cannot, node offline), and node isolation: node A, holding a session id of node B's
//! stream, cannot inject output into it.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use skiff_api::protocol::stream::Fd;
use skiff_api::protocol::{Down, NodeKey, SCHEMA_VERSION, TopicKind, Up, decode, encode, topic};
use skiff_tests::{Background, BrokerKind, Fleet};

const WAIT: Duration = Duration::from_secs(30);

fn log_file(fleet: &Fleet, node: &str, uid: &str) -> PathBuf {
    fleet
        .state_dir(node)
        .join("simulated/logs")
        .join(uid)
        .join("app.log")
}

fn append(path: &PathBuf, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
        .write_all(text.as_bytes())
        .expect("appending to the log");
}

fn uid_of(pod: &serde_json::Value) -> String {
    pod["metadata"]["uid"].as_str().expect("a uid").to_string()
}

/// Runs `skiff ARGS`, expecting failure; returns stderr.
fn skiff_fails(fleet: &Fleet, args: &[&str]) -> String {
    let out = fleet.hub.skiff(args);
    assert!(
        !out.status.success(),
        "skiff {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn logs_travel_from_the_device_through_the_hub() {
    let fleet = Fleet::start(BrokerKind::Embedded, &["--node-grace", "3s"], false);
    let hub = &fleet.hub;
    let mut agent = fleet.joined_agent("logs-a", &["--heartbeat-interval", "1s"]);
    let pod = hub.create_pod("web", "logs-a", "busybox");
    let uid = uid_of(&pod);
    hub.wait_for("/api/v1/namespaces/default/pods/web", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });
    let file = log_file(&fleet, "logs-a", &uid);

    assert_eq!(hub.skiff_ok(&["logs", "web"]), "started app\n");
    append(&file, "line 1\nline 2\nline 3\nline 4\nline 5\n");
    assert_eq!(
        hub.skiff_ok(&["logs", "web", "--tail", "2"]),
        "line 4\nline 5\n"
    );
    assert_eq!(
        hub.skiff_ok(&["logs", "pod/web", "-c", "app", "--limit-bytes", "5"]),
        "start"
    );

    // Far more than one credit window (8 × 32 KiB): every byte arrives, in order.
    let mut big = String::new();
    for i in 0..6000 {
        big.push_str(&format!("bulk {i:05} {}\n", "x".repeat(90)));
    }
    append(&file, &big);
    let started = Instant::now();
    let whole = hub.skiff_ok(&["logs", "web"]);
    let took = started.elapsed();
    assert_eq!(
        whole,
        std::fs::read_to_string(&file).expect("reading the log")
    );
    eprintln!(
        "{} bytes of log through MQTT and the hub in {took:?}",
        whole.len()
    );

    // -f prints what is appended while it runs.
    let mut cmd = hub.skiff_command();
    cmd.args(["logs", "-f", "--tail", "1", "web"]);
    let mut follow = Background::spawn(cmd);
    follow.wait_line(WAIT, |l| l.starts_with("bulk 05999"));
    append(&file, "appended while following\n");
    follow.wait_line(WAIT, |l| l == "appended while following");
    drop(follow);
    // The client went away: the hub closes the session and the agent ends it.
    let deadline = Instant::now() + WAIT;
    while agent.log().matches("stream ended").count() < 5 {
        assert!(
            Instant::now() < deadline,
            "the followed stream did not end on the agent:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Errors, worded as kubectl's.
    let e = skiff_fails(&fleet, &["logs", "web", "-c", "nope"]);
    assert!(
        e.contains("container nope is not valid for pod web, choose one of: [app]"),
        "{e}"
    );
    let e = skiff_fails(&fleet, &["logs", "ghost"]);
    assert!(e.contains("pods \"ghost\" not found"), "{e}");
    let e = skiff_fails(&fleet, &["logs", "web", "--previous"]);
    assert!(
        e.contains("previous terminated container \"app\" in pod \"web\" not found"),
        "{e}"
    );
    let e = skiff_fails(&fleet, &["exec", "web", "--", "ls", "/"]);
    assert!(
        e.contains("this runtime cannot run commands in simulated containers"),
        "{e}"
    );

    // A container that exits and is restarted: --previous shows the last instance.
    let crash = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crash", "namespace": "default",
                     "annotations": {"skiff.io/simulate-exit-code": "1"}},
        "spec": {"nodeName": "logs-a", "restartPolicy": "Always",
                 "containers": [{"name": "app", "image": "busybox"}]},
    });
    let (code, created) = hub.request(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&crash),
        true,
    );
    assert_eq!(code, 201, "{created}");
    let crash_file = log_file(&fleet, "logs-a", &uid_of(&created));
    let deadline = Instant::now() + WAIT;
    while !crash_file.exists() {
        assert!(
            Instant::now() < deadline,
            "no log file for the crashing pod"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let restarts = |pods: &[skiff_tests::RuntimePod]| {
        pods.iter()
            .find(|p| p.name == "crash")
            .and_then(|p| p.containers.first())
            .map_or(0, |c| c.restart_count)
    };
    // After the first restart the back-off is 10 s: time to write into this instance.
    let n = restarts(&agent.wait_runtime(WAIT, "a restart of crash", |pods| restarts(pods) >= 1));
    append(&crash_file, "this instance\n");
    agent.wait_runtime(WAIT, "another restart of crash", |pods| restarts(pods) > n);
    assert_eq!(
        hub.skiff_ok(&["logs", "crash", "--previous"]),
        "started app\nthis instance\n"
    );
    assert_eq!(hub.skiff_ok(&["logs", "crash"]), "started app\n");
    // Following an exited instance prints its log and ends.
    assert_eq!(hub.skiff_ok(&["logs", "-f", "crash"]), "started app\n");

    // The node goes away: a clear answer instead of a hanging request.
    agent.kill();
    fleet.wait_ready("logs-a", "Unknown", WAIT);
    let e = skiff_fails(&fleet, &["logs", "web"]);
    assert!(
        e.contains("node logs-a is not connected (Ready is Unknown)"),
        "{e}"
    );
}

#[test]
fn another_node_cannot_inject_into_a_stream() {
    let fleet = Fleet::start(BrokerKind::Embedded, &[], false);
    let hub = &fleet.hub;
    let mut a = fleet.joined_agent("inj-a", &[]);
    let b = fleet.joined_agent("inj-b", &[]);
    let pb = hub.create_pod("pb", "inj-b", "busybox");
    hub.wait_for("/api/v1/namespaces/default/pods/pb", WAIT, |p| {
        p["status"]["phase"] == "Running"
    });
    let b_file = log_file(&fleet, "inj-b", &uid_of(&pb));

    // Node A's identity in a raw MQTT client (A's agent stopped so its id is free).
    let creds = a.credentials();
    a.stop();
    let a_key = NodeKey::from_hex(creds["key"].as_str().expect("a key")).expect("a valid key");
    // The test also holds B's key, only to learn the session id a leak would reveal.
    let b_key =
        NodeKey::from_hex(b.credentials()["key"].as_str().expect("a key")).expect("a valid key");
    let port: u16 = creds["broker"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a broker port");
    let mut opts = MqttOptions::new("inj-a", "127.0.0.1", port);
    opts.set_credentials("inj-a", creds["password"].as_str().expect("a password"));
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut connection) = Client::new(opts, 16);
    let (tx, frames) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p.payload.to_vec()).is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Vec::new());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let b_down = topic("inj-b", TopicKind::Down);
    client
        .subscribe(&b_down, QoS::AtLeastOnce)
        .expect("subscribing");
    assert_eq!(
        frames.recv_timeout(WAIT).expect("a suback"),
        Vec::<u8>::new()
    );

    let mut cmd = hub.skiff_command();
    cmd.args(["logs", "-f", "pb"]);
    let mut follow = Background::spawn(cmd);
    follow.wait_line(WAIT, |l| l == "started app");
    let deadline = Instant::now() + WAIT;
    let session = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = frames
            .recv_timeout(left)
            .expect("B's streamOpen on its topic");
        if let Ok(Down::StreamOpen { session, .. }) = decode::<Down>(&b_key, &b_down, &frame) {
            break session;
        }
    };
    let inject = |seq: u64, t: &str, key: &NodeKey| {
        let msg = Up::StreamData {
            v: SCHEMA_VERSION,
            seq,
            session,
            chunk: 1,
            fd: Fd::Stdout,
            data: b"INJECTED\n".to_vec(),
        };
        let frame = encode(key, t, rand::random(), &msg).expect("encoding");
        client
            .publish(t, QoS::AtLeastOnce, false, frame)
            .expect("publishing");
    };
    // On A's own topic with A's key: opens, but the session is B's.
    inject(u64::MAX / 2, &topic("inj-a", TopicKind::Up), &a_key);
    // On B's topic with A's key: does not even open.
    inject(u64::MAX / 2 + 1, &topic("inj-b", TopicKind::Up), &a_key);
    let deadline = Instant::now() + WAIT;
    while !hub
        .log()
        .contains("stream output for another node's session; rejected")
        || hub.rejected("unauthenticated") == 0
    {
        assert!(
            Instant::now() < deadline,
            "the hub did not reject the injections:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    append(&b_file, "genuine line\n");
    follow.wait_line(WAIT, |l| l == "genuine line");
    assert!(
        !follow.seen().iter().any(|l| l.contains("INJECTED")),
        "injected output reached the client: {:?}",
        follow.seen()
    );
}
