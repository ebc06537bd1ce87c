//! Why the scheduler loop stopped.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("watching {kind} failed: {source}")]
    Watch {
        kind: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the store ended the {kind} watch (it is shutting down)")]
    WatchEnded { kind: &'static str },
}
