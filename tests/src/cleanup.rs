//! Cleanup when a long run is interrupted: every guard registers what it made here, and
//! [`clean_up_on_signal`] removes whatever is still registered when SIGINT or SIGTERM arrives.
//! (Drop handlers do not run when a signal kills the process; a benchmark interrupted after
//! minutes must still leave no namespace, cgroup or pin behind.)

use std::{
    path::PathBuf,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread,
};

use nix::sys::signal::{SigSet, Signal};

/// Something a guard made.
#[derive(Debug, Clone)]
pub(crate) enum Resource {
    Netns(String),
    Cgroup(PathBuf),
    PinDir(PathBuf),
}

static LIVE: Mutex<Vec<(u64, Resource)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Registers a resource; the guard passes the id back to [`untrack`] when it removes it.
pub(crate) fn track(resource: Resource) -> u64 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((id, resource));
    id
}

/// Forgets a resource its guard is removing.
pub(crate) fn untrack(id: u64) {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(live, _)| *live != id);
}

/// Removes every resource still registered: pins first (detaching programs), then
/// namespaces, then cgroups, newest first within each kind.
pub fn remove_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
    let order = |r: &Resource| match r {
        Resource::PinDir(_) => 0,
        Resource::Netns(_) => 1,
        Resource::Cgroup(_) => 2,
    };
    let mut resources: Vec<Resource> = live.into_iter().rev().map(|(_, r)| r).collect();
    resources.sort_by_key(order);
    for resource in resources {
        match resource {
            Resource::PinDir(path) => crate::pin::remove(&path),
            Resource::Netns(name) => crate::netns::remove(&name),
            Resource::Cgroup(path) => crate::cgroup::remove(&path),
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it spawns later:
/// call it first, before any other thread exists) and starts a thread that waits for them,
/// removes what the guards made, and exits with status 130.
pub fn clean_up_on_signal() -> nix::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            eprintln!("interrupted by {signal}: removing what this run made");
            remove_all();
            std::process::exit(130);
        }
    });
    Ok(())
}
