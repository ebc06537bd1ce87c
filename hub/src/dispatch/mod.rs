//! The hub's side of hub ↔ agent over MQTT (protocol in docs/protocol.md).
//!
//! - [`Dispatcher`] is the seam to the broker: publish a sealed frame to a node's topic,
//!   and receive what nodes publish. [`MqttDispatcher`] is the real one, an MQTT client
//!   that works against the embedded broker ([`EmbeddedBroker`], rumqttd, which the hub
//!   logs into over loopback like any client) and against an external one (Mosquitto).
//! - [`HubLink`] runs the loop: it lists and watches pods, publishes desired state to
//!   the node each pod is bound to, answers `Sync` with only the differences, opens and
//!   checks every upward message with the sender's key (NodeRestriction), writes pod and
//!   node status to the store, and keeps each node's lease for the node lifecycle.
//! - [`DynSec`] keeps per-node clients and ACLs in Mosquitto (dynamic security plugin).
//! - [`Counters`] counts rejected messages by reason, served at `GET /skiff/v1/metrics`.

mod broker;
mod events;
mod index;
mod ingest;
mod link;
mod metrics;
mod mosquitto;
mod mqtt;
mod sent;

use async_trait::async_trait;
use skiff_api::protocol::TopicKind;

pub use broker::{BrokerError, EmbeddedBroker, EmbeddedOptions, HUB_USERNAME};
pub use link::{HubLink, LinkOptions};
pub use metrics::{Counters, Reject, metrics_routes};
pub use mosquitto::{DynSec, DynSecError, HUB_ROLE};
pub use mqtt::{BrokerLogin, BrokerUrl, MqttDispatcher, UrlError};

/// A message a node published, as the broker delivered it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the MQTT client stopped")]
    Closed,
}

/// The hub's connection to the broker.
#[async_trait]
pub trait Dispatcher: Send + Sync + std::fmt::Debug {
    /// Publishes `payload` (a sealed frame) on `node`'s topic of `kind`; QoS 1 for
    /// desired state, QoS 0 for heartbeats.
    async fn publish(
        &self,
        node: &str,
        kind: TopicKind,
        payload: Vec<u8>,
    ) -> Result<(), DispatchError>;

    /// The next message nodes published (on `skiff/v1/n/+/u` and `skiff/v1/n/+/h`);
    /// `None` once the dispatcher stopped.
    async fn next(&self) -> Option<Incoming>;
}
