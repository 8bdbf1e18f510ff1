//! The garbage collector, as kube-controller-manager's: objects whose owners are all gone
//! are deleted, and the API server's deletion finalizers are carried out.
//!
//! It watches every kind that can carry `ownerReferences` (every listable, watchable
//! resource of the registry but Events, which kube-controller-manager ignores too) and keeps
//! their identities, owners and finalizers by uid: the owner graph. Each pass plans from a
//! snapshot of that graph ([`Graph`], pure), then acts:
//!
//! - a dependent whose owners are all absent is deleted (in the background, or in the
//!   foreground when an owner is itself being deleted in the foreground and the dependent has
//!   dependents of its own). Absence is confirmed by a live GET, since a cache can lag, and an
//!   object of the owner's name with another uid counts as absent;
//! - references to absent owners are removed from dependents that keep a live owner;
//! - `orphan` (a delete with `propagationPolicy: Orphan`): the owner's reference is removed
//!   from every dependent, then the finalizer;
//! - `foregroundDeletion`: the dependents are deleted, and the finalizer goes once none with
//!   `blockOwnerDeletion: true` is left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::{Value, json};
use strait_api::registry::{self, Resource};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// The finalizer a delete with `propagationPolicy: Orphan` leaves.
pub const ORPHAN: &str = "orphan";
/// The finalizer a delete with `propagationPolicy: Foreground` leaves.
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it.
#[derive(Clone, Debug)]
pub struct Item {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Item {
    /// The item from an object's metadata; `None` without a uid or a name.
    pub fn from_meta(resource: &'static Resource, meta: &ObjectMeta) -> Option<Self> {
        Some(Self {
            resource,
            namespace: meta.namespace.clone().filter(|_| resource.namespaced),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: its dependents go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// `namespace/name` or `name`, with the kind, for logs and errors.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

/// What an owner reference points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not being deleted in the foreground.
    Solid,
    /// The owner exists and is being deleted in the foreground: it waits for its dependents.
    Waiting,
    /// No object of that kind, name and uid exists.
    Absent,
}

/// Where a live check finds an owner: its resource and namespace. `None` when the reference
/// names a kind Strait does not serve (the collector cannot judge it, so it is left alone).
/// A namespaced owner lives in its dependent's namespace; a cluster-scoped dependent cannot
/// have one (`Some((resource, None))` with a namespaced resource: absent by definition).
pub fn owner_location(
    dependent: &Item,
    reference: &OwnerReference,
) -> Option<(&'static Resource, Option<String>)> {
    let resource = registry::find_kind(&reference.api_version, &reference.kind)?;
    let namespace = if resource.namespaced {
        dependent.namespace.clone()
    } else {
        None
    };
    Some((resource, namespace))
}

/// How a dependent is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// What to do with one dependent, given the state of each of its owners.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Write these owner references (dangling ones removed, waiting owners unblocked).
    SetOwners(Vec<OwnerReference>),
    /// Delete it. `unblock` first writes these owner references (when deleting in the
    /// foreground, so that the waiting owner does not wait on a dependent that waits too).
    Delete {
        propagation: Propagation,
        unblock: Option<Vec<OwnerReference>>,
    },
}

/// An owner deleted with `orphan`: its dependents, each with the owner references it keeps,
/// are released first; then the finalizer goes.
#[derive(Debug)]
pub struct Orphaning<'a> {
    pub owner: &'a Item,
    pub releases: Vec<(&'a Item, Vec<OwnerReference>)>,
}

/// The snapshot the collector plans from: every item by uid, and every uid's dependents.
#[derive(Debug, Default)]
pub struct Graph {
    items: HashMap<String, Item>,
    dependents: HashMap<String, Vec<String>>,
}

impl Graph {
    pub fn new(items: impl IntoIterator<Item = Item>) -> Self {
        let items: HashMap<String, Item> = items.into_iter().map(|i| (i.uid.clone(), i)).collect();
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for item in items.values() {
            for owner in &item.owners {
                let list = dependents.entry(owner.uid.clone()).or_default();
                if !list.contains(&item.uid) {
                    list.push(item.uid.clone());
                }
            }
        }
        for list in dependents.values_mut() {
            list.sort();
        }
        Self { items, dependents }
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// The dependents of `uid` (items naming it as an owner).
    pub fn dependents_of(&self, uid: &str) -> impl Iterator<Item = &Item> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.items.get(d))
    }

    /// The owner's state as far as the cache knows: `None` when the cache does not hold it
    /// (a live check must tell whether it is really absent).
    pub fn cached_owner_state(
        &self,
        dependent: &Item,
        reference: &OwnerReference,
    ) -> Option<OwnerState> {
        let (resource, namespace) = owner_location(dependent, reference)?;
        let owner = self.items.get(&reference.uid)?;
        let same = owner.resource.storage_prefix() == resource.storage_prefix()
            && owner.namespace == namespace
            && owner.name == reference.name;
        same.then(|| {
            if owner.deleting_dependents() {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        })
    }

    /// Owners being deleted with `orphan`, each with the dependents to release.
    pub fn orphanings(&self) -> Vec<Orphaning<'_>> {
        self.items
            .values()
            .filter(|i| i.deleting && i.has_finalizer(ORPHAN))
            .map(|owner| Orphaning {
                owner,
                releases: self
                    .dependents_of(&owner.uid)
                    .map(|d| (d, without_owner(&d.owners, &owner.uid)))
                    .collect(),
            })
            .collect()
    }

    /// Owners being deleted in the foreground with no blocking dependent left: their
    /// `foregroundDeletion` finalizer goes.
    pub fn foreground_done(&self) -> Vec<&Item> {
        self.items
            .values()
            .filter(|i| i.deleting_dependents())
            .filter(|owner| {
                !self.dependents_of(&owner.uid).any(|d| {
                    d.owners
                        .iter()
                        .any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true))
                })
            })
            .collect()
    }

    /// Items whose owners need judging: they have owners and are not being deleted
    /// (kube-controller-manager leaves an object being deleted to its finalizers).
    pub fn with_owners(&self) -> impl Iterator<Item = &Item> {
        self.items
            .values()
            .filter(|i| !i.owners.is_empty() && !i.deleting)
    }

    pub fn has_dependents(&self, uid: &str) -> bool {
        self.dependents_of(uid).next().is_some()
    }
}

fn without_owner(owners: &[OwnerReference], uid: &str) -> Vec<OwnerReference> {
    owners.iter().filter(|o| o.uid != uid).cloned().collect()
}

/// The decision for `item` given its owners' states (in the order of `item.owners`), as
/// kube-controller-manager's `attemptToDeleteItem`; `None` when nothing is to be done.
pub fn decide(item: &Item, states: &[OwnerState], has_dependents: bool) -> Option<Decision> {
    let state_of = |i: usize| states.get(i).copied().unwrap_or(OwnerState::Solid);
    let count = |s: OwnerState| (0..item.owners.len()).filter(|i| state_of(*i) == s).count();
    let (solid, absent, waiting) = (
        count(OwnerState::Solid),
        count(OwnerState::Absent),
        count(OwnerState::Waiting),
    );
    // References to absent owners go; those to waiting owners stop blocking them.
    let pruned = || -> Vec<OwnerReference> {
        item.owners
            .iter()
            .enumerate()
            .filter(|(i, _)| state_of(*i) != OwnerState::Absent)
            .map(|(i, o)| {
                let mut o = o.clone();
                if state_of(i) == OwnerState::Waiting && o.block_owner_deletion == Some(true) {
                    o.block_owner_deletion = Some(false);
                }
                o
            })
            .collect()
    };
    if solid > 0 {
        let owners = pruned();
        return (owners != item.owners).then_some(Decision::SetOwners(owners));
    }
    if waiting > 0 && has_dependents {
        // Its own dependents would block it while it blocks its owner: unblock the owner,
        // then delete it in the foreground so the deletion still waits for the whole tree.
        let owners = pruned();
        return Some(Decision::Delete {
            propagation: Propagation::Foreground,
            unblock: (owners != item.owners).then_some(owners),
        });
    }
    debug_assert!(absent + waiting == item.owners.len());
    let propagation = if item.has_finalizer(ORPHAN) {
        Propagation::Orphan
    } else if item.has_finalizer(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Some(Decision::Delete {
        propagation,
        unblock: None,
    })
}

/// The resources the collector watches: listable and watchable, Events left out, one
/// version per storage (autoscaling is served twice).
pub fn watched() -> Vec<&'static Resource> {
    let mut seen = std::collections::HashSet::new();
    registry::resources()
        .iter()
        .filter(|r| r.supports("list") && r.supports("watch") && r.plural != "events")
        .filter(|r| seen.insert(r.storage_prefix()))
        .collect()
}

/// The kube-rs description of `resource`.
pub fn api_resource(resource: &Resource) -> ApiResource {
    ApiResource {
        group: resource.group.to_owned(),
        version: resource.version.to_owned(),
        api_version: resource.api_version(),
        kind: resource.kind.to_owned(),
        plural: resource.plural.to_owned(),
    }
}

fn api_for(client: &Client, resource: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = api_resource(resource);
    match namespace {
        Some(ns) if resource.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// How long the collector waits for every watch's first list before it starts anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// One watched resource's objects by uid, kept by its watch.
#[derive(Default)]
struct Cache {
    items: HashMap<String, Item>,
    /// Objects of a re-list not yet complete.
    pending: Option<HashMap<String, Item>>,
    ready: bool,
}

impl Cache {
    fn apply(&mut self, resource: &'static Resource, event: watcher::Event<DynamicObject>) {
        let item = |o: &DynamicObject| Item::from_meta(resource, &o.metadata);
        match event {
            watcher::Event::Apply(o) => {
                if let Some(i) = item(&o) {
                    self.items.insert(i.uid.clone(), i);
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(uid) = &o.metadata.uid {
                    self.items.remove(uid);
                }
            }
            watcher::Event::Init => self.pending = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                if let (Some(pending), Some(i)) = (self.pending.as_mut(), item(&o)) {
                    pending.insert(i.uid.clone(), i);
                }
            }
            // A re-list replaces what the cache held, at once.
            watcher::Event::InitDone => {
                if let Some(pending) = self.pending.take() {
                    self.items = pending;
                }
                self.ready = true;
            }
        }
    }
}

/// Watches every owner-bearing kind and collects garbage until the process ends.
pub async fn run(client: Client) {
    let resources = watched();
    let caches: Arc<Mutex<Vec<Cache>>> = Arc::new(Mutex::new(
        resources.iter().map(|_| Cache::default()).collect(),
    ));
    let changed = Arc::new(Notify::new());
    let watches = resources.iter().enumerate().map(|(index, &resource)| {
        let caches = Arc::clone(&caches);
        let changed = Arc::clone(&changed);
        let api = api_for(&client, resource, None);
        watcher(api, watcher::Config::default())
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(event) => {
                        if let Some(cache) = lock(&caches).get_mut(index) {
                            cache.apply(resource, event);
                        }
                    }
                    Err(error) => {
                        warn!(%error, resource = resource.plural, "garbage collector watch failed; retrying");
                    }
                }
                changed.notify_one();
                futures::future::ready(())
            })
    });
    let watches = futures::future::join_all(watches);
    let collect = async {
        // Owners are confirmed absent by a live GET, so a kind whose watch will not sync
        // delays collection but need not stop it (kube-controller-manager also goes on).
        let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            let unsynced: Vec<&str> = lock(&caches)
                .iter()
                .zip(&resources)
                .filter(|(c, _)| !c.ready)
                .map(|(_, r)| r.plural)
                .collect();
            if unsynced.is_empty() {
                info!(resources = resources.len(), "garbage collector synced");
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    ?unsynced,
                    "garbage collector starting before every watch synced"
                );
                break;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
        }
        loop {
            let graph = Graph::new(
                lock(&caches)
                    .iter()
                    .flat_map(|c| c.items.values().cloned())
                    .collect::<Vec<_>>(),
            );
            pass(&client, &graph).await;
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
            // Let a burst of events settle into one pass.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::join!(watches, collect);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep using it.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One pass over the graph: finalizers first, then every dependent's owners.
async fn pass(client: &Client, graph: &Graph) {
    for orphaning in graph.orphanings() {
        if let Err(error) = orphan(client, &orphaning).await {
            warn!(owner = %orphaning.owner.describe(), %error, "orphaning dependents failed");
        }
    }
    for owner in graph.foreground_done() {
        match remove_finalizer(client, owner, FOREGROUND).await {
            Ok(()) => info!(owner = %owner.describe(), "dependents deleted; owner deleted"),
            Err(error) => {
                warn!(owner = %owner.describe(), %error, "removing foregroundDeletion failed");
            }
        }
    }
    for item in graph.with_owners() {
        if let Err(error) = sync_owners(client, graph, item).await {
            warn!(object = %item.describe(), %error, "garbage collection failed");
        }
    }
}

/// Judge one dependent's owners (live where the cache does not know them) and act.
async fn sync_owners(client: &Client, graph: &Graph, item: &Item) -> kube::Result<()> {
    let mut states = Vec::with_capacity(item.owners.len());
    for reference in &item.owners {
        let state = match graph.cached_owner_state(item, reference) {
            Some(state) => state,
            None => live_owner_state(client, item, reference).await?,
        };
        states.push(state);
    }
    let Some(decision) = decide(item, &states, graph.has_dependents(&item.uid)) else {
        return Ok(());
    };
    match decision {
        Decision::SetOwners(owners) => {
            set_owners(client, item, &owners).await?;
            info!(object = %item.describe(), "removed references to absent owners");
        }
        Decision::Delete {
            propagation,
            unblock,
        } => {
            if let Some(owners) = unblock {
                set_owners(client, item, &owners).await?;
            }
            delete(client, item, propagation).await?;
            info!(object = %item.describe(), ?propagation, "owners gone; deleted");
        }
    }
    Ok(())
}

/// The owner's state, asked of the API: absent when there is no such object or it has
/// another uid (a new object of the same name is not the owner).
async fn live_owner_state(
    client: &Client,
    item: &Item,
    reference: &OwnerReference,
) -> kube::Result<OwnerState> {
    let Some((resource, namespace)) = owner_location(item, reference) else {
        // A kind this API does not serve: nothing proves the owner absent.
        debug!(object = %item.describe(), kind = %reference.kind, "owner of an unknown kind");
        return Ok(OwnerState::Solid);
    };
    if resource.namespaced && namespace.is_none() {
        // A cluster-scoped object cannot be owned by a namespaced one.
        return Ok(OwnerState::Absent);
    }
    let api = api_for(client, resource, namespace.as_deref());
    Ok(match api.get_opt(&reference.name).await? {
        Some(owner) if owner.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
            let deleting_dependents = owner.metadata.deletion_timestamp.is_some()
                && owner
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND);
            if deleting_dependents {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            }
        }
        _ => OwnerState::Absent,
    })
}

fn ignore_gone(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        // Gone already, or changed since the cache saw it: the next pass sees the news.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

/// Write `owners` as the item's owner references, if it has not changed since it was seen.
async fn set_owners(client: &Client, item: &Item, owners: &[OwnerReference]) -> kube::Result<()> {
    let owners = if owners.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(owners).map_err(kube::Error::SerdeError)?
    };
    let patch = json!({"metadata": {
        "ownerReferences": owners, "resourceVersion": item.resource_version,
    }});
    let api = api_for(client, item.resource, item.namespace.as_deref());
    ignore_gone(
        api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop),
    )
}

async fn remove_finalizer(client: &Client, item: &Item, finalizer: &str) -> kube::Result<()> {
    let rest: Vec<&String> = item.finalizers.iter().filter(|f| *f != finalizer).collect();
    let finalizers = if rest.is_empty() {
        Value::Null
    } else {
        json!(rest)
    };
    let patch = json!({"metadata": {
        "finalizers": finalizers, "resourceVersion": item.resource_version,
    }});
    let api = api_for(client, item.resource, item.namespace.as_deref());
    ignore_gone(
        api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop),
    )
}

/// Release every dependent from `owner`, then remove its `orphan` finalizer.
async fn orphan(client: &Client, orphaning: &Orphaning<'_>) -> kube::Result<()> {
    let Orphaning { owner, releases } = orphaning;
    let mut released = 0;
    for (dependent, owners) in releases {
        let api = api_for(client, dependent.resource, dependent.namespace.as_deref());
        let owners = if owners.is_empty() {
            Value::Null
        } else {
            serde_json::to_value(owners).map_err(kube::Error::SerdeError)?
        };
        let patch = json!({"metadata": {
            "ownerReferences": owners, "resourceVersion": dependent.resource_version,
        }});
        match api
            .patch(
                &dependent.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => released += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => released += 1,
            // Changed since seen: the next pass releases it from the newer state.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    if released == releases.len() {
        remove_finalizer(client, owner, ORPHAN).await?;
        info!(owner = %owner.describe(), dependents = released, "dependents orphaned");
    }
    Ok(())
}

async fn delete(client: &Client, item: &Item, propagation: Propagation) -> kube::Result<()> {
    let api = api_for(client, item.resource, item.namespace.as_deref());
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Background => kube::api::PropagationPolicy::Background,
            Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
            Propagation::Orphan => kube::api::PropagationPolicy::Orphan,
        }),
        // Only this object: a new one of the same name is not garbage.
        preconditions: Some(Preconditions {
            uid: Some(item.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    ignore_gone(api.delete(&item.name, &params).await.map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn item(plural: &str, name: &str, uid: &str, owners: Vec<OwnerReference>) -> Item {
        let group = if plural == "replicasets" { "apps" } else { "" };
        Item {
            resource: registry::find(group, "v1", plural).unwrap(),
            namespace: Some("d".to_owned()),
            name: name.to_owned(),
            uid: uid.to_owned(),
            resource_version: "7".to_owned(),
            owners,
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    fn deleting(mut i: Item, finalizer: &str) -> Item {
        i.deleting = true;
        i.finalizers.push(finalizer.to_owned());
        i
    }

    #[test]
    fn dependents_of_absent_owners_are_deleted_in_the_background() {
        let pod = item(
            "pods",
            "web-1",
            "p1",
            vec![reference("ReplicaSet", "web", "rs", true)],
        );
        assert_eq!(
            decide(&pod, &[OwnerState::Absent], false),
            Some(Decision::Delete {
                propagation: Propagation::Background,
                unblock: None
            })
        );
        assert_eq!(decide(&pod, &[OwnerState::Solid], false), None);
        // An object that asked for orphaning keeps asking when the collector deletes it.
        let mut orphaning = pod.clone();
        orphaning.finalizers.push(ORPHAN.to_owned());
        assert!(matches!(
            decide(&orphaning, &[OwnerState::Absent], false),
            Some(Decision::Delete {
                propagation: Propagation::Orphan,
                ..
            })
        ));
    }

    #[test]
    fn a_live_owner_keeps_the_dependent_and_dangling_references_go() {
        let cm = item(
            "configmaps",
            "c",
            "c1",
            vec![
                reference("ConfigMap", "gone", "g", false),
                reference("ConfigMap", "here", "h", false),
            ],
        );
        assert_eq!(
            decide(&cm, &[OwnerState::Absent, OwnerState::Solid], false),
            Some(Decision::SetOwners(vec![reference(
                "ConfigMap",
                "here",
                "h",
                false
            )]))
        );
    }

    #[test]
    fn foreground_owners_get_their_dependents_deleted_and_unblocked() {
        let rs = item(
            "replicasets",
            "web",
            "rs",
            vec![reference("Deployment", "d", "dep", true)],
        );
        // Its own pods would block it: unblock the deployment, then delete in the foreground.
        let mut expected_owner = rs.owners[0].clone();
        expected_owner.block_owner_deletion = Some(false);
        assert_eq!(
            decide(&rs, &[OwnerState::Waiting], true),
            Some(Decision::Delete {
                propagation: Propagation::Foreground,
                unblock: Some(vec![expected_owner.clone()])
            })
        );
        // Without dependents of its own it simply goes.
        assert_eq!(
            decide(&rs, &[OwnerState::Waiting], false),
            Some(Decision::Delete {
                propagation: Propagation::Background,
                unblock: None
            })
        );
        // With another live owner it stays, no longer blocking the one being deleted.
        let two = item(
            "pods",
            "p",
            "p",
            vec![
                reference("ReplicaSet", "web", "rs", true),
                reference("ConfigMap", "c", "c", false),
            ],
        );
        let mut owners = two.owners.clone();
        owners[0].block_owner_deletion = Some(false);
        assert_eq!(
            decide(&two, &[OwnerState::Waiting, OwnerState::Solid], false),
            Some(Decision::SetOwners(owners))
        );
    }

    #[test]
    fn the_graph_finds_owners_by_uid_kind_namespace_and_name() {
        let rs = item("replicasets", "web", "rs", vec![]);
        let pod = item(
            "pods",
            "p",
            "p1",
            vec![reference("ReplicaSet", "web", "rs", true)],
        );
        let impostor = item(
            "pods",
            "q",
            "p2",
            vec![reference("ReplicaSet", "other-name", "rs", true)],
        );
        let graph = Graph::new(vec![rs.clone(), pod.clone(), impostor.clone()]);
        assert_eq!(
            graph.cached_owner_state(&pod, &pod.owners[0]),
            Some(OwnerState::Solid)
        );
        assert_eq!(
            graph.cached_owner_state(&impostor, &impostor.owners[0]),
            None
        );
        let mut elsewhere = pod.clone();
        elsewhere.namespace = Some("other".to_owned());
        assert_eq!(graph.cached_owner_state(&elsewhere, &pod.owners[0]), None);
        assert!(graph.has_dependents("rs"));
        assert_eq!(graph.with_owners().count(), 2);
    }

    #[test]
    fn finalizers_are_carried_out_once_dependents_allow() {
        let rs = deleting(item("replicasets", "web", "rs", vec![]), FOREGROUND);
        let blocking = item(
            "pods",
            "p",
            "p1",
            vec![reference("ReplicaSet", "web", "rs", true)],
        );
        let graph = Graph::new(vec![rs.clone(), blocking.clone()]);
        assert!(graph.foreground_done().is_empty());
        assert_eq!(
            graph.cached_owner_state(&blocking, &blocking.owners[0]),
            Some(OwnerState::Waiting)
        );
        let free = item(
            "pods",
            "p",
            "p1",
            vec![reference("ReplicaSet", "web", "rs", false)],
        );
        let graph = Graph::new(vec![rs.clone(), free]);
        assert_eq!(graph.foreground_done().len(), 1);

        let orphaning = deleting(item("replicasets", "web", "rs", vec![]), ORPHAN);
        let graph = Graph::new(vec![orphaning, blocking]);
        let plans = graph.orphanings();
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].releases.len(), 1);
        assert!(plans[0].releases[0].1.is_empty());
    }

    #[test]
    fn every_owner_bearing_kind_is_watched_once_and_events_are_not() {
        let watched = watched();
        assert!(watched.iter().any(|r| r.kind == "Pod"));
        assert!(watched.iter().any(|r| r.kind == "Namespace"));
        assert!(
            !watched
                .iter()
                .any(|r| r.plural == "events" || r.plural == "bindings")
        );
        let hpas = watched
            .iter()
            .filter(|r| r.kind == "HorizontalPodAutoscaler")
            .count();
        assert_eq!(hpas, 1);
    }
}
