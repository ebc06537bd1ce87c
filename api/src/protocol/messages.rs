//! The messages. JSON inside the sealed frame, tagged by `t`, each with the schema
//! version `v`. Receivers are idempotent: anything at or below what they have applied is
//! ignored, so QoS 1 redelivery and reordering are harmless.

use serde::{Deserialize, Serialize};

use super::Versioned;
use super::stream::{Fd, StreamKind, bytes};
use crate::resources::{NodeStatus, Pod, PodStatus, Taint};

/// A pod the agent holds, as it tells the hub when it (re)connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod's `resourceVersion` the agent last applied.
    pub revision: u64,
}

/// Hub → node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Down {
    /// A pod bound to this node was created or its spec changed. `pod` carries metadata
    /// and spec (no status); `revision` is its resourceVersion.
    PodUpsert {
        v: u16,
        revision: u64,
        pod: Box<Pod>,
    },
    /// A pod is no longer bound to this node (deleted, or deleted and recreated under
    /// the same name with another uid: then an upsert with the new uid follows).
    PodDelete {
        v: u16,
        revision: u64,
        namespace: String,
        name: String,
        uid: String,
    },
    /// Ends the answer to a `Sync`: after the upserts and deletes before it, the agent's
    /// set of pods equals the hub's at `revision`. `pods` is how many that is.
    SyncDone { v: u16, revision: u64, pods: u32 },
    /// Opens a stream session (`skiff logs`, `skiff exec`) on a container of a pod the
    /// node runs. `session` is a random id the hub chose; the agent answers with chunk 0
    /// (possibly empty: accepted) or a `streamEnd` carrying why not.
    StreamOpen {
        v: u16,
        session: u64,
        namespace: String,
        name: String,
        uid: String,
        container: String,
        kind: StreamKind,
    },
    /// Standard input for an exec session, numbered from 0 per session; `eof` closes
    /// the command's standard input after `data`.
    StreamInput {
        v: u16,
        session: u64,
        seq: u64,
        #[serde(with = "bytes")]
        data: Vec<u8>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        eof: bool,
    },
    /// Every chunk below `chunk` reached the client: the agent may send up to
    /// `chunk + WINDOW - 1`.
    StreamAck { v: u16, session: u64, chunk: u64 },
    /// The client went away: stop following, kill the command.
    StreamClose { v: u16, session: u64 },
}

/// Node → hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Up {
    /// Sent on every (re)connect: what the agent holds. The hub answers with only the
    /// differences, then `SyncDone`.
    Sync {
        v: u16,
        seq: u64,
        /// The hub revision of the last `SyncDone` the agent applied (0: never).
        revision: u64,
        pods: Vec<PodRef>,
    },
    /// A pod's observed status changed.
    PodStatus {
        v: u16,
        seq: u64,
        namespace: String,
        name: String,
        uid: String,
        status: Box<PodStatus>,
    },
    /// The node's status (capacity, addresses, system info, conditions) changed, or the
    /// agent just started. The labels and taints the agent was configured with ride
    /// along; the hub adds them to the Node (it never removes what an operator set).
    NodeStatus {
        v: u16,
        seq: u64,
        status: Box<NodeStatus>,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        labels: std::collections::BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        taints: Vec<Taint>,
    },
    /// Something happened to a pod that status alone does not tell (an image pulled or
    /// failing to pull, a container killed by its liveness probe, a back-off). The hub
    /// records it as an Event whose involved object is the pod, counting repeats.
    PodEvent {
        v: u16,
        seq: u64,
        namespace: String,
        name: String,
        uid: String,
        /// `Normal` or `Warning`.
        #[serde(rename = "type")]
        type_: String,
        reason: String,
        message: String,
    },
    /// Output of a stream session. `chunk` numbers the session's pieces from 0 (the
    /// `streamEnd` takes the number after the last data); `seq` is not checked against
    /// the node's status sequence, the hub orders pieces by `chunk`.
    StreamData {
        v: u16,
        seq: u64,
        session: u64,
        chunk: u64,
        fd: Fd,
        #[serde(with = "bytes")]
        data: Vec<u8>,
    },
    /// Standard input flow control of an exec session: the agent has handed the command
    /// the `streamInput` pieces numbered below `taken`. An agent that sends this (the
    /// first, with `taken` 0, before it accepts the session) gets at most
    /// [`super::stream::WINDOW`] pieces beyond `taken` in flight; the hub sends input
    /// only after the session was accepted.
    StreamInputAck {
        v: u16,
        seq: u64,
        session: u64,
        taken: u64,
    },
    /// The last piece of a session: the command's exit code, or why the stream ended
    /// early or could not start.
    StreamEnd {
        v: u16,
        seq: u64,
        session: u64,
        chunk: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Node → hub on the heartbeat topic: a lease renewal, a few bytes. `gone` marks the
/// last will, published by the broker when the agent vanishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u16,
    /// Monotonic per agent process (milliseconds since the epoch at worst), so a replayed
    /// heartbeat is ignored.
    pub s: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

impl Versioned for Down {
    fn version(&self) -> u16 {
        match self {
            Down::PodUpsert { v, .. }
            | Down::PodDelete { v, .. }
            | Down::SyncDone { v, .. }
            | Down::StreamOpen { v, .. }
            | Down::StreamInput { v, .. }
            | Down::StreamAck { v, .. }
            | Down::StreamClose { v, .. } => *v,
        }
    }
}

impl Versioned for Up {
    fn version(&self) -> u16 {
        match self {
            Up::Sync { v, .. }
            | Up::PodStatus { v, .. }
            | Up::NodeStatus { v, .. }
            | Up::PodEvent { v, .. }
            | Up::StreamData { v, .. }
            | Up::StreamInputAck { v, .. }
            | Up::StreamEnd { v, .. } => *v,
        }
    }
}

impl Versioned for Heartbeat {
    fn version(&self) -> u16 {
        self.v
    }
}

impl Up {
    /// The sender's sequence number: the hub ignores a message whose `seq` is not above
    /// the last one it accepted from that node.
    pub fn seq(&self) -> u64 {
        match self {
            Up::Sync { seq, .. }
            | Up::PodStatus { seq, .. }
            | Up::NodeStatus { seq, .. }
            | Up::PodEvent { seq, .. }
            | Up::StreamData { seq, .. }
            | Up::StreamInputAck { seq, .. }
            | Up::StreamEnd { seq, .. } => *seq,
        }
    }

    /// Stream session output: ordered per session by `chunk`, not by `seq`.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Up::StreamData { .. } | Up::StreamInputAck { .. } | Up::StreamEnd { .. }
        )
    }
}

impl Down {
    /// Stream session control: acted on at once, never persisted.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Down::StreamOpen { .. }
                | Down::StreamInput { .. }
                | Down::StreamAck { .. }
                | Down::StreamClose { .. }
        )
    }
}
