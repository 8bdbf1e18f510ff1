//! Validation of API objects, in kube-apiserver's words.
//!
//! [`validate`] checks an object after defaulting, on create and on update; [`validate_update`]
//! adds the rules that compare the new object with the stored one (immutable fields). Both
//! return [`Cause`]s shaped like the `details.causes` of a `Status` with reason `Invalid`: the
//! field path (`spec.template.spec.containers[0].name`), the reason
//! (`FieldValueInvalid`) and the message after the field name (`Invalid value: "Foo_bar": a
//! lowercase RFC 1123 ...`). The server composes the whole error with [`invalid_message`].
//!
//! The rules and their messages follow `k8s.io/kubernetes/pkg/apis/*/validation` and
//! `k8s.io/apimachinery/pkg/util/validation`, so kubectl and client libraries show users the
//! text they already know. Objects are JSON values as stored: a field of the wrong JSON type
//! is reported as an `Invalid` cause (kube-apiserver would refuse it while decoding), never a
//! panic.
//!
//! Layout: `field` holds the cause collector and typed field access, `names` the string
//! formats (DNS names, label keys, ports, IPs), `quantity` and `cron` the two small parsers,
//! `meta` the metadata and label selector rules, `pod` and `container` the pod spec, and one
//! module per API area the per-kind rules (`apps`, `network`, `config`, `cluster`);
//! `update` holds the update-only comparisons.

mod apps;
mod cluster;
mod config;
mod container;
mod field;
mod meta;
mod names;
mod network;
mod pod;
mod quantity;
mod update;

#[cfg(test)]
mod testutil;

use std::fmt;

use serde_json::Value;

pub(crate) use config::encode_base64;
pub(crate) use network::externally_accessible;
pub(crate) use pod::VOLUME_SOURCES;
pub use quantity::{Quantity, QuantityError, QuantityFormat, parse_quantity};

/// One reason an object is invalid, as it appears in `Status.details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// The JSON path of the offending field, e.g. `spec.template.spec.containers[0].name`,
    /// with map keys in brackets (`data[app.conf]`). Empty when the cause is the whole object.
    pub field: String,
    /// What kind of problem this is.
    pub reason: CauseType,
    /// The message without the field name, e.g. `Required value`.
    pub message: String,
}

impl fmt::Display for Cause {
    /// `<field>: <message>`, the form kube-apiserver joins into a `Status` message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The reason of a [`Cause`]; [`CauseType::as_str`] gives the `StatusCause.reason` string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CauseType {
    /// A required field is missing or empty.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// An enumerated field has a value outside its set.
    NotSupported,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value refers to something that does not exist (a volume mount naming no volume).
    NotFound,
    /// A value or the object is too large.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// A field may not be set or changed in this situation.
    Forbidden,
}

impl CauseType {
    /// The `StatusCause.reason` string kube-apiserver uses, e.g. `FieldValueRequired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotFound => "FieldValueNotFound",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Forbidden => "FieldValueForbidden",
        }
    }

    /// The words that open a cause's message, e.g. `Unsupported value`.
    fn label(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Duplicate => "Duplicate value",
            Self::NotFound => "Not found",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
        }
    }
}

/// Checks an object of `(group, kind)` (group `""` for core) after defaulting.
///
/// Kinds without rules of their own get the metadata checks every object gets (name,
/// labels, annotations). Whether the namespace fits the resource's scope is the server's
/// check, not this one.
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut e = field::Errs::default();
    if !obj.is_object() {
        e.invalid("", obj, "must be a JSON object");
        return e.into_causes();
    }
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(&mut e, obj),
        ("", "PodTemplate") => pod::validate_pod_template(&mut e, obj),
        ("", "ReplicationController") => apps::validate_replication_controller(&mut e, obj),
        ("apps", "Deployment") => apps::validate_deployment(&mut e, obj),
        ("apps", "ReplicaSet") => apps::validate_replica_set(&mut e, obj),
        ("apps", "StatefulSet") => apps::validate_stateful_set(&mut e, obj),
        ("apps", "DaemonSet") => apps::validate_daemon_set(&mut e, obj),
        ("batch", "Job") => apps::validate_job(&mut e, obj),
        ("batch", "CronJob") => apps::validate_cron_job(&mut e, obj),
        ("", "Service") => network::validate_service(&mut e, obj),
        ("", "Endpoints") => network::validate_endpoints(&mut e, obj),
        ("discovery.k8s.io", "EndpointSlice") => network::validate_endpoint_slice(&mut e, obj),
        ("networking.k8s.io", "Ingress") => network::validate_ingress(&mut e, obj),
        ("networking.k8s.io", "NetworkPolicy") => network::validate_network_policy(&mut e, obj),
        ("", "ConfigMap") => config::validate_config_map(&mut e, obj),
        ("", "Secret") => config::validate_secret(&mut e, obj),
        ("", "Namespace") => cluster::validate_namespace(&mut e, obj),
        ("", "Node") => cluster::validate_node(&mut e, obj),
        ("", "PersistentVolume") => cluster::validate_persistent_volume(&mut e, obj),
        ("", "PersistentVolumeClaim") => cluster::validate_persistent_volume_claim(&mut e, obj),
        ("", "ResourceQuota") => cluster::validate_resource_quota(&mut e, obj),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            cluster::validate_role(&mut e, obj, kind == "Role");
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            cluster::validate_role_binding(&mut e, obj, kind == "RoleBinding");
        }
        ("policy", "PodDisruptionBudget") => cluster::validate_pod_disruption_budget(&mut e, obj),
        ("autoscaling", "HorizontalPodAutoscaler") => cluster::validate_hpa(&mut e, obj),
        ("coordination.k8s.io", "Lease") => cluster::validate_lease(&mut e, obj),
        // Review objects are never stored and carry no name; their specs are the
        // authorizer's concern.
        ("authentication.k8s.io" | "authorization.k8s.io", _) => {}
        _ => meta::validate_object_meta(&mut e, obj, meta::NameRule::Subdomain),
    }
    e.into_causes()
}

/// Checks an update of an object of `(group, kind)` from `old` to `new`: the fields that may
/// not change once set. Call [`validate`] on `new` as well; this adds only the comparisons.
///
/// The server is expected to carry server-owned values (`metadata.uid`,
/// `metadata.creationTimestamp`, a Service's allocated `clusterIP`) over from `old` when the
/// client left them out; an absent value here is not reported as a change.
pub fn validate_update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut e = field::Errs::default();
    update::validate_update(&mut e, group, kind, old, new);
    e.into_causes()
}

/// The `Status.message` kube-apiserver writes for an `Invalid` error:
/// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: ...`, with several
/// causes in brackets, separated by `, `, repeated messages dropped.
pub fn invalid_message(group: &str, kind: &str, name: &str, causes: &[Cause]) -> String {
    let qualified = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let mut seen: Vec<String> = Vec::new();
    for cause in causes {
        let text = cause.to_string();
        if !seen.contains(&text) {
            seen.push(text);
        }
    }
    let name = field::go_quote(name);
    match seen.len() {
        0 => format!("{qualified} {name} is invalid"),
        1 => format!("{qualified} {name} is invalid: {}", seen[0]),
        _ => format!("{qualified} {name} is invalid: [{}]", seen.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cause_types_use_the_status_cause_strings() {
        assert_eq!(CauseType::Required.as_str(), "FieldValueRequired");
        assert_eq!(CauseType::TooMany.as_str(), "FieldValueTooMany");
        assert_eq!(CauseType::Forbidden.as_str(), "FieldValueForbidden");
    }

    #[test]
    fn invalid_message_joins_causes_like_kube_apiserver() {
        let one = vec![Cause {
            field: "metadata.name".into(),
            reason: CauseType::Required,
            message: "Required value".into(),
        }];
        assert_eq!(
            invalid_message("apps", "Deployment", "web", &one),
            r#"Deployment.apps "web" is invalid: metadata.name: Required value"#
        );
        let mut two = one.clone();
        two.push(one[0].clone());
        two.push(Cause {
            field: "spec".into(),
            reason: CauseType::Forbidden,
            message: "Forbidden: no".into(),
        });
        assert_eq!(
            invalid_message("", "Pod", "p", &two),
            r#"Pod "p" is invalid: [metadata.name: Required value, spec: Forbidden: no]"#
        );
    }

    #[test]
    fn non_objects_are_invalid_not_a_panic() {
        for v in [json!(null), json!(3), json!("x"), json!([1])] {
            let causes = validate("apps", "Deployment", &v);
            assert_eq!(causes.len(), 1);
            assert_eq!(causes[0].reason, CauseType::Invalid);
        }
    }

    #[test]
    fn names_are_reported_in_kube_apiserver_words() {
        let obj = json!({"metadata": {"name": "Foo_bar"}, "data": {}});
        let causes = validate("", "ConfigMap", &obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(causes[0].reason.as_str(), "FieldValueInvalid");
        assert_eq!(
            causes[0].message,
            r#"Invalid value: "Foo_bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        );
        assert_eq!(
            invalid_message("", "ConfigMap", "Foo_bar", &causes),
            format!(
                "ConfigMap \"Foo_bar\" is invalid: metadata.name: {}",
                causes[0].message
            )
        );
    }

    #[test]
    fn unknown_kinds_get_metadata_checks() {
        let obj = json!({"metadata": {"name": "Bad_Name"}});
        let causes = validate("example.com", "Widget", &obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata.name");
        let ok = json!({"metadata": {"name": "good.name"}});
        assert!(validate("example.com", "Widget", &ok).is_empty());
    }

    /// Realistic objects of every kind with rules, for the robustness test.
    fn samples() -> Vec<(&'static str, &'static str, Value)> {
        let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": {
            "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}},
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                "livenessProbe": {"httpGet": {"port": 80}}, "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}],
            "volumes": [{"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "p"}]}}],
            "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"a": "b"},
            "dnsConfig": {"nameservers": ["1.1.1.1"]}}});
        let selector = json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]});
        vec![
            (
                "",
                "Pod",
                json!({"metadata": {"name": "p", "labels": {"a": "b"}, "annotations": {"x": "y"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u", "controller": true}]},
                "spec": template["spec"].clone()}),
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "d"}, "spec": {"selector": selector.clone(), "template": template.clone(),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}}}}),
            ),
            (
                "apps",
                "StatefulSet",
                json!({"metadata": {"name": "s"}, "spec": {"selector": selector.clone(), "template": template.clone(),
                "volumeClaimTemplates": [{"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": 1}}}}),
            ),
            (
                "apps",
                "DaemonSet",
                json!({"metadata": {"name": "d"}, "spec": {"selector": selector.clone(), "template": template.clone()}}),
            ),
            (
                "",
                "ReplicationController",
                json!({"metadata": {"name": "r"}, "spec": {"selector": {"app": "a"}, "template": template.clone()}}),
            ),
            (
                "batch",
                "Job",
                json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"template": template.clone(), "completionMode": "Indexed", "completions": 2}}),
            ),
            (
                "batch",
                "CronJob",
                json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "timeZone": "UTC",
                "jobTemplate": {"spec": {"template": template.clone()}}}}),
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer", "selector": {"a": "b"},
                "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4"], "externalIPs": ["1.2.3.4"],
                "sessionAffinity": "ClientIP", "ports": [{"name": "p", "port": 80, "targetPort": "http", "nodePort": 30000}],
                "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
            ),
            (
                "",
                "Endpoints",
                json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1", "hostname": "h"}], "ports": [{"port": 1}]}]}),
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"metadata": {"name": "e"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "hostname": "h", "nodeName": "n"}], "ports": [{"name": "p", "port": 1}]}),
            ),
            (
                "networking.k8s.io",
                "Ingress",
                json!({"metadata": {"name": "i"}, "spec": {"tls": [{"hosts": ["a.b"]}],
                "defaultBackend": {"resource": {"kind": "K", "name": "n"}},
                "rules": [{"host": "*.a.b", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}}),
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                json!({"metadata": {"name": "n"}, "spec": {"podSelector": selector.clone(),
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 1, "endPort": 2}]}],
                "policyTypes": ["Ingress"]}}),
            ),
            (
                "",
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"a": "b"}, "binaryData": {"b": "YQ=="}}),
            ),
            (
                "",
                "Secret",
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "YQ=="},
                "stringData": {"x": "y"}}),
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}}),
            ),
            (
                "",
                "Node",
                json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {"capacity": {"cpu": "1"}}}),
            ),
            (
                "",
                "PersistentVolume",
                json!({"metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
                "local": {"path": "/x"}, "nodeAffinity": {}}}),
            ),
            (
                "",
                "PersistentVolumeClaim",
                json!({"metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}, "selector": selector.clone()}, "status": {"phase": "Bound"}}),
            ),
            (
                "",
                "ResourceQuota",
                json!({"metadata": {"name": "q"}, "spec": {"hard": {"cpu": "1"}}}),
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                json!({"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
                "aggregationRule": {"clusterRoleSelectors": [selector.clone()]}}),
            ),
            (
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "n"}]}),
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%", "selector": selector}}),
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 3,
                "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "metrics": [{"type": "Pods", "pods": {"metric": {"name": "m"}, "target": {"type": "AverageValue", "averageValue": "1"}}}],
                "behavior": {"scaleUp": {}}}}),
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 1, "preferredHolder": "x"}}),
            ),
            (
                "",
                "PodTemplate",
                json!({"metadata": {"name": "t"}, "template": template}),
            ),
        ]
    }

    /// Every field of every sample, replaced by values of every JSON type.
    fn variants(v: &Value) -> Vec<Value> {
        let replacements = [
            json!(null),
            json!(-1),
            json!(1.5),
            json!(""),
            json!("x%"),
            json!([]),
            json!({}),
            json!(true),
            json!([null, 1]),
        ];
        let mut out = Vec::new();
        let mut paths = Vec::new();
        collect_pointers(v, String::new(), &mut paths);
        for p in paths {
            for r in &replacements {
                let mut copy = v.clone();
                if let Some(slot) = copy.pointer_mut(&p) {
                    *slot = r.clone();
                    out.push(copy);
                }
            }
        }
        out
    }

    fn collect_pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    collect_pointers(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    collect_pointers(c, p, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn no_input_shape_panics() {
        for (group, kind, sample) in samples() {
            let mut base = sample.clone();
            crate::defaults::apply_defaults(group, kind, &mut base);
            for mut v in variants(&sample) {
                crate::defaults::apply_defaults(group, kind, &mut v);
                let _ = validate(group, kind, &v);
                let _ = validate_update(group, kind, &base, &v);
                let _ = validate_update(group, kind, &v, &base);
            }
        }
    }

    #[test]
    fn review_kinds_need_no_name() {
        let obj = json!({"spec": {"resourceAttributes": {"verb": "get"}}});
        assert!(validate("authorization.k8s.io", "SelfSubjectAccessReview", &obj).is_empty());
    }
}
