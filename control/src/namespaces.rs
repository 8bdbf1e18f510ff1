//! Namespace lifecycle: a deleted namespace is emptied, then removed.
//!
//! Deleting a Namespace marks it Terminating (see `objects::delete`); from then on nothing new
//! may be created in it. A finalizer task deletes everything in it, resource by resource,
//! through the same REST storage clients use (so finalizers and pod grace periods are
//! honoured), waits until nothing is left, and then deletes the Namespace itself. Start-up
//! resumes the task for every namespace left Terminating by a crash.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use strait_api::registry;
use strait_store::RangeRequest;

use crate::{
    error::ApiError,
    objects::{self, Objects},
    request::{DeleteOptions, Options, Target},
};

/// Empty and remove the namespace `name`, in the background.
pub fn spawn_finalizer(objects: Arc<Objects>, name: String) {
    tokio::spawn(async move {
        loop {
            match finalize_once(&objects, &name).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(namespace = %name, %error, "namespace finalization failed; retrying");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// One pass: delete what is left; remove the namespace when nothing is. `true` when done.
async fn finalize_once(objects: &Objects, name: &str) -> Result<bool, ApiError> {
    let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are registered");
    let ns_target = Target {
        resource: namespaces,
        namespace: None,
        name: Some(name.to_owned()),
        subresource: None,
    };
    match objects.get(&ns_target).await {
        Ok(ns) if ns["metadata"]["deletionTimestamp"].is_string() => {}
        // Gone already, or not being deleted (recreated): nothing to do.
        Ok(_) => return Ok(true),
        Err(e) if e.code == 404 => return Ok(true),
        Err(e) => return Err(e),
    }
    let mut left = 0usize;
    let mut visited = std::collections::HashSet::new();
    for resource in registry::resources().iter().filter(|r| r.namespaced) {
        // Resources served at several versions share storage; visit the storage once.
        if !visited.insert(resource.storage_prefix()) {
            continue;
        }
        let prefix = format!("{}{name}/", resource.storage_prefix());
        let found = objects
            .store()
            .range(RangeRequest {
                prefix,
                ..RangeRequest::default()
            })
            .await?;
        for kv in &found.kvs {
            left += 1;
            let obj = objects::decode(kv);
            let target = Target {
                resource,
                namespace: Some(name.to_owned()),
                name: obj["metadata"]["name"].as_str().map(str::to_owned),
                subresource: None,
            };
            match objects.delete(&target, &DeleteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if left > 0 {
        return Ok(false);
    }
    let mut ns = objects.get(&ns_target).await?;
    // Empty rather than absent: defaulting fills an absent list with "kubernetes" again.
    ns["spec"]["finalizers"] = serde_json::json!([]);
    // With its content gone and no finalizer left, the update removes it.
    if let Some(meta) = ns["metadata"].as_object_mut() {
        meta.remove("finalizers");
    }
    let mut warnings = Vec::new();
    match objects
        .update(&ns_target, ns, &Options::default(), &mut warnings)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

/// `namespaces/<name>/finalize`: replace `spec.finalizers` (what the namespace controller of a
/// Kubernetes cluster calls when it has emptied a namespace).
pub async fn finalize(objects: &Objects, target: &Target, body: &Value) -> Result<Value, ApiError> {
    let main = Target {
        subresource: None,
        ..target.clone()
    };
    let mut ns = objects.get(&main).await?;
    ns["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
    let mut warnings = Vec::new();
    objects
        .update(&main, ns, &Options::default(), &mut warnings)
        .await
}
