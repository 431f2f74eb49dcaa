//! Plumbing shared by the bus tests: a bus name removed on drop, and peer processes that
//! die with the test (SIGKILL on drop, and PR_SET_PDEATHSIG should the test process
//! itself die), read line by line with a bound on every wait.

#![allow(dead_code)] // each test file uses its own subset

pub mod payload;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const PEER: &str = env!("CARGO_BIN_EXE_atbus-bus-peer");
/// The longest a test waits for a peer's line or exit before failing (not a sleep: the
/// wait ends as soon as the line comes).
pub const PEER_WAIT: Duration = Duration::from_secs(60);

/// A unique bus name for one test, unlinked (with its inboxes) on drop.
pub struct TempBus {
    pub name: String,
}

impl TempBus {
    pub fn new(tag: &str) -> TempBus {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("/atbus-bus-test-{}-{tag}-{n}", std::process::id());
        let _ = atbus_bus::Bus::unlink(&name);
        TempBus { name }
    }
}

impl Drop for TempBus {
    fn drop(&mut self) {
        let _ = atbus_bus::Bus::unlink(&self.name);
    }
}

/// Where a shared-memory name lives.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

/// A running `atbus-bus-peer`. Killed (SIGKILL) and reaped on drop, pass or fail.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub pid: u32,
}

impl Peer {
    pub fn spawn(args: &[&str]) -> Peer {
        let mut cmd = Command::new(PEER);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the thread that spawned us, should the test process die.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent already gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn atbus-bus-peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            pid: child.id(),
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The next line the peer prints; fails the test after `PEER_WAIT` or at its exit.
    pub fn line(&self) -> String {
        match self.lines.recv_timeout(PEER_WAIT) {
            Ok(line) => line,
            Err(e) => panic!("peer {} printed no line: {e:?}", self.pid),
        }
    }

    /// The next line, which must start with `prefix`; returns the rest.
    pub fn expect(&self, prefix: &str) -> String {
        let line = self.line();
        match line.strip_prefix(prefix) {
            Some(rest) => rest.trim().to_string(),
            None => panic!("peer {} said {line:?}, expected {prefix:?}", self.pid),
        }
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to peer");
        stdin.flush().expect("flush to peer");
    }

    /// Closes the peer's stdin (roles that hold an endpoint then leave and exit).
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for the peer to exit (bounded by `PEER_WAIT`).
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PEER_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "peer {} did not exit", self.pid);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
