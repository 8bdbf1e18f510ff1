//! `cargo xtask demo`: the whole system on a fresh machine, as a newcomer would try it.
//!
//! 1. installs what is missing and builds;
//! 2. `netctl cluster up`: a two-node cluster on the embedded store (node namespaces on an
//!    underlay bridge, a real `strait-agent` and cluster DNS on each);
//! 3. deploys a web app (a Deployment of 3 replicas behind a Service) and a client pod that
//!    calls the Service by its DNS name, showing the answers spread over the replicas;
//! 4. applies a NetworkPolicy with `netctl policy apply` and shows the denial in
//!    `netctl flows`;
//! 5. dumps the service map with `netctl bpf dump services`;
//! 6. leaves the cluster running and prints what to try next, and how to remove it.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::exec::{cargo_build, exec, render, require_root, target_dir};

/// The demo cluster's name (`netctl cluster up --name`).
const CLUSTER: &str = "demo";

/// The app: a namespace, a web Deployment of busybox httpd pods that answer with their own
/// name, its Service, and a client pod.
const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: httpd
        image: strait.local/busybox:1
        command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec:
  containers:
  - {name: client, image: strait.local/busybox:1, command: [sleep, "86400"]}
"#;

/// Only pods labelled `role: frontend` may call the web pods; the client is not one.
const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: http}]
"#;

/// One HTTP request by the Service's short name, from inside the client pod (busybox `nc`;
/// the pod's resolv.conf search path turns `web` into `web.shop.svc.cluster.local`).
const CALL: &str = r#"printf 'GET / HTTP/1.0\r\nHost: web\r\n\r\n' | nc -w 2 web 80 | tail -n 1"#;

pub(crate) fn run() -> anyhow::Result<()> {
    require_root("demo")?;
    crate::setup::run()?;
    cargo_build()?;
    let bin = target_dir().join("debug");
    let netctl = bin.join("netctl");
    let kubectl = kubectl();

    step("a two-node cluster on the embedded store");
    if Path::new("/var/lib/strait/clusters").join(CLUSTER).exists() {
        println!("(a cluster named {CLUSTER} exists from an earlier demo: replacing it)");
        exec(Command::new(&netctl).args(["cluster", "down", "--name", CLUSTER]))?;
    }
    exec(Command::new(&netctl).args(["cluster", "up", "--name", CLUSTER, "--nodes", "2"]))?;
    let kubeconfig = PathBuf::from(format!(
        "/var/lib/strait/clusters/{CLUSTER}/control/admin.kubeconfig"
    ));
    let k = |args: &[&str]| {
        let mut command = Command::new(&kubectl);
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        command
    };
    exec(&mut k(&["get", "nodes", "-o", "wide"]))?;

    step("the web app: a Deployment of 3 replicas, its Service, and a client pod");
    let dir = std::env::temp_dir().join(format!("strait-demo-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let app = dir.join("app.yaml");
    fs::write(&app, APP)?;
    exec(k(&["apply", "-f"]).arg(&app))?;
    exec(&mut k(&[
        "-n",
        "shop",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=120s",
    ]))?;
    exec(&mut k(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=120s",
    ]))?;
    exec(&mut k(&[
        "-n",
        "shop",
        "get",
        "pods,services,endpointslices",
        "-o",
        "wide",
    ]))?;

    step("the client calls http://web/ nine times: DNS, then the eBPF service map");
    // busybox nslookup also asks the other search domains and exits 1 for their NXDOMAIN
    // answers: show what it says rather than judge it by its status.
    let mut lookup = k(&[
        "-n", "shop", "exec", "client", "--", "nslookup", "-type=A", "web",
    ]);
    println!("$ {}", render(&lookup));
    let out = lookup.output().context("run nslookup in the client pod")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..9 {
        let answer = call(&k)?;
        println!("   {answer}");
        *answers.entry(answer).or_default() += 1;
    }
    println!(
        "   → {} replicas answered: {}",
        answers.len(),
        answers
            .iter()
            .map(|(a, n)| format!("{} ×{n}", a.trim_start_matches("hello from ")))
            .collect::<Vec<_>>()
            .join(", ")
    );

    step("a NetworkPolicy: only role=frontend pods may call web; the client is denied");
    let policy = dir.join("policy.yaml");
    fs::write(&policy, POLICY)?;
    exec(
        Command::new(&netctl)
            .arg("policy")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "-n", "shop", "-f"])
            .arg(&policy),
    )?;
    let mut denied = false;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(10) {
        match call(&k) {
            Ok(answer) if !answer.is_empty() => {
                println!("   (still answered: {answer}; the policy is being programmed)");
                thread::sleep(Duration::from_millis(300));
            }
            _ => {
                println!("   the client's call is dropped: no answer");
                denied = true;
                break;
            }
        }
    }
    if !denied {
        bail!("the client still reached web 10 s after the policy was applied");
    }
    exec(
        Command::new(&netctl)
            .arg("flows")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", "shop", "--verdict", "denied", "--last", "5"]),
    )?;

    step("the service map, as node-0's eBPF maps hold it");
    exec(
        Command::new(&netctl)
            .args(["bpf", "dump", "services", "--pin-dir"])
            .arg(format!("/sys/fs/bpf/strait/clusters/{CLUSTER}/node-0")),
    )?;
    let _ = fs::remove_dir_all(&dir);

    let kc = kubeconfig.display();
    println!(
        "\n== The cluster `{CLUSTER}` keeps running. Try next: ==\n\n\
         export KUBECONFIG={kc}\n\
         kubectl -n shop scale deployment/web --replicas=5\n\
         kubectl -n shop exec client -- nslookup web.shop.svc.cluster.local\n\
         {netctl} policy explain --from shop/client --to shop/$(kubectl -n shop get pod -l app=web -o name | head -1 | cut -d/ -f2) --port 8080/TCP\n\
         {netctl} flows --follow\n\
         {netctl} cluster status\n\n\
         Remove it with: {netctl} cluster down --name {CLUSTER}",
        netctl = netctl.display(),
    );
    Ok(())
}

/// The kubectl to use: the 1.33 build the tests use when present, else the one on PATH.
fn kubectl() -> PathBuf {
    let pinned = Path::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
    if pinned.exists() {
        pinned.to_owned()
    } else {
        PathBuf::from("kubectl")
    }
}

fn step(title: &str) {
    println!("\n== {title} ==\n");
}

/// One call from the client pod; the answer's last line (empty if none came).
fn call(k: &impl Fn(&[&str]) -> Command) -> anyhow::Result<String> {
    let mut command = k(&["-n", "shop", "exec", "client", "--", "sh", "-c", CALL]);
    let out = command
        .output()
        .with_context(|| format!("run `{}`", render(&command)))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
