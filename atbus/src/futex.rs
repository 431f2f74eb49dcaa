//! A shared (cross-process) futex: the blocking reader sleeps on a word in the segment,
//! writers wake it. Not `FUTEX_PRIVATE_FLAG`: the word lives in a `MAP_SHARED` mapping
//! that other processes map at other addresses, and the kernel keys shared futexes on
//! the underlying page, so a wake in one process reaches a waiter in another.
//!
//! Under the model checker (`--cfg loom`) a futex is a condition variable: a wait
//! returns only when the word no longer holds the expected value and a wake came, with no
//! timeout, so a lost wake-up shows up as a deadlock in the model.

use std::time::Duration;

use crate::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake, on a value
/// mismatch (at once), on a signal, or when the timeout expires; callers re-check.
#[cfg(not(loom))]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, 4-byte aligned u32 (an AtomicU32) for the duration of the
    // call; FUTEX_WAIT only reads it, atomically, and `ts` is a valid timespec on our
    // stack. The unused uaddr2/val3 arguments are ignored by FUTEX_WAIT.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
#[cfg(not(loom))]
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not access the memory, it
    // only uses the address as the key of the wait queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(loom)]
loom::lazy_static! {
    /// The model's futex wait queue: one for every word (wakes are broadcast, and each
    /// waiter checks its own word).
    static ref QUEUE: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

/// The model's futex wait: until `*word != expected` (checked under the queue's lock, as
/// the kernel checks under its hash-bucket lock), with no timeout.
#[cfg(loom)]
pub(crate) fn wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
    use crate::sync::atomic::Ordering;
    let (lock, cond) = &*QUEUE;
    let mut guard = lock.lock().unwrap();
    while word.load(Ordering::Relaxed) == expected {
        guard = cond.wait(guard).unwrap();
    }
}

/// The model's futex wake: wakes every waiter, which re-checks its word.
#[cfg(loom)]
pub(crate) fn wake_all(_word: &AtomicU32) {
    let (lock, cond) = &*QUEUE;
    let _guard = lock.lock().unwrap();
    cond.notify_all();
}
