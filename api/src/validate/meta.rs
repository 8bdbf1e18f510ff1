//! `metadata` checks every object gets, label and annotation syntax, and label selectors
//! (their syntax and whether they match a template's labels).

use serde_json::Value;

use super::field::{Errs, index, join, peek};
use super::names;

/// The most bytes all annotations of one object may hold together (keys plus values).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// How a kind's `metadata.name` is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// An RFC 1123 subdomain (most kinds).
    Subdomain,
    /// An RFC 1123 label (Namespace, StatefulSet).
    Label,
    /// A DNS-1035 label: a letter first (Service).
    Dns1035,
    /// Anything that fits in one URL path segment (RBAC objects).
    PathSegment,
}

impl NameRule {
    /// The messages for `name`; `prefix` is set for a `generateName`, which may end in `-`.
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        let name = if prefix && self != Self::PathSegment {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            Self::Subdomain => names::dns1123_subdomain(name),
            Self::Label => names::dns1123_label(name),
            Self::Dns1035 => names::dns1035_label(name),
            Self::PathSegment if prefix => names::path_segment_name(name)
                .into_iter()
                .filter(|m| m.starts_with("may not contain"))
                .collect(),
            Self::PathSegment => names::path_segment_name(name),
        }
    }
}

/// A generated name gets a random suffix, so a trailing `-` in the prefix is fine; upstream
/// replaces the last two characters with `a` before checking.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]);
        }
    }
    name.to_owned()
}

/// Checks `metadata`: the name (or generateName) by `rule`, labels, annotations, owner
/// references and finalizers.
pub(crate) fn validate_object_meta(e: &mut Errs, obj: &Value, rule: NameRule) {
    let Some(meta) = e.obj(obj, "", "metadata") else {
        if obj.get("metadata").is_none() || obj.get("metadata") == Some(&Value::Null) {
            e.required("metadata.name", "name or generateName is required");
        }
        return;
    };
    if let Some(generate) = e.str(meta, "metadata", "generateName")
        && !generate.is_empty()
    {
        for msg in rule.check(generate, true) {
            e.invalid("metadata.generateName", generate, &msg);
        }
    }
    match e.str(meta, "metadata", "name") {
        None | Some("") => e.required("metadata.name", "name or generateName is required"),
        Some(name) => {
            for msg in rule.check(name, false) {
                e.invalid("metadata.name", name, &msg);
            }
        }
    }
    if let Some(generation) = e.int(meta, "metadata", "generation") {
        e.nonnegative("metadata.generation", generation);
    }
    validate_labels(e, meta, "metadata", "labels");
    validate_annotations(e, meta, "metadata", "annotations");
    validate_owner_references(e, meta);
    for (i, finalizer) in e
        .strs(meta, "metadata", "finalizers")
        .into_iter()
        .enumerate()
    {
        validate_finalizer(e, &index("metadata.finalizers", i), finalizer);
    }
}

/// Finalizer names are qualified names; unprefixed ones must be a standard finalizer.
pub(crate) fn validate_finalizer(e: &mut Errs, path: &str, finalizer: &str) {
    let msgs = names::qualified_name(finalizer);
    for msg in &msgs {
        e.invalid(path, finalizer, msg);
    }
    if !finalizer.contains('/')
        && !matches!(finalizer, "kubernetes" | "orphan" | "foregroundDeletion")
    {
        e.invalid(
            path,
            finalizer,
            "name is neither a standard finalizer name nor is it fully qualified",
        );
    }
}

fn validate_owner_references(e: &mut Errs, meta: &Value) {
    let mut controller: Option<String> = None;
    for (path, owner) in e.objs(meta, "metadata", "ownerReferences") {
        let api_version = e.str_or_empty(owner, &path, "apiVersion");
        if api_version.is_empty() {
            e.required(&join(&path, "apiVersion"), "must not be empty");
        } else if api_version.split('/').count() > 2 || api_version.ends_with('/') {
            e.invalid(
                &join(&path, "apiVersion"),
                api_version,
                "must be <group>/<version> or <version>",
            );
        }
        let kind = e.str_or_empty(owner, &path, "kind");
        if kind.is_empty() {
            e.required(&join(&path, "kind"), "must not be empty");
        }
        let name = e.str_or_empty(owner, &path, "name");
        if name.is_empty() {
            e.required(&join(&path, "name"), "must not be empty");
        }
        if e.str_or_empty(owner, &path, "uid").is_empty() {
            e.required(&join(&path, "uid"), "must not be empty");
        }
        if e.bool(owner, &path, "controller") == Some(true) {
            let this = format!("{kind}/{name}");
            match &controller {
                Some(first) => e.invalid(
                    "metadata.ownerReferences",
                    peek(meta, &["ownerReferences"]).unwrap_or(&Value::Null),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                ),
                None => controller = Some(this),
            }
        }
    }
}

/// Checks the label map `parent.key`: keys are qualified names, values label values. Errors
/// point at the map itself, as upstream does.
pub(crate) fn validate_labels(e: &mut Errs, parent: &Value, path: &str, key: &str) {
    let map_path = join(path, key);
    for (k, v) in e.str_map(parent, path, key) {
        for msg in names::qualified_name(k) {
            e.invalid(&map_path, k, &msg);
        }
        for msg in names::label_value(v) {
            e.invalid(&map_path, v, &msg);
        }
    }
}

/// Checks the annotation map `parent.key`: keys are qualified names (case-insensitively),
/// and all of them together hold at most 256 KiB.
pub(crate) fn validate_annotations(e: &mut Errs, parent: &Value, path: &str, key: &str) {
    let map_path = join(path, key);
    let mut total = 0usize;
    for (k, v) in e.str_map(parent, path, key) {
        for msg in names::qualified_name(&k.to_lowercase()) {
            e.invalid(&map_path, k, &msg);
        }
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        e.too_long(&map_path, ANNOTATIONS_MAX_BYTES);
    }
}

/// Checks the label selector at `parent.key` (`matchLabels`, `matchExpressions`).
pub(crate) fn validate_label_selector(e: &mut Errs, parent: &Value, path: &str, key: &str) {
    if let Some(selector) = e.obj(parent, path, key) {
        validate_selector(e, selector, &join(path, key));
    }
}

/// Checks a label selector object at `sel_path`.
pub(crate) fn validate_selector(e: &mut Errs, selector: &Value, sel_path: &str) {
    let sel_path = sel_path.to_owned();
    validate_labels(e, selector, &sel_path, "matchLabels");
    for (req_path, req) in e.objs(selector, &sel_path, "matchExpressions") {
        let operator = e.str_or_empty(req, &req_path, "operator");
        let values = e.strs(req, &req_path, "values");
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &join(&req_path, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.forbidden(
                        &join(&req_path, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => e.invalid(
                &join(&req_path, "operator"),
                other,
                "not a valid selector operator",
            ),
        }
        let key_name = e.str_or_empty(req, &req_path, "key");
        for msg in names::qualified_name(key_name) {
            e.invalid(&join(&req_path, "key"), key_name, &msg);
        }
        let values_path = join(&req_path, "values");
        for (i, v) in values.iter().enumerate() {
            for msg in names::label_value(v) {
                e.invalid(&index(&values_path, i), *v, &msg);
            }
        }
    }
}

/// Whether a selector has no requirements at all (and so matches everything).
pub(crate) fn selector_is_empty(selector: &Value) -> bool {
    let labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    !labels && !exprs
}

/// Whether `selector` (a `LabelSelector`) matches the label map `labels`; malformed parts
/// count as not matching (they were reported already).
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in match_labels {
            if get(k) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for req in exprs {
            let Some(key) = req.get("key").and_then(Value::as_str) else {
                return false;
            };
            let values: Vec<&str> = req
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let actual = get(key);
            let ok = match req.get("operator").and_then(Value::as_str) {
                Some("In") => actual.is_some_and(|a| values.contains(&a)),
                Some("NotIn") => actual.is_none_or(|a| !values.contains(&a)),
                Some("Exists") => actual.is_some(),
                Some("DoesNotExist") => actual.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::CauseType;
    use serde_json::json;

    fn run(obj: &Value, rule: NameRule) -> Vec<(String, CauseType)> {
        let mut e = Errs::default();
        validate_object_meta(&mut e, obj, rule);
        e.into_causes()
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect()
    }

    #[test]
    fn name_or_generate_name_is_required() {
        assert_eq!(
            run(&json!({"metadata": {}}), NameRule::Subdomain),
            vec![("metadata.name".to_owned(), CauseType::Required)]
        );
        assert_eq!(
            run(&json!({}), NameRule::Subdomain),
            vec![("metadata.name".to_owned(), CauseType::Required)]
        );
    }

    #[test]
    fn name_rules_differ_by_kind() {
        let dotted = json!({"metadata": {"name": "a.b"}});
        assert!(run(&dotted, NameRule::Subdomain).is_empty());
        assert_eq!(run(&dotted, NameRule::Label).len(), 1);
        let digit = json!({"metadata": {"name": "1abc"}});
        assert!(run(&digit, NameRule::Label).is_empty());
        assert_eq!(run(&digit, NameRule::Dns1035).len(), 1);
        let colon = json!({"metadata": {"name": "system:controller:x"}});
        assert!(run(&colon, NameRule::PathSegment).is_empty());
        assert_eq!(run(&colon, NameRule::Subdomain).len(), 1);
    }

    #[test]
    fn generate_name_may_end_in_a_dash() {
        let generated = json!({"metadata": {"generateName": "web-", "name": "web-x7k2p"}});
        assert!(run(&generated, NameRule::Subdomain).is_empty());
        let bad = json!({"metadata": {"generateName": "Web-", "name": "web-x7k2p"}});
        assert_eq!(
            run(&bad, NameRule::Subdomain),
            vec![("metadata.generateName".to_owned(), CauseType::Invalid)]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let obj = json!({"metadata": {"name": "x", "labels": {"app": "bad value"}, "annotations": {"ok/x": "y"}}});
        assert_eq!(
            run(&obj, NameRule::Subdomain),
            vec![("metadata.labels".to_owned(), CauseType::Invalid)]
        );
        let big = "x".repeat(ANNOTATIONS_MAX_BYTES);
        let obj = json!({"metadata": {"name": "x", "annotations": {"a": big}}});
        assert_eq!(
            run(&obj, NameRule::Subdomain),
            vec![("metadata.annotations".to_owned(), CauseType::TooLong)]
        );
        let obj = json!({"metadata": {"name": "x", "labels": {"app": 3}}});
        assert_eq!(
            run(&obj, NameRule::Subdomain),
            vec![("metadata.labels[app]".to_owned(), CauseType::Invalid)]
        );
    }

    #[test]
    fn owner_references_and_finalizers() {
        let obj = json!({"metadata": {"name": "x", "finalizers": ["kubernetes", "example.com/f", "custom"],
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true},
                {"apiVersion": "v1", "kind": "Pod", "name": "c"}]}});
        assert_eq!(
            run(&obj, NameRule::Subdomain),
            vec![
                ("metadata.ownerReferences".to_owned(), CauseType::Invalid),
                (
                    "metadata.ownerReferences[2].uid".to_owned(),
                    CauseType::Required
                ),
                ("metadata.finalizers[2]".to_owned(), CauseType::Invalid),
            ]
        );
    }

    #[test]
    fn selectors_match_like_labels_package() {
        let labels = json!({"app": "web", "tier": "fe"});
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&sel, Some(&labels)));
        let sel =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]});
        assert!(!selector_matches(&sel, Some(&labels)));
        assert!(selector_matches(&json!({}), None));
        assert!(selector_is_empty(&json!({"matchLabels": {}})));
    }

    #[test]
    fn selector_syntax() {
        let parent = json!({"selector": {"matchExpressions": [
            {"key": "a", "operator": "In"},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Near", "values": ["x"]}]}});
        let mut e = Errs::default();
        validate_label_selector(&mut e, &parent, "spec", "selector");
        let got: Vec<(String, CauseType)> = e
            .into_causes()
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "spec.selector.matchExpressions[0].values".to_owned(),
                    CauseType::Required
                ),
                (
                    "spec.selector.matchExpressions[1].values".to_owned(),
                    CauseType::Forbidden
                ),
                (
                    "spec.selector.matchExpressions[2].operator".to_owned(),
                    CauseType::Invalid
                ),
            ]
        );
    }
}
