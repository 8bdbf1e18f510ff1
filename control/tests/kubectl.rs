//! Cluster tier: real kubectl builds (1.33 and 1.27, the google-cloud-cli package's) against
//! `strait-control` on the embedded store, each test with its own control plane in its own
//! network namespace.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use strait_tests::ControlPlane;

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env:
        - name: MODE
          value: blue
        - name: DEBUG
          value: "1"
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
"#;

fn write(plane: &ControlPlane, name: &str, text: &str) -> String {
    let path = plane.data_dir().join(name);
    std::fs::write(&path, text).expect("write a manifest");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// apply (create, then update from a changed manifest), get (Table, yaml, jsonpath), describe,
/// scale, label, annotate, patch (three types), create configmap --from-file, api-resources,
/// delete that waits: everything a user does first, with one kubectl build.
fn kubectl_workflow(version: &str) {
    let plane = ControlPlane::start(std::path::Path::new(BIN), &[]);
    let k = |args: &[&str]| plane.kubectl_ok(version, args);

    let manifest = write(&plane, "app.yaml", MANIFEST);
    let out = k(&["apply", "-f", &manifest]);
    for line in [
        "configmap/web-config created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "apply said:\n{out}");
    }

    // The second apply: a new image, one env var removed, more replicas.
    let changed = MANIFEST
        .replace("busybox:1.36", "busybox:1.37")
        .replace("replicas: 2", "replicas: 3")
        .replace("        - name: DEBUG\n          value: \"1\"\n", "");
    let changed = write(&plane, "app2.yaml", &changed);
    let out = k(&["apply", "-f", &changed]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    assert!(out.contains("configmap/web-config unchanged"), "{out}");
    let image = k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas} {.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(image, "busybox:1.37 3 MODE", "the three-way merge applied");

    // Server-side printing: the columns kubectl users know.
    let table = k(&["get", "deployments"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
        "{table}"
    );
    let services = k(&["get", "services", "-o", "wide"]);
    assert!(
        services
            .lines()
            .any(|l| l.starts_with("web") && l.contains("NodePort") && l.contains("10.96.")),
        "{services}"
    );
    assert!(
        services.contains("kubernetes"),
        "the default Service is there:\n{services}"
    );
    let yaml = k(&["get", "configmap", "web-config", "-o", "yaml"]);
    assert!(
        yaml.contains("greeting: hello") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );

    let described = k(&["describe", "deployment", "web"]);
    assert!(
        described.contains("Name:")
            && described.contains("web")
            && described.contains("busybox:1.37"),
        "{described}"
    );

    assert!(k(&["scale", "deployment", "web", "--replicas=5"]).contains("scaled"));
    assert_eq!(
        k(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );
    assert!(k(&["label", "deployment", "web", "tier=front"]).contains("labeled"));
    // kubectl 1.27 prints "annotate", later ones "annotated"; the object is checked below.
    assert!(k(&["annotate", "deployment", "web", "note=hi"]).contains("annotate"));
    assert!(
        k(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"paused":true}}"#
        ])
        .contains("patched")
    );
    assert!(
        k(&[
            "patch",
            "deployment",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"m":"1"}}}"#
        ])
        .contains("patched")
    );
    assert!(
        k(&[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#
        ])
        .contains("patched")
    );
    let fields = k(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.paused} {.metadata.labels.tier} {.metadata.labels.m} {.metadata.annotations.note} {.spec.replicas}",
    ]);
    assert_eq!(fields, "true front 1 hi 2");
    let selected = k(&["get", "deployments", "-l", "tier=front", "-o", "name"]);
    assert_eq!(selected.trim(), "deployment.apps/web");

    let dir = plane.data_dir().join("files");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("app.conf"), "port=8080\n").expect("write");
    k(&[
        "create",
        "configmap",
        "files",
        &format!("--from-file={}", dir.display()),
    ]);
    assert_eq!(
        k(&[
            "get",
            "configmap",
            "files",
            "-o",
            "jsonpath={.data.app\\.conf}"
        ]),
        "port=8080\n"
    );

    let resources = k(&["api-resources"]);
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{resources}"
    );

    let out = k(&["delete", "-f", &changed]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let gone = plane.kubectl(version, &["get", "deployment", "web"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("deployments.apps \"web\" not found"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[test]
fn kubectl_1_33_manages_objects() {
    kubectl_workflow("1.33");
}

#[test]
fn kubectl_1_27_manages_objects() {
    kubectl_workflow("1.27");
}

/// `kubectl get -w` prints each change as it happens.
#[test]
fn kubectl_watch_streams_changes() {
    let plane = ControlPlane::start(std::path::Path::new(BIN), &[]);
    let mut watch = plane
        .kubectl_command(
            "1.33",
            &["get", "configmaps", "-w", "--output-watch-events"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get -w");
    let stdout = watch.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch has started once it printed the existing objects (kube-root-ca is not there:
    // no controller yet; the header comes with the first event).
    std::thread::sleep(Duration::from_secs(2));
    plane.kubectl_ok(
        "1.33",
        &["create", "configmap", "live", "--from-literal=a=b"],
    );
    plane.kubectl_ok("1.33", &["delete", "configmap", "live"]);
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        lines.push(line);
        if lines
            .iter()
            .any(|l| l.starts_with("DELETED") && l.contains("live"))
        {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ADDED") && l.contains("live")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DELETED") && l.contains("live")),
        "{lines:?}"
    );
}

/// Deleting a namespace empties it, then removes it; `kubectl delete` waits for that.
#[test]
fn kubectl_deletes_a_namespace_with_its_content() {
    let plane = ControlPlane::start(std::path::Path::new(BIN), &[]);
    let k = |args: &[&str]| plane.kubectl_ok("1.33", args);
    k(&["create", "namespace", "doomed"]);
    k(&[
        "create",
        "configmap",
        "a",
        "-n",
        "doomed",
        "--from-literal=k=v",
    ]);
    k(&[
        "create",
        "secret",
        "generic",
        "b",
        "-n",
        "doomed",
        "--from-literal=k=v",
    ]);
    k(&["label", "namespace", "doomed", "team=x"]);
    let out = k(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(out.contains("namespace \"doomed\" deleted"), "{out}");
    let gone = plane.kubectl("1.33", &["get", "namespace", "doomed"]);
    assert!(!gone.status.success(), "the namespace is gone");
    let left = k(&["get", "configmaps,secrets", "-n", "doomed", "-o", "name"]);
    assert!(left.trim().is_empty(), "its content is gone: {left}");
}
