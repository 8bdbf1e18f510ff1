//! What the server changes in an object on update beyond defaulting: kube-apiserver's registry
//! strategies' `PrepareForUpdate`. It runs after defaulting and before validation, so a field
//! it drops is neither validated nor stored.

use serde_json::{Map, Value, json};

use crate::validate::externally_accessible;

/// Applies the update preparation of `kind` to `new`, the replacement of the stored `old`.
pub fn prepare_for_update(group: &str, kind: &str, new: &mut Value, old: &Value) {
    if (group, kind) == ("", "Service") {
        drop_service_type_dependent_fields(new, old);
    }
}

/// A Service is a union discriminated by `type`: when the type changes, the fields only the
/// old type has go, so that `kubectl edit` or a merge patch of the type alone is accepted (as
/// kube-apiserver's `dropTypeDependentFields`, pkg/registry/core/service/strategy.go). A field
/// goes only when the new type has no use for it and the update left it as it was; one the
/// user changed stays, for validation to refuse. The node ports and ClusterIPs dropped here are
/// released by the write that stores the Service (see `strait-control`'s allocations).
fn drop_service_type_dependent_fields(new: &mut Value, old: &Value) {
    // Read before the spec is borrowed to change it: nothing below changes `type` or
    // `externalIPs`.
    let old_external = old.get("spec").is_some_and(externally_accessible);
    let new_external = new.get("spec").is_some_and(externally_accessible);
    let (old_node_ports, new_node_ports) = (node_ports(old), node_ports(new));
    let had_health_check = needs_health_check(old);
    let has_health_check = needs_health_check(new);
    let node_ports_go = has_node_ports(old) && !has_node_ports(new);
    let (Some(old_spec), Some(new_spec)) = (
        old.get("spec").and_then(Value::as_object),
        new.get_mut("spec").and_then(Value::as_object_mut),
    ) else {
        return;
    };
    let old_type = text(old_spec, "type");
    let new_type = text(new_spec, "type").to_owned();
    let is_lb = |t: &str| t == "LoadBalancer";

    // Every type but ExternalName has a ClusterIP ("None" counts).
    let needs_cluster_ip = |t: &str| t != "ExternalName";
    if needs_cluster_ip(old_type) && !needs_cluster_ip(&new_type) {
        if same(old_spec, new_spec, "clusterIP") && same(old_spec, new_spec, "clusterIPs") {
            new_spec.remove("clusterIP");
            new_spec.remove("clusterIPs");
        }
        for field in ["ipFamilies", "ipFamilyPolicy"] {
            if same(old_spec, new_spec, field) {
                new_spec.remove(field);
            }
        }
    }

    // Node ports go unless the update adds one the old Service did not have.
    if node_ports_go
        && new_node_ports.iter().all(|p| old_node_ports.contains(p))
        && let Some(ports) = new_spec.get_mut("ports").and_then(Value::as_array_mut)
    {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }

    if had_health_check && !has_health_check && same(old_spec, new_spec, "healthCheckNodePort") {
        new_spec.remove("healthCheckNodePort");
    }

    if is_lb(old_type) && !is_lb(&new_type) {
        // Dropped only when both carry the same value (a pointer both sides set, upstream).
        let allocate = |spec: &Map<String, Value>| {
            spec.get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
        };
        if let (Some(a), Some(b)) = (allocate(old_spec), allocate(new_spec))
            && a == b
        {
            new_spec.remove("allocateLoadBalancerNodePorts");
        }
        if same(old_spec, new_spec, "loadBalancerClass") {
            new_spec.remove("loadBalancerClass");
        }
    }

    if old_external && !new_external && same(old_spec, new_spec, "externalTrafficPolicy") {
        new_spec.remove("externalTrafficPolicy");
    }

    // Taking a load balancer away takes its status too; the cloud seam releases the address.
    if !is_lb(&new_type)
        && new
            .pointer("/status/loadBalancer")
            .is_some_and(|lb| lb.as_object().is_none_or(|o| !o.is_empty()))
    {
        new["status"]["loadBalancer"] = json!({});
    }
}

/// A string field, `""` when absent or not a string (as a Go string field reads).
fn text<'a>(spec: &'a Map<String, Value>, field: &str) -> &'a str {
    spec.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Whether `field` reads the same in both specs (absent and `null` are the same).
fn same(old: &Map<String, Value>, new: &Map<String, Value>, field: &str) -> bool {
    let value = |spec: &Map<String, Value>| spec.get(field).filter(|v| !v.is_null()).cloned();
    value(old) == value(new)
}

// The Service's type rules, shared with the server's allocator of node ports.

/// Whether a Service's type has node ports (NodePort and LoadBalancer).
pub fn has_node_ports(service: &Value) -> bool {
    matches!(
        service["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Whether a Service needs a health check node port: a LoadBalancer that sends external
/// traffic to local endpoints only, so the load balancer must learn which nodes have one
/// (kube-apiserver's `NeedsHealthCheck`).
pub fn needs_health_check(service: &Value) -> bool {
    service["spec"]["type"] == "LoadBalancer" && service["spec"]["externalTrafficPolicy"] == "Local"
}

/// The non-zero node ports of a Service's ports.
pub fn node_ports(service: &Value) -> Vec<u64> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter(|n| *n != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored LoadBalancer Service with everything its type carries.
    fn load_balancer() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443, "nodePort": 30443}
                ],
                "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
                "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "example.com/lb",
                "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                "selector": {"app": "web"}
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
        })
    }

    fn retyped(old: &Value, kind: &str) -> Value {
        let mut new = old.clone();
        new["spec"]["type"] = json!(kind);
        prepare_for_update("", "Service", &mut new, old);
        new
    }

    #[test]
    fn load_balancer_to_cluster_ip_drops_what_only_a_load_balancer_has() {
        let old = load_balancer();
        let new = retyped(&old, "ClusterIP");
        let spec = new["spec"].as_object().unwrap();
        for gone in [
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
            "externalTrafficPolicy",
        ] {
            assert!(
                !spec.contains_key(gone),
                "{gone} should be dropped: {spec:?}"
            );
        }
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"]["ports"][1].get("nodePort").is_none());
        // The ClusterIP and what else every type but ExternalName has stay.
        assert_eq!(spec["clusterIP"], "10.96.0.20");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(new["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn node_port_to_cluster_ip_drops_node_ports_and_the_traffic_policy() {
        let mut old = load_balancer();
        old["spec"]["type"] = json!("NodePort");
        old["spec"]["externalTrafficPolicy"] = json!("Cluster");
        for f in [
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ] {
            old["spec"].as_object_mut().unwrap().remove(f);
        }
        old["status"] = json!({"loadBalancer": {}});
        let new = retyped(&old, "ClusterIP");
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.20");
        // A ClusterIP Service with external IPs is still reachable from outside.
        let mut external = old.clone();
        external["spec"]["externalIPs"] = json!(["192.0.2.1"]);
        let new = retyped(&external, "ClusterIP");
        assert_eq!(new["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn anything_to_external_name_drops_the_cluster_ip() {
        let old = load_balancer();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("db.example.com");
        prepare_for_update("", "Service", &mut new, &old);
        let spec = new["spec"].as_object().unwrap();
        for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            assert!(
                !spec.contains_key(gone),
                "{gone} should be dropped: {spec:?}"
            );
        }
        assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn what_the_update_changed_stays_for_validation_to_refuse() {
        let old = load_balancer();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        // A net-new node port keeps all of them; a new class and policy stay.
        new["spec"]["ports"][0]["nodePort"] = json!(30099);
        new["spec"]["loadBalancerClass"] = json!("example.com/other");
        new["spec"]["healthCheckNodePort"] = json!(31001);
        new["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
        prepare_for_update("", "Service", &mut new, &old);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30099);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30443);
        assert_eq!(new["spec"]["loadBalancerClass"], "example.com/other");
        assert_eq!(new["spec"]["healthCheckNodePort"], 31001);
        assert_eq!(new["spec"]["allocateLoadBalancerNodePorts"], false);

        // Removing a port while changing the type is no new node port: the rest go.
        let mut fewer = old.clone();
        fewer["spec"]["type"] = json!("ClusterIP");
        fewer["spec"]["ports"].as_array_mut().unwrap().remove(0);
        prepare_for_update("", "Service", &mut fewer, &old);
        assert!(fewer["spec"]["ports"][0].get("nodePort").is_none());

        // An ExternalName switch that also names a new ClusterIP keeps it.
        let mut moved = old.clone();
        moved["spec"]["type"] = json!("ExternalName");
        moved["spec"]["clusterIP"] = json!("10.96.0.21");
        prepare_for_update("", "Service", &mut moved, &old);
        assert_eq!(moved["spec"]["clusterIP"], "10.96.0.21");
    }

    #[test]
    fn an_update_that_keeps_the_type_changes_nothing() {
        let old = load_balancer();
        let new = retyped(&old, "LoadBalancer");
        assert_eq!(new, old);
        let mut node_port = old.clone();
        node_port["spec"]["type"] = json!("NodePort");
        node_port["status"] = json!({"loadBalancer": {}});
        let before = node_port.clone();
        prepare_for_update("", "Service", &mut node_port, &before);
        assert_eq!(node_port, before);
    }
}
