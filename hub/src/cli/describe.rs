//! `skiff describe`: a human summary of objects (kind-specific for pods, nodes,
//! deployments and services, a generic one otherwise) followed by their events.
//!
//! Describers write tab-separated lines; [`tabwrite`] aligns them as kubectl does.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;
use skiff_api::Kind;

use super::Ctx;
use super::args::{Targets, parse_targets};
use super::client::ListOptions;
use super::error::{CliError, Failures};
use super::get::{items_of, no_resources};
use super::printers::{self, map_pairs, selector_string};
use super::table::{age_of, human_age, parse_time, tabwrite};

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// KIND [NAME...] or KIND/NAME...; without names, every object of the kind
    #[arg(required = true, value_name = "KIND [NAME...] | KIND/NAME")]
    resources: Vec<String>,
    /// Describe the objects matching this label selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    selector: Option<String>,
    /// Across all namespaces (without names)
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

pub(crate) fn run(ctx: &mut Ctx<'_>, a: &DescribeArgs) -> Result<(), CliError> {
    let targets = parse_targets(&a.resources)?;
    let objects: Vec<(Kind, Value)> = match targets {
        Targets::Named(pairs) => {
            if a.selector.is_some() {
                return Err(CliError::Usage(
                    "names cannot be given together with a selector".to_string(),
                ));
            }
            let mut failures = Failures::default();
            let mut first = true;
            for (kind, name) in pairs {
                match ctx.client.get(kind, &ctx.namespace, &name) {
                    Ok(obj) => {
                        let text = describe(ctx, kind, &obj)?;
                        if !first {
                            writeln!(ctx.out)?;
                        }
                        first = false;
                        ctx.out.write_all(text.as_bytes())?;
                    }
                    Err(e) => failures.push_api(ctx.err, e)?,
                }
            }
            return failures.finish(ctx.err);
        }
        Targets::All(kinds) => {
            let ns = (!a.all_namespaces).then_some(ctx.namespace.clone());
            let opts = ListOptions {
                label_selector: a.selector.clone(),
                field_selector: None,
            };
            let mut objects = Vec::new();
            for kind in &kinds {
                let list = ctx.client.list(*kind, ns.as_deref(), &opts)?;
                objects.extend(items_of(*kind, &list).into_iter().map(|o| (*kind, o)));
            }
            if objects.is_empty() {
                writeln!(ctx.err, "{}", no_resources(&kinds, ns.as_deref()))?;
                return Ok(());
            }
            objects
        }
    };
    for (i, (kind, obj)) in objects.iter().enumerate() {
        let text = describe(ctx, *kind, obj)?;
        if i > 0 {
            writeln!(ctx.out)?;
        }
        ctx.out.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// The full description of one object, events included.
fn describe(ctx: &mut Ctx<'_>, kind: Kind, obj: &Value) -> Result<String, CliError> {
    let now = ctx.now;
    let mut d = String::new();
    match kind {
        Kind::Pod => describe_pod(&mut d, obj, now),
        Kind::Node => {
            let name = printers::name_of(obj).to_string();
            let pods = ctx.client.list(
                Kind::Pod,
                None,
                &ListOptions {
                    label_selector: None,
                    field_selector: Some(format!("spec.nodeName={name}")),
                },
            )?;
            describe_node(&mut d, obj, &items_of(Kind::Pod, &pods), now);
        }
        Kind::Deployment => describe_deployment(&mut d, obj),
        Kind::Service => {
            let endpoints = ctx.client.get_opt(
                Kind::Endpoints,
                printers::namespace_of(obj),
                printers::name_of(obj),
            )?;
            describe_service(&mut d, obj, endpoints.as_ref());
        }
        _ => describe_generic(&mut d, kind, obj),
    }
    let events = if kind == Kind::Event {
        None
    } else {
        let ns = kind.namespaced().then(|| printers::namespace_of(obj));
        let list = ctx.client.list(Kind::Event, ns, &ListOptions::default())?;
        Some(matching_events(kind, obj, &items_of(Kind::Event, &list)))
    };
    if let Some(events) = events {
        write_events(&mut d, &events, now);
    }
    Ok(tabwrite(&d, 2))
}

// ---- small writers ----

fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A scalar as text: strings bare, numbers and booleans as JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn none_if_empty(x: String) -> String {
    if x.is_empty() {
        "<none>".to_string()
    } else {
        x
    }
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

fn field(d: &mut String, level: usize, key: &str, value: impl AsRef<str>) {
    let _ = writeln!(d, "{}{key}:\t{}", indent(level), value.as_ref());
}

fn heading(d: &mut String, level: usize, key: &str) {
    let _ = writeln!(d, "{}{key}:", indent(level));
}

/// A multi-valued field: the first value beside the key, the rest below it.
fn multi(d: &mut String, level: usize, key: &str, values: &[String]) {
    if values.is_empty() {
        field(d, level, key, "<none>");
        return;
    }
    for (i, v) in values.iter().enumerate() {
        if i == 0 {
            field(d, level, key, v);
        } else {
            let _ = writeln!(d, "{}\t{v}", indent(level));
        }
    }
}

fn map_entries(v: Option<&Value>, sep: &str) -> Vec<String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}{sep}{}", text(Some(v))))
                .collect()
        })
        .unwrap_or_default()
}

fn table(d: &mut String, level: usize, header: &[&str], rows: &[Vec<String>]) {
    let pad = indent(level);
    let _ = writeln!(d, "{pad}{}", header.join("\t"));
    let dashes: Vec<String> = header.iter().map(|h| "-".repeat(h.len())).collect();
    let _ = writeln!(d, "{pad}{}", dashes.join("\t"));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| c.replace('\t', " ")).collect();
        let _ = writeln!(d, "{pad}{}", cells.join("\t"));
    }
}

/// RFC 1123 with a numeric zone, as kubectl shows timestamps.
fn timestamp(v: Option<&str>) -> String {
    match v.and_then(parse_time) {
        Some(t) => t.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        None => v.unwrap_or("<unset>").to_string(),
    }
}

/// Name, Namespace, Labels, Annotations and, when set, the controller.
fn header(d: &mut String, kind: Kind, obj: &Value, creation: bool) {
    field(d, 0, "Name", printers::name_of(obj));
    if kind.namespaced() {
        field(d, 0, "Namespace", printers::namespace_of(obj));
    }
    if creation {
        field(
            d,
            0,
            "CreationTimestamp",
            timestamp(s(obj, "/metadata/creationTimestamp")),
        );
    }
    labels_and_annotations(d, obj);
    if let Some(deleted) = s(obj, "/metadata/deletionTimestamp") {
        field(d, 0, "Deletion Requested", timestamp(Some(deleted)));
    }
    let finalizers: Vec<String> = arr(obj, "/metadata/finalizers")
        .iter()
        .map(|f| text(Some(f)))
        .collect();
    if !finalizers.is_empty() {
        field(d, 0, "Finalizers", format!("[{}]", finalizers.join(" ")));
    }
}

fn controlled_by(d: &mut String, obj: &Value) {
    if let Some(owner) = arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    {
        field(
            d,
            0,
            "Controlled By",
            format!(
                "{}/{}",
                s(owner, "/kind").unwrap_or(""),
                s(owner, "/name").unwrap_or("")
            ),
        );
    }
}

// ---- pods ----

fn describe_pod(d: &mut String, pod: &Value, now: DateTime<Utc>) {
    // kubectl's order: identity, placement, then metadata.
    field(d, 0, "Name", printers::name_of(pod));
    field(d, 0, "Namespace", printers::namespace_of(pod));
    field(
        d,
        0,
        "Service Account",
        s(pod, "/spec/serviceAccountName").unwrap_or("default"),
    );
    let node = match (s(pod, "/spec/nodeName"), s(pod, "/status/hostIP")) {
        (Some(n), Some(ip)) => format!("{n}/{ip}"),
        (Some(n), None) => n.to_string(),
        _ => "<none>".to_string(),
    };
    field(d, 0, "Node", node);
    if let Some(t) = s(pod, "/status/startTime") {
        field(d, 0, "Start Time", timestamp(Some(t)));
    }
    labels_and_annotations(d, pod);
    let status = match s(pod, "/metadata/deletionTimestamp") {
        Some(t) => match parse_time(t) {
            Some(at) if at > now => format!("Terminating (lasts {})", human_age(now, at)),
            _ => "Terminating".to_string(),
        },
        None => s(pod, "/status/phase").unwrap_or("Pending").to_string(),
    };
    field(d, 0, "Status", status);
    if let Some(r) = s(pod, "/status/reason") {
        field(d, 0, "Reason", r);
    }
    if let Some(m) = s(pod, "/status/message") {
        field(d, 0, "Message", m);
    }
    field(d, 0, "IP", s(pod, "/status/podIP").unwrap_or(""));
    controlled_by(d, pod);

    let statuses = |ptr: &str| arr(pod, ptr).to_vec();
    let init = arr(pod, "/spec/initContainers");
    if !init.is_empty() {
        heading(d, 0, "Init Containers");
        for c in init {
            container(d, c, &statuses("/status/initContainerStatuses"), true);
        }
    }
    heading(d, 0, "Containers");
    for c in arr(pod, "/spec/containers") {
        container(d, c, &statuses("/status/containerStatuses"), true);
    }

    let conditions = arr(pod, "/status/conditions");
    if !conditions.is_empty() {
        heading(d, 0, "Conditions");
        let rows: Vec<Vec<String>> = conditions
            .iter()
            .map(|c| vec![text(c.get("type")), text(c.get("status"))])
            .collect();
        table(d, 1, &["Type", "Status"], &rows);
    }
    volumes(d, 0, arr(pod, "/spec/volumes"));
    multi(
        d,
        0,
        "Node-Selectors",
        &map_entries(pod.pointer("/spec/nodeSelector"), "="),
    );
    let tolerations: Vec<String> = arr(pod, "/spec/tolerations")
        .iter()
        .map(toleration)
        .collect();
    multi(d, 0, "Tolerations", &tolerations);
}

/// One container's spec, and its state when a status for it exists.
fn container(d: &mut String, c: &Value, statuses: &[Value], with_state: bool) {
    let name = s(c, "/name").unwrap_or("");
    heading(d, 1, name);
    let st = statuses.iter().find(|x| s(x, "/name") == Some(name));
    if let Some(st) = st
        && let Some(id) = s(st, "/containerID")
    {
        field(d, 2, "Container ID", id);
    }
    field(d, 2, "Image", s(c, "/image").unwrap_or(""));
    if let Some(st) = st
        && let Some(id) = s(st, "/imageID")
    {
        field(d, 2, "Image ID", id);
    }
    let ports: Vec<String> = arr(c, "/ports")
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                text(p.get("containerPort")),
                s(p, "/protocol").unwrap_or("TCP")
            )
        })
        .collect();
    let host_ports: Vec<String> = arr(c, "/ports")
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.get("hostPort").and_then(Value::as_i64).unwrap_or(0),
                s(p, "/protocol").unwrap_or("TCP")
            )
        })
        .collect();
    if ports.len() > 1 {
        field(d, 2, "Ports", ports.join(", "));
        field(d, 2, "Host Ports", host_ports.join(", "));
    } else {
        field(d, 2, "Port", none_if_empty(ports.join("")));
        field(d, 2, "Host Port", none_if_empty(host_ports.join("")));
    }
    for (key, ptr) in [("Command", "/command"), ("Args", "/args")] {
        let words = arr(c, ptr);
        if !words.is_empty() {
            heading(d, 2, key);
            for w in words {
                let _ = writeln!(d, "{}{}", indent(3), text(Some(w)));
            }
        }
    }
    if with_state && let Some(st) = st {
        container_state(d, "State", st.get("state"));
        if st
            .get("lastState")
            .is_some_and(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            container_state(d, "Last State", st.get("lastState"));
        }
        field(
            d,
            2,
            "Ready",
            if st.get("ready").and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            },
        );
        field(
            d,
            2,
            "Restart Count",
            st.get("restartCount")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .to_string(),
        );
    }
    for (key, ptr) in [
        ("Limits", "/resources/limits"),
        ("Requests", "/resources/requests"),
    ] {
        let entries = map_entries(c.pointer(ptr), ":\t");
        if !entries.is_empty() {
            heading(d, 2, key);
            for e in entries {
                let _ = writeln!(d, "{}{e}", indent(3));
            }
        }
    }
    for (key, ptr) in [
        ("Liveness", "/livenessProbe"),
        ("Readiness", "/readinessProbe"),
        ("Startup", "/startupProbe"),
    ] {
        if let Some(p) = c.pointer(ptr).filter(|p| p.is_object()) {
            field(d, 2, key, probe(p));
        }
    }
    let env = arr(c, "/env");
    if env.is_empty() {
        field(d, 2, "Environment", "<none>");
    } else {
        heading(d, 2, "Environment");
        for e in env {
            let value = match e.get("value") {
                Some(v) => text(Some(v)),
                None => match e.get("valueFrom") {
                    Some(from) => format!("({})", from),
                    None => String::new(),
                },
            };
            let _ = writeln!(d, "{}{}:\t{value}", indent(3), s(e, "/name").unwrap_or(""));
        }
    }
    let mounts = arr(c, "/volumeMounts");
    if mounts.is_empty() {
        field(d, 2, "Mounts", "<none>");
    } else {
        heading(d, 2, "Mounts");
        for m in mounts {
            let ro = m.get("readOnly").and_then(Value::as_bool) == Some(true);
            let _ = writeln!(
                d,
                "{}{} from {} ({})",
                indent(3),
                s(m, "/mountPath").unwrap_or(""),
                s(m, "/name").unwrap_or(""),
                if ro { "ro" } else { "rw" }
            );
        }
    }
}

fn container_state(d: &mut String, key: &str, state: Option<&Value>) {
    let Some(state) = state.and_then(Value::as_object) else {
        field(d, 2, key, "Waiting");
        return;
    };
    if let Some(r) = state.get("running") {
        field(d, 2, key, "Running");
        field(d, 3, "Started", timestamp(s(r, "/startedAt")));
    } else if let Some(t) = state.get("terminated") {
        field(d, 2, key, "Terminated");
        if let Some(reason) = s(t, "/reason") {
            field(d, 3, "Reason", reason);
        }
        if let Some(m) = s(t, "/message") {
            field(d, 3, "Message", m.trim());
        }
        field(d, 3, "Exit Code", text(t.get("exitCode")));
        if let Some(sig) = t
            .get("signal")
            .filter(|v| v.as_i64().is_some_and(|x| x != 0))
        {
            field(d, 3, "Signal", text(Some(sig)));
        }
        if let Some(started) = s(t, "/startedAt") {
            field(d, 3, "Started", timestamp(Some(started)));
        }
        if let Some(finished) = s(t, "/finishedAt") {
            field(d, 3, "Finished", timestamp(Some(finished)));
        }
    } else {
        field(d, 2, key, "Waiting");
        if let Some(w) = state.get("waiting") {
            if let Some(reason) = s(w, "/reason") {
                field(d, 3, "Reason", reason);
            }
            if let Some(m) = s(w, "/message") {
                field(d, 3, "Message", m.trim());
            }
        }
    }
}

/// `http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3`.
fn probe(p: &Value) -> String {
    let action = if let Some(h) = p.get("httpGet") {
        format!(
            "http-get {}://{}:{}{}",
            s(h, "/scheme").unwrap_or("HTTP").to_ascii_lowercase(),
            s(h, "/host").unwrap_or(""),
            text(h.get("port")),
            s(h, "/path").unwrap_or("/")
        )
    } else if let Some(t) = p.get("tcpSocket") {
        format!(
            "tcp-socket {}:{}",
            s(t, "/host").unwrap_or(""),
            text(t.get("port"))
        )
    } else if let Some(e) = p.get("exec") {
        let cmd: Vec<String> = arr(e, "/command").iter().map(|w| text(Some(w))).collect();
        format!("exec [{}]", cmd.join(" "))
    } else {
        "unknown".to_string()
    };
    let n = |k: &str, default: i64| p.get(k).and_then(Value::as_i64).unwrap_or(default);
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds", 0),
        n("timeoutSeconds", 1),
        n("periodSeconds", 10),
        n("successThreshold", 1),
        n("failureThreshold", 3)
    )
}

/// `key=value:Effect op=Exists for 300s`, as kubectl prints a toleration.
fn toleration(t: &Value) -> String {
    let mut out = s(t, "/key").unwrap_or("").to_string();
    if let Some(v) = s(t, "/value").filter(|v| !v.is_empty()) {
        out.push('=');
        out.push_str(v);
    }
    if let Some(e) = s(t, "/effect").filter(|e| !e.is_empty()) {
        out.push(':');
        out.push_str(e);
    }
    if s(t, "/operator") == Some("Exists") {
        out.push_str(" op=Exists");
    }
    if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
        out.push_str(&format!(" for {secs}s"));
    }
    out.trim().to_string()
}

fn taint(t: &Value) -> String {
    let mut out = s(t, "/key").unwrap_or("").to_string();
    if let Some(v) = s(t, "/value").filter(|v| !v.is_empty()) {
        out.push('=');
        out.push_str(v);
    }
    out.push(':');
    out.push_str(s(t, "/effect").unwrap_or(""));
    out
}

fn volumes(d: &mut String, level: usize, vols: &[Value]) {
    if vols.is_empty() {
        field(d, level, "Volumes", "<none>");
        return;
    }
    heading(d, level, "Volumes");
    for v in vols {
        heading(d, level + 1, s(v, "/name").unwrap_or(""));
        let Some(obj) = v.as_object() else { continue };
        for (source, spec) in obj.iter().filter(|(k, _)| k.as_str() != "name") {
            field(d, level + 2, "Type", upper_first(source));
            if let Some(m) = spec.as_object() {
                for (k, val) in m {
                    field(d, level + 2, &upper_first(k), text(Some(val)));
                }
            }
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// ---- nodes ----

fn describe_node(d: &mut String, node: &Value, pods: &[Value], now: DateTime<Utc>) {
    field(d, 0, "Name", printers::name_of(node));
    field(d, 0, "Roles", printers::node_roles(node));
    multi(
        d,
        0,
        "Labels",
        &map_entries(node.pointer("/metadata/labels"), "="),
    );
    multi(
        d,
        0,
        "Annotations",
        &map_entries(node.pointer("/metadata/annotations"), ": "),
    );
    field(
        d,
        0,
        "CreationTimestamp",
        timestamp(s(node, "/metadata/creationTimestamp")),
    );
    let taints: Vec<String> = arr(node, "/spec/taints").iter().map(taint).collect();
    multi(d, 0, "Taints", &taints);
    field(
        d,
        0,
        "Unschedulable",
        (node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)).to_string(),
    );
    let conditions = arr(node, "/status/conditions");
    if conditions.is_empty() {
        field(d, 0, "Conditions", "<none>");
    } else {
        heading(d, 0, "Conditions");
        let rows: Vec<Vec<String>> = conditions
            .iter()
            .map(|c| {
                vec![
                    text(c.get("type")),
                    text(c.get("status")),
                    timestamp(s(c, "/lastHeartbeatTime")),
                    timestamp(s(c, "/lastTransitionTime")),
                    text(c.get("reason")),
                    text(c.get("message")),
                ]
            })
            .collect();
        table(
            d,
            1,
            &[
                "Type",
                "Status",
                "LastHeartbeatTime",
                "LastTransitionTime",
                "Reason",
                "Message",
            ],
            &rows,
        );
    }
    let addresses = arr(node, "/status/addresses");
    if addresses.is_empty() {
        field(d, 0, "Addresses", "<none>");
    } else {
        heading(d, 0, "Addresses");
        for a in addresses {
            field(
                d,
                1,
                s(a, "/type").unwrap_or(""),
                s(a, "/address").unwrap_or(""),
            );
        }
    }
    for (key, ptr) in [
        ("Capacity", "/status/capacity"),
        ("Allocatable", "/status/allocatable"),
    ] {
        let entries = map_entries(node.pointer(ptr), ":\t");
        if entries.is_empty() {
            field(d, 0, key, "<none>");
        } else {
            heading(d, 0, key);
            for e in entries {
                let _ = writeln!(d, "{}{e}", indent(1));
            }
        }
    }
    if let Some(info) = node.pointer("/status/nodeInfo").and_then(Value::as_object) {
        heading(d, 0, "System Info");
        for (k, v) in info {
            field(d, 1, &title_words(k), text(Some(v)));
        }
    }
    if let Some(cidr) = s(node, "/spec/podCIDR") {
        field(d, 0, "PodCIDR", cidr);
    }
    let running: Vec<&Value> = pods
        .iter()
        .filter(|p| !matches!(s(p, "/status/phase"), Some("Succeeded" | "Failed")))
        .collect();
    field(
        d,
        0,
        "Non-terminated Pods",
        format!("({} in total)", running.len()),
    );
    let rows: Vec<Vec<String>> = running
        .iter()
        .map(|p| {
            vec![
                printers::namespace_of(p).to_string(),
                printers::name_of(p).to_string(),
                printers::pod_status(p),
                age_of(s(p, "/metadata/creationTimestamp"), now),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(d, 1, &["Namespace", "Name", "Status", "Age"], &rows);
    }
}

/// `kernelVersion` becomes `Kernel Version`.
fn title_words(key: &str) -> String {
    let mut out = String::new();
    for (i, ch) in key.chars().enumerate() {
        if i == 0 {
            out.extend(ch.to_uppercase());
        } else if ch.is_ascii_uppercase() {
            out.push(' ');
            out.push(ch);
        } else {
            out.push(ch);
        }
    }
    out
}

// ---- deployments and services ----

fn describe_deployment(d: &mut String, dep: &Value) {
    header(d, Kind::Deployment, dep, true);
    field(
        d,
        0,
        "Selector",
        none_if_empty(selector_string(dep.pointer("/spec/selector"))),
    );
    let n = |p: &str| dep.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let desired = dep
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    field(
        d,
        0,
        "Replicas",
        format!(
            "{desired} desired | {} updated | {} total | {} available | {} unavailable",
            n("/status/updatedReplicas"),
            n("/status/replicas"),
            n("/status/availableReplicas"),
            n("/status/unavailableReplicas")
        ),
    );
    let strategy = s(dep, "/spec/strategy/type").unwrap_or("RollingUpdate");
    field(d, 0, "StrategyType", strategy);
    field(
        d,
        0,
        "MinReadySeconds",
        n("/spec/minReadySeconds").to_string(),
    );
    if strategy == "RollingUpdate" {
        let ru = |k: &str| {
            dep.pointer(&format!("/spec/strategy/rollingUpdate/{k}"))
                .map(|v| text(Some(v)))
                .unwrap_or_else(|| "25%".to_string())
        };
        field(
            d,
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                ru("maxUnavailable"),
                ru("maxSurge")
            ),
        );
    }
    pod_template(d, dep.pointer("/spec/template"));
    conditions_table(d, dep);
}

fn pod_template(d: &mut String, template: Option<&Value>) {
    heading(d, 0, "Pod Template");
    let Some(t) = template else {
        let _ = writeln!(d, "{}<none>", indent(1));
        return;
    };
    multi(
        d,
        1,
        "Labels",
        &map_entries(t.pointer("/metadata/labels"), "="),
    );
    if let Some(sa) = s(t, "/spec/serviceAccountName") {
        field(d, 1, "Service Account", sa);
    }
    heading(d, 1, "Containers");
    for c in arr(t, "/spec/containers") {
        let mut inner = String::new();
        container(&mut inner, c, &[], false);
        // Containers sit one level deeper inside a template.
        for line in inner.lines() {
            let _ = writeln!(d, "{}{line}", indent(1));
        }
    }
    volumes(d, 1, arr(t, "/spec/volumes"));
    multi(
        d,
        1,
        "Node-Selectors",
        &map_entries(t.pointer("/spec/nodeSelector"), "="),
    );
    let tolerations: Vec<String> = arr(t, "/spec/tolerations").iter().map(toleration).collect();
    multi(d, 1, "Tolerations", &tolerations);
}

fn conditions_table(d: &mut String, obj: &Value) {
    let conditions = arr(obj, "/status/conditions");
    if conditions.is_empty() {
        return;
    }
    heading(d, 0, "Conditions");
    let rows: Vec<Vec<String>> = conditions
        .iter()
        .map(|c| {
            vec![
                text(c.get("type")),
                text(c.get("status")),
                text(c.get("reason")),
            ]
        })
        .collect();
    table(d, 1, &["Type", "Status", "Reason"], &rows);
}

fn describe_service(d: &mut String, svc: &Value, endpoints: Option<&Value>) {
    header(d, Kind::Service, svc, false);
    field(
        d,
        0,
        "Selector",
        none_if_empty(map_pairs(svc.pointer("/spec/selector"))),
    );
    field(d, 0, "Type", s(svc, "/spec/type").unwrap_or("ClusterIP"));
    field(
        d,
        0,
        "IP",
        none_if_empty(s(svc, "/spec/clusterIP").unwrap_or("").to_string()),
    );
    let ports = arr(svc, "/spec/ports");
    for p in ports {
        let name = s(p, "/name").filter(|n| !n.is_empty()).unwrap_or("<unset>");
        let proto = s(p, "/protocol").unwrap_or("TCP");
        field(
            d,
            0,
            "Port",
            format!("{name}  {}/{proto}", text(p.get("port"))),
        );
        let target = p
            .get("targetPort")
            .map(|t| text(Some(t)))
            .unwrap_or_else(|| text(p.get("port")));
        field(d, 0, "TargetPort", format!("{target}/{proto}"));
        if let Some(np) = p
            .get("nodePort")
            .filter(|v| v.as_i64().is_some_and(|x| x != 0))
        {
            field(
                d,
                0,
                "NodePort",
                format!("{name}  {}/{proto}", text(Some(np))),
            );
        }
        let eps: Vec<String> = endpoints
            .map(|ep| {
                arr(ep, "/subsets")
                    .iter()
                    .flat_map(|sub| {
                        arr(sub, "/addresses")
                            .iter()
                            .map(|a| format!("{}:{target}", s(a, "/ip").unwrap_or("")))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        field(d, 0, "Endpoints", none_if_empty(eps.join(",")));
    }
    if ports.is_empty() {
        field(d, 0, "Port", "<none>");
    }
}

// ---- everything else ----

/// Identity and metadata, then each remaining top-level field as indented YAML.
fn describe_generic(d: &mut String, kind: Kind, obj: &Value) {
    header(d, kind, obj, true);
    controlled_by(d, obj);
    if let Some(sel) = obj
        .pointer("/spec/selector")
        .filter(|_| kind != Kind::Endpoints)
    {
        field(d, 0, "Selector", none_if_empty(selector_string(Some(sel))));
    }
    let Some(m) = obj.as_object() else { return };
    for (k, v) in m {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match v {
            Value::Object(_) | Value::Array(_) => {
                heading(d, 0, &upper_first(k));
                let yaml = serde_yaml_ng::to_string(v).unwrap_or_else(|_| v.to_string());
                for line in yaml.lines() {
                    // Tabs belong to the layout; a tab inside a value would split it.
                    let _ = writeln!(d, "{}{}", indent(1), line.replace('\t', " "));
                }
            }
            other => field(d, 0, &upper_first(k), text(Some(other))),
        }
    }
}

// ---- events ----

/// Events about `obj`: the same UID when both sides have one, else the same kind,
/// namespace and name. Oldest first.
fn matching_events(kind: Kind, obj: &Value, events: &[Value]) -> Vec<Value> {
    let uid = s(obj, "/metadata/uid").filter(|u| !u.is_empty());
    let name = printers::name_of(obj);
    let ns = printers::namespace_of(obj);
    let mut out: Vec<Value> = events
        .iter()
        .filter(|e| {
            let ev_uid = s(e, "/involvedObject/uid").filter(|u| !u.is_empty());
            match (uid, ev_uid) {
                (Some(a), Some(b)) => a == b,
                _ => {
                    s(e, "/involvedObject/kind") == Some(kind.name())
                        && s(e, "/involvedObject/name") == Some(name)
                        && s(e, "/involvedObject/namespace").unwrap_or("") == ns
                }
            }
        })
        .cloned()
        .collect();
    out.sort_by_key(|e| printers::event_time(e).and_then(parse_time));
    out
}

fn write_events(d: &mut String, events: &[Value], now: DateTime<Utc>) {
    if events.is_empty() {
        field(d, 0, "Events", "<none>");
        return;
    }
    heading(d, 0, "Events");
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let last = age_of(printers::event_time(e), now);
            let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
            let age = match s(e, "/firstTimestamp") {
                Some(first) if count > 1 => {
                    format!("{last} (x{count} over {})", age_of(Some(first), now))
                }
                _ => last,
            };
            let from = s(e, "/source/component")
                .or_else(|| s(e, "/reportingComponent"))
                .unwrap_or("");
            let from = match s(e, "/source/host") {
                Some(h) if !h.is_empty() => format!("{from}, {h}"),
                _ => from.to_string(),
            };
            vec![
                text(e.get("type")),
                text(e.get("reason")),
                age,
                from,
                s(e, "/message").unwrap_or("").trim().replace('\n', " "),
            ]
        })
        .collect();
    table(d, 1, &["Type", "Reason", "Age", "From", "Message"], &rows);
}

/// The `Labels:` and `Annotations:` lines every kind's description starts with.
fn labels_and_annotations(d: &mut String, obj: &Value) {
    multi(
        d,
        0,
        "Labels",
        &map_entries(obj.pointer("/metadata/labels"), "="),
    );
    multi(
        d,
        0,
        "Annotations",
        &map_entries(obj.pointer("/metadata/annotations"), ": "),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-03-01T12:00:00Z").unwrap()
    }

    #[test]
    fn pod_description_has_the_kubectl_sections() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default", "uid": "u1",
                "labels": {"app": "web", "tier": "fe"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-abc", "uid": "r1", "controller": true}]},
            "spec": {"nodeName": "n1", "nodeSelector": {"zone": "north"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                 "effect": "NoSchedule"},
                                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}],
                "volumes": [{"name": "data", "emptyDir": {"medium": "Memory"}}],
                "containers": [{"name": "web", "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "hostIP": "192.0.2.7",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 1,
                    "state": {"running": {"startedAt": "2026-03-01T11:00:00Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        });
        let mut d = String::new();
        describe_pod(&mut d, &pod, now());
        let out = tabwrite(&d, 2);
        for want in [
            "Name:             web-1\n",
            "Namespace:        default\n",
            "Node:             n1/192.0.2.7\n",
            "Labels:           app=web\n                  tier=fe\n",
            "Status:           Running\n",
            "IP:               10.1.0.5\n",
            "Controlled By:    ReplicaSet/web-abc\n",
            "    Image:          nginx:1\n",
            "    Port:           80/TCP\n",
            "    State:          Running\n      Started:      Sun, 01 Mar 2026 11:00:00 +0000\n",
            "    Last State:     Terminated\n      Reason:       OOMKilled\n      Exit Code:    137\n",
            "    Ready:          True\n",
            "    Restart Count:  1\n",
            // As Go's tabwriter (and so kubectl) aligns them: a line without a tab ends a
            // block, so `cpu:` lines up with the lines after it.
            "    Limits:\n      memory:  64Mi\n    Requests:\n      cpu:        100m\n    Liveness:     http-get",
            "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3\n",
            "    Mounts:\n      /data from data (rw)\n",
            "Conditions:\n  Type   Status\n  ----   ------\n  Ready  True\n",
            "Volumes:\n  data:\n    Type:        EmptyDir\n    Medium:      Memory\n",
            "Node-Selectors:  zone=north\n",
            "Tolerations:     dedicated=gpu:NoSchedule\n                 node.kubernetes.io/not-ready:NoExecute op=Exists for 300s\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn node_description_lists_taints_conditions_and_pods() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {"zone": "north"}},
            "spec": {"unschedulable": true, "taints": [
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "maint", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AgentReady"}],
                "addresses": [{"type": "InternalIP", "address": "192.0.2.7"}],
                "capacity": {"cpu": "4", "memory": "2Gi"},
                "nodeInfo": {"kernelVersion": "6.1.0", "architecture": "arm64"}}
        });
        let pods = vec![
            json!({"metadata": {"name": "a", "namespace": "default",
                                "creationTimestamp": "2026-03-01T11:55:00Z"},
                   "status": {"phase": "Running"}}),
            json!({"metadata": {"name": "done", "namespace": "default"},
                   "status": {"phase": "Succeeded"}}),
        ];
        let mut d = String::new();
        describe_node(&mut d, &node, &pods, now());
        let out = tabwrite(&d, 2);
        for want in [
            "Taints:             dedicated=gpu:NoSchedule\n                    maint:NoExecute\n",
            "Unschedulable:      true\n",
            "  InternalIP:  192.0.2.7\n",
            "  cpu:        4\n",
            "  Kernel Version:     6.1.0\n",
            "Non-terminated Pods:  (1 in total)\n",
            "  default             a     Running  5m\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("done"), "{out}");
    }

    #[test]
    fn deployment_description_summarizes_replicas_and_template() {
        let dep = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2,
                "unavailableReplicas": 1,
                "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}});
        let mut d = String::new();
        describe_deployment(&mut d, &dep);
        let out = tabwrite(&d, 2);
        for want in [
            "Selector:               app=web\n",
            "Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n",
            "StrategyType:           RollingUpdate\n",
            "RollingUpdateStrategy:  25% max unavailable, 25% max surge\n",
            "Pod Template:\n  Labels:  app=web\n  Containers:\n    nginx:\n",
            "      Image:        nginx:1\n",
            "Available  False   MinimumReplicasUnavailable\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }

    #[test]
    fn events_match_by_uid_or_by_kind_and_name() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}});
        let events = vec![
            json!({"involvedObject": {"kind": "Pod", "name": "web", "uid": "u1"},
                   "reason": "Started", "lastTimestamp": "2026-03-01T11:59:00Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "web", "uid": "old"},
                   "reason": "Killed"}),
            json!({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                   "reason": "Scheduled", "lastTimestamp": "2026-03-01T11:58:00Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "other", "namespace": "default"},
                   "reason": "Scheduled"}),
        ];
        let got = matching_events(Kind::Pod, &pod, &events);
        let reasons: Vec<&str> = got.iter().map(|e| e["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, vec!["Scheduled", "Started"]);

        let mut d = String::new();
        write_events(
            &mut d,
            &[json!({"type": "Warning", "reason": "BackOff", "count": 4,
                "firstTimestamp": "2026-03-01T11:50:00Z", "lastTimestamp": "2026-03-01T11:59:30Z",
                "source": {"component": "skiff-agent", "host": "n1"}, "message": "restarting"})],
            now(),
        );
        let out = tabwrite(&d, 2);
        assert!(
            out.contains("  Warning  BackOff  30s (x4 over 10m)  skiff-agent, n1  restarting"),
            "{out}"
        );
        let mut d = String::new();
        write_events(&mut d, &[], now());
        assert_eq!(tabwrite(&d, 2), "Events:  <none>\n");
    }

    #[test]
    fn probes_and_tolerations_read_like_kubectl() {
        assert_eq!(
            probe(&json!({"exec": {"command": ["cat", "/tmp/ok"]}, "periodSeconds": 5})),
            "exec [cat /tmp/ok] delay=0s timeout=1s period=5s #success=1 #failure=3"
        );
        assert_eq!(
            probe(&json!({"tcpSocket": {"port": 53}})),
            "tcp-socket :53 delay=0s timeout=1s period=10s #success=1 #failure=3"
        );
        assert_eq!(toleration(&json!({"operator": "Exists"})), "op=Exists");
    }
}
