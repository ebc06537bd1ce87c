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

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use skiff_api::protocol::{TopicKind, topic};
use tokio::sync::{Mutex, mpsc};

use super::mqtt::BrokerLogin;

const CONTROL: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE: &str = "$CONTROL/dynamic-security/v1/response";
/// The role that lets the hub speak the protocol.
pub const HUB_ROLE: &str = "skiff-hub";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
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
    client: AsyncClient,
    /// One command batch in flight at a time, so answers pair with requests.
    answers: Mutex<mpsc::Receiver<Value>>,
}

fn role_of(node: &str) -> String {
    format!("skiff-node-{node}")
}

fn acl(kind: &str, topic: String) -> Value {
    json!({"acltype": kind, "topic": topic, "allow": true})
}

impl DynSec {
    /// Logs in with the hub's admin credentials (client id `<client id>-dynsec`).
    pub async fn connect(login: &BrokerLogin) -> Result<DynSec, DynSecError> {
        let mut opts = MqttOptions::new(
            format!("{}-dynsec", login.client_id),
            &login.url.host,
            login.url.port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some(user) = &login.username {
            opts.set_credentials(user.clone(), login.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::channel(16);
        let (ready_tx, mut ready_rx) = mpsc::channel(1);
        let sub = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Also after a reconnect: Mosquitto drops a user's connections
                        // when its roles change, the hub's own included.
                        let sub = sub.clone();
                        let ready = ready_tx.clone();
                        tokio::spawn(async move {
                            if sub.subscribe(RESPONSE, QoS::AtLeastOnce).await.is_ok() {
                                let _ = ready.send(()).await;
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {}
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                            && tx.send(v).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "dynamic-security connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_millis(100)).await;
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
        Ok(DynSec {
            client,
            answers: Mutex::new(rx),
        })
    }

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
        let mut answers = self.answers.lock().await;
        while answers.try_recv().is_ok() {}
        let body = json!({ "commands": commands });
        self.client
            .publish(CONTROL, QoS::AtLeastOnce, false, body.to_string())
            .await
            .map_err(|_| DynSecError::Closed)?;
        let answer = tokio::time::timeout(timeout, answers.recv())
            .await
            .map_err(|_| DynSecError::NoAnswer(timeout))?
            .ok_or(DynSecError::Closed)?;
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
    /// node name, with a role limited to its own topics.
    pub async fn provision(&self, node: &str, password: &str) -> Result<(), DynSecError> {
        let role = role_of(node);
        let acls = vec![
            acl("publishClientSend", topic(node, TopicKind::Up)),
            acl("publishClientSend", topic(node, TopicKind::Heartbeat)),
            acl("subscribePattern", topic(node, TopicKind::Down)),
            acl("publishClientReceive", topic(node, TopicKind::Down)),
        ];
        self.run(
            vec![json!({"command": "createRole", "rolename": role, "acls": acls})],
            &["already exists"],
        )
        .await?;
        self.run(
            vec![json!({
                "command": "createClient",
                "username": node,
                "password": password,
                "clientid": node,
                "roles": [{"rolename": role}],
            })],
            &["already exists"],
        )
        .await?;
        // A client that existed keeps its name and role; its password rotates.
        self.run(
            vec![
                json!({"command": "setClientPassword", "username": node, "password": password}),
                json!({"command": "setClientId", "username": node, "clientid": node}),
            ],
            &[],
        )
        .await
    }
}
