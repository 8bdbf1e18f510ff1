//! The answer to one question about the cluster domain, from a [`Snapshot`]. Pure: no IO,
//! no clock; the server adds the header, EDNS and the forwarder around it.

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT},
    },
};

use crate::{
    names::{self, ClusterName},
    snapshot::{Kind, Service, Snapshot},
};

/// The version of the Kubernetes DNS-Based Service Discovery specification answered.
pub const SPEC_VERSION: &str = "1.1.0";

/// The cluster domain and how its answers are stamped.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lowercase and fully qualified (`cluster.local.`).
    pub name: Name,
    /// The TTL of every record (CoreDNS's kubernetes plugin: 5 s by default).
    pub ttl: u32,
}

impl Zone {
    /// `domain` (`cluster.local`, with or without the final dot) and a TTL.
    pub fn new(domain: &str, ttl: u32) -> Result<Self, hickory_proto::ProtoError> {
        let mut name = Name::from_ascii(domain)?.to_lowercase();
        name.set_fqdn(true);
        Ok(Self { name, ttl })
    }

    fn child(&self, labels: &[&str]) -> Name {
        // Labels come from API object names, which validation keeps to DNS labels; a name
        // that still fails falls back to the apex rather than failing the answer.
        names::under(labels, &self.name).unwrap_or_else(|| self.name.clone())
    }

    /// The SOA that negative answers carry (its minimum is the negative-caching TTL).
    pub fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(
            self.child(&["ns", "dns"]),
            self.child(&["hostmaster"]),
            serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.name.clone(), self.ttl, RData::SOA(soa))
    }
}

/// What the server sends for a question the cluster domain answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA of negative answers.
    pub authority: Vec<Record>,
    /// Addresses of SRV targets.
    pub additionals: Vec<Record>,
    /// An ExternalName's target, for the server to resolve and append (CoreDNS does too:
    /// stub resolvers expect the recursive server to follow CNAMEs).
    pub chase: Option<Name>,
}

/// Who answers a question.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Cluster(Reply),
    /// Not the cluster's: ask upstream.
    Forward,
}

/// What exists at a name: its records of every type, and the additional records they need.
#[derive(Default)]
struct Node {
    data: Vec<RData>,
    additionals: Vec<Record>,
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// Answers `qname` (any case) of type `qtype`, class IN.
pub fn answer(snapshot: &Snapshot, zone: &Zone, qname: &Name, qtype: RecordType) -> Outcome {
    let node = match names::parse(qname, &zone.name) {
        Some(name) => lookup(snapshot, zone, &name),
        None => match names::reverse(qname).and_then(|ip| snapshot.reverse.get(&ip)) {
            Some(targets) => Some(Node {
                data: targets
                    .iter()
                    .map(|labels| {
                        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                        RData::PTR(PTR(zone.child(&labels)))
                    })
                    .collect(),
                additionals: Vec::new(),
            }),
            // Reverse names of addresses the cluster does not hold are the host network's.
            None => return Outcome::Forward,
        },
    };
    let negative = |rcode| Reply {
        rcode,
        answers: Vec::new(),
        authority: vec![zone.soa(snapshot.serial)],
        additionals: Vec::new(),
        chase: None,
    };
    let Some(node) = node else {
        return Outcome::Cluster(negative(ResponseCode::NXDomain));
    };
    let record = |data: RData| Record::from_rdata(qname.clone(), zone.ttl, data);
    // A name holding a CNAME holds nothing else: it answers every type but CNAME itself
    // with the alias, and the server follows it.
    if let Some(RData::CNAME(CNAME(target))) = node.data.first()
        && !matches!(qtype, RecordType::CNAME | RecordType::ANY)
    {
        return Outcome::Cluster(Reply {
            rcode: ResponseCode::NoError,
            answers: vec![record(RData::CNAME(CNAME(target.clone())))],
            authority: Vec::new(),
            additionals: Vec::new(),
            chase: Some(target.clone()),
        });
    }
    let answers: Vec<Record> = node
        .data
        .into_iter()
        .filter(|d| qtype == RecordType::ANY || d.record_type() == qtype)
        .map(record)
        .collect();
    if answers.is_empty() {
        return Outcome::Cluster(negative(ResponseCode::NoError));
    }
    let additionals = if answers.iter().any(|r| r.record_type() == RecordType::SRV) {
        node.additionals
    } else {
        Vec::new()
    };
    Outcome::Cluster(Reply {
        rcode: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
        additionals,
        chase: None,
    })
}

/// The records at a cluster name; `None` when the name does not exist.
fn lookup(snapshot: &Snapshot, zone: &Zone, name: &ClusterName) -> Option<Node> {
    let service = |namespace: &String, service: &String| {
        snapshot.services.get(&(namespace.clone(), service.clone()))
    };
    match name {
        ClusterName::Apex => Some(Node {
            data: vec![
                zone.soa(snapshot.serial).data,
                RData::NS(NS(zone.child(&["ns", "dns"]))),
            ],
            additionals: Vec::new(),
        }),
        ClusterName::DnsVersion => Some(Node {
            data: vec![RData::TXT(TXT::new(vec![SPEC_VERSION.to_owned()]))],
            additionals: Vec::new(),
        }),
        ClusterName::Interior => Some(Node::default()),
        ClusterName::Service {
            service: name,
            namespace,
        } => {
            let svc = service(namespace, name)?;
            let data = match &svc.kind {
                Kind::ClusterIp(ips) => ips.iter().copied().map(address).collect(),
                Kind::Headless => svc.published().map(|e| address(e.ip)).collect(),
                Kind::ExternalName(target) => match Name::from_ascii(target) {
                    Ok(mut target) => {
                        target.set_fqdn(true);
                        vec![RData::CNAME(CNAME(target))]
                    }
                    Err(_) => Vec::new(),
                },
            };
            Some(Node {
                data,
                additionals: Vec::new(),
            })
        }
        ClusterName::Endpoint {
            hostname,
            service: name,
            namespace,
        } => {
            let svc = service(namespace, name)?;
            let data: Vec<RData> = svc
                .published()
                .filter(|e| e.label() == *hostname)
                .map(|e| address(e.ip))
                .collect();
            (!data.is_empty()).then_some(Node {
                data,
                additionals: Vec::new(),
            })
        }
        ClusterName::Port {
            port,
            protocol,
            service: name,
            namespace,
        } => srv(
            zone,
            service(namespace, name)?,
            port,
            protocol,
            name,
            namespace,
        ),
        ClusterName::Pod { ip, namespace } => snapshot
            .pods
            .get(ip)
            .filter(|namespaces| namespaces.contains(namespace))
            .map(|_| Node {
                data: vec![address(*ip)],
                additionals: Vec::new(),
            }),
        ClusterName::Unknown => None,
    }
}

/// SRV records of a named port: the Service's name for a ClusterIP Service, each published
/// endpoint's name for a headless one; `None` when no port has that name and protocol.
fn srv(
    zone: &Zone,
    svc: &Service,
    port: &str,
    protocol: &str,
    name: &str,
    namespace: &str,
) -> Option<Node> {
    // Unnamed ports have no SRV records (the specification names them by port name).
    let matches =
        |p: &&crate::snapshot::Port| !p.name.is_empty() && p.name == port && p.protocol == protocol;
    let target = |labels: &[&str]| zone.child(labels);
    let ttl = zone.ttl;
    let mut node = Node::default();
    match &svc.kind {
        Kind::ClusterIp(ips) => {
            let p = svc.ports.iter().find(matches)?;
            let host = target(&[name, namespace, "svc"]);
            node.data
                .push(RData::SRV(SRV::new(0, 100, p.port, host.clone())));
            node.additionals = ips
                .iter()
                .map(|ip| Record::from_rdata(host.clone(), ttl, address(*ip)))
                .collect();
        }
        Kind::ExternalName(external) => {
            let p = svc.ports.iter().find(matches)?;
            let mut host = Name::from_ascii(external).ok()?;
            host.set_fqdn(true);
            node.data.push(RData::SRV(SRV::new(0, 100, p.port, host)));
        }
        Kind::Headless => {
            let endpoints: Vec<_> = svc
                .published()
                .filter_map(|e| e.ports.iter().find(matches).map(|p| (e, p.port)))
                .collect();
            if endpoints.is_empty() {
                // The port may exist with no endpoint serving it yet: the name exists.
                svc.ports.iter().find(matches)?;
                return Some(node);
            }
            let weight = u16::try_from(100 / endpoints.len()).unwrap_or(1).max(1);
            for (endpoint, number) in endpoints {
                let host = target(&[&endpoint.label(), name, namespace, "svc"]);
                node.data
                    .push(RData::SRV(SRV::new(0, weight, number, host.clone())));
                node.additionals
                    .push(Record::from_rdata(host, ttl, address(endpoint.ip)));
            }
        }
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        core::v1::{Pod, Service},
        discovery::v1::EndpointSlice,
    };
    use serde_json::{Value, json};

    use super::*;

    fn objects<T: serde::de::DeserializeOwned>(values: Vec<Value>) -> Vec<T> {
        values
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    fn service(ns: &str, name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
    }

    fn slice(ns: &str, service: &str, ports: Value, endpoints: Value) -> Value {
        json!({"metadata": {"name": format!("{service}-x"), "namespace": ns,
                            "labels": {"kubernetes.io/service-name": service}},
               "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
    }

    /// A cluster with one of every kind of Service and two pods.
    fn cluster() -> Snapshot {
        let services: Vec<Service> = objects(vec![
            service(
                "shop",
                "web",
                json!({"clusterIP": "10.96.1.1", "clusterIPs": ["10.96.1.1"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                          {"name": "dns", "port": 53, "protocol": "UDP"},
                          {"port": 9000}]}),
            ),
            service(
                "shop",
                "db",
                json!({"clusterIP": "None",
                "ports": [{"name": "pg", "port": 5432}]}),
            ),
            service(
                "shop",
                "all",
                json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
            ),
            service(
                "shop",
                "ext",
                json!({"type": "ExternalName", "externalName": "db.example.com",
                "ports": [{"name": "pg", "port": 5432}]}),
            ),
            service(
                "shop",
                "alias",
                json!({"type": "ExternalName",
                "externalName": "web.shop.svc.cluster.local"}),
            ),
            service("shop", "pending", json!({"ports": [{"port": 1}]})),
        ]);
        let endpoints = json!([
            {"addresses": ["10.244.1.2"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.3"], "hostname": "db-1", "conditions": {"ready": false}},
            {"addresses": ["10.244.1.9"]},
        ]);
        let slices: Vec<EndpointSlice> = objects(vec![
            slice(
                "shop",
                "db",
                json!([{"name": "pg", "port": 5432}]),
                endpoints.clone(),
            ),
            slice("shop", "all", json!([]), endpoints),
            slice(
                "shop",
                "gone",
                json!([]),
                json!([{"addresses": ["10.244.9.9"]}]),
            ),
        ]);
        let pods: Vec<Pod> = objects(vec![
            json!({"metadata": {"name": "db-0", "namespace": "shop"},
                   "status": {"phase": "Running", "podIP": "10.244.1.2"}}),
            json!({"metadata": {"name": "lone", "namespace": "shop"},
                   "status": {"phase": "Running", "podIP": "10.244.2.7",
                              "podIPs": [{"ip": "10.244.2.7"}, {"ip": "fd00::7"}]}}),
            json!({"metadata": {"name": "done", "namespace": "shop"},
                   "status": {"phase": "Succeeded", "podIP": "10.244.3.3"}}),
        ]);
        Snapshot::build(&services, &slices, &pods, 42)
    }

    /// The outcome as text: `FORWARD`, or the rcode then one line per record (`answer:`,
    /// `authority:`, `additional:` sections), then `chase NAME`.
    fn ask(name: &str, qtype: RecordType) -> String {
        let zone = Zone::new("cluster.local", 5).unwrap();
        let qname = Name::from_ascii(name).unwrap();
        match answer(&cluster(), &zone, &qname, qtype) {
            Outcome::Forward => "FORWARD".to_owned(),
            Outcome::Cluster(reply) => {
                let mut lines = vec![format!("{:?}", reply.rcode).to_uppercase()];
                for (section, records) in [
                    ("answer", &reply.answers),
                    ("authority", &reply.authority),
                    ("additional", &reply.additionals),
                ] {
                    for r in records {
                        assert_eq!(r.ttl, 5, "{r}");
                        lines.push(format!(
                            "{section}: {} {} {}",
                            r.name,
                            r.record_type(),
                            r.data
                        ));
                    }
                }
                if let Some(target) = reply.chase {
                    lines.push(format!("chase {target}"));
                }
                lines.join("\n")
            }
        }
    }

    fn check(name: &str, qtype: RecordType, want: &[&str]) {
        assert_eq!(ask(name, qtype), want.join("\n"), "{name} {qtype}");
    }

    const SOA: &str = "authority: cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5";
    use RecordType::{A, AAAA, ANY, CNAME, MX, PTR, SOA as SOA_TYPE, SRV, TXT};

    #[test]
    fn cluster_ip_services() {
        check(
            "web.shop.svc.cluster.local.",
            A,
            &["NOERROR", "answer: web.shop.svc.cluster.local. A 10.96.1.1"],
        );
        // Names are case-insensitive; the answer keeps the question's spelling.
        check(
            "WEB.Shop.svc.Cluster.Local.",
            A,
            &["NOERROR", "answer: WEB.Shop.svc.Cluster.Local. A 10.96.1.1"],
        );
        // The name exists without an IPv6 address, or a mail exchanger: NODATA with the SOA.
        check("web.shop.svc.cluster.local.", AAAA, &["NOERROR", SOA]);
        check("web.shop.svc.cluster.local.", MX, &["NOERROR", SOA]);
        check("missing.shop.svc.cluster.local.", A, &["NXDOMAIN", SOA]);
        check("web.other.svc.cluster.local.", A, &["NXDOMAIN", SOA]);
        // No cluster IP yet: no name yet.
        check("pending.shop.svc.cluster.local.", A, &["NXDOMAIN", SOA]);
    }

    #[test]
    fn srv_for_named_ports() {
        check(
            "_http._tcp.web.shop.svc.cluster.local.",
            SRV,
            &[
                "NOERROR",
                "answer: _http._tcp.web.shop.svc.cluster.local. SRV 0 100 80 web.shop.svc.cluster.local.",
                "additional: web.shop.svc.cluster.local. A 10.96.1.1",
            ],
        );
        check(
            "_dns._udp.web.shop.svc.cluster.local.",
            SRV,
            &[
                "NOERROR",
                "answer: _dns._udp.web.shop.svc.cluster.local. SRV 0 100 53 web.shop.svc.cluster.local.",
                "additional: web.shop.svc.cluster.local. A 10.96.1.1",
            ],
        );
        // Unnamed ports have no SRV name.
        check(
            "_._tcp.web.shop.svc.cluster.local.",
            SRV,
            &["NXDOMAIN", SOA],
        );
        check(
            "_http._udp.web.shop.svc.cluster.local.",
            SRV,
            &["NXDOMAIN", SOA],
        );
        check(
            "_http._tcp.web.shop.svc.cluster.local.",
            A,
            &["NOERROR", SOA],
        );
        // Headless: one per published endpoint, named by hostname or dashed address.
        check(
            "_pg._tcp.db.shop.svc.cluster.local.",
            SRV,
            &[
                "NOERROR",
                "answer: _pg._tcp.db.shop.svc.cluster.local. SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
                "answer: _pg._tcp.db.shop.svc.cluster.local. SRV 0 50 5432 10-244-1-9.db.shop.svc.cluster.local.",
                "additional: db-0.db.shop.svc.cluster.local. A 10.244.1.2",
                "additional: 10-244-1-9.db.shop.svc.cluster.local. A 10.244.1.9",
            ],
        );
        check(
            "_pg._tcp.ext.shop.svc.cluster.local.",
            SRV,
            &[
                "NOERROR",
                "answer: _pg._tcp.ext.shop.svc.cluster.local. SRV 0 100 5432 db.example.com.",
            ],
        );
    }

    #[test]
    fn headless_services_and_their_endpoints() {
        check(
            "db.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: db.shop.svc.cluster.local. A 10.244.1.2",
                "answer: db.shop.svc.cluster.local. A 10.244.1.9",
            ],
        );
        // A StatefulSet pod through its hostname and the Service named by its subdomain.
        check(
            "db-0.db.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: db-0.db.shop.svc.cluster.local. A 10.244.1.2",
            ],
        );
        check(
            "10-244-1-9.db.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: 10-244-1-9.db.shop.svc.cluster.local. A 10.244.1.9",
            ],
        );
        // Not ready: no name, unless the Service publishes not-ready addresses.
        check("db-1.db.shop.svc.cluster.local.", A, &["NXDOMAIN", SOA]);
        check(
            "all.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: all.shop.svc.cluster.local. A 10.244.1.2",
                "answer: all.shop.svc.cluster.local. A 10.244.1.3",
                "answer: all.shop.svc.cluster.local. A 10.244.1.9",
            ],
        );
        check(
            "db-1.all.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: db-1.all.shop.svc.cluster.local. A 10.244.1.3",
            ],
        );
        // A search-path expansion of an external name looks like an endpoint name.
        check("example.com.shop.svc.cluster.local.", A, &["NXDOMAIN", SOA]);
    }

    #[test]
    fn external_names_are_aliases() {
        check(
            "ext.shop.svc.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: ext.shop.svc.cluster.local. CNAME db.example.com.",
                "chase db.example.com.",
            ],
        );
        check(
            "ext.shop.svc.cluster.local.",
            CNAME,
            &[
                "NOERROR",
                "answer: ext.shop.svc.cluster.local. CNAME db.example.com.",
            ],
        );
        check(
            "alias.shop.svc.cluster.local.",
            AAAA,
            &[
                "NOERROR",
                "answer: alias.shop.svc.cluster.local. CNAME web.shop.svc.cluster.local.",
                "chase web.shop.svc.cluster.local.",
            ],
        );
    }

    #[test]
    fn pods() {
        check(
            "10-244-2-7.shop.pod.cluster.local.",
            A,
            &[
                "NOERROR",
                "answer: 10-244-2-7.shop.pod.cluster.local. A 10.244.2.7",
            ],
        );
        check(
            "fd00--7.shop.pod.cluster.local.",
            AAAA,
            &[
                "NOERROR",
                "answer: fd00--7.shop.pod.cluster.local. AAAA fd00::7",
            ],
        );
        check("10-244-2-7.other.pod.cluster.local.", A, &["NXDOMAIN", SOA]);
        check("10-244-3-3.shop.pod.cluster.local.", A, &["NXDOMAIN", SOA]);
        check(
            "10-244-2-7.shop.pod.cluster.local.",
            AAAA,
            &["NOERROR", SOA],
        );
    }

    #[test]
    fn reverse_names() {
        check(
            "1.1.96.10.in-addr.arpa.",
            PTR,
            &[
                "NOERROR",
                "answer: 1.1.96.10.in-addr.arpa. PTR web.shop.svc.cluster.local.",
            ],
        );
        // An address that is both a headless endpoint and a pod has the endpoint's names.
        check(
            "2.1.244.10.in-addr.arpa.",
            PTR,
            &[
                "NOERROR",
                "answer: 2.1.244.10.in-addr.arpa. PTR db-0.all.shop.svc.cluster.local.",
                "answer: 2.1.244.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local.",
            ],
        );
        check(
            "7.2.244.10.in-addr.arpa.",
            PTR,
            &[
                "NOERROR",
                "answer: 7.2.244.10.in-addr.arpa. PTR 10-244-2-7.shop.pod.cluster.local.",
            ],
        );
        check("7.2.244.10.in-addr.arpa.", A, &["NOERROR", SOA]);
        check("8.8.8.8.in-addr.arpa.", PTR, &["FORWARD"]);
    }

    #[test]
    fn the_zone_itself() {
        check(
            "dns-version.cluster.local.",
            TXT,
            &["NOERROR", "answer: dns-version.cluster.local. TXT 1.1.0"],
        );
        check(
            "cluster.local.",
            SOA_TYPE,
            &[
                "NOERROR",
                "answer: cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5",
            ],
        );
        check("shop.svc.cluster.local.", A, &["NOERROR", SOA]);
        check("svc.cluster.local.", ANY, &["NOERROR", SOA]);
        check("nothing.cluster.local.", A, &["NXDOMAIN", SOA]);
        check("example.com.", A, &["FORWARD"]);
        check("cluster.local.example.com.", A, &["FORWARD"]);
    }
}
