//! ADD, DEL and CHECK: the kernel and IPAM work of one invocation.
//!
//! Topology after ADD (routed, no bridge, as in Cilium and Calico):
//!
//! ```text
//!  pod netns                                 node netns
//!  eth0 10.244.1.5/32                        lxc<hash>  (proxy_arp=1, no address)
//!   169.254.1.1 dev eth0 scope link           10.244.1.5/32 dev lxc<hash> scope link
//!   default via 169.254.1.1 dev eth0 onlink
//!   neigh 169.254.1.1 lladdr <lxc mac> PERMANENT
//! ```

use std::{fs::File, net::IpAddr, path::Path};

use sha2::{Digest as _, Sha256};

use crate::{
    Error,
    config::{CniEnv, NetConf},
    ipam::{AllocateRequest, Client},
    netlink::{Netlink, format_mac, in_netns, runtime},
    result::{CniResult, GATEWAY, Wiring, parse_prefix},
};

/// The host-side name: `prefix` and hex digits of SHA-256(container id, NUL, ifname), 15
/// bytes in all (IFNAMSIZ - 1). Stable, so DEL finds what ADD made from the same inputs.
pub fn host_veth_name(prefix: &str, container_id: &str, ifname: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(container_id.as_bytes());
    hasher.update([0]);
    hasher.update(ifname.as_bytes());
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let room = 15usize.saturating_sub(prefix.len());
    format!("{prefix}{}", &hex[..room.min(hex.len())])
}

fn open_netns(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NetnsMissing {
                path: path.to_owned(),
            }
        } else {
            Error::Netns {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn ipam_client(conf: &NetConf) -> Client {
    Client::new(&conf.ipam_socket, conf.ipam_timeout)
}

/// ADD: allocate, wire, report. On failure after the allocation, everything is undone.
pub(crate) fn add(conf: &NetConf, env: &CniEnv) -> Result<CniResult, Error> {
    let netns_path = env.netns.clone().ok_or(Error::MissingEnv("CNI_NETNS"))?;
    let netns = open_netns(&netns_path)?;
    let ns_name = netns_path.display().to_string();
    let rt = runtime()?;
    let node = Netlink::open(&rt, "the node")?;
    let pod = in_netns(&netns, &netns_path, || Netlink::open(&rt, &ns_name))?;

    let host_ifname = host_veth_name(&conf.host_veth_prefix, &env.container_id, &env.ifname);
    // Checked before allocating: a rollback must never remove a live pod's veth or address.
    if node.link(&host_ifname)?.is_some() {
        return Err(Error::InterfaceExists {
            name: host_ifname,
            container_id: env.container_id.clone(),
        });
    }
    let ipam = ipam_client(conf);
    let allocation = ipam.allocate(AllocateRequest {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        pod_namespace: env.args.pod_namespace.clone(),
        pod_name: env.args.pod_name.clone(),
    })?;
    let wired = wire(
        conf,
        env,
        &node,
        &pod,
        &netns,
        &host_ifname,
        allocation.address,
    );
    match wired {
        Ok(mut wiring) => {
            wiring.netns = ns_name;
            Ok(CniResult::new(&conf.cni_version, &wiring))
        }
        Err(error) => {
            let mut undo_failures = Vec::new();
            // Deleting the host end deletes the peer and the host route with it.
            match node.link(&host_ifname) {
                Ok(Some(link)) => {
                    if let Err(e) = node.del_link(&link) {
                        undo_failures.push(e.to_string());
                    }
                }
                Ok(None) => {}
                Err(e) => undo_failures.push(e.to_string()),
            }
            if let Err(e) = ipam.release(&env.container_id, &env.ifname) {
                undo_failures.push(e.to_string());
            }
            if undo_failures.is_empty() {
                Err(error)
            } else {
                Err(Error::UndoFailed {
                    error: Box::new(error),
                    undo: undo_failures.join("; "),
                })
            }
        }
    }
}

fn wire(
    conf: &NetConf,
    env: &CniEnv,
    node: &Netlink,
    pod: &Netlink,
    netns: &File,
    host_ifname: &str,
    address: IpAddr,
) -> Result<Wiring, Error> {
    let IpAddr::V4(address_v4) = address else {
        return Err(Error::InvalidConfig(format!(
            "the IPAM gave IPv6 address {address}; strait-cni wires IPv4 only"
        )));
    };
    node.add_veth(host_ifname, &env.ifname, netns, conf.mtu)?;
    let host = node.existing_link(host_ifname)?;
    let peer = pod.existing_link(&env.ifname)?;

    // Pod side.
    if let Some(lo) = pod.link("lo")? {
        pod.set_up(&lo)?;
    }
    pod.add_address(&peer, address, 32)?;
    pod.set_up(&peer)?;
    pod.add_link_route(&peer, GATEWAY, 32)?;
    pod.add_default_route(&peer, GATEWAY)?;
    // The pod reaches its gateway without waiting for proxy ARP, which answers only when the
    // node has a route to 169.254.1.1 (a node namespace without a default route has none).
    pod.add_permanent_neighbour(&peer, IpAddr::V4(GATEWAY), &host.mac)?;

    // Node side. /proc/sys/net acts in the opener's namespace: the node's, on this thread.
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{host_ifname}/proxy_arp"),
        "1",
    )?;
    // Answer at once rather than after a random delay of up to 0.8 s (neigh.proxy_delay).
    write_sysctl(
        &format!("/proc/sys/net/ipv4/neigh/{host_ifname}/proxy_delay"),
        "0",
    )?;
    node.set_up(&host)?;
    node.add_link_route(&host, address_v4, 32)?;

    Ok(Wiring {
        host_ifname: host.name.clone(),
        host_mac: format_mac(&host.mac),
        pod_ifname: peer.name.clone(),
        pod_mac: format_mac(&peer.mac),
        netns: String::new(),
        address,
    })
}

fn write_sysctl(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Io {
        what: format!("failed to write {value} to {path}"),
        source,
    })
}

/// DEL: remove the veth (if any) and release the address (if any). Everything already gone
/// is success; only an IPAM that does not answer fails, so the runtime retries.
pub(crate) fn del(conf: &NetConf, env: &CniEnv) -> Result<(), Error> {
    let rt = runtime()?;
    let node = Netlink::open(&rt, "the node")?;
    let host_ifname = host_veth_name(&conf.host_veth_prefix, &env.container_id, &env.ifname);
    if let Some(link) = node.link(&host_ifname)? {
        node.del_link(&link)?;
    }
    ipam_client(conf).release(&env.container_id, &env.ifname)?;
    Ok(())
}

/// CHECK: what `prevResult` says exists must exist.
pub(crate) fn check(conf: &NetConf, env: &CniEnv) -> Result<(), Error> {
    let prev = conf
        .prev_result
        .clone()
        .ok_or_else(|| Error::InvalidConfig("CHECK needs `prevResult`".into()))?;
    let prev: CniResult = serde_json::from_value(prev)
        .map_err(|e| Error::InvalidConfig(format!("`prevResult` is not a CNI result: {e}")))?;
    let mismatch = |msg: String| Err(Error::CheckFailed(msg));

    let (pod_index, pod_if) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.sandbox.is_some() && i.name == env.ifname)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "`prevResult` has no sandbox interface named {}",
                env.ifname
            ))
        })?;
    let host_ifname = host_veth_name(&conf.host_veth_prefix, &env.container_id, &env.ifname);
    let addresses: Vec<(IpAddr, u8)> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(pod_index))
        .map(|ip| {
            parse_prefix(&ip.address).ok_or_else(|| {
                Error::InvalidConfig(format!("`prevResult` address `{}` is invalid", ip.address))
            })
        })
        .collect::<Result<_, _>>()?;

    let netns_path = env.netns.clone().ok_or(Error::MissingEnv("CNI_NETNS"))?;
    let netns = open_netns(&netns_path)?;
    let ns_name = netns_path.display().to_string();
    let rt = runtime()?;
    let node = Netlink::open(&rt, "the node")?;
    let pod = in_netns(&netns, &netns_path, || Netlink::open(&rt, &ns_name))?;

    let Some(peer) = pod.link(&env.ifname)? else {
        return mismatch(format!("interface {} is missing in {ns_name}", env.ifname));
    };
    if !pod_if.mac.is_empty() && !pod_if.mac.eq_ignore_ascii_case(&format_mac(&peer.mac)) {
        return mismatch(format!(
            "interface {} in {ns_name} has MAC {}, not {}",
            env.ifname,
            format_mac(&peer.mac),
            pod_if.mac
        ));
    }
    if !peer.up {
        return mismatch(format!("interface {} in {ns_name} is down", env.ifname));
    }
    let present = pod.addresses(&peer)?;
    for (address, len) in &addresses {
        if !present.contains(&(*address, *len)) {
            return mismatch(format!(
                "address {address}/{len} is missing on {} in {ns_name}",
                env.ifname
            ));
        }
    }
    let pod_routes = pod.routes_v4()?;
    for route in &prev.routes {
        let Some((dst, dst_len)) = parse_prefix(&route.dst) else {
            return Err(Error::InvalidConfig(format!(
                "`prevResult` route `{}` is invalid",
                route.dst
            )));
        };
        if dst.is_ipv6() {
            continue;
        }
        let found = pod_routes.iter().any(|r| {
            r.dst == dst
                && r.dst_len == dst_len
                && (route.gw.is_none() || r.gateway == route.gw)
                && r.oif == Some(peer.index)
        });
        if !found {
            let via = route.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return mismatch(format!(
                "route {}{via} dev {} is missing in {ns_name}",
                route.dst, env.ifname
            ));
        }
    }

    let Some(host) = node.link(&host_ifname)? else {
        return mismatch(format!("host interface {host_ifname} is missing"));
    };
    if !host.up {
        return mismatch(format!("host interface {host_ifname} is down"));
    }
    let node_routes = node.routes_v4()?;
    for (address, _) in addresses.iter().filter(|(a, _)| a.is_ipv4()) {
        let found = node_routes
            .iter()
            .any(|r| r.dst == *address && r.dst_len == 32 && r.oif == Some(host.index));
        if !found {
            return mismatch(format!(
                "node route {address}/32 dev {host_ifname} is missing"
            ));
        }
    }

    let (cidr, allocations) = ipam_client(conf).list()?;
    for (address, _) in &addresses {
        let held = allocations.iter().any(|a| {
            a.container_id == env.container_id && a.ifname == env.ifname && a.address == *address
        });
        if !held {
            return mismatch(format!(
                "the IPAM ({cidr}) holds no address {address} for {}/{}",
                env.container_id, env.ifname
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_are_stable() {
        let a = host_veth_name("lxc", "abc", "eth0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("lxc"));
        assert_eq!(a, host_veth_name("lxc", "abc", "eth0"));
        assert_ne!(a, host_veth_name("lxc", "abc", "eth1"));
        assert_ne!(
            a,
            host_veth_name("lxc", "abce", "th0"),
            "the separator keeps pairs apart"
        );
        assert_eq!(host_veth_name("strait1", "abc", "eth0").len(), 15);
    }
}
