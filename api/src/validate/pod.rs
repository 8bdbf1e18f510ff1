//! Pods, pod templates and the pod spec every workload embeds: containers, volumes, probes,
//! resources and scheduling fields, after `ValidatePodSpec` in
//! `pkg/apis/core/validation/validation.go`.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::container::{
    check_host_port_conflicts, quantity_of, validate_container_common, validate_id,
    validate_image_whitespace, validate_lifecycle_and_probes, validate_local_descending_path,
};
use super::field::{Errs, index, join, peek};
use super::meta::{self, NameRule};
use super::names;

/// The volume sources, in the order upstream checks them (the second one found is the one
/// reported as "more than 1 volume type"); defaulting makes a volume with none an `emptyDir`.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

const FILE_MODE_MESSAGE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = 2_147_483_647;

/// Where a pod spec sits, which changes a few rules.
#[derive(Default)]
pub(crate) struct PodContext {
    /// The spec belongs to a Pod, not a template: stricter image and host port rules.
    pub(crate) is_pod: bool,
    /// Volume names supplied from outside the spec (a StatefulSet's claim templates).
    pub(crate) extra_volumes: Vec<String>,
}

/// Checks a Pod.
pub(crate) fn validate_pod(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.containers", "");
        return;
    };
    let ctx = PodContext {
        is_pod: true,
        extra_volumes: Vec::new(),
    };
    validate_pod_spec(e, spec, "spec", &ctx);
}

/// Checks a PodTemplate (the kind, not the embedded template).
pub(crate) fn validate_pod_template(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    validate_template(e, obj, "", "template", &PodContext::default());
}

/// Checks the pod template at `parent.key` (labels, annotations, spec). A missing template
/// is `Required`.
pub(crate) fn validate_template(
    e: &mut Errs,
    parent: &Value,
    path: &str,
    key_name: &str,
    ctx: &PodContext,
) {
    let tpath = join(path, key_name);
    let Some(template) = e.obj(parent, path, key_name) else {
        e.required(&join(&tpath, "spec.containers"), "");
        return;
    };
    if let Some(tmeta) = e.obj(template, &tpath, "metadata") {
        let mpath = join(&tpath, "metadata");
        meta::validate_labels(e, tmeta, &mpath, "labels");
        meta::validate_annotations(e, tmeta, &mpath, "annotations");
    }
    let spath = join(&tpath, "spec");
    let Some(spec) = e.obj(template, &tpath, "spec") else {
        e.required(&join(&spath, "containers"), "");
        return;
    };
    validate_pod_spec(e, spec, &spath, ctx);
    if !e.arr(spec, &spath, "ephemeralContainers").is_empty() {
        e.forbidden(
            &join(&spath, "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        );
    }
}

/// Checks a pod spec at `path`.
pub(crate) fn validate_pod_spec(e: &mut Errs, spec: &Value, path: &str, ctx: &PodContext) {
    let grace = e.int(spec, path, "terminationGracePeriodSeconds");
    if spec
        .get("terminationGracePeriodSeconds")
        .is_none_or(Value::is_null)
    {
        e.required(&join(path, "terminationGracePeriodSeconds"), "");
    }
    let mut volumes = validate_volumes(e, spec, path);
    for name in &ctx.extra_volumes {
        volumes
            .entry(name.clone())
            .or_insert("persistentVolumeClaim");
    }

    let containers_path = join(path, "containers");
    let containers = e.objs(spec, path, "containers");
    if containers.is_empty() {
        e.required(&containers_path, "");
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (cpath, c) in &containers {
        validate_container_common(e, c, cpath, &volumes);
        let name = e.str_or_empty(c, cpath, "name");
        if !names.insert(name) {
            e.duplicate(&join(cpath, "name"), name);
        }
        validate_lifecycle_and_probes(e, c, cpath, grace);
        if c.get("restartPolicy").is_some_and(|v| !v.is_null()) {
            e.forbidden(
                &join(cpath, "restartPolicy"),
                "may not be set for non-init containers",
            );
        }
        if ctx.is_pod {
            validate_image_whitespace(e, c, cpath);
        }
    }
    check_host_port_conflicts(e, &containers);

    for (cpath, c) in e.objs(spec, path, "initContainers") {
        validate_container_common(e, c, &cpath, &volumes);
        let name = e.str_or_empty(c, &cpath, "name");
        if names.contains(name) {
            e.duplicate(&join(&cpath, "name"), name);
        } else if !name.is_empty() {
            names.insert(name);
        }
        let restart = e.str(c, &cpath, "restartPolicy");
        if let Some(policy) = restart
            && policy != "Always"
        {
            e.not_supported(&join(&cpath, "restartPolicy"), policy, &["Always"]);
        }
        if restart == Some("Always") {
            validate_lifecycle_and_probes(e, c, &cpath, grace);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if c.get(field).is_some_and(|v| !v.is_null()) {
                    e.forbidden(
                        &join(&cpath, field),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
        check_host_port_conflicts(e, &[(cpath.clone(), c)]);
        if ctx.is_pod {
            validate_image_whitespace(e, c, &cpath);
        }
    }

    for (cpath, c) in e.objs(spec, path, "ephemeralContainers") {
        validate_container_common(e, c, &cpath, &volumes);
        let name = e.str_or_empty(c, &cpath, "name");
        if !names.insert(name) {
            e.duplicate(&join(&cpath, "name"), name);
        }
    }

    validate_host_network_ports(e, spec, path, ctx.is_pod);

    match e.str_or_empty(spec, path, "restartPolicy") {
        "Always" | "OnFailure" | "Never" => {}
        "" => e.required(&join(path, "restartPolicy"), ""),
        other => e.not_supported(
            &join(path, "restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        ),
    }
    let dns_policy = e.str_or_empty(spec, path, "dnsPolicy");
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => e.required(&join(path, "dnsPolicy"), ""),
        other => e.not_supported(
            &join(path, "dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ),
    }
    meta::validate_labels(e, spec, path, "nodeSelector");
    validate_pod_security_context(e, spec, path);
    validate_dns_config(e, spec, path, dns_policy);
    validate_scheduling_fields(e, spec, path);
    validate_tolerations(e, spec, path);
}

/// Volumes: unique DNS-label names and exactly one source each. Returns the usable volumes
/// (name to source), which container mounts are checked against.
fn validate_volumes(e: &mut Errs, spec: &Value, path: &str) -> HashMap<String, &'static str> {
    let mut vols = HashMap::new();
    for (vpath, vol) in e.objs(spec, path, "volumes") {
        let before = e.len();
        let source = validate_volume_source(e, vol, &vpath);
        let name = e.str_or_empty(vol, &vpath, "name");
        let name_path = join(&vpath, "name");
        if name.is_empty() {
            e.required(&name_path, "");
        } else {
            for msg in names::dns1123_label(name) {
                e.invalid(&name_path, name, &msg);
            }
        }
        if vols.contains_key(name) {
            e.duplicate(&name_path, name);
        }
        if e.len() == before
            && let Some(source) = source
        {
            vols.insert(name.to_owned(), source);
        }
    }
    vols
}

/// The one source of a volume; reports none or several.
fn validate_volume_source(e: &mut Errs, vol: &Value, vpath: &str) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for &source in VOLUME_SOURCES {
        if vol.get(source).is_none_or(Value::is_null) {
            continue;
        }
        if found.is_some() {
            e.forbidden(
                &join(vpath, source),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        found = Some(source);
        let Some(src) = e.obj(vol, vpath, source) else {
            continue;
        };
        let spath = join(vpath, source);
        validate_one_source(e, source, src, &spath);
    }
    if found.is_none() {
        e.required(vpath, "must specify a volume type");
    }
    found
}

fn validate_one_source(e: &mut Errs, source: &str, src: &Value, spath: &str) {
    let require = |e: &mut Errs, field: &str| {
        if e.str_or_empty(src, spath, field).is_empty() {
            e.required(&join(spath, field), "");
        }
    };
    match source {
        "hostPath" => {
            if e.str_or_empty(src, spath, "path").is_empty() {
                e.required(&join(spath, "path"), "");
            } else if let Some(t) = e.str(src, spath, "type") {
                const TYPES: &[&str] = &[
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ];
                if !TYPES.contains(&t) {
                    e.not_supported(&join(spath, "type"), t, TYPES);
                }
            }
        }
        "secret" => {
            require(e, "secretName");
            validate_file_mode(e, src, spath, "defaultMode");
            validate_key_to_paths(e, src, spath);
        }
        "configMap" => {
            require(e, "name");
            validate_file_mode(e, src, spath, "defaultMode");
            validate_key_to_paths(e, src, spath);
        }
        "persistentVolumeClaim" => require(e, "claimName"),
        "nfs" => {
            require(e, "server");
            let p = e.str_or_empty(src, spath, "path");
            if p.is_empty() {
                e.required(&join(spath, "path"), "");
            }
            if !p.starts_with('/') {
                e.invalid(&join(spath, "path"), p, "must be an absolute path");
            }
        }
        "downwardAPI" | "projected" => validate_file_mode(e, src, spath, "defaultMode"),
        "csi" => require(e, "driver"),
        "emptyDir" => {
            if let Some(limit) = src.get("sizeLimit")
                && let Some(q) = quantity_of(limit)
                && q.is_negative()
            {
                e.forbidden(
                    &join(spath, "sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                );
            }
        }
        "ephemeral" if e.obj(src, spath, "volumeClaimTemplate").is_none() => {
            e.required(&join(spath, "volumeClaimTemplate"), "");
        }
        _ => {}
    }
}

fn validate_file_mode(e: &mut Errs, parent: &Value, path: &str, field: &str) {
    if let Some(mode) = e.int(parent, path, field)
        && !(0..=0o777).contains(&mode)
    {
        e.invalid(&join(path, field), mode, FILE_MODE_MESSAGE);
    }
}

fn validate_key_to_paths(e: &mut Errs, src: &Value, spath: &str) {
    for (ipath, item) in e.objs(src, spath, "items") {
        if e.str_or_empty(item, &ipath, "key").is_empty() {
            e.required(&join(&ipath, "key"), "");
        }
        let p = e.str_or_empty(item, &ipath, "path");
        let ppath = join(&ipath, "path");
        if p.is_empty() {
            e.required(&ppath, "");
        }
        validate_local_descending_path(e, p, &ppath);
        if p.starts_with("..") && !p.starts_with("../") {
            e.invalid(&ppath, p, "must not start with '..'");
        }
        validate_file_mode(e, item, &ipath, "mode");
    }
}

fn validate_host_network_ports(e: &mut Errs, spec: &Value, path: &str, is_pod: bool) {
    if spec.get("hostNetwork").and_then(Value::as_bool) != Some(true) {
        return;
    }
    let Some(containers) = spec.get("containers").and_then(Value::as_array) else {
        return;
    };
    for (i, c) in containers.iter().enumerate() {
        let Some(ports) = c.get("ports").and_then(Value::as_array) else {
            continue;
        };
        for (j, port) in ports.iter().enumerate() {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            let cp = port
                .get("containerPort")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if (is_pod || hp != 0) && hp != cp {
                let p = format!("{path}.containers[{i}].ports[{j}].hostPort");
                e.invalid(
                    &p,
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
    }
}

fn validate_pod_security_context(e: &mut Errs, spec: &Value, path: &str) {
    let Some(sc) = e.obj(spec, path, "securityContext") else {
        return;
    };
    let scpath = join(path, "securityContext");
    validate_id(e, sc, &scpath, "runAsUser");
    validate_id(e, sc, &scpath, "runAsGroup");
    validate_id(e, sc, &scpath, "fsGroup");
}

fn validate_dns_config(e: &mut Errs, spec: &Value, path: &str, dns_policy: &str) {
    let dpath = join(path, "dnsConfig");
    let config = e.obj(spec, path, "dnsConfig");
    if dns_policy == "None" {
        match config {
            None => {
                e.required(&dpath, "must provide `dnsConfig` when `dnsPolicy` is None");
                return;
            }
            Some(c) if e.arr(c, &dpath, "nameservers").is_empty() => {
                e.required(
                    &join(&dpath, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                );
                return;
            }
            Some(_) => {}
        }
    }
    let Some(config) = config else {
        return;
    };
    let servers = e.strs(config, &dpath, "nameservers");
    if servers.len() > 3 {
        e.invalid(
            &join(&dpath, "nameservers"),
            peek(config, &["nameservers"]).unwrap_or(&Value::Null),
            "must not have more than 3 nameservers",
        );
    }
    for (i, ns) in servers.iter().enumerate() {
        for msg in names::ip_address(ns) {
            e.invalid(&index(&join(&dpath, "nameservers"), i), *ns, &msg);
        }
    }
    let searches = e.strs(config, &dpath, "searches");
    if searches.len() > 32 {
        e.invalid(
            &join(&dpath, "searches"),
            peek(config, &["searches"]).unwrap_or(&Value::Null),
            "must not have more than 32 search paths",
        );
    }
    for (i, search) in searches.iter().enumerate() {
        if *search == "." {
            continue;
        }
        let trimmed = search.strip_suffix('.').unwrap_or(search);
        for msg in names::dns1123_subdomain(trimmed) {
            e.invalid(&index(&join(&dpath, "searches"), i), trimmed, &msg);
        }
    }
    for (opath, option) in e.objs(config, &dpath, "options") {
        if e.str_or_empty(option, &opath, "name").is_empty() {
            e.required(&opath, "must not be empty");
        }
    }
}

/// Service account, node name, deadlines, host names, priority and spread constraints.
fn validate_scheduling_fields(e: &mut Errs, spec: &Value, path: &str) {
    for (field, dns_label) in [
        ("serviceAccountName", false),
        ("nodeName", false),
        ("priorityClassName", false),
        ("hostname", true),
        ("subdomain", true),
    ] {
        if let Some(v) = e.str(spec, path, field)
            && !v.is_empty()
        {
            let msgs = if dns_label {
                names::dns1123_label(v)
            } else {
                names::dns1123_subdomain(v)
            };
            for msg in msgs {
                e.invalid(&join(path, field), v, &msg);
            }
        }
    }
    if let Some(v) = e.int(spec, path, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&v)
    {
        e.invalid(
            &join(path, "activeDeadlineSeconds"),
            v,
            &names::inclusive_range(1, MAX_INT32),
        );
    }
    if let Some(p) = e.str(spec, path, "preemptionPolicy") {
        match p {
            "PreemptLowerPriority" | "Never" => {}
            "" => e.required(&join(path, "preemptionPolicy"), ""),
            other => e.not_supported(
                &join(path, "preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            ),
        }
    }
    let mut gates = HashSet::new();
    for (gpath, gate) in e.objs(spec, path, "schedulingGates") {
        let name = e.str_or_empty(gate, &gpath, "name");
        for msg in names::qualified_name(name) {
            e.invalid(&gpath, name, &msg);
        }
        if !gates.insert(name) {
            e.duplicate(&gpath, name);
        }
    }
    for (cpath, c) in e.objs(spec, path, "topologySpreadConstraints") {
        let skew = e.int(c, &cpath, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            e.invalid(&join(&cpath, "maxSkew"), skew, "must be greater than zero");
        }
        if e.str_or_empty(c, &cpath, "topologyKey").is_empty() {
            e.required(&join(&cpath, "topologyKey"), "can not be empty");
        }
        let action = e.str_or_empty(c, &cpath, "whenUnsatisfiable");
        if action != "DoNotSchedule" && action != "ScheduleAnyway" {
            e.not_supported(
                &join(&cpath, "whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        meta::validate_label_selector(e, c, &cpath, "labelSelector");
    }
}

/// Taint effects a toleration or taint may name.
pub(crate) const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_tolerations(e: &mut Errs, spec: &Value, path: &str) {
    for (tpath, t) in e.objs(spec, path, "tolerations") {
        let k = e.str_or_empty(t, &tpath, "key");
        if !k.is_empty() {
            for msg in names::qualified_name(k) {
                e.invalid(&join(&tpath, "key"), k, &msg);
            }
        }
        let op = e.str_or_empty(t, &tpath, "operator");
        let effect = e.str_or_empty(t, &tpath, "effect");
        let value = e.str_or_empty(t, &tpath, "value");
        if k.is_empty() && op != "Exists" {
            e.invalid(
                &join(&tpath, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if e.int(t, &tpath, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.invalid(
                &join(&tpath, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match op {
            "Equal" | "" => {
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    e.invalid(&join(&tpath, "operator"), value, &msgs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.invalid(
                        &join(&tpath, "operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => e.not_supported(&join(&tpath, "operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            e.not_supported(&join(&tpath, "effect"), effect, TAINT_EFFECTS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_causes, assert_valid, defaulted};
    use crate::validate::CauseType::{
        Duplicate, Forbidden, Invalid, NotFound, NotSupported, Required,
    };
    use serde_json::{Value, json};

    fn pod() -> Value {
        defaulted(
            "",
            "Pod",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80}],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/nginx/conf.d"}],
                        "livenessProbe": {"httpGet": {"port": "http", "path": "/healthz"}},
                        "readinessProbe": {"tcpSocket": {"port": 80}}
                    }],
                    "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]}],
                    "volumes": [{"name": "config", "configMap": {"name": "nginx-conf"}}, {"name": "scratch", "emptyDir": {}}],
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
                }
            }),
        )
    }

    /// `obj` with the value at `pointer` set; the parent must exist.
    fn with(mut obj: Value, pointer: &str, v: Value) -> Value {
        let (parent, last) = pointer.rsplit_once('/').expect("pointer has a parent");
        let target = obj.pointer_mut(parent).expect("parent exists");
        match target {
            Value::Array(items) => items[last.parse::<usize>().expect("index")] = v,
            other => other[last] = v,
        }
        obj
    }

    #[test]
    fn a_realistic_pod_is_valid() {
        assert_valid("", "Pod", &pod());
    }

    #[test]
    fn containers_are_required() {
        let obj = with(pod(), "/spec/containers", json!([]));
        assert_causes("", "Pod", &obj, &[("spec.containers", Required)]);
    }

    #[test]
    fn container_names_are_labels_and_unique() {
        let obj = with(pod(), "/spec/containers/0/name", json!("Nginx"));
        assert_causes("", "Pod", &obj, &[("spec.containers[0].name", Invalid)]);
        let obj = with(pod(), "/spec/initContainers/0/name", json!("nginx"));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.initContainers[0].name", Duplicate)],
        );
    }

    #[test]
    fn image_is_required() {
        let obj = with(pod(), "/spec/containers/0/image", json!(""));
        assert_causes("", "Pod", &obj, &[("spec.containers[0].image", Required)]);
        let obj = with(pod(), "/spec/containers/0/image", json!(" nginx"));
        assert_causes("", "Pod", &obj, &[("spec.containers[0].image", Invalid)]);
    }

    #[test]
    fn ports_are_checked() {
        let obj = with(
            pod(),
            "/spec/containers/0/ports/0/containerPort",
            json!(70000),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].ports[0].containerPort", Invalid)],
        );
        let obj = with(pod(), "/spec/containers/0/ports/0/protocol", json!("HTTP"));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].ports[0].protocol", NotSupported)],
        );
        let obj = with(
            pod(),
            "/spec/containers/0/ports/0/name",
            json!("a-very-long-port-name"),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].ports[0].name", Invalid)],
        );
        let mut obj = pod();
        obj["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 80, "protocol": "TCP"}, {"name": "http", "containerPort": 81, "protocol": "TCP"}]);
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].ports[1].name", Duplicate)],
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let obj = with(
            pod(),
            "/spec/containers/0/resources/requests/cpu",
            json!("2"),
        );
        let causes = assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].resources.requests", Invalid)],
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        let obj = with(
            pod(),
            "/spec/containers/0/resources/limits/memory",
            json!("lots"),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].resources.limits[memory]", Invalid)],
        );
        let obj = with(pod(), "/spec/containers/0/resources/limits/gpu", json!("1"));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].resources.limits[gpu]", Invalid)],
        );
    }

    #[test]
    fn restart_policy_is_an_enum() {
        let obj = with(pod(), "/spec/restartPolicy", json!("Sometimes"));
        let causes = assert_causes("", "Pod", &obj, &[("spec.restartPolicy", NotSupported)]);
        assert_eq!(
            causes[0].message,
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn volumes_need_unique_names_and_one_source() {
        let mut obj = pod();
        obj["spec"]["volumes"][1]["name"] = json!("config");
        assert_causes("", "Pod", &obj, &[("spec.volumes[1].name", Duplicate)]);
        let mut obj = pod();
        obj["spec"]["volumes"][1] = json!({"name": "scratch"});
        assert_causes("", "Pod", &obj, &[("spec.volumes[1]", Required)]);
        let mut obj = pod();
        obj["spec"]["volumes"][1]["secret"] = json!({"secretName": "s"});
        assert_causes("", "Pod", &obj, &[("spec.volumes[1].secret", Forbidden)]);
    }

    #[test]
    fn mounts_must_name_a_volume() {
        let obj = with(
            pod(),
            "/spec/containers/0/volumeMounts/0/name",
            json!("missing"),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].volumeMounts[0].name", NotFound)],
        );
    }

    #[test]
    fn env_names_and_sources() {
        let obj = with(pod(), "/spec/containers/0/env/0/name", json!("A=B"));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].env[0].name", Invalid)],
        );
        let obj = with(pod(), "/spec/containers/0/env/0/valueFrom", json!({}));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].env[0].valueFrom", Invalid)],
        );
        let obj = with(
            pod(),
            "/spec/containers/0/env/0/valueFrom/fieldRef/fieldPath",
            json!("spec.nope"),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[(
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
                Invalid,
            )],
        );
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let obj = with(
            pod(),
            "/spec/containers/0/readinessProbe/tcpSocket",
            Value::Null,
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].readinessProbe", Required)],
        );
        let obj = with(
            pod(),
            "/spec/containers/0/livenessProbe/exec",
            json!({"command": ["true"]}),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].livenessProbe.httpGet", Forbidden)],
        );
        let obj = with(
            pod(),
            "/spec/containers/0/livenessProbe/successThreshold",
            json!(2),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers[0].livenessProbe.successThreshold", Invalid)],
        );
    }

    #[test]
    fn init_containers_may_not_probe_without_restart_always() {
        let obj = with(
            pod(),
            "/spec/initContainers/0/readinessProbe",
            json!({"exec": {"command": ["true"]}}),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.initContainers[0].readinessProbe", Forbidden)],
        );
    }

    #[test]
    fn tolerations_are_checked() {
        let obj = with(pod(), "/spec/tolerations/0/effect", json!("NoSchedule"));
        assert_causes("", "Pod", &obj, &[("spec.tolerations[0].effect", Invalid)]);
    }

    #[test]
    fn wrong_types_are_causes() {
        let obj = with(pod(), "/spec/containers", json!("nginx"));
        assert_causes(
            "",
            "Pod",
            &obj,
            &[("spec.containers", Invalid), ("spec.containers", Required)],
        );
        let obj = with(
            pod(),
            "/spec/containers/0/ports/0/containerPort",
            json!("80"),
        );
        assert_causes(
            "",
            "Pod",
            &obj,
            &[
                ("spec.containers[0].ports[0].containerPort", Invalid),
                ("spec.containers[0].ports[0].containerPort", Required),
            ],
        );
    }

    #[test]
    fn pod_templates_validate_their_spec() {
        let obj = defaulted(
            "",
            "PodTemplate",
            json!({"metadata": {"name": "t"}, "template": {"spec": {"containers": [{"name": "c"}]}}}),
        );
        assert_causes(
            "",
            "PodTemplate",
            &obj,
            &[("template.spec.containers[0].image", Required)],
        );
    }
}
