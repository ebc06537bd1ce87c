//! The hub's state store: every object with one global, monotonic revision, optimistic
//! concurrency, finalizer-aware deletes, and watches that resume from a revision.
//!
//! `Store` is the seam; `SqliteStore` (SQLite in WAL mode, group commit) is the real one.

use std::sync::Arc;

use async_trait::async_trait;
use skiff_api::{Kind, Object, ObjectKey, Revision};

mod apply;
mod error;
mod history;
mod index;
#[cfg(any(test, feature = "test-util"))]
mod memory;
mod schema;
mod sqlite;
mod stats;
mod writer;

pub use error::StoreError;
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryStore;
pub use sqlite::{SqliteStore, StoreOptions};
pub use stats::StoreStats;

/// What happened to an object at one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The Kubernetes watch event type: `ADDED`, `MODIFIED`, `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One entry of the store's history. For `Deleted`, `object` is the last state with
/// `resourceVersion` set to the deletion's revision.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub revision: Revision,
    pub event_type: EventType,
    pub object: Arc<Object>,
}

/// Which objects a list or watch covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// `None`: every kind (watch only).
    pub kind: Option<Kind>,
    /// `None`: every namespace.
    pub namespace: Option<String>,
}

impl Scope {
    pub fn kind(kind: Kind) -> Scope {
        Scope {
            kind: Some(kind),
            namespace: None,
        }
    }

    pub fn in_namespace(kind: Kind, namespace: impl Into<String>) -> Scope {
        Scope {
            kind: Some(kind),
            namespace: Some(namespace.into()),
        }
    }

    pub fn matches(&self, key: &ObjectKey) -> bool {
        self.kind.is_none_or(|k| k == key.kind)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == key.namespace)
    }
}

/// Result of a delete: gone now, or marked (deletionTimestamp set) because finalizers remain.
#[derive(Debug, Clone)]
pub enum Deleted {
    Removed(Arc<Object>),
    Marked(Arc<Object>),
}

/// A function run inside the store's writer against the current object, so a
/// read-modify-write cannot lose a race. Returning `Ok(false)` means "no change".
pub type Mutation = Box<dyn FnOnce(&mut Object) -> Result<bool, StoreError> + Send>;

/// One write in a batch.
pub enum Write {
    Create(Object),
    Update(Object),
    Mutate(ObjectKey, Mutation),
    Delete {
        key: ObjectKey,
        /// Only delete if the object is still at this revision.
        precondition: Option<Revision>,
    },
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Create(o) => write!(f, "Create({})", o.key()),
            Write::Update(o) => write!(f, "Update({})", o.key()),
            Write::Mutate(k, _) => write!(f, "Mutate({k})"),
            Write::Delete { key, precondition } => write!(f, "Delete({key}, {precondition:?})"),
        }
    }
}

/// What a successful write returns.
#[derive(Debug, Clone)]
pub enum Written {
    /// Created, updated or mutated: the object as stored.
    Stored(Arc<Object>),
    /// A mutation that changed nothing: the current object, no new revision.
    Unchanged(Arc<Object>),
    Deleted(Deleted),
}

/// The store seam.
///
/// Every write returns only once its transaction is durable on disk. Revisions are
/// global: each successful write that changes something gets the next one.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates an object. The store assigns `uid`, `creationTimestamp`, `generation = 1`
    /// and `resourceVersion`; a `resourceVersion` in the input is an error.
    /// `AlreadyExists` if the key is taken.
    async fn create(&self, obj: Object) -> Result<Arc<Object>, StoreError>;

    /// Replaces an object. If the input carries a `resourceVersion` it must equal the
    /// stored one (`Conflict` otherwise); without one the update is unconditional.
    /// `uid` and `creationTimestamp` are kept from the stored object; `generation` is
    /// bumped when anything but metadata and status changed. An update that leaves
    /// `deletionTimestamp` set and `finalizers` empty removes the object.
    async fn update(&self, obj: Object) -> Result<Arc<Object>, StoreError>;

    /// Runs `mutation` on the current object inside the writer and stores the result
    /// (same rules as `update`, no conflict possible). `NotFound` if absent.
    async fn mutate(&self, key: ObjectKey, mutation: Mutation) -> Result<Written, StoreError>;

    /// Deletes: removes at once when the object has no finalizers, otherwise sets
    /// `deletionTimestamp` (once) and leaves removal to whoever clears the finalizers.
    async fn delete(
        &self,
        key: &ObjectKey,
        precondition: Option<Revision>,
    ) -> Result<Deleted, StoreError>;

    /// Applies many writes, grouped into as few transactions as the store likes; each
    /// result is reported separately and only once durable.
    async fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>>;

    fn get(&self, key: &ObjectKey) -> Option<Arc<Object>>;

    /// Every object in `scope` (scope.kind must be set), sorted by namespace then name,
    /// and the revision the list is consistent with.
    fn list(&self, scope: &Scope) -> (Vec<Arc<Object>>, Revision);

    /// The revision of the last durable write.
    fn revision(&self) -> Revision;

    /// Events in `scope` with revision strictly greater than `from`, then live events.
    /// `Gone` if `from` is older than the retained history. `from = 0` is treated as
    /// "now" by callers that list first; the store itself just replays from it.
    /// Replay and live events form one sequence: no gap, no duplicate. A watcher that
    /// stops reading never holds up writes; it catches up later from the history, or
    /// gets `Gone` if what it still needs was compacted meanwhile.
    fn watch(&self, scope: Scope, from: Revision) -> Result<Watch, StoreError>;
}

/// A stream of watch events. `next` yields `Err(Gone)` if this watcher fell so far
/// behind that history it needed was compacted; the caller must relist.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<WatchEvent, StoreError>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

impl Watch {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<WatchEvent, StoreError>>) -> Watch {
        Watch { rx }
    }

    /// The next event; `None` when the store shut down.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        self.rx.recv().await
    }
}
