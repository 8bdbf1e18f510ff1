//! Cluster tier: a Deployment on real agents behind a ClusterIP Service, driven with kubectl
//! 1.33 (rollout status, history, undo, pause, resume, scale) while a client on another node
//! keeps connecting through the Service. No request may fail: new pods take traffic only once
//! their readiness probe passes, and old ones leave the EndpointSlice (and so every node's
//! service map) during their preStop sleep, before they are told to stop.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use strait_tests::{
    Cluster,
    cluster::{BUSYBOX, Binaries},
    http_get,
};

const SERVICE_IP: &str = "10.96.9.9";

fn manifest(version: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "List", "items": [
  {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "default"}},
    "spec": {{"clusterIP": "{SERVICE_IP}", "selector": {{"app": "web"}}, "ports": [{{"port": 80, "targetPort": "http"}}]}}}},
  {{"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {{"name": "web", "namespace": "default", "annotations": {{"kubernetes.io/change-cause": "first version"}}}},
    "spec": {{"replicas": 3, "selector": {{"matchLabels": {{"app": "web"}}}},
      "strategy": {{"type": "RollingUpdate", "rollingUpdate": {{"maxSurge": 1, "maxUnavailable": 0}}}},
      "template": {{"metadata": {{"labels": {{"app": "web"}}}},
        "spec": {{"terminationGracePeriodSeconds": 10, "containers": [{{
          "name": "web", "image": "{BUSYBOX}", "imagePullPolicy": "Never",
          "command": ["sh", "-c", "mkdir -p /www && echo \"$VERSION\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
          "env": [{{"name": "VERSION", "value": "{version}"}}],
          "ports": [{{"name": "http", "containerPort": 8080}}],
          "readinessProbe": {{"httpGet": {{"path": "/", "port": "http"}}, "periodSeconds": 1}},
          "lifecycle": {{"preStop": {{"sleep": {{"seconds": 3}}}}}}
        }}]}}}}}}}}]}}"#
    )
}

/// A client on node-0 requesting through the Service every 50 ms; records every answer.
struct Client {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Result<String, String>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Client {
    fn start(cluster: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let node = &cluster.nodes[0];
        let (netns, cgroup) = (Arc::clone(&node.netns), node.cgroup.path().to_owned());
        let thread = thread::spawn({
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let answer = http_get(&netns, Some(&cgroup), &format!("{SERVICE_IP}:80"))
                        .map(|body| body.trim().to_owned());
                    seen.lock().unwrap().push(answer);
                    thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Answers so far: (versions in order of first appearance after `from`, failures).
    fn since(&self, from: usize) -> (Vec<String>, Vec<String>) {
        let seen = self.seen.lock().unwrap();
        let mut versions: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        for answer in &seen[from..] {
            match answer {
                Ok(v) if versions.last() != Some(v) => versions.push(v.clone()),
                Ok(_) => {}
                Err(e) => failures.push(e.clone()),
            }
        }
        (versions, failures)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until the latest answers are all `version`.
    fn wait_serving(&self, version: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let tail = &seen[seen.len().saturating_sub(10)..];
                if tail.len() == 10 && tail.iter().all(|a| a.as_deref() == Ok(version)) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Service does not serve only {version}: last answers {tail:?}"
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rollout_status(cluster: &Cluster) -> String {
    let out = cluster.control.kubectl(
        "1.33",
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rollout status failed: {text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    text
}

fn replica_sets(cluster: &Cluster) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "rs",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn kubectl_rolls_a_deployment_out_and_back_with_no_failed_request() {
    let bins = Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")));
    let (cluster, _images) = Cluster::start_with_busybox(&bins, 2);
    cluster.apply(&manifest("v1"));
    let status = rollout_status(&cluster);
    assert!(status.contains("successfully rolled out"), "{status}");

    let client = Client::start(&cluster);
    client.wait_serving("v1", Duration::from_secs(30));

    // A new template rolls out one surge pod at a time; the client never misses.
    let from = client.count();
    cluster.kubectl(&["set", "env", "deployment/web", "VERSION=v2"]);
    rollout_status(&cluster);
    client.wait_serving("v2", Duration::from_secs(30));
    let (versions, failures) = client.since(from);
    assert!(
        failures.is_empty(),
        "requests failed during the rollout: {failures:?}"
    );
    assert_eq!(versions.first().map(String::as_str), Some("v1"));
    assert_eq!(versions.last().map(String::as_str), Some("v2"));

    let history = cluster.kubectl(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Undo brings the first template back as revision 3.
    let from = client.count();
    cluster.kubectl(&["rollout", "undo", "deployment/web"]);
    rollout_status(&cluster);
    client.wait_serving("v1", Duration::from_secs(30));
    let (_, failures) = client.since(from);
    assert!(
        failures.is_empty(),
        "requests failed during the undo: {failures:?}"
    );
    let revision = cluster.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(revision, "3");

    // Paused, a template change makes no new ReplicaSet; resumed, it rolls out.
    cluster.kubectl(&["rollout", "pause", "deployment/web"]);
    let before = replica_sets(&cluster);
    cluster.kubectl(&["set", "env", "deployment/web", "VERSION=v3"]);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        replica_sets(&cluster),
        before,
        "a paused Deployment rolled out"
    );
    client.wait_serving("v1", Duration::from_secs(5));
    let from = client.count();
    cluster.kubectl(&["rollout", "resume", "deployment/web"]);
    rollout_status(&cluster);
    client.wait_serving("v3", Duration::from_secs(30));

    // Scaling down removes pods through the same graceful path.
    cluster.kubectl(&["scale", "deployment/web", "--replicas=1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if pods.lines().count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "still {pods}");
        thread::sleep(Duration::from_millis(200));
    }
    thread::sleep(Duration::from_secs(1));
    let (_, failures) = client.since(from);
    assert!(
        failures.is_empty(),
        "requests failed during resume and scale: {failures:?}"
    );
}
