//! Events, as kube-controller-manager's recorders write them: one writer for every
//! controller in this process.

use k8s_openapi::api::core::v1::Event;
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

/// Now, as Kubernetes writes timestamps.
pub fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Record an event about `involved` (an ObjectReference as JSON) from `component`, named
/// `<object>.<nanos hex>` as kube-controller-manager names them.
pub(crate) async fn record(
    client: &Client,
    involved: Value,
    component: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> kube::Result<()> {
    let namespace = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let name = involved["name"].as_str().unwrap_or_default().to_owned();
    let now = now_text();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond()), "namespace": namespace},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let event: Event = serde_json::from_value(event).map_err(kube::Error::SerdeError)?;
    Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
}
