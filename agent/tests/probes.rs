//! Probe executors against real sockets, real processes and a real network namespace,
//! and the probe manager driving the reconciler: a readiness probe makes a pod ready,
//! a failing liveness probe gets its container killed and restarted with fresh results.
//!
//! Needs root (the network namespace test creates one and enters it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use skiff_agent::node::HostPaths;
use skiff_agent::probe::{
    Check, MAX_EXEC_OUTPUT, Outcome, ProbeKind, ProbeManager, ProbeResult, attempt, exec, http_get,
    https_get, run_in_netns, tcp,
};
use skiff_agent::reconcile::{Action, Desired, DesiredPod, Observed, reconcile, spec_hash};
use skiff_agent::runtime::{
    ContainerRuntime, ExecProcess, ExecRequest, LogPaths, ObservedPod, PodToStart, RunState,
    RuntimeError, SimulatedRuntime,
};
use skiff_agent::state::StateDb;
use skiff_agent::sync::{AckToken, HubLink, LinkError, LinkEvent, NodeAgent, Seq};
use skiff_api::Uid;
use skiff_api::protocol::{Down, SCHEMA_VERSION, Up};
use skiff_api::resources::{
    Container, ExecAction, HttpGetAction, HttpHeader, IntOrString, Pod, Probe, TcpSocketAction,
};

const SECOND: Duration = Duration::from_secs(1);

/// An HTTP server on a thread: answers every request with `status` after `delay`,
/// keeping each request's head for the test to look at.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    /// The status answered from now on.
    status: Arc<AtomicU16>,
}

fn serve(listener: TcpListener, status: u16, delay: Duration) -> Server {
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let status = Arc::new(AtomicU16::new(status));
    let answer = status.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let seen = seen.clone();
            let status = answer.load(Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut head = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.lock().unwrap().push(head);
                std::thread::sleep(delay);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            });
        }
    });
    Server {
        port,
        requests,
        status,
    }
}

fn http_server(status: u16) -> Server {
    serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        status,
        Duration::ZERO,
    )
}

/// A port nothing listens on: bound, then closed.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn failure(o: Outcome) -> String {
    match o {
        Outcome::Failure(m) => m,
        Outcome::Success => panic!("expected a failure"),
    }
}

#[test]
fn http_get_judges_status_codes() {
    let cases = [
        (200, true),
        (204, true),
        (302, true),
        (399, true),
        (400, false),
        (404, false),
        (500, false),
        (503, false),
    ];
    for (status, ok) in cases {
        let s = http_server(status);
        let got = http_get("127.0.0.1", s.port, "/healthz", &[], SECOND);
        if ok {
            assert_eq!(got, Outcome::Success, "{status}");
        } else {
            assert_eq!(
                failure(got),
                format!("HTTP probe failed with statuscode: {status}"),
                "{status}"
            );
        }
    }
}

#[test]
fn http_get_sends_path_and_headers() {
    let s = http_server(200);
    let headers = [
        ("X-Probe".to_string(), "yes".to_string()),
        ("Authorization".to_string(), "Bearer t0k3n".to_string()),
    ];
    assert_eq!(
        http_get("127.0.0.1", s.port, "/ready?deep=1", &headers, SECOND),
        Outcome::Success
    );
    let requests = s.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let head = &requests[0];
    assert!(head.starts_with("GET /ready?deep=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{}\r\n", s.port)),
        "{head}"
    );
    assert!(head.contains("X-Probe: yes\r\n"), "{head}");
    assert!(head.contains("Authorization: Bearer t0k3n\r\n"), "{head}");
}

#[test]
fn http_get_times_out_on_a_server_that_never_answers() {
    // Accepts (the kernel completes the handshake) but never writes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let m = failure(http_get(
        "127.0.0.1",
        port,
        "/",
        &[],
        Duration::from_millis(300),
    ));
    let took = started.elapsed();
    assert!(m.contains("timeout"), "{m}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // A server slower than the timeout is a failure too.
    let slow = serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        200,
        Duration::from_millis(800),
    );
    let m = failure(http_get(
        "127.0.0.1",
        slow.port,
        "/",
        &[],
        Duration::from_millis(200),
    ));
    assert!(m.contains("timeout"), "{m}");
    drop(silent);
}

#[test]
fn http_get_and_tcp_fail_on_a_closed_port() {
    let port = closed_port();
    let m = failure(http_get("127.0.0.1", port, "/", &[], SECOND));
    assert!(m.contains("refused"), "{m}");
    let m = failure(tcp("127.0.0.1", port, SECOND));
    assert!(m.contains("refused"), "{m}");
    let m = failure(tcp("no-such-host.invalid", port, SECOND));
    assert!(m.contains("no-such-host.invalid"), "{m}");
}

#[test]
fn https_get_speaks_tls_without_verifying_the_certificate() {
    // A real TLS server: `openssl s_server -www` answers any GET with 200, over a
    // self-signed certificate no root trusts.
    let dir = tempfile::tempdir().unwrap();
    common::self_signed(dir.path(), "key.pem", "cert.pem", "/CN=probe-target");
    let port = closed_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "cert.pem", "-key", "key.pem", "-www", "-quiet"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + 10 * SECOND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = https_get("127.0.0.1", port, "/healthz", &[], 5 * SECOND);
    // Plain HTTP to a TLS port gets no HTTP answer: a failure, not a hang.
    let plain = http_get("127.0.0.1", port, "/healthz", &[], SECOND);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(got, Outcome::Success);
    assert!(matches!(plain, Outcome::Failure(_)), "{plain:?}");
    // And HTTPS to a port that speaks no TLS fails with the reason.
    let s = http_server(200);
    let m = failure(https_get("127.0.0.1", s.port, "/", &[], SECOND));
    assert!(m.starts_with("Get \"https://127.0.0.1:"), "{m}");
}

#[test]
fn tcp_succeeds_on_an_open_port() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(tcp("127.0.0.1", port, SECOND), Outcome::Success);
    assert_eq!(tcp("localhost", port, SECOND), Outcome::Success);
}

/// A runtime whose pods are simulated but whose exec runs the command as a real host
/// process, and whose pods live in the network namespace given (if any): enough for
/// exec and namespace probes to be exercised for real.
#[derive(Debug)]
struct HostRuntime {
    sim: SimulatedRuntime,
    netns: Option<PathBuf>,
}

#[derive(Debug)]
struct HostProcess {
    child: Mutex<Child>,
    pid: i32,
}

impl ExecProcess for HostProcess {
    fn wait(&self) -> Result<i32, RuntimeError> {
        use std::os::unix::process::ExitStatusExt;
        let status = self
            .child
            .lock()
            .unwrap()
            .wait()
            .map_err(|source| RuntimeError::Io {
                path: PathBuf::from("/proc"),
                source,
            })?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
    fn kill(&self) -> Result<(), RuntimeError> {
        // By pid: another thread may be blocked in `wait` holding the child.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| RuntimeError::Io {
            path: PathBuf::from("/proc"),
            source: e.into(),
        })
    }
}

impl ContainerRuntime for HostRuntime {
    fn start_pod(&self, pod: PodToStart<'_>) -> Result<(), RuntimeError> {
        self.sim.start_pod(pod)
    }
    fn stop_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        self.sim.stop_pod(uid)
    }
    fn remove_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        self.sim.remove_pod(uid)
    }
    fn restart_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        self.sim.restart_container(uid, container)
    }
    fn kill_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        self.sim.kill_container(uid, container)
    }
    fn list(&self) -> Result<Vec<ObservedPod>, RuntimeError> {
        self.sim.list()
    }
    fn exec(&self, r: ExecRequest<'_>) -> Result<Box<dyn ExecProcess>, RuntimeError> {
        let (program, args) = r.command.split_first().ok_or(RuntimeError::Unsupported {
            what: "run an empty command",
        })?;
        let out: OwnedFd = r.stdout;
        let err: OwnedFd = r.stderr;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| RuntimeError::Io {
                path: PathBuf::from(program),
                source,
            })?;
        let pid = child.id() as i32;
        Ok(Box::new(HostProcess {
            child: Mutex::new(child),
            pid,
        }))
    }
    fn netns_path(&self, _uid: &str) -> Option<PathBuf> {
        self.netns.clone()
    }
    fn log_paths(&self, _uid: &str, _container: &str) -> Option<LogPaths> {
        None
    }
}

fn host_runtime(dir: &Path, netns: Option<PathBuf>) -> HostRuntime {
    HostRuntime {
        sim: SimulatedRuntime::open(dir).unwrap(),
        netns,
    }
}

fn cmd(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn exec_probe_on_the_simulated_runtime_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimulatedRuntime::open(dir.path()).unwrap();
    let m = failure(exec(&sim, "u", "main", &cmd(&["true"]), SECOND));
    assert_eq!(
        m,
        "this runtime cannot run commands in simulated containers"
    );
}

#[test]
fn exec_probe_exit_codes_output_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let rt = host_runtime(dir.path(), None);
    assert_eq!(
        exec(&rt, "u", "main", &cmd(&["true"]), SECOND),
        Outcome::Success
    );
    let m = failure(exec(
        &rt,
        "u",
        "main",
        &cmd(&["sh", "-c", "echo not healthy; echo on stderr >&2; exit 3"]),
        SECOND,
    ));
    assert!(m.contains("exited with code 3"), "{m}");
    assert!(m.contains("not healthy\non stderr"), "{m}");

    // Output past the cap is read (the command does not block) but not kept.
    let m = failure(exec(
        &rt,
        "u",
        "main",
        &cmd(&["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; exit 1"]),
        Duration::from_secs(5),
    ));
    let kept = m.rsplit_once("exited with code 1: ").unwrap().1;
    assert_eq!(kept, "x".repeat(MAX_EXEC_OUTPUT), "kept output");

    let started = Instant::now();
    let m = failure(exec(
        &rt,
        "u",
        "main",
        &cmd(&["sleep", "30"]),
        Duration::from_millis(300),
    ));
    assert!(m.contains("timed out after 300ms"), "{m}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "killed, not waited for"
    );

    let m = failure(exec(&rt, "u", "main", &cmd(&["/no/such/program"]), SECOND));
    assert!(m.contains("/no/such/program"), "{m}");
}

/// A network namespace that is deleted when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the network namespace probe test needs root"
        );
        let name = format!("skiff-probe-test-{:08x}", rand::random::<u32>());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A listener bound on loopback inside the namespace (the socket keeps its namespace
/// after the binding thread ends).
fn listen_in(ns: &Netns) -> TcpListener {
    let path = ns.path();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind("127.0.0.1:0").unwrap()
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_a_pod_inside_its_network_namespace() {
    let ns = Netns::create();
    let server = serve(listen_in(&ns), 200, Duration::ZERO);
    let port = server.port;

    // From the agent's own namespace the port is not there...
    let m = failure(tcp("127.0.0.1", port, SECOND));
    assert!(m.contains("refused"), "{m}");
    // ...from inside the pod's it is.
    let got = run_in_netns(&ns.path(), move || tcp("127.0.0.1", port, SECOND))
        .await
        .unwrap();
    assert_eq!(got, Outcome::Success);

    // Through the runtime seam, as the manager runs them.
    let dir = tempfile::tempdir().unwrap();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(host_runtime(dir.path(), Some(ns.path())));
    let http = Check::Http {
        host: "127.0.0.1".into(),
        port,
        path: "/healthz".into(),
        headers: vec![("X-Netns".into(), "1".into())],
        https: false,
    };
    let got = attempt(rt.clone(), "u".into(), "main".into(), http.clone(), SECOND).await;
    assert_eq!(got, Outcome::Success);
    assert!(
        server
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("X-Netns: 1\r\n")),
        "the request went to the server in the namespace"
    );
    let closed = Check::Tcp {
        host: "127.0.0.1".into(),
        port: port.wrapping_add(1).max(1),
    };
    let m = failure(attempt(rt.clone(), "u".into(), "main".into(), closed, SECOND).await);
    assert!(m.contains("refused"), "{m}");

    // A namespace file that is gone: a clear failure, no panic.
    let gone: Arc<dyn ContainerRuntime> = Arc::new(host_runtime(
        dir.path(),
        Some(PathBuf::from("/run/netns/skiff-probe-test-missing")),
    ));
    let m = failure(attempt(gone, "u".into(), "main".into(), http.clone(), SECOND).await);
    assert!(
        m.contains("cannot open network namespace /run/netns/skiff-probe-test-missing"),
        "{m}"
    );

    // Cost: 20 pods × 3 probes, each attempt on a thread of its own in the namespace,
    // all at once as a period's worth would be.
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..60 {
            set.spawn(attempt(
                rt.clone(),
                "u".into(),
                "main".into(),
                http.clone(),
                SECOND,
            ));
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap(), Outcome::Success);
        }
    }
    let per_round = started.elapsed() / rounds;
    println!(
        "60 httpGet probes inside a network namespace: {per_round:?} a round, {:?} each",
        per_round / 60
    );
    assert!(
        per_round < Duration::from_millis(1500),
        "a round of 60 probes took {per_round:?}"
    );
}

fn probed_pod(uid: &str, c: Container) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = format!("web-{uid}");
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(Uid(uid.into()));
    // Host network: probes go to loopback, where the test's servers listen.
    p.spec.host_network = true;
    p.spec.containers = vec![c];
    p
}

fn quick(p: Probe) -> Option<Box<Probe>> {
    Some(Box::new(Probe {
        period_seconds: Some(1),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(1),
        ..p
    }))
}

struct World {
    rt: Arc<dyn ContainerRuntime>,
    desired: Desired,
    manager: ProbeManager,
}

impl World {
    fn new(rt: Arc<dyn ContainerRuntime>, pod: &Pod) -> World {
        let uid = pod.metadata.uid.clone().unwrap().0;
        rt.start_pod(PodToStart {
            uid: &uid,
            revision: 1,
            spec_hash: spec_hash(pod),
            pod,
            images: &BTreeMap::new(),
        })
        .unwrap();
        let desired = Desired {
            pods: [(
                uid.clone(),
                DesiredPod {
                    uid,
                    revision: 1,
                    pod: pod.clone(),
                },
            )]
            .into(),
        };
        let manager = ProbeManager::start(rt.clone());
        World {
            rt,
            desired,
            manager,
        }
    }

    /// One pass as the sync loop makes it: track, observe, reconcile.
    fn pass(&self) -> Vec<Action> {
        let pods: BTreeMap<String, ObservedPod> = self
            .rt
            .list()
            .unwrap()
            .into_iter()
            .map(|p| (p.uid.clone(), p))
            .collect();
        self.manager.track(&self.desired, &pods);
        let observed = Observed {
            pods,
            reported: BTreeMap::new(),
            host_ip: Some("127.0.0.1".into()),
            probes: self.manager.results(),
            backoff_resets: BTreeMap::new(),
            now: chrono::Utc::now(),
            pulls: BTreeMap::new(),
        };
        reconcile(&self.desired, &observed)
    }

    async fn changed(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.manager.changed())
            .await
            .expect("a probe result changes within 5 s");
    }
}

fn ready(actions: &[Action]) -> bool {
    actions
        .iter()
        .find_map(|a| match a {
            Action::ReportStatus { status, .. } => Some(status.container_statuses[0].ready),
            _ => None,
        })
        .expect("a status report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_makes_the_pod_ready_and_flips_back() {
    let dir = tempfile::tempdir().unwrap();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(host_runtime(dir.path(), None));
    let flag = dir.path().join("healthy");
    let pod = probed_pod(
        "r",
        Container {
            name: "main".into(),
            image: "app:1".into(),
            readiness_probe: quick(Probe {
                exec: Some(ExecAction {
                    command: cmd(&["test", "-e", flag.to_str().unwrap()]),
                }),
                ..Probe::default()
            }),
            ..Container::default()
        },
    );
    let w = World::new(rt, &pod);
    assert!(!ready(&w.pass()), "not ready before the probe passed");
    std::fs::write(&flag, b"").unwrap();
    let started = Instant::now();
    w.changed().await;
    assert!(ready(&w.pass()), "ready once the probe passed");
    println!(
        "ready {:?} after the check began to pass",
        started.elapsed()
    );
    std::fs::remove_file(&flag).unwrap();
    w.changed().await;
    let actions = w.pass();
    assert!(!ready(&actions), "not ready once it fails");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::KillContainer { .. })),
        "a readiness failure kills nothing: {actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_kills_and_restarts_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(host_runtime(dir.path(), None));
    let s = http_server(500);
    let pod = probed_pod(
        "l",
        Container {
            name: "main".into(),
            image: "app:1".into(),
            liveness_probe: quick(Probe {
                http_get: Some(HttpGetAction {
                    path: Some("/live".into()),
                    port: IntOrString::Int(i32::from(s.port)),
                    host: None,
                    scheme: None,
                    http_headers: vec![HttpHeader {
                        name: "X-Live".into(),
                        value: "1".into(),
                    }],
                }),
                ..Probe::default()
            }),
            readiness_probe: quick(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: IntOrString::Int(i32::from(s.port)),
                    host: None,
                }),
                ..Probe::default()
            }),
            ..Container::default()
        },
    );
    let w = World::new(rt.clone(), &pod);
    w.pass();
    // Results settle (readiness passing, liveness failing) in some order.
    let mut kill = None;
    for _ in 0..3 {
        w.changed().await;
        kill = w.pass().into_iter().find_map(|a| match a {
            Action::KillContainer {
                uid,
                container,
                message,
            } => Some((uid, container, message)),
            _ => None,
        });
        if kill.is_some() {
            break;
        }
    }
    let (uid, container, message) = kill.expect("a kill for the failed liveness probe");
    assert_eq!(
        (uid.as_str(), container.as_str()),
        ("l", "main"),
        "{message}"
    );
    assert_eq!(
        message,
        "Liveness probe failed: HTTP probe failed with statuscode: 500"
    );
    rt.kill_container(&uid, &container).unwrap();
    // The next run is healthy.
    s.status.store(200, Ordering::SeqCst);
    let exited = &rt.list().unwrap()[0].containers[0];
    assert!(
        matches!(exited.state, RunState::Exited(e) if e.exit_code == 137),
        "{exited:?}"
    );
    // Killed: restarted by policy at once (first restart), with fresh results.
    let actions = w.pass();
    assert!(
        actions.contains(&Action::RestartContainer {
            uid: "l".into(),
            container: "main".into()
        }),
        "{actions:?}"
    );
    rt.restart_container("l", "main").unwrap();
    let actions = w.pass();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::KillContainer { .. })),
        "results of the killed run do not carry over: {actions:?}"
    );
    let results = w.manager.results();
    let probes = &results.by_container[&("l".to_string(), "main".to_string())];
    assert_eq!(
        probes.instance.container_id,
        rt.list().unwrap()[0].containers[0].container_id
    );
    assert_ne!(
        probes.results[&ProbeKind::Liveness],
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
        "the new run's liveness starts over"
    );
    assert!(
        s.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("GET /live HTTP/1.1") && r.contains("X-Live: 1\r\n")),
        "the liveness request"
    );
}

#[tokio::test]
async fn the_simulated_runtime_has_nothing_to_probe_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(SimulatedRuntime::open(dir.path()).unwrap());
    let pod = probed_pod(
        "s",
        Container {
            name: "main".into(),
            image: "app:1".into(),
            readiness_probe: quick(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: IntOrString::Int(i32::from(closed_port())),
                    host: None,
                }),
                ..Probe::default()
            }),
            ..Container::default()
        },
    );
    let w = World::new(rt, &pod);
    assert!(ready(&w.pass()));
}

#[test]
fn the_simulated_runtime_kills_one_container() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimulatedRuntime::open(dir.path()).unwrap();
    let mut pod = probed_pod(
        "k",
        Container {
            name: "a".into(),
            image: "app:1".into(),
            ..Container::default()
        },
    );
    pod.spec.containers.push(Container {
        name: "b".into(),
        image: "app:1".into(),
        ..Container::default()
    });
    sim.start_pod(PodToStart {
        uid: "k",
        revision: 1,
        spec_hash: spec_hash(&pod),
        pod: &pod,
        images: &BTreeMap::new(),
    })
    .unwrap();
    sim.kill_container("k", "a").unwrap();
    // Reopened, as after an agent restart: the kill was recorded.
    let sim = SimulatedRuntime::open(dir.path()).unwrap();
    let pods = sim.list().unwrap();
    let states: Vec<_> = pods[0].containers.iter().map(|c| c.state).collect();
    assert!(matches!(states[0], RunState::Exited(e) if e.exit_code == 137));
    assert!(matches!(states[1], RunState::Running { .. }));
    assert!(matches!(
        sim.kill_container("k", "a"),
        Err(RuntimeError::NotRunning { .. })
    ));
    assert!(matches!(
        sim.kill_container("k", "zz"),
        Err(RuntimeError::NoSuchContainer { .. })
    ));
}

/// A hub link that records what the agent sends.
#[derive(Debug, Default)]
struct RecordingLink {
    sent: Mutex<Vec<Up>>,
}

impl HubLink for RecordingLink {
    fn send(&self, msg: &Up) -> Result<(), LinkError> {
        self.sent.lock().unwrap().push(msg.clone());
        Ok(())
    }
    fn heartbeat(&self, _seq: u64) -> Result<(), LinkError> {
        Ok(())
    }
    fn ack(&self, _token: AckToken) -> Result<(), LinkError> {
        Ok(())
    }
    fn close(&self) {}
}

impl RecordingLink {
    /// Waits up to `limit` for a sent message `pick` finds something in.
    async fn wait_for<T>(&self, limit: Duration, pick: impl Fn(&Up) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(t) = self.sent.lock().unwrap().iter().find_map(&pick) {
                return Some(t);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// The whole agent loop with probes: a readiness flip is reported without waiting for
/// the resync, and a failing liveness probe kills the container, records the event
/// and gets it restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_loop_reports_readiness_and_restarts_on_liveness_failure() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let alive = dir.path().join("alive");
    std::fs::write(&alive, b"").unwrap();
    let pod = probed_pod(
        "n",
        Container {
            name: "main".into(),
            image: "app:1".into(),
            readiness_probe: quick(Probe {
                exec: Some(ExecAction {
                    command: cmd(&["test", "-e", flag.to_str().unwrap()]),
                }),
                ..Probe::default()
            }),
            // The restarted run's first liveness check waits a second: the restart
            // comes within milliseconds of the event, before the test puts `alive`
            // back, and with a failure threshold of 1 an earlier check would (rightly)
            // kill the new run too.
            liveness_probe: quick(Probe {
                exec: Some(ExecAction {
                    command: cmd(&[
                        "sh",
                        "-c",
                        &format!("test -e {} || {{ echo gone; exit 1; }}", alive.display()),
                    ]),
                }),
                initial_delay_seconds: Some(1),
                ..Probe::default()
            }),
            ..Container::default()
        },
    );
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let mut db = StateDb::open(&dir.path().join("state")).unwrap();
    db.apply(&Down::PodUpsert {
        v: SCHEMA_VERSION,
        revision: 1,
        pod: Box::new(pod),
    })
    .unwrap();
    let link = Arc::new(RecordingLink::default());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let agent = NodeAgent {
        node: "probe-node".into(),
        db,
        runtime: Arc::new(host_runtime(&dir.path().join("runtime"), None)),
        link: link.clone(),
        events: rx,
        seq: Seq::from_clock(),
        host: HostPaths {
            proc_dir: "/proc".into(),
            etc_dir: "/etc".into(),
        },
        max_pods: 10,
        internal_ip: Some("127.0.0.1".parse().unwrap()),
        broker: None,
        labels: BTreeMap::new(),
        taints: vec![],
        heartbeat_interval: Duration::from_secs(60),
        images: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    tx.send(LinkEvent::Connected).await.unwrap();
    let status = |want_ready: bool, min_restarts: i32| {
        move |m: &Up| match m {
            Up::PodStatus { status, .. } => {
                let c = &status.container_statuses[0];
                (c.ready == want_ready
                    && c.restart_count >= min_restarts
                    && c.state.running.is_some())
                .then(|| status.clone())
            }
            _ => None,
        }
    };
    link.wait_for(Duration::from_secs(5), status(false, 0))
        .await
        .expect("a running, not ready status");

    std::fs::write(&flag, b"").unwrap();
    let flagged = Instant::now();
    let ready = link
        .wait_for(Duration::from_secs(5), status(true, 0))
        .await
        .expect("a ready status");
    let took = flagged.elapsed();
    println!("ready reported {took:?} after the readiness check began to pass");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let cond = |ty: &str| {
        ready
            .conditions
            .iter()
            .find(|c| c.type_ == ty)
            .unwrap()
            .status
            .is_true()
    };
    assert!(cond("Ready") && cond("ContainersReady"));

    std::fs::remove_file(&alive).unwrap();
    let event = link
        .wait_for(Duration::from_secs(5), |m| match m {
            Up::PodEvent {
                uid,
                type_,
                reason,
                message,
                ..
            } => Some((uid.clone(), type_.clone(), reason.clone(), message.clone())),
            _ => None,
        })
        .await
        .expect("an event for the liveness failure");
    assert_eq!(
        (event.0.as_str(), event.1.as_str(), event.2.as_str()),
        ("n", "Warning", "Unhealthy")
    );
    assert!(
        event.3.starts_with("Liveness probe failed: command") && event.3.ends_with(": gone"),
        "{}",
        event.3
    );
    std::fs::write(&alive, b"").unwrap();
    // Restarted at once (first restart), not ready until its readiness probe passes
    // again in the new run.
    let restarted = link
        .wait_for(Duration::from_secs(5), status(false, 1))
        .await
        .expect("a status of the restarted container");
    let c = &restarted.container_statuses[0];
    assert_eq!(c.last_state.terminated.as_ref().unwrap().exit_code, 137);
    link.wait_for(Duration::from_secs(5), status(true, 1))
        .await
        .expect("ready again after the restart");
    stop.send(()).unwrap();
    task.await.unwrap();
}
