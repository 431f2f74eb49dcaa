//! Model checking of the ring protocol with loom: the product's own claim, publish,
//! check, skip, consume and release code, run in every interleaving (up to a preemption
//! bound) of 2–3 writers and a reader on a ring of a few nodes.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release -p atbus --test loom
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` (default 3 here) widens or narrows the search.
//!
//! Every scenario checks, in every interleaving: each delivered message is byte for byte
//! one a writer sent (never torn or mixed); per-writer order; a message is missing only
//! if its writer died or was told `Abandoned`, or a stalled writer overwrote it and the
//! reader counted that; nothing is delivered twice; the cursors never pass each other.
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use atbus::model::{ModelChannel, ModelReader, Step};
use atbus::Error;
use loom::sync::atomic::{AtomicUsize as LoomUsize, Ordering};

const LONG: Duration = Duration::from_secs(3600);

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    // Every atomic access is a branch: the reader's idle polls (a claimed but unstarted
    // node is noticed every 64th) and reading the 16 writer counter slots add up.
    b.max_branches = 20_000;
    b
}

/// Message `seq` of writer `id`: id, seq, then `len - 2` bytes derived from both.
fn msg(id: u8, seq: u8, len: usize) -> Vec<u8> {
    let mut m = vec![id, seq];
    m.extend((2..len).map(|i| id.wrapping_mul(31) ^ seq.wrapping_mul(7) ^ i as u8));
    m
}

/// What one writer thread sent: (seq, len, outcome).
type Sent = Vec<(u8, usize, Result<(), String>)>;

/// Receives until every writer is done and the reader has consumed every claimed node.
/// Returns the delivered messages.
fn drain(reader: &mut ModelReader, done: &LoomUsize, writers: usize, max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; max];
    loop {
        match reader.try_recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(Error::Empty) => {
                if done.load(Ordering::Acquire) == writers && reader.caught_up() {
                    return got;
                }
                loom::thread::yield_now();
            }
            Err(e) => panic!("reader: {e}"),
        }
        let (r, w, pos) = reader.cursors();
        assert!(
            r <= pos && pos <= w,
            "cursors passed each other: {r} {pos} {w}"
        );
    }
}

/// Checks delivered messages against what the writers sent.
fn verify(got: &[Vec<u8>], sent: &[Sent], lost_by_overwrite: u64) {
    let mut next = vec![0u8; sent.len()];
    let mut delivered = vec![vec![false; 0]; sent.len()];
    for (id, s) in sent.iter().enumerate() {
        delivered[id] = vec![false; s.len()];
    }
    for m in got {
        let (id, seq) = (m[0] as usize, m[1]);
        let entry = sent[id]
            .iter()
            .position(|(s, _, _)| *s == seq)
            .unwrap_or_else(|| panic!("message {id}/{seq} was never sent"));
        let (_, len, outcome) = &sent[id][entry];
        assert_eq!(
            m,
            &msg(id as u8, seq, *len),
            "torn or mixed message {id}/{seq}"
        );
        assert!(
            outcome.is_ok(),
            "delivered {id}/{seq} whose send failed: {outcome:?}"
        );
        assert!(seq >= next[id], "writer {id}: {seq} after {}", next[id]);
        next[id] = seq + 1;
        assert!(!delivered[id][entry], "{id}/{seq} delivered twice");
        delivered[id][entry] = true;
    }
    let missing_ok_sends = sent
        .iter()
        .enumerate()
        .flat_map(|(id, s)| s.iter().enumerate().map(move |(e, x)| (id, e, x)))
        .filter(|(id, e, (_, _, outcome))| outcome.is_ok() && !delivered[*id][*e])
        .count() as u64;
    assert!(
        missing_ok_sends <= lost_by_overwrite,
        "{missing_ok_sends} successful sends lost, only {lost_by_overwrite} counted"
    );
}

fn send_all(w: &atbus::model::ModelWriter, id: u8, lens: &[usize]) -> Sent {
    lens.iter()
        .enumerate()
        .map(|(seq, &len)| {
            let outcome = w.send(&msg(id, seq as u8, len)).map_err(|e| e.to_string());
            (seq as u8, len, outcome)
        })
        .collect()
}

/// Two writers race to claim; the reader delivers both messages whole, in any order.
#[test]
fn concurrent_claims_deliver_every_message_whole() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 8, LONG, true);
        let done = Arc::new(LoomUsize::new(0));
        let handles: Vec<_> = (0..2u8)
            .map(|id| {
                let (w, done) = (ch.writer(), done.clone());
                loom::thread::spawn(move || {
                    let sent = send_all(&w, id, &[40]);
                    done.fetch_add(1, Ordering::Release);
                    sent
                })
            })
            .collect();
        let mut r = ch.reader();
        let got = drain(&mut r, &done, 2, ch.max_message_len());
        let sent: Vec<Sent> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(sent.iter().flatten().all(|(_, _, o)| o.is_ok()));
        assert_eq!(got.len(), 2);
        verify(&got, &sent, 0);
        let s = ch.stats();
        assert_eq!(s.bad_nodes + s.bad_blocks + s.timeout_blocks, 0);
    });
}

/// A ring of 6 nodes: blocks of 1, 2, 2 and 2 nodes put the last one across the end of
/// the ring, so it is claimed with a padding block; with the reader running concurrently
/// some sends find the ring full.
#[test]
fn wrap_with_padding_and_full_ring() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 6, LONG, true);
        let done = Arc::new(LoomUsize::new(0));
        let w = ch.writer();
        let d = done.clone();
        let writer = loom::thread::spawn(move || {
            // 1 node, then 2-node blocks (32 + 60 > 64 bytes) at 1, 3 and (padding at 5)
            // 6 = node 0.
            let mut sent = Vec::new();
            for (seq, len) in [(0u8, 10usize), (1, 60), (2, 60), (3, 60)] {
                let m = msg(0, seq, len);
                let outcome = loop {
                    match w.send(&m) {
                        Err(Error::Full) => loom::thread::yield_now(),
                        other => break other.map_err(|e| e.to_string()),
                    }
                };
                sent.push((seq, len, outcome));
            }
            d.fetch_add(1, Ordering::Release);
            sent
        });
        let mut r = ch.reader();
        let got = drain(&mut r, &done, 1, ch.max_message_len());
        let sent = vec![writer.join().unwrap()];
        assert!(sent[0].iter().all(|(_, _, o)| o.is_ok()), "{sent:?}");
        assert_eq!(got.len(), 4);
        verify(&got, &sent, 0);
        let s = ch.stats();
        assert_eq!((s.padding_blocks, s.bad_nodes), (1, 0), "{s:?}");
    });
}

/// A writer dies at `step` while another writer sends; with the timeout expiring at
/// once, the reader skips the dead writer's block and delivers the other message.
fn writer_dies_at(step: Step) {
    builder().check(move || {
        let ch = ModelChannel::new(64, 8, Duration::ZERO, true);
        let done = Arc::new(LoomUsize::new(0));
        let (w0, d0) = (ch.writer(), done.clone());
        let dead = loom::thread::spawn(move || {
            let r = w0.send_and_die_at(&msg(0, 0, 70), step);
            d0.fetch_add(1, Ordering::Release);
            r
        });
        let (w1, d1) = (ch.writer(), done.clone());
        let live = loom::thread::spawn(move || {
            let sent = send_all(&w1, 1, &[20]);
            d1.fetch_add(1, Ordering::Release);
            sent
        });
        let mut r = ch.reader();
        let got = drain(&mut r, &done, 2, ch.max_message_len());
        let died = dead.join().unwrap();
        let live_sent = live.join().unwrap();
        // The dying writer never publishes; a zero timeout may skip even the live
        // writer's block while it is mid-write, and then that send says so.
        let sent = vec![vec![(0, 70, Err(format!("{died:?}")))], live_sent];
        verify(&got, &sent, 0);
        let s = ch.stats();
        assert!(s.timeout_blocks >= 1, "{s:?}");
        assert!(got.iter().all(|m| m[0] == 1));
    });
}

#[test]
fn writer_dying_after_its_claim_before_start_is_skipped() {
    writer_dies_at(Step::AfterClaim);
}

#[test]
fn writer_dying_mid_payload_is_skipped() {
    writer_dies_at(Step::MidPayload);
}

/// A writer may stall anywhere (loom delays it arbitrarily) while the timeout expires at
/// once: its block may be skipped, its nodes reused by another writer on a 5-node ring,
/// and the stalled writer may then resume and write into them. Whatever happens, nothing
/// torn is delivered, the stalled writer is told when its message was dropped, and every
/// successful send that is missing was counted by the reader.
#[test]
fn stalled_writer_resuming_after_its_block_was_skipped_never_gets_bytes_delivered() {
    // Interleavings reaching each outcome, so the test proves the hazard was explored.
    static ABANDONED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static OVERWRITTEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    // The overwrite needs three preemptions: writer 0 runs first, stops after START,
    // and its resumption is ordered after writer 1's second message.
    let mut b = builder();
    b.preemption_bound = b.preemption_bound.max(Some(3));
    b.check(|| {
        let ch = ModelChannel::new(64, 5, Duration::ZERO, false);
        let max = ch.max_message_len();
        let w0 = ch.writer();
        // Writer 0: one 2-node message, delayed anywhere by the model.
        let stalled = loom::thread::spawn(move || send_all(&w0, 0, &[90]));
        // Writer 1 and the reader take turns in this thread, so the ring wraps onto
        // writer 0's nodes without a retry loop: 2 nodes, drain, 2 nodes, drain.
        let w1 = ch.writer();
        let mut r = ch.reader();
        let mut got = Vec::new();
        let mut sent1 = Vec::new();
        let mut buf = vec![0u8; max];
        // Polls without yielding (the model would then run writer 0 to completion):
        // a zero timeout skips an unwritten block on its second sighting.
        let mut drain = |r: &mut ModelReader, got: &mut Vec<Vec<u8>>| {
            for _ in 0..6 {
                match r.try_recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(Error::Empty) if r.caught_up() => return,
                    Err(Error::Empty) => {}
                    Err(e) => panic!("reader: {e}"),
                }
            }
        };
        for seq in 0..2u8 {
            let m = msg(1, seq, 60);
            sent1.push((seq, 60, w1.send(&m).map_err(|e| e.to_string())));
            if seq == 0 {
                drain(&mut r, &mut got);
            }
        }
        // Writer 0 resumes (if it had not finished), possibly into writer 1's message.
        let sent0 = stalled.join().unwrap();
        // Nothing else runs now. The nodes of a block whose header failed its check go
        // through the timeout path, noticed when the reader next looks at the write
        // cursor (every 64 polls of a free node).
        for _ in 0..40 {
            drain(&mut r, &mut got);
        }
        let sent = vec![sent0, sent1];
        let s = ch.stats();
        verify(&got, &sent, s.crc_failures + s.check_failures);
        // Failed sends are exactly the abandoned ones (Full aside), each counted.
        let abandoned = sent
            .iter()
            .flatten()
            .filter(|(_, _, o)| o.as_ref().is_err_and(|e| e.contains("stalled")))
            .count() as u64;
        assert_eq!(abandoned, s.abandoned, "{sent:?}");
        let (r_cursor, w_cursor, pos) = r.cursors();
        assert!(r_cursor <= pos && pos == w_cursor);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        if s.abandoned > 0 {
            ABANDONED.fetch_add(1, relaxed);
        }
        if s.crc_failures + s.check_failures > 0 {
            OVERWRITTEN.fetch_add(1, relaxed);
        }
    });
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let (abandoned, overwritten) = (ABANDONED.load(relaxed), OVERWRITTEN.load(relaxed));
    eprintln!(
        "interleavings: {abandoned} abandoned the stalled send, {overwritten} overwrote a message"
    );
    // Within this bound the model reaches the abandoned send; the overwrite, which needs
    // writer 0 to claim first and be descheduled between its look and its copy, is made
    // certain by the next test.
    assert!(abandoned > 0);
}

/// The hazard of the test above, made certain: writer 0 claims first and is descheduled
/// between its last look at its block and its copy; the reader skips the block (zero
/// timeout), writer 1 reuses its nodes for a published message, then writer 0 wakes and
/// copies its payload over that message — over its payload and over the first word of its
/// second node. Nothing damaged is delivered, writer 0 is told `Abandoned`, and the lost
/// successful send is counted.
#[test]
fn stalled_writer_copying_into_reused_nodes_is_caught_and_counted() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 5, Duration::ZERO, false);
        let max = ch.max_message_len();
        // 1: writer 0 is paused before its copy; 2: it may go on.
        let gate = Arc::new(LoomUsize::new(0));
        let (w0, g) = (ch.writer(), gate.clone());
        let stalled = loom::thread::spawn(move || {
            let m = msg(0, 0, 90);
            let outcome = w0.send_pausing_at(&m, Step::MidPayload, move || {
                g.store(1, Ordering::Release);
                while g.load(Ordering::Acquire) != 2 {
                    loom::thread::yield_now();
                }
            });
            vec![(0u8, 90usize, outcome.map_err(|e| e.to_string()))]
        });
        while gate.load(Ordering::Acquire) != 1 {
            loom::thread::yield_now();
        }
        let w1 = ch.writer();
        let mut r = ch.reader();
        let mut got = Vec::new();
        let mut buf = vec![0u8; max];
        let mut drain = |r: &mut ModelReader, got: &mut Vec<Vec<u8>>| {
            for _ in 0..80 {
                match r.try_recv(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(Error::Empty) if r.caught_up() => return,
                    Err(Error::Empty) => {}
                    Err(e) => panic!("reader: {e}"),
                }
            }
        };
        // Writer 1's first message lands after writer 0's block, which the reader skips.
        let mut sent1 = vec![(
            0u8,
            60usize,
            w1.send(&msg(1, 0, 60)).map_err(|e| e.to_string()),
        )];
        drain(&mut r, &mut got);
        // Its second message wraps (padding at node 4) onto writer 0's nodes 0 and 1.
        sent1.push((1, 60, w1.send(&msg(1, 1, 60)).map_err(|e| e.to_string())));
        assert!(sent1.iter().all(|(_, _, o)| o.is_ok()), "{sent1:?}");
        gate.store(2, Ordering::Release);
        let sent0 = stalled.join().unwrap();
        drain(&mut r, &mut got);
        let s = ch.stats();
        assert!(
            sent0[0].2.as_ref().is_err_and(|e| e.contains("stalled")),
            "{sent0:?}"
        );
        assert_eq!(s.abandoned, 1);
        // Writer 1's second message was overwritten: not delivered, and counted.
        assert_eq!(got, [msg(1, 0, 60)]);
        assert_eq!(s.crc_failures + s.check_failures, 1, "{s:?}");
        verify(&got, &[sent0, sent1], s.crc_failures + s.check_failures);
        let (r_cursor, w_cursor, pos) = r.cursors();
        assert!(
            r_cursor <= pos && pos == w_cursor,
            "{r_cursor} {pos} {w_cursor}"
        );
    });
}

/// A reader in manual-commit mode receives two messages, commits the first and dies; its
/// successor starts at the commit and delivers the second again, whole, while a writer
/// fills a ring of 4 nodes: no writer reuses a node before its commit.
#[test]
fn uncommitted_messages_survive_their_reader_while_writers_fill_the_ring() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 4, LONG, true);
        let w = ch.writer();
        let writer = loom::thread::spawn(move || {
            let mut sent = Vec::new();
            for seq in 0..5u8 {
                let m = msg(0, seq, 20);
                let outcome = loop {
                    match w.send(&m) {
                        Err(Error::Full) => loom::thread::yield_now(),
                        other => break other.map_err(|e| e.to_string()),
                    }
                };
                sent.push((seq, 20, outcome));
            }
            sent
        });
        let mut buf = vec![0u8; ch.max_message_len()];
        let mut recv = |r: &mut ModelReader| loop {
            match r.try_recv(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(Error::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("reader: {e}"),
            }
        };
        let mut first = ch.reader();
        first.set_manual_commit(true);
        assert_eq!(recv(&mut first), msg(0, 0, 20));
        assert!(first.commit(first.position()));
        assert_eq!(recv(&mut first), msg(0, 1, 20));
        drop(first); // dies: message 1 was not committed

        let mut second = ch.reader();
        for seq in 1..5u8 {
            assert_eq!(recv(&mut second), msg(0, seq, 20), "message {seq}");
        }
        let sent = writer.join().unwrap();
        assert!(sent.iter().all(|(_, _, o)| o.is_ok()), "{sent:?}");
        let s = ch.stats();
        assert_eq!(
            (s.bad_nodes, s.crc_failures, s.handover_nodes),
            (0, 0, 0),
            "{s:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// Writer-side batches: one claim for several blocks, each published on its own.

/// A batch of two messages races a single send: every message is delivered whole, the
/// batch's in order.
#[test]
fn a_batch_and_a_single_send_deliver_every_message_whole_and_in_order() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 8, LONG, true);
        let done = Arc::new(LoomUsize::new(0));
        let (w0, d0) = (ch.writer(), done.clone());
        let batcher = loom::thread::spawn(move || {
            let (a, b) = (msg(0, 0, 20), msg(0, 1, 40));
            let sent = w0.send_batch(&[&a, &b]).map_err(|e| e.to_string());
            d0.fetch_add(1, Ordering::Release);
            let n = *sent.as_ref().unwrap_or(&0);
            vec![(0u8, 20, Ok(())), (1, 40, Ok(()))]
                .into_iter()
                .take(n)
                .collect::<Sent>()
        });
        let (w1, d1) = (ch.writer(), done.clone());
        let single = loom::thread::spawn(move || {
            let sent = send_all(&w1, 1, &[30]);
            d1.fetch_add(1, Ordering::Release);
            sent
        });
        let mut r = ch.reader();
        let got = drain(&mut r, &done, 2, ch.max_message_len());
        let sent = vec![batcher.join().unwrap(), single.join().unwrap()];
        assert_eq!(sent[0].len(), 2, "the batch fits an empty ring whole");
        verify(&got, &sent, 0);
        assert_eq!(got.len(), 3);
        let s = ch.stats();
        assert_eq!((s.messages_sent, s.bad_nodes), (3, 0), "{s:?}");
    });
}

/// A batch writer dies at `step` (right after its claim, after naming its blocks, or in
/// its first payload) while another writer sends; with the timeout expiring at once the
/// reader skips every block of the batch and delivers the other message.
fn batch_writer_dies_at(step: Step) {
    builder().check(move || {
        let ch = ModelChannel::new(64, 8, Duration::ZERO, true);
        let done = Arc::new(LoomUsize::new(0));
        let (w0, d0) = (ch.writer(), done.clone());
        let dead = loom::thread::spawn(move || {
            let (a, b) = (msg(0, 0, 20), msg(0, 1, 20));
            let r = w0.send_batch_and_die_at(&[&a, &b], step);
            d0.fetch_add(1, Ordering::Release);
            r
        });
        let (w1, d1) = (ch.writer(), done.clone());
        let live = loom::thread::spawn(move || {
            let sent = send_all(&w1, 1, &[20]);
            d1.fetch_add(1, Ordering::Release);
            sent
        });
        let mut r = ch.reader();
        let got = drain(&mut r, &done, 2, ch.max_message_len());
        let died = dead.join().unwrap();
        let live_sent = live.join().unwrap();
        let sent = vec![
            vec![
                (0, 20, Err(format!("{died:?}"))),
                (1, 20, Err(format!("{died:?}"))),
            ],
            live_sent,
        ];
        verify(&got, &sent, 0);
        assert!(got.iter().all(|m| m[0] == 1), "nothing of the dead batch");
        assert!(ch.stats().timeout_blocks >= 1);
    });
}

#[test]
fn a_batch_writer_dying_after_its_claim_leaves_its_blocks_skipped() {
    batch_writer_dies_at(Step::AfterClaim);
}

#[test]
fn a_batch_writer_dying_after_naming_its_blocks_leaves_them_skipped() {
    batch_writer_dies_at(Step::AfterHeader);
}

#[test]
fn a_batch_writer_dying_in_its_first_payload_leaves_its_blocks_skipped() {
    batch_writer_dies_at(Step::MidPayload);
}

// ---------------------------------------------------------------------------------------
// The wake-up handshakes (atbus/src/wake.rs). The model's futex and doorbell waits have
// no timeout: a lost wake-up leaves a thread asleep for ever, which loom reports as a
// deadlock. Each handshake is also run with one of its fences or its second look taken
// out (`Mutation`), and the model must then find the lost wake-up.

use atbus::model::{with_mutation, Mutation};

/// A reader that sleeps on the futex while a writer publishes two messages: it is woken
/// for each, in every interleaving, and receives both.
fn reader_sleeping_on_the_futex() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 4, LONG, false);
        let w = ch.writer();
        let writer = loom::thread::spawn(move || send_all(&w, 0, &[8, 8]));
        let mut r = ch.reader();
        let mut buf = vec![0u8; 64];
        let mut got = Vec::new();
        for _ in 0..2 {
            let n = r.recv_sleeping(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        let sent = vec![writer.join().unwrap()];
        verify(&got, &sent, 0);
        assert_eq!(got.len(), 2);
    });
}

#[test]
fn a_reader_sleeping_on_the_futex_is_woken_by_every_publish() {
    reader_sleeping_on_the_futex();
}

/// A writer waits for space in a full ring of 2 usable nodes while the reader, which
/// sleeps on the futex itself, frees them: neither side's wake-up is lost.
fn writer_waiting_for_space() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 3, LONG, false);
        let w = ch.writer();
        let writer = loom::thread::spawn(move || {
            (0..3u8)
                .map(|seq| {
                    let m = msg(0, seq, 8);
                    (seq, 8, w.send_waiting(&m).map_err(|e| e.to_string()))
                })
                .collect::<Sent>()
        });
        let mut r = ch.reader();
        let mut buf = vec![0u8; 64];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = r.recv_sleeping(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        let sent = vec![writer.join().unwrap()];
        assert!(sent[0].iter().all(|(_, _, o)| o.is_ok()), "{sent:?}");
        verify(&got, &sent, 0);
        assert_eq!(got.len(), 3);
    });
}

#[test]
fn writers_waiting_for_space_are_woken_by_the_reader_that_frees_it() {
    writer_waiting_for_space();
}

/// An event-loop reader arms its doorbell and waits on it while a writer publishes: the
/// writer rings, and the reader receives the message.
fn reader_armed_on_the_doorbell() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 4, LONG, false);
        let w = ch.writer();
        let writer = loom::thread::spawn(move || send_all(&w, 0, &[8]));
        let mut r = ch.reader();
        let bell = r.create_doorbell();
        let mut buf = vec![0u8; 64];
        let n = r.recv_on_doorbell(&bell, &mut buf).unwrap();
        let sent = vec![writer.join().unwrap()];
        verify(&[buf[..n].to_vec()], &sent, 0);
    });
}

#[test]
fn a_reader_armed_on_its_doorbell_is_rung_by_the_publish() {
    reader_armed_on_the_doorbell();
}

/// A reader arms its doorbell and dies; its successor takes the role over, creates a
/// doorbell of its own and waits on it while a writer (which may have opened the dead
/// reader's FIFO already) publishes: the writer rings the new FIFO, or the successor's
/// second look finds the message.
#[test]
fn a_reader_replaced_while_a_writer_rings_is_woken() {
    builder().check(|| {
        let ch = ModelChannel::new(64, 4, LONG, false);
        let w = ch.writer();
        // The first reader arms its doorbell on an empty ring and dies there.
        let mut dead = ch.reader();
        let _old_bell = dead.create_doorbell();
        assert!(dead.arm());
        drop(dead);
        let writer = loom::thread::spawn(move || send_all(&w, 0, &[8, 8]));
        let mut r = ch.reader();
        r.take_over();
        let bell = r.create_doorbell();
        let mut buf = vec![0u8; 64];
        let mut got = Vec::new();
        for _ in 0..2 {
            let n = r.recv_on_doorbell(&bell, &mut buf).unwrap();
            got.push(buf[..n].to_vec());
        }
        let sent = vec![writer.join().unwrap()];
        verify(&got, &sent, 0);
        assert_eq!(got.len(), 2);
    });
}

// Each fence and second look, taken out: the model must find the lost wake-up (a
// thread asleep for ever: loom's "deadlock").

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_readers_fence_a_futex_wake_up_is_lost() {
    with_mutation(Mutation::ReaderFence, reader_sleeping_on_the_futex);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_readers_second_look_a_futex_wake_up_is_lost() {
    with_mutation(Mutation::ReaderRecheck, reader_sleeping_on_the_futex);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_writers_fence_a_futex_wake_up_is_lost() {
    with_mutation(Mutation::WriterFence, reader_sleeping_on_the_futex);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_readers_fence_a_doorbell_ring_is_lost() {
    with_mutation(Mutation::ReaderFence, reader_armed_on_the_doorbell);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_readers_second_look_a_doorbell_ring_is_lost() {
    with_mutation(Mutation::ReaderRecheck, reader_armed_on_the_doorbell);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_waiting_writers_fence_a_space_wake_up_is_lost() {
    with_mutation(Mutation::SpaceFence, writer_waiting_for_space);
}

#[test]
#[should_panic(expected = "deadlock")]
fn without_the_releasing_readers_fence_a_space_wake_up_is_lost() {
    with_mutation(Mutation::ReleaseFence, writer_waiting_for_space);
}
