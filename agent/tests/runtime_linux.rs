//! The Linux runtime with real containers: busybox images, real namespaces, cgroups,
//! overlay mounts and processes. Needs root; fails loudly without it.
//!
//! `SKIFF_CYCLES` sets how many create/delete cycles the leak test runs (default 100
//! for a quick run; `scripts/test.sh` runs 1,000).

#[path = "../../tests/src/busybox.rs"]
#[allow(dead_code)]
mod busybox;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_agent::image::{ImageConfig, LocalImage};
use skiff_agent::runtime::{
    ContainerRuntime, ExecRequest, ExitReason, LinuxConfig, LinuxRuntime, ObservedPod, PodToStart,
    RunState,
};
use skiff_api::resources::Pod;

const IMAGE: &str = "busybox:test";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the Linux runtime tests need root (they create namespaces, cgroups and mounts)"
    );
}

/// A one-layer busybox image, shared by every test (made, or brought up to date, once
/// per run in the build's scratch directory, which it never leaves).
fn image() -> LocalImage {
    static LAYER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let layer = LAYER.get_or_init(|| {
        let layer = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-linux-layer0");
        busybox::populate_rootfs(&layer).expect("busybox rootfs (apt-get install busybox-static)");
        layer
    });
    LocalImage {
        reference: IMAGE.into(),
        digest: "sha256:test".into(),
        layers: vec![layer.clone()],
        config: ImageConfig {
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            env: vec!["FROM_IMAGE=yes".into(), "SHARED=image".into()],
            working_dir: None,
            user: None,
        },
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    /// The runtime's run dir (transient state, under /run).
    run: PathBuf,
    cgroup_parent: String,
    images: BTreeMap<String, LocalImage>,
}

fn fixture(name: &str) -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("rt");
    let mut images = BTreeMap::new();
    images.insert(IMAGE.to_string(), image());
    let run = LinuxConfig::new(&state, Path::new(env!("CARGO_BIN_EXE_skiff-agent"))).run_dir;
    Fixture {
        state,
        run,
        cgroup_parent: format!("skiff-test-{name}-{}", std::process::id()),
        images,
        _dir: dir,
    }
}

/// Best-effort cleanup when a test failed half-way: no mounts or cgroups stay behind.
impl Drop for Fixture {
    fn drop(&mut self) {
        let state = self.state.to_string_lossy().into_owned();
        let run = self.run.to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&state) || m.starts_with(&run))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        for d in cgroup_dirs(&self.cgroup_parent) {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        for _ in 0..50 {
            for d in cgroup_dirs(&self.cgroup_parent) {
                let _ = std::fs::remove_dir(d);
            }
            if cgroup_dirs(&self.cgroup_parent).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for root in CGROUP_ROOTS {
            let _ = std::fs::remove_dir(Path::new(root).join(&self.cgroup_parent));
        }
        let _ = std::fs::remove_dir_all(&self.run);
    }
}

impl Fixture {
    fn config(&self) -> LinuxConfig {
        let mut c = LinuxConfig::new(&self.state, Path::new(env!("CARGO_BIN_EXE_skiff-agent")));
        c.cgroup_parent = self.cgroup_parent.clone();
        c
    }

    fn open(&self) -> LinuxRuntime {
        LinuxRuntime::open(self.config()).expect("open runtime")
    }

    fn start(&self, rt: &LinuxRuntime, uid: &str, pod: &Pod) {
        rt.start_pod(PodToStart {
            uid,
            revision: 1,
            spec_hash: 7,
            pod,
            images: &self.images,
        })
        .expect("start pod");
    }
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": spec,
    }))
    .expect("pod parses")
}

fn ctr(name: &str, script: &str) -> Value {
    json!({ "name": name, "image": IMAGE, "command": ["sh", "-c", script] })
}

fn observed(rt: &LinuxRuntime, uid: &str) -> ObservedPod {
    rt.list()
        .unwrap()
        .into_iter()
        .find(|p| p.uid == uid)
        .expect("pod listed")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exited(rt: &LinuxRuntime, uid: &str, name: &str) -> skiff_agent::runtime::Exit {
    let mut exit = None;
    wait_until(&format!("{name} to exit"), Duration::from_secs(20), || {
        let p = observed(rt, uid);
        let c = p.containers.iter().find(|c| c.name == name).unwrap();
        if let RunState::Exited(e) = c.state {
            exit = Some(e);
            true
        } else {
            false
        }
    });
    exit.unwrap()
}

fn read_log(rt: &LinuxRuntime, uid: &str, name: &str) -> String {
    let p = rt.log_paths(uid, name).expect("log paths");
    std::fs::read_to_string(p.current).unwrap_or_default()
}

fn wait_log(rt: &LinuxRuntime, uid: &str, name: &str, needle: &str) -> String {
    let mut text = String::new();
    wait_until(
        &format!("{needle:?} in the log of {name}"),
        Duration::from_secs(20),
        || {
            text = read_log(rt, uid, name);
            text.contains(needle)
        },
    );
    text
}

/// Runs `cmd` in a container through exec and returns (exit code, stdout).
fn exec(rt: &LinuxRuntime, uid: &str, name: &str, cmd: &[&str]) -> (i32, String) {
    // Close-on-exec, as the agent's own exec streams are: a helper the runtime spawns
    // meanwhile (the next waiting one) must not inherit the write ends and hold the
    // reads below open.
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = nix::unistd::pipe2(cloexec).unwrap();
    let (err_r, err_w) = nix::unistd::pipe2(cloexec).unwrap();
    let command: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    let p = rt
        .exec(ExecRequest {
            uid,
            container: name,
            command: &command,
            stdin: None,
            stdout: out_w,
            stderr: err_w,
        })
        .expect("exec");
    let read_all = |fd: OwnedFd| {
        std::thread::spawn(move || {
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s).unwrap();
            s
        })
    };
    let (o, e) = (read_all(out_r), read_all(err_r));
    let code = p.wait().expect("exec wait");
    let (out, err) = (o.join().unwrap(), e.join().unwrap());
    if code == 125 {
        panic!("exec helper failed: {err}");
    }
    (code, out)
}

#[test]
fn command_args_env_and_exit_codes() {
    let fx = fixture("basic");
    let rt = fx.open();
    let p = pod(
        "basic",
        json!({ "containers": [
            // args only: the image's entrypoint (none) + args
            { "name": "args", "image": IMAGE, "args": ["sh", "-c", "echo args:$FROM_IMAGE:$SHARED:$MINE; pwd; exit 0"],
              "env": [{ "name": "SHARED", "value": "container" }, { "name": "MINE", "value": "x" }],
              "workingDir": "/tmp" },
            ctr("fails", "echo failing; exit 3"),
        ]}),
    );
    fx.start(&rt, "uid-basic", &p);
    let ok = wait_exited(&rt, "uid-basic", "args");
    assert_eq!(ok.exit_code, 0);
    assert_eq!(ok.reason, ExitReason::Plain);
    let bad = wait_exited(&rt, "uid-basic", "fails");
    assert_eq!(bad.exit_code, 3);
    let log = wait_log(&rt, "uid-basic", "args", "args:");
    assert!(log.contains("args:yes:container:x"), "log: {log}");
    assert!(log.contains("/tmp"), "log: {log}");
    assert!(wait_log(&rt, "uid-basic", "fails", "failing").contains("failing"));
    rt.remove_pod("uid-basic").unwrap();
    assert!(rt.list().unwrap().is_empty());
}

fn ns_link(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn pid_of(rt: &LinuxRuntime, uid: &str, name: &str) -> i32 {
    let mut pid = None;
    wait_until(&format!("{name} to run"), Duration::from_secs(20), || {
        pid = rt.container_pid(uid, name);
        pid.is_some()
    });
    pid.unwrap()
}

#[test]
fn pod_shares_net_ipc_uts_but_not_mounts_and_exec_works() {
    let fx = fixture("share");
    let rt = fx.open();
    let p = pod(
        "sharing-pod",
        json!({ "containers": [ctr("a", "sleep 1000"), ctr("b", "sleep 1000")] }),
    );
    fx.start(&rt, "uid-share", &p);
    let (a, b) = (pid_of(&rt, "uid-share", "a"), pid_of(&rt, "uid-share", "b"));
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_link(a, ns), ns_link(b, ns), "{ns} namespace shared");
        assert_ne!(
            ns_link(a, ns),
            ns_link(std::process::id() as i32, ns),
            "{ns} is not the host's"
        );
    }
    for ns in ["mnt", "pid"] {
        assert_ne!(ns_link(a, ns), ns_link(b, ns), "{ns} namespace separate");
    }
    let netns = rt.netns_path("uid-share").expect("netns path");
    assert!(netns.exists());
    let (code, out) = exec(&rt, "uid-share", "a", &["hostname"]);
    assert_eq!((code, out.trim()), (0, "sharing-pod"));
    // The helper waits at a low priority; the container runs at the normal one.
    for pid in [a, b] {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let nice = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16);
        assert_eq!(nice, Some("0"), "niceness of {pid}: {stat}");
    }
    let (code, out) = exec(
        &rt,
        "uid-share",
        "b",
        &["sh", "-c", "echo from-exec; cat /etc/hostname; exit 5"],
    );
    assert_eq!(code, 5);
    assert_eq!(out, "from-exec\nsharing-pod\n");
    // loopback is up in the pod's network namespace
    let (code, _) = exec(
        &rt,
        "uid-share",
        "a",
        &["sh", "-c", "ip link show lo | grep -q UP"],
    );
    assert_eq!(code, 0);
    rt.remove_pod("uid-share").unwrap();
    assert!(!netns.exists());
}

#[test]
fn capabilities_seccomp_masked_paths_and_no_leaked_fds() {
    let fx = fixture("sec");
    // An fd without O_CLOEXEC in the agent: it must not reach the container.
    let leaked = nix::unistd::dup(std::io::stderr()).unwrap();
    let rt = fx.open();
    let helper = env!("CARGO_BIN_EXE_skiff-agent");
    let p = pod(
        "sec",
        json!({ "containers": [
            ctr("c", "sleep 1000"),
            { "name": "added", "image": IMAGE, "command": ["sleep", "1000"],
              "securityContext": { "capabilities": { "add": ["NET_ADMIN"], "drop": ["MKNOD"] } } },
            { "name": "nonroot", "image": IMAGE, "command": ["sleep", "1000"],
              "securityContext": { "runAsUser": 65534, "runAsGroup": 65534 } },
            { "name": "escalating", "image": IMAGE, "command": ["sleep", "1000"],
              "securityContext": { "allowPrivilegeEscalation": true } },
        ]}),
    );
    fx.start(&rt, "uid-sec", &p);
    let pid = pid_of(&rt, "uid-sec", "c");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        fds.len(),
        3,
        "only stdin/stdout/stderr in the container: {fds:?}"
    );
    drop(leaked);
    let status = |name: &str| {
        let (code, out) = exec(&rt, "uid-sec", name, &["cat", "/proc/1/status"]);
        assert_eq!(code, 0);
        out
    };
    let line = |s: &str, key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    let st = status("c");
    assert_eq!(
        line(&st, "CapEff:"),
        "00000000a80425fb",
        "Docker's default set"
    );
    assert_eq!(line(&st, "CapBnd:"), "00000000a80425fb");
    assert_eq!(line(&st, "Seccomp:"), "2", "seccomp filter in effect");
    assert_eq!(line(&st, "NoNewPrivs:"), "1");
    // The filter comes precompiled from the bundle for such a container, and an exec'd
    // process gets it too.
    let bundle_filter = fx.run.join("pods/uid-sec/containers/c/bundle/seccomp.bpf");
    assert!(bundle_filter.is_file(), "{}", bundle_filter.display());
    let (code, own) = exec(&rt, "uid-sec", "c", &["cat", "/proc/self/status"]);
    assert_eq!(code, 0);
    assert_eq!(line(&own, "Seccomp:"), "2", "exec'd process filtered");
    // With privilege escalation allowed there is no no_new_privs: libcontainer loads the
    // profile from the spec while it still may, and the container is filtered all the same.
    let st = status("escalating");
    assert_eq!(line(&st, "NoNewPrivs:"), "0");
    assert_eq!(line(&st, "Seccomp:"), "2", "seccomp filter in effect");
    assert!(
        !fx.run
            .join("pods/uid-sec/containers/escalating/bundle/seccomp.bpf")
            .exists()
    );
    // NET_ADMIN (bit 12) added, MKNOD (bit 27) dropped
    assert_eq!(
        line(&status("added"), "CapEff:"),
        format!("{:016x}", (0xa80425fbu64 | 1 << 12) & !(1 << 27))
    );
    let st = status("nonroot");
    assert_eq!(line(&st, "CapEff:"), "0000000000000000");
    assert!(line(&st, "Uid:") == "65534", "{st}");
    // the seccomp profile refuses what it does not list
    let (code, out) = exec(
        &rt,
        "uid-sec",
        "c",
        &["sh", "-c", "unshare -n true 2>&1; echo rc=$?"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("rc=1") || out.contains("not permitted"),
        "unshare allowed? {out}"
    );
    // masked and read-only paths
    let (_, out) = exec(
        &rt,
        "uid-sec",
        "c",
        &[
            "sh",
            "-c",
            "wc -c < /proc/keys; echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo rc=$?",
        ],
    );
    assert!(out.starts_with("0\n"), "/proc/keys masked: {out}");
    assert!(out.contains("rc=1"), "/proc/sys read-only: {out}");
    // the agent binary is not reachable from inside
    let (code, _) = exec(&rt, "uid-sec", "c", &["test", "-e", helper]);
    assert_eq!(code, 1, "{helper} visible inside the container");
    let (_, out) = exec(
        &rt,
        "uid-sec",
        "c",
        &["sh", "-c", "ls /proc | grep -c '^[0-9]'"],
    );
    // sleep (pid 1), sh, ls and grep: nothing of the host
    assert!(
        out.trim().parse::<u32>().unwrap() <= 4,
        "host processes visible: {out}"
    );
    rt.remove_pod("uid-sec").unwrap();
}

#[test]
fn volumes_empty_dir_shared_and_host_path_read_only() {
    let fx = fixture("vol");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "host-content").unwrap();
    let rt = fx.open();
    let p = pod(
        "vol",
        json!({
            "volumes": [
                { "name": "shared", "emptyDir": {} },
                { "name": "mem", "emptyDir": { "medium": "Memory" } },
                { "name": "host", "hostPath": { "path": host.path() } },
            ],
            "containers": [
                { "name": "writer", "image": IMAGE,
                  "command": ["sh", "-c", "echo hello > /data/x; grep -q ' /mem tmpfs' /proc/mounts && echo mem-tmpfs; sleep 1000"],
                  "volumeMounts": [{ "name": "shared", "mountPath": "/data" }, { "name": "mem", "mountPath": "/mem" }] },
                { "name": "reader", "image": IMAGE,
                  "command": ["sh", "-c", "while [ ! -e /in/x ]; do sleep 0.05; done; cat /in/x; cat /host/f; echo; touch /host/g || echo ro-refused; sleep 1000"],
                  "volumeMounts": [{ "name": "shared", "mountPath": "/in" },
                                   { "name": "host", "mountPath": "/host", "readOnly": true }] },
            ]
        }),
    );
    fx.start(&rt, "uid-vol", &p);
    wait_log(&rt, "uid-vol", "writer", "mem-tmpfs");
    let log = wait_log(&rt, "uid-vol", "reader", "ro-refused");
    assert!(log.contains("hello\nhost-content"), "{log}");
    assert!(!host.path().join("g").exists());
    rt.remove_pod("uid-vol").unwrap();
    assert!(
        host.path().join("f").exists(),
        "hostPath content survives the pod"
    );
}

#[test]
fn memory_limit_ends_in_oom_killed() {
    let fx = fixture("oom");
    let rt = fx.open();
    let p = pod(
        "oom",
        json!({ "containers": [
            { "name": "hog", "image": IMAGE, "command": ["tail", "/dev/zero"],
              "resources": { "limits": { "memory": "16Mi", "cpu": "500m" } } },
        ]}),
    );
    fx.start(&rt, "uid-oom", &p);
    let cg = rt.container_cgroup("uid-oom", "hog").unwrap();
    let exit = wait_exited(&rt, "uid-oom", "hog");
    assert_eq!(exit.exit_code, 137);
    assert_eq!(exit.reason, ExitReason::OomKilled);
    if rt.cgroup_version() == skiff_agent::runtime::linux::CgroupVersion::V1 {
        let quota = std::fs::read_to_string(format!("/sys/fs/cgroup/cpu{cg}/cpu.cfs_quota_us"));
        assert_eq!(quota.unwrap().trim(), "50000");
    }
    rt.remove_pod("uid-oom").unwrap();
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let fx = fixture("pids");
    let mut cfg = fx.config();
    cfg.pids_limit = 64;
    let rt = LinuxRuntime::open(cfg).unwrap();
    let p = pod(
        "bomb",
        // The inner shell forks until it cannot (busybox sh then exits); the outer one
        // reports it and keeps the container alive.
        json!({ "containers": [ctr("bomb", "sh -c 'while true; do sleep 1000 & done'; echo bomb-ended; sleep 1000")] }),
    );
    fx.start(&rt, "uid-pids", &p);
    let log = wait_log(&rt, "uid-pids", "bomb", "bomb-ended");
    assert!(log.contains("can't fork"), "{log}");
    let cg = rt.container_cgroup("uid-pids", "bomb").unwrap();
    let current: u32 = if rt.cgroup_version() == skiff_agent::runtime::linux::CgroupVersion::V1 {
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cg}/pids.current"))
    } else {
        std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/pids.current"))
    }
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    assert!((32..=64).contains(&current), "pids.current = {current}");
    // the host is fine
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    rt.remove_pod("uid-pids").unwrap();
}

#[test]
fn logs_rotate_by_size() {
    let fx = fixture("logs");
    let mut cfg = fx.config();
    cfg.log_rotation = skiff_agent::runtime::linux::LogRotation {
        max_bytes: 64 * 1024,
        keep: 2,
    };
    let rt = LinuxRuntime::open(cfg).unwrap();
    let p = pod(
        "logs",
        json!({ "containers": [ctr("chatty", "i=0; while [ $i -lt 4000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); sleep 0.001; done; echo end; sleep 1000")] }),
    );
    fx.start(&rt, "uid-logs", &p);
    wait_until("a rotated log", Duration::from_secs(30), || {
        !rt.log_paths("uid-logs", "chatty")
            .unwrap()
            .rotated
            .is_empty()
    });
    wait_log(&rt, "uid-logs", "chatty", "end");
    let paths = rt.log_paths("uid-logs", "chatty").unwrap();
    assert!(paths.rotated.len() <= 2);
    let first = std::fs::read_to_string(&paths.rotated[0]).unwrap();
    assert!(first.contains("line-"), "rotated piece has output");
    assert!(std::fs::metadata(&paths.current).unwrap().len() < 200 * 1024);
    rt.remove_pod("uid-logs").unwrap();
}

#[test]
fn stop_sends_term_then_kill_after_the_grace_period() {
    let fx = fixture("stop");
    let rt = fx.open();
    let p = pod(
        "stop",
        json!({ "terminationGracePeriodSeconds": 2, "containers": [
            ctr("stubborn", "trap 'echo got-term' TERM; echo ready; while true; do sleep 0.1; done"),
            ctr("polite", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"),
        ]}),
    );
    fx.start(&rt, "uid-stop", &p);
    // Both have their trap set (a TERM before it would be ignored by a PID 1 shell).
    wait_log(&rt, "uid-stop", "stubborn", "ready");
    wait_log(&rt, "uid-stop", "polite", "ready");
    let t = Instant::now();
    rt.stop_pod("uid-stop").unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "stop took {took:?}"
    );
    let stubborn = wait_exited(&rt, "uid-stop", "stubborn");
    assert_eq!(stubborn.exit_code, 137);
    assert_eq!(wait_exited(&rt, "uid-stop", "polite").exit_code, 0);
    assert!(read_log(&rt, "uid-stop", "stubborn").contains("got-term"));
    assert!(!observed(&rt, "uid-stop").any_running());
    rt.remove_pod("uid-stop").unwrap();
}

#[test]
fn restart_counts_and_keeps_the_previous_log() {
    let fx = fixture("restart");
    let rt = fx.open();
    let p = pod(
        "restart",
        json!({ "containers": [ctr("c", "echo run; touch /marker-$$; ls / | grep -c marker; exit 3")] }),
    );
    fx.start(&rt, "uid-restart", &p);
    assert_eq!(wait_exited(&rt, "uid-restart", "c").exit_code, 3);
    rt.restart_container("uid-restart", "c").unwrap();
    let log = wait_log(&rt, "uid-restart", "c", "run");
    let exit = wait_exited(&rt, "uid-restart", "c");
    let o = observed(&rt, "uid-restart");
    assert_eq!(o.containers[0].restart_count, 1);
    assert_eq!(o.containers[0].last_exit.unwrap().exit_code, 3);
    assert_eq!(exit.exit_code, 3);
    // a fresh writable layer: the first run's marker is gone
    let log = if log.contains("1\n") {
        log
    } else {
        wait_log(&rt, "uid-restart", "c", "1\n")
    };
    assert_eq!(log, "run\n1\n");
    let paths = rt.log_paths("uid-restart", "c").unwrap();
    let prev = std::fs::read_to_string(paths.previous.expect("previous log")).unwrap();
    assert_eq!(prev, "run\n1\n");
    rt.remove_pod("uid-restart").unwrap();
}

#[test]
fn reopened_runtime_adopts_running_containers() {
    let fx = fixture("adopt");
    let rt = fx.open();
    let p = pod(
        "adopt",
        json!({ "terminationGracePeriodSeconds": 1, "containers": [ctr("c", "sleep 1000"), ctr("done", "exit 4")] }),
    );
    fx.start(&rt, "uid-adopt", &p);
    let pid = pid_of(&rt, "uid-adopt", "c");
    assert_eq!(wait_exited(&rt, "uid-adopt", "done").exit_code, 4);
    let cg = rt.container_cgroup("uid-adopt", "c").unwrap();
    drop(rt);
    let rt = fx.open();
    let o = observed(&rt, "uid-adopt");
    assert!(matches!(o.containers[0].state, RunState::Running { .. }));
    assert_eq!(
        rt.container_pid("uid-adopt", "c"),
        Some(pid),
        "same process, no duplicate"
    );
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cg}/cgroup.procs"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/cgroup.procs")))
        .unwrap();
    assert_eq!(procs.lines().count(), 1);
    let done = o.containers.iter().find(|c| c.name == "done").unwrap();
    assert!(matches!(done.state, RunState::Exited(e) if e.exit_code == 4));
    rt.stop_pod("uid-adopt").unwrap();
    assert_eq!(wait_exited(&rt, "uid-adopt", "c").exit_code, 137);
    rt.remove_pod("uid-adopt").unwrap();
}

/// Entry point of [`adoption_after_the_agent_is_killed`]: run in a child process, it
/// starts a pod and waits to be SIGKILLed.
#[test]
#[ignore = "run by adoption_after_the_agent_is_killed in a child process"]
fn adoption_child() {
    let dir = std::env::var("SKIFF_ADOPT_STATE").expect("SKIFF_ADOPT_STATE");
    let mut cfg = LinuxConfig::new(
        Path::new(&dir),
        Path::new(env!("CARGO_BIN_EXE_skiff-agent")),
    );
    cfg.cgroup_parent = std::env::var("SKIFF_ADOPT_CGROUP").unwrap();
    let rt = LinuxRuntime::open(cfg).unwrap();
    let mut images = BTreeMap::new();
    images.insert(IMAGE.to_string(), image());
    let p = pod("killed", json!({ "containers": [ctr("c", "sleep 1000")] }));
    rt.start_pod(PodToStart {
        uid: "uid-killed",
        revision: 1,
        spec_hash: 1,
        pod: &p,
        images: &images,
    })
    .unwrap();
    println!("READY {}", rt.container_pid("uid-killed", "c").unwrap());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn adoption_after_the_agent_is_killed() {
    use std::io::BufRead;
    let fx = fixture("killed");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "adoption_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_ADOPT_STATE", &fx.state)
        .env("SKIFF_ADOPT_CGROUP", &fx.cgroup_parent)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The test harness prints "test adoption_child ... " on the same line.
        if let Some((_, p)) = line.split_once("READY ") {
            pid = Some(p.trim().parse::<i32>().unwrap());
            break;
        }
    }
    let pid = pid.expect("child started the pod");
    child.kill().unwrap();
    child.wait().unwrap();
    let rt = fx.open();
    let o = observed(&rt, "uid-killed");
    assert!(matches!(o.containers[0].state, RunState::Running { .. }));
    assert_eq!(rt.container_pid("uid-killed", "c"), Some(pid));
    rt.remove_pod("uid-killed").unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    // The killed runtime's spare sandboxes and mounted spare pod directories were
    // cleared by this one, which clears its own.
    drop(rt);
    assert_eq!(mounts_under(&fx.run), Vec::<String>::new(), "mounts left");
    assert_eq!(mounts_under(&fx.state), Vec::<String>::new(), "mounts left");
}

const CGROUP_ROOTS: [&str; 9] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/devices",
    "/sys/fs/cgroup/freezer",
    "/sys/fs/cgroup/blkio",
    "/sys/fs/cgroup/cpuset",
];

/// The mountinfo lines of the mounts whose mount point is `dir` or under it.
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| Path::new(m).starts_with(dir))
        })
        .map(String::from)
        .collect()
}

fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in CGROUP_ROOTS {
        let p = Path::new(root).join(parent);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Child processes of this process (zombies included).
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|pp| pp == me))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn create_delete_cycles_leave_nothing_behind() {
    let cycles: usize = std::env::var("SKIFF_CYCLES")
        .ok()
        .map(|v| v.parse().expect("SKIFF_CYCLES is a number"))
        .unwrap_or(100);
    let fx = fixture("cycles");
    let rt = fx.open();
    let p = pod(
        "cycle",
        json!({ "volumes": [{ "name": "m", "emptyDir": { "medium": "Memory" } }],
                "containers": [{ "name": "c", "image": IMAGE, "command": ["true"],
                                 "volumeMounts": [{ "name": "m", "mountPath": "/m" }] }] }),
    );
    for i in 0..cycles {
        let uid = format!("uid-cycle-{i}");
        fx.start(&rt, &uid, &p);
        assert_eq!(wait_exited(&rt, &uid, "c").exit_code, 0);
        rt.remove_pod(&uid).unwrap();
    }
    assert!(rt.list().unwrap().is_empty());
    // Removed pods' directories go to the trash with their overlays mounted; the trash
    // unmounts and deletes them in the background, soon after.
    for d in [fx.state.join("trash"), fx.run.join("trash")] {
        wait_until(
            &format!("{} to empty", d.display()),
            Duration::from_secs(60),
            || std::fs::read_dir(&d).unwrap().next().is_none(),
        );
    }
    // The spare pod directories kept ready (two, each with its overlay over the last
    // image) and the sandboxes (two, three namespace files each) are all that is mounted.
    for (dir, most) in [(&fx.state, 2), (&fx.run, 6)] {
        let spare = dir.join("spare");
        let (spares, pods): (Vec<String>, Vec<String>) =
            mounts_under(dir).into_iter().partition(|m| {
                m.split(' ')
                    .nth(4)
                    .is_some_and(|p| Path::new(p).starts_with(&spare))
            });
        assert_eq!(pods, Vec::<String>::new(), "mounts left");
        assert!(spares.len() <= most, "{spares:#?}");
    }
    assert_eq!(
        cgroup_dirs(&fx.cgroup_parent),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );
    for d in [
        fx.state.join("pods"),
        fx.state.join("records"),
        fx.run.join("pods"),
        fx.run.join("libcontainer"),
    ] {
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert!(left.is_empty(), "{} not empty: {left:?}", d.display());
    }
    let kids: Vec<i32> = children()
        .into_iter()
        .filter(|pid| {
            // other tests of this binary may have containers running right now
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            cg.contains(&fx.cgroup_parent)
        })
        .collect();
    assert_eq!(kids, Vec::<i32>::new(), "processes left");
    // A closed runtime leaves no spare behind.
    drop(rt);
    assert_eq!(mounts_under(&fx.run), Vec::<String>::new(), "mounts left");
    assert_eq!(mounts_under(&fx.state), Vec::<String>::new(), "mounts left");
    for d in [fx.run.join("spare"), fx.state.join("spare")] {
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert!(left.is_empty(), "{} not empty: {left:?}", d.display());
    }
}

#[test]
fn pods_started_back_to_back_get_namespaces_and_hostnames_of_their_own() {
    let fx = fixture("apart");
    let rt = fx.open();
    let mut seen: Vec<(String, String)> = Vec::new();
    for i in 0..4 {
        let uid = format!("uid-apart-{i}");
        let p = pod(
            &format!("apart-{i}"),
            json!({ "containers": [ctr("c", "sleep 1000")] }),
        );
        fx.start(&rt, &uid, &p);
        let pid = pid_of(&rt, &uid, "c");
        let (code, out) = exec(&rt, &uid, "c", &["hostname"]);
        assert_eq!((code, out.trim()), (0, format!("apart-{i}").as_str()));
        let ids = (ns_link(pid, "net"), ns_link(pid, "uts"));
        assert!(
            !seen.contains(&ids),
            "pod {i} shares namespaces with an earlier pod"
        );
        seen.push(ids);
    }
    for i in 0..4 {
        rt.remove_pod(&format!("uid-apart-{i}")).unwrap();
    }
}

#[test]
fn a_failed_start_says_why_and_a_killed_helper_is_replaced() {
    let fx = fixture("helper");
    let rt = fx.open();
    let first = rt
        .helper_pid()
        .expect("the helper runs once the runtime is open");

    // libcontainer's reason comes back through the helper, and nothing of the pod stays.
    let bad = pod(
        "bad",
        json!({ "containers": [{ "name": "c", "image": IMAGE, "command": ["/no/such/program"] }] }),
    );
    let e = rt
        .start_pod(PodToStart {
            uid: "uid-bad",
            revision: 1,
            spec_hash: 1,
            pod: &bad,
            images: &fx.images,
        })
        .expect_err("a missing program cannot start");
    assert!(e.to_string().contains("/no/such/program"), "{e}");
    assert_eq!(
        rt.helper_pid(),
        Some(first),
        "one helper serves every start"
    );

    // A helper killed from outside is replaced by the next start, which works.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the killed helper to end", Duration::from_secs(10), || {
        rt.helper_pid() != Some(first)
    });
    fx.start(
        &rt,
        "uid-after",
        &pod("after", json!({ "containers": [ctr("c", "exit 6")] })),
    );
    assert_eq!(wait_exited(&rt, "uid-after", "c").exit_code, 6);
    let second = rt.helper_pid().expect("a new helper");
    assert_ne!(second, first);
    // The child that served the start has ended and been reaped: no zombie is left.
    wait_until(
        "the helper's children to be reaped",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{second}/task/{second}/children"))
                .is_ok_and(|c| c.trim().is_empty())
        },
    );
    rt.remove_pod("uid-after").unwrap();

    // Closing the runtime ends the helper.
    drop(rt);
    let stat = std::fs::read_to_string(format!("/proc/{second}/stat")).unwrap_or_default();
    assert!(stat.is_empty(), "the helper outlived its runtime: {stat}");
}

#[test]
fn the_devices_cgroup_lets_containers_use_the_default_devices_and_no_other() {
    let fx = fixture("dev");
    let rt = fx.open();
    // A node of a device anyone on the host may open (FUSE's, 10:229) made inside the container
    // (CAP_MKNOD and "mknod" of any device are allowed, as with Docker) cannot be
    // opened: the devices cgroup refuses it.
    std::fs::File::open("/dev/fuse").expect("the host opens /dev/fuse");
    let script = "head -c 5 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
                  head -c 3 /dev/urandom | wc -c; mknod /tmp/fuse c 10 229 && echo made; \
                  (exec 3</tmp/fuse) 2>/dev/null; echo fuse=$?";
    let p = pod("dev", json!({ "containers": [ctr("c", script)] }));
    fx.start(&rt, "uid-dev", &p);
    assert_eq!(wait_exited(&rt, "uid-dev", "c").exit_code, 0);
    let out = read_log(&rt, "uid-dev", "c");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["5", "null-ok", "3", "made", "fuse=1"], "{out}");
    rt.remove_pod("uid-dev").unwrap();
}
