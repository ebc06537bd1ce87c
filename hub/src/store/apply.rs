//! The meaning of one write against the current object: what the store assigns on
//! create, keeps on update, how finalizers turn a delete into a mark, when nothing
//! changed. Pure decisions over plain data; the writer supplies the current object,
//! the time and the revision, and persists the outcome.

use std::sync::Arc;

use skiff_api::{Object, ObjectKey, Revision, Time, Uid};

use super::{Deleted, EventType, Mutation, StoreError, Written};

/// What one write does to the store.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Nothing changes and no revision is used; reply with this.
    Unchanged(Written),
    /// Store `object` (its `resourceVersion` is set when the revision is assigned).
    Put {
        object: Object,
        event: EventType,
        reply: ReplyAs,
    },
    /// Remove the object; `object` is its last state, published with the DELETED event.
    Remove { object: Object, reply: ReplyAs },
}

/// How the caller sees a change once it has its revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyAs {
    Stored,
    Removed,
    Marked,
}

impl ReplyAs {
    pub(crate) fn written(self, obj: Arc<Object>) -> Written {
        match self {
            ReplyAs::Stored => Written::Stored(obj),
            ReplyAs::Removed => Written::Deleted(Deleted::Removed(obj)),
            ReplyAs::Marked => Written::Deleted(Deleted::Marked(obj)),
        }
    }
}

/// Characters Kubernetes uses for `generateName` suffixes: no vowels, no look-alikes.
const NAME_SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const NAME_SUFFIX_LEN: usize = 5;

/// Fills in `metadata.name` from `generateName` when the name is empty, picking a
/// suffix not taken according to `taken`. Leaves the object alone otherwise.
pub(crate) fn resolve_generated_name(
    obj: &mut Object,
    taken: impl Fn(&ObjectKey) -> bool,
) -> Result<(), StoreError> {
    let meta = obj.meta();
    if !meta.name.is_empty() {
        return Ok(());
    }
    let Some(prefix) = meta.generate_name.clone().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    // A handful of tries: with 27^5 suffixes a collision streak means something is off.
    for _ in 0..8 {
        let suffix: String = (0..NAME_SUFFIX_LEN)
            .map(|_| {
                let i = rand::random_range(0..NAME_SUFFIX_CHARS.len());
                char::from(NAME_SUFFIX_CHARS[i])
            })
            .collect();
        obj.meta_mut().name = format!("{prefix}{suffix}");
        if !taken(&obj.key()) {
            return Ok(());
        }
    }
    Err(StoreError::AlreadyExists(obj.key()))
}

/// A new object: the store owns `uid`, `creationTimestamp`, `generation` and
/// `resourceVersion`.
pub(crate) fn create(
    mut obj: Object,
    current: Option<&Arc<Object>>,
    now: Time,
) -> Result<Outcome, StoreError> {
    normalize_namespace(&mut obj)?;
    let key = obj.key();
    if key.name.is_empty() {
        return Err(invalid(key, "metadata.name is required"));
    }
    if obj
        .meta()
        .resource_version
        .as_deref()
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(invalid(key, "resourceVersion must not be set on create"));
    }
    if current.is_some() {
        return Err(StoreError::AlreadyExists(key));
    }
    let meta = obj.meta_mut();
    meta.uid = Some(Uid(uuid::Uuid::new_v4().to_string()));
    meta.creation_timestamp = Some(now);
    meta.generation = Some(1);
    meta.resource_version = None;
    // Only a delete sets these.
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    Ok(Outcome::Put {
        object: obj,
        event: EventType::Added,
        reply: ReplyAs::Stored,
    })
}

/// A replacement, checked against the stored `resourceVersion` when the input has one.
pub(crate) fn update(new: Object, current: Option<&Arc<Object>>) -> Result<Outcome, StoreError> {
    let mut new = new;
    normalize_namespace(&mut new)?;
    let key = new.key();
    let Some(current) = current else {
        return Err(StoreError::NotFound(key));
    };
    let stored = stored_revision(current);
    if let Some(requested) = new
        .meta()
        .resource_version
        .as_deref()
        .filter(|s| !s.is_empty())
        && Revision::parse(requested) != Some(stored)
    {
        return Err(StoreError::Conflict {
            key,
            expected: requested.to_string(),
            actual: stored,
        });
    }
    Ok(replace(current, new))
}

/// Runs `mutation` on a copy of the current object, then stores it as an update that
/// cannot conflict (the writer runs it against the latest state).
pub(crate) fn mutate(
    key: &ObjectKey,
    mutation: Mutation,
    current: Option<&Arc<Object>>,
) -> Result<Outcome, StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotFound(key.clone()));
    };
    let mut obj = Object::clone(current);
    // The mutation is caller code running on the writer thread: a panic in it must
    // fail this one write, not stop the store.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mutation(&mut obj)));
    let changed = match ran {
        Ok(result) => result?,
        Err(_) => return Err(invalid(key.clone(), "the mutation panicked")),
    };
    if !changed {
        return Ok(Outcome::Unchanged(Written::Unchanged(Arc::clone(current))));
    }
    normalize_namespace(&mut obj)?;
    if obj.key() != *key {
        return Err(invalid(
            key.clone(),
            "a mutation must not change the object's kind, namespace or name",
        ));
    }
    Ok(replace(current, obj))
}

/// A delete: removal without finalizers, otherwise a one-time deletion mark.
pub(crate) fn delete(
    key: &ObjectKey,
    precondition: Option<Revision>,
    current: Option<&Arc<Object>>,
    now: Time,
) -> Result<Outcome, StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotFound(key.clone()));
    };
    let stored = stored_revision(current);
    if let Some(expected) = precondition
        && expected != stored
    {
        return Err(StoreError::Conflict {
            key: key.clone(),
            expected: expected.to_string(),
            actual: stored,
        });
    }
    let meta = current.meta();
    if meta.finalizers.is_empty() {
        return Ok(Outcome::Remove {
            object: Object::clone(current),
            reply: ReplyAs::Removed,
        });
    }
    if meta.deletion_timestamp.is_some() {
        return Ok(Outcome::Unchanged(Written::Deleted(Deleted::Marked(
            Arc::clone(current),
        ))));
    }
    let mut obj = Object::clone(current);
    let meta = obj.meta_mut();
    meta.deletion_timestamp = Some(now);
    // As Kubernetes does: a pending deletion is a change controllers must act on.
    meta.generation = Some(meta.generation.unwrap_or(0) + 1);
    Ok(Outcome::Put {
        object: obj,
        event: EventType::Modified,
        reply: ReplyAs::Marked,
    })
}

/// Applies the update rules to `new` replacing `current`: server-owned fields come from
/// the stored object, generation follows the spec, and a finished deletion removes.
fn replace(current: &Arc<Object>, mut new: Object) -> Outcome {
    let old = current.meta();
    let spec_changed = !current.same_spec(&new);
    let meta = new.meta_mut();
    meta.uid = old.uid.clone();
    meta.creation_timestamp = old.creation_timestamp;
    meta.deletion_timestamp = old.deletion_timestamp;
    meta.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    meta.resource_version = old.resource_version.clone();
    let generation = old.generation.unwrap_or(1);
    meta.generation = Some(if spec_changed {
        generation + 1
    } else {
        generation
    });
    if new == **current {
        return Outcome::Unchanged(Written::Unchanged(Arc::clone(current)));
    }
    let meta = new.meta();
    if meta.deletion_timestamp.is_some() && meta.finalizers.is_empty() {
        return Outcome::Remove {
            object: new,
            reply: ReplyAs::Removed,
        };
    }
    Outcome::Put {
        object: new,
        event: EventType::Modified,
        reply: ReplyAs::Stored,
    }
}

/// Checks the namespace against the kind's scope; an empty namespace on a
/// cluster-scoped object is dropped so the stored form is canonical.
fn normalize_namespace(obj: &mut Object) -> Result<(), StoreError> {
    let namespaced = obj.kind().namespaced();
    let meta = obj.meta_mut();
    if meta.namespace.as_deref() == Some("") {
        meta.namespace = None;
    }
    match (namespaced, meta.namespace.is_some()) {
        (true, false) => Err(invalid(
            obj.key(),
            &format!(
                "{} is namespaced: metadata.namespace is required",
                obj.kind()
            ),
        )),
        (false, true) => Err(invalid(
            obj.key(),
            &format!(
                "{} is cluster-scoped: metadata.namespace must be empty",
                obj.kind()
            ),
        )),
        _ => Ok(()),
    }
}

/// The revision of a stored object. The writer only ever stores objects with one set.
fn stored_revision(obj: &Object) -> Revision {
    obj.meta().revision().unwrap_or_default()
}

fn invalid(key: ObjectKey, message: &str) -> StoreError {
    StoreError::Invalid {
        key,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use skiff_api::resources::{Node, Pod};
    use skiff_api::{Kind, ObjectMeta};

    use super::*;

    fn t(secs: i64) -> Time {
        Time::from_datetime(
            chrono::Utc
                .timestamp_opt(secs, 0)
                .single()
                .unwrap_or_default(),
        )
    }

    fn pod(name: &str, node: Option<&str>) -> Object {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        pod.spec.node_name = node.map(String::from);
        Object::Pod(pod)
    }

    /// Stores an outcome the way the writer does, at `rev`.
    fn stored(outcome: Outcome, rev: u64) -> Arc<Object> {
        match outcome {
            Outcome::Put { mut object, .. } | Outcome::Remove { mut object, .. } => {
                object.meta_mut().set_revision(Revision(rev));
                Arc::new(object)
            }
            Outcome::Unchanged(w) => panic!("expected a change, got {w:?}"),
        }
    }

    fn created(name: &str, rev: u64) -> Arc<Object> {
        stored(create(pod(name, None), None, t(100)).unwrap(), rev)
    }

    #[test]
    fn create_assigns_server_fields() {
        let mut input = pod("a", None);
        input.meta_mut().uid = Some(Uid("client-chosen".into()));
        input.meta_mut().generation = Some(7);
        input.meta_mut().deletion_timestamp = Some(t(5));
        let Outcome::Put { object, event, .. } = create(input, None, t(100)).unwrap() else {
            panic!("create must store");
        };
        let m = object.meta();
        assert_eq!(event, EventType::Added);
        assert_ne!(m.uid.as_ref().unwrap().0, "client-chosen");
        assert_eq!(m.uid.as_ref().unwrap().0.len(), 36);
        assert_eq!(m.creation_timestamp, Some(t(100)));
        assert_eq!(m.generation, Some(1));
        assert_eq!(m.deletion_timestamp, None);
    }

    #[test]
    fn create_rejects_resource_version_existing_and_bad_scope() {
        let mut with_rv = pod("a", None);
        with_rv.meta_mut().resource_version = Some("3".into());
        assert!(matches!(
            create(with_rv, None, t(1)),
            Err(StoreError::Invalid { .. })
        ));

        let existing = created("a", 1);
        assert!(matches!(
            create(pod("a", None), Some(&existing), t(1)),
            Err(StoreError::AlreadyExists(k)) if k == ObjectKey::new(Kind::Pod, "default", "a")
        ));

        let mut no_ns = pod("a", None);
        no_ns.meta_mut().namespace = None;
        assert!(matches!(
            create(no_ns, None, t(1)),
            Err(StoreError::Invalid { .. })
        ));

        let node_in_ns = Object::Node(Node {
            metadata: ObjectMeta {
                name: "n".into(),
                namespace: Some("default".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(matches!(
            create(node_in_ns, None, t(1)),
            Err(StoreError::Invalid { .. })
        ));

        let node_empty_ns = Object::Node(Node {
            metadata: ObjectMeta {
                name: "n".into(),
                namespace: Some(String::new()),
                ..Default::default()
            },
            ..Default::default()
        });
        let Outcome::Put { object, .. } = create(node_empty_ns, None, t(1)).unwrap() else {
            panic!("create must store");
        };
        assert_eq!(object.meta().namespace, None);

        assert!(matches!(
            create(pod("", None), None, t(1)),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let mut obj = pod("", None);
        obj.meta_mut().generate_name = Some("web-".into());
        let first_try = std::cell::Cell::new(true);
        resolve_generated_name(&mut obj, |_| first_try.replace(false)).unwrap();
        let name = &obj.meta().name;
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(!first_try.get(), "the first, taken, name was checked");

        let mut always_taken = pod("", None);
        always_taken.meta_mut().generate_name = Some("x-".into());
        assert!(matches!(
            resolve_generated_name(&mut always_taken, |_| true),
            Err(StoreError::AlreadyExists(_))
        ));
    }

    #[test]
    fn update_keeps_identity_and_bumps_generation_on_spec_change() {
        let cur = created("a", 4);
        let mut new = pod("a", Some("n1"));
        new.meta_mut().labels.insert("x".into(), "y".into());
        new.meta_mut().uid = Some(Uid("forged".into()));
        let out = stored(update(new, Some(&cur)).unwrap(), 5);
        assert_eq!(out.meta().uid, cur.meta().uid);
        assert_eq!(out.meta().creation_timestamp, cur.meta().creation_timestamp);
        assert_eq!(out.meta().generation, Some(2));

        let mut labels_only = Object::clone(&out);
        labels_only.meta_mut().labels.insert("x".into(), "z".into());
        let out2 = stored(update(labels_only, Some(&out)).unwrap(), 6);
        assert_eq!(out2.meta().generation, Some(2), "metadata-only change");
    }

    #[test]
    fn update_conflicts_on_stale_resource_version_and_accepts_current() {
        let cur = created("a", 4);
        let mut stale = pod("a", Some("n"));
        stale.meta_mut().resource_version = Some("3".into());
        assert!(matches!(
            update(stale, Some(&cur)),
            Err(StoreError::Conflict { actual: Revision(4), ref expected, .. }) if expected == "3"
        ));
        let mut garbage = pod("a", Some("n"));
        garbage.meta_mut().resource_version = Some("abc".into());
        assert!(matches!(
            update(garbage, Some(&cur)),
            Err(StoreError::Conflict { .. })
        ));
        let mut fresh = pod("a", Some("n"));
        fresh.meta_mut().resource_version = Some("4".into());
        assert!(matches!(update(fresh, Some(&cur)), Ok(Outcome::Put { .. })));
        assert!(matches!(
            update(pod("missing", None), None),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn update_that_changes_nothing_is_unchanged() {
        let cur = created("a", 4);
        let mut same = Object::clone(&cur);
        same.meta_mut().resource_version = None;
        let Outcome::Unchanged(Written::Unchanged(obj)) = update(same, Some(&cur)).unwrap() else {
            panic!("expected unchanged");
        };
        assert!(Arc::ptr_eq(&obj, &cur));
    }

    #[test]
    fn update_cannot_set_deletion_timestamp() {
        let cur = created("a", 4);
        let mut new = Object::clone(&cur);
        new.meta_mut().deletion_timestamp = Some(t(9));
        assert!(matches!(update(new, Some(&cur)), Ok(Outcome::Unchanged(_))));
    }

    #[test]
    fn delete_without_finalizers_removes_with_finalizers_marks_once() {
        let cur = created("a", 4);
        let key = cur.key();
        assert!(matches!(
            delete(&key, None, Some(&cur), t(50)),
            Ok(Outcome::Remove {
                reply: ReplyAs::Removed,
                ..
            })
        ));
        assert!(matches!(
            delete(&key, Some(Revision(3)), Some(&cur), t(50)),
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            delete(&key, None, None, t(50)),
            Err(StoreError::NotFound(_))
        ));

        let mut with_fin = Object::clone(&cur);
        with_fin.meta_mut().finalizers = vec!["skiff.io/test".into()];
        let with_fin = Arc::new(with_fin);
        let marked = stored(
            delete(&key, Some(Revision(4)), Some(&with_fin), t(50)).unwrap(),
            5,
        );
        assert_eq!(marked.meta().deletion_timestamp, Some(t(50)));
        assert_eq!(marked.meta().generation, Some(2));

        // Deleting again changes nothing: the first timestamp stays.
        let Outcome::Unchanged(Written::Deleted(Deleted::Marked(again))) =
            delete(&key, None, Some(&marked), t(99)).unwrap()
        else {
            panic!("second delete must be unchanged");
        };
        assert_eq!(again.meta().deletion_timestamp, Some(t(50)));

        // Clearing the finalizers finishes the deletion.
        let mut cleared = Object::clone(&marked);
        cleared.meta_mut().finalizers.clear();
        assert!(matches!(
            update(cleared, Some(&marked)),
            Ok(Outcome::Remove {
                reply: ReplyAs::Removed,
                ..
            })
        ));
    }

    #[test]
    fn mutate_rules() {
        let cur = created("a", 4);
        let key = cur.key();
        let unchanged = mutate(&key, Box::new(|_| Ok(false)), Some(&cur)).unwrap();
        assert!(matches!(
            unchanged,
            Outcome::Unchanged(Written::Unchanged(_))
        ));

        let bind = mutate(
            &key,
            Box::new(|o| {
                if let Object::Pod(p) = o {
                    p.spec.node_name = Some("n1".into());
                }
                Ok(true)
            }),
            Some(&cur),
        )
        .unwrap();
        let bound = stored(bind, 5);
        assert_eq!(bound.meta().generation, Some(2));

        let rename = mutate(
            &key,
            Box::new(|o| {
                o.meta_mut().name = "b".into();
                Ok(true)
            }),
            Some(&cur),
        );
        assert!(matches!(rename, Err(StoreError::Invalid { .. })));

        let panics = mutate(&key, Box::new(|_| panic!("boom")), Some(&cur));
        assert!(matches!(panics, Err(StoreError::Invalid { .. })));

        let refuses = mutate(
            &key,
            Box::new(|o| Err(StoreError::NotFound(o.key()))),
            Some(&cur),
        );
        assert!(matches!(refuses, Err(StoreError::NotFound(_))));
        assert!(matches!(
            mutate(&key, Box::new(|_| Ok(true)), None),
            Err(StoreError::NotFound(_))
        ));
    }
}
