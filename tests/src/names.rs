//! Unique, short names: interface names must fit in 15 bytes (IFNAMSIZ - 1).

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine while this process lives: `prefix`, the process id and a
/// per-process counter, all in hex. With a prefix of at most 4 bytes it fits an interface name.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}x{n:x}", std::process::id())
}

/// A unique interface name (at most 15 bytes, the kernel's IFNAMSIZ - 1).
pub fn unique_ifname(prefix: &str) -> String {
    let name = unique_name(prefix);
    assert!(
        name.len() <= 15,
        "interface name `{name}` is longer than 15 bytes"
    );
    name
}

/// A free TCP port on the loopback address of the root namespace.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_short() {
        let a = unique_ifname("stn");
        let b = unique_ifname("stn");
        assert_ne!(a, b);
        assert!(a.starts_with("stn") && a.len() <= 15, "{a}");
    }
}
