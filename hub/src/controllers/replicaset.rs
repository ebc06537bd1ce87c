//! The ReplicaSet decision: how many pods to create or which to delete so that
//! `spec.replicas` active pods exist, and the status to report.
//!
//! Only pods whose controlling owner reference is this ReplicaSet count; orphans that
//! happen to match the selector are not adopted (Skiff's controllers always stamp owner
//! references on what they create, so there is nothing to adopt after a hub restart).

use std::cmp::Reverse;
use std::sync::Arc;

use skiff_api::resources::{Pod, PodPhase, ReplicaSet, ReplicaSetStatus};
use skiff_api::{Kind, Object, Selector, Time};

use super::common::{Action, controller_ref, is_active, is_available, pod_from_template, pods};

/// Most pods created or deleted in one pass, so one huge scale does not starve others.
const BURST: usize = 500;

pub(crate) fn reconcile(rs: &ReplicaSet, owned: &[Arc<Object>], now: Time) -> Vec<Action> {
    let selector = rs
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.to_selector().ok())
        .unwrap_or_else(Selector::nothing);
    let all = pods(owned);
    let active: Vec<&Pod> = all
        .iter()
        .copied()
        .filter(|p| is_active(p) && selector.matches(&p.metadata.labels))
        .collect();
    let want = usize::try_from(rs.replicas().max(0)).unwrap_or(0);
    let mut actions = Vec::new();
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < want {
            let ns = rs.metadata.namespace_or_empty();
            let owner = controller_ref(Kind::ReplicaSet, &rs.metadata);
            for _ in 0..(want - active.len()).min(BURST) {
                let pod =
                    pod_from_template(&rs.spec.template, ns, &rs.metadata.name, owner.clone());
                actions.push(Action::CreatePod(Box::new(pod)));
            }
        } else if active.len() > want {
            for victim in victims(&active, active.len() - want) {
                actions.push(Action::Delete(Object::Pod(victim.clone()).key()));
            }
        }
    }
    let status = status(rs, &active, now);
    if rs.status.as_ref() != Some(&status) {
        let mut updated = rs.clone();
        updated.status = Some(status);
        actions.push(Action::SetStatus(Box::new(Object::ReplicaSet(updated))));
    }
    actions
}

/// The `n` pods to delete first: unscheduled before scheduled, then pending before
/// running, not ready before ready, and the newest first (Kubernetes' ranking).
pub(crate) fn victims<'a>(active: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut ranked: Vec<&Pod> = active.to_vec();
    ranked.sort_by_key(|p| {
        let phase_rank = match p.phase() {
            PodPhase::Pending => 0,
            PodPhase::Unknown => 1,
            _ => 2,
        };
        (
            p.is_scheduled(),
            phase_rank,
            p.is_ready(),
            Reverse(p.metadata.creation_timestamp),
            Reverse(p.metadata.name.clone()),
        )
    });
    ranked.truncate(n.min(BURST));
    ranked
}

fn status(rs: &ReplicaSet, active: &[&Pod], now: Time) -> ReplicaSetStatus {
    let template_labels = &rs.spec.template.metadata.labels;
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        }),
        ready_replicas: count(&|p| p.is_ready()),
        available_replicas: count(&|p| is_available(p, rs.spec.min_ready_seconds, now)),
        observed_generation: rs.metadata.generation.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::LabelSelector;
    use skiff_api::resources::PodPhase::{Pending, Running, Succeeded};

    use super::super::common::fixtures::*;
    use super::*;

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: meta("web", "rs-uid"),
            spec: skiff_api::resources::ReplicaSetSpec {
                replicas: Some(replicas),
                selector: Some(LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..LabelSelector::default()
                }),
                template: template("nginx:1"),
                ..Default::default()
            },
            status: None,
        }
    }

    fn owner() -> skiff_api::OwnerReference {
        controller_ref(Kind::ReplicaSet, &rs(0).metadata)
    }

    fn creates(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod(_)))
            .count()
    }

    fn deleted(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete(k) => Some(k.name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scales_to_replicas() {
        let o = owner();
        let running = |n: &str| pod(n, o.clone(), "n1", Running, true, 10);
        type Case = (&'static str, i32, Vec<Arc<Object>>, usize, usize);
        let cases: Vec<Case> = vec![
            ("empty to 3", 3, vec![], 3, 0),
            ("1 of 3", 3, vec![running("a")], 2, 0),
            ("exact", 2, vec![running("a"), running("b")], 0, 0),
            (
                "3 down to 1",
                1,
                vec![running("a"), running("b"), running("c")],
                0,
                2,
            ),
            ("to zero", 0, vec![running("a")], 0, 1),
            (
                "finished pods do not count",
                2,
                vec![running("a"), pod("d", o.clone(), "n1", Succeeded, false, 1)],
                1,
                0,
            ),
        ];
        for (name, replicas, owned, want_create, want_delete) in cases {
            let actions = reconcile(&rs(replicas), &owned, at(100));
            assert_eq!(creates(&actions), want_create, "{name}");
            assert_eq!(deleted(&actions).len(), want_delete, "{name}");
        }
    }

    #[test]
    fn created_pods_carry_template_and_owner() {
        let actions = reconcile(&rs(1), &[], at(0));
        let Action::CreatePod(p) = &actions[0] else {
            panic!("expected a create, got {actions:?}");
        };
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            p.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(p.metadata.owner_references[0].uid.0, "rs-uid");
        assert_eq!(p.metadata.owner_references[0].controller, Some(true));
        assert_eq!(p.spec.containers[0].image, "nginx:1");
    }

    #[test]
    fn victims_rank_unscheduled_then_not_ready_then_newest() {
        let o = owner();
        let owned = [
            pod("old-ready", o.clone(), "n1", Running, true, 1),
            pod("new-ready", o.clone(), "n1", Running, true, 5),
            pod("not-ready", o.clone(), "n1", Running, false, 2),
            pod("pending", o.clone(), "n1", Pending, false, 3),
            pod("unscheduled", o.clone(), "", Pending, false, 0),
        ];
        let all = pods(&owned);
        let order: Vec<&str> = victims(&all, 5)
            .iter()
            .map(|p| p.metadata.name.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "new-ready",
                "old-ready"
            ]
        );
        let actions = reconcile(&rs(3), &owned, at(100));
        assert_eq!(deleted(&actions), ["unscheduled", "pending"]);
    }

    #[test]
    fn status_counts() {
        let o = owner();
        let mut r = rs(3);
        r.spec.min_ready_seconds = 30;
        let owned = [
            pod("a", o.clone(), "n1", Running, true, 10),
            pod("b", o.clone(), "n1", Running, true, 90),
            pod("c", o.clone(), "n1", Running, false, 10),
        ];
        let actions = reconcile(&r, &owned, at(100));
        let Some(Action::SetStatus(obj)) = actions.last() else {
            panic!("expected a status update, got {actions:?}");
        };
        let Object::ReplicaSet(s) = obj.as_ref() else {
            panic!("expected a status update, got {actions:?}");
        };
        let st = s.status.clone().unwrap();
        assert_eq!(
            (
                st.replicas,
                st.ready_replicas,
                st.available_replicas,
                st.fully_labeled_replicas
            ),
            (3, 2, 1, 3)
        );
        assert_eq!(st.observed_generation, 1);
        // The same status again writes nothing.
        r.status = Some(st);
        assert!(reconcile(&r, &owned, at(100)).is_empty());
    }
}
