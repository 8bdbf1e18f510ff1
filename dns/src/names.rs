//! What a query name means under the cluster domain: the shapes of the Kubernetes DNS
//! specification, parsed without looking at any cluster state. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// A name at or under the cluster domain, lowercased, split into the spec's shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterName {
    /// The cluster domain itself (`cluster.local.`).
    Apex,
    /// `dns-version.<zone>`: the TXT record naming the specification's version.
    DnsVersion,
    /// `svc.<zone>`, `<ns>.svc.<zone>`, `pod.<zone>`, `<ns>.pod.<zone>`: names that exist
    /// because names exist below them; they hold no records (NODATA, not NXDOMAIN).
    Interior,
    /// `<service>.<ns>.svc.<zone>`.
    Service { service: String, namespace: String },
    /// `<hostname>.<service>.<ns>.svc.<zone>`: one endpoint of a headless Service (a
    /// StatefulSet pod through its hostname and subdomain, or an endpoint's dashed address).
    Endpoint {
        hostname: String,
        service: String,
        namespace: String,
    },
    /// `_<port>._<proto>.<service>.<ns>.svc.<zone>`: SRV for a named port.
    Port {
        port: String,
        protocol: String,
        service: String,
        namespace: String,
    },
    /// `<a-b-c-d>.<ns>.pod.<zone>` (or the dashed IPv6 form).
    Pod { ip: IpAddr, namespace: String },
    /// Under the zone, but no shape of the specification: NXDOMAIN.
    Unknown,
}

/// The labels of `name` as lowercase strings, most specific first. `None` when a label is
/// not UTF-8 (such a name cannot be any cluster object's).
fn labels(name: &Name) -> Option<Vec<String>> {
    name.iter()
        .map(|l| std::str::from_utf8(l).ok().map(str::to_ascii_lowercase))
        .collect()
}

/// Parses `name` (any case) relative to `zone` (lowercase, fully qualified). `None` when the
/// name is not at or under the zone.
pub fn parse(name: &Name, zone: &Name) -> Option<ClusterName> {
    if !zone.zone_of(name) {
        return None;
    }
    let Some(all) = labels(name) else {
        return Some(ClusterName::Unknown);
    };
    let relative = &all[..all.len().saturating_sub(usize::from(zone.num_labels()))];
    Some(match relative {
        [] => ClusterName::Apex,
        [one] if one == "dns-version" => ClusterName::DnsVersion,
        [kind] if kind == "svc" || kind == "pod" => ClusterName::Interior,
        [_, kind] if kind == "svc" || kind == "pod" => ClusterName::Interior,
        [service, namespace, svc] if svc == "svc" => ClusterName::Service {
            service: service.clone(),
            namespace: namespace.clone(),
        },
        [port, protocol, service, namespace, svc]
            if svc == "svc" && port.starts_with('_') && protocol.starts_with('_') =>
        {
            ClusterName::Port {
                port: port[1..].to_owned(),
                protocol: protocol[1..].to_owned(),
                service: service.clone(),
                namespace: namespace.clone(),
            }
        }
        [hostname, service, namespace, svc] if svc == "svc" => ClusterName::Endpoint {
            hostname: hostname.clone(),
            service: service.clone(),
            namespace: namespace.clone(),
        },
        [dashed, namespace, pod] if pod == "pod" => match undash(dashed) {
            Some(ip) => ClusterName::Pod {
                ip,
                namespace: namespace.clone(),
            },
            None => ClusterName::Unknown,
        },
        _ => ClusterName::Unknown,
    })
}

/// `10-244-1-2` → 10.244.1.2; `fd00--1` → fd00::1. `None` when it is no address.
pub fn undash(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The dashed form of an address, as pod names and unnamed endpoints use it.
pub fn dash(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The address a reverse name (`d.c.b.a.in-addr.arpa.`, nibbles under `ip6.arpa.`) stands
/// for; `None` for other names and for reverse names of networks rather than hosts.
pub fn reverse(name: &Name) -> Option<IpAddr> {
    let all = labels(name)?;
    let (rest, suffix) = all.split_at(all.len().checked_sub(2)?);
    match suffix {
        [a, b] if a == "in-addr" && b == "arpa" => {
            if rest.len() != 4 {
                return None;
            }
            let mut octets = [0u8; 4];
            for (octet, label) in octets.iter_mut().zip(rest.iter().rev()) {
                *octet = label.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        [a, b] if a == "ip6" && b == "arpa" => {
            if rest.len() != 32 {
                return None;
            }
            let mut value: u128 = 0;
            for label in rest.iter().rev() {
                let nibble = u8::from_str_radix(label, 16)
                    .ok()
                    .filter(|_| label.len() == 1)?;
                value = (value << 4) | u128::from(nibble);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// `labels` joined under `zone` as a fully qualified name; `None` when a label is too long
/// or not a valid label.
pub fn under(labels: &[&str], zone: &Name) -> Option<Name> {
    Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .ok()?
        .append_domain(zone)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::from_ascii("cluster.local.").unwrap()
    }

    fn check(name: &str, want: Option<ClusterName>) {
        let got = parse(&Name::from_ascii(name).unwrap(), &zone());
        assert_eq!(got, want, "{name}");
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn shapes_of_the_specification() {
        check("example.com.", None);
        check("cluster.local.", Some(ClusterName::Apex));
        check("CLUSTER.Local.", Some(ClusterName::Apex));
        check("dns-version.cluster.local.", Some(ClusterName::DnsVersion));
        check("svc.cluster.local.", Some(ClusterName::Interior));
        check("shop.svc.cluster.local.", Some(ClusterName::Interior));
        check("shop.pod.cluster.local.", Some(ClusterName::Interior));
        check(
            "Web.Shop.svc.cluster.local.",
            Some(ClusterName::Service {
                service: s("web"),
                namespace: s("shop"),
            }),
        );
        check(
            "_http._tcp.web.shop.svc.cluster.local.",
            Some(ClusterName::Port {
                port: s("http"),
                protocol: s("tcp"),
                service: s("web"),
                namespace: s("shop"),
            }),
        );
        check(
            "db-0.db.shop.svc.cluster.local.",
            Some(ClusterName::Endpoint {
                hostname: s("db-0"),
                service: s("db"),
                namespace: s("shop"),
            }),
        );
        check(
            "10-244-1-2.shop.pod.cluster.local.",
            Some(ClusterName::Pod {
                ip: "10.244.1.2".parse().unwrap(),
                namespace: s("shop"),
            }),
        );
        check(
            "fd00--1.shop.pod.cluster.local.",
            Some(ClusterName::Pod {
                ip: "fd00::1".parse().unwrap(),
                namespace: s("shop"),
            }),
        );
        check(
            "nope-nope.shop.pod.cluster.local.",
            Some(ClusterName::Unknown),
        );
        check("a.b.c.d.e.svc.cluster.local.", Some(ClusterName::Unknown));
        check("web.shop.cluster.local.", Some(ClusterName::Unknown));
    }

    #[test]
    fn reverse_names() {
        let r = |n: &str| reverse(&Name::from_ascii(n).unwrap());
        assert_eq!(
            r("10.0.96.10.in-addr.arpa."),
            Some("10.96.0.10".parse().unwrap())
        );
        assert_eq!(r("0.96.10.in-addr.arpa."), None);
        assert_eq!(r("300.0.96.10.in-addr.arpa."), None);
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let IpAddr::V6(a) = v6 else { unreachable!() };
        let nibbles: Vec<String> = format!("{:032x}", u128::from(a))
            .chars()
            .rev()
            .map(String::from)
            .collect();
        assert_eq!(r(&format!("{}.ip6.arpa.", nibbles.join("."))), Some(v6));
        assert_eq!(r("example.com."), None);
        assert_eq!(dash("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(undash(&dash(v6)), Some(v6));
    }
}
