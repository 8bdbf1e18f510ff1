//! Lease deadlines and the task that expires leases.
//!
//! Leases and their TTLs are in the file; deadlines are in memory only. Opening the store starts
//! every lease's clock afresh with its full TTL, as etcd does after a restart: a store that was
//! down must not expire everything the moment it comes back.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, Weak},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::Inner;
use crate::{Error, LeaseId};

/// How long to wait before retrying a lease whose expiry failed to write.
const RETRY_EXPIRY: Duration = Duration::from_secs(1);

/// When a lease expires unless kept alive.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    ttl: Duration,
    deadline: Instant,
}

impl Clock {
    /// A clock that expires `ttl` from now.
    pub(super) fn start(ttl: Duration) -> Self {
        Self {
            ttl,
            deadline: deadline_after(ttl),
        }
    }
}

fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    // A TTL too large to add is as good as forever: a century.
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Inner {
    /// Starts (or restarts) a lease's clock and wakes the expiry task for it.
    pub(super) fn start_clock(&self, lease: LeaseId, clock: Clock) {
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(lease, clock);
        self.wake_expiry.notify_one();
    }

    /// Restarts a live lease's clock.
    pub(super) fn keep_alive(&self, lease: LeaseId) -> Result<(), Error> {
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        let clock = clocks.get_mut(&lease).ok_or(Error::LeaseNotFound(lease))?;
        clock.deadline = deadline_after(clock.ttl);
        Ok(())
    }

    /// Stops a lease's clock (it was revoked).
    pub(super) fn stop_clock(&self, lease: LeaseId) {
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lease);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|clock| clock.deadline)
            .min()
    }

    /// Removes and returns the clocks that ran out. From then on `keep_alive` finds no lease:
    /// an expiring lease cannot be renewed.
    fn take_expired(&self) -> Vec<(LeaseId, Clock)> {
        let now = Instant::now();
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        let expired: Vec<_> = clocks
            .iter()
            .filter(|(_, clock)| clock.deadline <= now)
            .map(|(lease, clock)| (*lease, *clock))
            .collect();
        for (lease, _) in &expired {
            clocks.remove(lease);
        }
        expired
    }
}

/// Sleeps until the next lease deadline, then revokes the leases that ran out, until the store
/// is dropped. Holds the store weakly while it sleeps so that dropping the store closes the file.
pub(super) async fn expire_leases(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(next) = inner.upgrade().map(|inner| inner.next_deadline()) else {
            return;
        };
        let sleep_until = next.unwrap_or_else(|| deadline_after(Duration::from_secs(3600)));
        tokio::select! {
            () = tokio::time::sleep_until(sleep_until) => {}
            // A new clock, or the store going away.
            () = wake.notified() => continue,
        }
        let Some(store) = inner.upgrade() else {
            return;
        };
        for (lease, clock) in store.take_expired() {
            let revoking = Arc::clone(&store);
            let outcome = tokio::task::spawn_blocking(move || revoking.revoke(lease)).await;
            let failure = match outcome {
                // Revoked by hand meanwhile: nothing left to do.
                Ok(Ok(()) | Err(Error::LeaseNotFound(_))) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            tracing::warn!(lease, error = %failure, "redb: expiry of lease failed; retrying");
            store.start_clock(
                lease,
                Clock {
                    ttl: clock.ttl,
                    deadline: deadline_after(RETRY_EXPIRY),
                },
            );
        }
    }
}

/// The clocks of a freshly opened store: every lease gets its full TTL.
pub(super) fn fresh_clocks(leases: Vec<(LeaseId, Duration)>) -> HashMap<LeaseId, Clock> {
    leases
        .into_iter()
        .map(|(lease, ttl)| (lease, Clock::start(ttl)))
        .collect()
}
