//! Cluster tier: API behaviours kubectl users meet, checked against kube-apiserver 1.33's
//! rules: which StatefulSet fields an update may change, the legacy `orphanDependents` delete
//! option, what a Service loses (and frees) when its type changes, and which node ports it holds
//! (its health check node port; those asked for when none are allocated).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use strait_tests::ControlPlane;

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");
const KUBECTL: &str = "1.33";

fn start() -> ControlPlane {
    ControlPlane::start(Path::new(BIN), &[])
}

/// Apply a manifest given inline.
fn apply(plane: &ControlPlane, manifest: &str) {
    let path = plane.data_dir().join("manifest.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    let path = path.to_string_lossy().into_owned();
    plane.kubectl_ok(KUBECTL, &["apply", "-f", &path]);
}

/// An object as JSON, or `None` when it does not exist.
fn get(plane: &ControlPlane, kind: &str, name: &str) -> Option<Value> {
    let out = plane.kubectl(KUBECTL, &["get", kind, name, "-o", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(stderr.contains("NotFound"), "get {kind}/{name}: {stderr}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"))
}

/// Run kubectl expecting it to fail; its stderr.
fn kubectl_err(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl(KUBECTL, args);
    assert!(
        !out.status.success(),
        "kubectl {} should fail, printed {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Poll `check` until it returns `Some`, or panic naming `what` after a generous timeout.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kube-apiserver 1.33 lets a StatefulSet update change replicas, ordinals, template,
/// updateStrategy, persistentVolumeClaimRetentionPolicy and minReadySeconds, and nothing else:
/// not even `revisionHistoryLimit` (later releases allow that one).
#[test]
fn statefulset_updates_change_only_what_kubernetes_1_33_allows() {
    let plane = start();
    apply(
        &plane,
        r"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 0
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: busybox:1.36
",
    );
    plane.kubectl_ok(
        KUBECTL,
        &[
            "patch",
            "statefulset",
            "db",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":2,"updateStrategy":{"type":"OnDelete","rollingUpdate":null},"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"}}}"#,
        ],
    );
    let sts = get(&plane, "statefulset", "db").expect("the StatefulSet");
    assert_eq!(sts["spec"]["minReadySeconds"], 2);
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete");

    for patch in [
        r#"{"spec":{"serviceName":"db2"}}"#,
        r#"{"spec":{"revisionHistoryLimit":3}}"#,
    ] {
        let stderr = kubectl_err(
            &plane,
            &["patch", "statefulset", "db", "--type=merge", "-p", patch],
        );
        assert!(
            stderr.contains(
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ),
            "{patch}: {stderr}"
        );
    }
}

#[test]
fn deletes_honour_the_legacy_orphan_dependents_option() {
    let plane = start();
    apply(
        &plane,
        r"
apiVersion: v1
kind: ConfigMap
metadata:
  name: owner
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers: [example.com/hold]
",
    );
    let owner = get(&plane, "configmap", "owner").expect("the owner");
    let uid = owner["metadata"]["uid"].as_str().expect("a uid");
    apply(
        &plane,
        &format!(
            r"
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: owner
    uid: {uid}
"
        ),
    );

    // Both set is refused, as apimachinery's ValidateDeleteOptions refuses it.
    let stderr = kubectl_err(
        &plane,
        &[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps/owner?orphanDependents=false&propagationPolicy=Foreground",
        ],
    );
    assert!(
        stderr.contains("orphanDependents and deletionPropagation cannot be both set"),
        "{stderr}"
    );
    assert!(
        get(&plane, "configmap", "owner").is_some(),
        "a refused delete deletes nothing"
    );

    // orphanDependents=true orphans: the dependent stays, without its owner reference.
    plane.kubectl_ok(
        KUBECTL,
        &[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps/owner?orphanDependents=true",
        ],
    );
    wait_for("the owner to go", || {
        get(&plane, "configmap", "owner").is_none().then_some(())
    });
    let dependent = get(&plane, "configmap", "dependent").expect("an orphaned dependent stays");
    assert!(
        dependent["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "the orphan keeps no reference to its deleted owner: {dependent}"
    );

    // orphanDependents=false asks for cascading deletion: an object its finalizer keeps
    // is answered 202 Accepted.
    let out = plane.kubectl(
        KUBECTL,
        &[
            "delete",
            "--raw",
            "/api/v1/namespaces/default/configmaps/held?orphanDependents=false",
            "-v=6",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("202 Accepted"), "{log}");
    let held = get(&plane, "configmap", "held").expect("kept by its finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
}

const LOAD_BALANCER: &str = r"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/lb
  externalTrafficPolicy: Local
  selector:
    app: web
  ports:
  - name: http
    port: 80
";

/// A NodePort Service asking for `node_port` (and optionally a ClusterIP).
fn node_port_service(name: &str, node_port: u64, cluster_ip: Option<&str>) -> String {
    let cluster_ip = cluster_ip
        .map(|ip| format!("\n  clusterIP: {ip}"))
        .unwrap_or_default();
    format!(
        r"
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort{cluster_ip}
  selector:
    app: {name}
  ports:
  - port: 80
    nodePort: {node_port}
"
    )
}

fn patch_type(plane: &ControlPlane, name: &str, patch: &str) -> Value {
    plane.kubectl_ok(
        KUBECTL,
        &["patch", "service", name, "--type=merge", "-p", patch],
    );
    get(plane, "service", name).expect("the Service")
}

#[test]
fn a_service_type_change_drops_and_frees_what_the_old_type_had() {
    let plane = start();
    apply(&plane, LOAD_BALANCER);
    let lb = get(&plane, "service", "web").expect("the Service");
    let node_port = lb["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("a node port");
    let cluster_ip = lb["spec"]["clusterIP"]
        .as_str()
        .expect("a ClusterIP")
        .to_owned();

    // LoadBalancer -> ClusterIP: a patch of the type alone is enough.
    let svc = patch_type(&plane, "web", r#"{"spec":{"type":"ClusterIP"}}"#);
    let spec = &svc["spec"];
    assert!(spec["ports"][0].get("nodePort").is_none(), "{spec}");
    for gone in [
        "allocateLoadBalancerNodePorts",
        "loadBalancerClass",
        "externalTrafficPolicy",
        "healthCheckNodePort",
    ] {
        assert!(spec.get(gone).is_none(), "{gone} should be gone: {spec}");
    }
    assert_eq!(spec["clusterIP"], cluster_ip.as_str());
    // The node port went back to the pool, as on delete.
    apply(&plane, &node_port_service("second", node_port, None));

    // NodePort -> ClusterIP frees its node port too.
    let second = patch_type(&plane, "second", r#"{"spec":{"type":"ClusterIP"}}"#);
    assert!(
        second["spec"]["ports"][0].get("nodePort").is_none(),
        "{second}"
    );
    assert!(
        second["spec"].get("externalTrafficPolicy").is_none(),
        "{second}"
    );

    // Anything -> ExternalName gives up the ClusterIP, which is then free.
    let svc = patch_type(
        &plane,
        "web",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com"}}"#,
    );
    for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(
            svc["spec"].get(gone).is_none(),
            "{gone} should be gone: {svc}"
        );
    }
    apply(
        &plane,
        &node_port_service("third", node_port, Some(&cluster_ip)),
    );
    let third = get(&plane, "service", "third").expect("the third Service");
    assert_eq!(third["spec"]["clusterIP"], cluster_ip.as_str());
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local`, optionally asking for its
/// health check node port.
fn local_load_balancer(name: &str, health_check: Option<u64>) -> String {
    let health_check = health_check
        .map(|port| format!("\n  healthCheckNodePort: {port}"))
        .unwrap_or_default();
    format!(
        r"
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local{health_check}
  selector:
    app: {name}
  ports:
  - port: 80
"
    )
}

/// The Service's health check node port, `None` when it has none.
fn health_check_port(plane: &ControlPlane, name: &str) -> Option<u64> {
    get(plane, "service", name).expect("the Service")["spec"]
        .get("healthCheckNodePort")
        .map(|port| port.as_u64().expect("a port number"))
}

/// Show that `port` is free: a NodePort Service named `name` can take it.
fn take_port(plane: &ControlPlane, name: &str, port: u64) {
    apply(plane, &node_port_service(name, port, None));
    let taker = get(plane, "service", name).expect("the taker");
    assert_eq!(taker["spec"]["ports"][0]["nodePort"], port, "{taker}");
    plane.kubectl_ok(KUBECTL, &["delete", "service", name]);
}

#[test]
fn a_local_load_balancer_holds_a_health_check_node_port_while_it_needs_one() {
    let plane = start();
    apply(&plane, &local_load_balancer("hc", None));
    let svc = get(&plane, "service", "hc").expect("the Service");
    let port = svc["spec"]["healthCheckNodePort"]
        .as_u64()
        .expect("a health check node port is allocated");
    assert!((30000..=32767).contains(&port), "{svc}");
    assert_ne!(svc["spec"]["ports"][0]["nodePort"], port, "{svc}");

    // It is held: neither a node port nor another health check node port can take it. The
    // latter is an internal error in kube-apiserver, not a field's.
    let path = plane.data_dir().join("taker.yaml");
    std::fs::write(&path, node_port_service("taker", port, None)).expect("write");
    let err = kubectl_err(&plane, &["create", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("spec.ports[0].nodePort")
            && err.contains("provided port is already allocated"),
        "{err}"
    );
    std::fs::write(&path, local_load_balancer("other", Some(port))).expect("write");
    let err = kubectl_err(&plane, &["create", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("InternalError")
            && err.contains(&format!(
                "failed to allocate requested HealthCheck NodePort {port}: provided port is already allocated"
            )),
        "{err}"
    );

    // An update keeps it, even a replacement that leaves it out.
    std::fs::write(&path, local_load_balancer("hc", None)).expect("write");
    plane.kubectl_ok(KUBECTL, &["replace", "-f", &path.to_string_lossy()]);
    assert_eq!(health_check_port(&plane, "hc"), Some(port));

    // Local -> Cluster drops and frees it; Cluster -> Local allocates one again.
    let svc = patch_type(
        &plane,
        "hc",
        r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
    );
    assert!(svc["spec"].get("healthCheckNodePort").is_none(), "{svc}");
    take_port(&plane, "taker", port);
    patch_type(
        &plane,
        "hc",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    );
    let port = health_check_port(&plane, "hc").expect("allocated again");

    // LoadBalancer -> ClusterIP frees it too; back to a local LoadBalancer reserves the one
    // asked for.
    let svc = patch_type(&plane, "hc", r#"{"spec":{"type":"ClusterIP"}}"#);
    assert!(svc["spec"].get("healthCheckNodePort").is_none(), "{svc}");
    take_port(&plane, "taker", port);
    let back = format!(
        r#"{{"spec":{{"type":"LoadBalancer","externalTrafficPolicy":"Local","healthCheckNodePort":{port}}}}}"#
    );
    patch_type(&plane, "hc", &back);
    assert_eq!(health_check_port(&plane, "hc"), Some(port));
    std::fs::write(&path, node_port_service("taker", port, None)).expect("write");
    let err = kubectl_err(&plane, &["create", "-f", &path.to_string_lossy()]);
    assert!(err.contains("provided port is already allocated"), "{err}");

    // Deleting the Service frees it.
    plane.kubectl_ok(KUBECTL, &["delete", "service", "hc"]);
    take_port(&plane, "taker", port);
}

#[test]
fn a_load_balancer_without_node_port_allocation_keeps_the_node_ports_asked_for() {
    let plane = start();
    let manifest = r"
apiVersion: v1
kind: Service
metadata:
  name: lb
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  selector:
    app: lb
  ports:
  - name: http
    port: 80
    nodePort: 30080
  - name: https
    port: 443
";
    apply(&plane, manifest);
    let svc = get(&plane, "service", "lb").expect("the Service");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080, "{svc}");
    assert!(svc["spec"]["ports"][1].get("nodePort").is_none(), "{svc}");

    // The port asked for is held.
    let path = plane.data_dir().join("taker.yaml");
    std::fs::write(&path, node_port_service("taker", 30080, None)).expect("write");
    let err = kubectl_err(&plane, &["create", "-f", &path.to_string_lossy()]);
    assert!(err.contains("provided port is already allocated"), "{err}");

    // An update keeps it; a change to NodePort allocates the missing one.
    let svc = patch_type(&plane, "lb", r#"{"metadata":{"labels":{"tier":"web"}}}"#);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080, "{svc}");
    let svc = patch_type(&plane, "lb", r#"{"spec":{"type":"NodePort"}}"#);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080, "{svc}");
    assert!(
        svc["spec"]["ports"][1]["nodePort"].as_u64().is_some(),
        "{svc}"
    );

    // Deleting the Service frees it.
    plane.kubectl_ok(KUBECTL, &["delete", "service", "lb"]);
    take_port(&plane, "taker", 30080);
}
