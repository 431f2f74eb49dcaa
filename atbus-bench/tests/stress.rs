//! End-to-end runs of the built `atbus-bench` binary: a short stress with faults, bad
//! arguments, and clean-up on SIGINT/SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use atbus_tests::child::command;

mod common;
use common::{run_json, BIN};

#[test]
fn short_stress_with_a_writer_kill_a_stall_and_a_reader_kill_accounts_for_everything() {
    let (v, code, stderr) = run_json(&[
        "stress",
        "--secs",
        "8",
        "--writers",
        "3",
        "--kill-writer-every",
        "3s",
        "--stall-writer-every",
        "2500ms",
        "--stall-for",
        "200ms",
        "--timeout",
        "50ms",
        "--kill-reader-every",
        "5s",
        "--progress-every",
        "2s",
    ]);
    let ctx = format!("{v:#}\nstderr: {stderr}");
    assert_eq!(code, 0, "{ctx}");
    assert_eq!(v["ok"], true, "{ctx}");
    let t = &v["totals"];
    let a = &v["attribution"];
    assert!(t["delivered"].as_u64().unwrap() > 0, "{ctx}");
    assert_eq!(a["unexplained"], 0, "{ctx}");
    assert_eq!(t["corrupted"], 0, "{ctx}");
    assert_eq!(t["reordered"], 0, "{ctx}");
    assert_eq!(t["unattributed"], 0, "{ctx}");
    let f = &v["faults"];
    assert!(f["writer_kills"].as_u64().unwrap() >= 1, "{ctx}");
    assert!(f["writer_stalls"].as_u64().unwrap() >= 1, "{ctx}");
    assert!(f["reader_kills"].as_u64().unwrap() >= 1, "{ctx}");
    // Every loss is attributed to a fault, and bounded by the fault counts: one per
    // reader kill, and one per block a stalled writer's late copy destroyed. The library
    // counts those as bad blocks where the reader can tell, and every node of them as a
    // bad node (a late copy over nodes that start other blocks destroys their heads):
    // the 10^10 soak lost 28 with 0 bad blocks and 62 bad nodes.
    let lost = t["lost"].as_u64().unwrap();
    let channel = &v["channel"];
    let destroyed = channel["bad_blocks"]
        .as_u64()
        .unwrap()
        .max(channel["bad_nodes"].as_u64().unwrap());
    assert!(
        lost <= f["reader_kills"].as_u64().unwrap() + destroyed,
        "{ctx}"
    );
    // Writers' sends and the channel's counters agree, but for messages of killed
    // writers that were published and counted by the library before the writer could
    // record its Ok (they were delivered: in flight and delivered).
    let sent = t["sent"].as_u64().unwrap();
    let lib_sent = v["channel"]["messages_sent"].as_u64().unwrap();
    assert!(lib_sent >= sent, "{ctx}");
    assert!(
        lib_sent - sent <= f["in_flight_delivered"].as_u64().unwrap(),
        "{ctx}"
    );
    assert!(v["writers"].as_array().unwrap().len() >= 4, "{ctx}");
    assert!(!shm_exists(v["config"]["channel"].as_str().unwrap()));
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm{name}")).exists()
}

fn bad_args(args: &[&str], expect: &str) {
    let out = command(BIN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(expect), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn bad_arguments_get_one_line_and_exit_code_2() {
    bad_args(&["--writers", "0"], "--writers must be at least 1");
    bad_args(&["stress", "--node-size", "100"], "power of two");
    bad_args(&["--channel-size", "64K", "--sizes", "64K"], "at most");
    bad_args(&["--sizes", "4"], "below 8 bytes");
    bad_args(&["--reader-cpu", "4096"], "does not exist");
    bad_args(&["--no-such-option"], "unexpected argument");
    bad_args(&["compare", "--rounds", "x"], "invalid value");
    bad_args(
        &["compare", "--transports", "carrier-pigeon"],
        "unknown transport",
    );
}

/// A child process killed (SIGINT, so that it removes its channel and stops its own
/// children, then SIGKILL) and reaped when dropped: a failed assertion leaves no run going
/// on forever.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped (try_wait said so).
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts a run that would go on forever, waits for its first line (printed once the
/// channel exists), sends `sig`, and checks that the channel is gone afterwards.
fn interrupt_removes_the_channel(sig: libc::c_int) {
    let mut child = Guard(
        command(BIN)
            .args(["--forever", "--progress-every", "100ms", "--sizes", "64"])
            .stdout(Stdio::piped())
            // Not the harness's: the run's own children inherit it and could keep
            // `cargo test`'s pipe open.
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let name = format!("/atbus-bench-{}", child.id());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains(&name), "{first}");
    assert!(shm_exists(&name), "{name} should exist while running");
    // Wait for one progress line: the children are up and messages flow.
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("msgs"), "{line}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(rest.contains("verdict    OK"), "{rest}");
    assert!(!shm_exists(&name), "{name} left behind");
}

#[test]
fn sigint_removes_the_channel_and_stops_the_children() {
    interrupt_removes_the_channel(libc::SIGINT);
}

#[test]
fn sigterm_removes_the_channel_and_stops_the_children() {
    interrupt_removes_the_channel(libc::SIGTERM);
}

#[test]
fn sighup_removes_the_channel_and_stops_the_children() {
    interrupt_removes_the_channel(libc::SIGHUP);
}

/// A short stress run in one receive / send mode, with a writer kill every second and
/// (when `stalls`) writers stalled past a short timeout, so late writes can destroy
/// messages under an in-place read: everything must still be accounted for.
fn stress_mode_accounts_for_everything(mode: &[&str], stalls: bool) {
    let mut args = vec![
        "stress",
        "--secs",
        "3",
        "--writers",
        "2",
        "--kill-writer-every",
        "1s",
        "--progress-every",
        "5s",
    ];
    if stalls {
        args.extend([
            "--stall-writer-every",
            "800ms",
            "--stall-for",
            "150ms",
            "--timeout",
            "50ms",
        ]);
    }
    args.extend(mode);
    let (v, code, stderr) = run_json(&args);
    let ctx = format!("{mode:?}\n{v:#}\nstderr: {stderr}");
    assert_eq!(code, 0, "{ctx}");
    assert_eq!(v["ok"], true, "{ctx}");
    let t = &v["totals"];
    assert!(t["delivered"].as_u64().unwrap() > 0, "{ctx}");
    assert_eq!(v["attribution"]["unexplained"], 0, "{ctx}");
    assert_eq!(t["corrupted"], 0, "{ctx}");
    assert_eq!(t["reordered"], 0, "{ctx}");
    assert_eq!(t["unattributed"], 0, "{ctx}");
    assert!(v["faults"]["writer_kills"].as_u64().unwrap() >= 1, "{ctx}");
    let c = &v["config"];
    let reader_mode = mode
        .iter()
        .position(|&m| m == "--reader-mode")
        .map_or("poll", |i| mode[i + 1]);
    assert_eq!(c["reader_mode"], reader_mode, "{ctx}");
    assert_eq!(c["zero_copy"], mode.contains(&"--zero-copy"), "{ctx}");
    assert_eq!(c["batch_send"], mode.contains(&"--batch-send"), "{ctx}");
    assert!(!shm_exists(c["channel"].as_str().unwrap()));
}

#[test]
fn blocking_reader_accounts_for_everything() {
    stress_mode_accounts_for_everything(&["--reader-mode", "blocking"], false);
}

#[test]
fn tokio_reader_with_stalled_writers_accounts_for_everything() {
    stress_mode_accounts_for_everything(&["--reader-mode", "tokio"], true);
}

#[test]
fn batch_reader_accounts_for_everything() {
    stress_mode_accounts_for_everything(&["--reader-mode", "batch"], false);
}

#[test]
fn in_place_reader_with_stalled_writers_accounts_for_everything() {
    stress_mode_accounts_for_everything(&["--reader-mode", "in-place"], true);
}

#[test]
fn zero_copy_writers_with_stalls_account_for_everything() {
    stress_mode_accounts_for_everything(&["--zero-copy"], true);
}

#[test]
fn batch_sending_writers_with_stalls_account_for_everything() {
    stress_mode_accounts_for_everything(&["--batch-send"], true);
}
