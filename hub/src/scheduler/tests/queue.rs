//! The queue: priority order, waiting without polling, wake-ups, backoff.

use std::time::Duration;

use tokio::time::Instant;

use super::super::cache::Wake;
use super::super::queue::{Queue, WaitState};
use super::*;

fn queued(name: &str, priority: i32) -> Pod {
    let mut p = pod(&format!("metadata: {{name: {name}}}"));
    p.spec.priority = Some(priority);
    p
}

fn key(p: &Pod) -> skiff_api::ObjectKey {
    Object::Pod(p.clone()).key()
}

fn uid(name: &str) -> Uid {
    Uid(format!("uid-{name}"))
}

fn drain(q: &mut Queue) -> Vec<String> {
    std::iter::from_fn(|| q.pop())
        .map(|u| u.0.trim_start_matches("uid-").to_string())
        .collect()
}

const ANY: Wake = Wake {
    any: true,
    pod_added: false,
};
const ADDED: Wake = Wake {
    any: false,
    pod_added: true,
};

#[test]
fn higher_priority_first_then_oldest() {
    let mut q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
    for (name, prio) in [("a", 0), ("b", 10), ("c", 0), ("d", 10), ("e", -5)] {
        let p = queued(name, prio);
        q.upsert(&p, key(&p));
    }
    q.remove(&uid("c"));
    assert_eq!(drain(&mut q), ["b", "d", "a", "e"]);
    assert_eq!(q.get(&uid("b")).unwrap().state, WaitState::InFlight);
}

#[test]
fn unschedulable_pods_wait_for_a_change_then_back_off() {
    let mut q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
    let t0 = Instant::now();
    let p = queued("p", 0);
    q.upsert(&p, key(&p));
    assert_eq!(drain(&mut q), ["p"]);
    q.unschedulable(&uid("p"), false, t0);
    // Nothing changed: nothing to do, however long it waits.
    q.promote(t0 + Duration::from_secs(3600));
    assert!(!q.has_active());
    assert_eq!(q.next_deadline(), None);
    // A pod being placed does not help a pod that did not fail on affinity.
    q.wake(ADDED, t0 + Duration::from_secs(5));
    assert!(!q.has_active());
    // A change that could help, after the backoff: tried again at once.
    q.wake(ANY, t0 + Duration::from_secs(5));
    assert_eq!(drain(&mut q), ["p"]);
    // The second failure backs off 2 s: a change right away waits for it.
    let t1 = t0 + Duration::from_secs(5);
    q.unschedulable(&uid("p"), false, t1);
    q.wake(ANY, t1 + Duration::from_millis(100));
    assert_eq!(q.get(&uid("p")).unwrap().state, WaitState::Backoff);
    assert_eq!(q.next_deadline(), Some(t1 + Duration::from_secs(2)));
    q.promote(t1 + Duration::from_millis(1999));
    assert!(!q.has_active());
    q.promote(t1 + Duration::from_secs(2));
    assert_eq!(drain(&mut q), ["p"]);
}

#[test]
fn pods_waiting_for_affinity_wake_when_pods_are_placed() {
    let mut q = Queue::new(Duration::from_millis(0), Duration::from_secs(10));
    let t0 = Instant::now();
    for name in ["affine", "plain"] {
        let p = queued(name, 0);
        q.upsert(&p, key(&p));
    }
    drain(&mut q);
    q.unschedulable(&uid("affine"), true, t0);
    q.unschedulable(&uid("plain"), false, t0);
    q.wake(ADDED, t0);
    assert_eq!(drain(&mut q), ["affine"]);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let mut q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
    let t0 = Instant::now();
    let p = queued("p", 0);
    q.upsert(&p, key(&p));
    for (attempt, want) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (6, 10)] {
        drain(&mut q);
        q.unschedulable(&uid("p"), false, t0);
        assert_eq!(q.get(&uid("p")).unwrap().attempts, attempt);
        q.wake(ANY, t0);
        assert_eq!(
            q.next_deadline(),
            Some(t0 + Duration::from_secs(want)),
            "attempt {attempt}"
        );
        q.promote(t0 + Duration::from_secs(want));
    }
}

#[test]
fn spec_or_label_changes_retry_at_once_status_changes_do_not() {
    let mut q = Queue::new(Duration::from_secs(1), Duration::from_secs(10));
    let t0 = Instant::now();
    let mut p = queued("p", 0);
    p.metadata.generation = Some(1);
    q.upsert(&p, key(&p));
    drain(&mut q);
    q.unschedulable(&uid("p"), false, t0);
    // The scheduler's own condition write: status only.
    let mut status_only = p.clone();
    status_only.status = Some(skiff_api::resources::PodStatus {
        conditions: vec![skiff_api::resources::PodCondition {
            type_: "PodScheduled".into(),
            status: ConditionStatus::False,
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes are available: 1 Too many pods.".into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    q.upsert(&status_only, key(&p));
    assert!(!q.has_active());
    assert_eq!(
        q.get(&uid("p")).unwrap().condition,
        Some((
            "Unschedulable".into(),
            "0/1 nodes are available: 1 Too many pods.".into()
        ))
    );
    let mut relabelled = status_only.clone();
    relabelled.metadata.labels.insert("x".into(), "y".into());
    q.upsert(&relabelled, key(&p));
    assert_eq!(drain(&mut q), ["p"]);
    q.unschedulable(&uid("p"), false, t0);
    let mut respecced = relabelled.clone();
    respecced.metadata.generation = Some(2);
    q.upsert(&respecced, key(&p));
    assert_eq!(drain(&mut q), ["p"]);
}
