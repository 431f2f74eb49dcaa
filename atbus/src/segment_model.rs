//! The segment under the model checker (`--cfg loom`): the same views as `segment.rs`
//! (header, node heads, block headers, payload bytes), kept on the heap because loom's
//! atomics cannot live in a mapping. The ring code in `ring.rs` runs unchanged on it.
//!
//! The first 32 bytes of every node are a [`BlockHeader`] of loom atomics (the head and
//! the block header); inside a block they are payload, as in the product, so payload
//! bytes that fall there are read and written through those atomics: a stalled writer's
//! late payload can overwrite a head, as it can in shared memory. The rest of each
//! node's payload lives in one `loom::cell::UnsafeCell` per node when `track_data` is
//! set, so loom reports any read of a payload that is not ordered after the writer's
//! write (a missing release/acquire pair). Scenarios in which a writer is skipped as
//! stalled and wakes to write into reused nodes race on payload bytes by design (the crc
//! catches it); they use untracked bytes.

use std::time::Duration;

use loom::cell::UnsafeCell;

use crate::layout::{BlockHeader, Geometry, Header, NodeState, BLOCK_HEADER_SIZE};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;
pub use crate::view::Settings;

/// A model segment.
pub struct Segment {
    geo: Geometry,
    settings: Settings,
    header: Box<Header>,
    /// The first 32 bytes of each node.
    block_headers: Box<[BlockHeader]>,
    /// One cell per node, `node_size` bytes each (the first 32 bytes stay unused: they
    /// live in `block_headers`).
    tracked: Box<[UnsafeCell<Box<[u8]>>]>,
    untracked: std::cell::UnsafeCell<Box<[u8]>>,
    track_data: bool,
    /// The doorbell FIFO at the channel's path (the newest reader's), and the one
    /// writers keep open with the epoch it was opened for, as `doorbell::BellCache` does.
    bell_at_path: loom::sync::Mutex<Option<std::sync::Arc<ModelFifo>>>,
    bell_kept: loom::sync::Mutex<Option<(u32, std::sync::Arc<ModelFifo>)>>,
}

/// A doorbell FIFO in the model: a byte count a reader can wait on.
#[derive(Default)]
pub struct ModelFifo {
    bytes: loom::sync::Mutex<u32>,
    readable: loom::sync::Condvar,
}

impl ModelFifo {
    /// One byte in (a writer rings).
    fn ring(&self) {
        *self.bytes.lock().unwrap() += 1;
        self.readable.notify_all();
    }

    /// Waits until the FIFO holds a byte, then drains it (the reader's poll and drain),
    /// with no timeout: a wake-up that never comes is a deadlock in the model.
    pub fn wait_and_drain(&self) {
        let mut bytes = self.bytes.lock().unwrap();
        while *bytes == 0 {
            bytes = self.readable.wait(bytes).unwrap();
        }
        *bytes = 0;
    }
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
            block_headers: (0..n)
                .map(|i| {
                    let bh = BlockHeader::new_model();
                    bh.head
                        .store(NodeState::free(i as u64).0, Ordering::Relaxed);
                    bh
                })
                .collect(),
            tracked: (0..n)
                .map(|_| UnsafeCell::new(vec![0u8; node_size].into_boxed_slice()))
                .collect(),
            untracked: std::cell::UnsafeCell::new(vec![0u8; n * node_size].into_boxed_slice()),
            track_data,
            bell_at_path: loom::sync::Mutex::new(None),
            bell_kept: loom::sync::Mutex::new(None),
        }
    }

    /// A reader creates its doorbell: a new FIFO replaces whatever was at the path.
    pub fn create_doorbell(&self) -> std::sync::Arc<ModelFifo> {
        let fifo = std::sync::Arc::new(ModelFifo::default());
        *self.bell_at_path.lock().unwrap() = Some(fifo.clone());
        fifo
    }

    /// As the product's `Segment::ring_doorbell`: rings the kept FIFO if it is of
    /// `epoch`, else opens the one at the path (and keeps it).
    pub(crate) fn ring_doorbell(&self, epoch: u32) {
        let mut kept = self.bell_kept.lock().unwrap();
        if let Some((at, fifo)) = &*kept {
            if *at == epoch {
                fifo.ring();
                return;
            }
        }
        let at_path = self.bell_at_path.lock().unwrap().clone();
        *kept = at_path.map(|fifo| {
            fifo.ring();
            (epoch, fifo)
        });
    }

    fn piece_ptr(&self, index: u64, payload_offset: usize) -> *mut u8 {
        self.node_ptr(index)
            .wrapping_add(BLOCK_HEADER_SIZE + payload_offset)
    }

    /// The atomics of node `node`'s first 32 bytes, with their offsets and widths.
    fn header_words(&self, node: usize) -> [(&dyn HeaderWord, usize, usize); 6] {
        let bh = &self.block_headers[node];
        [
            (&bh.head, 0, 8),
            (&bh.len, 8, 4),
            (&bh.crc, 12, 4),
            (&bh.writer_pid, 16, 4),
            (bh.reserved(), 20, 4),
            (&bh.seq, 24, 8),
        ]
    }

    /// Stores `bytes` at offset `at` (`at + bytes.len() <= 32`) of node `node`'s first 32
    /// bytes, one store per atomic they cover (a load first when they cover it only in
    /// part). Relaxed, as the product's plain copies are: ordered by the head's release
    /// and acquire.
    fn store_header_bytes(&self, node: usize, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        for (word, off, width) in self.header_words(node) {
            let (from, to) = (at.max(off), end.min(off + width));
            if from >= to {
                continue;
            }
            let mut v = if to - from == width {
                [0u8; 8]
            } else {
                word.load().to_le_bytes()
            };
            v[from - off..to - off].copy_from_slice(&bytes[from - at..to - at]);
            word.store(u64::from_le_bytes(v));
        }
    }

    /// Loads bytes `at..at + out.len()` of node `node`'s first 32 bytes.
    fn load_header_bytes(&self, node: usize, at: usize, out: &mut [u8]) {
        let end = at + out.len();
        for (word, off, width) in self.header_words(node) {
            let (from, to) = (at.max(off), end.min(off + width));
            if from < to {
                let v = word.load().to_le_bytes();
                out[from - at..to - at].copy_from_slice(&v[from - off..to - off]);
            }
        }
    }

    /// Splits payload bytes `offset..offset + len` of the block at `index` by node and
    /// calls `f(node, offset in node, range of the caller's bytes)` for each piece; a
    /// piece never straddles the 32-byte header area of a node.
    fn each_piece(
        &self,
        index: u64,
        offset: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, std::ops::Range<usize>),
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
            let room = if at < BLOCK_HEADER_SIZE {
                BLOCK_HEADER_SIZE - at
            } else {
                ns - at
            };
            let n = room.min(len - done);
            f(node, at, done..done + n);
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

impl SegmentView for Segment {
    fn name(&self) -> &str {
        "model"
    }

    fn geometry(&self) -> &Geometry {
        &self.geo
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn header(&self) -> &Header {
        &self.header
    }

    fn head(&self, index: u64) -> &AtomicU64 {
        &self.block_headers[index as usize].head
    }

    /// No cache to warm in the model.
    fn prefetch_nodes(&self, _index: u64, _nodes: u64) {}

    /// No cache to warm in the model.
    fn prefetch_nodes_for_write(&self, _index: u64, _nodes: u64) {}

    /// crc32c of `data`.
    fn crc32(&self, data: &[u8]) -> u32 {
        crate::crc::crc32c(0, data)
    }

    fn block_header(&self, index: u64) -> &BlockHeader {
        &self.block_headers[index as usize]
    }

    fn block_in_bounds(&self, index: u64, nodes: u64) -> bool {
        index < self.geo.node_count && nodes <= self.geo.node_count - index
    }

    /// Not used by the model's code paths (reservations and in-place reads are not
    /// modelled); present so `ring.rs` compiles unchanged.
    fn node_ptr(&self, index: u64) -> *mut u8 {
        assert!(index < self.geo.node_count);
        // SAFETY: index < node_count, so the offset is inside the untracked buffer.
        unsafe {
            (*self.untracked.get())
                .as_mut_ptr()
                .add(index as usize * self.geo.node_size)
        }
    }

    /// `write_payload`, returning the crc32c of `data` continued from `crc`.
    fn write_payload_crc(&self, index: u64, offset: usize, data: &[u8], crc: u32) -> u32 {
        self.write_payload(index, offset, data);
        crate::crc::crc32c(crc, data)
    }

    /// `read_payload`, returning the crc32c of the bytes copied.
    fn read_payload_crc(&self, index: u64, buf: &mut [u8]) -> u32 {
        self.read_payload(index, buf);
        crate::crc::crc32c(0, buf)
    }

    fn write_payload(&self, index: u64, offset: usize, data: &[u8]) {
        self.each_piece(index, offset, data.len(), |node, at, range| {
            let cell = &self.tracked[node];
            if at < BLOCK_HEADER_SIZE {
                // The first bytes of an interior node: the atomics of its head and header.
                self.store_header_bytes(node, at, &data[range]);
            } else if self.track_data {
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

    fn read_payload(&self, index: u64, buf: &mut [u8]) {
        let len = buf.len();
        self.each_piece(index, 0, len, |node, at, range| {
            let cell = &self.tracked[node];
            if at < BLOCK_HEADER_SIZE {
                self.load_header_bytes(node, at, &mut buf[range]);
            } else if self.track_data {
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
}

/// An atomic of a node's first 32 bytes, seen as a little-endian word.
trait HeaderWord {
    fn load(&self) -> u64;
    fn store(&self, v: u64);
}

impl HeaderWord for AtomicU64 {
    fn load(&self) -> u64 {
        AtomicU64::load(self, Ordering::Relaxed)
    }
    fn store(&self, v: u64) {
        AtomicU64::store(self, v, Ordering::Relaxed)
    }
}

impl HeaderWord for crate::sync::atomic::AtomicU32 {
    fn load(&self) -> u64 {
        u64::from(crate::sync::atomic::AtomicU32::load(
            self,
            Ordering::Relaxed,
        ))
    }
    fn store(&self, v: u64) {
        crate::sync::atomic::AtomicU32::store(self, v as u32, Ordering::Relaxed)
    }
}
