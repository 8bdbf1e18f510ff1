//! Watch caches on kube-rs that wake a reconciler. Every loop in Strait that follows the API
//! (the agent's services, routes and pods; the controllers and the scheduler in
//! `strait-control`) is the same shape: reflectors keep caches of some kinds, any event wakes
//! one `Notify`, and the loop then recomputes from the caches. This is that shape, once.

use std::{fmt::Debug, hash::Hash, sync::Arc};

use futures::StreamExt as _;
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt as _, reflector,
        reflector::{Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// Feeds `writer` from a watch of `api` (retried with backoff) and wakes `wake` on every
/// event; an error is logged with `what`. Runs until dropped.
pub async fn feed<K>(
    writer: Writer<K>,
    api: Api<K>,
    config: watcher::Config,
    wake: Arc<Notify>,
    what: &'static str,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    reflector(writer, watcher(api, config))
        .default_backoff()
        .for_each(move |event| {
            if let Err(error) = event {
                tracing::warn!(%error, watch = what, "watch failed; retrying");
            }
            wake.notify_one();
            futures::future::ready(())
        })
        .await;
}

/// A cache of every `K` the API shows through `api`, and the future that keeps it (run it
/// beside the loop that reads the cache).
pub fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    wake: &Arc<Notify>,
    what: &'static str,
) -> (Store<K>, impl Future<Output = ()> + Send + use<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store::<K>();
    (store, feed(writer, api, config, Arc::clone(wake), what))
}
