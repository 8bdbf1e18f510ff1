//! Names outside the cluster: asked of upstream resolvers over UDP (TCP when the answer is
//! truncated), within one bounded deadline, and cached for their TTLs (negative answers for
//! their SOA's minimum, RFC 2308).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

use crate::metrics::Metrics;

/// The UDP payload size asked of upstreams (the DNS flag day 2020 value).
const UDP_PAYLOAD: u16 = 1232;
/// Cached answers are kept at most this long, whatever their TTL.
const MAX_TTL: u32 = 3600;
/// Negative answers are kept at most this long (RFC 2308 suggests 1–3 hours; CoreDNS 1800).
const MAX_NEGATIVE_TTL: u32 = 1800;
/// Entries in the cache; when full, expired entries go, then arbitrary ones.
const CAPACITY: usize = 10_000;

/// Why an upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver is configured for `{name}`")]
    NoUpstream { name: Name },
    #[error("upstream {upstream} did not answer `{name}` in time")]
    Timeout { upstream: SocketAddr, name: Name },
    #[error("upstream {upstream} failed for `{name}`")]
    Io {
        upstream: SocketAddr,
        name: Name,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream {upstream} sent an unreadable answer for `{name}`: {reason}")]
    Decode {
        upstream: SocketAddr,
        name: Name,
        reason: String,
    },
}

/// An upstream's answer, without its header and EDNS.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

#[derive(Debug)]
struct Entry {
    resolved: Resolved,
    stored: Instant,
    ttl: u32,
}

type Key = (Name, RecordType, DNSClass);

/// The forwarder: upstreams, a deadline and a cache.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    cache: Mutex<HashMap<Key, Entry>>,
    metrics: Arc<Metrics>,
}

/// How long `resolved` may be cached, from its records (RFC 2308 for negative answers);
/// `None` when it must not be.
pub fn cache_ttl(resolved: &Resolved) -> Option<u32> {
    let negative = resolved.rcode == ResponseCode::NXDomain
        || (resolved.rcode == ResponseCode::NoError && resolved.answers.is_empty());
    if negative {
        return resolved.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum).min(MAX_NEGATIVE_TTL)),
            _ => None,
        });
    }
    if resolved.rcode != ResponseCode::NoError {
        return None;
    }
    resolved
        .answers
        .iter()
        .chain(&resolved.authorities)
        .map(|r| r.ttl)
        .min()
        .map(|ttl| ttl.min(MAX_TTL))
        .filter(|ttl| *ttl > 0)
}

/// The upstreams of a resolv.conf's text (`nameserver` lines), on port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        // A scoped IPv6 address (`fe80::1%eth0`) loses its scope: link-local upstreams are rare.
        .filter_map(|ip| ip.split('%').next()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            upstreams,
            timeout,
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The upstreams asked, in order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Answers `name` from the cache, or from the first upstream that answers within the
    /// deadline (a SERVFAIL or REFUSED moves on to the next).
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        class: DNSClass,
    ) -> Result<Resolved, ForwardError> {
        let key = (name.to_lowercase(), qtype, class);
        if let Some(hit) = self.cached(&key) {
            self.metrics.cache_hit();
            return Ok(hit);
        }
        self.metrics.cache_miss();
        let deadline = Instant::now() + self.timeout;
        let mut last = Err(ForwardError::NoUpstream { name: name.clone() });
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            // Each upstream gets an equal share of what is left, so a dead first one
            // leaves time for the rest.
            let share = left / u32::try_from(self.upstreams.len() - i).unwrap_or(1);
            let started = Instant::now();
            let result =
                match tokio::time::timeout(share, exchange(*upstream, name, qtype, class)).await {
                    Ok(result) => result,
                    Err(_) => Err(ForwardError::Timeout {
                        upstream: *upstream,
                        name: name.clone(),
                    }),
                };
            self.metrics.upstream(started.elapsed(), result.is_ok());
            match result {
                Ok(resolved)
                    if matches!(
                        resolved.rcode,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    last = Ok(resolved);
                }
                Ok(resolved) => {
                    self.store(key, &resolved);
                    return Ok(resolved);
                }
                Err(error) => {
                    tracing::debug!(%error, "upstream failed");
                    if last.is_err() {
                        last = Err(error);
                    }
                }
            }
        }
        last
    }

    fn cached(&self, key: &Key) -> Option<Resolved> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(key)?;
        let age = u32::try_from(entry.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            return None;
        }
        let mut resolved = entry.resolved.clone();
        for record in resolved
            .answers
            .iter_mut()
            .chain(&mut resolved.authorities)
            .chain(&mut resolved.additionals)
        {
            record.ttl = record.ttl.saturating_sub(age);
        }
        Some(resolved)
    }

    fn store(&self, key: Key, resolved: &Resolved) {
        let Some(ttl) = cache_ttl(resolved) else {
            return;
        };
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CAPACITY {
            cache.retain(|_, e| e.stored.elapsed().as_secs() < u64::from(e.ttl));
        }
        if cache.len() >= CAPACITY {
            let drop: Vec<Key> = cache.keys().take(CAPACITY / 10).cloned().collect();
            for k in drop {
                cache.remove(&k);
            }
        }
        cache.insert(
            key,
            Entry {
                resolved: resolved.clone(),
                stored: Instant::now(),
                ttl,
            },
        );
    }
}

fn query(id: u16, name: &Name, qtype: RecordType, class: DNSClass) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let mut q = Query::query(name.clone(), qtype);
    q.set_query_class(class);
    message.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    message.set_edns(edns);
    message
}

/// One question to one upstream: UDP, then TCP when the answer is truncated.
async fn exchange(
    upstream: SocketAddr,
    name: &Name,
    qtype: RecordType,
    class: DNSClass,
) -> Result<Resolved, ForwardError> {
    let io = |source| ForwardError::Io {
        upstream,
        name: name.clone(),
        source,
    };
    let decode = |reason: String| ForwardError::Decode {
        upstream,
        name: name.clone(),
        reason,
    };
    // A random ID and a random source port (the kernel's) against spoofed answers.
    let id = u16::try_from(getrandom::u32().unwrap_or(0) & 0xffff).unwrap_or(0);
    let bytes = query(id, name, qtype, class)
        .to_vec()
        .map_err(|e| decode(e.to_string()))?;
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected, so a closed port comes back as an error at once instead of a timeout.
    socket.connect(upstream).await.map_err(io)?;
    socket.send(&bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    let reply = loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Replies to something else (a late answer, a spoof) are ignored.
        if reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply
                .queries
                .first()
                .is_some_and(|q| q.name() == name && q.query_type() == qtype)
        {
            break reply;
        }
    };
    let reply = if reply.metadata.truncation {
        exchange_tcp(upstream, &bytes, id)
            .await
            .map_err(io)?
            .map_err(decode)?
    } else {
        reply
    };
    Ok(Resolved {
        rcode: reply.metadata.response_code,
        answers: reply.answers,
        authorities: reply.authorities,
        additionals: reply
            .additionals
            .into_iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .collect(),
    })
}

async fn exchange_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> std::io::Result<Result<Message, String>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(match Message::from_vec(&buf) {
        Ok(reply) if reply.metadata.id == id => Ok(reply),
        Ok(_) => Err("a TCP answer with another ID".to_owned()),
        Err(error) => Err(error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, SOA};

    use super::*;

    fn name(n: &str) -> Name {
        Name::from_ascii(n).unwrap()
    }

    fn resolved(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Resolved {
        Resolved {
            rcode,
            answers,
            authorities,
            additionals: Vec::new(),
        }
    }

    #[test]
    fn ttls_for_the_cache() {
        let a = |ttl| Record::from_rdata(name("x.example."), ttl, RData::A(A::new(192, 0, 2, 1)));
        let soa = |ttl, minimum| {
            Record::from_rdata(
                name("example."),
                ttl,
                RData::SOA(SOA::new(
                    name("ns.example."),
                    name("h.example."),
                    1,
                    1,
                    1,
                    1,
                    minimum,
                )),
            )
        };
        let ok = ResponseCode::NoError;
        assert_eq!(
            cache_ttl(&resolved(ok, vec![a(300), a(60)], vec![])),
            Some(60)
        );
        assert_eq!(cache_ttl(&resolved(ok, vec![a(0)], vec![])), None);
        assert_eq!(
            cache_ttl(&resolved(ok, vec![a(86400 * 7)], vec![])),
            Some(MAX_TTL)
        );
        let nx = ResponseCode::NXDomain;
        assert_eq!(
            cache_ttl(&resolved(nx, vec![], vec![soa(900, 30)])),
            Some(30)
        );
        assert_eq!(
            cache_ttl(&resolved(nx, vec![], vec![soa(20, 30)])),
            Some(20)
        );
        assert_eq!(
            cache_ttl(&resolved(ok, vec![], vec![soa(3600, 7200)])),
            Some(MAX_NEGATIVE_TTL)
        );
        assert_eq!(cache_ttl(&resolved(nx, vec![], vec![])), None);
        assert_eq!(
            cache_ttl(&resolved(ResponseCode::ServFail, vec![a(60)], vec![])),
            None
        );
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
