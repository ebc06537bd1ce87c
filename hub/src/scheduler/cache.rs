//! The scheduler's cache: keeps the `ClusterView` in step with the store's nodes, pods
//! and namespaces as watch events arrive, and holds the pods the scheduler has placed
//! but whose binding is not yet durable ("assumed", as kube-scheduler calls it), so the
//! next decision already sees them.

use std::collections::{BTreeMap, HashMap};

use skiff_api::Uid;
use skiff_api::resources::{Node, Pod};

use super::pod_info::{
    HostPort, PodAffinityRules, PodInfo, affinity_rules, controller_uid, host_ports,
};
use super::resources::{NonZero, Resources, pod_requests};
use super::view::{ClusterView, NodeInfo, NodeSpecView, PodGroup, Slot, TermGroup, TermKind};

/// What a change can do for pods that are waiting because nothing fitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wake {
    /// Something was freed or changed (a pod left a node, a node changed, labels
    /// changed): any waiting pod may fit now.
    pub(crate) any: bool,
    /// A pod was placed: only pods waiting for pod affinity can gain from that.
    pub(crate) pod_added: bool,
}

impl std::ops::BitOrAssign for Wake {
    fn bitor_assign(&mut self, o: Wake) {
        self.any |= o.any;
        self.pod_added |= o.pod_added;
    }
}

const WAKE_ANY: Wake = Wake {
    any: true,
    pod_added: false,
};
const WAKE_ADDED: Wake = Wake {
    any: false,
    pod_added: true,
};

/// A pod counted on a node.
#[derive(Debug)]
struct Placed {
    slot: Slot,
    /// Placed by this scheduler, binding not yet seen durable.
    assumed: bool,
    deleting: bool,
    generation: Option<i64>,
    requests: Resources,
    non_zero: NonZero,
    ports: Vec<HostPort>,
    group: u32,
    terms: Vec<u32>,
    owner: Option<Uid>,
}

/// The parts of a pod the cache counts, whether it comes from the store or from a
/// decision.
struct PodParts<'a> {
    uid: &'a Uid,
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    generation: Option<i64>,
    deleting: bool,
    requests: Resources,
    non_zero: NonZero,
    ports: Vec<HostPort>,
    affinity: &'a PodAffinityRules,
    owner: Option<Uid>,
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    view: ClusterView,
    pods: HashMap<Uid, Placed>,
    free_slots: Vec<Slot>,
}

impl Cache {
    /// The view, with its node order brought up to date.
    pub(crate) fn view(&mut self) -> &ClusterView {
        self.view.refresh();
        &self.view
    }

    pub(crate) fn is_placed(&self, uid: &Uid) -> bool {
        self.pods.contains_key(uid)
    }

    pub(crate) fn is_assumed(&self, uid: &Uid) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// A Node was created or changed. Returns whether anything a decision reads changed.
    pub(crate) fn upsert_node(&mut self, node: &Node) -> bool {
        let spec = NodeSpecView::new(node);
        let slot = self.slot_for(&node.metadata.name);
        let current = &self.view.nodes[slot as usize];
        if current.present && current.spec == spec {
            return false;
        }
        let zone = self.view.zone_id(&spec.labels);
        let info = &mut self.view.nodes[slot as usize];
        if !info.present || info.zone != zone {
            self.view.order_stale = true;
        }
        info.present = true;
        info.zone = zone;
        info.spec = spec;
        self.view.update_topology(slot);
        self.view.generation += 1;
        true
    }

    /// A Node was deleted. Pods bound to it stay counted under its name.
    pub(crate) fn remove_node(&mut self, name: &str) -> bool {
        let Some(slot) = self.view.slot_of(name) else {
            return false;
        };
        let info = &mut self.view.nodes[slot as usize];
        if !info.present {
            return false;
        }
        info.present = false;
        info.spec = NodeSpecView::default();
        info.zone = None;
        self.view.update_topology(slot);
        self.view.order_stale = true;
        self.view.generation += 1;
        self.release_slot_if_unused(slot);
        true
    }

    /// A Namespace was created or changed; returns whether its labels changed.
    pub(crate) fn upsert_namespace(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        if self.view.namespaces.get(name) == Some(labels) {
            return false;
        }
        self.view
            .namespaces
            .insert(name.to_string(), labels.clone());
        true
    }

    pub(crate) fn remove_namespace(&mut self, name: &str) -> bool {
        self.view.namespaces.remove(name).is_some()
    }

    /// Makes the view ready for deciding `pod`: the topology keys of its affinity
    /// terms are indexed.
    pub(crate) fn prepare(&mut self, pod: &PodInfo) {
        let rules = &pod.affinity;
        let keys = rules
            .required_affinity
            .iter()
            .chain(&rules.required_anti)
            .chain(rules.preferred_affinity.iter().map(|(_, t)| t))
            .chain(rules.preferred_anti.iter().map(|(_, t)| t));
        for term in keys {
            self.view.track_topology_key(&term.topology_key);
        }
    }

    /// A pod the store shows bound to a node (by this scheduler or anyone else).
    pub(crate) fn observe_bound(&mut self, pod: &Pod, node: &str) -> Wake {
        let meta = &pod.metadata;
        let Some(uid) = meta.uid.as_ref() else {
            return Wake::default();
        };
        let deleting = meta.deletion_timestamp.is_some();
        if let Some(p) = self.pods.get_mut(uid) {
            let same_place = self.view.nodes[p.slot as usize].name == node;
            // Binding changes the spec (nodeName), so the generation of a pod this
            // scheduler placed moves on once; only a later change is a new spec.
            let same_spec = p.assumed || p.generation == meta.generation;
            let same_pod = same_spec
                && self.view.groups.get(p.group).is_some_and(|g| {
                    g.labels == meta.labels && g.namespace == meta.namespace_or_empty()
                });
            if same_place && same_pod {
                p.assumed = false;
                p.generation = meta.generation;
                if deleting && !p.deleting {
                    // Terminating pods still use their node but no longer count as
                    // replicas to spread.
                    p.deleting = true;
                    if let Some(owner) = p.owner.clone() {
                        decrement_owner(&mut self.view.owners, &owner, p.slot);
                    }
                }
                return Wake::default();
            }
            self.remove_pod(uid);
            let mut wake = self.add_bound(pod, uid, node, deleting);
            wake |= WAKE_ANY;
            return wake;
        }
        self.add_bound(pod, uid, node, deleting)
    }

    fn add_bound(&mut self, pod: &Pod, uid: &Uid, node: &str, deleting: bool) -> Wake {
        let meta = &pod.metadata;
        let (requests, non_zero) = pod_requests(&pod.spec);
        let namespace = meta.namespace_or_empty();
        let affinity = affinity_rules(pod, namespace).unwrap_or_else(|e| {
            // The API validates affinity; a stored pod with an invalid term is not
            // worth refusing to count, only its terms are left out.
            tracing::warn!(pod = %meta.name, namespace, error = %e, "ignoring invalid affinity of a bound pod");
            PodAffinityRules::default()
        });
        let slot = self.slot_for(node);
        self.add(
            slot,
            false,
            PodParts {
                uid,
                namespace,
                labels: &meta.labels,
                generation: meta.generation,
                deleting,
                requests,
                non_zero,
                ports: host_ports(pod),
                affinity: &affinity,
                owner: controller_uid(pod),
            },
        );
        WAKE_ADDED
    }

    /// Counts a pod on `slot` before its binding is durable, so the next decision
    /// sees it.
    pub(crate) fn assume(&mut self, pod: &PodInfo, slot: Slot) -> Wake {
        if self.pods.contains_key(&pod.uid) {
            return Wake::default();
        }
        self.add(
            slot,
            true,
            PodParts {
                uid: &pod.uid,
                namespace: &pod.namespace,
                labels: &pod.labels,
                generation: pod.generation,
                deleting: false,
                requests: pod.requests.clone(),
                non_zero: pod.non_zero,
                ports: pod.host_ports.clone(),
                affinity: &pod.affinity,
                owner: pod.owner.clone(),
            },
        );
        WAKE_ADDED
    }

    /// The binding of an assumed pod is durable; `generation` is the bound pod's.
    pub(crate) fn confirm(&mut self, uid: &Uid, generation: Option<i64>) {
        if let Some(p) = self.pods.get_mut(uid)
            && p.assumed
        {
            p.assumed = false;
            p.generation = generation;
        }
    }

    /// Undoes an assumption whose binding failed. A pod the store has meanwhile shown
    /// bound (here or elsewhere) is left as the store says.
    pub(crate) fn forget(&mut self, uid: &Uid) -> Wake {
        if self.is_assumed(uid) {
            self.remove_pod(uid)
        } else {
            Wake::default()
        }
    }

    /// A pod left its node: deleted, finished, or unbound.
    pub(crate) fn remove_pod(&mut self, uid: &Uid) -> Wake {
        let Some(p) = self.pods.remove(uid) else {
            return Wake::default();
        };
        let view = &mut self.view;
        let node = &mut view.nodes[p.slot as usize];
        node.requested.subtract(&p.requests);
        node.non_zero_requested.subtract(p.non_zero);
        node.pod_count -= 1;
        for port in &p.ports {
            if let Some(i) = node.host_ports.iter().position(|q| q == port) {
                node.host_ports.swap_remove(i);
            }
        }
        if let Some(g) = view.groups.get_mut(p.group)
            && decrement(&mut g.count, &mut g.nodes, p.slot)
        {
            let key = (g.namespace.clone(), g.labels.clone());
            view.groups.remove(p.group, &key);
        }
        for id in p.terms {
            if let Some(t) = view.terms.get_mut(id)
                && decrement(&mut t.count, &mut t.nodes, p.slot)
            {
                let key = (t.kind, t.weight, t.term.signature.clone());
                view.terms.remove(id, &key);
            }
        }
        if !p.deleting
            && let Some(owner) = &p.owner
        {
            decrement_owner(&mut view.owners, owner, p.slot);
        }
        self.release_slot_if_unused(p.slot);
        WAKE_ANY
    }

    fn add(&mut self, slot: Slot, assumed: bool, pod: PodParts<'_>) {
        let view = &mut self.view;
        let node = &mut view.nodes[slot as usize];
        node.requested.add(&pod.requests);
        node.non_zero_requested.add(pod.non_zero);
        node.pod_count += 1;
        node.host_ports.extend(pod.ports.iter().cloned());
        let key = (pod.namespace.to_string(), pod.labels.clone());
        let group = view.groups.id_or_insert(&key, || PodGroup {
            namespace: key.0.clone(),
            labels: key.1.clone(),
            nodes: Default::default(),
            count: 0,
        });
        if let Some(g) = view.groups.get_mut(group) {
            g.count += 1;
            *g.nodes.entry(slot).or_default() += 1;
        }
        let rules = pod.affinity;
        let terms = rules
            .required_affinity
            .iter()
            .map(|t| (TermKind::RequiredAffinity, 0, t))
            .chain(
                rules
                    .required_anti
                    .iter()
                    .map(|t| (TermKind::RequiredAnti, 0, t)),
            )
            .chain(
                rules
                    .preferred_affinity
                    .iter()
                    .map(|(w, t)| (TermKind::PreferredAffinity, *w, t)),
            )
            .chain(
                rules
                    .preferred_anti
                    .iter()
                    .map(|(w, t)| (TermKind::PreferredAnti, *w, t)),
            )
            .map(|(kind, weight, term)| {
                view.track_topology_key(&term.topology_key);
                let key = (kind, weight, term.signature.clone());
                let id = view.terms.id_or_insert(&key, || TermGroup {
                    kind,
                    weight,
                    term: term.clone(),
                    nodes: Default::default(),
                    count: 0,
                });
                if let Some(t) = view.terms.get_mut(id) {
                    t.count += 1;
                    *t.nodes.entry(slot).or_default() += 1;
                }
                id
            })
            .collect();
        if !pod.deleting
            && let Some(owner) = &pod.owner
        {
            *view
                .owners
                .entry(owner.clone())
                .or_default()
                .entry(slot)
                .or_default() += 1;
        }
        self.pods.insert(
            pod.uid.clone(),
            Placed {
                slot,
                assumed,
                deleting: pod.deleting,
                generation: pod.generation,
                requests: pod.requests,
                non_zero: pod.non_zero,
                ports: pod.ports,
                group,
                terms,
                owner: pod.owner,
            },
        );
    }

    /// The slot of a node name, creating an absent one if the name is new.
    fn slot_for(&mut self, name: &str) -> Slot {
        if let Some(slot) = self.view.slot_of(name) {
            return slot;
        }
        let info = NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.view.nodes[slot as usize] = info;
                slot
            }
            None => {
                self.view.nodes.push(info);
                (self.view.nodes.len() - 1) as Slot
            }
        };
        self.view.slots.insert(name.to_string(), slot);
        slot
    }

    /// Frees the slot of a node that is gone and has no pods left.
    fn release_slot_if_unused(&mut self, slot: Slot) {
        let info = &self.view.nodes[slot as usize];
        if info.present || info.pod_count > 0 {
            return;
        }
        let name = std::mem::take(&mut self.view.nodes[slot as usize].name);
        self.view.slots.remove(&name);
        self.view.nodes[slot as usize] = NodeInfo::default();
        self.free_slots.push(slot);
    }
}

/// Takes one pod off `slot` in a per-node count; returns whether the total hit zero.
fn decrement(count: &mut u32, nodes: &mut super::hash::IdMap<Slot, u32>, slot: Slot) -> bool {
    *count = count.saturating_sub(1);
    if let Some(n) = nodes.get_mut(&slot) {
        *n -= 1;
        if *n == 0 {
            nodes.remove(&slot);
        }
    }
    *count == 0
}

fn decrement_owner(
    owners: &mut HashMap<Uid, super::hash::IdMap<Slot, u32>>,
    owner: &Uid,
    slot: Slot,
) {
    if let Some(nodes) = owners.get_mut(owner) {
        if let Some(n) = nodes.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                nodes.remove(&slot);
            }
        }
        if nodes.is_empty() {
            owners.remove(owner);
        }
    }
}
