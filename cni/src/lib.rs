//! Strait's CNI plugin, and the IPAM it asks for addresses.
//!
//! The runtime runs the plugin with `CNI_COMMAND` and friends in the environment and the
//! network configuration on stdin; the plugin answers with a result or an error JSON on stdout
//! (CNI spec 1.0, "Execution Protocol"). The plugin holds no state: addresses come from the
//! node agent's IPAM ([`ipam`]) over a unix socket, and the kernel objects are found again
//! from (container id, interface name), which name the host veth.
//!
//! - ADD: a veth pair per pod, routed (no bridge): see [`result`] for how the result differs
//!   from the reference `bridge` plugin and why, and `plugin.rs` for the topology.
//! - DEL: idempotent; a missing netns, veth or allocation is success.
//! - CHECK: the interface, addresses and routes of `prevResult` must exist, and the IPAM must
//!   still hold the address.
//! - VERSION: `0.4.0` and `1.0.0`; results take the shape of the configuration's version.
//!
//! Error codes are the spec's (see [`code`]) plus 100–103 for this plugin.

pub mod config;
pub mod ipam;
mod netlink;
mod plugin;
pub mod result;

use std::path::PathBuf;

use serde::Serialize;

pub use config::{CniArgs, CniEnv, NetConf};
pub use plugin::host_veth_name;

/// The CNI versions whose configuration and results this plugin understands.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0"];

/// A CNI error, printed as JSON on stdout with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// Error codes: 1–11 are the spec's, 100 and up this plugin's.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration (`ipam.type`: we never delegate IPAM).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist: the `CNI_NETNS` path does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure: a netns that cannot be entered, a sysctl that cannot be written.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: the node agent's IPAM socket is not answering.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The IPAM refused: the pod CIDR is exhausted, or its state could not be saved.
    pub const IPAM_REFUSED: u32 = 100;
    /// The kernel refused a netlink request (creating the veth, adding a route…).
    pub const NETLINK: u32 = 101;
    /// CHECK found the container's network different from `prevResult`.
    pub const CHECK_FAILED: u32 = 102;
    /// ADD found the host veth of this (container, interface) already there: ADD twice
    /// without DEL, which the spec forbids.
    pub const INTERFACE_EXISTS: u32 = 103;
}

/// Everything that can fail in one invocation; [`Error::code`] gives its CNI code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not set")]
    MissingEnv(&'static str),
    #[error("invalid {var} `{value}`: {reason}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("unknown CNI_COMMAND `{0}`: expected ADD, DEL, CHECK or VERSION")]
    UnknownCommand(String),
    #[error("failed to decode the network configuration")]
    Decode(#[source] serde_json::Error),
    #[error("unsupported cniVersion `{0}` (supported: 0.4.0, 1.0.0)")]
    IncompatibleVersion(String),
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    #[error("unsupported field `{field}`: {reason}")]
    UnsupportedField { field: String, reason: String },
    #[error("network namespace {path} does not exist")]
    NetnsMissing { path: PathBuf },
    #[error("failed to enter network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipam(#[from] ipam::ClientError),
    #[error("{what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("host interface {name} of container {container_id} already exists")]
    InterfaceExists { name: String, container_id: String },
    #[error("check failed: {0}")]
    CheckFailed(String),
    #[error("{error} (and undoing it failed: {undo})")]
    UndoFailed { error: Box<Error>, undo: String },
}

impl Error {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            Self::MissingEnv(_) | Self::InvalidEnv { .. } | Self::UnknownCommand(_) => {
                code::INVALID_ENV
            }
            Self::Decode(_) => code::DECODE,
            Self::IncompatibleVersion(_) => code::INCOMPATIBLE_VERSION,
            Self::InvalidConfig(_) => code::INVALID_CONFIG,
            Self::UnsupportedField { .. } => code::UNSUPPORTED_FIELD,
            Self::NetnsMissing { .. } => code::UNKNOWN_CONTAINER,
            Self::Netns { .. } | Self::Io { .. } => code::IO,
            Self::Ipam(ipam::ClientError::Unavailable { .. }) => code::TRY_AGAIN_LATER,
            Self::Ipam(ipam::ClientError::Protocol { .. }) => code::IO,
            Self::Ipam(ipam::ClientError::Refused { .. }) => code::IPAM_REFUSED,
            Self::Netlink { .. } => code::NETLINK,
            Self::InterfaceExists { .. } => code::INTERFACE_EXISTS,
            Self::CheckFailed(_) => code::CHECK_FAILED,
            Self::UndoFailed { error, .. } => error.code(),
        }
    }

    /// The CNI error JSON: `msg` is this error, `details` its causes.
    pub fn to_cni(&self, cni_version: &str) -> CniError {
        let mut details = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            details.push(s.to_string());
            source = s.source();
        }
        CniError {
            cni_version: cni_version.to_owned(),
            code: self.code(),
            msg: self.to_string(),
            details: details.join(": "),
        }
    }
}

/// Runs one plugin invocation: `var` reads the environment (`CNI_COMMAND` …), `stdin` is the
/// network configuration. Returns the JSON to print on success (empty for DEL and CHECK,
/// which print nothing).
pub fn run(var: &dyn Fn(&str) -> Option<String>, stdin: &str) -> Result<String, CniError> {
    // Errors answer in the configuration's version when it is one we speak.
    let version = config::version_of(stdin).unwrap_or_else(|| "1.0.0".to_owned());
    run_inner(var, stdin).map_err(|e| e.to_cni(&version))
}

fn run_inner(var: &dyn Fn(&str) -> Option<String>, stdin: &str) -> Result<String, Error> {
    let command = var("CNI_COMMAND").ok_or(Error::MissingEnv("CNI_COMMAND"))?;
    match command.as_str() {
        "VERSION" => Ok(version_result()),
        "ADD" => {
            let conf = NetConf::parse(stdin)?;
            let env = CniEnv::parse(var, true)?;
            let result = plugin::add(&conf, &env)?;
            serde_json::to_string(&result).map_err(|e| Error::Io {
                what: "failed to encode the result".into(),
                source: e.into(),
            })
        }
        "DEL" => {
            let conf = NetConf::parse(stdin)?;
            let env = CniEnv::parse(var, false)?;
            plugin::del(&conf, &env).map(|()| String::new())
        }
        "CHECK" => {
            let conf = NetConf::parse(stdin)?;
            let env = CniEnv::parse(var, true)?;
            plugin::check(&conf, &env).map(|()| String::new())
        }
        other => Err(Error::UnknownCommand(other.to_owned())),
    }
}

fn version_result() -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run_with(pairs: &[(&str, &str)], stdin: &str) -> Result<String, CniError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        run(&|k| map.get(k).map(|v| (*v).to_owned()), stdin)
    }

    #[test]
    fn version_lists_supported_versions() {
        let out: serde_json::Value =
            serde_json::from_str(&run_with(&[("CNI_COMMAND", "VERSION")], "").unwrap()).unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(
            out["supportedVersions"],
            serde_json::json!(["0.4.0", "1.0.0"])
        );
    }

    #[test]
    fn missing_command_is_invalid_env() {
        assert_eq!(run_with(&[], "").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn unknown_command_is_invalid_env() {
        let err = run_with(&[("CNI_COMMAND", "GC")], "").unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("GC"), "{}", err.msg);
    }

    #[test]
    fn bad_config_is_a_decode_error() {
        let err = run_with(&[("CNI_COMMAND", "ADD")], "{not json").unwrap_err();
        assert_eq!(err.code, code::DECODE);
        assert!(
            !err.details.is_empty(),
            "the decoder's reason is in details"
        );
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let err = run_with(
            &[("CNI_COMMAND", "ADD")],
            r#"{"cniVersion":"0.1.0","name":"n","type":"strait-cni"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(err.msg.contains("0.1.0"), "{}", err.msg);
    }

    #[test]
    fn errors_answer_in_the_config_version() {
        let err = run_with(
            &[("CNI_COMMAND", "ADD")],
            r#"{"cniVersion":"0.4.0","name":"n","type":"strait-cni"}"#,
        )
        .unwrap_err();
        assert_eq!(err.cni_version, "0.4.0");
        assert_eq!(err.code, code::INVALID_ENV, "{}", err.msg);
    }

    #[test]
    fn check_without_prev_result_is_invalid_config() {
        let err = run_with(
            &[
                ("CNI_COMMAND", "CHECK"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/nonexistent"),
            ],
            r#"{"cniVersion":"1.0.0","name":"n","type":"strait-cni"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        assert!(err.msg.contains("prevResult"), "{}", err.msg);
    }
}
