//! A reader killed while it frees what it consumed or committed: its successor delivers
//! every message that was not freed, hands over what was, and counts nothing as damage,
//! with checksums on and off.
//!
//! The kill is the real code stopped at the real point: a fault hook at
//! `Step::ReaderFreedNode` unwinds out of the receive or commit after the N-th node is
//! freed, the reader is forgotten (as a killed process leaves it: no drop, no release),
//! and its role record is pointed at a process that cannot exist.

use std::cell::Cell;
use std::time::Duration;

use atbus::{Channel, Config, Error, Step};

/// A channel name unique to this process and tag, unlinked on drop.
struct Named(String);

impl Named {
    fn new(tag: &str) -> Named {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("/atbus-handover-{}-{tag}-{n}", std::process::id());
        let _ = Channel::unlink(&name);
        Named(name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Channel::unlink(&self.0);
    }
}

/// The unwinding payload of a reader "killed" by the hook.
struct ReaderKilled;

thread_local! {
    /// Nodes this thread's reader may still free before it is killed; 0: never.
    static KILL_AFTER: Cell<u64> = const { Cell::new(0) };
}

fn hook(step: Step) {
    if step != Step::ReaderFreedNode {
        return;
    }
    KILL_AFTER.with(|k| match k.get() {
        0 => {}
        1 => {
            k.set(0);
            // resume_unwind: no panic message, this is the test's kill.
            std::panic::resume_unwind(Box::new(ReaderKilled));
        }
        n => k.set(n - 1),
    });
}

/// A channel of 128-byte nodes that messages of `len` bytes span several nodes of.
fn channel(tag: &str, checksums: bool) -> (Named, Channel) {
    let name = Named::new(tag);
    let config = Config::builder()
        .node_size(128)
        .checksums(checksums)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let channel = Channel::create(&name.0, 64 << 10, &config).unwrap();
    (name, channel)
}

/// Message `i`: 300 bytes (3 nodes of 128 with the 32-byte header) derived from `i`.
fn message(i: u8) -> Vec<u8> {
    (0..300u32)
        .map(|b| i.wrapping_mul(97) ^ (b as u8).wrapping_mul(13))
        .collect()
}
const NODES: u64 = 3;

/// Runs `f` on `reader`, killing the reader after it freed `nodes` nodes; the reader is
/// then forgotten and its role record names a process that cannot exist.
fn kill_after(
    channel: &Channel,
    nodes: u64,
    reader: atbus::Reader,
    f: impl FnOnce(&mut atbus::Reader),
) {
    atbus::set_fault_hook(hook);
    let mut reader = reader;
    KILL_AFTER.with(|k| k.set(nodes));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut reader)));
    let killed = matches!(&outcome, Err(p) if p.is::<ReaderKilled>());
    assert!(
        killed,
        "the reader was not killed after {nodes} freed nodes"
    );
    std::mem::forget(reader);
    atbus_tests::overwrite_reader_owner(channel.name(), i32::MAX as u64);
}

fn assert_no_damage(channel: &Channel) {
    let s = channel.stats();
    assert_eq!(
        (
            s.crc_failures,
            s.check_failures,
            s.bad_blocks,
            s.bad_nodes,
            s.timeout_blocks,
            s.dead_writer_blocks
        ),
        (0, 0, 0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn a_reader_killed_mid_consume_leaves_its_successor_nothing_counted_as_damage() {
    for checksums in [true, false] {
        for freed in 1..=NODES {
            let (_name, channel) = channel("consume", checksums);
            let w = channel.writer();
            for i in 0..3 {
                w.send(&message(i)).unwrap();
            }
            // The first reader receives message 0 and is killed while freeing it.
            let first = channel.reader().unwrap();
            kill_after(&channel, freed, first, |r| {
                let _ = r.try_recv_vec();
            });
            let mut next = channel.reader().unwrap();
            let ctx = format!("checksums {checksums}, killed after {freed} freed nodes");
            assert_eq!(next.try_recv_vec().unwrap(), message(1), "{ctx}");
            assert_eq!(next.try_recv_vec().unwrap(), message(2), "{ctx}");
            assert!(matches!(next.try_recv_vec(), Err(Error::Empty)), "{ctx}");
            assert_no_damage(&channel);
            let s = channel.stats();
            assert_eq!(s.handover_nodes, NODES, "{ctx}: {s:?}");
            assert_eq!(s.reader_takeovers, 1, "{ctx}");
        }
    }
}

#[test]
fn a_reader_killed_mid_commit_leaves_its_successor_nothing_counted_as_damage() {
    const MESSAGES: u8 = 4;
    for checksums in [true, false] {
        for freed in 1..=MESSAGES as u64 * NODES {
            let (_name, channel) = channel("commit", checksums);
            let w = channel.writer();
            for i in 0..MESSAGES {
                w.send(&message(i)).unwrap();
            }
            let mut first = channel.reader().unwrap();
            first.set_manual_commit(true).unwrap();
            for i in 0..MESSAGES {
                assert_eq!(first.try_recv_vec().unwrap(), message(i));
            }
            // Killed while committing all four.
            kill_after(&channel, freed, first, |r| {
                let _ = r.commit(r.position());
            });
            // Blocks with a freed first node are handed over whole; the rest, whose
            // commit had not reached them, are delivered again, intact.
            let touched = freed.div_ceil(NODES);
            let mut next = channel.reader().unwrap();
            let ctx = format!("checksums {checksums}, killed after {freed} freed nodes");
            for i in touched as u8..MESSAGES {
                assert_eq!(next.try_recv_vec().unwrap(), message(i), "{ctx}");
            }
            assert!(matches!(next.try_recv_vec(), Err(Error::Empty)), "{ctx}");
            assert_no_damage(&channel);
            let s = channel.stats();
            assert_eq!(s.handover_nodes, touched * NODES, "{ctx}: {s:?}");
        }
    }
}
