//! Rules written the way kube-proxy writes them, for the baselines of `netctl bench services`.
//!
//! iptables mode (pkg/proxy/iptables): `nat` PREROUTING and OUTPUT jump to KUBE-SERVICES, one
//! rule per service address and port (a list walked in order) jumping to KUBE-SVC-*, which picks
//! an endpoint with the statistic module (probability 1/n, 1/(n-1), …) and jumps to KUBE-SEP-*,
//! which DNATs; loaded with iptables-restore. nftables mode (pkg/proxy/nftables): one rule
//! `ip daddr . meta l4proto . th dport vmap @service-ips` into per-service chains that pick an
//! endpoint with `numgen random`. Masquerade marking is kept where kube-proxy has it, so the
//! per-packet work matches; chain names are hashed per service as kube-proxy does (here from
//! the index, which is as stable for a benchmark). NAT chains use priority -100 (`dstnat`,
//! spelled numerically: nft 1.0.6 refuses the name on the output hook).

use std::{fmt::Write as _, net::SocketAddrV4};

/// One service of the benchmark: its address and port, and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BenchService {
    pub(crate) vip: SocketAddrV4,
    pub(crate) endpoints: Vec<SocketAddrV4>,
}

fn svc_chain(index: usize) -> String {
    format!("KUBE-SVC-{index:016X}")
}

fn sep_chain(index: usize, endpoint: usize) -> String {
    format!("KUBE-SEP-{index:012X}{endpoint:04X}")
}

/// The whole `nat` table as `iptables-restore` input.
pub(crate) fn iptables_restore(services: &[BenchService]) -> String {
    let mut chains = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    chains.push_str(":POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
    chains.push_str(":KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n");
    let mut rules = String::new();
    rules.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    rules.push_str(
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    rules.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    rules.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    rules.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    for (index, service) in services.iter().enumerate() {
        let _ = writeln!(chains, ":{} - [0:0]", svc_chain(index));
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport {} -j {}",
            service.vip.ip(),
            service.vip.port(),
            svc_chain(index)
        );
        service_rules(&mut chains, &mut rules, index, service);
    }
    format!("{chains}{rules}COMMIT\n")
}

/// The chains of one service (declared in `chains`, filled in `rules`).
fn service_rules(chains: &mut String, rules: &mut String, index: usize, service: &BenchService) {
    let n = service.endpoints.len();
    for (e, endpoint) in service.endpoints.iter().enumerate() {
        let sep = sep_chain(index, e);
        let _ = writeln!(chains, ":{sep} - [0:0]");
        if e + 1 < n {
            let _ = writeln!(
                rules,
                "-A {} -m statistic --mode random --probability {:.10} -j {sep}",
                svc_chain(index),
                1.0 / (n - e) as f64
            );
        } else {
            let _ = writeln!(rules, "-A {} -j {sep}", svc_chain(index));
        }
        let _ = writeln!(rules, "-A {sep} -s {}/32 -j KUBE-MARK-MASQ", endpoint.ip());
        let _ = writeln!(
            rules,
            "-A {sep} -p tcp -m tcp -j DNAT --to-destination {endpoint}"
        );
    }
}

/// A partial sync as kube-proxy does one for an endpoint change: the service's chains flushed
/// and rewritten, with `--noflush` so the rest of the table stays.
pub(crate) fn iptables_restore_one(index: usize, service: &BenchService) -> String {
    let mut chains = format!("*nat\n:{} - [0:0]\n", svc_chain(index));
    let mut rules = String::new();
    service_rules(&mut chains, &mut rules, index, service);
    format!("{chains}{rules}COMMIT\n")
}

fn nft_service(out: &mut String, index: usize, service: &BenchService) {
    // Endpoint chains first: a verdict map may only name chains that exist.
    for (e, endpoint) in service.endpoints.iter().enumerate() {
        let _ = writeln!(out, "add chain ip kube-proxy endpoint-{index}-{e}");
        let _ = writeln!(
            out,
            "add rule ip kube-proxy endpoint-{index}-{e} ip saddr {} jump mark-for-masquerade",
            endpoint.ip()
        );
        let _ = writeln!(
            out,
            "add rule ip kube-proxy endpoint-{index}-{e} meta l4proto tcp dnat to {endpoint}"
        );
    }
    let targets: Vec<String> = (0..service.endpoints.len())
        .map(|e| format!("{e} : goto endpoint-{index}-{e}"))
        .collect();
    let _ = writeln!(out, "add chain ip kube-proxy service-{index}");
    let _ = writeln!(
        out,
        "add rule ip kube-proxy service-{index} numgen random mod {} vmap {{ {} }}",
        service.endpoints.len(),
        targets.join(", ")
    );
}

/// The `kube-proxy` table as one `nft -f` script: one transaction, as kube-proxy's full sync.
#[cfg(test)]
fn nft_script(services: &[BenchService]) -> String {
    nft_scripts(services, services.len().max(1))
        .into_iter()
        .collect()
}

/// The `kube-proxy` table as `nft -f` scripts of at most `per_transaction` services each, the
/// first creating the table. kube-proxy writes one transaction; the kernel binds every anonymous
/// verdict map by walking the whole transaction, so that grows quadratically and is only
/// practical up to about 10,000 services here.
pub(crate) fn nft_scripts(services: &[BenchService], per_transaction: usize) -> Vec<String> {
    let mut out = String::from("add table ip kube-proxy\n");
    out.push_str("add chain ip kube-proxy mark-for-masquerade\n");
    out.push_str("add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000\n");
    out.push_str(
        "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n",
    );
    out.push_str(
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n",
    );
    out.push_str("add rule ip kube-proxy nat-prerouting ip daddr . meta l4proto . th dport vmap @service-ips\n");
    out.push_str("add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }\n");
    out.push_str(
        "add rule ip kube-proxy nat-output ip daddr . meta l4proto . th dport vmap @service-ips\n",
    );
    let mut scripts = Vec::new();
    for (chunk, group) in services.chunks(per_transaction.max(1)).enumerate() {
        let first = chunk * per_transaction.max(1);
        for (offset, service) in group.iter().enumerate() {
            nft_service(&mut out, first + offset, service);
        }
        for (offset, service) in group.iter().enumerate() {
            let _ = writeln!(
                out,
                "add element ip kube-proxy service-ips {{ {} . tcp . {} : goto service-{} }}",
                service.vip.ip(),
                service.vip.port(),
                first + offset
            );
        }
        scripts.push(std::mem::take(&mut out));
    }
    if scripts.is_empty() {
        scripts.push(out);
    }
    scripts
}

/// An endpoint change in nftables mode: the service's chain flushed and refilled (its endpoint
/// chains added first), in one transaction.
pub(crate) fn nft_script_one(index: usize, service: &BenchService, generation: usize) -> String {
    let mut out = format!("flush chain ip kube-proxy service-{index}\n");
    let mut fresh = String::new();
    nft_service(&mut fresh, index, service);
    // New endpoint chain names per generation, as kube-proxy names them by endpoint.
    out.push_str(&fresh.replace(
        &format!("endpoint-{index}-"),
        &format!("endpoint-{index}-g{generation}-"),
    ));
    out.replace(&format!("add chain ip kube-proxy service-{index}\n"), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(n: usize) -> Vec<BenchService> {
        (0..n)
            .map(|i| BenchService {
                vip: format!("10.96.0.{}:80", i + 1).parse().unwrap(),
                endpoints: vec![
                    "10.1.0.1:8080".parse().unwrap(),
                    "10.1.0.2:8080".parse().unwrap(),
                ],
            })
            .collect()
    }

    #[test]
    fn iptables_rules_have_kube_proxys_shape() {
        let text = iptables_restore(&services(2));
        assert!(text.starts_with("*nat\n") && text.ends_with("COMMIT\n"));
        assert!(text.contains("-A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-0000000000000001\n"));
        assert!(text.contains(
            "-A KUBE-SVC-0000000000000000 -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-0000000000000000\n"
        ));
        assert!(
            text.contains("-A KUBE-SVC-0000000000000000 -j KUBE-SEP-0000000000000001\n"),
            "the last endpoint takes the rest"
        );
        assert!(text.contains(
            "-A KUBE-SEP-0000000000000001 -p tcp -m tcp -j DNAT --to-destination 10.1.0.2:8080\n"
        ));
        let service_rules = text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES"))
            .count();
        assert_eq!(service_rules, 2, "one rule per service in the walked list");
    }

    #[test]
    fn a_partial_sync_touches_one_service() {
        let svc = &services(1)[0];
        let text = iptables_restore_one(0, svc);
        assert!(!text.contains("KUBE-SERVICES"));
        assert_eq!(text.matches("DNAT").count(), 2);
    }

    #[test]
    fn nft_script_uses_the_service_ips_verdict_map() {
        let text = nft_script(&services(2));
        assert!(text.contains("ip daddr . meta l4proto . th dport vmap @service-ips"));
        assert!(text.contains(
            "add element ip kube-proxy service-ips { 10.96.0.2 . tcp . 80 : goto service-1 }"
        ));
        assert!(
            text.contains(
                "numgen random mod 2 vmap { 0 : goto endpoint-0-0, 1 : goto endpoint-0-1 }"
            )
        );
        let split = nft_scripts(&services(3), 2);
        assert_eq!(split.len(), 2, "three services, two per transaction");
        assert!(split[0].starts_with("add table") && !split[1].contains("add table"));
        assert!(split[1].contains("goto service-2 }") && !split[1].contains("goto service-1 }"));
        let lines = |text: &str| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort();
            lines
        };
        assert_eq!(
            lines(&split.concat()),
            lines(&nft_script(&services(3))),
            "the same commands, only split"
        );
        let one = nft_script_one(1, &services(2)[1], 3);
        assert!(one.starts_with("flush chain ip kube-proxy service-1\n"));
        assert!(
            one.contains("goto endpoint-1-g3-0")
                && !one.contains("add chain ip kube-proxy service-1\n")
        );
    }
}
