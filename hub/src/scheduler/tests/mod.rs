//! Table-driven tests of the decision: every filter and score, and the rules of the
//! Kubernetes scheduling documentation, over clusters built from manifests.

mod affinity;
mod cache;
mod explain;
mod node_rules;
mod queue;
mod resources;
mod scores;
mod writes;

use skiff_api::resources::{
    ConditionStatus, Node, NodeCondition, NodeStatus, Pod, Taint, TaintEffect,
};
use skiff_api::{Object, Quantity, Uid, parse_manifests};

use super::cache::Cache;
use super::decide::{
    Cursor, Placement, Scratch, Settings, Unschedulable, feasible, schedule, schedule_with,
};
use super::filters::NodeVerdicts;
use super::pod_info::PodInfo;

/// Removes the indentation common to every non-blank line, so manifests can be
/// written indented in the test source.
pub(super) fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod from a manifest without `apiVersion`/`kind`. The namespace defaults to
/// `default` and the UID to `uid-<name>`, and a pod without containers gets one.
pub(super) fn pod(yaml: &str) -> Pod {
    let text = format!("apiVersion: v1\nkind: Pod\n{}", dedent(yaml));
    let mut objects =
        parse_manifests(&text).unwrap_or_else(|e| panic!("bad manifest: {e}\n{text}"));
    let Some(Object::Pod(mut pod)) = objects.pop() else {
        panic!("not a pod: {text}");
    };
    let meta = &mut pod.metadata;
    meta.namespace.get_or_insert_with(|| "default".to_string());
    if meta.uid.is_none() {
        meta.uid = Some(Uid(format!("uid-{}", meta.name)));
    }
    if pod.spec.containers.is_empty() {
        pod.spec.containers.push(skiff_api::resources::Container {
            name: "c".into(),
            image: "busybox".into(),
            ..Default::default()
        });
    }
    pod
}

/// A pod named `name` with labels and, optionally, bound to a node.
pub(super) fn labelled(name: &str, labels: &[(&str, &str)], node: Option<&str>) -> Pod {
    let mut p = pod(&format!("metadata: {{name: {name}}}"));
    for (k, v) in labels {
        p.metadata.labels.insert(k.to_string(), v.to_string());
    }
    p.spec.node_name = node.map(str::to_string);
    p
}

/// A Ready node with 4 CPUs, 8 GiB of memory, room for 110 pods and the
/// `kubernetes.io/hostname` label.
pub(super) fn node(name: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = name.to_string();
    n.metadata
        .labels
        .insert("kubernetes.io/hostname".into(), name.into());
    n.status = Some(NodeStatus {
        allocatable: [
            ("cpu".to_string(), q("4")),
            ("memory".to_string(), q("8Gi")),
            ("pods".to_string(), q("110")),
        ]
        .into(),
        conditions: vec![NodeCondition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            ..NodeCondition::default()
        }],
        ..NodeStatus::default()
    });
    n
}

pub(super) fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

/// Builder methods for test nodes.
pub(super) trait NodeExt {
    fn label(self, key: &str, value: &str) -> Self;
    fn taint(self, key: &str, value: &str, effect: TaintEffect) -> Self;
    fn allocatable(self, resource: &str, amount: &str) -> Self;
    fn ready(self, status: Option<ConditionStatus>) -> Self;
    fn cordoned(self) -> Self;
}

impl NodeExt for Node {
    fn label(mut self, key: &str, value: &str) -> Node {
        self.metadata.labels.insert(key.into(), value.into());
        self
    }

    fn taint(mut self, key: &str, value: &str, effect: TaintEffect) -> Node {
        self.spec.taints.push(Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        });
        self
    }

    fn allocatable(mut self, resource: &str, amount: &str) -> Node {
        if let Some(s) = self.status.as_mut() {
            s.allocatable.insert(resource.into(), q(amount));
        }
        self
    }

    fn ready(mut self, status: Option<ConditionStatus>) -> Node {
        if let Some(s) = self.status.as_mut() {
            s.conditions.clear();
            if let Some(status) = status {
                s.conditions.push(NodeCondition {
                    type_: "Ready".into(),
                    status,
                    ..NodeCondition::default()
                });
            }
        }
        self
    }

    fn cordoned(mut self) -> Node {
        self.spec.unschedulable = true;
        self
    }
}

/// A cluster to decide against: the cache plus the cursor the loop would carry.
pub(super) struct Cluster {
    pub(super) cache: Cache,
    pub(super) cursor: Cursor,
}

impl Cluster {
    /// Nodes, and pods bound to them (each must have `spec.nodeName`).
    pub(super) fn new(nodes: Vec<Node>, pods: Vec<Pod>) -> Cluster {
        let mut cache = Cache::default();
        for n in &nodes {
            cache.upsert_node(n);
        }
        for p in &pods {
            let node = p.spec.node_name.clone().expect("existing pods are bound");
            cache.observe_bound(p, &node);
        }
        Cluster {
            cache,
            cursor: Cursor::new(7),
        }
    }

    pub(super) fn namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.cache.upsert_namespace(name, &labels);
    }

    pub(super) fn decide(&mut self, pod: &Pod) -> Result<Placement, Unschedulable> {
        let info = PodInfo::new(pod).expect("valid pod rules");
        self.cache.prepare(&info);
        schedule(&info, self.cache.view(), &mut self.cursor)
    }

    /// The node chosen, or the explanation.
    pub(super) fn schedule(&mut self, pod: &Pod) -> Result<String, String> {
        match self.decide(pod) {
            Ok(p) => Ok(self.cache.view().node(p.slot).name.clone()),
            Err(u) => Err(u.message),
        }
    }

    /// Decides and counts the pod on its node, as the loop does; panics if it fits
    /// nowhere.
    pub(super) fn place(&mut self, pod: &Pod) -> String {
        let info = PodInfo::new(pod).expect("valid pod rules");
        self.cache.prepare(&info);
        let view = self.cache.view();
        let verdicts = NodeVerdicts::new(&info.node_rules, view);
        let placement = schedule_with(
            &info,
            view,
            &verdicts,
            Settings::default(),
            &mut self.cursor,
            &mut Scratch::default(),
        )
        .unwrap_or_else(|u| panic!("{} does not fit: {}", pod.metadata.name, u.message));
        let name = view.node(placement.slot).name.clone();
        self.cache.assume(&info, placement.slot);
        name
    }
}

/// Asserts exactly which nodes pass every filter for the pod, and that a decision
/// picks one of them.
pub(super) fn assert_feasible(cluster: &mut Cluster, pod: &Pod, allowed: &[&str], case: &str) {
    let info = PodInfo::new(pod).expect("valid pod rules");
    cluster.cache.prepare(&info);
    let view = cluster.cache.view();
    let mut names: Vec<String> = feasible(&info, view)
        .into_iter()
        .map(|s| view.node(s).name.clone())
        .collect();
    names.sort();
    assert_eq!(names, allowed, "{case}: feasible nodes");
    match cluster.schedule(pod) {
        Ok(n) => assert!(allowed.contains(&n.as_str()), "{case}: chose {n}"),
        Err(m) => panic!("{case}: unschedulable: {m}"),
    }
}

/// Asserts which nodes score best for the pod: over many decisions (the rotating
/// start and the tie-break vary) each of `best` is chosen and nothing else.
pub(super) fn assert_prefers(cluster: &mut Cluster, pod: &Pod, best: &[&str], case: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        match cluster.schedule(pod) {
            Ok(n) => {
                assert!(
                    best.contains(&n.as_str()),
                    "{case}: chose {n}, expected one of {best:?}"
                );
                seen.insert(n);
            }
            Err(m) => panic!("{case}: unschedulable: {m}"),
        }
    }
    let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(seen, best, "{case}: equally good nodes share the load");
}
