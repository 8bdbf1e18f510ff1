//! The network configuration (stdin) and the invocation's environment, parsed and checked.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{Error, SUPPORTED_VERSIONS};

/// Where the node agent serves IPAM when the configuration does not say.
pub const DEFAULT_IPAM_SOCKET: &str = "/run/strait/ipam.sock";
/// How long the plugin waits for the IPAM by default.
pub const DEFAULT_IPAM_TIMEOUT: Duration = Duration::from_secs(5);
/// The host-side interface name prefix by default (Cilium's).
pub const DEFAULT_HOST_VETH_PREFIX: &str = "lxc";
/// The longest prefix: the rest of the 15-byte name is at least 8 hex digits of hash.
pub const MAX_HOST_VETH_PREFIX: usize = 7;

/// The network configuration, as the runtime passes it on stdin:
///
/// ```json
/// {
///   "cniVersion": "1.0.0",            // "1.0.0" or "0.4.0"; the result uses the same shape
///   "name": "strait",                 // required, as the spec asks
///   "type": "strait-cni",
///   "ipam": {
///     "socket": "/run/strait/ipam.sock", // the node agent's IPAM socket (default shown)
///     "timeoutMs": 5000                  // per IPAM call (default shown)
///   },
///   "mtu": 1500,                      // optional: MTU of both veth ends (kernel default if absent)
///   "hostVethPrefix": "lxc"           // optional: host-side name prefix, 1 to 7 of [a-z0-9]
/// }
/// ```
///
/// `prevResult` is read for CHECK. Unknown fields (`args`, `runtimeConfig`, `capabilities`…)
/// are ignored, as the spec allows; `ipam.type` naming an IPAM plugin is refused (code 2),
/// because this plugin never delegates IPAM.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub ipam_socket: PathBuf,
    pub ipam_timeout: Duration,
    pub mtu: Option<u32>,
    pub host_veth_prefix: String,
    pub prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    name: Option<String>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    mtu: Option<u32>,
    host_veth_prefix: Option<String>,
    prev_result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(rename = "type")]
    plugin: Option<String>,
    socket: Option<PathBuf>,
    timeout_ms: Option<u64>,
}

/// The `cniVersion` of a configuration, for error replies, if it can be found.
pub fn version_of(stdin: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(stdin).ok()?;
    let version = value.get("cniVersion")?.as_str()?;
    SUPPORTED_VERSIONS
        .contains(&version)
        .then(|| version.to_owned())
}

impl NetConf {
    /// Decodes and checks the configuration.
    pub fn parse(stdin: &str) -> Result<Self, Error> {
        let value: serde_json::Value = serde_json::from_str(stdin).map_err(Error::Decode)?;
        let version = value
            .get("cniVersion")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
            return Err(Error::IncompatibleVersion(version));
        }
        let raw: RawConf =
            serde_json::from_value(value).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::InvalidConfig("`name` is missing".into()))?;
        let ipam = raw.ipam.unwrap_or(RawIpam {
            plugin: None,
            socket: None,
            timeout_ms: None,
        });
        if let Some(plugin) = ipam.plugin {
            return Err(Error::UnsupportedField {
                field: "ipam.type".into(),
                reason: format!(
                    "strait-cni allocates through the node agent and does not run IPAM plugins (got `{plugin}`)"
                ),
            });
        }
        if let Some(mtu) = raw.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(Error::InvalidConfig(format!(
                "`mtu` {mtu} is outside 68..=65535"
            )));
        }
        let prefix = raw
            .host_veth_prefix
            .unwrap_or_else(|| DEFAULT_HOST_VETH_PREFIX.to_owned());
        if prefix.is_empty()
            || prefix.len() > MAX_HOST_VETH_PREFIX
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(Error::InvalidConfig(format!(
                "`hostVethPrefix` `{prefix}` must be 1 to {MAX_HOST_VETH_PREFIX} characters of [a-z0-9]"
            )));
        }
        Ok(Self {
            cni_version: version,
            name,
            ipam_socket: ipam
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_IPAM_SOCKET)),
            ipam_timeout: ipam
                .timeout_ms
                .map_or(DEFAULT_IPAM_TIMEOUT, Duration::from_millis),
            mtu: raw.mtu,
            host_veth_prefix: prefix,
            prev_result: raw.prev_result,
        })
    }
}

/// The `CNI_*` environment of one ADD, DEL or CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub container_id: String,
    /// `CNI_NETNS`: required for ADD and CHECK, optional for DEL (the sandbox may be gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
}

/// The keys of `CNI_ARGS` this plugin reads; others are ignored, as the spec says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
}

impl CniEnv {
    /// Reads the environment through `var` (`std::env::var` in the binary, a map in tests).
    pub fn parse(
        var: &dyn Fn(&str) -> Option<String>,
        netns_required: bool,
    ) -> Result<Self, Error> {
        let required = |name: &'static str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or(Error::MissingEnv(name))
        };
        let container_id = required("CNI_CONTAINERID")?;
        // The spec's rule: alphanumerics, then also `_`, `.` and `-`.
        let valid_id = container_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid_id {
            return Err(Error::InvalidEnv {
                var: "CNI_CONTAINERID",
                value: container_id,
                reason: "must be alphanumeric, with `_`, `.` and `-` after the first character"
                    .into(),
            });
        }
        let ifname = required("CNI_IFNAME")?;
        if ifname.len() > 15
            || ifname == "."
            || ifname == ".."
            || ifname
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
        {
            return Err(Error::InvalidEnv {
                var: "CNI_IFNAME",
                value: ifname,
                reason: "not a valid interface name (at most 15 bytes, no `/`, `:` or spaces)"
                    .into(),
            });
        }
        let netns = if netns_required {
            Some(PathBuf::from(required("CNI_NETNS")?))
        } else {
            var("CNI_NETNS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        Ok(Self {
            container_id,
            netns,
            ifname,
            args,
        })
    }
}

impl CniArgs {
    /// Parses `K=V;K=V`. Unknown keys are ignored; a pair without `=` is an error.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let mut args = Self::default();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| Error::InvalidEnv {
                var: "CNI_ARGS",
                value: raw.to_owned(),
                reason: format!("`{pair}` is not KEY=VALUE"),
            })?;
            match key {
                "K8S_POD_NAMESPACE" => value.clone_into(&mut args.pod_namespace),
                "K8S_POD_NAME" => value.clone_into(&mut args.pod_name),
                "K8S_POD_UID" => value.clone_into(&mut args.pod_uid),
                _ => {}
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn full_config_parses() {
        let conf = NetConf::parse(
            r#"{"cniVersion":"0.4.0","name":"n","type":"strait-cni","ipam":{"socket":"/tmp/s.sock","timeoutMs":250},"mtu":1400,"hostVethPrefix":"st","runtimeConfig":{}}"#,
        )
        .unwrap();
        assert_eq!(conf.cni_version, "0.4.0");
        assert_eq!(conf.ipam_socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(conf.ipam_timeout, Duration::from_millis(250));
        assert_eq!(conf.mtu, Some(1400));
        assert_eq!(conf.host_veth_prefix, "st");
    }

    #[test]
    fn defaults_apply() {
        let conf =
            NetConf::parse(r#"{"cniVersion":"1.0.0","name":"n","type":"strait-cni"}"#).unwrap();
        assert_eq!(conf.ipam_socket, PathBuf::from(DEFAULT_IPAM_SOCKET));
        assert_eq!(conf.host_veth_prefix, "lxc");
        assert_eq!(conf.mtu, None);
    }

    #[test]
    fn config_errors_have_their_codes() {
        let code = |s: &str| NetConf::parse(s).unwrap_err().code();
        assert_eq!(code("{"), crate::code::DECODE);
        assert_eq!(
            code(r#"{"cniVersion":"0.3.1","name":"n"}"#),
            crate::code::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0"}"#),
            crate::code::INVALID_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","mtu":10}"#),
            crate::code::INVALID_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#),
            crate::code::INVALID_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","hostVethPrefix":"toolongprefix"}"#),
            crate::code::INVALID_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local"}}"#),
            crate::code::UNSUPPORTED_FIELD
        );
    }

    #[test]
    fn env_parses_and_ignores_unknown_args() {
        let e = CniEnv::parse(
            &env(&[
                ("CNI_CONTAINERID", "abc-1"),
                ("CNI_NETNS", "/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1;K8S_POD_INFRA_CONTAINER_ID=abc"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(
            e.args,
            CniArgs {
                pod_namespace: "default".into(),
                pod_name: "web-0".into(),
                pod_uid: "u1".into(),
            }
        );
        assert_eq!(e.netns, Some(PathBuf::from("/run/netns/x")));
    }

    #[test]
    fn env_errors_are_code_4() {
        let base = [
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let fails = |pairs: &[(&str, &str)], required| {
            let err = CniEnv::parse(&env(pairs), required).unwrap_err();
            assert_eq!(err.code(), crate::code::INVALID_ENV, "{err}");
            err.to_string()
        };
        assert!(fails(&base[1..], true).contains("CNI_CONTAINERID"));
        assert!(fails(&[base[0], base[2]], true).contains("CNI_NETNS"));
        assert!(
            CniEnv::parse(&env(&[base[0], base[2]]), false).is_ok(),
            "DEL needs no netns"
        );
        assert!(fails(&[("CNI_CONTAINERID", "-bad"), base[1], base[2]], true).contains("-bad"));
        assert!(fails(&[base[0], base[1], ("CNI_IFNAME", "a/b")], true).contains("a/b"));
        assert!(
            fails(&[base[0], base[1], base[2], ("CNI_ARGS", "novalue")], true).contains("novalue")
        );
    }
}
