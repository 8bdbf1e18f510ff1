//! Cluster tier: `netctl policy apply | list | explain` against a real control plane and agent.
//! Bad manifests are refused whole with the fields named; a good one is applied and the
//! command returns once the node enforces it; `explain` names the deciding rule, and the
//! connection behaves as it says.

use std::{path::Path, process::Output};

use strait_tests::{
    Cluster,
    cluster::{BUSYBOX, Binaries},
};

const NETCTL: &str = env!("CARGO_BIN_EXE_netctl");

fn netctl(cluster: &Cluster, args: &[&str]) -> Output {
    let kubeconfig = cluster.control.kubeconfig();
    let mut argv = vec![
        NETCTL,
        "policy",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    argv.extend(args);
    // Clients run inside the control plane's namespace (see MACHINE.md).
    cluster.control.netns().exec(&argv)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn manifest(name: &str, text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix(name)
        .suffix(".yaml")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn pod(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{name}", "namespace": "np", "labels": {{"pod": "{name}"}}}},
  "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{
    "name": "web", "image": "{BUSYBOX}", "imagePullPolicy": "Never",
    "command": ["sh", "-c", "mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 80 -h /www"],
    "ports": [{{"name": "http", "containerPort": 80}}]
  }}]}}}}"#
    )
}

#[test]
fn netctl_applies_validated_policies_and_explains_verdicts() {
    let agent = Path::new(NETCTL).with_file_name("strait-agent");
    let (cluster, _images) = Cluster::start_with_busybox(&Binaries::beside(&agent), 1);
    cluster.kubectl(&["create", "namespace", "np"]);
    cluster.apply(&pod("a"));
    cluster.apply(&pod("b"));
    cluster.kubectl(&[
        "wait",
        "-n",
        "np",
        "--for=condition=Ready",
        "pod",
        "--all",
        "--timeout=60s",
    ]);

    // Every error of every document, and nothing applied.
    let bad = manifest(
        "bad",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: good-one, namespace: np}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: np}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: Like}]}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/40}}]
    ports: [{port: 90, endPort: 80}]
",
    );
    let out = netctl(&cluster, &["apply", "-f", bad.path().to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for field in [
        "nothing was applied",
        "document 2",
        "spec.podSelector",
        "spec.ingress[0].from[0].ipBlock.cidr: Invalid value: \"10.0.0.0/40\"",
        "spec.ingress[0].ports[0].endPort",
    ] {
        assert!(said.contains(field), "missing {field:?} in: {said}");
    }
    assert_eq!(
        cluster.kubectl(&["get", "networkpolicy", "-n", "np", "-o", "name"]),
        ""
    );

    // A named port no pod has is refused (a typo, almost always).
    let typo = manifest(
        "typo",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo, namespace: np}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{ports: [{port: htp}]}]
",
    );
    let out = netctl(&cluster, &["apply", "-f", typo.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no TCP port named \"htp\""),
        "{}",
        text(&out)
    );

    // A good one: applied, and the command returns once the node enforces it.
    let deny = manifest(
        "deny",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: np}
spec: {podSelector: {matchLabels: {pod: b}}}
",
    );
    let out = netctl(&cluster, &["apply", "-f", deny.path().to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("networkpolicy.networking.k8s.io/deny-b created"),
        "{said}"
    );
    assert!(said.contains("node-0") && said.contains("yes"), "{said}");

    let explain = |port: &str| {
        netctl(
            &cluster,
            &["explain", "--from", "np/a", "--to", "np/b", "--port", port],
        )
    };
    let out = explain("80/TCP");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("np/a → np/b 80/TCP: DENIED"), "{said}");
    assert!(said.contains("isolated by np/deny-b"), "{said}");
    assert!(said.contains("nodes: node-0 agrees"), "{said}");
    let b_ip = cluster.kubectl(&[
        "get",
        "pod",
        "-n",
        "np",
        "b",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let get_b = || {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {b_ip} 80 | tail -n 1");
        let out = cluster.control.kubectl(
            "1.33",
            &["exec", "-n", "np", "a", "--", "sh", "-c", &script],
        );
        String::from_utf8_lossy(&out.stdout).trim() == "b"
    };
    assert!(!get_b(), "the dataplane agrees: denied");
    // ... and the node recorded why, which `netctl flows` shows through the API server.
    let flows = |args: &[&str]| {
        let kubeconfig = cluster.control.kubeconfig();
        let mut argv = vec![
            NETCTL,
            "flows",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ];
        argv.extend(args);
        let out = cluster.control.netns().exec(&argv);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let denied = flows(&["--namespace", "np", "--verdict", "denied"]);
    assert!(
        denied.lines().any(|l| l.contains("np/a (")
            && l.contains(&format!("-> np/b ({b_ip}:80)"))
            && l.ends_with("TCP ingress DENIED default-deny")),
        "{denied}"
    );

    // Allow a on the named port: explain names the rule, and the connection goes through.
    let allow = manifest(
        "allow",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: np}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: a}}}]
    ports: [{port: http}]
",
    );
    let out = netctl(&cluster, &["apply", "-f", allow.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deny-b configured"), "{}", text(&out));
    let out = explain("80");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("ALLOWED") && said.contains("allowed by np/deny-b ingress rule 0"),
        "{said}"
    );
    assert!(get_b(), "the dataplane agrees: allowed");
    let allowed = flows(&["--pod", "np/b", "--verdict", "allowed", "--json"]);
    assert!(
        allowed
            .lines()
            .any(|l| l.contains("\"policy\":\"np/deny-b\"")
                && l.contains("\"rule\":\"ingress rule 0\"")
                && l.contains("\"peer\":\"np/a\"")),
        "{allowed}"
    );
    // The node's maps, read from their pins: b's endpoint enforces ingress, a's identity
    // may reach port 80, and b's address has an identity.
    let pins = cluster.nodes[0].pins.path().to_str().unwrap().to_owned();
    let dump = |table: &str| {
        let out = std::process::Command::new(NETCTL)
            .args(["bpf", "dump", table, "--pin-dir", &pins])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let policy = dump("policy");
    assert!(
        policy
            .lines()
            .any(|l| l.contains("ingress") && l.contains("TCP") && l.contains(" 80 ")),
        "{policy}"
    );
    assert!(dump("ipcache").contains(&format!("{b_ip}/32")));
    assert!(dump("endpoints").contains("enforced"));
    let state = cluster.nodes[0].state_dir.to_str().unwrap().to_owned();
    let out = std::process::Command::new(NETCTL)
        .args(["bpf", "dump", "identities", "--state-dir", &state])
        .output()
        .unwrap();
    let identities = text(&out);
    assert!(
        identities.lines().any(|l| l.contains("namespace=np pod=b")),
        "{identities}"
    );

    let out = explain("81/udp");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = netctl(&cluster, &["list"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let row = said
        .lines()
        .find(|l| l.contains("deny-b"))
        .unwrap_or_default();
    assert!(
        row.starts_with("np") && row.contains(" 1 ") && row.contains("1 rule(s)"),
        "{said}"
    );
}
