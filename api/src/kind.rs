//! The registry of resource kinds Skiff serves: names, groups, plurals, short names, scope.

use std::fmt;
use std::str::FromStr;

/// One resource kind. Everything the REST paths, the CLI and manifests need to know
/// about a kind lives in the tables below, so adding a kind is one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Deployment,
    ReplicaSet,
    DaemonSet,
    Job,
    Service,
    Endpoints,
    ServiceAccount,
    Event,
}

/// A kind name that matches nothing Skiff serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource type {0:?}")]
pub struct UnknownKind(pub String);

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::Service,
        Kind::Endpoints,
        Kind::ServiceAccount,
        Kind::Event,
    ];

    /// The `kind` field of a manifest, e.g. `Deployment`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Event => "Event",
        }
    }

    /// API group: `""` for the core group.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet => "apps",
            Kind::Job => "batch",
            _ => "",
        }
    }

    /// The `apiVersion` of a manifest, e.g. `apps/v1`.
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "apps" => "apps/v1",
            "batch" => "batch/v1",
            _ => "v1",
        }
    }

    /// The lower-case plural used in REST paths, e.g. `deployments`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::DaemonSet => "daemonsets",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Event => "events",
        }
    }

    /// The lower-case singular, e.g. `deployment`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Endpoints => "endpoints",
            _ => {
                let p = self.plural();
                &p[..p.len() - 1]
            }
        }
    }

    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::DaemonSet => &["ds"],
            Kind::Job => &[],
            Kind::Service => &["svc"],
            Kind::Endpoints => &["ep"],
            Kind::ServiceAccount => &["sa"],
            Kind::Event => &["ev"],
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    /// Whether objects of this kind carry a `status` (and so a `/status` subresource).
    pub fn has_status(self) -> bool {
        !matches!(
            self,
            Kind::Service | Kind::Endpoints | Kind::ServiceAccount | Kind::Event
        )
    }

    /// The field paths a field selector may name for this kind (see `Object::field`).
    pub fn selectable_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
            ],
            Kind::Namespace => &["metadata.name", "metadata.namespace", "status.phase"],
            Kind::Node => &["metadata.name", "metadata.namespace", "spec.unschedulable"],
            Kind::Event => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }

    /// `deployment.apps`, `pod` (core kinds carry no group), as kubectl prints it.
    pub fn qualified_singular(self) -> String {
        match self.group() {
            "" => self.singular().to_string(),
            g => format!("{}.{}", self.singular(), g),
        }
    }

    /// Looks a kind up by its manifest `apiVersion` and `kind`.
    pub fn from_api_version_kind(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.api_version() == api_version)
    }

    /// Looks a kind up by its REST group and plural, e.g. (`apps`, `deployments`).
    pub fn from_group_plural(group: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == plural)
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts what a CLI user types: `pods`, `pod`, `po`, `Pod`, `deployment.apps`,
    /// `deployments.apps`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let (name, group) = match lower.split_once('.') {
            Some((n, g)) => (n.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        Kind::ALL
            .into_iter()
            .find(|k| {
                let group_ok = group.as_deref().is_none_or(|g| g == k.group());
                group_ok
                    && (name == k.plural()
                        || name == k.singular()
                        || name == k.name().to_ascii_lowercase()
                        || k.short_names().contains(&name.as_str()))
            })
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_resolves() {
        for k in Kind::ALL {
            assert_eq!(k.plural().parse::<Kind>(), Ok(k));
            assert_eq!(k.singular().parse::<Kind>(), Ok(k));
            assert_eq!(k.name().parse::<Kind>(), Ok(k));
            for s in k.short_names() {
                assert_eq!(s.parse::<Kind>(), Ok(k));
            }
            assert_eq!(
                Kind::from_api_version_kind(k.api_version(), k.name()),
                Some(k)
            );
            assert_eq!(Kind::from_group_plural(k.group(), k.plural()), Some(k));
        }
        assert_eq!("deployments.apps".parse::<Kind>(), Ok(Kind::Deployment));
        assert!("deployments.batch".parse::<Kind>().is_err());
        assert!("widgets".parse::<Kind>().is_err());
        assert_eq!(Kind::Deployment.qualified_singular(), "deployment.apps");
        assert_eq!(Kind::Pod.qualified_singular(), "pod");
    }
}
