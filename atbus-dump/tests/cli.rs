//! CLI tests: run the real `atbus-dump` binary against real channels and assert on what
//! users rely on: exit codes, the lines they read, and the JSON fields they parse.

#![forbid(unsafe_code)]

use std::io::{Seek, SeekFrom, Write};
use std::process::{Child, Output, Stdio};

use atbus_tests::child::command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_atbus-dump");

/// A channel name unique to this process and test, unlinked when dropped (even when the
/// test fails).
struct Chan {
    name: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Chan {
    fn unique(tag: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("atbus-dump-test-{}-{n}-{tag}", std::process::id())
    }

    /// A name for a POSIX shared-memory channel (not yet created).
    fn shm(tag: &str) -> Chan {
        Chan {
            name: format!("/{}", Self::unique(tag)),
        }
    }

    /// A name for a file-backed channel under the temp dir (not yet created).
    fn file(tag: &str) -> Chan {
        let path = std::env::temp_dir().join(Self::unique(tag));
        Chan {
            name: path.to_str().unwrap().to_string(),
        }
    }

    /// Creates the channel with `atbus-dump create`.
    fn create(self, size: &str, extra: &[&str]) -> Chan {
        let mut args = vec!["create", &self.name, "--size", size];
        args.extend_from_slice(extra);
        let out = dump(&args);
        assert_eq!(code(&out), 0, "create failed: {}", stderr(&out));
        self
    }

    /// The file holding a file-backed channel, for corrupting it.
    fn open_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.name)
            .unwrap()
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        let _ = atbus::Channel::unlink(&self.name);
    }
}

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dump(args: &[&str]) -> Output {
    command(BIN).args(args).output().unwrap()
}

fn dump_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = command(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("killed by a signal")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Runs a command expected to fail cleanly: exit 2, exactly one line on stderr starting
/// `atbus-dump: `, no panic. Returns that line.
fn fails_cleanly(args: &[&str]) -> String {
    let out = dump(args);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("atbus-dump: "), "{args:?}: {err}");
    err
}

fn send(name: &str, message: &str) {
    let out = dump(&["send", name, message]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Waits (bounded) for a condition another process brings about.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut backoff = atbus::Backoff::new();
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        backoff.snooze();
    }
}

// ---------------------------------------------------------------------------------------
// show

#[test]
fn show_json_counts_what_was_sent_and_received() {
    let ch = Chan::shm("show").create("1MiB", &["--timeout", "250ms"]);
    for i in 0..5 {
        send(&ch.name, &format!("message {i}"));
    }
    let out = dump(&["recv", &ch.name, "--count", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "message 0\nmessage 1\n");

    let out = dump(&["show", &ch.name, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["name"], ch.name.as_str());
    assert_eq!(v["header"]["magic"], "0x3130765355425441");
    assert_eq!(v["header"]["version"], atbus::layout::VERSION);
    let id = v["header"]["channel_id"].as_str().unwrap();
    assert_eq!(id.len(), 16, "{id}");
    assert_eq!(
        u64::from_str_radix(id, 16).unwrap(),
        view_channel_id(&ch.name)
    );
    assert_eq!(v["header"]["size"], 1 << 20);
    assert_eq!(v["header"]["node_size"], 128);
    assert_eq!(v["config"]["timeout_ns"], 250_000_000);
    assert_eq!(v["config"]["detect_dead_writers"], true);
    assert_eq!(v["stats"]["messages_sent"], 5);
    assert_eq!(v["stats"]["bytes_sent"], 5 * 9);
    assert_eq!(v["stats"]["messages_received"], 2);
    assert_eq!(v["stats"]["bytes_received"], 2 * 9);
    assert_eq!(v["stats"]["in_flight"], 3);
    assert_eq!(v["cursors"]["read"], 2);
    assert_eq!(v["cursors"]["write"], 5);
    assert_eq!(v["cursors"]["used_nodes"], 3);
    // recv gave the role back when it exited.
    assert_eq!(v["reader"], Value::Null);

    let text = stdout(&dump(&["show", &ch.name]));
    for needle in [
        "magic          0x3130765355425441",
        "timeout        250ms",
        "used           3 nodes",
        "reader           none",
        "messages_sent                     5",
        "crc_failures",
        "dead_writer_blocks",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn show_names_a_live_reader_and_recv_refuses_a_second_one() {
    let ch = Chan::shm("reader").create("256KiB", &[]);
    let holder = Proc(
        command(BIN)
            .args(["recv", &ch.name, "--follow"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    let view = atbus::Inspector::open(&ch.name).unwrap();
    wait_for("recv to take the reader role", || {
        view.reader_owner().is_some_and(|o| o.pid == pid)
    });

    let v = json(&dump(&["show", &ch.name, "--json"]));
    assert_eq!(v["reader"]["pid"], pid);
    assert_eq!(v["reader"]["alive"], true);
    let text = stdout(&dump(&["show", &ch.name]));
    assert!(text.contains(&format!("pid {pid} (alive)")), "{text}");

    let err = fails_cleanly(&["recv", &ch.name]);
    assert!(
        err.contains(&format!("reader role is held by live process {pid}")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// nodes

#[test]
fn nodes_prints_one_line_per_node_with_flags_and_free_positions() {
    let ch = Chan::shm("nodes").create("64KiB", &[]);
    send(&ch.name, "abc");
    send(&ch.name, &"x".repeat(200)); // 232 bytes with its header: 2 nodes
    let out = dump(&["nodes", &ch.name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    // Node 0: its head (START|WRITTEN at position 0), then the block header of "abc":
    // len 3, crc32c("abc") = 0x364b3fb7 sealed with position 0 (no change), little endian.
    assert!(
        text.lines().any(|l| l
            == "node 0 seq=0 start=yes written=yes padding=no \
                data=000000000000000303000000b73f4b36 <- read"),
        "{text}"
    );
    assert!(
        text.contains(
            "node 1 seq=1 start=yes written=yes padding=no data=0100000000000003c8000000"
        ),
        "{text}"
    );
    // The block's second node holds payload from its first byte.
    assert!(
        text.contains("node 2 word=0x7878787878787878 data=7878"),
        "{text}"
    );
    assert!(text.contains("(inside a block: payload)"), "{text}");
    assert!(text.contains("node 3 free next=3 data=") && text.contains("<- write"));
    // A few nodes before the read cursor: the end of the ring, free for the next lap.
    let count = atbus::Inspector::open(&ch.name).unwrap().info().node_count;
    assert!(
        text.contains(&format!("node {} free next={}", count - 1, count - 1)),
        "{text}"
    );

    let out = dump(&[
        "nodes", &ch.name, "--from", "1", "--count", "2", "--data", "4",
    ]);
    let lines: Vec<_> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("node "))
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        [
            "node 1 seq=1 start=yes written=yes padding=no data=01000000",
            "node 2 word=0x7878787878787878 data=78787878 (inside a block: payload)"
        ]
    );

    let v = json(&dump(&[
        "nodes", &ch.name, "--from", "0", "--count", "3", "--json",
    ]));
    assert_eq!(v["node_count"], count);
    assert_eq!(v["write_cursor"], 3);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["start"], true);
    assert_eq!(nodes[0]["written"], true);
    assert_eq!(nodes[0]["seq"], 0);
    assert_eq!(nodes[0]["next"], Value::Null);
    assert_eq!(nodes[0]["cursors"][0], "read");
    assert_eq!(nodes[0]["data"], "000000000000000303000000b73f4b36");
    assert_eq!(nodes[0]["head"], "published");
    // Node 2 is inside the second block: its first word is payload.
    assert_eq!(nodes[2]["head"], "other");
    assert_eq!(nodes[2]["free"], false);
    assert_eq!(nodes[2]["next"], Value::Null);
    assert_eq!(nodes[2]["seq"], Value::Null);
}

#[test]
fn nodes_caps_the_default_listing_and_says_so() {
    let ch = Chan::shm("cap").create("1MiB", &[]);
    let out = dump(&["send", &ch.name, "m", "--repeat", "400"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&dump(&["nodes", &ch.name]));
    assert_eq!(text.lines().filter(|l| l.starts_with("node ")).count(), 256);
    assert!(
        text.contains("cut at 256 of 408 nodes") && text.contains("--count 408"),
        "{text}"
    );
    let v = json(&dump(&["nodes", &ch.name, "--json"]));
    assert_eq!(v["truncated"], true);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 256);
    let v = json(&dump(&["nodes", &ch.name, "--count", "408", "--json"]));
    assert_eq!(v["truncated"], false);
    assert_eq!(v["nodes"].as_array().unwrap().len(), 408);
}

#[test]
fn nodes_from_past_the_end_of_the_ring_is_refused() {
    let ch = Chan::shm("from").create("64KiB", &[]);
    let err = fails_cleanly(&["nodes", &ch.name, "--from", "100000"]);
    assert!(err.contains("--from 100000 is past the last node"), "{err}");
}

// ---------------------------------------------------------------------------------------
// check

#[test]
fn check_of_a_healthy_channel_is_clean_and_exits_0() {
    let ch = Chan::shm("clean").create("64KiB", &[]);
    for i in 0..10 {
        send(&ch.name, &"y".repeat(i * 50));
    }
    let out = dump(&["recv", &ch.name, "--count", "3"]);
    assert_eq!(code(&out), 0);
    let out = dump(&["check", &ch.name]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("clean: no anomaly"),
        "{}",
        stdout(&out)
    );
    let v = json(&dump(&["check", &ch.name, "--json"]));
    assert_eq!(v["clean"], true);
    assert_eq!(v["blocks_ok"], 7);
    assert_eq!(v["bytes_ok"], (3..10).map(|i| i * 50).sum::<u64>());
    assert_eq!(v["anomalies"].as_array().unwrap().len(), 0);
}

/// Byte offset of node `index`'s data in a default (128-byte node) segment.
fn view_channel_id(name: &str) -> u64 {
    atbus::Inspector::open(name).unwrap().info().channel_id
}

fn node_offset(name: &str, index: u64) -> u64 {
    let info = atbus::Inspector::open(name).unwrap().info();
    info.data_offset as u64 + index * info.node_size as u64
}

fn write_at(file: &mut std::fs::File, offset: u64, bytes: &[u8]) {
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn check_reports_a_crc_mismatch_and_exits_1() {
    let ch = Chan::file("crc").create("64KiB", &[]);
    send(&ch.name, "first message");
    send(&ch.name, "second message");
    // Damage one payload byte of the second block (payload starts 32 bytes in).
    let at = node_offset(&ch.name, 1) + 32 + 3;
    write_at(&mut ch.open_file(), at, b"X");

    let out = dump(&["check", &ch.name, "--json"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["clean"], false);
    assert_eq!(v["blocks_ok"], 1);
    let a = &v["anomalies"][0];
    assert_eq!(a["kind"], "crc_mismatch");
    assert_eq!(a["position"], 1);
    assert_eq!(a["len"], 14);
    // Stored and compared sealed with the block's sequence (seq 1).
    let sealed = |bytes: &[u8]| atbus::layout::sealed_crc(atbus::layout::payload_crc(bytes), 1);
    assert_eq!(a["crc_header"], sealed(b"second message"));
    assert_eq!(a["crc_payload"], sealed(b"secXnd message"));
    let text = stdout(&dump(&["check", &ch.name]));
    assert!(
        text.contains("ANOMALY crc mismatch at position 1 (node 1) seq 1"),
        "{text}"
    );
    assert!(text.contains("1 anomaly found"), "{text}");
}

#[test]
fn check_reports_an_impossible_length() {
    let ch = Chan::file("len").create("64KiB", &[]);
    send(&ch.name, "hello");
    // The length field, 8 bytes into the block's first node (after its head).
    let at = node_offset(&ch.name, 0) + 8;
    write_at(&mut ch.open_file(), at, &0x7fff_0000u32.to_le_bytes());
    let out = dump(&["check", &ch.name, "--json"]);
    assert_eq!(code(&out), 1);
    let a = &json(&out)["anomalies"][0];
    assert_eq!(a["kind"], "bad_length");
    assert_eq!(a["len"], 0x7fff_0000u32);
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("exceeds the largest message"),
        "{a}"
    );
}

#[test]
fn check_reports_flagged_heads_beyond_the_write_cursor_as_orphans() {
    let ch = Chan::file("orphan").create("64KiB", &[]);
    send(&ch.name, "hello");
    // Node 5's head (its first word) claims to start a published block, but the write
    // cursor is at 1: nobody can have written it.
    let head = atbus::layout::NodeState::block(
        atbus::layout::FLAG_START | atbus::layout::FLAG_WRITTEN,
        77,
    );
    let at = node_offset(&ch.name, 5);
    write_at(&mut ch.open_file(), at, &head.0.to_le_bytes());
    let out = dump(&["check", &ch.name, "--json"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["blocks_ok"], 1);
    let a = &v["anomalies"][0];
    assert_eq!(a["kind"], "orphan");
    assert_eq!(a["index"], 5);
}

#[test]
fn check_skips_aborted_reservations_and_honours_checksums_off() {
    let ch = Chan::file("aborted").create("64KiB", &["--no-checksums"]);
    let writer = atbus::Channel::open(&ch.name).unwrap().writer();
    drop(writer.reserve(100).unwrap()); // dropped without commit: aborted
    send(&ch.name, "kept");
    let nodes = stdout(&dump(&["nodes", &ch.name, "--from", "0", "--count", "1"]));
    assert!(
        nodes.contains("node 0 seq=0 start=yes written=yes padding=no aborted=yes"),
        "{nodes}"
    );
    // With checksums off a damaged payload cannot be seen, and check says so.
    let at = node_offset(&ch.name, 1) + 32;
    write_at(&mut ch.open_file(), at, b"X");
    let out = dump(&["check", &ch.name, "--json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["aborted_blocks"], 1);
    assert_eq!(v["blocks_ok"], 1);
    assert_eq!(v["checksums"], false);
    let text = stdout(&dump(&["check", &ch.name]));
    assert!(text.contains("crc32c not verified"), "{text}");
    let v = json(&dump(&["show", &ch.name, "--json"]));
    assert_eq!(v["config"]["checksums"], false);
}

/// Not a test of its own: the child role of
/// `check_tells_a_stalled_writer_in_progress_from_a_dead_one_torn`. When the variable is
/// set, this process sends one message and stops itself with SIGSTOP half-way through
/// the payload, leaving a block flagged START, with its header written, but not WRITTEN.
#[test]
fn stall_writer_child_role() {
    let Ok(name) = std::env::var("ATBUS_DUMP_TEST_STALL") else {
        return;
    };
    fn stop_mid_payload(step: atbus::Step) {
        if step == atbus::Step::MidPayload {
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP).unwrap();
        }
    }
    atbus::set_fault_hook(stop_mid_payload);
    let writer = atbus::Channel::open(&name).unwrap().writer();
    let _ = writer.try_send(&[0x5a; 300]);
}

/// Starts a writer process that stops itself mid-send; returns when it is stopped.
fn stalled_writer(name: &str) -> Proc {
    let child = command(std::env::current_exe().unwrap())
        .args(["--exact", "stall_writer_child_role", "--nocapture"])
        .env("ATBUS_DUMP_TEST_STALL", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for("the writer to stop itself", || {
        atbus::process::stat(pid).is_some_and(|s| s.state == b'T')
    });
    Proc(child)
}

#[test]
fn check_tells_a_stalled_writer_in_progress_from_a_dead_one_torn() {
    let ch = Chan::shm("torn").create("64KiB", &[]);
    send(&ch.name, "before");
    let mut writer = stalled_writer(&ch.name);
    let pid = writer.0.id();

    // Alive but stopped: in progress, not an anomaly.
    let out = dump(&["check", &ch.name, "--settle", "1ms", "--json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["blocks_ok"], 1);
    let f = &v["in_progress"][0];
    assert_eq!(f["kind"], "in_progress");
    assert_eq!(f["position"], 1);
    assert_eq!(f["nodes"], 3); // 32 + 300 bytes in 128-byte nodes
    assert_eq!(f["len"], 300);
    assert_eq!(f["writer_pid"], pid);
    assert_eq!(f["writer_alive"], true);
    assert_eq!(f["writer_state"], "T");
    let text = stdout(&dump(&["check", &ch.name, "--settle", "1ms"]));
    assert!(text.contains("note    in progress at position 1"), "{text}");
    assert!(
        text.contains(&format!("writer pid {pid} is alive, stopped")),
        "{text}"
    );

    let nodes = stdout(&dump(&["nodes", &ch.name, "--from", "1", "--count", "1"]));
    assert!(
        nodes.contains("node 1 free next=1 data=01000000000000102c010000"),
        "{nodes}"
    );

    // Killed: the block is torn, and its writer is named as dead.
    writer.0.kill().unwrap();
    writer.0.wait().unwrap();
    let out = dump(&["check", &ch.name, "--json"]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let v = json(&out);
    let a = &v["anomalies"][0];
    assert_eq!(a["kind"], "torn");
    assert_eq!(a["writer_pid"], pid);
    assert_eq!(a["writer_alive"], false);
    assert_eq!(a["nodes"], 3);
    assert_eq!(a["nodes_since"], 0);
    let text = stdout(&dump(&["check", &ch.name]));
    assert!(
        text.contains(&format!(
            "ANOMALY torn block at position 1 (node 1) seq 1: claimed, not published; writer \
             pid {pid} is dead"
        )),
        "{text}"
    );

    // A reader skips it at once and delivers what follows; then the channel is clean.
    send(&ch.name, "after");
    let out = dump(&["recv", &ch.name]);
    assert_eq!(stdout(&out), "before\nafter\n");
    let v = json(&dump(&["show", &ch.name, "--json"]));
    assert_eq!(v["stats"]["dead_writer_blocks"], 1);
    assert_eq!(code(&dump(&["check", &ch.name])), 0);
}

// ---------------------------------------------------------------------------------------
// watch, list, create, unlink, send, recv

#[test]
fn watch_prints_plain_lines_when_not_on_a_terminal() {
    let ch = Chan::shm("watch").create("64KiB", &[]);
    send(&ch.name, "m");
    let out = dump(&["watch", &ch.name, "--interval", "5ms", "--count", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<_> = text.lines().filter(|l| l.starts_with("sent=")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        for field in ["recv=", "full=", "skips=", "crc=", "fill=", "used=1"] {
            assert!(l.contains(field), "{field} not in {l}");
        }
    }
    assert!(!text.contains('\x1b'), "escape codes on a pipe: {text:?}");
}

#[test]
fn list_finds_channels_by_their_magic() {
    let ch = Chan::shm("list").create("128KiB", &[]);
    send(&ch.name, "m");
    let v = json(&dump(&["list", "--json"]));
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == ch.name.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {v}", ch.name));
    assert_eq!(entry["size"], 128 << 10);
    assert_eq!(entry["node_size"], 128);
    assert_eq!(entry["used_nodes"], 1);
    assert_eq!(entry["reader"], Value::Null);
    let text = stdout(&dump(&["list"]));
    assert!(
        text.contains(&ch.name) && text.contains("128 KiB"),
        "{text}"
    );

    // A directory with one channel file and one other file lists only the channel.
    let dir = std::env::temp_dir().join(Chan::unique("listdir"));
    std::fs::create_dir(&dir).unwrap();
    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _guard = RmDir(dir.clone());
    std::fs::write(dir.join("not-a-channel"), b"hello world, not atbus").unwrap();
    let path = dir.join("ring");
    let path = path.to_str().unwrap();
    assert_eq!(code(&dump(&["create", path, "--size", "64K"])), 0);
    let v = json(&dump(&["list", "--dir", dir.to_str().unwrap(), "--json"]));
    let names: Vec<_> = v.as_array().unwrap().iter().map(|e| &e["name"]).collect();
    assert_eq!(names, [path]);
}

#[test]
fn list_shows_the_doorbell_of_an_event_loop_reader() {
    let ch = Chan::shm("list-bell").create("128KiB", &[]);
    let channel = atbus::Channel::open(&ch.name).unwrap();
    let find = || {
        let v = json(&dump(&["list", "--json"]));
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == ch.name.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{} not listed: {v}", ch.name))
    };
    assert_eq!(find()["doorbell"], Value::Null);
    let mut reader = channel.reader().unwrap();
    reader.readiness_fd().unwrap();
    let bell = format!("/dev/shm{}.bell", ch.name);
    assert_eq!(find()["doorbell"], bell.as_str());
    assert!(stdout(&dump(&["list"])).contains(&format!("doorbell {bell}")));
    // Listing skips the socket itself (no atbus magic), and the reader removes it.
    drop(reader);
    assert_eq!(find()["doorbell"], Value::Null);
}

#[test]
fn create_takes_human_units_and_unlink_removes_the_channel() {
    let ch = Chan::shm("create");
    let out = dump(&[
        "create",
        &ch.name,
        "--size",
        "2M",
        "--node-size",
        "256",
        "--timeout",
        "4ms",
        "--mode",
        "640",
        "--allow-shared-mode",
        "--protect",
        "1KiB",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&format!("created {}: 2 MiB", ch.name)));
    let v = json(&dump(&["show", &ch.name, "--json"]));
    assert_eq!(v["header"]["size"], 2 << 20);
    assert_eq!(v["header"]["node_size"], 256);
    assert_eq!(v["config"]["timeout_ns"], 4_000_000);
    assert_eq!(v["config"]["protect_nodes"], 4);
    let file = format!("/dev/shm{}", ch.name);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);

    let err = fails_cleanly(&["create", &ch.name, "--size", "1M"]);
    assert!(err.contains("already exists"), "{err}");
    let out = dump(&["unlink", &ch.name]);
    assert_eq!(code(&out), 0);
    assert!(std::fs::metadata(&file).is_err());
    fails_cleanly(&["unlink", &ch.name]);
}

#[test]
fn send_takes_a_file_or_stdin_and_recv_prints_hex() {
    let ch = Chan::shm("sendrecv").create("64KiB", &[]);
    let path = std::env::temp_dir().join(Chan::unique("payload"));
    std::fs::write(&path, [0u8, 1, 2, 0xff]).unwrap();
    let out = dump(&["send", &ch.name, "--file", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = dump_stdin(&["send", &ch.name, "-"], b"from stdin");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = dump(&["recv", &ch.name, "--hex"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "000102ff\n66726f6d20737464696e\n");
    assert!(
        stderr(&out).contains("took the reader role"),
        "{}",
        stderr(&out)
    );
    // Nothing left: recv without --follow stops at once.
    let out = dump(&["recv", &ch.name]);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("received 0 messages"));
}

#[test]
fn send_too_large_fails_with_the_atbus_error() {
    let ch = Chan::shm("large").create("64KiB", &[]);
    let out = dump_stdin(&["send", &ch.name, "-"], &vec![7u8; 1 << 20]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("can never fit"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------
// Generated load: `send --count --size --seq --rate` and `recv --check-seq`.

/// The summary line of a `send --count` run (its only stdout line).
fn send_summary(args: &[&str]) -> String {
    let out = dump(args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

#[test]
fn send_count_seq_carries_sender_and_sequence_and_recv_check_seq_passes_it() {
    let ch = Chan::shm("seqload").create("4MiB", &[]);
    let text = send_summary(&[
        "send", &ch.name, "--count", "1000", "--size", "8-2048", "--seq",
    ]);
    assert!(
        text.starts_with("sent 1000 messages (8-2048 B, ")
            && text.contains(", sender 0 seq 0-999) to ")
            && text.contains(" msgs/s, "),
        "{text}"
    );
    let out = dump(&["recv", &ch.name, "--check-seq"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "checked 1000 messages from 1 sender (0: seq 0-999): in order, none missing, \
         every byte as sent\n"
    );
    assert!(
        stderr(&out).contains("received 1000 messages"),
        "{}",
        stderr(&out)
    );

    // The header is the little-endian word sender << 48 | seq, and the sizes stay in
    // range: read three raw.
    send_summary(&[
        "send",
        &ch.name,
        "--count",
        "3",
        "--size",
        "16",
        "--seq",
        "--sender",
        "7",
        "--first-seq",
        "41",
    ]);
    let out = dump(&["recv", &ch.name, "--hex"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, seq) in lines.iter().zip(41u8..) {
        assert_eq!(line.len(), 32, "16 bytes: {line}");
        assert_eq!(&line[..16], format!("{seq:02x}00000000000700"), "{line}");
    }
}

#[test]
fn recv_check_seq_reports_gaps_repeats_and_damage_and_exits_1() {
    let ch = Chan::shm("seqbad").create("1MiB", &[]);
    send_summary(&["send", &ch.name, "--count", "5", "--seq"]); // 0-4
    send_summary(&[
        "send",
        &ch.name,
        "--count",
        "2",
        "--seq",
        "--first-seq",
        "8",
    ]); // 5-7 missing
    send_summary(&[
        "send",
        &ch.name,
        "--count",
        "2",
        "--seq",
        "--first-seq",
        "3",
    ]); // 3, 4 again
    send(&ch.name, "not a sequence message"); // damaged
    send_summary(&["send", &ch.name, "--count", "4", "--seq", "--sender", "2"]);
    let out = dump(&["recv", &ch.name, "--check-seq"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_eq!(
        stdout(&out),
        "checked 14 messages from 2 senders (0: seq 0-9, 2: seq 0-3): 3 missing, 2 repeated \
         or out of order, 1 damaged\n"
    );
    assert!(
        err.contains("sender 0: seq 8 where 5 was due: 3 missing"),
        "{err}"
    );
    assert!(
        err.contains("sender 0: seq 3 again or out of order (10 was due)"),
        "{err}"
    );
    assert!(err.contains("is not as sent"), "{err}");
}

#[test]
fn send_count_without_seq_sends_sizes_in_range() {
    let ch = Chan::shm("plainload").create("1MiB", &[]);
    let text = send_summary(&["send", &ch.name, "--count", "200", "--size", "100-120"]);
    assert!(text.starts_with("sent 200 messages (100-120 B, "), "{text}");
    let out = dump(&["recv", &ch.name, "--hex"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        assert!((200..=240).contains(&line.len()), "{}", line.len());
    }
}

#[test]
fn send_rate_spaces_the_messages_out() {
    let ch = Chan::shm("rate").create("1MiB", &[]);
    let start = Instant::now();
    send_summary(&["send", &ch.name, "--count", "21", "--seq", "--rate", "100"]);
    // 21 messages at 100/s: the last one is due 200 ms after the first (a lower bound:
    // a busy host only makes it later).
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    let start = Instant::now();
    send_summary(&["send", &ch.name, "hello", "--repeat", "11", "--rate", "100"]);
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    let out = dump(&["recv", &ch.name, "--count", "21", "--check-seq"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn generated_send_refuses_bad_sizes_and_rates_in_one_line() {
    let ch = Chan::shm("loadargs").create("64KiB", &[]);
    let err = fails_cleanly(&["send", &ch.name, "--count", "5", "--size", "4", "--seq"]);
    assert!(
        err.contains("--seq needs messages of at least 8 bytes"),
        "{err}"
    );
    let err = fails_cleanly(&["send", &ch.name, "--count", "5", "--size", "1MiB"]);
    assert!(err.contains("takes messages up to"), "{err}");
    for (args, expect) in [
        (&["--count", "5", "--size", "10-5"][..], "MIN <= MAX"),
        (&["--count", "5", "--rate", "0"], "above 0"),
        (&["--count", "5", "--sender", "3"], "--seq"),
        (&["hello", "--count", "5"], "cannot be used with"),
        (&["--size", "64"], "required"),
    ] {
        let mut full = vec!["send", ch.name.as_str()];
        full.extend_from_slice(args);
        let out = dump(&full);
        assert_eq!(code(&out), 2, "{full:?}");
        assert!(stderr(&out).contains(expect), "{full:?}: {}", stderr(&out));
    }
    // Nothing was sent by any of them.
    let out = dump(&["recv", &ch.name]);
    assert!(
        stderr(&out).contains("received 0 messages"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Errors: exit 2, one line, no panic.

#[test]
fn a_missing_channel_is_one_line_and_exit_2_for_every_command() {
    let ch = Chan::shm("missing");
    for cmd in ["show", "nodes", "check", "watch", "recv", "unlink"] {
        let err = fails_cleanly(&[cmd, &ch.name]);
        assert!(err.contains("does not exist"), "{cmd}: {err}");
    }
    let err = fails_cleanly(&["send", &ch.name, "hi"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_corrupt_header_is_reported_not_trusted() {
    let ch = Chan::file("corrupt").create("64KiB", &[]);
    // Node size (u32 at offset 20) of 100: not a power of two.
    write_at(&mut ch.open_file(), 20, &100u32.to_le_bytes());
    for cmd in ["show", "nodes", "check", "watch"] {
        let err = fails_cleanly(&[cmd, &ch.name]);
        assert!(err.contains("is corrupt: node size 100"), "{cmd}: {err}");
    }
    // A node count far beyond the object's size.
    write_at(&mut ch.open_file(), 20, &128u32.to_le_bytes());
    write_at(&mut ch.open_file(), 24, &(1u64 << 40).to_le_bytes());
    let err = fails_cleanly(&["nodes", &ch.name, "--json"]);
    assert!(err.contains("is corrupt"), "{err}");
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let short = Chan::file("short");
    std::fs::write(&short.name, b"ATBUSv01 but nothing else").unwrap();
    let err = fails_cleanly(&["show", &short.name]);
    assert!(err.contains("not an atbus segment or truncated"), "{err}");

    let foreign = Chan::file("foreign");
    std::fs::write(&foreign.name, vec![0xabu8; 8192]).unwrap();
    let err = fails_cleanly(&["check", &foreign.name]);
    assert!(err.contains("is not an atbus segment"), "{err}");

    // A real segment cut short after creation.
    let cut = Chan::file("cut").create("64KiB", &[]);
    cut.open_file().set_len(16384).unwrap();
    let err = fails_cleanly(&["show", &cut.name, "--json"]);
    assert!(err.contains("not an atbus segment or truncated"), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["create", "/x", "--size", "12XB"][..],
        &["create", "/x"],
        &["watch", "/x", "--interval", "0"],
        &["watch", "/x", "--interval", "100"],
        &["nodes", "/x", "--data", "lots"],
        &["bogus"],
    ] {
        let out = dump(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(!stderr(&out).contains("panicked"));
    }
    let out = dump(&["create", "/x", "--size", "12XB"]);
    assert!(stderr(&out).contains("unknown unit"), "{}", stderr(&out));
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "show", "nodes", "watch", "check", "list", "create", "unlink", "send", "recv",
    ] {
        let out = dump(&[cmd, "--help"]);
        assert_eq!(code(&out), 0, "{cmd}");
        assert!(stdout(&out).contains("Usage: atbus-dump"), "{cmd}");
    }
}

// ---------------------------------------------------------------------------------------
// A busy channel: the read-only commands work while writers and a reader run flat out.

#[test]
fn inspection_works_while_writers_and_the_reader_run() {
    let ch = Chan::shm("load").create("256KiB", &[]);
    let spawn = |args: &[&str]| {
        Proc(
            command(BIN)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let _reader = spawn(&["recv", &ch.name, "--follow"]);
    let msg = "z".repeat(300);
    let _writers: Vec<_> = (0..2)
        .map(|_| {
            spawn(&[
                "send",
                &ch.name,
                &msg,
                "--repeat",
                "100000000",
                "--timeout",
                "60s",
            ])
        })
        .collect();
    let view = atbus::Inspector::open(&ch.name).unwrap();
    wait_for("messages to flow", || view.stats().messages_received > 100);

    let out = dump(&["show", &ch.name, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert!(v["stats"]["messages_sent"].as_u64().unwrap() > 100);
    assert_eq!(v["reader"]["alive"], true);

    let out = dump(&["nodes", &ch.name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| l.starts_with("node ")));

    // Writers alive and well: no corruption may be reported. Only an unfinished block
    // that did not move for the whole settle time could count (a writer descheduled that
    // long on a busy host), and then only as "stuck", never torn or corrupt.
    for _ in 0..5 {
        let out = dump(&["check", &ch.name, "--json"]);
        assert!(matches!(code(&out), 0 | 1), "{}", stderr(&out));
        let v = json(&out);
        for a in v["anomalies"].as_array().unwrap() {
            assert_eq!(a["kind"], "stuck", "false alarm under load: {a}");
        }
    }

    let out = dump(&["watch", &ch.name, "--interval", "20ms", "--count", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rates: Vec<_> = stdout(&out)
        .lines()
        .filter(|l| l.starts_with("sent="))
        .map(String::from)
        .collect();
    assert_eq!(rates.len(), 2);
    let v = json(&dump(&["list", "--json"]));
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == ch.name.as_str()));
}

#[test]
fn recv_follow_sleeps_until_messages_arrive_and_prints_each() {
    let ch = Chan::shm("follow").create("256KiB", &[]);
    // Killed if the test fails before it has its three messages.
    let mut child = Proc(
        command(BIN)
            .args(["recv", &ch.name, "--follow", "--count", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Send only once the follower is asleep on the channel's futex: each message must
    // wake it.
    let view = atbus::Inspector::open(&ch.name).unwrap();
    for m in ["first", "second", "third"] {
        wait_for("recv --follow to fall asleep", || view.reader_sleeping());
        send(&ch.name, m);
    }
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut printed).unwrap();
    assert!(child.0.wait().unwrap().success());
    assert_eq!(printed, "first\nsecond\nthird\n");
    let s = view.stats();
    assert_eq!(s.messages_received, 3);
    assert!(s.wakeups >= 1, "{s:?}");
}

// ---------------------------------------------------------------------------------------
// Someone else's channel: the commands that write refuse it unless --allow-foreign; the
// read-only ones show whose it is. Giving an object away needs root (the tests run so).

#[test]
fn another_users_channel_is_shown_but_not_written_without_allow_foreign() {
    let ch = Chan::shm("foreign-owner").create("64KiB", &[]);
    let path = format!("/dev/shm{}", ch.name);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534))
        .unwrap_or_else(|e| panic!("chown {path} to nobody needs root: {e}"));

    for args in [
        &["send", &ch.name, "hello"][..],
        &["recv", &ch.name, "--count", "1"],
    ] {
        let err = fails_cleanly(args);
        assert!(
            err.contains("owned by uid 65534 (nobody)")
                && err.contains("mode 0600")
                && err.contains("--allow-foreign"),
            "{args:?}: {err}"
        );
    }
    let out = dump(&["send", &ch.name, "hello", "--allow-foreign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = dump(&["recv", &ch.name, "--count", "1", "--allow-foreign"]);
    assert_eq!(
        (code(&out), stdout(&out)),
        (0, "hello\n".into()),
        "{}",
        stderr(&out)
    );

    let text = stdout(&dump(&["show", &ch.name]));
    assert!(
        text.contains("owner          uid 65534 (nobody), mode 0600"),
        "{text}"
    );
    let v = json(&dump(&["show", &ch.name, "--json"]));
    assert_eq!(v["header"]["owner_uid"], 65534);
    assert_eq!(v["header"]["owner_name"], "nobody");
    assert_eq!(v["header"]["mode"], "0600");
    let v = json(&dump(&["list", "--json"]));
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == ch.name.as_str())
        .unwrap_or_else(|| panic!("{} not listed: {v}", ch.name));
    assert_eq!(
        (entry["owner_uid"].clone(), entry["mode"].clone()),
        (65534.into(), "0600".into())
    );
    assert_eq!(code(&dump(&["check", &ch.name])), 0);
}

#[test]
fn a_group_writable_channel_needs_allow_shared_mode_and_allow_foreign() {
    let ch = Chan::shm("shared-mode");
    let err = fails_cleanly(&["create", &ch.name, "--size", "64KiB", "--mode", "660"]);
    assert!(err.contains("allow_shared_mode"), "{err}");
    let ch = ch.create("64KiB", &["--mode", "660", "--allow-shared-mode"]);
    let err = fails_cleanly(&["send", &ch.name, "x"]);
    assert!(
        err.contains("writable by users other than its owner"),
        "{err}"
    );
    let out = dump(&["send", &ch.name, "x", "--allow-foreign"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&dump(&["show", &ch.name]));
    assert!(
        text.contains("mode 0660 (writable by group/others"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// A segment resized after creation (anyone with write access can ftruncate it): `check`
// reports it from fstat, without mapping the lost pages. The test process never maps it.

#[test]
fn check_reports_a_segment_shrunk_or_grown_after_creation() {
    for ch in [Chan::shm("shrunk"), Chan::file("shrunk-file")] {
        let ch = ch.create("64KiB", &[]);
        send(&ch.name, "before");
        let path = if ch.name.matches('/').count() == 1 {
            format!("/dev/shm{}", ch.name)
        } else {
            ch.name.clone()
        };
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert_eq!(code(&dump(&["check", &ch.name])), 0);

        // Grown: harmless to mappings, but not what was created.
        file.set_len(1 << 20).unwrap();
        let out = dump(&["check", &ch.name]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stdout(&out).contains("grown segment"), "{}", stdout(&out));
        let text = stdout(&dump(&["show", &ch.name]));
        assert!(
            text.contains("file size      1048576 bytes, the header says 65536"),
            "{text}"
        );
        // Back to its size: clean again.
        file.set_len(65536).unwrap();
        assert_eq!(code(&dump(&["check", &ch.name])), 0);

        // Shrunk, with the header page still there.
        file.set_len(16384).unwrap();
        let out = dump(&["check", &ch.name]);
        let text = stdout(&out);
        assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
        assert!(
            text.contains("shrunk segment")
                && text.contains("16384 bytes")
                && text.contains("declares 65536")
                && text.contains("SIGBUS"),
            "{text}"
        );
        let v = json(&dump(&["check", &ch.name, "--json"]));
        assert_eq!(v["clean"], false);
        assert_eq!(v["resized"], "shrunk");
        assert_eq!(v["file_size"], 16384);
        assert_eq!(v["declared_size"], 65536);
        // Shrunk below the header: still a report, not a crash.
        file.set_len(100).unwrap();
        let out = dump(&["check", &ch.name]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert!(stdout(&out).contains("shrunk segment"), "{}", stdout(&out));
    }
}
