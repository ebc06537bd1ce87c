//! Shared by the dispatch tests: a real `skiff-hub serve` process, its REST API, and a
//! fake agent that speaks the Skiff protocol over a real MQTT client (rumqttc).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use skiff_api::protocol::{
    Down, Heartbeat, MAX_PACKET, NodeKey, PodRef, SCHEMA_VERSION, TopicKind, Up, decode, encode,
    topic,
};
use skiff_api::resources::{NodeStatus, PodStatus};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running hub; killed on drop.
pub struct Hub {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub mqtt_port: u16,
    agent: ureq::Agent,
    auth: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// Starts `skiff-hub serve` with the embedded broker on a free port, or with
    /// `extra` flags (e.g. `--broker`), and a 2 s node grace period.
    pub fn start(data_dir: &Path, extra: &[String]) -> Hub {
        Hub::start_on(data_dir, extra, free_port())
    }

    /// [`Hub::start`] with the embedded broker on `mqtt_port` (to restart a hub where
    /// its agents look for it).
    pub fn start_on(data_dir: &Path, extra: &[String], mqtt_port: u16) -> Hub {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--node-grace".into(),
            "2s".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        if extra.is_empty() {
            args.push("--mqtt-listen".into());
            args.push(format!("127.0.0.1:{mqtt_port}"));
        } else {
            args.extend(extra.iter().cloned());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff-hub"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start skiff-hub");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open for the hub's lifetime.
            let mut rest = String::new();
            while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                rest.clear();
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("skiff-hub printed no startup line");
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Hub {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            mqtt_port,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into(),
            auth: format!("Bearer {token}"),
        }
    }

    /// Stops the hub with SIGTERM, as systemd does, and waits for it to exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        let status = self.child.wait().expect("wait for skiff-hub");
        assert!(
            status.success(),
            "skiff-hub exited with {status} after SIGTERM"
        );
    }

    fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut resp = resp.expect("HTTP request failed");
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        Hub::reply(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", &self.auth)
                .call(),
        )
    }

    /// POST, PUT or PATCH (merge patch) with the admin token unless `auth` is false.
    pub fn send(&self, method: &str, path: &str, body: &Value, auth: bool) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let (req, ct) = match method {
            "POST" => (self.agent.post(url), "application/json"),
            "PUT" => (self.agent.put(url), "application/json"),
            "PATCH" => (self.agent.patch(url), "application/merge-patch+json"),
            other => panic!("{other}"),
        };
        let req = req.header("Content-Type", ct);
        let req = if auth {
            req.header("Authorization", &self.auth)
        } else {
            req
        };
        Hub::reply(req.send(body.to_string()))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        Hub::reply(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", &self.auth)
                .call(),
        )
    }

    pub fn token(&self, ttl: u64, uses: u32) -> String {
        let (code, body) = self.send(
            "POST",
            "/skiff/v1/tokens",
            &json!({"ttlSeconds": ttl, "uses": uses}),
            true,
        );
        assert_eq!(code, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Joins `node` with a fresh token.
    pub fn join(&self, node: &str) -> Joined {
        let token = self.token(3600, 1);
        let (code, body) = self.send(
            "POST",
            "/skiff/v1/join",
            &json!({"token": token, "nodeName": node}),
            false,
        );
        assert_eq!(code, 200, "{body}");
        Joined::from_json(&body)
    }

    pub fn metric(&self, reason: &str) -> u64 {
        let (code, body) = self.get("/skiff/v1/metrics?format=json");
        assert_eq!(code, 200, "{body}");
        body["rejected"][reason].as_u64().unwrap()
    }

    /// Polls `path` until `check` holds, up to `timeout`; returns the last body.
    pub fn wait_for(&self, path: &str, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.get(path);
            if code == 200 && check(&body) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("{path} did not reach the expected state in {timeout:?}: {code} {body}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn create_pod(&self, name: &str, node: &str) -> Value {
        let (code, body) = self.send(
            "POST",
            "/api/v1/namespaces/default/pods",
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
            }),
            true,
        );
        assert_eq!(code, 201, "{body}");
        body
    }
}

pub fn ready_status(node: &Value) -> Option<(String, String)> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// What `POST /skiff/v1/join` returned.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node: String,
    pub broker: String,
    pub password: String,
    pub key: NodeKey,
}

impl Joined {
    pub fn from_json(v: &Value) -> Joined {
        assert_eq!(v["username"], v["nodeName"]);
        Joined {
            node: v["nodeName"].as_str().unwrap().to_string(),
            broker: v["broker"].as_str().unwrap().to_string(),
            password: v["password"].as_str().unwrap().to_string(),
            key: NodeKey::from_hex(v["key"].as_str().unwrap()).unwrap(),
        }
    }

    pub fn port(&self) -> u16 {
        self.broker.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// What the fake agent's MQTT connection saw.
#[derive(Debug)]
pub enum Seen {
    Connected,
    Subscribed,
    Down(Down),
    /// A message on its topic that did not open with its key.
    Unreadable(String),
    Failed(String),
}

/// A fake agent: a real MQTT client speaking the protocol.
pub struct FakeAgent {
    pub node: String,
    pub key: NodeKey,
    client: AsyncClient,
    rt: tokio::runtime::Runtime,
    rx: mpsc::Receiver<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub seq: u64,
}

fn nonce() -> [u8; 24] {
    let mut n = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut n);
    n
}

impl FakeAgent {
    /// Connects as `user` (client id = `client_id`) with `password`; the agent's key is
    /// `key`. Returns the failure if the broker refuses.
    pub fn connect_as(
        port: u16,
        client_id: &str,
        user: &str,
        password: &str,
        key: &NodeKey,
        will_s: u64,
    ) -> Result<FakeAgent, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_credentials(user, password);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        let will_topic = topic(user, TopicKind::Heartbeat);
        let will = encode(
            key,
            &will_topic,
            nonce(),
            &Heartbeat {
                v: SCHEMA_VERSION,
                s: will_s,
                gone: true,
            },
        )
        .unwrap();
        opts.set_last_will(LastWill::new(will_topic, will, QoS::AtMostOnce, false));
        let (client, mut eventloop) = {
            let _g = rt.enter();
            AsyncClient::new(opts, 64)
        };
        let (tx, rx) = mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let down = topic(user, TopicKind::Down);
        let k = key.clone();
        rt.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = &mut stop_rx => return,
                    ev = eventloop.poll() => ev,
                };
                let seen = match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Seen::Connected,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Seen::Subscribed,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match decode::<Down>(&k, &down, &p.payload) {
                            Ok(d) if p.topic == down => Seen::Down(d),
                            _ => Seen::Unreadable(p.topic.clone()),
                        }
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Seen::Failed(e.to_string()));
                        return;
                    }
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        let agent = FakeAgent {
            node: user.to_string(),
            key: key.clone(),
            client,
            rt,
            rx,
            stop: Some(stop_tx),
            seq: 0,
        };
        match agent.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Seen::Connected) => Ok(agent),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("no answer from the broker: {e}")),
        }
    }

    pub fn connect(j: &Joined, port: u16) -> FakeAgent {
        FakeAgent::connect_as(port, &j.node, &j.node, &j.password, &j.key, 1)
            .unwrap_or_else(|e| panic!("{} could not connect: {e}", j.node))
    }

    /// Subscribes to `node`'s desired-state topic and waits for the SubAck.
    pub fn subscribe(&self, node: &str) {
        let t = topic(node, TopicKind::Down);
        self.rt
            .block_on(self.client.subscribe(t, QoS::AtLeastOnce))
            .unwrap();
        match self.rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Seen::Subscribed) => {}
            other => panic!("expected a SubAck, got {other:?}"),
        }
    }

    pub fn publish_raw(&self, t: &str, qos: QoS, payload: Vec<u8>) {
        self.rt
            .block_on(self.client.publish(t, qos, false, payload))
            .unwrap();
    }

    /// Seals `msg` with this agent's key for `node`'s up topic.
    pub fn send_up_as(&self, node: &str, msg: &Up) {
        let t = topic(node, TopicKind::Up);
        let frame = encode(&self.key, &t, nonce(), msg).unwrap();
        self.publish_raw(&t, QoS::AtLeastOnce, frame);
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn node_status(&mut self, labels: &[(&str, &str)]) {
        let seq = self.next_seq();
        let status = serde_json::from_value::<NodeStatus>(json!({
            "capacity": {"cpu": "4", "memory": "2Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "2Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
            "nodeInfo": {"architecture": "arm64", "operatingSystem": "linux"},
        }))
        .unwrap();
        let msg = Up::NodeStatus {
            v: SCHEMA_VERSION,
            seq,
            status: Box::new(status),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: Vec::new(),
        };
        self.send_up_as(&self.node.clone(), &msg);
    }

    pub fn pod_status(&mut self, name: &str, uid: &str, phase: &str) {
        let seq = self.next_seq();
        let status: PodStatus = serde_json::from_value(json!({"phase": phase})).unwrap();
        let msg = Up::PodStatus {
            v: SCHEMA_VERSION,
            seq,
            namespace: "default".into(),
            name: name.into(),
            uid: uid.into(),
            status: Box::new(status),
        };
        self.send_up_as(&self.node.clone(), &msg);
    }

    pub fn pod_event(&mut self, name: &str, uid: &str, type_: &str, reason: &str, message: &str) {
        let seq = self.next_seq();
        let msg = Up::PodEvent {
            v: SCHEMA_VERSION,
            seq,
            namespace: "default".into(),
            name: name.into(),
            uid: uid.into(),
            type_: type_.into(),
            reason: reason.into(),
            message: message.into(),
        };
        self.send_up_as(&self.node.clone(), &msg);
    }

    pub fn sync(&mut self, revision: u64, pods: Vec<PodRef>) {
        let seq = self.next_seq();
        let msg = Up::Sync {
            v: SCHEMA_VERSION,
            seq,
            revision,
            pods,
        };
        self.send_up_as(&self.node.clone(), &msg);
    }

    pub fn heartbeat(&mut self) {
        let s = self.next_seq();
        let t = topic(&self.node, TopicKind::Heartbeat);
        let frame = encode(
            &self.key,
            &t,
            nonce(),
            &Heartbeat {
                v: SCHEMA_VERSION,
                s,
                gone: false,
            },
        )
        .unwrap();
        self.publish_raw(&t, QoS::AtMostOnce, frame);
    }

    /// The next desired-state message, failing after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Down {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Seen::Down(d)) => return d,
                Ok(Seen::Subscribed) | Ok(Seen::Connected) => continue,
                Ok(other) => panic!(
                    "{}: expected a desired-state message, got {other:?}",
                    self.node
                ),
                Err(_) => panic!("{}: no desired-state message within {timeout:?}", self.node),
            }
        }
    }

    /// Everything up to and including the next `SyncDone`.
    pub fn recv_until_sync_done(&self, timeout: Duration) -> Vec<Down> {
        let mut out = Vec::new();
        loop {
            let d = self.recv(timeout);
            let done = matches!(d, Down::SyncDone { .. });
            out.push(d);
            if done {
                return out;
            }
        }
    }

    /// Asserts nothing arrives for `wait`.
    pub fn expect_nothing(&self, wait: Duration) {
        if let Ok(seen) = self.rx.recv_timeout(wait) {
            panic!("{}: expected nothing, got {seen:?}", self.node);
        }
    }

    /// Closes the TCP connection without DISCONNECT, as a crashed or cut-off agent
    /// would: the broker publishes the last will.
    pub fn cut(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The runtime drops the event loop and with it the socket.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// A clean MQTT disconnect: no last will.
    pub fn disconnect(self) {
        let _ = self.rt.block_on(self.client.disconnect());
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl FakeAgent {
    /// The topic of the next message that did not open with this agent's key, if one
    /// arrives within `wait`; desired-state messages for itself are skipped.
    pub fn try_unreadable(&self, wait: Duration) -> Option<String> {
        match self.rx.recv_timeout(wait) {
            Ok(Seen::Unreadable(t)) => Some(t),
            _ => None,
        }
    }
}

impl FakeAgent {
    /// The next desired-state message within `wait`, if any.
    pub fn try_recv(&self, wait: Duration) -> Option<Down> {
        match self.rx.recv_timeout(wait) {
            Ok(Seen::Down(d)) => Some(d),
            _ => None,
        }
    }
}
