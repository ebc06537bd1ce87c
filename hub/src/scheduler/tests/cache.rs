//! The cache: counting pods once, assumptions and their confirmation or undoing,
//! nodes coming and going.

use super::super::cache::Wake;
use super::*;

fn requesting(name: &str, cpu: &str, node: Option<&str>) -> Pod {
    let mut p = pod(&format!(
        "metadata: {{name: {name}, labels: {{app: x}}}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: {cpu}}}}}}}]}}"
    ));
    p.spec.node_name = node.map(str::to_string);
    p
}

fn used(c: &mut Cluster, node: &str) -> (i64, i64) {
    let view = c.cache.view();
    let n = view.node(view.slot_of(node).unwrap());
    (n.requested.milli_cpu, n.pod_count)
}

#[test]
fn a_pod_seen_again_is_counted_once() {
    let p = requesting("p", "1", Some("n"));
    let mut c = Cluster::new(vec![node("n")], vec![p.clone()]);
    assert_eq!(c.cache.observe_bound(&p, "n"), Wake::default());
    assert_eq!(used(&mut c, "n"), (1000, 1));
    // Moved (bound elsewhere by someone else): counted there, freed here.
    let w = c.cache.observe_bound(&p, "m");
    assert!(w.any && w.pod_added);
    assert_eq!(used(&mut c, "n"), (0, 0));
    // Finished or deleted: freed.
    assert!(c.cache.remove_pod(&Uid("uid-p".into())).any);
    assert!(!c.cache.is_placed(&Uid("uid-p".into())));
}

#[test]
fn assumed_pods_are_confirmed_by_the_binding_or_forgotten() {
    let mut c = Cluster::new(vec![node("n")], vec![]);
    let p = requesting("p", "500m", None);
    let info = PodInfo::new(&p).unwrap();
    let slot = c.cache.view().slot_of("n").unwrap();
    c.cache.assume(&info, slot);
    assert!(c.cache.is_assumed(&info.uid));
    assert_eq!(used(&mut c, "n"), (500, 1));
    // The binding shows up in the watch with the generation it bumped: same pod,
    // nothing freed, now confirmed.
    let mut bound = p.clone();
    bound.spec.node_name = Some("n".into());
    bound.metadata.generation = Some(2);
    assert_eq!(c.cache.observe_bound(&bound, "n"), Wake::default());
    assert!(!c.cache.is_assumed(&info.uid));
    // A confirmed pod is not undone by a late failure report.
    assert_eq!(c.cache.forget(&info.uid), Wake::default());
    assert_eq!(used(&mut c, "n"), (500, 1));

    let q = requesting("q", "250m", None);
    let info = PodInfo::new(&q).unwrap();
    c.cache.assume(&info, slot);
    assert!(c.cache.forget(&info.uid).any);
    assert_eq!(used(&mut c, "n"), (500, 1));
}

#[test]
fn nodes_come_and_go_pods_stay_counted() {
    let mut c = Cluster::new(vec![node("n")], vec![requesting("p", "1", Some("n"))]);
    let generation = c.cache.view().generation();
    assert!(!c.cache.upsert_node(&node("n")), "no change");
    assert_eq!(c.cache.view().generation(), generation);
    assert!(c.cache.upsert_node(&node("n").label("disk", "ssd")));
    assert!(c.cache.view().generation() > generation);
    assert!(c.cache.remove_node("n"));
    assert!(c.cache.view().order().is_empty());
    c.cache.upsert_node(&node("n"));
    assert_eq!(
        used(&mut c, "n"),
        (1000, 1),
        "usage survives the node's absence"
    );
    // A pod bound to a node that does not exist yet is counted when it appears.
    let mut c = Cluster::new(vec![], vec![requesting("p", "2", Some("later"))]);
    c.cache.upsert_node(&node("later"));
    assert_eq!(used(&mut c, "later"), (2000, 1));
}

#[test]
fn groups_follow_labels_and_terminating_pods_stop_counting_as_replicas() {
    let mut p = requesting("p", "1", Some("n"));
    p.metadata.owner_references.push(skiff_api::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "rs".into(),
        uid: Uid("rs-uid".into()),
        controller: Some(true),
        block_owner_deletion: None,
    });
    let mut c = Cluster::new(vec![node("n")], vec![p.clone()]);
    let owner = Uid("rs-uid".into());
    assert!(c.cache.view().owner_pods(&owner).is_some());
    assert_eq!(c.cache.view().groups().count(), 1);
    // Relabelled: regrouped (and that may help waiting pods).
    let mut relabelled = p.clone();
    relabelled
        .metadata
        .labels
        .insert("tier".into(), "front".into());
    assert!(c.cache.observe_bound(&relabelled, "n").any);
    let groups: Vec<_> = c.cache.view().groups().map(|g| g.labels.len()).collect();
    assert_eq!(groups, [2]);
    // Terminating: still uses the node, no longer a replica to spread.
    let mut terminating = relabelled.clone();
    terminating.metadata.deletion_timestamp =
        Some(skiff_api::Time::from_datetime(chrono::Utc::now()));
    c.cache.observe_bound(&terminating, "n");
    assert!(c.cache.view().owner_pods(&owner).is_none());
    assert_eq!(used(&mut c, "n"), (1000, 1));
    c.cache.remove_pod(&Uid("uid-p".into()));
    assert_eq!(c.cache.view().groups().count(), 0);
}
