//! The in-memory copy of every current object, so reads never touch SQLite.
//!
//! Ordered by kind, namespace, name (the `ObjectKey` order), so a list of one kind, or of
//! one kind in one namespace, is a range scan that comes out sorted. Objects are shared
//! `Arc`s: the index, watch history and callers hold the same allocation.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use skiff_api::{Object, ObjectKey, Revision};

use super::Scope;

#[derive(Debug, Default)]
pub(crate) struct Index {
    objects: BTreeMap<ObjectKey, Arc<Object>>,
    /// The revision of the last committed write reflected in `objects`.
    revision: Revision,
}

impl Index {
    pub(crate) fn new(objects: BTreeMap<ObjectKey, Arc<Object>>, revision: Revision) -> Index {
        Index { objects, revision }
    }

    pub(crate) fn get(&self, key: &ObjectKey) -> Option<&Arc<Object>> {
        self.objects.get(key)
    }

    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// Objects in `scope`, sorted by namespace then name. A scope without a kind lists
    /// everything (sorted by kind first).
    pub(crate) fn list(&self, scope: &Scope) -> Vec<Arc<Object>> {
        let Some(kind) = scope.kind else {
            return self
                .objects
                .iter()
                .filter(|(k, _)| scope.matches(k))
                .map(|(_, o)| Arc::clone(o))
                .collect();
        };
        // The smallest key of the range: the empty name sorts first.
        let start = ObjectKey::new(kind, scope.namespace.clone().unwrap_or_default(), "");
        self.objects
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| scope.matches(k))
            .map(|(_, o)| Arc::clone(o))
            .collect()
    }

    pub(crate) fn put(&mut self, key: ObjectKey, obj: Arc<Object>) {
        self.objects.insert(key, obj);
    }

    pub(crate) fn remove(&mut self, key: &ObjectKey) {
        self.objects.remove(key);
    }

    pub(crate) fn set_revision(&mut self, revision: Revision) {
        self.revision = revision;
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::{Node, Pod};
    use skiff_api::{Kind, ObjectMeta};

    use super::*;

    fn pod(ns: &str, name: &str) -> Arc<Object> {
        Arc::new(Object::Pod(Pod {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }

    fn names(v: &[Arc<Object>]) -> Vec<String> {
        v.iter()
            .map(|o| format!("{}/{}", o.meta().namespace_or_empty(), o.meta().name))
            .collect()
    }

    #[test]
    fn list_is_a_sorted_range_of_one_kind_and_namespace() {
        let mut idx = Index::default();
        for (ns, name) in [("b", "z"), ("a", "y"), ("b", "a"), ("ab", "q"), ("a", "x")] {
            let o = pod(ns, name);
            idx.put(o.key(), o);
        }
        let node = Arc::new(Object::Node(Node {
            metadata: ObjectMeta {
                name: "n1".into(),
                ..Default::default()
            },
            ..Default::default()
        }));
        idx.put(node.key(), node);

        assert_eq!(
            names(&idx.list(&Scope::kind(Kind::Pod))),
            ["a/x", "a/y", "ab/q", "b/a", "b/z"]
        );
        assert_eq!(
            names(&idx.list(&Scope::in_namespace(Kind::Pod, "a"))),
            ["a/x", "a/y"]
        );
        assert_eq!(
            names(&idx.list(&Scope::in_namespace(Kind::Pod, "c"))),
            Vec::<String>::new()
        );
        assert_eq!(names(&idx.list(&Scope::kind(Kind::Node))), ["/n1"]);
        assert_eq!(idx.list(&Scope::default()).len(), 6);
        idx.remove(&ObjectKey::new(Kind::Pod, "a", "x"));
        assert_eq!(
            names(&idx.list(&Scope::in_namespace(Kind::Pod, "a"))),
            ["a/y"]
        );
    }
}
