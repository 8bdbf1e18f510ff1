//! Cluster tier: kube-rs, the client every Strait component uses, against `strait-control`.
//! Its watcher must follow a namespace through watch timeouts and compactions (410 Gone, then
//! a re-list) and end with exactly what the API holds.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use strait_tests::ControlPlane;

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    Client::try_from(config).expect("a client")
}

fn configmap(name: &str, value: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([("n".to_owned(), value.to_string())].into()),
        ..ConfigMap::default()
    }
}

#[test]
fn watcher_follows_through_timeouts_and_compactions() {
    let plane = ControlPlane::start(Path::new(BIN), &["--compaction-interval", "1"]);
    let kubeconfig = plane.kubeconfig();
    plane.netns().run(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        runtime.block_on(async move {
            let client = client(&kubeconfig).await;
            let namespaces: Api<Namespace> = Api::all(client.clone());
            for name in ["watched", "busy"] {
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                };
                namespaces
                    .create(&PostParams::default(), &ns)
                    .await
                    .expect("create a namespace");
            }
            let watched: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
            let busy: Api<ConfigMap> = Api::namespaced(client.clone(), "busy");

            // Watches end every second, so the watcher resumes from its last version often.
            let (reader, writer) = reflector::store();
            let relists = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&relists);
            let stream = watcher(watched.clone(), watcher::Config::default().timeout(1))
                .map_ok(move |event| {
                    if matches!(event, watcher::Event::Init) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    event
                })
                .default_backoff()
                .reflect(writer)
                .applied_objects();
            let consumer = tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while stream.next().await.is_some() {}
            });

            // Phase 1: churn in the watched namespace.
            for i in 0..200 {
                let name = format!("cm-{}", i % 20);
                match watched.get_opt(&name).await.expect("get") {
                    Some(mut cm) => {
                        cm.data = Some([("n".to_owned(), i.to_string())].into());
                        watched
                            .replace(&name, &PostParams::default(), &cm)
                            .await
                            .expect("replace");
                    }
                    None => {
                        watched
                            .create(&PostParams::default(), &configmap(&name, i))
                            .await
                            .expect("create");
                    }
                }
                if i % 7 == 0 {
                    watched
                        .delete(&format!("cm-{}", (i + 3) % 20), &DeleteParams::default())
                        .await
                        .ok();
                }
            }
            // Phase 2: writes elsewhere only. The watcher's last version falls behind two
            // compactions, so its next watch is told 410 Gone and it must re-list.
            let quiet_until = Instant::now() + Duration::from_secs(4);
            let mut n = 0;
            while Instant::now() < quiet_until {
                busy.create(&PostParams::default(), &configmap(&format!("b-{n}"), n))
                    .await
                    .expect("busy write");
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Phase 3: more churn, then let the watcher catch up.
            for i in 0..40 {
                let name = format!("late-{i}");
                watched
                    .create(&PostParams::default(), &configmap(&name, i))
                    .await
                    .expect("create");
            }
            let list = watched.list(&Default::default()).await.expect("list");
            let mut expected: Vec<(String, Option<String>)> = list
                .items
                .iter()
                .map(|cm| {
                    (
                        cm.metadata.name.clone().unwrap_or_default(),
                        cm.metadata.resource_version.clone(),
                    )
                })
                .collect();
            expected.sort();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let mut seen: Vec<(String, Option<String>)> = reader
                    .state()
                    .iter()
                    .map(|cm| {
                        (
                            cm.metadata.name.clone().unwrap_or_default(),
                            cm.metadata.resource_version.clone(),
                        )
                    })
                    .collect();
                seen.sort();
                if seen == expected {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the watcher's view never matched the API:\n seen {seen:?}\n list {expected:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            consumer.abort();
            assert!(
                relists.load(Ordering::Relaxed) >= 2,
                "a compaction made the watcher re-list ({} lists)",
                relists.load(Ordering::Relaxed)
            );
        });
    });
}
