//! The process's one and only reaper of children.
//!
//! # Nothing else in the process may wait for a child
//!
//! After `runc create` the container's init is reparented to the agent (made a child
//! subreaper here), so collecting exit codes means waiting for children the agent never
//! spawned. The [`Reaper`] does so with a dedicated thread blocked in `waitid(P_ALL, …)`,
//! which also collects every other child of the process. Any other wait in the same process
//! races with it and loses the status (an `ECHILD` error, or a panic inside std). So, once
//! [`Reaper::install`] has run:
//!
//! - no `Command::output()`, `Command::status()`, `Child::wait()` or `Child::try_wait()`:
//!   use [`Reaper::output`] and [`Reaper::spawn`];
//! - no `tokio::process` (its own SIGCHLD handling waits for its children);
//! - no library that spawns and waits behind your back (check what a crate does before
//!   using it in the agent).
//!
//! `Command::spawn` itself is safe only through [`Reaper::spawn`]: when the exec fails, std
//! waits for the failed child, and the reaper holds off while a spawn runs so that wait
//! succeeds. Children are still collected when nobody registered them: their statuses are
//! kept a while ([`UNCLAIMED_TTL`], at most [`UNCLAIMED_MAX`]) for a [`Reaper::watch`] that
//! comes after the exit, then dropped.

use std::{
    collections::HashMap,
    fmt, fs,
    io::{self, Read as _},
    process::{ChildStderr, ChildStdin, ChildStdout, Command, Output, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// How long the status of a child nobody registered is kept for a late [`Reaper::watch`].
pub const UNCLAIMED_TTL: Duration = Duration::from_secs(60);

/// How many unclaimed statuses are kept at most (the oldest go first).
pub const UNCLAIMED_MAX: usize = 1024;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal (this number) killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code as Kubernetes reports it: the code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Exited(_) => None,
            Self::Signaled(signal) => Some(signal),
        }
    }

    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// From a `waitpid` status word.
    pub fn from_raw(raw: i32) -> Self {
        if libc::WIFSIGNALED(raw) {
            Self::Signaled(libc::WTERMSIG(raw))
        } else {
            Self::Exited(libc::WEXITSTATUS(raw))
        }
    }

    /// The `waitpid` status word (for std's `ExitStatus`).
    pub fn into_raw(self) -> i32 {
        match self {
            Self::Exited(code) => (code & 0xff) << 8,
            Self::Signaled(signal) => signal & 0x7f,
        }
    }
}

impl From<ExitStatus> for std::process::ExitStatus {
    fn from(status: ExitStatus) -> Self {
        std::os::unix::process::ExitStatusExt::from_raw(status.into_raw())
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit code {code}"),
            Self::Signaled(signal) => {
                let name = nix::sys::signal::Signal::try_from(*signal)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by signal {signal} ({name})")
            }
        }
    }
}

/// The process's reaper: cheap to clone, one per process (see the module documentation).
#[derive(Debug, Clone)]
pub struct Reaper {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when a spawn may have given the process a child (the reaper thread sleeps
    /// on it while there are none).
    children: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Processes someone waits for.
    registered: HashMap<i32, Arc<ExitCell>>,
    /// Statuses of processes nobody registered yet.
    unclaimed: HashMap<i32, (ExitStatus, Instant)>,
    /// Bumped by every spawn, so the reaper thread never sleeps through one.
    spawns: u64,
}

static INSTALLED: OnceLock<Reaper> = OnceLock::new();

impl Reaper {
    /// Makes this process a child subreaper and starts the reaper thread; later calls return
    /// the same reaper. Call it early in `main`, before anything spawns a child.
    pub fn install() -> io::Result<Self> {
        if let Some(reaper) = INSTALLED.get() {
            return Ok(reaper.clone());
        }
        // Serialises racing first calls; the loser's work is not repeated.
        static INSTALLING: Mutex<()> = Mutex::new(());
        let _installing = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reaper) = INSTALLED.get() {
            return Ok(reaper.clone());
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        restore_default_sigchld()?;
        let reaper = Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                children: Condvar::new(),
            }),
        };
        let shared = Arc::clone(&reaper.shared);
        thread::Builder::new()
            .name("strait-reaper".into())
            .spawn(move || reap_forever(&shared))?;
        Ok(INSTALLED.get_or_init(|| reaper).clone())
    }

    /// Spawns `command` and registers it; its stdio are as configured on `command`. Never
    /// call `wait` on children yourself: wait through the returned [`Spawned`].
    pub fn spawn(&self, command: &mut Command) -> io::Result<Spawned> {
        let mut state = self.shared.lock();
        // Holding the lock keeps the reaper thread from collecting a child whose exec failed
        // before std's own wait for it (std panics when that wait fails).
        let mut child = command.spawn()?;
        let pid = pid_i32(child.id());
        // A status kept under this pid belongs to an earlier process that had it.
        state.unclaimed.remove(&pid);
        let cell = Arc::new(ExitCell::default());
        state.registered.insert(pid, Arc::clone(&cell));
        state.spawns += 1;
        drop(state);
        self.shared.children.notify_all();
        Ok(Spawned {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            // Dropping std's `Child` neither kills nor waits.
            exit: Exit { pid, cell },
        })
    }

    /// Waits for a process this one did not spawn but is the parent of: a container's init
    /// after `runc create` (reparented here because this process is a subreaper). Works
    /// when the process has already exited, within [`UNCLAIMED_TTL`]. Fails for a process
    /// that is not a child (e.g. containers made by an earlier agent process: poll
    /// `runc state` for those).
    pub fn watch(&self, pid: u32) -> io::Result<Exit> {
        let pid = pid_i32(pid);
        let mut state = self.shared.lock();
        if let Some((status, _)) = state.unclaimed.remove(&pid) {
            let cell = Arc::new(ExitCell::default());
            cell.set(status);
            return Ok(Exit { pid, cell });
        }
        if let Some(cell) = state.registered.get(&pid) {
            return Ok(Exit {
                pid,
                cell: Arc::clone(cell),
            });
        }
        // Checked under the lock: a child that exits now is collected only after we registered.
        let parent = parent_of(pid)?;
        if u32::try_from(parent).ok() != Some(std::process::id()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("process {pid} is not a child of this process (its parent is {parent})"),
            ));
        }
        let cell = Arc::new(ExitCell::default());
        state.registered.insert(pid, Arc::clone(&cell));
        Ok(Exit { pid, cell })
    }

    /// Runs `command` to completion with stdin from /dev/null and stdout and stderr captured:
    /// the replacement for `Command::output()`, which must not be used in this process.
    pub fn output(&self, command: &mut Command) -> io::Result<Output> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut spawned = self.spawn(command)?;
        let stderr = spawned.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut buffer = Vec::new();
                pipe.read_to_end(&mut buffer).map(|_| buffer)
            })
        });
        let mut stdout = Vec::new();
        if let Some(pipe) = spawned.stdout.as_mut() {
            pipe.read_to_end(&mut stdout)?;
        }
        let stderr = match stderr {
            Some(reader) => reader
                .join()
                .map_err(|_| io::Error::other("the stderr reader panicked"))??,
            None => Vec::new(),
        };
        let status = spawned.wait();
        Ok(Output {
            status: status.into(),
            stdout,
            stderr,
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A process spawned through [`Reaper::spawn`].
#[derive(Debug)]
pub struct Spawned {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    exit: Exit,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.exit.pid()
    }

    /// A handle on its exit, to wait from elsewhere.
    pub fn exit(&self) -> Exit {
        self.exit.clone()
    }

    /// Blocks until it exits.
    pub fn wait(&self) -> ExitStatus {
        self.exit.wait()
    }

    /// Waits asynchronously until it exits.
    pub async fn wait_async(&self) -> ExitStatus {
        self.exit.wait_async().await
    }
}

/// The exit of one process, awaited by any number of holders (clone it).
#[derive(Debug, Clone)]
pub struct Exit {
    pid: i32,
    cell: Arc<ExitCell>,
}

impl Exit {
    pub fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// The status if it has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.cell.lock()
    }

    /// Blocks the thread until the process exits (in async code use [`Self::wait_async`]).
    pub fn wait(&self) -> ExitStatus {
        let mut status = self.cell.lock();
        loop {
            if let Some(status) = *status {
                return status;
            }
            status = self
                .cell
                .exited
                .wait(status)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks at most `timeout`; `None` if the process still runs.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.cell.lock();
        let (status, _) = self
            .cell
            .exited
            .wait_timeout_while(status, timeout, |s| s.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        *status
    }

    /// Waits asynchronously until the process exits.
    pub async fn wait_async(&self) -> ExitStatus {
        loop {
            // Created before the check: `notify_waiters` wakes futures created before it.
            let notified = self.cell.notify.notified();
            if let Some(status) = self.try_status() {
                return status;
            }
            notified.await;
        }
    }
}

#[derive(Debug, Default)]
struct ExitCell {
    status: Mutex<Option<ExitStatus>>,
    exited: Condvar,
    notify: Notify,
}

impl ExitCell {
    fn lock(&self) -> MutexGuard<'_, Option<ExitStatus>> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, status: ExitStatus) {
        *self.lock() = Some(status);
        self.exited.notify_all();
        self.notify.notify_waiters();
    }
}

/// The reaper thread: peek at the next exited child without collecting it, then collect it
/// under the state lock (so spawns and registrations never interleave with a collection).
fn reap_forever(shared: &Shared) {
    loop {
        let spawns = shared.lock().spawns;
        match peek_exited_child() {
            Ok(pid) => collect(shared, pid),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                // No children: sleep until a spawn (or, for children made some other way,
                // a second).
                let state = shared.lock();
                let _state = shared
                    .children
                    .wait_timeout_while(state, Duration::from_secs(1), |s| s.spawns == spawns)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            Err(e) => {
                tracing::error!(error = %e, "waitid failed in the reaper thread");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Blocks until a child has exited and returns its pid, leaving it a zombie.
fn peek_exited_child() -> io::Result<i32> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t; P_ALL ignores the id argument.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &raw mut info, libc::WEXITED | libc::WNOWAIT) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded with WEXITED, so the kernel filled in si_pid.
    Ok(unsafe { info.si_pid() })
}

fn collect(shared: &Shared, pid: i32) {
    let mut state = shared.lock();
    let mut raw = 0;
    // SAFETY: `raw` is a valid, writable int; WNOHANG never blocks.
    let rc = unsafe { libc::waitpid(pid, &raw mut raw, libc::WNOHANG) };
    if rc != pid {
        // Collected by someone else (std after a failed exec), or a wait elsewhere in the
        // process took it: the module documentation forbids the latter.
        return;
    }
    let status = ExitStatus::from_raw(raw);
    if let Some(cell) = state.registered.remove(&pid) {
        cell.set(status);
        return;
    }
    tracing::debug!(pid, %status, "collected a child nobody waits for yet");
    let now = Instant::now();
    state
        .unclaimed
        .retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_TTL);
    if state.unclaimed.len() >= UNCLAIMED_MAX
        && let Some(oldest) = state
            .unclaimed
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(pid, _)| *pid)
    {
        state.unclaimed.remove(&oldest);
    }
    state.unclaimed.insert(pid, (status, now));
}

/// The parent pid of `pid`, from /proc/PID/stat (the field after the parenthesised command,
/// which may itself contain spaces and parentheses).
fn parent_of(pid: i32) -> io::Result<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| io::Error::new(e.kind(), format!("process {pid} not found: {e}")))?;
    parse_parent(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed /proc/{pid}/stat"),
        )
    })
}

fn parse_parent(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).expect("Linux pids fit in an i32 (pid_max is at most 2^22)")
}

/// A SIGCHLD set to SIG_IGN makes the kernel discard exit statuses: put the default back.
fn restore_default_sigchld() -> io::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL installs no handler code; nothing runs in signal context.
    let previous =
        unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    if let SigHandler::Handler(_) | SigHandler::SigAction(_) = previous {
        // Someone installed a handler (tokio's signal driver does for SIGCHLD): keep it.
        // SAFETY: reinstalls exactly the handler that was there.
        unsafe { signal(Signal::SIGCHLD, previous) }.map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_report_kubernetes_codes() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert_eq!(ExitStatus::Signaled(9).signal(), Some(9));
        assert!(ExitStatus::Exited(0).success());
        for status in [ExitStatus::Exited(3), ExitStatus::Signaled(15)] {
            assert_eq!(ExitStatus::from_raw(status.into_raw()), status);
        }
        let std_status: std::process::ExitStatus = ExitStatus::Exited(3).into();
        assert_eq!(std_status.code(), Some(3));
        assert_eq!(
            ExitStatus::Signaled(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parse_parent("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parse_parent("42 (sh) R 1 2"), Some(1));
        assert_eq!(parse_parent("garbage"), None);
    }
}
