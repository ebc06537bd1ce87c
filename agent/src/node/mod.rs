//! The node's own status, measured from the host: capacity (CPUs, memory, max pods),
//! addresses, system info and the Ready condition, plus the labels the agent sets on
//! its Node. Every path is a parameter so tests read temp files.

pub mod pages;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use skiff_api::Quantity;
use skiff_api::resources::{
    ConditionStatus, NodeAddress, NodeAddressType, NodeCondition, NodeStatus, NodeSystemInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has no {field}")]
    Missing { path: PathBuf, field: &'static str },
}

/// Where the host is described.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub proc_dir: PathBuf,
    pub etc_dir: PathBuf,
}

/// The architecture as Go (and so Kubernetes) names it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn read(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Measures the node's status. `internal_ip` is the address the hub and other nodes
/// reach this one at.
pub fn measure(
    paths: &HostPaths,
    max_pods: u32,
    internal_ip: Option<IpAddr>,
    hostname: &str,
) -> Result<NodeStatus, NodeError> {
    let cpuinfo = paths.proc_dir.join("cpuinfo");
    let cpus = read(&cpuinfo)?
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    if cpus == 0 {
        return Err(NodeError::Missing {
            path: cpuinfo,
            field: "processor",
        });
    }
    let meminfo = paths.proc_dir.join("meminfo");
    let mem_kib: i64 = read(&meminfo)?
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("MemTotal:")?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .ok_or(NodeError::Missing {
            path: meminfo,
            field: "MemTotal",
        })?;
    let kernel = read(&paths.proc_dir.join("sys/kernel/osrelease"))?
        .trim()
        .to_string();
    let boot_id = read(&paths.proc_dir.join("sys/kernel/random/boot_id"))?
        .trim()
        .to_string();
    // Missing on some minimal images: an empty machine ID is allowed.
    let machine_id = read(&paths.etc_dir.join("machine-id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let os_image = read(&paths.etc_dir.join("os-release"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let v = l.strip_prefix("PRETTY_NAME=")?;
                Some(v.trim().trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string());

    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity::from_value(cpus as i64));
    capacity.insert(
        "memory".to_string(),
        Quantity::parse(&format!("{mem_kib}Ki")).expect("a KiB quantity parses"),
    );
    capacity.insert(
        "pods".to_string(),
        Quantity::from_value(i64::from(max_pods)),
    );
    let mut addresses = vec![NodeAddress {
        type_: NodeAddressType::Hostname,
        address: hostname.to_string(),
    }];
    if let Some(ip) = internal_ip {
        addresses.insert(
            0,
            NodeAddress {
                type_: NodeAddressType::InternalIp,
                address: ip.to_string(),
            },
        );
    }
    Ok(NodeStatus {
        allocatable: capacity.clone(),
        capacity,
        conditions: vec![NodeCondition {
            type_: "Ready".into(),
            status: ConditionStatus::True,
            last_heartbeat_time: None,
            last_transition_time: None,
            reason: Some("AgentReady".into()),
            message: Some("skiff-agent is posting ready status".into()),
        }],
        addresses,
        node_info: NodeSystemInfo {
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            operating_system: "linux".into(),
            kernel_version: kernel,
            os_image,
            kubelet_version: format!("skiff-{}", env!("CARGO_PKG_VERSION")),
            machine_id,
            boot_id,
            container_runtime_version: String::new(),
        },
    })
}

/// The labels every node carries, plus the configured ones (which win).
pub fn node_labels(node: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), node.to_string());
    labels.insert(
        "kubernetes.io/arch".to_string(),
        go_arch(std::env::consts::ARCH).to_string(),
    );
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The local address this host uses to reach `host:port` (no packet is sent: a UDP
/// socket is only connected). Usually the address of the default route's interface.
pub fn route_source_ip(host: &str, port: u16) -> Option<IpAddr> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path) -> HostPaths {
        let proc_dir = dir.join("proc");
        let etc_dir = dir.join("etc");
        std::fs::create_dir_all(proc_dir.join("sys/kernel/random")).unwrap();
        std::fs::create_dir_all(&etc_dir).unwrap();
        std::fs::write(
            proc_dir.join("cpuinfo"),
            "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\n\nprocessor\t: 2\n",
        )
        .unwrap();
        std::fs::write(
            proc_dir.join("meminfo"),
            "MemTotal:        2048000 kB\nMemFree: 1 kB\n",
        )
        .unwrap();
        std::fs::write(proc_dir.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        std::fs::write(proc_dir.join("sys/kernel/random/boot_id"), "boot-1\n").unwrap();
        std::fs::write(etc_dir.join("machine-id"), "mach-1\n").unwrap();
        std::fs::write(
            etc_dir.join("os-release"),
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n",
        )
        .unwrap();
        HostPaths { proc_dir, etc_dir }
    }

    #[test]
    fn measures_from_the_given_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = host(dir.path());
        let s = measure(&paths, 42, Some("192.0.2.7".parse().unwrap()), "edge-1").unwrap();
        assert_eq!(s.capacity["cpu"].value(), 3);
        assert_eq!(s.capacity["memory"].value(), 2048000 * 1024);
        assert_eq!(s.capacity["pods"].value(), 42);
        assert_eq!(s.allocatable, s.capacity);
        assert_eq!(s.node_info.kernel_version, "6.1.0-test");
        assert_eq!(s.node_info.boot_id, "boot-1");
        assert_eq!(s.node_info.machine_id, "mach-1");
        assert_eq!(s.node_info.os_image, "Debian GNU/Linux 13 (trixie)");
        assert_eq!(s.node_info.operating_system, "linux");
        assert!(s.node_info.kubelet_version.starts_with("skiff-"));
        assert_eq!(s.addresses[0].type_, NodeAddressType::InternalIp);
        assert_eq!(s.addresses[0].address, "192.0.2.7");
        assert!(s.conditions[0].status.is_true());
        // Same host, same status: nothing to resend.
        assert_eq!(
            measure(&paths, 42, Some("192.0.2.7".parse().unwrap()), "edge-1").unwrap(),
            s
        );
        std::fs::write(paths.proc_dir.join("meminfo"), "MemFree: 1 kB\n").unwrap();
        assert!(matches!(
            measure(&paths, 42, None, "edge-1"),
            Err(NodeError::Missing {
                field: "MemTotal",
                ..
            })
        ));
    }

    #[test]
    fn arch_names_and_labels() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("arm"), "arm");
        let mut extra = BTreeMap::new();
        extra.insert("zone".to_string(), "a".to_string());
        let l = node_labels("edge-1", &extra);
        assert_eq!(l["kubernetes.io/hostname"], "edge-1");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["zone"], "a");
    }
}
