//! Drives the dataplane from the API: Services and EndpointSlices are watched into caches, and
//! after every burst of changes the whole desired set is compiled and handed to
//! [`Dataplane::sync_services`], which writes only the difference. A Service that does not
//! compile is skipped with a warning naming it; the others are still programmed.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{Api, Client};
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::dataplane::{
    Dataplane, ServiceSpec,
    compile::{NodeFacts, compile_service},
};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Changes arriving within this window are programmed together.
const SETTLE: Duration = Duration::from_millis(20);
/// A full resync this often even without changes: it repairs a failed write.
const RESYNC: Duration = Duration::from_secs(30);

/// Compiles every Service with its slices for `node`. Pure.
pub fn desired(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node: &NodeFacts,
) -> Vec<ServiceSpec> {
    let mut by_service: BTreeMap<(String, String), Vec<EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        by_service
            .entry((namespace, service.clone()))
            .or_default()
            .push(EndpointSlice::clone(slice));
    }
    let mut specs = Vec::new();
    for service in services {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let service_slices = by_service.get(&key).map_or(&[][..], Vec::as_slice);
        match compile_service(service, service_slices, node) {
            Ok(frontends) => specs.extend(frontends.iter().map(|f| f.to_spec())),
            Err(error) => {
                warn!(service = %format!("{}/{}", key.0, key.1), %error, "service skipped")
            }
        }
    }
    specs
}

/// Watches Services and EndpointSlices and keeps the dataplane equal to them. Runs until the
/// task is dropped; watch errors are retried with backoff by the watcher.
pub async fn run(client: Client, node: NodeFacts, dataplane: Arc<Mutex<Dataplane>>) {
    let changed = Arc::new(Notify::new());
    let (services, watch_services) = cache(
        Api::<Service>::all(client.clone()),
        Default::default(),
        &changed,
        "services",
    );
    let (slices, watch_slices) = cache(
        Api::<EndpointSlice>::all(client),
        Default::default(),
        &changed,
        "endpointslices",
    );
    let program = async move {
        let _ = tokio::join!(services.wait_until_ready(), slices.wait_until_ready());
        loop {
            tokio::time::sleep(SETTLE).await;
            let started = Instant::now();
            let specs = desired(&services.state(), &slices.state(), &node);
            let result = dataplane
                .lock()
                .map_err(|_| "the dataplane lock is poisoned".to_owned())
                .and_then(|mut d| d.sync_services(&specs).map_err(|e| e.to_string()));
            match result {
                Ok(()) => info!(
                    frontends = specs.len(),
                    elapsed_us = started.elapsed().as_micros(),
                    "services programmed"
                ),
                Err(error) => {
                    warn!(%error, "failed to program services; retrying on the next change")
                }
            }
            let _ = tokio::time::timeout(RESYNC, changed.notified()).await;
        }
    };
    tokio::join!(watch_services, watch_slices, program);
}
