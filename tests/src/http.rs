//! Servers that live in a namespace (a fixed-body HTTP server, TCP and UDP echo servers) and a
//! client, so a test can tell which backend it reached and keep connections open.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd as _,
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::netns::Netns;

/// A server thread that runs until its owner is dropped: its loop checks the flag between
/// waits of at most 50 ms.
#[derive(Debug)]
struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    fn spawn(body: impl FnOnce(&AtomicBool) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || body(&flag));
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds a TCP listener inside `netns`.
fn listen(netns: &Netns, addr: SocketAddr) -> TcpListener {
    netns
        .run(|| TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", netns.name()))
}

/// Accepts connections until `stop`, handing each to `handle`. Waiting with `poll` accepts a
/// connection the moment it arrives (a sleep-and-retry loop would add its sleep to every
/// connection's latency, which benchmarks measure) and still sees `stop` within 50 ms.
fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    mut handle: impl FnMut(TcpStream, SocketAddr),
) {
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::from(50u16)), Ok(n) if n > 0) {
            continue;
        }
        if let Ok((stream, peer)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            handle(stream, peer);
        }
    }
}

/// Serves `body` on `addr` inside a namespace until dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    _thread: Background,
}

impl HttpServer {
    /// Binds `addr` inside `netns` and starts answering; it closes each connection after its
    /// response.
    pub fn start(netns: &Netns, addr: SocketAddr, body: &str) -> Self {
        Self::serve(netns, addr, body, false)
    }

    /// As [`Self::start`], but after its response the server waits for the client to close
    /// first. Benchmarks need this: a server that closes first keeps the TIME_WAIT, and through
    /// NAT a reused client port then meets it and stalls (10–16 ms tails, 1 s outliers).
    pub fn start_client_closes(netns: &Netns, addr: SocketAddr, body: &str) -> Self {
        Self::serve(netns, addr, body, true)
    }

    fn serve(netns: &Netns, addr: SocketAddr, body: &str, client_closes: bool) -> Self {
        let listener = listen(netns, addr);
        let requests = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let response = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let thread = {
            let (requests, peers) = (Arc::clone(&requests), Arc::clone(&peers));
            Background::spawn(move |stop| {
                accept_loop(&listener, stop, |stream, peer| {
                    requests.fetch_add(1, Ordering::Relaxed);
                    peers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(peer);
                    answer(stream, response.as_bytes(), client_closes);
                });
            })
        };
        Self {
            addr,
            requests,
            peers,
            _thread: thread,
        }
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The source addresses of the connections it accepted, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn answer(mut stream: TcpStream, response: &[u8], client_closes: bool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(response);
    if client_closes {
        // Until the client's FIN (or the read timeout).
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// GETs `/` from `target` (`ADDR:PORT`) with busybox `nc`, from inside `netns` and, if given,
/// from inside a cgroup2 directory (so cgroup programs attached there apply). Returns the
/// response body, or the client's error (its stderr names the errno: "Connection refused",
/// "Network is unreachable").
pub fn http_get(netns: &Netns, cgroup: Option<&Path>, target: &str) -> Result<String, String> {
    let (host, port) = target
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{target}` is not ADDR:PORT"));
    let request = format!("printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n'");
    let client = format!("{request} | busybox nc -w 3 {host} {port}");
    let argv = ["sh", "-c", client.as_str()];
    let out = match cgroup {
        Some(cgroup) => netns.exec_in_cgroup(cgroup, &argv),
        None => netns.exec(&argv),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} ({})", stderr.trim(), out.status));
    }
    match stdout.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_owned()),
        _ => Err(format!("not an HTTP response: {stdout:?}")),
    }
}

/// Echoes every byte back on every connection, inside a namespace, until dropped: for
/// long-lived connections that must survive dataplane changes.
#[derive(Debug)]
pub struct EchoServer {
    _thread: Background,
}

impl EchoServer {
    /// Binds `addr` inside `netns` and starts echoing.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Self {
        let listener = listen(netns, addr);
        Self {
            _thread: Background::spawn(move |stop| {
                accept_loop(&listener, stop, |stream, _| {
                    thread::spawn(move || echo(stream));
                });
            }),
        }
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Echoes every UDP datagram back to its sender, inside a namespace, until dropped.
#[derive(Debug)]
pub struct UdpEchoServer {
    _thread: Background,
}

impl UdpEchoServer {
    /// Binds `addr` inside `netns` and starts echoing.
    pub fn start(netns: &Netns, addr: SocketAddr) -> Self {
        let socket = netns
            .run(|| UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind udp {addr} in {}: {e}", netns.name()));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Self {
            _thread: Background::spawn(move |stop| {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], peer);
                    }
                }
            }),
        }
    }
}
