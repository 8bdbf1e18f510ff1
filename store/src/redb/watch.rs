//! Watches: replay the event log from disk, then follow the live broadcast.
//!
//! A watch subscribes to the broadcast before it reads the log. Every revision committed after
//! its log read is then in the broadcast, every one before it in the log, and the revisions in
//! both are skipped by number: no gap, no duplicate. A watch that falls behind the broadcast's
//! buffer reads the log again from its last revision, so a slow watcher gets every event (or
//! [`Error::Compacted`] if compaction overtook it, when it must re-list as with etcd).

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use tokio::{
    sync::{
        broadcast::{self, error::RecvError, error::TryRecvError},
        mpsc,
    },
    time::Instant,
};

use super::{Inner, Published};
use crate::{Error, Event, Revision};

/// What a watch's task needs to follow the store.
pub(super) struct Watcher {
    /// The store, held weakly so that an open watch does not keep the file open.
    pub(super) inner: Weak<Inner>,
    pub(super) prefix: String,
    /// Every revision up to this one has been delivered (or had nothing under the prefix).
    pub(super) seen: Revision,
    pub(super) live: broadcast::Receiver<Arc<Published>>,
    pub(super) out: mpsc::Sender<Result<Event, Error>>,
    pub(super) progress_interval: Duration,
}

/// Why a watch task stops.
enum Stop {
    /// The consumer dropped the stream.
    Dropped,
    /// The watch failed; the error has to reach the consumer.
    Failed(Error),
}

impl Watcher {
    /// Runs the watch until its consumer goes away or it fails.
    pub(super) async fn run(mut self) {
        let outcome = async {
            self.replay().await?;
            self.follow().await
        }
        .await;
        if let Err(Stop::Failed(error)) = outcome {
            // The consumer may be gone too; nothing else to tell.
            let _ = self.out.send(Err(error)).await;
        }
    }

    fn store(&self) -> Result<Arc<Inner>, Stop> {
        self.inner.upgrade().ok_or_else(|| self.closed())
    }

    /// The store went away (its broadcast ends with it).
    fn closed(&self) -> Stop {
        Stop::Failed(Error::Engine(format!(
            "redb: watch of {}: the store was closed",
            self.prefix
        )))
    }

    async fn send(&self, event: Event) -> Result<(), Stop> {
        self.out.send(Ok(event)).await.map_err(|_| Stop::Dropped)
    }

    /// Delivers every logged event after `seen`, from disk.
    async fn replay(&mut self) -> Result<(), Stop> {
        loop {
            let inner = self.store()?;
            let prefix = self.prefix.clone();
            let after = self.seen;
            let chunk = tokio::task::spawn_blocking(move || inner.read_log(&prefix, after))
                .await
                .map_err(|e| {
                    Stop::Failed(Error::Engine(format!(
                        "redb: replay of {} after revision {after}: task failed: {e}",
                        self.prefix
                    )))
                })?
                .map_err(Stop::Failed)?;
            for event in chunk.events {
                self.send(event).await?;
            }
            self.seen = chunk.through;
            if chunk.done {
                return Ok(());
            }
        }
    }

    /// Delivers the live broadcast's revisions after `seen`, and progress when idle.
    async fn follow(&mut self) -> Result<(), Stop> {
        let idle = tokio::time::sleep(self.progress_interval);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = self.out.closed() => return Err(Stop::Dropped),
                received = self.live.recv() => {
                    if self.receive(received).await? {
                        idle.as_mut().reset(Instant::now() + self.progress_interval);
                    }
                }
                () = &mut idle => {
                    self.progress().await?;
                    idle.as_mut().reset(Instant::now() + self.progress_interval);
                }
            }
        }
    }

    /// Handles one broadcast outcome; says whether an event was delivered.
    async fn receive(&mut self, received: Result<Arc<Published>, RecvError>) -> Result<bool, Stop> {
        match received {
            Ok(published) => self.deliver(&published).await,
            Err(RecvError::Lagged(_)) => {
                // The broadcast dropped revisions this watch had not taken: they are on disk.
                self.replay().await?;
                Ok(true)
            }
            Err(RecvError::Closed) => Err(self.closed()),
        }
    }

    async fn deliver(&mut self, published: &Published) -> Result<bool, Stop> {
        if published.revision <= self.seen {
            return Ok(false);
        }
        let mut delivered = false;
        for event in &published.events {
            if event.key().is_some_and(|key| key.starts_with(&self.prefix)) {
                self.send(event.clone()).await?;
                delivered = true;
            }
        }
        self.seen = published.revision;
        Ok(delivered)
    }

    /// Tells the consumer that nothing under the prefix changed up to the current revision.
    async fn progress(&mut self) -> Result<(), Stop> {
        // The store publishes a revision's events before making it current, so once the
        // broadcast is drained every revision up to `current` has been seen.
        let current = self.store()?.revision.load(Ordering::Acquire);
        loop {
            match self.live.try_recv() {
                Ok(published) => {
                    self.deliver(&published).await?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(_)) => self.replay().await?,
                Err(TryRecvError::Closed) => return Err(self.closed()),
            }
        }
        // A watch that started past the current revision has nothing to report yet.
        if current >= self.seen {
            self.seen = current;
            self.send(Event::Progress { revision: current }).await?;
        }
        Ok(())
    }
}
