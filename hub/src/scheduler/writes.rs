//! What the scheduler writes to the store: bindings (`spec.nodeName` and the
//! `PodScheduled` condition, in one write, as the Kubernetes binding subresource does),
//! `PodScheduled=False` for pods that do not fit, and Events.
//!
//! Each pod write is a mutation that re-checks, inside the store's writer, that the
//! pod is still the one decided about (same UID) and still unbound, so a decision made
//! on a stale view can never overwrite someone else's binding.

use skiff_api::resources::{
    ConditionStatus, Event, EventSeverity, EventSource, ObjectReference, Pod, PodCondition,
    PodStatus,
};
use skiff_api::{Kind, Object, ObjectKey, ObjectMeta, Time, Uid};

use crate::store::Write;

/// The `source.component` and `reportingComponent` of the scheduler's events.
pub(crate) const COMPONENT: &str = "default-scheduler";
pub(crate) const POD_SCHEDULED: &str = "PodScheduled";

/// Binds the pod to `node` if it is still unbound and still has `uid`; otherwise
/// changes nothing (the write answers `Unchanged` with the pod as it is).
pub(crate) fn bind(key: ObjectKey, uid: Uid, node: String, now: Time) -> Write {
    Write::Mutate(
        key,
        Box::new(move |obj: &mut Object| {
            let Object::Pod(pod) = obj else {
                return Ok(false);
            };
            if !still_pending(pod, &uid) {
                return Ok(false);
            }
            pod.spec.node_name = Some(node);
            set_condition(pod, ConditionStatus::True, None, None, now);
            Ok(true)
        }),
    )
}

/// Sets `PodScheduled=False` with `reason` and `message` if the pod is still unbound
/// and still has `uid`.
pub(crate) fn mark_unschedulable(
    key: ObjectKey,
    uid: Uid,
    reason: &'static str,
    message: String,
    now: Time,
) -> Write {
    Write::Mutate(
        key,
        Box::new(move |obj: &mut Object| {
            let Object::Pod(pod) = obj else {
                return Ok(false);
            };
            if !still_pending(pod, &uid) {
                return Ok(false);
            }
            Ok(set_condition(
                pod,
                ConditionStatus::False,
                Some(reason),
                Some(message),
                now,
            ))
        }),
    )
}

fn still_pending(pod: &Pod, uid: &Uid) -> bool {
    pod.metadata.uid.as_ref() == Some(uid)
        && !pod.is_scheduled()
        && pod.metadata.deletion_timestamp.is_none()
}

/// Updates the `PodScheduled` condition as Kubernetes does: the transition time moves
/// only when the status changes. Returns whether anything changed.
fn set_condition(
    pod: &mut Pod,
    status: ConditionStatus,
    reason: Option<&str>,
    message: Option<String>,
    now: Time,
) -> bool {
    let conditions = &mut pod.status.get_or_insert_with(PodStatus::default).conditions;
    let reason = reason.map(str::to_string);
    match conditions.iter_mut().find(|c| c.type_ == POD_SCHEDULED) {
        Some(c) => {
            if c.status == status && c.reason == reason && c.message == message {
                return false;
            }
            if c.status != status {
                c.last_transition_time = Some(now);
            }
            c.status = status;
            c.reason = reason;
            c.message = message;
            c.last_probe_time = None;
        }
        None => conditions.push(PodCondition {
            type_: POD_SCHEDULED.to_string(),
            status,
            last_probe_time: None,
            last_transition_time: Some(now),
            reason,
            message,
        }),
    }
    true
}

/// The pod an event is about.
#[derive(Debug, Clone)]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: Uid,
    pub(crate) resource_version: String,
}

impl PodRef {
    pub(crate) fn key(&self) -> ObjectKey {
        ObjectKey::new(Kind::Pod, self.namespace.as_str(), self.name.as_str())
    }
}

/// An Event about a pod, named `<pod>.<hex>` as Kubernetes names them; `unique` makes
/// the name unique among this scheduler's events.
pub(crate) fn event(
    pod: &PodRef,
    severity: EventSeverity,
    reason: &str,
    message: String,
    now: Time,
    unique: u64,
) -> Write {
    let action = if severity == EventSeverity::Normal {
        "Binding"
    } else {
        "Scheduling"
    };
    let source = EventSource {
        component: COMPONENT.to_string(),
        host: String::new(),
    };
    Write::Create(Object::Event(pod_event(
        pod, severity, reason, message, now, unique, source, action,
    )))
}

/// An Event about a pod from `source` (the scheduler, or a node's agent), seen once at
/// `now`, named `<pod>.<unique in hex>`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pod_event(
    pod: &PodRef,
    severity: EventSeverity,
    reason: &str,
    message: String,
    now: Time,
    unique: u64,
    source: EventSource,
    action: &str,
) -> Event {
    Event {
        metadata: ObjectMeta {
            name: format!("{}.{unique:x}", pod.name),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: Some(ObjectReference {
            kind: "Pod".to_string(),
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: Some(pod.uid.clone()),
            api_version: "v1".to_string(),
            resource_version: pod.resource_version.clone(),
            field_path: String::new(),
        }),
        reason: reason.to_string(),
        message,
        reporting_component: source.component.clone(),
        reporting_instance: source.host.clone(),
        source,
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        count: 1,
        type_: Some(severity),
        event_time: None,
        action: action.to_string(),
    }
}
