//! End to end: the real `skiff` binary against a real `skiff-hub serve` on a temp data
//! directory. Needs `cargo build --workspace --bins` first (see `skiff_tests::binary`).

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::{Background, Hub};

const SHOP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: p1
  namespace: shop
  labels: {app: web, tier: fe}
spec:
  containers:
  - name: main
    image: registry.example/web:1
---
apiVersion: v1
kind: Pod
metadata:
  name: p2
  namespace: shop
  labels: {app: db}
spec:
  containers:
  - name: main
    image: registry.example/db:1
---
# The namespace comes last in the file; apply still creates it first.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"#;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(hub: &Hub, name: &str, text: &str) -> String {
    let p = hub.scratch().join(name);
    std::fs::write(&p, text).expect("writing a manifest");
    p.to_str().expect("temp paths are UTF-8").to_string()
}

/// The NAME column (or the column `col`) of a table, header excluded.
fn column(table: &str, col: usize) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(col).map(String::from))
        .collect()
}

fn json(hub: &Hub, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&hub.skiff_ok(&all)).expect("skiff -o json prints JSON")
}

fn assert_fails(o: &Output, code: i32, stderr_has: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    for want in stderr_has {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one line of error:\n{err}");
}

#[test]
fn apply_is_idempotent_and_get_prints_every_format() {
    let hub = Hub::start();
    let file = write(&hub, "shop.yaml", SHOP);

    let first = hub.skiff_ok(&["apply", "-f", &file]);
    assert_eq!(
        first.lines().collect::<Vec<_>>(),
        vec![
            "namespace/shop created",
            "service/web created",
            "deployment.apps/web created",
            "pod/p1 created",
            "pod/p2 created",
        ],
        "hub log:\n{}",
        hub.log()
    );
    let again = hub.skiff_ok(&["apply", "-f", &file]);
    assert!(
        again.lines().all(|l| l.ends_with(" unchanged")) && again.lines().count() == 5,
        "{again}"
    );

    // An edit through standard input: only the deployment changes.
    let edited = SHOP.replace("replicas: 2", "replicas: 3");
    let out = hub.skiff_stdin(&["apply", "-f", "-"], &edited);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("deployment.apps/web configured\n"), "{text}");
    assert!(text.contains("pod/p1 unchanged\n"), "{text}");
    let dep = json(&hub, &["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(dep["kind"], "Deployment");
    assert_eq!(dep["spec"]["replicas"], 3);

    // Table: kubectl's columns, aligned, names present.
    let table = hub.skiff_ok(&["get", "pods", "-n", "shop"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let names = column(&table, 0);
    assert!(names.contains(&"p1".to_string()) && names.contains(&"p2".to_string()));
    let status_at = table.lines().next().unwrap().find("STATUS").unwrap();
    for line in table.lines().skip(1) {
        assert!(
            line[status_at..].starts_with(|c: char| c.is_ascii_alphabetic()),
            "misaligned: {table}"
        );
    }
    let wide = hub.skiff_ok(&["get", "pods", "-n", "shop", "-o", "wide"]);
    let wide_header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(wide_header[5..], ["IP", "NODE"], "{wide}");

    // Names, JSON, YAML.
    let names = hub.skiff_ok(&["get", "pods", "-n", "shop", "-o", "name"]);
    assert!(names.lines().any(|l| l == "pod/p1"), "{names}");
    assert!(names.lines().any(|l| l == "pod/p2"), "{names}");
    assert_eq!(
        hub.skiff_ok(&["get", "deployment.apps/web", "-n", "shop", "-o", "name"]),
        "deployment.apps/web\n"
    );
    let p1 = json(&hub, &["get", "pod", "p1", "-n", "shop"]);
    assert_eq!(p1["apiVersion"], "v1");
    assert_eq!(p1["kind"], "Pod");
    assert_eq!(p1["metadata"]["labels"]["tier"], "fe");
    let yaml: Value =
        serde_yaml_ng::from_str(&hub.skiff_ok(&["get", "pod/p1", "-n", "shop", "-o", "yaml"]))
            .unwrap();
    assert_eq!(yaml["metadata"]["name"], "p1");
    assert_eq!(yaml["metadata"]["uid"], p1["metadata"]["uid"]);
    let list = json(&hub, &["get", "pods", "-n", "shop"]);
    assert_eq!(list["kind"], "List");
    let items: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(items.contains(&"p1") && items.contains(&"p2"), "{items:?}");

    // All namespaces, selectors.
    let all = hub.skiff_ok(&["get", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq(["shop", "p1"])),
        "{all}"
    );
    let web = hub.skiff_ok(&[
        "get",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=web,tier=fe",
        "-o",
        "name",
    ]);
    assert_eq!(web, "pod/p1\n");
    let not_web = hub.skiff_ok(&["get", "pods", "-n", "shop", "-l", "app!=web", "-o", "name"]);
    assert!(not_web.lines().any(|l| l == "pod/p2"), "{not_web}");
    assert!(!not_web.lines().any(|l| l == "pod/p1"), "{not_web}");
    let mixed = hub.skiff_ok(&["get", "deploy,svc", "-n", "shop", "-o", "name"]);
    assert_eq!(mixed, "deployment.apps/web\nservice/web\n");
    let svc = hub.skiff_ok(&["get", "svc", "-n", "shop"]);
    assert!(svc.contains("80/TCP"), "{svc}");

    // Empty and missing.
    let out = hub.skiff(&["get", "pods", "-n", "nothing-here"]);
    assert!(out.status.success());
    assert_eq!(
        stderr(&out),
        "No resources found in nothing-here namespace.\n"
    );
    assert!(out.stdout.is_empty());
    let out = hub.skiff(&["get", "pod", "ghost", "-n", "shop"]);
    assert_fails(
        &out,
        1,
        &["Error from server (NotFound)", "\"ghost\" not found"],
    );
    let out = hub.skiff(&["get", "widgets"]);
    assert_fails(&out, 1, &["widgets"]);

    let described = hub.skiff_ok(&["describe", "pod", "p1", "-n", "shop"]);
    for want in [
        "Name:",
        "p1",
        "Namespace:",
        "shop",
        "app=web",
        "Containers:",
        "Events:",
    ] {
        assert!(
            described.contains(want),
            "describe lacks {want:?}:\n{described}"
        );
    }
}

#[test]
fn labels_annotations_taints_and_cordon_edit_a_node() {
    let hub = Hub::start();
    let file = write(
        &hub,
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    zone: north\n",
    );
    assert_eq!(hub.skiff_ok(&["apply", "-f", &file]), "node/n1 created\n");
    let labels = |hub: &Hub| json(hub, &["get", "node", "n1"])["metadata"]["labels"].clone();

    assert_eq!(
        hub.skiff_ok(&["label", "node", "n1", "tier=edge"]),
        "node/n1 labeled\n"
    );
    assert_eq!(labels(&hub)["tier"], "edge");
    let out = hub.skiff(&["label", "node", "n1", "zone=south"]);
    assert_fails(
        &out,
        1,
        &["'zone' already has a value (north)", "--overwrite"],
    );
    assert_eq!(labels(&hub)["zone"], "north");
    hub.skiff_ok(&["label", "node/n1", "zone=south", "--overwrite"]);
    assert_eq!(labels(&hub)["zone"], "south");
    hub.skiff_ok(&["label", "no", "n1", "tier-"]);
    assert!(labels(&hub).get("tier").is_none());
    let sel = hub.skiff_ok(&["get", "nodes", "-l", "zone=south", "-o", "name"]);
    assert_eq!(sel, "node/n1\n");

    assert_eq!(
        hub.skiff_ok(&["annotate", "node", "n1", "note=hello world"]),
        "node/n1 annotated\n"
    );
    assert_eq!(
        json(&hub, &["get", "node", "n1"])["metadata"]["annotations"]["note"],
        "hello world"
    );

    let taints = |hub: &Hub| -> Vec<Value> {
        json(hub, &["get", "node", "n1"])["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let has = |ts: &[Value], key: &str| ts.iter().any(|t| t["key"] == key);
    assert_eq!(
        hub.skiff_ok(&["taint", "node", "n1", "dedicated=gpu:NoSchedule"]),
        "node/n1 tainted\n"
    );
    let ts = taints(&hub);
    let t = ts
        .iter()
        .find(|t| t["key"] == "dedicated")
        .expect("taint added");
    assert_eq!(t["value"], "gpu");
    assert_eq!(t["effect"], "NoSchedule");
    let out = hub.skiff(&["taint", "n1", "dedicated=cpu:NoSchedule"]);
    assert_fails(&out, 1, &["--overwrite is false"]);
    let out = hub.skiff(&["taint", "n1", "dedicated=cpu:Sometimes"]);
    assert_fails(&out, 2, &["NoSchedule, PreferNoSchedule, NoExecute"]);
    assert_eq!(
        hub.skiff_ok(&["taint", "n1", "dedicated:NoSchedule-"]),
        "node/n1 untainted\n"
    );
    assert!(!has(&taints(&hub), "dedicated"));

    assert_eq!(hub.skiff_ok(&["cordon", "n1"]), "node/n1 cordoned\n");
    assert_eq!(
        json(&hub, &["get", "node", "n1"])["spec"]["unschedulable"],
        true
    );
    let nodes = hub.skiff_ok(&["get", "nodes"]);
    assert!(nodes.contains(",SchedulingDisabled"), "{nodes}");
    assert_eq!(
        hub.skiff_ok(&["cordon", "n1"]),
        "node/n1 already cordoned\n"
    );
    assert_eq!(hub.skiff_ok(&["uncordon", "n1"]), "node/n1 uncordoned\n");
    assert_ne!(
        json(&hub, &["get", "node", "n1"])["spec"]["unschedulable"],
        true
    );

    let described = hub.skiff_ok(&["describe", "node", "n1"]);
    assert!(described.contains("zone=south"), "{described}");
    assert!(described.contains("Unschedulable:"), "{described}");
}

#[test]
fn watch_sees_a_pod_come_and_go_and_delete_waits() {
    let hub = Hub::start();
    let mut cmd = hub.skiff_command();
    cmd.args(["get", "pods", "-w", "--output-watch-events"]);
    let mut watch = Background::spawn(cmd);

    let pod = write(
        &hub,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: w1\nspec:\n  containers:\n  - name: main\n    image: registry.example/w:1\n",
    );
    // Give the watch a moment to open: an event before that still shows up, as a row
    // of the initial list.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hub.skiff_ok(&["apply", "-f", &pod]), "pod/w1 created\n");
    let added = watch.wait_line(Duration::from_secs(20), |l| {
        l.starts_with("ADDED") && l.split_whitespace().nth(1) == Some("w1")
    });
    assert!(added.contains("0/1"), "{added}");

    let out = hub.skiff(&["delete", "pod", "w1", "--wait", "--timeout", "30s"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), hub.log());
    assert_eq!(stdout(&out), "pod \"w1\" deleted\n");
    let out = hub.skiff(&["get", "pod", "w1"]);
    assert_fails(&out, 1, &["NotFound"]);
    watch.wait_line(Duration::from_secs(20), |l| {
        l.starts_with("DELETED") && l.split_whitespace().nth(1) == Some("w1")
    });
    let header = &watch.seen()[0];
    assert!(header.starts_with("EVENT"), "{:?}", watch.seen());
    assert_eq!(
        watch
            .seen()
            .iter()
            .filter(|l| l.starts_with("EVENT"))
            .count(),
        1,
        "the header is printed once: {:?}",
        watch.seen()
    );

    // Deleting by file and by selector; a missing object is an error unless ignored.
    hub.skiff_ok(&["apply", "-f", &pod]);
    assert_eq!(
        hub.skiff_ok(&["delete", "-f", &pod, "--wait"]),
        "pod \"w1\" deleted\n"
    );
    let out = hub.skiff(&["delete", "pod", "w1"]);
    assert_fails(&out, 1, &["NotFound"]);
    assert_eq!(
        hub.skiff_ok(&["delete", "pod", "w1", "--ignore-not-found"]),
        ""
    );
}

#[test]
fn failures_are_one_clear_line() {
    let hub = Hub::start();

    // Wrong token: refused, with a hint about the token.
    let out = hub
        .skiff_command()
        .env("SKIFF_TOKEN", "not-the-token")
        .args(["get", "pods"])
        .output()
        .unwrap();
    assert_fails(&out, 1, &["token"]);

    // A bad manifest fails before anything is sent, naming the file and the field.
    let bad = write(
        &hub,
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: half\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: three\n",
    );
    let out = hub.skiff(&["apply", "-f", &bad]);
    assert_fails(&out, 1, &["bad.yaml", "spec.replicas"]);
    assert!(out.stdout.is_empty());
    let out = hub.skiff(&["get", "namespace", "half"]);
    assert_fails(&out, 1, &["NotFound"]);

    let out = hub.skiff(&["apply", "-f", "/nonexistent/skiff.yaml"]);
    assert_fails(&out, 1, &["/nonexistent/skiff.yaml"]);
    let out = hub.skiff(&["get", "gizmos", "x"]);
    assert_fails(&out, 1, &["gizmos"]);
    let out = hub.skiff(&["get"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Nobody listens on port 1.
    let out = hub
        .skiff_command()
        .env("SKIFF_SERVER", "http://127.0.0.1:1")
        .args(["get", "pods"])
        .output()
        .unwrap();
    assert_fails(
        &out,
        1,
        &[
            "cannot reach the hub at http://127.0.0.1:1: connection refused",
            "SKIFF_SERVER",
        ],
    );

    let version = hub.skiff_ok(&["version"]);
    assert!(version.starts_with("Client Version: v"), "{version}");
    assert!(version.contains("\nServer Version: "), "{version}");
    let kinds = hub.skiff_ok(&["api-resources"]);
    assert!(kinds.lines().any(|l| l.starts_with("pods ")), "{kinds}");
}
