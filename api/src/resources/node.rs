//! Node: a device running the Skiff agent, with its taints, pod CIDR, capacity and
//! reported conditions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::core::{ConditionStatus, TaintEffect, is_default, is_false, string_enum};
use crate::{ObjectMeta, Quantity, Time};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "is_default")]
    pub spec: NodeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(rename = "podCIDR", default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unschedulable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(
        rename = "providerID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
}

/// A taint repels pods that do not tolerate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: TaintEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<Time>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodeCondition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub node_info: NodeSystemInfo,
}

/// A node condition; `type` is open-ended (`Ready`, `MemoryPressure`, `DiskPressure`,
/// `PIDPressure`, `NetworkUnavailable`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

string_enum! {
    pub enum NodeAddressType {
        Hostname = "Hostname",
        InternalIp = "InternalIP",
        ExternalIp = "ExternalIP",
        InternalDns = "InternalDNS",
        ExternalDns = "ExternalDNS",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub type_: NodeAddressType,
    pub address: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSystemInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operating_system: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubelet_version: String,
    #[serde(
        rename = "machineID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    #[serde(rename = "bootID", default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_runtime_version: String,
}

impl Node {
    /// The condition of the given type, if reported.
    pub fn condition(&self, type_: &str) -> Option<&NodeCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }

    /// The `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status.is_true())
    }

    /// The first address of the given type.
    pub fn address(&self, type_: NodeAddressType) -> Option<&str> {
        self.status
            .as_ref()?
            .addresses
            .iter()
            .find(|a| a.type_ == type_)
            .map(|a| a.address.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_addresses() {
        let mut node = Node::default();
        assert!(!node.is_ready());
        assert_eq!(node.address(NodeAddressType::InternalIp), None);
        node.status = Some(NodeStatus {
            conditions: vec![NodeCondition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                ..NodeCondition::default()
            }],
            addresses: vec![
                NodeAddress {
                    type_: NodeAddressType::Hostname,
                    address: "edge-1".into(),
                },
                NodeAddress {
                    type_: NodeAddressType::InternalIp,
                    address: "10.0.0.7".into(),
                },
            ],
            ..NodeStatus::default()
        });
        assert!(node.is_ready());
        assert_eq!(node.address(NodeAddressType::InternalIp), Some("10.0.0.7"));
        node.status.as_mut().unwrap().conditions[0].status = ConditionStatus::Unknown;
        assert!(!node.is_ready());
    }
}
