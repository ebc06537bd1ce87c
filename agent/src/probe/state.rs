//! The prober's decisions, pure: which probe of which running container is due at a
//! given time, how attempts add up to a settled result (success and failure
//! thresholds), and what the settled results mean for a container (started, ready, to
//! be killed). The clock is a parameter; nothing here sleeps or does I/O.
//!
//! As in the kubelet, each (pod, container, kind) has its own worker state, started
//! afresh for every run of the container: a restart (new container id or start time)
//! throws the old results away.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skiff_api::resources::{Container, IntOrString, Probe, UriScheme};

use crate::reconcile::Desired;
use crate::runtime::{ObservedContainer, ObservedPod, RunState};

/// Which of a container's three probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As Kubernetes words it in events ("Liveness probe failed: ...").
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_deref(),
            ProbeKind::Liveness => c.liveness_probe.as_deref(),
            ProbeKind::Readiness => c.readiness_probe.as_deref(),
        }
    }
}

const KINDS: [ProbeKind; 3] = [
    ProbeKind::Startup,
    ProbeKind::Liveness,
    ProbeKind::Readiness,
];

/// One probe worker: a kind of probe of one container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeKey {
    pub uid: String,
    pub container: String,
    pub kind: ProbeKind,
}

/// One run of a container. Results belong to a run: a restart starts a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub container_id: String,
    pub started_at: DateTime<Utc>,
}

impl Instance {
    /// The run a container is in, when it is running.
    pub fn of(c: &ObservedContainer) -> Option<Instance> {
        match c.state {
            RunState::Running { started_at } => Some(Instance {
                container_id: c.container_id.clone(),
                started_at,
            }),
            RunState::Exited(_) | RunState::Waiting => None,
        }
    }
}

/// A probe's schedule and thresholds, with Kubernetes' defaults for what the spec
/// leaves out (or sets below the minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64, min: u64| {
            Duration::from_secs(v.map_or(default, |s| u64::try_from(s).unwrap_or(0).max(min)))
        };
        let count = |v: Option<i32>, default: u32| v.map_or(default, |n| n.max(1) as u32);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        }
    }
}

/// What one attempt does, resolved from the spec when the container's run is first
/// seen (named ports looked up, the default host chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Exec {
        command: Vec<String>,
    },
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
        /// Scheme HTTPS: TLS without verifying the certificate, as in Kubernetes.
        https: bool,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// The spec cannot be probed (a named port no container port has, no
    /// handler): every attempt fails with this message.
    Invalid(String),
}

impl Check {
    /// `pod_ip` is the default host; without one (host network) the probe goes to
    /// loopback, which is where a host-network container listens too.
    pub fn of(p: &Probe, c: &Container, pod_ip: Option<&str>) -> Check {
        let host = |h: &Option<String>| {
            h.clone()
                .filter(|h| !h.is_empty())
                .or_else(|| pod_ip.map(str::to_string))
                .unwrap_or_else(|| "127.0.0.1".to_string())
        };
        if let Some(e) = &p.exec {
            return Check::Exec {
                command: e.command.clone(),
            };
        }
        if let Some(h) = &p.http_get {
            let port = match resolve_port(&h.port, c) {
                Ok(p) => p,
                Err(m) => return Check::Invalid(m),
            };
            let path = match h.path.as_deref() {
                None | Some("") => "/".to_string(),
                Some(p) if p.starts_with('/') => p.to_string(),
                Some(p) => format!("/{p}"),
            };
            return Check::Http {
                host: host(&h.host),
                port,
                path,
                https: h.scheme == Some(UriScheme::Https),
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            };
        }
        if let Some(t) = &p.tcp_socket {
            return match resolve_port(&t.port, c) {
                Ok(port) => Check::Tcp {
                    host: host(&t.host),
                    port,
                },
                Err(m) => Check::Invalid(m),
            };
        }
        Check::Invalid("the probe has no handler (exec, httpGet or tcpSocket)".to_string())
    }
}

/// A port by number, or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("container {} has no port named {name:?}", c.name))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| format!("port {n} is not in 1..65535"))
}

/// What one attempt found. A timeout is a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// A settled result: the thresholds have been met (or not yet: `Unknown`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProbeResult {
    #[default]
    Unknown,
    Success,
    Failure(String),
}

#[derive(Debug, Clone)]
struct Worker {
    timing: Timing,
    check: Check,
    instance: Instance,
    result: ProbeResult,
    successes: u32,
    failures: u32,
    next_due: DateTime<Utc>,
    in_flight: bool,
    /// Nothing more to learn in this run: the startup probe passed, or a liveness or
    /// startup failure settled (the container is being killed).
    done: bool,
}

/// An attempt to make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub key: ProbeKey,
    pub instance: Instance,
    pub check: Check,
    pub timeout: Duration,
}

/// Every probe worker of a node.
#[derive(Debug, Default)]
pub struct Prober {
    workers: BTreeMap<ProbeKey, Worker>,
}

fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Prober {
    /// Brings the workers in line with the running containers of desired pods: a new
    /// run gets fresh workers (first attempt `initialDelaySeconds` after it started),
    /// containers no longer running lose theirs. True when workers were added.
    pub fn track(&mut self, desired: &Desired, pods: &BTreeMap<String, ObservedPod>) -> bool {
        let mut keep = BTreeMap::new();
        let mut added = false;
        for (uid, want) in &desired.pods {
            let Some(have) = pods.get(uid) else { continue };
            for c in &have.containers {
                let Some(instance) = Instance::of(c) else {
                    continue;
                };
                let Some(spec) = want.pod.spec.containers.iter().find(|s| s.name == c.name) else {
                    continue;
                };
                for kind in KINDS {
                    let Some(probe) = kind.of(spec) else { continue };
                    let key = ProbeKey {
                        uid: uid.clone(),
                        container: c.name.clone(),
                        kind,
                    };
                    let worker = match self.workers.remove(&key) {
                        Some(w) if w.instance == instance => w,
                        _ => {
                            added = true;
                            let timing = Timing::of(probe);
                            Worker {
                                timing,
                                check: Check::of(probe, spec, have.pod_ip.as_deref()),
                                next_due: add(instance.started_at, timing.initial_delay),
                                instance: instance.clone(),
                                result: ProbeResult::Unknown,
                                successes: 0,
                                failures: 0,
                                in_flight: false,
                                done: false,
                            }
                        }
                    };
                    keep.insert(key, worker);
                }
            }
        }
        self.workers = keep;
        added
    }

    /// Liveness and readiness wait for the startup probe (when there is one) to pass.
    fn gated(&self, key: &ProbeKey) -> bool {
        if key.kind == ProbeKind::Startup {
            return false;
        }
        let startup = ProbeKey {
            kind: ProbeKind::Startup,
            ..key.clone()
        };
        self.workers
            .get(&startup)
            .is_some_and(|s| s.result != ProbeResult::Success)
    }

    fn waiting(&self) -> impl Iterator<Item = (&ProbeKey, &Worker)> {
        self.workers
            .iter()
            .filter(|(k, w)| !w.in_flight && !w.done && !self.gated(k))
    }

    /// The attempts due at `now`, marked as under way until their outcome is recorded.
    pub fn begin_due(&mut self, now: DateTime<Utc>) -> Vec<Attempt> {
        let due: Vec<ProbeKey> = self
            .waiting()
            .filter(|(_, w)| w.next_due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .map(|key| {
                let w = self.workers.get_mut(&key).expect("listed above");
                w.in_flight = true;
                Attempt {
                    instance: w.instance.clone(),
                    check: w.check.clone(),
                    timeout: w.timing.timeout,
                    key,
                }
            })
            .collect()
    }

    /// When the next attempt falls due (None: nothing to probe until something changes).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting().map(|(_, w)| w.next_due).min()
    }

    /// Counts an attempt's outcome. True when the settled result changed. Outcomes for
    /// a run that has since ended are dropped.
    pub fn record(
        &mut self,
        key: &ProbeKey,
        instance: &Instance,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(w) = self.workers.get_mut(key) else {
            return false;
        };
        if &w.instance != instance {
            return false;
        }
        w.in_flight = false;
        w.next_due = add(now, w.timing.period);
        let before = std::mem::discriminant(&w.result);
        match outcome {
            Outcome::Success => {
                w.failures = 0;
                w.successes = w.successes.saturating_add(1);
                if w.successes >= w.timing.success_threshold {
                    w.result = ProbeResult::Success;
                    // A started container is not asked again whether it started.
                    w.done = key.kind == ProbeKind::Startup;
                }
            }
            Outcome::Failure(message) => {
                w.successes = 0;
                w.failures = w.failures.saturating_add(1);
                if w.failures >= w.timing.failure_threshold {
                    w.result = ProbeResult::Failure(message);
                    // The container gets killed; its next run gets new workers.
                    w.done = key.kind != ProbeKind::Readiness;
                }
            }
        }
        before != std::mem::discriminant(&w.result)
    }

    /// The settled results, for the reconciler.
    pub fn results(&self) -> ProbeResults {
        let mut by_container: BTreeMap<(String, String), ContainerProbes> = BTreeMap::new();
        for (k, w) in &self.workers {
            let e = by_container
                .entry((k.uid.clone(), k.container.clone()))
                .or_insert_with(|| ContainerProbes {
                    instance: w.instance.clone(),
                    results: BTreeMap::new(),
                });
            e.results.insert(k.kind, w.result.clone());
        }
        ProbeResults {
            assume_passing: false,
            by_container,
        }
    }
}

/// The settled results of one run of a container, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProbes {
    pub instance: Instance,
    pub results: BTreeMap<ProbeKind, ProbeResult>,
}

/// The settled probe results of every running container, as the reconciler sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// For runtimes with nothing to probe (simulated containers have no process): every
    /// probe counts as passing.
    pub assume_passing: bool,
    pub by_container: BTreeMap<(String, String), ContainerProbes>,
}

/// What the probes say about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Running, and its startup probe (if any) passed.
    pub started: bool,
    /// Started, and its readiness probe (if any) passed.
    pub ready: bool,
    /// Its liveness or startup probe failed: kill it, with this event message.
    pub kill: Option<String>,
}

impl ProbeResults {
    pub fn passing() -> ProbeResults {
        ProbeResults {
            assume_passing: true,
            by_container: BTreeMap::new(),
        }
    }

    /// Whether `c` of pod `uid` (spec `spec`, when the pod is desired) is started,
    /// ready, or to be killed. Results of an earlier run of the container do not count.
    pub fn health(&self, uid: &str, spec: Option<&Container>, c: &ObservedContainer) -> Health {
        let Some(instance) = Instance::of(c) else {
            return Health {
                started: false,
                ready: false,
                kill: None,
            };
        };
        let Some(spec) = spec.filter(|_| !self.assume_passing) else {
            return Health {
                started: true,
                ready: true,
                kill: None,
            };
        };
        let results = self
            .by_container
            .get(&(uid.to_string(), c.name.clone()))
            .filter(|p| p.instance == instance);
        let result = |kind: ProbeKind| {
            results
                .and_then(|p| p.results.get(&kind))
                .cloned()
                .unwrap_or_default()
        };
        let failed = |kind: ProbeKind| match result(kind) {
            ProbeResult::Failure(m) => Some(format!("{} probe failed: {m}", kind.label())),
            _ => None,
        };
        let started =
            spec.startup_probe.is_none() || result(ProbeKind::Startup) == ProbeResult::Success;
        let ready = started
            && (spec.readiness_probe.is_none()
                || result(ProbeKind::Readiness) == ProbeResult::Success);
        let kill = if spec.startup_probe.is_some() && !started {
            failed(ProbeKind::Startup)
        } else if spec.liveness_probe.is_some() {
            failed(ProbeKind::Liveness)
        } else {
            None
        };
        Health {
            started,
            ready,
            kill,
        }
    }
}

#[cfg(test)]
mod tests;
