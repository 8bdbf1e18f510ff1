//! The write path: every change to the file goes through [`Inner::write`], one redb write
//! transaction at a time, committed with immediate durability.

use std::sync::{Arc, PoisonError, atomic::Ordering};

use ::redb::{Durability, ReadableTable, Table, WriteTransaction};

use super::{
    Inner, Published,
    tables::{
        COMPACTED, CURRENT, Context, HISTORY, LEASE_KEYS, LEASES, LOG, META, NEXT_LEASE, REVISION,
        TOMBSTONE, decode_current, encode_current, encode_version, lease_exists, meta,
    },
};
use crate::{Error, Event, KeyValue, LeaseId, Revision};

/// What a write closure decided.
pub(super) enum Step<T> {
    /// Commit whatever the batch changed.
    Apply(T),
    /// Change nothing (a condition failed).
    Abort(T),
}

/// The tables of one write transaction, and the events its writes produced so far.
pub(super) struct Batch<'t> {
    meta: Table<'t, &'static str, i64>,
    current: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, (&'static str, i64), &'static [u8]>,
    log: Table<'t, (i64, u32), &'static str>,
    leases: Table<'t, i64, u64>,
    lease_keys: Table<'t, (i64, &'static str), ()>,
    /// The revision the batch's key writes get.
    revision: Revision,
    events: Vec<Event>,
    /// Something other than keys changed (a lease, the compacted revision): commit even
    /// without events.
    dirty: bool,
}

impl<'t> Batch<'t> {
    fn open(tx: &'t WriteTransaction, revision: Revision) -> Result<Self, Error> {
        let open = || format!("open of tables for the write at revision {revision}");
        Ok(Self {
            meta: tx.open_table(META).context(open)?,
            current: tx.open_table(CURRENT).context(open)?,
            history: tx.open_table(HISTORY).context(open)?,
            log: tx.open_table(LOG).context(open)?,
            leases: tx.open_table(LEASES).context(open)?,
            lease_keys: tx.open_table(LEASE_KEYS).context(open)?,
            revision,
            events: Vec::new(),
            dirty: false,
        })
    }

    /// The current version of a key.
    pub(super) fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        match self.current.get(key).context(|| format!("read of {key}"))? {
            Some(row) => decode_current(key, row.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Sets a key at the batch's revision, attached to `lease` (0: none).
    pub(super) fn put(&mut self, key: &str, value: &[u8], lease: LeaseId) -> Result<(), Error> {
        if lease != 0 && !lease_exists(&self.leases, lease)? {
            return Err(Error::LeaseNotFound(lease));
        }
        let prev = self.get(key)?;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: prev
                .as_ref()
                .map_or(self.revision, |prev| prev.create_revision),
            mod_revision: self.revision,
            lease,
        };
        let revision = self.revision;
        let what = || format!("put of {key} at revision {revision}");
        self.current
            .insert(key, encode_current(&kv).as_slice())
            .context(what)?;
        self.history
            .insert((key, self.revision), encode_version(&kv).as_slice())
            .context(what)?;
        self.log_write(key)?;
        if let Some(prev) = &prev
            && prev.lease != 0
            && prev.lease != lease
        {
            self.lease_keys.remove((prev.lease, key)).context(what)?;
        }
        if lease != 0 {
            self.lease_keys.insert((lease, key), ()).context(what)?;
        }
        self.events.push(Event::Put { kv, prev });
        Ok(())
    }

    /// Removes a key at the batch's revision; an absent key writes nothing.
    pub(super) fn delete(&mut self, key: &str) -> Result<(), Error> {
        let Some(prev) = self.get(key)? else {
            return Ok(());
        };
        let revision = self.revision;
        let what = || format!("delete of {key} at revision {revision}");
        self.current.remove(key).context(what)?;
        self.history
            .insert((key, self.revision), TOMBSTONE)
            .context(what)?;
        self.log_write(key)?;
        if prev.lease != 0 {
            self.lease_keys.remove((prev.lease, key)).context(what)?;
        }
        self.events.push(Event::Delete {
            prev,
            revision: self.revision,
        });
        Ok(())
    }

    fn log_write(&mut self, key: &str) -> Result<(), Error> {
        let position = u32::try_from(self.events.len()).map_err(|_| {
            Error::Engine(format!(
                "redb: txn at revision {} writes too many keys",
                self.revision
            ))
        })?;
        self.log
            .insert((self.revision, position), key)
            .context(|| format!("log of {key} at revision {}", self.revision))?;
        Ok(())
    }

    /// The revision before this batch's writes.
    pub(super) fn current_revision(&self) -> Revision {
        self.revision - 1
    }

    /// The compacted revision recorded in the file.
    pub(super) fn compacted_revision(&self) -> Result<Revision, Error> {
        meta(&self.meta, COMPACTED)
    }

    /// Records a new lease with its TTL and returns its id.
    pub(super) fn grant(&mut self, ttl_ms: u64) -> Result<LeaseId, Error> {
        let id = meta(&self.meta, NEXT_LEASE)?.max(1);
        let what = || format!("grant of lease {id}");
        self.meta.insert(NEXT_LEASE, id + 1).context(what)?;
        self.leases.insert(id, ttl_ms).context(what)?;
        self.dirty = true;
        Ok(id)
    }

    /// Ends a lease, deleting its keys at the batch's revision.
    pub(super) fn revoke(&mut self, lease: LeaseId) -> Result<(), Error> {
        if !lease_exists(&self.leases, lease)? {
            return Err(Error::LeaseNotFound(lease));
        }
        let what = || format!("revoke of lease {lease}");
        let keys = self
            .lease_keys
            .range((lease, "")..(lease + 1, ""))
            .context(what)?
            .map(|row| row.map(|(key, _)| key.value().1.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .context(what)?;
        for key in &keys {
            self.delete(key)?;
        }
        self.leases.remove(lease).context(what)?;
        self.dirty = true;
        Ok(())
    }

    /// Forgets history before `revision`: keeps, per key, the last version at or before it
    /// (unless it is a tombstone: absence needs no row) and every later version, and the log of
    /// revisions after it. Reads at `revision` or later and the previous values of later events
    /// need nothing else.
    pub(super) fn compact(&mut self, revision: Revision) -> Result<(), Error> {
        let what = || format!("compaction to revision {revision}");
        let mut doomed: Vec<(String, i64)> = Vec::new();
        // The last row at or before `revision` of the key being scanned, not yet decided on:
        // (key, its revision, whether it is a tombstone).
        let mut pending: Option<(String, i64, bool)> = None;
        let mut settle = |pending: &mut Option<(String, i64, bool)>, superseded: bool| {
            if let Some((key, row_revision, tombstone)) = pending.take()
                && (superseded || tombstone)
            {
                doomed.push((key, row_revision));
            }
        };
        for row in self.history.iter().context(what)? {
            let (row_key, row) = row.context(what)?;
            let (key, row_revision) = row_key.value();
            if pending.as_ref().is_some_and(|(last, _, _)| last != key) {
                settle(&mut pending, false);
            }
            if row_revision <= revision {
                // A later version at or before `revision` supersedes the pending one.
                settle(&mut pending, true);
                pending = Some((key.to_owned(), row_revision, row.value() == TOMBSTONE));
            } else {
                settle(&mut pending, false);
            }
        }
        settle(&mut pending, false);
        for (key, row_revision) in &doomed {
            self.history
                .remove((key.as_str(), *row_revision))
                .context(what)?;
        }
        self.log
            .retain_in(..=(revision, u32::MAX), |_, _| false)
            .context(what)?;
        self.meta.insert(COMPACTED, revision).context(what)?;
        self.dirty = true;
        Ok(())
    }
}

impl Inner {
    /// Runs `f` on a write transaction whose key writes get the next revision, then commits
    /// durably (fsync before returning) and publishes the events to live watches, in revision
    /// order: the writer lock is held from the start of the transaction to the publication.
    ///
    /// Returns `f`'s result and the store's revision afterwards: the new one if keys changed,
    /// else the current one (nothing is bumped for a transaction that changes no key).
    pub(super) fn write<T>(
        &self,
        what: impl Fn() -> String,
        f: impl FnOnce(&mut Batch<'_>) -> Result<Step<T>, Error>,
    ) -> Result<(T, Revision), Error> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // Only this lock's holder changes the revision, so the cached one is the file's.
        let current = self.revision.load(Ordering::Acquire);
        let next = current + 1;
        let mut tx = self
            .db
            .begin_write()
            .context(|| format!("begin of {}", what()))?;
        tx.set_durability(Durability::Immediate)
            .context(|| format!("durability of {}", what()))?;
        let (step, events, dirty) = {
            let mut batch = Batch::open(&tx, next)?;
            let step = f(&mut batch)?;
            if matches!(step, Step::Apply(_)) && !batch.events.is_empty() {
                batch
                    .meta
                    .insert(REVISION, next)
                    .context(|| format!("revision bump of {}", what()))?;
            }
            (step, batch.events, batch.dirty)
        };
        match step {
            Step::Apply(value) if !events.is_empty() || dirty => {
                tx.commit().context(|| format!("commit of {}", what()))?;
                if events.is_empty() {
                    Ok((value, current))
                } else {
                    self.publish(next, events);
                    Ok((value, next))
                }
            }
            Step::Apply(value) | Step::Abort(value) => {
                tx.abort().context(|| format!("abort of {}", what()))?;
                Ok((value, current))
            }
        }
    }

    /// Hands a committed revision's events to live watches, then makes it the current revision.
    /// In that order: a watch that sees revision R as current has been sent R's events.
    fn publish(&self, revision: Revision, events: Vec<Event>) {
        // No receivers is not an error: nobody watches.
        let _ = self.events.send(Arc::new(Published { revision, events }));
        self.revision.store(revision, Ordering::Release);
    }
}
