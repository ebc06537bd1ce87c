//! End to end: the real `skiff-hub serve` binary with its SQLite store, spoken to over
//! TCP, stopped with SIGTERM and started again on the same data directory.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// A running hub; killed if a test fails before stopping it.
struct Hub {
    child: Option<Child>,
    base: String,
    token_path: PathBuf,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(data_dir: &Path) -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff-hub"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        // The data dir comes from the environment, the listen address from a flag.
        .env("SKIFF_HUB_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start skiff-hub");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("skiff-hub printed no startup line");
    // "skiff-hub listening on http://127.0.0.1:PORT (admin token in PATH)"
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let token_path = PathBuf::from(
        line.trim()
            .rsplit_once("admin token in ")
            .unwrap_or_else(|| panic!("no token path in {line:?}"))
            .1
            .trim_end_matches(')'),
    );
    Hub {
        child: Some(child),
        base,
        token_path,
    }
}

impl Hub {
    fn token(&self) -> String {
        let meta = std::fs::metadata(&self.token_path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "admin.token mode");
        std::fs::read_to_string(&self.token_path)
            .unwrap()
            .trim()
            .to_string()
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("skiff-hub did not exit within 20s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn new(hub: &Hub) -> Client {
        Client {
            agent: agent(),
            base: hub.base.clone(),
            auth: format!("Bearer {}", hub.token()),
        }
    }

    fn reply(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut resp = resp.expect("HTTP request failed");
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, body)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        Client::reply(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", &self.auth)
                .call(),
        )
    }

    fn send(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            "PATCH" => self.agent.patch(url),
            other => panic!("{other}"),
        };
        Client::reply(
            req.header("Authorization", &self.auth)
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        Client::reply(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", &self.auth)
                .call(),
        )
    }
}

const SAS: &str = "/api/v1/namespaces/edge/serviceaccounts";

#[test]
fn serve_persist_terminate_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let mut hub = start(&data);
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(data.join("state.db").is_file());
    let api = Client::new(&hub);

    // Unauthenticated: health and version only.
    let (code, _) = Client::reply(agent().get(format!("{}/healthz", hub.base)).call());
    assert_eq!(code, 200);
    let (code, version) = Client::reply(agent().get(format!("{}/version", hub.base)).call());
    assert_eq!(code, 200);
    assert_eq!(version["gitVersion"], "v0.1.0");
    let (code, status) = Client::reply(agent().get(format!("{}{SAS}", hub.base)).call());
    assert_eq!(code, 401);
    assert_eq!(status["reason"], "Unauthorized");

    let (code, nss) = api.get("/api/v1/namespaces");
    assert_eq!(code, 200);
    let names: Vec<_> = nss["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "kube-system"]);

    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "edge"}});
    let (code, body) = api.send(
        "POST",
        "/api/v1/namespaces",
        "application/json",
        &ns.to_string(),
    );
    assert_eq!(code, 201, "{body}");
    let yaml = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: agent\n  labels:\n    role: device\n";
    let (code, created) = api.send("POST", SAS, "application/yaml", yaml);
    assert_eq!(code, 201, "{created}");
    let (code, _) = api.send("POST", SAS, "application/yaml", yaml);
    assert_eq!(code, 409);

    // A watch over real TCP: the synthetic ADDED, then a live MODIFIED.
    let watch_url = format!("{}{SAS}?watch=true", hub.base);
    let auth = api.auth.clone();
    let (lines_tx, lines_rx) = mpsc::channel::<Value>();
    let watcher = std::thread::spawn(move || {
        let resp = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .get(watch_url)
            .header("Authorization", auth)
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let reader = BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            lines_tx.send(serde_json::from_str(&line).unwrap()).unwrap();
        }
        // The stream ended: the server shut down.
    });
    let first = lines_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "agent");
    let (code, patched) = api.send(
        "PATCH",
        &format!("{SAS}/agent"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"role":"gateway"}}}"#,
    );
    assert_eq!(code, 200, "{patched}");
    let second = lines_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(second["type"], "MODIFIED");
    assert_eq!(second["object"]["metadata"]["labels"]["role"], "gateway");

    let token_before = hub.token();
    let rv_before: u64 = patched["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // SIGTERM with a watch open: the watch ends, the process exits 0.
    let status = hub.terminate();
    assert!(status.success(), "exit status {status:?}");
    watcher.join().unwrap();

    // A config file in the data dir is read on the next start.
    std::fs::write(data.join("hub.toml"), "body-limit = \"1Ki\"\n").unwrap();
    let mut hub = start(&data);
    assert_eq!(hub.token(), token_before, "the token survives restarts");
    let api = Client::new(&hub);
    let (code, got) = api.get(&format!("{SAS}/agent"));
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["metadata"]["labels"]["role"], "gateway");
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let big = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "big", "annotations": {"pad": "x".repeat(2048)}}});
    let (code, status) = api.send("POST", SAS, "application/json", &big.to_string());
    assert_eq!(code, 413, "{status}");
    let small =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "small"}});
    let (code, made) = api.send("POST", SAS, "application/json", &small.to_string());
    assert_eq!(code, 201, "{made}");
    let rv: u64 = made["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > rv_before, "revisions continue after a restart");

    // Deleting the namespace takes its contents along.
    let (code, body) = api.delete("/api/v1/namespaces/edge");
    assert_eq!(code, 200, "{body}");
    let (code, _) = api.get(&format!("{SAS}/agent"));
    assert_eq!(code, 404);
    let status = hub.terminate();
    assert!(status.success(), "exit status {status:?}");

    // Nothing else is left in the data dir but what the hub owns.
    let mut files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with("state.db"))
        .collect();
    files.sort();
    // dispatch-sent.json: what each node was last sent, written at shutdown.
    assert_eq!(files, ["admin.token", "dispatch-sent.json", "hub.toml"]);
}
