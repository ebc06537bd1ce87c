//! Store errors, each with the object or revision it is about.

use skiff_api::{ObjectKey, Revision};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    #[error(
        "conflict on {key}: the object has been modified (resourceVersion {expected} requested, {actual} stored); read it again and retry"
    )]
    Conflict {
        key: ObjectKey,
        expected: String,
        actual: Revision,
    },
    #[error("revision {requested} is too old: history starts after {compacted}; relist")]
    Gone {
        requested: Revision,
        compacted: Revision,
    },
    #[error("invalid write to {key}: {message}")]
    Invalid { key: ObjectKey, message: String },
    #[error("database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this hub understands; upgrade the hub"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("database {path} is in use by another hub process")]
    InUse { path: String },
    #[error("database {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored object {key} is corrupt: {message}")]
    Corrupt { key: String, message: String },
    #[error("the store is shut down")]
    Closed,
}
