//! The DaemonSet controller against a real SQLite store: one pod per matching node,
//! following nodes as they come and go.

mod controllers_support;

use controllers_support::*;
use skiff_api::resources::{DaemonSet, DaemonSetSpec, Node};
use skiff_api::{Kind, Object, ObjectKey, ObjectMeta};
use skiff_hub::store::Store;

fn node(name: &str, arch: &str) -> Object {
    Object::Node(Node {
        metadata: ObjectMeta {
            name: name.into(),
            labels: [("arch".to_string(), arch.to_string())].into(),
            ..ObjectMeta::default()
        },
        ..Node::default()
    })
}

fn nodes_with_pods(h: &Harness) -> Vec<String> {
    let mut v: Vec<String> = h
        .pods_of(Kind::DaemonSet, "agent")
        .iter()
        .filter_map(|p| p.spec.node_name.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn daemonset_follows_matching_nodes() {
    run(|| async {
        let h = Harness::start();
        for (n, arch) in [
            ("edge-1", "arm64"),
            ("edge-2", "arm64"),
            ("core-1", "amd64"),
        ] {
            h.store.create(node(n, arch)).await.unwrap();
        }
        let mut tpl = template("agent", "agent:1");
        tpl.spec.node_selector = [("arch".to_string(), "arm64".to_string())].into();
        h.store
            .create(Object::DaemonSet(DaemonSet {
                metadata: meta("agent"),
                spec: DaemonSetSpec {
                    selector: Some(selector("agent")),
                    template: tpl,
                    ..DaemonSetSpec::default()
                },
                status: None,
            }))
            .await
            .unwrap();
        let want = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        h.eventually("pods on both arm64 nodes", |h| {
            (nodes_with_pods(h) == want(&["edge-1", "edge-2"]) && h.list(Kind::Pod).len() == 2)
                .then_some(())
        })
        .await;
        h.eventually("status", |h| {
            let Object::DaemonSet(d) = h.get(Kind::DaemonSet, "agent")?.as_ref().clone() else {
                return None;
            };
            let s = d.status?;
            (s.desired_number_scheduled == 2
                && s.current_number_scheduled == 2
                && s.updated_number_scheduled == 2)
                .then_some(())
        })
        .await;

        h.store.create(node("edge-3", "arm64")).await.unwrap();
        h.eventually("pod on the new node", |h| {
            (nodes_with_pods(h) == want(&["edge-1", "edge-2", "edge-3"])).then_some(())
        })
        .await;

        h.store
            .delete(&ObjectKey::new(Kind::Node, "", "edge-1"), None)
            .await
            .unwrap();
        h.eventually("pod of the removed node gone", |h| {
            (nodes_with_pods(h) == want(&["edge-2", "edge-3"]) && h.list(Kind::Pod).len() == 2)
                .then_some(())
        })
        .await;
        h.stop().await;
    });
}
