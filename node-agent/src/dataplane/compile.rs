//! Pure compilation of a Kubernetes Service and its EndpointSlices into the frontends this
//! node's dataplane must hold, with the backends each one sends new connections to.
//!
//! The semantics are kube-proxy's (`pkg/proxy`: `endpointslicecache.go` for slices and
//! deduplication, `topology.go` for readiness and traffic policies, `serviceport.go` and
//! `util.ShouldSkipService` for which services get frontends), so a workload behaves the same on
//! Strait as on a kube-proxy cluster. No IO here: the watch-driven manager feeds API objects in
//! and hands the result to [`super::plan`].

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{
    core::v1::{Service, ServicePort, ServiceSpec},
    discovery::v1::EndpointSlice,
};

use super::plan::{self, Frontend, MAX_BACKENDS, Protocol, ServiceOptions};

/// The label that ties an EndpointSlice to its Service (`discovery.k8s.io/v1`).
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when absent (three hours, the API default).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The largest affinity timeout the API accepts (one day).
const MAX_AFFINITY_TIMEOUT: u32 = 86_400;
// The values the API allows for enum-like fields, the default first.
const SERVICE_TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const POLICIES: &[&str] = &["Cluster", "Local"];
const AFFINITIES: &[&str] = &["None", "ClientIP"];

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

/// Why a service cannot be compiled; each names the service and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A field holds a value the API or the dataplane does not accept.
    #[error("service {service}: {field}: {problem}")]
    Field {
        service: String,
        /// The field's path in the object, as `kubectl explain` spells it.
        field: String,
        problem: String,
    },
    /// A frontend has more backends than the service map has slots for.
    #[error("service {service}: frontend {frontend} has {count} backends, more than {limit}")]
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

/// One endpoint of one slice port, its KEP-1669 conditions defaulted.
#[derive(Clone, Copy)]
struct Endpoint {
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// The endpoints of one slice port, by backend address.
type Endpoints = BTreeMap<SocketAddr, Endpoint>;

/// Compiles `svc` into its frontends on `node`: per port in spec order, the cluster IPs, then
/// the node ports, the external IPs and the load-balancer IPs.
///
/// Headless and ExternalName services have no frontends. Addresses of a family the service has
/// no cluster IP of get none either, as with kube-proxy's per-family proxiers.
pub fn compile_service(
    svc: &Service,
    slices: &[EndpointSlice],
    node: &NodeFacts,
) -> Result<Vec<CompiledFrontend>, CompileError> {
    let ctx = Ctx::new(svc);
    let Some(spec) = &svc.spec else {
        return Ok(Vec::new());
    };
    let service_type = ctx.one_of(&spec.type_, "spec.type", SERVICE_TYPES)?;
    // Headless, or not allocated yet: kube-proxy programs nothing for either.
    let ips = spec.cluster_ips.iter().flatten();
    let first_ip = ips.chain(&spec.cluster_ip).next().map(String::as_str);
    if service_type == "ExternalName" || matches!(first_ip, None | Some("None" | "")) {
        return Ok(Vec::new());
    }
    // `clusterIPs` supersedes `clusterIP` (dual-stack); its first entry equals `clusterIP`.
    let cluster_ips = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ctx.parse_ips(ips, "spec.clusterIPs")?,
        (_, ip) => vec![ctx.parse_ip(ip.as_deref().unwrap_or_default(), "spec.clusterIP")?],
    };

    let exposes_node_ports = service_type != "ClusterIP";
    let node_ips = node.addresses.iter().filter(|_| exposes_node_ports);
    let mut addresses: Vec<_> = node_ips.map(|&ip| (ip, FrontendKind::NodePort)).collect();
    let external_ips = spec.external_ips.as_deref().unwrap_or_default();
    for ip in ctx.parse_ips(external_ips, "spec.externalIPs")? {
        addresses.push((ip, FrontendKind::ExternalIp));
    }
    let is_load_balancer = service_type == "LoadBalancer";
    let status = svc.status.as_ref().filter(|_| is_load_balancer);
    let lb = status.and_then(|s| s.load_balancer.as_ref());
    let ingress = lb.and_then(|lb| lb.ingress.as_ref());
    for (i, ingress) in ingress.into_iter().flatten().enumerate() {
        // With `ipMode: Proxy` (KEP-1860) the load balancer proxies to the node ports itself and
        // in-cluster clients must go through it too; hostname-only ingress has no IP to capture.
        if let (Some(ip), false) = (&ingress.ip, ingress.ip_mode.as_deref() == Some("Proxy")) {
            let ip = ctx.parse_ip(ip, &format!("status.loadBalancer.ingress[{i}].ip"))?;
            addresses.push((ip, FrontendKind::LoadBalancer));
        }
    }
    addresses.retain(|(ip, _)| cluster_ips.iter().any(|c| c.is_ipv6() == ip.is_ipv6()));

    let policy = |value, field| ctx.one_of(value, field, POLICIES).map(|p| p == "Local");
    let external_local = policy(&spec.external_traffic_policy, "spec.externalTrafficPolicy")?;
    let internal_local = policy(&spec.internal_traffic_policy, "spec.internalTrafficPolicy")?;
    let affinity = ctx.one_of(&spec.session_affinity, "spec.sessionAffinity", AFFINITIES)?;
    let affinity_timeout = match affinity {
        "ClientIP" => Some(ctx.affinity_timeout(spec)?),
        _ => None,
    };
    let all_ready = spec.publish_not_ready_addresses == Some(true);
    let endpoints = collect_endpoints(svc, slices, node, all_ready);

    let mut frontends = Vec::new();
    for port in ctx.ports(spec.ports.as_deref().unwrap_or_default())? {
        let service = match port.name {
            "" => format!("{}:{}", ctx.service, port.port),
            name => format!("{}:{name}", ctx.service),
        };
        let endpoints = endpoints.get(&(port.name, port.protocol));
        let cluster = cluster_ips.iter().map(|&ip| (ip, FrontendKind::ClusterIp));
        for (address, kind) in cluster.chain(addresses.iter().copied()) {
            let (number, local_only) = match kind {
                FrontendKind::ClusterIp => (Some(port.port), internal_local),
                // LoadBalancers may opt out of node ports (`allocateLoadBalancerNodePorts`).
                FrontendKind::NodePort => (port.node_port, external_local),
                _ => (Some(port.port), external_local),
            };
            let Some(number) = number else { continue };
            let backends = select_backends(endpoints, address.is_ipv6(), local_only);
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
) -> BTreeMap<(&'a str, Protocol), Endpoints> {
    let owned = |slice: &&EndpointSlice| {
        let meta = &slice.metadata;
        let owner = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        // FQDN slices name hosts, not addresses: there is nothing to NAT to.
        meta.namespace == svc.metadata.namespace
            && owner.is_some_and(|o| Some(o) == svc.metadata.name.as_ref())
            && slice.address_type != "FQDN"
    };
    let mut mine: Vec<&EndpointSlice> = slices.iter().filter(owned).collect();
    // Which copy of a duplicated endpoint wins must not depend on the caller's order.
    mine.sort_by_key(|s| &s.metadata.name);

    let mut by_port = BTreeMap::new();
    for slice in mine {
        let v6 = slice.address_type == "IPv6";
        for port in slice.ports.iter().flatten() {
            // kube-proxy skips ports without a number; other protocols match no service port.
            let number = port.port.and_then(|p| u16::try_from(p).ok());
            let protocol = parse_protocol(port.protocol.as_deref());
            let (Some(number @ 1..), Ok(protocol)) = (number, protocol) else {
                continue;
            };
            let name = port.name.as_deref().unwrap_or_default();
            let set: &mut Endpoints = by_port.entry((name, protocol)).or_default();
            for endpoint in &slice.endpoints {
                // As in kube-proxy, only the first address counts, and an address of the wrong
                // family is skipped rather than failing the whole service.
                let ip: Option<IpAddr> = endpoint.addresses.first().and_then(|a| a.parse().ok());
                let Some(ip) = ip.filter(|ip| ip.is_ipv6() == v6) else {
                    continue;
                };
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                let ready = all_ready || conditions.ready.unwrap_or(true);
                let info = Endpoint {
                    ready,
                    serving: conditions.serving.unwrap_or(ready),
                    terminating: conditions.terminating.unwrap_or(false),
                    local: !node.name.is_empty() && endpoint.node_name.as_ref() == Some(&node.name),
                };
                // An endpoint moving between slices may be in both for a while; like
                // kube-proxy, keep the first copy unless a later one is local.
                let address = SocketAddr::new(ip, number);
                if info.local || !set.contains_key(&address) {
                    set.insert(address, info);
                }
            }
        }
    }
    by_port
}

/// KEP-1669: the ready endpoints; if there are none, the serving ones that are terminating, so
/// connections in a rollout's last moments still find a backend.
fn select_backends(endpoints: Option<&Endpoints>, ipv6: bool, local_only: bool) -> Vec<SocketAddr> {
    let (mut ready, mut terminating) = (Vec::new(), Vec::new());
    for (&address, e) in endpoints.into_iter().flatten() {
        if address.is_ipv6() != ipv6 || (local_only && !e.local) {
            continue;
        }
        if e.ready {
            ready.push(address);
        } else if e.serving && e.terminating {
            terminating.push(address);
        }
    }
    if ready.is_empty() { terminating } else { ready }
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
    fn new(svc: &Service) -> Self {
        let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let service = format!("{namespace}/{name}");
        Self { service }
    }

    fn error(&self, field: &str, problem: String) -> CompileError {
        let (service, field) = (self.service.clone(), field.to_owned());
        CompileError::Field {
            service,
            field,
            problem,
        }
    }

    fn invalid(&self, field: &str, value: &str, expected: &str) -> CompileError {
        let problem = format!("invalid value `{value}` (expected {expected})");
        self.error(field, problem)
    }

    /// `value` if `allowed` lists it, the first of `allowed` if it is absent.
    fn one_of(
        &self,
        value: &Option<String>,
        field: &str,
        allowed: &[&'static str],
    ) -> Result<&'static str, CompileError> {
        let value = value.as_deref().unwrap_or(allowed[0]);
        let found = allowed.iter().find(|&&a| a == value).copied();
        found.ok_or_else(|| self.invalid(field, value, &format!("one of {}", allowed.join(", "))))
    }

    fn parse_ip(&self, value: &str, field: &str) -> Result<IpAddr, CompileError> {
        let ip = value.parse();
        ip.map_err(|_| self.invalid(field, value, "an IP address"))
    }

    fn parse_ips(&self, values: &[String], field: &str) -> Result<Vec<IpAddr>, CompileError> {
        let parse = |(i, v): (usize, &String)| self.parse_ip(v, &format!("{field}[{i}]"));
        values.iter().enumerate().map(parse).collect()
    }

    fn affinity_timeout(&self, spec: &ServiceSpec) -> Result<u32, CompileError> {
        let config = spec.session_affinity_config.as_ref();
        let Some(seconds) = config.and_then(|c| c.client_ip.as_ref()?.timeout_seconds) else {
            return Ok(DEFAULT_AFFINITY_TIMEOUT);
        };
        let field = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
        match u32::try_from(seconds) {
            Ok(seconds @ 1..=MAX_AFFINITY_TIMEOUT) => Ok(seconds),
            _ => Err(self.invalid(field, &seconds.to_string(), "1 to 86400 seconds")),
        }
    }

    fn port_number(&self, value: i32, field: &str) -> Result<u16, CompileError> {
        let number = u16::try_from(value).ok().filter(|&p| p != 0);
        number.ok_or_else(|| self.invalid(field, &value.to_string(), "a port from 1 to 65535"))
    }

    /// Validates the ports: known protocols, numbers in range, no (port, protocol) twice.
    fn ports<'a>(&self, ports: &'a [ServicePort]) -> Result<Vec<Port<'a>>, CompileError> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::with_capacity(ports.len());
        for (i, p) in ports.iter().enumerate() {
            let field = |name: &str| format!("spec.ports[{i}].{name}");
            let protocol = parse_protocol(p.protocol.as_deref()).map_err(|other| {
                let problem = format!("unsupported protocol `{other}` (TCP and UDP are supported)");
                self.error(&field("protocol"), problem)
            })?;
            let port = self.port_number(p.port, &field("port"))?;
            let node_port = match p.node_port {
                None | Some(0) => None,
                Some(n) => Some(self.port_number(n, &field("nodePort"))?),
            };
            // Node ports and service ports are different address spaces: tell them apart.
            let node_claim = node_port.map(|n| (n, "nodePort"));
            for (number, name) in [(port, "port")].into_iter().chain(node_claim) {
                if let Some(first) = seen.insert((name, number, protocol), i) {
                    let used =
                        format!("{number}/{protocol} is already used by spec.ports[{first}]");
                    return Err(self.error(&field(name), used));
                }
            }
            let name = p.name.as_deref().unwrap_or_default();
            out.push(Port {
                name,
                port,
                protocol,
                node_port,
            });
        }
        Ok(out)
    }
}

impl CompiledFrontend {
    /// The frontend as the dataplane's planner takes it.
    pub fn to_spec(&self) -> plan::ServiceSpec {
        plan::ServiceSpec {
            frontend: Frontend {
                address: self.address,
                port: self.port,
                protocol: self.protocol,
            },
            backends: self.backends.clone(),
            options: ServiceOptions {
                external: self.kind != FrontendKind::ClusterIp,
                local_only: self.local_only,
                affinity_timeout: self.affinity_timeout,
            },
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

    /// Service `default/web`: ClusterIP 10.96.0.10, port `http` 80, then the fields of `extra`.
    fn web(extra: Value) -> Service {
        let mut spec = json!({"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]});
        let extra = extra.as_object().unwrap().clone();
        spec.as_object_mut().unwrap().extend(extra);
        let meta = json!({"namespace": "default", "name": "web"});
        serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap()
    }

    /// A slice in namespace `default`, written `NAME [FAMILY] [service=OWNER] PORT...` (IPv4
    /// and `web` by default), a port being `NAME:NUMBER[/PROTOCOL]` or a bare number. Each
    /// endpoint is `ADDRESS@NODE[,CONDITION]...`, a condition `serving` (true) or `!serving`
    /// (false); conditions not written are absent.
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
        let eps: Vec<Value> = endpoints.split_whitespace().map(endpoint).collect();
        let labels = json!({"kubernetes.io/service-name": owner});
        let meta = json!({"namespace": "default", "name": name, "labels": labels});
        let slice =
            json!({"metadata": meta, "addressType": family, "ports": ports, "endpoints": eps});
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
    fn render(frontends: &[CompiledFrontend]) -> Vec<String> {
        let line = |f: &CompiledFrontend| {
            let local = if f.local_only { " local" } else { "" };
            let affinity = f.affinity_timeout.map(|t| format!(" affinity={t}"));
            let affinity = affinity.unwrap_or_default();
            let (kind, frontend) = (f.kind, SocketAddr::new(f.address, f.port));
            let to = format!("{:?}{local}{affinity}", f.backends);
            format!("{kind:?} {frontend}/{} -> {to}", f.protocol)
        };
        frontends.iter().map(line).collect()
    }

    #[track_caller]
    fn check(svc: &Service, slices: &[EndpointSlice], expect: &[&str]) {
        let frontends = compile_service(svc, slices, &node()).unwrap();
        assert_eq!(render(&frontends), expect);
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
        let http = json!({"name": "http", "port": 80, "targetPort": "web"});
        let svc = web(json!({"ports": [http, {"name": "dns", "port": 53, "protocol": "UDP"}]}));
        let slices = [
            slice("web-a http:8080", "10.1.0.1@node-b"),
            slice("web-b http:9090", "10.1.0.2@node-b"),
            // `debug` is no port of the service; `dns` over TCP is not the UDP port `dns`.
            slice("web-c dns:5353/UDP debug:6060 dns:5454", "10.1.0.3@node-b"),
        ];
        let expect = [
            "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080, 10.1.0.2:9090]",
            "ClusterIp 10.96.0.10:53/UDP -> [10.1.0.3:5353]",
        ];
        check(&svc, &slices, &expect);
    }

    #[test]
    fn unnamed_single_port_is_labelled_by_number() {
        let svc = web(json!({"ports": [{"port": 80}]}));
        let slices = [slice("web-a 8080", "10.1.0.1@node-b")];
        let frontends = compile_service(&svc, &slices, &node()).unwrap();
        let expect = ["ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080]"];
        assert_eq!(render(&frontends), expect);
        assert_eq!(frontends[0].service, "default/web:80");
    }

    #[test]
    fn readiness_and_terminating_fallback() {
        #[rustfmt::skip]
        let cases = [
            // Absent conditions mean ready; not-ready and terminating ones get no new connections.
            ("10.1.0.1@n 10.1.0.2@n,!ready 10.1.0.3@n,!ready,serving,terminating",
             "[10.1.0.1:8080]"),
            // No ready endpoint: the serving terminating ones take over (KEP-1669).
            ("10.1.0.3@n,!ready,serving,terminating 10.1.0.4@n,!ready,!serving,terminating",
             "[10.1.0.3:8080]"),
            // Serving absent defers to ready.
            ("10.1.0.5@n,!ready,terminating", "[]"),
            ("", "[]"),
        ];
        for (endpoints, backends) in cases {
            let slices = [slice("web-a http:8080", endpoints)];
            let expect = format!("ClusterIp 10.96.0.10:80/TCP -> {backends}");
            check(&web(json!({})), &slices, &[&expect]);
        }
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_endpoint_ready() {
        let svc = web(json!({"publishNotReadyAddresses": true}));
        let slices = [slice("web-a http:8080", "10.1.0.1@n 10.1.0.2@n,!ready")];
        let expect = ["ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080, 10.1.0.2:8080]"];
        check(&svc, &slices, &expect);
    }

    #[test]
    fn traffic_policies() {
        const ETP: &str = "externalTrafficPolicy";
        #[rustfmt::skip]
        let cases = [
            (ETP, "10.1.0.1@node-a 10.1.0.2@node-b", [
                "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080, 10.1.0.2:8080]",
                "NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] local",
                "NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] local",
            ]),
            // No endpoint here: the node refuses rather than forwarding elsewhere.
            (ETP, "10.1.0.2@node-b", [
                "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.2:8080]",
                "NodePort 192.168.0.10:30080/TCP -> [] local",
                "NodePort 192.168.0.11:30080/TCP -> [] local",
            ]),
            // A ready endpoint elsewhere does not stop the local set from falling back.
            (ETP, "10.1.0.1@node-a,!ready,serving,terminating 10.1.0.2@node-b", [
                "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.2:8080]",
                "NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] local",
                "NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] local",
            ]),
            ("internalTrafficPolicy", "10.1.0.1@node-a 10.1.0.2@node-b", [
                "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080] local",
                "NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080, 10.1.0.2:8080]",
                "NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080, 10.1.0.2:8080]",
            ]),
        ];
        for (policy, endpoints, expect) in cases {
            let ports = json!([{"name": "http", "port": 80, "nodePort": 30080}]);
            let svc = web(json!({"type": "NodePort", "ports": ports, policy: "Local"}));
            check(&svc, &[slice("web-a http:8080", endpoints)], &expect);
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
            check(&web(extra), &slices, &[]);
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
            // FQDN slices hold names, even ones that look like addresses: never backends.
            slice("web-dns FQDN http:8080", "10.1.0.7@node-b"),
        ];
        let expect = [
            "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080]",
            "ClusterIp [fd00:96::10]:80/TCP -> [[fd00:1::1]:8080]",
            "NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080]",
            "NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080]",
            "NodePort [fd00::10]:30080/TCP -> [[fd00:1::1]:8080]",
        ];
        check(&svc, &slices, &expect);
    }

    #[test]
    fn load_balancer_gets_node_ports_external_ips_and_ingress_ips() {
        let ports = json!([{"name": "http", "port": 80, "nodePort": 30080}]);
        // No IPv6 cluster IP, so no IPv6 frontend: the node address and external IP are skipped.
        let external = json!(["203.0.113.7", "2001:db8::7"]);
        let mut svc = web(
            json!({"type": "LoadBalancer", "ports": ports, "externalIPs": external,
                                 "sessionAffinity": "ClientIP"}),
        );
        // A hostname-only ingress and one in Proxy mode are the load balancer's business.
        let ingress = json!([{"ip": "198.51.100.1"}, {"hostname": "lb.example.com"},
                             {"ip": "198.51.100.2", "ipMode": "Proxy"}]);
        let status = json!({"loadBalancer": {"ingress": ingress}});
        svc.status = serde_json::from_value(status).unwrap();
        let expect = [
            "ClusterIp 10.96.0.10:80/TCP -> [10.1.0.1:8080] affinity=10800",
            "NodePort 192.168.0.10:30080/TCP -> [10.1.0.1:8080] affinity=10800",
            "NodePort 192.168.0.11:30080/TCP -> [10.1.0.1:8080] affinity=10800",
            "ExternalIp 203.0.113.7:80/TCP -> [10.1.0.1:8080] affinity=10800",
            "LoadBalancer 198.51.100.1:80/TCP -> [10.1.0.1:8080] affinity=10800",
        ];
        let slices = [slice("web-a http:8080", "10.1.0.1@node-b")];
        check(&svc, &slices, &expect);
    }

    #[test]
    fn explicit_affinity_timeout() {
        let config = json!({"clientIP": {"timeoutSeconds": 60}});
        let svc = web(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": config}));
        let expect = ["ClusterIp 10.96.0.10:80/TCP -> [] affinity=60"];
        check(&svc, &[], &expect);
    }

    #[test]
    fn invalid_services_are_errors_naming_the_field() {
        #[rustfmt::skip]
        let cases = [
            (json!({"ports": [{"name": "a", "port": 80},
                              {"name": "b", "port": 81, "protocol": "SCTP"}]}),
             "spec.ports[1].protocol: unsupported protocol `SCTP` (TCP and UDP are supported)"),
            (json!({"ports": [{"name": "a", "port": 80},
                              {"name": "u", "port": 80, "protocol": "UDP"},
                              {"name": "b", "port": 81}, {"name": "c", "port": 80}]}),
             "spec.ports[3].port: 80/TCP is already used by spec.ports[0]"),
            (json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080},
                                                  {"name": "b", "port": 81, "nodePort": 30080}]}),
             "spec.ports[1].nodePort: 30080/TCP is already used by spec.ports[0]"),
            (json!({"clusterIPs": ["10.96.0.10", "fd00::zz"]}),
             "spec.clusterIPs[1]: invalid value `fd00::zz` (expected an IP address)"),
            (json!({"externalTrafficPolicy": "Nearby"}),
             "spec.externalTrafficPolicy: invalid value `Nearby` (expected one of Cluster, Local)"),
            (json!({"sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
             "spec.sessionAffinityConfig.clientIP.timeoutSeconds: invalid value `0` \
              (expected 1 to 86400 seconds)"),
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
        let expect = "frontend 10.96.0.10:80/TCP has 65536 backends, more than 65535";
        assert_eq!(err.to_string(), format!("service default/web: {expect}"));
    }
}
