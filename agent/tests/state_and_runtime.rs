//! The state database and the simulated runtime against real files: what is written
//! survives closing and reopening (as after a crash or reboot).

use skiff_agent::reconcile::spec_hash;
use skiff_agent::runtime::{
    ContainerRuntime, PodToStart, RunState, SIMULATE_EXIT_CODE, SimulatedRuntime,
};
use skiff_agent::state::{Applied, StateDb};
use skiff_api::Uid;
use skiff_api::protocol::{Down, SCHEMA_VERSION};
use skiff_api::resources::{Container, Pod, PodPhase, PodStatus};

fn pod(uid: &str, image: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = format!("web-{uid}");
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(Uid(uid.into()));
    p.spec.containers = vec![Container {
        name: "main".into(),
        image: image.into(),
        ..Container::default()
    }];
    p
}

fn upsert(p: &Pod, revision: u64) -> Down {
    Down::PodUpsert {
        v: SCHEMA_VERSION,
        revision,
        pod: Box::new(p.clone()),
    }
}

fn delete(uid: &str, revision: u64) -> Down {
    Down::PodDelete {
        v: SCHEMA_VERSION,
        revision,
        namespace: "default".into(),
        name: format!("web-{uid}"),
        uid: uid.into(),
    }
}

#[test]
fn desired_state_survives_reopen_and_replays_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = StateDb::open(dir.path()).unwrap();
        assert_eq!(
            db.apply(&upsert(&pod("a", "nginx:1"), 10)).unwrap(),
            Applied::Changed
        );
        assert_eq!(
            db.apply(&upsert(&pod("b", "nginx:1"), 11)).unwrap(),
            Applied::Changed
        );
        // Redelivery and an older revision change nothing.
        assert_eq!(
            db.apply(&upsert(&pod("a", "nginx:1"), 10)).unwrap(),
            Applied::Ignored
        );
        assert_eq!(
            db.apply(&upsert(&pod("a", "nginx:0"), 9)).unwrap(),
            Applied::Ignored
        );
        assert_eq!(
            db.apply(&upsert(&pod("a", "nginx:2"), 12)).unwrap(),
            Applied::Changed
        );
        assert_eq!(
            db.apply(&Down::SyncDone {
                v: SCHEMA_VERSION,
                revision: 12,
                pods: 2
            })
            .unwrap(),
            Applied::Synced
        );
        let status = PodStatus {
            phase: Some(PodPhase::Running),
            ..PodStatus::default()
        };
        db.set_reported("a", &status).unwrap();
    }
    let mut db = StateDb::open(dir.path()).unwrap();
    assert_eq!(db.sync_revision().unwrap(), 12);
    let refs = db.pod_refs().unwrap();
    assert_eq!(
        refs.iter()
            .map(|r| (r.uid.as_str(), r.revision))
            .collect::<Vec<_>>(),
        vec![("a", 12), ("b", 11)]
    );
    let desired = db.desired().unwrap();
    assert_eq!(desired["a"].pod.spec.containers[0].image, "nginx:2");
    assert_eq!(db.reported().unwrap()["a"].phase, Some(PodPhase::Running));

    // Delete, then a late redelivery of an older upsert must not bring it back.
    assert_eq!(db.apply(&delete("b", 13)).unwrap(), Applied::Changed);
    assert_eq!(db.apply(&delete("b", 13)).unwrap(), Applied::Ignored);
    assert_eq!(
        db.apply(&upsert(&pod("b", "nginx:1"), 11)).unwrap(),
        Applied::Ignored
    );
    // An unknown pod at or below the synced revision is stale too.
    assert_eq!(
        db.apply(&upsert(&pod("c", "nginx:1"), 12)).unwrap(),
        Applied::Ignored
    );
    assert_eq!(
        db.apply(&upsert(&pod("c", "nginx:1"), 14)).unwrap(),
        Applied::Changed
    );
    db.forget_reported("a").unwrap();
    drop(db);
    let db = StateDb::open(dir.path()).unwrap();
    assert_eq!(
        db.pod_refs()
            .unwrap()
            .iter()
            .map(|r| r.uid.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "c"]
    );
    assert!(db.reported().unwrap().is_empty());
}

#[test]
fn simulated_pods_are_adopted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = pod("a", "nginx:1");
    let mut crashing = pod("c", "bad:1");
    crashing
        .metadata
        .annotations
        .insert(SIMULATE_EXIT_CODE.into(), "3".into());
    {
        let rt = SimulatedRuntime::open(dir.path()).unwrap();
        for (uid, p) in [("a", &p), ("c", &crashing)] {
            rt.start_pod(PodToStart {
                uid,
                revision: 7,
                spec_hash: spec_hash(p),
                pod: p,
                images: &Default::default(),
            })
            .unwrap();
        }
        rt.restart_container("c", "main").unwrap();
    }
    // As after SIGKILL: nothing but the files remains.
    let rt = SimulatedRuntime::open(dir.path()).unwrap();
    let pods = rt.list().unwrap();
    assert_eq!(pods.len(), 2);
    let a = pods.iter().find(|p| p.uid == "a").unwrap();
    assert_eq!(a.revision, 7);
    assert_eq!(a.spec_hash, spec_hash(&p));
    assert_eq!(a.containers[0].restart_count, 0);
    assert!(matches!(a.containers[0].state, RunState::Running { .. }));
    let c = pods.iter().find(|p| p.uid == "c").unwrap();
    assert_eq!(c.containers[0].restart_count, 1);
    assert!(matches!(
        c.containers[0].state,
        RunState::Exited(e) if e.exit_code == 3
    ));
    assert_eq!(c.containers[0].last_exit.unwrap().exit_code, 3);

    rt.stop_pod("a").unwrap();
    assert!(
        !rt.list()
            .unwrap()
            .iter()
            .find(|p| p.uid == "a")
            .unwrap()
            .any_running()
    );
    rt.remove_pod("a").unwrap();
    drop(rt);
    let rt = SimulatedRuntime::open(dir.path()).unwrap();
    assert_eq!(
        rt.list()
            .unwrap()
            .iter()
            .map(|p| p.uid.as_str())
            .collect::<Vec<_>>(),
        vec!["c"]
    );
}
