//! Kubernetes defaulting: fills the fields a manifest may leave out with the values
//! Kubernetes would use, so stored objects are explicit and every consumer (scheduler,
//! controllers, agent) reads the same values.
//!
//! `apply_defaults` only fills what is unset, so it is idempotent and never overrides
//! what a user wrote.

use crate::LabelSelector;
use crate::Object;
use crate::resources::{
    Container, DaemonSetUpdateStrategy, DaemonSetUpdateStrategyType, DeploymentStrategy,
    DeploymentStrategyType, DnsPolicy, IntOrString, Job, NamespacePhase, NamespaceStatus, PodPhase,
    PodSpec, PodStatus, PodTemplateSpec, Probe, Protocol, PullPolicy, RestartPolicy, RollingUpdate,
    ServiceSpec, ServiceType, SessionAffinity, TerminationMessagePolicy, TolerationOperator,
    UriScheme,
};

const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;
const DEFAULT_SCHEDULER: &str = "default-scheduler";
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// The labels a job's generated selector uses (Kubernetes' spelling), keyed to the
/// job's UID so pods of a deleted and re-created job are never adopted.
pub(crate) const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub(crate) const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Fills unset fields with Kubernetes defaults. Idempotent.
///
/// Jobs: unless `manualSelector` is true, a job that has a UID and no selector gets
/// the generated selector (`batch.kubernetes.io/controller-uid`) and its template the
/// matching labels, as Kubernetes does at creation. The hub assigns the UID before
/// calling this on create.
pub fn apply_defaults(obj: &mut Object) {
    match obj {
        Object::Namespace(ns) => {
            let status = ns.status.get_or_insert_with(NamespaceStatus::default);
            status.phase.get_or_insert(NamespacePhase::Active);
        }
        Object::Node(node) => {
            if let Some(status) = node.status.as_mut()
                && status.allocatable.is_empty()
            {
                // Without a reservation, all capacity is allocatable.
                status.allocatable = status.capacity.clone();
            }
        }
        Object::Pod(pod) => {
            default_pod_spec(&mut pod.spec);
            let qos = pod.spec.qos_class();
            let status = pod.status.get_or_insert_with(PodStatus::default);
            status.phase.get_or_insert(PodPhase::Pending);
            status.qos_class.get_or_insert(qos);
        }
        Object::Deployment(d) => {
            let spec = &mut d.spec;
            spec.replicas.get_or_insert(1);
            let strategy = spec
                .strategy
                .get_or_insert_with(DeploymentStrategy::default);
            let type_ = *strategy
                .type_
                .get_or_insert(DeploymentStrategyType::RollingUpdate);
            if type_ == DeploymentStrategyType::RollingUpdate {
                let ru = strategy
                    .rolling_update
                    .get_or_insert_with(RollingUpdate::default);
                ru.max_unavailable
                    .get_or_insert_with(|| IntOrString::from("25%"));
                ru.max_surge.get_or_insert_with(|| IntOrString::from("25%"));
            }
            spec.revision_history_limit
                .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
            spec.progress_deadline_seconds
                .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
            default_template(&mut spec.template);
        }
        Object::ReplicaSet(rs) => {
            rs.spec.replicas.get_or_insert(1);
            default_template(&mut rs.spec.template);
        }
        Object::DaemonSet(ds) => {
            let spec = &mut ds.spec;
            let strategy = spec
                .update_strategy
                .get_or_insert_with(DaemonSetUpdateStrategy::default);
            let type_ = *strategy
                .type_
                .get_or_insert(DaemonSetUpdateStrategyType::RollingUpdate);
            if type_ == DaemonSetUpdateStrategyType::RollingUpdate {
                let ru = strategy
                    .rolling_update
                    .get_or_insert_with(RollingUpdate::default);
                ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                ru.max_surge.get_or_insert(IntOrString::Int(0));
            }
            spec.revision_history_limit
                .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
            default_template(&mut spec.template);
        }
        Object::Job(job) => default_job(job),
        Object::Service(svc) => default_service(&mut svc.spec),
        Object::Endpoints(ep) => {
            for port in ep.subsets.iter_mut().flat_map(|s| s.ports.iter_mut()) {
                port.protocol.get_or_insert(Protocol::Tcp);
            }
        }
        Object::ServiceAccount(_) | Object::Event(_) => {}
    }
}

fn default_job(job: &mut Job) {
    let spec = &mut job.spec;
    // Kubernetes: with neither set, one pod runs to one completion; a parallelism
    // without completions is a work queue and stays without completions.
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    spec.backoff_limit.get_or_insert(DEFAULT_BACKOFF_LIMIT);
    let uid = job.metadata.uid.as_ref().map(|u| u.0.clone());
    if let Some(uid) = uid
        && spec.manual_selector != Some(true)
        && spec.selector.is_none()
    {
        let labels = [
            (JOB_CONTROLLER_UID_LABEL, uid.as_str()),
            (JOB_NAME_LABEL, job.metadata.name.as_str()),
        ];
        let mut selector = LabelSelector::default();
        selector
            .match_labels
            .insert(JOB_CONTROLLER_UID_LABEL.to_string(), uid.clone());
        spec.selector = Some(selector);
        let template_labels = &mut spec.template.metadata.labels;
        for (k, v) in labels {
            template_labels
                .entry(k.to_string())
                .or_insert_with(|| v.to_string());
        }
    }
    default_template(&mut spec.template);
}

fn default_service(spec: &mut ServiceSpec) {
    spec.type_.get_or_insert(ServiceType::ClusterIp);
    spec.session_affinity.get_or_insert(SessionAffinity::None);
    for port in &mut spec.ports {
        port.protocol.get_or_insert(Protocol::Tcp);
        if port.target_port.is_none() {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(&mut template.spec);
}

fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert(RestartPolicy::Always);
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_SECONDS);
    spec.dns_policy.get_or_insert(DnsPolicy::ClusterFirst);
    spec.scheduler_name
        .get_or_insert_with(|| DEFAULT_SCHEDULER.to_string());
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        default_container(c);
    }
    for t in &mut spec.tolerations {
        t.operator.get_or_insert(TolerationOperator::Equal);
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy = Some(default_pull_policy(&c.image));
    }
    c.termination_message_path
        .get_or_insert_with(|| DEFAULT_TERMINATION_MESSAGE_PATH.to_string());
    c.termination_message_policy
        .get_or_insert(TerminationMessagePolicy::File);
    for p in &mut c.ports {
        p.protocol.get_or_insert(Protocol::Tcp);
    }
    // A limit without a request requests the limit.
    let limits = c.resources.limits.clone();
    for (name, limit) in limits {
        c.resources.requests.entry(name).or_insert(limit);
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
}

fn default_probe(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(http) = p.http_get.as_mut() {
        http.path.get_or_insert_with(|| "/".to_string());
        http.scheme.get_or_insert(UriScheme::Http);
    }
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`. A digest pins the
/// image, so it counts as tagged.
/// Kubernetes' default `imagePullPolicy` for an image reference: Always for `:latest` or
/// no tag, IfNotPresent for any other tag or a digest.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    // The tag follows the last ':' after the last '/', so a registry port
    // (`registry:5000/app`) is not mistaken for a tag.
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{
        ContainerPort, DaemonSet, Deployment, EndpointPort, EndpointSubset, Endpoints,
        HttpGetAction, Namespace, Node, NodeStatus, Pod, ReplicaSet, ResourceRequirements, Service,
        ServicePort, Toleration,
    };
    use crate::{Quantity, Uid};

    fn container(image: &str) -> Container {
        Container {
            name: "app".into(),
            image: image.into(),
            ..Container::default()
        }
    }

    fn defaulted(obj: impl Into<Object>) -> Object {
        let mut obj = obj.into();
        apply_defaults(&mut obj);
        let once = obj.clone();
        apply_defaults(&mut obj);
        assert_eq!(obj, once, "apply_defaults must be idempotent");
        obj
    }

    #[test]
    fn pull_policy_follows_tag() {
        let cases = [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("busybox:1.36", PullPolicy::IfNotPresent),
            ("registry:5000/app", PullPolicy::Always),
            ("registry:5000/app:v2", PullPolicy::IfNotPresent),
            ("registry:5000/app:latest", PullPolicy::Always),
            ("app@sha256:abcd", PullPolicy::IfNotPresent),
        ];
        for (image, want) in cases {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pod_defaults() {
        let mut c = container("nginx:1.25");
        c.ports.push(ContainerPort {
            container_port: 80,
            ..ContainerPort::default()
        });
        c.resources = ResourceRequirements {
            limits: [("memory".to_string(), Quantity::parse("64Mi").unwrap())].into(),
            requests: [("cpu".to_string(), Quantity::parse("100m").unwrap())].into(),
        };
        c.liveness_probe = Some(Box::new(Probe {
            http_get: Some(HttpGetAction {
                path: None,
                port: IntOrString::Int(80),
                host: None,
                scheme: None,
                http_headers: vec![],
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }));
        let mut pod = Pod::default();
        pod.spec.containers.push(c);
        pod.spec.init_containers.push(container("busybox"));
        pod.spec.tolerations.push(Toleration {
            key: "k".into(),
            ..Toleration::default()
        });
        let Object::Pod(pod) = defaulted(pod) else {
            unreachable!()
        };
        let s = &pod.spec;
        assert_eq!(s.restart_policy, Some(RestartPolicy::Always));
        assert_eq!(s.termination_grace_period_seconds, Some(30));
        assert_eq!(s.dns_policy, Some(DnsPolicy::ClusterFirst));
        assert_eq!(s.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(s.tolerations[0].operator, Some(TolerationOperator::Equal));
        let c = &s.containers[0];
        assert_eq!(c.image_pull_policy, Some(PullPolicy::IfNotPresent));
        assert_eq!(
            s.init_containers[0].image_pull_policy,
            Some(PullPolicy::Always)
        );
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(
            c.termination_message_policy,
            Some(TerminationMessagePolicy::File)
        );
        assert_eq!(c.ports[0].protocol, Some(Protocol::Tcp));
        assert_eq!(c.resources.requests["memory"].as_str(), "64Mi");
        assert_eq!(c.resources.requests["cpu"].as_str(), "100m");
        let probe = c.liveness_probe.as_ref().unwrap();
        assert_eq!(probe.period_seconds, Some(5), "explicit values are kept");
        assert_eq!(probe.timeout_seconds, Some(1));
        assert_eq!(probe.success_threshold, Some(1));
        assert_eq!(probe.failure_threshold, Some(3));
        let http = probe.http_get.as_ref().unwrap();
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.scheme, Some(UriScheme::Http));
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase, Some(PodPhase::Pending));
        assert_eq!(
            status.qos_class,
            Some(crate::resources::QosClass::Burstable)
        );
    }

    #[test]
    fn explicit_values_are_not_overridden() {
        let mut pod = Pod::default();
        pod.spec.restart_policy = Some(RestartPolicy::Never);
        pod.spec.termination_grace_period_seconds = Some(0);
        let mut c = container("busybox");
        c.image_pull_policy = Some(PullPolicy::Never);
        pod.spec.containers.push(c);
        pod.status = Some(PodStatus {
            phase: Some(PodPhase::Running),
            ..PodStatus::default()
        });
        let Object::Pod(pod) = defaulted(pod) else {
            unreachable!()
        };
        assert_eq!(pod.spec.restart_policy, Some(RestartPolicy::Never));
        assert_eq!(pod.spec.termination_grace_period_seconds, Some(0));
        assert_eq!(
            pod.spec.containers[0].image_pull_policy,
            Some(PullPolicy::Never)
        );
        assert_eq!(pod.status.unwrap().phase, Some(PodPhase::Running));
    }

    #[test]
    fn deployment_defaults() {
        let mut d = Deployment::default();
        d.spec.template.spec.containers.push(container("web:2"));
        let Object::Deployment(d) = defaulted(d) else {
            unreachable!()
        };
        assert_eq!(d.spec.replicas, Some(1));
        assert_eq!(d.spec.revision_history_limit, Some(10));
        assert_eq!(d.spec.progress_deadline_seconds, Some(600));
        let strategy = d.spec.strategy.unwrap();
        assert_eq!(strategy.type_, Some(DeploymentStrategyType::RollingUpdate));
        let ru = strategy.rolling_update.unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::from("25%")));
        assert_eq!(ru.max_unavailable, Some(IntOrString::from("25%")));
        assert_eq!(
            d.spec.template.spec.restart_policy,
            Some(RestartPolicy::Always)
        );

        // Recreate gets no rolling-update parameters; zero replicas stay zero.
        let mut d = Deployment::default();
        d.spec.replicas = Some(0);
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::Recreate),
            rolling_update: None,
        });
        let Object::Deployment(d) = defaulted(d) else {
            unreachable!()
        };
        assert_eq!(d.spec.replicas, Some(0));
        assert_eq!(d.spec.strategy.unwrap().rolling_update, None);
    }

    #[test]
    fn replicaset_and_daemonset_defaults() {
        let Object::ReplicaSet(rs) = defaulted(ReplicaSet::default()) else {
            unreachable!()
        };
        assert_eq!(rs.spec.replicas, Some(1));
        assert_eq!(
            rs.spec.template.spec.dns_policy,
            Some(DnsPolicy::ClusterFirst)
        );

        let Object::DaemonSet(ds) = defaulted(DaemonSet::default()) else {
            unreachable!()
        };
        let strategy = ds.spec.update_strategy.unwrap();
        assert_eq!(
            strategy.type_,
            Some(DaemonSetUpdateStrategyType::RollingUpdate)
        );
        let ru = strategy.rolling_update.unwrap();
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
        assert_eq!(ds.spec.revision_history_limit, Some(10));
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut job = Job::default();
        job.metadata.name = "backup".into();
        let Object::Job(plain) = defaulted(job.clone()) else {
            unreachable!()
        };
        assert_eq!(plain.spec.completions, Some(1));
        assert_eq!(plain.spec.parallelism, Some(1));
        assert_eq!(plain.spec.backoff_limit, Some(6));
        assert_eq!(plain.spec.selector, None, "no UID yet, no selector");

        job.metadata.uid = Some(Uid("u-1".into()));
        let Object::Job(with_uid) = defaulted(job.clone()) else {
            unreachable!()
        };
        let sel = with_uid.spec.selector.unwrap();
        assert_eq!(sel.match_labels[JOB_CONTROLLER_UID_LABEL], "u-1");
        let labels = &with_uid.spec.template.metadata.labels;
        assert_eq!(labels[JOB_CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(labels[JOB_NAME_LABEL], "backup");

        job.spec.manual_selector = Some(true);
        let Object::Job(manual) = defaulted(job.clone()) else {
            unreachable!()
        };
        assert_eq!(manual.spec.selector, None);

        // A work queue: parallelism without completions keeps completions unset.
        let mut queue = Job::default();
        queue.spec.parallelism = Some(3);
        let Object::Job(queue) = defaulted(queue) else {
            unreachable!()
        };
        assert_eq!(queue.spec.completions, None);
        assert_eq!(queue.spec.parallelism, Some(3));
    }

    #[test]
    fn service_defaults() {
        let mut svc = Service::default();
        svc.spec.ports.push(ServicePort {
            port: 80,
            ..ServicePort::default()
        });
        svc.spec.ports.push(ServicePort {
            port: 443,
            target_port: Some(IntOrString::from("https")),
            protocol: Some(Protocol::Udp),
            ..ServicePort::default()
        });
        let Object::Service(svc) = defaulted(svc) else {
            unreachable!()
        };
        assert_eq!(svc.spec.type_, Some(ServiceType::ClusterIp));
        assert_eq!(svc.spec.session_affinity, Some(SessionAffinity::None));
        assert_eq!(svc.spec.ports[0].protocol, Some(Protocol::Tcp));
        assert_eq!(svc.spec.ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(svc.spec.ports[1].protocol, Some(Protocol::Udp));
        assert_eq!(
            svc.spec.ports[1].target_port,
            Some(IntOrString::from("https"))
        );
    }

    #[test]
    fn namespace_node_endpoints_defaults() {
        let Object::Namespace(ns) = defaulted(Namespace::default()) else {
            unreachable!()
        };
        assert_eq!(ns.phase(), NamespacePhase::Active);
        assert_eq!(
            ns.status.as_ref().unwrap().phase,
            Some(NamespacePhase::Active)
        );

        let node = Node {
            status: Some(NodeStatus {
                capacity: [("cpu".to_string(), Quantity::parse("4").unwrap())].into(),
                ..NodeStatus::default()
            }),
            ..Node::default()
        };
        let Object::Node(node) = defaulted(node) else {
            unreachable!()
        };
        assert_eq!(node.status.unwrap().allocatable["cpu"].as_str(), "4");

        let ep = Endpoints {
            subsets: vec![EndpointSubset {
                ports: vec![EndpointPort {
                    port: 80,
                    ..EndpointPort::default()
                }],
                ..EndpointSubset::default()
            }],
            ..Endpoints::default()
        };
        let Object::Endpoints(ep) = defaulted(ep) else {
            unreachable!()
        };
        assert_eq!(ep.subsets[0].ports[0].protocol, Some(Protocol::Tcp));
    }
}
