//! `Object`: any resource Skiff stores, as one enum, with the accessors the hub, the
//! CLI and the agent use without caring which kind it is.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::resources::{
    DaemonSet, Deployment, Endpoints, Event, Job, Namespace, Node, Pod, ReplicaSet, Service,
    ServiceAccount,
};
use crate::{Kind, ObjectMeta};

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

    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

impl Object {
    /// The value of a field that field selectors may name: `metadata.name`,
    /// `metadata.namespace`, `spec.nodeName`, `status.phase`. `None` for an unsupported
    /// path or a field this kind does not have. (Only the metadata paths so far.)
    pub fn field(&self, path: &str) -> Option<String> {
        match path {
            "metadata.name" => Some(self.meta().name.clone()),
            "metadata.namespace" => Some(self.meta().namespace_or_empty().to_string()),
            _ => None,
        }
    }
}
