//! Proxying `pods/log`, `pods/exec` and `pods/portforward` to the agent of the pod's node, as kube-apiserver does
//! with kubelets: the agent's address and port come from the Node's status (InternalIP,
//! `daemonEndpoints.kubeletEndpoint.Port`), the server presents the node token, log bodies
//! stream through, and an exec upgrade (WebSocket) is answered with the agent's 101 and then
//! spliced byte for byte. The agent's certificate is not verified, as kube-apiserver does not
//! verify kubelets' without `--kubelet-certificate-authority`.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::{error::ApiError, http::Server, request::Target};

/// Headers of a WebSocket upgrade that must reach the agent.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// Serves `pods/log`, `pods/exec` or `pods/portforward` for `target` through the pod's node agent.
pub async fn proxy(
    server: &Server,
    target: &Target,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let subresource = target.subresource.as_deref().unwrap_or_default();
    let name = target.name("get")?;
    let namespace = target.namespace.clone().unwrap_or_default();
    let pod = server.objects.get(target).await?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let container = match pairs.iter().position(|(k, _)| k == "container") {
        Some(i) => pairs.remove(i).1,
        None if subresource == "portforward" => String::new(),
        None => default_container(&pod, name)?,
    };
    let rest: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = rest.join("&");
    let uri = match subresource {
        "log" => format!("/containerLogs/{namespace}/{name}/{container}?{query}"),
        "portforward" => format!("/portForward/{namespace}/{name}?{query}"),
        _ => format!("/exec/{namespace}/{name}/{container}?{query}"),
    };
    forward(server, node_name, method, &uri, headers, upgrade).await
}

/// `nodes/<node>/proxy/<path>`: a GET of `path` on the node's agent (its flow log, its
/// policy maps), as kube-apiserver proxies to kubelets.
pub async fn proxy_node(
    server: &Server,
    node_name: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let uri = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_owned(),
    };
    forward(server, node_name, &Method::GET, &uri, headers, None).await
}

/// Sends `method uri` to the agent of `node_name` with the node token; streams the answer
/// back, or splices the connection after an upgrade.
async fn forward(
    server: &Server,
    node_name: &str,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
) -> Result<Response, ApiError> {
    let node = server
        .objects
        .get(&Target {
            resource: strait_api::registry::find("", "v1", "nodes").expect("nodes are registered"),
            namespace: None,
            name: Some(node_name.to_owned()),
            subresource: None,
        })
        .await?;
    let address = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| unavailable(format!("node {node_name} has no InternalIP")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(10250);
    let token = server
        .pki
        .node_token()
        .map(|t| t.secret)
        .ok_or_else(|| unavailable("the control plane has no node token".to_owned()))?;
    let authority = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let stream = connect(&authority, address).await.map_err(|e| {
        unavailable(format!(
            "failed to reach the agent of node {node_name} at {authority}: {e}"
        ))
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(format!("agent of node {node_name}: {e}")))?;
    tokio::spawn(connection.with_upgrades());
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, &authority)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if upgrade.is_some() {
        for name in UPGRADE_HEADERS {
            for value in headers.get_all(*name) {
                request = request.header(*name, value);
            }
        }
    }
    let request = request
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(format!("agent of node {node_name}: {e}")))?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = upgrade else {
            return Err(ApiError::internal(
                "the agent upgraded a request that asked for none",
            ));
        };
        let agent = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(agent)) = (client.await, agent.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        let mut upgraded = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in response.headers() {
            upgraded = upgraded.header(name, value);
        }
        return upgraded
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

/// The pod's only container, or the error kubectl shows when there are several.
fn default_container(pod: &Value, name: &str) -> Result<String, ApiError> {
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match names.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError {
        code: StatusCode::SERVICE_UNAVAILABLE,
        reason: "ServiceUnavailable",
        message,
        details: None,
    }
}

async fn connect(
    authority: &str,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    // Upgrades need HTTP/1.1. The agent's certificate is not verified (module docs).
    let config = strait_tls::unverified_client_config(&[b"http/1.1"]).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .map_err(|_| "no answer within 5 s".to_owned())?
    .map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}
