//! ConfigMaps and Secrets: keys, sizes, Secret types, and the base64 that Secret `data`
//! values (and ConfigMap `binaryData`) are written in.

use serde_json::Value;

use super::field::{Errs, Omitted, key};
use super::meta::{self, NameRule};
use super::names;

/// The most bytes a ConfigMap or Secret may hold (`core.MaxSecretSize`).
const MAX_SIZE: usize = 1024 * 1024;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard padded base64, as Go's `encoding/json` writes `[]byte`.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(BASE64[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The decoded length of standard padded base64, or the offset of the first bad byte (Go's
/// `CorruptInputError`). Line breaks are skipped, as Go's decoder skips them.
pub(crate) fn decoded_len(text: &str) -> Result<usize, usize> {
    let mut place = 0usize;
    let mut quads = 0usize;
    let mut padding = 0usize;
    let mut done = false;
    for (i, c) in text.bytes().enumerate() {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        if done {
            return Err(i);
        }
        if c == b'=' {
            // Padding may only fill the last one or two places of the final quad.
            if place < 2 {
                return Err(i);
            }
            padding += 1;
            place += 1;
        } else if padding > 0 || !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
            return Err(i);
        } else {
            place += 1;
        }
        if place == 4 {
            quads += 1;
            place = 0;
            done = padding > 0;
        }
    }
    if place != 0 {
        return Err(text.len());
    }
    Ok(quads * 3 - padding)
}

/// Checks a ConfigMap.
pub(crate) fn validate_config_map(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let data = e.str_map(obj, "", "data");
    let binary = e.str_map(obj, "", "binaryData");
    let mut total = 0usize;
    for (k, v) in &data {
        let path = key("data", k);
        for msg in names::config_map_key(k) {
            e.invalid(&path, *k, &msg);
        }
        if binary.iter().any(|(b, _)| b == k) {
            e.invalid(&path, *k, "duplicate of key present in binaryData");
        }
        total += v.len();
    }
    for (k, v) in &binary {
        let path = key("binaryData", k);
        for msg in names::config_map_key(k) {
            e.invalid(&path, *k, &msg);
        }
        match decoded_len(v) {
            Ok(n) => total += n,
            Err(at) => e.invalid(
                &path,
                Omitted,
                &format!("illegal base64 data at input byte {at}"),
            ),
        }
    }
    if total > MAX_SIZE {
        // Upstream passes an empty path: the whole object is too large.
        e.too_long("", MAX_SIZE);
    }
}

/// Checks a Secret (after defaulting, which folds `stringData` into `data`).
pub(crate) fn validate_secret(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    // Defaulting folds well-formed stringData into data; what is left is malformed.
    e.str_map(obj, "", "stringData");
    let data = e.str_map(obj, "", "data");
    let mut total = 0usize;
    for (k, v) in &data {
        let path = key("data", k);
        for msg in names::config_map_key(k) {
            e.invalid(&path, *k, &msg);
        }
        match decoded_len(v) {
            Ok(n) => total += n,
            Err(at) => e.invalid(
                &path,
                Omitted,
                &format!("illegal base64 data at input byte {at}"),
            ),
        }
    }
    if total > MAX_SIZE {
        e.too_long("data", MAX_SIZE);
    }
    let has = |k: &str| data.iter().any(|(d, _)| *d == k);
    let value_of = |k: &str| data.iter().find(|(d, _)| *d == k).map(|(_, v)| *v);
    let required = |e: &mut Errs, k: &str| e.required(&key("data", k), "");
    match e.str_or_empty(obj, "", "type") {
        "kubernetes.io/service-account-token" => {
            let annotations = obj.get("metadata").and_then(|m| m.get("annotations"));
            let sa = annotations
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                e.required(
                    &key("metadata.annotations", "kubernetes.io/service-account.name"),
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" => docker_config(e, value_of(".dockercfg"), ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => {
            docker_config(e, value_of(".dockerconfigjson"), ".dockerconfigjson");
        }
        // Either field may be empty, but one of them must be there.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required(e, "username");
            required(e, "password");
        }
        "kubernetes.io/ssh-auth" if value_of("ssh-privatekey").is_none_or(str::is_empty) => {
            required(e, "ssh-privatekey");
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    required(e, k);
                }
            }
        }
        _ => {}
    }
}

/// A docker config Secret needs its key, holding a JSON object.
fn docker_config(e: &mut Errs, encoded: Option<&str>, name: &str) {
    let path = key("data", name);
    let Some(encoded) = encoded else {
        e.required(&path, "");
        return;
    };
    let Some(bytes) = decode_base64(encoded) else {
        return; // Already reported as bad base64.
    };
    let problem = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(_)) => return,
        Ok(other) => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                _ => return, // null unmarshals into a map without complaint.
            };
            format!("json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
        }
        Err(err) => err.to_string(),
    };
    e.invalid(&path, "<secret contents redacted>", &problem);
}

/// Decodes standard padded base64 (line breaks skipped); `None` when malformed.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    decoded_len(text).ok()?;
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Whether a ConfigMap or Secret was created immutable.
pub(crate) fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_causes, assert_valid, defaulted};
    use super::*;
    use crate::validate::CauseType::{Invalid, Required, TooLong};
    use serde_json::json;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "hello world!"] {
            let enc = encode_base64(s.as_bytes());
            assert_eq!(decoded_len(&enc), Ok(s.len()), "{enc}");
            assert_eq!(decode_base64(&enc).as_deref(), Some(s.as_bytes()));
        }
        assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
        assert_eq!(decoded_len("aGVsbG8"), Err(7));
        assert_eq!(decoded_len("aGV*bG8="), Err(3));
        assert_eq!(decoded_len("aGVs\nbG8="), Ok(5));
    }

    fn config_map() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nginx-conf"},
            "data": {"default.conf": "server { listen 80; }", "MODE": "prod"},
            "binaryData": {"logo.png": "iVBORw0KGgo="}})
    }

    #[test]
    fn config_maps() {
        assert_valid("", "ConfigMap", &config_map());
        let mut c = config_map();
        c["data"]["bad key"] = json!("x");
        assert_causes("", "ConfigMap", &c, &[("data[bad key]", Invalid)]);
        let mut c = config_map();
        c["data"]["logo.png"] = json!("x");
        assert_causes("", "ConfigMap", &c, &[("data[logo.png]", Invalid)]);
        let mut c = config_map();
        c["data"]["big"] = json!("x".repeat(MAX_SIZE));
        let causes = assert_causes("", "ConfigMap", &c, &[("", TooLong)]);
        assert_eq!(
            causes[0].message,
            "Too long: may not be more than 1048576 bytes"
        );
        let mut c = config_map();
        c["binaryData"]["logo.png"] = json!("not base64!");
        assert_causes("", "ConfigMap", &c, &[("binaryData[logo.png]", Invalid)]);
    }

    #[test]
    fn secrets() {
        let s = defaulted(
            "",
            "Secret",
            json!({"metadata": {"name": "db"}, "data": {"password": "czNjcjN0"}, "stringData": {"user": "admin"}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert!(s.get("stringData").is_none());
        assert_valid("", "Secret", &s);
        let mut bad = s.clone();
        bad["data"]["password"] = json!("%%%");
        let causes = assert_causes("", "Secret", &bad, &[("data[password]", Invalid)]);
        assert_eq!(
            causes[0].message,
            "Invalid value: illegal base64 data at input byte 0"
        );
        let tls = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_causes("", "Secret", &tls, &[("data[tls.key]", Required)]);
        let docker = json!({"metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": encode_base64(b"[1]")}});
        assert_causes(
            "",
            "Secret",
            &docker,
            &[("data[.dockerconfigjson]", Invalid)],
        );
        let mut odd = defaulted(
            "",
            "Secret",
            json!({"metadata": {"name": "s"}, "stringData": {"a": 1}}),
        );
        assert_causes("", "Secret", &odd, &[("stringData[a]", Invalid)]);
        odd["stringData"] = json!({});
        assert_valid("", "Secret", &odd);
        let sa =
            json!({"metadata": {"name": "tok"}, "type": "kubernetes.io/service-account-token"});
        assert_causes(
            "",
            "Secret",
            &sa,
            &[(
                "metadata.annotations[kubernetes.io/service-account.name]",
                Required,
            )],
        );
    }
}
