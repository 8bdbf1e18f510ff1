//! The discovery documents clients fetch before anything else: `/version`, `/api`, `/apis`,
//! `/apis/<group>`, the resource lists `/api/v1` and `/apis/<group>/<version>`, and the
//! aggregated form of `/api` and `/apis` that kubectl 1.27+ asks for first.
//!
//! All of it is derived from [`registry`](crate::registry), so what discovery advertises is
//! exactly what the server routes. This module also reads `Accept` headers: whether a client
//! wants aggregated discovery ([`negotiate`]) or a `Table` ([`table_accepted`]).
//!
//! Field names follow `k8s.io/apimachinery/pkg/apis/meta/v1` (`APIVersions`, `APIGroupList`,
//! `APIResourceList`) and `k8s.io/api/apidiscovery/v2` (`APIGroupDiscoveryList`, whose v2beta1
//! form has the same fields).

use serde_json::{Map, Value, json};

use crate::registry::{self, Resource};

/// The Kubernetes minor version Strait reports and behaves as.
pub const KUBERNETES_MINOR: &str = "33";

/// The `gitVersion` in `/version`: a 1.33 server, marked as Strait's.
pub const GIT_VERSION: &str = "v1.33.0-strait";

/// The `Content-Type` of a `Table` answer (`kubectl get` asks for it).
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The body of `/version`. Every field `kubectl version` and the Python client's `VersionInfo`
/// model read is present (the Python client rejects a missing one).
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "emulationMajor": "1",
        "emulationMinor": KUBERNETES_MINOR,
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        // Strait is not built from a Kubernetes commit; the fields stay well-formed so
        // clients that parse them do not fail.
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (strait is written in Rust)",
        "compiler": "rustc",
        "platform": platform(),
    })
}

/// `<os>/<arch>` in Go's spelling (`linux/amd64`), which is what clients expect to see.
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// The body of `/api` (`APIVersions`). `serverAddress` is empty: clients use the address they
/// connected to; the server may fill in its advertised address.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "apiVersion": "v1",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// The body of `/apis` (`APIGroupList`): every named group, preferred version first.
pub fn group_list() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, versions)| api_group(name, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The body of `/apis/<name>` (`APIGroup`), or `None` for a group Strait does not serve
/// (including the core group, which lives at `/api`).
pub fn group(name: &str) -> Option<Value> {
    if name.is_empty() {
        return None;
    }
    let (name, versions) = registry::groups().into_iter().find(|(g, _)| *g == name)?;
    let mut group = api_group(name, &versions);
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    Some(group)
}

/// One `APIGroup` entry: name, versions and the preferred (first) version.
fn api_group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{name}/{version}"), "version": version}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions[0].clone()})
}

/// The body of `/api/v1` (`group` empty) or `/apis/<group>/<version>` (`APIResourceList`),
/// or `None` for a group version Strait does not serve. Resources and their subresources are
/// sorted by name, as kube-apiserver lists them.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries: Vec<Value> = Vec::new();
    for resource in served(group, version) {
        entries.push(api_resource(resource));
        for sub in resource.subresources {
            let mut entry = Map::new();
            entry.insert(
                "name".into(),
                json!(format!("{}/{}", resource.plural, sub.name)),
            );
            entry.insert("singularName".into(), json!(""));
            entry.insert("namespaced".into(), json!(resource.namespaced));
            // Like kube-apiserver, name the group and version only when they differ from the
            // list's own (deployments/scale is an autoscaling/v1 Scale).
            if sub.group != resource.group || sub.version != resource.version {
                entry.insert("group".into(), json!(sub.group));
                entry.insert("version".into(), json!(sub.version));
            }
            entry.insert("kind".into(), json!(sub.kind));
            entry.insert("verbs".into(), json!(sub.verbs));
            entries.push(Value::Object(entry));
        }
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

/// The resources served at one group version, in registry order.
fn served<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    registry::resources()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// One `APIResource` entry of a resource list.
fn api_resource(resource: &Resource) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(resource.plural));
    entry.insert("singularName".into(), json!(resource.singular));
    entry.insert("namespaced".into(), json!(resource.namespaced));
    entry.insert("kind".into(), json!(resource.kind));
    entry.insert("verbs".into(), json!(resource.verbs));
    if !resource.short_names.is_empty() {
        entry.insert("shortNames".into(), json!(resource.short_names));
    }
    if !resource.categories.is_empty() {
        entry.insert("categories".into(), json!(resource.categories));
    }
    if let Some(hash) = storage_version_hash(resource) {
        entry.insert("storageVersionHash".into(), json!(hash));
    }
    Value::Object(entry)
}

/// An opaque, stable hash of the version a resource is stored in, which clients may only
/// compare for equality. Resources that are not stored (they cannot be watched:
/// `bindings`, `componentstatuses`) have none, as in kube-apiserver. Every served version of
/// a kind reports the hash of its group's preferred version, since they share storage.
fn storage_version_hash(resource: &Resource) -> Option<String> {
    if !resource.supports("watch") {
        return None;
    }
    let stored = registry::resources()
        .iter()
        .find(|r| r.group == resource.group && r.plural == resource.plural)
        .unwrap_or(resource);
    let hash = fnv1a64(format!("{}/{}/{}", stored.group, stored.version, stored.kind).as_bytes());
    Some(base64(&hash.to_be_bytes()))
}

/// FNV-1a, 64 bits: a small stable hash, enough to tell storage versions apart.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Standard base64 with padding (the form kube-apiserver's hashes take).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The two versions of aggregated discovery: `v2` (kubectl 1.30+) and `v2beta1` (kubectl
/// 1.27–1.29 asks only for this one). Their JSON is the same apart from `apiVersion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`.
    V2Beta1,
}

impl AggregatedVersion {
    /// The `apiVersion` of the `APIGroupDiscoveryList`.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V2 => "apidiscovery.k8s.io/v2",
            Self::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The `Content-Type` the answer must carry: client-go recognises aggregated discovery
    /// by these media type parameters, not by the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Self::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }

    /// The `v` media type parameter naming this version.
    fn parameter(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V2Beta1 => "v2beta1",
        }
    }
}

/// What to answer on `/api` or `/apis`, decided from the request's `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiated {
    /// An `APIGroupDiscoveryList` of this version ([`aggregated`]).
    Aggregated(AggregatedVersion),
    /// The plain documents ([`core_versions`], [`group_list`]) as `application/json`. Also
    /// the answer when nothing in the header is acceptable: kube-apiserver would say 406, but
    /// every client Strait serves accepts JSON.
    Plain,
}

impl Negotiated {
    /// The `Content-Type` of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Aggregated(version) => version.content_type(),
            Self::Plain => "application/json",
        }
    }
}

/// Reads an `Accept` header for `/api` and `/apis`: the most preferred media range (by `q`,
/// then by order) that asks for a JSON `APIGroupDiscoveryList` Strait can build, or for plain
/// JSON, wins. Protobuf ranges and other `as=` types are passed over.
pub fn negotiate(accept: &str) -> Negotiated {
    for range in media_ranges(accept) {
        match range.param("as") {
            Some("APIGroupDiscoveryList") => {
                if range.essence != "application/json"
                    || range.param("g") != Some("apidiscovery.k8s.io")
                {
                    continue;
                }
                for version in [AggregatedVersion::V2, AggregatedVersion::V2Beta1] {
                    if range.param("v") == Some(version.parameter()) {
                        return Negotiated::Aggregated(version);
                    }
                }
            }
            Some(_) => {}
            None if range.is_json() => return Negotiated::Plain,
            None => {}
        }
    }
    Negotiated::Plain
}

/// The aggregated discovery document: for `/api` (`core`), one item for the core group
/// (name `""`); for `/apis`, one item per named group. Each group lists its versions,
/// preferred first, each with every resource, its subresources and `freshness: Current`.
pub fn aggregated(core: bool, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(name, _)| name.is_empty() == core)
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let mut resources: Vec<&Resource> = served(name, v).collect();
                    resources.sort_by_key(|r| r.plural);
                    let resources: Vec<Value> =
                        resources.into_iter().map(aggregated_resource).collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": name}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": version.api_version(),
        "metadata": {},
        "items": items,
    })
}

/// One `APIResourceDiscovery`. `responseKind` is always complete: client-go drops resources
/// and subresources without one.
fn aggregated_resource(resource: &Resource) -> Value {
    let mut entry = Map::new();
    entry.insert("resource".into(), json!(resource.plural));
    entry.insert(
        "responseKind".into(),
        json!({"group": resource.group, "version": resource.version, "kind": resource.kind}),
    );
    let scope = if resource.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    };
    entry.insert("scope".into(), json!(scope));
    entry.insert("singularResource".into(), json!(resource.singular));
    entry.insert("verbs".into(), json!(resource.verbs));
    if !resource.short_names.is_empty() {
        entry.insert("shortNames".into(), json!(resource.short_names));
    }
    if !resource.categories.is_empty() {
        entry.insert("categories".into(), json!(resource.categories));
    }
    if !resource.subresources.is_empty() {
        let subresources: Vec<Value> = resource
            .subresources
            .iter()
            .map(|sub| {
                json!({
                    "subresource": sub.name,
                    "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                    "verbs": sub.verbs,
                })
            })
            .collect();
        entry.insert("subresources".into(), json!(subresources));
    }
    Value::Object(entry)
}

/// Whether the `Accept` header asks for a `meta.k8s.io` `Table` (v1 or v1beta1) before plain
/// JSON, as `kubectl get` does.
pub fn table_accepted(accept: &str) -> bool {
    table_api_version(accept).is_some()
}

/// The `apiVersion` of the `Table` the client prefers (`meta.k8s.io/v1` or
/// `meta.k8s.io/v1beta1`), or `None` when it prefers a plain object. The two versions have the
/// same fields; every kubectl Strait supports lists v1 first.
pub fn table_api_version(accept: &str) -> Option<&'static str> {
    for range in media_ranges(accept) {
        match range.param("as") {
            Some("Table") => {
                if range.essence != "application/json" || range.param("g") != Some("meta.k8s.io") {
                    continue;
                }
                match range.param("v") {
                    Some("v1") => return Some("meta.k8s.io/v1"),
                    Some("v1beta1") => return Some("meta.k8s.io/v1beta1"),
                    _ => {}
                }
            }
            Some(_) => {}
            None if range.is_json() => return None,
            None => {}
        }
    }
    None
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    /// `type/subtype`, lowercased.
    essence: String,
    /// Parameters other than `q`, keys lowercased, values unquoted.
    params: Vec<(String, &'a str)>,
    q: f32,
}

impl MediaRange<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Whether plain JSON satisfies this range.
    fn is_json(&self) -> bool {
        matches!(
            self.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        )
    }
}

/// The media ranges of an `Accept` header, most preferred first (higher `q` first, header
/// order among equals); ranges with `q=0` are refused and left out. A missing or empty header
/// accepts anything.
fn media_ranges(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut q = 1.0;
            let mut params = Vec::new();
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let key = key.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"');
                if key == "q" {
                    q = value.parse().unwrap_or(0.0);
                } else {
                    params.push((key, value));
                }
            }
            Some(MediaRange { essence, params, q })
        })
        .filter(|range| range.q > 0.0)
        .collect();
    if ranges.is_empty() && accept.trim().is_empty() {
        ranges.push(MediaRange {
            essence: "*/*".into(),
            params: Vec::new(),
            q: 1.0,
        });
    }
    // A stable sort keeps header order among ranges of equal preference.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kubectl 1.30–1.33 sends for `/api` and `/apis`.
    const KUBECTL_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    /// What kubectl 1.27–1.29 sends.
    const KUBECTL_V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    /// What `kubectl get` sends.
    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    fn names(list: &Value) -> Vec<&str> {
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect()
    }

    fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    }

    #[test]
    fn version_info_has_every_field_clients_read() {
        let v = version_info();
        for field in [
            "major",
            "minor",
            "gitVersion",
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(v[field].is_string(), "/version lacks {field}");
        }
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "33");
        assert_eq!(v["gitVersion"], "v1.33.0-strait");
        assert!(v["platform"].as_str().expect("platform").contains('/'));
    }

    #[test]
    fn core_versions_lists_v1_with_a_cidr() {
        let v = core_versions();
        assert_eq!(v["kind"], "APIVersions");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["clientCIDR"],
            "0.0.0.0/0"
        );
        assert!(v["serverAddressByClientCIDRs"][0]["serverAddress"].is_string());
    }

    #[test]
    fn every_group_in_group_list_has_a_group_and_resource_lists() {
        let list = group_list();
        assert_eq!(list["kind"], "APIGroupList");
        let groups = list["groups"].as_array().expect("groups");
        assert!(groups.len() >= 10, "only {} groups", groups.len());
        for g in groups {
            let name = g["name"].as_str().expect("name");
            assert!(!name.is_empty(), "the core group belongs at /api");
            assert_eq!(g["preferredVersion"], g["versions"][0], "{name}");
            let single = group(name).expect("group document");
            assert_eq!(single["kind"], "APIGroup");
            assert_eq!(single["versions"], g["versions"]);
            for v in g["versions"].as_array().expect("versions") {
                let version = v["version"].as_str().expect("version");
                assert_eq!(v["groupVersion"], format!("{name}/{version}"));
                let rl = resource_list(name, version).expect("resource list");
                assert_eq!(rl["groupVersion"], v["groupVersion"]);
            }
        }
        assert!(group("").is_none());
        assert!(group("extensions").is_none());
    }

    #[test]
    fn autoscaling_prefers_v2() {
        let g = group("autoscaling").expect("autoscaling");
        assert_eq!(g["preferredVersion"]["version"], "v2");
        assert_eq!(g["versions"][1]["groupVersion"], "autoscaling/v1");
    }

    #[test]
    fn core_resource_list_matches_kube_apiserver() {
        let list = resource_list("", "v1").expect("/api/v1");
        assert_eq!(list["groupVersion"], "v1");
        let listed = names(&list);
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(listed, sorted, "resources are not sorted by name");
        for name in [
            "pods",
            "pods/status",
            "pods/log",
            "pods/exec",
            "services",
            "namespaces/finalize",
        ] {
            assert!(listed.contains(&name), "{name} missing");
        }
        let pods = entry(&list, "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        assert!(
            pods["storageVersionHash"]
                .as_str()
                .is_some_and(|h| h.len() == 12)
        );
        let configmaps = entry(&list, "configmaps");
        assert!(
            configmaps.get("categories").is_none(),
            "empty categories are omitted"
        );
        let secrets = entry(&list, "secrets");
        assert!(
            secrets.get("shortNames").is_none(),
            "empty shortNames are omitted"
        );
        let bindings = entry(&list, "bindings");
        assert_eq!(bindings["verbs"], json!(["create"]));
        assert!(bindings.get("storageVersionHash").is_none());
        let eviction = entry(&list, "pods/eviction");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        assert_eq!(eviction["kind"], "Eviction");
        assert_eq!(eviction["singularName"], "");
        let status = entry(&list, "pods/status");
        assert!(
            status.get("group").is_none(),
            "same-group subresources name no group"
        );
        assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
        assert_eq!(entry(&list, "nodes/status")["namespaced"], false);
    }

    #[test]
    fn deployments_scale_is_an_autoscaling_v1_scale() {
        let list = resource_list("apps", "v1").expect("apps/v1");
        let scale = entry(&list, "deployments/scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["verbs"], json!(["get", "patch", "update"]));
        assert_eq!(entry(&list, "deployments")["shortNames"], json!(["deploy"]));
    }

    #[test]
    fn unknown_group_versions_have_no_resource_list() {
        assert!(resource_list("apps", "v1beta1").is_none());
        assert!(resource_list("", "v2").is_none());
        assert!(resource_list("autoscaling", "v1").is_some());
    }

    #[test]
    fn storage_version_hash_is_shared_by_versions_of_one_kind() {
        let v1 = resource_list("autoscaling", "v1").expect("v1");
        let v2 = resource_list("autoscaling", "v2").expect("v2");
        let hash = |l: &Value| entry(l, "horizontalpodautoscalers")["storageVersionHash"].clone();
        assert_eq!(hash(&v1), hash(&v2));
        let apps = resource_list("apps", "v1").expect("apps");
        assert_ne!(
            entry(&apps, "deployments")["storageVersionHash"],
            entry(&apps, "replicasets")["storageVersionHash"]
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff; 8]), "//////////8=");
    }

    #[test]
    fn negotiation_follows_the_clients_preference() {
        assert_eq!(
            negotiate(KUBECTL_V2),
            Negotiated::Aggregated(AggregatedVersion::V2)
        );
        assert_eq!(
            negotiate(KUBECTL_V2BETA1),
            Negotiated::Aggregated(AggregatedVersion::V2Beta1)
        );
        assert_eq!(negotiate("application/json"), Negotiated::Plain);
        assert_eq!(negotiate(""), Negotiated::Plain);
        assert_eq!(negotiate("application/json, */*"), Negotiated::Plain);
        // Parameter order and spacing do not matter.
        assert_eq!(
            negotiate("application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"),
            Negotiated::Aggregated(AggregatedVersion::V2)
        );
        // Plain JSON preferred by q.
        assert_eq!(
            negotiate(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json"
            ),
            Negotiated::Plain
        );
        // Protobuf aggregated discovery is passed over for the JSON form.
        assert_eq!(
            negotiate(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            Negotiated::Aggregated(AggregatedVersion::V2)
        );
        // A plain range first wins over a later aggregated one.
        assert_eq!(
            negotiate(
                "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            ),
            Negotiated::Plain
        );
        assert_eq!(
            negotiate(KUBECTL_V2).content_type(),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        assert_eq!(Negotiated::Plain.content_type(), "application/json");
    }

    #[test]
    fn aggregated_core_group_has_name_empty_and_pods() {
        let doc = aggregated(true, AggregatedVersion::V2);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let items = doc["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let v1 = &items[0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        assert_eq!(v1["freshness"], "Current");
        let pods = v1["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "pods")
            .expect("pods");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        let eviction = pods["subresources"]
            .as_array()
            .expect("subresources")
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .expect("eviction");
        assert_eq!(
            eviction["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
    }

    #[test]
    fn aggregated_groups_match_the_plain_documents() {
        let doc = aggregated(false, AggregatedVersion::V2Beta1);
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let plain = group_list();
        let items = doc["items"].as_array().expect("items");
        assert_eq!(
            items.len(),
            plain["groups"].as_array().expect("groups").len()
        );
        for (item, g) in items
            .iter()
            .zip(plain["groups"].as_array().expect("groups"))
        {
            assert_eq!(item["metadata"]["name"], g["name"]);
            assert_eq!(
                item["versions"][0]["version"],
                g["preferredVersion"]["version"]
            );
            for v in item["versions"].as_array().expect("versions") {
                let name = g["name"].as_str().expect("name");
                let version = v["version"].as_str().expect("version");
                let plain_list = resource_list(name, version).expect("resource list");
                let top_level: Vec<&str> = names(&plain_list)
                    .into_iter()
                    .filter(|n| !n.contains('/'))
                    .collect();
                let aggregated: Vec<&str> = v["resources"]
                    .as_array()
                    .expect("resources")
                    .iter()
                    .map(|r| r["resource"].as_str().expect("resource"))
                    .collect();
                assert_eq!(top_level, aggregated, "{name}/{version}");
            }
        }
        let apps = items
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .expect("apps");
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        let scale = deployments["subresources"]
            .as_array()
            .expect("subresources")
            .iter()
            .find(|s| s["subresource"] == "scale")
            .expect("scale");
        assert_eq!(scale["responseKind"]["group"], "autoscaling");
        assert_eq!(deployments["categories"], json!(["all"]));
        let classes = items
            .iter()
            .find(|i| i["metadata"]["name"] == "networking.k8s.io")
            .expect("networking")["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "ingressclasses")
            .expect("ingressclasses")
            .clone();
        assert_eq!(classes["scope"], "Cluster");
        assert!(
            classes.get("subresources").is_none(),
            "empty subresources are omitted"
        );
    }

    #[test]
    fn table_is_accepted_when_kubectl_get_asks() {
        assert!(table_accepted(KUBECTL_GET));
        assert_eq!(table_api_version(KUBECTL_GET), Some("meta.k8s.io/v1"));
        assert_eq!(
            table_api_version(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"
            ),
            Some("meta.k8s.io/v1beta1")
        );
        assert!(!table_accepted("application/json"));
        assert!(!table_accepted(""));
        assert!(!table_accepted(
            "application/json;as=Table;v=v2;g=meta.k8s.io"
        ));
        assert!(!table_accepted(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        ));
        assert!(!table_accepted(
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(table_accepted(
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0.9, text/html"
        ));
        assert!(!table_accepted(
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0"
        ));
    }
}
