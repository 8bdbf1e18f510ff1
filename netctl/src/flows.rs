//! `netctl flows`: the policy verdicts every node's agent has recorded, through the API
//! server's node proxy (`/api/v1/nodes/<node>/proxy/flows`), merged in time order; with
//! `--follow`, new ones from every node as they are decided.

use anyhow::Context as _;
use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt as _, api::ListParams};
use serde_json::Value;

/// What to show.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pub(crate) namespace: Option<String>,
    pub(crate) pod: Option<String>,
    /// `allowed` or `denied`.
    pub(crate) verdict: Option<String>,
    pub(crate) node: Option<String>,
    pub(crate) last: usize,
    pub(crate) follow: bool,
    pub(crate) json: bool,
}

impl Query {
    fn path(&self, node: &str) -> String {
        let mut params = vec![format!("limit={}", self.last)];
        for (key, value) in [
            ("namespace", &self.namespace),
            ("pod", &self.pod),
            ("verdict", &self.verdict),
        ] {
            if let Some(v) = value {
                params.push(format!("{key}={v}"));
            }
        }
        if self.follow {
            params.push("follow=true".to_owned());
        }
        format!("/api/v1/nodes/{node}/proxy/flows?{}", params.join("&"))
    }
}

/// One flow as a line, in the spirit of `hubble observe`.
pub(crate) fn render(flow: &Value) -> String {
    let text = |k: &str| flow[k].as_str().unwrap_or_default();
    let end = |name: &str, address: &str| {
        flow[name]
            .as_str()
            .map_or_else(|| address.to_owned(), |pod| format!("{pod} ({address})"))
    };
    let (source, destination) = if text("direction") == "ingress" {
        (end("peer", text("source")), end("pod", text("destination")))
    } else {
        (end("pod", text("source")), end("peer", text("destination")))
    };
    let why = match text("reason") {
        "policy" => format!(
            "by {} {}",
            flow["policy"].as_str().unwrap_or("?"),
            flow["rule"].as_str().unwrap_or_default()
        ),
        other => other.to_owned(),
    };
    let time = text("time");
    let clock = time.split('T').nth(1).unwrap_or(time).trim_end_matches('Z');
    format!(
        "{clock} {} {source} -> {destination} {} {} {} {why}",
        text("node"),
        text("protocol"),
        text("direction"),
        text("verdict").to_uppercase(),
    )
}

fn print(flow: &Value, json: bool) {
    if json {
        println!("{flow}");
    } else {
        println!("{}", render(flow));
    }
}

async fn nodes(client: &Client, only: Option<&str>) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .filter(|n| only.is_none_or(|o| o == n))
        .collect();
    if names.is_empty() {
        anyhow::bail!("no node {}", only.unwrap_or("in the cluster"));
    }
    Ok(names)
}

fn request(path: &str) -> anyhow::Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}

/// Prints the newest flows of every node (or follows them).
pub(crate) async fn show(client: &Client, query: &Query) -> anyhow::Result<()> {
    let nodes = nodes(client, query.node.as_deref()).await?;
    if query.follow {
        let streams = nodes.iter().map(|node| {
            let (client, path, node) = (client.clone(), query.path(node), node.clone());
            async move {
                let lines = client
                    .request_stream(request(&path)?)
                    .await
                    .with_context(|| format!("following the flows of node {node}"))?
                    .lines();
                Ok::<_, anyhow::Error>(lines)
            }
        });
        let mut merged = futures::stream::select_all(
            futures::future::try_join_all(streams)
                .await?
                .into_iter()
                .map(Box::pin),
        );
        while let Some(line) = merged.next().await {
            if let Ok(flow) = serde_json::from_str::<Value>(&line?) {
                print(&flow, query.json);
            }
        }
        return Ok(());
    }
    let mut all: Vec<Value> = Vec::new();
    for node in &nodes {
        let text = client
            .request_text(request(&query.path(node))?)
            .await
            .with_context(|| format!("reading the flows of node {node}"))?;
        all.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    // RFC 3339 times of one format sort as text.
    all.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    let skip = all.len().saturating_sub(query.last);
    for flow in &all[skip..] {
        print(flow, query.json);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lines_read_source_to_destination_with_the_reason() {
        let denied = json!({"time": "2026-11-28T06:53:23.123456Z", "node": "node-1", "verdict": "denied",
            "direction": "ingress", "protocol": "TCP", "source": "10.244.0.5:40000",
            "destination": "10.244.1.7:80", "pod": "np/b", "peer": "np/a", "reason": "default-deny"});
        assert_eq!(
            render(&denied),
            "06:53:23.123456 node-1 np/a (10.244.0.5:40000) -> np/b (10.244.1.7:80) TCP ingress DENIED default-deny"
        );
        let allowed = json!({"time": "2026-11-28T06:53:24Z", "node": "node-0", "verdict": "allowed",
            "direction": "egress", "protocol": "UDP", "source": "10.244.0.5:5353",
            "destination": "8.8.8.8:53", "pod": "np/a", "reason": "policy",
            "policy": "np/dns", "rule": "egress rule 0"});
        assert_eq!(
            render(&allowed),
            "06:53:24 node-0 np/a (10.244.0.5:5353) -> 8.8.8.8:53 UDP egress ALLOWED by np/dns egress rule 0"
        );
    }
}
