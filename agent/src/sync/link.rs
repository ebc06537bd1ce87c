//! The `HubLink` seam and its MQTT implementation. The link owns the connection: it
//! (re)connects with backoff, subscribes to the node's desired-state topic, opens and
//! checks every frame, and hands well-formed messages to the agent with a token the
//! agent uses to acknowledge them once persisted (manual PUBACK, so a crash between
//! receipt and write means redelivery, not loss). Frames that do not open or decode
//! are logged, counted and acknowledged, never fatal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
use skiff_api::protocol::{
    Down, Heartbeat, MAX_PACKET, NodeKey, SCHEMA_VERSION, TopicKind, Up, decode, encode, topic,
};
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use super::backoff::Backoff;
use crate::state::Credentials;

const KEEP_ALIVE: Duration = Duration::from_secs(30);
const REQUEST_CAPACITY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot seal message for {topic}: {source}")]
    Seal {
        topic: String,
        source: skiff_api::protocol::ProtocolError,
    },
    #[error("the MQTT client cannot take more requests now: {0}")]
    Busy(#[from] rumqttc::ClientError),
    #[error("credentials name broker {0:?}, which is not mqtt://host:port")]
    BadBroker(String),
    #[error("credentials hold no valid node key")]
    BadKey,
}

/// Acknowledges one received message once it is persisted.
#[derive(Debug)]
pub struct AckToken {
    pkid: u16,
    qos: QoS,
}

/// What the link tells the agent.
#[derive(Debug)]
pub enum LinkEvent {
    /// Connected (again): time to send `Sync`.
    Connected,
    Disconnected,
    /// A message from the hub, to persist and then acknowledge.
    Down {
        msg: Down,
        ack: AckToken,
    },
}

/// Sequence numbers for everything a node sends: strictly increasing per process,
/// starting at the wall clock in milliseconds so a restarted agent continues above
/// where the last one stopped.
#[derive(Debug, Clone)]
pub struct Seq(Arc<AtomicU64>);

impl Seq {
    pub fn from_clock() -> Seq {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Seq(Arc::new(AtomicU64::new(ms)))
    }

    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The agent's side of the connection to the hub.
pub trait HubLink: Send + Sync + std::fmt::Debug {
    /// Sends a message on the node's up topic (QoS 1).
    fn send(&self, msg: &Up) -> Result<(), LinkError>;
    /// Sends a heartbeat (QoS 0).
    fn heartbeat(&self, seq: u64) -> Result<(), LinkError>;
    /// Acknowledges a message the agent has persisted.
    fn ack(&self, token: AckToken) -> Result<(), LinkError>;
    /// Disconnects cleanly (the broker does not publish the last will).
    fn close(&self);
}

/// Counts frames rejected on the down topic (bad frame, wrong key, bad JSON, too big).
#[derive(Debug, Default)]
pub struct LinkCounters {
    pub rejected: AtomicU64,
}

#[derive(Debug)]
pub struct MqttLink {
    client: AsyncClient,
    key: NodeKey,
    up: String,
    heartbeat: String,
    pub counters: Arc<LinkCounters>,
}

fn nonce() -> [u8; 24] {
    rand::random()
}

fn seal<T: serde::Serialize>(key: &NodeKey, topic: &str, msg: &T) -> Result<Vec<u8>, LinkError> {
    encode(key, topic, nonce(), msg).map_err(|source| LinkError::Seal {
        topic: topic.to_string(),
        source,
    })
}

impl MqttLink {
    /// Starts the connection task. `connect_permits` bounds how many agents of one
    /// process connect at once (fleet simulation); a permit is held from the first
    /// connection attempt until the broker answers.
    pub fn start(
        creds: &Credentials,
        seq: Seq,
        connect_permits: Option<Arc<Semaphore>>,
    ) -> Result<(MqttLink, mpsc::Receiver<LinkEvent>), LinkError> {
        let node = creds.node_name.clone();
        let key = creds.node_key().ok_or(LinkError::BadKey)?;
        let (host, port) = creds
            .broker_addr()
            .ok_or_else(|| LinkError::BadBroker(creds.broker.clone()))?;
        let mut opts = MqttOptions::new(creds.username.clone(), host, port);
        opts.set_credentials(creds.username.clone(), creds.password.clone())
            .set_clean_session(false)
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_manual_acks(true)
            .set_inflight(16);
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
        let (tx, rx) = mpsc::channel(16);
        let counters = Arc::new(LinkCounters::default());
        let task = LinkTask {
            node: node.clone(),
            key: key.clone(),
            down: topic(&node, TopicKind::Down),
            heartbeat: topic(&node, TopicKind::Heartbeat),
            client: client.clone(),
            eventloop,
            tx,
            seq,
            permits: connect_permits,
            counters: counters.clone(),
        };
        tokio::spawn(task.run().instrument(info_span!("mqtt", node = %node)));
        Ok((
            MqttLink {
                client,
                key,
                up: topic(&node, TopicKind::Up),
                heartbeat: topic(&node, TopicKind::Heartbeat),
                counters,
            },
            rx,
        ))
    }
}

impl HubLink for MqttLink {
    fn send(&self, msg: &Up) -> Result<(), LinkError> {
        let payload = seal(&self.key, &self.up, msg)?;
        self.client
            .try_publish(&self.up, QoS::AtLeastOnce, false, payload)?;
        Ok(())
    }

    fn heartbeat(&self, seq: u64) -> Result<(), LinkError> {
        let hb = Heartbeat {
            v: SCHEMA_VERSION,
            s: seq,
            gone: false,
        };
        let payload = seal(&self.key, &self.heartbeat, &hb)?;
        self.client
            .try_publish(&self.heartbeat, QoS::AtMostOnce, false, payload)?;
        Ok(())
    }

    fn ack(&self, token: AckToken) -> Result<(), LinkError> {
        let mut p = Publish::new("", token.qos, Vec::new());
        p.pkid = token.pkid;
        self.client.try_ack(&p)?;
        Ok(())
    }

    fn close(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// Whether the broker's host refused the TCP connection (nothing listens there).
fn refused(e: &rumqttc::ConnectionError) -> bool {
    matches!(e, rumqttc::ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

struct LinkTask {
    node: String,
    key: NodeKey,
    down: String,
    heartbeat: String,
    client: AsyncClient,
    eventloop: EventLoop,
    tx: mpsc::Sender<LinkEvent>,
    seq: Seq,
    permits: Option<Arc<Semaphore>>,
    counters: Arc<LinkCounters>,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut connected = false;
        let mut permit = None;
        // When the connection was lost, for the log line of the reconnect.
        let mut lost_at: Option<std::time::Instant> = None;
        loop {
            if self.eventloop.network.is_none() {
                // The will is sealed afresh for every connection so its `s` is current.
                let will = Heartbeat {
                    v: SCHEMA_VERSION,
                    s: self.seq.next(),
                    gone: true,
                };
                match seal(&self.key, &self.heartbeat, &will) {
                    Ok(payload) => {
                        self.eventloop.mqtt_options.set_last_will(LastWill::new(
                            &self.heartbeat,
                            payload,
                            QoS::AtLeastOnce,
                            false,
                        ));
                    }
                    Err(e) => warn!(error = %e, "cannot seal the last will"),
                }
                if permit.is_none()
                    && let Some(sem) = &self.permits
                {
                    permit = sem.clone().acquire_owned().await.ok();
                }
            }
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    permit = None;
                    let attempts = backoff.attempts();
                    backoff.reset();
                    connected = true;
                    let down_ms = lost_at.take().map(|t| t.elapsed().as_millis() as u64);
                    info!(
                        session_present = ack.session_present,
                        attempts, down_ms, "connected to broker"
                    );
                    if let Err(e) = self.client.try_subscribe(&self.down, QoS::AtLeastOnce) {
                        warn!(error = %e, "cannot subscribe");
                    }
                    if self.tx.send(LinkEvent::Connected).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if !self.received(p).await {
                        return;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    debug!("disconnected on request");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    permit = None;
                    if connected {
                        connected = false;
                        lost_at = Some(std::time::Instant::now());
                        warn!(error = %e, "lost the broker");
                        if self.tx.send(LinkEvent::Disconnected).await.is_err() {
                            return;
                        }
                    } else {
                        debug!(error = %e, attempt = backoff.attempts(), "cannot reach the broker");
                    }
                    if self.tx.is_closed() {
                        return;
                    }
                    let wait = backoff.failed(refused(&e), std::time::Instant::now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Handles one PUBLISH; false when the agent is gone.
    async fn received(&mut self, p: Publish) -> bool {
        let ack = AckToken {
            pkid: p.pkid,
            qos: p.qos,
        };
        let decoded = {
            let _g = info_span!("down", node = %self.node, bytes = p.payload.len()).entered();
            if p.topic != self.down {
                self.reject(ack, &format!("unexpected topic {}", p.topic));
                return true;
            }
            match decode::<Down>(&self.key, &self.down, &p.payload) {
                Ok(msg) => msg,
                Err(e) => {
                    self.reject(ack, &e.to_string());
                    return true;
                }
            }
        };
        self.tx
            .send(LinkEvent::Down { msg: decoded, ack })
            .await
            .is_ok()
    }

    fn reject(&self, ack: AckToken, why: &str) {
        let n = self.counters.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        warn!(
            rejected_total = n,
            reason = why,
            "rejected message on the down topic"
        );
        // Acknowledged all the same: redelivering it would not make it valid.
        let mut p = Publish::new("", ack.qos, Vec::new());
        p.pkid = ack.pkid;
        if ack.qos != QoS::AtMostOnce {
            let _ = self.client.try_ack(&p);
        }
    }
}
