//! Image references as pod specs write them (`name[:tag][@digest]`), normalised the way
//! Docker does: `busybox` is `docker.io/library/busybox:latest`; a first component with a
//! `.` or `:` (or `localhost`) names the registry, port included.

use std::fmt;

pub(crate) const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with port when given (`127.0.0.1:8080`).
    pub registry: String,
    /// Repository path within the registry (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReferenceError {
    pub message: String,
}

fn bad(message: impl Into<String>) -> ReferenceError {
    ReferenceError {
        message: message.into(),
    }
}

/// Checks `sha256:<64 lowercase hex>`, the only digest this store names files after.
pub(crate) fn check_digest(d: &str) -> Result<&str, ReferenceError> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| bad(format!("digest {d:?} is not sha256")))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(format!("digest {d:?} is not 64 lowercase hex digits")));
    }
    Ok(hex)
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse_in(s, None)
    }

    /// Parses `s`; a name without a registry host belongs to `default_registry` when one
    /// is given (the Skiff hub: `busybox:1` is the hub's `busybox:1`, its repository
    /// exactly as written), else to Docker Hub as Docker has it.
    pub fn parse_in(s: &str, default_registry: Option<&str>) -> Result<Reference, ReferenceError> {
        if s.is_empty() || s.len() > 4096 {
            return Err(bad("empty or too long"));
        }
        let (name_tag, digest) = match s.rsplit_once('@') {
            Some((n, d)) => {
                check_digest(d)?;
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(format!("tag {t:?} is not valid")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (
                default_registry.unwrap_or(DOCKER_HUB).to_string(),
                name.to_string(),
            ),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            || registry.starts_with(['.', '-', ':'])
            || registry.contains("..")
        {
            return Err(bad(format!("registry {registry:?} is not a host name")));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        for part in repository.split('/') {
            let ok = !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(format!(
                    "repository {repository:?} must be lowercase letters, digits and separators"
                )));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifests endpoint for: the digest when pinned.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_can_belong_to_the_hub() {
        let r = Reference::parse_in("busybox:1", Some("10.0.0.1:6443")).unwrap();
        assert_eq!(r.to_string(), "10.0.0.1:6443/busybox:1");
        let r = Reference::parse_in("apps/web", Some("10.0.0.1:6443")).unwrap();
        assert_eq!(r.to_string(), "10.0.0.1:6443/apps/web:latest");
        let r = Reference::parse_in("quay.io/x/y:2", Some("10.0.0.1:6443")).unwrap();
        assert_eq!(r.to_string(), "quay.io/x/y:2");
    }

    fn canon(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_defaults() {
        assert_eq!(canon("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(canon("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(canon("grafana/agent"), "docker.io/grafana/agent:latest");
        assert_eq!(
            canon("index.docker.io/library/alpine:3"),
            "docker.io/library/alpine:3"
        );
    }

    #[test]
    fn registry_with_port_and_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:8080/busybox:1@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:8080");
        assert_eq!(r.repository, "busybox");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(canon("localhost/app"), "localhost/app:latest");
        assert_eq!(canon("127.0.0.1:8080/a/b"), "127.0.0.1:8080/a/b:latest");
        let pinned = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.to_string(), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn bad_references_are_refused() {
        for s in [
            "",
            "Busybox",
            "busybox:",
            "busybox:bad tag",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "a//b",
            "../x",
            "ex ample.com/x",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
    }
}
