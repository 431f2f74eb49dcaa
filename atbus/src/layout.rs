//! The segment layout: every offset, size and bit of the shared memory, in one place.
//!
//! A segment is one shared-memory object of fixed size, laid out as:
//!
//! | offset | size                     | what                                       |
//! |--------|--------------------------|--------------------------------------------|
//! | 0      | 4096                     | [`Header`]                                 |
//! | 4096   | `node_count * node_size` | data area: the nodes                       |
//! | …      | up to the object's size  | unused tail (rounding)                     |
//!
//! The header (all fields are atomics, little-endian on the only platform we build for):
//!
//! | offset | field             | type | meaning                                                   |
//! |--------|-------------------|------|-----------------------------------------------------------|
//! | 0      | magic             | u64  | [`MAGIC`]; written last, with release ordering            |
//! | 8      | version           | u32  | [`VERSION`]                                               |
//! | 12     | abi_tag           | u32  | [`ABI_TAG`]: endianness and word size                     |
//! | 16     | header_size       | u32  | 4096                                                      |
//! | 20     | node_size         | u32  | bytes per node, a power of two in 64..=65536              |
//! | 24     | node_count        | u64  | nodes in the ring                                         |
//! | 32     | total_size        | u64  | size of the object at creation                            |
//! | 40     | reserved          | u64  | 0 (was the head array's offset in layout version 1)       |
//! | 48     | data_offset       | u64  | start of the data area: 4096                              |
//! | 56     | timeout_ns        | u64  | torn-block timeout                                        |
//! | 64     | write_retries     | u32  | failed claim CASes before a writer yields the CPU         |
//! | 68     | flags             | u32  | [`FLAG_DETECT_DEAD_WRITERS`], [`FLAG_NO_CHECKSUM`]        |
//! | 72     | protect_nodes     | u64  | nodes writers always leave free                           |
//! | 80     | created_unix_ns   | u64  | wall-clock creation time, for operators                   |
//! | 88     | channel_id        | u64  | random at creation: names this channel's messages         |
//! | 128    | read_cursor       | u64  | next position the reader will consume (reader writes)     |
//! | 256    | write_cursor      | u64  | next position a writer will claim (writers CAS)           |
//! | 512    | reader_owner      | u64  | `pid | (start_time as u32) << 32` of the reader, 0 = none |
//! | 520    | reader_takeovers  | u64  | times the role was taken from a dead owner                |
//! | 640    | space.waiters     | u32  | writers waiting for the reader to free space              |
//! | 644    | space.seq         | u32  | futex word the reader bumps to wake them                  |
//! | 768    | reader counters   | 16×u64 | [`ReaderCounters`], written only by the reader          |
//! | 896    | wake.sleeping     | u32  | 1: reader sleeps on the futex, 2: armed its doorbell fd   |
//! | 900    | wake.seq          | u32  | futex word writers bump to wake the reader                |
//! | 904    | wake.bell_epoch   | u32  | bumped by a reader each time it creates its doorbell FIFO |
//! | 1024   | writer slots      | 16×128 | [`WriterCounters`] at `1024 + 128 i`: slots 0–14 each owned by one writer thread, 15 shared |
//!
//! The read cursor, the write cursor, the reader record, the reader counters, the wake
//! word and each writer counter slot sit on 128-byte lines of their own (the x86-64
//! prefetcher pulls pairs of 64-byte lines), so the reader's and the writers' hot fields
//! never share a line, and writer threads do not share a counter line (up to 15 of them;
//! more share the last slot). The line at 384 is reserved.
//!
//! Cursors are absolute node *positions* that only grow; a position `p` lives at node
//! index `p % node_count`, and lap `p / node_count`.
//!
//! A block is the nodes of one message. Its first node starts with the 32-byte
//! [`BlockHeader`], whose first word is the block's *head* ([`NodeState`]): the word a
//! writer publishes with a compare-exchange (having claimed the nodes with the write
//! cursor) and the reader polls and frees. The payload follows the header and runs on through the block's other nodes,
//! contiguous. Keeping the head in the node's first cache line, next to the header and
//! the payload's first bytes, means a small message moves only its own lines between
//! the cores (layout version 1 kept the heads in a packed array, eight to a line, and
//! that shared line cost several transfers per message). Every node's first word is a
//! head while the node is free, so that any node can start the next lap's block; inside
//! a block it is payload. A block never wraps past the end of the ring; a writer that
//! would cross the end claims the tail as a padding block in the same CAS. Payloads
//! start 32 bytes into a node, so they are 32-byte aligned (see `copy`).

use crate::sync::atomic::{AtomicU32, AtomicU64};

/// `b"ATBUSv01"` read as a little-endian u64 (the same in every layout version; the
/// version field tells them apart).
pub const MAGIC: u64 = u64::from_le_bytes(*b"ATBUSv01");
/// Layout version; bumped on any incompatible change of this file or of the protocol.
/// Version 2 moved the node heads into the nodes and made a block's sequence its
/// position; version 3 made the doorbell a FIFO and added `wake.bell_epoch`; version 4
/// changed the payload checksum from zlib's crc32 to crc32c ([`payload_crc`]).
pub const VERSION: u32 = 4;
/// Endianness and word size of the creator: `0xA7B0` then 0x01 for little endian, then
/// the pointer width in bytes.
pub const ABI_TAG: u32 = 0xA7B0_0000
    | (if cfg!(target_endian = "little") {
        0x0100
    } else {
        0x0200
    })
    | (std::mem::size_of::<usize>() as u32);
/// Size of the header area.
pub const HEADER_SIZE: usize = 4096;
/// Alignment of the data area.
pub const PAGE: usize = 4096;
/// Bytes of the block header at the start of each block.
pub const BLOCK_HEADER_SIZE: usize = 32;
/// Smallest and largest node size accepted.
pub const MIN_NODE_SIZE: usize = 64;
/// Largest node size accepted.
pub const MAX_NODE_SIZE: usize = 65536;
/// Header flag: skip blocks of writers whose process no longer exists without waiting.
pub const FLAG_DETECT_DEAD_WRITERS: u32 = 1;
/// Header flag: writers do not compute, and the reader does not check, payload crc32s.
pub const FLAG_NO_CHECKSUM: u32 = 2;

/// Writer counter slots in the header.
pub const WRITER_SLOTS: usize = 16;

/// An atomic padded to 128 bytes so it owns a pair of cache lines.
#[repr(C, align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Counters bumped by writers (relaxed: they are statistics, not sync), one set per
/// writer slot; [`crate::Stats`] sums the slots. A writer thread that owns a slot bumps
/// its counters with plain stores; the last slot is shared, with locked adds (see
/// `slots.rs`).
#[repr(C)]
pub struct WriterCounters {
    /// Messages whose block was published.
    pub messages_sent: AtomicU64,
    /// Payload bytes of those messages.
    pub bytes_sent: AtomicU64,
    /// `send` calls that returned `Full`.
    pub full: AtomicU64,
    /// Claim CASes that lost to another writer and were retried.
    pub write_retries: AtomicU64,
    /// Padding blocks claimed at the end of the ring.
    pub padding_blocks: AtomicU64,
    /// Sends that found their block already skipped by the reader (writer stalled past the
    /// timeout): the message was not delivered and the caller got `Error::Abandoned`.
    pub abandoned: AtomicU64,
    /// Futex wake-ups writers issued to a sleeping reader.
    pub wakeups: AtomicU64,
    /// The writer thread that owns the slot: `tid | (start_time as u32) << 32`, 0 for
    /// none (the last slot is never owned).
    pub owner: AtomicU64,
}

/// Counters written only by the reader that holds the role (load + store, no RMW).
#[repr(C)]
pub struct ReaderCounters {
    /// Messages delivered.
    pub messages_received: AtomicU64,
    /// Payload bytes delivered.
    pub bytes_received: AtomicU64,
    /// Torn blocks skipped after the timeout (writer stalled or died mid-write).
    pub timeout_blocks: AtomicU64,
    /// Torn blocks skipped at once because their writer process no longer exists.
    pub dead_writer_blocks: AtomicU64,
    /// Nodes skipped without delivering their bytes, whatever the reason.
    pub bad_nodes: AtomicU64,
    /// Published blocks that failed a check and were skipped (sum of the next two).
    pub bad_blocks: AtomicU64,
    /// Blocks whose payload crc32 did not match.
    pub crc_failures: AtomicU64,
    /// Blocks whose length, node count or sequence did not check out.
    pub check_failures: AtomicU64,
    /// Padding blocks skipped at the end of the ring.
    pub padding_blocks: AtomicU64,
    /// Nodes a previous (dead) reader had consumed but not yet released.
    pub handover_nodes: AtomicU64,
    /// Reservations dropped without commit, skipped at once.
    pub aborted_blocks: AtomicU64,
    /// Times a blocking reader went to sleep on the futex.
    pub sleeps: AtomicU64,
    _reserved: [AtomicU64; 4],
}

/// The 4 KiB segment header. Every field is an atomic: other processes may write any of
/// them at any time, so the header is only ever read through atomic loads.
#[repr(C)]
pub struct Header {
    /// [`MAGIC`], stored last with release ordering.
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// [`ABI_TAG`].
    pub abi_tag: AtomicU32,
    /// [`HEADER_SIZE`].
    pub header_size: AtomicU32,
    /// Bytes per node.
    pub node_size: AtomicU32,
    /// Nodes in the ring.
    pub node_count: AtomicU64,
    /// Size of the object at creation.
    pub total_size: AtomicU64,
    /// 0 (the head array's offset in layout version 1).
    pub reserved_40: AtomicU64,
    /// Offset of the data area.
    pub data_offset: AtomicU64,
    /// Torn-block timeout in nanoseconds.
    pub timeout_ns: AtomicU64,
    /// Failed claim CASes before a writer yields.
    pub write_retries: AtomicU32,
    /// [`FLAG_DETECT_DEAD_WRITERS`] or 0.
    pub flags: AtomicU32,
    /// Nodes writers always leave free.
    pub protect_nodes: AtomicU64,
    /// Creation time, ns since the Unix epoch.
    pub created_unix_ns: AtomicU64,
    /// Random at creation: with a block's sequence it names a message uniquely beyond
    /// this host (a bridge's de-duplication id).
    pub channel_id: AtomicU64,
    _pad0: [u8; 128 - 96],
    /// Released read position (reader stores, writers load).
    pub read_cursor: Padded<AtomicU64>,
    /// Next position to claim (writers CAS). A block's position is also its sequence
    /// number: unique, and growing in claim order.
    pub write_cursor: AtomicU64,
    _pad_claim: [u8; 128 - 8],
    _reserved_384: [u8; 128],
    /// The reader-role record.
    pub reader: Padded<ReaderRecord>,
    /// Where writers that found the ring full wait for the reader to free space.
    pub space: Padded<SpaceWait>,
    /// Counters written by the reader.
    pub reader_counters: Padded<ReaderCounters>,
    /// The futex a blocking reader sleeps on.
    pub wake: Padded<WakeWord>,
    /// Counters of writers: slots 0–14 each owned by one writer thread (plain stores on
    /// a line of its own), 15 shared by the rest (locked adds); see `slots.rs`.
    pub writer_slots: [Padded<WriterCounters>; WRITER_SLOTS],
    _pad1: [u8; HEADER_SIZE - 1024 - WRITER_SLOTS * 128],
}

/// Where a blocking reader sleeps (a shared futex) and how writers know to wake it.
#[repr(C)]
pub struct WakeWord {
    /// 1 while the reader is (about to be) asleep; writers read it after publishing.
    pub sleeping: AtomicU32,
    /// The futex word: writers bump it before waking the reader.
    pub seq: AtomicU32,
    /// Which doorbell FIFO is the current reader's: a reader bumps it after creating its
    /// FIFO and before it first arms, so a writer that finds it changed opens the path
    /// anew instead of ringing a FIFO kept alive only by writers.
    pub bell_epoch: AtomicU32,
}

/// Where writers wait for space: a writer that finds the ring full registers in
/// `waiters` and sleeps on the futex `seq`; the reader, after releasing nodes, loads
/// `waiters` (one load when nobody waits) and, if set, bumps `seq` and wakes them.
#[repr(C)]
pub struct SpaceWait {
    /// Writers (threads) waiting now; each adds 1 before its last look and takes it back
    /// when it wakes. A writer killed while waiting leaves it raised: the reader then makes
    /// a futex call per release, harmless.
    pub waiters: AtomicU32,
    /// The futex word: the reader bumps it when it frees space and someone waits.
    pub seq: AtomicU32,
}

/// Who holds the reader role.
#[repr(C)]
pub struct ReaderRecord {
    /// `pid | (start_time_ticks as u32) << 32`, or 0 when nobody holds the role.
    pub owner: AtomicU64,
    /// Times the role was taken over from an owner that no longer exists.
    pub takeovers: AtomicU64,
}

#[cfg(loom)]
impl Header {
    /// A zeroed header on the heap, for the model checker (loom's atomics cannot live in
    /// mapped memory).
    pub(crate) fn new_model() -> Header {
        let z64 = || AtomicU64::new(0);
        let z32 = || AtomicU32::new(0);
        let writer = || {
            Padded(WriterCounters {
                messages_sent: z64(),
                bytes_sent: z64(),
                full: z64(),
                write_retries: z64(),
                padding_blocks: z64(),
                abandoned: z64(),
                wakeups: z64(),
                owner: z64(),
            })
        };
        let reader = ReaderCounters {
            messages_received: z64(),
            bytes_received: z64(),
            timeout_blocks: z64(),
            dead_writer_blocks: z64(),
            bad_nodes: z64(),
            bad_blocks: z64(),
            crc_failures: z64(),
            check_failures: z64(),
            padding_blocks: z64(),
            handover_nodes: z64(),
            aborted_blocks: z64(),
            sleeps: z64(),
            _reserved: [z64(), z64(), z64(), z64()],
        };
        Header {
            magic: z64(),
            version: z32(),
            abi_tag: z32(),
            header_size: z32(),
            node_size: z32(),
            node_count: z64(),
            total_size: z64(),
            reserved_40: z64(),
            data_offset: z64(),
            timeout_ns: z64(),
            write_retries: z32(),
            flags: z32(),
            protect_nodes: z64(),
            created_unix_ns: z64(),
            channel_id: z64(),
            _pad0: [0; 128 - 96],
            read_cursor: Padded(z64()),
            write_cursor: z64(),
            _pad_claim: [0; 128 - 8],
            _reserved_384: [0; 128],
            reader: Padded(ReaderRecord {
                owner: z64(),
                takeovers: z64(),
            }),
            space: Padded(SpaceWait {
                waiters: z32(),
                seq: z32(),
            }),
            reader_counters: Padded(reader),
            wake: Padded(WakeWord {
                sleeping: z32(),
                seq: z32(),
                bell_epoch: z32(),
            }),
            writer_slots: std::array::from_fn(|_| writer()),
            _pad1: [0; HEADER_SIZE - 1024 - WRITER_SLOTS * 128],
        }
    }
}

#[cfg(loom)]
impl BlockHeader {
    /// The reserved word (payload bytes 20..24 of an interior node, in the model).
    pub(crate) fn reserved(&self) -> &AtomicU32 {
        &self._reserved
    }

    /// A zeroed block header, for the model checker.
    pub(crate) fn new_model() -> BlockHeader {
        BlockHeader {
            head: AtomicU64::new(0),
            len: AtomicU32::new(0),
            crc: AtomicU32::new(0),
            writer_pid: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            seq: AtomicU64::new(0),
        }
    }
}

// The layout is data: these assertions are the table above.
#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, node_size) == 20);
    assert!(offset_of!(Header, node_count) == 24);
    assert!(offset_of!(Header, data_offset) == 48);
    assert!(offset_of!(Header, timeout_ns) == 56);
    assert!(offset_of!(Header, protect_nodes) == 72);
    assert!(offset_of!(Header, created_unix_ns) == 80);
    assert!(offset_of!(Header, channel_id) == 88);
    assert!(offset_of!(Header, read_cursor) == 128);
    assert!(offset_of!(Header, write_cursor) == 256);
    assert!(offset_of!(Header, reader) == 512);
    assert!(offset_of!(Header, space) == 640);
    assert!(offset_of!(Header, reader_counters) == 768);
    assert!(offset_of!(Header, wake) == 896);
    assert!(offset_of!(Header, writer_slots) == 1024);
    assert!(size_of::<WriterCounters>() <= 128);
    assert!(size_of::<ReaderCounters>() <= 128);
    assert!(size_of::<BlockHeader>() == BLOCK_HEADER_SIZE);
    assert!(offset_of!(BlockHeader, head) == 0);
    assert!(offset_of!(BlockHeader, len) == 8);
    assert!(offset_of!(BlockHeader, crc) == 12);
    assert!(offset_of!(BlockHeader, writer_pid) == 16);
    assert!(offset_of!(BlockHeader, seq) == 24);
};

/// The 32 bytes at the start of every node. In a block's first node: the head, then the
/// block header proper, which the claiming writer fills with atomic stores (`seq` last,
/// release) right after its claim; the reader reads it with atomic loads.
/// In a block's other nodes these bytes are payload. Untrusted: every field is checked
/// before use.
#[repr(C)]
pub struct BlockHeader {
    /// The node's head word ([`NodeState`]).
    pub head: AtomicU64,
    /// Payload length in bytes.
    pub len: AtomicU32,
    /// crc32c of the payload ([`payload_crc`]), sealed with the sequence: [`sealed_crc`].
    pub crc: AtomicU32,
    /// Process id of the writer, for dead-writer detection.
    pub writer_pid: AtomicU32,
    _reserved: AtomicU32,
    /// The block's sequence (its position), stored last: a reader that finds it equal to
    /// the head's tag knows `len` and `writer_pid` are this writer's.
    pub seq: AtomicU64,
}

/// crc32c (Castagnoli, as iSCSI and the SSE4.2 `crc32` instruction compute it) of a
/// payload: what a writer seals into the block header ([`sealed_crc`]). Layout versions
/// before 4 used zlib's crc32.
///
/// ```
/// assert_eq!(atbus::layout::payload_crc(b"123456789"), 0xe306_9283);
/// ```
pub fn payload_crc(payload: &[u8]) -> u32 {
    crate::crc::crc32c(0, payload)
}

/// The crc a block header stores: the payload's crc32c sealed with the block's
/// sequence (its position, 56 bits, as found in its published head).
///
/// Binding the two matters when a writer that stalled past the timeout wakes and writes
/// into nodes another writer has since claimed: their header fields and payload bytes can
/// interleave, and without the seal a (length, crc, payload) entirely from the stalled
/// writer could check out under the other writer's published head — delivering the
/// abandoned message in place of the successful one (found by the loom model). Sealed, a
/// stalled writer's crc only ever matches under its own sequence, whose head it can no
/// longer publish.
pub fn sealed_crc(payload_crc: u32, seq: u64) -> u32 {
    let mixed = (seq & TAG_MASK).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    payload_crc ^ (mixed >> 32) as u32 ^ mixed as u32
}

/// Mask of the 56-bit tag in a node head word.
pub const TAG_MASK: u64 = (1 << 56) - 1;
/// Node-head flag: first node of a block (set with WRITTEN when the block is published).
pub const FLAG_START: u8 = 0x01;
/// Node-head flag: the block's bytes are all in (set last, with release ordering).
pub const FLAG_WRITTEN: u8 = 0x02;
/// Node-head flag: a padding block from here to the end of the ring.
pub const FLAG_PADDING: u8 = 0x04;
/// Node-head flag (with START | WRITTEN): a reservation dropped without commit; the
/// reader skips its nodes at once.
pub const FLAG_ABORTED: u8 = 0x08;
/// Node-head flag: the node is free. A flag of its own (rather than "no flags") keeps a
/// free word from looking like a small integer, which payload bytes often are.
pub const FLAG_FREE: u8 = 0x10;

/// A node-head word: `flags << 56 | tag`, where the tag is a position (56 bits).
///
/// * `FREE`: the node is free, and `tag` is the position it may next be claimed at.
///   Tagging free nodes with their position means a writer that was skipped as stalled
///   cannot later mark a node it no longer owns: its compare-exchange expects the old
///   position and fails.
/// * `START | WRITTEN` (or with `ABORTED`), or `PADDING | WRITTEN`: `tag` is the block's
///   position, which is also its sequence.
///
/// What a word means for a given position is decided in one place: [`classify`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeState(pub u64);

impl NodeState {
    /// The free state for a node that may next be claimed at `position`.
    #[inline]
    pub const fn free(position: u64) -> Self {
        Self::block(FLAG_FREE, position)
    }
    /// A block's head with these flags at `position`.
    #[inline]
    pub const fn block(flags: u8, position: u64) -> Self {
        NodeState(((flags as u64) << 56) | (position & TAG_MASK))
    }
    /// The flag bits.
    pub const fn flags(self) -> u8 {
        (self.0 >> 56) as u8
    }
    /// The tag: a position.
    pub const fn tag(self) -> u64 {
        self.0 & TAG_MASK
    }
}

/// What the word at the start of a node says about position `pos`: the one reading of
/// a head, used by the reader, [`crate::Inspector`] and the dump tool alike.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Head {
    /// `free(pos)`: nobody has claimed `pos` — or a writer claimed it and is writing its
    /// block (the write cursor tells which; the block header's sequence tells whether
    /// the writer got as far as its header).
    Free,
    /// `START | WRITTEN` at `pos`: a published block.
    Published,
    /// `START | WRITTEN | ABORTED` at `pos`: a reservation dropped without commit.
    Aborted,
    /// `PADDING | WRITTEN` at `pos`: padding from here to the end of the ring.
    Padding,
    /// `free(pos + node_count)`: a reader consumed `pos` and had not yet released it.
    Consumed,
    /// Anything else: payload inside a block, a stale or a forged word.
    Other,
}

/// Classifies the word at the start of the node of position `pos` in a ring of
/// `node_count` nodes. Every head state names its position exactly, so a word left by
/// an earlier lap, or payload bytes, read as [`Head::Other`] (short of bytes that spell
/// the exact 64-bit head of this position).
#[inline]
pub fn classify(word: u64, pos: u64, node_count: u64) -> Head {
    let at = |flags: u8| NodeState::block(flags, pos).0;
    if word == at(FLAG_START | FLAG_WRITTEN) {
        Head::Published
    } else if word == at(FLAG_FREE) {
        Head::Free
    } else if word == at(FLAG_PADDING | FLAG_WRITTEN) {
        Head::Padding
    } else if word == at(FLAG_START | FLAG_WRITTEN | FLAG_ABORTED) {
        Head::Aborted
    } else if word == NodeState::free(pos.wrapping_add(node_count)).0 {
        Head::Consumed
    } else {
        Head::Other
    }
}

/// Why a block header does not describe a block the reader can take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockProblem {
    /// The header's sequence is not the block's position: not (yet) written by the
    /// block's writer, or overwritten.
    Sequence,
    /// The length is larger than the ring's largest message.
    TooLong,
    /// The block would run past the end of the ring.
    PastRingEnd,
}

/// Checks the header fields of the block at position `pos` (node `index`): its sequence
/// and length. `Ok(nodes)`: the block's node count, inside the ring. The one check of a
/// block header, used by the reader, [`crate::Inspector`] and the dump tool; whether the
/// block also lies below the write cursor is the caller's to check.
#[inline]
pub fn check_block(
    geo: &Geometry,
    max_payload: usize,
    pos: u64,
    index: u64,
    seq: u64,
    len: usize,
) -> Result<u64, BlockProblem> {
    if seq & TAG_MASK != pos & TAG_MASK {
        return Err(BlockProblem::Sequence);
    }
    if len > max_payload {
        return Err(BlockProblem::TooLong);
    }
    let nodes = geo.nodes_for(len);
    if index >= geo.node_count || nodes > geo.node_count - index {
        return Err(BlockProblem::PastRingEnd);
    }
    Ok(nodes)
}

/// The sizes of one segment, computed once at create or open and never re-read from
/// shared memory afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per node.
    pub node_size: usize,
    /// Nodes in the ring.
    pub node_count: u64,
    /// Offset of the data area.
    pub data_offset: usize,
    /// Bytes the layout needs (header + heads + data), at most the object's size.
    pub used_size: usize,
    /// log2 of `node_size`, so that `nodes_for` shifts instead of dividing.
    node_shift: u32,
    /// ceil(2^128 / node_count), so that `index` multiplies instead of dividing.
    count_magic: u128,
}

impl Geometry {
    /// The largest ring of `node_size` nodes that fits in `size` bytes, or `None` when
    /// fewer than 2 nodes fit.
    pub fn for_size(size: usize, node_size: usize) -> Option<Geometry> {
        // The estimate fits; the loop is a guard should the layout gain rounding again.
        let avail = size.checked_sub(HEADER_SIZE)?;
        let mut count = (avail / node_size) as u64;
        while count >= 2 {
            let g = Self::with_count(node_size, count)?;
            if g.used_size <= size {
                return Some(g);
            }
            count -= 1;
        }
        None
    }

    /// The geometry of a ring of `node_count` nodes of `node_size` bytes.
    /// `None` unless `node_size` is a power of two and `node_count` at least 1, or when
    /// the sizes overflow.
    pub fn with_count(node_size: usize, node_count: u64) -> Option<Geometry> {
        if !node_size.is_power_of_two() || node_count == 0 {
            return None;
        }
        let count = usize::try_from(node_count).ok()?;
        let data_offset = HEADER_SIZE;
        let used_size = data_offset.checked_add(count.checked_mul(node_size)?)?;
        Some(Geometry {
            node_size,
            node_count,
            data_offset,
            used_size,
            node_shift: node_size.trailing_zeros(),
            // For node_count == 1 this wraps to 0, and `index` then returns 0: right.
            count_magic: (u128::MAX / node_count as u128).wrapping_add(1),
        })
    }

    /// Nodes a block of `len` payload bytes occupies. Saturating: an absurd `len` (a
    /// tool's argument, an untrusted header) gives more nodes than any ring has, never an
    /// overflow.
    #[inline]
    pub fn nodes_for(&self, len: usize) -> u64 {
        // div_ceil by the power-of-two node size, without the division instruction that
        // a runtime divisor would otherwise cost on every send and receive.
        let bytes = BLOCK_HEADER_SIZE.saturating_add(len);
        let partial = bytes & (self.node_size - 1) != 0;
        ((bytes >> self.node_shift) + partial as usize) as u64
    }

    /// Node index of a position: `position % node_count`.
    #[inline]
    pub fn index(&self, position: u64) -> u64 {
        // Lemire, Kaser and Kurz, "Faster remainder by direct computation" (2019): with
        // M = ceil(2^128 / d), a % d = ((M * a mod 2^128) * d) >> 128 for every 64-bit a
        // and d. Five multiplications instead of a 64-bit division (tens of cycles here),
        // paid by every writer and the reader per message. The 192-bit product is taken
        // in two halves; `hi * d + (lo * d >> 64)` cannot overflow (< 2^128 - 2^64).
        let fraction = self.count_magic.wrapping_mul(position as u128);
        let d = self.node_count as u128;
        let lo = fraction as u64 as u128;
        let hi = fraction >> 64;
        ((hi * d + ((lo * d) >> 64)) >> 64) as u64
    }
}

/// True when `n` is an accepted node size.
pub fn valid_node_size(n: usize) -> bool {
    n.is_power_of_two() && (MIN_NODE_SIZE..=MAX_NODE_SIZE).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_fits_the_requested_size() {
        for size in [16 << 10, 64 << 10, 1 << 20, 16 << 20, (16 << 20) + 1234] {
            for node in [64, 128, 256, 4096] {
                if let Some(g) = Geometry::for_size(size, node) {
                    assert!(g.used_size <= size, "{size} {node}");
                    assert_eq!(g.data_offset % PAGE, 0);
                    assert_eq!(g.data_offset, HEADER_SIZE);
                    // One more node would not fit.
                    let more = Geometry::with_count(node, g.node_count + 1).unwrap();
                    assert!(more.used_size > size, "{size} {node}");
                }
            }
        }
    }

    #[test]
    fn sixteen_mib_of_128_byte_nodes() {
        let g = Geometry::for_size(16 << 20, 128).unwrap();
        // 4096 + 131_040 * 128 = 16 MiB - 28 bytes... rounded down to whole nodes.
        assert_eq!(g.node_count, ((16 << 20) - 4096) / 128);
        assert_eq!(g.data_offset, 4096);
        assert_eq!(g.used_size, 4096 + 128 * g.node_count as usize);
        assert!(g.used_size <= 16 << 20);
    }

    #[test]
    fn too_small_sizes_have_no_geometry() {
        assert!(Geometry::for_size(0, 128).is_none());
        assert!(Geometry::for_size(4096 + 128, 128).is_none());
        assert!(Geometry::for_size(4096 + 2 * 128, 128).is_some());
    }

    #[test]
    fn index_is_the_remainder() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // xorshift64*: deterministic, covers the whole 64-bit range.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut counts = vec![1u64, 2, 3, 7, 16, 1000, 123_328, 131_072, (1 << 32) + 15];
        counts.extend((0..200).map(|_| 1 + next() % (1 << 40)));
        for count in counts {
            let g = Geometry {
                node_size: 64,
                node_count: count,
                data_offset: 0,
                used_size: 0,
                node_shift: 6,
                count_magic: (u128::MAX / count as u128).wrapping_add(1),
            };
            let edges = [
                0,
                1,
                count - 1,
                count,
                count + 1,
                u64::MAX,
                u64::MAX - 1,
                1 << 63,
            ];
            for a in edges.into_iter().chain((0..2000).map(|_| next())) {
                assert_eq!(g.index(a), a % count, "{a} % {count}");
            }
        }
    }

    #[test]
    fn nodes_for_is_div_ceil() {
        for node in [64usize, 128, 256, 4096, 65536] {
            let g = Geometry::with_count(node, 16).unwrap();
            for len in (0..3 * node).chain([usize::MAX - 40, usize::MAX - 32, usize::MAX]) {
                let want = (BLOCK_HEADER_SIZE.saturating_add(len)).div_ceil(node) as u64;
                assert_eq!(g.nodes_for(len), want, "{len} in {node}-byte nodes");
            }
        }
        assert!(Geometry::with_count(96, 16).is_none());
        assert!(Geometry::with_count(128, 0).is_none());
    }

    #[test]
    fn nodes_for_counts_the_block_header() {
        let g = Geometry::with_count(128, 16).unwrap();
        assert_eq!(g.nodes_for(0), 1);
        assert_eq!(g.nodes_for(96), 1);
        assert_eq!(g.nodes_for(97), 2);
        assert_eq!(g.nodes_for(224), 2);
        assert_eq!(g.nodes_for(225), 3);
    }

    #[test]
    fn classify_names_each_state_of_its_own_position_only() {
        let n = 16;
        for pos in [0u64, 1, 15, 16, 1 << 40, TAG_MASK, TAG_MASK + 5] {
            let at = |f| NodeState::block(f, pos).0;
            assert_eq!(classify(at(FLAG_FREE), pos, n), Head::Free);
            // START alone is no state of layout version 2.
            assert_eq!(classify(at(FLAG_START), pos, n), Head::Other);
            assert_eq!(
                classify(at(FLAG_START | FLAG_WRITTEN), pos, n),
                Head::Published
            );
            let aborted = at(FLAG_START | FLAG_WRITTEN | FLAG_ABORTED);
            assert_eq!(classify(aborted, pos, n), Head::Aborted);
            let padding = at(FLAG_PADDING | FLAG_WRITTEN);
            assert_eq!(classify(padding, pos, n), Head::Padding);
            let consumed = NodeState::free(pos + n).0;
            assert_eq!(classify(consumed, pos, n), Head::Consumed);
            // The same states of the previous lap, or of a neighbour, are not this
            // position's; nor are small integers, zero, or all ones.
            for other in [pos.wrapping_sub(n), pos + 1, pos.wrapping_sub(1)] {
                let word = NodeState::block(FLAG_START | FLAG_WRITTEN, other).0;
                if other & TAG_MASK != pos & TAG_MASK {
                    assert_eq!(classify(word, pos, n), Head::Other, "{pos} {other}");
                }
            }
            for junk in [0, 1, pos & TAG_MASK, u64::MAX, FLAG_START as u64] {
                assert_eq!(classify(junk, pos, n), Head::Other, "{junk:#x} at {pos}");
            }
        }
    }

    #[test]
    fn check_block_refuses_each_problem() {
        let g = Geometry::with_count(128, 16).unwrap();
        let max = 1000;
        assert_eq!(check_block(&g, max, 3, 3, 3, 96), Ok(1));
        assert_eq!(check_block(&g, max, 3, 3, 3, 97), Ok(2));
        assert_eq!(check_block(&g, max, 19, 3, 19, 0), Ok(1));
        assert_eq!(
            check_block(&g, max, 3, 3, 4, 10),
            Err(BlockProblem::Sequence)
        );
        assert_eq!(
            check_block(&g, max, 3, 3, 3, 1001),
            Err(BlockProblem::TooLong)
        );
        // 15 * 128 - 32 bytes need 15 nodes: from index 2 they run past the end.
        let len = 15 * 128 - 32;
        let big = 2000;
        assert_eq!(
            check_block(&g, big, 2, 2, 2, len),
            Err(BlockProblem::PastRingEnd)
        );
        assert_eq!(check_block(&g, big, 1, 1, 1, len), Ok(15));
        assert_eq!(
            check_block(&g, big, 16, 16, 16, 0),
            Err(BlockProblem::PastRingEnd)
        );
    }

    #[test]
    fn node_sizes() {
        assert!(valid_node_size(128));
        assert!(!valid_node_size(100));
        assert!(!valid_node_size(32));
        assert!(!valid_node_size(1 << 17));
    }
}
