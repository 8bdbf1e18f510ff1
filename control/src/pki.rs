//! The cluster's certificate authority, the API server's serving certificate, the bearer
//! tokens of each identity and the admin kubeconfig, created at first start under the data
//! directory and reused afterwards.
//!
//! Layout (all under `<data-dir>`):
//! - `pki/ca.crt`, `pki/ca.key`: the cluster CA (clients pin it through their kubeconfig);
//! - `pki/server.crt`, `pki/server.key`: the serving certificate, signed by the CA, with the
//!   names clients dial (localhost, the `kubernetes` Service names, its ClusterIP, extra SANs);
//! - `tokens`: one `token,user,group1|group2` line per identity, readable by root only;
//! - `admin.kubeconfig`: the admin's kubeconfig (group `system:masters`);
//! - `node-token`: the join token agents are given (`K10<CA hash>::node:<agent token>`).

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// What went wrong while creating or reading the PKI; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path} is malformed: {why}")]
    Malformed { path: PathBuf, why: String },
}

/// One identity that may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The identity node agents act as.
pub const AGENT_USER: &str = "system:strait-agent";

/// The identities created at first start: (user, groups, kubeconfig file name).
const BUILTIN: &[(&str, &[&str], &str)] = &[
    ("admin", &["system:masters"], "admin.kubeconfig"),
    (AGENT_USER, &["system:nodes"], "agent.kubeconfig"),
    (
        "system:strait-dns",
        &["system:strait-components"],
        "dns.kubeconfig",
    ),
    (
        "system:kube-controller-manager",
        &["system:strait-components"],
        "controller-manager.kubeconfig",
    ),
    (
        "system:kube-scheduler",
        &["system:strait-components"],
        "scheduler.kubeconfig",
    ),
];

/// The PKI of one control plane.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// token → identity
    pub tokens: Vec<(String, Identity)>,
}

impl Pki {
    /// Load the PKI under `data_dir`, creating what is missing. `server_names` are the DNS
    /// names and addresses the serving certificate must carry.
    pub fn load_or_create(
        data_dir: &Path,
        server_names: &[String],
        server_url: &str,
    ) -> Result<Self, PkiError> {
        let pki = data_dir.join("pki");
        create_dir(&pki)?;
        let ca_crt = pki.join("ca.crt");
        let ca_key = pki.join("ca.key");
        if !ca_crt.exists() || !ca_key.exists() {
            let key = KeyPair::generate().map_err(|source| PkiError::Generate {
                what: "the CA key",
                source,
            })?;
            let params = ca_params();
            let cert = params
                .self_signed(&key)
                .map_err(|source| PkiError::Generate {
                    what: "the CA certificate",
                    source,
                })?;
            write_private(&ca_key, &key.serialize_pem())?;
            write_file(&ca_crt, &cert.pem())?;
        }
        let ca_pem = read(&ca_crt)?;
        let ca_key_pem = read(&ca_key)?;

        // The serving certificate is reissued at every start: its names follow the config.
        let ca_keypair = KeyPair::from_pem(&ca_key_pem).map_err(|e| PkiError::Malformed {
            path: ca_key.clone(),
            why: e.to_string(),
        })?;
        // The issuer is rebuilt from the CA's parameters: the subject name and key are all a
        // signature needs, and they are the same as when the CA was made.
        let issuer = Issuer::new(ca_params(), ca_keypair);
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "the serving key",
            source,
        })?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "strait-control");
        params.subject_alt_names = server_names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|source| PkiError::Generate {
                        what: "a serving certificate name",
                        source,
                    }),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|source| PkiError::Generate {
                what: "the serving certificate",
                source,
            })?;
        let server_cert_pem = cert.pem();
        let server_key_pem = key.serialize_pem();
        write_file(&pki.join("server.crt"), &server_cert_pem)?;
        write_private(&pki.join("server.key"), &server_key_pem)?;

        let tokens = load_or_create_tokens(data_dir)?;
        for (user, _, file) in BUILTIN {
            let token = tokens
                .iter()
                .find(|(_, id)| id.user == *user)
                .map(|(t, _)| t.clone())
                .ok_or_else(|| PkiError::Malformed {
                    path: data_dir.join("tokens"),
                    why: format!("no token for {user}"),
                })?;
            write_private(
                &data_dir.join(file),
                &kubeconfig(server_url, &ca_pem, user, &token),
            )?;
        }
        let pki = Self {
            dir: data_dir.to_owned(),
            ca_pem,
            server_cert_pem,
            server_key_pem,
            tokens,
        };
        if let Some(token) = pki.node_token() {
            write_private(&pki.node_token_file(), &format!("{token}\n"))?;
        }
        Ok(pki)
    }

    /// The join token file: agents joining with it pin this CA and act as the agent identity.
    pub fn node_token_file(&self) -> PathBuf {
        self.dir.join("node-token")
    }

    /// The join token of this control plane.
    pub fn node_token(&self) -> Option<strait_api::join::JoinToken> {
        self.tokens
            .iter()
            .find(|(_, id)| id.user == AGENT_USER)
            .map(|(token, _)| strait_api::join::JoinToken::new(&self.ca_pem, token))
    }

    /// The admin kubeconfig's path.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Who presents `token`, if anyone.
    pub fn authenticate(&self, token: &str) -> Option<&Identity> {
        // Every token is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for (known, identity) in &self.tokens {
            if constant_time_eq(known.as_bytes(), token.as_bytes()) {
                found = Some(identity);
            }
        }
        found
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "strait-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

/// A kubeconfig for one user, with the CA inlined.
pub fn kubeconfig(server_url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: strait\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: strait\n  context:\n    cluster: strait\n    user: {user}\n    namespace: default\ncurrent-context: strait\n"
    )
}

fn load_or_create_tokens(data_dir: &Path) -> Result<Vec<(String, Identity)>, PkiError> {
    let path = data_dir.join("tokens");
    let mut tokens = if path.exists() {
        parse_tokens(&path, &read(&path)?)?
    } else {
        Vec::new()
    };
    let mut added = false;
    for (user, groups, _) in BUILTIN {
        if !tokens.iter().any(|(_, id)| id.user == *user) {
            tokens.push((
                random_token().map_err(|source| PkiError::Io {
                    path: path.clone(),
                    source,
                })?,
                Identity {
                    user: (*user).to_owned(),
                    groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                },
            ));
            added = true;
        }
    }
    if added {
        let text: String = tokens
            .iter()
            .map(|(token, id)| format!("{token},{},{}\n", id.user, id.groups.join("|")))
            .collect();
        write_private(&path, &text)?;
    }
    Ok(tokens)
}

fn parse_tokens(path: &Path, text: &str) -> Result<Vec<(String, Identity)>, PkiError> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(n, line)| {
            let mut fields = line.split(',');
            match (fields.next(), fields.next(), fields.next()) {
                (Some(token), Some(user), groups) if !token.is_empty() && !user.is_empty() => Ok((
                    token.to_owned(),
                    Identity {
                        user: user.to_owned(),
                        groups: groups
                            .unwrap_or("")
                            .split('|')
                            .filter(|g| !g.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    },
                )),
                _ => Err(PkiError::Malformed {
                    path: path.to_owned(),
                    why: format!("line {} is not `token,user,group|group`", n + 1),
                }),
            }
        })
        .collect()
}

/// 32 random bytes, hex.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn create_dir(path: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), PkiError> {
    fs::write(path, text).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Keys and tokens: written to a temporary file with mode 0600, then renamed, so a crash
/// never leaves a half-written secret and no other user can read one at any moment.
fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_and_later_starts_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = Pki::load_or_create(dir.path(), &names, "https://127.0.0.1:6443").unwrap();
        let second = Pki::load_or_create(dir.path(), &names, "https://127.0.0.1:6443").unwrap();
        assert_eq!(first.ca_pem, second.ca_pem, "the CA is kept");
        assert_eq!(first.tokens, second.tokens, "tokens are kept");
        let admin = first
            .tokens
            .iter()
            .find(|(_, id)| id.user == "admin")
            .unwrap();
        assert_eq!(
            first.authenticate(&admin.0).unwrap().groups,
            vec!["system:masters"]
        );
        assert!(first.authenticate("nope").is_none());
        let kubeconfig = fs::read_to_string(first.admin_kubeconfig()).unwrap();
        assert!(kubeconfig.contains(&format!("token: {}", admin.0)));
        let mode = fs::metadata(dir.path().join("tokens"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "tokens are private");
    }

    #[test]
    fn a_malformed_tokens_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("tokens"), "just-a-token\n").unwrap();
        let error = Pki::load_or_create(dir.path(), &[], "https://x").unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
