//! Opening upward messages: the topic names the claimed node, the frame must open with
//! that node's key (this is NodeRestriction: a node can only speak for itself), and
//! sequence numbers must grow. Pure apart from the key lookup handed in.

use std::collections::HashMap;

use skiff_api::protocol::{
    Heartbeat, MAX_PAYLOAD, NodeKey, ProtocolError, TopicKind, Up, decode, parse_topic,
};

use super::metrics::Reject;

/// An upward message that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Opened {
    Up(Up),
    Heartbeat(Heartbeat),
}

/// The last sequence numbers accepted from one node.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    up: u64,
    heartbeat: u64,
    will: u64,
}

/// Per-node replay state. In memory: after a hub restart any sequence is accepted once.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    seen: HashMap<String, Seen>,
}

fn classify(e: &ProtocolError) -> Reject {
    match e {
        ProtocolError::TooLarge { .. } => Reject::TooLarge,
        ProtocolError::UnknownFrameVersion(_) | ProtocolError::UnknownVersion(_) => {
            Reject::UnknownVersion
        }
        ProtocolError::Unauthenticated | ProtocolError::BadKey => Reject::Unauthenticated,
        ProtocolError::BadFrame(_) | ProtocolError::Decode { .. } | ProtocolError::Encode(_) => {
            Reject::Malformed
        }
    }
}

impl Gate {
    /// Checks one message from the broker; `key` finds a node's current key.
    pub(crate) fn open(
        &mut self,
        topic: &str,
        payload: &[u8],
        key: impl Fn(&str) -> Option<NodeKey>,
    ) -> Result<(String, Opened), Reject> {
        let t = parse_topic(topic).ok_or(Reject::Malformed)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(Reject::TooLarge);
        }
        let key = key(&t.node).ok_or(Reject::Unauthenticated)?;
        let opened = match t.kind {
            // The hub publishes there; nobody else may.
            TopicKind::Down => return Err(Reject::Malformed),
            TopicKind::Up => {
                Opened::Up(decode::<Up>(&key, topic, payload).map_err(|e| classify(&e))?)
            }
            TopicKind::Heartbeat => Opened::Heartbeat(
                decode::<Heartbeat>(&key, topic, payload).map_err(|e| classify(&e))?,
            ),
        };
        // Stream output is ordered per session by its chunk number (hub/src/stream).
        if let Opened::Up(up) = &opened
            && up.is_stream()
        {
            return Ok((t.node, opened));
        }
        let seen = self.seen.entry(t.node.clone()).or_default();
        // The last will is sealed when the agent connects, so its number is older than
        // the heartbeats that follow; it is checked against earlier wills only.
        let (last, s) = match &opened {
            Opened::Up(up) => (&mut seen.up, up.seq()),
            Opened::Heartbeat(hb) if hb.gone => (&mut seen.will, hb.s),
            Opened::Heartbeat(hb) => (&mut seen.heartbeat, hb.s),
        };
        if s <= *last {
            return Err(Reject::Replay);
        }
        *last = s;
        Ok((t.node, opened))
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::protocol::{SCHEMA_VERSION, encode, seal, topic};
    use skiff_api::resources::NodeStatus;

    use super::*;

    fn key(b: u8) -> NodeKey {
        NodeKey::from_bytes([b; 32])
    }

    fn keys(node: &str) -> Option<NodeKey> {
        match node {
            "a" => Some(key(1)),
            "b" => Some(key(2)),
            _ => None,
        }
    }

    fn status(seq: u64) -> Up {
        Up::NodeStatus {
            v: SCHEMA_VERSION,
            seq,
            status: Box::new(NodeStatus::default()),
            labels: Default::default(),
            taints: Vec::new(),
        }
    }

    #[test]
    fn only_the_named_nodes_key_opens_and_sequences_must_grow() {
        let mut gate = Gate::default();
        let ta = topic("a", TopicKind::Up);
        let tb = topic("b", TopicKind::Up);
        let ok = encode(&key(1), &ta, [1; 24], &status(5)).unwrap();
        assert_eq!(gate.open(&ta, &ok, keys).unwrap().0, "a");
        assert_eq!(gate.open(&ta, &ok, keys), Err(Reject::Replay));
        // Node a's frame on b's topic, sealed for b's topic with a's key: rejected.
        let spoof = encode(&key(1), &tb, [2; 24], &status(9)).unwrap();
        assert_eq!(gate.open(&tb, &spoof, keys), Err(Reject::Unauthenticated));
        // A frame moved from a's topic to b's does not open either.
        assert_eq!(gate.open(&tb, &ok, keys), Err(Reject::Unauthenticated));
        assert_eq!(
            gate.open(&topic("z", TopicKind::Up), &ok, keys),
            Err(Reject::Unauthenticated)
        );
        assert_eq!(gate.open("elsewhere", &ok, keys), Err(Reject::Malformed));
        assert_eq!(
            gate.open(&ta, b"garbage", keys),
            Err(Reject::UnknownVersion)
        );
        assert_eq!(gate.open(&ta, &[1u8; 10], keys), Err(Reject::Malformed));
        assert_eq!(
            gate.open(&ta, &seal(&key(1), &ta, [3; 24], b"{\"t\":\"nope\"}"), keys),
            Err(Reject::Malformed)
        );
        let v2 = br#"{"t":"nodeStatus","v":2,"seq":99,"status":{}}"#;
        assert_eq!(
            gate.open(&ta, &seal(&key(1), &ta, [4; 24], v2), keys),
            Err(Reject::UnknownVersion)
        );
        assert_eq!(
            gate.open(&ta, &vec![0u8; MAX_PAYLOAD + 1], keys),
            Err(Reject::TooLarge)
        );
        let next = encode(&key(1), &ta, [5; 24], &status(6)).unwrap();
        assert!(gate.open(&ta, &next, keys).is_ok());
    }

    #[test]
    fn heartbeats_wills_and_updates_have_separate_sequences() {
        let mut gate = Gate::default();
        let th = topic("a", TopicKind::Heartbeat);
        let hb = |s: u64, gone: bool| {
            encode(
                &key(1),
                &th,
                [s as u8; 24],
                &Heartbeat {
                    v: SCHEMA_VERSION,
                    s,
                    gone,
                },
            )
            .unwrap()
        };
        assert!(gate.open(&th, &hb(10, false), keys).is_ok());
        assert!(gate.open(&th, &hb(11, false), keys).is_ok());
        assert_eq!(gate.open(&th, &hb(11, false), keys), Err(Reject::Replay));
        // The will carries the number from connect time, below the heartbeats.
        assert!(matches!(
            gate.open(&th, &hb(10, true), keys),
            Ok((_, Opened::Heartbeat(Heartbeat { gone: true, .. })))
        ));
        assert_eq!(gate.open(&th, &hb(10, true), keys), Err(Reject::Replay));
        let ta = topic("a", TopicKind::Up);
        assert!(
            gate.open(
                &ta,
                &encode(&key(1), &ta, [9; 24], &status(1)).unwrap(),
                keys
            )
            .is_ok()
        );
    }
}
