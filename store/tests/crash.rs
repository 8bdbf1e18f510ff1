//! `kill -9` during a stream of writes loses no acknowledged write, on both engines.
//!
//! The test runs itself as a writer child (when [`CHILD_ENGINE`] is set): it creates keys 0, 1,
//! 2, … one transaction each and prints each number once the store said `Committed`. The parent
//! reads those acknowledgements, kills with SIGKILL at an arbitrary moment (the writer for redb,
//! the etcd server for etcd), reopens the store and checks that every acknowledged key is there
//! with its value. Several rounds run on the same file or data directory.

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, ExitCode, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use strait_store::{
    Condition, EtcdStore, Op, RangeRequest, RedbOptions, RedbStore, Store, Txn, TxnOutcome,
};

/// Set in the writer child: which engine to write to ("redb" or "etcd").
const CHILD_ENGINE: &str = "STRAIT_STORE_CRASH_ENGINE";
/// The redb file or etcd endpoint the child writes to.
const CHILD_TARGET: &str = "STRAIT_STORE_CRASH_TARGET";
/// The first key number the child writes.
const CHILD_START: &str = "STRAIT_STORE_CRASH_START";

/// Where the keys live (and the etcd prefix).
const PREFIX: &str = "/crash/";

/// How many acknowledgements each round waits for before killing.
const ROUNDS: [u64; 3] = [40, 120, 250];

/// How long anything may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

fn key(number: u64) -> String {
    format!("{PREFIX}{number:08}")
}

fn value(number: u64) -> Vec<u8> {
    format!("value-{number}").into_bytes()
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Ok(engine) = std::env::var(CHILD_ENGINE) {
        return runtime.block_on(writer(&engine));
    }
    let outcome = runtime.block_on(async {
        redb_scenario().await?;
        eprintln!("crash test: redb passed");
        etcd_scenario().await?;
        eprintln!("crash test: etcd passed");
        Ok::<(), String>(())
    });
    match outcome {
        Ok(()) => {
            println!("crash test: ok (redb and etcd lost no acknowledged write)");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("crash test FAILED: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// The child: writes keys until killed (or the store fails), acknowledging each on stdout.
async fn writer(engine: &str) -> ExitCode {
    let target = std::env::var(CHILD_TARGET).expect("the crash target is set");
    let start: u64 = std::env::var(CHILD_START)
        .expect("the start is set")
        .parse()
        .expect("the start is a number");
    let store: Box<dyn Store> = match engine {
        "redb" => Box::new(
            RedbStore::open_with(target.as_ref(), RedbOptions::default())
                .expect("the writer opens the redb file"),
        ),
        _ => Box::new(
            EtcdStore::connect(&[target], PREFIX)
                .await
                .expect("the writer connects to etcd"),
        ),
    };
    let mut stdout = std::io::stdout().lock();
    for number in start.. {
        let txn = Txn {
            conditions: vec![(key(number), Condition::Absent)],
            ops: vec![Op::Put {
                key: key(number),
                value: value(number),
                lease: 0,
            }],
        };
        match store.txn(txn).await {
            Ok(TxnOutcome::Committed { .. }) => {
                if writeln!(stdout, "{number}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return ExitCode::from(3);
                }
            }
            Ok(failed) => {
                eprintln!("writer: key {number} already exists: {failed:?}");
                return ExitCode::from(4);
            }
            Err(error) => {
                // Expected once etcd is killed.
                eprintln!("writer: write of key {number} failed: {error}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

/// A writer child and the thread collecting its acknowledgements.
struct Writer {
    child: Child,
    acks: mpsc::Receiver<u64>,
    reader: JoinHandle<()>,
}

impl Writer {
    fn spawn(engine: &str, target: &str, start: u64) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut child = Command::new(exe)
            .env(CHILD_ENGINE, engine)
            .env(CHILD_TARGET, target)
            .env(CHILD_START, start.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn of the writer: {e}"))?;
        let stdout = child.stdout.take().ok_or("the writer's stdout")?;
        let (sender, acks) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A line cut by the kill is not an acknowledgement.
                if let Ok(number) = line.trim().parse::<u64>()
                    && sender.send(number).is_err()
                {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            acks,
            reader,
        })
    }

    /// Waits until `count` writes were acknowledged.
    fn wait_for_acks(&self, count: u64, acked: &mut Vec<u64>) -> Result<(), String> {
        while (acked.len() as u64) < count {
            let number = self.acks.recv_timeout(PATIENCE).map_err(|_| {
                format!(
                    "the writer acknowledged {} writes, not {count}, within {PATIENCE:?}",
                    acked.len()
                )
            })?;
            acked.push(number);
        }
        Ok(())
    }

    /// Waits for the writer to exit (killing it if it does not) and collects every
    /// acknowledgement it printed.
    fn finish(mut self, acked: &mut Vec<u64>) -> Result<(), String> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("wait for the writer: {e}")),
            }
        }
        self.reader
            .join()
            .map_err(|_| "the acknowledgement reader panicked".to_owned())?;
        acked.extend(self.acks.try_iter());
        Ok(())
    }

    fn kill(&mut self) {
        // SIGKILL: no chance to flush or close anything.
        let _ = self.child.kill();
    }
}

/// A pause of up to 20 ms, different each time, so that the kill lands anywhere in a write.
fn jitter() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    Duration::from_micros(u64::from(nanos % 20_000))
}

/// Checks that every acknowledged key is in the store with its value; returns how many keys
/// the store holds (the next writer starts there).
async fn verify(
    store: &dyn Store,
    acked: &[u64],
    engine: &str,
    round: usize,
) -> Result<u64, String> {
    let response = store
        .range(RangeRequest {
            prefix: PREFIX.to_owned(),
            ..RangeRequest::default()
        })
        .await
        .map_err(|e| format!("{engine} round {round}: read after the crash: {e}"))?;
    let present: std::collections::HashMap<_, _> = response
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    for number in acked {
        match present.get(&key(*number)) {
            Some(found) if *found == value(*number) => {}
            Some(found) => {
                return Err(format!(
                    "{engine} round {round}: acknowledged key {} holds {:?}, not {:?}",
                    key(*number),
                    String::from_utf8_lossy(found),
                    String::from_utf8_lossy(&value(*number))
                ));
            }
            None => {
                return Err(format!(
                    "{engine} round {round}: acknowledged key {} is lost ({} of {} acknowledged keys present)",
                    key(*number),
                    acked
                        .iter()
                        .filter(|n| present.contains_key(&key(**n)))
                        .count(),
                    acked.len()
                ));
            }
        }
    }
    // Keys are written in order, so the store holds 0..n with no hole.
    let held = present.len() as u64;
    if (0..held).any(|number| !present.contains_key(&key(number))) {
        return Err(format!("{engine} round {round}: the keys have a hole"));
    }
    eprintln!(
        "crash test: {engine} round {round}: {} acknowledged, {held} present",
        acked.len()
    );
    Ok(held)
}

/// Kills the writer process in the middle of its writes to the redb file.
async fn redb_scenario() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let path = dir.path().join("store.redb");
    let target = path.to_str().ok_or("a UTF-8 temporary path")?.to_owned();
    let mut acked = Vec::new();
    let mut next = 0;
    for (round, count) in ROUNDS.into_iter().enumerate() {
        let mut writer = Writer::spawn("redb", &target, next)?;
        let mut this_round = Vec::new();
        writer.wait_for_acks(count, &mut this_round)?;
        std::thread::sleep(jitter());
        writer.kill();
        writer.finish(&mut this_round)?;
        acked.extend(this_round);
        let store = RedbStore::open(&path)
            .map_err(|e| format!("redb round {round}: reopen after kill -9: {e}"))?;
        next = verify(&store, &acked, "redb", round).await?;
    }
    Ok(())
}

/// Kills the etcd server (SIGKILL) in the middle of a writer's stream, restarts it on the same
/// data directory and checks nothing acknowledged was lost.
async fn etcd_scenario() -> Result<(), String> {
    let mut etcd = support::Etcd::start().await;
    let mut acked = Vec::new();
    let mut next = 0;
    for (round, count) in ROUNDS.into_iter().enumerate() {
        let writer = Writer::spawn("etcd", &etcd.endpoint(), next)?;
        let mut this_round = Vec::new();
        writer.wait_for_acks(count, &mut this_round)?;
        std::thread::sleep(jitter());
        etcd.kill();
        // The writer fails on its next write; a writer stuck on a dead connection is killed.
        writer.finish(&mut this_round)?;
        acked.extend(this_round);
        etcd.restart().await;
        let store = EtcdStore::connect(&etcd.endpoints(), PREFIX)
            .await
            .map_err(|e| format!("etcd round {round}: reconnect after kill -9: {e}"))?;
        next = verify(&store, &acked, "etcd", round).await?;
    }
    Ok(())
}
