//! `netctl cluster up | down | status` as a user runs them: real namespaces, a real
//! control plane and real agents. Up then down leaves nothing of the cluster behind
//! (namespaces, links, mounts, pins, cgroups, processes, files); two clusters run side by
//! side; bad input is refused with a clear message and nothing made.
//!
//! Each test names its clusters uniquely and removes them on drop, also when it panics.

use std::{fs, path::Path, process::Command, thread, time::Duration};

mod common;

use common::{KUBECTL, Up, netctl, text, unique, wait_until};

/// What of cluster `name` exists on the machine, one line per thing.
fn traces(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("strait-{name}-");
    found.extend(
        String::from_utf8_lossy(&netns.stdout)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| format!("netns {l}")),
    );
    if Path::new("/sys/class/net")
        .join(format!("st-{name}"))
        .exists()
    {
        found.push(format!("link st-{name}"));
    }
    let dir = format!("/var/lib/strait/clusters/{name}");
    found.extend(
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&dir))
            .map(|m| format!("mount {m}")),
    );
    for path in [
        dir.clone(),
        format!("/sys/fs/bpf/strait/clusters/{name}"),
        format!("/sys/fs/cgroup/unified/strait/clusters/{name}"),
        format!("/sys/fs/cgroup/strait/clusters/{name}"),
    ] {
        if Path::new(&path).exists() {
            found.push(format!("path {path}"));
        }
    }
    // Live processes whose command line names the cluster's directory (zombies have none).
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(&format!("{dir}/"))
        {
            found.push(format!(
                "process {} {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

#[test]
fn up_runs_pods_and_down_leaves_nothing_behind() {
    let name = unique('a');
    assert_eq!(traces(&name), Vec::<String>::new(), "a clean start");
    let up = Up::start(&name, 2);
    assert!(!traces(&name).is_empty(), "the cluster exists");

    let nodes = up.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
    ]);
    assert_eq!(nodes.trim(), "node-0=True node-1=True");
    let status = text(&netctl(&["cluster", "status", "--name", &name]));
    // The control plane, and an agent and a DNS server on each node.
    assert_eq!(status.matches("running").count(), 5, "{status}");
    assert!(status.contains("172.30."), "{status}");

    // The demo image is on every node: a pod of it runs.
    up.kubectl(&[
        "run",
        "sleeper",
        "--image=strait.local/busybox:1",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ]);
    wait_until("the pod to run", Duration::from_secs(60), || {
        let phase = up.kubectl(&["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"]);
        if phase == "Running" {
            Ok(())
        } else {
            Err(phase)
        }
    });
    // Its node's cluster DNS answers it for a Service by its short name (search path).
    // (busybox nslookup exits 1 for the other search domains' NXDOMAIN: read what it says.)
    let answer = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(up.dir().join("control/admin.kubeconfig"))
        .args(["exec", "sleeper", "--", "nslookup", "-type=A", "kubernetes"])
        .output()
        .expect("run kubectl exec");
    let answer = text(&answer);
    assert!(
        answer.contains("kubernetes.default.svc.cluster.local") && answer.contains("10.96.0.1"),
        "{answer}"
    );

    let out = netctl(&["cluster", "down", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        traces(&name),
        Vec::<String>::new(),
        "nothing left of {name}"
    );
    let again = netctl(&["cluster", "down", "--name", &name]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("there is no cluster"),
        "{}",
        text(&again)
    );
}

#[test]
fn two_clusters_run_side_by_side() {
    let (one, two) = (unique('b'), unique('c'));
    let handles: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .map(|name| thread::spawn(move || Up::start(&name, 1)))
        .collect();
    let ups: Vec<Up> = handles
        .into_iter()
        .map(|h| h.join().expect("cluster up"))
        .collect();
    let servers: Vec<String> = ups
        .iter()
        .map(|up| {
            up.kubectl(&[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ])
        })
        .collect();
    assert_ne!(servers[0], servers[1], "each cluster has its own API");
    for up in &ups {
        let nodes = up.kubectl(&["get", "nodes", "-o", "name"]);
        assert_eq!(nodes.trim(), "node/node-0", "{}", up.name);
    }
    // Taking one down leaves the other working.
    let mut ups = ups;
    drop(ups.remove(0));
    assert_eq!(traces(&one), Vec::<String>::new());
    let status = text(&netctl(&["cluster", "status", "--name", &two]));
    assert_eq!(status.matches("running").count(), 3, "{status}");
}

#[test]
fn bad_input_is_refused_and_nothing_is_made() {
    let name = unique('d');
    let up = Up::start(&name, 1);

    // A name in use: refused, and the cluster that has it keeps running.
    let out = netctl(&["cluster", "up", "--name", &name, "--nodes", "1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    up.kubectl(&["get", "nodes"]);

    let cases: [(Option<&str>, &[&str], &str); 4] = [
        (Some("Not_A_Name"), &[], "is not valid"),
        (None, &["--nodes", "300"], "at most 241"),
        (None, &["--nodes", "0"], "at least one node"),
        (
            None,
            &["--bin-dir", "/nonexistent"],
            "is missing: build the workspace first",
        ),
    ];
    for (i, (name, args, message)) in cases.iter().enumerate() {
        let other = name.map_or_else(
            || unique(char::from(b'e' + u8::try_from(i).expect("a few cases"))),
            str::to_owned,
        );
        let mut argv = vec!["cluster", "up", "--name", other.as_str()];
        argv.extend(*args);
        let out = netctl(&argv);
        assert!(!out.status.success(), "{argv:?}");
        assert!(text(&out).contains(message), "{argv:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
        assert_eq!(
            traces(&other),
            Vec::<String>::new(),
            "{argv:?} made nothing"
        );
    }
}

#[test]
fn a_cluster_on_etcd_keeps_answering_with_one_member_killed() {
    let name = unique('z');
    let up = Up { name: name.clone() };
    let out = netctl(&[
        "cluster", "up", "--name", &name, "--nodes", "1", "--store", "etcd",
    ]);
    assert!(out.status.success(), "cluster up on etcd: {}", text(&out));
    let record = up.record();
    let processes = record["processes"].as_array().expect("processes");
    let roles: Vec<&str> = processes
        .iter()
        .filter_map(|p| p["role"].as_str())
        .collect();
    assert_eq!(
        roles,
        ["etcd", "etcd", "etcd", "control", "control", "agent", "dns"]
    );

    // The leader goes: the two members left elect another while the API is in use.
    let leader = processes[..3]
        .iter()
        .find(|p| is_etcd_leader(p))
        .expect("one member leads");
    let member = leader["pid"].as_i64().expect("a pid");
    let killed = Command::new("kill")
        .args(["-9", &member.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // A write through one control process is read through the other, on two members left.
    up.kubectl(&["create", "configmap", "after-loss", "--from-literal=k=v"]);
    let second = up.dir().join("control-1/admin.kubeconfig");
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&second)
        .args(["get", "configmap", "after-loss", "-o", "jsonpath={.data.k}"])
        .output()
        .expect("kubectl");
    assert_eq!(text(&out), "v");
    drop(up);
    assert_eq!(
        traces(&name),
        Vec::<String>::new(),
        "nothing left of {name}"
    );
}

/// Whether the recorded etcd process leads its cluster (`etcdctl endpoint status`).
fn is_etcd_leader(process: &serde_json::Value) -> bool {
    let endpoint = process["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .expect("the member's client URL");
    let out = Command::new("etcdctl")
        .args(["--endpoints", endpoint, "endpoint", "status", "-w", "json"])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let status = &status[0]["Status"];
    status["leader"].as_u64().is_some() && status["leader"] == status["header"]["member_id"]
}
