//! The hub's OCI image registry: a content-addressed blob store with a SQLite index of
//! repositories and tags, served read-only over the OCI distribution API under `/v2/`
//! (so skopeo, docker and the agents pull from it), plus the admin endpoints that import
//! image archives and list and remove images (`/skiff/v1/images`).
//!
//! Layout on disk, inside the data directory, created by the first import:
//! `registry/blobs/sha256/<hex>` (every manifest, config and layer, once each),
//! `registry/staging/` (imports in progress) and `registry.db` (the index).
//!
//! Pulls are authenticated by [`PullAuth`]: the admin token (bearer, or Basic with user
//! `admin`), a joined node's MQTT login (Basic `<node>:<password>`), or nobody when
//! `--registry-anonymous-pull` is set. Imports, listing and removal take the admin
//! bearer token only.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod admin;
mod auth;
mod blobs;
mod digest;
mod distribution;
mod import;
mod index;
mod names;
mod range;

pub use auth::{ADMIN_USER, Identity, PullAuth};
pub use blobs::BlobError;
pub use digest::Digest;
pub use import::{ImportError, TagOverride};
pub use index::{ImageSummary, IndexError};
pub use names::{ImageRef, RefError, valid_name, valid_tag};

use index::{Index, ManifestRecord, NewTag};

/// The index database inside the data directory.
pub const REGISTRY_DB: &str = "registry.db";
/// The blob directory inside the data directory.
pub const REGISTRY_DIR: &str = "registry";
/// Default largest import: the archive as uploaded, and again everything unpacked
/// from it.
pub const DEFAULT_IMPORT_LIMIT: u64 = 4 << 30;

/// Settings of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Largest import archive in bytes (compressed as sent, and uncompressed).
    pub import_limit: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            import_limit: DEFAULT_IMPORT_LIMIT,
        }
    }
}

/// Why the registry could not open or complete an operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// One image an import tagged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    pub name: String,
    pub tag: String,
    pub digest: String,
    /// Bytes of the image's manifests, config and layers.
    pub size: u64,
}

/// What removing a tag did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub name: String,
    pub tag: String,
    pub digest: String,
    /// Blobs no manifest referenced anymore, deleted.
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// The registry: blobs, index and the settings; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blobs: blobs::BlobStore,
    index: Index,
    options: RegistryOptions,
    /// Held while blobs are committed and indexed, and while unreferenced blobs are
    /// collected, so a collection never deletes a blob an import is about to index.
    commit: Mutex<()>,
}

impl Registry {
    /// Opens the registry in `data_dir` (its files appear with the first import),
    /// clearing staging left by a crash and removing blobs a crash left unindexed.
    pub fn open(data_dir: &Path, options: RegistryOptions) -> Result<Registry, RegistryError> {
        let blobs = blobs::BlobStore::open(&data_dir.join(REGISTRY_DIR))?;
        let index = Index::open(&data_dir.join(REGISTRY_DB))?;
        let registry = Registry {
            inner: Arc::new(Inner {
                blobs,
                index,
                options,
                commit: Mutex::new(()),
            }),
        };
        registry.collect_garbage()?;
        Ok(registry)
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blobs.path(digest)
    }

    /// Every blob file present.
    pub fn blobs_present(&self) -> Result<Vec<Digest>, RegistryError> {
        Ok(self.inner.blobs.present()?)
    }

    /// Imports an archive (OCI layout or docker archive, plain or gzip). Blocks: call it
    /// off the async workers. Either every image of the archive is stored and tagged,
    /// or nothing is.
    pub fn import(
        &self,
        archive: impl Read,
        tag: Option<&TagOverride>,
    ) -> Result<Vec<Imported>, ImportError> {
        let inner = &self.inner;
        let mut staging = inner.blobs.staging_dir().map_err(ImportError::Stage)?;
        let plan = import::read_archive(archive, &mut staging, inner.options.import_limit, tag)?;
        let mut manifests: Vec<(String, ManifestRecord)> = Vec::new();
        let mut tags = Vec::new();
        let mut out = Vec::new();
        for img in &plan.images {
            let repos: HashSet<&str> = img.refs.iter().map(|r| r.name.as_str()).collect();
            for repo in repos {
                for m in &img.manifests {
                    manifests.push((repo.to_string(), m.clone()));
                }
            }
            for r in &img.refs {
                tags.push(NewTag {
                    repo: r.name.clone(),
                    tag: r.tag.clone(),
                    digest: img.digest.clone(),
                });
                out.push(Imported {
                    name: r.name.clone(),
                    tag: r.tag.clone(),
                    digest: img.digest.to_string(),
                    size: img.size,
                });
            }
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let _guard = inner.commit.lock().unwrap_or_else(|p| p.into_inner());
        let staged: Vec<&blobs::Staged> = plan.blobs.iter().collect();
        inner.blobs.commit(&staged).map_err(ImportError::Stage)?;
        inner.index.add(&manifests, &tags, &now)?;
        // A tag moved to a new image may have left the old one's blobs unused.
        if let Err(e) = self.collect_locked() {
            tracing::warn!(error = %e, "collecting unused blobs after an import failed");
        }
        for i in &out {
            tracing::info!(image = %format!("{}:{}", i.name, i.tag), digest = %i.digest, size = i.size, "image imported");
        }
        Ok(out)
    }

    /// Every tagged image.
    pub fn list(&self) -> Result<Vec<ImageSummary>, RegistryError> {
        Ok(self.inner.index.list()?)
    }

    /// Removes a tag, the manifests it alone reached, and the blobs no manifest
    /// references anymore. `None` when there is no such tag.
    pub fn remove(&self, image: &ImageRef) -> Result<Option<Removed>, RegistryError> {
        let _guard = self.inner.commit.lock().unwrap_or_else(|p| p.into_inner());
        let Some(digest) = self.inner.index.remove_tag(&image.name, &image.tag)? else {
            return Ok(None);
        };
        let (blobs_removed, bytes_freed) = self.collect_locked()?;
        tracing::info!(%image, %digest, blobs_removed, bytes_freed, "image removed");
        Ok(Some(Removed {
            name: image.name.clone(),
            tag: image.tag.clone(),
            digest: digest.to_string(),
            blobs_removed,
            bytes_freed,
        }))
    }

    /// Deletes blobs no manifest references.
    pub fn collect_garbage(&self) -> Result<(usize, u64), RegistryError> {
        let _guard = self.inner.commit.lock().unwrap_or_else(|p| p.into_inner());
        self.collect_locked()
    }

    fn collect_locked(&self) -> Result<(usize, u64), RegistryError> {
        let keep = self.inner.index.referenced()?;
        Ok(self.inner.blobs.collect(&keep)?)
    }

    /// The axum routes: `/v2/...` (pull, authenticated by `auth`) and
    /// `/skiff/v1/images...` (admin).
    pub fn routes(&self, auth: PullAuth) -> axum::Router {
        let state = Arc::new(Served {
            registry: self.clone(),
            auth,
        });
        distribution::routes(state.clone()).merge(admin::routes(state))
    }
}

/// What the HTTP handlers share.
#[derive(Debug)]
struct Served {
    registry: Registry,
    auth: PullAuth,
}
