//! The ring protocol, top to bottom: claim, write, publish (writers); check, skip,
//! consume, release (the reader). `writer.rs` and `reader.rs` are thin handles over this.
//!
//! # States of a node head (see [`NodeState`] and [`classify`])
//!
//! ```text
//!                 writer CAS (publish, release)
//!  free(p) ──────────────────────────────────────▶ START|WRITTEN|p
//!     │                                                   │
//!     │ reader, after the timeout                         │ reader consumes
//!     │ (claimed, not published): CAS                     │ (store)
//!     ▼                                                   ▼
//!  free(p+N)                                          free(p+N)
//! ```
//!
//! `p` is the absolute position, `N` the node count. A block's position is also its
//! sequence number: unique (each position is claimed once) and growing in claim order,
//! so no shared sequence counter is bumped per message, and every head names the one
//! position it is valid for — a word left by an earlier lap never reads as this lap's.
//!
//! The head is the first word of a block's first node, on the cache line that carries
//! the block header and the payload's first bytes: publish and free touch a line the
//! message moves between the cores anyway. Every node's first word is a head while the
//! node is free (any node may start the next lap's block); inside a block it is payload,
//! and the reader writes `free` over it when it consumes the block.
//!
//! A writer owns the nodes it claimed with the write-cursor CAS; it writes the block
//! header and payload with plain stores and publishes with one compare-exchange from
//! `free(p)`. The only other party that may change that word is the reader giving up
//! on a block claimed for longer than the timeout, also with a compare-exchange from
//! `free(p)`: exactly one of them wins. Either the reader sees WRITTEN and delivers, or
//! the writer's publish fails and it reports [`Error::Abandoned`]. A writer never reports
//! success for a message the reader skipped. (Layout version 1 also marked a block START
//! with a compare-exchange before writing it: a second locked instruction per message,
//! on a line the reader polls. The writer's looks at its head, below, and the publish
//! CAS give the same guarantees without it.)
//!
//! # Torn blocks
//! A claimed node not yet published is "writer still writing": the reader returns
//! `Empty`. When it first sees
//! such a node at position `p` it notes the time `T0` and the write cursor `W0`: every
//! position below `W0` was claimed before `T0`. Once `T0 + timeout` passes, every
//! not-written node below `W0` has been claimed for longer than the timeout, so the
//! reader skips them one by one without waiting again: the rest of a torn block, and any
//! other block claimed before `T0` and still unwritten (libatbus waited a timeout per
//! node here). A block whose header names a writer process that no longer exists is
//! skipped at once, all its nodes in one step.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::layout::{
    self, classify, Head, NodeState, BLOCK_HEADER_SIZE, FLAG_ABORTED, FLAG_PADDING, FLAG_START,
    FLAG_WRITTEN,
};
use crate::process;
use crate::segment::Segment;
use crate::slots::{self, Counters};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;

/// Positions beyond this are corrupt. Positions only grow, one per node: at a billion
/// nodes a second they reach 2^63 after 292 years. Refusing larger cursors (writers in
/// `claim`, the reader in `poll`) keeps every `position + nodes` and
/// `position + node_count` below 2^64, so no position arithmetic can overflow.
pub(crate) const MAX_POSITION: u64 = 1 << 63;

/// A typed error for a cursor that no honest process could have written.
fn corrupt_cursor(seg: &Segment, what: &str, value: u64) -> Error {
    Error::Corrupt {
        name: seg.name().into(),
        reason: format!("{what} {value} is beyond the largest position {MAX_POSITION}"),
    }
}

/// The largest payload a ring accepts: a block of at most half the usable nodes, so that
/// a block plus the padding before it always fits in an empty ring.
pub(crate) fn max_payload(seg: &Segment) -> usize {
    let geo = seg.geometry();
    let usable = geo.node_count - 1 - seg.settings().protect_nodes;
    let nodes = (usable / 2).max(1) as usize;
    (nodes * geo.node_size)
        .saturating_sub(BLOCK_HEADER_SIZE)
        .min(u32::MAX as usize)
}

// ---------------------------------------------------------------------------------------
// Fault injection: lets a test stop a writer between the steps of `send`.

/// A point inside `send` where a test can stop the writer.
#[cfg(any(feature = "fault-injection", loom))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The write cursor has moved; no flag is set yet.
    AfterClaim,
    /// The block header (length, pid, sequence) is written; the payload is not.
    AfterHeader,
    /// Half the payload is written and the writer has checked its block is still its own
    /// (stopped here, it resumes straight into copying the second half).
    MidPayload,
    /// Everything is written; WRITTEN is not set yet.
    BeforePublish,
    /// The reader has freed one node of a block it consumed or committed, and not yet
    /// the next (stopped here for good, it models a reader killed mid-free).
    ReaderFreedNode,
}

#[cfg(all(feature = "fault-injection", not(loom)))]
static FAULT_HOOK: std::sync::OnceLock<fn(Step)> = std::sync::OnceLock::new();

/// Installs the process-wide hook called at each [`Step`] (once per process).
#[cfg(all(feature = "fault-injection", not(loom)))]
pub fn set_fault_hook(hook: fn(Step)) {
    let _ = FAULT_HOOK.set(hook);
}

#[cfg(all(feature = "fault-injection", not(loom)))]
macro_rules! fault_point {
    ($step:ident) => {
        if let Some(hook) = FAULT_HOOK.get() {
            hook(Step::$step)
        }
    };
}
// Under the model checker a writer can be told to stop for good at a step: it returns
// there and never touches the ring again, like a process killed at that point; or to
// pause there until the test lets it go on, like a process descheduled at that point.
#[cfg(loom)]
macro_rules! fault_point {
    ($step:ident) => {
        if crate::model::stops_at(Step::$step) {
            return Err(Error::Timeout);
        }
        crate::model::pause_at(Step::$step);
    };
}
#[cfg(not(any(feature = "fault-injection", loom)))]
macro_rules! fault_point {
    ($step:ident) => {};
}

/// A reader-side fault point: the hook may unwind (a test's way to kill the reader
/// there). Nothing without the `fault-injection` feature.
macro_rules! reader_fault_point {
    ($step:ident) => {
        #[cfg(all(feature = "fault-injection", not(loom)))]
        if let Some(hook) = FAULT_HOOK.get() {
            hook(Step::$step)
        }
    };
}

// ---------------------------------------------------------------------------------------
// Writers: claim, write, publish.

/// A claimed block: the writer owns its bytes until it publishes or aborts (or stalls
/// past the timeout).
#[derive(Debug)]
pub(crate) struct Claimed {
    index: u64,
    /// The block's position, which is its sequence.
    seq: u64,
    len: usize,
}

impl Claimed {
    /// The block's sequence (its position).
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Pointer to the block's payload bytes (`len` of them) in the data area.
    pub(crate) fn payload_ptr(&self, seg: &Segment) -> *mut u8 {
        seg.node_ptr(self.index).wrapping_add(BLOCK_HEADER_SIZE)
    }

    /// Payload length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `Abandoned` if the reader has skipped this block (its head no longer reads
    /// `free` at our position): the nodes may already belong to another writer.
    fn check_still_ours(&self, seg: &Segment, counters: &Counters<'_>) -> Result<()> {
        // Relaxed: a hint only; the publish CAS is what decides.
        let head = seg.head(self.index).load(Ordering::Relaxed);
        if head != NodeState::free(self.seq).0 {
            return Err(abandoned(counters, self.seq));
        }
        Ok(())
    }
}

/// Payloads from this size on are copied in two halves with a look between them (each
/// piece costs a crc reduction, ~10 ns).
const SPLIT_FROM: usize = 1024;

/// Sends one message. `cached_read` is the writer handle's copy of the read cursor.
pub(crate) fn send(seg: &Segment, cached_read: &AtomicU64, pid: u32, data: &[u8]) -> Result<()> {
    check_len(seg, data.len())?;
    // One look-up of this thread's counter slot per message, shared by claim and publish.
    let counters = slots::for_thread(seg.header());
    let block = claim_block(seg, &counters, cached_read, pid, data.len())?;
    let crc = write_payload(seg, &counters, &block, data)?;
    publish(seg, &counters, &block, crc, false)
}

/// Messages of `parts` up to this long are gathered into one buffer before the copy.
const GATHER_UP_TO: usize = 512;

/// Sends one message made of `parts` laid end to end (a header and a body, say), without
/// gathering them into one buffer first.
pub(crate) fn send_parts(
    seg: &Segment,
    cached_read: &AtomicU64,
    pid: u32,
    parts: &[&[u8]],
) -> Result<()> {
    let len = parts
        .iter()
        .map(|p| p.len())
        .fold(0usize, usize::saturating_add);
    check_len(seg, len)?;
    if parts.len() > 1 {
        // Small: gathered on the stack and sent as one piece, so the crc kernel runs
        // once over the whole payload (measured when a short part alone went through the
        // portable crc; the crc32c kernel takes any length). A small buffer for small
        // messages: zeroing 512 bytes for each 64-byte message was a tenth of a bus send.
        if len <= GATHER_SMALL {
            return send_gathered::<GATHER_SMALL>(seg, cached_read, pid, parts, len);
        }
        if len <= GATHER_UP_TO {
            return send_gathered::<GATHER_UP_TO>(seg, cached_read, pid, parts, len);
        }
    }
    let counters = slots::for_thread(seg.header());
    let block = claim_block(seg, &counters, cached_read, pid, len)?;
    let checksums = seg.settings().checksums;
    // As `write_payload`, part after part, the crc carried across them; from SPLIT_FROM
    // bytes on, one more look at the head once half the bytes are in.
    let half = if len >= SPLIT_FROM {
        len / 2
    } else {
        usize::MAX
    };
    let (mut crc, mut offset, mut looked) = (0, 0, false);
    for part in parts {
        if checksums {
            crc = seg.write_payload_crc(block.index, offset, part, crc);
        } else {
            seg.write_payload(block.index, offset, part);
        }
        offset += part.len();
        if !looked && offset >= half {
            looked = true;
            block.check_still_ours(seg, &counters)?;
        }
    }
    fault_point!(BeforePublish);
    publish(seg, &counters, &block, crc, false)
}

/// Sends one message: `prefix` then `body`. `prefix_crc` is the crc32c of `prefix`, so
/// that only the body goes through the crc kernel (gathering the prefix with the body
/// would cost a copy).
pub(crate) fn send_prefixed(
    seg: &Segment,
    cached_read: &AtomicU64,
    pid: u32,
    prefix: &[u8],
    prefix_crc: u32,
    body: &[u8],
) -> Result<()> {
    let len = prefix.len().saturating_add(body.len());
    check_len(seg, len)?;
    let counters = slots::for_thread(seg.header());
    let block = claim_block(seg, &counters, cached_read, pid, len)?;
    seg.write_payload(block.index, 0, prefix);
    let crc = write_payload_at(seg, &counters, &block, prefix.len(), body, prefix_crc)?;
    publish(seg, &counters, &block, crc, false)
}

/// The smaller of `send_parts`'s two gathering buffers.
const GATHER_SMALL: usize = 128;

/// Sends `parts` (`len` bytes in all, at most `N`) gathered into a buffer of `N` bytes.
fn send_gathered<const N: usize>(
    seg: &Segment,
    cached_read: &AtomicU64,
    pid: u32,
    parts: &[&[u8]],
    len: usize,
) -> Result<()> {
    /// Cache-line aligned, so that the copy's 16-byte loads never straddle a line.
    #[repr(align(64))]
    struct Gathered<const N: usize>([u8; N]);
    let mut gathered = Gathered([0u8; N]);
    let mut at = 0;
    for part in parts {
        gathered.0[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    send(seg, cached_read, pid, &gathered.0[..len])
}

/// Copies `data` into the claimed `block` and returns its crc32c (0 without checksums).
///
/// We own the block's bytes: our claim CAS succeeded, so no other writer of this lap
/// writes them and the reader reads them only after WRITTEN — unless we stall past the
/// timeout and the reader gives up on us. The claim looked before the header; a payload
/// of `SPLIT_FROM` bytes or more goes in two halves with another look between (one load
/// of a line this core holds): a writer that wakes after the skip then leaves the nodes,
/// since reused by another writer, alone instead of destroying that writer's message. A
/// shorter copy is over within nanoseconds of the first look. The crc is computed as the
/// bytes are copied: one pass over them, not two.
#[inline(always)]
fn write_payload(
    seg: &Segment,
    counters: &Counters<'_>,
    block: &Claimed,
    data: &[u8],
) -> Result<u32> {
    write_payload_at(seg, counters, block, 0, data, 0)
}

/// [`write_payload`] of `data` at `offset` in the block's payload, the crc continued
/// from `crc` (that of the bytes before `offset`).
#[inline(always)]
fn write_payload_at(
    seg: &Segment,
    counters: &Counters<'_>,
    block: &Claimed,
    offset: usize,
    data: &[u8],
    mut crc: u32,
) -> Result<u32> {
    let checksums = seg.settings().checksums;
    let mut copy = |at: usize, part: &[u8]| {
        if checksums {
            crc = seg.write_payload_crc(block.index, offset + at, part, crc);
        } else {
            seg.write_payload(block.index, offset + at, part);
        }
    };
    let mid = if data.len() >= SPLIT_FROM {
        data.len() / 2
    } else {
        0
    };
    if mid > 0 {
        copy(0, &data[..mid]);
        block.check_still_ours(seg, counters)?;
    }
    // A writer stopped here models one descheduled in the middle of its copy (before it,
    // for a short payload), the window no look can close: the crc catches what it writes.
    fault_point!(MidPayload);
    copy(mid, &data[mid..]);
    fault_point!(BeforePublish);
    Ok(crc)
}

/// Sends a prefix of `messages` with one claim of the write cursor: as many as fit in
/// the largest block the ring takes and in the room there is now (halving the count
/// while the ring has no room for them). Each message is an ordinary block — its own
/// header, crc and sequence, published by its own compare-exchange — so the reader
/// sees ordinary messages, per-writer order holds, and torn blocks are skipped one by
/// one as ever. Returns how many were sent (at least one), or the first message's
/// error: `Full`, `TooLarge`, `Abandoned`. Sending stops before a message too large
/// for the ring.
///
/// Every block of the batch is named (length, pid, sequence) before any payload is
/// written, so a writer that dies mid-batch leaves blocks the reader skips at once as a
/// dead writer's, not after the timeout. The reader is woken, if it sleeps, once, after
/// the last publish.
pub(crate) fn send_batch(
    seg: &Segment,
    cached_read: &AtomicU64,
    pid: u32,
    messages: &[&[u8]],
) -> Result<usize> {
    let Some(first) = messages.first() else {
        return Ok(0);
    };
    check_len(seg, first.len())?;
    let geo = seg.geometry();
    let max = max_payload(seg);
    // The prefix one claim may take: no more nodes than the largest block has.
    let limit = geo.nodes_for(max);
    let nodes_of = |batch: &[&[u8]]| batch.iter().map(|m| geo.nodes_for(m.len())).sum::<u64>();
    let mut count = messages
        .iter()
        .scan(0u64, |nodes, m| {
            *nodes += geo.nodes_for(m.len());
            (m.len() <= max && *nodes <= limit).then_some(())
        })
        .count();
    let counters = slots::for_thread(seg.header());
    let (pos, nodes) = loop {
        let nodes = nodes_of(&messages[..count]);
        match claim_nodes(seg, &counters, cached_read, nodes) {
            Ok(pos) => break (pos, nodes),
            Err(Error::Full) if count > 1 => count /= 2,
            Err(e) => return Err(e),
        }
    };
    fault_point!(AfterClaim);
    prefetch_ahead(seg, cached_read, pos + nodes, nodes);
    let batch = &messages[..count];
    let blocks = || {
        batch.iter().scan(pos, |p, m| {
            let block = Claimed {
                index: geo.index(*p),
                seq: *p,
                len: m.len(),
            };
            *p += geo.nodes_for(m.len());
            Some((block, *m))
        })
    };
    for (block, _) in blocks() {
        // `Abandoned` here: the reader timed us out before any block was published,
        // and skips the rest of the claim as torn too.
        name_block(seg, &counters, &block, pid)?;
    }
    fault_point!(AfterHeader);
    let (mut sent, mut failed) = (0usize, None);
    for (block, data) in blocks() {
        if failed.is_some() {
            // The rest are dropped as a reservation is: the reader skips them at once.
            let _ = publish_head(seg, &counters, &block, 0, true);
            continue;
        }
        let published = write_payload(seg, &counters, &block, data)
            .and_then(|crc| publish_head(seg, &counters, &block, crc, false));
        match published {
            Ok(()) => {
                // Counted as published (a plain store to this thread's slot), so that a
                // writer killed mid-batch leaves counts that match what was delivered.
                count_sent(&counters, data.len());
                sent += 1;
            }
            Err(e @ Error::Abandoned { .. }) => failed = Some(e),
            // A writer stopped for good by the model checker: nothing more.
            Err(e) => return Err(e),
        }
    }
    wake_reader(seg, &counters);
    match failed {
        Some(e) if sent == 0 => Err(e),
        _ => Ok(sent),
    }
}

/// How far past the end of its claim a batch asks for the nodes a later batch will
/// write, and at most how many it asks for.
const WRITE_AHEAD: u64 = 32;
const WRITE_AHEAD_MAX: u64 = 64;

/// After a batch's claim of `nodes` nodes ending at position `end`: asks the CPU to fetch,
/// for writing, as many nodes `WRITE_AHEAD` nodes further on, where the writer's next
/// batches go. Each node's lines were last held by the reader's core; fetched one block
/// at a time, every publish CAS waits for them (a one-way line transfer is 30-40 ns
/// between two cores that share a cache, over 200 ns on the 2-vCPU EPYC VMs when they
/// do not). Nodes the reader has not released (as of this writer's last look at the
/// read cursor) are left alone, not taken from under it. Measured with `atbus-bench
/// compare` (1->1 and 3->1, 16 x 64 B batches) and `examples/handoff.rs`:
/// docs/benchmarks.md, "Batches fetch their nodes ahead". Single sends do not: with a
/// reader right behind the writer it made them slower.
#[inline]
fn prefetch_ahead(seg: &Segment, cached_read: &AtomicU64, end: u64, nodes: u64) {
    let geo = seg.geometry();
    let from = end + WRITE_AHEAD;
    let nodes = nodes.min(WRITE_AHEAD_MAX);
    let capacity = geo.node_count - 1 - seg.settings().protect_nodes;
    // Relaxed: a hint that decides only whether to prefetch, which changes no memory.
    let read = cached_read.load(Ordering::Relaxed);
    if (from + nodes).wrapping_sub(read) <= capacity {
        seg.prefetch_nodes_for_write(geo.index(from), nodes);
    }
}

/// `TooLarge` unless a payload of `len` bytes fits in this ring.
pub(crate) fn check_len(seg: &Segment, len: usize) -> Result<()> {
    let max = max_payload(seg);
    if len > max {
        return Err(Error::TooLarge { len, max });
    }
    Ok(())
}

/// Claims a block for `len` payload bytes and writes what the reader needs to skip it
/// should we die (length, pid, sequence). The crc is written at publish.
#[inline(always)]
pub(crate) fn claim_block(
    seg: &Segment,
    counters: &Counters<'_>,
    cached_read: &AtomicU64,
    pid: u32,
    len: usize,
) -> Result<Claimed> {
    let geo = seg.geometry();
    // Claim. The block's position is its sequence.
    let pos = claim_nodes(seg, counters, cached_read, geo.nodes_for(len))?;
    fault_point!(AfterClaim);
    let block = Claimed {
        index: geo.index(pos),
        seq: pos,
        len,
    };
    name_block(seg, counters, &block, pid)?;
    fault_point!(AfterHeader);
    Ok(block)
}

/// Claims `nodes` nodes (see [`claim`]) and publishes the padding block the claim may
/// start with. Returns the position of the first claimed node after the padding.
#[inline(always)]
fn claim_nodes(
    seg: &Segment,
    counters: &Counters<'_>,
    cached_read: &AtomicU64,
    nodes: u64,
) -> Result<u64> {
    let (pad_at, pos) = claim(seg, counters, cached_read, nodes)?;
    if let Some(pad) = pad_at {
        // The padding block carries no data, so publishing it is one CAS; relaxed is
        // enough. It fails only if the reader already skipped these nodes as torn, in
        // which case our blocks are gone too.
        let head = seg.head(seg.geometry().index(pad));
        let padding = NodeState::block(FLAG_PADDING | FLAG_WRITTEN, pad);
        if head
            .compare_exchange(
                NodeState::free(pad).0,
                padding.0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(abandoned(counters, pos));
        }
        counters.add(&counters.padding_blocks, 1);
    }
    Ok(pos)
}

/// Writes the block header of a claimed block (length, pid, sequence): what the reader
/// needs to skip it at once should we die.
#[inline(always)]
fn name_block(seg: &Segment, counters: &Counters<'_>, block: &Claimed, pid: u32) -> Result<()> {
    let nodes = seg.geometry().nodes_for(block.len);
    // Ask for the block's other nodes now, so their lines (last written by the reader's
    // free heads or another lap's writer) are here by the time the copy stores into
    // them, instead of one store-miss at a time, with the publish CAS waiting for them
    // all. Measured with `atbus-bench compare` (same host, builds alternated): 1->1
    // 16 KiB +15-40%, 3->1 8 B-2 KiB and 1 KiB within noise; one-node blocks are left as
    // they were. (PREFETCHW where the CPU has it, as for a batch's nodes ahead; it
    // measured level with a plain prefetch here: 1->1 16 KiB 1.08x, 3->1 8 B-2 KiB 1.04x,
    // both inside the run's spread.)
    if nodes > 1 {
        seg.prefetch_nodes_for_write(block.index + 1, nodes - 1);
    }
    // Still ours? A writer stalled past the timeout between its claim and here stops
    // rather than writing a header into nodes the reader has handed to someone else.
    block.check_still_ours(seg, counters)?;
    let bh = seg.block_header(block.index);
    bh.len.store(block.len as u32, Ordering::Relaxed);
    bh.writer_pid.store(pid, Ordering::Relaxed);
    // Release: a reader that reads this seq (acquire) also sees len and writer_pid, and
    // can skip the block at once if we die. (A plain store on x86: no fence.)
    bh.seq.store(block.seq, Ordering::Release);
    Ok(())
}

/// Publishes a claimed block (or, with `aborted`, marks it for the reader to skip), and
/// wakes the reader if it sleeps. `Abandoned` if the reader gave up on us meanwhile.
pub(crate) fn publish(
    seg: &Segment,
    counters: &Counters<'_>,
    block: &Claimed,
    crc: u32,
    aborted: bool,
) -> Result<()> {
    publish_head(seg, counters, block, crc, aborted)?;
    wake_reader(seg, counters);
    if !aborted {
        count_sent(counters, block.len);
    }
    Ok(())
}

/// Seals the crc and publishes the block's head (WRITTEN, or ABORTED). `Abandoned` if
/// the reader gave up on us meanwhile.
#[inline(always)]
fn publish_head(
    seg: &Segment,
    counters: &Counters<'_>,
    block: &Claimed,
    crc: u32,
    aborted: bool,
) -> Result<()> {
    let bh = seg.block_header(block.index);
    bh.crc
        .store(layout::sealed_crc(crc, block.seq), Ordering::Relaxed);
    let mut flags = FLAG_START | FLAG_WRITTEN;
    if aborted {
        flags |= FLAG_ABORTED;
    }
    // Release: every byte written above is the reader's once it acquires this head.
    // (A plain `lock cmpxchg` on x86, whatever the ordering; `notify_reader` relies on it
    // being a full barrier there.) Fails only if the reader skipped us as torn.
    if seg
        .head(block.index)
        .compare_exchange(
            NodeState::free(block.seq).0,
            NodeState::block(flags, block.seq).0,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return Err(abandoned(counters, block.seq));
    }
    Ok(())
}

/// After one or more publish CASes: wakes the reader if it announced a sleep (wake.rs).
/// The writer's whole cost for blocking readers is a fence (free on x86 after the CAS)
/// and one load of a line the reader writes only when it goes to sleep or wakes.
#[inline(always)]
fn wake_reader(seg: &Segment, counters: &Counters<'_>) {
    if crate::wake::notify_reader(&seg.header().wake, |epoch| seg.ring_doorbell(epoch)) {
        counters.add(&counters.wakeups, 1);
    }
}

/// Counts one message of `len` bytes sent.
#[inline(always)]
fn count_sent(counters: &Counters<'_>, len: usize) {
    counters.add(&counters.messages_sent, 1);
    counters.add(&counters.bytes_sent, len as u64);
}

fn abandoned(counters: &Counters<'_>, seq: u64) -> Error {
    counters.add(&counters.abandoned, 1);
    Error::Abandoned { seq }
}

/// Moves the write cursor past `nodes` free nodes (plus padding to the end of the ring
/// when the block would not fit before it). Returns the padding position, if any, and
/// the block's position. `Full` when the reader has not released enough nodes.
fn claim(
    seg: &Segment,
    counters: &Counters<'_>,
    cached_read: &AtomicU64,
    nodes: u64,
) -> Result<(Option<u64>, u64)> {
    let geo = seg.geometry();
    let h = seg.header();
    let count = geo.node_count;
    // One node always stays free (the gap), plus the protect area.
    let capacity = count - 1 - seg.settings().protect_nodes;
    let retries_before_yield = seg.settings().write_retries.max(1);
    let mut failures = 0u32;
    // Relaxed: the cursor value is only a guess for the CAS, which re-checks it.
    let mut w = h.write_cursor.load(Ordering::Relaxed);
    loop {
        if w > MAX_POSITION {
            return Err(corrupt_cursor(seg, "write cursor", w));
        }
        let index = geo.index(w);
        let pad = if index + nodes > count {
            count - index
        } else {
            0
        };
        let end = w.wrapping_add(pad + nodes);
        // Acquire (here and on the refresh below): the reader's release of the cursor
        // happens-before our writes to the nodes it released. The cache is shared by the
        // threads using this handle, so it is stored with release and loaded with acquire
        // to carry that edge from the thread that refreshed it.
        let mut r = cached_read.load(Ordering::Acquire);
        if end.wrapping_sub(r) > capacity {
            r = h.read_cursor.load(Ordering::Acquire);
            cached_read.store(r, Ordering::Release);
            if end.wrapping_sub(r) > capacity {
                counters.add(&counters.full, 1);
                return Err(Error::Full);
            }
        }
        // Strong CAS (never `weak`: libatbus lost messages to spurious failures mixed
        // with retries). Relaxed: uniqueness of the claim comes from atomicity alone;
        // the reader only compares the cursor with its own position.
        match h
            .write_cursor
            .compare_exchange(w, end, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Ok(((pad > 0).then_some(w), w + pad)),
            Err(current) => {
                w = current;
                failures += 1;
                counters.add(&counters.write_retries, 1);
                if failures.is_multiple_of(retries_before_yield) {
                    // Another writer won; on an oversubscribed host let it run.
                    crate::sync::yield_now();
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The reader: check, skip, consume, release.

/// How often (in empty polls) the reader looks at the write cursor when the next node is
/// free, to notice a block claimed and not yet published (the reader then starts
/// timing it).
const CURSOR_CHECK_EVERY: u32 = 64;
/// Nodes after a block the reader asks the CPU to load while it copies the block.
const PREFETCH_NODES: u64 = 8;
/// How long a block must wait before the reader asks whether its writer still exists.
const LIVENESS_GRACE: Duration = Duration::from_millis(1);
/// How often, after that, it asks again.
const LIVENESS_EVERY: Duration = Duration::from_millis(1);

/// The reader's own state; lives in the reader's process, never in shared memory.
pub(crate) struct ReadState {
    /// Next position to read.
    pos: u64,
    /// Last value stored to the shared read cursor.
    published: u64,
    /// Publish the read cursor after this many nodes (and whenever the ring is empty).
    release_every: u64,
    /// Write cursor as last read (a lower bound of the real one).
    cached_write: u64,
    /// The torn-block wait in progress.
    wait: Option<Wait>,
    /// End of the last run of skipped nodes (`None` after a delivery), to count a run of
    /// skipped nodes as one torn block.
    skipped_to: Option<u64>,
    idle_polls: u32,
    /// Nodes before this position were handed to the CPU's prefetcher.
    prefetched_to: u64,
    max_payload: usize,
    /// Messages and bytes taken in the current batch, counted at its end.
    batch_messages: u64,
    batch_bytes: u64,
    /// Received blocks stay in the ring (heads published, read cursor not moved) until
    /// [`commit`](Self::commit): a successor reader delivers them again.
    manual_commit: bool,
}

#[derive(Clone, Copy)]
struct Wait {
    /// When the reader first found an unwritten node.
    since: Instant,
    /// The write cursor then: every position below was claimed before `since`.
    horizon: u64,
    /// When to next ask whether the block's writer exists.
    next_liveness: Instant,
}

/// A published block that passed its header checks, ready to copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    /// The block's position, which is also its sequence.
    pos: u64,
    index: u64,
    nodes: u64,
    /// Payload length.
    pub len: usize,
    crc: u32,
}

impl Ready {
    /// The block's sequence: its position.
    pub(crate) fn seq(&self) -> u64 {
        self.pos
    }

    /// The node index of the block's first node (its block header).
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// Whether a payload with this crc32c is the one published under this head.
    fn crc_matches(&self, payload_crc: u32) -> bool {
        layout::sealed_crc(payload_crc, self.pos) == self.crc
    }
}

/// Why nodes were skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    Timeout,
    DeadWriter,
}

impl ReadState {
    pub(crate) fn new(seg: &Segment) -> ReadState {
        // Acquire: start where the previous reader released, seeing its resets.
        let pos = seg.header().read_cursor.load(Ordering::Acquire);
        ReadState {
            pos,
            published: pos,
            release_every: (seg.geometry().node_count / 16).max(1),
            cached_write: pos,
            wait: None,
            skipped_to: None,
            idle_polls: 0,
            prefetched_to: pos,
            max_payload: max_payload(seg),
            batch_messages: 0,
            batch_bytes: 0,
            manual_commit: false,
        }
    }

    /// Finds the next deliverable block, skipping (and counting) whatever must be
    /// skipped on the way. `Empty` when nothing is ready yet. (The loom models call it;
    /// the reader matches `poll_fast` and `poll_slow` itself, to keep `Ready` in
    /// registers.)
    #[cfg_attr(not(loom), allow(dead_code))]
    #[inline]
    pub(crate) fn poll(&mut self, seg: &Segment, now: fn() -> Instant) -> Result<Ready> {
        match self.poll_fast(seg) {
            Some(ready) => Ok(ready),
            None => self.poll_slow(seg, now),
        }
    }

    /// The common case of [`poll`](Self::poll), inline: a published block that checks
    /// out. `None` for everything else, which `poll_slow` handles, starting over from
    /// the same position. Callers that match on it before calling `poll_slow` keep
    /// `Ready` in registers (not passed through the stack as a `Result`).
    #[inline(always)]
    pub(crate) fn poll_fast(&mut self, seg: &Segment) -> Option<Ready> {
        let pos = self.pos;
        if pos > MAX_POSITION {
            return None;
        }
        let geo = seg.geometry();
        let index = geo.index(pos);
        // Acquire: pairs with the writer's release CAS that set WRITTEN.
        let word = seg.head(index).load(Ordering::Acquire);
        if classify(word, pos, geo.node_count) != Head::Published {
            return None;
        }
        self.check(seg, pos, index)
    }

    #[inline(never)]
    pub(crate) fn poll_slow(&mut self, seg: &Segment, now: fn() -> Instant) -> Result<Ready> {
        let count = seg.geometry().node_count;
        let rc = &seg.header().reader_counters;
        loop {
            let pos = self.pos;
            if pos > MAX_POSITION {
                return Err(corrupt_cursor(seg, "read position", pos));
            }
            let index = seg.geometry().index(pos);
            // Acquire: pairs with the writer's release CAS that set WRITTEN.
            let state = NodeState(seg.head(index).load(Ordering::Acquire));
            let head = classify(state.0, pos, count);
            let waiting = matches!(self.wait, Some(w) if pos < w.horizon);
            // Each arm either settles this position (returns, or skips and goes on to
            // the next) or falls through to "not ready" below. Past the write cursor no
            // honest head is written, so a forged one never moves the reader past writers.
            match head {
                Head::Published => match self.check(seg, pos, index) {
                    Some(ready) => return Ok(ready),
                    None if self.claimed(seg, pos) => {
                        bump(&rc.check_failures, 1);
                        bump(&rc.bad_blocks, 1);
                        // The length is not to be trusted: drop the first node only; the
                        // rest go through the timeout path.
                        self.skip_nodes(seg, pos, 1, Some(state), true);
                        continue;
                    }
                    None => {}
                },
                Head::Aborted => {
                    if let Some(ready) = self.check(seg, pos, index) {
                        // A reservation dropped without commit: no data, skip it at once.
                        self.skip_nodes(seg, pos, ready.nodes, Some(state), false);
                        bump(&rc.aborted_blocks, 1);
                        continue;
                    }
                }
                Head::Padding if self.padding_fits(seg, pos, index) => {
                    self.skip_nodes(seg, pos, count - index, Some(state), false);
                    bump(&rc.padding_blocks, 1);
                    continue;
                }
                Head::Consumed if self.claimed(seg, pos) => {
                    // A previous reader consumed this node but died before releasing it
                    // (it was claimed, so a forged head past the write cursor does not
                    // count). If it started a block, the whole block was consumed: its
                    // first node is freed first, so the rest may still hold payload.
                    self.hand_over(seg, pos, index);
                    continue;
                }
                // Empty, or claimed and not yet published. A block whose writer has
                // written its header (the sequence there is this position; same line as
                // the head) is being written: time it now. Otherwise look at the write
                // cursor only every so often to tell empty from claimed.
                Head::Free if !waiting && !self.header_written(seg, pos, index) => {
                    self.idle_polls = self.idle_polls.wrapping_add(1);
                    if !self.idle_polls.is_multiple_of(CURSOR_CHECK_EVERY) {
                        self.release(seg);
                        return Err(Error::Empty);
                    }
                }
                _ => {}
            }

            // Not ready: free but claimed, started, or anything else (the payload of a
            // torn block, garbage).
            let w = self.write_cursor(seg);
            let claimed = w.wrapping_sub(pos);
            if claimed == 0 {
                self.release(seg);
                return Err(Error::Empty);
            }
            if claimed > count {
                return Err(Error::Corrupt {
                    name: seg.name().into(),
                    reason: format!(
                        "write cursor {w} is not within one ring ({count} nodes) ahead of \
                         the read position {pos}"
                    ),
                });
            }
            let t = now();
            let timeout = seg.settings().timeout;
            match &mut self.wait {
                Some(wait) if pos < wait.horizon => {
                    if t.saturating_duration_since(wait.since) >= timeout {
                        self.skip_torn(seg, pos, state, Skip::Timeout);
                        continue;
                    }
                    if seg.settings().detect_dead_writers
                        && head == Head::Free
                        && t >= wait.next_liveness
                    {
                        wait.next_liveness = t + LIVENESS_EVERY;
                        if let Some(nodes) = self.dead_writer_nodes(seg, pos, index, w) {
                            self.skip_torn(seg, pos, state, Skip::DeadWriter);
                            // Only if the first node was ours to skip (its CAS held).
                            if nodes > 1 && self.pos == pos + 1 {
                                self.skip_nodes(seg, pos + 1, nodes - 1, None, true);
                            }
                            continue;
                        }
                    }
                }
                _ => {
                    self.wait = Some(Wait {
                        since: t,
                        horizon: w,
                        next_liveness: t + LIVENESS_GRACE,
                    })
                }
            }
            self.release(seg);
            return Err(Error::Empty);
        }
    }

    /// Checks the header of the published block at `pos` (node `index`); `None` if it
    /// does not check out.
    #[inline]
    fn check(&mut self, seg: &Segment, pos: u64, index: u64) -> Option<Ready> {
        let bh = seg.block_header(index);
        // Relaxed: the head's acquire load already synchronised with the publish CAS,
        // which follows the header stores.
        let seq = bh.seq.load(Ordering::Relaxed);
        let len = bh.len.load(Ordering::Relaxed) as usize;
        let crc = bh.crc.load(Ordering::Relaxed);
        let nodes =
            layout::check_block(seg.geometry(), self.max_payload, pos, index, seq, len).ok()?;
        if pos + nodes > self.cached_write && pos + nodes > self.write_cursor(seg) {
            return None;
        }
        Some(Ready {
            pos,
            index,
            nodes,
            len,
            crc,
        })
    }

    /// Whether the block header at node `index` is the one the writer of position `pos`
    /// writes right after its claim (its sequence is `pos`).
    fn header_written(&self, seg: &Segment, pos: u64, index: u64) -> bool {
        // Relaxed: a hint that starts the timing of a torn block; nothing is read on it.
        let seq = seg.block_header(index).seq.load(Ordering::Relaxed);
        seq & layout::TAG_MASK == pos & layout::TAG_MASK
    }

    /// Whether writers have claimed position `pos`. Only claimed nodes are skipped or
    /// taken over, so no head, however forged, moves the reader past the write cursor
    /// (writers would then find the ring full, or claim positions the reader passed).
    fn claimed(&mut self, seg: &Segment, pos: u64) -> bool {
        pos < self.cached_write || pos < self.write_cursor(seg)
    }

    /// A padding block must run to the end of the ring inside the claimed region.
    fn padding_fits(&mut self, seg: &Segment, pos: u64, index: u64) -> bool {
        let end = pos + (seg.geometry().node_count - index);
        end <= self.cached_write || end <= self.write_cursor(seg)
    }

    /// If the started block at `pos` names a writer process that no longer exists, the
    /// number of nodes to skip (its whole block when its header checks out, else 1).
    fn dead_writer_nodes(
        &self,
        seg: &Segment,
        pos: u64,
        index: u64,
        write_cursor: u64,
    ) -> Option<u64> {
        let bh = seg.block_header(index);
        // Acquire: pairs with the writer's release store of seq; len and pid are then
        // the ones this writer stored. A mismatch means the header is not written yet.
        let seq = bh.seq.load(Ordering::Acquire);
        if seq & layout::TAG_MASK != pos & layout::TAG_MASK {
            return None;
        }
        let pid = bh.writer_pid.load(Ordering::Relaxed);
        if pid == 0 || process::is_alive(pid) {
            return None;
        }
        let len = bh.len.load(Ordering::Relaxed) as usize;
        let nodes = layout::check_block(seg.geometry(), self.max_payload, pos, index, seq, len)
            .ok()
            .filter(|&n| pos + n <= write_cursor);
        Some(nodes.unwrap_or(1))
    }

    /// Moves past the block a dead predecessor consumed at `pos` (node `index`, whose
    /// head reads consumed) without releasing it. Its block header is intact (freeing
    /// overwrites only a node's first word): when it names this position and a length
    /// inside the claimed region, the block's other nodes are freed too, as the
    /// predecessor would have, stopping at a node that holds a block's head at its own
    /// position (the length is then not to be trusted). Otherwise one node.
    fn hand_over(&mut self, seg: &Segment, pos: u64, index: u64) {
        let count = seg.geometry().node_count;
        let bh = seg.block_header(index);
        // Relaxed: the header was written a lap ago by this position's writer and read
        // by the predecessor; it only sizes the hand-over, checked below.
        let seq = bh.seq.load(Ordering::Relaxed);
        let len = bh.len.load(Ordering::Relaxed) as usize;
        let write_cursor = self.write_cursor(seg);
        let nodes = layout::check_block(seg.geometry(), self.max_payload, pos, index, seq, len)
            .ok()
            .filter(|&n| pos + n <= write_cursor)
            .unwrap_or(1);
        let mut handed = 1;
        for q in pos + 1..pos + nodes {
            let head = seg.head(index + (q - pos));
            // Relaxed: as in consume, published to writers by the read cursor's release.
            let word = head.load(Ordering::Relaxed);
            if matches!(
                classify(word, q, count),
                Head::Published | Head::Aborted | Head::Padding
            ) {
                break;
            }
            head.store(NodeState::free(q + count).0, Ordering::Relaxed);
            handed += 1;
        }
        bump(&seg.header().reader_counters.handover_nodes, handed);
        self.pos = pos + handed;
        self.skipped_to = None;
    }

    /// Skips one unwritten node at `pos` whose first word reads `state`, counting a torn
    /// block when the node starts one.
    fn skip_torn(&mut self, seg: &Segment, pos: u64, state: NodeState, why: Skip) {
        let rc = &seg.header().reader_counters;
        let count = seg.geometry().node_count;
        // AcqRel/Acquire: if the writer won the race and published, we must see its bytes
        // when we come back round to deliver the block.
        if seg
            .head(seg.geometry().index(pos))
            .compare_exchange(
                state.0,
                NodeState::free(pos + count).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return; // the node changed under us: look again
        }
        // A node whose header this lap's writer wrote starts a block; so does the first
        // node skipped after a delivery.
        let index = seg.geometry().index(pos);
        let starts_block = self.header_written(seg, pos, index) || self.skipped_to != Some(pos);
        // Where a block starts, its first word is a head: free (claimed, unwritten) or
        // published. Anything else there was a head and was overwritten — by a writer that
        // stalled past the timeout and copied its payload on into nodes since reused. That
        // block is lost, and counted as one that failed its checks, not as torn.
        let overwritten = starts_block && classify(state.0, pos, count) == Head::Other;
        if overwritten {
            bump(&rc.check_failures, 1);
            bump(&rc.bad_blocks, 1);
        } else if starts_block {
            match why {
                Skip::Timeout => bump(&rc.timeout_blocks, 1),
                Skip::DeadWriter => bump(&rc.dead_writer_blocks, 1),
            }
        }
        bump(&rc.bad_nodes, 1);
        self.pos = pos + 1;
        self.skipped_to = Some(self.pos);
    }

    /// Skips `nodes` nodes from `pos`, each moved to the free state of the next lap:
    /// the first by a compare-exchange from `first` (when given), the others — payload
    /// of the skipped block, or free since its claim — unless one holds the head of a
    /// block at its own position (a block after a length that was not to be trusted),
    /// where it stops and leaves the rest to the normal checks. `count_bad`: count the
    /// skipped nodes as `bad_nodes`.
    fn skip_nodes(
        &mut self,
        seg: &Segment,
        pos: u64,
        nodes: u64,
        first: Option<NodeState>,
        count_bad: bool,
    ) {
        let rc = &seg.header().reader_counters;
        let count = seg.geometry().node_count;
        let mut skipped = 0;
        for q in pos..pos + nodes {
            let head = seg.head(seg.geometry().index(q));
            let expected = match first {
                Some(state) if q == pos => state.0,
                _ => {
                    // Relaxed: nodes skipped here are released by the read cursor's
                    // release store, like consumed ones.
                    let word = head.load(Ordering::Relaxed);
                    let starts_block = matches!(
                        classify(word, q, count),
                        Head::Published | Head::Aborted | Head::Padding
                    );
                    if starts_block {
                        break;
                    }
                    word
                }
            };
            let ok = head
                .compare_exchange(
                    expected,
                    NodeState::free(q + count).0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
            if !ok {
                break;
            }
            skipped += 1;
        }
        if count_bad {
            bump(&rc.bad_nodes, skipped);
        }
        self.pos = pos + skipped;
        self.skipped_to = Some(self.pos);
    }

    /// Receives the next message into `buf`: `Empty`, `BufferTooSmall` (the message stays),
    /// or its length. Blocks that fail their crc on the way are skipped and counted.
    ///
    /// The common case keeps `Ready` in registers (`poll_fast`). On an Intel Xeon host
    /// that once made 1->1 64 B slower (the reader catches the writer sooner and polls
    /// the node being written); on AMD EPYC, with the writer's own stall gone too, it
    /// is faster at 1->1 and 3->1 (docs/benchmarks.md, "a cheaper reader").
    pub(crate) fn recv_into(
        &mut self,
        seg: &Segment,
        now: fn() -> Instant,
        buf: &mut [u8],
    ) -> Result<usize> {
        self.recv_with(seg, now, buf, |_, ready| ready.len)
    }

    /// Like [`recv_into`](Self::recv_into), returning what `describe` makes of the
    /// block (read before the block is consumed) instead of its length. Inlined into its
    /// callers so that the description is built in registers, not passed through the
    /// stack as a `Ready`.
    #[inline(always)]
    pub(crate) fn recv_with<T>(
        &mut self,
        seg: &Segment,
        now: fn() -> Instant,
        buf: &mut [u8],
        describe: impl Fn(&Segment, &Ready) -> T,
    ) -> Result<T> {
        loop {
            let ready = match self.poll_fast(seg) {
                Some(ready) => ready,
                None => self.poll_slow(seg, now)?,
            };
            if buf.len() < ready.len {
                return Err(Error::BufferTooSmall { needed: ready.len });
            }
            let description = describe(seg, &ready);
            if self.take(seg, ready, buf) {
                return Ok(description);
            }
        }
    }

    /// Copies the payload of `ready` into `buf` (which must be at least `ready.len`
    /// bytes), verifies it and consumes the block. `false` when the crc did not match:
    /// the block is skipped and counted, and `buf` holds garbage.
    #[inline]
    pub(crate) fn take(&mut self, seg: &Segment, ready: Ready, buf: &mut [u8]) -> bool {
        let ok = self.copy_out(seg, ready, buf);
        self.finish(seg, ready, ok, true);
        ok
    }

    /// Copies and verifies like [`take`](Self::take) but leaves the read cursor and the
    /// counters for [`finish_batch`](Self::finish_batch).
    pub(crate) fn take_batched(&mut self, seg: &Segment, ready: Ready, buf: &mut [u8]) -> bool {
        let ok = self.copy_out(seg, ready, buf);
        self.finish(seg, ready, ok, false);
        ok
    }

    /// Whether to call [`prefetch_after`](Self::prefetch_after) for `ready`: always after
    /// a multi-node block; after a one-node block only when writers have claimed
    /// `PREFETCH_NODES` nodes past it that are not asked for yet (the reader is behind a
    /// batch, say). A reader that keeps up with a writer of one-node blocks (nothing
    /// claimed ahead) pays this test and no call.
    #[inline(always)]
    fn prefetch_due(&self, ready: &Ready) -> bool {
        let end = ready.pos + ready.nodes + PREFETCH_NODES;
        ready.nodes > 1 || (end <= self.cached_write && end > self.prefetched_to)
    }

    /// Asks the CPU to load the nodes after a block (when writers have claimed them),
    /// each node once, before the block is read: the reader's reads of lines another core
    /// wrote otherwise wait for them one block at a time. Measured with `atbus-bench
    /// compare`: 1 KiB messages ~1.3x; for batches of 16 x 64 B at 1->1 (one-node
    /// blocks), see docs/benchmarks.md, "Batches fetch their nodes ahead".
    #[inline(never)]
    fn prefetch_after(&mut self, seg: &Segment, ready: Ready) {
        let next = ready.pos + ready.nodes;
        let end = next + PREFETCH_NODES;
        if end <= self.cached_write && end > self.prefetched_to {
            let from = self.prefetched_to.max(next);
            seg.prefetch_nodes(seg.geometry().index(from), end - from);
            self.prefetched_to = end;
        }
    }

    #[inline]
    fn copy_out(&mut self, seg: &Segment, ready: Ready, buf: &mut [u8]) -> bool {
        if self.prefetch_due(&ready) {
            self.prefetch_after(seg, ready);
        }
        // check() verified the block lies in the ring. A stalled writer may still scribble
        // on it; the crc is of the bytes as they are stored into `buf` (each read from the
        // ring once), so what we deliver is what we checked.
        let buf = &mut buf[..ready.len];
        if !seg.settings().checksums {
            seg.read_payload(ready.index, buf);
            return true;
        }
        ready.crc_matches(seg.read_payload_crc(ready.index, buf))
    }

    /// Hands the payload of `ready` to `f` in place, in the ring, then verifies the crc
    /// on those same bytes and consumes the block. Returns `f`'s result, or `None` when
    /// the bytes did not check out — they may have changed while `f` read them.
    pub(crate) fn take_in_place<R>(
        &mut self,
        seg: &Segment,
        ready: Ready,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        if self.prefetch_due(&ready) {
            self.prefetch_after(seg, ready);
        }
        let src = seg.node_ptr(ready.index).wrapping_add(BLOCK_HEADER_SIZE);
        // SAFETY: check() verified the block lies in the data area (as in copy_out), and
        // the mapping outlives this call. Writers of this lap never write a published
        // block, and the reader does not hand its nodes back before `f` returns, so no
        // honest process writes these bytes while the slice lives. A writer that stalled
        // past the timeout may, and then `f` may see any bytes; the crc check after `f`
        // reports it. The slice does not escape `f`.
        let msg = unsafe { std::slice::from_raw_parts(src as *const u8, ready.len) };
        let result = f(msg);
        let ok = !seg.settings().checksums || ready.crc_matches(seg.crc32(msg));
        self.finish(seg, ready, ok, true);
        ok.then_some(result)
    }

    /// Counts a taken block and consumes it.
    fn finish(&mut self, seg: &Segment, ready: Ready, ok: bool, count_now: bool) {
        let rc = &seg.header().reader_counters;
        if !ok {
            bump(&rc.crc_failures, 1);
            bump(&rc.bad_blocks, 1);
            // The length that gave `ready.nodes` may be a stalled writer's: skip_nodes stops
            // at the head of a block after it, so a published block there is never wiped;
            // the rest goes through the usual checks.
            let head = NodeState::block(FLAG_START | FLAG_WRITTEN, ready.pos);
            self.skip_nodes(seg, ready.pos, ready.nodes, Some(head), true);
            return;
        }
        if count_now {
            bump(&rc.messages_received, 1);
            bump(&rc.bytes_received, ready.len as u64);
        } else {
            self.batch_messages += 1;
            self.batch_bytes += ready.len as u64;
        }
        self.consume(seg, ready, count_now);
    }

    /// Counts the messages of a batch and releases the read cursor once.
    pub(crate) fn finish_batch(&mut self, seg: &Segment) {
        let rc = &seg.header().reader_counters;
        bump(&rc.messages_received, self.batch_messages);
        bump(&rc.bytes_received, self.batch_bytes);
        self.batch_messages = 0;
        self.batch_bytes = 0;
        self.release(seg);
    }

    /// True when writers have claimed nodes the reader has not consumed yet, some of
    /// them possibly unwritten (a blocking reader then must not sleep long: nobody will
    /// wake it if that writer died).
    pub(crate) fn claimed_ahead(&mut self, seg: &Segment) -> bool {
        self.write_cursor(seg) != self.pos
    }

    /// Frees a block's nodes for the next lap and moves past it; releases the read
    /// cursor every `release_every` nodes when `may_release`.
    fn consume(&mut self, seg: &Segment, ready: Ready, may_release: bool) {
        if self.manual_commit {
            // The block stays as published until `commit` frees it.
            self.pos = ready.pos + ready.nodes;
            self.skipped_to = None;
            self.wait = self.wait.filter(|w| self.pos < w.horizon);
            return;
        }
        free_block(seg, ready.pos, ready.index, ready.nodes);
        self.pos = ready.pos + ready.nodes;
        self.skipped_to = None;
        self.wait = self.wait.filter(|w| self.pos < w.horizon);
        if may_release && self.pos - self.published >= self.release_every {
            self.release(seg);
        }
    }

    /// Publishes the read position, handing consumed nodes back to writers. With manual
    /// commit, only [`commit`](Self::commit) moves the read cursor.
    pub(crate) fn release(&mut self, seg: &Segment) {
        if !self.manual_commit {
            self.release_to(seg, self.pos);
        }
    }

    /// Keeps received blocks in the ring until [`commit`](Self::commit) (`true`), or
    /// consumes them as they are received (`false`, the default; commits first).
    pub(crate) fn set_manual_commit(&mut self, seg: &Segment, on: bool) {
        if self.manual_commit && !on {
            self.commit(seg, self.pos);
        }
        self.manual_commit = on;
    }

    /// The read cursor as last published: where a successor reader would start.
    pub(crate) fn committed(&self) -> u64 {
        self.published
    }

    /// Frees every node from the last commit up to `upto` (a position between it and
    /// the read position) and publishes `upto` as the read cursor. `false` if `upto` is
    /// out of that range.
    pub(crate) fn commit(&mut self, seg: &Segment, upto: u64) -> bool {
        if upto < self.published || upto > self.pos {
            return false;
        }
        let count = seg.geometry().node_count;
        // Every node's first word becomes a free head for the next lap, as `consume` does,
        // in position order, so that each block's first node goes before its interior (see
        // `free_block`): a reader that dies part-way leaves freed blocks, at most one block
        // whose first node is freed and whose interior is partly freed, then intact ones.
        // Its successor starts at the last completed commit, hands the freed blocks and
        // the partial one over whole (their block headers say how long they are), and
        // delivers the intact ones again: nothing counted as damage, nothing delivered
        // with changed bytes. Nodes skipped on the way were freed already; writing them
        // again is harmless: no writer may claim them before the read cursor passes them.
        // Relaxed: published to writers by the release store of the read cursor.
        for q in self.published..upto {
            seg.head(seg.geometry().index(q))
                .store(NodeState::free(q + count).0, Ordering::Relaxed);
            reader_fault_point!(ReaderFreedNode);
        }
        self.release_to(seg, upto);
        true
    }

    fn release_to(&mut self, seg: &Segment, to: u64) {
        if to != self.published {
            // Release: our reads of consumed data and resets of their heads happen-before
            // any writer that acquires this value writes those nodes.
            seg.header().read_cursor.store(to, Ordering::Release);
            self.published = to;
            // Writers waiting for space (wake.rs): a fence and one load when nobody waits.
            crate::wake::notify_space(&seg.header().space);
        }
    }

    fn write_cursor(&mut self, seg: &Segment) -> u64 {
        // Relaxed: the cursor only tells whether nodes are claimed; node contents are
        // synchronised through the heads.
        self.cached_write = seg.header().write_cursor.load(Ordering::Relaxed);
        self.cached_write
    }

    /// The next position this reader will read.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }
}

/// Adds to a counter that only the reader writes: a load and a store, no locked RMW.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Frees a consumed block's nodes for the next lap: every node's first word becomes a
/// free head (inside the block it was payload, already read). The first node first: a
/// reader that dies before the rest leaves a head that reads consumed over an intact
/// block header, and its successor hands the whole block over (see
/// `ReadState::hand_over`): never delivered again, never counted as damage. (Freeing
/// the interior first left a published head over changed payload: a crc failure for
/// the successor, or, with checksums off, a message delivered damaged.) Relaxed:
/// published to writers by the release store of the read cursor. A block never wraps,
/// so its nodes are `index..` in order: no division.
#[inline]
fn free_block(seg: &Segment, pos: u64, index: u64, nodes: u64) {
    let count = seg.geometry().node_count;
    for i in 0..nodes {
        seg.head(index + i)
            .store(NodeState::free(pos + i + count).0, Ordering::Relaxed);
        reader_fault_point!(ReaderFreedNode);
    }
}
