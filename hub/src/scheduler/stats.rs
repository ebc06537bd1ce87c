//! Counters the scheduler keeps, readable while it runs (for metrics and benchmarks).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of the scheduler's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Decisions made (placements and failures).
    pub decisions: u64,
    /// Bindings written durably.
    pub bound: u64,
    /// Decisions that found no node.
    pub unschedulable: u64,
    /// Bindings that lost a race (pod bound elsewhere, deleted or replaced meanwhile)
    /// or failed to write.
    pub binding_failures: u64,
    /// Events written.
    pub events: u64,
    /// Write batches sent to the store.
    pub commits: u64,
    /// Time spent deciding, including updating the cache with the decisions.
    pub decide_time: Duration,
    /// Wall time during which at least one batch of bindings was being committed.
    pub commit_time: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) decisions: AtomicU64,
    pub(crate) bound: AtomicU64,
    pub(crate) unschedulable: AtomicU64,
    pub(crate) binding_failures: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) decide_nanos: AtomicU64,
    pub(crate) commit_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_time(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// Reads the counters of a running scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerStatsHandle(pub(crate) Arc<Counters>);

impl SchedulerStatsHandle {
    pub fn snapshot(&self) -> SchedulerStats {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedulerStats {
            decisions: get(&c.decisions),
            bound: get(&c.bound),
            unschedulable: get(&c.unschedulable),
            binding_failures: get(&c.binding_failures),
            events: get(&c.events),
            commits: get(&c.commits),
            decide_time: Duration::from_nanos(get(&c.decide_nanos)),
            commit_time: Duration::from_nanos(get(&c.commit_nanos)),
        }
    }
}
