//! Multi-process tests: writers and readers in separate processes with separate
//! mappings, and writers stopped or killed between the steps of a send.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use atbus::{Channel, Config, Error};
use atbus_tests::child::{die_with_parent, ChildGuard};
use atbus_tests::{check_payload, payload, TestChannel, EXIT_ABANDONED};
use nix::sys::signal::Signal;

mod common;
use common::{peer, recv_within, signal, wait_stopped};

fn small_config(timeout: Duration) -> Config {
    Config::builder()
        .timeout(timeout)
        .build()
        .expect("a valid timeout")
}

#[test]
fn three_writer_processes_and_a_reader_process_deliver_every_byte_in_order() {
    const PER_WRITER: u64 = 100_000;
    let ch = TestChannel::new("3w1r");
    Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let total = (3 * PER_WRITER).to_string();
    let reader = peer(&["reader", &ch.name, &total]);
    let n = PER_WRITER.to_string();
    let writers: Vec<ChildGuard> = (0..3)
        .map(|id| peer(&["writer", &ch.name, &id.to_string(), &n, "16", "2048"]))
        .collect();
    for w in writers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "writer failed: {:?}", out);
    }
    let out = reader.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reader: {text}");
    assert!(
        text.starts_with(&format!("delivered={total} bad_nodes=0 bad_blocks=0 ")),
        "{text}"
    );
    let s = Channel::open(&ch.name).unwrap().stats();
    assert_eq!(s.messages_sent, 3 * PER_WRITER);
    assert_eq!(s.messages_received, 3 * PER_WRITER);
    assert_eq!(s.bytes_sent, s.bytes_received);
}

/// A writer stopped at `step` holds a claimed, unwritten block. The reader must not skip
/// it before the timeout, must skip it (and only it) after, and must deliver what other
/// writers sent before and after it. When continued, the stalled writer learns that its
/// message was abandoned.
fn stalled_writer_is_skipped_after_the_timeout(step: &str) {
    let timeout = Duration::from_millis(100);
    let ch = TestChannel::new(step);
    let channel = Channel::create(&ch.name, 1 << 20, &small_config(timeout)).unwrap();
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    w.try_send(&payload(1, 0, 100)).unwrap();
    let stalled = peer(&["stall-writer", &ch.name, step, "1000"]);
    wait_stopped(&stalled);
    w.try_send(&payload(1, 1, 100)).unwrap();
    w.try_send(&payload(1, 2, 3000)).unwrap();

    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((1, 0)));
    let waited_from = Instant::now();
    let next = recv_within(&mut r, Duration::from_secs(20));
    assert!(
        waited_from.elapsed() >= timeout,
        "skipped after {:?}, before the {timeout:?} timeout",
        waited_from.elapsed()
    );
    assert_eq!(check_payload(&next), Ok((1, 1)));
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((1, 2)));
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));

    let s = channel.stats();
    let nodes = (32 + 1000u64).div_ceil(128);
    assert_eq!(s.timeout_blocks, 1, "{s:?}");
    assert_eq!(s.bad_nodes, nodes, "{s:?}");
    assert_eq!(s.dead_writer_blocks + s.bad_blocks, 0, "{s:?}");
    assert_eq!(s.messages_received, 3);

    // Continued, the writer finds its block gone and says so.
    signal(&stalled, Signal::SIGCONT);
    let out = stalled.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_ABANDONED), "{out:?}");
    assert_eq!(channel.stats().abandoned, 1);
    // Nothing it did afterwards reaches the reader.
    w.try_send(&payload(1, 3, 50)).unwrap();
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((1, 3)));
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    assert_eq!(channel.stats().bad_nodes, nodes);
}

#[test]
fn writer_stalled_after_claim_before_start_is_skipped_after_the_timeout() {
    stalled_writer_is_skipped_after_the_timeout("after-claim");
}

#[test]
fn writer_stalled_after_its_header_is_skipped_after_the_timeout() {
    stalled_writer_is_skipped_after_the_timeout("after-header");
}

#[test]
fn writer_stalled_mid_payload_is_skipped_after_the_timeout() {
    stalled_writer_is_skipped_after_the_timeout("mid-payload");
}

#[test]
fn writer_stalled_before_publish_is_skipped_after_the_timeout() {
    stalled_writer_is_skipped_after_the_timeout("before-publish");
}

#[test]
fn killed_writer_is_skipped_at_once_without_waiting_for_the_timeout() {
    // A timeout the test would never outlive: only dead-writer detection can skip.
    let ch = TestChannel::new("killed");
    let cfg = small_config(Duration::from_secs(3600));
    let channel = Channel::create(&ch.name, 1 << 20, &cfg).unwrap();
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    let stalled = peer(&["stall-writer", &ch.name, "mid-payload", "1500"]);
    wait_stopped(&stalled);
    w.try_send(&payload(2, 0, 64)).unwrap();
    signal(&stalled, Signal::SIGKILL);
    let status = stalled.wait_with_output().unwrap().status;
    assert_eq!(status.code(), None, "killed by a signal");

    let got = recv_within(&mut r, Duration::from_secs(20));
    assert_eq!(check_payload(&got), Ok((2, 0)));
    let s = channel.stats();
    assert_eq!(s.dead_writer_blocks, 1, "{s:?}");
    assert_eq!(s.timeout_blocks, 0, "{s:?}");
    assert_eq!(s.bad_nodes, (32 + 1500u64).div_ceil(128), "{s:?}");
}

/// A writer stopped at `step` has its block skipped; a live writer wraps round and
/// publishes a 800-byte message (the victim) on the same nodes; the stalled writer then
/// resumes. Returns the channel's counters after the reader has taken everything.
fn stalled_writer_resumes_into_reused_nodes(step: &str) -> atbus::Stats {
    // 16 nodes: the largest message takes 7. The stalled writer's block (nodes 0..7) is
    // skipped, a live writer wraps round and publishes a block on the same nodes, then
    // the stalled writer resumes and writes the second half of its payload over it.
    let ch = TestChannel::new(step);
    let size = 4096 + 16 * 128;
    let channel =
        Channel::create(&ch.name, size, &small_config(Duration::from_millis(50))).unwrap();
    assert_eq!(channel.node_count(), 16);
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    let stalled = peer(&["stall-writer", &ch.name, step, "800"]);
    wait_stopped(&stalled);
    // Nodes 7..16 and then 0..7 again.
    for seq in 0..9 {
        w.send_timeout(&payload(3, seq, 60), Duration::from_secs(20))
            .unwrap();
        if seq == 0 {
            // Wait out the torn block so the ring moves on.
            assert_eq!(
                check_payload(&recv_within(&mut r, Duration::from_secs(20))),
                Ok((3, 0))
            );
        }
    }
    for seq in 1..9 {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((3, seq)));
    }
    let victim = payload(3, 9, 800);
    w.try_send(&victim).unwrap();
    assert_eq!(
        r.position() % 16,
        0,
        "the victim block sits on the stalled writer's nodes"
    );

    signal(&stalled, Signal::SIGCONT);
    let out = stalled.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_ABANDONED), "{out:?}");

    // Whatever happened to the victim, what arrives next is whole.
    let mut got = Vec::new();
    w.try_send(&payload(3, 10, 60)).unwrap();
    while let Ok(m) = r.try_recv_vec() {
        got.push(check_payload(&m).expect("a delivered message is never damaged"));
    }
    assert_eq!(got.last(), Some(&(3, 10)));
    let s = channel.stats();
    assert_eq!(s.timeout_blocks, 1, "{s:?}");
    assert_eq!(s.abandoned, 1, "{s:?}");
    // Nine messages were read before the stalled writer resumed.
    assert_eq!(s.messages_received, 9 + got.len() as u64, "{s:?}");
    s
}

#[test]
fn stalled_writer_resuming_mid_copy_into_reused_nodes_cannot_get_bytes_delivered() {
    // Stopped mid-copy, it writes the rest of its payload over the victim: the victim
    // fails its crc and is skipped, counted; the stalled writer is told Abandoned.
    let s = stalled_writer_resumes_into_reused_nodes("mid-payload");
    assert_eq!((s.crc_failures, s.bad_blocks), (1, 1), "{s:?}");
}

#[test]
fn stalled_writer_resuming_before_its_copy_leaves_reused_nodes_alone() {
    // Stopped right after its claim, it looks at its block before writing anything,
    // finds it skipped, and writes nothing: the victim is delivered whole.
    let s = stalled_writer_resumes_into_reused_nodes("after-claim");
    assert_eq!((s.crc_failures, s.bad_blocks), (0, 0), "{s:?}");
}

#[test]
fn a_live_reader_process_keeps_the_role_and_a_dead_one_loses_it() {
    let ch = TestChannel::new("role");
    let channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let w = channel.writer();
    for seq in 0..10 {
        w.try_send(&payload(4, seq, 200)).unwrap();
    }
    // The other process reads 4 messages and holds the role.
    let mut holder = peer(&["hold-reader", &ch.name, "4"]);
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    for seq in 0..4 {
        assert_eq!(lines.next().unwrap().unwrap(), format!("got=4:{seq}"));
    }
    assert_eq!(lines.next().unwrap().unwrap(), "holding");
    match channel.reader() {
        Err(Error::ReaderBusy { pid }) => assert_eq!(pid, holder.id()),
        other => panic!("{other:?}"),
    }
    signal(&holder, Signal::SIGKILL);
    holder.wait().unwrap();

    // Taken over: the new reader resumes after what the dead one consumed, even though
    // it had not released those nodes yet, and delivers nothing twice.
    let mut r = channel.reader().unwrap();
    for seq in 4..10 {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((4, seq)));
    }
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = channel.stats();
    assert_eq!(s.reader_takeovers, 1);
    assert_eq!(s.messages_received, 10);
    assert_eq!(s.bad_nodes, 0, "{s:?}");
}

#[test]
fn a_reader_whose_role_was_taken_stops_with_reader_role_lost() {
    let ch = TestChannel::new("stolen");
    let channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let w = channel.writer();
    for seq in 0..10 {
        w.send(&payload(5, seq, 200)).unwrap();
    }
    let mut holder = peer(&["hold-reader", &ch.name, "4"]);
    let mut stdin = holder.stdin.take().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    for seq in 0..4 {
        assert_eq!(lines.next().unwrap().unwrap(), format!("got=5:{seq}"));
    }
    assert_eq!(lines.next().unwrap().unwrap(), "holding");

    // The record is overwritten with a process that cannot exist (pid 2^31 - 1), so the
    // role is up for grabs, and this process takes it while the holder lives on.
    atbus_tests::overwrite_reader_owner(&ch.name, i32::MAX as u64);
    let mut r = channel.reader().unwrap();
    assert_eq!(channel.stats().reader_takeovers, 1);

    // The old reader finds out at its next receive, and again at every one after.
    use std::io::Write;
    let me = std::process::id();
    for _ in 0..2 {
        writeln!(stdin, "recv").unwrap();
        assert_eq!(
            lines.next().unwrap().unwrap(),
            format!("error=ReaderRoleLost {{ pid: {me} }}")
        );
    }
    // The new reader delivers the rest, each message once.
    for seq in 4..10 {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((5, seq)));
    }
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let released = channel.stats().read_cursor;
    // The old reader exits (dropping its reader) without touching role or cursor.
    drop(stdin);
    assert!(holder.wait().unwrap().success());
    let view = atbus::Inspector::open(&ch.name).unwrap();
    assert_eq!(view.reader_owner().map(|o| o.pid), Some(me));
    assert_eq!(channel.stats().read_cursor, released);
    assert_eq!(channel.stats().messages_received, 10);
    w.send(&payload(5, 10, 200)).unwrap();
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((5, 10)));
}

#[test]
fn a_process_that_may_not_look_at_another_judges_it_alive() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let judge = |pid: u32, start: u64| {
        let out = die_with_parent(&mut Command::new(env!("CARGO_BIN_EXE_atbus-peer")))
            .args(["liveness", &pid.to_string(), &start.to_string()])
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run atbus-peer as uid 65534 (the tests run as root)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // This process (root) seen by uid nobody: kill(pid, 0) is EPERM, and where /proc
    // hides other users' processes (hidepid) its stat cannot be read either.
    let (pid, start) = atbus::process::current();
    assert_eq!(judge(pid, start), "alive=true same=true\n");
    // A process that is gone is gone, whoever looks.
    let mut gone = ChildGuard::spawn(
        Command::new("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    assert_eq!(judge(gone_pid, 0), "alive=false same=false\n");
}
