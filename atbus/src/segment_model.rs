//! The segment under the model checker (`--cfg loom`): the same views as `segment.rs`
//! (header, node heads, block headers, payload bytes), kept on the heap because loom's
//! atomics cannot live in a mapping. The ring code in `ring.rs` runs unchanged on it.
//!
//! Payload bytes live in one `loom::cell::UnsafeCell` per node when `track_data` is set,
//! so loom reports any read of a payload that is not ordered after the writer's write (a
//! missing release/acquire pair). Scenarios in which a writer is skipped as stalled and
//! wakes to write into reused nodes race on payload bytes by design (the crc catches
//! it); they use untracked bytes.

use std::time::Duration;

use loom::cell::UnsafeCell;

use crate::layout::{BlockHeader, Geometry, Header, NodeState, BLOCK_HEADER_SIZE};
use crate::sync::atomic::{AtomicU64, Ordering};

/// The settings of a model ring.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub timeout: Duration,
    pub write_retries: u32,
    pub protect_nodes: u64,
    pub detect_dead_writers: bool,
    pub checksums: bool,
}

/// A model segment.
pub struct Segment {
    geo: Geometry,
    settings: Settings,
    header: Box<Header>,
    heads: Box<[AtomicU64]>,
    block_headers: Box<[BlockHeader]>,
    /// One cell per node, `node_size` bytes each (the first 32 bytes of a block's first
    /// node stay unused: its header lives in `block_headers`).
    tracked: Box<[UnsafeCell<Box<[u8]>>]>,
    untracked: std::cell::UnsafeCell<Box<[u8]>>,
    track_data: bool,
}

// SAFETY: loom explores the interleavings; payload bytes are accessed through loom's
// UnsafeCell (checked) or, untracked, only as the ring protocol allows.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A fresh ring of `node_count` nodes of `node_size` bytes.
    pub fn new_model(
        node_size: usize,
        node_count: u64,
        settings: Settings,
        track_data: bool,
    ) -> Segment {
        let geo = Geometry::with_count(node_size, node_count).expect("geometry");
        let n = node_count as usize;
        Segment {
            geo,
            settings,
            header: Box::new(Header::new_model()),
            heads: (0..n)
                .map(|i| AtomicU64::new(NodeState::free(i as u64).0))
                .collect(),
            block_headers: (0..n).map(|_| BlockHeader::new_model()).collect(),
            tracked: (0..n)
                .map(|_| UnsafeCell::new(vec![0u8; node_size].into_boxed_slice()))
                .collect(),
            untracked: std::cell::UnsafeCell::new(vec![0u8; n * node_size].into_boxed_slice()),
            track_data,
        }
    }

    pub fn name(&self) -> &str {
        "model"
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn heads(&self) -> &[AtomicU64] {
        &self.heads
    }

    pub fn head(&self, index: u64) -> &AtomicU64 {
        &self.heads[index as usize]
    }

    /// No cache to warm in the model.
    pub fn prefetch_nodes(&self, _index: u64, _nodes: u64) {}

    /// crc32 (IEEE) of `data`.
    pub fn crc32(&self, data: &[u8]) -> u32 {
        crc32fast::hash(data)
    }

    pub fn block_header(&self, index: u64) -> &BlockHeader {
        &self.block_headers[index as usize]
    }

    pub fn block_in_bounds(&self, index: u64, nodes: u64) -> bool {
        index < self.geo.node_count && nodes <= self.geo.node_count - index
    }

    /// Not used by the model's code paths (reservations and in-place reads are not
    /// modelled); present so `ring.rs` compiles unchanged.
    pub fn node_ptr(&self, index: u64) -> *mut u8 {
        assert!(index < self.geo.node_count);
        // SAFETY: index < node_count, so the offset is inside the untracked buffer.
        unsafe {
            (*self.untracked.get())
                .as_mut_ptr()
                .add(index as usize * self.geo.node_size)
        }
    }

    /// `write_payload`, returning the crc32 of `data` continued from `crc`.
    pub fn write_payload_crc(&self, index: u64, offset: usize, data: &[u8], crc: u32) -> u32 {
        self.write_payload(index, offset, data);
        let mut h = crc32fast::Hasher::new_with_initial(crc);
        h.update(data);
        h.finalize()
    }

    /// `read_payload`, returning the crc32 of the bytes copied.
    pub fn read_payload_crc(&self, index: u64, buf: &mut [u8]) -> u32 {
        self.read_payload(index, buf);
        crc32fast::hash(buf)
    }

    pub fn write_payload(&self, index: u64, offset: usize, data: &[u8]) {
        self.each_piece(index, offset, data.len(), |cell, at, range| {
            if self.track_data {
                cell.with_mut(|node| {
                    // SAFETY: loom checks this access against every other access of the cell.
                    unsafe { (&mut *node)[at..at + range.len()].copy_from_slice(&data[range]) }
                });
            } else {
                let base = self.piece_ptr(index, offset + range.start);
                // SAFETY: piece_ptr is in bounds for range.len() bytes (each_piece checked).
                unsafe {
                    std::ptr::copy_nonoverlapping(data[range.clone()].as_ptr(), base, range.len())
                };
            }
        });
    }

    pub fn read_payload(&self, index: u64, buf: &mut [u8]) {
        let len = buf.len();
        self.each_piece(index, 0, len, |cell, at, range| {
            if self.track_data {
                cell.with(|node| {
                    // SAFETY: loom checks this access against every other access of the cell.
                    buf[range.clone()].copy_from_slice(unsafe { &(&*node)[at..at + range.len()] })
                });
            } else {
                let base = self.piece_ptr(index, range.start);
                // SAFETY: as in write_payload.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        base,
                        buf[range.clone()].as_mut_ptr(),
                        range.len(),
                    )
                };
            }
        });
    }

    fn piece_ptr(&self, index: u64, payload_offset: usize) -> *mut u8 {
        self.node_ptr(index)
            .wrapping_add(BLOCK_HEADER_SIZE + payload_offset)
    }

    /// Splits payload bytes `offset..offset + len` of the block at `index` by node and
    /// calls `f(node cell, offset in node, range of the caller's bytes)` for each piece.
    fn each_piece(
        &self,
        index: u64,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&UnsafeCell<Box<[u8]>>, usize, std::ops::Range<usize>),
    ) {
        let ns = self.geo.node_size;
        let start = index as usize * ns + BLOCK_HEADER_SIZE + offset;
        assert!(
            start + len <= self.geo.node_count as usize * ns,
            "payload out of the ring"
        );
        let mut done = 0;
        while done < len {
            let abs = start + done;
            let (node, at) = (abs / ns, abs % ns);
            let n = (ns - at).min(len - done);
            f(&self.tracked[node], at, done..done + n);
            done += n;
        }
    }

    /// Loads a cursor, for model assertions.
    pub fn cursors(&self) -> (u64, u64) {
        let h = self.header();
        (
            h.read_cursor.load(Ordering::SeqCst),
            h.write_cursor.load(Ordering::SeqCst),
        )
    }
}
