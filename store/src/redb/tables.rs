//! The tables of the redb file and how their rows are encoded.
//!
//! A key's versions live twice: its current version in [`CURRENT`] (what reads at the current
//! revision, the common case, scan) and every version, tombstones included, in [`HISTORY`]
//! (what reads at a past revision and watch replays use). [`LOG`] lists the keys each revision
//! wrote, in write order, so that a watch replays revisions without scanning the history.

use std::fmt::Display;

use ::redb::{ReadableTable, TableDefinition};

use crate::{Error, KeyValue, LeaseId, Revision};

/// Store-wide counters, by name.
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// The last committed revision.
pub(super) const REVISION: &str = "revision";
/// The revision history is kept from (0: never compacted).
pub(super) const COMPACTED: &str = "compacted";
/// The id the next granted lease gets.
pub(super) const NEXT_LEASE: &str = "next_lease";

/// Every live key → its current version, encoded by [`encode_current`].
pub(super) const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
/// (key, revision) → what the write at that revision left, encoded by [`encode_version`] or
/// [`TOMBSTONE`] for a delete.
pub(super) const HISTORY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("history");
/// (revision, position in its transaction) → the key written.
pub(super) const LOG: TableDefinition<(i64, u32), &str> = TableDefinition::new("log");
/// Lease → its TTL in milliseconds. Deadlines live in memory only: a reopened store gives every
/// lease a fresh TTL, as etcd does after a restart.
pub(super) const LEASES: TableDefinition<i64, u64> = TableDefinition::new("leases");
/// (lease, key) for every key attached to a lease, so that revoking finds its keys.
pub(super) const LEASE_KEYS: TableDefinition<(i64, &str), ()> = TableDefinition::new("lease_keys");

/// A [`HISTORY`] row recording a delete.
pub(super) const TOMBSTONE: &[u8] = &[TAG_TOMBSTONE];
const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// Turns any engine error into [`Error::Engine`] naming the operation.
pub(super) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::Engine(format!("redb: {}: {e}", what())))
    }
}

/// A [`CURRENT`] row: create revision, mod revision, lease (little-endian i64s), then the value.
pub(super) fn encode_current(kv: &KeyValue) -> Vec<u8> {
    let mut row = Vec::with_capacity(24 + kv.value.len());
    row.extend_from_slice(&kv.create_revision.to_le_bytes());
    row.extend_from_slice(&kv.mod_revision.to_le_bytes());
    row.extend_from_slice(&kv.lease.to_le_bytes());
    row.extend_from_slice(&kv.value);
    row
}

/// Reads a [`CURRENT`] row of `key`.
pub(super) fn decode_current(key: &str, row: &[u8]) -> Result<KeyValue, Error> {
    let (create_revision, rest) = split_i64(key, row)?;
    let (mod_revision, rest) = split_i64(key, rest)?;
    let (lease, value) = split_i64(key, rest)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
        lease,
    })
}

/// A [`HISTORY`] row for a put: a tag, create revision, lease, then the value (the mod revision
/// is the row's key).
pub(super) fn encode_version(kv: &KeyValue) -> Vec<u8> {
    let mut row = Vec::with_capacity(17 + kv.value.len());
    row.push(TAG_PUT);
    row.extend_from_slice(&kv.create_revision.to_le_bytes());
    row.extend_from_slice(&kv.lease.to_le_bytes());
    row.extend_from_slice(&kv.value);
    row
}

/// Reads the [`HISTORY`] row `key` got at `revision`: `None` for a tombstone.
pub(super) fn decode_version(
    key: &str,
    revision: Revision,
    row: &[u8],
) -> Result<Option<KeyValue>, Error> {
    match row.split_first() {
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        Some((&TAG_PUT, rest)) => {
            let (create_revision, rest) = split_i64(key, rest)?;
            let (lease, value) = split_i64(key, rest)?;
            Ok(Some(KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision,
                mod_revision: revision,
                lease,
            }))
        }
        _ => Err(Error::Engine(format!(
            "redb: history row of {key} at revision {revision} is corrupt"
        ))),
    }
}

fn split_i64<'r>(key: &str, row: &'r [u8]) -> Result<(i64, &'r [u8]), Error> {
    let (head, rest) = row
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Engine(format!("redb: row of {key} is truncated")))?;
    Ok((i64::from_le_bytes(*head), rest))
}

/// A counter from [`META`] (0 when absent).
pub(super) fn meta(
    table: &impl ReadableTable<&'static str, i64>,
    name: &str,
) -> Result<i64, Error> {
    Ok(table
        .get(name)
        .context(|| format!("read of {name}"))?
        .map_or(0, |guard| guard.value()))
}

/// The version of `key` as of `revision` (inclusive) in [`HISTORY`], or `None` if it did not exist.
pub(super) fn version_at(
    history: &impl ReadableTable<(&'static str, i64), &'static [u8]>,
    key: &str,
    revision: Revision,
) -> Result<Option<KeyValue>, Error> {
    let latest = history
        .range((key, i64::MIN)..=(key, revision))
        .context(|| format!("history of {key} at {revision}"))?
        .next_back();
    match latest {
        None => Ok(None),
        Some(row) => {
            let (row_key, row) = row.context(|| format!("history of {key} at {revision}"))?;
            decode_version(key, row_key.value().1, row.value())
        }
    }
}

/// Whether a lease exists.
pub(super) fn lease_exists(
    leases: &impl ReadableTable<i64, u64>,
    lease: LeaseId,
) -> Result<bool, Error> {
    Ok(leases
        .get(lease)
        .context(|| format!("lookup of lease {lease}"))?
        .is_some())
}
