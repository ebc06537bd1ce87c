//! `PodInfo`: everything the scheduler needs to know about a pod, compiled once from
//! the `Pod` object (selectors built, quantities parsed, ports normalised) so that the
//! decision itself neither parses nor allocates per node.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::resources::{
    NodeSelectorTerm, Pod, PodAffinityTerm, Protocol, Taint, TaintEffect, Toleration,
};
use skiff_api::{
    LabelSelector, NodeSelectorRequirement, Requirement, Selector, SelectorError, Uid,
};

use super::resources::{NonZero, Resources, pod_requests};

/// A pod's constraints that depend on the node alone: node selector, node affinity and
/// tolerations. Pods with equal rules share one `NodeRules` (see `signature`), and the
/// verdicts of these rules for every node are computed once per signature.
#[derive(Debug)]
pub(crate) struct NodeRules {
    /// Equal for equal rules: the cache key of the per-node verdicts.
    pub(crate) signature: String,
    pub(crate) node_selector: Selector,
    /// `None` when the pod has no required node affinity (every node passes).
    pub(crate) required: Option<Vec<NodeTerm>>,
    pub(crate) preferred: Vec<(i64, NodeTerm)>,
    pub(crate) tolerations: Vec<Toleration>,
}

/// One node selector term: label requirements and `metadata.name` fields, all ANDed.
#[derive(Debug)]
pub(crate) struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<NodeSelectorRequirement>,
}

impl NodeTerm {
    fn compile(term: &NodeSelectorTerm) -> Result<NodeTerm, SelectorError> {
        let labels = term
            .match_expressions
            .iter()
            .map(NodeSelectorRequirement::to_requirement)
            .collect::<Result<Vec<_>, _>>()?;
        for f in &term.match_fields {
            // Validates key, operator and value count once; matching below cannot fail.
            f.matches_node_name("")?;
        }
        Ok(NodeTerm {
            labels,
            fields: term.match_fields.clone(),
        })
    }

    /// Kubernetes: a term with neither expressions nor fields matches no node.
    pub(crate) fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels.iter().all(|r| r.matches(labels))
            && self
                .fields
                .iter()
                .all(|f| f.matches_node_name(node_name).unwrap_or(false))
    }
}

impl NodeRules {
    /// Whether the node passes the pod's `nodeSelector` and required node affinity
    /// (terms ORed).
    pub(crate) fn node_matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.matches(labels)
            && self
                .required
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node_name, labels)))
    }

    /// The first NoSchedule or NoExecute taint no toleration covers.
    pub(crate) fn untolerated(&self, taints: &[Taint]) -> Option<usize> {
        taints.iter().position(|t| {
            matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
                && !self.tolerations.iter().any(|tol| tol.tolerates(t))
        })
    }

    /// Whether the pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`, the
    /// taint a cordoned node implies.
    pub(crate) fn tolerates_unschedulable(&self) -> bool {
        let taint = Taint {
            key: UNSCHEDULABLE_TAINT.to_string(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
            time_added: None,
        };
        self.tolerations.iter().any(|t| t.tolerates(&taint))
    }

    /// Untolerated PreferNoSchedule taints, counting only tolerations whose effect is
    /// PreferNoSchedule or empty (kube-scheduler's TaintToleration score).
    pub(crate) fn intolerable_prefer_no_schedule(&self, taints: &[Taint]) -> i64 {
        taints
            .iter()
            .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
            .filter(|t| {
                !self.tolerations.iter().any(|tol| {
                    tol.effect
                        .is_none_or(|e| e == TaintEffect::PreferNoSchedule)
                        && tol.tolerates(t)
                })
            })
            .count() as i64
    }

    /// Sum of the weights of preferred node affinity terms the node matches.
    pub(crate) fn preferred_weight(
        &self,
        node_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> i64 {
        self.preferred
            .iter()
            .filter(|(_, t)| t.matches(node_name, labels))
            .map(|(w, _)| *w)
            .sum()
    }
}

/// The taint kube-scheduler checks a cordoned node against.
pub(crate) const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// A pod affinity or anti-affinity term, compiled.
#[derive(Debug, Clone)]
pub(crate) struct AffinityTerm {
    selector: Selector,
    /// Namespaces the term covers by name. Empty with no namespace selector means the
    /// namespace of the pod that has the term (resolved at compile time).
    namespaces: Vec<String>,
    /// Namespaces the term covers by their labels; an empty selector covers all.
    namespace_selector: Option<Selector>,
    pub(crate) topology_key: String,
    /// Equal for equal terms of pods in the same namespace: existing pods' terms are
    /// grouped by it, so a term shared by many replicas is evaluated once.
    pub(crate) signature: String,
}

impl AffinityTerm {
    pub(crate) fn compile(
        term: &PodAffinityTerm,
        own_namespace: &str,
    ) -> Result<AffinityTerm, SelectorError> {
        let selector = LabelSelector::to_selector_or_nothing(term.label_selector.as_ref())?;
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .map(LabelSelector::to_selector)
            .transpose()?;
        let mut namespaces = term.namespaces.clone();
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        namespaces.sort_unstable();
        namespaces.dedup();
        let signature = format!(
            "{own_namespace}\n{}",
            serde_json::to_string(term).unwrap_or_default()
        );
        Ok(AffinityTerm {
            signature,
            selector,
            namespaces,
            namespace_selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether a pod in `namespace` (whose namespace carries `ns_labels`) with `labels`
    /// is selected by this term.
    pub(crate) fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        ns_labels: &BTreeMap<String, String>,
    ) -> bool {
        let in_namespace = self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(ns_labels));
        in_namespace && self.selector.matches(labels)
    }
}

/// The pod's inter-pod affinity rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodAffinityRules {
    pub(crate) required_affinity: Vec<AffinityTerm>,
    pub(crate) required_anti: Vec<AffinityTerm>,
    pub(crate) preferred_affinity: Vec<(i64, AffinityTerm)>,
    pub(crate) preferred_anti: Vec<(i64, AffinityTerm)>,
}

/// A host port a pod claims: the triple kube-scheduler compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// `0.0.0.0` when unset: every address.
    pub(crate) ip: String,
    pub(crate) protocol: Protocol,
    pub(crate) port: i32,
}

impl HostPort {
    /// Same port and protocol, and the same address or either one on every address.
    pub(crate) fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

const ANY_IP: &str = "0.0.0.0";

/// A pod compiled for scheduling.
#[derive(Debug)]
pub(crate) struct PodInfo {
    pub(crate) uid: Uid,
    pub(crate) namespace: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// `metadata.generation` when compiled: a changed spec means compiling again.
    pub(crate) generation: Option<i64>,
    pub(crate) requests: Resources,
    pub(crate) non_zero: NonZero,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) node_rules: Arc<NodeRules>,
    pub(crate) affinity: PodAffinityRules,
    /// The controller owner's UID: pods with the same one are spread apart.
    pub(crate) owner: Option<Uid>,
}

/// Why a pod's scheduling rules cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PodRulesError {
    #[error("invalid nodeSelector: {0}")]
    NodeSelector(#[source] SelectorError),
    #[error("invalid node affinity: {0}")]
    NodeAffinity(#[source] SelectorError),
    #[error("invalid pod affinity: {0}")]
    PodAffinity(#[source] SelectorError),
    #[error("invalid pod anti-affinity: {0}")]
    PodAntiAffinity(#[source] SelectorError),
}

impl PodInfo {
    pub(crate) fn new(pod: &Pod) -> Result<PodInfo, PodRulesError> {
        let meta = &pod.metadata;
        let namespace = meta.namespace_or_empty().to_string();
        let (requests, non_zero) = pod_requests(&pod.spec);
        Ok(PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone(),
            generation: meta.generation,
            requests,
            non_zero,
            host_ports: host_ports(pod),
            node_rules: Arc::new(node_rules(pod)?),
            affinity: affinity_rules(pod, &namespace)?,
            owner: controller_uid(pod),
            namespace,
        })
    }
}

/// The UID of the pod's controller (the owner reference with `controller: true`).
pub(crate) fn controller_uid(pod: &Pod) -> Option<Uid> {
    pod.metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// Host ports of the app containers (init containers have exited before the pod runs).
pub(crate) fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port > 0)
        .map(|p| HostPort {
            ip: match p.host_ip.as_deref() {
                None | Some("") => ANY_IP.to_string(),
                Some(ip) => ip.to_string(),
            },
            protocol: p.protocol.unwrap_or(Protocol::Tcp),
            port: p.host_port,
        })
        .collect()
}

fn node_rules(pod: &Pod) -> Result<NodeRules, PodRulesError> {
    let spec = &pod.spec;
    let node_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref());
    // Plain data always serializes; an empty signature would only share verdicts
    // between pods that could not be serialized, which cannot happen.
    let signature = serde_json::to_string(&(&spec.node_selector, node_affinity, &spec.tolerations))
        .unwrap_or_default();
    let node_selector =
        Selector::from_labels(&spec.node_selector).map_err(PodRulesError::NodeSelector)?;
    let required = node_affinity
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .map(NodeTerm::compile)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(PodRulesError::NodeAffinity)?;
    let preferred = node_affinity
        .map(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_slice()
        })
        .unwrap_or_default()
        .iter()
        .filter(|p| p.weight != 0)
        .map(|p| Ok((i64::from(p.weight), NodeTerm::compile(&p.preference)?)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PodRulesError::NodeAffinity)?;
    Ok(NodeRules {
        signature,
        node_selector,
        required,
        preferred,
        tolerations: spec.tolerations.clone(),
    })
}

pub(crate) fn affinity_rules(
    pod: &Pod,
    namespace: &str,
) -> Result<PodAffinityRules, PodRulesError> {
    let mut rules = PodAffinityRules::default();
    let Some(affinity) = pod.spec.affinity.as_ref() else {
        return Ok(rules);
    };
    let compile = |t: &PodAffinityTerm| AffinityTerm::compile(t, namespace);
    if let Some(a) = affinity.pod_affinity.as_ref() {
        let err = PodRulesError::PodAffinity;
        rules.required_affinity = a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .map(compile)
            .collect::<Result<_, _>>()
            .map_err(err)?;
        rules.preferred_affinity = a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .map(|w| Ok((i64::from(w.weight), compile(&w.pod_affinity_term)?)))
            .collect::<Result<_, _>>()
            .map_err(err)?;
    }
    if let Some(a) = affinity.pod_anti_affinity.as_ref() {
        let err = PodRulesError::PodAntiAffinity;
        rules.required_anti = a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .map(compile)
            .collect::<Result<_, _>>()
            .map_err(err)?;
        rules.preferred_anti = a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .map(|w| Ok((i64::from(w.weight), compile(&w.pod_affinity_term)?)))
            .collect::<Result<_, _>>()
            .map_err(err)?;
    }
    Ok(rules)
}
