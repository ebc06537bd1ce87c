//! What desired state each node was last sent, kept across hub restarts.
//!
//! A pod's `resourceVersion` moves with every status write, so after a restart the hub
//! cannot tell from the store alone at which revision a pod last changed in a way its
//! agent cares about. Without that, every agent's first sync would be answered with
//! every pod it runs. This file records, for each bound pod, that revision (the one the
//! agent holds) and the store revision the record reflects. A pod whose object did not
//! change since then is known to be held as recorded; any other pod is sent again.
//! Losing the file (a crash between saves, a deleted data dir) only costs re-sends.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The record on disk.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sent {
    /// The store revision the record reflects: pods whose `resourceVersion` is at or
    /// below it have not changed since it was written.
    pub(crate) revision: u64,
    /// Pod UID → the revision of the last change its node was sent.
    pub(crate) pods: HashMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SentError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a record of sent desired state: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Sent {
    /// Reads the record; a missing file is an empty record.
    pub(crate) fn load(path: &Path) -> Result<Sent, SentError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sent::default()),
            Err(source) => {
                return Err(SentError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|source| SentError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Replaces the record atomically: a crash leaves the old one or the new one.
    pub(crate) fn save(&self, path: &Path) -> Result<(), SentError> {
        let err = |source| SentError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent() {
            // The rename is durable once the directory is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sent.json");
        assert_eq!(Sent::load(&path).unwrap(), Sent::default());
        let sent = Sent {
            revision: 42,
            pods: [("u1".to_string(), 7), ("u2".to_string(), 40)].into(),
        };
        sent.save(&path).unwrap();
        assert_eq!(Sent::load(&path).unwrap(), sent);
        std::fs::write(&path, b"{not json").unwrap();
        let e = Sent::load(&path).unwrap_err();
        assert!(e.to_string().contains("sent.json"), "{e}");
    }
}
