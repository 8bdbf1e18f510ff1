//! Cluster-level and supporting kinds: Namespace, Node, PersistentVolume(Claim),
//! ResourceQuota, RBAC, PodDisruptionBudget, HorizontalPodAutoscaler and Lease.

use std::collections::HashSet;

use serde_json::Value;

use super::container::checked_quantity;
use super::field::{Errs, IntOrStr, index, join, key, peek};
use super::meta::{self, NameRule};
use super::names;
use super::pod::TAINT_EFFECTS;

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The persistent volume sources, in upstream's order.
pub(crate) const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// Checks a Namespace.
pub(crate) fn validate_namespace(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Label);
    if let Some(spec) = e.obj(obj, "", "spec") {
        for finalizer in e.strs(spec, "spec", "finalizers") {
            meta::validate_finalizer(e, "spec.finalizers", finalizer);
        }
    }
}

/// Checks a Node.
pub(crate) fn validate_node(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    if let Some(spec) = e.obj(obj, "", "spec") {
        validate_taints(e, spec);
        let cidrs = e.strs(spec, "spec", "podCIDRs");
        for (i, c) in cidrs.iter().enumerate() {
            for msg in names::cidr(c) {
                e.invalid(&index("spec.podCIDRs", i), *c, &msg);
            }
        }
        if cidrs.len() > 1 {
            let families: Vec<bool> = cidrs
                .iter()
                .filter_map(|c| names::parse_cidr(c))
                .map(|c| c.addr.is_ipv6())
                .collect();
            let dual = cidrs.len() == 2 && families.len() == 2 && families[0] != families[1];
            if !dual {
                e.invalid(
                    "spec.podCIDRs",
                    peek(spec, &["podCIDRs"]).unwrap_or(&Value::Null),
                    "may specify no more than one CIDR for each IP family",
                );
            }
            let mut seen = HashSet::new();
            for (i, c) in cidrs.iter().enumerate() {
                if !seen.insert(*c) {
                    e.duplicate(&index("spec.podCIDRs", i), *c);
                }
            }
        }
    }
    if let Some(status) = e.obj(obj, "", "status") {
        for list in ["capacity", "allocatable"] {
            if let Some(map) = e.map(status, "status", list) {
                for (name, q) in map {
                    checked_quantity(e, q, &format!("status.{list}.{name}"));
                }
            }
        }
    }
}

/// Taints: qualified keys, label values, known effects, unique by key and effect. Upstream
/// reports them under `metadata.taints`, a path quirk kept for fidelity.
fn validate_taints(e: &mut Errs, spec: &Value) {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let taints = e.objs(spec, "spec", "taints");
    for (i, (tpath, taint)) in taints.into_iter().enumerate() {
        let path = index("metadata.taints", i);
        let k = e.str_or_empty(taint, &tpath, "key");
        for msg in names::qualified_name(k) {
            e.invalid(&join(&path, "key"), k, &msg);
        }
        let v = e.str_or_empty(taint, &tpath, "value");
        let msgs = names::label_value(v);
        if !msgs.is_empty() {
            e.invalid(&join(&path, "value"), v, &msgs.join(";"));
        }
        let effect = e.str_or_empty(taint, &tpath, "effect");
        if effect.is_empty() {
            e.required(&join(&path, "effect"), "");
        } else if !TAINT_EFFECTS.contains(&effect) {
            e.not_supported(&join(&path, "effect"), effect, TAINT_EFFECTS);
        }
        if !seen.insert((k.to_owned(), effect.to_owned())) {
            e.duplicate_with(&path, taint, "taints must be unique by key and effect pair");
        }
    }
}

fn validate_access_modes(e: &mut Errs, spec: &Value, required_detail: &str) {
    let modes = e.strs(spec, "spec", "accessModes");
    if modes.is_empty() {
        e.required("spec.accessModes", required_detail);
    }
    let mut once_pod = false;
    let mut others = false;
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            e.not_supported("spec.accessModes", *m, ACCESS_MODES);
        } else if *m == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            others = true;
        }
    }
    if once_pod && others {
        e.forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

fn validate_storage_class_and_mode(e: &mut Errs, spec: &Value) {
    if let Some(class) = e.str(spec, "spec", "storageClassName")
        && !class.is_empty()
    {
        for msg in names::dns1123_subdomain(class) {
            e.invalid("spec.storageClassName", class, &msg);
        }
    }
    if let Some(mode) = e.str(spec, "spec", "volumeMode")
        && !VOLUME_MODES.contains(&mode)
    {
        e.not_supported("spec.volumeMode", mode, VOLUME_MODES);
    }
}

/// Checks a PersistentVolume.
pub(crate) fn validate_persistent_volume(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.accessModes", "");
        return;
    };
    validate_access_modes(e, spec, "");
    let capacity = e.map(spec, "spec", "capacity");
    match capacity {
        None => e.required("spec.capacity", ""),
        Some(c) if c.is_empty() => e.required("spec.capacity", ""),
        Some(_) => {}
    }
    if capacity.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        e.not_supported(
            "spec.capacity",
            peek(spec, &["capacity"]).unwrap_or(&Value::Null),
            &["storage"],
        );
    }
    for (name, q) in capacity.into_iter().flatten() {
        let path = key("spec.capacity", name);
        if let Some(q) = checked_quantity(e, q, &path)
            && !q.is_negative()
            && q.nanos() == 0
        {
            e.invalid(&path, q.to_string(), "must be greater than zero");
        }
    }
    if let Some(policy) = e.str(spec, "spec", "persistentVolumeReclaimPolicy")
        && !policy.is_empty()
        && !matches!(policy, "Delete" | "Recycle" | "Retain")
    {
        e.not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &["Delete", "Recycle", "Retain"],
        );
    }
    let mut found = false;
    for &source in PV_SOURCES {
        if spec.get(source).is_none_or(Value::is_null) {
            continue;
        }
        if found {
            e.forbidden(
                &join("spec", source),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        found = true;
        let Some(src) = e.obj(spec, "spec", source) else {
            continue;
        };
        let spath = join("spec", source);
        let required: &[&str] = match source {
            "hostPath" | "local" => &["path"],
            "nfs" => &["server", "path"],
            "csi" => &["driver", "volumeHandle"],
            _ => &[],
        };
        for field in required {
            if e.str_or_empty(src, &spath, field).is_empty() {
                e.required(&join(&spath, field), "");
            }
        }
        if source == "local" && spec.get("nodeAffinity").is_none_or(Value::is_null) {
            e.required("spec.nodeAffinity", "Local volume requires node affinity");
        }
    }
    if !found {
        e.required("spec", "must specify a volume type");
    }
    validate_storage_class_and_mode(e, spec);
}

/// Checks a PersistentVolumeClaim.
pub(crate) fn validate_persistent_volume_claim(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.accessModes", "at least 1 access mode is required");
        return;
    };
    validate_access_modes(e, spec, "at least 1 access mode is required");
    meta::validate_label_selector(e, spec, "spec", "selector");
    // Upstream's path for the storage request is `spec.resources[storage]`.
    let storage_path = key("spec.resources", "storage");
    match peek(spec, &["resources", "requests", "storage"]) {
        None | Some(Value::Null) => e.required(&storage_path, ""),
        Some(q) => {
            if let Some(q) = checked_quantity(e, q, &storage_path)
                && !q.is_negative()
                && q.nanos() == 0
            {
                e.invalid(&storage_path, q.to_string(), "must be greater than zero");
            }
        }
    }
    validate_storage_class_and_mode(e, spec);
}

/// Checks a ResourceQuota: every hard limit is a quantity.
pub(crate) fn validate_resource_quota(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    if let Some(spec) = e.obj(obj, "", "spec")
        && let Some(hard) = e.map(spec, "spec", "hard")
    {
        for (name, q) in hard {
            let path = key("spec.hard", name);
            for msg in names::qualified_name(name) {
                e.invalid(&path, name.as_str(), &msg);
            }
            checked_quantity(e, q, &path);
        }
    }
}

/// Checks a Role (`namespaced`) or ClusterRole.
pub(crate) fn validate_role(e: &mut Errs, obj: &Value, namespaced: bool) {
    meta::validate_object_meta(e, obj, NameRule::PathSegment);
    for (rpath, rule) in e.objs(obj, "", "rules") {
        if e.strs(rule, &rpath, "verbs").is_empty() {
            e.required(
                &join(&rpath, "verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = e.strs(rule, &rpath, "nonResourceURLs");
        let groups = e.strs(rule, &rpath, "apiGroups");
        let resources = e.strs(rule, &rpath, "resources");
        let resource_names = e.strs(rule, &rpath, "resourceNames");
        if !urls.is_empty() {
            let upath = join(&rpath, "nonResourceURLs");
            let shown = peek(rule, &["nonResourceURLs"]).unwrap_or(&Value::Null);
            if namespaced {
                e.invalid(
                    &upath,
                    shown,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !groups.is_empty() || !resources.is_empty() || !resource_names.is_empty() {
                e.invalid(
                    &upath,
                    shown,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if groups.is_empty() {
            e.required(
                &join(&rpath, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if resources.is_empty() {
            e.required(
                &join(&rpath, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
    if !namespaced && let Some(agg) = e.obj(obj, "", "aggregationRule") {
        let selectors = e.objs(agg, "aggregationRule", "clusterRoleSelectors");
        if selectors.is_empty() {
            e.required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            );
        }
        for (spath, selector) in &selectors {
            meta::validate_selector(e, selector, spath);
        }
    }
}

/// Checks a RoleBinding (`namespaced`) or ClusterRoleBinding.
pub(crate) fn validate_role_binding(e: &mut Errs, obj: &Value, namespaced: bool) {
    meta::validate_object_meta(e, obj, NameRule::PathSegment);
    let role_ref = e.obj(obj, "", "roleRef");
    let group = role_ref.map_or("", |r| e.str_or_empty(r, "roleRef", "apiGroup"));
    if group != RBAC_GROUP {
        e.not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]);
    }
    let kind = role_ref.map_or("", |r| e.str_or_empty(r, "roleRef", "kind"));
    if namespaced {
        if kind != "Role" && kind != "ClusterRole" {
            e.not_supported("roleRef.kind", kind, &["Role", "ClusterRole"]);
        }
    } else if kind != "ClusterRole" {
        e.not_supported("roleRef.kind", kind, &["ClusterRole"]);
    }
    let name = role_ref.map_or("", |r| e.str_or_empty(r, "roleRef", "name"));
    if name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        for msg in names::path_segment_name(name) {
            e.invalid("roleRef.name", name, &msg);
        }
    }
    for (spath, subject) in e.objs(obj, "", "subjects") {
        validate_subject(e, subject, &spath, namespaced);
    }
}

fn validate_subject(e: &mut Errs, subject: &Value, spath: &str, namespaced: bool) {
    let name = e.str_or_empty(subject, spath, "name");
    if name.is_empty() {
        e.required(&join(spath, "name"), "");
    }
    let group = e.str_or_empty(subject, spath, "apiGroup");
    match e.str_or_empty(subject, spath, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in names::dns1123_subdomain(name) {
                    e.invalid(&join(spath, "name"), name, &msg);
                }
            }
            if !group.is_empty() {
                e.not_supported(&join(spath, "apiGroup"), group, &[""]);
            }
            if !namespaced && e.str_or_empty(subject, spath, "namespace").is_empty() {
                e.required(&join(spath, "namespace"), "");
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                e.not_supported(&join(spath, "apiGroup"), group, &[RBAC_GROUP]);
            }
        }
        other => e.not_supported(
            &join(spath, "kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        ),
    }
}

/// Checks a PodDisruptionBudget.
pub(crate) fn validate_pod_disruption_budget(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        return;
    };
    let both = ["minAvailable", "maxUnavailable"]
        .iter()
        .all(|f| spec.get(*f).is_some_and(|v| !v.is_null()));
    if both {
        e.invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for f in ["minAvailable", "maxUnavailable"] {
        let path = join("spec", f);
        match e.int_or_str(spec, "spec", f) {
            Some(IntOrStr::Int(i)) => e.nonnegative(&path, i),
            Some(IntOrStr::Str(s)) => {
                for msg in names::percent(s) {
                    e.invalid(&path, s, &msg);
                }
                if names::percent(s).is_empty()
                    && s.trim_end_matches('%')
                        .parse::<u64>()
                        .is_ok_and(|p| p > 100)
                {
                    e.invalid(&path, s, "must not be greater than 100%");
                }
            }
            None => {}
        }
    }
    meta::validate_label_selector(e, spec, "spec", "selector");
    if let Some(policy) = e.str(spec, "spec", "unhealthyPodEvictionPolicy")
        && policy != "IfHealthyBudget"
        && policy != "AlwaysAllow"
    {
        e.not_supported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        );
    }
}

/// Checks a HorizontalPodAutoscaler (`autoscaling/v2`, or `v1` by its `apiVersion`).
pub(crate) fn validate_hpa(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.scaleTargetRef.kind", "");
        e.required("spec.scaleTargetRef.name", "");
        return;
    };
    let min = e.int(spec, "spec", "minReplicas");
    if let Some(min) = min
        && min < 1
    {
        e.invalid(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        );
    }
    let max = e.int(spec, "spec", "maxReplicas").unwrap_or(0);
    if max < 1 {
        e.invalid("spec.maxReplicas", max, "must be greater than 0");
    }
    if let Some(min) = min
        && max < min
    {
        e.invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        );
    }
    let before = e.len();
    let target = e.obj(spec, "spec", "scaleTargetRef");
    for f in ["kind", "name"] {
        let path = join("spec.scaleTargetRef", f);
        let v = target.map_or("", |t| e.str_or_empty(t, "spec.scaleTargetRef", f));
        if v.is_empty() {
            e.required(&path, "");
        } else {
            for msg in names::path_segment_name(v) {
                e.invalid(&path, v, &msg);
            }
        }
    }
    if e.len() != before {
        return;
    }
    let v1 = obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1");
    if v1 {
        if let Some(cpu) = e.int(spec, "spec", "targetCPUUtilizationPercentage")
            && cpu < 1
        {
            e.invalid(
                "spec.targetCPUUtilizationPercentage",
                cpu,
                "must be greater than or equal to 1",
            );
        }
        return;
    }
    for (mpath, metric) in e.objs(spec, "spec", "metrics") {
        validate_metric(e, metric, &mpath);
    }
}

fn validate_metric(e: &mut Errs, metric: &Value, mpath: &str) {
    const TYPES: &[&str] = &[
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    let kind = e.str_or_empty(metric, mpath, "type");
    let source_key = match kind {
        "" => {
            e.required(&join(mpath, "type"), "must specify a metric source type");
            return;
        }
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        other => {
            e.not_supported(&join(mpath, "type"), other, TYPES);
            return;
        }
    };
    let spath = join(mpath, source_key);
    let Some(source) = e.obj(metric, mpath, source_key) else {
        e.required(
            &spath,
            "must populate information for the given metric source",
        );
        return;
    };
    let tpath = join(&spath, "target");
    let target = e.obj(source, &spath, "target");
    match source_key {
        "resource" | "containerResource" => {
            if e.str_or_empty(source, &spath, "name").is_empty() {
                e.required(&join(&spath, "name"), "must specify a resource name");
            }
            if source_key == "containerResource"
                && e.str_or_empty(source, &spath, "container").is_empty()
            {
                e.required(&join(&spath, "container"), "must specify a container");
            }
            let has = |f: &str| target.is_some_and(|t| t.get(f).is_some_and(|v| !v.is_null()));
            if !has("averageValue") && !has("averageUtilization") {
                e.required(
                    &join(&tpath, "averageUtilization"),
                    "must set either a target raw value or a target utilization",
                );
            }
            if has("averageValue") && has("averageUtilization") {
                e.forbidden(
                    &join(&tpath, "averageValue"),
                    "may not set both a target raw value and a target utilization",
                );
            }
        }
        _ => {
            if let Some(m) = e.obj(source, &spath, "metric") {
                if e.str_or_empty(m, &join(&spath, "metric"), "name")
                    .is_empty()
                {
                    e.required(&join(&spath, "metric.name"), "must specify a metric name");
                }
            } else {
                e.required(&join(&spath, "metric.name"), "must specify a metric name");
            }
        }
    }
    let Some(target) = target else {
        return;
    };
    match e.str_or_empty(target, &tpath, "type") {
        "Utilization" | "Value" | "AverageValue" => {}
        t => {
            if t.is_empty() {
                e.required(&join(&tpath, "type"), "must specify a metric target type");
            }
            e.invalid(
                &join(&tpath, "type"),
                t,
                "must be either Utilization, Value, or AverageValue",
            );
        }
    }
    for f in ["value", "averageValue"] {
        if let Some(v) = target.get(f).filter(|v| !v.is_null()) {
            let path = join(&tpath, f);
            if let Some(q) = checked_quantity(e, v, &path)
                && q.nanos() <= 0
            {
                e.invalid(&path, v, "must be positive");
            }
        }
    }
    if let Some(u) = e.int(target, &tpath, "averageUtilization")
        && u < 1
    {
        e.invalid(
            &join(&tpath, "averageUtilization"),
            u,
            "must be greater than 0",
        );
    }
}

/// Checks a coordination.k8s.io Lease.
pub(crate) fn validate_lease(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        return;
    };
    if let Some(d) = e.int(spec, "spec", "leaseDurationSeconds")
        && d <= 0
    {
        e.invalid("spec.leaseDurationSeconds", d, "must be greater than 0");
    }
    if let Some(t) = e.int(spec, "spec", "leaseTransitions") {
        e.nonnegative("spec.leaseTransitions", t);
    }
    let strategy = e.str_or_empty(spec, "spec", "strategy");
    if !strategy.is_empty() && strategy != "OldestEmulationVersion" {
        e.not_supported("spec.strategy", strategy, &["OldestEmulationVersion"]);
    }
    if !e.str_or_empty(spec, "spec", "preferredHolder").is_empty() && strategy.is_empty() {
        e.forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_causes, assert_valid, defaulted};
    use crate::validate::CauseType::{Duplicate, Forbidden, Invalid, NotSupported, Required};
    use serde_json::{Value, json};

    #[test]
    fn namespaces() {
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_valid("", "Namespace", &ns);
        let bad = defaulted("", "Namespace", json!({"metadata": {"name": "team.a"}}));
        assert_causes("", "Namespace", &bad, &[("metadata.name", Invalid)]);
    }

    #[test]
    fn nodes() {
        let node = defaulted(
            "",
            "Node",
            json!({"metadata": {"name": "node-1.example.internal", "labels": {"kubernetes.io/hostname": "node-1"}},
                "spec": {"podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                    "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}),
        );
        assert_valid("", "Node", &node);
        let mut n = node.clone();
        n["spec"]["taints"][0]["effect"] = json!("Never");
        assert_causes(
            "",
            "Node",
            &n,
            &[("metadata.taints[0].effect", NotSupported)],
        );
        let mut n = node.clone();
        n["spec"]["taints"] =
            json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]);
        assert_causes("", "Node", &n, &[("metadata.taints[1]", Duplicate)]);
        let mut n = node;
        n["spec"]["podCIDRs"] = json!(["10.244.1.0/24", "10.244.2.0/24"]);
        assert_causes("", "Node", &n, &[("spec.podCIDRs", Invalid)]);
    }

    fn pv() -> Value {
        defaulted(
            "",
            "PersistentVolume",
            json!({"metadata": {"name": "pv-0001"}, "spec": {"capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data/pv-0001"}, "storageClassName": "manual"}}),
        )
    }

    #[test]
    fn persistent_volumes() {
        assert_valid("", "PersistentVolume", &pv());
        let mut p = pv();
        p["spec"]["accessModes"] = json!([]);
        assert_causes(
            "",
            "PersistentVolume",
            &p,
            &[("spec.accessModes", Required)],
        );
        let mut p = pv();
        p["spec"]["nfs"] = json!({"server": "nfs.example.com", "path": "/x"});
        assert_causes("", "PersistentVolume", &p, &[("spec.nfs", Forbidden)]);
        let mut p = pv();
        p["spec"]["capacity"] = json!({"storage": "10Gi", "iops": "100"});
        assert_causes(
            "",
            "PersistentVolume",
            &p,
            &[("spec.capacity", NotSupported)],
        );
    }

    fn pvc() -> Value {
        defaulted(
            "",
            "PersistentVolumeClaim",
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}}, "storageClassName": "standard"}}),
        )
    }

    #[test]
    fn persistent_volume_claims() {
        assert_valid("", "PersistentVolumeClaim", &pvc());
        let mut c = pvc();
        c["spec"]["resources"] = json!({});
        assert_causes(
            "",
            "PersistentVolumeClaim",
            &c,
            &[("spec.resources[storage]", Required)],
        );
        let mut c = pvc();
        c["spec"]["accessModes"] = json!(["ReadWriteSometimes"]);
        assert_causes(
            "",
            "PersistentVolumeClaim",
            &c,
            &[("spec.accessModes", NotSupported)],
        );
        let mut c = pvc();
        c["spec"]["accessModes"] = json!([]);
        assert_causes(
            "",
            "PersistentVolumeClaim",
            &c,
            &[("spec.accessModes", Required)],
        );
        let mut c = pvc();
        c["spec"]["resources"]["requests"]["storage"] = json!("0");
        assert_causes(
            "",
            "PersistentVolumeClaim",
            &c,
            &[("spec.resources[storage]", Invalid)],
        );
    }

    #[test]
    fn rbac_roles() {
        let role = json!({"metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]});
        assert_valid("rbac.authorization.k8s.io", "Role", &role);
        let mut r = role.clone();
        r["rules"][0]["verbs"] = json!([]);
        assert_causes(
            "rbac.authorization.k8s.io",
            "Role",
            &r,
            &[("rules[0].verbs", Required)],
        );
        let mut r = role;
        r["rules"][0] = json!({"nonResourceURLs": ["/healthz"], "verbs": ["get"]});
        assert_causes(
            "rbac.authorization.k8s.io",
            "Role",
            &r,
            &[("rules[0].nonResourceURLs", Invalid)],
        );
        assert_valid("rbac.authorization.k8s.io", "ClusterRole", &r);
        let named = json!({"metadata": {"name": "system:controller:foo"}, "rules": []});
        assert_valid("rbac.authorization.k8s.io", "ClusterRole", &named);
    }

    #[test]
    fn rbac_bindings() {
        let binding = defaulted(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": {"name": "read-pods", "namespace": "default"},
                "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "builder"}],
                "roleRef": {"kind": "Role", "name": "pod-reader"}}),
        );
        assert_eq!(binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(
            binding["subjects"][0]["apiGroup"],
            "rbac.authorization.k8s.io"
        );
        assert_valid("rbac.authorization.k8s.io", "RoleBinding", &binding);
        let mut b = binding.clone();
        b["roleRef"]["kind"] = json!("Pod");
        assert_causes(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            &b,
            &[("roleRef.kind", NotSupported)],
        );
        assert_causes(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            &binding,
            &[
                ("roleRef.kind", NotSupported),
                ("subjects[1].namespace", Required),
            ],
        );
        let mut b = binding;
        b["subjects"][0]["kind"] = json!("Robot");
        assert_causes(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            &b,
            &[("subjects[0].kind", NotSupported)],
        );
    }

    #[test]
    fn pod_disruption_budgets() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}});
        assert_valid("policy", "PodDisruptionBudget", &pdb);
        let mut p = pdb.clone();
        p["spec"]["maxUnavailable"] = json!(1);
        assert_causes("policy", "PodDisruptionBudget", &p, &[("spec", Invalid)]);
        let mut p = pdb;
        p["spec"]["minAvailable"] = json!("150%");
        assert_causes(
            "policy",
            "PodDisruptionBudget",
            &p,
            &[("spec.minAvailable", Invalid)],
        );
    }

    #[test]
    fn horizontal_pod_autoscalers() {
        let hpa = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_valid("autoscaling", "HorizontalPodAutoscaler", &hpa);
        let mut h = hpa.clone();
        h["spec"]["minReplicas"] = json!(5);
        h["spec"]["maxReplicas"] = json!(3);
        assert_causes(
            "autoscaling",
            "HorizontalPodAutoscaler",
            &h,
            &[("spec.maxReplicas", Invalid)],
        );
        let mut h = hpa.clone();
        h["spec"]["scaleTargetRef"]["name"] = json!("");
        assert_causes(
            "autoscaling",
            "HorizontalPodAutoscaler",
            &h,
            &[("spec.scaleTargetRef.name", Required)],
        );
        let mut h = hpa;
        h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = json!(0);
        assert_causes(
            "autoscaling",
            "HorizontalPodAutoscaler",
            &h,
            &[(
                "spec.metrics[0].resource.target.averageUtilization",
                Invalid,
            )],
        );
    }

    #[test]
    fn leases() {
        let lease = json!({"metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "node-1_abc", "leaseDurationSeconds": 15, "leaseTransitions": 3}});
        assert_valid("coordination.k8s.io", "Lease", &lease);
        let mut l = lease;
        l["spec"]["leaseDurationSeconds"] = json!(0);
        assert_causes(
            "coordination.k8s.io",
            "Lease",
            &l,
            &[("spec.leaseDurationSeconds", Invalid)],
        );
    }

    #[test]
    fn resource_quotas() {
        let q = json!({"metadata": {"name": "compute"}, "spec": {"hard": {"requests.cpu": "4", "pods": 10}}});
        assert_valid("", "ResourceQuota", &q);
        let mut bad = q;
        bad["spec"]["hard"]["requests.memory"] = json!("-1Gi");
        assert_causes(
            "",
            "ResourceQuota",
            &bad,
            &[("spec.hard[requests.memory]", Invalid)],
        );
    }
}
