//! The blob files: `registry/blobs/sha256/<hex>`, each written once under its digest.
//!
//! New content is written into a private staging directory, hashed while it is
//! written and fsynced; only a file whose digest has been checked is renamed to its
//! digest name (and the directory fsynced), so a crash never leaves a file under a name
//! that does not match its content. Staging directories left by a crash are removed at
//! the next start.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingWriter};

/// Why the blob files could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct BlobError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
pub(crate) struct BlobStore {
    blobs: PathBuf,
    staging: PathBuf,
}

/// A file written into staging: its digest and size are those of its content.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) path: PathBuf,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

/// A staging directory of one import, removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct StagingDir {
    path: PathBuf,
    next: u64,
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl StagingDir {
    /// Copies `reader` into a new staged file, hashing it; fsynced before returning.
    pub(crate) fn write(&mut self, reader: &mut dyn Read) -> Result<Staged, StageError> {
        self.next += 1;
        let path = self.path.join(self.next.to_string());
        let file = File::create(&path).map_err(|e| StageError::Local(at(&path)(e)))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(64 * 1024, file));
        // Reading errors belong to the source (a truncated archive); writing errors
        // to this machine: they are told apart for the caller.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StageError::Source(e)),
            };
            io::Write::write_all(&mut w, &buf[..n]).map_err(|e| StageError::Local(at(&path)(e)))?;
        }
        let (buf, digest, size) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| StageError::Local(at(&path)(e.into_error())))?;
        file.sync_all()
            .map_err(|e| StageError::Local(at(&path)(e)))?;
        Ok(Staged { path, digest, size })
    }

    /// Stages `bytes` (a manifest or config made by the import itself).
    pub(crate) fn write_bytes(&mut self, bytes: &[u8]) -> Result<Staged, StageError> {
        self.write(&mut &bytes[..])
    }
}

/// A staging write failed: reading the source, or writing locally.
#[derive(Debug)]
pub(crate) enum StageError {
    Source(io::Error),
    Local(BlobError),
}

impl BlobStore {
    /// Opens the blob store under `root`, clearing what a crashed import left in
    /// staging. Directories are created by the first import, so a hub that never
    /// stores an image has none.
    pub(crate) fn open(root: &Path) -> Result<BlobStore, BlobError> {
        let blobs = root.join("blobs").join("sha256");
        let staging = root.join("staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(at(&staging))?;
        }
        Ok(BlobStore { blobs, staging })
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub(crate) fn staging_dir(&self) -> Result<StagingDir, BlobError> {
        std::fs::create_dir_all(&self.blobs).map_err(at(&self.blobs))?;
        std::fs::create_dir_all(&self.staging).map_err(at(&self.staging))?;
        let path = self.staging.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&path).map_err(at(&path))?;
        Ok(StagingDir { path, next: 0 })
    }

    /// Moves verified staged files to their digest names. A blob already present is
    /// kept (same digest, same content) and the staged copy dropped. The directory is
    /// fsynced last so the new names survive a crash.
    pub(crate) fn commit(&self, staged: &[&Staged]) -> Result<(), BlobError> {
        for s in staged {
            let dest = self.path(&s.digest);
            if dest.exists() {
                continue;
            }
            std::fs::rename(&s.path, &dest).map_err(at(&dest))?;
        }
        File::open(&self.blobs)
            .and_then(|d| d.sync_all())
            .map_err(at(&self.blobs))
    }

    /// Removes every blob file not in `keep`; returns how many and their bytes.
    pub(crate) fn collect(&self, keep: &HashSet<Digest>) -> Result<(usize, u64), BlobError> {
        let mut removed = (0, 0);
        for entry in self.entries()? {
            let entry = entry.map_err(at(&self.blobs))?;
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(Digest::from_hex) else {
                continue;
            };
            if keep.contains(&digest) {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path).map_err(at(&path))?;
            removed.0 += 1;
            removed.1 += size;
        }
        Ok(removed)
    }

    /// Every blob file present.
    pub(crate) fn present(&self) -> Result<Vec<Digest>, BlobError> {
        let mut out = Vec::new();
        for entry in self.entries()? {
            let entry = entry.map_err(at(&self.blobs))?;
            if let Some(d) = entry.file_name().to_str().and_then(Digest::from_hex) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The blob directory's entries; none before the first import.
    fn entries(&self) -> Result<Vec<std::io::Result<std::fs::DirEntry>>, BlobError> {
        match std::fs::read_dir(&self.blobs) {
            Ok(rd) => Ok(rd.collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(at(&self.blobs)(e)),
        }
    }
}
