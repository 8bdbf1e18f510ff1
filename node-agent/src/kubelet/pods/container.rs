//! One container's run through runc: its rootfs from the image store, its bundle, its log
//! file, start, stop with a grace period, and what its exit means (Completed, Error,
//! OOMKilled). Everything here blocks: callers run it on the blocking pool.

use std::{
    fs,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Container, Pod};
use strait_runtime::{ContainerConfig, Exit, ExitStatus, Mount, Status};

use super::{Context, spec, volumes::Prepared};

/// Why a container could not start, in the kubelet's words (the waiting reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFailure {
    pub reason: &'static str,
    pub message: String,
    /// Whether it counts as a failed run (restart with backoff), or only waits (image absent).
    pub ran: bool,
}

/// A started container.
#[derive(Debug)]
pub struct Started {
    pub runc_id: String,
    pub pid: u32,
    /// The init's exit, when this agent created it; an adopted one is polled through /proc.
    pub exit: Option<Exit>,
    pub started_at: String,
    pub image_id: String,
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    /// Why, when the runtime knows (a failed start).
    pub message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

/// The runc id of a pod's container: unique on the node, stable across agent restarts.
pub fn runc_id(uid: &str, name: &str) -> String {
    format!("{uid}-{name}")
}

/// The container's cgroupsPath: under the node's subtree, per pod.
pub fn cgroups_path(ctx: &Context, uid: &str, name: &str) -> String {
    format!("{}/pods/{uid}/{name}", ctx.cgroup_parent)
}

/// The log file of a container's `restart`th run.
pub fn log_path(pod_dir: &Path, name: &str, restart: u32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(name)
        .join(format!("{restart}.log"))
}

/// Starts `container` of `pod` (its `restart`th run).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub fn start(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
    pod_dir: &Path,
    netns: Option<&Path>,
    volumes: &[Prepared],
    env: Vec<(String, String)>,
    restart: u32,
) -> Result<Started, StartFailure> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = &container.name;
    let fail = |reason: &'static str, message: String, ran: bool| StartFailure {
        reason,
        message,
        ran,
    };
    let reference = container.image.clone().unwrap_or_default();
    let image = match ctx.images.resolve(&reference) {
        Ok(Some(image)) => image,
        Ok(None) => {
            let never = container.image_pull_policy.as_deref() == Some("Never");
            return Err(if never {
                fail(
                    "ErrImageNeverPull",
                    format!(
                        "Container image \"{reference}\" is not present with pull policy of Never"
                    ),
                    false,
                )
            } else {
                fail(
                    "ErrImagePull",
                    format!(
                        "image \"{reference}\" is not in the node's image store and Strait does not pull from registries: import it with `netctl image import`"
                    ),
                    false,
                )
            });
        }
        Err(error) => return Err(fail("InvalidImageName", error.to_string(), false)),
    };
    let argv = spec::argv(container, &image.config.entrypoint, &image.config.cmd);
    if argv.is_empty() {
        return Err(fail(
            "CreateContainerError",
            "no command specified".to_owned(),
            false,
        ));
    }
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| {
                fail(
                    "CreateContainerConfigError",
                    format!("volumeMount {} refers to no volume of the pod", mount.name),
                    false,
                )
            })?;
        let mut source = volume.path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(fail(
                    "CreateContainerConfigError",
                    format!("subPath {sub:?} must be relative and may not contain '..'"),
                    false,
                ));
            }
            source = source.join(sub);
            let _ = fs::create_dir_all(&source);
        }
        mounts.push(Mount {
            destination: mount.mount_path.clone(),
            source,
            readonly: mount.read_only.unwrap_or(false),
        });
    }
    for file in ["hosts", "resolv.conf", "hostname"] {
        if !mounts
            .iter()
            .any(|m| m.destination == format!("/etc/{file}"))
        {
            mounts.push(Mount {
                destination: format!("/etc/{file}"),
                source: pod_dir.join("etc").join(file),
                readonly: false,
            });
        }
    }
    let security = container.security_context.as_ref();
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let user = image.config.user.clone().unwrap_or_default();
    let (image_uid, image_gid) = match user.split_once(':') {
        Some((u, g)) => (u.parse().unwrap_or(0), g.parse().unwrap_or(0)),
        None => (user.parse().unwrap_or(0), 0),
    };
    let uid_of = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let run_uid = uid_of(security.and_then(|s| s.run_as_user))
        .or(uid_of(pod_security.and_then(|s| s.run_as_user)))
        .unwrap_or(image_uid);
    let run_gid = uid_of(security.and_then(|s| s.run_as_group))
        .or(uid_of(pod_security.and_then(|s| s.run_as_group)))
        .unwrap_or(image_gid);
    let dir = pod_dir.join("containers").join(name);
    let rootfs = dir.join("rootfs");
    let scratch = dir.join("scratch");
    // A fresh writable layer for every run, as a new container gets.
    let _ = strait_image::unmount_rootfs(&rootfs);
    let _ = fs::remove_dir_all(&scratch);
    for d in [&rootfs, &scratch] {
        fs::create_dir_all(d).map_err(|e| {
            fail(
                "CreateContainerError",
                format!("{}: {e}", d.display()),
                false,
            )
        })?;
    }
    strait_image::mount_rootfs(&image, &scratch, &rootfs)
        .map_err(|e| fail("CreateContainerError", e.to_string(), false))?;
    let config = ContainerConfig {
        rootfs: rootfs.clone(),
        args: argv,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: container
            .working_dir
            .clone()
            .or(image.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
        uid: run_uid,
        gid: run_gid,
        hostname: spec::hostname(pod),
        netns: netns.map(Path::to_path_buf),
        mounts,
        resources: spec::resources(container),
        cgroups_path: cgroups_path(ctx, &uid, name),
        readonly_rootfs: security
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        terminal: false,
    };
    let id = runc_id(&uid, name);
    let _ = ctx.runc.delete(&id, true);
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).map_err(|e| fail("CreateContainerError", e.to_string(), false))?;
    strait_runtime::write_bundle(&bundle, &config)
        .map_err(|e| fail("CreateContainerError", e.to_string(), false))?;
    let log = log_path(pod_dir, name, restart);
    if let Some(parent) = log.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let (out, err) = spawn_log_shim(ctx, &log).map_err(|e| {
        fail(
            "CreateContainerError",
            format!("log shim for {}: {e}", log.display()),
            false,
        )
    })?;
    let started_at = super::super::node::now();
    let created = ctx
        .runc
        .create(
            &id,
            &bundle,
            strait_runtime::Stdio {
                stdin: None,
                stdout: Some(out),
                stderr: Some(err),
            },
            &dir.join("pid"),
        )
        .map_err(|e| fail("StartError", e.to_string(), true))?;
    if let Err(error) = ctx.runc.start(&id) {
        let _ = ctx.runc.delete(&id, true);
        return Err(fail("StartError", error.to_string(), true));
    }
    Ok(Started {
        runc_id: id,
        pid: created.pid,
        exit: Some(created.exit),
        started_at,
        image_id: image.id.clone(),
    })
}

/// Starts the container's log shim (`strait-agent log-shim`, see `kubelet::logs`) on two new
/// pipes and returns their write ends, for runc to give the container as stdout and stderr.
fn spawn_log_shim(ctx: &Context, log: &Path) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::{fd::AsRawFd as _, unix::process::CommandExt as _};
    let (out_read, out_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let err_raw = err_read.as_raw_fd();
    let mut command = std::process::Command::new(&ctx.agent_binary);
    command
        .arg("log-shim")
        .arg("--path")
        .arg(log)
        .stdin(std::process::Stdio::from(out_read))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe; it puts the
    // stderr pipe's read end at fd 3 (clearing close-on-exec on the copy), where the shim
    // expects it.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(err_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ctx.reaper.spawn(&mut command)?;
    // Our copies of the read ends close with `command` and `err_read`: only the shim reads.
    drop(command);
    drop(err_read);
    Ok((out_write, err_write))
}

/// Adopts a container an earlier agent started, if runc says it still runs.
pub fn adopt(
    ctx: &Context,
    uid: &str,
    name: &str,
    started_at: String,
    image_id: String,
) -> Option<Started> {
    let id = runc_id(uid, name);
    let state = ctx.runc.state(&id).ok()??;
    (state.status == Status::Running).then_some(Started {
        runc_id: id,
        pid: state.pid,
        exit: None,
        started_at,
        image_id,
    })
}

/// The exit status if the container has ended; for adopted containers (not this process's
/// children) only that it ended, with an unknown code.
pub fn poll(started: &Started) -> Option<Option<ExitStatus>> {
    match &started.exit {
        Some(exit) => exit.try_status().map(Some),
        None => (!Path::new(&format!("/proc/{}", started.pid)).exists()).then_some(None),
    }
}

/// Stops a running container: TERM (or the image's stop signal), `grace`, then KILL.
pub fn stop(ctx: &Context, started: &Started, grace: Duration) {
    let _ = ctx.runc.kill(&started.runc_id, libc::SIGTERM, false);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if poll(started).is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = ctx.runc.kill(&started.runc_id, libc::SIGKILL, true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && poll(started).is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records how the container ended (reading the OOM counter before runc removes its
/// cgroup), then deletes it and its rootfs mount.
pub fn finish(
    ctx: &Context,
    uid: &str,
    name: &str,
    pod_dir: &Path,
    started: &Started,
    status: Option<ExitStatus>,
) -> Ended {
    let oom = ctx
        .cgroups
        .oom_kill_count(&cgroups_path(ctx, uid, name))
        .unwrap_or(0)
        > 0;
    let _ = ctx.runc.delete(&started.runc_id, true);
    let _ = strait_image::unmount_rootfs(&pod_dir.join("containers").join(name).join("rootfs"));
    let (exit_code, signal) = match status {
        Some(status) => (status.code(), status.signal()),
        // Ended while no agent was its parent: the code is lost.
        None => (137, None),
    };
    let reason = if oom {
        "OOMKilled"
    } else if status.is_none() {
        "Unknown"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Ended {
        exit_code,
        signal,
        reason: reason.to_owned(),
        message: None,
        started_at: started.started_at.clone(),
        finished_at: super::super::node::now(),
    }
}
