//! [`HubLink`]: the loop between the store and the broker. One task owns the pod index,
//! the replay gate and the leases, so none of them needs a lock; store writes go to a
//! second task that batches them, so a slow disk never delays desired state.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use skiff_api::protocol::{Down, Heartbeat, SCHEMA_VERSION, TopicKind, Up, encode, topic};
use skiff_api::resources::{NodeStatus, PodStatus, Taint};
use skiff_api::{Kind, Object, ObjectKey};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::events::{EVENTS_PER_BATCH, EventBudget, PodEvent, Recorder, key_of, severity};
use super::index::{Change, PodIndex};
use super::ingest::{Gate, Opened};
use super::metrics::{Counters, Reject};
use super::sent::Sent;
use super::{Dispatcher, Incoming};
use crate::clock::Clock;
use crate::join::Credentials;
use crate::nodes::{self, Leases, Transition};
use crate::store::{EventType, Scope, Store, StoreError, Watch, Write, Written};

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Time without a heartbeat before a node's Ready condition becomes Unknown.
    pub node_grace: Duration,
    /// Where to keep what each node was sent across restarts (in the data dir), so a
    /// restarted hub answers agents' syncs with only what changed; `None` keeps
    /// nothing and a restarted hub sends every pod again.
    pub sent_file: Option<PathBuf>,
}

/// The hub side of hub ↔ agent.
#[derive(Debug)]
pub struct HubLink {
    store: Arc<dyn Store>,
    dispatcher: Arc<dyn Dispatcher>,
    credentials: Credentials,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
    options: LinkOptions,
    streams: Option<Arc<crate::stream::Streams>>,
}

/// A store write the link wants.
#[derive(Debug)]
enum Job {
    PodStatus {
        node: String,
        key: ObjectKey,
        uid: String,
        status: Box<PodStatus>,
    },
    NodeReport {
        node: String,
        status: Box<NodeStatus>,
        labels: std::collections::BTreeMap<String, String>,
        taints: Vec<Taint>,
    },
    Transition(Transition),
}

impl HubLink {
    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Arc<dyn Dispatcher>,
        credentials: Credentials,
        counters: Arc<Counters>,
        clock: Arc<dyn Clock>,
        options: LinkOptions,
    ) -> HubLink {
        HubLink {
            store,
            dispatcher,
            credentials,
            counters,
            clock,
            options,
            streams: None,
        }
    }

    /// Hands stream session output (`skiff logs`, `skiff exec`) to `streams`.
    pub fn with_streams(mut self, streams: Arc<crate::stream::Streams>) -> HubLink {
        self.streams = Some(streams);
        self
    }

    /// Runs until `shutdown` completes or the store closes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let (jobs_tx, jobs_rx) = mpsc::channel(8192);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let writer = tokio::spawn(write_loop(
            self.store.clone(),
            self.clock.clone(),
            jobs_rx,
            events_rx,
        ));
        let mut budget = EventBudget::default();
        let (nodes, _) = self.store.list(&Scope::kind(Kind::Node));
        let mut leases = Leases::new(self.options.node_grace, &nodes, Instant::now());
        let mut gate = Gate::default();
        let mut index = PodIndex::default();
        if let Some(path) = &self.options.sent_file {
            match Sent::load(path) {
                Ok(sent) => index.seed(sent),
                Err(e) => {
                    warn!(error = %e, "ignoring the record of sent desired state; every pod is sent again")
                }
            }
        }
        let mut saver = Saver::default();
        let tick_every =
            (self.options.node_grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        'relist: loop {
            let (pods, rev) = self.store.list(&Scope::kind(Kind::Pod));
            let changes = index.relist(&pods, rev);
            self.send_all(changes).await;
            let mut watch: Watch = match self.store.watch(Scope::kind(Kind::Pod), rev) {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot watch pods; retrying");
                    tokio::select! {
                        () = &mut shutdown => break 'relist,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue 'relist,
                    }
                }
            };
            loop {
                tokio::select! {
                    () = &mut shutdown => break 'relist,
                    ev = watch.next() => match ev {
                        None => break 'relist,
                        Some(Err(e)) => {
                            debug!(error = %e, "pod watch broke; relisting");
                            continue 'relist;
                        }
                        Some(Ok(ev)) => {
                            let deleted = ev.event_type == EventType::Deleted;
                            let changes = index.observe(&ev.object, ev.revision, deleted);
                            self.send_all(changes).await;
                        }
                    },
                    msg = self.dispatcher.next() => match msg {
                        None => {
                            warn!("the MQTT dispatcher stopped");
                            break 'relist;
                        }
                        Some(msg) => {
                            let mut to = Queues { jobs: &jobs_tx, events: &events_tx, budget: &mut budget };
                            self.handle(&msg, &mut gate, &mut index, &mut leases, &mut to).await;
                        }
                    },
                    _ = tick.tick() => {
                        saver.maybe_save(&self.options.sent_file, &index, false);
                        for t in leases.expire(Instant::now()) {
                            if let Transition::Unknown(node) = &t {
                                info!(node = %node, "no heartbeat within the grace period; node Ready is Unknown");
                            }
                            let _ = jobs_tx.send(Job::Transition(t)).await;
                        }
                    }
                }
            }
        }
        // The final record must follow any save still running, never race it.
        saver.finish().await;
        saver.maybe_save(&self.options.sent_file, &index, true);
        saver.finish().await;
        drop(jobs_tx);
        drop(events_tx);
        let _ = writer.await;
    }

    async fn send_all(&self, changes: Vec<Change>) {
        for c in changes {
            let (node, msg) = match c {
                Change::Upsert {
                    node,
                    revision,
                    pod,
                } => {
                    let Object::Pod(p) = &*pod else { continue };
                    let mut p = p.clone();
                    p.status = None;
                    (
                        node,
                        Down::PodUpsert {
                            v: SCHEMA_VERSION,
                            revision,
                            pod: Box::new(p),
                        },
                    )
                }
                Change::Delete {
                    node,
                    revision,
                    namespace,
                    name,
                    uid,
                } => (
                    node,
                    Down::PodDelete {
                        v: SCHEMA_VERSION,
                        revision,
                        namespace,
                        name,
                        uid,
                    },
                ),
            };
            self.send(&node, &msg).await;
        }
    }

    /// Seals `msg` with `node`'s key and publishes it. A node that has not joined has no
    /// key and gets nothing; it syncs when it connects.
    async fn send(&self, node: &str, msg: &Down) {
        let Some(key) = self.credentials.key(node) else {
            debug!(
                node,
                "no credentials for node; desired state waits for its sync"
            );
            return;
        };
        let t = topic(node, TopicKind::Down);
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        match encode(&key, &t, nonce, msg) {
            Ok(frame) => {
                if let Err(e) = self.dispatcher.publish(node, TopicKind::Down, frame).await {
                    warn!(node, error = %e, "publishing desired state failed");
                } else {
                    self.counters.publish();
                }
            }
            Err(e) => warn!(node, error = %e, "cannot encode desired state"),
        }
    }

    async fn handle(
        &self,
        msg: &Incoming,
        gate: &mut Gate,
        index: &mut PodIndex,
        leases: &mut Leases,
        to: &mut Queues<'_>,
    ) {
        let jobs = to.jobs;
        let opened = gate.open(&msg.topic, &msg.payload, |n| self.credentials.key(n));
        let (node, opened) = match opened {
            Ok(o) => o,
            Err(why) => {
                self.counters.reject(why);
                warn!(topic = %msg.topic, bytes = msg.payload.len(), reason = why.as_str(), "rejected MQTT message");
                return;
            }
        };
        let span = tracing::debug_span!("mqtt_message", node = %node);
        let _enter = span.enter();
        let now = Instant::now();
        match opened {
            Opened::Heartbeat(Heartbeat { gone: true, .. }) => {
                self.counters.accept();
                if let Some(t) = leases.gone(&node) {
                    info!(node = %node, "agent gone (last will); node Ready is Unknown");
                    let _ = jobs.send(Job::Transition(t)).await;
                }
            }
            Opened::Heartbeat(_) => {
                self.counters.accept();
                if let Some(t) = leases.renew(&node, now) {
                    info!(node = %node, "heartbeats returned; node Ready");
                    let _ = jobs.send(Job::Transition(t)).await;
                }
            }
            Opened::Up(Up::Sync { pods, .. }) => {
                self.counters.accept();
                if let Some(t) = leases.renew(&node, now) {
                    let _ = jobs.send(Job::Transition(t)).await;
                }
                let diff = index.diff(&node, &pods);
                debug!(node = %node, held = pods.len(), sent = diff.len(), "sync");
                self.send_all(diff).await;
                let done = Down::SyncDone {
                    v: SCHEMA_VERSION,
                    revision: index.revision(),
                    pods: index.count(&node) as u32,
                };
                self.send(&node, &done).await;
            }
            Opened::Up(Up::PodStatus {
                namespace,
                name,
                uid,
                status,
                ..
            }) => {
                if !index.bound_to(&uid, &node) {
                    self.counters.reject(Reject::NotBound);
                    warn!(node = %node, pod = %name, namespace = %namespace, "status for a pod not bound to this node; rejected");
                    return;
                }
                self.counters.accept();
                if let Some(t) = leases.renew(&node, now) {
                    let _ = jobs.send(Job::Transition(t)).await;
                }
                let key = ObjectKey::new(Kind::Pod, namespace, name);
                let _ = jobs
                    .send(Job::PodStatus {
                        node: node.clone(),
                        key,
                        uid,
                        status,
                    })
                    .await;
            }
            Opened::Up(Up::PodEvent {
                namespace,
                name,
                uid,
                type_,
                reason,
                message,
                ..
            }) => {
                if !index.bound_to(&uid, &node) {
                    self.counters.reject(Reject::NotBound);
                    warn!(node = %node, pod = %name, namespace = %namespace, "event for a pod not bound to this node; rejected");
                    return;
                }
                let Some(severity) = severity(&type_) else {
                    self.counters.reject(Reject::Malformed);
                    warn!(node = %node, pod = %name, r#type = %type_, "event type is neither Normal nor Warning; rejected");
                    return;
                };
                if reason.is_empty() {
                    self.counters.reject(Reject::Malformed);
                    warn!(node = %node, pod = %name, "event without a reason; rejected");
                    return;
                }
                let ev = PodEvent {
                    node: node.clone(),
                    namespace,
                    name,
                    uid,
                    severity,
                    reason,
                    message,
                };
                // Dropped rather than queued without bound: status writes come first.
                if !to.budget.take(&node, now) || to.events.try_send(ev).is_err() {
                    self.counters.reject(Reject::EventFlood);
                    debug!(node = %node, "pod event dropped: over the node's budget or the queue is full");
                    return;
                }
                self.counters.accept();
            }
            Opened::Up(
                up @ (Up::StreamData { .. } | Up::StreamInputAck { .. } | Up::StreamEnd { .. }),
            ) => {
                self.counters.accept();
                if let Some(streams) = &self.streams {
                    streams.incoming(&node, up);
                }
            }
            Opened::Up(Up::NodeStatus {
                status,
                labels,
                taints,
                ..
            }) => {
                self.counters.accept();
                leases.reported(&node, now);
                let _ = jobs
                    .send(Job::NodeReport {
                        node: node.clone(),
                        status,
                        labels,
                        taints,
                    })
                    .await;
            }
        }
    }
}

/// Writes the record of sent desired state now and then, off the link's task.
#[derive(Debug, Default)]
struct Saver {
    /// The index revision last written.
    saved: u64,
    last: Option<Instant>,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Saver {
    /// How often a changed record is written while running; the final one is written
    /// on shutdown.
    const EVERY: Duration = Duration::from_secs(30);

    fn maybe_save(&mut self, path: &Option<PathBuf>, index: &PodIndex, last: bool) {
        let Some(path) = path else { return };
        if index.revision() == self.saved
            || self.running.as_ref().is_some_and(|h| !h.is_finished())
            || (!last && self.last.is_some_and(|t| t.elapsed() < Self::EVERY))
        {
            return;
        }
        let sent = index.sent();
        self.saved = sent.revision;
        self.last = Some(Instant::now());
        let path = path.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = sent.save(&path) {
                warn!(error = %e, "cannot record sent desired state");
            }
        }));
    }

    async fn finish(&mut self) {
        if let Some(h) = self.running.take() {
            let _ = h.await;
        }
    }
}

/// Pod events waiting for the writer at most; more are dropped (and counted).
const EVENT_QUEUE: usize = 1024;

/// Where [`HubLink::handle`] sends the writes it wants.
struct Queues<'a> {
    jobs: &'a mpsc::Sender<Job>,
    events: &'a mpsc::Sender<PodEvent>,
    budget: &'a mut EventBudget,
}

/// Applies the link's writes, batching whatever is queued into one `write_batch`:
/// status and node writes first, then at most [`EVENTS_PER_BATCH`] pod events.
async fn write_loop(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<Job>,
    mut events: mpsc::Receiver<PodEvent>,
) {
    const BATCH: usize = 512;
    let mut recorder = Recorder::default();
    let mut events_open = true;
    loop {
        let mut batch = Vec::new();
        let mut evs = Vec::new();
        tokio::select! {
            biased;
            j = jobs.recv() => match j {
                Some(j) => batch.push(j),
                None => break,
            },
            e = events.recv(), if events_open => match e {
                Some(e) => evs.push(e),
                None => events_open = false,
            },
        }
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        while evs.len() < EVENTS_PER_BATCH {
            match events.try_recv() {
                Ok(e) => evs.push(e),
                Err(_) => break,
            }
        }
        let now = clock.now();
        let mut creates = Vec::new();
        let mut writes = Vec::with_capacity(batch.len());
        let mut what = Vec::with_capacity(batch.len());
        for job in batch {
            let (key, mutation): (ObjectKey, crate::store::Mutation) = match job {
                Job::PodStatus {
                    node,
                    key,
                    uid,
                    status,
                } => (
                    key,
                    Box::new(move |obj: &mut Object| {
                        let Object::Pod(p) = obj else {
                            return Ok(false);
                        };
                        // Bound elsewhere or replaced meanwhile: the status is stale.
                        if p.metadata.uid.as_ref().map(|u| u.0.as_str()) != Some(uid.as_str())
                            || p.spec.node_name.as_deref() != Some(node.as_str())
                        {
                            return Ok(false);
                        }
                        if p.status.as_ref() == Some(&*status) {
                            return Ok(false);
                        }
                        p.status = Some(*status);
                        Ok(true)
                    }),
                ),
                Job::NodeReport {
                    node,
                    status,
                    labels,
                    taints,
                } => {
                    let key = ObjectKey::new(Kind::Node, "", node.clone());
                    let fresh = nodes::new_node(&node, &status, &labels, &taints, now);
                    creates.push((key.clone(), fresh));
                    (
                        key,
                        Box::new(move |obj: &mut Object| {
                            let Object::Node(n) = obj else {
                                return Ok(false);
                            };
                            Ok(nodes::apply_report(n, &status, &labels, &taints, now))
                        }),
                    )
                }
                Job::Transition(t) => {
                    let (node, ready) = match t {
                        Transition::Ready(n) => (n, true),
                        Transition::Unknown(n) => (n, false),
                    };
                    (
                        ObjectKey::new(Kind::Node, "", node),
                        Box::new(move |obj: &mut Object| {
                            let Object::Node(n) = obj else {
                                return Ok(false);
                            };
                            Ok(if ready {
                                nodes::mark_ready(n, now)
                            } else {
                                nodes::mark_unknown(n, now)
                            })
                        }),
                    )
                }
            };
            what.push(key.clone());
            writes.push(Write::Mutate(key, mutation));
        }
        let planned = recorder.plan(evs, now);
        let mut recording = Vec::with_capacity(planned.len());
        for p in planned {
            writes.push(p.write);
            recording.push((p.same, p.fresh));
        }
        if writes.is_empty() {
            continue;
        }
        let mut results = store.write_batch(writes).await;
        let event_results = results.split_off(results.len().saturating_sub(recording.len()));
        for ((same, fresh), result) in recording.into_iter().zip(event_results) {
            match result {
                Ok(Written::Stored(obj) | Written::Unchanged(obj)) => {
                    recorder.recorded(same, key_of(&obj));
                }
                Ok(Written::Deleted(_)) => {}
                // The counted object is gone: start a new one.
                Err(StoreError::NotFound(_)) => {
                    recorder.forget(&same);
                    let key = key_of(&fresh);
                    match store.create(fresh).await {
                        Ok(_) => recorder.recorded(same, key),
                        Err(StoreError::Closed) => return,
                        Err(e) => warn!(event = %key, error = %e, "recording a pod event failed"),
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    recorder.forget(&same);
                    warn!(error = %e, "recording a pod event failed");
                }
            }
        }
        for (key, result) in what.iter().zip(results) {
            match result {
                Ok(Written::Stored(_) | Written::Unchanged(_) | Written::Deleted(_)) => {}
                Err(StoreError::NotFound(_)) if key.kind == Kind::Node => {
                    if let Some((_, node)) = creates.iter().find(|(k, _)| k == key) {
                        match store.create(Object::Node(node.clone())).await {
                            Ok(_) => info!(node = %key.name, "node registered"),
                            // Created by someone else meanwhile: the next report updates it.
                            Err(StoreError::AlreadyExists(_)) => {}
                            Err(e) => {
                                warn!(node = %key.name, error = %e, "registering node failed")
                            }
                        }
                    }
                }
                // The pod is gone: its status no longer matters.
                Err(StoreError::NotFound(_)) => {}
                Err(StoreError::Closed) => return,
                Err(e) => warn!(object = %key, error = %e, "status write failed"),
            }
        }
    }
}
