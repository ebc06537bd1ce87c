//! Shared fixtures for the store tests: objects, a pinned clock, opening stores in
//! temporary directories.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::TimeZone;
use skiff_api::resources::{Node, Pod};
use skiff_api::{Object, ObjectMeta, Time};
use skiff_hub::clock::Clock;
use skiff_hub::store::{SqliteStore, StoreOptions, Watch, WatchEvent};

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(secs: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(secs)))
    }

    pub fn set(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        time(self.0.load(Ordering::SeqCst))
    }
}

pub fn time(secs: i64) -> Time {
    Time::from_datetime(
        chrono::Utc
            .timestamp_opt(secs, 0)
            .single()
            .expect("valid timestamp"),
    )
}

pub fn pod(ns: &str, name: &str) -> Object {
    Object::Pod(Pod {
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    })
}

pub fn pod_on(ns: &str, name: &str, node: &str) -> Object {
    let mut obj = pod(ns, name);
    if let Object::Pod(p) = &mut obj {
        p.spec.node_name = Some(node.into());
    }
    obj
}

pub fn node(name: &str) -> Object {
    Object::Node(Node {
        metadata: ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        ..Default::default()
    })
}

pub fn node_name(obj: &Object) -> Option<String> {
    match obj {
        Object::Pod(p) => p.spec.node_name.clone(),
        _ => None,
    }
}

pub fn options() -> StoreOptions {
    StoreOptions::default()
}

pub fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, options()).expect("open store")
}

pub fn rev(obj: &Object) -> u64 {
    obj.meta()
        .revision()
        .expect("stored objects carry a revision")
        .0
}

/// The next watch event, failing the test if none arrives in time.
pub async fn next_event(w: &mut Watch) -> WatchEvent {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10s"),
    }
}

/// Asserts nothing arrives on `w` for a short while.
pub async fn assert_quiet(w: &mut Watch) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), w.next()).await {
        panic!("expected no event, got {got:?}");
    }
}
