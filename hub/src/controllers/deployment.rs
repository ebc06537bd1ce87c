//! The Deployment decision: which ReplicaSet runs the current pod template (named
//! `<deployment>-<template hash>`), how far to scale it and the older ones for a
//! RollingUpdate (maxSurge / maxUnavailable) or Recreate rollout, which old
//! ReplicaSets to forget (revisionHistoryLimit), and the status to report.
//!
//! Scaling while a rollout is under way caps the new ReplicaSet at the desired count
//! and lets the rollout converge; Kubernetes' proportional scaling across ReplicaSets
//! is not done. A paused Deployment only reports status.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::resources::{
    ConditionStatus, Deployment, DeploymentCondition, DeploymentStatus, DeploymentStrategyType,
    IntOrString, PodTemplateSpec, ReplicaSet, ReplicaSetSpec,
};
use skiff_api::{Kind, LabelSelector, Object, ObjectMeta, Time};

use super::common::{Action, REVISION_ANNOTATION, controller_ref};

/// The label that ties a ReplicaSet and its pods to one pod template.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";

/// What the rollout arithmetic needs to know about one ReplicaSet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RsView {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Pods that exist (`status.replicas`).
    pub pods: i32,
    pub available: i32,
}

/// The rollout strategy with its bounds resolved against the desired replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Strategy {
    Recreate,
    Rolling { surge: i32, unavailable: i32 },
}

impl Strategy {
    pub(crate) fn of(d: &Deployment) -> Strategy {
        let strategy = d.spec.strategy.clone().unwrap_or_default();
        if strategy.type_ == Some(DeploymentStrategyType::Recreate) {
            return Strategy::Recreate;
        }
        let desired = d.replicas();
        let rolling = strategy.rolling_update.unwrap_or_default();
        let quarter = IntOrString::String("25%".into());
        let surge = rolling
            .max_surge
            .unwrap_or_else(|| quarter.clone())
            .scaled_value(desired, true)
            .unwrap_or(0)
            .max(0);
        let mut unavailable = rolling
            .max_unavailable
            .unwrap_or(quarter)
            .scaled_value(desired, false)
            .unwrap_or(0)
            .max(0);
        // Both zero would never make progress; Kubernetes allows one unavailable.
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        Strategy::Rolling { surge, unavailable }
    }

    fn max_unavailable(self) -> i32 {
        match self {
            Strategy::Recreate => 0,
            Strategy::Rolling { unavailable, .. } => unavailable,
        }
    }
}

/// One step of a rollout: the new ReplicaSet's replicas and the olds' (oldest first,
/// same order as given).
pub(crate) fn plan(
    desired: i32,
    strategy: Strategy,
    new: &RsView,
    olds: &[RsView],
) -> (i32, Vec<i32>) {
    let mut new_replicas = new.replicas;
    let mut old: Vec<i32> = olds.iter().map(|r| r.replicas).collect();
    let old_total: i32 = old.iter().sum();
    match strategy {
        Strategy::Recreate => {
            if old_total > 0 {
                old.iter_mut().for_each(|r| *r = 0);
            } else if olds.iter().all(|r| r.pods == 0) {
                new_replicas = desired;
            }
        }
        Strategy::Rolling { surge, unavailable } => {
            if old_total == 0 || new_replicas > desired {
                new_replicas = desired;
            } else if new_replicas < desired {
                let max_total = desired + surge;
                let current = new_replicas + old_total;
                if current < max_total {
                    new_replicas += (max_total - current).min(desired - new_replicas);
                }
            }
            if old_total > 0 {
                let min_available = desired - unavailable;
                let new_unavailable = (new_replicas - new.available).max(0);
                let max_scale_down = new_replicas + old_total - min_available - new_unavailable;
                if max_scale_down > 0 {
                    // Unhealthy old pods go first: removing them costs no availability.
                    let mut cleaned = 0;
                    for (r, view) in old.iter_mut().zip(olds) {
                        let unhealthy = (*r - view.available).max(0);
                        let cut = unhealthy.min(max_scale_down - cleaned);
                        *r -= cut;
                        cleaned += cut;
                    }
                    let available: i32 =
                        new.available + olds.iter().map(|r| r.available).sum::<i32>();
                    let mut budget = (available - min_available).max(0);
                    for r in old.iter_mut() {
                        let cut = (*r).min(budget);
                        *r -= cut;
                        budget -= cut;
                    }
                }
            }
        }
    }
    (new_replicas, old)
}

/// A short, stable hash of a pod template, in Kubernetes' "safe" alphabet.
pub(crate) fn template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let text = serde_json::to_string(template).expect("pod templates always serialize");
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = String::new();
    for _ in 0..10 {
        out.push(char::from(ALPHABET[(h % 27) as usize]));
        h /= 27;
    }
    out
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn view(rs: &ReplicaSet) -> RsView {
    let st = rs.status.clone().unwrap_or_default();
    RsView {
        name: rs.metadata.name.clone(),
        replicas: rs.replicas(),
        pods: st.replicas,
        available: st.available_replicas,
    }
}

pub(crate) fn reconcile(d: &Deployment, owned: &[Arc<Object>], now: Time) -> Vec<Action> {
    let mut rss: Vec<&ReplicaSet> = owned
        .iter()
        .filter_map(|o| match o.as_ref() {
            Object::ReplicaSet(rs) => Some(rs),
            _ => None,
        })
        .collect();
    rss.sort_by_key(|r| {
        (
            revision(r),
            r.metadata.creation_timestamp,
            r.metadata.name.clone(),
        )
    });
    let hash = template_hash(&d.spec.template);
    let new_name = format!("{}-{hash}", d.metadata.name);
    let new = rss.iter().copied().find(|r| r.metadata.name == new_name);
    let olds: Vec<&ReplicaSet> = rss
        .iter()
        .copied()
        .filter(|r| r.metadata.name != new_name)
        .collect();
    let max_old_revision = olds.iter().map(|r| revision(r)).max().unwrap_or(0);
    let desired = d.replicas().max(0);
    let strategy = Strategy::of(d);
    let mut actions = Vec::new();

    if d.metadata.deletion_timestamp.is_none() && !d.spec.paused {
        let new_view = new.map(view).unwrap_or(RsView {
            name: new_name.clone(),
            replicas: 0,
            pods: 0,
            available: 0,
        });
        let old_views: Vec<RsView> = olds.iter().map(|r| view(r)).collect();
        let (new_replicas, old_replicas) = plan(desired, strategy, &new_view, &old_views);
        let wanted_revision = (max_old_revision + 1).to_string();
        match new {
            None => actions.push(Action::Create(Box::new(Object::ReplicaSet(
                new_replicaset(d, &new_name, &hash, new_replicas, &wanted_revision),
            )))),
            Some(rs) => {
                let stale_revision = revision(rs) <= max_old_revision;
                if rs.replicas() != new_replicas || stale_revision {
                    actions.push(Action::ScaleReplicaSet {
                        key: Object::ReplicaSet(rs.clone()).key(),
                        replicas: new_replicas,
                        revision: stale_revision.then(|| wanted_revision.clone()),
                    });
                }
            }
        }
        for (rs, replicas) in olds.iter().zip(&old_replicas) {
            if rs.replicas() != *replicas {
                actions.push(Action::ScaleReplicaSet {
                    key: Object::ReplicaSet((*rs).clone()).key(),
                    replicas: *replicas,
                    revision: None,
                });
            }
        }
        // Forget the oldest idle ReplicaSets beyond the history limit.
        let limit =
            usize::try_from(d.spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or(0);
        let idle: Vec<&&ReplicaSet> = olds
            .iter()
            .zip(&old_replicas)
            .filter(|(rs, r)| **r == 0 && rs.replicas() == 0 && view(rs).pods == 0)
            .map(|(rs, _)| rs)
            .collect();
        for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
            actions.push(Action::Delete(Object::ReplicaSet((**rs).clone()).key()));
        }
    }

    let status = status(d, new, &rss, strategy, now);
    if d.status.as_ref() != Some(&status) {
        let mut updated = d.clone();
        updated.status = Some(status);
        actions.push(Action::SetStatus(Box::new(Object::Deployment(updated))));
    }
    actions
}

fn new_replicaset(
    d: &Deployment,
    name: &str,
    hash: &str,
    replicas: i32,
    revision: &str,
) -> ReplicaSet {
    let mut template = d.spec.template.clone();
    template
        .metadata
        .labels
        .insert(HASH_LABEL.into(), hash.into());
    let mut selector: LabelSelector = d.spec.selector.clone().unwrap_or_default();
    selector.match_labels.insert(HASH_LABEL.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: d.metadata.namespace.clone(),
            labels: template.metadata.labels.clone(),
            annotations: BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]),
            owner_references: vec![controller_ref(Kind::Deployment, &d.metadata)],
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector: Some(selector),
            template,
        },
        status: None,
    }
}

fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    rss: &[&ReplicaSet],
    strategy: Strategy,
    now: Time,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| rss.iter().map(|r| f(r)).sum::<i32>();
    let st = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    let replicas = sum(&|r| st(r).replicas);
    let available = sum(&|r| st(r).available_replicas);
    let updated = new.map_or(0, |r| st(r).replicas);
    let desired = d.replicas().max(0);
    let old = d.status.clone().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str| {
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let prev = old.conditions.iter().find(|c| c.type_ == type_);
        let same_status = prev.is_some_and(|p| p.status == status);
        let same_reason = prev.is_some_and(|p| same_status && p.reason.as_deref() == Some(reason));
        DeploymentCondition {
            type_: type_.into(),
            status,
            last_update_time: if same_reason {
                prev.and_then(|p| p.last_update_time)
            } else {
                Some(now)
            },
            last_transition_time: if same_status {
                prev.and_then(|p| p.last_transition_time)
            } else {
                Some(now)
            },
            reason: Some(reason.into()),
            message: None,
        }
    };
    let minimum = available >= desired - strategy.max_unavailable();
    let complete =
        new.is_some() && updated == desired && replicas == desired && available == desired;
    DeploymentStatus {
        observed_generation: d.metadata.generation.unwrap_or(0),
        replicas,
        updated_replicas: updated,
        ready_replicas: sum(&|r| st(r).ready_replicas),
        available_replicas: available,
        unavailable_replicas: (replicas - available).max(desired - available).max(0),
        conditions: vec![
            condition(
                "Available",
                minimum,
                if minimum {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
            ),
            condition(
                "Progressing",
                true,
                if complete {
                    "NewReplicaSetAvailable"
                } else {
                    "ReplicaSetUpdated"
                },
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdate,
    };

    use super::super::common::fixtures::*;
    use super::*;

    fn rs(name: &str, replicas: i32, pods: i32, available: i32) -> RsView {
        RsView {
            name: name.into(),
            replicas,
            pods,
            available,
        }
    }

    fn rolling(surge: &str, unavailable: &str, desired: i32) -> Strategy {
        let parse = |s: &str| {
            s.parse::<i32>()
                .map_or_else(|_| IntOrString::String(s.into()), IntOrString::Int)
        };
        Strategy::of(&Deployment {
            spec: DeploymentSpec {
                replicas: Some(desired),
                strategy: Some(DeploymentStrategy {
                    type_: Some(DeploymentStrategyType::RollingUpdate),
                    rolling_update: Some(RollingUpdate {
                        max_surge: Some(parse(surge)),
                        max_unavailable: Some(parse(unavailable)),
                    }),
                }),
                ..DeploymentSpec::default()
            },
            ..Deployment::default()
        })
    }

    #[test]
    fn bounds_round_like_kubernetes() {
        let cases = [
            ("25%", "25%", 10, 3, 2),
            ("25%", "25%", 4, 1, 1),
            ("1", "0", 3, 1, 0),
            ("0", "0", 3, 0, 1),
            ("50%", "50%", 3, 2, 1),
            ("0", "1", 3, 0, 1),
        ];
        for (s, u, desired, want_surge, want_unavail) in cases {
            assert_eq!(
                rolling(s, u, desired),
                Strategy::Rolling {
                    surge: want_surge,
                    unavailable: want_unavail
                },
                "{s}/{u} of {desired}"
            );
        }
    }

    #[test]
    fn rolling_steps() {
        // (case, strategy, desired, new, olds, want new, want olds)
        let cases = [
            (
                "fresh deployment",
                rolling("1", "0", 3),
                3,
                rs("n", 0, 0, 0),
                vec![],
                3,
                vec![],
            ),
            (
                "surge 1: start one new, keep old",
                rolling("1", "0", 3),
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 3, 3, 3)],
                1,
                vec![3],
            ),
            (
                "surge 1: new not yet available",
                rolling("1", "0", 3),
                3,
                rs("n", 1, 1, 0),
                vec![rs("o", 3, 3, 3)],
                1,
                vec![3],
            ),
            (
                "surge 1: new available, drop one old",
                rolling("1", "0", 3),
                3,
                rs("n", 1, 1, 1),
                vec![rs("o", 3, 3, 3)],
                1,
                vec![2],
            ),
            (
                "surge 1: then grow new, old waits for it",
                rolling("1", "0", 3),
                3,
                rs("n", 1, 1, 1),
                vec![rs("o", 2, 2, 2)],
                2,
                vec![2],
            ),
            (
                "unavailable 1: drop old first",
                rolling("0", "1", 3),
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 3, 3, 3)],
                0,
                vec![2],
            ),
            (
                "unavailable 1: then grow new",
                rolling("0", "1", 3),
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 2, 2, 2)],
                1,
                vec![2],
            ),
            (
                "unhealthy old pods go first",
                rolling("0", "1", 3),
                3,
                rs("n", 1, 1, 1),
                vec![rs("o", 2, 2, 1)],
                1,
                vec![1],
            ),
            (
                "25%/25% of 4",
                rolling("25%", "25%", 4),
                4,
                rs("n", 0, 0, 0),
                vec![rs("o", 4, 4, 4)],
                1,
                vec![3],
            ),
            (
                "done: old at zero",
                rolling("1", "0", 3),
                3,
                rs("n", 3, 3, 3),
                vec![rs("o", 1, 1, 1)],
                3,
                vec![0],
            ),
            (
                "scale down without rollout",
                rolling("1", "0", 1),
                1,
                rs("n", 5, 5, 5),
                vec![],
                1,
                vec![],
            ),
            (
                "two olds, oldest first",
                rolling("0", "2", 4),
                4,
                rs("n", 0, 0, 0),
                vec![rs("a", 1, 1, 1), rs("b", 3, 3, 3)],
                0,
                vec![0, 2],
            ),
            (
                "recreate: stop olds",
                Strategy::Recreate,
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 3, 3, 3)],
                0,
                vec![0],
            ),
            (
                "recreate: wait for old pods",
                Strategy::Recreate,
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 0, 2, 0)],
                0,
                vec![0],
            ),
            (
                "recreate: start new",
                Strategy::Recreate,
                3,
                rs("n", 0, 0, 0),
                vec![rs("o", 0, 0, 0)],
                3,
                vec![0],
            ),
        ];
        for (name, strategy, desired, new, olds, want_new, want_olds) in cases {
            assert_eq!(
                plan(desired, strategy, &new, &olds),
                (want_new, want_olds),
                "{name}"
            );
        }
    }

    fn deployment(image: &str, replicas: i32) -> Deployment {
        Deployment {
            metadata: meta("web", "d-uid"),
            spec: DeploymentSpec {
                replicas: Some(replicas),
                selector: Some(LabelSelector {
                    match_labels: [("app".to_string(), "web".to_string())].into(),
                    ..LabelSelector::default()
                }),
                template: template(image),
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    #[test]
    fn creates_hashed_replicaset_then_rolls_and_forgets_history() {
        let d = deployment("nginx:1", 3);
        let actions = reconcile(&d, &[], at(0));
        let Action::Create(obj) = &actions[0] else {
            panic!("expected a ReplicaSet create, got {actions:?}");
        };
        let Object::ReplicaSet(rs) = obj.as_ref() else {
            panic!("expected a ReplicaSet, got {obj:?}");
        };
        let hash = template_hash(&d.spec.template);
        assert_eq!(rs.metadata.name, format!("web-{hash}"));
        assert_eq!(rs.spec.replicas, Some(3));
        assert_eq!(rs.metadata.annotations[REVISION_ANNOTATION], "1");
        assert_eq!(
            rs.spec.selector.as_ref().unwrap().match_labels[HASH_LABEL],
            hash
        );
        assert_eq!(rs.spec.template.metadata.labels[HASH_LABEL], hash);
        assert_eq!(rs.metadata.owner_references[0].uid.0, "d-uid");
        assert_ne!(template_hash(&template("nginx:2")), hash);

        // A new image: the new ReplicaSet gets revision 2; idle history beyond the
        // limit (here 1) is deleted, oldest first.
        let mut d2 = deployment("nginx:2", 3);
        d2.spec.revision_history_limit = Some(1);
        let idle = |name: &str, rev: &str| {
            let mut r = rs.clone();
            r.metadata.name = name.into();
            r.metadata
                .annotations
                .insert(REVISION_ANNOTATION.into(), rev.into());
            r.spec.replicas = Some(0);
            Arc::new(Object::ReplicaSet(r))
        };
        let mut current = rs.clone();
        current.status = Some(ReplicaSetStatus {
            replicas: 3,
            available_replicas: 3,
            ready_replicas: 3,
            ..Default::default()
        });
        let owned = vec![
            idle("web-a", "1"),
            idle("web-b", "2"),
            Arc::new(Object::ReplicaSet({
                let mut c = current.clone();
                c.metadata
                    .annotations
                    .insert(REVISION_ANNOTATION.into(), "3".into());
                c
            })),
        ];
        let actions = reconcile(&d2, &owned, at(0));
        let Action::Create(obj) = &actions[0] else {
            panic!("expected a ReplicaSet create, got {actions:?}");
        };
        let Object::ReplicaSet(new) = obj.as_ref() else {
            panic!("expected a ReplicaSet, got {obj:?}");
        };
        assert_eq!(new.metadata.annotations[REVISION_ANNOTATION], "4");
        assert_eq!(new.spec.replicas, Some(1), "25% surge of 3 rounds up to 1");
        let deleted: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete(k) => Some(k.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["web-a"]);
        let Some(Action::SetStatus(st)) = actions.last() else {
            panic!("no status")
        };
        let Object::Deployment(st) = st.as_ref() else {
            panic!("not a deployment")
        };
        let st = st.status.clone().unwrap();
        assert_eq!(
            (st.replicas, st.updated_replicas, st.available_replicas),
            (3, 0, 3)
        );
        assert_eq!(st.conditions[0].type_, "Available");
        assert!(st.conditions[0].status.is_true());
        assert_eq!(
            st.conditions[1].reason.as_deref(),
            Some("ReplicaSetUpdated")
        );
    }
}
