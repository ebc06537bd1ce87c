//! Counters the writer keeps about its work, for metrics and for checking that group
//! commit actually groups.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the store's counters since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// SQLite transactions that committed writes (compaction not counted).
    pub commits: u64,
    /// Write requests answered, whatever their outcome.
    pub writes: u64,
    /// Write requests taken together in the most recent round.
    pub last_batch_size: u64,
    /// Objects currently stored.
    pub objects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) last_batch: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, objects: usize) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            last_batch_size: self.last_batch.load(Ordering::Relaxed),
            objects: objects as u64,
        }
    }
}
