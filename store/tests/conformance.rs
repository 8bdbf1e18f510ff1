//! The behaviour every [`Store`] engine must have, written once and run against each engine:
//! redb on a temporary file and etcd started by the test (one etcd per test).

mod support;

use std::{path::Path, time::Duration};

use futures::StreamExt;
use strait_store::{
    Condition, Error, EtcdOptions, EtcdStore, Event, KeyValue, Op, RangeRequest, RedbOptions,
    RedbStore, Revision, Store, Txn, TxnOutcome, WatchStream,
};
use tempfile::TempDir;
use tokio::time::Instant;

/// How long a watch may stay quiet before it reports progress, in these tests.
const PROGRESS: Duration = Duration::from_millis(300);

/// How long anything awaited may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

fn redb_options() -> RedbOptions {
    RedbOptions {
        progress_interval: PROGRESS,
        cache_size: 4 << 20,
        ..RedbOptions::default()
    }
}

async fn redb_store() -> (RedbStore, TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = RedbStore::open_with(&dir.path().join("store.redb"), redb_options())
        .expect("the redb store opens");
    (store, dir)
}

async fn etcd_store() -> (EtcdStore, support::Etcd) {
    let etcd = support::Etcd::start().await;
    let store = etcd_store_on(&etcd, "/conformance/").await;
    (store, etcd)
}

async fn etcd_store_on(etcd: &support::Etcd, prefix: &str) -> EtcdStore {
    let options = EtcdOptions {
        progress_interval: PROGRESS,
        ..EtcdOptions::default()
    };
    EtcdStore::connect_with(&etcd.endpoints(), prefix, options)
        .await
        .expect("the etcd store connects")
}

/// Instantiates each behaviour test for both engines.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redb_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = super::redb_store().await;
                    super::$name(&store).await;
                }
            )*
        }
        mod etcd_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _etcd) = super::etcd_store().await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}

conformance!(
    create_if_absent_conflicts,
    cas_update,
    delete_with_condition,
    failed_condition_writes_nothing,
    multi_op_txn_is_atomic,
    range_prefix_limit_start_after,
    range_at_past_revision,
    range_at_future_revision_fails,
    compaction_refuses_old_reads_and_watches,
    watch_replays_then_follows,
    watch_filters_by_prefix,
    watch_reports_progress_when_idle,
    lease_expiry_deletes_keys,
    lease_revoke_deletes_keys,
    lease_keep_alive_keeps_keys,
    unknown_lease_errors,
    count_counts_a_prefix,
    revisions_increase,
    unlimited_range_returns_every_key,
);

// --- helpers ---

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
        lease: 0,
    }
}

fn delete(key: &str) -> Op {
    Op::Delete {
        key: key.to_owned(),
    }
}

async fn commit(store: &dyn Store, conditions: Vec<(&str, Condition)>, ops: Vec<Op>) -> Revision {
    let txn = Txn {
        conditions: conditions
            .into_iter()
            .map(|(key, condition)| (key.to_owned(), condition))
            .collect(),
        ops,
    };
    match store.txn(txn.clone()).await.expect("the txn runs") {
        TxnOutcome::Committed { revision } => revision,
        failed => panic!("txn {txn:?} should commit, got {failed:?}"),
    }
}

/// Sets a key unconditionally; returns the revision.
async fn set(store: &dyn Store, key: &str, value: &str) -> Revision {
    commit(store, vec![], vec![put(key, value)]).await
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    store.get(key).await.expect("the read runs")
}

async fn value(store: &dyn Store, key: &str) -> Option<String> {
    get(store, key)
        .await
        .map(|kv| String::from_utf8(kv.value).expect("test values are UTF-8"))
}

async fn keys(store: &dyn Store, request: RangeRequest) -> (Vec<String>, bool) {
    let response = store.range(request.clone()).await.expect("the range runs");
    (
        response.kvs.into_iter().map(|kv| kv.key).collect(),
        response.more,
    )
}

fn range(prefix: &str) -> RangeRequest {
    RangeRequest {
        prefix: prefix.to_owned(),
        ..RangeRequest::default()
    }
}

/// The next change on a watch, skipping progress events.
async fn next_change(watch: &mut WatchStream) -> Event {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let next = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("a watch event within the deadline")
            .expect("the watch is still open")
            .expect("the watch has not failed");
        if !matches!(next, Event::Progress { .. }) {
            return next;
        }
    }
}

async fn next_changes(watch: &mut WatchStream, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_change(watch).await);
    }
    events
}

/// (key, value or None for a delete, revision) of an event, with its previous value.
fn summary(event: &Event) -> (String, Option<String>, Revision, Option<String>) {
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).expect("test values are UTF-8");
    match event {
        Event::Put { kv, prev } => (
            kv.key.clone(),
            Some(text(&kv.value)),
            kv.mod_revision,
            prev.as_ref().map(|prev| text(&prev.value)),
        ),
        Event::Delete { prev, revision } => {
            (prev.key.clone(), None, *revision, Some(text(&prev.value)))
        }
        Event::Progress { revision } => (String::new(), None, *revision, None),
    }
}

/// Polls until `check` holds, failing after [`PATIENCE`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- behaviour ---

async fn create_if_absent_conflicts(store: &dyn Store) {
    let created = commit(store, vec![("/a", Condition::Absent)], vec![put("/a", "1")]).await;
    let again = Txn {
        conditions: vec![("/a".to_owned(), Condition::Absent)],
        ops: vec![put("/a", "2")],
    };
    match store.txn(again).await.expect("the txn runs") {
        TxnOutcome::ConditionFailed { key, current } => {
            assert_eq!(key, "/a");
            let current = current.expect("the conflicting key is reported with its value");
            assert_eq!(current.value, b"1");
            assert_eq!(current.mod_revision, created);
            assert_eq!(current.create_revision, created);
        }
        outcome => panic!("a second create must conflict, got {outcome:?}"),
    }
    assert_eq!(value(store, "/a").await.as_deref(), Some("1"));
}

async fn cas_update(store: &dyn Store) {
    let created = set(store, "/k", "v1").await;
    let updated = commit(
        store,
        vec![("/k", Condition::ModRevision(created))],
        vec![put("/k", "v2")],
    )
    .await;
    assert!(updated > created, "an update gets a newer revision");
    let kv = get(store, "/k").await.expect("the key exists");
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (b"v2".as_slice(), created, updated),
        "an update keeps the create revision and moves the mod revision"
    );

    let stale = Txn {
        conditions: vec![("/k".to_owned(), Condition::ModRevision(created))],
        ops: vec![put("/k", "v3")],
    };
    match store.txn(stale).await.expect("the txn runs") {
        TxnOutcome::ConditionFailed { key, current } => {
            assert_eq!(key, "/k");
            assert_eq!(current.map(|kv| kv.mod_revision), Some(updated));
        }
        outcome => panic!("a stale update must fail, got {outcome:?}"),
    }

    // Exists: holds on an existing key, fails on an absent one (reported as absent).
    commit(
        store,
        vec![("/k", Condition::Exists)],
        vec![put("/k", "v4")],
    )
    .await;
    let on_absent = Txn {
        conditions: vec![("/nothing".to_owned(), Condition::Exists)],
        ops: vec![put("/nothing", "x")],
    };
    assert_eq!(
        store.txn(on_absent).await.expect("the txn runs"),
        TxnOutcome::ConditionFailed {
            key: "/nothing".to_owned(),
            current: None
        }
    );
    // A mod revision condition on an absent key fails too.
    let on_absent = Txn {
        conditions: vec![("/nothing".to_owned(), Condition::ModRevision(0))],
        ops: vec![put("/nothing", "x")],
    };
    assert!(matches!(
        store.txn(on_absent).await.expect("the txn runs"),
        TxnOutcome::ConditionFailed { .. }
    ));
    assert_eq!(value(store, "/nothing").await, None);
    assert_eq!(value(store, "/k").await.as_deref(), Some("v4"));
}

async fn delete_with_condition(store: &dyn Store) {
    let created = set(store, "/d", "x").await;
    let wrong = Txn {
        conditions: vec![("/d".to_owned(), Condition::ModRevision(created + 100))],
        ops: vec![delete("/d")],
    };
    assert!(matches!(
        store.txn(wrong).await.expect("the txn runs"),
        TxnOutcome::ConditionFailed { .. }
    ));
    assert_eq!(value(store, "/d").await.as_deref(), Some("x"));

    let deleted = commit(
        store,
        vec![("/d", Condition::ModRevision(created))],
        vec![delete("/d")],
    )
    .await;
    assert!(deleted > created);
    assert_eq!(get(store, "/d").await, None);

    // Deleting an absent key is not an error, writes nothing and bumps nothing.
    let current = store.current_revision().await.expect("the revision reads");
    let noop = commit(store, vec![], vec![delete("/d")]).await;
    assert_eq!(
        noop, current,
        "a txn that changes nothing commits at the current revision"
    );
    assert_eq!(
        store.current_revision().await.expect("the revision reads"),
        current
    );

    // A re-created key gets a new create revision.
    let recreated = set(store, "/d", "y").await;
    let kv = get(store, "/d").await.expect("the key exists again");
    assert_eq!(
        (kv.create_revision, kv.mod_revision),
        (recreated, recreated)
    );
}

async fn failed_condition_writes_nothing(store: &dyn Store) {
    set(store, "/b", "exists").await;
    let before = store.current_revision().await.expect("the revision reads");
    let txn = Txn {
        conditions: vec![
            ("/a".to_owned(), Condition::Absent),
            ("/b".to_owned(), Condition::Absent),
        ],
        ops: vec![put("/a", "1"), put("/c", "1"), delete("/b")],
    };
    match store.txn(txn).await.expect("the txn runs") {
        TxnOutcome::ConditionFailed { key, current } => {
            assert_eq!(key, "/b", "the first failing condition is reported");
            assert_eq!(
                current.map(|kv| kv.value),
                Some(b"exists".to_vec()),
                "with what the key holds"
            );
        }
        outcome => panic!("the txn must fail on /b, got {outcome:?}"),
    }
    assert_eq!(get(store, "/a").await, None);
    assert_eq!(get(store, "/c").await, None);
    assert_eq!(value(store, "/b").await.as_deref(), Some("exists"));
    assert_eq!(
        store.current_revision().await.expect("the revision reads"),
        before,
        "a failed txn does not bump the revision"
    );
}

async fn multi_op_txn_is_atomic(store: &dyn Store) {
    set(store, "/m/old", "x").await;
    let revision = commit(
        store,
        vec![("/m/x", Condition::Absent), ("/m/old", Condition::Exists)],
        vec![put("/m/x", "1"), put("/m/y", "2"), delete("/m/old")],
    )
    .await;
    let response = store.range(range("/m/")).await.expect("the range runs");
    let seen: Vec<_> = response
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    assert_eq!(
        seen,
        vec![("/m/x", revision), ("/m/y", revision)],
        "every write of a txn lands at one revision"
    );

    // A txn writing one key twice is refused by both engines, and writes nothing.
    let twice = Txn {
        conditions: vec![],
        ops: vec![put("/m/z", "1"), put("/m/z", "2")],
    };
    assert!(store.txn(twice).await.is_err());
    assert_eq!(get(store, "/m/z").await, None);
}

async fn range_prefix_limit_start_after(store: &dyn Store) {
    for key in ["/r/d", "/r/b", "/r/a", "/r/c", "/rx/e", "/q", "/r/"] {
        set(store, key, key).await;
    }
    let all = |keys: &[&str]| keys.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        keys(store, range("/r/")).await,
        (all(&["/r/", "/r/a", "/r/b", "/r/c", "/r/d"]), false),
        "a prefix range is in key order and includes the key equal to the prefix"
    );
    assert_eq!(
        keys(store, range("/r")).await,
        (
            all(&["/r/", "/r/a", "/r/b", "/r/c", "/r/d", "/rx/e"]),
            false
        )
    );
    let page = |start_after: Option<&str>, limit| RangeRequest {
        prefix: "/r/".to_owned(),
        start_after: start_after.map(str::to_owned),
        limit: Some(limit),
        revision: 0,
    };
    assert_eq!(
        keys(store, page(None, 2)).await,
        (all(&["/r/", "/r/a"]), true)
    );
    assert_eq!(
        keys(store, page(Some("/r/a"), 2)).await,
        (all(&["/r/b", "/r/c"]), true)
    );
    assert_eq!(
        keys(store, page(Some("/r/c"), 2)).await,
        (all(&["/r/d"]), false),
        "start_after is exclusive and the last page has no more"
    );
    assert_eq!(
        keys(store, page(Some("/r/b"), 2)).await,
        (all(&["/r/c", "/r/d"]), false),
        "a page ending exactly at the last key has no more"
    );
    assert_eq!(keys(store, page(Some("/r/d"), 2)).await, (vec![], false));
    assert_eq!(
        keys(store, page(Some("/r/bb"), 10)).await,
        (all(&["/r/c", "/r/d"]), false),
        "start_after need not be a key"
    );
    assert_eq!(
        keys(store, page(Some("/a"), 1)).await,
        (all(&["/r/"]), true),
        "a start_after before the prefix starts at the prefix"
    );
    assert_eq!(
        keys(store, page(Some("/s"), 2)).await,
        (vec![], false),
        "a start_after past the prefix finds nothing"
    );
    assert_eq!(keys(store, range("/nothing/")).await, (vec![], false));
    assert_eq!(
        value(store, "/r/").await.as_deref(),
        Some("/r/"),
        "get reads exactly one key"
    );
    assert_eq!(get(store, "/r").await, None, "get does not match by prefix");
    let response = store.range(range("/r/")).await.expect("the range runs");
    assert_eq!(
        response.revision,
        store.current_revision().await.expect("the revision reads"),
        "a current read reports the current revision"
    );
    let kv = &response.kvs[1];
    assert_eq!(
        (kv.key.as_str(), kv.value.as_slice()),
        ("/r/a", b"/r/a".as_slice())
    );
}

async fn range_at_past_revision(store: &dyn Store) {
    let r1 = set(store, "/p/a", "a1").await;
    let r2 = set(store, "/p/b", "b1").await;
    let r3 = set(store, "/p/a", "a2").await;
    let r4 = commit(store, vec![], vec![delete("/p/b")]).await;
    let r5 = set(store, "/p/c", "c1").await;
    set(store, "/p/b", "b2").await;

    let at = |revision| RangeRequest {
        prefix: "/p/".to_owned(),
        revision,
        ..RangeRequest::default()
    };
    let state = |response: strait_store::RangeResponse| {
        response
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    kv.key,
                    String::from_utf8(kv.value).expect("test values are UTF-8"),
                    kv.mod_revision,
                )
            })
            .collect::<Vec<_>>()
    };
    let s = |key: &str, value: &str, revision| (key.to_owned(), value.to_owned(), revision);
    let read = |revision| async move { store.range(at(revision)).await.expect("the range runs") };

    assert_eq!(state(read(r1).await), vec![s("/p/a", "a1", r1)]);
    assert_eq!(
        state(read(r2).await),
        vec![s("/p/a", "a1", r1), s("/p/b", "b1", r2)]
    );
    assert_eq!(
        state(read(r3).await),
        vec![s("/p/a", "a2", r3), s("/p/b", "b1", r2)]
    );
    assert_eq!(state(read(r4).await), vec![s("/p/a", "a2", r3)]);
    let at_r5 = read(r5).await;
    assert_eq!(at_r5.revision, r5, "a past read reports its revision");
    assert_eq!(state(at_r5), vec![s("/p/a", "a2", r3), s("/p/c", "c1", r5)]);

    // Paginating at a fixed revision, as API lists do.
    let first = store
        .range(RangeRequest {
            limit: Some(1),
            ..at(r3)
        })
        .await
        .expect("the range runs");
    assert!(first.more);
    assert_eq!(state(first), vec![s("/p/a", "a2", r3)]);
    let second = store
        .range(RangeRequest {
            limit: Some(1),
            start_after: Some("/p/a".to_owned()),
            ..at(r3)
        })
        .await
        .expect("the range runs");
    assert!(!second.more);
    assert_eq!(state(second), vec![s("/p/b", "b1", r2)]);
}

async fn range_at_future_revision_fails(store: &dyn Store) {
    let current = set(store, "/f", "x").await;
    let error = store
        .range(RangeRequest {
            prefix: "/".to_owned(),
            revision: current + 1000,
            ..RangeRequest::default()
        })
        .await
        .expect_err("a read in the future fails");
    assert!(
        matches!(error, Error::FutureRevision { requested, current: now } if requested == current + 1000 && now == current),
        "got {error:?}"
    );
}

async fn compaction_refuses_old_reads_and_watches(store: &dyn Store) {
    let r1 = set(store, "/c/a", "1").await;
    set(store, "/c/a", "2").await;
    let deleted = commit(store, vec![], vec![delete("/c/a")]).await;
    let kept = set(store, "/c/b", "1").await;
    let after = set(store, "/c/b", "2").await;

    store.compact(kept).await.expect("compaction runs");
    assert_eq!(
        store
            .compacted_revision()
            .await
            .expect("the compacted revision reads"),
        kept
    );

    let error = store
        .range(RangeRequest {
            prefix: "/c/".to_owned(),
            revision: r1,
            ..RangeRequest::default()
        })
        .await
        .expect_err("a read before the compacted revision fails");
    assert!(
        matches!(error, Error::Compacted { requested, compacted } if requested == r1 && compacted == kept),
        "got {error:?}"
    );
    // Reads at the compacted revision still work, and see the state at it.
    let at_kept = store
        .range(RangeRequest {
            prefix: "/c/".to_owned(),
            revision: kept,
            ..RangeRequest::default()
        })
        .await
        .expect("a read at the compacted revision works");
    assert_eq!(
        at_kept
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect::<Vec<_>>(),
        vec![("/c/b", b"1".as_slice())]
    );

    let Err(error) = store.watch("/c/", deleted).await else {
        panic!("a watch from before the compacted revision must fail");
    };
    assert!(
        matches!(error, Error::Compacted { requested, compacted } if requested == deleted && compacted == kept),
        "got {error:?}"
    );

    let mut watch = store
        .watch("/c/", kept)
        .await
        .expect("a watch from the compacted revision works");
    let event = next_change(&mut watch).await;
    assert_eq!(
        summary(&event),
        (
            "/c/b".to_owned(),
            Some("2".to_owned()),
            after,
            Some("1".to_owned())
        ),
        "the replay after compaction still has previous values"
    );

    // Compacting to an older revision again is a no-op; to the future is an error.
    store
        .compact(r1)
        .await
        .expect("an older compaction is a no-op");
    assert_eq!(
        store
            .compacted_revision()
            .await
            .expect("the compacted revision reads"),
        kept
    );
    assert!(matches!(
        store.compact(after + 1000).await,
        Err(Error::FutureRevision { .. })
    ));
}

async fn watch_replays_then_follows(store: &dyn Store) {
    let start = store.current_revision().await.expect("the revision reads");
    let r1 = set(store, "/w/a", "1").await;
    let r2 = set(store, "/w/a", "2").await;
    let r3 = commit(store, vec![], vec![delete("/w/a")]).await;

    let mut watch = store.watch("/w/", start).await.expect("the watch starts");
    let replayed = next_changes(&mut watch, 3).await;
    let s = |key: &str, value: Option<&str>, revision, prev: Option<&str>| {
        (
            key.to_owned(),
            value.map(str::to_owned),
            revision,
            prev.map(str::to_owned),
        )
    };
    assert_eq!(
        replayed.iter().map(summary).collect::<Vec<_>>(),
        vec![
            s("/w/a", Some("1"), r1, None),
            s("/w/a", Some("2"), r2, Some("1")),
            s("/w/a", None, r3, Some("2")),
        ],
        "the replay has every change since the revision, with previous values"
    );

    // Live changes follow, including a multi-key txn at one revision, in order.
    let r4 = set(store, "/w/b", "1").await;
    let r5 = commit(store, vec![], vec![put("/w/c", "1"), put("/w/b", "2")]).await;
    let r6 = commit(store, vec![], vec![delete("/w/b")]).await;
    let live = next_changes(&mut watch, 4).await;
    let summaries: Vec<_> = live.iter().map(summary).collect();
    assert_eq!(summaries[0], s("/w/b", Some("1"), r4, None));
    assert_eq!(summaries[3], s("/w/b", None, r6, Some("2")));
    let mut at_r5: Vec<_> = summaries[1..3].to_vec();
    at_r5.sort();
    assert_eq!(
        at_r5,
        vec![
            s("/w/b", Some("2"), r5, Some("1")),
            s("/w/c", Some("1"), r5, None)
        ]
    );
    if let Event::Delete { prev, .. } = &live[3] {
        assert_eq!(prev.mod_revision, r5, "a delete carries the last version");
    }

    // A watch from the current revision sees only what follows.
    let mut later = store.watch("/w/", r6).await.expect("the watch starts");
    let r7 = set(store, "/w/d", "1").await;
    assert_eq!(
        summary(&next_change(&mut later).await),
        s("/w/d", Some("1"), r7, None)
    );
    assert_eq!(
        summary(&next_change(&mut watch).await),
        s("/w/d", Some("1"), r7, None),
        "no gap and no duplicate between replay and live events"
    );
}

async fn watch_filters_by_prefix(store: &dyn Store) {
    let start = store.current_revision().await.expect("the revision reads");
    set(store, "/x/b/1", "no").await;
    let mine = set(store, "/x/a/1", "yes").await;
    set(store, "/x/ab", "no").await;
    let mut watch = store.watch("/x/a/", start).await.expect("the watch starts");
    let event = next_change(&mut watch).await;
    assert_eq!(event.revision(), mine);
    set(store, "/x/b/2", "no").await;
    let live = set(store, "/x/a/2", "yes").await;
    let event = next_change(&mut watch).await;
    assert_eq!(
        summary(&event),
        ("/x/a/2".to_owned(), Some("yes".to_owned()), live, None),
        "events outside the prefix are not delivered"
    );
}

async fn watch_reports_progress_when_idle(store: &dyn Store) {
    let start = store.current_revision().await.expect("the revision reads");
    let mut watch = store
        .watch("/quiet/", start)
        .await
        .expect("the watch starts");
    let elsewhere = set(store, "/loud/1", "x").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("a progress event within the deadline")
            .expect("the watch is open")
            .expect("the watch has not failed");
        match event {
            Event::Progress { revision } if revision >= elsewhere => break,
            Event::Progress { .. } => {}
            event => panic!("only progress is expected on a quiet prefix, got {event:?}"),
        }
    }
}

async fn lease_expiry_deletes_keys(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_secs(1))
        .await
        .expect("the lease is granted");
    let start = store.current_revision().await.expect("the revision reads");
    commit(
        store,
        vec![],
        vec![
            Op::Put {
                key: "/l/a".to_owned(),
                value: b"1".to_vec(),
                lease,
            },
            put("/l/b", "no lease"),
        ],
    )
    .await;
    assert_eq!(get(store, "/l/a").await.map(|kv| kv.lease), Some(lease));
    let mut watch = store.watch("/l/", start).await.expect("the watch starts");
    let _put_events = next_changes(&mut watch, 2).await;
    eventually("the leased key expires", || async move {
        get(store, "/l/a").await.is_none()
    })
    .await;
    match next_change(&mut watch).await {
        Event::Delete { prev, .. } => {
            assert_eq!((prev.key.as_str(), prev.lease), ("/l/a", lease));
        }
        event => panic!("expiry must produce a delete event, got {event:?}"),
    }
    assert_eq!(value(store, "/l/b").await.as_deref(), Some("no lease"));
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(Error::LeaseNotFound(id)) if id == lease
    ));
}

async fn lease_revoke_deletes_keys(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("the lease is granted");
    let leased = |key: &str| Op::Put {
        key: key.to_owned(),
        value: b"v".to_vec(),
        lease,
    };
    let start = commit(store, vec![], vec![leased("/v/a"), leased("/v/b")]).await;
    // Moving a key to no lease detaches it.
    set(store, "/v/b", "free").await;
    let mut watch = store.watch("/v/", start).await.expect("the watch starts");
    let _moved = next_change(&mut watch).await;
    store
        .revoke_lease(lease)
        .await
        .expect("the lease is revoked");
    assert_eq!(get(store, "/v/a").await, None);
    assert_eq!(value(store, "/v/b").await.as_deref(), Some("free"));
    match next_change(&mut watch).await {
        Event::Delete { prev, .. } => assert_eq!(prev.key, "/v/a"),
        event => panic!("revoking must produce a delete event, got {event:?}"),
    }
    assert!(matches!(
        store.revoke_lease(lease).await,
        Err(Error::LeaseNotFound(id)) if id == lease
    ));
}

async fn lease_keep_alive_keeps_keys(store: &dyn Store) {
    let lease = store
        .grant_lease(Duration::from_secs(2))
        .await
        .expect("the lease is granted");
    commit(
        store,
        vec![],
        vec![Op::Put {
            key: "/ka".to_owned(),
            value: b"1".to_vec(),
            lease,
        }],
    )
    .await;
    // Twice the TTL, renewing often: the key must survive.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        store.keep_alive(lease).await.expect("the lease is alive");
        assert!(get(store, "/ka").await.is_some(), "a kept-alive key stays");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually("the key expires once no longer kept alive", || async move {
        get(store, "/ka").await.is_none()
    })
    .await;
}

async fn unknown_lease_errors(store: &dyn Store) {
    let unknown = 0x5eed_0000_1234;
    assert!(matches!(
        store.keep_alive(unknown).await,
        Err(Error::LeaseNotFound(id)) if id == unknown
    ));
    assert!(matches!(
        store.revoke_lease(unknown).await,
        Err(Error::LeaseNotFound(id)) if id == unknown
    ));
    let txn = Txn {
        conditions: vec![],
        ops: vec![
            put("/u/a", "1"),
            Op::Put {
                key: "/u/b".to_owned(),
                value: b"1".to_vec(),
                lease: unknown,
            },
        ],
    };
    assert!(matches!(
        store.txn(txn).await,
        Err(Error::LeaseNotFound(id)) if id == unknown
    ));
    assert_eq!(
        get(store, "/u/a").await,
        None,
        "a refused txn writes nothing"
    );
}

async fn count_counts_a_prefix(store: &dyn Store) {
    assert_eq!(store.count("/n/").await.expect("the count runs"), 0);
    for key in ["/n/a", "/n/b", "/n/c", "/nx", "/m"] {
        set(store, key, "x").await;
    }
    commit(store, vec![], vec![delete("/n/b")]).await;
    assert_eq!(store.count("/n/").await.expect("the count runs"), 2);
    assert_eq!(store.count("/n").await.expect("the count runs"), 3);
    assert_eq!(store.count("").await.expect("the count runs"), 4);
}

async fn revisions_increase(store: &dyn Store) {
    let mut last = store.current_revision().await.expect("the revision reads");
    for i in 0..20 {
        let revision = set(store, &format!("/rev/{}", i % 3), "x").await;
        assert!(revision > last, "revision {revision} follows {last}");
        assert_eq!(
            store.current_revision().await.expect("the revision reads"),
            revision
        );
        last = revision;
    }
    // Concurrent writers get distinct revisions.
    let mut revisions = futures::future::join_all(
        (0..10).map(|i| async move { set(store, &format!("/rev/c{i}"), "x").await }),
    )
    .await;
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 10, "every commit gets its own revision");
    assert!(revisions[0] > last);
}

// --- redb only ---

/// Everything survives closing and reopening the file: keys, revisions, history, compaction,
/// the event log and leases (which restart with a full TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("store.redb");
    let (r1, r2, compacted, current, lease) = {
        let store = RedbStore::open_with(&path, redb_options()).expect("the store opens");
        let store: &dyn Store = &store;
        let r1 = set(store, "/o/a", "1").await;
        let r2 = set(store, "/o/a", "2").await;
        let compacted = set(store, "/o/b", "1").await;
        store.compact(compacted).await.expect("compaction runs");
        let lease = store
            .grant_lease(Duration::from_secs(2))
            .await
            .expect("the lease is granted");
        let current = commit(
            store,
            vec![],
            vec![
                Op::Put {
                    key: "/o/leased".to_owned(),
                    value: b"1".to_vec(),
                    lease,
                },
                delete("/o/b"),
            ],
        )
        .await;
        (r1, r2, compacted, current, lease)
    };
    // Longer than the lease's TTL: reopening must start its clock afresh.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let store = reopen(&path);
    let store: &dyn Store = &store;
    assert_eq!(store.current_revision().await.expect("reads"), current);
    assert_eq!(store.compacted_revision().await.expect("reads"), compacted);
    assert_eq!(value(store, "/o/a").await.as_deref(), Some("2"));
    assert_eq!(get(store, "/o/b").await, None);
    assert!(
        get(store, "/o/leased").await.is_some(),
        "a lease gets a fresh TTL after reopening"
    );
    let at_compacted = store
        .range(RangeRequest {
            prefix: "/o/".to_owned(),
            revision: compacted,
            ..RangeRequest::default()
        })
        .await
        .expect("a read at the compacted revision works");
    assert_eq!(at_compacted.kvs.len(), 2);
    assert!(matches!(
        store
            .range(RangeRequest {
                prefix: "/o/".to_owned(),
                revision: r1,
                ..RangeRequest::default()
            })
            .await,
        Err(Error::Compacted { .. })
    ));
    assert!(r2 < compacted);
    let mut watch = store
        .watch("/o/", compacted)
        .await
        .expect("the watch starts");
    let replayed = next_changes(&mut watch, 2).await;
    assert!(replayed.iter().all(|event| event.revision() == current));
    let next = set(store, "/o/c", "1").await;
    assert_eq!(next, current + 1, "revisions continue after reopening");
    assert_eq!(next_change(&mut watch).await.revision(), next);
    store.keep_alive(lease).await.expect("the lease survived");
    eventually(
        "the leased key expires after its fresh TTL",
        || async move { get(store, "/o/leased").await.is_none() },
    )
    .await;
}

fn reopen(path: &Path) -> RedbStore {
    RedbStore::open_with(path, redb_options()).expect("the store reopens")
}

/// A watcher that reads nothing while many transactions commit falls behind the broadcast; it
/// must still get every event, in order, by re-reading the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_slow_watcher_loses_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = RedbOptions {
        watch_buffer: 4,
        watch_queue: 2,
        ..redb_options()
    };
    let store =
        RedbStore::open_with(&dir.path().join("store.redb"), options).expect("the store opens");
    let store: &dyn Store = &store;
    let start = store.current_revision().await.expect("reads");
    let mut watch = store.watch("/s/", start).await.expect("the watch starts");
    let mut written = Vec::new();
    for i in 0..300 {
        written.push(set(store, &format!("/s/{i:03}"), "x").await);
        if i % 50 == 0 {
            // Let the watch task run and fall behind for real.
            tokio::task::yield_now().await;
        }
    }
    let events = next_changes(&mut watch, 300).await;
    let revisions: Vec<_> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions, written, "every event once, in order");
}

/// Two stores with different prefixes share one etcd without seeing each other's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixes_isolate_stores() {
    let etcd = support::Etcd::start().await;
    let one = etcd_store_on(&etcd, "/cluster-one").await;
    let two = etcd_store_on(&etcd, "/cluster-two").await;
    let start = two.current_revision().await.expect("reads");
    let mut watch = two.watch("/", start).await.expect("the watch starts");
    set(&one, "/k", "one").await;
    let mine = set(&two, "/k", "two").await;
    assert_eq!(value(&one, "/k").await.as_deref(), Some("one"));
    assert_eq!(value(&two, "/k").await.as_deref(), Some("two"));
    assert_eq!(keys(&two, range("")).await, (vec!["/k".to_owned()], false));
    assert_eq!(two.count("").await.expect("counts"), 1);
    let event = next_change(&mut watch).await;
    assert_eq!(
        summary(&event),
        ("/k".to_owned(), Some("two".to_owned()), mine, None),
        "the other prefix's write is not seen, and keys come back without the prefix"
    );
}

/// A range without a limit returns every key, however many (etcd pages it: one gRPC message
/// for all of them would pass the 4 MiB default), all at one revision.
async fn unlimited_range_returns_every_key(store: &dyn Store) {
    // 2,500 keys of 2 KiB: more than two pages, and 5 MB in all.
    let value = "v".repeat(2048);
    for batch in 0..25 {
        let ops = (0..100)
            .map(|i| put(&format!("/many/{:05}", batch * 100 + i), &value))
            .collect();
        commit(store, Vec::new(), ops).await;
    }
    let before = store.current_revision().await.expect("revision");
    set(store, "/other", "x").await;
    let all = store
        .range(RangeRequest {
            prefix: "/many/".to_owned(),
            revision: before,
            ..RangeRequest::default()
        })
        .await
        .expect("range");
    assert_eq!(all.kvs.len(), 2500);
    assert!(!all.more);
    assert_eq!(all.revision, before, "one revision for the whole read");
    assert!(
        all.kvs.windows(2).all(|w| w[0].key < w[1].key),
        "in key order"
    );
}
