//! The simulated runtime: containers "run" the moment they start and no process exists.
//! Each pod is a JSON record in its own file under the runtime's directory, written
//! atomically, so pods outlive the agent exactly as real containers do: an agent killed
//! with SIGKILL and started again finds them running and adopts them (restart counts
//! unchanged).
//!
//! Every container start writes the line `started <name>` to the container's log file,
//! `<dir>/logs/<uid>/<container>.log`, as a real container's first output would be;
//! a restart first moves that file to `<container>.previous.log`. `skiff logs` reads them
//! through [`ContainerRuntime::log_paths`] like any runtime's.
//!
//! For exercising restart policies, a pod annotated with
//! `skiff.io/simulate-exit-code: "<n>"` has containers that exit with code `n` as soon
//! as they start (init containers always complete with 0).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use skiff_api::resources::Container;

use super::records::{self, safe_name};
use super::{
    ContainerRuntime, ExecProcess, ExecRequest, Exit, ExitReason, LogPaths, ObservedContainer,
    ObservedPod, PodToStart, RunState, RuntimeError,
};

/// Annotation that makes simulated containers exit at once with the given code.
pub const SIMULATE_EXIT_CODE: &str = "skiff.io/simulate-exit-code";

#[derive(Debug)]
pub struct SimulatedRuntime {
    dir: PathBuf,
    pods: Mutex<BTreeMap<String, SimPod>>,
}

/// A record: the observation plus what a restart needs to know.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimPod {
    observed: ObservedPod,
    exit_code: Option<i32>,
}

impl SimulatedRuntime {
    /// Opens the runtime whose records live in `dir`, adopting every pod found there.
    pub fn open(dir: &Path) -> Result<SimulatedRuntime, RuntimeError> {
        let io = |source| RuntimeError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut pods = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| RuntimeError::Io {
                path: path.clone(),
                source,
            })?;
            let pod: SimPod =
                serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Corrupt {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            pods.insert(pod.observed.uid.clone(), pod);
        }
        Ok(SimulatedRuntime {
            dir: dir.to_path_buf(),
            pods: Mutex::new(pods),
        })
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{}.json", safe_name(uid)))
    }

    fn log_dir(&self, uid: &str) -> PathBuf {
        self.dir.join("logs").join(safe_name(uid))
    }

    fn log_file(&self, uid: &str, container: &str, previous: bool) -> PathBuf {
        let suffix = if previous { ".previous.log" } else { ".log" };
        self.log_dir(uid)
            .join(format!("{}{suffix}", safe_name(container)))
    }

    /// A container instance starts: its log file begins with `started <name>`. With
    /// `restart`, the last instance's file becomes the previous one.
    fn start_log(&self, uid: &str, container: &str, restart: bool) -> Result<(), RuntimeError> {
        let current = self.log_file(uid, container, false);
        let io = |source| RuntimeError::Io {
            path: current.clone(),
            source,
        };
        std::fs::create_dir_all(self.log_dir(uid)).map_err(io)?;
        if restart {
            match std::fs::rename(&current, self.log_file(uid, container, true)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        std::fs::write(&current, format!("started {container}\n")).map_err(io)
    }

    fn write(&self, pod: &SimPod) -> Result<(), RuntimeError> {
        records::write_json(&self.dir, &self.record_path(&pod.observed.uid), pod)
    }

    fn update(
        &self,
        uid: &str,
        change: impl FnOnce(&mut SimPod) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let mut pods = self.pods.lock().expect("runtime lock");
        let pod = pods.get_mut(uid).ok_or_else(|| RuntimeError::NoSuchPod {
            uid: uid.to_string(),
        })?;
        let mut next = pod.clone();
        change(&mut next)?;
        self.write(&next)?;
        *pod = next;
        Ok(())
    }

    /// A pod IP from a /16 that no real network uses, stable for the uid.
    fn pod_ip(uid: &str) -> String {
        let h = crate::reconcile::fnv1a(uid.as_bytes());
        format!("10.244.{}.{}", (h >> 8) as u8, (h as u8).max(2))
    }
}

fn start_container(
    uid: &str,
    c: &Container,
    exit_code: Option<i32>,
    restart_count: i32,
    last_exit: Option<Exit>,
) -> ObservedContainer {
    let now = Utc::now();
    let state = match exit_code {
        Some(code) => RunState::Exited(Exit {
            exit_code: code,
            started_at: now,
            finished_at: now,
            reason: ExitReason::Plain,
        }),
        None => RunState::Running { started_at: now },
    };
    ObservedContainer {
        name: c.name.clone(),
        image: c.image.clone(),
        container_id: format!("simulated://{uid}/{}/{restart_count}", c.name),
        restart_count,
        state,
        last_exit,
    }
}

impl ContainerRuntime for SimulatedRuntime {
    fn start_pod(&self, pod: PodToStart<'_>) -> Result<(), RuntimeError> {
        let exit_code = pod
            .pod
            .metadata
            .annotations
            .get(SIMULATE_EXIT_CODE)
            .and_then(|v| v.trim().parse().ok());
        let spec = &pod.pod.spec;
        let record = SimPod {
            observed: ObservedPod {
                uid: pod.uid.to_string(),
                namespace: pod.pod.metadata.namespace_or_empty().to_string(),
                name: pod.pod.metadata.name.clone(),
                revision: pod.revision,
                spec_hash: pod.spec_hash,
                started_at: Utc::now(),
                pod_ip: (!spec.host_network).then(|| Self::pod_ip(pod.uid)),
                init_containers: spec
                    .init_containers
                    .iter()
                    .map(|c| start_container(pod.uid, c, Some(0), 0, None))
                    .collect(),
                containers: spec
                    .containers
                    .iter()
                    .map(|c| start_container(pod.uid, c, exit_code, 0, None))
                    .collect(),
            },
            exit_code,
        };
        let mut pods = self.pods.lock().expect("runtime lock");
        // A replaced pod's logs go with it.
        let _ = std::fs::remove_dir_all(self.log_dir(pod.uid));
        for c in &spec.containers {
            self.start_log(pod.uid, &c.name, false)?;
        }
        self.write(&record)?;
        pods.insert(pod.uid.to_string(), record);
        Ok(())
    }

    fn stop_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        self.update(uid, |pod| {
            let now = Utc::now();
            for c in &mut pod.observed.containers {
                if let RunState::Running { started_at } = c.state {
                    // A simulated process always handles SIGTERM cleanly.
                    c.state = RunState::Exited(Exit {
                        exit_code: 0,
                        started_at,
                        finished_at: now,
                        reason: ExitReason::Plain,
                    });
                }
            }
            Ok(())
        })
    }

    fn remove_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        let mut pods = self.pods.lock().expect("runtime lock");
        records::remove(&self.record_path(uid))?;
        pods.remove(uid);
        match std::fs::remove_dir_all(self.log_dir(uid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io {
                path: self.log_dir(uid),
                source,
            }),
        }
    }

    fn restart_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        self.update(uid, |pod| {
            let exit_code = pod.exit_code;
            let c = pod
                .observed
                .containers
                .iter_mut()
                .find(|c| c.name == container)
                .ok_or_else(|| RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: container.to_string(),
                })?;
            let last = match c.state {
                RunState::Exited(e) => Some(e),
                RunState::Running { .. } | RunState::Waiting => c.last_exit,
            };
            let spec = Container {
                name: c.name.clone(),
                image: c.image.clone(),
                ..Container::default()
            };
            self.start_log(uid, container, true)?;
            *c = start_container(uid, &spec, exit_code, c.restart_count + 1, last);
            Ok(())
        })
    }

    fn kill_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        self.update(uid, |pod| {
            let c = pod
                .observed
                .containers
                .iter_mut()
                .find(|c| c.name == container)
                .ok_or_else(|| RuntimeError::NoSuchContainer {
                    uid: uid.to_string(),
                    container: container.to_string(),
                })?;
            let RunState::Running { started_at } = c.state else {
                return Err(RuntimeError::NotRunning {
                    uid: uid.to_string(),
                    container: container.to_string(),
                });
            };
            // SIGKILL: 128 + 9.
            c.state = RunState::Exited(Exit {
                exit_code: 137,
                started_at,
                finished_at: Utc::now(),
                reason: ExitReason::Plain,
            });
            Ok(())
        })
    }

    fn runs_probes(&self) -> bool {
        // No process exists behind a simulated container.
        false
    }

    fn list(&self) -> Result<Vec<ObservedPod>, RuntimeError> {
        Ok(self
            .pods
            .lock()
            .expect("runtime lock")
            .values()
            .map(|p| p.observed.clone())
            .collect())
    }

    fn exec(&self, _request: ExecRequest<'_>) -> Result<Box<dyn ExecProcess>, RuntimeError> {
        Err(RuntimeError::Unsupported {
            what: "run commands in simulated containers",
        })
    }

    fn netns_path(&self, _uid: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn log_paths(&self, uid: &str, container: &str) -> Option<LogPaths> {
        let pods = self.pods.lock().expect("runtime lock");
        let pod = pods.get(uid)?;
        if !pod.observed.containers.iter().any(|c| c.name == container) {
            return None;
        }
        let previous = self.log_file(uid, container, true);
        Some(LogPaths {
            current: self.log_file(uid, container, false),
            rotated: Vec::new(),
            previous: previous.exists().then_some(previous),
        })
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::Pod;
    use std::io::Write;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        }))
        .unwrap()
    }

    #[test]
    fn containers_write_a_log_and_a_restart_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let rt = SimulatedRuntime::open(dir.path()).unwrap();
        assert_eq!(rt.log_paths("u-1", "app"), None);
        let p = pod();
        rt.start_pod(PodToStart {
            uid: "u-1",
            revision: 1,
            spec_hash: 1,
            pod: &p,
            images: &BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(rt.log_paths("u-1", "nope"), None);
        let paths = rt.log_paths("u-1", "app").unwrap();
        assert_eq!(paths.previous, None);
        assert!(paths.rotated.is_empty());
        assert_eq!(
            std::fs::read_to_string(&paths.current).unwrap(),
            "started app\n"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&paths.current)
            .unwrap()
            .write_all(b"first instance\n")
            .unwrap();
        rt.restart_container("u-1", "app").unwrap();
        let after = rt.log_paths("u-1", "app").unwrap();
        assert_eq!(after.current, paths.current);
        assert_eq!(
            std::fs::read_to_string(after.previous.unwrap()).unwrap(),
            "started app\nfirst instance\n"
        );
        assert_eq!(
            std::fs::read_to_string(&after.current).unwrap(),
            "started app\n"
        );
        // Reopened (an agent restart), the logs are still found.
        drop(rt);
        let rt = SimulatedRuntime::open(dir.path()).unwrap();
        assert!(rt.log_paths("u-1", "app").unwrap().previous.is_some());
        rt.remove_pod("u-1").unwrap();
        assert_eq!(rt.log_paths("u-1", "app"), None);
        assert!(!paths.current.exists());
    }
}
