//! What `skiff logs` and `skiff exec` streams share on both ends of the link: the limits
//! (chunk size, credit window, sessions per node), the byte encoding inside JSON
//! messages, and [`Reorder`], which puts numbered pieces back in order and drops QoS 1
//! duplicates.
//!
//! Stream messages do not take part in the per-node `seq` ordering of status messages:
//! each session numbers its own pieces (`chunk` up, `seq` of input down), so a redelivered
//! or overtaken piece is sorted back into place instead of dropped, and stream traffic can
//! never make the hub discard a pod status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most output bytes one `streamData` carries (well under `MAX_PAYLOAD` once
/// base64-encoded and sealed).
pub const CHUNK_SIZE: usize = 32 * 1024;

/// How many chunks an agent may have sent beyond the last one the hub acknowledged.
/// With [`CHUNK_SIZE`] this caps what one session has in flight on a metered link.
pub const WINDOW: u64 = 8;

/// Concurrent stream sessions per node; the hub refuses more, and so does the agent.
pub const MAX_SESSIONS_PER_NODE: usize = 4;

/// The most stdin bytes one `streamInput` carries.
pub const MAX_INPUT: usize = 32 * 1024;

/// Which output of a process a chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fd {
    Stdout,
    Stderr,
}

/// What a stream session serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StreamKind {
    /// A container's log.
    #[serde(rename_all = "camelCase")]
    Logs {
        /// Keep sending what the running instance writes until the session closes or
        /// the instance ends.
        follow: bool,
        /// Only the last this many lines (across rotated files).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail_lines: Option<u64>,
        /// The log of the instance before the last restart.
        #[serde(default)]
        previous: bool,
        /// Stop after this many bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_bytes: Option<u64>,
    },
    /// A command run inside the running container.
    #[serde(rename_all = "camelCase")]
    Exec {
        command: Vec<String>,
        /// Whether `streamInput` messages feed the command's standard input (otherwise
        /// it reads end-of-file at once).
        stdin: bool,
    },
}

/// Why [`Reorder::push`] did not take a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReorderError {
    /// Already delivered or already waiting: a redelivery.
    Duplicate,
    /// Further ahead than the window allows: the sender broke flow control.
    TooFarAhead,
}

/// Puts pieces numbered from 0 back in order. Pure; at most `window` pieces wait.
#[derive(Debug, Clone)]
pub struct Reorder<T> {
    next: u64,
    window: u64,
    waiting: BTreeMap<u64, T>,
}

impl<T> Reorder<T> {
    pub fn new(window: u64) -> Reorder<T> {
        Reorder {
            next: 0,
            window,
            waiting: BTreeMap::new(),
        }
    }

    /// The number of the next piece to deliver: every piece below it has been.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Takes piece `n`; returns the pieces now deliverable, in order (empty when `n`
    /// waits for an earlier one).
    pub fn push(&mut self, n: u64, piece: T) -> Result<Vec<T>, ReorderError> {
        if n < self.next || self.waiting.contains_key(&n) {
            return Err(ReorderError::Duplicate);
        }
        if n >= self.next.saturating_add(self.window) {
            return Err(ReorderError::TooFarAhead);
        }
        self.waiting.insert(n, piece);
        let mut ready = Vec::new();
        while let Some(p) = self.waiting.remove(&self.next) {
            ready.push(p);
            self.next += 1;
        }
        Ok(ready)
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes [`base64_encode`]'s output; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// `#[serde(with = "bytes")]`: bytes as a base64 string.
pub(crate) mod bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::base64_encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::base64_decode(&text).ok_or_else(|| D::Error::custom("data is not valid base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
            assert_eq!(base64_decode(coded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
        for bad in ["Zg=", "Z===", "Zg==Zm8=", "Zm9*", "===="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn reorder_delivers_in_order_and_drops_duplicates() {
        let mut r = Reorder::new(4);
        assert_eq!(r.push(1, "b").unwrap(), Vec::<&str>::new());
        assert_eq!(r.push(1, "b"), Err(ReorderError::Duplicate));
        assert_eq!(r.push(0, "a").unwrap(), vec!["a", "b"]);
        assert_eq!(r.push(0, "a"), Err(ReorderError::Duplicate));
        assert_eq!(r.next(), 2);
        assert_eq!(r.push(6, "g"), Err(ReorderError::TooFarAhead));
        assert_eq!(r.push(5, "f").unwrap(), Vec::<&str>::new());
        assert_eq!(r.push(3, "d").unwrap(), Vec::<&str>::new());
        assert_eq!(r.push(2, "c").unwrap(), vec!["c", "d"]);
        assert_eq!(r.push(4, "e").unwrap(), vec!["e", "f"]);
        assert_eq!(r.next(), 6);
    }

    #[test]
    fn a_full_chunk_fits_a_frame_and_round_trips() {
        use crate::protocol::{
            Down, NodeKey, SCHEMA_VERSION, TopicKind, Up, decode, encode, topic,
        };
        let key = NodeKey::from_bytes([7; 32]);
        let t = topic("edge-1", TopicKind::Up);
        let data: Vec<u8> = (0..CHUNK_SIZE).map(|i| (i * 7) as u8).collect();
        let msg = Up::StreamData {
            v: SCHEMA_VERSION,
            seq: 9,
            session: u64::MAX,
            chunk: 3,
            fd: Fd::Stderr,
            data,
        };
        let frame = encode(&key, &t, [1; 24], &msg).unwrap();
        assert!(frame.len() < 50 * 1024, "{} bytes", frame.len());
        assert_eq!(decode::<Up>(&key, &t, &frame).unwrap(), msg);
        assert!(msg.is_stream());
        let td = topic("edge-1", TopicKind::Down);
        let open = Down::StreamOpen {
            v: SCHEMA_VERSION,
            session: 1,
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            container: "app".into(),
            kind: StreamKind::Logs {
                follow: true,
                tail_lines: Some(10),
                previous: false,
                limit_bytes: None,
            },
        };
        let frame = encode(&key, &td, [2; 24], &open).unwrap();
        assert_eq!(decode::<Down>(&key, &td, &frame).unwrap(), open);
        let json = serde_json::to_string(&open).unwrap();
        assert!(
            json.contains(r#""kind":{"type":"logs","follow":true,"tailLines":10"#),
            "{json}"
        );
        let bad = r#"{"t":"streamInput","v":1,"session":1,"seq":0,"data":"%%%%"}"#;
        assert!(serde_json::from_str::<Down>(bad).is_err());
    }
}
