//! End to end with Debian's Mosquitto and its dynamic security plugin as the external
//! broker: the hub creates a client and a role per node there, nodes only reach their
//! own topics, and the hub resubscribes after the broker restarts.

mod dispatch_support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dispatch_support::{FakeAgent, Hub, free_port, ready_status};
use rumqttc::QoS;
use skiff_api::protocol::{Down, MAX_PACKET, SCHEMA_VERSION, TopicKind, Up, topic};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
const DYNSEC: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
const WAIT: Duration = Duration::from_secs(10);

struct Mosquitto {
    child: Child,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(dir: &Path, port: u16) -> Mosquitto {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n\
             user {user}\n\
             max_packet_size {MAX_PACKET}\npersistence false\n\
             plugin {DYNSEC}\nplugin_opt_config_file {}\n",
            dir.join("dynsec.json").display(),
            // As root Mosquitto would switch to the `mosquitto` user, which cannot
            // write the dynsec file in this private temp dir; otherwise ignored.
            user = std::env::var("USER").unwrap_or_else(|_| "root".into()),
        ),
    )
    .unwrap();
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {MOSQUITTO} (apt-get install mosquitto): {e}"));
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto { child }
}

#[test]
fn mosquitto_with_dynamic_security_isolates_nodes_and_survives_a_restart() {
    for bin in [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: apt-get install mosquitto mosquitto-clients"
        );
    }
    let broker_dir = tempfile::tempdir().unwrap();
    let init = Command::new(MOSQUITTO_CTRL)
        .args(["dynsec", "init"])
        .arg(broker_dir.path().join("dynsec.json"))
        .args(["hub-admin", "admin-secret"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = free_port();
    let mut mosquitto = start_mosquitto(broker_dir.path(), port);

    let hub_dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{port}");
    let hub = Hub::start(
        hub_dir.path(),
        &[
            "--broker".into(),
            url.clone(),
            "--broker-username".into(),
            "hub-admin".into(),
            "--broker-password".into(),
            "admin-secret".into(),
        ],
    );
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
    drop(mosquitto);
    mosquitto = start_mosquitto(broker_dir.path(), port);
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
