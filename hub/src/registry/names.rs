//! Repository names and tags as the OCI distribution spec defines them, and the
//! `NAME:TAG` references people type.

/// Longest repository name accepted (the spec suggests clients keep under 255).
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// Whether `name` is a repository name: `/`-separated components of lower-case letters
/// and digits, joined inside a component by `.`, `_`, `__` or runs of `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or one or more `-`, always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Whether `tag` is a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// A repository name and a tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub name: String,
    pub tag: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// Why a `NAME:TAG` reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("{0:?} has no tag (expected NAME:TAG, e.g. busybox:1)")]
    NoTag(String),
    #[error(
        "{0:?} is not a repository name (lower-case letters, digits and . _ - separators, components joined by /)"
    )]
    Name(String),
    #[error("{0:?} is not a tag (letters, digits, _ . -, at most 128, not starting with . or -)")]
    Tag(String),
}

impl ImageRef {
    /// Parses `NAME:TAG`. The tag follows the last `:` after the last `/`, so a
    /// registry host with a port (`host:5000/app:1`) stays in the name.
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let colon = s[slash..]
            .rfind(':')
            .map(|i| slash + i)
            .ok_or_else(|| RefError::NoTag(s.to_string()))?;
        ImageRef::new(&s[..colon], &s[colon + 1..])
    }

    /// Checks both parts.
    pub fn new(name: &str, tag: &str) -> Result<ImageRef, RefError> {
        if !valid_name(name) {
            return Err(RefError::Name(name.to_string()));
        }
        if !valid_tag(tag) {
            return Err(RefError::Tag(tag.to_string()));
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "busybox",
            "library/busybox",
            "a",
            "a.b_c__d---e/f0",
            "docker.io/library/busybox",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "Busybox", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a:b", "a/../b", "..",
            "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        for ok in ["1", "latest", "v1.2.3-rc_1", "_x"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(
            ImageRef::parse("library/busybox:1").unwrap(),
            ImageRef {
                name: "library/busybox".into(),
                tag: "1".into()
            }
        );
        assert_eq!(
            ImageRef::parse("host.lan/app:2").unwrap().to_string(),
            "host.lan/app:2"
        );
        assert_eq!(
            ImageRef::parse("busybox"),
            Err(RefError::NoTag("busybox".into()))
        );
        assert!(matches!(ImageRef::parse("Bad:1"), Err(RefError::Name(_))));
        assert!(matches!(ImageRef::parse("ok:.x"), Err(RefError::Tag(_))));
    }
}
