//! The node's dataplane: loads the BPF object, pins its maps, attaches its programs and keeps
//! the maps equal to the desired services.
//!
//! Layering: [`plan`] is pure (which map operations, in which order); [`Dataplane`] applies
//! plans to the kernel's maps. Nothing else in Strait writes these maps.

pub mod compile;
mod dump;
mod error;
pub mod maglev;
mod object;
pub mod plan;
pub mod policy;

pub use dump::{
    AffinityClient, AffinityDump, BackendDump, CtDump, CtPressure, DropCount, PinnedMaps,
    ServiceDump, ServiceStatsDump, SlotDump,
};
pub use error::DataplaneError;
pub use object::{
    Adoption, Dataplane, DataplaneConfig, PacketHook, ProgramRun, ct_entries_for_memory, ifindex,
};
pub use plan::{
    BackendEntry, Frontend, MapOp, PodCidr, Protocol, ServiceKey, ServiceOptions, ServiceSpec,
};
