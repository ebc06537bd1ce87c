//! The status of a pod that is desired but not running yet: Pending, its containers
//! waiting in ContainerCreating, or in ErrImagePull / ImagePullBackOff when an image
//! could not be pulled (with the registry's reason).

use chrono::{DateTime, Utc};
use skiff_api::Time;
use skiff_api::resources::{
    ConditionStatus, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
    PodPhase, PodStatus,
};

/// Why a pod could not start because of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub container: String,
    pub image: String,
    pub message: String,
    /// Failures in a row; the back-off grows with them.
    pub failures: u32,
    /// No pull is tried before this.
    pub retry_at: DateTime<Utc>,
}

impl PullFailure {
    /// `ErrImagePull` right after the first failure, `ImagePullBackOff` once the agent is
    /// backing off between attempts (as the kubelet shows them).
    pub fn reason(&self) -> &'static str {
        if self.failures <= 1 {
            "ErrImagePull"
        } else {
            "ImagePullBackOff"
        }
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..ContainerState::default()
    }
}

/// The status of `pod` while it is being created (`pull` says why it is stuck, if it is).
pub fn pending_status(
    pod: &Pod,
    pull: Option<&PullFailure>,
    previous: Option<&PodStatus>,
    host_ip: Option<&str>,
    now: DateTime<Utc>,
) -> PodStatus {
    let status_of = |c: &skiff_api::resources::Container| {
        let state = match pull {
            Some(f) if f.container == c.name => waiting(
                f.reason(),
                Some(format!(
                    "Failed to pull image \"{}\": {}",
                    f.image, f.message
                )),
            ),
            _ => waiting("ContainerCreating", None),
        };
        ContainerStatus {
            name: c.name.clone(),
            state,
            ready: false,
            restart_count: 0,
            image: c.image.clone(),
            started: Some(false),
            ..ContainerStatus::default()
        }
    };
    let since = |type_: &str, status: ConditionStatus| {
        previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time)
            .unwrap_or_else(|| Time::from_datetime(now))
    };
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        PodCondition {
            type_: type_.to_string(),
            last_transition_time: Some(since(type_, status)),
            status,
            last_probe_time: None,
            reason: reason.map(str::to_string),
            message: None,
        }
    };
    let start_time = previous
        .and_then(|p| p.start_time)
        .unwrap_or_else(|| Time::from_datetime(now));
    PodStatus {
        phase: Some(PodPhase::Pending),
        conditions: vec![
            condition("PodScheduled", true, None),
            condition("Initialized", pod.spec.init_containers.is_empty(), None),
            condition("ContainersReady", false, Some("ContainersNotReady")),
            condition("Ready", false, Some("ContainersNotReady")),
        ],
        message: None,
        reason: None,
        host_ip: host_ip.map(str::to_string),
        pod_ip: None,
        pod_ips: vec![],
        start_time: Some(start_time),
        init_container_statuses: pod.spec.init_containers.iter().map(status_of).collect(),
        container_statuses: pod.spec.containers.iter().map(status_of).collect(),
        qos_class: Some(pod.spec.qos_class()),
    }
}
