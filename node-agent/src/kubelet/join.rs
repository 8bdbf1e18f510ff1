//! Joining a cluster with a join token: fetch the CA, check it against the token's pin, and
//! write the kubeconfig every later start (and every other client on the node) uses.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use rustls::pki_types::ServerName;
use strait_api::join::{CACERTS_PATH, JoinToken, JoinTokenError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Why joining failed; each variant names the server or the file.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] JoinTokenError),
    #[error("the server URL `{0}` is not https://HOST:PORT")]
    Url(String),
    #[error("failed to fetch {CACERTS_PATH} from {server}: {why}")]
    Fetch { server: String, why: String },
    #[error(
        "the CA served by {server} does not match the join token's hash (got {got}, the token pins {pinned}): refusing to trust it"
    )]
    Mismatch {
        server: String,
        got: String,
        pinned: String,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fetches the CA from `server`, checks it against `token` and writes a kubeconfig for the
/// agent at `kubeconfig`. Returns the CA bundle.
pub async fn join(server: &str, token: &str, kubeconfig: &Path) -> Result<String, JoinError> {
    let token = JoinToken::parse(token)?;
    let ca = fetch_cacerts(server).await?;
    if !token.trusts(&ca) {
        return Err(JoinError::Mismatch {
            server: server.to_owned(),
            got: strait_api::join::ca_hash(&ca),
            pinned: token.ca_hash,
        });
    }
    let text = kubeconfig_text(server, &ca, &token.secret);
    write_private(kubeconfig, &text)?;
    Ok(ca)
}

/// The agent's kubeconfig: the pinned CA and the bearer token.
pub fn kubeconfig_text(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: strait\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: agent\n  user:\n    token: {token}\ncontexts:\n- name: strait\n  context:\n    cluster: strait\n    user: agent\ncurrent-context: strait\n"
    )
}

fn write_private(path: &Path, text: &str) -> Result<(), JoinError> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let error = |source| JoinError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// GET /cacerts over TLS without verifying the server: what it says is checked against the
/// token's pin before anything trusts it, which is what makes this safe.
async fn fetch_cacerts(server: &str) -> Result<String, JoinError> {
    let fail = |why: String| JoinError::Fetch {
        server: server.to_owned(),
        why,
    };
    let authority = server
        .strip_prefix("https://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| JoinError::Url(server.to_owned()))?;
    let host = match authority.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let config = strait_tls::unverified_client_config(&[]).map_err(|e| fail(e.to_string()))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| fail(e.to_string()))?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let request = format!(
            "GET {CACERTS_PATH} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut response = Vec::new();
        // The server may close without a TLS close_notify; what was read is what counts.
        let _ = tls.read_to_end(&mut response).await;
        Ok::<_, JoinError>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| fail("no answer within 10 s".to_owned()))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("the answer is not HTTP".to_owned()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(fail(format!(
            "answered `{}`",
            head.lines().next().unwrap_or_default()
        )));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body).ok_or_else(|| fail("a malformed chunked body".to_owned()))?
    } else {
        body.to_owned()
    };
    if !body.contains("-----BEGIN CERTIFICATE-----") {
        return Err(fail("the answer is not a PEM certificate".to_owned()));
    }
    Ok(body)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_deref(),
            Some("hello world")
        );
        assert_eq!(dechunk("zz\r\n"), None);
    }

    #[test]
    fn the_kubeconfig_carries_the_ca_and_token() {
        let text = kubeconfig_text("https://10.0.0.1:6443", "PEM", "tok");
        assert!(text.contains("server: https://10.0.0.1:6443"));
        assert!(text.contains("certificate-authority-data: UEVN"));
        assert!(text.contains("token: tok"));
    }
}
