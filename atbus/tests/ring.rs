//! Single-process behaviour of the ring: round trips, full and too-large messages,
//! padding and wrap-around, buffer sizes, the reader role, and corrupt segments.
#![cfg(not(loom))]

use atbus::{Channel, Config, Error};

mod common;
use common::Named;

/// Deterministic payload for message `i` of a given length.
fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tiny(nodes: u64) -> usize {
    // Header + data.
    4096 + nodes as usize * 128
}

#[test]
fn every_size_round_trips_byte_for_byte() {
    let name = Named::new("sizes");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let mut buf = vec![0u8; 70_000];
    for (i, len) in [0usize, 1, 95, 96, 97, 128, 4095, 4096, 4097, 65_536]
        .into_iter()
        .enumerate()
    {
        let msg = payload(i as u64, len);
        w.try_send(&msg).unwrap();
        let n = r.try_recv(&mut buf).unwrap();
        assert_eq!(n, len);
        assert_eq!(&buf[..n], &msg[..], "message of {len} bytes");
    }
    assert!(matches!(r.try_recv(&mut buf), Err(Error::Empty)));
    let s = ch.stats();
    assert_eq!(s.messages_sent, 10);
    assert_eq!(s.messages_received, 10);
    assert_eq!(s.bytes_sent, s.bytes_received);
    assert_eq!(s.bad_nodes + s.bad_blocks + s.timeout_blocks, 0);
}

#[test]
fn full_ring_refuses_then_accepts_after_the_reader_releases() {
    let name = Named::new("full");
    let ch = Channel::create(&name.0, tiny(8), &Config::default()).unwrap();
    assert!(ch.node_count() >= 8);
    let w = ch.writer();
    let mut sent = 0u64;
    loop {
        match w.try_send(&payload(sent, 50)) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // One node stays free as the gap.
    assert_eq!(sent, ch.node_count() - 1);
    assert_eq!(ch.stats().full, 1);
    let mut r = ch.reader().unwrap();
    let mut buf = [0u8; 128];
    for i in 0..sent {
        let n = r.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &payload(i, 50)[..]);
    }
    assert!(matches!(r.try_recv(&mut buf), Err(Error::Empty)));
    // The empty poll released everything.
    w.try_send(b"again").unwrap();
    assert_eq!(r.try_recv_vec().unwrap(), b"again");
}

#[test]
fn too_large_is_refused_at_once_and_the_largest_fits() {
    let name = Named::new("large");
    let ch = Channel::create(&name.0, tiny(16), &Config::default()).unwrap();
    let w = ch.writer();
    let max = ch.max_message_len();
    assert_eq!(max, ((ch.node_count() as usize - 1) / 2) * 128 - 32);
    match w.try_send(&vec![1u8; max + 1]) {
        Err(Error::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("{other:?}"),
    }
    let mut r = ch.reader().unwrap();
    // The largest message fits at every alignment of the write cursor.
    for i in 0..3 * ch.node_count() {
        let msg = payload(i, max);
        w.try_send(&msg).unwrap();
        assert_eq!(r.try_recv_vec().unwrap(), msg);
        w.try_send(b"x").unwrap();
        assert_eq!(r.try_recv_vec().unwrap(), b"x");
    }
    assert_eq!(ch.stats().bad_nodes, 0);
}

#[test]
fn blocks_never_wrap_padding_is_skipped_and_tiny_rings_wrap_many_times() {
    let name = Named::new("wrap");
    let ch = Channel::create(&name.0, tiny(13), &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let max = ch.max_message_len();
    let mut buf = vec![0u8; max];
    let mut seq = 0u64;
    let mut delivered = 0u64;
    let mut rng = 12345u64;
    // About 200 laps of a 13-node ring, with sizes that keep forcing padding.
    while ch.stats().write_cursor < 200 * ch.node_count() {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (rng >> 33) as usize % (max + 1);
        match w.try_send(&payload(seq, len)) {
            Ok(()) => seq += 1,
            Err(Error::Full) => {}
            Err(e) => panic!("{e}"),
        }
        // Read every other round so the ring is sometimes full.
        if rng & 1 == 0 {
            while let Ok(n) = r.try_recv(&mut buf) {
                assert_eq!(&buf[..n], &payload(delivered, n)[..]);
                delivered += 1;
            }
        }
    }
    while let Ok(n) = r.try_recv(&mut buf) {
        assert_eq!(&buf[..n], &payload(delivered, n)[..]);
        delivered += 1;
    }
    assert_eq!(delivered, seq);
    let s = ch.stats();
    assert!(s.padding_blocks > 10, "{s:?}");
    assert_eq!(s.padding_blocks, s.padding_claims);
    assert_eq!(s.bad_nodes + s.bad_blocks, 0, "{s:?}");
}

#[test]
fn buffer_too_small_keeps_the_message() {
    let name = Named::new("small");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let msg = payload(7, 300);
    w.try_send(&msg).unwrap();
    let mut small = [0u8; 100];
    assert!(matches!(
        r.try_recv(&mut small),
        Err(Error::BufferTooSmall { needed: 300 })
    ));
    assert!(matches!(
        r.try_recv(&mut small),
        Err(Error::BufferTooSmall { needed: 300 })
    ));
    let mut big = [0u8; 300];
    assert_eq!(r.try_recv(&mut big).unwrap(), 300);
    assert_eq!(&big[..], &msg[..]);
    let got = {
        w.try_send(b"closure").unwrap();
        r.try_recv_with(|m| m.to_vec()).unwrap()
    };
    assert_eq!(got, b"closure");
}

#[test]
fn second_reader_is_refused_until_the_first_is_dropped() {
    let name = Named::new("role");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let r1 = ch.reader().unwrap();
    let other = Channel::open(&name.0).unwrap();
    match other.reader() {
        Err(Error::ReaderBusy { pid }) => assert_eq!(pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    drop(r1);
    let _r2 = other.reader().unwrap();
}

#[test]
fn per_writer_order_holds_with_four_writer_threads() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 250_000;
    let name = Named::new("threads");
    let ch = Channel::create(&name.0, 4 << 20, &Config::default()).unwrap();
    let mut reader = ch.reader().unwrap();
    let handles: Vec<_> = (0..WRITERS)
        .map(|id| {
            let w = ch.writer();
            std::thread::spawn(move || {
                let mut backoff = atbus::Backoff::new();
                let mut msg = Vec::with_capacity(2048);
                for seq in 0..PER_WRITER {
                    fill(&mut msg, id, seq);
                    loop {
                        match w.try_send(&msg) {
                            Ok(()) => break,
                            Err(Error::Full) => backoff.snooze(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    backoff.reset();
                }
            })
        })
        .collect();
    let mut next = [0u64; WRITERS as usize];
    let mut buf = vec![0u8; 4096];
    let mut expect = Vec::with_capacity(2048);
    let mut got = 0;
    let mut backoff = atbus::Backoff::new();
    while got < WRITERS * PER_WRITER {
        match reader.try_recv(&mut buf) {
            Ok(n) => {
                backoff.reset();
                let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let seq = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                assert!(id < WRITERS, "writer id {id}");
                assert_eq!(seq, next[id as usize], "writer {id} out of order");
                fill(&mut expect, id, seq);
                assert_eq!(&buf[..n], &expect[..], "writer {id} message {seq}");
                next[id as usize] += 1;
                got += 1;
            }
            Err(Error::Empty) => backoff.snooze(),
            Err(e) => panic!("{e}"),
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let s = ch.stats();
    assert_eq!(s.messages_received, WRITERS * PER_WRITER);
    assert_eq!(s.bad_nodes + s.bad_blocks + s.abandoned, 0, "{s:?}");
}

/// Message `seq` of writer `id`: id, seq, then 0..2032 bytes derived from both.
fn fill(msg: &mut Vec<u8>, id: u64, seq: u64) {
    msg.clear();
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(&seq.to_le_bytes());
    let len = ((id * 7919 + seq * 104_729) % 2033) as usize;
    msg.extend(payload(id << 40 | seq, len));
}

#[test]
fn invalid_names_and_configs_are_refused() {
    for bad in ["", "/", "x\0y"] {
        assert!(matches!(
            Channel::create(bad, 1 << 20, &Config::default()),
            Err(Error::InvalidName { .. })
        ));
    }
    let name = Named::new("cfg");
    // Built by hand, past the builder's check: `create` checks it too.
    let mut bad_node = Config::default();
    bad_node.node_size = 100;
    let e = Channel::create(&name.0, 1 << 20, &bad_node).unwrap_err();
    assert!(e.to_string().contains("node size 100"), "{e}");
    assert!(matches!(
        Channel::create(&name.0, 4096, &Config::default()),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        Channel::open(&name.0),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn created_with_mode_0600_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let name = Named::new("mode");
    Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let path = format!("/dev/shm{}", name.0);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let name2 = Named::new("mode2");
    let cfg = Config::builder()
        .mode(0o640)
        .allow_shared_mode(true)
        .build()
        .unwrap();
    Channel::create(&name2.0, 1 << 20, &cfg).unwrap();
    let path = format!("/dev/shm{}", name2.0);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

mod corrupt {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn file(tag: &str) -> String {
        let dir = std::env::temp_dir();
        format!(
            "{}/atbus-corrupt-{}-{tag}",
            dir.display(),
            std::process::id()
        )
    }

    #[test]
    fn file_paths_work_like_shm_names() {
        let path = file("ok");
        let _ = std::fs::remove_file(&path);
        let ch = Channel::create(&path, 1 << 20, &Config::default()).unwrap();
        ch.writer().send(b"on a file").unwrap();
        let mut r = Channel::open(&path).unwrap().reader().unwrap();
        assert_eq!(r.try_recv_vec().unwrap(), b"on a file");
        Channel::unlink(&path).unwrap();
    }

    #[test]
    fn truncated_segment_is_a_typed_error() {
        let path = file("trunc");
        let _ = std::fs::remove_file(&path);
        Channel::create(&path, 1 << 20, &Config::default()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(65536)
            .unwrap();
        let e = Channel::open(&path).unwrap_err();
        match &e {
            Error::Truncated {
                actual, expected, ..
            } => assert_eq!((*actual, *expected), (65536, 1 << 20)),
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string()
                .contains("is 65536 bytes, header says 1048576"),
            "{e}"
        );
        std::fs::write(&path, [0u8; 100]).unwrap();
        assert!(matches!(
            Channel::open(&path),
            Err(Error::Truncated { actual: 100, .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn garbage_is_not_atbus_and_zeros_are_not_initialised() {
        let path = file("garbage");
        std::fs::write(&path, vec![0xA5u8; 1 << 16]).unwrap();
        assert!(matches!(Channel::open(&path), Err(Error::NotAtbus { .. })));
        std::fs::write(&path, vec![0u8; 1 << 16]).unwrap();
        assert!(matches!(
            Channel::open(&path),
            Err(Error::NotInitialized { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn other_versions_and_bad_geometry_are_refused() {
        let path = file("version");
        let _ = std::fs::remove_file(&path);
        Channel::create(&path, 1 << 20, &Config::default()).unwrap();
        let patch = |offset: u64, bytes: &[u8]| {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(offset)).unwrap();
            f.write_all(bytes).unwrap();
        };
        // A segment of an older layout version (3: zlib's crc32) is refused, saying what
        // to do; so is a version from the future.
        patch(8, &3u32.to_le_bytes());
        let e = Channel::open(&path).unwrap_err();
        assert!(matches!(e, Error::Incompatible { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("layout version 3, this build reads version 4")
                && text.contains("recreate it"),
            "{text}"
        );
        patch(8, &5u32.to_le_bytes());
        assert!(matches!(
            Channel::open(&path),
            Err(Error::Incompatible { .. })
        ));
        patch(8, &4u32.to_le_bytes());
        Channel::open(&path).unwrap();
        patch(20, &100u32.to_le_bytes()); // node size
        assert!(matches!(Channel::open(&path), Err(Error::Corrupt { .. })));
        patch(20, &128u32.to_le_bytes());
        patch(24, &u64::MAX.to_le_bytes()); // node count
        assert!(matches!(Channel::open(&path), Err(Error::Corrupt { .. })));
        std::fs::remove_file(&path).unwrap();
    }
}

/// Sends through `writer` when dropped: from a thread-local destructor that runs after
/// atbus's own thread-locals are gone.
struct SendOnDrop(Option<atbus::Writer>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.send(b"send").unwrap();
            w.try_send(b"try_send").unwrap();
            let mut slot = w.reserve(7).unwrap();
            slot.copy_from_slice(b"reserve");
            slot.commit().unwrap();
            drop(w.reserve(3).unwrap()); // aborted
        }
    }
}

thread_local! {
    static SEND_ON_DROP: std::cell::RefCell<SendOnDrop> =
        const { std::cell::RefCell::new(SendOnDrop(None)) };
}

#[test]
fn sending_from_a_thread_local_destructor_works() {
    let name = Named::new("tls-dtor");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let mut r = ch.reader().unwrap();
    // Armed, so the sends in the destructor ring the doorbell too.
    r.readiness_fd().unwrap();
    assert_eq!(r.arm().unwrap(), atbus::Arm::Armed);
    let w = ch.writer();
    std::thread::spawn(move || {
        // Registered first, so destroyed last (thread-local destructors run in reverse
        // order of registration): after the counter-slot and doorbell tables, which the
        // sends below set up.
        SEND_ON_DROP.with(|s| s.borrow_mut().0 = Some(w.clone()));
        w.send(b"alive").unwrap();
    })
    .join()
    .expect("the thread and its destructors ran without a panic");
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| r.try_recv_vec().ok()).collect();
    assert_eq!(
        got,
        [&b"alive"[..], b"send", b"try_send", b"reserve"].map(|m| m.to_vec())
    );
    let s = ch.stats();
    assert_eq!(s.messages_sent, 4);
    assert_eq!(s.aborted_blocks, 1);
    assert!(s.wakeups >= 1, "the armed reader was rung: {s:?}");
}

/// Messages `0..n` of lengths cycling through `lens`.
fn batch_of(n: usize, lens: &[usize]) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| payload(i as u64, lens[i % lens.len()]))
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|m| &m[..]).collect()
}

/// Receives `msgs.len()` messages (waiting up to 20 s for each) and checks that they are
/// `msgs`, in order, byte for byte.
fn receive_in_order(r: &mut atbus::Reader, msgs: &[Vec<u8>]) {
    let mut buf = vec![0u8; 4096];
    for (i, m) in msgs.iter().enumerate() {
        let n = r
            .recv_timeout(&mut buf, std::time::Duration::from_secs(20))
            .unwrap();
        assert_eq!(&buf[..n], &m[..], "message {i}");
    }
}

#[test]
fn a_batch_arrives_as_ordinary_messages_in_order_byte_for_byte() {
    let name = Named::new("batch");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let msgs = batch_of(40, &[0, 1, 64, 95, 96, 97, 300, 1500, 4096]);
    assert_eq!(w.try_send_batch(&refs(&msgs)).unwrap(), msgs.len());
    assert_eq!(w.try_send_batch(&[]).unwrap(), 0);
    let mut r = ch.reader().unwrap();
    for (i, m) in msgs.iter().enumerate() {
        let meta_buf = &mut vec![0u8; 8192];
        let meta = r.try_recv_meta(meta_buf).unwrap();
        assert_eq!(&meta_buf[..meta.len], &m[..], "message {i}");
        assert_eq!(meta.writer_pid, std::process::id());
    }
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = ch.stats();
    assert_eq!(s.messages_sent, 40);
    assert_eq!(s.messages_received, 40);
    assert_eq!(
        s.bytes_sent,
        msgs.iter().map(|m| m.len() as u64).sum::<u64>()
    );
    assert_eq!(s.bad_nodes + s.bad_blocks + s.timeout_blocks, 0);
}

#[test]
fn a_batch_that_does_not_fit_sends_the_prefix_that_does() {
    let name = Named::new("batch-full");
    let ch = Channel::create(&name.0, tiny(16), &Config::default()).unwrap();
    let w = ch.writer();
    // 1-node messages: the ring holds node_count - 1 of them.
    let msgs = batch_of(40, &[50]);
    let mut sent = 0;
    while sent < msgs.len() {
        match w.try_send_batch(&refs(&msgs[sent..])) {
            Ok(n) => {
                assert!(n >= 1);
                sent += n;
            }
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        sent as u64,
        ch.node_count() - 1,
        "the ring filled up exactly"
    );
    let mut r = ch.reader().unwrap();
    for (i, m) in msgs[..sent].iter().enumerate() {
        assert_eq!(&r.try_recv_vec().unwrap(), m, "message {i}");
    }
    // Room again: the rest goes, still in order, across the end of the ring.
    let rest = refs(&msgs[sent..]);
    let mut more = 0;
    while more < rest.len() {
        more += w.try_send_batch(&rest[more..]).unwrap();
        while let Ok(m) = r.try_recv_vec() {
            assert_eq!(m, msgs[sent], "message {sent}");
            sent += 1;
        }
    }
    assert_eq!(sent, msgs.len());
    assert_eq!(ch.stats().bad_nodes, 0);
}

#[test]
fn a_batch_stops_before_a_message_too_large_and_fails_when_the_first_is() {
    let name = Named::new("batch-large");
    let ch = Channel::create(&name.0, tiny(16), &Config::default()).unwrap();
    let w = ch.writer();
    let max = w.max_message_len();
    let big = vec![7u8; max + 1];
    let ok = payload(1, 10);
    let batch: Vec<&[u8]> = vec![&ok, &big, &ok];
    assert_eq!(w.try_send_batch(&batch).unwrap(), 1);
    assert!(matches!(
        w.try_send_batch(&batch[1..]),
        Err(Error::TooLarge { .. })
    ));
    let mut r = ch.reader().unwrap();
    assert_eq!(r.try_recv_vec().unwrap(), ok);
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
}

#[test]
fn a_batch_across_the_end_of_the_ring_is_padded_once() {
    let name = Named::new("batch-wrap");
    let ch = Channel::create(&name.0, tiny(16), &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    let count = ch.node_count() as usize;
    // Move the cursors near the end of the ring.
    for i in 0..count - 3 {
        w.try_send(&payload(i as u64, 10)).unwrap();
        r.try_recv_vec().unwrap();
    }
    r.release();
    let msgs = batch_of(5, &[10, 200, 10]);
    assert_eq!(w.try_send_batch(&refs(&msgs)).unwrap(), 5);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(&r.try_recv_vec().unwrap(), m, "message {i}");
    }
    let s = ch.stats();
    assert_eq!(s.padding_blocks, 1, "{s:?}");
    assert_eq!(s.bad_nodes, 0, "{s:?}");
}

#[test]
fn send_batch_waits_for_the_reader_and_sends_everything_in_order() {
    let name = Named::new("batch-wait");
    let ch = Channel::create(&name.0, tiny(32), &Config::default()).unwrap();
    let msgs = batch_of(5000, &[8, 64, 100, 200]);
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    std::thread::scope(|s| {
        let msgs = &msgs;
        s.spawn(move || {
            for chunk in msgs.chunks(16) {
                w.send_batch(&refs(chunk)).unwrap();
            }
        });
        receive_in_order(&mut r, msgs);
    });
    let s = ch.stats();
    assert_eq!((s.messages_sent, s.messages_received), (5000, 5000));
    assert_eq!(s.bad_nodes, 0);
}

#[test]
fn batches_over_many_laps_arrive_in_order_byte_for_byte() {
    // A ring of 300 nodes, a lap every 200 or so messages: batches of 1 to 20 messages
    // (one- and multi-node) end at every position, so the nodes a batch asks for ahead
    // of its claim (WRITE_AHEAD past its end) wrap at the ring's end, lie in nodes the
    // reader has not released yet, or not; and the reader, behind a batch, asks for the
    // one-node blocks after the one it reads.
    let name = Named::new("batch-laps");
    let ch = Channel::create(&name.0, tiny(300), &Config::default()).unwrap();
    let msgs = batch_of(20_000, &[8, 64, 95, 96, 200, 64, 500, 16]);
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    std::thread::scope(|s| {
        let msgs = &msgs;
        s.spawn(move || {
            let mut rest = &msgs[..];
            let mut size = 1;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                w.send_batch(&refs(&rest[..n])).unwrap();
                rest = &rest[n..];
                size = size % 20 + 1;
            }
        });
        receive_in_order(&mut r, msgs);
    });
    let s = ch.stats();
    assert_eq!((s.messages_sent, s.messages_received), (20_000, 20_000));
    assert_eq!((s.bad_nodes, s.bad_blocks), (0, 0), "{s:?}");
}

#[test]
fn a_message_sent_in_parts_arrives_as_one_byte_for_byte() {
    let name = Named::new("parts");
    let ch = Channel::create(&name.0, 1 << 20, &Config::default()).unwrap();
    let w = ch.writer();
    let mut r = ch.reader().unwrap();
    // Part sizes around the node size, the gathering bound and the 1 KiB split, and
    // empty parts.
    for (i, sizes) in [
        &[0usize][..],
        &[9, 64],
        &[0, 95, 0, 1],
        &[9, 1500],
        // Around the size up to which parts are gathered before one crc pass (512).
        &[12, 500],
        &[13, 500],
        &[700, 700, 700],
        &[4096, 1, 4096],
    ]
    .iter()
    .enumerate()
    {
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(j, &n)| payload((i * 10 + j) as u64, n))
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        if i % 2 == 0 {
            w.try_send_parts(&refs).unwrap();
        } else {
            w.send_parts_timeout(&refs, std::time::Duration::from_secs(5))
                .unwrap();
        }
        assert_eq!(r.try_recv_vec().unwrap(), parts.concat(), "parts {sizes:?}");
    }
    let too_big = vec![0u8; w.max_message_len()];
    assert!(matches!(
        w.try_send_parts(&[&too_big, b"x"]),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = ch.stats();
    assert_eq!((s.messages_sent, s.crc_failures), (8, 0));
}

#[test]
fn a_prefixed_message_arrives_as_prefix_then_body_with_a_good_crc() {
    for checksums in [true, false] {
        let name = Named::new("prefixed");
        let config = Config::builder().checksums(checksums).build().unwrap();
        let ch = Channel::create(&name.0, 1 << 20, &config).unwrap();
        let w = ch.writer();
        let mut r = ch.reader().unwrap();
        let mut sent = 0;
        // Lengths around the crc kernel's 16-byte minimum, the node size and the split
        // of payloads of 1 KiB and more.
        for (i, &prefix_len) in [0usize, 1, 9, 15, 16, 17, 100].iter().enumerate() {
            let prefix = atbus::Prefix::new(&payload(i as u64, prefix_len));
            assert_eq!(prefix.as_bytes(), &payload(i as u64, prefix_len)[..]);
            for (j, &body_len) in [0usize, 1, 15, 16, 64, 1023, 1024, 5000].iter().enumerate() {
                let body = payload((i * 100 + j) as u64, body_len);
                if j % 2 == 0 {
                    w.try_send_prefixed(&prefix, &body).unwrap();
                } else {
                    w.send_prefixed_timeout(&prefix, &body, std::time::Duration::from_secs(5))
                        .unwrap();
                }
                sent += 1;
                assert_eq!(
                    r.try_recv_vec().unwrap(),
                    [prefix.as_bytes(), &body[..]].concat(),
                    "prefix {prefix_len}, body {body_len}, checksums {checksums}"
                );
            }
        }
        let too_big = vec![0u8; w.max_message_len()];
        assert!(matches!(
            w.try_send_prefixed(&atbus::Prefix::new(b"x"), &too_big),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
        let s = ch.stats();
        assert_eq!(
            (s.messages_sent, s.crc_failures, s.bad_blocks),
            (sent, 0, 0)
        );
    }
}
