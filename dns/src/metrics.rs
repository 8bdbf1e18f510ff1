//! Counters in the Prometheus text format, named as CoreDNS names its own where one exists
//! (so dashboards carry over): requests, responses by rcode, cache hits and misses,
//! upstream latency.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use hickory_proto::op::ResponseCode;

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
const BUCKETS: [f64; 10] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.25, 1.0,
];

/// Rcodes below this have a counter of their own: every code of the IANA registry up to
/// BADCOOKIE (23). Higher ones, which only an odd upstream sends, share a locked map.
const RCODES: usize = 24;

/// Counts of queries answered from a packet cache, kept by one serving thread for a batch
/// and added to the shared counters at once (one atomic add per counter per batch, not per
/// query).
#[derive(Debug, Default)]
pub struct Tally {
    pub cluster: u64,
    pub forwarded: u64,
    /// By rcode (the cache keeps NOERROR and NXDOMAIN only; the rest are room to spare).
    pub rcodes: [u64; 16],
}

impl Tally {
    /// One query answered with `template`.
    pub fn count(&mut self, template: &crate::packet::Template) {
        if template.authoritative {
            self.cluster += 1;
        } else {
            self.forwarded += 1;
        }
        if let Some(count) = self.rcodes.get_mut(usize::from(template.rcode)) {
            *count += 1;
        }
    }
}

/// Every counter of one server. Counted on every query from every serving thread, so the
/// counters are atomics, never a lock or an allocation.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_udp: AtomicU64,
    requests_tcp: AtomicU64,
    cluster: AtomicU64,
    forwarded: AtomicU64,
    /// By rcode.
    responses: [AtomicU64; RCODES],
    responses_other: Mutex<BTreeMap<u16, u64>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    packet_hits: AtomicU64,
    upstream_errors: AtomicU64,
    upstream_buckets: [AtomicU64; BUCKETS.len()],
    upstream_count: AtomicU64,
    upstream_micros: AtomicU64,
}

impl Metrics {
    pub fn request(&self, tcp: bool) {
        if tcp {
            &self.requests_tcp
        } else {
            &self.requests_udp
        }
        .fetch_add(1, Relaxed);
    }

    /// A question answered from the cluster's state (`true`) or sent to the forwarder.
    pub fn source(&self, cluster: bool) {
        if cluster {
            &self.cluster
        } else {
            &self.forwarded
        }
        .fetch_add(1, Relaxed);
    }

    pub fn response(&self, rcode: ResponseCode) {
        let code = u16::from(rcode);
        match self.responses.get(usize::from(code)) {
            Some(counter) => {
                counter.fetch_add(1, Relaxed);
            }
            None => {
                if let Ok(mut other) = self.responses_other.lock() {
                    *other.entry(code).or_default() += 1;
                }
            }
        }
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// Adds one batch of queries answered by a serving thread's packet cache, counted as the
    /// full path would have counted them.
    pub fn packet_hits(&self, tally: &Tally) {
        let total = tally.cluster + tally.forwarded;
        if total == 0 {
            return;
        }
        self.requests_udp.fetch_add(total, Relaxed);
        self.packet_hits.fetch_add(total, Relaxed);
        self.cluster.fetch_add(tally.cluster, Relaxed);
        self.forwarded.fetch_add(tally.forwarded, Relaxed);
        // A forwarded answer served again was answered without asking upstream.
        self.cache_hits.fetch_add(tally.forwarded, Relaxed);
        for (code, count) in tally.rcodes.iter().enumerate() {
            if *count > 0 {
                self.responses[code].fetch_add(*count, Relaxed);
            }
        }
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }

    /// One exchange with an upstream and whether it gave an answer.
    pub fn upstream(&self, took: Duration, ok: bool) {
        if !ok {
            self.upstream_errors.fetch_add(1, Relaxed);
        }
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.upstream_buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.upstream_count.fetch_add(1, Relaxed);
        self.upstream_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Relaxed);
        let _ = writeln!(out, "# HELP strait_dns_requests_total Queries received.");
        let _ = writeln!(out, "# TYPE strait_dns_requests_total counter");
        let _ = writeln!(
            out,
            "strait_dns_requests_total{{proto=\"udp\"}} {}",
            get(&self.requests_udp)
        );
        let _ = writeln!(
            out,
            "strait_dns_requests_total{{proto=\"tcp\"}} {}",
            get(&self.requests_tcp)
        );
        let _ = writeln!(
            out,
            "# HELP strait_dns_questions_total Questions by who answered them."
        );
        let _ = writeln!(out, "# TYPE strait_dns_questions_total counter");
        let _ = writeln!(
            out,
            "strait_dns_questions_total{{source=\"cluster\"}} {}",
            get(&self.cluster)
        );
        let _ = writeln!(
            out,
            "strait_dns_questions_total{{source=\"upstream\"}} {}",
            get(&self.forwarded)
        );
        let _ = writeln!(
            out,
            "# HELP strait_dns_responses_total Responses sent, by rcode."
        );
        let _ = writeln!(out, "# TYPE strait_dns_responses_total counter");
        // Named as hickory spells the rcode (`NXDOMAIN`), in the order of the names.
        let mut responses: BTreeMap<String, u64> = BTreeMap::new();
        let counted = (0u16..)
            .zip(&self.responses)
            .map(|(code, n)| (code, get(n)))
            .filter(|(_, n)| *n > 0);
        let other = self
            .responses_other
            .lock()
            .map(|other| other.clone())
            .unwrap_or_default();
        for (code, n) in counted.chain(other) {
            let name = rcode_label(code);
            *responses.entry(name).or_default() += n;
        }
        for (rcode, n) in &responses {
            let _ = writeln!(out, "strait_dns_responses_total{{rcode=\"{rcode}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP strait_dns_cache_hits_total Forwarded questions answered from the cache."
        );
        let _ = writeln!(out, "# TYPE strait_dns_cache_hits_total counter");
        let _ = writeln!(out, "strait_dns_cache_hits_total {}", get(&self.cache_hits));
        let _ = writeln!(
            out,
            "# HELP strait_dns_cache_misses_total Forwarded questions the cache did not hold."
        );
        let _ = writeln!(out, "# TYPE strait_dns_cache_misses_total counter");
        let _ = writeln!(
            out,
            "strait_dns_cache_misses_total {}",
            get(&self.cache_misses)
        );
        let _ = writeln!(
            out,
            "# HELP strait_dns_packet_cache_hits_total Queries answered by a serving thread's \
             cache of encoded responses."
        );
        let _ = writeln!(out, "# TYPE strait_dns_packet_cache_hits_total counter");
        let _ = writeln!(
            out,
            "strait_dns_packet_cache_hits_total {}",
            get(&self.packet_hits)
        );
        let _ = writeln!(
            out,
            "# HELP strait_dns_upstream_errors_total Upstream exchanges that failed or timed out."
        );
        let _ = writeln!(out, "# TYPE strait_dns_upstream_errors_total counter");
        let _ = writeln!(
            out,
            "strait_dns_upstream_errors_total {}",
            get(&self.upstream_errors)
        );
        let _ = writeln!(
            out,
            "# HELP strait_dns_upstream_duration_seconds Time of one upstream exchange."
        );
        let _ = writeln!(out, "# TYPE strait_dns_upstream_duration_seconds histogram");
        for (bucket, bound) in self.upstream_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "strait_dns_upstream_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.upstream_count);
        let _ = writeln!(
            out,
            "strait_dns_upstream_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum in seconds for a dashboard"
        )]
        let sum = get(&self.upstream_micros) as f64 / 1e6;
        let _ = writeln!(out, "strait_dns_upstream_duration_seconds_sum {sum}");
        let _ = writeln!(out, "strait_dns_upstream_duration_seconds_count {count}");
        out
    }
}

/// An rcode's label, as hickory's `Debug` spells it (`NXDOMAIN`). 16 is BADVERS here: it is
/// BADSIG only in TSIG, which this server does not speak, but hickory's `From<u16>` picks
/// BADSIG.
fn rcode_label(code: u16) -> String {
    let rcode: ResponseCode = if code == u16::from(ResponseCode::BADVERS) {
        ResponseCode::BADVERS
    } else {
        code.into()
    };
    format!("{rcode:?}").to_ascii_uppercase()
}

/// Serves `/metrics` on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = std::sync::Arc::clone(&metrics);
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.request(false);
        m.response(ResponseCode::NXDomain);
        m.response(ResponseCode::NXDomain);
        m.response(ResponseCode::BADVERS);
        m.response(ResponseCode::Unknown(3000));
        m.cache_hit();
        m.upstream(Duration::from_millis(2), true);
        let text = m.render();
        assert!(
            text.contains("strait_dns_requests_total{proto=\"udp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strait_dns_responses_total{rcode=\"NXDOMAIN\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("strait_dns_responses_total{rcode=\"BADVERS\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strait_dns_responses_total{rcode=\"UNKNOWN(3000)\"} 1"),
            "{text}"
        );
        assert!(!text.contains("rcode=\"NOERROR\""), "{text}");
        assert!(text.contains("strait_dns_cache_hits_total 1"), "{text}");
        assert!(
            text.contains("strait_dns_upstream_duration_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("strait_dns_upstream_duration_seconds_bucket{le=\"0.001\"} 0"),
            "{text}"
        );
    }
}
