//! Resolving a reference to one platform's image manifest: OCI manifests and indexes,
//! Docker schema 2 manifests and manifest lists, each checked against its digest, and the
//! index entry for linux on this device's architecture picked.

use std::collections::HashMap;
use std::io::Read;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

use super::ImageError;
use super::reference::Reference;
use super::registry::{Endpoint, Registry};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
const MAX_MANIFEST: u64 = 4 << 20;

/// The OS/architecture an image must be built for, in OCI's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// This device: Rust's architecture names mapped to OCI's.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

/// A resolved platform manifest.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub manifest: ImageManifest,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn unsupported(r: &Reference, what: &'static str, value: impl Into<String>) -> ImageError {
    ImageError::Unsupported {
        reference: r.to_string(),
        what,
        value: value.into(),
    }
}

/// Fetches the manifest `r` names from `ep`, following an index to this platform's entry.
pub(crate) fn resolve(
    reg: &Registry,
    ep: &Endpoint,
    r: &Reference,
    platform: &Platform,
) -> Result<Resolved, ImageError> {
    let expected = r.digest.as_deref().map(|d| (d, None));
    let (digest, bytes) = fetch(reg, ep, r, r.manifest_ref(), expected)?;
    let kind = kind_of(r, &bytes)?;
    if kind == Kind::Manifest {
        return Ok(Resolved {
            manifest: parse_manifest(r, &bytes)?,
            digest,
            bytes,
        });
    }
    let index: ImageIndex =
        serde_json::from_slice(&bytes).map_err(|e| unsupported(r, "image index", e.to_string()))?;
    let entry = pick(index.manifests(), platform).ok_or_else(|| {
        unsupported(
            r,
            "platform",
            format!(
                "no linux/{}{} image in its index",
                platform.architecture,
                platform
                    .variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            ),
        )
    })?;
    let want = entry.digest().to_string();
    let (digest, bytes) = fetch(reg, ep, r, &want, Some((&want, Some(entry.size()))))?;
    if kind_of(r, &bytes)? != Kind::Manifest {
        return Err(unsupported(r, "manifest", "an index inside an index"));
    }
    Ok(Resolved {
        manifest: parse_manifest(r, &bytes)?,
        digest,
        bytes,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

fn kind_of(r: &Reference, bytes: &[u8]) -> Result<Kind, ImageError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| unsupported(r, "manifest", e.to_string()))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
        return Err(unsupported(
            r,
            "manifest schema",
            v.get("schemaVersion")
                .map_or("none".to_string(), |s| s.to_string()),
        ));
    }
    let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    match media {
        OCI_INDEX | DOCKER_LIST => Ok(Kind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Kind::Manifest),
        "" if v.get("manifests").is_some() => Ok(Kind::Index),
        "" if v.get("layers").is_some() => Ok(Kind::Manifest),
        other => Err(unsupported(r, "manifest media type", other)),
    }
}

fn parse_manifest(r: &Reference, bytes: &[u8]) -> Result<ImageManifest, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| unsupported(r, "image manifest", e.to_string()))
}

/// The index entry for linux on `platform`; a missing variant matches when none fits exactly.
fn pick<'a>(entries: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux"
                    && p.architecture().to_string() == platform.architecture
            })
        })
        .collect();
    let variant_of = |d: &Descriptor| d.platform().as_ref().and_then(|p| p.variant().clone());
    candidates
        .iter()
        .find(|d| variant_of(d) == platform.variant)
        .or_else(|| candidates.iter().find(|d| variant_of(d).is_none()))
        .or_else(|| {
            // arm64 images are often tagged v8, which is what an unversioned arm64 wants.
            candidates.iter().find(|_| platform.variant.is_none())
        })
        .copied()
}

/// GETs one manifest and checks it against `expected` (digest and size) or, fetched by
/// tag, against the digest the registry says it has.
fn fetch(
    reg: &Registry,
    ep: &Endpoint,
    r: &Reference,
    reference: &str,
    expected: Option<(&str, Option<u64>)>,
) -> Result<(String, Vec<u8>), ImageError> {
    let what = format!("manifest {reference}");
    let path = format!("/v2/{}/manifests/{reference}", r.repository);
    let resp = reg.get(ep, r, &path, &ACCEPT, None, &what)?;
    if resp.status == 416 {
        return Err(ImageError::Fetch {
            reference: r.to_string(),
            registry: ep.base.clone(),
            what,
            message: "HTTP status 416".into(),
        });
    }
    let headers: HashMap<String, String> = resp.headers;
    let mut bytes = Vec::new();
    resp.body
        .into_reader()
        .take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::Fetch {
            reference: r.to_string(),
            registry: ep.base.clone(),
            what: what.clone(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(unsupported(
            r,
            "manifest size",
            format!("over {MAX_MANIFEST} bytes"),
        ));
    }
    let actual = sha256(&bytes);
    let claimed = headers
        .get("docker-content-digest")
        .filter(|d| d.starts_with("sha256:"));
    let expected_digest = expected.map(|(d, _)| d).or(claimed.map(String::as_str));
    if let Some(want) = expected_digest
        && want != actual
    {
        return Err(ImageError::DigestMismatch {
            reference: r.to_string(),
            what,
            expected: want.to_string(),
            actual,
        });
    }
    if let Some((_, Some(size))) = expected
        && size != bytes.len() as u64
    {
        return Err(ImageError::DigestMismatch {
            reference: r.to_string(),
            what: format!("{what} size"),
            expected: size.to_string(),
            actual: bytes.len().to_string(),
        });
    }
    Ok((actual, bytes))
}
