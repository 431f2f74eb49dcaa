//! A read-only view of a channel for tools (atbus-dump): header, cursors, reader owner,
//! counters, node heads and raw data, taken without the reader role.
//!
//! The segment is mapped `PROT_READ`, so nothing done through an [`Inspector`] can write
//! to it. Writers and the reader may run at full speed meanwhile: each value is read
//! atomically, but a set of values is not one consistent snapshot.

use std::time::Duration;

use crate::error::Result;
use crate::layout::{
    self, BlockProblem, Head, NodeState, BLOCK_HEADER_SIZE, FLAG_ABORTED, FLAG_FREE, FLAG_PADDING,
    FLAG_START, FLAG_WRITTEN,
};
use crate::process;
use crate::reader::split_owner;
use crate::ring;
use crate::segment::{ObjectMeta, Segment};
use crate::stats::Stats;
use crate::sync::atomic::Ordering;
use crate::view::SegmentView;

/// A read-only view of a channel.
///
/// ```
/// # let name = format!("/atbus-doc-inspect-{}", std::process::id());
/// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
/// channel.writer().send(b"hi")?;
/// let view = atbus::Inspector::open(&name)?;
/// let cursors = view.cursors();
/// assert_eq!(cursors.write - cursors.read, 1);
/// let node = view.node(0).unwrap();
/// assert!(node.start && node.written);
/// assert_eq!(view.block_header(0).unwrap().len, 2);
/// # atbus::Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
pub struct Inspector {
    seg: Segment,
    /// The open object, for `fstat` (its current size, owner and mode).
    file: std::fs::File,
    /// What `fstat` said at open.
    meta: ObjectMeta,
}

/// Static facts about a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Channel name.
    pub name: String,
    /// Layout version.
    pub version: u32,
    /// Bytes of the object.
    pub size: u64,
    /// Bytes per node.
    pub node_size: usize,
    /// Nodes in the ring.
    pub node_count: u64,
    /// Offset of the data area.
    pub data_offset: usize,
    /// Largest message accepted.
    pub max_message_len: usize,
    /// Torn-block timeout.
    pub timeout: Duration,
    /// Failed claim CASes before a writer yields.
    pub write_retries: u32,
    /// Nodes writers always leave free.
    pub protect_nodes: u64,
    /// Whether blocks of dead writers are skipped at once.
    pub detect_dead_writers: bool,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Random id given at creation: with a block's sequence, it names a message uniquely.
    pub channel_id: u64,
    /// The size the header declares (`total_size`): the object's size at creation.
    pub declared_size: u64,
    /// The object's size now (`fstat`). Smaller than `declared_size` means someone
    /// shrank it: every process touching the lost pages gets SIGBUS.
    pub file_size: u64,
    /// The object's owner uid.
    pub owner_uid: u32,
    /// The owner's user name, when the user database knows it.
    pub owner_name: Option<String>,
    /// The object's permission bits.
    pub mode: u32,
}

/// The cursors, read one after the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursors {
    /// Released read position.
    pub read: u64,
    /// Next position to claim.
    pub write: u64,
    /// Nodes between the cursors (saturating; the cursors may be read mid-update).
    pub used_nodes: u64,
    /// Nodes writers may still claim.
    pub free_nodes: u64,
}

/// The process holding the reader role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderOwner {
    /// Its pid.
    pub pid: u32,
    /// Low 32 bits of its start time (clock ticks after boot).
    pub start_time: u32,
    /// Whether that very process still exists.
    pub alive: bool,
}

/// One node head, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Node index.
    pub index: u64,
    /// The raw head word.
    pub raw: u64,
    /// START flag.
    pub start: bool,
    /// WRITTEN flag.
    pub written: bool,
    /// PADDING flag.
    pub padding: bool,
    /// ABORTED flag.
    pub aborted: bool,
    /// FREE flag: the node is free, and `tag` is the position it may next be claimed at.
    pub free: bool,
    /// The position (56 bits) the word names: a block's position (its sequence), or
    /// the position a free node may next be claimed at.
    pub tag: u64,
}

/// A block header as found in the data area (untrusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeaderView {
    /// Payload length.
    pub len: u32,
    /// crc32c of the payload.
    pub crc: u32,
    /// Sequence: the block's position.
    pub seq: u64,
    /// Writer process id.
    pub writer_pid: u32,
}

/// A writer process as the reader judges it: [`Inspector::writer_process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterProcess {
    /// False only when the process is known to be gone (or a zombie).
    pub alive: bool,
    /// Its state letter from `/proc/PID/stat`, where readable.
    pub state: Option<char>,
}

impl Inspector {
    /// Maps channel `name` read-only and validates it like `Channel::open`.
    pub fn open(name: &str) -> Result<Inspector> {
        let (seg, file, meta) = Segment::open_read_only(name)?;
        Ok(Inspector { seg, file, meta })
    }

    /// The object's size now, by `fstat` on the open descriptor. Compare it with
    /// [`SegmentInfo::declared_size`]: a smaller object was shrunk under its mappings.
    pub fn file_size(&self) -> Result<u64> {
        Ok(ObjectMeta::of(&self.file, self.seg.name())?.size)
    }

    /// Static facts.
    pub fn info(&self) -> SegmentInfo {
        let g = self.seg.geometry();
        let s = self.seg.settings();
        let h = self.seg.header();
        // Fresh: the owner and mode may have changed since open (fstat on an open
        // descriptor does not fail in practice; fall back to what it said at open).
        let meta = ObjectMeta::of(&self.file, self.seg.name()).unwrap_or(self.meta.clone());
        SegmentInfo {
            name: self.seg.name().into(),
            version: h.version.load(Ordering::Relaxed),
            size: self.seg.mapped_len() as u64,
            node_size: g.node_size,
            node_count: g.node_count,
            data_offset: g.data_offset,
            max_message_len: ring::max_payload(&self.seg),
            timeout: s.timeout,
            write_retries: s.write_retries,
            protect_nodes: s.protect_nodes,
            detect_dead_writers: s.detect_dead_writers,
            created_unix_ns: h.created_unix_ns.load(Ordering::Relaxed),
            channel_id: h.channel_id.load(Ordering::Relaxed),
            declared_size: h.total_size.load(Ordering::Relaxed),
            file_size: meta.size,
            owner_uid: meta.uid,
            owner_name: crate::segment::user_name(meta.uid),
            mode: meta.mode,
        }
    }

    /// Whether writers compute, and the reader checks, payload crc32s (the channel was
    /// not created with `checksums: false`). Without them a block header's crc is 0.
    pub fn checksums(&self) -> bool {
        self.seg.settings().checksums
    }

    /// Every counter.
    pub fn stats(&self) -> Stats {
        Stats::read(self.seg.header())
    }

    /// The cursors.
    pub fn cursors(&self) -> Cursors {
        let h = self.seg.header();
        let read = h.read_cursor.load(Ordering::Relaxed);
        let write = h.write_cursor.load(Ordering::Relaxed);
        let count = self.seg.geometry().node_count;
        let used = write.saturating_sub(read).min(count);
        let capacity = count - 1 - self.seg.settings().protect_nodes;
        Cursors {
            read,
            write,
            used_nodes: used,
            free_nodes: capacity.saturating_sub(used),
        }
    }

    /// The reader-role holder, if any.
    pub fn reader_owner(&self) -> Option<ReaderOwner> {
        let word = self.seg.header().reader.owner.load(Ordering::Relaxed);
        if word == 0 {
            return None;
        }
        let (pid, start_time) = split_owner(word);
        Some(ReaderOwner {
            pid,
            start_time,
            alive: process::is_same_alive(pid, start_time),
        })
    }

    /// True while a blocking reader is asleep on the channel's futex (or about to be).
    pub fn reader_sleeping(&self) -> bool {
        self.seg.header().wake.sleeping.load(Ordering::Relaxed) != 0
    }

    /// Node `index`'s head, or `None` past the end of the ring.
    pub fn node(&self, index: u64) -> Option<NodeView> {
        if index >= self.seg.geometry().node_count {
            return None;
        }
        let state = NodeState(self.seg.head(index).load(Ordering::Acquire));
        let flags = state.flags();
        Some(NodeView {
            index,
            raw: state.0,
            start: flags & FLAG_START != 0,
            written: flags & FLAG_WRITTEN != 0,
            padding: flags & FLAG_PADDING != 0,
            aborted: flags & FLAG_ABORTED != 0,
            free: flags & FLAG_FREE != 0,
            tag: state.tag(),
        })
    }

    /// What node `index`'s first word says about position `pos` (which must be one the
    /// node holds: `pos % node_count == index`), read as the reader reads it
    /// ([`layout::classify`]); `None` past the end of the ring or for a position of
    /// another node.
    pub fn classify(&self, index: u64, pos: u64) -> Option<Head> {
        let g = self.seg.geometry();
        if index >= g.node_count || g.index(pos) != index {
            return None;
        }
        let word = self.seg.head(index).load(Ordering::Acquire);
        Some(layout::classify(word, pos, g.node_count))
    }

    /// Checks the block header at node `index` for a block at position `pos` as the
    /// reader does ([`layout::check_block`]): `Ok(nodes)` or the problem. `None` past the
    /// end of the ring or for a position of another node.
    pub fn check_block(&self, index: u64, pos: u64) -> Option<Result<u64, BlockProblem>> {
        let g = self.seg.geometry();
        if index >= g.node_count || g.index(pos) != index {
            return None;
        }
        let bh = self.seg.block_header(index);
        let seq = bh.seq.load(Ordering::Acquire);
        let len = bh.len.load(Ordering::Relaxed) as usize;
        let max = ring::max_payload(&self.seg);
        Some(layout::check_block(g, max, pos, index, seq, len))
    }

    /// The block header at the start of node `index` (meaningful on a START node).
    pub fn block_header(&self, index: u64) -> Option<BlockHeaderView> {
        if index >= self.seg.geometry().node_count {
            return None;
        }
        let bh = self.seg.block_header(index);
        Some(BlockHeaderView {
            len: bh.len.load(Ordering::Relaxed),
            crc: bh.crc.load(Ordering::Relaxed),
            seq: bh.seq.load(Ordering::Acquire),
            writer_pid: bh.writer_pid.load(Ordering::Relaxed),
        })
    }

    /// Up to `len` raw bytes of the data area from the start of node `index`, clipped
    /// to the end of the ring.
    pub fn node_bytes(&self, index: u64, len: usize) -> Vec<u8> {
        let g = self.seg.geometry();
        if index >= g.node_count {
            return Vec::new();
        }
        let avail = (g.node_count - index) as usize * g.node_size;
        let len = len.min(avail);
        let mut out = vec![0u8; len];
        // SAFETY: node_ptr(index) is in the data area and `len` is clipped to the bytes
        // left before its end; `out` is ours. Writers may change the bytes as we copy:
        // the result is a possibly inconsistent snapshot, as documented.
        unsafe { crate::copy::copy_bytes(self.seg.node_ptr(index), out.as_mut_ptr(), len) };
        out
    }

    /// Payload bytes of the block starting at node `index`, if `len` fits in the ring.
    pub fn payload(&self, index: u64, len: usize) -> Option<Vec<u8>> {
        let g = self.seg.geometry();
        let nodes = g.nodes_for(len);
        if !self.seg.block_in_bounds(index, nodes) {
            return None;
        }
        let bytes = self.node_bytes(index, BLOCK_HEADER_SIZE + len);
        Some(bytes[BLOCK_HEADER_SIZE..].to_vec())
    }

    /// The crc32c a writer stores in the header of a block at position `pos` with this
    /// payload: the payload's crc32c sealed with the position (compare it with
    /// [`BlockHeaderView::crc`] to check a block as the reader does).
    pub fn sealed_crc(&self, payload: &[u8], pos: u64) -> u32 {
        layout::sealed_crc(self.seg.crc32(payload), pos)
    }

    /// The 64-bit word a head at position `pos` holds in state `head` (`Free`,
    /// `Published`, `Aborted`, `Padding` or `Consumed`; `None` for `Other`), to show an
    /// operator what a word should read.
    pub fn head_word(&self, head: Head, pos: u64) -> Option<u64> {
        let n = self.seg.geometry().node_count;
        let block = |flags| Some(NodeState::block(flags, pos).0);
        match head {
            Head::Free => Some(NodeState::free(pos).0),
            Head::Published => block(FLAG_START | FLAG_WRITTEN),
            Head::Aborted => block(FLAG_START | FLAG_WRITTEN | FLAG_ABORTED),
            Head::Padding => block(FLAG_PADDING | FLAG_WRITTEN),
            Head::Consumed => Some(NodeState::free(pos.wrapping_add(n)).0),
            Head::Other => None,
        }
    }

    /// What the reader would judge of writer process `pid` (named in a block header):
    /// whether it exists (a process of another user, or one `/proc` hides, counts as
    /// existing), and its state letter from `/proc/PID/stat` where readable (`R`
    /// running, `S` sleeping, `T` stopped, `Z` zombie, ...).
    pub fn writer_process(&self, pid: u32) -> WriterProcess {
        WriterProcess {
            alive: process::is_alive(pid),
            state: process::stat(pid).map(|s| s.state as char),
        }
    }

    /// Nodes a block of `len` payload bytes occupies in this channel.
    pub fn nodes_for(&self, len: usize) -> u64 {
        self.seg.geometry().nodes_for(len)
    }
}
