//! Inter-pod affinity and anti-affinity, as kube-scheduler's InterPodAffinity plugin
//! computes them: once per pod, count the existing pods each term cares about per
//! topology domain (a `(topologyKey, value)` pair), then test or score each node by
//! looking up its own domain.
//!
//! Existing pods are visited by group (same namespace and labels, see `view`), so a
//! term is matched once per group, not once per pod.

use std::collections::HashMap;

use super::filters::Rejection;
use super::pod_info::{AffinityTerm, PodInfo};
use super::view::{ClusterView, NodeInfo, PodGroup, TermKind};

/// What an existing pod's required affinity term adds to a matching incoming pod's
/// score on nodes in the existing pod's domain (kube-scheduler's default
/// `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Pod counts (or weights) per topology domain.
type Domains<'a> = HashMap<(&'a str, &'a str), i64>;

/// Adds `amount × (pods of the group on each node)` to the domain of each node.
fn add_per_node<'a>(
    domains: &mut Domains<'a>,
    view: &'a ClusterView,
    nodes: &super::hash::IdMap<u32, u32>,
    key: &'a str,
    amount: i64,
) {
    for (&slot, &count) in nodes {
        let node = view.node(slot);
        if !node.present {
            continue;
        }
        if let Some(value) = node.spec.labels.get(key) {
            *domains.entry((key, value.as_str())).or_default() += amount * i64::from(count);
        }
    }
}

fn group_matches(term: &AffinityTerm, group: &PodGroup, view: &ClusterView) -> bool {
    term.matches(
        &group.namespace,
        &group.labels,
        view.namespace_labels(&group.namespace),
    )
}

fn pod_matches(term: &AffinityTerm, pod: &PodInfo, view: &ClusterView) -> bool {
    term.matches(
        &pod.namespace,
        &pod.labels,
        view.namespace_labels(&pod.namespace),
    )
}

/// The filter state for one pod (kube-scheduler's PreFilter result).
#[derive(Debug)]
pub(crate) struct InterPodFilter<'a> {
    pod: &'a PodInfo,
    /// Domains holding pods whose required anti-affinity selects this pod.
    existing_anti: Domains<'a>,
    existing_anti_keys: Vec<&'a str>,
    /// Domains holding pods that match all of this pod's required affinity terms.
    affinity: Domains<'a>,
    /// Domains holding pods matching one of this pod's required anti-affinity terms.
    anti: Domains<'a>,
    /// The pod matches all its own required affinity terms, so it may be the first of
    /// its group when no pod matches them yet.
    matches_itself: bool,
}

impl<'a> InterPodFilter<'a> {
    /// `None` when neither the pod nor any existing pod has required inter-pod rules.
    pub(crate) fn new(pod: &'a PodInfo, view: &'a ClusterView) -> Option<InterPodFilter<'a>> {
        let rules = &pod.affinity;
        let own = !rules.required_affinity.is_empty() || !rules.required_anti.is_empty();
        let existing = view.term_groups().any(|t| t.kind == TermKind::RequiredAnti);
        if !own && !existing {
            return None;
        }
        let mut state = InterPodFilter {
            pod,
            existing_anti: Domains::new(),
            existing_anti_keys: Vec::new(),
            affinity: Domains::new(),
            anti: Domains::new(),
            matches_itself: rules
                .required_affinity
                .iter()
                .all(|t| pod_matches(t, pod, view)),
        };
        if existing {
            for tg in view.term_groups() {
                if tg.kind == TermKind::RequiredAnti && pod_matches(&tg.term, pod, view) {
                    let key = tg.term.topology_key.as_str();
                    add_per_node(&mut state.existing_anti, view, &tg.nodes, key, 1);
                    if !state.existing_anti_keys.contains(&key) {
                        state.existing_anti_keys.push(key);
                    }
                }
            }
        }
        if own {
            for group in view.groups() {
                if !rules.required_affinity.is_empty()
                    && rules
                        .required_affinity
                        .iter()
                        .all(|t| group_matches(t, group, view))
                {
                    for t in &rules.required_affinity {
                        add_per_node(&mut state.affinity, view, &group.nodes, &t.topology_key, 1);
                    }
                }
                for t in &rules.required_anti {
                    if group_matches(t, group, view) {
                        add_per_node(&mut state.anti, view, &group.nodes, &t.topology_key, 1);
                    }
                }
            }
        }
        Some(state)
    }

    /// kube-scheduler's order: the pod's affinity, its anti-affinity, then existing
    /// pods' anti-affinity.
    pub(crate) fn check(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let labels = &node.spec.labels;
        let occupied = |domains: &Domains<'_>, key: &str| {
            labels
                .get(key)
                .is_some_and(|v| domains.get(&(key, v.as_str())).is_some_and(|n| *n > 0))
        };
        let terms = &self.pod.affinity.required_affinity;
        if !terms.is_empty() {
            let mut pods_exist = true;
            for t in terms {
                if !labels.contains_key(&t.topology_key) {
                    // Every topology key must be a label of the node.
                    return Err(Rejection::PodAffinity);
                }
                pods_exist &= occupied(&self.affinity, &t.topology_key);
            }
            // The first pod of a group that selects itself may go anywhere the
            // topology labels exist.
            let first_of_group = self.affinity.is_empty() && self.matches_itself;
            if !pods_exist && !first_of_group {
                return Err(Rejection::PodAffinity);
            }
        }
        if self
            .pod
            .affinity
            .required_anti
            .iter()
            .any(|t| occupied(&self.anti, &t.topology_key))
        {
            return Err(Rejection::PodAntiAffinity);
        }
        if self
            .existing_anti_keys
            .iter()
            .any(|k| occupied(&self.existing_anti, k))
        {
            return Err(Rejection::ExistingAntiAffinity);
        }
        Ok(())
    }
}

/// The score state for one pod: a weight per topology domain, from the pod's
/// preferred terms over existing pods and from existing pods' terms over this pod.
#[derive(Debug)]
pub(crate) struct InterPodScore<'a> {
    domains: Domains<'a>,
    keys: Vec<&'a str>,
}

impl<'a> InterPodScore<'a> {
    /// `None` when nothing contributes (every node would score the same).
    pub(crate) fn new(pod: &'a PodInfo, view: &'a ClusterView) -> Option<InterPodScore<'a>> {
        let rules = &pod.affinity;
        let own = !rules.preferred_affinity.is_empty() || !rules.preferred_anti.is_empty();
        let existing = view.term_groups().any(|t| t.kind != TermKind::RequiredAnti);
        if !own && !existing {
            return None;
        }
        let mut domains = Domains::new();
        if own {
            for group in view.groups() {
                let weighted = rules
                    .preferred_affinity
                    .iter()
                    .map(|(w, t)| (*w, t))
                    .chain(rules.preferred_anti.iter().map(|(w, t)| (-*w, t)));
                for (weight, t) in weighted {
                    if group_matches(t, group, view) {
                        add_per_node(&mut domains, view, &group.nodes, &t.topology_key, weight);
                    }
                }
            }
        }
        if existing {
            for tg in view.term_groups() {
                let weight = match tg.kind {
                    TermKind::RequiredAnti => continue,
                    TermKind::RequiredAffinity => HARD_POD_AFFINITY_WEIGHT,
                    TermKind::PreferredAffinity => tg.weight,
                    TermKind::PreferredAnti => -tg.weight,
                };
                if pod_matches(&tg.term, pod, view) {
                    add_per_node(&mut domains, view, &tg.nodes, &tg.term.topology_key, weight);
                }
            }
        }
        if domains.is_empty() {
            return None;
        }
        let mut keys: Vec<&str> = domains.keys().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        Some(InterPodScore { domains, keys })
    }

    /// The node's raw score: the weights of every domain it belongs to.
    pub(crate) fn raw(&self, node: &NodeInfo) -> i64 {
        self.keys
            .iter()
            .filter_map(|k| {
                let v = node.spec.labels.get(*k)?;
                self.domains.get(&(*k, v.as_str()))
            })
            .sum()
    }
}
