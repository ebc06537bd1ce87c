use chrono::TimeZone;
use skiff_api::Uid;
use skiff_api::resources::{
    ContainerPort, ExecAction, HttpGetAction, HttpHeader, Pod, TcpSocketAction,
};

use super::*;
use crate::reconcile::DesiredPod;
use crate::runtime::{Exit, ExitReason};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn probe(initial: i32, period: i32, success: i32, failure: i32) -> Box<Probe> {
    Box::new(Probe {
        tcp_socket: Some(TcpSocketAction {
            port: IntOrString::Int(80),
            host: None,
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        success_threshold: Some(success),
        failure_threshold: Some(failure),
        ..Probe::default()
    })
}

struct Probes {
    startup: Option<Box<Probe>>,
    liveness: Option<Box<Probe>>,
    readiness: Option<Box<Probe>>,
}

fn pod(p: &Probes) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = "web".into();
    pod.metadata.uid = Some(Uid("u".into()));
    pod.spec.containers = vec![Container {
        name: "main".into(),
        image: "app:1".into(),
        startup_probe: p.startup.clone(),
        liveness_probe: p.liveness.clone(),
        readiness_probe: p.readiness.clone(),
        ..Container::default()
    }];
    pod
}

fn desired(p: &Pod) -> Desired {
    Desired {
        pods: [(
            "u".to_string(),
            DesiredPod {
                uid: "u".into(),
                revision: 1,
                pod: p.clone(),
            },
        )]
        .into(),
    }
}

/// The pod's one container, in its `run`-th run (started at `started`), or exited.
fn observed(run: u32, started: i64, running: bool) -> BTreeMap<String, ObservedPod> {
    let state = if running {
        RunState::Running {
            started_at: t(started),
        }
    } else {
        RunState::Exited(Exit {
            exit_code: 137,
            started_at: t(started),
            finished_at: t(started + 1),
            reason: ExitReason::Plain,
        })
    };
    let pod = ObservedPod {
        uid: "u".into(),
        namespace: "default".into(),
        name: "web".into(),
        revision: 1,
        spec_hash: 0,
        started_at: t(0),
        pod_ip: Some("10.244.0.9".into()),
        init_containers: vec![],
        containers: vec![ObservedContainer {
            name: "main".into(),
            image: "app:1".into(),
            container_id: format!("c{run}"),
            restart_count: run as i32,
            state,
            last_exit: None,
        }],
    };
    [("u".to_string(), pod)].into()
}

fn key(kind: ProbeKind) -> ProbeKey {
    ProbeKey {
        uid: "u".into(),
        container: "main".into(),
        kind,
    }
}

#[derive(Debug)]
enum Step {
    /// The container's `run`-th run, started at the given time, is seen running.
    Run(u32, i64),
    /// The container is seen exited.
    Exited,
    /// Attempts begun at this time, by kind.
    Due(i64, &'static [ProbeKind]),
    /// An outcome of the current run recorded at this time; whether the settled
    /// result changed.
    Ok(ProbeKind, i64, bool),
    Fail(ProbeKind, i64, bool),
    /// An outcome of an earlier run: dropped.
    Stale(ProbeKind, u32, i64),
    NextDue(Option<i64>),
    Started(bool),
    Ready(bool),
    Kill(Option<&'static str>),
}

use ProbeKind::{Liveness, Readiness, Startup};
use Step::*;

#[test]
fn prober_table() {
    let cases: Vec<(&str, Probes, Vec<Step>)> = vec![
        (
            "first attempt after initialDelaySeconds, then every periodSeconds",
            Probes {
                startup: None,
                liveness: Some(probe(5, 10, 1, 3)),
                readiness: None,
            },
            vec![
                Run(0, 100),
                NextDue(Some(105)),
                Due(104, &[]),
                Due(105, &[Liveness]),
                // Under way: not begun again, nothing else due.
                Due(200, &[]),
                NextDue(None),
                Ok(Liveness, 106, true),
                NextDue(Some(116)),
                Due(115, &[]),
                Due(116, &[Liveness]),
            ],
        ),
        (
            "liveness: failureThreshold failures in a row kill, then probing stops",
            Probes {
                startup: None,
                liveness: Some(probe(0, 10, 1, 3)),
                readiness: None,
            },
            vec![
                Run(0, 0),
                Kill(None),
                Due(0, &[Liveness]),
                Fail(Liveness, 0, false),
                Due(10, &[Liveness]),
                Fail(Liveness, 10, false),
                Kill(None),
                Due(20, &[Liveness]),
                Fail(Liveness, 20, true),
                Kill(Some("Liveness probe failed: refused at 20")),
                Due(30, &[]),
                NextDue(None),
            ],
        ),
        (
            "a success between failures starts the count over",
            Probes {
                startup: None,
                liveness: Some(probe(0, 10, 1, 2)),
                readiness: None,
            },
            vec![
                Run(0, 0),
                Due(0, &[Liveness]),
                Fail(Liveness, 0, false),
                Due(10, &[Liveness]),
                Ok(Liveness, 10, true),
                Due(20, &[Liveness]),
                Fail(Liveness, 20, false),
                Kill(None),
                Due(30, &[Liveness]),
                Fail(Liveness, 30, true),
                Kill(Some("Liveness probe failed: refused at 30")),
            ],
        ),
        (
            "readiness: not ready until successThreshold successes, flips back on failures",
            Probes {
                startup: None,
                liveness: None,
                readiness: Some(probe(0, 5, 2, 2)),
            },
            vec![
                Run(0, 0),
                Started(true),
                Ready(false),
                Due(0, &[Readiness]),
                Ok(Readiness, 0, false),
                Ready(false),
                Due(5, &[Readiness]),
                Ok(Readiness, 5, true),
                Ready(true),
                Due(10, &[Readiness]),
                Fail(Readiness, 10, false),
                Ready(true),
                Due(15, &[Readiness]),
                Fail(Readiness, 15, true),
                Ready(false),
                // A failed readiness probe kills nothing and goes on probing.
                Kill(None),
                Due(20, &[Readiness]),
                Fail(Readiness, 20, false),
                Due(25, &[Readiness]),
                Ok(Readiness, 25, false),
                Due(30, &[Readiness]),
                Ok(Readiness, 30, true),
                Ready(true),
            ],
        ),
        (
            "startup gates liveness and readiness, and stops once passed",
            Probes {
                startup: Some(probe(0, 2, 1, 30)),
                liveness: Some(probe(0, 10, 1, 1)),
                readiness: Some(probe(0, 10, 1, 1)),
            },
            vec![
                Run(0, 0),
                Due(0, &[Startup]),
                Fail(Startup, 0, false),
                Started(false),
                Ready(false),
                Due(2, &[Startup]),
                Ok(Startup, 3, true),
                Started(true),
                Ready(false),
                Due(3, &[Liveness, Readiness]),
                Ok(Liveness, 3, true),
                Ok(Readiness, 3, true),
                Ready(true),
                NextDue(Some(13)),
                Due(100, &[Liveness, Readiness]),
            ],
        ),
        (
            "a failing startup probe kills like liveness",
            Probes {
                startup: Some(probe(0, 1, 1, 2)),
                liveness: Some(probe(0, 10, 1, 1)),
                readiness: None,
            },
            vec![
                Run(0, 0),
                Due(0, &[Startup]),
                Fail(Startup, 0, false),
                Due(1, &[Startup]),
                Fail(Startup, 1, true),
                Started(false),
                Kill(Some("Startup probe failed: refused at 1")),
                Due(50, &[]),
            ],
        ),
        (
            "a restart starts the results over; outcomes of the old run are dropped",
            Probes {
                startup: None,
                liveness: Some(probe(0, 10, 1, 1)),
                readiness: Some(probe(3, 10, 1, 1)),
            },
            vec![
                Run(0, 0),
                Due(0, &[Liveness]),
                Due(3, &[Readiness]),
                Ok(Readiness, 3, true),
                Ready(true),
                Fail(Liveness, 4, true),
                Kill(Some("Liveness probe failed: refused at 4")),
                Exited,
                Started(false),
                Ready(false),
                Kill(None),
                NextDue(None),
                Run(1, 30),
                Ready(false),
                Kill(None),
                Stale(Liveness, 0, 31),
                Kill(None),
                Due(30, &[Liveness]),
                Due(33, &[Readiness]),
                Ok(Readiness, 33, true),
                Ready(true),
            ],
        ),
        (
            "the same run seen again keeps its workers",
            Probes {
                startup: None,
                liveness: None,
                readiness: Some(probe(0, 10, 1, 1)),
            },
            vec![
                Run(0, 0),
                Due(0, &[Readiness]),
                Ok(Readiness, 1, true),
                Run(0, 0),
                Ready(true),
                NextDue(Some(11)),
            ],
        ),
    ];
    for (name, probes, steps) in cases {
        let p = pod(&probes);
        let d = desired(&p);
        let spec = &p.spec.containers[0];
        let mut prober = Prober::default();
        let mut pods = BTreeMap::new();
        let mut run = 0;
        let instance = |run: u32, pods: &BTreeMap<String, ObservedPod>| Instance {
            container_id: format!("c{run}"),
            started_at: match pods["u"].containers[0].state {
                RunState::Running { started_at } => started_at,
                RunState::Exited(e) => e.started_at,
                RunState::Waiting => unreachable!("the table never leaves a container waiting"),
            },
        };
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{name}: step {i} {step:?}");
            let health = |pods: &BTreeMap<String, ObservedPod>| {
                prober
                    .results()
                    .health("u", Some(spec), &pods["u"].containers[0])
            };
            match *step {
                Run(r, started) => {
                    run = r;
                    pods = observed(r, started, true);
                    prober.track(&d, &pods);
                }
                Exited => {
                    let started = instance(run, &pods).started_at;
                    pods = observed(run, (started - t(0)).num_seconds(), false);
                    prober.track(&d, &pods);
                }
                Due(now, kinds) => {
                    let got: Vec<ProbeKind> = prober
                        .begin_due(t(now))
                        .iter()
                        .map(|a| a.key.kind)
                        .collect();
                    assert_eq!(got, kinds, "{at}");
                }
                Ok(kind, now, changed) => {
                    let inst = instance(run, &pods);
                    let got = prober.record(&key(kind), &inst, Outcome::Success, t(now));
                    assert_eq!(got, changed, "{at}");
                }
                Fail(kind, now, changed) => {
                    let inst = instance(run, &pods);
                    let outcome = Outcome::Failure(format!("refused at {now}"));
                    let got = prober.record(&key(kind), &inst, outcome, t(now));
                    assert_eq!(got, changed, "{at}");
                }
                Stale(kind, old, now) => {
                    let inst = Instance {
                        container_id: format!("c{old}"),
                        started_at: t(0),
                    };
                    let outcome = Outcome::Failure("old".into());
                    assert!(!prober.record(&key(kind), &inst, outcome, t(now)), "{at}");
                }
                NextDue(want) => assert_eq!(prober.next_due(), want.map(t), "{at}"),
                Started(want) => assert_eq!(health(&pods).started, want, "{at}"),
                Ready(want) => assert_eq!(health(&pods).ready, want, "{at}"),
                Kill(want) => assert_eq!(health(&pods).kill.as_deref(), want, "{at}"),
            }
        }
    }
}

#[test]
fn timing_defaults_and_minimums() {
    let t = Timing::of(&Probe::default());
    assert_eq!(t.initial_delay, Duration::ZERO);
    assert_eq!(t.period, Duration::from_secs(10));
    assert_eq!(t.timeout, Duration::from_secs(1));
    assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    let odd = Timing::of(&Probe {
        initial_delay_seconds: Some(-4),
        period_seconds: Some(0),
        timeout_seconds: Some(0),
        success_threshold: Some(0),
        failure_threshold: Some(-1),
        ..Probe::default()
    });
    assert_eq!(odd.initial_delay, Duration::ZERO);
    assert_eq!(odd.period, Duration::from_secs(1));
    assert_eq!(odd.timeout, Duration::from_secs(1));
    assert_eq!((odd.success_threshold, odd.failure_threshold), (1, 1));
}

#[test]
fn checks_resolve_ports_hosts_and_paths() {
    let c = Container {
        name: "main".into(),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..ContainerPort::default()
        }],
        ..Container::default()
    };
    let http = |port: IntOrString, host: Option<&str>, path: Option<&str>| Probe {
        http_get: Some(HttpGetAction {
            path: path.map(str::to_string),
            port,
            host: host.map(str::to_string),
            scheme: None,
            http_headers: vec![HttpHeader {
                name: "X-Probe".into(),
                value: "1".into(),
            }],
        }),
        ..Probe::default()
    };
    let cases: Vec<(&str, Probe, Option<&str>, Check)> = vec![
        (
            "named port, pod IP as host, path defaults to /",
            http(IntOrString::String("http".into()), None, None),
            Some("10.244.0.9"),
            Check::Http {
                host: "10.244.0.9".into(),
                port: 8080,
                path: "/".into(),
                headers: vec![("X-Probe".into(), "1".into())],
                https: false,
            },
        ),
        (
            "explicit host and a path without its slash; loopback without a pod IP",
            http(IntOrString::Int(81), Some("192.0.2.7"), Some("healthz")),
            None,
            Check::Http {
                host: "192.0.2.7".into(),
                port: 81,
                path: "/healthz".into(),
                headers: vec![("X-Probe".into(), "1".into())],
                https: false,
            },
        ),
        (
            "unknown port name",
            http(IntOrString::String("metrics".into()), None, None),
            None,
            Check::Invalid("container main has no port named \"metrics\"".into()),
        ),
        (
            "port out of range",
            Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: IntOrString::Int(70000),
                    host: None,
                }),
                ..Probe::default()
            },
            None,
            Check::Invalid("port 70000 is not in 1..65535".into()),
        ),
        (
            "tcp by name, loopback without a pod IP",
            Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: IntOrString::String("http".into()),
                    host: None,
                }),
                ..Probe::default()
            },
            None,
            Check::Tcp {
                host: "127.0.0.1".into(),
                port: 8080,
            },
        ),
        (
            "exec",
            Probe {
                exec: Some(ExecAction {
                    command: vec!["true".into()],
                }),
                ..Probe::default()
            },
            None,
            Check::Exec {
                command: vec!["true".into()],
            },
        ),
        (
            "HTTPS",
            {
                let mut p = http(IntOrString::Int(443), None, None);
                p.http_get.as_mut().unwrap().scheme = Some(UriScheme::Https);
                p
            },
            Some("10.244.0.9"),
            Check::Http {
                host: "10.244.0.9".into(),
                port: 443,
                path: "/".into(),
                headers: vec![("X-Probe".into(), "1".into())],
                https: true,
            },
        ),
    ];
    for (name, p, pod_ip, want) in cases {
        assert_eq!(Check::of(&p, &c, pod_ip), want, "{name}");
    }
}

#[test]
fn containers_without_probes_or_with_a_processless_runtime_are_ready_when_running() {
    let p = pod(&Probes {
        startup: None,
        liveness: None,
        readiness: None,
    });
    let pods = observed(0, 0, true);
    let c = &pods["u"].containers[0];
    let healthy = Health {
        started: true,
        ready: true,
        kill: None,
    };
    assert_eq!(
        ProbeResults::default().health("u", Some(&p.spec.containers[0]), c),
        healthy
    );
    let probed = pod(&Probes {
        startup: Some(probe(0, 1, 1, 1)),
        liveness: None,
        readiness: Some(probe(0, 1, 1, 1)),
    });
    assert_eq!(
        ProbeResults::passing().health("u", Some(&probed.spec.containers[0]), c),
        healthy
    );
    let stopped = observed(0, 0, false);
    assert!(
        !ProbeResults::passing()
            .health("u", None, &stopped["u"].containers[0])
            .ready
    );
}
