//! The flow log: every verdict the policy programs report through their ring buffer, named
//! (pods, the deciding policy and rule) and kept in a bounded buffer that `netctl flows`
//! reads through the API server's node proxy, or follows.
//!
//! Bounded twice: the ring buffer in the kernel (a full one loses records, never packets) and
//! this log (the oldest record goes first; [`FlowLog::evicted`] counts them).

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use serde::Serialize;
use strait_ebpf_common::policy::{
    DIR_INGRESS, FlowRecord, RULE_DEFAULT_DENY, RULE_HOST, RULE_NOT_ISOLATED, RULE_TRACKED,
    VERDICT_ALLOWED,
};
use tokio::{io::unix::AsyncFd, sync::broadcast};
use tracing::warn;

use super::policy::Endpoints;

/// Records the log keeps by default.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// One verdict, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// When it was decided (RFC 3339).
    pub time: String,
    pub node: String,
    /// `allowed` or `denied`.
    pub verdict: &'static str,
    /// `ingress` or `egress`, from the pod's side.
    pub direction: &'static str,
    pub protocol: String,
    /// `address:port`.
    pub source: String,
    pub destination: String,
    /// The pod whose veth decided, `namespace/name`.
    pub pod: Option<String>,
    /// The other end, when it is a known pod.
    pub peer: Option<String>,
    pub identity: u32,
    pub peer_identity: u32,
    /// Why: `policy` (a rule allowed it), `default-deny`, `not-isolated` or `host`.
    pub reason: &'static str,
    /// The deciding policy and rule, for `policy`; the isolating policies for `default-deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Which flows a reader wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    /// Matches either end, by name (in `namespace` when given) or `namespace/name`.
    pub pod: Option<String>,
    /// `allowed` or `denied`.
    pub verdict: Option<String>,
}

impl Filter {
    pub fn matches(&self, flow: &Flow) -> bool {
        let ends = [flow.pod.as_deref(), flow.peer.as_deref()];
        let in_namespace = |key: &str, ns: &str| key.split_once('/').is_some_and(|(n, _)| n == ns);
        let namespace_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| ends.iter().flatten().any(|k| in_namespace(k, ns)));
        let pod_ok = self.pod.as_deref().is_none_or(|want| {
            ends.iter().flatten().any(|key| {
                key == &want
                    || key.split_once('/').is_some_and(|(ns, name)| {
                        name == want && self.namespace.as_deref().is_none_or(|n| n == ns)
                    })
            })
        });
        let verdict_ok = self.verdict.as_deref().is_none_or(|v| v == flow.verdict);
        namespace_ok && pod_ok && verdict_ok
    }
}

/// The bounded log, with a channel for followers.
#[derive(Debug)]
pub struct FlowLog {
    records: Mutex<VecDeque<Arc<Flow>>>,
    capacity: usize,
    evicted: AtomicU64,
    lost: AtomicU64,
    followers: broadcast::Sender<Arc<Flow>>,
}

impl FlowLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
            evicted: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            followers: broadcast::channel(1024).0,
        }
    }

    pub fn push(&self, flow: Flow) {
        let flow = Arc::new(flow);
        if let Ok(mut records) = self.records.lock() {
            if records.len() == self.capacity {
                records.pop_front();
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            records.push_back(Arc::clone(&flow));
        }
        // No follower is no error.
        let _ = self.followers.send(flow);
    }

    /// The last `limit` records `filter` accepts, oldest first.
    pub fn recent(&self, filter: &Filter, limit: usize) -> Vec<Arc<Flow>> {
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Arc<Flow>> = records
            .iter()
            .rev()
            .filter(|f| filter.matches(f))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// Every record pushed from now on.
    pub fn follow(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.followers.subscribe()
    }

    /// Records dropped to stay within the capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Records the kernel lost to a full ring buffer (all CPUs, since the agent started).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

fn protocol_name(number: u8) -> String {
    strait_policy::Protocol::from_number(number)
        .map_or_else(|| number.to_string(), |p| p.to_string())
}

/// The wall-clock time of a `bpf_ktime_get_ns` reading.
fn wall_time(ktime_ns: u64) -> String {
    let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::new(t.tv_sec().unsigned_abs(), t.tv_nsec().unsigned_abs() as u32))
        .unwrap_or_default();
    let age = now_mono.saturating_sub(Duration::from_nanos(ktime_ns));
    let at = SystemTime::now()
        .checked_sub(age)
        .unwrap_or_else(SystemTime::now);
    jiff::Timestamp::try_from(at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// Names a record: pods by veth and address, the rule by id.
pub fn name(record: &FlowRecord, node: &str, endpoints: &Endpoints) -> Flow {
    let address = |a: u32| Ipv4Addr::from(a.to_ne_bytes());
    let source = SocketAddrV4::new(address(record.saddr), u16::from_be(record.sport));
    let destination = SocketAddrV4::new(address(record.daddr), u16::from_be(record.dport));
    let ingress = record.direction == DIR_INGRESS;
    let peer_addr = if ingress {
        *source.ip()
    } else {
        *destination.ip()
    };
    let (reason, policy, rule) = match record.rule {
        RULE_NOT_ISOLATED | RULE_TRACKED => ("not-isolated", None, None),
        RULE_HOST => ("host", None, None),
        RULE_DEFAULT_DENY => ("default-deny", None, None),
        id => match endpoints.rule(id) {
            Some(r) => (
                "policy",
                Some(r.policy.clone()),
                Some(format!("{} rule {}", r.direction, r.index)),
            ),
            None => ("policy", None, Some(format!("rule id {id}"))),
        },
    };
    Flow {
        time: wall_time(record.timestamp_ns),
        node: node.to_owned(),
        verdict: if record.verdict == VERDICT_ALLOWED {
            "allowed"
        } else {
            "denied"
        },
        direction: if ingress { "ingress" } else { "egress" },
        protocol: protocol_name(record.protocol),
        source: source.to_string(),
        destination: destination.to_string(),
        pod: endpoints.pod_of(record.ifindex),
        peer: endpoints.pod_at(peer_addr),
        identity: record.identity,
        peer_identity: record.peer_identity,
        reason,
        policy,
        rule,
    }
}

struct Ring(RingBuf<MapData>);

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Drains the ring buffer into `log` as records arrive.
pub async fn run(
    (ring, lost): (RingBuf<MapData>, PerCpuArray<MapData, u64>),
    log: Arc<FlowLog>,
    endpoints: Arc<Endpoints>,
    node: String,
) {
    // SAFETY: the ring buffer owns its map's fd for as long as it lives, and `as_raw_fd`
    // always returns that one; the `AsyncFd` owns the ring buffer.
    let mut fd = match unsafe { AsyncFd::register(Ring(ring)) } {
        Ok(fd) => fd,
        Err(error) => {
            warn!(%error, "cannot poll the flow ring buffer; no flow log");
            return;
        }
    };
    loop {
        let Ok(mut guard) = fd.readable_mut().await else {
            return;
        };
        let ring = &mut guard.get_inner_mut().0;
        while let Some(item) = ring.next() {
            if let Some(record) = FlowRecord::from_bytes(&item) {
                log.push(name(&record, &node, &endpoints));
            }
        }
        guard.clear_ready();
        if let Ok(per_cpu) = lost.get(&0, 0) {
            log.lost.store(per_cpu.iter().sum(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(pod: &str, peer: Option<&str>, verdict: &'static str) -> Flow {
        Flow {
            time: String::new(),
            node: "n".into(),
            verdict,
            direction: "ingress",
            protocol: "TCP".into(),
            source: "10.0.0.1:1000".into(),
            destination: "10.0.0.2:80".into(),
            pod: Some(pod.into()),
            peer: peer.map(Into::into),
            identity: 256,
            peer_identity: 257,
            reason: "policy",
            policy: None,
            rule: None,
        }
    }

    #[test]
    fn filters_match_either_end_by_namespace_name_and_verdict() {
        let f = flow("x/b", Some("y/a"), "denied");
        let filter = |ns: Option<&str>, pod: Option<&str>, verdict: Option<&str>| Filter {
            namespace: ns.map(Into::into),
            pod: pod.map(Into::into),
            verdict: verdict.map(Into::into),
        };
        assert!(filter(Some("y"), None, None).matches(&f));
        assert!(filter(None, Some("a"), None).matches(&f));
        assert!(filter(Some("x"), Some("b"), Some("denied")).matches(&f));
        assert!(!filter(Some("x"), Some("a"), None).matches(&f), "a is in y");
        assert!(!filter(None, None, Some("allowed")).matches(&f));
        assert!(filter(None, Some("y/a"), None).matches(&f));
    }

    #[test]
    fn the_log_keeps_the_newest_and_counts_what_it_drops() {
        let log = FlowLog::new(2);
        let mut follower = log.follow();
        for pod in ["x/a", "x/b", "x/c"] {
            log.push(flow(pod, None, "allowed"));
        }
        let recent = log.recent(&Filter::default(), 10);
        let pods: Vec<_> = recent.iter().map(|f| f.pod.clone().unwrap()).collect();
        assert_eq!(pods, ["x/b", "x/c"]);
        assert_eq!(log.evicted(), 1);
        assert_eq!(
            log.recent(&Filter::default(), 1)[0].pod.as_deref(),
            Some("x/c")
        );
        assert_eq!(follower.try_recv().unwrap().pod.as_deref(), Some("x/a"));
    }
}
