//! The scores: how good each feasible node is for a pod, each plugin normalised to
//! 0..=100 over the feasible nodes and weighted as in kube-scheduler's default profile.

use super::pod_info::PodInfo;
use super::view::NodeInfo;

pub(crate) const MAX_NODE_SCORE: i64 = 100;

/// Weights of kube-scheduler's default profile. SelectorSpread takes the weight the
/// default profile gives PodTopologySpread, whose system-default constraints it stands
/// in for (spreading a controller's pods over nodes and zones).
pub(crate) const TAINT_TOLERATION_WEIGHT: i64 = 3;
pub(crate) const NODE_AFFINITY_WEIGHT: i64 = 2;
pub(crate) const INTER_POD_AFFINITY_WEIGHT: i64 = 2;
pub(crate) const SELECTOR_SPREAD_WEIGHT: i64 = 2;
pub(crate) const LEAST_ALLOCATED_WEIGHT: i64 = 1;
pub(crate) const BALANCED_ALLOCATION_WEIGHT: i64 = 1;

/// How much of zone spreading weighs against node spreading (kube-scheduler's 2/3).
const ZONE_WEIGHTING: f64 = 2.0 / 3.0;

/// NodeResourcesFit with the LeastAllocated strategy: the free share of CPU and memory
/// after placing the pod, averaged (weights 1 and 1), counting request-less containers
/// at the scoring defaults.
pub(crate) fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = &node.spec.allocatable;
    let used = node.non_zero_requested;
    let pairs = [
        (used.milli_cpu + pod.non_zero.milli_cpu, alloc.milli_cpu),
        (used.memory + pod.non_zero.memory, alloc.memory),
    ];
    let (mut sum, mut weights) = (0, 0);
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        sum += if requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        };
        weights += 1;
    }
    if weights == 0 { 0 } else { sum / weights }
}

/// NodeResourcesBalancedAllocation: nodes whose CPU and memory would be used in equal
/// shares score higher (100 × (1 − standard deviation of the shares)), counting
/// requests as they are.
pub(crate) fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = &node.spec.allocatable;
    let used = &node.requested;
    let pairs = [
        (used.milli_cpu + pod.requests.milli_cpu, alloc.milli_cpu),
        (used.memory + pod.requests.memory, alloc.memory),
    ];
    let mut fractions = [0.0f64; 2];
    let mut n = 0;
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        fractions[n] = (requested as f64 / capacity as f64).min(1.0);
        n += 1;
    }
    let std = if n == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// kube-scheduler's default normalisation: scale to the highest raw score (reversed:
/// fewer is better); all-zero raw scores give 0 (or 100 reversed).
pub(crate) fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        let v = if reverse { MAX_NODE_SCORE } else { 0 };
        scores.iter_mut().for_each(|s| *s = v);
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

/// InterPodAffinity's normalisation: raw scores may be negative, so scale from the
/// lowest to the highest.
pub(crate) fn normalize_min_max(scores: &mut [i64]) {
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

/// SelectorSpread's normalisation. `counts[i]` holds the pod's sibling count on node
/// `i`, `zones[i]` its zone; the result favours nodes, and more strongly zones, with
/// fewer siblings.
pub(crate) fn spread(counts: &mut [i64], zones: &[Option<u32>], zone_totals: &mut Vec<i64>) {
    zone_totals.clear();
    let max_node = counts.iter().copied().max().unwrap_or(0);
    let mut have_zones = false;
    for (count, zone) in counts.iter().zip(zones) {
        if let Some(z) = zone {
            let z = *z as usize;
            if zone_totals.len() <= z {
                zone_totals.resize(z + 1, 0);
            }
            zone_totals[z] += count;
            have_zones = true;
        }
    }
    let max_zone = zone_totals.iter().copied().max().unwrap_or(0);
    let max = MAX_NODE_SCORE as f64;
    for (count, zone) in counts.iter_mut().zip(zones) {
        let mut score = if max_node > 0 {
            max * ((max_node - *count) as f64 / max_node as f64)
        } else {
            max
        };
        if have_zones && let Some(z) = zone {
            let zone_score = if max_zone > 0 {
                max * ((max_zone - zone_totals[*z as usize]) as f64 / max_zone as f64)
            } else {
                max
            };
            score = score * (1.0 - ZONE_WEIGHTING) + ZONE_WEIGHTING * zone_score;
        }
        *count = score as i64;
    }
}
