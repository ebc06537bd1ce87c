//! The explanation of an unschedulable pod, in kube-scheduler's format, and how many
//! nodes a decision looks at.

use skiff_api::resources::TaintEffect::NoSchedule;

use super::super::decide::feasible_nodes_to_find;
use super::*;

#[test]
fn message_counts_nodes_per_first_failed_filter_sorted() {
    let gpu = |n: &str| node(n).taint("dedicated", "gpu", NoSchedule);
    let small = |n: &str| node(n).allocatable("memory", "1Gi");
    let p = pod("
        metadata: {name: p}
        spec: {containers: [{name: c, image: busybox, resources: {requests: {memory: 2Gi, cpu: 100m}}}]}
    ");
    struct Case {
        name: &'static str,
        nodes: Vec<Node>,
        message: &'static str,
    }
    let cases = [
        Case {
            name: "the example of the Kubernetes documentation",
            nodes: vec![gpu("g1"), gpu("g2"), small("s1"), small("s2"), small("s3")],
            message: "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient memory.",
        },
        Case {
            name: "sorted as whole strings: the count comes first",
            nodes: vec![gpu("g1"), small("s1"), small("s2")],
            message: "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient memory.",
        },
        Case {
            name: "equal counts sort by reason",
            nodes: vec![
                node("c").cordoned(),
                small("s1"),
                node("x").taint("a", "b", NoSchedule),
            ],
            message: "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {a: b}, 1 node(s) were unschedulable.",
        },
        Case {
            name: "a node is counted under its first failing filter only",
            nodes: vec![small("s1").taint("dedicated", "gpu", NoSchedule).cordoned()],
            message: "0/1 nodes are available: 1 node(s) were unschedulable.",
        },
        Case {
            name: "different taint values are different reasons",
            nodes: vec![
                node("a").taint("k", "1", NoSchedule),
                node("b").taint("k", "2", NoSchedule),
            ],
            message: "0/2 nodes are available: 1 node(s) had untolerated taint {k: 1}, 1 node(s) had untolerated taint {k: 2}.",
        },
        Case {
            name: "no nodes at all",
            nodes: vec![],
            message: "no nodes available to schedule pods",
        },
    ];
    for case in cases {
        let mut c = Cluster::new(case.nodes, vec![]);
        assert_eq!(
            c.schedule(&p),
            Err(case.message.to_string()),
            "{}",
            case.name
        );
    }
}

#[test]
fn affinity_failures_mark_the_pod_as_waiting_for_pods() {
    let mut c = Cluster::new(vec![node("n1")], vec![]);
    let p = pod("
        metadata: {name: p, labels: {app: api}}
        spec:
          affinity:
            podAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
              - {labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}
    ");
    let u = c.decide(&p).unwrap_err();
    assert!(u.waits_for_pods);
    let u = c
        .decide(&pod("metadata: {name: q}\nspec: {nodeSelector: {x: y}}"))
        .unwrap_err();
    assert!(!u.waits_for_pods);
}

#[test]
fn how_many_nodes_are_searched() {
    // kube-scheduler's numFeasibleNodesToFind with the adaptive percentage.
    let cases = [
        (0, 50, 50),
        (0, 100, 100),
        (0, 200, 100),
        (0, 1000, 420),
        (0, 5000, 500),
        (0, 6000, 300),
        (0, 50_000, 2500),
        (30, 1000, 300),
        (100, 1000, 1000),
        (10, 500, 100),
    ];
    for (percentage, nodes, want) in cases {
        assert_eq!(
            feasible_nodes_to_find(percentage, nodes),
            want,
            "{percentage}% of {nodes}"
        );
    }
    // With 200 equal nodes a decision scores 100 and moves its start past them.
    let nodes = (0..200).map(|i| node(&format!("n{i:03}"))).collect();
    let mut c = Cluster::new(nodes, vec![]);
    let p = pod("metadata: {name: p}");
    let first = c.decide(&p).unwrap();
    assert_eq!((first.feasible, first.visited), (100, 100));
    // An infeasible run of nodes is skipped over, not counted as feasible.
    let mut nodes: Vec<Node> = (0..150)
        .map(|i| node(&format!("t{i:03}")).taint("x", "y", NoSchedule))
        .collect();
    nodes.extend((0..150).map(|i| node(&format!("n{i:03}"))));
    let mut c = Cluster::new(nodes, vec![]);
    let d = c.decide(&p).unwrap();
    // 300 nodes: 48% of them.
    assert_eq!(d.feasible, 144);
    assert!(d.visited > 144, "visited {}", d.visited);
    assert!(c.schedule(&p).unwrap().starts_with('n'));
}
