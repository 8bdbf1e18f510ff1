//! The three patch formats of `PATCH` requests: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386) and Kubernetes strategic merge patch.
//!
//! Every function takes the current object and the patch by reference and returns a new object,
//! so a patch that fails halfway leaves nothing half-applied.
//!
//! Strategic merge patch is what `kubectl apply` (client-side), `kubectl patch`, `kubectl
//! label/annotate` and the Python client send. It follows `k8s.io/apimachinery`'s
//! `strategicpatch` package as kube-apiserver runs it (`MergeParallelList` and
//! `IgnoreUnmatchedNulls` on): the merge strategy of each field comes from the `patchStrategy`
//! and `patchMergeKey` tags of the `k8s.io/api` types, kept here as a table per type (`Type`)
//! reached by walking from the kind's root type.

use serde_json::{Map, Value};

/// Why a patch could not be applied. The messages name the operation or the place in the
/// object where it failed, for the message of a 422 Invalid or 400 BadRequest `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body of a JSON patch is not a list of RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    /// One JSON patch operation failed (a `test` that did not match, a missing path, …).
    #[error("JSON patch operation {index} ({op} {path}) failed: {reason}")]
    JsonPatchFailed {
        /// The position of the operation in the patch, from 0.
        index: usize,
        /// The operation (`add`, `remove`, `replace`, `move`, `copy`, `test`).
        op: &'static str,
        /// The operation's `path`.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A merge or strategic merge patch whose top level is not an object.
    #[error("{patch_type} patch must be a JSON object, got {got}")]
    PatchNotAnObject {
        /// `merge` or `strategic merge`.
        patch_type: &'static str,
        /// The JSON type of the patch.
        got: &'static str,
    },
    /// The object being patched is not a JSON object.
    #[error("the object to patch must be a JSON object, got {got}")]
    DocumentNotAnObject {
        /// The JSON type of the document.
        got: &'static str,
    },
    /// A strategic merge patch that cannot be applied at some place in the object.
    #[error("strategic merge patch failed at {path}: {reason}")]
    Strategic {
        /// The place in the object, as `spec.template.spec.containers[name=web].env`.
        path: String,
        /// What is wrong there.
        reason: String,
    },
}

/// Applies an RFC 6902 JSON patch (a list of operations) to a copy of the document.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut patched = doc.clone();
    // Working on a copy makes the patch all-or-nothing without the crate's undo log.
    json_patch::patch_unsafe(&mut patched, &operations).map_err(|e| {
        let op = operations
            .0
            .get(e.operation)
            .map_or("operation", |op| match op {
                json_patch::PatchOperation::Add(_) => "add",
                json_patch::PatchOperation::Remove(_) => "remove",
                json_patch::PatchOperation::Replace(_) => "replace",
                json_patch::PatchOperation::Move(_) => "move",
                json_patch::PatchOperation::Copy(_) => "copy",
                json_patch::PatchOperation::Test(_) => "test",
            });
        PatchError::JsonPatchFailed {
            index: e.operation,
            op,
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        }
    })?;
    Ok(patched)
}

/// Applies an RFC 7386 JSON merge patch: `null` deletes, objects merge recursively, anything
/// else replaces. Kubernetes objects are objects, so the patch must be one too.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::PatchNotAnObject {
            patch_type: "merge",
            got: json_type(patch),
        });
    }
    let mut patched = doc.clone();
    json_patch::merge(&mut patched, patch);
    Ok(patched)
}

/// Applies a Kubernetes strategic merge patch to an object of the given Kind.
///
/// - Maps merge recursively and `null` deletes a key (a `null` for an absent key is ignored).
/// - Lists with the `merge` strategy merge by their merge key (containers by `name`, ports by
///   `containerPort`, …); lists of scalars with it (`metadata.finalizers`) merge as sets; all
///   other lists are replaced.
/// - `$patch: replace` replaces a map, or (as an item) the whole list; `$patch: delete` as a
///   list item deletes the item with that key, on a map it leaves an empty map (as upstream);
///   `$patch: merge` on a map is the default and accepted (upstream rejects it).
/// - `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` behave as
///   in kube-apiserver.
///
/// Order of merged lists is kube-apiserver's: items named in the patch keep the patch's order,
/// the others keep theirs, and the two are interleaved by their positions in the current list.
/// So without `$setElementOrder` a new item lands before the existing items that follow the
/// last one the patch names (with a single new item, at the front), exactly as upstream.
///
/// Unknown kinds (custom resources) have no strategies: maps merge and lists are replaced,
/// which is JSON merge patch plus the directives.
pub fn strategic_merge_patch(doc: &Value, patch: &Value, kind: &str) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotAnObject {
            patch_type: "strategic merge",
            got: json_type(patch),
        });
    };
    let Value::Object(doc) = doc else {
        return Err(PatchError::DocumentNotAnObject {
            got: json_type(doc),
        });
    };
    if patch.get(PATCH).and_then(Value::as_str) == Some(DELETE) {
        return Err(strategic(
            "",
            "$patch: delete cannot delete the whole object",
        ));
    }
    let merged = merge_map(doc.clone(), patch.clone(), Type::root(kind), "")?;
    Ok(Value::Object(merged))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// The schema: patch strategies and merge keys of the built-in types.

/// A type of `k8s.io/api` that has fields with a patch strategy, or leads to one.
///
/// Root types stand for kinds; the others are embedded. Where several Go types have the same
/// strategies at the same field names they share one entry (`WorkloadSpec` is the spec of every
/// controller with a pod template, `ConditionsStatus` every status whose only strategic field is
/// `conditions` merged by `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    /// A built-in kind whose only strategic fields are in its metadata.
    Plain,
    Pod,
    PodTemplate,
    /// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController.
    Workload,
    CronJob,
    Service,
    Node,
    ServiceAccount,
    ComponentStatus,
    /// Kinds whose status has `conditions` merged by `type` (Namespace, PersistentVolumeClaim,
    /// HorizontalPodAutoscaler, FlowSchema, …).
    WithConditions,
    PodDisruptionBudget,
    WebhookConfiguration,
    AdmissionPolicy,
    CsiNode,
    ResourceClaim,
    // Embedded types.
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    WorkloadSpec,
    ConditionsStatus,
    CronJobSpec,
    JobTemplateSpec,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
    PodDisruptionBudgetSpec,
    Webhook,
    AdmissionPolicySpec,
    CsiNodeSpec,
    ResourceClaimStatus,
}

/// How one field is patched.
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    /// The type of the value (for lists, of each item); `None` when nothing below is strategic.
    ty: Option<Type>,
    /// `patchStrategy: merge` on a list: merged by `key`, or as a set for scalars.
    merge: bool,
    /// `patchMergeKey` of a merged list of objects.
    key: Option<&'static str>,
    /// `patchStrategy: replace` on a map: the patch's map replaces the current one.
    replace: bool,
}

/// A field holding a value of a type with strategic fields.
fn of(ty: Type) -> Field {
    Field {
        ty: Some(ty),
        ..Field::default()
    }
}

/// A list merged by `key`, its items of type `ty` (if they have strategic fields).
fn keyed(key: &'static str, ty: Option<Type>) -> Field {
    Field {
        ty,
        merge: true,
        key: Some(key),
        replace: false,
    }
}

/// A list of scalars merged as a set.
fn set() -> Field {
    Field {
        merge: true,
        ..Field::default()
    }
}

impl Type {
    /// The root type of a kind; `None` for kinds not built in.
    fn root(kind: &str) -> Option<Type> {
        Some(match kind {
            "Pod" => Type::Pod,
            "PodTemplate" => Type::PodTemplate,
            "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "ReplicationController" => Type::Workload,
            "CronJob" => Type::CronJob,
            "Service" => Type::Service,
            "Node" => Type::Node,
            "ServiceAccount" => Type::ServiceAccount,
            "ComponentStatus" => Type::ComponentStatus,
            "Namespace"
            | "PersistentVolumeClaim"
            | "HorizontalPodAutoscaler"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "ServiceCIDR"
            | "StorageVersionMigration"
            | "DeviceTaintRule"
            | "PodCertificateRequest" => Type::WithConditions,
            "PodDisruptionBudget" => Type::PodDisruptionBudget,
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                Type::WebhookConfiguration
            }
            "ValidatingAdmissionPolicy" | "MutatingAdmissionPolicy" => Type::AdmissionPolicy,
            "CSINode" => Type::CsiNode,
            "ResourceClaim" => Type::ResourceClaim,
            "ConfigMap"
            | "Secret"
            | "Event"
            | "Endpoints"
            | "EndpointSlice"
            | "LimitRange"
            | "ResourceQuota"
            | "PersistentVolume"
            | "Binding"
            | "Role"
            | "RoleBinding"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "Ingress"
            | "IngressClass"
            | "NetworkPolicy"
            | "Lease"
            | "StorageClass"
            | "CSIDriver"
            | "CSIStorageCapacity"
            | "VolumeAttachment"
            | "PriorityClass"
            | "RuntimeClass"
            | "CertificateSigningRequest"
            | "ControllerRevision"
            | "CustomResourceDefinition"
            | "APIService"
            | "IPAddress"
            | "ValidatingAdmissionPolicyBinding"
            | "MutatingAdmissionPolicyBinding"
            | "ResourceClaimTemplate"
            | "DeviceClass"
            | "ResourceSlice"
            | "Scale" => Type::Plain,
            _ => return None,
        })
    }

    /// Whether this type is a kind (so it has `metadata`).
    fn is_root(self) -> bool {
        matches!(
            self,
            Type::Plain
                | Type::Pod
                | Type::PodTemplate
                | Type::Workload
                | Type::CronJob
                | Type::Service
                | Type::Node
                | Type::ServiceAccount
                | Type::ComponentStatus
                | Type::WithConditions
                | Type::PodDisruptionBudget
                | Type::WebhookConfiguration
                | Type::AdmissionPolicy
                | Type::CsiNode
                | Type::ResourceClaim
        )
    }

    /// The patch metadata of a field of this type, from the `patchStrategy` and
    /// `patchMergeKey` tags in `k8s.io/api` (fields without tags merge maps and replace lists).
    fn field(self, name: &str) -> Field {
        use Type as T;
        match (self, name) {
            (t, "metadata") if t.is_root() => of(T::ObjectMeta),
            (T::ObjectMeta, "finalizers") => set(),
            (T::ObjectMeta, "ownerReferences") => keyed("uid", None),

            (T::Pod, "spec") => of(T::PodSpec),
            (T::Pod, "status") => of(T::PodStatus),
            (T::PodTemplate, "template") => of(T::PodTemplateSpec),
            (T::PodTemplateSpec | T::JobTemplateSpec, "metadata") => of(T::ObjectMeta),
            (T::PodTemplateSpec, "spec") => of(T::PodSpec),
            (T::Workload, "spec") => of(T::WorkloadSpec),
            (T::WorkloadSpec, "template") => of(T::PodTemplateSpec),
            (T::CronJob, "spec") => of(T::CronJobSpec),
            (T::CronJobSpec, "jobTemplate") => of(T::JobTemplateSpec),
            (T::JobTemplateSpec, "spec") => of(T::WorkloadSpec),
            (T::Workload | T::Service | T::WithConditions | T::PodDisruptionBudget, "status") => {
                of(T::ConditionsStatus)
            }
            (
                T::ConditionsStatus | T::NodeStatus | T::PodStatus | T::ComponentStatus,
                "conditions",
            ) => keyed("type", None),

            (T::PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
                keyed("name", Some(T::Container))
            }
            (T::PodSpec, "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims") => {
                keyed("name", None)
            }
            (T::PodSpec, "hostAliases") => keyed("ip", None),
            (T::PodSpec, "topologySpreadConstraints") => keyed("topologyKey", None),
            (T::Container, "ports") => keyed("containerPort", None),
            (T::Container, "env") => keyed("name", None),
            (T::Container, "volumeMounts") => keyed("mountPath", None),
            (T::Container, "volumeDevices") => keyed("devicePath", None),
            (T::PodStatus, "hostIPs" | "podIPs") => keyed("ip", None),
            (T::PodStatus, "resourceClaimStatuses") => keyed("name", None),

            (T::Service, "spec") => of(T::ServiceSpec),
            (T::ServiceSpec, "ports") => keyed("port", None),
            (T::Node, "spec") => of(T::NodeSpec),
            (T::Node, "status") => of(T::NodeStatus),
            (T::NodeSpec, "podCIDRs") => set(),
            (T::NodeStatus, "addresses") => keyed("type", None),
            (T::ServiceAccount, "secrets") => keyed("name", None),

            (T::PodDisruptionBudget, "spec") => of(T::PodDisruptionBudgetSpec),
            (T::PodDisruptionBudgetSpec, "selector") => Field {
                replace: true,
                ..Field::default()
            },
            (T::WebhookConfiguration, "webhooks") => keyed("name", Some(T::Webhook)),
            (T::Webhook, "matchConditions") => keyed("name", None),
            (T::AdmissionPolicy, "spec") => of(T::AdmissionPolicySpec),
            (T::AdmissionPolicySpec, "matchConditions" | "variables") => keyed("name", None),
            (T::CsiNode, "spec") => of(T::CsiNodeSpec),
            (T::CsiNodeSpec, "drivers") => keyed("name", None),
            (T::ResourceClaim, "status") => of(T::ResourceClaimStatus),
            (T::ResourceClaimStatus, "reservedFor") => keyed("uid", None),
            _ => Field::default(),
        }
    }
}

/// The metadata of `name` under a type that may be unknown.
fn field_of(ty: Option<Type>, name: &str) -> Field {
    ty.map(|t| t.field(name)).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The merge.

const PATCH: &str = "$patch";
const REPLACE: &str = "replace";
const DELETE: &str = "delete";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

fn strategic(path: &str, reason: impl Into<String>) -> PatchError {
    PatchError::Strategic {
        path: if path.is_empty() {
            "the object root".to_owned()
        } else {
            path.to_owned()
        },
        reason: reason.into(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of a list item, named by its merge key when it has one.
fn item_path(path: &str, key: Option<&str>, item: &Value, index: usize) -> String {
    match key.and_then(|k| item.get(k).map(|v| (k, v))) {
        Some((k, Value::String(v))) => format!("{path}[{k}={v}]"),
        Some((k, v)) => format!("{path}[{k}={v}]"),
        None => format!("{path}[{index}]"),
    }
}

/// Equality as Go compares decoded JSON: all numbers are floats, so `80` and `80.0` are equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Whether two values have the same JSON type (the type switch of the upstream merge).
fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The part of the patch that is taken as it is (a new key, a replaced list): directives are
/// dropped, so they never reach a stored object, and so are `null`s, which have nothing to
/// delete there. A map that asks for its own deletion disappears (`None`).
fn clean(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.get(PATCH).and_then(Value::as_str) == Some(DELETE) {
                return None;
            }
            let cleaned = map
                .into_iter()
                .filter(|(k, v)| !v.is_null() && !is_directive(k))
                .filter_map(|(k, v)| Some((k, clean(v)?)))
                .collect();
            Some(Value::Object(cleaned))
        }
        Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(clean).collect())),
        other => Some(other),
    }
}

/// Removes a key without moving the others (`Map::remove` swaps under `preserve_order`).
fn delete_key(map: &mut Map<String, Value>, key: &str) {
    map.retain(|k, _| k != key);
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The list name of a `$setElementOrder/<name>` or `$deleteFromPrimitiveList/<name>` key.
fn directive_target<'a>(key: &'a str, prefix: &str, path: &str) -> Result<&'a str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| {
            strategic(
                path,
                format!("malformed directive `{key}`: expected `{prefix}/<field>`"),
            )
        })
}

/// Merges a patch map into the current map (`mergeMap` upstream).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<Type>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(PATCH) {
        match directive.as_str() {
            Some(REPLACE) => {
                return match clean(Value::Object(patch)) {
                    Some(Value::Object(map)) => Ok(map),
                    _ => Ok(Map::new()),
                };
            }
            Some(DELETE) => return Ok(Map::new()),
            // The default; upstream rejects it, but it asks for nothing else.
            Some(MERGE) => {}
            _ => {
                return Err(strategic(
                    path,
                    format!("unknown $patch directive {directive} in a map"),
                ));
            }
        }
    }
    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_element_orders(&mut original, &mut patch, ty, path)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (
                directive_target(&key, DELETE_FROM_PRIMITIVE_LIST, path)?.to_owned(),
                true,
            )
        } else {
            (key, false)
        };
        if patch_value.is_null() {
            delete_key(&mut original, &key);
            continue;
        }
        let Some(current) = original.get_mut(&key) else {
            // Nothing to merge with: take the patch (a deletion list has nothing to delete).
            if !is_delete_list && let Some(value) = clean(patch_value) {
                original.insert(key, value);
            }
            continue;
        };
        if !same_type(current, &patch_value) {
            // A patch that changes the type replaces the value, as upstream.
            if !is_delete_list {
                match clean(patch_value) {
                    Some(value) => *current = value,
                    None => delete_key(&mut original, &key),
                }
            }
            continue;
        }
        let field_path = child(path, &key);
        let meta = field_of(ty, &key);
        *current =
            match (std::mem::take(current), patch_value) {
                (Value::Object(existing), Value::Object(patch_map)) => {
                    if meta.replace {
                        clean(Value::Object(patch_map)).unwrap_or_else(|| Value::Object(Map::new()))
                    } else {
                        Value::Object(merge_map(existing, patch_map, meta.ty, &field_path)?)
                    }
                }
                (Value::Array(existing), Value::Array(patch_list)) => Value::Array(
                    merge_list_field(existing, patch_list, meta, is_delete_list, &field_path)?,
                ),
                (_, scalar) => scalar,
            };
    }
    Ok(original)
}

/// `$retainKeys: [...]`: drops the current keys not listed; every key the patch sets must be
/// listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(strategic(path, "$retainKeys must be a list of field names"));
    };
    let retained = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        {
            continue;
        }
        if !retained(key) {
            return Err(strategic(
                path,
                format!("field `{key}` is set by the patch but not listed in $retainKeys"),
            ));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Processes every `$setElementOrder/<list>` of a patch map: merges the list (if the patch has
/// it) and puts the result in the order given (`mergePatchIntoOriginal` upstream).
fn apply_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<Type>,
    path: &str,
) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let name = directive_target(&order_key, SET_ELEMENT_ORDER, path)?.to_owned();
        let list_path = child(path, &name);
        let order = match patch.remove(&order_key) {
            Some(Value::Array(order)) => order,
            _ => return Err(strategic(&list_path, format!("{order_key} must be a list"))),
        };
        let current = match original.get(&name) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(_) => {
                return Err(strategic(
                    &list_path,
                    format!("{order_key} names a field that is not a list"),
                ));
            }
        };
        let patch_list = match patch.remove(&name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => {
                return Err(strategic(
                    &list_path,
                    format!("{order_key} goes with a value that is not a list"),
                ));
            }
        };
        let meta = field_of(ty, &name);
        let patch_items = patch_list.as_deref().unwrap_or_default();
        // Objects without a merge key cannot be matched to the order list (upstream compares
        // them as Go maps, which panics); such a list is replaced anyway.
        if meta.key.is_some() || !patch_items.iter().any(Value::is_object) {
            validate_order(patch_items, &order, meta.key, &list_path)?;
        }

        let merged = match (current.clone(), patch_list.clone()) {
            (Some(current), None) => current,
            (None, Some(list)) => match clean(Value::Array(list)) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            (Some(current), Some(list)) => {
                merge_list_field(current, list, meta, false, &list_path)?
            }
            (None, None) => continue,
        };
        let current = current.unwrap_or_default();
        let patch_list = patch_list.unwrap_or_default();
        let ordered = match element_kind(&current, &patch_list, &list_path)? {
            // Both empty: nothing to order.
            None => merged,
            // A list of objects with no merge key cannot be ordered by key; it was replaced,
            // and stays in the patch's order.
            Some(Kind::Object) if meta.key.is_none() => merged,
            Some(kind) => {
                let key = if kind == Kind::Object { meta.key } else { None };
                let (named, rest): (Vec<Value>, Vec<Value>) = merged
                    .into_iter()
                    .partition(|item| position(&order, item, key).is_some());
                if let Some(key) = key {
                    require_keys(&named, key, &list_path)?;
                    require_keys(&order, key, &list_path)?;
                }
                interleave(
                    sort_by(named, &order, key),
                    sort_by(rest, &current, key),
                    &current,
                    key,
                )
            }
        };
        original.insert(name, Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the items of the patch list appear in the order list in the same relative
/// order (`validatePatchWithSetOrderList` upstream); deletions are not ordered.
fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let mut order_index = 0;
    for item in patch_list {
        if let Value::Object(map) = item
            && map.contains_key(PATCH)
        {
            continue;
        }
        let wanted = match key {
            Some(key) => Some(merge_key(item, key, path)?),
            None => None,
        };
        loop {
            let Some(entry) = order.get(order_index) else {
                return Err(strategic(
                    path,
                    format!(
                        "the order of the patch list does not match its {SET_ELEMENT_ORDER} list"
                    ),
                ));
            };
            order_index += 1;
            let matched = match (wanted, key) {
                (Some(wanted), Some(key)) => same(merge_key(entry, key, path)?, wanted),
                _ => same(entry, item),
            };
            if matched {
                break;
            }
        }
    }
    Ok(())
}

/// The merge key value of a list item.
fn merge_key<'a>(item: &'a Value, key: &str, path: &str) -> Result<&'a Value, PatchError> {
    match item {
        Value::Object(map) => map.get(key).ok_or_else(|| {
            strategic(
                path,
                format!("a list item has no merge key `{key}`: {item}"),
            )
        }),
        _ => Err(strategic(
            path,
            format!("a list merged by `{key}` has an item that is not an object: {item}"),
        )),
    }
}

fn require_keys(items: &[Value], key: &str, path: &str) -> Result<(), PatchError> {
    items
        .iter()
        .try_for_each(|item| merge_key(item, key, path).map(|_| ()))
}

/// The kind of the elements of two lists that must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Scalar,
}

/// The common element kind of two lists (`None` if both are empty). Mixed element types and
/// lists of lists cannot be merged.
fn element_kind(a: &[Value], b: &[Value], path: &str) -> Result<Option<Kind>, PatchError> {
    let mut items = a.iter().chain(b);
    let Some(first) = items.next() else {
        return Ok(None);
    };
    if first.is_array() {
        return Err(strategic(path, "lists of lists cannot be merged"));
    }
    if items.any(|item| !same_type(item, first)) {
        return Err(strategic(path, "list items are not all of the same type"));
    }
    Ok(Some(if first.is_object() {
        Kind::Object
    } else {
        Kind::Scalar
    }))
}

/// Merges or replaces a list according to its field's strategy (`mergeSliceHandler`).
fn merge_list_field(
    current: Vec<Value>,
    patch: Vec<Value>,
    meta: Field,
    is_delete_list: bool,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if !meta.merge && !is_delete_list {
        return Ok(match clean(Value::Array(patch)) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        });
    }
    if current.is_empty() && patch.is_empty() {
        return Ok(current);
    }
    match element_kind(&current, &patch, path)? {
        None => Ok(current),
        Some(Kind::Scalar) if is_delete_list => Ok(current
            .into_iter()
            .filter(|v| !patch.iter().any(|p| same(p, v)))
            .collect()),
        Some(Kind::Scalar) => {
            let mut merged: Vec<Value> = Vec::with_capacity(current.len() + patch.len());
            for value in current.iter().chain(&patch) {
                if !merged.iter().any(|m| same(m, value)) {
                    merged.push(value.clone());
                }
            }
            Ok(order_merged(merged, &patch, &current, None))
        }
        Some(Kind::Object) if is_delete_list => Err(strategic(
            path,
            format!("{DELETE_FROM_PRIMITIVE_LIST} applies to lists of scalars, not of objects"),
        )),
        Some(Kind::Object) => {
            let Some(key) = meta.key else {
                return Err(strategic(
                    path,
                    "cannot merge a list of objects without a merge key",
                ));
            };
            merge_keyed_list(current, patch, key, meta.ty, path)
        }
    }
}

/// Merges a list of objects by merge key (`mergeSlice` for maps upstream).
fn merge_keyed_list(
    mut current: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    item_type: Option<Type>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    // Directives first: deletions apply to the current list, a replace marker makes the
    // plain items the whole list.
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for (index, item) in patch.into_iter().enumerate() {
        let Some(directive) = item.get(PATCH) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let value = merge_key(&item, key, &item_path(path, None, &item, index))?;
                current.retain(|c| !c.get(key).is_some_and(|v| same(v, value)));
            }
            Some(REPLACE) => replace = true,
            // Lists merge by default; the marker asks for nothing more.
            Some(MERGE) => {}
            _ => {
                return Err(strategic(
                    path,
                    format!("unknown $patch directive {directive} in a list item"),
                ));
            }
        }
    }
    if replace {
        return Ok(plain.into_iter().filter_map(clean).collect());
    }
    let server_order = current.clone();
    for (index, item) in plain.iter().enumerate() {
        let item_at = item_path(path, Some(key), item, index);
        let value = merge_key(item, key, &item_at)?;
        let found = current
            .iter()
            .position(|c| c.get(key).is_some_and(|v| same(v, value)));
        match (found, item) {
            (Some(i), Value::Object(patch_map)) => {
                let Value::Object(existing) = std::mem::take(&mut current[i]) else {
                    return Err(strategic(
                        &item_at,
                        "the current list item is not an object",
                    ));
                };
                current[i] =
                    Value::Object(merge_map(existing, patch_map.clone(), item_type, &item_at)?);
            }
            _ => current.extend(clean(item.clone())),
        }
    }
    Ok(order_merged(current, &plain, &server_order, Some(key)))
}

/// Orders a merged list as upstream does after a merge: the items the patch names in the
/// patch's order, the others in the current order, interleaved by current positions.
fn order_merged(
    merged: Vec<Value>,
    patch: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (named, rest): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(patch, item, key).is_some());
    interleave(
        sort_by(named, patch, key),
        sort_by(rest, server_order, key),
        server_order,
        key,
    )
}

/// The index of `item` in `list`, matching objects by merge key and scalars by value.
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(key) => {
            let wanted = item.get(key)?;
            list.iter()
                .position(|v| v.get(key).is_some_and(|v| same(v, wanted)))
        }
        None => list.iter().position(|v| same(v, item)),
    }
}

/// Sorts items by their position in `order`, stably; items not in it go last.
fn sort_by(mut items: Vec<Value>, order: &[Value], key: Option<&str>) -> Vec<Value> {
    items.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    items
}

/// Merges two ordered lists into one, keeping each list's order (`mergeSortedSlice`
/// upstream): a `rest` item goes first only when both it and the next `named` item are in the
/// current list and it comes earlier there.
fn interleave(
    named: Vec<Value>,
    rest: Vec<Value>,
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(named.len() + rest.len());
    let mut named = named.into_iter().peekable();
    let mut rest = rest.into_iter().peekable();
    loop {
        let take_rest = match (rest.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(r), Some(n)) => matches!(
                (position(server_order, r, key), position(server_order, n, key)),
                (Some(ri), Some(ni)) if ri < ni
            ),
        };
        let next = if take_rest { rest.next() } else { named.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(doc: Value, patch: Value, kind: &str) -> Value {
        strategic_merge_patch(&doc, &patch, kind).unwrap_or_else(|e| panic!("patch failed: {e}"))
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {"team": "a", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["a.example.com/f", "b.example.com/f"],
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            },
                            {"name": "sidecar", "image": "envoy:1.30"},
                        ],
                        "volumes": [{"name": "cfg", "configMap": {"name": "web-cfg"}}],
                        "tolerations": [{"key": "a", "operator": "Exists"}],
                    },
                },
            },
            "status": {"conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"},
            ]},
        })
    }

    fn containers(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]["containers"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().or(v.as_str()).unwrap())
            .collect()
    }

    #[test]
    fn apply_changes_an_image_with_set_element_order() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"name": "web", "image": "nginx:1.26"}],
            }}},
        });
        let out = smp(deployment(), patch, "Deployment");
        let c = containers(&out);
        assert_eq!(names(c), ["web", "sidecar"]);
        assert_eq!(c[0]["image"], "nginx:1.26");
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}]),
            "untouched fields stay"
        );
        assert_eq!(c[1]["image"], "envoy:1.30");
        assert_eq!(out["metadata"]["annotations"]["team"], "a");
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"new\":1}"
        );
    }

    #[test]
    fn set_element_order_places_new_items() {
        // Upstream's "add multiple items in a list and preserve order".
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "1", "other": "a"}, {"name": "2", "value": 2, "other": "b"},
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "4"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "4", "value": 4}, {"name": "3", "value": 3}],
        }}}});
        let out = smp(doc, patch, "Deployment");
        assert_eq!(
            containers(&out),
            &json!([
                {"name": "1", "other": "a"},
                {"name": "4", "value": 4},
                {"name": "2", "value": 2, "other": "b"},
                {"name": "3", "value": 3},
            ])
        );
    }

    /// A pod whose containers have the given names.
    fn pod_with(containers: &[&str]) -> Value {
        let list: Vec<Value> = containers
            .iter()
            .map(|name| json!({"name": name}))
            .collect();
        json!({"spec": {"containers": list}})
    }

    #[test]
    fn set_element_order_with_server_only_items() {
        // Upstream's "set elements order in a list with server-only items" 1 to 3: the live
        // list, the order kubectl sends, and kube-apiserver's result.
        let cases: [(&[&str], &[&str], &[&str]); 3] = [
            (
                &["1", "3", "4", "2", "9"],
                &["4", "2", "3", "1"],
                &["4", "2", "3", "1", "9"],
            ),
            (
                &["1", "2", "9", "3", "4"],
                &["2", "1", "4", "3"],
                &["2", "1", "9", "4", "3"],
            ),
            (
                &["1", "2", "7", "9", "8", "3", "4"],
                &["2", "1", "4", "3"],
                &["2", "1", "7", "9", "8", "4", "3"],
            ),
        ];
        for (live, order, expected) in cases {
            let doc = pod_with(live);
            let order: Vec<Value> = order.iter().map(|n| json!({"name": n})).collect();
            let out = smp(
                doc,
                json!({"spec": {"$setElementOrder/containers": order}}),
                "Pod",
            );
            assert_eq!(names(&out["spec"]["containers"]), expected, "live {live:?}");
        }
    }

    #[test]
    fn set_element_order_upstream_edge_cases() {
        // The order names an item that exists nowhere: it is ignored.
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
            "containers": [{"name": "3", "value": 3}, {"name": "1", "value": 1}],
        }});
        let out = smp(pod_with(&["1", "3"]), patch, "Pod");
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "3", "value": 3}, {"name": "1", "value": 1}])
        );

        // Duplicate keys in the live list stay together at the first position named.
        let doc = json!({"spec": {"containers": [
            {"name": "1"}, {"name": "2", "value": "dup1"}, {"name": "3"}, {"name": "2", "value": "dup2"}, {"name": "4"},
        ]}});
        let order =
            json!([{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}, {"name": "2"}]);
        let out = smp(
            doc,
            json!({"spec": {"$setElementOrder/containers": order}}),
            "Pod",
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "2", "value": "dup1"}, {"name": "2", "value": "dup2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}])
        );

        // Delete and reorder in one list, reorder in another.
        let doc = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "c"}, {"name": "d"}],
        }});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}],
            "$setElementOrder/initContainers": [{"name": "d"}, {"name": "c"}],
            "containers": [{"$patch": "delete", "name": "a"}],
        }});
        let out = smp(doc, patch, "Pod");
        assert_eq!(
            out["spec"],
            json!({"containers": [{"name": "b"}], "initContainers": [{"name": "d"}, {"name": "c"}]})
        );

        // Scalar lists: an order that contradicts the patch list is an error.
        let doc = json!({"metadata": {"finalizers": ["1", "3", "2"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3", "1"]}});
        let err = strategic_merge_patch(&doc, &patch, "Pod").unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn delete_from_primitive_list_works_without_merge_strategy() {
        // Container args are replaced by patches, but a deletion list still applies.
        let doc = json!({"spec": {"containers": [{"name": "c", "args": ["--a", "--b", "--c"]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "$deleteFromPrimitiveList/args": ["--b"]}]}});
        let out = smp(doc, patch, "Pod");
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["--a", "--c"]));
    }

    #[test]
    fn set_element_order_that_contradicts_the_patch_is_an_error() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}],
            "containers": [{"name": "web", "image": "x"}],
        }}}});
        let err = strategic_merge_patch(&deployment(), &patch, "Deployment").unwrap_err();
        assert!(
            err.to_string().contains("spec.template.spec.containers"),
            "{err}"
        );
    }

    #[test]
    fn apply_removes_an_env_var_with_a_delete_directive() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{
                "name": "web",
                "$setElementOrder/env": [{"name": "B"}],
                "env": [{"$patch": "delete", "name": "A"}],
            }],
        }}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            containers(&out)[0]["env"],
            json!([{"name": "B", "value": "2"}])
        );
        assert_eq!(names(containers(&out)), ["web", "sidecar"]);
    }

    #[test]
    fn apply_deletes_removed_fields_and_retains_keys() {
        // kubectl apply after switching the manifest to `strategy: {type: Recreate}` and
        // dropping the tolerations.
        let patch = json!({"spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
            "template": {"spec": {"tolerations": null}},
        }});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert!(out["spec"]["template"]["spec"].get("tolerations").is_none());
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn retain_keys_rejects_a_patch_field_it_does_not_list() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
        let err = strategic_merge_patch(&deployment(), &patch, "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "strategic merge patch failed at spec.strategy: field `rollingUpdate` is set by the patch but not listed in $retainKeys"
        );
    }

    #[test]
    fn volume_source_change_with_retain_keys() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "cfg"}],
            "volumes": [{"$retainKeys": ["name", "secret"], "name": "cfg", "secret": {"secretName": "s"}, "configMap": null}],
        }}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "cfg", "secret": {"secretName": "s"}}])
        );
    }

    #[test]
    fn service_port_is_added_by_port_merge_key() {
        let svc = json!({
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            ]},
        });
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
        }});
        let out = smp(svc, patch, "Service");
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443},
            ])
        );
        assert_eq!(out["spec"]["clusterIP"], "10.96.0.10");
    }

    #[test]
    fn container_port_merge_key_matches_numbers() {
        let doc = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "a"}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0, "name": "b"}]}]}});
        let out = smp(doc, patch, "Pod");
        assert_eq!(
            out["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out["spec"]["containers"][0]["ports"][0]["name"], "b");
    }

    #[test]
    fn annotations_and_labels_patches() {
        // `kubectl annotate team-` and `kubectl label tier=fe`.
        let out = smp(
            deployment(),
            json!({"metadata": {"annotations": {"team": null}}}),
            "Deployment",
        );
        assert!(out["metadata"]["annotations"].get("team").is_none());
        assert!(
            out["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_some()
        );
        let out = smp(
            out,
            json!({"metadata": {"labels": {"tier": "fe"}}}),
            "Deployment",
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "fe"})
        );
        // Deleting a label that is not there changes nothing and leaves no null behind.
        let out = smp(
            out,
            json!({"metadata": {"labels": {"gone": null}}}),
            "Deployment",
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "fe"})
        );
        // Annotating an object that has no annotations yet.
        let out = smp(
            json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"annotations": {"a": "b", "c": null}}}),
            "ConfigMap",
        );
        assert_eq!(out["metadata"]["annotations"], json!({"a": "b"}));
    }

    #[test]
    fn scale_style_patch() {
        let out = smp(deployment(), json!({"spec": {"replicas": 3}}), "Deployment");
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(names(containers(&out)), ["web", "sidecar"]);
        let out = merge_patch(&deployment(), &json!({"spec": {"replicas": 3}})).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let out = smp(
            deployment(),
            json!({"metadata": {"finalizers": ["c.example.com/f", "a.example.com/f"]}}),
            "Deployment",
        );
        // Patch items in patch order, interleaved with the rest by their live positions.
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["c.example.com/f", "a.example.com/f", "b.example.com/f"])
        );
        let patch =
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/f", "x"]}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(out["metadata"]["finalizers"], json!(["b.example.com/f"]));
        // Nothing to delete from: the list is not created.
        let out = smp(
            json!({"metadata": {}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            "Pod",
        );
        assert_eq!(out, json!({"metadata": {}}));
    }

    #[test]
    fn apply_removes_a_finalizer_with_order() {
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["b.example.com/f"],
            "$deleteFromPrimitiveList/finalizers": ["a.example.com/f"],
        }});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(out["metadata"]["finalizers"], json!(["b.example.com/f"]));
    }

    #[test]
    fn replace_directive_in_a_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "busybox"},
            {"$patch": "replace"},
        ]}}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            containers(&out),
            &json!([{"name": "only", "image": "busybox"}])
        );
    }

    #[test]
    fn replace_directive_on_a_map() {
        let patch = json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "v": "2"}}}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({"v": "2"})
        );
        // On the whole object the patch becomes the object.
        let out = smp(
            json!({"a": 1, "b": 2}),
            json!({"$patch": "replace", "a": 3}),
            "ConfigMap",
        );
        assert_eq!(out, json!({"a": 3}));
    }

    #[test]
    fn delete_directive_on_a_map_leaves_it_empty() {
        let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(out["spec"]["strategy"], json!({}));
        let err = strategic_merge_patch(&deployment(), &json!({"$patch": "delete"}), "Deployment")
            .unwrap_err();
        assert!(err.to_string().contains("the object root"), "{err}");
    }

    #[test]
    fn merge_directive_is_the_default() {
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "x": "y"}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "x": "y"}));
    }

    #[test]
    fn new_item_without_order_goes_where_upstream_puts_it() {
        // One new container and nothing else named: upstream puts it first.
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "x"}]}}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(names(containers(&out)), ["new", "web", "sidecar"]);
        // Named after an existing one: it follows that one.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2"}, {"name": "new", "image": "x"},
        ]}}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(names(containers(&out)), ["web", "new", "sidecar"]);
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Equal", "value": "1"}]}}}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Equal", "value": "1"}])
        );
        // Node taints have no strategy either.
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let out = smp(
            node,
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
            "Node",
        );
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let patch = json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "Stuck"}]}});
        let out = smp(deployment(), patch, "Deployment");
        assert_eq!(
            out["status"]["conditions"],
            json!([
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False", "reason": "Stuck"},
            ])
        );
        let node =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        let out = smp(
            node,
            json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            "Node",
        );
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn cron_job_pod_template_is_reached() {
        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"},
        ]}}}}}});
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "3"}]}}}}}});
        let out = smp(cj, patch, "CronJob");
        assert_eq!(
            out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "3"}])
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let doc = json!({"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "a"}]}});
        let patch =
            json!({"metadata": {"ownerReferences": [{"uid": "2", "kind": "Node", "name": "n"}]}});
        let out = smp(doc, patch, "Pod");
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn unknown_kinds_merge_maps_and_replace_lists() {
        let doc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "a"}], "size": 1}});
        let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "b"}]}});
        let out = smp(doc, patch, "Widget");
        assert_eq!(
            out,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "b"}], "size": 1}})
        );
    }

    #[test]
    fn pdb_selector_is_replaced_whole() {
        let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let out = smp(
            pdb,
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
            "PodDisruptionBudget",
        );
        assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    }

    #[test]
    fn directives_never_reach_the_object() {
        // A whole new template spec: its directives and nulls are dropped, not stored.
        let doc = json!({"spec": {}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "x", "resources": null, "env": [{"$patch": "delete", "name": "Z"}]}],
        }}}});
        let out = smp(doc, patch, "Deployment");
        assert_eq!(
            out,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x", "env": []}]}}}})
        );
    }

    #[test]
    fn type_changes_replace() {
        let doc = json!({"spec": {"containers": [{"name": "a"}], "x": "s"}});
        let out = smp(
            doc,
            json!({"spec": {"containers": {"name": "b"}, "x": 1}}),
            "Pod",
        );
        assert_eq!(out, json!({"spec": {"containers": {"name": "b"}, "x": 1}}));
    }

    #[test]
    fn malformed_patches_are_errors_not_panics() {
        let doc = deployment();
        let bad = [
            json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": ["not-an-object"]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "explode", "name": "web"}]}}}}),
            json!({"spec": {"strategy": {"$patch": "explode"}}}),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "web"}}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}], "containers": {"name": "web"}}}}}),
            json!({"spec": {"template": {"spec": {"$setElementOrder/volumes": [{"x": 1}], "volumes": [{"name": "cfg"}]}}}}),
            json!({"spec": {"$setElementOrderX": []}}),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            json!({"metadata": {"finalizers": [["nested"]]}}),
            json!({"metadata": {"finalizers": [1]}}),
            json!({"status": {"conditions": [{"status": "True"}]}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"$patch": "delete"}]}]}}}}),
        ];
        for patch in bad {
            let result = strategic_merge_patch(&doc, &patch, "Deployment");
            assert!(
                matches!(result, Err(PatchError::Strategic { .. })),
                "{patch} gave {result:?}"
            );
        }
        assert!(matches!(
            strategic_merge_patch(&doc, &json!([]), "Deployment"),
            Err(PatchError::PatchNotAnObject { .. })
        ));
        assert!(matches!(
            strategic_merge_patch(&json!("x"), &json!({}), "Deployment"),
            Err(PatchError::DocumentNotAnObject { .. })
        ));
    }

    #[test]
    fn missing_merge_key_error_names_the_place() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"value": "x"}]}]}}}});
        let err = strategic_merge_patch(&deployment(), &patch, "Deployment").unwrap_err();
        assert_eq!(
            err.to_string(),
            "strategic merge patch failed at spec.template.spec.containers[name=web].env[0]: a list item has no merge key `name`: {\"value\":\"x\"}"
        );
    }

    #[test]
    fn the_input_is_untouched() {
        let doc = deployment();
        let before = doc.clone();
        let _ = strategic_merge_patch(&doc, &json!({"spec": {"replicas": 9}}), "Deployment");
        let _ = json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 9}, {"op": "remove", "path": "/nope"}]),
        );
        assert_eq!(doc, before);
    }

    #[test]
    fn json_patch_applies_all_or_nothing() {
        let doc = deployment();
        let out = json_patch(
            &doc,
            &json!([
                {"op": "test", "path": "/spec/replicas", "value": 2},
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
                {"op": "remove", "path": "/spec/template/spec/containers/1"},
            ]),
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(out["metadata"]["labels"]["tier"], "fe");
        assert_eq!(names(containers(&out)), ["web"]);

        let err = json_patch(
            &doc,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {"op": "test", "path": "/spec/replicas", "value": 2},
            ]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::JsonPatchFailed {
                index: 1,
                op: "test",
                path: "/spec/replicas".into(),
                reason: "value did not match".into()
            }
        );
        let err = json_patch(&doc, &json!([{"op": "remove", "path": "/spec/nope"}])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("JSON patch operation 0 (remove /spec/nope) failed"),
            "{err}"
        );
    }

    #[test]
    fn json_patch_rejects_malformed_operations() {
        for patch in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
        ] {
            let err = json_patch(&json!({}), &patch).unwrap_err();
            assert!(
                matches!(err, PatchError::InvalidJsonPatch(_)),
                "{patch}: {err}"
            );
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
        let out = merge_patch(
            &doc,
            &json!({"a": {"b": null, "d": 3}, "l": [3], "s": {"n": 1}}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": 2, "d": 3}, "l": [3], "s": {"n": 1}}));
        let err = merge_patch(&doc, &json!([1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "merge patch must be a JSON object, got a list"
        );
    }
}
