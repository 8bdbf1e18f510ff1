//! Exec and port-forward over SPDY/3.1 (see [`super::spdy`]), as the kubelet serves them to
//! kubectl 1.27–1.29 (exec) and to every kubectl (port-forward; newer ones first try SPDY
//! tunnelled in a WebSocket, then fall back to this).
//!
//! Exec: the client opens one stream per channel, named by its `streamType` header (`error`,
//! `stdin`, `stdout`, `stderr`, `resize`); the command's streams are copied to them, and the
//! outcome is a `metav1.Status` on the error stream (protocol v4; v2/v3 write only a failure's
//! message). Port-forward: per connection, an `error` and a `data` stream sharing a
//! `requestID` and naming the `port`; the agent connects to that port on localhost inside the
//! pod's network namespace, as the kubelet does, and copies both ways.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use axum::http::HeaderMap;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, warn};

use super::{
    pods,
    spdy::{Session, Stream},
};

/// The exec protocols served over SPDY, preferred first.
pub const EXEC_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The port-forward protocol.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// How long the client has to open every stream it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// Whether the request asks for an `Upgrade: SPDY/3.1`.
pub fn wants_spdy(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("SPDY/3.1")))
}

/// The first of `served` the client offers in `X-Stream-Protocol-Version` (repeated or
/// comma-separated).
pub fn negotiate(headers: &HeaderMap, served: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    served
        .iter()
        .find(|p| offered.iter().any(|o| o == **p))
        .copied()
}

/// What the exec request asked for.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub runc_id: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub protocol: &'static str,
}

/// Serves one exec over an upgraded SPDY connection.
pub async fn exec(session: Session, ctx: &pods::Context, request: ExecRequest) {
    let mut session = session;
    let mut wanted = vec!["error"];
    if request.stdin {
        wanted.push("stdin");
    }
    if request.stdout {
        wanted.push("stdout");
    }
    if request.stderr && !request.tty {
        wanted.push("stderr");
    }
    if request.tty
        && request.protocol != "v2.channel.k8s.io"
        && request.protocol != "channel.k8s.io"
    {
        wanted.push("resize");
    }
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let collected = tokio::time::timeout(STREAM_WAIT, async {
        while streams.len() < wanted.len() {
            let stream = session.accept().await?;
            let kind = stream.header("streamtype").unwrap_or_default().to_owned();
            if wanted.contains(&kind.as_str()) {
                streams.insert(kind, stream);
            }
        }
        Some(())
    })
    .await;
    if !matches!(collected, Ok(Some(()))) {
        warn!(container = %request.runc_id, "exec: the client did not open its streams");
        return;
    }
    // Resize messages need a terminal, which the runtime does not give exec yet: drained.
    if let Some(resize) = streams.remove("resize") {
        drop(resize.into_split().0);
    }
    let mut cmd = std::process::Command::new(&ctx.runc.binary);
    cmd.arg("--root")
        .arg(&ctx.runc.root)
        .arg("exec")
        .arg(&request.runc_id)
        .args(&request.command)
        .stdin(if request.stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut error = streams.remove("error");
    let mut child = match ctx.reaper.spawn(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            if let Some(error) = error.as_mut() {
                let _ = error
                    .write_all(
                        failure(
                            request.protocol,
                            &format!("failed to run runc exec: {e}"),
                            None,
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = error.close().await;
            }
            session.close().await;
            return;
        }
    };
    let mut tasks = Vec::new();
    let mut stdin_task = None;
    if let (Some(stream), Some(stdin)) = (streams.remove("stdin"), child.stdin.take()) {
        stdin_task = Some(tokio::spawn(async move {
            let Ok(mut pipe) = tokio::net::unix::pipe::Sender::from_owned_fd(stdin.into()) else {
                return;
            };
            let (mut reader, _writer) = stream.into_split();
            let _ = tokio::io::copy(&mut reader, &mut pipe).await;
            // The client's end of stdin closes the command's.
        }));
    }
    for (name, fd) in [
        (
            "stdout",
            child.stdout.take().map(std::os::fd::OwnedFd::from),
        ),
        (
            "stderr",
            child.stderr.take().map(std::os::fd::OwnedFd::from),
        ),
    ] {
        let stream = streams.remove(name);
        tasks.push(tokio::spawn(async move {
            let Some(fd) = fd else { return };
            let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                return;
            };
            match stream {
                Some(mut stream) => {
                    let _ = tokio::io::copy(&mut pipe, &mut stream).await;
                    let _ = stream.close().await;
                }
                // Not asked for: read and dropped, so the command never blocks on it.
                None => {
                    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
                }
            }
        }));
    }
    let status = child.wait_async().await;
    for task in tasks {
        let _ = task.await;
    }
    let code = status.code();
    if let Some(mut error) = error {
        let text = if code == 0 {
            success(request.protocol)
        } else {
            failure(
                request.protocol,
                &format!(
                    "command terminated with non-zero exit code: error executing command {:?}, exit code {code}",
                    request.command
                ),
                Some(code),
            )
        };
        let _ = error.write_all(text.as_bytes()).await;
        let _ = error.close().await;
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.close()).await;
}

fn success(protocol: &str) -> String {
    if protocol == "v4.channel.k8s.io" {
        json!({"metadata": {}, "status": "Success"}).to_string()
    } else {
        String::new()
    }
}

fn failure(protocol: &str, message: &str, code: Option<i32>) -> String {
    if protocol != "v4.channel.k8s.io" {
        return message.to_owned();
    }
    let mut status = json!({"metadata": {}, "status": "Failure", "message": message});
    if let Some(code) = code {
        status["reason"] = json!("NonZeroExitCode");
        status["details"] =
            json!({"causes": [{"reason": "ExitCode", "message": code.to_string()}]});
    } else {
        status["reason"] = json!("InternalError");
    }
    status.to_string()
}

/// Serves port-forwarding over an upgraded SPDY connection into `netns` (the pod's network
/// namespace file; `None` for a pod on the host network).
pub async fn port_forward(session: Session, netns: Option<PathBuf>, pod: String) {
    let mut session = session;
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(stream) = session.accept().await {
        let kind = stream.header("streamtype").unwrap_or_default().to_owned();
        let request = stream.header("requestid").unwrap_or_default().to_owned();
        let entry = pending.entry(request.clone()).or_default();
        match kind.as_str() {
            "error" => entry.0 = Some(stream),
            "data" => entry.1 = Some(stream),
            _ => continue,
        }
        if entry.0.is_some()
            && entry.1.is_some()
            && let Some((Some(error), Some(data))) = pending.remove(&request)
        {
            tokio::spawn(forward(error, data, netns.clone(), pod.clone()));
        }
    }
}

async fn forward(mut error: Stream, mut data: Stream, netns: Option<PathBuf>, pod: String) {
    let port: Option<u16> = data.header("port").and_then(|p| p.parse().ok());
    let Some(port) = port else {
        let _ = error.write_all(b"invalid port header").await;
        let _ = error.close().await;
        return;
    };
    let connected = connect_in(netns.as_deref(), port).await;
    let mut tcp = match connected {
        Ok(tcp) => tcp,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside the pod's namespace: {e}"
            );
            debug!(%message);
            let _ = error.write_all(message.as_bytes()).await;
            let _ = error.close().await;
            let _ = data.close().await;
            return;
        }
    };
    let _ = tokio::io::copy_bidirectional(&mut data, &mut tcp).await;
    let _ = data.close().await;
    let _ = error.close().await;
}

/// Connects to localhost:`port` inside `netns`. The socket is made on a thread of its own
/// that enters the namespace (setns moves only the calling thread, and that thread is not
/// reused); it stays in the namespace after being handed back.
async fn connect_in(netns: Option<&Path>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<std::net::TcpStream> {
            if let Some(path) = &netns {
                let file = std::fs::File::open(path)?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
            }
            let stream = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(5),
            )?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })();
        let _ = tx.send(result);
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_negotiated_from_repeated_or_listed_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-stream-protocol-version",
            "v5.channel.k8s.io".parse().unwrap(),
        );
        headers.append(
            "x-stream-protocol-version",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            negotiate(&headers, &EXEC_PROTOCOLS),
            Some("v4.channel.k8s.io")
        );
        let mut listed = HeaderMap::new();
        listed.insert(
            "x-stream-protocol-version",
            "channel.k8s.io, v2.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            negotiate(&listed, &EXEC_PROTOCOLS),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(&HeaderMap::new(), &[PORT_FORWARD_PROTOCOL]), None);
        assert!(failure("v4.channel.k8s.io", "boom", Some(3)).contains("\"NonZeroExitCode\""));
        assert_eq!(failure("v2.channel.k8s.io", "boom", Some(3)), "boom");
        assert_eq!(success("v3.channel.k8s.io"), "");
    }
}
