//! Stream sessions on the agent: `skiff logs` and `skiff exec` served over the agent's
//! own outbound MQTT connection (a device opens no port). The hub opens a session with
//! `streamOpen`; the agent answers with numbered `streamData` chunks and one `streamEnd`,
//! never more than [`WINDOW`] chunks beyond what the hub acknowledged, so a session
//! cannot flood a metered link or crowd status messages out of the MQTT client's queue.
//! Sessions live in memory only: an agent restart ends them (the hub times them out).
//!
//! [`logs`] reads a container's log files (tail across rotated files, previous instance,
//! follow with rotation); [`exec`] runs a command through the runtime's exec seam.

mod exec;
mod logs;
mod out;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_api::protocol::stream::{MAX_INPUT, MAX_SESSIONS_PER_NODE, Reorder, StreamKind, WINDOW};
use skiff_api::protocol::{Down, SCHEMA_VERSION, Up};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::runtime::ContainerRuntime;
use crate::sync::{HubLink, Seq};

pub use logs::{LogError, tail_start};
use out::Out;

/// How many finished session ids are remembered, so a redelivered `streamOpen` is not
/// served twice.
const REMEMBER_ENDED: usize = 64;

/// Standard input for an exec session, in order.
#[derive(Debug)]
pub(crate) struct Input {
    pub data: Vec<u8>,
    pub eof: bool,
}

/// Counters of stream control the agent dropped.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Acks, input or closes for a session this agent does not have.
    pub unknown_session: AtomicU64,
    /// Input larger than [`MAX_INPUT`] or out of its window.
    pub bad_input: AtomicU64,
    /// Opens refused because [`MAX_SESSIONS_PER_NODE`] sessions were running.
    pub refused: AtomicU64,
}

#[derive(Debug)]
struct Handle {
    acked: watch::Sender<u64>,
    cancel: watch::Sender<bool>,
    input: Option<mpsc::Sender<Input>>,
    order: Reorder<Input>,
}

#[derive(Debug, Default)]
struct Table {
    open: HashMap<u64, Handle>,
    ended: VecDeque<u64>,
}

/// Serves the stream sessions of one node.
#[derive(Debug, Clone)]
pub struct StreamServer {
    runtime: Arc<dyn ContainerRuntime>,
    link: Arc<dyn HubLink>,
    seq: Seq,
    table: Arc<Mutex<Table>>,
    pub counters: Arc<StreamCounters>,
}

impl StreamServer {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, link: Arc<dyn HubLink>, seq: Seq) -> Self {
        StreamServer {
            runtime,
            link,
            seq,
            table: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Acts on one stream control message from the hub (anything else is ignored).
    /// Never blocks: sessions run in their own tasks.
    pub fn handle(&self, msg: &Down) {
        let mut table = self.table.lock().expect("stream table lock");
        match msg {
            Down::StreamOpen {
                session,
                namespace,
                name,
                uid,
                container,
                kind,
                ..
            } => {
                if table.open.contains_key(session) || table.ended.contains(session) {
                    debug!(session, "stream open redelivered; ignored");
                    return;
                }
                let (acked, acked_rx) = watch::channel(0);
                let (cancel, cancel_rx) = watch::channel(false);
                let out = Out::new(
                    self.link.clone(),
                    self.seq.clone(),
                    *session,
                    acked_rx,
                    cancel_rx,
                );
                if table.open.len() >= MAX_SESSIONS_PER_NODE {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let why = format!(
                        "too many streams on this node (at most {MAX_SESSIONS_PER_NODE} at once)"
                    );
                    tokio::spawn(async move { out.end(None, Some(why)).await });
                    return;
                }
                let (input, input_rx) = match kind {
                    StreamKind::Exec { stdin: true, .. } => {
                        let (tx, rx) = mpsc::channel(2 * WINDOW as usize);
                        (Some(tx), Some(rx))
                    }
                    _ => (None, None),
                };
                table.open.insert(
                    *session,
                    Handle {
                        acked,
                        cancel,
                        input,
                        order: Reorder::new(2 * WINDOW),
                    },
                );
                let span = info_span!("stream", session, pod = %format!("{namespace}/{name}"), container = %container);
                let rt = self.runtime.clone();
                let name = name.clone();
                let uid = uid.clone();
                let container = container.clone();
                let kind = kind.clone();
                let me = self.clone();
                let session = *session;
                tokio::spawn(
                    async move {
                        info!(kind = kind_name(&kind), "stream opened");
                        match kind {
                            StreamKind::Logs {
                                follow,
                                tail_lines,
                                previous,
                                limit_bytes,
                            } => {
                                let req = logs::LogRequest {
                                    pod: name,
                                    uid,
                                    container,
                                    follow,
                                    tail_lines,
                                    previous,
                                    limit_bytes,
                                };
                                logs::serve(rt, out, req).await
                            }
                            StreamKind::Exec { command, .. } => {
                                exec::serve(rt, out, uid, container, command, input_rx).await
                            }
                        }
                        me.finished(session);
                        info!("stream ended");
                    }
                    .instrument(span),
                );
            }
            Down::StreamAck { session, chunk, .. } => match table.open.get(session) {
                Some(h) => {
                    h.acked.send_if_modified(|a| {
                        let newer = *chunk > *a;
                        if newer {
                            *a = *chunk;
                        }
                        newer
                    });
                }
                None => self.unknown(*session),
            },
            Down::StreamClose { session, .. } => match table.open.get(session) {
                Some(h) => {
                    let _ = h.cancel.send(true);
                }
                None => self.unknown(*session),
            },
            Down::StreamInput {
                session,
                seq,
                data,
                eof,
                ..
            } => {
                let Some(h) = table.open.get_mut(session) else {
                    self.unknown(*session);
                    return;
                };
                if data.len() > MAX_INPUT {
                    self.counters.bad_input.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        session,
                        bytes = data.len(),
                        "stream input too large; dropped"
                    );
                    return;
                }
                let Some(tx) = h.input.clone() else {
                    self.counters.bad_input.fetch_add(1, Ordering::Relaxed);
                    debug!(session, "input for a stream without stdin; dropped");
                    return;
                };
                let piece = Input {
                    data: data.clone(),
                    eof: *eof,
                };
                match h.order.push(*seq, piece) {
                    Ok(ready) => {
                        for p in ready {
                            if tx.try_send(p).is_err() {
                                // The command does not read its input as fast as it
                                // comes: end rather than buffer without bound.
                                self.counters.bad_input.fetch_add(1, Ordering::Relaxed);
                                warn!(session, "stream input overflowed; closing the session");
                                let _ = h.cancel.send(true);
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        self.counters.bad_input.fetch_add(1, Ordering::Relaxed);
                        debug!(session, seq, error = ?e, "stream input dropped");
                    }
                }
            }
            Down::PodUpsert { .. } | Down::PodDelete { .. } | Down::SyncDone { .. } => {}
        }
    }

    fn unknown(&self, session: u64) {
        let n = self
            .counters
            .unknown_session
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        debug!(
            session,
            unknown_total = n,
            "stream message for an unknown session; ignored"
        );
    }

    fn finished(&self, session: u64) {
        let mut table = self.table.lock().expect("stream table lock");
        table.open.remove(&session);
        table.ended.push_back(session);
        while table.ended.len() > REMEMBER_ENDED {
            table.ended.pop_front();
        }
    }

    /// Sessions running now.
    pub fn open_sessions(&self) -> usize {
        self.table.lock().expect("stream table lock").open.len()
    }
}

fn kind_name(kind: &StreamKind) -> &'static str {
    match kind {
        StreamKind::Logs { .. } => "logs",
        StreamKind::Exec { .. } => "exec",
    }
}

/// An `Up::StreamEnd` or data message; re-exported for the sender.
pub(crate) fn end_message(
    seq: u64,
    session: u64,
    chunk: u64,
    exit_code: Option<i32>,
    error: Option<String>,
) -> Up {
    Up::StreamEnd {
        v: SCHEMA_VERSION,
        seq,
        session,
        chunk,
        exit_code,
        error,
    }
}
