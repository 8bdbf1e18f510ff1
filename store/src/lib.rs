//! The store behind `strait-control`: a revisioned key-value store with etcd's semantics.
//!
//! Every write gets the next store-wide revision; a key remembers the revision that created it
//! and the one that last modified it. Writes are transactions guarded by per-key conditions
//! (compare-and-swap on the mod revision), reads may be taken at a past revision, watches
//! replay from a revision and then follow live writes, and compaction forgets history older
//! than a revision (reads and watches from before it fail with [`Error::Compacted`], which the
//! API server turns into 410 Gone). Leases expire keys attached to them.
//!
//! Two engines implement [`Store`]: an embedded one on a redb file (the default: nothing to set
//! up) and etcd, which several `strait-control` processes can share. One conformance suite runs
//! against both.

use std::{collections::HashSet, pin::Pin, time::Duration};

use futures::Stream;

mod etcd;
mod redb;

pub use etcd::{EtcdOptions, EtcdStore};
pub use redb::{RedbOptions, RedbStore};

/// A store-wide revision. Revision 0 means "no revision" (a key that does not exist).
pub type Revision = i64;

/// A lease id. Keys attached to a lease are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
    /// The lease the key is attached to, or 0.
    pub lease: LeaseId,
}

/// A read of one key or a range of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Every key starting with this prefix (a key equal to it included).
    pub prefix: String,
    /// Only keys strictly greater than this one: how `continue` tokens resume a list.
    pub start_after: Option<String>,
    /// At most this many keys; `more` says whether others remain.
    pub limit: Option<usize>,
    /// Read the keys as they were at this revision (0: the current revision).
    pub revision: Revision,
}

/// The keys a [`RangeRequest`] found, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// Keys past the limit remain.
    pub more: bool,
    /// The revision the read was taken at.
    pub revision: Revision,
}

/// What a key must look like for a transaction to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist (create).
    Absent,
    /// The key exists and was last modified at this revision (update, delete).
    ModRevision(Revision),
    /// The key exists, whatever its revision.
    Exists,
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set the key, attached to a lease (0: none).
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
    },
    /// Remove the key; removing an absent key is not an error and writes nothing.
    Delete { key: String },
}

/// A transaction: if every condition holds, all operations apply atomically at one new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub conditions: Vec<(String, Condition)>,
    pub ops: Vec<Op>,
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied (and durable) at this revision. A transaction whose operations change nothing
    /// still succeeds, at the current revision.
    Committed { revision: Revision },
    /// A condition failed: the first failing key and what is there now.
    ConditionFailed {
        key: String,
        current: Option<KeyValue>,
    },
}

/// One change a watch delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created or modified; `prev` is its value before, if it existed.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: Revision },
    /// Nothing under the prefix changed up to this revision (sent when idle, at most every
    /// few seconds): what API watch bookmarks are made from.
    Progress { revision: Revision },
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            Self::Put { kv, .. } => kv.mod_revision,
            Self::Delete { revision, .. } | Self::Progress { revision } => *revision,
        }
    }
}

/// A live watch: events in revision order. It ends with an error if the store falls behind
/// (the watcher must re-list) or the engine goes away.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The revision asked for was compacted away.
    #[error("revision {requested} is compacted (oldest kept: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is in the future.
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The engine failed (I/O, corruption, connection): the message names the operation.
    #[error("{0}")]
    Engine(String),
}

/// A revisioned key-value store with etcd's semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision, Error>;

    /// The oldest revision reads and watches may start from.
    async fn compacted_revision(&self) -> Result<Revision, Error>;

    /// One key, at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let response = self
            .range(RangeRequest {
                prefix: key.to_owned(),
                limit: None,
                ..RangeRequest::default()
            })
            .await?;
        Ok(response.kvs.into_iter().find(|kv| kv.key == key))
    }

    /// Keys under a prefix, in key order, at the current or a past revision.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error>;

    /// How many keys are under a prefix now.
    async fn count(&self, prefix: &str) -> Result<u64, Error>;

    /// Apply a transaction. `Committed` means durable: a crash right after loses nothing.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, Error>;

    /// Changes under `prefix` with a revision greater than `after`, then live ones.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error>;

    /// Forget history before `revision`: reads and watches from before it fail afterwards.
    async fn compact(&self, revision: Revision) -> Result<(), Error>;

    /// A lease that expires `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, Error>;

    /// Renew a lease.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), Error>;

    /// End a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), Error>;
}

impl Condition {
    /// Whether a key in this state (`None`: absent) satisfies the condition. Both engines use it:
    /// redb to decide a transaction, etcd to name the first failing key after etcd decided.
    pub(crate) fn holds(self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Self::Absent, current) => current.is_none(),
            (Self::Exists, current) => current.is_some(),
            (Self::ModRevision(revision), Some(kv)) => kv.mod_revision == revision,
            (Self::ModRevision(_), None) => false,
        }
    }
}

impl Event {
    /// The key the event is about (none for a progress event).
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            Self::Put { kv, .. } => Some(&kv.key),
            Self::Delete { prev, .. } => Some(&prev.key),
            Self::Progress { .. } => None,
        }
    }
}

impl Txn {
    /// Rejects a transaction that writes one key twice, as etcd does ("duplicate key given in txn
    /// request"), so that both engines accept the same transactions.
    pub(crate) fn check_ops(&self) -> Result<(), Error> {
        let mut seen = HashSet::new();
        for op in &self.ops {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            if !seen.insert(key.as_str()) {
                return Err(Error::Engine(format!(
                    "txn writes key {key} more than once"
                )));
            }
        }
        Ok(())
    }

    /// A key naming the transaction in error messages: its first condition's or operation's.
    pub(crate) fn first_key(&self) -> &str {
        self.conditions
            .first()
            .map(|(key, _)| key.as_str())
            .or_else(|| {
                self.ops.first().map(|op| match op {
                    Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
                })
            })
            .unwrap_or("(no key)")
    }
}
