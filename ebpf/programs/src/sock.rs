//! cgroup sock_addr hooks: a connection to a service is pointed at a backend once, at
//! `connect()` (or per datagram at `sendmsg()` for unconnected UDP), so its packets carry the
//! backend's address and need no per-packet NAT. `recvmsg()` and `getpeername()` show the
//! service address again.

use core::ptr::{read_volatile, write_volatile};

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
    sock::{SockRevNat4Key, SockRevNat4Value, SockRevNat6Key, SockRevNat6Value},
};

use crate::{
    drop,
    lb::{self, Lookup},
    stats,
};

#[map]
static STRAIT_SKRN4: LruHashMap<SockRevNat4Key, SockRevNat4Value> =
    LruHashMap::pinned(SOCK_REVNAT_MAX, 0);

#[map]
static STRAIT_SKRN6: LruHashMap<SockRevNat6Key, SockRevNat6Value> =
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

/// `connect()` on IPv6 sockets.
#[cgroup_sock_addr(connect6)]
pub(crate) fn strait_connect6(ctx: SockAddrContext) -> i32 {
    translate6(&ctx)
}

/// `sendmsg()` with a destination on unconnected IPv6 UDP sockets.
#[cgroup_sock_addr(sendmsg6)]
pub(crate) fn strait_sendmsg6(ctx: SockAddrContext) -> i32 {
    translate6(&ctx)
}

/// `recvmsg()` on IPv6 UDP sockets.
#[cgroup_sock_addr(recvmsg6)]
pub(crate) fn strait_recvmsg6(ctx: SockAddrContext) -> i32 {
    restore6(&ctx);
    ALLOW
}

/// `getpeername()` on IPv6 sockets.
#[cgroup_sock_addr(getpeername6)]
pub(crate) fn strait_getpeername6(ctx: SockAddrContext) -> i32 {
    restore6(&ctx);
    ALLOW
}

/// Fails a connection to a service without backends, as a closed port would.
#[inline(always)]
fn refuse(reason: strait_ebpf_common::drop::DropReason) -> i32 {
    drop::record(reason);
    // SAFETY: a helper call with a plain integer; cgroup programs may set their return value
    // since Linux 5.18.
    unsafe { bpf_set_retval(-ECONNREFUSED) };
    REJECT
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
    match lb::select_backend::<lb::V4>(addr.user_ip4, port, addr.protocol as u8, client, None) {
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
        Lookup::Refuse(reason) => refuse(reason),
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

#[inline(always)]
fn translate6(ctx: &SockAddrContext) -> i32 {
    // SAFETY: as in `translate4`.
    let addr: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let port = addr.user_port as u16;
    let service = read_ip6(addr);
    // SAFETY: as in `translate4`.
    let client = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    match lb::select_backend::<lb::V6>(service, port, addr.protocol as u8, client, None) {
        Lookup::NotService => ALLOW,
        Lookup::Backend { backend, master } => {
            let key = SockRevNat6Key {
                // SAFETY: as above.
                cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
                address: backend.address,
                port: backend.port,
                pad: [0; 6],
            };
            let value = SockRevNat6Value {
                address: service,
                port,
                rev_nat: master.rev_nat,
            };
            let _ignored = STRAIT_SKRN6.insert(key, value, 0);
            stats::flow(master.rev_nat);
            write_ip6(addr, backend.address);
            addr.user_port = u32::from(backend.port);
            ALLOW
        }
        Lookup::Refuse(reason) => refuse(reason),
    }
}

#[inline(always)]
fn restore6(ctx: &SockAddrContext) {
    // SAFETY: as in `translate4`.
    let addr: &mut bpf_sock_addr = unsafe { &mut *ctx.sock_addr };
    let key = SockRevNat6Key {
        // SAFETY: as above.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address: read_ip6(addr),
        port: addr.user_port as u16,
        pad: [0; 6],
    };
    // SAFETY: the value is copied out at once.
    if let Some(service) = (unsafe { STRAIT_SKRN6.get(key) }).copied() {
        write_ip6(addr, service.address);
        addr.user_port = u32::from(service.port);
    }
}

/// Reads `user_ip6` one word at a time: the verifier only allows 4-byte accesses at fixed
/// offsets of the context, and a plain array copy compiles to pointer arithmetic on it.
#[inline(always)]
fn read_ip6(addr: &bpf_sock_addr) -> [u32; 4] {
    let words = &raw const addr.user_ip6;
    // SAFETY: each pointer is to a field of the live context; volatile keeps every read a
    // separate 4-byte load at a constant offset.
    unsafe {
        [
            read_volatile(words.cast::<u32>()),
            read_volatile(words.cast::<u32>().add(1)),
            read_volatile(words.cast::<u32>().add(2)),
            read_volatile(words.cast::<u32>().add(3)),
        ]
    }
}

/// Writes `user_ip6` one word at a time, for the same reason.
#[inline(always)]
fn write_ip6(addr: &mut bpf_sock_addr, value: [u32; 4]) {
    let words = (&raw mut addr.user_ip6).cast::<u32>();
    // SAFETY: as in `read_ip6`, for writes.
    unsafe {
        write_volatile(words, value[0]);
        write_volatile(words.add(1), value[1]);
        write_volatile(words.add(2), value[2]);
        write_volatile(words.add(3), value[3]);
    }
}
