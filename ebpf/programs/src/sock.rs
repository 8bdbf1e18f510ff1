//! cgroup sock_addr hooks: a connection to a service is pointed at a backend once, at
//! `connect()`, so its packets carry the backend's address and need no per-packet NAT.

use aya_ebpf::{
    helpers::generated::bpf_set_retval, macros::cgroup_sock_addr, programs::SockAddrContext,
};

use crate::{
    drop,
    lb::{self, Lookup},
};

/// Lets the operation go on.
const ALLOW: i32 = 1;
/// Fails the operation; the error is the one set with `bpf_set_retval` (EPERM if none).
const REJECT: i32 = 0;
/// What a client sees when a service has no backend, as with a closed port.
const ECONNREFUSED: i32 = 111;

/// `connect()` on IPv4 sockets (TCP, and connected UDP) of every process in the cgroup.
#[cgroup_sock_addr(connect4)]
pub(crate) fn strait_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` that lives for the whole program run.
    let addr = unsafe { &mut *ctx.sock_addr };
    // `user_port` is a u32 whose low 16 bits hold the port in network order.
    let port = addr.user_port as u16;
    match lb::select_backend4(addr.user_ip4, port, addr.protocol as u8) {
        Lookup::NotService => ALLOW,
        Lookup::Backend { backend, .. } => {
            addr.user_ip4 = backend.address;
            addr.user_port = u32::from(backend.port);
            ALLOW
        }
        Lookup::Refuse(reason) => {
            drop::record(reason);
            // SAFETY: a helper call with a plain integer; cgroup programs may set their return
            // value since Linux 5.18.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            REJECT
        }
    }
}
