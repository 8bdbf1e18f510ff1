use std::path::PathBuf;

/// Errors of the dataplane, each naming the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("failed to prepare the BPF filesystem")]
    Bpffs(#[from] strait_host::mounts::MountError),
    #[error("failed to create the pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load the BPF object (maps pinned under {pin_dir})")]
    Load {
        pin_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("the BPF object has no program `{0}`")]
    MissingProgram(&'static str),
    #[error("the BPF object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("failed to load program `{program}` into the kernel")]
    LoadProgram {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to open cgroup {path}")]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to attach `{program}` to {target}")]
    Attach {
        program: &'static str,
        target: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("failed to pin or unpin the link of {target}")]
    PinLink {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to run `{program}` with BPF_PROG_TEST_RUN")]
    TestRun {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map `{map}` has the wrong type or layout")]
    MapType {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("failed to write {key:?} to map `{map}`")]
    MapWrite {
        map: &'static str,
        key: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("failed to read map `{map}`")]
    MapRead {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("service {frontend} has {count} backends; a service holds at most {max}")]
    TooManyBackends {
        frontend: String,
        count: usize,
        max: usize,
    },
    #[error("service {frontend} has backend {backend} of the other address family")]
    FamilyMismatch {
        frontend: String,
        backend: std::net::SocketAddr,
    },
    #[error("service {frontend} does not fit: map `{map}` holds at most {capacity} entries")]
    MapFull {
        map: &'static str,
        frontend: String,
        capacity: usize,
    },
    #[error("{tables} Maglev tables of {size} entries exceed the {max} entries the map may hold")]
    MaglevTooLarge { tables: u16, size: u32, max: u32 },
    #[error("failed to build the Maglev table of service {frontend}")]
    Maglev {
        frontend: String,
        #[source]
        source: super::maglev::MaglevError,
    },
    #[error("no backend id is free (map `{map}` is full)")]
    BackendIdsExhausted { map: &'static str },
}
