//! Object validation: every rule an object must satisfy before the hub stores it.
//!
//! `validate` never stops at the first problem: it collects every error with the full
//! field path, so one round trip tells a user everything to fix. Messages follow the
//! Kubernetes wording (`Required value`, `Invalid value "x": ...`,
//! `Unsupported value "x": supported values: ...`).
//!
//! Validation runs after defaulting in the hub, but does not depend on it: unset
//! fields are treated as their defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::resources::{
    Container, DaemonSet, DaemonSetUpdateStrategyType, Deployment, DeploymentStrategyType,
    Endpoints, Event, IntOrString, Job, Namespace, Node, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PodSpec, PodTemplateSpec, Probe, Protocol, ReplicaSet, ResourceRequirements,
    RestartPolicy, Service, ServiceType, TaintEffect, Toleration, TolerationOperator, Volume,
};
use crate::{
    Kind, LabelSelector, LabelSelectorRequirement, NodeSelectorRequirement, Object, ObjectMeta,
    Quantity,
};

/// What is wrong with a field; maps to the Kubernetes `StatusCause` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    NotFound,
    TooLong,
    Forbidden,
}

impl FieldErrorKind {
    /// The Kubernetes `StatusCause.reason`, e.g. `FieldValueRequired`.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
        }
    }
}

/// One problem: the field path (`spec.containers[0].image`), what kind of problem, and
/// the message that follows the path (`Required value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub kind: FieldErrorKind,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in an object. Displays as one line, errors separated by `; `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Checks every rule for the object's kind and returns all problems at once.
pub fn validate(obj: &Object) -> Result<(), ValidationErrors> {
    let mut e = Errors::default();
    validate_object_meta(&mut e, obj.meta(), obj.kind());
    match obj {
        Object::Namespace(ns) => validate_namespace(&mut e, ns),
        Object::Node(node) => validate_node(&mut e, node),
        Object::Pod(pod) => validate_pod_spec(&mut e, &pod.spec, "spec", PodContext::Pod),
        Object::Deployment(d) => validate_deployment(&mut e, d),
        Object::ReplicaSet(rs) => validate_replica_set(&mut e, rs),
        Object::DaemonSet(ds) => validate_daemon_set(&mut e, ds),
        Object::Job(job) => validate_job(&mut e, job),
        Object::Service(svc) => validate_service(&mut e, svc),
        Object::Endpoints(ep) => validate_endpoints(&mut e, ep),
        Object::ServiceAccount(_) => {}
        Object::Event(ev) => validate_event(&mut e, ev),
    }
    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(e.0))
    }
}

/// The collector every rule reports into. Values are shown with `Debug`, so strings
/// are quoted and numbers are bare, as Kubernetes shows them.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: &str, kind: FieldErrorKind, message: String) {
        self.0.push(FieldError {
            path: path.to_string(),
            kind,
            message,
        });
    }

    fn required(&mut self, path: &str, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push(path, FieldErrorKind::Required, message);
    }

    fn invalid(&mut self, path: &str, value: impl fmt::Debug, detail: &str) {
        self.push(
            path,
            FieldErrorKind::Invalid,
            format!("Invalid value {value:?}: {detail}"),
        );
    }

    fn duplicate(&mut self, path: &str, value: impl fmt::Debug) {
        self.push(
            path,
            FieldErrorKind::Duplicate,
            format!("Duplicate value {value:?}"),
        );
    }

    fn not_supported(&mut self, path: &str, value: impl fmt::Debug, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            path,
            FieldErrorKind::NotSupported,
            format!(
                "Unsupported value {value:?}: supported values: {}",
                list.join(", ")
            ),
        );
    }

    fn not_found(&mut self, path: &str, value: impl fmt::Debug) {
        self.push(
            path,
            FieldErrorKind::NotFound,
            format!("Not found {value:?}"),
        );
    }

    fn too_long(&mut self, path: &str, max: usize) {
        self.push(
            path,
            FieldErrorKind::TooLong,
            format!("Too long: may not be more than {max} bytes"),
        );
    }

    fn forbidden(&mut self, path: &str, detail: &str) {
        self.push(
            path,
            FieldErrorKind::Forbidden,
            format!("Forbidden: {detail}"),
        );
    }

    /// Reports a value below `min`.
    fn at_least<T: PartialOrd + fmt::Debug + fmt::Display + Copy>(
        &mut self,
        path: &str,
        value: T,
        min: T,
    ) {
        if value < min {
            self.invalid(
                path,
                value,
                &format!("must be greater than or equal to {min}"),
            );
        }
    }

    fn port_number(&mut self, path: &str, port: i32) {
        if !(1..=65535).contains(&port) {
            self.invalid(path, port, "must be between 1 and 65535, inclusive");
        }
    }
}

fn child(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

// ---- names -------------------------------------------------------------------------

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', 'my_value' or '12345')";

fn is_dns1123_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with a DNS-1123 label (`my-name`), as messages.
fn dns1123_label_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_dns1123_label_chars(s) {
        out.push(DNS1123_LABEL_MSG.to_string());
    }
    out
}

/// Problems with a DNS-1123 subdomain (`example.com`), as messages.
fn dns1123_subdomain_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        out.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(is_dns1123_label_chars) {
        out.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    out
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_qualified_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a qualified name: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters (label and annotation keys, taint keys...).
fn qualified_name_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".to_string());
            } else {
                out.extend(
                    dns1123_subdomain_problems(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            out.push(format!(
                "a qualified name must consist of an optional DNS subdomain prefix and '/', then a name; {QUALIFIED_NAME_MSG}"
            ));
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            out.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX} characters"
            ));
        }
        if !is_qualified_chars(name) {
            out.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    out
}

fn label_value_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        out.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !s.is_empty() && !is_qualified_chars(s) {
        out.push(LABEL_VALUE_MSG.to_string());
    }
    out
}

fn report(e: &mut Errors, path: &str, value: &str, problems: Vec<String>) {
    for p in problems {
        e.invalid(path, value, &p);
    }
}

fn dns_label(e: &mut Errors, path: &str, value: &str) {
    report(e, path, value, dns1123_label_problems(value));
}

fn dns_subdomain(e: &mut Errors, path: &str, value: &str) {
    report(e, path, value, dns1123_subdomain_problems(value));
}

fn qualified_name(e: &mut Errors, path: &str, value: &str) {
    report(e, path, value, qualified_name_problems(value));
}

fn label_value(e: &mut Errors, path: &str, value: &str) {
    report(e, path, value, label_value_problems(value));
}

fn labels(e: &mut Errors, path: &str, map: &BTreeMap<String, String>) {
    for (k, v) in map {
        qualified_name(e, path, k);
        label_value(e, path, v);
    }
}

/// An IANA service name (`http`, `metrics`): at most 15 characters, lowercase
/// alphanumerics and single hyphens, at least one letter.
fn iana_svc_name_problems(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 15 {
        out.push("must be no more than 15 characters".to_string());
    }
    if !is_dns1123_label_chars(s) {
        out.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    out
}

/// A port given as a number (1-65535) or a named port.
fn port_number_or_name(e: &mut Errors, path: &str, port: &IntOrString) {
    match port {
        IntOrString::Int(n) => e.port_number(path, *n),
        IntOrString::String(name) => report(e, path, name, iana_svc_name_problems(name)),
    }
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.parse::<u8>().is_ok_and(|p| p <= max) && !prefix.starts_with('+')
}

// ---- metadata ----------------------------------------------------------------------

fn validate_object_meta(e: &mut Errors, meta: &ObjectMeta, kind: Kind) {
    // Namespaces and Services become DNS names on their own, so they must be labels.
    let name_rule: fn(&str) -> Vec<String> = match kind {
        Kind::Namespace | Kind::Service => dns1123_label_problems,
        _ => dns1123_subdomain_problems,
    };
    if meta.name.is_empty() {
        match meta.generate_name.as_deref() {
            Some(prefix) if !prefix.is_empty() => {
                // A generated name appends a suffix, so a trailing '-' is fine.
                let masked = match prefix.strip_suffix('-') {
                    Some(head) => format!("{head}a"),
                    None => prefix.to_string(),
                };
                report(e, "metadata.generateName", prefix, name_rule(&masked));
            }
            _ => e.required("metadata.name", "name or generateName is required"),
        }
    } else {
        report(e, "metadata.name", &meta.name, name_rule(&meta.name));
    }
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => {
            if kind.namespaced() {
                dns_label(e, "metadata.namespace", ns);
            } else {
                e.forbidden("metadata.namespace", "not allowed on this type");
            }
        }
        _ => {}
    }
    labels(e, "metadata.labels", &meta.labels);
    annotations(e, "metadata.annotations", &meta.annotations);
    for (i, f) in meta.finalizers.iter().enumerate() {
        qualified_name(e, &index("metadata.finalizers", i), f);
    }
    let mut controllers = 0;
    for (i, r) in meta.owner_references.iter().enumerate() {
        let path = index("metadata.ownerReferences", i);
        for (field, value) in [
            ("apiVersion", r.api_version.as_str()),
            ("kind", r.kind.as_str()),
            ("name", r.name.as_str()),
            ("uid", r.uid.0.as_str()),
        ] {
            if value.is_empty() {
                e.required(&child(&path, field), "");
            }
        }
        if r.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        e.invalid(
            "metadata.ownerReferences",
            controllers,
            "only one reference can have controller set to true",
        );
    }
}

fn annotations(e: &mut Errors, path: &str, map: &BTreeMap<String, String>) {
    let mut total = 0;
    for (k, v) in map {
        qualified_name(e, path, &k.to_ascii_lowercase());
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        e.too_long(path, ANNOTATIONS_MAX_BYTES);
    }
}

/// Labels and annotations of an embedded template; its other metadata is unused.
fn template_meta(e: &mut Errors, meta: &ObjectMeta, path: &str) {
    labels(e, &child(path, "labels"), &meta.labels);
    annotations(e, &child(path, "annotations"), &meta.annotations);
}

// ---- pods --------------------------------------------------------------------------

/// Which object a pod spec belongs to, for the rules that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PodContext {
    Pod,
    /// Deployments, ReplicaSets and DaemonSets keep their pods running.
    LongRunning,
    Job,
}

const STANDARD_RESOURCES: [&str; 4] = ["cpu", "memory", "pods", "ephemeral-storage"];

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_pod_spec(e: &mut Errors, spec: &PodSpec, path: &str, ctx: PodContext) {
    let volume_names = validate_volumes(e, &spec.volumes, &child(path, "volumes"));

    if spec.containers.is_empty() {
        e.required(&child(path, "containers"), "");
    }
    let mut container_names = BTreeSet::new();
    for (field, list, init) in [
        ("initContainers", &spec.init_containers, true),
        ("containers", &spec.containers, false),
    ] {
        for (i, c) in list.iter().enumerate() {
            let cpath = index(&child(path, field), i);
            if !c.name.is_empty() && !container_names.insert(c.name.as_str()) {
                e.duplicate(&child(&cpath, "name"), &c.name);
            }
            validate_container(e, c, &cpath, &volume_names, init, spec.host_network);
        }
    }

    let restart = spec.restart_policy_or_default();
    let allowed: &[RestartPolicy] = match ctx {
        PodContext::Pod => &[
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ],
        PodContext::LongRunning => &[RestartPolicy::Always],
        PodContext::Job => &[RestartPolicy::OnFailure, RestartPolicy::Never],
    };
    if !allowed.contains(&restart) {
        let names: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
        e.not_supported(&child(path, "restartPolicy"), restart.as_str(), &names);
    }

    if let Some(n) = spec.termination_grace_period_seconds {
        e.at_least(&child(path, "terminationGracePeriodSeconds"), n, 0);
    }
    if let Some(n) = spec.active_deadline_seconds {
        e.at_least(&child(path, "activeDeadlineSeconds"), n, 1);
    }
    labels(e, &child(path, "nodeSelector"), &spec.node_selector);
    for (field, value) in [
        ("nodeName", &spec.node_name),
        ("serviceAccountName", &spec.service_account_name),
        ("schedulerName", &spec.scheduler_name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            dns_subdomain(e, &child(path, field), v);
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            dns_label(e, &child(path, field), v);
        }
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        validate_toleration(e, t, &index(&child(path, "tolerations"), i));
    }
    if let Some(a) = &spec.affinity {
        let apath = child(path, "affinity");
        if let Some(na) = &a.node_affinity {
            let napath = child(&apath, "nodeAffinity");
            if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
                let rpath = child(
                    &child(&napath, "requiredDuringSchedulingIgnoredDuringExecution"),
                    "nodeSelectorTerms",
                );
                if required.node_selector_terms.is_empty() {
                    e.required(&rpath, "must have at least one node selector term");
                }
                for (i, term) in required.node_selector_terms.iter().enumerate() {
                    validate_node_selector_term(e, term, &index(&rpath, i));
                }
            }
            let ppath = child(&napath, "preferredDuringSchedulingIgnoredDuringExecution");
            for (i, p) in na
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .enumerate()
            {
                let tpath = index(&ppath, i);
                weight(e, &child(&tpath, "weight"), p.weight);
                validate_node_selector_term(e, &p.preference, &child(&tpath, "preference"));
            }
        }
        if let Some(pa) = &a.pod_affinity {
            validate_pod_affinity(e, pa, &child(&apath, "podAffinity"));
        }
        if let Some(pa) = &a.pod_anti_affinity {
            validate_pod_affinity(e, pa, &child(&apath, "podAntiAffinity"));
        }
    }
}

/// Validates the volumes and returns their names, for the mounts to refer to.
fn validate_volumes<'a>(e: &mut Errors, volumes: &'a [Volume], path: &str) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let vpath = index(path, i);
        let npath = child(&vpath, "name");
        if v.name.is_empty() {
            e.required(&npath, "");
        } else {
            dns_label(e, &npath, &v.name);
            if !names.insert(v.name.as_str()) {
                e.duplicate(&npath, &v.name);
            }
        }
        match v.source_count() {
            0 => e.required(&vpath, "must specify a volume type (emptyDir or hostPath)"),
            1 => {}
            _ => e.forbidden(&vpath, "may not specify more than 1 volume type"),
        }
        if let Some(hp) = &v.host_path {
            let ppath = child(&child(&vpath, "hostPath"), "path");
            if hp.path.is_empty() {
                e.required(&ppath, "");
            } else if !hp.path.starts_with('/') {
                e.invalid(&ppath, &hp.path, "must be an absolute path");
            }
        }
        if let Some(ed) = &v.empty_dir
            && let Some(limit) = &ed.size_limit
        {
            non_negative(e, &child(&child(&vpath, "emptyDir"), "sizeLimit"), limit);
        }
    }
    names
}

fn validate_container(
    e: &mut Errors,
    c: &Container,
    path: &str,
    volumes: &BTreeSet<&str>,
    init: bool,
    host_network: bool,
) {
    let npath = child(path, "name");
    if c.name.is_empty() {
        e.required(&npath, "");
    } else {
        dns_label(e, &npath, &c.name);
    }
    let ipath = child(path, "image");
    if c.image.is_empty() {
        e.required(&ipath, "");
    } else if c.image.trim() != c.image {
        e.invalid(
            &ipath,
            &c.image,
            "must not have leading or trailing whitespace",
        );
    }

    let mut port_names = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, p) in c.ports.iter().enumerate() {
        let ppath = index(&child(path, "ports"), i);
        e.port_number(&child(&ppath, "containerPort"), p.container_port);
        if p.host_port != 0 {
            e.port_number(&child(&ppath, "hostPort"), p.host_port);
            if host_network && p.host_port != p.container_port {
                e.invalid(
                    &child(&ppath, "hostPort"),
                    p.host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
        if let Some(name) = p.name.as_deref() {
            let path = child(&ppath, "name");
            report(e, &path, name, iana_svc_name_problems(name));
            if !port_names.insert(name) {
                e.duplicate(&path, name);
            }
        }
        if let Some(ip) = p.host_ip.as_deref()
            && !ip.is_empty()
            && !is_ip(ip)
        {
            e.invalid(&child(&ppath, "hostIP"), ip, "must be a valid IP address");
        }
        let protocol = p.protocol.unwrap_or(Protocol::Tcp);
        if !port_keys.insert((p.container_port, protocol)) {
            e.duplicate(&ppath, format!("{}/{protocol}", p.container_port));
        }
    }

    for (i, env) in c.env.iter().enumerate() {
        let epath = index(&child(path, "env"), i);
        let npath = child(&epath, "name");
        if env.name.is_empty() {
            e.required(&npath, "");
        } else if env.name.contains('=') || !env.name.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            e.invalid(
                &npath,
                &env.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
        }
        if let Some(from) = &env.value_from {
            let fpath = child(&epath, "valueFrom");
            if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
                e.invalid(&fpath, "", "may not be specified when `value` is not empty");
            }
            match &from.field_ref {
                None => e.required(&child(&fpath, "fieldRef"), ""),
                Some(fr) => {
                    let rpath = child(&fpath, "fieldRef");
                    if let Some(v) = fr.api_version.as_deref()
                        && v != "v1"
                    {
                        e.not_supported(&child(&rpath, "apiVersion"), v, &["v1"]);
                    }
                    let fp = fr.field_path.as_str();
                    let fppath = child(&rpath, "fieldPath");
                    if fp.is_empty() {
                        e.required(&fppath, "");
                    } else if !is_env_field_path(fp) {
                        let mut supported: Vec<&str> = ENV_FIELD_PATHS.to_vec();
                        supported
                            .extend(["metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"]);
                        e.not_supported(&fppath, fp, &supported);
                    }
                }
            }
        }
    }

    validate_resources(e, &c.resources, &child(path, "resources"));

    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mpath = index(&child(path, "volumeMounts"), i);
        let npath = child(&mpath, "name");
        if m.name.is_empty() {
            e.required(&npath, "");
        } else if !volumes.contains(m.name.as_str()) {
            e.not_found(&npath, &m.name);
        }
        let ppath = child(&mpath, "mountPath");
        if m.mount_path.is_empty() {
            e.required(&ppath, "");
        } else {
            if !m.mount_path.starts_with('/') {
                e.invalid(&ppath, &m.mount_path, "must be an absolute path");
            }
            if !mount_paths.insert(m.mount_path.as_str()) {
                e.invalid(&ppath, &m.mount_path, "must be unique");
            }
        }
        if let Some(sub) = m.sub_path.as_deref()
            && !sub.is_empty()
        {
            let spath = child(&mpath, "subPath");
            if sub.starts_with('/') {
                e.invalid(&spath, sub, "must be a relative path");
            }
            if sub.split('/').any(|part| part == "..") {
                e.invalid(&spath, sub, "must not contain '..'");
            }
        }
    }

    for (field, probe, which) in [
        ("livenessProbe", &c.liveness_probe, ProbeKind::Liveness),
        ("readinessProbe", &c.readiness_probe, ProbeKind::Readiness),
        ("startupProbe", &c.startup_probe, ProbeKind::Startup),
    ] {
        let Some(p) = probe else { continue };
        let ppath = child(path, field);
        if init {
            e.forbidden(&ppath, "may not be set for init containers");
        } else {
            validate_probe(e, p, &ppath, which);
        }
    }

    if let Some(sc) = &c.security_context {
        let spath = child(path, "securityContext");
        if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
            e.invalid(
                &child(&spath, "allowPrivilegeEscalation"),
                false,
                "cannot set allowPrivilegeEscalation to false and privileged to true",
            );
        }
        for (field, id) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
        ] {
            if let Some(id) = id
                && !(0..=i64::from(i32::MAX)).contains(&id)
            {
                e.invalid(
                    &child(&spath, field),
                    id,
                    "must be between 0 and 2147483647, inclusive",
                );
            }
        }
        if sc.run_as_non_root == Some(true) && sc.run_as_user == Some(0) {
            e.invalid(
                &child(&spath, "runAsUser"),
                0,
                "may not be 0 when `runAsNonRoot` is true",
            );
        }
    }
}

fn is_env_field_path(fp: &str) -> bool {
    if ENV_FIELD_PATHS.contains(&fp) {
        return true;
    }
    ["metadata.labels", "metadata.annotations"]
        .iter()
        .any(|prefix| {
            fp.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix("['"))
                .and_then(|rest| rest.strip_suffix("']"))
                .is_some_and(|k| qualified_name_problems(k).is_empty())
        })
}

fn is_resource_name(name: &str) -> bool {
    STANDARD_RESOURCES.contains(&name)
        || (name.contains('/') && qualified_name_problems(name).is_empty())
}

fn resource_map(e: &mut Errors, path: &str, map: &BTreeMap<String, Quantity>) {
    for (name, q) in map {
        let qpath = key(path, name);
        if !is_resource_name(name) {
            e.invalid(
                &qpath,
                name,
                "must be a standard resource (cpu, memory, pods, ephemeral-storage) or a domain-prefixed extended resource (e.g. example.com/gpu)",
            );
        }
        non_negative(e, &qpath, q);
    }
}

fn non_negative(e: &mut Errors, path: &str, q: &Quantity) {
    if q.is_negative() {
        e.invalid(path, q.as_str(), "must be greater than or equal to 0");
    }
}

fn validate_resources(e: &mut Errors, r: &ResourceRequirements, path: &str) {
    resource_map(e, &child(path, "limits"), &r.limits);
    resource_map(e, &child(path, "requests"), &r.requests);
    for (name, request) in &r.requests {
        if let Some(limit) = r.limits.get(name)
            && request > limit
        {
            e.invalid(
                &key(&child(path, "requests"), name),
                request.as_str(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn validate_probe(e: &mut Errors, p: &Probe, path: &str, which: ProbeKind) {
    match p.handler_count() {
        0 => e.required(
            path,
            "must specify a handler type (exec, httpGet or tcpSocket)",
        ),
        1 => {}
        _ => e.forbidden(path, "may not specify more than 1 handler type"),
    }
    if let Some(exec) = &p.exec
        && exec.command.is_empty()
    {
        e.required(&child(&child(path, "exec"), "command"), "");
    }
    if let Some(http) = &p.http_get {
        let hpath = child(path, "httpGet");
        port_number_or_name(e, &child(&hpath, "port"), &http.port);
        for (i, h) in http.http_headers.iter().enumerate() {
            let valid = !h.name.is_empty()
                && h.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid {
                e.invalid(
                    &child(&index(&child(&hpath, "httpHeaders"), i), "name"),
                    &h.name,
                    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name')",
                );
            }
        }
    }
    if let Some(tcp) = &p.tcp_socket {
        port_number_or_name(e, &child(&child(path, "tcpSocket"), "port"), &tcp.port);
    }
    if let Some(n) = p.initial_delay_seconds {
        e.at_least(&child(path, "initialDelaySeconds"), n, 0);
    }
    for (field, value) in [
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(n) = value {
            e.at_least(&child(path, field), n, 1);
        }
    }
    if which != ProbeKind::Readiness
        && let Some(n) = p.success_threshold
        && n != 1
    {
        e.invalid(
            &child(path, "successThreshold"),
            n,
            "must be 1 for liveness and startup probes",
        );
    }
    if let Some(n) = p.termination_grace_period_seconds {
        let tpath = child(path, "terminationGracePeriodSeconds");
        if which == ProbeKind::Readiness {
            e.forbidden(&tpath, "may not be set for readiness probes");
        } else {
            e.at_least(&tpath, n, 1);
        }
    }
}

fn validate_toleration(e: &mut Errors, t: &Toleration, path: &str) {
    let op = t.operator.unwrap_or(TolerationOperator::Equal);
    if t.key.is_empty() {
        if op != TolerationOperator::Exists {
            e.invalid(
                &child(path, "operator"),
                op.as_str(),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
    } else {
        qualified_name(e, &child(path, "key"), &t.key);
    }
    match op {
        TolerationOperator::Exists => {
            if !t.value.is_empty() {
                e.invalid(
                    &child(path, "value"),
                    &t.value,
                    "value must be empty when `operator` is 'Exists'",
                );
            }
        }
        TolerationOperator::Equal => label_value(e, &child(path, "value"), &t.value),
    }
    if t.toleration_seconds.is_some() && t.effect != Some(TaintEffect::NoExecute) {
        e.invalid(
            &child(path, "effect"),
            t.effect.map(|x| x.as_str()).unwrap_or_default(),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
}

fn weight(e: &mut Errors, path: &str, w: i32) {
    if !(1..=100).contains(&w) {
        e.invalid(path, w, "must be in the range 1-100");
    }
}

const LABEL_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];
const NODE_OPERATORS: [&str; 6] = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"];

/// The value rules shared by label and node selector requirements.
fn requirement_values(e: &mut Errors, path: &str, operator: &str, values: &[String]) {
    let vpath = child(path, "values");
    match operator {
        "In" | "NotIn" => {
            if values.is_empty() {
                e.required(
                    &vpath,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                );
            }
            for (i, v) in values.iter().enumerate() {
                label_value(e, &index(&vpath, i), v);
            }
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            e.forbidden(
                &vpath,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            );
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                e.required(
                    &vpath,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                );
            } else if values[0].parse::<i64>().is_err() {
                e.invalid(&index(&vpath, 0), &values[0], "must be an integer");
            }
        }
        _ => {}
    }
}

fn validate_node_selector_requirement(
    e: &mut Errors,
    r: &NodeSelectorRequirement,
    path: &str,
    is_field: bool,
) {
    let opath = child(path, "operator");
    if !NODE_OPERATORS.contains(&r.operator.as_str()) {
        e.not_supported(&opath, &r.operator, &NODE_OPERATORS);
    }
    if is_field {
        // Node fields: only the node name, matched by exact value.
        if r.key != "metadata.name" {
            e.not_supported(&child(path, "key"), &r.key, &["metadata.name"]);
        }
        if !matches!(r.operator.as_str(), "In" | "NotIn") {
            if NODE_OPERATORS.contains(&r.operator.as_str()) {
                e.not_supported(&opath, &r.operator, &["In", "NotIn"]);
            }
        } else if r.values.len() != 1 {
            e.required(
                &child(path, "values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            );
        }
        return;
    }
    qualified_name(e, &child(path, "key"), &r.key);
    requirement_values(e, path, &r.operator, &r.values);
}

fn validate_node_selector_term(e: &mut Errors, term: &NodeSelectorTerm, path: &str) {
    for (i, r) in term.match_expressions.iter().enumerate() {
        validate_node_selector_requirement(
            e,
            r,
            &index(&child(path, "matchExpressions"), i),
            false,
        );
    }
    for (i, r) in term.match_fields.iter().enumerate() {
        validate_node_selector_requirement(e, r, &index(&child(path, "matchFields"), i), true);
    }
}

fn validate_label_selector(e: &mut Errors, s: &LabelSelector, path: &str) {
    labels(e, &child(path, "matchLabels"), &s.match_labels);
    for (i, r) in s.match_expressions.iter().enumerate() {
        validate_label_requirement(e, r, &index(&child(path, "matchExpressions"), i));
    }
}

fn validate_label_requirement(e: &mut Errors, r: &LabelSelectorRequirement, path: &str) {
    if !LABEL_OPERATORS.contains(&r.operator.as_str()) {
        e.not_supported(&child(path, "operator"), &r.operator, &LABEL_OPERATORS);
    }
    qualified_name(e, &child(path, "key"), &r.key);
    requirement_values(e, path, &r.operator, &r.values);
}

fn validate_pod_affinity_term(e: &mut Errors, t: &PodAffinityTerm, path: &str) {
    let kpath = child(path, "topologyKey");
    if t.topology_key.is_empty() {
        e.required(&kpath, "can not be empty");
    } else {
        qualified_name(e, &kpath, &t.topology_key);
    }
    if let Some(s) = &t.label_selector {
        validate_label_selector(e, s, &child(path, "labelSelector"));
    }
    if let Some(s) = &t.namespace_selector {
        validate_label_selector(e, s, &child(path, "namespaceSelector"));
    }
    for (i, ns) in t.namespaces.iter().enumerate() {
        dns_label(e, &index(&child(path, "namespaces"), i), ns);
    }
}

fn validate_pod_affinity(e: &mut Errors, a: &PodAffinity, path: &str) {
    let rpath = child(path, "requiredDuringSchedulingIgnoredDuringExecution");
    for (i, t) in a
        .required_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        validate_pod_affinity_term(e, t, &index(&rpath, i));
    }
    let ppath = child(path, "preferredDuringSchedulingIgnoredDuringExecution");
    for (i, w) in a
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let wpath = index(&ppath, i);
        weight(e, &child(&wpath, "weight"), w.weight);
        validate_pod_affinity_term(e, &w.pod_affinity_term, &child(&wpath, "podAffinityTerm"));
    }
}

// ---- workloads ---------------------------------------------------------------------

/// Whether a label selector selects the given labels. Kept in one place so every
/// "selector must match the template" rule agrees.
fn selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The selector/template rules shared by Deployments, ReplicaSets, DaemonSets and Jobs.
fn workload_selector(
    e: &mut Errors,
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    kind: Kind,
) {
    let Some(s) = selector else {
        e.required("spec.selector", "");
        return;
    };
    if s.match_labels.is_empty() && s.match_expressions.is_empty() {
        e.invalid(
            "spec.selector",
            "",
            &format!("empty selector is invalid for {}", kind.singular()),
        );
        return;
    }
    let before = e.0.len();
    validate_label_selector(e, s, "spec.selector");
    // An invalid selector cannot be meaningfully matched; its own errors say enough.
    if e.0.len() == before && !selector_matches(s, &template.metadata.labels) {
        let shown: Vec<String> = template
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        e.invalid(
            "spec.template.metadata.labels",
            shown.join(","),
            "`selector` does not match template `labels`",
        );
    }
}

fn validate_template(e: &mut Errors, template: &PodTemplateSpec, ctx: PodContext) {
    template_meta(e, &template.metadata, "spec.template.metadata");
    validate_pod_spec(e, &template.spec, "spec.template.spec", ctx);
}

fn int_or_percent(e: &mut Errors, path: &str, v: &IntOrString, at_most_100: bool) {
    match v {
        IntOrString::Int(n) => e.at_least(path, *n, 0),
        IntOrString::String(s) => match v.percent() {
            None => e.invalid(
                path,
                s,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%' or '93%')",
            ),
            Some(p) if at_most_100 && p > 100 => e.invalid(path, s, "must not be greater than 100%"),
            Some(_) => {}
        },
    }
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(_) => v.percent() == Some(0),
    }
}

/// `maxUnavailable` and `maxSurge` of a rolling update.
fn rolling_update(e: &mut Errors, ru: &crate::resources::RollingUpdate, path: &str) {
    let upath = child(path, "maxUnavailable");
    if let Some(v) = &ru.max_unavailable {
        int_or_percent(e, &upath, v, true);
    }
    if let Some(v) = &ru.max_surge {
        int_or_percent(e, &child(path, "maxSurge"), v, false);
    }
    if let (Some(u), Some(s)) = (&ru.max_unavailable, &ru.max_surge)
        && is_zero(u)
        && is_zero(s)
    {
        e.invalid(&upath, u.to_string(), "may not be 0 when `maxSurge` is 0");
    }
}

fn validate_deployment(e: &mut Errors, d: &Deployment) {
    let s = &d.spec;
    if let Some(n) = s.replicas {
        e.at_least("spec.replicas", n, 0);
    }
    e.at_least("spec.minReadySeconds", s.min_ready_seconds, 0);
    if let Some(n) = s.revision_history_limit {
        e.at_least("spec.revisionHistoryLimit", n, 0);
    }
    if let Some(n) = s.progress_deadline_seconds
        && n <= s.min_ready_seconds
    {
        e.invalid(
            "spec.progressDeadlineSeconds",
            n,
            "must be greater than minReadySeconds",
        );
    }
    if let Some(strategy) = &s.strategy {
        let ty = strategy
            .type_
            .unwrap_or(DeploymentStrategyType::RollingUpdate);
        if let Some(ru) = &strategy.rolling_update {
            let path = "spec.strategy.rollingUpdate";
            if ty == DeploymentStrategyType::Recreate {
                e.forbidden(
                    path,
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            } else {
                rolling_update(e, ru, path);
            }
        }
    }
    workload_selector(e, s.selector.as_ref(), &s.template, Kind::Deployment);
    validate_template(e, &s.template, PodContext::LongRunning);
}

fn validate_replica_set(e: &mut Errors, rs: &ReplicaSet) {
    let s = &rs.spec;
    if let Some(n) = s.replicas {
        e.at_least("spec.replicas", n, 0);
    }
    e.at_least("spec.minReadySeconds", s.min_ready_seconds, 0);
    workload_selector(e, s.selector.as_ref(), &s.template, Kind::ReplicaSet);
    validate_template(e, &s.template, PodContext::LongRunning);
}

fn validate_daemon_set(e: &mut Errors, ds: &DaemonSet) {
    let s = &ds.spec;
    e.at_least("spec.minReadySeconds", s.min_ready_seconds, 0);
    if let Some(n) = s.revision_history_limit {
        e.at_least("spec.revisionHistoryLimit", n, 0);
    }
    if let Some(strategy) = &s.update_strategy {
        let ty = strategy
            .type_
            .unwrap_or(DaemonSetUpdateStrategyType::RollingUpdate);
        if let Some(ru) = &strategy.rolling_update {
            let path = "spec.updateStrategy.rollingUpdate";
            if ty == DaemonSetUpdateStrategyType::OnDelete {
                e.forbidden(
                    path,
                    "may not be specified when strategy `type` is 'OnDelete'",
                );
            } else {
                rolling_update(e, ru, path);
            }
        }
    }
    workload_selector(e, s.selector.as_ref(), &s.template, Kind::DaemonSet);
    validate_template(e, &s.template, PodContext::LongRunning);
}

fn validate_job(e: &mut Errors, job: &Job) {
    let s = &job.spec;
    for (field, value) in [
        ("parallelism", s.parallelism),
        ("completions", s.completions),
        ("backoffLimit", s.backoff_limit),
        ("ttlSecondsAfterFinished", s.ttl_seconds_after_finished),
    ] {
        if let Some(n) = value {
            e.at_least(&child("spec", field), n, 0);
        }
    }
    if let Some(n) = s.active_deadline_seconds {
        e.at_least("spec.activeDeadlineSeconds", n, 1);
    }
    // The hub generates the selector from the job's UID unless it is manual, so only
    // a manual selector is required up front.
    if s.selector.is_some() || s.manual_selector == Some(true) {
        workload_selector(e, s.selector.as_ref(), &s.template, Kind::Job);
    }
    validate_template(e, &s.template, PodContext::Job);
}

// ---- services ----------------------------------------------------------------------

const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

fn validate_service(e: &mut Errors, svc: &Service) {
    let s = &svc.spec;
    let ty = s.type_or_default();
    let headless = s.cluster_ip.as_deref() == Some("None");
    if s.ports.is_empty() && !headless {
        e.required("spec.ports", "");
    }
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let ppath = index("spec.ports", i);
        let npath = child(&ppath, "name");
        if p.name.is_empty() {
            if s.ports.len() > 1 {
                e.required(
                    &npath,
                    "must be named when a service has more than one port",
                );
            }
        } else {
            dns_label(e, &npath, &p.name);
            if !names.insert(p.name.as_str()) {
                e.duplicate(&npath, &p.name);
            }
        }
        e.port_number(&child(&ppath, "port"), p.port);
        let protocol = p.protocol.unwrap_or(Protocol::Tcp);
        if !keys.insert((p.port, protocol)) {
            e.duplicate(&ppath, format!("{}/{protocol}", p.port));
        }
        if let Some(t) = &p.target_port {
            port_number_or_name(e, &child(&ppath, "targetPort"), t);
        }
        if p.node_port != 0 {
            let npath = child(&ppath, "nodePort");
            if ty != ServiceType::NodePort {
                e.forbidden(
                    &npath,
                    &format!("may not be used when `type` is '{}'", ty.as_str()),
                );
            } else if !NODE_PORT_RANGE.contains(&p.node_port) {
                e.invalid(
                    &npath,
                    p.node_port,
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.start(),
                        NODE_PORT_RANGE.end()
                    ),
                );
            }
            if !node_ports.insert((p.node_port, protocol)) {
                e.duplicate(&npath, p.node_port);
            }
        }
    }
    labels(e, "spec.selector", &s.selector);
    if let Some(ip) = s.cluster_ip.as_deref()
        && !ip.is_empty()
    {
        if ip == "None" {
            if ty == ServiceType::NodePort {
                e.invalid(
                    "spec.clusterIP",
                    ip,
                    "may not be set to 'None' for NodePort services",
                );
            }
        } else if !is_ip(ip) {
            e.invalid(
                "spec.clusterIP",
                ip,
                "must be empty, 'None', or a valid IP address",
            );
        }
    }
    for (i, ip) in s.cluster_ips.iter().enumerate() {
        let path = index("spec.clusterIPs", i);
        if ip != "None" && !is_ip(ip) {
            e.invalid(&path, ip, "must be 'None' or a valid IP address");
        }
        if i == 0
            && let Some(primary) = s.cluster_ip.as_deref().filter(|p| !p.is_empty())
            && primary != ip
        {
            e.invalid(&path, ip, "must match `clusterIP` when both are specified");
        }
    }
}

fn validate_endpoints(e: &mut Errors, ep: &Endpoints) {
    for (i, subset) in ep.subsets.iter().enumerate() {
        let spath = index("subsets", i);
        for (field, addresses) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in addresses.iter().enumerate() {
                let apath = index(&child(&spath, field), j);
                let ipath = child(&apath, "ip");
                if a.ip.is_empty() {
                    e.required(&ipath, "");
                } else if !is_ip(&a.ip) {
                    e.invalid(&ipath, &a.ip, "must be a valid IP address");
                }
                if let Some(n) = a.node_name.as_deref().filter(|n| !n.is_empty()) {
                    dns_subdomain(e, &child(&apath, "nodeName"), n);
                }
            }
        }
        let mut names = BTreeSet::new();
        for (j, p) in subset.ports.iter().enumerate() {
            let ppath = index(&child(&spath, "ports"), j);
            let npath = child(&ppath, "name");
            if p.name.is_empty() {
                if subset.ports.len() > 1 {
                    e.required(&npath, "must be named when there is more than one port");
                }
            } else {
                dns_label(e, &npath, &p.name);
                if !names.insert(p.name.as_str()) {
                    e.duplicate(&npath, &p.name);
                }
            }
            e.port_number(&child(&ppath, "port"), p.port);
        }
    }
}

// ---- cluster objects ---------------------------------------------------------------

fn validate_namespace(e: &mut Errors, ns: &Namespace) {
    if let Some(spec) = &ns.spec {
        for (i, f) in spec.finalizers.iter().enumerate() {
            qualified_name(e, &index("spec.finalizers", i), f);
        }
    }
}

fn validate_node(e: &mut Errors, node: &Node) {
    let s = &node.spec;
    if let Some(cidr) = s.pod_cidr.as_deref().filter(|c| !c.is_empty())
        && !is_cidr(cidr)
    {
        e.invalid(
            "spec.podCIDR",
            cidr,
            "must be a valid CIDR (e.g. 10.244.1.0/24)",
        );
    }
    if s.pod_cidrs.len() > 2 {
        e.invalid(
            "spec.podCIDRs",
            s.pod_cidrs.join(","),
            "may specify no more than one CIDR for each IP family",
        );
    }
    for (i, cidr) in s.pod_cidrs.iter().enumerate() {
        let path = index("spec.podCIDRs", i);
        if !is_cidr(cidr) {
            e.invalid(&path, cidr, "must be a valid CIDR (e.g. 10.244.1.0/24)");
        }
        if i == 0
            && let Some(primary) = s.pod_cidr.as_deref().filter(|c| !c.is_empty())
            && primary != cidr
        {
            e.invalid(&path, cidr, "must match `podCIDR` when both are specified");
        }
    }
    let mut seen = BTreeSet::new();
    for (i, t) in s.taints.iter().enumerate() {
        let tpath = index("spec.taints", i);
        let kpath = child(&tpath, "key");
        if t.key.is_empty() {
            e.required(&kpath, "");
        } else {
            qualified_name(e, &kpath, &t.key);
        }
        label_value(e, &child(&tpath, "value"), &t.value);
        if !seen.insert((t.key.as_str(), t.effect)) {
            e.duplicate(&tpath, format!("{}:{}", t.key, t.effect));
        }
    }
    if let Some(status) = &node.status {
        resource_map(e, "status.capacity", &status.capacity);
        resource_map(e, "status.allocatable", &status.allocatable);
    }
}

fn validate_event(e: &mut Errors, ev: &Event) {
    let Some(r) = &ev.involved_object else {
        e.required("involvedObject", "");
        return;
    };
    if r.kind.is_empty() {
        e.required("involvedObject.kind", "");
    }
    if r.name.is_empty() {
        e.required("involvedObject.name", "");
    }
}

#[cfg(test)]
mod tests;
