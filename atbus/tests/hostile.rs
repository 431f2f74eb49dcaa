//! Hostile and corrupted segments: a property test that builds a channel, uses it,
//! overwrites bytes of its header, node heads and data area with arbitrary values, then
//! opens, writes to, reads from and inspects it — and named tests for each case worth
//! keeping.
//!
//! The standard (see the crate docs): every value read from shared memory is untrusted.
//! A corrupted segment may be refused with a typed error, and may cause messages to be
//! skipped and counted; never a panic, an out-of-bounds access, a hang, or the delivery
//! of bytes that are not in the segment as a block header describes them.
//!
//! Two property tests: `hostile_segments_never_panic_hang_or_deliver_unsent_bytes`
//! corrupts a segment at rest, then uses it (`HOSTILE_CASES` cases, default 4000);
//! `hostile_peer_writing_while_the_reader_reads` corrupts it while a writer and the
//! reader run (`HOSTILE_LIVE_CASES`, default 500). Set the variables to run more. Failing
//! cases are saved under `tests/proptest-regressions/` and replayed first on every run;
//! the bugs they found have named tests below.
//!
//! What is asserted, beyond "no panic, no hang": a delivered message was sent, or — when
//! the corruption reached node heads, block headers, data or geometry — is the payload a
//! block header in the segment describes, with a crc that checks out; with only header
//! fields corrupted, messages are delivered at most once and, while the cursors are
//! untouched, in order; the reader comes to rest at the write cursor and never passes it.
#![cfg(not(loom))]

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use atbus::layout::{
    Geometry, BLOCK_HEADER_SIZE, FLAG_ABORTED, FLAG_FREE, FLAG_NO_CHECKSUM, FLAG_PADDING,
    FLAG_START, FLAG_WRITTEN, MAGIC, TAG_MASK,
};
use atbus::{Channel, Config, Error, Inspector, Reader};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

// ---------------------------------------------------------------------------------------
// Helpers shared by the property test and the named tests.

/// A channel file under the temp directory, removed on drop.
struct TempChannel {
    path: PathBuf,
    name: String,
}

impl TempChannel {
    fn new(tag: &str) -> TempChannel {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("atbus-hostile-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let name = path.to_str().expect("utf-8 temp dir").to_owned();
        TempChannel { path, name }
    }

    /// Creates a channel of exactly `nodes` nodes of `config.node_size` bytes.
    fn create(&self, nodes: u64, config: &Config) -> Channel {
        let g = Geometry::with_count(config.node_size, nodes).unwrap();
        let ch = Channel::create(&self.name, g.used_size, config).unwrap();
        assert_eq!(ch.node_count(), nodes);
        ch
    }

    fn write(&self, offset: u64, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(&self.path).unwrap();
        f.write_all_at(bytes, offset).unwrap();
    }

    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let f = OpenOptions::new().read(true).open(&self.path).unwrap();
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset).unwrap();
        buf
    }

    fn write_u64(&self, offset: u64, v: u64) {
        self.write(offset, &v.to_le_bytes());
    }

    fn read_u64(&self, offset: u64) -> u64 {
        u64::from_le_bytes(self.read(offset, 8).try_into().unwrap())
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    fn set_len(&self, len: u64) {
        let f = OpenOptions::new().write(true).open(&self.path).unwrap();
        f.set_len(len).unwrap();
    }
}

impl Drop for TempChannel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Header offsets (see `atbus::layout`).
#[allow(dead_code)]
mod off {
    pub const MAGIC: u64 = 0;
    pub const VERSION: u64 = 8;
    pub const NODE_SIZE: u64 = 20;
    pub const NODE_COUNT: u64 = 24;
    pub const TOTAL_SIZE: u64 = 32;
    pub const DATA_OFFSET: u64 = 48;
    pub const TIMEOUT_NS: u64 = 56;
    pub const FLAGS: u64 = 68;
    pub const PROTECT_NODES: u64 = 72;
    // The hot fields, from the layout itself, so the tests follow it if lines move.
    use atbus::layout::Header;
    use std::mem::offset_of;
    pub const READ_CURSOR: u64 = offset_of!(Header, read_cursor) as u64;
    pub const WRITE_CURSOR: u64 = offset_of!(Header, write_cursor) as u64;
    pub const READER_OWNER: u64 = offset_of!(Header, reader) as u64;
    pub const READER_TAKEOVERS: u64 = READER_OWNER + 8;
    pub const READER_COUNTERS: u64 = offset_of!(Header, reader_counters) as u64;
    pub const WAKE: u64 = offset_of!(Header, wake) as u64;
}

/// Offset of node `i`'s head: the first word of the node.
fn head_off(g: &Geometry, i: u64) -> u64 {
    node_off(g, i)
}

/// Offsets of the block header's fields in a block's first node.
mod bh_off {
    pub const LEN: u64 = 8;
    pub const CRC: u64 = 12;
    pub const PID: u64 = 16;
    pub const SEQ: u64 = 24;
}

/// Offset of node `i`'s data in a ring of geometry `g`.
fn node_off(g: &Geometry, i: u64) -> u64 {
    g.data_offset as u64 + i * g.node_size as u64
}

fn head_word(flags: u8, tag: u64) -> u64 {
    (u64::from(flags) << 56) | (tag & TAG_MASK)
}

/// The word the reader record holds for a process (`pid | start_time_low << 32`).
fn owner_word(pid: u32) -> Option<u64> {
    let start = atbus::process::stat(pid)?.start_time;
    Some(u64::from(pid) | (u64::from(start as u32) << 32))
}

/// A pid no process has: above the kernel's pid_max.
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304);
    assert!(!atbus::process::is_alive(max + 1));
    max + 1
}

/// Deterministic message bytes: `id` in the first 8 bytes (when they fit) so messages
/// differ, then pseudo-random bytes.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let tag = id.to_le_bytes();
    let n = len.min(8);
    v[..n].copy_from_slice(&tag[..n]);
    v
}

/// A monotonic clock the tests can move forward, so that torn-block timeouts pass
/// without sleeping. Shared by every reader that uses it: moving it forward only makes
/// time pass faster, which any reader must tolerate.
/// (Milliseconds: a million cases moving it an hour at a time stay far from overflow.)
static CLOCK_SKEW_MS: AtomicU64 = AtomicU64::new(0);

fn skewed_now() -> Instant {
    Instant::now() + Duration::from_millis(CLOCK_SKEW_MS.load(Ordering::Relaxed))
}

fn advance_clock(by: Duration) {
    let ms = (by.as_nanos().div_ceil(1_000_000)) as u64;
    CLOCK_SKEW_MS.fetch_add(ms, Ordering::Relaxed);
}

/// Errors `Channel::open` and `Inspector::open` may give for a corrupted segment.
fn is_open_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Truncated { .. }
            | Error::NotAtbus { .. }
            | Error::NotInitialized { .. }
            | Error::Incompatible { .. }
            | Error::Corrupt { .. }
    )
}

/// Errors a send may give on a corrupted segment.
fn is_send_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Full | Error::TooLarge { .. } | Error::Abandoned { .. } | Error::Corrupt { .. }
    )
}

// ---------------------------------------------------------------------------------------
// The property test: cases.

/// How a message length is picked, relative to the channel's sizes.
#[derive(Clone, Copy, Debug)]
enum Size {
    /// `n % (2 * node_size)`: one to three nodes.
    Small(u16),
    /// `max_message_len - n`: big blocks that force padding at the end of the ring.
    NearMax(u8),
    /// `k * node_size - 32 + d`, d in -1..=1: a node boundary.
    Boundary(u8, i8),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Send(Size),
    ReserveCommit(Size),
    /// A reservation dropped without commit (aborted).
    ReserveDrop(Size),
    /// A reservation never committed nor dropped: a writer stalled (forever) mid-write.
    ReserveForget(Size),
    /// Receive up to this many messages.
    Recv(u8),
}

/// A value to write into a field.
#[derive(Clone, Copy, Debug)]
enum Val {
    Raw(u64),
    /// An index into [`specials`].
    Special(u8),
    /// The field's current value plus this.
    Delta(i16),
}

#[derive(Clone, Copy, Debug)]
enum Target {
    /// A header field at this index of [`HEADER_FIELDS`].
    Field(u8, Val),
    /// Any byte of the 4 KiB header.
    HeaderByte(u16, u8),
    /// Node head `i % node_count` set to `flags << 56 | tag`, the tag picked by `Val`
    /// relative to its current tag.
    Head(u16, u8, Val),
    /// Node head `i % node_count` set to any word.
    HeadRaw(u16, Val),
    /// Block-header field `f % 4` (len, crc, seq, writer_pid) of node `i % node_count`.
    BlockHeader(u16, u8, Val),
    /// Any byte of the data area.
    DataByte(u32, u8),
    /// The object's length: 0, 4095, 4096, shorter by a node, by a byte, longer by a page.
    SetLen(u8),
}

/// Header fields: (offset, width).
const HEADER_FIELDS: &[(u64, usize)] = &[
    (0, 8),  // magic
    (8, 4),  // version
    (12, 4), // abi_tag
    (16, 4), // header_size
    (20, 4), // node_size
    (24, 8), // node_count
    (32, 8), // total_size
    (40, 8), // reserved (the head array's offset in layout version 1)
    (48, 8), // data_offset
    (56, 8), // timeout_ns
    (64, 4), // write_retries
    (68, 4), // flags
    (72, 8), // protect_nodes
    (80, 8), // created_unix_ns
    (88, 8), // channel_id
    (off::READ_CURSOR, 8),
    (off::WRITE_CURSOR, 8),
    (off::READER_OWNER, 8),
    (off::READER_TAKEOVERS, 8),
    // Writer counters (at 640 in layout version 1 as first built; at 1024 + 128 × slot
    // where the layout gives each writer process a slot).
    (640, 8),
    (1024, 8),
    (1032, 8),
    (off::READER_COUNTERS, 8), // messages_received
    (off::READER_COUNTERS + 8, 8),
    (off::READER_COUNTERS + 40, 8), // bad_blocks
    (off::WAKE, 4),                 // sleeping
    (off::WAKE + 4, 4),             // seq
];

/// Fields whose corruption changes how the segment's bytes are interpreted (geometry).
fn reinterprets(offset: u64) -> bool {
    (16..56).contains(&offset)
}

#[derive(Clone, Debug)]
struct Case {
    node_size: usize,
    nodes: u64,
    protect_nodes: u8,
    /// 1 ms, or 1 hour.
    tiny_timeout: bool,
    checksums: bool,
    detect_dead_writers: bool,
    ops: Vec<Op>,
    /// End the first reader with `mem::forget`, not `drop`, and mark its process dead in
    /// the reader record: a reader that died (possibly holding consumed but unreleased
    /// nodes) and whose role the next reader takes over.
    leak_reader: bool,
    corruptions: Vec<Target>,
    /// Sends after the corruption (they go to the sent set when they return Ok).
    after: Vec<Size>,
    /// Receive methods, used in turn.
    recv: Vec<(u8, u16)>,
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        6 => any::<u16>().prop_map(Size::Small),
        2 => (0u8..8).prop_map(Size::NearMax),
        2 => (1u8..5, -1i8..=1).prop_map(|(k, d)| Size::Boundary(k, d)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Send),
        2 => size().prop_map(Op::ReserveCommit),
        2 => size().prop_map(Op::ReserveDrop),
        1 => size().prop_map(Op::ReserveForget),
        3 => (1u8..8).prop_map(Op::Recv),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        2 => any::<u64>().prop_map(Val::Raw),
        4 => any::<u8>().prop_map(Val::Special),
        4 => (-80i16..=80).prop_map(Val::Delta),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => (0..HEADER_FIELDS.len() as u8, val()).prop_map(|(f, v)| Target::Field(f, v)),
        // The cursors and the reader record, more often.
        6 => (prop_oneof![Just(14u8), Just(15), Just(17)], val())
            .prop_map(|(f, v)| Target::Field(f, v)),
        1 => (0u16..4096, any::<u8>()).prop_map(|(o, b)| Target::HeaderByte(o, b)),
        8 => (any::<u16>(), 0u8..16, val()).prop_map(|(i, f, v)| Target::Head(i, f, v)),
        2 => (any::<u16>(), any::<u8>(), val()).prop_map(|(i, f, v)| Target::Head(i, f, v)),
        2 => (any::<u16>(), val()).prop_map(|(i, v)| Target::HeadRaw(i, v)),
        6 => (any::<u16>(), 0u8..4, val()).prop_map(|(i, f, v)| Target::BlockHeader(i, f, v)),
        3 => (any::<u32>(), any::<u8>()).prop_map(|(o, b)| Target::DataByte(o, b)),
        1 => (0u8..6).prop_map(Target::SetLen),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop_oneof![Just(64usize), Just(128)],
            8u64..=64,
            0u8..3,
            any::<bool>(),
            prop::bool::weighted(0.85),
            any::<bool>(),
        ),
        (
            prop::collection::vec(op(), 0..24),
            prop::bool::weighted(0.2),
        ),
        prop::collection::vec(target(), 0..8),
        prop::collection::vec(size(), 0..4),
        prop::collection::vec((0u8..6, any::<u16>()), 1..6),
    )
        .prop_map(
            |(
                (node_size, nodes, protect_nodes, tiny, checksums, detect),
                (ops, leak_reader),
                c,
                after,
                recv,
            )| {
                Case {
                    node_size,
                    nodes,
                    protect_nodes,
                    tiny_timeout: tiny,
                    checksums,
                    detect_dead_writers: detect,
                    ops,
                    leak_reader,
                    corruptions: c,
                    after,
                    recv,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// The property test: running a case.

/// What a case observed, summed over the run (printed at the end).
#[derive(Default)]
struct Tally {
    cases: AtomicU64,
    open_refused: AtomicU64,
    reader_busy: AtomicU64,
    delivered: AtomicU64,
    forged: AtomicU64,
    recv_corrupt: AtomicU64,
    damaged: AtomicU64,
}

static TALLY: Tally = Tally {
    cases: AtomicU64::new(0),
    open_refused: AtomicU64::new(0),
    reader_busy: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    forged: AtomicU64::new(0),
    recv_corrupt: AtomicU64::new(0),
    damaged: AtomicU64::new(0),
};

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The case now running and when it last made progress, for the hang watchdog.
static CURRENT: Mutex<String> = Mutex::new(String::new());
static PROGRESS_MS: AtomicU64 = AtomicU64::new(0);

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn progress() {
    PROGRESS_MS.store(epoch_ms(), Ordering::Relaxed);
}

/// Aborts the test process, naming the case, if no case makes progress for 60 s: a
/// call into the library that never returns is a hang, which the standard forbids.
fn start_watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        progress();
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let last = PROGRESS_MS.load(Ordering::Relaxed);
            if epoch_ms().saturating_sub(last) > 60_000 {
                let case = CURRENT.lock().map(|s| s.clone()).unwrap_or_default();
                eprintln!("hostile: no progress for 60 s (a hang) in case:\n{case}");
                std::process::abort();
            }
        });
    });
}

/// Special values: small, huge, tag and sign boundaries, and values that mean something
/// in this channel.
fn specials(ctx: &Ctx) -> [u64; 24] {
    [
        0,
        1,
        2,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX - ctx.nodes,
        1 << 56,
        (1 << 56) - 1,
        1 << 63,
        (1 << 63) - 1,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        ctx.nodes,
        ctx.nodes - 1,
        ctx.nodes + 1,
        2 * ctx.nodes,
        ctx.used as u64,
        ctx.max_len as u64,
        ctx.max_len as u64 + 1,
        ctx.own_owner,
        ctx.pid1_owner,
        u64::from(ctx.dead_pid),
        u64::from(std::process::id()),
        MAGIC,
    ]
}

struct Ctx {
    nodes: u64,
    used: usize,
    max_len: usize,
    own_owner: u64,
    pid1_owner: u64,
    dead_pid: u32,
}

fn pick(ctx: &Ctx, v: Val, current: u64) -> u64 {
    match v {
        Val::Raw(x) => x,
        Val::Special(i) => {
            let s = specials(ctx);
            s[i as usize % s.len()]
        }
        Val::Delta(d) => current.wrapping_add(d as i64 as u64),
    }
}

fn length(ctx: &Ctx, node_size: usize, s: Size) -> usize {
    let len = match s {
        Size::Small(n) => n as usize % (2 * node_size),
        Size::NearMax(n) => ctx.max_len.saturating_sub(n as usize),
        Size::Boundary(k, d) => {
            (k as usize * node_size - BLOCK_HEADER_SIZE).saturating_add_signed(d as isize)
        }
    };
    len.min(ctx.max_len)
}

/// Applies one corruption to the (unmapped) channel file.
fn corrupt(ch: &TempChannel, ctx: &Ctx, g: &Geometry, t: Target) {
    let read_field = |o: u64, w: usize| -> u64 {
        let b = ch.read(o, w);
        let mut x = [0u8; 8];
        x[..w].copy_from_slice(&b);
        u64::from_le_bytes(x)
    };
    match t {
        Target::Field(f, v) => {
            let (o, w) = HEADER_FIELDS[f as usize % HEADER_FIELDS.len()];
            let mut x = pick(ctx, v, read_field(o, w));
            if o == off::MAGIC && x == 0 {
                // A zero magic makes open wait 200 ms for a creator; a named test covers it.
                x = 1;
            }
            ch.write(o, &x.to_le_bytes()[..w]);
        }
        Target::HeaderByte(o, b) => {
            let o = u64::from(o % 4096);
            if o < 8 && b == 0 {
                return; // as above: never zero the magic
            }
            ch.write(o, &[b]);
        }
        Target::Head(i, flags, v) => {
            let o = head_off(g, u64::from(i) % g.node_count);
            let old = ch.read_u64(o) & TAG_MASK;
            ch.write_u64(o, head_word(flags, pick(ctx, v, old)));
        }
        Target::HeadRaw(i, v) => {
            let o = head_off(g, u64::from(i) % g.node_count);
            let old = ch.read_u64(o);
            ch.write_u64(o, pick(ctx, v, old));
        }
        Target::BlockHeader(i, f, v) => {
            let o = node_off(g, u64::from(i) % g.node_count);
            let (fo, w) = [
                (bh_off::LEN, 4),
                (bh_off::CRC, 4),
                (bh_off::SEQ, 8),
                (bh_off::PID, 4),
            ][f as usize % 4];
            let x = pick(ctx, v, read_field(o + fo, w));
            ch.write(o + fo, &x.to_le_bytes()[..w]);
        }
        Target::DataByte(o, b) => {
            let area = g.node_count * g.node_size as u64;
            ch.write(g.data_offset as u64 + u64::from(o) % area, &[b]);
        }
        Target::SetLen(k) => {
            let used = g.used_size as u64;
            let len = [
                0,
                4095,
                4096,
                used - g.node_size as u64,
                used - 1,
                used + 4096,
            ][k as usize % 6];
            ch.set_len(len);
        }
    }
}

/// Payloads a block header in `image` describes: for each node whose header's length
/// fits in the ring from there, the payload bytes it points at. A delivered message
/// that was never sent must be one of these (the adversary forged a head or a header
/// over bytes that are in the segment), and its crc must match (sealed with the header's
/// sequence, which the reader checked against the head) when checksums are on.
fn forgeable(image: &[u8], g: &Geometry, msg: &[u8]) -> bool {
    let checksums = image.len() >= 72 && {
        let flags = u32::from_le_bytes(image[68..72].try_into().unwrap());
        flags & FLAG_NO_CHECKSUM == 0
    };
    (0..g.node_count).any(|i| {
        let at = node_off(g, i) as usize;
        let Some(h) = image.get(at..at + BLOCK_HEADER_SIZE) else {
            return false;
        };
        let len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(h[12..16].try_into().unwrap());
        let seq = u64::from_le_bytes(h[24..32].try_into().unwrap());
        let room = (g.node_count - i) as usize * g.node_size - BLOCK_HEADER_SIZE;
        len == msg.len()
            && len <= room
            && image.get(at + BLOCK_HEADER_SIZE..at + BLOCK_HEADER_SIZE + len) == Some(msg)
            && (!checksums || atbus::layout::sealed_crc(crc32(msg), seq) == crc)
    })
}

/// Checks exactly-once and FIFO delivery of the messages long enough to carry their id.
#[derive(Default)]
struct Order {
    last: Option<u64>,
    seen: HashSet<u64>,
}

impl Order {
    fn check(&mut self, sent: &HashMap<Vec<u8>, u64>, m: &[u8]) -> Result<(), TestCaseError> {
        self.check_below(sent, m, u64::MAX)
    }

    /// As `check`, FIFO only among ids below `fifo_below`.
    fn check_below(
        &mut self,
        sent: &HashMap<Vec<u8>, u64>,
        m: &[u8],
        fifo_below: u64,
    ) -> Result<(), TestCaseError> {
        let Some(&id) = sent.get(m).filter(|_| m.len() >= 8) else {
            return Ok(());
        };
        prop_assert!(self.seen.insert(id), "message {} delivered twice", id);
        if id < fifo_below {
            if let Some(last) = self.last {
                prop_assert!(id > last, "message {} delivered after {}", id, last);
            }
            self.last = Some(id);
        }
        Ok(())
    }
}

fn channel_checksums(view: &atbus::Result<Inspector>) -> bool {
    view.as_ref().is_ok_and(Inspector::checksums)
}

fn crc32(data: &[u8]) -> u32 {
    // crc32c (Castagnoli), bit by bit: tests need no speed and no extra dependency.
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Receives with the methods of `recv` in turn until `Empty` (`Ok(None)`) or `Corrupt`
/// (`Ok(Some(reason))`); any other error fails the case.
fn receive_all(
    r: &mut Reader,
    got: &mut Vec<Vec<u8>>,
    budget: usize,
    recv: &[(u8, u16)],
) -> Result<Option<String>, TestCaseError> {
    let mut calls = 0;
    let mut i = 0;
    loop {
        let (how, n) = recv[i % recv.len()];
        i += 1;
        calls += 1;
        prop_assert!(calls <= budget, "no Empty after {budget} calls: a hang");
        let out = match how {
            0 => {
                let mut buf = vec![0u8; n as usize % 512];
                match r.try_recv(&mut buf) {
                    Ok(len) => Ok(vec![buf[..len].to_vec()]),
                    Err(Error::BufferTooSmall { needed }) => {
                        prop_assert!(needed > buf.len());
                        // The message stays: a buffer of `needed` bytes takes it, unless
                        // it fails its crc (then it is skipped and the next one comes).
                        let mut buf = vec![0u8; needed];
                        match r.try_recv(&mut buf) {
                            Ok(len) => Ok(vec![buf[..len].to_vec()]),
                            Err(Error::BufferTooSmall { needed: more }) => {
                                prop_assert!(more > needed);
                                continue;
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            1 => r.try_recv_vec().map(|v| vec![v]),
            2 => r.try_recv_in_place(|m| vec![m.to_vec()]),
            3 => {
                let mut batch = Vec::new();
                r.recv_batch(1 + n as usize % 4, |m| batch.push(m.to_vec()))
                    .map(|k| {
                        assert_eq!(k, batch.len());
                        batch
                    })
            }
            4 => r.try_recv_with(|m| vec![m.to_vec()]),
            _ => {
                let mut buf = vec![0u8; 1 << 16];
                match r.recv_timeout(&mut buf, Duration::ZERO) {
                    Ok(len) => Ok(vec![buf[..len].to_vec()]),
                    Err(Error::Timeout) => Err(Error::Empty),
                    Err(e) => Err(e),
                }
            }
        };
        match out {
            Ok(msgs) => got.extend(msgs),
            Err(Error::Empty) => return Ok(None),
            Err(Error::Damaged) => bump(&TALLY.damaged),
            Err(Error::Corrupt { reason, .. }) => return Ok(Some(reason)),
            // A peer overwrote the reader record: this reader stops, as it must.
            Err(Error::ReaderRoleLost { pid }) => return Ok(Some(format!("role lost to {pid}"))),
            Err(e) => return Err(TestCaseError::fail(format!("receive: {e:?}"))),
        }
    }
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    bump(&TALLY.cases);
    progress();
    if let Ok(mut s) = CURRENT.lock() {
        *s = format!("{c:?}");
    }
    let ch = TempChannel::new("p");
    let config = Config::builder()
        .node_size(c.node_size)
        .timeout(if c.tiny_timeout {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(3600)
        })
        .protect_bytes(c.protect_nodes as usize * c.node_size)
        .detect_dead_writers(c.detect_dead_writers)
        .checksums(c.checksums)
        .build()
        .unwrap();
    let g = Geometry::with_count(c.node_size, c.nodes).unwrap();
    // Every message sent, with its id (see `payload`).
    let mut sent: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut order = Order::default();
    let mut next_id = 0u64;
    let ctx;
    {
        let channel = ch.create(c.nodes, &config);
        ctx = Ctx {
            nodes: c.nodes,
            used: g.used_size,
            max_len: channel.max_message_len(),
            own_owner: owner_word(std::process::id()).unwrap_or(0),
            pid1_owner: owner_word(1).unwrap_or(1),
            dead_pid: dead_pid(),
        };
        let w = channel.writer();
        let mut r = channel.reader().unwrap();
        r.set_clock(skewed_now);
        for &op in &c.ops {
            match op {
                Op::Send(s) | Op::ReserveCommit(s) | Op::ReserveDrop(s) | Op::ReserveForget(s) => {
                    let len = length(&ctx, c.node_size, s);
                    let id = next_id;
                    let msg = payload(id, len);
                    next_id += 1;
                    let res = match op {
                        Op::Send(_) => w.try_send(&msg).map(|()| true),
                        Op::ReserveCommit(_) => w.reserve(len).and_then(|mut slot| {
                            slot.copy_from_slice(&msg);
                            slot.commit().map(|()| true)
                        }),
                        Op::ReserveDrop(_) => w.reserve(len).map(|mut slot| {
                            slot.copy_from_slice(&msg);
                            false
                        }),
                        _ => w.reserve(len).map(|mut slot| {
                            slot.copy_from_slice(&msg);
                            std::mem::forget(slot);
                            false
                        }),
                    };
                    match res {
                        Ok(true) => {
                            sent.insert(msg, id);
                        }
                        Ok(false) | Err(Error::Full) => {}
                        Err(e) => prop_assert!(false, "send before corruption: {e:?}"),
                    }
                }
                Op::Recv(k) => {
                    for _ in 0..k {
                        match r.try_recv_vec() {
                            Ok(m) => {
                                prop_assert!(sent.contains_key(&m), "delivered unsent bytes");
                                order.check(&sent, &m)?;
                            }
                            Err(Error::Empty) => break,
                            Err(e) => prop_assert!(false, "receive before corruption: {e:?}"),
                        }
                    }
                }
            }
        }
        if c.leak_reader {
            std::mem::forget(r);
        }
    }
    let first_after_id = next_id;

    // Corrupt the unmapped file.
    if c.leak_reader {
        // The leaked reader's process "died": a pid no process has.
        ch.write_u64(off::READER_OWNER, u64::from(ctx.dead_pid) | (7 << 32));
    }
    let mut strict = true;
    // Moving a cursor can reorder what is delivered: a read cursor moved a lap ahead makes
    // the reader deliver the messages it skipped once writers have moved on.
    let mut fifo = true;
    // Changes of length last: the others read the file first.
    let mut corruptions = c.corruptions.clone();
    corruptions.sort_by_key(|t| matches!(t, Target::SetLen(_)));
    for &t in &corruptions {
        let cursor = |o: u64| {
            (off::READ_CURSOR..off::READ_CURSOR + 8).contains(&o)
                || (off::WRITE_CURSOR..off::WRITE_CURSOR + 8).contains(&o)
        };
        fifo &= match t {
            Target::Field(f, _) => !cursor(HEADER_FIELDS[f as usize % HEADER_FIELDS.len()].0),
            Target::HeaderByte(o, _) => !cursor(u64::from(o % 4096)),
            _ => true,
        };
        strict &= match t {
            Target::Field(f, _) => !reinterprets(HEADER_FIELDS[f as usize % HEADER_FIELDS.len()].0),
            Target::HeaderByte(o, _) => !reinterprets(u64::from(o % 4096)),
            Target::SetLen(_) => true,
            _ => false,
        };
        corrupt(&ch, &ctx, &g, t);
    }
    let owner = ch
        .bytes()
        .get(512..520)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));

    // Open; a typed error is fine.
    let opened = Channel::open(&ch.name);
    let inspectable = Inspector::open(&ch.name);
    match (&opened, &inspectable) {
        (Ok(_), Ok(_)) => {}
        (Err(e), Err(f)) => {
            prop_assert!(is_open_error(e), "open: {e:?}");
            prop_assert!(is_open_error(f), "inspect: {f:?}");
        }
        _ => prop_assert!(
            false,
            "open and inspect disagree: {:?} / {:?}",
            opened.as_ref().err(),
            inspectable.as_ref().err()
        ),
    }
    progress();
    if let Ok(channel) = &opened {
        let w = channel.writer();
        for &s in &c.after {
            let len = length(&ctx, c.node_size, s).min(channel.max_message_len());
            let id = next_id;
            let msg = payload(id, len);
            next_id += 1;
            match w.try_send(&msg) {
                Ok(()) => {
                    sent.insert(msg, id);
                    // A corrupted write cursor can point an honest writer at nodes of a
                    // message not yet read: without checksums nothing then tells the
                    // reader that message was overwritten (see `forgeable`).
                    strict &= channel_checksums(&inspectable);
                }
                Err(e) => prop_assert!(is_send_error(&e), "send after corruption: {e:?}"),
            }
        }
        progress();
        let mut reader = match channel.reader() {
            Ok(r) => Some(r),
            Err(Error::ReaderBusy { pid }) => {
                let word = owner.unwrap_or(0);
                prop_assert_eq!(pid, word as u32);
                prop_assert!(
                    word == ctx.own_owner
                        || atbus::process::is_same_alive(word as u32, (word >> 32) as u32),
                    "ReaderBusy for a record naming no live process: {:#x}",
                    word
                );
                bump(&TALLY.reader_busy);
                None
            }
            Err(e) => return Err(TestCaseError::fail(format!("reader: {e:?}"))),
        };
        if let Some(r) = reader.as_mut() {
            r.set_clock(skewed_now);
            let image = ch.bytes();
            let start = r.position();
            let opened_geo =
                Geometry::with_count(channel.node_size(), channel.node_count()).unwrap();
            let budget = 4 * channel.node_count() as usize + 16;
            let mut got = Vec::new();
            let mut empties = 0;
            let mut rounds = 0;
            // Receive until the reader has nothing left: Empty many times in a row, with
            // the clock moved past the timeout between them (so torn blocks get skipped),
            // or a typed error.
            let timeout = channel.timeout();
            let ended = loop {
                let before = got.len();
                if let Some(reason) = receive_all(r, &mut got, budget, &c.recv)? {
                    bump(&TALLY.recv_corrupt);
                    break Some(reason);
                }
                if got.len() == before {
                    empties += 1;
                    if empties > 200 {
                        break None;
                    }
                } else {
                    empties = 0;
                    rounds += 1;
                    prop_assert!(rounds <= budget, "still delivering after {budget} rounds");
                }
                if timeout <= Duration::from_secs(3600) {
                    advance_clock(timeout + Duration::from_millis(1));
                }
                progress();
            };
            // The blocking receive, on the futex whose words the corruption may have
            // hit: it times out or reports the corruption, or delivers a message (1 ms of
            // real time can reveal a dead writer's block, skipped without the timeout).
            let mut buf = vec![0u8; channel.max_message_len()];
            match r.recv_timeout(&mut buf, Duration::from_millis(1)) {
                Ok(len) => got.push(buf[..len].to_vec()),
                Err(Error::Timeout | Error::Corrupt { .. } | Error::Damaged) => {}
                Err(e) => prop_assert!(false, "recv_timeout at rest: {:?}", e),
            }
            for m in &got {
                bump(&TALLY.delivered);
                if strict {
                    // Exactly once; in order among the messages sent before the
                    // corruption, unless a cursor moved.
                    let fifo_below = if fifo { first_after_id } else { 0 };
                    order.check_below(&sent, m, fifo_below)?;
                }
                if !sent.contains_key(m) {
                    prop_assert!(
                        !strict,
                        "delivered {} bytes never sent, with no head, data or geometry corrupted",
                        m.len()
                    );
                    prop_assert!(
                        forgeable(&image, &opened_geo, m),
                        "delivered {} bytes that no block header in the segment describes",
                        m.len()
                    );
                    bump(&TALLY.forged);
                }
            }
            // Liveness: with a timeout the clock could pass, a reader that reports
            // Empty has consumed everything writers claimed.
            let w = Inspector::open(&ch.name).unwrap().cursors().write;
            if ended.is_none() && timeout <= Duration::from_secs(3600) {
                prop_assert_eq!(
                    r.position(),
                    w,
                    "the reader is stuck below the write cursor"
                );
            }
            // Safety of the cursors: a reader that started at or below the write cursor
            // never moves past it (writers would find the ring full, or claim positions
            // the reader has passed), whatever the heads say.
            if start <= w {
                prop_assert!(
                    r.position() <= w,
                    "the reader moved from {} past the write cursor {} to {}",
                    start,
                    w,
                    r.position()
                );
            }
        }
        drop(reader);
        // The handle-level views of a corrupted channel.
        let _ = (
            channel.stats(),
            channel.max_message_len(),
            channel.timeout(),
        );
    }
    progress();
    if let Ok(view) = inspectable {
        inspect_everything(&view);
    } else {
        TALLY.open_refused.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Calls every method of the inspection view, with indices in and out of range and
/// absurd lengths; checks what is checkable.
fn inspect_everything(view: &Inspector) {
    let info = view.info();
    let _ = view.stats();
    let _ = view.checksums();
    let cursors = view.cursors();
    assert!(cursors.used_nodes <= info.node_count);
    let _ = view.reader_owner();
    let _ = view.reader_sleeping();
    let count = info.node_count;
    for i in (0..count + 3).chain([u64::MAX, u64::MAX - 1, 1 << 63]) {
        let node = view.node(i);
        assert_eq!(node.is_some(), i < count);
        let bh = view.block_header(i);
        assert_eq!(bh.is_some(), i < count);
        for n in [0, 1, info.node_size, 3 * info.node_size, usize::MAX] {
            let bytes = view.node_bytes(i, n);
            let room = if i < count {
                (count - i) as usize * info.node_size
            } else {
                0
            };
            assert_eq!(bytes.len(), n.min(room));
        }
        if let Some(bh) = bh {
            let len = bh.len as usize;
            if let Some(p) = view.payload(i, len) {
                assert_eq!(p.len(), len);
            }
            let _ = view.nodes_for(len);
        }
        for len in [0, info.max_message_len, u32::MAX as usize] {
            if let Some(p) = view.payload(i, len) {
                assert_eq!(p.len(), len);
            }
        }
    }
}

#[test]
fn hostile_segments_never_panic_hang_or_deliver_unsent_bytes() {
    start_watchdog();
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/hostile.txt",
        ))),
        source_file: Some(file!()),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |c| run_case(&c));
    let t = &TALLY;
    let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "hostile: {} cases run (shrinking included): {} refused at open, {} reader busy, \
         {} messages delivered ({} forged by the corruption), {} Corrupt from the reader, \
         {} Damaged",
        l(&t.cases),
        l(&t.open_refused),
        l(&t.reader_busy),
        l(&t.delivered),
        l(&t.forged),
        l(&t.recv_corrupt),
        l(&t.damaged)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// The property test with a live adversary: corruption while a writer and the reader run.

#[derive(Clone, Debug)]
struct LiveCase {
    node_size: usize,
    nodes: u64,
    tiny_timeout: bool,
    checksums: bool,
    sends: Vec<Size>,
    /// What the hostile peer writes, one after the other, while the others run.
    corruptions: Vec<Target>,
    recv: Vec<(u8, u16)>,
}

fn live_case() -> impl Strategy<Value = LiveCase> {
    (
        prop_oneof![Just(64usize), Just(128)],
        8u64..=32,
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::collection::vec(size(), 0..40),
        // No changes of length: shrinking a mapped file is SIGBUS, not a corruption a
        // library can survive (the segment's size is fixed at creation).
        prop::collection::vec(target(), 1..40).prop_map(|v| {
            v.into_iter()
                .filter(|t| !matches!(t, Target::SetLen(_)))
                .collect()
        }),
        prop::collection::vec((0u8..6, any::<u16>()), 1..6),
    )
        .prop_map(
            |(node_size, nodes, tiny_timeout, checksums, sends, corruptions, recv)| LiveCase {
                node_size,
                nodes,
                tiny_timeout,
                checksums,
                sends,
                corruptions,
                recv,
            },
        )
}

fn run_live_case(c: &LiveCase) -> Result<(), TestCaseError> {
    progress();
    let ch = TempChannel::new("live");
    let config = Config::builder()
        .node_size(c.node_size)
        .timeout(if c.tiny_timeout {
            Duration::from_millis(1)
        } else {
            Duration::from_secs(3600)
        })
        .checksums(c.checksums)
        .build()
        .unwrap();
    let channel = ch.create(c.nodes, &config);
    let g = Geometry::with_count(c.node_size, c.nodes).unwrap();
    let ctx = Ctx {
        nodes: c.nodes,
        used: g.used_size,
        max_len: channel.max_message_len(),
        own_owner: owner_word(std::process::id()).unwrap_or(0),
        pid1_owner: owner_word(1).unwrap_or(1),
        dead_pid: dead_pid(),
    };
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    r.set_clock(skewed_now);
    let mut got = Vec::new();
    let budget = 4 * c.nodes as usize + 16 + c.sends.len();
    let done = std::sync::atomic::AtomicBool::new(false);
    // A tool inspecting the channel meanwhile.
    let view = Inspector::open(&ch.name).unwrap();
    std::thread::scope(|scope| -> Result<(), TestCaseError> {
        let peer = scope.spawn(|| {
            for &t in &c.corruptions {
                corrupt(&ch, &ctx, &g, t);
                std::thread::yield_now();
            }
            done.store(true, Ordering::Relaxed);
        });
        let tool = scope.spawn(|| {
            for _ in 0..3 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                inspect_everything(&view);
            }
        });
        for (i, &s) in c.sends.iter().enumerate() {
            let msg = payload(i as u64, length(&ctx, c.node_size, s));
            if let Err(e) = w.try_send(&msg) {
                prop_assert!(is_send_error(&e), "send: {e:?}");
            }
            if receive_all(&mut r, &mut got, budget, &c.recv[i % c.recv.len()..])?.is_some() {
                break;
            }
        }
        peer.join().unwrap();
        tool.join().unwrap();
        Ok(())
    })?;
    // The peer is done: the reader must come to rest.
    let mut empties = 0;
    let mut rounds = 0;
    while empties <= 200 {
        let before = got.len();
        if receive_all(&mut r, &mut got, budget, &c.recv)?.is_some() {
            break;
        }
        if got.len() == before {
            empties += 1;
        } else {
            empties = 0;
            rounds += 1;
            prop_assert!(rounds <= budget, "still delivering after {budget} rounds");
        }
        if channel.timeout() <= Duration::from_secs(3600) {
            advance_clock(channel.timeout() + Duration::from_millis(1));
        }
        progress();
    }
    drop(r);
    if let Ok(view) = Inspector::open(&ch.name) {
        inspect_everything(&view);
    }
    Ok(())
}

#[test]
fn hostile_peer_writing_while_the_reader_reads() {
    start_watchdog();
    let cases = std::env::var("HOSTILE_LIVE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/hostile-live.txt",
        ))),
        source_file: Some(file!()),
        max_shrink_iters: 500,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&live_case(), |c| run_live_case(&c)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Named cases: targeted corruptions with their exact outcomes.

fn quick_config() -> Config {
    Config::builder()
        .node_size(64)
        .timeout(Duration::from_millis(1))
        .build()
        .unwrap()
}

/// A 16-node channel of 64-byte nodes holding messages `msgs`, all handles dropped.
fn channel_with(tag: &str, msgs: &[&[u8]]) -> (TempChannel, Geometry) {
    let ch = TempChannel::new(tag);
    let channel = ch.create(16, &quick_config());
    let w = channel.writer();
    for m in msgs {
        w.try_send(m).unwrap();
    }
    (ch, Geometry::with_count(64, 16).unwrap())
}

/// Receives until a result other than `Empty` or `limit` calls in a row return `Empty`,
/// moving the clock past the timeout between calls. Returns the messages and how it
/// ended (`None`: Empty).
fn drain(r: &mut Reader, limit: usize) -> (Vec<Vec<u8>>, Option<Error>) {
    r.set_clock(skewed_now);
    let mut got = Vec::new();
    let mut empties = 0;
    while empties < limit {
        match r.try_recv_vec() {
            Ok(m) => {
                got.push(m);
                empties = 0;
            }
            Err(Error::Empty) => {
                empties += 1;
                advance_clock(Duration::from_millis(2));
            }
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

fn assert_open_fails(ch: &TempChannel, want: fn(&Error) -> bool) {
    let e = Channel::open(&ch.name).unwrap_err();
    assert!(want(&e), "open: {e:?}");
    let Err(e) = Inspector::open(&ch.name) else {
        panic!("the inspector opened a segment Channel::open refused");
    };
    assert!(want(&e), "inspect: {e:?}");
}

#[test]
fn truncated_file_after_create_is_refused_typed() {
    // 16 nodes of 64 bytes after the 4 KiB header: 5120 bytes.
    for len in [0u64, 1, 4095, 4096, 4097, 4096 + 16 * 64 - 1] {
        let (ch, _) = channel_with("trunc", &[b"x"]);
        ch.set_len(len);
        assert_open_fails(&ch, |e| matches!(e, Error::Truncated { .. }));
    }
    // Longer than created is fine.
    let (ch, g) = channel_with("longer", &[b"x"]);
    ch.set_len(g.used_size as u64 + 12345);
    let mut r = Channel::open(&ch.name).unwrap().reader().unwrap();
    assert_eq!(r.try_recv_vec().unwrap(), b"x");
}

#[test]
fn patched_geometry_is_refused_as_corrupt() {
    let corrupt = |e: &Error| matches!(e, Error::Corrupt { .. });
    let cases: &[(u64, usize, u64)] = &[
        (off::NODE_COUNT, 8, u64::MAX),
        (off::NODE_COUNT, 8, 1 << 40),
        (off::NODE_COUNT, 8, 17),
        (off::NODE_COUNT, 8, 1),
        (off::NODE_COUNT, 8, 0),
        (off::NODE_SIZE, 4, u32::MAX as u64),
        (off::NODE_SIZE, 4, 1 << 31),
        (off::NODE_SIZE, 4, 1 << 16),
        (off::NODE_SIZE, 4, 100),
        (off::NODE_SIZE, 4, 32),
        (off::NODE_SIZE, 4, 0),
        (off::DATA_OFFSET, 8, 0),
        (off::DATA_OFFSET, 8, 8192),
        (off::DATA_OFFSET, 8, 4096 + 64),
        (off::DATA_OFFSET, 8, u64::MAX),
        (16, 4, 4095), // header_size
        (off::PROTECT_NODES, 8, 15),
        (off::PROTECT_NODES, 8, u64::MAX),
        (off::TOTAL_SIZE, 8, 4096 + 16 * 64 - 1),
    ];
    for &(at, width, v) in cases {
        let (ch, _) = channel_with("geo", &[b"x"]);
        ch.write(at, &v.to_le_bytes()[..width]);
        assert_open_fails(&ch, corrupt);
    }
    // A total size above the object's size: the object is truncated.
    let (ch, _) = channel_with("total", &[b"x"]);
    ch.write_u64(off::TOTAL_SIZE, u64::MAX);
    assert_open_fails(&ch, |e| matches!(e, Error::Truncated { .. }));
}

#[test]
fn foreign_magic_or_version_is_refused_typed() {
    let (ch, _) = channel_with("magic", &[b"x"]);
    ch.write_u64(off::MAGIC, MAGIC ^ 1);
    assert_open_fails(&ch, |e| matches!(e, Error::NotAtbus { .. }));
    ch.write_u64(off::MAGIC, 0);
    assert_open_fails(&ch, |e| matches!(e, Error::NotInitialized { .. }));
    ch.write_u64(off::MAGIC, MAGIC);
    let ours = atbus::layout::VERSION;
    for version in [1u32, 2, 3, ours - 1, ours + 1, u32::MAX] {
        ch.write(off::VERSION, &version.to_le_bytes());
        assert_open_fails(&ch, |e| matches!(e, Error::Incompatible { .. }));
    }
}

#[test]
fn write_cursor_below_read_cursor_is_a_typed_error() {
    let (ch, _) = channel_with("w-below-r", &[b"a", b"b"]);
    ch.write_u64(off::READ_CURSOR, 2);
    ch.write_u64(off::WRITE_CURSOR, 1);
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    let (got, end) = drain(&mut r, 200);
    assert!(got.is_empty());
    assert!(matches!(end, Some(Error::Corrupt { .. })), "{end:?}");
    assert_eq!(r.position(), 2);
    // A writer claims position 1, behind the reader, and finds it is not free there.
    let sent = channel.writer().try_send(b"c");
    assert!(matches!(sent, Err(Error::Abandoned { .. })), "{sent:?}");
}

#[test]
fn write_cursor_far_ahead_of_read_cursor_is_a_typed_error() {
    // One node more than the ring ahead of the reader, and far more.
    for ahead in [17u64, 18, 1 << 40, u64::MAX / 2, u64::MAX] {
        let (ch, _) = channel_with("w-far", &[]);
        ch.write_u64(off::WRITE_CURSOR, ahead);
        let channel = Channel::open(&ch.name).unwrap();
        let mut r = channel.reader().unwrap();
        let (got, end) = drain(&mut r, 200);
        assert!(got.is_empty());
        assert!(
            matches!(end, Some(Error::Corrupt { .. })),
            "{ahead}: {end:?}"
        );
        assert_eq!(r.position(), 0);
        let sent = channel.writer().try_send(b"c");
        assert!(
            matches!(sent, Err(Error::Full | Error::Corrupt { .. })),
            "{ahead}: {sent:?}"
        );
    }
}

#[test]
fn write_cursor_one_ring_ahead_is_skipped_after_the_timeout() {
    // Exactly one ring ahead is possible (every node claimed): the reader waits out the
    // timeout, then skips the unwritten nodes.
    let (ch, _) = channel_with("w-ring", &[b"a"]);
    ch.write_u64(off::WRITE_CURSOR, 16);
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    let (got, end) = drain(&mut r, 200);
    assert_eq!(got, [b"a".to_vec()]);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(r.position(), 16);
    assert_eq!(channel.stats().bad_nodes, 15);
}

#[test]
fn read_cursor_near_u64_max_is_a_typed_error() {
    // Found by the property test: a read cursor moved back past zero (here 27 below 2^64)
    // made the reader add past u64::MAX (a panic in debug builds, wrapped positions in
    // release builds). Cursors above 2^63 are refused.
    for read in [u64::MAX, u64::MAX - 26, (1 << 63) + 1] {
        for write in [read, read.wrapping_add(3), 0] {
            let (ch, _) = channel_with("r-max", &[b"a", &[7; 200]]);
            ch.write_u64(off::READ_CURSOR, read);
            ch.write_u64(off::WRITE_CURSOR, write);
            let channel = Channel::open(&ch.name).unwrap();
            let mut r = channel.reader().unwrap();
            let (got, end) = drain(&mut r, 200);
            assert!(got.is_empty());
            assert!(
                matches!(&end, Some(Error::Corrupt { reason, .. }) if reason.contains("read position")),
                "{read} {write}: {end:?}"
            );
            assert_eq!(r.position(), read);
        }
    }
}

#[test]
fn write_cursor_near_u64_max_is_a_typed_error_for_writers() {
    // A write cursor near 2^64 (with the read cursor next to it, so the ring is not
    // full) made a writer add past u64::MAX when the block needed padding (a panic in
    // debug builds; in release builds a block placed off the end of the ring).
    for w in [u64::MAX, u64::MAX - 1, u64::MAX - 15, (1 << 63) + 1] {
        let (ch, _) = channel_with("w-max", &[]);
        ch.write_u64(off::READ_CURSOR, w);
        ch.write_u64(off::WRITE_CURSOR, w);
        let channel = Channel::open(&ch.name).unwrap();
        let writer = channel.writer();
        for len in [0, 100, channel.max_message_len()] {
            let sent = writer.try_send(&vec![1; len]);
            assert!(
                matches!(&sent, Err(Error::Corrupt { reason, .. }) if reason.contains("write cursor")),
                "{w} {len}: {sent:?}"
            );
            assert!(matches!(writer.reserve(len), Err(Error::Corrupt { .. })));
        }
        // The cursor is left as it was.
        assert_eq!(ch.read_u64(off::WRITE_CURSOR), w);
    }
    // 2^63 itself is still a position.
    let (ch, _) = channel_with("w-2-63", &[]);
    ch.write_u64(off::READ_CURSOR, 1 << 63);
    ch.write_u64(off::WRITE_CURSOR, 1 << 63);
    let channel = Channel::open(&ch.name).unwrap();
    channel.writer().try_send(b"edge").unwrap();
    let mut r = channel.reader().unwrap();
    assert_eq!(r.try_recv_vec().unwrap(), b"edge");
}

/// Three messages: "zero" at position 0 (seq 0), 200 bytes at 1..=4 (seq 1), "two" at 5
/// (seq 2); the write cursor at 6.
fn three_messages(tag: &str) -> (TempChannel, Geometry, [Vec<u8>; 3]) {
    let msgs = [b"zero".to_vec(), payload(1, 200), b"two".to_vec()];
    let (ch, g) = channel_with(tag, &[&msgs[0], &msgs[1], &msgs[2]]);
    assert_eq!(ch.read_u64(off::WRITE_CURSOR), 6);
    (ch, g, msgs)
}

fn read_all(ch: &TempChannel) -> (Vec<Vec<u8>>, Option<Error>, u64, atbus::Stats) {
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    // 64 empty polls before a reader looks at the write cursor, a few more to wait.
    let (got, end) = drain(&mut r, 70);
    (got, end, r.position(), channel.stats())
}

#[test]
fn heads_with_every_flag_combination() {
    let (ch, g, msgs) = three_messages("flags");
    let image = ch.bytes();
    let original = ch.read_u64(head_off(&g, 0));
    let interior = ch.read_u64(head_off(&g, 2));
    for flags in 0..=255u8 {
        for tag in [0u64, 1, 16, TAG_MASK] {
            let word = head_word(flags, tag);
            // The first block's head: only the original word delivers "zero"; every other
            // word costs that block and nothing else.
            ch.write(0, &image);
            ch.write_u64(head_off(&g, 0), word);
            let (got, end, pos, _) = read_all(&ch);
            assert!(end.is_none(), "{flags:#x} {tag}: {end:?}");
            assert_eq!(pos, 6, "{flags:#x} {tag}");
            let want: &[Vec<u8>] = if word == original { &msgs } else { &msgs[1..] };
            assert_eq!(got, want, "{flags:#x} {tag}");

            // An interior node of the second block: its first word is payload, so any
            // other word fails that block's crc (and costs nothing else).
            ch.write(0, &image);
            ch.write_u64(head_off(&g, 2), word);
            let (got, end, pos, stats) = read_all(&ch);
            assert!(end.is_none(), "{flags:#x} {tag}: {end:?}");
            assert_eq!(pos, 6);
            if word == interior {
                assert_eq!(got, msgs, "{flags:#x} {tag}");
            } else {
                assert_eq!(got, [msgs[0].clone(), msgs[2].clone()], "{flags:#x} {tag}");
                assert_eq!(stats.crc_failures, 1, "{flags:#x} {tag}");
            }

            // The node at the write cursor: the reader never passes the cursor. (With tag
            // 0 and START|WRITTEN the zeroed block header there is a valid empty message,
            // but it is not claimed: not delivered.)
            ch.write(0, &image);
            ch.write_u64(head_off(&g, 6), word);
            let (got, end, pos, _) = read_all(&ch);
            assert!(end.is_none(), "{flags:#x} {tag}: {end:?}");
            assert_eq!(pos, 6, "{flags:#x} {tag}");
            assert_eq!(got, msgs, "{flags:#x} {tag}");
        }
    }
}

#[test]
fn written_head_past_the_write_cursor_does_not_move_the_reader() {
    // Found by the property test: a head forged to START|WRITTEN past the write cursor
    // failed its block check, and the reader skipped it, moving past the write cursor:
    // it then released a read cursor beyond the writers' (so writers claimed positions
    // the reader had passed) and reported the segment Corrupt.
    let (ch, g, msgs) = three_messages("written-past");
    // (Tag 6, the position of that node: the one tag that reads as a published head.)
    ch.write_u64(head_off(&g, 6), head_word(WRITTEN_BLOCK, 6));
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    let (got, end) = drain(&mut r, 200);
    assert_eq!(got, msgs);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(r.position(), 6);
    assert_eq!(ch.read_u64(off::READ_CURSOR), 6);
    assert_eq!(channel.stats().check_failures, 0);
    // A writer claims node 6, finds the forged head and gives up on that message; the
    // reader then skips the garbage after the timeout, and the next message goes through.
    let w = channel.writer();
    assert!(matches!(w.try_send(b"lost"), Err(Error::Abandoned { .. })));
    w.try_send(b"next").unwrap();
    let (got, end) = drain(&mut r, 200);
    assert_eq!(got, [b"next".to_vec()]);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(r.position(), 8);
}

#[test]
fn handover_head_past_the_write_cursor_does_not_move_the_reader() {
    // Heads that read "consumed by a reader that died before releasing" (free for the next
    // lap) past the write cursor: before the fix the reader skipped all of them and
    // released a read cursor ten nodes past the writers'.
    let (ch, g, msgs) = three_messages("handover-past");
    for i in 6..16 {
        ch.write_u64(head_off(&g, i), head_word(FLAG_FREE, i + 16));
    }
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    let (got, end) = drain(&mut r, 200);
    assert_eq!(got, msgs);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(r.position(), 6);
    assert_eq!(channel.stats().handover_nodes, 0);
    // Real handover nodes (below the write cursor) are still skipped at once.
    let (ch, g, msgs) = three_messages("handover-real");
    ch.write_u64(head_off(&g, 0), head_word(FLAG_FREE, 16));
    let (got, end, pos, stats) = read_all(&ch);
    assert_eq!(got, msgs[1..]);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(pos, 6);
    assert_eq!(stats.handover_nodes, 1);
}

#[test]
fn padding_flag_in_mid_ring_does_not_skip_past_the_write_cursor() {
    // A padding head on the first block (the ring's end is 16 nodes away, the write
    // cursor 6): not credible, so only that node is skipped, after the timeout.
    let (ch, g, msgs) = three_messages("padding-mid");
    ch.write_u64(head_off(&g, 0), head_word(FLAG_PADDING | FLAG_WRITTEN, 0));
    let (got, end, pos, stats) = read_all(&ch);
    assert_eq!(got, msgs[1..]);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(pos, 6);
    assert_eq!(stats.padding_blocks, 0);
    assert_eq!(stats.bad_nodes, 1);
    // The same on the node at the write cursor: nothing is skipped.
    let (ch, g, msgs) = three_messages("padding-at-w");
    ch.write_u64(head_off(&g, 6), head_word(FLAG_PADDING | FLAG_WRITTEN, 6));
    let (got, end, pos, _) = read_all(&ch);
    assert_eq!(got, msgs);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(pos, 6);
}

#[test]
fn aborted_flag_on_a_published_block_skips_exactly_that_block() {
    let (ch, g, msgs) = three_messages("aborted");
    ch.write_u64(head_off(&g, 1), head_word(FLAG_ABORTED | WRITTEN_BLOCK, 1));
    let (got, end, pos, stats) = read_all(&ch);
    assert_eq!(got, [msgs[0].clone(), msgs[2].clone()]);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(pos, 6);
    assert_eq!(stats.aborted_blocks, 1);
}

#[test]
fn block_header_len_u32_max_is_skipped_and_counted() {
    for len in [u32::MAX, 1 << 31, 16 * 64, 5 * 64 - 32 + 1] {
        let (ch, g, msgs) = three_messages("len");
        ch.write(node_off(&g, 1) + bh_off::LEN, &len.to_le_bytes());
        let (got, end, pos, stats) = read_all(&ch);
        // The block fails its check: its first node is dropped, and its other nodes,
        // never flagged, are skipped after the timeout.
        assert_eq!(got, [msgs[0].clone(), msgs[2].clone()], "{len}");
        assert!(end.is_none(), "{len}: {end:?}");
        assert_eq!(pos, 6);
        assert_eq!(stats.check_failures, 1, "{len}");
        assert_eq!(stats.bad_nodes, 4, "{len}");
    }
}

#[test]
fn block_header_len_too_long_but_in_range_fails_the_crc() {
    // A length that still fits (the block would cover the next message too): the crc
    // fails and the block's own nodes are skipped, up to the next published block: "two"
    // is delivered.
    let (ch, g, msgs) = three_messages("len-crc");
    ch.write(
        node_off(&g, 1) + bh_off::LEN,
        &(5 * 64 - 32u32).to_le_bytes(),
    );
    let (got, end, pos, stats) = read_all(&ch);
    assert_eq!(got, [msgs[0].clone(), msgs[2].clone()], "{stats:?}");
    assert!(end.is_none(), "{end:?}");
    assert_eq!(pos, 6);
    assert_eq!(stats.crc_failures, 1);
    assert_eq!(stats.bad_nodes, 4);
}

#[test]
fn block_header_seq_mismatch_is_skipped_and_counted() {
    for seq in [0u64, 2, 1 + (1 << 56) + 1, u64::MAX] {
        let (ch, g, msgs) = three_messages("seq");
        ch.write_u64(node_off(&g, 1) + bh_off::SEQ, seq);
        let (got, end, pos, stats) = read_all(&ch);
        assert_eq!(got, [msgs[0].clone(), msgs[2].clone()], "{seq}");
        assert!(end.is_none(), "{seq}: {end:?}");
        assert_eq!(pos, 6);
        assert_eq!(stats.check_failures, 1);
    }
    // The high byte of the sequence is not part of the tag: still delivered.
    let (ch, g, msgs) = three_messages("seq-high");
    ch.write_u64(node_off(&g, 1) + bh_off::SEQ, 1 | (0xAB << 56));
    let (got, _, _, _) = read_all(&ch);
    assert_eq!(got, msgs);
}

#[test]
fn dead_writer_pid_in_a_torn_block_is_skipped_at_once() {
    // A block claimed and not published (its head free at its position, its header
    // written) whose header names a process that does not exist: skipped at once (no
    // timeout), all its nodes, when dead-writer detection is on.
    let (ch, g, msgs) = three_messages("dead-pid");
    ch.write_u64(head_off(&g, 1), head_word(FLAG_FREE, 1));
    ch.write(node_off(&g, 1) + bh_off::PID, &dead_pid().to_le_bytes());
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    // A real clock and a 1 ms timeout: give it a few milliseconds, no more.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while r.position() < 6 && Instant::now() < deadline {
        match r.try_recv_vec() {
            Ok(m) => got.push(m),
            Err(Error::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(got, [msgs[0].clone(), msgs[2].clone()]);
    let stats = channel.stats();
    assert_eq!(stats.dead_writer_blocks + stats.timeout_blocks, 1);
    assert_eq!(stats.bad_nodes, 4);
}

#[test]
fn reader_record_naming_pid_1_is_busy() {
    let Some(word) = owner_word(1) else {
        return; // no /proc/1 in this sandbox
    };
    let (ch, _, _) = three_messages("pid1");
    ch.write_u64(off::READER_OWNER, word);
    let channel = Channel::open(&ch.name).unwrap();
    assert!(matches!(
        channel.reader(),
        Err(Error::ReaderBusy { pid: 1 })
    ));
    // The record is left alone.
    assert_eq!(ch.read_u64(off::READER_OWNER), word);
    // Pid 1 with another start time is another (dead) process: taken over.
    ch.write_u64(off::READER_OWNER, word ^ (1 << 40));
    let r = channel.reader().unwrap();
    assert_eq!(ch.read_u64(off::READER_TAKEOVERS), 1);
    drop(r);
    assert_eq!(ch.read_u64(off::READER_OWNER), 0);
}

#[test]
fn reader_record_naming_a_dead_pid_is_taken_over() {
    for word in [
        u64::from(dead_pid()),
        u64::from(dead_pid()) | (12345 << 32),
        u64::MAX,
        u64::from(u32::MAX),
    ] {
        let (ch, _, msgs) = three_messages("dead-reader");
        ch.write_u64(off::READER_OWNER, word);
        let channel = Channel::open(&ch.name).unwrap();
        let mut r = channel.reader().unwrap();
        assert_eq!(ch.read_u64(off::READER_TAKEOVERS), 1, "{word:#x}");
        let (got, end) = drain(&mut r, 200);
        assert_eq!(got, msgs);
        assert!(end.is_none());
        // A second reader in this (live) process is refused.
        assert!(matches!(channel.reader(), Err(Error::ReaderBusy { .. })));
        drop(r);
        assert_eq!(ch.read_u64(off::READER_OWNER), 0);
    }
    // Our own record (a reader of this process that was leaked): busy, not taken.
    let (ch, _, _) = three_messages("own-reader");
    let me = owner_word(std::process::id()).unwrap();
    ch.write_u64(off::READER_OWNER, me);
    let channel = Channel::open(&ch.name).unwrap();
    assert!(matches!(channel.reader(), Err(Error::ReaderBusy { .. })));
}

#[test]
fn inspector_survives_absurd_arguments() {
    let (ch, g, _) = three_messages("inspect");
    // Garbage everywhere a tool would look.
    ch.write(node_off(&g, 0) + bh_off::LEN, &u32::MAX.to_le_bytes());
    ch.write_u64(head_off(&g, 3), u64::MAX);
    ch.write_u64(off::WRITE_CURSOR, u64::MAX);
    ch.write_u64(off::READER_OWNER, u64::MAX);
    let view = Inspector::open(&ch.name).unwrap();
    inspect_everything(&view);
    assert_eq!(view.payload(0, usize::MAX), None);
    assert_eq!(view.payload(15, usize::MAX - 31), None);
    assert_eq!(view.payload(u64::MAX, 1), None);
    assert_eq!(view.payload(15, 64 - 32), Some(vec![0; 32]));
    assert_eq!(view.payload(15, 64 - 31), None);
    assert!(view.nodes_for(usize::MAX) > 16);
    assert_eq!(view.node_bytes(0, usize::MAX).len(), 16 * 64);
    let c = view.cursors();
    assert_eq!(c.used_nodes, 16);
    assert_eq!(c.free_nodes, 0);
}

const WRITTEN_BLOCK: u8 = FLAG_START | FLAG_WRITTEN;

#[test]
fn shared_memory_segment_corrupted_through_dev_shm() {
    // The same checks for a POSIX shared-memory name, whose bytes are /dev/shm/NAME.
    let name = format!("/atbus-hostile-shm-{}", std::process::id());
    let path = PathBuf::from(format!("/dev/shm{name}"));
    let _ = Channel::unlink(&name);
    let channel = Channel::create(&name, 1 << 16, &quick_config()).unwrap();
    channel.writer().try_send(b"shm").unwrap();
    drop(channel);
    let ch = TempChannel {
        path,
        name: name.clone(),
    };
    ch.write_u64(off::WRITE_CURSOR, u64::MAX);
    let channel = Channel::open(&name).unwrap();
    let mut r = channel.reader().unwrap();
    let (got, end) = drain(&mut r, 200);
    assert_eq!(got, [b"shm".to_vec()]);
    assert!(matches!(end, Some(Error::Corrupt { .. })), "{end:?}");
    drop(r);
    ch.write_u64(off::NODE_COUNT, 1);
    assert_open_fails(&ch, |e| matches!(e, Error::Corrupt { .. }));
    // TempChannel's drop removes /dev/shm/NAME, which is the shm_unlink of the name.
}

// ---------------------------------------------------------------------------------------
// Arithmetic on hostile counters, and timeouts too long for the clock: never a panic
// (the tests build with overflow checks, as `cargo test` does by default).

/// Offsets of the counters `Stats::in_flight` adds up.
mod counter_off {
    use atbus::layout::{Header, Padded, ReaderCounters, WriterCounters, WRITER_SLOTS};
    use std::mem::{offset_of, size_of};
    pub fn messages_sent(slot: usize) -> u64 {
        assert!(slot < WRITER_SLOTS);
        (offset_of!(Header, writer_slots)
            + slot * size_of::<Padded<WriterCounters>>()
            + offset_of!(WriterCounters, messages_sent)) as u64
    }
    pub fn messages_received() -> u64 {
        (offset_of!(Header, reader_counters) + offset_of!(ReaderCounters, messages_received)) as u64
    }
    pub fn bad_blocks() -> u64 {
        (offset_of!(Header, reader_counters) + offset_of!(ReaderCounters, bad_blocks)) as u64
    }
    pub const SLOTS: usize = WRITER_SLOTS;
}

#[test]
fn hostile_counters_and_cursors_make_stats_saturate_not_panic() {
    let (ch, _, msgs) = three_messages("counters");
    let cases: [(u64, u64, u64, u64); 6] = [
        // (messages_sent in every slot, received, bad_blocks, expected in_flight)
        (0, u64::MAX, 1, 0),
        (0, 1, u64::MAX, 0),
        (0, u64::MAX, u64::MAX, 0),
        (
            u64::MAX,
            0,
            0,
            u64::MAX.wrapping_mul(counter_off::SLOTS as u64),
        ),
        (u64::MAX / 2, u64::MAX, u64::MAX, 0),
        (5, 3, 4, (5 * counter_off::SLOTS as u64) - 7),
    ];
    for (sent, received, bad, in_flight) in cases {
        for slot in 0..counter_off::SLOTS {
            ch.write_u64(counter_off::messages_sent(slot), sent);
        }
        ch.write_u64(counter_off::messages_received(), received);
        ch.write_u64(counter_off::bad_blocks(), bad);
        for (read, write) in [(u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX - 1)] {
            ch.write_u64(off::READ_CURSOR, read);
            ch.write_u64(off::WRITE_CURSOR, write);
            let channel = Channel::open(&ch.name).unwrap();
            let stats = channel.stats();
            assert_eq!((stats.messages_received, stats.bad_blocks), (received, bad));
            assert_eq!(
                stats.in_flight(),
                in_flight,
                "sent {sent} x {} received {received} bad {bad}",
                counter_off::SLOTS
            );
            let view = Inspector::open(&ch.name).unwrap();
            assert_eq!(view.stats(), stats);
            inspect_everything(&view);
        }
    }
    // Put right again, the channel delivers what it holds.
    for slot in 0..counter_off::SLOTS {
        ch.write_u64(counter_off::messages_sent(slot), 0);
    }
    ch.write_u64(off::READ_CURSOR, 0);
    ch.write_u64(off::WRITE_CURSOR, 6);
    let (got, _, _, _) = read_all(&ch);
    assert_eq!(got, msgs);
}

#[test]
fn duration_max_timeouts_wait_forever_instead_of_panicking() {
    let (ch, _, msgs) = three_messages("duration-max");
    let channel = Channel::open(&ch.name).unwrap();
    let mut r = channel.reader().unwrap();
    let mut buf = vec![0u8; 4096];
    // A message is waiting: returned at once.
    let n = r.recv_timeout(&mut buf, Duration::MAX).unwrap();
    assert_eq!(&buf[..n], &msgs[0][..]);
    // Room in the ring: sent at once.
    let w = channel.writer();
    w.send_timeout(b"forever", Duration::MAX).unwrap();
    // Just below where adding to the clock overflows, too.
    let huge = Duration::from_secs(u64::MAX / 2);
    w.send_timeout(b"huge", huge).unwrap();
    for expect in [&msgs[1][..], &msgs[2][..], b"forever", b"huge"] {
        let n = r.recv_timeout(&mut buf, huge).unwrap();
        assert_eq!(&buf[..n], expect);
    }
    // recv_timeout(Duration::MAX) really waits: a writer thread sends after we block.
    let writer = channel.writer();
    let started = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            started.wait();
            writer.send(b"late").unwrap();
        });
        started.wait();
        let n = r.recv_timeout(&mut buf, Duration::MAX).unwrap();
        assert_eq!(&buf[..n], b"late");
    });
}

#[test]
fn an_overwritten_head_where_a_block_starts_is_counted_as_a_failed_block() {
    // A writer stalled past the timeout copies on into nodes since reused and lands
    // payload bytes on the first word of another writer's block: that block is lost,
    // skipped after the timeout, and counted as a block that failed its checks.
    for word in [
        0u64,
        0x7878_7878_7878_7878,
        head_word(FLAG_START, 1),
        u64::MAX,
    ] {
        let (ch, g, msgs) = three_messages("overwritten-head");
        ch.write_u64(head_off(&g, 1), word);
        let (got, end, pos, stats) = read_all(&ch);
        assert!(end.is_none(), "{word:#x}: {end:?}");
        assert_eq!(pos, 6);
        assert_eq!(got, [msgs[0].clone(), msgs[2].clone()], "{word:#x}");
        assert_eq!(
            (stats.check_failures, stats.bad_blocks, stats.timeout_blocks),
            (1, 1, 0),
            "{word:#x}: {stats:?}"
        );
        assert_eq!(stats.bad_nodes, 4, "{word:#x}");
    }
}
