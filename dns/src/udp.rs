//! One UDP serving thread: its own socket of the SO_REUSEPORT group, its own single-threaded
//! runtime, its own [`PacketCache`]. Datagrams are taken a batch at a time (`recvmmsg`), the
//! common queries answered from the cache in place, and the batch's responses sent with one
//! `sendmmsg`: under load, two system calls carry dozens of queries, where a server reading
//! and writing one datagram at a time (unbound, hickory's own UDP loop) pays two each.
//!
//! A query the cache cannot answer becomes a task of this thread: hickory decodes it and the
//! [`Handler`] answers it, exactly as over TCP, and its encoded response is what the cache
//! keeps. A forwarded question waiting on an upstream holds up nothing else.

use std::{
    cell::RefCell,
    io::{IoSlice, IoSliceMut},
    net::SocketAddr,
    os::fd::{AsRawFd as _, RawFd},
    rc::Rc,
    sync::{Arc, Mutex},
    time::Instant,
};

use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::{
    net::{NetError, runtime::TokioTime, xfer::Protocol},
    server::{Request, RequestHandler as _, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::{io::Interest, net::UdpSocket, sync::watch};

use crate::{
    metrics::Tally,
    packet::{self, PacketCache, Question, Template},
    server::{Handler, udp_payload},
};

/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;
/// The largest query read; longer datagrams arrive cut and are judged as they arrive.
const RECV_SIZE: usize = 4096;
/// Bytes of responses (and their keys) one thread keeps: some 20,000 typical answers.
const CACHE_BYTES: usize = 4 << 20;
/// FORMERR.
const FORMERR: u8 = 1;

/// Serves `socket` until `stop` is dropped. Runs inside a `LocalSet` (misses are local tasks
/// sharing the cache).
pub(crate) async fn serve(socket: UdpSocket, handler: Handler, mut stop: watch::Receiver<()>) {
    let socket = Rc::new(socket);
    let cache = Rc::new(RefCell::new(PacketCache::new(CACHE_BYTES)));
    let mut inbound = Inbound::new();
    let mut outbound = Outbound::new();
    loop {
        tokio::select! {
            ready = socket.readable() => {
                if let Err(error) = ready {
                    tracing::error!(%error, "the UDP socket failed");
                    return;
                }
            }
            changed = stop.changed() => if changed.is_err() { return },
        }
        let fd = socket.as_raw_fd();
        let received = match socket.try_io(Interest::READABLE, || inbound.receive(fd)) {
            Ok(received) => received,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => {
                // An ICMP error queued on the socket, and the like: the next read goes on.
                tracing::debug!(%error, "receiving a batch");
                continue;
            }
        };
        let generation = handler.state.generation();
        let now = Instant::now();
        let mut tally = Tally::default();
        for i in 0..received {
            let (datagram, source) = inbound.get(i);
            let Some(source) = source.filter(answerable) else {
                continue;
            };
            let hit = Question::parse(datagram).and_then(|question| {
                let mut cache = cache.borrow_mut();
                let (template, age) = cache.get(generation, question.key(), now)?;
                outbound.push(|out| template.render(&question, age, out), source);
                tally.count(template);
                Some(())
            });
            if hit.is_none() {
                let datagram = datagram.to_vec();
                tokio::task::spawn_local(miss(
                    handler.clone(),
                    Rc::clone(&socket),
                    Rc::clone(&cache),
                    datagram,
                    source,
                    generation,
                ));
            }
        }
        outbound.send(&socket).await;
        handler.metrics.packet_hits(&tally);
    }
}

/// Answers one query through hickory and the handler, sends the response, and caches it
/// when it may be.
async fn miss(
    handler: Handler,
    socket: Rc<UdpSocket>,
    cache: Rc<RefCell<PacketCache>>,
    datagram: Vec<u8>,
    source: SocketAddr,
    generation: u64,
) {
    let Some(response) = respond(&handler, &datagram, source).await else {
        return;
    };
    if let Some(question) = Question::parse(&datagram)
        && let Some(template) = Template::new(&question, &response)
    {
        cache
            .borrow_mut()
            .insert(generation, question.key(), template, Instant::now());
    }
    if let Err(error) = socket.send_to(&response, source).await {
        tracing::debug!(%error, %source, "sending a response");
    }
}

/// What hickory's server does with a datagram: nothing for one shorter than a header or a
/// response (answering those reflects), FORMERR for one it cannot decode, else the handler's
/// answer.
async fn respond(handler: &Handler, datagram: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    packet::bare_response(datagram, FORMERR)?;
    let request = match Request::from_bytes(datagram.to_vec(), source, Protocol::Udp) {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, %source, "an undecodable request");
            handler.metrics.request(false);
            handler
                .metrics
                .response(hickory_proto::op::ResponseCode::FormErr);
            return packet::bare_response(datagram, FORMERR).map(|r| r.to_vec());
        }
    };
    let capture = Capture {
        limit: udp_payload(&request),
        encoded: Arc::default(),
    };
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    capture.encoded.lock().ok()?.take()
}

/// A [`ResponseHandler`] that keeps the encoded response instead of sending it, truncated
/// to the client's UDP payload size as hickory's own handle truncates it.
#[derive(Clone)]
struct Capture {
    limit: u16,
    encoded: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(self.limit);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|error| NetError::from(error.to_string()))?;
        if let Ok(mut slot) = self.encoded.lock() {
            *slot = Some(bytes);
        }
        Ok(info)
    }
}

/// Datagrams of one batch, as received.
struct Inbound {
    buffers: Vec<Box<[u8; RECV_SIZE]>>,
    received: Vec<(usize, Option<SocketAddr>)>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl Inbound {
    fn new() -> Self {
        Self {
            buffers: (0..BATCH).map(|_| Box::new([0; RECV_SIZE])).collect(),
            received: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Up to [`BATCH`] datagrams waiting on `fd`, without blocking.
    fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|buffer| [IoSliceMut::new(&mut buffer[..])])
            .collect();
        let results = recvmmsg(
            fd,
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        self.received.clear();
        self.received.extend(results.map(|message| {
            let source = message.address.as_ref().and_then(to_socket_addr);
            (message.bytes, source)
        }));
        Ok(self.received.len())
    }

    /// The `i`th datagram received and its source.
    fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let (len, source) = self.received[i];
        (&self.buffers[i][..len.min(RECV_SIZE)], source)
    }
}

/// Responses of one batch, to be sent together.
struct Outbound {
    responses: Vec<Vec<u8>>,
    destinations: Vec<Option<SockaddrStorage>>,
    /// How many of `responses` are filled.
    queued: usize,
    headers: MultiHeaders<SockaddrStorage>,
}

impl Outbound {
    fn new() -> Self {
        Self {
            responses: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            destinations: vec![None; BATCH],
            queued: 0,
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Queues the response `render` writes, to `destination`.
    fn push(&mut self, render: impl FnOnce(&mut Vec<u8>), destination: SocketAddr) {
        let slot = self.queued;
        render(&mut self.responses[slot]);
        self.destinations[slot] = Some(SockaddrStorage::from(destination));
        self.queued += 1;
    }

    /// Sends the queued responses: one `sendmmsg` while the socket takes them, then one at a
    /// time, waiting for room, for any it did not.
    async fn send(&mut self, socket: &UdpSocket) {
        let fd = socket.as_raw_fd();
        let mut sent = 0;
        while sent < self.queued {
            let slices: Vec<[IoSlice<'_>; 1]> = self.responses[sent..self.queued]
                .iter()
                .map(|response| [IoSlice::new(response)])
                .collect();
            let destinations = &self.destinations[sent..self.queued];
            let headers = &mut self.headers;
            let result = socket.try_io(Interest::WRITABLE, || {
                sendmmsg(
                    fd,
                    headers,
                    slices.iter(),
                    destinations,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(Iterator::count)
                .map_err(std::io::Error::from)
            });
            match result {
                Ok(count) if count > 0 => sent += count,
                Ok(_) => break,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    // The socket's buffer is full: wait for room for the next one.
                    if let Some(destination) =
                        self.destinations[sent].and_then(|d| to_socket_addr(&d))
                        && let Err(error) = socket.send_to(&self.responses[sent], destination).await
                    {
                        tracing::debug!(%error, "sending a response");
                    }
                    sent += 1;
                }
                Err(error) => {
                    // One destination refused (an unreachable address): skip it, send the rest.
                    tracing::debug!(%error, "sending a batch");
                    sent += 1;
                }
            }
        }
        self.queued = 0;
    }
}

/// Whether a response may go to `source`: never to port 0, an unspecified address or the
/// broadcast address (spoofed sources that would turn the server into a reflector; hickory's
/// own loop refuses them too).
fn answerable(source: &SocketAddr) -> bool {
    let address_ok = match source.ip() {
        std::net::IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
        std::net::IpAddr::V6(v6) => !v6.is_unspecified(),
    };
    source.port() != 0 && address_ok
}

fn to_socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_sources_get_no_answer() {
        for (source, ok) in [
            ("10.0.0.1:5353", true),
            ("[fd00::1]:40000", true),
            ("10.0.0.1:0", false),
            ("0.0.0.0:53", false),
            ("255.255.255.255:53", false),
            ("[::]:53", false),
        ] {
            let source: SocketAddr = source.parse().unwrap();
            assert_eq!(answerable(&source), ok, "{source}");
        }
    }
}
