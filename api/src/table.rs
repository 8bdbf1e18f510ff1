//! `meta.k8s.io/v1` `Table`s: what `kubectl get` shows.
//!
//! kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the columns and
//! cells the server sends, so the server decides what `kubectl get pods` looks like. The
//! columns and cell values here follow kube-apiserver's printers
//! (`k8s.io/kubernetes/pkg/printers/internalversion/printers.go`, as of 1.33): the same column
//! names, types and priorities, the same cell text (`1/2`, `CrashLoopBackOff`,
//! `5 (70s ago)`, `80/TCP,443:30443/TCP`, `<none>`) and ages in
//! `k8s.io/apimachinery/pkg/util/duration.HumanDuration`'s format. Like kube-apiserver, every
//! row carries all columns, wide ones (priority 1) included; kubectl hides them unless
//! `-o wide`. Kinds without a printer upstream (roles, cluster roles, limit ranges) get
//! kube-apiserver's default table: `Name` and `Created At`.
//!
//! Objects are read leniently: a missing field prints as its zero value, never as an error,
//! because a listing must not fail on one odd object.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::registry::Resource;

/// The `apiVersion` of the tables built here. kubectl 1.27–1.33 all ask for v1 first; a
/// client asking only for `meta.k8s.io/v1beta1` may be given the same body with that
/// `apiVersion` (the two versions have the same fields).
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// What each row's `object` holds, from the `includeObject` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No `object` in rows.
    None,
    /// A `PartialObjectMetadata` with the object's metadata: kubectl's default, which it
    /// needs for `--show-labels`, `-L` and the `NAMESPACE` column.
    #[default]
    Metadata,
    /// The whole object (kubectl asks for it to sort with `--sort-by`).
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent means [`IncludeObject::Metadata`].
    /// `None` for a value kube-apiserver would reject with 400 Bad Request.
    pub fn from_query(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("") | Some("Metadata") => Some(Self::Metadata),
            Some("None") => Some(Self::None),
            Some("Object") => Some(Self::Object),
            Some(_) => None,
        }
    }
}

/// Builds the `Table` for `objects` of `resource`, as kube-apiserver would at time `now`.
///
/// `metadata` is left empty: for a list, the caller copies the list's `resourceVersion`,
/// `continue` and `remainingItemCount` with [`set_list_meta`]; for a single object, its
/// `resourceVersion`. In a watch, kube-apiserver sends column definitions only in the first
/// event; later events may drop `columnDefinitions`.
pub fn table(
    resource: &Resource,
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
) -> Value {
    let printer = printer_for(resource);
    let columns: Vec<Value> = printer
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array((printer.cells)(object, now)));
            if resource.group.is_empty()
                && resource.plural == "pods"
                && let Some(conditions) = pod_row_conditions(object)
            {
                row.insert("conditions".into(), conditions);
            }
            match include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_object_metadata(object));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), object.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Copies a list's metadata into a table built by [`table`]: the list's `resourceVersion`,
/// the `continue` token of a chunked list and, when known, `remainingItemCount`.
pub fn set_list_meta(
    table: &mut Value,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining_item_count: Option<i64>,
) {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(resource_version));
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        meta.insert("continue".into(), json!(token));
    }
    if let Some(count) = remaining_item_count {
        meta.insert("remainingItemCount".into(), json!(count));
    }
    table["metadata"] = Value::Object(meta);
}

/// The `PartialObjectMetadata` form of an object: its metadata alone.
fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Formats a duration the way `duration.HumanDuration` does: about two significant figures,
/// `"5s"`, `"3m20s"`, `"10m"`, `"3h30m"`, `"47h"`, `"2d1h"`, `"30d"`, `"2y1d"`. Up to a
/// second in the future reads `"0s"` (clocks differ); further is `"<invalid>"`.
pub fn human_duration(duration: SignedDuration) -> String {
    // Truncation toward zero, as Go's int(d.Seconds()).
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

/// The time since an RFC 3339 timestamp, as [`human_duration`] prints it; `"<unknown>"` when
/// the timestamp is absent or unreadable (kube-apiserver's zero time).
pub fn age(timestamp: &Value, now: Timestamp) -> String {
    match parse_time(timestamp) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".into(),
    }
}

fn parse_time(timestamp: &Value) -> Option<Timestamp> {
    timestamp.as_str()?.parse().ok()
}

// Reading JSON leniently: a missing field reads as null, "", 0, false or an empty list.

static NULL: Value = Value::Null;

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .unwrap_or(&NULL)
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).as_str().unwrap_or("")
}

fn int(value: &Value, path: &[&str]) -> i64 {
    at(value, path).as_i64().unwrap_or(0)
}

fn flag(value: &Value, path: &[&str]) -> bool {
    at(value, path).as_bool().unwrap_or(false)
}

fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn name(object: &Value) -> Value {
    json!(text(object, &["metadata", "name"]))
}

fn created(object: &Value, now: Timestamp) -> Value {
    json!(age(at(object, &["metadata", "creationTimestamp"]), now))
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// A quantity (`"10Gi"`) or int-or-string (`3`, `"50%"`) as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(labels: &Value) -> String {
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A `metav1.LabelSelector` as its string form: requirements sorted by key, `k=v` for
/// `matchLabels`, `k in (a,b)`, `k notin (a,b)`, `k` and `!k` for expressions. Empty for a
/// missing or empty selector.
fn selector_string(selector: &Value) -> String {
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = at(selector, &["matchLabels"]).as_object() {
        for (key, value) in labels {
            requirements.push((
                key.clone(),
                format!("{key}={}", value.as_str().unwrap_or("")),
            ));
        }
    }
    for expression in list(selector, &["matchExpressions"]) {
        let key = text(expression, &["key"]);
        let mut values: Vec<&str> = list(expression, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let values = values.join(",");
        let requirement = match text(expression, &["operator"]) {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({values})"),
        };
        requirements.push((key.to_owned(), requirement));
    }
    // Stable: among equal keys, match labels stay before expressions.
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty.
fn format_selector(selector: &Value) -> String {
    or_none(&selector_string(selector))
}

/// Container names and images, each joined with commas.
fn containers_and_images(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// Up to `max` entries joined with commas, then `" + N more..."`.
fn with_more(items: &[String], max: usize, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else {
        shown
    }
}

/// A condition of `type` in `conditions` has status `True`.
fn condition_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| text(c, &["type"]) == kind)
        .is_some_and(|c| text(c, &["status"]) == "True")
}

struct Column {
    name: &'static str,
    /// The OpenAPI type of the cells: `string`, `integer`, `boolean` or `date`.
    kind: &'static str,
    format: &'static str,
    /// 0 for columns kubectl always shows, 1 for those it shows with `-o wide`.
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority: 0,
        description,
    }
}

const fn string_col(name: &'static str, description: &'static str) -> Column {
    col(name, "string", description)
}

const fn integer_col(name: &'static str, description: &'static str) -> Column {
    col(name, "integer", description)
}

const fn boolean_col(name: &'static str, description: &'static str) -> Column {
    col(name, "boolean", description)
}

/// A string column kubectl shows only with `-o wide`.
const fn wide_col(name: &'static str, description: &'static str) -> Column {
    Column {
        priority: 1,
        ..string_col(name, description)
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "The name of the object, unique within its namespace.",
};
const AGE: Column = string_col("Age", "Time since the object was created.");
const CONTAINERS: Column = wide_col("Containers", "Container names of the pod template.");
const IMAGES: Column = wide_col("Images", "Container images of the pod template.");
const SELECTOR: Column = wide_col("Selector", "Pods it manages.");

/// The columns of one kind and the function that turns an object into a row of cells,
/// one per column.
struct Printer {
    columns: &'static [Column],
    cells: fn(&Value, Timestamp) -> Vec<Value>,
}

fn printer_for(resource: &Resource) -> Printer {
    let p = |columns: &'static [Column], cells: fn(&Value, Timestamp) -> Vec<Value>| Printer {
        columns,
        cells,
    };
    match (resource.group, resource.plural) {
        ("", "pods") => p(POD_COLUMNS, pod_cells),
        ("", "podtemplates") => p(POD_TEMPLATE_COLUMNS, pod_template_cells),
        ("", "replicationcontrollers") => {
            p(REPLICATION_CONTROLLER_COLUMNS, replication_controller_cells)
        }
        ("", "services") => p(SERVICE_COLUMNS, service_cells),
        ("", "endpoints") => p(ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "nodes") => p(NODE_COLUMNS, node_cells),
        ("", "events") => p(EVENT_COLUMNS, event_cells),
        ("events.k8s.io", "events") => p(EVENT_COLUMNS, events_k8s_io_cells),
        ("", "namespaces") => p(NAMESPACE_COLUMNS, namespace_cells),
        ("", "secrets") => p(SECRET_COLUMNS, secret_cells),
        ("", "serviceaccounts") => p(SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "persistentvolumes") => p(PERSISTENT_VOLUME_COLUMNS, persistent_volume_cells),
        ("", "persistentvolumeclaims") => p(
            PERSISTENT_VOLUME_CLAIM_COLUMNS,
            persistent_volume_claim_cells,
        ),
        ("", "componentstatuses") => p(COMPONENT_STATUS_COLUMNS, component_status_cells),
        ("", "configmaps") => p(CONFIG_MAP_COLUMNS, config_map_cells),
        ("", "resourcequotas") => p(RESOURCE_QUOTA_COLUMNS, resource_quota_cells),
        ("apps", "deployments") => p(DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "replicasets") => p(REPLICA_SET_COLUMNS, replica_set_cells),
        ("apps", "statefulsets") => p(STATEFUL_SET_COLUMNS, stateful_set_cells),
        ("apps", "daemonsets") => p(DAEMON_SET_COLUMNS, daemon_set_cells),
        ("apps", "controllerrevisions") => {
            p(CONTROLLER_REVISION_COLUMNS, controller_revision_cells)
        }
        ("batch", "jobs") => p(JOB_COLUMNS, job_cells),
        ("batch", "cronjobs") => p(CRON_JOB_COLUMNS, cron_job_cells),
        ("autoscaling", "horizontalpodautoscalers") => p(HPA_COLUMNS, hpa_cells),
        ("networking.k8s.io", "ingresses") => p(INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "ingressclasses") => p(INGRESS_CLASS_COLUMNS, ingress_class_cells),
        ("networking.k8s.io", "networkpolicies") => p(NETWORK_POLICY_COLUMNS, network_policy_cells),
        ("discovery.k8s.io", "endpointslices") => p(ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("policy", "poddisruptionbudgets") => p(PDB_COLUMNS, pdb_cells),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            p(ROLE_BINDING_COLUMNS, role_binding_cells)
        }
        ("coordination.k8s.io", "leases") => p(LEASE_COLUMNS, lease_cells),
        ("storage.k8s.io", "storageclasses") => p(STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("storage.k8s.io", "volumeattachments") => {
            p(VOLUME_ATTACHMENT_COLUMNS, volume_attachment_cells)
        }
        ("storage.k8s.io", "csinodes") => p(CSI_NODE_COLUMNS, csi_node_cells),
        ("storage.k8s.io", "csidrivers") => p(CSI_DRIVER_COLUMNS, csi_driver_cells),
        _ => p(DEFAULT_COLUMNS, default_cells),
    }
}

// kube-apiserver's default table for kinds without a printer.

const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    col("Created At", "date", "When the object was created."),
];

fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    // The creation time in RFC 3339, UTC, whole seconds; Go's zero time when absent.
    let created = parse_time(at(object, &["metadata", "creationTimestamp"]))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    vec![name(object), json!(created)]
}

// Pods.

const POD_COLUMNS: &[Column] = &[
    NAME,
    string_col("Ready", "Ready containers out of all."),
    string_col("Status", "The phase or the telling container state."),
    string_col("Restarts", "Restarts, and how long ago the last was."),
    AGE,
    wide_col("IP", "The pod's first IP address."),
    wide_col("Node", "The node the pod is bound to."),
    wide_col("Nominated Node", "Node chosen by preemption."),
    wide_col("Readiness Gates", "Readiness gates passed."),
];

/// When the last container of a status (by `lastState.terminated.finishedAt`) restarted.
fn last_termination(status: &Value) -> Option<Timestamp> {
    parse_time(at(status, &["lastState", "terminated", "finishedAt"]))
}

fn keep_latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if candidate > *latest {
        *latest = candidate;
    }
}

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let status = at(pod, &["status"]);
    let init_containers = list(pod, &["spec", "initContainers"]);
    let conditions = list(status, &["conditions"]);
    // Restartable init containers (sidecars) count as containers of the pod.
    let is_sidecar = |container_name: &str| {
        init_containers.iter().any(|c| {
            text(c, &["name"]) == container_name && text(c, &["restartPolicy"]) == "Always"
        })
    };
    let sidecars = init_containers
        .iter()
        .filter(|c| text(c, &["restartPolicy"]) == "Always");
    let total = list(pod, &["spec", "containers"]).len() + sidecars.count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let phase = text(status, &["phase"]);
    let mut reason = match text(status, &["reason"]) {
        "" => phase.to_owned(),
        reason => reason.to_owned(),
    };
    if conditions
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, container) in list(status, &["initContainerStatuses"]).iter().enumerate() {
        let count = int(container, &["restartCount"]);
        restarts += count;
        keep_latest(&mut last_restart, last_termination(container));
        let sidecar = is_sidecar(text(container, &["name"]));
        if sidecar {
            sidecar_restarts += count;
            keep_latest(&mut last_sidecar_restart, last_termination(container));
        }
        let terminated = at(container, &["state", "terminated"]);
        let waiting_reason = text(container, &["state", "waiting", "reason"]);
        if terminated.is_object() && int(terminated, &["exitCode"]) == 0 {
            continue;
        }
        if sidecar && flag(container, &["started"]) {
            if flag(container, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match text(terminated, &["reason"]) {
                "" if int(terminated, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(terminated, &["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int(terminated, &["exitCode"])),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so the first container's state is the one shown.
        for container in list(status, &["containerStatuses"]).iter().rev() {
            restarts += int(container, &["restartCount"]);
            keep_latest(&mut last_restart, last_termination(container));
            let terminated = at(container, &["state", "terminated"]);
            let waiting_reason = text(container, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if terminated.is_object() {
                reason = match text(terminated, &["reason"]) {
                    "" if int(terminated, &["signal"]) != 0 => {
                        format!("Signal:{}", int(terminated, &["signal"]))
                    }
                    "" => format!("ExitCode:{}", int(terminated, &["exitCode"])),
                    r => r.to_owned(),
                };
            } else if flag(container, &["ready"])
                && at(container, &["state", "running"]).is_object()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose first container completed while another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    let deleting = !at(pod, &["metadata", "deletionTimestamp"]).is_null();
    if deleting && text(status, &["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts = match last_restart {
        Some(last) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                human_duration(now.duration_since(last))
            )
        }
        _ => restarts.to_string(),
    };

    // kube-apiserver reads status.podIPs only; status.podIP is the fallback for objects
    // written before the list was filled in.
    let ip = list(status, &["podIPs"])
        .first()
        .map(|ip| text(ip, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(status, &["podIP"]));
    let gates = list(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = gates
            .iter()
            .filter(|g| condition_true(conditions, text(g, &["conditionType"])))
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        created(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, &["spec", "nodeName"]))),
        json!(or_none(text(status, &["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// Finished pods carry a `Completed` row condition, as kube-apiserver marks them.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    string_col("Containers", "Container names of the pod template."),
    string_col("Images", "Container images of the pod template."),
    string_col("Pod Labels", "Labels of the pod template."),
];

fn pod_template_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(list(object, &["template", "spec", "containers"]));
    vec![
        name(object),
        containers,
        images,
        json!(format_labels(at(
            object,
            &["template", "metadata", "labels"]
        ))),
    ]
}

// Workload controllers.

/// `spec.replicas`, which defaults to 1.
fn replicas(object: &Value) -> i64 {
    at(object, &["spec", "replicas"]).as_i64().unwrap_or(1)
}

const REPLICATION_CONTROLLER_COLUMNS: &[Column] = &[
    NAME,
    integer_col("Desired", "Number of replicas requested."),
    integer_col("Current", "Number of replicas observed."),
    integer_col("Ready", "Number of ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replication_controller_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(replicas(object)),
        json!(int(object, &["status", "replicas"])),
        json!(int(object, &["status", "readyReplicas"])),
        created(object, now),
        containers,
        images,
        json!(format_labels(at(object, &["spec", "selector"]))),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = REPLICATION_CONTROLLER_COLUMNS;

fn replica_set_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(replicas(object)),
        json!(int(object, &["status", "replicas"])),
        json!(int(object, &["status", "readyReplicas"])),
        created(object, now),
        containers,
        images,
        json!(format_selector(at(object, &["spec", "selector"]))),
    ]
}

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    string_col("Ready", "Ready replicas out of those wanted."),
    string_col("Up-to-date", "Pods on the latest template."),
    string_col("Available", "Total number of available pods."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn deployment_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(format!(
            "{}/{}",
            int(object, &["status", "readyReplicas"]),
            replicas(object)
        )),
        json!(int(object, &["status", "updatedReplicas"])),
        json!(int(object, &["status", "availableReplicas"])),
        created(object, now),
        containers,
        images,
        // Deployments print the bare selector string, without `<none>`.
        json!(selector_string(at(object, &["spec", "selector"]))),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    string_col("Ready", "Ready replicas out of those wanted."),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn stateful_set_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(format!(
            "{}/{}",
            int(object, &["status", "readyReplicas"]),
            replicas(object)
        )),
        created(object, now),
        containers,
        images,
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    integer_col("Desired", "Nodes that should run it."),
    integer_col("Current", "Nodes running it."),
    integer_col("Ready", "Nodes where it is ready."),
    integer_col("Up-to-date", "Nodes running the latest template."),
    integer_col("Available", "Nodes where it is available."),
    string_col("Node Selector", "Nodes it is limited to."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let status = at(object, &["status"]);
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(int(status, &["desiredNumberScheduled"])),
        json!(int(status, &["currentNumberScheduled"])),
        json!(int(status, &["numberReady"])),
        json!(int(status, &["updatedNumberScheduled"])),
        json!(int(status, &["numberAvailable"])),
        json!(format_labels(at(
            object,
            &["spec", "template", "spec", "nodeSelector"]
        ))),
        created(object, now),
        containers,
        images,
        json!(format_selector(at(object, &["spec", "selector"]))),
    ]
}

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    string_col("Controller", "The object owning the revision."),
    string_col("Revision", "The revision of the state it holds."),
    AGE,
];

fn controller_revision_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let controller = list(object, &["metadata", "ownerReferences"])
        .iter()
        .find(|r| flag(r, &["controller"]))
        .map(|r| {
            let (group, _) = crate::registry::split_api_version(text(r, &["apiVersion"]));
            let kind = text(r, &["kind"]);
            let group_kind = if group.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind}.{group}")
            };
            format!("{}/{}", group_kind.to_lowercase(), text(r, &["name"]))
        })
        .unwrap_or_else(|| "<none>".into());
    vec![
        name(object),
        json!(controller),
        json!(int(object, &["revision"])),
        created(object, now),
    ]
}

const JOB_COLUMNS: &[Column] = &[
    NAME,
    string_col("Status", "Complete, Failed, Running and the like."),
    string_col("Completions", "Succeeded pods out of those wanted."),
    string_col("Duration", "How long the job ran."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn job_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let status = at(object, &["status"]);
    let succeeded = int(status, &["succeeded"]);
    let completions = match at(object, &["spec", "completions"]).as_i64() {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int(object, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        parse_time(at(status, &["startTime"])),
        parse_time(at(status, &["completionTime"])),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = list(status, &["conditions"]);
    let state = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if !at(object, &["metadata", "deletionTimestamp"]).is_null() {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) =
        containers_and_images(list(object, &["spec", "template", "spec", "containers"]));
    vec![
        name(object),
        json!(state),
        json!(completions),
        json!(duration),
        created(object, now),
        containers,
        images,
        json!(format_selector(at(object, &["spec", "selector"]))),
    ]
}

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    string_col("Schedule", "The schedule in Cron format."),
    string_col("Timezone", "Time zone of the schedule."),
    boolean_col("Suspend", "Whether later runs are suspended."),
    integer_col("Active", "The number of running jobs."),
    string_col("Last Schedule", "When a job was last scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn cron_job_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let template = at(object, &["spec", "jobTemplate", "spec"]);
    let last_schedule = at(object, &["status", "lastScheduleTime"]);
    let last_schedule = if last_schedule.is_null() {
        "<none>".to_owned()
    } else {
        age(last_schedule, now)
    };
    let suspend = match at(object, &["spec", "suspend"]).as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let (containers, images) =
        containers_and_images(list(template, &["template", "spec", "containers"]));
    vec![
        name(object),
        json!(text(object, &["spec", "schedule"])),
        json!(or_none(text(object, &["spec", "timeZone"]))),
        json!(suspend),
        json!(list(object, &["status", "active"]).len()),
        json!(last_schedule),
        created(object, now),
        containers,
        images,
        json!(format_selector(at(template, &["selector"]))),
    ]
}

const HPA_COLUMNS: &[Column] = &[
    NAME,
    string_col("Reference", "The scale target."),
    string_col("Targets", "Current/target metric values."),
    string_col("MinPods", "The lower replica limit."),
    string_col("MaxPods", "The upper replica limit."),
    string_col("Replicas", "The current number of replicas."),
    AGE,
];

fn hpa_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(object, &["spec"]);
    let reference = format!(
        "{}/{}",
        text(spec, &["scaleTargetRef", "kind"]),
        text(spec, &["scaleTargetRef", "name"])
    );
    let min_pods = at(spec, &["minReplicas"])
        .as_i64()
        .map_or_else(|| "<unset>".to_owned(), |n| n.to_string());
    vec![
        name(object),
        json!(reference),
        json!(hpa_targets(object)),
        json!(min_pods),
        json!(int(spec, &["maxReplicas"])),
        json!(int(object, &["status", "currentReplicas"])),
        created(object, now),
    ]
}

/// The TARGETS cell: `cpu: 40%/80%` and the like, two metrics at most.
fn hpa_targets(object: &Value) -> String {
    let specs = list(object, &["spec", "metrics"]);
    if specs.is_empty() {
        // autoscaling/v1 has one CPU target instead of a metric list.
        return match at(object, &["spec", "targetCPUUtilizationPercentage"]).as_i64() {
            Some(target) => {
                let current = at(object, &["status", "currentCPUUtilizationPercentage"])
                    .as_i64()
                    .map_or_else(|| "<unknown>".to_owned(), |c| format!("{c}%"));
                format!("cpu: {current}/{target}%")
            }
            None => "<none>".into(),
        };
    }
    let statuses = list(object, &["status", "currentMetrics"]);
    let quantity = |v: &Value| scalar(v).unwrap_or_else(|| "<unknown>".into());
    let entries: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i).unwrap_or(&NULL);
            match text(spec, &["type"]) {
                kind @ ("External" | "Object") => {
                    let field = if kind == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let target = at(spec, &[field, "target"]);
                    let current = at(status, &[field, "current"]);
                    if target.get("averageValue").is_some() {
                        format!(
                            "{}/{} (avg)",
                            quantity(at(current, &["averageValue"])),
                            quantity(at(target, &["averageValue"]))
                        )
                    } else {
                        format!(
                            "{}/{}",
                            quantity(at(current, &["value"])),
                            quantity(at(target, &["value"]))
                        )
                    }
                }
                "Pods" => format!(
                    "{}/{}",
                    quantity(at(status, &["pods", "current", "averageValue"])),
                    quantity(at(spec, &["pods", "target", "averageValue"]))
                ),
                kind @ ("Resource" | "ContainerResource") => {
                    let field = if kind == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let resource = text(spec, &[field, "name"]);
                    let target = at(spec, &[field, "target"]);
                    let current = at(status, &[field, "current"]);
                    if target.get("averageValue").is_some() {
                        format!(
                            "{resource}: {}/{}",
                            quantity(at(current, &["averageValue"])),
                            quantity(at(target, &["averageValue"]))
                        )
                    } else {
                        let percent = |v: &Value, missing: &str| {
                            v.as_i64()
                                .map_or_else(|| missing.to_owned(), |n| format!("{n}%"))
                        };
                        format!(
                            "{resource}: {}/{}",
                            percent(at(current, &["averageUtilization"]), "<unknown>"),
                            percent(at(target, &["averageUtilization"]), "<auto>")
                        )
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    let shown = entries[..entries.len().min(2)].join(", ");
    if entries.len() > 2 {
        format!("{shown} + {} more...", entries.len() - 2)
    } else {
        shown
    }
}

const PDB_COLUMNS: &[Column] = &[
    NAME,
    string_col("Min Available", "Pods that must stay available."),
    string_col("Max Unavailable", "Pods that may be unavailable."),
    integer_col("Allowed Disruptions", "Pods that may be evicted now."),
    AGE,
];

fn pdb_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |field| scalar(at(object, &["spec", field])).unwrap_or_else(|| "N/A".into());
    vec![
        name(object),
        json!(bound("minAvailable")),
        json!(bound("maxUnavailable")),
        json!(int(object, &["status", "disruptionsAllowed"])),
        created(object, now),
    ]
}

// Services and networking.

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    string_col("Type", "How the service is exposed."),
    string_col("Cluster-IP", "The service's cluster IP address."),
    string_col("External-IP", "Addresses from outside."),
    string_col("Port(s)", "The ports the service exposes."),
    AGE,
    wide_col("Selector", "Pods it routes to."),
];

fn service_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(object, &["spec"]);
    // Every stored service has a type (it defaults to ClusterIP).
    let kind = match text(spec, &["type"]) {
        "" => "ClusterIP",
        kind => kind,
    };
    let cluster_ip = list(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(spec, &["clusterIP"]));
    let external_ips: Vec<&str> = list(spec, &["externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match kind {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(at(object, &["status", "loadBalancer"]));
            addresses.extend(external_ips.iter().map(|ip| (*ip).to_owned()));
            if addresses.is_empty() {
                "<pending>".into()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => text(spec, &["externalName"]).to_owned(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list(spec, &["ports"])
        .iter()
        .map(|port| {
            let protocol = match text(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            match int(port, &["nodePort"]) {
                node_port if node_port > 0 => {
                    format!("{}:{node_port}/{protocol}", int(port, &["port"]))
                }
                _ => format!("{}/{protocol}", int(port, &["port"])),
            }
        })
        .collect();
    vec![
        name(object),
        json!(kind),
        json!(or_none(cluster_ip)),
        json!(external),
        json!(or_none(&ports.join(","))),
        created(object, now),
        json!(format_labels(at(spec, &["selector"]))),
    ]
}

/// The IPs (or host names) of a load balancer status, sorted and without repeats.
fn load_balancer_addresses(status: &Value) -> Vec<String> {
    let mut addresses: Vec<String> = list(status, &["ingress"])
        .iter()
        .filter_map(|ingress| {
            [text(ingress, &["ip"]), text(ingress, &["hostname"])]
                .into_iter()
                .find(|a| !a.is_empty())
                .map(str::to_owned)
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

const ENDPOINTS_COLUMNS: &[Column] = &[NAME, string_col("Endpoints", "Endpoint addresses."), AGE];

fn endpoints_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = list(object, &["subsets"]);
    let cell = if subsets.is_empty() {
        "<none>".to_owned()
    } else {
        let mut entries = Vec::new();
        for subset in subsets {
            let addresses: Vec<&str> = list(subset, &["addresses"])
                .iter()
                .map(|a| text(a, &["ip"]))
                .collect();
            let ports = list(subset, &["ports"]);
            if ports.is_empty() {
                // Headless services may have no ports.
                entries.extend(addresses.iter().map(|ip| (*ip).to_owned()));
            }
            for port in ports {
                let port = int(port, &["port"]);
                entries.extend(addresses.iter().map(|ip| join_host_port(ip, port)));
            }
        }
        // Subsets without addresses print as an empty cell, as upstream.
        with_more(&entries, 3, "")
    };
    vec![name(object), json!(cell), created(object, now)]
}

/// `host:port`, with IPv6 addresses in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    string_col("AddressType", "IPv4, IPv6 or FQDN."),
    string_col("Ports", "The ports of the endpoints."),
    string_col("Endpoints", "The addresses of the endpoints."),
    AGE,
];

fn endpoint_slice_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(object, &["ports"])
        .iter()
        .map(
            |port| match (at(port, &["port"]).as_i64(), at(port, &["name"]).as_str()) {
                (Some(number), _) => number.to_string(),
                (None, Some(name)) => name.to_owned(),
                (None, None) => "*".into(),
            },
        )
        .collect();
    let addresses: Vec<String> = list(object, &["endpoints"])
        .iter()
        .flat_map(|e| list(e, &["addresses"]).iter().filter_map(Value::as_str))
        .map(str::to_owned)
        .collect();
    vec![
        name(object),
        json!(text(object, &["addressType"])),
        json!(with_more(&ports, 3, "<unset>")),
        json!(with_more(&addresses, 3, "<unset>")),
        created(object, now),
    ]
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    string_col("Class", "The ingress class."),
    string_col("Hosts", "Host names its rules match."),
    string_col("Address", "Load balancer addresses."),
    string_col("Ports", "Ports it serves (443 with TLS)."),
    AGE,
];

fn ingress_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let rules = list(object, &["spec", "rules"]);
    // The first three hosts named; once three are listed, the rest count as more, counted
    // (as upstream does) over all rules beyond the third, named or not.
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == 3;
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - 3)
    } else {
        hosts.join(",")
    };
    let tls = !list(object, &["spec", "tls"]).is_empty();
    vec![
        name(object),
        json!(or_none(text(object, &["spec", "ingressClassName"]))),
        json!(hosts),
        json!(load_balancer_addresses(at(object, &["status", "loadBalancer"])).join(",")),
        json!(if tls { "80, 443" } else { "80" }),
        created(object, now),
    ]
}

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    string_col("Controller", "The controller implementing the class."),
    string_col("Parameters", "The object holding its parameters."),
    AGE,
];

fn ingress_class_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = at(object, &["spec", "parameters"]);
    let parameters = if parameters.is_object() {
        let kind = text(parameters, &["kind"]);
        let kind = match at(parameters, &["apiGroup"]).as_str() {
            Some(group) => format!("{kind}.{group}"),
            None => kind.to_owned(),
        };
        format!("{kind}/{}", text(parameters, &["name"]))
    } else {
        "<none>".into()
    };
    vec![
        name(object),
        json!(text(object, &["spec", "controller"])),
        json!(parameters),
        created(object, now),
    ]
}

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    string_col("Pod-Selector", "The pods the policy applies to."),
    AGE,
];

fn network_policy_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(format_selector(at(object, &["spec", "podSelector"]))),
        created(object, now),
    ]
}

// Cluster and configuration objects.

const NODE_COLUMNS: &[Column] = &[
    NAME,
    string_col("Status", "Ready, NotReady or Unknown."),
    string_col("Roles", "Roles from node-role labels."),
    AGE,
    string_col("Version", "The kubelet version the node reports."),
    wide_col("Internal-IP", "The node's first internal IP address."),
    wide_col("External-IP", "The node's first external IP address."),
    wide_col("OS-Image", "The operating system image the node reports."),
    wide_col("Kernel-Version", "The kernel version the node reports."),
    wide_col("Container-Runtime", "The node's container runtime."),
];

fn node_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let status = at(object, &["status"]);
    let ready = list(status, &["conditions"])
        .iter()
        .rev()
        .find(|c| text(c, &["type"]) == "Ready");
    let mut state = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(object, &["spec", "unschedulable"]) {
        state.push("SchedulingDisabled");
    }
    let mut roles: Vec<&str> = at(object, &["metadata", "labels"])
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(
            |(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
                Some(role) if !role.is_empty() => Some(role),
                Some(_) => None,
                None if key == "kubernetes.io/role" => value.as_str().filter(|v| !v.is_empty()),
                None => None,
            },
        )
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let address = |kind: &str| {
        list(status, &["addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == kind)
            .map_or_else(|| "<none>".to_owned(), |a| text(a, &["address"]).to_owned())
    };
    let info = |field: &str| match text(status, &["nodeInfo", field]) {
        "" => "<unknown>".to_owned(),
        value => value.to_owned(),
    };
    vec![
        name(object),
        json!(state.join(",")),
        json!(or_none(&roles.join(","))),
        created(object, now),
        json!(text(status, &["nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

const NAMESPACE_COLUMNS: &[Column] = &[NAME, string_col("Status", "Active or Terminating."), AGE];

fn namespace_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(text(object, &["status", "phase"])),
        created(object, now),
    ]
}

/// The number of keys in a map field.
fn count(object: &Value, field: &str) -> usize {
    object
        .get(field)
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    string_col("Data", "The number of keys it holds."),
    AGE,
];

fn config_map_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let keys = count(object, "data") + count(object, "binaryData");
    vec![name(object), json!(keys), created(object, now)]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    string_col("Type", "The type of the secret."),
    string_col("Data", "The number of keys it holds."),
    AGE,
];

fn secret_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(text(object, &["type"])),
        json!(count(object, "data")),
        created(object, now),
    ]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    string_col("Secrets", "The number of secrets it lists."),
    AGE,
];

fn service_account_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(list(object, &["secrets"]).len()),
        created(object, now),
    ]
}

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    string_col("Request", "Used and hard request quotas."),
    string_col("Limit", "Used and hard limit quotas."),
    AGE,
];

fn resource_quota_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let mut hard: Vec<(&String, &Value)> = at(object, &["status", "hard"])
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard) in hard {
        let used = scalar(at(object, &["status", "used", resource])).unwrap_or_else(|| "0".into());
        let entry = format!(
            "{resource}: {used}/{}",
            scalar(hard).unwrap_or_else(|| "0".into())
        );
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![
        name(object),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        created(object, now),
    ]
}

const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    string_col("Status", "Healthy or Unhealthy."),
    string_col("Message", "What the health check said."),
    string_col("Error", "The health check's error."),
];

fn component_status_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = list(object, &["conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if text(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            text(c, &["message"]),
            text(c, &["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![name(object), json!(status), json!(message), json!(error)]
}

// Events. events.k8s.io/v1 events print like core events, read through their other names.

const EVENT_COLUMNS: &[Column] = &[
    string_col("Last Seen", "When the event was last seen."),
    string_col("Type", "Normal or Warning."),
    string_col("Reason", "Why the event happened, in one word."),
    string_col("Object", "The object the event is about."),
    wide_col("Subobject", "The part of the object the event is about."),
    wide_col("Source", "The component that reported the event."),
    string_col("Message", "What happened."),
    wide_col("First Seen", "When the event was first seen."),
    wide_col("Count", "How often the event happened."),
    Column {
        name: "Name",
        kind: "string",
        format: "name",
        priority: 1,
        description: "The name of the event object.",
    },
];

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let time = |field: &str| parse_time(at(event, &[field]));
    let since = |t: Option<Timestamp>| {
        t.map_or_else(
            || "<unknown>".to_owned(),
            |t| human_duration(now.duration_since(t)),
        )
    };
    let first_seen = since(time("firstTimestamp").or_else(|| time("eventTime")));
    let mut last_seen = match time("lastTimestamp") {
        Some(t) => since(Some(t)),
        None => first_seen.clone(),
    };
    let series = at(event, &["series"]);
    let count = if series.is_object() {
        last_seen = since(parse_time(at(series, &["lastObservedTime"])));
        int(series, &["count"])
    } else {
        // Events of the newer API written once have no count.
        match int(event, &["count"]) {
            0 => 1,
            n => n,
        }
    };
    let involved = at(event, &["involvedObject"]);
    let kind = text(involved, &["kind"]).to_lowercase();
    let object = match text(involved, &["name"]) {
        "" => kind,
        involved_name => format!("{kind}/{involved_name}"),
    };
    let component = match text(event, &["source", "component"]) {
        "" => text(event, &["reportingComponent"]),
        c => c,
    };
    let instance = match text(event, &["source", "host"]) {
        "" => text(event, &["reportingInstance"]),
        h => h,
    };
    let source = if instance.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(text(event, &["type"])),
        json!(text(event, &["reason"])),
        json!(object),
        json!(text(involved, &["fieldPath"])),
        json!(source),
        json!(text(event, &["message"]).trim()),
        json!(first_seen),
        json!(count),
        name(event),
    ]
}

fn events_k8s_io_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    // The field names of core/v1 events for the same facts.
    let renames = [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("type", "type"),
        ("reason", "reason"),
        ("metadata", "metadata"),
    ];
    let mut core = Map::new();
    for (from, to) in renames {
        if let Some(value) = event.get(from) {
            core.insert(to.into(), value.clone());
        }
    }
    event_cells(&Value::Object(core), now)
}

// Storage.

/// Access modes in kube-apiserver's order and abbreviations.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class: the beta annotation wins over `spec.storageClassName`.
fn storage_class(object: &Value) -> &str {
    at(
        object,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .as_str()
    .unwrap_or_else(|| text(object, &["spec", "storageClassName"]))
}

fn unset_if_empty(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.into()
    }
}

const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    string_col("Capacity", "The size of the volume."),
    string_col("Access Modes", "How the volume can be mounted."),
    string_col("Reclaim Policy", "What a released volume becomes."),
    string_col("Status", "The phase of the volume."),
    string_col("Claim", "The claim bound to the volume."),
    string_col("StorageClass", "The storage class."),
    string_col("VolumeAttributesClass", "The volume attributes class."),
    string_col("Reason", "Why the volume is in its phase."),
    AGE,
    wide_col("VolumeMode", "Filesystem or Block."),
];

fn persistent_volume_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(object, &["spec"]);
    let claim = at(spec, &["claimRef"]);
    let claim = if claim.is_object() {
        format!("{}/{}", text(claim, &["namespace"]), text(claim, &["name"]))
    } else {
        String::new()
    };
    let phase = if at(object, &["metadata", "deletionTimestamp"]).is_null() {
        text(object, &["status", "phase"])
    } else {
        "Terminating"
    };
    vec![
        name(object),
        json!(scalar(at(spec, &["capacity", "storage"])).unwrap_or_else(|| "0".into())),
        json!(access_modes(list(spec, &["accessModes"]))),
        json!(text(spec, &["persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(object)),
        json!(unset_if_empty(text(spec, &["volumeAttributesClassName"]))),
        json!(text(object, &["status", "reason"])),
        created(object, now),
        json!(unset_if_empty(text(spec, &["volumeMode"]))),
    ]
}

const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    string_col("Status", "The phase of the claim."),
    string_col("Volume", "The volume bound to the claim."),
    string_col("Capacity", "The size of the bound volume."),
    string_col("Access Modes", "How the bound volume can be mounted."),
    string_col("StorageClass", "The storage class."),
    string_col("VolumeAttributesClass", "The volume attributes class."),
    AGE,
    wide_col("VolumeMode", "Filesystem or Block."),
];

fn persistent_volume_claim_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(object, &["spec"]);
    let status = at(object, &["status"]);
    let phase = if at(object, &["metadata", "deletionTimestamp"]).is_null() {
        text(status, &["phase"])
    } else {
        "Terminating"
    };
    let volume = text(spec, &["volumeName"]);
    // Capacity and access modes are the bound volume's, shown once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            scalar(at(status, &["capacity", "storage"])).unwrap_or_else(|| "0".into()),
            access_modes(list(status, &["accessModes"])),
        )
    };
    vec![
        name(object),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(object)),
        json!(unset_if_empty(text(spec, &["volumeAttributesClassName"]))),
        created(object, now),
        json!(unset_if_empty(text(spec, &["volumeMode"]))),
    ]
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    string_col("Provisioner", "The provisioner of its volumes."),
    string_col("ReclaimPolicy", "The reclaim policy of its volumes."),
    string_col("VolumeBindingMode", "When its volumes are bound."),
    string_col("AllowVolumeExpansion", "Whether its volumes can grow."),
    AGE,
];

fn storage_class_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let annotations = at(object, &["metadata", "annotations"]);
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| text(annotations, &[a]) == "true");
    let class_name = text(object, &["metadata", "name"]);
    let class_name = if is_default {
        format!("{class_name} (default)")
    } else {
        class_name.into()
    };
    let or = |field: &str, default: &'static str| match text(object, &[field]) {
        "" => default.to_owned(),
        v => v.to_owned(),
    };
    vec![
        json!(class_name),
        json!(text(object, &["provisioner"])),
        json!(or("reclaimPolicy", "Delete")),
        json!(or("volumeBindingMode", "Immediate")),
        json!(flag(object, &["allowVolumeExpansion"])),
        created(object, now),
    ]
}

const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Attacher",
        kind: "string",
        format: "name",
        priority: 0,
        description: "The volume driver that attaches the volume.",
    },
    string_col("PV", "The persistent volume being attached."),
    string_col("Node", "The node the volume is attached to."),
    boolean_col("Attached", "Whether the volume is attached."),
    AGE,
];

fn volume_attachment_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(text(object, &["spec", "attacher"])),
        json!(text(object, &["spec", "source", "persistentVolumeName"])),
        json!(text(object, &["spec", "nodeName"])),
        json!(flag(object, &["status", "attached"])),
        created(object, now),
    ]
}

const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    integer_col("Drivers", "CSI drivers on the node."),
    AGE,
];

fn csi_node_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(list(object, &["spec", "drivers"]).len()),
        created(object, now),
    ]
}

const CSI_DRIVER_COLUMNS: &[Column] = &[
    NAME,
    boolean_col("AttachRequired", "Whether volumes need an attach step."),
    boolean_col("PodInfoOnMount", "Whether mounts receive pod information."),
    boolean_col("StorageCapacity", "Whether it reports capacity."),
    string_col("TokenRequests", "Audiences of tokens it receives."),
    boolean_col("RequiresRepublish", "Whether mounts are republished."),
    string_col("Modes", "The volume lifecycle modes it supports."),
    AGE,
];

fn csi_driver_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(object, &["spec"]);
    let token_requests = match at(spec, &["tokenRequests"]).as_array() {
        Some(requests) => requests
            .iter()
            .map(|r| text(r, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
        None => "<unset>".into(),
    };
    let modes: Vec<&str> = list(spec, &["volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        name(object),
        json!(at(spec, &["attachRequired"]).as_bool().unwrap_or(true)),
        json!(flag(spec, &["podInfoOnMount"])),
        json!(flag(spec, &["storageCapacity"])),
        json!(token_requests),
        json!(flag(spec, &["requiresRepublish"])),
        json!(or_none(&modes.join(","))),
        created(object, now),
    ]
}

// RBAC and coordination.

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    string_col("Role", "The role it grants."),
    AGE,
    wide_col("Users", "Users it binds."),
    wide_col("Groups", "Groups it binds."),
    wide_col("ServiceAccounts", "Service accounts it binds."),
];

fn role_binding_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(object, &["subjects"]) {
        let subject_name = text(subject, &["name"]);
        match text(subject, &["kind"]) {
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", text(subject, &["namespace"])))
            }
            _ => {}
        }
    }
    let role = format!(
        "{}/{}",
        text(object, &["roleRef", "kind"]),
        text(object, &["roleRef", "name"])
    );
    vec![
        name(object),
        json!(role),
        created(object, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(service_accounts.join(", ")),
    ]
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    string_col("Holder", "The identity of the lease's holder."),
    AGE,
];

fn lease_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(object),
        json!(text(object, &["spec", "holderIdentity"])),
        created(object, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{find, resources};

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("timestamp")
    }

    /// An RFC 3339 time `seconds` before [`now`].
    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds)).to_string()
    }

    fn one_row(group: &str, plural: &str, object: Value) -> (Vec<String>, Vec<Value>) {
        let resource = resources()
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .expect("resource");
        let t = table(resource, &[object], now(), IncludeObject::Metadata);
        let columns = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_owned())
            .collect();
        let cells = t["rows"][0]["cells"].as_array().expect("cells").clone();
        (columns, cells)
    }

    /// The cell under column `column`.
    fn cell(row: &(Vec<String>, Vec<Value>), column: &str) -> Value {
        let i = row
            .0
            .iter()
            .position(|c| c == column)
            .unwrap_or_else(|| panic!("no {column}"));
        row.1[i].clone()
    }

    fn pod(status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(200)},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        })
    }

    #[test]
    fn human_duration_matches_upstream() {
        let cases = [
            (-3, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (200, "3m20s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 30 * 60, "3h30m"),
            (8 * 3600 - 60, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (49 * 3600, "2d1h"),
            (191 * 3600, "7d23h"),
            (192 * 3600, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (2920 * 86400, "8y"),
            (3000 * 86400, "8y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(seconds)),
                want,
                "{seconds}s"
            );
        }
        // Going by whole seconds, 1.5 s in the future is still "now".
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    }

    #[test]
    fn age_is_unknown_without_a_timestamp() {
        assert_eq!(age(&Value::Null, now()), "<unknown>");
        assert_eq!(age(&json!("not a time"), now()), "<unknown>");
        assert_eq!(age(&json!(ago(90)), now()), "90s");
    }

    #[test]
    fn every_printer_has_one_cell_per_column() {
        // A printer that drifts from its column list breaks kubectl's output silently.
        let samples = [
            json!({}),
            json!({"metadata": {"name": "x", "creationTimestamp": ago(5)}, "spec": {}, "status": {}}),
        ];
        for resource in resources() {
            for sample in &samples {
                let t = table(
                    resource,
                    std::slice::from_ref(sample),
                    now(),
                    IncludeObject::None,
                );
                let columns = t["columnDefinitions"].as_array().expect("columns").len();
                let cells = t["rows"][0]["cells"].as_array().expect("cells").len();
                assert_eq!(columns, cells, "{}/{}", resource.group, resource.plural);
            }
        }
    }

    #[test]
    fn table_shape_and_included_objects() {
        let pods = find("", "v1", "pods").expect("pods");
        let p = pod(json!({"phase": "Running"}));
        let t = table(
            pods,
            std::slice::from_ref(&p),
            now(),
            IncludeObject::Metadata,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        let name_column = &t["columnDefinitions"][0];
        assert_eq!(name_column["name"], "Name");
        assert_eq!(name_column["format"], "name");
        assert_eq!(name_column["priority"], 0);
        let object = &t["rows"][0]["object"];
        assert_eq!(object["kind"], "PartialObjectMetadata");
        assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(object["metadata"]["namespace"], "default");
        assert!(object.get("spec").is_none());

        let t = table(pods, std::slice::from_ref(&p), now(), IncludeObject::Object);
        assert_eq!(t["rows"][0]["object"], p);
        let t = table(pods, std::slice::from_ref(&p), now(), IncludeObject::None);
        assert!(t["rows"][0].get("object").is_none());
        let t = table(pods, &[], now(), IncludeObject::Metadata);
        assert_eq!(t["rows"], json!([]));

        assert_eq!(
            IncludeObject::from_query(None),
            Some(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::from_query(Some("Object")),
            Some(IncludeObject::Object)
        );
        assert_eq!(
            IncludeObject::from_query(Some("None")),
            Some(IncludeObject::None)
        );
        assert_eq!(IncludeObject::from_query(Some("Everything")), None);
    }

    #[test]
    fn list_metadata_is_copied() {
        let pods = find("", "v1", "pods").expect("pods");
        let mut t = table(pods, &[], now(), IncludeObject::Metadata);
        set_list_meta(&mut t, "42", Some("token"), Some(7));
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "42", "continue": "token", "remainingItemCount": 7})
        );
        set_list_meta(&mut t, "43", Some(""), None);
        assert_eq!(t["metadata"], json!({"resourceVersion": "43"}));
    }

    #[test]
    fn pod_columns_are_kubectls() {
        let row = one_row("", "pods", pod(json!({"phase": "Pending"})));
        assert_eq!(
            row.0,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let pods = find("", "v1", "pods").expect("pods");
        let t = table(pods, &[], now(), IncludeObject::None);
        let priorities: Vec<i64> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["priority"].as_i64().expect("priority"))
            .collect();
        assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(cell(&row, "Status"), "Pending");
        assert_eq!(cell(&row, "Ready"), "0/1");
        assert_eq!(cell(&row, "Restarts"), "0");
        assert_eq!(cell(&row, "Age"), "3m20s");
        assert_eq!(cell(&row, "IP"), "<none>");
        assert_eq!(cell(&row, "Node"), "<none>");
        assert_eq!(cell(&row, "Readiness Gates"), "<none>");
    }

    #[test]
    fn crash_looping_pod_shows_crash_loop_back_off_and_last_restart() {
        let row = one_row(
            "",
            "pods",
            pod(json!({
                "phase": "Running",
                "podIPs": [{"ip": "10.0.0.7"}],
                "containerStatuses": [{
                    "name": "app",
                    "ready": false,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(70)}},
                }],
            })),
        );
        assert_eq!(cell(&row, "Status"), "CrashLoopBackOff");
        assert_eq!(cell(&row, "Ready"), "0/1");
        assert_eq!(cell(&row, "Restarts"), "5 (70s ago)");
        assert_eq!(cell(&row, "IP"), "10.0.0.7");
    }

    #[test]
    fn running_pod_counts_ready_containers() {
        let mut p = pod(json!({
            "phase": "Running",
            "podIP": "10.0.0.8",
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "side", "ready": false, "restartCount": 0, "state": {"running": {}}},
            ],
        }));
        p["spec"]["containers"] = json!([{"name": "app"}, {"name": "side"}]);
        p["spec"]["nodeName"] = json!("node-1");
        let row = one_row("", "pods", p);
        assert_eq!(cell(&row, "Ready"), "1/2");
        assert_eq!(cell(&row, "Status"), "Running");
        assert_eq!(cell(&row, "IP"), "10.0.0.8", "status.podIP is the fallback");
        assert_eq!(cell(&row, "Node"), "node-1");
    }

    #[test]
    fn deleting_pod_is_terminating_and_finished_pods_completed() {
        let mut p = pod(json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cell(&one_row("", "pods", p), "Status"), "Terminating");

        let done = pod(json!({
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
        }));
        let pods = find("", "v1", "pods").expect("pods");
        let t = table(
            pods,
            std::slice::from_ref(&done),
            now(),
            IncludeObject::None,
        );
        assert_eq!(t["rows"][0]["cells"][2], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");

        let mut deleted_done = done;
        deleted_done["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(
            cell(&one_row("", "pods", deleted_done), "Status"),
            "Completed"
        );

        let killed = pod(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}],
        }));
        assert_eq!(cell(&one_row("", "pods", killed), "Status"), "Signal:9");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let with_init = |init_status: Value| {
            let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [init_status]}));
            p["spec"]["initContainers"] = json!([{"name": "setup"}, {"name": "migrate"}]);
            p
        };
        let waiting = with_init(
            json!({"name": "setup", "state": {"waiting": {"reason": "PodInitializing"}}}),
        );
        assert_eq!(cell(&one_row("", "pods", waiting), "Status"), "Init:0/2");
        let crashing = with_init(json!({
            "name": "setup", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        }));
        let row = one_row("", "pods", crashing);
        assert_eq!(cell(&row, "Status"), "Init:CrashLoopBackOff");
        assert_eq!(cell(&row, "Restarts"), "3");
        let failed = with_init(json!({"name": "setup", "state": {"terminated": {"exitCode": 2}}}));
        assert_eq!(
            cell(&one_row("", "pods", failed), "Status"),
            "Init:ExitCode:2"
        );
    }

    #[test]
    fn sidecars_count_as_containers() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
            }],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        let row = one_row("", "pods", p);
        assert_eq!(cell(&row, "Ready"), "2/2");
        assert_eq!(cell(&row, "Status"), "Running");
        assert_eq!(cell(&row, "Restarts"), "1 (30s ago)");
    }

    #[test]
    fn readiness_gates_count_true_conditions() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "example.com/lb", "status": "True"}],
        }));
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        assert_eq!(cell(&one_row("", "pods", p), "Readiness Gates"), "1/2");
    }

    #[test]
    fn deployment_row() {
        let row = one_row(
            "apps",
            "deployments",
            json!({
                "metadata": {"name": "web", "creationTimestamp": ago(3 * 86400)},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"spec": {"containers": [
                        {"name": "nginx", "image": "nginx:1.25"},
                        {"name": "log", "image": "busybox"},
                    ]}},
                },
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
            }),
        );
        assert_eq!(
            row.0,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            row.1,
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3d"),
                json!("nginx,log"),
                json!("nginx:1.25,busybox"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn replica_set_stateful_set_and_daemon_set_rows() {
        let rs = one_row(
            "apps",
            "replicasets",
            json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 1}}),
        );
        assert_eq!(&rs.0[..5], ["Name", "Desired", "Current", "Ready", "Age"]);
        assert_eq!(&rs.1[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(cell(&rs, "Selector"), "<none>");

        let sts = one_row(
            "apps",
            "statefulsets",
            json!({"metadata": {"name": "db"}, "spec": {}, "status": {"readyReplicas": 1}}),
        );
        assert_eq!(sts.0, ["Name", "Ready", "Age", "Containers", "Images"]);
        assert_eq!(cell(&sts, "Ready"), "1/1", "replicas default to 1");

        let ds = one_row(
            "apps",
            "daemonsets",
            json!({
                "metadata": {"name": "agent"},
                "spec": {"template": {"spec": {"nodeSelector": {"role": "edge", "os": "linux"}}}},
                "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2},
            }),
        );
        assert_eq!(
            &ds.0[..8],
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age"
            ]
        );
        assert_eq!(cell(&ds, "Node Selector"), "os=linux,role=edge");
        assert_eq!(cell(&ds, "Ready"), 2);
    }

    #[test]
    fn service_rows() {
        let svc = |spec: Value, status: Value| {
            one_row(
                "",
                "services",
                json!({"metadata": {"name": "web"}, "spec": spec, "status": status}),
            )
        };
        let row = svc(
            json!({
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}],
            }),
            json!({}),
        );
        assert_eq!(
            row.0,
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(cell(&row, "Type"), "NodePort");
        assert_eq!(cell(&row, "Cluster-IP"), "10.96.0.10");
        assert_eq!(cell(&row, "External-IP"), "<none>");
        assert_eq!(cell(&row, "Port(s)"), "80/TCP,443:30443/TCP");
        assert_eq!(cell(&row, "Selector"), "app=web");

        let pending = svc(
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.11"}),
            json!({}),
        );
        assert_eq!(cell(&pending, "External-IP"), "<pending>");
        assert_eq!(cell(&pending, "Port(s)"), "<none>");
        let balanced = svc(
            json!({"type": "LoadBalancer", "externalIPs": ["192.0.2.9"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "lb.example"}]}}),
        );
        assert_eq!(
            cell(&balanced, "External-IP"),
            "203.0.113.5,lb.example,192.0.2.9"
        );
        assert_eq!(cell(&balanced, "Cluster-IP"), "<none>");
        let headless = svc(
            json!({"clusterIP": "None", "ports": [{"port": 53, "protocol": "UDP"}]}),
            json!({}),
        );
        assert_eq!(cell(&headless, "Type"), "ClusterIP");
        assert_eq!(cell(&headless, "Cluster-IP"), "None");
        assert_eq!(cell(&headless, "Port(s)"), "53/UDP");
        assert_eq!(cell(&headless, "Selector"), "<none>");
        let external = svc(
            json!({"type": "ExternalName", "externalName": "db.example"}),
            json!({}),
        );
        assert_eq!(cell(&external, "External-IP"), "db.example");
    }

    #[test]
    fn endpoints_and_endpoint_slices() {
        let ep = one_row(
            "",
            "endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [{
                "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}, {"ip": "10.0.0.4"}],
                "ports": [{"port": 8080}],
            }]}),
        );
        assert_eq!(
            cell(&ep, "Endpoints"),
            "10.0.0.1:8080,10.0.0.2:8080,[fd00::3]:8080 + 1 more..."
        );
        let none = one_row("", "endpoints", json!({"metadata": {"name": "web"}}));
        assert_eq!(cell(&none, "Endpoints"), "<none>");

        let slice = one_row(
            "discovery.k8s.io",
            "endpointslices",
            json!({
                "metadata": {"name": "web-abc"},
                "addressType": "IPv4",
                "ports": [{"port": 80, "name": "http"}, {"name": "metrics"}],
                "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}],
            }),
        );
        assert_eq!(
            slice.0,
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        assert_eq!(cell(&slice, "Ports"), "80,metrics");
        assert_eq!(cell(&slice, "Endpoints"), "10.0.0.1,10.0.0.2");
        let empty = one_row(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "e"}}),
        );
        assert_eq!(cell(&empty, "Endpoints"), "<unset>");
    }

    #[test]
    fn namespace_node_configmap_secret_serviceaccount_rows() {
        let ns = one_row(
            "",
            "namespaces",
            json!({"metadata": {"name": "dev"}, "status": {"phase": "Active"}}),
        );
        assert_eq!(ns.0, ["Name", "Status", "Age"]);
        assert_eq!(cell(&ns, "Status"), "Active");

        let node = one_row(
            "",
            "nodes",
            json!({
                "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
                "spec": {"unschedulable": true},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {"kubeletVersion": "v1.33.0-strait"},
                    "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                },
            }),
        );
        assert_eq!(&node.0[..5], ["Name", "Status", "Roles", "Age", "Version"]);
        assert_eq!(cell(&node, "Status"), "Ready,SchedulingDisabled");
        assert_eq!(cell(&node, "Roles"), "control-plane,edge");
        assert_eq!(cell(&node, "Version"), "v1.33.0-strait");
        assert_eq!(cell(&node, "Internal-IP"), "192.168.1.10");
        assert_eq!(cell(&node, "External-IP"), "<none>");
        assert_eq!(cell(&node, "OS-Image"), "<unknown>");
        let unready = one_row(
            "",
            "nodes",
            json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(cell(&unready, "Status"), "NotReady");
        assert_eq!(cell(&unready, "Roles"), "<none>");

        let cm = one_row(
            "",
            "configmaps",
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}),
        );
        assert_eq!(cm.0, ["Name", "Data", "Age"]);
        assert_eq!(cell(&cm, "Data"), 3);
        let secret = one_row(
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}}),
        );
        assert_eq!(secret.0, ["Name", "Type", "Data", "Age"]);
        assert_eq!(cell(&secret, "Type"), "Opaque");
        assert_eq!(cell(&secret, "Data"), 1);
        let sa = one_row(
            "",
            "serviceaccounts",
            json!({"metadata": {"name": "default"}}),
        );
        assert_eq!(sa.0, ["Name", "Secrets", "Age"]);
        assert_eq!(cell(&sa, "Secrets"), 0);
    }

    #[test]
    fn job_and_cron_job_rows() {
        let job = one_row(
            "batch",
            "jobs",
            json!({
                "metadata": {"name": "pi"},
                "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
                "status": {
                    "succeeded": 1,
                    "startTime": ago(300),
                    "completionTime": ago(100),
                    "conditions": [{"type": "Complete", "status": "True"}],
                },
            }),
        );
        assert_eq!(
            &job.0[..5],
            ["Name", "Status", "Completions", "Duration", "Age"]
        );
        assert_eq!(cell(&job, "Status"), "Complete");
        assert_eq!(cell(&job, "Completions"), "1/1");
        assert_eq!(cell(&job, "Duration"), "3m20s");
        assert_eq!(
            cell(&job, "Selector"),
            "batch.kubernetes.io/controller-uid=u1"
        );
        let running = one_row(
            "batch",
            "jobs",
            json!({"metadata": {"name": "p"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(10)}}),
        );
        assert_eq!(cell(&running, "Status"), "Running");
        assert_eq!(cell(&running, "Completions"), "0/1 of 3");
        assert_eq!(cell(&running, "Duration"), "10s");

        let cron = one_row(
            "batch",
            "cronjobs",
            json!({
                "metadata": {"name": "hello"},
                "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {}}},
                "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(65)},
            }),
        );
        assert_eq!(
            &cron.0[..7],
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age"
            ]
        );
        assert_eq!(
            &cron.1[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("65s")
            ]
        );
    }

    #[test]
    fn event_rows_for_both_apis() {
        let core = one_row(
            "",
            "events",
            json!({
                "metadata": {"name": "web.1"},
                "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
                "reason": "BackOff",
                "message": "Back-off restarting failed container\n",
                "type": "Warning",
                "count": 4,
                "firstTimestamp": ago(600),
                "lastTimestamp": ago(30),
                "source": {"component": "kubelet", "host": "node-1"},
            }),
        );
        assert_eq!(
            core.0,
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            core.1,
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(4),
                json!("web.1"),
            ]
        );

        let newer = one_row(
            "events.k8s.io",
            "events",
            json!({
                "metadata": {"name": "web.2"},
                "regarding": {"kind": "Deployment", "name": "web"},
                "note": "Scaled up replica set web-1 to 2",
                "reason": "ScalingReplicaSet",
                "type": "Normal",
                "eventTime": ago(45),
                "reportingController": "deployment-controller",
            }),
        );
        assert_eq!(cell(&newer, "Last Seen"), "45s");
        assert_eq!(cell(&newer, "Object"), "deployment/web");
        assert_eq!(cell(&newer, "Message"), "Scaled up replica set web-1 to 2");
        assert_eq!(cell(&newer, "Source"), "deployment-controller");
        assert_eq!(cell(&newer, "Count"), 1);
    }

    #[test]
    fn network_policy_selector_formatting() {
        let row = one_row(
            "networking.k8s.io",
            "networkpolicies",
            json!({
                "metadata": {"name": "deny"},
                "spec": {"podSelector": {
                    "matchLabels": {"tier": "db"},
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                        {"key": "zone", "operator": "DoesNotExist"},
                        {"key": "app", "operator": "Exists"},
                    ],
                }},
            }),
        );
        assert_eq!(row.0, ["Name", "Pod-Selector", "Age"]);
        assert_eq!(
            cell(&row, "Pod-Selector"),
            "app,env in (dev,prod),tier=db,!zone"
        );
        let all = one_row(
            "networking.k8s.io",
            "networkpolicies",
            json!({"metadata": {"name": "a"}, "spec": {"podSelector": {}}}),
        );
        assert_eq!(cell(&all, "Pod-Selector"), "<none>");
    }

    #[test]
    fn ingress_and_volume_rows() {
        let ing = one_row(
            "networking.k8s.io",
            "ingresses",
            json!({
                "metadata": {"name": "web"},
                "spec": {"ingressClassName": "nginx", "tls": [{}], "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}},
            }),
        );
        assert_eq!(ing.0, ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
        assert_eq!(
            &ing.1[1..5],
            [
                json!("nginx"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("203.0.113.1"),
                json!("80, 443")
            ]
        );

        let pvc = one_row(
            "",
            "persistentvolumeclaims",
            json!({
                "metadata": {"name": "data"},
                "spec": {"volumeName": "pv-1", "storageClassName": "local"},
                "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"]},
            }),
        );
        assert_eq!(
            pvc.0,
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        assert_eq!(
            &pvc.1[1..7],
            [
                json!("Bound"),
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("local"),
                json!("<unset>")
            ]
        );
    }

    #[test]
    fn kinds_without_a_printer_get_name_and_created_at() {
        let created = "2025-05-01T08:30:00Z";
        for (group, plural) in [
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("", "limitranges"),
        ] {
            let row = one_row(
                group,
                plural,
                json!({"metadata": {"name": "view", "creationTimestamp": created}}),
            );
            assert_eq!(row.0, ["Name", "Created At"], "{plural}");
            assert_eq!(row.1, [json!("view"), json!(created)]);
        }
        let roles = find("rbac.authorization.k8s.io", "v1", "roles").expect("roles");
        let t = table(
            roles,
            &[json!({"metadata": {"name": "x"}})],
            now(),
            IncludeObject::None,
        );
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"][1], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn role_binding_hpa_pdb_lease_rows() {
        let rb = one_row(
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({
                "metadata": {"name": "edit"},
                "roleRef": {"kind": "ClusterRole", "name": "edit"},
                "subjects": [
                    {"kind": "User", "name": "alice"},
                    {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
                    {"kind": "Group", "name": "devs"},
                    {"kind": "User", "name": "bob"},
                ],
            }),
        );
        assert_eq!(
            rb.0,
            ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
        );
        assert_eq!(
            &rb.1[3..],
            [json!("alice, bob"), json!("devs"), json!("build/ci")]
        );
        assert_eq!(cell(&rb, "Role"), "ClusterRole/edit");

        let hpa = one_row(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                    "minReplicas": 1,
                    "maxReplicas": 5,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                        {"type": "Pods", "pods": {"target": {"averageValue": "1k"}}},
                    ],
                },
                "status": {"currentReplicas": 2, "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}},
                ]},
            }),
        );
        assert_eq!(
            hpa.0,
            [
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
        assert_eq!(
            &hpa.1[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 40%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("1"),
                json!(5),
                json!(2),
            ]
        );

        let pdb = one_row(
            "policy",
            "poddisruptionbudgets",
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
        );
        assert_eq!(&pdb.1[1..4], [json!("50%"), json!("N/A"), json!(1)]);
        let lease = one_row(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}}),
        );
        assert_eq!(lease.0, ["Name", "Holder", "Age"]);
        assert_eq!(cell(&lease, "Holder"), "n1");
    }
}
