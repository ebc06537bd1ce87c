//! The on-disk layout of the image store: verified blobs by digest
//! (`blobs/sha256/<hex>`, with `<hex>.partial` for a download under way), unpacked layers
//! by diff id (`layers/<hex>/`, made in a temp dir and renamed into place), and the index
//! of complete images (`index.json`, replaced atomically), so a crash mid-pull never
//! leaves a half-image that looks complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::reference::check_digest;
use super::{ImageConfig, ImageError};

/// One complete image, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Manifest digest (of the platform manifest, not of an index).
    pub digest: String,
    pub config_digest: String,
    /// Diff ids, bottom layer first.
    pub layers: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageRecord {
    pub fn config(&self) -> ImageConfig {
        ImageConfig {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Index {
    /// Canonical reference → image.
    pub images: BTreeMap<String, ImageRecord>,
}

#[derive(Debug)]
pub(crate) struct ContentStore {
    root: PathBuf,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex_of(digest: &str) -> Result<&str, ImageError> {
    check_digest(digest).map_err(|e| ImageError::Corrupt {
        path: PathBuf::from(digest),
        message: e.message,
    })
}

impl ContentStore {
    /// Opens (creating) the store under `root`, dropping unpack leftovers of a crash.
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        for d in ["blobs/sha256", "layers"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        let layers = store.layers_dir();
        for e in std::fs::read_dir(&layers).map_err(io_err(&layers))? {
            let e = e.map_err(io_err(&layers))?;
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                std::fs::remove_dir_all(e.path()).map_err(io_err(&e.path()))?;
            }
        }
        Ok(store)
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.blobs_dir().join(hex_of(digest)?))
    }

    pub fn partial_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .blobs_dir()
            .join(format!("{}.partial", hex_of(digest)?)))
    }

    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.layers_dir().join(hex_of(diff_id)?))
    }

    /// A fresh temp dir beside the layers, renamed into place once unpacked.
    pub fn layer_temp(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.layers_dir().join(format!(
            ".tmp-{}-{}-{n}",
            hex_of(diff_id)?,
            std::process::id()
        ));
        std::fs::create_dir(&p).map_err(io_err(&p))?;
        Ok(p)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub fn load_index(&self) -> Result<Index, ImageError> {
        let p = self.index_path();
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt {
                path: p,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    pub fn save_index(&self, index: &Index) -> Result<(), ImageError> {
        let p = self.index_path();
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| ImageError::Corrupt {
            path: p.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&p, &bytes)
    }

    /// Stores `bytes` as the blob `digest` (already verified by the caller).
    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        write_atomic(&self.blob_path(digest)?, bytes)
    }
}

/// Writes `path` through a synced temp file and a rename, then syncs the directory, so
/// readers see the old or the new content, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path)
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), ImageError> {
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}
