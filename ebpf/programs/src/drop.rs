//! The one place drops are counted. Every program that refuses a packet or a connection calls
//! [`record`] with its reason before returning its hook's "drop" verdict.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use strait_ebpf_common::drop::DropReason;

/// Per-CPU drop counters, indexed by `DropReason as u32`.
#[map]
static STRAIT_DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DropReason::COUNTERS, 0);

#[inline(always)]
pub(crate) fn record(reason: DropReason) {
    if let Some(counter) = STRAIT_DROPS.get_ptr_mut(reason as u32) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; programs on one CPU do not
        // run concurrently with each other, so the increment does not race.
        unsafe { *counter += 1 };
    }
}
