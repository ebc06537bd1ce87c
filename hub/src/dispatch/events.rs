//! Pod events reported by agents, recorded as Event objects the way the scheduler
//! records its own (same builder): involved object the pod, `source.host` the node,
//! repeats of the same reason and message counted on one object (`count`,
//! `lastTimestamp`) instead of a new object each time.
//!
//! Bounded twice, so a node that floods events cannot starve status writes: each node
//! has a token bucket ([`EventBudget`]), and the writer takes at most
//! [`EVENTS_PER_BATCH`] events into each store batch, after the status writes.

use std::collections::HashMap;
use std::time::Instant;

use skiff_api::resources::{EventSeverity, EventSource};
use skiff_api::{Kind, Object, ObjectKey, Time, Uid};

use crate::scheduler::{PodRef, pod_event};
use crate::store::Write;

/// Events taken into one store batch at most.
pub(crate) const EVENTS_PER_BATCH: usize = 64;
/// The `source.component` of events reported by agents.
pub(crate) const COMPONENT: &str = "skiff-agent";
/// Repeated events remembered for counting; beyond this a repeat starts a new object.
const REMEMBERED: usize = 8192;

/// One event a node reported, checked and waiting to be written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodEvent {
    pub(crate) node: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) severity: EventSeverity,
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// `Normal` or `Warning`, as the protocol spells them.
pub(crate) fn severity(s: &str) -> Option<EventSeverity> {
    match s {
        "Normal" => Some(EventSeverity::Normal),
        "Warning" => Some(EventSeverity::Warning),
        _ => None,
    }
}

/// Per-node token buckets: `burst` events at once, refilled at `per_second`.
#[derive(Debug)]
pub(crate) struct EventBudget {
    burst: f64,
    per_second: f64,
    nodes: HashMap<String, (f64, Instant)>,
}

impl Default for EventBudget {
    fn default() -> Self {
        // A crash-looping pod reports a back-off every few seconds at most; a node
        // with tens of pods stays well inside this.
        EventBudget::new(50, 5.0)
    }
}

impl EventBudget {
    pub(crate) fn new(burst: u32, per_second: f64) -> EventBudget {
        EventBudget {
            burst: f64::from(burst),
            per_second,
            nodes: HashMap::new(),
        }
    }

    /// Takes one token from `node`'s bucket; false when it is empty.
    pub(crate) fn take(&mut self, node: &str, now: Instant) -> bool {
        let (tokens, at) = self
            .nodes
            .entry(node.to_string())
            .or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What makes two events the same one, counted together.
type Same = (String, String, String, String);

fn same(e: &PodEvent) -> Same {
    (
        e.node.clone(),
        e.uid.clone(),
        e.reason.clone(),
        e.message.clone(),
    )
}

/// Remembers which Event object each repeated event goes to, and turns a batch of
/// reported events into store writes.
#[derive(Debug)]
pub(crate) struct Recorder {
    known: HashMap<Same, ObjectKey>,
    counter: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            known: HashMap::new(),
            counter: u64::from(rand::random::<u32>()),
        }
    }
}

/// A write for one group of identical events, and what to do with its result.
pub(crate) struct Planned {
    pub(crate) write: Write,
    pub(crate) same: Same,
    /// The object to create if the counted one is gone.
    pub(crate) fresh: Object,
}

impl Recorder {
    fn fresh(&mut self, e: &PodEvent, count: i32, now: Time) -> Object {
        // Nanoseconds since the epoch at second precision plus a counter, as the
        // scheduler names its events: names sort by time and do not repeat.
        self.counter = self.counter.wrapping_add(1);
        let secs = u64::try_from(now.0.timestamp()).unwrap_or(0);
        let unique = secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(self.counter % 1_000_000_000);
        let pod = PodRef {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            uid: Uid(e.uid.clone()),
            resource_version: String::new(),
        };
        let source = EventSource {
            component: COMPONENT.to_string(),
            host: e.node.clone(),
        };
        let mut ev = pod_event(
            &pod,
            e.severity,
            &e.reason,
            e.message.clone(),
            now,
            unique,
            source,
            "",
        );
        ev.count = count;
        Object::Event(ev)
    }

    /// The writes for `events`: identical events in the batch become one write, a
    /// repeat of an event already recorded bumps its count.
    pub(crate) fn plan(&mut self, events: Vec<PodEvent>, now: Time) -> Vec<Planned> {
        let mut groups: Vec<(PodEvent, i32)> = Vec::new();
        let mut at: HashMap<Same, usize> = HashMap::new();
        for e in events {
            match at.get(&same(&e)) {
                Some(&i) => groups[i].1 = groups[i].1.saturating_add(1),
                None => {
                    at.insert(same(&e), groups.len());
                    groups.push((e, 1));
                }
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (e, n) in groups {
            let fresh = self.fresh(&e, n, now);
            let key = same(&e);
            let write = match self.known.get(&key) {
                Some(k) => Write::Mutate(
                    k.clone(),
                    Box::new(move |obj: &mut Object| {
                        let Object::Event(ev) = obj else {
                            return Ok(false);
                        };
                        ev.count = ev.count.saturating_add(n);
                        ev.last_timestamp = Some(now);
                        Ok(true)
                    }),
                ),
                None => Write::Create(fresh.clone()),
            };
            out.push(Planned {
                write,
                same: key,
                fresh,
            });
        }
        out
    }

    /// Notes that events like `same` now go to `key`.
    pub(crate) fn recorded(&mut self, same: Same, key: ObjectKey) {
        if self.known.len() >= REMEMBERED && !self.known.contains_key(&same) {
            // Bounded memory: forgetting only means the next repeat starts a new object.
            self.known.clear();
        }
        self.known.insert(same, key);
    }

    /// Notes that the object for `same` is gone (deleted, expired).
    pub(crate) fn forget(&mut self, same: &Same) {
        self.known.remove(same);
    }
}

/// The key of an Event object.
pub(crate) fn key_of(obj: &Object) -> ObjectKey {
    let m = obj.meta();
    ObjectKey::new(Kind::Event, m.namespace_or_empty(), m.name.as_str())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ev(node: &str, reason: &str, message: &str) -> PodEvent {
        PodEvent {
            node: node.into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            severity: EventSeverity::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn budget_allows_a_burst_then_the_refill_rate_per_node() {
        let mut b = EventBudget::new(3, 1.0);
        let t = Instant::now();
        assert!((0..3).all(|_| b.take("n1", t)));
        assert!(!b.take("n1", t));
        // Another node has its own bucket.
        assert!(b.take("n2", t));
        assert!(!b.take("n1", t + Duration::from_millis(500)));
        assert!(b.take("n1", t + Duration::from_millis(1600)));
    }

    #[test]
    fn repeats_are_counted_in_the_batch_and_on_the_recorded_object() {
        let mut r = Recorder::default();
        let now = Time::from_datetime(chrono::Utc::now());
        let plan = r.plan(
            vec![
                ev("n1", "BackOff", "restarting app"),
                ev("n1", "BackOff", "restarting app"),
                ev("n1", "Pulled", "image pulled"),
            ],
            now,
        );
        assert_eq!(plan.len(), 2);
        let Write::Create(Object::Event(first)) = &plan[0].write else {
            panic!("a new event is created");
        };
        assert_eq!(first.count, 2);
        assert_eq!(first.source.host, "n1");
        assert_eq!(first.source.component, COMPONENT);
        assert_eq!(first.involved_object.as_ref().unwrap().name, "web");
        assert_eq!(first.type_, Some(EventSeverity::Warning));
        let key = key_of(&plan[0].fresh);
        r.recorded(plan[0].same.clone(), key.clone());

        let mut again = r.plan(vec![ev("n1", "BackOff", "restarting app")], now);
        let again = again.remove(0);
        let Write::Mutate(k, m) = again.write else {
            panic!("a repeat bumps the recorded object");
        };
        assert_eq!(k, key);
        let mut obj = plan[0].fresh.clone();
        assert!(m(&mut obj).unwrap());
        let Object::Event(e) = obj else { panic!() };
        assert_eq!(e.count, 3);

        // Gone from the store: the next repeat creates a new object.
        r.forget(&again.same);
        let third = r.plan(vec![ev("n1", "BackOff", "restarting app")], now);
        assert!(matches!(third[0].write, Write::Create(_)));
        // The same reason from another node is a different event.
        let other = r.plan(vec![ev("n2", "BackOff", "restarting app")], now);
        assert!(matches!(other[0].write, Write::Create(_)));
    }
}
