//! The cloud seam, as Kubernetes' cloud-provider `LoadBalancer` interface kept small, and the
//! service controller of cloud-controller-manager on top of it.
//!
//! A [`CloudProvider`] gives a LoadBalancer Service its ingress points and takes them back.
//! Strait ships one: [`LocalPool`], which hands out addresses from a configured range
//! (`--load-balancer-pool`, a CIDR or `first-last`), as MetalLB or k3s' ServiceLB do on bare
//! metal. Without a provider no controller runs and LoadBalancer Services stay `<pending>`,
//! as in a Kubernetes cluster without a cloud.
//!
//! The service controller ([`run`]) ensures a load balancer for every Service of type
//! LoadBalancer without a `loadBalancerClass` (another implementation owns those), writes
//! `status.loadBalancer.ingress`, and releases it when the type changes or the Service goes.
//! The pool keeps no state of its own: at start the addresses in Services' status are claimed
//! again (oldest Service first) before any new one is handed out, so no address is ever given
//! to two Services.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::Ipv4Addr,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, NodeAddress, Service};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams},
};
use serde_json::json;
use strait_kubewatch::cache;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::events::record;

/// The name this controller reports as, in events.
const NAME: &str = "service-controller";

/// Why a provider could not do what was asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudError {
    #[error("requested load balancer IP {ip} is not in the pool {pool}")]
    NotInPool { ip: String, pool: String },
    #[error("requested load balancer IP {ip} is already in use by service {holder}")]
    Taken { ip: Ipv4Addr, holder: String },
    #[error("no free address left in the load balancer pool {pool}")]
    Exhausted { pool: String },
}

/// What a cloud does for the cluster (Kubernetes' cloud-provider interfaces, kept to what
/// Strait uses). Services are named `namespace/name`.
pub trait CloudProvider: Send + Sync {
    /// The provider's name, for logs.
    fn name(&self) -> &str;

    /// A node's addresses as the cloud knows them (the cloud node controller's question);
    /// `None` leaves them to the node's agent, as the local pool does.
    fn node_addresses(&self, _node: &str) -> Option<Vec<NodeAddress>> {
        None
    }

    /// Make sure `service` (type LoadBalancer) has a load balancer; its ingress points.
    fn ensure_load_balancer(
        &self,
        service: &Service,
    ) -> impl Future<Output = Result<Vec<LoadBalancerIngress>, CloudError>> + Send;

    /// Tear down whatever the service `key` held; nothing held is no error.
    fn release(&self, key: &str) -> impl Future<Output = ()> + Send;
}

/// An IPv4 address range: a CIDR (network and broadcast left out below /31) or `first-last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    first: u32,
    last: u32,
    text: String,
}

impl Pool {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (self.first..=self.last).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not an IPv4 CIDR (10.96.200.0/24) or range (10.96.200.10-10.96.200.20)"
            )
        };
        let parse_ip = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|_| bad())
        };
        let (first, last) = if let Some((ip, prefix)) = text.split_once('/') {
            let ip = parse_ip(ip)?;
            let prefix: u32 = prefix
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(bad)?;
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            let network = ip & mask;
            let broadcast = network | !mask;
            if prefix <= 30 {
                (network + 1, broadcast - 1)
            } else {
                (network, broadcast)
            }
        } else if let Some((a, b)) = text.split_once('-') {
            (parse_ip(a)?, parse_ip(b)?)
        } else {
            return Err(bad());
        };
        if first > last {
            return Err(bad());
        }
        Ok(Self {
            first,
            last,
            text: text.trim().to_owned(),
        })
    }
}

/// The local provider: load balancer addresses from a [`Pool`], one per Service, the first
/// free one unless the Service asks for one (`spec.loadBalancerIP`) or already shows one.
#[derive(Debug)]
pub struct LocalPool {
    pool: Pool,
    /// Address → the Service holding it.
    held: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl LocalPool {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<Ipv4Addr, String>> {
        // The map stays consistent across a panic elsewhere: keep using it.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The address `key` holds.
    pub fn address_of(&self, key: &str) -> Option<Ipv4Addr> {
        self.held()
            .iter()
            .find(|(_, k)| *k == key)
            .map(|(ip, _)| *ip)
    }

    /// An address for `key`: `requested` if given (it must be in the pool and free or
    /// already `key`'s), else the one it holds, else `previous` if in the pool and free,
    /// else the first free. Whatever else `key` held is released.
    pub fn assign(
        &self,
        key: &str,
        requested: Option<&str>,
        previous: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, CloudError> {
        let mut held = self.held();
        let mine = held.iter().find(|(_, k)| *k == key).map(|(ip, _)| *ip);
        let free_or_mine = |held: &BTreeMap<Ipv4Addr, String>, ip: &Ipv4Addr| {
            held.get(ip).is_none_or(|k| k == key)
        };
        let chosen = match requested {
            Some(text) => {
                let not_in_pool = || CloudError::NotInPool {
                    ip: text.to_owned(),
                    pool: self.pool.to_string(),
                };
                let ip: Ipv4Addr = text.parse().map_err(|_| not_in_pool())?;
                if !self.pool.contains(ip) {
                    return Err(not_in_pool());
                }
                if let Some(holder) = held.get(&ip).filter(|k| *k != key) {
                    return Err(CloudError::Taken {
                        ip,
                        holder: holder.clone(),
                    });
                }
                ip
            }
            None => match mine {
                Some(ip) => ip,
                None => previous
                    .filter(|ip| self.pool.contains(*ip) && free_or_mine(&held, ip))
                    .or_else(|| self.pool.addresses().find(|ip| !held.contains_key(ip)))
                    .ok_or_else(|| CloudError::Exhausted {
                        pool: self.pool.to_string(),
                    })?,
            },
        };
        held.retain(|_, k| k != key);
        held.insert(chosen, key.to_owned());
        Ok(chosen)
    }

    /// Release what `key` holds; the address it held.
    pub fn free(&self, key: &str) -> Option<Ipv4Addr> {
        let mut held = self.held();
        let ip = held.iter().find(|(_, k)| *k == key).map(|(ip, _)| *ip)?;
        held.remove(&ip);
        Some(ip)
    }
}

/// `namespace/name`.
pub fn service_key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.namespace().unwrap_or_default(),
        service.name_any()
    )
}

/// The IPv4 addresses of the service's status ingress points.
fn status_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

impl CloudProvider for LocalPool {
    fn name(&self) -> &str {
        "local"
    }

    async fn ensure_load_balancer(
        &self,
        service: &Service,
    ) -> Result<Vec<LoadBalancerIngress>, CloudError> {
        let requested = service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty());
        let previous = status_ips(service).into_iter().next();
        let ip = self.assign(&service_key(service), requested, previous)?;
        Ok(vec![LoadBalancerIngress {
            ip: Some(ip.to_string()),
            ip_mode: Some("VIP".to_owned()),
            ..LoadBalancerIngress::default()
        }])
    }

    async fn release(&self, key: &str) {
        if let Some(ip) = self.free(key) {
            info!(service = %key, %ip, "load balancer address released");
        }
    }
}

/// Whether the service controller gives `service` a load balancer: type LoadBalancer, no
/// `loadBalancerClass` (that names another implementation), not being deleted.
pub fn wants_load_balancer(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
        && service.metadata.deletion_timestamp.is_none()
}

/// The order Services are ensured in: those already showing an address first (oldest
/// first), so that after a restart each gets its own address back before any is handed out.
pub fn ensure_order(services: &mut [Arc<Service>]) {
    services.sort_by_key(|s| {
        (
            status_ips(s).is_empty(),
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            service_key(s),
        )
    });
}

/// Watches Services and keeps their load balancers with `provider`, until the process ends.
pub async fn run<P: CloudProvider + 'static>(client: Client, provider: P) {
    let changed = Arc::new(Notify::new());
    let (services, watch) = cache(
        Api::<Service>::all(client.clone()),
        Default::default(),
        &changed,
        "services",
    );
    info!(provider = provider.name(), "service controller started");
    let sync = async move {
        let _ = services.wait_until_ready().await;
        // Services ensured and not yet released, and the last error reported for each.
        let mut ensured: HashSet<String> = HashSet::new();
        let mut failures: HashMap<String, String> = HashMap::new();
        loop {
            let mut all = services.state();
            ensure_order(&mut all);
            let wanted: HashSet<String> = all
                .iter()
                .filter(|s| wants_load_balancer(s))
                .map(|s| service_key(s))
                .collect();
            // Release first, so that a freed address can go to a Service that asks for it.
            let stale: Vec<String> = ensured.difference(&wanted).cloned().collect();
            for key in stale {
                provider.release(&key).await;
                ensured.remove(&key);
                failures.remove(&key);
            }
            for service in &all {
                let key = service_key(service);
                if !wanted.contains(&key) {
                    let classed = service
                        .spec
                        .as_ref()
                        .is_some_and(|s| s.load_balancer_class.is_some());
                    // A classed Service's status belongs to its own implementation.
                    if !classed && has_ingress(service) {
                        provider.release(&key).await;
                        if let Err(error) = clear_status(&client, service).await {
                            warn!(service = %key, %error, "clearing the load balancer status failed");
                        }
                    }
                    continue;
                }
                match provider.ensure_load_balancer(service).await {
                    Ok(ingress) => {
                        ensured.insert(key.clone());
                        failures.remove(&key);
                        if let Err(error) = write_status(&client, service, &ingress).await {
                            warn!(service = %key, %error, "writing the load balancer status failed");
                        }
                    }
                    Err(error) => {
                        let message = format!(
                            "Error syncing load balancer: failed to ensure load balancer: {error}"
                        );
                        if failures.get(&key) != Some(&message) {
                            warn!(service = %key, %error, "ensuring the load balancer failed");
                            event(
                                &client,
                                service,
                                "Warning",
                                "SyncLoadBalancerFailed",
                                &message,
                            )
                            .await;
                            failures.insert(key, message);
                        }
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(watch, sync);
}

fn has_ingress(service: &Service) -> bool {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

async fn event(client: &Client, service: &Service, type_: &str, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "v1", "kind": "Service", "name": service.name_any(),
                          "namespace": service.namespace(), "uid": service.uid()});
    if let Err(error) = record(client, involved, NAME, type_, reason, message).await {
        warn!(service = %service_key(service), %error, "recording an event failed");
    }
}

async fn write_status(
    client: &Client,
    service: &Service,
    ingress: &[LoadBalancerIngress],
) -> kube::Result<()> {
    let current = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let ips = |list: &[LoadBalancerIngress]| -> Vec<Option<String>> {
        list.iter().map(|i| i.ip.clone()).collect()
    };
    if ips(&current) == ips(ingress) {
        return Ok(());
    }
    let api: Api<Service> =
        Api::namespaced(client.clone(), &service.namespace().unwrap_or_default());
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(
        &service.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    info!(service = %service_key(service), ?ingress, "load balancer ensured");
    event(
        client,
        service,
        "Normal",
        "EnsuredLoadBalancer",
        "Ensured load balancer",
    )
    .await;
    Ok(())
}

async fn clear_status(client: &Client, service: &Service) -> kube::Result<()> {
    let api: Api<Service> =
        Api::namespaced(client.clone(), &service.namespace().unwrap_or_default());
    let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
    match api
        .patch_status(
            &service.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            event(
                client,
                service,
                "Normal",
                "DeletedLoadBalancer",
                "Deleted load balancer",
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn pools_parse_from_cidrs_and_ranges() {
        let cidr: Pool = "10.96.200.0/24".parse().unwrap();
        assert!(!cidr.contains(ip("10.96.200.0")));
        assert!(cidr.contains(ip("10.96.200.1")));
        assert!(cidr.contains(ip("10.96.200.254")));
        assert!(!cidr.contains(ip("10.96.200.255")));
        let single: Pool = "10.0.0.7/32".parse().unwrap();
        assert!(single.contains(ip("10.0.0.7")));
        let range: Pool = "10.0.0.10-10.0.0.12".parse().unwrap();
        assert_eq!(range.addresses().count(), 3);
        assert_eq!(range.to_string(), "10.0.0.10-10.0.0.12");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.9-10.0.0.1",
            "x/24",
            "::1/128",
        ] {
            assert!(bad.parse::<Pool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_service_gets_its_own_address_and_keeps_it() {
        let pool = LocalPool::new("10.0.0.10-10.0.0.12".parse().unwrap());
        let a = pool.assign("d/a", None, None).unwrap();
        let b = pool.assign("d/b", None, None).unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.assign("d/a", None, None).unwrap(), a);
        assert_eq!(pool.address_of("d/b"), Some(b));
        pool.assign("d/c", None, None).unwrap();
        assert_eq!(
            pool.assign("d/d", None, None),
            Err(CloudError::Exhausted {
                pool: "10.0.0.10-10.0.0.12".to_owned()
            })
        );
        assert_eq!(pool.free("d/a"), Some(a));
        assert_eq!(pool.free("d/a"), None);
        assert_eq!(pool.assign("d/d", None, None).unwrap(), a);
    }

    #[test]
    fn a_requested_address_must_be_in_the_pool_and_free() {
        let pool = LocalPool::new("10.0.0.0/29".parse().unwrap());
        assert_eq!(
            pool.assign("d/a", Some("10.0.0.5"), None).unwrap(),
            ip("10.0.0.5")
        );
        assert_eq!(
            pool.assign("d/b", Some("10.0.0.5"), None),
            Err(CloudError::Taken {
                ip: ip("10.0.0.5"),
                holder: "d/a".to_owned()
            })
        );
        assert!(matches!(
            pool.assign("d/b", Some("192.168.1.1"), None),
            Err(CloudError::NotInPool { .. })
        ));
        assert!(matches!(
            pool.assign("d/b", Some("not-an-ip"), None),
            Err(CloudError::NotInPool { .. })
        ));
        // Asking for another address moves the service there and frees the old one.
        assert_eq!(
            pool.assign("d/a", Some("10.0.0.6"), None).unwrap(),
            ip("10.0.0.6")
        );
        assert_eq!(
            pool.assign("d/b", Some("10.0.0.5"), None).unwrap(),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn a_restart_gives_services_back_the_addresses_they_show() {
        let pool = LocalPool::new("10.0.0.0/29".parse().unwrap());
        assert_eq!(
            pool.assign("d/a", None, Some(ip("10.0.0.4"))).unwrap(),
            ip("10.0.0.4")
        );
        // A second service showing the same address (a split brain) gets another one.
        assert_eq!(
            pool.assign("d/b", None, Some(ip("10.0.0.4"))).unwrap(),
            ip("10.0.0.1")
        );
        // An address outside the pool (the pool changed) is not kept.
        assert_eq!(
            pool.assign("d/c", None, Some(ip("10.9.9.9"))).unwrap(),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn services_showing_addresses_are_ensured_first_oldest_first() {
        let svc = |name: &str, created: &str, ip: Option<&str>| -> Arc<Service> {
            let mut value = json!({"metadata": {"name": name, "namespace": "d", "creationTimestamp": created},
                                   "spec": {"type": "LoadBalancer"}});
            if let Some(ip) = ip {
                value["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
            }
            Arc::new(serde_json::from_value(value).unwrap())
        };
        let mut services = vec![
            svc("new", "2026-01-01T00:00:03Z", None),
            svc("young-holder", "2026-01-01T00:00:02Z", Some("10.0.0.1")),
            svc("old-holder", "2026-01-01T00:00:01Z", Some("10.0.0.1")),
        ];
        ensure_order(&mut services);
        let names: Vec<String> = services.iter().map(|s| s.name_any()).collect();
        assert_eq!(names, ["old-holder", "young-holder", "new"]);
        assert!(wants_load_balancer(&services[0]));
        let classed: Service = serde_json::from_value(json!({"metadata": {"name": "x"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"}}))
        .unwrap();
        assert!(!wants_load_balancer(&classed));
    }
}
