//! The plugin's side of the socket.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{AllocateRequest, Allocation, ErrorKind, ReleaseRequest, Request, Response};

/// Why an IPAM call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody answered: no socket, nobody listening, or no answer within the timeout. The
    /// agent may be starting or restarting, so the runtime should try again.
    #[error("the IPAM at {socket} is not answering")]
    Unavailable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The agent answered something that is not a response.
    #[error("the IPAM at {socket} answered garbage: {reason}")]
    Protocol { socket: PathBuf, reason: String },
    /// The agent refused the request.
    #[error("the IPAM at {socket} refused: {message}")]
    Refused {
        socket: PathBuf,
        kind: ErrorKind,
        message: String,
    },
}

/// A client of the node agent's IPAM socket. Each call is one short connection.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client of the socket at `socket`; each call gives up after `timeout` without an
    /// answer.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The owner's address (the same one on every call until released).
    pub fn allocate(&self, request: AllocateRequest) -> Result<Allocation, ClientError> {
        match self.call(&Request::Allocate(request))? {
            Response::Allocated(allocation) => Ok(allocation),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Releases the owner's address; `Ok(None)` if it held none.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Option<IpAddr>, ClientError> {
        let request = Request::Release(ReleaseRequest {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        });
        match self.call(&request)? {
            Response::Released { address } => Ok(address),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The pod CIDR and every allocation.
    pub fn list(&self) -> Result<(String, Vec<Allocation>), ClientError> {
        match self.call(&Request::List)? {
            Response::List { cidr, allocations } => Ok((cidr, allocations)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends one request line and reads one response line. An error response becomes
    /// [`ClientError::Refused`].
    pub fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let unavailable = |source| ClientError::Unavailable {
            socket: self.socket.clone(),
            source,
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(unavailable)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(unavailable)?;
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol {
            socket: self.socket.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        stream.write_all(&line).map_err(unavailable)?;
        let mut answer = String::new();
        BufReader::new(&stream)
            .take(1 << 20)
            .read_line(&mut answer)
            .map_err(unavailable)?;
        if answer.is_empty() {
            return Err(unavailable(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed without an answer",
            )));
        }
        match serde_json::from_str(answer.trim()) {
            Ok(Response::Error { kind, message }) => Err(ClientError::Refused {
                socket: self.socket.clone(),
                kind,
                message,
            }),
            Ok(response) => Ok(response),
            Err(e) => Err(ClientError::Protocol {
                socket: self.socket.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn unexpected(&self, response: &Response) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            reason: format!("unexpected answer {response:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::net::UnixListener,
        sync::{Arc, Mutex},
    };

    use super::*;
    use crate::ipam::{Ipam, serve};

    fn req(id: &str) -> AllocateRequest {
        AllocateRequest {
            container_id: id.into(),
            ifname: "eth0".into(),
            pod_namespace: "ns".into(),
            pod_name: id.into(),
        }
    }

    #[test]
    fn client_and_server_talk() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ipam.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let ipam = Ipam::open(
            "10.5.0.0/30".parse().unwrap(),
            dir.path().join("state.json"),
        )
        .unwrap();
        let ipam = Arc::new(Mutex::new(ipam));
        std::thread::spawn(move || serve(listener, ipam));
        let client = Client::new(&socket, Duration::from_secs(5));
        let a = client.allocate(req("a")).unwrap();
        assert_eq!(a.address.to_string(), "10.5.0.2");
        assert_eq!(client.allocate(req("a")).unwrap(), a);
        let err = client.allocate(req("b")).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Refused {
                    kind: ErrorKind::Exhausted,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("10.5.0.0/30"), "{err}");
        assert_eq!(
            client.list().unwrap(),
            ("10.5.0.0/30".to_owned(), vec![a.clone()])
        );
        assert_eq!(client.release("a", "eth0").unwrap(), Some(a.address));
        assert_eq!(client.release("a", "eth0").unwrap(), None);
    }

    #[test]
    fn a_missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(dir.path().join("none.sock"), Duration::from_secs(1));
        let err = client.list().unwrap_err();
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("none.sock"), "{err}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("silent.sock");
        // Bound and listening, never accepting: connect succeeds, no answer comes.
        let _listener = UnixListener::bind(&socket).unwrap();
        let client = Client::new(&socket, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = client.list().unwrap_err();
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
