//! The etcd engine: several `strait-control` processes can share one etcd.
//!
//! Every key lives under the store's prefix, so that several clusters (or tests) share one etcd;
//! the prefix is added on the way in and stripped on the way out. Revisions are etcd's, which are
//! global to the etcd, not to the prefix. Only RPCs etcd 3.4 serves are used.
//!
//! etcd does not say what it compacted to: [`Store::compacted_revision`] finds it by probing
//! reads, and a watch checks its start revision with a read before it is created, since etcd
//! refuses a compacted start only by cancelling the watch afterwards.
//!
//! Progress: a watch that has been quiet for the progress interval asks etcd for progress
//! (`RequestProgress`) and reports the revision etcd answers with. etcd before 3.4.25 answers at
//! once even for a watcher still replaying history; the request is only made after a quiet
//! interval, when such a replay would be sending events, and a progress older than an event
//! already delivered is dropped.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, EventType, GetOptions,
    PutOptions, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    Condition, Error, Event, KeyValue, LeaseId, Op, RangeRequest, RangeResponse, Revision, Store,
    Txn, TxnOutcome, WatchStream,
};

/// How an [`EtcdStore`] behaves; [`EtcdOptions::default`] is what production uses.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// How long a watch stays quiet before it asks etcd for progress and sends
    /// [`Event::Progress`] (default 5 s).
    pub progress_interval: Duration,
    /// How long connecting to an endpoint may take (default 5 s).
    pub connect_timeout: Duration,
    /// How many events a watch queues for a consumer that is not reading (default 256).
    pub watch_queue: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            watch_queue: 256,
        }
    }
}

/// The [`Store`] on etcd, under a key prefix. Cloning gives another handle on the same
/// connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    options: EtcdOptions,
    /// The highest compacted revision seen so far: where looking for the current one starts.
    compacted: Arc<AtomicI64>,
}

/// The store's prefix, and turning keys and key-values between the trait's and etcd's.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// The etcd range `[start, end)` holding every key under `prefix`. etcd rejects an empty
    /// key, and reads an end of `\0` as "every key from start".
    fn scope(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full(prefix);
        if start.is_empty() {
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&start);
        (start, end)
    }

    fn key(&self, key: &[u8]) -> Result<String, Error> {
        let stripped = key.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            Error::Engine(format!(
                "etcd: key {} is outside prefix {}",
                String::from_utf8_lossy(key),
                self.prefix
            ))
        })?;
        String::from_utf8(stripped.to_vec()).map_err(|_| {
            Error::Engine(format!(
                "etcd: key {} is not UTF-8",
                String::from_utf8_lossy(key)
            ))
        })
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, Error> {
        Ok(KeyValue {
            key: self.key(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        })
    }

    fn event(&self, event: &etcd_client::Event) -> Result<Event, Error> {
        let kv = event
            .kv()
            .ok_or_else(|| Error::Engine("etcd: watch event without a key".to_owned()))?;
        let prev = event.prev_kv().map(|prev| self.kv(prev)).transpose()?;
        match event.event_type() {
            EventType::Put => Ok(Event::Put {
                kv: self.kv(kv)?,
                prev,
            }),
            EventType::Delete => {
                let revision = kv.mod_revision();
                // etcd omits the previous value only if it was compacted away meanwhile: the
                // key is all that is left to report.
                let prev = match prev {
                    Some(prev) => prev,
                    None => KeyValue {
                        key: self.key(kv.key())?,
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: 0,
                        lease: 0,
                    },
                };
                Ok(Event::Delete { prev, revision })
            }
        }
    }
}

/// The first key after every key starting with `prefix` (`\0`: none, read to the end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The etcd errors the trait has names for. etcd reports them as gRPC statuses whose messages
/// are stable across 3.4 and later ("etcdserver: mvcc: required revision has been compacted").
enum Failure {
    Compacted,
    FutureRevision,
    LeaseNotFound,
    Other,
}

fn classify(error: &etcd_client::Error) -> Failure {
    let message = match error {
        etcd_client::Error::GRpcStatus(status) => status.message(),
        etcd_client::Error::LeaseKeepAliveError(message) => message.as_str(),
        _ => return Failure::Other,
    };
    if message.contains("required revision has been compacted") {
        Failure::Compacted
    } else if message.contains("required revision is a future revision") {
        Failure::FutureRevision
    } else if message.contains("lease not found") {
        Failure::LeaseNotFound
    } else {
        Failure::Other
    }
}

/// What a read at a revision would do.
enum Probe {
    Readable,
    Compacted,
    Future,
}

/// What an etcd call may be tried again for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// A read: sending it twice changes nothing, so it is tried again while the cluster
    /// elects a leader (a member answers "leader changed" or "no leader" until then).
    Read,
    /// A write: tried again only when it never reached a member, since one that did may
    /// have been applied.
    Write,
}

/// How long a call is tried again for: longer than an election (etcd's default election
/// timeout is 1 s).
const RETRY_BUDGET: Duration = Duration::from_secs(3);

/// Runs an etcd call again while it fails in a way `kind` may repeat. The client spreads
/// calls over every endpoint, a dead member's too; a call sent there fails to connect and
/// never arrived, so the next try picks another member.
async fn retried<T, F, Fut>(kind: Call, mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let began = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match call().await {
            Err(error) if began.elapsed() < RETRY_BUDGET && repeatable(kind, &error) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

/// Whether a call of `kind` that failed with `error` may be sent again.
fn repeatable(kind: Call, error: &etcd_client::Error) -> bool {
    let message = match error {
        etcd_client::Error::GRpcStatus(status) => status.message(),
        etcd_client::Error::TransportError(_) => return true,
        _ => return false,
    };
    let never_sent = message.contains("tcp connect error");
    let electing = ["leader changed", "no leader", "timed out"]
        .iter()
        .any(|m| message.contains(m));
    never_sent || (kind == Call::Read && electing)
}

fn engine(what: &str, error: &impl std::fmt::Display) -> Error {
    Error::Engine(format!("etcd: {what}: {error}"))
}

/// Keys per request when a range asks for everything.
const RANGE_PAGE: usize = 1000;

/// The largest response accepted (etcd's own request limit is 1.5 MiB per object, so a page
/// of 1,000 objects fits with room to spare; gRPC's default of 4 MiB does not).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

impl EtcdStore {
    /// One etcd range request, as asked.
    async fn range_once(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        let what = || {
            format!(
                "range of {} at revision {}",
                request.prefix, request.revision
            )
        };
        let (scope_start, end) = self.keys.scope(&request.prefix);
        let start = match &request.start_after {
            Some(after) if after.as_str() >= request.prefix.as_str() => {
                // The smallest key greater than `after`.
                let mut start = self.keys.full(after);
                start.push(0);
                start
            }
            _ => scope_start,
        };
        let mut options = GetOptions::new().with_range(end);
        if let Some(limit) = request.limit.filter(|limit| *limit > 0) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if request.revision != 0 {
            options = options.with_revision(request.revision);
        }
        let response = match retried(Call::Read, || {
            let mut kv = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE);
            let (start, options) = (start.clone(), options.clone());
            async move { kv.get(start, Some(options)).await }
        })
        .await
        {
            Ok(response) => response,
            Err(error) => {
                return Err(match classify(&error) {
                    Failure::Compacted => self.compacted_error(request.revision).await,
                    Failure::FutureRevision => self.future_error(request.revision).await,
                    _ => engine(&what(), &error),
                });
            }
        };
        let revision = if request.revision == 0 {
            header_revision(response.header(), &what())?
        } else {
            request.revision
        };
        Ok(RangeResponse {
            kvs: response
                .kvs()
                .iter()
                .map(|kv| self.keys.kv(kv))
                .collect::<Result<_, _>>()?,
            more: response.more(),
            revision,
        })
    }

    /// Connects to etcd at `endpoints` (`http://host:port`), keeping every key under `prefix`,
    /// with default options. Fails if no endpoint answers.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, Error> {
        Self::connect_with(endpoints, prefix, EtcdOptions::default()).await
    }

    /// Connects to etcd at `endpoints`, keeping every key under `prefix`.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        options: EtcdOptions,
    ) -> Result<Self, Error> {
        let what = || format!("etcd: connection to {}", endpoints.join(","));
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // A watch on a dead connection must fail rather than hang: ping it.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| Error::Engine(format!("{}: {e}", what())))?;
        let store = Self {
            client,
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            options,
            compacted: Arc::new(AtomicI64::new(0)),
        };
        // The connection is made lazily: ask something so that a wrong endpoint fails here.
        store
            .current_revision()
            .await
            .map_err(|e| Error::Engine(format!("{}: {e}", what())))?;
        Ok(store)
    }

    /// Whether etcd can serve a read at `revision`.
    async fn probe(&self, revision: Revision) -> Result<Probe, Error> {
        let (start, _) = self.keys.scope("");
        let options = GetOptions::new().with_count_only().with_revision(revision);
        let read = || {
            let mut kv = self.client.kv_client();
            let (start, options) = (start.clone(), options.clone());
            async move { kv.get(start, Some(options)).await }
        };
        match retried(Call::Read, read).await {
            Ok(_) => Ok(Probe::Readable),
            Err(error) => match classify(&error) {
                Failure::Compacted => Ok(Probe::Compacted),
                Failure::FutureRevision => Ok(Probe::Future),
                _ => Err(engine(&format!("read at revision {revision}"), &error)),
            },
        }
    }

    async fn readable_at(&self, revision: Revision) -> Result<bool, Error> {
        Ok(matches!(self.probe(revision).await?, Probe::Readable))
    }

    /// The error for a read or watch at a compacted revision, with the compacted revision
    /// looked up (etcd's error does not say it).
    async fn compacted_error(&self, requested: Revision) -> Error {
        match self.compacted_revision().await {
            Ok(compacted) => Error::Compacted {
                requested,
                compacted,
            },
            Err(error) => error,
        }
    }

    async fn future_error(&self, requested: Revision) -> Error {
        match self.current_revision().await {
            Ok(current) => Error::FutureRevision { requested, current },
            Err(error) => error,
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, Error> {
        let (start, _) = self.keys.scope("");
        let response = retried(Call::Read, || {
            let mut kv = self.client.kv_client();
            let start = start.clone();
            async move {
                kv.get(start, Some(GetOptions::new().with_count_only()))
                    .await
            }
        })
        .await
        .map_err(|e| engine("read of the current revision", &e))?;
        header_revision(response.header(), "read of the current revision")
    }

    /// etcd 3.4 has no call that says it: binary search for the oldest revision a read is still
    /// served at (from the highest one seen before, so usually a few reads).
    async fn compacted_revision(&self) -> Result<Revision, Error> {
        let current = self.current_revision().await?;
        let mut low = self.compacted.load(Ordering::Acquire).max(1);
        let oldest = if self.readable_at(low).await? {
            low
        } else {
            // Reads at `low` fail and at `high` (the current revision) succeed.
            let mut high = current;
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if self.readable_at(middle).await? {
                    high = middle;
                } else {
                    low = middle;
                }
            }
            high
        };
        self.compacted.fetch_max(oldest, Ordering::AcqRel);
        // Revision 1 is etcd's empty store: oldest 1 means nothing was lost, watching from the
        // start works, as with a never-compacted redb store (0).
        Ok(if oldest <= 1 { 0 } else { oldest })
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        let response = retried(Call::Read, || {
            let mut kv = self.client.kv_client();
            let full = self.keys.full(key);
            async move { kv.get(full, None).await }
        })
        .await
        .map_err(|e| engine(&format!("read of {key}"), &e))?;
        response
            .kvs()
            .first()
            .map(|kv| self.keys.kv(kv))
            .transpose()
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        if request.limit.is_some_and(|limit| limit > 0) {
            return self.range_once(request).await;
        }
        // An unlimited range is read in pages at one revision: one response for 100,000
        // objects would be tens of megabytes in a single gRPC message.
        let mut page = RangeRequest {
            limit: Some(RANGE_PAGE),
            ..request
        };
        let mut all = RangeResponse::default();
        loop {
            let response = self.range_once(page.clone()).await?;
            all.revision = response.revision;
            page.revision = response.revision;
            page.start_after = response.kvs.last().map(|kv| kv.key.clone());
            all.kvs.extend(response.kvs);
            if !response.more {
                return Ok(all);
            }
        }
    }

    async fn count(&self, prefix: &str) -> Result<u64, Error> {
        let (start, end) = self.keys.scope(prefix);
        let response = self
            .client
            .kv_client()
            .get(
                start,
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await
            .map_err(|e| engine(&format!("count of {prefix}"), &e))?;
        u64::try_from(response.count())
            .map_err(|_| Error::Engine(format!("etcd: count of {prefix} is negative")))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, Error> {
        txn.check_ops()?;
        let what = || format!("txn on {}", txn.first_key());
        let mut compares = Vec::with_capacity(txn.conditions.len());
        for (key, condition) in &txn.conditions {
            let key = self.keys.full(key);
            match *condition {
                Condition::Absent => {
                    compares.push(Compare::create_revision(key, CompareOp::Equal, 0))
                }
                Condition::Exists => {
                    compares.push(Compare::create_revision(key, CompareOp::Greater, 0));
                }
                Condition::ModRevision(revision) => {
                    // An absent key has mod revision 0 in etcd; the trait wants it to exist.
                    if revision <= 0 {
                        compares.push(Compare::create_revision(key.clone(), CompareOp::Greater, 0));
                    }
                    compares.push(Compare::mod_revision(key, CompareOp::Equal, revision));
                }
            }
        }
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => TxnOp::put(
                    self.keys.full(key),
                    value.clone(),
                    (*lease != 0).then(|| PutOptions::new().with_lease(*lease)),
                ),
                Op::Delete { key } => TxnOp::delete(self.keys.full(key), None),
            })
            .collect();
        // On failure read every condition's key in the same transaction, to name the first
        // failing one with what is there.
        let reads: Vec<TxnOp> = txn
            .conditions
            .iter()
            .map(|(key, _)| TxnOp::get(self.keys.full(key), None))
            .collect();
        let request = etcd_client::Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(reads);
        let response = match retried(Call::Write, || {
            let mut kv = self.client.kv_client();
            let request = request.clone();
            async move { kv.txn(request).await }
        })
        .await
        {
            Ok(response) => response,
            Err(error) => {
                return Err(match classify(&error) {
                    Failure::LeaseNotFound => {
                        let lease = txn
                            .ops
                            .iter()
                            .find_map(|op| match op {
                                Op::Put { lease, .. } if *lease != 0 => Some(*lease),
                                _ => None,
                            })
                            .unwrap_or(0);
                        Error::LeaseNotFound(lease)
                    }
                    _ => engine(&what(), &error),
                });
            }
        };
        if response.succeeded() {
            return Ok(TxnOutcome::Committed {
                revision: header_revision(response.header(), &what())?,
            });
        }
        let reads = response.op_responses();
        for ((key, condition), read) in txn.conditions.iter().zip(&reads) {
            let TxnOpResponse::Get(read) = read else {
                return Err(Error::Engine(format!(
                    "etcd: {}: unexpected response to a read",
                    what()
                )));
            };
            let current = read.kvs().first().map(|kv| self.keys.kv(kv)).transpose()?;
            if !condition.holds(current.as_ref()) {
                return Ok(TxnOutcome::ConditionFailed {
                    key: key.clone(),
                    current,
                });
            }
        }
        Err(Error::Engine(format!(
            "etcd: {}: a condition failed in etcd but holds on the values read with it",
            what()
        )))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, Error> {
        let what = || format!("watch of {prefix} after revision {after}");
        // etcd refuses a compacted start revision only after the watch is created, by
        // cancelling it: ask first, so that the error comes from `watch` itself. A future
        // revision is fine: the watch waits for it.
        if let Probe::Compacted = self.probe(after.max(1)).await? {
            return Err(self.compacted_error(after).await);
        }
        let (start, end) = self.keys.scope(prefix);
        let options = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(after + 1);
        let mut stream = self
            .client
            .watch_client()
            .watch(start, Some(options))
            .await
            .map_err(|e| engine(&what(), &e))?;
        // The first response confirms the watch (or refuses it).
        match stream.message().await {
            Ok(Some(response)) if response.canceled() => {
                return Err(cancellation(&response, after, &what()));
            }
            Ok(Some(response)) if response.created() => {}
            Ok(Some(_)) => {
                return Err(Error::Engine(format!(
                    "etcd: {}: no confirmation of the watch",
                    what()
                )));
            }
            Ok(None) => {
                return Err(Error::Engine(format!("etcd: {}: the stream ended", what())));
            }
            Err(error) => return Err(engine(&what(), &error)),
        }
        let (out, events) = mpsc::channel(self.options.watch_queue.max(1));
        let watcher = Watcher {
            keys: self.keys.clone(),
            prefix: prefix.to_owned(),
            stream,
            out,
            seen: after,
            progress_interval: self.options.progress_interval,
        };
        tokio::spawn(watcher.run());
        Ok(Box::pin(ReceiverStream::new(events)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), Error> {
        let what = format!("compaction to revision {revision}");
        // Physical: return once etcd has dropped the history, so reads before it fail.
        let options = CompactionOptions::new().with_physical();
        match self
            .client
            .kv_client()
            .compact(revision, Some(options))
            .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => match classify(&error) {
                // Already compacted past it: nothing to do.
                Failure::Compacted => Ok(()),
                Failure::FutureRevision => Err(self.future_error(revision).await),
                _ => Err(engine(&what, &error)),
            },
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, Error> {
        // etcd counts TTLs in whole seconds (and raises short ones to its minimum).
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds = i64::try_from(seconds.max(1)).unwrap_or(i64::MAX);
        let response = retried(Call::Write, || {
            let mut leases = self.client.lease_client();
            async move { leases.grant(seconds, None).await }
        })
        .await
        .map_err(|e| engine(&format!("grant of a lease for {seconds} s"), &e))?;
        Ok(response.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), Error> {
        // One request on a keep-alive stream; dropping the keeper ends the stream.
        match self.client.lease_client().keep_alive(lease).await {
            Ok(_) => Ok(()),
            Err(error) => Err(match classify(&error) {
                Failure::LeaseNotFound => Error::LeaseNotFound(lease),
                _ => engine(&format!("keep-alive of lease {lease}"), &error),
            }),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), Error> {
        match retried(Call::Write, || {
            let mut leases = self.client.lease_client();
            async move { leases.revoke(lease).await }
        })
        .await
        {
            Ok(_) => Ok(()),
            Err(error) => Err(match classify(&error) {
                Failure::LeaseNotFound => Error::LeaseNotFound(lease),
                _ => engine(&format!("revoke of lease {lease}"), &error),
            }),
        }
    }
}

fn header_revision(
    header: Option<&etcd_client::ResponseHeader>,
    what: &str,
) -> Result<Revision, Error> {
    header
        .map(etcd_client::ResponseHeader::revision)
        .ok_or_else(|| Error::Engine(format!("etcd: {what}: response without a header")))
}

/// The error a cancelled watch ends with.
fn cancellation(response: &WatchResponse, requested: Revision, what: &str) -> Error {
    if response.compact_revision() > 0 {
        Error::Compacted {
            requested,
            compacted: response.compact_revision(),
        }
    } else {
        Error::Engine(format!(
            "etcd: {what}: cancelled by etcd: {}",
            response.cancel_reason()
        ))
    }
}

/// A watch's task: turns etcd's responses into events, asks for progress when idle.
struct Watcher {
    keys: Keys,
    prefix: String,
    stream: etcd_client::WatchStream,
    out: mpsc::Sender<Result<Event, Error>>,
    /// The revision of the last event delivered.
    seen: Revision,
    progress_interval: Duration,
}

impl Watcher {
    async fn run(mut self) {
        if let Err(error) = self.follow().await {
            // The consumer may be gone too; nothing else to tell.
            let _ = self.out.send(Err(error)).await;
        }
    }

    /// Runs until the consumer goes away (`Ok`) or the watch fails.
    async fn follow(&mut self) -> Result<(), Error> {
        let prefix = self.prefix.clone();
        let what = || format!("watch of {prefix}");
        let idle = tokio::time::sleep(self.progress_interval);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = self.out.closed() => return Ok(()),
                message = self.stream.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            return Err(Error::Engine(format!(
                                "etcd: {}: the stream ended",
                                what()
                            )));
                        }
                        Err(error) => return Err(engine(&what(), &error)),
                    };
                    if response.canceled() {
                        return Err(cancellation(&response, self.seen, &what()));
                    }
                    if !self.deliver(&response).await? {
                        return Ok(());
                    }
                    idle.as_mut().reset(Instant::now() + self.progress_interval);
                }
                () = &mut idle => {
                    // etcd answers with an empty response at its current revision.
                    self.stream
                        .request_progress()
                        .await
                        .map_err(|e| engine(&format!("progress request of {}", what()), &e))?;
                    idle.as_mut().reset(Instant::now() + self.progress_interval);
                }
            }
        }
    }

    /// Sends a response's events (or the progress an empty one reports); `false` once the
    /// consumer is gone.
    async fn deliver(&mut self, response: &WatchResponse) -> Result<bool, Error> {
        if response.events().is_empty() {
            if response.created() {
                return Ok(true);
            }
            let revision = header_revision(response.header(), "watch progress")?;
            // etcd 3.4 answers a progress request at once even while a watch is still
            // replaying history; a progress behind an event already sent says nothing.
            if revision < self.seen {
                return Ok(true);
            }
            self.seen = revision;
            return Ok(self
                .out
                .send(Ok(Event::Progress { revision }))
                .await
                .is_ok());
        }
        for event in response.events() {
            let event = self.keys.event(event)?;
            self.seen = event.revision();
            if self.out.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
