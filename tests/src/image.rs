//! Test images built without a network: the busybox root filesystem of
//! [`crate::busybox`] packed as an OCI image layout (a directory or a tar) or as a
//! `docker save` archive, with a settable config and any number of layers.
//!
//! Archives are reproducible: entries are sorted, owned by root and dated at the epoch,
//! and gzip carries no timestamp, so the same builder gives the same digests (and two
//! images share their base layer byte for byte).
//!
//! ```no_run
//! use skiff_tests::image::{Compression, TestImage};
//! let dir = tempfile::tempdir().unwrap();
//! let info = TestImage::busybox()
//!     .reference("busybox:1")
//!     .entrypoint(&["/bin/sh", "-c"])
//!     .cmd(&["echo hello"])
//!     .layers(3)
//!     .compression(Compression::Gzip)
//!     .write_oci_layout_tar(&dir.path().join("busybox.tar"))
//!     .unwrap();
//! println!("{} with {} layers", info.manifest_digest.unwrap(), info.layers.len());
//! ```

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The annotation an OCI layout names its images with (the tag, by convention).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full `NAME:TAG`.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// How the layers of an OCI layout are compressed (docker archives are always plain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One layer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the stored (possibly compressed) blob.
    pub digest: String,
    pub size: u64,
    /// Digest of the uncompressed tar (the config's diff id).
    pub diff_id: String,
    pub media_type: String,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `NAME:TAG` the archive names the image with.
    pub reference: String,
    /// The OCI manifest's digest. `None` for a docker archive: a registry makes the
    /// manifest when it imports one.
    pub manifest_digest: Option<String>,
    pub manifest: Option<Vec<u8>>,
    pub config_digest: String,
    pub config: Vec<u8>,
    pub layers: Vec<LayerInfo>,
}

/// A busybox image under construction.
#[derive(Debug, Clone)]
pub struct TestImage {
    reference: String,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    layers: usize,
    compression: Compression,
    files: Vec<(String, Vec<u8>, u32)>,
}

/// A file of a layout: its path in the layout and its content.
type NamedFile = (String, Vec<u8>);

/// A file in a layer: path inside the rootfs, and what it is.
#[derive(Debug, Clone)]
enum Node {
    Dir(u32),
    File(Vec<u8>, u32),
    Symlink(String),
}

/// Go's names for CPU architectures, used in image configs.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

impl TestImage {
    /// busybox-static with a symlink per applet, one gzip layer, `CMD ["/bin/sh"]`,
    /// named `busybox:1`.
    pub fn busybox() -> TestImage {
        TestImage {
            reference: "busybox:1".to_string(),
            entrypoint: None,
            cmd: Some(vec!["/bin/sh".to_string()]),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            layers: 1,
            compression: Compression::Gzip,
            files: Vec::new(),
        }
    }

    /// The `NAME:TAG` written into the archive.
    pub fn reference(mut self, r: &str) -> Self {
        self.reference = r.to_string();
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds `KEY=VALUE` to the config's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    /// Splits the image into `n` layers (at least 1): `/bin` first, the rest of the
    /// root filesystem second, then one layer per extra marker file `/etc/layer-N`.
    pub fn layers(mut self, n: usize) -> Self {
        self.layers = n.max(1);
        self
    }

    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Adds a file (mode 0644) to the top layer, e.g. a script for the container.
    pub fn file(self, path: &str, content: &[u8]) -> Self {
        self.file_mode(path, content, 0o644)
    }

    /// Adds a file with a mode to the top layer.
    pub fn file_mode(mut self, path: &str, content: &[u8], mode: u32) -> Self {
        self.files.push((
            path.trim_start_matches('/').to_string(),
            content.to_vec(),
            mode,
        ));
        self
    }

    /// The rootfs of each layer, bottom first.
    fn layer_trees(&self) -> io::Result<Vec<BTreeMap<String, Node>>> {
        let dir = tempfile::tempdir()?;
        crate::busybox::populate_rootfs(dir.path())?;
        let mut all = BTreeMap::new();
        read_tree(dir.path(), "", &mut all)?;
        let mut layers: Vec<BTreeMap<String, Node>> = Vec::new();
        if self.layers == 1 {
            layers.push(all);
        } else {
            let (bin, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = all
                .into_iter()
                .partition(|(p, _)| p == "bin" || p.starts_with("bin/"));
            layers.push(bin);
            layers.push(rest);
            for i in 2..self.layers {
                let mut l = BTreeMap::new();
                l.insert("etc".to_string(), Node::Dir(0o755));
                l.insert(
                    format!("etc/layer-{i}"),
                    Node::File(format!("layer {i}\n").into_bytes(), 0o644),
                );
                layers.push(l);
            }
        }
        if !self.files.is_empty() {
            let top = layers.last_mut().expect("at least one layer");
            for (path, content, mode) in &self.files {
                // Parent directories first, so the layer unpacks on its own.
                let mut parent = String::new();
                let parts: Vec<&str> = path.split('/').collect();
                for p in &parts[..parts.len() - 1] {
                    if !parent.is_empty() {
                        parent.push('/');
                    }
                    parent.push_str(p);
                    top.entry(parent.clone()).or_insert(Node::Dir(0o755));
                }
                top.insert(path.clone(), Node::File(content.clone(), *mode));
            }
        }
        Ok(layers)
    }

    fn config(&self, diff_ids: &[String]) -> Vec<u8> {
        let mut config = serde_json::Map::new();
        config.insert("Env".into(), json!(self.env));
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(e));
        }
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), json!(c));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(w));
        }
        json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": go_arch(),
            "os": "linux",
            "config": Value::Object(config),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": diff_ids.iter().enumerate().map(|(i, _)| json!({
                "created": "2024-01-01T00:00:00Z",
                "created_by": format!("skiff test image layer {i}"),
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    /// The blobs and the manifest of the OCI form: `(files by layout path, info)`.
    fn oci_files(&self) -> io::Result<(Vec<NamedFile>, ImageInfo)> {
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut layers = Vec::new();
        for tree in self.layer_trees()? {
            let raw = tar_tree(&tree)?;
            let diff_id = sha256_digest(&raw);
            let (stored, media) = match self.compression {
                Compression::None => (raw, MEDIA_LAYER_TAR),
                Compression::Gzip => (gzip(&raw)?, MEDIA_LAYER_GZIP),
                Compression::Zstd => (zstd::encode_all(&raw[..], 3)?, MEDIA_LAYER_ZSTD),
            };
            let digest = sha256_digest(&stored);
            layers.push(LayerInfo {
                digest: digest.clone(),
                size: stored.len() as u64,
                diff_id,
                media_type: media.to_string(),
            });
            blobs.push((digest, stored));
        }
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = self.config(&diff_ids);
        let config_digest = sha256_digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.size,
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let manifest_digest = sha256_digest(&manifest);
        let tag = self
            .reference
            .rsplit_once(':')
            .map_or(self.reference.as_str(), |(_, t)| t);
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": {
                    ANNOTATION_REF_NAME: tag,
                    ANNOTATION_IMAGE_NAME: self.reference,
                },
            }],
        })
        .to_string()
        .into_bytes();
        blobs.push((config_digest.clone(), config.clone()));
        blobs.push((manifest_digest.clone(), manifest.clone()));
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), index),
        ];
        for (digest, bytes) in blobs {
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            if !files.iter().any(|(n, _)| *n == name) {
                files.push((name, bytes));
            }
        }
        Ok((
            files,
            ImageInfo {
                reference: self.reference.clone(),
                manifest_digest: Some(manifest_digest),
                manifest: Some(manifest),
                config_digest,
                config,
                layers,
            },
        ))
    }

    /// Writes an OCI image layout into `dir` (created if missing).
    pub fn write_oci_layout(&self, dir: &Path) -> io::Result<ImageInfo> {
        let (files, info) = self.oci_files()?;
        for (name, bytes) in files {
            let path = dir.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        Ok(info)
    }

    /// Writes an OCI image layout as one tar file.
    pub fn write_oci_layout_tar(&self, path: &Path) -> io::Result<ImageInfo> {
        let (files, info) = self.oci_files()?;
        let mut tree = BTreeMap::new();
        for (name, bytes) in files {
            let parts: Vec<&str> = name.split('/').collect();
            for i in 1..parts.len() {
                tree.entry(parts[..i].join("/")).or_insert(Node::Dir(0o755));
            }
            tree.insert(name, Node::File(bytes, 0o644));
        }
        std::fs::write(path, tar_tree(&tree)?)?;
        Ok(info)
    }

    /// Writes a `docker save` archive: `manifest.json`, `<config hex>.json` and
    /// `<n>/layer.tar` per layer (uncompressed, as docker writes them).
    pub fn write_docker_archive(&self, path: &Path) -> io::Result<ImageInfo> {
        let mut tree = BTreeMap::new();
        let mut layers = Vec::new();
        let mut names = Vec::new();
        for (i, l) in self.layer_trees()?.iter().enumerate() {
            let raw = tar_tree(l)?;
            let digest = sha256_digest(&raw);
            let dir = format!("{i:02}{}", &digest["sha256:".len()..][..12]);
            tree.insert(dir.clone(), Node::Dir(0o755));
            names.push(format!("{dir}/layer.tar"));
            layers.push(LayerInfo {
                digest: digest.clone(),
                size: raw.len() as u64,
                diff_id: digest,
                media_type: MEDIA_LAYER_TAR.to_string(),
            });
            tree.insert(format!("{dir}/layer.tar"), Node::File(raw, 0o644));
        }
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = self.config(&diff_ids);
        let config_digest = sha256_digest(&config);
        let config_name = format!("{}.json", config_digest.trim_start_matches("sha256:"));
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": [self.reference],
            "Layers": names,
        }]);
        tree.insert(config_name, Node::File(config.clone(), 0o644));
        tree.insert(
            "manifest.json".to_string(),
            Node::File(manifest.to_string().into_bytes(), 0o644),
        );
        std::fs::write(path, tar_tree(&tree)?)?;
        Ok(ImageInfo {
            reference: self.reference.clone(),
            manifest_digest: None,
            manifest: None,
            config_digest,
            config,
            layers,
        })
    }
}

/// Reads `dir` recursively into `out`, keyed by path relative to the root.
fn read_tree(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Node>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(entry.path())?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            out.insert(rel, Node::Symlink(target.to_string_lossy().into_owned()));
        } else if meta.is_dir() {
            out.insert(rel.clone(), Node::Dir(mode));
            read_tree(&entry.path(), &rel, out)?;
        } else {
            out.insert(rel, Node::File(std::fs::read(entry.path())?, mode));
        }
    }
    Ok(())
}

/// A reproducible tar of `tree` (sorted, root-owned, epoch mtimes).
fn tar_tree(tree: &BTreeMap<String, Node>) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, node) in tree {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match node {
            Node::Dir(mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), io::empty())?;
            }
            Node::File(bytes, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, path, &bytes[..])?;
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    b.into_inner()
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(bytes)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_layout_is_consistent_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let a = TestImage::busybox()
            .entrypoint(&["/bin/sh"])
            .cmd(&["-c", "true"])
            .working_dir("/tmp")
            .env("A", "1")
            .layers(3)
            .file("app/run.sh", b"#!/bin/sh\necho hi\n")
            .write_oci_layout(&dir.path().join("a"))
            .unwrap();
        assert_eq!(a.layers.len(), 3);
        let manifest = a.manifest.clone().unwrap();
        assert_eq!(sha256_digest(&manifest), a.manifest_digest.clone().unwrap());
        for l in &a.layers {
            let blob = std::fs::read(
                dir.path()
                    .join("a/blobs/sha256")
                    .join(l.digest.trim_start_matches("sha256:")),
            )
            .unwrap();
            assert_eq!(sha256_digest(&blob), l.digest);
            assert_eq!(blob.len() as u64, l.size);
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut raw)
                .unwrap();
            assert_eq!(sha256_digest(&raw), l.diff_id);
        }
        let config: Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(config["config"]["Cmd"], json!(["-c", "true"]));
        assert_eq!(config["config"]["WorkingDir"], "/tmp");
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("A=1"))
        );
        // The same builder gives the same bytes.
        let b = TestImage::busybox()
            .entrypoint(&["/bin/sh"])
            .cmd(&["-c", "true"])
            .working_dir("/tmp")
            .env("A", "1")
            .layers(3)
            .file("app/run.sh", b"#!/bin/sh\necho hi\n")
            .write_oci_layout_tar(&dir.path().join("b.tar"))
            .unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
    }

    #[test]
    fn zstd_and_docker_forms() {
        let dir = tempfile::tempdir().unwrap();
        let z = TestImage::busybox()
            .compression(Compression::Zstd)
            .write_oci_layout(dir.path())
            .unwrap();
        assert_eq!(z.layers[0].media_type, MEDIA_LAYER_ZSTD);
        let blob = std::fs::read(
            dir.path()
                .join("blobs/sha256")
                .join(z.layers[0].digest.trim_start_matches("sha256:")),
        )
        .unwrap();
        assert_eq!(
            sha256_digest(&zstd::decode_all(&blob[..]).unwrap()),
            z.layers[0].diff_id
        );
        let d = TestImage::busybox()
            .layers(2)
            .write_docker_archive(&dir.path().join("d.tar"))
            .unwrap();
        assert!(d.manifest_digest.is_none());
        assert_eq!(d.layers.len(), 2);
        assert!(d.layers.iter().all(|l| l.digest == l.diff_id));
    }
}
