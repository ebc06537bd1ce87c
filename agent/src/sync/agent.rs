//! The agent's main loop for one node: persisted desired state and runtime
//! observations go through the reconciler, its actions are applied, statuses reported.
//! Messages from the hub are persisted before they are acknowledged or acted on. While
//! the hub is unreachable the loop carries on from the database, and status waits:
//! on reconnect only the latest status per pod is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::protocol::{Down, SCHEMA_VERSION, Up};
use skiff_api::resources::{NodeStatus, PodStatus, Taint};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::link::{HubLink, LinkEvent, Seq};
use super::worker::{Events, Executor, Work};
use crate::image::ImageStore;
use crate::node::{self, HostPaths};
use crate::probe::ProbeManager;
use crate::reconcile::{Action, Desired, Observed, reconcile};
use crate::runtime::ContainerRuntime;
use crate::state::{Applied, StateDb};
use crate::stream::StreamServer;

/// How often the loop looks at the runtime even when nothing arrives (restarts after
/// a crash-loop backoff, containers that exited).
const RESYNC: Duration = Duration::from_secs(5);
/// The node status is measured again every this many heartbeats.
const NODE_STATUS_EVERY: u32 = 6;
/// A sync not answered by `syncDone` within this long is sent again, then after twice
/// as long, up to [`SYNC_RETRY_MAX`]: a broker that restarted without sessions (the
/// embedded one restarts with the hub) drops whatever the agent publishes before the
/// hub has logged in and subscribed again.
const SYNC_RETRY: Duration = Duration::from_secs(2);
const SYNC_RETRY_MAX: Duration = Duration::from_secs(30);
/// How often images no desired pod uses are removed.
const IMAGE_GC: Duration = Duration::from_secs(300);

/// What one node's loop is made of.
#[derive(Debug)]
pub struct NodeAgent {
    pub node: String,
    pub db: StateDb,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub link: Arc<dyn HubLink>,
    pub events: mpsc::Receiver<LinkEvent>,
    pub seq: Seq,
    pub host: HostPaths,
    pub max_pods: u32,
    pub internal_ip: Option<IpAddr>,
    /// Where the broker is, to find the address this host reaches it from.
    pub broker: Option<(String, u16)>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub heartbeat_interval: Duration,
    /// Where images come from; `None` for runtimes that need none (simulated).
    pub images: Option<Arc<dyn ImageStore>>,
}

struct Loop {
    a: NodeAgent,
    exec: Executor,
    connected: bool,
    reported: BTreeMap<String, PodStatus>,
    node_status: Option<NodeStatus>,
    /// When an unanswered sync is sent again, and how many were sent unanswered.
    sync_retry: Option<tokio::time::Instant>,
    syncs_unanswered: u32,
    /// Where each container's crash-loop back-off was last reset (see
    /// [`Action::ResetBackoff`]). Kept in memory: after an agent restart a back-off counts
    /// every restart again, erring on the long side.
    backoff_resets: BTreeMap<(String, String), i32>,
    probes: ProbeManager,
    streams: StreamServer,
}

impl NodeAgent {
    /// Runs until `shutdown` resolves or the link ends.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let node = self.node.clone();
        let reported = match self.db.reported() {
            Ok(r) => r,
            Err(e) => {
                error!(node = %node, error = %e, "cannot read reported statuses");
                BTreeMap::new()
            }
        };
        let events = Events {
            link: self.link.clone(),
            seq: self.seq.clone(),
        };
        let (exec, done) = Executor::new(self.runtime.clone(), self.images.clone(), events);
        let probes = ProbeManager::start(self.runtime.clone());
        let streams = StreamServer::new(self.runtime.clone(), self.link.clone(), self.seq.clone());
        let mut l = Loop {
            exec,
            streams,
            a: self,
            connected: false,
            reported,
            node_status: None,
            sync_retry: None,
            syncs_unanswered: 0,
            backoff_resets: BTreeMap::new(),
            probes,
        };
        l.run(shutdown, done)
            .instrument(info_span!("agent", node = %node))
            .await
    }
}

impl Loop {
    async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut done: mpsc::UnboundedReceiver<String>,
    ) {
        // Before the hub is reached: the pods in the database come back (adopted from
        // the runtime when they are still there).
        self.pass();
        let mut heartbeat = tokio::time::interval(self.a.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats: u32 = 0;
        let mut image_gc =
            tokio::time::interval_at(tokio::time::Instant::now() + IMAGE_GC, IMAGE_GC);
        image_gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    self.a.link.close();
                    break;
                }
                ev = self.a.events.recv() => match ev {
                    None => break,
                    Some(LinkEvent::Connected) => {
                        self.connected = true;
                        self.syncs_unanswered = 0;
                        self.send_sync();
                        self.send_node_status(true);
                        self.pass();
                    }
                    Some(LinkEvent::Disconnected) => self.connected = false,
                    // Stream control is acted on at once and never persisted.
                    Some(LinkEvent::Down { msg, ack }) if msg.is_stream() => {
                        self.streams.handle(&msg);
                        if let Err(e) = self.a.link.ack(ack) {
                            warn!(error = %e, "cannot acknowledge");
                        }
                    }
                    Some(LinkEvent::Down { msg, ack }) => {
                        if self.down(msg).await {
                            if let Err(e) = self.a.link.ack(ack) {
                                warn!(error = %e, "cannot acknowledge");
                            }
                            self.pass();
                        }
                    }
                },
                _ = heartbeat.tick() => {
                    if self.connected {
                        if let Err(e) = self.a.link.heartbeat(self.a.seq.next()) {
                            debug!(error = %e, "heartbeat not sent");
                        }
                        beats += 1;
                        if beats.is_multiple_of(NODE_STATUS_EVERY) {
                            self.send_node_status(false);
                        }
                    }
                }
                () = sleep_until(self.sync_retry), if self.connected => {
                    debug!(unanswered = self.syncs_unanswered, "sync not answered; sending it again");
                    // The node status may have been lost with the sync.
                    self.send_sync();
                    self.send_node_status(true);
                }
                _ = resync.tick() => self.pass(),
                _ = image_gc.tick() => self.collect_images(),
                Some(uid) = done.recv() => {
                    self.exec.finished(&uid);
                    // Other pods' tasks that ended meanwhile get one pass together.
                    while let Ok(uid) = done.try_recv() {
                        self.exec.finished(&uid);
                    }
                    self.pass();
                }
                // A probe result settled differently: report readiness, act on liveness.
                _ = self.probes.changed() => self.pass(),
            }
        }
    }

    /// Persists a message; false when it could not be (it is then not acknowledged,
    /// and the broker redelivers it). The loop waits for the write, off its thread.
    async fn down(&mut self, msg: Down) -> bool {
        let (kind, pod, revision) = match &msg {
            Down::PodUpsert { revision, pod, .. } => (
                "upsert",
                format!(
                    "{}/{}",
                    pod.metadata.namespace_or_empty(),
                    pod.metadata.name
                ),
                *revision,
            ),
            Down::PodDelete {
                revision,
                namespace,
                name,
                ..
            } => ("delete", format!("{namespace}/{name}"), *revision),
            Down::SyncDone { revision, .. } => ("syncDone", String::new(), *revision),
            Down::StreamOpen { .. }
            | Down::StreamInput { .. }
            | Down::StreamAck { .. }
            | Down::StreamClose { .. } => return true,
        };
        let span = info_span!("message", kind, pod = %pod, revision);
        let started = std::time::Instant::now();
        let applied = self.a.db.apply_blocking(msg).instrument(span.clone()).await;
        let write_ms = started.elapsed().as_millis() as u64;
        let _g = span.entered();
        match applied {
            Ok(Applied::Changed) => {
                crate::node::pages::note_activity();
                info!(write_ms, "desired state changed");
                true
            }
            Ok(Applied::Synced) => {
                self.sync_retry = None;
                self.syncs_unanswered = 0;
                info!(write_ms, "sync complete");
                true
            }
            Ok(Applied::Ignored) => {
                debug!("already applied or older");
                true
            }
            Err(e) => {
                error!(error = %e, "cannot persist desired state");
                false
            }
        }
    }

    fn send(&self, msg: &Up) -> bool {
        match self.a.link.send(msg) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot send to the hub");
                false
            }
        }
    }

    fn send_sync(&mut self) {
        let wait = super::backoff::doubling(SYNC_RETRY, self.syncs_unanswered, SYNC_RETRY_MAX);
        self.syncs_unanswered = self.syncs_unanswered.saturating_add(1);
        self.sync_retry = Some(tokio::time::Instant::now() + wait);
        let (revision, pods) = match (self.a.db.sync_revision(), self.a.db.pod_refs()) {
            (Ok(r), Ok(p)) => (r, p),
            (Err(e), _) | (_, Err(e)) => {
                error!(error = %e, "cannot read the pods to sync");
                return;
            }
        };
        info!(revision, pods = pods.len(), "sync");
        self.send(&Up::Sync {
            v: SCHEMA_VERSION,
            seq: self.a.seq.next(),
            revision,
            pods,
        });
    }

    fn send_node_status(&mut self, force: bool) {
        let ip = self.a.internal_ip.or_else(|| {
            let (host, port) = self.a.broker.as_ref()?;
            node::route_source_ip(host, *port)
        });
        let status = match node::measure(&self.a.host, self.a.max_pods, ip, &self.a.node) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot measure the node");
                return;
            }
        };
        if !force && self.node_status.as_ref() == Some(&status) {
            return;
        }
        let sent = self.send(&Up::NodeStatus {
            v: SCHEMA_VERSION,
            seq: self.a.seq.next(),
            status: Box::new(status.clone()),
            labels: node::node_labels(&self.a.node, &self.a.labels),
            taints: self.a.taints.clone(),
        });
        if sent {
            self.node_status = Some(status);
        }
    }

    /// Removes, off the loop, the images no desired pod uses any more.
    fn collect_images(&self) {
        let Some(store) = self.a.images.clone() else {
            return;
        };
        // Pods still in the runtime keep their images too (an overlay may be on them).
        let held: Vec<String> = match self.a.runtime.list() {
            Ok(pods) => pods
                .iter()
                .flat_map(|p| p.init_containers.iter().chain(&p.containers))
                .map(|c| c.image.clone())
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot list the runtime; images kept");
                return;
            }
        };
        let mut in_use: BTreeSet<String> = match self.a.db.desired() {
            Ok(pods) => pods
                .values()
                .flat_map(|d| {
                    d.pod
                        .spec
                        .init_containers
                        .iter()
                        .chain(&d.pod.spec.containers)
                        .map(|c| c.image.clone())
                        .collect::<Vec<_>>()
                })
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot read desired state; images kept");
                return;
            }
        };
        in_use.extend(held);
        tokio::task::spawn_blocking(move || match store.gc(&in_use) {
            Ok(r) if r.images > 0 || r.layers > 0 => {
                info!(
                    images = r.images,
                    layers = r.layers,
                    bytes = r.bytes,
                    "images collected"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "image collection failed"),
        });
    }

    fn host_ip(&self) -> Option<String> {
        self.node_status
            .as_ref()
            .and_then(|s| {
                s.addresses
                    .iter()
                    .find(|a| a.type_ == skiff_api::resources::NodeAddressType::InternalIp)
            })
            .map(|a| a.address.clone())
            .or_else(|| self.a.internal_ip.map(|ip| ip.to_string()))
    }

    /// One reconcile pass. Runtime work it starts wakes the loop for another pass when
    /// it ends.
    fn pass(&mut self) {
        {
            let _g = info_span!("reconcile").entered();
            let desired = match self.a.db.desired() {
                Ok(pods) => Desired { pods },
                Err(e) => {
                    error!(error = %e, "cannot read desired state");
                    return;
                }
            };
            let pods: BTreeMap<String, _> = match self.a.runtime.list() {
                Ok(p) => p.into_iter().map(|p| (p.uid.clone(), p)).collect(),
                Err(e) => {
                    error!(error = %e, "cannot list the runtime");
                    return;
                }
            };
            self.backoff_resets
                .retain(|(uid, _), _| pods.contains_key(uid));
            self.probes.track(&desired, &pods);
            let observed = Observed {
                pods,
                reported: self.reported.clone(),
                host_ip: self.host_ip(),
                probes: self.probes.results(),
                backoff_resets: self.backoff_resets.clone(),
                now: chrono::Utc::now(),
                pulls: self.exec.pull_failures(),
            };
            let actions = reconcile(&desired, &observed);
            self.apply(&desired, actions);
        }
    }

    /// Applies actions: status reports here, runtime work in each pod's own task (see
    /// [`Executor`]). Pods with work in flight are left alone until it ends.
    fn apply(&mut self, desired: &Desired, actions: Vec<Action>) {
        // Pods whose final status could not be sent are kept until it can be.
        let mut unsent = BTreeSet::new();
        let mut work: BTreeMap<String, Vec<Work>> = BTreeMap::new();
        for action in actions {
            if self.exec.is_busy(action_uid(&action)) {
                continue;
            }
            match action {
                Action::StartPod { uid } => {
                    let Some(want) = desired.pods.get(&uid) else {
                        continue;
                    };
                    work.entry(uid)
                        .or_default()
                        .push(Work::Start(Box::new(want.clone())));
                }
                Action::StopPod { uid } => work.entry(uid).or_default().push(Work::Stop),
                Action::RemovePod { uid } => {
                    if !unsent.contains(&uid) {
                        work.entry(uid).or_default().push(Work::Remove);
                    }
                }
                Action::StartContainer { uid, container } => work
                    .entry(uid)
                    .or_default()
                    .push(Work::StartContainer(container)),
                Action::RestartContainer { uid, container } => work
                    .entry(uid)
                    .or_default()
                    .push(Work::RestartContainer(container)),
                Action::KillContainer {
                    uid,
                    container,
                    message,
                } => {
                    let (namespace, name) = desired
                        .pods
                        .get(&uid)
                        .map(|w| {
                            (
                                w.pod.metadata.namespace_or_empty().to_string(),
                                w.pod.metadata.name.clone(),
                            )
                        })
                        .unwrap_or_default();
                    work.entry(uid).or_default().push(Work::KillContainer {
                        container,
                        message,
                        namespace,
                        name,
                    });
                }
                Action::ResetBackoff {
                    uid,
                    container,
                    restart_count,
                } => {
                    debug!(pod = %uid, container = %container, restart_count, "back-off reset");
                    self.backoff_resets.insert((uid, container), restart_count);
                }
                Action::ReportStatus {
                    uid,
                    namespace,
                    name,
                    status,
                } => {
                    if !self.connected {
                        unsent.insert(uid);
                        continue;
                    }
                    let sent = self.send(&Up::PodStatus {
                        v: SCHEMA_VERSION,
                        seq: self.a.seq.next(),
                        namespace,
                        name,
                        uid: uid.clone(),
                        status: status.clone(),
                    });
                    if !sent {
                        unsent.insert(uid);
                        continue;
                    }
                    debug!(pod = %uid, phase = ?status.phase, "reported status");
                    if let Err(e) = self.a.db.set_reported(&uid, &status) {
                        warn!(pod = %uid, error = %e, "cannot record reported status");
                    }
                    self.reported.insert(uid, *status);
                }
                Action::ForgetStatus { uid } => {
                    if unsent.contains(&uid) {
                        continue;
                    }
                    if let Err(e) = self.a.db.forget_reported(&uid) {
                        warn!(pod = %uid, error = %e, "cannot forget reported status");
                    }
                    self.reported.remove(&uid);
                    self.exec.forget(&uid);
                }
            }
        }
        for (uid, work) in work {
            self.exec.spawn(uid, work);
        }
    }
}

/// Waits until `at`; forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn action_uid(a: &Action) -> &str {
    match a {
        Action::StartPod { uid }
        | Action::StopPod { uid }
        | Action::RemovePod { uid }
        | Action::StartContainer { uid, .. }
        | Action::RestartContainer { uid, .. }
        | Action::KillContainer { uid, .. }
        | Action::ResetBackoff { uid, .. }
        | Action::ReportStatus { uid, .. }
        | Action::ForgetStatus { uid } => uid,
    }
}
