//! Event-loop waiting across processes: a tokio reader fed by writer processes, ping-pong
//! through readiness fds with the reader armed before every message, a reader killed and
//! replaced while writers keep sending, a writer that reaches each new reader and each
//! re-created channel of the same name, writers woken from a full ring by the reader, and
//! an armed reader that outlives a writer killed mid-message.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use atbus::{Arm, AsyncReader, AsyncWriter, Backoff, Channel, Config, Error, Inspector};
use atbus_tests::child::ChildGuard;
use atbus_tests::{check_payload, payload, TestChannel};
use nix::sys::signal::Signal;

mod common;
use common::{peer, signal, wait_stopped};

/// A current-thread tokio runtime with I/O and timers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Checks each writer's messages arrive in order, every byte.
#[derive(Default)]
struct Order {
    next: HashMap<u64, u64>,
    total: u64,
}

impl Order {
    fn add(&mut self, msg: &[u8]) {
        let (id, seq) = check_payload(msg).unwrap_or_else(|e| panic!("corrupt message: {e}"));
        let next = self.next.entry(id).or_default();
        assert_eq!(
            seq, *next,
            "writer {id}: message {seq} arrived, {next} was due"
        );
        *next += 1;
        self.total += 1;
    }
}

/// Waits for a child to exit and checks it succeeded.
fn finished(child: ChildGuard, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn tokio_reader_gets_every_byte_of_three_writer_processes_in_order() {
    const WRITERS: u64 = 3;
    const PER_WRITER: u64 = 4000;
    let ch = TestChannel::new("tokio-three");
    // Small enough that writers wait for space now and then.
    let channel = Channel::create(&ch.name, 128 << 10, &Config::default()).unwrap();
    let reader = channel.reader().unwrap();
    let writers: Vec<ChildGuard> = (0..WRITERS)
        .map(|id| {
            let role = if id == 0 { "blocking-writer" } else { "writer" };
            peer(&[
                role,
                &ch.name,
                &id.to_string(),
                &PER_WRITER.to_string(),
                "16",
                "3000",
            ])
        })
        .collect();
    let order = runtime().block_on(async {
        let mut reader = AsyncReader::new(reader).unwrap();
        let mut order = Order::default();
        let mut buf = vec![0u8; 4096];
        let limit = Duration::from_secs(60);
        // Each way of receiving takes its turn: recv, recv_meta, recv_batch, the Stream.
        let mut turn = 0u64;
        while order.total < WRITERS * PER_WRITER {
            turn += 1;
            match turn % 4 {
                0 => {
                    let n = tokio::time::timeout(limit, reader.recv(&mut buf))
                        .await
                        .expect("no message for 60 s")
                        .unwrap();
                    order.add(&buf[..n]);
                }
                1 => {
                    let meta = tokio::time::timeout(limit, reader.recv_meta(&mut buf))
                        .await
                        .expect("no message for 60 s")
                        .unwrap();
                    order.add(&buf[..meta.len]);
                    let (id, _) = check_payload(&buf[..meta.len]).unwrap();
                    assert_eq!(meta.writer_pid, writers[id as usize].id());
                }
                2 => {
                    let left = (WRITERS * PER_WRITER - order.total) as usize;
                    let mut batch = Vec::new();
                    tokio::time::timeout(
                        limit,
                        reader.recv_batch(left.min(16), |m| batch.push(m.to_vec())),
                    )
                    .await
                    .expect("no message for 60 s")
                    .unwrap();
                    batch.iter().for_each(|m| order.add(m));
                }
                _ => {
                    let next = std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(std::pin::Pin::new(&mut reader), cx)
                    });
                    let msg = tokio::time::timeout(limit, next)
                        .await
                        .expect("no message for 60 s")
                        .expect("the stream never ends")
                        .unwrap();
                    order.add(&msg);
                }
            }
        }
        order
    });
    for (i, w) in writers.into_iter().enumerate() {
        finished(w, &format!("writer {i}"));
    }
    assert_eq!(order.total, WRITERS * PER_WRITER);
    for id in 0..WRITERS {
        assert_eq!(order.next[&id], PER_WRITER);
    }
    let s = channel.stats();
    assert_eq!(s.messages_sent, WRITERS * PER_WRITER);
    assert_eq!(s.messages_received, WRITERS * PER_WRITER);
    assert_eq!(s.bad_nodes + s.bad_blocks, 0, "{s:?}");
}

#[test]
fn ping_pong_ten_thousand_rounds_with_the_reader_armed_and_asleep_before_every_message() {
    // Both sides wait on readiness fds: the echo process with poll(2), this one in tokio.
    // Each message is sent only once its reader has armed, the racy moment; a lost
    // wake-up would show as a 20 s timeout.
    const ROUNDS: u64 = 10_000;
    let ping = TestChannel::new("fd-ping");
    let pong = TestChannel::new("fd-pong");
    let ping_ch = Channel::create(&ping.name, 1 << 20, &Config::default()).unwrap();
    let pong_ch = Channel::create(&pong.name, 1 << 20, &Config::default()).unwrap();
    let echo = peer(&["fd-echo", &ping.name, &pong.name, &ROUNDS.to_string()]);
    let w = ping_ch.writer();
    let reader = pong_ch.reader().unwrap();
    let view = Inspector::open(&ping.name).unwrap();
    runtime().block_on(async {
        let mut r = AsyncReader::new(reader).unwrap();
        let mut buf = vec![0u8; 4096];
        for i in 0..ROUNDS {
            let msg = payload(5, i, 16 + (i as usize * 13) % 200);
            let mut backoff = Backoff::new();
            while !view.reader_sleeping() {
                backoff.snooze();
            }
            w.try_send(&msg).unwrap();
            let n = tokio::time::timeout(Duration::from_secs(20), r.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("round {i}: lost wake-up"))
                .unwrap();
            assert_eq!(&buf[..n], &msg[..], "round {i}");
        }
    });
    finished(echo, "fd-echo");
    // Every message found its reader armed: its writer saw the flag and rang, once (a
    // ring is counted only when the publish took the armed flag). `reader_sleeps` counts
    // only the arms whose last look found nothing; a message published between the
    // flag and that look is seen by the look (`Arm::Ready`) and still rings, so it may
    // fall a few short of the rings.
    let (a, b) = (ping_ch.stats(), pong_ch.stats());
    eprintln!(
        "ping: {} arms that slept, {} rings; pong: {} arms that slept, {} rings",
        a.reader_sleeps, a.wakeups, b.reader_sleeps, b.wakeups
    );
    assert_eq!(a.wakeups, ROUNDS, "{a:?}");
    assert_eq!(b.wakeups, ROUNDS, "{b:?}");
    assert!(a.reader_sleeps > 0 && b.reader_sleeps > 0, "{a:?} {b:?}");
    assert_eq!(a.messages_received, ROUNDS);
    assert_eq!(b.messages_received, ROUNDS);
}

#[test]
fn reader_killed_and_replaced_while_writers_keep_sending() {
    const WRITERS: u64 = 3;
    const PER_WRITER: u64 = 6000;
    let ch = TestChannel::new("fd-takeover");
    // A small ring: while no reader runs, the writers fill it and wait for space.
    let channel = Channel::create(&ch.name, 64 << 10, &Config::default()).unwrap();
    let mut first = peer(&["fd-reader", &ch.name]);
    let view = Inspector::open(&ch.name).unwrap();
    let mut backoff = Backoff::new();
    while view.reader_owner().is_none() {
        backoff.snooze();
    }
    let writers: Vec<ChildGuard> = (0..WRITERS)
        .map(|id| {
            peer(&[
                "blocking-writer",
                &ch.name,
                &id.to_string(),
                &PER_WRITER.to_string(),
                "16",
                "1500",
            ])
        })
        .collect();
    // Let the first reader take a few thousand messages, then kill it mid-stream.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut got_first = Vec::new();
    while got_first.len() < 2000 {
        got_first.push(lines.next().expect("the first reader stopped").unwrap());
    }
    signal(&first, Signal::SIGKILL);
    // Whatever it printed before it died (each line written before its message was
    // consumed; a partial last line is not a consumed message).
    for line in lines {
        match line {
            Ok(l) if l.starts_with("got=") => got_first.push(l),
            _ => break,
        }
    }
    let _ = first.wait();
    let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
    for line in &got_first {
        let (id, seq) = line["got=".len()..].split_once(':').unwrap();
        seen.entry(id.parse().unwrap())
            .or_default()
            .push(seq.trim().parse().unwrap());
    }
    // The replacement: takes the role over from the dead reader and waits in tokio.
    let takeovers = runtime().block_on(async {
        let mut r = AsyncReader::new(channel.reader().unwrap()).unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let done = seen
                .values()
                .map(|v| v.last().map_or(0, |s| s + 1))
                .sum::<u64>();
            if done == WRITERS * PER_WRITER && seen.len() == WRITERS as usize {
                break;
            }
            let n = tokio::time::timeout(Duration::from_secs(30), r.recv(&mut buf))
                .await
                .expect("the new reader got nothing for 30 s")
                .unwrap();
            let (id, seq) = check_payload(&buf[..n]).unwrap();
            let list = seen.entry(id).or_default();
            // At most the one message the dead reader was reading comes again.
            if list.last() == Some(&seq) {
                continue;
            }
            list.push(seq);
        }
        channel.stats().reader_takeovers
    });
    for (i, w) in writers.into_iter().enumerate() {
        finished(w, &format!("writer {i}"));
    }
    // Every message of every writer, once, in order, across both readers.
    for id in 0..WRITERS {
        let list = &seen[&id];
        assert_eq!(list.len() as u64, PER_WRITER, "writer {id}");
        assert!(
            list.iter().copied().eq(0..PER_WRITER),
            "writer {id}: out of order"
        );
    }
    assert_eq!(takeovers, 1);
    let s = channel.stats();
    assert_eq!(s.messages_sent, WRITERS * PER_WRITER);
    assert_eq!(s.bad_blocks, 0, "{s:?}");
}

/// Waits up to 20 s for `fd` to turn readable; whether it did.
fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack.
    unsafe { libc::poll(&mut pfd, 1, 20_000) == 1 }
}

#[test]
fn a_writer_process_rings_each_new_reader_and_each_recreated_channel() {
    // One writer process rings from the same thread every time, keeping its doorbell
    // FIFO open between rings. Each round, a new reader (in this process, so the role's
    // owner word is the same every time) or a new channel under the same name waits,
    // armed, on a FIFO of its own: a writer that rang the one it kept open would leave
    // it asleep.
    const ROUNDS: u64 = 40;
    let ch = TestChannel::new("fd-rebind");
    let mut writer = peer(&["ring-writer", &ch.name]);
    let mut to_writer = writer.stdin.take().unwrap();
    let mut from_writer = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let mut rings = 0;
    for round in 0..ROUNDS {
        if round % 2 == 1 {
            drop(channel);
            Channel::unlink(&ch.name).unwrap();
            channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
            rings = 0;
        }
        let mut reader = channel.reader().unwrap();
        let fd = reader.readiness_fd().unwrap().as_raw_fd();
        assert_eq!(reader.arm().unwrap(), Arm::Armed, "round {round}");
        let len = 24 + round as usize * 7;
        writeln!(to_writer, "send 4 {round} {len}").unwrap();
        let reply = from_writer.next().expect("the writer stopped").unwrap();
        assert_eq!(reply, "sent", "round {round}");
        assert!(
            readable(fd),
            "round {round}: the armed reader was never woken"
        );
        let msg = reader.try_recv_vec().unwrap();
        assert_eq!(msg.len(), len, "round {round}");
        assert_eq!(check_payload(&msg), Ok((4, round)), "round {round}");
        rings += 1;
        assert_eq!(channel.stats().wakeups, rings, "round {round}");
    }
    drop(to_writer);
    finished(writer, "ring-writer");
}

/// Whether process `pid` is asleep (state S in /proc).
fn sleeping(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('S'))
}

#[test]
fn writer_blocked_on_a_full_ring_is_woken_by_the_readers_release() {
    const COUNT: u64 = 300;
    let ch = TestChannel::new("space-wait");
    let channel = Channel::create(&ch.name, 32 << 10, &Config::default()).unwrap();
    let mut r = channel.reader().unwrap();
    let writer = peer(&[
        "blocking-writer",
        &ch.name,
        "9",
        &COUNT.to_string(),
        "500",
        "900",
    ]);
    // The writer fills the ring and goes to sleep waiting for space.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut backoff = Backoff::new();
    while !(channel.stats().full > 0 && sleeping(writer.id())) {
        assert!(Instant::now() < deadline, "the writer never waited");
        backoff.snooze();
    }
    let parked = channel.stats().messages_sent;
    assert!(parked < COUNT);
    // Receiving frees space; each release wakes the writer, which sends on.
    let mut order = Order::default();
    let mut buf = vec![0u8; 1024];
    while order.total < COUNT {
        let n = r
            .recv_timeout(&mut buf, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("after {} messages: {e}", order.total));
        order.add(&buf[..n]);
    }
    finished(writer, "blocking writer");
    assert_eq!(order.next[&9], COUNT);
    let s = channel.stats();
    assert_eq!(s.messages_sent, COUNT);
    assert_eq!(s.messages_received, COUNT);
}

#[test]
fn tokio_writer_waits_for_space_and_a_dropped_send_sends_nothing() {
    let ch = TestChannel::new("async-writer");
    let channel = Channel::create(&ch.name, 16 << 10, &Config::default()).unwrap();
    let w = AsyncWriter::new(channel.writer());
    let mut sent = 0u64;
    while w.try_send(&payload(1, sent, 700)).is_ok() {
        sent += 1;
    }
    runtime().block_on(async {
        // Full: a send dropped while it waits sends nothing.
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), w.send(&payload(2, 0, 700))).await;
        assert!(dropped.is_err(), "the ring was full: the send had to wait");
        // A reader process frees space while this send waits; it checks every byte and
        // the order, and expects exactly these messages.
        let reader = peer(&["reader", &ch.name, &(sent + 1).to_string()]);
        w.send(&payload(1, sent, 700)).await.unwrap();
        finished(reader, "reader");
    });
    let s = channel.stats();
    assert_eq!(s.messages_sent, sent + 1, "{s:?}");
    assert_eq!(s.messages_received, sent + 1, "{s:?}");
}

#[test]
fn armed_reader_whose_writer_dies_mid_message_wakes_and_skips_the_torn_block() {
    let ch = TestChannel::new("fd-torn");
    let cfg = Config::builder()
        .timeout(Duration::from_millis(300))
        .detect_dead_writers(false) // only the timeout can free the block
        .build()
        .unwrap();
    let channel = Channel::create(&ch.name, 1 << 20, &cfg).unwrap();
    let mut r = channel.reader().unwrap();
    let fd = r.readiness_fd().unwrap().as_raw_fd();
    let stalled = peer(&["stall-writer", &ch.name, "mid-payload", "700"]);
    wait_stopped(&stalled);
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    assert_eq!(r.arm().unwrap(), Arm::Armed);
    signal(&stalled, Signal::SIGKILL);
    stalled.wait_with_output().unwrap();
    // Nobody will ring: the doorbell's timer must wake the reader until the block's
    // timeout passes and it is skipped.
    let mut wakes = 0;
    while channel.stats().timeout_blocks == 0 {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on our stack.
        let n = unsafe { libc::poll(&mut pfd, 1, 20_000) };
        assert_eq!(n, 1, "the armed reader was never woken");
        wakes += 1;
        assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
        if channel.stats().timeout_blocks == 0 {
            assert_eq!(r.arm().unwrap(), Arm::Armed);
        }
    }
    assert!(wakes > 0);
    // The reader goes on: armed again, woken by the next writer.
    assert_eq!(r.arm().unwrap(), Arm::Armed);
    channel.writer().send(&payload(6, 0, 40)).unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on our stack.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((6, 0)));
    let s = channel.stats();
    assert_eq!(s.timeout_blocks, 1, "{s:?}");
    assert_eq!(s.messages_received, 1, "{s:?}");
}
