//! The store writes: bindings and conditions re-check the pod inside the writer.

use super::super::writes::{PodRef, bind, event, mark_unschedulable};
use super::*;
use crate::store::Write;
use skiff_api::resources::EventSeverity;
use skiff_api::{Kind, ObjectKey, Time};

fn now(secs: i64) -> Time {
    use chrono::TimeZone;
    Time::from_datetime(chrono::Utc.timestamp_opt(secs, 0).single().unwrap())
}

fn apply(write: Write, obj: &mut Object) -> bool {
    match write {
        Write::Mutate(_, f) => f(obj).unwrap(),
        other => panic!("expected a mutation, got {other:?}"),
    }
}

fn key() -> ObjectKey {
    ObjectKey::new(Kind::Pod, "default", "p")
}

/// The `PodScheduled` condition's status, reason, message and transition time.
type Scheduled = (
    ConditionStatus,
    Option<String>,
    Option<String>,
    Option<Time>,
);

fn scheduled(obj: &Object) -> Option<Scheduled> {
    let Object::Pod(p) = obj else { return None };
    p.condition("PodScheduled").map(|c| {
        (
            c.status,
            c.reason.clone(),
            c.message.clone(),
            c.last_transition_time,
        )
    })
}

#[test]
fn bind_only_an_unbound_pod_with_the_same_uid() {
    let uid = Uid("uid-p".into());
    let mut obj = Object::Pod(pod("metadata: {name: p}"));
    assert!(apply(
        bind(key(), uid.clone(), "n1".into(), now(10)),
        &mut obj
    ));
    let Object::Pod(p) = &obj else { unreachable!() };
    assert_eq!(p.spec.node_name.as_deref(), Some("n1"));
    assert_eq!(
        scheduled(&obj),
        Some((ConditionStatus::True, None, None, Some(now(10))))
    );
    // Bound already (here or elsewhere): no change.
    assert!(!apply(
        bind(key(), uid.clone(), "n2".into(), now(11)),
        &mut obj
    ));
    // Replaced by another pod of the same name: no change.
    let mut other = Object::Pod(pod("metadata: {name: p, uid: someone-else}"));
    assert!(!apply(
        bind(key(), uid.clone(), "n1".into(), now(11)),
        &mut other
    ));
    // Being deleted: no change.
    let mut deleting = pod("metadata: {name: p}");
    deleting.metadata.deletion_timestamp = Some(now(5));
    let mut deleting = Object::Pod(deleting);
    assert!(!apply(
        bind(key(), uid, "n1".into(), now(11)),
        &mut deleting
    ));
}

#[test]
fn unschedulable_condition_changes_only_when_its_content_does() {
    let uid = Uid("uid-p".into());
    let mut obj = Object::Pod(pod("metadata: {name: p}"));
    let mark = |message: &str, t| {
        mark_unschedulable(key(), uid.clone(), "Unschedulable", message.into(), now(t))
    };
    assert!(apply(
        mark("0/1 nodes are available: 1 Too many pods.", 10),
        &mut obj
    ));
    assert!(!apply(
        mark("0/1 nodes are available: 1 Too many pods.", 20),
        &mut obj
    ));
    assert!(apply(
        mark("0/2 nodes are available: 2 Too many pods.", 30),
        &mut obj
    ));
    assert_eq!(
        scheduled(&obj),
        Some((
            ConditionStatus::False,
            Some("Unschedulable".into()),
            Some("0/2 nodes are available: 2 Too many pods.".into()),
            Some(now(10)),
        )),
        "the transition time stays while the status stays False"
    );
    assert!(apply(bind(key(), uid, "n".into(), now(40)), &mut obj));
    assert_eq!(
        scheduled(&obj),
        Some((ConditionStatus::True, None, None, Some(now(40))))
    );
}

#[test]
fn events_name_and_describe_the_pod() {
    let pod_ref = PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: Uid("uid-p".into()),
        resource_version: "7".into(),
    };
    let Write::Create(Object::Event(ev)) = event(
        &pod_ref,
        EventSeverity::Warning,
        "FailedScheduling",
        "0/0".into(),
        now(1),
        0xab,
    ) else {
        panic!("expected an Event");
    };
    assert_eq!(ev.metadata.name, "p.ab");
    assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
    let involved = ev.involved_object.unwrap();
    assert_eq!(
        (involved.kind.as_str(), involved.name.as_str(), involved.uid),
        ("Pod", "p", Some(Uid("uid-p".into())))
    );
    assert_eq!(ev.source.component, "default-scheduler");
    assert_eq!(
        (ev.reason.as_str(), ev.type_, ev.count),
        ("FailedScheduling", Some(EventSeverity::Warning), 1)
    );
}
