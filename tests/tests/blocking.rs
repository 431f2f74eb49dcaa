//! Blocking receive and zero-copy reads across processes: no lost wake-ups, a sleeping
//! reader that outlives a killed writer, and what an in-place reader sees when a stalled
//! writer wakes into its message.

use std::time::Duration;

use atbus::{Backoff, Channel, Config, Error, Inspector};
use atbus_tests::{check_payload, payload, TestChannel, EXIT_ABANDONED};
use nix::sys::signal::Signal;

mod common;
use common::{peer, signal, wait_stopped};

#[test]
fn ping_pong_between_two_blocking_readers_never_loses_a_wake_up() {
    // Each side sleeps on its futex before the other sends, thousands of times: a lost
    // wake-up shows as a 20 s `Timeout`, never as a hang.
    const ROUNDS: u64 = 2000;
    let ping = TestChannel::new("ping");
    let pong = TestChannel::new("pong");
    let ping_ch = Channel::create(&ping.name, 1 << 20, &Config::default()).unwrap();
    let pong_ch = Channel::create(&pong.name, 1 << 20, &Config::default()).unwrap();
    let echo = peer(&["echo", &ping.name, &pong.name, &ROUNDS.to_string()]);
    let w = ping_ch.writer();
    let mut r = pong_ch.reader().unwrap();
    let view = Inspector::open(&ping.name).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..ROUNDS {
        let msg = payload(5, i, 16 + (i as usize * 13) % 200);
        // Send just as the echo process falls asleep (it does the same to us).
        let mut backoff = Backoff::new();
        while !view.reader_sleeping() {
            backoff.snooze();
        }
        w.try_send(&msg).unwrap();
        let n = r
            .recv_timeout(&mut buf, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        assert_eq!(&buf[..n], &msg[..], "round {i}");
    }
    assert!(echo.wait_with_output().unwrap().status.success());
    // Every message found its reader asleep or falling asleep.
    let (a, b) = (ping_ch.stats(), pong_ch.stats());
    eprintln!(
        "ping: {} sleeps, {} wake-ups; pong: {} sleeps, {} wake-ups",
        a.reader_sleeps, a.wakeups, b.reader_sleeps, b.wakeups
    );
    assert_eq!(a.wakeups, ROUNDS, "{a:?}");
    assert_eq!(b.wakeups, ROUNDS, "{b:?}");
}

#[test]
fn sleeping_reader_skips_the_block_of_a_writer_killed_while_it_slept() {
    let ch = TestChannel::new("sleep-kill");
    let cfg = Config::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let channel = Channel::create(&ch.name, 1 << 20, &cfg).unwrap();
    let mut r = channel.reader().unwrap();
    let stalled = peer(&["stall-writer", &ch.name, "mid-payload", "700"]);
    wait_stopped(&stalled);
    let name = ch.name.clone();
    let killer = std::thread::spawn(move || {
        let view = Inspector::open(&name).unwrap();
        let mut backoff = Backoff::new();
        while !view.reader_sleeping() {
            backoff.snooze();
        }
        signal(&stalled, Signal::SIGKILL);
        stalled.wait_with_output().unwrap();
        Channel::open(&name)
            .unwrap()
            .writer()
            .try_send(&payload(6, 0, 40))
            .unwrap();
    });
    let mut buf = vec![0u8; 4096];
    let n = r.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(check_payload(&buf[..n]), Ok((6, 0)));
    killer.join().unwrap();
    let s = channel.stats();
    assert_eq!(s.dead_writer_blocks, 1, "{s:?}");
    assert_eq!(s.timeout_blocks, 0, "{s:?}");
}

#[test]
fn in_place_reader_sees_a_woken_stalled_writer_and_is_told_so() {
    // As in the multiprocess reuse test: the stalled writer's nodes are skipped, reused
    // by a live writer's message, and the stalled writer wakes while the reader holds
    // that message in place.
    let ch = TestChannel::new("in-place-hazard");
    let size = 4096 + 16 * 128;
    let cfg = Config::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let channel = Channel::create(&ch.name, size, &cfg).unwrap();
    assert_eq!(channel.node_count(), 16);
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    let stalled = peer(&["stall-writer", &ch.name, "mid-payload", "800"]);
    wait_stopped(&stalled);
    for seq in 0..9 {
        w.send_timeout(&payload(7, seq, 60), Duration::from_secs(20))
            .unwrap();
        if seq == 0 {
            let mut backoff = Backoff::new();
            loop {
                match r.try_recv_vec() {
                    Ok(m) => break assert_eq!(check_payload(&m), Ok((7, 0))),
                    Err(Error::Empty) => backoff.snooze(),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    for seq in 1..9 {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((7, seq)));
    }
    let victim = payload(7, 9, 800);
    w.try_send(&victim).unwrap();

    let mut stalled = Some(stalled);
    let outcome = r.try_recv_in_place(|msg| {
        let before = msg.to_vec();
        // The stalled writer wakes now, while we hold the message in place.
        let child = stalled.take().unwrap();
        signal(&child, Signal::SIGCONT);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(EXIT_ABANDONED));
        (before, msg.to_vec())
    });
    // The bytes changed under the closure: the first half is still the victim's, the
    // second half is the stalled writer's; the call reports it instead of the result.
    assert!(matches!(outcome, Err(Error::Damaged)), "{outcome:?}");
    let s = channel.stats();
    assert_eq!(s.crc_failures, 1, "{s:?}");
    assert_eq!(s.messages_received, 9);
    // The reader goes on normally.
    w.try_send(&payload(7, 10, 60)).unwrap();
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((7, 10)));
}
