use chrono::TimeZone;
use skiff_api::Uid;
use skiff_api::resources::{Container, PodPhase, RestartPolicy};

use super::*;
use crate::probe::{ContainerProbes, Instance, ProbeKind, ProbeResult};
use crate::runtime::{Exit, ExitReason, ObservedContainer};

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn pod(uid: &str, image: &str, policy: Option<RestartPolicy>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = format!("pod-{uid}");
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(Uid(uid.into()));
    p.spec.restart_policy = policy;
    p.spec.containers = vec![Container {
        name: "main".into(),
        image: image.into(),
        ..Container::default()
    }];
    p
}

fn desired(pods: &[(&Pod, u64)]) -> Desired {
    Desired {
        pods: pods
            .iter()
            .map(|(p, rev)| {
                let uid = p.metadata.uid.clone().unwrap().0;
                (
                    uid.clone(),
                    DesiredPod {
                        uid,
                        revision: *rev,
                        pod: (*p).clone(),
                    },
                )
            })
            .collect(),
    }
}

fn running(p: &Pod, rev: u64) -> ObservedPod {
    ObservedPod {
        uid: p.metadata.uid.clone().unwrap().0,
        namespace: "default".into(),
        name: p.metadata.name.clone(),
        revision: rev,
        spec_hash: spec_hash(p),
        started_at: t(0),
        pod_ip: Some("10.244.0.5".into()),
        init_containers: vec![],
        containers: p
            .spec
            .containers
            .iter()
            .map(|c| ObservedContainer {
                name: c.name.clone(),
                image: c.image.clone(),
                container_id: format!("sim://{}", c.name),
                restart_count: 0,
                state: RunState::Running { started_at: t(0) },
                last_exit: None,
            })
            .collect(),
    }
}

fn exited(mut o: ObservedPod, code: i32, finished: i64, restarts: i32) -> ObservedPod {
    for c in &mut o.containers {
        c.restart_count = restarts;
        c.state = RunState::Exited(Exit {
            exit_code: code,
            started_at: t(0),
            finished_at: t(finished),
            reason: ExitReason::Plain,
        });
    }
    o
}

fn observed(pods: Vec<ObservedPod>, now: i64) -> Observed {
    Observed {
        pods: pods.into_iter().map(|p| (p.uid.clone(), p)).collect(),
        reported: BTreeMap::new(),
        host_ip: Some("192.0.2.1".into()),
        probes: ProbeResults::default(),
        backoff_resets: BTreeMap::new(),
        now: t(now),
        pulls: BTreeMap::new(),
    }
}

/// The actions, with statuses reduced to their phase so tables stay readable.
fn summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::StartPod { uid } => format!("start {uid}"),
            Action::StopPod { uid } => format!("stop {uid}"),
            Action::RemovePod { uid } => format!("remove {uid}"),
            Action::StartContainer { uid, container } => format!("start {uid}/{container}"),
            Action::RestartContainer { uid, container } => format!("restart {uid}/{container}"),
            Action::ReportStatus { uid, status, .. } => {
                format!("report {uid} {}", status.phase.unwrap())
            }
            Action::ForgetStatus { uid } => format!("forget {uid}"),
            Action::KillContainer {
                uid,
                container,
                message,
            } => format!("kill {uid}/{container}: {message}"),
            Action::ResetBackoff {
                uid,
                container,
                restart_count,
            } => format!("reset back-off {uid}/{container} at {restart_count}"),
        })
        .collect()
}

#[test]
fn reconcile_table() {
    let always = pod("a", "nginx:1", None);
    let changed = pod("a", "nginx:2", None);
    let relabelled = {
        let mut p = always.clone();
        p.metadata.labels.insert("x".into(), "y".into());
        p
    };
    let never = pod("n", "job:1", Some(RestartPolicy::Never));
    let on_failure = pod("f", "job:1", Some(RestartPolicy::OnFailure));

    let cases: Vec<(&str, Desired, Observed, Vec<&str>)> = vec![
        (
            "new pod is started",
            desired(&[(&always, 5)]),
            observed(vec![], 0),
            vec!["start a"],
        ),
        (
            "same spec running: only the first status report",
            desired(&[(&always, 5)]),
            observed(vec![running(&always, 5)], 1),
            vec!["report a Running"],
        ),
        (
            "spec changed under a new revision: stop, remove, start",
            desired(&[(&changed, 6)]),
            observed(vec![running(&always, 5)], 1),
            vec!["stop a", "remove a", "start a"],
        ),
        (
            "metadata-only change under a new revision: no restart",
            desired(&[(&relabelled, 6)]),
            observed(vec![running(&always, 5)], 1),
            vec!["report a Running"],
        ),
        (
            "deleted and still running: stop",
            desired(&[]),
            observed(vec![running(&always, 5)], 1),
            vec!["stop a"],
        ),
        (
            "deleted and stopped: final report, remove, forget",
            desired(&[]),
            observed(vec![exited(running(&always, 5), 0, 1, 0)], 2),
            vec!["report a Succeeded", "remove a", "forget a"],
        ),
        (
            "crashed container under Always: restarted at once the first time",
            desired(&[(&always, 5)]),
            observed(vec![exited(running(&always, 5), 1, 1, 0)], 1),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "Always restarts a clean exit too",
            desired(&[(&always, 5)]),
            observed(vec![exited(running(&always, 5), 0, 1, 0)], 1),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "crash loop: waits out the backoff",
            desired(&[(&always, 5)]),
            observed(vec![exited(running(&always, 5), 1, 100, 3)], 120),
            vec!["report a Running"],
        ),
        (
            "crash loop: restarts once the backoff has passed",
            desired(&[(&always, 5)]),
            observed(vec![exited(running(&always, 5), 1, 100, 3)], 140),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "Never: a failure is final",
            desired(&[(&never, 5)]),
            observed(vec![exited(running(&never, 5), 2, 1, 0)], 1),
            vec!["report n Failed"],
        ),
        (
            "Never: a clean exit succeeds",
            desired(&[(&never, 5)]),
            observed(vec![exited(running(&never, 5), 0, 1, 0)], 1),
            vec!["report n Succeeded"],
        ),
        (
            "OnFailure: a failure restarts",
            desired(&[(&on_failure, 5)]),
            observed(vec![exited(running(&on_failure, 5), 3, 1, 0)], 1),
            vec!["restart f/main", "report f Running"],
        ),
        (
            "OnFailure: a clean exit succeeds",
            desired(&[(&on_failure, 5)]),
            observed(vec![exited(running(&on_failure, 5), 0, 1, 0)], 1),
            vec!["report f Succeeded"],
        ),
    ];
    for (name, d, o, want) in cases {
        assert_eq!(summary(&reconcile(&d, &o)), want, "{name}");
    }
}

#[test]
fn an_unchanged_pod_is_reported_once() {
    let p = pod("a", "nginx:1", None);
    let d = desired(&[(&p, 5)]);
    let mut o = observed(vec![running(&p, 5)], 1);
    let actions = reconcile(&d, &o);
    let Some(Action::ReportStatus { status, .. }) = actions.last() else {
        panic!("expected a report: {actions:?}");
    };
    assert_eq!(status.phase, Some(PodPhase::Running));
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.status.is_true());
    assert_eq!(status.container_statuses[0].restart_count, 0);
    assert!(status.container_statuses[0].state.running.is_some());
    o.reported.insert("a".into(), (**status).clone());
    // Later, nothing changed: the transition times are carried over, nothing is sent.
    o.now = t(500);
    assert_eq!(reconcile(&d, &o), vec![]);
}

#[test]
fn crash_loop_status_shows_waiting_with_the_last_exit() {
    let p = pod("a", "nginx:1", None);
    let d = desired(&[(&p, 5)]);
    let o = observed(vec![exited(running(&p, 5), 7, 100, 2)], 101);
    let actions = reconcile(&d, &o);
    let Some(Action::ReportStatus { status, .. }) = actions.last() else {
        panic!("expected a report: {actions:?}");
    };
    let c = &status.container_statuses[0];
    assert_eq!(
        c.state.waiting.as_ref().unwrap().reason.as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(c.last_state.terminated.as_ref().unwrap().exit_code, 7);
    assert!(!c.ready);
}

#[test]
fn backoff_doubles_to_five_minutes() {
    assert_eq!(restart_delay(0), Duration::ZERO);
    assert_eq!(restart_delay(1), Duration::from_secs(10));
    assert_eq!(restart_delay(3), Duration::from_secs(40));
    assert_eq!(restart_delay(10), Duration::from_secs(300));
    assert_eq!(restart_delay(i32::MAX), Duration::from_secs(300));
}

fn pull_failure(failures: u32, retry_at: i64) -> PullFailure {
    PullFailure {
        container: "main".into(),
        image: "nginx:1".into(),
        message: "not found in 127.0.0.1:6443".into(),
        failures,
        retry_at: t(retry_at),
    }
}

#[test]
fn a_failed_pull_backs_off_and_shows_why() {
    let p = pod("a", "nginx:1", None);
    let d = desired(&[(&p, 3)]);
    let mut o = observed(vec![], 5);
    o.pulls.insert("a".into(), pull_failure(1, 15));
    let actions = reconcile(&d, &o);
    assert!(
        !actions.contains(&Action::StartPod { uid: "a".into() }),
        "no pull before the back-off ends: {actions:?}"
    );
    let [Action::ReportStatus { status, .. }] = actions.as_slice() else {
        panic!("expected one status report, got {actions:?}");
    };
    assert_eq!(status.phase, Some(PodPhase::Pending));
    let waiting = status.container_statuses[0].state.waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
    assert!(waiting.message.as_deref().unwrap().contains("not found"));

    // Once the back-off has passed the pull is tried again; a second failure in a
    // row shows as ImagePullBackOff.
    let mut o = observed(vec![], 15);
    o.pulls.insert("a".into(), pull_failure(2, 15));
    let actions = reconcile(&d, &o);
    assert_eq!(actions[0], Action::StartPod { uid: "a".into() });
    let Action::ReportStatus { status, .. } = &actions[1] else {
        panic!("expected a status report, got {actions:?}");
    };
    let waiting = status.container_statuses[0].state.waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
}

#[test]
fn a_pod_being_created_without_trouble_reports_nothing_yet() {
    let p = pod("a", "nginx:1", None);
    let d = desired(&[(&p, 3)]);
    let actions = reconcile(&d, &observed(vec![], 5));
    assert_eq!(actions, vec![Action::StartPod { uid: "a".into() }]);
}

/// A container that ran from `started` to `finished` and has restarted `restarts` times.
fn ran(mut o: ObservedPod, started: i64, finished: i64, restarts: i32) -> ObservedPod {
    for c in &mut o.containers {
        c.restart_count = restarts;
        c.state = RunState::Exited(Exit {
            exit_code: 1,
            started_at: t(started),
            finished_at: t(finished),
            reason: ExitReason::Plain,
        });
    }
    o
}

#[test]
fn backoff_reset_table() {
    let p = pod("a", "app:1", None);
    let d = desired(&[(&p, 5)]);
    let with_reset = |mut o: Observed, at: i32| {
        o.backoff_resets.insert(("a".into(), "main".into()), at);
        o
    };
    let cases: Vec<(&str, Observed, Vec<&str>)> = vec![
        (
            "ran 10 minutes: back-off starts over, restarted at once",
            observed(vec![ran(running(&p, 5), 0, 600, 5)], 600),
            vec![
                "reset back-off a/main at 5",
                "restart a/main",
                "report a Running",
            ],
        ),
        (
            "ran just under 10 minutes: still in the loop (5 restarts: 160 s)",
            observed(vec![ran(running(&p, 5), 0, 599, 5)], 700),
            vec!["report a Running"],
        ),
        (
            "ran just under 10 minutes: restarted once the full back-off passed",
            observed(vec![ran(running(&p, 5), 0, 599, 5)], 759),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "the reset already recorded is not asked for again",
            with_reset(observed(vec![ran(running(&p, 5), 0, 700, 5)], 700), 5),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "first crash after a reset waits 10 s, not 5 min",
            with_reset(observed(vec![ran(running(&p, 5), 700, 705, 6)], 714), 5),
            vec!["report a Running"],
        ),
        (
            "first crash after a reset: restarted after 10 s",
            with_reset(observed(vec![ran(running(&p, 5), 700, 705, 6)], 715), 5),
            vec!["restart a/main", "report a Running"],
        ),
        (
            "second crash after a reset: 20 s",
            with_reset(observed(vec![ran(running(&p, 5), 720, 725, 7)], 744), 5),
            vec!["report a Running"],
        ),
        (
            "a reset recorded above the restart count belongs to an older pod",
            with_reset(observed(vec![ran(running(&p, 5), 0, 5, 3)], 44), 9),
            vec!["report a Running"],
        ),
    ];
    for (name, o, want) in cases {
        assert_eq!(summary(&reconcile(&d, &o)), want, "{name}");
    }
}

fn probed(readiness: bool, liveness: bool, startup: bool) -> Pod {
    let mut p = pod("a", "app:1", None);
    let probe = || Some(Box::new(skiff_api::resources::Probe::default()));
    let c = &mut p.spec.containers[0];
    if readiness {
        c.readiness_probe = probe();
    }
    if liveness {
        c.liveness_probe = probe();
    }
    if startup {
        c.startup_probe = probe();
    }
    p
}

/// Settled results for the running `main` container of pod `a` (as `running` makes it).
fn results(container_id: &str, kinds: &[(ProbeKind, ProbeResult)]) -> ProbeResults {
    let mut r = ProbeResults::default();
    r.by_container.insert(
        ("a".into(), "main".into()),
        ContainerProbes {
            instance: Instance {
                container_id: container_id.into(),
                started_at: t(0),
            },
            results: kinds.iter().cloned().collect(),
        },
    );
    r
}

fn ready_of(actions: &[Action]) -> (bool, String, String) {
    let Some(Action::ReportStatus { status, .. }) = actions.last() else {
        panic!("expected a report: {actions:?}");
    };
    let cond = |ty: &str| {
        let c = status.conditions.iter().find(|c| c.type_ == ty).unwrap();
        format!("{:?}", c.status)
    };
    (
        status.container_statuses[0].ready,
        cond("ContainersReady"),
        cond("Ready"),
    )
}

#[test]
fn probes_table() {
    use ProbeKind::{Liveness, Readiness, Startup};
    let fail = |m: &str| ProbeResult::Failure(m.into());
    let cases: Vec<(&str, Pod, ProbeResults, Vec<&str>, bool)> = vec![
        (
            "readiness not yet passed: not ready",
            probed(true, false, false),
            ProbeResults::default(),
            vec!["report a Running"],
            false,
        ),
        (
            "readiness passed: ready",
            probed(true, false, false),
            results("sim://main", &[(Readiness, ProbeResult::Success)]),
            vec!["report a Running"],
            true,
        ),
        (
            "readiness failed: not ready, nothing killed",
            probed(true, false, false),
            results("sim://main", &[(Readiness, fail("HTTP 503"))]),
            vec!["report a Running"],
            false,
        ),
        (
            "readiness passed in an earlier run only: not ready",
            probed(true, false, false),
            results("sim://old", &[(Readiness, ProbeResult::Success)]),
            vec!["report a Running"],
            false,
        ),
        (
            "liveness failed: killed, still ready until it is",
            probed(false, true, false),
            results("sim://main", &[(Liveness, fail("connection refused"))]),
            vec![
                "kill a/main: Liveness probe failed: connection refused",
                "report a Running",
            ],
            true,
        ),
        (
            "liveness failed in an earlier run: not killed again",
            probed(false, true, false),
            results("sim://old", &[(Liveness, fail("connection refused"))]),
            vec!["report a Running"],
            true,
        ),
        (
            "startup pending: neither started nor ready",
            probed(false, true, true),
            results("sim://main", &[(Startup, ProbeResult::Unknown)]),
            vec!["report a Running"],
            false,
        ),
        (
            "startup failed: killed",
            probed(false, true, true),
            results("sim://main", &[(Startup, fail("exit code 1"))]),
            vec![
                "kill a/main: Startup probe failed: exit code 1",
                "report a Running",
            ],
            false,
        ),
        (
            "startup passed, no readiness probe: ready",
            probed(false, true, true),
            results("sim://main", &[(Startup, ProbeResult::Success)]),
            vec!["report a Running"],
            true,
        ),
        (
            "a runtime without processes: probes pass",
            probed(true, true, true),
            ProbeResults::passing(),
            vec!["report a Running"],
            true,
        ),
    ];
    for (name, p, probes, want, ready) in cases {
        let d = desired(&[(&p, 5)]);
        let mut o = observed(vec![running(&p, 5)], 1);
        o.probes = probes;
        let actions = reconcile(&d, &o);
        assert_eq!(summary(&actions), want, "{name}");
        let cond = if ready { "True" } else { "False" };
        assert_eq!(
            ready_of(&actions),
            (ready, cond.to_string(), cond.to_string()),
            "{name}"
        );
    }
}

#[test]
fn a_readiness_flip_is_reported_again() {
    let p = probed(true, false, false);
    let d = desired(&[(&p, 5)]);
    let mut o = observed(vec![running(&p, 5)], 1);
    let first = reconcile(&d, &o);
    let Some(Action::ReportStatus { status, .. }) = first.last() else {
        panic!("expected a report: {first:?}");
    };
    o.reported.insert("a".into(), (**status).clone());
    assert_eq!(reconcile(&d, &o), vec![], "nothing changed");
    o.probes = results(
        "sim://main",
        &[(ProbeKind::Readiness, ProbeResult::Success)],
    );
    o.now = t(30);
    let flipped = reconcile(&d, &o);
    assert_eq!(ready_of(&flipped), (true, "True".into(), "True".into()));
}

/// A pod with init containers `setup` then `migrate`, observed with the init containers
/// and the app container in the given states.
fn initializing(
    policy: Option<RestartPolicy>,
    setup: RunState,
    migrate: RunState,
    main: RunState,
    restarts: i32,
) -> (Pod, ObservedPod) {
    let mut p = pod("i", "app:1", policy);
    p.spec.init_containers = ["setup", "migrate"]
        .iter()
        .map(|n| Container {
            name: n.to_string(),
            image: "tools:1".into(),
            ..Container::default()
        })
        .collect();
    let mut o = running(&p, 5);
    o.init_containers = [("setup", setup), ("migrate", migrate)]
        .into_iter()
        .map(|(name, state)| ObservedContainer {
            name: name.into(),
            image: "tools:1".into(),
            container_id: format!("sim://{name}"),
            restart_count: restarts,
            state,
            last_exit: None,
        })
        .collect();
    o.containers[0].state = main;
    (p, o)
}

fn done(code: i32, finished: i64) -> RunState {
    RunState::Exited(Exit {
        exit_code: code,
        started_at: t(0),
        finished_at: t(finished),
        reason: ExitReason::Plain,
    })
}

/// Name, restart policy, states of (setup, migrate, main), restarts, now, actions.
type InitCase = (
    &'static str,
    Option<RestartPolicy>,
    [RunState; 3],
    i32,
    i64,
    Vec<&'static str>,
);

#[test]
fn init_containers_run_in_order_and_gate_the_app_containers() {
    let up = RunState::Running { started_at: t(0) };
    let w = RunState::Waiting;
    let never = Some(RestartPolicy::Never);
    let cases: Vec<InitCase> = vec![
        (
            "first init running: wait, Pending",
            None,
            [up, w, w],
            0,
            1,
            vec!["report i Pending"],
        ),
        (
            "first completed: the second starts",
            None,
            [done(0, 1), w, w],
            0,
            2,
            vec!["start i/migrate", "report i Pending"],
        ),
        (
            "all completed: the app container starts",
            None,
            [done(0, 1), done(0, 2), w],
            0,
            3,
            vec!["start i/main", "report i Pending"],
        ),
        (
            "initialized and running: Running",
            None,
            [done(0, 1), done(0, 2), up],
            0,
            3,
            vec!["report i Running"],
        ),
        (
            "a failed init container restarts (Always acts as OnFailure), the app waits",
            None,
            [done(0, 1), done(3, 2), w],
            0,
            2,
            vec!["restart i/migrate", "report i Pending"],
        ),
        (
            "a crash-looping init container waits out its back-off",
            None,
            [done(0, 1), done(3, 100), w],
            3,
            120,
            vec!["report i Pending"],
        ),
        (
            "back-off passed: restarted",
            None,
            [done(0, 1), done(3, 100), w],
            3,
            140,
            vec!["restart i/migrate", "report i Pending"],
        ),
        (
            "Never: a failed init container fails the pod, the app never starts",
            never,
            [done(1, 1), w, w],
            0,
            2,
            vec!["report i Failed"],
        ),
    ];
    for (name, policy, [setup, migrate, main], restarts, now, want) in cases {
        let (p, o) = initializing(policy, setup, migrate, main, restarts);
        let got = summary(&reconcile(&desired(&[(&p, 5)]), &observed(vec![o], now)));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn initializing_status_names_why_containers_wait() {
    let (p, o) = initializing(None, done(0, 1), done(3, 2), RunState::Waiting, 1);
    let status = pod_status(&p, &o, None, None, &ProbeResults::default(), t(3));
    assert_eq!(status.phase, Some(PodPhase::Pending));
    let init = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(init.status, skiff_api::resources::ConditionStatus::False);
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    let setup = &status.init_container_statuses[0];
    assert_eq!(
        setup.state.terminated.as_ref().unwrap().reason.as_deref(),
        Some("Completed")
    );
    let migrate = &status.init_container_statuses[1];
    assert_eq!(
        migrate.state.waiting.as_ref().unwrap().reason.as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(migrate.last_state.terminated.as_ref().unwrap().exit_code, 3);
    let main = &status.container_statuses[0];
    assert_eq!(
        main.state.waiting.as_ref().unwrap().reason.as_deref(),
        Some("PodInitializing")
    );
}
