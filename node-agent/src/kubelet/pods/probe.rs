//! Liveness, readiness and startup probes: exec (through `runc exec`), httpGet and tcpSocket,
//! with the kubelet's defaults (timeout 1 s; success on HTTP 200–399).

use std::{net::SocketAddr, process::Command, sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use strait_runtime::Runc;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// A probe's verdict, with a reason for failures (shown in events and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Resolves a probe's port: a number, or the name of one of the container's ports.
pub fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs `probe` once against the container `runc_id` at `pod_ip`.
pub async fn run(
    probe: &Probe,
    container: &Container,
    pod_ip: &str,
    runc: &Arc<Runc>,
    runc_id: &str,
) -> Outcome {
    let timeout = Duration::from_secs(
        probe
            .timeout_seconds
            .unwrap_or(1)
            .max(1)
            .unsigned_abs()
            .into(),
    );
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let runc = Arc::clone(runc);
        let id = runc_id.to_owned();
        let result = tokio::time::timeout(
            timeout,
            tokio::task::spawn_blocking(move || exec_in(&runc, &id, &command)),
        )
        .await;
        return match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Failure("the probe task failed".to_owned()),
            Err(_) => Outcome::Failure(format!("command timed out after {timeout:?}")),
        };
    }
    if let Some(http) = &probe.http_get {
        let Some(port) = port(container, &http.port) else {
            return Outcome::Failure(format!("unknown port {:?}", http.port));
        };
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_owned());
        let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
        let headers: String = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| format!("{}: {}\r\n", h.name, h.value))
            .collect();
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, &headers)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failure(format!(
                "Get \"http://{host}:{port}{path}\": context deadline exceeded"
            )),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = port(container, &tcp.port) else {
            return Outcome::Failure(format!("unknown port {:?}", tcp.port));
        };
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_owned());
        return match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Outcome::Failure("the probe has no handler".to_owned())
}

fn exec_in(runc: &Runc, id: &str, command: &[String]) -> Outcome {
    let mut cmd = Command::new(&runc.binary);
    cmd.arg("--root")
        .arg(&runc.root)
        .arg("exec")
        .arg(id)
        .args(command);
    match runc.reaper().output(&mut cmd) {
        Ok(out) if out.status.success() => Outcome::Success,
        Ok(out) => Outcome::Failure(format!(
            "command {command:?} exited with {}: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Err(e) => Outcome::Failure(format!("failed to run runc exec: {e}")),
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &str) -> Outcome {
    let address = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => return Outcome::Failure(format!("host {host} is not an address")),
    };
    let mut stream = match TcpStream::connect(address).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!("Get \"http://{address}{path}\": dial tcp: {e}"));
        }
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return Outcome::Failure(format!("Get \"http://{address}{path}\": {e}"));
    }
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]).into_owned();
    match status_code(&line) {
        Some(code) if (200..400).contains(&code) => Outcome::Success,
        Some(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        None => Outcome::Failure(format!("not an HTTP answer: {line:?}")),
    }
}

/// The status code of an HTTP status line.
fn status_code(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn named_ports_resolve_and_status_lines_parse() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(port(&c, &IntOrString::String("http".into())), Some(8080));
        assert_eq!(port(&c, &IntOrString::String("nope".into())), None);
        assert_eq!(port(&c, &IntOrString::Int(81)), Some(81));
        assert_eq!(status_code("HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code("HTTP/1.0 500 x"), Some(500));
        assert_eq!(status_code("SSH-2.0"), None);
    }
}
