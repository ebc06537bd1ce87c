//! The real `skiff-agent` binary against a real broker (Debian's mosquitto, started
//! here) and a fake hub speaking the protocol: sync, pod start and status, garbage on
//! the down topic, broker loss, SIGKILL and an offline restart (pods adopted, not
//! restarted), resync, delete. Also joining against a tiny HTTP server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use skiff_api::Uid;
use skiff_api::protocol::{
    Down, Heartbeat, MAX_PACKET, MAX_PAYLOAD, NodeKey, SCHEMA_VERSION, TopicKind, Up, decode,
    encode, parse_topic, seal, topic,
};
use skiff_api::resources::{Container, Pod, PodPhase};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const NODE: &str = "edge-1";

fn key() -> NodeKey {
    NodeKey::from_bytes([7; 32])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(dir: &Path, port: u16) -> Proc {
    assert!(
        Path::new(MOSQUITTO).exists(),
        "{MOSQUITTO} is missing: install Debian's mosquitto package to run this test"
    );
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nautosave_interval 1\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(MOSQUITTO)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(child)
}

/// Stops a process with SIGTERM (mosquitto saves its sessions on the way out).
fn stop(mut p: Proc) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(p.0.id() as i32), Signal::SIGTERM).unwrap();
    p.0.wait().unwrap();
}

fn write_credentials(state: &Path, port: u16) {
    write_credentials_for(state, NODE, port);
}

fn write_credentials_for(state: &Path, node: &str, port: u16) {
    std::fs::create_dir_all(state).unwrap();
    let creds = serde_json::json!({
        "nodeName": node,
        "broker": format!("mqtt://127.0.0.1:{port}"),
        "username": node,
        "password": "secret",
        "key": key().to_hex(),
    });
    std::fs::write(state.join("credentials.json"), creds.to_string()).unwrap();
}

fn start_agent(state: &Path, log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff-agent"))
        .env("SKIFF_AGENT_RUNTIME", "simulated")
        .args(["--node-name", NODE, "--heartbeat-interval", "500ms"])
        .args(["--internal-ip", "192.0.2.10"])
        .arg("--state-dir")
        .arg(state)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skiff-agent");
    Proc(child)
}

/// What the fake hub hears from nodes.
#[derive(Debug)]
enum Heard {
    Up(Up),
    Heartbeat(Heartbeat),
}

/// A hub stand-in: subscribes to every node's up and heartbeat topics, opens frames
/// with the node's key and forwards them; publishes sealed desired state.
struct FakeHub {
    client: AsyncClient,
    heard: mpsc::UnboundedReceiver<Heard>,
    /// The agent's log, shown when an expectation times out.
    log: PathBuf,
    /// How many distinct nodes have been heard from.
    nodes: std::sync::Arc<std::sync::Mutex<usize>>,
}

impl FakeHub {
    fn start(port: u16, log: &Path) -> FakeHub {
        let mut opts = MqttOptions::new("fake-hub", "127.0.0.1", port);
        // A persistent session, as the real hub keeps: what nodes send while the hub
        // is reconnecting waits for it at the broker.
        opts.set_clean_session(false);
        opts.set_max_packet_size(MAX_PACKET * 2, MAX_PACKET * 2);
        let (client, mut el) = AsyncClient::new(opts, 64);
        let (tx, heard) = mpsc::unbounded_channel();
        let sub = client.clone();
        let nodes = std::sync::Arc::new(std::sync::Mutex::new(0usize));
        let nodes_seen = nodes.clone();
        let mut seen = std::collections::HashSet::new();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        sub.subscribe(TopicKind::Up.all_nodes_filter(), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                        sub.subscribe(TopicKind::Heartbeat.all_nodes_filter(), QoS::AtMostOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let t = parse_topic(&p.topic).expect("a skiff topic");
                        *nodes.lock().unwrap() += usize::from(seen.insert(t.node.clone()));
                        let heard = match t.kind {
                            TopicKind::Up => {
                                Heard::Up(decode(&key(), &p.topic, &p.payload).unwrap())
                            }
                            TopicKind::Heartbeat => {
                                Heard::Heartbeat(decode(&key(), &p.topic, &p.payload).unwrap())
                            }
                            TopicKind::Down => continue,
                        };
                        if tx.send(heard).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        FakeHub {
            client,
            heard,
            log: log.to_path_buf(),
            nodes: nodes_seen,
        }
    }

    async fn send(&self, msg: &Down) {
        let t = topic(NODE, TopicKind::Down);
        let frame = encode(&key(), &t, rand::random(), msg).unwrap();
        self.send_raw(frame).await;
    }

    async fn send_raw(&self, payload: Vec<u8>) {
        self.client
            .publish(
                topic(NODE, TopicKind::Down),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// Waits for the first message `want` accepts, skipping the others.
    async fn expect<T>(&mut self, what: &str, mut want: impl FnMut(&Heard) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let heard = tokio::time::timeout_at(deadline, self.heard.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; agent log:\n{}",
                        log_text(&self.log)
                    )
                })
                .expect("hub task alive");
            if let Some(t) = want(&heard) {
                return t;
            }
        }
    }
}

fn pod(uid: &str, name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(Uid(uid.into()));
    p.metadata.resource_version = Some("1".into());
    p.spec.node_name = Some(NODE.into());
    p.spec.containers = vec![Container {
        name: "main".into(),
        image: "nginx:1".into(),
        ..Container::default()
    }];
    p
}

fn upsert(uid: &str, name: &str, revision: u64) -> Down {
    Down::PodUpsert {
        v: SCHEMA_VERSION,
        revision,
        pod: Box::new(pod(uid, name)),
    }
}

fn status_of(uid: &str, phase: PodPhase) -> impl FnMut(&Heard) -> Option<i32> + '_ {
    move |h| match h {
        Heard::Up(Up::PodStatus { uid: u, status, .. })
            if u == uid && status.phase == Some(phase) =>
        {
            Some(
                status
                    .container_statuses
                    .first()
                    .map_or(-1, |c| c.restart_count),
            )
        }
        _ => None,
    }
}

/// The simulated runtime's records: (uid, restart count, container id, running).
fn runtime_records(state: &Path) -> Vec<(String, i64, String, bool)> {
    let dir = state.join("simulated");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let c = &v["observed"]["containers"][0];
        out.push((
            v["observed"]["uid"].as_str().unwrap().to_string(),
            c["restartCount"].as_i64().unwrap(),
            c["containerId"].as_str().unwrap().to_string(),
            c["state"]["state"] == "running",
        ));
    }
    out.sort();
    out
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_syncs_runs_survives_broker_loss_and_restart_and_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let port = free_port();
    write_credentials(&state, port);
    let broker = start_broker(dir.path(), port);
    let mut hub = FakeHub::start(port, &log);
    let mut agent = start_agent(&state, &log);

    // Connect: Sync (nothing held, never synced), then NodeStatus, then heartbeats.
    let (rev, pods) = hub
        .expect("sync", |h| match h {
            Heard::Up(Up::Sync { revision, pods, .. }) => Some((*revision, pods.len())),
            _ => None,
        })
        .await;
    assert_eq!((rev, pods), (0, 0));
    let labels = hub
        .expect("node status", |h| match h {
            Heard::Up(Up::NodeStatus { status, labels, .. }) => {
                assert!(status.capacity["cpu"].value() >= 1);
                assert_eq!(status.capacity["pods"].value(), 110);
                assert_eq!(status.addresses[0].address, "192.0.2.10");
                Some(labels.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    hub.expect("heartbeat", |h| {
        matches!(h, Heard::Heartbeat(b) if !b.gone).then_some(())
    })
    .await;

    // A pod arrives: the agent starts it and reports Running.
    hub.send(&upsert("u1", "web", 10)).await;
    assert_eq!(
        hub.expect("u1 running", status_of("u1", PodPhase::Running))
            .await,
        0
    );
    hub.send(&Down::SyncDone {
        v: SCHEMA_VERSION,
        revision: 10,
        pods: 1,
    })
    .await;

    // Garbage on the down topic: logged, counted, and the loop carries on.
    hub.send_raw(b"not a frame".to_vec()).await;
    let t = topic(NODE, TopicKind::Down);
    hub.send_raw(seal(&NodeKey::from_bytes([9; 32]), &t, [1; 24], b"{}"))
        .await;
    hub.send_raw(vec![1u8; MAX_PAYLOAD + 1]).await;
    hub.send_raw(seal(&key(), &t, [2; 24], br#"{"t":"podUpsert"}"#))
        .await;
    hub.send(&upsert("u2", "api", 11)).await;
    assert_eq!(
        hub.expect("u2 running", status_of("u2", PodPhase::Running))
            .await,
        0
    );
    let text = log_text(&log);
    assert!(text.contains("rejected_total=4"), "agent log:\n{text}");

    let before = runtime_records(&state);
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|r| r.3), "{before:?}");

    // The broker goes away: the pods keep running.
    stop(broker);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agent.0.try_wait().unwrap().is_none(), "agent exited");
    assert_eq!(runtime_records(&state), before);

    // SIGKILL and an offline restart: the same pods, adopted, not restarted.
    drop(agent);
    let agent = start_agent(&state, &log);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runtime_records(&state), before);

    // The broker is back: the agent resyncs.
    let _broker = start_broker(dir.path(), port);
    let (rev, mut pods) = hub
        .expect("resync", |h| match h {
            Heard::Up(Up::Sync { revision, pods, .. }) => Some((*revision, pods.clone())),
            _ => None,
        })
        .await;
    pods.sort_by(|a, b| a.uid.cmp(&b.uid));
    assert_eq!(rev, 10);
    assert_eq!(
        pods.iter()
            .map(|p| (p.uid.as_str(), p.name.as_str(), p.revision))
            .collect::<Vec<_>>(),
        vec![("u1", "web", 10), ("u2", "api", 11)]
    );
    // The hub answers with nothing changed; a repeated upsert restarts nothing.
    hub.send(&upsert("u1", "web", 10)).await;
    hub.send(&Down::SyncDone {
        v: SCHEMA_VERSION,
        revision: 11,
        pods: 2,
    })
    .await;

    // Delete: the agent stops the pod and reports how it ended.
    hub.send(&Down::PodDelete {
        v: SCHEMA_VERSION,
        revision: 12,
        namespace: "default".into(),
        name: "web".into(),
        uid: "u1".into(),
    })
    .await;
    hub.expect("u1 final status", status_of("u1", PodPhase::Succeeded))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = runtime_records(&state);
        if now.len() == 1 {
            assert_eq!(now[0], before[1], "u2 untouched");
            break;
        }
        assert!(Instant::now() < deadline, "u1 not removed: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);
}

/// Serves one HTTP request with `status` and `body`, handing back what was asked.
fn one_shot_http(status: &str, body: &str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (status, body) = (status.to_string(), body.to_string());
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut req = vec![0; len];
        reader.read_exact(&mut req).unwrap();
        write!(
            sock,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        format!("{head}{}", String::from_utf8(req).unwrap())
    });
    (port, handle)
}

fn run_join(state: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_skiff-agent"))
        .env("SKIFF_AGENT_RUNTIME", "simulated")
        .args(["--node-name", NODE, "--token", "tok-123"])
        .arg("--hub")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_refused_join_prints_the_hubs_message_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = one_shot_http(
        "403 Forbidden",
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"join token has been used up","reason":"Forbidden","code":403}"#,
    );
    let out = run_join(dir.path(), port).wait_with_output().unwrap();
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /skiff/v1/join "), "{request}");
    let body: serde_json::Value =
        serde_json::from_str(request.rsplit("\r\n\r\n").next().unwrap()).unwrap();
    assert_eq!(body["token"], "tok-123");
    assert_eq!(body["nodeName"], NODE);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("join token has been used up"), "{stderr}");
    assert!(!dir.path().join("credentials.json").exists());
}

#[test]
fn a_join_saves_private_credentials_reused_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let broker_port = free_port();
    let answer = serde_json::json!({
        "nodeName": NODE,
        "broker": format!("mqtt://127.0.0.1:{broker_port}"),
        "username": NODE,
        "password": "pw-1",
        "key": key().to_hex(),
    });
    let (port, server) = one_shot_http("200 OK", &answer.to_string());
    let mut agent = Proc(run_join(dir.path(), port));
    server.join().unwrap();
    let creds = dir.path().join("credentials.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !creds.exists() {
        assert!(Instant::now() < deadline, "no credentials written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    // What the hub answered, plus the hub it was joined through (its image registry).
    let mut expected = answer.clone();
    expected["hub"] = serde_json::json!(format!("http://127.0.0.1:{port}"));
    assert_eq!(saved, expected);
    // Joined: it keeps running (trying the broker), and a restart needs no token or hub.
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.0.try_wait().unwrap().is_none());
    drop(agent);
    let mut again = Proc(
        Command::new(env!("CARGO_BIN_EXE_skiff-agent"))
            .env("SKIFF_AGENT_RUNTIME", "simulated")
            .args(["--node-name", NODE])
            .arg("--state-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        again.0.try_wait().unwrap().is_none(),
        "agent without token exited"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let out = Command::new("ps")
        .args(["-o", "rss=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Idle memory of one agent with no pods and with 50 simulated pods, printed for the
/// record and held to a budget an edge device can spare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_memory_with_0_and_50_pods() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let port = free_port();
    write_credentials(&state, port);
    let _broker = start_broker(dir.path(), port);
    let mut hub = FakeHub::start(port, &log);
    let agent = start_agent(&state, &log);
    hub.expect("sync", |h| {
        matches!(h, Heard::Up(Up::Sync { .. })).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(agent.0.id());
    for i in 0..50 {
        hub.send(&upsert(&format!("u{i:02}"), &format!("web-{i}"), 100 + i))
            .await;
    }
    // Pods start in parallel, so their statuses arrive in any order.
    let mut running = std::collections::BTreeSet::new();
    hub.expect("all 50 pods running", |h| {
        if let Heard::Up(Up::PodStatus { uid, status, .. }) = h
            && status.phase == Some(PodPhase::Running)
        {
            running.insert(uid.clone());
        }
        (running.len() == 50).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let busy = rss_kib(agent.0.id());
    println!("skiff-agent idle RSS: {idle} KiB with 0 pods, {busy} KiB with 50 pods");
    assert!(idle < 32 * 1024, "idle RSS {idle} KiB");
    assert!(busy < 48 * 1024, "RSS with 50 pods {busy} KiB");
}

/// `--simulate 3`: three nodes in one process, each its own MQTT client and state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_runs_several_agents_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("fleet");
    let log = dir.path().join("agent.log");
    let port = free_port();
    for i in 0..3 {
        write_credentials_for(&state.join(format!("sim-{i}")), &format!("sim-{i}"), port);
    }
    let _broker = start_broker(dir.path(), port);
    let mut hub = FakeHub::start(port, &log);
    let _fleet = Proc(
        Command::new(env!("CARGO_BIN_EXE_skiff-agent"))
            .env("SKIFF_AGENT_RUNTIME", "simulated")
            .args(["--node-name", "sim", "--simulate", "3"])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut synced = 0;
    hub.expect("three syncs", |h| {
        synced += usize::from(matches!(h, Heard::Up(Up::Sync { .. })));
        (synced == 3).then_some(())
    })
    .await;
    assert_eq!(*hub.nodes.lock().unwrap(), 3);
    for i in 0..3 {
        assert!(state.join(format!("sim-{i}/agent.db")).exists());
    }
}
