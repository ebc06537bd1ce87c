//! The single writer thread: group commit, the only code that changes the database or
//! the in-memory index, and periodic history compaction.
//!
//! Each round takes every write queued at that moment (up to a cap), decides each one
//! against the current state plus the earlier writes of the same round, writes all the
//! changes in one SQLite transaction, and only after the commit returns updates the
//! index, appends the watch history and answers the callers. One fsync then covers the
//! whole round, which is what lets thousands of small writes a second stay durable.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use skiff_api::{Object, ObjectKey, Revision, Time};
use tokio::sync::{oneshot, watch};

use super::apply::{self, Outcome};
use super::schema::{META_COMPACTED, META_REVISION, db_err};
use super::sqlite::Shared;
use super::{EventType, StoreError, WatchEvent, Write, Written};
use crate::clock::Clock;

/// History rows deleted per compaction transaction, so compaction never holds the
/// database for long between groups of writes.
const COMPACT_CHUNK: u64 = 10_000;
/// How often an idle writer wakes to check whether compaction is due, at most.
const MAX_IDLE_TICK: Duration = Duration::from_secs(60);
const MIN_IDLE_TICK: Duration = Duration::from_millis(50);

/// Where the writer answers a request of writes, one result per write, in order.
pub(crate) type WriteReply = oneshot::Sender<Vec<Result<Written, StoreError>>>;

/// What the writer thread is asked to do.
pub(crate) enum Command {
    Write {
        writes: Vec<Write>,
        reply: WriteReply,
    },
    /// Compact history down to the retention now; replies with the compacted revision.
    Compact {
        reply: oneshot::Sender<Result<Revision, StoreError>>,
    },
}

pub(crate) struct WriterConfig {
    pub(crate) max_batch: usize,
    pub(crate) retention: u64,
    pub(crate) compact_every: Duration,
    pub(crate) clock: Arc<dyn Clock>,
}

pub(crate) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    publish: watch::Sender<Revision>,
    cfg: WriterConfig,
    /// Last committed revision.
    revision: u64,
    compacted: u64,
    last_compaction: Instant,
    /// A compaction stopped at the chunk limit with more left to delete.
    compaction_backlog: bool,
}

/// One change decided in a round, waiting for the commit.
struct Change {
    key: ObjectKey,
    revision: Revision,
    event: EventType,
    object: Arc<Object>,
    json: String,
}

struct Pending {
    reply: WriteReply,
    results: Vec<Result<Written, StoreError>>,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        publish: watch::Sender<Revision>,
        cfg: WriterConfig,
        revision: Revision,
        compacted: Revision,
    ) -> Writer {
        Writer {
            conn,
            shared,
            publish,
            cfg,
            revision: revision.0,
            compacted: compacted.0,
            last_compaction: Instant::now(),
            compaction_backlog: false,
        }
    }

    /// Starts the writer thread. It runs until every sender of `commands` is gone,
    /// finishes what was queued, checkpoints the WAL and returns.
    pub(crate) fn spawn(
        self,
        commands: Receiver<Command>,
    ) -> Result<JoinHandle<Result<(), StoreError>>, StoreError> {
        let path = self.shared.path.clone();
        std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || self.run(commands))
            .map_err(|source| StoreError::Io { path, source })
    }

    fn run(mut self, commands: Receiver<Command>) -> Result<(), StoreError> {
        let tick = self.cfg.compact_every.clamp(MIN_IDLE_TICK, MAX_IDLE_TICK);
        loop {
            let first = match commands.recv_timeout(tick) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    self.compact_if_due();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = Vec::new();
            let mut compactions = Vec::new();
            let mut queued = 0;
            let mut next = Some(first);
            while let Some(cmd) = next {
                match cmd {
                    Command::Write { writes, reply } => {
                        queued += writes.len();
                        group.push((writes, reply));
                    }
                    Command::Compact { reply } => compactions.push(reply),
                }
                next = if queued < self.cfg.max_batch {
                    commands.try_recv().ok()
                } else {
                    None
                };
            }
            if !group.is_empty() {
                self.commit_group(group, queued);
            }
            if compactions.is_empty() {
                self.compact_if_due();
            } else {
                let result = self.compact_fully();
                for reply in compactions {
                    let _ = reply.send(match &result {
                        Ok(rev) => Ok(*rev),
                        Err(e) => Err(StoreError::Database {
                            path: self.shared.path.clone(),
                            source: copy_sqlite_error(e),
                        }),
                    });
                }
            }
        }
        self.finish()
    }

    fn commit_group(&mut self, group: Vec<(Vec<Write>, WriteReply)>, batch: usize) {
        let span = tracing::debug_span!(
            "store_commit",
            batch,
            changes = tracing::field::Empty,
            revision = tracing::field::Empty
        );
        let _entered = span.enter();
        let now = self.cfg.clock.now();
        let mut overlay: HashMap<ObjectKey, Option<Arc<Object>>> = HashMap::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut pending = Vec::with_capacity(group.len());
        for (writes, reply) in group {
            let results = writes
                .into_iter()
                .map(|w| self.decide(w, now, &mut overlay, &mut changes))
                .collect();
            pending.push(Pending { reply, results });
        }
        if let Some(last) = changes.last().map(|c| c.revision) {
            span.record("changes", changes.len());
            span.record("revision", last.0);
            match self.persist(&changes, last) {
                Ok(()) => self.apply(changes, overlay, last),
                Err(e) => {
                    // Rolled back: memory is untouched and every write of the round fails.
                    tracing::error!(path = %self.shared.path, error = %e, "group commit failed");
                    for p in &mut pending {
                        for r in &mut p.results {
                            if r.is_ok() {
                                *r = Err(StoreError::Database {
                                    path: self.shared.path.clone(),
                                    source: copy_sqlite_error(&e),
                                });
                            }
                        }
                    }
                }
            }
        }
        let stats = &self.shared.stats;
        stats.writes.fetch_add(batch as u64, Ordering::Relaxed);
        stats.last_batch.store(batch as u64, Ordering::Relaxed);
        for p in pending {
            let _ = p.reply.send(p.results);
        }
    }

    /// Decides one write against the index as changed by the round so far, and queues
    /// its change with the next revision.
    fn decide(
        &self,
        write: Write,
        now: Time,
        overlay: &mut HashMap<ObjectKey, Option<Arc<Object>>>,
        changes: &mut Vec<Change>,
    ) -> Result<Written, StoreError> {
        let lookup = |key: &ObjectKey| -> Option<Arc<Object>> {
            match overlay.get(key) {
                Some(pending) => pending.clone(),
                None => self
                    .shared
                    .index
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(key)
                    .cloned(),
            }
        };
        let outcome = match write {
            Write::Create(mut obj) => {
                apply::resolve_generated_name(&mut obj, |k| lookup(k).is_some())?;
                let current = lookup(&obj.key());
                apply::create(obj, current.as_ref(), now)?
            }
            Write::Update(obj) => {
                let current = lookup(&obj.key());
                apply::update(obj, current.as_ref())?
            }
            Write::Mutate(key, mutation) => {
                let current = lookup(&key);
                apply::mutate(&key, mutation, current.as_ref())?
            }
            Write::Delete { key, precondition } => {
                let current = lookup(&key);
                apply::delete(&key, precondition, current.as_ref(), now)?
            }
        };
        let (mut object, event, reply) = match outcome {
            Outcome::Unchanged(written) => return Ok(written),
            Outcome::Put {
                object,
                event,
                reply,
            } => (object, event, reply),
            Outcome::Remove { object, reply } => (object, EventType::Deleted, reply),
        };
        let revision = Revision(self.revision + changes.len() as u64 + 1);
        object.meta_mut().set_revision(revision);
        let object = Arc::new(object);
        let key = object.key();
        let json = object.to_json_string();
        overlay.insert(
            key.clone(),
            (event != EventType::Deleted).then(|| Arc::clone(&object)),
        );
        changes.push(Change {
            key,
            revision,
            event,
            object: Arc::clone(&object),
            json,
        });
        Ok(reply.written(object))
    }

    /// Writes a round's changes in one durable transaction.
    fn persist(&mut self, changes: &[Change], last: Revision) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO objects (kind, namespace, name, revision, object)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, namespace, name)
                     DO UPDATE SET revision = excluded.revision, object = excluded.object",
            )?;
            let mut remove = tx.prepare_cached(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )?;
            let mut history = tx.prepare_cached(
                "INSERT INTO history (revision, event, kind, namespace, name, object)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for c in changes {
                let (kind, ns, name) = (c.key.kind.name(), &c.key.namespace, &c.key.name);
                let rev = to_sql(c.revision);
                if c.event == EventType::Deleted {
                    remove.execute((kind, ns, name))?;
                } else {
                    put.execute((kind, ns, name, rev, &c.json))?;
                }
                history.execute((rev, c.event.as_str(), kind, ns, name, &c.json))?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = ?2",
                (to_sql(last), META_REVISION),
            )?;
        }
        tx.commit()?;
        self.shared.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes a committed round visible: index, watch history, then the published head.
    fn apply(
        &mut self,
        changes: Vec<Change>,
        overlay: HashMap<ObjectKey, Option<Arc<Object>>>,
        last: Revision,
    ) {
        {
            let mut index = self
                .shared
                .index
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for (key, obj) in overlay {
                match obj {
                    Some(obj) => index.put(key, obj),
                    None => index.remove(&key),
                }
            }
            index.set_revision(last);
        }
        self.revision = last.0;
        self.shared
            .history
            .append(changes.into_iter().map(|c| WatchEvent {
                revision: c.revision,
                event_type: c.event,
                object: c.object,
            }));
        self.publish.send_replace(last);
    }

    fn compaction_target(&self) -> u64 {
        self.revision.saturating_sub(self.cfg.retention)
    }

    fn compact_if_due(&mut self) {
        let due =
            self.compaction_backlog || self.last_compaction.elapsed() >= self.cfg.compact_every;
        if !due || self.compaction_target() <= self.compacted {
            return;
        }
        if let Err(e) = self.compact_step() {
            tracing::error!(path = %self.shared.path, error = %e, "history compaction failed");
        }
    }

    fn compact_fully(&mut self) -> rusqlite::Result<Revision> {
        while self.compaction_target() > self.compacted {
            self.compact_step()?;
        }
        Ok(Revision(self.compacted))
    }

    /// Deletes one chunk of history below the retention, in its own transaction.
    fn compact_step(&mut self) -> rusqlite::Result<()> {
        let target = self.compaction_target();
        let upto = target.min(self.compacted.saturating_add(COMPACT_CHUNK));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = tx.execute(
            "DELETE FROM history WHERE revision <= ?1",
            [to_sql(Revision(upto))],
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = ?2",
            (to_sql(Revision(upto)), META_COMPACTED),
        )?;
        tx.commit()?;
        tracing::debug!(compacted = upto, deleted, "history compacted");
        self.compacted = upto;
        self.shared.history.set_compacted(Revision(upto));
        self.last_compaction = Instant::now();
        self.compaction_backlog = upto < target;
        Ok(())
    }

    /// Folds the WAL back into the database file so the next open starts clean.
    fn finish(self) -> Result<(), StoreError> {
        let err = db_err(&self.shared.path);
        self.shared.history.close_readers();
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(&err)?;
        if busy != 0 {
            tracing::warn!(path = %self.shared.path, "WAL checkpoint incomplete: readers still active");
        }
        self.conn.close().map_err(|(_, e)| err(e))?;
        tracing::debug!(path = %self.shared.path, revision = self.revision, "store writer stopped");
        Ok(())
    }
}

fn to_sql(rev: Revision) -> i64 {
    i64::try_from(rev.0).unwrap_or(i64::MAX)
}

/// A copy of a SQLite error for each caller of a failed round (`rusqlite::Error` is
/// not `Clone`; its code and message are what callers need).
fn copy_sqlite_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
