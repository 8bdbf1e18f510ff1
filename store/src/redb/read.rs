//! The read path: ranges at the current or a past revision, counts, and the event log watches
//! replay. Each read is one redb read transaction, so it sees one committed revision.

use std::ops::Bound;

use ::redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::{
    Inner,
    tables::{
        COMPACTED, CURRENT, Context, HISTORY, LOG, META, REVISION, decode_current, decode_version,
        meta, version_at,
    },
};
use crate::{Error, Event, KeyValue, RangeRequest, RangeResponse, Revision};

/// A run of the event log read for a watch.
pub(super) struct LogChunk {
    /// The events under the watch's prefix, in revision order.
    pub(super) events: Vec<Event>,
    /// Every revision up to this one has been read (whether or not it had matching events).
    pub(super) through: Revision,
    /// The log ended: nothing after `through` was committed when the chunk was read.
    pub(super) done: bool,
}

/// How many log rows one chunk reads at most, so that a long replay streams in pieces.
const LOG_CHUNK_ROWS: usize = 4096;

impl Inner {
    fn begin_read(&self, what: impl FnOnce() -> String) -> Result<ReadTransaction, Error> {
        self.db.begin_read().context(what)
    }

    /// The keys a request asks for. Reads at the current revision scan the current-state table;
    /// reads at a past one scan the history.
    pub(super) fn range(&self, request: &RangeRequest) -> Result<RangeResponse, Error> {
        let prefix = request.prefix.as_str();
        let what = || format!("range of {prefix} at revision {}", request.revision);
        let tx = self.begin_read(what)?;
        let meta_table = tx.open_table(META).context(what)?;
        let current = meta(&meta_table, REVISION)?;
        let compacted = meta(&meta_table, COMPACTED)?;
        let at = match request.revision {
            0 => current,
            requested if requested > current => {
                return Err(Error::FutureRevision { requested, current });
            }
            requested if requested < compacted => {
                return Err(Error::Compacted {
                    requested,
                    compacted,
                });
            }
            requested => requested,
        };
        // etcd reads a limit of 0 as "no limit"; so do we.
        let limit = request
            .limit
            .filter(|limit| *limit > 0)
            .unwrap_or(usize::MAX);
        let start_after = request
            .start_after
            .as_deref()
            .filter(|start_after| *start_after >= prefix);
        let (kvs, more) = if at == current {
            scan_current(&tx, prefix, start_after, limit)?
        } else {
            scan_history(&tx, prefix, start_after, limit, at)?
        };
        Ok(RangeResponse {
            kvs,
            more,
            revision: at,
        })
    }

    /// One key at the current revision: a point lookup, not a prefix scan.
    pub(super) fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let what = || format!("read of {key}");
        let tx = self.begin_read(what)?;
        let table = tx.open_table(CURRENT).context(what)?;
        let row = table.get(key).context(what)?;
        row.map(|row| decode_current(key, row.value())).transpose()
    }

    /// How many keys are under a prefix now.
    pub(super) fn count(&self, prefix: &str) -> Result<u64, Error> {
        let what = || format!("count of {prefix}");
        let tx = self.begin_read(what)?;
        let table = tx.open_table(CURRENT).context(what)?;
        let mut count = 0;
        for row in table.range(prefix..).context(what)? {
            let (key, _) = row.context(what)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// The events under `prefix` with a revision greater than `after`, a chunk at a time; fails
    /// with [`Error::Compacted`] if the log before `after` is gone.
    pub(super) fn read_log(&self, prefix: &str, after: Revision) -> Result<LogChunk, Error> {
        let what = || format!("replay of {prefix} after revision {after}");
        let tx = self.begin_read(what)?;
        let compacted = meta(&tx.open_table(META).context(what)?, COMPACTED)?;
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let log = tx.open_table(LOG).context(what)?;
        let history = tx.open_table(HISTORY).context(what)?;
        let mut chunk = LogChunk {
            events: Vec::new(),
            through: after,
            done: true,
        };
        for (rows, row) in log
            .range::<(i64, u32)>((Bound::Excluded((after, u32::MAX)), Bound::Unbounded))
            .context(what)?
            .enumerate()
        {
            let (position, key) = row.context(what)?;
            let (revision, _) = position.value();
            let key = key.value();
            // Stop between revisions only: `through` promises whole revisions.
            if revision != chunk.through && rows >= LOG_CHUNK_ROWS {
                chunk.done = false;
                break;
            }
            chunk.through = revision;
            if key.starts_with(prefix) {
                chunk.events.push(event_at(&history, key, revision)?);
            }
        }
        Ok(chunk)
    }
}

/// The change `key` got at `revision`, with its previous version.
fn event_at(
    history: &impl ReadableTable<(&'static str, i64), &'static [u8]>,
    key: &str,
    revision: Revision,
) -> Result<Event, Error> {
    let what = || format!("history of {key} at revision {revision}");
    let row = history
        .get((key, revision))
        .context(what)?
        .ok_or_else(|| Error::Engine(format!("redb: {}: row missing", what())))?;
    let written = decode_version(key, revision, row.value())?;
    let prev = version_at(history, key, revision - 1)?;
    match (written, prev) {
        (Some(kv), prev) => Ok(Event::Put { kv, prev }),
        (None, Some(prev)) => Ok(Event::Delete { prev, revision }),
        (None, None) => Err(Error::Engine(format!(
            "redb: {}: a delete without a previous version",
            what()
        ))),
    }
}

/// Where a scan of `prefix` starts: after `start_after` if given (already checked to be at or
/// past the prefix), else at the prefix.
fn start<'k>(prefix: &'k str, start_after: Option<&'k str>) -> Bound<&'k str> {
    start_after.map_or(Bound::Included(prefix), Bound::Excluded)
}

fn scan_current(
    tx: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), Error> {
    let what = || format!("range of {prefix}");
    let table = tx.open_table(CURRENT).context(what)?;
    let mut kvs = Vec::new();
    for row in table
        .range::<&str>((start(prefix, start_after), Bound::Unbounded))
        .context(what)?
    {
        let (key, row) = row.context(what)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(decode_current(key, row.value())?);
    }
    Ok((kvs, false))
}

fn scan_history(
    tx: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    at: Revision,
) -> Result<(Vec<KeyValue>, bool), Error> {
    let what = || format!("range of {prefix} at revision {at}");
    let table = tx.open_table(HISTORY).context(what)?;
    // Every version of a key sorts before the next key's, oldest first: the version at `at` is
    // the last one at or before it.
    let from = match start(prefix, start_after) {
        Bound::Excluded(key) => Bound::Excluded((key, i64::MAX)),
        _ => Bound::Included((prefix, i64::MIN)),
    };
    let mut kvs = Vec::new();
    // The key being scanned and its version at `at` so far.
    let mut scanned: Option<(String, Option<KeyValue>)> = None;
    for row in table
        .range::<(&str, i64)>((from, Bound::Unbounded))
        .context(what)?
    {
        let (row_key, row) = row.context(what)?;
        let (key, revision) = row_key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if scanned.as_ref().is_none_or(|(last, _)| last != key) {
            if let Some((_, Some(kv))) = scanned.take() {
                if kvs.len() == limit {
                    return Ok((kvs, true));
                }
                kvs.push(kv);
            }
            scanned = Some((key.to_owned(), None));
        }
        if revision <= at
            && let Some((_, version)) = &mut scanned
        {
            *version = decode_version(key, revision, row.value())?;
        }
    }
    if let Some((_, Some(kv))) = scanned {
        if kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(kv);
    }
    Ok((kvs, false))
}
