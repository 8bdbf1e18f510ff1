//! What a local cluster is, on disk: its plan and the processes it runs, in
//! `<cluster dir>/cluster.json`. Written before anything is made and after every process
//! starts, so `down` can remove a cluster whose `up` failed half-way, or whose maker died.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::plan::{CLUSTERS_DIR, Plan};

/// One process a cluster runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// `control`, `agent` or `dns`.
    pub role: String,
    /// The node it serves, for node processes.
    pub node: Option<String>,
    pub pid: u32,
    /// The binary it runs (checked before it is signalled: pids are reused).
    pub binary: PathBuf,
    /// Its arguments after the binary, to start it again the same way.
    #[serde(default)]
    pub args: Vec<String>,
    /// The network namespace it runs in; none is the host's.
    #[serde(default)]
    pub netns: Option<String>,
    pub log: PathBuf,
}

/// A cluster's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub plan: Plan,
    /// When `up` began (RFC 3339).
    pub created: String,
    pub processes: Vec<Process>,
}

impl Record {
    /// The record's file.
    pub fn path(plan: &Plan) -> PathBuf {
        plan.dir.join("cluster.json")
    }

    /// Writes the record (through a temporary file, so a reader never sees half of it).
    pub fn save(&self) -> io::Result<()> {
        fs::create_dir_all(&self.plan.dir)?;
        let path = Self::path(&self.plan);
        let temporary = path.with_extension("json.tmp");
        // Only root reads it: the agents' arguments hold the join token.
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        fs::rename(&temporary, &path)
    }

    /// The record of cluster `name`, if there is one.
    pub fn load(name: &str) -> io::Result<Option<Self>> {
        load_file(&Path::new(CLUSTERS_DIR).join(name).join("cluster.json"))
    }
}

fn load_file(path: &Path) -> io::Result<Option<Record>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a cluster record: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every local cluster's record, by name.
pub fn list() -> io::Result<Vec<Record>> {
    let entries = match fs::read_dir(CLUSTERS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    for entry in entries {
        if let Some(record) = load_file(&entry?.path().join("cluster.json"))? {
            records.push(record);
        }
    }
    records.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
    Ok(records)
}

/// The lock `up` and `down` take: in /run/lock, not beside the records, so the last `down`
/// can remove the records' directory.
const LOCK: &str = "/run/lock/strait-clusters.lock";

/// An exclusive lock over every cluster's record, released on drop.
pub fn lock() -> io::Result<nix::fcntl::Flock<fs::File>> {
    let path = Path::new(LOCK);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| io::Error::from(errno))
}
