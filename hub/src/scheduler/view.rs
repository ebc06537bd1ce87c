//! `ClusterView`: the plain data every decision reads — nodes with what they offer and
//! what is already placed on them, pods grouped by labels and by affinity terms, and
//! namespace labels. The cache (see `cache`) is the only writer; a decision only reads.

use std::collections::{BTreeMap, HashMap};

use skiff_api::Uid;
use skiff_api::resources::{Node, Taint, TaintEffect};

use super::hash::IdMap;
use super::pod_info::{AffinityTerm, HostPort};
use super::resources::{NonZero, Resources, node_allocatable};

/// A node's position in the view's node table. Stable while the node exists.
pub(crate) type Slot = u32;

/// Taints a node implies while its `Ready` condition is not `True`, as Kubernetes'
/// node lifecycle controller adds them: tolerating them lets a pod land anyway.
pub(crate) const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub(crate) const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// What a node offers and what is placed on it.
#[derive(Debug, Default)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    /// The Node object exists. A slot also exists for a node name that pods are bound
    /// to while the Node itself is absent, so their usage is kept.
    pub(crate) present: bool,
    pub(crate) spec: NodeSpecView,
    /// Interned region/zone of the node, if labelled.
    pub(crate) zone: Option<u32>,
    pub(crate) requested: Resources,
    pub(crate) non_zero_requested: NonZero,
    pub(crate) pod_count: i64,
    pub(crate) host_ports: Vec<HostPort>,
}

/// The parts of a Node that decisions read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NodeSpecView {
    pub(crate) labels: BTreeMap<String, String>,
    /// The node's taints, plus the not-ready/unreachable taint while it is not Ready.
    pub(crate) taints: Vec<Taint>,
    pub(crate) unschedulable: bool,
    pub(crate) allocatable: Resources,
    pub(crate) allowed_pods: i64,
}

impl NodeSpecView {
    pub(crate) fn new(node: &Node) -> NodeSpecView {
        let (allocatable, allowed_pods) = node_allocatable(node);
        let mut taints = node.spec.taints.clone();
        let readiness = match node.condition("Ready").map(|c| c.status) {
            Some(s) if s.is_true() => None,
            Some(skiff_api::resources::ConditionStatus::Unknown) => Some(UNREACHABLE_TAINT),
            _ => Some(NOT_READY_TAINT),
        };
        if let Some(key) = readiness
            && !taints
                .iter()
                .any(|t| t.key == key && t.effect == TaintEffect::NoSchedule)
        {
            taints.push(Taint {
                key: key.to_string(),
                value: String::new(),
                effect: TaintEffect::NoSchedule,
                time_added: None,
            });
        }
        NodeSpecView {
            labels: node.metadata.labels.clone(),
            taints,
            unschedulable: node.spec.unschedulable,
            allocatable,
            allowed_pods,
        }
    }
}

/// Pods with the same namespace and labels, counted per node: affinity terms select
/// by labels, so a term is matched once per group instead of once per pod.
#[derive(Debug)]
pub(crate) struct PodGroup {
    pub(crate) namespace: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) nodes: IdMap<Slot, u32>,
    pub(crate) count: u32,
}

/// What an existing pod's affinity term does to pods that come after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TermKind {
    RequiredAffinity,
    RequiredAnti,
    PreferredAffinity,
    PreferredAnti,
}

/// Existing pods' affinity terms that are equal, counted per node.
#[derive(Debug)]
pub(crate) struct TermGroup {
    pub(crate) kind: TermKind,
    pub(crate) weight: i64,
    pub(crate) term: AffinityTerm,
    pub(crate) nodes: IdMap<Slot, u32>,
    pub(crate) count: u32,
}

/// Items with stable ids, found by key, freed when their count drops to zero.
#[derive(Debug)]
pub(crate) struct Registry<K, T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
    index: HashMap<K, u32>,
}

impl<K, T> Default for Registry<K, T> {
    fn default() -> Self {
        Registry {
            items: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, T> Registry<K, T> {
    pub(crate) fn id_or_insert(&mut self, key: &K, make: impl FnOnce() -> T) -> u32 {
        if let Some(id) = self.index.get(key) {
            return *id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.items[id as usize] = Some(make());
                id
            }
            None => {
                self.items.push(Some(make()));
                (self.items.len() - 1) as u32
            }
        };
        self.index.insert(key.clone(), id);
        id
    }

    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        self.items.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.items.get_mut(id as usize).and_then(Option::as_mut)
    }

    pub(crate) fn remove(&mut self, id: u32, key: &K) {
        if let Some(slot) = self.items.get_mut(id as usize)
            && slot.take().is_some()
        {
            self.index.remove(key);
            self.free.push(id);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

/// The values one topology key (a node label such as `kubernetes.io/hostname`) takes
/// across nodes, interned, so a topology domain is a small integer and counting pods
/// per domain is indexing an array.
#[derive(Debug, Default)]
pub(crate) struct TopologyIndex {
    ids: HashMap<String, u32>,
    /// Per slot, the node's domain; `NO_DOMAIN` for nodes without the label (and
    /// slots without a node).
    of_slot: Vec<u32>,
}

const NO_DOMAIN: u32 = u32::MAX;

impl TopologyIndex {
    /// The node's domain, `None` when it does not have the label.
    pub(crate) fn domain(&self, slot: Slot) -> Option<usize> {
        self.of_slot
            .get(slot as usize)
            .copied()
            .filter(|d| *d != NO_DOMAIN)
            .map(|d| d as usize)
    }

    /// How many domains there are (an upper bound on `domain() + 1`).
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    fn set(&mut self, slot: Slot, value: Option<&str>) {
        let slot = slot as usize;
        if self.of_slot.len() <= slot {
            self.of_slot.resize(slot + 1, NO_DOMAIN);
        }
        self.of_slot[slot] = match value {
            None => NO_DOMAIN,
            Some(v) => match self.ids.get(v) {
                Some(id) => *id,
                None => {
                    let id = self.ids.len() as u32;
                    self.ids.insert(v.to_string(), id);
                    id
                }
            },
        };
    }
}

pub(crate) type GroupKey = (String, BTreeMap<String, String>);
pub(crate) type TermKey = (TermKind, i64, String);

/// The cluster as decisions see it.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    pub(super) nodes: Vec<NodeInfo>,
    pub(super) slots: HashMap<String, Slot>,
    /// Present nodes in the order decisions visit them: zones interleaved (one node of
    /// each zone in turn, as kube-scheduler's node tree does), so a partial scan still
    /// sees every zone.
    pub(super) order: Vec<Slot>,
    pub(super) order_stale: bool,
    /// Bumped whenever a node changes in a way node-only rules could see.
    pub(super) generation: u64,
    pub(super) groups: Registry<GroupKey, PodGroup>,
    pub(super) terms: Registry<TermKey, TermGroup>,
    /// Per controller owner, its running pods per node (terminating pods excluded).
    pub(super) owners: HashMap<Uid, IdMap<Slot, u32>>,
    pub(super) namespaces: HashMap<String, BTreeMap<String, String>>,
    pub(super) zones: Vec<String>,
    pub(super) zone_ids: HashMap<String, u32>,
    /// Domains of every topology key an affinity term uses.
    pub(super) topology: HashMap<String, TopologyIndex>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl ClusterView {
    /// Present nodes, in visiting order.
    pub(crate) fn order(&self) -> &[Slot] {
        debug_assert!(!self.order_stale, "refresh the view before reading it");
        &self.order
    }

    pub(crate) fn node(&self, slot: Slot) -> &NodeInfo {
        &self.nodes[slot as usize]
    }

    /// Size of the node table (present or not), for per-slot arrays.
    pub(crate) fn slot_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn slot_of(&self, name: &str) -> Option<Slot> {
        self.slots.get(name).copied()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = &PodGroup> {
        self.groups.iter()
    }

    pub(crate) fn term_groups(&self) -> impl Iterator<Item = &TermGroup> {
        self.terms.iter()
    }

    pub(crate) fn has_term_groups(&self) -> bool {
        self.terms.len() > 0
    }

    pub(crate) fn owner_pods(&self, owner: &Uid) -> Option<&IdMap<Slot, u32>> {
        self.owners.get(owner)
    }

    pub(crate) fn namespace_labels(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.namespaces.get(namespace).unwrap_or(&NO_LABELS)
    }

    /// The domains of a topology key, if some affinity term uses it (see
    /// `Cache::prepare`).
    pub(crate) fn topology(&self, key: &str) -> Option<&TopologyIndex> {
        self.topology.get(key)
    }

    /// Starts keeping the domains of `key`.
    pub(super) fn track_topology_key(&mut self, key: &str) {
        if self.topology.contains_key(key) {
            return;
        }
        let mut index = TopologyIndex::default();
        for (slot, node) in self.nodes.iter().enumerate() {
            let value = node.present.then(|| node.spec.labels.get(key)).flatten();
            index.set(slot as Slot, value.map(String::as_str));
        }
        self.topology.insert(key.to_string(), index);
    }

    /// Brings every tracked key's domain of `slot` up to date with its node.
    pub(super) fn update_topology(&mut self, slot: Slot) {
        let node = &self.nodes[slot as usize];
        for (key, index) in &mut self.topology {
            let value = node.present.then(|| node.spec.labels.get(key)).flatten();
            index.set(slot, value.map(String::as_str));
        }
    }

    /// Recomputes the visiting order after nodes came, went or changed zone.
    pub(crate) fn refresh(&mut self) {
        if !self.order_stale {
            return;
        }
        let mut by_zone: Vec<Vec<Slot>> = Vec::new();
        let mut zone_pos: HashMap<Option<u32>, usize> = HashMap::new();
        for (slot, node) in self.nodes.iter().enumerate() {
            if !node.present {
                continue;
            }
            let pos = *zone_pos.entry(node.zone).or_insert_with(|| {
                by_zone.push(Vec::new());
                by_zone.len() - 1
            });
            by_zone[pos].push(slot as Slot);
        }
        self.order.clear();
        let longest = by_zone.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for zone in &by_zone {
                if let Some(slot) = zone.get(i) {
                    self.order.push(*slot);
                }
            }
        }
        self.order_stale = false;
    }

    pub(super) fn zone_id(&mut self, labels: &BTreeMap<String, String>) -> Option<u32> {
        let key = zone_key(labels)?;
        if let Some(id) = self.zone_ids.get(&key) {
            return Some(*id);
        }
        let id = self.zones.len() as u32;
        self.zones.push(key.clone());
        self.zone_ids.insert(key, id);
        Some(id)
    }
}

/// Region and zone, as kube-scheduler's zone key; `None` when the node has neither.
fn zone_key(labels: &BTreeMap<String, String>) -> Option<String> {
    let get = |stable: &str, beta: &str| {
        labels
            .get(stable)
            .or_else(|| labels.get(beta))
            .map(String::as_str)
            .unwrap_or("")
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get(
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    );
    (!region.is_empty() || !zone.is_empty()).then(|| format!("{region}:\x00:{zone}"))
}
