//! [`Ipam`]: the allocator plus its state file, written before every answer.

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{AllocateRequest, Allocation, Allocator, IpamError, PodCidr, Request, Response};

/// The state file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    cidr: String,
    #[serde(default)]
    last: Option<IpAddr>,
    allocations: Vec<Allocation>,
}

/// The node's address pool, persisted to a JSON file.
///
/// Every change is written to a temporary file in the same directory, synced, and renamed
/// over the state file, so a crash leaves either the old or the new state, never half of one.
/// A change that cannot be written is undone and reported: an address the agent would forget
/// on restart must not be handed out.
#[derive(Debug)]
pub struct Ipam {
    allocator: Allocator,
    path: PathBuf,
}

impl Ipam {
    /// Opens the pool of `cidr` stored at `path`, loading the allocations there if the file
    /// exists. A file for another CIDR is an error: the agent must decide what to do with pods
    /// whose addresses would fall outside.
    pub fn open(cidr: PodCidr, path: impl Into<PathBuf>) -> Result<Self, IpamError> {
        let path = path.into();
        let mut allocator = Allocator::new(cidr);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                if state.cidr != cidr.to_string() {
                    return Err(IpamError::CidrMismatch {
                        path,
                        found: state.cidr,
                        expected: cidr.to_string(),
                    });
                }
                for allocation in state.allocations {
                    allocator.restore(allocation)?;
                }
                allocator.set_last(state.last);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IpamError::Load { path, source }),
        }
        Ok(Self { allocator, path })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The allocator (read-only: changes go through [`Self::allocate`] and [`Self::release`]).
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Allocates (idempotently) and persists.
    pub fn allocate(&mut self, request: &AllocateRequest) -> Result<Allocation, IpamError> {
        if let Some(existing) = self.allocator.get(&request.container_id, &request.ifname) {
            return Ok(existing.clone());
        }
        let before = self.allocator.clone();
        let allocation = self.allocator.allocate(request)?;
        if let Err(e) = self.persist() {
            self.allocator = before;
            return Err(e);
        }
        Ok(allocation)
    }

    /// Releases (idempotently) and persists. Returns what was released.
    pub fn release(
        &mut self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Allocation>, IpamError> {
        let before = self.allocator.clone();
        let Some(released) = self.allocator.release(container_id, ifname) else {
            return Ok(None);
        };
        if let Err(e) = self.persist() {
            self.allocator = before;
            return Err(e);
        }
        Ok(Some(released))
    }

    /// Every allocation.
    pub fn list(&self) -> Vec<Allocation> {
        self.allocator.allocations().cloned().collect()
    }

    /// Answers one wire request.
    pub fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Allocate(r) => self.allocate(&r).map(Response::Allocated),
            Request::Release(r) => {
                self.release(&r.container_id, &r.ifname)
                    .map(|released| Response::Released {
                        address: released.map(|a| a.address),
                    })
            }
            Request::List => Ok(Response::List {
                cidr: self.allocator.cidr().to_string(),
                allocations: self.list(),
            }),
        };
        result.unwrap_or_else(|e| error_response(&e))
    }

    fn persist(&self) -> Result<(), IpamError> {
        let state = State {
            cidr: self.allocator.cidr().to_string(),
            last: self.allocator.last(),
            allocations: self.list(),
        };
        write_atomically(&self.path, &state).map_err(|source| IpamError::Persist {
            path: self.path.clone(),
            source,
        })
    }
}

/// The error line for `error`, its sources joined so the plugin can show the cause.
pub(super) fn error_response(error: &IpamError) -> Response {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    Response::Error {
        kind: error.kind(),
        message,
    }
}

fn write_atomically(path: &Path, state: &State) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ipam-state-")
        .tempfile_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, state)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str) -> AllocateRequest {
        AllocateRequest {
            container_id: id.into(),
            ifname: "eth0".into(),
            pod_namespace: "ns".into(),
            pod_name: id.into(),
        }
    }

    #[test]
    fn allocations_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ipam.json");
        let cidr: PodCidr = "10.3.0.0/24".parse().unwrap();
        let mut ipam = Ipam::open(cidr, &path).unwrap();
        let a = ipam.allocate(&req("a")).unwrap();
        let b = ipam.allocate(&req("b")).unwrap();
        ipam.release("a", "eth0").unwrap();
        drop(ipam);

        let mut reloaded = Ipam::open(cidr, &path).unwrap();
        assert_eq!(reloaded.list(), vec![b.clone()]);
        assert_eq!(reloaded.allocate(&req("b")).unwrap(), b, "still idempotent");
        let c = reloaded.allocate(&req("c")).unwrap();
        assert_ne!(c.address, a.address, "next-fit position survives too");
        assert_ne!(c.address, b.address);
        // No temporary files are left beside the state file.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ipam.json")]);
    }

    #[test]
    fn a_state_file_for_another_cidr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut ipam = Ipam::open("10.3.0.0/24".parse().unwrap(), &path).unwrap();
        ipam.allocate(&req("a")).unwrap();
        let err = Ipam::open("10.4.0.0/24".parse().unwrap(), &path).unwrap_err();
        assert!(matches!(err, IpamError::CidrMismatch { .. }), "{err}");
        assert!(err.to_string().contains("10.3.0.0/24"), "{err}");
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        std::fs::write(&path, "{oops").unwrap();
        let err = Ipam::open("10.3.0.0/24".parse().unwrap(), &path).unwrap_err();
        assert!(err.to_string().contains("ipam.json"), "{err}");
    }

    #[test]
    fn a_failed_write_undoes_the_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("sub");
        let mut ipam =
            Ipam::open("10.3.0.0/24".parse().unwrap(), blocker.join("ipam.json")).unwrap();
        // The state file's directory becomes a regular file: every write fails.
        std::fs::write(&blocker, "").unwrap();
        let err = ipam.allocate(&req("a")).unwrap_err();
        assert!(matches!(err, IpamError::Persist { .. }), "{err}");
        assert!(ipam.list().is_empty());
        let Response::Error { kind, message } = ipam.handle(Request::Allocate(req("a"))) else {
            panic!("expected an error response");
        };
        assert_eq!(kind, super::super::ErrorKind::Persist);
        assert!(message.contains("ipam.json"), "{message}");
    }

    #[test]
    fn wire_lines_round_trip() {
        let line = r#"{"op":"allocate","containerId":"c","ifname":"eth0","podNamespace":"n","podName":"p"}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert_eq!(
            request,
            Request::Allocate(AllocateRequest {
                container_id: "c".into(),
                ifname: "eth0".into(),
                pod_namespace: "n".into(),
                pod_name: "p".into(),
            })
        );
        let dir = tempfile::tempdir().unwrap();
        let mut ipam =
            Ipam::open("10.3.0.0/24".parse().unwrap(), dir.path().join("s.json")).unwrap();
        let response = serde_json::to_value(ipam.handle(request)).unwrap();
        assert_eq!(response["result"], "allocated");
        assert_eq!(response["address"], "10.3.0.2");
        let released = serde_json::to_value(ipam.handle(
            serde_json::from_str(r#"{"op":"release","containerId":"c","ifname":"eth0"}"#).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            released,
            serde_json::json!({"result":"released","address":"10.3.0.2"})
        );
    }
}
