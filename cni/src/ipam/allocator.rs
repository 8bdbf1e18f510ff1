//! The pure allocator: which address each (container, interface) holds. No IO.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use super::{AllocateRequest, Allocation, IpamError};

/// A node's pod CIDR, e.g. `10.244.1.0/24`.
///
/// Addresses are handled as offsets from the network address (`u128`), so IPv6 needs only
/// parsing and a range rule here, not a second allocator. IPv4 only for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidr {
    network: IpAddr,
    prefix_len: u8,
}

impl PodCidr {
    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The first address after the network address: reserved for the node (its gateway or
    /// host-side address), never given to a pod.
    pub fn node_address(&self) -> IpAddr {
        self.nth(1)
    }

    /// Whether `address` is inside the CIDR.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.offset_of(address).is_some()
    }

    /// Whether `address` may be given to a pod: inside, and neither the network, node nor
    /// broadcast address.
    pub fn is_pod_address(&self, address: IpAddr) -> bool {
        self.offset_of(address)
            .is_some_and(|o| (self.first_pod()..=self.last_pod()).contains(&o))
    }

    /// How many addresses pods can get.
    pub fn capacity(&self) -> u128 {
        self.last_pod() - self.first_pod() + 1
    }

    fn host_bits(&self) -> u32 {
        match self.network {
            IpAddr::V4(_) => 32 - u32::from(self.prefix_len),
            IpAddr::V6(_) => 128 - u32::from(self.prefix_len),
        }
    }

    fn size(&self) -> u128 {
        1u128 << self.host_bits()
    }

    // Offset 0 is the network address and 1 the node's; the last is IPv4's broadcast.
    fn first_pod(&self) -> u128 {
        2
    }

    fn last_pod(&self) -> u128 {
        self.size() - 2
    }

    fn nth(&self, offset: u128) -> IpAddr {
        match self.network {
            IpAddr::V4(net) => {
                // Offsets stay below 2^(32 - prefix), so the sum fits in u32.
                let base = u128::from(u32::from(net));
                IpAddr::V4(Ipv4Addr::from(
                    u32::try_from(base + offset).unwrap_or(u32::MAX),
                ))
            }
            IpAddr::V6(net) => IpAddr::V6((u128::from(net) + offset).into()),
        }
    }

    fn offset_of(&self, address: IpAddr) -> Option<u128> {
        let (base, addr) = match (self.network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(u32::from(n)), u128::from(u32::from(a))),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a)),
            _ => return None,
        };
        let offset = addr.checked_sub(base)?;
        (offset < self.size()).then_some(offset)
    }
}

impl FromStr for PodCidr {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        let bad = |reason: &str| IpamError::BadCidr {
            cidr: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
        let network: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let prefix_len: u8 = len.parse().map_err(|_| bad("not a prefix length"))?;
        let IpAddr::V4(v4) = network else {
            return Err(bad("IPv6 pod CIDRs are not supported yet"));
        };
        if prefix_len > 32 {
            return Err(bad("prefix length is above 32"));
        }
        // /31 and /32 have no room once the network, node and broadcast addresses are out.
        if prefix_len > 30 {
            return Err(bad(
                "too small: a pod CIDR needs a prefix of /30 or shorter",
            ));
        }
        if prefix_len < 8 {
            return Err(bad("too large: a pod CIDR needs a prefix of /8 or longer"));
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        if u32::from(v4) & !mask != 0 {
            let network = Ipv4Addr::from(u32::from(v4) & mask);
            return Err(bad(&format!(
                "host bits are set (did you mean {network}/{prefix_len}?)"
            )));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for PodCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The owner of an allocation: (container id, interface name).
type Owner = (String, String);

/// Addresses of one pod CIDR and who holds them.
///
/// Allocation is next-fit (after the last address handed out, wrapping), as host-local does:
/// a released address is reused last, so stale ARP or conntrack entries for a deleted pod
/// are unlikely to meet its successor.
#[derive(Debug, Clone)]
pub struct Allocator {
    cidr: PodCidr,
    by_owner: BTreeMap<Owner, Allocation>,
    used: BTreeSet<IpAddr>,
    last: Option<IpAddr>,
}

impl Allocator {
    /// An empty allocator over `cidr`.
    pub fn new(cidr: PodCidr) -> Self {
        Self {
            cidr,
            by_owner: BTreeMap::new(),
            used: BTreeSet::new(),
            last: None,
        }
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> PodCidr {
        self.cidr
    }

    /// The address last handed out (where the next search starts).
    pub fn last(&self) -> Option<IpAddr> {
        self.last
    }

    /// Sets where the next search starts (restoring persisted state); ignored if outside.
    pub fn set_last(&mut self, last: Option<IpAddr>) {
        self.last = last.filter(|a| self.cidr.contains(*a));
    }

    /// The owner's address: the one it holds already, or a free one.
    pub fn allocate(&mut self, request: &AllocateRequest) -> Result<Allocation, IpamError> {
        validate_owner(&request.container_id, &request.ifname)?;
        let owner = (request.container_id.clone(), request.ifname.clone());
        if let Some(existing) = self.by_owner.get(&owner) {
            return Ok(existing.clone());
        }
        let address = self.next_free().ok_or_else(|| IpamError::Exhausted {
            cidr: self.cidr.to_string(),
        })?;
        let allocation = Allocation {
            container_id: request.container_id.clone(),
            ifname: request.ifname.clone(),
            pod_namespace: request.pod_namespace.clone(),
            pod_name: request.pod_name.clone(),
            address,
        };
        self.used.insert(address);
        self.by_owner.insert(owner, allocation.clone());
        self.last = Some(address);
        Ok(allocation)
    }

    /// Takes back the owner's address; `None` if it held none.
    pub fn release(&mut self, container_id: &str, ifname: &str) -> Option<Allocation> {
        let released = self
            .by_owner
            .remove(&(container_id.to_owned(), ifname.to_owned()))?;
        self.used.remove(&released.address);
        Some(released)
    }

    /// The owner's allocation, if any.
    pub fn get(&self, container_id: &str, ifname: &str) -> Option<&Allocation> {
        self.by_owner
            .get(&(container_id.to_owned(), ifname.to_owned()))
    }

    /// Every allocation, by owner.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.by_owner.values()
    }

    /// Puts back an allocation read from persisted state, checking it still fits.
    pub fn restore(&mut self, allocation: Allocation) -> Result<(), IpamError> {
        validate_owner(&allocation.container_id, &allocation.ifname)?;
        if !self.cidr.is_pod_address(allocation.address) {
            return Err(IpamError::OutsideCidr {
                address: allocation.address,
                container_id: allocation.container_id,
                ifname: allocation.ifname,
                cidr: self.cidr.to_string(),
            });
        }
        let owner = (allocation.container_id.clone(), allocation.ifname.clone());
        if let Some(holder) = self
            .by_owner
            .values()
            .find(|a| a.address == allocation.address)
        {
            return Err(IpamError::Duplicate {
                address: allocation.address,
                first: format!("{}/{}", holder.container_id, holder.ifname),
                second: format!("{}/{}", allocation.container_id, allocation.ifname),
            });
        }
        if let Some(previous) = self.by_owner.insert(owner, allocation.clone()) {
            self.used.remove(&previous.address);
        }
        self.used.insert(allocation.address);
        Ok(())
    }

    fn next_free(&self) -> Option<IpAddr> {
        let first = self.cidr.first_pod();
        let capacity = self.cidr.capacity();
        let start = self
            .last
            .and_then(|a| self.cidr.offset_of(a))
            .filter(|o| *o >= first)
            .map_or(0, |o| o - first + 1);
        (0..capacity)
            .map(|i| self.cidr.nth(first + (start + i) % capacity))
            .find(|a| !self.used.contains(a))
    }
}

fn validate_owner(container_id: &str, ifname: &str) -> Result<(), IpamError> {
    if container_id.is_empty() {
        return Err(IpamError::InvalidRequest("container id is empty".into()));
    }
    if ifname.is_empty() {
        return Err(IpamError::InvalidRequest(format!(
            "interface name of container {container_id} is empty"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str) -> AllocateRequest {
        AllocateRequest {
            container_id: id.into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: format!("pod-{id}"),
        }
    }

    fn alloc(cidr: &str) -> Allocator {
        Allocator::new(cidr.parse().unwrap())
    }

    #[test]
    fn skips_network_node_and_broadcast() {
        let mut a = alloc("10.1.0.0/29");
        let got: Vec<String> = (0..5)
            .map(|i| {
                a.allocate(&req(&i.to_string()))
                    .unwrap()
                    .address
                    .to_string()
            })
            .collect();
        assert_eq!(
            got,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
        );
        assert_eq!(a.cidr().node_address().to_string(), "10.1.0.1");
    }

    #[test]
    fn same_owner_gets_the_same_address() {
        let mut a = alloc("10.1.0.0/24");
        let first = a.allocate(&req("c1")).unwrap();
        let again = a.allocate(&req("c1")).unwrap();
        assert_eq!(first, again);
        let other_if = a
            .allocate(&AllocateRequest {
                ifname: "net1".into(),
                ..req("c1")
            })
            .unwrap();
        assert_ne!(
            other_if.address, first.address,
            "another interface is another owner"
        );
    }

    #[test]
    fn release_frees_and_is_idempotent() {
        let mut a = alloc("10.1.0.0/30");
        let only = a.allocate(&req("c1")).unwrap();
        assert_eq!(only.address.to_string(), "10.1.0.2");
        assert!(matches!(
            a.allocate(&req("c2")),
            Err(IpamError::Exhausted { .. })
        ));
        assert_eq!(a.release("c1", "eth0"), Some(only.clone()));
        assert_eq!(a.release("c1", "eth0"), None);
        assert_eq!(a.release("never", "eth0"), None);
        assert_eq!(a.allocate(&req("c2")).unwrap().address, only.address);
    }

    #[test]
    fn next_fit_reuses_released_addresses_last() {
        let mut a = alloc("10.1.0.0/29");
        let x = a.allocate(&req("a")).unwrap().address;
        a.allocate(&req("b")).unwrap();
        a.release("a", "eth0");
        let c = a.allocate(&req("c")).unwrap().address;
        assert_ne!(c, x, "a just-released address is not handed out first");
    }

    #[test]
    fn exhaustion_names_the_cidr() {
        let mut a = alloc("10.9.0.0/29");
        for i in 0..5 {
            a.allocate(&req(&i.to_string())).unwrap();
        }
        let err = a.allocate(&req("x")).unwrap_err();
        assert_eq!(err.to_string(), "pod CIDR 10.9.0.0/29 has no free address");
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_reason() {
        for (cidr, reason) in [
            ("10.0.0.0", "ADDRESS/PREFIX"),
            ("10.0.0.0/33", "above 32"),
            ("10.0.0.0/31", "too small"),
            ("10.0.0.1/24", "did you mean 10.0.0.0/24"),
            ("banana/24", "not an IP"),
            ("fd00::/64", "IPv6"),
        ] {
            let err = cidr.parse::<PodCidr>().unwrap_err().to_string();
            assert!(err.contains(cidr) && err.contains(reason), "{cidr}: {err}");
        }
    }

    #[test]
    fn empty_owner_is_invalid() {
        let err = alloc("10.1.0.0/24").allocate(&req("")).unwrap_err();
        assert!(matches!(err, IpamError::InvalidRequest(_)), "{err}");
    }

    #[test]
    fn restore_checks_range_and_duplicates() {
        let mut a = alloc("10.1.0.0/24");
        let mut x = a.allocate(&req("a")).unwrap();
        let mut b = alloc("10.1.0.0/24");
        b.restore(x.clone()).unwrap();
        x.container_id = "other".into();
        assert!(matches!(
            b.restore(x.clone()),
            Err(IpamError::Duplicate { .. })
        ));
        x.address = "10.1.0.255".parse().unwrap();
        assert!(matches!(b.restore(x), Err(IpamError::OutsideCidr { .. })));
    }
}
