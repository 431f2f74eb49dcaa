//! Which writer counter slot a writer thread counts in, and how it bumps the counters.
//!
//! A locked read-modify-write is the most expensive instruction a small send can make:
//! it waits for every store before it, and for its line. Measured on an Intel Xeon
//! (1 → 1, 64-byte messages, `atbus-bench compare`), two locked adds per message for
//! `messages_sent` and `bytes_sent` held the channel at 3–7 M msgs/s; with plain stores
//! it ran at 17–21 M. So a writer *thread* takes one of the header's slots for itself
//! (its owner word names the thread: tid and start time) and bumps that slot's counters
//! with a plain load and store: nobody else writes them. The last slot is never owned:
//! threads that find no slot free count there with locked adds, as every writer did in
//! layout version 1. A slot whose owner thread no longer exists is taken over (its
//! counts stay, and the new owner goes on from them); [`crate::Stats`] sums every slot.

use crate::layout::{Header, WriterCounters, WRITER_SLOTS};
use crate::sync::atomic::{AtomicU64, Ordering};

/// The slot threads share when no slot of their own is free (locked adds only).
const SHARED: usize = WRITER_SLOTS - 1;

/// The counters of the calling thread's slot.
pub(crate) struct Counters<'a> {
    slot: &'a WriterCounters,
    /// True when this thread owns the slot: plain load and store suffice.
    owned: bool,
}

impl Counters<'_> {
    /// Adds `n` to `counter`, a field of this slot. Relaxed: statistics, not sync.
    #[inline]
    pub(crate) fn add(&self, counter: &AtomicU64, n: u64) {
        if self.owned {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl std::ops::Deref for Counters<'_> {
    type Target = WriterCounters;
    fn deref(&self) -> &WriterCounters {
        self.slot
    }
}

/// The calling thread's counters in the segment whose header is `h`.
#[cfg(loom)]
#[inline]
pub(crate) fn for_thread(h: &Header) -> Counters<'_> {
    // The model runs writers as loom threads: they share one slot, with locked adds.
    Counters {
        slot: &h.writer_slots[SHARED],
        owned: false,
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Slots this thread took, by header address. An entry is a hint: it is used only
    /// after the slot's owner word is checked to name this thread (a segment mapped
    /// later at the same address gets the same check).
    static TAKEN: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// This thread's owner word, once computed.
    static ME: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The calling thread's counters in the segment whose header is `h`.
///
/// Works from anywhere, thread-local destructors included: once this thread's table of
/// slots is gone (or busy), the thread counts in the shared slot with locked adds.
#[cfg(not(loom))]
#[inline]
pub(crate) fn for_thread(h: &Header) -> Counters<'_> {
    let key = h as *const Header as usize;
    let shared = Counters {
        slot: &h.writer_slots[SHARED],
        owned: false,
    };
    let Some(me) = me() else {
        return shared;
    };
    let hint = TAKEN
        .try_with(|t| {
            t.try_borrow()
                .ok()?
                .iter()
                .find(|e| e.0 == key)
                .map(|e| e.1)
        })
        .ok()
        .flatten();
    let slot = match hint {
        Some(SHARED) => SHARED,
        // Relaxed: our own word, written by our own CAS (or a stranger's, then not ours).
        Some(i) if h.writer_slots[i].owner.load(Ordering::Relaxed) == me => i,
        _ => {
            // Remember the slot; a thread whose table is gone (a send from a thread-local
            // destructor) must not take a slot it could not find again: shared, then.
            let remembered = TAKEN.try_with(|t| {
                let Ok(mut t) = t.try_borrow_mut() else {
                    return None;
                };
                let i = take(h, me);
                t.retain(|e| e.0 != key);
                t.push((key, i));
                Some(i)
            });
            match remembered {
                Ok(Some(i)) => i,
                _ => SHARED,
            }
        }
    };
    Counters {
        slot: &h.writer_slots[slot],
        owned: slot != SHARED,
    }
}

/// This thread's owner word: `tid | (start_time as u32) << 32`, never 0; `None` once the
/// thread's locals are destroyed.
#[cfg(not(loom))]
fn me() -> Option<u64> {
    ME.try_with(|m| {
        if m.get() == 0 {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            let start = crate::process::stat(tid).map_or(0, |s| s.start_time);
            m.set(u64::from(tid) | (u64::from(start as u32) << 32) | u64::from(tid == 0));
        }
        m.get()
    })
    .ok()
}

/// Takes a free slot, or one whose owner thread no longer exists; the shared slot when
/// neither is to be had.
#[cfg(not(loom))]
fn take(h: &Header, me: u64) -> usize {
    let owners = || {
        h.writer_slots[..SHARED]
            .iter()
            .map(|s| &s.owner)
            .enumerate()
    };
    // AcqRel: taking a slot over acquires its last owner's counts (we go on from them).
    for (i, owner) in owners() {
        let cur = owner.load(Ordering::Relaxed);
        if cur == me
            || (cur == 0
                && owner
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok())
        {
            return i;
        }
    }
    for (i, owner) in owners() {
        let cur = owner.load(Ordering::Relaxed);
        let (tid, start) = (cur as u32, (cur >> 32) as u32);
        if !crate::process::is_same_alive(tid, start)
            && owner
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return i;
        }
    }
    SHARED
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn threads_take_slots_of_their_own_and_the_shared_slot_when_none_is_left() {
        // A zeroed header on the heap (all atomics: zero is a valid value).
        let layout = std::alloc::Layout::new::<Header>();
        // SAFETY: Header is all atomics and padding; the zeroed allocation is a valid
        // Header, freed below with the same layout.
        let h = unsafe { &*(std::alloc::alloc_zeroed(layout) as *const Header) };
        let c = for_thread(h);
        assert!(c.owned);
        c.add(&c.messages_sent, 2);
        let again = for_thread(h);
        assert!(std::ptr::eq(again.slot, c.slot), "a thread keeps its slot");
        again.add(&again.messages_sent, 3);
        assert_eq!(c.messages_sent.load(Ordering::Relaxed), 5);
        // Other threads take other slots until only the shared one is left; they live
        // until every slot is taken, so none can be taken over.
        let barrier = std::sync::Barrier::new(WRITER_SLOTS + 1);
        std::thread::scope(|s| {
            let slots: Vec<_> = (0..WRITER_SLOTS)
                .map(|_| {
                    s.spawn(|| {
                        let c = for_thread(h);
                        c.add(&c.messages_sent, 1);
                        barrier.wait();
                        (c.slot as *const WriterCounters as usize, c.owned)
                    })
                })
                .collect();
            barrier.wait();
            let got: Vec<_> = slots.into_iter().map(|j| j.join().unwrap()).collect();
            let owned = got.iter().filter(|g| g.1).count();
            // 15 slots, one ours: 14 for the others, the other 2 count in the shared one.
            assert_eq!(owned, SHARED - 1);
            assert_eq!(got.iter().filter(|g| !g.1).count(), WRITER_SLOTS - owned);
        });
        let total: u64 = h
            .writer_slots
            .iter()
            .map(|s| s.messages_sent.load(Ordering::Relaxed))
            .sum();
        assert_eq!(total, 5 + WRITER_SLOTS as u64);
        // The threads have exited: their slots can be taken over, counts kept.
        let dead_owner = h.writer_slots[1].owner.load(Ordering::Relaxed);
        assert_ne!(dead_owner, 0);
        // SAFETY: as above.
        unsafe { std::alloc::dealloc(h as *const Header as *mut u8, layout) };
    }
}
