//! `netctl get agents`: every node's agent, whether its node is Ready, the version it runs and
//! whether that is the version the cluster wants, the view `kubectl get ds -n kube-system
//! strait-agent` summarises in counts.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Node};
use kube::{Api, Client, ResourceExt as _};
use strait_host::agent::{DAEMON_SET_NAME, DAEMON_SET_NAMESPACE, VERSION_ANNOTATION};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum GetCommand {
    /// Every node's agent: READY, VERSION, UP-TO-DATE, and a summary line.
    Agents {
        /// The kubeconfig (default: KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "KUBECONFIG", conflicts_with = "name")]
        kubeconfig: Option<PathBuf>,
        /// A local cluster (`netctl cluster up --name`), instead of a kubeconfig.
        #[arg(long)]
        name: Option<String>,
    },
}

pub(crate) fn run(command: GetCommand) -> anyhow::Result<()> {
    let GetCommand::Agents { kubeconfig, name } = command;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let client = match name {
            Some(name) => {
                let record = strait_cluster::Record::load(&name)?.with_context(|| {
                    format!("there is no cluster {name:?} (see `netctl cluster status`)")
                })?;
                strait_cluster::client(&record.plan).await?
            }
            None => crate::policy::client(kubeconfig.as_deref()).await?,
        };
        show(&client).await
    })
}

/// One node's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) node: String,
    pub(crate) ready: bool,
    /// The version its agent reports; none if it never did.
    pub(crate) version: Option<String>,
    pub(crate) up_to_date: bool,
}

/// The agents' view: the desired version, where it comes from, and one row per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) desired: Option<String>,
    /// Whether the DaemonSet names the desired version (else it is the newest reported).
    pub(crate) annotated: bool,
    pub(crate) rows: Vec<Row>,
}

/// The view from the agents' DaemonSet (if it exists) and the Nodes, by the rule the control
/// plane counts `updatedNumberScheduled` with. Pure.
pub(crate) fn view(ds: Option<&DaemonSet>, nodes: &[Node]) -> View {
    let reported = |n: &Node| {
        n.annotations()
            .get(VERSION_ANNOTATION)
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let annotated = ds
        .and_then(|d| d.annotations().get(VERSION_ANNOTATION))
        .filter(|v| !v.is_empty());
    let versions: Vec<String> = nodes.iter().filter_map(reported).collect();
    let desired = strait_host::agent::desired_version(
        annotated.map(String::as_str),
        versions.iter().map(String::as_str),
    );
    let mut rows: Vec<Row> = nodes
        .iter()
        .map(|n| {
            let version = reported(n);
            Row {
                node: n.name_any(),
                ready: strait_cluster::is_ready(n),
                up_to_date: version.is_some() && version == desired,
                version,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    View {
        desired,
        annotated: annotated.is_some(),
        rows,
    }
}

/// The table and its summary line. Pure.
pub(crate) fn render(view: &View) -> String {
    let width = view
        .rows
        .iter()
        .map(|r| r.node.len())
        .max()
        .unwrap_or(0)
        .max("NODE".len());
    let mut out = format!(
        "{:<width$}  {:<5}  {:<20}  UP-TO-DATE\n",
        "NODE", "READY", "VERSION"
    );
    for row in &view.rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:<5}  {:<20}  {}",
            row.node,
            if row.ready { "True" } else { "False" },
            row.version.as_deref().unwrap_or("<none>"),
            if row.up_to_date { "yes" } else { "no" },
        );
    }
    let total = view.rows.len();
    let ready = view.rows.iter().filter(|r| r.ready).count();
    let updated = view.rows.iter().filter(|r| r.up_to_date).count();
    let _ = match &view.desired {
        Some(desired) => writeln!(
            out,
            "{total} agent(s): {ready} ready, {updated} up to date with {desired} ({})",
            if view.annotated {
                format!("desired by DaemonSet {DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}")
            } else {
                "the newest any node reports".to_owned()
            }
        ),
        None => writeln!(
            out,
            "{total} agent(s): {ready} ready; no agent reports its version yet"
        ),
    };
    out
}

/// Prints the agents of the cluster `client` talks to.
pub(crate) async fn show(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), DAEMON_SET_NAMESPACE);
    let answer = async {
        let nodes = nodes
            .list(&Default::default())
            .await
            .context("list Nodes")?;
        let ds = sets
            .get_opt(DAEMON_SET_NAME)
            .await
            .with_context(|| format!("read DaemonSet {DAEMON_SET_NAMESPACE}/{DAEMON_SET_NAME}"))?;
        anyhow::Ok((ds, nodes.items))
    };
    let (ds, nodes) = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .context("the API did not answer within 10 s")??;
    print!("{}", render(&view(ds.as_ref(), &nodes)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, ready: bool, version: Option<&str>) -> Node {
        let mut value = json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"Unknown"}}]},
        });
        if let Some(version) = version {
            value["metadata"]["annotations"] = json!({VERSION_ANNOTATION: version});
        }
        serde_json::from_value(value).unwrap()
    }

    fn set(desired: Option<&str>) -> DaemonSet {
        let mut value =
            json!({"metadata": {"name": DAEMON_SET_NAME, "namespace": DAEMON_SET_NAMESPACE}});
        if let Some(desired) = desired {
            value["metadata"]["annotations"] = json!({VERSION_ANNOTATION: desired});
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn rows_compare_each_node_with_the_desired_version() {
        let nodes = [
            node("node-1", true, Some("0.1.0+aaaaaaaaaaaa")),
            node("node-0", true, Some("0.1.0+bbbbbbbbbbbb")),
            node("node-2", false, None),
        ];
        let v = view(Some(&set(Some("0.1.0+bbbbbbbbbbbb"))), &nodes);
        assert!(v.annotated);
        assert_eq!(
            v.rows
                .iter()
                .map(|r| (r.node.as_str(), r.up_to_date))
                .collect::<Vec<_>>(),
            [("node-0", true), ("node-1", false), ("node-2", false)]
        );
        assert_eq!(
            render(&v),
            "NODE    READY  VERSION               UP-TO-DATE\n\
             node-0  True   0.1.0+bbbbbbbbbbbb    yes\n\
             node-1  True   0.1.0+aaaaaaaaaaaa    no\n\
             node-2  False  <none>                no\n\
             3 agent(s): 2 ready, 1 up to date with 0.1.0+bbbbbbbbbbbb (desired by DaemonSet kube-system/strait-agent)\n"
        );
    }

    #[test]
    fn without_a_daemon_set_the_newest_reported_is_desired() {
        let nodes = [
            node("a", true, Some("0.2.0+bbbbbbbbbbbb")),
            node("b", true, Some("0.1.0+aaaaaaaaaaaa")),
        ];
        let v = view(None, &nodes);
        assert!(!v.annotated);
        assert_eq!(v.desired.as_deref(), Some("0.2.0+bbbbbbbbbbbb"));
        assert!(render(&v).ends_with(
            "2 agent(s): 2 ready, 1 up to date with 0.2.0+bbbbbbbbbbbb (the newest any node reports)\n"
        ));
        let nothing = view(None, &[node("a", false, None)]);
        assert!(
            render(&nothing).ends_with("1 agent(s): 0 ready; no agent reports its version yet\n")
        );
    }
}
