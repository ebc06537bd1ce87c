//! Per-node accounts and ACLs in Mosquitto, through its dynamic security plugin: the
//! hub, logged in as a dynsec admin, sends commands to `$CONTROL/dynamic-security/v1`
//! on a connection of its own and reads the answers from `.../response`.
//!
//! Each node gets a client (user name = client id = node name, its join password) and a
//! role `skiff-node-<node>` that may publish only to `skiff/v1/n/<node>/u` and `/h` and
//! subscribe only to `skiff/v1/n/<node>/d`. The hub's own user gets the role
//! `skiff-hub`: publish to every node's `/d`, subscribe to every `/u` and `/h`.
//! Mosquitto keeps all of it in its own dynsec file; the hub never holds plaintext
//! passwords after a join, so a broker that lost that file needs its nodes to join again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use skiff_api::protocol::{TopicKind, topic};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::mqtt::BrokerLogin;

const CONTROL: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";
/// The role that lets the hub speak the protocol.
pub const HUB_ROLE: &str = "skiff-hub";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum DynSecError {
    #[error(
        "the broker did not answer dynamic-security commands within {0:?} (is the plugin loaded and the hub user its admin?)"
    )]
    NoAnswer(Duration),
    #[error("dynamic-security command {command} failed: {error}")]
    Command { command: String, error: String },
    #[error("the dynamic-security connection stopped")]
    Closed,
}

/// A connection to Mosquitto's dynamic security plugin.
#[derive(Debug)]
pub struct DynSec {
    conn: Arc<Conn>,
    /// Joins waiting for their broker account; [`batcher`] turns them into one
    /// command list per round trip.
    queue: mpsc::Sender<Pending>,
}

#[derive(Debug)]
struct Conn {
    client: AsyncClient,
    /// One command list in flight at a time, so answers pair with requests.
    answers: Mutex<mpsc::Receiver<Value>>,
}

/// One node's account, waiting to be created.
#[derive(Debug)]
struct Pending {
    node: String,
    password: String,
    done: oneshot::Sender<Result<(), DynSecError>>,
}

fn role_of(node: &str) -> String {
    format!("skiff-node-{node}")
}

fn acl(kind: &str, topic: String) -> Value {
    json!({"acltype": kind, "topic": topic, "allow": true})
}

/// Accounts created per command list at most. Mosquitto 2.0 rewrites its whole dynsec
/// file after every command, so the round trips, not the commands, are what batching
/// saves; a bounded list keeps each answer well inside the packet limit.
const MAX_BATCH: usize = 100;
/// How long the first join of a burst waits for others to share its round trip.
const GATHER: Duration = Duration::from_millis(20);
/// A command list for a whole batch may take the broker a while.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per command list; the connection reconnects by itself in between.
const ATTEMPTS: u32 = 3;
/// Answers are small; a batch's answer lists one line per command.
const MAX_ANSWER: usize = 1024 * 1024;

impl DynSec {
    /// Logs in with the hub's admin credentials (client id `<client id>-dynsec`).
    pub async fn connect(login: &BrokerLogin) -> Result<DynSec, DynSecError> {
        let mut opts = MqttOptions::new(
            format!("{}-dynsec", login.client_id),
            &login.url.host,
            login.url.port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(MAX_ANSWER, MAX_ANSWER);
        if let Some(user) = &login.username {
            opts.set_credentials(user.clone(), login.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::channel(64);
        let (ready_tx, mut ready_rx) = mpsc::channel(1);
        let sub = client.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(100);
                        // Also after a reconnect: Mosquitto drops a user's connections
                        // when its roles change, the hub's own included.
                        let sub = sub.clone();
                        let ready = ready_tx.clone();
                        tokio::spawn(async move {
                            if sub.subscribe(RESPONSE, QoS::AtLeastOnce).await.is_ok() {
                                let _ = ready.try_send(());
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {}
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE => {
                        // Never wait here: this loop also sends the keep-alive pings,
                        // and a stalled loop gets the connection dropped by the broker.
                        // An answer nobody waits for any more is stale anyway.
                        if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                            && let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(v)
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "dynamic-security connection lost; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        tokio::time::timeout(TIMEOUT, ready_rx.recv())
            .await
            .map_err(|_| DynSecError::NoAnswer(TIMEOUT))?
            .ok_or(DynSecError::Closed)?;
        // The SUBSCRIBE went out; give the broker a moment to act on it before the
        // first command, whose answer would otherwise be missed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let conn = Arc::new(Conn {
            client,
            answers: Mutex::new(rx),
        });
        let (queue, pending) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(batcher(conn.clone(), pending));
        Ok(DynSec { conn, queue })
    }

    async fn run(&self, commands: Vec<Value>, tolerated: &[&str]) -> Result<(), DynSecError> {
        self.conn.run(commands, tolerated).await
    }

    async fn request(
        &self,
        commands: Vec<Value>,
        tolerated: &[&str],
        timeout: Duration,
    ) -> Result<Value, DynSecError> {
        self.conn.request(commands, tolerated, timeout).await
    }

    /// Gives the hub's user the role it needs to publish desired state and receive
    /// everything nodes send.
    pub async fn ensure_hub(&self, hub_user: &str) -> Result<(), DynSecError> {
        let acls = vec![
            acl("publishClientSend", TopicKind::Down.all_nodes_filter()),
            acl("subscribePattern", TopicKind::Up.all_nodes_filter()),
            acl("subscribePattern", TopicKind::Heartbeat.all_nodes_filter()),
            acl("publishClientReceive", TopicKind::Up.all_nodes_filter()),
            acl(
                "publishClientReceive",
                TopicKind::Heartbeat.all_nodes_filter(),
            ),
        ];
        self.run(
            vec![json!({"command": "createRole", "rolename": HUB_ROLE, "acls": acls})],
            &["already exists"],
        )
        .await?;
        // Changing a client's roles makes Mosquitto disconnect that user's connections,
        // this one included, so the answer may be lost: check the outcome afterwards.
        let add = json!({"command": "addClientRole", "username": hub_user, "rolename": HUB_ROLE});
        match self
            .request(vec![add], &["already"], Duration::from_millis(500))
            .await
        {
            Ok(_) | Err(DynSecError::NoAnswer(_)) => {}
            Err(e) => return Err(e),
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let get = json!({"command": "getClient", "username": hub_user});
            if let Ok(answer) = self
                .request(vec![get], &[], Duration::from_millis(500))
                .await
            {
                let roles = &answer["responses"][0]["data"]["client"]["roles"];
                if roles
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["rolename"] == HUB_ROLE))
                {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DynSecError::NoAnswer(TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates (or re-keys) `node`'s client with `password`, pinned to client id =
    /// node name, with a role limited to its own topics. Concurrent calls share round
    /// trips to the broker.
    pub async fn provision(&self, node: &str, password: &str) -> Result<(), DynSecError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Pending {
                node: node.to_string(),
                password: password.to_string(),
                done,
            })
            .await
            .map_err(|_| DynSecError::Closed)?;
        result.await.map_err(|_| DynSecError::Closed)?
    }
}

impl Conn {
    /// Sends `commands`; fails on the first error not in `tolerated` (e.g. "already
    /// exists" when creating what is there).
    async fn run(&self, commands: Vec<Value>, tolerated: &[&str]) -> Result<(), DynSecError> {
        self.request(commands, tolerated, TIMEOUT).await.map(|_| ())
    }

    /// Sends `commands` and returns the broker's answer.
    async fn request(
        &self,
        commands: Vec<Value>,
        tolerated: &[&str],
        timeout: Duration,
    ) -> Result<Value, DynSecError> {
        let answer = self.send(commands, timeout).await?;
        for r in answer["responses"].as_array().into_iter().flatten() {
            if let Some(err) = r["error"].as_str()
                && !tolerated.iter().any(|t| err.contains(t))
            {
                return Err(DynSecError::Command {
                    command: r["command"].as_str().unwrap_or("?").to_string(),
                    error: err.to_string(),
                });
            }
        }
        Ok(answer)
    }

    /// One round trip: the command list out, its answer back.
    async fn send(&self, commands: Vec<Value>, timeout: Duration) -> Result<Value, DynSecError> {
        let mut answers = self.answers.lock().await;
        while answers.try_recv().is_ok() {}
        let body = json!({ "commands": commands });
        self.client
            .publish(CONTROL, QoS::AtLeastOnce, false, body.to_string())
            .await
            .map_err(|_| DynSecError::Closed)?;
        tokio::time::timeout(timeout, answers.recv())
            .await
            .map_err(|_| DynSecError::NoAnswer(timeout))?
            .ok_or(DynSecError::Closed)
    }

    /// [`send`](Self::send), again after a lost connection or answer. Every command
    /// sent this way may run twice: creating is tolerant of "already exists".
    async fn send_retrying(&self, commands: Vec<Value>) -> Result<Value, DynSecError> {
        let mut last = DynSecError::Closed;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500) * attempt).await;
            }
            match self.send(commands.clone(), BATCH_TIMEOUT).await {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "dynamic-security command list failed; retrying");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Creates the accounts of `batch` in one round trip (two when some existed and
    /// need their password and client id set).
    async fn provision(&self, batch: &[(String, String)]) -> Vec<Result<(), DynSecError>> {
        let mut commands = Vec::with_capacity(2 * batch.len());
        for (i, (node, password)) in batch.iter().enumerate() {
            let role = role_of(node);
            let acls = vec![
                acl("publishClientSend", topic(node, TopicKind::Up)),
                acl("publishClientSend", topic(node, TopicKind::Heartbeat)),
                acl("subscribePattern", topic(node, TopicKind::Down)),
                acl("publishClientReceive", topic(node, TopicKind::Down)),
            ];
            commands.push(json!({
                "command": "createRole", "rolename": role, "acls": acls,
                "correlationData": format!("role {i}"),
            }));
            commands.push(json!({
                "command": "createClient",
                "username": node,
                "password": password,
                "clientid": node,
                "roles": [{"rolename": role}],
                "correlationData": format!("client {i}"),
            }));
        }
        let answer = match self.send_retrying(commands).await {
            Ok(a) => a,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let errors = errors_by_tag(&answer);
        let mut out: Vec<Result<(), DynSecError>> = Vec::with_capacity(batch.len());
        let mut rekey = Vec::new();
        for i in 0..batch.len() {
            let failed = |tag: &str| {
                errors
                    .get(tag)
                    .map(|(command, error)| DynSecError::Command {
                        command: command.clone(),
                        error: error.clone(),
                    })
            };
            let role = failed(&format!("role {i}"));
            let client = failed(&format!("client {i}"));
            out.push(match (role, client) {
                (Some(e), _) if !already(&e) => Err(e),
                (_, Some(e)) if already(&e) => {
                    rekey.push(i);
                    Ok(())
                }
                (_, Some(e)) => Err(e),
                _ => Ok(()),
            });
        }
        if rekey.is_empty() {
            return out;
        }
        // A client that existed keeps its name and role; its password rotates.
        let mut commands = Vec::with_capacity(2 * rekey.len());
        for &i in &rekey {
            let (node, password) = &batch[i];
            commands.push(json!({"command": "setClientPassword", "username": node, "password": password, "correlationData": format!("password {i}")}));
            commands.push(json!({"command": "setClientId", "username": node, "clientid": node, "correlationData": format!("id {i}")}));
        }
        match self.send_retrying(commands).await {
            Ok(answer) => {
                let errors = errors_by_tag(&answer);
                for &i in &rekey {
                    for tag in [format!("password {i}"), format!("id {i}")] {
                        if let Some((command, error)) = errors.get(&tag) {
                            out[i] = Err(DynSecError::Command {
                                command: command.clone(),
                                error: error.clone(),
                            });
                        }
                    }
                }
            }
            Err(e) => {
                for &i in &rekey {
                    out[i] = Err(e.clone());
                }
            }
        }
        out
    }
}

fn already(e: &DynSecError) -> bool {
    matches!(e, DynSecError::Command { error, .. } if error.contains("already exists"))
}

/// The failed commands of an answer, by the `correlationData` they were sent with.
fn errors_by_tag(answer: &Value) -> HashMap<String, (String, String)> {
    answer["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let error = r["error"].as_str()?;
            let tag = r["correlationData"].as_str()?;
            Some((
                tag.to_string(),
                (
                    r["command"].as_str().unwrap_or("?").to_string(),
                    error.to_string(),
                ),
            ))
        })
        .collect()
}

/// Gathers concurrent joins into command lists of up to [`MAX_BATCH`] accounts.
async fn batcher(conn: Arc<Conn>, mut pending: mpsc::Receiver<Pending>) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        let gather = tokio::time::sleep(GATHER);
        tokio::pin!(gather);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                () = &mut gather => break,
                p = pending.recv() => match p {
                    Some(p) => batch.push(p),
                    None => break,
                },
            }
        }
        let accounts: Vec<(String, String)> = batch
            .iter()
            .map(|p| (p.node.clone(), p.password.clone()))
            .collect();
        let started = std::time::Instant::now();
        let results = conn.provision(&accounts).await;
        tracing::debug!(
            accounts = accounts.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "broker accounts created"
        );
        for (p, r) in batch.into_iter().zip(results) {
            let _ = p.done.send(r);
        }
    }
}
