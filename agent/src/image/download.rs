//! Downloading one blob into the content store, verified and resumable: bytes land in
//! `<digest>.partial` as they arrive, a retry asks for `Range: bytes=N-` and keeps
//! hashing from the partial content (starting over when the server answers 200), and only
//! a blob whose size and digest match becomes `<digest>`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::ImageError;
use super::content::{ContentStore, io_err, sync_dir};
use super::reference::Reference;
use super::registry::{Endpoint, Registry};

/// A blob to fetch, as a descriptor names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub digest: &'a str,
    pub size: u64,
    /// `config` or `layer`, for errors.
    pub kind: &'a str,
}

/// Makes `want` a complete, verified blob in `store`, trying `endpoints` in order.
/// `progress` gets each chunk's length as it is written.
pub(crate) fn fetch_blob(
    reg: &Registry,
    store: &ContentStore,
    endpoints: &[Endpoint],
    r: &Reference,
    want: Wanted<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<PathBuf, ImageError> {
    let done = store.blob_path(want.digest)?;
    if done.exists() {
        progress(want.size);
        return Ok(done);
    }
    let mut last = None;
    for ep in endpoints {
        match fetch_from(reg, store, ep, r, want, progress) {
            Ok(()) => return Ok(done),
            Err(e) => {
                tracing::warn!(registry = %ep.base, error = %e, "blob download failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ImageError::NotFound {
        reference: r.to_string(),
        registry: "no registry endpoint".into(),
    }))
}

fn fetch_from(
    reg: &Registry,
    store: &ContentStore,
    ep: &Endpoint,
    r: &Reference,
    want: Wanted<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ImageError> {
    let what = format!("{} {}", want.kind, want.digest);
    let partial = store.partial_path(want.digest)?;
    let fetch_err = |message: String| ImageError::Fetch {
        reference: r.to_string(),
        registry: ep.base.clone(),
        what: what.clone(),
        message,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .map_err(io_err(&partial))?;
    let mut have = file.metadata().map_err(io_err(&partial))?.len();
    if have > want.size {
        file.set_len(0).map_err(io_err(&partial))?;
        have = 0;
    }
    // Hashing continues from what an earlier attempt already wrote.
    let mut hasher = Sha256::new();
    if have > 0 {
        let mut head = (&file).take(have);
        io::copy(&mut head, &mut HashSink(&mut hasher)).map_err(io_err(&partial))?;
        progress(have);
    }

    if have < want.size {
        let path = format!("/v2/{}/blobs/{}", r.repository, want.digest);
        let mut resp = reg.get(ep, r, &path, &[], (have > 0).then_some(have), &what)?;
        let resumed = resp.status == 206
            && resp
                .headers
                .get("content-range")
                .is_some_and(|c| c.starts_with(&format!("bytes {have}-")));
        if !resumed {
            // 200 (or a range we did not ask for): the body is the whole blob.
            if have > 0 {
                tracing::info!(
                    blob = want.digest,
                    "registry ignored the range, starting over"
                );
            }
            if resp.status == 416 || resp.status == 206 {
                resp = reg.get(ep, r, &path, &[], None, &what)?;
            }
            file.set_len(0).map_err(io_err(&partial))?;
            hasher = Sha256::new();
            have = 0;
        }
        file.seek(SeekFrom::Start(have)).map_err(io_err(&partial))?;
        let mut body = resp.body.into_reader();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(fetch_err(format!(
                        "interrupted after {have} of {} bytes (kept for resuming): {e}",
                        want.size
                    )));
                }
            };
            if have + n as u64 > want.size {
                drop(file);
                let _ = std::fs::remove_file(&partial);
                return Err(fetch_err(format!(
                    "registry sent more than the {} bytes the manifest gives",
                    want.size
                )));
            }
            file.write_all(&buf[..n]).map_err(io_err(&partial))?;
            hasher.update(&buf[..n]);
            have += n as u64;
            progress(n as u64);
        }
        if have < want.size {
            return Err(fetch_err(format!(
                "ended after {have} of {} bytes (kept for resuming)",
                want.size
            )));
        }
    }

    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != want.digest {
        drop(file);
        let _ = std::fs::remove_file(&partial);
        return Err(ImageError::DigestMismatch {
            reference: r.to_string(),
            what,
            expected: want.digest.to_string(),
            actual,
        });
    }
    file.sync_all().map_err(io_err(&partial))?;
    drop(file);
    let done = store.blob_path(want.digest)?;
    std::fs::rename(&partial, &done).map_err(io_err(&done))?;
    sync_dir(&done)
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a small stored blob (a config) into memory.
pub(crate) fn read_small(path: &PathBuf, limit: u64) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(io_err(path))?;
    if out.len() as u64 > limit {
        return Err(ImageError::Corrupt {
            path: path.clone(),
            message: format!("over {limit} bytes"),
        });
    }
    Ok(out)
}
