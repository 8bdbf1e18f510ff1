//! Cluster tier: pods on real agents: runc containers from imported images, wired by
//! strait-cni, probed, restarted, reported, and reachable across nodes and through Services.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use strait_tests::{Cluster, cluster::Binaries, http_get};

const IMAGE: &str = strait_tests::cluster::BUSYBOX;

fn start(nodes: usize) -> (Cluster, tempfile::TempDir) {
    let bins = Binaries::beside(Path::new(env!("CARGO_BIN_EXE_strait-agent")));
    Cluster::start_with_busybox(&bins, nodes)
}

fn apply(cluster: &Cluster, manifest: &str) {
    cluster.apply(manifest);
}

fn pod_json(cluster: &Cluster, name: &str) -> Value {
    let out = cluster
        .control
        .kubectl("1.33", &["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Polls the pod until `check` accepts it, or panics with the pod and the agents' logs.
fn wait_pod(
    cluster: &Cluster,
    name: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let pod = pod_json(cluster, name);
        if check(&pod) {
            return pod;
        }
        if Instant::now() > deadline {
            let previous = cluster
                .control
                .kubectl("1.33", &["logs", name, "--previous"]);
            panic!(
                "pod {name} did not get there in {timeout:?}: {}\nits previous run's log: {}\n{}",
                serde_json::to_string_pretty(&pod["status"]).unwrap_or_default(),
                String::from_utf8_lossy(&previous.stdout),
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{name}", "namespace": "default", "labels": {{"app": "web"}}}},
  "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 2, "containers": [{{
    "name": "web", "image": "{IMAGE}", "imagePullPolicy": "Never",
    "command": ["sh", "-c", "mkdir -p /www && echo \"hello from $POD_NAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"],
    "env": [{{"name": "POD_NAME", "valueFrom": {{"fieldRef": {{"fieldPath": "metadata.name"}}}}}}],
    "ports": [{{"name": "http", "containerPort": 8080}}],
    "readinessProbe": {{"httpGet": {{"path": "/", "port": "http"}}, "periodSeconds": 1}}
  }}]}}}}"#
    )
}

#[test]
fn a_pod_runs_becomes_ready_and_is_reached_by_ip_and_through_a_service() {
    let (cluster, _images) = start(2);
    apply(&cluster, &web_pod("web-1", "node-1"));
    let pod = wait_pod(&cluster, "web-1", Duration::from_secs(30), ready);
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_owned();
    let node_cidr = cluster.kubectl(&["get", "node", "node-1", "-o", "jsonpath={.spec.podCIDR}"]);
    let prefix = node_cidr.rsplit_once('.').unwrap().0;
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "{ip} is outside {node_cidr}"
    );
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["status"]["hostIP"], cluster.nodes[1].ip);
    let status = &pod["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true);
    assert_eq!(status["restartCount"], 0);
    assert!(
        status["state"]["running"]["startedAt"].is_string(),
        "{status}"
    );

    // From the other node, by pod IP: routed node to node by the agents' routes.
    let other = &cluster.nodes[0];
    let body = http_get(&other.netns, None, &format!("{ip}:8080")).expect("the pod answers by IP");
    assert_eq!(body, "hello from web-1\n");

    // Through a ClusterIP Service whose EndpointSlice names the pod.
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
        {{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "web", "namespace": "default"}},
          "spec": {{"clusterIP": "10.96.8.8", "selector": {{"app": "web"}}, "ports": [{{"port": 80, "targetPort": 8080}}]}}}},
        {{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {{"name": "web-1", "namespace": "default", "labels": {{"kubernetes.io/service-name": "web"}}}},
          "addressType": "IPv4", "ports": [{{"port": 8080, "protocol": "TCP"}}],
          "endpoints": [{{"addresses": ["{ip}"], "conditions": {{"ready": true}}, "nodeName": "node-1"}}]}}]}}"#
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(&other.netns, Some(other.cgroup.path()), "10.96.8.8:80") {
            Ok(body) => break body,
            Err(error) if Instant::now() > deadline => {
                panic!("the Service does not answer: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(body, "hello from web-1\n");

    // Deleting the pod stops it within its grace period and removes it.
    cluster.kubectl(&["delete", "pod", "web-1", "--wait=true", "--timeout=30s"]);
    assert!(http_get(&other.netns, None, &format!("{ip}:8080")).is_err());
    let leftover = cluster.nodes[1].exec(&["ip", "-o", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&leftover.stdout).contains("lxc"),
        "the pod's veth is gone"
    );
}

#[test]
fn crash_loops_back_off_and_memory_hogs_are_oom_killed() {
    let (cluster, _images) = start(1);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "crasher", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "{IMAGE}",
        "command": ["sh", "-c", "echo crashing; exit 3"]}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "hog", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "restartPolicy": "Never", "containers": [{{"name": "c", "image": "{IMAGE}",
        "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        "resources": {{"limits": {{"memory": "16Mi"}}}}}}]}}}}]}}"#
        ),
    );
    let crasher = wait_pod(&cluster, "crasher", Duration::from_secs(30), |p| {
        let s = &p["status"]["containerStatuses"][0];
        s["restartCount"].as_u64() >= Some(1)
            && s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let status = &crasher["status"]["containerStatuses"][0];
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(crasher["status"]["phase"], "Running");

    let hog = wait_pod(&cluster, "hog", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Failed"
    });
    let terminated = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137);
}

#[test]
fn bad_pods_get_a_clear_reason_and_the_node_stays_ready() {
    let (cluster, _images) = start(1);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "no-image", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "strait.test/absent:1",
        "imagePullPolicy": "Never"}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "bad-command", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "{IMAGE}",
        "command": ["/no/such/binary"]}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "no-config", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "100"],
        "env": [{{"name": "X", "valueFrom": {{"configMapKeyRef": {{"name": "missing", "key": "k"}}}}}}]}}]}}}}]}}"#
        ),
    );
    let waiting = |name: &str, reason: &str| {
        let pod = wait_pod(&cluster, name, Duration::from_secs(30), |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
                || p["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"]
                    == reason
        });
        pod["status"]["containerStatuses"][0].clone()
    };
    let status = waiting("no-image", "ErrImageNeverPull");
    let message = status["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("strait.test/absent:1"), "{status}");
    let status = waiting("bad-command", "StartError");
    assert!(status.to_string().contains("/no/such/binary"), "{status}");
    let status = waiting("no-config", "CreateContainerConfigError");
    assert!(status.to_string().contains("missing"), "{status}");
    cluster.wait_ready(Duration::from_secs(5));
}

#[test]
fn config_map_updates_reach_the_file_and_an_agent_restart_restarts_nothing() {
    let (mut cluster, _images) = start(1);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
    {{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "settings", "namespace": "default"}},
      "data": {{"greeting": "first"}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "reader", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "terminationGracePeriodSeconds": 1, "volumes": [{{"name": "cfg", "configMap": {{"name": "settings"}}}}],
        "containers": [{{"name": "c", "image": "{IMAGE}",
          "command": ["sh", "-c", "mkdir -p /www; (while true; do cp /cfg/greeting /www/next && mv /www/next /www/index.html; sleep 0.1; done) & exec httpd -f -p 8080 -h /www"],
          "volumeMounts": [{{"name": "cfg", "mountPath": "/cfg"}}]}}]}}}}]}}"#
        ),
    );
    let pod = wait_pod(&cluster, "reader", Duration::from_secs(30), ready);
    let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    let node = &cluster.nodes[0];
    let get =
        |node: &strait_tests::cluster::Node| http_get(&node.netns, None, &format!("{ip}:8080"));
    let read_until = |node: &strait_tests::cluster::Node, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = get(node);
            if got.as_deref() == Ok(want) {
                return;
            }
            assert!(Instant::now() < deadline, "wanted {want:?}, got {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    read_until(node, "first");
    cluster.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"second"}}"#,
    ]);
    read_until(node, "second");

    // kill -9 the agent and start it again: the container keeps running, unrestarted.
    let before = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].clone();
    cluster.nodes[0].restart_agent();
    let node = &cluster.nodes[0];
    for _ in 0..20 {
        assert_eq!(
            get(node).as_deref(),
            Ok("second"),
            "the pod answers while the agent restarts"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_ready(Duration::from_secs(30));
    // The Node stays Ready through a restart, so wait for the new agent to have looked at
    // its containers (on a loaded machine its start-up takes seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.log().contains("adopted a running container") {
        assert!(Instant::now() < deadline, "no adoption: {}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = pod_json(&cluster, "reader");
    let status = &after["status"]["containerStatuses"][0];
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(status["state"]["running"]["startedAt"], before);
    // And it still follows the API after the restart.
    cluster.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"greeting":"third"}}"#,
    ]);
    read_until(node, "third");

    // Deleted (forced) while the agent is down: the restarted agent removes what is left.
    cluster.nodes[0].kill_agent();
    cluster.kubectl(&["delete", "pod", "reader", "--force", "--grace-period=0"]);
    cluster.nodes[0].restart_agent();
    let node = &cluster.nodes[0];
    let runc_root = node.state_dir.join("runc");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = node.exec(&["runc", "--root", runc_root.to_str().unwrap(), "list", "-q"]);
        let links = node.exec(&["ip", "-o", "link", "show"]);
        let containers = String::from_utf8_lossy(&listed.stdout).trim().to_owned();
        let veths = String::from_utf8_lossy(&links.stdout).contains("lxc");
        if containers.is_empty() && !veths {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: containers {containers:?}, veth {veths}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(get(node).is_err(), "the orphaned pod no longer answers");
}

#[test]
fn kubectl_logs_follow_previous_and_exec_go_through_the_agent() {
    let (cluster, _images) = start(1);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "talker", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "terminationGracePeriodSeconds": 1, "containers": [{{"name": "c", "image": "{IMAGE}",
        "command": ["sh", "-c", "i=0; while true; do echo line $i; echo oops $i >&2; i=$((i+1)); sleep 0.2; done"]}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "once", "namespace": "default"}},
      "spec": {{"nodeName": "node-0", "containers": [{{"name": "c", "image": "{IMAGE}",
        "command": ["sh", "-c", "echo run at $(date +%s%N); exit 1"]}}]}}}}]}}"#
        ),
    );
    wait_pod(&cluster, "talker", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    std::thread::sleep(Duration::from_millis(800));
    let logs = cluster.kubectl(&["logs", "talker"]);
    assert!(logs.starts_with("line 0\noops 0\n"), "{logs}");
    let tail = cluster.kubectl(&["logs", "talker", "--tail=1", "--timestamps"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("20") && tail.contains("Z "), "{tail}");

    // -f streams lines written after it started.
    let mut follow = cluster
        .control
        .kubectl_command("1.33", &["logs", "-f", "talker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let already = logs.lines().filter(|l| l.starts_with("line ")).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut newest = 0;
    while Instant::now() < deadline && newest < already + 5 {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500))
            && let Some(n) = line
                .strip_prefix("line ")
                .and_then(|n| n.parse::<usize>().ok())
        {
            newest = newest.max(n);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        newest >= already + 5,
        "follow stopped at line {newest} (had {already})"
    );

    // --previous shows the run before the current one.
    wait_pod(&cluster, "once", Duration::from_secs(40), |p| {
        p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(2)
    });
    let previous = cluster.kubectl(&["logs", "once", "--previous"]);
    let current = cluster.kubectl(&["logs", "once"]);
    assert!(previous.starts_with("run at "), "{previous}");
    assert_ne!(previous, current);

    // exec: output, stderr and the exit code come back.
    let out = cluster.control.kubectl(
        "1.33",
        &[
            "exec",
            "talker",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let hostname = cluster.kubectl(&["exec", "talker", "--", "hostname"]);
    assert_eq!(hostname, "talker\n");
    // With stdin.
    let mut cat = cluster
        .control
        .kubectl_command("1.33", &["exec", "-i", "talker", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = cat.stdin.take().unwrap();
        stdin.write_all(b"hello through the agent\n").unwrap();
    }
    let out = cat.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through the agent\n"
    );
    assert!(out.status.success());

    // kubectl 1.27 speaks SPDY/3.1 for exec.
    let old = cluster.control.kubectl(
        "1.27",
        &[
            "exec",
            "talker",
            "--",
            "sh",
            "-c",
            "echo spdy; echo spdy-err >&2; exit 4",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&old.stdout), "spdy\n", "{old:?}");
    assert!(
        String::from_utf8_lossy(&old.stderr).contains("spdy-err"),
        "{old:?}"
    );
    assert_eq!(old.status.code(), Some(4), "{old:?}");

    // port-forward (SPDY; kubectl 1.33 falls back to it from the WebSocket tunnel) reaches a
    // port inside the pod's namespace.
    apply(&cluster, &web_pod("web-pf", "node-0"));
    wait_pod(&cluster, "web-pf", Duration::from_secs(30), ready);
    for (version, port) in [("1.33", "18080"), ("1.27", "18081")] {
        let mut forward = cluster
            .control
            .kubectl_command(
                version,
                &["port-forward", "pod/web-pf", &format!("{port}:8080")],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = forward.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        if !first.starts_with("Forwarding from 127.0.0.1") {
            let _ = forward.kill();
            let out = forward.wait_with_output().unwrap();
            panic!(
                "kubectl {version} port-forward: {first} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for _ in 0..3 {
            let body = http_get(cluster.control.netns(), None, &format!("127.0.0.1:{port}"));
            assert_eq!(
                body.as_deref(),
                Ok("hello from web-pf\n"),
                "kubectl {version}"
            );
        }
        let _ = forward.kill();
        let _ = forward.wait();
    }

    // A container the pod does not have is named in the error.
    let bad = cluster
        .control
        .kubectl("1.33", &["logs", "talker", "-c", "nope"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("container nope is not valid"),
        "{bad:?}"
    );
}

#[test]
fn a_pod_failing_readiness_leaves_its_service_and_comes_back() {
    let (cluster, _images) = start(2);
    let pod = |name: &str, node: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "{name}", "namespace": "default", "labels": {{"app": "flaky"}}}},
  "spec": {{"nodeName": "{node}", "terminationGracePeriodSeconds": 1, "containers": [{{
    "name": "web", "image": "{IMAGE}",
    "command": ["sh", "-c", "mkdir -p /www && echo {name} > /www/index.html && touch /www/healthz && exec httpd -f -p 8080 -h /www"],
    "ports": [{{"name": "http", "containerPort": 8080}}],
    "readinessProbe": {{"httpGet": {{"path": "/healthz", "port": "http"}}, "periodSeconds": 1, "failureThreshold": 1}}
  }}]}}}}"#
        )
    };
    apply(&cluster, &pod("steady", "node-1"));
    apply(&cluster, &pod("flaky", "node-1"));
    // The EndpointSlice controller in strait-control fills the Service from its selector.
    apply(
        &cluster,
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "flaky", "namespace": "default"},
            "spec": {"clusterIP": "10.96.9.9", "selector": {"app": "flaky"}, "ports": [{"port": 80, "targetPort": "http"}]}}"#,
    );
    wait_pod(&cluster, "steady", Duration::from_secs(30), ready);
    wait_pod(&cluster, "flaky", Duration::from_secs(30), ready);
    let client = &cluster.nodes[0];
    let answers = |n: usize| -> Vec<String> {
        (0..n)
            .filter_map(|_| {
                http_get(&client.netns, Some(client.cgroup.path()), "10.96.9.9:80").ok()
            })
            .collect()
    };
    let both =
        |got: &[String]| got.iter().any(|b| b == "steady\n") && got.iter().any(|b| b == "flaky\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !both(&answers(20)) {
        assert!(
            Instant::now() < deadline,
            "both pods never answered through the Service"
        );
    }

    // Readiness fails: the pod leaves the Service (and the slice says so), the other stays.
    cluster.kubectl(&["exec", "flaky", "--", "rm", "/www/healthz"]);
    wait_pod(&cluster, "flaky", Duration::from_secs(10), |p| !ready(p));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = answers(20);
        if !got.is_empty() && got.iter().all(|b| b == "steady\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the unready pod still answers: {got:?}"
        );
    }
    let slices = cluster.kubectl(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=flaky",
        "-o",
        "json",
    ]);
    let slices: Value = serde_json::from_str(&slices).unwrap();
    let endpoints = slices["items"][0]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let flaky = endpoints
        .iter()
        .find(|e| e["targetRef"]["name"] == "flaky")
        .expect("the unready pod is still listed");
    assert_eq!(flaky["conditions"]["ready"], false, "{flaky}");

    // Ready again: back in the Service.
    cluster.kubectl(&["exec", "flaky", "--", "touch", "/www/healthz"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !both(&answers(20)) {
        assert!(
            Instant::now() < deadline,
            "the pod never came back into the Service"
        );
    }
}

#[test]
fn pods_without_a_node_are_scheduled_and_ones_that_fit_nowhere_say_why() {
    let (cluster, _images) = start(2);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "v1", "kind": "List", "items": [
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "anywhere", "namespace": "default"}},
      "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "1000"],
        "resources": {{"requests": {{"cpu": "100m", "memory": "16Mi"}}}}}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "pinned", "namespace": "default"}},
      "spec": {{"nodeSelector": {{"kubernetes.io/hostname": "node-1"}},
        "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "1000"]}}]}}}},
    {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "huge", "namespace": "default"}},
      "spec": {{"containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "1000"],
        "resources": {{"requests": {{"cpu": "64"}}}}}}]}}}}]}}"#
        ),
    );
    let anywhere = wait_pod(&cluster, "anywhere", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    let node = anywhere["spec"]["nodeName"].as_str().unwrap_or_default();
    assert!(node == "node-0" || node == "node-1", "{node}");
    assert_eq!(
        anywhere["status"]["hostIP"],
        cluster.nodes.iter().find(|n| n.name == node).unwrap().ip
    );
    let pinned = wait_pod(&cluster, "pinned", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(pinned["spec"]["nodeName"], "node-1");

    let huge = wait_pod(&cluster, "huge", Duration::from_secs(30), |p| {
        p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        })
    });
    assert_eq!(huge["status"]["phase"], "Pending");
    assert!(huge["spec"]["nodeName"].is_null(), "{huge}");
    let events = cluster.kubectl(&["get", "events", "-o", "json"]);
    let events: Value = serde_json::from_str(&events).unwrap();
    let failed = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["reason"] == "FailedScheduling" && e["involvedObject"]["name"] == "huge")
        .unwrap_or_else(|| {
            panic!(
                "no FailedScheduling event: {events}\n{}",
                cluster.control.log()
            )
        });
    assert_eq!(
        failed["message"],
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    assert_eq!(failed["type"], "Warning");
}

#[test]
fn a_replicaset_keeps_its_pods_scheduled_and_running() {
    let (cluster, _images) = start(2);
    apply(
        &cluster,
        &format!(
            r#"{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {{"name": "web", "namespace": "default"}},
  "spec": {{"replicas": 3, "selector": {{"matchLabels": {{"app": "rs-web"}}}},
    "template": {{"metadata": {{"labels": {{"app": "rs-web"}}}},
      "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "c", "image": "{IMAGE}", "command": ["sleep", "1000"]}}]}}}}}}}}"#
        ),
    );
    let running = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = cluster.kubectl(&["get", "pods", "-l", "app=rs-web", "-o", "json"]);
            let pods: Value = serde_json::from_str(&out).unwrap();
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let live: Vec<&Value> = items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let all_running = live.iter().all(|p| p["status"]["phase"] == "Running");
            if live.len() == want && all_running {
                return live
                    .iter()
                    .map(|p| {
                        p["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect::<Vec<_>>();
            }
            assert!(
                Instant::now() < deadline,
                "wanted {want} running pods: {out}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let three = running(3);
    assert!(three.iter().all(|n| n.starts_with("web-")), "{three:?}");
    let status = cluster.kubectl(&[
        "get",
        "rs",
        "web",
        "-o",
        "jsonpath={.status.replicas}/{.status.readyReplicas}",
    ]);
    assert!(status.starts_with("3/"), "{status}");

    // A deleted pod is replaced; scaling down removes the extra ones.
    cluster.kubectl(&["delete", "pod", &three[0], "--wait=false"]);
    let replaced = running(3);
    assert!(!replaced.contains(&three[0]), "{replaced:?}");
    cluster.kubectl(&["scale", "rs", "web", "--replicas=1"]);
    running(1);
}
