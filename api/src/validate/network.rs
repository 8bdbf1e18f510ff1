//! Services, Endpoints, EndpointSlices, Ingresses and NetworkPolicies.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::container::{validate_port_num_or_name, validate_protocol};
use super::field::{Errs, IntOrStr, index, join, peek};
use super::meta::{self, NameRule};
use super::names;

/// The longest `sessionAffinityConfig.clientIP.timeoutSeconds` (one day).
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

/// Whether a Service is reachable from outside the cluster (and so has an external traffic
/// policy): LoadBalancer, NodePort, or ClusterIP with external IPs.
pub(crate) fn externally_accessible(spec: &Value) -> bool {
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("");
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    kind == "LoadBalancer" || kind == "NodePort" || (kind == "ClusterIP" && external_ips)
}

/// Whether a Service is headless (`clusterIPs` is exactly `["None"]`, or, before the
/// server fills `clusterIPs`, `clusterIP` is `None`).
fn is_headless(spec: &Value) -> bool {
    match spec.get("clusterIPs").and_then(Value::as_array) {
        Some(ips) if !ips.is_empty() => ips.len() == 1 && ips[0].as_str() == Some("None"),
        _ => spec.get("clusterIP").and_then(Value::as_str) == Some("None"),
    }
}

/// Checks a Service.
pub(crate) fn validate_service(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Dns1035);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.ports", "");
        return;
    };
    let kind = e.str_or_empty(spec, "spec", "type");
    let headless = is_headless(spec);
    let ports = e.objs(spec, "spec", "ports");
    if ports.is_empty() && !headless && kind != "ExternalName" {
        e.required("spec.ports", "");
    }
    match kind {
        "LoadBalancer" | "NodePort" if headless => e.invalid(
            "spec.clusterIPs[0]",
            "None",
            &format!("may not be set to 'None' for {kind} services"),
        ),
        "ExternalName" => validate_external_name(e, spec),
        _ => {}
    }

    let mut port_names = HashSet::new();
    let mut pairs = HashSet::new();
    let mut node_ports = HashSet::new();
    for (ppath, port) in &ports {
        validate_service_port(e, port, ppath, ports.len() > 1, &mut port_names);
        let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("");
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !pairs.insert((protocol, number)) {
            e.duplicate(
                ppath,
                serde_json::json!({"port": number, "protocol": protocol}),
            );
        }
        let node_port = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if node_port != 0 {
            if kind == "ClusterIP" {
                e.forbidden(
                    &join(ppath, "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            }
            if !node_ports.insert((protocol, node_port)) {
                e.duplicate(&join(ppath, "nodePort"), node_port);
            }
        }
    }

    meta::validate_labels(e, spec, "spec", "selector");
    validate_session_affinity(e, spec);
    if kind != "ExternalName" {
        validate_cluster_ips(e, spec);
    }
    for (i, ip) in e.strs(spec, "spec", "externalIPs").into_iter().enumerate() {
        let path = index("spec.externalIPs", i);
        let msgs = names::ip_address(ip);
        for msg in &msgs {
            e.invalid(&path, ip, msg);
        }
        if msgs.is_empty() {
            non_special_ip(e, &path, ip);
        }
    }
    match kind {
        "" => e.required("spec.type", ""),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => e.not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ),
    }
    let ranges = e.strs(spec, "spec", "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        if kind != "LoadBalancer" {
            e.forbidden(
                "spec.LoadBalancerSourceRanges",
                "may only be used when `type` is 'LoadBalancer'",
            );
        }
        for (i, r) in ranges.iter().enumerate() {
            let trimmed = r.trim();
            for msg in names::cidr(trimmed) {
                e.invalid(&index("spec.LoadBalancerSourceRanges", i), trimmed, &msg);
            }
        }
    }
    let allocate = e.bool(spec, "spec", "allocateLoadBalancerNodePorts");
    if allocate.is_some() && kind != "LoadBalancer" {
        e.forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if kind == "LoadBalancer" && allocate.is_none() {
        e.required("allocateLoadBalancerNodePorts", "");
    }
    if let Some(class) = e.str(spec, "spec", "loadBalancerClass") {
        if kind == "LoadBalancer" {
            for msg in names::qualified_name(class) {
                e.invalid("spec.loadBalancerClass", class, &msg);
            }
        } else {
            e.forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            );
        }
    }
    validate_traffic_policies(e, spec, kind);
}

fn validate_external_name(e: &mut Errs, spec: &Value) {
    if !e.strs(spec, "spec", "clusterIPs").is_empty() {
        e.forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        );
    }
    if !e.strs(spec, "spec", "ipFamilies").is_empty() {
        e.forbidden(
            "spec.ipFamilies",
            "may not be set for ExternalName services",
        );
    }
    if spec.get("ipFamilyPolicy").is_some_and(|v| !v.is_null()) {
        e.forbidden(
            "spec.ipFamilyPolicy",
            "may not be set for ExternalName services",
        );
    }
    let external = e.str_or_empty(spec, "spec", "externalName");
    let cname = external.strip_suffix('.').unwrap_or(external);
    if cname.is_empty() {
        e.required("spec.externalName", "");
    } else {
        for msg in names::dns1123_subdomain(cname) {
            e.invalid("spec.externalName", cname, &msg);
        }
    }
}

fn validate_service_port(
    e: &mut Errs,
    port: &Value,
    ppath: &str,
    require_name: bool,
    seen: &mut HashSet<String>,
) {
    let name = e.str_or_empty(port, ppath, "name");
    let name_path = join(ppath, "name");
    if require_name && name.is_empty() {
        e.required(&name_path, "");
    } else if !name.is_empty() {
        for msg in names::dns1123_label(name) {
            e.invalid(&name_path, name, &msg);
        }
        if !seen.insert(name.to_owned()) {
            e.duplicate(&name_path, name);
        }
    }
    let number = e.int(port, ppath, "port").unwrap_or(0);
    for msg in names::port_number(number) {
        e.invalid(&join(ppath, "port"), number, &msg);
    }
    validate_protocol(e, port, ppath);
    validate_port_num_or_name(e, port, ppath, "targetPort");
    if let Some(node_port) = e.int(port, ppath, "nodePort")
        && node_port != 0
    {
        for msg in names::port_number(node_port) {
            e.invalid(&join(ppath, "nodePort"), node_port, &msg);
        }
    }
    if let Some(app) = e.str(port, ppath, "appProtocol") {
        for msg in names::qualified_name(app) {
            e.invalid(&join(ppath, "appProtocol"), app, &msg);
        }
    }
}

fn validate_session_affinity(e: &mut Errs, spec: &Value) {
    let affinity = e.str_or_empty(spec, "spec", "sessionAffinity");
    let config = e.obj(spec, "spec", "sessionAffinityConfig");
    match affinity {
        "" => e.required("spec.sessionAffinity", ""),
        "ClientIP" => {
            let cpath = "spec.sessionAffinityConfig";
            let detail = "when session affinity type is ClientIP";
            let Some(config) = config else {
                e.required(cpath, detail);
                return;
            };
            let Some(client) = e.obj(config, cpath, "clientIP") else {
                e.required("spec.sessionAffinityConfig.clientIP", detail);
                return;
            };
            let tpath = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            match e.int(
                client,
                "spec.sessionAffinityConfig.clientIP",
                "timeoutSeconds",
            ) {
                None => e.required(tpath, detail),
                Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => e.invalid(
                    tpath,
                    t,
                    &format!(
                        "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                    ),
                ),
                Some(_) => {}
            }
        }
        "None" => {
            if config.is_some() {
                e.forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                );
            }
        }
        other => e.not_supported("spec.sessionAffinity", other, &["ClientIP", "None"]),
    }
}

/// `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` (not for ExternalName).
fn validate_cluster_ips(e: &mut Errs, spec: &Value) {
    let cluster_ip = e.str_or_empty(spec, "spec", "clusterIP");
    let ips = e.strs(spec, "spec", "clusterIPs");
    let ips_value = peek(spec, &["clusterIPs"]).unwrap_or(&Value::Null);
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            e.required("spec.clusterIPs", "");
        } else if ips[0] != cluster_ip {
            e.invalid(
                "spec.clusterIPs",
                ips_value,
                "first value must match `clusterIP`",
            );
        }
        // Until the server copies clusterIP into clusterIPs, check the single value here.
        if ips.is_empty() && cluster_ip != "None" {
            for msg in names::ip_address(cluster_ip) {
                e.invalid("spec.clusterIP", cluster_ip, &msg);
            }
        }
    } else if !ips.is_empty() {
        e.invalid(
            "spec.clusterIPs",
            ips_value,
            "must be empty when `clusterIP` is not specified",
        );
    }
    let families = e.strs(spec, "spec", "ipFamilies");
    let mut seen = HashSet::new();
    for (i, family) in families.iter().enumerate() {
        let path = index("spec.ipFamilies", i);
        if *family != "IPv4" && *family != "IPv6" {
            e.not_supported(&path, *family, &["IPv4", "IPv6"]);
        }
        if !seen.insert(*family) {
            e.duplicate(&path, *family);
        }
    }
    if let Some(policy) = e.str(spec, "spec", "ipFamilyPolicy")
        && !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        e.not_supported(
            "spec.ipFamilyPolicy",
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
    }
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if *ip == "None" {
            if i == 0 {
                if ips.len() > 1 {
                    bad = true;
                    e.invalid(
                        "spec.clusterIPs",
                        ips_value,
                        "'None' must be the first and only value",
                    );
                }
                continue;
            }
            bad = true;
            e.invalid(
                &index("spec.clusterIPs", i),
                *ip,
                "'None' must be the first and only value",
            );
            continue;
        }
        let msgs = names::ip_address(ip);
        bad |= !msgs.is_empty();
        for msg in msgs {
            e.invalid(&index("spec.clusterIPs", i), *ip, &msg);
        }
    }
    if ips.len() > 2 {
        e.invalid("spec.clusterIPs", ips_value, "may only hold up to 2 values");
    }
    if bad {
        return;
    }
    if ips.len() == 2 {
        let v6 = |s: &str| s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6());
        if v6(ips[0]) == v6(ips[1]) {
            e.invalid(
                "spec.clusterIPs",
                ips_value,
                "may specify no more than one IP for each IP family",
            );
        }
    }
    if !is_headless(spec) {
        for (i, (ip, family)) in ips.iter().zip(&families).enumerate() {
            let is_v6 = ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6());
            if *family == "IPv4" && is_v6 {
                e.invalid(
                    &index("spec.clusterIPs", i),
                    *ip,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                );
            }
            if *family == "IPv6" && !is_v6 {
                e.invalid(
                    &index("spec.clusterIPs", i),
                    *ip,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
}

fn validate_traffic_policies(e: &mut Errs, spec: &Value, kind: &str) {
    let etp = e.str_or_empty(spec, "spec", "externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            e.invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            );
        }
    } else if etp.is_empty() {
        e.required("spec.externalTrafficPolicy", "");
    } else if etp != "Cluster" && etp != "Local" {
        e.not_supported("spec.externalTrafficPolicy", etp, &["Cluster", "Local"]);
    }
    let needs_health_check = kind == "LoadBalancer" && etp == "Local";
    let hc = e.int(spec, "spec", "healthCheckNodePort").unwrap_or(0);
    if !needs_health_check && hc != 0 {
        e.invalid(
            "spec.healthCheckNodePort",
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        );
    }
    if needs_health_check && hc != 0 {
        for msg in names::port_number(hc) {
            e.invalid("spec.healthCheckNodePort", hc, &msg);
        }
    }
    match e.str(spec, "spec", "internalTrafficPolicy") {
        None => {
            if matches!(kind, "NodePort" | "LoadBalancer" | "ClusterIP") {
                e.required("spec.internalTrafficPolicy", "");
            }
        }
        Some("Cluster" | "Local") => {}
        Some(other) => e.not_supported("spec.internalTrafficPolicy", other, &["Cluster", "Local"]),
    }
    if let Some(td) = e.str(spec, "spec", "trafficDistribution")
        && td != "PreferClose"
    {
        e.not_supported("spec.trafficDistribution", td, &["PreferClose"]);
    }
}

/// Endpoint addresses may not be unspecified, loopback or link-local.
fn non_special_ip(e: &mut Errs, path: &str, ip: &str) {
    let Some(addr) = names::parse_ip(ip) else {
        e.invalid(path, ip, "must be a valid IP address");
        return;
    };
    if addr.is_unspecified() {
        e.invalid(path, ip, &format!("may not be unspecified ({ip})"));
    }
    if addr.is_loopback() {
        e.invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        );
    }
    let link_local = match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        e.invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        );
    }
    let link_local_multicast = match addr {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => (v6.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        e.invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        );
    }
}

/// Checks a core Endpoints object.
pub(crate) fn validate_endpoints(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    for (spath, subset) in e.objs(obj, "", "subsets") {
        let addrs = e.objs(subset, &spath, "addresses");
        let not_ready = e.objs(subset, &spath, "notReadyAddresses");
        if addrs.is_empty() && not_ready.is_empty() {
            e.required(&spath, "must specify `addresses` or `notReadyAddresses`");
        }
        for (apath, addr) in addrs.iter().chain(&not_ready) {
            let ip = e.str_or_empty(addr, apath, "ip");
            let ip_path = join(apath, "ip");
            for msg in names::ip_address(ip) {
                e.invalid(&ip_path, ip, &msg);
            }
            if let Some(host) = e.str(addr, apath, "hostname")
                && !host.is_empty()
            {
                for msg in names::dns1123_label(host) {
                    e.invalid(&join(apath, "hostname"), host, &msg);
                }
            }
            non_special_ip(e, &ip_path, ip);
        }
        let ports = e.objs(subset, &spath, "ports");
        for (ppath, port) in &ports {
            let name = e.str_or_empty(port, ppath, "name");
            if ports.len() > 1 && name.is_empty() {
                e.required(&join(ppath, "name"), "");
            } else if !name.is_empty() {
                for msg in names::dns1123_label(name) {
                    e.invalid(&join(ppath, "name"), name, &msg);
                }
            }
            let number = e.int(port, ppath, "port").unwrap_or(0);
            for msg in names::port_number(number) {
                e.invalid(&join(ppath, "port"), number, &msg);
            }
            validate_protocol(e, port, ppath);
        }
    }
}

/// Checks an EndpointSlice.
pub(crate) fn validate_endpoint_slice(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let address_type = e.str_or_empty(obj, "", "addressType");
    match address_type {
        "" => e.required("addressType", ""),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => e.not_supported("addressType", other, &["FQDN", "IPv4", "IPv6"]),
    }
    let endpoints = e.objs(obj, "", "endpoints");
    if endpoints.len() > 1000 {
        e.too_many("endpoints", endpoints.len(), 1000);
    }
    for (epath, ep) in &endpoints {
        let addrs = e.strs(ep, epath, "addresses");
        let apath = join(epath, "addresses");
        if addrs.is_empty() {
            e.required(&apath, "must contain at least 1 address");
        } else if addrs.len() > 100 {
            e.too_many(&apath, addrs.len(), 100);
        }
        for (i, addr) in addrs.iter().enumerate() {
            let path = index(&apath, i);
            match address_type {
                "IPv4" => {
                    if !addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()) {
                        e.invalid(&path, *addr, "must be a valid IPv4 address");
                    } else {
                        non_special_ip(e, &path, addr);
                    }
                }
                "IPv6" => {
                    if !addr.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
                        e.invalid(&path, *addr, "must be a valid IPv6 address");
                    } else {
                        non_special_ip(e, &path, addr);
                    }
                }
                "FQDN" => fully_qualified_domain_name(e, &path, addr),
                _ => {}
            }
        }
        if let Some(host) = e.str(ep, epath, "hostname") {
            for msg in names::dns1123_label(host) {
                e.invalid(&join(epath, "hostname"), host, &msg);
            }
        }
        if let Some(node) = e.str(ep, epath, "nodeName") {
            for msg in names::dns1123_subdomain(node) {
                e.invalid(&join(epath, "nodeName"), node, &msg);
            }
        }
    }
    let ports = e.objs(obj, "", "ports");
    if ports.len() > 20000 {
        e.too_many("ports", ports.len(), 20000);
    }
    let mut seen = HashSet::new();
    for (ppath, port) in &ports {
        let name = e.str_or_empty(port, ppath, "name");
        if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                e.invalid(&join(ppath, "name"), name, &msg);
            }
        }
        if !seen.insert(name) {
            e.duplicate(&join(ppath, "name"), name);
        }
        validate_protocol(e, port, ppath);
        if let Some(number) = e.int(port, ppath, "port")
            && !(0..=65535).contains(&number)
        {
            e.invalid(
                &join(ppath, "port"),
                number,
                &names::inclusive_range(0, 65535),
            );
        }
        if let Some(app) = e.str(port, ppath, "appProtocol") {
            for msg in names::qualified_name(app) {
                e.invalid(&join(ppath, "appProtocol"), app, &msg);
            }
        }
    }
}

/// An FQDN endpoint address: a subdomain of at least two labels (a trailing dot allowed).
fn fully_qualified_domain_name(e: &mut Errs, path: &str, name: &str) {
    if name.is_empty() {
        e.required(path, "");
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = names::dns1123_subdomain(name);
    if !msgs.is_empty() {
        e.invalid(path, name, &msgs.join(","));
    } else if !name.contains('.') {
        e.invalid(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        );
    }
}

/// Checks a networking.k8s.io/v1 Ingress.
pub(crate) fn validate_ingress(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.invalid(
            "spec",
            &Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        );
        return;
    };
    let rules = e.objs(spec, "spec", "rules");
    let default_backend = e.obj(spec, "spec", "defaultBackend");
    if rules.is_empty() && default_backend.is_none() {
        e.invalid(
            "spec",
            peek(spec, &["rules"]).unwrap_or(&Value::Null),
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(backend) = default_backend {
        validate_ingress_backend(e, backend, "spec.defaultBackend");
    }
    for (rpath, rule) in &rules {
        if let Some(host) = e.str(rule, rpath, "host")
            && !host.is_empty()
        {
            validate_ingress_host(e, &join(rpath, "host"), host);
        }
        let Some(http) = e.obj(rule, rpath, "http") else {
            continue;
        };
        let hpath = join(rpath, "http");
        let paths = e.objs(http, &hpath, "paths");
        if paths.is_empty() {
            e.required(&join(&hpath, "paths"), "");
        }
        for (ppath, p) in &paths {
            validate_ingress_path(e, p, ppath);
        }
    }
    for (tpath, tls) in e.objs(spec, "spec", "tls") {
        for (i, host) in e.strs(tls, &tpath, "hosts").into_iter().enumerate() {
            validate_ingress_host(e, &index(&join(&tpath, "hosts"), i), host);
        }
    }
    if let Some(class) = e.str(spec, "spec", "ingressClassName") {
        for msg in names::dns1123_subdomain(class) {
            e.invalid("spec.ingressClassName", class, &msg);
        }
    }
}

fn validate_ingress_host(e: &mut Errs, path: &str, host: &str) {
    let msgs = if host.starts_with('*') {
        names::wildcard_dns1123_subdomain(host)
    } else {
        names::dns1123_subdomain(host)
    };
    for msg in msgs {
        e.invalid(path, host, &msg);
    }
    if names::parse_ip(host).is_some() {
        e.invalid(path, host, "must be a DNS name, not an IP address");
    }
}

fn validate_ingress_path(e: &mut Errs, p: &Value, ppath: &str) {
    let path_value = e.str_or_empty(p, ppath, "path");
    let path_path = join(ppath, "path");
    match e.str(p, ppath, "pathType") {
        None => {
            e.required(&join(ppath, "pathType"), "pathType must be specified");
            return;
        }
        Some("Exact" | "Prefix") => {
            if !path_value.starts_with('/') {
                e.invalid(&path_path, path_value, "must be an absolute path");
            }
            if !path_value.is_empty() {
                for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                    if path_value.contains(bad) {
                        e.invalid(&path_path, path_value, &format!("must not contain '{bad}'"));
                    }
                }
                for bad in ["/..", "/."] {
                    if path_value.ends_with(bad) {
                        e.invalid(&path_path, path_value, &format!("cannot end with '{bad}'"));
                    }
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !path_value.is_empty() && !path_value.starts_with('/') {
                e.invalid(&path_path, path_value, "must be an absolute path");
            }
        }
        Some(other) => e.not_supported(
            &join(ppath, "pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        ),
    }
    match e.obj(p, ppath, "backend") {
        Some(backend) => validate_ingress_backend(e, backend, &join(ppath, "backend")),
        None => e.invalid(
            &join(ppath, "backend"),
            "",
            "resource or service backend is required",
        ),
    }
}

fn validate_ingress_backend(e: &mut Errs, backend: &Value, bpath: &str) {
    let resource = e.obj(backend, bpath, "resource");
    let service = e.obj(backend, bpath, "service");
    match (resource, service) {
        (Some(_), Some(_)) => e.invalid(bpath, "", "cannot set both resource and service backends"),
        (Some(r), None) => {
            let rpath = join(bpath, "resource");
            for f in ["kind", "name"] {
                if e.str_or_empty(r, &rpath, f).is_empty() {
                    e.required(&join(&rpath, f), "");
                }
            }
        }
        (None, Some(s)) => {
            let spath = join(bpath, "service");
            let name = e.str_or_empty(s, &spath, "name");
            if name.is_empty() {
                e.required(&join(&spath, "name"), "");
            } else {
                for msg in names::dns1035_label(name) {
                    e.invalid(&join(&spath, "name"), name, &msg);
                }
            }
            let port = e.obj(s, &spath, "port");
            let port_path = join(&spath, "port");
            let port_name = port.map_or("", |p| e.str_or_empty(p, &port_path, "name"));
            let port_number = port
                .and_then(|p| e.int(p, &port_path, "number"))
                .unwrap_or(0);
            match (!port_name.is_empty(), port_number != 0) {
                (true, true) => e.invalid(bpath, "", "cannot set both port name & port number"),
                (true, false) => {
                    for msg in names::port_name(port_name) {
                        e.invalid(&join(&port_path, "name"), port_name, &msg);
                    }
                }
                (false, true) => {
                    for msg in names::port_number(port_number) {
                        e.invalid(&join(&port_path, "number"), port_number, &msg);
                    }
                }
                (false, false) => e.required(bpath, "port name or number is required"),
            }
        }
        (None, None) => e.invalid(bpath, "", "resource or service backend is required"),
    }
}

/// Checks a NetworkPolicy.
pub(crate) fn validate_network_policy(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        return;
    };
    meta::validate_label_selector(e, spec, "spec", "podSelector");
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (rpath, rule) in e.objs(spec, "spec", direction) {
            for (ppath, port) in e.objs(rule, &rpath, "ports") {
                validate_network_policy_port(e, port, &ppath);
            }
            for (ppath, peer) in e.objs(rule, &rpath, peers) {
                validate_network_policy_peer(e, peer, &ppath);
            }
        }
    }
    let types_value = peek(spec, &["policyTypes"]).unwrap_or(&Value::Null);
    let types = e.strs(spec, "spec", "policyTypes");
    if types.len() > 2 {
        e.invalid(
            "spec.policyTypes",
            types_value,
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if *t != "Ingress" && *t != "Egress" {
            e.not_supported(&index("spec.policyTypes", i), *t, &["Ingress", "Egress"]);
        }
    }
}

fn validate_network_policy_port(e: &mut Errs, port: &Value, ppath: &str) {
    if let Some(protocol) = e.str(port, ppath, "protocol")
        && !matches!(protocol, "TCP" | "UDP" | "SCTP")
    {
        e.not_supported(&join(ppath, "protocol"), protocol, &["TCP", "UDP", "SCTP"]);
    }
    let end_port = e.int(port, ppath, "endPort");
    let end_path = join(ppath, "endPort");
    match e.int_or_str(port, ppath, "port") {
        Some(IntOrStr::Int(p)) => {
            for msg in names::port_number(p) {
                e.invalid(&join(ppath, "port"), p, &msg);
            }
            if let Some(end) = end_port {
                if end < p {
                    e.invalid(&end_path, p, "must be greater than or equal to `port`");
                }
                for msg in names::port_number(end) {
                    e.invalid(&end_path, end, &msg);
                }
            }
        }
        Some(IntOrStr::Str(name)) => {
            if let Some(end) = end_port {
                e.invalid(
                    &end_path,
                    end,
                    "may not be specified when `port` is non-numeric",
                );
            }
            for msg in names::port_name(name) {
                e.invalid(&join(ppath, "port"), name, &msg);
            }
        }
        None => {
            if let Some(end) = end_port {
                e.invalid(
                    &end_path,
                    end,
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

fn validate_network_policy_peer(e: &mut Errs, peer: &Value, ppath: &str) {
    let mut count = 0;
    for sel in ["podSelector", "namespaceSelector"] {
        if e.obj(peer, ppath, sel).is_some() {
            count += 1;
            meta::validate_label_selector(e, peer, ppath, sel);
        }
    }
    let ip_block = e.obj(peer, ppath, "ipBlock");
    if let Some(block) = ip_block {
        count += 1;
        validate_ip_block(e, block, &join(ppath, "ipBlock"));
    }
    if count == 0 {
        e.required(ppath, "must specify a peer");
    } else if count > 1 && ip_block.is_some() {
        e.forbidden(ppath, "may not specify both ipBlock and another peer");
    }
}

fn validate_ip_block(e: &mut Errs, block: &Value, bpath: &str) {
    let cidr = e.str_or_empty(block, bpath, "cidr");
    let cidr_path = join(bpath, "cidr");
    if cidr.is_empty() {
        e.required(&cidr_path, "");
        return;
    }
    for msg in names::cidr(cidr) {
        e.invalid(&cidr_path, cidr, &msg);
    }
    let Some(net) = names::parse_cidr(cidr) else {
        return;
    };
    for (i, except) in e.strs(block, bpath, "except").into_iter().enumerate() {
        let path = index(&join(bpath, "except"), i);
        for msg in names::cidr(except) {
            e.invalid(&path, except, &msg);
        }
        let Some(ex) = names::parse_cidr(except) else {
            continue;
        };
        if !net.contains(ex.addr) || net.len >= ex.len {
            e.invalid(&path, except, "must be a strict subset of `cidr`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_causes, assert_valid, defaulted};
    use crate::validate::CauseType::{
        Duplicate, Forbidden, Invalid, NotSupported, Required, TooMany,
    };
    use serde_json::{Value, json};

    fn service() -> Value {
        defaulted(
            "",
            "Service",
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                              {"name": "https", "port": 443, "targetPort": 8443}]}}),
        )
    }

    #[test]
    fn only_load_balancers_have_a_class() {
        let mut lb = service();
        lb["spec"]["type"] = json!("LoadBalancer");
        lb["spec"]["loadBalancerClass"] = json!("example.com/lb");
        let lb = defaulted("", "Service", lb);
        assert_valid("", "Service", &lb);
        let mut bad = lb.clone();
        bad["spec"]["loadBalancerClass"] = json!("not a class");
        assert_causes("", "Service", &bad, &[("spec.loadBalancerClass", Invalid)]);
        let mut cluster_ip = service();
        cluster_ip["spec"]["loadBalancerClass"] = json!("example.com/lb");
        assert_causes(
            "",
            "Service",
            &cluster_ip,
            &[("spec.loadBalancerClass", Forbidden)],
        );
    }

    #[test]
    fn a_realistic_service_is_valid() {
        assert_valid("", "Service", &service());
        let mut allocated = service();
        allocated["spec"]["clusterIP"] = json!("10.96.0.10");
        allocated["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
        allocated["spec"]["ipFamilies"] = json!(["IPv4"]);
        assert_valid("", "Service", &allocated);
    }

    #[test]
    fn service_names_are_dns1035() {
        let mut s = service();
        s["metadata"]["name"] = json!("1web");
        assert_causes("", "Service", &s, &[("metadata.name", Invalid)]);
    }

    #[test]
    fn service_ports() {
        let mut s = service();
        s["spec"]["ports"] = json!([]);
        assert_causes("", "Service", &s, &[("spec.ports", Required)]);
        let mut s = service();
        s["spec"]["ports"][1]["name"] = json!("http");
        assert_causes("", "Service", &s, &[("spec.ports[1].name", Duplicate)]);
        let mut s = service();
        s["spec"]["ports"][1]["name"] = json!("");
        assert_causes("", "Service", &s, &[("spec.ports[1].name", Required)]);
        let mut s = service();
        s["spec"]["ports"][0]["port"] = json!(0);
        assert_causes("", "Service", &s, &[("spec.ports[0].port", Invalid)]);
        let mut s = service();
        s["spec"]["ports"][1]["targetPort"] = json!(70000);
        assert_causes("", "Service", &s, &[("spec.ports[1].targetPort", Invalid)]);
        let mut s = service();
        s["spec"]["ports"][1]["port"] = json!(80);
        assert_causes("", "Service", &s, &[("spec.ports[1]", Duplicate)]);
        let mut s = service();
        s["spec"]["ports"][0]["nodePort"] = json!(30080);
        assert_causes("", "Service", &s, &[("spec.ports[0].nodePort", Forbidden)]);
    }

    #[test]
    fn service_type_and_cluster_ip() {
        let mut s = service();
        s["spec"]["type"] = json!("Internal");
        assert_causes("", "Service", &s, &[("spec.type", NotSupported)]);
        let mut s = service();
        s["spec"]["clusterIP"] = json!("10.96.0.300");
        assert_causes(
            "",
            "Service",
            &s,
            &[("spec.clusterIP", Invalid), ("spec.clusterIPs", Required)],
        );
        let headless = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
        );
        assert_valid("", "Service", &headless);
        let mut s = service();
        s["spec"]["sessionAffinity"] = json!("Sticky");
        assert_causes("", "Service", &s, &[("spec.sessionAffinity", NotSupported)]);
        let mut s = service();
        s["spec"]["externalTrafficPolicy"] = json!("Local");
        assert_causes(
            "",
            "Service",
            &s,
            &[("spec.externalTrafficPolicy", Invalid)],
        );
    }

    #[test]
    fn external_name_services() {
        let s = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "db.example.com."}}),
        );
        assert_valid("", "Service", &s);
        let s = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName"}}),
        );
        assert_causes("", "Service", &s, &[("spec.externalName", Required)]);
        let s = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "Bad_Host"}}),
        );
        assert_causes("", "Service", &s, &[("spec.externalName", Invalid)]);
    }

    #[test]
    fn load_balancers() {
        let s = defaulted(
            "",
            "Service",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}],
                "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
        );
        assert_valid("", "Service", &s);
        let mut bad = s.clone();
        bad["spec"]["loadBalancerSourceRanges"] = json!(["10.0.0.1/8"]);
        assert_causes(
            "",
            "Service",
            &bad,
            &[("spec.LoadBalancerSourceRanges[0]", Invalid)],
        );
    }

    fn ingress() -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {"ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [{"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}}]}})
    }

    #[test]
    fn ingresses() {
        assert_valid("networking.k8s.io", "Ingress", &ingress());
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]
            .as_object_mut()
            .expect("path")
            .remove("pathType");
        assert_causes(
            "networking.k8s.io",
            "Ingress",
            &i,
            &[("spec.rules[0].http.paths[0].pathType", Required)],
        );
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][1]["path"] = json!("api");
        assert_causes(
            "networking.k8s.io",
            "Ingress",
            &i,
            &[("spec.rules[0].http.paths[1].path", Invalid)],
        );
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = json!({});
        assert_causes(
            "networking.k8s.io",
            "Ingress",
            &i,
            &[("spec.rules[0].http.paths[0].backend", Required)],
        );
        let mut i = ingress();
        i["spec"]["rules"][0]["host"] = json!("10.0.0.1");
        assert_causes(
            "networking.k8s.io",
            "Ingress",
            &i,
            &[("spec.rules[0].host", Invalid)],
        );
        let mut i = ingress();
        i["spec"]["rules"] = json!([]);
        assert_causes("networking.k8s.io", "Ingress", &i, &[("spec", Invalid)]);
    }

    fn network_policy() -> Value {
        defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"metadata": {"name": "db-access"}, "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                      {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                             "ports": [{"port": 5432}]}],
                "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP", "endPort": 54}]}]}}),
        )
    }

    #[test]
    fn network_policies() {
        assert_valid("networking.k8s.io", "NetworkPolicy", &network_policy());
        let mut n = network_policy();
        n["spec"]["ingress"][0]["from"][1]["ipBlock"]["except"] = json!(["192.168.0.0/16"]);
        assert_causes(
            "networking.k8s.io",
            "NetworkPolicy",
            &n,
            &[("spec.ingress[0].from[1].ipBlock.except[0]", Invalid)],
        );
        let mut n = network_policy();
        n["spec"]["ingress"][0]["from"][0] = json!({});
        assert_causes(
            "networking.k8s.io",
            "NetworkPolicy",
            &n,
            &[("spec.ingress[0].from[0]", Required)],
        );
        let mut n = network_policy();
        n["spec"]["policyTypes"] = json!(["Ingress", "Sideways"]);
        assert_causes(
            "networking.k8s.io",
            "NetworkPolicy",
            &n,
            &[("spec.policyTypes[1]", NotSupported)],
        );
        let mut n = network_policy();
        n["spec"]["ingress"][0]["ports"][0]["protocol"] = json!("ICMP");
        assert_causes(
            "networking.k8s.io",
            "NetworkPolicy",
            &n,
            &[("spec.ingress[0].ports[0].protocol", NotSupported)],
        );
    }

    #[test]
    fn endpoint_slices() {
        let slice = defaulted(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"metadata": {"name": "web-abc12"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "nodeName": "node-1"}],
                "ports": [{"name": "http", "port": 8080}]}),
        );
        assert_valid("discovery.k8s.io", "EndpointSlice", &slice);
        let mut s = slice.clone();
        s["endpoints"][0]["addresses"] = json!(["fd00::1"]);
        assert_causes(
            "discovery.k8s.io",
            "EndpointSlice",
            &s,
            &[("endpoints[0].addresses[0]", Invalid)],
        );
        let mut s = slice.clone();
        s["addressType"] = json!("IPX");
        assert_causes(
            "discovery.k8s.io",
            "EndpointSlice",
            &s,
            &[("addressType", NotSupported)],
        );
        let mut s = slice.clone();
        s["endpoints"][0]["addresses"] = json!([]);
        assert_causes(
            "discovery.k8s.io",
            "EndpointSlice",
            &s,
            &[("endpoints[0].addresses", Required)],
        );
        let mut s = slice;
        let many: Vec<String> = (0..101)
            .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
            .collect();
        s["endpoints"][0]["addresses"] = json!(many);
        assert_causes(
            "discovery.k8s.io",
            "EndpointSlice",
            &s,
            &[("endpoints[0].addresses", TooMany)],
        );
    }

    #[test]
    fn endpoints() {
        let ep = defaulted(
            "",
            "Endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 80}]}]}),
        );
        assert_valid("", "Endpoints", &ep);
        let mut bad = ep;
        bad["subsets"][0]["addresses"][0]["ip"] = json!("127.0.0.1");
        assert_causes(
            "",
            "Endpoints",
            &bad,
            &[("subsets[0].addresses[0].ip", Invalid)],
        );
    }
}
