//! Which repositories hold which manifests, what each manifest references, and the tags:
//! a small SQLite database (`DATA_DIR/registry.db`, WAL, `synchronous=FULL`), apart from
//! the state store so large image operations never stall the cluster's writes.
//!
//! Manifests belong to a repository (a digest is served only under the names it was
//! imported with). An import is indexed in one transaction after its blobs are in
//! place, so a crash never leaves a tag naming content that is not on disk.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::digest::Digest;

#[derive(Debug, thiserror::Error)]
#[error("registry index {path}: {source}")]
pub struct IndexError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// What a manifest references: a blob (config, layer) or another manifest (an index's
/// entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) manifest: bool,
}

/// A manifest to index.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRecord {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) size: u64,
    /// The image config's `created`, when it has one.
    pub(crate) created: Option<String>,
    pub(crate) children: Vec<Child>,
}

/// One tag of an import with the manifests it needs.
#[derive(Debug, Clone)]
pub(crate) struct NewTag {
    pub(crate) repo: String,
    pub(crate) tag: String,
    pub(crate) digest: Digest,
}

/// A stored manifest's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestRow {
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

/// One tagged image as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub tag: String,
    pub digest: String,
    /// Bytes of the manifest(s), configs and layers, each blob counted once.
    pub size: u64,
    /// The image config's creation time, if it has one.
    pub created: Option<String>,
    /// When the hub imported it.
    pub imported: String,
}

/// The index. The database file is created by the first import; until then every
/// read answers as an empty registry would.
#[derive(Debug)]
pub(crate) struct Index {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS manifests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT,
    imported TEXT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS refs (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    child TEXT NOT NULL,
    size INTEGER NOT NULL,
    is_manifest INTEGER NOT NULL,
    PRIMARY KEY (repo, digest, child)
);
CREATE INDEX IF NOT EXISTS refs_child ON refs (child);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag)
);
";

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("{s:?} is not a digest").into(),
        )
    })
}

impl Index {
    pub(crate) fn open(path: &Path) -> Result<Index, IndexError> {
        let conn = if path.exists() {
            Some(connect(path)?)
        } else {
            None
        };
        Ok(Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` on the connection. Without a database yet, a write (`create`) creates
    /// it and a read gets the empty answer.
    fn with<T: Default>(
        &self,
        create: bool,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, IndexError> {
        // A panic elsewhere while holding the lock leaves the connection usable:
        // every write is one transaction, rolled back if it did not finish.
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if !create {
                return Ok(T::default());
            }
            *guard = Some(connect(&self.path)?);
        }
        let conn = guard.as_mut().expect("connection just opened");
        f(conn).map_err(|source| IndexError {
            path: self.path.clone(),
            source,
        })
    }

    /// Adds manifests (to `repo` of each tag) and points the tags at them, atomically.
    pub(crate) fn add(
        &self,
        manifests: &[(String, ManifestRecord)],
        tags: &[NewTag],
        now: &str,
    ) -> Result<(), IndexError> {
        self.with(true, |conn| {
            let tx = conn.transaction()?;
            for (repo, m) in manifests {
                tx.execute(
                    "INSERT INTO manifests (repo, digest, media_type, size, created, imported)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(repo, digest) DO UPDATE SET imported = excluded.imported",
                    params![
                        repo,
                        m.digest.as_str(),
                        m.media_type,
                        m.size as i64,
                        m.created,
                        now
                    ],
                )?;
                for c in &m.children {
                    tx.execute(
                        "INSERT OR IGNORE INTO refs (repo, digest, child, size, is_manifest)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            repo,
                            m.digest.as_str(),
                            c.digest.as_str(),
                            c.size as i64,
                            c.manifest
                        ],
                    )?;
                }
            }
            for t in tags {
                tx.execute(
                    "INSERT INTO tags (repo, tag, digest) VALUES (?1, ?2, ?3)
                     ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest",
                    params![t.repo, t.tag, t.digest.as_str()],
                )?;
            }
            // Retagging may leave the old manifest unreachable.
            let repos: HashSet<&str> = tags.iter().map(|t| t.repo.as_str()).collect();
            for repo in repos {
                prune(&tx, repo)?;
            }
            tx.commit()
        })
    }

    pub(crate) fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<ManifestRow>, IndexError> {
        self.with(false, |conn| {
            conn.query_row(
                "SELECT media_type, size FROM manifests WHERE repo = ?1 AND digest = ?2",
                params![repo, digest.as_str()],
                |r| {
                    Ok(ManifestRow {
                        media_type: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
        })
    }

    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, IndexError> {
        self.with(false, |conn| {
            conn.query_row(
                "SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
                |r| digest_col(r.get(0)?),
            )
            .optional()
        })
    }

    /// The size of `digest` if a manifest of `repo` references it (or it is one).
    pub(crate) fn blob_in_repo(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, IndexError> {
        self.with(false, |conn| {
            conn.query_row(
                "SELECT size FROM refs WHERE repo = ?1 AND child = ?2
                 UNION ALL SELECT size FROM manifests WHERE repo = ?1 AND digest = ?2
                 LIMIT 1",
                params![repo, digest.as_str()],
                |r| Ok(r.get::<_, i64>(0)? as u64),
            )
            .optional()
        })
    }

    pub(crate) fn repo_exists(&self, repo: &str) -> Result<bool, IndexError> {
        self.with(false, |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM manifests WHERE repo = ?1)",
                params![repo],
                |r| r.get(0),
            )
        })
    }

    /// Tags of `repo`, sorted.
    pub(crate) fn tags(&self, repo: &str) -> Result<Vec<String>, IndexError> {
        self.with(false, |conn| {
            let mut st = conn.prepare("SELECT tag FROM tags WHERE repo = ?1 ORDER BY tag")?;
            st.query_map(params![repo], |r| r.get(0))?.collect()
        })
    }

    /// Repositories holding at least one manifest, sorted.
    pub(crate) fn repos(&self) -> Result<Vec<String>, IndexError> {
        self.with(false, |conn| {
            let mut st = conn.prepare("SELECT DISTINCT repo FROM manifests ORDER BY repo")?;
            st.query_map([], |r| r.get(0))?.collect()
        })
    }

    /// Every tagged image with its total size.
    pub(crate) fn list(&self) -> Result<Vec<ImageSummary>, IndexError> {
        self.with(false, |conn| {
            let mut out = Vec::new();
            let mut st = conn.prepare(
                "SELECT t.repo, t.tag, t.digest, m.created, m.imported, m.size
                 FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
                 ORDER BY t.repo, t.tag",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)? as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (repo, tag, digest, created, imported, size) in rows {
                let mut seen = HashSet::new();
                let mut total = size;
                let mut stack = vec![digest.clone()];
                while let Some(d) = stack.pop() {
                    for (child, size, is_manifest) in children(conn, &repo, &d)? {
                        if seen.insert(child.clone()) {
                            total += size;
                            if is_manifest {
                                stack.push(child);
                            }
                        }
                    }
                }
                out.push(ImageSummary {
                    name: repo,
                    tag,
                    digest,
                    size: total,
                    created,
                    imported,
                });
            }
            Ok(out)
        })
    }

    /// Removes a tag and the manifests of its repository no tag reaches anymore.
    /// Returns the digest the tag named, `None` if there was no such tag.
    pub(crate) fn remove_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, IndexError> {
        self.with(false, |conn| {
            let tx = conn.transaction()?;
            let digest: Option<String> = tx
                .query_row(
                    "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 RETURNING digest",
                    params![repo, tag],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(digest) = digest else {
                return Ok(None);
            };
            prune(&tx, repo)?;
            tx.commit()?;
            digest_col(digest).map(Some)
        })
    }

    /// Every digest some manifest still needs: the manifests and what they reference.
    pub(crate) fn referenced(&self) -> Result<HashSet<Digest>, IndexError> {
        self.with(false, |conn| {
            let mut st =
                conn.prepare("SELECT digest FROM manifests UNION SELECT child FROM refs")?;
            st.query_map([], |r| digest_col(r.get(0)?))?.collect()
        })
    }
}

fn connect(path: &Path) -> Result<Connection, IndexError> {
    let err = |source| IndexError {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

fn children(
    conn: &Connection,
    repo: &str,
    digest: &str,
) -> rusqlite::Result<Vec<(String, u64, bool)>> {
    let mut st = conn.prepare_cached(
        "SELECT child, size, is_manifest FROM refs WHERE repo = ?1 AND digest = ?2",
    )?;
    st.query_map(params![repo, digest], |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?))
    })?
    .collect()
}

/// Deletes the manifests of `repo` that no tag reaches, with their references.
fn prune(conn: &Connection, repo: &str) -> rusqlite::Result<()> {
    let mut reachable = HashSet::new();
    let mut stack: Vec<String> = {
        let mut st = conn.prepare("SELECT digest FROM tags WHERE repo = ?1")?;
        st.query_map(params![repo], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    while let Some(d) = stack.pop() {
        if !reachable.insert(d.clone()) {
            continue;
        }
        for (child, _, is_manifest) in children(conn, repo, &d)? {
            if is_manifest {
                stack.push(child);
            }
        }
    }
    let all: BTreeMap<String, ()> = {
        let mut st = conn.prepare("SELECT digest FROM manifests WHERE repo = ?1")?;
        st.query_map(params![repo], |r| Ok((r.get(0)?, ())))?
            .collect::<rusqlite::Result<_>>()?
    };
    for digest in all.keys().filter(|d| !reachable.contains(*d)) {
        conn.execute(
            "DELETE FROM refs WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
        conn.execute(
            "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
    }
    Ok(())
}
