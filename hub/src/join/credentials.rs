//! The credentials database: join tokens (hashed, with expiry and remaining uses) and
//! each node's MQTT password hash and `NodeKey`. Reads (every broker login, every
//! frame opened) come from an in-memory copy; SQLite is written on joins only.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::TryRngCore;
use rand::rngs::OsRng;
use rusqlite::{Connection, OptionalExtension, params};
use skiff_api::protocol::NodeKey;

use super::token::{JoinToken, constant_time_eq, sha256};
use super::valid_node_name;

/// Why the credentials database failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials database {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("credentials database {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand::rand_core::OsError),
}

/// Why a join was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("unknown join token")]
    UnknownToken,
    #[error("join token already used")]
    Spent,
    #[error("join token expired")]
    Expired,
    #[error("invalid node name {0:?}: must be a DNS-1123 subdomain")]
    InvalidName(String),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// What a node receives when it joins. `Debug` hides the secrets.
#[derive(Clone)]
pub struct Issued {
    pub node: String,
    pub password: String,
    pub key: NodeKey,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issued({}, <redacted>)", self.node)
    }
}

#[derive(Clone)]
struct NodeSecret {
    password_hash: [u8; 32],
    key: NodeKey,
}

/// The credentials store. Cheap to clone; all clones share one database and cache.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Opened on the first write when the file did not exist yet, so a hub that never
    /// issued a token leaves nothing behind.
    conn: Mutex<Option<Connection>>,
    nodes: RwLock<HashMap<String, NodeSecret>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.inner.path.display())
    }
}

fn random32() -> Result<[u8; 32], CredentialError> {
    let mut b = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(CredentialError::Random)?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn connect(path: &Path) -> Result<Connection, CredentialError> {
    let db = |source| CredentialError::Database {
        path: path.to_path_buf(),
        source,
    };
    // Secrets: the file is private from the moment it exists.
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CredentialError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let conn = Connection::open(path).map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS join_tokens (
             id TEXT PRIMARY KEY,
             secret_sha256 BLOB NOT NULL,
             expires INTEGER NOT NULL,
             uses INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS nodes (
             name TEXT PRIMARY KEY,
             password_sha256 BLOB NOT NULL,
             node_key BLOB NOT NULL,
             joined INTEGER NOT NULL
         );",
    )
    .map_err(db)?;
    Ok(conn)
}

fn load_nodes(
    conn: &Connection,
    path: &Path,
) -> Result<HashMap<String, NodeSecret>, CredentialError> {
    let db = |source| CredentialError::Database {
        path: path.to_path_buf(),
        source,
    };
    let mut nodes = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT name, password_sha256, node_key FROM nodes")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })
        .map_err(db)?;
    for row in rows {
        let (name, hash, key) = row.map_err(db)?;
        // A row that is not 32+32 bytes cannot have been written by the hub; skipping
        // it locks that node out until it joins again.
        let (Ok(password_hash), Ok(key)) = (<[u8; 32]>::try_from(hash), <[u8; 32]>::try_from(key))
        else {
            tracing::warn!(node = %name, "ignoring a malformed credentials row");
            continue;
        };
        nodes.insert(
            name,
            NodeSecret {
                password_hash,
                key: NodeKey::from_bytes(key),
            },
        );
    }
    Ok(nodes)
}

impl Credentials {
    /// Opens the database at `path` if it exists (it is created on the first write).
    pub fn open(path: &Path) -> Result<Credentials, CredentialError> {
        let (conn, nodes) = if path.exists() {
            let conn = connect(path)?;
            let nodes = load_nodes(&conn, path)?;
            (Some(conn), nodes)
        } else {
            (None, HashMap::new())
        };
        Ok(Credentials {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                nodes: RwLock::new(nodes),
            }),
        })
    }

    /// Runs `f` on the connection, creating the database first if needed.
    fn with_conn<T, E: From<CredentialError>>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut guard = self.inner.conn.lock().expect("credentials lock");
        if guard.is_none() {
            *guard = Some(connect(&self.inner.path)?);
        }
        f(guard.as_mut().expect("connection just opened"))
    }

    fn db_err(&self, source: rusqlite::Error) -> CredentialError {
        CredentialError::Database {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// Creates a join token valid until `expires` (unix seconds) for `uses` joins.
    pub fn create_token(&self, expires: i64, uses: u32) -> Result<JoinToken, CredentialError> {
        let token = JoinToken::generate();
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO join_tokens (id, secret_sha256, expires, uses) VALUES (?1, ?2, ?3, ?4)",
                params![token.id(), token.secret_hash().to_vec(), expires, uses],
            )
            .map_err(|e| self.db_err(e))
        })?;
        Ok(token)
    }

    /// Spends one use of `token` (at unix time `now`) and issues fresh credentials for
    /// `node`, replacing any it had: joining again rotates a node's password and key.
    pub fn join(&self, token: &str, node: &str, now: i64) -> Result<Issued, JoinError> {
        let token = JoinToken::parse(token).map_err(|_| JoinError::UnknownToken)?;
        if !valid_node_name(node) {
            return Err(JoinError::InvalidName(node.to_string()));
        }
        let password = hex(&random32()?);
        let key = NodeKey::from_bytes(random32()?);
        let password_hash = sha256(password.as_bytes());
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(|e| self.db_err(e))?;
            let row: Option<(Vec<u8>, i64, i64)> = tx
                .query_row(
                    "SELECT secret_sha256, expires, uses FROM join_tokens WHERE id = ?1",
                    params![token.id()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.db_err(e))?;
            let Some((hash, expires, uses)) = row else {
                return Err(JoinError::UnknownToken);
            };
            if !constant_time_eq(&hash, &token.secret_hash()) {
                return Err(JoinError::UnknownToken);
            }
            if uses <= 0 {
                return Err(JoinError::Spent);
            }
            if now >= expires {
                return Err(JoinError::Expired);
            }
            tx.execute(
                "UPDATE join_tokens SET uses = uses - 1 WHERE id = ?1",
                params![token.id()],
            )
            .map_err(|e| self.db_err(e))?;
            tx.execute(
                "INSERT INTO nodes (name, password_sha256, node_key, joined) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET password_sha256 = excluded.password_sha256,
                     node_key = excluded.node_key, joined = excluded.joined",
                params![node, password_hash.to_vec(), key.as_bytes().to_vec(), now],
            )
            .map_err(|e| self.db_err(e))?;
            tx.commit().map_err(|e| self.db_err(e))?;
            Ok(())
        })?;
        // The cache changes only after the commit is durable.
        self.inner.nodes.write().expect("credentials cache").insert(
            node.to_string(),
            NodeSecret {
                password_hash,
                key: key.clone(),
            },
        );
        Ok(Issued {
            node: node.to_string(),
            password,
            key,
        })
    }

    /// Whether `password` is `node`'s current MQTT password.
    pub fn check_password(&self, node: &str, password: &str) -> bool {
        let nodes = self.inner.nodes.read().expect("credentials cache");
        nodes
            .get(node)
            .is_some_and(|s| constant_time_eq(&s.password_hash, &sha256(password.as_bytes())))
    }

    /// `node`'s current key, if it has joined.
    pub fn key(&self, node: &str) -> Option<NodeKey> {
        let nodes = self.inner.nodes.read().expect("credentials cache");
        nodes.get(node).map(|s| s.key.clone())
    }

    /// Every node that has joined.
    pub fn nodes(&self) -> Vec<String> {
        let nodes = self.inner.nodes.read().expect("credentials cache");
        let mut names: Vec<String> = nodes.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_spent_expire_and_rotate_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.db");
        let creds = Credentials::open(&path).unwrap();
        assert!(!path.exists(), "created before the first write");
        let t = creds.create_token(1000, 2).unwrap().reveal();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let first = creds.join(&t, "edge-1", 10).unwrap();
        assert!(creds.check_password("edge-1", &first.password));
        assert!(!creds.check_password("edge-1", "nope"));
        assert!(!creds.check_password("edge-2", &first.password));
        assert_eq!(creds.key("edge-1"), Some(first.key.clone()));

        let again = creds.join(&t, "edge-1", 11).unwrap();
        assert_ne!(again.password, first.password);
        assert_ne!(again.key, first.key);
        assert!(!creds.check_password("edge-1", &first.password));
        assert!(matches!(
            creds.join(&t, "edge-2", 12),
            Err(JoinError::Spent)
        ));

        let late = creds.create_token(100, 1).unwrap().reveal();
        assert!(matches!(
            creds.join(&late, "edge-3", 100),
            Err(JoinError::Expired)
        ));
        assert!(matches!(
            creds.join("abcdef.0123456789abcdef", "edge-3", 1),
            Err(JoinError::UnknownToken)
        ));
        let forged = format!("{}.0123456789abcdef", &late[..6]);
        assert!(matches!(
            creds.join(&forged, "edge-3", 1),
            Err(JoinError::UnknownToken)
        ));
        assert!(matches!(
            creds.join(&late, "Bad/Name", 1),
            Err(JoinError::InvalidName(_))
        ));

        // A reopened database knows the rotated credentials.
        drop(creds);
        let reopened = Credentials::open(&path).unwrap();
        assert!(reopened.check_password("edge-1", &again.password));
        assert_eq!(reopened.key("edge-1"), Some(again.key));
        assert_eq!(reopened.nodes(), vec!["edge-1".to_string()]);
    }
}
