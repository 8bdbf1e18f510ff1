//! The agent's HTTPS endpoint, what the kubelet's port 10250 is: container logs and exec, for
//! the API server to proxy `pods/log` and `pods/exec` to. Every request must carry the node's
//! bearer token (the one in the agent's kubeconfig, which the control plane also holds); the
//! serving certificate is self-signed per node (kube-apiserver does not verify kubelets'
//! certificates unless told a CA either).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{
        Path as UrlPath, RawQuery, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tokio::{io::AsyncWriteExt as _, net::TcpListener, sync::mpsc};
use tracing::{debug, warn};

use super::{flows, logs, pods, spdy, streaming};

/// What the handlers share.
pub struct Endpoint {
    pub token: String,
    pub pods: Store<Pod>,
    pub ctx: Arc<pods::Context>,
    pub flows: Arc<flows::FlowLog>,
}

/// The WebSocket subprotocols of remote command, newest first.
pub const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, endpoint: Arc<Endpoint>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route("/flows", get(flow_log))
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&endpoint),
            require_token,
        ))
        .with_state(Arc::clone(&endpoint));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                debug!(%peer, "TLS handshake failed");
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// `GET /flows?namespace=&pod=&verdict=&limit=&follow=`: the newest records (100 unless
/// `limit`), one JSON object per line, oldest first; with `follow`, then every new record as
/// it is decided. `X-Strait-Flows-Evicted` counts records the bounded log dropped,
/// `X-Strait-Flows-Lost` those the kernel's ring buffer had no room for.
async fn flow_log(State(endpoint): State<Arc<Endpoint>>, RawQuery(query): RawQuery) -> Response {
    let params: BTreeMap<String, String> =
        strait_api::query::pairs(query.as_deref().unwrap_or_default())
            .into_iter()
            .collect();
    let filter = flows::Filter {
        namespace: params.get("namespace").cloned().filter(|s| !s.is_empty()),
        pod: params.get("pod").cloned().filter(|s| !s.is_empty()),
        verdict: params.get("verdict").cloned().filter(|s| !s.is_empty()),
    };
    let limit = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let follow = params
        .get("follow")
        .is_some_and(|v| v == "true" || v == "1");
    let line = |flow: &flows::Flow| {
        let mut text = serde_json::to_string(flow).unwrap_or_default();
        text.push('\n');
        Bytes::from(text)
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let mut live = endpoint.flows.follow();
    let backlog: Vec<Bytes> = endpoint
        .flows
        .recent(&filter, limit)
        .iter()
        .map(|f| line(f))
        .collect();
    let evicted = endpoint.flows.evicted().to_string();
    let body = if follow {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
        tokio::spawn(async move {
            for chunk in backlog {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(flow) if filter.matches(&flow) => {
                        if tx.send(Ok(line(&flow))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
    } else {
        Body::from(backlog.concat())
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header("X-Strait-Flows-Evicted", evicted)
        .header("X-Strait-Flows-Lost", endpoint.flows.lost().to_string())
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A self-signed serving certificate for `names`, and the TLS config around it.
pub fn tls_config(names: Vec<String>) -> Result<rustls::ServerConfig, String> {
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    strait_tls::server_config(
        &cert.cert.pem(),
        &cert.signing_key.serialize_pem(),
        &[b"http/1.1"],
    )
    .map_err(|e| e.to_string())
}

async fn require_token(
    State(endpoint): State<Arc<Endpoint>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if authorized(&endpoint.token, request.headers()) {
        next.run(request).await
    } else {
        status_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".to_owned(),
        )
    }
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant time: how long the comparison takes says nothing about the token.
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn status_error(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error answer: status, reason and message.
type Refusal = (StatusCode, &'static str, String);

/// The pod and the container's log directory, or the error kubectl shows.
fn locate(
    endpoint: &Endpoint,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<(Arc<Pod>, PathBuf), Refusal> {
    let pod = endpoint
        .pods
        .get(&ObjectRef::new(name).within(namespace))
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("pods \"{name}\" not found on this node"),
            )
        })?;
    let spec = pod.spec.as_ref();
    let known = spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == container)
    });
    if !known {
        return Err((
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container {container} is not valid for pod {name}"),
        ));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = endpoint.ctx.pods_dir.join(uid).join("logs").join(container);
    Ok((pod, dir))
}

/// The numbered log files of a container's runs, oldest first.
fn runs(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut runs: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name.strip_suffix(".log")?.parse().ok()?, e.path()))
        })
        .collect();
    runs.sort();
    runs
}

async fn container_logs(
    State(endpoint): State<Arc<Endpoint>>,
    UrlPath((namespace, name, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let (pod, dir) = match locate(&endpoint, &namespace, &name, &container) {
        Ok(found) => found,
        Err((code, reason, message)) => return status_error(code, reason, message),
    };
    let params: BTreeMap<String, String> =
        strait_api::query::pairs(query.as_deref().unwrap_or_default())
            .into_iter()
            .collect();
    let flag = |k: &str| params.get(k).is_some_and(|v| v == "true" || v == "1");
    let previous = flag("previous");
    let all = runs(&dir);
    let chosen = if previous {
        all.len().checked_sub(2).map(|i| all[i].clone())
    } else {
        all.last().cloned()
    };
    let Some((run, path)) = chosen else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{name}\" is waiting to start")
        };
        return status_error(StatusCode::BAD_REQUEST, "BadRequest", message);
    };
    let since = params
        .get("sinceTime")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .or_else(|| {
            let seconds: i64 = params.get("sinceSeconds")?.parse().ok()?;
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(seconds))
                .ok()
        });
    let query = logs::Query {
        tail_lines: params.get("tailLines").and_then(|n| n.parse().ok()),
        timestamps: flag("timestamps"),
        since,
        limit_bytes: params.get("limitBytes").and_then(|n| n.parse().ok()),
    };
    let first = logs::render(&logs::read_all(&path), &query);
    let plain = [(header::CONTENT_TYPE, "text/plain")];
    if !flag("follow") || previous {
        return (plain, first).into_response();
    }
    // Follow: what is there, then what is appended, until this run is over.
    let (_, offset) = logs::read_from(&path, 0);
    let timestamps = query.timestamps;
    let pods = endpoint.pods.clone();
    let key = ObjectRef::new(&name).within(&namespace);
    let uid = pod.metadata.uid.clone();
    let stream = futures::stream::unfold(
        (Some(first), offset, 0u32),
        move |(pending, offset, idle)| {
            let path = path.clone();
            let dir = dir.clone();
            let pods = pods.clone();
            let key = key.clone();
            let uid = uid.clone();
            let container = container.clone();
            async move {
                if let Some(text) = pending {
                    return Some((
                        Ok::<_, std::io::Error>(Bytes::from(text)),
                        (None, offset, 0),
                    ));
                }
                let (text, next) = logs::read_from(&path, offset);
                if !text.is_empty() {
                    let query = logs::Query {
                        timestamps,
                        ..logs::Query::default()
                    };
                    return Some((
                        Ok(Bytes::from(logs::render(&text, &query))),
                        (None, next, 0),
                    ));
                }
                let current = pods.get(&key).filter(|p| p.metadata.uid == uid);
                let running = current.as_ref().is_some_and(|p| running(p, &container));
                let superseded = runs(&dir).last().is_some_and(|(n, _)| *n > run);
                // A run that ended (and was read to the end) ends the stream, after a
                // grace for the shim's last writes.
                if (current.is_none() || superseded || !running) && idle >= 5 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((
                    Ok(Bytes::new()),
                    (None, offset, idle + u32::from(!running || superseded)),
                ))
            }
        },
    );
    (plain, Body::from_stream(stream)).into_response()
}

/// Whether the container is running, by the pod's status.
fn running(pod: &Pod, container: &str) -> bool {
    pod.status
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .any(|s| s.name == container && s.state.as_ref().is_some_and(|st| st.running.is_some()))
}

async fn exec(
    State(endpoint): State<Arc<Endpoint>>,
    UrlPath((namespace, name, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    request: axum::extract::Request,
) -> Response {
    let (pod, _) = match locate(&endpoint, &namespace, &name, &container) {
        Ok(found) => found,
        Err((code, reason, message)) => return status_error(code, reason, message),
    };
    let pairs = strait_api::query::pairs(query.as_deref().unwrap_or_default());
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let flag = |k: &str| {
        pairs
            .iter()
            .any(|(key, v)| key == k && (v == "true" || v == "1"))
    };
    let stdin = flag("stdin");
    let tty = flag("tty");
    if command.is_empty() {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least one command for the container".to_owned(),
        );
    }
    let id = pods::container::runc_id(pod.metadata.uid.as_deref().unwrap_or_default(), &container);
    let ctx = Arc::clone(&endpoint.ctx);
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(_) if streaming::wants_spdy(request.headers()) => {
            let exec = streaming::ExecRequest {
                runc_id: id,
                command,
                stdin,
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty,
                protocol: "",
            };
            return spdy_upgrade(
                request,
                streaming::EXEC_PROTOCOLS.as_slice(),
                move |session, protocol| async move {
                    let exec = streaming::ExecRequest { protocol, ..exec };
                    streaming::exec(session, &ctx, exec).await;
                },
            );
        }
        Err(_) => {
            return status_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "exec needs an upgrade: WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1".to_owned(),
            );
        }
    };
    upgrade
        .protocols(EXEC_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            if let Err(error) = run_exec(socket, &ctx, &id, command, stdin, tty).await {
                warn!(container = %id, %error, "exec ended with an error");
            }
        })
}

/// Answers an `Upgrade: SPDY/3.1` request with 101 and the negotiated protocol, then runs
/// `serve` on the SPDY session once the connection is handed over.
fn spdy_upgrade<F, Fut>(
    request: axum::extract::Request,
    served: &[&'static str],
    serve: F,
) -> Response
where
    F: FnOnce(spdy::Session, &'static str) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let Some(protocol) = streaming::negotiate(request.headers(), served) else {
        return status_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "no protocol in common: this node serves {}",
                served.join(", ")
            ),
        );
    };
    let mut request = request;
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the connection cannot be upgraded".to_owned(),
        );
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(spdy::Session::new(TokioIo::new(upgraded)), protocol).await,
            Err(error) => warn!(%error, "SPDY upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn port_forward(
    State(endpoint): State<Arc<Endpoint>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let Some(pod) = endpoint.pods.get(&ObjectRef::new(&name).within(&namespace)) else {
        return status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found on this node"),
        );
    };
    if !streaming::wants_spdy(request.headers()) {
        // kubectl 1.31+ tries SPDY tunnelled in a WebSocket first; refusing the upgrade makes
        // it fall back to plain SPDY.
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "port-forward is served over SPDY/3.1 (portforward.k8s.io)".to_owned(),
        );
    }
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let netns = (!host_network).then(|| {
        endpoint
            .ctx
            .pods_dir
            .join(pod.metadata.uid.as_deref().unwrap_or_default())
            .join("netns")
    });
    let key = format!("{namespace}/{name}");
    spdy_upgrade(
        request,
        &[streaming::PORT_FORWARD_PROTOCOL],
        move |session, _| async move {
            streaming::port_forward(session, netns, key).await;
        },
    )
}

/// Runs `runc exec` and carries its streams over the channel protocol: every binary message
/// starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize; v5's 255
/// closes a channel), and the status is a `metav1.Status` on channel 3.
async fn run_exec(
    socket: WebSocket,
    ctx: &pods::Context,
    id: &str,
    command: Vec<String>,
    stdin: bool,
    tty: bool,
) -> std::io::Result<()> {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(&ctx.runc.binary);
    cmd.arg("--root").arg(&ctx.runc.root).arg("exec");
    if tty {
        // Without a console socket there is no terminal; the command runs without one.
        debug!(container = %id, "tty requested: running without a terminal");
    }
    cmd.arg(id)
        .args(&command)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ctx.reaper.spawn(&mut cmd)?;
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let pipe = |channel: u8, fd: Option<std::os::fd::OwnedFd>, tx: mpsc::Sender<Message>| async move {
        let Some(fd) = fd else { return };
        let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return;
        };
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            use tokio::io::AsyncReadExt as _;
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&buffer[..n]);
                    if tx.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let out = tokio::spawn(pipe(1, child.stdout.take().map(Into::into), tx.clone()));
    let err = tokio::spawn(pipe(2, child.stderr.take().map(Into::into), tx.clone()));
    let mut input = child
        .stdin
        .take()
        .and_then(|s| tokio::net::unix::pipe::Sender::from_owned_fd(s.into()).ok());
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let Message::Binary(data) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match data.first() {
                Some(0) => {
                    if let Some(stdin) = input.as_mut()
                        && stdin.write_all(&data[1..]).await.is_err()
                    {
                        input = None;
                    }
                }
                // v5: [255, channel] closes that channel; only stdin can be closed by a client.
                Some(255) if data.get(1) == Some(&0) => input = None,
                _ => {}
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        // A normal closure (1000): client-go reads it as the end of every stream, where a
        // close without a status (1005) is an error.
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    });
    let status = child.wait_async().await;
    let _ = out.await;
    let _ = err.await;
    let code = status.code();
    let body = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    let mut frame = vec![3u8];
    frame.extend_from_slice(body.to_string().as_bytes());
    let _ = tx.send(Message::Binary(frame.into())).await;
    drop(tx);
    let _ = writer.await;
    reader.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_node_token_is_let_in() {
        let mut headers = HeaderMap::new();
        assert!(!authorized("secret", &headers));
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(authorized("secret", &headers));
        headers.insert(header::AUTHORIZATION, "Bearer secreT".parse().unwrap());
        assert!(!authorized("secret", &headers));
    }
}
