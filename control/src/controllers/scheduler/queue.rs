//! The scheduling queue, as kube-scheduler's: an active queue ordered by priority
//! (`spec.priority`, higher first), then creation time, then arrival; and a backoff queue for
//! pods that failed (1 s after the first failure, doubling to 10 s). A relevant cluster event
//! (a node added or changed, a pod gone) flushes waiting unschedulable pods back to the active
//! queue at once; pods refused only by pod affinity or topology spread also return when a pod
//! is placed. Pure: time is passed in.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;

use super::cache::key;

/// kube-scheduler's `podInitialBackoffDuration` and `podMaxBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What woke the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A node was added, or changed in a way that may let a pod fit.
    Node,
    /// A pod left a node (deleted, finished, or its binding failed): resources and anti-affinity freed.
    PodGone,
    /// A pod was placed on a node: pod affinity and spread may now be satisfied.
    PodPlaced,
}

/// Why a pod waits in the backoff queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// No node fitted; `pods_help` when pods being placed could change that (affinity, spread).
    Unschedulable { pods_help: bool },
    /// Binding or another error.
    Error,
}

#[derive(Debug)]
enum State {
    Active,
    /// Popped: being scheduled or bound.
    InFlight,
    Backoff {
        until: Instant,
    },
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    state: State,
    order: Order,
}

/// Priority (higher first), creation time, then arrival.
type Order = (Reverse<i32>, i64, u64);

/// The queue.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<(Order, String)>,
    backoff: BTreeSet<(Instant, String)>,
    /// Unschedulable pods in backoff (and whether placed pods may help them): what a flush
    /// walks, so an event costs nothing when no pod waits.
    unschedulable: HashMap<String, bool>,
    arrivals: u64,
}

fn order_of(pod: &Pod, arrival: u64) -> Order {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (Reverse(priority), created, arrival)
}

/// The backoff after `attempts` failures: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(4);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl Queue {
    /// Pods in the queue, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every queued pod's key.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Whether the active queue is empty.
    pub fn idle(&self) -> bool {
        self.active.is_empty()
    }

    fn activate(&mut self, key: &str) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let State::Backoff { until, .. } = entry.state {
            self.backoff.remove(&(until, key.to_owned()));
            self.unschedulable.remove(key);
        }
        self.arrivals += 1;
        entry.order = order_of(&entry.pod, self.arrivals);
        entry.state = State::Active;
        self.active.insert((entry.order, key.to_owned()));
    }

    /// A pending pod appeared or changed: new pods join the active queue; a known pod's
    /// object is replaced, and a waiting pod whose spec or labels changed is tried again.
    pub fn add(&mut self, pod: Arc<Pod>) {
        let key = key(&pod);
        match self.entries.get_mut(&key) {
            Some(entry) => {
                let changed =
                    entry.pod.spec != pod.spec || entry.pod.metadata.labels != pod.metadata.labels;
                let waiting = matches!(entry.state, State::Backoff { .. });
                entry.pod = pod;
                if changed && waiting {
                    self.activate(&key);
                }
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        attempts: 0,
                        state: State::InFlight,
                        order: (Reverse(0), 0, 0),
                    },
                );
                self.activate(&key);
            }
        }
    }

    /// A pod is bound, deleted, or no longer this scheduler's: it leaves the queue.
    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            match entry.state {
                State::Active => {
                    self.active.remove(&(entry.order, key.to_owned()));
                }
                State::Backoff { until, .. } => {
                    self.backoff.remove(&(until, key.to_owned()));
                    self.unschedulable.remove(key);
                }
                State::InFlight => {}
            }
        }
    }

    /// The next pod to schedule (it stays in the queue, in flight, until [`Queue::remove`]
    /// or [`Queue::failed`]).
    pub fn pop(&mut self) -> Option<Arc<Pod>> {
        let (_, key) = self.active.pop_first()?;
        let entry = self.entries.get_mut(&key)?;
        entry.state = State::InFlight;
        Some(Arc::clone(&entry.pod))
    }

    /// The pod could not be scheduled or bound: it waits out its backoff.
    pub fn failed(&mut self, key: &str, why: Waiting, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let State::Backoff { until, .. } = entry.state {
            self.backoff.remove(&(until, key.to_owned()));
            self.unschedulable.remove(key);
        }
        if let State::Active = entry.state {
            self.active.remove(&(entry.order, key.to_owned()));
        }
        entry.attempts += 1;
        let until = now + backoff(entry.attempts);
        entry.state = State::Backoff { until };
        self.backoff.insert((until, key.to_owned()));
        if let Waiting::Unschedulable { pods_help } = why {
            self.unschedulable.insert(key.to_owned(), pods_help);
        }
    }

    /// Moves pods whose backoff is over to the active queue.
    pub fn promote(&mut self, now: Instant) {
        while let Some((until, key)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.activate(&key);
        }
    }

    /// When the next backoff ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.backoff.first().map(|(until, _)| *until)
    }

    /// A cluster event: unschedulable pods it may help go back to the active queue now.
    pub fn flush(&mut self, event: Event) {
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, pods_help)| event != Event::PodPlaced || **pods_help)
            .map(|(k, _)| k.clone())
            .collect();
        for key in helped {
            self.activate(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, priority: i32, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
                "spec": {"priority": priority, "containers": [{"name": "c"}]},
            }))
            .unwrap(),
        )
    }

    fn drain(q: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| q.pop().map(|p| key(&p))).collect()
    }

    #[test]
    fn priority_then_creation_then_arrival() {
        let mut q = Queue::default();
        q.add(pod("late", 0, "2026-01-01T00:00:09Z"));
        q.add(pod("early", 0, "2026-01-01T00:00:01Z"));
        q.add(pod("urgent", 1000, "2026-01-01T00:00:30Z"));
        q.add(pod("early-too", 0, "2026-01-01T00:00:01Z"));
        assert_eq!(
            drain(&mut q),
            ["d/urgent", "d/early", "d/early-too", "d/late"]
        );
        assert_eq!(q.len(), 4, "popped pods stay, in flight");
        q.remove("d/urgent");
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_and_events_flush_it() {
        assert_eq!(
            (1..=6).map(backoff).collect::<Vec<_>>(),
            [1, 2, 4, 8, 10, 10].map(Duration::from_secs)
        );
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add(pod("a", 0, "2026-01-01T00:00:01Z"));
        q.add(pod("b", 0, "2026-01-01T00:00:02Z"));
        q.add(pod("c", 0, "2026-01-01T00:00:03Z"));
        assert_eq!(drain(&mut q).len(), 3);
        q.failed("d/a", Waiting::Unschedulable { pods_help: false }, t0);
        q.failed("d/b", Waiting::Unschedulable { pods_help: true }, t0);
        q.failed("d/c", Waiting::Error, t0);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        q.promote(t0 + Duration::from_millis(500));
        assert!(q.idle());

        q.flush(Event::PodPlaced);
        assert_eq!(drain(&mut q), ["d/b"], "only pods that pods can help");
        q.failed("d/b", Waiting::Unschedulable { pods_help: true }, t0);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        q.flush(Event::Node);
        assert_eq!(
            drain(&mut q),
            ["d/a", "d/b"],
            "errors wait out their backoff"
        );
        q.promote(t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut q), ["d/c"]);

        // The second failure waits 2 s; an update to the spec retries at once.
        q.failed("d/c", Waiting::Error, t0);
        q.promote(t0 + Duration::from_secs(1));
        assert!(q.idle());
        let mut changed = (*pod("c", 0, "2026-01-01T00:00:03Z")).clone();
        changed.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        q.add(Arc::new(changed));
        assert_eq!(drain(&mut q), ["d/c"]);
        q.add(pod("c", 0, "2026-01-01T00:00:03Z"));
        assert!(q.idle(), "an in-flight pod is not queued twice");
    }
}
