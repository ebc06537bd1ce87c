//! What both runtimes need to keep records that outlive the agent: file names made
//! safe from hub-supplied strings, and JSON files replaced atomically and durably (temp
//! file, fsync, rename, fsync of the directory) before the runtime acts on them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::RuntimeError;

/// Keeps only characters that cannot escape a directory (UIDs and names come from the hub).
pub(crate) fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `value` as JSON to `path` inside `dir`, atomically and durably.
pub(crate) fn write_json(
    dir: &Path,
    path: &Path,
    value: &impl serde::Serialize,
) -> Result<(), RuntimeError> {
    let json = serde_json::to_vec(value).expect("record serializes");
    write_atomic(dir, path, &json)
}

/// Replaces `path` (in `dir`) with `bytes` durably: a temp file written and fsynced,
/// renamed over it, then the directory fsynced. A crash leaves the old file or the new.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Removes a record; one already gone is fine.
pub(crate) fn remove(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
