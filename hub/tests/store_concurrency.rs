//! Many concurrent writers against one SqliteStore: optimistic concurrency picks exactly
//! one winner, every revision belongs to exactly one acknowledged write, acknowledged
//! writes survive reopen, and concurrent writes share transactions.

mod store_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use skiff_api::{Kind, Object, ObjectKey, Revision};
use skiff_hub::store::{Store, StoreError, Write, Written};
use store_support::*;
use tokio::sync::Barrier;

const TASKS: usize = 16;
const CREATES_PER_TASK: usize = 200;
const CONTENDED_ROUNDS: usize = 10;
const INCREMENTS_PER_TASK: usize = 10;

fn counter_key() -> ObjectKey {
    ObjectKey::new(Kind::Pod, "default", "counter")
}

fn count(obj: &Object) -> u64 {
    obj.meta()
        .labels
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_one_winner_per_revision_and_all_acks_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = Arc::new(open(&path));
    let counter = store.create(pod("default", "counter")).await.unwrap();
    let barrier = Arc::new(Barrier::new(TASKS));

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut acked: Vec<(ObjectKey, u64)> = Vec::new();
            let mut round_wins = Vec::new();

            // Everyone updates from the same revision: exactly one may win each round.
            for _ in 0..CONTENDED_ROUNDS {
                barrier.wait().await;
                let current = store.get(&counter_key()).unwrap();
                barrier.wait().await;
                let mut next = Object::clone(&current);
                next.meta_mut()
                    .labels
                    .insert("count".into(), (count(&current) + 1).to_string());
                next.meta_mut()
                    .labels
                    .insert("winner".into(), t.to_string());
                match store.update(next).await {
                    Ok(o) => {
                        acked.push((o.key(), rev(&o)));
                        round_wins.push(true);
                    }
                    Err(StoreError::Conflict { actual, .. }) => {
                        assert!(actual.0 > rev(&current));
                        round_wins.push(false);
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }

            // Then creates interleaved with increments that retry on conflict.
            let mut increments = 0;
            for i in 0..CREATES_PER_TASK {
                let o = store
                    .create(pod("load", &format!("t{t}-{i}")))
                    .await
                    .unwrap();
                acked.push((o.key(), rev(&o)));
                if i % (CREATES_PER_TASK / INCREMENTS_PER_TASK) == 0 {
                    loop {
                        let current = store.get(&counter_key()).unwrap();
                        let mut next = Object::clone(&current);
                        next.meta_mut()
                            .labels
                            .insert("count".into(), (count(&current) + 1).to_string());
                        match store.update(next).await {
                            Ok(o) => {
                                acked.push((o.key(), rev(&o)));
                                increments += 1;
                                break;
                            }
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                }
            }
            (acked, round_wins, increments)
        }));
    }

    let mut acked = vec![(counter.key(), rev(&counter))];
    let mut wins_per_round = vec![0; CONTENDED_ROUNDS];
    let mut increments = 0;
    for task in tasks {
        let (a, wins, inc) = task.await.unwrap();
        acked.extend(a);
        for (round, won) in wins.into_iter().enumerate() {
            wins_per_round[round] += usize::from(won);
        }
        increments += inc;
    }
    assert_eq!(wins_per_round, vec![1; CONTENDED_ROUNDS]);
    assert_eq!(increments, TASKS * INCREMENTS_PER_TASK);

    // Every revision went to exactly one acknowledged write, with no gap.
    let final_rev = store.revision().0;
    let revisions: BTreeSet<u64> = acked.iter().map(|(_, r)| *r).collect();
    assert_eq!(revisions.len(), acked.len(), "a revision was acked twice");
    assert_eq!(revisions, (1..=final_rev).collect::<BTreeSet<u64>>());

    let expected_count = (CONTENDED_ROUNDS + increments) as u64;
    assert_eq!(count(&store.get(&counter_key()).unwrap()), expected_count);
    let (pods, _) = store.list(&skiff_hub::store::Scope::in_namespace(Kind::Pod, "load"));
    assert_eq!(pods.len(), TASKS * CREATES_PER_TASK);

    drop(store);
    let store = open(&path);
    assert_eq!(store.revision(), Revision(final_rev));
    let counter_after = store.get(&counter_key()).unwrap();
    assert_eq!(count(&counter_after), expected_count);
    for (key, r) in &acked {
        let obj = store.get(key).unwrap_or_else(|| panic!("{key} lost"));
        if *key != counter_key() {
            assert_eq!(rev(&obj), *r, "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("hub.db")));
    let per_writer = 100;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                store
                    .create(pod("default", &format!("w{t}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    let writes = 16 * per_writer;
    assert_eq!(stats.writes, writes);
    assert_eq!(stats.objects, writes);
    assert_eq!(store.revision(), Revision(writes));
    // With 16 writers each waiting on its own commit, rounds carry several writes.
    assert!(
        stats.commits * 4 <= writes,
        "{} commits for {writes} writes",
        stats.commits
    );
}

#[tokio::test]
async fn one_batch_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("hub.db"));
    let writes: Vec<Write> = (0..3000)
        .map(|i| Write::Create(pod("default", &format!("p{i}"))))
        .collect();
    let results = store.write_batch(writes).await;
    assert!(results.iter().all(|r| matches!(r, Ok(Written::Stored(_)))));
    let stats = store.stats();
    assert_eq!(stats.commits, 1);
    assert_eq!(stats.last_batch_size, 3000);
    assert_eq!(store.revision(), Revision(3000));
}
