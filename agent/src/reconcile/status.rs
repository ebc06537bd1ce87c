//! Pod status from an observation: phase, conditions and container statuses, computed
//! the way the kubelet does: a running container is started once its startup probe (if
//! any) passed and ready once its readiness probe (if any) passed; the pod's
//! ContainersReady and Ready conditions follow its containers.

use chrono::{DateTime, Utc};
use skiff_api::Time;
use skiff_api::resources::{
    ConditionStatus, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIp, PodPhase, PodStatus,
};

use super::{init_restarts, policy, restarts};
use crate::probe::{Health, ProbeResults};
use crate::runtime::{Exit, ExitReason, ObservedContainer, ObservedPod, RunState};

fn terminated(e: &Exit, container_id: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: e.exit_code,
        signal: None,
        reason: Some(
            match e.reason {
                ExitReason::OomKilled => "OOMKilled",
                ExitReason::Unknown => "ContainerStatusUnknown",
                ExitReason::Plain if e.exit_code == 0 => "Completed",
                ExitReason::Plain => "Error",
            }
            .to_string(),
        ),
        message: None,
        started_at: Some(Time::from_datetime(e.started_at)),
        finished_at: Some(Time::from_datetime(e.finished_at)),
        container_id: Some(container_id.to_string()),
    }
}

fn container_status(c: &ObservedContainer, will_restart: bool, health: &Health) -> ContainerStatus {
    let state = match c.state {
        // Not started yet: its pod's init containers have not all completed (or, for an
        // init container, those before it).
        RunState::Waiting => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("PodInitializing".into()),
                message: None,
            }),
            ..ContainerState::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time::from_datetime(started_at)),
            }),
            ..ContainerState::default()
        },
        RunState::Exited(e) if will_restart => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some(format!("container exited with code {}", e.exit_code)),
            }),
            ..ContainerState::default()
        },
        RunState::Exited(e) => ContainerState {
            terminated: Some(terminated(&e, &c.container_id)),
            ..ContainerState::default()
        },
    };
    let last_exit = match (c.state, will_restart) {
        // Waiting to restart: the run that just ended is the last state.
        (RunState::Exited(e), true) => Some(e),
        _ => c.last_exit,
    };
    ContainerStatus {
        name: c.name.clone(),
        state,
        last_state: last_exit
            .map(|e| ContainerState {
                terminated: Some(terminated(&e, &c.container_id)),
                ..ContainerState::default()
            })
            .unwrap_or_default(),
        ready: health.ready,
        restart_count: c.restart_count,
        image: c.image.clone(),
        image_id: String::new(),
        container_id: Some(c.container_id.clone()),
        started: Some(health.started),
    }
}

/// The status to report for `pod` as `have` shows it. Condition transition times are
/// kept from `previous` while a condition holds, so an unchanged pod yields an identical
/// status and nothing is resent.
pub fn pod_status(
    pod: &Pod,
    have: &ObservedPod,
    previous: Option<&PodStatus>,
    host_ip: Option<&str>,
    probes: &ProbeResults,
    now: DateTime<Utc>,
) -> PodStatus {
    let policy = policy(pod);
    let health = |c: &ObservedContainer| {
        let spec = pod.spec.containers.iter().find(|s| s.name == c.name);
        probes.health(&have.uid, spec, c)
    };
    let will_restart = |c: &ObservedContainer| match c.state {
        RunState::Exited(e) => restarts(policy, e.exit_code),
        RunState::Running { .. } | RunState::Waiting => false,
    };
    let init_completed =
        |c: &ObservedContainer| matches!(c.state, RunState::Exited(e) if e.exit_code == 0);
    let initialized = have.init_containers.iter().all(init_completed);
    // An init container that failed and will not run again (restartPolicy Never) fails
    // the pod.
    let init_failed = have.init_containers.iter().any(
        |c| matches!(c.state, RunState::Exited(e) if e.exit_code != 0 && !init_restarts(policy, e.exit_code)),
    );
    let containers: Vec<ContainerStatus> = have
        .containers
        .iter()
        .map(|c| container_status(c, will_restart(c), &health(c)))
        .collect();
    let init: Vec<ContainerStatus> = have
        .init_containers
        .iter()
        .map(|c| {
            // Init containers have no probes: running is started.
            let running = matches!(c.state, RunState::Running { .. });
            let health = Health {
                started: running,
                ready: running,
                kill: None,
            };
            let will_restart = match c.state {
                RunState::Exited(e) => init_restarts(policy, e.exit_code),
                _ => false,
            };
            container_status(c, will_restart, &health)
        })
        .collect();
    let any_active = have
        .containers
        .iter()
        .any(|c| matches!(c.state, RunState::Running { .. }) || will_restart(c));
    let waiting = |c: &ObservedContainer| c.state == RunState::Waiting;
    let phase = if init_failed {
        PodPhase::Failed
    } else if !initialized || (have.containers.iter().any(waiting) && !any_active) {
        PodPhase::Pending
    } else if have.containers.is_empty() || any_active || have.containers.iter().any(waiting) {
        PodPhase::Running
    } else if have
        .containers
        .iter()
        .all(|c| matches!(c.state, RunState::Exited(e) if e.exit_code == 0))
    {
        PodPhase::Succeeded
    } else {
        PodPhase::Failed
    };
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let since = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time)
            .unwrap_or_else(|| Time::from_datetime(now));
        PodCondition {
            type_: type_.to_string(),
            status,
            last_probe_time: None,
            last_transition_time: Some(since),
            reason: (!ok).then(|| reason.unwrap_or("").to_string()),
            message: None,
        }
    };
    let pod_ip = have.pod_ip.clone().or_else(|| host_ip.map(str::to_string));
    PodStatus {
        phase: Some(phase),
        conditions: vec![
            condition("PodScheduled", true, None),
            condition("Initialized", initialized, Some("ContainersNotInitialized")),
            condition("ContainersReady", all_ready, Some("ContainersNotReady")),
            condition("Ready", all_ready, Some("ContainersNotReady")),
        ],
        message: None,
        reason: None,
        host_ip: host_ip.map(str::to_string),
        pod_ips: pod_ip.iter().map(|ip| PodIp { ip: ip.clone() }).collect(),
        pod_ip,
        start_time: Some(Time::from_datetime(have.started_at)),
        init_container_statuses: init,
        container_statuses: containers,
        qos_class: Some(pod.spec.qos_class()),
    }
}
