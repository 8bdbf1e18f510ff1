//! The ServiceAccount controller, as kube-controller-manager's `serviceaccount-controller`:
//! every active namespace has a `default` ServiceAccount, recreated if deleted. (The API
//! server creates none itself; a namespace being deleted gets none.)

use std::{collections::HashSet, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{Api, Client, ResourceExt as _, api::PostParams};
use serde_json::json;
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

/// The account every namespace has.
pub const DEFAULT: &str = "default";

/// The namespaces, among `namespaces`, that are active and lack a `default` account, given
/// the namespaces that have one. Pure.
pub fn missing<'a>(namespaces: &'a [Arc<Namespace>], have: &HashSet<String>) -> Vec<&'a str> {
    namespaces
        .iter()
        .filter(|ns| {
            ns.metadata.deletion_timestamp.is_none()
                && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
        })
        .filter_map(|ns| ns.metadata.name.as_deref())
        .filter(|name| !have.contains(*name))
        .collect()
}

/// Watches Namespaces and ServiceAccounts and keeps a `default` account in each namespace.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (namespaces, w1) = cache(
        Api::<Namespace>::all(client.clone()),
        Default::default(),
        &changed,
        "namespaces",
    );
    let (accounts, w2) = cache(
        Api::<ServiceAccount>::all(client.clone()),
        Default::default(),
        &changed,
        "serviceaccounts",
    );
    let ensure = async move {
        let _ = tokio::join!(namespaces.wait_until_ready(), accounts.wait_until_ready());
        loop {
            let have: HashSet<String> = accounts
                .state()
                .iter()
                .filter(|sa| sa.name_any() == DEFAULT)
                .filter_map(|sa| sa.namespace())
                .collect();
            let all = namespaces.state();
            for namespace in missing(&all, &have) {
                if let Err(error) = create(&client, namespace).await {
                    warn!(%namespace, %error, "creating the default ServiceAccount failed");
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(w1, w2, ensure);
}

async fn create(client: &Client, namespace: &str) -> kube::Result<()> {
    let account: ServiceAccount = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT, "namespace": namespace},
    }))
    .map_err(kube::Error::SerdeError)?;
    match Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &account)
        .await
    {
        Ok(_) => {
            info!(%namespace, "default ServiceAccount created");
            Ok(())
        }
        // Created meanwhile, or the namespace began terminating: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_namespaces_without_a_default_account_get_one() {
        let ns = |name: &str, phase: &str| -> Arc<Namespace> {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": name}, "status": {"phase": phase}}),
                )
                .unwrap(),
            )
        };
        let namespaces = vec![
            ns("a", "Active"),
            ns("b", "Active"),
            ns("gone", "Terminating"),
        ];
        let have: HashSet<String> = ["b".to_owned()].into();
        assert_eq!(missing(&namespaces, &have), ["a"]);
    }
}
