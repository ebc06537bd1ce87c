//! `MemoryStore`: an in-memory [`Store`] with the same observable rules as the SQLite
//! store (global revisions, optimistic concurrency, finalizer-aware deletes, replayable
//! watches with bounded history), for unit tests of code that sits on top of a store.
//! Nothing is durable; it is compiled only for tests and the `test-util` feature.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::Value;
use skiff_api::{Object, ObjectKey, Revision, Time, Uid};
use tokio::sync::mpsc;

use super::{
    Deleted, EventType, Mutation, Scope, Store, StoreError, Watch, WatchEvent, Write, Written,
};

/// Room in each watcher's queue. A watcher that falls this far behind is dropped (its
/// stream ends), which callers already handle as "relist".
const WATCH_QUEUE: usize = 4096;

/// The in-memory store. `retention` bounds how many history entries are kept for
/// watches to replay; older revisions answer `Gone`.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    retention: usize,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    revision: Revision,
    history: VecDeque<WatchEvent>,
    /// Every revision up to and including this one has left the history.
    compacted: Revision,
    watchers: Vec<Watcher>,
    closed: bool,
}

#[derive(Debug)]
struct Watcher {
    scope: Scope,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::with_retention(10_000)
    }

    /// A store that keeps only the last `retention` history entries.
    pub fn with_retention(retention: usize) -> MemoryStore {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            retention: retention.max(1),
        }
    }

    /// Ends every watch and refuses further writes, as a store shutting down does.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.watchers.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, inner: &mut Inner, write: Write) -> Result<Written, StoreError> {
        if inner.closed {
            return Err(StoreError::Closed);
        }
        match write {
            Write::Create(obj) => inner.create(obj, self.retention).map(Written::Stored),
            Write::Update(obj) => {
                let key = obj.key();
                let current = inner
                    .objects
                    .get(&key)
                    .cloned()
                    .ok_or(StoreError::NotFound(key.clone()))?;
                if let Some(rv) = obj.meta().resource_version.as_deref()
                    && Some(Revision::parse(rv).unwrap_or_default()) != current.meta().revision()
                {
                    return Err(StoreError::Conflict {
                        key,
                        expected: rv.to_string(),
                        actual: current.meta().revision().unwrap_or_default(),
                    });
                }
                inner.replace(&current, obj, self.retention)
            }
            Write::Mutate(key, mutation) => {
                let current = inner
                    .objects
                    .get(&key)
                    .cloned()
                    .ok_or(StoreError::NotFound(key.clone()))?;
                let mut next = (*current).clone();
                if !mutation(&mut next)? {
                    return Ok(Written::Unchanged(current));
                }
                if next.key() != key {
                    return Err(StoreError::Invalid {
                        key,
                        message: "a mutation may not change kind, namespace or name".into(),
                    });
                }
                inner.replace(&current, next, self.retention)
            }
            Write::Delete { key, precondition } => inner
                .delete(&key, precondition, self.retention)
                .map(Written::Deleted),
        }
    }
}

impl Inner {
    fn next_revision(&mut self) -> Revision {
        self.revision = Revision(self.revision.0 + 1);
        self.revision
    }

    fn record(&mut self, event_type: EventType, object: Arc<Object>, retention: usize) {
        let event = WatchEvent {
            revision: self.revision,
            event_type,
            object,
        };
        let key = event.object.key();
        self.watchers.retain(|w| {
            if !w.scope.matches(&key) {
                return !w.tx.is_closed();
            }
            w.tx.try_send(Ok(event.clone())).is_ok()
        });
        self.history.push_back(event);
        while self.history.len() > retention {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.revision;
            }
        }
    }

    fn create(&mut self, mut obj: Object, retention: usize) -> Result<Arc<Object>, StoreError> {
        let key = obj.key();
        if key.name.is_empty() {
            return Err(StoreError::Invalid {
                key,
                message: "metadata.name is required".into(),
            });
        }
        if obj.meta().resource_version.is_some() {
            return Err(StoreError::Invalid {
                key,
                message: "resourceVersion must not be set on create".into(),
            });
        }
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(key));
        }
        let rev = self.next_revision();
        let meta = obj.meta_mut();
        meta.uid = Some(Uid(uuid::Uuid::new_v4().to_string()));
        meta.creation_timestamp = Some(Time::from_datetime(Utc::now()));
        meta.generation = Some(1);
        meta.set_revision(rev);
        let obj = Arc::new(obj);
        self.objects.insert(key, obj.clone());
        self.record(EventType::Added, obj.clone(), retention);
        Ok(obj)
    }

    /// Stores `next` in place of `current`, keeping the fields the store owns.
    fn replace(
        &mut self,
        current: &Arc<Object>,
        mut next: Object,
        retention: usize,
    ) -> Result<Written, StoreError> {
        let key = current.key();
        let old = current.meta();
        let generation =
            old.generation.unwrap_or(1) + i64::from(spec_of(current) != spec_of(&next));
        let rev = self.next_revision();
        let meta = next.meta_mut();
        meta.uid = old.uid.clone();
        meta.creation_timestamp = old.creation_timestamp;
        meta.generation = Some(generation);
        if old.deletion_timestamp.is_some() {
            meta.deletion_timestamp = old.deletion_timestamp;
        }
        meta.set_revision(rev);
        let next = Arc::new(next);
        if next.meta().deletion_timestamp.is_some() && next.meta().finalizers.is_empty() {
            self.objects.remove(&key);
            self.record(EventType::Deleted, next.clone(), retention);
            return Ok(Written::Deleted(Deleted::Removed(next)));
        }
        self.objects.insert(key, next.clone());
        self.record(EventType::Modified, next.clone(), retention);
        Ok(Written::Stored(next))
    }

    fn delete(
        &mut self,
        key: &ObjectKey,
        precondition: Option<Revision>,
        retention: usize,
    ) -> Result<Deleted, StoreError> {
        let current = self
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound(key.clone()))?;
        let actual = current.meta().revision().unwrap_or_default();
        if let Some(expected) = precondition
            && expected != actual
        {
            return Err(StoreError::Conflict {
                key: key.clone(),
                expected: expected.to_string(),
                actual,
            });
        }
        if current.meta().finalizers.is_empty() {
            let rev = self.next_revision();
            let mut last = (*current).clone();
            last.meta_mut().set_revision(rev);
            let last = Arc::new(last);
            self.objects.remove(key);
            self.record(EventType::Deleted, last.clone(), retention);
            return Ok(Deleted::Removed(last));
        }
        if current.meta().deletion_timestamp.is_some() {
            return Ok(Deleted::Marked(current));
        }
        let rev = self.next_revision();
        let mut marked = (*current).clone();
        marked.meta_mut().deletion_timestamp = Some(Time::from_datetime(Utc::now()));
        marked.meta_mut().set_revision(rev);
        let marked = Arc::new(marked);
        self.objects.insert(key.clone(), marked.clone());
        self.record(EventType::Modified, marked.clone(), retention);
        Ok(Deleted::Marked(marked))
    }
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_of(obj: &Object) -> Value {
    let mut v = obj.to_json();
    if let Value::Object(map) = &mut v {
        map.remove("metadata");
        map.remove("status");
    }
    v
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        match self.apply(&mut self.lock(), Write::Create(obj))? {
            Written::Stored(o) => Ok(o),
            other => unreachable!("create wrote {other:?}"),
        }
    }

    async fn update(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        match self.apply(&mut self.lock(), Write::Update(obj))? {
            Written::Stored(o) | Written::Unchanged(o) => Ok(o),
            Written::Deleted(Deleted::Removed(o) | Deleted::Marked(o)) => Ok(o),
        }
    }

    async fn mutate(&self, key: ObjectKey, mutation: Mutation) -> Result<Written, StoreError> {
        self.apply(&mut self.lock(), Write::Mutate(key, mutation))
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        precondition: Option<Revision>,
    ) -> Result<Deleted, StoreError> {
        let write = Write::Delete {
            key: key.clone(),
            precondition,
        };
        match self.apply(&mut self.lock(), write)? {
            Written::Deleted(d) => Ok(d),
            other => unreachable!("delete wrote {other:?}"),
        }
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let mut inner = self.lock();
        writes
            .into_iter()
            .map(|w| self.apply(&mut inner, w))
            .collect()
    }

    fn get(&self, key: &ObjectKey) -> Option<Arc<Object>> {
        self.lock().objects.get(key).cloned()
    }

    fn list(&self, scope: &Scope) -> (Vec<Arc<Object>>, Revision) {
        let inner = self.lock();
        // BTreeMap order is kind, namespace, name: within one kind that is the
        // namespace-then-name order the contract asks for.
        let items = inner
            .objects
            .iter()
            .filter(|(k, _)| scope.matches(k))
            .map(|(_, o)| o.clone())
            .collect();
        (items, inner.revision)
    }

    fn revision(&self) -> Revision {
        self.lock().revision
    }

    fn watch(&self, scope: Scope, from: Revision) -> Result<Watch, StoreError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        if from < inner.compacted {
            return Err(StoreError::Gone {
                requested: from,
                compacted: inner.compacted,
            });
        }
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        for event in inner.history.iter().filter(|e| e.revision > from) {
            if scope.matches(&event.object.key()) && tx.try_send(Ok(event.clone())).is_err() {
                // Too much to replay: the caller sees the stream end and relists.
                return Ok(Watch::new(rx));
            }
        }
        inner.watchers.push(Watcher { scope, tx });
        Ok(Watch::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::Kind;
    use skiff_api::resources::Pod;

    use super::*;

    fn pod(ns: &str, name: &str) -> Object {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = Some(ns.into());
        Object::Pod(p)
    }

    #[tokio::test]
    async fn revisions_conflicts_and_finalizers() {
        let store = MemoryStore::new();
        let a = store.create(pod("ns", "a")).await.unwrap();
        assert_eq!(a.meta().revision(), Some(Revision(1)));
        assert!(matches!(
            store.create(pod("ns", "a")).await,
            Err(StoreError::AlreadyExists(_))
        ));

        let mut stale = (*a).clone();
        stale.meta_mut().labels.insert("x".into(), "1".into());
        let b = store.update(stale.clone()).await.unwrap();
        assert_eq!(b.meta().revision(), Some(Revision(2)));
        assert_eq!(b.meta().generation, Some(1), "labels are metadata");
        assert!(matches!(
            store.update(stale).await,
            Err(StoreError::Conflict { .. })
        ));

        let unchanged = store
            .mutate(a.key(), Box::new(|_| Ok(false)))
            .await
            .unwrap();
        assert!(
            matches!(unchanged, Written::Unchanged(o) if o.meta().revision() == Some(Revision(2)))
        );

        store
            .mutate(
                a.key(),
                Box::new(|o| {
                    o.meta_mut().finalizers.push("f".into());
                    Ok(true)
                }),
            )
            .await
            .unwrap();
        let marked = store.delete(&a.key(), None).await.unwrap();
        assert!(matches!(&marked, Deleted::Marked(o) if o.meta().deletion_timestamp.is_some()));
        let gone = store
            .mutate(
                a.key(),
                Box::new(|o| {
                    o.meta_mut().finalizers.clear();
                    Ok(true)
                }),
            )
            .await
            .unwrap();
        assert!(matches!(gone, Written::Deleted(Deleted::Removed(_))));
        assert!(store.get(&a.key()).is_none());
    }

    #[tokio::test]
    async fn watch_replays_then_follows_and_compacts() {
        let store = MemoryStore::with_retention(2);
        store.create(pod("ns", "a")).await.unwrap();
        store.create(pod("other", "b")).await.unwrap();
        store.create(pod("ns", "c")).await.unwrap();
        assert!(matches!(
            store.watch(Scope::kind(Kind::Pod), Revision(0)),
            Err(StoreError::Gone { .. })
        ));
        let mut w = store
            .watch(Scope::in_namespace(Kind::Pod, "ns"), Revision(1))
            .unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!(
            (e.revision, e.object.meta().name.as_str()),
            (Revision(3), "c")
        );
        store
            .delete(&ObjectKey::new(Kind::Pod, "ns", "a"), None)
            .await
            .unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!(e.event_type, EventType::Deleted);
        assert_eq!(e.object.meta().revision(), Some(Revision(4)));
        store.close();
        assert!(w.next().await.is_none());
    }
}
