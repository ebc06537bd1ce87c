//! The DaemonSet decision: one pod per eligible node, bound directly with
//! `spec.nodeName` (no trip through the scheduler), pods removed from nodes that may no
//! longer run them, and the status to report.
//!
//! A node is eligible when it matches the template's nodeSelector and required node
//! affinity and every NoSchedule/NoExecute taint is tolerated; DaemonSet pods also
//! tolerate the not-ready, unreachable, unschedulable and pressure taints, as in
//! Kubernetes. A pod already running stays while only a NoSchedule taint repels it.
//! Updating pods to a changed template (RollingUpdate) is not done: pods from an older
//! template stay until deleted, and are not counted as updated.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::resources::{
    DaemonSet, DaemonSetStatus, Node, Pod, TaintEffect, Toleration, TolerationOperator,
};
use skiff_api::{Kind, NodeSelectorRequirement, Object, Time};

use super::common::{Action, controller_ref, is_available, pod_from_template, pods};
use super::deployment::{HASH_LABEL, template_hash};

fn auto_tolerations() -> Vec<Toleration> {
    let t = |key: &str, effect| Toleration {
        key: key.into(),
        operator: Some(TolerationOperator::Exists),
        effect: Some(effect),
        ..Toleration::default()
    };
    vec![
        t("node.kubernetes.io/not-ready", TaintEffect::NoExecute),
        t("node.kubernetes.io/unreachable", TaintEffect::NoExecute),
        t("node.kubernetes.io/unschedulable", TaintEffect::NoSchedule),
        t("node.kubernetes.io/disk-pressure", TaintEffect::NoSchedule),
        t(
            "node.kubernetes.io/memory-pressure",
            TaintEffect::NoSchedule,
        ),
        t("node.kubernetes.io/pid-pressure", TaintEffect::NoSchedule),
    ]
}

/// (should run a new pod here, may keep a running one here).
pub(crate) fn eligibility(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let spec = &ds.spec.template.spec;
    let labels = &node.metadata.labels;
    let selected = spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| {
            sel.node_selector_terms.iter().any(|t| {
                NodeSelectorRequirement::term_matches(
                    &t.match_expressions,
                    &t.match_fields,
                    &node.metadata.name,
                    labels,
                )
                .unwrap_or(false)
            })
        });
    if !(selected && affinity) {
        return (false, false);
    }
    let tolerations: Vec<Toleration> = spec
        .tolerations
        .iter()
        .cloned()
        .chain(auto_tolerations())
        .collect();
    let untolerated = |effect: TaintEffect| {
        node.spec
            .taints
            .iter()
            .any(|t| t.effect == effect && !tolerations.iter().any(|tol| tol.tolerates(t)))
    };
    let no_execute = untolerated(TaintEffect::NoExecute);
    (
        !no_execute && !untolerated(TaintEffect::NoSchedule),
        !no_execute,
    )
}

pub(crate) fn reconcile(
    ds: &DaemonSet,
    owned: &[Arc<Object>],
    nodes: &[Arc<Object>],
    now: Time,
) -> Vec<Action> {
    let hash = template_hash(&ds.spec.template);
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut actions = Vec::new();
    for p in pods(owned) {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if p.is_terminal() {
            // A finished daemon pod is replaced: delete it so a fresh one starts.
            actions.push(Action::Delete(Object::Pod(p.clone()).key()));
            continue;
        }
        by_node
            .entry(p.spec.node_name.as_deref().unwrap_or(""))
            .or_default()
            .push(p);
    }
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation.unwrap_or(0),
        ..DaemonSetStatus::default()
    };
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let owner = controller_ref(Kind::DaemonSet, &ds.metadata);
    for obj in nodes {
        let Object::Node(node) = obj.as_ref() else {
            continue;
        };
        let name = node.metadata.name.as_str();
        let (should_run, may_keep) = eligibility(ds, node);
        let mut here = by_node.remove(name).unwrap_or_default();
        here.sort_by_key(|p| (p.metadata.creation_timestamp, p.metadata.name.clone()));
        if should_run {
            status.desired_number_scheduled += 1;
        }
        if !here.is_empty() {
            if should_run {
                status.current_number_scheduled += 1;
            } else {
                status.number_misscheduled += 1;
            }
        }
        if !may_keep {
            for p in &here {
                actions.push(Action::Delete(Object::Pod((*p).clone()).key()));
            }
            continue;
        }
        // Keep the oldest pod on a node; extras go.
        for p in here.iter().skip(1) {
            actions.push(Action::Delete(Object::Pod((*p).clone()).key()));
        }
        match here.first() {
            Some(p) if should_run => {
                if p.is_ready() {
                    status.number_ready += 1;
                }
                if is_available(p, ds.spec.min_ready_seconds, now) {
                    status.number_available += 1;
                }
                if p.metadata.labels.get(HASH_LABEL) == Some(&hash) {
                    status.updated_number_scheduled += 1;
                }
            }
            Some(_) => {}
            None if should_run && !deleting => {
                let mut pod = pod_from_template(
                    &ds.spec.template,
                    ds.metadata.namespace_or_empty(),
                    &ds.metadata.name,
                    owner.clone(),
                );
                pod.metadata.labels.insert(HASH_LABEL.into(), hash.clone());
                pod.spec.node_name = Some(name.to_string());
                for tol in auto_tolerations() {
                    if !pod.spec.tolerations.contains(&tol) {
                        pod.spec.tolerations.push(tol);
                    }
                }
                actions.push(Action::CreatePod(Box::new(pod)));
            }
            None => {}
        }
    }
    // Pods on nodes that no longer exist, or never bound.
    for p in by_node.into_values().flatten() {
        actions.push(Action::Delete(Object::Pod(p.clone()).key()));
    }
    status.number_unavailable = (status.desired_number_scheduled - status.number_available).max(0);
    if ds.status.as_ref() != Some(&status) {
        let mut updated = ds.clone();
        updated.status = Some(status);
        actions.push(Action::SetStatus(Box::new(Object::DaemonSet(updated))));
    }
    actions
}

#[cfg(test)]
mod tests {
    use skiff_api::ObjectMeta;
    use skiff_api::resources::{
        Affinity, DaemonSetSpec, NodeAffinity, NodeSelector, NodeSelectorTerm, NodeSpec, PodPhase,
        Taint,
    };

    use super::super::common::fixtures::*;
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, TaintEffect)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ObjectMeta::default()
            },
            spec: NodeSpec {
                taints: taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        value: String::new(),
                        effect: *e,
                        time_added: None,
                    })
                    .collect(),
                ..NodeSpec::default()
            },
            status: None,
        }
    }

    fn ds() -> DaemonSet {
        DaemonSet {
            metadata: meta("agent", "ds-uid"),
            spec: DaemonSetSpec {
                template: template("agent:1"),
                ..DaemonSetSpec::default()
            },
            status: None,
        }
    }

    #[test]
    fn eligibility_table() {
        let mut arm = ds();
        arm.spec.template.spec.node_selector = [("arch".to_string(), "arm64".to_string())].into();
        let mut affine = ds();
        affine.spec.template.spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: vec!["a".into()],
                        }],
                        match_fields: vec![],
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        let mut tolerant = ds();
        tolerant.spec.template.spec.tolerations = vec![Toleration {
            key: "gpu".into(),
            operator: Some(TolerationOperator::Exists),
            ..Toleration::default()
        }];
        use TaintEffect::*;
        let cases = [
            ("plain node", ds(), node("n", &[], &[]), (true, true)),
            (
                "selector matches",
                arm.clone(),
                node("n", &[("arch", "arm64")], &[]),
                (true, true),
            ),
            (
                "selector misses",
                arm,
                node("n", &[("arch", "amd64")], &[]),
                (false, false),
            ),
            (
                "affinity matches",
                affine.clone(),
                node("n", &[("zone", "a")], &[]),
                (true, true),
            ),
            (
                "affinity misses",
                affine,
                node("n", &[("zone", "b")], &[]),
                (false, false),
            ),
            (
                "NoSchedule taint: keep, do not start",
                ds(),
                node("n", &[], &[("gpu", NoSchedule)]),
                (false, true),
            ),
            (
                "NoExecute taint: evict",
                ds(),
                node("n", &[], &[("gpu", NoExecute)]),
                (false, false),
            ),
            (
                "tolerated taint",
                tolerant,
                node("n", &[], &[("gpu", NoExecute)]),
                (true, true),
            ),
            (
                "PreferNoSchedule ignored",
                ds(),
                node("n", &[], &[("gpu", PreferNoSchedule)]),
                (true, true),
            ),
            (
                "not-ready tolerated",
                ds(),
                node("n", &[], &[("node.kubernetes.io/not-ready", NoExecute)]),
                (true, true),
            ),
            (
                "unschedulable tolerated",
                ds(),
                node(
                    "n",
                    &[],
                    &[("node.kubernetes.io/unschedulable", NoSchedule)],
                ),
                (true, true),
            ),
        ];
        for (name, d, n, want) in cases {
            assert_eq!(eligibility(&d, &n), want, "{name}");
        }
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = ds();
        let o = controller_ref(Kind::DaemonSet, &d.metadata);
        let nodes: Vec<Arc<Object>> = vec![
            Arc::new(Object::Node(node("a", &[], &[]))),
            Arc::new(Object::Node(node("b", &[], &[]))),
            Arc::new(Object::Node(node(
                "c",
                &[],
                &[("x", TaintEffect::NoExecute)],
            ))),
        ];
        let owned = vec![
            pod("on-a", o.clone(), "a", PodPhase::Running, true, 1),
            pod("on-a-extra", o.clone(), "a", PodPhase::Running, true, 5),
            pod("on-c", o.clone(), "c", PodPhase::Running, true, 1),
            pod("on-gone", o.clone(), "gone", PodPhase::Running, true, 1),
        ];
        let actions = reconcile(&d, &owned, &nodes, at(100));
        let created: Vec<Option<String>> = actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod(p) => Some(p.spec.node_name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(created, [Some("b".to_string())]);
        let mut deleted: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete(k) => Some(k.name.as_str()),
                _ => None,
            })
            .collect();
        deleted.sort_unstable();
        assert_eq!(deleted, ["on-a-extra", "on-c", "on-gone"]);
        let Some(Action::SetStatus(obj)) = actions.last() else {
            panic!("no status")
        };
        let Object::DaemonSet(s) = obj.as_ref() else {
            panic!("not a daemonset")
        };
        let s = s.status.clone().unwrap();
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_misscheduled,
                s.number_ready,
                s.number_available
            ),
            (2, 1, 1, 1, 1)
        );
    }
}
