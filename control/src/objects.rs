//! The generic REST storage: create, get, list, update, patch, delete and watch of any
//! registered resource, on a [`Store`].
//!
//! Objects are JSON values. The store holds them without `metadata.resourceVersion`; the
//! resourceVersion clients see is the key's mod revision, set on the way out. Every write is
//! one store transaction guarded by the revision the write was computed from, so concurrent
//! writers never lose an update: the loser gets 409 Conflict (or, for unconditional updates
//! and patches, computes again from the newer object).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use futures::{Stream, StreamExt as _};
use serde_json::{Value, json};
use strait_api::{
    defaults, patch,
    registry::{self, Resource},
    selector::{FieldSelector, LabelSelector},
    strategy,
    validate::{self, Cause, CauseType},
};
use strait_store::{
    Condition, Event, KeyValue, Op, RangeRequest, Revision, Store, Txn, TxnOutcome,
};

use crate::{
    alloc::{self, Ranges},
    convert,
    error::ApiError,
    request::{DeleteOptions, FieldValidation, Options, Target},
    typed,
};

/// Writes retried after a conflict they caused themselves (unconditional updates, patches,
/// allocation races) before giving up with 409.
const RETRIES: usize = 16;

/// How long an Event lives (kube-apiserver's `--event-ttl` default).
const EVENT_TTL: Duration = Duration::from_secs(3600);

/// Events written within this window share one lease, so a busy cluster holds a lease per
/// minute rather than one per event.
const EVENT_LEASE_WINDOW: Duration = Duration::from_secs(60);

/// The REST storage of every resource.
pub struct Objects {
    store: Arc<dyn Store>,
    ranges: Ranges,
    seed: AtomicU64,
    event_lease: tokio::sync::Mutex<Option<(std::time::Instant, strait_store::LeaseId)>>,
}

/// A list's page.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// How a patch body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

/// What a delete did.
#[derive(Debug)]
pub enum Deleted {
    /// Gone now; the last state.
    Now(Value),
    /// Marked for deletion (finalizers or a grace period remain); the marked object.
    Pending(Value),
}

/// A change through the `scale` subresource.
#[derive(Debug)]
pub enum ScaleChange<'a> {
    Replace(&'a Value),
    Patch(PatchType, &'a Value),
}

/// One watch event as it goes on the wire.
#[derive(Debug)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: Value,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>, ranges: Ranges) -> Self {
        let mut seed = [0u8; 8];
        // A failed random source only makes allocation start at the range's beginning.
        let _ = getrandom::fill(&mut seed);
        Self {
            store,
            ranges,
            seed: AtomicU64::new(u64::from_le_bytes(seed)),
            event_lease: tokio::sync::Mutex::new(None),
        }
    }

    /// The lease new Events are attached to: expired an hour after its window's last event.
    async fn event_lease(&self) -> Result<strait_store::LeaseId, ApiError> {
        let mut current = self.event_lease.lock().await;
        if let Some((since, lease)) = *current
            && since.elapsed() < EVENT_LEASE_WINDOW
        {
            return Ok(lease);
        }
        let lease = self
            .store
            .grant_lease(EVENT_TTL + EVENT_LEASE_WINDOW)
            .await?;
        *current = Some((std::time::Instant::now(), lease));
        Ok(lease)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn next_seed(&self) -> u64 {
        // A Weyl sequence: successive allocations start far apart in the range.
        self.seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }

    /// Read one object.
    pub async fn get(&self, target: &Target) -> Result<Value, ApiError> {
        let name = target.name("get")?;
        let kv = self
            .read(target.resource, target.namespace.as_deref(), name)
            .await?;
        Ok(decode(&kv))
    }

    async fn read(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        self.store
            .get(&resource.storage_key(namespace, name))
            .await?
            .ok_or_else(|| ApiError::not_found(resource.group, resource.plural, name))
    }

    /// Create an object from a request body.
    pub async fn create(
        &self,
        target: &Target,
        mut obj: Value,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let resource = target.resource;
        check_type(resource, &mut obj)?;
        let namespace = self.check_namespace(target, &mut obj)?;
        let meta = obj["metadata"].as_object_mut().ok_or_else(|| {
            ApiError::bad_request("metadata: Invalid value: the object has no metadata")
        })?;
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(base) if !base.is_empty() => format!("{base}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        resource.group,
                        resource.kind,
                        "",
                        &[Cause {
                            field: "metadata.name".to_owned(),
                            reason: CauseType::Required,
                            message: "Required value: name or generateName is required".to_owned(),
                        }],
                    ));
                }
            },
        };
        meta.insert("name".to_owned(), json!(name));
        for field in [
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".to_owned(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".to_owned(), json!(now()));
        meta.insert("generation".to_owned(), json!(1));
        prepare_status_on_create(resource, &mut obj);
        self.admit(resource, &mut obj, None, options, warnings)?;
        if let Some(ns) = namespace.as_deref() {
            self.require_active_namespace(ns).await?;
        }
        let key = resource.storage_key(namespace.as_deref(), &name);
        if options.dry_run {
            return Ok(obj);
        }
        for _ in 0..RETRIES {
            let mut attempt = obj.clone();
            let needs = self.prepare_allocations(resource, &mut attempt, None, &name)?;
            self.choose_allocations(&mut attempt, &needs).await?;
            let lease = if matches!(resource.kind, "Event") {
                self.event_lease().await?
            } else {
                0
            };
            let mut txn = Txn {
                conditions: vec![(key.clone(), Condition::Absent)],
                ops: vec![Op::Put {
                    key: key.clone(),
                    value: encode(&attempt),
                    lease,
                }],
            };
            allocation_ops(&mut txn, &key, None, &attempt, resource);
            match self.store.txn(txn).await? {
                TxnOutcome::Committed { revision } => {
                    set_resource_version(&mut attempt, revision);
                    return Ok(attempt);
                }
                TxnOutcome::ConditionFailed { key: failed, .. } if failed == key => {
                    return Err(ApiError::already_exists(
                        resource.group,
                        resource.plural,
                        &name,
                    ));
                }
                TxnOutcome::ConditionFailed { key: failed, .. } => {
                    // An address or port we did not choose is someone else's: the user's
                    // request is invalid. One we chose was taken meanwhile: choose again.
                    if !chosen_by_us(&failed, &obj) {
                        return Err(refusal(resource, &name, alloc::taken(&failed, &attempt)));
                    }
                }
            }
        }
        Err(ApiError::internal(format!(
            "failed to allocate an address or port for {} {name}: the ranges are full or contended",
            resource.kind
        )))
    }

    /// Replace an object (PUT), the main resource or its `status`.
    pub async fn update(
        &self,
        target: &Target,
        mut body: Value,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let resource = target.resource;
        let name = target.name("update")?.to_owned();
        check_type(resource, &mut body)?;
        self.check_namespace(target, &mut body)?;
        if let Some(sent) = body["metadata"]["name"].as_str()
            && sent != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({sent}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(|rv| parse_revision(rv, "metadata.resourceVersion"))
            .transpose()?;
        for _ in 0..RETRIES {
            let current = self
                .read(resource, target.namespace.as_deref(), &name)
                .await?;
            if precondition.is_some_and(|rv| rv != current.mod_revision) {
                return Err(ApiError::conflict(resource.group, resource.plural, &name));
            }
            match self
                .write(target, &current, body.clone(), options, warnings)
                .await?
            {
                Some(done) => return Ok(done),
                None if precondition.is_some() => {
                    return Err(ApiError::conflict(resource.group, resource.plural, &name));
                }
                None => {}
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, &name))
    }

    /// Apply a patch to an object, the main resource or its `status`.
    /// `view` is the version the patch is written against; the object is shown to the patch
    /// in that version and converted back (see `convert`).
    pub async fn patch(
        &self,
        target: &Target,
        view: &'static Resource,
        kind: PatchType,
        body: &Value,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let resource = target.resource;
        let name = target.name("patch")?.to_owned();
        let precondition = body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(|rv| parse_revision(rv, "metadata.resourceVersion"))
            .transpose()?;
        for _ in 0..RETRIES {
            let current = self
                .read(resource, target.namespace.as_deref(), &name)
                .await?;
            if precondition.is_some_and(|rv| rv != current.mod_revision) {
                return Err(ApiError::conflict(resource.group, resource.plural, &name));
            }
            let stored = decode(&current);
            let doc = convert::down(view, stored.clone());
            let patched = match kind {
                PatchType::Json => patch::json_patch(&doc, body),
                PatchType::Merge => patch::merge_patch(&doc, body),
                PatchType::StrategicMerge => {
                    patch::strategic_merge_patch(&doc, body, resource.kind)
                }
            }
            .map_err(|e| {
                let mut error = ApiError::invalid(resource.group, resource.kind, &name, &[]);
                error.message = format!("{} \"{name}\" is invalid: {e}", resource.kind);
                error
            })?;
            let patched = convert::up(view, patched, Some(&stored));
            if let Some(done) = self
                .write(target, &current, patched, options, warnings)
                .await?
            {
                return Ok(done);
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, &name))
    }

    /// Compute and write the new state of `current`; `None` when the object changed meanwhile.
    async fn write(
        &self,
        target: &Target,
        current: &KeyValue,
        mut new: Value,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Value>, ApiError> {
        let resource = target.resource;
        let old = decode(current);
        let name = old["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        check_type(resource, &mut new)?;
        match target.subresource.as_deref() {
            // A status write changes the status and nothing else.
            Some("status") => {
                let status = new.get("status").cloned();
                new = old.clone();
                match status {
                    Some(status) => new["status"] = status,
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            // A write to the main resource keeps the status, when status is a subresource.
            _ if resource.has_subresource("status") => match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            },
            _ => {}
        }
        carry_system_metadata(&old, &mut new)?;
        if spec_changed(&old, &new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        // A write to the main resource gets the kind's update preparation; a status write
        // keeps the stored spec, as kube-apiserver's status strategies do.
        let prepare = target.subresource.is_none();
        self.admit(resource, &mut new, Some((&old, prepare)), options, warnings)?;
        // Status writes change nothing the update rules guard.
        let causes = if target.subresource.as_deref() == Some("status") {
            Vec::new()
        } else {
            validate::validate_update(resource.group, resource.kind, &old, &new)
        };
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                resource.group,
                resource.kind,
                &name,
                &causes,
            ));
        }
        if options.dry_run {
            return Ok(Some(new));
        }
        let key = current.key.clone();
        // The last finalizer removed from an object being deleted: it goes now.
        // (A Namespace also waits for its own `spec.finalizers`: the lifecycle in
        // `namespaces` clears them once the namespace is empty.)
        // A pod still in its grace period waits for its kubelet's final delete, whatever its
        // finalizers (kube-apiserver's shouldDeleteDuringUpdate).
        let finalized = new["metadata"]["deletionTimestamp"].is_string()
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| g == 0)
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            && (resource.kind != "Namespace"
                || new["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty));
        if finalized {
            return Ok(self.remove(resource, current, &old).await?.map(|_| new));
        }
        let needs = self.prepare_allocations(resource, &mut new, Some(&old), &name)?;
        self.choose_allocations(&mut new, &needs).await?;
        let mut txn = Txn {
            conditions: vec![(key.clone(), Condition::ModRevision(current.mod_revision))],
            ops: vec![Op::Put {
                key: key.clone(),
                value: encode(&new),
                // A write keeps the key's lease (an Event still expires an hour after it was
                // first written).
                lease: current.lease,
            }],
        };
        allocation_ops(&mut txn, &key, Some(&old), &new, resource);
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                set_resource_version(&mut new, revision);
                Ok(Some(new))
            }
            TxnOutcome::ConditionFailed { key: failed, .. } if failed == key => Ok(None),
            TxnOutcome::ConditionFailed { key: failed, .. } => {
                Err(refusal(resource, &name, alloc::taken(&failed, &new)))
            }
        }
    }

    /// Delete an object now, with what it holds; `None` if it changed meanwhile.
    async fn remove(
        &self,
        resource: &'static Resource,
        current: &KeyValue,
        old: &Value,
    ) -> Result<Option<Revision>, ApiError> {
        let mut txn = Txn {
            conditions: vec![(
                current.key.clone(),
                Condition::ModRevision(current.mod_revision),
            )],
            ops: vec![Op::Delete {
                key: current.key.clone(),
            }],
        };
        if alloc::allocates(resource.kind) {
            for held in alloc::held(old) {
                txn.ops.push(Op::Delete { key: held });
            }
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => Ok(Some(revision)),
            TxnOutcome::ConditionFailed { .. } => Ok(None),
        }
    }

    /// Delete an object: now, or mark it when finalizers or a grace period remain.
    pub async fn delete(
        &self,
        target: &Target,
        delete_options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let resource = target.resource;
        let name = target.name("delete")?.to_owned();
        let propagation = propagation(delete_options)?;
        let dry_run = delete_options.dry_run;
        for _ in 0..RETRIES {
            let current = self
                .read(resource, target.namespace.as_deref(), &name)
                .await?;
            let mut obj = decode(&current);
            if let Some(uid) = delete_options.uid.as_deref()
                && obj["metadata"]["uid"].as_str() != Some(uid)
            {
                return Err(ApiError::conflict_with(
                    resource.group,
                    resource.plural,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        obj["metadata"]["uid"].as_str().unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = delete_options.resource_version.as_deref()
                && parse_revision(rv, "preconditions.resourceVersion")? != current.mod_revision
            {
                return Err(ApiError::conflict(resource.group, resource.plural, &name));
            }
            let finalizers = gc_finalizers(&obj, propagation);
            if obj["metadata"]["deletionTimestamp"].is_string() {
                // Already being deleted. A grace period of 0 on a pod forces it (once its
                // finalizers are gone); a new propagation policy changes the finalizers.
                let force =
                    resource.kind == "Pod" && delete_options.grace_period_seconds == Some(0);
                let refinalized = finalizers != finalizer_list(&obj);
                if force && finalizers.is_empty() {
                    if dry_run {
                        return Ok(Deleted::Now(obj));
                    }
                    if self.remove(resource, &current, &obj).await?.is_some() {
                        return Ok(Deleted::Now(obj));
                    }
                    continue;
                }
                // Forcing a pod already forced changes nothing until its finalizers go.
                let forced = obj["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0);
                if (!force || forced) && !refinalized {
                    return Ok(Deleted::Pending(obj));
                }
                set_finalizers(&mut obj, finalizers);
                if force && !forced {
                    obj["metadata"]["deletionTimestamp"] = json!(now());
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                }
                if dry_run {
                    return Ok(Deleted::Pending(obj));
                }
                if let Some(marked) = self.mark(&current, obj).await? {
                    return Ok(Deleted::Pending(marked));
                }
                continue;
            }
            set_finalizers(&mut obj, finalizers);
            if let Some(grace) = self.deletion_grace(resource, &obj, delete_options) {
                let now = jiff::Timestamp::now();
                let at = now
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or(now);
                obj["metadata"]["deletionTimestamp"] =
                    json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                obj["metadata"]["generation"] = json!(generation + 1);
                if resource.kind == "Namespace" {
                    obj["status"]["phase"] = json!("Terminating");
                }
                if dry_run {
                    return Ok(Deleted::Pending(obj));
                }
                if let Some(marked) = self.mark(&current, obj).await? {
                    return Ok(Deleted::Pending(marked));
                }
                continue;
            }
            if dry_run {
                return Ok(Deleted::Now(obj));
            }
            if self.remove(resource, &current, &obj).await?.is_some() {
                return Ok(Deleted::Now(obj));
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, &name))
    }

    /// Write `obj`, marked for deletion, over `current`; `None` if it changed meanwhile.
    async fn mark(&self, current: &KeyValue, mut obj: Value) -> Result<Option<Value>, ApiError> {
        strip_resource_version(&mut obj);
        let txn = Txn {
            conditions: vec![(
                current.key.clone(),
                Condition::ModRevision(current.mod_revision),
            )],
            ops: vec![Op::Put {
                key: current.key.clone(),
                value: encode(&obj),
                lease: current.lease,
            }],
        };
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                set_resource_version(&mut obj, revision);
                Ok(Some(obj))
            }
            TxnOutcome::ConditionFailed { .. } => Ok(None),
        }
    }

    /// The grace period a delete must wait, or `None` to delete now. `obj` carries the
    /// finalizers the delete leaves it with (see [`gc_finalizers`]).
    fn deletion_grace(
        &self,
        resource: &Resource,
        obj: &Value,
        delete_options: &DeleteOptions,
    ) -> Option<i64> {
        let finalizers = !finalizer_list(obj).is_empty();
        if resource.kind == "Namespace" {
            // The namespace lifecycle empties it, then removes it (see `namespaces`).
            return Some(0);
        }
        if resource.kind == "Pod"
            && obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        {
            // A pod on a node waits for its kubelet to stop the containers.
            let grace = delete_options
                .grace_period_seconds
                .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            if grace > 0 {
                return Some(grace);
            }
        }
        finalizers.then_some(0)
    }

    /// List objects matching the request's selectors, one page at a time.
    pub async fn list(&self, target: &Target, options: &Options) -> Result<Page, ApiError> {
        let resource = target.resource;
        let filter = Filter::new(resource, target, options)?;
        let (mut revision, mut start_after) = match &options.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                (rv, Some(start))
            }
            None => (self.list_revision(options).await?, None),
        };
        let prefix = list_prefix(resource, target.namespace.as_deref());
        let limit = options.limit;
        let mut items = Vec::new();
        let mut next = None;
        loop {
            let batch = limit.map_or(usize::MAX, |l| (l - items.len()).max(64));
            let response = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: limit.map(|_| batch),
                    revision,
                })
                .await
                .map_err(|e| match e {
                    strait_store::Error::Compacted { .. } if options.continue_token.is_some() => {
                        ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                    }
                    other => other.into(),
                })?;
            revision = response.revision;
            let count = response.kvs.len();
            for (i, kv) in response.kvs.iter().enumerate() {
                let obj = decode(kv);
                if filter.matches(&obj) {
                    items.push(obj);
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    if response.more || i + 1 < count {
                        next = Some(encode_continue(revision, &kv.key));
                    }
                    return Ok(Page {
                        items,
                        revision,
                        continue_token: next,
                    });
                }
            }
            if !response.more {
                break;
            }
            start_after = response.kvs.last().map(|kv| kv.key.clone());
        }
        Ok(Page {
            items,
            revision,
            continue_token: next,
        })
    }

    async fn list_revision(&self, options: &Options) -> Result<Revision, ApiError> {
        let current = self.store.current_revision().await?;
        match (
            options.resource_version.as_deref(),
            options.resource_version_match.as_deref(),
        ) {
            (Some(rv), Some("Exact")) => {
                let rv = parse_revision(rv, "resourceVersion")?;
                if rv > current {
                    return Err(ApiError::too_large_resource_version(rv, current));
                }
                Ok(rv)
            }
            (Some(rv), _) if rv != "0" => {
                let rv = parse_revision(rv, "resourceVersion")?;
                if rv > current {
                    return Err(ApiError::too_large_resource_version(rv, current));
                }
                Ok(0)
            }
            _ => Ok(0),
        }
    }

    /// Watch a collection (or one object, by name): the events after the request's
    /// resourceVersion, or the current state as ADDED events and then the changes.
    pub async fn watch(
        &self,
        target: &Target,
        options: &Options,
    ) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ApiError> {
        let resource = target.resource;
        let filter = Filter::new(resource, target, options)?;
        let prefix = list_prefix(resource, target.namespace.as_deref());
        let mut initial = Vec::new();
        let after = match options.resource_version.as_deref() {
            None | Some("0" | "") => {
                let page = self
                    .list(
                        target,
                        &Options {
                            limit: None,
                            continue_token: None,
                            ..options.clone()
                        },
                    )
                    .await?;
                initial = page
                    .items
                    .into_iter()
                    .map(|object| WatchEvent {
                        kind: "ADDED",
                        object,
                    })
                    .collect();
                if page.revision == 0 {
                    self.store.current_revision().await?
                } else {
                    page.revision
                }
            }
            Some(rv) => parse_revision(rv, "resourceVersion")?,
        };
        let bookmarks = options.allow_bookmarks;
        let api_version = resource.api_version();
        let kind = resource.kind;
        let events = match self.store.watch(&prefix, after).await {
            Ok(events) => events,
            Err(strait_store::Error::Compacted { requested, .. }) => {
                let error = ApiError::expired(format!("too old resource version: {requested}"));
                return Ok(futures::stream::iter(vec![WatchEvent {
                    kind: "ERROR",
                    object: error.to_status(),
                }])
                .left_stream());
            }
            Err(e) => return Err(e.into()),
        };
        let live = events
            .map(move |event| match event {
                Ok(Event::Put { kv, prev }) => {
                    let object = decode(&kv);
                    let was = prev.as_ref().map(decode).filter(|p| filter.matches(p));
                    match (was.is_some(), filter.matches(&object)) {
                        (false, true) => Some(WatchEvent {
                            kind: "ADDED",
                            object,
                        }),
                        (true, true) => Some(WatchEvent {
                            kind: "MODIFIED",
                            object,
                        }),
                        // It stopped matching: to this watcher, it is gone.
                        (true, false) => Some(WatchEvent {
                            kind: "DELETED",
                            object,
                        }),
                        (false, false) => None,
                    }
                }
                Ok(Event::Delete { prev, revision }) => {
                    let mut object = decode(&prev);
                    set_resource_version(&mut object, revision);
                    filter.matches(&object).then_some(WatchEvent {
                        kind: "DELETED",
                        object,
                    })
                }
                Ok(Event::Progress { revision }) => bookmarks.then(|| WatchEvent {
                    kind: "BOOKMARK",
                    object: json!({
                        "kind": kind,
                        "apiVersion": api_version,
                        "metadata": {"resourceVersion": revision.to_string()},
                    }),
                }),
                Err(strait_store::Error::Compacted { requested, .. }) => Some(WatchEvent {
                    kind: "ERROR",
                    object: ApiError::expired(format!("too old resource version: {requested}"))
                        .to_status(),
                }),
                Err(e) => Some(WatchEvent {
                    kind: "ERROR",
                    object: ApiError::internal(format!("watch: {e}")).to_status(),
                }),
            })
            .filter_map(futures::future::ready);
        Ok(futures::stream::iter(initial).chain(live).right_stream())
    }

    /// The `scale` subresource of a Deployment, ReplicaSet, StatefulSet or
    /// ReplicationController, as an autoscaling/v1 `Scale`.
    pub async fn get_scale(&self, target: &Target) -> Result<Value, ApiError> {
        let name = target.name("get")?;
        let kv = self
            .read(target.resource, target.namespace.as_deref(), name)
            .await?;
        Ok(scale_of(&decode(&kv)))
    }

    /// Change the replicas through `scale`: a whole `Scale` (PUT) or a patch of one.
    pub async fn update_scale(
        &self,
        target: &Target,
        change: ScaleChange<'_>,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let resource = target.resource;
        let name = target.name("update")?.to_owned();
        let main = Target {
            subresource: None,
            ..target.clone()
        };
        for _ in 0..RETRIES {
            let current = self
                .read(resource, target.namespace.as_deref(), &name)
                .await?;
            let obj = decode(&current);
            let scale = scale_of(&obj);
            let wanted = match &change {
                ScaleChange::Replace(body) => {
                    if let Some(rv) = body["metadata"]["resourceVersion"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        && parse_revision(rv, "metadata.resourceVersion")? != current.mod_revision
                    {
                        return Err(ApiError::conflict(resource.group, resource.plural, &name));
                    }
                    (*body).clone()
                }
                ScaleChange::Patch(kind, body) => match kind {
                    PatchType::Json => patch::json_patch(&scale, body),
                    PatchType::Merge | PatchType::StrategicMerge => {
                        patch::merge_patch(&scale, body)
                    }
                }
                .map_err(|e| ApiError::bad_request(format!("scale patch: {e}")))?,
            };
            let replicas = wanted["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    &name,
                    &[Cause {
                        field: "spec.replicas".to_owned(),
                        reason: CauseType::Invalid,
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                    }],
                ));
            }
            let mut new = obj.clone();
            new["spec"]["replicas"] = json!(replicas);
            if let Some(done) = self.write(&main, &current, new, options, warnings).await? {
                return Ok(scale_of(&done));
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, &name))
    }

    /// `pods/<name>/binding`: assign an unscheduled pod to a node.
    pub async fn bind(&self, target: &Target, binding: &Value) -> Result<(), ApiError> {
        let resource = target.resource;
        let name = target.name("create")?.to_owned();
        let node = binding["target"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    &name,
                    &[Cause {
                        field: "target.name".to_owned(),
                        reason: CauseType::Required,
                        message: "Required value".to_owned(),
                    }],
                )
            })?
            .to_owned();
        for _ in 0..RETRIES {
            let current = self
                .read(resource, target.namespace.as_deref(), &name)
                .await?;
            let mut pod = decode(&current);
            if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict_with(
                    resource.group,
                    resource.plural,
                    &name,
                    &format!("pod {name} is already assigned to node \"{bound}\""),
                ));
            }
            if pod["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::conflict_with(
                    resource.group,
                    resource.plural,
                    &name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            pod["spec"]["nodeName"] = json!(node);
            let conditions = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut conditions: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodScheduled")
                .collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
            pod["status"]["conditions"] = json!(conditions);
            // The binding is the one write that may change a pod's spec (nodeName) and its
            // status at once, so it is written here rather than through `write`.
            strip_resource_version(&mut pod);
            let txn = Txn {
                conditions: vec![(
                    current.key.clone(),
                    Condition::ModRevision(current.mod_revision),
                )],
                ops: vec![Op::Put {
                    key: current.key.clone(),
                    value: encode(&pod),
                    lease: current.lease,
                }],
            };
            if let TxnOutcome::Committed { .. } = self.store.txn(txn).await? {
                return Ok(());
            }
        }
        Err(ApiError::conflict(resource.group, resource.plural, &name))
    }

    /// Defaulting, field validation and validation of an object about to be written. On an
    /// update `old` is the stored object, with whether the kind's update preparation
    /// ([`strategy::prepare_for_update`]) runs between defaulting and validation.
    fn admit(
        &self,
        resource: &'static Resource,
        obj: &mut Value,
        old: Option<(&Value, bool)>,
        options: &Options,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if options.field_validation != FieldValidation::Ignore {
            let unknown =
                typed::unknown_fields(resource.group, resource.version, resource.kind, obj)
                    .map_err(|e| {
                        ApiError::bad_request(format!(
                            "{} in version \"{}\" cannot be handled as a {}: {e}",
                            resource.kind, resource.version, resource.kind
                        ))
                    })?;
            if !unknown.is_empty() {
                let messages: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                if options.field_validation == FieldValidation::Strict {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        messages.join(", ")
                    )));
                }
                warnings.extend(messages);
            }
        } else if let Err(e) =
            typed::unknown_fields(resource.group, resource.version, resource.kind, obj)
        {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                resource.kind, resource.version, resource.kind
            )));
        }
        defaults::apply_defaults(resource.group, resource.kind, obj);
        if let Some((old, true)) = old {
            strategy::prepare_for_update(resource.group, resource.kind, obj, old);
        }
        if resource.kind == "Pod" && old.is_none() {
            obj["status"]["qosClass"] = json!(defaults::pod_qos_class(obj));
            defaults::add_default_tolerations(obj);
        }
        let causes = validate::validate(resource.group, resource.kind, obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                resource.group,
                resource.kind,
                &name,
                &causes,
            ));
        }
        Ok(())
    }

    /// The namespace the object goes in, checked against the path.
    fn check_namespace(
        &self,
        target: &Target,
        obj: &mut Value,
    ) -> Result<Option<String>, ApiError> {
        let resource = target.resource;
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if !resource.namespaced {
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
            return Ok(None);
        }
        let path_ns = target.namespace.clone().ok_or_else(|| {
            ApiError::bad_request(format!(
                "{} must be created in a namespace",
                resource.plural
            ))
        })?;
        match obj["metadata"]["namespace"].as_str() {
            None | Some("") => obj["metadata"]["namespace"] = json!(path_ns),
            Some(ns) if ns == path_ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        Ok(Some(path_ns))
    }

    async fn require_active_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        let resource = registry::find("", "v1", "namespaces").expect("namespaces are registered");
        let ns = self.read(resource, None, namespace).await?;
        if decode(&ns)["metadata"]["deletionTimestamp"].is_string() {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    fn prepare_allocations(
        &self,
        resource: &Resource,
        obj: &mut Value,
        old: Option<&Value>,
        name: &str,
    ) -> Result<alloc::Needs, ApiError> {
        let prepared = match resource.kind {
            "Service" => alloc::prepare(&self.ranges, obj, old),
            "Node" => alloc::prepare_node(&self.ranges, obj, old).map_err(alloc::Refused::Invalid),
            _ => return Ok(alloc::Needs::default()),
        };
        prepared.map_err(|refused| refusal(resource, name, refused))
    }

    /// The first candidate whose allocation key under `prefix` is absent.
    async fn first_free<T: std::fmt::Display>(
        &self,
        prefix: &str,
        candidates: impl Iterator<Item = T>,
    ) -> Result<Option<T>, ApiError> {
        for candidate in candidates {
            if self
                .store
                .get(&format!("{prefix}{candidate}"))
                .await?
                .is_none()
            {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// Pick free addresses and ports: free when we looked; the write's conditions make sure
    /// they still are.
    async fn choose_allocations(
        &self,
        obj: &mut Value,
        needs: &alloc::Needs,
    ) -> Result<(), ApiError> {
        if needs.pod_cidr {
            let candidates = (0..self.ranges.node_cidr_count()).map(|n| self.ranges.node_cidr(n));
            let cidr = self
                .first_free(alloc::POD_CIDR_PREFIX, candidates)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "failed to allocate a pod CIDR: all {} node ranges of {}/{} are taken",
                        self.ranges.node_cidr_count(),
                        self.ranges.pod_net,
                        self.ranges.pod_prefix
                    ))
                })?;
            alloc::set_pod_cidr(obj, &cidr);
        }
        if needs.ip {
            let seed = self.next_seed();
            let candidates = (0..1024).map(|n| self.ranges.candidate_ip(seed, n));
            let ip = self
                .first_free(alloc::IP_PREFIX, candidates)
                .await?
                .ok_or_else(|| {
                    ApiError::internal("failed to allocate a service IP: the range looks full")
                })?;
            alloc::set_cluster_ip(obj, ip);
        }
        // The ports this Service asks for are not in the store yet on create: never choose
        // one of them, nor one chosen a moment ago.
        let mut taken: Vec<u64> = alloc::held(obj)
            .iter()
            .filter_map(|key| key.strip_prefix(alloc::PORT_PREFIX)?.parse().ok())
            .collect();
        for &index in &needs.ports {
            let port = self.free_node_port(&taken).await?.ok_or_else(|| {
                ApiError::internal("failed to allocate a node port: the range looks full")
            })?;
            taken.push(u64::from(port));
            obj["spec"]["ports"][index]["nodePort"] = json!(port);
        }
        if needs.health_check {
            let port = self.free_node_port(&taken).await?.ok_or_else(|| {
                ApiError::internal(
                    "Internal error occurred: failed to allocate a HealthCheck NodePort: the node port range looks full",
                )
            })?;
            obj["spec"]["healthCheckNodePort"] = json!(port);
        }
        Ok(())
    }

    /// A node port free in the store and not one of `taken`.
    async fn free_node_port(&self, taken: &[u64]) -> Result<Option<u16>, ApiError> {
        let seed = self.next_seed();
        let candidates = (0..4096)
            .map(|n| self.ranges.candidate_port(seed, n))
            .filter(|port| !taken.contains(&u64::from(*port)));
        self.first_free(alloc::PORT_PREFIX, candidates).await
    }
}

/// The autoscaling/v1 `Scale` of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = &obj["spec"]["selector"];
    // Scale carries the selector in its string form (`app=web,tier=front`).
    let selector_text = match selector.get("matchLabels").and_then(Value::as_object) {
        Some(labels) => labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        None => selector
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_text,
        },
    })
}

/// Selectors and the name of a single-object watch, applied to objects.
struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    kind: &'static str,
    name: Option<String>,
}

impl Filter {
    fn new(
        resource: &'static Resource,
        target: &Target,
        options: &Options,
    ) -> Result<Self, ApiError> {
        let labels = options
            .label_selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = options
            .field_selector
            .as_deref()
            .map(|s| {
                let selector = FieldSelector::parse(s)?;
                selector.check_supported(resource.group, resource.kind)?;
                Ok(selector)
            })
            .transpose()
            .map_err(|e: strait_api::selector::SelectorError| {
                ApiError::bad_request(e.to_string())
            })?;
        Ok(Self {
            labels,
            fields,
            kind: resource.kind,
            name: target.name.clone(),
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        self.name
            .as_deref()
            .is_none_or(|n| obj["metadata"]["name"].as_str() == Some(n))
            && self.labels.as_ref().is_none_or(|l| l.matches_object(obj))
            && self
                .fields
                .as_ref()
                .is_none_or(|f| f.matches(obj, self.kind))
    }
}

/// The body's apiVersion and kind must be the resource's (filled in when absent).
fn check_type(resource: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of the request is not a {} object",
            resource.kind
        )));
    }
    let api_version = resource.api_version();
    match obj["apiVersion"].as_str() {
        None | Some("") => obj["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match obj["kind"].as_str() {
        None | Some("") => obj["kind"] = json!(resource.kind),
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    Ok(())
}

/// What the server owns in metadata stays as stored, whatever the client sent.
fn carry_system_metadata(old: &Value, new: &mut Value) -> Result<(), ApiError> {
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    let meta = new["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(field) {
            Some(v) => {
                meta.insert(field.to_owned(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    meta.remove("selfLink");
    Ok(())
}

/// Whether anything but metadata and status changed: what bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// What a new object's status starts as: clients do not set status on create, except where
/// the object's own agent registers it (Nodes) or the server fills it.
fn prepare_status_on_create(resource: &Resource, obj: &mut Value) {
    if !resource.has_subresource("status") || matches!(resource.kind, "Node" | "Namespace") {
        return;
    }
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    match resource.kind {
        "Pod" => obj["status"] = json!({"phase": "Pending"}),
        "PersistentVolume" | "PersistentVolumeClaim" => obj["status"] = json!({"phase": "Pending"}),
        _ => {}
    }
}

/// What a delete does with the object's dependents (DeleteOptions' `propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Propagation {
    /// Dependents lose their reference to the object (the `orphan` finalizer).
    Orphan,
    /// The object goes now; the garbage collector deletes its dependents after.
    Background,
    /// The object stays until the dependents that block it are gone (`foregroundDeletion`).
    Foreground,
}

/// The propagation a delete asks for, from `propagationPolicy` or the legacy
/// `orphanDependents` (true: Orphan, false: Background), checked as apimachinery's
/// `ValidateDeleteOptions` checks them; `None` when it asks for neither (the object's
/// finalizers decide, as in the registry's `deletionFinalizersForGarbageCollection`).
fn propagation(delete_options: &DeleteOptions) -> Result<Option<Propagation>, ApiError> {
    let policy = delete_options.propagation_policy.as_deref();
    let orphan = delete_options.orphan_dependents;
    let invalid = |reason: CauseType, message: String| {
        ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[Cause {
                field: "propagationPolicy".to_owned(),
                reason,
                message,
            }],
        )
    };
    match (policy, orphan) {
        (Some(policy), Some(_)) => Err(invalid(
            CauseType::Invalid,
            format!(
                "Invalid value: \"{policy}\": orphanDependents and deletionPropagation cannot be both set"
            ),
        )),
        (Some("Orphan"), None) => Ok(Some(Propagation::Orphan)),
        (Some("Background"), None) => Ok(Some(Propagation::Background)),
        (Some("Foreground"), None) => Ok(Some(Propagation::Foreground)),
        (Some(other), None) => Err(invalid(
            CauseType::NotSupported,
            format!(
                "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
        )),
        (None, Some(true)) => Ok(Some(Propagation::Orphan)),
        (None, Some(false)) => Ok(Some(Propagation::Background)),
        (None, None) => Ok(None),
    }
}

/// The garbage collector's finalizers.
const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

fn finalizer_list(obj: &Value) -> Vec<Value> {
    obj["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn set_finalizers(obj: &mut Value, finalizers: Vec<Value>) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        if finalizers.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".to_owned(), Value::Array(finalizers));
        }
    }
}

/// The object's finalizers after a delete with `propagation`, as kube-apiserver's
/// `deletionFinalizersForGarbageCollection`: an explicit policy replaces whichever of
/// `orphan` and `foregroundDeletion` the object had; no policy leaves them as they are
/// (so a second plain delete keeps an orphaning or foreground deletion going).
fn gc_finalizers(obj: &Value, propagation: Option<Propagation>) -> Vec<Value> {
    let mut finalizers = finalizer_list(obj);
    let Some(propagation) = propagation else {
        return finalizers;
    };
    finalizers.retain(|f| f != ORPHAN && f != FOREGROUND);
    match propagation {
        Propagation::Orphan => finalizers.push(json!(ORPHAN)),
        Propagation::Foreground => finalizers.push(json!(FOREGROUND)),
        Propagation::Background => {}
    }
    finalizers
}

/// The store writes a Service's allocations with it: new ones must be free, dropped ones go.
fn allocation_ops(txn: &mut Txn, key: &str, old: Option<&Value>, new: &Value, resource: &Resource) {
    if !alloc::allocates(resource.kind) {
        return;
    }
    let before = old.map(alloc::held).unwrap_or_default();
    let after = alloc::held(new);
    for held in &after {
        if !before.contains(held) {
            txn.conditions.push((held.clone(), Condition::Absent));
            txn.ops.push(Op::Put {
                key: held.clone(),
                value: key.as_bytes().to_vec(),
                lease: 0,
            });
        }
    }
    for held in before {
        if !after.contains(&held) {
            txn.ops.push(Op::Delete { key: held });
        }
    }
}

/// The error for refused addresses or ports.
fn refusal(resource: &Resource, name: &str, refused: alloc::Refused) -> ApiError {
    match refused {
        alloc::Refused::Invalid(causes) => {
            ApiError::invalid(resource.group, resource.kind, name, &causes)
        }
        alloc::Refused::Internal(message) => ApiError::internal(message),
    }
}

/// Whether the failing allocation key is one the server chose (not in the request).
fn chosen_by_us(key: &str, requested: &Value) -> bool {
    !alloc::held(requested).iter().any(|k| k == key)
}

fn list_prefix(resource: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{}{ns}/", resource.storage_prefix()),
        None => resource.storage_prefix(),
    }
}

/// The stored object with its resourceVersion.
pub fn decode(kv: &KeyValue) -> Value {
    let mut obj: Value = serde_json::from_slice(&kv.value).unwrap_or_else(|e| {
        // Only this server writes the store; a value it cannot read is reported, not hidden.
        tracing::error!(key = %kv.key, error = %e, "stored object is not JSON");
        json!({"metadata": {}})
    });
    set_resource_version(&mut obj, kv.mod_revision);
    obj
}

fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    strip_resource_version(&mut obj);
    serde_json::to_vec(&obj).expect("a JSON value always serializes")
}

fn set_resource_version(obj: &mut Value, revision: Revision) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["resourceVersion"] = json!(revision.to_string());
}

fn strip_resource_version(obj: &mut Value) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
}

fn parse_revision(rv: &str, field: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid {field}: {rv:?}")))
}

fn encode_continue(revision: Revision, key: &str) -> String {
    let token = json!({"v": "strait/1", "rv": revision, "start": key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request(format!("continue token {token:?} is not valid"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match (value["rv"].as_i64(), value["start"].as_str()) {
        (Some(rv), Some(start)) => Ok((rv, start.to_owned())),
        _ => Err(bad()),
    }
}

/// Now, as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Five characters from kube-apiserver's alphabet for generateName (no vowels, no
/// look-alikes, so no words and no ambiguity).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    let _ = getrandom::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// How long a watch lasts without `timeoutSeconds`: kube-apiserver picks 30–60 minutes at
/// random so that reconnections spread out.
pub fn default_watch_timeout() -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    Duration::from_secs(1800 + u64::from(u16::from_le_bytes(byte)) % 1800)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_bad_ones_are_refused() {
        let token = encode_continue(42, "/registry/core/pods/a/b");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "/registry/core/pods/a/b".to_owned())
        );
        assert_eq!(decode_continue("garbage!").unwrap_err().code, 400);
    }

    #[test]
    fn generation_follows_the_spec_not_metadata_or_status() {
        let old =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {}});
        let relabelled = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let scaled = json!({"metadata": {}, "spec": {"replicas": 2}});
        assert!(!spec_changed(&old, &relabelled));
        assert!(spec_changed(&old, &scaled));
    }

    #[test]
    fn propagation_comes_from_the_policy_or_the_legacy_flag_never_both() {
        let from = |query: &str, body: Value| {
            let query = Options::parse(Some(query)).unwrap();
            propagation(&DeleteOptions::from_request(&query, &body))
        };
        assert_eq!(from("", Value::Null).unwrap(), None);
        assert_eq!(
            from("propagationPolicy=Foreground", Value::Null).unwrap(),
            Some(Propagation::Foreground)
        );
        assert_eq!(
            from("", json!({"propagationPolicy": "Orphan"})).unwrap(),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            from("", json!({"orphanDependents": true})).unwrap(),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            from("", json!({"orphanDependents": false})).unwrap(),
            Some(Propagation::Background)
        );
        // The legacy query parameter, read as apimachinery reads a bool parameter.
        for (query, want) in [
            ("orphanDependents=true", Propagation::Orphan),
            ("orphanDependents=", Propagation::Orphan),
            ("orphanDependents=yes", Propagation::Orphan),
            ("orphanDependents=false", Propagation::Background),
            ("orphanDependents=FALSE", Propagation::Background),
            ("orphanDependents=0", Propagation::Background),
        ] {
            assert_eq!(from(query, Value::Null).unwrap(), Some(want), "{query}");
        }
        // A body is the whole of the options: the query's count for nothing beside it.
        assert_eq!(
            from(
                "orphanDependents=true",
                json!({"propagationPolicy": "Foreground"})
            )
            .unwrap(),
            Some(Propagation::Foreground)
        );
        assert_eq!(from("propagationPolicy=Orphan", json!({})).unwrap(), None);

        for conflicting in [
            from(
                "",
                json!({"propagationPolicy": "Orphan", "orphanDependents": true}),
            ),
            from(
                "propagationPolicy=Background&orphanDependents=false",
                Value::Null,
            ),
        ] {
            let err = conflicting.unwrap_err();
            assert_eq!(err.code, 422);
            assert!(
                err.message
                    .contains("orphanDependents and deletionPropagation cannot be both set"),
                "{}",
                err.message
            );
        }
        let bad = from("", json!({"propagationPolicy": "Sideways"})).unwrap_err();
        assert_eq!(bad.code, 422);
        assert!(
            bad.message
                .contains(r#"supported values: "Foreground", "Background", "Orphan", "nil""#),
            "{}",
            bad.message
        );
    }

    #[test]
    fn a_policy_replaces_the_garbage_collector_finalizers_and_keeps_the_rest() {
        let obj = json!({"metadata": {"finalizers": ["example.com/x", "orphan"]}});
        assert_eq!(
            gc_finalizers(&obj, Some(Propagation::Foreground)),
            [json!("example.com/x"), json!("foregroundDeletion")]
        );
        assert_eq!(
            gc_finalizers(&obj, Some(Propagation::Background)),
            [json!("example.com/x")]
        );
        assert_eq!(gc_finalizers(&obj, None), finalizer_list(&obj));
        assert_eq!(
            gc_finalizers(&json!({"metadata": {}}), Some(Propagation::Orphan)),
            [json!("orphan")]
        );
    }

    #[test]
    fn generated_names_use_the_safe_alphabet() {
        let suffix = random_suffix();
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }
}
