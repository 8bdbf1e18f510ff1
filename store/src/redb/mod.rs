//! The embedded engine: one redb file, nothing to set up.
//!
//! The file holds the current state, every version of every key since the compacted revision,
//! the event log and the leases (see [`tables`]). Writes are serialized, committed with
//! immediate durability and then published to live watches over a tokio broadcast. redb work
//! runs on tokio's blocking pool, never on the async runtime's threads.
//!
//! History grows until someone calls [`Store::compact`], as with etcd: the control plane
//! compacts periodically.

mod lease;
mod read;
mod tables;
mod watch;
mod write;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use ::redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use self::{
    lease::Clock,
    tables::{
        COMPACTED, CURRENT, Context, HISTORY, LEASE_KEYS, LEASES, LOG, META, NEXT_LEASE, REVISION,
        meta,
    },
    watch::Watcher,
    write::Step,
};
use crate::{
    Error, Event, KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, Store, Txn, TxnOutcome,
    WatchStream,
};

/// How a [`RedbStore`] behaves; [`RedbOptions::default`] is what production uses.
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// How long a watch stays quiet before it sends [`Event::Progress`] (default 5 s).
    pub progress_interval: Duration,
    /// How many committed transactions the live broadcast buffers for slow watches (default
    /// 1024). A watch that falls further behind re-reads the event log from disk.
    pub watch_buffer: usize,
    /// How many events a watch queues for a consumer that is not reading (default 256).
    pub watch_queue: usize,
    /// The most memory redb may use to cache pages, in bytes (default 64 MiB).
    pub cache_size: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(5),
            watch_buffer: 1024,
            watch_queue: 256,
            cache_size: 64 << 20,
        }
    }
}

/// The embedded [`Store`]: one redb file. Cloning gives another handle on the same store; the
/// file closes when the last handle is dropped.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

/// One committed revision's events, as broadcast to live watches.
struct Published {
    revision: Revision,
    events: Vec<Event>,
}

/// What every handle, the lease task and the blocking tasks share.
struct Inner {
    db: Database,
    path: PathBuf,
    options: RedbOptions,
    /// Held from the start of a write transaction until its events are published, so that
    /// revisions are published in order.
    writer: Mutex<()>,
    /// The last committed revision whose events were published.
    revision: AtomicI64,
    compacted: AtomicI64,
    events: broadcast::Sender<Arc<Published>>,
    clocks: Mutex<HashMap<LeaseId, Clock>>,
    /// Wakes the lease expiry task: a new deadline, or the store going away.
    wake_expiry: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The expiry task holds the store weakly; waking it lets it see the store is gone.
        self.wake_expiry.notify_one();
    }
}

impl RedbStore {
    /// Opens (or creates) the store in the file at `path`, with default options.
    ///
    /// Must be called inside a tokio runtime (the store runs a lease expiry task on it). Opening
    /// is blocking IO: after a crash redb checks and repairs the file first.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens (or creates) the store in the file at `path`.
    pub fn open_with(path: &Path, options: RedbOptions) -> Result<Self, Error> {
        let shown = path.display();
        let runtime = tokio::runtime::Handle::try_current()
            .context(|| format!("open of {shown} (a tokio runtime is needed)"))?;
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path)
            .context(|| format!("open of {shown}"))?;
        initialize(&db).map_err(|e| Error::Engine(format!("{e} (in {shown})")))?;
        let loaded = load(&db).map_err(|e| Error::Engine(format!("{e} (in {shown})")))?;
        let wake_expiry = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            db,
            path: path.to_owned(),
            events: broadcast::Sender::new(options.watch_buffer.max(1)),
            options,
            writer: Mutex::new(()),
            revision: AtomicI64::new(loaded.revision),
            compacted: AtomicI64::new(loaded.compacted),
            clocks: Mutex::new(lease::fresh_clocks(loaded.leases)),
            wake_expiry: Arc::clone(&wake_expiry),
        });
        runtime.spawn(lease::expire_leases(Arc::downgrade(&inner), wake_expiry));
        Ok(Self { inner })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool with the store.
    async fn blocking<T: Send + 'static>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .context(|| format!("{} (blocking task)", what()))?
    }
}

/// Creates the tables and counters of a new file (a no-op on an existing one).
fn initialize(db: &Database) -> Result<(), Error> {
    let what = || "initialization".to_owned();
    let tx = db.begin_write().context(what)?;
    {
        let mut meta_table = tx.open_table(META).context(what)?;
        if meta_table.get(REVISION).context(what)?.is_none() {
            // Revision 1 is the empty store, as in etcd: the first write gets revision 2.
            meta_table.insert(REVISION, 1).context(what)?;
            meta_table.insert(COMPACTED, 0).context(what)?;
            meta_table.insert(NEXT_LEASE, 1).context(what)?;
        }
        tx.open_table(CURRENT).context(what)?;
        tx.open_table(HISTORY).context(what)?;
        tx.open_table(LOG).context(what)?;
        tx.open_table(LEASES).context(what)?;
        tx.open_table(LEASE_KEYS).context(what)?;
    }
    tx.commit().context(what)
}

/// The counters and leases a store starts from.
struct Loaded {
    revision: Revision,
    compacted: Revision,
    leases: Vec<(LeaseId, Duration)>,
}

fn load(db: &Database) -> Result<Loaded, Error> {
    let what = || "load of counters and leases".to_owned();
    let tx = db.begin_read().context(what)?;
    let meta_table = tx.open_table(META).context(what)?;
    let leases = tx
        .open_table(LEASES)
        .context(what)?
        .iter()
        .context(what)?
        .map(|row| row.map(|(id, ttl)| (id.value(), Duration::from_millis(ttl.value()))))
        .collect::<Result<Vec<_>, _>>()
        .context(what)?;
    Ok(Loaded {
        revision: meta(&meta_table, REVISION)?,
        compacted: meta(&meta_table, COMPACTED)?,
        leases,
    })
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn current_revision(&self) -> Result<Revision, Error> {
        Ok(self.inner.revision.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision, Error> {
        Ok(self.inner.compacted.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let owned = key.to_owned();
        self.blocking(|| format!("read of {key}"), move |inner| inner.get(&owned))
            .await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        let prefix = request.prefix.clone();
        self.blocking(
            || format!("range of {prefix}"),
            move |inner| inner.range(&request),
        )
        .await
    }

    async fn count(&self, prefix: &str) -> Result<u64, Error> {
        let owned = prefix.to_owned();
        self.blocking(
            || format!("count of {prefix}"),
            move |inner| inner.count(&owned),
        )
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, Error> {
        txn.check_ops()?;
        let first_key = txn.first_key().to_owned();
        self.blocking(
            || format!("txn on {first_key}"),
            move |inner| {
                let (failed, revision) = inner.write(
                    || format!("txn on {}", txn.first_key()),
                    |batch| {
                        for (key, condition) in &txn.conditions {
                            let current = batch.get(key)?;
                            if !condition.holds(current.as_ref()) {
                                return Ok(Step::Abort(Some(TxnOutcome::ConditionFailed {
                                    key: key.clone(),
                                    current,
                                })));
                            }
                        }
                        for op in &txn.ops {
                            match op {
                                crate::Op::Put { key, value, lease } => {
                                    batch.put(key, value, *lease)?;
                                }
                                crate::Op::Delete { key } => batch.delete(key)?,
                            }
                        }
                        Ok(Step::Apply(None))
                    },
                )?;
                Ok(failed.unwrap_or(TxnOutcome::Committed { revision }))
            },
        )
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        // Subscribe before anything is read from disk: see the watch module.
        let live = self.inner.events.subscribe();
        let compacted = self.inner.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let (out, events) = mpsc::channel(self.inner.options.watch_queue.max(1));
        let watcher = Watcher {
            inner: Arc::downgrade(&self.inner),
            prefix: prefix.to_owned(),
            seen: after,
            live,
            out,
            progress_interval: self.inner.options.progress_interval,
        };
        tokio::spawn(watcher.run());
        Ok(Box::pin(ReceiverStream::new(events)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), Error> {
        self.blocking(
            || format!("compaction to revision {revision}"),
            move |inner| {
                inner.write(
                    || format!("compaction to revision {revision}"),
                    |batch| {
                        let current = batch.current_revision();
                        if revision > current {
                            return Err(Error::FutureRevision {
                                requested: revision,
                                current,
                            });
                        }
                        // Compacting to an older revision than already done has nothing to do.
                        if revision > batch.compacted_revision()? {
                            batch.compact(revision)?;
                        }
                        Ok(Step::Apply(()))
                    },
                )?;
                inner.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            },
        )
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, Error> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let lease = self
            .blocking(
                || "lease grant".to_owned(),
                move |inner| {
                    let (lease, _) = inner.write(
                        || "lease grant".to_owned(),
                        |batch| batch.grant(ttl_ms).map(Step::Apply),
                    )?;
                    Ok(lease)
                },
            )
            .await?;
        self.inner
            .start_clock(lease, Clock::start(Duration::from_millis(ttl_ms)));
        Ok(lease)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), Error> {
        self.inner.keep_alive(lease)
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), Error> {
        self.blocking(
            || format!("revoke of lease {lease}"),
            move |inner| inner.revoke(lease),
        )
        .await
    }
}

impl Inner {
    /// Ends a lease: deletes its keys at one new revision (none if it has no keys) and stops its
    /// clock.
    fn revoke(&self, lease: LeaseId) -> Result<(), Error> {
        self.write(
            || format!("revoke of lease {lease}"),
            |batch| batch.revoke(lease).map(Step::Apply),
        )?;
        self.stop_clock(lease);
        Ok(())
    }
}
