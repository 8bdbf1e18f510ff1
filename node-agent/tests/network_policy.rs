//! Cluster tier: NetworkPolicies applied with kubectl, enforced by real agents on two nodes,
//! probed with real connections from inside pods (`kubectl exec … wget`).
//!
//! Namespace `np` holds pods a (node-0), b (node-1) and c (node-0), each serving HTTP on 80
//! and 81. Every node reports the policy set its maps hold in the Node annotation
//! `policy.strait.dev/programmed`, which the test waits for before probing.

use std::{collections::BTreeSet, path::Path};

use strait_tests::{
    Cluster,
    cluster::{BUSYBOX, Binaries},
};

const PODS: [(&str, &str); 3] = [("a", "node-0"), ("b", "node-1"), ("c", "node-0")];

fn pod(name: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{name}", "namespace": "np", "labels": {{"pod": "{name}"}}}},
  "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 1, "containers": [{{
    "name": "web", "image": "{BUSYBOX}", "imagePullPolicy": "Never",
    "command": ["sh", "-c", "mkdir -p /www && echo {name} > /www/index.html && (httpd -p 81 -h /www) && exec httpd -f -p 80 -h /www"],
    "ports": [{{"name": "serve-80", "containerPort": 80}}, {{"name": "serve-81", "containerPort": 81}}],
    "readinessProbe": {{"tcpSocket": {{"port": 80}}, "periodSeconds": 1}}
  }}]}}}}"#
    )
}

struct Probe<'a> {
    cluster: &'a Cluster,
    ips: Vec<(String, String)>,
}

impl Probe<'_> {
    fn ip(&self, pod: &str) -> &str {
        &self.ips.iter().find(|(p, _)| p == pod).expect("a pod").1
    }

    /// Whether `from` reaches `to` on `port` (a fresh connection; denied ones time out).
    fn connects(&self, from: &str, to: &str, port: u16) -> bool {
        // busybox nc: the test image's wget crashes without a resolver configuration.
        let script = format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} {port} | tail -n 1",
            self.ip(to)
        );
        let out = self.cluster.control.kubectl(
            "1.33",
            &["exec", "-n", "np", from, "--", "sh", "-c", &script],
        );
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == to
    }

    /// Every (from, to) pair that connects on `port`.
    fn table(&self, port: u16) -> BTreeSet<(String, String)> {
        let mut allowed = BTreeSet::new();
        for (from, _) in PODS {
            for (to, _) in PODS {
                if from != to && self.connects(from, to, port) {
                    allowed.insert((from.to_owned(), to.to_owned()));
                }
            }
        }
        allowed
    }
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn kubectl_applied_policies_are_enforced_on_every_node() {
    let bins = Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")));
    let (cluster, _images) = Cluster::start_with_busybox(&bins, 2);
    cluster.kubectl(&["create", "namespace", "np"]);
    for (name, node) in PODS {
        cluster.apply(&pod(name, node));
    }
    cluster.kubectl(&[
        "wait",
        "-n",
        "np",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout=60s",
    ]);
    let ips = PODS
        .iter()
        .map(|(name, _)| {
            let ip = cluster.kubectl(&[
                "get",
                "pod",
                "-n",
                "np",
                name,
                "-o",
                "jsonpath={.status.podIP}",
            ]);
            ((*name).to_owned(), ip)
        })
        .collect();
    let probe = Probe {
        cluster: &cluster,
        ips,
    };
    let everyone = pairs(&[
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "b"),
    ]);
    let digest = cluster.wait_policies_programmed("");
    assert_eq!(probe.table(80), everyone, "no policy: everything connects");

    // Deny all ingress to b.
    cluster.apply(
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "b-ingress", "namespace": "np"},
  "spec": {"podSelector": {"matchLabels": {"pod": "b"}}}}"#,
    );
    let digest = cluster.wait_policies_programmed(&digest);
    assert_eq!(
        probe.table(80),
        pairs(&[("a", "c"), ("b", "a"), ("b", "c"), ("c", "a")]),
        "nothing reaches b; b still reaches the others\n{}",
        cluster.logs()
    );

    // Allow a (on node-0) into b (on node-1) on the named port serve-80 only.
    cluster.apply(
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "b-ingress", "namespace": "np"},
  "spec": {"podSelector": {"matchLabels": {"pod": "b"}},
           "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}], "ports": [{"port": "serve-80"}]}]}}"#,
    );
    let digest = cluster.wait_policies_programmed(&digest);
    assert!(probe.connects("a", "b", 80));
    assert!(!probe.connects("a", "b", 81));
    assert!(!probe.connects("c", "b", 80));

    // Egress from a (same node as c): only to b.
    cluster.apply(
        r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
  "metadata": {"name": "a-egress", "namespace": "np"},
  "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
           "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}}"#,
    );
    let digest = cluster.wait_policies_programmed(&digest);
    assert!(probe.connects("a", "b", 80));
    assert!(
        !probe.connects("a", "c", 80),
        "a's egress to c is denied on the same node"
    );
    assert!(
        probe.connects("c", "a", 80),
        "c reaches a: a's ingress is not isolated"
    );

    // Deleting the policies opens everything again.
    cluster.kubectl(&["delete", "networkpolicy", "-n", "np", "--all"]);
    cluster.wait_policies_programmed(&digest);
    assert_eq!(probe.table(80), everyone);
}
