//! Arbitrary bytes as a layer tar: the unpacker must return a report or an error, never
//! panic, and never create, change or remove anything outside the layer root.
#![no_main]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skiff_agent::image::unpack::{UnpackLimits, unpack_tar};

struct Scene {
    base: PathBuf,
    canary: PathBuf,
}

const CANARY: &[u8] = b"canary\n";

fn scene() -> &'static Scene {
    static SCENE: OnceLock<Scene> = OnceLock::new();
    SCENE.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("skiff-fuzz-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("outside")).unwrap();
        let canary = base.join("outside/canary");
        std::fs::write(&canary, CANARY).unwrap();
        Scene { base, canary }
    })
}

/// Every path under `dir` that is not `skip`.
fn entries(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            entries(&p, skip, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = scene();
    let root = s.base.join("root");
    std::fs::create_dir(&root).unwrap();
    let limits = UnpackLimits {
        max_entry_bytes: 1 << 20,
        max_layer_bytes: 4 << 20,
        max_entries: 10_000,
    };
    let _ = unpack_tar(data, &root, &limits);

    let mut found = Vec::new();
    entries(&s.base, &root, &mut found);
    assert_eq!(
        found,
        vec![s.base.join("outside"), s.canary.clone()],
        "something appeared outside the layer root"
    );
    let md = std::fs::symlink_metadata(&s.canary).unwrap();
    assert!(md.is_file() && md.nlink() == 1 && md.mode() & 0o7777 == 0o644);
    assert_eq!(std::fs::read(&s.canary).unwrap(), CANARY);
    assert!(std::fs::symlink_metadata(&root).unwrap().is_dir());
    std::fs::remove_dir_all(&root).unwrap();
});
