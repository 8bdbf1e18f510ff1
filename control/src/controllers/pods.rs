//! What every workload controller asks of pods and owners, once: label selectors, controller
//! references, activity, readiness and availability, pods from a template, and the
//! "expectations" that keep a controller from acting twice on a burst its watch has not
//! caught up with. All pure except [`Expectations`], which only keeps time.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{Pod, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use serde_json::{Value, json};

/// Whether `labels` match `selector` (matchLabels and matchExpressions, ANDed). An empty
/// selector matches everything, as in Kubernetes.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or(&[]);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// An owner reference naming `owner` as the controller, in the form the API takes.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind, "name": owner.name,
        "uid": owner.uid, "controller": true, "blockOwnerDeletion": true,
    })
}

/// Neither being deleted nor finished: the pod counts toward its owner's replicas.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_finished(pod)
}

/// The pod's phase is Succeeded or Failed.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The pod's phase, `Pending` when it has none yet.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last became True, if it is True (the epoch when the
/// condition carries no time).
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' "available").
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || now.duration_since(since)
                >= jiff::SignedDuration::from_secs(min_ready_seconds.into())
    })
}

/// When a pod ready at `since` becomes available with `min_ready_seconds`; `None` if it
/// already is at `now` (a controller requeues itself for that moment).
pub fn available_in(
    since: jiff::Timestamp,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds.into()))
        .ok()?;
    let left = at.duration_since(now);
    (left.is_positive()).then(|| left.unsigned_abs())
}

/// A pod in `namespace` from `template`, controlled by `owner` (an owner reference), named
/// `name` or, when `name` ends with '-', generated from it.
pub fn pod_from_template(
    template: Option<&PodTemplateSpec>,
    namespace: &str,
    name: &str,
    owner: Value,
) -> Value {
    let template = template
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_default();
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    if name.ends_with('-') {
        metadata["generateName"] = json!(name);
    } else {
        metadata["name"] = json!(name);
    }
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([owner]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

/// The pod's conditions with a DisruptionTarget condition (`reason`, `message`) in place of
/// any earlier one: what a controller writes before it deletes a pod it evicts.
pub fn with_disruption_target(pod: &Pod, reason: &str, message: &str, now: &str) -> Vec<Value> {
    let mut conditions: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != "DisruptionTarget")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    conditions.push(json!({
        "type": "DisruptionTarget", "status": "True", "reason": reason,
        "message": message, "lastTransitionTime": now,
    }));
    conditions
}

/// Whether `want` (a status's fields) differs from `current` (the object's status), a field
/// absent from `current` counting as 0: a controller writes its status only then.
pub fn status_differs(current: &Value, want: &Value) -> bool {
    want.as_object().is_some_and(|want| {
        want.iter()
            .any(|(k, v)| current.get(k).unwrap_or(&json!(0)) != v)
    })
}

/// How long creations and deletions not yet seen through the watch hold an owner back
/// (kube-controller-manager's expectations TTL).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(30);

/// Pods an owner created or deleted that its watch has not shown yet, per owner uid
/// (kube-controller-manager's "expectations"): while any are outstanding the owner is not
/// planned again, or a burst of creations would be doubled.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: HashMap<String, Pending>,
}

#[derive(Debug)]
struct Pending {
    /// Owned pods the watch should show once every creation is seen.
    at_least: usize,
    /// Pods deleted that the watch still shows.
    deleted: Vec<String>,
    since: Instant,
}

impl Expectations {
    /// Record that `owner` acted: it owned `owned` pods, created `created` and deleted
    /// `deleted` (by name).
    pub fn expect(&mut self, owner: &str, owned: usize, created: usize, deleted: Vec<String>) {
        if created == 0 && deleted.is_empty() {
            return;
        }
        let at_least = (owned + created).saturating_sub(deleted.len());
        self.pending.insert(
            owner.to_owned(),
            Pending {
                at_least,
                deleted,
                since: Instant::now(),
            },
        );
    }

    /// Whether `owner` may be planned now that the watch shows `owned` active pods, and
    /// `still_there` tells which deleted pods it still shows active. Clears what is met,
    /// and what has waited longer than [`EXPECTATIONS_TTL`] (a pod removed before we saw
    /// it must not stall its owner).
    pub fn satisfied(
        &mut self,
        owner: &str,
        owned: usize,
        still_there: impl Fn(&str) -> bool,
    ) -> bool {
        let Some(pending) = self.pending.get(owner) else {
            return true;
        };
        let met = owned >= pending.at_least && !pending.deleted.iter().any(|n| still_there(n));
        if met || pending.since.elapsed() >= EXPECTATIONS_TTL {
            self.pending.remove(owner);
            return true;
        }
        false
    }

    /// Forget an owner that is gone.
    pub fn forget(&mut self, owner: &str) {
        self.pending.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn selectors_and_the_expressions_kubernetes_defines() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }))
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "a")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "c")])
        ));
        assert!(!selector_matches(
            &selector,
            &labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn availability_waits_min_ready_seconds_from_the_ready_transition() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        );
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert!(is_ready(&p) && is_active(&p));
        assert!(is_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2026-01-01T00:00:09Z")));
        assert!(is_available(&p, 10, at("2026-01-01T00:00:10Z")));
        assert_eq!(
            available_in(at("2026-01-01T00:00:00Z"), 10, at("2026-01-01T00:00:04Z")),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            available_in(at("2026-01-01T00:00:00Z"), 10, at("2026-01-01T00:00:11Z")),
            None
        );
        let done = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded"}}));
        assert!(!is_active(&done) && is_finished(&done) && !is_ready(&done));
    }

    #[test]
    fn expectations_hold_an_owner_until_the_watch_catches_up() {
        let mut e = Expectations::default();
        e.expect("rs", 1, 2, vec!["old".into()]);
        assert!(!e.satisfied("rs", 1, |_| false), "creations not seen yet");
        assert!(
            !e.satisfied("rs", 2, |n| n == "old"),
            "deletion not seen yet"
        );
        assert!(e.satisfied("rs", 2, |_| false));
        assert!(e.satisfied("rs", 0, |_| true), "nothing expected any more");
    }
}
