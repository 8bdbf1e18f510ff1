//! Containers through the real runc (1.1.5 on the test machine), one sandbox per test: its
//! own `--root`, its own cgroup subtree, its own bundles, all checked gone at the end.

mod common;

use std::{fs, time::Duration};

use common::{Netns, Sandbox, run};
use strait_runtime::{ExitStatus, Resources, Status, runc::RuncError};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn exit_code_and_output_reach_the_agent() {
    let sandbox = Sandbox::new();
    let bundle = sandbox.bundle(
        "exit3",
        &["sh", "-c", "echo hello from $(hostname); exit 3"],
        |_| {},
    );
    let log = sandbox.path("exit3.log");
    let created = sandbox.create("exit3", &bundle, &log).expect("runc create");
    let state = sandbox
        .runc
        .state("exit3")
        .expect("runc state")
        .expect("a known container");
    assert_eq!(state.status, Status::Created);
    assert_eq!(state.pid, created.pid);

    sandbox.runc.start("exit3").expect("runc start");
    let status = created
        .exit
        .wait_timeout(EXIT_TIMEOUT)
        .expect("the container exits");
    assert_eq!(status, ExitStatus::Exited(3));
    assert_eq!(status.code(), 3);
    assert_eq!(fs::read_to_string(&log).unwrap(), "hello from exit3\n");
    let state = sandbox.runc.state("exit3").unwrap().unwrap();
    assert_eq!(state.status, Status::Stopped);

    sandbox.runc.delete("exit3", false).expect("runc delete");
    sandbox.finish();
}

#[test]
fn pid_one_ignores_term_and_dies_of_kill() {
    let sandbox = Sandbox::new();
    let bundle = sandbox.bundle("sleeper", &["sleep", "1000"], |_| {});
    let created = sandbox
        .create("sleeper", &bundle, &sandbox.path("sleeper.log"))
        .expect("runc create");
    sandbox.runc.start("sleeper").expect("runc start");
    let state = sandbox.runc.state("sleeper").unwrap().unwrap();
    assert_eq!(state.status, Status::Running);
    // runc puts the init at the cgroupsPath in every hierarchy: each v1 controller's, the
    // named systemd one, and (on this hybrid host) the unified cgroup2 one.
    let cgroups_path = sandbox.cgroups_path("sleeper");
    for path in sandbox.hierarchies.paths(&cgroups_path) {
        assert!(path.exists(), "{} exists", path.display());
    }
    let membership = fs::read_to_string(format!("/proc/{}/cgroup", created.pid)).unwrap();
    for line in membership.lines() {
        assert!(line.ends_with(&format!(":{cgroups_path}")), "{membership}");
    }

    sandbox
        .runc
        .kill("sleeper", libc::SIGTERM, false)
        .expect("runc kill TERM");
    assert_eq!(
        created.exit.wait_timeout(Duration::from_millis(500)),
        None,
        "PID 1 without a handler ignores SIGTERM"
    );
    sandbox
        .runc
        .kill("sleeper", libc::SIGKILL, false)
        .expect("runc kill KILL");
    let status = created
        .exit
        .wait_timeout(EXIT_TIMEOUT)
        .expect("the container exits");
    assert_eq!(status, ExitStatus::Signaled(9));
    assert_eq!(status.code(), 137);

    // Killing a stopped container is an error runc reports; deleting it is not.
    assert!(matches!(
        sandbox.runc.kill("sleeper", libc::SIGKILL, false),
        Err(RuncError::NotRunning { .. })
    ));
    sandbox.runc.delete("sleeper", false).expect("runc delete");
    sandbox.finish();
}

#[test]
fn memory_limit_ends_in_an_oom_kill() {
    let sandbox = Sandbox::new();
    let bundle = sandbox.bundle(
        "hog",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        |config| {
            config.resources = Resources {
                memory_limit: Some(16 << 20),
                pids_limit: Some(32),
                ..Resources::default()
            };
        },
    );
    let created = sandbox
        .create("hog", &bundle, &sandbox.path("hog.log"))
        .expect("runc create");
    let cgroups_path = sandbox.cgroups_path("hog");
    let memory = sandbox
        .hierarchies
        .controller_path("memory", &cgroups_path)
        .unwrap();
    assert_eq!(
        fs::read_to_string(memory.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (16 << 20).to_string()
    );
    assert_eq!(
        sandbox.hierarchies.oom_kill_count(&cgroups_path).unwrap(),
        0
    );
    assert!(sandbox.hierarchies.memory_usage(&cgroups_path).unwrap() > 0);

    sandbox.runc.start("hog").expect("runc start");
    let status = created
        .exit
        .wait_timeout(EXIT_TIMEOUT)
        .expect("the container exits");
    assert_eq!(status, ExitStatus::Signaled(9), "the OOM killer's SIGKILL");
    assert!(sandbox.hierarchies.oom_kill_count(&cgroups_path).unwrap() >= 1);

    sandbox.runc.delete("hog", false).expect("runc delete");
    sandbox.finish();
}

#[test]
fn container_joins_a_premade_network_namespace() {
    let sandbox = Sandbox::new();
    let netns = Netns::new();
    // No `dummy` module on the test machine: a veth pair with both ends inside will do.
    run(&[
        "ip",
        "-n",
        &netns.name,
        "link",
        "add",
        "strait-a",
        "type",
        "veth",
        "peer",
        "name",
        "strait-b",
    ]);
    let bundle = sandbox.bundle("netns", &["ip", "-o", "link"], |config| {
        config.netns = Some(netns.path());
    });
    let log = sandbox.path("netns.log");
    let created = sandbox.create("netns", &bundle, &log).expect("runc create");
    sandbox.runc.start("netns").expect("runc start");
    let status = created
        .exit
        .wait_timeout(EXIT_TIMEOUT)
        .expect("the container exits");
    let links = fs::read_to_string(&log).unwrap();
    assert_eq!(status, ExitStatus::Exited(0), "{links}");
    assert!(links.contains("strait-a"), "the namespace's links: {links}");
    assert_eq!(links.lines().count(), 3, "lo and the pair only: {links}");

    sandbox.runc.delete("netns", false).expect("runc delete");
    sandbox.finish();
}

#[test]
fn a_missing_command_fails_create_with_runcs_reason() {
    let sandbox = Sandbox::new();
    let bundle = sandbox.bundle("nosuch", &["nosuch"], |_| {});
    let err = sandbox
        .create("nosuch", &bundle, &sandbox.path("nosuch.log"))
        .expect_err("create of a missing command");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        matches!(
            err,
            RuncError::Failed {
                command: "create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.starts_with("runc create of container nosuch failed: ")
            && message.contains(r#"exec: "nosuch": executable file not found in $PATH"#),
        "{message}"
    );
    sandbox.runc.delete("nosuch", true).expect("runc delete");
    sandbox.finish();
}

#[test]
fn delete_and_state_of_unknown_containers_are_fine() {
    let sandbox = Sandbox::new();
    assert!(sandbox.runc.state("never-made").unwrap().is_none());
    sandbox
        .runc
        .delete("never-made", false)
        .expect("delete of an unknown id");
    sandbox
        .runc
        .delete("never-made", true)
        .expect("forced delete of an unknown id");
    assert!(matches!(
        sandbox.runc.start("never-made"),
        Err(RuncError::NotFound { .. })
    ));

    let bundle = sandbox.bundle("twice", &["sleep", "1000"], |_| {});
    let created = sandbox
        .create("twice", &bundle, &sandbox.path("twice.log"))
        .expect("runc create");
    assert_eq!(sandbox.runc.list().unwrap().len(), 1);
    sandbox
        .runc
        .delete("twice", true)
        .expect("forced delete of a created container");
    assert!(
        created.exit.wait_timeout(EXIT_TIMEOUT).is_some(),
        "the init is gone"
    );
    sandbox.runc.delete("twice", true).expect("second delete");
    assert!(sandbox.runc.state("twice").unwrap().is_none());
    sandbox.finish();
}
