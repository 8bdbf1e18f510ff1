//! What the cluster DNS knows about the cluster at one moment: the Services, their endpoints
//! and the pods' addresses, reduced from API objects to what names need. Building one is
//! pure; [`crate::state`] builds a new one from the watch caches after every change.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use k8s_openapi::api::{
    core::v1::Pod, core::v1::Service as ApiService, discovery::v1::EndpointSlice,
};

use crate::names;

/// How a Service's own name resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A (or AAAA) for each cluster IP.
    ClusterIp(Vec<IpAddr>),
    /// One record per endpoint (`clusterIP: None`).
    Headless,
    /// A CNAME to this name.
    ExternalName(String),
}

/// A port with its name and protocol, lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub protocol: String,
    pub port: u16,
}

/// One address of an EndpointSlice endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The endpoint's hostname (a StatefulSet pod's), lowercase.
    pub hostname: Option<String>,
    pub ready: bool,
    /// The slice's ports (the pods' ports, which SRV records of a headless Service carry).
    pub ports: Vec<Port>,
}

impl Endpoint {
    /// The first label of this endpoint's own name: its hostname, or its dashed address.
    pub fn label(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| names::dash(self.ip))
    }
}

/// A Service as names see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub kind: Kind,
    pub ports: Vec<Port>,
    pub publish_not_ready: bool,
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    /// The endpoints names are given for: the ready ones, or all with `publishNotReadyAddresses`.
    pub fn published(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.ready || self.publish_not_ready)
    }
}

/// One name a reverse lookup gives, as labels under the cluster domain.
pub type Labels = Vec<String>;

/// The cluster at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// By (namespace, name), lowercase.
    pub services: HashMap<(String, String), Service>,
    /// Pod addresses and the namespaces of the pods holding them.
    pub pods: HashMap<IpAddr, Vec<String>>,
    /// Names for PTR records: Services' cluster IPs, published headless endpoints, then pods.
    pub reverse: HashMap<IpAddr, Vec<Labels>>,
    /// Counts rebuilds; the SOA's serial.
    pub serial: u32,
}

fn port(name: Option<&str>, protocol: Option<&str>, number: i32) -> Option<Port> {
    Some(Port {
        name: name.unwrap_or_default().to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(number).ok().filter(|p| *p != 0)?,
    })
}

impl Snapshot {
    /// Reduces the API's objects. Objects that make no sense (an unparsable address, a port
    /// out of range) lose only the part that is wrong.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a ApiService>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        pods: impl IntoIterator<Item = &'a Pod>,
        serial: u32,
    ) -> Self {
        let mut snapshot = Self {
            serial,
            ..Self::default()
        };
        for svc in services {
            let (Some(name), Some(namespace), Some(spec)) = (
                svc.metadata.name.as_deref(),
                svc.metadata.namespace.as_deref(),
                svc.spec.as_ref(),
            ) else {
                continue;
            };
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match spec.external_name.as_deref() {
                    Some(target) if !target.is_empty() => Kind::ExternalName(target.to_owned()),
                    _ => continue,
                }
            } else if spec.cluster_ip.as_deref() == Some("None") {
                Kind::Headless
            } else {
                let ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.iter())
                    .filter_map(|ip| ip.parse().ok())
                    .fold(Vec::new(), |mut all, ip| {
                        if !all.contains(&ip) {
                            all.push(ip);
                        }
                        all
                    });
                if ips.is_empty() {
                    // Not allocated yet: no name until it is.
                    continue;
                }
                Kind::ClusterIp(ips)
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port))
                .collect();
            snapshot.services.insert(
                (namespace.to_ascii_lowercase(), name.to_ascii_lowercase()),
                Service {
                    kind,
                    ports,
                    publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
                    endpoints: Vec::new(),
                },
            );
        }
        for slice in slices {
            let (Some(namespace), Some(service)) = (
                slice.metadata.namespace.as_deref(),
                slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name")),
            ) else {
                continue;
            };
            let key = (namespace.to_ascii_lowercase(), service.to_ascii_lowercase());
            let Some(entry) = snapshot.services.get_mut(&key) else {
                continue;
            };
            let ports: Vec<Port> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port?))
                .collect();
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.as_ref();
                // An unset `ready` means unknown, which consumers take as ready (the API's doc).
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true)
                    && !conditions.and_then(|c| c.terminating).unwrap_or(false);
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else {
                        continue;
                    };
                    if entry.endpoints.iter().any(|e| e.ip == ip) {
                        continue;
                    }
                    entry.endpoints.push(Endpoint {
                        ip,
                        hostname: endpoint.hostname.as_deref().map(str::to_ascii_lowercase),
                        ready,
                        ports: ports.clone(),
                    });
                }
            }
        }
        for pod in pods {
            let (Some(namespace), Some(status)) =
                (pod.metadata.namespace.as_deref(), pod.status.as_ref())
            else {
                continue;
            };
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                continue;
            }
            let ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref());
            for ip in ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                let namespaces = snapshot.pods.entry(ip).or_default();
                let namespace = namespace.to_ascii_lowercase();
                if !namespaces.contains(&namespace) {
                    namespaces.push(namespace);
                }
            }
        }
        snapshot.reverse = snapshot.reverse_names();
        snapshot
    }

    fn reverse_names(&self) -> HashMap<IpAddr, Vec<Labels>> {
        // BTreeMap for a stable order of names per address.
        let mut sorted: BTreeMap<(&str, &str), &Service> = BTreeMap::new();
        for ((namespace, name), service) in &self.services {
            sorted.insert((namespace, name), service);
        }
        let mut reverse: HashMap<IpAddr, Vec<Labels>> = HashMap::new();
        let owned = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Labels>();
        for ((namespace, name), service) in sorted {
            match &service.kind {
                Kind::ClusterIp(ips) => {
                    for ip in ips {
                        reverse
                            .entry(*ip)
                            .or_default()
                            .push(owned(&[name, namespace, "svc"]));
                    }
                }
                Kind::Headless => {
                    for endpoint in service.published() {
                        reverse.entry(endpoint.ip).or_default().push(owned(&[
                            &endpoint.label(),
                            name,
                            namespace,
                            "svc",
                        ]));
                    }
                }
                Kind::ExternalName(_) => {}
            }
        }
        for (ip, namespaces) in &self.pods {
            if reverse.contains_key(ip) {
                continue;
            }
            if let Some(namespace) = namespaces.iter().min() {
                reverse
                    .entry(*ip)
                    .or_default()
                    .push(owned(&[&names::dash(*ip), namespace, "pod"]));
            }
        }
        reverse
    }
}
