//! `OciImageStore`: the agent's image store over OCI registries. It resolves a reference
//! under the pull policy, fetches what is missing (verified, resumable), unpacks each
//! layer once into a directory shared by every image that has it, and records an image
//! in the index only once all of it is on disk.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use oci_spec::image::{Descriptor, ImageConfiguration};

use super::content::{ContentStore, ImageRecord, io_err, sync_dir};
use super::download::{Wanted, fetch_blob, read_small};
use super::manifest::{Platform, Resolved, resolve};
use super::reference::Reference;
use super::registry::{Registry, RegistryConfig};
use super::unpack::{UnpackLimits, unpack_blob};
use super::{GcReport, ImageError, ImageStore, LocalImage, PullPolicy, PullProgress};

const MAX_CONFIG: u64 = 16 << 20;

/// Everything the store needs, handed in by `main` (or a test).
#[derive(Debug, Clone)]
pub struct OciStoreConfig {
    /// Directory holding blobs, layers and the index.
    pub root: PathBuf,
    pub registry: RegistryConfig,
    pub limits: UnpackLimits,
    /// Which entry of a multi-platform index to pull.
    pub platform: Platform,
    /// The registry host of references that name none (the hub's), instead of Docker Hub.
    pub default_registry: Option<String>,
}

impl OciStoreConfig {
    pub fn new(root: PathBuf) -> OciStoreConfig {
        OciStoreConfig {
            root,
            registry: RegistryConfig::default(),
            limits: UnpackLimits::default(),
            platform: Platform::host(),
            default_registry: None,
        }
    }
}

/// Mutexes by name, so work on one image, blob or layer is done once at a time.
#[derive(Debug, Default)]
struct KeyedLocks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl KeyedLocks {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, m| Arc::strong_count(m) > 1);
        map.entry(key.to_string()).or_default().clone()
    }
}

#[derive(Debug)]
pub struct OciImageStore {
    pub(crate) content: ContentStore,
    registry: Registry,
    limits: UnpackLimits,
    platform: Platform,
    default_registry: Option<String>,
    locks: KeyedLocks,
    /// Pulls hold it shared, garbage collection exclusively.
    pub(crate) gc_lock: RwLock<()>,
    /// Serialises read-modify-write of the index.
    pub(crate) index_lock: Mutex<()>,
}

fn bad_reference(reference: &str, e: super::reference::ReferenceError) -> ImageError {
    ImageError::BadReference {
        reference: reference.to_string(),
        message: e.message,
    }
}

/// Drops lower repeats of a layer (Docker's empty layer often appears several times):
/// overlayfs refuses a directory twice among the lower dirs, and everything in a lower
/// copy is shadowed by the same content higher up anyway.
fn keep_topmost(layers: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for l in layers.into_iter().rev() {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out.reverse();
    out
}

fn layer_media_ok(media: &str) -> bool {
    media.starts_with("application/vnd.oci.image.layer.")
        || media.starts_with("application/vnd.docker.image.rootfs.")
}

impl OciImageStore {
    pub fn open(config: OciStoreConfig) -> Result<OciImageStore, ImageError> {
        Ok(OciImageStore {
            content: ContentStore::open(&config.root)?,
            registry: Registry::new(config.registry),
            limits: config.limits,
            platform: config.platform,
            default_registry: config.default_registry,
            locks: KeyedLocks::default(),
            gc_lock: RwLock::new(()),
            index_lock: Mutex::new(()),
        })
    }

    pub(crate) fn parse(&self, reference: &str) -> Result<Reference, ImageError> {
        Reference::parse_in(reference, self.default_registry.as_deref())
            .map_err(|e| bad_reference(reference, e))
    }

    /// The image recorded for `key`, when every layer of it is still on disk.
    fn local(&self, key: &str, reference: &str) -> Result<Option<LocalImage>, ImageError> {
        let index = self.content.load_index()?;
        let Some(rec) = index.images.get(key) else {
            return Ok(None);
        };
        let mut layers = Vec::new();
        for l in &rec.layers {
            let p = self.content.layer_path(l)?;
            if !p.is_dir() {
                return Ok(None);
            }
            layers.push(p);
        }
        Ok(Some(LocalImage {
            reference: reference.to_string(),
            digest: rec.digest.clone(),
            layers: keep_topmost(layers),
            config: rec.config(),
        }))
    }

    fn pull(
        &self,
        r: &Reference,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<LocalImage, ImageError> {
        let endpoints = self.registry.endpoints(r)?;
        let mut resolved: Option<Resolved> = None;
        let mut last = None;
        for ep in &endpoints {
            match resolve(&self.registry, ep, r, &self.platform) {
                Ok(m) => {
                    resolved = Some(m);
                    break;
                }
                Err(e) => {
                    tracing::warn!(registry = %ep.base, error = %e, "manifest fetch failed");
                    last = Some(e);
                }
            }
        }
        let Some(m) = resolved else {
            return Err(last.unwrap_or_else(|| ImageError::NotFound {
                reference: r.to_string(),
                registry: r.registry.clone(),
            }));
        };
        let layers = m.manifest.layers();
        let config_desc = m.manifest.config();

        // Progress counts what still has to come over the network.
        let mut total = config_desc.size();
        for l in layers {
            total += l.size();
        }
        let mut done = 0u64;
        let mut last_report = 0u64;
        progress(PullProgress {
            done_bytes: 0,
            total_bytes: total,
        });
        let mut tick = |n: u64| {
            done = (done + n).min(total);
            if done - last_report >= 256 << 10 || done == total {
                last_report = done;
                progress(PullProgress {
                    done_bytes: done,
                    total_bytes: total,
                });
            }
        };

        let config_digest = config_desc.digest().to_string();
        let config_path = {
            let lock = self.locks.get(&format!("blob:{config_digest}"));
            let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
            fetch_blob(
                &self.registry,
                &self.content,
                &endpoints,
                r,
                Wanted {
                    digest: &config_digest,
                    size: config_desc.size(),
                    kind: "config",
                },
                &mut tick,
            )?
        };
        let config: ImageConfiguration =
            serde_json::from_slice(&read_small(&config_path, MAX_CONFIG)?).map_err(|e| {
                ImageError::Unsupported {
                    reference: r.to_string(),
                    what: "image config",
                    value: e.to_string(),
                }
            })?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(ImageError::Unsupported {
                reference: r.to_string(),
                what: "image",
                value: format!(
                    "manifest has {} layers, config {} diff ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut dirs = Vec::new();
        for (desc, diff_id) in layers.iter().zip(diff_ids) {
            dirs.push(self.layer(&endpoints, r, desc, diff_id, &mut tick)?);
        }

        self.content.put_blob(&m.digest, &m.bytes)?;
        let c = config.config().clone().unwrap_or_default();
        let record = ImageRecord {
            digest: m.digest.clone(),
            config_digest,
            layers: diff_ids.clone(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
        };
        {
            let _g = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut index = self.content.load_index()?;
            index.images.insert(r.to_string(), record.clone());
            self.content.save_index(&index)?;
        }
        Ok(LocalImage {
            reference: reference.to_string(),
            digest: m.digest,
            layers: keep_topmost(dirs),
            config: record.config(),
        })
    }

    /// Makes the layer `diff_id` an unpacked directory, fetching its blob only when no
    /// image already unpacked it.
    fn layer(
        &self,
        endpoints: &[super::registry::Endpoint],
        r: &Reference,
        desc: &Descriptor,
        diff_id: &str,
        tick: &mut dyn FnMut(u64),
    ) -> Result<PathBuf, ImageError> {
        let digest = desc.digest().to_string();
        let media = desc.media_type().to_string();
        if !layer_media_ok(&media) {
            return Err(ImageError::Unsupported {
                reference: r.to_string(),
                what: "layer media type",
                value: media,
            });
        }
        let dir = self.content.layer_path(diff_id)?;
        let lock = self.locks.get(&format!("layer:{diff_id}"));
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        if dir.is_dir() {
            tick(desc.size());
            return Ok(dir);
        }
        let blob = {
            let lock = self.locks.get(&format!("blob:{digest}"));
            let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
            fetch_blob(
                &self.registry,
                &self.content,
                endpoints,
                r,
                Wanted {
                    digest: &digest,
                    size: desc.size(),
                    kind: "layer",
                },
                tick,
            )?
        };
        let tmp = self.content.layer_temp(diff_id)?;
        let unpacked = File::open(&blob).map_err(io_err(&blob)).and_then(|f| {
            unpack_blob(std::io::BufReader::new(f), &tmp, &self.limits).map_err(|e| {
                ImageError::Unpack {
                    reference: r.to_string(),
                    digest: digest.clone(),
                    message: e.to_string(),
                }
            })
        });
        let report = match unpacked {
            Ok(report) => report,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if report.diff_id != diff_id {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_file(&blob);
            return Err(ImageError::DigestMismatch {
                reference: r.to_string(),
                what: format!("uncompressed layer {digest}"),
                expected: diff_id.to_string(),
                actual: report.diff_id,
            });
        }
        std::fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
        sync_dir(&dir)?;
        // The unpacked directory is what runs; the compressed copy would double the disk.
        std::fs::remove_file(&blob).map_err(io_err(&blob))?;
        tracing::info!(
            layer = diff_id,
            entries = report.entries,
            bytes = report.bytes,
            skipped_devices = report.skipped_devices,
            "layer unpacked"
        );
        Ok(dir)
    }
}

impl ImageStore for OciImageStore {
    fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        progress: &(dyn Fn(PullProgress) + Sync),
    ) -> Result<LocalImage, ImageError> {
        let r = self.parse(reference)?;
        let key = r.to_string();
        let _gc = self.gc_lock.read().unwrap_or_else(|p| p.into_inner());
        let lock = self.locks.get(&format!("image:{key}"));
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        match policy {
            PullPolicy::Never => {
                self.local(&key, reference)?
                    .ok_or_else(|| ImageError::NotPresent {
                        reference: reference.to_string(),
                    })
            }
            PullPolicy::IfNotPresent => match self.local(&key, reference)? {
                Some(img) => Ok(img),
                None => self.pull(&r, reference, progress),
            },
            PullPolicy::Always => self.pull(&r, reference, progress),
        }
    }

    fn gc(&self, in_use: &BTreeSet<String>) -> Result<GcReport, ImageError> {
        self.collect(in_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_layers_keep_their_topmost_place() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            keep_topmost(vec![p("e"), p("a"), p("e"), p("b"), p("e")]),
            vec![p("a"), p("b"), p("e")]
        );
        assert_eq!(keep_topmost(vec![p("a"), p("b")]), vec![p("a"), p("b")]);
    }
}
