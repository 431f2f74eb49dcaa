//! Zero-copy reservations, in-place reads, batched receive and blocking receive within
//! one process (the cross-process cases are in tests/tests/).
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use atbus::{Channel, Config, Error};

mod common;
use common::Named;

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i * 7) as u8)
        .collect()
}

#[test]
fn reserved_messages_arrive_byte_for_byte_and_in_order() {
    let name = Named::new("reserve");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    for (i, len) in [0usize, 1, 96, 97, 5000, 16384].into_iter().enumerate() {
        let msg = pattern(i as u64, len);
        let mut slot = w.reserve(len).unwrap();
        assert_eq!(slot.len(), len);
        slot.copy_from_slice(&msg);
        slot.commit().unwrap();
        assert_eq!(r.try_recv_vec().unwrap(), msg);
    }
    let s = ch.stats();
    assert_eq!((s.messages_sent, s.messages_received), (6, 6));
    assert_eq!(s.bad_nodes + s.bad_blocks, 0);
    // A commit is the reservation's only publish: no abort mark tried after it.
    assert_eq!((s.abandoned, s.aborted_blocks), (0, 0), "{s:?}");
}

#[test]
fn dropped_reservation_is_skipped_at_once_not_after_the_timeout() {
    let name = Named::new("abort");
    // A timeout no test outlives: only the abort mark can let the reader past.
    let cfg = Config::builder()
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let ch = Channel::create(&name.0, 1 << 20, &cfg).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    w.try_send(b"before").unwrap();
    {
        let mut slot = w.reserve(1000).unwrap();
        slot[..4].copy_from_slice(b"half");
        // dropped here
    }
    w.try_send(b"after").unwrap();
    assert_eq!(r.try_recv_vec().unwrap(), b"before");
    assert_eq!(r.try_recv_vec().unwrap(), b"after");
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = ch.stats();
    assert_eq!(s.aborted_blocks, 1);
    assert_eq!(s.messages_sent, 2);
    assert_eq!(s.bad_nodes + s.timeout_blocks + s.bad_blocks, 0, "{s:?}");
}

#[test]
fn reservations_fail_like_send() {
    let name = Named::new("reserve-errors");
    let ch = Channel::create(&name.0, 4096 + 8 * 128, &Config::default()).unwrap();
    let w = ch.writer();
    assert!(matches!(
        w.reserve(ch.max_message_len() + 1),
        Err(Error::TooLarge { .. })
    ));
    let mut held = Vec::new();
    loop {
        match w.reserve(10) {
            Ok(slot) => held.push(slot),
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(held.len() as u64, ch.node_count() - 1);
    for slot in held {
        slot.commit().unwrap();
    }
}

#[test]
fn in_place_read_hands_the_ring_bytes_and_consumes_the_message() {
    let name = Named::new("in-place");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let msg = pattern(9, 3000);
    w.try_send(&msg).unwrap();
    w.try_send(b"next").unwrap();
    let seen = r.try_recv_in_place(|m| m.to_vec()).unwrap();
    assert_eq!(seen, msg);
    assert_eq!(r.try_recv_in_place(|m| m.to_vec()).unwrap(), b"next");
    assert!(matches!(
        r.try_recv_in_place(|m| m.len()),
        Err(Error::Empty)
    ));
    assert_eq!(ch.stats().messages_received, 2);
}

#[test]
fn batches_deliver_in_order_and_release_the_cursor_once() {
    let name = Named::new("batch");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    for i in 0..100u64 {
        w.try_send(&pattern(i, (i * 37 % 500) as usize)).unwrap();
    }
    let before = ch.stats().read_cursor;
    let mut got = Vec::new();
    let n = r.recv_batch(64, |m| got.push(m.to_vec())).unwrap();
    assert_eq!(n, 64);
    let s = ch.stats();
    assert!(s.read_cursor > before, "the batch released its nodes");
    assert_eq!(s.read_cursor, r.position(), "all of them, at once");
    assert_eq!(s.messages_received, 64);
    assert_eq!(r.recv_batch(64, |m| got.push(m.to_vec())).unwrap(), 36);
    assert!(matches!(r.recv_batch(64, |_| {}), Err(Error::Empty)));
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m, &pattern(i as u64, (i as u64 * 37 % 500) as usize));
    }
}

#[test]
fn recv_timeout_returns_timeout_no_earlier_than_asked() {
    let name = Named::new("timeout");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let mut r = ch.reader().unwrap();
    let mut buf = [0u8; 8];
    for ms in [0u64, 1, 30, 120] {
        let t = Instant::now();
        let e = r
            .recv_timeout(&mut buf, Duration::from_millis(ms))
            .unwrap_err();
        let took = t.elapsed();
        assert!(matches!(e, Error::Timeout), "{e:?}");
        assert!(
            took >= Duration::from_millis(ms),
            "{ms} ms timeout took {took:?}"
        );
        // Generous bound: this is a shared 2-core machine.
        assert!(
            took < Duration::from_millis(ms + 500),
            "{ms} ms timeout took {took:?}"
        );
    }
}

#[test]
fn blocking_reader_is_woken_by_a_writer_thread() {
    let name = Named::new("wake");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let mut r = ch.reader().unwrap();
    let view = atbus::Inspector::open(&name.0).unwrap();
    let w = ch.writer();
    let sender = std::thread::spawn(move || {
        for i in 0..200u64 {
            // Wait until the reader sleeps, so every message needs a wake-up.
            let mut backoff = atbus::Backoff::new();
            while !view.reader_sleeping() {
                backoff.snooze();
            }
            w.try_send(&i.to_le_bytes()).unwrap();
        }
    });
    let mut buf = [0u8; 8];
    for i in 0..200u64 {
        let n = r.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
        assert_eq!(&buf[..n], &i.to_le_bytes());
    }
    sender.join().unwrap();
}
