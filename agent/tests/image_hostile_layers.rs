//! Crafted layer tarballs, one per attack class, unpacked next to canary files: whatever
//! the unpacker does with a hostile entry (refuse the layer or skip the entry), nothing
//! outside the layer root changes or appears. Needs root (ownership, whiteout devices,
//! trusted xattrs) and fails loudly without it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use skiff_agent::image::unpack::{
    UnpackError, UnpackLimits, UnpackReport, unpack_blob, unpack_tar,
};

/// One raw tar entry: the name and link bytes go into the header untouched, so names the
/// tar crate's builder would refuse (`..`, absolute, garbage) can be written.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    mode: u32,
    link: &'a [u8],
    data: &'a [u8],
    uid: u64,
    gid: u64,
    device: Option<(u32, u32)>,
}

fn file<'a>(name: &'a [u8], data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        mode: 0o644,
        link: b"",
        data,
        uid: 0,
        gid: 0,
        device: None,
    }
}

fn dir(name: &[u8], mode: u32) -> Raw<'_> {
    Raw {
        kind: tar::EntryType::Directory,
        mode,
        ..file(name, b"")
    }
}

fn link<'a>(name: &'a [u8], kind: tar::EntryType, target: &'a [u8]) -> Raw<'a> {
    Raw {
        kind,
        mode: 0o777,
        link: target,
        ..file(name, b"")
    }
}

fn append(out: &mut Vec<u8>, e: &Raw<'_>) {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name = [0; 100];
        g.name[..e.name.len()].copy_from_slice(e.name);
        g.linkname[..e.link.len()].copy_from_slice(e.link);
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(1_700_000_000);
    h.set_size(e.data.len() as u64);
    if let Some((major, minor)) = e.device {
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(e.data);
    let pad = (512 - e.data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn tarball(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append(&mut out, e);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A layer root beside an `outside` directory holding canaries.
struct Scene {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

const CANARY: &[u8] = b"canary: must never change\n";

fn scene() -> Scene {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the hostile layer corpus needs root (ownership, device nodes, trusted xattrs)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("canary"), CANARY).unwrap();
    std::fs::set_permissions(
        outside.join("canary"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::write(outside.join("dir/inner"), CANARY).unwrap();
    let before = snapshot_outside(&base, &root);
    Scene {
        _tmp: tmp,
        base,
        root,
        outside,
        before,
    }
}

/// Everything under `base` but not under `root`: path → type, mode, links, content.
fn snapshot_outside(base: &Path, root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let content = if md.is_file() {
            hex::encode(std::fs::read(&p).unwrap())
        } else if md.file_type().is_symlink() {
            std::fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.insert(
            p.clone(),
            format!(
                "{:o} nlink={} uid={} {}",
                md.mode(),
                md.nlink(),
                md.uid(),
                content
            ),
        );
        if md.is_dir() && p != root {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.remove(root);
    out
}

impl Scene {
    fn unpack(&self, tar: &[u8]) -> Result<UnpackReport, UnpackError> {
        self.unpack_with(tar, &UnpackLimits::default())
    }

    fn unpack_with(&self, tar: &[u8], limits: &UnpackLimits) -> Result<UnpackReport, UnpackError> {
        let r = unpack_blob(tar, &self.root, limits);
        self.assert_outside_untouched();
        r
    }

    fn assert_outside_untouched(&self) {
        let after = snapshot_outside(&self.base, &self.root);
        assert_eq!(
            self.before, after,
            "something outside the layer root changed"
        );
    }

    fn canary_abs(&self) -> Vec<u8> {
        self.outside
            .join("canary")
            .as_os_str()
            .as_encoded_bytes()
            .to_vec()
    }
}

fn refused(r: Result<UnpackReport, UnpackError>, reason_part: &str) {
    match r {
        Err(UnpackError::Refused { reason, .. }) => assert!(
            reason.contains(reason_part),
            "refused for {reason:?}, expected {reason_part:?}"
        ),
        other => panic!("expected a refusal ({reason_part}), got {other:?}"),
    }
}

#[test]
fn absolute_paths_stay_inside_the_root() {
    let s = scene();
    let canary = s.canary_abs();
    let r = s
        .unpack(&tarball(&[
            file(b"/abs.txt", b"a"),
            file(&canary, b"pwned"),
        ]))
        .unwrap();
    assert_eq!(r.entries, 2);
    assert_eq!(std::fs::read(s.root.join("abs.txt")).unwrap(), b"a");
    let inside = s
        .root
        .join(s.outside.join("canary").strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside).unwrap(), b"pwned");
}

#[test]
fn dotdot_is_refused() {
    let s = scene();
    refused(
        s.unpack(&tarball(&[file(b"../outside/canary", b"pwned")])),
        "`..`",
    );
    refused(
        s.unpack(&tarball(&[file(b"a/b/../../../outside/canary", b"pwned")])),
        "`..`",
    );
    refused(
        s.unpack(&tarball(&[link(
            b"l",
            tar::EntryType::Link,
            b"../outside/canary",
        )])),
        "`..`",
    );
}

#[test]
fn dotdot_in_a_gnu_long_name_is_refused() {
    let s = scene();
    let long = b"../../../../outside/canary".to_vec();
    let mut out = Vec::new();
    append(
        &mut out,
        &Raw {
            kind: tar::EntryType::GNULongName,
            data: &long,
            ..file(b"././@LongLink", b"")
        },
    );
    append(&mut out, &file(b"short", b"pwned"));
    out.extend(std::iter::repeat_n(0u8, 1024));
    refused(s.unpack(&out), "`..`");
}

#[test]
fn symlink_then_write_is_refused() {
    let s = scene();
    let outside = s.outside.as_os_str().as_encoded_bytes().to_vec();
    refused(
        s.unpack(&tarball(&[
            link(b"esc", tar::EntryType::Symlink, &outside),
            file(b"esc/canary", b"pwned"),
        ])),
        "symlink",
    );
    refused(
        s.unpack(&tarball(&[
            link(b"rel", tar::EntryType::Symlink, b"../outside"),
            file(b"rel/canary", b"pwned"),
        ])),
        "symlink",
    );
    // Whiteouts through a symlinked directory: no device beside the canary, no opaque
    // xattr on the outside directory.
    for wh in [&b"w/.wh.canary"[..], b"w/.wh..wh..opq", b"w/dir/.wh.inner"] {
        refused(
            s.unpack(&tarball(&[
                link(b"w", tar::EntryType::Symlink, &outside),
                file(wh, b""),
            ])),
            "symlink",
        );
    }
    assert_eq!(
        xattr::get(&s.outside, "trusted.overlay.opaque").unwrap(),
        None
    );
}

#[test]
fn symlink_then_chmod_replaces_the_link_not_its_target() {
    let s = scene();
    let canary = s.canary_abs();
    let outside = s.outside.as_os_str().as_encoded_bytes().to_vec();
    let r = s
        .unpack(&tarball(&[
            link(b"f", tar::EntryType::Symlink, &canary),
            Raw {
                mode: 0o4777,
                ..file(b"f", b"x")
            },
            link(b"d", tar::EntryType::Symlink, &outside),
            dir(b"d", 0o777),
        ]))
        .unwrap();
    assert_eq!(r.entries, 4);
    let f = std::fs::symlink_metadata(s.root.join("f")).unwrap();
    assert!(f.is_file());
    assert_eq!(f.mode() & 0o7777, 0o4777);
    let d = std::fs::symlink_metadata(s.root.join("d")).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o7777, 0o777);
}

#[test]
fn mkdir_through_a_symlinked_dir_is_refused() {
    let s = scene();
    let outside = s.outside.as_os_str().as_encoded_bytes().to_vec();
    refused(
        s.unpack(&tarball(&[
            link(b"d", tar::EntryType::Symlink, &outside),
            dir(b"d/newdir", 0o755),
        ])),
        "symlink",
    );
    refused(
        s.unpack(&tarball(&[
            link(b"e", tar::EntryType::Symlink, &outside),
            Raw {
                kind: tar::EntryType::Symlink,
                link: b"/etc/passwd",
                ..file(b"e/dir/evil", b"")
            },
        ])),
        "symlink",
    );
}

#[test]
fn hard_links_must_stay_in_the_layer() {
    let s = scene();
    let canary = s.canary_abs();
    refused(
        s.unpack(&tarball(&[link(
            b"pw",
            tar::EntryType::Link,
            b"/etc/passwd",
        )])),
        "not in this layer",
    );
    refused(
        s.unpack(&tarball(&[link(b"c", tar::EntryType::Link, &canary)])),
        "not in this layer",
    );
    let outside = s.outside.as_os_str().as_encoded_bytes().to_vec();
    refused(
        s.unpack(&tarball(&[
            link(b"sd", tar::EntryType::Symlink, &outside),
            link(b"h", tar::EntryType::Link, b"sd/canary"),
        ])),
        "not in this layer",
    );
    // A hard link to a symlink pointing outside links the symlink, not the canary.
    let r = s
        .unpack(&tarball(&[
            link(b"s", tar::EntryType::Symlink, &canary),
            link(b"h2", tar::EntryType::Link, b"s"),
            file(b"real", b"r"),
            link(b"h3", tar::EntryType::Link, b"/real"),
        ]))
        .unwrap();
    assert_eq!(r.entries, 4);
    assert!(
        std::fs::symlink_metadata(s.root.join("h2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::metadata(s.root.join("real")).unwrap().nlink(), 2);
}

#[test]
fn device_nodes_and_fifos_are_skipped() {
    let s = scene();
    let dev = |name: &'static [u8], kind, device| Raw {
        kind,
        device: Some(device),
        ..file(name, b"")
    };
    let r = s
        .unpack(&tarball(&[
            dev(b"dev/mem", tar::EntryType::Char, (1, 1)),
            dev(b"dev/sda", tar::EntryType::Block, (8, 0)),
            dev(b"fifo", tar::EntryType::Fifo, (0, 0)),
            file(b"ok", b"fine"),
        ]))
        .unwrap();
    assert_eq!(r.skipped_devices, 3);
    assert!(!s.root.join("dev/mem").exists());
    assert!(!s.root.join("dev/sda").exists());
    assert!(std::fs::symlink_metadata(s.root.join("fifo")).is_err());
    assert_eq!(std::fs::read(s.root.join("ok")).unwrap(), b"fine");
}

#[test]
fn set_id_bits_kept_exactly_never_more() {
    let s = scene();
    let r = s
        .unpack(&tarball(&[
            Raw {
                mode: 0o6755,
                uid: 1234,
                gid: 5678,
                ..file(b"bin/su", b"#!")
            },
            // Bits above 0o7777 in the header are not a mode.
            Raw {
                mode: 0o177777,
                ..file(b"bin/odd", b"")
            },
            // No umask surprise: 0777 stays 0777.
            Raw {
                mode: 0o777,
                ..file(b"bin/open", b"")
            },
            dir(b"tmp", 0o1777),
        ]))
        .unwrap();
    assert_eq!(r.entries, 4);
    let su = std::fs::metadata(s.root.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o6755);
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(
        std::fs::metadata(s.root.join("bin/odd")).unwrap().mode() & 0o177777,
        0o107777
    );
    assert_eq!(
        std::fs::metadata(s.root.join("bin/open")).unwrap().mode() & 0o7777,
        0o777
    );
    assert_eq!(
        std::fs::metadata(s.root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn bad_whiteout_names_are_refused() {
    let s = scene();
    refused(
        s.unpack(&tarball(&[file(b".wh.", b"")])),
        "whiteout names no entry",
    );
    refused(
        s.unpack(&tarball(&[file(b"a/.wh.", b"")])),
        "whiteout names no entry",
    );
    refused(
        s.unpack(&tarball(&[file(b".wh..", b"")])),
        "whiteout names no entry",
    );
    refused(
        s.unpack(&tarball(&[file(b".wh...", b"")])),
        "whiteout names no entry",
    );
    refused(
        s.unpack(&tarball(&[file(b".wh.x/y", b"")])),
        "whiteout name used as a directory",
    );
    refused(
        s.unpack(&tarball(&[file(b".wh..wh.plnk", b"")])),
        "whiteout meta",
    );
}

#[test]
fn whiteouts_become_overlay_form_and_opaque_keeps_its_own_layer() {
    let s = scene();
    let r = s
        .unpack(&tarball(&[
            dir(b"d", 0o755),
            file(b"d/before", b"1"),
            file(b"d/.wh..wh..opq", b""),
            file(b"d/after", b"2"),
            file(b"etc/.wh.gone", b""),
            file(b"keep", b"k"),
            file(b".wh.keep", b""),
        ]))
        .unwrap();
    assert_eq!(r.whiteouts, 2, "{r:?}");
    assert_eq!(std::fs::read(s.root.join("d/before")).unwrap(), b"1");
    assert_eq!(std::fs::read(s.root.join("d/after")).unwrap(), b"2");
    assert!(std::fs::symlink_metadata(s.root.join("d/.wh..wh..opq")).is_err());
    assert_eq!(
        xattr::get(s.root.join("d"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    let gone = std::fs::symlink_metadata(s.root.join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(std::fs::symlink_metadata(s.root.join("etc/.wh.gone")).is_err());
    // A whiteout never hides an entry of its own layer.
    assert_eq!(std::fs::read(s.root.join("keep")).unwrap(), b"k");
}

#[test]
fn size_limits_stop_tar_bombs() {
    let s = scene();
    let limits = UnpackLimits {
        max_entry_bytes: 1 << 20,
        max_layer_bytes: 4 << 20,
        max_entries: 100,
    };
    let big = vec![7u8; (1 << 20) + 1];
    match s.unpack_with(&tarball(&[file(b"big", &big)]), &limits) {
        Err(UnpackError::EntryTooLarge { size, .. }) => assert_eq!(size, (1 << 20) + 1),
        other => panic!("expected EntryTooLarge, got {other:?}"),
    }
    let chunk = vec![1u8; 900 << 10];
    let names: Vec<Vec<u8>> = (0..6).map(|i| format!("f{i}").into_bytes()).collect();
    let many: Vec<Raw<'_>> = names.iter().map(|n| file(n, &chunk)).collect();
    match s.unpack_with(&tarball(&many), &limits) {
        Err(UnpackError::LayerTooLarge { limit }) => assert_eq!(limit, 4 << 20),
        other => panic!("expected the layer limit, got {other:?}"),
    }
    // 64 MiB of zeros gzip to a small blob; the limit stops it after 4 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let limits = UnpackLimits {
        max_entry_bytes: 1 << 30,
        ..limits
    };
    match s.unpack_with(&bomb, &limits) {
        Err(UnpackError::LayerTooLarge { limit }) => assert_eq!(limit, 4 << 20),
        other => panic!("expected the layer limit, got {other:?}"),
    }
    let written: u64 = std::fs::metadata(s.root.join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 4 << 20, "{written} bytes written past the limit");
    let limits = UnpackLimits {
        max_entries: 3,
        ..limits
    };
    let tiny: Vec<Raw<'_>> = names.iter().map(|n| file(n, b"")).collect();
    assert!(matches!(
        s.unpack_with(&tarball(&tiny), &limits),
        Err(UnpackError::TooManyEntries { limit: 3 })
    ));
}

#[test]
fn garbage_names_and_truncated_archives_fail_cleanly() {
    let s = scene();
    let r = s
        .unpack(&tarball(&[
            file(b"\xff\xfe\x01name\n", b"x"),
            file(b"./././dots", b"y"),
        ]))
        .unwrap();
    assert_eq!(r.entries, 2);
    let mut cut = tarball(&[file(b"whole", &[5u8; 4096])]);
    cut.truncate(512 + 1000);
    assert!(s.unpack(&cut).is_err());
    assert!(
        unpack_tar(
            &b"not a tar at all, just text"[..],
            &s.root,
            &UnpackLimits::default()
        )
        .is_err()
    );
    s.assert_outside_untouched();
}

#[test]
fn diff_id_is_the_uncompressed_stream_digest() {
    use sha2::Digest;
    let s = scene();
    let tar = tarball(&[file(b"a", b"hello")]);
    let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(s.unpack(&gz).unwrap().diff_id, want);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let other = tempfile::tempdir().unwrap();
    let r = unpack_blob(&zst[..], other.path(), &UnpackLimits::default()).unwrap();
    assert_eq!(r.diff_id, want);
    assert_eq!(std::fs::read(other.path().join("a")).unwrap(), b"hello");
}
