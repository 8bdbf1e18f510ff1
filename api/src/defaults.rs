//! Defaulting: the fields kube-apiserver fills in before it validates and stores an object.
//!
//! The values follow `pkg/apis/*/v1/defaults.go` and the generated `zz_generated.defaults.go`
//! of Kubernetes 1.33, plus the few values the registry strategies and admission plugins set
//! at creation that clients and controllers read back (a Pod's `status.phase` and
//! `status.qosClass`, its `priority`; a Namespace's `spec.finalizers`; a Service's
//! `clusterIPs` mirroring `clusterIP`). Quantities in resource lists are rewritten in
//! canonical form and rounded up to milli-units, as kube-apiserver stores them.
//!
//! Defaulting never overwrites a value the client set (the Namespace name label aside, which
//! always mirrors the name), is idempotent, and leaves fields of an unexpected JSON type
//! alone so that validation can report them.

use serde_json::{Map, Value, json};

use crate::validate::{Quantity, VOLUME_SOURCES, encode_base64, parse_quantity};

/// The file mode (0644) that projected and mounted files get unless the pod says otherwise.
const DEFAULT_FILE_MODE: i64 = 0o644;

/// Fills in the defaults of an object of `(group, kind)` (group `""` for core) in place.
/// Kinds without defaults are left as they are.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => default_pod(root),
        ("", "PodTemplate") => default_template(root, "template"),
        ("", "ReplicationController") => default_replication_controller(root),
        ("apps", "Deployment") => default_deployment(root),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = child(root, "spec") {
                set(spec, "replicas", json!(1));
                default_template(spec, "template");
            }
        }
        ("apps", "StatefulSet") => default_stateful_set(root),
        ("apps", "DaemonSet") => default_daemon_set(root),
        ("batch", "Job") => default_job(obj),
        ("batch", "CronJob") => default_cron_job(root),
        ("", "Service") => default_service(root),
        ("", "Endpoints") => {
            for subset in objects(root, "subsets") {
                for port in objects(subset, "ports") {
                    set(port, "protocol", json!("TCP"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in objects(root, "ports") {
                set(port, "name", json!(""));
                set(port, "protocol", json!("TCP"));
            }
        }
        ("", "Namespace") => default_namespace(root),
        ("", "Secret") => default_secret(root),
        ("", "PersistentVolumeClaim") => default_pvc(root),
        ("", "PersistentVolume") => default_pv(root),
        ("", "Node") => default_node(root),
        ("", "ResourceQuota") => {
            if let Some(spec) = child(root, "spec") {
                canonicalize_resource_list(spec, "hard");
            }
        }
        ("", "LimitRange") => default_limit_range(root),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(root),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(root),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_role_binding(root);
        }
        ("storage.k8s.io", "StorageClass") => {
            set(root, "reclaimPolicy", json!("Delete"));
            set(root, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set(root, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        _ => {}
    }
}

// Small helpers over JSON maps. None of them replaces a value of an unexpected type.

/// Sets `key` to `value` when it is absent or null.
fn set(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_owned(), value);
        }
        Some(_) => {}
    }
}

/// Whether `key` is absent, null, or the zero value of its type (Go cannot tell these apart
/// for non-pointer fields, so its defaulting treats them alike).
fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    }
}

/// Sets `key` when it is unset in the Go sense (absent, null, `""` or `0`).
fn set_unset(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value);
    }
}

/// The object at `key`, if it is one.
fn child<'m>(map: &'m mut Map<String, Value>, key: &str) -> Option<&'m mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key`, created empty when absent or null.
fn child_or_new<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
) -> Option<&'m mut Map<String, Value>> {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    child(map, key)
}

/// The object items of the array at `key`.
fn objects<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'m mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The string at `key`, or `""`.
fn str_of<'m>(map: &'m Map<String, Value>, key: &str) -> &'m str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Rewrites the quantities of the resource list at `key` in canonical form, rounded up to
/// milli-units (`SetDefaults_ResourceList`). Values that do not parse are left for
/// validation to report.
fn canonicalize_resource_list(map: &mut Map<String, Value>, key: &str) {
    let Some(list) = child(map, key) else {
        return;
    };
    for value in list.values_mut() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if let Ok(q) = parse_quantity(&text) {
            *value = Value::String(q.round_up_to_milli().to_string());
        }
    }
}

fn default_pod(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    default_pod_spec(spec);
    // What SetDefaults_Pod adds to a Pod but not to a template.
    for list in ["containers", "initContainers"] {
        for c in objects(spec, list) {
            default_requests_from_limits(c);
        }
    }
    set(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["containers", "initContainers"] {
            for c in objects(spec, list) {
                for port in objects(c, "ports") {
                    if is_unset(port, "hostPort")
                        && let Some(cp) = port.get("containerPort").cloned()
                    {
                        port.insert("hostPort".to_owned(), cp);
                    }
                }
            }
        }
    }
    // The Priority admission plugin resolves priorityClassName; without one a pod gets the
    // default priority and preemption policy.
    if str_of(spec, "priorityClassName").is_empty() {
        set(spec, "priority", json!(0));
        set(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    let qos = root.get("spec").map_or("BestEffort", qos_of_spec);
    if let Some(status) = child_or_new(root, "status") {
        set(status, "phase", json!("Pending"));
        set(status, "qosClass", json!(qos));
    }
}

/// Requests default to limits for each resource a container limits but does not request.
fn default_requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = child(container, "resources") else {
        return;
    };
    // Empty maps are left out, as Go's `omitempty` leaves them out of the stored JSON.
    let Some(limits) = resources
        .get("limits")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
    else {
        return;
    };
    let Some(requests) = child_or_new(resources, "requests") else {
        return;
    };
    for (name, value) in limits {
        requests.entry(name).or_insert(value);
    }
}

/// The pod template at `key` of `parent`: the template's pod spec gets its defaults.
fn default_template(parent: &mut Map<String, Value>, key: &str) {
    if let Some(template) = child(parent, key)
        && let Some(spec) = child(template, "spec")
    {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the generated defaults of everything a pod spec holds.
fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_unset(spec, "dnsPolicy", json!("ClusterFirst"));
    set_unset(spec, "restartPolicy", json!("Always"));
    set(spec, "securityContext", json!({}));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set_unset(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in objects(spec, list) {
            default_container(c);
        }
    }
    for volume in objects(spec, "volumes") {
        default_volume(volume);
    }
    canonicalize_resource_list(spec, "overhead");
}

/// Parses an image reference's tag the way `parsers.ParseImageName` does: an untagged,
/// undigested image is `latest`.
fn image_tag(image: &str) -> &str {
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if has_digest => "",
        None => "latest",
    }
}

fn default_container(c: &mut Map<String, Value>) {
    if is_unset(c, "imagePullPolicy") {
        let policy = if image_tag(str_of(c, "image")) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".to_owned(), json!(policy));
    }
    set_unset(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_unset(c, "terminationMessagePolicy", json!("File"));
    for port in objects(c, "ports") {
        set_unset(port, "protocol", json!("TCP"));
    }
    for var in objects(c, "env") {
        if let Some(from) = child(var, "valueFrom")
            && let Some(field_ref) = child(from, "fieldRef")
        {
            set_unset(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = child(c, probe_name) {
            set_unset(probe, "timeoutSeconds", json!(1));
            set_unset(probe, "periodSeconds", json!(10));
            set_unset(probe, "successThreshold", json!(1));
            set_unset(probe, "failureThreshold", json!(3));
            default_handler(probe);
            if let Some(grpc) = child(probe, "grpc") {
                set(grpc, "service", json!(""));
            }
        }
    }
    if let Some(lifecycle) = child(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = child(lifecycle, hook) {
                default_handler(handler);
            }
        }
    }
    // ResourceRequirements is a struct, not a pointer, so it always serializes.
    if let Some(resources) = child_or_new(c, "resources") {
        canonicalize_resource_list(resources, "limits");
        canonicalize_resource_list(resources, "requests");
    }
}

fn default_handler(handler: &mut Map<String, Value>) {
    if let Some(http) = child(handler, "httpGet") {
        set_unset(http, "path", json!("/"));
        set_unset(http, "scheme", json!("HTTP"));
    }
}

fn default_volume(volume: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| volume.get(*s).is_some_and(|v| !v.is_null()));
    if !has_source {
        volume.insert("emptyDir".to_owned(), json!({}));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = child(volume, source) {
            set(src, "defaultMode", json!(DEFAULT_FILE_MODE));
        }
    }
    if let Some(host_path) = child(volume, "hostPath") {
        set(host_path, "type", json!(""));
    }
    if let Some(downward) = child(volume, "downwardAPI") {
        default_downward_items(downward);
    }
    if let Some(projected) = child(volume, "projected") {
        for source in objects(projected, "sources") {
            if let Some(token) = child(source, "serviceAccountToken") {
                set(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = child(source, "downwardAPI") {
                default_downward_items(downward);
            }
        }
    }
    if let Some(iscsi) = child(volume, "iscsi") {
        set_unset(iscsi, "iscsiInterface", json!("default"));
    }
    if let Some(rbd) = child(volume, "rbd") {
        set_unset(rbd, "pool", json!("rbd"));
        set_unset(rbd, "user", json!("admin"));
        set_unset(rbd, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(empty_dir) = child(volume, "emptyDir")
        && let Some(limit) = empty_dir.get_mut("sizeLimit")
        && let Some(q) = quantity_value(limit)
    {
        *limit = Value::String(q.to_string());
    }
    if let Some(ephemeral) = child(volume, "ephemeral")
        && let Some(template) = child(ephemeral, "volumeClaimTemplate")
        && let Some(spec) = child(template, "spec")
    {
        default_pvc_spec(spec);
    }
}

fn default_downward_items(downward: &mut Map<String, Value>) {
    for item in objects(downward, "items") {
        if let Some(field_ref) = child(item, "fieldRef") {
            set_unset(field_ref, "apiVersion", json!("v1"));
        }
    }
}

fn quantity_value(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => parse_quantity(&n.to_string()).ok(),
        _ => None,
    }
}

/// How long a pod stays on a node that stops being ready or reachable before the taint
/// eviction removes it, unless it says otherwise (kube-apiserver's DefaultTolerationSeconds
/// admission plugin, `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Give a new Pod the DefaultTolerationSeconds admission plugin's tolerations: the
/// `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` NoExecute taints for
/// [`DEFAULT_TOLERATION_SECONDS`], each unless a toleration of the pod already covers that
/// key (or every key) with effect NoExecute (or every effect). Only on create, as upstream.
pub fn add_default_tolerations(pod: &mut Value) {
    if !pod["spec"].is_object() {
        return;
    }
    let existing = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let covers = |key: &str| {
        existing.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut tolerations = existing.clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !covers(key) {
            tolerations.push(serde_json::json!({
                "key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
    if tolerations.len() != existing.len() {
        pod["spec"]["tolerations"] = Value::Array(tolerations);
    }
}

/// The QoS class kube-apiserver records in a new Pod's `status.qosClass`: `Guaranteed` when
/// every container limits CPU and memory and requests equal limits, `BestEffort` when no
/// container requests or limits either, `Burstable` otherwise. Only CPU and memory count,
/// and only non-zero amounts (as `qos.ComputePodQOS` does).
pub fn pod_qos_class(pod: &Value) -> &'static str {
    pod.get("spec").map_or("BestEffort", qos_of_spec)
}

fn qos_of_spec(spec: &Value) -> &'static str {
    let mut requests: Vec<(&str, Quantity)> = Vec::new();
    let mut limits: Vec<(&str, Quantity)> = Vec::new();
    let mut guaranteed = true;
    let add = |sums: &mut Vec<(&'static str, Quantity)>, name: &'static str, q: Quantity| match sums
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some((_, total)) => *total = total.saturating_add(&q),
        None => sums.push((name, q)),
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let list = |kind: &str, name: &str| {
            c.get("resources")
                .and_then(|r| r.get(kind))
                .and_then(|l| l.get(name))
                .and_then(quantity_value)
                .filter(|q| q.nanos() > 0)
        };
        let mut limited = 0;
        for name in ["cpu", "memory"] {
            if let Some(q) = list("requests", name) {
                add(&mut requests, name, q);
            }
            if let Some(q) = list("limits", name) {
                limited += 1;
                add(&mut limits, name, q);
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let requests_match = requests
        .iter()
        .all(|(name, req)| limits.iter().any(|(n, lim)| n == name && lim == req));
    if guaranteed && requests_match && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_replication_controller(root: &mut Map<String, Value>) {
    let template_labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = child(root, "spec")
            && spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
        {
            spec.insert("selector".to_owned(), labels.clone());
        }
        if let Some(meta) = child(root, "metadata")
            && meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
        {
            meta.insert("labels".to_owned(), labels);
        }
    }
    if let Some(spec) = child(root, "spec") {
        set(spec, "replicas", json!(1));
        default_template(spec, "template");
    }
}

fn default_deployment(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    set(spec, "replicas", json!(1));
    if let Some(strategy) = child_or_new(spec, "strategy") {
        set_unset(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child_or_new(strategy, "rollingUpdate")
        {
            set(rolling, "maxUnavailable", json!("25%"));
            set(rolling, "maxSurge", json!("25%"));
        }
    }
    set(spec, "revisionHistoryLimit", json!(10));
    set(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec, "template");
}

fn default_stateful_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    set_unset(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_or_new(spec, "updateStrategy") {
        // The rollingUpdate block is only created along with a defaulted type.
        if is_unset(strategy, "type") {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
            set(strategy, "rollingUpdate", json!({}));
        }
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child(strategy, "rollingUpdate")
        {
            set(rolling, "partition", json!(0));
        }
    }
    if let Some(policy) = child_or_new(spec, "persistentVolumeClaimRetentionPolicy") {
        set_unset(policy, "whenDeleted", json!("Retain"));
        set_unset(policy, "whenScaled", json!("Retain"));
    }
    set(spec, "replicas", json!(1));
    set(spec, "revisionHistoryLimit", json!(10));
    default_template(spec, "template");
    for claim in objects(spec, "volumeClaimTemplates") {
        default_pvc(claim);
    }
}

fn default_daemon_set(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    if let Some(strategy) = child_or_new(spec, "updateStrategy") {
        set_unset(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == "RollingUpdate"
            && let Some(rolling) = child_or_new(strategy, "rollingUpdate")
        {
            set(rolling, "maxUnavailable", json!(1));
            set(rolling, "maxSurge", json!(0));
        }
    }
    set(spec, "revisionHistoryLimit", json!(10));
    default_template(spec, "template");
}

fn default_job(obj: &mut Value) {
    generate_job_selector(obj);
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let template_labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let Some(spec) = child(root, "spec") else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".to_owned(), json!(1));
        spec.insert("parallelism".to_owned(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        set(spec, "backoffLimit", json!(i32::MAX));
    } else {
        set(spec, "backoffLimit", json!(6));
    }
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    if let Some(policy) = child(spec, "podFailurePolicy") {
        for rule in objects(policy, "rules") {
            for pattern in objects(rule, "onPodConditions") {
                set_unset(pattern, "status", json!("True"));
            }
        }
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set(spec, "podReplacementPolicy", json!(replacement));
    default_template(spec, "template");
    // A Job without labels of its own carries its pods' labels.
    if let Some(labels) = template_labels
        && let Some(meta) = child(root, "metadata")
        && meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
    {
        meta.insert("labels".to_owned(), labels);
    }
}

/// Gives a Job the selector kube-apiserver generates at creation unless `manualSelector`
/// is set: its pods are labelled with the Job's uid and name
/// (`batch.kubernetes.io/controller-uid`, `batch.kubernetes.io/job-name` and their legacy
/// unprefixed forms) and the selector matches the uid. Needs `metadata.uid`, so the server
/// assigns the uid before defaulting; without one nothing is generated. Labels the client
/// already set are kept (a conflicting one then fails validation, as upstream).
pub fn generate_job_selector(job: &mut Value) {
    let Some(root) = job.as_object_mut() else {
        return;
    };
    let meta = root.get("metadata");
    let uid = meta
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if uid.is_empty() {
        return;
    }
    let Some(spec) = child(root, "spec") else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(template) = child_or_new(spec, "template")
        && let Some(tmeta) = child_or_new(template, "metadata")
        && let Some(labels) = child_or_new(tmeta, "labels")
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(selector) = child_or_new(spec, "selector")
        && let Some(match_labels) = child_or_new(selector, "matchLabels")
    {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

fn default_cron_job(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    set_unset(spec, "concurrencyPolicy", json!("Allow"));
    set(spec, "suspend", json!(false));
    set(spec, "successfulJobsHistoryLimit", json!(3));
    set(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_template) = child(spec, "jobTemplate")
        && let Some(job_spec) = child(job_template, "spec")
    {
        default_template(job_spec, "template");
    }
}

fn default_service(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    set_unset(spec, "sessionAffinity", json!("None"));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".to_owned(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    set_unset(spec, "type", json!("ClusterIP"));
    for port in objects(spec, "ports") {
        set_unset(port, "protocol", json!("TCP"));
        if is_unset(port, "targetPort")
            && let Some(p) = port.get("port").cloned()
        {
            port.insert("targetPort".to_owned(), p);
        }
    }
    let kind = str_of(spec, "type").to_owned();
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        kind == "LoadBalancer" || kind == "NodePort" || (kind == "ClusterIP" && external_ips);
    if externally_accessible {
        set_unset(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if kind != "ExternalName" {
        // The registry keeps clusterIPs[0] and clusterIP in step; an address family policy
        // is chosen when addresses are allocated, single-stack unless asked otherwise.
        set(spec, "ipFamilyPolicy", json!("SingleStack"));
        let cluster_ip = str_of(spec, "clusterIP").to_owned();
        let ips_empty = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !cluster_ip.is_empty() && ips_empty {
            spec.insert("clusterIPs".to_owned(), json!([cluster_ip]));
        }
    }
    if kind == "LoadBalancer"
        && let Some(status) = child(root, "status")
        && let Some(lb) = child(status, "loadBalancer")
    {
        for ingress in objects(lb, "ingress") {
            if !str_of(ingress, "ip").is_empty() {
                set(ingress, "ipMode", json!("VIP"));
            }
        }
    }
}

fn default_namespace(root: &mut Map<String, Value>) {
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // Nameless (generateName) namespaces get the label once named.
    if !name.is_empty()
        && let Some(meta) = child(root, "metadata")
        && let Some(labels) = child_or_new(meta, "labels")
    {
        labels.insert("kubernetes.io/metadata.name".to_owned(), json!(name));
    }
    if let Some(spec) = child_or_new(root, "spec") {
        set(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_or_new(root, "status") {
        set_unset(status, "phase", json!("Active"));
    }
}

/// Secrets default to `Opaque`, and `stringData` (a write-only convenience) is folded into
/// `data` as base64, overriding keys present in both, as the v1 conversion does.
fn default_secret(root: &mut Map<String, Value>) {
    set_unset(root, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = root.get("stringData").cloned() else {
        if root.get("stringData").is_some_and(Value::is_null) {
            root.remove("stringData");
        }
        return;
    };
    if !string_data.values().all(Value::is_string) {
        return; // Left for validation to report.
    }
    root.remove("stringData");
    if let Some(data) = child_or_new(root, "data") {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or("");
            data.insert(k, Value::String(encode_base64(text.as_bytes())));
        }
    }
}

fn default_pvc_spec(spec: &mut Map<String, Value>) {
    set(spec, "volumeMode", json!("Filesystem"));
    if let Some(resources) = child(spec, "resources") {
        canonicalize_resource_list(resources, "requests");
        canonicalize_resource_list(resources, "limits");
    }
}

fn default_pvc(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        default_pvc_spec(spec);
    }
    if let Some(status) = child_or_new(root, "status") {
        set_unset(status, "phase", json!("Pending"));
        canonicalize_resource_list(status, "capacity");
    }
}

fn default_pv(root: &mut Map<String, Value>) {
    if let Some(spec) = child(root, "spec") {
        set_unset(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set(spec, "volumeMode", json!("Filesystem"));
        canonicalize_resource_list(spec, "capacity");
        if let Some(host_path) = child(spec, "hostPath") {
            set(host_path, "type", json!(""));
        }
    }
    if let Some(status) = child_or_new(root, "status") {
        set_unset(status, "phase", json!("Pending"));
    }
}

fn default_node(root: &mut Map<String, Value>) {
    let Some(status) = child(root, "status") else {
        return;
    };
    canonicalize_resource_list(status, "capacity");
    canonicalize_resource_list(status, "allocatable");
    if status.get("allocatable").is_none_or(Value::is_null)
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".to_owned(), capacity);
    }
}

fn default_limit_range(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    for item in objects(spec, "limits") {
        for list in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            canonicalize_resource_list(item, list);
        }
        if str_of(item, "type") != "Container" {
            continue;
        }
        // Limits default to the max, requests to the limit, then to the min.
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            // Empty maps are left out, as Go's `omitempty` leaves them out of stored JSON.
            let Some(source) = item
                .get(from)
                .and_then(Value::as_object)
                .filter(|m| !m.is_empty())
                .cloned()
            else {
                continue;
            };
            if let Some(target) = child_or_new(item, to) {
                for (name, value) in source {
                    target.entry(name).or_insert(value);
                }
            }
        }
    }
}

fn default_network_policy(root: &mut Map<String, Value>) {
    let Some(spec) = child(root, "spec") else {
        return;
    };
    for direction in ["ingress", "egress"] {
        for rule in objects(spec, direction) {
            for port in objects(rule, "ports") {
                set(port, "protocol", json!("TCP"));
            }
        }
    }
    let types_empty = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if types_empty
        && spec
            .get("policyTypes")
            .is_none_or(|v| v.is_array() || v.is_null())
    {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".to_owned(), types);
    }
}

/// HPA defaults. `autoscaling/v2` objects get a CPU utilisation target of 80% when they
/// list no metrics and, when they give a `behavior`, its missing rules; `autoscaling/v1`
/// objects (told apart by `apiVersion`) only get `minReplicas`.
fn default_hpa(root: &mut Map<String, Value>) {
    let v1 = root.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1");
    let Some(spec) = child(root, "spec") else {
        return;
    };
    set(spec, "minReplicas", json!(1));
    if v1 {
        return;
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
        && spec
            .get("metrics")
            .is_none_or(|m| m.is_array() || m.is_null())
    {
        spec.insert(
            "metrics".to_owned(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    if let Some(behavior) = child(spec, "behavior") {
        if let Some(up) = child_or_new(behavior, "scaleUp") {
            set(up, "stabilizationWindowSeconds", json!(0));
            set(up, "selectPolicy", json!("Max"));
            set(
                up,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                       {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        if let Some(down) = child_or_new(behavior, "scaleDown") {
            set(down, "stabilizationWindowSeconds", json!(300));
            set(down, "selectPolicy", json!("Max"));
            set(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

fn default_role_binding(root: &mut Map<String, Value>) {
    if let Some(role_ref) = child(root, "roleRef") {
        set_unset(role_ref, "apiGroup", json!("rbac.authorization.k8s.io"));
    }
    for subject in objects(root, "subjects") {
        if is_unset(subject, "apiGroup") && matches!(str_of(subject, "kind"), "User" | "Group") {
            subject.insert("apiGroup".to_owned(), json!("rbac.authorization.k8s.io"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply_defaults(group, kind, &mut obj);
        let once = obj.clone();
        apply_defaults(group, kind, &mut obj);
        assert_eq!(obj, once, "defaulting {kind} twice changes it");
        obj
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:1.27"), "1.27");
        assert_eq!(image_tag("localhost:5000/nginx"), "latest");
        assert_eq!(image_tag("localhost:5000/nginx:v2"), "v2");
        assert_eq!(image_tag("nginx@sha256:abcd"), "");
        assert_eq!(image_tag("nginx:1.27@sha256:abcd"), "1.27");
    }

    #[test]
    fn pods_get_spec_container_and_status_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [{"name": "a", "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}}},
                    {"name": "b", "image": "busybox:1.36", "imagePullPolicy": "Never"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "tmp"}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        let a = &spec["containers"][0];
        assert_eq!(a["imagePullPolicy"], "Always");
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        assert_eq!(a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            a["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(a["resources"]["limits"]["cpu"], "500m");
        assert_eq!(
            a["resources"]["requests"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "Never");
        assert_eq!(spec["containers"][1]["resources"], json!({}));
        assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][1]["emptyDir"], json!({}));
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Burstable"})
        );
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "nginx:1.27", "resources": {"limits": {"cpu": "1"}}}]}}}}),
        );
        let tspec = &d["spec"]["template"]["spec"];
        assert_eq!(tspec["restartPolicy"], "Always");
        assert!(tspec.get("enableServiceLinks").is_none());
        assert!(tspec.get("priority").is_none());
        assert!(
            tspec["containers"][0]["resources"]
                .get("requests")
                .is_none()
        );
        assert_eq!(tspec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(d.get("status").is_none());
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    }

    #[test]
    fn user_values_are_kept() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 5, "containers": []}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            5
        );
    }

    #[test]
    fn workload_defaults() {
        let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"resources": {"requests": {"storage": "1024Mi"}}}}]}}),
        );
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(claim["status"]["phase"], "Pending");
        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let job = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"containers": []}}}}),
        );
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(
            job["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());
        assert!(
            parallel["spec"].get("selector").is_none(),
            "no uid, no selector"
        );
        let manual = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true}}),
        );
        assert!(manual["spec"].get("selector").is_none());
        let cron = defaulted(
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {}}}}}}),
        );
        assert_eq!(cron["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cron["spec"]["suspend"], false);
        assert_eq!(cron["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cron["spec"]["failedJobsHistoryLimit"], 1);
        let jspec = &cron["spec"]["jobTemplate"]["spec"];
        assert_eq!(jspec["template"]["spec"]["restartPolicy"], "Always");
        assert!(
            jspec.get("backoffLimit").is_none(),
            "job defaults apply to Jobs only"
        );
    }

    #[test]
    fn services() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        let lb = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        let headless = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let external = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(external["spec"].get("ipFamilyPolicy").is_none());
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
    }

    #[test]
    fn namespaces_always_carry_their_name_label() {
        let ns = defaulted(
            "",
            "Namespace",
            json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "spoofed", "x": "y"}}}),
        );
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"kubernetes.io/metadata.name": "team-a", "x": "y"})
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[test]
    fn storage_defaults() {
        let pvc = defaulted(
            "",
            "PersistentVolumeClaim",
            json!({"spec": {"resources": {"requests": {"storage": 1073741824}}}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            pvc["spec"]["resources"]["requests"]["storage"],
            "1073741824"
        );
        assert_eq!(pvc["status"]["phase"], "Pending");
        let pv = defaulted(
            "",
            "PersistentVolume",
            json!({"spec": {"capacity": {"storage": "10Gi"}, "hostPath": {"path": "/d"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert_eq!(pv["status"]["phase"], "Pending");
        let node = defaulted(
            "",
            "Node",
            json!({"status": {"capacity": {"cpu": 4, "memory": "8388608Ki"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi"})
        );
    }

    #[test]
    fn policy_and_rbac_defaults() {
        let np = defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}], "egress": [{}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        let ingress_only = defaulted(
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}}}),
        );
        assert_eq!(ingress_only["spec"]["policyTypes"], json!(["Ingress"]));
        let slice = defaulted(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"ports": [{"port": 80}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        let binding = defaulted(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "x"}]}),
        );
        assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(
            binding["subjects"][0]["apiGroup"],
            "rbac.authorization.k8s.io"
        );
        assert!(binding["subjects"][1].get("apiGroup").is_none());
    }

    #[test]
    fn limit_ranges_default_container_limits_and_requests() {
        let lr = defaulted(
            "",
            "LimitRange",
            json!({"spec": {"limits": [
                {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
                {"type": "Pod", "max": {"cpu": "4"}}]}}),
        );
        let container = &lr["spec"]["limits"][0];
        assert_eq!(container["default"], json!({"cpu": "2"}));
        assert_eq!(
            container["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );
        assert!(lr["spec"]["limits"][1].get("default").is_none());
    }

    #[test]
    fn hpa_defaults() {
        let v2 = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        );
        assert_eq!(v2["spec"]["minReplicas"], 1);
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["name"], "cpu");
        assert_eq!(
            v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(
            v2["spec"]["behavior"]["scaleUp"]["policies"][0]["type"],
            "Pods"
        );
        let v1 = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 5}}),
        );
        assert!(v1["spec"].get("metrics").is_none());
    }

    #[test]
    fn qos_classes() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
        assert_eq!(pod_qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&pod(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            pod_qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&pod(
                json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
            )),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&pod(json!({"requests": {"cpu": "0"}}))),
            "BestEffort"
        );
        assert_eq!(
            pod_qos_class(&json!({"spec": {"containers": "nope"}})),
            "BestEffort"
        );
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        for (group, kind) in [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("", "Namespace"),
            ("", "Secret"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("autoscaling", "HorizontalPodAutoscaler"),
        ] {
            for v in [
                json!(null),
                json!([]),
                json!({"spec": 3}),
                json!({"spec": {"template": "x", "containers": {"a": 1}, "ports": [1, "x"], "volumes": [null]}}),
                json!({"metadata": "x", "stringData": {"a": 1}}),
            ] {
                let mut v = v;
                apply_defaults(group, kind, &mut v);
            }
        }
    }

    #[test]
    fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2});
        let mut pod = json!({"spec": {"tolerations": [own]}});
        add_default_tolerations(&mut pod);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0], own);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
        let mut tolerates_all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut tolerates_all);
        assert_eq!(
            tolerates_all["spec"]["tolerations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
