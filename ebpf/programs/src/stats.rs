//! Per-service traffic counters (`STRAIT_SVC_STATS`), per CPU so counting never contends.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use strait_ebpf_common::{maps::SERVICE_STATS_MAX, service::ServiceStats};

#[map]
static STRAIT_SVC_STATS: PerCpuArray<ServiceStats> = PerCpuArray::pinned(SERVICE_STATS_MAX, 0);

/// Counts one translated connection, datagram or new flow of service `rev_nat`.
#[inline(always)]
pub(crate) fn flow(rev_nat: u16) {
    if let Some(stats) = STRAIT_SVC_STATS.get_ptr_mut(u32::from(rev_nat)) {
        // SAFETY: this CPU's slot of a per-CPU array; programs on one CPU do not interleave.
        unsafe { (*stats).flows += 1 };
    }
}

/// Counts one packet of `len` bytes translated by the per-packet path for service `rev_nat`.
#[inline(always)]
pub(crate) fn packet(rev_nat: u16, len: u32) {
    if let Some(stats) = STRAIT_SVC_STATS.get_ptr_mut(u32::from(rev_nat)) {
        // SAFETY: as above.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += u64::from(len);
        }
    }
}
