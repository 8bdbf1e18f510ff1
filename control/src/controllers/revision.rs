//! ControllerRevisions, as the DaemonSet and StatefulSet controllers of kube-controller-manager
//! keep them: one per distinct pod template a set has had, named `<set>-<hash>`, holding the
//! template as a strategic merge patch (`{"spec": {"template": {…, "$patch": "replace"}}}`,
//! what `kubectl rollout history --revision` and `rollout undo` read back) and numbered so the
//! newest template has the highest `revision`. Going back to an older template renumbers its
//! revision rather than creating a copy. [`sync`] says what to create, renumber and prune
//! (pure); [`create`] and [`renumber_and_prune`] are the writes both controllers make of it.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::api::{apps::v1::ControllerRevision, core::v1::PodTemplateSpec};
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use super::pods::controller_uid;

/// The pod label naming the revision a pod was made from (the hash for a DaemonSet, the
/// revision's name for a StatefulSet, as upstream).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The characters Kubernetes uses to render hashes in names (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of a pod template: 32-bit FNV-1a over its JSON, each decimal digit rendered in
/// [`SAFE`] characters as `rand.SafeEncodeString` does.
pub fn hash(template: &PodTemplateSpec) -> String {
    hash_with_collisions(template, 0)
}

/// [`hash`] for a set that has met `collisions` revision names taken by other objects
/// (`status.collisionCount`): a nonzero count joins the hashed bytes, as upstream's
/// `HashControllerRevision` does, so each collision yields a new name.
pub fn hash_with_collisions(template: &PodTemplateSpec, collisions: i32) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if collisions != 0 {
        bytes.extend_from_slice(&collisions.to_le_bytes());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_string()
        .bytes()
        .map(|d| char::from(SAFE[usize::from(d) % SAFE.len()]))
        .collect()
}

/// A revision's `data`: the template as the patch that restores it.
pub fn data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".to_owned(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision holds, if its data is one.
pub fn template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// The revisions `owner_uid` controls, oldest revision first.
pub fn owned(all: &[Arc<ControllerRevision>], owner_uid: &str) -> Vec<Arc<ControllerRevision>> {
    let mut mine: Vec<_> = all
        .iter()
        .filter(|r| controller_uid(&r.metadata) == Some(owner_uid))
        .cloned()
        .collect();
    mine.sort_by_key(|r| (r.revision, r.name_any()));
    mine
}

/// What to do with a set's revisions.
#[derive(Debug, Default, PartialEq)]
pub struct Sync {
    /// The revision of the set's current template: its name, hash and number.
    pub name: String,
    pub hash: String,
    pub revision: i64,
    /// Create it (no revision holds the template yet).
    pub create: bool,
    /// Give this existing revision the number `revision` (an older template came back).
    pub renumber: Option<String>,
    /// Revisions beyond the history limit that no pod uses, oldest first.
    pub prune: Vec<String>,
}

/// The revision for `template` among `owned` (oldest first, from [`owned`]), for the set
/// `set_name`; `in_use` names the revisions pods still carry (never pruned) and `limit` is
/// `revisionHistoryLimit`.
pub fn sync(
    set_name: &str,
    template: &PodTemplateSpec,
    owned: &[Arc<ControllerRevision>],
    in_use: &BTreeSet<String>,
    limit: i32,
) -> Sync {
    let hash = hash(template);
    let wanted = data(template);
    let newest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    let matching = owned
        .iter()
        .rev()
        .find(|r| r.data.as_ref().is_some_and(|d| d.0 == wanted));
    let mut sync = match matching {
        Some(r) => Sync {
            name: r.name_any(),
            hash: r
                .labels()
                .get(HASH_LABEL)
                .cloned()
                .unwrap_or_else(|| hash.clone()),
            revision: if r.revision == newest {
                newest
            } else {
                newest + 1
            },
            renumber: (r.revision != newest).then(|| r.name_any()),
            ..Sync::default()
        },
        None => Sync {
            name: format!("{set_name}-{hash}"),
            hash,
            revision: newest + 1,
            create: true,
            ..Sync::default()
        },
    };
    let old: Vec<&Arc<ControllerRevision>> = owned
        .iter()
        .filter(|r| r.name_any() != sync.name && !in_use.contains(&r.name_any()))
        .filter(|r| {
            !r.labels()
                .get(HASH_LABEL)
                .is_some_and(|h| in_use.contains(h))
        })
        .collect();
    let keep = usize::try_from(limit).unwrap_or(0);
    sync.prune = old
        .iter()
        .take(old.len().saturating_sub(keep))
        .map(|r| r.name_any())
        .collect();
    sync
}

/// A new revision object for `sync`, controlled by `owner` (an owner reference), labelled
/// with the template's labels and `hash_label: hash`, annotated as the set is.
pub fn object(
    sync: &Sync,
    namespace: &str,
    template: &PodTemplateSpec,
    hash_label: &str,
    owner: Value,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(hash_label.to_owned(), sync.hash.clone());
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": sync.name, "namespace": namespace, "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner]},
        "data": data(template),
        "revision": sync.revision,
    })
}

/// Creates the revision `object` (from [`object`]); `Ok(false)` when a revision of that name
/// exists already (the watch has not shown it yet, or a hash collision: the caller judges).
pub async fn create(api: &Api<ControllerRevision>, object: Value) -> kube::Result<bool> {
    let object = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Gives an older revision that came back its new number, and deletes the revisions beyond
/// the history limit (one already gone is fine).
pub async fn renumber_and_prune(api: &Api<ControllerRevision>, sync: &Sync) -> kube::Result<()> {
    if let Some(name) = &sync.renumber {
        let patch = json!({"revision": sync.revision});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for name in &sync.prune {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}))
        .unwrap()
    }

    fn revision(name: &str, image: &str, number: i64) -> Arc<ControllerRevision> {
        let t = template(image);
        let mut value = object(
            &Sync {
                name: name.to_owned(),
                hash: hash(&t),
                revision: number,
                ..Sync::default()
            },
            "d",
            &t,
            HASH_LABEL,
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x", "uid": "u", "controller": true}),
            &Default::default(),
        );
        value["metadata"]["uid"] = json!(format!("{name}-uid"));
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn hashes_are_stable_safe_and_differ_by_template() {
        let a = hash(&template("a"));
        assert_eq!(a, hash(&template("a")));
        assert_ne!(a, hash(&template("b")));
        assert!(a.bytes().all(|c| SAFE.contains(&c)), "{a}");
        assert_eq!(a, hash_with_collisions(&template("a"), 0));
        assert_ne!(a, hash_with_collisions(&template("a"), 1));
        let r = revision("x-1", "a", 1);
        assert_eq!(super::template(&r), Some(template("a")));
        assert_eq!(
            r.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
    }

    #[test]
    fn a_new_template_gets_the_next_number_and_an_old_one_is_renumbered() {
        let owned = vec![revision("x-a", "a", 1), revision("x-b", "b", 2)];
        let none = BTreeSet::new();
        let c = sync("x", &template("c"), &owned, &none, 10);
        assert!(c.create && c.revision == 3 && c.renumber.is_none());
        assert_eq!(c.name, format!("x-{}", hash(&template("c"))));
        let b = sync("x", &template("b"), &owned, &none, 10);
        assert_eq!((b.create, b.revision, b.renumber), (false, 2, None));
        let a = sync("x", &template("a"), &owned, &none, 10);
        assert_eq!(a.renumber.as_deref(), Some("x-a"));
        assert_eq!((a.create, a.revision), (false, 3));
    }

    #[test]
    fn history_beyond_the_limit_is_pruned_unless_pods_use_it() {
        let owned = vec![
            revision("x-a", "a", 1),
            revision("x-b", "b", 2),
            revision("x-c", "c", 3),
        ];
        let s = sync("x", &template("c"), &owned, &BTreeSet::new(), 1);
        assert_eq!(s.prune, ["x-a"]);
        let in_use = BTreeSet::from(["x-a".to_owned()]);
        assert!(
            sync("x", &template("c"), &owned, &in_use, 1)
                .prune
                .is_empty()
        );
        assert_eq!(
            sync("x", &template("c"), &owned, &BTreeSet::new(), 0).prune,
            ["x-a", "x-b"]
        );
    }
}
