//! NodeResourcesFit and NodePorts: cpu, memory, ephemeral storage, extended resources
//! and pod count, init containers, pods already on the node, host ports.

use super::*;

fn requesting(name: &str, requests: &str) -> Pod {
    pod(&format!(
        "metadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {requests}}}}}]}}"
    ))
}

fn on(mut p: Pod, node: &str) -> Pod {
    p.spec.node_name = Some(node.to_string());
    p
}

#[test]
fn requests_must_fit_what_is_left() {
    struct Case {
        name: &'static str,
        existing: Vec<Pod>,
        pod: Pod,
        result: Result<&'static str, &'static str>,
    }
    let small = || {
        node("n")
            .allocatable("cpu", "1")
            .allocatable("memory", "1Gi")
    };
    let cases = [
        Case {
            name: "fits exactly",
            existing: vec![on(requesting("e", "{cpu: 500m, memory: 512Mi}"), "n")],
            pod: requesting("p", "{cpu: 500m, memory: 512Mi}"),
            result: Ok("n"),
        },
        Case {
            name: "one millicore too many",
            existing: vec![on(requesting("e", "{cpu: 500m}"), "n")],
            pod: requesting("p", "{cpu: 501m}"),
            result: Err("0/1 nodes are available: 1 Insufficient cpu."),
        },
        Case {
            name: "memory",
            existing: vec![on(requesting("e", "{memory: 1000Mi}"), "n")],
            pod: requesting("p", "{memory: 25Mi}"),
            result: Err("0/1 nodes are available: 1 Insufficient memory."),
        },
        Case {
            name: "both, each counted",
            existing: vec![],
            pod: requesting("p", "{cpu: 2, memory: 2Gi}"),
            result: Err("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."),
        },
        Case {
            name: "ephemeral storage only when the node reports none",
            existing: vec![],
            pod: requesting("p", "{ephemeral-storage: 1Gi}"),
            result: Err("0/1 nodes are available: 1 Insufficient ephemeral-storage."),
        },
        Case {
            name: "extended resource the node lacks",
            existing: vec![],
            pod: requesting("p", "{example.com/gpu: 1}"),
            result: Err("0/1 nodes are available: 1 Insufficient example.com/gpu."),
        },
        Case {
            name: "a pod without requests always fits the resources",
            existing: vec![on(requesting("e", "{cpu: 1, memory: 1Gi}"), "n")],
            pod: pod("metadata: {name: p}"),
            result: Ok("n"),
        },
        Case {
            name: "pods on other nodes do not count",
            existing: vec![on(requesting("e", "{cpu: 1}"), "elsewhere")],
            pod: requesting("p", "{cpu: 1}"),
            result: Ok("n"),
        },
    ];
    for case in cases {
        let mut c = Cluster::new(vec![small()], case.existing);
        assert_eq!(
            c.schedule(&case.pod),
            case.result.map(str::to_string).map_err(str::to_string),
            "{}",
            case.name
        );
    }
}

#[test]
fn extended_resources_and_ephemeral_storage_count_when_reported() {
    let n = node("n")
        .allocatable("example.com/gpu", "2")
        .allocatable("ephemeral-storage", "10Gi");
    let mut c = Cluster::new(
        vec![n],
        vec![on(requesting("e", "{example.com/gpu: 1}"), "n")],
    );
    assert_eq!(
        c.schedule(&requesting(
            "p",
            "{example.com/gpu: 1, ephemeral-storage: 10Gi}"
        )),
        Ok("n".into())
    );
    assert_eq!(
        c.schedule(&requesting("p", "{example.com/gpu: 2}")),
        Err("0/1 nodes are available: 1 Insufficient example.com/gpu.".into())
    );
}

#[test]
fn pod_count_is_a_resource() {
    let full = node("full").allocatable("pods", "2");
    let existing = vec![
        on(pod("metadata: {name: a}"), "full"),
        on(pod("metadata: {name: b}"), "full"),
    ];
    let mut c = Cluster::new(vec![full], existing);
    assert_eq!(
        c.schedule(&pod("metadata: {name: p}")),
        Err("0/1 nodes are available: 1 Too many pods.".into())
    );
    // A node reporting no pod capacity takes no pods, as in Kubernetes.
    let mut c = Cluster::new(vec![node("none").allocatable("pods", "0")], vec![]);
    assert_eq!(
        c.schedule(&requesting("p", "{cpu: 8}")),
        Err("0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods.".into())
    );
}

#[test]
fn init_containers_need_room_for_the_largest_one() {
    let mut c = Cluster::new(vec![node("n").allocatable("cpu", "1")], vec![]);
    let fits = pod("
        metadata: {name: p}
        spec:
          initContainers: [{name: i, image: busybox, resources: {requests: {cpu: '1'}}}]
          containers:
          - {name: a, image: busybox, resources: {requests: {cpu: 400m}}}
          - {name: b, image: busybox, resources: {requests: {cpu: 400m}}}
    ");
    assert_eq!(
        c.schedule(&fits),
        Ok("n".into()),
        "init 1 CPU, app 800m: needs 1"
    );
    let too_big = pod("
        metadata: {name: p}
        spec:
          initContainers: [{name: i, image: busybox, resources: {requests: {cpu: 1100m}}}]
          containers: [{name: a, image: busybox, resources: {requests: {cpu: 100m}}}]
    ");
    assert_eq!(
        c.schedule(&too_big),
        Err("0/1 nodes are available: 1 Insufficient cpu.".into())
    );
    let app_sum = pod("
        metadata: {name: p}
        spec:
          initContainers: [{name: i, image: busybox, resources: {requests: {cpu: 100m}}}]
          containers:
          - {name: a, image: busybox, resources: {requests: {cpu: 600m}}}
          - {name: b, image: busybox, resources: {requests: {cpu: 600m}}}
    ");
    assert_eq!(
        c.schedule(&app_sum),
        Err("0/1 nodes are available: 1 Insufficient cpu.".into())
    );
}

#[test]
fn placed_pods_use_up_the_node() {
    let mut c = Cluster::new(
        vec![
            node("a").allocatable("cpu", "1"),
            node("b").allocatable("cpu", "1"),
        ],
        vec![],
    );
    let p = |i: usize| requesting(&format!("p{i}"), "{cpu: 600m}");
    let first = c.place(&p(0));
    let second = c.place(&p(1));
    assert_ne!(
        first, second,
        "the second pod cannot share the first's node"
    );
    assert_eq!(
        c.schedule(&p(2)),
        Err("0/2 nodes are available: 2 Insufficient cpu.".into())
    );
}

fn with_ports(name: &str, ports: &str) -> Pod {
    pod(&format!(
        "metadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: busybox, ports: {ports}}}]}}"
    ))
}

#[test]
fn host_ports() {
    let taken = "[{containerPort: 80, hostPort: 8080}]";
    let cases = [
        (
            "same port, protocol and address",
            "[{containerPort: 80, hostPort: 8080}]",
            false,
        ),
        (
            "another port",
            "[{containerPort: 80, hostPort: 8081}]",
            true,
        ),
        (
            "same port over UDP",
            "[{containerPort: 80, hostPort: 8080, protocol: UDP}]",
            true,
        ),
        (
            "explicit TCP equals the default",
            "[{containerPort: 80, hostPort: 8080, protocol: TCP}]",
            false,
        ),
        (
            "a specific address conflicts with 0.0.0.0",
            "[{containerPort: 80, hostPort: 8080, hostIP: 10.0.0.1}]",
            false,
        ),
        (
            "container ports alone claim nothing",
            "[{containerPort: 8080}]",
            true,
        ),
    ];
    for (name, ports, fits) in cases {
        let mut c = Cluster::new(vec![node("n")], vec![on(with_ports("e", taken), "n")]);
        let got = c.schedule(&with_ports("p", ports));
        if fits {
            assert_eq!(got, Ok("n".into()), "{name}");
        } else {
            assert_eq!(
                got,
                Err("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.".into()),
                "{name}"
            );
        }
    }
    // Two specific addresses do not conflict; 0.0.0.0 conflicts with any.
    let specific = "[{containerPort: 80, hostPort: 9000, hostIP: 10.0.0.1}]";
    let mut c = Cluster::new(vec![node("n")], vec![on(with_ports("e", specific), "n")]);
    assert_eq!(
        c.schedule(&with_ports(
            "p",
            "[{containerPort: 80, hostPort: 9000, hostIP: 10.0.0.2}]"
        )),
        Ok("n".into())
    );
    assert!(
        c.schedule(&with_ports("p", "[{containerPort: 80, hostPort: 9000}]"))
            .is_err()
    );
    // Ports are freed with their pod.
    c.cache.remove_pod(&Uid("uid-e".into()));
    assert_eq!(
        c.schedule(&with_ports("p", "[{containerPort: 80, hostPort: 9000}]")),
        Ok("n".into())
    );
}
