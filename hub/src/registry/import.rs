//! Reading an image archive: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) or a `docker save` archive (`manifest.json`, a config per image,
//! layer tars), plain or gzip-compressed, streamed from the request body.
//!
//! Every file of the archive is staged (hashed while written) in one pass, whatever
//! the order of its entries; then the images are checked (every digest and size an OCI
//! layout declares, the diff ids of a docker archive) and turned into manifests to
//! index. Nothing reaches the store before the whole archive has passed, so a bad
//! archive leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

use serde_json::{Value, json};

use super::blobs::{BlobError, StageError, Staged, StagingDir};
use super::digest::Digest;
use super::index::{Child, ManifestRecord};
use super::names::{ImageRef, RefError, valid_tag};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Largest JSON document (index, manifest, config) read from an archive.
const MAX_JSON: u64 = 4 * 1024 * 1024;
/// Longest chain of symbolic links followed inside an archive.
const MAX_LINK_HOPS: usize = 8;
/// Deepest nesting of indexes followed.
const MAX_DEPTH: usize = 4;

/// Why an archive was refused, or could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the archive is unreadable {}: {source} (truncated or not a tar archive?)", after(.entry))]
    Unreadable {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("archive entry {entry:?}: unsafe path (absolute or with ..)")]
    UnsafePath { entry: String },
    #[error("archive entry {entry:?}: link to {target:?} leaves the archive or cannot be resolved")]
    BadLink { entry: String, target: String },
    #[error("archive entry {entry:?}: unsupported entry type {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("the archive is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "the archive is neither an OCI image layout (oci-layout, index.json) nor a docker archive (manifest.json)"
    )]
    UnknownFormat,
    #[error("the archive has no {0}")]
    MissingFile(&'static str),
    #[error("{entry}: {reason}")]
    Json { entry: String, reason: String },
    #[error("{entry}: content has digest {actual}, not the {expected} its name says")]
    WrongDigest {
        entry: String,
        expected: String,
        actual: Digest,
    },
    #[error("archive entry {entry:?}: blobs must be named blobs/sha256/<64 hex digits>")]
    BadBlobName { entry: String },
    #[error("blob {digest} referenced by {by} is missing from the archive")]
    MissingBlob { digest: String, by: String },
    #[error("{what} {digest}: declared size {declared}, actual {actual}")]
    SizeMismatch {
        what: &'static str,
        digest: Digest,
        declared: u64,
        actual: u64,
    },
    #[error(
        "{digest}: unsupported media type {media_type:?} (expected an image manifest or index)"
    )]
    UnsupportedMediaType { digest: String, media_type: String },
    #[error("{entry} does not list any image")]
    NoImages { entry: &'static str },
    #[error("{entry}: layer {layer} has digest {actual} but the config's diff id is {expected}")]
    DiffId {
        entry: String,
        layer: String,
        expected: String,
        actual: Digest,
    },
    #[error(
        "image {digest} has no name ({missing}); give one with ?tag=NAME:TAG (skiff image import --tag)"
    )]
    Untagged { digest: Digest, missing: String },
    #[error("the archive holds {count} images; ?tag=NAME:TAG names exactly one")]
    AmbiguousTag { count: usize },
    #[error("tag {0}")]
    BadRef(#[from] RefError),
    #[error("image {name:?} in the archive: {source}")]
    BadArchiveRef {
        name: String,
        #[source]
        source: RefError,
    },
    #[error("staging: {0}")]
    Stage(#[source] BlobError),
    #[error("indexing: {0}")]
    Index(#[from] super::index::IndexError),
}

fn after(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!("after entry {e:?}"),
        None => "at its start".to_string(),
    }
}

impl ImportError {
    /// Whether the archive (the client) is at fault; anything else is the hub's.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ImportError::Stage(_) | ImportError::Index(_))
    }
}

/// What the caller asked the images to be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOverride {
    /// `NAME:TAG`, for an archive of exactly one image.
    Full(ImageRef),
    /// `NAME`: the repository, with the tags the archive gives.
    Name(String),
}

impl TagOverride {
    pub fn parse(s: &str) -> Result<TagOverride, RefError> {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        if s[slash..].contains(':') {
            Ok(TagOverride::Full(ImageRef::parse(s)?))
        } else if super::names::valid_name(s) {
            Ok(TagOverride::Name(s.to_string()))
        } else {
            Err(RefError::Name(s.to_string()))
        }
    }
}

/// An archive checked and staged, ready to commit.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Blobs to move into the store.
    pub(crate) blobs: Vec<Staged>,
    /// Manifests to index, each under every repository it is tagged in.
    pub(crate) images: Vec<PlannedImage>,
}

#[derive(Debug)]
pub(crate) struct PlannedImage {
    pub(crate) refs: Vec<ImageRef>,
    pub(crate) digest: Digest,
    /// The top manifest and, for an index, the manifests under it.
    pub(crate) manifests: Vec<ManifestRecord>,
    pub(crate) size: u64,
}

/// Reads a tar (plain or gzip) into `staging` and checks it.
pub(crate) fn read_archive(
    input: impl Read,
    staging: &mut StagingDir,
    limit: u64,
    tag: Option<&TagOverride>,
) -> Result<Plan, ImportError> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let head = input
        .fill_buf()
        .map_err(|source| source_error(&None, source, limit))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let files = if gzip {
        stage_entries(flate2::read::MultiGzDecoder::new(input), staging, limit)?
    } else {
        stage_entries(input, staging, limit)?
    };
    let mut images = if files.contains_key("index.json") {
        oci_layout(&files)?
    } else if files.contains_key("manifest.json") {
        docker_archive(&files, staging)?
    } else {
        return Err(ImportError::UnknownFormat);
    };
    name_images(&mut images, tag)?;
    let mut blobs: BTreeMap<Digest, Staged> = BTreeMap::new();
    let mut planned = Vec::new();
    for img in images {
        for s in &img.blobs {
            blobs.entry(s.digest.clone()).or_insert_with(|| s.clone());
        }
        // Each blob counts once, however many manifests share it.
        let size = img
            .blobs
            .iter()
            .map(|s| (s.digest.clone(), s.size))
            .collect::<HashMap<_, _>>()
            .values()
            .sum();
        planned.push(PlannedImage {
            refs: img.refs,
            digest: img.digest,
            manifests: img.manifests,
            size,
        });
    }
    Ok(Plan {
        blobs: blobs.into_values().collect(),
        images: planned,
    })
}

/// An image found in the archive, before naming.
struct Found {
    digest: Digest,
    /// Names the archive gives (full references).
    refs: Vec<ImageRef>,
    /// A bare tag the archive gives without a repository.
    bare_tag: Option<String>,
    manifests: Vec<ManifestRecord>,
    /// Every blob the image needs, manifests included.
    blobs: Vec<Staged>,
}

/// Each regular file of the archive by its normalized path.
type Files = HashMap<String, Staged>;

/// Normalizes an entry path: relative, no `..`, `.` dropped; `None` if unsafe.
fn normalize(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Resolves a symbolic link's target lexically, relative to the link's directory,
/// refusing any step above the archive root.
fn resolve_symlink(entry: &str, target: &Path) -> Option<String> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<String> = entry.split('/').map(String::from).collect();
    parts.pop();
    for c in target.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Counts bytes read, failing once more than `limit` have come through.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "over the limit",
            ));
        }
        Ok(n)
    }
}

/// A read error of the archive: over the size limit (the body or what it unpacks to),
/// or an unreadable archive.
fn source_error(entry: &Option<String>, source: io::Error, limit: u64) -> ImportError {
    if source.kind() == io::ErrorKind::FileTooLarge {
        ImportError::TooLarge { limit }
    } else {
        ImportError::Unreadable {
            entry: entry.clone(),
            source,
        }
    }
}

fn stage_entries(
    input: impl Read,
    staging: &mut StagingDir,
    limit: u64,
) -> Result<Files, ImportError> {
    let mut limited = Limited {
        inner: input,
        read: 0,
        limit,
    };
    let mut archive = tar::Archive::new(&mut limited);
    let mut files: Files = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut last: Option<String> = None;
    let unreadable = |entry: &Option<String>, source: io::Error| source_error(entry, source, limit);
    let entries = archive
        .entries()
        .map_err(|source| unreadable(&last, source))?;
    for entry in entries {
        let mut entry = entry.map_err(|source| unreadable(&last, source))?;
        let raw = entry
            .path()
            .map_err(|source| unreadable(&last, source))?
            .to_path_buf();
        let shown = raw.to_string_lossy().into_owned();
        let name = normalize(&raw).ok_or_else(|| ImportError::UnsafePath {
            entry: shown.clone(),
        })?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let staged = staging.write(&mut entry).map_err(|e| match e {
                    StageError::Source(source) => unreadable(&Some(shown.clone()), source),
                    StageError::Local(e) => ImportError::Stage(e),
                })?;
                files.insert(name.clone(), staged);
            }
            tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|source| unreadable(&last, source))?
                    .ok_or_else(|| ImportError::BadLink {
                        entry: shown.clone(),
                        target: String::new(),
                    })?
                    .to_path_buf();
                let resolved = if kind == tar::EntryType::Symlink {
                    resolve_symlink(&name, &target)
                } else {
                    normalize(&target)
                };
                let resolved = resolved.ok_or_else(|| ImportError::BadLink {
                    entry: shown.clone(),
                    target: target.to_string_lossy().into_owned(),
                })?;
                links.push((name.clone(), resolved));
            }
            other => {
                return Err(ImportError::UnsupportedEntry {
                    entry: shown,
                    kind: format!("{other:?}"),
                });
            }
        }
        last = Some(shown);
    }
    // Links may point at entries that come later, or at other links.
    for (name, target) in &links {
        let mut at = target.clone();
        let mut hops = 0;
        let staged = loop {
            if let Some(s) = files.get(&at) {
                break s.clone();
            }
            match links.iter().find(|(n, _)| *n == at) {
                Some((_, next)) if hops < MAX_LINK_HOPS => {
                    at = next.clone();
                    hops += 1;
                }
                _ => {
                    return Err(ImportError::BadLink {
                        entry: name.clone(),
                        target: target.clone(),
                    });
                }
            }
        };
        files.insert(name.clone(), staged);
    }
    Ok(files)
}

fn read_json(files: &Files, entry: &str) -> Result<Value, ImportError> {
    let staged = files.get(entry).ok_or_else(|| ImportError::Json {
        entry: entry.to_string(),
        reason: "missing".into(),
    })?;
    read_staged_json(staged, entry)
}

fn read_staged_json(staged: &Staged, entry: &str) -> Result<Value, ImportError> {
    parse_json(&read_staged(staged, entry)?, entry)
}

fn read_staged(staged: &Staged, entry: &str) -> Result<Vec<u8>, ImportError> {
    if staged.size > MAX_JSON {
        return Err(ImportError::Json {
            entry: entry.to_string(),
            reason: format!("{} bytes, over the limit of {MAX_JSON}", staged.size),
        });
    }
    std::fs::read(&staged.path).map_err(|source| {
        ImportError::Stage(BlobError {
            path: staged.path.clone(),
            source,
        })
    })
}

fn parse_json(bytes: &[u8], entry: &str) -> Result<Value, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| ImportError::Json {
        entry: entry.to_string(),
        reason: format!("not valid JSON: {e}"),
    })
}

fn bad(entry: &str, reason: impl Into<String>) -> ImportError {
    ImportError::Json {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// A descriptor's digest and size, checked against the blob present.
fn descriptor<'a>(
    blobs: &'a HashMap<Digest, Staged>,
    desc: &Value,
    by: &str,
) -> Result<(&'a Staged, Option<String>), ImportError> {
    let digest_text = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(by, "a descriptor has no digest"))?;
    let digest = Digest::parse(digest_text).ok_or_else(|| {
        bad(
            by,
            format!("descriptor digest {digest_text:?} is not sha256:<64 hex digits>"),
        )
    })?;
    let declared = desc
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(by, format!("descriptor {digest} has no size")))?;
    let staged = blobs.get(&digest).ok_or_else(|| ImportError::MissingBlob {
        digest: digest.to_string(),
        by: by.to_string(),
    })?;
    if staged.size != declared {
        return Err(ImportError::SizeMismatch {
            what: "blob",
            digest,
            declared,
            actual: staged.size,
        });
    }
    let media = desc
        .get("mediaType")
        .and_then(Value::as_str)
        .map(String::from);
    Ok((staged, media))
}

fn oci_layout(files: &Files) -> Result<Vec<Found>, ImportError> {
    let layout = files
        .get("oci-layout")
        .ok_or(ImportError::MissingFile("oci-layout file"))?;
    let layout = read_staged_json(layout, "oci-layout")?;
    if layout
        .get("imageLayoutVersion")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(bad("oci-layout", "no imageLayoutVersion"));
    }
    // Every blob is checked against its name, referenced or not.
    let mut blobs: HashMap<Digest, Staged> = HashMap::new();
    for (name, staged) in files {
        let Some(rest) = name.strip_prefix("blobs/") else {
            continue;
        };
        let hex = rest
            .strip_prefix("sha256/")
            .ok_or_else(|| ImportError::BadBlobName {
                entry: name.clone(),
            })?;
        let expected = Digest::from_hex(hex).ok_or_else(|| ImportError::BadBlobName {
            entry: name.clone(),
        })?;
        if staged.digest != expected {
            return Err(ImportError::WrongDigest {
                entry: name.clone(),
                expected: expected.to_string(),
                actual: staged.digest.clone(),
            });
        }
        blobs.insert(expected, staged.clone());
    }
    let index = read_json(files, "index.json")?;
    let tops = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("index.json", "no manifests array"))?;
    if tops.is_empty() {
        return Err(ImportError::NoImages {
            entry: "index.json",
        });
    }
    let mut found = Vec::new();
    for desc in tops {
        let annotations = desc.get("annotations");
        let ann = |k: &str| {
            annotations
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let mut refs = Vec::new();
        let mut bare_tag = None;
        if let Some(full) = ann(CONTAINERD_NAME) {
            refs.push(
                ImageRef::parse(&full).map_err(|source| ImportError::BadArchiveRef {
                    name: full.clone(),
                    source,
                })?,
            );
        }
        if let Some(name) = ann(REF_NAME) {
            let slash = name.rfind('/').map_or(0, |i| i + 1);
            if name[slash..].contains(':') {
                let r = ImageRef::parse(&name).map_err(|source| ImportError::BadArchiveRef {
                    name: name.clone(),
                    source,
                })?;
                if !refs.contains(&r) {
                    refs.push(r);
                }
            } else if valid_tag(&name) {
                bare_tag = Some(name);
            } else {
                return Err(ImportError::BadArchiveRef {
                    source: RefError::Tag(name.clone()),
                    name,
                });
            }
        }
        let mut manifests = Vec::new();
        let mut needed = Vec::new();
        let (staged, media) = descriptor(&blobs, desc, "index.json")?;
        let digest = staged.digest.clone();
        visit(&blobs, staged, media, 0, &mut manifests, &mut needed)?;
        found.push(Found {
            digest,
            refs,
            bare_tag,
            manifests,
            blobs: needed,
        });
    }
    Ok(found)
}

/// Checks a manifest or index and everything under it.
fn visit(
    blobs: &HashMap<Digest, Staged>,
    staged: &Staged,
    declared_media: Option<String>,
    depth: usize,
    manifests: &mut Vec<ManifestRecord>,
    needed: &mut Vec<Staged>,
) -> Result<(), ImportError> {
    let entry = format!("manifest {}", staged.digest);
    let bytes = read_staged(staged, &entry)?;
    let doc = parse_json(&bytes, &entry)?;
    let media = doc
        .get("mediaType")
        .and_then(Value::as_str)
        .map(String::from)
        .or(declared_media)
        .unwrap_or_else(|| {
            // Without a media type, the shape tells: an index lists manifests.
            if doc.get("manifests").is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    needed.push(staged.clone());
    match media.as_str() {
        OCI_INDEX | DOCKER_LIST => {
            if depth >= MAX_DEPTH {
                return Err(bad(&entry, "indexes nested too deeply"));
            }
            let list = doc
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&entry, "an index without a manifests array"))?;
            let mut children = Vec::new();
            for d in list {
                let (child, m) = descriptor(blobs, d, &entry)?;
                children.push(Child {
                    digest: child.digest.clone(),
                    size: child.size,
                    manifest: true,
                });
                visit(blobs, child, m, depth + 1, manifests, needed)?;
            }
            manifests.push(ManifestRecord {
                digest: staged.digest.clone(),
                media_type: media,
                size: staged.size,
                created: None,
                children,
            });
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = doc
                .get("config")
                .ok_or_else(|| bad(&entry, "a manifest without a config"))?;
            let (config, _) = descriptor(blobs, config, &entry)?;
            let created = read_staged_json(config, &format!("config {}", config.digest))
                .ok()
                .and_then(|c| c.get("created").and_then(Value::as_str).map(String::from));
            let mut children = vec![Child {
                digest: config.digest.clone(),
                size: config.size,
                manifest: false,
            }];
            needed.push(config.clone());
            let layers = doc
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(&entry, "a manifest without a layers array"))?;
            for l in layers {
                let (layer, _) = descriptor(blobs, l, &entry)?;
                children.push(Child {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    manifest: false,
                });
                needed.push(layer.clone());
            }
            manifests.push(ManifestRecord {
                digest: staged.digest.clone(),
                media_type: media,
                size: staged.size,
                created,
                children,
            });
        }
        other => {
            return Err(ImportError::UnsupportedMediaType {
                digest: staged.digest.to_string(),
                media_type: other.to_string(),
            });
        }
    }
    Ok(())
}

fn docker_archive(files: &Files, staging: &mut StagingDir) -> Result<Vec<Found>, ImportError> {
    let list = read_json(files, "manifest.json")?;
    let list = list
        .as_array()
        .ok_or_else(|| bad("manifest.json", "not an array"))?;
    if list.is_empty() {
        return Err(ImportError::NoImages {
            entry: "manifest.json",
        });
    }
    let stage_bytes = |staging: &mut StagingDir, bytes: &[u8]| {
        staging.write_bytes(bytes).map_err(|e| match e {
            StageError::Local(e) => ImportError::Stage(e),
            StageError::Source(source) => ImportError::Stage(BlobError {
                path: "memory".into(),
                source,
            }),
        })
    };
    let mut found = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("manifest.json[{i}]");
        let config_name = item
            .get("Config")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&at, "no Config"))?;
        let config_path =
            normalize(Path::new(config_name)).ok_or_else(|| ImportError::UnsafePath {
                entry: config_name.to_string(),
            })?;
        let config_file = files
            .get(&config_path)
            .ok_or_else(|| ImportError::MissingBlob {
                digest: config_name.to_string(),
                by: at.clone(),
            })?;
        let config_bytes = read_staged(config_file, config_name)?;
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(config_name, format!("not an image config: {e}")))?;
        let layer_names = item
            .get("Layers")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&at, "no Layers"))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layer_names.len() {
            return Err(bad(
                config_name,
                format!(
                    "{} diff ids for {} layers",
                    diff_ids.len(),
                    layer_names.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (l, expected) in layer_names.iter().zip(diff_ids) {
            let name = l
                .as_str()
                .ok_or_else(|| bad(&at, "a layer that is not a path"))?;
            let path = normalize(Path::new(name)).ok_or_else(|| ImportError::UnsafePath {
                entry: name.to_string(),
            })?;
            let staged = files.get(&path).ok_or_else(|| ImportError::MissingBlob {
                digest: name.to_string(),
                by: at.clone(),
            })?;
            if staged.digest.as_str() != expected {
                return Err(ImportError::DiffId {
                    entry: config_name.to_string(),
                    layer: name.to_string(),
                    expected: expected.clone(),
                    actual: staged.digest.clone(),
                });
            }
            layers.push(staged.clone());
        }
        let created = config.created().clone();
        let oci_config = serde_json::to_vec(&config)
            .map_err(|e| bad(config_name, format!("cannot convert the config: {e}")))?;
        let config_staged = stage_bytes(staging, &oci_config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": config_staged.digest.as_str(),
                "size": config_staged.size,
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER_TAR,
                "digest": l.digest.as_str(),
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_staged = stage_bytes(staging, manifest.to_string().as_bytes())?;
        let mut refs = Vec::new();
        for t in item
            .get("RepoTags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let t = t
                .as_str()
                .ok_or_else(|| bad(&at, "a RepoTag that is not a string"))?;
            let r = ImageRef::parse(t).map_err(|source| ImportError::BadArchiveRef {
                name: t.to_string(),
                source,
            })?;
            refs.push(r);
        }
        let mut children = vec![Child {
            digest: config_staged.digest.clone(),
            size: config_staged.size,
            manifest: false,
        }];
        children.extend(layers.iter().map(|l| Child {
            digest: l.digest.clone(),
            size: l.size,
            manifest: false,
        }));
        let record = ManifestRecord {
            digest: manifest_staged.digest.clone(),
            media_type: OCI_MANIFEST.to_string(),
            size: manifest_staged.size,
            created,
            children,
        };
        let mut blobs = vec![manifest_staged.clone(), config_staged];
        blobs.extend(layers);
        found.push(Found {
            digest: manifest_staged.digest,
            refs,
            bare_tag: None,
            manifests: vec![record],
            blobs,
        });
    }
    Ok(found)
}

/// Gives every image its names: the override, or what the archive says.
fn name_images(found: &mut [Found], tag: Option<&TagOverride>) -> Result<(), ImportError> {
    match tag {
        Some(TagOverride::Full(r)) => {
            if found.len() != 1 {
                return Err(ImportError::AmbiguousTag { count: found.len() });
            }
            found[0].refs = vec![r.clone()];
        }
        Some(TagOverride::Name(name)) => {
            for f in found.iter_mut() {
                let mut tags: Vec<String> = f.refs.iter().map(|r| r.tag.clone()).collect();
                tags.extend(f.bare_tag.clone());
                tags.sort();
                tags.dedup();
                if tags.is_empty() {
                    return Err(ImportError::Untagged {
                        digest: f.digest.clone(),
                        missing: format!("the archive gives no tag for repository {name}"),
                    });
                }
                f.refs = tags
                    .into_iter()
                    .map(|t| ImageRef::new(name, &t))
                    .collect::<Result<_, _>>()?;
            }
        }
        None => {
            for f in found.iter_mut() {
                if f.refs.is_empty() {
                    let missing = match &f.bare_tag {
                        Some(t) => format!("the archive gives tag {t:?} but no repository name"),
                        None => format!(
                            "no {REF_NAME} annotation in index.json and no RepoTags in manifest.json"
                        ),
                    };
                    return Err(ImportError::Untagged {
                        digest: f.digest.clone(),
                        missing,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalized_or_refused() {
        assert_eq!(
            normalize(Path::new("./blobs/sha256/ab")).unwrap(),
            "blobs/sha256/ab"
        );
        assert_eq!(normalize(Path::new("index.json")).unwrap(), "index.json");
        assert!(normalize(Path::new("../index.json")).is_none());
        assert!(normalize(Path::new("/etc/passwd")).is_none());
        assert!(normalize(Path::new("a/../../b")).is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_symlink("abc/layer.tar", Path::new("../def/layer.tar")).unwrap(),
            "def/layer.tar"
        );
        assert!(resolve_symlink("abc/layer.tar", Path::new("../../x")).is_none());
        assert!(resolve_symlink("layer.tar", Path::new("/etc/shadow")).is_none());
    }

    #[test]
    fn tag_overrides() {
        assert_eq!(
            TagOverride::parse("busybox:1").unwrap(),
            TagOverride::Full(ImageRef::parse("busybox:1").unwrap())
        );
        assert_eq!(
            TagOverride::parse("library/busybox").unwrap(),
            TagOverride::Name("library/busybox".into())
        );
        assert!(TagOverride::parse("Bad").is_err());
        assert!(TagOverride::parse("ok:").is_err());
    }
}
