//! Cluster tier: the API as the Python client and raw HTTP see it, bad input, durability
//! across kill -9, compaction, and several control processes on one etcd.

use std::{io::Write as _, path::Path, process::Stdio, sync::Arc, time::Duration};

use serde_json::{Value, json};
use strait_tests::{ControlPlane, Etcd, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

fn start(extra: &[&str]) -> ControlPlane {
    ControlPlane::start(Path::new(BIN), extra)
}

/// The admin's bearer token.
fn token(plane: &ControlPlane) -> String {
    let tokens = std::fs::read_to_string(plane.data_dir().join("tokens")).expect("tokens file");
    tokens
        .lines()
        .find(|l| l.split(',').nth(1) == Some("admin"))
        .and_then(|l| l.split(',').next())
        .expect("an admin token")
        .to_owned()
}

/// Where raw requests go, and as whom.
struct Caller<'a> {
    netns: &'a Netns,
    url: String,
    ca: std::path::PathBuf,
    token: String,
}

impl<'a> Caller<'a> {
    /// The plane's admin.
    fn admin(plane: &'a ControlPlane) -> Self {
        Self::with_token(plane, &token(plane))
    }

    fn with_token(plane: &'a ControlPlane, token: &str) -> Self {
        Self {
            netns: plane.netns(),
            url: plane.url(),
            ca: plane.data_dir().join("pki/ca.crt"),
            token: token.to_owned(),
        }
    }

    /// One raw request from inside the namespace: (status, body, warnings).
    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value, Vec<String>) {
        let mut child = self
            .netns
            .command(&["python3", &format!("{PYTHON}/raw.py"), &self.url])
            .arg(&self.ca)
            .args([self.token.as_str(), method, path, content_type])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start raw.py");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body)
            .expect("write body");
        let out = child.wait_with_output().expect("raw.py");
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "raw.py {method} {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let warnings = reply["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        (
            u16::try_from(reply["status"].as_u64().unwrap_or(0)).unwrap_or(0),
            reply["body"].clone(),
            warnings,
        )
    }
}

fn raw(
    plane: &ControlPlane,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value, Vec<String>) {
    Caller::admin(plane).call(method, path, content_type, body)
}

fn configmap(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
        .to_string()
        .into_bytes()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn python_client_creates_lists_watches_patches_and_deletes() {
    let plane = start(&[]);
    let out = plane
        .netns()
        .command(&["python3", &format!("{PYTHON}/client.py")])
        .arg(plane.kubeconfig())
        .arg("py-test")
        .output()
        .expect("run client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("python client: all ok"),
        "client.py failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        plane.log()
    );
}

#[test]
fn requests_without_a_valid_token_are_unauthorized() {
    let plane = start(&[]);
    for token in ["-", "not-a-token"] {
        let (status, body, _) =
            Caller::with_token(&plane, token).call("GET", CMS, "application/json", b"");
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["reason"], "Unauthorized");
    }
    let (status, body, _) =
        Caller::with_token(&plane, "-").call("GET", "/version", "application/json", b"");
    assert_eq!(
        (status, body["major"].as_str()),
        (200, Some("1")),
        "/version is public"
    );
}

#[test]
fn bad_input_gets_a_status_naming_what_is_wrong_and_writes_nothing() {
    let plane = start(&[]);
    let json = "application/json";

    let (status, body, _) = raw(
        &plane,
        "POST",
        CMS,
        json,
        br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}"#,
    );
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 1"),
        "{body}"
    );

    let (status, body, _) = raw(
        &plane,
        "POST",
        CMS,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("YAML"),
        "{body}"
    );

    let (status, body, _) = raw(
        &plane,
        "POST",
        CMS,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n",
    );
    assert_eq!(status, 201, "YAML bodies are read: {body}");

    let pod = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}"#;
    let (status, body, _) = raw(&plane, "POST", CMS, json, pod);
    assert_eq!(status, 400, "a Pod posted to configmaps: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("kind"),
        "{body}"
    );

    let unknown = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "dataz": {"a": "b"}}"#;
    let (status, body, _) = raw(
        &plane,
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        json,
        unknown,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field \"dataz\""),
        "{body}"
    );
    let (status, _, warnings) = raw(
        &plane,
        "POST",
        &format!("{CMS}?fieldValidation=Warn"),
        json,
        unknown,
    );
    assert_eq!(status, 201);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("unknown field \\\"dataz\\\"") || w.contains("dataz")),
        "{warnings:?}"
    );

    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(3 * 1024 * 1024 + 10)}});
    let (status, body, _) = raw(&plane, "POST", CMS, json, big.to_string().as_bytes());
    assert_eq!(status, 413, "{body}");

    let large = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "large"},
        "data": {"blob": "x".repeat(1024 * 1024 + 1)}});
    let (status, body, _) = raw(&plane, "POST", CMS, json, large.to_string().as_bytes());
    assert_eq!(
        (status, body["reason"].as_str()),
        (422, Some("Invalid")),
        "over 1 MiB of data: {body}"
    );

    let (status, body, _) = raw(&plane, "POST", CMS, json, &configmap("Bad_Name"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"], "metadata.name",
        "{body}"
    );

    let (status, created, _) = raw(&plane, "POST", CMS, json, &configmap("cas"));
    assert_eq!(status, 201);
    let stale = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    let mut update = created.clone();
    update["data"]["k"] = json!("v2");
    let (status, _, _) = raw(
        &plane,
        "PUT",
        &format!("{CMS}/cas"),
        json,
        update.to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    update["metadata"]["resourceVersion"] = json!(stale);
    update["data"]["k"] = json!("v3");
    let (status, body, _) = raw(
        &plane,
        "PUT",
        &format!("{CMS}/cas"),
        json,
        update.to_string().as_bytes(),
    );
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("Conflict")),
        "{body}"
    );
    let (status, again, _) = raw(&plane, "POST", CMS, json, &configmap("cas"));
    assert_eq!(
        (status, again["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // Nothing refused was written.
    let (_, list, _) = raw(&plane, "GET", CMS, json, b"");
    let mut names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["cas", "from-yaml", "u"]);
    let (_, cas, _) = raw(&plane, "GET", &format!("{CMS}/cas"), json, b"");
    assert_eq!(cas["data"]["k"], "v2", "the stale write changed nothing");

    let (status, body, _) = raw(
        &plane,
        "GET",
        "/api/v1/namespaces/nowhere/configmaps/x",
        json,
        b"",
    );
    assert_eq!((status, body["reason"].as_str()), (404, Some("NotFound")));
    let (status, body, _) = raw(
        &plane,
        "POST",
        "/api/v1/namespaces/nowhere/configmaps",
        json,
        &configmap("x"),
    );
    assert_eq!(status, 404, "no such namespace: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("namespaces \"nowhere\" not found"),
        "{body}"
    );
}

#[test]
fn lists_page_with_continue_and_services_never_share_an_address() {
    let plane = start(&[]);
    let json = "application/json";
    for i in 0..7 {
        assert_eq!(
            raw(&plane, "POST", CMS, json, &configmap(&format!("page-{i}"))).0,
            201
        );
    }
    let mut names = Vec::new();
    let mut path = format!("{CMS}?limit=3");
    loop {
        let (status, page, _) = raw(&plane, "GET", &path, json, b"");
        assert_eq!(status, 200, "{page}");
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned)),
        );
        match page["metadata"]["continue"].as_str() {
            Some(token) => path = format!("{CMS}?limit=3&continue={token}"),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("page-{i}")).collect::<Vec<_>>()
    );

    let svc = |name: &str, ip: Option<&str>| {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80}]}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s.to_string().into_bytes()
    };
    let services = "/api/v1/namespaces/default/services";
    let mut ips = std::collections::BTreeSet::new();
    for i in 0..20 {
        let (status, body, _) = raw(&plane, "POST", services, json, &svc(&format!("s{i}"), None));
        assert_eq!(status, 201, "{body}");
        assert!(
            ips.insert(body["spec"]["clusterIP"].as_str().expect("ip").to_owned()),
            "duplicate address"
        );
    }
    let taken = ips.iter().next().expect("one").clone();
    let (status, body, _) = raw(&plane, "POST", services, json, &svc("dup", Some(&taken)));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already allocated"),
        "{body}"
    );
    // Deleting frees the address for the next Service that asks for it.
    let (_, s0, _) = raw(&plane, "GET", &format!("{services}/s0"), json, b"");
    let freed = s0["spec"]["clusterIP"].as_str().expect("ip").to_owned();
    assert_eq!(
        raw(&plane, "DELETE", &format!("{services}/s0"), json, b"").0,
        200
    );
    let (status, body, _) = raw(&plane, "POST", services, json, &svc("reuse", Some(&freed)));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["spec"]["clusterIP"], freed.as_str());
}

#[test]
fn watches_from_a_compacted_version_are_gone() {
    let plane = start(&["--compaction-interval", "0.5"]);
    let json = "application/json";
    let (_, created, _) = raw(&plane, "POST", CMS, json, &configmap("old"));
    let old = created["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    for i in 0..5 {
        raw(&plane, "POST", CMS, json, &configmap(&format!("new-{i}")));
    }
    // Two compaction intervals: the revision seen at the first is compacted at the second.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 5..8 {
        raw(&plane, "POST", CMS, json, &configmap(&format!("new-{i}")));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body, _) = raw(
        &plane,
        "GET",
        &format!("{CMS}?watch=1&resourceVersion={old}&timeoutSeconds=2"),
        json,
        b"",
    );
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(
        text.contains("ERROR") && text.contains("410") && text.contains("Expired"),
        "{text}"
    );
}

/// Writes as fast as one client can, kills the control plane with SIGKILL mid-stream, starts
/// it again and checks every write it acknowledged.
fn no_acknowledged_write_is_lost(plane: &mut ControlPlane) {
    let writer = plane
        .netns()
        .command(&["python3", "-c", WRITER, &plane.url()])
        .arg(plane.data_dir().join("pki/ca.crt"))
        .arg(token(plane))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    std::thread::sleep(Duration::from_millis(1500));
    plane.kill9();
    let out = writer.wait_with_output().expect("writer");
    let acked: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        acked.len() > 10,
        "the writer got going ({} writes)",
        acked.len()
    );
    plane.restart();
    let (_, list, _) = raw(plane, "GET", CMS, "application/json", b"");
    let stored: std::collections::BTreeSet<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|a| !stored.contains(a.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

const WRITER: &str = r#"
import json, ssl, sys, urllib.request
url, ca, token = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=ca)
i = 0
while True:
    name = f"w-{i}"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}).encode()
    req = urllib.request.Request(url + "/api/v1/namespaces/default/configmaps", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            if r.status == 201:
                print(name, flush=True)
    except Exception:
        break
    i += 1
"#;

#[test]
fn kill_9_loses_no_acknowledged_write_on_the_embedded_store() {
    let mut plane = start(&[]);
    no_acknowledged_write_is_lost(&mut plane);
}

#[test]
fn control_planes_share_etcd_and_lose_no_acknowledged_write() {
    let netns = Arc::new(Netns::new("ste"));
    let _etcd = Etcd::start(&netns);
    let prefix = format!("/strait-test-{}", std::process::id());
    let args = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        Etcd::URL,
        "--etcd-prefix",
        &prefix,
    ];
    let mut a = ControlPlane::start_in(Path::new(BIN), Arc::clone(&netns), 6443, &args);
    let b = ControlPlane::start_in(Path::new(BIN), Arc::clone(&netns), 6444, &args);
    let json = "application/json";
    let (status, _, _) = raw(&a, "POST", CMS, json, &configmap("shared"));
    assert_eq!(status, 201);
    let (status, body, _) = raw(&b, "GET", &format!("{CMS}/shared"), json, b"");
    assert_eq!(
        status, 200,
        "a write through one control process is read through the other: {body}"
    );
    no_acknowledged_write_is_lost(&mut a);
}

#[test]
fn autoscalers_are_one_object_in_two_versions() {
    let plane = start(&[]);
    let json = "application/json";
    let v2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
    let v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60}}}],
        },
    });
    let (status, body, _) = raw(&plane, "POST", v2, json, hpa.to_string().as_bytes());
    assert_eq!(status, 201, "{body}");
    let (status, seen, _) = raw(&plane, "GET", &format!("{v1}/web"), json, b"");
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["apiVersion"], "autoscaling/v1");
    assert_eq!(seen["spec"]["targetCPUUtilizationPercentage"], 60);
    assert!(seen["spec"].get("metrics").is_none(), "{seen}");
    let patch = br#"{"spec":{"targetCPUUtilizationPercentage":75}}"#;
    let (status, body, _) = raw(
        &plane,
        "PATCH",
        &format!("{v1}/web"),
        "application/merge-patch+json",
        patch,
    );
    assert_eq!(
        (
            status,
            body["spec"]["targetCPUUtilizationPercentage"].as_i64()
        ),
        (200, Some(75)),
        "{body}"
    );
    let (_, stored, _) = raw(&plane, "GET", &format!("{v2}/web"), json, b"");
    assert_eq!(
        stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 75,
        "{stored}"
    );
}
