//! The reader's doorbell: a file descriptor that becomes readable when messages wait, for
//! event loops (epoll, poll, tokio's `AsyncFd`, mio, libuv's `uv_poll`).
//!
//! Writers reach it with no handshake: the reader creates a FIFO at a path next to the
//! segment (`/dev/shm/NAME.bell` for a shared-memory name `/NAME`, `PATH.bell` for a file
//! `PATH`), and a writer that finds the reader armed writes one byte to it, non-blocking,
//! ignoring every error (nobody there: `ENOENT`; FIFO full: `EAGAIN`, and then the fd is
//! readable anyway). Writers open the FIFO read-write, so it always has a reader and a
//! write never raises `SIGPIPE` or fails with `EPIPE`, and a writer never blocks on
//! notifying. A new reader that takes the role over creates the path anew and bumps the
//! segment's `wake.bell_epoch`; a writer whose open FIFO is of an older epoch opens the
//! path again. See `docs/event-loop.md` for why a FIFO and not a datagram socket or a
//! passed eventfd.
//!
//! **Who may open it.** Opening read-write needs read and write permission, and whoever
//! can read the FIFO can steal the bytes that wake the reader. So the FIFO is the
//! owner's (`0600`) plus read-write for the group and others exactly where they may write
//! the segment (its `0o022` bits): a user who may only read the channel cannot open it.
//! The mode is set with `fchmod` on the opened descriptor, never by path.
//!
//! **Whose it is.** The reader removes the path only while it holds the role and the path
//! still names its own FIFO (same device and inode as its descriptor): a reader of a
//! channel unlinked and created anew under the same name never removes the new reader's
//! FIFO.
//!
//! **Writers' descriptors.** A process keeps at most one FIFO open per channel handle set:
//! with the mapped segment, closed when the last `Channel`, `Writer` or `Reader` of that
//! mapping is dropped.
//!
//! The fd the reader hands out is an epoll instance holding that FIFO and a timerfd:
//! the timer wakes an armed reader that waits on a block whose writer may have died
//! mid-message (nobody else would ring), so it can skip the block after the timeout.
//!
//! Writers ring only when the reader has said it is going to sleep: the `sleeping` word
//! of [`WakeWord`](crate::layout::WakeWord) holds `ARMED_FUTEX` (1) or `ARMED_DOORBELL` (2),
//! and the first writer that publishes after it was set swaps it to 0 and rings (a futex
//! wake or a byte to the FIFO): one system call per sleep, none while the reader is awake.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Suffix of the doorbell FIFO's path, after the segment's path.
pub const SUFFIX: &str = ".bell";

/// The file-system path of the segment behind channel `name` (`/NAME` is a shared-memory
/// object in `/dev/shm`).
fn segment_path(name: &str) -> PathBuf {
    match name.strip_prefix('/') {
        Some(rest) if !rest.contains('/') => Path::new("/dev/shm").join(rest),
        _ => PathBuf::from(name),
    }
}

/// The path of channel `name`'s doorbell FIFO (whether or not a reader created it).
pub fn path(name: &str) -> PathBuf {
    let mut p = segment_path(name).into_os_string();
    p.push(SUFFIX);
    PathBuf::from(p)
}

/// Whether a doorbell FIFO exists for channel `name` (a reader created it; it may have
/// died since).
pub fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(path(name)).is_ok_and(|m| is_doorbell(m.file_type()))
}

/// A FIFO, or the socket an atbus of layout version 2 bound there.
fn is_doorbell(t: std::fs::FileType) -> bool {
    t.is_fifo() || t.is_socket()
}

/// Removes channel `name`'s doorbell FIFO, if any.
pub(crate) fn unlink(name: &str) {
    if exists(name) {
        let _ = std::fs::remove_file(path(name));
    }
}

/// Opens the FIFO at `path` read-write and non-blocking (so the open never waits for a
/// reader, and a write never finds the FIFO without one); `None` if there is none, or
/// something other than a FIFO is there.
fn open_fifo(path: &CString) -> Option<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; plain open(2), result checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor we own (checked non-negative).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: stat is plain old data, filled by fstat on an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open; `st` is writable.
    let ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
    (ok && st.st_mode & libc::S_IFMT == libc::S_IFIFO).then_some(fd)
}

/// Opens channel `name`'s doorbell FIFO as [`open_fifo`] does; `None` if there is none.
fn open_bell(name: &str) -> Option<OwnedFd> {
    open_fifo(&CString::new(path(name).as_os_str().as_bytes()).ok()?)
}

/// Writes one byte to a FIFO opened by [`open_fifo`]; never blocks, errors ignored.
fn write_byte(fifo: &OwnedFd) {
    let byte = 1u8;
    // SAFETY: `fifo` is open; the buffer is one readable byte on our stack.
    unsafe {
        libc::write(
            fifo.as_raw_fd(),
            &byte as *const u8 as *const libc::c_void,
            1,
        )
    };
}

/// FIFOs opened to ring (by writers of this process), counted for the tests that check
/// descriptors are reused.
// A process-wide statistic, never under the model checker: std's atomic is the one to use.
#[cfg(not(loom))]
#[allow(clippy::disallowed_types)]
static OPENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many doorbell FIFOs this process has opened to ring, ever (tests).
#[doc(hidden)]
#[cfg(not(loom))]
pub fn opened_to_ring() -> u64 {
    OPENS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A process's open doorbell FIFO for one channel, kept with the mapped segment (so it
/// is closed with the last handle), and the reader generation (`wake.bell_epoch`) it is
/// for.
#[derive(Default)]
pub(crate) struct BellCache(std::sync::Mutex<Option<(u32, OwnedFd)>>);

impl BellCache {
    /// Rings channel `name`'s doorbell: one byte to its FIFO, never blocking, never
    /// raising `SIGPIPE`, every error ignored (no FIFO: the reader is gone and its
    /// successor looks at the ring before it waits; FIFO full: the fd is readable
    /// anyway). `epoch` (the segment's `wake.bell_epoch`, read after taking the armed
    /// flag, so it is the armed reader's) says whether the kept FIFO is current; if not,
    /// the path is opened anew.
    pub(crate) fn ring(&self, name: &str, epoch: u32) {
        let mut kept = match self.0.try_lock() {
            Ok(kept) => kept,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // Another thread of this process rings this channel right now (for an
                // earlier sleep): ring from a descriptor of our own, once.
                if let Some(fifo) = open_to_ring(name) {
                    write_byte(&fifo);
                }
                return;
            }
        };
        if let Some((at, fifo)) = &*kept {
            if *at == epoch {
                write_byte(fifo);
                return;
            }
        }
        *kept = open_to_ring(name).map(|fifo| {
            write_byte(&fifo);
            (epoch, fifo)
        });
    }
}

/// Opens channel `name`'s doorbell to ring it, counted.
fn open_to_ring(name: &str) -> Option<OwnedFd> {
    #[cfg(not(loom))]
    OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    open_bell(name)
}

/// The reader's side: the FIFO, a timerfd, and the epoll instance holding both, which is
/// the fd handed to event loops.
pub(crate) struct Doorbell {
    epoll: OwnedFd,
    fifo: OwnedFd,
    timer: OwnedFd,
    /// Whether the timer may be set (so a disarm has to stop and drain it).
    timer_set: bool,
    path: PathBuf,
    /// Device and inode of our FIFO: the path is removed only while it still names it.
    identity: (u64, u64),
}

fn cvt(ret: libc::c_int, what: &'static str, name: &str) -> Result<libc::c_int> {
    if ret < 0 {
        return Err(Error::io(what, name, io::Error::last_os_error()));
    }
    Ok(ret)
}

/// Device and inode of an open descriptor.
fn identity_of(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    // SAFETY: stat is plain old data, filled by fstat on an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open; `st` is writable.
    let ok = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0;
    ok.then_some((st.st_dev, st.st_ino))
}

/// The doorbell FIFO's mode for a segment of mode `segment_mode`: read-write for the
/// owner, and for group and others exactly where they may write the segment.
pub(crate) fn fifo_mode(segment_mode: u32) -> u32 {
    let writers = segment_mode & 0o022;
    0o600 | writers | (writers << 1)
}

impl Doorbell {
    /// Creates channel `name`'s doorbell FIFO, for a segment of mode `segment_mode`.
    /// Called by the reader-role holder only, so a FIFO already at the path is a dead
    /// (or departed) reader's: it is replaced. The caller then bumps `wake.bell_epoch`
    /// before it first arms. Leaves nothing behind when it fails.
    pub(crate) fn create(name: &str, segment_mode: u32) -> Result<Doorbell> {
        let path = path(name);
        let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
            return Err(Error::InvalidName {
                name: name.into(),
                reason: "the channel name contains a NUL byte",
            });
        };
        let owned = |fd| {
            // SAFETY: a fresh descriptor that nothing else owns (checked by cvt).
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        // The descriptors that need no path first, so a failure leaves no FIFO behind.
        // SAFETY: plain timerfd_create(2) call with constant arguments.
        let timer = owned(cvt(
            unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            },
            "create the doorbell timerfd of",
            name,
        )?);
        // SAFETY: plain epoll_create1(2) call.
        let epoll = owned(cvt(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "create the doorbell epoll fd of",
            name,
        )?);
        // A FIFO left by a reader that died (we hold the role now, so it is not live).
        if exists(name) {
            let _ = std::fs::remove_file(&path);
        }
        // Owner-only until fchmod below widens it.
        cvt(
            // SAFETY: `c_path` is NUL-terminated; plain mkfifo(3), result checked.
            unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) },
            "create the doorbell FIFO (the segment path plus .bell) of",
            name,
        )?;
        let Some(fifo) = open_fifo(&c_path) else {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("open the doorbell FIFO of", name, e));
        };
        let Some(identity) = identity_of(std::os::fd::AsFd::as_fd(&fifo)) else {
            let e = io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("stat the doorbell FIFO of", name, e));
        };
        let bell = Doorbell {
            epoll,
            fifo,
            timer,
            timer_set: false,
            path,
            identity,
        };
        // From here on a failure unlinks our FIFO (and only ours) as `bell` drops.
        let fail = |bell: Doorbell, e: Error| {
            bell.unlink();
            Err(e)
        };
        // On the descriptor, not the path: the path could name another file by now.
        // SAFETY: `fifo` is open; fchmod(2) only changes its inode's mode.
        let chmod = unsafe { libc::fchmod(bell.fifo.as_raw_fd(), fifo_mode(segment_mode)) };
        if let Err(e) = cvt(chmod, "set the mode of the doorbell FIFO of", name) {
            return fail(bell, e);
        }
        for fd in [bell.fifo.as_raw_fd(), bell.timer.as_raw_fd()] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: both descriptors are open; `ev` is a valid epoll_event on our stack.
            let added = unsafe {
                libc::epoll_ctl(bell.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev)
            };
            if let Err(e) = cvt(added, "register the doorbell fds of", name) {
                return fail(bell, e);
            }
        }
        Ok(bell)
    }

    /// The fd to poll: readable when the doorbell rang or the timer expired.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.epoll.as_fd()
    }

    /// The FIFO and the timerfd themselves, for an event loop that registers both (as
    /// [`AsyncReader`](crate::AsyncReader) does) instead of the epoll fd holding them:
    /// one level of epoll less between a ring and the wake-up.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn wait_fds(&self) -> [BorrowedFd<'_>; 2] {
        use std::os::fd::AsFd;
        [self.fifo.as_fd(), self.timer.as_fd()]
    }

    /// Makes the fd readable after `after` even if nobody rings.
    pub(crate) fn set_timer(&mut self, after: Duration) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                // Zero would disarm the timer: at least 1 ns.
                tv_nsec: (after.subsec_nanos().max(1)) as libc::c_long,
            },
        };
        // SAFETY: `timer` is an open timerfd; `spec` is valid; old value not wanted.
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        self.timer_set = true;
    }

    /// Empties the FIFO (and the timer, if it was set), so the fd is no longer readable
    /// until the next ring.
    pub(crate) fn drain(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: `fifo` is open and non-blocking; `buf` is writable for its length.
            let n = unsafe {
                libc::read(
                    self.fifo.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            // A short read emptied it; -1 is EAGAIN: empty (any other error: nothing
            // more to read either). Never 0: we hold a write end ourselves.
            if n < buf.len() as isize {
                break;
            }
        }
        if self.timer_set {
            let stop: libc::itimerspec =
                // SAFETY: itimerspec is plain old data; zeroes disarm the timer.
                unsafe { std::mem::zeroed() };
            let mut ticks = 0u64;
            // SAFETY: `timer` is an open timerfd; `stop` is valid. The read is of 8 bytes
            // into a u64 on our stack, non-blocking (EAGAIN when it had not expired).
            unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), 0, &stop, std::ptr::null_mut());
                libc::read(
                    self.timer.as_raw_fd(),
                    &mut ticks as *mut u64 as *mut libc::c_void,
                    8,
                );
            }
            self.timer_set = false;
        }
    }

    /// Removes the FIFO's path if it still names this FIFO (the reader gives the role
    /// back); a FIFO another reader created there since is left alone.
    pub(crate) fn unlink(&self) {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// The FIFO's path.
    #[allow(dead_code)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
