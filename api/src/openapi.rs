//! The OpenAPI v3 documents kubectl reads, built from the registry.
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

/// The document of one group-version (`/openapi/v3/apis/apps/v1`), or `None` if not served.
pub fn document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&Resource> = registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    for resource in resources {
        let gvk =
            json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
        let base = if resource.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
        } else {
            format!("{prefix}/{}", resource.plural)
        };
        let op = |action: &str, verb_id: &str, params: &[&str], body: Option<&[&str]>| {
            let mut operation = json!({
                "operationId": format!("{verb_id}{}", resource.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params.iter().map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}})).collect::<Vec<_>>(),
                "responses": {"200": {"description": "OK"}},
            });
            if let Some(types) = body {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({"schema": {"type": "object"}})))
                    .collect();
                operation["requestBody"] = json!({"content": content});
            }
            operation
        };
        let writes = ["dryRun", "fieldManager", "fieldValidation"];
        let supports = |verb: &str| resource.verbs.contains(&verb);
        let mut item = Map::new();
        if supports("get") {
            item.insert("get".into(), op("get", "read", &[], None));
        }
        if supports("update") {
            item.insert(
                "put".into(),
                op("put", "replace", &writes, Some(&["application/json"])),
            );
        }
        if supports("patch") {
            item.insert(
                "patch".into(),
                op(
                    "patch",
                    "patch",
                    &writes,
                    Some(&[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                    ]),
                ),
            );
        }
        if supports("delete") {
            item.insert(
                "delete".into(),
                op(
                    "delete",
                    "delete",
                    &["dryRun", "gracePeriodSeconds", "propagationPolicy"],
                    None,
                ),
            );
        }
        if !item.is_empty() {
            paths.insert(format!("{base}/{{name}}"), Value::Object(item));
        }
        let mut collection = Map::new();
        if supports("list") {
            collection.insert(
                "get".into(),
                op(
                    "list",
                    "list",
                    &[
                        "labelSelector",
                        "fieldSelector",
                        "limit",
                        "continue",
                        "watch",
                    ],
                    None,
                ),
            );
        }
        if supports("create") {
            collection.insert(
                "post".into(),
                op("post", "create", &writes, Some(&["application/json"])),
            );
        }
        if !collection.is_empty() {
            paths.insert(base, Value::Object(collection));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// FNV-1a: a stable hash for cache busting, not for security.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
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
}
