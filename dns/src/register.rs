//! Self-registration behind the `kube-system/kube-dns` Service: each node's strait-dns keeps
//! one EndpointSlice, `kube-dns-<node>`, naming its own address on its own node, owned by
//! the Node (so the garbage collector removes it with the node). The Service has no
//! selector, so the EndpointSlice controller leaves these slices alone; with
//! `internalTrafficPolicy: Local` every pod reaches its own node's resolver.

use std::net::IpAddr;

use k8s_openapi::{
    api::{
        core::v1::Node,
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Api, Client, api::PostParams};

/// The namespace and Service the slices belong to.
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
/// The `managed-by` label value, so other controllers know whose slices these are.
pub const MANAGER: &str = "strait-dns";

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("node `{node}` is not registered with the API yet")]
    NoNode { node: String },
    #[error("failed to write EndpointSlice kube-system/{slice}")]
    Write {
        slice: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read node `{node}`")]
    Node {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// The ports this node's resolver serves at its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// DNS, over UDP and TCP (the Service's `dns` and `dns-tcp`).
    pub dns: u16,
    /// Prometheus metrics (the Service's `metrics`), when served on the advertised address.
    pub metrics: Option<u16>,
}

/// The slice's name for `node`.
pub fn slice_name(node: &str) -> String {
    format!("{SERVICE}-{node}")
}

/// The slice naming `address` and its `ports` on `node` (owned by the Node with `node_uid`).
/// Pure.
pub fn slice(
    node: &str,
    node_uid: &str,
    address: IpAddr,
    ports: Ports,
    ready: bool,
) -> EndpointSlice {
    let labels = [
        ("kubernetes.io/service-name", SERVICE),
        ("endpointslice.kubernetes.io/managed-by", MANAGER),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let port = |name: &str, protocol: &str, number: u16| EndpointPort {
        name: Some(name.to_owned()),
        port: Some(i32::from(number)),
        protocol: Some(protocol.to_owned()),
        ..EndpointPort::default()
    };
    let mut endpoint_ports = vec![
        port("dns", "UDP", ports.dns),
        port("dns-tcp", "TCP", ports.dns),
    ];
    // Without it the Service's `metrics` port has no backend, and scrapes that go through
    // the Service (or its endpoints, as a Prometheus ServiceMonitor does) find nothing.
    endpoint_ports.extend(ports.metrics.map(|m| port("metrics", "TCP", m)));
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(slice_name(node)),
            namespace: Some(NAMESPACE.to_owned()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: node.to_owned(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        address_type: if address.is_ipv4() { "IPv4" } else { "IPv6" }.to_owned(),
        endpoints: vec![Endpoint {
            addresses: vec![address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(ready),
                terminating: Some(!ready),
            }),
            node_name: Some(node.to_owned()),
            ..Endpoint::default()
        }],
        ports: Some(endpoint_ports),
    }
}

/// Creates or replaces this node's slice, ready or not; writes nothing when it is already so.
pub async fn register(
    client: &Client,
    node: &str,
    address: IpAddr,
    ports: Ports,
    ready: bool,
) -> Result<(), RegisterError> {
    let owner = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .map_err(|source| RegisterError::Node {
            node: node.to_owned(),
            source,
        })?
        .ok_or_else(|| RegisterError::NoNode {
            node: node.to_owned(),
        })?;
    let uid = owner.metadata.uid.unwrap_or_default();
    let api = Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE);
    let name = slice_name(node);
    let write = |source| RegisterError::Write {
        slice: name.clone(),
        source,
    };
    let mut want = slice(node, &uid, address, ports, ready);
    match api.get_opt(&name).await.map_err(write)? {
        None => api
            .create(&PostParams::default(), &want)
            .await
            .map(|_| ())
            .map_err(write),
        // Unchanged: no write, so re-asserting it costs watchers nothing.
        Some(current)
            if current.endpoints == want.endpoints
                && current.ports == want.ports
                && current.metadata.labels == want.metadata.labels
                && current.metadata.owner_references == want.metadata.owner_references =>
        {
            Ok(())
        }
        Some(current) => {
            want.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &want)
                .await
                .map(|_| ())
                .map_err(write)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slice_names_this_node() {
        let ports = Ports {
            dns: 53,
            metrics: Some(9153),
        };
        let s = slice("n1", "uid-1", "10.0.0.5".parse().unwrap(), ports, true);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["metadata"]["name"], "kube-dns-n1");
        assert_eq!(
            v["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(v["addressType"], "IPv4");
        assert_eq!(v["endpoints"][0]["nodeName"], "n1");
        assert_eq!(v["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(v["ports"][1]["name"], "dns-tcp");
        assert_eq!(v["ports"][2]["name"], "metrics");
        assert_eq!(v["ports"][2]["port"], 9153);
        let no_metrics = Ports {
            dns: 53,
            metrics: None,
        };
        let down = slice("n1", "uid-1", "fd00::5".parse().unwrap(), no_metrics, false);
        assert_eq!(down.ports.as_ref().map(Vec::len), Some(2));
        assert_eq!(down.address_type, "IPv6");
        assert_eq!(
            down.endpoints[0].conditions.as_ref().unwrap().ready,
            Some(false)
        );
    }
}
