//! `netctl policy`: apply NetworkPolicies and wait until every node enforces them, list them
//! with what they select, and explain a verdict from the API objects.
//!
//! Everything is computed with `strait_policy`, the compiler the agents use, so `explain`
//! says what the dataplane does, rule and all.

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ListParams, PostParams},
};
use serde_json::Value;
use strait_policy::{
    Cluster, Compiled, Endpoint, Identities, Labels, NamedPort, PROGRAMMED_ANNOTATION, PodInfo,
    Protocol, compile, explain as explain_verdict, parse, programmed_digest,
};

/// A client from `--kubeconfig`, else `KUBECONFIG` or `~/.kube/config`.
pub(crate) async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The documents of a manifest file (`-`: standard input), YAML or JSON, `List`s unpacked.
fn documents(file: &Path) -> anyhow::Result<Vec<Value>> {
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{} document {}: not YAML or JSON", file.display(), i + 1))?;
        match value["kind"].as_str() {
            _ if value.is_null() => {}
            Some("List" | "NetworkPolicyList") => {
                out.extend(value["items"].as_array().cloned().unwrap_or_default());
            }
            _ => out.push(value),
        }
    }
    Ok(out)
}

fn pod_info(pod: &Pod) -> PodInfo {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    PodInfo {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone(),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|_| !host_network)
            .and_then(|ip| ip.parse().ok()),
        ports: spec
            .into_iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone()?,
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect(),
    }
}

/// The cluster's pods, namespaces and policies, as the compiler takes them.
struct Snapshot {
    namespaces: BTreeMap<String, Labels>,
    pods: Vec<PodInfo>,
    policies: Vec<NetworkPolicy>,
}

impl Snapshot {
    async fn read(client: &Client) -> anyhow::Result<Self> {
        let lp = ListParams::default();
        let namespaces = Api::<Namespace>::all(client.clone()).list(&lp).await?;
        let pods = Api::<Pod>::all(client.clone()).list(&lp).await?;
        let policies = Api::<NetworkPolicy>::all(client.clone()).list(&lp).await?;
        Ok(Self {
            namespaces: namespaces
                .items
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect(),
            pods: pods.items.iter().map(pod_info).collect(),
            policies: policies.items,
        })
    }

    fn compile(&self, extra: &[strait_policy::Policy]) -> Compiled {
        let mut parsed: Vec<_> = self.policies.iter().filter_map(|p| parse(p).ok()).collect();
        parsed.extend(extra.iter().cloned());
        let cluster = Cluster {
            namespaces: &self.namespaces,
            pods: &self.pods,
            policies: &parsed,
        };
        compile(&cluster, &mut Identities::default(), |_| true)
    }
}

/// `netctl policy apply -f FILE…`: validate every policy (nothing is applied if one is
/// wrong), apply them, then wait until every node's maps hold the new set.
pub(crate) async fn apply(
    client: &Client,
    files: &[PathBuf],
    namespace: &str,
    force: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        for (i, doc) in documents(file)?.into_iter().enumerate() {
            let at = format!("{} document {}", file.display(), i + 1);
            if doc["kind"] != "NetworkPolicy" {
                problems.push(format!(
                    "{at}: is a {}, not a NetworkPolicy",
                    doc["kind"].as_str().unwrap_or("document without a kind")
                ));
                continue;
            }
            let mut policy: NetworkPolicy = match serde_json::from_value(doc) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if policy.metadata.namespace.is_none() {
                policy.metadata.namespace = Some(namespace.to_owned());
            }
            match parse(&policy) {
                Ok(parsed) => policies.push((policy, parsed)),
                Err(invalid) => problems.push(format!("{at}: {invalid}")),
            }
        }
    }
    if problems.is_empty() && !force {
        // A named port that no pod has is almost always a typo: refuse it unless forced.
        let snapshot = Snapshot::read(client).await?;
        let parsed: Vec<_> = policies.iter().map(|(_, p)| p.clone()).collect();
        let before = snapshot.compile(&[]).warnings;
        for warning in snapshot.compile(&parsed).warnings {
            if !before.contains(&warning) {
                problems.push(format!("{warning} (use --force to apply anyway)"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("nothing was applied:\n  {}", problems.join("\n  "));
    }
    for (policy, _) in &policies {
        let ns = policy.namespace().unwrap_or_default();
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
        let name = policy.name_any();
        let verb = match api.get_opt(&name).await? {
            Some(existing) => {
                let mut replacement = policy.clone();
                replacement.metadata.resource_version = existing.resource_version();
                api.replace(&name, &PostParams::default(), &replacement)
                    .await
                    .with_context(|| format!("replacing networkpolicy {ns}/{name}"))?;
                "configured"
            }
            None => {
                api.create(&PostParams::default(), policy)
                    .await
                    .with_context(|| format!("creating networkpolicy {ns}/{name}"))?;
                "created"
            }
        };
        println!("networkpolicy.networking.k8s.io/{name} {verb}");
    }
    wait_programmed(client, timeout).await
}

/// Waits until every Ready node's maps hold the cluster's current policy set; prints each.
async fn wait_programmed(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let all = Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let want = programmed_digest(all.items.iter());
    let nodes: Api<Node> = Api::all(client.clone());
    let mut done: BTreeMap<String, Duration> = BTreeMap::new();
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready: Vec<&Node> = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect();
        for node in &ready {
            let have = node.annotations().get(PROGRAMMED_ANNOTATION);
            if have == Some(&want) {
                done.entry(node.name_any())
                    .or_insert_with(|| started.elapsed());
            }
        }
        let waiting: Vec<String> = ready
            .iter()
            .map(|n| n.name_any())
            .filter(|n| !done.contains_key(n))
            .collect();
        if waiting.is_empty() || started.elapsed() > timeout {
            println!("{:<24} {:<12} AFTER", "NODE", "PROGRAMMED");
            for (node, after) in &done {
                println!("{node:<24} {:<12} {:.1}s", "yes", after.as_secs_f64());
            }
            for node in &waiting {
                println!("{node:<24} {:<12} -", "no");
            }
            if !waiting.is_empty() {
                bail!(
                    "{} node(s) did not program the policies within {timeout:?}: {}",
                    waiting.len(),
                    waiting.join(", ")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `netctl policy list`: every policy with the pods it selects and its rule counts.
pub(crate) async fn list(client: &Client) -> anyhow::Result<()> {
    let snapshot = Snapshot::read(client).await?;
    println!(
        "{:<16} {:<24} {:<8} {:<16} {:<16}",
        "NAMESPACE", "NAME", "PODS", "INGRESS", "EGRESS"
    );
    for policy in &snapshot.policies {
        let ns = policy.namespace().unwrap_or_default();
        let (pods, ingress, egress) = match parse(policy) {
            Ok(p) => {
                let selected = snapshot
                    .pods
                    .iter()
                    .filter(|pod| pod.namespace == ns && p.selector.matches(&pod.labels))
                    .count();
                let rules = |r: Option<&[strait_policy::model::Rule]>| match r {
                    None => "-".to_owned(),
                    Some([]) => "deny all".to_owned(),
                    Some(rules) => format!("{} rule(s)", rules.len()),
                };
                (
                    selected.to_string(),
                    rules(p.ingress.as_deref()),
                    rules(p.egress.as_deref()),
                )
            }
            Err(e) => ("?".to_owned(), format!("invalid: {e}"), String::new()),
        };
        println!(
            "{ns:<16} {:<24} {pods:<8} {ingress:<16} {egress:<16}",
            policy.name_any()
        );
    }
    Ok(())
}

/// A `--port` value: `80`, `80/TCP`, `53/udp`.
pub(crate) fn parse_port(text: &str) -> anyhow::Result<(u16, Protocol)> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("--port {text}: the port must be 1-65535"))?;
    let protocol = Protocol::parse(&protocol.to_uppercase())
        .with_context(|| format!("--port {text}: the protocol must be TCP, UDP or SCTP"))?;
    Ok((port, protocol))
}

/// `netctl policy explain --from NS/POD --to NS/POD --port 80/TCP`.
pub(crate) async fn explain(
    client: &Client,
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
) -> anyhow::Result<bool> {
    let snapshot = Snapshot::read(client).await?;
    let find = |key: &str| -> anyhow::Result<std::net::IpAddr> {
        let pod = snapshot
            .pods
            .iter()
            .find(|p| p.key() == key)
            .with_context(|| format!("pod {key} not found (give NAMESPACE/NAME)"))?;
        pod.ip
            .with_context(|| format!("pod {key} has no address (not running, or host network)"))
    };
    let (from_ip, to_ip) = (find(from)?, find(to)?);
    let compiled = snapshot.compile(&[]);
    let verdict = explain_verdict(
        &compiled,
        Endpoint::Pod(from, from_ip),
        Endpoint::Pod(to, to_ip),
        protocol,
        port,
    );
    println!(
        "{from} → {to} {port}/{protocol}: {}",
        if verdict.allows() {
            "ALLOWED"
        } else {
            "DENIED"
        }
    );
    let text = verdict.to_string();
    let (egress, ingress) = text.split_once("; ").unwrap_or((&text, ""));
    println!("  at {from}: {egress}");
    println!("  at {to}: {ingress}");
    // Whether the nodes' maps hold the policies this verdict was computed from.
    let want = programmed_digest(snapshot.policies.iter());
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let states: Vec<String> = nodes
        .items
        .iter()
        .map(|n| {
            let state = match n.annotations().get(PROGRAMMED_ANNOTATION) {
                Some(have) if *have == want => "agrees",
                Some(_) => "still programming another set",
                None => "reports nothing",
            };
            format!("{} {state}", n.name_any())
        })
        .collect();
    println!("  nodes: {}", states.join(", "));
    Ok(verdict.allows())
}
