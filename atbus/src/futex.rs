//! A shared (cross-process) futex: the blocking reader sleeps on a word in the segment,
//! writers wake it. Not `FUTEX_PRIVATE_FLAG`: the word lives in a `MAP_SHARED` mapping
//! that other processes map at other addresses, and the kernel keys shared futexes on
//! the underlying page, so a wake in one process reaches a waiter in another.

use std::time::Duration;

use crate::sync::atomic::AtomicU32;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns on a wake, on a value
/// mismatch (at once), on a signal, or when the timeout expires; callers re-check.
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
