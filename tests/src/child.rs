//! Child processes that die with their test, pass or fail.
//!
//! A test that fails or panics unwinds past its children; a test binary that is killed
//! never unwinds at all. Either way a child left running (a bridge retrying a server
//! that is gone, a writer waiting for space) outlives the test, and if it holds the
//! harness's stdout or stderr, `cargo test` never returns. So every child a test starts:
//!
//! * is held by a [`ChildGuard`], which kills and reaps it when dropped (at the end of
//!   the test, or while a panic unwinds);
//! * gets `PR_SET_PDEATHSIG` = SIGKILL (set by [`die_with_parent`] between `fork` and
//!   `exec`), so the kernel kills it when the test binary dies without unwinding.
//!   The signal follows the death of the parent *thread* that spawned the child: spawn
//!   from the test's own thread (or one that outlives the child), never from a helper
//!   thread that ends before the child should;
//! * never inherits the harness's stdout or stderr: callers pipe or null them, and
//!   [`ChildGuard::forward_stderr`] copies a piped stderr into the test's output.
//!
//! ```no_run
//! use std::process::{Command, Stdio};
//! use atbus_tests::child::ChildGuard;
//!
//! let mut cmd = Command::new("sleep");
//! cmd.arg("60").stdout(Stdio::null()).stderr(Stdio::null());
//! let child = ChildGuard::spawn(&mut cmd).unwrap();
//! assert!(child.id() > 0);
//! // Dropped here: killed and reaped, even if an assertion above had failed.
//! ```

use std::io::{self, BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output};

/// A [`Command`] for `program` whose process dies with this one ([`die_with_parent`]):
/// for tests that run a child to completion (`output()`, `status()`) rather than hold it
/// in a [`ChildGuard`].
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    die_with_parent(&mut cmd);
    cmd
}

/// Makes the children `cmd` starts die with this process: the kernel sends them SIGKILL
/// when the thread that spawned them ends (see the module doc). A child whose parent
/// died before the setting took effect fails to start instead.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2)
    // and getppid(2), which are async-signal-safe, and builds an io::Error from a raw
    // code, which does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal comes.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, unless it was reaped
/// before. Derefs to the [`Child`], so `wait`, `id`, `stdin` and the rest work as usual.
#[derive(Debug)]
pub struct ChildGuard {
    /// `None` only inside [`ChildGuard::wait_with_output`], which consumes the guard.
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with [`die_with_parent`]. Set its stdout and stderr (piped or null)
    /// before: an inherited one keeps `cargo test`'s pipe open as long as the child runs.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        let child = die_with_parent(cmd).spawn()?;
        Ok(ChildGuard { child: Some(child) })
    }

    /// Copies the child's piped stderr, line by line, into this test's output (shown
    /// when the test fails), from a thread that ends when the child closes it. Does
    /// nothing if stderr was not piped or was taken already.
    pub fn forward_stderr(&mut self) -> &mut ChildGuard {
        if let Some(pipe) = self.stderr.take() {
            let pid = self.id();
            // eprintln! in a thread spawned by the test goes to the test's captured output.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    match line {
                        Ok(line) => eprintln!("[child {pid}] {line}"),
                        Err(_) => break,
                    }
                }
            });
        }
        self
    }

    /// Waits for the child to exit and collects its piped stdout and stderr, as
    /// [`Child::wait_with_output`].
    pub fn wait_with_output(mut self) -> io::Result<Output> {
        self.child
            .take()
            .expect("the child is there until this consumes the guard")
            .wait_with_output()
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("the child is there until wait_with_output consumes the guard")
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is there until wait_with_output consumes the guard")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Still ours and not reaped (try_wait fails if someone reaped it with
            // waitpid: then its pid may belong to another process, so leave it).
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether process `pid` is gone: no such process, or a zombie nobody reaped yet (a
/// child of init in a container whose init does not reap).
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    /// `sleep 600`, its output discarded.
    fn sleeper() -> Command {
        let mut cmd = Command::new("sleep");
        cmd.arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Waits (bounded) until `pid` is gone.
    fn gone_within(pid: u32, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut backoff = atbus::Backoff::new();
        while !is_gone(pid) {
            if Instant::now() > deadline {
                return false;
            }
            backoff.snooze();
        }
        true
    }

    #[test]
    fn a_child_dies_when_its_test_panics() {
        let (tx, rx) = std::sync::mpsc::channel();
        // The "test": spawns a child, then fails. The guard lives until the unwinding.
        let test = std::thread::spawn(move || {
            let child = ChildGuard::spawn(&mut sleeper()).unwrap();
            tx.send(child.id()).unwrap();
            panic!("an assertion failed while the child ran");
        });
        assert!(test.join().is_err(), "the test thread panicked");
        let pid = rx.recv().unwrap();
        // Dropped while unwinding: killed and reaped before the thread ended.
        assert!(is_gone(pid), "child {pid} outlived its panicking test");
    }

    #[test]
    fn a_child_dies_when_its_test_panics_inside_catch_unwind() {
        let mut pid = 0;
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let child = ChildGuard::spawn(&mut sleeper()).unwrap();
            pid = child.id();
            assert!(is_gone(pid), "fails on purpose: the child runs");
        }));
        assert!(caught.is_err());
        assert!(pid > 0 && is_gone(pid), "child {pid} outlived the panic");
    }

    /// Runs in a process of its own (see the next test): spawns `sleep 600` through the
    /// guard, prints its pid and waits to be killed. A no-op in an ordinary run.
    #[test]
    fn spawn_a_child_and_wait_to_be_killed_role() {
        if std::env::var_os("ATBUS_TESTS_CHILD_ROLE").is_none() {
            return;
        }
        let child = ChildGuard::spawn(&mut sleeper()).unwrap();
        println!("pid={}", child.id());
        std::thread::sleep(Duration::from_secs(600));
    }

    #[test]
    fn a_child_dies_when_the_test_binary_is_killed() {
        let mut test_binary = Command::new(std::env::current_exe().unwrap());
        test_binary
            .args([
                "--exact",
                "child::tests::spawn_a_child_and_wait_to_be_killed_role",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env("ATBUS_TESTS_CHILD_ROLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut test_binary = ChildGuard::spawn(&mut test_binary).unwrap();
        let lines = BufReader::new(test_binary.stdout.take().unwrap()).lines();
        let pid: u32 = lines
            .map_while(Result::ok)
            // The harness prints the test's name on the same line, before it.
            .find_map(|l| l.rsplit_once("pid=").map(|(_, p)| p.parse().unwrap()))
            .expect("the role printed its child's pid");
        assert!(!is_gone(pid), "the grandchild runs");
        // SIGKILL: no unwinding, no destructor; only the kernel can end the grandchild.
        test_binary.kill().unwrap();
        test_binary.wait().unwrap();
        let gone = gone_within(pid, Duration::from_secs(10));
        if !gone {
            // Not left to sleep out its 600 s: it still runs, so the pid is still its.
            // SAFETY: plain kill(2), no memory is involved.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        assert!(gone, "grandchild {pid} outlived the killed test binary");
    }
}
