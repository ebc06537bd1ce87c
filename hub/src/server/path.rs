//! REST paths: which kind, namespace, name and subresource a request path names.
//!
//! Core kinds live under `/api/v1`, the others under `/apis/{group}/v1`. Namespaced
//! kinds: `.../namespaces/{ns}/{plural}[/{name}[/status]]`, and `.../{plural}` for every
//! namespace at once. Cluster-scoped kinds: `.../{plural}[/{name}[/status]]`.

use skiff_api::{Kind, ObjectKey};

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    /// `None`: every namespace (collections of namespaced kinds) or a cluster-scoped kind.
    pub(crate) namespace: Option<String>,
    /// `None`: the collection.
    pub(crate) name: Option<String>,
    /// The `/status` subresource.
    pub(crate) status: bool,
}

impl Target {
    /// The object this path names, if it names one.
    pub(crate) fn key(&self) -> Option<ObjectKey> {
        let name = self.name.as_ref()?;
        Some(ObjectKey::new(
            self.kind,
            self.namespace.clone().unwrap_or_default(),
            name.clone(),
        ))
    }
}

const VERSION: &str = "v1";
const STATUS: &str = "status";

/// Parses a request path; `None` for anything that names no resource Skiff serves.
pub(crate) fn parse(path: &str) -> Option<Target> {
    let path = path.strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let decoded: Vec<String> = path.split('/').map(percent_decode).collect::<Option<_>>()?;
    if decoded.iter().any(|s| s.is_empty() || s.contains('/')) {
        return None;
    }
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", VERSION, rest @ ..] => ("", rest),
        ["apis", group, VERSION, rest @ ..] if !group.is_empty() => (*group, rest),
        _ => return None,
    };
    let kind = |plural: &str| Kind::from_group_plural(group, plural);
    let target = |kind: Kind, namespace: Option<&str>, name: Option<&str>, status: bool| Target {
        kind,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        status,
    };
    match rest {
        [plural] => kind(plural).map(|k| target(k, None, None, false)),
        ["namespaces", ns, plural, tail @ ..] if *plural != STATUS => {
            let k = kind(plural).filter(|k| k.namespaced())?;
            match tail {
                [] => Some(target(k, Some(ns), None, false)),
                [name] => Some(target(k, Some(ns), Some(name), false)),
                [name, STATUS] => Some(target(k, Some(ns), Some(name), true)),
                _ => None,
            }
        }
        [plural, name, tail @ ..] => {
            let k = kind(plural).filter(|k| !k.namespaced())?;
            match tail {
                [] => Some(target(k, None, Some(name), false)),
                [STATUS] => Some(target(k, None, Some(name), true)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The collection path of a kind in a namespace (or cluster-wide), as clients build it.
#[cfg(test)]
pub(crate) fn collection(kind: Kind, namespace: Option<&str>) -> String {
    let base = match kind.group() {
        "" => "/api/v1".to_string(),
        g => format!("/apis/{g}/v1"),
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", kind.plural()),
        None => format!("{base}/{}", kind.plural()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Kind, ns: Option<&str>, name: Option<&str>, status: bool) -> Option<Target> {
        Some(Target {
            kind,
            namespace: ns.map(String::from),
            name: name.map(String::from),
            status,
        })
    }

    #[test]
    fn routes() {
        let cases = [
            ("/api/v1/pods", t(Kind::Pod, None, None, false)),
            (
                "/api/v1/namespaces/default/pods",
                t(Kind::Pod, Some("default"), None, false),
            ),
            (
                "/api/v1/namespaces/default/pods/web",
                t(Kind::Pod, Some("default"), Some("web"), false),
            ),
            (
                "/api/v1/namespaces/default/pods/web/status",
                t(Kind::Pod, Some("default"), Some("web"), true),
            ),
            (
                "/api/v1/namespaces/default/pods/web/",
                t(Kind::Pod, Some("default"), Some("web"), false),
            ),
            ("/api/v1/nodes", t(Kind::Node, None, None, false)),
            ("/api/v1/nodes/n1", t(Kind::Node, None, Some("n1"), false)),
            (
                "/api/v1/nodes/n1/status",
                t(Kind::Node, None, Some("n1"), true),
            ),
            ("/api/v1/namespaces", t(Kind::Namespace, None, None, false)),
            (
                "/api/v1/namespaces/prod",
                t(Kind::Namespace, None, Some("prod"), false),
            ),
            (
                "/api/v1/namespaces/prod/status",
                t(Kind::Namespace, None, Some("prod"), true),
            ),
            (
                "/apis/apps/v1/deployments",
                t(Kind::Deployment, None, None, false),
            ),
            (
                "/apis/apps/v1/namespaces/a/deployments/d",
                t(Kind::Deployment, Some("a"), Some("d"), false),
            ),
            (
                "/apis/batch/v1/namespaces/a/jobs/j/status",
                t(Kind::Job, Some("a"), Some("j"), true),
            ),
            // Wrong group, version, scope or shape.
            ("/apis/apps/v1/namespaces/a/pods", None),
            ("/api/v1/namespaces/a/deployments", None),
            ("/api/v2/pods", None),
            ("/api/v1/pods/web", None),
            ("/api/v1/namespaces/a/nodes/n1", None),
            ("/api/v1/namespaces/a/pods/web/logs", None),
            ("/api/v1/nodes/n1/proxy", None),
            ("/api/v1/namespaces/a/pods/web/status/x", None),
            ("/api/v1/widgets", None),
            ("/api/v1", None),
            ("/api", None),
            ("/api/v1//pods", None),
            ("/healthz", None),
            // Escaped segments are decoded; an escaped slash cannot split a segment.
            (
                "/api/v1/namespaces/d%65v/pods/a%2Eb",
                t(Kind::Pod, Some("dev"), Some("a.b"), false),
            ),
            ("/api/v1/namespaces/a%2Fb/pods", None),
            ("/api/v1/namespaces/a%zz/pods", None),
            ("/api/v1/namespaces/a%/pods", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_collection_path() {
        for kind in Kind::ALL {
            let ns = kind.namespaced().then_some("ns1");
            let want = t(kind, ns, None, false);
            assert_eq!(parse(&collection(kind, ns)), want, "{kind}");
            assert_eq!(parse(&collection(kind, None)), t(kind, None, None, false));
        }
    }
}
