//! The image seam: what the agent asks of its local OCI image store (make an image
//! available, pulling it when the pull policy says so; free what no pod uses) and the
//! plain data it hands to the runtime. `main` picks the implementation.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// When to pull, as Kubernetes' `imagePullPolicy` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// An image ready to run: its layers unpacked on disk (bottom first, shared between
/// images that share them) and the parts of its config the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// The reference as the pod spec wrote it.
    pub reference: String,
    /// `sha256:...` of the manifest that was resolved.
    pub digest: String,
    /// Unpacked layer directories, bottom layer first: the lower dirs of an overlay.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// The runtime-relevant part of an OCI image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as the image says.
    pub user: Option<String>,
}

/// How far a pull has come, for pod status and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{reference}: not a valid image reference: {message}")]
    BadReference { reference: String, message: String },
    #[error("{reference}: not present and the pull policy is Never")]
    NotPresent { reference: String },
    #[error("{reference}: not found in {registry}")]
    NotFound { reference: String, registry: String },
    #[error("{reference}: {registry} refused access ({status})")]
    Unauthorized {
        reference: String,
        registry: String,
        status: u16,
    },
    #[error("{reference}: fetching {what} from {registry}: {message}")]
    Fetch {
        reference: String,
        registry: String,
        what: String,
        message: String,
    },
    #[error("{reference}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: unsupported {what}: {value}")]
    Unsupported {
        reference: String,
        what: &'static str,
        value: String,
    },
    #[error("{reference}: layer {digest}: {message}")]
    Unpack {
        reference: String,
        digest: String,
        message: String,
    },
    #[error("image store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image store {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// What a garbage collection freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub images: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// The local image store. Calls block (they do network and disk I/O); the agent calls
/// them from blocking tasks. Concurrent calls for the same image share one download.
pub trait ImageStore: Send + Sync + std::fmt::Debug {
    /// Makes `reference` available under `policy` and returns it unpacked. `progress`
    /// is called as bytes arrive.
    fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<LocalImage, ImageError>;
    /// Removes every image not in `in_use` (references as pods write them) and every
    /// layer and blob no remaining image needs.
    fn gc(&self, in_use: &BTreeSet<String>) -> Result<GcReport, ImageError>;
}

mod content;
mod download;
mod gc;
mod manifest;
pub mod reference;
mod registry;
mod store;
pub mod unpack;

pub use manifest::Platform;
pub use registry::{HubRegistry, RegistryConfig, SYSTEM_CA_BUNDLE, load_ca_file, system_roots};
pub use store::{OciImageStore, OciStoreConfig};
