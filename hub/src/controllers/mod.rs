//! The hub's controllers (Kubernetes' kube-controller-manager core loops): ReplicaSet,
//! Deployment, Job and DaemonSet reconcilers, and the garbage collector that removes
//! objects whose owners are gone.
//!
//! Each controller's decision is a pure function of the owner, the objects it owns and
//! the time (`replicaset::reconcile`, ...), returning [`Action`]s. One loop here feeds
//! them: it lists every kind, watches the store from the list's revision (relisting on
//! `Gone`), keeps an index from owner uid to dependents, queues owners whose objects
//! changed (deduplicated), and applies the actions with `write_batch`.
//!
//! Start it with `tokio::spawn(Controllers::new(store, clock).run(shutdown))`, where
//! `shutdown` is any future that completes when the hub stops; `run` returns then.

mod common;
mod daemonset;
mod deployment;
mod job;
mod replicaset;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rand::Rng;
use skiff_api::{Kind, Object, ObjectKey, Revision, Uid};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::store::{
    Deleted, EventType, Scope, Store, StoreError, Watch, WatchEvent, Write, Written,
};
use common::{Action, controller_uid};

/// Kinds whose objects a controller here reconciles.
const OWNER_KINDS: [Kind; 4] = [
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::Job,
    Kind::DaemonSet,
];

/// Runs the controllers against a store.
#[derive(Debug)]
pub struct Controllers {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    resync: Duration,
}

impl Controllers {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Controllers {
        Controllers {
            store,
            clock,
            resync: Duration::from_secs(5),
        }
    }

    /// How often every owner is reconciled even without changes, for decisions that
    /// depend on time (minReadySeconds, a Job's activeDeadlineSeconds). Default 5s.
    pub fn with_resync(mut self, every: Duration) -> Controllers {
        self.resync = every;
        self
    }

    /// Runs until `shutdown` completes or the store closes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let mut state = Index::default();
            let mut watch = match self.relist(&mut state) {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "controllers cannot watch the store; retrying");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let mut resync = tokio::time::interval(self.resync);
            resync.tick().await;
            loop {
                self.process(&mut state).await;
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = resync.tick() => state.enqueue_all_owners(self.store.as_ref()),
                    ev = watch.next() => match ev {
                        None => return,
                        Some(Err(e)) => {
                            debug!(error = %e, "controller watch broke; relisting");
                            break;
                        }
                        Some(Ok(ev)) => {
                            state.observe_event(self.store.as_ref(), &ev);
                            // Take everything already waiting before reconciling, so a
                            // burst of events costs one pass per owner.
                            if !drain(&mut watch, &mut state, self.store.as_ref()) {
                                break;
                            }
                        }
                    },
                }
            }
        }
    }

    fn relist(&self, state: &mut Index) -> Result<Watch, StoreError> {
        let mut from = Revision(u64::MAX);
        let mut all = Vec::new();
        for kind in Kind::ALL {
            let (objs, rev) = self.store.list(&Scope::kind(kind));
            from = from.min(rev);
            all.extend(objs);
        }
        for obj in &all {
            state.observe(self.store.as_ref(), obj, false);
        }
        for obj in &all {
            if !obj.meta().owner_references.is_empty() {
                state.gc.insert(obj.key());
            }
        }
        self.store.watch(Scope::default(), from)
    }

    /// Reconciles every queued owner and checks every queued dependent for orphaning.
    async fn process(&self, state: &mut Index) {
        while !state.queue.is_empty() || !state.gc.is_empty() {
            let queue = std::mem::take(&mut state.queue);
            let gc = std::mem::take(&mut state.gc);
            let now = self.clock.now();
            let mut actions = Vec::new();
            for key in queue {
                if let Some(owner) = self.store.get(&key) {
                    let owned = state.owned(self.store.as_ref(), &owner);
                    actions.extend(self.decide(&owner, &owned, now));
                }
            }
            for key in gc {
                if let Some(obj) = self.store.get(&key)
                    && gc::orphaned(self.store.as_ref(), &obj)
                {
                    actions.push(Action::Delete(key));
                }
            }
            if actions.is_empty() {
                return;
            }
            self.apply(state, actions).await;
        }
    }

    fn decide(&self, owner: &Object, owned: &[Arc<Object>], now: skiff_api::Time) -> Vec<Action> {
        match owner {
            Object::ReplicaSet(rs) => replicaset::reconcile(rs, owned, now),
            Object::Deployment(d) => deployment::reconcile(d, owned, now),
            Object::Job(j) => job::reconcile(j, owned, now),
            Object::DaemonSet(ds) => {
                let (nodes, _) = self.store.list(&Scope::kind(Kind::Node));
                daemonset::reconcile(ds, owned, &nodes, now)
            }
            _ => Vec::new(),
        }
    }

    async fn apply(&self, state: &mut Index, actions: Vec<Action>) {
        let writes: Vec<Write> = actions.into_iter().map(to_write).collect();
        let described: Vec<String> = writes.iter().map(|w| format!("{w:?}")).collect();
        let results = self.store.write_batch(writes).await;
        for (what, result) in described.iter().zip(results) {
            match result {
                Ok(Written::Stored(obj)) => state.observe(self.store.as_ref(), &obj, false),
                Ok(Written::Deleted(Deleted::Removed(obj))) => {
                    state.observe(self.store.as_ref(), &obj, true);
                }
                Ok(Written::Deleted(Deleted::Marked(_)) | Written::Unchanged(_)) => {}
                // Someone else deleted it first: the watch will tell the index.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => warn!(write = %what, error = %e, "controller write failed"),
            }
        }
    }
}

/// Reads every event already waiting; false if the watch broke or ended.
fn drain(watch: &mut Watch, state: &mut Index, store: &dyn Store) -> bool {
    loop {
        match watch.next().now_or_never() {
            None => return true,
            Some(Some(Ok(ev))) => state.observe_event(store, &ev),
            Some(_) => return false,
        }
    }
}

fn to_write(action: Action) -> Write {
    match action {
        Action::CreatePod(mut pod) => {
            let prefix = pod.metadata.generate_name.clone().unwrap_or_default();
            pod.metadata.name = format!("{prefix}{}", random_suffix());
            Write::Create(Object::Pod(*pod))
        }
        Action::Create(obj) => Write::Create(*obj),
        Action::Delete(key) => Write::Delete {
            key,
            precondition: None,
        },
        Action::ScaleReplicaSet {
            key,
            replicas,
            revision,
        } => Write::Mutate(
            key,
            Box::new(move |obj| {
                let Object::ReplicaSet(rs) = obj else {
                    return Ok(false);
                };
                let mut changed = rs.spec.replicas != Some(replicas);
                rs.spec.replicas = Some(replicas);
                if let Some(rev) = revision {
                    let slot = rs
                        .metadata
                        .annotations
                        .entry(common::REVISION_ANNOTATION.to_string())
                        .or_default();
                    changed |= *slot != rev;
                    *slot = rev;
                }
                Ok(changed)
            }),
        ),
        Action::SetStatus(desired) => Write::Mutate(
            desired.key(),
            Box::new(move |obj| {
                if obj.meta().uid != desired.meta().uid {
                    return Ok(false);
                }
                let updated = obj.clone().with_status_of(&desired);
                if updated == *obj {
                    return Ok(false);
                }
                *obj = updated;
                Ok(true)
            }),
        ),
    }
}

/// Five characters from [a-z0-9], as Kubernetes' generated names use.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// What the loop knows beyond the store: who owns what, and what to look at next.
#[derive(Debug, Default)]
struct Index {
    /// Every object's uid, to tell whether an owner still exists.
    by_uid: HashMap<Uid, ObjectKey>,
    /// Owner uid to the objects naming it in an owner reference.
    dependents: HashMap<Uid, BTreeSet<ObjectKey>>,
    /// The owner uids each object named when last seen, to unindex it.
    owners_of: HashMap<ObjectKey, Vec<Uid>>,
    /// Owners to reconcile.
    queue: BTreeSet<ObjectKey>,
    /// Dependents to check for a missing owner.
    gc: BTreeSet<ObjectKey>,
}

impl Index {
    fn observe_event(&mut self, store: &dyn Store, ev: &WatchEvent) {
        self.observe(store, &ev.object, ev.event_type == EventType::Deleted);
    }

    fn observe(&mut self, store: &dyn Store, obj: &Object, deleted: bool) {
        let key = obj.key();
        let meta = obj.meta();
        if let Some(old) = self.owners_of.remove(&key) {
            for uid in old {
                if let Some(set) = self.dependents.get_mut(&uid) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.dependents.remove(&uid);
                    }
                }
            }
        }
        // The controlling owner reacts to any change of what it owns.
        if let Some(owner) = controller_uid(meta).and_then(|u| self.by_uid.get(u)) {
            self.queue.insert(owner.clone());
        }
        if deleted {
            if let Some(uid) = &meta.uid {
                if self.by_uid.get(uid) == Some(&key) {
                    self.by_uid.remove(uid);
                }
                if let Some(deps) = self.dependents.get(uid) {
                    self.gc.extend(deps.iter().cloned());
                }
            }
            return;
        }
        if let Some(uid) = &meta.uid {
            self.by_uid.insert(uid.clone(), key.clone());
        }
        if !meta.owner_references.is_empty() {
            let uids: Vec<Uid> = meta
                .owner_references
                .iter()
                .map(|r| r.uid.clone())
                .collect();
            for uid in &uids {
                self.dependents
                    .entry(uid.clone())
                    .or_default()
                    .insert(key.clone());
                if !self.by_uid.contains_key(uid) {
                    self.gc.insert(key.clone());
                }
            }
            self.owners_of.insert(key.clone(), uids);
        }
        if OWNER_KINDS.contains(&key.kind) {
            self.queue.insert(key.clone());
        }
        if key.kind == Kind::Node {
            let (daemonsets, _) = store.list(&Scope::kind(Kind::DaemonSet));
            self.queue.extend(daemonsets.iter().map(|d| d.key()));
        }
    }

    fn enqueue_all_owners(&mut self, store: &dyn Store) {
        for kind in OWNER_KINDS {
            let (objs, _) = store.list(&Scope::kind(kind));
            self.queue.extend(objs.iter().map(|o| o.key()));
        }
    }

    /// The current objects whose controlling owner is `owner`.
    fn owned(&self, store: &dyn Store, owner: &Object) -> Vec<Arc<Object>> {
        let Some(uid) = owner.meta().uid.as_ref() else {
            return Vec::new();
        };
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| store.get(k))
            .filter(|o| controller_uid(o.meta()) == Some(uid))
            .collect()
    }
}

mod gc;
