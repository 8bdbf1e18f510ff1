//! Unique, short names: interface names must fit in 15 bytes (IFNAMSIZ - 1).

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine while this process lives: `prefix`, the process id and a
/// per-process counter, all in hex. `prefix` should be at most 4 bytes so the name fits an
/// interface name.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}x{n:x}", std::process::id());
    assert!(name.len() <= 15, "name `{name}` is longer than an interface name may be");
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
        let a = unique_name("stn");
        let b = unique_name("stn");
        assert_ne!(a, b);
        assert!(a.starts_with("stn") && a.len() <= 15, "{a}");
    }
}
