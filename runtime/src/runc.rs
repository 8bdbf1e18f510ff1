//! The runc command line, run through the [`Reaper`].
//!
//! Every call passes `--root` (the node's own state directory, so several agents on one host
//! never see each other's containers) and `--log FILE --log-format json`: a non-terminal
//! `runc create` hands its own stdio to the container, so its errors can only be read from
//! the log. Calls block until runc exits; from async code run them on a blocking thread.

use std::{
    fs,
    io::{self, Write as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;

use crate::{
    reaper::{Exit, ExitStatus, Reaper},
    spec::{ContainerConfig, oci_config},
};

/// What went wrong with runc.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("failed to run `{binary} {command}` for container {id}")]
    Spawn {
        binary: PathBuf,
        command: &'static str,
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("runc {command} of container {id} failed: {message}")]
    Failed {
        command: &'static str,
        id: String,
        status: ExitStatus,
        message: String,
    },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("unexpected output of runc {command} for container {id}")]
    Parse {
        command: &'static str,
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to read the pid file {path} of container {id}")]
    PidFile {
        id: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to watch the init (pid {pid}) of container {id}")]
    Watch {
        id: String,
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the bundle {dir}")]
    Bundle {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A container's status as runc reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

/// `runc state` of one container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    pub id: String,
    pub status: Status,
    /// The init's pid on the host; 0 once stopped.
    pub pid: u32,
    pub bundle: PathBuf,
}

/// The container's stdio; `None` is /dev/null. The container keeps these descriptors: a
/// `File` opened for appending to a log is the usual stdout and stderr.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A created container: its init's pid and a handle on the init's exit (the container's
/// exit code).
#[derive(Debug, Clone)]
pub struct Created {
    pub pid: u32,
    pub exit: Exit,
}

/// The runc binary and the state directory it keeps containers in.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// `--root`: one per node agent.
    pub root: PathBuf,
    reaper: Reaper,
}

impl Runc {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>, reaper: Reaper) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
            reaper,
        }
    }

    /// The reaper every runc process goes through (for callers running their own runc
    /// commands, such as `runc exec` probes).
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// `runc create`: sets the container up and leaves its init waiting for [`Self::start`].
    /// The init is this process's child from now on (this process being a subreaper): the
    /// returned [`Created::exit`] gives its exit status.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        pid_file: &Path,
    ) -> Result<Created, RuncError> {
        const COMMAND: &str = "create";
        let log = self.log_file(COMMAND, id)?;
        let mut command = self.command(log.path());
        command
            .arg(COMMAND)
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id);
        let null = |fd: Option<OwnedFd>| fd.map_or_else(std::process::Stdio::null, Into::into);
        command
            .stdin(null(stdio.stdin))
            .stdout(null(stdio.stdout))
            .stderr(null(stdio.stderr));
        let status = self
            .reaper
            .spawn(&mut command)
            .map_err(|source| self.spawn_error(COMMAND, id, source))?
            .wait();
        // Drop our copies of the container's stdio now that runc has passed them on.
        drop(command);
        if !status.success() {
            return Err(failure(COMMAND, id, status, log.path(), b""));
        }
        let pid = fs::read_to_string(pid_file)
            .and_then(|text| {
                text.trim()
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            })
            .map_err(|source| RuncError::PidFile {
                id: id.to_owned(),
                path: pid_file.to_owned(),
                source,
            })?;
        let exit = self.reaper.watch(pid).map_err(|source| RuncError::Watch {
            id: id.to_owned(),
            pid,
            source,
        })?;
        Ok(Created { pid, exit })
    }

    /// `runc start`: runs the user's process in a created container.
    pub fn start(&self, id: &str) -> Result<(), RuncError> {
        self.run("start", id, &[]).map(drop)
    }

    /// `runc state`; `None` for a container runc does not know.
    pub fn state(&self, id: &str) -> Result<Option<State>, RuncError> {
        const COMMAND: &str = "state";
        match self.run(COMMAND, id, &[]) {
            Ok(stdout) => {
                serde_json::from_slice(&stdout)
                    .map(Some)
                    .map_err(|source| RuncError::Parse {
                        command: COMMAND,
                        id: id.to_owned(),
                        source,
                    })
            }
            Err(RuncError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `runc kill`: sends `signal` to the init, or with `all` to every process of the
    /// container. A stopped container gives [`RuncError::NotRunning`]. Remember that an init without a handler ignores SIGTERM (it is PID 1):
    /// follow with SIGKILL after the grace period.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuncError> {
        let signal = signal.to_string();
        let mut args = Vec::new();
        if all {
            args.push("--all");
        }
        self.run_with("kill", &args, id, &[&signal]).map(drop)
    }

    /// `runc delete`; a container runc does not know is already deleted. With `force` a
    /// running container is killed first. runc removes the container's own cgroups; parents
    /// of the cgroupsPath are the caller's ([`crate::cgroup::Hierarchies::remove_subtree`]).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuncError> {
        let args: &[&str] = if force { &["--force"] } else { &[] };
        match self.run_with("delete", args, id, &[]) {
            Ok(_) | Err(RuncError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `runc list`: every container under this root.
    pub fn list(&self) -> Result<Vec<State>, RuncError> {
        const COMMAND: &str = "list";
        let log = self.log_file(COMMAND, "*")?;
        let output = self
            .reaper
            .output(self.command(log.path()).args([COMMAND, "--format", "json"]))
            .map_err(|source| self.spawn_error(COMMAND, "*", source))?;
        let status = std_status(output.status);
        if !status.success() {
            return Err(failure(COMMAND, "*", status, log.path(), &output.stderr));
        }
        // runc prints `null` for none.
        serde_json::from_slice::<Option<Vec<State>>>(&output.stdout)
            .map(Option::unwrap_or_default)
            .map_err(|source| RuncError::Parse {
                command: COMMAND,
                id: "*".into(),
                source,
            })
    }

    fn run(&self, command: &'static str, id: &str, after: &[&str]) -> Result<Vec<u8>, RuncError> {
        self.run_with(command, &[], id, after)
    }

    /// Runs `runc COMMAND OPTIONS… ID AFTER…` and returns its stdout.
    fn run_with(
        &self,
        command: &'static str,
        options: &[&str],
        id: &str,
        after: &[&str],
    ) -> Result<Vec<u8>, RuncError> {
        let log = self.log_file(command, id)?;
        let output = self
            .reaper
            .output(
                self.command(log.path())
                    .arg(command)
                    .args(options)
                    .arg(id)
                    .args(after),
            )
            .map_err(|source| self.spawn_error(command, id, source))?;
        let status = std_status(output.status);
        if status.success() {
            return Ok(output.stdout);
        }
        Err(failure(command, id, status, log.path(), &output.stderr))
    }

    fn command(&self, log: &Path) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(log)
            .args(["--log-format", "json"]);
        command
    }

    /// A fresh log file for one call, in the state directory (made if missing).
    fn log_file(
        &self,
        command: &'static str,
        id: &str,
    ) -> Result<tempfile::NamedTempFile, RuncError> {
        fs::create_dir_all(&self.root)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(".log-")
                    .suffix(".json")
                    .tempfile_in(&self.root)
            })
            .map_err(|source| self.spawn_error(command, id, source))
    }

    fn spawn_error(&self, command: &'static str, id: &str, source: io::Error) -> RuncError {
        RuncError::Spawn {
            binary: self.binary.clone(),
            command,
            id: id.to_owned(),
            source,
        }
    }
}

/// Writes `config.json` for `config` into the bundle directory `dir` (made if missing).
pub fn write_bundle(dir: &Path, config: &ContainerConfig) -> Result<PathBuf, RuncError> {
    let path = dir.join("config.json");
    let write = || -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut file = fs::File::create(&path)?;
        serde_json::to_writer_pretty(&mut file, &oci_config(config))?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().map_err(|source| RuncError::Bundle {
        dir: dir.to_owned(),
        source,
    })?;
    Ok(path)
}

fn std_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt as _;
    ExitStatus::from_raw(status.into_raw())
}

/// The error of a failed runc call, from its JSON log (or its stderr if the log is empty).
fn failure(
    command: &'static str,
    id: &str,
    status: ExitStatus,
    log: &Path,
    stderr: &[u8],
) -> RuncError {
    let log = fs::read_to_string(log).unwrap_or_default();
    let message = log_error(&log)
        .or_else(|| {
            let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
            (!stderr.is_empty()).then_some(stderr)
        })
        .unwrap_or_else(|| format!("{status} with no message"));
    if message.contains("container does not exist") {
        return RuncError::NotFound { id: id.to_owned() };
    }
    if message == "container not running" {
        return RuncError::NotRunning { id: id.to_owned() };
    }
    let prefix = format!("runc {command} failed: ");
    let message = message
        .strip_prefix(&prefix)
        .map(str::to_owned)
        .unwrap_or(message);
    RuncError::Failed {
        command,
        id: id.to_owned(),
        status,
        message,
    }
}

/// The last error in a runc JSON log (`{"level":"error","msg":"…","time":"…"}` per line).
fn log_error(log: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    log.lines().rev().find_map(|line| {
        let line = serde_json::from_str::<Line>(line).ok()?;
        matches!(line.level.as_str(), "error" | "fatal" | "panic").then_some(line.msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_of_the_log_is_the_message() {
        let log = concat!(
            r#"{"level":"warning","msg":"something odd","time":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH","time":"2024-01-01T00:00:00Z"}"#,
            "\nnot json\n",
        );
        assert_eq!(
            log_error(log).as_deref(),
            Some(
                "runc create failed: unable to start container process: exec: \"nosuch\": executable file not found in $PATH"
            )
        );
        assert_eq!(log_error(""), None);
    }

    #[test]
    fn states_parse_from_runc_json() {
        let json = r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":4242,"status":"running",
            "bundle":"/b","rootfs":"/b/rootfs","created":"2024-01-01T00:00:00Z","owner":""}"#;
        let state: State = serde_json::from_str(json).unwrap();
        assert_eq!(state.status, Status::Running);
        assert_eq!(state.pid, 4242);
    }
}
