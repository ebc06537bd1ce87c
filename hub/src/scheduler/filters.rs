//! The filters: which nodes a pod may run on, each with kube-scheduler's semantics and
//! in its order (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit, then InterPodAffinity in `interpod`). A node is rejected by the
//! first filter that fails, and that rejection is what the explanation counts.
//!
//! The node-only filters depend on nothing but the pod's node rules and the node, so
//! their verdicts for every node are computed once per set of rules ([`NodeVerdicts`])
//! and reused by every pod that has the same rules.

use super::pod_info::{NodeRules, PodInfo};
use super::view::{ClusterView, NodeInfo};

/// Why a node cannot take a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Cordoned, and the pod does not tolerate that.
    Unschedulable,
    /// A NoSchedule or NoExecute taint the pod does not tolerate: its index in the
    /// node's taints.
    Taint(u16),
    /// `nodeSelector` or required node affinity.
    NodeAffinity,
    HostPorts,
    Resources(Insufficient),
    /// An existing pod's required anti-affinity repels this pod.
    ExistingAntiAffinity,
    PodAffinity,
    PodAntiAffinity,
}

/// Which resources a node lacks for a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Insufficient {
    pub(crate) pods: bool,
    pub(crate) cpu: bool,
    pub(crate) memory: bool,
    pub(crate) ephemeral_storage: bool,
    /// Bit `i`: the pod's `i`-th extended resource (in `PodInfo::requests.scalars`).
    pub(crate) scalars: u64,
}

impl Insufficient {
    fn any(&self) -> bool {
        self.pods || self.cpu || self.memory || self.ephemeral_storage || self.scalars != 0
    }
}

/// The node-only verdicts for one set of node rules, per node slot.
#[derive(Debug)]
pub(crate) struct NodeVerdicts {
    /// The view generation these were computed at.
    pub(crate) generation: u64,
    /// `None`: the node passes the node-only filters.
    rejections: Vec<Option<Rejection>>,
    /// Sum of the weights of matching preferred node affinity terms (empty when the
    /// pod has none).
    affinity_weights: Vec<i64>,
    /// Untolerated PreferNoSchedule taints (empty when no node has any).
    prefer_taints: Vec<i64>,
}

impl NodeVerdicts {
    pub(crate) fn new(rules: &NodeRules, view: &ClusterView) -> NodeVerdicts {
        let slots = view.slot_count();
        let mut out = NodeVerdicts {
            generation: view.generation(),
            rejections: vec![None; slots],
            affinity_weights: Vec::new(),
            prefer_taints: Vec::new(),
        };
        if !rules.preferred.is_empty() {
            out.affinity_weights = vec![0; slots];
        }
        for &slot in view.order() {
            let node = view.node(slot);
            let i = slot as usize;
            out.rejections[i] = node_rejection(rules, node);
            if !rules.preferred.is_empty() {
                out.affinity_weights[i] = rules.preferred_weight(&node.name, &node.spec.labels);
            }
            let prefer = rules.intolerable_prefer_no_schedule(&node.spec.taints);
            if prefer > 0 {
                if out.prefer_taints.is_empty() {
                    out.prefer_taints = vec![0; slots];
                }
                out.prefer_taints[i] = prefer;
            }
        }
        out
    }

    pub(crate) fn rejection(&self, slot: u32) -> Option<Rejection> {
        self.rejections.get(slot as usize).copied().flatten()
    }

    pub(crate) fn affinity_weight(&self, slot: u32) -> i64 {
        self.affinity_weights
            .get(slot as usize)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn prefer_taints(&self, slot: u32) -> i64 {
        self.prefer_taints.get(slot as usize).copied().unwrap_or(0)
    }

    pub(crate) fn has_affinity_weights(&self) -> bool {
        !self.affinity_weights.is_empty()
    }

    pub(crate) fn has_prefer_taints(&self) -> bool {
        !self.prefer_taints.is_empty()
    }
}

/// NodeUnschedulable, TaintToleration and NodeAffinity, in that order.
pub(crate) fn node_rejection(rules: &NodeRules, node: &NodeInfo) -> Option<Rejection> {
    let spec = &node.spec;
    if spec.unschedulable && !rules.tolerates_unschedulable() {
        return Some(Rejection::Unschedulable);
    }
    if let Some(i) = rules.untolerated(&spec.taints) {
        return Some(Rejection::Taint(u16::try_from(i).unwrap_or(u16::MAX)));
    }
    if !rules.node_matches(&node.name, &spec.labels) {
        return Some(Rejection::NodeAffinity);
    }
    None
}

/// NodePorts: none of the pod's host ports is taken on the node.
pub(crate) fn ports_fit(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.host_ports
        .iter()
        .all(|p| !node.host_ports.iter().any(|q| p.conflicts(q)))
}

/// NodeResourcesFit: one more pod fits the node's pod count, and each requested
/// resource fits what is allocatable minus what pods already there request.
pub(crate) fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Insufficient> {
    let mut lacks = Insufficient {
        pods: node.pod_count + 1 > node.spec.allowed_pods,
        ..Insufficient::default()
    };
    let want = &pod.requests;
    if !want.is_zero() {
        let have = &node.spec.allocatable;
        let used = &node.requested;
        lacks.cpu = want.milli_cpu > 0 && want.milli_cpu > have.milli_cpu - used.milli_cpu;
        lacks.memory = want.memory > 0 && want.memory > have.memory - used.memory;
        lacks.ephemeral_storage = want.ephemeral_storage > 0
            && want.ephemeral_storage > have.ephemeral_storage - used.ephemeral_storage;
        for (i, (name, amount)) in want.scalars.iter().enumerate().take(64) {
            if *amount > 0 && *amount > have.scalar(name) - used.scalar(name) {
                lacks.scalars |= 1 << i;
            }
        }
    }
    if lacks.any() { Err(lacks) } else { Ok(()) }
}
