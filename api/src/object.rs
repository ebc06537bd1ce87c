//! `Object`: any resource Skiff stores, as one enum, with the accessors the hub, the
//! CLI and the agent use without caring which kind it is.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::resources::{
    DaemonSet, Deployment, Endpoints, Event, Job, Namespace, Node, Pod, ReplicaSet, Service,
    ServiceAccount,
};
use crate::{Kind, ObjectMeta};

/// Top-level fields that are not part of the spec when comparing specs.
const NON_SPEC_FIELDS: [&str; 2] = ["metadata", "status"];

/// Where an object lives: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.qualified_singular(), self.name)
        } else {
            write!(
                f,
                "{}/{} in namespace {}",
                self.kind.qualified_singular(),
                self.name,
                self.namespace
            )
        }
    }
}

macro_rules! objects {
    ($($kind:ident),* $(,)?) => {
        /// Any stored resource. `apiVersion` and `kind` are implied by the variant and
        /// written back by [`Object::to_json`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($kind($kind),)*
        }

        impl Object {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Object::$kind(_) => Kind::$kind,)*
                }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)*
                }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$kind(o) => &mut o.metadata,)*
                }
            }

            /// The object's fields without `apiVersion` and `kind`.
            fn body_json(&self) -> Value {
                match self {
                    $(Object::$kind(o) => to_value(o),)*
                }
            }

            /// Serializes the object's fields (without `apiVersion` and `kind`) as JSON.
            fn write_body(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                match self {
                    $(Object::$kind(o) => serde_json::to_writer(out, o),)*
                }
            }

            /// A new object of `kind` with the given metadata and everything else unset.
            // Kinds with nothing but metadata make the struct update a no-op.
            #[allow(clippy::needless_update)]
            pub fn new(kind: Kind, metadata: ObjectMeta) -> Object {
                match kind {
                    $(Kind::$kind => Object::$kind($kind { metadata, ..$kind::default() }),)*
                }
            }

            /// Builds the variant for `kind` from a JSON body that has no `apiVersion`
            /// or `kind`. Errors name the full field path of the first problem.
            pub(crate) fn from_body(
                kind: Kind,
                body: Value,
            ) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
                Ok(match kind {
                    $(Kind::$kind => Object::$kind(serde_path_to_error::deserialize(body)?),)*
                })
            }
        }

        $(
            impl From<$kind> for Object {
                fn from(o: $kind) -> Object {
                    Object::$kind(o)
                }
            }
        )*
    };
}

objects!(
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
);

fn to_value<T: Serialize>(v: &T) -> Value {
    // Serializing these plain data types cannot fail: string-keyed maps, no custom
    // serializers that error.
    serde_json::to_value(v).expect("resource types always serialize")
}

impl Object {
    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(self.kind(), m.namespace_or_empty(), m.name.clone())
    }

    /// The Kubernetes JSON form: `apiVersion`, `kind`, then the object's fields.
    pub fn to_json(&self) -> Value {
        let kind = self.kind();
        let mut out = Map::new();
        out.insert("apiVersion".into(), Value::from(kind.api_version()));
        out.insert("kind".into(), Value::from(kind.name()));
        if let Value::Object(body) = self.body_json() {
            out.extend(body);
        }
        Value::Object(out)
    }

    /// Appends the Kubernetes JSON form (the same text as `to_json().to_string()`) to
    /// `out`, serializing the typed object directly: lists of thousands of objects and
    /// every store write go through here, so no intermediate `Value` tree is built.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let kind = self.kind();
        let mut body = Vec::with_capacity(1024);
        self.write_body(&mut body)
            .expect("resource types always serialize");
        out.extend_from_slice(b"{\"apiVersion\":\"");
        out.extend_from_slice(kind.api_version().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(kind.name().as_bytes());
        out.push(b'"');
        // `body` is a JSON object: `{}` or `{"field":...}`.
        if body.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&body[1..]);
        } else {
            out.push(b'}');
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out);
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

impl Object {
    /// Everything but `metadata` and `status`, as JSON (for most kinds the `spec`
    /// object; for Endpoints the subsets; for Events the event's fields).
    pub fn spec_json(&self) -> Value {
        let mut body = self.body_json();
        if let Value::Object(map) = &mut body {
            for field in NON_SPEC_FIELDS {
                map.remove(field);
            }
        }
        body
    }

    /// Whether `self` and `other` are the same kind with the same desired state, i.e.
    /// equal in everything but metadata and status. The store bumps `generation` only
    /// when this is false.
    pub fn same_spec(&self, other: &Object) -> bool {
        // Compared on the typed values: the store asks this on every write, and building
        // two JSON trees per write cost more than the rest of a binding.
        match (self, other) {
            (Object::Namespace(a), Object::Namespace(b)) => {
                a.spec.clone().unwrap_or_default() == b.spec.clone().unwrap_or_default()
            }
            (Object::Node(a), Object::Node(b)) => a.spec == b.spec,
            (Object::Pod(a), Object::Pod(b)) => a.spec == b.spec,
            (Object::Deployment(a), Object::Deployment(b)) => a.spec == b.spec,
            (Object::ReplicaSet(a), Object::ReplicaSet(b)) => a.spec == b.spec,
            (Object::DaemonSet(a), Object::DaemonSet(b)) => a.spec == b.spec,
            (Object::Job(a), Object::Job(b)) => a.spec == b.spec,
            (Object::Service(a), Object::Service(b)) => a.spec == b.spec,
            (Object::Endpoints(a), Object::Endpoints(b)) => a.subsets == b.subsets,
            (Object::ServiceAccount(_), Object::ServiceAccount(_)) => true,
            (Object::Event(a), Object::Event(b)) => {
                // An event's fields are all "spec": everything but its metadata.
                let mut a = a.clone();
                a.metadata.clone_from(&b.metadata);
                &a == b
            }
            _ => false,
        }
    }

    /// The `status` as JSON, `None` if unset or the kind has none.
    pub fn status_json(&self) -> Option<Value> {
        match self.body_json() {
            Value::Object(mut map) => map.remove("status"),
            _ => None,
        }
    }

    /// `self` with its status replaced by `other`'s, everything else kept.
    ///
    /// The REST layer uses it both ways: a PUT on the resource stores
    /// `body.with_status_of(&stored)` (users cannot write status there), and a PUT on
    /// `/status` stores `stored.with_status_of(&body)` (only status changes). Kinds
    /// without status, and a mismatched pair of kinds, return `self` unchanged.
    pub fn with_status_of(mut self, other: &Object) -> Object {
        match (&mut self, other) {
            (Object::Namespace(a), Object::Namespace(b)) => a.status.clone_from(&b.status),
            (Object::Node(a), Object::Node(b)) => a.status.clone_from(&b.status),
            (Object::Pod(a), Object::Pod(b)) => a.status.clone_from(&b.status),
            (Object::Deployment(a), Object::Deployment(b)) => a.status.clone_from(&b.status),
            (Object::ReplicaSet(a), Object::ReplicaSet(b)) => a.status.clone_from(&b.status),
            (Object::DaemonSet(a), Object::DaemonSet(b)) => a.status.clone_from(&b.status),
            (Object::Job(a), Object::Job(b)) => a.status.clone_from(&b.status),
            _ => {}
        }
        self
    }

    /// Removes the status (a create ignores any status the client sent).
    pub fn clear_status(&mut self) {
        match self {
            Object::Namespace(o) => o.status = None,
            Object::Node(o) => o.status = None,
            Object::Pod(o) => o.status = None,
            Object::Deployment(o) => o.status = None,
            Object::ReplicaSet(o) => o.status = None,
            Object::DaemonSet(o) => o.status = None,
            Object::Job(o) => o.status = None,
            Object::Service(_)
            | Object::Endpoints(_)
            | Object::ServiceAccount(_)
            | Object::Event(_) => {}
        }
    }

    /// The value of a field that field selectors may name (the paths in
    /// [`Kind::selectable_fields`]). A supported field that is unset reads as `""`;
    /// `None` means this kind does not support the path.
    pub fn field(&self, path: &str) -> Option<String> {
        let meta = self.meta();
        match path {
            "metadata.name" => return Some(meta.name.clone()),
            "metadata.namespace" => return Some(meta.namespace_or_empty().to_string()),
            _ => {}
        }
        let text = |s: Option<&str>| Some(s.unwrap_or_default().to_string());
        match self {
            Object::Pod(pod) => {
                let spec = &pod.spec;
                let status = pod.status.as_ref();
                match path {
                    "spec.nodeName" => text(spec.node_name.as_deref()),
                    "spec.restartPolicy" => text(spec.restart_policy.map(|p| p.as_str())),
                    "spec.schedulerName" => text(spec.scheduler_name.as_deref()),
                    "spec.serviceAccountName" => text(spec.service_account_name.as_deref()),
                    "spec.hostNetwork" => Some(spec.host_network.to_string()),
                    "status.phase" => text(status.and_then(|s| s.phase).map(|p| p.as_str())),
                    "status.podIP" => text(status.and_then(|s| s.pod_ip.as_deref())),
                    _ => None,
                }
            }
            Object::Namespace(ns) => match path {
                "status.phase" => {
                    text(ns.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()))
                }
                _ => None,
            },
            Object::Node(node) => match path {
                "spec.unschedulable" => Some(node.spec.unschedulable.to_string()),
                _ => None,
            },
            Object::Event(ev) => {
                let default_ref = Default::default();
                let r: &crate::resources::ObjectReference =
                    ev.involved_object.as_ref().unwrap_or(&default_ref);
                match path {
                    "involvedObject.kind" => Some(r.kind.clone()),
                    "involvedObject.namespace" => Some(r.namespace.clone()),
                    "involvedObject.name" => Some(r.name.clone()),
                    "involvedObject.uid" => text(r.uid.as_ref().map(|u| u.0.as_str())),
                    "involvedObject.apiVersion" => Some(r.api_version.clone()),
                    "involvedObject.resourceVersion" => Some(r.resource_version.clone()),
                    "involvedObject.fieldPath" => Some(r.field_path.clone()),
                    "reason" => Some(ev.reason.clone()),
                    "reportingComponent" => Some(ev.reporting_component.clone()),
                    "source" => Some(ev.source.component.clone()),
                    "type" => text(ev.type_.map(|t| t.as_str())),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{
        Container, EventSeverity, NamespacePhase, NamespaceStatus, ObjectReference, PodPhase,
        PodStatus,
    };

    fn pod(name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = name.into();
        pod.metadata.namespace = Some("default".into());
        pod.spec.containers.push(Container {
            name: "app".into(),
            image: "busybox".into(),
            ..Container::default()
        });
        pod
    }

    #[test]
    fn json_form_has_api_version_and_kind_first() {
        let obj = Object::from(pod("web"));
        let json = obj.to_json();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys[..3], ["apiVersion", "kind", "metadata"]);
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "Pod");
        assert_eq!(obj.key(), ObjectKey::new(Kind::Pod, "default", "web"));
        assert_eq!(obj.key().to_string(), "pod/web in namespace default");
    }

    #[test]
    fn new_builds_each_kind() {
        for kind in Kind::ALL {
            let meta = ObjectMeta {
                name: "x".into(),
                ..ObjectMeta::default()
            };
            let obj = Object::new(kind, meta);
            assert_eq!(obj.kind(), kind);
            assert_eq!(obj.meta().name, "x");
            assert_eq!(obj.to_json()["kind"], kind.name());
        }
    }

    #[test]
    fn write_json_matches_to_json() {
        let mut p = pod("web");
        p.metadata.labels.insert("app".into(), "web".into());
        for obj in [
            Object::from(p),
            Object::new(Kind::Namespace, ObjectMeta::default()),
        ] {
            assert_eq!(obj.to_json_string(), obj.to_json().to_string());
            let back = crate::parse_object_json(obj.to_json_string().as_bytes()).unwrap();
            assert_eq!(back, obj);
        }
    }

    #[test]
    fn same_spec_ignores_metadata_and_status() {
        let a = Object::from(pod("web"));
        let mut b = pod("web");
        b.metadata.labels.insert("tier".into(), "front".into());
        b.metadata.resource_version = Some("7".into());
        b.status = Some(PodStatus {
            phase: Some(PodPhase::Running),
            ..PodStatus::default()
        });
        let b = Object::from(b);
        assert!(a.same_spec(&b));
        let mut c = pod("web");
        c.spec.containers[0].image = "busybox:1.36".into();
        assert!(!a.same_spec(&Object::from(c)));
        // Different kinds never share a spec.
        let ns = Object::new(Kind::Namespace, ObjectMeta::default());
        let sa = Object::new(Kind::ServiceAccount, ObjectMeta::default());
        assert!(!ns.same_spec(&sa));
        assert!(a.spec_json().get("spec").is_some());
        assert!(a.spec_json().get("metadata").is_none());
    }

    #[test]
    fn status_moves_between_objects() {
        let mut stored = pod("web");
        stored.status = Some(PodStatus {
            phase: Some(PodPhase::Running),
            pod_ip: Some("10.1.0.5".into()),
            ..PodStatus::default()
        });
        let stored = Object::from(stored);

        // PUT on the resource: the body's spec and labels, the stored status.
        let mut body = pod("web");
        body.spec.containers[0].image = "busybox:1.36".into();
        body.status = Some(PodStatus {
            phase: Some(PodPhase::Failed),
            ..PodStatus::default()
        });
        let updated = Object::from(body.clone()).with_status_of(&stored);
        assert_eq!(updated.status_json(), stored.status_json());
        assert_eq!(updated.field("status.phase").as_deref(), Some("Running"));
        assert!(updated.same_spec(&Object::from(body.clone())));

        // PUT on /status: only the status changes.
        let status_only = stored.clone().with_status_of(&Object::from(body));
        assert!(status_only.same_spec(&stored));
        assert_eq!(status_only.field("status.phase").as_deref(), Some("Failed"));

        // Kinds without status, and mismatched kinds, are left alone.
        let sa = Object::new(Kind::ServiceAccount, ObjectMeta::default());
        assert_eq!(sa.clone().with_status_of(&stored), sa);
        assert_eq!(stored.clone().with_status_of(&sa), stored);
        assert_eq!(sa.status_json(), None);

        let mut cleared = stored.clone();
        cleared.clear_status();
        assert_eq!(cleared.status_json(), None);
    }

    #[test]
    fn field_values() {
        let mut p = pod("web");
        let obj = Object::from(p.clone());
        assert_eq!(obj.field("metadata.name").as_deref(), Some("web"));
        assert_eq!(obj.field("metadata.namespace").as_deref(), Some("default"));
        assert_eq!(obj.field("spec.nodeName").as_deref(), Some(""));
        assert_eq!(obj.field("status.phase").as_deref(), Some(""));
        assert_eq!(obj.field("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(obj.field("spec.containers"), None);
        p.spec.node_name = Some("edge-1".into());
        p.status = Some(PodStatus {
            phase: Some(PodPhase::Succeeded),
            ..PodStatus::default()
        });
        let obj = Object::from(p);
        assert_eq!(obj.field("spec.nodeName").as_deref(), Some("edge-1"));
        assert_eq!(obj.field("status.phase").as_deref(), Some("Succeeded"));

        let mut ns = crate::resources::Namespace::default();
        ns.metadata.name = "prod".into();
        ns.status = Some(NamespaceStatus {
            phase: Some(NamespacePhase::Terminating),
        });
        let ns = Object::from(ns);
        assert_eq!(ns.field("status.phase").as_deref(), Some("Terminating"));
        assert_eq!(ns.field("metadata.namespace").as_deref(), Some(""));
        assert_eq!(ns.field("spec.nodeName"), None);

        let ev = crate::resources::Event {
            involved_object: Some(ObjectReference {
                kind: "Pod".into(),
                name: "web".into(),
                ..ObjectReference::default()
            }),
            type_: Some(EventSeverity::Warning),
            ..Default::default()
        };
        let ev = Object::from(ev);
        assert_eq!(ev.field("involvedObject.kind").as_deref(), Some("Pod"));
        assert_eq!(ev.field("involvedObject.name").as_deref(), Some("web"));
        assert_eq!(ev.field("type").as_deref(), Some("Warning"));
    }

    #[test]
    fn every_selectable_field_is_readable() {
        for kind in Kind::ALL {
            let obj = Object::new(kind, ObjectMeta::default());
            for path in kind.selectable_fields() {
                assert!(obj.field(path).is_some(), "{kind} {path}");
            }
            assert_eq!(obj.field("spec.bogus"), None);
        }
    }
}
