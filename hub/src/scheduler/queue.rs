//! The scheduling queue: pods waiting for a decision, highest priority first (then
//! oldest), and the pods for which no node fitted, which wait — without polling — until
//! a change could help them, then retry after a per-pod exponential backoff, as
//! kube-scheduler's active, backoff and unschedulable queues do.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::resources::Pod;
use skiff_api::{ObjectKey, Uid};
use tokio::time::Instant;

use super::cache::Wake;
use super::pod_info::{PodInfo, PodRulesError};

/// Where a waiting pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    /// Ready for a decision.
    Active,
    /// Will be ready at its backoff deadline.
    Backoff,
    /// No node fitted; waits for a change that could help.
    Unschedulable,
    /// Decided; its binding is being written.
    InFlight,
}

/// The pod's `PodScheduled` condition as last seen or written (reason, message), so
/// the status is written only when it changes.
pub(crate) type Condition = Option<(String, String)>;

/// A pod that needs a decision.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) key: ObjectKey,
    /// The pod's `resourceVersion` as last seen.
    pub(crate) resource_version: String,
    /// The compiled pod, or why its rules cannot be used.
    pub(crate) info: Result<Arc<PodInfo>, Arc<PodRulesError>>,
    pub(crate) state: WaitState,
    pub(crate) condition: Condition,
    pub(crate) attempts: u32,
    labels_and_generation: (std::collections::BTreeMap<String, String>, Option<i64>),
    retry_on_pod_added: bool,
    last_attempt: Option<Instant>,
    seq: u64,
    priority: i32,
}

#[derive(Debug, PartialEq, Eq)]
struct Ticket {
    priority: i32,
    seq: u64,
    uid: Uid,
}

impl Ord for Ticket {
    fn cmp(&self, other: &Ticket) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ticket {
    fn partial_cmp(&self, other: &Ticket) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
pub(crate) struct Queue {
    waiting: HashMap<Uid, Waiting>,
    active: BinaryHeap<Ticket>,
    backoff: BinaryHeap<Reverse<(Instant, u64, Uid)>>,
    next_seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Queue {
    pub(crate) fn new(initial_backoff: Duration, max_backoff: Duration) -> Queue {
        Queue {
            waiting: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            next_seq: 0,
            initial_backoff,
            max_backoff,
        }
    }

    pub(crate) fn get(&self, uid: &Uid) -> Option<&Waiting> {
        self.waiting.get(uid)
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// A pod that needs a decision was seen (created, or changed). A change to its
    /// spec or labels makes a waiting pod try again at once; a status-only change (the
    /// scheduler's own condition writes) only updates what is known of its status.
    pub(crate) fn upsert(&mut self, pod: &Pod, key: ObjectKey) {
        let meta = &pod.metadata;
        let Some(uid) = meta.uid.clone() else {
            return;
        };
        let condition = pod
            .condition("PodScheduled")
            .filter(|c| !c.status.is_true())
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let resource_version = meta.resource_version.clone().unwrap_or_default();
        if let Some(w) = self.waiting.get_mut(&uid) {
            w.resource_version = resource_version;
            w.condition = condition;
            if w.labels_and_generation.0 == meta.labels
                && w.labels_and_generation.1 == meta.generation
            {
                return;
            }
            w.labels_and_generation = (meta.labels.clone(), meta.generation);
            w.info = PodInfo::new(pod).map(Arc::new).map_err(Arc::new);
            w.priority = pod.spec.priority.unwrap_or(0);
            if matches!(w.state, WaitState::Unschedulable | WaitState::Backoff) {
                self.activate(&uid);
            }
            return;
        }
        self.waiting.insert(
            uid.clone(),
            Waiting {
                key,
                resource_version,
                info: PodInfo::new(pod).map(Arc::new).map_err(Arc::new),
                state: WaitState::Active,
                condition,
                attempts: 0,
                labels_and_generation: (meta.labels.clone(), meta.generation),
                retry_on_pod_added: false,
                last_attempt: None,
                seq: 0,
                priority: pod.spec.priority.unwrap_or(0),
            },
        );
        self.activate(&uid);
    }

    /// The pod no longer needs a decision (bound, deleted, finished).
    pub(crate) fn remove(&mut self, uid: &Uid) -> Option<Waiting> {
        // Its tickets become stale and are skipped when they surface.
        self.waiting.remove(uid)
    }

    /// The next pod to decide, marked in flight.
    pub(crate) fn pop(&mut self) -> Option<Uid> {
        while let Some(t) = self.active.pop() {
            if let Some(w) = self.waiting.get_mut(&t.uid)
                && w.state == WaitState::Active
                && w.seq == t.seq
            {
                w.state = WaitState::InFlight;
                return Some(t.uid);
            }
        }
        None
    }

    /// No node fitted; `retry_on_pod_added` when a newly placed pod could help.
    pub(crate) fn unschedulable(&mut self, uid: &Uid, retry_on_pod_added: bool, now: Instant) {
        if let Some(w) = self.waiting.get_mut(uid) {
            w.state = WaitState::Unschedulable;
            w.attempts = w.attempts.saturating_add(1);
            w.last_attempt = Some(now);
            w.retry_on_pod_added = retry_on_pod_added;
        }
    }

    /// Records the condition written for the pod.
    pub(crate) fn set_condition(&mut self, uid: &Uid, condition: Condition) {
        if let Some(w) = self.waiting.get_mut(uid) {
            w.condition = condition;
        }
    }

    /// The binding failed for a reason that may pass (a race, a store error): retry
    /// after the backoff.
    pub(crate) fn retry_later(&mut self, uid: &Uid, now: Instant) {
        if let Some(w) = self.waiting.get_mut(uid) {
            w.attempts = w.attempts.saturating_add(1);
            w.last_attempt = Some(now);
            w.state = WaitState::Unschedulable;
        }
        self.wake_one(uid, now);
    }

    /// Something changed that could help unschedulable pods: they retry, each once
    /// its backoff has passed.
    pub(crate) fn wake(&mut self, wake: Wake, now: Instant) {
        if !wake.any && !wake.pod_added {
            return;
        }
        let uids: Vec<Uid> = self
            .waiting
            .iter()
            .filter(|(_, w)| {
                w.state == WaitState::Unschedulable
                    && w.info.is_ok()
                    && (wake.any || w.retry_on_pod_added)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in uids {
            self.wake_one(&uid, now);
        }
    }

    fn wake_one(&mut self, uid: &Uid, now: Instant) {
        let Some(w) = self.waiting.get_mut(uid) else {
            return;
        };
        let due = w.last_attempt.map_or(now, |t| {
            t + backoff(self.initial_backoff, self.max_backoff, w.attempts)
        });
        if due <= now {
            self.activate(uid);
        } else {
            w.state = WaitState::Backoff;
            self.next_seq += 1;
            w.seq = self.next_seq;
            self.backoff.push(Reverse((due, w.seq, uid.clone())));
        }
    }

    /// Moves pods whose backoff has passed to the active queue.
    pub(crate) fn promote(&mut self, now: Instant) {
        while let Some(Reverse((due, seq, _))) = self.backoff.peek() {
            if *due > now {
                break;
            }
            let (seq, uid) = (*seq, self.backoff.pop().map(|Reverse((_, _, u))| u));
            if let Some(uid) = uid
                && self
                    .waiting
                    .get(&uid)
                    .is_some_and(|w| w.state == WaitState::Backoff && w.seq == seq)
            {
                self.activate(&uid);
            }
        }
    }

    /// When the earliest backoff ends.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((due, _, _))| *due)
    }

    fn activate(&mut self, uid: &Uid) {
        if let Some(w) = self.waiting.get_mut(uid) {
            self.next_seq += 1;
            w.seq = self.next_seq;
            w.state = WaitState::Active;
            self.active.push(Ticket {
                priority: w.priority,
                seq: w.seq,
                uid: uid.clone(),
            });
        }
    }
}

/// kube-scheduler's per-pod backoff: the initial duration doubled per failed attempt
/// after the first, capped.
fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    initial.saturating_mul(1 << doublings).min(max)
}
