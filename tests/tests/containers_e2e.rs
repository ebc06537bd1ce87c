//! Real containers end to end: the real hub (embedded broker, OCI registry), a real
//! `skiff-agent` with the Linux runtime (libcontainer), the `skiff` binary and a busybox
//! image the test builds and imports. Covers the whole path a user takes: `skiff image
//! import`, `skiff run`, the pod Running in the store, `skiff logs` and `skiff exec`
//! (output, stdin, exit code) through the hub, a missing image showing ErrImagePull /
//! ImagePullBackOff with an event, a liveness probe restarting a container, adoption of
//! running containers after the agent is killed with SIGKILL, and deletion leaving no
//! mount behind. Needs root.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::image::TestImage;
use skiff_tests::{BrokerKind, Fleet, SPARE_OVERLAYS, agent_mounts};

const WAIT: Duration = Duration::from_secs(60);

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hub with the busybox image imported as `busybox:1`, and one joined agent with the
/// Linux runtime. Needs root.
fn device(node: &str) -> (Fleet, skiff_tests::Agent) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "real containers need root: run the test suite as root (scripts/test.sh)"
    );
    let fleet = Fleet::start(BrokerKind::Embedded, &[], false);
    let tar = fleet.hub.scratch().join("busybox.tar");
    TestImage::busybox()
        .reference("busybox:1")
        .write_oci_layout_tar(&tar)
        .expect("building the busybox image");
    fleet.hub.skiff_ok(&[
        "image",
        "import",
        tar.to_str().unwrap(),
        "--tag",
        "busybox:1",
    ]);
    let agent = fleet.joined_agent(node, &["--runtime", "linux"]);
    (fleet, agent)
}

/// Waits until the hub has no pod left and no mount of a pod remains under `state`: the
/// only ones allowed are the overlays of the spare pod directories the agent keeps ready.
fn wait_all_gone(hub: &skiff_tests::Hub, agent: &skiff_tests::Agent, state: &std::path::Path) {
    eventually(agent, || {
        let (left, spares) = agent_mounts(state).expect("mountinfo");
        let (_, list) = hub.request("GET", "/api/v1/namespaces/default/pods", None, true);
        let pods = list["items"].as_array().map_or(0, Vec::len);
        (!left.is_empty() || pods != 0 || spares.len() > SPARE_OVERLAYS)
            .then(|| format!("{pods} pods, mounts left: {left:#?}, spare mounts: {spares:#?}"))
    });
}

/// Polls `check` until it finds nothing wrong (`None`); after [`WAIT`] fails with what it
/// last found and the agent's log.
fn eventually(agent: &skiff_tests::Agent, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + WAIT;
    while let Some(wrong) = check() {
        assert!(
            Instant::now() < deadline,
            "{wrong}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The command lines (arguments joined by spaces) of the processes whose command line
/// contains `needle`, other than this one.
fn processes_with(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n != me && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim_end()
                .to_string()
        })
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn pods_run_real_containers_end_to_end() {
    let (fleet, mut agent) = device("dev-1");
    let hub = &fleet.hub;
    let state = agent.state_dir().to_path_buf();

    // Run, and see it Running in the store as the device reports it.
    hub.skiff_ok(&[
        "run",
        "hello",
        "--image",
        "busybox:1",
        "--",
        "sh",
        "-c",
        "echo hello from skiff; exec sleep 1000",
    ]);
    let pod = hub.wait_for(&pod_path("hello"), WAIT, running);
    let started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].clone();
    assert!(started.is_string(), "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["ready"], true,
        "{pod}"
    );

    // Logs through the hub.
    eventually(&agent, || {
        let out = hub.skiff(&["logs", "hello"]);
        (!text(&out).contains("hello from skiff")).then(|| format!("no log line: {out:?}"))
    });

    // Exec: output, the remote exit code, stdin.
    let out = hub.skiff(&["exec", "hello", "--", "cat", "/etc/hostname"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out).trim(), "hello");
    let out = hub.skiff(&["exec", "hello", "--", "sh", "-c", "echo to-err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to-err"),
        "{out:?}"
    );
    let out = hub.skiff_stdin(
        &["exec", "-i", "hello", "--", "tr", "a-z", "A-Z"],
        "quiet edge\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out), "QUIET EDGE\n");
    // Far more input than the agent buffers, to a command that starts reading late:
    // the input window holds the client back instead of overflowing the device.
    let big = "0123456789abcdef".repeat(3 << 16);
    let out = hub.skiff_stdin(
        &["exec", "-i", "hello", "--", "sh", "-c", "sleep 2; wc -c"],
        &big,
    );
    assert!(out.status.success(), "{out:?}\nagent log:\n{}", agent.log());
    assert_eq!(text(&out).trim(), big.len().to_string());
    // A command that closes its output and runs on dies with its session when the
    // client goes away, whether it was already running or still being started: nothing
    // is left in the container, neither the command nor a half-started one.
    let exec_detached = |tag: &str| {
        hub.skiff_command()
            .args(["exec", "hello", "--", "sh", "-c"])
            .arg(format!("exec >/dev/null 2>&1; exec sleep {tag}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut live = exec_detached("4242");
    eventually(&agent, || {
        processes_with("sleep 4242")
            .iter()
            .all(|c| !c.starts_with("sleep"))
            .then(|| "the exec'd command never ran".to_string())
    });
    live.kill().unwrap();
    live.wait().unwrap();
    for (i, delay_ms) in [0u64, 10, 25, 50].into_iter().enumerate() {
        let tag = format!("424{}", 3 + i);
        let mut starting = exec_detached(&tag);
        let deadline = Instant::now() + WAIT;
        while !processes_with(&format!("sleep {tag}"))
            .iter()
            .any(|c| c.contains("__container exec"))
        {
            assert!(Instant::now() < deadline, "the exec helper never started");
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        starting.kill().unwrap();
        starting.wait().unwrap();
    }
    eventually(&agent, || {
        let left = processes_with("sleep 424");
        (!left.is_empty()).then(|| format!("left behind by closed exec sessions: {left:?}"))
    });
    // An image the hub does not have: the pod shows why, with an event.
    hub.skiff_ok(&["run", "broken", "--image", "nosuch:1"]);
    let pod = hub.wait_for(&pod_path("broken"), WAIT, |p| {
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let message = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("nosuch"), "{pod}");
    let events = hub.wait_for("/api/v1/namespaces/default/events", WAIT, |l| {
        l["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["involvedObject"]["name"] == "broken"
                    && e["reason"] == "Failed"
                    && e["type"] == "Warning"
            })
        })
    });
    assert!(events["items"].is_array());

    // A failing liveness probe restarts the container.
    let probed = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"sick"},"spec":{
        "containers":[{"name":"app","image":"busybox:1","command":["sleep","1000"],
        "livenessProbe":{"exec":{"command":["cat","/tmp/healthy"]},
          "periodSeconds":1,"failureThreshold":2}}],
        "terminationGracePeriodSeconds":1}}"#;
    hub.skiff_stdin(&["apply", "-f", "-"], probed);
    hub.wait_for(&pod_path("sick"), WAIT, |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    });
    hub.wait_for("/api/v1/namespaces/default/events", WAIT, |l| {
        l["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .any(|e| e["involvedObject"]["name"] == "sick" && e["reason"] == "Unhealthy")
        })
    });
    hub.skiff_ok(&["delete", "pod", "sick"]);

    // SIGKILL the agent: the container keeps running, and the agent started again
    // adopts it (same start time, no restart).
    agent.kill();
    let out = hub.skiff(&["get", "pod", "hello", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    agent.start_again();
    std::thread::sleep(Duration::from_secs(3));
    let pod = hub.wait_for(&pod_path("hello"), WAIT, running);
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0, "{pod}");
    assert_eq!(cs["state"]["running"]["startedAt"], started, "{pod}");
    let out = hub.skiff(&["exec", "hello", "--", "cat", "/etc/hostname"]);
    assert_eq!(text(&out).trim(), "hello", "{out:?}");

    // Deleting frees everything the pods had: no mount is left under the state dir.
    hub.skiff_ok(&["delete", "pod", "hello", "broken"]);
    wait_all_gone(hub, &agent, &state);
    agent.stop();
}

#[test]
fn init_containers_run_in_order_and_a_failed_one_holds_the_pod() {
    let (fleet, agent) = device("dev-init");
    let hub = &fleet.hub;
    let state = agent.state_dir().to_path_buf();

    let manifests = r#"
apiVersion: v1
kind: Pod
metadata: {name: seeded}
spec:
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: first, image: "busybox:1", command: [sh, -c, "echo one > /work/order"],
     volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: "busybox:1", command: [sh, -c, "sleep 1; echo two >> /work/order"],
     volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: "busybox:1", command: [sh, -c, "cat /work/order; exec sleep 1000"],
     volumeMounts: [{name: work, mountPath: /work}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stuck}
spec:
  initContainers:
  - {name: fail, image: "busybox:1", command: [sh, -c, "exit 3"]}
  containers:
  - {name: app, image: "busybox:1", command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  initContainers:
  - {name: fail, image: "busybox:1", command: [sh, -c, "exit 4"]}
  containers:
  - {name: app, image: "busybox:1", command: [sleep, "1000"]}
"#;
    let out = hub.skiff_stdin(&["apply", "-f", "-"], manifests);
    assert!(out.status.success(), "{out:?}");

    // In order, each to completion, before the app container: it sees both lines.
    let pod = hub.wait_for(&pod_path("seeded"), WAIT, running);
    for (i, name) in ["first", "second"].iter().enumerate() {
        let s = &pod["status"]["initContainerStatuses"][i];
        assert_eq!(s["name"], *name, "{pod}");
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{pod}");
    }
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .cloned()
        .unwrap();
    assert_eq!(initialized["status"], "True", "{pod}");
    eventually(&agent, || {
        let out = hub.skiff(&["logs", "seeded", "-c", "app"]);
        (text(&out) != "one\ntwo\n").then(|| format!("app log: {out:?}"))
    });

    // A failing init container is restarted with back-off; the pod stays Pending and
    // its app container never starts.
    let pod = hub.wait_for(&pod_path("stuck"), WAIT, |p| {
        p["status"]["initContainerStatuses"][0]["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
            && p["status"]["initContainerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff"
    });
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["lastState"]["terminated"]["exitCode"], 3,
        "{pod}"
    );
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing",
        "{pod}"
    );

    // Under restartPolicy Never the failure is final: the pod Failed, the app never ran.
    let pod = hub.wait_for(&pod_path("once"), WAIT, |p| {
        p["status"]["phase"] == "Failed"
    });
    let s = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(s["state"]["terminated"]["exitCode"], 4, "{pod}");
    assert_eq!(s["restartCount"], 0, "{pod}");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing",
        "{pod}"
    );

    hub.skiff_ok(&["delete", "pod", "seeded", "stuck", "once"]);
    wait_all_gone(hub, &agent, &state);
}
