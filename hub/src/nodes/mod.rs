//! Node lifecycle: each node's lease (renewed by heartbeats and every accepted message,
//! kept in memory), the decisions when a lease runs out or comes back, and the Node
//! object changes that follow from what agents report.
//!
//! Only transitions write to the store: Ready goes `Unknown` once after the grace
//! period without a heartbeat (or at once on the agent's last will) and `True` once when
//! heartbeats return. Pods are never evicted or deleted because a node went quiet:
//! devices on flaky links keep running what they have. After a hub restart every known
//! node gets a full grace period from startup.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skiff_api::resources::{ConditionStatus, Node, NodeCondition, NodeStatus, Taint};
use skiff_api::{Object, Time};

/// Default time without a heartbeat before a node's Ready condition becomes Unknown.
pub const DEFAULT_NODE_GRACE: Duration = Duration::from_secs(40);

pub(crate) const READY: &str = "Ready";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ready,
    NotReady,
}

#[derive(Debug)]
struct Lease {
    renewed: Instant,
    health: Health,
}

/// A transition to write to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transition {
    Ready(String),
    Unknown(String),
}

/// Every node's lease.
#[derive(Debug)]
pub(crate) struct Leases {
    grace: Duration,
    leases: HashMap<String, Lease>,
}

impl Leases {
    /// Leases for the nodes in the store, all renewed `now` (the grace period starts at
    /// startup), with the health the store records.
    pub(crate) fn new(grace: Duration, nodes: &[std::sync::Arc<Object>], now: Instant) -> Leases {
        let leases = nodes
            .iter()
            .filter_map(|o| match &**o {
                Object::Node(n) => Some((
                    n.metadata.name.clone(),
                    Lease {
                        renewed: now,
                        health: if n.is_ready() {
                            Health::Ready
                        } else {
                            Health::NotReady
                        },
                    },
                )),
                _ => None,
            })
            .collect();
        Leases { grace, leases }
    }

    /// A heartbeat or another accepted message from `node`: renews its lease, and
    /// returns a transition to Ready if the node was not.
    pub(crate) fn renew(&mut self, node: &str, now: Instant) -> Option<Transition> {
        let lease = self.leases.entry(node.to_string()).or_insert(Lease {
            renewed: now,
            health: Health::NotReady,
        });
        lease.renewed = now;
        (lease.health != Health::Ready).then(|| {
            lease.health = Health::Ready;
            Transition::Ready(node.to_string())
        })
    }

    /// The agent reported its full status (which the store write marks Ready itself).
    pub(crate) fn reported(&mut self, node: &str, now: Instant) {
        self.leases.insert(
            node.to_string(),
            Lease {
                renewed: now,
                health: Health::Ready,
            },
        );
    }

    /// The agent's last will: Unknown now, if it was Ready.
    pub(crate) fn gone(&mut self, node: &str) -> Option<Transition> {
        let lease = self.leases.get_mut(node)?;
        (lease.health == Health::Ready).then(|| {
            lease.health = Health::NotReady;
            Transition::Unknown(node.to_string())
        })
    }

    /// Nodes whose lease ran out since the last call.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Transition> {
        let mut out: Vec<Transition> = self
            .leases
            .iter_mut()
            .filter(|(_, l)| {
                l.health == Health::Ready && now.saturating_duration_since(l.renewed) > self.grace
            })
            .map(|(name, l)| {
                l.health = Health::NotReady;
                Transition::Unknown(name.clone())
            })
            .collect();
        out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        out
    }
}

fn ready_condition(
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: Time,
) -> NodeCondition {
    NodeCondition {
        type_: READY.into(),
        status,
        last_heartbeat_time: Some(now),
        last_transition_time: Some(now),
        reason: Some(reason.into()),
        message: Some(message.into()),
    }
}

/// Sets the Ready condition, keeping `lastTransitionTime` when the status stays and
/// `lastHeartbeatTime` when `heartbeat` is false. Returns whether anything changed.
fn set_ready(
    node: &mut Node,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: Time,
    heartbeat: bool,
) -> bool {
    let st = node.status.get_or_insert_with(NodeStatus::default);
    let mut cond = ready_condition(status, reason, message, now);
    if let Some(old) = st.conditions.iter().find(|c| c.type_ == READY) {
        if old.status == status {
            cond.last_transition_time = old.last_transition_time;
        }
        if !heartbeat {
            cond.last_heartbeat_time = old.last_heartbeat_time;
        }
    }
    match st.conditions.iter_mut().find(|c| c.type_ == READY) {
        Some(old) if *old == cond => false,
        Some(old) => {
            *old = cond;
            true
        }
        None => {
            st.conditions.push(cond);
            true
        }
    }
}

/// Ready=True: heartbeats (or status) arrived.
pub(crate) fn mark_ready(node: &mut Node, now: Time) -> bool {
    set_ready(
        node,
        ConditionStatus::True,
        "KubeletReady",
        "skiff-agent is posting ready status",
        now,
        true,
    )
}

/// Ready=Unknown: the lease ran out or the agent's last will arrived.
pub(crate) fn mark_unknown(node: &mut Node, now: Time) -> bool {
    set_ready(
        node,
        ConditionStatus::Unknown,
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
        now,
        false,
    )
}

/// Applies an agent's `NodeStatus`: adds its labels and taints where missing (never
/// removing or overriding what an operator set), takes its capacity, allocatable,
/// addresses, system info and non-Ready conditions, and sets Ready=True.
pub(crate) fn apply_report(
    node: &mut Node,
    reported: &NodeStatus,
    labels: &std::collections::BTreeMap<String, String>,
    taints: &[Taint],
    now: Time,
) -> bool {
    let before = node.clone();
    for (k, v) in labels {
        node.metadata
            .labels
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    for t in taints {
        if !node
            .spec
            .taints
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            node.spec.taints.push(t.clone());
        }
    }
    let st = node.status.get_or_insert_with(NodeStatus::default);
    st.capacity = reported.capacity.clone();
    st.allocatable = reported.allocatable.clone();
    st.addresses = reported.addresses.clone();
    st.node_info = reported.node_info.clone();
    for c in reported.conditions.iter().filter(|c| c.type_ != READY) {
        match st.conditions.iter_mut().find(|have| have.type_ == c.type_) {
            Some(have) => *have = c.clone(),
            None => st.conditions.push(c.clone()),
        }
    }
    mark_ready(node, now);
    *node != before
}

/// A new Node from an agent's first report.
pub(crate) fn new_node(
    name: &str,
    reported: &NodeStatus,
    labels: &std::collections::BTreeMap<String, String>,
    taints: &[Taint],
    now: Time,
) -> Node {
    let mut node = Node::default();
    node.metadata.name = name.to_string();
    node.metadata
        .labels
        .insert("kubernetes.io/hostname".into(), name.to_string());
    apply_report(&mut node, reported, labels, taints, now);
    node
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use skiff_api::resources::TaintEffect;

    use super::*;

    fn t(s: i64) -> Time {
        Time::from_datetime(chrono::DateTime::from_timestamp(s, 0).unwrap())
    }

    #[test]
    fn leases_expire_after_grace_and_only_transitions_are_reported() {
        let start = Instant::now();
        let mut ready = Node::default();
        ready.metadata.name = "a".into();
        mark_ready(&mut ready, t(1));
        let mut quiet = Node::default();
        quiet.metadata.name = "b".into();
        mark_unknown(&mut quiet, t(1));
        let nodes = vec![Arc::new(Object::Node(ready)), Arc::new(Object::Node(quiet))];
        let grace = Duration::from_secs(40);
        let mut leases = Leases::new(grace, &nodes, start);
        // The grace period starts at startup.
        assert!(leases.expire(start + Duration::from_secs(39)).is_empty());
        assert_eq!(
            leases.expire(start + Duration::from_secs(41)),
            [Transition::Unknown("a".into())]
        );
        assert!(leases.expire(start + Duration::from_secs(99)).is_empty());
        let back = start + Duration::from_secs(100);
        assert_eq!(leases.renew("a", back), Some(Transition::Ready("a".into())));
        assert_eq!(leases.renew("a", back), None);
        assert_eq!(leases.gone("a"), Some(Transition::Unknown("a".into())));
        assert_eq!(leases.gone("a"), None);
        assert_eq!(leases.gone("nobody"), None);
        leases.reported("c", back);
        assert!(leases.expire(back + Duration::from_secs(40)).is_empty());
        assert_eq!(
            leases.expire(back + Duration::from_secs(41)),
            [Transition::Unknown("c".into())]
        );
    }

    #[test]
    fn ready_conditions_keep_times_as_kubernetes_does() {
        let mut n = Node::default();
        assert!(mark_ready(&mut n, t(10)));
        assert!(!mark_ready(&mut n, t(10)));
        assert!(mark_unknown(&mut n, t(20)));
        let c = n.condition(READY).unwrap();
        assert_eq!(c.status, ConditionStatus::Unknown);
        assert_eq!(c.last_heartbeat_time, Some(t(10)));
        assert_eq!(c.last_transition_time, Some(t(20)));
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
        assert!(mark_ready(&mut n, t(30)));
        assert!(n.is_ready());
    }

    #[test]
    fn reports_add_labels_and_taints_without_removing_operator_ones() {
        let taint = |key: &str| Taint {
            key: key.into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
            time_added: None,
        };
        let labels: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())]
            .into_iter()
            .collect();
        let mut n = new_node(
            "edge-1",
            &NodeStatus::default(),
            &labels,
            &[taint("agent")],
            t(1),
        );
        assert_eq!(n.metadata.labels["kubernetes.io/hostname"], "edge-1");
        assert_eq!(n.metadata.labels["zone"], "a");
        assert!(n.is_ready());
        // An operator changes a label and adds a taint; the next report keeps both.
        n.metadata.labels.insert("zone".into(), "b".into());
        n.spec.taints.push(taint("operator"));
        let changed = apply_report(
            &mut n,
            &NodeStatus::default(),
            &labels,
            &[taint("agent")],
            t(1),
        );
        assert!(!changed);
        assert_eq!(n.metadata.labels["zone"], "b");
        assert_eq!(n.spec.taints.len(), 2);
        apply_report(
            &mut n,
            &NodeStatus::default(),
            &labels,
            &[taint("agent"), taint("new")],
            t(2),
        );
        assert_eq!(n.spec.taints.len(), 3);
    }
}
