//! The cause collector, field paths, and typed access to JSON fields that reports wrong types
//! instead of panicking.
//!
//! Paths are plain strings built the way `k8s.io/apimachinery/pkg/util/validation/field.Path`
//! prints them: `spec.containers[0].name`, map keys as `data[key]`. Messages are composed like
//! `field.Error.ErrorBody`: the error type's words, the bad value (strings quoted as Go's `%q`
//! does, numbers bare, anything else as JSON), then the detail.

use serde_json::{Map, Value};

use super::{Cause, CauseType};

/// `parent.child`, or `child` at the root.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `parent[key]`, the form used for map entries.
pub(crate) fn key(parent: &str, k: &str) -> String {
    format!("{parent}[{k}]")
}

/// A string quoted the way Go's `%q` verb does, so messages read as kube-apiserver's.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bad value as a message shows it.
pub(crate) trait Show {
    /// The value's text in a message.
    fn show(&self) -> String;
}

impl Show for &str {
    fn show(&self) -> String {
        go_quote(self)
    }
}

impl Show for String {
    fn show(&self) -> String {
        go_quote(self)
    }
}

impl Show for i64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for &Value {
    fn show(&self) -> String {
        match self {
            Value::String(s) => go_quote(s),
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            // Upstream renders structured values with json.Marshal.
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

impl Show for Value {
    fn show(&self) -> String {
        (&self).show()
    }
}

/// A value the message leaves out (the `omitValue` of apimachinery): secrets, mostly.
pub(crate) struct Omitted;

impl Show for Omitted {
    fn show(&self) -> String {
        String::new()
    }
}

/// The causes found so far. Every check appends here, so one pass reports everything.
#[derive(Default)]
pub(crate) struct Errs {
    causes: Vec<Cause>,
}

impl Errs {
    /// The collected causes.
    pub(crate) fn into_causes(self) -> Vec<Cause> {
        self.causes
    }

    /// How many causes have been collected; checks use it to tell whether a part was clean.
    pub(crate) fn len(&self) -> usize {
        self.causes.len()
    }

    fn push(&mut self, field: &str, reason: CauseType, value: Option<String>, detail: &str) {
        let mut message = reason.label().to_owned();
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            message.push_str(": ");
            message.push_str(&v);
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        self.causes.push(Cause {
            field: field.to_owned(),
            reason,
            message,
        });
    }

    /// `Required value`, with an optional detail.
    pub(crate) fn required(&mut self, field: &str, detail: &str) {
        self.push(field, CauseType::Required, None, detail);
    }

    /// `Invalid value: <value>: <detail>`.
    pub(crate) fn invalid(&mut self, field: &str, value: impl Show, detail: &str) {
        self.push(field, CauseType::Invalid, Some(value.show()), detail);
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub(crate) fn not_supported(&mut self, field: &str, value: impl Show, valid: &[&str]) {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        self.push(field, CauseType::NotSupported, Some(value.show()), &detail);
    }

    /// `Duplicate value: <value>`.
    pub(crate) fn duplicate(&mut self, field: &str, value: impl Show) {
        self.push(field, CauseType::Duplicate, Some(value.show()), "");
    }

    /// `Duplicate value: <value>: <detail>`.
    pub(crate) fn duplicate_with(&mut self, field: &str, value: impl Show, detail: &str) {
        self.push(field, CauseType::Duplicate, Some(value.show()), detail);
    }

    /// `Not found: <value>`.
    pub(crate) fn not_found(&mut self, field: &str, value: impl Show) {
        self.push(field, CauseType::NotFound, Some(value.show()), "");
    }

    /// `Forbidden: <detail>`.
    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(field, CauseType::Forbidden, None, detail);
    }

    /// `Too long: may not be more than <max> bytes`.
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        let unit = if max == 1 { "byte" } else { "bytes" };
        let detail = format!("may not be more than {max} {unit}");
        self.push(field, CauseType::TooLong, None, &detail);
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub(crate) fn too_many(&mut self, field: &str, actual: usize, max: usize) {
        let unit = if max == 1 { "item" } else { "items" };
        let detail = format!("must have at most {max} {unit}");
        self.push(field, CauseType::TooMany, Some(actual.to_string()), &detail);
    }

    /// `Invalid value: <value>: must be greater than or equal to 0` when `value < 0`.
    pub(crate) fn nonnegative(&mut self, field: &str, value: i64) {
        if value < 0 {
            self.invalid(field, value, "must be greater than or equal to 0");
        }
    }

    /// Reports a field whose JSON type is wrong.
    pub(crate) fn wrong_type(&mut self, field: &str, value: &Value, expected: &str) {
        self.invalid(field, value, &format!("must be of type {expected}"));
    }

    // Typed access. Each reads `key` of the object `parent` (whose path is `path`); an absent
    // or null field reads as `None`, a field of another type is reported and reads as `None`.
    // A `parent` that is not an object yields `None` (its own type was reported already).

    /// A string field.
    pub(crate) fn str<'v>(&mut self, parent: &'v Value, path: &str, key: &str) -> Option<&'v str> {
        match parent.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(&join(path, key), other, "string");
                None
            }
        }
    }

    /// A string field, empty when absent (the zero value Go code compares against).
    pub(crate) fn str_or_empty<'v>(&mut self, parent: &'v Value, path: &str, key: &str) -> &'v str {
        self.str(parent, path, key).unwrap_or("")
    }

    /// An integer field.
    pub(crate) fn int(&mut self, parent: &Value, path: &str, key: &str) -> Option<i64> {
        match parent.get(key)? {
            Value::Null => None,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.wrong_type(&join(path, key), &Value::Number(n.clone()), "integer");
                    None
                }
            },
            other => {
                self.wrong_type(&join(path, key), other, "integer");
                None
            }
        }
    }

    /// A boolean field.
    pub(crate) fn bool(&mut self, parent: &Value, path: &str, key: &str) -> Option<bool> {
        match parent.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(&join(path, key), other, "boolean");
                None
            }
        }
    }

    /// An object field (returned as the `Value` so it can be passed on as a parent).
    pub(crate) fn obj<'v>(
        &mut self,
        parent: &'v Value,
        path: &str,
        key: &str,
    ) -> Option<&'v Value> {
        match parent.get(key)? {
            Value::Null => None,
            v @ Value::Object(_) => Some(v),
            other => {
                self.wrong_type(&join(path, key), other, "object");
                None
            }
        }
    }

    /// An array field.
    pub(crate) fn arr<'v>(&mut self, parent: &'v Value, path: &str, key: &str) -> &'v [Value] {
        match parent.get(key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.wrong_type(&join(path, key), other, "array");
                &[]
            }
        }
    }

    /// The items of an array field that are objects, with their paths; other items are
    /// reported.
    pub(crate) fn objs<'v>(
        &mut self,
        parent: &'v Value,
        path: &str,
        key: &str,
    ) -> Vec<(String, &'v Value)> {
        let list_path = join(path, key);
        let mut out = Vec::new();
        for (i, item) in self.arr(parent, path, key).iter().enumerate() {
            let p = index(&list_path, i);
            if item.is_object() {
                out.push((p, item));
            } else {
                self.wrong_type(&p, item, "object");
            }
        }
        out
    }

    /// The items of an array of strings; other items are reported.
    pub(crate) fn strs<'v>(&mut self, parent: &'v Value, path: &str, key: &str) -> Vec<&'v str> {
        let list_path = join(path, key);
        let mut out = Vec::new();
        for (i, item) in self.arr(parent, path, key).iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.as_str()),
                other => self.wrong_type(&index(&list_path, i), other, "string"),
            }
        }
        out
    }

    /// A map of strings (labels, annotations, selectors, `data`); entries with non-string
    /// values are reported.
    pub(crate) fn str_map<'v>(
        &mut self,
        parent: &'v Value,
        path: &str,
        key: &str,
    ) -> Vec<(&'v str, &'v str)> {
        let map_path = join(path, key);
        let Some(map) = self.map(parent, path, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.as_str(), s.as_str())),
                other => self.wrong_type(&self::key(&map_path, k), other, "string"),
            }
        }
        out
    }

    /// An object field as a map.
    pub(crate) fn map<'v>(
        &mut self,
        parent: &'v Value,
        path: &str,
        key: &str,
    ) -> Option<&'v Map<String, Value>> {
        self.obj(parent, path, key).and_then(Value::as_object)
    }
}

/// An int-or-string field (`targetPort`, `maxSurge`), as read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum IntOrStr<'v> {
    /// A JSON integer.
    Int(i64),
    /// A JSON string.
    Str(&'v str),
}

impl Errs {
    /// An int-or-string field; other types are reported.
    pub(crate) fn int_or_str<'v>(
        &mut self,
        parent: &'v Value,
        path: &str,
        key: &str,
    ) -> Option<IntOrStr<'v>> {
        match parent.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(IntOrStr::Str(s)),
            Value::Number(n) if n.as_i64().is_some() => n.as_i64().map(IntOrStr::Int),
            other => {
                self.wrong_type(&join(path, key), other, "integer or string");
                None
            }
        }
    }
}

/// Reads a value at a dotted path without reporting anything.
pub(crate) fn peek<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_print_like_field_path() {
        assert_eq!(join("", "spec"), "spec");
        assert_eq!(join("spec", "replicas"), "spec.replicas");
        assert_eq!(index("spec.containers", 2), "spec.containers[2]");
        assert_eq!(key("data", "a.txt"), "data[a.txt]");
    }

    #[test]
    fn quoting_follows_go() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn messages_compose_like_error_body() {
        let mut e = Errs::default();
        e.required("a", "");
        e.required("b", "must specify a volume type");
        e.invalid("c", "x", "bad");
        e.invalid("d", 70000, "must be between 1 and 65535, inclusive");
        e.not_supported("e", "Sometimes", &["Always", "Never"]);
        e.too_long("f", 1048576);
        e.too_many("g", 101, 100);
        e.invalid("h", json!({"a": 1}), "no");
        e.invalid("i", Omitted, "hidden");
        let m: Vec<String> = e.into_causes().into_iter().map(|c| c.message).collect();
        assert_eq!(
            m,
            vec![
                "Required value",
                "Required value: must specify a volume type",
                "Invalid value: \"x\": bad",
                "Invalid value: 70000: must be between 1 and 65535, inclusive",
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\"",
                "Too long: may not be more than 1048576 bytes",
                "Too many: 101: must have at most 100 items",
                "Invalid value: {\"a\":1}: no",
                "Invalid value: hidden",
            ]
        );
    }

    #[test]
    fn typed_access_reports_wrong_types() {
        let v = json!({"s": 1, "i": "x", "b": 2, "o": [], "a": {}, "n": null, "f": 1.5});
        let mut e = Errs::default();
        assert_eq!(e.str(&v, "spec", "s"), None);
        assert_eq!(e.int(&v, "spec", "i"), None);
        assert_eq!(e.bool(&v, "spec", "b"), None);
        assert!(e.obj(&v, "spec", "o").is_none());
        assert!(e.arr(&v, "spec", "a").is_empty());
        assert_eq!(e.str(&v, "spec", "n"), None);
        assert_eq!(e.int(&v, "spec", "f"), None);
        assert_eq!(e.str(&v, "spec", "missing"), None);
        let fields: Vec<String> = e.into_causes().into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec!["spec.s", "spec.i", "spec.b", "spec.o", "spec.a", "spec.f"]
        );
    }
}
