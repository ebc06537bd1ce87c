//! Applying runtime actions off the agent loop. Starting a pod pulls images and
//! creates containers, stopping one waits out its grace period: none of that may hold up
//! heartbeats, messages from the hub or other pods. Each pod's actions run in order in
//! one task; while it runs the pod is busy and the loop leaves it alone. When the task
//! ends the loop is woken for another pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use skiff_api::protocol::{SCHEMA_VERSION, Up};
use skiff_api::resources::{Container, Pod, PullPolicy as SpecPullPolicy};
use tokio::sync::mpsc;
use tracing::{Instrument, error, info, info_span, warn};

use super::link::{HubLink, Seq};
use crate::image::{ImageStore, LocalImage, PullPolicy};
use crate::reconcile::{DesiredPod, PullFailure, restart_delay, spec_hash};
use crate::runtime::{ContainerRuntime, PodToStart};

/// A runtime action the loop hands to a pod's task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work {
    Start(Box<DesiredPod>),
    Stop,
    Remove,
    /// Start a container that has not run yet (the next init container, or the app
    /// containers after the init containers).
    StartContainer(String),
    RestartContainer(String),
    /// A probe found the container dead: kill it (it then restarts under its policy).
    KillContainer {
        container: String,
        message: String,
        namespace: String,
        name: String,
    },
}

/// Sends pod events to the hub; events are best effort (dropped while disconnected).
#[derive(Debug, Clone)]
pub(crate) struct Events {
    pub link: Arc<dyn HubLink>,
    pub seq: Seq,
}

impl Events {
    pub(crate) fn send(&self, pod: &Pod, uid: &str, warning: bool, reason: &str, message: String) {
        let ns = pod.metadata.namespace_or_empty();
        self.send_named(ns, &pod.metadata.name, uid, warning, reason, message);
    }

    pub(crate) fn send_named(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let msg = Up::PodEvent {
            v: SCHEMA_VERSION,
            seq: self.seq.next(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            type_: if warning { "Warning" } else { "Normal" }.to_string(),
            reason: reason.to_string(),
            message,
        };
        if let Err(e) = self.link.send(&msg) {
            tracing::debug!(error = %e, reason, "event not sent");
        }
    }
}

/// The pods with work in flight, and what image pulls have failed.
#[derive(Debug)]
pub(crate) struct Executor {
    runtime: Arc<dyn ContainerRuntime>,
    images: Option<Arc<dyn ImageStore>>,
    events: Events,
    pulls: Arc<Mutex<BTreeMap<String, PullFailure>>>,
    busy: BTreeSet<String>,
    done_tx: mpsc::UnboundedSender<String>,
}

impl Executor {
    /// An executor and the channel on which the uid of each finished task arrives.
    pub(crate) fn new(
        runtime: Arc<dyn ContainerRuntime>,
        images: Option<Arc<dyn ImageStore>>,
        events: Events,
    ) -> (Executor, mpsc::UnboundedReceiver<String>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let ex = Executor {
            runtime,
            images,
            events,
            pulls: Arc::default(),
            busy: BTreeSet::new(),
            done_tx,
        };
        (ex, done_rx)
    }

    pub(crate) fn is_busy(&self, uid: &str) -> bool {
        self.busy.contains(uid)
    }

    /// Marks a pod's task finished (the loop calls this for each uid from the channel).
    pub(crate) fn finished(&mut self, uid: &str) {
        self.busy.remove(uid);
    }

    /// Image pull failures by pod uid, for the reconciler.
    pub(crate) fn pull_failures(&self) -> BTreeMap<String, PullFailure> {
        self.pulls.lock().expect("pull failures").clone()
    }

    /// Forgets a pod's pull failures (it is no longer desired).
    pub(crate) fn forget(&self, uid: &str) {
        self.pulls.lock().expect("pull failures").remove(uid);
    }

    /// Runs `work` for `uid` in order in a new task. The pod must not be busy.
    pub(crate) fn spawn(&mut self, uid: String, work: Vec<Work>) {
        debug_assert!(!self.busy.contains(&uid));
        self.busy.insert(uid.clone());
        let task = Task {
            uid: uid.clone(),
            runtime: self.runtime.clone(),
            images: self.images.clone(),
            events: self.events.clone(),
            pulls: self.pulls.clone(),
        };
        let done = self.done_tx.clone();
        let span = info_span!("work");
        tokio::spawn(
            async move {
                for w in work {
                    if !task.run(w).await {
                        break;
                    }
                }
                crate::node::pages::note_activity();
                let _ = done.send(uid);
            }
            .instrument(span),
        );
    }
}

struct Task {
    uid: String,
    runtime: Arc<dyn ContainerRuntime>,
    images: Option<Arc<dyn ImageStore>>,
    events: Events,
    pulls: Arc<Mutex<BTreeMap<String, PullFailure>>>,
}

/// Runs a blocking closure on the blocking pool; a panic there is an error, not a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}

impl Task {
    /// Applies one piece of work; false stops the rest of the pod's list.
    async fn run(&self, work: Work) -> bool {
        let uid = self.uid.clone();
        let rt = self.runtime.clone();
        match work {
            Work::Start(want) => self.start(*want).await,
            Work::KillContainer {
                container,
                message,
                namespace,
                name,
            } => {
                let c = container.clone();
                match blocking(move || rt.kill_container(&uid, &c)).await {
                    Ok(Ok(())) => {
                        info!(pod = %self.uid, container = %container, %message, "killed container");
                        self.events.send_named(
                            &namespace,
                            &name,
                            &self.uid,
                            true,
                            "Unhealthy",
                            message,
                        );
                        true
                    }
                    Ok(Err(e)) => {
                        error!(pod = %self.uid, container = %container, error = %e, "cannot kill container");
                        false
                    }
                    Err(e) => {
                        error!(container = %container, error = %e, "killing panicked");
                        false
                    }
                }
            }
            Work::Stop => match blocking(move || rt.stop_pod(&uid)).await {
                Ok(Ok(())) => {
                    info!(pod = %self.uid, "stopped pod");
                    true
                }
                Ok(Err(e)) => {
                    error!(error = %e, "cannot stop pod");
                    false
                }
                Err(e) => {
                    error!(error = %e, "stopping the pod panicked");
                    false
                }
            },
            Work::Remove => match blocking(move || rt.remove_pod(&uid)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    error!(error = %e, "cannot remove pod");
                    false
                }
                Err(e) => {
                    error!(error = %e, "removing the pod panicked");
                    false
                }
            },
            Work::StartContainer(container) => {
                let c = container.clone();
                let done = blocking(move || rt.start_container(&uid, &c)).await;
                self.container_done(&container, "started", done)
            }
            Work::RestartContainer(container) => {
                let c = container.clone();
                let done = blocking(move || rt.restart_container(&uid, &c)).await;
                self.container_done(&container, "restarted", done)
            }
        }
    }

    /// Logs how starting or restarting one container went; true when it did.
    fn container_done<E: std::fmt::Display>(
        &self,
        container: &str,
        what: &str,
        done: Result<Result<(), crate::runtime::RuntimeError>, E>,
    ) -> bool {
        match done {
            Ok(Ok(())) => {
                info!(pod = %self.uid, container = %container, "{what} container");
                true
            }
            Ok(Err(e)) => {
                error!(container = %container, error = %e, "container not {what}");
                false
            }
            Err(e) => {
                error!(container = %container, error = %e, "{what} container: the task panicked");
                false
            }
        }
    }

    async fn start(&self, want: DesiredPod) -> bool {
        let images = match self.pull_all(&want).await {
            Some(images) => images,
            None => return false,
        };
        let rt = self.runtime.clone();
        let uid = self.uid.clone();
        let pod = want.pod.clone();
        let revision = want.revision;
        let started = Instant::now();
        let result = blocking(move || {
            rt.start_pod(PodToStart {
                uid: &uid,
                revision,
                spec_hash: spec_hash(&pod),
                pod: &pod,
                images: &images,
            })
        })
        .await;
        match result {
            Ok(Ok(())) => {
                info!(
                    pod = %self.uid,
                    name = %want.pod.metadata.name,
                    revision,
                    ms = started.elapsed().as_millis() as u64,
                    "started pod"
                );
                true
            }
            Ok(Err(e)) => {
                error!(error = %e, "cannot start pod");
                self.events
                    .send(&want.pod, &self.uid, true, "Failed", format!("Error: {e}"));
                false
            }
            Err(e) => {
                error!(error = %e, "starting the pod panicked");
                false
            }
        }
    }

    /// Makes every image of the pod available; on a failure records it (for the status
    /// and the back-off) and returns None.
    async fn pull_all(&self, want: &DesiredPod) -> Option<BTreeMap<String, LocalImage>> {
        let mut images = BTreeMap::new();
        let Some(store) = self.images.clone() else {
            return Some(images);
        };
        let containers: Vec<&Container> = want
            .pod
            .spec
            .init_containers
            .iter()
            .chain(&want.pod.spec.containers)
            .collect();
        for c in containers {
            if images.contains_key(&c.image) {
                continue;
            }
            let policy = pull_policy(c);
            let reference = c.image.clone();
            let s = store.clone();
            let started = Instant::now();
            let result = blocking(move || s.ensure(&reference, policy, &|_| {})).await;
            let result = match result {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("pulling panicked: {e}")),
            };
            match result {
                Ok(image) => {
                    let ms = started.elapsed().as_millis();
                    if ms > 50 {
                        self.events.send(
                            &want.pod,
                            &self.uid,
                            false,
                            "Pulled",
                            format!("Successfully pulled image \"{}\" in {ms}ms", c.image),
                        );
                    }
                    images.insert(c.image.clone(), image);
                }
                Err(message) => {
                    let failure = {
                        let mut pulls = self.pulls.lock().expect("pull failures");
                        let failures = pulls.get(&self.uid).map_or(0, |f| f.failures) + 1;
                        let delay = chrono::Duration::from_std(restart_delay(failures as i32))
                            .unwrap_or_else(|_| chrono::Duration::seconds(300));
                        let f = PullFailure {
                            container: c.name.clone(),
                            image: c.image.clone(),
                            message: message.clone(),
                            failures,
                            retry_at: Utc::now() + delay,
                        };
                        pulls.insert(self.uid.clone(), f.clone());
                        f
                    };
                    warn!(image = %c.image, failures = failure.failures, error = %message, "image pull failed");
                    self.events.send(
                        &want.pod,
                        &self.uid,
                        true,
                        "Failed",
                        format!("Failed to pull image \"{}\": {message}", c.image),
                    );
                    return None;
                }
            }
        }
        self.pulls.lock().expect("pull failures").remove(&self.uid);
        Some(images)
    }
}

/// The pull policy as written, else Kubernetes' default for the reference (the hub
/// defaults it, but a pod stored by an older hub may lack it).
pub(crate) fn pull_policy(c: &Container) -> PullPolicy {
    match c
        .image_pull_policy
        .unwrap_or_else(|| skiff_api::default_pull_policy(&c.image))
    {
        SpecPullPolicy::Always => PullPolicy::Always,
        SpecPullPolicy::Never => PullPolicy::Never,
        SpecPullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<SpecPullPolicy>) -> Container {
        Container {
            name: "c".into(),
            image: image.into(),
            image_pull_policy: policy,
            ..Container::default()
        }
    }

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        assert_eq!(pull_policy(&c("busybox", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:latest", None)), PullPolicy::Always);
        assert_eq!(pull_policy(&c("busybox:1", None)), PullPolicy::IfNotPresent);
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox:1", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox@sha256:abcd", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&c("busybox:1", Some(SpecPullPolicy::Always))),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&c("busybox", Some(SpecPullPolicy::Never))),
            PullPolicy::Never
        );
    }
}
