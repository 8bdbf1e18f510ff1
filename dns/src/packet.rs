//! The UDP fast path's wire work, pure: reading the common query (one IN question, at most a
//! bare OPT record) without decoding it into objects, and a cache of encoded responses that
//! answers such a query with one copy and a few patched bytes. Everything else, and every
//! miss, goes through hickory and the [`crate::server::Handler`]; the responses it encodes
//! are what this cache keeps, so the two paths cannot disagree.
//!
//! This is the packet cache of PowerDNS and dnsdist: most queries a cluster resolver sees
//! are the same few hundred names asked again and again, and building their answer from
//! records each time cost more than the rest of the query together.
//!
//! A cached response is keyed by what decides its bytes: the question's name (lowercased),
//! its type, and whether the client sent EDNS and with which payload size. What differs
//! between two clients asking the same question is patched in: the ID, the RD and CD flags,
//! and the question's spelling (clients randomize its case, draft-vixie-dnsext-0x20, and
//! check the echo), which is copied over the question and over every owner name that spells
//! it. Forwarded answers age: their TTLs are lowered by the seconds they have been cached.

use std::{collections::HashMap, time::Instant};

/// DNS header length.
const HEADER: usize = 12;
/// The longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Key: type (2), EDNS flag and payload size (3), then the lowercase name.
const KEY_PREFIX: usize = 5;
/// Record types.
const TYPE_SOA: u16 = 6;
const TYPE_OPT: u16 = 41;
const TYPE_AXFR: u16 = 252;
const TYPE_IXFR: u16 = 251;
const CLASS_IN: u16 = 1;
/// Header flag bits, in the third and fourth bytes.
const FLAG_QR: u8 = 0x80;
const FLAG_OPCODE: u8 = 0x78;
const FLAG_AA: u8 = 0x04;
const FLAG_TC: u8 = 0x02;
const FLAG_RD: u8 = 0x01;
const FLAG_CD: u8 = 0x10;
const RCODE_MASK: u8 = 0x0f;
const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;

/// The smallest and largest UDP payload sizes answered to (the server clamps what clients
/// offer to this range, and so does the key).
pub const MIN_PAYLOAD: u16 = 512;
pub const MAX_PAYLOAD: u16 = 4096;

/// A query of the common shape, read in place.
#[derive(Debug)]
pub struct Question<'a> {
    datagram: &'a [u8],
    /// End of the question section (name, type, class) from the header's end.
    question_end: usize,
    /// Length of the question's name on the wire, its final root label included.
    name_len: usize,
    key: [u8; KEY_PREFIX + MAX_NAME],
    key_len: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> Question<'a> {
    /// Reads `datagram` when it is a standard query (QUERY opcode, not truncated) with one
    /// IN question of a type that is answered, no answer or authority records, and either no
    /// additional record or an OPT of EDNS version 0 with no options. `None` otherwise: the
    /// full path judges it (and answers FORMERR, NOTIMP, REFUSED or BADVERS where due).
    pub fn parse(datagram: &'a [u8]) -> Option<Self> {
        let header = datagram.get(..HEADER)?;
        if header[2] & (FLAG_QR | FLAG_OPCODE | FLAG_TC) != 0 {
            return None;
        }
        let counts = [
            u16_at(header, 4)?,
            u16_at(header, 6)?,
            u16_at(header, 8)?,
            u16_at(header, 10)?,
        ];
        let additional = match counts {
            [1, 0, 0, n @ (0 | 1)] => n == 1,
            _ => return None,
        };
        let mut key = [0u8; KEY_PREFIX + MAX_NAME];
        let mut at = HEADER;
        let mut name_len = 0;
        loop {
            let len = usize::from(*datagram.get(at)?);
            // Compression has no place in a question, and 0x40/0x80 are no label types.
            if len > 63 || name_len + len + 1 > MAX_NAME {
                return None;
            }
            let label = datagram.get(at..=at + len)?;
            for (k, b) in key[KEY_PREFIX + name_len..].iter_mut().zip(label) {
                *k = b.to_ascii_lowercase();
            }
            name_len += len + 1;
            at += len + 1;
            if len == 0 {
                break;
            }
        }
        let qtype = u16_at(datagram, at)?;
        let qclass = u16_at(datagram, at + 2)?;
        if qclass != CLASS_IN || matches!(qtype, TYPE_OPT | TYPE_AXFR | TYPE_IXFR) {
            return None;
        }
        let question_end = at + 4;
        key[..2].copy_from_slice(&qtype.to_be_bytes());
        let rest = &datagram[question_end..];
        if additional {
            // Root owner, OPT, payload size, extended rcode 0, version 0, any flags, no data.
            let [0, 0, 41, p0, p1, 0, 0, _, _, 0, 0] = *rest else {
                return None;
            };
            let payload = u16::from_be_bytes([p0, p1]).clamp(MIN_PAYLOAD, MAX_PAYLOAD);
            key[2] = 1;
            key[3..5].copy_from_slice(&payload.to_be_bytes());
        } else if !rest.is_empty() {
            return None;
        }
        Some(Self {
            datagram,
            question_end,
            name_len,
            key,
            key_len: KEY_PREFIX + name_len,
        })
    }

    /// What the response depends on, as bytes to look up.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The question section as the client spelled it.
    fn section(&self) -> &[u8] {
        &self.datagram[HEADER..self.question_end]
    }

    fn name(&self) -> &[u8] {
        &self.datagram[HEADER..HEADER + self.name_len]
    }
}

/// An encoded response, ready to be patched for another client's identical question.
#[derive(Debug)]
pub struct Template {
    bytes: Box<[u8]>,
    question_end: usize,
    /// Owner names written out in full that spell the question's name.
    names: Vec<u16>,
    /// TTL fields lowered with age (forwarded answers only; authoritative ones keep theirs).
    ttls: Vec<u16>,
    /// Seconds the response may be served: its smallest TTL (a negative answer's SOA
    /// minimum counts, RFC 2308).
    lifetime: u32,
    /// The response's rcode and whether it is the cluster's own (authoritative).
    pub rcode: u8,
    pub authoritative: bool,
}

/// Skips the name at `at`; the index after it.
fn skip_name(bytes: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *bytes.get(at)?;
        match len & 0xc0 {
            0xc0 => return Some(at + 2),
            0x00 if len == 0 => return Some(at + 1),
            0x00 => at += usize::from(len) + 1,
            _ => return None,
        }
    }
    None
}

impl Template {
    /// `response`, the full path's answer to `question`, when it may be cached: not
    /// truncated, NOERROR or NXDOMAIN (a SERVFAIL must not stick), with at least one record
    /// whose TTL bounds it, well formed to its last byte.
    pub fn new(question: &Question<'_>, response: &[u8]) -> Option<Self> {
        let header = response.get(..HEADER)?;
        let rcode = header[3] & RCODE_MASK;
        if header[2] & FLAG_TC != 0 || !matches!(rcode, RCODE_NOERROR | RCODE_NXDOMAIN) {
            return None;
        }
        if u16_at(header, 4)? != 1
            || response.get(HEADER..question.question_end)? != question.section()
        {
            return None;
        }
        let authoritative = header[2] & FLAG_AA != 0;
        let answers = u16_at(header, 6)?;
        let negative = rcode == RCODE_NXDOMAIN || answers == 0;
        let records =
            u32::from(answers) + u32::from(u16_at(header, 8)?) + u32::from(u16_at(header, 10)?);
        let name = question.name();
        let mut template = Self {
            bytes: Box::default(),
            question_end: question.question_end,
            names: Vec::new(),
            ttls: Vec::new(),
            lifetime: u32::MAX,
            rcode,
            authoritative,
        };
        let mut at = question.question_end;
        for _ in 0..records {
            if response
                .get(at..at + name.len())
                .is_some_and(|owner| owner.eq_ignore_ascii_case(name))
            {
                template.names.push(u16::try_from(at).ok()?);
            }
            at = skip_name(response, at)?;
            let rtype = u16_at(response, at)?;
            let ttl = u32_at(response, at + 4)?;
            let data_len = usize::from(u16_at(response, at + 8)?);
            let data_end = at + 10 + data_len;
            if data_end > response.len() {
                return None;
            }
            if rtype != TYPE_OPT {
                let mut bound = ttl;
                if negative && rtype == TYPE_SOA {
                    // The SOA's minimum is its data's last field.
                    bound = bound.min(u32_at(response, data_end.checked_sub(4)?)?);
                }
                template.lifetime = template.lifetime.min(bound);
                if !authoritative {
                    template.ttls.push(u16::try_from(at + 4).ok()?);
                }
            }
            at = data_end;
        }
        if at != response.len() || template.lifetime == 0 || template.lifetime == u32::MAX {
            return None;
        }
        template.bytes = response.into();
        Some(template)
    }

    /// The response to `question` (the same key), `age` seconds after this was cached.
    pub fn render(&self, question: &Question<'_>, age: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        let query = question.datagram;
        out[..2].copy_from_slice(&query[..2]);
        out[2] = (out[2] & !FLAG_RD) | (query[2] & FLAG_RD);
        out[3] = (out[3] & !FLAG_CD) | (query[3] & FLAG_CD);
        out[HEADER..self.question_end].copy_from_slice(question.section());
        let name = question.name();
        for &at in &self.names {
            let at = usize::from(at);
            out[at..at + name.len()].copy_from_slice(name);
        }
        for &at in &self.ttls {
            let at = usize::from(at);
            let ttl = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
    }
}

/// Cached responses of one serving thread, each valid for one snapshot of the cluster (a
/// change anywhere empties the cache: names forwarded before may be the cluster's now) and
/// for its lifetime.
#[derive(Debug)]
pub struct PacketCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, (Template, Instant)>,
    /// Bytes of keys and responses held, and the most it may hold: a bound on memory
    /// whatever the answers' sizes (a few hundred bytes each, up to 4 KiB).
    bytes: usize,
    capacity: usize,
}

impl PacketCache {
    /// A cache holding at most `capacity` bytes of keys and responses.
    pub fn new(capacity: usize) -> Self {
        Self {
            generation: 0,
            entries: HashMap::new(),
            bytes: 0,
            capacity,
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The template cached for `key` under `generation`, and its age in seconds at `now`.
    pub fn get(&mut self, generation: u64, key: &[u8], now: Instant) -> Option<(&Template, u32)> {
        if generation != self.generation {
            self.clear();
            self.generation = generation;
            return None;
        }
        let (template, stored) = self.entries.get(key)?;
        let age =
            u32::try_from(now.saturating_duration_since(*stored).as_secs()).unwrap_or(u32::MAX);
        (age < template.lifetime).then_some((template, age))
    }

    /// Keeps `template` for `key`, answered from the cluster as of `generation`. When full,
    /// the cache starts again empty: the set of hot names refills it within a moment, and a
    /// client asking random names gains nothing from any eviction order.
    pub fn insert(&mut self, generation: u64, key: &[u8], template: Template, now: Instant) {
        if generation != self.generation {
            if generation < self.generation {
                // Answered from an older snapshot than the cache already serves.
                return;
            }
            self.clear();
            self.generation = generation;
        }
        if let Some((replaced, _)) = self.entries.remove(key) {
            self.bytes -= key.len() + replaced.bytes.len();
        }
        let size = key.len() + template.bytes.len();
        if self.bytes + size > self.capacity {
            self.clear();
        }
        self.bytes += size;
        self.entries.insert(key.into(), (template, now));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A bare response with `rcode` and no sections to a request whose question could not be
/// read (FORMERR): its ID, opcode and RD flag, as RFC 1035 servers answer. `None` when it is
/// no request (shorter than a header, or itself a response: answering those reflects).
pub fn bare_response(request: &[u8], rcode: u8) -> Option<[u8; HEADER]> {
    let header = request.get(..HEADER)?;
    if header[2] & FLAG_QR != 0 {
        return None;
    }
    let mut out = [0u8; HEADER];
    out[..2].copy_from_slice(&header[..2]);
    out[2] = FLAG_QR | (header[2] & (FLAG_OPCODE | FLAG_RD));
    out[3] = rcode & RCODE_MASK;
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::{
        op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
        rr::{
            Name, RData, Record, RecordType,
            rdata::{A, SOA},
        },
    };

    use super::*;

    fn query(name: &str, qtype: RecordType, edns: Option<u16>, id: u16, rd: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = id;
        message.metadata.recursion_desired = rd;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(payload) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            message.set_edns(e);
        }
        message.to_vec().unwrap()
    }

    /// What the full path would send: the question echoed, `answers` under its name.
    fn response(
        request: &[u8],
        aa: bool,
        rcode: ResponseCode,
        records: Vec<Record>,
        authority: Vec<Record>,
    ) -> Vec<u8> {
        let request = Message::from_vec(request).unwrap();
        let mut message = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = aa;
        message.metadata.recursion_desired = request.metadata.recursion_desired;
        message.metadata.response_code = rcode;
        message.add_queries(request.queries.clone());
        message.add_answers(records);
        message.add_authorities(authority);
        if let Some(edns) = request.edns.clone() {
            message.set_edns(edns);
        }
        message.to_vec().unwrap()
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            ttl,
            RData::A(A::from(std::net::Ipv4Addr::from(ip))),
        )
    }

    #[test]
    fn reads_the_common_query_and_keys_what_decides_the_answer() {
        let q = query("Web.Shop.svc.cluster.local.", RecordType::A, None, 7, true);
        let parsed = Question::parse(&q).expect("a plain A query");
        let same = query("web.shop.SVC.cluster.local.", RecordType::A, None, 9, false);
        assert_eq!(
            parsed.key(),
            Question::parse(&same).unwrap().key(),
            "case and ID do not matter"
        );
        let aaaa = query(
            "web.shop.svc.cluster.local.",
            RecordType::AAAA,
            None,
            7,
            true,
        );
        assert_ne!(
            parsed.key(),
            Question::parse(&aaaa).unwrap().key(),
            "the type does"
        );
        let edns = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some(1232),
            7,
            true,
        );
        let edns_key = Question::parse(&edns)
            .expect("EDNS without options")
            .key()
            .to_vec();
        assert_ne!(parsed.key(), edns_key.as_slice(), "EDNS does");
        let big = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some(9000),
            7,
            true,
        );
        let max = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some(4096),
            7,
            true,
        );
        assert_eq!(
            Question::parse(&big).unwrap().key(),
            Question::parse(&max).unwrap().key(),
            "payloads are clamped"
        );
    }

    #[test]
    fn leaves_every_other_shape_to_the_full_path() {
        let good = query("web.shop.svc.cluster.local.", RecordType::A, None, 7, true);
        let mut response = good.clone();
        response[2] |= FLAG_QR;
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        let mut two = good.clone();
        two[5] = 2;
        let mut chaos = good.clone();
        let class_at = chaos.len() - 1;
        chaos[class_at] = 3;
        let mut trailing = good.clone();
        trailing.push(0);
        let mut edns1 = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some(1232),
            7,
            true,
        );
        let version_at = edns1.len() - 5;
        edns1[version_at] = 1;
        let mut pointer = good[..HEADER].to_vec();
        pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        for (what, bytes) in [
            ("a response", &response),
            ("NOTIFY", &notify),
            ("two questions", &two),
            ("class CHAOS", &chaos),
            ("trailing bytes", &trailing),
            ("EDNS version 1", &edns1),
            ("a pointer in the question", &pointer),
            ("a cut question", &good[..20].to_vec()),
            (
                "a zone transfer",
                &query("cluster.local.", RecordType::AXFR, None, 1, false),
            ),
        ] {
            assert!(Question::parse(bytes).is_none(), "{what}");
        }
    }

    #[test]
    fn a_cached_response_is_patched_for_each_client() {
        let first = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some(1232),
            1,
            true,
        );
        let q1 = Question::parse(&first).unwrap();
        let encoded = response(
            &first,
            true,
            ResponseCode::NoError,
            vec![a("web.shop.svc.cluster.local.", 5, [10, 96, 0, 7])],
            vec![],
        );
        let template = Template::new(&q1, &encoded).expect("cacheable");
        assert!(template.authoritative);
        let second = query(
            "WEB.shop.Svc.cluster.local.",
            RecordType::A,
            Some(1232),
            0xbeef,
            false,
        );
        let q2 = Question::parse(&second).unwrap();
        let mut out = Vec::new();
        template.render(&q2, 3, &mut out);
        let got = Message::from_vec(&out).unwrap();
        assert_eq!(got.metadata.id, 0xbeef);
        assert!(
            !got.metadata.recursion_desired,
            "RD echoed from the second query"
        );
        assert_eq!(
            got.queries[0].name().to_ascii(),
            "WEB.shop.Svc.cluster.local."
        );
        assert_eq!(
            got.answers[0].name.to_ascii(),
            "WEB.shop.Svc.cluster.local.",
            "the owner spelled as asked"
        );
        assert_eq!(got.answers[0].ttl, 5, "authoritative TTLs do not age");
        assert_eq!(
            got.answers[0].data,
            RData::A(A::from(std::net::Ipv4Addr::new(10, 96, 0, 7)))
        );
        assert!(got.edns.is_some());
    }

    #[test]
    fn forwarded_answers_age_and_expire_with_their_smallest_ttl() {
        let request = query("example.com.", RecordType::A, None, 1, true);
        let q = Question::parse(&request).unwrap();
        let encoded = response(
            &request,
            false,
            ResponseCode::NoError,
            vec![
                a("example.com.", 300, [192, 0, 2, 1]),
                a("example.com.", 60, [192, 0, 2, 2]),
            ],
            vec![],
        );
        let template = Template::new(&q, &encoded).unwrap();
        let mut out = Vec::new();
        template.render(&q, 20, &mut out);
        let got = Message::from_vec(&out).unwrap();
        let ttls: Vec<u32> = got.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [280, 40]);

        let mut cache = PacketCache::new(1 << 20);
        let start = Instant::now();
        cache.insert(1, q.key(), template, start);
        assert_eq!(
            cache
                .get(1, q.key(), start + Duration::from_secs(59))
                .map(|(_, age)| age),
            Some(59)
        );
        assert!(
            cache
                .get(1, q.key(), start + Duration::from_secs(60))
                .is_none(),
            "expired with the 60 s record"
        );
        assert!(
            cache.get(2, q.key(), start).is_none(),
            "a new snapshot empties the cache"
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum_and_failures_are_not_kept() {
        let request = query("nope.example.com.", RecordType::A, None, 1, true);
        let q = Question::parse(&request).unwrap();
        let soa = Record::from_rdata(
            Name::from_ascii("example.com.").unwrap(),
            3600,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.example.com.").unwrap(),
                Name::from_ascii("admin.example.com.").unwrap(),
                1,
                7200,
                1800,
                86400,
                30,
            )),
        );
        let nx = response(&request, false, ResponseCode::NXDomain, vec![], vec![soa]);
        let template = Template::new(&q, &nx).expect("a negative answer with an SOA");
        let mut cache = PacketCache::new(1 << 20);
        let start = Instant::now();
        cache.insert(1, q.key(), template, start);
        assert!(
            cache
                .get(1, q.key(), start + Duration::from_secs(29))
                .is_some()
        );
        assert!(
            cache
                .get(1, q.key(), start + Duration::from_secs(30))
                .is_none()
        );

        let servfail = response(&request, false, ResponseCode::ServFail, vec![], vec![]);
        assert!(Template::new(&q, &servfail).is_none(), "SERVFAIL");
        let no_soa = response(&request, false, ResponseCode::NXDomain, vec![], vec![]);
        assert!(
            Template::new(&q, &no_soa).is_none(),
            "nothing bounds its life"
        );
        let mut truncated = response(
            &request,
            false,
            ResponseCode::NoError,
            vec![a("nope.example.com.", 5, [1, 2, 3, 4])],
            vec![],
        );
        truncated[2] |= FLAG_TC;
        assert!(Template::new(&q, &truncated).is_none(), "TC");
        let mut cut = response(
            &request,
            false,
            ResponseCode::NoError,
            vec![a("nope.example.com.", 5, [1, 2, 3, 4])],
            vec![],
        );
        cut.pop();
        assert!(Template::new(&q, &cut).is_none(), "cut short");
    }

    #[test]
    fn a_full_cache_starts_again_and_older_snapshots_are_not_kept() {
        let now = Instant::now();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
            .map(|i| {
                let request = query(&format!("n{i}.example.com."), RecordType::A, None, 1, true);
                let encoded = response(
                    &request,
                    false,
                    ResponseCode::NoError,
                    vec![a(&format!("n{i}.example.com."), 60, [1, 1, 1, 1])],
                    vec![],
                );
                (request, encoded)
            })
            .collect();
        // Room for two of the three (all the same size).
        let size = Question::parse(&entries[0].0).unwrap().key().len() + entries[0].1.len();
        let mut cache = PacketCache::new(2 * size);
        let mut keys = Vec::new();
        for (request, encoded) in &entries {
            let q = Question::parse(request).unwrap();
            cache.insert(5, q.key(), Template::new(&q, encoded).unwrap(), now);
            keys.push(q.key().to_vec());
            if keys.len() == 2 {
                assert_eq!(cache.len(), 2, "two fit");
                // The same key again replaces its entry, taking no more room.
                cache.insert(5, q.key(), Template::new(&q, encoded).unwrap(), now);
                assert_eq!(cache.len(), 2);
            }
        }
        assert_eq!(cache.len(), 1, "emptied when full, then the third kept");
        assert!(cache.get(5, &keys[2], now).is_some());
        assert!(cache.get(5, &keys[0], now).is_none());
        let request = query("old.example.com.", RecordType::A, None, 1, true);
        let q = Question::parse(&request).unwrap();
        let encoded = response(
            &request,
            false,
            ResponseCode::NoError,
            vec![a("old.example.com.", 60, [1, 1, 1, 1])],
            vec![],
        );
        cache.insert(4, q.key(), Template::new(&q, &encoded).unwrap(), now);
        assert!(
            cache.get(5, q.key(), now).is_none(),
            "answered from an older snapshot"
        );
    }

    #[test]
    fn requests_that_cannot_be_read_get_a_bare_formerr() {
        let mut request = query("web.example.com.", RecordType::A, None, 0x1234, true);
        request.truncate(16);
        let out = bare_response(&request, 1).unwrap();
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(out[2], FLAG_QR | FLAG_RD);
        assert_eq!(out[3], 1);
        assert_eq!(&out[4..], &[0; 8]);
        assert!(bare_response(&request[..11], 1).is_none(), "no header");
        let mut reflected = request.clone();
        reflected[2] |= FLAG_QR;
        assert!(bare_response(&reflected, 1).is_none(), "a response");
    }
}
