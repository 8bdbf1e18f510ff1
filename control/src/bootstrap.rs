//! What a new cluster starts with, and the repairs a restart makes.
//!
//! - The namespaces every cluster has: default, kube-system, kube-public, kube-node-lease.
//! - The `kubernetes` Service in `default` (the first address of the service range, port 443)
//!   with its Endpoints and EndpointSlice pointing at this API server.
//! - The `kube-dns` Service in `kube-system` (the tenth address of the service range, no
//!   selector: each node's strait-dns adds its own EndpointSlice; `internalTrafficPolicy:
//!   Local` keeps every pod on its own node's resolver).
//! - Allocation repair: every ClusterIP and NodePort key matches a Service that holds it.
//! - Namespaces left Terminating by a crash are emptied and removed.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use serde_json::{Value, json};
use strait_api::registry;
use strait_store::{Condition, Op, RangeRequest, Txn};

use crate::{
    alloc::{self, Ranges},
    error::ApiError,
    namespaces,
    objects::{self, Objects},
    request::{Options, Target},
};

/// The namespaces created at first start.
pub const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn target(group: &str, version: &str, plural: &str, namespace: Option<&str>) -> Target {
    Target {
        resource: registry::find(group, version, plural)
            .expect("built-in resources are registered"),
        namespace: namespace.map(str::to_owned),
        name: None,
        subresource: None,
    }
}

/// Create `obj` unless it exists; when it does, bring the fields `owned` up to date.
async fn ensure(
    objects: &Objects,
    target: &Target,
    obj: Value,
    owned: &[&str],
) -> Result<(), ApiError> {
    let mut warnings = Vec::new();
    match objects
        .create(target, obj.clone(), &Options::default(), &mut warnings)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => {
            let named = Target {
                name: obj["metadata"]["name"].as_str().map(str::to_owned),
                ..target.clone()
            };
            let mut current = objects.get(&named).await?;
            if owned.iter().all(|field| current[*field] == obj[*field]) {
                return Ok(());
            }
            for field in owned {
                current[*field] = obj[*field].clone();
            }
            objects
                .update(&named, current, &Options::default(), &mut warnings)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// Create the default namespaces and the `kubernetes` Service pointing at `endpoint:port`.
pub async fn defaults(
    objects: &Objects,
    ranges: &Ranges,
    endpoint: IpAddr,
    port: u16,
) -> Result<(), ApiError> {
    let ns_target = target("", "v1", "namespaces", None);
    for name in NAMESPACES {
        ensure(
            objects,
            &ns_target,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            &[],
        )
        .await?;
    }
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        objects,
        &target("", "v1", "services", Some("default")),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ranges.first_ip().to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        }),
        &[],
    )
    .await?;
    kube_dns(objects, ranges).await;
    if endpoint.is_loopback() {
        // Pods cannot reach a loopback address, and Endpoints may not hold one: a control
        // plane on loopback (tests, a single-machine trial) has a Service without endpoints.
        tracing::info!(%endpoint, "the API is on loopback: the kubernetes Service gets no endpoints");
        return Ok(());
    }
    let family = if endpoint.is_ipv4() { "IPv4" } else { "IPv6" };
    ensure(
        objects,
        &target("", "v1", "endpoints", Some("default")),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": endpoint.to_string()}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
        &["subsets"],
    )
    .await?;
    ensure(
        objects,
        &target("discovery.k8s.io", "v1", "endpointslices", Some("default")),
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": family,
            "endpoints": [{"addresses": [endpoint.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }),
        &["endpoints", "ports", "addressType"],
    )
    .await?;
    Ok(())
}

/// Create the `kube-system/kube-dns` Service. A failure (the address already held by a
/// Service created before this one existed, a range too small) is logged, not fatal: the
/// cluster works without cluster DNS.
async fn kube_dns(objects: &Objects, ranges: &Ranges) {
    let Some(ip) = ranges.dns_ip() else {
        tracing::warn!("the service range is too small for the kube-dns Service's tenth address");
        return;
    };
    let port = |name: &str, protocol: &str, port: u16| json!({"name": name, "port": port, "protocol": protocol, "targetPort": port});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "clusterIPs": [ip.to_string()],
            "internalTrafficPolicy": "Local",
            "ports": [port("dns", "UDP", 53), port("dns-tcp", "TCP", 53), port("metrics", "TCP", 9153)],
            "sessionAffinity": "None",
        },
    });
    let target = target("", "v1", "services", Some("kube-system"));
    if let Err(error) = ensure(objects, &target, service, &[]).await {
        tracing::warn!(%ip, %error, "failed to create Service kube-system/kube-dns");
    }
}

/// Make the allocation keys match the Services: drop keys no Service holds, add keys a
/// Service holds but that are missing. Returns (dropped, added).
pub async fn repair_allocations(objects: &Objects) -> Result<(usize, usize), ApiError> {
    let store = objects.store();
    let mut holders: BTreeMap<String, String> = BTreeMap::new();
    let mut revision = 0;
    for plural in ["services", "nodes"] {
        let resource = registry::find("", "v1", plural).expect("registered");
        let listed = store
            .range(RangeRequest {
                prefix: resource.storage_prefix(),
                // Nodes are read at the Services' revision: one snapshot for both.
                revision,
                ..RangeRequest::default()
            })
            .await?;
        revision = listed.revision;
        for kv in &listed.kvs {
            for key in alloc::held(&objects::decode(kv)) {
                holders.insert(key, kv.key.clone());
            }
        }
    }
    let mut dropped = 0;
    for prefix in [alloc::IP_PREFIX, alloc::PORT_PREFIX, alloc::POD_CIDR_PREFIX] {
        // Read at the holders' revision: an object and its keys are written together, so
        // at one revision a key without a holder is an orphan, whatever is written since.
        let keys = store
            .range(RangeRequest {
                prefix: prefix.to_owned(),
                revision,
                ..RangeRequest::default()
            })
            .await?;
        for kv in keys.kvs {
            let holder = String::from_utf8_lossy(&kv.value).into_owned();
            if holders.get(&kv.key) != Some(&holder) {
                store
                    .txn(Txn {
                        conditions: vec![(kv.key.clone(), Condition::ModRevision(kv.mod_revision))],
                        ops: vec![Op::Delete {
                            key: kv.key.clone(),
                        }],
                    })
                    .await?;
                dropped += 1;
            }
        }
    }
    let mut added = 0;
    for (key, holder) in holders {
        if store.get(&key).await?.is_none() {
            store
                .txn(Txn {
                    conditions: vec![(key.clone(), Condition::Absent)],
                    ops: vec![Op::Put {
                        key,
                        value: holder.into_bytes(),
                        lease: 0,
                    }],
                })
                .await?;
            added += 1;
        }
    }
    Ok((dropped, added))
}

/// Resume the finalizer of every namespace a crash left Terminating.
pub async fn resume_namespace_finalizers(objects: &Arc<Objects>) -> Result<usize, ApiError> {
    let page = objects
        .list(&target("", "v1", "namespaces", None), &Options::default())
        .await?;
    let mut resumed = 0;
    for ns in page.items {
        if ns["metadata"]["deletionTimestamp"].is_string()
            && let Some(name) = ns["metadata"]["name"].as_str()
        {
            namespaces::spawn_finalizer(Arc::clone(objects), name.to_owned());
            resumed += 1;
        }
    }
    Ok(resumed)
}
