//! The HTTP face of the API: authentication, routing, content negotiation, bodies, and the
//! streaming of watches. Everything a resource does is in [`crate::objects`]; this module only
//! turns requests into calls and results into responses.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use serde_json::{Value, json};
use strait_api::{discovery, openapi, registry::Resource, table};

use crate::{
    auth::{Attributes, Authorizer},
    convert,
    error::ApiError,
    namespaces, nodes,
    objects::{self, Deleted, Objects, PatchType, ScaleChange},
    pki::{Identity, Pki},
    request::{self, DeleteOptions, Options, Route, Target},
};

/// Request bodies above this are refused with 413 (kube-apiserver's limit is 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What every request handler shares.
pub struct Server {
    pub objects: Arc<Objects>,
    pub pki: Arc<Pki>,
    pub authorizer: Box<dyn Authorizer>,
}

/// The one handler: every path of the API goes through here.
pub async fn handle(server: Arc<Server>, request: Request<Body>) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let started = std::time::Instant::now();
    let method = parts.method.clone();
    // Present when the client asked to upgrade the connection (exec over WebSocket).
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let response = match serve(
        &server,
        parts.method,
        &parts.uri,
        &parts.headers,
        body,
        upgrade,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros(), "request");
    response
}

async fn serve(
    server: &Server,
    method: Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Body,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response, ApiError> {
    let route = request::route(uri.path())?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    // Version and health are public, as kube-apiserver's default RBAC makes them.
    match &route {
        Route::Version => return Ok(json_response(StatusCode::OK, &discovery::version_info())),
        Route::Health => return Ok((StatusCode::OK, "ok").into_response()),
        // Public: the CA is no secret, and a joining agent checks its hash against its token.
        Route::CaCerts => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-pem-file")],
                server.pki.ca_pem.clone(),
            )
                .into_response());
        }
        _ => {}
    }
    let identity = authenticate(&server.pki, headers)?;
    match route {
        Route::Version | Route::Health | Route::CaCerts => unreachable!("answered above"),
        Route::OpenApi => Err(ApiError::no_route(uri.path())),
        Route::OpenApiIndex => Ok(json_response(StatusCode::OK, &openapi::index())),
        Route::OpenApiV2 => {
            static V2: std::sync::LazyLock<Bytes> =
                std::sync::LazyLock::new(|| Bytes::from(openapi::v2_protobuf()));
            let mut response = Response::new(Body::from(V2.clone()));
            // The `.v1.0` spelling, not the `@v1.0` clients ask for: kubectl 1.27 cannot
            // parse the latter back (kube-apiserver answers with this one too).
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                ),
            );
            Ok(response)
        }
        Route::OpenApiDocument { group, version } => openapi::document(&group, &version)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(|| ApiError::no_route(uri.path())),
        Route::CoreVersions => Ok(discovery_response(accept, true, discovery::core_versions())),
        Route::Groups => Ok(discovery_response(accept, false, discovery::group_list())),
        Route::Group(group) => discovery::group(&group)
            .map(|g| json_response(StatusCode::OK, &g))
            .ok_or_else(|| ApiError::no_route(uri.path())),
        Route::ResourceList { group, version } => discovery::resource_list(&group, &version)
            .map(|l| json_response(StatusCode::OK, &l))
            .ok_or_else(|| ApiError::no_route(uri.path())),
        Route::Object(target)
            if target.resource.kind == "Pod"
                && matches!(
                    target.subresource.as_deref(),
                    Some("log" | "exec" | "portforward")
                ) =>
        {
            let verb = if target.subresource.as_deref() == Some("log") {
                "get"
            } else {
                "create"
            };
            authorize(server, &identity, verb, &target)?;
            let upgrade = upgrade.filter(|_| headers.contains_key(header::UPGRADE));
            nodes::proxy(server, &target, &method, uri.query(), headers, upgrade).await
        }
        Route::NodeProxy { node, path } => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed(method.as_str(), "nodes/proxy"));
            }
            let target = Target {
                resource: strait_api::registry::find("", "v1", "nodes")
                    .expect("nodes are registered"),
                namespace: None,
                name: Some(node.clone()),
                subresource: Some("proxy".to_owned()),
            };
            authorize(server, &identity, "get", &target)?;
            nodes::proxy_node(server, &node, &path, uri.query(), headers).await
        }
        Route::Object(target) => {
            let options = Options::parse(uri.query())?;
            let verb = verb(&method, &target, &options)?;
            authorize(server, &identity, verb, &target)?;
            object(server, verb, &target, &options, accept, headers, body).await
        }
    }
}

/// Asks the authorizer whether `identity` may `verb` the target.
fn authorize(
    server: &Server,
    identity: &Identity,
    verb: &'static str,
    target: &Target,
) -> Result<(), ApiError> {
    server.authorizer.authorize(
        identity,
        &Attributes {
            verb,
            group: target.resource.group,
            resource: target.resource.plural,
            subresource: target.subresource.as_deref(),
            namespace: target.namespace.as_deref(),
            name: target.name.as_deref(),
        },
    )
}

/// The Kubernetes verb of a request.
fn verb(method: &Method, target: &Target, options: &Options) -> Result<&'static str, ApiError> {
    let collection = target.name.is_none();
    Ok(match *method {
        Method::GET if options.watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => {
            return Err(ApiError::method_not_allowed(
                method.as_str(),
                target.resource.plural,
            ));
        }
    })
}

fn authenticate(pki: &Pki, headers: &HeaderMap) -> Result<Identity, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| pki.authenticate(token.trim()))
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

async fn object(
    server: &Server,
    verb: &'static str,
    target: &Target,
    options: &Options,
    accept: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let objects = &server.objects;
    // `view` is the version asked for; `target` from here on names the storage version,
    // and `down`/`up` convert between them (only autoscaling/v1 differs today).
    let view = target.resource;
    let target = &Target {
        resource: convert::storage_of(view),
        ..target.clone()
    };
    let down = |obj: Value| convert::down(view, obj);
    let resource = view;
    let table = discovery::table_accepted(accept);
    let mut warnings = Vec::new();
    let sub = target.subresource.as_deref();
    if let Some(sub) = sub
        && !resource.has_subresource(sub)
    {
        return Err(ApiError::no_route(&format!("{}/{sub}", resource.plural)));
    }
    let response = match (verb, sub) {
        ("watch", _) => return watch(objects, view, target, options, table).await,
        ("list", _) => {
            let mut page = objects.list(target, options).await?;
            if table {
                let mut t = table::table(
                    target.resource,
                    &page.items,
                    jiff::Timestamp::now(),
                    include(options)?,
                );
                table::set_list_meta(
                    &mut t,
                    &page.revision.to_string(),
                    page.continue_token.as_deref(),
                    None,
                );
                json_response(StatusCode::OK, &t)
            } else {
                page.items = page.items.into_iter().map(down).collect();
                json_response(StatusCode::OK, &list_body(resource, &page))
            }
        }
        ("get", Some("scale")) => json_response(StatusCode::OK, &objects.get_scale(target).await?),
        ("get", _) => {
            let obj = objects.get(target).await?;
            if table {
                json_response(
                    StatusCode::OK,
                    &table::table(
                        target.resource,
                        &[obj],
                        jiff::Timestamp::now(),
                        include(options)?,
                    ),
                )
            } else {
                json_response(StatusCode::OK, &down(obj))
            }
        }
        ("create", Some("binding")) => {
            let body = read_body(headers, body).await?;
            objects.bind(target, &body).await?;
            json_response(StatusCode::CREATED, &success(resource, target, None))
        }
        ("create", None) => {
            let body = convert::up(view, read_body(headers, body).await?, None);
            let created = objects.create(target, body, options, &mut warnings).await?;
            json_response(StatusCode::CREATED, &down(created))
        }
        ("update", Some("scale")) => {
            let body = read_body(headers, body).await?;
            json_response(
                StatusCode::OK,
                &objects
                    .update_scale(target, ScaleChange::Replace(&body), options, &mut warnings)
                    .await?,
            )
        }
        ("update", None | Some("status")) => {
            let mut body = read_body(headers, body).await?;
            if !std::ptr::eq(view, target.resource) {
                let stored = objects.get(target).await.ok();
                body = convert::up(view, body, stored.as_ref());
            }
            json_response(
                StatusCode::OK,
                &down(objects.update(target, body, options, &mut warnings).await?),
            )
        }
        ("update", Some("finalize")) => {
            let body = read_body(headers, body).await?;
            json_response(
                StatusCode::OK,
                &namespaces::finalize(objects, target, &body).await?,
            )
        }
        ("patch", sub) => {
            let kind = patch_type(headers)?;
            let body = read_body(headers, body).await?;
            let result = match sub {
                Some("scale") => {
                    objects
                        .update_scale(
                            target,
                            ScaleChange::Patch(kind, &body),
                            options,
                            &mut warnings,
                        )
                        .await?
                }
                None | Some("status") => down(
                    objects
                        .patch(target, view, kind, &body, options, &mut warnings)
                        .await?,
                ),
                Some(other) => return Err(ApiError::method_not_allowed("patch", other)),
            };
            json_response(StatusCode::OK, &result)
        }
        ("delete", None) => {
            let body = read_optional_body(headers, body).await?;
            let delete_options = DeleteOptions::from_request(options, &body);
            match objects.delete(target, &delete_options).await? {
                Deleted::Pending(obj) => {
                    if resource.kind == "Namespace" && !delete_options.dry_run {
                        namespaces::spawn_finalizer(
                            Arc::clone(objects),
                            target.name.clone().unwrap_or_default(),
                        );
                    }
                    // kube-apiserver answers 202 when an object that asked for cascading
                    // deletion with `orphanDependents: false` is not gone yet (kept for
                    // old clients; other pending deletes are a 200).
                    let status = if delete_options.orphan_dependents == Some(false) {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    };
                    json_response(status, &down(obj))
                }
                // kube-apiserver returns the last state of pods and services, a Status for
                // the rest.
                Deleted::Now(obj) if matches!(resource.kind, "Pod" | "Service") => {
                    json_response(StatusCode::OK, &obj)
                }
                Deleted::Now(obj) => {
                    json_response(StatusCode::OK, &success(resource, target, Some(&obj)))
                }
            }
        }
        ("deletecollection", None) => {
            let body = read_optional_body(headers, body).await?;
            let delete_options = DeleteOptions::from_request(options, &body);
            let page = objects
                .list(
                    target,
                    &Options {
                        limit: None,
                        ..options.clone()
                    },
                )
                .await?;
            let mut items = Vec::new();
            for item in page.items {
                let one = Target {
                    namespace: item["metadata"]["namespace"].as_str().map(str::to_owned),
                    name: item["metadata"]["name"].as_str().map(str::to_owned),
                    ..target.clone()
                };
                match objects.delete(&one, &delete_options).await {
                    Ok(Deleted::Now(obj) | Deleted::Pending(obj)) => items.push(down(obj)),
                    // Deleted by someone else meanwhile: what was asked is done.
                    Err(e) if e.code == StatusCode::NOT_FOUND => {}
                    Err(e) => return Err(e),
                }
            }
            json_response(
                StatusCode::OK,
                &json!({
                    "kind": resource.list_kind(),
                    "apiVersion": resource.api_version(),
                    "metadata": {"resourceVersion": page.revision.to_string()},
                    "items": items,
                }),
            )
        }
        (verb, sub) => {
            return Err(ApiError::method_not_allowed(
                verb,
                &match sub {
                    Some(sub) => format!("{}/{sub}", resource.plural),
                    None => resource.plural.to_owned(),
                },
            ));
        }
    };
    Ok(with_warnings(response, &warnings))
}

async fn watch(
    objects: &Arc<Objects>,
    view: &'static Resource,
    target: &Target,
    options: &Options,
    table: bool,
) -> Result<Response, ApiError> {
    let resource: &'static Resource = target.resource;
    let events = objects.watch(target, options).await?;
    let timeout = options
        .timeout_seconds
        .map_or_else(objects::default_watch_timeout, Duration::from_secs);
    let include_object = include(options)?;
    let lines = events.map(move |event| {
        let object = if event.kind == "ERROR" || event.kind == "BOOKMARK" {
            event.object
        } else if table {
            table::table(
                resource,
                &[event.object],
                jiff::Timestamp::now(),
                include_object,
            )
        } else {
            convert::down(view, event.object)
        };
        let mut line = serde_json::to_vec(&json!({"type": event.kind, "object": object}))
            .expect("a JSON value always serializes");
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    // The watch ends at its timeout; the client then watches again from its last version.
    let deadline = tokio::time::sleep(timeout);
    let lines = lines.take_until(deadline);
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn include(options: &Options) -> Result<table::IncludeObject, ApiError> {
    table::IncludeObject::from_query(options.include_object.as_deref()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "includeObject: Unsupported value: {:?}: supported values: \"None\", \"Metadata\", \"Object\"",
            options.include_object.as_deref().unwrap_or_default()
        ))
    })
}

fn list_metadata(page: &objects::Page) -> Value {
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = json!(token);
    }
    metadata
}

fn list_body(resource: &Resource, page: &objects::Page) -> Value {
    json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": list_metadata(page),
        "items": page.items,
    })
}

/// A `Status` of success, as returned for deletes and bindings.
fn success(resource: &Resource, target: &Target, obj: Option<&Value>) -> Value {
    let mut details = json!({
        "name": target.name.as_deref().unwrap_or_default(),
        "kind": resource.plural,
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    if let Some(uid) = obj.and_then(|o| o["metadata"]["uid"].as_str()) {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let content_type = content_type(headers);
    match content_type.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn read_bytes(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))
}

/// The body as JSON, from JSON or YAML; a parse error names where it failed.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_bytes(body).await?;
    parse_body(&content_type(headers), &bytes)
}

/// Deletes may carry `DeleteOptions`, or nothing.
async fn read_optional_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_bytes(body).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    parse_body(&content_type(headers), &bytes)
}

fn parse_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    match content_type {
        "application/json"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "" => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(bytes)
            .map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                    .unwrap_or_default();
                ApiError::bad_request(format!(
                    "the body of the request is not valid YAML: {e}{at}"
                ))
            }),
        // kubectl's typed commands (`create configmap`, `create secret`, …) send protobuf.
        strait_api::protobuf::CONTENT_TYPE => {
            strait_api::protobuf::decode(bytes).map_err(|e| match e {
                strait_api::protobuf::ProtobufError::UnsupportedKind { .. } => ApiError {
                    message: e.to_string(),
                    ..ApiError::unsupported_media_type(content_type)
                },
                other => {
                    ApiError::bad_request(format!("the body of the request is not valid: {other}"))
                }
            })
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut response = axum::Json(value).into_response();
    *response.status_mut() = code;
    response
}

fn discovery_response(accept: &str, core: bool, plain: Value) -> Response {
    match discovery::negotiate(accept) {
        discovery::Negotiated::Aggregated(version) => {
            let mut response = json_response(StatusCode::OK, &discovery::aggregated(core, version));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(version.content_type()),
            );
            response
        }
        discovery::Negotiated::Plain => json_response(StatusCode::OK, &plain),
    }
}

/// `Warning: 299 - "…"` headers, as kubectl prints them.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}
