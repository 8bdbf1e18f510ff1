//! Decoding a body against the kind's k8s-openapi type: wrong types become a 400 naming the
//! field, and fields the type does not have are reported for `fieldValidation`.
//!
//! Objects are stored as the JSON the client sent (after defaulting), so nothing is lost in a
//! round trip through a Rust type; the typed decode only checks. Unknown fields are found by
//! decoding into the type (which ignores them), encoding again and looking for input keys that
//! did not come back.

use k8s_openapi::{
    api::{
        apps::v1 as apps, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2,
        batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac, storage::v1 as storage,
    },
    serde::de::DeserializeOwned,
};
use serde::Serialize;
use serde_json::Value;

/// Decode `obj` as the type of `(group, version, kind)` and return the paths of the fields
/// the type does not know (`spec.replicaz`), or the decoding error. Kinds without a type here
/// are accepted as they are.
pub fn unknown_fields(
    group: &str,
    version: &str,
    kind: &str,
    obj: &Value,
) -> Result<Vec<String>, String> {
    macro_rules! kinds {
        ($( ($g:literal, $v:literal, $k:literal) => $t:ty ),* $(,)?) => {
            match (group, version, kind) {
                $( ($g, $v, $k) => check::<$t>(obj), )*
                _ => Ok(Vec::new()),
            }
        };
    }
    kinds! {
        ("", "v1", "Pod") => core::Pod,
        ("", "v1", "Service") => core::Service,
        ("", "v1", "Endpoints") => core::Endpoints,
        ("", "v1", "Namespace") => core::Namespace,
        ("", "v1", "Node") => core::Node,
        ("", "v1", "ConfigMap") => core::ConfigMap,
        ("", "v1", "Secret") => core::Secret,
        ("", "v1", "ServiceAccount") => core::ServiceAccount,
        ("", "v1", "PersistentVolume") => core::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => core::PersistentVolumeClaim,
        ("", "v1", "Event") => core::Event,
        ("", "v1", "ReplicationController") => core::ReplicationController,
        ("", "v1", "LimitRange") => core::LimitRange,
        ("", "v1", "ResourceQuota") => core::ResourceQuota,
        ("", "v1", "PodTemplate") => core::PodTemplate,
        ("", "v1", "Binding") => core::Binding,
        ("apps", "v1", "Deployment") => apps::Deployment,
        ("apps", "v1", "ReplicaSet") => apps::ReplicaSet,
        ("apps", "v1", "StatefulSet") => apps::StatefulSet,
        ("apps", "v1", "DaemonSet") => apps::DaemonSet,
        ("apps", "v1", "ControllerRevision") => apps::ControllerRevision,
        ("batch", "v1", "Job") => batch::Job,
        ("batch", "v1", "CronJob") => batch::CronJob,
        ("networking.k8s.io", "v1", "NetworkPolicy") => networking::NetworkPolicy,
        ("networking.k8s.io", "v1", "Ingress") => networking::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => networking::IngressClass,
        ("discovery.k8s.io", "v1", "EndpointSlice") => discovery::EndpointSlice,
        ("rbac.authorization.k8s.io", "v1", "Role") => rbac::Role,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::RoleBinding,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::ClusterRoleBinding,
        ("policy", "v1", "PodDisruptionBudget") => policy::PodDisruptionBudget,
        ("policy", "v1", "Eviction") => policy::Eviction,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => autoscaling1::HorizontalPodAutoscaler,
        ("autoscaling", "v1", "Scale") => autoscaling1::Scale,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => autoscaling2::HorizontalPodAutoscaler,
        ("coordination.k8s.io", "v1", "Lease") => coordination::Lease,
        ("storage.k8s.io", "v1", "StorageClass") => storage::StorageClass,
        ("storage.k8s.io", "v1", "VolumeAttachment") => storage::VolumeAttachment,
        ("storage.k8s.io", "v1", "CSIDriver") => storage::CSIDriver,
        ("storage.k8s.io", "v1", "CSINode") => storage::CSINode,
        ("events.k8s.io", "v1", "Event") => events::Event,
    }
}

fn check<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Vec<String>, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    diff("", obj, &back, &mut unknown);
    Ok(unknown)
}

/// Keys of `sent` (with a non-null value) that `kept` lacks, as dotted paths.
fn diff(path: &str, sent: &Value, kept: &Value, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(sent), Value::Object(kept)) => {
            for (key, value) in sent {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    Some(k) => diff(&child, value, k, out),
                    // Free-form maps (labels, data, …) come back whole, so a missing key with
                    // a value is one the type does not have.
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(sent), Value::Array(kept)) => {
            for (i, (s, k)) in sent.iter().zip(kept).enumerate() {
                diff(&format!("{path}[{i}]"), s, k, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_named_by_path() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicaz": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolice": "x"}]}
                }
            }
        });
        let unknown = unknown_fields("apps", "v1", "Deployment", &deployment).unwrap();
        assert_eq!(
            unknown,
            vec![
                "spec.replicaz",
                "spec.template.spec.containers[0].imagePullPolice"
            ]
        );
    }

    #[test]
    fn wrong_types_are_decoding_errors() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": "not a list"}});
        let error = unknown_fields("", "v1", "Pod", &pod).unwrap_err();
        assert!(error.contains("invalid type"), "{error}");
    }

    #[test]
    fn known_fields_and_nulls_pass() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": null}, "data": {"any-key": "v"}});
        assert!(
            unknown_fields("", "v1", "ConfigMap", &cm)
                .unwrap()
                .is_empty()
        );
    }
}
