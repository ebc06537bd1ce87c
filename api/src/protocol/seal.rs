//! The sealed frame: `[1 byte frame version][24-byte nonce][ciphertext + 16-byte tag]`,
//! XChaCha20-Poly1305 under the node's key with the topic as associated data, so a frame
//! cannot be moved to another topic or read by another node.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const FRAME_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Bytes a sealed frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A node's 256-bit key, issued by the hub when the node joins.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeKey([u8; 32]);

impl NodeKey {
    pub fn from_bytes(bytes: [u8; 32]) -> NodeKey {
        NodeKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as stored in credential files.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Result<NodeKey, ProtocolError> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(ProtocolError::BadKey);
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ProtocolError::BadKey)?;
        }
        Ok(NodeKey(out))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("NodeKey(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed frame: {0}")]
    BadFrame(&'static str),
    #[error("unknown frame version {0}")]
    UnknownFrameVersion(u8),
    #[error("unknown schema version {0}")]
    UnknownVersion(u16),
    #[error("frame does not open with this node's key (wrong sender, topic or tampered)")]
    Unauthenticated,
    #[error("undecodable message: {message}")]
    Decode { message: String },
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("a node key is 64 hex digits")]
    BadKey,
}

/// Seals `plain` for `topic`. `nonce` must be fresh random bytes for every frame.
pub fn seal(key: &NodeKey, topic: &str, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: topic.as_bytes(),
            },
        )
        .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(FRAME_OVERHEAD + plain.len());
    out.push(FRAME_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens a frame received on `topic`.
pub fn open(key: &NodeKey, topic: &str, frame: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let (&version, rest) = frame
        .split_first()
        .ok_or(ProtocolError::BadFrame("empty"))?;
    if version != FRAME_VERSION {
        return Err(ProtocolError::UnknownFrameVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(ProtocolError::BadFrame("shorter than nonce and tag"));
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: topic.as_bytes(),
            },
        )
        .map_err(|_| ProtocolError::Unauthenticated)
}
