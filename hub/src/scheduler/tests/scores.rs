//! The scores and their normalisation, and how they steer placements: least
//! allocated, balanced allocation, spreading a controller's pods over nodes and zones,
//! and tie-breaking between equal nodes.

use super::super::pod_info::PodInfo;
use super::super::scores::{
    balanced_allocation, least_allocated, normalize, normalize_min_max, spread,
};
use super::*;

fn requesting(name: &str, requests: &str) -> Pod {
    pod(&format!(
        "metadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {requests}}}}}]}}"
    ))
}

#[test]
fn least_allocated_and_balanced_allocation_values() {
    // (existing requests on the 4-CPU/8-GiB node, incoming requests, least, balanced)
    let cases = [
        ("{cpu: 0, memory: 0}", "{cpu: 0, memory: 0}", 100, 100),
        ("{cpu: 1, memory: 2Gi}", "{cpu: 1, memory: 2Gi}", 50, 100),
        ("{cpu: 2, memory: 0}", "{cpu: 1, memory: 0}", 62, 62),
        ("{cpu: 4, memory: 8Gi}", "{cpu: 1, memory: 1Gi}", 0, 100),
        (
            "{cpu: 500m, memory: 1Gi}",
            "{cpu: 500m, memory: 1Gi}",
            75,
            100,
        ),
    ];
    for (existing, incoming, least, balanced) in cases {
        let mut e = requesting("e", existing);
        e.spec.node_name = Some("n".into());
        let mut c = Cluster::new(vec![node("n")], vec![e]);
        let info = PodInfo::new(&requesting("p", incoming)).unwrap();
        let view = c.cache.view();
        let n = view.node(0);
        assert_eq!(
            least_allocated(&info, n),
            least,
            "least: {existing} + {incoming}"
        );
        assert_eq!(
            balanced_allocation(&info, n),
            balanced,
            "balanced: {existing} + {incoming}"
        );
    }
}

#[test]
fn request_less_containers_count_at_the_defaults_when_scoring() {
    // 100m CPU and 200 MiB per container: two such pods on a 1-CPU, 1-GiB node.
    let mut e = pod("metadata: {name: e}");
    e.spec.node_name = Some("n".into());
    let small = node("n")
        .allocatable("cpu", "1")
        .allocatable("memory", "1000Mi");
    let mut c = Cluster::new(vec![small], vec![e]);
    let info = PodInfo::new(&pod("metadata: {name: p}")).unwrap();
    // cpu (1000-200)/1000 = 80, memory (1000-400)/1000 = 60: mean 70.
    assert_eq!(least_allocated(&info, c.cache.view().node(0)), 70);
    // Balanced allocation counts requests as they are (none): perfectly balanced.
    assert_eq!(balanced_allocation(&info, c.cache.view().node(0)), 100);
}

#[test]
fn normalisations() {
    let cases: [(&[i64], bool, &[i64]); 5] = [
        (&[0, 0, 0], false, &[0, 0, 0]),
        (&[0, 0, 0], true, &[100, 100, 100]),
        (&[10, 5, 0], false, &[100, 50, 0]),
        (&[2, 1, 0], true, &[0, 50, 100]),
        (&[3, 3], false, &[100, 100]),
    ];
    for (raw, reverse, want) in cases {
        let mut v = raw.to_vec();
        normalize(&mut v, reverse);
        assert_eq!(v, want, "{raw:?} reverse={reverse}");
    }
    let min_max: [(&[i64], &[i64]); 3] = [
        (&[-50, 0, 50], &[0, 50, 100]),
        (&[7, 7], &[0, 0]),
        (&[-100, -100, 0], &[0, 0, 100]),
    ];
    for (raw, want) in min_max {
        let mut v = raw.to_vec();
        normalize_min_max(&mut v);
        assert_eq!(v, want, "{raw:?}");
    }
}

#[test]
fn spread_values() {
    let mut totals = Vec::new();
    let mut no_zones = vec![0, 1, 2];
    spread(&mut no_zones, &[None, None, None], &mut totals);
    assert_eq!(no_zones, [100, 50, 0]);
    let mut none_yet = vec![0, 0];
    spread(&mut none_yet, &[Some(0), Some(1)], &mut totals);
    assert_eq!(none_yet, [100, 100]);
    // Zone a (nodes 0, 1) holds the one sibling, on node 0. Node 1 is empty but in
    // the same zone: node scores 0/100/100, zone scores 0/0/100, zones weigh 2/3.
    let mut zoned = vec![1, 0, 0];
    spread(&mut zoned, &[Some(0), Some(0), Some(1)], &mut totals);
    assert_eq!(zoned, [0, 33, 100]);
}

#[test]
fn emptier_and_better_balanced_nodes_win() {
    let mut busy = requesting("busy", "{cpu: 2, memory: 2Gi}");
    busy.spec.node_name = Some("a".into());
    let mut c = Cluster::new(vec![node("a"), node("b")], vec![busy]);
    assert_prefers(
        &mut c,
        &requesting("p", "{cpu: 500m, memory: 512Mi}"),
        &["b"],
        "least allocated",
    );

    // Equal free share on both, but on `mem` the pod's CPU request balances the
    // node's memory use.
    let mut cpu_heavy = requesting("cpu-heavy", "{cpu: 1}");
    cpu_heavy.spec.node_name = Some("cpu".into());
    let mut mem_heavy = requesting("mem-heavy", "{memory: 2Gi}");
    mem_heavy.spec.node_name = Some("mem".into());
    let mut c = Cluster::new(vec![node("cpu"), node("mem")], vec![cpu_heavy, mem_heavy]);
    assert_prefers(
        &mut c,
        &requesting("p", "{cpu: 1}"),
        &["mem"],
        "balanced allocation",
    );
}

fn replica(i: usize, owner: &str) -> Pod {
    pod(&format!(
        "metadata:
  name: web-{i}
  labels: {{app: web}}
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: {owner}, controller: true}}]"
    ))
}

#[test]
fn replicas_of_one_owner_spread_over_nodes_and_zones() {
    // Another owner's pods load n1 a little; spreading is per owner.
    let mut other = replica(99, "other");
    other.spec.node_name = Some("n1".into());
    let mut c = Cluster::new(vec![node("n1"), node("n2"), node("n3")], vec![other]);
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..9 {
        *counts.entry(c.place(&replica(i, "rs-1"))).or_insert(0) += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [3, 3, 3],
        "{counts:?}"
    );

    // Two zones: a (n1, n2) and b (n3). The second replica goes to zone b, whatever
    // node in zone a took the first.
    let zones = vec![
        node("n1").label("topology.kubernetes.io/zone", "a"),
        node("n2").label("topology.kubernetes.io/zone", "a"),
        node("n3").label("topology.kubernetes.io/zone", "b"),
    ];
    for seed in 0..10 {
        let mut c = Cluster::new(zones.clone(), vec![]);
        c.cursor = Cursor::new(seed);
        let first = c.place(&replica(0, "rs-2"));
        let second = c.place(&replica(1, "rs-2"));
        let zone = |n: &str| if n == "n3" { "b" } else { "a" };
        assert_ne!(
            zone(&first),
            zone(&second),
            "seed {seed}: {first} then {second}"
        );
    }
}

#[test]
fn equal_nodes_share_the_load_and_ties_are_reproducible() {
    let nodes = || (0..3).map(|i| node(&format!("n{i}"))).collect::<Vec<_>>();
    // Identical pods on identical nodes: an even spread.
    let mut c = Cluster::new(nodes(), vec![]);
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..30 {
        *counts
            .entry(c.place(&requesting(&format!("p{i}"), "{cpu: 100m}")))
            .or_insert(0) += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
    // Among exactly equal nodes the choice is random, but fixed by the seed.
    let picks = |seed| {
        let mut c = Cluster::new(nodes(), vec![]);
        c.cursor = Cursor::new(seed);
        (0..20)
            .map(|_| c.schedule(&pod("metadata: {name: p}")).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(1), picks(1));
    let distinct: std::collections::BTreeSet<_> = picks(1).into_iter().collect();
    assert_eq!(distinct.len(), 3, "every equal node gets picked");
}
