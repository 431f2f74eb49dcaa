//! Process plumbing shared by the multi-process tests: spawning `atbus-peer`, waiting for
//! it to stop itself, signalling it, and receiving with a bounded wait.

#![allow(dead_code)] // each test file uses its own subset

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atbus::{Backoff, Error};
use atbus_tests::child::ChildGuard;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const PEER: &str = env!("CARGO_BIN_EXE_atbus-peer");

/// Starts `atbus-peer` with `args`, stdout and stdin piped, stderr forwarded to the
/// test's output; killed when the guard drops or the test binary dies.
pub fn peer(args: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(PEER);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd).expect("spawn atbus-peer");
    child.forward_stderr();
    child
}

/// Waits until `child` has stopped itself with SIGSTOP (without reaping it).
pub fn wait_stopped(child: &Child) {
    let pid = Pid::from_raw(child.id() as i32);
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).unwrap() {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        other => panic!("peer did not stop: {other:?}"),
    }
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Receives one message, polling with backoff for at most `limit`.
pub fn recv_within(r: &mut atbus::Reader, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut backoff = Backoff::new();
    loop {
        match r.try_recv_vec() {
            Ok(m) => return m,
            Err(Error::Empty) if Instant::now() < deadline => backoff.snooze(),
            other => panic!("no message within {limit:?}: {other:?}"),
        }
    }
}
