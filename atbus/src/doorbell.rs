//! The reader's doorbell: a file descriptor that becomes readable when messages wait, for
//! event loops (epoll, poll, tokio's `AsyncFd`, mio, libuv's `uv_poll`).
//!
//! Writers reach it with no handshake: the reader binds a Unix datagram socket at a path
//! next to the segment (`/dev/shm/NAME.bell` for a shared-memory name `/NAME`,
//! `PATH.bell` for a file `PATH`), with the segment's permission bits, and a writer that
//! finds the reader armed sends it one byte from an unbound socket of its process, with
//! `MSG_DONTWAIT | MSG_NOSIGNAL`, ignoring every error (nobody bound: `ENOENT` or
//! `ECONNREFUSED`; queue full: `EAGAIN`, and then the fd is readable anyway). A writer
//! never blocks on notifying and never gets `SIGPIPE`; a new reader that takes the role
//! over binds the path anew and writers already running reach it, since they address
//! the path on each ring. See `docs/event-loop.md` for why not a FIFO or a passed eventfd.
//!
//! The fd the reader hands out is an epoll instance holding that socket and a timerfd:
//! the timer wakes an armed reader that waits on a block whose writer may have died
//! mid-message (nobody else would ring), so it can skip the block after the timeout.
//!
//! Writers ring only when the reader has said it is going to sleep: the `sleeping` word
//! of [`WakeWord`](crate::layout::WakeWord) holds `ARMED_FUTEX` (1) or `ARMED_DOORBELL` (2),
//! and the first writer that publishes after it was set swaps it to 0 and rings (a futex
//! wake or a datagram): one system call per sleep, none while the reader is awake.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// `sleeping` value: a blocking reader sleeps on the futex `wake.seq`.
pub(crate) const ARMED_FUTEX: u32 = 1;
/// `sleeping` value: the reader waits for its doorbell fd to become readable.
pub(crate) const ARMED_DOORBELL: u32 = 2;

/// Suffix of the doorbell socket's path, after the segment's path.
pub const SUFFIX: &str = ".bell";

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes, NUL included).
const MAX_PATH: usize = 107;

/// The file-system path of the segment behind channel `name` (`/NAME` is a shared-memory
/// object in `/dev/shm`).
fn segment_path(name: &str) -> PathBuf {
    match name.strip_prefix('/') {
        Some(rest) if !rest.contains('/') => Path::new("/dev/shm").join(rest),
        _ => PathBuf::from(name),
    }
}

/// The path of channel `name`'s doorbell socket (whether or not a reader bound it).
pub fn path(name: &str) -> PathBuf {
    let mut p = segment_path(name).into_os_string();
    p.push(SUFFIX);
    PathBuf::from(p)
}

/// Whether a doorbell socket exists for channel `name` (a reader bound it; it may have
/// died since).
pub fn exists(name: &str) -> bool {
    std::fs::symlink_metadata(path(name)).is_ok_and(|m| m.file_type().is_socket())
}

/// Removes channel `name`'s doorbell socket, if any.
pub(crate) fn unlink(name: &str) {
    let p = path(name);
    if exists(name) {
        let _ = std::fs::remove_file(p);
    }
}

/// Builds the socket address of `name`'s doorbell on the stack (no allocation: writers
/// call this on their ring path). `None` when the path does not fit a socket address.
fn sockaddr(name: &str) -> Option<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (prefix, rest): (&[u8], &[u8]) = match name.strip_prefix('/') {
        Some(rest) if !rest.contains('/') => (b"/dev/shm/", rest.as_bytes()),
        _ => (b"", name.as_bytes()),
    };
    let len = prefix.len() + rest.len() + SUFFIX.len();
    if len > MAX_PATH || name.contains('\0') {
        return None;
    }
    let parts = [prefix, rest, SUFFIX.as_bytes()];
    let mut at = 0;
    for part in parts {
        for &b in part {
            addr.sun_path[at] = b as libc::c_char;
            at += 1;
        }
    }
    // The NUL terminator is already there (zeroed, and len <= 107).
    let socklen = std::mem::size_of::<libc::sa_family_t>() + len + 1;
    Some((addr, socklen as libc::socklen_t))
}

/// Channels whose doorbell a thread keeps a connected socket to, at most.
const MAX_CONNECTED: usize = 16;

thread_local! {
    /// Per thread: a datagram socket connected to each doorbell this thread rang, so a
    /// ring is one `send` with no path lookup (measured: the lookup of `sendto` to a
    /// path cost more than the wake-up itself).
    static CONNECTED: std::cell::RefCell<Vec<(Box<str>, OwnedFd)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A new unbound, non-blocking datagram socket.
fn unbound_socket() -> Option<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    // SAFETY: `fd` is a fresh descriptor we own (checked non-negative).
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects `sock` to channel `name`'s doorbell; false if nobody is bound there.
fn connect(sock: &OwnedFd, name: &str) -> bool {
    let Some((addr, len)) = sockaddr(name) else {
        return false;
    };
    // SAFETY: `sock` is an open socket; `addr` is an initialised sockaddr_un of which the
    // kernel reads `len` bytes.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    rc == 0
}

/// Sends one byte on a connected socket; the error, if any.
fn send_byte(sock: &OwnedFd) -> Option<i32> {
    let byte = 1u8;
    // SAFETY: `sock` is an open socket; the buffer is one readable byte on our stack.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            &byte as *const u8 as *const libc::c_void,
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    (n < 0).then(|| io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Rings channel `name`'s doorbell: one datagram of one byte, never blocking, never
/// raising `SIGPIPE`, every error ignored (nobody bound: the reader is gone and its
/// successor looks at the ring before it waits; queue full: the fd is readable anyway).
///
/// The thread's socket stays connected to the reader's socket. A reader that gives the
/// role up closes its socket before it does, so a send to it fails (`ECONNREFUSED`) and
/// the socket is connected again, by path, to the current reader's, and the byte sent
/// once more.
pub(crate) fn ring(name: &str) {
    let rung = CONNECTED.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return false;
        };
        let at = match cache.iter().position(|(n, _)| **n == *name) {
            Some(at) => at,
            None => {
                let Some(sock) = unbound_socket() else {
                    return false;
                };
                if !connect(&sock, name) {
                    return true; // nobody bound: no reader to wake
                }
                if cache.len() >= MAX_CONNECTED {
                    cache.remove(0);
                }
                cache.push((name.into(), sock));
                cache.len() - 1
            }
        };
        let sock = &cache[at].1;
        match send_byte(sock) {
            None | Some(libc::EAGAIN) => {}
            Some(_) => {
                // The reader we were connected to is gone: reach its successor.
                if connect(sock, name) {
                    let _ = send_byte(sock);
                } else {
                    cache.remove(at);
                }
            }
        }
        true
    });
    if !matches!(rung, Ok(true)) {
        // This thread's cache is gone (a publish from a thread-local destructor) or
        // busy: ring from a socket of its own, once.
        if let Some(sock) = unbound_socket() {
            if connect(&sock, name) {
                let _ = send_byte(&sock);
            }
        }
    }
}

/// The reader's side: the bound socket, a timerfd, and the epoll instance holding both,
/// which is the fd handed to event loops.
pub(crate) struct Doorbell {
    epoll: OwnedFd,
    sock: OwnedFd,
    timer: OwnedFd,
    /// Whether the timer may be set (so a disarm has to stop and drain it).
    timer_set: bool,
    path: PathBuf,
}

fn cvt(ret: libc::c_int, what: &'static str, name: &str) -> Result<libc::c_int> {
    if ret < 0 {
        return Err(Error::io(what, name, io::Error::last_os_error()));
    }
    Ok(ret)
}

impl Doorbell {
    /// Binds channel `name`'s doorbell. Called by the reader-role holder only, so a socket
    /// already at the path is a dead reader's: it is replaced.
    pub(crate) fn bind(name: &str) -> Result<Doorbell> {
        let path = path(name);
        let Some((addr, addr_len)) = sockaddr(name) else {
            return Err(Error::InvalidName {
                name: name.into(),
                reason: "the reader's doorbell socket path (the segment path plus \".bell\") \
                         is longer than 107 bytes; use a shorter channel name for an \
                         event-loop reader",
            });
        };
        // A socket left by a reader that died (we hold the role now, so it is not live).
        if exists(name) {
            let _ = std::fs::remove_file(&path);
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let sock = cvt(
            unsafe {
                libc::socket(
                    libc::AF_UNIX,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            },
            "create the doorbell socket of",
            name,
        )?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(sock) };
        // SAFETY: `addr` is an initialised sockaddr_un of which the kernel reads `addr_len`
        // bytes; `sock` is open.
        let bound = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                addr_len,
            )
        };
        cvt(
            bound,
            "bind the doorbell socket (the segment path plus .bell) of",
            name,
        )?;
        // Writers need write permission on the socket: give it the segment's mode, so
        // exactly those who may write the segment may ring.
        if let Ok(meta) = std::fs::metadata(segment_path(name)) {
            let mode = meta.permissions().mode() & 0o777;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
        let bell = |fd| {
            // SAFETY: a fresh descriptor that nothing else owns (checked by cvt).
            unsafe { OwnedFd::from_raw_fd(fd) }
        };
        // SAFETY: plain timerfd_create(2) call with constant arguments.
        let timer = bell(cvt(
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
        let epoll = bell(cvt(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "create the doorbell epoll fd of",
            name,
        )?);
        for fd in [&sock, &timer] {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd.as_raw_fd() as u64,
            };
            // SAFETY: both descriptors are open; `ev` is a valid epoll_event on our stack.
            let added = unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    fd.as_raw_fd(),
                    &mut ev,
                )
            };
            cvt(added, "register the doorbell fds of", name)?;
        }
        Ok(Doorbell {
            epoll,
            sock,
            timer,
            timer_set: false,
            path,
        })
    }

    /// The fd to poll: readable when the doorbell rang or the timer expired.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.epoll.as_fd()
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

    /// Empties the socket (and the timer, if it was set), so the fd is no longer readable
    /// until the next ring.
    pub(crate) fn drain(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: `sock` is open and non-blocking; `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                break; // EAGAIN: empty (any other error: nothing more to read either)
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

    /// Removes the socket's path (the reader gives the role back).
    pub(crate) fn unlink(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// The socket's path.
    #[allow(dead_code)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
