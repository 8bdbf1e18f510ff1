//! The hickory `RequestHandler`: checks the request, answers cluster names from the current
//! [`crate::snapshot::Snapshot`], sends the rest to the [`Forwarder`], and frames the
//! response (EDNS echoed with the client's payload size, so hickory truncates UDP answers
//! that do not fit and sets TC; TCP is never truncated). hickory itself answers undecodable
//! requests with FORMERR and drops datagrams shorter than a header.

use std::sync::Arc;

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::{DNSClass, Name, Record, RecordType},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};

use crate::{
    answer::{self, Outcome, Zone},
    forward::Forwarder,
    metrics::Metrics,
    packet::{MAX_PAYLOAD, MIN_PAYLOAD},
    state::Shared,
};

/// How many CNAMEs of ExternalName Services are followed before giving up.
const MAX_CHASE: usize = 8;

/// The UDP payload size a response to `request` may fill: what the client offered in EDNS,
/// clamped to 512–4096 bytes (RFC 6891 allows clamping), or 512 without EDNS (RFC 1035).
pub(crate) fn udp_payload(request: &Request) -> u16 {
    request.edns.as_ref().map_or(MIN_PAYLOAD, |theirs| {
        theirs.max_payload().clamp(MIN_PAYLOAD, MAX_PAYLOAD)
    })
}

/// Everything a response needs besides the request's header.
#[derive(Debug, Default)]
pub struct Response {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Response {
    fn code(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

/// Answers DNS requests for one cluster domain. Cloned for each UDP serving thread; the
/// clones share the snapshot, the forwarder's cache and the metrics.
#[derive(Clone, Debug)]
pub struct Handler {
    pub zone: Zone,
    pub state: Shared,
    pub forwarder: Arc<Forwarder>,
    pub metrics: Arc<Metrics>,
}

impl Handler {
    /// The response to a decoded request.
    pub async fn respond(&self, request: &Request) -> Response {
        if request.metadata.op_code != OpCode::Query {
            return Response::code(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Response::code(ResponseCode::BADVERS);
        }
        let [query] = request.queries.queries() else {
            return Response::code(ResponseCode::FormErr);
        };
        let query = query.original();
        let qtype = query.query_type();
        if query.query_class() != DNSClass::IN {
            // Only the Internet class exists in a cluster, and no upstream is asked for others.
            return Response::code(ResponseCode::Refused);
        }
        match qtype {
            RecordType::OPT => return Response::code(ResponseCode::FormErr),
            // Zone transfers are refused, as a server with no transfer peers refuses them.
            RecordType::AXFR | RecordType::IXFR => return Response::code(ResponseCode::Refused),
            _ => {}
        }
        self.question(query.name(), qtype).await
    }

    /// Answers one IN question, following ExternalName CNAMEs.
    pub async fn question(&self, name: &Name, qtype: RecordType) -> Response {
        let snapshot = self.state.get();
        let in_zone = self.zone.name.zone_of(name);
        let outcome = match &snapshot {
            Some(snapshot) => answer::answer(snapshot, &self.zone, name, qtype),
            None if in_zone => {
                tracing::debug!(%name, "the watch caches have not listed yet");
                return Response::code(ResponseCode::ServFail);
            }
            None => Outcome::Forward,
        };
        let Outcome::Cluster(reply) = outcome else {
            self.metrics.source(false);
            return self.forward(name, qtype).await;
        };
        self.metrics.source(true);
        let mut response = Response {
            rcode: reply.rcode,
            authoritative: true,
            answers: reply.answers,
            authority: reply.authority,
            additionals: reply.additionals,
        };
        let mut chase = reply.chase;
        for _ in 0..MAX_CHASE {
            let Some(target) = chase.take() else {
                break;
            };
            let next = match snapshot
                .as_ref()
                .map(|s| answer::answer(s, &self.zone, &target, qtype))
            {
                Some(Outcome::Cluster(reply)) => {
                    chase = reply.chase;
                    Response {
                        rcode: reply.rcode,
                        authoritative: true,
                        answers: reply.answers,
                        authority: reply.authority,
                        additionals: reply.additionals,
                    }
                }
                _ => self.forward(&target, qtype).await,
            };
            if next.rcode == ResponseCode::ServFail {
                // The alias stands; the client may follow it itself.
                break;
            }
            response.rcode = next.rcode;
            response.answers.extend(next.answers);
            response.authority = next.authority;
            response.additionals.extend(next.additionals);
        }
        response
    }

    async fn forward(&self, name: &Name, qtype: RecordType) -> Response {
        match self.forwarder.resolve(name, qtype, DNSClass::IN).await {
            Ok(resolved) => Response {
                rcode: resolved.rcode,
                authoritative: false,
                answers: resolved.answers,
                authority: resolved.authorities,
                additionals: resolved.additionals,
            },
            Err(error) => {
                // Debug: a dead upstream would otherwise log every question.
                tracing::debug!(%error, "forwarding failed");
                Response::code(ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.metrics.request(request.protocol() == Protocol::Tcp);
        let response = self.respond(request).await;
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = response.rcode;
        metadata.authoritative = response.authoritative;
        metadata.recursion_available = true;
        // EDNS is echoed when the client used it; its payload size is what hickory
        // truncates UDP answers to.
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(theirs.max_payload().clamp(MIN_PAYLOAD, MAX_PAYLOAD));
            ours
        });
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let message = builder.build(
            metadata,
            response.answers.iter(),
            response.authority.iter(),
            std::iter::empty(),
            response.additionals.iter(),
        );
        self.metrics.response(response.rcode);
        match response_handle.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, src = %request.src(), "failed to send a response");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
