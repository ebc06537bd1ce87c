//! The decision: `schedule(pod, view) -> Result<Placement, Unschedulable>`, a pure
//! function of its inputs (the pod, the cluster view, the node-only verdicts and the
//! cursor that carries kube-scheduler's rotating start index and the tie-break random
//! source).
//!
//! As kube-scheduler does, it visits nodes from a rotating start and stops filtering
//! once it has found enough feasible nodes (`percentageOfNodesToScore`), scores those,
//! and picks the best, choosing at random among equals so equal nodes share the load.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::filters::{self, Insufficient, NodeVerdicts, Rejection};
use super::interpod::{InterPodFilter, InterPodScore};
use super::pod_info::PodInfo;
use super::scores::{self, MAX_NODE_SCORE};
use super::view::{ClusterView, Slot};

/// Below this many nodes, every node is filtered and scored.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Where the pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) slot: Slot,
    pub(crate) score: i64,
    /// Feasible nodes found, and nodes visited to find them.
    pub(crate) feasible: usize,
    pub(crate) visited: usize,
}

/// Why no node can take the pod, in kube-scheduler's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unschedulable {
    pub(crate) message: String,
    /// Some node failed only for want of pods matching the pod's affinity, so a pod
    /// being placed somewhere may make room.
    pub(crate) waits_for_pods: bool,
}

/// State carried from one decision to the next: the rotating start and the
/// tie-break random source.
#[derive(Debug)]
pub(crate) struct Cursor {
    next_start: usize,
    rng: SmallRng,
}

impl Cursor {
    pub(crate) fn new(seed: u64) -> Cursor {
        Cursor {
            next_start: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

/// Settings of the decision.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    /// Percent of nodes to find feasible before scoring; 0 = kube-scheduler's adaptive
    /// default (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
    pub(crate) percentage_of_nodes_to_score: u32,
}

/// Buffers reused across decisions so the hot path does not allocate.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    feasible: Vec<Slot>,
    rejections: Vec<(Slot, Rejection)>,
    totals: Vec<i64>,
    column: Vec<i64>,
    zones: Vec<Option<u32>>,
    zone_totals: Vec<i64>,
}

/// Decides with fresh node verdicts and buffers; for callers that decide rarely.
#[cfg(test)]
pub(crate) fn schedule(
    pod: &PodInfo,
    view: &ClusterView,
    cursor: &mut Cursor,
) -> Result<Placement, Unschedulable> {
    let verdicts = NodeVerdicts::new(&pod.node_rules, view);
    schedule_with(
        pod,
        view,
        &verdicts,
        Settings::default(),
        cursor,
        &mut Scratch::default(),
    )
}

/// The decision. `verdicts` must be `NodeVerdicts::new(&pod.node_rules, view)` at the
/// view's current generation, and the view prepared for the pod (`Cache::prepare`).
pub(crate) fn schedule_with(
    pod: &PodInfo,
    view: &ClusterView,
    verdicts: &NodeVerdicts,
    settings: Settings,
    cursor: &mut Cursor,
    scratch: &mut Scratch,
) -> Result<Placement, Unschedulable> {
    debug_assert_eq!(verdicts.generation, view.generation());
    let order = view.order();
    let n = order.len();
    if n == 0 {
        return Err(Unschedulable {
            message: "no nodes available to schedule pods".to_string(),
            waits_for_pods: false,
        });
    }
    let to_find = feasible_nodes_to_find(settings.percentage_of_nodes_to_score, n);
    let interpod = InterPodFilter::new(pod, view);
    scratch.feasible.clear();
    scratch.rejections.clear();
    let start = cursor.next_start % n;
    let mut visited = 0;
    for i in 0..n {
        let slot = order[(start + i) % n];
        visited += 1;
        match check_node(pod, view, verdicts, interpod.as_ref(), slot) {
            Ok(()) => {
                scratch.feasible.push(slot);
                if scratch.feasible.len() >= to_find {
                    break;
                }
            }
            Err(r) => scratch.rejections.push((slot, r)),
        }
    }
    cursor.next_start = (start + visited) % n;
    let feasible = scratch.feasible.len();
    if feasible == 0 {
        return Err(explain(pod, view, &scratch.rejections, n));
    }
    if feasible == 1 {
        return Ok(Placement {
            slot: scratch.feasible[0],
            score: 0,
            feasible,
            visited,
        });
    }
    score(pod, view, verdicts, scratch);
    let (best, score) = select(&scratch.feasible, &scratch.totals, &mut cursor.rng);
    Ok(Placement {
        slot: best,
        score,
        feasible,
        visited,
    })
}

/// Every node that passes every filter, in visiting order.
#[cfg(test)]
pub(crate) fn feasible(pod: &PodInfo, view: &ClusterView) -> Vec<Slot> {
    let verdicts = NodeVerdicts::new(&pod.node_rules, view);
    let interpod = InterPodFilter::new(pod, view);
    view.order()
        .iter()
        .copied()
        .filter(|&slot| check_node(pod, view, &verdicts, interpod.as_ref(), slot).is_ok())
        .collect()
}

/// Every filter, in kube-scheduler's order, for one node.
fn check_node(
    pod: &PodInfo,
    view: &ClusterView,
    verdicts: &NodeVerdicts,
    interpod: Option<&InterPodFilter<'_>>,
    slot: Slot,
) -> Result<(), Rejection> {
    if let Some(r) = verdicts.rejection(slot) {
        return Err(r);
    }
    let node = view.node(slot);
    if !pod.host_ports.is_empty() && !filters::ports_fit(pod, node) {
        return Err(Rejection::HostPorts);
    }
    filters::resources_fit(pod, node).map_err(Rejection::Resources)?;
    if let Some(f) = interpod {
        f.check(slot)?;
    }
    Ok(())
}

/// kube-scheduler's `numFeasibleNodesToFind`.
pub(crate) fn feasible_nodes_to_find(percentage: u32, nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = match percentage as usize {
        0 => 50usize
            .saturating_sub(nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE),
        p => p.min(100),
    };
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Fills `scratch.totals` with each feasible node's weighted score.
fn score(pod: &PodInfo, view: &ClusterView, verdicts: &NodeVerdicts, scratch: &mut Scratch) {
    let feasible = &scratch.feasible;
    let totals = &mut scratch.totals;
    let column = &mut scratch.column;
    totals.clear();
    totals.extend(feasible.iter().map(|&slot| {
        let node = view.node(slot);
        scores::LEAST_ALLOCATED_WEIGHT * scores::least_allocated(pod, node)
            + scores::BALANCED_ALLOCATION_WEIGHT * scores::balanced_allocation(pod, node)
    }));

    // TaintToleration: fewer untolerated PreferNoSchedule taints is better. With none
    // anywhere every node gets the same 100, which changes no ranking.
    if verdicts.has_prefer_taints() {
        column.clear();
        column.extend(feasible.iter().map(|&s| verdicts.prefer_taints(s)));
        add_weighted(totals, column, true, scores::TAINT_TOLERATION_WEIGHT);
    } else {
        totals
            .iter_mut()
            .for_each(|t| *t += scores::TAINT_TOLERATION_WEIGHT * MAX_NODE_SCORE);
    }

    if verdicts.has_affinity_weights() {
        column.clear();
        column.extend(feasible.iter().map(|&s| verdicts.affinity_weight(s)));
        add_weighted(totals, column, false, scores::NODE_AFFINITY_WEIGHT);
    }

    if let Some(interpod) = InterPodScore::new(pod, view) {
        column.clear();
        column.extend(feasible.iter().map(|&s| interpod.raw(s)));
        scores::normalize_min_max(column);
        for (t, c) in totals.iter_mut().zip(column.iter()) {
            *t += scores::INTER_POD_AFFINITY_WEIGHT * c;
        }
    }

    if let Some(siblings) = pod.owner.as_ref().and_then(|o| view.owner_pods(o)) {
        column.clear();
        column.extend(
            feasible
                .iter()
                .map(|s| siblings.get(s).copied().map_or(0, i64::from)),
        );
        scratch.zones.clear();
        scratch
            .zones
            .extend(feasible.iter().map(|&s| view.node(s).zone));
        scores::spread(column, &scratch.zones, &mut scratch.zone_totals);
        for (t, c) in totals.iter_mut().zip(column.iter()) {
            *t += scores::SELECTOR_SPREAD_WEIGHT * c;
        }
    }
}

fn add_weighted(totals: &mut [i64], column: &mut [i64], reverse: bool, weight: i64) {
    scores::normalize(column, reverse);
    for (t, c) in totals.iter_mut().zip(column.iter()) {
        *t += weight * c;
    }
}

/// The highest total; among equals, each is equally likely (reservoir sampling, as
/// kube-scheduler's `selectHost`).
fn select(feasible: &[Slot], totals: &[i64], rng: &mut SmallRng) -> (Slot, i64) {
    let mut best = (feasible[0], totals[0]);
    let mut ties = 1u32;
    for (&slot, &total) in feasible.iter().zip(totals).skip(1) {
        if total > best.1 {
            best = (slot, total);
            ties = 1;
        } else if total == best.1 {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = (slot, total);
            }
        }
    }
    best
}

/// A reason as kube-scheduler words it, before counting.
#[derive(Debug, PartialEq, Eq)]
enum Reason<'a> {
    Fixed(&'static str),
    Taint(&'a str, &'a str),
    Insufficient(&'a str),
}

impl std::fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Fixed(s) => f.write_str(s),
            Reason::Taint(k, v) => write!(f, "node(s) had untolerated taint {{{k}: {v}}}"),
            Reason::Insufficient(r) => write!(f, "Insufficient {r}"),
        }
    }
}

fn reasons<'a>(
    pod: &'a PodInfo,
    view: &'a ClusterView,
    slot: Slot,
    r: Rejection,
    out: &mut Vec<Reason<'a>>,
) {
    match r {
        Rejection::Unschedulable => out.push(Reason::Fixed("node(s) were unschedulable")),
        Rejection::Taint(i) => {
            let taints = &view.node(slot).spec.taints;
            if let Some(t) = taints.get(usize::from(i)) {
                out.push(Reason::Taint(&t.key, &t.value));
            }
        }
        Rejection::NodeAffinity => out.push(Reason::Fixed(
            "node(s) didn't match Pod's node affinity/selector",
        )),
        Rejection::HostPorts => out.push(Reason::Fixed(
            "node(s) didn't have free ports for the requested pod ports",
        )),
        Rejection::Resources(Insufficient {
            pods,
            cpu,
            memory,
            ephemeral_storage,
            scalars,
        }) => {
            if pods {
                out.push(Reason::Fixed("Too many pods"));
            }
            if cpu {
                out.push(Reason::Insufficient("cpu"));
            }
            if memory {
                out.push(Reason::Insufficient("memory"));
            }
            if ephemeral_storage {
                out.push(Reason::Insufficient("ephemeral-storage"));
            }
            for (i, (name, _)) in pod.requests.scalars.iter().enumerate().take(64) {
                if scalars & (1 << i) != 0 {
                    out.push(Reason::Insufficient(name));
                }
            }
        }
        Rejection::ExistingAntiAffinity => out.push(Reason::Fixed(
            "node(s) didn't satisfy existing pods anti-affinity rules",
        )),
        Rejection::PodAffinity => {
            out.push(Reason::Fixed("node(s) didn't match pod affinity rules"))
        }
        Rejection::PodAntiAffinity => out.push(Reason::Fixed(
            "node(s) didn't match pod anti-affinity rules",
        )),
    }
}

/// kube-scheduler's FitError message: `0/N nodes are available: ` and each reason
/// with its node count, the `count reason` strings sorted, joined by `, `.
fn explain(
    pod: &PodInfo,
    view: &ClusterView,
    rejections: &[(Slot, Rejection)],
    nodes: usize,
) -> Unschedulable {
    let mut counted: Vec<(Reason<'_>, usize)> = Vec::new();
    let mut per_node = Vec::new();
    let mut waits_for_pods = false;
    for &(slot, r) in rejections {
        waits_for_pods |= r == Rejection::PodAffinity;
        per_node.clear();
        reasons(pod, view, slot, r, &mut per_node);
        for reason in per_node.drain(..) {
            match counted.iter_mut().find(|(k, _)| *k == reason) {
                Some((_, n)) => *n += 1,
                None => counted.push((reason, 1)),
            }
        }
    }
    let mut parts: Vec<String> = counted.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut message = format!("0/{nodes} nodes are available:");
    if !parts.is_empty() {
        message.push(' ');
        message.push_str(&parts.join(", "));
        message.push('.');
    }
    Unschedulable {
        message,
        waits_for_pods,
    }
}
