//! Watch history: the recent events kept in memory, the older ones read back from the
//! `history` table, and the per-watcher task that streams them.
//!
//! A watcher is a cursor (the last revision it has been handed) that pulls events after
//! it, from the in-memory ring when the ring still reaches back that far and from SQLite
//! otherwise, then waits for the writer to publish a newer revision. Because every event
//! is read by position in one ordered history, replay and live events cannot overlap or
//! leave a gap, whatever the timing of `watch` against concurrent commits. A watcher that
//! stops reading only stalls its own task (the writer never waits for it); when it
//! resumes it re-reads from the ring or SQLite, and gets `Gone` only once the history it
//! needs has been compacted away.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use skiff_api::Revision;
use tokio::sync::{mpsc, watch};

use super::schema::{META_COMPACTED, META_REVISION, db_err, meta, open_reader};
use super::{EventType, Scope, StoreError, WatchEvent};

/// Events scanned per ring read, so the ring lock is held briefly.
const RING_SCAN: usize = 1024;
/// Rows per SQLite history read.
const SQL_CHUNK: usize = 512;
/// Idle reader connections kept for history reads.
const POOLED_READERS: usize = 4;

/// The most recent events, contiguous by revision: `events[i].revision == first + i`.
#[derive(Debug)]
struct Ring {
    events: VecDeque<WatchEvent>,
    /// Revision of `events[0]`, or of the next event when empty.
    first: u64,
    capacity: usize,
}

#[derive(Debug)]
pub(crate) struct History {
    ring: Mutex<Ring>,
    /// History at or below this revision is no longer kept.
    compacted: AtomicU64,
    path: PathBuf,
    busy_timeout: Duration,
    readers: Mutex<Vec<Connection>>,
}

impl History {
    pub(crate) fn new(
        path: PathBuf,
        busy_timeout: Duration,
        capacity: usize,
        revision: Revision,
        compacted: Revision,
    ) -> History {
        History {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(1024)),
                first: revision.0 + 1,
                capacity,
            }),
            compacted: AtomicU64::new(compacted.0),
            path,
            busy_timeout,
            readers: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn compacted(&self) -> Revision {
        Revision(self.compacted.load(Ordering::Acquire))
    }

    pub(crate) fn set_compacted(&self, rev: Revision) {
        self.compacted.store(rev.0, Ordering::Release);
    }

    /// Appends committed events, oldest first.
    pub(crate) fn append(&self, events: impl IntoIterator<Item = WatchEvent>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for ev in events {
            let expected = ring.first + ring.events.len() as u64;
            if ev.revision.0 != expected {
                // Cannot happen while revisions are assigned one per event; if it
                // did, restart the ring so positions stay exact (older reads go to SQLite).
                tracing::warn!(expected, got = ev.revision.0, "watch ring restarted");
                ring.events.clear();
                ring.first = ev.revision.0;
            }
            if ring.capacity == 0 {
                ring.first = ev.revision.0 + 1;
                continue;
            }
            ring.events.push_back(ev);
            if ring.events.len() > ring.capacity {
                ring.events.pop_front();
                ring.first += 1;
            }
        }
    }

    /// Events after `cursor` in `scope` from the ring, and the new cursor; `None` if the
    /// ring does not hold the event right after `cursor`.
    fn read_ring(&self, scope: &Scope, cursor: u64) -> Option<(Vec<WatchEvent>, u64)> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let next = cursor + 1;
        if next < ring.first {
            return None;
        }
        let start = usize::try_from(next - ring.first).ok()?;
        if start >= ring.events.len() {
            return None;
        }
        let mut last = cursor;
        let mut out = Vec::new();
        for ev in ring.events.range(start..).take(RING_SCAN) {
            last = ev.revision.0;
            if scope.matches_object(&ev.object) {
                out.push(ev.clone());
            }
        }
        Some((out, last))
    }

    /// Events after `cursor` in `scope` from the `history` table, and the new cursor.
    /// `Gone` if compaction removed any of them. Blocking.
    fn read_sqlite(
        &self,
        scope: &Scope,
        cursor: u64,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        let mut conn = self.take_reader()?;
        let result = read_history(&mut conn, &self.path_string(), scope, cursor);
        if result.is_ok() {
            let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOLED_READERS {
                pool.push(conn);
            }
        }
        result
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path, self.busy_timeout),
        }
    }

    /// Closes idle reader connections (before the final checkpoint at shutdown).
    pub(crate) fn close_readers(&self) {
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn path_string(&self) -> String {
        self.path.display().to_string()
    }
}

impl Scope {
    fn matches_object(&self, obj: &skiff_api::Object) -> bool {
        self.kind.is_none_or(|k| k == obj.kind())
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == obj.meta().namespace_or_empty())
    }
}

fn read_history(
    conn: &mut Connection,
    path: &str,
    scope: &Scope,
    cursor: u64,
) -> Result<(Vec<WatchEvent>, u64), StoreError> {
    let err = db_err(path);
    // One read transaction: the compaction mark, the head and the rows are one snapshot,
    // so "nothing compacted after cursor" holds for the rows read.
    let tx = conn.transaction().map_err(&err)?;
    let compacted = meta(&tx, META_COMPACTED).map_err(&err)?;
    if compacted > cursor {
        return Err(StoreError::Gone {
            requested: Revision(cursor),
            compacted: Revision(compacted),
        });
    }
    let head = meta(&tx, META_REVISION).map_err(&err)?;
    let after = i64::try_from(cursor).unwrap_or(i64::MAX);
    let limit = SQL_CHUNK as i64;
    // (revision, event type, JSON or None for a row outside the scope's namespace).
    let mut rows: Vec<(u64, String, Option<String>)> = Vec::new();
    {
        let mut collect = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            let revision: i64 = row.get(0)?;
            let namespace: String = row.get(2)?;
            let matches = scope.namespace.as_deref().is_none_or(|ns| ns == namespace);
            // Rows of other namespaces are not parsed, but still advance the cursor.
            let json = if matches { Some(row.get(3)?) } else { None };
            rows.push((revision.max(0) as u64, row.get(1)?, json));
            Ok(())
        };
        let mut stmt;
        let mut q = match scope.kind {
            Some(kind) => {
                stmt = tx
                    .prepare_cached(
                        "SELECT revision, event, namespace, object FROM history
                         WHERE kind = ?1 AND revision > ?2 ORDER BY revision LIMIT ?3",
                    )
                    .map_err(&err)?;
                stmt.query(rusqlite::params![kind.name(), after, limit])
                    .map_err(&err)?
            }
            None => {
                stmt = tx
                    .prepare_cached(
                        "SELECT revision, event, namespace, object FROM history
                         WHERE revision > ?1 ORDER BY revision LIMIT ?2",
                    )
                    .map_err(&err)?;
                stmt.query(rusqlite::params![after, limit]).map_err(&err)?
            }
        };
        while let Some(row) = q.next().map_err(&err)? {
            collect(row).map_err(&err)?;
        }
    }
    tx.commit().map_err(&err)?;
    let full = rows.len() == SQL_CHUNK;
    let mut last = cursor;
    let mut events = Vec::new();
    for (revision, event, json) in rows {
        last = revision;
        let Some(json) = json else {
            continue;
        };
        let corrupt = |message: String| StoreError::Corrupt {
            key: format!("history revision {revision} in {path}"),
            message,
        };
        let event_type = parse_event_type(&event)
            .ok_or_else(|| corrupt(format!("unknown event type {event:?}")))?;
        let object =
            skiff_api::parse_object_json(json.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
        events.push(WatchEvent {
            revision: Revision(revision),
            event_type,
            object: Arc::new(object),
        });
    }
    // A short read saw every matching row up to the snapshot's head.
    let next = if full { last } else { head.max(last) };
    Ok((events, next))
}

pub(crate) fn parse_event_type(s: &str) -> Option<EventType> {
    [EventType::Added, EventType::Modified, EventType::Deleted]
        .into_iter()
        .find(|t| t.as_str() == s)
}

/// Streams events after `cursor` in `scope` into `tx` until the watcher goes away or
/// the store shuts down.
pub(crate) async fn pump(
    history: Arc<History>,
    mut published: watch::Receiver<Revision>,
    scope: Scope,
    mut cursor: u64,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    let mut closing = false;
    loop {
        let latest = published.borrow_and_update().0;
        while cursor < latest {
            let step = match history.read_ring(&scope, cursor) {
                Some(step) => Ok(step),
                None => {
                    let (h, s) = (Arc::clone(&history), scope.clone());
                    match tokio::task::spawn_blocking(move || h.read_sqlite(&s, cursor)).await {
                        Ok(step) => step,
                        Err(e) => {
                            tracing::error!(error = %e, "watch history read failed");
                            return;
                        }
                    }
                }
            };
            let (events, next) = match step {
                Ok(step) => step,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            for ev in events {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if next <= cursor {
                break;
            }
            cursor = next;
        }
        if closing {
            return;
        }
        tokio::select! {
            changed = published.changed() => closing = changed.is_err(),
            () = tx.closed() => return,
        }
    }
}
