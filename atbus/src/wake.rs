//! Every sleep/wake handshake of a channel, in one place: the reader waiting for
//! messages, and writers waiting for space. The futex, the doorbell FIFO and tokio are
//! backends of these two protocols, not copies of them; `atbus/tests/loom.rs` checks
//! both under the model checker with this very code.
//!
//! # The reader waits for messages
//!
//! ```text
//!  reader                                     writer
//!  sleeping = how            (announce)       CAS head: publish
//!  fence(SeqCst)                              fence(SeqCst)        (notify_reader)
//!  look at the ring again                     sleeping != 0 ?
//!    found: sleeping = 0 (withdraw)             swap(sleeping, 0): whoever takes a
//!    nothing: sleep (futex, or wait               non-zero value wakes the reader
//!             on the doorbell fd)                 (futex bump + wake, doorbell byte)
//! ```
//!
//! Dekker's pattern: each side stores, fences, then loads what the other stored. The two
//! fences are ordered one way or the other, so either the reader's second look sees the
//! block, or the writer sees the flag and wakes it: no lost wake-up. While the reader is
//! awake the writer pays the fence and one load of a line the reader writes only when it
//! goes to sleep or wakes. On x86 the writer's fence costs nothing: it follows the
//! publish compare-exchange, a locked instruction, which is a full barrier already
//! ([`fence_after_rmw`]).
//!
//! A reader that takes the role over clears a dead predecessor's flag
//! ([`reader_took_over`]) and bumps `bell_epoch` when it creates its doorbell
//! ([`new_doorbell`]), before it first arms: a writer that takes the new flag (acquire)
//! then reads the new epoch and opens the new FIFO instead of ringing the old one.
//!
//! # Writers wait for space
//!
//! ```text
//!  writer                                     reader
//!  waiters += 1              (announce)       store read cursor: release
//!  fence(SeqCst)                              fence(SeqCst)        (notify_space)
//!  try to claim again                         waiters != 0 ?
//!    room: waiters -= 1                         seq += 1, futex wake
//!    full: futex wait on seq, then -= 1
//! ```
//!
//! The same pattern. When nobody waits, the reader pays the fence and one load per
//! release of the read cursor (a sixteenth of the ring at a time, or when it runs dry).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::futex;
use crate::layout::{SpaceWait, WakeWord};
use crate::sync::atomic::{fence, Ordering};

/// `sleeping` value: the reader sleeps on the futex `wake.seq`.
pub(crate) const ARMED_FUTEX: u32 = 1;
/// `sleeping` value: the reader waits for its doorbell fd to become readable.
pub(crate) const ARMED_DOORBELL: u32 = 2;

/// A full fence right after a locked read-modify-write. On x86 every locked instruction
/// is a full barrier (the Linux kernel's `smp_mb__after_atomic()` is empty there for
/// this reason), so only the compiler must keep later accesses after it; elsewhere, and
/// under the model checker, a real SeqCst fence.
#[inline(always)]
fn fence_after_rmw() {
    #[cfg(all(any(target_arch = "x86_64", target_arch = "x86"), not(loom)))]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(not(all(any(target_arch = "x86_64", target_arch = "x86"), not(loom))))]
    fence(Ordering::SeqCst);
}

/// The futex value a sleeper saw before it announced itself: a wake-up after that
/// changes it, so the sleep returns at once.
#[derive(Clone, Copy, Debug)]
#[must_use = "a ticket announces a sleep: sleep on it or withdraw"]
pub(crate) struct Ticket(u32);

// ---------------------------------------------------------------------------------------
// The reader waits for messages.

/// The reader announces that it is about to sleep (`how`: [`ARMED_FUTEX`] or
/// [`ARMED_DOORBELL`]). It must then look at the ring once more, and sleep only if that
/// look found nothing; otherwise [`withdraw`].
pub(crate) fn announce_sleep(wake: &WakeWord, how: u32) -> Ticket {
    // Acquire: a bump read here is one whose publish the second look sees.
    let ticket = Ticket(wake.seq.load(Ordering::Acquire));
    // The flag and the fence: see the module doc. Release: a writer that takes the flag
    // (acquire) sees the doorbell epoch this reader bumped before it. A swap, not a
    // store: the model checker orders plain stores of two threads to one word only
    // partially, and could then let a writer past both fences read a flag older than
    // this one (a lost wake-up C11 forbids, its modification order being total). A
    // read-modify-write follows every earlier store in loom's order too. It costs a
    // locked instruction on the way to sleep only.
    wake.sleeping.swap(how, Ordering::Release);
    #[cfg(loom)]
    if crate::model::mutation(crate::model::Mutation::ReaderFence) {
        return ticket;
    }
    fence(Ordering::SeqCst);
    ticket
}

/// The reader takes back its announcement: writers stop ringing. Relaxed: writers only
/// need to stop; the messages themselves are synchronised through the heads.
pub(crate) fn withdraw(wake: &WakeWord) {
    wake.sleeping.store(0, Ordering::Relaxed);
}

/// The reader's second look after announcing: `None` when it found nothing (`Empty`),
/// otherwise the announcement is withdrawn and what it found is returned.
fn look_again<R>(wake: &WakeWord, look: impl FnOnce() -> Result<R>) -> Option<Result<R>> {
    #[cfg(loom)]
    if crate::model::mutation(crate::model::Mutation::ReaderRecheck) {
        return None;
    }
    match look() {
        Err(Error::Empty) => None,
        found => {
            withdraw(wake);
            Some(found)
        }
    }
}

/// Announces a futex sleep, looks once more with `look`, and sleeps (at most `timeout`)
/// only if that found nothing (`Empty`). `None` after a sleep (look again), or what the
/// second look found.
pub(crate) fn sleep_unless<R>(
    wake: &WakeWord,
    look: impl FnOnce() -> Result<R>,
    timeout: Duration,
) -> Option<Result<R>> {
    let ticket = announce_sleep(wake, ARMED_FUTEX);
    if let Some(found) = look_again(wake, look) {
        return Some(found);
    }
    futex::wait(&wake.seq, ticket.0, timeout);
    withdraw(wake);
    None
}

/// Announces a doorbell sleep and looks once more with `look`: `None` when it found
/// nothing and the reader stays armed (wait on the doorbell fd now), otherwise the
/// announcement is withdrawn and what the look found is returned.
pub(crate) fn arm_unless<R>(
    wake: &WakeWord,
    look: impl FnOnce() -> Result<R>,
) -> Option<Result<R>> {
    let _ = announce_sleep(wake, ARMED_DOORBELL);
    look_again(wake, look)
}

/// A writer, right after its publish compare-exchange: wakes the reader if it announced a
/// sleep. `ring_doorbell(epoch)` rings the doorbell of the reader that created it in
/// `epoch`. Returns whether this writer woke the reader.
#[inline]
pub(crate) fn notify_reader(wake: &WakeWord, ring_doorbell: impl FnOnce(u32)) -> bool {
    #[cfg(loom)]
    let skip_fence = crate::model::mutation(crate::model::Mutation::WriterFence);
    #[cfg(not(loom))]
    let skip_fence = false;
    if !skip_fence {
        fence_after_rmw();
    }
    // Relaxed: the fence above orders it after the publish (see the module doc).
    if wake.sleeping.load(Ordering::Relaxed) == 0 {
        return false;
    }
    cold_wake_reader(wake, ring_doorbell)
}

#[cold]
#[inline(never)]
fn cold_wake_reader(wake: &WakeWord, ring_doorbell: impl FnOnce(u32)) -> bool {
    // The first writer to publish after the reader armed takes the flag and wakes it,
    // once: the others see 0 and make no system call. No lost wake-up: a 0 written by
    // another writer's swap means that writer wakes the reader for this sleep; one
    // written by the reader means it is awake and looks again before it re-arms.
    // Acquire: the epoch read below is at least the one the armed reader bumped before
    // it set the flag.
    let armed = wake.sleeping.swap(0, Ordering::Acquire);
    if armed & ARMED_FUTEX != 0 {
        // Release: the sleeper that sees the bump sees the block.
        wake.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&wake.seq);
    }
    if armed & ARMED_DOORBELL != 0 {
        ring_doorbell(wake.bell_epoch.load(Ordering::Relaxed));
    }
    armed != 0
}

/// A reader that took the role over: a dead predecessor may have left itself armed, and
/// writers would ring a doorbell nobody reads. Relaxed: a hint only.
pub(crate) fn reader_took_over(wake: &WakeWord) {
    wake.sleeping.store(0, Ordering::Relaxed);
}

/// A reader created a new doorbell: writers holding an older one must open the new one.
/// Release: a writer that acquires the reader's flag (set after this) sees the new epoch.
pub(crate) fn new_doorbell(wake: &WakeWord) -> u32 {
    wake.bell_epoch
        .fetch_add(1, Ordering::Release)
        .wrapping_add(1)
}

// ---------------------------------------------------------------------------------------
// Writers wait for space.

/// A writer announces that it waits for space. It must then try once more, and sleep
/// ([`sleep_for_space`]) only if the ring is still full; either way it ends with
/// [`end_space_wait`].
pub(crate) fn announce_space_wait(space: &SpaceWait) -> Ticket {
    // Acquire: a bump read here is one whose release the next try sees.
    let ticket = Ticket(space.seq.load(Ordering::Acquire));
    space.waiters.fetch_add(1, Ordering::Relaxed);
    #[cfg(loom)]
    if crate::model::mutation(crate::model::Mutation::SpaceFence) {
        return ticket;
    }
    fence(Ordering::SeqCst);
    ticket
}

/// Sleeps until the reader frees space (or `timeout`, or a spurious wake-up).
pub(crate) fn sleep_for_space(space: &SpaceWait, ticket: Ticket, timeout: Duration) {
    futex::wait(&space.seq, ticket.0, timeout);
}

/// The writer no longer waits. Relaxed: the count only tells the reader whether to wake.
pub(crate) fn end_space_wait(space: &SpaceWait) {
    space.waiters.fetch_sub(1, Ordering::Relaxed);
}

/// Announces a space wait, tries once more with `retry`, and sleeps (at most `timeout`)
/// only if the ring is still `Full`. `None` after a sleep (try again), or what the retry
/// returned.
pub(crate) fn wait_for_space_unless<R>(
    space: &SpaceWait,
    retry: impl FnOnce() -> Result<R>,
    timeout: Duration,
) -> Option<Result<R>> {
    let ticket = announce_space_wait(space);
    let retried = retry();
    if !matches!(retried, Err(Error::Full)) {
        end_space_wait(space);
        return Some(retried);
    }
    sleep_for_space(space, ticket, timeout);
    end_space_wait(space);
    None
}

/// The reader, right after it stored a new read cursor: wakes writers waiting for space.
pub(crate) fn notify_space(space: &SpaceWait) {
    #[cfg(loom)]
    let skip_fence = crate::model::mutation(crate::model::Mutation::ReleaseFence);
    #[cfg(not(loom))]
    let skip_fence = false;
    if !skip_fence {
        fence(Ordering::SeqCst);
    }
    if space.waiters.load(Ordering::Relaxed) != 0 {
        // Release: a waiter that sees the bump sees the new read cursor.
        space.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&space.seq);
    }
}
