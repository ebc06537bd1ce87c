//! Node-only rules: taints and tolerations (all three effects), nodeSelector, required
//! and preferred node affinity (every operator, matchFields), cordoned and not-Ready
//! nodes.

use skiff_api::resources::ConditionStatus;
use skiff_api::resources::TaintEffect::{NoExecute, NoSchedule, PreferNoSchedule};

use super::*;

#[test]
fn taint_effects_and_tolerations() {
    struct Case {
        name: &'static str,
        effect: TaintEffect,
        tolerations: &'static str,
        /// Whether the tainted node `t` may be chosen (the clean node `c` always may).
        tainted_allowed: bool,
    }
    let cases = [
        Case {
            name: "NoSchedule repels a pod without tolerations",
            effect: NoSchedule,
            tolerations: "[]",
            tainted_allowed: false,
        },
        Case {
            name: "NoExecute repels a pod without tolerations",
            effect: NoExecute,
            tolerations: "[]",
            tainted_allowed: false,
        },
        Case {
            name: "Equal with the same key, value and effect tolerates",
            effect: NoSchedule,
            tolerations: "[{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
            tainted_allowed: true,
        },
        Case {
            name: "an unset operator means Equal",
            effect: NoExecute,
            tolerations: "[{key: dedicated, value: gpu, effect: NoExecute}]",
            tainted_allowed: true,
        },
        Case {
            name: "Equal with another value does not tolerate",
            effect: NoSchedule,
            tolerations: "[{key: dedicated, operator: Equal, value: cpu, effect: NoSchedule}]",
            tainted_allowed: false,
        },
        Case {
            name: "Exists on the key tolerates any value",
            effect: NoSchedule,
            tolerations: "[{key: dedicated, operator: Exists, effect: NoSchedule}]",
            tainted_allowed: true,
        },
        Case {
            name: "Exists on another key does not tolerate",
            effect: NoSchedule,
            tolerations: "[{key: other, operator: Exists}]",
            tainted_allowed: false,
        },
        Case {
            name: "an empty key with Exists tolerates every taint",
            effect: NoExecute,
            tolerations: "[{operator: Exists}]",
            tainted_allowed: true,
        },
        Case {
            name: "an empty effect matches every effect",
            effect: NoExecute,
            tolerations: "[{key: dedicated, operator: Equal, value: gpu}]",
            tainted_allowed: true,
        },
        Case {
            name: "a toleration for another effect does not tolerate",
            effect: NoExecute,
            tolerations: "[{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
            tainted_allowed: false,
        },
        Case {
            name: "PreferNoSchedule never filters",
            effect: PreferNoSchedule,
            tolerations: "[]",
            tainted_allowed: true,
        },
    ];
    for case in cases {
        // Only the tainted node exists: the pod lands there or nowhere.
        let mut c = Cluster::new(
            vec![node("t").taint("dedicated", "gpu", case.effect)],
            vec![],
        );
        let p = pod(&format!(
            "metadata: {{name: p}}\nspec: {{tolerations: {}}}",
            case.tolerations
        ));
        let got = c.schedule(&p);
        if case.tainted_allowed {
            assert_eq!(got, Ok("t".to_string()), "{}", case.name);
        } else {
            assert_eq!(
                got,
                Err(
                    "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."
                        .to_string()
                ),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn prefer_no_schedule_steers_away_when_possible() {
    let mut c = Cluster::new(
        vec![
            node("soft").taint("maintenance", "soon", PreferNoSchedule),
            node("clean-1"),
            node("clean-2"),
        ],
        vec![],
    );
    let plain = pod("metadata: {name: p}");
    assert_prefers(
        &mut c,
        &plain,
        &["clean-1", "clean-2"],
        "untolerated PreferNoSchedule",
    );
    // Tolerating it (effect PreferNoSchedule or empty) makes all nodes equal again.
    for tolerations in [
        "[{key: maintenance, operator: Exists, effect: PreferNoSchedule}]",
        "[{key: maintenance, operator: Exists}]",
    ] {
        let p = pod(&format!(
            "metadata: {{name: p}}\nspec: {{tolerations: {tolerations}}}"
        ));
        assert_prefers(&mut c, &p, &["clean-1", "clean-2", "soft"], tolerations);
    }
    // A NoSchedule toleration does not count for PreferNoSchedule taints.
    let p = pod(
        "metadata: {name: p}\nspec: {tolerations: [{key: maintenance, operator: Exists, effect: NoSchedule}]}",
    );
    assert_prefers(&mut c, &p, &["clean-1", "clean-2"], "NoSchedule toleration");
    // When only the tainted node is left, it is used.
    let mut only = Cluster::new(
        vec![node("soft").taint("maintenance", "soon", PreferNoSchedule)],
        vec![],
    );
    assert_eq!(only.schedule(&plain), Ok("soft".into()));
}

#[test]
fn first_untolerated_taint_is_reported() {
    let mut c = Cluster::new(
        vec![
            node("a")
                .taint("soft", "x", PreferNoSchedule)
                .taint("one", "1", NoSchedule)
                .taint("two", "", NoExecute),
            node("b").taint("two", "", NoExecute),
        ],
        vec![],
    );
    let p = pod("metadata: {name: p}\nspec: {tolerations: [{key: one, operator: Exists}]}");
    assert_eq!(
        c.schedule(&p),
        Err("0/2 nodes are available: 2 node(s) had untolerated taint {two: }.".into())
    );
}

#[test]
fn node_selector() {
    let nodes = || {
        vec![
            node("ssd-arm").label("disk", "ssd").label("arch", "arm64"),
            node("ssd-x86").label("disk", "ssd").label("arch", "amd64"),
            node("hdd").label("disk", "hdd"),
        ]
    };
    let cases: [(&str, &[&str]); 4] = [
        ("{disk: ssd}", &["ssd-arm", "ssd-x86"]),
        ("{disk: ssd, arch: arm64}", &["ssd-arm"]),
        ("{}", &["hdd", "ssd-arm", "ssd-x86"]),
        ("{gpu: 'true'}", &[]),
    ];
    for (selector, allowed) in cases {
        let mut c = Cluster::new(nodes(), vec![]);
        let p = pod(&format!(
            "metadata: {{name: p}}\nspec: {{nodeSelector: {selector}}}"
        ));
        if allowed.is_empty() {
            assert_eq!(
                c.schedule(&p),
                Err(
                    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
                        .into()
                ),
                "{selector}"
            );
        } else {
            assert_feasible(&mut c, &p, allowed, selector);
        }
    }
}

fn required_affinity(terms: &str) -> Pod {
    pod(&format!(
        "metadata: {{name: p}}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: {terms}"
    ))
}

#[test]
fn required_node_affinity_operators_terms_and_fields() {
    let nodes = || {
        vec![
            node("n1").label("zone", "a").label("cores", "2"),
            node("n2").label("zone", "b").label("cores", "8"),
            node("n3").label("cores", "many"),
        ]
    };
    let cases: [(&str, &str, &[&str]); 14] = [
        (
            "In",
            "[{matchExpressions: [{key: zone, operator: In, values: [a, c]}]}]",
            &["n1"],
        ),
        (
            "NotIn holds where the label is absent",
            "[{matchExpressions: [{key: zone, operator: NotIn, values: [a]}]}]",
            &["n2", "n3"],
        ),
        (
            "Exists",
            "[{matchExpressions: [{key: zone, operator: Exists}]}]",
            &["n1", "n2"],
        ),
        (
            "DoesNotExist",
            "[{matchExpressions: [{key: zone, operator: DoesNotExist}]}]",
            &["n3"],
        ),
        (
            "Gt compares integers; a non-integer label fails",
            "[{matchExpressions: [{key: cores, operator: Gt, values: ['4']}]}]",
            &["n2"],
        ),
        (
            "Lt",
            "[{matchExpressions: [{key: cores, operator: Lt, values: ['4']}]}]",
            &["n1"],
        ),
        (
            "expressions in a term are ANDed",
            "[{matchExpressions: [{key: zone, operator: Exists}, {key: cores, operator: Lt, values: ['4']}]}]",
            &["n1"],
        ),
        (
            "terms are ORed",
            "[{matchExpressions: [{key: zone, operator: In, values: [a]}]}, {matchExpressions: [{key: cores, operator: In, values: [many]}]}]",
            &["n1", "n3"],
        ),
        (
            "matchFields metadata.name In",
            "[{matchFields: [{key: metadata.name, operator: In, values: [n2]}]}]",
            &["n2"],
        ),
        (
            "matchFields metadata.name NotIn",
            "[{matchFields: [{key: metadata.name, operator: NotIn, values: [n2]}]}]",
            &["n1", "n3"],
        ),
        (
            "fields and expressions in one term are ANDed",
            "[{matchExpressions: [{key: cores, operator: Exists}], matchFields: [{key: metadata.name, operator: In, values: [n3]}]}]",
            &["n3"],
        ),
        ("an empty term matches no node", "[{}]", &[]),
        (
            "an empty term does not block other terms",
            "[{}, {matchExpressions: [{key: zone, operator: In, values: [b]}]}]",
            &["n2"],
        ),
        (
            "no node matches",
            "[{matchExpressions: [{key: zone, operator: In, values: [z]}]}]",
            &[],
        ),
    ];
    for (name, terms, allowed) in cases {
        let mut c = Cluster::new(nodes(), vec![]);
        let p = required_affinity(terms);
        if allowed.is_empty() {
            assert_eq!(
                c.schedule(&p),
                Err(
                    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
                        .into()
                ),
                "{name}"
            );
        } else {
            assert_feasible(&mut c, &p, allowed, name);
        }
    }
}

#[test]
fn node_selector_and_node_affinity_must_both_hold() {
    let mut c = Cluster::new(
        vec![
            node("a").label("disk", "ssd").label("zone", "z1"),
            node("b").label("disk", "ssd").label("zone", "z2"),
            node("c").label("disk", "hdd").label("zone", "z1"),
        ],
        vec![],
    );
    let p = pod("
        metadata: {name: p}
        spec:
          nodeSelector: {disk: ssd}
          affinity:
            nodeAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
                nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [z1]}]}]
    ");
    assert_feasible(&mut c, &p, &["a"], "selector and affinity");
}

#[test]
fn preferred_node_affinity_weights() {
    let nodes = || {
        vec![
            node("ssd").label("disk", "ssd"),
            node("ssd-fast").label("disk", "ssd").label("net", "fast"),
            node("fast").label("net", "fast"),
            node("plain"),
        ]
    };
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "one term: matching nodes win",
            "[{weight: 10, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}]",
            &["ssd", "ssd-fast"],
        ),
        (
            "weights add up",
            "[{weight: 10, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}, {weight: 5, preference: {matchExpressions: [{key: net, operator: Exists}]}}]",
            &["ssd-fast"],
        ),
        (
            "the heavier term wins",
            "[{weight: 1, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}, {weight: 100, preference: {matchFields: [{key: metadata.name, operator: In, values: [fast]}]}}]",
            &["fast"],
        ),
    ];
    for (name, terms, allowed) in cases {
        let mut c = Cluster::new(nodes(), vec![]);
        let p = pod(&format!(
            "metadata: {{name: p}}
spec:
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution: {terms}"
        ));
        assert_prefers(&mut c, &p, allowed, name);
    }
    // Preferences never make a pod unschedulable.
    let mut c = Cluster::new(vec![node("plain")], vec![]);
    let p = pod("
        metadata: {name: p}
        spec:
          affinity:
            nodeAffinity:
              preferredDuringSchedulingIgnoredDuringExecution:
              - {weight: 50, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}
    ");
    assert_eq!(c.schedule(&p), Ok("plain".into()));
}

#[test]
fn cordoned_nodes() {
    let mut c = Cluster::new(vec![node("cordoned").cordoned(), node("open")], vec![]);
    let p = pod("metadata: {name: p}");
    assert_feasible(&mut c, &p, &["open"], "cordoned node is skipped");
    let mut only = Cluster::new(vec![node("cordoned").cordoned()], vec![]);
    assert_eq!(
        only.schedule(&p),
        Err("0/1 nodes are available: 1 node(s) were unschedulable.".into())
    );
    let tolerant = pod("
        metadata: {name: p}
        spec:
          tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]
    ");
    assert_eq!(only.schedule(&tolerant), Ok("cordoned".into()));
}

#[test]
fn not_ready_nodes() {
    let cases = [
        (Some(ConditionStatus::False), "node.kubernetes.io/not-ready"),
        (
            Some(ConditionStatus::Unknown),
            "node.kubernetes.io/unreachable",
        ),
        (None, "node.kubernetes.io/not-ready"),
    ];
    for (status, taint) in cases {
        let mut c = Cluster::new(vec![node("n").ready(status)], vec![]);
        assert_eq!(
            c.schedule(&pod("metadata: {name: p}")),
            Err(format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {{{taint}: }}."
            )),
            "{status:?}"
        );
        // Pods that tolerate the condition's taint (as DaemonSet pods do) still land.
        let tolerant = pod(&format!(
            "metadata: {{name: p}}\nspec: {{tolerations: [{{key: {taint}, operator: Exists, effect: NoSchedule}}]}}"
        ));
        assert_eq!(c.schedule(&tolerant), Ok("n".into()), "{status:?}");
    }
    // A node that already carries the taint itself does not get it twice.
    let mut c = Cluster::new(
        vec![node("n").ready(Some(ConditionStatus::False)).taint(
            "node.kubernetes.io/not-ready",
            "",
            NoSchedule,
        )],
        vec![],
    );
    assert_eq!(c.cache.view().node(0).spec.taints.len(), 1);
    // Ready again: schedulable.
    let mut c = Cluster::new(vec![node("n").ready(Some(ConditionStatus::False))], vec![]);
    c.cache.upsert_node(&node("n"));
    assert_eq!(c.schedule(&pod("metadata: {name: p}")), Ok("n".into()));
}
