//! Containers of every kind (regular, init, ephemeral): names, images, ports, environment,
//! volume mounts, probes, lifecycle hooks and resources, after `validateContainerCommon` and
//! its helpers in `pkg/apis/core/validation/validation.go`.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::field::{Errs, IntOrStr, index, join, key, peek};
use super::names;
use super::quantity::{self, Quantity, parse_quantity};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// The largest user or group id.
const MAX_INT32: i64 = 2_147_483_647;

/// A path that must stay below its root: relative and without `..` segments.
pub(crate) fn validate_local_descending_path(e: &mut Errs, p: &str, path: &str) {
    if p.starts_with('/') {
        e.invalid(path, p, "must be a relative path");
    }
    if p.split('/').any(|seg| seg == "..") {
        e.invalid(path, p, "must not contain '..'");
    }
}

/// The rules every container kind shares: name, image, ports, env, mounts, pull policy,
/// resources.
pub(crate) fn validate_container_common(
    e: &mut Errs,
    c: &Value,
    cpath: &str,
    volumes: &HashMap<String, &'static str>,
) {
    let name = e.str_or_empty(c, cpath, "name");
    let name_path = join(cpath, "name");
    if name.is_empty() {
        e.required(&name_path, "");
    } else {
        for msg in names::dns1123_label(name) {
            e.invalid(&name_path, name, &msg);
        }
    }
    if e.str_or_empty(c, cpath, "image").is_empty() {
        e.required(&join(cpath, "image"), "");
    }
    match e.str_or_empty(c, cpath, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => e.required(&join(cpath, "terminationMessagePolicy"), ""),
        other => e.not_supported(
            &join(cpath, "terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        ),
    }
    validate_container_ports(e, c, cpath);
    validate_env(e, c, cpath);
    validate_env_from(e, c, cpath);
    validate_volume_mounts(e, c, cpath, volumes);
    match e.str_or_empty(c, cpath, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => e.required(&join(cpath, "imagePullPolicy"), ""),
        other => e.not_supported(
            &join(cpath, "imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        ),
    }
    if let Some(resources) = e.obj(c, cpath, "resources") {
        validate_resources(e, resources, &join(cpath, "resources"));
    }
    if let Some(sc) = e.obj(c, cpath, "securityContext") {
        let scpath = join(cpath, "securityContext");
        validate_id(e, sc, &scpath, "runAsUser");
        validate_id(e, sc, &scpath, "runAsGroup");
    }
}

pub(crate) fn validate_image_whitespace(e: &mut Errs, c: &Value, cpath: &str) {
    let image = e.str_or_empty(c, cpath, "image");
    if image.trim() != image {
        e.invalid(
            &join(cpath, "image"),
            image,
            "must not have leading or trailing whitespace",
        );
    }
}

fn validate_container_ports(e: &mut Errs, c: &Value, cpath: &str) {
    let mut names: HashSet<&str> = HashSet::new();
    for (ppath, port) in e.objs(c, cpath, "ports") {
        if let Some(name) = e.str(port, &ppath, "name")
            && !name.is_empty()
        {
            let msgs = names::port_name(name);
            for msg in &msgs {
                e.invalid(&join(&ppath, "name"), name, msg);
            }
            if msgs.is_empty() && !names.insert(name) {
                e.duplicate(&join(&ppath, "name"), name);
            }
        }
        match e.int(port, &ppath, "containerPort") {
            None | Some(0) => e.required(&join(&ppath, "containerPort"), ""),
            Some(p) => {
                for msg in names::port_number(p) {
                    e.invalid(&join(&ppath, "containerPort"), p, &msg);
                }
            }
        }
        if let Some(hp) = e.int(port, &ppath, "hostPort")
            && hp != 0
        {
            for msg in names::port_number(hp) {
                e.invalid(&join(&ppath, "hostPort"), hp, &msg);
            }
        }
        validate_protocol(e, port, &ppath);
    }
}

/// `protocol`: required, one of TCP, UDP, SCTP.
pub(crate) fn validate_protocol(e: &mut Errs, parent: &Value, path: &str) {
    match e.str_or_empty(parent, path, "protocol") {
        "" => e.required(&join(path, "protocol"), ""),
        p if PROTOCOLS.contains(&p) => {}
        p => e.not_supported(&join(path, "protocol"), p, PROTOCOLS),
    }
}

/// Host ports may not repeat across the given containers (protocol, host IP and port).
pub(crate) fn check_host_port_conflicts(e: &mut Errs, containers: &[(String, &Value)]) {
    let mut seen = HashSet::new();
    for (cpath, c) in containers {
        let Some(ports) = c.get("ports").and_then(Value::as_array) else {
            continue;
        };
        for (i, port) in ports.iter().enumerate() {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("");
            let host_ip = port.get("hostIP").and_then(Value::as_str).unwrap_or("");
            let id = format!("{protocol}/{host_ip}/{hp}");
            let path = join(&index(&join(cpath, "ports"), i), "hostPort");
            if !seen.insert(id.clone()) {
                e.duplicate(&path, id);
            }
        }
    }
}

/// The downward API fields an env var may read.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Every field label the v1 downward API converts (some of which env vars may not use).
const KNOWN_FIELD_LABELS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const ENV_RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env(e: &mut Errs, c: &Value, cpath: &str) {
    for (epath, var) in e.objs(c, cpath, "env") {
        let name = e.str_or_empty(var, &epath, "name");
        if name.is_empty() {
            e.required(&join(&epath, "name"), "");
        } else {
            for msg in names::env_var_name(name) {
                e.invalid(&join(&epath, "name"), name, &msg);
            }
        }
        let value = e.str_or_empty(var, &epath, "value");
        let Some(from) = e.obj(var, &epath, "valueFrom") else {
            continue;
        };
        let fpath = join(&epath, "valueFrom");
        let mut sources = 0;
        if let Some(fr) = e.obj(from, &fpath, "fieldRef") {
            sources += 1;
            validate_field_ref(e, fr, &join(&fpath, "fieldRef"));
        }
        if let Some(rr) = e.obj(from, &fpath, "resourceFieldRef") {
            sources += 1;
            let rpath = join(&fpath, "resourceFieldRef");
            let resource = e.str_or_empty(rr, &rpath, "resource");
            if resource.is_empty() {
                e.required(&join(&rpath, "resource"), "");
            } else if !ENV_RESOURCE_FIELDS.contains(&resource)
                && !resource.starts_with("requests.hugepages-")
                && !resource.starts_with("limits.hugepages-")
            {
                e.not_supported(&join(&rpath, "resource"), resource, ENV_RESOURCE_FIELDS);
            }
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(sel) = e.obj(from, &fpath, kind) {
                sources += 1;
                validate_key_selector(e, sel, &join(&fpath, kind));
            }
        }
        if sources == 0 {
            e.invalid(
                &fpath,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !value.is_empty() {
            e.invalid(&fpath, "", "may not be specified when `value` is not empty");
        } else if sources > 1 {
            e.invalid(
                &fpath,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn validate_field_ref(e: &mut Errs, fr: &Value, path: &str) {
    if e.str_or_empty(fr, path, "apiVersion").is_empty() {
        e.required(&join(path, "apiVersion"), "");
        return;
    }
    let fp = e.str_or_empty(fr, path, "fieldPath");
    let fp_path = join(path, "fieldPath");
    if fp.is_empty() {
        e.required(&fp_path, "");
        return;
    }
    if let Some((base, rest)) = fp.split_once("['")
        && let Some(subscript) = rest.strip_suffix("']")
    {
        match base {
            "metadata.annotations" | "metadata.labels" => {
                let lowered;
                let checked = if base == "metadata.annotations" {
                    lowered = subscript.to_lowercase();
                    lowered.as_str()
                } else {
                    subscript
                };
                for msg in names::qualified_name(checked) {
                    e.invalid(path, checked, &msg);
                }
            }
            _ => e.invalid(
                &fp_path,
                fp,
                &format!(
                    "error converting fieldPath: field label does not support subscript: {fp}"
                ),
            ),
        }
        return;
    }
    let fp = if fp == "spec.host" {
        "spec.nodeName"
    } else {
        fp
    };
    if !KNOWN_FIELD_LABELS.contains(&fp) {
        e.invalid(
            &fp_path,
            fp,
            &format!("error converting fieldPath: field label not supported: {fp}"),
        );
    } else if !ENV_FIELD_PATHS.contains(&fp) {
        let mut sorted = ENV_FIELD_PATHS.to_vec();
        sorted.sort_unstable();
        e.not_supported(&fp_path, fp, &sorted);
    }
}

fn validate_key_selector(e: &mut Errs, sel: &Value, path: &str) {
    let name = e.str_or_empty(sel, path, "name");
    for msg in names::dns1123_subdomain(name) {
        e.invalid(&join(path, "name"), name, &msg);
    }
    let k = e.str_or_empty(sel, path, "key");
    if k.is_empty() {
        e.required(&join(path, "key"), "");
    } else {
        for msg in names::config_map_key(k) {
            e.invalid(&join(path, "key"), k, &msg);
        }
    }
}

fn validate_env_from(e: &mut Errs, c: &Value, cpath: &str) {
    let list_path = join(cpath, "envFrom");
    for (epath, src) in e.objs(c, cpath, "envFrom") {
        if let Some(prefix) = e.str(src, &epath, "prefix")
            && !prefix.is_empty()
        {
            for msg in names::env_var_name(prefix) {
                e.invalid(&join(&epath, "prefix"), prefix, &msg);
            }
        }
        let mut sources = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = e.obj(src, &epath, kind) {
                sources += 1;
                let rpath = join(&epath, kind);
                let name = e.str_or_empty(r, &rpath, "name");
                if name.is_empty() {
                    e.required(&join(&rpath, "name"), "");
                } else {
                    for msg in names::dns1123_subdomain(&mask_prefix(name)) {
                        e.invalid(&join(&rpath, "name"), name, &msg);
                    }
                }
            }
        }
        if sources == 0 {
            e.invalid(
                &list_path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            );
        } else if sources > 1 {
            e.invalid(
                &list_path,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

/// Upstream checks env source names as name prefixes, which may end in `-`.
fn mask_prefix(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') && name.is_char_boundary(name.len() - 2) {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_owned()
    }
}

fn validate_volume_mounts(
    e: &mut Errs,
    c: &Value,
    cpath: &str,
    volumes: &HashMap<String, &'static str>,
) {
    let list_path = join(cpath, "volumeMounts");
    let privileged =
        peek(c, &["securityContext", "privileged"]).and_then(Value::as_bool) == Some(true);
    let mut mount_points: HashSet<&str> = HashSet::new();
    for (mpath, m) in e.objs(c, cpath, "volumeMounts") {
        let name = e.str_or_empty(m, &mpath, "name");
        if name.is_empty() {
            e.required(&join(&mpath, "name"), "");
        }
        if !volumes.contains_key(name) {
            e.not_found(&join(&mpath, "name"), name);
        }
        let mount_path = e.str_or_empty(m, &mpath, "mountPath");
        if mount_path.is_empty() {
            e.required(&join(&mpath, "mountPath"), "");
        }
        if !mount_points.insert(mount_path) {
            e.invalid(&join(&mpath, "mountPath"), mount_path, "must be unique");
        }
        // Upstream reports sub-path problems at the list's path, not the item's.
        let sub_path = e.str_or_empty(m, &mpath, "subPath");
        if !sub_path.is_empty() {
            validate_local_descending_path(e, sub_path, &join(&list_path, "subPath"));
        }
        let sub_path_expr = e.str_or_empty(m, &mpath, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                e.invalid(
                    &join(&mpath, "subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            validate_local_descending_path(e, sub_path_expr, &join(&list_path, "subPathExpr"));
        }
        if let Some(prop) = e.str(m, &mpath, "mountPropagation") {
            let ppath = join(&list_path, "mountPropagation");
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&prop) {
                e.not_supported(&ppath, prop, MODES);
            }
            if prop == "Bidirectional" && !privileged {
                e.forbidden(
                    &ppath,
                    "Bidirectional mount propagation is available only to privileged containers",
                );
            }
        }
    }
}

/// Lifecycle hooks and probes, which regular and restartable init containers may have.
pub(crate) fn validate_lifecycle_and_probes(
    e: &mut Errs,
    c: &Value,
    cpath: &str,
    grace: Option<i64>,
) {
    if let Some(lifecycle) = e.obj(c, cpath, "lifecycle") {
        let lpath = join(cpath, "lifecycle");
        for hook in ["postStart", "preStop"] {
            if let Some(h) = e.obj(lifecycle, &lpath, hook) {
                validate_handler(e, h, &join(&lpath, hook), false, grace);
            }
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = e.obj(c, cpath, probe_name) else {
            continue;
        };
        let ppath = join(cpath, probe_name);
        validate_handler(e, probe, &ppath, true, grace);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(v) = e.int(probe, &ppath, f) {
                e.nonnegative(&join(&ppath, f), v);
            }
        }
        let probe_grace = e.int(probe, &ppath, "terminationGracePeriodSeconds");
        if let Some(g) = probe_grace
            && g <= 0
        {
            e.invalid(
                &join(&ppath, "terminationGracePeriodSeconds"),
                g,
                "must be greater than 0",
            );
        }
        if probe_name == "readinessProbe" {
            if let Some(g) = probe_grace {
                e.invalid(
                    &join(&ppath, "terminationGracePeriodSeconds"),
                    g,
                    "must not be set for readinessProbes",
                );
            }
        } else {
            let success = e.int(probe, &ppath, "successThreshold").unwrap_or(0);
            if success != 1 {
                e.invalid(&join(&ppath, "successThreshold"), success, "must be 1");
            }
        }
    }
}

/// A probe or lifecycle handler: exactly one action.
fn validate_handler(e: &mut Errs, h: &Value, path: &str, is_probe: bool, grace: Option<i64>) {
    let actions: &[&str] = if is_probe {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    } else {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    };
    let mut found = false;
    for &action in actions {
        let Some(a) = e.obj(h, path, action) else {
            continue;
        };
        let apath = join(path, action);
        if found {
            e.forbidden(&apath, "may not specify more than 1 handler type");
            continue;
        }
        found = true;
        match action {
            "exec" => {
                if e.arr(a, &apath, "command").is_empty() {
                    e.required(&join(&apath, "command"), "");
                }
            }
            "httpGet" => {
                if e.str_or_empty(a, &apath, "path").is_empty() {
                    e.required(&join(&apath, "path"), "");
                }
                validate_port_num_or_name(e, a, &apath, "port");
                let scheme = e.str_or_empty(a, &apath, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    e.not_supported(&join(&apath, "scheme"), scheme, &["HTTP", "HTTPS"]);
                }
                for (hpath, header) in e.objs(a, &apath, "httpHeaders") {
                    let name = e.str_or_empty(header, &hpath, "name");
                    for msg in names::http_header_name(name) {
                        e.invalid(&join(&apath, "httpHeaders"), name, &msg);
                    }
                }
            }
            "tcpSocket" => validate_port_num_or_name(e, a, &apath, "port"),
            "grpc" => {
                let port = e.int(a, &apath, "port").unwrap_or(0);
                for msg in names::port_number(port) {
                    e.invalid(&join(&apath, "port"), port, &msg);
                }
            }
            _ => {
                let seconds = e.int(a, &apath, "seconds").unwrap_or(0);
                if let Some(g) = grace
                    && (seconds < 0 || seconds > g)
                {
                    e.invalid(
                        &apath,
                        seconds,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    );
                }
            }
        }
    }
    if !found {
        e.required(path, "must specify a handler type");
    }
}

/// A port given by number (1-65535) or by name (an IANA service name).
pub(crate) fn validate_port_num_or_name(e: &mut Errs, parent: &Value, path: &str, field: &str) {
    let fpath = join(path, field);
    match e.int_or_str(parent, path, field) {
        Some(IntOrStr::Int(p)) => {
            for msg in names::port_number(p) {
                e.invalid(&fpath, p, &msg);
            }
        }
        Some(IntOrStr::Str(s)) => {
            for msg in names::port_name(s) {
                e.invalid(&fpath, s, &msg);
            }
        }
        None => {
            for msg in names::port_number(0) {
                e.invalid(&fpath, 0, &msg);
            }
        }
    }
}

/// Reads a quantity written as a JSON string or number.
pub(crate) fn quantity_of(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => parse_quantity(&n.to_string()).ok(),
        _ => None,
    }
}

/// Parses the quantity at `path`, reporting one that is malformed or negative.
pub(crate) fn checked_quantity(e: &mut Errs, v: &Value, path: &str) -> Option<Quantity> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            e.wrong_type(path, other, "string");
            return None;
        }
    };
    match parse_quantity(&text) {
        Ok(q) => {
            if q.is_negative() {
                e.invalid(path, q.to_string(), "must be greater than or equal to 0");
            }
            Some(q)
        }
        Err(err) => {
            let msg = match err {
                quantity::QuantityError::Format => quantity::FORMAT_MESSAGE.to_owned(),
                other => other.to_string(),
            };
            e.invalid(path, v, &msg);
            None
        }
    }
}

/// Whether a resource is one of Kubernetes' own (no domain, or a `kubernetes.io` domain).
fn is_native_resource(name: &str) -> bool {
    match name.split_once('/') {
        None => true,
        Some((domain, _)) => domain.contains("kubernetes.io"),
    }
}

/// Whether a resource may be requested below its limit (not hugepages or extended ones).
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// Container `resources`: names, quantities, and requests within limits.
fn validate_resources(e: &mut Errs, r: &Value, rpath: &str) {
    let lim_path = join(rpath, "limits");
    let req_path = join(rpath, "requests");
    let mut limits: HashMap<&str, Quantity> = HashMap::new();
    if let Some(map) = e.map(r, rpath, "limits") {
        for (name, v) in map {
            let path = key(&lim_path, name);
            validate_container_resource_name(e, name, &path);
            if let Some(q) = checked_quantity(e, v, &path) {
                check_integer_resource(e, name, &q, &path);
                limits.insert(name, q);
            }
        }
    }
    if let Some(map) = e.map(r, rpath, "requests") {
        for (name, v) in map {
            let path = key(&req_path, name);
            validate_container_resource_name(e, name, &path);
            let Some(q) = checked_quantity(e, v, &path) else {
                continue;
            };
            check_integer_resource(e, name, &q, &path);
            match limits.get(name.as_str()) {
                Some(limit) if q != *limit && !overcommit_allowed(name) => e.invalid(
                    &req_path,
                    q.to_string(),
                    &format!("must be equal to {name} limit of {limit}"),
                ),
                Some(limit) if q > *limit => e.invalid(
                    &req_path,
                    q.to_string(),
                    &format!("must be less than or equal to {name} limit of {limit}"),
                ),
                Some(_) => {}
                None if !overcommit_allowed(name) => e.required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ),
                None => {}
            }
        }
    }
}

fn check_integer_resource(e: &mut Errs, name: &str, q: &Quantity, path: &str) {
    if !is_native_resource(name) && !q.is_integer() {
        e.invalid(path, q.to_string(), "must be an integer");
    }
}

fn validate_container_resource_name(e: &mut Errs, name: &str, path: &str) {
    let msgs = names::qualified_name(name);
    for msg in &msgs {
        e.invalid(path, name, msg);
    }
    if !msgs.is_empty() {
        return;
    }
    if !name.contains('/')
        && !matches!(name, "cpu" | "memory" | "ephemeral-storage")
        && !name.starts_with("hugepages-")
    {
        e.invalid(path, name, "must be a standard resource for containers");
    }
}

/// A user or group id: 0 to 2147483647.
pub(crate) fn validate_id(e: &mut Errs, parent: &Value, path: &str, field: &str) {
    if let Some(id) = e.int(parent, path, field)
        && !(0..=MAX_INT32).contains(&id)
    {
        e.invalid(
            &join(path, field),
            id,
            &names::inclusive_range(0, MAX_INT32),
        );
    }
}
