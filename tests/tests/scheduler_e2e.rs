//! End to end: the scheduler inside a real `skiff-hub serve`, driven and observed only
//! through the `skiff` CLI. Needs `cargo build --workspace --bins` first (see
//! `skiff_tests::binary`).

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::Hub;

const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: edge-1
  labels: {disk: ssd, topology.kubernetes.io/zone: a}
status:
  capacity: {cpu: "2", memory: 4Gi, pods: "20"}
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Node
metadata:
  name: gpu-1
  labels: {accel: gpu, topology.kubernetes.io/zone: b}
spec:
  taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
status:
  capacity: {cpu: "2", memory: 4Gi, pods: "20"}
  conditions: [{type: Ready, status: "True"}]
"#;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: fits}
spec:
  nodeSelector: {disk: ssd}
  containers: [{name: main, image: registry.example/app:1, resources: {requests: {cpu: 500m}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers: [{name: main, image: registry.example/app:1, resources: {requests: {memory: 16Gi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: needs-gpu-node}
spec:
  nodeSelector: {accel: gpu}
  containers: [{name: main, image: registry.example/app:1}]
"#;

const BIG_NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: big-1
status:
  capacity: {cpu: "8", memory: 64Gi, pods: "20"}
  conditions: [{type: Ready, status: "True"}]
"#;

fn write(hub: &Hub, name: &str, text: &str) -> String {
    let p = hub.scratch().join(name);
    std::fs::write(&p, text).expect("writing a manifest");
    p.to_str().expect("temp paths are UTF-8").to_string()
}

/// The pod's `spec.nodeName`, read through `skiff get -o json`.
fn node_of(hub: &Hub, pod: &str) -> Option<String> {
    let text = hub.skiff_ok(&["get", "pod", pod, "-o", "json"]);
    let v: Value = serde_json::from_str(&text).expect("skiff -o json prints JSON");
    v["spec"]["nodeName"].as_str().map(String::from)
}

/// Waits until the pod is bound; fails with the hub's log after 20 s.
fn wait_bound(hub: &Hub, pod: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(n) = node_of(hub, pod) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{pod} was not scheduled; hub log:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `skiff describe pod` shows `want`, and returns the description.
fn wait_describe(hub: &Hub, pod: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = hub.skiff_ok(&["describe", "pod", pod]);
        if text.contains(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "describe pod {pod} never showed {want:?}; last:\n{text}\nhub log:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The line of a table whose first column is `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn pods_are_scheduled_explained_and_placed_once_something_helps() {
    let hub = Hub::start();
    hub.skiff_ok(&["apply", "-f", &write(&hub, "nodes.yaml", NODES)]);
    hub.skiff_ok(&["apply", "-f", &write(&hub, "pods.yaml", PODS)]);

    assert_eq!(wait_bound(&hub, "fits"), "edge-1");
    let wide = hub.skiff_ok(&["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let node_col = header
        .iter()
        .position(|c| *c == "NODE")
        .expect("a NODE column");
    assert_eq!(row(&wide, "fits")[node_col], "edge-1", "{wide}");
    assert_eq!(row(&wide, "huge")[node_col], "<none>", "{wide}");
    let fits = wait_describe(&hub, "fits", "Successfully assigned default/fits to edge-1");
    assert!(fits.contains("Node:") && fits.contains("edge-1"), "{fits}");
    assert!(
        fits.lines()
            .any(|l| l.contains("PodScheduled") && l.contains("True")),
        "{fits}"
    );
    assert!(
        fits.lines().any(|l| l.contains("Normal")
            && l.contains("Scheduled")
            && l.contains("default-scheduler")),
        "{fits}"
    );

    let explanation = "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: gpu}.";
    let huge = wait_describe(&hub, "huge", explanation);
    assert!(
        huge.lines()
            .any(|l| l.contains("PodScheduled") && l.contains("False")),
        "{huge}"
    );
    assert!(
        huge.lines().any(|l| l.contains("Warning")
            && l.contains("FailedScheduling")
            && l.contains("default-scheduler")
            && l.contains(explanation)),
        "{huge}"
    );
    let pending = hub.skiff_ok(&["get", "pod", "huge", "-o", "json"]);
    let pending: Value = serde_json::from_str(&pending).expect("JSON");
    let condition = pending["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(condition["message"], explanation);
    wait_describe(
        &hub,
        "needs-gpu-node",
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}.",
    );

    // A node with room appears: the big pod lands on it, well before any periodic retry.
    let started = Instant::now();
    hub.skiff_ok(&["apply", "-f", &write(&hub, "big.yaml", BIG_NODE)]);
    assert_eq!(wait_bound(&hub, "huge"), "big-1");
    // The taint goes: the pod that needs that node lands on it.
    assert_eq!(
        hub.skiff_ok(&["taint", "node", "gpu-1", "dedicated:NoSchedule-"]),
        "node/gpu-1 untainted\n"
    );
    assert_eq!(wait_bound(&hub, "needs-gpu-node"), "gpu-1");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "placed by the changes"
    );

    // A cordoned node takes no new pods.
    hub.skiff_ok(&["cordon", "edge-1"]);
    let late = "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: main, image: registry.example/app:1}]\n";
    hub.skiff_ok(&["apply", "-f", &write(&hub, "late.yaml", late)]);
    wait_describe(&hub, "late", "1 node(s) were unschedulable");
    hub.skiff_ok(&["uncordon", "edge-1"]);
    assert_eq!(wait_bound(&hub, "late"), "edge-1");
}
