//! Identities: one number per set of policy-relevant properties, so a node's policy maps are
//! keyed by a peer's identity rather than by its address, and a thousand pods with the same
//! labels cost one entry.
//!
//! A pod's identity is its namespace, its labels, its namespace's labels, and the most
//! specific ipBlock prefix (of all prefixes any policy names) holding its address. The last
//! part is what lets ipBlock rules match pod addresses exactly: two pods with equal labels,
//! one inside an ipBlock and one outside it, get different identities. Addresses that are
//! not pods get the identity of the most specific prefix holding them (an LPM lookup in the
//! dataplane), or [`WORLD`].
//!
//! Identities are node-local: packets carry no identity (native routing), each node derives
//! the source's from its address through its own ipcache, so nodes need not agree on numbers.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

/// Labels, sorted.
pub type Labels = BTreeMap<String, String>;

/// In a policy entry: any peer.
pub const ANY: u32 = 0;
/// The node itself (kubelet probes, host processes): always allowed into its pods.
pub const HOST: u32 = 1;
/// An address no pod has and no ipBlock prefix names.
pub const WORLD: u32 = 2;
/// The first identity [`Identities`] hands out; those below are reserved.
pub const FIRST_ALLOCATED: u32 = 256;

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityKey {
    /// Pods with these properties.
    Pod {
        namespace: String,
        labels: Labels,
        namespace_labels: Labels,
        /// The most specific ipBlock prefix holding the pod's address, if any.
        block: Option<IpNet>,
    },
    /// Addresses whose most specific ipBlock prefix is this one.
    Cidr(IpNet),
}

/// The identities in use on a node; numbers stay the same while their key is in use, so a
/// recompilation rewrites only the map entries that changed.
#[derive(Debug, Default)]
pub struct Identities {
    by_key: BTreeMap<IdentityKey, u32>,
    by_id: BTreeMap<u32, IdentityKey>,
}

impl Identities {
    /// The identity of `key`, allocated (the lowest free number) if new.
    pub fn get_or_allocate(&mut self, key: &IdentityKey) -> u32 {
        if let Some(id) = self.by_key.get(key) {
            return *id;
        }
        let mut id = FIRST_ALLOCATED;
        for used in self.by_id.keys().filter(|i| **i >= FIRST_ALLOCATED) {
            if *used != id {
                break;
            }
            id += 1;
        }
        self.by_key.insert(key.clone(), id);
        self.by_id.insert(id, key.clone());
        id
    }

    /// Releases every identity whose key is not in `live`.
    pub fn retain(&mut self, live: &BTreeSet<IdentityKey>) {
        self.by_key.retain(|key, _| live.contains(key));
        self.by_id.retain(|_, key| live.contains(key));
    }

    /// What `id` stands for.
    pub fn key(&self, id: u32) -> Option<&IdentityKey> {
        self.by_id.get(&id)
    }

    /// Every allocated identity.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &IdentityKey)> {
        self.by_id.iter().map(|(id, key)| (*id, key))
    }

    /// How many identities are allocated.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(app: &str) -> IdentityKey {
        IdentityKey::Pod {
            namespace: "x".into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            namespace_labels: Labels::new(),
            block: None,
        }
    }

    #[test]
    fn numbers_are_stable_reused_and_above_the_reserved_range() {
        let mut ids = Identities::default();
        let a = ids.get_or_allocate(&pod("a"));
        let b = ids.get_or_allocate(&pod("b"));
        assert_eq!((a, b), (FIRST_ALLOCATED, FIRST_ALLOCATED + 1));
        assert_eq!(ids.get_or_allocate(&pod("a")), a);
        ids.retain(&[pod("b")].into());
        assert_eq!(ids.key(a), None);
        assert_eq!(
            ids.get_or_allocate(&pod("c")),
            a,
            "the freed number is reused"
        );
        assert_eq!(ids.get_or_allocate(&pod("b")), b);
        assert_eq!(ids.len(), 2);
    }
}
