//! The CNI plugin's logic, apart from process IO so it can be tested as plain functions.
//!
//! The runtime runs the plugin with `CNI_COMMAND` and friends in the environment and the
//! network configuration on stdin; the plugin answers with a result or an error JSON on stdout
//! (CNI spec 1.0, "Execution Protocol"). The plugin holds no state: IP allocation is asked of
//! the node agent over its unix socket (issue 10).

use serde::Serialize;

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

/// Well-known error codes of the CNI spec.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// First plugin-specific code: the operation is not available in this build.
    pub const NOT_AVAILABLE: u32 = 100;
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            cni_version: "1.0.0".to_owned(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// Runs one plugin invocation: `command` is `CNI_COMMAND` (if set), `stdin` the network
/// configuration. Returns the JSON to print on success.
pub fn run(command: Option<&str>, stdin: &str) -> Result<String, CniError> {
    let command =
        command.ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_COMMAND is not set", ""))?;
    match command {
        "VERSION" => Ok(version_result()),
        "ADD" | "DEL" | "CHECK" => {
            let config: serde_json::Value = serde_json::from_str(stdin).map_err(|e| {
                CniError::new(
                    code::DECODE,
                    "failed to decode the network configuration",
                    e.to_string(),
                )
            })?;
            let version = config
                .get("cniVersion")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            if !SUPPORTED_VERSIONS.contains(&version) {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("unsupported cniVersion `{version}`"),
                    format!("supported: {}", SUPPORTED_VERSIONS.join(", ")),
                ));
            }
            Err(CniError::new(
                code::NOT_AVAILABLE,
                format!("strait-cni cannot {command} yet: pod networking is issue 10 (P5)"),
                "",
            ))
        }
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND `{other}`"),
            "expected ADD, DEL, CHECK or VERSION",
        )),
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
    use super::*;

    #[test]
    fn version_lists_supported_versions() {
        let out: serde_json::Value =
            serde_json::from_str(&run(Some("VERSION"), "").unwrap()).unwrap();
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(
            out["supportedVersions"],
            serde_json::json!(["0.4.0", "1.0.0"])
        );
    }

    #[test]
    fn missing_command_is_invalid_env() {
        assert_eq!(run(None, "").unwrap_err().code, code::INVALID_ENV);
    }

    #[test]
    fn bad_config_is_a_decode_error() {
        let err = run(Some("ADD"), "{not json").unwrap_err();
        assert_eq!(err.code, code::DECODE);
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let err = run(
            Some("ADD"),
            r#"{"cniVersion":"0.1.0","name":"n","type":"strait-cni"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(err.msg.contains("0.1.0"), "{}", err.msg);
    }
}
