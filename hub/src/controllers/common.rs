//! What the workload controllers share: the actions they ask for, owner references,
//! pod readiness and availability, and building pods from templates.

use std::sync::Arc;

use skiff_api::resources::{Pod, PodTemplateSpec};
use skiff_api::{Kind, Object, ObjectKey, ObjectMeta, OwnerReference, Time};

/// The revision of a Deployment rollout, on the Deployment and its ReplicaSets.
pub(crate) const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// A write a controller wants. Pure reconcilers return these; the manager applies them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Create a pod; the manager names it `<generate_name><5 random [a-z0-9]>`.
    CreatePod(Box<Pod>),
    /// Create an object under its own (already chosen) name.
    Create(Box<Object>),
    Delete(ObjectKey),
    /// Set `spec.replicas` (and the revision annotation, when given) of a ReplicaSet.
    ScaleReplicaSet {
        key: ObjectKey,
        replicas: i32,
        revision: Option<String>,
    },
    /// Replace the status of the object at `key` with the status carried by `object`.
    SetStatus(Box<Object>),
}

/// The owner reference a controller puts on what it creates.
pub(crate) fn controller_ref(kind: Kind, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.name().to_string(),
        name: meta.name.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The uid of the controlling owner (`controller: true`), if any.
pub(crate) fn controller_uid(meta: &ObjectMeta) -> Option<&skiff_api::Uid> {
    meta.owner_references
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| &r.uid)
}

/// A pod from `template` in `namespace`, owned by `owner`, to be named `<prefix>-xxxxx`.
pub(crate) fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(namespace.to_string()),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            owner_references: vec![owner],
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The objects in `objs` that are pods, with their shared handle.
pub(crate) fn pods(objs: &[Arc<Object>]) -> Vec<&Pod> {
    objs.iter()
        .filter_map(|o| match o.as_ref() {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Counts toward a controller's replicas: not finished and not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    !pod.is_terminal() && pod.metadata.deletion_timestamp.is_none()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' "available").
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Time) -> bool {
    let Some(ready) = pod.condition("Ready").filter(|c| c.status.is_true()) else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    ready
        .last_transition_time
        .is_some_and(|t| t.0 + chrono::Duration::seconds(i64::from(min_ready_seconds)) <= now.0)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Objects for the reconcilers' unit tables.
    use chrono::TimeZone;
    use skiff_api::Uid;
    use skiff_api::resources::{ConditionStatus, Container, PodCondition, PodPhase, PodStatus};

    use super::*;

    pub(crate) fn at(secs: i64) -> Time {
        Time::from_datetime(chrono::Utc.timestamp_opt(secs, 0).single().unwrap())
    }

    pub(crate) fn meta(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            namespace: Some("default".into()),
            uid: Some(Uid(uid.into())),
            generation: Some(1),
            creation_timestamp: Some(at(0)),
            ..ObjectMeta::default()
        }
    }

    pub(crate) fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: ObjectMeta {
                labels: [("app".to_string(), "web".to_string())].into(),
                ..ObjectMeta::default()
            },
            spec: skiff_api::resources::PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: image.into(),
                    ..Container::default()
                }],
                ..Default::default()
            },
        }
    }

    /// A pod owned by `owner`: `node` empty means unscheduled; `created` its age.
    pub(crate) fn pod(
        name: &str,
        owner: OwnerReference,
        node: &str,
        phase: PodPhase,
        ready: bool,
        created: i64,
    ) -> Arc<Object> {
        let mut m = meta(name, &format!("uid-{name}"));
        m.labels = [("app".to_string(), "web".to_string())].into();
        m.creation_timestamp = Some(at(created));
        m.owner_references = vec![owner];
        let conditions = if ready {
            vec![PodCondition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                last_transition_time: Some(at(created)),
                ..PodCondition::default()
            }]
        } else {
            vec![]
        };
        Arc::new(Object::Pod(Pod {
            metadata: m,
            spec: skiff_api::resources::PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some(phase),
                conditions,
                ..PodStatus::default()
            }),
        }))
    }
}
