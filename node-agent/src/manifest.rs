//! Desired services from Kubernetes objects in a file: a `List` such as
//! `kubectl get services,endpointslices -A -o json` prints, or a single object. Until the agent
//! watches the API (issue 10) this is how a node is given real Services and EndpointSlices;
//! both paths go through the same compiler.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{core::v1::Service, discovery::v1::EndpointSlice},
    serde_json::{self, Value},
};

use crate::dataplane::{
    ServiceSpec,
    compile::{CompileError, NodeFacts, compile_service},
};

/// Errors reading a manifest, naming the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("items[{index}] ({kind}): not a valid {kind}")]
    Object {
        index: usize,
        kind: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// What a manifest compiles to on this node.
#[derive(Debug, Default)]
pub struct Desired {
    /// Frontends of both families, ready for the dataplane.
    pub services: Vec<ServiceSpec>,
}

/// Reads Services and EndpointSlices from `text` and compiles them for `node`. Objects of other
/// kinds are ignored. Any invalid Service fails the whole load, so a node is never programmed
/// from half a manifest.
pub fn load(text: &str, node: &NodeFacts) -> Result<Desired, ManifestError> {
    let root: Value = serde_json::from_str(text).map_err(ManifestError::Json)?;
    let items = match root.get("items").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => vec![root],
    };
    let mut services = Vec::new();
    let mut slices: BTreeMap<(String, String), Vec<EndpointSlice>> = BTreeMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let object_error = |source| ManifestError::Object {
            index,
            kind: kind.clone(),
            source,
        };
        match kind.as_str() {
            "Service" => {
                services.push(serde_json::from_value::<Service>(item).map_err(object_error)?)
            }
            "EndpointSlice" => {
                let slice: EndpointSlice = serde_json::from_value(item).map_err(object_error)?;
                let namespace = slice.metadata.namespace.clone().unwrap_or_default();
                let service = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .cloned()
                    .unwrap_or_default();
                slices.entry((namespace, service)).or_default().push(slice);
            }
            _ => {}
        }
    }
    let mut desired = Desired::default();
    for service in &services {
        let key = (
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
        );
        let service_slices = slices.get(&key).map_or(&[][..], Vec::as_slice);
        for frontend in compile_service(service, service_slices, node)? {
            desired.services.push(frontend.to_spec());
        }
    }
    Ok(desired)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LIST: &str = r#"{
      "apiVersion": "v1", "kind": "List",
      "items": [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-abc", "namespace": "shop",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4",
         "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "n1"},
                       {"addresses": ["10.244.2.5"], "conditions": {"ready": false}, "nodeName": "n2"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}}
      ]}"#;

    fn node() -> NodeFacts {
        NodeFacts {
            name: "n1".to_owned(),
            addresses: vec![Ipv4Addr::new(192, 168, 77, 2).into()],
        }
    }

    #[test]
    fn a_kubectl_list_compiles_to_cluster_ip_and_node_port_frontends() {
        let desired = load(LIST, &node()).unwrap();
        let frontends: Vec<String> = desired
            .services
            .iter()
            .map(|s| format!("{} {:?} ext={}", s.frontend, s.backends, s.options.external))
            .collect();
        assert_eq!(
            frontends,
            [
                "10.96.0.20:80/TCP [10.244.1.5:8080] ext=false",
                "192.168.77.2:30080/TCP [10.244.1.5:8080] ext=true",
            ],
            "only the ready endpoint, on the slice's port"
        );
    }

    #[test]
    fn an_invalid_service_fails_the_whole_load_naming_it() {
        let bad = LIST.replace(
            r#""port": 80, "targetPort""#,
            r#""port": 80, "protocol": "SCTP", "targetPort""#,
        );
        let err = load(&bad, &node()).unwrap_err().to_string();
        assert!(err.contains("shop/web") && err.contains("SCTP"), "{err}");
    }

    #[test]
    fn malformed_objects_are_named_by_index() {
        let err = load(
            r#"{"items": [{"kind": "Service", "spec": {"ports": "no"}}]}"#,
            &node(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("items[0] (Service)"), "{err}");
        assert!(load("not json", &node()).is_err());
    }
}
