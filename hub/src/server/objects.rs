//! Object surgery shared by the write handlers: checking a body against its URL, moving
//! `status` between objects (it is a subresource), keeping the fields the server owns,
//! defaulting and validating, and the read-modify-write loop with conflict retries.

use std::sync::Arc;

use serde_json::Value;
use skiff_api::{
    FieldError, FieldErrorKind, Object, ObjectKey, Revision, apply_defaults, parse_object_json,
    validate,
};

use super::AppState;
use super::path::Target;
use super::status::ApiError;
use crate::store::{Deleted, Mutation, StoreError, Written};

/// How often a read-modify-write is retried when another writer got in between.
const WRITE_ATTEMPTS: usize = 5;

/// Checks that a body names the kind, namespace and name of its URL, filling in an
/// empty namespace (and, for writes to one object, an empty name) from the URL.
/// Cluster-scoped objects never carry a namespace.
pub(crate) fn place(obj: &mut Object, target: &Target) -> Result<(), ApiError> {
    if obj.kind() != target.kind {
        return Err(ApiError::Mismatch {
            field: "kind",
            body: format!("{}/{}", obj.kind().api_version(), obj.kind().name()),
            url: format!("{}/{}", target.kind.api_version(), target.kind.name()),
        });
    }
    let meta = obj.meta_mut();
    if target.kind.namespaced() {
        let url_ns = target.namespace.clone().unwrap_or_default();
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = Some(url_ns),
            Some(ns) if ns == url_ns => {}
            Some(ns) => {
                return Err(ApiError::Mismatch {
                    field: "namespace",
                    body: ns.to_string(),
                    url: url_ns,
                });
            }
        }
    } else {
        meta.namespace = None;
    }
    if let Some(url_name) = &target.name {
        if meta.name.is_empty() {
            meta.name = url_name.clone();
        } else if &meta.name != url_name {
            return Err(ApiError::Mismatch {
                field: "name",
                body: meta.name.clone(),
                url: url_name.clone(),
            });
        }
    }
    Ok(())
}

/// `resourceVersion` a client sent as a precondition; unparsable ones can never match.
pub(crate) fn expected_revision(obj: &Object) -> Result<Option<Revision>, ApiError> {
    match obj.meta().resource_version.as_deref() {
        None | Some("") => Ok(None),
        Some(rv) => Revision::parse(rv)
            .map(Some)
            .ok_or_else(|| ApiError::Malformed(format!("invalid metadata.resourceVersion {rv:?}"))),
    }
}

/// Builds an object back from its JSON form.
pub(crate) fn from_json(doc: &Value) -> Result<Object, ApiError> {
    let bytes = serde_json::to_vec(doc).map_err(|e| ApiError::Malformed(e.to_string()))?;
    parse_object_json(&bytes).map_err(|e| ApiError::Malformed(e.to_string()))
}

/// `obj` with `status.<field>` set, other status fields kept.
pub(crate) fn with_status_field(
    obj: &Object,
    field: &str,
    value: &str,
) -> Result<Object, ApiError> {
    let mut doc = obj.to_json();
    if let Value::Object(map) = &mut doc {
        let status = map
            .entry("status")
            .or_insert_with(|| Value::Object(Default::default()));
        if !status.is_object() {
            *status = Value::Object(Default::default());
        }
        if let Value::Object(s) = status {
            s.insert(field.into(), value.into());
        }
    }
    from_json(&doc)
}

/// Copies the metadata only the server writes, so a client cannot change it and an
/// object read back and written unchanged compares equal.
pub(crate) fn keep_server_fields(from: &Object, into: &mut Object) {
    let old = from.meta();
    let meta = into.meta_mut();
    meta.uid = old.uid.clone();
    meta.resource_version = old.resource_version.clone();
    meta.generation = old.generation;
    meta.creation_timestamp = old.creation_timestamp;
    meta.deletion_timestamp = old.deletion_timestamp;
    meta.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
}

/// Clears what a create must not carry: the store assigns these.
pub(crate) fn clear_server_fields(obj: &mut Object) {
    let meta = obj.meta_mut();
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
}

/// Applies defaults, then validates: 422 with one cause per field.
pub(crate) fn defaulted_and_valid(mut obj: Object) -> Result<Object, ApiError> {
    apply_defaults(&mut obj);
    validate(&obj).map_err(|e| ApiError::Invalid {
        kind: obj.kind(),
        name: obj.meta().name.clone(),
        causes: e.0,
    })?;
    Ok(obj)
}

pub(crate) fn required_name(obj: &Object) -> ApiError {
    ApiError::Invalid {
        kind: obj.kind(),
        name: String::new(),
        causes: vec![FieldError {
            path: "metadata.name".into(),
            kind: FieldErrorKind::Required,
            message: "Required value: name or generateName is required".into(),
        }],
    }
}

fn conflict(key: &ObjectKey) -> ApiError {
    ApiError::from(StoreError::Conflict {
        key: key.clone(),
        expected: String::new(),
        actual: Revision::default(),
    })
}

/// Read-modify-write of one object: `build` computes the new object from the current
/// one (pure: it may run several times); server-owned metadata is kept; nothing is
/// written when the result equals the current object, so the revision stays. The
/// write only lands if nobody wrote in between, otherwise it is recomputed; with
/// `expected` set, the object must still be at that revision (409 otherwise).
pub(crate) async fn write_with_retry(
    state: &AppState,
    key: &ObjectKey,
    expected: Option<Revision>,
    build: impl Fn(&Object) -> Result<Object, ApiError>,
) -> Result<Arc<Object>, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let current = state
            .store
            .get(key)
            .ok_or_else(|| ApiError::NotFound(key.clone()))?;
        let base = current.meta().revision();
        if expected.is_some() && expected != base {
            return Err(conflict(key));
        }
        let mut next = build(&current)?;
        keep_server_fields(&current, &mut next);
        if next == *current {
            return Ok(current);
        }
        let conflict_key = key.clone();
        let mutation: Mutation = Box::new(move |obj: &mut Object| {
            let actual = obj.meta().revision();
            if actual != base {
                return Err(StoreError::Conflict {
                    key: conflict_key,
                    expected: base.map(|r| r.to_string()).unwrap_or_default(),
                    actual: actual.unwrap_or_default(),
                });
            }
            *obj = next;
            Ok(true)
        });
        match state.store.mutate(key.clone(), mutation).await {
            Ok(Written::Stored(o) | Written::Unchanged(o)) => return Ok(o),
            Ok(Written::Deleted(Deleted::Removed(o) | Deleted::Marked(o))) => return Ok(o),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict(key))
}

#[cfg(test)]
mod tests {
    use skiff_api::Kind;
    use skiff_api::resources::{Node, Pod};

    use super::*;

    fn target(kind: Kind, ns: Option<&str>, name: Option<&str>) -> Target {
        Target {
            kind,
            namespace: ns.map(String::from),
            name: name.map(String::from),
            status: false,
        }
    }

    #[test]
    fn place_fills_and_checks_namespace_name_and_kind() {
        let mut pod = Object::Pod(Pod::default());
        place(&mut pod, &target(Kind::Pod, Some("a"), Some("p"))).unwrap();
        assert_eq!(pod.key(), ObjectKey::new(Kind::Pod, "a", "p"));

        let err = place(&mut pod, &target(Kind::Pod, Some("b"), None)).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Mismatch {
                field: "namespace",
                ..
            }
        ));
        let err = place(&mut pod, &target(Kind::Pod, Some("a"), Some("q"))).unwrap_err();
        assert!(matches!(err, ApiError::Mismatch { field: "name", .. }));
        let err = place(&mut pod, &target(Kind::Deployment, Some("a"), None)).unwrap_err();
        assert!(matches!(err, ApiError::Mismatch { field: "kind", .. }));

        let mut node = Node::default();
        node.metadata.namespace = Some("a".into());
        let mut node = Object::Node(node);
        place(&mut node, &target(Kind::Node, None, None)).unwrap();
        assert_eq!(node.meta().namespace, None);
    }

    #[test]
    fn status_moves_between_objects() {
        let with = from_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "status": {"phase": "Running"},
        }))
        .unwrap();
        let without = from_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}},
        }))
        .unwrap();
        let moved = without.clone().with_status_of(&with);
        assert_eq!(moved.to_json()["status"]["phase"], "Running");
        assert_eq!(moved.meta().labels.len(), 1);
        let cleared = with.clone().with_status_of(&without);
        assert_eq!(cleared.to_json().get("status"), None);
        let set = with_status_field(&without, "phase", "Failed").unwrap();
        assert_eq!(set.to_json()["status"]["phase"], "Failed");
    }
}
