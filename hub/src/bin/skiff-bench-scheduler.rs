//! Benchmark of the Skiff scheduler against a real SQLite store: creates Ready nodes,
//! starts the scheduler, creates pods, and times from the first pod created until the
//! last binding is durable (seen in a store watch, which only carries committed
//! writes). Prints pods/s, the share of time deciding and committing, and ratios to
//! kube-scheduler's published scheduler_perf figures.
//!
//! `cargo run --release -p skiff-hub --bin skiff-bench-scheduler -- --nodes 1000 --pods 10000`

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use skiff_api::resources::{Node, Pod, Taint, TaintEffect};
use skiff_api::{Kind, Object, parse_manifests};
use skiff_hub::clock::SystemClock;
use skiff_hub::scheduler::{Scheduler, SchedulerOptions, SchedulerStats};
use skiff_hub::store::{EventType, Scope, SqliteStore, Store, StoreOptions, StoreStats, Write};

/// kube-scheduler's scheduler_perf figures as published (it cannot run here):
/// ~1,000 pods/s for basic pods at 500 nodes on 36 CPUs, 287 pods/s with required
/// pod anti-affinity.
const PEER_BASIC_PODS_PER_SEC: f64 = 1000.0;
const PEER_ANTI_AFFINITY_PODS_PER_SEC: f64 = 287.0;
const ZONES: usize = 10;
const CREATE_BATCH: usize = 500;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the Skiff scheduler over a real SQLite store")]
struct Args {
    /// Ready nodes to create (zones, architectures, disks and taints vary).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to create and schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Make `--replicas` of the pods replicas of one workload with required pod
    /// anti-affinity on kubernetes.io/hostname (the rest stay basic).
    #[arg(long)]
    anti_affinity: bool,
    /// Anti-affinity replicas (at most one per node can be placed).
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Runs, each on a fresh store; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Scheduler batch size (pods decided per store batch).
    #[arg(long, default_value_t = SchedulerOptions::default().batch_size)]
    batch_size: usize,
    /// Percentage of nodes to score (0 = kube-scheduler's adaptive default).
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Where the temporary stores go (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    bound: Duration,
    events: Duration,
    scheduler: SchedulerStats,
    store: StoreStats,
    pods: usize,
}

impl Run {
    fn pods_per_sec(&self) -> f64 {
        self.pods as f64 / self.bound.as_secs_f64()
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    ensure!(
        args.nodes > 0 && args.pods > 0 && args.runs > 0,
        "nodes, pods and runs must be positive"
    );
    let replicas = if args.anti_affinity {
        args.replicas.min(args.pods)
    } else {
        0
    };
    ensure!(
        replicas <= args.nodes,
        "at most one anti-affinity replica fits per node"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    println!(
        "scheduler benchmark: {} nodes, {} pods ({} with required anti-affinity on kubernetes.io/hostname, {} basic), {} CPUs on this machine (shared with other builds)",
        args.nodes,
        args.pods,
        replicas,
        args.pods - replicas,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let run = runtime.block_on(run_once(&args, replicas, i))?;
        println!(
            "run {}: {:>8.0} pods/s  bound in {:>7.1} ms (events durable at {:>7.1} ms)  deciding {:>5.1}%  committing {:>5.1}%  decisions {}  lost races {}  store commits {}",
            i + 1,
            run.pods_per_sec(),
            ms(run.bound),
            ms(run.events),
            share(run.scheduler.decide_time, run.bound),
            share(run.scheduler.commit_time, run.bound),
            run.scheduler.decisions,
            run.scheduler.binding_failures,
            run.store.commits,
        );
        runs.push(run);
    }
    runs.sort_by_key(|r| r.bound);
    let median = runs[runs.len() / 2];
    println!(
        "median of {}: {:.0} pods/s ({} pods bound in {:.1} ms; deciding {:.1}% of the time, committing {:.1}%)",
        runs.len(),
        median.pods_per_sec(),
        median.pods,
        ms(median.bound),
        share(median.scheduler.decide_time, median.bound),
        share(median.scheduler.commit_time, median.bound),
    );
    let mut peers = Vec::new();
    if replicas < args.pods {
        peers.push((
            PEER_BASIC_PODS_PER_SEC,
            "kube-scheduler scheduler_perf, basic pods, 500 nodes on 36 CPUs, published: ~1,000 pods/s",
        ));
    }
    if replicas > 0 {
        peers.push((
            PEER_ANTI_AFFINITY_PODS_PER_SEC,
            "kube-scheduler scheduler_perf, required pod anti-affinity, published: 287 pods/s",
        ));
    }
    let mixed = if peers.len() > 1 {
        "; this run mixes both kinds of pods"
    } else {
        ""
    };
    for (peer, label) in peers {
        println!(
            "ratio to {label}: {:.1}x (a published figure on other hardware, not measured here{mixed})",
            median.pods_per_sec() / peer
        );
    }
    println!("load average after the runs: {}", load_average());
    Ok(())
}

/// The machine's 1, 5 and 15 minute load averages, as the kernel reports them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn share(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64()
}

async fn run_once(args: &Args, replicas: usize, index: usize) -> anyhow::Result<Run> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "skiff-bench-scheduler-{}-{index}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = run_in(args, replicas, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(args: &Args, replicas: usize, dir: &std::path::Path) -> anyhow::Result<Run> {
    let store = Arc::new(SqliteStore::open(
        dir.join("hub.db"),
        StoreOptions::default(),
    )?);
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    for chunk in (0..args.nodes).collect::<Vec<_>>().chunks(CREATE_BATCH) {
        let writes = chunk.iter().map(|&i| Write::Create(node(i))).collect();
        for r in dyn_store.write_batch(writes).await {
            r.context("create node")?;
        }
    }
    let scheduler = Scheduler::new(
        Arc::clone(&dyn_store),
        Arc::new(SystemClock),
        SchedulerOptions {
            batch_size: args.batch_size,
            percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
            seed: Some(42),
            ..SchedulerOptions::default()
        },
    );
    let stats = scheduler.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    // Let the scheduler list the nodes before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = stats.snapshot();
    let store_before = store.stats();

    let from = dyn_store.revision();
    let mut pod_watch = dyn_store.watch(Scope::kind(Kind::Pod), from)?;
    let mut event_watch = dyn_store.watch(Scope::kind(Kind::Event), from)?;
    // Counted as they come, so this watcher never falls behind the in-memory history.
    let expected_events = args.pods;
    let events_task = tokio::spawn(async move {
        let mut scheduled = 0;
        while scheduled < expected_events {
            let ev = tokio::time::timeout(Duration::from_secs(120), event_watch.next())
                .await
                .context("events stalled")?
                .context("watch ended")??;
            if let Object::Event(e) = &*ev.object
                && e.reason == "Scheduled"
            {
                scheduled += 1;
            }
        }
        anyhow::Ok(Instant::now())
    });
    let pods: Vec<Object> = (0..args.pods)
        .map(|i| if i < replicas { replica(i) } else { basic(i) })
        .collect();
    let started = Instant::now();
    let mut creators = Vec::new();
    let mut pods = pods.into_iter().peekable();
    while pods.peek().is_some() {
        let writes: Vec<Write> = pods
            .by_ref()
            .take(CREATE_BATCH)
            .map(Write::Create)
            .collect();
        let s = Arc::clone(&dyn_store);
        creators.push(tokio::spawn(async move { s.write_batch(writes).await }));
    }
    let mut bound = 0;
    while bound < args.pods {
        let ev = tokio::time::timeout(Duration::from_secs(120), pod_watch.next())
            .await
            .context("no progress for 120 s")?
            .context("watch ended")??;
        if ev.event_type == EventType::Modified
            && let Object::Pod(p) = &*ev.object
            && p.is_scheduled()
            && p.condition("PodScheduled")
                .is_some_and(|c| c.status.is_true())
        {
            bound += 1;
        }
    }
    let bound_at = started.elapsed();
    let events_at = events_task.await?? - started;
    for c in creators {
        for r in c.await? {
            r.context("create pod")?;
        }
    }
    let after = stats.snapshot();
    let store_after = store.stats();
    stop.send(()).ok();
    task.await??;
    verify(&*dyn_store)?;
    store.shutdown().await?;
    Ok(Run {
        bound: bound_at,
        events: events_at,
        scheduler: delta(before, after),
        store: StoreStats {
            commits: store_after.commits - store_before.commits,
            writes: store_after.writes - store_before.writes,
            ..store_after
        },
        pods: args.pods,
    })
}

fn delta(a: SchedulerStats, b: SchedulerStats) -> SchedulerStats {
    SchedulerStats {
        decisions: b.decisions - a.decisions,
        bound: b.bound - a.bound,
        unschedulable: b.unschedulable - a.unschedulable,
        binding_failures: b.binding_failures - a.binding_failures,
        events: b.events - a.events,
        commits: b.commits - a.commits,
        decide_time: b.decide_time - a.decide_time,
        commit_time: b.commit_time - a.commit_time,
    }
}

fn zone(i: usize) -> String {
    format!("zone-{}", i % ZONES)
}

/// Node `i`: every tenth carries a GPU taint; zones, architectures and disks vary;
/// sizes vary between 16 and 64 CPUs.
fn node(i: usize) -> Object {
    let name = format!("node-{i:05}");
    let arch = if i.is_multiple_of(4) {
        "arm64"
    } else {
        "amd64"
    };
    let disk = if i.is_multiple_of(3) { "hdd" } else { "ssd" };
    let cpus = 16 * (1 + i % 4);
    let taints = if i % 10 == 9 {
        "[{key: dedicated, value: gpu, effect: NoSchedule}]"
    } else {
        "[]"
    };
    let accel = if i % 10 == 9 { ", accel: gpu" } else { "" };
    let mut objs = parse_manifests(&format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}, kubernetes.io/arch: {arch}, disk: {disk}{accel}}}
spec: {{taints: {taints}}}
status:
  capacity: {{cpu: '{cpus}', memory: {mem}Gi, pods: '110'}}
  conditions: [{{type: Ready, status: 'True'}}]",
        zone = zone(i),
        mem = cpus * 4,
    ))
    .expect("node manifest");
    objs.pop().expect("one node")
}

/// Basic pod `i`: resources, and a mix of node selectors, node affinity and
/// tolerations; pods belong to 100 ReplicaSets.
fn basic(i: usize) -> Object {
    let owner = i % 100;
    let (cpu, memory) = [
        ("100m", "128Mi"),
        ("250m", "256Mi"),
        ("500m", "512Mi"),
        ("50m", "64Mi"),
    ][i % 4];
    let rules = match i % 10 {
        0 | 1 => "nodeSelector: {disk: ssd}".to_string(),
        2 => "nodeSelector: {kubernetes.io/arch: arm64}".to_string(),
        3 => "nodeSelector: {accel: gpu}\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]".to_string(),
        4 => "affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms: [{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-1, zone-2, zone-3]}]}]".to_string(),
        5 => "tolerations: [{operator: Exists}]".to_string(),
        _ => "nodeSelector: {}".to_string(),
    };
    pod_manifest(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: basic-{i:06}
  namespace: default
  labels: {{app: app-{owner}}}
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: app-{owner}, uid: rs-{owner}, controller: true}}]
spec:
  {rules}
  containers: [{{name: app, image: registry.example/app:1, resources: {{requests: {{cpu: {cpu}, memory: {memory}}}}}}}]"
    ))
}

/// Replica `i` of a workload whose pods must not share a node.
fn replica(i: usize) -> Object {
    pod_manifest(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: spread-{i:06}
  namespace: default
  labels: {{app: spread}}
  ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: spread, uid: rs-spread, controller: true}}]
spec:
  tolerations: [{{operator: Exists}}]
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {{matchLabels: {{app: spread}}}}
        topologyKey: kubernetes.io/hostname
  containers: [{{name: app, image: registry.example/app:1, resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}}}]"
    ))
}

fn pod_manifest(text: &str) -> Object {
    let mut objs = parse_manifests(text).expect("pod manifest");
    let mut obj = objs.pop().expect("one pod");
    skiff_api::apply_defaults(&mut obj);
    obj
}

/// Checks the placements the benchmark produced: every pod bound, node selectors and
/// taints respected, capacity not exceeded, anti-affinity replicas one per node.
fn verify(store: &dyn Store) -> anyhow::Result<()> {
    let nodes: HashMap<String, Node> = store
        .list(&Scope::kind(Kind::Node))
        .0
        .iter()
        .filter_map(|o| match &**o {
            Object::Node(n) => Some((n.metadata.name.clone(), n.clone())),
            _ => None,
        })
        .collect();
    let mut cpu: BTreeMap<&str, i64> = BTreeMap::new();
    let mut replicas_per_node: BTreeMap<&str, usize> = BTreeMap::new();
    let pods = store.list(&Scope::kind(Kind::Pod)).0;
    for obj in &pods {
        let Object::Pod(p) = &**obj else { continue };
        let Some(node_name) = p.spec.node_name.as_deref() else {
            bail!("pod {} was not bound", p.metadata.name);
        };
        let node = nodes.get(node_name).context("bound to an unknown node")?;
        check_rules(p, node)?;
        let (node_name, _) = nodes.get_key_value(node_name).context("node")?;
        *cpu.entry(node_name).or_default() += p
            .spec
            .containers
            .iter()
            .filter_map(|c| c.resources.requests.get("cpu"))
            .map(skiff_api::Quantity::milli_value)
            .sum::<i64>();
        if p.metadata.labels.get("app").map(String::as_str) == Some("spread") {
            *replicas_per_node.entry(node_name).or_default() += 1;
        }
    }
    for (name, used) in cpu {
        let have = nodes[name]
            .status
            .as_ref()
            .and_then(|s| s.capacity.get("cpu"))
            .map_or(0, skiff_api::Quantity::milli_value);
        ensure!(used <= have, "{name} over capacity: {used}m of {have}m");
    }
    ensure!(
        replicas_per_node.values().all(|n| *n <= 1),
        "two anti-affinity replicas share a node"
    );
    Ok(())
}

fn check_rules(p: &Pod, node: &Node) -> anyhow::Result<()> {
    for (k, v) in &p.spec.node_selector {
        ensure!(
            node.metadata.labels.get(k) == Some(v),
            "{} on {} breaks its nodeSelector",
            p.metadata.name,
            node.metadata.name
        );
    }
    let tolerated = |t: &Taint| {
        t.effect == TaintEffect::PreferNoSchedule
            || p.spec.tolerations.iter().any(|tol| tol.tolerates(t))
    };
    ensure!(
        node.spec.taints.iter().all(tolerated),
        "{} on {} does not tolerate its taints",
        p.metadata.name,
        node.metadata.name
    );
    Ok(())
}
