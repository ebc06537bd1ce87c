//! Crash durability: a child process writes to the store as fast as it can and prints
//! each acknowledged write; it is killed with SIGKILL at random moments, and after every
//! kill the store must reopen with every acknowledged write present and a revision that
//! never went back.
//!
//! The child is this test binary re-executed with `SKIFF_STORE_CRASH_CHILD` set, which is
//! why this test has its own `main` instead of the libtest harness.

mod store_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use skiff_api::{Kind, Object, ObjectKey, Revision};
use skiff_hub::store::{Scope, SqliteStore, Store, StoreError, Write};
use store_support::{open, options, pod, rev};

const CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD";
const ROUND_ENV: &str = "SKIFF_STORE_CRASH_ROUND";
const TEST_NAME: &str = "sigkill_during_writes_loses_no_acknowledged_write";
const ROUNDS: usize = 50;
const CHILD_TASKS: usize = 8;

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap_or_default();
        child(PathBuf::from(path), round);
        return;
    }
    // Behave like a libtest binary for listing and name filters.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("running 0 tests");
        return;
    }
    println!("running 1 test");
    let started = Instant::now();
    parent();
    println!(
        "test {TEST_NAME} ... ok ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

/// Writes until killed: creates from several tasks, plus read-modify-write updates of a
/// per-task counter. Prints `ACK <name> <revision>` for each acknowledged create and
/// `ACKU <name> <revision> <count>` for each acknowledged update, one flushed line each.
fn child(path: PathBuf, round: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(&path, options()).expect("child opens store"));
        let mut tasks = Vec::new();
        for t in 0..CHILD_TASKS {
            let store = Arc::clone(&store);
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                let counter = format!("r{round}-c{t}");
                store.create(pod("crash", &counter)).await.expect("counter");
                let key = ObjectKey::new(Kind::Pod, "crash", counter.clone());
                for i in 0.. {
                    let name = format!("r{round}-t{t}-{i}");
                    let o = store.create(pod("crash", &name)).await.expect("create");
                    ack(&format!("ACK {name} {}", rev(&o)));
                    if i % 4 == 0 {
                        let cur = store.get(&key).expect("counter exists");
                        let n = count(&cur) + 1;
                        let mut next = Object::clone(&cur);
                        next.meta_mut().labels.insert("count".into(), n.to_string());
                        let o = store.update(next).await.expect("update");
                        ack(&format!("ACKU {counter} {} {n}", rev(&o)));
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
    });
}

fn ack(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads the pipe; a line that fails to go out was never acknowledged.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

fn count(obj: &Object) -> u64 {
    obj.meta()
        .labels
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Acks {
    /// Created name → acknowledged revision.
    creates: HashMap<String, u64>,
    /// Counter name → highest acknowledged (revision, count).
    updates: HashMap<String, (u64, u64)>,
    max_revision: u64,
}

fn parse_acks(lines: &[String]) -> Acks {
    let mut acks = Acks::default();
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["ACK", name, r] => {
                let r: u64 = r.parse().expect("revision");
                acks.creates.insert((*name).to_string(), r);
                acks.max_revision = acks.max_revision.max(r);
            }
            ["ACKU", name, r, n] => {
                let r: u64 = r.parse().expect("revision");
                let n: u64 = n.parse().expect("count");
                let e = acks.updates.entry((*name).to_string()).or_default();
                *e = (*e).max((r, n));
                acks.max_revision = acks.max_revision.max(r);
            }
            _ => panic!("unexpected child output {line:?}"),
        }
    }
    acks
}

fn parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.db");
    let exe = std::env::current_exe().expect("own executable");
    let mut previous = Revision(0);
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        // Most kills land while writes stream; every fifth lands anywhere from process
        // start, through opening and migrating, to the first writes.
        let early = round % 5 == 4;
        let lines = run_and_kill(&exe, &path, round, early);
        let acks = parse_acks(&lines);
        if !early {
            assert!(
                !acks.creates.is_empty(),
                "round {round}: no acknowledged write"
            );
        }
        total_acks += acks.creates.len();

        let store = open(&path);
        let now = store.revision();
        assert!(
            now.0 >= acks.max_revision,
            "round {round}: revision {now} below acknowledged {}",
            acks.max_revision
        );
        assert!(
            now >= previous,
            "round {round}: revision went back from {previous} to {now}"
        );
        for (name, r) in &acks.creates {
            let key = ObjectKey::new(Kind::Pod, "crash", name.clone());
            let obj = store
                .get(&key)
                .unwrap_or_else(|| panic!("round {round}: acknowledged {name} lost"));
            assert_eq!(rev(&obj), *r, "round {round}: {name}");
        }
        for (name, (r, n)) in &acks.updates {
            let key = ObjectKey::new(Kind::Pod, "crash", name.clone());
            let obj = store
                .get(&key)
                .unwrap_or_else(|| panic!("round {round}: counter {name} lost"));
            assert!(
                rev(&obj) >= *r && count(&obj) >= *n,
                "round {round}: {name} lost an update"
            );
        }
        // History agrees with the objects: a watch replays the round's creates.
        check_history(&store, &acks, round);

        // Clear the round so reopening stays quick; the revision keeps climbing.
        let (pods, _) = store.list(&Scope::in_namespace(Kind::Pod, "crash"));
        let deletes = pods
            .iter()
            .map(|o| Write::Delete {
                key: o.key(),
                precondition: None,
            })
            .collect();
        let runtime = runtime();
        for r in runtime.block_on(store.write_batch(deletes)) {
            r.expect("delete");
        }
        previous = store.revision();
        store.close().expect("close");
    }
    assert!(
        total_acks > ROUNDS * 10,
        "the child barely wrote: {total_acks} acknowledged creates"
    );
    println!("{ROUNDS} kills, {total_acks} acknowledged creates verified");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn check_history(store: &SqliteStore, acks: &Acks, round: usize) {
    let Some(&first) = acks.creates.values().min() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let from = Revision(first - 1);
        let mut w = match store.watch(Scope::in_namespace(Kind::Pod, "crash"), from) {
            Ok(w) => w,
            Err(StoreError::Gone { .. }) => return,
            Err(e) => panic!("round {round}: watch: {e}"),
        };
        let mut seen = 0;
        while seen < acks.creates.len() {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .unwrap_or_else(|_| panic!("round {round}: history replay stalled"))
                .unwrap_or_else(|| panic!("round {round}: history replay ended"))
                .unwrap_or_else(|e| panic!("round {round}: history replay: {e}"));
            let name = &ev.object.meta().name;
            if acks.creates.get(name) == Some(&ev.revision.0) {
                assert_eq!(ev.event_type.as_str(), "ADDED");
                seen += 1;
            }
        }
    });
}

/// Runs one child, kills it with SIGKILL, and returns the complete lines it printed.
fn run_and_kill(exe: &Path, db: &Path, round: usize, early: bool) -> Vec<String> {
    let mut child = Command::new(exe)
        .env(CHILD_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                // A line cut short by the kill was never acknowledged.
                Ok(_) if buf.last() == Some(&b'\n') => {
                    let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });

    let mut lines = Vec::new();
    if early {
        std::thread::sleep(Duration::from_millis(rand::random_range(0..60)));
    } else {
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child acknowledged nothing within 30s");
        lines.push(first);
        std::thread::sleep(Duration::from_millis(rand::random_range(0..200)));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    let status = child.wait().expect("wait for child");
    assert_eq!(
        status.signal(),
        Some(Signal::SIGKILL as i32),
        "round {round}: child did not die by SIGKILL but {status:?}"
    );
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter());
    lines
}
