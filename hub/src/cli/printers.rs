//! What `skiff get` shows for each kind: the columns, the cells computed from an object's
//! JSON (pod status, readiness, ports...), and the `-o name|yaml|json` forms.
//!
//! Cells are read through JSON pointers with fallbacks, so any field the hub leaves out
//! shows as kubectl would show it (`0`, `<none>`) instead of failing.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use skiff_api::Kind;

use super::table::{age_of, human_duration_seconds, parse_time};

/// Table layout choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) wide: bool,
    /// Prefix a NAMESPACE column (listing across namespaces).
    pub(crate) namespace: bool,
    /// Prefix an EVENT column (watch events shown with their type).
    pub(crate) event: bool,
}

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn i(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".to_string()
    } else {
        x
    }
}

pub(crate) fn name_of(v: &Value) -> &str {
    s(v, "/metadata/name").unwrap_or("")
}

pub(crate) fn namespace_of(v: &Value) -> &str {
    s(v, "/metadata/namespace").unwrap_or("")
}

/// The header for `kind`.
pub(crate) fn header(kind: Kind, layout: Layout) -> Vec<String> {
    let base: &[&str] = match kind {
        Kind::Pod => &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        Kind::Deployment => &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::ReplicaSet => &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        Kind::DaemonSet => &[
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        Kind::Job => &["NAME", "COMPLETIONS", "DURATION", "AGE"],
        Kind::Service => &[
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        Kind::Endpoints => &["NAME", "ENDPOINTS", "AGE"],
        Kind::Node => &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        Kind::Namespace => &["NAME", "STATUS", "AGE"],
        Kind::ServiceAccount => &["NAME", "AGE"],
        Kind::Event => &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
    };
    let wide: &[&str] = match (layout.wide, kind) {
        (false, _) => &[],
        (true, Kind::Pod) => &["IP", "NODE"],
        (true, Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::Job) => {
            &["CONTAINERS", "IMAGES", "SELECTOR"]
        }
        (true, Kind::Service) => &["SELECTOR"],
        (true, Kind::Node) => &["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "ARCH"],
        (true, _) => &[],
    };
    let mut out = Vec::new();
    if layout.event {
        out.push("EVENT".to_string());
    }
    if layout.namespace && kind.namespaced() {
        out.push("NAMESPACE".to_string());
    }
    out.extend(base.iter().chain(wide).map(|c| c.to_string()));
    out
}

/// The cells of one object, in the order of [`header`].
pub(crate) fn row(
    kind: Kind,
    obj: &Value,
    layout: Layout,
    event: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let name = name_of(obj).to_string();
    let age = age_of(s(obj, "/metadata/creationTimestamp"), now);
    let mut cells: Vec<String> = match kind {
        Kind::Pod => {
            let (ready, total) = pod_ready(obj);
            vec![
                name,
                format!("{ready}/{total}"),
                pod_status(obj),
                pod_restarts(obj, now),
                age,
            ]
        }
        Kind::Deployment => vec![
            name,
            format!(
                "{}/{}",
                i(obj, "/status/readyReplicas").unwrap_or(0),
                i(obj, "/spec/replicas").unwrap_or(1)
            ),
            i(obj, "/status/updatedReplicas").unwrap_or(0).to_string(),
            i(obj, "/status/availableReplicas").unwrap_or(0).to_string(),
            age,
        ],
        Kind::ReplicaSet => vec![
            name,
            i(obj, "/spec/replicas").unwrap_or(1).to_string(),
            i(obj, "/status/replicas").unwrap_or(0).to_string(),
            i(obj, "/status/readyReplicas").unwrap_or(0).to_string(),
            age,
        ],
        Kind::DaemonSet => {
            let n = |p: &str| i(obj, p).unwrap_or(0).to_string();
            vec![
                name,
                n("/status/desiredNumberScheduled"),
                n("/status/currentNumberScheduled"),
                n("/status/numberReady"),
                n("/status/updatedNumberScheduled"),
                n("/status/numberAvailable"),
                or_none(map_pairs(obj.pointer("/spec/template/spec/nodeSelector"))),
                age,
            ]
        }
        Kind::Job => vec![
            name,
            format!(
                "{}/{}",
                i(obj, "/status/succeeded").unwrap_or(0),
                i(obj, "/spec/completions").unwrap_or(1)
            ),
            job_duration(obj, now),
            age,
        ],
        Kind::Service => vec![
            name,
            s(obj, "/spec/type").unwrap_or("ClusterIP").to_string(),
            or_none(s(obj, "/spec/clusterIP").unwrap_or("").to_string()),
            service_external_ips(obj),
            service_ports(obj),
            age,
        ],
        Kind::Endpoints => vec![name, endpoints_summary(obj), age],
        Kind::Node => vec![
            name,
            node_status(obj),
            node_roles(obj),
            age,
            s(obj, "/status/nodeInfo/kubeletVersion")
                .or_else(|| s(obj, "/status/nodeInfo/agentVersion"))
                .unwrap_or("")
                .to_string(),
        ],
        Kind::Namespace => vec![
            name,
            s(obj, "/status/phase").unwrap_or("Active").to_string(),
            age,
        ],
        Kind::ServiceAccount => vec![name, age],
        Kind::Event => vec![
            event_last_seen(obj, now),
            s(obj, "/type").unwrap_or("").to_string(),
            s(obj, "/reason").unwrap_or("").to_string(),
            event_object(obj),
            s(obj, "/message").unwrap_or("").trim().to_string(),
        ],
    };
    if layout.wide {
        match kind {
            Kind::Pod => {
                cells.push(or_none(s(obj, "/status/podIP").unwrap_or("").to_string()));
                cells.push(or_none(s(obj, "/spec/nodeName").unwrap_or("").to_string()));
            }
            Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::Job => {
                let containers = arr(obj, "/spec/template/spec/containers");
                let names: Vec<&str> = containers
                    .iter()
                    .map(|c| s(c, "/name").unwrap_or(""))
                    .collect();
                let images: Vec<&str> = containers
                    .iter()
                    .map(|c| s(c, "/image").unwrap_or(""))
                    .collect();
                cells.push(or_none(names.join(",")));
                cells.push(or_none(images.join(",")));
                cells.push(or_none(selector_string(obj.pointer("/spec/selector"))));
            }
            Kind::Service => cells.push(or_none(map_pairs(obj.pointer("/spec/selector")))),
            Kind::Node => {
                let internal = arr(obj, "/status/addresses")
                    .iter()
                    .find(|a| s(a, "/type") == Some("InternalIP"))
                    .and_then(|a| s(a, "/address"))
                    .unwrap_or("");
                cells.push(or_none(internal.to_string()));
                for f in ["osImage", "kernelVersion", "architecture"] {
                    let v = s(obj, &format!("/status/nodeInfo/{f}")).unwrap_or("");
                    cells.push(or_none(v.to_string()));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(cells.len() + 2);
    if let Some(e) = event.filter(|_| layout.event) {
        out.push(e.to_string());
    }
    if layout.namespace && kind.namespaced() {
        out.push(namespace_of(obj).to_string());
    }
    out.extend(cells);
    out
}

/// `pod/web-1`, `deployment.apps/web`: the `-o name` form.
pub(crate) fn resource_name(kind: Kind, obj: &Value) -> String {
    format!("{}/{}", kind.qualified_singular(), name_of(obj))
}

/// Makes sure an object read from a list carries `apiVersion` and `kind`.
pub(crate) fn with_type(kind: Kind, obj: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from(kind.api_version()));
    out.insert("kind".into(), Value::from(kind.name()));
    if let Value::Object(m) = obj {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// A `List` of objects, as kubectl prints several objects in YAML or JSON.
pub(crate) fn list_of(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": items,
    })
}

// ---- pods ----

fn pod_ready(pod: &Value) -> (usize, usize) {
    let total = arr(pod, "/spec/containers").len();
    let ready = arr(pod, "/status/containerStatuses")
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    (
        ready,
        total.max(arr(pod, "/status/containerStatuses").len()),
    )
}

/// Total restarts, with how long ago the latest one happened, e.g. `3 (45s ago)`.
fn pod_restarts(pod: &Value, now: DateTime<Utc>) -> String {
    let statuses = arr(pod, "/status/containerStatuses");
    let total: i64 = statuses
        .iter()
        .map(|c| i(c, "/restartCount").unwrap_or(0))
        .sum();
    let last = statuses
        .iter()
        .filter(|c| i(c, "/restartCount").unwrap_or(0) > 0)
        .filter_map(|c| s(c, "/lastState/terminated/finishedAt").and_then(parse_time))
        .max();
    match last {
        Some(t) if total > 0 => format!("{total} ({} ago)", super::table::human_age(t, now)),
        _ => total.to_string(),
    }
}

/// The STATUS column of a pod, computed as kubectl does: the most telling container
/// state beats the phase, init containers report `Init:...`, and a pod being deleted
/// is `Terminating`.
pub(crate) fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "/status/reason")
        .or_else(|| s(pod, "/status/phase"))
        .unwrap_or("Pending")
        .to_string();

    let init_specs = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (idx, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        if let Some(t) = c.pointer("/state/terminated") {
            if i(t, "/exitCode") == Some(0) {
                continue;
            }
            reason = match s(t, "/reason").filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match i(t, "/signal").filter(|sig| *sig != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{}", i(t, "/exitCode").unwrap_or(0)),
                },
            };
        } else if let Some(r) =
            s(c, "/state/waiting/reason").filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            let total = init_specs.max(arr(pod, "/status/initContainerStatuses").len());
            reason = format!("Init:{idx}/{total}");
        }
        initializing = true;
        break;
    }

    if !initializing {
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            if let Some(r) = s(c, "/state/waiting/reason").filter(|r| !r.is_empty()) {
                reason = r.to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match s(t, "/reason").filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None => match i(t, "/signal").filter(|sig| *sig != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", i(t, "/exitCode").unwrap_or(0)),
                    },
                };
            } else if c.pointer("/state/running").is_some()
                && c.get("ready").and_then(Value::as_bool) == Some(true)
            {
                has_running = true;
            }
        }
        // A finished sidecar next to a running container: the pod is still running.
        if reason == "Completed" && has_running {
            let ready = arr(pod, "/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True"));
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        reason = if s(pod, "/status/reason") == Some("NodeLost") {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    reason
}

// ---- workloads ----

fn job_duration(job: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = s(job, "/status/startTime").and_then(parse_time) else {
        return String::new();
    };
    let end = s(job, "/status/completionTime")
        .and_then(parse_time)
        .unwrap_or(now);
    human_duration_seconds((end - start).num_seconds())
}

/// `k=v,k2=v2` from a string map.
pub(crate) fn map_pairs(v: Option<&Value>) -> String {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string())))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A label selector (`matchLabels` + `matchExpressions`) in its string form.
pub(crate) fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut parts = Vec::new();
    let labels = map_pairs(sel.get("matchLabels"));
    if !labels.is_empty() {
        parts.push(labels);
    }
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key").unwrap_or("");
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        let text = match s(e, "/operator").unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        };
        parts.push(text);
    }
    // A service selector is a plain map, not a LabelSelector.
    if parts.is_empty() && sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none()
    {
        return map_pairs(Some(sel));
    }
    parts.join(",")
}

// ---- services ----

fn service_external_ips(svc: &Value) -> String {
    let mut ips: Vec<String> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    for ing in arr(svc, "/status/loadBalancer/ingress") {
        if let Some(ip) = s(ing, "/ip").or_else(|| s(ing, "/hostname")) {
            ips.push(ip.to_string());
        }
    }
    if ips.is_empty() && s(svc, "/spec/type") == Some("LoadBalancer") {
        return "<pending>".to_string();
    }
    or_none(ips.join(","))
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port").unwrap_or(0);
            let proto = s(p, "/protocol").unwrap_or("TCP");
            match i(p, "/nodePort").filter(|n| *n != 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn endpoints_summary(ep: &Value) -> String {
    const SHOWN: usize = 3;
    let mut all = Vec::new();
    for subset in arr(ep, "/subsets") {
        let ports = arr(subset, "/ports");
        for addr in arr(subset, "/addresses") {
            let ip = s(addr, "/ip").unwrap_or("");
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            for p in ports {
                all.push(format!("{ip}:{}", i(p, "/port").unwrap_or(0)));
            }
        }
    }
    if all.is_empty() {
        return "<none>".to_string();
    }
    let extra = all.len().saturating_sub(SHOWN);
    let mut text = all.into_iter().take(SHOWN).collect::<Vec<_>>().join(",");
    if extra > 0 {
        text.push_str(&format!(" + {extra} more..."));
    }
    text
}

// ---- nodes ----

/// `Ready`, `NotReady` or `Unknown` from the Ready condition, plus
/// `,SchedulingDisabled` when the node is cordoned.
pub(crate) fn node_status(node: &Value) -> String {
    let ready = arr(node, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == Some("Ready"))
        .and_then(|c| s(c, "/status"));
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

pub(crate) fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(role) = v.as_str().filter(|r| !r.is_empty())
            {
                roles.push(role.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    or_none(roles.join(","))
}

// ---- events ----

pub(crate) fn event_time(ev: &Value) -> Option<&str> {
    s(ev, "/lastTimestamp")
        .or_else(|| s(ev, "/eventTime"))
        .or_else(|| s(ev, "/firstTimestamp"))
        .or_else(|| s(ev, "/metadata/creationTimestamp"))
}

fn event_last_seen(ev: &Value, now: DateTime<Utc>) -> String {
    age_of(event_time(ev), now)
}

fn event_object(ev: &Value) -> String {
    let kind = s(ev, "/involvedObject/kind").unwrap_or("");
    let name = s(ev, "/involvedObject/name").unwrap_or("");
    match kind.parse::<Kind>() {
        Ok(k) => format!("{}/{name}", k.singular()),
        Err(_) => format!("{}/{name}", kind.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-03-01T12:00:00Z").unwrap()
    }

    const PLAIN: Layout = Layout {
        wide: false,
        namespace: false,
        event: false,
    };

    #[test]
    fn running_pod_row() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default",
                         "creationTimestamp": "2026-03-01T11:56:48Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-03-01T11:59:15Z"}}}
            ]}
        });
        assert_eq!(
            row(Kind::Pod, &pod, PLAIN, None, now()),
            vec!["web-1", "1/2", "Running", "2 (45s ago)", "3m12s"]
        );
        let wide = Layout {
            wide: true,
            namespace: true,
            event: true,
        };
        assert_eq!(
            header(Kind::Pod, wide),
            vec![
                "EVENT",
                "NAMESPACE",
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE"
            ]
        );
        assert_eq!(
            row(Kind::Pod, &pod, wide, Some("ADDED"), now()),
            vec![
                "ADDED",
                "default",
                "web-1",
                "1/2",
                "Running",
                "2 (45s ago)",
                "3m12s",
                "10.1.0.5",
                "n1"
            ]
        );
    }

    #[test]
    fn pod_status_follows_kubectl() {
        let cases = [
            (json!({}), "Pending"),
            (json!({"status": {"phase": "Running"}}), "Running"),
            (
                json!({"status": {"phase": "Pending", "containerStatuses": [
                    {"state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
                "ContainerCreating",
            ),
            (
                json!({"status": {"phase": "Running", "containerStatuses": [
                    {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 4}]}}),
                "CrashLoopBackOff",
            ),
            (
                json!({"status": {"phase": "Failed", "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}}),
                "Signal:9",
            ),
            (
                json!({"status": {"phase": "Failed", "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 3}}}]}}),
                "ExitCode:3",
            ),
            (
                json!({"status": {"phase": "Succeeded", "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "Completed",
            ),
            (
                json!({"status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                    {"ready": true, "state": {"running": {}}},
                    {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}),
                "Running",
            ),
            (
                json!({"spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}]},
                       "status": {"phase": "Pending", "initContainerStatuses": [
                    {"state": {"terminated": {"exitCode": 0}}},
                    {"state": {"running": {}}}]}}),
                "Init:1/2",
            ),
            (
                json!({"status": {"phase": "Pending", "initContainerStatuses": [
                    {"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
                "Init:ImagePullBackOff",
            ),
            (
                json!({"status": {"phase": "Pending", "initContainerStatuses": [
                    {"state": {"terminated": {"exitCode": 2}}}]}}),
                "Init:ExitCode:2",
            ),
            (
                json!({"metadata": {"deletionTimestamp": "2026-03-01T11:00:00Z"},
                       "status": {"phase": "Running"}}),
                "Terminating",
            ),
            (
                json!({"metadata": {"deletionTimestamp": "2026-03-01T11:00:00Z"},
                       "status": {"phase": "Running", "reason": "NodeLost"}}),
                "Unknown",
            ),
            (
                json!({"status": {"phase": "Failed", "reason": "Evicted"}}),
                "Evicted",
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(pod_status(&pod), want, "{pod}");
        }
    }

    #[test]
    fn node_status_roles_and_wide_columns() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-02-27T09:00:00Z",
                "labels": {"node-role.kubernetes.io/edge": "", "kubernetes.io/role": "gateway"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"},
                              {"type": "InternalIP", "address": "192.0.2.7"}],
                "nodeInfo": {"kubeletVersion": "v0.1.0", "osImage": "Debian",
                             "kernelVersion": "6.1.0", "architecture": "arm64"}
            }
        });
        let wide = Layout {
            wide: true,
            ..PLAIN
        };
        assert_eq!(
            row(Kind::Node, &node, wide, None, now()),
            vec![
                "n1",
                "Ready,SchedulingDisabled",
                "edge,gateway",
                "2d3h",
                "v0.1.0",
                "192.0.2.7",
                "Debian",
                "6.1.0",
                "arm64"
            ]
        );
        assert_eq!(node_status(&json!({})), "Unknown");
        assert_eq!(
            node_status(&json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
            "NotReady"
        );
        assert_eq!(node_roles(&json!({})), "<none>");
        // NAMESPACE is never added for cluster-scoped kinds.
        let ns = Layout {
            namespace: true,
            ..PLAIN
        };
        assert_eq!(header(Kind::Node, ns)[0], "NAME");
    }

    #[test]
    fn workload_and_service_rows() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"},
                         "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let wide = Layout {
            wide: true,
            ..PLAIN
        };
        assert_eq!(
            row(Kind::Deployment, &d, wide, None, now()),
            vec![
                "web",
                "2/3",
                "3",
                "2",
                "<unknown>",
                "nginx",
                "nginx:1",
                "app=web,tier notin (db)"
            ]
        );

        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "clusterIP": "10.96.0.10", "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            row(Kind::Service, &svc, wide, None, now()),
            vec![
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "<unknown>",
                "app=web"
            ]
        );

        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 2},
            "status": {"succeeded": 1, "startTime": "2026-03-01T11:59:00Z"}});
        assert_eq!(
            row(Kind::Job, &job, PLAIN, None, now())[1..3],
            ["1/2".to_string(), "60s".to_string()]
        );

        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.1.0.1"}, {"ip": "10.1.0.2"}, {"ip": "10.1.0.3"}, {"ip": "10.1.0.4"}],
            "ports": [{"port": 80}]}]});
        assert_eq!(
            row(Kind::Endpoints, &ep, PLAIN, None, now())[1],
            "10.1.0.1:80,10.1.0.2:80,10.1.0.3:80 + 1 more..."
        );
    }

    #[test]
    fn event_rows_and_names() {
        let ev = json!({"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff",
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "message": "Back-off restarting failed container\n",
            "lastTimestamp": "2026-03-01T11:59:50Z"});
        assert_eq!(
            row(Kind::Event, &ev, PLAIN, None, now()),
            vec![
                "10s",
                "Warning",
                "BackOff",
                "pod/web-1",
                "Back-off restarting failed container"
            ]
        );
        assert_eq!(
            resource_name(Kind::Deployment, &json!({"metadata": {"name": "web"}})),
            "deployment.apps/web"
        );
        let typed = with_type(Kind::Pod, &json!({"metadata": {"name": "p"}}));
        assert_eq!(typed["apiVersion"], "v1");
        assert_eq!(typed["kind"], "Pod");
    }
}
