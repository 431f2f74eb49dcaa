//! Test hooks: kill this process (SIGKILL) at a chosen step of join, leave or reclaim,
//! so the crash-safety tests can check that the next process finishes the job; shorten
//! the bound on waiting for a busy lock. Not API:
//! hidden from the docs. Costs one relaxed load per step on these slow paths.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// A step of join, leave or reclaim at which [`crash_at`] makes the process die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CrashPoint {
    /// Join: the directory lock is held, nothing else done.
    JoinLocked = 1,
    /// Join: in the middle of the record's seqlock write (`seq` odd).
    JoinMidClaim,
    /// Join: the record is claimed; no inbox yet; the lock is still held.
    JoinClaimed,
    /// Join: the inbox exists; the record is not live yet; the lock is not held.
    JoinInboxCreated,
    /// Join: the record is live; the lock (taken again) is still held.
    JoinLive,
    /// Leave: the record is marked leaving; the inbox still exists.
    LeaveMarked,
    /// Leave: the inbox is unlinked; the record is not free yet.
    LeaveUnlinked,
    /// Reclaim of a dead owner's record: marked leaving; its inbox still exists.
    ReclaimMarked,
    /// Reclaim: its inbox is unlinked; the record is not free yet.
    ReclaimUnlinked,
}

impl CrashPoint {
    /// Whether the process holds the directory lock at this point.
    pub fn holds_lock(self) -> bool {
        self != CrashPoint::JoinInboxCreated
    }

    /// Every point, with the name the peer binary takes for it.
    pub const ALL: [(CrashPoint, &'static str); 9] = [
        (CrashPoint::JoinLocked, "join-locked"),
        (CrashPoint::JoinMidClaim, "join-mid-claim"),
        (CrashPoint::JoinClaimed, "join-claimed"),
        (CrashPoint::JoinInboxCreated, "join-inbox-created"),
        (CrashPoint::JoinLive, "join-live"),
        (CrashPoint::LeaveMarked, "leave-marked"),
        (CrashPoint::LeaveUnlinked, "leave-unlinked"),
        (CrashPoint::ReclaimMarked, "reclaim-marked"),
        (CrashPoint::ReclaimUnlinked, "reclaim-unlinked"),
    ];
}

static CRASH_AT: AtomicU8 = AtomicU8::new(0);

/// Makes this process kill itself with SIGKILL when it reaches `point`.
pub fn crash_at(point: CrashPoint) {
    CRASH_AT.store(point as u8, Ordering::Relaxed);
}

/// Dies here if [`crash_at`] chose this point.
#[inline]
pub(crate) fn point(point: CrashPoint) {
    if CRASH_AT.load(Ordering::Relaxed) == point as u8 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// [`LOCK_WAIT`](crate::directory::LOCK_WAIT) unless a test set another bound.
static LOCK_WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// Makes this process wait at most `wait` for a directory lock a live process holds
/// (instead of [`LOCK_WAIT`](crate::directory::LOCK_WAIT)): the hostile-directory test,
/// whose scribbles often leave a lock word that names a live process, checks the bound
/// without waiting two seconds each time.
pub fn set_lock_wait(wait: Duration) {
    LOCK_WAIT_MS.store(wait.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// The bound on waiting for a lock held by a live process.
pub(crate) fn lock_wait() -> Duration {
    match LOCK_WAIT_MS.load(Ordering::Relaxed) {
        0 => crate::directory::LOCK_WAIT,
        ms => Duration::from_millis(ms),
    }
}
