//! Pure translations from a Pod to what runs: the process's arguments and environment, its
//! resources, the files every pod gets (/etc/hosts, /etc/resolv.conf) and the restart backoff.
//! The rules are the kubelet's (`pkg/kubelet/kuberuntime`, `pkg/kubelet/network/dns`).

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::{Container, Pod};
use strait_api::validate::parse_quantity;
use strait_runtime::{Resources, spec};

/// The first restart waits this long; each next one twice as long (kubelet's backoff).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest wait between restarts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The wait before restart number `restarts + 1`.
pub fn backoff(restarts: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(restarts.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

/// The process's argv: `command` replaces the image's entrypoint, `args` its cmd; with only
/// `args`, the entrypoint runs with them (the Kubernetes rules).
pub fn argv(container: &Container, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => command
            .iter()
            .chain(args.iter().flatten())
            .cloned()
            .collect(),
        (_, Some(args)) if !args.is_empty() => entrypoint.iter().chain(args).cloned().collect(),
        _ => entrypoint.iter().chain(cmd).cloned().collect(),
    }
}

/// What env resolution may read besides the pod: ConfigMaps and Secrets of its namespace.
pub trait Lookup {
    /// The data of ConfigMap `name`, `None` if it does not exist.
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// The decoded data of Secret `name`, `None` if it does not exist.
    fn secret(&self, name: &str) -> Option<BTreeMap<String, String>>;
}

/// The container's environment: the image's, then `envFrom`, then `env`, later ones winning;
/// `$(VAR)` references to earlier variables are expanded as the kubelet does. An error names
/// the variable and what is missing (the kubelet reports it as CreateContainerConfigError).
pub fn environment(
    pod: &Pod,
    container: &Container,
    image_env: &[String],
    lookup: &dyn Lookup,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = image_env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let set = |env: &mut Vec<(String, String)>, key: String, value: String| {
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (data, name, optional, kind) = if let Some(r) = &source.config_map_ref {
            (
                lookup.config_map(&r.name),
                r.name.clone(),
                r.optional,
                "configmap",
            )
        } else if let Some(r) = &source.secret_ref {
            (lookup.secret(&r.name), r.name.clone(), r.optional, "secret")
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env),
            Some(from) => {
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path).ok_or_else(|| {
                        format!(
                            "env {}: unsupported fieldRef {}",
                            var.name, field.field_path
                        )
                    })?
                } else if let Some(key) = &from.config_map_key_ref {
                    match lookup
                        .config_map(&key.name)
                        .and_then(|d| d.get(&key.key).cloned())
                    {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}",
                                key.key, key.name
                            ));
                        }
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    match lookup
                        .secret(&key.name)
                        .and_then(|d| d.get(&key.key).cloned())
                    {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}",
                                key.key, key.name
                            ));
                        }
                    }
                } else if let Some(field) = &from.resource_field_ref {
                    resource_value(container, &field.resource).ok_or_else(|| {
                        format!(
                            "env {}: unsupported resourceFieldRef {}",
                            var.name, field.resource
                        )
                    })?
                } else {
                    String::new()
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// Expands `$(NAME)` from earlier variables; `$$(NAME)` is a literal `$(NAME)`; unknown names
/// stay as written.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(escaped) = tail.strip_prefix("$$") {
            out.push('$');
            rest = escaped;
        } else if let Some(open) = tail.strip_prefix("$(")
            && let Some(close) = open.find(')')
        {
            let name = &open[..close];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..close + 3]),
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API field of the pod.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let label = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        other => {
            let key = other
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"));
            if let Some(key) = key {
                label(&meta.labels, key)
            } else {
                let key = other
                    .strip_prefix("metadata.annotations['")
                    .and_then(|k| k.strip_suffix("']"))?;
                label(&meta.annotations, key)
            }
        }
    })
}

/// Labels or annotations as the downward API writes them: `key="value"` lines, sorted.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

fn resource_value(container: &Container, resource: &str) -> Option<String> {
    let (section, name) = resource.split_once('.')?;
    let resources = container.resources.as_ref()?;
    let map = match section {
        "limits" => resources.limits.as_ref(),
        "requests" => resources.requests.as_ref(),
        _ => None,
    }?;
    let quantity = parse_quantity(&map.get(name)?.0).ok()?;
    Some(match name {
        // Whole cores, rounded up, as the kubelet exposes them with the default divisor.
        "cpu" => ((quantity.milli_value() + 999) / 1000).to_string(),
        _ => (quantity.nanos() / 1_000_000_000).to_string(),
    })
}

/// The container's cgroup limits: CPU request → shares, CPU limit → quota, memory limit.
pub fn resources(container: &Container) -> Resources {
    let get = |section: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               name: &str| {
        section
            .and_then(|m| m.get(name))
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    // A limit without a request requests the limit (API defaulting does this too).
    let cpu_request = get(requests, "cpu").or_else(|| get(limits, "cpu"));
    let milli = |q: strait_api::validate::Quantity| i64::try_from(q.milli_value()).unwrap_or(0);
    Resources {
        memory_limit: get(limits, "memory")
            .and_then(|q| i64::try_from(q.nanos() / 1_000_000_000).ok())
            .filter(|b| *b > 0),
        cpu_shares: Some(spec::milli_cpu_to_shares(cpu_request.map_or(0, milli))),
        cpu_quota: get(limits, "cpu")
            .and_then(|q| spec::milli_cpu_to_quota(milli(q), spec::CPU_PERIOD_US)),
        cpu_period: get(limits, "cpu").map(|_| spec::CPU_PERIOD_US),
        pids_limit: None,
    }
}

/// /etc/resolv.conf for the pod's DNS policy: ClusterFirst (the default) points at the cluster
/// DNS with the Kubernetes search path and ndots:5; `Default` copies the node's; `None` uses
/// only `dnsConfig`. `dnsConfig` is merged in every case.
pub fn resolv_conf(
    pod: &Pod,
    cluster_dns: &str,
    cluster_domain: &str,
    host_resolv: &str,
) -> String {
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "ClusterFirst" if !host_network => {
                cluster_first(namespace, cluster_dns, cluster_domain)
            }
            "ClusterFirstWithHostNet" => cluster_first(namespace, cluster_dns, cluster_domain),
            "None" => (Vec::new(), Vec::new(), Vec::new()),
            _ => {
                let mut servers = Vec::new();
                let mut searches = Vec::new();
                let mut options = Vec::new();
                for line in host_resolv.lines() {
                    let mut words = line.split_whitespace();
                    match words.next() {
                        Some("nameserver") => servers.extend(words.map(str::to_owned)),
                        Some("search") => searches.extend(words.map(str::to_owned)),
                        Some("options") => options.extend(words.map(str::to_owned)),
                        _ => {}
                    }
                }
                (servers, searches, options)
            }
        };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let name = option.name.clone().unwrap_or_default();
            options.retain(|o| o.split(':').next() != Some(name.as_str()));
            options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name,
            });
        }
    }
    let mut text = String::new();
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for server in servers.iter().take(3) {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

fn cluster_first(
    namespace: &str,
    dns: &str,
    domain: &str,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        vec![dns.to_owned()],
        vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.to_owned(),
        ],
        vec!["ndots:5".to_owned()],
    )
}

/// The pod's hostname: `spec.hostname` or the pod's name (truncated to 63 characters).
pub fn hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars().take(63).collect()
}

/// /etc/hosts: localhost, the pod's own address with its hostname (and FQDN with a subdomain),
/// then `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let hostname = hostname(pod);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    match pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()) {
        Some(sub) if !sub.is_empty() => text.push_str(&format!(
            "{pod_ip}\t{hostname}.{sub}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
        )),
        _ => text.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    for alias in pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        text.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{names}\n",
            alias.ip
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Data;
    impl Lookup for Data {
        fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "cfg").then(|| [("mode".to_owned(), "fast".to_owned())].into())
        }
        fn secret(&self, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "creds").then(|| [("password".to_owned(), "hunter2".to_owned())].into())
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": spec,
            "status": {"podIP": "10.244.1.5", "hostIP": "10.0.0.11"},
        }))
        .unwrap()
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_says() {
        let ep = vec!["/entry".to_owned()];
        let cmd = vec!["serve".to_owned()];
        let c = |v| container(v);
        assert_eq!(
            argv(&c(json!({"name": "c"})), &ep, &cmd),
            ["/entry", "serve"]
        );
        assert_eq!(
            argv(&c(json!({"name": "c", "args": ["x"]})), &ep, &cmd),
            ["/entry", "x"]
        );
        assert_eq!(
            argv(
                &c(json!({"name": "c", "command": ["sh"], "args": ["-c", "true"]})),
                &ep,
                &cmd
            ),
            ["sh", "-c", "true"]
        );
        assert_eq!(
            argv(&c(json!({"name": "c", "command": ["sh"]})), &ep, &cmd),
            ["sh"]
        );
    }

    #[test]
    fn environment_layers_and_expands() {
        let p = pod(json!({"nodeName": "n1", "containers": []}));
        let c = container(json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "PATH", "value": "/custom"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "GREETING", "value": "hi $(POD) $$(POD) $(NOPE)"},
            {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}
        ]}));
        let env = environment(
            &p,
            &c,
            &["PATH=/bin".to_owned(), "HOME=/".to_owned()],
            &Data,
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/custom"));
        assert_eq!(get("HOME"), Some("/"));
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("POD"), Some("web-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("IP"), Some("10.244.1.5"));
        assert_eq!(get("PASS"), Some("hunter2"));
        assert_eq!(get("GREETING"), Some("hi web-1 $(POD) $(NOPE)"));
        assert_eq!(get("MISSING"), None);

        let bad = container(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}));
        let err = environment(&p, &bad, &[], &Data).unwrap_err();
        assert!(err.contains("ConfigMap nope"), "{err}");
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let c = container(json!({"name": "c", "resources": {
            "requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}));
        let r = resources(&c);
        assert_eq!(r.memory_limit, Some(64 << 20));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        let none = resources(&container(json!({"name": "c"})));
        assert_eq!(none.memory_limit, None);
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!(none.cpu_quota, None);
    }

    #[test]
    fn cluster_first_dns_has_the_search_path_and_ndots() {
        let p = pod(json!({"containers": []}));
        assert_eq!(
            resolv_conf(&p, "10.96.0.10", "cluster.local", "nameserver 1.1.1.1\n"),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let host = pod(json!({"containers": [], "dnsPolicy": "Default",
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}}));
        assert_eq!(
            resolv_conf(
                &host,
                "10.96.0.10",
                "cluster.local",
                "nameserver 1.1.1.1\nsearch lan\n"
            ),
            "search lan\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn hosts_name_the_pod_and_backoff_doubles_to_five_minutes() {
        let p = pod(json!({"containers": [], "hostname": "db-0", "subdomain": "db"}));
        let hosts = hosts_file(&p, "10.244.1.5", "cluster.local");
        assert!(
            hosts.contains("10.244.1.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{hosts}"
        );
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(1), Duration::from_secs(20));
        assert_eq!(backoff(10), Duration::from_secs(300));
    }
}
