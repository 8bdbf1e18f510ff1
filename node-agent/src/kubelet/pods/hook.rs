//! The preStop hook, run before a container is told to stop, as the kubelet does: exec
//! (through `runc exec`), httpGet or sleep. Its time counts against the pod's grace period,
//! so a Service has time to drop the endpoint before the process gets its TERM.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Container, Probe};
use strait_runtime::Runc;

use super::probe::{self, Outcome};

/// What a stop has left once the hook ran: the rest of `grace`, and never less than the two
/// seconds kube's kubelet adds when a hook used the whole period.
const AFTER_HOOK_MINIMUM: Duration = Duration::from_secs(2);

/// Runs `container`'s preStop hook (if any) within `grace`; returns the grace left for the
/// TERM → KILL sequence and the hook's outcome.
pub async fn pre_stop(
    container: &Container,
    pod_ip: &str,
    runc: &Arc<Runc>,
    runc_id: &str,
    grace: Duration,
) -> (Duration, Option<Outcome>) {
    let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return (grace, None);
    };
    let started = Instant::now();
    let outcome = if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0).unsigned_abs());
        tokio::time::sleep(wanted.min(grace)).await;
        Outcome::Success
    } else {
        // exec, httpGet and tcpSocket handlers are a probe's, with the grace as the timeout.
        let as_probe = Probe {
            exec: handler.exec.clone(),
            http_get: handler.http_get.clone(),
            tcp_socket: handler.tcp_socket.clone(),
            timeout_seconds: Some(i32::try_from(grace.as_secs().max(1)).unwrap_or(i32::MAX)),
            ..Probe::default()
        };
        probe::run(&as_probe, container, pod_ip, runc, runc_id).await
    };
    let left = grace.saturating_sub(started.elapsed());
    (left.max(AFTER_HOOK_MINIMUM.min(grace)), Some(outcome))
}
