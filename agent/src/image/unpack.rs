//! Unpacking one layer tarball into its own directory, treating the archive as hostile.
//!
//! Every path is resolved component by component from a directory descriptor of the
//! layer root with `O_NOFOLLOW`, so the kernel never follows a symlink the archive
//! planted; metadata is set through descriptors (`fchmod`, `fchown`), never through a
//! path that could be swapped for a symlink. Entries naming `..`, hard links leaving the
//! layer, and whiteout names that are not plain names are refused; device nodes and
//! fifos are skipped (the runtime gives containers their `/dev`). Whiteouts become the
//! overlayfs form (a 0/0 character device, the `trusted.overlay.opaque` xattr), since
//! each layer is its own overlay lower directory and a whiteout only hides lower layers.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstatat, futimens, mkdirat, mknodat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use sha2::{Digest, Sha256};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Bounds against tar bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Largest single file.
    pub max_entry_bytes: u64,
    /// Largest uncompressed tar stream (headers included).
    pub max_layer_bytes: u64,
    /// Most entries in one layer.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entry_bytes: 4 << 30,
            max_layer_bytes: 16 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What one unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// `sha256:<hex>` of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes and fifos left out.
    pub skipped_devices: u64,
    /// Whiteouts turned into overlayfs form (files and opaque dirs).
    pub whiteouts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {path:?}: {reason}")]
    Refused { path: String, reason: &'static str },
    #[error("entry {path:?}: {op}: {source}")]
    Os {
        path: String,
        op: &'static str,
        source: Errno,
    },
    #[error("entry {path:?}: {size} bytes is over the {limit} byte limit per file")]
    EntryTooLarge { path: String, size: u64, limit: u64 },
    #[error("uncompressed layer is over the {limit} byte limit")]
    LayerTooLarge { limit: u64 },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("reading the layer archive: {0}")]
    Archive(#[source] io::Error),
    #[error("entry {path:?}: writing its content: {source}")]
    Write { path: String, source: io::Error },
    #[error("opening layer root {path}: {source}")]
    Root { path: PathBuf, source: Errno },
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the magic bytes at the start of a blob; the media type can lie or be vague.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Unpacks a possibly compressed layer blob (compression sniffed from its first bytes)
/// into the existing empty directory `root`.
pub fn unpack_blob(
    mut blob: impl Read,
    root: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackReport, UnpackError> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match blob.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UnpackError::Archive(e)),
        }
    }
    let stream = io::Cursor::new(head[..got].to_vec()).chain(blob);
    match Compression::sniff(&head[..got]) {
        Compression::None => unpack_tar(stream, root, limits),
        Compression::Gzip => unpack_tar(flate2::read::MultiGzDecoder::new(stream), root, limits),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(stream).map_err(UnpackError::Archive)?;
            unpack_tar(decoder, root, limits)
        }
    }
}

/// Hashes the uncompressed stream (the diff id) and stops it past the layer limit, which
/// also bounds what the tar reader buffers for long names and PAX headers.
struct Metered<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
    over: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.over.set(true);
            return Err(io::Error::other(format!(
                "uncompressed layer is over the {} byte limit",
                self.limit
            )));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks an uncompressed layer tar into the existing directory `root`.
#[doc(hidden)]
pub fn unpack_tar(
    stream: impl Read,
    root: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackReport, UnpackError> {
    let root_fd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| UnpackError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let over = std::rc::Rc::new(std::cell::Cell::new(false));
    let metered = Metered {
        inner: stream,
        hasher: Sha256::new(),
        read: 0,
        limit: limits.max_layer_bytes,
        over: over.clone(),
    };
    // Whatever error the limit surfaced as (archive, file write), report the limit.
    unpack_metered(metered, root_fd, root, limits).map_err(|e| {
        if over.get() {
            UnpackError::LayerTooLarge {
                limit: limits.max_layer_bytes,
            }
        } else {
            e
        }
    })
}

fn unpack_metered<R: Read>(
    metered: Metered<R>,
    root_fd: OwnedFd,
    root: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackReport, UnpackError> {
    let mut archive = tar::Archive::new(metered);
    let mut report = UnpackReport::default();
    let mut unpacker = Unpacker {
        root,
        root_fd: &root_fd,
        limits,
        report: &mut report,
    };
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let entry = entry.map_err(UnpackError::Archive)?;
        unpacker.report.entries += 1;
        if unpacker.report.entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        unpacker.entry(entry)?;
    }
    // The diff id covers the whole stream, end-of-archive blocks and padding included.
    let mut metered = archive.into_inner();
    io::copy(&mut metered, &mut io::sink()).map_err(UnpackError::Archive)?;
    report.diff_id = format!("sha256:{}", hex::encode(metered.hasher.finalize()));
    Ok(report)
}

struct Unpacker<'a> {
    root: &'a Path,
    root_fd: &'a OwnedFd,
    limits: &'a UnpackLimits,
    report: &'a mut UnpackReport,
}

/// An archive path split into checked components: no empty, `.` or `..` parts.
struct CleanPath<'p> {
    shown: String,
    parts: Vec<&'p [u8]>,
}

fn clean_path(raw: &[u8]) -> Result<CleanPath<'_>, UnpackError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(UnpackError::Refused {
            path: shown,
            reason: "name contains a NUL byte",
        });
    }
    let mut parts = Vec::new();
    // A leading `/` is dropped: absolute names are taken relative to the layer root.
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: "name contains `..`",
                });
            }
            p => parts.push(p),
        }
    }
    Ok(CleanPath { shown, parts })
}

fn os<'a>(path: &'a str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |source| UnpackError::Os {
        path: path.to_string(),
        op,
        source,
    }
}

fn name(part: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(part))
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = entry.path_bytes().into_owned();
        let path = clean_path(&raw_path)?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header
            .mode()
            .map_err(|_| refused(&path.shown, "unreadable mode field"))?
            & 0o7777;
        let uid = id_field(header.uid(), &path.shown, "unreadable uid field")?;
        let gid = id_field(header.gid(), &path.shown, "unreadable gid field")?;
        let mtime = header.mtime().unwrap_or(0);
        let size = entry.size();

        // Every component but the last must be a plain name, not a whiteout.
        let Some((last, parents)) = path.parts.split_last() else {
            // The archive's own root entry (`./`): its owner and mode are the image's `/`.
            if kind.is_dir() {
                self.set_owner_mode(self.root_fd, uid, gid, mode, &path.shown)?;
            }
            return Ok(());
        };
        if parents
            .iter()
            .any(|p| p.starts_with(WHITEOUT_PREFIX.as_bytes()))
        {
            return Err(refused(&path.shown, "whiteout name used as a directory"));
        }

        if last.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&path, parents, last);
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if size > self.limits.max_entry_bytes {
                    return Err(UnpackError::EntryTooLarge {
                        path: path.shown,
                        size,
                        limit: self.limits.max_entry_bytes,
                    });
                }
                let parent = self.open_dir(parents, true, &path.shown)?;
                self.clear(&parent, parents, last, false, &path.shown)?;
                let fd = openat(
                    &parent,
                    name(last),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(os(&path.shown, "create file"))?;
                let mut file = File::from(fd);
                let written = io::copy(&mut (&mut entry).take(size), &mut file).map_err(|e| {
                    UnpackError::Write {
                        path: path.shown.clone(),
                        source: e,
                    }
                })?;
                if written != size {
                    return Err(refused(&path.shown, "archive ended inside the file"));
                }
                self.report.bytes += written;
                let t = TimeSpec::new(mtime as i64, 0);
                futimens(&file, &t, &t).map_err(os(&path.shown, "set mtime"))?;
                // Owner first: chown clears set-id bits, the mode put back after is exact.
                self.set_owner_mode(&file, uid, gid, mode, &path.shown)
            }
            tar::EntryType::Directory => {
                let parent = self.open_dir(parents, true, &path.shown)?;
                self.clear(&parent, parents, last, true, &path.shown)?;
                match mkdirat(&parent, name(last), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(os(&path.shown, "mkdir")(e)),
                }
                let dir = openat(&parent, name(last), DIR_FLAGS, Mode::empty())
                    .map_err(os(&path.shown, "open directory"))?;
                self.set_owner_mode(&dir, uid, gid, mode, &path.shown)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&path.shown, "symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(refused(&path.shown, "symlink target is empty or has NUL"));
                }
                let parent = self.open_dir(parents, true, &path.shown)?;
                self.clear(&parent, parents, last, false, &path.shown)?;
                // The target is stored as written; nothing here ever follows it.
                symlinkat(OsStr::from_bytes(&target), &parent, name(last))
                    .map_err(os(&path.shown, "symlink"))?;
                fchownat(
                    &parent,
                    name(last),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(os(&path.shown, "chown symlink"))
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&path.shown, "hard link without a target"))?
                    .into_owned();
                let target = clean_path(&target_raw)?;
                let Some((tlast, tparents)) = target.parts.split_last() else {
                    return Err(refused(&path.shown, "hard link to the layer root"));
                };
                // The target must be something this layer already unpacked: resolving
                // it without creating anything keeps it inside the root.
                let tparent = self
                    .open_dir(tparents, false, &path.shown)
                    .map_err(|_| refused(&path.shown, "hard link target is not in this layer"))?;
                let st = fstatat(&tparent, name(tlast), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|_| refused(&path.shown, "hard link target is not in this layer"))?;
                let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
                if fmt != SFlag::S_IFREG && fmt != SFlag::S_IFLNK {
                    return Err(refused(
                        &path.shown,
                        "hard link target is not a file or symlink",
                    ));
                }
                if target.parts == path.parts {
                    return Err(refused(&path.shown, "hard link to itself"));
                }
                let parent = self.open_dir(parents, true, &path.shown)?;
                self.clear(&parent, parents, last, false, &path.shown)?;
                linkat(&tparent, name(tlast), &parent, name(last), AtFlags::empty())
                    .map_err(os(&path.shown, "hard link"))
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::warn!(entry = %path.shown, "layer device node or fifo skipped");
                self.report.skipped_devices += 1;
                Ok(())
            }
            _ => Err(refused(&path.shown, "unsupported tar entry type")),
        }
    }

    fn whiteout(
        &mut self,
        path: &CleanPath<'_>,
        parents: &[&[u8]],
        last: &[u8],
    ) -> Result<(), UnpackError> {
        let parent = self.open_dir(parents, true, &path.shown)?;
        if last == OPAQUE_MARKER.as_bytes() {
            // Opaque hides the lower layers' content of this directory only; whatever this
            // layer itself puts in it, before or after the marker, stays.
            let dir = File::from(parent);
            xattr::FileExt::set_xattr(&dir, OPAQUE_XATTR, b"y").map_err(|e| {
                UnpackError::Write {
                    path: path.shown.clone(),
                    source: e,
                }
            })?;
            self.report.whiteouts += 1;
            return Ok(());
        }
        let hidden = &last[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused(&path.shown, "whiteout names no entry"));
        }
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are aufs bookkeeping, meaningless here.
            return Err(refused(&path.shown, "unknown whiteout meta entry"));
        }
        match fstatat(&parent, name(hidden), AtFlags::AT_SYMLINK_NOFOLLOW) {
            // A whiteout hides lower layers only, never an entry of its own layer.
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => {
                mknodat(&parent, name(hidden), SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(os(&path.shown, "create whiteout device"))?;
                self.report.whiteouts += 1;
                Ok(())
            }
            Err(e) => Err(os(&path.shown, "stat whiteout target")(e)),
        }
    }

    /// Opens the directory `parts` below the root without following any symlink,
    /// creating missing directories (mode 0755, root-owned) when `create` is set.
    fn open_dir(&self, parts: &[&[u8]], create: bool, shown: &str) -> Result<OwnedFd, UnpackError> {
        let mut cur: Option<OwnedFd> = None;
        for part in parts {
            let dir = cur.as_ref().unwrap_or(self.root_fd);
            let opened = match openat(dir, name(part), DIR_FLAGS, Mode::empty()) {
                Err(Errno::ENOENT) if create => {
                    match mkdirat(dir, name(part), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(os(shown, "mkdir parent")(e)),
                    }
                    openat(dir, name(part), DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            match opened {
                Ok(fd) => cur = Some(fd),
                Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                    return Err(refused(
                        shown,
                        "path goes through a symlink or a non-directory",
                    ));
                }
                Err(e) => return Err(os(shown, "open parent directory")(e)),
            }
        }
        match cur {
            Some(fd) => Ok(fd),
            None => nix::unistd::dup(self.root_fd).map_err(os(shown, "dup root")),
        }
    }

    /// Makes room for a new entry `last` in `parent`: a later entry replaces an earlier
    /// one of the same name, except that an existing directory stays for a directory.
    fn clear(
        &self,
        parent: &OwnedFd,
        parents: &[&[u8]],
        last: &[u8],
        keep_dir: bool,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let st = match fstatat(parent, name(last), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(os(shown, "stat existing entry")(e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(());
        }
        if is_dir {
            // Every component of this path was opened with O_NOFOLLOW just before, and
            // remove_dir_all never follows symlinks inside what it removes.
            let mut full = self.root.to_path_buf();
            for p in parents {
                full.push(name(p));
            }
            full.push(name(last));
            std::fs::remove_dir_all(&full).map_err(|e| UnpackError::Write {
                path: shown.to_string(),
                source: e,
            })
        } else {
            unlinkat(parent, name(last), UnlinkatFlags::NoRemoveDir)
                .map_err(os(shown, "remove replaced entry"))
        }
    }

    fn set_owner_mode(
        &self,
        fd: impl std::os::fd::AsFd + Copy,
        uid: u32,
        gid: u32,
        mode: u32,
        shown: &str,
    ) -> Result<(), UnpackError> {
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(os(shown, "chown"))?;
        fchmod(fd, Mode::from_bits_truncate(mode & 0o7777)).map_err(os(shown, "chmod"))
    }
}

fn refused(path: &str, reason: &'static str) -> UnpackError {
    UnpackError::Refused {
        path: path.to_string(),
        reason,
    }
}

fn id_field(v: io::Result<u64>, path: &str, reason: &'static str) -> Result<u32, UnpackError> {
    v.ok()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| refused(path, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_strips_root_and_refuses_dotdot() {
        let p = clean_path(b"/etc//./passwd").unwrap();
        assert_eq!(p.parts, vec![&b"etc"[..], &b"passwd"[..]]);
        assert!(clean_path(b"a/../../b").is_err());
        assert!(clean_path(b"..").is_err());
        assert!(clean_path(b"./").unwrap().parts.is_empty());
    }

    #[test]
    fn sniff_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }
}
