//! One pod's lifecycle (see the module above for the whole story).

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    Context,
    container::{self, Ended, StartFailure, Started},
    hook,
    probe::{self, Outcome},
    read_objects, sandbox, spec, volumes,
};
use crate::kubelet::node::now;

/// How often the worker looks at its containers.
const TICK: Duration = Duration::from_millis(200);
/// How often configMap and secret volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(2);

/// A container's state as the worker tracks it.
#[derive(Debug, Default)]
struct Ctr {
    restarts: u32,
    running: Option<Started>,
    last: Option<Ended>,
    waiting: Option<(String, String)>,
    next_start: Option<Instant>,
    /// Ended for good (restartPolicy says no more runs), or an init container that succeeded.
    done: bool,
    ready: bool,
    started: bool,
    /// The wait before the next start is a crash backoff (not a retry of a failed setup).
    crashed: bool,
    probes: HashMap<&'static str, ProbeState>,
}

#[derive(Debug, Default)]
struct ProbeState {
    next: Option<Instant>,
    failures: i32,
    successes: i32,
}

/// The sandbox as written to disk, for adoption after an agent restart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SandboxFile {
    pod_ip: String,
    netns: PathBuf,
    cni_result: Value,
}

/// Runs one pod until it is deleted.
pub(super) async fn run(
    ctx: Arc<Context>,
    uid: String,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) {
    let dir = ctx.pods_dir.join(&uid);
    let Some(first) = updates.borrow().clone() else {
        return;
    };
    let key = format!(
        "{}/{}",
        first.metadata.namespace.as_deref().unwrap_or_default(),
        first.metadata.name.as_deref().unwrap_or_default()
    );
    let mut worker = Worker {
        ctx,
        uid,
        dir,
        key,
        pod: first,
        sandbox: None,
        volumes: Vec::new(),
        inits: Vec::new(),
        apps: Vec::new(),
        volume_error: None,
        last_status: Value::Null,
        start_time: now(),
        last_refresh: None,
    };
    worker.restore();
    loop {
        let gone = updates.borrow().is_none();
        if let Some(pod) = updates.borrow_and_update().clone() {
            worker.pod = pod;
        }
        if gone {
            worker.teardown(Duration::from_secs(2)).await;
            return;
        }
        if worker.pod.metadata.deletion_timestamp.is_some() {
            let grace = worker
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or(worker
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            worker
                .teardown(Duration::from_secs(grace.max(0).unsigned_abs()))
                .await;
            worker.finalize().await;
            return;
        }
        worker.sync().await;
        let _ = tokio::time::timeout(TICK, updates.changed()).await;
    }
}

struct Worker {
    ctx: Arc<Context>,
    uid: String,
    dir: PathBuf,
    key: String,
    pod: Arc<Pod>,
    sandbox: Option<SandboxFile>,
    volumes: Vec<volumes::Prepared>,
    inits: Vec<Ctr>,
    apps: Vec<Ctr>,
    volume_error: Option<String>,
    last_status: Value,
    start_time: String,
    last_refresh: Option<Instant>,
}

impl Worker {
    fn spec_containers(&self, init: bool) -> Vec<Container> {
        let spec = self.pod.spec.as_ref();
        if init {
            spec.and_then(|s| s.init_containers.clone())
                .unwrap_or_default()
        } else {
            spec.map(|s| s.containers.clone()).unwrap_or_default()
        }
    }

    fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Reads back what an earlier agent left: the sandbox, running containers and counts.
    fn restore(&mut self) {
        self.inits = self
            .spec_containers(true)
            .iter()
            .map(|_| Ctr::default())
            .collect();
        self.apps = self
            .spec_containers(false)
            .iter()
            .map(|_| Ctr::default())
            .collect();
        let Ok(text) = fs::read_to_string(self.dir.join("sandbox.json")) else {
            return;
        };
        let Ok(sandbox) = serde_json::from_str::<SandboxFile>(&text) else {
            return;
        };
        self.ctx.policy.attach(&self.key, &sandbox.cni_result);
        self.sandbox = Some(sandbox);
        let status = self.pod.status.clone().unwrap_or_default();
        if let Some(start) = status
            .start_time
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
        {
            self.start_time = start.as_str().unwrap_or_default().to_owned();
        }
        for (init, statuses) in [
            (true, status.init_container_statuses),
            (false, status.container_statuses),
        ] {
            let containers = self.spec_containers(init);
            for (i, c) in containers.iter().enumerate() {
                let previous = statuses.iter().flatten().find(|s| s.name == c.name);
                let ctr = if init {
                    &mut self.inits[i]
                } else {
                    &mut self.apps[i]
                };
                ctr.restarts = previous.map_or(0, |s| u32::try_from(s.restart_count).unwrap_or(0));
                let started_at = previous
                    .and_then(|s| s.state.as_ref())
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.as_ref())
                    .and_then(|t| serde_json::to_value(t).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(now);
                let image_id = previous.map(|s| s.image_id.clone()).unwrap_or_default();
                if init
                    && previous
                        .and_then(|s| s.state.as_ref())
                        .and_then(|s| s.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 0)
                {
                    ctr.done = true;
                    continue;
                }
                if let Some(started) =
                    container::adopt(&self.ctx, &self.uid, &c.name, started_at, image_id)
                {
                    info!(pod = %self.key, container = %c.name, "adopted a running container");
                    ctr.started = true;
                    ctr.ready = previous.is_some_and(|s| s.ready);
                    ctr.running = Some(started);
                }
            }
        }
    }

    async fn sync(&mut self) {
        if self.sandbox.is_none() {
            match self.create_sandbox().await {
                Ok(sandbox) => {
                    // Policy goes on the veth before any container can send a packet.
                    self.ctx.policy.attach(&self.key, &sandbox.cni_result);
                    self.sandbox = Some(sandbox);
                }
                Err(message) => {
                    warn!(pod = %self.key, %message, "sandbox failed");
                    self.volume_error = Some(message);
                    self.report().await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    return;
                }
            }
        }
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= VOLUME_REFRESH)
        {
            self.last_refresh = Some(Instant::now());
            let objects = read_objects(&self.ctx.client, &self.pod).await;
            let pod = Arc::clone(&self.pod);
            let dir = self.dir.join("volumes");
            let prepared =
                tokio::task::spawn_blocking(move || volumes::prepare(&pod, &dir, &objects))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
            match prepared {
                Ok(v) => {
                    self.volumes = v;
                    self.volume_error = None;
                }
                Err(message) => self.volume_error = Some(message),
            }
        }
        if self.volume_error.is_none() {
            self.step_containers().await;
        }
        self.report().await;
    }

    async fn create_sandbox(&self) -> Result<SandboxFile, String> {
        let ctx = Arc::clone(&self.ctx);
        let pod = Arc::clone(&self.pod);
        let dir = self.dir.clone();
        let uid = self.uid.clone();
        tokio::task::spawn_blocking(move || {
            let netns = dir.join("netns");
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let host_network = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            let (pod_ip, result) = if host_network {
                (ctx.node_ip.clone(), Value::Null)
            } else {
                sandbox::create_netns(&netns).map_err(|e| e.to_string())?;
                let call = sandbox::CniCall {
                    plugin_dir: &ctx.cni_dir,
                    conflist: &ctx.conflist,
                    container_id: &uid,
                    netns: &netns,
                    namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod: pod.metadata.name.as_deref().unwrap_or_default(),
                    uid: &uid,
                };
                let result = match call.run(&ctx.reaper, "ADD", None) {
                    Ok(result) => result,
                    Err(error) => {
                        sandbox::remove_netns(&netns);
                        return Err(error.to_string());
                    }
                };
                let ip = sandbox::pod_ip(&result).ok_or("strait-cni gave no address")?;
                (ip, result)
            };
            let etc = dir.join("etc");
            fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
            let write = |name: &str, text: String| {
                fs::write(etc.join(name), text).map_err(|e| format!("{name}: {e}"))
            };
            write(
                "hosts",
                spec::hosts_file(&pod, &pod_ip, &ctx.cluster_domain),
            )?;
            write(
                "resolv.conf",
                spec::resolv_conf(
                    &pod,
                    &ctx.cluster_dns,
                    &ctx.cluster_domain,
                    &ctx.host_resolv,
                ),
            )?;
            write("hostname", format!("{}\n", spec::hostname(&pod)))?;
            let file = SandboxFile {
                pod_ip,
                netns: if host_network { PathBuf::new() } else { netns },
                cni_result: result,
            };
            fs::write(
                dir.join("sandbox.json"),
                serde_json::to_vec(&file).unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            Ok(file)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Starts what is due, notices exits, runs probes.
    async fn step_containers(&mut self) {
        // Init containers in order: the next starts when the previous succeeded.
        let inits = self.spec_containers(true);
        for (i, c) in inits.iter().enumerate() {
            if self.inits[i].done {
                continue;
            }
            self.step_one(true, i, c).await;
            if !self.inits[i].done {
                return;
            }
        }
        let apps = self.spec_containers(false);
        for (i, c) in apps.iter().enumerate() {
            self.step_one(false, i, c).await;
        }
    }

    async fn step_one(&mut self, init: bool, i: usize, c: &Container) {
        let policy = self.restart_policy().to_owned();
        // Exits.
        let exited = {
            let ctr = if init { &self.inits[i] } else { &self.apps[i] };
            ctr.running.as_ref().and_then(container::poll)
        };
        if let Some(status) = exited {
            let ctr = if init {
                &mut self.inits[i]
            } else {
                &mut self.apps[i]
            };
            let started = ctr.running.take().expect("polled above");
            let ctx = Arc::clone(&self.ctx);
            let (uid, name, dir) = (self.uid.clone(), c.name.clone(), self.dir.clone());
            let ended = tokio::task::spawn_blocking(move || {
                container::finish(&ctx, &uid, &name, &dir, &started, status)
            })
            .await
            .ok();
            let ctr = if init {
                &mut self.inits[i]
            } else {
                &mut self.apps[i]
            };
            ctr.ready = false;
            ctr.started = false;
            ctr.probes.clear();
            if let Some(ended) = ended {
                info!(pod = %self.key, container = %c.name, code = ended.exit_code, reason = %ended.reason, "container ended");
                let failed = ended.exit_code != 0;
                let restart = match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => failed,
                    _ => !init || failed,
                };
                if init && !failed {
                    ctr.done = true;
                } else if restart {
                    ctr.crashed = true;
                    ctr.next_start = Some(Instant::now() + spec::backoff(ctr.restarts));
                    ctr.restarts += 1;
                } else {
                    ctr.done = true;
                }
                ctr.last = Some(ended);
            }
        }
        // Starts.
        let due = {
            let ctr = if init { &self.inits[i] } else { &self.apps[i] };
            ctr.running.is_none() && !ctr.done && ctr.next_start.is_none_or(|t| Instant::now() >= t)
        };
        if due {
            self.start_container(init, i, c).await;
        } else if let Some(at) = (if init { &self.inits[i] } else { &self.apps[i] }).next_start
            && Instant::now() < at
        {
            let ctr = if init {
                &mut self.inits[i]
            } else {
                &mut self.apps[i]
            };
            if ctr.running.is_none() && !ctr.done && ctr.crashed {
                let last = ctr.last.as_ref();
                ctr.waiting = Some((
                    "CrashLoopBackOff".to_owned(),
                    format!(
                        "back-off {}s restarting failed container={} pod={}{}",
                        spec::backoff(ctr.restarts.saturating_sub(1)).as_secs(),
                        c.name,
                        self.pod.metadata.name.as_deref().unwrap_or_default(),
                        last.map(|l| format!(" (last exit {} {})", l.exit_code, l.reason))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        if !init {
            self.probe(i, c).await;
        }
    }

    async fn start_container(&mut self, init: bool, i: usize, c: &Container) {
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let objects = read_objects(&self.ctx.client, &self.pod).await;
        let mut pod = (*self.pod).clone();
        // The downward API's status.podIP must see the address now, before status is written.
        pod.status.get_or_insert_default().pod_ip = Some(sandbox.pod_ip.clone());
        pod.status.get_or_insert_default().host_ip = Some(self.ctx.node_ip.clone());
        let image_env = self
            .ctx
            .images
            .resolve(c.image.as_deref().unwrap_or_default())
            .ok()
            .flatten()
            .map(|im| im.config.env)
            .unwrap_or_default();
        let env = match spec::environment(&pod, c, &image_env, &objects) {
            Ok(env) => env,
            Err(message) => {
                let ctr = if init {
                    &mut self.inits[i]
                } else {
                    &mut self.apps[i]
                };
                ctr.waiting = Some(("CreateContainerConfigError".to_owned(), message));
                return;
            }
        };
        let ctx = Arc::clone(&self.ctx);
        let dir = self.dir.clone();
        let volumes = self.volumes.clone();
        let container = c.clone();
        let restart = (if init { &self.inits[i] } else { &self.apps[i] }).restarts;
        let netns = (!sandbox.netns.as_os_str().is_empty()).then_some(sandbox.netns);
        let result: Result<Started, StartFailure> = tokio::task::spawn_blocking(move || {
            container::start(
                &ctx,
                &pod,
                &container,
                &dir,
                netns.as_deref(),
                &volumes,
                env,
                restart,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(StartFailure {
                reason: "StartError",
                message: e.to_string(),
                ran: false,
            })
        });
        let ctr = if init {
            &mut self.inits[i]
        } else {
            &mut self.apps[i]
        };
        match result {
            Ok(started) => {
                info!(pod = %self.key, container = %c.name, "container started");
                ctr.running = Some(started);
                ctr.waiting = None;
                ctr.next_start = None;
                ctr.started = c.startup_probe.is_none();
            }
            Err(failure) => {
                warn!(pod = %self.key, container = %c.name, reason = failure.reason, message = %failure.message, "container did not start");
                ctr.crashed = failure.ran;
                if failure.ran {
                    ctr.last = Some(Ended {
                        exit_code: 128,
                        signal: None,
                        reason: failure.reason.to_owned(),
                        message: Some(failure.message.clone()),
                        started_at: now(),
                        finished_at: now(),
                    });
                    ctr.next_start = Some(Instant::now() + spec::backoff(ctr.restarts));
                    ctr.restarts += 1;
                } else {
                    ctr.next_start = Some(Instant::now() + Duration::from_secs(2));
                }
                ctr.waiting = Some((failure.reason.to_owned(), failure.message));
            }
        }
    }

    async fn probe(&mut self, i: usize, c: &Container) {
        let Some(pod_ip) = self.sandbox.as_ref().map(|s| s.pod_ip.clone()) else {
            return;
        };
        let Some(runc_id) = self.apps[i].running.as_ref().map(|r| r.runc_id.clone()) else {
            return;
        };
        let started = self.apps[i].started;
        let probes: Vec<(&'static str, k8s_openapi::api::core::v1::Probe)> = [
            ("startup", c.startup_probe.clone().filter(|_| !started)),
            ("liveness", c.liveness_probe.clone().filter(|_| started)),
            ("readiness", c.readiness_probe.clone().filter(|_| started)),
        ]
        .into_iter()
        .filter_map(|(k, p)| Some((k, p?)))
        .collect();
        if c.readiness_probe.is_none() {
            self.apps[i].ready = started;
        }
        for (kind, p) in probes {
            let now_instant = Instant::now();
            let state = self.apps[i].probes.entry(kind).or_default();
            let next = *state.next.get_or_insert(
                now_instant
                    + Duration::from_secs(
                        p.initial_delay_seconds
                            .unwrap_or(0)
                            .max(0)
                            .unsigned_abs()
                            .into(),
                    ),
            );
            if now_instant < next {
                continue;
            }
            let outcome = probe::run(&p, c, &pod_ip, &self.ctx.runc, &runc_id).await;
            let period =
                Duration::from_secs(p.period_seconds.unwrap_or(10).max(1).unsigned_abs().into());
            let state = self.apps[i].probes.entry(kind).or_default();
            state.next = Some(Instant::now() + period);
            match outcome {
                Outcome::Success => {
                    state.failures = 0;
                    state.successes += 1;
                    if state.successes >= p.success_threshold.unwrap_or(1) {
                        match kind {
                            "startup" => self.apps[i].started = true,
                            "readiness" => self.apps[i].ready = true,
                            _ => {}
                        }
                    }
                }
                Outcome::Failure(why) => {
                    state.successes = 0;
                    state.failures += 1;
                    let failed = state.failures >= p.failure_threshold.unwrap_or(3);
                    match kind {
                        "readiness" if failed => self.apps[i].ready = false,
                        "readiness" => {}
                        _ if failed => {
                            warn!(pod = %self.key, container = %c.name, probe = kind, %why, "probe failed: restarting the container");
                            if let Some(running) = self.apps[i].running.as_ref() {
                                let ctx = Arc::clone(&self.ctx);
                                let id = running.runc_id.clone();
                                let grace = self
                                    .pod
                                    .spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                                    .unwrap_or(30);
                                let _ = tokio::task::spawn_blocking(move || {
                                    let _ = ctx.runc.kill(&id, libc::SIGTERM, false);
                                    std::thread::sleep(Duration::from_secs(
                                        grace.clamp(0, 2).unsigned_abs(),
                                    ));
                                    let _ = ctx.runc.kill(&id, libc::SIGKILL, true);
                                })
                                .await;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Builds the Pod's status and writes it when it changed.
    async fn report(&mut self) {
        let status = self.status();
        let mut comparable = status.clone();
        strip_times(&mut comparable);
        if comparable == self.last_status {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({"status": status});
        match pods
            .patch_status(
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_status = comparable,
            Err(error) => warn!(pod = %self.key, %error, "failed to write the pod's status"),
        }
    }

    fn status(&self) -> Value {
        let now = now();
        let ip = self.sandbox.as_ref().map(|s| s.pod_ip.clone());
        let container_status = |c: &Container, ctr: &Ctr| {
            let state = if let Some(r) = &ctr.running {
                json!({"running": {"startedAt": r.started_at}})
            } else if let Some((reason, message)) = ctr.waiting.as_ref().filter(|_| !ctr.done) {
                json!({"waiting": {"reason": reason, "message": message}})
            } else if let Some(last) = ctr.last.as_ref().filter(|_| ctr.done) {
                terminated(last)
            } else {
                json!({"waiting": {"reason": "ContainerCreating"}})
            };
            let last_state = match (&ctr.last, ctr.done) {
                (Some(last), false) => json!({"terminated": terminated(last)["terminated"]}),
                _ => json!({}),
            };
            let image = c.image.clone().unwrap_or_default();
            json!({
                "name": c.name,
                "image": image,
                "imageID": ctr.running.as_ref().map(|r| r.image_id.clone()).unwrap_or_default(),
                "containerID": ctr.running.as_ref().map(|r| format!("runc://{}", r.runc_id)),
                "ready": ctr.running.is_some() && ctr.ready,
                "started": ctr.running.is_some() && ctr.started,
                "restartCount": ctr.restarts,
                "state": state,
                "lastState": last_state,
            })
        };
        let inits = self.spec_containers(true);
        let apps = self.spec_containers(false);
        let init_statuses: Vec<Value> = inits
            .iter()
            .zip(&self.inits)
            .map(|(c, s)| container_status(c, s))
            .collect();
        let app_statuses: Vec<Value> = apps
            .iter()
            .zip(&self.apps)
            .map(|(c, s)| container_status(c, s))
            .collect();
        let initialized = self.inits.iter().all(|c| c.done);
        let all_ready =
            !self.apps.is_empty() && self.apps.iter().all(|c| c.running.is_some() && c.ready);
        let all_done = !self.apps.is_empty() && self.apps.iter().all(|c| c.done);
        let any_failed = self
            .apps
            .iter()
            .chain(&self.inits)
            .any(|c| c.done && c.last.as_ref().is_some_and(|l| l.exit_code != 0));
        let phase = if all_done
            || (self
                .inits
                .iter()
                .any(|c| c.done && c.last.as_ref().is_some_and(|l| l.exit_code != 0)))
        {
            if any_failed { "Failed" } else { "Succeeded" }
        } else if initialized
            && self
                .apps
                .iter()
                .any(|c| c.running.is_some() || c.restarts > 0)
        {
            "Running"
        } else {
            "Pending"
        };
        let condition = |kind: &str, ok: bool, reason: Option<&str>| {
            let mut c = json!({"type": kind, "status": if ok {"True"} else {"False"}, "lastTransitionTime": now.clone()});
            if let Some(reason) = reason.filter(|_| !ok) {
                c["reason"] = json!(reason);
            }
            c
        };
        let mut status = json!({
            "phase": phase,
            "hostIP": self.ctx.node_ip,
            "hostIPs": [{"ip": self.ctx.node_ip}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", self.sandbox.is_some(), None),
                condition("Initialized", initialized, Some("ContainersNotInitialized")),
                condition("Ready", all_ready && phase == "Running", Some("ContainersNotReady")),
                condition("ContainersReady", all_ready, Some("ContainersNotReady")),
                condition("PodScheduled", true, None),
            ],
            "containerStatuses": app_statuses,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(ip) = ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some(message) = &self.volume_error {
            status["message"] = json!(message);
            status["reason"] = json!("FailedMount");
        }
        status
    }

    /// Stops every container within `grace`, then removes the sandbox and the pod's files.
    async fn teardown(&mut self, grace: Duration) {
        let mut stops = Vec::new();
        let specs = self
            .spec_containers(true)
            .into_iter()
            .chain(self.spec_containers(false));
        for (ctr, spec) in self.inits.iter_mut().chain(self.apps.iter_mut()).zip(specs) {
            if let Some(started) = ctr.running.take() {
                let ctx = Arc::clone(&self.ctx);
                let pod_ip = self
                    .sandbox
                    .as_ref()
                    .map(|s| s.pod_ip.clone())
                    .unwrap_or_default();
                let key = self.key.clone();
                stops.push(tokio::spawn(async move {
                    let (left, outcome) =
                        hook::pre_stop(&spec, &pod_ip, &ctx.runc, &started.runc_id, grace).await;
                    if let Some(Outcome::Failure(why)) = outcome {
                        warn!(pod = %key, container = %spec.name, %why, "preStop hook failed");
                    }
                    let _ = tokio::task::spawn_blocking(move || {
                        container::stop(&ctx, &started, left);
                        let _ = ctx.runc.delete(&started.runc_id, true);
                    })
                    .await;
                }));
            }
        }
        for stop in stops {
            let _ = stop.await;
        }
        let ctx = Arc::clone(&self.ctx);
        let dir = self.dir.clone();
        let uid = self.uid.clone();
        let pod = Arc::clone(&self.pod);
        let sandbox = self.sandbox.take();
        self.ctx.policy.detach(&self.key);
        let _ = tokio::task::spawn_blocking(move || {
            remove_pod_files(&ctx, &uid, &dir, &pod, sandbox.as_ref())
        })
        .await;
        info!(pod = %self.key, "pod torn down");
    }

    /// Deletes the Pod for good (grace 0, this uid only), as the kubelet does once its
    /// containers are gone.
    async fn finalize(&self) {
        let pods: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = pods
            .delete(
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                &params,
            )
            .await
        {
            warn!(pod = %self.key, %error, "failed to delete the pod after stopping it");
        }
    }
}

fn terminated(last: &Ended) -> Value {
    let mut t = json!({
        "exitCode": last.exit_code,
        "reason": last.reason,
        "startedAt": last.started_at,
        "finishedAt": last.finished_at,
    });
    if let Some(signal) = last.signal {
        t["signal"] = json!(signal);
    }
    if let Some(message) = &last.message {
        t["message"] = json!(message);
    }
    json!({"terminated": t})
}

/// Removes the time fields, so unchanged statuses are not rewritten.
fn strip_times(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("lastTransitionTime");
            for child in map.values_mut() {
                strip_times(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// CNI DEL, the namespace, the pod's cgroups and directory.
fn remove_pod_files(
    ctx: &Context,
    uid: &str,
    dir: &Path,
    pod: &Pod,
    sandbox: Option<&SandboxFile>,
) {
    let netns = dir.join("netns");
    if sandbox.is_none_or(|s| !s.netns.as_os_str().is_empty()) {
        let call = sandbox::CniCall {
            plugin_dir: &ctx.cni_dir,
            conflist: &ctx.conflist,
            container_id: uid,
            netns: &netns,
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod: pod.metadata.name.as_deref().unwrap_or_default(),
            uid,
        };
        if let Err(error) = call.run(&ctx.reaper, "DEL", None) {
            warn!(%uid, %error, "CNI DEL failed");
        }
        sandbox::remove_netns(&netns);
    }
    if let Ok(entries) = fs::read_dir(dir.join("containers")) {
        for entry in entries.flatten() {
            let _ = strait_image::unmount_rootfs(&entry.path().join("rootfs"));
        }
    }
    let _ = ctx
        .cgroups
        .remove_subtree(&format!("{}/pods/{uid}", ctx.cgroup_parent));
    let _ = fs::remove_dir_all(dir);
}

/// Pod directories with no Pod in the API (deleted while the agent was down): their
/// containers are killed and everything removed.
pub(super) fn collect_orphans(ctx: &Arc<Context>, current: &HashMap<String, Arc<Pod>>) {
    let Ok(entries) = fs::read_dir(&ctx.pods_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        if current.contains_key(&uid) {
            continue;
        }
        let ctx = Arc::clone(ctx);
        let dir = entry.path();
        tokio::task::spawn_blocking(move || {
            if let Ok(states) = ctx.runc.list() {
                for state in states.iter().filter(|s| s.id.starts_with(&uid)) {
                    let _ = ctx.runc.kill(&state.id, libc::SIGKILL, true);
                    let _ = ctx.runc.delete(&state.id, true);
                }
            }
            let sandbox = fs::read_to_string(dir.join("sandbox.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<SandboxFile>(&t).ok());
            remove_pod_files(&ctx, &uid, &dir, &Pod::default(), sandbox.as_ref());
            info!(%uid, "removed an orphaned pod");
        });
    }
}
