//! Shared fixtures for the controller tests: a real SQLite store in a temp dir with the
//! controllers running on it, bounded polling, and object builders.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::resources::{
    ConditionStatus, Container, PodCondition, PodPhase, PodSpec, PodStatus, PodTemplateSpec,
};
use skiff_api::{Kind, LabelSelector, Object, ObjectKey, ObjectMeta};
use skiff_hub::clock::SystemClock;
use skiff_hub::controllers::Controllers;
use skiff_hub::store::{Scope, SqliteStore, Store, StoreOptions};

pub struct Harness {
    pub store: Arc<SqliteStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            SqliteStore::open(dir.path().join("hub.db"), StoreOptions::default()).expect("open"),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let controllers = Controllers::new(store.clone(), Arc::new(SystemClock))
            .with_resync(Duration::from_millis(300));
        let task = tokio::spawn(controllers.run(async move {
            let _ = rx.await;
        }));
        Harness {
            store,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task.take().unwrap())
            .await
            .expect("controllers stop when asked")
            .expect("controllers did not panic");
    }

    pub fn list(&self, kind: Kind) -> Vec<Arc<Object>> {
        self.store.list(&Scope::kind(kind)).0
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<Arc<Object>> {
        self.store.get(&ObjectKey::new(kind, "default", name))
    }

    /// Polls `check` until it returns `Some` or 10 seconds pass.
    pub async fn eventually<T>(
        &self,
        what: &str,
        mut check: impl FnMut(&Harness) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Non-terminal, not-deleting pods owned (as controller) by the object `kind/name`.
    pub fn pods_of(&self, kind: Kind, name: &str) -> Vec<skiff_api::resources::Pod> {
        let Some(owner) = self.get(kind, name) else {
            return Vec::new();
        };
        let uid = owner.meta().uid.clone();
        self.list(Kind::Pod)
            .iter()
            .filter_map(|o| match o.as_ref() {
                Object::Pod(p) => Some(p.clone()),
                _ => None,
            })
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
                    && !p.is_terminal()
            })
            .collect()
    }

    /// Sets a pod's phase and Ready condition through the store, as an agent would.
    pub async fn set_pod_status(&self, name: &str, phase: PodPhase, ready: bool) {
        let key = ObjectKey::new(Kind::Pod, "default", name);
        self.store
            .mutate(
                key,
                Box::new(move |obj| {
                    let Object::Pod(p) = obj else {
                        return Ok(false);
                    };
                    p.status = Some(PodStatus {
                        phase: Some(phase),
                        conditions: vec![PodCondition {
                            type_: "Ready".into(),
                            status: if ready {
                                ConditionStatus::True
                            } else {
                                ConditionStatus::False
                            },
                            ..PodCondition::default()
                        }],
                        ..PodStatus::default()
                    });
                    Ok(true)
                }),
            )
            .await
            .expect("set pod status");
    }
}

pub fn run<F: Future<Output = ()>>(f: impl FnOnce() -> F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f());
}

pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: Some("default".into()),
        ..ObjectMeta::default()
    }
}

pub fn labels(app: &str) -> std::collections::BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

pub fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: labels(app),
        ..LabelSelector::default()
    }
}

pub fn template(app: &str, image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: ObjectMeta {
            labels: labels(app),
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: image.into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        },
    }
}
