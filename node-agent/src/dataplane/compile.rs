//! Pure compilation of a Kubernetes Service and its EndpointSlices into the frontends this
//! node's dataplane must hold, with the backends each one sends new connections to.
//!
//! The semantics are kube-proxy's (`pkg/proxy`: `endpointslicecache.go` for slices and
//! deduplication, `topology.go` for readiness and traffic policies, `serviceport.go` and
//! `util.ShouldSkipService` for which services get frontends), so a workload behaves the same on
//! Strait as on a kube-proxy cluster. No IO here: the watch-driven manager feeds API objects in
//! and hands the result to [`super::plan`].

use std::{
    collections::{BTreeMap, btree_map::Entry},
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{
    core::v1::{Service, ServicePort, ServiceSpec},
    discovery::v1::EndpointSlice,
};

use super::plan::{MAX_BACKENDS, Protocol};

/// The label that ties an EndpointSlice to its Service (`discovery.k8s.io/v1`).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent (three hours, the API default).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The largest affinity timeout the API accepts (one day).
const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// What the compiler needs to know about the node it compiles for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// The Node's name, compared with `endpoints[].nodeName` for Local traffic policies.
    pub name: String,
    /// The node's addresses; NodePort services listen on each of them.
    pub addresses: Vec<IpAddr>,
}

/// How clients reach a frontend; decides which traffic policy applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKind {
    /// An address of `spec.clusterIPs`; `internalTrafficPolicy` applies.
    ClusterIp,
    /// A node address and `spec.ports[].nodePort`; `externalTrafficPolicy` applies.
    NodePort,
    /// An address of `spec.externalIPs`; `externalTrafficPolicy` applies.
    ExternalIp,
    /// An address of `status.loadBalancer.ingress[].ip`; `externalTrafficPolicy` applies.
    LoadBalancer,
}

/// One frontend of a service as this node's dataplane must hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFrontend {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub kind: FrontendKind,
    /// Backends for new connections, sorted; empty means connections are refused.
    pub backends: Vec<SocketAddr>,
    /// Seconds a client keeps its backend (`sessionAffinity: ClientIP`), if it does.
    pub affinity_timeout: Option<u32>,
    /// The traffic policy that applies to this frontend is Local: backends are on this node.
    pub local_only: bool,
    /// `namespace/name:port`, the port by name or else by number, for errors and dumps.
    pub service: String,
}

/// Why a service cannot be compiled; each names the service and the field that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A port uses a protocol the dataplane does not carry.
    #[error(
        "service {service}: {field}: unsupported protocol `{protocol}` (TCP and UDP are supported)"
    )]
    UnsupportedProtocol {
        service: String,
        field: String,
        protocol: String,
    },
    /// Two ports of the service claim the same port and protocol.
    #[error("service {service}: {field}: {port}/{protocol} is already used by {other}")]
    DuplicatePort {
        service: String,
        field: String,
        port: u16,
        protocol: Protocol,
        other: String,
    },
    /// A field holds a value the API does not allow.
    #[error("service {service}: {field}: invalid value `{value}` (expected {expected})")]
    InvalidField {
        service: String,
        field: String,
        value: String,
        expected: &'static str,
    },
    /// A frontend has more backends than the service map has slots for.
    #[error(
        "service {service}: frontend {frontend} has {count} backends, more than the limit of {limit}"
    )]
    TooManyBackends {
        service: String,
        frontend: String,
        count: usize,
        limit: usize,
    },
}

/// A service port after validation.
struct Port<'a> {
    name: &'a str,
    port: u16,
    protocol: Protocol,
    node_port: Option<u16>,
}

/// One endpoint of one slice port, with its KEP-1669 conditions already defaulted.
#[derive(Clone, Copy)]
struct Endpoint {
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Endpoints by slice port (name, protocol), then by backend address.
type EndpointsByPort<'a> = BTreeMap<(&'a str, Protocol), BTreeMap<SocketAddr, Endpoint>>;

/// Compiles `svc` into its frontends on `node`: per port in spec order, the cluster IPs, then
/// the node ports, the external IPs and the load-balancer IPs.
///
/// Headless and ExternalName services have no frontends. Frontends whose family the service
/// has no cluster IP of are left out, as kube-proxy's per-family proxiers do.
pub fn compile_service(
    svc: &Service,
    slices: &[EndpointSlice],
    node: &NodeFacts,
) -> Result<Vec<CompiledFrontend>, CompileError> {
    let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let ctx = Ctx {
        service: format!("{namespace}/{name}"),
    };
    let Some(spec) = &svc.spec else {
        return Ok(Vec::new());
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let exposes_node_ports = match service_type {
        "ExternalName" => return Ok(Vec::new()),
        "ClusterIP" => false,
        "NodePort" | "LoadBalancer" => true,
        other => {
            return Err(ctx.invalid(
                "spec.type",
                other,
                "ClusterIP, NodePort, LoadBalancer or ExternalName",
            ));
        }
    };

    // `clusterIPs` supersedes `clusterIP` (dual-stack); its first entry equals `clusterIP`.
    let plural = spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty());
    let raw = match &spec.cluster_ips {
        Some(ips) if plural => ips.as_slice(),
        _ => spec.cluster_ip.as_slice(),
    };
    let cluster_ips = match raw.first().map(String::as_str) {
        // Headless, or not allocated yet: kube-proxy programs nothing for either.
        None | Some("None" | "") => return Ok(Vec::new()),
        Some(_) if plural => ctx.parse_ips(raw, "spec.clusterIPs")?,
        Some(ip) => vec![ctx.parse_ip(ip, "spec.clusterIP")?],
    };
    let has_family = |ip: &IpAddr| cluster_ips.iter().any(|c| c.is_ipv6() == ip.is_ipv6());

    let mut addresses: Vec<(IpAddr, FrontendKind)> = Vec::new();
    if exposes_node_ports {
        let node_ips = node.addresses.iter().copied().filter(has_family);
        addresses.extend(node_ips.map(|ip| (ip, FrontendKind::NodePort)));
    }
    let external_ips = ctx.parse_ips(
        spec.external_ips.as_deref().unwrap_or_default(),
        "spec.externalIPs",
    )?;
    addresses.extend(
        external_ips
            .into_iter()
            .filter(has_family)
            .map(|ip| (ip, FrontendKind::ExternalIp)),
    );
    if service_type == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_deref());
        for (i, ingress) in ingress.unwrap_or_default().iter().enumerate() {
            // `ipMode: Proxy` (KEP-1860): the load balancer proxies to the node ports itself, and
            // capturing its IP here would break clients inside the cluster that rely on that proxy.
            // Hostname-only ingress points have no IP to capture.
            let (Some(ip), false) = (&ingress.ip, ingress.ip_mode.as_deref() == Some("Proxy"))
            else {
                continue;
            };
            let ip = ctx.parse_ip(ip, &format!("status.loadBalancer.ingress[{i}].ip"))?;
            if has_family(&ip) {
                addresses.push((ip, FrontendKind::LoadBalancer));
            }
        }
    }

    let external_local = ctx.local_policy(
        spec.external_traffic_policy.as_deref(),
        "spec.externalTrafficPolicy",
    )?;
    let internal_local = ctx.local_policy(
        spec.internal_traffic_policy.as_deref(),
        "spec.internalTrafficPolicy",
    )?;
    let affinity_timeout = match spec.session_affinity.as_deref().unwrap_or("None") {
        "None" => None,
        "ClientIP" => Some(ctx.affinity_timeout(spec)?),
        other => return Err(ctx.invalid("spec.sessionAffinity", other, "None or ClientIP")),
    };
    let ports = ctx.ports(spec.ports.as_deref().unwrap_or_default())?;
    let all_ready = spec.publish_not_ready_addresses == Some(true);
    let endpoints = collect_endpoints(svc, slices, node, all_ready);

    let mut frontends = Vec::new();
    for port in &ports {
        let label = if port.name.is_empty() {
            port.port.to_string()
        } else {
            port.name.to_owned()
        };
        let service = format!("{}:{label}", ctx.service);
        let endpoints = endpoints.get(&(port.name, port.protocol));
        let cluster = cluster_ips
            .iter()
            .map(|&ip| (ip, port.port, FrontendKind::ClusterIp));
        let external = addresses.iter().filter_map(|&(ip, kind)| match kind {
            FrontendKind::NodePort => Some((ip, port.node_port?, kind)),
            _ => Some((ip, port.port, kind)),
        });
        for (address, number, kind) in cluster.chain(external) {
            let local_only = if kind == FrontendKind::ClusterIp {
                internal_local
            } else {
                external_local
            };
            let backends = endpoints
                .map(|e| select_backends(e, address.is_ipv6(), local_only))
                .unwrap_or_default();
            if backends.len() > MAX_BACKENDS {
                return Err(CompileError::TooManyBackends {
                    service: ctx.service.clone(),
                    frontend: format!("{}/{}", SocketAddr::new(address, number), port.protocol),
                    count: backends.len(),
                    limit: MAX_BACKENDS,
                });
            }
            frontends.push(CompiledFrontend {
                address,
                port: number,
                protocol: port.protocol,
                kind,
                backends,
                affinity_timeout,
                local_only,
                service: service.clone(),
            });
        }
    }
    Ok(frontends)
}

/// The endpoints of `svc` from its own slices, deduplicated by backend address.
fn collect_endpoints<'a>(
    svc: &Service,
    slices: &'a [EndpointSlice],
    node: &NodeFacts,
    all_ready: bool,
) -> EndpointsByPort<'a> {
    let mut mine: Vec<&EndpointSlice> = slices
        .iter()
        .filter(|s| s.metadata.namespace == svc.metadata.namespace)
        .filter(|s| {
            let label = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            label.is_some() && label == svc.metadata.name.as_ref()
        })
        // FQDN slices name hosts, not addresses: there is nothing to NAT to.
        .filter(|s| s.address_type != "FQDN")
        .collect();
    // Slice order decides which copy of a duplicated endpoint wins; make it not the caller's.
    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut by_port = EndpointsByPort::new();
    for slice in mine {
        let want_v6 = slice.address_type == "IPv6";
        for port in slice.ports.as_deref().unwrap_or_default() {
            // kube-proxy skips ports without a number, and a protocol we cannot carry cannot
            // match any service port we accept.
            let Some(number) = port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
            else {
                continue;
            };
            let Ok(protocol) = parse_protocol(port.protocol.as_deref()) else {
                continue;
            };
            let set = by_port
                .entry((port.name.as_deref().unwrap_or_default(), protocol))
                .or_default();
            for endpoint in &slice.endpoints {
                // Like kube-proxy, only the first address counts, and one of the wrong family
                // is skipped rather than failing the whole service.
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                if ip.is_ipv6() != want_v6 {
                    continue;
                }
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                let ready = all_ready || conditions.ready.unwrap_or(true);
                let info = Endpoint {
                    ready,
                    serving: conditions.serving.unwrap_or(ready),
                    terminating: conditions.terminating.unwrap_or(false),
                    local: !node.name.is_empty() && endpoint.node_name.as_ref() == Some(&node.name),
                };
                match set.entry(SocketAddr::new(ip, number)) {
                    Entry::Vacant(e) => {
                        e.insert(info);
                    }
                    // An endpoint moving between slices may briefly be in both; kube-proxy
                    // keeps the local copy if either is local.
                    Entry::Occupied(mut e) if info.local => {
                        e.insert(info);
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
    }
    by_port
}

/// KEP-1669: ready endpoints; if there are none, the serving ones that are terminating, so
/// connections during a rollout's last moments still succeed.
fn select_backends(
    endpoints: &BTreeMap<SocketAddr, Endpoint>,
    ipv6: bool,
    local_only: bool,
) -> Vec<SocketAddr> {
    let candidates = || {
        endpoints
            .iter()
            .filter(move |(addr, e)| addr.is_ipv6() == ipv6 && (e.local || !local_only))
    };
    let ready: Vec<SocketAddr> = candidates()
        .filter(|(_, e)| e.ready)
        .map(|(a, _)| *a)
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates()
        .filter(|(_, e)| e.serving && e.terminating)
        .map(|(a, _)| *a)
        .collect()
}

/// The API's spelling only: the API server rejects `tcp`, so we do too.
fn parse_protocol(protocol: Option<&str>) -> Result<Protocol, &str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        other => Err(other),
    }
}

/// The service being compiled, to name it in errors.
struct Ctx {
    service: String,
}

impl Ctx {
    fn invalid(&self, field: &str, value: &str, expected: &'static str) -> CompileError {
        CompileError::InvalidField {
            service: self.service.clone(),
            field: field.to_owned(),
            value: value.to_owned(),
            expected,
        }
    }

    fn parse_ip(&self, value: &str, field: &str) -> Result<IpAddr, CompileError> {
        value
            .parse()
            .map_err(|_| self.invalid(field, value, "an IP address"))
    }

    fn parse_ips(&self, values: &[String], field: &str) -> Result<Vec<IpAddr>, CompileError> {
        let parse = |(i, v): (usize, &String)| self.parse_ip(v, &format!("{field}[{i}]"));
        values.iter().enumerate().map(parse).collect()
    }

    /// Whether a traffic policy field says Local (absent means Cluster).
    fn local_policy(&self, policy: Option<&str>, field: &str) -> Result<bool, CompileError> {
        match policy.unwrap_or("Cluster") {
            "Cluster" => Ok(false),
            "Local" => Ok(true),
            other => Err(self.invalid(field, other, "Cluster or Local")),
        }
    }

    fn affinity_timeout(&self, spec: &ServiceSpec) -> Result<u32, CompileError> {
        let config = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref());
        let Some(seconds) = config.and_then(|c| c.timeout_seconds) else {
            return Ok(DEFAULT_AFFINITY_TIMEOUT);
        };
        u32::try_from(seconds)
            .ok()
            .filter(|s| (1..=MAX_AFFINITY_TIMEOUT).contains(s))
            .ok_or_else(|| {
                let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
                self.invalid(field, &seconds.to_string(), "1 to 86400 seconds")
            })
    }

    fn port_number(&self, value: i32, field: String) -> Result<u16, CompileError> {
        let number = u16::try_from(value).ok().filter(|&p| p != 0);
        number.ok_or_else(|| self.invalid(&field, &value.to_string(), "a port from 1 to 65535"))
    }

    /// Validates the ports: known protocols, numbers in range, no (port, protocol) twice.
    fn ports<'a>(&self, ports: &'a [ServicePort]) -> Result<Vec<Port<'a>>, CompileError> {
        let mut seen = BTreeMap::new();
        let mut seen_node = BTreeMap::new();
        let mut out = Vec::with_capacity(ports.len());
        for (i, p) in ports.iter().enumerate() {
            let protocol = parse_protocol(p.protocol.as_deref()).map_err(|other| {
                CompileError::UnsupportedProtocol {
                    service: self.service.clone(),
                    field: format!("spec.ports[{i}].protocol"),
                    protocol: other.to_owned(),
                }
            })?;
            let port = self.port_number(p.port, format!("spec.ports[{i}].port"))?;
            // An absent (or zero) nodePort is legal: LoadBalancers may opt out of them.
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(n) => Some(self.port_number(n, format!("spec.ports[{i}].nodePort"))?),
            };
            self.unique(&mut seen, (port, protocol), i, "port")?;
            if let Some(node_port) = node_port {
                self.unique(&mut seen_node, (node_port, protocol), i, "nodePort")?;
            }
            out.push(Port {
                name: p.name.as_deref().unwrap_or_default(),
                port,
                protocol,
                node_port,
            });
        }
        Ok(out)
    }

    fn unique(
        &self,
        seen: &mut BTreeMap<(u16, Protocol), usize>,
        key: (u16, Protocol),
        index: usize,
        field: &str,
    ) -> Result<(), CompileError> {
        match seen.insert(key, index) {
            None => Ok(()),
            Some(first) => Err(CompileError::DuplicatePort {
                service: self.service.clone(),
                field: format!("spec.ports[{index}].{field}"),
                port: key.0,
                protocol: key.1,
                other: format!("spec.ports[{first}]"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::serde_json::{self, Value, json};

    use super::*;

    fn node() -> NodeFacts {
        let addresses = ["192.168.0.10", "192.168.0.11", "fd00::10"];
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        let name = "node-a".to_owned();
        NodeFacts { name, addresses }
    }

    /// Service `default/web` with `spec` and `status`.
    fn service(spec: Value, status: Value) -> Service {
        let meta = json!({"namespace": "default", "name": "web"});
        serde_json::from_value(json!({"metadata": meta, "spec": spec, "status": status})).unwrap()
    }

    /// ClusterIP 10.96.0.10 with port `http` 80, then the fields of `extra`.
    fn web(extra: Value) -> Service {
        let mut spec = json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]});
        let extra = extra.as_object().unwrap().clone();
        spec.as_object_mut().unwrap().extend(extra);
        service(spec, json!({}))
    }

    /// A slice in namespace `default`, written `NAME [FAMILY] [service=OWNER] PORT...` (IPv4
    /// and `web` by default), a port being `NAME:NUMBER[/PROTOCOL]` or a bare number. Each
    /// endpoint is `ADDRESS@NODE[,CONDITION]...`, a condition `ready` (true) or `!ready`
    /// (false); absent ones stay absent.
    fn slice(header: &str, endpoints: &str) -> EndpointSlice {
        let mut words = header.split_whitespace();
        let name = words.next().unwrap();
        let (mut family, mut owner, mut ports) = ("IPv4", "web", Vec::new());
        for word in words {
            if let Some(o) = word.strip_prefix("service=") {
                owner = o;
            } else if ["IPv4", "IPv6", "FQDN"].contains(&word) {
                family = word;
            } else {
                let (port, protocol) = word.split_once('/').unwrap_or((word, "TCP"));
                let (name, port) = port.split_once(':').unwrap_or(("", port));
                let port: u16 = port.parse().unwrap();
                ports.push(json!({"name": name, "port": port, "protocol": protocol}));
            }
        }
        let endpoints: Vec<Value> = endpoints.split_whitespace().map(endpoint).collect();
        let labels = json!({"kubernetes.io/service-name": owner});
        let meta = json!({"namespace": "default", "name": name, "labels": labels});
        let ports = Value::Array(ports);
        let slice = json!({"metadata": meta, "addressType": family, "ports": ports, "endpoints": endpoints});
        serde_json::from_value(slice).unwrap()
    }

    fn endpoint(text: &str) -> Value {
        let mut parts = text.split(',');
        let (address, node) = parts.next().unwrap().split_once('@').unwrap();
        let conditions: serde_json::Map<String, Value> = parts
            .map(|c| c.strip_prefix('!').map_or((c, true), |c| (c, false)))
            .map(|(c, value)| (c.to_owned(), Value::Bool(value)))
            .collect();
        json!({"addresses": [address], "nodeName": node, "conditions": conditions})
    }

    /// One line per frontend, in output order: `KIND ADDR:PORT/PROTO -> [BACKENDS] FLAGS`.
    fn render(frontends: &[CompiledFrontend]) -> String {
        let line = |f: &CompiledFrontend| {
            let backends: Vec<String> = f.backends.iter().map(ToString::to_string).collect();
            let frontend = SocketAddr::new(f.address, f.port);
            let mut line = format!("{:?} {frontend}/{}", f.kind, f.protocol);
            line += &format!(" -> [{}]", backends.join(" "));
            if f.local_only {
                line += " local";
            }
            if let Some(timeout) = f.affinity_timeout {
                line += &format!(" affinity={timeout}");
            }
            line + "\n"
        };
        frontends.iter().map(line).collect()
    }

    /// Compiles for `node()` and compares with `expect`, one frontend a line (indentation and
    /// blank lines ignored).
    #[track_caller]
    fn check(svc: &Service, slices: &[EndpointSlice], expect: &str) {
        let frontends = compile_service(svc, slices, &node()).unwrap();
        let lines = expect.lines().map(str::trim).filter(|l| !l.is_empty());
        assert_eq!(
            render(&frontends),
            lines.map(|l| format!("{l}\n")).collect::<String>()
        );
    }

    #[test]
    fn only_own_slices_count_and_duplicates_collapse() {
        let mut other_namespace = slice("web-x http:8080", "10.1.0.9@node-b");
        other_namespace.metadata.namespace = Some("prod".to_owned());
        let slices = [
            slice("web-b http:8080", "10.1.0.2@node-b 10.1.0.1@node-b"),
            // 10.1.0.2 again, as while an endpoint moves between slices.
            slice("web-a http:8080", "10.1.0.2@node-b"),
            slice("api-a service=api http:8080", "10.1.0.8@node-b"),
            other_namespace,
        ];
        let frontends = compile_service(&web(json!({})), &slices, &node()).unwrap();
        let backends = ["10.1.0.1:8080", "10.1.0.2:8080"];
        let expect = CompiledFrontend {
            address: "10.96.0.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            kind: FrontendKind::ClusterIp,
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
            affinity_timeout: None,
            local_only: false,
            service: "default/web:http".to_owned(),
        };
        assert_eq!(frontends, [expect]);
    }

    #[test]
    fn ports_match_by_name_and_named_target_ports_resolve_per_endpoint() {
        let svc = web(json!({"ports": [
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}));
        let slices = [
            slice("web-a http:8080", "10.1.0.1@node-b"),
            slice("web-b http:9090", "10.1.0.2@node-b"),
            // `debug` is no port of the service; `dns` over TCP is not the UDP port `dns`.
            slice("web-c dns:5353/UDP debug:6060 dns:5454", "10.1.0.3@node-b"),
        ];
        check(
            &svc,
            &slices,
            "
            ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080 10.1.0.2:9090]
            ClusterIp 10.96.0.10:53/UDP -> [10.1.0.3:5353]
        ",
        );
    }

    #[test]
    fn unnamed_single_port_is_labelled_by_number() {
        let svc = web(json!({"ports": [{"port": 80}]}));
        let slices = [slice("web-a 8080", "10.1.0.1@node-b")];
        let frontends = compile_service(&svc, &slices, &node()).unwrap();
        assert_eq!(
            render(&frontends),
            "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080]\n"
        );
        assert_eq!(frontends[0].service, "default/web:80");
    }

    #[test]
    fn readiness_and_terminating_fallback() {
        let cases = [
            // Absent conditions mean ready; not-ready and terminating ones get no new connections.
            (
                "1@n 2@n,!ready 3@n,!ready,serving,terminating",
                "[10.1.0.1:8080]",
            ),
            // No ready endpoint: the serving terminating ones take over (KEP-1669).
            (
                "2@n,!ready 3@n,!ready,serving,terminating 4@n,!ready,!serving,terminating",
                "[10.1.0.3:8080]",
            ),
            // Serving absent defers to ready.
            ("5@n,!ready,terminating", "[]"),
            ("", "[]"),
        ];
        for (endpoints, backends) in cases {
            // Short for 10.1.0.N.
            let endpoints: String = endpoints
                .split_whitespace()
                .map(|e| format!("10.1.0.{e} "))
                .collect();
            let slices = [slice("web-a http:8080", &endpoints)];
            check(
                &web(json!({})),
                &slices,
                &format!("ClusterIp 10.96.0.10:80/TCP -> {backends}"),
            );
        }
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_endpoint_ready() {
        let svc = web(json!({"publishNotReadyAddresses": true}));
        let slices = [slice("web-a http:8080", "10.1.0.1@n 10.1.0.2@n,!ready")];
        check(
            &svc,
            &slices,
            "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080 10.1.0.2:8080]",
        );
    }

    #[test]
    fn traffic_policies() {
        let cases = [
            (
                "externalTrafficPolicy",
                "10.1.0.1@node-a 10.1.0.2@node-b",
                "
                ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080 10.1.0.2:8080]
                NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] local
                NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] local
            ",
            ),
            // No endpoint here: the node refuses rather than forwarding elsewhere.
            (
                "externalTrafficPolicy",
                "10.1.0.2@node-b",
                "
                ClusterIp 10.96.0.10:80/TCP -> [10.1.0.2:8080]
                NodePort 192.168.0.10:30080/TCP -> [] local
                NodePort 192.168.0.11:30080/TCP -> [] local
            ",
            ),
            // A ready endpoint elsewhere does not stop the local set from falling back.
            (
                "externalTrafficPolicy",
                "10.1.0.1@node-a,!ready,serving,terminating 10.1.0.2@node-b",
                "
                ClusterIp 10.96.0.10:80/TCP -> [10.1.0.2:8080]
                NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] local
                NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] local
            ",
            ),
            (
                "internalTrafficPolicy",
                "10.1.0.1@node-a 10.1.0.2@node-b",
                "
                ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080] local
                NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080 10.1.0.2:8080]
                NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080 10.1.0.2:8080]
            ",
            ),
        ];
        for (policy, endpoints, expect) in cases {
            let ports = json!([{"name": "http", "port": 80, "nodePort": 30080}]);
            let svc = web(json!({"type": "NodePort", "ports": ports, policy: "Local"}));
            check(&svc, &[slice("web-a http:8080", endpoints)], expect);
        }
    }

    #[test]
    fn headless_external_name_and_unallocated_services_have_no_frontends() {
        let slices = [slice("web-a http:8080", "10.1.0.1@node-b")];
        for extra in [
            json!({"clusterIP": "None", "clusterIPs": ["None"]}),
            json!({"type": "ExternalName", "externalName": "example.com"}),
            json!({"clusterIP": "", "externalIPs": ["203.0.113.7"]}),
        ] {
            check(&web(extra), &slices, "");
        }
    }

    #[test]
    fn dual_stack_pairs_frontends_with_backends_of_their_family() {
        let ports = json!([{"name": "http", "port": 80, "nodePort": 30080}]);
        let ips = json!(["10.96.0.10", "fd00:96::10"]);
        let svc = web(json!({"clusterIPs": ips, "type": "NodePort", "ports": ports}));
        let slices = [
            slice("web-v4 http:8080", "10.1.0.1@node-b"),
            slice("web-v6 IPv6 http:8080", "fd00:1::1@node-b"),
            slice("web-dns FQDN http:8080", "web.example.com@node-b"),
        ];
        check(
            &svc,
            &slices,
            "
            ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080]
            ClusterIp [fd00:96::10]:80/TCP -> [[fd00:1::1]:8080]
            NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080]
            NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080]
            NodePort [fd00::10]:30080/TCP -> [[fd00:1::1]:8080]
        ",
        );
    }

    #[test]
    fn load_balancer_gets_node_ports_external_ips_and_ingress_ips() {
        let ports = json!([{"name": "http", "port": 80, "nodePort": 30080}]);
        // No IPv6 cluster IP, so no IPv6 frontend: the node address and external IP are skipped.
        let external = json!(["203.0.113.7", "2001:db8::7"]);
        let spec = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": ports,
                          "externalIPs": external, "sessionAffinity": "ClientIP"});
        // A hostname-only ingress and one in Proxy mode are the load balancer's business.
        let ingress = json!([{"ip": "198.51.100.1"}, {"hostname": "lb.example.com"},
                             {"ip": "198.51.100.2", "ipMode": "Proxy"}]);
        let svc = service(spec, json!({"loadBalancer": {"ingress": ingress}}));
        check(
            &svc,
            &[slice("web-a http:8080", "10.1.0.1@node-b")],
            "
            ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080] affinity=10800
            NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] affinity=10800
            NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] affinity=10800
            ExternalIp 203.0.113.7:80/TCP -> [10.1.0.1:8080] affinity=10800
            LoadBalancer 198.51.100.1:80/TCP -> [10.1.0.1:8080] affinity=10800
        ",
        );
    }

    #[test]
    fn explicit_affinity_timeout() {
        let config = json!({"clientIP": {"timeoutSeconds": 60}});
        let svc = web(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": config}));
        check(&svc, &[], "ClusterIp 10.96.0.10:80/TCP -> [] affinity=60");
    }

    #[test]
    fn invalid_services_are_errors_naming_the_field() {
        let ports = |ports: Value| json!({"type": "NodePort", "ports": ports});
        let cases = [
            (
                ports(
                    json!([{"name": "a", "port": 80}, {"name": "b", "port": 90, "protocol": "SCTP"}]),
                ),
                "spec.ports[1].protocol: unsupported protocol `SCTP` (TCP and UDP are supported)",
            ),
            (
                ports(
                    json!([{"name": "a", "port": 80}, {"name": "b", "port": 80, "protocol": "UDP"},
                             {"name": "c", "port": 80}]),
                ),
                "spec.ports[2].port: 80/TCP is already used by spec.ports[0]",
            ),
            (
                ports(json!([{"name": "a", "port": 80, "nodePort": 30080},
                             {"name": "b", "port": 81, "nodePort": 30080}])),
                "spec.ports[1].nodePort: 30080/TCP is already used by spec.ports[0]",
            ),
            (
                json!({"clusterIPs": ["10.96.0.10", "fd00::zz"]}),
                "spec.clusterIPs[1]: invalid value `fd00::zz` (expected an IP address)",
            ),
            (
                json!({"externalTrafficPolicy": "Nearby"}),
                "spec.externalTrafficPolicy: invalid value `Nearby` (expected Cluster or Local)",
            ),
        ];
        for (extra, expect) in cases {
            let err = compile_service(&web(extra), &[], &node()).unwrap_err();
            assert_eq!(err.to_string(), format!("service default/web: {expect}"));
        }
    }

    #[test]
    fn too_many_backends_is_an_error() {
        let address = |i: usize| format!("10.{}.{}.{}@n ", i >> 16, (i >> 8) & 0xff, i & 0xff);
        let endpoints: String = (0..=MAX_BACKENDS).map(address).collect();
        let slices = [slice("web-a http:8080", &endpoints)];
        let err = compile_service(&web(json!({})), &slices, &node()).unwrap_err();
        let expect = "frontend 10.96.0.10:80/TCP has 65536 backends, more than the limit of 65535";
        assert_eq!(err.to_string(), format!("service default/web: {expect}"));
    }
}
