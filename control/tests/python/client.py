"""The Python `kubernetes` client against strait-control: create, list, watch, patch and
delete pods, deployments, services and configmaps. Run by control/tests/python.rs inside the
control plane's network namespace; any failed expectation raises, so the exit status says it.

usage: client.py KUBECONFIG NAMESPACE
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

kubeconfig, namespace = sys.argv[1], sys.argv[2]
config.load_kube_config(config_file=kubeconfig)
core = client.CoreV1Api()
apps = client.AppsV1Api()


def expect(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what, flush=True)


core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

# A watch started before the writes must see them, in order.
seen = []
start = core.list_namespaced_config_map(namespace).metadata.resource_version


def watch_configmaps():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=20):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()


watcher = threading.Thread(target=watch_configmaps)
watcher.start()

# ConfigMaps
cm = core.create_namespaced_config_map(
    namespace,
    client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "web"}), data={"a": "1"}),
)
expect(cm.metadata.resource_version and cm.metadata.uid, "configmap created with uid and resourceVersion")
cms = core.list_namespaced_config_map(namespace, label_selector="app=web")
expect([c.metadata.name for c in cms.items] == ["settings"], "configmap listed by label")
patched = core.patch_namespaced_config_map("settings", namespace, {"data": {"b": "2"}})
expect(patched.data == {"a": "1", "b": "2"}, "configmap patched (strategic merge from a dict)")
core.delete_namespaced_config_map("settings", namespace)
try:
    core.read_namespaced_config_map("settings", namespace)
    raise AssertionError("a deleted configmap is still readable")
except ApiException as e:
    expect(e.status == 404, "deleted configmap is 404")
watcher.join(timeout=30)
expect(seen == [("ADDED", "settings"), ("MODIFIED", "settings"), ("DELETED", "settings")],
       f"watch saw ADDED, MODIFIED, DELETED in order ({seen})")

# Deployments
labels = {"app": "web"}
deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="busybox:1.36")]),
        ),
    ),
)
created = apps.create_namespaced_deployment(namespace, deployment)
expect(created.spec.strategy.type == "RollingUpdate", "deployment defaulted (strategy RollingUpdate)")
expect(created.metadata.generation == 1, "deployment generation 1")
scaled = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
expect(scaled.spec.replicas == 4, "deployment scaled through /scale")
image = apps.patch_namespaced_deployment(
    "web", namespace, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.37"}]}}}}
)
expect(image.spec.template.spec.containers[0].image == "busybox:1.37", "container image patched by merge key")
expect(image.metadata.generation == 3, "generation bumped by each spec change")
listed = apps.list_deployment_for_all_namespaces(field_selector=f"metadata.namespace={namespace}")
expect([d.metadata.name for d in listed.items] == ["web"], "deployment listed across namespaces")
apps.delete_namespaced_deployment("web", namespace)
# The garbage collector removes the Deployment's ReplicaSets and their pods (background).
deadline = time.time() + 60
while time.time() < deadline and (
    apps.list_namespaced_replica_set(namespace).items or core.list_namespaced_pod(namespace).items
):
    time.sleep(0.2)
expect(apps.list_namespaced_replica_set(namespace).items == [], "the deployment's replicasets collected")
expect(core.list_namespaced_pod(namespace).items == [], "the deployment's pods collected")

# Services
svc = core.create_namespaced_service(
    namespace,
    client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(type="NodePort", selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]),
    ),
)
expect(svc.spec.cluster_ip.startswith("10.96."), f"service got a ClusterIP ({svc.spec.cluster_ip})")
expect(30000 <= svc.spec.ports[0].node_port <= 32767, f"service got a node port ({svc.spec.ports[0].node_port})")
svc = core.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"tier": "front"}}})
expect(svc.metadata.labels == {"tier": "front"}, "service labelled")
core.delete_namespaced_service("web", namespace)

# Pods
pod = core.create_namespaced_pod(
    namespace,
    client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="job-"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    ),
)
expect(pod.metadata.name.startswith("job-") and len(pod.metadata.name) == 9, "pod named from generateName")
expect(pod.status.phase == "Pending", "a new pod is Pending")
pods = core.list_namespaced_pod(namespace, field_selector="spec.nodeName=")
expect([p.metadata.name for p in pods.items] == [pod.metadata.name], "unscheduled pods by field selector")
core.delete_namespaced_pod(pod.metadata.name, namespace)
expect(core.list_namespaced_pod(namespace).items == [], "pod deleted")
print("python client: all ok", flush=True)
