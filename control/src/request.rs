//! What a request asks for: the path parsed into a route, the query into options.
//!
//! Paths follow kube-apiserver's layout:
//! `/api/v1/[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]` for the core group and
//! `/apis/<group>/<version>/…` for the others, plus discovery documents.

use std::collections::HashMap;

use serde_json::Value;
use strait_api::registry::{self, Resource};

use crate::error::ApiError;

/// Where a request goes.
#[derive(Clone, Debug)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz`
    Health,
    /// `/cacerts`: the CA bundle, unauthenticated, for agents joining with a token that pins
    /// its hash (see `strait_api::join`).
    CaCerts,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList { group: String, version: String },
    /// `/openapi/v3`: the index of OpenAPI v3 documents.
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
    OpenApiDocument { group: String, version: String },
    /// `/openapi/v2`: the Swagger 2.0 document as gnostic protobuf (kubectl 1.27 needs it).
    OpenApiV2,
    /// Anything else under `/openapi`: not served.
    OpenApi,
    /// A resource, a collection or a subresource.
    Object(Target),
    /// `GET /api/v1/nodes/<node>/proxy/<path>`: `path` on the node's agent.
    NodeProxy { node: String, path: String },
}

/// A resource path.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: &'static Resource,
    /// The namespace in the path (namespaced resources), none for cluster-scoped ones and
    /// for lists across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// The object's name, or a 405 naming the verb (a verb that needs one was sent to a
    /// collection).
    pub fn name(&self, verb: &str) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::method_not_allowed(verb, self.resource.plural))
    }
}

/// Parse a request path.
pub fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .collect();
    let not_found = || ApiError::no_route(path);
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Ok(Route::Health),
        ["cacerts"] => Ok(Route::CaCerts),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3"] => Ok(Route::OpenApiIndex),
        ["openapi", "v3", "api", version] => Ok(Route::OpenApiDocument {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v3", "apis", group, version] => Ok(Route::OpenApiDocument {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["openapi", ..] => Ok(Route::OpenApi),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => Ok(Route::Group((*group).to_owned())),
        ["api", "v1"] => Ok(Route::ResourceList {
            group: String::new(),
            version: "v1".to_owned(),
        }),
        ["apis", group, version] => Ok(Route::ResourceList {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        // `nodes/<name>/proxy/<path…>`: a request passed to the node's agent.
        ["api", "v1", "nodes", node, "proxy", rest @ ..] => Ok(Route::NodeProxy {
            node: (*node).to_owned(),
            path: format!("/{}", rest.join("/")),
        }),
        ["api", "v1", rest @ ..] => object("", "v1", rest).ok_or_else(not_found),
        ["apis", group, version, rest @ ..] => object(group, version, rest).ok_or_else(not_found),
        _ => Err(not_found()),
    }
}

fn object(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let find = |plural: &str| registry::find(group, version, plural);
    let target = |resource, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| {
        Some(Route::Object(Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(|s| (*s).to_owned()),
            subresource: sub.map(|s| (*s).to_owned()),
        }))
    };
    match rest {
        // `namespaces/<ns>/<plural>…` is a namespaced resource, unless `<plural>` is a
        // subresource of the namespace itself (status, finalize).
        ["namespaces", ns, plural, more @ ..] if group.is_empty() || find(plural).is_some() => {
            match find(plural) {
                Some(resource) if resource.namespaced && more.len() <= 2 => {
                    target(resource, Some(ns), more.first(), more.get(1))
                }
                _ if group.is_empty() && more.is_empty() => {
                    let namespaces = find("namespaces")?;
                    namespaces
                        .has_subresource(plural)
                        .then_some(())
                        .and_then(|()| target(namespaces, None, Some(ns), Some(plural)))
                }
                _ => None,
            }
        }
        [plural, more @ ..] if more.len() <= 2 => {
            let resource = find(plural)?;
            if resource.namespaced && !more.is_empty() {
                // A namespaced object needs its namespace in the path.
                return None;
            }
            target(resource, None, more.first(), more.get(1))
        }
        _ => None,
    }
}

/// The query parameters the API reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub field_validation: FieldValidation,
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    /// The legacy `orphanDependents` (true: Orphan, false: Background).
    pub orphan_dependents: Option<bool>,
    /// Table output: `None`, `Metadata` (the default) or `Object`.
    pub include_object: Option<String>,
    /// `pods/log`
    pub container: Option<String>,
}

/// The `fieldValidation` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// The default since Kubernetes 1.27.
    #[default]
    Warn,
    Strict,
}

impl Options {
    /// Parse the query; bad values are a 400 naming the parameter.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let pairs: HashMap<String, String> = form_pairs(query.unwrap_or(""));
        let get = |k: &str| pairs.get(k).filter(|v| !v.is_empty()).cloned();
        let boolean = |k: &str| -> Result<bool, ApiError> {
            match pairs.get(k).map(String::as_str) {
                None | Some("" | "false" | "0") => Ok(false),
                Some("true" | "1") => Ok(true),
                Some(other) => Err(ApiError::bad_request(format!(
                    "invalid value for query parameter {k}: {other:?} is not a boolean"
                ))),
            }
        };
        let number = |k: &str| -> Result<Option<i64>, ApiError> {
            get(k)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ApiError::bad_request(format!(
                            "invalid value for query parameter {k}: {v:?} is not an integer"
                        ))
                    })
                })
                .transpose()
        };
        let field_validation = match get("fieldValidation").as_deref() {
            None | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                )));
            }
        };
        Ok(Self {
            label_selector: get("labelSelector"),
            field_selector: get("fieldSelector"),
            limit: number("limit")?
                .filter(|l| *l > 0)
                .map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            continue_token: get("continue"),
            resource_version: get("resourceVersion"),
            resource_version_match: get("resourceVersionMatch"),
            watch: boolean("watch")?,
            allow_bookmarks: boolean("allowWatchBookmarks")?,
            timeout_seconds: number("timeoutSeconds")?.map(|t| t.max(0).unsigned_abs()),
            field_validation,
            dry_run: get("dryRun").is_some(),
            grace_period_seconds: number("gracePeriodSeconds")?,
            propagation_policy: get("propagationPolicy"),
            // As apimachinery's Convert_Slice_string_To_Pointer_bool: present and neither
            // "0" nor "false" (in any case) means true, even when empty.
            orphan_dependents: pairs
                .get("orphanDependents")
                .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false"))),
            include_object: get("includeObject"),
            container: get("container"),
        })
    }
}

/// What a delete asks for: kube-apiserver's `DeleteOptions`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    /// The legacy flag; conflicts with `propagation_policy` (see `objects::propagation`).
    pub orphan_dependents: Option<bool>,
    pub dry_run: bool,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// The options of a delete, read as kube-apiserver's delete handler reads them: from the
    /// body when the request has one, otherwise from the query. The two are never mixed: a
    /// body makes the query's delete options count for nothing.
    pub fn from_request(query: &Options, body: &Value) -> Self {
        if body.is_object() {
            let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
            return Self {
                grace_period_seconds: body["gracePeriodSeconds"].as_i64(),
                propagation_policy: text(&body["propagationPolicy"]),
                orphan_dependents: body["orphanDependents"].as_bool(),
                dry_run: body["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
                uid: text(&body["preconditions"]["uid"]),
                resource_version: text(&body["preconditions"]["resourceVersion"]),
            };
        }
        Self {
            grace_period_seconds: query.grace_period_seconds,
            propagation_policy: query.propagation_policy.clone(),
            orphan_dependents: query.orphan_dependents,
            dry_run: query.dry_run,
            uid: None,
            resource_version: None,
        }
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded (a repeated key: the last).
fn form_pairs(query: &str) -> HashMap<String, String> {
    strait_api::query::pairs(query).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_route(path: &str) -> Target {
        match route(path).unwrap() {
            Route::Object(t) => t,
            other => panic!("{path} routed to {other:?}"),
        }
    }

    #[test]
    fn paths_route_as_kube_apiserver_routes_them() {
        let t = object_route("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(t.resource.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource.as_deref(), Some("status"));

        let t = object_route("/api/v1/namespaces/kube-system");
        assert_eq!(t.resource.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));

        let t = object_route("/api/v1/namespaces/demo/finalize");
        assert_eq!(
            (
                t.resource.plural,
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("namespaces", Some("demo"), Some("finalize"))
        );

        let t = object_route("/apis/apps/v1/deployments");
        assert_eq!((t.resource.plural, t.namespace), ("deployments", None));

        let t = object_route("/apis/apps/v1/namespaces/a/deployments/web/scale");
        assert_eq!(t.subresource.as_deref(), Some("scale"));

        let t = object_route("/api/v1/nodes/n1");
        assert_eq!(
            (t.resource.plural, t.name.as_deref()),
            ("nodes", Some("n1"))
        );

        assert!(matches!(
            route("/apis/apps/v1").unwrap(),
            Route::ResourceList { group, version } if group == "apps" && version == "v1"
        ));
        assert!(route("/api/v1/widgets").is_err());
        assert!(
            route("/api/v1/pods/web").is_err(),
            "a pod needs its namespace"
        );
        assert!(route("/apis/apps/v1/namespaces/a/deployments/web/scale/more").is_err());
    }

    #[test]
    fn query_options_parse_and_refuse_bad_values() {
        let o = Options::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&watch=true&fieldValidation=Strict",
        ))
        .unwrap();
        assert_eq!(o.label_selector.as_deref(), Some("app=web,tier in (a)"));
        assert_eq!(o.limit, Some(5));
        assert!(o.watch);
        assert_eq!(o.field_validation, FieldValidation::Strict);
        assert_eq!(
            Options::parse(None).unwrap().field_validation,
            FieldValidation::Warn
        );
        let error = Options::parse(Some("limit=ten")).unwrap_err();
        assert!(error.message.contains("limit"), "{}", error.message);
        assert!(Options::parse(Some("fieldValidation=Loud")).is_err());
    }
}
