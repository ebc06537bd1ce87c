//! Garbage collection: drop images no pod uses, then every layer directory and blob no
//! remaining image needs. Partial downloads stay: they are what a later pull resumes.

use std::collections::BTreeSet;
use std::path::Path;

use super::content::io_err;
use super::store::OciImageStore;
use super::{GcReport, ImageError};

/// Bytes of the regular files under `p` (not following symlinks).
fn disk_bytes(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if md.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| disk_bytes(&e.path())).sum())
            .unwrap_or(0)
    } else if md.is_file() {
        md.len()
    } else {
        0
    }
}

impl OciImageStore {
    pub(crate) fn collect(&self, in_use: &BTreeSet<String>) -> Result<GcReport, ImageError> {
        // Exclusive: no pull is between fetching a layer and recording its image.
        let _gc = self.gc_lock.write().unwrap_or_else(|p| p.into_inner());
        let _ix = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        // References as pods write them; one that does not parse names no stored image.
        let keep: BTreeSet<String> = in_use
            .iter()
            .filter_map(|r| self.parse(r).ok())
            .map(|r| r.to_string())
            .collect();
        let mut report = GcReport::default();
        let mut index = self.content.load_index()?;
        let before = index.images.len();
        index.images.retain(|k, _| keep.contains(k));
        report.images = before - index.images.len();
        if report.images > 0 {
            self.content.save_index(&index)?;
        }

        let mut layers_needed = BTreeSet::new();
        let mut blobs_needed = BTreeSet::new();
        for rec in index.images.values() {
            for l in &rec.layers {
                layers_needed.insert(l.trim_start_matches("sha256:").to_string());
            }
            blobs_needed.insert(rec.digest.trim_start_matches("sha256:").to_string());
            blobs_needed.insert(rec.config_digest.trim_start_matches("sha256:").to_string());
        }

        let layers = self.content.layers_dir();
        for e in std::fs::read_dir(&layers).map_err(io_err(&layers))? {
            let e = e.map_err(io_err(&layers))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if layers_needed.contains(&name) {
                continue;
            }
            let p = e.path();
            report.bytes += disk_bytes(&p);
            std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            report.layers += 1;
        }
        let blobs = self.content.blobs_dir();
        for e in std::fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let e = e.map_err(io_err(&blobs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if blobs_needed.contains(&name) || name.ends_with(".partial") {
                continue;
            }
            let p = e.path();
            report.bytes += disk_bytes(&p);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
        Ok(report)
    }
}
