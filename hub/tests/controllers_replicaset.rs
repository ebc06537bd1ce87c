//! The ReplicaSet controller and the garbage collector against a real SQLite store.

mod controllers_support;

use controllers_support::*;
use skiff_api::resources::{PodPhase, ReplicaSet, ReplicaSetSpec};
use skiff_api::{Kind, Object};
use skiff_hub::store::Store;

fn replicaset(name: &str, replicas: i32) -> Object {
    Object::ReplicaSet(ReplicaSet {
        metadata: meta(name),
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: Some(selector(name)),
            template: template(name, "nginx:1"),
            ..ReplicaSetSpec::default()
        },
        status: None,
    })
}

async fn set_replicas(h: &Harness, name: &str, n: i32) {
    let mut obj = (*h.get(Kind::ReplicaSet, name).unwrap()).clone();
    if let Object::ReplicaSet(rs) = &mut obj {
        rs.spec.replicas = Some(n);
    }
    obj.meta_mut().resource_version = None;
    h.store.update(obj).await.unwrap();
}

#[test]
fn replicaset_scales_reports_status_and_pods_are_collected() {
    run(|| async {
        let h = Harness::start();
        h.store.create(replicaset("web", 3)).await.unwrap();
        let pods = h
            .eventually("3 pods", |h| {
                let p = h.pods_of(Kind::ReplicaSet, "web");
                (p.len() == 3).then_some(p)
            })
            .await;
        let rs_uid = h
            .get(Kind::ReplicaSet, "web")
            .unwrap()
            .meta()
            .uid
            .clone()
            .unwrap();
        for p in &pods {
            assert!(p.metadata.name.starts_with("web-"));
            assert_eq!(p.metadata.name.len(), "web-".len() + 5);
            assert_eq!(p.metadata.labels, labels("web"));
            let r = &p.metadata.owner_references[0];
            assert_eq!(
                (r.kind.as_str(), &r.uid, r.controller),
                ("ReplicaSet", &rs_uid, Some(true))
            );
        }
        // Stays at 3: no duplicate creates once the watch shows the pods.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(h.list(Kind::Pod).len(), 3);

        for p in &pods[..2] {
            h.set_pod_status(&p.metadata.name, PodPhase::Running, true)
                .await;
        }
        h.eventually("status 3 replicas, 2 ready", |h| {
            let Object::ReplicaSet(rs) = h.get(Kind::ReplicaSet, "web")?.as_ref().clone() else {
                return None;
            };
            let s = rs.status?;
            (s.replicas == 3
                && s.ready_replicas == 2
                && s.available_replicas == 2
                && s.fully_labeled_replicas == 3
                && s.observed_generation == 1)
                .then_some(())
        })
        .await;

        set_replicas(&h, "web", 5).await;
        h.eventually("5 pods", |h| {
            (h.pods_of(Kind::ReplicaSet, "web").len() == 5).then_some(())
        })
        .await;
        set_replicas(&h, "web", 1).await;
        let left = h
            .eventually("1 pod", |h| {
                let p = h.pods_of(Kind::ReplicaSet, "web");
                (p.len() == 1 && h.list(Kind::Pod).len() == 1).then_some(p)
            })
            .await;
        // Ready pods are the last to go.
        assert!(left[0].is_ready(), "the survivor is one of the ready pods");

        // A pod that fails is replaced.
        h.set_pod_status(&left[0].metadata.name, PodPhase::Failed, false)
            .await;
        h.eventually("replacement", |h| {
            (h.pods_of(Kind::ReplicaSet, "web").len() == 1).then_some(())
        })
        .await;

        let key = h.get(Kind::ReplicaSet, "web").unwrap().key();
        h.store.delete(&key, None).await.unwrap();
        h.eventually("pods collected", |h| {
            h.list(Kind::Pod).is_empty().then_some(())
        })
        .await;
        h.stop().await;
    });
}
