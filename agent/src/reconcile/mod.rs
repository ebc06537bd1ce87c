//! The reconciler: a pure function from the desired pods (as persisted) and what the
//! runtime shows (plus the statuses last reported) to the actions that bring them
//! together. No I/O, no clock: `now` comes in with the observation, and so do the
//! settled probe results (see [`crate::probe`]).

mod pending;
mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skiff_api::resources::{Pod, PodStatus, RestartPolicy};

use crate::probe::ProbeResults;
use crate::runtime::{Exit, ObservedContainer, ObservedPod, RunState};

pub use pending::{PullFailure, pending_status};
pub use status::pod_status;

/// A pod the hub wants on this node, at the revision the agent stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub uid: String,
    pub revision: u64,
    pub pod: Pod,
}

/// Desired state, by uid.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub pods: BTreeMap<String, DesiredPod>,
}

/// What is: runtime pods and last reported statuses by uid, the node's address, the
/// probes' settled results, the crash-loop back-off resets and the time of the
/// observation.
#[derive(Debug, Clone)]
pub struct Observed {
    pub pods: BTreeMap<String, ObservedPod>,
    pub reported: BTreeMap<String, PodStatus>,
    pub host_ip: Option<String>,
    pub probes: ProbeResults,
    /// By (pod uid, container): the restart count at which the container's crash-loop
    /// back-off was last reset (see [`Action::ResetBackoff`]).
    pub backoff_resets: BTreeMap<(String, String), i32>,
    pub now: DateTime<Utc>,
    /// Pods whose last image pull failed, by uid.
    pub pulls: BTreeMap<String, PullFailure>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create and start the pod (replacing any old instance with this uid).
    StartPod { uid: String },
    /// Stop every container of the pod.
    StopPod { uid: String },
    /// Free a stopped pod.
    RemovePod { uid: String },
    /// Start a container that has not run yet: the next init container, or an app
    /// container once every init container completed.
    StartContainer { uid: String, container: String },
    /// Start an exited container again.
    RestartContainer { uid: String, container: String },
    /// Kill a running container whose liveness or startup probe failed; it is then
    /// restarted (or not) by its restart policy like any exited container. `message` is
    /// the event to record ("Liveness probe failed: ...").
    KillContainer {
        uid: String,
        container: String,
        message: String,
    },
    /// The container ran long enough before it exited that its crash-loop back-off
    /// starts over: remember `restart_count` as the point the back-off counts from.
    ResetBackoff {
        uid: String,
        container: String,
        restart_count: i32,
    },
    /// Tell the hub the pod's status.
    ReportStatus {
        uid: String,
        namespace: String,
        name: String,
        status: Box<PodStatus>,
    },
    /// The pod is gone: drop its reported status.
    ForgetStatus { uid: String },
}

/// FNV-1a, 64 bit: stable across builds and releases, unlike `DefaultHasher`, so a hash
/// stored by one agent version is comparable by the next.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The hash of what makes a pod run differently: its spec (metadata changes such as
/// labels never restart a pod).
pub fn spec_hash(pod: &Pod) -> u64 {
    fnv1a(&serde_json::to_vec(&pod.spec).expect("spec serializes"))
}

const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long after an exit a container with `restart_count` restarts may start again:
/// at once the first time, then 10 s doubling to 5 min (Kubernetes' CrashLoopBackOff).
pub fn restart_delay(restart_count: i32) -> Duration {
    if restart_count <= 0 {
        return Duration::ZERO;
    }
    let doublings = (restart_count - 1).min(16) as u32;
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// A container that ran this long before it exited is not crash-looping: its back-off
/// starts over (as in Kubernetes).
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// The restarts that count towards `c`'s back-off after it ended with `exit`: none
/// after a run of [`BACKOFF_RESET_AFTER`] or more, else those since the last reset.
pub(crate) fn crash_streak(c: &ObservedContainer, exit: &Exit, reset_at: Option<i32>) -> i32 {
    let ran = (exit.finished_at - exit.started_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    if ran >= BACKOFF_RESET_AFTER {
        return 0;
    }
    match reset_at {
        // A reset recorded for an earlier pod with this uid (higher count) is stale.
        Some(at) if at <= c.restart_count => c.restart_count - at,
        _ => c.restart_count,
    }
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub(crate) fn restarts(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// Whether a failed init container runs again: unless the policy is Never (Always acts
/// as OnFailure, since a completed init container never runs again).
pub(crate) fn init_restarts(policy: RestartPolicy, exit_code: i32) -> bool {
    exit_code != 0 && policy != RestartPolicy::Never
}

/// Restarts exited container `c` once its crash-loop back-off has passed, and records a
/// back-off reset after a long enough run.
fn restart_when_due(
    actions: &mut Vec<Action>,
    observed: &Observed,
    uid: &str,
    c: &ObservedContainer,
    exit: &Exit,
) {
    let key = (uid.to_string(), c.name.clone());
    let reset_at = observed.backoff_resets.get(&key).copied();
    let streak = crash_streak(c, exit, reset_at);
    if streak == 0 && c.restart_count > 0 && reset_at != Some(c.restart_count) {
        actions.push(Action::ResetBackoff {
            uid: uid.to_string(),
            container: c.name.clone(),
            restart_count: c.restart_count,
        });
    }
    let due =
        exit.finished_at + chrono::Duration::from_std(restart_delay(streak)).expect("delay fits");
    if observed.now >= due {
        actions.push(Action::RestartContainer {
            uid: uid.to_string(),
            container: c.name.clone(),
        });
    }
}

pub(crate) fn policy(pod: &Pod) -> RestartPolicy {
    pod.spec.restart_policy.unwrap_or(RestartPolicy::Always)
}

/// The actions that bring `observed` to `desired`, in the order to apply them.
pub fn reconcile(desired: &Desired, observed: &Observed) -> Vec<Action> {
    let mut actions = Vec::new();
    for (uid, want) in &desired.pods {
        let Some(have) = observed.pods.get(uid) else {
            let pull = observed.pulls.get(uid);
            if pull.is_none_or(|f| observed.now >= f.retry_at) {
                actions.push(Action::StartPod { uid: uid.clone() });
            }
            // A pod being created is Pending on the hub already; the device only tells
            // why when an image keeps it from starting.
            let Some(pull) = pull else {
                continue;
            };
            let status = pending_status(
                &want.pod,
                Some(pull),
                observed.reported.get(uid),
                observed.host_ip.as_deref(),
                observed.now,
            );
            if observed.reported.get(uid) != Some(&status) {
                actions.push(Action::ReportStatus {
                    uid: uid.clone(),
                    namespace: want.pod.metadata.namespace_or_empty().to_string(),
                    name: want.pod.metadata.name.clone(),
                    status: Box::new(status),
                });
            }
            continue;
        };
        if have.revision != want.revision && have.spec_hash != spec_hash(&want.pod) {
            actions.push(Action::StopPod { uid: uid.clone() });
            actions.push(Action::RemovePod { uid: uid.clone() });
            actions.push(Action::StartPod { uid: uid.clone() });
            continue;
        }
        let policy = policy(&want.pod);
        // Init containers, in order: the first that has not completed is the one to
        // start, wait for, or restart; app containers start only after all completed.
        let mut initialized = true;
        for c in &have.init_containers {
            match c.state {
                RunState::Exited(exit) if exit.exit_code == 0 => continue,
                RunState::Waiting => actions.push(Action::StartContainer {
                    uid: uid.clone(),
                    container: c.name.clone(),
                }),
                RunState::Exited(exit) => {
                    if init_restarts(policy, exit.exit_code) {
                        restart_when_due(&mut actions, observed, uid, c, &exit);
                    }
                }
                RunState::Running { .. } => {}
            }
            initialized = false;
            break;
        }
        for c in &have.containers {
            match c.state {
                RunState::Waiting => {
                    if initialized {
                        actions.push(Action::StartContainer {
                            uid: uid.clone(),
                            container: c.name.clone(),
                        });
                    }
                }
                RunState::Exited(exit) => {
                    if restarts(policy, exit.exit_code) {
                        restart_when_due(&mut actions, observed, uid, c, &exit);
                    }
                }
                RunState::Running { .. } => {
                    let spec = want.pod.spec.containers.iter().find(|s| s.name == c.name);
                    if let Some(message) = observed.probes.health(uid, spec, c).kill {
                        actions.push(Action::KillContainer {
                            uid: uid.clone(),
                            container: c.name.clone(),
                            message,
                        });
                    }
                }
            }
        }
        let status = pod_status(
            &want.pod,
            have,
            observed.reported.get(uid),
            observed.host_ip.as_deref(),
            &observed.probes,
            observed.now,
        );
        if observed.reported.get(uid) != Some(&status) {
            actions.push(Action::ReportStatus {
                uid: uid.clone(),
                namespace: have.namespace.clone(),
                name: have.name.clone(),
                status: Box::new(status),
            });
        }
    }
    for (uid, have) in &observed.pods {
        if desired.pods.contains_key(uid) {
            continue;
        }
        if have.any_running() {
            actions.push(Action::StopPod { uid: uid.clone() });
        } else {
            // Stopped: report how it ended, then forget it.
            let mut gone = Pod::default();
            gone.spec.restart_policy = Some(RestartPolicy::Never);
            let status = pod_status(
                &gone,
                have,
                observed.reported.get(uid),
                observed.host_ip.as_deref(),
                &observed.probes,
                observed.now,
            );
            actions.push(Action::ReportStatus {
                uid: uid.clone(),
                namespace: have.namespace.clone(),
                name: have.name.clone(),
                status: Box::new(status),
            });
            actions.push(Action::RemovePod { uid: uid.clone() });
            actions.push(Action::ForgetStatus { uid: uid.clone() });
        }
    }
    // Reported statuses of pods neither desired nor present (removed while the agent was
    // down) are dropped too.
    for uid in observed.reported.keys() {
        if !desired.pods.contains_key(uid) && !observed.pods.contains_key(uid) {
            actions.push(Action::ForgetStatus { uid: uid.clone() });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
