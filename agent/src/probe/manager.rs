//! Running the probes alongside the sync loop: a scheduler task asks the [`Prober`] what
//! is due, runs each attempt as a task of its own (blocking work off the async threads)
//! and records the outcome. The sync loop tells it which containers run
//! ([`ProbeManager::track`]), reads the settled results ([`ProbeManager::results`]) and
//! waits on [`ProbeManager::changed`], which fires when a result settles differently:
//! a readiness flip is reported, a liveness failure acted on, without waiting for the
//! next resync.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tracing::debug;

use super::attempt::attempt;
use super::state::{ProbeResults, Prober};
use crate::reconcile::Desired;
use crate::runtime::{ContainerRuntime, ObservedPod};

/// How long the scheduler sleeps with nothing due (it is woken when workers are added).
const IDLE: Duration = Duration::from_secs(3600);
/// Beyond its own timeout, how long an attempt may take before it counts as failed
/// (a thread stuck in name resolution, a runtime that does not answer).
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Shared {
    runtime: Arc<dyn ContainerRuntime>,
    prober: Mutex<Prober>,
    /// Wakes the scheduler: workers were added or an attempt finished.
    schedule: Notify,
    /// Wakes the sync loop: a settled result changed.
    changed: Notify,
}

impl Shared {
    fn prober(&self) -> MutexGuard<'_, Prober> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.prober.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The probes of one node. Dropping it stops them.
#[derive(Debug)]
pub struct ProbeManager {
    shared: Arc<Shared>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

impl ProbeManager {
    /// Starts probing for `runtime`'s containers (on the current tokio runtime). A
    /// runtime without processes gets no scheduler, and every probe counts as passing.
    pub fn start(runtime: Arc<dyn ContainerRuntime>) -> ProbeManager {
        let active = runtime.runs_probes();
        let shared = Arc::new(Shared {
            runtime,
            prober: Mutex::new(Prober::default()),
            schedule: Notify::new(),
            changed: Notify::new(),
        });
        let scheduler = active.then(|| tokio::spawn(schedule(shared.clone())));
        ProbeManager { shared, scheduler }
    }

    /// Follows the running containers of desired pods (new runs get fresh probes).
    pub fn track(&self, desired: &Desired, pods: &BTreeMap<String, ObservedPod>) {
        if self.scheduler.is_none() {
            return;
        }
        if self.shared.prober().track(desired, pods) {
            self.shared.schedule.notify_one();
        }
    }

    /// The settled results, for the reconciler.
    pub fn results(&self) -> ProbeResults {
        if self.scheduler.is_none() {
            return ProbeResults::passing();
        }
        self.shared.prober().results()
    }

    /// Resolves when a settled result has changed since the last time it resolved.
    pub async fn changed(&self) {
        self.shared.changed.notified().await
    }
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        if let Some(s) = &self.scheduler {
            s.abort();
        }
    }
}

async fn schedule(shared: Arc<Shared>) {
    loop {
        let now = Utc::now();
        let (attempts, next) = {
            let mut p = shared.prober();
            (p.begin_due(now), p.next_due())
        };
        for a in attempts {
            let shared = shared.clone();
            tokio::spawn(async move {
                let limit = a.timeout + GRACE;
                let run = attempt(
                    shared.runtime.clone(),
                    a.key.uid.clone(),
                    a.key.container.clone(),
                    a.check,
                    a.timeout,
                );
                let outcome = tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                    super::Outcome::Failure(format!("the probe did not finish within {limit:?}"))
                });
                debug!(pod = %a.key.uid, container = %a.key.container,
                    kind = a.key.kind.label(), ?outcome, "probe");
                let changed = shared
                    .prober()
                    .record(&a.key, &a.instance, outcome, Utc::now());
                if changed {
                    shared.changed.notify_one();
                }
                shared.schedule.notify_one();
            });
        }
        let sleep = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(IDLE);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.schedule.notified() => {}
        }
    }
}
