//! Update rules: what may not change between the stored object and its replacement.
//!
//! Comparisons are semantic, as `apiequality.Semantic.DeepEqual` is for typed objects: an
//! absent field equals `null`, `""`, `0`, `false`, `[]` and `{}` (the zero values a Go struct
//! cannot tell apart from absence).

use serde_json::{Map, Value};

use super::container::quantity_of;
use super::field::{Errs, go_quote, index, join, peek};

const IMMUTABLE: &str = "field is immutable";

/// Whether a JSON value is the zero value of its Go field.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Semantic equality of two optional values (absent reads as zero).
pub(crate) fn sem_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), None) | (None, Some(x)) => is_zero(x),
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().all(|(k, v)| sem_eq(Some(v), y.get(k)))
                && y.iter().all(|(k, v)| x.contains_key(k) || is_zero(v))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| sem_eq(Some(p), Some(q)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y || (is_zero(x) && is_zero(y)),
    }
}

/// Reports `path` as immutable when the values at `pointer` differ.
fn immutable(e: &mut Errs, old: &Value, new: &Value, pointer: &[&str], path: &str) {
    let (o, n) = (peek(old, pointer), peek(new, pointer));
    if !sem_eq(o, n) {
        e.invalid(path, n.unwrap_or(&Value::Null), IMMUTABLE);
    }
}

/// Runs the update rules for `(group, kind)`.
pub(crate) fn validate_update(e: &mut Errs, group: &str, kind: &str, old: &Value, new: &Value) {
    metadata_update(e, old, new);
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(e, old, new, &["spec", "selector"], "spec.selector");
        }
        ("apps", "StatefulSet") => stateful_set_update(e, old, new),
        ("apps", "ControllerRevision") => immutable(e, old, new, &["data"], "data"),
        ("batch", "Job") => job_update(e, old, new),
        ("", "Pod") => pod_update(e, old, new),
        ("", "Service") => service_update(e, old, new),
        ("", "ConfigMap") => immutable_data(e, old, new, &["data", "binaryData"]),
        ("", "Secret") => {
            immutable(e, old, new, &["type"], "type");
            immutable_data(e, old, new, &["data"]);
        }
        ("", "PersistentVolumeClaim") => pvc_update(e, old, new),
        ("", "PersistentVolume") => pv_update(e, old, new),
        ("", "Node") => node_update(e, old, new),
        ("discovery.k8s.io", "EndpointSlice") => {
            immutable(e, old, new, &["addressType"], "addressType");
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if !sem_eq(old.get("roleRef"), new.get("roleRef")) =>
        {
            e.invalid(
                "roleRef",
                new.get("roleRef").unwrap_or(&Value::Null),
                "cannot change roleRef",
            );
        }
        ("storage.k8s.io", "StorageClass") => storage_class_update(e, old, new),
        _ => {}
    }
}

/// Name, namespace, uid and timestamps never change; a deleting object takes no new
/// finalizers. Server-owned fields left out of `new` are not reported (the server copies
/// them over from `old`).
fn metadata_update(e: &mut Errs, old: &Value, new: &Value) {
    for f in ["name", "namespace"] {
        immutable(e, old, new, &["metadata", f], &join("metadata", f));
    }
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        if peek(new, &["metadata", f]).is_some_and(|v| !is_zero(v)) {
            immutable(e, old, new, &["metadata", f], &join("metadata", f));
        }
    }
    if peek(old, &["metadata", "deletionTimestamp"]).is_some_and(|v| !is_zero(v)) {
        let list = |v: &Value| -> Vec<String> {
            peek(v, &["metadata", "finalizers"])
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = list(old);
        let mut extra: Vec<String> = list(new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let shown: Vec<String> = extra.iter().map(|f| go_quote(f)).collect();
            e.forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    shown.join(", ")
                ),
            );
        }
    }
}

/// A copy of `obj[field]` as an object map (empty when absent).
fn object_of(obj: &Value, field: &str) -> Map<String, Value> {
    obj.get(field)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Sets or removes `key` in `map` to match `source[key]`.
fn copy_field(map: &mut Map<String, Value>, source: &Value, key: &str) {
    match source.get(key) {
        Some(v) => {
            map.insert(key.to_owned(), v.clone());
        }
        None => {
            map.remove(key);
        }
    }
}

/// The StatefulSet spec fields an update may change (kube-apiserver 1.33's
/// `ValidateStatefulSetUpdate`); any other change is refused as a whole. `revisionHistoryLimit`
/// is not one of them in 1.33 (1.33.0's release notes only add a check that it is not
/// negative); later releases let it change, with a message that names it.
const STATEFUL_SET_MUTABLE: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// kube-apiserver 1.33's refusal of any other StatefulSet spec change.
const STATEFUL_SET_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

fn stateful_set_update(e: &mut Errs, old: &Value, new: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let mut munged = object_of(new, "spec");
    for f in STATEFUL_SET_MUTABLE {
        copy_field(&mut munged, &old_spec, f);
    }
    if !sem_eq(Some(&Value::Object(munged)), Some(&old_spec)) {
        e.forbidden("spec", STATEFUL_SET_FORBIDDEN);
    }
}

fn job_update(e: &mut Errs, old: &Value, new: &Value) {
    immutable(e, old, new, &["spec", "selector"], "spec.selector");
    for f in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(e, old, new, &["spec", f], &join("spec", f));
    }
    // Indexed Jobs may be resized by changing completions and parallelism together.
    let get = |v: &Value, f: &str| peek(v, &["spec", f]).and_then(Value::as_i64);
    let elastic = peek(new, &["spec", "completionMode"]).and_then(Value::as_str) == Some("Indexed")
        && get(new, "completions") == get(new, "parallelism")
        && get(old, "completions") == get(old, "parallelism");
    if !elastic {
        immutable(e, old, new, &["spec", "completions"], "spec.completions");
    }
    // A suspended Job that never started may change where its pods will run.
    let suspended = peek(new, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true);
    let never_started = peek(old, &["status", "startTime"]).is_none_or(Value::is_null);
    let old_template = peek(old, &["spec", "template"])
        .cloned()
        .unwrap_or(Value::Null);
    let new_template = peek(new, &["spec", "template"])
        .cloned()
        .unwrap_or(Value::Null);
    let mut compared = old_template.clone();
    if suspended && never_started {
        if let Some(meta) = compared.get_mut("metadata").and_then(Value::as_object_mut) {
            let new_meta = new_template.get("metadata").cloned().unwrap_or(Value::Null);
            copy_field(meta, &new_meta, "labels");
            copy_field(meta, &new_meta, "annotations");
        } else if let Some(meta) = new_template.get("metadata") {
            compared["metadata"] = meta.clone();
        }
        let new_spec = new_template.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(spec) = compared.get_mut("spec").and_then(Value::as_object_mut) {
            for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                copy_field(spec, &new_spec, f);
            }
            let node_affinity = peek(&new_spec, &["affinity", "nodeAffinity"]).cloned();
            let affinity = spec
                .entry("affinity")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(a) = affinity.as_object_mut() {
                match node_affinity {
                    Some(na) => {
                        a.insert("nodeAffinity".to_owned(), na);
                    }
                    None => {
                        a.remove("nodeAffinity");
                    }
                }
            }
        }
    }
    if !sem_eq(Some(&compared), Some(&new_template)) {
        e.invalid("spec.template", &new_template, IMMUTABLE);
    }
}

fn string_list(v: &Value, pointer: &[&str]) -> Vec<String> {
    peek(v, pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn service_update(e: &mut Errs, old: &Value, new: &Value) {
    let kind = |v: &Value| {
        peek(v, &["spec", "type"])
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (old_kind, new_kind) = (kind(old), kind(new));
    if old_kind == "ExternalName" || new_kind == "ExternalName" {
        return;
    }
    let headless = |ips: &[String]| ips.len() == 1 && ips[0] == "None";
    let mut old_ips = string_list(old, &["spec", "clusterIPs"]);
    let mut new_ips = string_list(new, &["spec", "clusterIPs"]);
    // Before the server syncs clusterIPs, clusterIP alone stands for the primary.
    for (ips, obj) in [(&mut old_ips, old), (&mut new_ips, new)] {
        if ips.is_empty()
            && let Some(ip) = peek(obj, &["spec", "clusterIP"]).and_then(Value::as_str)
            && !ip.is_empty()
        {
            ips.push(ip.to_owned());
        }
    }
    let new_value = peek(new, &["spec", "clusterIPs"]).unwrap_or(&Value::Null);
    // An update that leaves the allocation out is filled in by the server, not a change.
    let both_headless = headless(&old_ips) && headless(&new_ips);
    if !new_ips.is_empty() && !both_headless {
        let path0 = index("spec.clusterIPs", 0);
        if old_ips.len() == new_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    e.invalid(
                        &index("spec.clusterIPs", i),
                        new_value,
                        "may not change once set",
                    );
                }
            }
        } else if !old_ips.is_empty() && old_ips[0] != new_ips[0] {
            e.invalid(&path0, new_value, "may not change once set");
        }
        if old_ips.len() > new_ips.len() && new_ips.len() == 1 {
            let policy = peek(new, &["spec", "ipFamilyPolicy"]);
            if policy.and_then(Value::as_str) != Some("SingleStack") {
                e.invalid(
                    "spec.ipFamilyPolicy",
                    policy.unwrap_or(&Value::Null),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                );
            }
        }
    }
    let old_families = string_list(old, &["spec", "ipFamilies"]);
    let new_families = string_list(new, &["spec", "ipFamilies"]);
    if !new_families.is_empty()
        && !old_families.is_empty()
        && !headless(&old_ips)
        && !headless(&new_ips)
        && old_families[0] != new_families[0]
    {
        e.invalid(
            "spec.ipFamilies[0]",
            peek(new, &["spec", "ipFamilies"]).unwrap_or(&Value::Null),
            "may not change once set",
        );
    }
    let needs_hc = |v: &Value| {
        peek(v, &["spec", "type"]).and_then(Value::as_str) == Some("LoadBalancer")
            && peek(v, &["spec", "externalTrafficPolicy"]).and_then(Value::as_str) == Some("Local")
    };
    let hc = |v: &Value| {
        peek(v, &["spec", "healthCheckNodePort"])
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    if needs_hc(old) && needs_hc(new) && hc(new) != 0 && hc(new) != hc(old) {
        e.forbidden("spec.healthCheckNodePort", IMMUTABLE);
    }
    if old_kind == "LoadBalancer" && new_kind == "LoadBalancer" {
        let class = |v: &Value| peek(v, &["spec", "loadBalancerClass"]).cloned();
        if class(old) != class(new) {
            e.invalid(
                "spec.loadBalancerClass",
                class(new).unwrap_or(Value::Null),
                "may not change once set",
            );
        }
    }
}

/// The fields a running pod's spec may change.
const POD_UPDATE_MESSAGE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod_update(e: &mut Errs, old: &Value, new: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    for list in ["containers", "initContainers"] {
        let len = |s: &Value| s.get(list).and_then(Value::as_array).map_or(0, Vec::len);
        if len(&old_spec) != len(&new_spec) {
            e.forbidden(
                &join("spec", list),
                "pod updates may not add or remove containers",
            );
            return;
        }
    }
    let deadline = |s: &Value| s.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (deadline(&old_spec), deadline(&new_spec)) {
        (_, Some(n)) if !(0..=2_147_483_647).contains(&n) => {
            e.invalid(
                "spec.activeDeadlineSeconds",
                n,
                &super::names::inclusive_range(0, 2_147_483_647),
            );
            return;
        }
        (Some(o), Some(n)) if o < n => {
            e.invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            );
            return;
        }
        (Some(_), None) => e.invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        ),
        _ => {}
    }
    only_added_tolerations(e, &old_spec, &new_spec);
    only_deleted_gates(e, &old_spec, &new_spec);
    if sem_eq(Some(&old_spec), Some(&new_spec)) {
        return;
    }
    let mut munged = new_spec.clone();
    for list in ["containers", "initContainers"] {
        if let (Some(items), Some(old_items)) = (
            munged.get_mut(list).and_then(Value::as_array_mut),
            old_spec.get(list).and_then(Value::as_array),
        ) {
            for (c, oc) in items.iter_mut().zip(old_items) {
                if let Some(c) = c.as_object_mut() {
                    copy_field(c, oc, "image");
                }
            }
        }
    }
    if let Some(m) = munged.as_object_mut() {
        for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            copy_field(m, &old_spec, f);
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            copy_field(m, &old_spec, "terminationGracePeriodSeconds");
        }
        // A pod still held by scheduling gates may gain node selectors and node affinity.
        let gated = old_spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if gated {
            let old_sel = object_of(&old_spec, "nodeSelector");
            let new_sel = object_of(&Value::Object(m.clone()), "nodeSelector");
            if old_sel.iter().any(|(k, v)| new_sel.get(k) != Some(v)) {
                e.invalid(
                    "spec.nodeSelector",
                    Value::Object(new_sel),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                );
            }
            copy_field(m, &old_spec, "nodeSelector");
            let old_affinity = old_spec.get("affinity").cloned();
            let new_affinity = m.get("affinity").cloned();
            let without_node = |a: Option<Value>| {
                let mut a = a.unwrap_or(Value::Null);
                if let Some(o) = a.as_object_mut() {
                    o.remove("nodeAffinity");
                }
                a
            };
            if sem_eq(
                Some(&without_node(old_affinity.clone())),
                Some(&without_node(new_affinity)),
            ) {
                match old_affinity {
                    Some(a) => {
                        m.insert("affinity".to_owned(), a);
                    }
                    None => {
                        m.remove("affinity");
                    }
                }
            }
        }
    }
    if !sem_eq(Some(&munged), Some(&old_spec)) {
        e.forbidden("spec", POD_UPDATE_MESSAGE);
    }
}

fn only_added_tolerations(e: &mut Errs, old_spec: &Value, new_spec: &Value) {
    let list = |s: &Value| {
        s.get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_list = list(new_spec);
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    for old_t in list(old_spec) {
        let found = new_list
            .iter()
            .any(|n| sem_eq(Some(&strip(n)), Some(&strip(&old_t))));
        if !found {
            e.forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            );
            return;
        }
    }
}

fn only_deleted_gates(e: &mut Errs, old_spec: &Value, new_spec: &Value) {
    let gate_names = |s: &Value| -> Vec<String> {
        s.get("schedulingGates")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|g| {
                        g.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_gates = gate_names(old_spec);
    for (i, gate) in gate_names(new_spec).iter().enumerate() {
        if !old_gates.contains(gate) {
            e.forbidden(
                &join(&index("spec.schedulingGates", i), "name"),
                &format!("only deletion is allowed, but found new scheduling gate '{gate}'"),
            );
        }
    }
}

/// ConfigMaps and Secrets created with `immutable: true` keep their data and the flag.
fn immutable_data(e: &mut Errs, old: &Value, new: &Value, fields: &[&str]) {
    if !super::config::is_immutable(old) {
        return;
    }
    let detail = "field is immutable when `immutable` is set";
    if !super::config::is_immutable(new) {
        e.forbidden("immutable", detail);
    }
    for f in fields {
        if !sem_eq(old.get(*f), new.get(*f)) {
            e.forbidden(f, detail);
        }
    }
}

fn pvc_update(e: &mut Errs, old: &Value, new: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let mut old_clone = old_spec.clone();
    let mut new_clone = new.get("spec").cloned().unwrap_or(Value::Null);
    let bound = peek(new, &["status", "phase"]).and_then(Value::as_str) == Some("Bound");
    if let (Some(oc), Some(nc)) = (old_clone.as_object_mut(), new_clone.as_object_mut()) {
        // The volume binder fills volumeName once.
        if old_spec.get("volumeName").is_none_or(is_zero) {
            copy_field(oc, &Value::Object(nc.clone()), "volumeName");
        }
        // A storage class may be filled in where there was none (or the beta annotation
        // named it).
        let annotation = peek(
            old,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-class",
            ],
        )
        .and_then(Value::as_str);
        let new_class = nc.get("storageClassName").and_then(Value::as_str);
        if old_spec.get("storageClassName").is_none_or(Value::is_null)
            && new_class.is_some()
            && annotation.is_none_or(|a| Some(a) == new_class)
        {
            copy_field(nc, &old_spec, "storageClassName");
        }
        if bound {
            if let Some(storage) = peek(&old_spec, &["resources", "requests", "storage"]).cloned()
                && let Some(req) = nc
                    .get_mut("resources")
                    .and_then(|r| r.get_mut("requests"))
                    .and_then(Value::as_object_mut)
            {
                req.insert("storage".to_owned(), storage);
            }
            copy_field(nc, &old_spec, "volumeAttributesClassName");
        }
    }
    if !sem_eq(Some(&new_clone), Some(&old_clone)) {
        e.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    let size = |v: &Value, p: &[&str]| peek(v, p).and_then(quantity_of);
    let old_size = size(old, &["spec", "resources", "requests", "storage"]);
    let new_size = size(new, &["spec", "resources", "requests", "storage"]);
    if let (Some(o), Some(n)) = (old_size, new_size)
        && n < o
    {
        let capacity = size(old, &["status", "capacity", "storage"]);
        if capacity.is_none_or(|c| n <= c) {
            e.forbidden(
                "spec.resources.requests.storage",
                "field can not be less than status.capacity",
            );
        }
    }
    immutable(e, old, new, &["spec", "volumeMode"], "volumeMode");
}

fn pv_update(e: &mut Errs, old: &Value, new: &Value) {
    let changed = super::cluster::PV_SOURCES
        .iter()
        .any(|s| !sem_eq(peek(old, &["spec", s]), peek(new, &["spec", s])));
    if changed {
        e.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        );
    }
    immutable(e, old, new, &["spec", "volumeMode"], "volumeMode");
    if peek(old, &["spec", "nodeAffinity"]).is_some_and(|v| !v.is_null())
        && !sem_eq(
            peek(old, &["spec", "nodeAffinity"]),
            peek(new, &["spec", "nodeAffinity"]),
        )
    {
        e.invalid(
            "nodeAffinity",
            peek(new, &["spec", "nodeAffinity"]).unwrap_or(&Value::Null),
            "field is immutable, except for updating from beta label to GA",
        );
    }
}

fn node_update(e: &mut Errs, old: &Value, new: &Value) {
    let old_cidrs = string_list(old, &["spec", "podCIDRs"]);
    let new_cidrs = string_list(new, &["spec", "podCIDRs"]);
    if !old_cidrs.is_empty() && old_cidrs != new_cidrs {
        e.forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        );
    }
    let provider = |v: &Value| {
        peek(v, &["spec", "providerID"])
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let old_provider = provider(old);
    if !old_provider.is_empty() && old_provider != provider(new) {
        e.forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        );
    }
}

fn storage_class_update(e: &mut Errs, old: &Value, new: &Value) {
    immutable(e, old, new, &["provisioner"], "provisioner");
    if !sem_eq(old.get("parameters"), new.get("parameters")) {
        e.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if !sem_eq(old.get("reclaimPolicy"), new.get("reclaimPolicy")) {
        e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    immutable(e, old, new, &["volumeBindingMode"], "volumeBindingMode");
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_update_causes, defaulted};
    use super::*;
    use crate::validate::CauseType::{Forbidden, Invalid};
    use serde_json::json;

    #[test]
    fn semantic_equality_ignores_zero_values() {
        assert!(sem_eq(
            Some(&json!({"a": 1, "b": []})),
            Some(&json!({"a": 1.0}))
        ));
        assert!(sem_eq(None, Some(&json!({}))));
        assert!(!sem_eq(Some(&json!({"a": 1})), Some(&json!({"a": 2}))));
        assert!(!sem_eq(Some(&json!([1, 2])), Some(&json!([2, 1]))));
    }

    fn stored(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("6a1b2c3d-0000-4000-8000-000000000001");
        obj["metadata"]["creationTimestamp"] = json!("2026-01-02T03:04:05Z");
        obj["metadata"]["resourceVersion"] = json!("42");
        obj
    }

    #[test]
    fn metadata_identity_is_immutable() {
        let old = stored(json!({"metadata": {"name": "a", "namespace": "default"}}));
        let mut new = old.clone();
        new["metadata"]["name"] = json!("b");
        new["metadata"]["uid"] = json!("other");
        let causes = assert_update_causes(
            "",
            "ConfigMap",
            &old,
            &new,
            &[("metadata.name", Invalid), ("metadata.uid", Invalid)],
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: \"b\": field is immutable"
        );
        let mut omitted = old.clone();
        omitted["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("uid");
        assert_update_causes("", "ConfigMap", &old, &omitted, &[]);
    }

    #[test]
    fn deleting_objects_take_no_new_finalizers() {
        let mut old = stored(json!({"metadata": {"name": "a", "finalizers": ["x/y"]}}));
        old["metadata"]["deletionTimestamp"] = json!("2026-01-02T03:04:05Z");
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["x/y", "example.com/z"]);
        let causes = assert_update_causes(
            "",
            "ConfigMap",
            &old,
            &new,
            &[("metadata.finalizers", Forbidden)],
        );
        assert!(
            causes[0]
                .message
                .ends_with("found new finalizers []string{\"example.com/z\"}")
        );
    }

    fn deployment() -> Value {
        stored(defaulted(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ))
    }

    #[test]
    fn workload_selectors_are_immutable() {
        let old = deployment();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        assert_update_causes("apps", "Deployment", &old, &new, &[]);
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("fe");
        assert_update_causes(
            "apps",
            "Deployment",
            &old,
            &new,
            &[("spec.selector", Invalid)],
        );
    }

    #[test]
    fn stateful_set_spec_is_mostly_immutable() {
        let old = stored(
            json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}}}}}),
        );
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        new["spec"]["template"]["metadata"]["annotations"] = json!({"a": "b"});
        new["spec"]["ordinals"] = json!({"start": 2});
        new["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        new["spec"]["persistentVolumeClaimRetentionPolicy"] =
            json!({"whenDeleted": "Delete", "whenScaled": "Retain"});
        new["spec"]["minReadySeconds"] = json!(5);
        assert_update_causes("apps", "StatefulSet", &old, &new, &[]);
        for (field, value) in [
            ("serviceName", json!("db2")),
            ("podManagementPolicy", json!("Parallel")),
            (
                "volumeClaimTemplates",
                json!([{"metadata": {"name": "data"}}]),
            ),
            ("revisionHistoryLimit", json!(3)),
        ] {
            let mut changed = new.clone();
            changed["spec"][field] = value;
            let causes = assert_update_causes(
                "apps",
                "StatefulSet",
                &old,
                &changed,
                &[("spec", Forbidden)],
            );
            assert_eq!(
                causes[0].message,
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                "changing {field}"
            );
        }
    }

    fn job(suspend: bool) -> Value {
        stored(
            json!({"metadata": {"name": "pi"}, "spec": {"suspend": suspend, "completions": 1, "parallelism": 1,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
        )
    }

    #[test]
    fn job_template_is_immutable_unless_suspended() {
        let old = job(false);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        assert_update_causes("batch", "Job", &old, &new, &[("spec.template", Invalid)]);
        let old = job(true);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        assert_update_causes("batch", "Job", &old, &new, &[]);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5");
        assert_update_causes("batch", "Job", &old, &new, &[("spec.template", Invalid)]);
        let mut new = old.clone();
        new["spec"]["completions"] = json!(2);
        assert_update_causes("batch", "Job", &old, &new, &[("spec.completions", Invalid)]);
    }

    fn pod() -> Value {
        stored(defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.26"}],
                "tolerations": [{"key": "a", "operator": "Exists"}]}}),
        ))
    }

    #[test]
    fn pod_spec_changes_are_limited() {
        let old = pod();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        new["spec"]["activeDeadlineSeconds"] = json!(600);
        new["spec"]["tolerations"] =
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]);
        new["metadata"]["labels"] = json!({"new": "label"});
        assert_update_causes("", "Pod", &old, &new, &[]);
        let mut new = old.clone();
        new["spec"]["restartPolicy"] = json!("Never");
        let causes = assert_update_causes("", "Pod", &old, &new, &[("spec", Forbidden)]);
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: pod updates may not change fields other than")
        );
        let mut new = old.clone();
        new["spec"]["tolerations"] = json!([]);
        assert_update_causes("", "Pod", &old, &new, &[("spec.tolerations", Forbidden)]);
        let mut new = old.clone();
        new["spec"]["containers"] = json!([]);
        assert_update_causes("", "Pod", &old, &new, &[("spec.containers", Forbidden)]);
        let mut with_deadline = old.clone();
        with_deadline["spec"]["activeDeadlineSeconds"] = json!(60);
        let mut new = with_deadline.clone();
        new["spec"]["activeDeadlineSeconds"] = json!(120);
        assert_update_causes(
            "",
            "Pod",
            &with_deadline,
            &new,
            &[("spec.activeDeadlineSeconds", Invalid)],
        );
    }

    #[test]
    fn service_cluster_ips_may_not_change() {
        let old = stored(
            json!({"metadata": {"name": "web"}, "spec": {"type": "ClusterIP",
            "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}}),
        );
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
        assert_update_causes(
            "",
            "Service",
            &old,
            &new,
            &[("spec.clusterIPs[0]", Invalid)],
        );
        let mut omitted = old.clone();
        for f in ["clusterIP", "clusterIPs", "ipFamilies"] {
            omitted["spec"].as_object_mut().expect("spec").remove(f);
        }
        assert_update_causes("", "Service", &old, &omitted, &[]);
        let mut external = old.clone();
        external["spec"] = json!({"type": "ExternalName", "externalName": "example.com"});
        assert_update_causes("", "Service", &old, &external, &[]);
    }

    #[test]
    fn a_load_balancer_keeps_its_class() {
        let old = stored(
            json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer",
            "loadBalancerClass": "example.com/lb", "ports": [{"port": 80}]}}),
        );
        let mut new = old.clone();
        new["spec"]["loadBalancerClass"] = json!("example.com/other");
        assert_update_causes(
            "",
            "Service",
            &old,
            &new,
            &[("spec.loadBalancerClass", Invalid)],
        );
        // Becoming a LoadBalancer, a Service may take a class.
        let mut cluster_ip = old.clone();
        cluster_ip["spec"] = json!({"type": "ClusterIP", "ports": [{"port": 80}]});
        assert_update_causes("", "Service", &cluster_ip, &old, &[]);
    }

    #[test]
    fn immutable_config_maps_and_secrets() {
        let old = stored(json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}}));
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_update_causes("", "ConfigMap", &old, &new, &[("data", Forbidden)]);
        let mut new = old.clone();
        new["immutable"] = json!(false);
        assert_update_causes("", "ConfigMap", &old, &new, &[("immutable", Forbidden)]);
        let secret = stored(json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {}}));
        let mut new = secret.clone();
        new["type"] = json!("kubernetes.io/tls");
        assert_update_causes("", "Secret", &secret, &new, &[("type", Invalid)]);
    }

    #[test]
    fn claims_may_only_grow_when_bound() {
        let old = stored(
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}}, "volumeName": "pv-1", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"}}}),
        );
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("10Gi");
        assert_update_causes("", "PersistentVolumeClaim", &old, &new, &[]);
        new["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        assert_update_causes(
            "",
            "PersistentVolumeClaim",
            &old,
            &new,
            &[("spec.resources.requests.storage", Forbidden)],
        );
        let mut new = old.clone();
        new["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_update_causes(
            "",
            "PersistentVolumeClaim",
            &old,
            &new,
            &[("spec", Forbidden)],
        );
    }

    #[test]
    fn node_cidrs_and_role_refs() {
        let old =
            stored(json!({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}}));
        let mut new = old.clone();
        new["spec"]["podCIDRs"] = json!(["10.244.2.0/24"]);
        assert_update_causes("", "Node", &old, &new, &[("spec.podCIDRs", Forbidden)]);
        let unset = stored(json!({"metadata": {"name": "n1"}, "spec": {}}));
        assert_update_causes("", "Node", &unset, &old, &[]);
        let rb = stored(
            json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"}}),
        );
        let mut new = rb.clone();
        new["roleRef"]["name"] = json!("b");
        assert_update_causes(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            &rb,
            &new,
            &[("roleRef", Invalid)],
        );
    }
}
