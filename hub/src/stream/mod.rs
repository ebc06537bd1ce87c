//! `skiff logs` and `skiff exec` through the hub: the REST endpoints
//! (`GET …/pods/{name}/log`, `POST …/pods/{name}/exec` upgraded to a raw stream), the
//! sessions they open on the pod's node over MQTT, and the output coming back.
//!
//! A device has no inbound port: the hub sends `streamOpen` down the node's topic, the
//! agent answers on its up topic with numbered chunks, which [`Registry`] puts back in
//! order (dropping QoS 1 duplicates and anything from another node) for the handler
//! that serves the client. The handler acknowledges chunks as the client takes them,
//! which opens the agent's credit window: a slow client slows the agent, nothing piles
//! up in between.

pub(crate) mod exec;
mod http;
mod registry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore;
use skiff_api::protocol::stream::WINDOW;
use skiff_api::protocol::{Down, SCHEMA_VERSION, TopicKind, Up, encode, topic};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::dispatch::Dispatcher;
use crate::join::Credentials;
use crate::server::AdminToken;
use crate::store::Store;

pub use http::routes;
use registry::{Event, Outcome, Registry};

/// How long the agent has to answer a `streamOpen`.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of stream output the hub dropped.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Output for a session that is not open (ended, timed out).
    pub unknown_session: AtomicU64,
    /// Output a node sent for another node's session.
    pub foreign_session: AtomicU64,
    /// QoS 1 redeliveries.
    pub duplicate: AtomicU64,
    /// Sessions ended because the agent went beyond the credit window.
    pub violation: AtomicU64,
}

/// The stream sessions of the hub.
#[derive(Debug)]
pub struct Streams {
    store: Arc<dyn Store>,
    dispatcher: Arc<dyn Dispatcher>,
    credentials: Credentials,
    admin: AdminToken,
    registry: Mutex<Registry>,
    pub counters: StreamCounters,
}

impl Streams {
    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Arc<dyn Dispatcher>,
        credentials: Credentials,
        admin: AdminToken,
    ) -> Arc<Streams> {
        Arc::new(Streams {
            store,
            dispatcher,
            credentials,
            admin,
            registry: Mutex::default(),
            counters: StreamCounters::default(),
        })
    }

    /// Takes stream output `node` sent (already opened with its key). Never blocks.
    pub fn incoming(&self, node: &str, up: Up) {
        if let Up::StreamInputAck { session, taken, .. } = up {
            let outcome = self
                .registry
                .lock()
                .expect("stream registry lock")
                .input_taken(node, session, taken);
            self.count(node, session, taken, outcome);
            return;
        }
        let (session, chunk, event) = match up {
            Up::StreamData {
                session,
                chunk,
                fd,
                data,
                ..
            } => (session, chunk, Event::Data(fd, data)),
            Up::StreamEnd {
                session,
                chunk,
                exit_code,
                error,
                ..
            } => (session, chunk, Event::End { exit_code, error }),
            _ => return,
        };
        let outcome = self
            .registry
            .lock()
            .expect("stream registry lock")
            .incoming(node, session, chunk, event);
        self.count(node, session, chunk, outcome);
    }

    fn count(&self, node: &str, session: u64, chunk: u64, outcome: Outcome) {
        let c = &self.counters;
        match outcome {
            Outcome::Delivered(_) => {}
            Outcome::Unknown => {
                c.unknown_session.fetch_add(1, Ordering::Relaxed);
                debug!(node, session, chunk, "stream output for no open session");
            }
            Outcome::Foreign => {
                c.foreign_session.fetch_add(1, Ordering::Relaxed);
                warn!(
                    node,
                    session, "stream output for another node's session; rejected"
                );
            }
            Outcome::Duplicate => {
                c.duplicate.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Violation => {
                c.violation.fetch_add(1, Ordering::Relaxed);
                warn!(
                    node,
                    session, "stream output beyond the credit window; session ended"
                );
            }
        }
    }

    fn open(&self, node: &str) -> Result<registry::Opened, registry::OpenError> {
        self.registry
            .lock()
            .expect("stream registry lock")
            .open(node, skiff_api::protocol::stream::MAX_SESSIONS_PER_NODE)
    }

    fn forget(&self, session: u64) -> bool {
        self.registry
            .lock()
            .expect("stream registry lock")
            .remove(session)
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.registry.lock().expect("stream registry lock").len()
    }

    /// Seals and publishes `msg` to `node`; false when it could not be sent.
    async fn send(&self, node: &str, msg: &Down) -> bool {
        let Some(key) = self.credentials.key(node) else {
            return false;
        };
        let t = topic(node, TopicKind::Down);
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        match encode(&key, &t, nonce, msg) {
            Ok(frame) => match self.dispatcher.publish(node, TopicKind::Down, frame).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(node, error = %e, "publishing stream control failed");
                    false
                }
            },
            Err(e) => {
                warn!(node, error = %e, "cannot encode stream control");
                false
            }
        }
    }
}

/// The hub's end of one session: acknowledges what the client took, and closes the
/// session on the node when dropped before the agent ended it (the client went away).
#[derive(Debug)]
struct Session {
    streams: Arc<Streams>,
    node: String,
    id: u64,
    rx: mpsc::Receiver<Event>,
    taken: u64,
    acked: u64,
    ended: bool,
    /// The agent's standard input window (see `Up::StreamInputAck`).
    input_taken: watch::Receiver<Option<u64>>,
}

impl Session {
    /// The next piece, acknowledging the ones before it as needed.
    async fn next(&mut self) -> Option<Event> {
        if self.taken >= self.acked + WINDOW / 2 {
            let upto = self.taken;
            let ack = Down::StreamAck {
                v: SCHEMA_VERSION,
                session: self.id,
                chunk: upto,
            };
            // Recorded once sent: a send cancelled midway is made again next time.
            self.streams.send(&self.node, &ack).await;
            self.acked = upto;
        }
        let ev = self.rx.recv().await;
        match &ev {
            Some(Event::Data(..)) => self.taken += 1,
            Some(Event::End { .. }) | None => self.ended = true,
        }
        ev
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let open = self.streams.forget(self.id);
        if open && !self.ended {
            let streams = self.streams.clone();
            let node = std::mem::take(&mut self.node);
            let id = self.id;
            // Drop cannot wait; the close goes out on its own.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let close = Down::StreamClose {
                        v: SCHEMA_VERSION,
                        session: id,
                    };
                    streams.send(&node, &close).await;
                    debug!(node, session = id, "stream closed by the client");
                });
            }
        }
    }
}
