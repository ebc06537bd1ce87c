//! The agent's SQLite database (`<state-dir>/agent.db`, WAL, `synchronous=FULL`): the
//! desired pods the hub sent (with their revisions), the revision of the last completed
//! sync, deletions not yet covered by a sync, and the last status reported per pod.
//!
//! A message from the hub is written here before the agent acts on it or acknowledges
//! it, so a crash or reboot without the hub brings back exactly what was promised. Those
//! writes wait for the disk (`fsync`), so [`StateDb::apply_blocking`] runs them on the
//! blocking pool: an agent loop waits for its own write, while other loops of the
//! process (and heartbeats) carry on and concurrent fsyncs share journal commits.
//!
//! The reported statuses are a cache of what was sent, not a promise: they are
//! committed without waiting for the disk (`synchronous=NORMAL` for that transaction;
//! the next durable commit or checkpoint syncs them), and one lost in a power cut only
//! means that status is sent again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use skiff_api::protocol::{Down, PodRef};
use skiff_api::resources::{Pod, PodStatus};

use crate::reconcile::DesiredPod;

pub(crate) const DB_FILE: &str = "agent.db";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: stored pod {uid} is unreadable: {message}")]
    Corrupt {
        path: PathBuf,
        uid: String,
        message: String,
    },
    #[error("state database {path}: the write task failed: {source}")]
    Task {
        path: PathBuf,
        source: tokio::task::JoinError,
    },
}

/// What applying a message changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Desired state changed: reconcile.
    Changed,
    /// Already applied, or older than what is stored.
    Ignored,
    /// A sync completed at this revision.
    Synced,
}

/// A handle on the database; clones share one connection.
#[derive(Debug, Clone)]
pub struct StateDb {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pods (
    uid TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    pod TEXT NOT NULL
);
-- Deletions newer than the last sync: a redelivered, older upsert of the same uid must
-- not bring the pod back. Pruned when a sync covers them.
CREATE TABLE IF NOT EXISTS deleted (
    uid TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reported (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

impl StateDb {
    /// Opens (creating if needed) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<StateDb, DbError> {
        let path = state_dir.join(DB_FILE);
        let err = |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        // A small page cache: thousands of simulated agents share one process.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-128;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(StateDb {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (an open transaction
        // rolls back when dropped), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`StateDb::apply`] on the blocking pool, so the disk wait holds up no other task.
    pub async fn apply_blocking(&self, msg: Down) -> Result<Applied, DbError> {
        let mut db = self.clone();
        tokio::task::spawn_blocking(move || db.apply(&msg))
            .await
            .map_err(|source| DbError::Task {
                path: self.path.clone(),
                source,
            })?
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Persists one message from the hub. Idempotent: replaying it changes nothing.
    pub fn apply(&mut self, msg: &Down) -> Result<Applied, DbError> {
        let path = self.path.clone();
        let err = move |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(&err)?;
        let sync_rev = read_meta(&tx, "sync_revision").map_err(&err)?;
        let applied = match msg {
            Down::PodUpsert { revision, pod, .. } => {
                let uid = pod.metadata.uid.as_ref().map(|u| u.0.clone());
                let Some(uid) = uid else {
                    return Ok(Applied::Ignored);
                };
                let stored: Option<u64> = tx
                    .query_row("SELECT revision FROM pods WHERE uid = ?1", [&uid], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(&err)?;
                let deleted: bool = tx
                    .query_row("SELECT 1 FROM deleted WHERE uid = ?1", [&uid], |_| Ok(()))
                    .optional()
                    .map_err(&err)?
                    .is_some();
                let stale = match stored {
                    Some(s) => *revision <= s,
                    // After a sync at R the agent holds every pod the hub had at R, so an
                    // unknown pod at or below R is a late redelivery of a deleted one.
                    None => deleted || *revision <= sync_rev,
                };
                if stale {
                    Applied::Ignored
                } else {
                    let mut pod = (**pod).clone();
                    pod.status = None;
                    let json = serde_json::to_string(&pod).expect("pod serializes");
                    tx.execute(
                        "INSERT INTO pods (uid, namespace, name, revision, pod) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT(uid) DO UPDATE SET namespace = ?2, name = ?3, revision = ?4, pod = ?5",
                        params![
                            uid,
                            pod.metadata.namespace_or_empty(),
                            pod.metadata.name,
                            revision,
                            json
                        ],
                    )
                    .map_err(&err)?;
                    Applied::Changed
                }
            }
            Down::PodDelete { revision, uid, .. } => {
                let n = tx
                    .execute("DELETE FROM pods WHERE uid = ?1", [uid])
                    .map_err(&err)?;
                if *revision > sync_rev {
                    tx.execute(
                        "INSERT INTO deleted (uid, revision) VALUES (?1, ?2)
                         ON CONFLICT(uid) DO UPDATE SET revision = max(revision, ?2)",
                        params![uid, revision],
                    )
                    .map_err(&err)?;
                }
                if n > 0 {
                    Applied::Changed
                } else {
                    Applied::Ignored
                }
            }
            Down::SyncDone { revision, .. } => {
                if *revision > sync_rev {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('sync_revision', ?1)
                         ON CONFLICT(key) DO UPDATE SET value = ?1",
                        [revision],
                    )
                    .map_err(&err)?;
                    tx.execute("DELETE FROM deleted WHERE revision <= ?1", [revision])
                        .map_err(&err)?;
                }
                Applied::Synced
            }
            // Stream sessions live in memory only (agent/src/stream).
            Down::StreamOpen { .. }
            | Down::StreamInput { .. }
            | Down::StreamAck { .. }
            | Down::StreamClose { .. } => Applied::Ignored,
        };
        tx.commit().map_err(&err)?;
        Ok(applied)
    }

    /// The revision of the last `SyncDone` applied (0: never synced).
    pub fn sync_revision(&self) -> Result<u64, DbError> {
        read_meta(&self.conn(), "sync_revision").map_err(self.err())
    }

    /// The pods the agent holds, as told to the hub in a `Sync`.
    pub fn pod_refs(&self) -> Result<Vec<PodRef>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT namespace, name, uid, revision FROM pods ORDER BY uid")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PodRef {
                    namespace: r.get(0)?,
                    name: r.get(1)?,
                    uid: r.get(2)?,
                    revision: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Every desired pod, by uid.
    pub fn desired(&self) -> Result<BTreeMap<String, DesiredPod>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT uid, revision, pod FROM pods")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (uid, revision, json) = row.map_err(self.err())?;
            let pod: Pod = serde_json::from_str(&json).map_err(|e| DbError::Corrupt {
                path: self.path.clone(),
                uid: uid.clone(),
                message: e.to_string(),
            })?;
            out.insert(uid.clone(), DesiredPod { uid, revision, pod });
        }
        Ok(out)
    }

    /// The last status reported for each pod.
    pub fn reported(&self) -> Result<BTreeMap<String, PodStatus>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT uid, status FROM reported")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (uid, json) = row.map_err(self.err())?;
            // An unreadable record only means the status is sent again.
            if let Ok(status) = serde_json::from_str(&json) {
                out.insert(uid, status);
            }
        }
        Ok(out)
    }

    pub fn set_reported(&self, uid: &str, status: &PodStatus) -> Result<(), DbError> {
        let json = serde_json::to_string(status).expect("status serializes");
        self.relaxed(|conn| {
            conn.prepare_cached(
                "INSERT INTO reported (uid, status) VALUES (?1, ?2)
                 ON CONFLICT(uid) DO UPDATE SET status = ?2",
            )
            .and_then(|mut s| s.execute(params![uid, json]))
        })
    }

    pub fn forget_reported(&self, uid: &str) -> Result<(), DbError> {
        self.relaxed(|conn| conn.execute("DELETE FROM reported WHERE uid = ?1", [uid]))
    }

    /// Runs one write that need not wait for the disk (see the module header), then
    /// restores `synchronous=FULL` for everything else.
    fn relaxed(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<usize>,
    ) -> Result<(), DbError> {
        let conn = self.conn();
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(self.err())?;
        let written = write(&conn);
        let restored = conn.execute_batch("PRAGMA synchronous=FULL");
        written.map_err(self.err())?;
        restored.map_err(self.err())?;
        Ok(())
    }
}

fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use skiff_api::protocol::SCHEMA_VERSION;

    use super::*;

    fn synchronous(db: &StateDb) -> i64 {
        db.conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn hub_messages_stay_durable_around_relaxed_status_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        const FULL: i64 = 2;
        assert_eq!(synchronous(&db), FULL);
        let status = PodStatus::default();
        db.set_reported("u1", &status).unwrap();
        db.set_reported("u2", &status).unwrap();
        assert_eq!(
            synchronous(&db),
            FULL,
            "a status write left the setting relaxed"
        );
        db.forget_reported("u2").unwrap();
        assert_eq!(synchronous(&db), FULL);

        let done = Down::SyncDone {
            v: SCHEMA_VERSION,
            revision: 7,
            pods: 0,
        };
        assert_eq!(db.apply_blocking(done).await.unwrap(), Applied::Synced);
        drop(db);
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.sync_revision().unwrap(), 7);
        assert_eq!(
            db.reported().unwrap().keys().collect::<Vec<_>>(),
            vec!["u1"]
        );
    }
}
