//! Memory budget: a hub holding 10,000 pods stays within 100 MB resident, both after
//! writing them and after reopening (loading them all into memory).
//!
//! Alone in its own test binary so no other test's allocations count.

mod store_support;

use std::sync::Arc;

use skiff_api::{Kind, Object};
use skiff_hub::store::{Scope, Store, Write};
use store_support::*;

const PODS: usize = 10_000;
const BUDGET_KB: u64 = 100 * 1024;

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// A pod with the metadata a real one carries (labels, annotations, owner, finalizer).
fn realistic_pod(i: usize) -> Object {
    let mut p = pod_on(
        &format!("ns-{}", i % 20),
        &format!("web-{i:05}-x7k2p"),
        "n1",
    );
    let m = p.meta_mut();
    for (k, v) in [
        ("app", "web"),
        ("tier", "frontend"),
        ("pod-template-hash", "7d4b9c8f6"),
        ("release", "2026-11-stable"),
    ] {
        m.labels.insert(k.into(), v.into());
    }
    m.annotations.insert(
        "skiff.io/config-hash".into(),
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
    );
    m.annotations.insert(
        "skiff.io/last-applied".into(),
        format!("{{\"image\":\"registry.local/web:{i}\",\"replicas\":3,\"ports\":[8080]}}"),
    );
    m.finalizers.push("skiff.io/network".into());
    m.owner_references.push(skiff_api::OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web-7d4b9c8f6".into(),
        uid: skiff_api::Uid("5a7f2c9e-1b3d-4e6f-8a9b-0c1d2e3f4a5b".into()),
        controller: Some(true),
        block_owner_deletion: Some(true),
    });
    p
}

#[tokio::test]
async fn ten_thousand_pods_fit_in_100_mb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = open(&path);
    for chunk in (0..PODS).collect::<Vec<_>>().chunks(1000) {
        let writes = chunk
            .iter()
            .map(|&i| Write::Create(realistic_pod(i)))
            .collect();
        for r in store.write_batch(writes).await {
            r.unwrap();
        }
    }
    // A round of updates, so history and memory hold more than one version of some.
    let updates = (0..2000)
        .map(|i| {
            let mark_ready: skiff_hub::store::Mutation = Box::new(|o| {
                o.meta_mut().labels.insert("ready".into(), "true".into());
                Ok(true)
            });
            Write::Mutate(realistic_pod(i).key(), mark_ready)
        })
        .collect();
    for r in store.write_batch(updates).await {
        r.unwrap();
    }
    let after_writes = rss_kb();
    assert_eq!(store.list(&Scope::kind(Kind::Pod)).0.len(), PODS);
    store.shutdown().await.unwrap();
    drop(store);

    let store = Arc::new(open(&path));
    let (pods, _) = store.list(&Scope::kind(Kind::Pod));
    assert_eq!(pods.len(), PODS);
    drop(pods);
    let after_reopen = rss_kb();
    println!("RSS after writes {after_writes} kB, after reopen {after_reopen} kB");
    assert!(
        after_writes <= BUDGET_KB,
        "RSS {after_writes} kB after writes"
    );
    assert!(
        after_reopen <= BUDGET_KB,
        "RSS {after_reopen} kB after reopen"
    );
}
