//! One case per validation rule: each mutates a valid object and expects exactly the
//! error that rule reports.

use super::*;
use crate::resources::{
    ContainerPort, EmptyDirVolumeSource, EndpointAddress, EndpointPort, EndpointSubset, EnvVar,
    EnvVarSource, ExecAction, HostPathVolumeSource, HttpHeader, NamespaceSpec, ObjectFieldSelector,
    ObjectReference, Pod, PodAffinityTerm, PreferredSchedulingTerm, SecurityContext, ServicePort,
    Taint, TcpSocketAction, VolumeMount, WeightedPodAffinityTerm,
};
use crate::{OwnerReference, Uid, parse_manifests};

use FieldErrorKind::*;

fn parse_one(yaml: &str) -> Object {
    let mut objs = parse_manifests(yaml).unwrap();
    assert_eq!(objs.len(), 1);
    objs.remove(0)
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: app
    image: busybox:1.36
    ports:
    - {name: http, containerPort: 8080}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 500m, memory: 64Mi}
    volumeMounts:
    - {name: data, mountPath: /data}
    livenessProbe:
      httpGet: {port: http, path: /}
    readinessProbe:
      tcpSocket: {port: 8080}
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
    matchExpressions:
    - {key: tier, operator: In, values: [front, edge]}
  template:
    metadata:
      labels: {app: web, tier: front}
    spec:
      containers:
      - {name: app, image: web:1}
"#;

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: backup, namespace: default}
spec:
  template:
    metadata: {labels: {job: backup}}
    spec:
      restartPolicy: OnFailure
      containers:
      - {name: app, image: backup:1}
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: https, port: 443, targetPort: 8443}
"#;

fn pod() -> Pod {
    match parse_one(POD) {
        Object::Pod(p) => p,
        other => panic!("not a pod: {other:?}"),
    }
}

fn errors(obj: impl Into<Object>) -> Vec<FieldError> {
    match validate(&obj.into()) {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    }
}

struct Case<T> {
    name: &'static str,
    mutate: Box<dyn Fn(&mut T)>,
    path: &'static str,
    kind: FieldErrorKind,
    message: &'static str,
}

fn case<T>(
    name: &'static str,
    mutate: impl Fn(&mut T) + 'static,
    path: &'static str,
    kind: FieldErrorKind,
    message: &'static str,
) -> Case<T> {
    Case {
        name,
        mutate: Box::new(mutate),
        path,
        kind,
        message,
    }
}

/// Every case must produce exactly one error, with the expected path and kind and a
/// message containing the expected text.
fn run<T: Clone + Into<Object>>(base: &T, cases: Vec<Case<T>>) {
    assert_eq!(errors(base.clone()), [], "the base object must be valid");
    for c in cases {
        let mut obj = base.clone();
        (c.mutate)(&mut obj);
        let errs = errors(obj);
        assert_eq!(
            errs.len(),
            1,
            "{}: expected one error, got {errs:?}",
            c.name
        );
        let e = &errs[0];
        assert_eq!(e.path, c.path, "{}: {e}", c.name);
        assert_eq!(e.kind, c.kind, "{}: {e}", c.name);
        assert!(
            e.message.contains(c.message),
            "{}: {e:?} does not contain {:?}",
            c.name,
            c.message
        );
    }
}

fn c0(p: &mut Pod) -> &mut Container {
    &mut p.spec.containers[0]
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

#[test]
fn metadata_rules() {
    let long = "a".repeat(254);
    run(
        &pod(),
        vec![
            case(
                "name charset",
                |p: &mut Pod| p.metadata.name = "Web_1".into(),
                "metadata.name",
                Invalid,
                "Invalid value \"Web_1\": a lowercase RFC 1123 subdomain",
            ),
            case(
                "name too long",
                move |p: &mut Pod| p.metadata.name = long.clone(),
                "metadata.name",
                Invalid,
                "must be no more than 253 characters",
            ),
            case(
                "name required",
                |p: &mut Pod| p.metadata.name.clear(),
                "metadata.name",
                Required,
                "Required value: name or generateName is required",
            ),
            case(
                "generateName checked",
                |p: &mut Pod| {
                    p.metadata.name.clear();
                    p.metadata.generate_name = Some("Web-".into());
                },
                "metadata.generateName",
                Invalid,
                "RFC 1123 subdomain",
            ),
            case(
                "namespace is a label",
                |p: &mut Pod| p.metadata.namespace = Some("prod.eu".into()),
                "metadata.namespace",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "label key name part",
                |p: &mut Pod| {
                    p.metadata.labels.insert("-bad".into(), "x".into());
                },
                "metadata.labels",
                Invalid,
                "name part must consist of alphanumeric characters",
            ),
            case(
                "label key prefix",
                |p: &mut Pod| {
                    p.metadata
                        .labels
                        .insert("Example.com/app".into(), "x".into());
                },
                "metadata.labels",
                Invalid,
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            case(
                "label key empty prefix",
                |p: &mut Pod| {
                    p.metadata.labels.insert("/app".into(), "x".into());
                },
                "metadata.labels",
                Invalid,
                "prefix part must be non-empty",
            ),
            case(
                "label key two slashes",
                |p: &mut Pod| {
                    p.metadata.labels.insert("a/b/c".into(), "x".into());
                },
                "metadata.labels",
                Invalid,
                "a qualified name must consist of",
            ),
            case(
                "label key name too long",
                |p: &mut Pod| {
                    p.metadata.labels.insert("k".repeat(64), "x".into());
                },
                "metadata.labels",
                Invalid,
                "name part must be no more than 63 characters",
            ),
            case(
                "label value charset",
                |p: &mut Pod| {
                    p.metadata.labels.insert("app".into(), "a b".into());
                },
                "metadata.labels",
                Invalid,
                "Invalid value \"a b\": a valid label must be an empty string",
            ),
            case(
                "label value too long",
                |p: &mut Pod| {
                    p.metadata.labels.insert("app".into(), "v".repeat(64));
                },
                "metadata.labels",
                Invalid,
                "must be no more than 63 characters",
            ),
            case(
                "annotation key",
                |p: &mut Pod| {
                    p.metadata.annotations.insert("bad key".into(), "x".into());
                },
                "metadata.annotations",
                Invalid,
                "name part must consist",
            ),
            case(
                "annotations total size",
                |p: &mut Pod| {
                    p.metadata
                        .annotations
                        .insert("big".into(), "x".repeat(256 * 1024));
                },
                "metadata.annotations",
                TooLong,
                "Too long: may not be more than 262144 bytes",
            ),
            case(
                "finalizer name",
                |p: &mut Pod| p.metadata.finalizers.push("bad finalizer".into()),
                "metadata.finalizers[0]",
                Invalid,
                "name part",
            ),
            case(
                "owner reference fields",
                |p: &mut Pod| {
                    p.metadata.owner_references.push(OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-1".into(),
                        uid: Uid(String::new()),
                        ..OwnerReference::default()
                    })
                },
                "metadata.ownerReferences[0].uid",
                Required,
                "Required value",
            ),
            case(
                "one controller",
                |p: &mut Pod| {
                    for name in ["a", "b"] {
                        p.metadata.owner_references.push(OwnerReference {
                            api_version: "apps/v1".into(),
                            kind: "ReplicaSet".into(),
                            name: name.into(),
                            uid: Uid(name.into()),
                            controller: Some(true),
                            ..OwnerReference::default()
                        });
                    }
                },
                "metadata.ownerReferences",
                Invalid,
                "only one reference can have controller set to true",
            ),
        ],
    );
}

#[test]
fn metadata_acceptances() {
    let mut p = pod();
    p.metadata.name.clear();
    p.metadata.generate_name = Some("web-".into());
    p.metadata
        .labels
        .insert("app.kubernetes.io/name".into(), "Web_1.x".into());
    p.metadata.labels.insert("empty".into(), String::new());
    p.metadata.namespace = None;
    p.metadata
        .annotations
        .insert("Example.COM/Note".into(), "free text: ok".into());
    assert_eq!(errors(p), []);
}

#[test]
fn names_and_scope_by_kind() {
    let ns = parse_one("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod.eu}\n");
    let errs = errors(ns);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "metadata.name");
    assert!(errs[0].message.contains("RFC 1123 label"));

    let node = parse_one(
        "apiVersion: v1\nkind: Node\nmetadata: {name: edge-1.site-a, namespace: default}\n",
    );
    let errs = errors(node);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "metadata.namespace");
    assert_eq!(errs[0].kind, Forbidden);

    let mut svc = parse_one(SERVICE);
    svc.meta_mut().name = "web.v2".into();
    let errs = errors(svc);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "metadata.name");

    let long_label = "a".repeat(64);
    let ns = parse_one(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {long_label}}}\n"
    ));
    assert!(errors(ns)[0].message.contains("no more than 63 characters"));

    let sa = parse_one("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot.ci}\n");
    assert_eq!(errors(sa), []);
}

#[test]
fn container_rules() {
    run(
        &pod(),
        vec![
            case(
                "containers required",
                |p: &mut Pod| p.spec.containers.clear(),
                "spec.containers",
                Required,
                "Required value",
            ),
            case(
                "container name required",
                |p: &mut Pod| c0(p).name.clear(),
                "spec.containers[0].name",
                Required,
                "Required value",
            ),
            case(
                "container name is a label",
                |p: &mut Pod| c0(p).name = "App".into(),
                "spec.containers[0].name",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "container names unique across init containers",
                |p: &mut Pod| {
                    p.spec.init_containers.push(Container {
                        name: "app".into(),
                        image: "busybox".into(),
                        ..Container::default()
                    })
                },
                "spec.containers[0].name",
                Duplicate,
                "Duplicate value \"app\"",
            ),
            case(
                "image required",
                |p: &mut Pod| c0(p).image.clear(),
                "spec.containers[0].image",
                Required,
                "Required value",
            ),
            case(
                "image whitespace",
                |p: &mut Pod| c0(p).image = " busybox".into(),
                "spec.containers[0].image",
                Invalid,
                "leading or trailing whitespace",
            ),
            case(
                "containerPort range",
                |p: &mut Pod| c0(p).ports[0].container_port = 0,
                "spec.containers[0].ports[0].containerPort",
                Invalid,
                "Invalid value 0: must be between 1 and 65535, inclusive",
            ),
            case(
                "containerPort upper bound",
                |p: &mut Pod| c0(p).ports[0].container_port = 65536,
                "spec.containers[0].ports[0].containerPort",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "hostPort range",
                |p: &mut Pod| c0(p).ports[0].host_port = 70000,
                "spec.containers[0].ports[0].hostPort",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "hostPort equals containerPort on the host network",
                |p: &mut Pod| {
                    p.spec.host_network = true;
                    c0(p).ports[0].host_port = 80;
                },
                "spec.containers[0].ports[0].hostPort",
                Invalid,
                "must match `containerPort`",
            ),
            case(
                "port name",
                |p: &mut Pod| c0(p).ports[0].name = Some("web_ui".into()),
                "spec.containers[0].ports[0].name",
                Invalid,
                "alpha-numeric",
            ),
            case(
                "port name needs a letter",
                |p: &mut Pod| c0(p).ports[0].name = Some("8080".into()),
                "spec.containers[0].ports[0].name",
                Invalid,
                "at least one letter",
            ),
            case(
                "port names unique",
                |p: &mut Pod| {
                    c0(p).ports.push(ContainerPort {
                        name: Some("http".into()),
                        container_port: 9090,
                        ..ContainerPort::default()
                    })
                },
                "spec.containers[0].ports[1].name",
                Duplicate,
                "Duplicate value \"http\"",
            ),
            case(
                "containerPort and protocol unique",
                |p: &mut Pod| {
                    c0(p).ports.push(ContainerPort {
                        container_port: 8080,
                        protocol: Some(Protocol::Tcp),
                        ..ContainerPort::default()
                    })
                },
                "spec.containers[0].ports[1]",
                Duplicate,
                "Duplicate value \"8080/TCP\"",
            ),
            case(
                "hostIP",
                |p: &mut Pod| c0(p).ports[0].host_ip = Some("300.1.1.1".into()),
                "spec.containers[0].ports[0].hostIP",
                Invalid,
                "valid IP address",
            ),
            case(
                "env name required",
                |p: &mut Pod| c0(p).env.push(EnvVar::default()),
                "spec.containers[0].env[0].name",
                Required,
                "Required value",
            ),
            case(
                "env name without '='",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A=B".into(),
                        ..EnvVar::default()
                    })
                },
                "spec.containers[0].env[0].name",
                Invalid,
                "other than '='",
            ),
            case(
                "env value and valueFrom",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A".into(),
                        value: Some("x".into()),
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: "metadata.name".into(),
                            }),
                        }),
                    })
                },
                "spec.containers[0].env[0].valueFrom",
                Invalid,
                "may not be specified when `value` is not empty",
            ),
            case(
                "env valueFrom needs fieldRef",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A".into(),
                        value: None,
                        value_from: Some(EnvVarSource::default()),
                    })
                },
                "spec.containers[0].env[0].valueFrom.fieldRef",
                Required,
                "Required value",
            ),
            case(
                "env fieldPath supported",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: "spec.containers".into(),
                            }),
                        }),
                    })
                },
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
                NotSupported,
                "Unsupported value \"spec.containers\": supported values: \"metadata.name\"",
            ),
            case(
                "env fieldPath required",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector::default()),
                        }),
                    })
                },
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
                Required,
                "Required value",
            ),
            case(
                "env fieldRef apiVersion",
                |p: &mut Pod| {
                    c0(p).env.push(EnvVar {
                        name: "A".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v2".into()),
                                field_path: "metadata.labels['app']".into(),
                            }),
                        }),
                    })
                },
                "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion",
                NotSupported,
                "\"v2\"",
            ),
            case(
                "resource name",
                |p: &mut Pod| {
                    c0(p).resources.limits.insert("gpu".into(), q("1"));
                },
                "spec.containers[0].resources.limits[gpu]",
                Invalid,
                "domain-prefixed extended resource",
            ),
            case(
                "quantity non-negative",
                |p: &mut Pod| {
                    c0(p).resources.requests.insert("memory".into(), q("-1Mi"));
                },
                "spec.containers[0].resources.requests[memory]",
                Invalid,
                "Invalid value \"-1Mi\": must be greater than or equal to 0",
            ),
            case(
                "requests at most limits",
                |p: &mut Pod| {
                    c0(p).resources.requests.insert("cpu".into(), q("1"));
                },
                "spec.containers[0].resources.requests[cpu]",
                Invalid,
                "Invalid value \"1\": must be less than or equal to cpu limit of 500m",
            ),
            case(
                "mount refers to a volume",
                |p: &mut Pod| c0(p).volume_mounts[0].name = "cache".into(),
                "spec.containers[0].volumeMounts[0].name",
                NotFound,
                "Not found \"cache\"",
            ),
            case(
                "mount name required",
                |p: &mut Pod| c0(p).volume_mounts[0].name.clear(),
                "spec.containers[0].volumeMounts[0].name",
                Required,
                "Required value",
            ),
            case(
                "mountPath absolute",
                |p: &mut Pod| c0(p).volume_mounts[0].mount_path = "data".into(),
                "spec.containers[0].volumeMounts[0].mountPath",
                Invalid,
                "must be an absolute path",
            ),
            case(
                "mountPath required",
                |p: &mut Pod| c0(p).volume_mounts[0].mount_path.clear(),
                "spec.containers[0].volumeMounts[0].mountPath",
                Required,
                "Required value",
            ),
            case(
                "mountPath unique",
                |p: &mut Pod| {
                    c0(p).volume_mounts.push(VolumeMount {
                        name: "data".into(),
                        mount_path: "/data".into(),
                        ..VolumeMount::default()
                    })
                },
                "spec.containers[0].volumeMounts[1].mountPath",
                Invalid,
                "must be unique",
            ),
            case(
                "subPath relative",
                |p: &mut Pod| c0(p).volume_mounts[0].sub_path = Some("/etc".into()),
                "spec.containers[0].volumeMounts[0].subPath",
                Invalid,
                "must be a relative path",
            ),
            case(
                "subPath without ..",
                |p: &mut Pod| c0(p).volume_mounts[0].sub_path = Some("a/../../etc".into()),
                "spec.containers[0].volumeMounts[0].subPath",
                Invalid,
                "must not contain '..'",
            ),
            case(
                "privileged without escalation",
                |p: &mut Pod| {
                    c0(p).security_context = Some(SecurityContext {
                        privileged: Some(true),
                        allow_privilege_escalation: Some(false),
                        ..SecurityContext::default()
                    })
                },
                "spec.containers[0].securityContext.allowPrivilegeEscalation",
                Invalid,
                "privileged to true",
            ),
            case(
                "runAsUser range",
                |p: &mut Pod| {
                    c0(p).security_context = Some(SecurityContext {
                        run_as_user: Some(-1),
                        ..SecurityContext::default()
                    })
                },
                "spec.containers[0].securityContext.runAsUser",
                Invalid,
                "between 0 and 2147483647",
            ),
            case(
                "runAsGroup range",
                |p: &mut Pod| {
                    c0(p).security_context = Some(SecurityContext {
                        run_as_group: Some(1 << 40),
                        ..SecurityContext::default()
                    })
                },
                "spec.containers[0].securityContext.runAsGroup",
                Invalid,
                "between 0 and 2147483647",
            ),
            case(
                "runAsNonRoot with root",
                |p: &mut Pod| {
                    c0(p).security_context = Some(SecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(0),
                        ..SecurityContext::default()
                    })
                },
                "spec.containers[0].securityContext.runAsUser",
                Invalid,
                "may not be 0 when `runAsNonRoot` is true",
            ),
        ],
    );
}

#[test]
fn container_acceptances() {
    let mut p = pod();
    let c = c0(&mut p);
    c.resources.limits.insert("example.com/gpu".into(), q("1"));
    c.resources.requests.insert("cpu".into(), q("0.5"));
    c.env.push(EnvVar {
        name: "APP".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: "metadata.labels['app.kubernetes.io/name']".into(),
            }),
        }),
    });
    c.ports.push(ContainerPort {
        container_port: 8080,
        protocol: Some(Protocol::Udp),
        ..ContainerPort::default()
    });
    c.volume_mounts[0].sub_path = Some("logs/app".into());
    assert_eq!(errors(p), []);
}

#[test]
fn volume_rules() {
    run(
        &pod(),
        vec![
            case(
                "volume names unique",
                |p: &mut Pod| {
                    p.spec.volumes.push(Volume {
                        name: "data".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        host_path: None,
                    })
                },
                "spec.volumes[1].name",
                Duplicate,
                "Duplicate value \"data\"",
            ),
            case(
                "volume name is a label",
                |p: &mut Pod| {
                    p.spec.volumes.push(Volume {
                        name: "Cache".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        host_path: None,
                    })
                },
                "spec.volumes[1].name",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "volume name required",
                |p: &mut Pod| {
                    p.spec.volumes.push(Volume {
                        name: String::new(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        host_path: None,
                    })
                },
                "spec.volumes[1].name",
                Required,
                "Required value",
            ),
            case(
                "volume needs a source",
                |p: &mut Pod| p.spec.volumes[0].empty_dir = None,
                "spec.volumes[0]",
                Required,
                "must specify a volume type",
            ),
            case(
                "volume has one source",
                |p: &mut Pod| {
                    p.spec.volumes[0].host_path = Some(HostPathVolumeSource {
                        path: "/srv".into(),
                        type_: None,
                    })
                },
                "spec.volumes[0]",
                Forbidden,
                "may not specify more than 1 volume type",
            ),
            case(
                "hostPath absolute",
                |p: &mut Pod| {
                    p.spec.volumes[0].empty_dir = None;
                    p.spec.volumes[0].host_path = Some(HostPathVolumeSource {
                        path: "srv/data".into(),
                        type_: None,
                    });
                },
                "spec.volumes[0].hostPath.path",
                Invalid,
                "must be an absolute path",
            ),
            case(
                "hostPath required",
                |p: &mut Pod| {
                    p.spec.volumes[0].empty_dir = None;
                    p.spec.volumes[0].host_path = Some(HostPathVolumeSource::default());
                },
                "spec.volumes[0].hostPath.path",
                Required,
                "Required value",
            ),
            case(
                "sizeLimit non-negative",
                |p: &mut Pod| {
                    p.spec.volumes[0].empty_dir = Some(EmptyDirVolumeSource {
                        medium: None,
                        size_limit: Some(q("-1Gi")),
                    })
                },
                "spec.volumes[0].emptyDir.sizeLimit",
                Invalid,
                "greater than or equal to 0",
            ),
        ],
    );
}

fn liveness(p: &mut Pod) -> &mut Probe {
    c0(p).liveness_probe.as_mut().unwrap()
}

fn readiness(p: &mut Pod) -> &mut Probe {
    c0(p).readiness_probe.as_mut().unwrap()
}

#[test]
fn probe_rules() {
    run(
        &pod(),
        vec![
            case(
                "handler required",
                |p: &mut Pod| liveness(p).http_get = None,
                "spec.containers[0].livenessProbe",
                Required,
                "must specify a handler type",
            ),
            case(
                "one handler",
                |p: &mut Pod| {
                    liveness(p).tcp_socket = Some(TcpSocketAction {
                        port: IntOrString::Int(80),
                        host: None,
                    })
                },
                "spec.containers[0].livenessProbe",
                Forbidden,
                "may not specify more than 1 handler type",
            ),
            case(
                "exec command required",
                |p: &mut Pod| {
                    let l = liveness(p);
                    l.http_get = None;
                    l.exec = Some(ExecAction::default());
                },
                "spec.containers[0].livenessProbe.exec.command",
                Required,
                "Required value",
            ),
            case(
                "httpGet port number",
                |p: &mut Pod| liveness(p).http_get.as_mut().unwrap().port = IntOrString::Int(0),
                "spec.containers[0].livenessProbe.httpGet.port",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "httpGet port name",
                |p: &mut Pod| {
                    liveness(p).http_get.as_mut().unwrap().port =
                        IntOrString::from("a-very-long-port-name")
                },
                "spec.containers[0].livenessProbe.httpGet.port",
                Invalid,
                "no more than 15 characters",
            ),
            case(
                "httpGet header name",
                |p: &mut Pod| {
                    liveness(p)
                        .http_get
                        .as_mut()
                        .unwrap()
                        .http_headers
                        .push(HttpHeader {
                            name: "Bad Header".into(),
                            value: "x".into(),
                        })
                },
                "spec.containers[0].livenessProbe.httpGet.httpHeaders[0].name",
                Invalid,
                "valid HTTP header",
            ),
            case(
                "tcpSocket port",
                |p: &mut Pod| readiness(p).tcp_socket.as_mut().unwrap().port = IntOrString::Int(-1),
                "spec.containers[0].readinessProbe.tcpSocket.port",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "periodSeconds",
                |p: &mut Pod| liveness(p).period_seconds = Some(0),
                "spec.containers[0].livenessProbe.periodSeconds",
                Invalid,
                "Invalid value 0: must be greater than or equal to 1",
            ),
            case(
                "timeoutSeconds",
                |p: &mut Pod| liveness(p).timeout_seconds = Some(0),
                "spec.containers[0].livenessProbe.timeoutSeconds",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "failureThreshold",
                |p: &mut Pod| readiness(p).failure_threshold = Some(0),
                "spec.containers[0].readinessProbe.failureThreshold",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "successThreshold",
                |p: &mut Pod| readiness(p).success_threshold = Some(0),
                "spec.containers[0].readinessProbe.successThreshold",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "initialDelaySeconds",
                |p: &mut Pod| liveness(p).initial_delay_seconds = Some(-1),
                "spec.containers[0].livenessProbe.initialDelaySeconds",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "liveness successThreshold is 1",
                |p: &mut Pod| liveness(p).success_threshold = Some(2),
                "spec.containers[0].livenessProbe.successThreshold",
                Invalid,
                "must be 1 for liveness and startup probes",
            ),
            case(
                "startup successThreshold is 1",
                |p: &mut Pod| {
                    c0(p).startup_probe = Some(Box::new(Probe {
                        tcp_socket: Some(TcpSocketAction {
                            port: IntOrString::Int(8080),
                            host: None,
                        }),
                        success_threshold: Some(3),
                        ..Probe::default()
                    }))
                },
                "spec.containers[0].startupProbe.successThreshold",
                Invalid,
                "must be 1",
            ),
            case(
                "readiness has no grace period",
                |p: &mut Pod| readiness(p).termination_grace_period_seconds = Some(5),
                "spec.containers[0].readinessProbe.terminationGracePeriodSeconds",
                Forbidden,
                "may not be set for readiness probes",
            ),
            case(
                "liveness grace period positive",
                |p: &mut Pod| liveness(p).termination_grace_period_seconds = Some(0),
                "spec.containers[0].livenessProbe.terminationGracePeriodSeconds",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "no probes on init containers",
                |p: &mut Pod| {
                    let mut init = Container {
                        name: "init".into(),
                        image: "busybox".into(),
                        ..Container::default()
                    };
                    init.readiness_probe = c0(p).readiness_probe.clone();
                    p.spec.init_containers.push(init);
                },
                "spec.initContainers[0].readinessProbe",
                Forbidden,
                "may not be set for init containers",
            ),
        ],
    );
    let mut p = pod();
    readiness(&mut p).success_threshold = Some(3);
    assert_eq!(errors(p), [], "readiness may need several successes");
}

#[test]
fn pod_level_rules() {
    run(
        &pod(),
        vec![
            case(
                "terminationGracePeriodSeconds",
                |p: &mut Pod| p.spec.termination_grace_period_seconds = Some(-1),
                "spec.terminationGracePeriodSeconds",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "activeDeadlineSeconds",
                |p: &mut Pod| p.spec.active_deadline_seconds = Some(0),
                "spec.activeDeadlineSeconds",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "nodeSelector key",
                |p: &mut Pod| {
                    p.spec.node_selector.insert("bad key".into(), "x".into());
                },
                "spec.nodeSelector",
                Invalid,
                "name part",
            ),
            case(
                "nodeSelector value",
                |p: &mut Pod| {
                    p.spec.node_selector.insert("zone".into(), "-x".into());
                },
                "spec.nodeSelector",
                Invalid,
                "a valid label",
            ),
            case(
                "nodeName",
                |p: &mut Pod| p.spec.node_name = Some("Edge_1".into()),
                "spec.nodeName",
                Invalid,
                "RFC 1123 subdomain",
            ),
            case(
                "serviceAccountName",
                |p: &mut Pod| p.spec.service_account_name = Some("Robot".into()),
                "spec.serviceAccountName",
                Invalid,
                "RFC 1123 subdomain",
            ),
            case(
                "hostname",
                |p: &mut Pod| p.spec.hostname = Some("web.1".into()),
                "spec.hostname",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "subdomain",
                |p: &mut Pod| p.spec.subdomain = Some("-x".into()),
                "spec.subdomain",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "toleration Exists has no value",
                |p: &mut Pod| {
                    p.spec.tolerations.push(Toleration {
                        key: "k".into(),
                        operator: Some(TolerationOperator::Exists),
                        value: "v".into(),
                        ..Toleration::default()
                    })
                },
                "spec.tolerations[0].value",
                Invalid,
                "value must be empty when `operator` is 'Exists'",
            ),
            case(
                "toleration empty key needs Exists",
                |p: &mut Pod| {
                    p.spec.tolerations.push(Toleration {
                        operator: Some(TolerationOperator::Equal),
                        ..Toleration::default()
                    })
                },
                "spec.tolerations[0].operator",
                Invalid,
                "operator must be Exists when `key` is empty",
            ),
            case(
                "toleration empty key, unset operator",
                |p: &mut Pod| p.spec.tolerations.push(Toleration::default()),
                "spec.tolerations[0].operator",
                Invalid,
                "Invalid value \"Equal\"",
            ),
            case(
                "tolerationSeconds needs NoExecute",
                |p: &mut Pod| {
                    p.spec.tolerations.push(Toleration {
                        key: "k".into(),
                        operator: Some(TolerationOperator::Exists),
                        effect: Some(TaintEffect::NoSchedule),
                        toleration_seconds: Some(30),
                        ..Toleration::default()
                    })
                },
                "spec.tolerations[0].effect",
                Invalid,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ),
            case(
                "toleration key",
                |p: &mut Pod| {
                    p.spec.tolerations.push(Toleration {
                        key: "bad key".into(),
                        operator: Some(TolerationOperator::Exists),
                        ..Toleration::default()
                    })
                },
                "spec.tolerations[0].key",
                Invalid,
                "name part",
            ),
            case(
                "toleration value",
                |p: &mut Pod| {
                    p.spec.tolerations.push(Toleration {
                        key: "k".into(),
                        value: "a b".into(),
                        ..Toleration::default()
                    })
                },
                "spec.tolerations[0].value",
                Invalid,
                "a valid label",
            ),
        ],
    );
}

#[test]
fn restart_policy_by_owner() {
    let mut p = pod();
    p.spec.restart_policy = Some(RestartPolicy::Never);
    assert_eq!(errors(p), [], "a bare pod may use any policy");

    let mut job = parse_one(JOB);
    let Object::Job(j) = &mut job else {
        unreachable!()
    };
    j.spec.template.spec.restart_policy = None;
    let errs = errors(job.clone());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "spec.template.spec.restartPolicy");
    assert_eq!(errs[0].kind, NotSupported);
    assert_eq!(
        errs[0].message,
        "Unsupported value \"Always\": supported values: \"OnFailure\", \"Never\""
    );

    let mut d = parse_one(DEPLOYMENT);
    let Object::Deployment(dep) = &mut d else {
        unreachable!()
    };
    dep.spec.template.spec.restart_policy = Some(RestartPolicy::OnFailure);
    let errs = errors(d);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "spec.template.spec.restartPolicy");
    assert_eq!(
        errs[0].message,
        "Unsupported value \"OnFailure\": supported values: \"Always\""
    );
}

fn node_term(p: &mut Pod) -> &mut NodeSelectorTerm {
    let affinity = p.spec.affinity.get_or_insert_with(Default::default);
    let na = affinity.node_affinity.get_or_insert_with(Default::default);
    let ns = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Default::default);
    if ns.node_selector_terms.is_empty() {
        ns.node_selector_terms.push(NodeSelectorTerm::default());
    }
    &mut ns.node_selector_terms[0]
}

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn label_req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn anti_term(p: &mut Pod) -> &mut PodAffinityTerm {
    let affinity = p.spec.affinity.get_or_insert_with(Default::default);
    let anti = affinity
        .pod_anti_affinity
        .get_or_insert_with(Default::default);
    anti.required_during_scheduling_ignored_during_execution
        .push(PodAffinityTerm {
            topology_key: "kubernetes.io/hostname".into(),
            ..PodAffinityTerm::default()
        });
    anti.required_during_scheduling_ignored_during_execution
        .last_mut()
        .unwrap()
}

#[test]
fn affinity_rules() {
    run(
        &pod(),
        vec![
            case(
                "node selector terms required",
                |p: &mut Pod| {
                    node_term(p);
                    p.spec
                        .affinity
                        .as_mut()
                        .unwrap()
                        .node_affinity
                        .as_mut()
                        .unwrap()
                        .required_during_scheduling_ignored_during_execution
                        .as_mut()
                        .unwrap()
                        .node_selector_terms
                        .clear();
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
                Required,
                "at least one node selector term",
            ),
            case(
                "operator name",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("zone", "Near", &["a"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator",
                NotSupported,
                "Unsupported value \"Near\": supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\", \"Gt\", \"Lt\"",
            ),
            case(
                "In needs values",
                |p: &mut Pod| node_term(p).match_expressions.push(req("zone", "In", &[])),
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
                Required,
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            case(
                "NotIn needs values",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("zone", "NotIn", &[]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
                Required,
                "'In' or 'NotIn'",
            ),
            case(
                "Exists has no values",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("zone", "Exists", &["a"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
                Forbidden,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            case(
                "DoesNotExist has no values",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("zone", "DoesNotExist", &["a"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
                Forbidden,
                "'Exists' or 'DoesNotExist'",
            ),
            case(
                "Gt has one value",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("cores", "Gt", &["1", "2"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values",
                Required,
                "single value when `operator` is 'Lt' or 'Gt'",
            ),
            case(
                "Lt value is an integer",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("cores", "Lt", &["four"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]",
                Invalid,
                "must be an integer",
            ),
            case(
                "expression key",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("bad key", "Exists", &[]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key",
                Invalid,
                "name part",
            ),
            case(
                "expression value",
                |p: &mut Pod| {
                    node_term(p)
                        .match_expressions
                        .push(req("zone", "In", &["a b"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]",
                Invalid,
                "a valid label",
            ),
            case(
                "matchFields key",
                |p: &mut Pod| {
                    node_term(p)
                        .match_fields
                        .push(req("metadata.uid", "In", &["x"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key",
                NotSupported,
                "supported values: \"metadata.name\"",
            ),
            case(
                "matchFields operator",
                |p: &mut Pod| {
                    node_term(p)
                        .match_fields
                        .push(req("metadata.name", "Exists", &[]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].operator",
                NotSupported,
                "supported values: \"In\", \"NotIn\"",
            ),
            case(
                "matchFields one value",
                |p: &mut Pod| {
                    node_term(p)
                        .match_fields
                        .push(req("metadata.name", "In", &["a", "b"]))
                },
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values",
                Required,
                "only one value",
            ),
            case(
                "preferred weight low",
                |p: &mut Pod| {
                    let a = p.spec.affinity.get_or_insert_with(Default::default);
                    let na = a.node_affinity.get_or_insert_with(Default::default);
                    na.preferred_during_scheduling_ignored_during_execution
                        .push(PreferredSchedulingTerm {
                            weight: 0,
                            preference: NodeSelectorTerm {
                                match_expressions: vec![req("zone", "In", &["a"])],
                                match_fields: vec![],
                            },
                        });
                },
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
                Invalid,
                "Invalid value 0: must be in the range 1-100",
            ),
            case(
                "preferred term checked",
                |p: &mut Pod| {
                    let a = p.spec.affinity.get_or_insert_with(Default::default);
                    let na = a.node_affinity.get_or_insert_with(Default::default);
                    na.preferred_during_scheduling_ignored_during_execution
                        .push(PreferredSchedulingTerm {
                            weight: 10,
                            preference: NodeSelectorTerm {
                                match_expressions: vec![req("zone", "In", &[])],
                                match_fields: vec![],
                            },
                        });
                },
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].values",
                Required,
                "'In' or 'NotIn'",
            ),
            case(
                "topologyKey required",
                |p: &mut Pod| anti_term(p).topology_key.clear(),
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
                Required,
                "can not be empty",
            ),
            case(
                "topologyKey is a qualified name",
                |p: &mut Pod| anti_term(p).topology_key = "bad key".into(),
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
                Invalid,
                "name part",
            ),
            case(
                "pod affinity selector operators",
                |p: &mut Pod| {
                    anti_term(p).label_selector = Some(LabelSelector {
                        match_labels: Default::default(),
                        match_expressions: vec![label_req("tier", "Gt", &["1"])],
                    })
                },
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator",
                NotSupported,
                "supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
            ),
            case(
                "pod affinity namespace selector",
                |p: &mut Pod| {
                    anti_term(p).namespace_selector = Some(LabelSelector {
                        match_labels: [("env".to_string(), "a b".to_string())].into(),
                        match_expressions: vec![],
                    })
                },
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaceSelector.matchLabels",
                Invalid,
                "a valid label",
            ),
            case(
                "pod affinity namespaces",
                |p: &mut Pod| anti_term(p).namespaces.push("Prod".into()),
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaces[0]",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "pod affinity weight",
                |p: &mut Pod| {
                    let a = p.spec.affinity.get_or_insert_with(Default::default);
                    let pa = a.pod_affinity.get_or_insert_with(Default::default);
                    pa.preferred_during_scheduling_ignored_during_execution
                        .push(WeightedPodAffinityTerm {
                            weight: 101,
                            pod_affinity_term: PodAffinityTerm {
                                topology_key: "zone".into(),
                                ..PodAffinityTerm::default()
                            },
                        });
                },
                "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
                Invalid,
                "Invalid value 101: must be in the range 1-100",
            ),
        ],
    );

    let mut p = pod();
    node_term(&mut p).match_expressions.extend([
        req("kubernetes.io/arch", "In", &["arm64"]),
        req("cores", "Gt", &["2"]),
        req("legacy", "DoesNotExist", &[]),
    ]);
    node_term(&mut p)
        .match_fields
        .push(req("metadata.name", "NotIn", &["edge-9"]));
    anti_term(&mut p).label_selector = Some(LabelSelector {
        match_labels: [("app".to_string(), "web".to_string())].into(),
        match_expressions: vec![label_req("tier", "Exists", &[])],
    });
    assert_eq!(errors(p), []);
}

fn deployment() -> Deployment {
    match parse_one(DEPLOYMENT) {
        Object::Deployment(d) => d,
        other => panic!("not a deployment: {other:?}"),
    }
}

fn ru(d: &mut Deployment) -> &mut crate::resources::RollingUpdate {
    d.spec
        .strategy
        .get_or_insert_with(Default::default)
        .rolling_update
        .get_or_insert_with(Default::default)
}

#[test]
fn deployment_rules() {
    run(
        &deployment(),
        vec![
            case(
                "selector required",
                |d: &mut Deployment| d.spec.selector = None,
                "spec.selector",
                Required,
                "Required value",
            ),
            case(
                "selector non-empty",
                |d: &mut Deployment| d.spec.selector = Some(LabelSelector::default()),
                "spec.selector",
                Invalid,
                "empty selector is invalid for deployment",
            ),
            case(
                "selector matches template (labels)",
                |d: &mut Deployment| {
                    d.spec
                        .template
                        .metadata
                        .labels
                        .insert("app".into(), "api".into());
                },
                "spec.template.metadata.labels",
                Invalid,
                "`selector` does not match template `labels`",
            ),
            case(
                "selector matches template (expressions)",
                |d: &mut Deployment| {
                    d.spec
                        .template
                        .metadata
                        .labels
                        .insert("tier".into(), "back".into());
                },
                "spec.template.metadata.labels",
                Invalid,
                "Invalid value \"app=web,tier=back\"",
            ),
            case(
                "selector content",
                |d: &mut Deployment| {
                    d.spec
                        .selector
                        .as_mut()
                        .unwrap()
                        .match_expressions
                        .push(label_req("legacy", "Exists", &["x"]))
                },
                "spec.selector.matchExpressions[1].values",
                Forbidden,
                "'Exists' or 'DoesNotExist'",
            ),
            case(
                "template labels",
                |d: &mut Deployment| {
                    d.spec
                        .template
                        .metadata
                        .annotations
                        .insert("bad key".into(), "x".into());
                },
                "spec.template.metadata.annotations",
                Invalid,
                "name part",
            ),
            case(
                "template pod spec",
                |d: &mut Deployment| d.spec.template.spec.containers[0].image.clear(),
                "spec.template.spec.containers[0].image",
                Required,
                "Required value",
            ),
            case(
                "replicas",
                |d: &mut Deployment| d.spec.replicas = Some(-1),
                "spec.replicas",
                Invalid,
                "Invalid value -1: must be greater than or equal to 0",
            ),
            case(
                "minReadySeconds",
                |d: &mut Deployment| d.spec.min_ready_seconds = -1,
                "spec.minReadySeconds",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "revisionHistoryLimit",
                |d: &mut Deployment| d.spec.revision_history_limit = Some(-1),
                "spec.revisionHistoryLimit",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "progressDeadlineSeconds",
                |d: &mut Deployment| {
                    d.spec.min_ready_seconds = 30;
                    d.spec.progress_deadline_seconds = Some(30);
                },
                "spec.progressDeadlineSeconds",
                Invalid,
                "must be greater than minReadySeconds",
            ),
            case(
                "Recreate has no rollingUpdate",
                |d: &mut Deployment| {
                    ru(d).max_surge = Some(IntOrString::Int(1));
                    d.spec.strategy.as_mut().unwrap().type_ =
                        Some(DeploymentStrategyType::Recreate);
                },
                "spec.strategy.rollingUpdate",
                Forbidden,
                "may not be specified when strategy `type` is 'Recreate'",
            ),
            case(
                "maxUnavailable at most 100%",
                |d: &mut Deployment| ru(d).max_unavailable = Some(IntOrString::from("150%")),
                "spec.strategy.rollingUpdate.maxUnavailable",
                Invalid,
                "must not be greater than 100%",
            ),
            case(
                "maxSurge is a number or percent",
                |d: &mut Deployment| ru(d).max_surge = Some(IntOrString::from("lots")),
                "spec.strategy.rollingUpdate.maxSurge",
                Invalid,
                "a valid percent string",
            ),
            case(
                "maxSurge non-negative",
                |d: &mut Deployment| ru(d).max_surge = Some(IntOrString::Int(-1)),
                "spec.strategy.rollingUpdate.maxSurge",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "not both zero",
                |d: &mut Deployment| {
                    ru(d).max_surge = Some(IntOrString::from("0%"));
                    ru(d).max_unavailable = Some(IntOrString::Int(0));
                },
                "spec.strategy.rollingUpdate.maxUnavailable",
                Invalid,
                "may not be 0 when `maxSurge` is 0",
            ),
        ],
    );
}

#[test]
fn replicaset_and_daemonset_rules() {
    let rs = parse_one(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web-1}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: a, image: b}]}\n",
    );
    let Object::ReplicaSet(rs) = rs else {
        unreachable!()
    };
    run(
        &rs,
        vec![
            case(
                "replicas",
                |r: &mut ReplicaSet| r.spec.replicas = Some(-2),
                "spec.replicas",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "minReadySeconds",
                |r: &mut ReplicaSet| r.spec.min_ready_seconds = -2,
                "spec.minReadySeconds",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "selector required",
                |r: &mut ReplicaSet| r.spec.selector = None,
                "spec.selector",
                Required,
                "Required value",
            ),
            case(
                "selector empty",
                |r: &mut ReplicaSet| r.spec.selector = Some(LabelSelector::default()),
                "spec.selector",
                Invalid,
                "empty selector is invalid for replicaset",
            ),
        ],
    );

    let ds = parse_one(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec: {containers: [{name: a, image: b}]}\n",
    );
    let Object::DaemonSet(ds) = ds else {
        unreachable!()
    };
    run(
        &ds,
        vec![
            case(
                "selector matches template",
                |d: &mut DaemonSet| d.spec.template.metadata.labels.clear(),
                "spec.template.metadata.labels",
                Invalid,
                "`selector` does not match template `labels`",
            ),
            case(
                "OnDelete has no rollingUpdate",
                |d: &mut DaemonSet| {
                    d.spec.update_strategy = Some(crate::resources::DaemonSetUpdateStrategy {
                        type_: Some(DaemonSetUpdateStrategyType::OnDelete),
                        rolling_update: Some(Default::default()),
                    })
                },
                "spec.updateStrategy.rollingUpdate",
                Forbidden,
                "'OnDelete'",
            ),
            case(
                "maxUnavailable non-negative",
                |d: &mut DaemonSet| {
                    d.spec.update_strategy = Some(crate::resources::DaemonSetUpdateStrategy {
                        type_: None,
                        rolling_update: Some(crate::resources::RollingUpdate {
                            max_unavailable: Some(IntOrString::Int(-1)),
                            max_surge: None,
                        }),
                    })
                },
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "revisionHistoryLimit",
                |d: &mut DaemonSet| d.spec.revision_history_limit = Some(-1),
                "spec.revisionHistoryLimit",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "minReadySeconds",
                |d: &mut DaemonSet| d.spec.min_ready_seconds = -1,
                "spec.minReadySeconds",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "template restartPolicy",
                |d: &mut DaemonSet| {
                    d.spec.template.spec.restart_policy = Some(RestartPolicy::Never)
                },
                "spec.template.spec.restartPolicy",
                NotSupported,
                "supported values: \"Always\"",
            ),
        ],
    );
}

#[test]
fn job_rules() {
    let Object::Job(job) = parse_one(JOB) else {
        unreachable!()
    };
    run(
        &job,
        vec![
            case(
                "parallelism",
                |j: &mut Job| j.spec.parallelism = Some(-1),
                "spec.parallelism",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "completions",
                |j: &mut Job| j.spec.completions = Some(-1),
                "spec.completions",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "backoffLimit",
                |j: &mut Job| j.spec.backoff_limit = Some(-1),
                "spec.backoffLimit",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "ttlSecondsAfterFinished",
                |j: &mut Job| j.spec.ttl_seconds_after_finished = Some(-1),
                "spec.ttlSecondsAfterFinished",
                Invalid,
                "greater than or equal to 0",
            ),
            case(
                "activeDeadlineSeconds",
                |j: &mut Job| j.spec.active_deadline_seconds = Some(0),
                "spec.activeDeadlineSeconds",
                Invalid,
                "greater than or equal to 1",
            ),
            case(
                "manual selector required",
                |j: &mut Job| j.spec.manual_selector = Some(true),
                "spec.selector",
                Required,
                "Required value",
            ),
            case(
                "selector matches template",
                |j: &mut Job| {
                    j.spec.selector = Some(LabelSelector {
                        match_labels: [("job".to_string(), "other".to_string())].into(),
                        match_expressions: vec![],
                    })
                },
                "spec.template.metadata.labels",
                Invalid,
                "`selector` does not match template `labels`",
            ),
            case(
                "template restartPolicy",
                |j: &mut Job| j.spec.template.spec.restart_policy = Some(RestartPolicy::Always),
                "spec.template.spec.restartPolicy",
                NotSupported,
                "supported values: \"OnFailure\", \"Never\"",
            ),
        ],
    );
    // A defaulted job with a UID carries a generated selector that matches.
    let mut obj = Object::from(job);
    obj.meta_mut().uid = Some(Uid("0a1b".into()));
    crate::apply_defaults(&mut obj);
    assert_eq!(validate(&obj), Ok(()));
}

fn service() -> Service {
    match parse_one(SERVICE) {
        Object::Service(s) => s,
        other => panic!("not a service: {other:?}"),
    }
}

#[test]
fn service_rules() {
    run(
        &service(),
        vec![
            case(
                "ports required",
                |s: &mut Service| s.spec.ports.clear(),
                "spec.ports",
                Required,
                "Required value",
            ),
            case(
                "port range",
                |s: &mut Service| s.spec.ports[0].port = 0,
                "spec.ports[0].port",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "names required with several ports",
                |s: &mut Service| s.spec.ports[1].name.clear(),
                "spec.ports[1].name",
                Required,
                "must be named",
            ),
            case(
                "names unique",
                |s: &mut Service| s.spec.ports[1].name = "http".into(),
                "spec.ports[1].name",
                Duplicate,
                "Duplicate value \"http\"",
            ),
            case(
                "name is a label",
                |s: &mut Service| s.spec.ports[1].name = "HTTPS".into(),
                "spec.ports[1].name",
                Invalid,
                "RFC 1123 label",
            ),
            case(
                "port and protocol unique",
                |s: &mut Service| s.spec.ports[1].port = 80,
                "spec.ports[1]",
                Duplicate,
                "Duplicate value \"80/TCP\"",
            ),
            case(
                "targetPort number",
                |s: &mut Service| s.spec.ports[1].target_port = Some(IntOrString::Int(70000)),
                "spec.ports[1].targetPort",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "targetPort name",
                |s: &mut Service| s.spec.ports[0].target_port = Some(IntOrString::from("Web")),
                "spec.ports[0].targetPort",
                Invalid,
                "alpha-numeric",
            ),
            case(
                "nodePort only for NodePort",
                |s: &mut Service| s.spec.ports[0].node_port = 30080,
                "spec.ports[0].nodePort",
                Forbidden,
                "may not be used when `type` is 'ClusterIP'",
            ),
            case(
                "nodePort range",
                |s: &mut Service| {
                    s.spec.type_ = Some(ServiceType::NodePort);
                    s.spec.ports[0].node_port = 8080;
                },
                "spec.ports[0].nodePort",
                Invalid,
                "Invalid value 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ),
            case(
                "nodePort unique",
                |s: &mut Service| {
                    s.spec.type_ = Some(ServiceType::NodePort);
                    s.spec.ports[0].node_port = 30080;
                    s.spec.ports[1].node_port = 30080;
                },
                "spec.ports[1].nodePort",
                Duplicate,
                "30080",
            ),
            case(
                "selector labels",
                |s: &mut Service| {
                    s.spec.selector.insert("app".into(), "web app".into());
                },
                "spec.selector",
                Invalid,
                "a valid label",
            ),
            case(
                "clusterIP",
                |s: &mut Service| s.spec.cluster_ip = Some("10.0.0.300".into()),
                "spec.clusterIP",
                Invalid,
                "must be empty, 'None', or a valid IP address",
            ),
            case(
                "headless NodePort",
                |s: &mut Service| {
                    s.spec.type_ = Some(ServiceType::NodePort);
                    s.spec.cluster_ip = Some("None".into());
                },
                "spec.clusterIP",
                Invalid,
                "may not be set to 'None' for NodePort services",
            ),
            case(
                "clusterIPs match clusterIP",
                |s: &mut Service| {
                    s.spec.cluster_ip = Some("10.96.0.10".into());
                    s.spec.cluster_ips = vec!["10.96.0.11".into()];
                },
                "spec.clusterIPs[0]",
                Invalid,
                "must match `clusterIP`",
            ),
            case(
                "clusterIPs are addresses",
                |s: &mut Service| s.spec.cluster_ips = vec!["nope".into()],
                "spec.clusterIPs[0]",
                Invalid,
                "valid IP address",
            ),
        ],
    );
    let mut headless = service();
    headless.spec.ports.clear();
    headless.spec.cluster_ip = Some("None".into());
    assert_eq!(errors(headless), []);

    let mut single = service();
    single.spec.ports.truncate(1);
    single.spec.ports[0].name.clear();
    single.spec.ports.push(ServicePort {
        name: String::new(),
        port: 53,
        protocol: Some(Protocol::Udp),
        ..ServicePort::default()
    });
    let errs = errors(single);
    assert_eq!(errs.len(), 2, "both unnamed ports are reported: {errs:?}");
}

#[test]
fn endpoints_rules() {
    let base = Endpoints {
        metadata: ObjectMeta {
            name: "web".into(),
            ..ObjectMeta::default()
        },
        subsets: vec![EndpointSubset {
            addresses: vec![EndpointAddress {
                ip: "10.1.0.4".into(),
                node_name: Some("edge-1".into()),
                target_ref: Some(ObjectReference {
                    kind: "Pod".into(),
                    name: "web-x".into(),
                    ..ObjectReference::default()
                }),
            }],
            not_ready_addresses: vec![],
            ports: vec![EndpointPort {
                name: "http".into(),
                port: 8080,
                protocol: Some(Protocol::Tcp),
            }],
        }],
    };
    run(
        &base,
        vec![
            case(
                "address ip",
                |e: &mut Endpoints| e.subsets[0].addresses[0].ip = "web".into(),
                "subsets[0].addresses[0].ip",
                Invalid,
                "valid IP address",
            ),
            case(
                "address ip required",
                |e: &mut Endpoints| {
                    e.subsets[0]
                        .not_ready_addresses
                        .push(EndpointAddress::default())
                },
                "subsets[0].notReadyAddresses[0].ip",
                Required,
                "Required value",
            ),
            case(
                "nodeName",
                |e: &mut Endpoints| e.subsets[0].addresses[0].node_name = Some("Edge 1".into()),
                "subsets[0].addresses[0].nodeName",
                Invalid,
                "RFC 1123 subdomain",
            ),
            case(
                "port range",
                |e: &mut Endpoints| e.subsets[0].ports[0].port = 0,
                "subsets[0].ports[0].port",
                Invalid,
                "between 1 and 65535",
            ),
            case(
                "port names with several ports",
                |e: &mut Endpoints| {
                    e.subsets[0].ports.push(EndpointPort {
                        name: String::new(),
                        port: 9090,
                        protocol: None,
                    })
                },
                "subsets[0].ports[1].name",
                Required,
                "must be named",
            ),
            case(
                "port names unique",
                |e: &mut Endpoints| {
                    e.subsets[0].ports.push(EndpointPort {
                        name: "http".into(),
                        port: 9090,
                        protocol: None,
                    })
                },
                "subsets[0].ports[1].name",
                Duplicate,
                "\"http\"",
            ),
        ],
    );
}

#[test]
fn node_rules() {
    let Object::Node(node) = parse_one(
        "apiVersion: v1\nkind: Node\nmetadata: {name: edge-1}\nspec:\n  podCIDR: 10.244.1.0/24\n  podCIDRs: [10.244.1.0/24, 'fd00:1::/64']\n  taints: [{key: dedicated, value: edge, effect: NoSchedule}]\nstatus:\n  capacity: {cpu: 4, memory: 2Gi, pods: 110}\n",
    ) else {
        unreachable!()
    };
    run(
        &node,
        vec![
            case(
                "podCIDR",
                |n: &mut Node| {
                    n.spec.pod_cidr = Some("10.244.1.0/33".into());
                    n.spec.pod_cidrs.clear();
                },
                "spec.podCIDR",
                Invalid,
                "must be a valid CIDR",
            ),
            case(
                "podCIDRs entries",
                |n: &mut Node| n.spec.pod_cidrs[1] = "fd00::".into(),
                "spec.podCIDRs[1]",
                Invalid,
                "must be a valid CIDR",
            ),
            case(
                "podCIDRs match podCIDR",
                |n: &mut Node| n.spec.pod_cidrs[0] = "10.244.2.0/24".into(),
                "spec.podCIDRs[0]",
                Invalid,
                "must match `podCIDR`",
            ),
            case(
                "at most two podCIDRs",
                |n: &mut Node| n.spec.pod_cidrs.push("10.9.0.0/16".into()),
                "spec.podCIDRs",
                Invalid,
                "no more than one CIDR for each IP family",
            ),
            case(
                "taint key required",
                |n: &mut Node| n.spec.taints[0].key.clear(),
                "spec.taints[0].key",
                Required,
                "Required value",
            ),
            case(
                "taint key",
                |n: &mut Node| n.spec.taints[0].key = "bad key".into(),
                "spec.taints[0].key",
                Invalid,
                "name part",
            ),
            case(
                "taint value",
                |n: &mut Node| n.spec.taints[0].value = "a b".into(),
                "spec.taints[0].value",
                Invalid,
                "a valid label",
            ),
            case(
                "taints unique by key and effect",
                |n: &mut Node| {
                    n.spec.taints.push(Taint {
                        key: "dedicated".into(),
                        value: "other".into(),
                        effect: TaintEffect::NoSchedule,
                        time_added: None,
                    })
                },
                "spec.taints[1]",
                Duplicate,
                "\"dedicated:NoSchedule\"",
            ),
            case(
                "capacity resource names",
                |n: &mut Node| {
                    n.status
                        .as_mut()
                        .unwrap()
                        .capacity
                        .insert("gpus".into(), q("1"));
                },
                "status.capacity[gpus]",
                Invalid,
                "standard resource",
            ),
            case(
                "allocatable non-negative",
                |n: &mut Node| {
                    n.status
                        .as_mut()
                        .unwrap()
                        .allocatable
                        .insert("cpu".into(), q("-1"));
                },
                "status.allocatable[cpu]",
                Invalid,
                "greater than or equal to 0",
            ),
        ],
    );
    // The same key with another effect is a different taint.
    let mut n = node.clone();
    n.spec.taints.push(Taint {
        key: "dedicated".into(),
        value: "edge".into(),
        effect: TaintEffect::NoExecute,
        time_added: None,
    });
    assert_eq!(errors(n), []);
}

#[test]
fn taint_and_toleration_effects_are_a_closed_set() {
    let e = parse_manifests(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  tolerations: [{key: k, operator: Exists, effect: NoRun}]\n",
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "spec.tolerations[0].effect: Unsupported value \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
    );
    let e = parse_manifests(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  tolerations: [{key: k, operator: Matches}]\n",
    )
    .unwrap_err();
    assert_eq!(e.path(), Some("spec.tolerations[0].operator"));
}

#[test]
fn namespace_and_event_rules() {
    let mut ns = crate::resources::Namespace::default();
    ns.metadata.name = "prod".into();
    ns.spec = Some(NamespaceSpec {
        finalizers: vec!["bad finalizer".into()],
    });
    let errs = errors(ns);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "spec.finalizers[0]");

    let mut ev = Event::default();
    ev.metadata.name = "web.17a3".into();
    let errs = errors(ev.clone());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].path, "involvedObject");
    assert_eq!(errs[0].kind, Required);

    ev.involved_object = Some(ObjectReference::default());
    let paths: Vec<String> = errors(ev.clone()).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["involvedObject.kind", "involvedObject.name"]);

    ev.involved_object = Some(ObjectReference {
        kind: "Pod".into(),
        name: "web".into(),
        ..ObjectReference::default()
    });
    assert_eq!(errors(ev), []);
}

#[test]
fn every_error_is_reported_at_once() {
    let mut p = pod();
    p.metadata.name = "Web_1".into();
    c0(&mut p).image.clear();
    c0(&mut p).ports[0].container_port = 0;
    p.spec.volumes[0].empty_dir = None;
    let err = validate(&Object::from(p)).unwrap_err();
    let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "metadata.name",
            "spec.volumes[0]",
            "spec.containers[0].image",
            "spec.containers[0].ports[0].containerPort",
        ]
    );
    let shown = err.to_string();
    assert!(!shown.contains('\n'));
    assert!(
        shown.starts_with(
            "metadata.name: Invalid value \"Web_1\": a lowercase RFC 1123 subdomain must consist of"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("; spec.containers[0].image: Required value; "),
        "{shown}"
    );
    assert!(
        shown.ends_with(
            "spec.containers[0].ports[0].containerPort: Invalid value 0: must be between 1 and 65535, inclusive"
        ),
        "{shown}"
    );
    assert_eq!(err.0[1].kind.reason(), "FieldValueRequired");
    assert_eq!(err.0[0].kind.reason(), "FieldValueInvalid");
    assert_eq!(
        err.0[0].to_string(),
        format!("metadata.name: {}", err.0[0].message)
    );
}

#[test]
fn defaulted_objects_stay_valid() {
    for text in [POD, DEPLOYMENT, JOB, SERVICE] {
        let mut obj = parse_one(text);
        crate::apply_defaults(&mut obj);
        assert_eq!(validate(&obj), Ok(()), "{text}");
    }
}

#[test]
fn selector_matching() {
    let labels: BTreeMap<String, String> = [
        ("app".to_string(), "web".to_string()),
        ("tier".to_string(), "front".to_string()),
    ]
    .into();
    let sel = |ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>| LabelSelector {
        match_labels: ml
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        match_expressions: me,
    };
    assert!(selector_matches(&sel(&[("app", "web")], vec![]), &labels));
    assert!(!selector_matches(&sel(&[("app", "api")], vec![]), &labels));
    assert!(selector_matches(
        &sel(&[], vec![label_req("tier", "In", &["front", "x"])]),
        &labels
    ));
    assert!(!selector_matches(
        &sel(&[], vec![label_req("tier", "NotIn", &["front"])]),
        &labels
    ));
    assert!(selector_matches(
        &sel(&[], vec![label_req("zone", "NotIn", &["a"])]),
        &labels
    ));
    assert!(selector_matches(
        &sel(&[], vec![label_req("app", "Exists", &[])]),
        &labels
    ));
    assert!(!selector_matches(
        &sel(&[], vec![label_req("app", "DoesNotExist", &[])]),
        &labels
    ));
    assert!(!selector_matches(
        &sel(&[], vec![label_req("app", "Gt", &["1"])]),
        &labels
    ));
}

#[test]
fn field_error_kinds_map_to_reasons() {
    let all = [
        (Required, "FieldValueRequired"),
        (Invalid, "FieldValueInvalid"),
        (Duplicate, "FieldValueDuplicate"),
        (NotSupported, "FieldValueNotSupported"),
        (NotFound, "FieldValueNotFound"),
        (TooLong, "FieldValueTooLong"),
        (Forbidden, "FieldValueForbidden"),
    ];
    for (kind, reason) in all {
        assert_eq!(kind.reason(), reason);
    }
}
