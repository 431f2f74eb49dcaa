//! The results board: a small shared-memory area of the harness's own (an anonymous
//! `memfd`, inherited by the child processes, so no name is ever left behind) where
//! writers and the reader keep their counters. Counters survive a SIGKILLed process, so
//! the parent can account for every message of a killed writer or reader.
//!
//! Layout (all `u64`, each group on its own 128-byte line to avoid false sharing):
//! * control line: stop flag, writers-done flag;
//! * reader line: reader-wide counters (see `G_*`);
//! * journal: the reader's per-message commit record (see [`Board::commit`]);
//! * one record per stream (writer incarnation): a writer line (`W_*`) and a reader line
//!   (`R_*`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Streams (writer incarnations) a board holds.
pub const MAX_STREAMS: usize = 1 << 16;
const LINE: usize = 128;
const WORDS: usize = LINE / 8;

// Control line.
/// Writers stop sending when this is non-zero.
pub const C_STOP: usize = 0;
/// Set by the parent once every writer has exited: the reader drains and exits.
pub const C_WRITERS_DONE: usize = 1;
/// Number of streams allocated (parent-written).
pub const C_STREAMS: usize = 2;
/// With `--messages`: the total to send (`u64::MAX` otherwise).
pub const C_LIMIT: usize = 3;
/// With `--messages`: messages writers have taken from the budget so far.
pub const C_CLAIMED: usize = 8;

// Reader-wide counters.
/// Messages whose header names no known stream, or too short for a header.
pub const G_UNATTRIBUTED: usize = 0;
/// Journal entries a new reader found committed but not applied, and applied.
pub const G_JOURNAL_REPLAYS: usize = 1;
/// Sequence gaps found at a stream's first message after a reader take-over.
pub const G_HANDOVER_LOST: usize = 2;
/// Duplicates found at a stream's first message after a reader take-over.
pub const G_HANDOVER_DUP: usize = 3;
/// Reader incarnations started.
pub const G_READERS: usize = 4;
/// Messages the reader has received in total (all streams, any verdict).
pub const G_RECEIVED: usize = 5;
/// Header word + 1 of the message the reader holds between `try_recv` returning and its
/// verdict being committed (0 otherwise).
pub const G_IN_HAND: usize = 6;
/// Messages a killed reader had received (in hand) but not yet checked and recorded;
/// its successor counts them as delivered, unchecked.
pub const G_HANDOVER_UNCHECKED: usize = 7;

// Writer line of a stream record.
/// Writer id + 1 (0: record unused).
pub const W_ID: usize = 0;
/// Process id of the writer.
pub const W_PID: usize = 1;
/// Sends that returned `Ok`.
pub const W_OK: usize = 2;
/// Payload bytes of those.
pub const W_BYTES: usize = 3;
/// Sends that returned `Full`.
pub const W_FULL: usize = 4;
/// Sends that returned `Abandoned` (retried with the same sequence).
pub const W_ABANDONED: usize = 5;
/// Sequence + 1 of the message being sent, 0 between sends.
pub const W_IN_SEND: usize = 6;
/// 1 once the parent SIGKILLed this writer (parent-written).
pub const W_KILLED: usize = 7;
/// Times the parent SIGSTOPped this writer (parent-written).
pub const W_STALLS: usize = 8;
/// Incarnation number of this writer id (parent-written).
pub const W_INCARNATION: usize = 9;
/// Messages of the send call `W_IN_SEND` marks (a batch: from that sequence on), 0 or 1
/// for a single send.
pub const W_IN_SEND_COUNT: usize = 10;

// Reader line of a stream record: the fields the journal carries.
/// Next expected sequence (highest seen + 1).
pub const R_NEXT: usize = 0;
/// Messages delivered intact, once each.
pub const R_DELIVERED: usize = 1;
/// Payload bytes delivered.
pub const R_BYTES: usize = 2;
/// Messages missing in sequence gaps.
pub const R_LOST: usize = 3;
/// Messages delivered again.
pub const R_DUP: usize = 4;
/// Messages that arrived after a later one (filled a gap).
pub const R_REORDER: usize = 5;
/// Messages whose length or bytes were wrong.
pub const R_CORRUPT: usize = 6;
/// Reader incarnation that last updated this record.
pub const R_READER: usize = 7;
/// Number of reader-line fields the journal carries.
pub const R_FIELDS: usize = 8;

const CONTROL_OFF: usize = 0;
const GLOBAL_OFF: usize = LINE;
const JOURNAL_OFF: usize = 2 * LINE;
const STREAMS_OFF: usize = 4 * LINE;
const RECORD: usize = 2 * LINE;
const SIZE: usize = STREAMS_OFF + MAX_STREAMS * RECORD;

/// A mapped board.
pub struct Board {
    base: *mut AtomicU64,
    fd: RawFd,
}

// SAFETY: the board is plain shared memory accessed only through atomics.
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

impl Board {
    /// Creates a board in a new memfd that child processes inherit.
    pub fn create() -> std::io::Result<Board> {
        // SAFETY: plain FFI call with a valid C string; no MFD_CLOEXEC so children
        // started with `Command` inherit the descriptor.
        let fd = unsafe { libc::memfd_create(c"atbus-bench-board".as_ptr(), 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is ours.
        if unsafe { libc::ftruncate(fd, SIZE as libc::off_t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Board::map(fd)
    }

    /// Maps the board a parent created (its inherited descriptor).
    pub fn map(fd: RawFd) -> std::io::Result<Board> {
        // SAFETY: mapping a descriptor we own/inherited, of SIZE bytes; the mapping lives
        // as long as the Board (never unmapped: processes exit with it).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Board { base: p.cast(), fd })
    }

    /// The descriptor to pass to children.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    #[inline]
    fn word(&self, byte_off: usize, i: usize) -> &AtomicU64 {
        debug_assert!(byte_off + i * 8 < SIZE);
        // SAFETY: in bounds of the mapping (all callers pass offsets inside SIZE), aligned
        // to 8, and AtomicU64 has the layout of u64; the memory is zero-initialised.
        unsafe { &*self.base.add(byte_off / 8 + i) }
    }

    /// A control word.
    pub fn control(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS);
        self.word(CONTROL_OFF, i)
    }

    /// A reader-wide counter.
    pub fn global(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS);
        self.word(GLOBAL_OFF, i)
    }

    /// A writer-line word of stream `s`.
    #[inline]
    pub fn w(&self, s: usize, i: usize) -> &AtomicU64 {
        assert!(s < MAX_STREAMS && i < WORDS);
        self.word(STREAMS_OFF + s * RECORD, i)
    }

    /// A reader-line word of stream `s`.
    #[inline]
    pub fn r(&self, s: usize, i: usize) -> &AtomicU64 {
        assert!(s < MAX_STREAMS && i < WORDS);
        self.word(STREAMS_OFF + s * RECORD + LINE, i)
    }

    /// Reads the reader line of stream `s`.
    #[inline]
    pub fn read_record(&self, s: usize) -> [u64; R_FIELDS] {
        std::array::from_fn(|i| self.r(s, i).load(Ordering::Relaxed))
    }

    /// Commits a new reader line for stream `s`, crash-safely: the values go to the
    /// journal first, the journal is marked valid, the record is written, the journal is
    /// cleared. A reader killed anywhere in here leaves either nothing (journal invalid,
    /// record untouched) or a valid journal that [`Board::recover`] applies again
    /// (writing absolute values, so applying twice is harmless).
    #[inline]
    pub fn commit(&self, s: usize, rec: &[u64; R_FIELDS]) {
        for (i, v) in rec.iter().enumerate() {
            self.word(JOURNAL_OFF, 2 + i).store(*v, Ordering::Relaxed);
        }
        self.word(JOURNAL_OFF, 1).store(s as u64, Ordering::Relaxed);
        self.word(JOURNAL_OFF, 0).store(1, Ordering::Release);
        self.apply(s, rec);
        self.word(JOURNAL_OFF, 0).store(0, Ordering::Release);
    }

    fn apply(&self, s: usize, rec: &[u64; R_FIELDS]) {
        for (i, v) in rec.iter().enumerate() {
            self.r(s, i).store(*v, Ordering::Relaxed);
        }
    }

    /// Applies a journal a killed reader left valid. Returns true if there was one.
    pub fn recover(&self) -> bool {
        if self.word(JOURNAL_OFF, 0).load(Ordering::Acquire) == 0 {
            return false;
        }
        let s = self.word(JOURNAL_OFF, 1).load(Ordering::Relaxed) as usize;
        let rec: [u64; R_FIELDS] =
            std::array::from_fn(|i| self.word(JOURNAL_OFF, 2 + i).load(Ordering::Relaxed));
        if s < MAX_STREAMS {
            self.apply(s, &rec);
        }
        self.word(JOURNAL_OFF, 0).store(0, Ordering::Release);
        true
    }
}

/// Adds to a counter only one process writes (plain load + store, no locked RMW).
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}
