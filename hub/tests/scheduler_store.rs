//! The scheduler against a real `SqliteStore`: pods land where the rules allow, the
//! rest stay Pending with kube-scheduler's explanation and a FailedScheduling event,
//! and a change that helps (a new node, a label, a removed taint, a deleted pod)
//! places them without waiting for the periodic retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::Revision;
use skiff_api::resources::{ConditionStatus, Event, EventSeverity, Pod};
use skiff_api::{Kind, Object, ObjectKey, parse_manifests};
use skiff_hub::clock::SystemClock;
use skiff_hub::scheduler::{Scheduler, SchedulerOptions};
use skiff_hub::store::{
    Deleted, Mutation, Scope, SqliteStore, Store, StoreError, StoreOptions, Watch, Write, Written,
};

fn manifest(yaml: &str) -> Object {
    parse_manifests(yaml)
        .unwrap_or_else(|e| panic!("bad manifest: {e}\n{yaml}"))
        .pop()
        .expect("one object")
}

fn node(name: &str, labels: &str, cpu: &str, memory: &str, pods: u32, taints: &str) -> Object {
    manifest(&format!(
        "apiVersion: v1
kind: Node
metadata: {{name: {name}, labels: {labels}}}
spec: {{taints: {taints}}}
status:
  capacity: {{cpu: '{cpu}', memory: {memory}, pods: '{pods}'}}
  conditions: [{{type: Ready, status: 'True'}}]"
    ))
}

fn pod(name: &str, spec: &str) -> Object {
    manifest(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}"
    ))
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Pod, "default", name)
}

fn get_pod(store: &dyn Store, name: &str) -> Pod {
    match store.get(&key(name)).as_deref() {
        Some(Object::Pod(p)) => p.clone(),
        other => panic!("pod {name}: {other:?}"),
    }
}

/// Waits until `check` holds, failing with `what` after 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bound_to(store: &dyn Store, name: &str) -> String {
    eventually(&format!("{name} to be bound"), || {
        get_pod(store, name).spec.node_name.is_some()
    })
    .await;
    get_pod(store, name).spec.node_name.unwrap_or_default()
}

/// The `PodScheduled=False` message of a pending pod, once written.
async fn pending_message(store: &dyn Store, name: &str) -> String {
    eventually(&format!("{name} to be marked unschedulable"), || {
        get_pod(store, name).condition("PodScheduled").is_some()
    })
    .await;
    let p = get_pod(store, name);
    assert_eq!(p.spec.node_name, None, "{name} must stay unbound");
    let c = p.condition("PodScheduled").cloned().unwrap_or_default();
    assert_eq!(c.status, ConditionStatus::False, "{name}");
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"), "{name}");
    c.message.unwrap_or_default()
}

fn events_for(store: &dyn Store, pod: &str, reason: &str) -> Vec<Event> {
    store
        .list(&Scope::in_namespace(Kind::Event, "default"))
        .0
        .iter()
        .filter_map(|o| match &**o {
            Object::Event(e)
                if e.reason == reason
                    && e.involved_object.as_ref().is_some_and(|r| r.name == pod) =>
            {
                Some(e.clone())
            }
            _ => None,
        })
        .collect()
}

async fn one_event(store: &dyn Store, pod: &str, reason: &str) -> Event {
    eventually(&format!("a {reason} event for {pod}"), || {
        !events_for(store, pod, reason).is_empty()
    })
    .await;
    let events = events_for(store, pod, reason);
    assert_eq!(events.len(), 1, "{reason} events for {pod}: {events:?}");
    events.into_iter().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_placed_explained_and_retried_when_something_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("hub.db"), StoreOptions::default()).expect("open store"),
    );
    let gpu_taint = "[{key: dedicated, value: gpu, effect: NoSchedule}]";
    for n in [
        node(
            "edge-a",
            "{disk: ssd, topology.kubernetes.io/zone: a}",
            "2",
            "4Gi",
            10,
            "[]",
        ),
        node(
            "edge-b",
            "{topology.kubernetes.io/zone: b}",
            "2",
            "4Gi",
            10,
            "[]",
        ),
        node("gpu-1", "{accel: gpu}", "2", "4Gi", 10, gpu_taint),
        node("tiny", "{role: tiny}", "1", "4Gi", 1, "[]"),
    ] {
        store.create(n).await.expect("create node");
    }
    let c = |requests: &str| {
        format!("[{{name: c, image: busybox, resources: {{requests: {requests}}}}}]")
    };
    let pods = [
        pod(
            "ssd",
            &format!(
                "{{nodeSelector: {{disk: ssd}}, containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
        pod(
            "gpu-job",
            &format!(
                "{{nodeSelector: {{accel: gpu}}, tolerations: [{{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}}], containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
        // Already bound: left alone, but it fills `tiny`.
        pod(
            "occupant",
            &format!("{{nodeName: tiny, containers: {}}}", c("{cpu: 500m}")),
        ),
        pod(
            "other-scheduler",
            &format!(
                "{{schedulerName: custom, containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
        pod("huge", &format!("{{containers: {}}}", c("{memory: 16Gi}"))),
        pod(
            "wants-tiny",
            &format!(
                "{{nodeSelector: {{role: tiny}}, containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
        pod(
            "wants-blue",
            &format!(
                "{{nodeSelector: {{color: blue}}, containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
        pod(
            "wants-gpu-node",
            &format!(
                "{{nodeSelector: {{accel: gpu}}, containers: {}}}",
                c("{cpu: 100m}")
            ),
        ),
    ];
    for p in pods {
        store.create(p).await.expect("create pod");
    }

    let options = SchedulerOptions {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(500),
        seed: Some(1),
        ..SchedulerOptions::default()
    };
    assert_eq!(options.unschedulable_flush, Duration::from_secs(60));
    let scheduler = Scheduler::new(Arc::clone(&store), Arc::new(SystemClock), options);
    let stats = scheduler.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    let started = Instant::now();

    // Placed where the rules allow.
    assert_eq!(bound_to(&*store, "ssd").await, "edge-a");
    assert_eq!(bound_to(&*store, "gpu-job").await, "gpu-1");
    let ssd = get_pod(&*store, "ssd");
    let cond = ssd
        .condition("PodScheduled")
        .expect("PodScheduled on a bound pod");
    assert_eq!(
        (cond.status, cond.reason.as_deref()),
        (ConditionStatus::True, None)
    );
    let scheduled = one_event(&*store, "ssd", "Scheduled").await;
    assert_eq!(
        scheduled.message,
        "Successfully assigned default/ssd to edge-a"
    );
    assert_eq!(scheduled.type_, Some(EventSeverity::Normal));
    assert_eq!(scheduled.source.component, "default-scheduler");
    assert!(
        scheduled.metadata.name.starts_with("ssd."),
        "{}",
        scheduled.metadata.name
    );

    // Explained in kube-scheduler's words, as a condition and an event.
    let huge = "0/4 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient memory.";
    assert_eq!(pending_message(&*store, "huge").await, huge);
    let failed = one_event(&*store, "huge", "FailedScheduling").await;
    assert_eq!(failed.message, huge);
    assert_eq!(failed.type_, Some(EventSeverity::Warning));
    assert_eq!(failed.source.component, "default-scheduler");
    let involved = failed.involved_object.expect("involvedObject");
    assert_eq!(
        (involved.kind.as_str(), involved.namespace.as_str()),
        ("Pod", "default")
    );
    assert_eq!(involved.uid, get_pod(&*store, "huge").metadata.uid);
    assert_eq!(
        pending_message(&*store, "wants-tiny").await,
        "0/4 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let no_match = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 3 node(s) didn't match Pod's node affinity/selector.";
    assert_eq!(pending_message(&*store, "wants-blue").await, no_match);
    assert_eq!(pending_message(&*store, "wants-gpu-node").await, no_match);
    // Pods of another scheduler, and bound pods, are not touched.
    let other = get_pod(&*store, "other-scheduler");
    assert_eq!((other.spec.node_name, other.status), (None, None));
    assert_eq!(get_pod(&*store, "occupant").metadata.generation, Some(1));

    // A change that does not help: the pods are tried again, the same explanation is
    // not written again.
    let blue_rv = get_pod(&*store, "wants-blue").metadata.resource_version;
    let decisions = stats.snapshot().decisions;
    relabel(&*store, "edge-a", "irrelevant", "yes").await;
    eventually("a retry after the node changed", || {
        stats.snapshot().decisions >= decisions + 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get_pod(&*store, "wants-blue").metadata.resource_version,
        blue_rv
    );
    assert_eq!(
        events_for(&*store, "wants-blue", "FailedScheduling").len(),
        1
    );

    // Changes that help, each placing its pod.
    store
        .create(node("big", "{}", "4", "32Gi", 10, "[]"))
        .await
        .expect("create node");
    assert_eq!(bound_to(&*store, "huge").await, "big");
    relabel(&*store, "edge-b", "color", "blue").await;
    assert_eq!(bound_to(&*store, "wants-blue").await, "edge-b");
    store
        .mutate(
            ObjectKey::new(Kind::Node, "", "gpu-1"),
            Box::new(|o| {
                if let Object::Node(n) = o {
                    n.spec.taints.clear();
                }
                Ok(true)
            }),
        )
        .await
        .expect("untaint");
    assert_eq!(bound_to(&*store, "wants-gpu-node").await, "gpu-1");
    store
        .delete(&key("occupant"), None)
        .await
        .expect("delete occupant");
    assert_eq!(bound_to(&*store, "wants-tiny").await, "tiny");
    let huge_pod = get_pod(&*store, "huge");
    let cond = huge_pod.condition("PodScheduled").expect("condition");
    assert_eq!(
        (cond.status, cond.message.as_deref()),
        (ConditionStatus::True, None)
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "placed by the changes, not by the 60 s periodic retry"
    );

    let s = stats.snapshot();
    assert_eq!(s.bound, 6);
    assert_eq!(s.binding_failures, 0);
    stop.send(()).expect("scheduler running");
    task.await
        .expect("scheduler task")
        .expect("scheduler stopped cleanly");
    // Every Scheduled event was written before the scheduler stopped.
    for name in [
        "ssd",
        "gpu-job",
        "huge",
        "wants-blue",
        "wants-gpu-node",
        "wants-tiny",
    ] {
        assert_eq!(events_for(&*store, name, "Scheduled").len(), 1, "{name}");
    }
}

async fn relabel(store: &dyn Store, node: &str, label: &'static str, value: &'static str) {
    store
        .mutate(
            ObjectKey::new(Kind::Node, "", node),
            Box::new(move |o| {
                o.meta_mut().labels.insert(label.into(), value.into());
                Ok(true)
            }),
        )
        .await
        .expect("relabel node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_anti_affinity_spread_and_a_freed_node_takes_the_pending_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("hub.db"), StoreOptions::default()).expect("open store"),
    );
    for i in 0..3 {
        store
            .create(node(
                &format!("n{i}"),
                &format!("{{kubernetes.io/hostname: n{i}}}"),
                "2",
                "4Gi",
                10,
                "[]",
            ))
            .await
            .expect("create node");
    }
    let scheduler = Scheduler::new(
        Arc::clone(&store),
        Arc::new(SystemClock),
        SchedulerOptions {
            seed: Some(3),
            ..SchedulerOptions::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    let replica = |i: usize| {
        manifest(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, namespace: default, labels: {{app: web}}}}
spec:
  containers: [{{name: c, image: busybox}}]
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {{labelSelector: {{matchLabels: {{app: web}}}}, topologyKey: kubernetes.io/hostname}}"
        ))
    };
    // Created after the scheduler started: it learns of them through the watch.
    store
        .write_batch(
            (0..4)
                .map(|i| skiff_hub::store::Write::Create(replica(i)))
                .collect(),
        )
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("create replica");
        });
    let mut placed = Vec::new();
    for i in 0..3 {
        placed.push(bound_to(&*store, &format!("web-{i}")).await);
    }
    placed.sort();
    assert_eq!(placed, ["n0", "n1", "n2"]);
    assert_eq!(
        pending_message(&*store, "web-3").await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
    // Deleting a replica frees its node for the pending one.
    let freed = get_pod(&*store, "web-1").spec.node_name.expect("bound");
    store.delete(&key("web-1"), None).await.expect("delete");
    assert_eq!(bound_to(&*store, "web-3").await, freed);
    stop.send(()).expect("scheduler running");
    task.await
        .expect("scheduler task")
        .expect("scheduler stopped cleanly");
}

/// A store that, once, binds a pod itself just before the scheduler's batch that
/// binds it reaches the writer (as another scheduler might), and that answers the
/// first pod watch with "history compacted, relist".
#[derive(Debug)]
struct RacingStore {
    inner: SqliteStore,
    race: std::sync::Mutex<Option<(String, String)>>,
    gone_once: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for RacingStore {
    async fn create(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        self.inner.create(obj).await
    }
    async fn update(&self, obj: Object) -> Result<Arc<Object>, StoreError> {
        self.inner.update(obj).await
    }
    async fn mutate(&self, key: ObjectKey, m: Mutation) -> Result<Written, StoreError> {
        self.inner.mutate(key, m).await
    }
    async fn delete(&self, key: &ObjectKey, pre: Option<Revision>) -> Result<Deleted, StoreError> {
        self.inner.delete(key, pre).await
    }
    async fn write_batch(&self, writes: Vec<Write>) -> Vec<Result<Written, StoreError>> {
        let race = {
            let mut race = self
                .race
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let hit = race.as_ref().is_some_and(|(pod, _)| {
                writes.iter().any(
                    |w| matches!(w, Write::Mutate(k, _) if k.kind == Kind::Pod && k.name == *pod),
                )
            });
            if hit { race.take() } else { None }
        };
        if let Some((pod, node)) = race {
            self.inner
                .mutate(
                    key(&pod),
                    Box::new(move |o| {
                        if let Object::Pod(p) = o {
                            p.spec.node_name = Some(node);
                        }
                        Ok(true)
                    }),
                )
                .await
                .expect("racing bind");
        }
        self.inner.write_batch(writes).await
    }
    fn get(&self, key: &ObjectKey) -> Option<Arc<Object>> {
        self.inner.get(key)
    }
    fn list(&self, scope: &Scope) -> (Vec<Arc<Object>>, Revision) {
        self.inner.list(scope)
    }
    fn revision(&self) -> Revision {
        self.inner.revision()
    }
    fn watch(&self, scope: Scope, from: Revision) -> Result<Watch, StoreError> {
        if scope.kind == Some(Kind::Pod)
            && self
                .gone_once
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.try_send(Err(StoreError::Gone {
                requested: from,
                compacted: Revision(from.0 + 1),
            }))
            .expect("room for one event");
            return Ok(Watch::new(rx));
        }
        self.inner.watch(scope, from)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_binding_race_and_a_compacted_watch_are_recovered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(RacingStore {
        inner: SqliteStore::open(dir.path().join("hub.db"), StoreOptions::default())
            .expect("open store"),
        race: std::sync::Mutex::new(Some(("first".into(), "n1".into()))),
        gone_once: std::sync::atomic::AtomicBool::new(true),
    });
    // Two nodes with room for one pod each.
    for name in ["n0", "n1"] {
        store
            .create(node(name, "{}", "2", "4Gi", 1, "[]"))
            .await
            .expect("create node");
    }
    store
        .create(pod("first", "{containers: [{name: c, image: busybox}]}"))
        .await
        .expect("create pod");
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    let scheduler = Scheduler::new(
        dyn_store,
        Arc::new(SystemClock),
        SchedulerOptions {
            seed: Some(5),
            initial_backoff: Duration::from_millis(100),
            ..SchedulerOptions::default()
        },
    );
    let stats = scheduler.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));
    // The racer's binding stands; the scheduler's own is refused and undone.
    assert_eq!(bound_to(&*store, "first").await, "n1");
    eventually("the lost race to be counted", || {
        stats.snapshot().binding_failures == 1
    })
    .await;
    // The cache counts `first` on n1 only, so the next pod gets n0.
    store
        .create(pod("second", "{containers: [{name: c, image: busybox}]}"))
        .await
        .expect("create pod");
    assert_eq!(bound_to(&*store, "second").await, "n0");
    store
        .create(pod("third", "{containers: [{name: c, image: busybox}]}"))
        .await
        .expect("create pod");
    assert_eq!(
        pending_message(&*store, "third").await,
        "0/2 nodes are available: 2 Too many pods."
    );
    assert_eq!(stats.snapshot().bound, 1);
    stop.send(()).expect("scheduler running");
    task.await
        .expect("scheduler task")
        .expect("scheduler stopped cleanly");
}
