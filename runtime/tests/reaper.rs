//! The reaper against real children: spawned ones, orphans reparented to this process (a
//! subreaper) and failed spawns, from threads and from async code.

#[expect(
    dead_code,
    reason = "these tests use the reaper part of the harness only"
)]
mod common;

use std::{io::Read as _, process::Command, time::Duration};

use common::reaper;
use strait_runtime::ExitStatus;

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn spawned_children_report_codes_and_signals() {
    let reaper = reaper();
    let exited = reaper
        .spawn(Command::new("sh").args(["-c", "exit 7"]))
        .expect("spawn sh");
    assert_eq!(exited.wait(), ExitStatus::Exited(7));

    let killed = reaper
        .spawn(Command::new("sh").args(["-c", "kill -KILL $$"]))
        .expect("spawn sh");
    let status = killed.exit().wait_timeout(TIMEOUT).expect("sh exits");
    assert_eq!(status, ExitStatus::Signaled(9));
    assert_eq!(status.code(), 137);
}

#[test]
fn output_replaces_command_output() {
    let output = reaper()
        .output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 2"]))
        .expect("run sh");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
}

#[test]
fn a_failed_exec_is_an_error_not_a_panic() {
    for _ in 0..20 {
        let err = reaper()
            .spawn(&mut Command::new("/nonexistent/strait-binary"))
            .expect_err("spawn of a missing binary");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        // A pre_exec hook makes std fork and wait for the failed child itself.
        let mut command = Command::new("/nonexistent/strait-binary");
        // SAFETY: the hook only returns Ok; it calls nothing that is unsafe after fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || Ok(()));
        }
        assert!(reaper().spawn(&mut command).is_err());
    }
}

#[test]
fn orphans_are_collected_even_when_watched_after_they_exit() {
    let reaper = reaper();
    // The grandchild outlives its parent, is reparented here and exits with 5 before
    // anyone watches it.
    let mut parent = reaper
        .spawn(
            Command::new("sh")
                .args(["-c", "sh -c 'sleep 0.2; exit 5' & echo $!"])
                .stdout(std::process::Stdio::piped()),
        )
        .expect("spawn sh");
    let mut stdout = String::new();
    parent
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(parent.wait().success());
    let orphan: u32 = stdout.trim().parse().expect("the grandchild's pid");
    std::thread::sleep(Duration::from_millis(600));
    let exit = reaper.watch(orphan).expect("watch the orphan");
    assert_eq!(exit.wait_timeout(TIMEOUT), Some(ExitStatus::Exited(5)));

    assert!(reaper.watch(std::process::id()).is_err(), "not a child");
}

#[test]
fn exits_can_be_awaited() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let reaper = reaper();
    runtime.block_on(async {
        let spawned = reaper
            .spawn(Command::new("sh").args(["-c", "sleep 0.1; exit 4"]))
            .expect("spawn sh");
        let exit = spawned.exit();
        let (a, b) = tokio::join!(spawned.wait_async(), exit.wait_async());
        assert_eq!((a, b), (ExitStatus::Exited(4), ExitStatus::Exited(4)));
        assert_eq!(spawned.wait_async().await, ExitStatus::Exited(4));
    });
}

#[test]
fn many_threads_spawn_at_once() {
    let reaper = reaper();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let reaper = reaper.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let code = (t * 10 + i) % 256;
                    let status = reaper
                        .spawn(Command::new("sh").args(["-c", &format!("exit {code}")]))
                        .expect("spawn sh")
                        .wait();
                    assert_eq!(status, ExitStatus::Exited(code));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}
