//! The scheduler: places each pod that has no node on one, with Kubernetes' placement
//! rules (filters, scores, explanations) over an in-memory cache of the cluster.
//!
//! The decision is a pure function ([`decide`]) over plain data ([`view`]); the loop
//! ([`run`]) keeps that data in step with the store through watches, binds pods in
//! batches and writes conditions and events.
//!
//! Start it next to the API server:
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn skiff_hub::store::Store>) {
//! use skiff_hub::clock::SystemClock;
//! use skiff_hub::scheduler::{Scheduler, SchedulerOptions};
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let scheduler = Scheduler::new(store, std::sync::Arc::new(SystemClock), SchedulerOptions::default());
//! let task = tokio::spawn(scheduler.run(async {
//!     let _ = stopped.await;
//! }));
//! // ... serve ...
//! let _ = stop.send(());
//! task.await.expect("scheduler task").expect("scheduler");
//! # }
//! ```

mod cache;
mod decide;
mod error;
mod filters;
mod hash;
mod interpod;
mod options;
mod pod_info;
mod queue;
mod resources;
mod run;
mod scores;
mod stats;
mod view;
mod writes;

#[cfg(test)]
mod tests;

pub use error::SchedulerError;
pub use options::SchedulerOptions;
pub use run::Scheduler;
pub use stats::{SchedulerStats, SchedulerStatsHandle};
// Events about pods are written the same way by the scheduler and the MQTT link.
pub(crate) use writes::{PodRef, pod_event};
