//! `SqliteStore`: the durable store. Opening migrates the schema and loads every current
//! object into memory; reads are served from memory, writes go through the single
//! writer thread (see `writer`), watches stream from the history (see `history`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use skiff_api::{Object, ObjectKey, Revision};
use tokio::sync::{mpsc, oneshot, watch};

use super::history::{self, History};
use super::index::Index;
use super::schema::{self, META_COMPACTED, META_REVISION, db_err};
use super::stats::{Counters, StoreStats};
use super::writer::{Command, Writer, WriterConfig};
use super::{Deleted, Mutation, Scope, Store, StoreError, Watch, Write, Written};
use crate::clock::{Clock, SystemClock};

/// Settings for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many revisions of history are kept for watches to resume from. Older history
    /// is compacted away and a watch from before it gets `Gone` (relist). Default 50,000:
    /// minutes to hours of a busy fleet, while bounding the table to tens of MB.
    pub retained_revisions: u64,
    /// How many recent events are also kept in memory, so live watchers and short
    /// resumes never read SQLite. Default 4,096 (a few MB of pods).
    pub recent_events: usize,
    /// How often the writer compacts history (in a small transaction of its own, between
    /// rounds of writes). Default 30 s.
    pub compact_every: Duration,
    /// How long a connection waits for a lock held by another before failing. Default 5 s.
    pub busy_timeout: Duration,
    /// The most write requests committed in one transaction. Default 1,024.
    pub max_batch: usize,
    /// Events buffered per watcher before its stream stalls (it then catches up from
    /// history, never slowing the writer). Default 256.
    pub watch_buffer: usize,
    /// Source of `creationTimestamp` and `deletionTimestamp`.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            retained_revisions: 50_000,
            recent_events: 4096,
            compact_every: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            max_batch: 1024,
            watch_buffer: 256,
            clock: Arc::new(SystemClock),
        }
    }
}

/// State shared by the store handle, the writer thread and watch tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The database path, for error messages.
    pub(crate) path: String,
    pub(crate) index: RwLock<Index>,
    pub(crate) history: Arc<History>,
    pub(crate) stats: Counters,
    /// The last revision whose events are in `history`.
    published: watch::Receiver<Revision>,
}

/// The hub's durable store: SQLite in WAL mode with `synchronous=FULL`, one writer
/// thread committing queued writes in groups, every current object in memory.
///
/// One process at a time: opening takes an exclusive lock on `<path>.lock`, so a second
/// hub on the same file gets `InUse` instead of two writers. Call
/// [`SqliteStore::shutdown`] (or [`SqliteStore::close`]) to finish queued writes and
/// checkpoint the WAL; dropping the store does the same, blocking the dropping thread.
/// Watches need a Tokio runtime (each one is a task).
#[derive(Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    commands: Mutex<Option<std::sync::mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
    /// Held from open until the writer has stopped.
    lock: Mutex<Option<std::fs::File>>,
    watch_buffer: usize,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if absent and migrating it to the
    /// current schema, and loads every object into memory.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        let lock = lock_database(&path)?;
        let mut conn = schema::open_writer(&path, options.busy_timeout)?;
        let from = schema::migrate(&mut conn, &name)?;
        let loaded = load(&conn, &name)?;
        tracing::info!(
            path = %name,
            schema_from = from,
            objects = loaded.objects.len(),
            revision = loaded.revision.0,
            compacted = loaded.compacted.0,
            "store opened"
        );
        let history = Arc::new(History::new(
            path,
            options.busy_timeout,
            options.recent_events,
            loaded.revision,
            loaded.compacted,
        ));
        let (publish, published) = watch::channel(loaded.revision);
        let shared = Arc::new(Shared {
            path: name,
            index: RwLock::new(Index::new(loaded.objects, loaded.revision)),
            history,
            stats: Counters::default(),
            published,
        });
        let (commands, inbox) = std::sync::mpsc::channel();
        let writer = Writer::new(
            conn,
            Arc::clone(&shared),
            publish,
            WriterConfig {
                max_batch: options.max_batch.max(1),
                retention: options.retained_revisions,
                compact_every: options.compact_every,
                clock: options.clock,
            },
            loaded.revision,
            loaded.compacted,
        )
        .spawn(inbox)?;
        Ok(SqliteStore {
            shared,
            commands: Mutex::new(Some(commands)),
            writer: Mutex::new(Some(writer)),
            lock: Mutex::new(Some(lock)),
            watch_buffer: options.watch_buffer.max(1),
        })
    }

    /// Counters since open.
    pub fn stats(&self) -> StoreStats {
        let objects = self.index().len();
        self.shared.stats.snapshot(objects)
    }

    /// History at or below this revision is gone; watches must start after it.
    pub fn compacted(&self) -> Revision {
        self.shared.history.compacted()
    }

    /// Compacts history down to the retention now, instead of at the next periodic
    /// pass. Returns the new compacted revision.
    pub async fn compact(&self) -> Result<Revision, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Compact { reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting writes, lets the writer finish everything queued, checkpoints the
    /// WAL and waits for the writer thread. Later writes fail with `Closed`; running
    /// watches deliver what was committed and end.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let Some(handle) = self.stop_writer() else {
            return Ok(());
        };
        let result = match tokio::task::spawn_blocking(move || handle.join()).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(StoreError::Closed),
        };
        self.unlock();
        result
    }

    /// [`shutdown`](SqliteStore::shutdown) for synchronous callers.
    pub fn close(self) -> Result<(), StoreError> {
        let result = match self.stop_writer() {
            Some(handle) => handle.join().unwrap_or(Err(StoreError::Closed)),
            None => Ok(()),
        };
        self.unlock();
        result
    }

    fn unlock(&self) {
        drop(
            self.lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Closes the command channel (the writer drains it, then stops) and hands back the
    /// writer thread to join, unless that was already done.
    fn stop_writer(&self) -> Option<JoinHandle<Result<(), StoreError>>> {
        drop(
            self.commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        match commands.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    async fn submit(
        &self,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write { writes, reply })?;
        answer.await.map_err(|_| StoreError::Closed)
    }

    async fn submit_one(&self, write: Write) -> Result<Written, StoreError> {
        self.submit(vec![write])
            .await?
            .pop()
            .unwrap_or(Err(StoreError::Closed))
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(handle) = self.stop_writer() {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "store shutdown failed"),
                Err(_) => tracing::error!(path = %self.shared.path, "store writer panicked"),
            }
        }
        self.unlock();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        Ok(written_object(self.submit_one(Write::Create(obj)).await?))
    }

    async fn update(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        Ok(written_object(self.submit_one(Write::Update(obj)).await?))
    }

    async fn mutate(&self, key: ObjectKey, mutation: Mutation) -> Result<Written, StoreError> {
        self.submit_one(Write::Mutate(key, mutation)).await
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        precondition: Option<Revision>,
    ) -> Result<Deleted, StoreError> {
        let written = self
            .submit_one(Write::Delete {
                key: key.clone(),
                precondition,
            })
            .await?;
        Ok(match written {
            Written::Deleted(d) => d,
            // A delete always answers with `Deleted`; keep the mapping total anyway.
            Written::Stored(o) | Written::Unchanged(o) => Deleted::Marked(o),
        })
    }

    async fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let n = writes.len();
        match self.submit(writes).await {
            Ok(results) => results,
            Err(_) => (0..n).map(|_| Err(StoreError::Closed)).collect(),
        }
    }

    fn get(&self, key: &ObjectKey) -> Option<Arc<Object>> {
        self.index().get(key).cloned()
    }

    /// A scope without a kind lists every object.
    fn list(&self, scope: &Scope) -> (Vec<Arc<Object>>, Revision) {
        let index = self.index();
        (index.list(scope), index.revision())
    }

    fn revision(&self) -> Revision {
        self.index().revision()
    }

    /// Must be called within a Tokio runtime: the watch is a task that reads history
    /// from memory or SQLite and then follows new commits.
    fn watch(&self, scope: Scope, from: Revision) -> Result<Watch, StoreError> {
        if self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
            return Err(StoreError::Closed);
        }
        let compacted = self.shared.history.compacted();
        if from < compacted {
            return Err(StoreError::Gone {
                requested: from,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(self.watch_buffer);
        tokio::spawn(history::pump(
            Arc::clone(&self.shared.history),
            self.shared.published.clone(),
            scope,
            from.0,
            tx,
        ));
        Ok(Watch::new(rx))
    }
}

/// The object a create or update answers with, whatever shape the write took.
fn written_object(w: Written) -> Arc<Object> {
    match w {
        Written::Stored(o)
        | Written::Unchanged(o)
        | Written::Deleted(Deleted::Removed(o))
        | Written::Deleted(Deleted::Marked(o)) => o,
    }
}

/// Takes the exclusive lock that keeps a second hub process off the database. The
/// kernel releases it when the process dies, so a crash never leaves it stale.
fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let io_err = |source| StoreError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

struct Loaded {
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    revision: Revision,
    compacted: Revision,
}

/// Reads every current object and the revision counters. The revision is the highest
/// of the persisted counter and any revision in the tables, so it never goes back.
fn load(conn: &Connection, path: &str) -> Result<Loaded, StoreError> {
    let err = db_err(path);
    let counter = schema::meta(conn, META_REVISION).map_err(&err)?;
    let compacted = schema::meta(conn, META_COMPACTED).map_err(&err)?;
    let highest: i64 = conn
        .query_row(
            "SELECT max(COALESCE((SELECT max(revision) FROM objects), 0),
                        COALESCE((SELECT max(revision) FROM history), 0))",
            [],
            |row| row.get(0),
        )
        .map_err(&err)?;
    let revision = counter.max(highest.max(0) as u64);
    if revision != counter {
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = ?2",
            (revision as i64, META_REVISION),
        )
        .map_err(&err)?;
    }

    let mut objects = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT kind, namespace, name, revision, object FROM objects")
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        let (kind, namespace, name): (String, String, String) = (
            row.get(0).map_err(&err)?,
            row.get(1).map_err(&err)?,
            row.get(2).map_err(&err)?,
        );
        let rev: i64 = row.get(3).map_err(&err)?;
        let json: String = row.get(4).map_err(&err)?;
        let corrupt = |message: String| StoreError::Corrupt {
            key: format!("{kind} {namespace}/{name} in {path}"),
            message,
        };
        let obj =
            skiff_api::parse_object_json(json.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
        let key = obj.key();
        if key.kind.name() != kind || key.namespace != namespace || key.name != name {
            return Err(corrupt(format!("row holds {key}")));
        }
        if obj.meta().revision() != Some(Revision(rev.max(0) as u64)) {
            return Err(corrupt(format!(
                "resourceVersion {:?} does not match row revision {rev}",
                obj.meta().resource_version
            )));
        }
        objects.insert(key, Arc::new(obj));
    }
    Ok(Loaded {
        objects,
        revision: Revision(revision),
        compacted: Revision(compacted),
    })
}

#[cfg(test)]
mod tests {
    use skiff_api::ObjectMeta;
    use skiff_api::resources::Pod;

    use super::*;
    use crate::store::schema::{LATEST, MIGRATIONS};

    fn version(path: &Path) -> i64 {
        Connection::open(path)
            .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap()
    }

    fn index_exists(path: &Path, name: &str) -> bool {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[tokio::test]
    async fn version_0_database_is_upgraded_and_keeps_its_other_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('x');")
                .unwrap();
        }
        assert_eq!(version(&path), 0);
        let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(store.revision(), Revision(0));
        store.close().unwrap();
        assert_eq!(version(&path), LATEST);
        assert!(index_exists(&path, "history_by_kind"));
        let conn = Connection::open(&path).unwrap();
        let notes: i64 = conn
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(notes, 1);
    }

    #[tokio::test]
    async fn version_1_database_is_upgraded_with_its_objects_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut pod = Object::Pod(Pod {
            metadata: ObjectMeta {
                name: "web".into(),
                namespace: Some("default".into()),
                uid: Some(skiff_api::Uid("u-1".into())),
                generation: Some(1),
                ..Default::default()
            },
            ..Default::default()
        });
        pod.meta_mut().set_revision(Revision(7));
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let json = pod.to_json_string();
            conn.execute(
                "INSERT INTO objects VALUES ('Pod', 'default', 'web', 7, ?1)",
                [&json],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO history VALUES (7, 'ADDED', 'Pod', 'default', 'web', ?1)",
                [&json],
            )
            .unwrap();
            conn.execute("UPDATE meta SET value = 7 WHERE key = 'revision'", [])
                .unwrap();
        }
        assert!(!index_exists(&path, "history_by_kind"));

        let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
        assert_eq!(version(&path), LATEST);
        assert!(index_exists(&path, "history_by_kind"));
        assert_eq!(store.revision(), Revision(7));
        let got = store.get(&pod.key()).expect("object loaded");
        assert_eq!(*got, pod);
        // The old history row replays (from SQLite: nothing is in memory yet).
        let mut w = store
            .watch(Scope::kind(skiff_api::Kind::Pod), Revision(6))
            .unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!(
            (ev.revision, ev.event_type),
            (Revision(7), super::super::EventType::Added)
        );
        assert_eq!(*ev.object, pod);
        let next = store
            .create(Object::Pod(Pod {
                metadata: ObjectMeta {
                    name: "api".into(),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(next.meta().revision(), Some(Revision(8)));
    }

    #[test]
    fn a_row_that_does_not_match_its_key_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        SqliteStore::open(&path, StoreOptions::default())
            .unwrap()
            .close()
            .unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO objects VALUES ('Pod', 'default', 'a', 1, ?1)",
                [r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b","namespace":"default","resourceVersion":"1"}}"#],
            )
            .unwrap();
        }
        let e = SqliteStore::open(&path, StoreOptions::default()).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("hub.db"), "{e}");
    }
}
