//! SqliteStore semantics against real database files: create/update/mutate/delete,
//! conflicts, unchanged updates, generations, finalizers, scope checks, revisions across
//! reopen, and schema version checks.

mod store_support;

use std::sync::Arc;

use skiff_api::{Kind, Object, ObjectKey, Revision};
use skiff_hub::store::{
    Deleted, Scope, SqliteStore, Store, StoreError, StoreOptions, Write, Written,
};
use store_support::*;

#[tokio::test]
async fn create_assigns_identity_and_revision_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let clock = ManualClock::at(1_700_000_000);
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            clock: clock.clone(),
            ..options()
        },
    )
    .unwrap();
    assert_eq!(store.revision(), Revision(0));

    let a = store.create(pod("default", "a")).await.unwrap();
    let m = a.meta();
    assert_eq!(m.resource_version.as_deref(), Some("1"));
    assert_eq!(m.generation, Some(1));
    assert_eq!(m.creation_timestamp, Some(time(1_700_000_000)));
    let uid = m.uid.clone().expect("uid assigned");
    assert_eq!(store.revision(), Revision(1));
    let got = store.get(&a.key()).expect("readable after create");
    assert!(Arc::ptr_eq(&got, &a), "get serves the stored Arc");

    clock.set(1_700_000_100);
    let b = store.create(node("n1")).await.unwrap();
    assert_eq!(rev(&b), 2);
    assert_eq!(b.meta().creation_timestamp, Some(time(1_700_000_100)));
    store.close().unwrap();

    let store = open(&path);
    assert_eq!(store.revision(), Revision(2));
    let a2 = store.get(&a.key()).expect("persisted");
    assert_eq!(*a2, *a);
    assert_eq!(a2.meta().uid, Some(uid));
    assert_eq!(*store.get(&b.key()).unwrap(), *b);
}

#[tokio::test]
async fn create_refuses_existing_keys_revisions_and_wrong_scope() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    store.create(pod("default", "a")).await.unwrap();

    let e = store.create(pod("default", "a")).await.unwrap_err();
    assert!(
        matches!(e, StoreError::AlreadyExists(ref k) if *k == ObjectKey::new(Kind::Pod, "default", "a"))
    );
    // Same name in another namespace is another object.
    store.create(pod("other", "a")).await.unwrap();

    let mut with_rv = pod("default", "b");
    with_rv.meta_mut().resource_version = Some("1".into());
    assert!(matches!(
        store.create(with_rv).await,
        Err(StoreError::Invalid { .. })
    ));

    let mut no_ns = pod("default", "c");
    no_ns.meta_mut().namespace = None;
    let e = store.create(no_ns).await.unwrap_err();
    assert!(
        e.to_string().contains("namespace is required"),
        "error says why: {e}"
    );

    let mut node_in_ns = node("n1");
    node_in_ns.meta_mut().namespace = Some("default".into());
    assert!(matches!(
        store.create(node_in_ns).await,
        Err(StoreError::Invalid { .. })
    ));

    // Failed writes used no revision.
    assert_eq!(store.revision(), Revision(2));
}

#[tokio::test]
async fn generate_name_picks_a_free_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut p = pod("default", "");
        p.meta_mut().generate_name = Some("web-".into());
        let created = store.create(p).await.unwrap();
        let name = created.meta().name.clone();
        assert!(name.starts_with("web-") && name.len() == "web-".len() + 5);
        assert!(store.get(&created.key()).is_some());
        names.insert(name);
    }
    assert_eq!(names.len(), 20);
}

#[tokio::test]
async fn update_checks_resource_version_and_keeps_server_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let a = store.create(pod("default", "a")).await.unwrap();

    // Stale resourceVersion: conflict, nothing written.
    let mut stale = pod_on("default", "a", "n1");
    stale.meta_mut().resource_version = Some("0".into());
    let e = store.update(stale).await.unwrap_err();
    assert!(matches!(
        e,
        StoreError::Conflict { actual: Revision(1), ref expected, .. } if expected == "0"
    ));
    assert_eq!(store.revision(), Revision(1));

    // Current resourceVersion, spec change: new revision, generation bumped, uid kept.
    let mut bind = pod_on("default", "a", "n1");
    bind.meta_mut().resource_version = Some("1".into());
    bind.meta_mut().uid = Some(skiff_api::Uid("forged".into()));
    let b = store.update(bind).await.unwrap();
    assert_eq!(rev(&b), 2);
    assert_eq!(b.meta().generation, Some(2));
    assert_eq!(b.meta().uid, a.meta().uid);
    assert_eq!(b.meta().creation_timestamp, a.meta().creation_timestamp);
    assert_eq!(node_name(&b).as_deref(), Some("n1"));

    // Metadata-only change: new revision, same generation.
    let mut labelled = Object::clone(&b);
    labelled
        .meta_mut()
        .labels
        .insert("app".into(), "web".into());
    let c = store.update(labelled).await.unwrap();
    assert_eq!(rev(&c), 3);
    assert_eq!(c.meta().generation, Some(2));

    // No resourceVersion: unconditional.
    let mut blind = Object::clone(&c);
    blind.meta_mut().resource_version = None;
    blind
        .meta_mut()
        .labels
        .insert("tier".into(), "front".into());
    assert_eq!(rev(&store.update(blind).await.unwrap()), 4);

    // Missing object.
    assert!(matches!(
        store.update(pod("default", "zz")).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn update_that_changes_nothing_uses_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let a = store.create(pod_on("default", "a", "n1")).await.unwrap();
    let commits = store.stats().commits;

    let same = store.update(Object::clone(&a)).await.unwrap();
    assert!(Arc::ptr_eq(&same, &a), "answers with the stored object");
    let mut without_rv = Object::clone(&a);
    without_rv.meta_mut().resource_version = None;
    assert!(Arc::ptr_eq(&store.update(without_rv).await.unwrap(), &a));

    let results = store
        .write_batch(vec![
            Write::Update(Object::clone(&a)),
            Write::Mutate(a.key(), Box::new(|_| Ok(false))),
            // Claims a change but makes none: still unchanged.
            Write::Mutate(a.key(), Box::new(|_| Ok(true))),
        ])
        .await;
    for r in results {
        assert!(
            matches!(r, Ok(Written::Unchanged(ref o)) if Arc::ptr_eq(o, &a)),
            "{r:?}"
        );
    }
    assert_eq!(store.revision(), Revision(1));
    assert_eq!(
        store.stats().commits,
        commits,
        "no transaction for no change"
    );
}

#[tokio::test]
async fn mutate_runs_against_the_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let a = store.create(pod("default", "a")).await.unwrap();
    let w = store
        .mutate(
            a.key(),
            Box::new(|o| {
                if let Object::Pod(p) = o {
                    p.spec.node_name = Some("n7".into());
                }
                Ok(true)
            }),
        )
        .await
        .unwrap();
    let Written::Stored(b) = w else {
        panic!("expected stored, got {w:?}")
    };
    assert_eq!(rev(&b), 2);
    assert_eq!(b.meta().generation, Some(2));
    assert_eq!(
        node_name(&store.get(&a.key()).unwrap()).as_deref(),
        Some("n7")
    );

    // The mutation's own error is the write's error.
    let e = store
        .mutate(
            a.key(),
            Box::new(|o| {
                Err(StoreError::Invalid {
                    key: o.key(),
                    message: "already bound".into(),
                })
            }),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already bound"));
    assert!(matches!(
        store
            .mutate(
                ObjectKey::new(Kind::Pod, "default", "nope"),
                Box::new(|_| Ok(true))
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A panicking mutation fails alone; the store keeps working.
    assert!(matches!(
        store.mutate(a.key(), Box::new(|_| panic!("boom"))).await,
        Err(StoreError::Invalid { .. })
    ));
    store.create(pod("default", "after")).await.unwrap();
    assert_eq!(store.revision(), Revision(3));
}

#[tokio::test]
async fn delete_without_finalizers_removes_and_records_the_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = open(&path);
    let a = store.create(pod("default", "a")).await.unwrap();

    assert!(matches!(
        store.delete(&a.key(), Some(Revision(9))).await,
        Err(StoreError::Conflict {
            actual: Revision(1),
            ..
        })
    ));
    let watch_from = store.revision();
    let mut w = store.watch(Scope::kind(Kind::Pod), watch_from).unwrap();
    let Deleted::Removed(last) = store.delete(&a.key(), Some(Revision(1))).await.unwrap() else {
        panic!("no finalizers: removed");
    };
    assert_eq!(
        rev(&last),
        2,
        "the last state carries the deletion revision"
    );
    assert!(store.get(&a.key()).is_none());
    let ev = next_event(&mut w).await;
    assert_eq!(ev.event_type.as_str(), "DELETED");
    assert_eq!(ev.revision, Revision(2));
    assert_eq!(*ev.object, *last);
    assert!(matches!(
        store.delete(&a.key(), None).await,
        Err(StoreError::NotFound(_))
    ));
    store.shutdown().await.unwrap();

    let store = open(&path);
    assert!(store.get(&a.key()).is_none(), "removal is durable");
    assert_eq!(store.revision(), Revision(2));
}

#[tokio::test]
async fn finalizers_turn_delete_into_a_mark_then_removal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(1000);
    let store = SqliteStore::open(
        dir.path().join("hub.db"),
        StoreOptions {
            clock: clock.clone(),
            ..options()
        },
    )
    .unwrap();
    let mut p = pod("default", "a");
    p.meta_mut().finalizers = vec!["skiff.io/volumes".into(), "skiff.io/net".into()];
    let a = store.create(p).await.unwrap();

    clock.set(2000);
    let Deleted::Marked(marked) = store.delete(&a.key(), None).await.unwrap() else {
        panic!("finalizers keep the object");
    };
    assert_eq!(marked.meta().deletion_timestamp, Some(time(2000)));
    assert_eq!(rev(&marked), 2);
    assert_eq!(marked.meta().generation, Some(2));

    // A second delete changes nothing, the first timestamp stays.
    clock.set(3000);
    let Deleted::Marked(again) = store.delete(&a.key(), None).await.unwrap() else {
        panic!("still marked");
    };
    assert!(Arc::ptr_eq(&again, &marked));
    assert_eq!(store.revision(), Revision(2));

    // An update cannot clear the mark; dropping one finalizer keeps the object.
    let mut one_left = Object::clone(&marked);
    one_left.meta_mut().deletion_timestamp = None;
    one_left.meta_mut().finalizers = vec!["skiff.io/net".into()];
    let kept = store.update(one_left).await.unwrap();
    assert_eq!(kept.meta().deletion_timestamp, Some(time(2000)));
    assert_eq!(rev(&kept), 3);

    // Dropping the last one (through a mutation) removes it.
    let w = store
        .mutate(
            a.key(),
            Box::new(|o| {
                o.meta_mut().finalizers.clear();
                Ok(true)
            }),
        )
        .await
        .unwrap();
    let Written::Deleted(Deleted::Removed(gone)) = w else {
        panic!("expected removal, got {w:?}");
    };
    assert_eq!(rev(&gone), 4);
    assert!(gone.meta().finalizers.is_empty());
    assert!(store.get(&a.key()).is_none());
}

#[tokio::test]
async fn write_batch_reports_each_write_and_later_writes_see_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    store.create(pod("default", "existing")).await.unwrap();
    let commits = store.stats().commits;

    let mut update_new = pod_on("default", "fresh", "n1");
    update_new.meta_mut().resource_version = Some("2".into());
    let results = store
        .write_batch(vec![
            Write::Create(pod("default", "fresh")),
            Write::Create(pod("default", "existing")),
            // Sees the create just before it in the same batch, at revision 2.
            Write::Update(update_new),
            Write::Delete {
                key: ObjectKey::new(Kind::Pod, "default", "missing"),
                precondition: None,
            },
            Write::Delete {
                key: ObjectKey::new(Kind::Pod, "default", "existing"),
                precondition: None,
            },
        ])
        .await;
    assert_eq!(results.len(), 5);
    assert!(matches!(&results[0], Ok(Written::Stored(o)) if rev(o) == 2));
    assert!(matches!(&results[1], Err(StoreError::AlreadyExists(_))));
    assert!(
        matches!(&results[2], Ok(Written::Stored(o)) if rev(o) == 3 && node_name(o).as_deref() == Some("n1"))
    );
    assert!(matches!(&results[3], Err(StoreError::NotFound(_))));
    assert!(matches!(&results[4], Ok(Written::Deleted(Deleted::Removed(o))) if rev(o) == 4));
    assert_eq!(store.stats().commits, commits + 1, "one transaction");
    assert_eq!(store.revision(), Revision(4));
    let (pods, at) = store.list(&Scope::kind(Kind::Pod));
    assert_eq!(at, Revision(4));
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].meta().name, "fresh");
}

#[tokio::test]
async fn list_is_sorted_and_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    for (ns, name) in [("b", "2"), ("a", "9"), ("b", "1"), ("a", "0")] {
        store.create(pod(ns, name)).await.unwrap();
    }
    store.create(node("n1")).await.unwrap();
    let names = |objs: Vec<Arc<Object>>| -> Vec<String> {
        objs.iter()
            .map(|o| format!("{}/{}", o.meta().namespace_or_empty(), o.meta().name))
            .collect()
    };
    let (pods, at) = store.list(&Scope::kind(Kind::Pod));
    assert_eq!(names(pods), ["a/0", "a/9", "b/1", "b/2"]);
    assert_eq!(at, Revision(5));
    assert_eq!(
        names(store.list(&Scope::in_namespace(Kind::Pod, "b")).0),
        ["b/1", "b/2"]
    );
    assert_eq!(names(store.list(&Scope::kind(Kind::Node)).0), ["/n1"]);
}

#[tokio::test]
async fn revision_never_goes_back_across_reopen_even_when_everything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            retained_revisions: 0,
            ..options()
        },
    )
    .unwrap();
    for i in 0..5 {
        store
            .create(pod("default", &format!("p{i}")))
            .await
            .unwrap();
    }
    for i in 0..5 {
        let key = ObjectKey::new(Kind::Pod, "default", format!("p{i}"));
        store.delete(&key, None).await.unwrap();
    }
    assert_eq!(store.compact().await.unwrap(), Revision(10));
    store.close().unwrap();

    // No object and no history row is left to derive the revision from.
    let store = open(&path);
    assert_eq!(store.revision(), Revision(10));
    assert_eq!(store.compacted(), Revision(10));
    let p = store.create(pod("default", "again")).await.unwrap();
    assert_eq!(rev(&p), 11);
}

#[tokio::test]
async fn newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    open(&path).close().unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = SqliteStore::open(&path, options()).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { found: 99, .. }));
    let msg = e.to_string();
    assert!(msg.contains("hub.db") && msg.contains("99"), "{msg}");
}

#[tokio::test]
async fn closed_store_refuses_writes_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let a = store.create(pod("default", "a")).await.unwrap();
    store.shutdown().await.unwrap();
    store.shutdown().await.unwrap();
    assert!(matches!(
        store.create(pod("default", "b")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.watch(Scope::default(), Revision(0)),
        Err(StoreError::Closed)
    ));
    // Reads still answer from memory.
    assert!(store.get(&a.key()).is_some());
}

#[tokio::test]
async fn shutdown_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = open(&path);
    for i in 0..50 {
        store
            .create(pod("default", &format!("p{i}")))
            .await
            .unwrap();
    }
    let wal = dir.path().join("hub.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    store.shutdown().await.unwrap();
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "WAL truncated at shutdown");
    // Everything is in the main file now.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 50);
}

#[tokio::test]
async fn a_failed_commit_fails_the_whole_group_and_leaves_memory_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = open(&path);
    let a = store.create(pod("default", "a")).await.unwrap();

    // A stray history row at revision 3 makes the next transaction that reaches revision 3
    // fail inside SQLite.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute(
            "INSERT INTO history VALUES (3, 'ADDED', 'Pod', 'default', 'stray', '{}')",
            [],
        )
        .unwrap();
    let mut relabel = Object::clone(&a);
    relabel.meta_mut().labels.insert("x".into(), "1".into());
    let results = store
        .write_batch(vec![
            Write::Create(pod("default", "b")),
            Write::Update(relabel),
            Write::Create(pod("default", "a")),
        ])
        .await;
    assert!(
        matches!(&results[0], Err(StoreError::Database { path, .. }) if path.ends_with("hub.db"))
    );
    assert!(matches!(&results[1], Err(StoreError::Database { .. })));
    // Refused on its own merits before the commit was tried.
    assert!(matches!(&results[2], Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.revision(), Revision(1));
    assert!(
        store
            .get(&ObjectKey::new(Kind::Pod, "default", "b"))
            .is_none()
    );
    assert!(Arc::ptr_eq(&store.get(&a.key()).unwrap(), &a));

    // Once the obstacle is gone the same revisions are used, with nothing skipped.
    other
        .execute("DELETE FROM history WHERE revision = 3", [])
        .unwrap();
    let b = store.create(pod("default", "b")).await.unwrap();
    assert_eq!(rev(&b), 2);
    let c = store.create(pod("default", "c")).await.unwrap();
    assert_eq!(rev(&c), 3);
    drop(other);
    store.close().unwrap();
    let store = open(&path);
    assert_eq!(store.revision(), Revision(3));
    assert!(store.get(&b.key()).is_some() && store.get(&c.key()).is_some());
}

#[tokio::test]
async fn a_second_store_on_the_same_file_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let first = open(&path);
    first.create(pod("default", "a")).await.unwrap();
    let e = SqliteStore::open(&path, options()).unwrap_err();
    assert!(
        matches!(e, StoreError::InUse { ref path } if path.ends_with("hub.db")),
        "{e}"
    );
    first.shutdown().await.unwrap();
    let second = open(&path);
    assert_eq!(second.revision(), Revision(1));
}
