//! Turning a pod's container (plus its image config) into an OCI runtime spec
//! (`config.json`): the process (Kubernetes' command/args/env/workingDir rules over the
//! image's), namespaces (the pod sandbox's shared ones), mounts (volumes, the pod's
//! /etc files), cgroup limits, capabilities, seccomp, masked and read-only paths.
//! Pure: everything it needs comes in as plain data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use skiff_api::resources::{Container, Pod};

use crate::image::ImageConfig;

use super::seccomp;

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernels Skiff runs on know, for privileged containers.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

/// runc's default masked paths.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// CFS period Skiff uses with a CPU limit (the Kubernetes default).
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container {container}: no command (neither the spec nor the image gives one)")]
    NoCommand { container: String },
    #[error("container {container}: {what} {value:?} is not valid: {why}")]
    Invalid {
        container: String,
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("container {container}: user {user:?} is not in the image's /etc/passwd")]
    UnknownUser { container: String, user: String },
    #[error("container {container}: volume mount {volume:?} names no volume of the pod")]
    NoSuchVolume { container: String, volume: String },
}

/// The namespaces a container joins instead of creating.
#[derive(Debug, Clone, Default)]
pub(crate) struct SandboxPaths {
    /// `None`: the host's network namespace (hostNetwork).
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    /// `None`: the host's UTS namespace (hostNetwork).
    pub uts: Option<PathBuf>,
}

/// A volume mount resolved to a host path.
#[derive(Debug, Clone)]
pub(crate) struct HostMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// What a container spec is made from.
#[derive(Debug)]
pub(crate) struct SpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    /// The image's top layers, top first, for resolving user names.
    pub layers_top_first: Vec<&'a Path>,
    pub rootfs: &'a Path,
    pub sandbox: &'a SandboxPaths,
    pub mounts: Vec<HostMount>,
    /// The pod's hosts, resolv.conf and hostname files.
    pub etc_files: [(&'a Path, &'static str); 3],
    pub cgroups_path: String,
    pub pids_limit: i64,
    /// The open-files hard limit containers get: the agent's own, which it may not raise.
    pub nofile_hard: u64,
    /// Whether the default seccomp profile may come precompiled from the bundle (see
    /// [`seccomp::PRECOMPILED`]); it does for containers with no_new_privs set.
    pub precompiled_seccomp: bool,
}

/// The process part: argv, env and cwd, by Kubernetes' rules.
pub(crate) fn process_args(
    container: &Container,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = if !container.command.is_empty() {
        container
            .command
            .iter()
            .chain(&container.args)
            .cloned()
            .collect()
    } else if !container.args.is_empty() {
        image
            .entrypoint
            .iter()
            .chain(&container.args)
            .cloned()
            .collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand {
            container: container.name.clone(),
        });
    }
    Ok(argv)
}

/// Image env, then the container's (a later name replaces an earlier one).
pub(crate) fn process_env(pod: &Pod, container: &Container, image: &ImageConfig) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        if values.insert(k.to_string(), v).is_none() {
            order.push(k.to_string());
        }
    };
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        let (k, v) = DEFAULT_PATH.split_once('=').expect("PATH=...");
        set(k, v.to_string());
    }
    for e in &image.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v.to_string());
    }
    let hostname = pod_hostname(pod);
    set("HOSTNAME", hostname);
    for e in &container.env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => match &from.field_ref {
                Some(f) => field_value(pod, &f.field_path),
                None => String::new(),
            },
            (None, None) => String::new(),
        };
        set(&e.name, value);
    }
    order
        .into_iter()
        .map(|k| {
            let v = &values[&k];
            format!("{k}={v}")
        })
        .collect()
}

/// The Downward API fields a plain runtime knows.
fn field_value(pod: &Pod, path: &str) -> String {
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => pod
            .metadata
            .uid
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default(),
        "spec.nodeName" => pod.spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => pod.spec.service_account_name.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The pod's hostname: `spec.hostname`, else the pod name (at most 63 characters).
pub(crate) fn pod_hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone());
    let name = if name.is_empty() {
        "pod".to_string()
    } else {
        name
    };
    name.chars().take(63).collect()
}

/// uid and gid: securityContext first, then the image's `user`.
fn process_user(input: &SpecInput<'_>) -> Result<(u32, u32), SpecError> {
    let name = &input.container.name;
    let sc = input.container.security_context.as_ref();
    let (mut uid, mut gid) = (0u32, 0u32);
    if let Some(user) = input.image.user.as_deref().filter(|u| !u.is_empty()) {
        let (u, g) = user.split_once(':').unwrap_or((user, ""));
        match u.parse::<u32>() {
            Ok(n) => {
                uid = n;
                gid = lookup_passwd(&input.layers_top_first, u)
                    .map(|(_, g)| g)
                    .unwrap_or(0);
            }
            Err(_) => {
                let (pu, pg) = lookup_passwd(&input.layers_top_first, u).ok_or_else(|| {
                    SpecError::UnknownUser {
                        container: name.clone(),
                        user: u.to_string(),
                    }
                })?;
                uid = pu;
                gid = pg;
            }
        }
        if !g.is_empty() {
            gid = g.parse().map_err(|_| SpecError::Invalid {
                container: name.clone(),
                what: "image user group",
                value: g.to_string(),
                why: "only numeric groups are supported",
            })?;
        }
    }
    let id = |v: i64, what: &'static str| {
        u32::try_from(v).map_err(|_| SpecError::Invalid {
            container: name.clone(),
            what,
            value: v.to_string(),
            why: "must be between 0 and 4294967295",
        })
    };
    if let Some(u) = sc.and_then(|s| s.run_as_user) {
        uid = id(u, "runAsUser")?;
    }
    if let Some(g) = sc.and_then(|s| s.run_as_group) {
        gid = id(g, "runAsGroup")?;
    }
    if sc.and_then(|s| s.run_as_non_root) == Some(true) && uid == 0 {
        return Err(SpecError::Invalid {
            container: name.clone(),
            what: "user",
            value: "0".into(),
            why: "runAsNonRoot is set but the container would run as root",
        });
    }
    Ok((uid, gid))
}

/// Finds `user` (a name or a uid) in the top-most layer's /etc/passwd.
fn lookup_passwd(layers_top_first: &[&Path], user: &str) -> Option<(u32, u32)> {
    let text = layers_top_first
        .iter()
        .find_map(|l| std::fs::read_to_string(l.join("etc/passwd")).ok())?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && (f[0] == user || f[2] == user) {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn capabilities(container: &Container, privileged: bool) -> Vec<String> {
    if privileged {
        return ALL_CAPS.iter().map(|c| c.to_string()).collect();
    }
    let norm = |c: &str| {
        let up = c.to_ascii_uppercase();
        if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    if let Some(c) = container
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    {
        for d in &c.drop {
            if d.eq_ignore_ascii_case("ALL") {
                caps.clear();
            } else {
                let d = norm(d);
                caps.retain(|x| *x != d);
            }
        }
        for a in &c.add {
            let a = if a.eq_ignore_ascii_case("ALL") {
                caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
                continue;
            } else {
                norm(a)
            };
            if ALL_CAPS.contains(&a.as_str()) && !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    caps
}

/// The container's resources: limits become cgroup limits, the cpu request becomes
/// shares (Kubernetes' formula: milli-cpu * 1024 / 1000, at least 2).
fn resources(container: &Container, pids_limit: i64) -> Value {
    let limits = &container.resources.limits;
    let requests = &container.resources.requests;
    let mut cpu = serde_json::Map::new();
    let cpu_request = requests.get("cpu").or_else(|| limits.get("cpu"));
    if let Some(q) = cpu_request {
        let shares = (q.milli_value().max(0) as u64 * 1024 / 1000).max(2);
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(q) = limits.get("cpu").filter(|q| !q.is_zero()) {
        let quota = (q.milli_value().max(1) as u64 * CPU_PERIOD_US / 1000).max(1000);
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(CPU_PERIOD_US));
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "devices".into(),
        json!([{ "allow": false, "access": "rwm" }]),
    );
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(q) = limits.get("memory").filter(|q| !q.is_zero()) {
        let bytes = q.value().max(0);
        // The same limit for memory+swap, so a container cannot swap its way past it.
        out.insert("memory".into(), json!({ "limit": bytes, "swap": bytes }));
    }
    out.insert("pids".into(), json!({ "limit": pids_limit }));
    Value::Object(out)
}

/// The devices cgroup's rules: all devices for a privileged container, none for any
/// other but the ones libcgroups allows after the spec's rules, on cgroup v1 and v2
/// alike: runc's defaults (null, zero, full, random, urandom, tty, console, ptmx, the
/// pty slaves, tun, and mknod of any device). Listing those here as well only made
/// the intermediate process write each rule twice.
fn device_rules(privileged: bool) -> Value {
    json!([{ "allow": privileged, "access": "rwm" }])
}

/// The whole `config.json`.
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Value, SpecError> {
    let c = input.container;
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let read_only_root = sc
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false);
    let no_new_privs = !privileged && sc.and_then(|s| s.allow_privilege_escalation) != Some(true);
    let args = process_args(c, input.image)?;
    let env = process_env(input.pod, c, input.image);
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(SpecError::Invalid {
            container: c.name.clone(),
            what: "workingDir",
            value: cwd,
            why: "must be an absolute path",
        });
    }
    let (uid, gid) = process_user(input)?;
    let nofile_hard = input.nofile_hard;
    // No inheritable or ambient capabilities: a non-root user ends with none effective
    // after exec, as with Docker.
    let caps = capabilities(c, privileged);

    let mut namespaces = vec![json!({ "type": "pid" }), json!({ "type": "mount" })];
    namespaces.push(json!({ "type": "ipc", "path": input.sandbox.ipc }));
    if let Some(net) = &input.sandbox.net {
        namespaces.push(json!({ "type": "network", "path": net }));
    }
    if let Some(uts) = &input.sandbox.uts {
        namespaces.push(json!({ "type": "uts", "path": uts }));
    }
    namespaces.push(json!({ "type": "cgroup" }));

    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }] }),
        json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }] }),
    ];
    for (src, dest) in input.etc_files {
        mounts.push(json!({ "destination": dest, "type": "bind", "source": src,
                            "options": ["rbind", "rprivate", "rw"] }));
    }
    for m in &input.mounts {
        mounts.push(json!({ "destination": m.destination, "type": "bind", "source": m.source,
                            "options": ["rbind", "rprivate", if m.read_only { "ro" } else { "rw" }] }));
    }

    let mut resources = resources(c, input.pids_limit);
    resources["devices"] = device_rules(privileged);

    let mut linux = json!({
        "cgroupsPath": input.cgroups_path,
        "namespaces": namespaces,
        "resources": resources,
        "rootfsPropagation": "private",
    });
    let mut annotations = json!({});
    if !privileged {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READONLY);
        // A precompiled filter is loaded just before the container's program runs, by
        // then without CAP_SYS_ADMIN: that needs no_new_privs. Otherwise libcontainer
        // compiles and loads the profile while it still holds the capability.
        if no_new_privs && input.precompiled_seccomp {
            annotations[seccomp::PRECOMPILED] = json!("default");
        } else {
            linux["seccomp"] = seccomp::default_profile();
        }
    }

    let mut config = json!({
        "annotations": annotations,
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": uid, "gid": gid },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": [], "ambient": [],
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": nofile_hard, "soft": nofile_hard.min(1024) }],
            "oomScoreAdj": 0,
        },
        "root": { "path": input.rootfs, "readonly": read_only_root },
        "mounts": mounts,
        "linux": linux,
    });
    // Only when set: libcontainer takes a present `false` as set, and then loads the
    // seccomp profile after dropping the capabilities it needs to do so.
    if no_new_privs {
        config["process"]["noNewPrivileges"] = json!(true);
    }
    Ok(config)
}

/// The hard RLIMIT_NOFILE of this process (from /proc/self/limits), at most 1048576.
pub(crate) fn own_nofile_hard() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024u64)
        .min(1_048_576)
}
