//! Settings of the scheduler loop.

use std::time::Duration;

/// Settings for [`Scheduler::new`](super::Scheduler::new). The defaults are
/// kube-scheduler's where it has one.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Pods whose `spec.schedulerName` is this (or unset) are scheduled here.
    pub scheduler_name: String,
    /// The most pods decided, and their bindings written, per store batch. Default 256.
    pub batch_size: usize,
    /// Batches of bindings being committed at once while the next are decided.
    /// Default 4.
    pub max_in_flight: usize,
    /// Percent of nodes to find feasible before scoring stops looking (0 = adaptive:
    /// 50% minus 1% per 125 nodes, at least 5% and at least 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    /// Backoff before a pod that did not fit is tried again, doubled per attempt.
    /// Default 1 s.
    pub initial_backoff: Duration,
    /// Longest backoff. Default 10 s.
    pub max_backoff: Duration,
    /// How often every unschedulable pod is retried even if nothing seemed to change
    /// (a backstop; changes that could help retry them at once). Default 60 s.
    pub unschedulable_flush: Duration,
    /// Events are written in batches, after the bindings they report and never in
    /// their way: when the scheduler is idle, when this many are buffered, or this long
    /// after the first buffered one. Default 2 s and 16,384 (a few MB).
    pub event_flush: Duration,
    pub max_buffered_events: usize,
    /// Seed of the tie-break between equal nodes; `None` picks one at random.
    pub seed: Option<u64>,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            scheduler_name: super::writes::COMPONENT.to_string(),
            batch_size: 256,
            max_in_flight: 4,
            percentage_of_nodes_to_score: 0,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(60),
            event_flush: Duration::from_secs(2),
            max_buffered_events: 16_384,
            seed: None,
        }
    }
}
