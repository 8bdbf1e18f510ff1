//! The one table of drop reasons.
//!
//! Every packet or connection the dataplane refuses leaves through one exit that records one of
//! these reasons in the per-CPU `STRAIT_DROPS` array. When you add a reason, also update:
//! the BPF exit paths in `ebpf/programs`, `DropReason::ALL` and `name` below (read by the agent's
//! metrics and by `netctl bpf dump`), and the table in ARCHITECTURE.md.

/// Why the dataplane dropped a packet or refused a connection.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The packet was too short or its headers could not be read.
    Malformed = 1,
    /// The destination is a service with no backends.
    NoBackend = 2,
    /// A service slot points at a backend id absent from the backend map (a torn update).
    BackendMissing = 3,
    /// A checksum or header rewrite helper failed.
    RewriteFailed = 4,
    /// No source port was free to source-NAT a new flow to a remote backend.
    NoSnatPort = 5,
    /// A conntrack entry could not be written.
    CtWriteFailed = 6,
    /// A NetworkPolicy isolates the pod and no rule allows the connection.
    PolicyDenied = 7,
}

impl DropReason {
    /// Every reason, in code order; sizes the counter array.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::NoBackend,
        Self::BackendMissing,
        Self::RewriteFailed,
        Self::NoSnatPort,
        Self::CtWriteFailed,
        Self::PolicyDenied,
    ];

    /// Entries in the counter array: index 0 is unused so a code is its own index.
    pub const COUNTERS: u32 = Self::ALL.len() as u32 + 1;

    /// The reason's stable name, as metrics and `netctl` print it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed-packet",
            Self::NoBackend => "service-without-backends",
            Self::BackendMissing => "backend-missing",
            Self::RewriteFailed => "rewrite-failed",
            Self::NoSnatPort => "snat-ports-exhausted",
            Self::CtWriteFailed => "conntrack-write-failed",
            Self::PolicyDenied => "policy-denied",
        }
    }

    /// The reason for a code read back from a map, if the code is known.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Malformed),
            2 => Some(Self::NoBackend),
            3 => Some(Self::BackendMissing),
            4 => Some(Self::RewriteFailed),
            5 => Some(Self::NoSnatPort),
            6 => Some(Self::CtWriteFailed),
            7 => Some(Self::PolicyDenied),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DropReason;

    #[test]
    fn codes_round_trip_and_index_the_counter_array() {
        for reason in DropReason::ALL {
            let code = reason as u32;
            assert_eq!(DropReason::from_code(code), Some(reason), "code {code}");
            assert!(
                code < DropReason::COUNTERS,
                "{} outside the array",
                reason.name()
            );
        }
        assert_eq!(DropReason::from_code(0), None);
    }
}
