//! The scheduler loop: lists and then watches nodes, namespaces and pods, keeps the
//! cache and the queue in step, decides pods in batches while earlier batches of
//! bindings commit, and writes conditions and events.
//!
//! Everything runs in one task that owns the cache; the store's writer thread does the
//! committing, so deciding batch N+1 overlaps committing batch N.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use skiff_api::resources::{EventSeverity, Pod};
use skiff_api::{Kind, Object, ObjectKey, Uid};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cache::{Cache, Wake};
use super::decide::{Cursor, Scratch, Settings, schedule_with};
use super::error::SchedulerError;
use super::filters::NodeVerdicts;
use super::options::SchedulerOptions;
use super::pod_info::NodeRules;
use super::queue::{Condition, Queue, WaitState};
use super::stats::{Counters, SchedulerStatsHandle};
use super::writes::{self, PodRef};
use crate::clock::Clock;
use crate::store::{EventType, Scope, Store, StoreError, Watch, WatchEvent, Write, Written};

/// Node verdicts kept per distinct set of node rules, at most; beyond that the memo
/// starts over (pods with that many distinct rules are rare).
const MAX_MEMOIZED_RULES: usize = 1024;
/// Watch events handled per watch before deciding again, so a flood of events cannot
/// hold decisions back indefinitely.
const MAX_EVENTS_PER_DRAIN: usize = 4096;
/// Reason of `PodScheduled=False` when no node fits, and when the pod's rules are
/// invalid.
const REASON_UNSCHEDULABLE: &str = "Unschedulable";
const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// The Skiff scheduler: places pods that have no node on one, with Kubernetes'
/// placement rules. Create it with [`Scheduler::new`], then drive it with
/// [`Scheduler::run`] until shutdown.
#[derive(Debug)]
pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: SchedulerOptions,
    counters: Arc<Counters>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: SchedulerOptions,
    ) -> Scheduler {
        Scheduler {
            store,
            clock,
            options,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Counters of this scheduler, readable while it runs.
    pub fn stats(&self) -> SchedulerStatsHandle {
        SchedulerStatsHandle(Arc::clone(&self.counters))
    }

    /// Runs until `shutdown` completes (then finishes the writes under way and
    /// returns `Ok`), or until the store ends its watches (`Err`). Must run inside a
    /// Tokio runtime.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SchedulerError> {
        let seed = self.options.seed.unwrap_or_else(rand::random);
        let mut state = Loop {
            queue: Queue::new(self.options.initial_backoff, self.options.max_backoff),
            cache: Cache::default(),
            verdicts: HashMap::new(),
            cursor: Cursor::new(seed),
            scratch: Scratch::default(),
            wake: Wake::default(),
            commits: FuturesUnordered::new(),
            binding_commits: 0,
            committing_since: None,
            events: Vec::new(),
            events_since: None,
            event_counter: u64::from(rand::random::<u32>()),
            settings: Settings {
                percentage_of_nodes_to_score: self.options.percentage_of_nodes_to_score,
            },
            store: self.store,
            clock: self.clock,
            options: self.options,
            counters: self.counters,
        };
        state.run(shutdown).await
    }
}

/// What one write of a batch was for.
enum Tag {
    Bind { uid: Uid, pod: PodRef, node: String },
    Condition { uid: Uid },
    Event,
}

/// The writes of one decision batch, each with what it is for.
struct Batch {
    writes: Vec<Write>,
    tags: Vec<Tag>,
    /// The time written into conditions.
    now: skiff_api::Time,
}

impl Batch {
    fn push(&mut self, write: Write, tag: Tag) {
        self.writes.push(write);
        self.tags.push(tag);
    }
}

struct Commit {
    tags: Vec<Tag>,
    results: Vec<Result<Written, StoreError>>,
    bindings: bool,
}

struct Watches {
    nodes: Watch,
    namespaces: Watch,
    pods: Watch,
}

/// What the loop waited for.
enum Woken {
    Shutdown,
    Watch(&'static str, Option<Result<WatchEvent, StoreError>>),
    Committed(Option<Result<Commit, tokio::task::JoinError>>),
    Timer,
    Flush,
}

struct Loop {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: SchedulerOptions,
    counters: Arc<Counters>,
    settings: Settings,
    cache: Cache,
    queue: Queue,
    /// Node verdicts per node-rules signature.
    verdicts: HashMap<String, Arc<NodeVerdicts>>,
    cursor: Cursor,
    scratch: Scratch,
    /// Changes seen since unschedulable pods were last woken.
    wake: Wake,
    commits: FuturesUnordered<JoinHandle<Commit>>,
    binding_commits: usize,
    committing_since: Option<Instant>,
    events: Vec<Write>,
    events_since: Option<Instant>,
    event_counter: u64,
}

impl Loop {
    async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SchedulerError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut watches = self.sync()?;
        let period = self.options.unschedulable_flush;
        let mut flush = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            // Checked here too: while pods keep the loop deciding, it never waits below.
            if shutdown.as_mut().now_or_never().is_some() {
                break;
            }
            self.drain(&mut watches).await?;
            let now = Instant::now();
            self.queue.wake(std::mem::take(&mut self.wake), now);
            self.queue.promote(now);
            if self.queue.has_active() && self.binding_commits < self.options.max_in_flight.max(1) {
                self.decide_batch();
                tokio::task::yield_now().await;
                continue;
            }
            let idle = !self.queue.has_active() && self.binding_commits == 0;
            if !self.events.is_empty()
                && (idle
                    || self.events.len() >= self.options.max_buffered_events
                    || self
                        .events_since
                        .is_some_and(|t| t + self.options.event_flush <= now))
            {
                self.flush_events();
            }
            let backoff = self.queue.next_deadline();
            let events_due = self.events_since.map(|t| t + self.options.event_flush);
            let woken = tokio::select! {
                () = &mut shutdown => Woken::Shutdown,
                ev = watches.pods.next() => Woken::Watch("pods", ev),
                ev = watches.nodes.next() => Woken::Watch("nodes", ev),
                ev = watches.namespaces.next() => Woken::Watch("namespaces", ev),
                done = self.commits.next(), if !self.commits.is_empty() => Woken::Committed(done),
                () = sleep_until(backoff), if backoff.is_some() => Woken::Timer,
                () = sleep_until(events_due), if events_due.is_some() => Woken::Timer,
                _ = flush.tick() => Woken::Flush,
            };
            match woken {
                Woken::Shutdown => break,
                Woken::Watch(kind, ev) => {
                    if let Some(relist) = self.on_watch(kind, ev)? {
                        self.relist(&mut watches, relist).await?;
                    }
                }
                Woken::Committed(done) => self.on_commit(done),
                Woken::Timer => {}
                Woken::Flush => self.wake.any = true,
            }
        }
        // Let the bindings under way finish so none is left half-known, then write
        // the events still buffered.
        self.finish_commits().await;
        if !self.events.is_empty() {
            self.flush_events();
            self.finish_commits().await;
        }
        Ok(())
    }

    /// Lists everything and starts watching from the listed revisions.
    fn sync(&mut self) -> Result<Watches, SchedulerError> {
        self.cache = Cache::default();
        self.queue = Queue::new(self.options.initial_backoff, self.options.max_backoff);
        self.verdicts.clear();
        let (nodes, node_rev) = self.store.list(&Scope::kind(Kind::Node));
        for obj in &nodes {
            if let Object::Node(node) = &**obj {
                self.cache.upsert_node(node);
            }
        }
        let (namespaces, ns_rev) = self.store.list(&Scope::kind(Kind::Namespace));
        for obj in &namespaces {
            if let Object::Namespace(ns) = &**obj {
                self.cache
                    .upsert_namespace(&ns.metadata.name, &ns.metadata.labels);
            }
        }
        let (pods, pod_rev) = self.store.list(&Scope::kind(Kind::Pod));
        for obj in &pods {
            if let Object::Pod(pod) = &**obj {
                self.on_pod(EventType::Added, pod);
            }
        }
        tracing::info!(
            nodes = nodes.len(),
            pods = pods.len(),
            pending = self.queue.len(),
            "scheduler synced"
        );
        let watch = |kind: Kind, from, name| {
            self.store
                .watch(Scope::kind(kind), from)
                .map_err(|source| SchedulerError::Watch { kind: name, source })
        };
        Ok(Watches {
            nodes: watch(Kind::Node, node_rev, "nodes")?,
            namespaces: watch(Kind::Namespace, ns_rev, "namespaces")?,
            pods: watch(Kind::Pod, pod_rev, "pods")?,
        })
    }

    /// A watch fell behind the retained history: finish the writes under way, then
    /// list again and watch from there.
    async fn relist(
        &mut self,
        watches: &mut Watches,
        kind: &'static str,
    ) -> Result<(), SchedulerError> {
        tracing::warn!(
            kind,
            "watch history compacted past the scheduler; relisting"
        );
        self.finish_commits().await;
        *watches = self.sync()?;
        Ok(())
    }

    async fn finish_commits(&mut self) {
        while let Some(done) = self.commits.next().await {
            self.on_commit(Some(done));
        }
    }

    /// Handles every watch event and finished commit already available, without
    /// waiting.
    async fn drain(&mut self, watches: &mut Watches) -> Result<(), SchedulerError> {
        while let Some(done) = self.commits.next().now_or_never().flatten() {
            self.on_commit(Some(done));
        }
        for kind in ["nodes", "namespaces", "pods"] {
            for _ in 0..MAX_EVENTS_PER_DRAIN {
                let watch = match kind {
                    "nodes" => &mut watches.nodes,
                    "namespaces" => &mut watches.namespaces,
                    _ => &mut watches.pods,
                };
                let Some(ev) = watch.next().now_or_never() else {
                    break;
                };
                if let Some(relist) = self.on_watch(kind, ev)? {
                    self.relist(watches, relist).await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Applies one watch event; `Some(kind)` when that watch must be relisted.
    fn on_watch(
        &mut self,
        kind: &'static str,
        ev: Option<Result<WatchEvent, StoreError>>,
    ) -> Result<Option<&'static str>, SchedulerError> {
        let ev = match ev {
            None => return Err(SchedulerError::WatchEnded { kind }),
            Some(Err(StoreError::Gone { .. })) => return Ok(Some(kind)),
            Some(Err(source)) => return Err(SchedulerError::Watch { kind, source }),
            Some(Ok(ev)) => ev,
        };
        match &*ev.object {
            Object::Pod(pod) => self.on_pod(ev.event_type, pod),
            Object::Node(node) => {
                if ev.event_type == EventType::Deleted {
                    // A node going away frees nothing for anyone.
                    self.cache.remove_node(&node.metadata.name);
                } else if self.cache.upsert_node(node) {
                    self.wake.any = true;
                }
            }
            Object::Namespace(ns) => {
                let changed = if ev.event_type == EventType::Deleted {
                    self.cache.remove_namespace(&ns.metadata.name)
                } else {
                    self.cache
                        .upsert_namespace(&ns.metadata.name, &ns.metadata.labels)
                };
                // Namespace labels only matter to affinity terms' namespace selectors.
                self.wake.any |= changed && self.cache.view().has_term_groups();
            }
            _ => {}
        }
        Ok(None)
    }

    fn on_pod(&mut self, event: EventType, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_ref() else {
            return;
        };
        if event == EventType::Deleted || pod.is_terminal() {
            // Finished pods no longer hold their node's resources.
            self.queue.remove(uid);
            self.wake |= self.cache.remove_pod(uid);
            return;
        }
        if let Some(node) = pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            self.queue.remove(uid);
            self.wake |= self.cache.observe_bound(pod, node);
            return;
        }
        if self.cache.is_assumed(uid) {
            // An event from before this scheduler's binding of the pod committed.
            return;
        }
        if self.cache.is_placed(uid) {
            // Bound once, unbound since: it needs a node again.
            self.wake |= self.cache.remove_pod(uid);
        }
        let ours = pod
            .spec
            .scheduler_name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == self.options.scheduler_name);
        if ours && pod.metadata.deletion_timestamp.is_none() {
            let key = ObjectKey::new(
                Kind::Pod,
                pod.metadata.namespace_or_empty(),
                pod.metadata.name.as_str(),
            );
            self.queue.upsert(pod, key);
        } else {
            self.queue.remove(uid);
        }
    }

    /// Node verdicts for a set of node rules at the view's current generation.
    fn verdicts_for(&mut self, rules: &NodeRules) -> Arc<NodeVerdicts> {
        let view = self.cache.view();
        if let Some(v) = self.verdicts.get(&rules.signature)
            && v.generation == view.generation()
        {
            return Arc::clone(v);
        }
        if self.verdicts.len() >= MAX_MEMOIZED_RULES {
            self.verdicts.clear();
        }
        let v = Arc::new(NodeVerdicts::new(rules, view));
        self.verdicts
            .insert(rules.signature.clone(), Arc::clone(&v));
        v
    }

    /// Decides up to a batch of pods and sends their writes as one store batch.
    fn decide_batch(&mut self) {
        let span = tracing::debug_span!(
            "schedule_batch",
            decided = tracing::field::Empty,
            unschedulable = tracing::field::Empty
        );
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let instant = Instant::now();
        let mut batch = Batch {
            writes: Vec::new(),
            tags: Vec::new(),
            now: self.clock.now(),
        };
        let mut decisions = 0u64;
        let mut failures = 0u64;
        let limit = u64::try_from(self.options.batch_size.max(1)).unwrap_or(u64::MAX);
        while decisions < limit {
            let Some(uid) = self.queue.pop() else {
                break;
            };
            let Some(waiting) = self.queue.get(&uid) else {
                continue;
            };
            decisions += 1;
            let pod_ref = PodRef {
                namespace: waiting.key.namespace.clone(),
                name: waiting.key.name.clone(),
                uid: uid.clone(),
                resource_version: waiting.resource_version.clone(),
            };
            let info = match &waiting.info {
                Ok(info) => Arc::clone(info),
                Err(e) => {
                    let message = e.to_string();
                    failures += 1;
                    self.queue.unschedulable(&uid, false, instant);
                    self.report_failure(&mut batch, &pod_ref, REASON_SCHEDULER_ERROR, message);
                    continue;
                }
            };
            let verdicts = self.verdicts_for(&info.node_rules);
            self.cache.prepare(&info);
            let view = self.cache.view();
            match schedule_with(
                &info,
                view,
                &verdicts,
                self.settings,
                &mut self.cursor,
                &mut self.scratch,
            ) {
                Ok(placement) => {
                    let node = view.node(placement.slot).name.clone();
                    self.wake |= self.cache.assume(&info, placement.slot);
                    let bind = writes::bind(pod_ref.key(), uid.clone(), node.clone(), batch.now);
                    batch.push(
                        bind,
                        Tag::Bind {
                            uid,
                            pod: pod_ref,
                            node,
                        },
                    );
                }
                Err(unschedulable) => {
                    failures += 1;
                    self.queue
                        .unschedulable(&uid, unschedulable.waits_for_pods, instant);
                    tracing::debug!(pod = %pod_ref.name, namespace = %pod_ref.namespace, message = %unschedulable.message, "pod does not fit");
                    self.report_failure(
                        &mut batch,
                        &pod_ref,
                        REASON_UNSCHEDULABLE,
                        unschedulable.message,
                    );
                }
            }
        }
        span.record("decided", decisions);
        span.record("unschedulable", failures);
        Counters::add(&self.counters.decisions, decisions);
        Counters::add(&self.counters.unschedulable, failures);
        Counters::add_time(&self.counters.decide_nanos, started.elapsed());
        if !batch.writes.is_empty() {
            self.submit(batch.writes, batch.tags, true);
        }
    }

    /// Writes `PodScheduled=False` and a FailedScheduling event, unless the pod
    /// already shows exactly this.
    fn report_failure(
        &mut self,
        batch: &mut Batch,
        pod: &PodRef,
        reason: &'static str,
        message: String,
    ) {
        let condition: Condition = Some((reason.to_string(), message.clone()));
        if self
            .queue
            .get(&pod.uid)
            .is_some_and(|w| w.condition == condition)
        {
            return;
        }
        // Recorded now so the next identical failure does not write again while this
        // write is under way; cleared again if it fails.
        self.queue.set_condition(&pod.uid, condition);
        let write = writes::mark_unschedulable(
            pod.key(),
            pod.uid.clone(),
            reason,
            message.clone(),
            batch.now,
        );
        batch.push(
            write,
            Tag::Condition {
                uid: pod.uid.clone(),
            },
        );
        self.buffer_event(pod, EventSeverity::Warning, "FailedScheduling", message);
    }

    fn buffer_event(
        &mut self,
        pod: &PodRef,
        severity: EventSeverity,
        reason: &str,
        message: String,
    ) {
        let now = self.clock.now();
        // Nanoseconds since the epoch at second precision, plus a counter, so names
        // sort by time and do not repeat.
        self.event_counter = self.event_counter.wrapping_add(1);
        let secs = u64::try_from(now.0.timestamp()).unwrap_or(0);
        let unique = secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(self.event_counter % 1_000_000_000);
        self.events
            .push(writes::event(pod, severity, reason, message, now, unique));
        self.events_since.get_or_insert_with(Instant::now);
    }

    fn flush_events(&mut self) {
        let events = std::mem::take(&mut self.events);
        self.events_since = None;
        let tags = events.iter().map(|_| Tag::Event).collect();
        self.submit(events, tags, false);
    }

    fn submit(&mut self, writes: Vec<Write>, tags: Vec<Tag>, bindings: bool) {
        Counters::add(&self.counters.commits, 1);
        if bindings {
            self.binding_commits += 1;
            self.committing_since.get_or_insert_with(Instant::now);
        }
        let store = Arc::clone(&self.store);
        self.commits.push(tokio::spawn(async move {
            let results = store.write_batch(writes).await;
            Commit {
                tags,
                results,
                bindings,
            }
        }));
    }

    fn on_commit(&mut self, done: Option<Result<Commit, tokio::task::JoinError>>) {
        let Some(done) = done else {
            return;
        };
        let commit = match done {
            Ok(c) => c,
            Err(e) => {
                // The task only awaits the store; it cannot panic short of a bug in it.
                tracing::error!(error = %e, "scheduler commit task failed");
                return;
            }
        };
        if commit.bindings {
            self.binding_commits -= 1;
            if self.binding_commits == 0
                && let Some(since) = self.committing_since.take()
            {
                Counters::add_time(&self.counters.commit_nanos, since.elapsed());
            }
        }
        let now = Instant::now();
        for (tag, result) in commit.tags.into_iter().zip(commit.results) {
            match tag {
                Tag::Bind { uid, pod, node } => self.on_binding(uid, pod, node, result, now),
                Tag::Condition { uid } => {
                    if let Err(e) = result {
                        tracing::warn!(pod = %uid, error = %e, "writing PodScheduled failed");
                        self.queue.set_condition(&uid, None);
                    }
                }
                Tag::Event => match result {
                    Ok(_) => Counters::add(&self.counters.events, 1),
                    Err(e) => tracing::warn!(error = %e, "writing a scheduling event failed"),
                },
            }
        }
    }

    fn on_binding(
        &mut self,
        uid: Uid,
        mut pod: PodRef,
        node: String,
        result: Result<Written, StoreError>,
        now: Instant,
    ) {
        match result {
            Ok(Written::Stored(obj)) => {
                self.cache.confirm(&uid, obj.meta().generation);
                self.queue.remove(&uid);
                Counters::add(&self.counters.bound, 1);
                let message = format!(
                    "Successfully assigned {}/{} to {node}",
                    pod.namespace, pod.name
                );
                pod.resource_version = obj.meta().resource_version.clone().unwrap_or_default();
                self.buffer_event(&pod, EventSeverity::Normal, "Scheduled", message);
            }
            Ok(
                Written::Unchanged(obj)
                | Written::Deleted(
                    crate::store::Deleted::Marked(obj) | crate::store::Deleted::Removed(obj),
                ),
            ) => {
                // Lost a race: bound by someone else, being deleted, or replaced.
                Counters::add(&self.counters.binding_failures, 1);
                self.wake |= self.cache.forget(&uid);
                let still_ours = match &*obj {
                    Object::Pod(p) => {
                        p.metadata.uid.as_ref() == Some(&uid)
                            && !p.is_scheduled()
                            && p.metadata.deletion_timestamp.is_none()
                    }
                    _ => false,
                };
                if still_ours {
                    self.queue.retry_later(&uid, now);
                } else if self
                    .queue
                    .get(&uid)
                    .is_some_and(|w| w.state == WaitState::InFlight)
                {
                    self.queue.remove(&uid);
                }
            }
            Err(StoreError::NotFound(_)) => {
                Counters::add(&self.counters.binding_failures, 1);
                self.wake |= self.cache.forget(&uid);
                self.queue.remove(&uid);
            }
            Err(e) => {
                Counters::add(&self.counters.binding_failures, 1);
                tracing::warn!(pod = %pod.name, namespace = %pod.namespace, node, error = %e, "binding failed; will retry");
                self.wake |= self.cache.forget(&uid);
                self.queue.retry_later(&uid, now);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
