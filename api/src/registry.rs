//! The resource table: every kind Strait serves, with the names, scope, verbs, short names,
//! categories and subresources kube-apiserver 1.33 gives it.
//!
//! Everything else that needs to know what a resource is (URL routing, storage keys,
//! discovery documents, `kubectl get` tables) reads this one table, so a resource is added
//! or changed here and nowhere else. The values were checked against the `/api/v1` document
//! a real kube-apiserver serves (for example, `namespaces` has no `deletecollection` and
//! `bindings` only `create`).
//!
//! Versions of one group share storage ([`Resource::storage_prefix`] has no version in it),
//! as they do in kube-apiserver; only `autoscaling` serves a kind in two versions
//! (`horizontalpodautoscalers` in `v2` and `v1`), and converting between them is the
//! server's job. `events.k8s.io` events are a resource of their own here, stored apart from
//! core events: the two shapes differ (`note`/`regarding` against `message`/`involvedObject`).

/// One resource kube-apiserver serves at `/api/v1/...` or `/apis/<group>/<version>/...`.
#[derive(Debug)]
pub struct Resource {
    /// The API group; `""` is the core (legacy) group served under `/api`.
    pub group: &'static str,
    /// The version this entry is served at, e.g. `"v1"` or `"v2"`.
    pub version: &'static str,
    /// The kind of the objects, e.g. `"Deployment"`.
    pub kind: &'static str,
    /// The plural resource name used in URLs, e.g. `"deployments"`.
    pub plural: &'static str,
    /// The singular name kubectl also accepts, e.g. `"deployment"`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`po`, `svc`, `deploy`), as kube-apiserver lists them.
    pub short_names: &'static [&'static str],
    /// Categories (`all` is what `kubectl get all` expands).
    pub categories: &'static [&'static str],
    /// The verbs the resource supports, sorted as discovery lists them.
    pub verbs: &'static [&'static str],
    /// Subresources served under `<object>/<name>`.
    pub subresources: &'static [Subresource],
}

/// A subresource such as `status`, `scale` or `log`, with the kind its requests and
/// responses carry (which may belong to another group: `deployments/scale` is an
/// `autoscaling/v1` `Scale`).
#[derive(Debug)]
pub struct Subresource {
    /// The name after the object's name in the URL, e.g. `"scale"`.
    pub name: &'static str,
    /// The group of the kind it carries (always filled in, even when it is the parent's).
    pub group: &'static str,
    /// The version of the kind it carries (always filled in).
    pub version: &'static str,
    /// The kind it carries, e.g. `"Scale"` or `"Pod"`.
    pub kind: &'static str,
    /// The verbs it supports.
    pub verbs: &'static [&'static str],
}

impl Resource {
    /// The `apiVersion` objects of this resource carry: `"v1"` for the core group,
    /// `"<group>/<version>"` otherwise.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }

    /// The kind of a list of these objects, e.g. `"PodList"`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key prefix under which every object of this resource lives:
    /// `/registry/<group or core>/<plural>/`.
    pub fn storage_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key prefix of one namespace's objects, for listing a namespace:
    /// `/registry/<group or core>/<plural>/<namespace>/`.
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("{}{namespace}/", self.storage_prefix())
    }

    /// The store key of one object: `<prefix><namespace>/<name>` for namespaced resources,
    /// `<prefix><name>` for cluster-scoped ones. The namespace is ignored for cluster-scoped
    /// resources; a namespaced resource given no namespace gets the cluster-scoped form,
    /// which no stored object has, so callers must resolve the namespace first.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("{}{namespace}/{name}", self.storage_prefix())
            }
            _ => format!("{}{name}", self.storage_prefix()),
        }
    }

    /// Whether the resource serves the subresource `name` (e.g. `"status"`).
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresource(name).is_some()
    }

    /// The subresource called `name`, if the resource serves it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource itself (not a subresource) supports `verb`.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

impl Subresource {
    /// The `apiVersion` of the kind this subresource carries.
    pub fn api_version(&self) -> String {
        api_version(self.group, self.version)
    }
}

/// `"v1"` for the core group, `"<group>/<version>"` otherwise.
fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an `apiVersion` into group and version: `"v1"` → `("", "v1")`,
/// `"apps/v1"` → `("apps", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Every resource Strait serves, in discovery order (groups in the order `/apis` lists
/// them, each group's preferred version first).
pub fn resources() -> &'static [Resource] {
    RESOURCES
}

/// The resource served at `group`/`version` under the plural name `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects carry `apiVersion: api_version` and `kind: kind`
/// (what `kubectl apply` sends).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Every group with its versions, preferred version first. The core group comes first, as
/// `""`; `/apis` lists the others.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for resource in RESOURCES {
        match groups.iter_mut().find(|(g, _)| *g == resource.group) {
            Some((_, versions)) => {
                if !versions.contains(&resource.version) {
                    versions.push(resource.version);
                }
            }
            None => groups.push((resource.group, vec![resource.version])),
        }
    }
    groups
}

// Verb sets, sorted the way kube-apiserver lists them.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE: &[&str] = &["create"];
const GET: &[&str] = &["get"];
const UPDATE: &[&str] = &["update"];
const GET_LIST: &[&str] = &["get", "list"];
const CREATE_GET: &[&str] = &["create", "get"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

const fn sub(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version,
        kind,
        verbs,
    }
}

/// The `status` subresource, which carries the parent's own kind.
const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    sub("status", group, version, kind, GET_PATCH_UPDATE)
}

/// The `scale` subresource, which always carries an `autoscaling/v1` `Scale`.
const SCALE: Subresource = sub("scale", "autoscaling", "v1", "Scale", GET_PATCH_UPDATE);

#[expect(
    clippy::too_many_arguments,
    reason = "one positional row per resource keeps the table readable"
)]
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    subresources: &'static [Subresource],
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        verbs,
        subresources,
    }
}

const NS: bool = true;
const CLUSTER: bool = false;

// One row per resource reads better than rustfmt's one argument per line.
#[rustfmt::skip]
static RESOURCES: &[Resource] = &[
    // core/v1
    res("", "v1", "Binding", "bindings", "binding", NS, NONE, NONE, CREATE, &[]),
    res(
        "", "v1", "ComponentStatus", "componentstatuses", "componentstatus", CLUSTER, &["cs"],
        NONE, GET_LIST, &[],
    ),
    res("", "v1", "ConfigMap", "configmaps", "configmap", NS, &["cm"], NONE, ALL_VERBS, &[]),
    res("", "v1", "Endpoints", "endpoints", "endpoints", NS, &["ep"], NONE, ALL_VERBS, &[]),
    res("", "v1", "Event", "events", "event", NS, &["ev"], NONE, ALL_VERBS, &[]),
    res(
        "", "v1", "LimitRange", "limitranges", "limitrange", NS, &["limits"], NONE, ALL_VERBS,
        &[],
    ),
    res(
        "", "v1", "Namespace", "namespaces", "namespace", CLUSTER, &["ns"], NONE,
        NAMESPACE_VERBS,
        &[sub("finalize", "", "v1", "Namespace", UPDATE), status("", "v1", "Namespace")],
    ),
    res(
        "", "v1", "Node", "nodes", "node", CLUSTER, &["no"], NONE, ALL_VERBS,
        &[sub("proxy", "", "v1", "NodeProxyOptions", GET), status("", "v1", "Node")],
    ),
    res(
        "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
        NS, &["pvc"], NONE, ALL_VERBS, &[status("", "v1", "PersistentVolumeClaim")],
    ),
    res(
        "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", CLUSTER, &["pv"],
        NONE, ALL_VERBS, &[status("", "v1", "PersistentVolume")],
    ),
    res(
        "", "v1", "Pod", "pods", "pod", NS, &["po"], ALL, ALL_VERBS,
        &[
            sub("attach", "", "v1", "PodAttachOptions", CREATE_GET),
            sub("binding", "", "v1", "Binding", CREATE),
            sub("eviction", "policy", "v1", "Eviction", CREATE),
            sub("exec", "", "v1", "PodExecOptions", CREATE_GET),
            sub("log", "", "v1", "Pod", GET),
            sub("portforward", "", "v1", "PodPortForwardOptions", CREATE_GET),
            status("", "v1", "Pod"),
        ],
    ),
    res(
        "", "v1", "PodTemplate", "podtemplates", "podtemplate", NS, NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller",
        NS, &["rc"], ALL, ALL_VERBS, &[SCALE, status("", "v1", "ReplicationController")],
    ),
    res(
        "", "v1", "ResourceQuota", "resourcequotas", "resourcequota", NS, &["quota"], NONE,
        ALL_VERBS, &[status("", "v1", "ResourceQuota")],
    ),
    res("", "v1", "Secret", "secrets", "secret", NS, NONE, NONE, ALL_VERBS, &[]),
    res(
        "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", NS, &["sa"], NONE,
        ALL_VERBS,
        &[sub("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE)],
    ),
    res(
        "", "v1", "Service", "services", "service", NS, &["svc"], ALL, ALL_VERBS,
        &[status("", "v1", "Service")],
    ),
    // apps/v1
    res(
        "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NS,
        NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "apps", "v1", "DaemonSet", "daemonsets", "daemonset", NS, &["ds"], ALL, ALL_VERBS,
        &[status("apps", "v1", "DaemonSet")],
    ),
    res(
        "apps", "v1", "Deployment", "deployments", "deployment", NS, &["deploy"], ALL,
        ALL_VERBS, &[SCALE, status("apps", "v1", "Deployment")],
    ),
    res(
        "apps", "v1", "ReplicaSet", "replicasets", "replicaset", NS, &["rs"], ALL, ALL_VERBS,
        &[SCALE, status("apps", "v1", "ReplicaSet")],
    ),
    res(
        "apps", "v1", "StatefulSet", "statefulsets", "statefulset", NS, &["sts"], ALL,
        ALL_VERBS, &[SCALE, status("apps", "v1", "StatefulSet")],
    ),
    // events.k8s.io/v1
    res("events.k8s.io", "v1", "Event", "events", "event", NS, &["ev"], NONE, ALL_VERBS, &[]),
    // autoscaling: v2 is preferred, v1 still served.
    res(
        "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
        "horizontalpodautoscaler", NS, &["hpa"], ALL, ALL_VERBS,
        &[status("autoscaling", "v2", "HorizontalPodAutoscaler")],
    ),
    res(
        "autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
        "horizontalpodautoscaler", NS, &["hpa"], ALL, ALL_VERBS,
        &[status("autoscaling", "v1", "HorizontalPodAutoscaler")],
    ),
    // batch/v1
    res(
        "batch", "v1", "CronJob", "cronjobs", "cronjob", NS, &["cj"], ALL, ALL_VERBS,
        &[status("batch", "v1", "CronJob")],
    ),
    res(
        "batch", "v1", "Job", "jobs", "job", NS, NONE, ALL, ALL_VERBS,
        &[status("batch", "v1", "Job")],
    ),
    // networking.k8s.io/v1
    res(
        "networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", CLUSTER,
        NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", NS, &["ing"], NONE,
        ALL_VERBS, &[status("networking.k8s.io", "v1", "Ingress")],
    ),
    res(
        "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", NS,
        &["netpol"], NONE, ALL_VERBS, &[],
    ),
    // policy/v1
    res(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget",
        NS, &["pdb"], NONE, ALL_VERBS, &[status("policy", "v1", "PodDisruptionBudget")],
    ),
    // rbac.authorization.k8s.io/v1
    res(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
        "clusterrolebinding", CLUSTER, NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole",
        CLUSTER, NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NS,
        NONE, NONE, ALL_VERBS, &[],
    ),
    res(
        "rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NS, NONE, NONE, ALL_VERBS,
        &[],
    ),
    // storage.k8s.io/v1
    res(
        "storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", CLUSTER, NONE, NONE,
        ALL_VERBS, &[],
    ),
    res(
        "storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", CLUSTER, NONE, NONE,
        ALL_VERBS, &[],
    ),
    res(
        "storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", CLUSTER,
        &["sc"], NONE, ALL_VERBS, &[],
    ),
    res(
        "storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment",
        CLUSTER, NONE, NONE, ALL_VERBS, &[status("storage.k8s.io", "v1", "VolumeAttachment")],
    ),
    // coordination.k8s.io/v1
    res(
        "coordination.k8s.io", "v1", "Lease", "leases", "lease", NS, NONE, NONE, ALL_VERBS,
        &[],
    ),
    // discovery.k8s.io/v1
    res(
        "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NS, NONE,
        NONE, ALL_VERBS, &[],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const KNOWN_VERBS: &[&str] = &[
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];

    #[test]
    fn group_version_plural_and_kind_are_unique() {
        let mut plurals = HashSet::new();
        let mut kinds = HashSet::new();
        for r in resources() {
            assert!(
                plurals.insert((r.group, r.version, r.plural)),
                "{}/{} {} listed twice",
                r.group,
                r.version,
                r.plural
            );
            assert!(
                kinds.insert((r.group, r.version, r.kind)),
                "{}/{} kind {} listed twice",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    #[test]
    fn short_names_point_at_one_resource_except_events() {
        // kube-apiserver gives both core and events.k8s.io events the short name `ev`;
        // kubectl resolves it to the core group, which it prefers.
        let mut seen: Vec<(&str, &Resource)> = Vec::new();
        for r in resources() {
            for short in r.short_names {
                if let Some((_, other)) = seen.iter().find(|(s, _)| s == short) {
                    assert!(
                        other.plural == r.plural,
                        "short name {short} is used by {} and {}",
                        other.plural,
                        r.plural
                    );
                }
                seen.push((short, r));
            }
        }
    }

    #[test]
    fn verbs_are_known_and_sorted() {
        for r in resources() {
            let lists = std::iter::once(r.verbs).chain(r.subresources.iter().map(|s| s.verbs));
            for verbs in lists {
                assert!(!verbs.is_empty(), "{} has no verbs", r.plural);
                assert!(
                    verbs.is_sorted(),
                    "{} verbs {verbs:?} are not sorted",
                    r.plural
                );
                for verb in verbs {
                    assert!(KNOWN_VERBS.contains(verb), "{} has verb {verb}", r.plural);
                }
            }
            let names: Vec<_> = r.subresources.iter().map(|s| s.name).collect();
            assert!(
                names.is_sorted(),
                "{} subresources {names:?} are not sorted",
                r.plural
            );
        }
    }

    #[test]
    fn special_verbs_match_kube_apiserver() {
        let bindings = find("", "v1", "bindings").expect("bindings");
        assert_eq!(bindings.verbs, ["create"]);
        let namespaces = find("", "v1", "namespaces").expect("namespaces");
        assert!(!namespaces.supports("deletecollection"));
        assert!(namespaces.supports("watch"));
        let cs = find("", "v1", "componentstatuses").expect("componentstatuses");
        assert_eq!(cs.verbs, ["get", "list"]);
        let services = find("", "v1", "services").expect("services");
        assert!(services.supports("deletecollection"));
    }

    #[test]
    fn scale_subresources_carry_autoscaling_v1_scale() {
        for plural in ["deployments", "replicasets", "statefulsets"] {
            let r = find("apps", "v1", plural).expect(plural);
            let scale = r.subresource("scale").expect("scale subresource");
            assert_eq!(
                (scale.group, scale.version, scale.kind),
                ("autoscaling", "v1", "Scale")
            );
            assert_eq!(scale.api_version(), "autoscaling/v1");
            assert_eq!(scale.verbs, ["get", "patch", "update"]);
        }
        let rc = find("", "v1", "replicationcontrollers").expect("rc");
        assert!(rc.has_subresource("scale"));
        assert!(
            !find("apps", "v1", "daemonsets")
                .expect("ds")
                .has_subresource("scale")
        );
    }

    #[test]
    fn pod_subresources_are_those_kube_apiserver_lists() {
        let pods = find("", "v1", "pods").expect("pods");
        let eviction = pods.subresource("eviction").expect("eviction");
        assert_eq!((eviction.group, eviction.kind), ("policy", "Eviction"));
        assert_eq!(pods.subresource("log").expect("log").verbs, ["get"]);
        assert_eq!(
            pods.subresource("exec").expect("exec").kind,
            "PodExecOptions"
        );
        assert_eq!(
            pods.subresource("binding").expect("binding").verbs,
            ["create"]
        );
        let sa = find("", "v1", "serviceaccounts").expect("sa");
        let token = sa.subresource("token").expect("token");
        assert_eq!(token.api_version(), "authentication.k8s.io/v1");
        assert!(!pods.has_subresource("scale"));
    }

    #[test]
    fn short_names_and_categories_of_common_kinds() {
        let cases = [
            ("", "pods", "po", true),
            ("", "services", "svc", true),
            ("apps", "deployments", "deploy", true),
            ("apps", "statefulsets", "sts", true),
            ("batch", "cronjobs", "cj", true),
            ("", "configmaps", "cm", false),
            ("networking.k8s.io", "networkpolicies", "netpol", false),
            ("storage.k8s.io", "storageclasses", "sc", false),
        ];
        for (group, plural, short, in_all) in cases {
            let r = resources()
                .iter()
                .find(|r| r.group == group && r.plural == plural)
                .expect(plural);
            assert!(
                r.short_names.contains(&short),
                "{plural} lacks short name {short}"
            );
            assert_eq!(
                r.categories.contains(&"all"),
                in_all,
                "{plural} category all"
            );
        }
        let jobs = find("batch", "v1", "jobs").expect("jobs");
        assert!(jobs.short_names.is_empty());
        assert_eq!(jobs.categories, ["all"]);
    }

    #[test]
    fn find_kind_resolves_api_versions() {
        assert_eq!(find_kind("v1", "Pod").expect("pod").plural, "pods");
        assert_eq!(
            find_kind("apps/v1", "Deployment").expect("deploy").plural,
            "deployments"
        );
        assert_eq!(
            find_kind("autoscaling/v1", "HorizontalPodAutoscaler")
                .expect("hpa")
                .version,
            "v1"
        );
        assert!(find_kind("apps/v1", "Pod").is_none());
        assert!(find_kind("extensions/v1beta1", "Deployment").is_none());
        assert_eq!(
            split_api_version("rbac.authorization.k8s.io/v1"),
            ("rbac.authorization.k8s.io", "v1")
        );
    }

    #[test]
    fn api_version_and_list_kind() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.list_kind(), "PodList");
        let ing = find("networking.k8s.io", "v1", "ingresses").expect("ingresses");
        assert_eq!(ing.api_version(), "networking.k8s.io/v1");
    }

    #[test]
    fn storage_keys_have_group_plural_namespace_and_name() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(pods.storage_prefix(), "/registry/core/pods/");
        assert_eq!(
            pods.namespace_prefix("default"),
            "/registry/core/pods/default/"
        );
        assert_eq!(
            pods.storage_key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        let deploy = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(
            deploy.storage_key(Some("ns1"), "d"),
            "/registry/apps/deployments/ns1/d"
        );
        let nodes = find("", "v1", "nodes").expect("nodes");
        assert_eq!(
            nodes.storage_key(Some("ignored"), "n1"),
            "/registry/core/nodes/n1"
        );
        assert_eq!(nodes.storage_key(None, "n1"), "/registry/core/nodes/n1");
        // Both served versions of a kind share one prefix.
        let hpa1 = find("autoscaling", "v1", "horizontalpodautoscalers").expect("hpa v1");
        let hpa2 = find("autoscaling", "v2", "horizontalpodautoscalers").expect("hpa v2");
        assert_eq!(hpa1.storage_prefix(), hpa2.storage_prefix());
    }

    #[test]
    fn no_prefix_contains_another() {
        // A prefix scan for one resource must never return another resource's objects.
        let prefixes: HashSet<String> = resources().iter().map(Resource::storage_prefix).collect();
        for a in &prefixes {
            for b in &prefixes {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} contains {b}");
            }
        }
    }

    #[test]
    fn groups_list_preferred_versions_first() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        let autoscaling = groups
            .iter()
            .find(|(g, _)| *g == "autoscaling")
            .expect("autoscaling");
        assert_eq!(autoscaling.1, ["v2", "v1"]);
        for wanted in [
            "apps",
            "batch",
            "networking.k8s.io",
            "discovery.k8s.io",
            "rbac.authorization.k8s.io",
            "policy",
            "coordination.k8s.io",
            "storage.k8s.io",
            "events.k8s.io",
        ] {
            assert!(
                groups.iter().any(|(g, _)| *g == wanted),
                "group {wanted} missing"
            );
        }
        let names: HashSet<_> = groups.iter().map(|(g, _)| *g).collect();
        assert_eq!(names.len(), groups.len(), "a group is listed twice");
    }

    #[test]
    fn scopes_of_cluster_wide_kinds() {
        for (group, plural) in [
            ("", "namespaces"),
            ("", "nodes"),
            ("", "persistentvolumes"),
            ("networking.k8s.io", "ingressclasses"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("storage.k8s.io", "storageclasses"),
            ("storage.k8s.io", "csinodes"),
        ] {
            let r = find(group, "v1", plural).expect(plural);
            assert!(!r.namespaced, "{plural} should be cluster-scoped");
        }
        assert!(
            find("coordination.k8s.io", "v1", "leases")
                .expect("leases")
                .namespaced
        );
    }
}
