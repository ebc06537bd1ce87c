//! The hub ↔ agent protocol over MQTT: topic names, the messages that flow down (desired
//! state) and up (status, sync requests, heartbeats), and the sealed frame every payload
//! travels in. Documented for operators in docs/protocol.md.
//!
//! Every payload is sealed with the node's own key (XChaCha20-Poly1305, the topic as
//! associated data): the hub knows who sent a message by the key that opens it, and a
//! node cannot read another node's desired state even on a broker that does not
//! restrict subscriptions.

mod messages;
mod seal;
pub mod stream;
mod topics;

pub use messages::{Down, Heartbeat, PodRef, Up};
pub use seal::{FRAME_OVERHEAD, NodeKey, ProtocolError, open, seal};
pub use topics::{NodeTopic, TopicKind, parse_topic, topic};

/// The schema version carried by every message. A receiver rejects any other.
pub const SCHEMA_VERSION: u16 = 1;

/// The largest MQTT payload Skiff sends or accepts (a pod manifest may carry up to
/// 256 KiB of annotations; the rest of a pod fits easily in the remainder). Brokers are
/// configured with this as their maximum packet size plus headers.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Room for the MQTT fixed and variable headers on top of [`MAX_PAYLOAD`].
pub const MAX_PACKET: usize = MAX_PAYLOAD + 1024;

/// Encodes and seals a message for `topic`.
pub fn encode<T: serde::Serialize>(
    key: &NodeKey,
    topic: &str,
    nonce: [u8; 24],
    msg: &T,
) -> Result<Vec<u8>, ProtocolError> {
    let plain = serde_json::to_vec(msg).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    if plain.len() + FRAME_OVERHEAD > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            size: plain.len() + FRAME_OVERHEAD,
            max: MAX_PAYLOAD,
        });
    }
    Ok(seal(key, topic, nonce, &plain))
}

/// Opens and decodes a message received on `topic`, checking size, frame, key and
/// schema version. Never panics, whatever the bytes.
pub fn decode<T: serde::de::DeserializeOwned + Versioned>(
    key: &NodeKey,
    topic: &str,
    payload: &[u8],
) -> Result<T, ProtocolError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge {
            size: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    let plain = open(key, topic, payload)?;
    let msg: T = serde_json::from_slice(&plain).map_err(|e| ProtocolError::Decode {
        message: e.to_string(),
    })?;
    if msg.version() != SCHEMA_VERSION {
        return Err(ProtocolError::UnknownVersion(msg.version()));
    }
    Ok(msg)
}

/// Messages that carry a schema version.
pub trait Versioned {
    fn version(&self) -> u16;
}

#[cfg(test)]
mod tests;
