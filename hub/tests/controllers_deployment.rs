//! The Deployment and ReplicaSet controllers together against a real SQLite store:
//! create, scale, roll out a new image as pods become ready, and cascade a delete.

mod controllers_support;

use controllers_support::*;
use skiff_api::resources::{Deployment, DeploymentSpec, PodPhase, ReplicaSet};
use skiff_api::{Kind, Object};
use skiff_hub::store::Store;

fn deployment(replicas: i32, image: &str) -> Object {
    Object::Deployment(Deployment {
        metadata: meta("web"),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: Some(selector("web")),
            template: template("web", image),
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

async fn change(h: &Harness, f: impl FnOnce(&mut Deployment)) {
    let mut obj = (*h.get(Kind::Deployment, "web").unwrap()).clone();
    if let Object::Deployment(d) = &mut obj {
        f(d);
    }
    obj.meta_mut().resource_version = None;
    h.store.update(obj).await.unwrap();
}

fn replicasets(h: &Harness) -> Vec<ReplicaSet> {
    h.list(Kind::ReplicaSet)
        .iter()
        .filter_map(|o| match o.as_ref() {
            Object::ReplicaSet(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Marks every not-yet-ready pod Running and Ready, as agents would report.
async fn make_ready(h: &Harness) {
    for o in h.list(Kind::Pod) {
        if let Object::Pod(p) = o.as_ref()
            && !p.is_ready()
        {
            h.set_pod_status(&p.metadata.name, PodPhase::Running, true)
                .await;
        }
    }
}

#[test]
fn deployment_creates_scales_rolls_out_and_is_collected() {
    run(|| async {
        let h = Harness::start();
        h.store.create(deployment(3, "nginx:1")).await.unwrap();
        let d_uid = h
            .get(Kind::Deployment, "web")
            .unwrap()
            .meta()
            .uid
            .clone()
            .unwrap();
        let first = h
            .eventually("one ReplicaSet with 3 pods", |h| {
                let rss = replicasets(h);
                (rss.len() == 1 && h.pods_of(Kind::ReplicaSet, &rss[0].metadata.name).len() == 3)
                    .then(|| rss[0].clone())
            })
            .await;
        let hash = first.metadata.labels["pod-template-hash"].clone();
        assert_eq!(first.metadata.name, format!("web-{hash}"));
        assert_eq!(first.metadata.owner_references[0].uid, d_uid);
        assert_eq!(
            first.metadata.annotations["deployment.kubernetes.io/revision"],
            "1"
        );
        for p in h.pods_of(Kind::ReplicaSet, &first.metadata.name) {
            assert_eq!(p.metadata.labels["pod-template-hash"], hash);
            assert!(p.metadata.name.starts_with(&format!("web-{hash}-")));
        }

        make_ready(&h).await;
        h.eventually("deployment status available", |h| {
            let Object::Deployment(d) = h.get(Kind::Deployment, "web")?.as_ref().clone() else {
                return None;
            };
            let s = d.status?;
            (s.replicas == 3
                && s.updated_replicas == 3
                && s.available_replicas == 3
                && s.ready_replicas == 3
                && s.unavailable_replicas == 0
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status.is_true())
                && s.conditions
                    .iter()
                    .any(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable")))
            .then_some(())
        })
        .await;

        change(&h, |d| d.spec.replicas = Some(5)).await;
        h.eventually("5 pods", |h| (h.list(Kind::Pod).len() == 5).then_some(()))
            .await;
        change(&h, |d| d.spec.replicas = Some(1)).await;
        h.eventually("1 pod", |h| (h.list(Kind::Pod).len() == 1).then_some(()))
            .await;
        change(&h, |d| d.spec.replicas = Some(3)).await;
        h.eventually("3 pods", |h| (h.list(Kind::Pod).len() == 3).then_some(()))
            .await;

        // New image: a second ReplicaSet; the old one shrinks only as new pods are ready.
        change(&h, |d| {
            d.spec.template.spec.containers[0].image = "nginx:2".into()
        })
        .await;
        let new_name = h
            .eventually("a second ReplicaSet", |h| {
                replicasets(h)
                    .into_iter()
                    .find(|r| r.metadata.name != first.metadata.name)
                    .map(|r| r.metadata.name)
            })
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            make_ready(&h).await;
            let rss = replicasets(&h);
            let old = rss
                .iter()
                .find(|r| r.metadata.name == first.metadata.name)
                .unwrap();
            let new = rss.iter().find(|r| r.metadata.name == new_name).unwrap();
            let new_pods = h.pods_of(Kind::ReplicaSet, &new_name);
            if old.replicas() == 0
                && new_pods.len() == 3
                && h.pods_of(Kind::ReplicaSet, &first.metadata.name).is_empty()
            {
                assert_eq!(
                    new.metadata.annotations["deployment.kubernetes.io/revision"],
                    "2"
                );
                assert!(
                    new_pods
                        .iter()
                        .all(|p| p.spec.containers[0].image == "nginx:2")
                );
                break;
            }
            // Default 25% bounds on 3: never more than 4 pods, never fewer than 3 ready.
            assert!(h.list(Kind::Pod).len() <= 4, "surge bound exceeded");
            assert!(
                std::time::Instant::now() < deadline,
                "rollout did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let key = h.get(Kind::Deployment, "web").unwrap().key();
        h.store.delete(&key, None).await.unwrap();
        h.eventually("ReplicaSets and pods collected", |h| {
            (h.list(Kind::ReplicaSet).is_empty() && h.list(Kind::Pod).is_empty()).then_some(())
        })
        .await;
        h.stop().await;
    });
}
