//! Two `strait-control` processes on one etcd: one runs the controllers, holding the
//! `kube-system/strait-controller-manager` Lease; when it dies the other takes the Lease over
//! and the controllers act again, through it.

use std::{
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use strait_tests::{ControlPlane, Etcd, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_strait-control");

fn holder(plane: &ControlPlane) -> String {
    let out = plane.kubectl(
        "1.33",
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "strait-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what} within {timeout:?}: {last}"),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The ServiceAccount controller's work is the witness: a new namespace gets `default`.
fn wait_default_account(plane: &ControlPlane, namespace: &str, timeout: Duration) {
    plane.kubectl_ok("1.33", &["create", "namespace", namespace]);
    wait(
        &format!("a default ServiceAccount in {namespace}"),
        timeout,
        || {
            let out = plane.kubectl(
                "1.33",
                &["get", "serviceaccount", "default", "-n", namespace],
            );
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
}

#[test]
fn one_control_process_leads_and_the_other_takes_over_when_it_dies() {
    let netns = Arc::new(Netns::new("stl"));
    let _etcd = Etcd::start(&netns);
    let prefix = format!("/strait-leader-{}", std::process::id());
    let args = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        Etcd::URL,
        "--etcd-prefix",
        &prefix,
    ];
    let mut a = ControlPlane::start_in(Path::new(BIN), Arc::clone(&netns), 6443, &args);
    // B starts once A leads, so the first holder is known.
    wait("A to hold the Lease", Duration::from_secs(30), || {
        let held = holder(&a);
        if held == a.url() { Ok(()) } else { Err(held) }
    });
    let b = ControlPlane::start_in(Path::new(BIN), Arc::clone(&netns), 6444, &args);
    wait_default_account(&b, "before", Duration::from_secs(30));
    assert_eq!(holder(&b), a.url(), "B follows while A leads");

    a.kill9();
    // The Lease lasts 15 s unrenewed; B looks every 2 s.
    wait("B to take the Lease", Duration::from_secs(40), || {
        let held = holder(&b);
        if held == b.url() { Ok(()) } else { Err(held) }
    });
    wait_default_account(&b, "after", Duration::from_secs(30));
}
