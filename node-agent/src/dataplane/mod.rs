//! The node's dataplane: loads the BPF object, pins its maps, attaches its programs and keeps
//! the maps equal to the desired services.
//!
//! Layering: [`plan`] is pure (which map operations, in which order); [`Dataplane`] applies
//! plans to the kernel's maps. Nothing else in Strait writes these maps.

mod error;
mod object;
pub mod plan;

pub use error::DataplaneError;
pub use object::{
    Dataplane, DataplaneConfig, DropCount, PinnedMaps, ProgramRun, ServiceDump, SlotDump,
};
pub use plan::{Frontend, MapOp, Protocol, ServiceSpec};
