//! Which pods are bound to which node, and at which revision each last changed in a
//! way the agent cares about (spec, labels, annotations, deletion). Pure: fed store
//! events and agents' sync requests, it returns the messages to send.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use skiff_api::protocol::PodRef;
use skiff_api::{Object, Revision};

use super::sent::Sent;

/// A message for one node's desired-state topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Upsert {
        node: String,
        revision: u64,
        pod: Arc<Object>,
    },
    Delete {
        node: String,
        revision: u64,
        namespace: String,
        name: String,
        uid: String,
    },
}

#[derive(Debug)]
struct Entry {
    node: String,
    /// The latest object seen, to compare the next event against and to send.
    pod: Arc<Object>,
    /// The revision of the last change the agent must see.
    desired: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PodIndex {
    by_uid: HashMap<String, Entry>,
    by_node: HashMap<String, BTreeSet<String>>,
    /// The store revision everything here reflects.
    revision: u64,
    /// What a previous hub process recorded as sent, used by the first relist only.
    seed: Option<Sent>,
}

fn bound_node(pod: &Object) -> Option<&str> {
    match pod {
        Object::Pod(p) => p.spec.node_name.as_deref().filter(|n| !n.is_empty()),
        _ => None,
    }
}

/// Whether the agent must hear about the change from `old` to `new`: anything but
/// status and bookkeeping (resourceVersion, generation, managed timestamps).
pub(crate) fn desired_changed(old: &Object, new: &Object) -> bool {
    let (a, b) = (old.meta(), new.meta());
    !old.same_spec(new)
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.deletion_timestamp != b.deletion_timestamp
        || a.deletion_grace_period_seconds != b.deletion_grace_period_seconds
        || a.owner_references != b.owner_references
}

impl PodIndex {
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    fn insert(&mut self, uid: &str, node: &str, pod: Arc<Object>, rev: u64) -> Change {
        self.by_node
            .entry(node.to_string())
            .or_default()
            .insert(uid.to_string());
        self.by_uid.insert(
            uid.to_string(),
            Entry {
                node: node.to_string(),
                pod: pod.clone(),
                desired: rev,
            },
        );
        Change::Upsert {
            node: node.to_string(),
            revision: rev,
            pod,
        }
    }

    fn remove(&mut self, uid: &str, rev: u64) -> Option<Change> {
        let entry = self.by_uid.remove(uid)?;
        if let Some(set) = self.by_node.get_mut(&entry.node) {
            set.remove(uid);
            if set.is_empty() {
                self.by_node.remove(&entry.node);
            }
        }
        let meta = entry.pod.meta();
        Some(Change::Delete {
            node: entry.node.clone(),
            revision: rev,
            namespace: meta.namespace_or_empty().to_string(),
            name: meta.name.clone(),
            uid: uid.to_string(),
        })
    }

    /// Applies one store event for a pod (`deleted`: the pod is gone at `rev`).
    pub(crate) fn observe(
        &mut self,
        pod: &Arc<Object>,
        rev: Revision,
        deleted: bool,
    ) -> Vec<Change> {
        self.revision = self.revision.max(rev.0);
        let Some(uid) = pod.meta().uid.as_ref().map(|u| u.0.clone()) else {
            return Vec::new();
        };
        let node = if deleted { None } else { bound_node(pod) };
        let mut out = Vec::new();
        match (self.by_uid.get_mut(&uid), node) {
            (None, None) => {}
            (None, Some(n)) => {
                let n = n.to_string();
                out.push(self.insert(&uid, &n, pod.clone(), rev.0));
            }
            (Some(_), None) => out.extend(self.remove(&uid, rev.0)),
            (Some(e), Some(n)) if e.node != n => {
                let n = n.to_string();
                out.extend(self.remove(&uid, rev.0));
                out.push(self.insert(&uid, &n, pod.clone(), rev.0));
            }
            (Some(e), Some(_)) => {
                if desired_changed(&e.pod, pod) {
                    e.desired = rev.0;
                    out.push(Change::Upsert {
                        node: e.node.clone(),
                        revision: rev.0,
                        pod: pod.clone(),
                    });
                }
                e.pod = pod.clone();
            }
        }
        out
    }

    /// Hands in what a previous process recorded as sent ([`Sent`]); the next relist
    /// takes a pod unchanged since that record as held by its node at the recorded
    /// revision, instead of sending it again.
    pub(crate) fn seed(&mut self, sent: Sent) {
        self.seed = Some(sent);
    }

    /// What to record so that a later process can [`seed`](Self::seed) from it.
    pub(crate) fn sent(&self) -> Sent {
        Sent {
            revision: self.revision,
            pods: self
                .by_uid
                .iter()
                .map(|(uid, e)| (uid.clone(), e.desired))
                .collect(),
        }
    }

    /// Replaces everything with a fresh list at `rev` (after the watch fell behind),
    /// returning what changed meanwhile.
    pub(crate) fn relist(&mut self, pods: &[Arc<Object>], rev: Revision) -> Vec<Change> {
        let seed = self.seed.take();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for pod in pods {
            let uid = pod.meta().uid.as_ref().map(|u| u.0.as_str());
            if let Some(uid) = uid {
                seen.insert(uid.to_string());
            }
            // A pod whose object did not change compares equal and yields nothing.
            let at = pod.meta().revision().unwrap_or(rev);
            let fresh = uid.is_some_and(|u| !self.by_uid.contains_key(u));
            let changes = self.observe(pod, at, false);
            // Unchanged since the record was written: the node holds it as recorded.
            let held = seed.as_ref().zip(uid).and_then(|(s, u)| {
                let d = *s.pods.get(u)?;
                (fresh && at.0 <= s.revision && d <= at.0).then_some((u, d))
            });
            match held {
                Some((u, d)) => {
                    if let Some(e) = self.by_uid.get_mut(u) {
                        e.desired = d;
                    }
                    out.extend(
                        changes
                            .into_iter()
                            .filter(|c| !matches!(c, Change::Upsert { .. })),
                    );
                }
                None => out.extend(changes),
            }
        }
        let gone: Vec<String> = self
            .by_uid
            .keys()
            .filter(|u| !seen.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            out.extend(self.remove(&uid, rev.0));
        }
        self.revision = self.revision.max(rev.0);
        out
    }

    /// How many pods are bound to `node`.
    pub(crate) fn count(&self, node: &str) -> usize {
        self.by_node.get(node).map_or(0, BTreeSet::len)
    }

    /// The answer to a node's `Sync`: upserts for pods it lacks or holds at an older
    /// revision, deletes for pods it holds that are no longer bound to it.
    pub(crate) fn diff(&self, node: &str, held: &[PodRef]) -> Vec<Change> {
        let held_by_uid: HashMap<&str, &PodRef> =
            held.iter().map(|p| (p.uid.as_str(), p)).collect();
        let mut out = Vec::new();
        let ours = self.by_node.get(node);
        for uid in ours.into_iter().flatten() {
            let e = &self.by_uid[uid];
            if held_by_uid
                .get(uid.as_str())
                .is_none_or(|p| p.revision < e.desired)
            {
                out.push(Change::Upsert {
                    node: node.to_string(),
                    revision: e.desired,
                    pod: e.pod.clone(),
                });
            }
        }
        for p in held {
            if !ours.is_some_and(|s| s.contains(&p.uid)) {
                out.push(Change::Delete {
                    node: node.to_string(),
                    revision: self.revision,
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                });
            }
        }
        out
    }

    /// Whether `uid` is bound to `node`.
    pub(crate) fn bound_to(&self, uid: &str, node: &str) -> bool {
        self.by_uid.get(uid).is_some_and(|e| e.node == node)
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::{Container, Pod, PodPhase, PodStatus};
    use skiff_api::{Time, Uid};

    use super::*;

    fn pod(name: &str, uid: &str, node: Option<&str>, rev: u64) -> Arc<Object> {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(Uid(uid.into()));
        p.metadata.set_revision(Revision(rev));
        p.spec.node_name = node.map(String::from);
        p.spec.containers.push(Container {
            name: "app".into(),
            image: "busybox".into(),
            ..Container::default()
        });
        Arc::new(Object::Pod(p))
    }

    fn edit(obj: &Arc<Object>, rev: u64, f: impl FnOnce(&mut Pod)) -> Arc<Object> {
        let Object::Pod(mut p) = (**obj).clone() else {
            unreachable!()
        };
        p.metadata.set_revision(Revision(rev));
        f(&mut p);
        Arc::new(Object::Pod(p))
    }

    fn kinds(changes: &[Change]) -> Vec<(String, &'static str, u64)> {
        changes
            .iter()
            .map(|c| match c {
                Change::Upsert { node, revision, .. } => (node.clone(), "upsert", *revision),
                Change::Delete { node, revision, .. } => (node.clone(), "delete", *revision),
            })
            .collect()
    }

    #[test]
    fn binding_spec_changes_and_deletion_produce_messages_status_does_not() {
        let mut ix = PodIndex::default();
        let unbound = pod("web", "u1", None, 1);
        assert!(ix.observe(&unbound, Revision(1), false).is_empty());
        let bound = edit(&unbound, 2, |p| p.spec.node_name = Some("n1".into()));
        assert_eq!(
            kinds(&ix.observe(&bound, Revision(2), false)),
            [("n1".into(), "upsert", 2)]
        );
        let status = edit(&bound, 3, |p| {
            p.status = Some(PodStatus {
                phase: Some(PodPhase::Running),
                ..PodStatus::default()
            })
        });
        assert!(ix.observe(&status, Revision(3), false).is_empty());
        let labelled = edit(&status, 4, |p| {
            p.metadata.labels.insert("a".into(), "b".into());
        });
        assert_eq!(
            kinds(&ix.observe(&labelled, Revision(4), false)),
            [("n1".into(), "upsert", 4)]
        );
        let image = edit(&labelled, 5, |p| {
            p.spec.containers[0].image = "busybox:2".into()
        });
        assert_eq!(
            kinds(&ix.observe(&image, Revision(5), false)),
            [("n1".into(), "upsert", 5)]
        );
        let terminating = edit(&image, 6, |p| {
            p.metadata.deletion_timestamp = Some(Time::from_datetime(chrono::Utc::now()));
        });
        assert_eq!(
            kinds(&ix.observe(&terminating, Revision(6), false)),
            [("n1".into(), "upsert", 6)]
        );
        assert_eq!(ix.count("n1"), 1);
        assert!(ix.bound_to("u1", "n1"));
        assert_eq!(
            kinds(&ix.observe(&terminating, Revision(7), true)),
            [("n1".into(), "delete", 7)]
        );
        assert_eq!(ix.count("n1"), 0);
        assert!(!ix.bound_to("u1", "n1"));
        assert_eq!(ix.revision(), 7);
    }

    #[test]
    fn moving_a_pod_deletes_it_from_the_old_node() {
        let mut ix = PodIndex::default();
        let a = pod("web", "u1", Some("n1"), 1);
        ix.observe(&a, Revision(1), false);
        let b = edit(&a, 2, |p| p.spec.node_name = Some("n2".into()));
        assert_eq!(
            kinds(&ix.observe(&b, Revision(2), false)),
            [("n1".into(), "delete", 2), ("n2".into(), "upsert", 2)]
        );
    }

    #[test]
    fn sync_answers_only_the_differences() {
        let mut ix = PodIndex::default();
        let same = pod("same", "u-same", Some("n1"), 3);
        let edited = pod("edited", "u-edited", Some("n1"), 9);
        let recreated = pod("web", "u-new", Some("n1"), 10);
        let other = pod("other", "u-other", Some("n2"), 4);
        ix.relist(&[same, edited, recreated, other], Revision(10));
        let held = |name: &str, uid: &str, rev: u64| PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: uid.into(),
            revision: rev,
        };
        let diff = ix.diff(
            "n1",
            &[
                held("same", "u-same", 3),
                held("edited", "u-edited", 5),
                held("web", "u-old", 2),
                held("gone", "u-gone", 1),
            ],
        );
        let mut got: Vec<(String, String)> = diff
            .iter()
            .map(|c| match c {
                Change::Upsert { pod, .. } => ("upsert".into(), pod.meta().uid.clone().unwrap().0),
                Change::Delete { uid, .. } => ("delete".into(), uid.clone()),
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("delete".to_string(), "u-gone".to_string()),
                ("delete".to_string(), "u-old".to_string()),
                ("upsert".to_string(), "u-edited".to_string()),
                ("upsert".to_string(), "u-new".to_string()),
            ]
        );
        // An agent that holds nothing gets everything bound to it; a node with nothing
        // gets nothing.
        assert_eq!(ix.diff("n1", &[]).len(), 3);
        assert!(ix.diff("n3", &[]).is_empty());
    }

    #[test]
    fn relist_reports_what_changed_while_not_watching() {
        let mut ix = PodIndex::default();
        let a = pod("a", "ua", Some("n1"), 1);
        let b = pod("b", "ub", Some("n1"), 2);
        ix.relist(&[a.clone(), b], Revision(2));
        let a2 = edit(&a, 5, |p| p.spec.containers[0].image = "x".into());
        let changes = ix.relist(&[a2], Revision(6));
        assert_eq!(
            kinds(&changes),
            [("n1".into(), "upsert", 5), ("n1".into(), "delete", 6)]
        );
    }

    #[test]
    fn a_restarted_index_seeded_with_what_was_sent_does_not_resend() {
        let mut ix = PodIndex::default();
        let a = pod("a", "ua", Some("n1"), 2);
        let b = pod("b", "ub", Some("n1"), 3);
        ix.relist(&[a.clone(), b.clone()], Revision(3));
        // Status writes move resourceVersion without changing what the agent holds.
        let running = |o: &Arc<Object>, rev| {
            edit(o, rev, |p| {
                p.status = Some(PodStatus {
                    phase: Some(PodPhase::Running),
                    ..PodStatus::default()
                })
            })
        };
        let (a4, b5) = (running(&a, 4), running(&b, 5));
        ix.observe(&a4, Revision(4), false);
        ix.observe(&b5, Revision(5), false);
        let sent = ix.sent();
        assert_eq!(sent.revision, 5);

        // Without the record, a new process sends both again and answers a sync
        // holding the old revisions with both.
        let held = [
            PodRef {
                namespace: "default".into(),
                name: "a".into(),
                uid: "ua".into(),
                revision: 2,
            },
            PodRef {
                namespace: "default".into(),
                name: "b".into(),
                uid: "ub".into(),
                revision: 3,
            },
        ];
        let mut cold = PodIndex::default();
        assert_eq!(cold.relist(&[a4.clone(), b5.clone()], Revision(5)).len(), 2);
        assert_eq!(cold.diff("n1", &held).len(), 2);

        // With it, nothing is sent; b changed after the record (revision 7 > 5) and is
        // sent again, since the record cannot vouch for it.
        let b7 = edit(&b5, 7, |p| p.spec.containers[0].image = "busybox:2".into());
        let mut warm = PodIndex::default();
        warm.seed(sent);
        assert_eq!(
            kinds(&warm.relist(&[a4, b7], Revision(7))),
            [("n1".into(), "upsert", 7)]
        );
        assert_eq!(kinds(&warm.diff("n1", &held)), [("n1".into(), "upsert", 7)]);
        // The seed is used once: a later relist compares objects as usual.
        assert!(warm.seed.is_none());
    }
}
