//! The memory the ring protocol runs on, as one contract: `ring.rs` reads and writes a
//! segment only through [`SegmentView`]. Two types implement it: the mapped segment
//! (`segment.rs`) in the product, and the model segment on the heap (`segment_model.rs`)
//! under loom. The compiler keeps the two alike, not a reader's eye.

use std::time::Duration;

use crate::layout::{BlockHeader, Geometry, Header};
use crate::sync::atomic::AtomicU64;

/// The settings a segment was created with, read from its header once at open.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Torn-block timeout.
    pub timeout: Duration,
    /// Failed claim CASes before a writer yields the CPU.
    pub write_retries: u32,
    /// Nodes writers always leave free.
    pub protect_nodes: u64,
    /// Skip blocks of dead writers at once.
    pub detect_dead_writers: bool,
    /// Writers compute, and the reader checks, payload crc32s.
    pub checksums: bool,
}

/// Typed views of a segment: header, node heads, block headers and payload bytes.
/// Every index is a node index (`< node_count`); methods that take one panic otherwise,
/// and payload methods panic on a range past the end of the ring (callers check bounds
/// first: a panic here is a bug, never a hostile value).
pub(crate) trait SegmentView {
    /// The channel name.
    fn name(&self) -> &str;
    /// The validated sizes.
    fn geometry(&self) -> &Geometry;
    /// The settings read at open.
    fn settings(&self) -> &Settings;
    /// The header.
    fn header(&self) -> &Header;
    /// The head of node `index`: its first word.
    fn head(&self, index: u64) -> &AtomicU64;
    /// The 32 bytes at the start of node `index` (head and, on a block's first node, the
    /// block header).
    fn block_header(&self, index: u64) -> &BlockHeader;
    /// Whether a block of `nodes` nodes starting at node `index` ends inside the ring.
    fn block_in_bounds(&self, index: u64, nodes: u64) -> bool;
    /// Pointer to the first byte of node `index`.
    fn node_ptr(&self, index: u64) -> *mut u8;
    /// A hint to load nodes `index..index + nodes` into the cache.
    fn prefetch_nodes(&self, index: u64, nodes: u64);
    /// A hint to load nodes `index..index + nodes` into the cache for writing.
    fn prefetch_nodes_for_write(&self, index: u64, nodes: u64);
    /// crc32c of `data`.
    fn crc32(&self, data: &[u8]) -> u32;
    /// Copies `data` into the payload of the block at `index`, `offset` bytes in.
    fn write_payload(&self, index: u64, offset: usize, data: &[u8]);
    /// `write_payload`, returning the crc32c of `data` continued from `crc`.
    fn write_payload_crc(&self, index: u64, offset: usize, data: &[u8], crc: u32) -> u32;
    /// Copies the first `buf.len()` payload bytes of the block at `index` into `buf`.
    fn read_payload(&self, index: u64, buf: &mut [u8]);
    /// `read_payload`, returning the crc32c of the bytes it stored in `buf`.
    fn read_payload_crc(&self, index: u64, buf: &mut [u8]) -> u32;
}
