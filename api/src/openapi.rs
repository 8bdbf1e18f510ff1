//! The OpenAPI documents kubectl reads, built from the registry: v3 as JSON, one per
//! group-version, and v2 as one gnostic protobuf document (kubectl 1.27 reads v2).
//!
//! kubectl does two things with OpenAPI: before `apply` and `create` it checks whether the
//! server validates fields itself (a PATCH operation of the kind, tagged with
//! `x-kubernetes-group-version-kind`, that takes the `fieldValidation` query parameter; if so
//! it skips client-side schema validation), and for client-side `apply` it looks for
//! strategic-merge-patch support to compute the patch from the schemas. These documents
//! answer the first and, by not listing `application/strategic-merge-patch+json` in request
//! bodies, send kubectl to its compiled-in type information for the second (it falls back
//! there on its own). So the documents carry paths and operations, not schemas: enough for
//! every client we serve, and nothing that could disagree with the types.

use serde_json::{Map, Value, json};

use crate::registry::{self, Resource};

/// The group-version's path in the index: `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per served group-version, each with the URL of its document and
/// a hash of it, so clients cache documents until they change.
pub fn index() -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry::groups() {
        for version in versions {
            let path = gv_path(group, version);
            let hash = document(group, version)
                .map(|d| hash(&d.to_string()))
                .unwrap_or_default();
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash:016X}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// The query parameters of writes (`create`, `update`, `patch`). `fieldValidation` on a PATCH
/// operation is what tells kubectl the server validates fields.
const WRITE_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];

/// The query parameters of `delete`.
const DELETE_PARAMETERS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];

/// The query parameters of `list` (and `watch`, which is `list?watch=true`).
const LIST_PARAMETERS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "watch",
];

/// One operation of a path, as both the v2 and the v3 documents describe it.
struct Operation {
    method: Method,
    /// The `x-kubernetes-action`; differs from the method only for `list`.
    action: &'static str,
    /// The verb the `operationId` starts with (`readDeployment`, `listDeployment`).
    verb: &'static str,
    /// Query parameters, each a string.
    parameters: &'static [&'static str],
    /// Request body media types; empty when the operation takes no body.
    consumes: &'static [&'static str],
}

/// The HTTP methods the documents describe.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    /// The key of the operation in a path item, as OpenAPI spells it.
    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }

    /// The field of the operation in gnostic's `openapi.v2.PathItem`.
    fn v2_field(self) -> u32 {
        match self {
            Method::Get => 2,
            Method::Put => 3,
            Method::Post => 4,
            Method::Delete => 5,
            Method::Patch => 8,
        }
    }
}

/// A path of one resource and the operations its verbs allow.
struct PathOperations {
    resource: &'static Resource,
    /// The URL template, e.g. `/apis/apps/v1/namespaces/{namespace}/deployments/{name}`.
    path: String,
    operations: Vec<Operation>,
}

impl PathOperations {
    /// Whether the path names one object (ends in `{name}`) rather than the collection.
    fn is_item(&self) -> bool {
        self.path.ends_with("/{name}")
    }
}

/// The item and collection paths of a resource, each only if some verb serves it. Both
/// documents are built from this, so they cannot disagree about what is served.
fn resource_paths(resource: &'static Resource) -> Vec<PathOperations> {
    let prefix = gv_path(resource.group, resource.version);
    let collection = if resource.namespaced {
        format!("/{prefix}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("/{prefix}/{}", resource.plural)
    };
    let operation = |method, action, verb, parameters, consumes| Operation {
        method,
        action,
        verb,
        parameters,
        consumes,
    };
    let when = |verb: &str, op: Operation| resource.supports(verb).then_some(op);
    let item_operations = [
        when("get", operation(Method::Get, "get", "read", &[], &[])),
        when(
            "update",
            operation(
                Method::Put,
                "put",
                "replace",
                WRITE_PARAMETERS,
                &["application/json"],
            ),
        ),
        when(
            "delete",
            operation(Method::Delete, "delete", "delete", DELETE_PARAMETERS, &[]),
        ),
        // No `application/strategic-merge-patch+json`: see the module documentation.
        when(
            "patch",
            operation(
                Method::Patch,
                "patch",
                "patch",
                WRITE_PARAMETERS,
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                ],
            ),
        ),
    ];
    let collection_operations = [
        when(
            "list",
            operation(Method::Get, "list", "list", LIST_PARAMETERS, &[]),
        ),
        when(
            "create",
            operation(
                Method::Post,
                "post",
                "create",
                WRITE_PARAMETERS,
                &["application/json"],
            ),
        ),
    ];
    [
        (format!("{collection}/{{name}}"), Vec::from(item_operations)),
        (collection, Vec::from(collection_operations)),
    ]
    .into_iter()
    .map(|(path, operations)| PathOperations {
        resource,
        path,
        operations: operations.into_iter().flatten().collect(),
    })
    .filter(|p| !p.operations.is_empty())
    .collect()
}

/// The document of one group-version (`/openapi/v3/apis/apps/v1`), or `None` if not served.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&'static Resource> = registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for path in resources.into_iter().flat_map(resource_paths) {
        let resource = path.resource;
        let gvk =
            json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let mut item = Map::new();
        for op in &path.operations {
            let mut operation = json!({
                "operationId": format!("{}{}", op.verb, resource.kind),
                "x-kubernetes-action": op.action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": op.parameters.iter().map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}})).collect::<Vec<_>>(),
                "responses": {"200": {"description": "OK"}},
            });
            if !op.consumes.is_empty() {
                let content: Map<String, Value> = op
                    .consumes
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({"schema": {"type": "object"}})))
                    .collect();
                operation["requestBody"] = json!({"content": content});
            }
            item.insert(op.method.key().into(), operation);
        }
        paths.insert(path.path, Value::Object(item));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// `/openapi/v2` in the protobuf form kubectl asks for: every served resource's paths and
/// operations in one Swagger 2.0 document, encoded as gnostic's `openapi.v2.Document`. kubectl 1.27 reads this one (not v3) to decide whether the server
/// validates fields; like the v3 documents it has no definitions, so kubectl uses its
/// compiled-in types for strategic merge patches.
///
/// Paths are sorted, so the bytes are the same on every call and clients may cache them.
///
/// Serve it with `Content-Type: application/com.github.proto-openapi.spec.v2.v1.0+protobuf`
/// even though kubectl asks for the `...spec.v2@v1.0+protobuf` form: kube-apiserver answers
/// that way, and kubectl 1.27 fails on the `@` ("mime: unexpected content after media
/// subtype") when it is echoed back.
pub fn v2_protobuf() -> Vec<u8> {
    let mut paths: Vec<PathOperations> = registry::resources()
        .iter()
        .flat_map(resource_paths)
        .collect();
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    let info = Message::default()
        .string(v2::INFO_TITLE, "Kubernetes")
        .string(v2::INFO_VERSION, "v1.33.0");
    let paths = Message::default().messages(
        v2::PATHS_PATH,
        paths.iter().map(|path| {
            Message::default()
                .string(v2::NAMED_NAME, &path.path)
                .message(v2::NAMED_VALUE, v2_path_item(path))
        }),
    );
    Message::default()
        .string(v2::DOCUMENT_SWAGGER, "2.0")
        .message(v2::DOCUMENT_INFO, info)
        .message(v2::DOCUMENT_PATHS, paths)
        .into_bytes()
}

/// A `PathItem`: the operations, then the path parameters they share.
fn v2_path_item(path: &PathOperations) -> Message {
    let mut operations: Vec<(u32, Message)> = path
        .operations
        .iter()
        .map(|op| (op.method.v2_field(), v2_operation(path.resource, op)))
        .collect();
    // Protobuf encoders write fields in number order; readers accept any, but sorting keeps
    // the bytes canonical.
    operations.sort_by_key(|(field, _)| *field);
    let mut path_parameters = Vec::new();
    if path.resource.namespaced {
        path_parameters.push("namespace");
    }
    if path.is_item() {
        path_parameters.push("name");
    }
    let item = operations
        .into_iter()
        .fold(Message::default(), |item, (field, op)| {
            item.message(field, op)
        });
    item.messages(
        v2::PATH_ITEM_PARAMETERS,
        path_parameters.into_iter().map(|name| {
            let parameter = Message::default()
                .bool(v2::PATH_PARAMETER_REQUIRED, true)
                .string(v2::PATH_PARAMETER_IN, "path")
                .string(v2::PATH_PARAMETER_NAME, name)
                .string(v2::PATH_PARAMETER_TYPE, "string");
            v2_non_body_parameter(v2::NON_BODY_PATH, parameter)
        }),
    )
}

/// An `Operation` with its query parameters, a `200` response and the two vendor extensions
/// kubectl reads.
fn v2_operation(resource: &Resource, op: &Operation) -> Message {
    let gvk = format!(
        "group: {}\nkind: {}\nversion: {}\n",
        yaml_scalar(resource.group),
        yaml_scalar(resource.kind),
        yaml_scalar(resource.version),
    );
    let response = Message::default().string(v2::RESPONSE_DESCRIPTION, "OK");
    let responses = Message::default().message(
        v2::RESPONSES_RESPONSE_CODE,
        Message::default().string(v2::NAMED_NAME, "200").message(
            v2::NAMED_VALUE,
            Message::default().message(v2::RESPONSE_VALUE_RESPONSE, response),
        ),
    );
    Message::default()
        .string(
            v2::OPERATION_OPERATION_ID,
            &format!("{}{}", op.verb, resource.kind),
        )
        .strings(v2::OPERATION_PRODUCES, &["application/json"])
        .strings(v2::OPERATION_CONSUMES, op.consumes)
        .messages(
            v2::OPERATION_PARAMETERS,
            op.parameters.iter().map(|name| {
                let parameter = Message::default()
                    .string(v2::QUERY_PARAMETER_IN, "query")
                    .string(v2::QUERY_PARAMETER_NAME, name)
                    .string(v2::QUERY_PARAMETER_TYPE, "string");
                v2_non_body_parameter(v2::NON_BODY_QUERY, parameter)
            }),
        )
        .message(v2::OPERATION_RESPONSES, responses)
        .messages(
            v2::OPERATION_VENDOR_EXTENSION,
            [
                (
                    "x-kubernetes-action",
                    format!("{}\n", yaml_scalar(op.action)),
                ),
                ("x-kubernetes-group-version-kind", gvk),
            ]
            .into_iter()
            .map(|(name, yaml)| {
                Message::default().string(v2::NAMED_NAME, name).message(
                    v2::NAMED_VALUE,
                    Message::default().string(v2::ANY_YAML, &yaml),
                )
            }),
        )
}

/// A `ParametersItem` holding a non-body parameter: `oneof_field` says which kind
/// (query or path) `sub_schema` is.
fn v2_non_body_parameter(oneof_field: u32, sub_schema: Message) -> Message {
    let non_body = Message::default().message(oneof_field, sub_schema);
    let parameter = Message::default().message(v2::PARAMETER_NON_BODY_PARAMETER, non_body);
    Message::default().message(v2::PARAMETERS_ITEM_PARAMETER, parameter)
}

/// A string as a YAML scalar: plain when it is a plain word (`apps`, `v1`), else quoted.
/// JSON strings are valid double-quoted YAML, and the core group `""` must be quoted to be
/// read back as an empty string.
fn yaml_scalar(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if plain {
        text.to_owned()
    } else {
        Value::from(text).to_string()
    }
}

/// Field numbers of gnostic's `openapi.v2` messages, from `openapiv2/OpenAPIv2.proto` in
/// github.com/google/gnostic-models, named `<MESSAGE>_<FIELD>`. Only the fields this module
/// writes are here.
mod v2 {
    pub(super) const DOCUMENT_SWAGGER: u32 = 1;
    pub(super) const DOCUMENT_INFO: u32 = 2;
    pub(super) const DOCUMENT_PATHS: u32 = 8;
    pub(super) const INFO_TITLE: u32 = 1;
    pub(super) const INFO_VERSION: u32 = 2;
    pub(super) const PATHS_PATH: u32 = 2;
    /// `NamedPathItem`, `NamedAny` and `NamedResponseValue` all number `name` 1 and `value` 2.
    pub(super) const NAMED_NAME: u32 = 1;
    pub(super) const NAMED_VALUE: u32 = 2;
    pub(super) const PATH_ITEM_PARAMETERS: u32 = 9;
    pub(super) const OPERATION_OPERATION_ID: u32 = 5;
    pub(super) const OPERATION_PRODUCES: u32 = 6;
    pub(super) const OPERATION_CONSUMES: u32 = 7;
    pub(super) const OPERATION_PARAMETERS: u32 = 8;
    pub(super) const OPERATION_RESPONSES: u32 = 9;
    pub(super) const OPERATION_VENDOR_EXTENSION: u32 = 13;
    pub(super) const PARAMETERS_ITEM_PARAMETER: u32 = 1;
    pub(super) const PARAMETER_NON_BODY_PARAMETER: u32 = 2;
    pub(super) const NON_BODY_QUERY: u32 = 3;
    pub(super) const NON_BODY_PATH: u32 = 4;
    pub(super) const QUERY_PARAMETER_IN: u32 = 2;
    pub(super) const QUERY_PARAMETER_NAME: u32 = 4;
    pub(super) const QUERY_PARAMETER_TYPE: u32 = 6;
    // `PathParameterSubSchema` has no `allow_empty_value`, so its `type` is 5, not 6.
    pub(super) const PATH_PARAMETER_REQUIRED: u32 = 1;
    pub(super) const PATH_PARAMETER_IN: u32 = 2;
    pub(super) const PATH_PARAMETER_NAME: u32 = 4;
    pub(super) const PATH_PARAMETER_TYPE: u32 = 5;
    pub(super) const RESPONSES_RESPONSE_CODE: u32 = 1;
    pub(super) const RESPONSE_VALUE_RESPONSE: u32 = 1;
    pub(super) const RESPONSE_DESCRIPTION: u32 = 1;
    pub(super) const ANY_YAML: u32 = 2;
}

/// Protobuf wire types (protobuf.dev/programming-guides/encoding).
const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;

/// A protobuf message being written, field by field: just the wire format's varints and
/// length-delimited records, which is all these documents use.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn string(self, field: u32, value: &str) -> Self {
        self.len_delimited(field, value.as_bytes())
    }

    /// A repeated string field: one record per value.
    fn strings(self, field: u32, values: &[&str]) -> Self {
        values.iter().fold(self, |m, value| m.string(field, value))
    }

    fn message(self, field: u32, value: Message) -> Self {
        self.len_delimited(field, &value.0)
    }

    /// A repeated message field: one record per value.
    fn messages(self, field: u32, values: impl IntoIterator<Item = Message>) -> Self {
        values
            .into_iter()
            .fold(self, |m, value| m.message(field, value))
    }

    fn bool(mut self, field: u32, value: bool) -> Self {
        self.key(field, WIRE_VARINT);
        self.varint(u64::from(value));
        self
    }

    fn len_delimited(mut self, field: u32, bytes: &[u8]) -> Self {
        self.key(field, WIRE_LEN);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from((field << 3) | wire_type));
    }

    /// Seven bits a byte, least significant first, the high bit set on all but the last.
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// FNV-1a: a stable hash for cache busting, not for security.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_index_points_at_every_group_version() {
        let index = index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(index["paths"]["api/v1"].is_object());
        assert!(document("nope.example.com", "v1").is_none());
    }

    #[test]
    fn patch_operations_say_the_server_validates_fields() {
        let doc = document("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        // kubectl computes strategic merge patches from its own types when this is absent.
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let ns = document("", "v1").unwrap();
        assert!(
            ns["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object(),
            "cluster-scoped paths have no namespace"
        );
    }

    /// The length-delimited values of `field` in a protobuf message (strings, bytes and
    /// sub-messages), in order. Varint fields are skipped; the encoder writes no other wire
    /// types, so any other is a test failure.
    fn records(mut message: &[u8], field: u32) -> Vec<&[u8]> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = bytes.split_first().expect("truncated varint");
                *bytes = rest;
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return value;
                }
            }
            panic!("varint longer than ten bytes")
        }
        let mut found = Vec::new();
        while !message.is_empty() {
            let key = varint(&mut message);
            match key & 7 {
                0 => {
                    varint(&mut message);
                }
                2 => {
                    let len = usize::try_from(varint(&mut message)).unwrap();
                    assert!(len <= message.len(), "record overruns its message");
                    let (record, rest) = message.split_at(len);
                    message = rest;
                    if key >> 3 == u64::from(field) {
                        found.push(record);
                    }
                }
                wire => panic!("unexpected wire type {wire}"),
            }
        }
        found
    }

    /// The one record of `field`; fails if it is absent or repeated.
    fn record(message: &[u8], field: u32) -> &[u8] {
        let found = records(message, field);
        assert_eq!(
            found.len(),
            1,
            "field {field} present {} times",
            found.len()
        );
        found[0]
    }

    fn text(message: &[u8], field: u32) -> &str {
        std::str::from_utf8(record(message, field)).unwrap()
    }

    /// Every `NamedPathItem` of the v2 document as (path, `PathItem` bytes).
    fn v2_paths(document: &[u8]) -> Vec<(&str, &[u8])> {
        records(record(document, 8), 2)
            .into_iter()
            .map(|named| (text(named, 1), record(named, 2)))
            .collect()
    }

    /// An operation's vendor extensions as (name, `Any.yaml`).
    fn extensions(operation: &[u8]) -> Vec<(&str, &str)> {
        records(operation, 13)
            .into_iter()
            .map(|named| (text(named, 1), text(record(named, 2), 2)))
            .collect()
    }

    fn gvk_yaml(operation: &[u8]) -> &str {
        extensions(operation)
            .into_iter()
            .find(|(name, _)| *name == "x-kubernetes-group-version-kind")
            .expect("operation has a group-version-kind")
            .1
    }

    /// The names of an operation's query parameters, following
    /// `ParametersItem.parameter.non_body_parameter.query_parameter_sub_schema`.
    fn query_parameters(operation: &[u8]) -> Vec<&str> {
        records(operation, 8)
            .into_iter()
            .map(|item| {
                let query = record(record(record(item, 1), 2), 3);
                assert_eq!(text(query, 2), "query");
                assert_eq!(text(query, 6), "string");
                text(query, 4)
            })
            .collect()
    }

    #[test]
    fn v2_patch_operations_say_the_server_validates_fields() {
        let document = v2_protobuf();
        assert_eq!(text(&document, 1), "2.0");
        let info = record(&document, 2);
        assert_eq!((text(info, 1), text(info, 2)), ("Kubernetes", "v1.33.0"));
        assert!(records(&document, 9).is_empty(), "no definitions");
        let paths = v2_paths(&document);
        let path_item = |wanted: &str| {
            paths
                .iter()
                .find(|(path, _)| *path == wanted)
                .unwrap_or_else(|| panic!("{wanted} is in the document"))
                .1
        };

        let deployment = path_item("/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        let patch = record(deployment, 8);
        assert_eq!(text(patch, 5), "patchDeployment");
        assert!(
            query_parameters(patch).contains(&"fieldValidation"),
            "{:?}",
            query_parameters(patch)
        );
        assert_eq!(
            extensions(patch),
            [
                ("x-kubernetes-action", "patch\n"),
                (
                    "x-kubernetes-group-version-kind",
                    "group: apps\nkind: Deployment\nversion: v1\n"
                ),
            ]
        );
        let consumes: Vec<&[u8]> = records(patch, 7);
        assert!(!consumes.contains(&&b"application/strategic-merge-patch+json"[..]));
        let ok = record(record(record(record(patch, 9), 1), 2), 1);
        assert_eq!(text(ok, 1), "OK");

        // The core group is quoted, so YAML reads it back as an empty string, not null.
        let pod = path_item("/api/v1/namespaces/{namespace}/pods/{name}");
        assert_eq!(
            gvk_yaml(record(pod, 8)),
            "group: \"\"\nkind: Pod\nversion: v1\n"
        );
        let list = record(
            path_item("/apis/apps/v1/namespaces/{namespace}/deployments"),
            2,
        );
        assert_eq!(extensions(list)[0], ("x-kubernetes-action", "list\n"));
        assert!(query_parameters(list).contains(&"labelSelector"));
    }

    #[test]
    fn v2_paths_are_namespaced_exactly_when_their_kind_is() {
        let document = v2_protobuf();
        let paths = v2_paths(&document);
        assert!(paths.iter().any(|(p, _)| *p == "/api/v1/namespaces/{name}"));
        for (path, item) in paths {
            let operation = [2, 3, 4, 5, 8]
                .into_iter()
                .find_map(|method| records(item, method).first().copied())
                .expect("path has an operation");
            let gvk = gvk_yaml(operation);
            let resource = registry::resources()
                .iter()
                .find(|r| {
                    gvk == format!(
                        "group: {}\nkind: {}\nversion: {}\n",
                        yaml_scalar(r.group),
                        r.kind,
                        r.version
                    )
                })
                .unwrap_or_else(|| panic!("{path}: no resource has {gvk:?}"));
            assert_eq!(
                path.contains("/namespaces/{namespace}/"),
                resource.namespaced,
                "{path}"
            );
            // Path parameters sit on the path item: `{namespace}` and `{name}` as written.
            let declared: Vec<&str> = records(item, 9)
                .into_iter()
                .map(|p| text(record(record(record(p, 1), 2), 4), 4))
                .collect();
            let in_path: Vec<&str> = ["namespace", "name"]
                .into_iter()
                .filter(|name| path.contains(&format!("{{{name}}}")))
                .collect();
            assert_eq!(declared, in_path, "{path}");
        }
    }

    #[test]
    fn v2_describes_the_paths_and_operations_of_the_v3_documents() {
        let mut v3 = BTreeSet::new();
        for (group, versions) in registry::groups() {
            for version in versions {
                let doc = document(group, version).unwrap();
                for (path, item) in doc["paths"].as_object().unwrap() {
                    for (method, op) in item.as_object().unwrap() {
                        let id = op["operationId"].as_str().unwrap();
                        v3.insert((path.clone(), method.clone(), id.to_owned()));
                    }
                }
            }
        }
        let document = v2_protobuf();
        let mut v2 = BTreeSet::new();
        for (path, item) in v2_paths(&document) {
            for (method, field) in [
                ("get", 2),
                ("put", 3),
                ("post", 4),
                ("delete", 5),
                ("patch", 8),
            ] {
                for op in records(item, field) {
                    v2.insert((path.to_owned(), method.to_owned(), text(op, 5).to_owned()));
                }
            }
        }
        assert_eq!(v2, v3);
    }

    #[test]
    fn v2_bytes_are_the_same_on_every_call() {
        let document = v2_protobuf();
        assert_eq!(document, v2_protobuf());
        let paths: Vec<&str> = v2_paths(&document).into_iter().map(|(p, _)| p).collect();
        assert!(paths.is_sorted(), "paths are sorted");
    }
}
