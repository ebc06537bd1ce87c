//! Resource amounts as plain integers (millicores, bytes, counts), how much a pod
//! requests, and how much a node offers, computed once when an object enters the cache
//! so that fitting a pod on a node is integer arithmetic.

use std::collections::BTreeMap;

use skiff_api::Quantity;
use skiff_api::resources::{Container, Node, PodSpec};

/// CPU a container without a CPU request is taken to use when scoring (not when
/// filtering), as kube-scheduler does, so that request-less pods still spread.
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request is taken to use when scoring.
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) milli_cpu: i64,
    pub(crate) memory: i64,
    pub(crate) ephemeral_storage: i64,
    /// Extended resources (`vendor.example/gpu`, `hugepages-2Mi`), sorted by name, each
    /// present at most once.
    pub(crate) scalars: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a requests or allocatable map: CPU in millicores, everything else in units.
    /// Names that are neither a known resource nor an extended one are ignored, as
    /// kube-scheduler ignores them.
    pub(crate) fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let mut out = Resources::default();
        for (name, q) in map {
            match name.as_str() {
                "cpu" => out.milli_cpu = q.milli_value(),
                "memory" => out.memory = q.value(),
                "ephemeral-storage" => out.ephemeral_storage = q.value(),
                other if is_scalar_resource(other) => {
                    out.scalars.push((other.to_string(), q.value()))
                }
                _ => {}
            }
        }
        // BTreeMap iteration already yields names in order.
        out
    }

    pub(crate) fn scalar(&self, name: &str) -> i64 {
        self.scalars
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map_or(0, |i| self.scalars[i].1)
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalars.iter().all(|(_, v)| *v == 0)
    }

    pub(crate) fn add(&mut self, other: &Resources) {
        self.combine(other, |a, b| a.saturating_add(b));
    }

    pub(crate) fn subtract(&mut self, other: &Resources) {
        self.combine(other, |a, b| a.saturating_sub(b));
        self.scalars.retain(|(_, v)| *v != 0);
    }

    fn max_with(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        for (name, v) in &other.scalars {
            match self.scalars.binary_search_by(|(n, _)| n.cmp(name)) {
                Ok(i) => self.scalars[i].1 = f(self.scalars[i].1, *v),
                Err(i) => self.scalars.insert(i, (name.clone(), f(0, *v))),
            }
        }
    }
}

/// CPU and memory with the scoring defaults filled in for containers that request
/// none (see [`DEFAULT_MILLI_CPU_REQUEST`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NonZero {
    pub(crate) milli_cpu: i64,
    pub(crate) memory: i64,
}

impl NonZero {
    pub(crate) fn add(&mut self, o: NonZero) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
    }

    pub(crate) fn subtract(&mut self, o: NonZero) {
        self.milli_cpu = self.milli_cpu.saturating_sub(o.milli_cpu);
        self.memory = self.memory.saturating_sub(o.memory);
    }
}

/// A pod's effective requests as kube-scheduler computes them: the sum over app
/// containers, raised to any single init container's request that is larger (init
/// containers run one at a time, before the app containers).
pub(crate) fn pod_requests(spec: &PodSpec) -> (Resources, NonZero) {
    let mut sum = Resources::default();
    let mut non_zero = NonZero::default();
    for c in &spec.containers {
        sum.add(&Resources::from_map(&c.resources.requests));
        non_zero.add(container_non_zero(c));
    }
    for c in &spec.init_containers {
        sum.max_with(&Resources::from_map(&c.resources.requests));
        let nz = container_non_zero(c);
        non_zero.milli_cpu = non_zero.milli_cpu.max(nz.milli_cpu);
        non_zero.memory = non_zero.memory.max(nz.memory);
    }
    sum.scalars.retain(|(_, v)| *v != 0);
    (sum, non_zero)
}

fn container_non_zero(c: &Container) -> NonZero {
    let r = &c.resources.requests;
    NonZero {
        milli_cpu: r
            .get("cpu")
            .map_or(DEFAULT_MILLI_CPU_REQUEST, Quantity::milli_value),
        memory: r
            .get("memory")
            .map_or(DEFAULT_MEMORY_REQUEST, Quantity::value),
    }
}

/// What a node offers: `status.allocatable`, or `status.capacity` when no allocatable
/// is reported (all of it is then allocatable), and how many pods it takes.
pub(crate) fn node_allocatable(node: &Node) -> (Resources, i64) {
    let Some(status) = node.status.as_ref() else {
        return (Resources::default(), 0);
    };
    let map = if status.allocatable.is_empty() {
        &status.capacity
    } else {
        &status.allocatable
    };
    let pods = map.get("pods").map_or(0, Quantity::value);
    (Resources::from_map(map), pods)
}

/// Extended resources, huge pages and attachable volume counts: the resources that are
/// checked by name rather than being one of cpu, memory and ephemeral storage.
fn is_scalar_resource(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::{NodeStatus, ResourceRequirements};

    use super::*;

    fn container(requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: ResourceRequirements {
                requests: requests
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
                    .collect(),
                limits: BTreeMap::new(),
            },
            ..Container::default()
        }
    }

    #[test]
    fn effective_requests_sum_app_containers_and_take_the_largest_init_container() {
        struct Case {
            name: &'static str,
            containers: Vec<Container>,
            init: Vec<Container>,
            cpu: i64,
            memory: i64,
            gpu: i64,
            non_zero: (i64, i64),
        }
        let cases = [
            Case {
                name: "no requests at all",
                containers: vec![container(&[])],
                init: vec![],
                cpu: 0,
                memory: 0,
                gpu: 0,
                non_zero: (100, 200 * 1024 * 1024),
            },
            Case {
                name: "two app containers add up",
                containers: vec![
                    container(&[("cpu", "250m"), ("memory", "64Mi")]),
                    container(&[("cpu", "0.5"), ("memory", "1Gi")]),
                ],
                init: vec![],
                cpu: 750,
                memory: (64 << 20) + (1 << 30),
                gpu: 0,
                non_zero: (750, (64 << 20) + (1 << 30)),
            },
            Case {
                name: "a larger init container raises one resource only",
                containers: vec![container(&[("cpu", "200m"), ("memory", "100Mi")])],
                init: vec![
                    container(&[("cpu", "1"), ("memory", "10Mi")]),
                    container(&[("cpu", "300m")]),
                ],
                cpu: 1000,
                memory: 100 << 20,
                gpu: 0,
                // The second init container has no memory request: 200Mi when scoring.
                non_zero: (1000, 200 << 20),
            },
            Case {
                name: "extended resources",
                containers: vec![
                    container(&[("example.com/gpu", "1")]),
                    container(&[("example.com/gpu", "2"), ("cpu", "1m")]),
                ],
                init: vec![container(&[("example.com/gpu", "4")])],
                cpu: 1,
                memory: 0,
                gpu: 4,
                non_zero: (101, 400 << 20),
            },
        ];
        for case in cases {
            let spec = PodSpec {
                containers: case.containers,
                init_containers: case.init,
                ..PodSpec::default()
            };
            let (r, nz) = pod_requests(&spec);
            assert_eq!(r.milli_cpu, case.cpu, "{}", case.name);
            assert_eq!(r.memory, case.memory, "{}", case.name);
            assert_eq!(r.scalar("example.com/gpu"), case.gpu, "{}", case.name);
            assert_eq!((nz.milli_cpu, nz.memory), case.non_zero, "{}", case.name);
        }
    }

    #[test]
    fn node_allocatable_falls_back_to_capacity_and_ignores_unknown_names() {
        let q = |s: &str| Quantity::parse(s).unwrap();
        let mut node = Node::default();
        assert_eq!(node_allocatable(&node), (Resources::default(), 0));
        node.status = Some(NodeStatus {
            capacity: [
                ("cpu".to_string(), q("4")),
                ("memory".to_string(), q("8Gi")),
                ("pods".to_string(), q("110")),
                ("bogus".to_string(), q("3")),
                ("hugepages-2Mi".to_string(), q("1Gi")),
            ]
            .into(),
            ..NodeStatus::default()
        });
        let (r, pods) = node_allocatable(&node);
        assert_eq!((r.milli_cpu, r.memory, pods), (4000, 8 << 30, 110));
        assert_eq!(r.scalars, vec![("hugepages-2Mi".to_string(), 1 << 30)]);
        node.status.as_mut().unwrap().allocatable = [("cpu".to_string(), q("3500m"))].into();
        let (r, pods) = node_allocatable(&node);
        assert_eq!((r.milli_cpu, r.memory, pods), (3500, 0, 0));
    }

    #[test]
    fn add_and_subtract_keep_scalars_sorted_and_drop_zeros() {
        let mut a = Resources {
            milli_cpu: 100,
            scalars: vec![("b/x".into(), 1)],
            ..Resources::default()
        };
        let b = Resources {
            memory: 5,
            scalars: vec![("a/y".into(), 2), ("b/x".into(), 1)],
            ..Resources::default()
        };
        a.add(&b);
        assert_eq!(a.scalars, vec![("a/y".into(), 2), ("b/x".into(), 2)]);
        a.subtract(&b);
        assert_eq!(a.scalars, vec![("b/x".into(), 1)]);
        assert_eq!((a.milli_cpu, a.memory), (100, 0));
        assert!(!a.is_zero());
        a.subtract(&a.clone());
        assert!(a.is_zero());
    }
}
