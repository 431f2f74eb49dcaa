//! `limit`: the simplest correct multi-writer ring in shared memory, the yardstick for
//! what a channel of this kind can do on the host. A Vyukov bounded MPMC queue used as
//! MPSC, in a POSIX shared-memory object:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic ([`MAGIC`]) |
//! | 8..16 | slot size (a power of two, at least 16) |
//! | 16..24 | slot count (a power of two, at least 2) |
//! | 128..136 | enqueue cursor: the next position a writer claims (alone on its 128-byte line) |
//! | 256.. | the slots |
//!
//! A slot is a sequence word, a length word and up to `slot size - 16` message bytes.
//! Slot *i* starts with sequence *i*. A writer reads the cursor `pos`, checks that slot
//! `pos % count` has sequence `pos` (else the ring is full, or another writer claimed
//! `pos` already), claims `pos` with a compare-and-swap of the cursor to `pos + 1`,
//! writes length and bytes, and publishes with a release store of sequence `pos + 1`.
//! The single reader keeps its position `pos` to itself, waits until the slot's sequence
//! is `pos + 1` (acquire), checks the message where it lies, and hands the slot back to
//! the writers with a release store of sequence `pos + count`.
//!
//! No checksum, no recovery from a writer that dies between claim and publish (the
//! reader would wait for that slot forever): exactly the work a correct ring cannot
//! avoid, and nothing else. The reader still bounds-checks the length word it reads.

use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};

use atbus::Backoff;

/// First word of a `limit` ring.
pub const MAGIC: u64 = u64::from_le_bytes(*b"LIMITRB1");
/// Bytes before the slot sequence and length words; also the slot-size minimum.
const SLOT_HEADER: usize = 16;
/// Offset of the enqueue cursor (its own 128-byte line, away from the read-only words).
const CURSOR_OFF: usize = 128;
/// Offset of slot 0.
const SLOTS_OFF: usize = 256;

/// The slot size for messages up to `max_message` bytes: the smallest power of two that
/// holds the sequence word, the length word and the message (64-byte messages: 128).
pub fn slot_size_for(max_message: usize) -> usize {
    (SLOT_HEADER + max_message).next_power_of_two()
}

/// A mapped `limit` ring (either side).
pub struct Ring {
    base: *mut u8,
    map_len: usize,
    slot_size: usize,
    count: u64,
}

// SAFETY: the mapping is shared memory that every process and thread accesses only
// through atomics (sequence words, cursor) or through the slot a sequence word hands it
// (see `send` and `recv_with`); the raw pointer carries no thread affinity.
unsafe impl Send for Ring {}

impl Ring {
    /// Creates the shared-memory object `name` (a POSIX shm name, `/...`) for messages up
    /// to `max_message` bytes, in at most `size` bytes (at least two slots), and maps it.
    pub fn create(name: &str, size: usize, max_message: usize) -> Result<Ring, String> {
        let slot_size = slot_size_for(max_message);
        let room = size.saturating_sub(SLOTS_OFF) / slot_size;
        if room < 2 {
            return Err(format!(
                "limit: a {size}-byte ring holds fewer than 2 slots of {slot_size} bytes \
                 (messages up to {max_message} bytes); give a larger --channel-size"
            ));
        }
        // The largest power of two that fits: positions map to slots with a mask.
        let count = 1usize << (usize::BITS - 1 - room.leading_zeros());
        let map_len = SLOTS_OFF + count * slot_size;
        let fd = shm(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
        // SAFETY: fd is the descriptor shm_open just returned to us.
        if unsafe { libc::ftruncate(fd, map_len as libc::off_t) } != 0 {
            let e = os_err(&format!("limit: ftruncate({name}, {map_len})"));
            close_and_unlink(fd, name);
            return Err(e);
        }
        let mut ring = match Ring::map(fd, map_len, name) {
            Ok(r) => r,
            Err(e) => {
                close_and_unlink(fd, name);
                return Err(e);
            }
        };
        // SAFETY: fd is ours; the mapping stays valid after the descriptor is closed.
        unsafe { libc::close(fd) };
        // Relaxed: whoever maps the ring reads these only after acquiring the magic, which
        // is stored last with release (a ring without it is rejected by `open`).
        ring.word(8).store(slot_size as u64, Ordering::Relaxed);
        ring.word(16).store(count as u64, Ordering::Relaxed);
        ring.slot_size = slot_size;
        ring.count = count as u64;
        for i in 0..ring.count {
            ring.seq(i).store(i, Ordering::Relaxed);
        }
        ring.cursor().store(0, Ordering::Relaxed);
        // Release: a process that maps the ring and sees the magic (acquire) sees the
        // geometry and the initial sequences too.
        ring.word(0).store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    /// Opens the ring `name` that [`Ring::create`] made, checking its geometry against the
    /// object's size.
    pub fn open(name: &str) -> Result<Ring, String> {
        let fd = shm(name, libc::O_RDWR)?;
        // SAFETY: stat is plain data; fd is ours.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            let e = os_err(&format!("limit: fstat({name})"));
            // SAFETY: closing our descriptor.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let map_len = st.st_size as usize;
        if map_len < SLOTS_OFF {
            // SAFETY: closing our descriptor.
            unsafe { libc::close(fd) };
            return Err(format!(
                "limit: {name} is {map_len} bytes, too small for a ring; recreate it"
            ));
        }
        let ring = Ring::map(fd, map_len, name);
        // SAFETY: closing our descriptor; a mapping outlives it.
        unsafe { libc::close(fd) };
        let mut ring = ring?;
        // Acquire: pairs with the creator's release store of the magic (see `create`).
        let magic = ring.word(0).load(Ordering::Acquire);
        let slot_size = ring.word(8).load(Ordering::Relaxed);
        let count = ring.word(16).load(Ordering::Relaxed);
        let fits = slot_size
            .checked_mul(count)
            .and_then(|b| b.checked_add(SLOTS_OFF as u64))
            == Some(map_len as u64);
        if magic != MAGIC
            || !slot_size.is_power_of_two()
            || slot_size < SLOT_HEADER as u64
            || !count.is_power_of_two()
            || count < 2
            || !fits
        {
            return Err(format!(
                "limit: {name} is not a limit ring (magic {magic:#x}, slot size {slot_size}, \
                 {count} slots, {map_len} bytes); recreate it"
            ));
        }
        ring.slot_size = slot_size as usize;
        ring.count = count;
        Ok(ring)
    }

    /// Removes the name (mappings stay valid).
    pub fn unlink(name: &str) {
        if let Ok(c) = CString::new(name) {
            // SAFETY: valid C string.
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
    }

    fn map(fd: i32, map_len: usize, name: &str) -> Result<Ring, String> {
        // SAFETY: mapping `map_len` bytes of a descriptor we hold; the mapping is owned by
        // the returned Ring and unmapped in its Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("limit: mmap({name}, {map_len})")));
        }
        Ok(Ring {
            base: p.cast(),
            map_len,
            slot_size: SLOT_HEADER,
            count: 0,
        })
    }

    /// The largest message a slot holds.
    pub fn capacity(&self) -> usize {
        self.slot_size - SLOT_HEADER
    }

    /// Number of slots.
    #[cfg(test)]
    pub fn slots(&self) -> u64 {
        self.count
    }

    /// The atomic word at byte offset `off` (8-aligned, inside the mapping).
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.map_len);
        // SAFETY: in bounds (callers pass header offsets, all below SLOTS_OFF <= map_len,
        // or slot offsets below map_len), 8-aligned (mmap returns page-aligned memory and
        // every offset is a multiple of 8), and AtomicU64 has u64's layout. Every process
        // accesses these words only atomically.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    #[inline]
    fn cursor(&self) -> &AtomicU64 {
        self.word(CURSOR_OFF)
    }

    #[inline]
    fn slot_off(&self, pos: u64) -> usize {
        SLOTS_OFF + (pos & (self.count - 1)) as usize * self.slot_size
    }

    #[inline]
    fn seq(&self, pos: u64) -> &AtomicU64 {
        self.word(self.slot_off(pos))
    }

    /// Sends `msg`, waiting (with atbus's [`Backoff`], as the harness's atbus writer does)
    /// while the ring is full.
    #[inline]
    pub fn send(&self, msg: &[u8]) -> Result<(), String> {
        if msg.len() > self.capacity() {
            return Err(format!(
                "limit: a {}-byte message does not fit a {}-byte slot",
                msg.len(),
                self.slot_size
            ));
        }
        let mut backoff = Backoff::new();
        // Relaxed: the cursor only hands out positions; the slot's sequence word (acquire
        // below) is what orders the slot's bytes.
        let mut pos = self.cursor().load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the reader's release store of `pos` (it handed the slot
            // back after reading it) or, on the first lap, with the creator's release of
            // the magic; our writes to the slot come after its reads.
            let seq = self.seq(pos).load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                // Strong CAS, relaxed for the same reason as the load above; on failure
                // it hands back the current cursor.
                match self.cursor().compare_exchange(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // The slot still holds the message of the previous lap: full.
                backoff.snooze();
                pos = self.cursor().load(Ordering::Relaxed);
            } else {
                // Another writer claimed `pos` already.
                pos = self.cursor().load(Ordering::Relaxed);
            }
        }
        let off = self.slot_off(pos);
        // SAFETY: position `pos` is ours alone: its slot had sequence `pos` (no message in
        // it, the reader done with it) and our CAS moved the cursor past `pos`, so no
        // other writer writes this slot and the reader does not read it until we publish
        // below. `off + 16 + msg.len() <= off + slot_size <= map_len` (checked length).
        unsafe {
            let p = self.base.add(off + 8);
            p.cast::<u64>().write(msg.len() as u64);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), p.add(8), msg.len());
        }
        // Release: the length and the bytes above are visible to the reader that sees
        // sequence `pos + 1` with acquire.
        self.seq(pos).store(pos + 1, Ordering::Release);
        Ok(())
    }

    /// A reader at position 0. Only one may exist per ring (across processes).
    pub fn reader(self) -> RingReader {
        RingReader { ring: self, pos: 0 }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this Ring owns; no reference into it outlives
        // `self` (every accessor borrows self).
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// The single reader of a [`Ring`].
pub struct RingReader {
    ring: Ring,
    pos: u64,
}

impl RingReader {
    /// Whether the next message is there.
    #[inline]
    fn ready(&self) -> bool {
        // Acquire: pairs with the writer's release store of `pos + 1`; its length word
        // and bytes are visible to `take`.
        self.ring.seq(self.pos).load(Ordering::Acquire) == self.pos + 1
    }

    /// Hands the next message (which `ready` saw published) to `f` where it lies, then
    /// gives the slot back to the writers. An out-of-range length word is an error (the
    /// shared memory is corrupt), and the slot stays where it is.
    #[inline]
    fn take<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let ring = &self.ring;
        let pos = self.pos;
        let off = ring.slot_off(pos);
        // SAFETY: in bounds and 8-aligned (slot offsets are multiples of the slot size, a
        // power of two >= 16); the writer finished writing it before its release store,
        // which `ready` acquired.
        let len = unsafe { ring.base.add(off + 8).cast::<u64>().read() };
        if len > ring.capacity() as u64 {
            return Err(format!(
                "limit: slot {} holds a length word of {len}, above the slot's capacity of {} \
                 bytes: the ring's shared memory is corrupt",
                pos & (ring.count - 1),
                ring.capacity()
            ));
        }
        // SAFETY: `off + 16 + len <= off + slot_size <= map_len` (checked above). The slot
        // is ours until the release store below: writers only write a slot whose sequence
        // equals their claimed position, and this one reads `pos + 1` until we store
        // `pos + count`. The slice does not outlive `f`.
        let msg = unsafe { std::slice::from_raw_parts(ring.base.add(off + 16), len as usize) };
        let r = f(msg);
        // Release: our reads of the slot happen before the writer's (acquire) sees the
        // slot free for position `pos + count`.
        ring.seq(pos).store(pos + ring.count, Ordering::Release);
        self.pos = pos + 1;
        Ok(r)
    }

    /// If the next message is there, hands its bytes (in the slot) to `f` and returns
    /// what `f` returned; `Ok(None)` if the ring is empty.
    #[cfg(test)]
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, String> {
        if !self.ready() {
            return Ok(None);
        }
        self.take(f).map(Some)
    }

    /// Waits (with [`Backoff`], as the harness's atbus reader does) for the next message
    /// and hands it to `f`.
    #[inline]
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let mut backoff = Backoff::new();
        while !self.ready() {
            backoff.snooze();
        }
        self.take(f)
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn shm(name: &str, flags: i32) -> Result<i32, String> {
    let c = CString::new(name).map_err(|_| format!("limit: bad name {name:?}"))?;
    // SAFETY: valid C string; the mode is read only with O_CREAT.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(os_err(&format!("limit: shm_open({name})")));
    }
    Ok(fd)
}

fn close_and_unlink(fd: i32, name: &str) {
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    Ring::unlink(name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{self, Checked, Sizes};

    fn name(t: &str) -> String {
        format!("/atbus-bench-limit-test-{}-{t}", std::process::id())
    }

    #[test]
    fn slot_sizes() {
        assert_eq!(slot_size_for(64), 128);
        assert_eq!(slot_size_for(112), 128);
        assert_eq!(slot_size_for(113), 256);
        assert_eq!(slot_size_for(2048), 4096);
        assert_eq!(slot_size_for(16384), 32768);
    }

    /// Four writer threads, each with its own mapping, through an 8-slot ring (so it is
    /// full most of the time): every message arrives once, in order per writer, every
    /// byte intact.
    #[test]
    fn writers_to_one_reader_every_byte_in_order() {
        let n = name("mpsc");
        let sizes = Sizes::Uniform(8, 300);
        let ring = Ring::create(&n, SLOTS_OFF + 8 * 512, sizes.max()).unwrap();
        assert_eq!((ring.slots(), ring.capacity()), (8, 512 - 16));
        let (writers, per_writer, seed) = (4u32, 20_000u64, 7u64);
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let n = n.clone();
                std::thread::spawn(move || {
                    let tx = Ring::open(&n).unwrap();
                    let mut buf = vec![0u8; sizes.max()];
                    for seq in 0..per_writer {
                        let word = payload::header_word(w, seq);
                        let len = sizes.size_for(seed, word);
                        payload::fill(&mut buf[..len], word, seed, 1);
                        tx.send(&buf[..len]).unwrap();
                    }
                })
            })
            .collect();
        let mut rx = ring.reader();
        let mut next = vec![0u64; writers as usize];
        for _ in 0..writers as u64 * per_writer {
            rx.recv_with(|m| match payload::check(m, seed, sizes, 1) {
                Checked::Good { stream, seq } => {
                    assert_eq!(seq, next[stream as usize], "writer {stream}");
                    next[stream as usize] += 1;
                }
                other => panic!("{other:?}"),
            })
            .unwrap();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            rx.try_recv_with(|_| panic!("extra message")),
            Ok(None::<()>)
        );
        assert!(next.iter().all(|&k| k == per_writer));
        Ring::unlink(&n);
    }

    #[test]
    fn reader_rejects_a_length_beyond_the_slot() {
        let n = name("corrupt");
        let ring = Ring::create(&n, 1 << 16, 64).unwrap();
        Ring::unlink(&n);
        ring.send(&[1u8; 64]).unwrap();
        let off = ring.slot_off(0);
        // SAFETY: slot 0 is published and nobody else maps this ring; overwrite its
        // length word as a hostile writer could.
        unsafe { ring.base.add(off + 8).cast::<u64>().write(1 << 40) };
        let mut rx = ring.reader();
        let err = rx
            .try_recv_with(|_| panic!("handed out"))
            .map(|_: Option<()>| ())
            .unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn rejects_what_is_not_a_ring() {
        let n = name("small");
        let e = Ring::create(&n, 300, 64).err().unwrap();
        assert!(e.contains("--channel-size"), "{e}");
        assert!(Ring::open(&n).is_err());
        let ring = Ring::create(&n, 1 << 12, 64).unwrap();
        assert!(ring.send(&[0u8; 113]).is_err());
        Ring::unlink(&n);
    }
}
