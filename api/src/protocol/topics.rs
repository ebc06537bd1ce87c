//! MQTT topic names. Short on purpose: the topic is sent with every message, and
//! heartbeats on metered links must stay tiny.
//!
//! - `skiff/v1/n/{node}/d`: desired state, hub → node (QoS 1)
//! - `skiff/v1/n/{node}/u`: status and sync requests, node → hub (QoS 1)
//! - `skiff/v1/n/{node}/h`: heartbeats and the last will, node → hub (QoS 0)

use std::fmt;

const PREFIX: &str = "skiff/v1/n/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Hub → node.
    Down,
    /// Node → hub.
    Up,
    /// Node → hub heartbeats.
    Heartbeat,
}

impl TopicKind {
    fn suffix(self) -> &'static str {
        match self {
            TopicKind::Down => "d",
            TopicKind::Up => "u",
            TopicKind::Heartbeat => "h",
        }
    }

    /// The subscription filter matching this kind for every node (`skiff/v1/n/+/u`).
    pub fn all_nodes_filter(self) -> String {
        format!("{PREFIX}+/{}", self.suffix())
    }
}

/// The topic of `kind` for `node`.
pub fn topic(node: &str, kind: TopicKind) -> String {
    format!("{PREFIX}{node}/{}", kind.suffix())
}

/// A parsed Skiff topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTopic {
    pub node: String,
    pub kind: TopicKind,
}

impl fmt::Display for NodeTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&topic(&self.node, self.kind))
    }
}

/// Parses a topic Skiff uses; `None` for anything else (including a node name with a
/// `/`, `+` or `#`, or an empty one).
pub fn parse_topic(t: &str) -> Option<NodeTopic> {
    let rest = t.strip_prefix(PREFIX)?;
    let (node, suffix) = rest.rsplit_once('/')?;
    if node.is_empty() || node.contains(['/', '+', '#']) {
        return None;
    }
    let kind = match suffix {
        "d" => TopicKind::Down,
        "u" => TopicKind::Up,
        "h" => TopicKind::Heartbeat,
        _ => return None,
    };
    Some(NodeTopic {
        node: node.to_string(),
        kind,
    })
}
