//! A pod's sandbox: its network namespace (a bind-mounted nsfs file, as `ip netns add` makes
//! them) wired by strait-cni, called exactly as a CNI runtime calls a plugin: the network
//! configuration from the agent's conflist on stdin, `CNI_*` in the environment.

use std::{
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
};
use serde_json::{Value, json};
use strait_runtime::Reaper;

/// The network name in the conflist.
pub const NETWORK_NAME: &str = "strait";
/// The pod's interface.
pub const POD_IFNAME: &str = "eth0";

/// Why a sandbox step failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to create the network namespace {path}: {why}")]
    Netns { path: PathBuf, why: String },
    #[error("failed to run {plugin}: {source}")]
    Spawn {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("strait-cni {command} failed with code {code}: {msg}")]
    Cni {
        command: &'static str,
        code: u64,
        msg: String,
    },
    #[error("strait-cni {command} answered something that is not a CNI result: {text}")]
    Result { command: &'static str, text: String },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the agent's CNI conflist (what a runtime would read from /etc/cni/net.d) and returns
/// its path.
pub fn write_conflist(dir: &Path, ipam_socket: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join("10-strait.conflist");
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "strait-cni",
            "ipam": {"socket": ipam_socket},
        }],
    });
    fs::create_dir_all(dir).map_err(|source| SandboxError::Write {
        path: dir.to_owned(),
        source,
    })?;
    fs::write(
        &path,
        serde_json::to_vec_pretty(&conflist).unwrap_or_default(),
    )
    .map_err(|source| SandboxError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The plugin's network configuration from a conflist, as libcni builds it: the plugin entry
/// with the list's `name` and `cniVersion` added.
pub fn plugin_config(conflist: &Value) -> Value {
    let mut config = conflist["plugins"][0].clone();
    config["name"] = conflist["name"].clone();
    config["cniVersion"] = conflist["cniVersion"].clone();
    config
}

/// Creates a network namespace file at `path`: a thread unshares its network namespace and
/// bind-mounts it there, so it lives on after the thread.
pub fn create_netns(path: &Path) -> Result<(), SandboxError> {
    let error = |why: String| SandboxError::Netns {
        path: path.to_owned(),
        why,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
    }
    fs::File::create(path).map_err(|e| error(e.to_string()))?;
    let target = path.to_owned();
    std::thread::spawn(move || -> Result<(), String> {
        // This thread alone moves into the new namespace (setns/unshare are per thread) and
        // then exits; the bind mount keeps the namespace.
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount: {e}"))
    })
    .join()
    .map_err(|_| error("the namespace thread panicked".to_owned()))?
    .map_err(error)
}

/// Removes a network namespace file (and with it the namespace, once nothing is in it).
pub fn remove_netns(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}

/// A CNI call's identity: the container id (the pod's uid here) and the pod.
#[derive(Clone, Debug)]
pub struct CniCall<'a> {
    pub plugin_dir: &'a Path,
    pub conflist: &'a Value,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub uid: &'a str,
}

impl CniCall<'_> {
    /// Runs the plugin with `command` and returns its parsed result.
    pub fn run(
        &self,
        reaper: &Reaper,
        command: &'static str,
        prev_result: Option<&Value>,
    ) -> Result<Value, SandboxError> {
        let plugin = self.plugin_dir.join("strait-cni");
        let mut config = plugin_config(self.conflist);
        if let Some(prev) = prev_result {
            config["prevResult"] = prev.clone();
        }
        let mut cmd = Command::new(&plugin);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", POD_IFNAME)
            .env("CNI_PATH", self.plugin_dir)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    self.namespace, self.pod, self.container_id, self.uid
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let spawn_error = |source| SandboxError::Spawn {
            plugin: plugin.clone(),
            source,
        };
        let mut child = reaper.spawn(&mut cmd).map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(config.to_string().as_bytes())
                .map_err(spawn_error)?;
        }
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_string(&mut out).map_err(spawn_error)?;
        }
        let status = child.wait();
        let value: Value = serde_json::from_str(&out).map_err(|_| SandboxError::Result {
            command,
            text: out.clone(),
        })?;
        if status.success() {
            Ok(value)
        } else {
            Err(SandboxError::Cni {
                command,
                code: value["code"].as_u64().unwrap_or(0),
                msg: format!(
                    "{}{}",
                    value["msg"].as_str().unwrap_or(&out),
                    value["details"]
                        .as_str()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            })
        }
    }
}

/// The pod's address from a CNI result.
pub fn pod_ip(result: &Value) -> Option<String> {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_carries_the_list_name_and_version() {
        let list = json!({"cniVersion": "1.0.0", "name": "strait",
            "plugins": [{"type": "strait-cni", "ipam": {"socket": "/run/x.sock"}}]});
        let config = plugin_config(&list);
        assert_eq!(config["name"], "strait");
        assert_eq!(config["cniVersion"], "1.0.0");
        assert_eq!(config["ipam"]["socket"], "/run/x.sock");
        assert_eq!(
            pod_ip(&json!({"ips": [{"address": "10.244.1.5/32"}]})).as_deref(),
            Some("10.244.1.5")
        );
    }
}
