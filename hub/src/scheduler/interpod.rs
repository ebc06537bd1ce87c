//! Inter-pod affinity and anti-affinity, as kube-scheduler's InterPodAffinity plugin
//! computes them: once per pod, count the existing pods each term cares about per
//! topology domain (a value of the term's `topologyKey` label), then test or score each
//! node by looking up its own domain.
//!
//! Existing pods are visited by group (same namespace and labels, or the same term,
//! see `view`), so a term is matched once per group, not once per pod; domains are
//! small integers (see `TopologyIndex`), so counting is indexing arrays.

use super::filters::Rejection;
use super::hash::IdMap;
use super::pod_info::{AffinityTerm, PodInfo};
use super::view::{ClusterView, PodGroup, Slot, TermKind, TopologyIndex};

/// What an existing pod's required affinity term adds to a matching incoming pod's
/// score on nodes in the existing pod's domain (kube-scheduler's default
/// `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts (or weights) per domain of one topology key.
#[derive(Debug)]
struct KeyCounts<'a> {
    key: &'a str,
    index: &'a TopologyIndex,
    counts: Vec<i64>,
}

/// Counts per topology domain, for the few keys the terms at hand use.
#[derive(Debug, Default)]
struct Domains<'a> {
    keys: Vec<KeyCounts<'a>>,
    /// Something was counted (kube-scheduler: the map is not empty).
    any: bool,
}

impl<'a> Domains<'a> {
    /// Adds `amount` per pod of `nodes` (pods per node) to each node's domain.
    fn add(&mut self, view: &'a ClusterView, key: &'a str, nodes: &IdMap<Slot, u32>, amount: i64) {
        let Some(index) = view.topology(key) else {
            debug_assert!(false, "topology key {key} is not indexed");
            return;
        };
        let pos = match self.keys.iter().position(|k| k.key == key) {
            Some(pos) => pos,
            None => {
                self.keys.push(KeyCounts {
                    key,
                    index,
                    counts: vec![0; index.len()],
                });
                self.keys.len() - 1
            }
        };
        let entry = &mut self.keys[pos];
        for (&slot, &count) in nodes {
            if let Some(domain) = entry.index.domain(slot) {
                entry.counts[domain] += amount * i64::from(count);
                self.any = true;
            }
        }
    }

    /// The count in the node's domain of `key` (0 when nothing was counted there or
    /// the node lacks the label).
    fn get(&self, key: &str, slot: Slot) -> i64 {
        self.keys
            .iter()
            .find(|k| k.key == key)
            .and_then(|k| k.index.domain(slot).map(|d| k.counts[d]))
            .unwrap_or(0)
    }

    /// The sum over every key of the counts in the node's domains.
    fn sum(&self, slot: Slot) -> i64 {
        self.keys
            .iter()
            .filter_map(|k| k.index.domain(slot).map(|d| k.counts[d]))
            .sum()
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
    view: &'a ClusterView,
    /// Domains holding pods whose required anti-affinity selects this pod.
    existing_anti: Domains<'a>,
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
    /// The view must be prepared for the pod (`Cache::prepare`).
    pub(crate) fn new(pod: &'a PodInfo, view: &'a ClusterView) -> Option<InterPodFilter<'a>> {
        let rules = &pod.affinity;
        let own = !rules.required_affinity.is_empty() || !rules.required_anti.is_empty();
        let existing = view.term_groups().any(|t| t.kind == TermKind::RequiredAnti);
        if !own && !existing {
            return None;
        }
        let mut state = InterPodFilter {
            pod,
            view,
            existing_anti: Domains::default(),
            affinity: Domains::default(),
            anti: Domains::default(),
            matches_itself: rules
                .required_affinity
                .iter()
                .all(|t| pod_matches(t, pod, view)),
        };
        if existing {
            for tg in view.term_groups() {
                if tg.kind == TermKind::RequiredAnti && pod_matches(&tg.term, pod, view) {
                    state
                        .existing_anti
                        .add(view, &tg.term.topology_key, &tg.nodes, 1);
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
                        state.affinity.add(view, &t.topology_key, &group.nodes, 1);
                    }
                }
                for t in &rules.required_anti {
                    if group_matches(t, group, view) {
                        state.anti.add(view, &t.topology_key, &group.nodes, 1);
                    }
                }
            }
        }
        Some(state)
    }

    /// kube-scheduler's order: the pod's affinity, its anti-affinity, then existing
    /// pods' anti-affinity.
    pub(crate) fn check(&self, slot: Slot) -> Result<(), Rejection> {
        let terms = &self.pod.affinity.required_affinity;
        if !terms.is_empty() {
            let mut pods_exist = true;
            for t in terms {
                let labelled = self
                    .view
                    .topology(&t.topology_key)
                    .is_some_and(|i| i.domain(slot).is_some());
                if !labelled {
                    // Every topology key must be a label of the node.
                    return Err(Rejection::PodAffinity);
                }
                pods_exist &= self.affinity.get(&t.topology_key, slot) > 0;
            }
            // The first pod of a group that selects itself may go anywhere the
            // topology labels exist.
            let first_of_group = !self.affinity.any && self.matches_itself;
            if !pods_exist && !first_of_group {
                return Err(Rejection::PodAffinity);
            }
        }
        if self
            .pod
            .affinity
            .required_anti
            .iter()
            .any(|t| self.anti.get(&t.topology_key, slot) > 0)
        {
            return Err(Rejection::PodAntiAffinity);
        }
        if self
            .existing_anti
            .keys
            .iter()
            .any(|k| k.index.domain(slot).is_some_and(|d| k.counts[d] > 0))
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
}

impl<'a> InterPodScore<'a> {
    /// `None` when nothing contributes (every node would score the same). The view
    /// must be prepared for the pod (`Cache::prepare`).
    pub(crate) fn new(pod: &'a PodInfo, view: &'a ClusterView) -> Option<InterPodScore<'a>> {
        let rules = &pod.affinity;
        let own = !rules.preferred_affinity.is_empty() || !rules.preferred_anti.is_empty();
        let existing = view.term_groups().any(|t| t.kind != TermKind::RequiredAnti);
        if !own && !existing {
            return None;
        }
        let mut domains = Domains::default();
        if own {
            for group in view.groups() {
                let weighted = rules
                    .preferred_affinity
                    .iter()
                    .map(|(w, t)| (*w, t))
                    .chain(rules.preferred_anti.iter().map(|(w, t)| (-*w, t)));
                for (weight, t) in weighted {
                    if group_matches(t, group, view) {
                        domains.add(view, &t.topology_key, &group.nodes, weight);
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
                    domains.add(view, &tg.term.topology_key, &tg.nodes, weight);
                }
            }
        }
        domains.any.then_some(InterPodScore { domains })
    }

    /// The node's raw score: the weights of every domain it belongs to.
    pub(crate) fn raw(&self, slot: Slot) -> i64 {
        self.domains.sum(slot)
    }
}
