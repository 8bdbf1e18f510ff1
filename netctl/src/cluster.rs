//! `netctl cluster up|down|status`: local clusters on this machine (see `strait-cluster`).

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use strait_cluster::{Binaries, Record, Request, Store};

/// Brings a cluster up and prints how to use it.
pub(crate) fn up(
    name: &str,
    nodes: usize,
    store: Store,
    bin_dir: Option<PathBuf>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("find netctl's own directory")?
            .parent()
            .context("netctl's directory")?
            .to_owned(),
    };
    let started = strait_cluster::up(&Request {
        name: name.to_owned(),
        nodes,
        store,
        binaries: Binaries::in_dir(&bin_dir),
        timeout,
    })?;
    let plan = &started.record.plan;
    println!(
        "cluster {} is up: {} node(s) Ready in {:.1} s, API {}",
        plan.name,
        plan.nodes.len(),
        started.ready_after.as_secs_f64(),
        plan.server()
    );
    println!("kubeconfig: {}", plan.kubeconfig().display());
    println!();
    println!("  export KUBECONFIG={}", plan.kubeconfig().display());
    println!("  kubectl get nodes -o wide");
    println!();
    println!(
        "images on every node: {} (busybox); remove the cluster with `netctl cluster down --name {}`",
        strait_cluster::plan::DEMO_IMAGE,
        plan.name
    );
    Ok(())
}

/// Removes a cluster.
pub(crate) fn down(name: &str) -> anyhow::Result<()> {
    let record = strait_cluster::down(name)?;
    println!(
        "cluster {} removed ({} node(s), {} process(es))",
        record.plan.name,
        record.plan.nodes.len(),
        record.processes.len()
    );
    Ok(())
}

/// Prints every cluster (or one): its processes and its nodes as the API sees them.
pub(crate) fn status(name: Option<&str>) -> anyhow::Result<()> {
    let records: Vec<Record> = strait_cluster::state::list()?
        .into_iter()
        .filter(|r| name.is_none_or(|n| r.plan.name == n))
        .collect();
    if records.is_empty() {
        match name {
            Some(name) => anyhow::bail!("there is no cluster {name:?}"),
            None => println!("no local clusters (start one with `netctl cluster up`)"),
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    for record in &records {
        let plan = &record.plan;
        println!(
            "cluster {}  store {:?}  API {}  created {}",
            plan.name,
            plan.store,
            plan.server(),
            record.created
        );
        println!(
            "  {:<10} {:<8} {:<8} {:<8} LOG",
            "PROCESS", "NODE", "PID", "STATE"
        );
        for status in strait_cluster::processes(record) {
            let p = &status.process;
            println!(
                "  {:<10} {:<8} {:<8} {:<8} {}",
                p.role,
                p.node.as_deref().unwrap_or("-"),
                p.pid,
                if status.running { "running" } else { "exited" },
                p.log.display()
            );
        }
        let nodes = runtime.block_on(async {
            let client = strait_cluster::client(plan).await?;
            let api: Api<Node> = Api::all(client);
            let listed =
                tokio::time::timeout(Duration::from_secs(5), api.list(&Default::default()))
                    .await
                    .context("the API did not answer within 5 s")??;
            anyhow::Ok(listed.items)
        });
        match nodes {
            Ok(nodes) => {
                println!(
                    "  {:<10} {:<8} {:<16} {:<18} AGENT",
                    "NODE", "READY", "ADDRESS", "POD CIDR"
                );
                for node in nodes {
                    let status = node.status.clone().unwrap_or_default();
                    let address = status
                        .addresses
                        .unwrap_or_default()
                        .into_iter()
                        .find(|a| a.type_ == "InternalIP")
                        .map(|a| a.address)
                        .unwrap_or_default();
                    println!(
                        "  {:<10} {:<8} {:<16} {:<18} {}",
                        node.metadata.name.clone().unwrap_or_default(),
                        if strait_cluster::is_ready(&node) {
                            "True"
                        } else {
                            "False"
                        },
                        address,
                        node.spec
                            .clone()
                            .and_then(|s| s.pod_cidr)
                            .unwrap_or_default(),
                        // The agent's own version (its build, which an upgrade changes).
                        node.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(strait_host::agent::VERSION_ANNOTATION))
                            .cloned()
                            .or_else(|| status.node_info.map(|i| i.kubelet_version))
                            .unwrap_or_default()
                    );
                }
            }
            Err(error) => println!("  nodes: the API cannot be read: {error:#}"),
        }
    }
    Ok(())
}
