//! The on-disk layout of the hub database and its versioned migrations, plus opening
//! connections with the settings durability depends on.
//!
//! `PRAGMA user_version` records how many migrations a database has had. Opening applies
//! the missing ones in order, all in one transaction, and refuses a database written by
//! a newer hub rather than guess at its layout.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::StoreError;

/// Migration `i` takes a database from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: current objects, the change history watches resume from, and counters.
    "CREATE TABLE objects (
         kind      TEXT    NOT NULL,
         namespace TEXT    NOT NULL,
         name      TEXT    NOT NULL,
         revision  INTEGER NOT NULL,
         object    TEXT    NOT NULL,
         PRIMARY KEY (kind, namespace, name)
     ) WITHOUT ROWID;
     CREATE TABLE history (
         revision  INTEGER PRIMARY KEY,
         event     TEXT    NOT NULL,
         kind      TEXT    NOT NULL,
         namespace TEXT    NOT NULL,
         name      TEXT    NOT NULL,
         object    TEXT    NOT NULL
     );
     CREATE TABLE meta (
         key   TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);",
    // 2: a watch on one kind resuming from far back reads only that kind's rows.
    "CREATE INDEX history_by_kind ON history (kind, revision);",
];

/// The version this hub writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACTED: &str = "compacted";

/// Wraps a SQLite error with the database path.
pub(crate) fn db_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        path: path.to_string(),
        source,
    }
}

/// Opens (creating if needed) the database the writer uses: WAL so readers never wait
/// for the writer, `synchronous=FULL` so a committed transaction survives power loss.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let name = path.display().to_string();
    let err = db_err(&name);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(busy_timeout).map_err(&err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still durable with synchronous=FULL, but readers now block the writer.
        tracing::warn!(path = %name, mode = %mode, "database refused WAL journal mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&err)?;
    Ok(conn)
}

/// Opens a connection for reading history; it never writes.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let name = path.display().to_string();
    let err = db_err(&name);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(busy_timeout).map_err(&err)?;
    conn.pragma_update(None, "query_only", true).map_err(&err)?;
    Ok(conn)
}

/// Brings the schema to [`LATEST`] in one transaction. Returns the version found.
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<i64, StoreError> {
    let err = db_err(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(&err)?;
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tracing::info!(path, version = i + 1, "migrating store schema");
        tx.execute_batch(sql).map_err(&err)?;
    }
    tx.pragma_update(None, "user_version", LATEST)
        .map_err(&err)?;
    tx.commit().map_err(&err)?;
    Ok(found)
}

/// Reads a `meta` counter.
pub(crate) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get::<_, i64>(0)
    })
    .map(|v| v.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn fresh_database_gets_every_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = open_writer(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(migrate(&mut conn, "hub.db").unwrap(), 0);
        assert_eq!(version(&conn), LATEST);
        let journal: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(meta(&conn, META_REVISION).unwrap(), 0);
        // Migrating again is a no-op.
        assert_eq!(migrate(&mut conn, "hub.db").unwrap(), LATEST);
    }

    #[test]
    fn newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = open_writer(&path, Duration::from_secs(1)).unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let e = migrate(&mut conn, "hub.db").unwrap_err();
        assert!(
            matches!(e, StoreError::SchemaTooNew { found, supported, .. } if found == LATEST + 1 && supported == LATEST)
        );
        assert_eq!(version(&conn), LATEST + 1);
    }

    #[test]
    fn failed_migration_leaves_the_database_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = open_writer(&path, Duration::from_secs(1)).unwrap();
        // A table in the way of migration 1 makes it fail half-way.
        conn.execute_batch("CREATE TABLE meta (x INTEGER)").unwrap();
        assert!(matches!(
            migrate(&mut conn, "hub.db"),
            Err(StoreError::Database { .. })
        ));
        assert_eq!(version(&conn), 0);
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'objects'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(objects, 0, "the partial migration was rolled back");
    }
}
