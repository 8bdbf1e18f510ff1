//! Helpers the validation tests share: default an object as the server would, then compare
//! the causes found with the expected field paths and reasons.

use serde_json::Value;

use super::{Cause, CauseType, validate, validate_update};

/// `obj` after the defaulting the server applies before validation.
pub(crate) fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    crate::defaults::apply_defaults(group, kind, &mut obj);
    obj
}

fn summary(causes: &[Cause]) -> Vec<(String, CauseType)> {
    let mut s: Vec<(String, CauseType)> =
        causes.iter().map(|c| (c.field.clone(), c.reason)).collect();
    s.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    s
}

fn expected(want: &[(&str, CauseType)]) -> Vec<(String, CauseType)> {
    let mut s: Vec<(String, CauseType)> = want.iter().map(|(f, r)| ((*f).to_owned(), *r)).collect();
    s.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.as_str().cmp(b.1.as_str())));
    s
}

/// Asserts that `obj` is valid.
pub(crate) fn assert_valid(group: &str, kind: &str, obj: &Value) {
    let causes = validate(group, kind, obj);
    assert!(causes.is_empty(), "{kind} should be valid, got {causes:#?}");
}

/// Asserts that validating `obj` yields exactly `want` (in any order); returns the causes.
pub(crate) fn assert_causes(
    group: &str,
    kind: &str,
    obj: &Value,
    want: &[(&str, CauseType)],
) -> Vec<Cause> {
    let causes = validate(group, kind, obj);
    assert_eq!(
        summary(&causes),
        expected(want),
        "causes for {kind}: {causes:#?}"
    );
    causes
}

/// Asserts that the update from `old` to `new` yields exactly `want` from `validate_update`.
pub(crate) fn assert_update_causes(
    group: &str,
    kind: &str,
    old: &Value,
    new: &Value,
    want: &[(&str, CauseType)],
) -> Vec<Cause> {
    let causes = validate_update(group, kind, old, new);
    assert_eq!(
        summary(&causes),
        expected(want),
        "update causes for {kind}: {causes:#?}"
    );
    causes
}
