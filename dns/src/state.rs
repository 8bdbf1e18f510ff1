//! Watch caches of Services, EndpointSlices and Pods, and the [`Snapshot`] rebuilt from them
//! after every change (events are coalesced by one `Notify`, so a burst costs one rebuild).

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{Api, Client, runtime::watcher};
use tokio::sync::Notify;

use crate::snapshot::Snapshot;

/// The snapshot the server answers from; empty until every cache has listed once (until
/// then cluster names get SERVFAIL rather than a wrong NXDOMAIN that resolvers would cache).
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Bumped with every new snapshot: what the serving threads' packet caches compare,
    /// one load per batch of queries instead of a lock.
    generation: AtomicU64,
}

impl Shared {
    /// A handle already holding `snapshot` (tests, benchmarks).
    pub fn with(snapshot: Snapshot) -> Self {
        let shared = Self::default();
        shared.set(snapshot);
        shared
    }

    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.0.snapshot.read().ok().and_then(|s| s.clone())
    }

    pub fn set(&self, snapshot: Snapshot) {
        if let Ok(mut current) = self.0.snapshot.write() {
            *current = Some(Arc::new(snapshot));
            // Release: whoever sees the new generation then reads the new snapshot.
            self.0.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Which snapshot is current: 0 before the first, one more with each.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }
}

/// Keeps `shared` up to date with the API until dropped.
pub async fn follow(client: Client, shared: Shared) {
    let wake = Arc::new(Notify::new());
    // Pods only matter once they have an address; the field selector keeps Pending pods
    // without one in the cache anyway (their IP arrives with a MODIFIED event).
    let (services, services_feed) = strait_kubewatch::cache(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        &wake,
        "services",
    );
    let (slices, slices_feed) = strait_kubewatch::cache(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        &wake,
        "endpointslices",
    );
    let (pods, pods_feed) = strait_kubewatch::cache(
        Api::<Pod>::all(client),
        watcher::Config::default(),
        &wake,
        "pods",
    );
    let rebuild = async {
        let _ = tokio::join!(
            services.wait_until_ready(),
            slices.wait_until_ready(),
            pods.wait_until_ready()
        );
        let mut serial: u32 = 1;
        loop {
            let (s, e, p) = (services.state(), slices.state(), pods.state());
            let snapshot = Snapshot::build(
                s.iter().map(AsRef::as_ref),
                e.iter().map(AsRef::as_ref),
                p.iter().map(AsRef::as_ref),
                serial,
            );
            tracing::debug!(
                serial,
                services = snapshot.services.len(),
                pods = snapshot.pods.len(),
                "rebuilt the cluster's names"
            );
            shared.set(snapshot);
            serial = serial.wrapping_add(1);
            wake.notified().await;
        }
    };
    tokio::join!(services_feed, slices_feed, pods_feed, rebuild);
}
