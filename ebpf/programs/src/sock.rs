//! cgroup sock_addr hooks: a connection to a service is pointed at a backend once, at
//! `connect()` (or per datagram at `sendmsg()` for unconnected UDP), so its packets carry the
//! backend's address and need no per-packet NAT. `recvmsg()` and `getpeername()` show the
//! service address again.

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::{cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::SockAddrContext,
};
use strait_ebpf_common::{
    maps::SOCK_REVNAT_MAX,
    sock::{SockRevNat4Key, SockRevNat4Value},
};

use crate::{
    drop,
    lb::{self, Lookup},
    stats,
};

#[map]
static STRAIT_SKRN4: LruHashMap<SockRevNat4Key, SockRevNat4Value> =
    LruHashMap::pinned(SOCK_REVNAT_MAX, 0);

/// Lets the operation go on.
const ALLOW: i32 = 1;
/// Fails the operation; the error is the one set with `bpf_set_retval` (EPERM if none).
const REJECT: i32 = 0;
/// What a client sees when a service has no backend, as with a closed port.
const ECONNREFUSED: i32 = 111;

/// `connect()` on IPv4 sockets (TCP, and connected UDP) of every process in the cgroup.
#[cgroup_sock_addr(connect4)]
pub(crate) fn strait_connect4(ctx: SockAddrContext) -> i32 {
    translate4(&ctx)
}

/// `sendmsg()` with a destination on unconnected IPv4 UDP sockets.
#[cgroup_sock_addr(sendmsg4)]
pub(crate) fn strait_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate4(&ctx)
}

/// `recvmsg()` on IPv4 UDP sockets: the source of a datagram from a backend becomes the service.
#[cgroup_sock_addr(recvmsg4)]
pub(crate) fn strait_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore4(&ctx);
    ALLOW
}

/// `getpeername()` on IPv4 sockets: a translated socket's peer is shown as the service.
#[cgroup_sock_addr(getpeername4)]
pub(crate) fn strait_getpeername4(ctx: SockAddrContext) -> i32 {
    restore4(&ctx);
    ALLOW
}

#[inline(always)]
fn translate4(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_sock_addr` that lives for the whole program run.
    let addr: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    // `user_port` is a u32 whose low 16 bits hold the port in network order.
    let port = addr.user_port as u16;
    // SAFETY: helper calls on the context the kernel passed. A pod is one network namespace,
    // so the namespace cookie is the client identity for session affinity.
    let client = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // Pods pick at random: Maglev's cross-node consistency only matters for traffic from outside.
    match lb::select_backend4(addr.user_ip4, port, addr.protocol as u8, client, None) {
        Lookup::NotService => ALLOW,
        Lookup::Backend { backend, master } => {
            let key = SockRevNat4Key {
                // SAFETY: as above.
                cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
                address: backend.address,
                port: backend.port,
                pad: 0,
            };
            let value = SockRevNat4Value {
                address: addr.user_ip4,
                port,
                rev_nat: master.rev_nat,
            };
            // Without the entry the socket still works; only its peer shows the backend.
            let _ignored = STRAIT_SKRN4.insert(key, value, 0);
            stats::flow(master.rev_nat);
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

#[inline(always)]
fn restore4(ctx: &SockAddrContext) {
    // SAFETY: as in `translate4`.
    let addr: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let key = SockRevNat4Key {
        // SAFETY: as above.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address: addr.user_ip4,
        port: addr.user_port as u16,
        pad: 0,
    };
    // SAFETY: the value is copied out at once.
    if let Some(service) = (unsafe { STRAIT_SKRN4.get(key) }).copied() {
        addr.user_ip4 = service.address;
        addr.user_port = u32::from(service.port);
    }
}
