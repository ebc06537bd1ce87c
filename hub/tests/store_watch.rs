//! Watches on SqliteStore: resume from a revision (from memory and from SQLite), scope,
//! many watchers, compaction and `Gone`, slow watchers, and no gap or duplicate between
//! replay and live events while writes race with new watchers.

mod store_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::{Kind, Object, ObjectKey, Revision};
use skiff_hub::store::{
    EventType, Scope, SqliteStore, Store, StoreError, StoreOptions, Watch, WatchEvent,
};
use store_support::*;

/// A short summary of an event, comparable across memory and SQLite replays.
fn summary(ev: &WatchEvent) -> (u64, &'static str, String, String) {
    (
        ev.revision.0,
        ev.event_type.as_str(),
        ev.object.key().to_string(),
        ev.object.to_json_string(),
    )
}

async fn take(w: &mut Watch, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_event(w).await);
    }
    out
}

/// Writes a fixed history of 12 revisions over two namespaces and a node.
async fn write_history(store: &SqliteStore) {
    for i in 0..4 {
        store.create(pod("a", &format!("p{i}"))).await.unwrap(); // 1..=4
    }
    store.create(pod("b", "q")).await.unwrap(); // 5
    store.create(node("n1")).await.unwrap(); // 6
    for i in 0..4 {
        store
            .update(pod_on("a", &format!("p{i}"), "n1"))
            .await
            .unwrap(); // 7..=10
    }
    store
        .delete(&ObjectKey::new(Kind::Pod, "a", "p0"), None)
        .await
        .unwrap(); // 11
    store
        .delete(&ObjectKey::new(Kind::Pod, "b", "q"), None)
        .await
        .unwrap(); // 12
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_events_from_memory_and_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = open(&path);
    write_history(&store).await;
    assert_eq!(store.revision(), Revision(12));

    let mut all = store.watch(Scope::default(), Revision(0)).unwrap();
    let from_memory = take(&mut all, 12).await;
    let revs: Vec<u64> = from_memory.iter().map(|e| e.revision.0).collect();
    assert_eq!(revs, (1..=12).collect::<Vec<_>>());
    assert_eq!(from_memory[0].event_type, EventType::Added);
    assert_eq!(from_memory[6].event_type, EventType::Modified);
    assert_eq!(from_memory[10].event_type, EventType::Deleted);
    assert_eq!(from_memory[10].object.meta().name, "p0");
    for ev in &from_memory {
        assert_eq!(
            rev(&ev.object),
            ev.revision.0,
            "object carries its revision"
        );
    }
    assert_quiet(&mut all).await;

    // Resume from the middle, in one namespace.
    let mut ns_a = store
        .watch(Scope::in_namespace(Kind::Pod, "a"), Revision(6))
        .unwrap();
    let got = take(&mut ns_a, 5).await;
    let revs: Vec<u64> = got.iter().map(|e| e.revision.0).collect();
    assert_eq!(revs, [7, 8, 9, 10, 11]);
    assert_quiet(&mut ns_a).await;

    // Live events continue right after the replay.
    store.create(pod("a", "late")).await.unwrap(); // 13
    store.create(pod("b", "late")).await.unwrap(); // 14
    assert_eq!(next_event(&mut ns_a).await.revision, Revision(13));
    assert_quiet(&mut ns_a).await;
    let live: Vec<u64> = take(&mut all, 2)
        .await
        .iter()
        .map(|e| e.revision.0)
        .collect();
    assert_eq!(live, [13, 14]);
    store.shutdown().await.unwrap();
    drop(store);

    // After a restart the memory ring is empty: the same replay comes from SQLite.
    let store = open(&path);
    let mut again = store.watch(Scope::default(), Revision(0)).unwrap();
    let from_disk = take(&mut again, 14).await;
    let a: Vec<_> = from_memory.iter().map(summary).collect();
    let b: Vec<_> = from_disk[..12].iter().map(summary).collect();
    assert_eq!(a, b);
    assert_quiet(&mut again).await;

    let mut nodes = store.watch(Scope::kind(Kind::Node), Revision(0)).unwrap();
    let ev = next_event(&mut nodes).await;
    assert_eq!((ev.revision.0, ev.object.meta().name.as_str()), (6, "n1"));
    assert_quiet(&mut nodes).await;
}

#[tokio::test]
async fn watch_from_the_current_revision_sees_only_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    write_history(&store).await;
    let mut w = store.watch(Scope::default(), store.revision()).unwrap();
    assert_quiet(&mut w).await;
    store.create(pod("a", "new")).await.unwrap();
    let ev = next_event(&mut w).await;
    assert_eq!(ev.revision, Revision(13));
    assert_eq!(ev.event_type, EventType::Added);
    assert_quiet(&mut w).await;
}

#[tokio::test]
async fn compacted_history_is_gone_and_the_rest_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = SqliteStore::open(
        &path,
        StoreOptions {
            retained_revisions: 5,
            ..options()
        },
    )
    .unwrap();
    write_history(&store).await;
    assert_eq!(store.compact().await.unwrap(), Revision(7));
    assert_eq!(store.compacted(), Revision(7));

    let e = store.watch(Scope::default(), Revision(3)).unwrap_err();
    assert!(matches!(
        e,
        StoreError::Gone {
            requested: Revision(3),
            compacted: Revision(7)
        }
    ));
    // From the compacted revision itself everything needed is still there.
    let mut w = store.watch(Scope::default(), Revision(7)).unwrap();
    let revs: Vec<u64> = take(&mut w, 5).await.iter().map(|e| e.revision.0).collect();
    assert_eq!(revs, [8, 9, 10, 11, 12]);
    store.close().unwrap();

    // The compaction mark is durable, and replay after it comes from SQLite.
    let store = open(&path);
    assert_eq!(store.compacted(), Revision(7));
    assert!(matches!(
        store.watch(Scope::default(), Revision(6)),
        Err(StoreError::Gone { .. })
    ));
    let mut w = store.watch(Scope::default(), Revision(7)).unwrap();
    assert_eq!(next_event(&mut w).await.revision, Revision(8));
}

#[tokio::test]
async fn compaction_runs_periodically_in_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path().join("hub.db"),
        StoreOptions {
            retained_revisions: 3,
            compact_every: Duration::from_millis(50),
            ..options()
        },
    )
    .unwrap();
    write_history(&store).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted() < Revision(9) {
        assert!(Instant::now() < deadline, "no periodic compaction");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.compacted(), Revision(9));
    assert!(matches!(
        store.watch(Scope::default(), Revision(1)),
        Err(StoreError::Gone { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_watchers_see_identical_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("hub.db")));
    let total = 600;
    let mut watchers: Vec<Watch> = (0..20)
        .map(|_| store.watch(Scope::default(), Revision(0)).unwrap())
        .collect();
    let mut writers = Vec::new();
    for t in 0..6 {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for i in 0..total / 6 {
                let name = format!("t{t}-{i}");
                store.create(pod("default", &name)).await.unwrap();
            }
        }));
    }
    let mut readers = Vec::new();
    for mut w in watchers.drain(..) {
        readers.push(tokio::spawn(async move {
            let evs = take(&mut w, total).await;
            evs.iter()
                .map(|e| (e.revision.0, e.object.key().to_string()))
                .collect::<Vec<_>>()
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut seqs = Vec::new();
    for r in readers {
        seqs.push(r.await.unwrap());
    }
    let first = &seqs[0];
    let revs: Vec<u64> = first.iter().map(|(r, _)| *r).collect();
    assert_eq!(revs, (1..=total as u64).collect::<Vec<_>>());
    for s in &seqs[1..] {
        assert_eq!(s, first);
    }
}

#[tokio::test]
async fn a_slow_watcher_catches_up_from_history_without_slowing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path().join("hub.db"),
        StoreOptions {
            recent_events: 8,
            watch_buffer: 4,
            ..options()
        },
    )
    .unwrap();
    let mut slow = store.watch(Scope::default(), Revision(0)).unwrap();
    let writes = store
        .write_batch(
            (0..300)
                .map(|i| skiff_hub::store::Write::Create(pod("default", &format!("p{i}"))))
                .collect(),
        )
        .await;
    assert!(writes.iter().all(Result::is_ok));
    for i in 0..300 {
        store
            .update(pod_on("default", &format!("p{i}"), "n1"))
            .await
            .unwrap();
    }
    // The ring holds 8 events; the watcher reads the other 592 back from SQLite.
    let evs = take(&mut slow, 600).await;
    let revs: Vec<u64> = evs.iter().map(|e| e.revision.0).collect();
    assert_eq!(revs, (1..=600).collect::<Vec<_>>());
    assert_eq!(evs[299].event_type, EventType::Added);
    assert_eq!(evs[300].event_type, EventType::Modified);
    assert_quiet(&mut slow).await;
}

#[tokio::test]
async fn a_watcher_behind_compacted_history_gets_gone_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path().join("hub.db"),
        StoreOptions {
            recent_events: 8,
            watch_buffer: 4,
            retained_revisions: 10,
            ..options()
        },
    )
    .unwrap();
    let mut slow = store.watch(Scope::default(), Revision(0)).unwrap();
    for i in 0..100 {
        store
            .create(pod("default", &format!("p{i}")))
            .await
            .unwrap();
    }
    assert_eq!(store.compact().await.unwrap(), Revision(90));
    let mut received = Vec::new();
    let gone = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
            Ok(Some(Ok(ev))) => received.push(ev.revision.0),
            Ok(Some(Err(e))) => break e,
            Ok(None) => panic!("ended without Gone"),
            Err(_) => panic!("stalled"),
        }
    };
    // What it did get is a gap-free prefix; then it is told to relist.
    assert!(!received.is_empty() && received.len() < 90);
    assert_eq!(received, (1..=received.len() as u64).collect::<Vec<_>>());
    assert!(
        matches!(gone, StoreError::Gone { requested, compacted: Revision(90) } if requested.0 == *received.last().unwrap()),
        "{gone}"
    );
    assert!(slow.next().await.is_none());
}

/// Applies watch events to a listed state, as an informer does.
fn apply(state: &mut BTreeMap<String, String>, ev: &WatchEvent) {
    let key = ev.object.key().to_string();
    match ev.event_type {
        EventType::Deleted => {
            assert!(state.remove(&key).is_some(), "delete of unknown {key}");
        }
        EventType::Added => {
            assert!(
                state
                    .insert(key.clone(), ev.object.to_json_string())
                    .is_none(),
                "add of known {key}"
            );
        }
        EventType::Modified => {
            assert!(
                state
                    .insert(key.clone(), ev.object.to_json_string())
                    .is_some(),
                "modify of unknown {key}"
            );
        }
    }
}

fn snapshot(objs: &[Arc<Object>]) -> BTreeMap<String, String> {
    objs.iter()
        .map(|o| (o.key().to_string(), o.to_json_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_then_watch_under_concurrent_writes_has_no_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("hub.db"),
            StoreOptions {
                // Small ring: late full replays come from SQLite, the rest from memory.
                recent_events: 64,
                watch_buffer: 16,
                ..options()
            },
        )
        .unwrap(),
    );
    let (done_tx, done_rx) = tokio::sync::watch::channel(None::<u64>);

    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..250 {
                    let name = format!("t{t}-{}", i % 40);
                    let key = ObjectKey::new(Kind::Pod, "default", name.clone());
                    match store.get(&key) {
                        None => {
                            store.create(pod("default", &name)).await.unwrap();
                        }
                        Some(cur) if i % 3 == 0 => {
                            store.delete(&key, Some(Revision(rev(&cur)))).await.unwrap();
                        }
                        Some(cur) => {
                            let mut next = Object::clone(&cur);
                            next.meta_mut().labels.insert("i".into(), i.to_string());
                            store.update(next).await.unwrap();
                        }
                    }
                }
            })
        })
        .collect();

    // Informers start while the writes run: even ones list then watch from the list's
    // revision; odd ones replay everything from revision 0.
    let mut informers = Vec::new();
    for k in 0..24u64 {
        tokio::time::sleep(Duration::from_millis(3 * k)).await;
        let (from, state) = if k % 2 == 0 {
            let (objs, at) = store.list(&Scope::kind(Kind::Pod));
            (at, snapshot(&objs))
        } else {
            (Revision(0), BTreeMap::new())
        };
        let w = store.watch(Scope::kind(Kind::Pod), from).unwrap();
        informers.push(tokio::spawn(follow(w, state, from.0, done_rx.clone())));
    }
    for w in writers {
        w.await.unwrap();
    }
    let final_rev = store.revision().0;
    done_tx.send_replace(Some(final_rev));
    let (objs, _) = store.list(&Scope::kind(Kind::Pod));
    let expected = snapshot(&objs);
    assert!(final_rev > 500, "the writers did write: {final_rev}");
    for inf in informers {
        let state = inf.await.unwrap();
        assert_eq!(state, expected);
    }
}

/// Follows `w` until the final revision, checking each event comes right after the
/// previous one (every write here is to a pod, so a pod watch sees every revision).
async fn follow(
    mut w: Watch,
    mut state: BTreeMap<String, String>,
    mut last: u64,
    mut done: tokio::sync::watch::Receiver<Option<u64>>,
) -> BTreeMap<String, String> {
    loop {
        if let Some(target) = *done.borrow_and_update()
            && last == target
        {
            return state;
        }
        tokio::select! {
            ev = w.next() => {
                let ev = match ev {
                    Some(Ok(ev)) => ev,
                    other => panic!("watch ended: {other:?}"),
                };
                assert_eq!(ev.revision.0, last + 1, "gap or duplicate after {last}");
                last = ev.revision.0;
                apply(&mut state, &ev);
            }
            _ = done.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(20)) => panic!("stalled at {last}"),
        }
    }
}

#[tokio::test]
async fn shutdown_ends_watches_after_committed_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let mut w = store.watch(Scope::default(), Revision(0)).unwrap();
    store.create(pod("default", "a")).await.unwrap();
    store.shutdown().await.unwrap();
    assert_eq!(next_event(&mut w).await.revision, Revision(1));
    let end = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watch ends after shutdown");
    assert!(end.is_none());
}
