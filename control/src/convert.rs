//! Versions that share storage: HorizontalPodAutoscalers are served as autoscaling/v2 (the
//! storage version) and autoscaling/v1, one set of objects seen through two shapes.
//!
//! A v1 request is served by the v2 storage: its body is converted up before anything else
//! sees it, and every object it gets back is converted down. What v1 cannot say (metrics other
//! than CPU utilization, `behavior`, status conditions) does not appear in the v1 view, and a
//! v1 write keeps what the stored object had of it, so a v1 client cannot erase it by accident.

use serde_json::{Value, json};
use strait_api::registry::{self, Resource};

/// The resource whose storage serves `resource`: itself, or the storage version when
/// `resource` is another version of the same objects.
pub fn storage_of(resource: &'static Resource) -> &'static Resource {
    if is_hpa_v1(resource) {
        registry::find("autoscaling", "v2", "horizontalpodautoscalers")
            .expect("autoscaling/v2 is registered")
    } else {
        resource
    }
}

fn is_hpa_v1(resource: &Resource) -> bool {
    resource.group == "autoscaling"
        && resource.version == "v1"
        && resource.kind == "HorizontalPodAutoscaler"
}

/// A v1 body in the storage version. `stored` is the object it replaces, if any: what v1
/// cannot express is kept from it.
pub fn up(resource: &Resource, mut obj: Value, stored: Option<&Value>) -> Value {
    if !is_hpa_v1(resource) || !obj.is_object() {
        return obj;
    }
    obj["apiVersion"] = json!("autoscaling/v2");
    let target = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .and_then(|spec| spec.remove("targetCPUUtilizationPercentage"));
    let mut metrics: Vec<Value> = stored
        .and_then(|s| s["spec"]["metrics"].as_array())
        .map(|m| {
            m.iter()
                .filter(|m| !is_cpu_utilization(m))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(target) = target.filter(|t| !t.is_null()) {
        metrics.insert(
            0,
            json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}),
        );
    }
    if obj["spec"].is_object() && !metrics.is_empty() {
        obj["spec"]["metrics"] = json!(metrics);
    }
    if let Some(behavior) = stored
        .map(|s| &s["spec"]["behavior"])
        .filter(|b| !b.is_null())
        && obj["spec"].is_object()
    {
        obj["spec"]["behavior"] = behavior.clone();
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(current) = status
            .remove("currentCPUUtilizationPercentage")
            .filter(|c| !c.is_null())
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]),
        );
    }
    obj
}

/// A stored object as the requested version shows it.
pub fn down(resource: &Resource, mut obj: Value) -> Value {
    if !is_hpa_v1(resource) || !obj.is_object() {
        return obj;
    }
    obj["apiVersion"] = json!("autoscaling/v1");
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let cpu = spec
            .remove("metrics")
            .and_then(|m| {
                m.as_array()
                    .and_then(|m| m.iter().find(|m| is_cpu_utilization(m)).cloned())
            })
            .map(|m| m["resource"]["target"]["averageUtilization"].clone());
        spec.remove("behavior");
        if let Some(cpu) = cpu.filter(|c| !c.is_null()) {
            spec.insert("targetCPUUtilizationPercentage".into(), cpu);
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let cpu = status.remove("currentMetrics").and_then(|m| {
            m.as_array().and_then(|m| {
                m.iter()
                    .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
                    .map(|m| m["resource"]["current"]["averageUtilization"].clone())
            })
        });
        status.remove("conditions");
        if let Some(cpu) = cpu.filter(|c| !c.is_null()) {
            status.insert("currentCPUUtilizationPercentage".into(), cpu);
        }
    }
    obj
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1() -> &'static Resource {
        registry::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap()
    }

    #[test]
    fn v1_and_v2_are_one_object_in_two_shapes() {
        let written = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
        });
        let stored = up(v1(), written.clone(), None);
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            60
        );
        assert!(
            stored["spec"]
                .get("targetCPUUtilizationPercentage")
                .is_none()
        );
        assert_eq!(down(v1(), stored), written, "the round trip is exact");
        assert_eq!(storage_of(v1()).version, "v2");
    }

    #[test]
    fn a_v1_write_keeps_what_v1_cannot_say() {
        let stored = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "spec": {"maxReplicas": 5, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}
                     ]},
        });
        let seen = down(v1(), stored.clone());
        assert_eq!(seen["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(seen["spec"].get("metrics").is_none() && seen["spec"].get("behavior").is_none());
        let mut changed = seen;
        changed["spec"]["targetCPUUtilizationPercentage"] = json!(70);
        let written = up(v1(), changed, Some(&stored));
        let metrics = written["spec"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 70);
        assert_eq!(metrics[1]["type"], "Pods");
        assert_eq!(written["spec"]["behavior"], stored["spec"]["behavior"]);
    }
}
