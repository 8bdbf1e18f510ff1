//! Harness for the runtime's tests against the real runc.
//!
//! All children of this test process are spawned and waited for through the one [`Reaper`]
//! (it collects every child with `waitpid(-1)`): that is why this harness runs `ip` through
//! [`run`] instead of using `strait_tests::Netns`, whose `Command::output` would race with it.
//! Every guard cleans up on drop, also when the test panics; [`Sandbox::finish`] checks that
//! nothing (runc state, cgroup directories, mounts) is left.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use strait_runtime::{
    ContainerConfig, Created, Hierarchies, Reaper, Resources, Runc, Stdio, write_bundle,
};

/// The process's reaper, installed on first use.
pub(crate) fn reaper() -> Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER
        .get_or_init(|| Reaper::install().expect("install the reaper"))
        .clone()
}

/// Runs `argv` through the reaper and panics with its stderr if it fails.
pub(crate) fn run(argv: &[&str]) -> Output {
    let output = reaper()
        .output(Command::new(argv[0]).args(&argv[1..]))
        .unwrap_or_else(|e| panic!("failed to start `{}`: {e}", argv.join(" ")));
    assert!(
        output.status.success(),
        "`{}` failed ({}): {}",
        argv.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    output
}

/// Busybox applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "dd", "head", "ip", "ls", "true", "false", "grep", "ps",
];

/// A runc state directory, a cgroup subtree and bundles of one test; everything goes on drop.
pub(crate) struct Sandbox {
    pub(crate) runc: Runc,
    pub(crate) hierarchies: Hierarchies,
    /// The test's own cgroup parent, e.g. `/strait-test-1a2bx3`.
    pub(crate) cgroup_parent: String,
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strait-runtime-test-")
            .tempdir()
            .expect("create the test directory");
        let runc = Runc::new("runc", dir.path().join("runc-root"), reaper());
        Self {
            runc,
            hierarchies: Hierarchies::detect().expect("detect the cgroup hierarchies"),
            cgroup_parent: format!("/{}", strait_tests::unique_name("strait-test-")),
            dir,
        }
    }

    /// A bundle for container `id` running `args` in a busybox rootfs; its cgroup is
    /// `<cgroup_parent>/<id>`. `edit` adjusts the configuration.
    pub(crate) fn bundle(
        &self,
        id: &str,
        args: &[&str],
        edit: impl FnOnce(&mut ContainerConfig),
    ) -> PathBuf {
        let bundle = self.dir.path().join(id);
        let rootfs = bundle.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(sub)).expect("create the rootfs");
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).expect("link an applet");
        }
        let mut config = ContainerConfig {
            rootfs,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            hostname: id.into(),
            netns: None,
            mounts: Vec::new(),
            resources: Resources::default(),
            cgroups_path: self.cgroups_path(id),
            readonly_rootfs: false,
            terminal: false,
        };
        edit(&mut config);
        write_bundle(&bundle, &config).expect("write the bundle");
        bundle
    }

    pub(crate) fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// Creates container `id` from its bundle with stdout and stderr appended to `log`.
    pub(crate) fn create(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<Created, strait_runtime::RuncError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the container log");
        let stdio = Stdio {
            stdin: None,
            stdout: Some(file.try_clone().expect("dup the log").into()),
            stderr: Some(file.into()),
        };
        self.runc
            .create(id, bundle, stdio, &bundle.join("init.pid"))
    }

    /// A path for a log file in the test directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Cleans up now and checks that nothing is left: no runc state, no cgroup directories,
    /// no mounts under the test directory.
    pub(crate) fn finish(self) {
        self.clean_up();
        assert!(
            self.runc.list().expect("runc list").is_empty(),
            "runc still lists containers"
        );
        for path in self.hierarchies.paths(&self.cgroup_parent) {
            assert!(!path.exists(), "cgroup {} is left", path.display());
        }
        let dir = self.dir.path().to_owned();
        drop(self);
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        assert!(
            !mounts.contains(dir.to_str().expect("a UTF-8 path")),
            "mounts under {} are left",
            dir.display()
        );
        assert!(!dir.exists(), "{} is left", dir.display());
    }

    fn clean_up(&self) {
        if let Ok(containers) = self.runc.list() {
            for container in containers {
                if let Err(e) = self.runc.delete(&container.id, true) {
                    eprintln!("warning: {e}");
                }
            }
        }
        let _killed = self.hierarchies.kill_all(&self.cgroup_parent);
        if let Err(e) = self.hierarchies.remove_subtree(&self.cgroup_parent) {
            eprintln!("warning: {e}");
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// A network namespace (`ip netns add`) deleted on drop, made through the reaper.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new() -> Self {
        let name = strait_tests::unique_name("strt");
        run(&["ip", "netns", "add", &name]);
        Self { name }
    }

    pub(crate) fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _deleted = reaper().output(Command::new("ip").args(["netns", "del", &self.name]));
    }
}
