//! The transports `compare` measures: atbus; the references it is measured against (the
//! `limit` ring, iceoryx2); and what a user would use instead (Unix datagram sockets, a
//! pipe with length-prefix framing, POSIX message queues). Each has a writer side and a
//! reader side that run in separate processes; the parent sets up the shared memory or
//! kernel objects and the children inherit descriptors or open names.

use std::ffi::CString;
use std::os::fd::RawFd;

use atbus::{Backoff, Channel, Error};

use crate::limit::{Ring, RingReader};

/// Largest atomic pipe write (Linux `PIPE_BUF`).
pub const PIPE_BUF: usize = 4096;
/// Bytes of the pipe framing (a little-endian u32 length before each message).
pub const PIPE_FRAME: usize = 4;
/// Queue depth asked for POSIX message queues (`/proc/sys/fs/mqueue/msg_max` caps it
/// without CAP_SYS_RESOURCE; default 10).
pub const MQ_MAXMSG: i64 = 10;

/// Why `iceoryx2` cannot run in a build without its feature, and how to get it.
pub const NO_ICEORYX2: &str = "iceoryx2: this atbus-bench was built without its `iceoryx2` \
     feature; build it with `--features iceoryx2` (`cargo run --release -p atbus-bench \
     --features iceoryx2 -- compare ...`)";

/// Which transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// atbus, copying: `send` and `try_recv`.
    Atbus,
    /// atbus zero-copy: `reserve` + fill in the ring + `commit`, `try_recv_in_place`.
    AtbusZeroCopy,
    /// atbus copying `send`, batched receive: `recv_batch` of up to
    /// [`BATCH`](crate::stress::BATCH) messages.
    AtbusBatch,
    /// atbus batched send: `try_send_batch` of [`SEND_BATCH`] messages a call (one claim
    /// of the write cursor each), copying `try_recv`.
    AtbusBatchSend,
    /// The bus on top of atbus: each writer an endpoint sending with `try_send_to` to
    /// the reader's endpoint, which receives with `try_recv_with` (`atbus_bus`; the
    /// envelope costs a few bytes per message).
    AtbusSendTo,
    /// The simplest correct multi-writer shared-memory ring ([`crate::limit`]).
    Limit,
    /// iceoryx2 publish-subscribe of `[u8]` slices (`crate::iox`; needs the non-default
    /// `iceoryx2` feature).
    Iceoryx2,
    UnixDgram,
    Pipe,
    Mq,
}

impl Kind {
    /// Every transport, in the order runs alternate.
    pub const ALL: [Kind; 10] = [
        Kind::Atbus,
        Kind::AtbusZeroCopy,
        Kind::AtbusBatch,
        Kind::AtbusBatchSend,
        Kind::AtbusSendTo,
        Kind::Limit,
        Kind::Iceoryx2,
        Kind::UnixDgram,
        Kind::Pipe,
        Kind::Mq,
    ];

    /// Short name (also on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Atbus => "atbus",
            Kind::AtbusZeroCopy => "atbus-zc",
            Kind::AtbusBatch => "atbus-batch",
            Kind::AtbusBatchSend => "atbus-batch-send",
            Kind::AtbusSendTo => "atbus-send-to",
            Kind::Limit => "limit",
            Kind::Iceoryx2 => "iceoryx2",
            Kind::UnixDgram => "unix-dgram",
            Kind::Pipe => "pipe",
            Kind::Mq => "posix-mq",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown transport {s:?} (atbus, atbus-zc, atbus-batch, atbus-batch-send, \
                     atbus-send-to, limit, iceoryx2, unix-dgram, pipe, posix-mq)"
                )
            })
    }

    /// One of the atbus variants.
    pub fn is_atbus(self) -> bool {
        matches!(
            self,
            Kind::Atbus
                | Kind::AtbusZeroCopy
                | Kind::AtbusBatch
                | Kind::AtbusBatchSend
                | Kind::AtbusSendTo
        )
    }

    /// Whether a run of this transport is worth making for messages up to `max_size`
    /// (batching and the bus's envelope are about per-message overhead: small messages
    /// only).
    pub fn measures(self, max_size: usize) -> bool {
        !matches!(
            self,
            Kind::AtbusBatch | Kind::AtbusBatchSend | Kind::AtbusSendTo
        ) || max_size <= 1024
    }

    /// Why this transport cannot carry a workload, if it cannot.
    pub fn cannot_carry(self, writers: usize, max_size: usize) -> Option<String> {
        match self {
            Kind::Iceoryx2 if cfg!(not(feature = "iceoryx2")) => Some(NO_ICEORYX2.into()),
            Kind::Pipe if writers > 1 && max_size + PIPE_FRAME > PIPE_BUF => Some(format!(
                "pipe: {max_size} B messages + {PIPE_FRAME} B frame exceed PIPE_BUF ({PIPE_BUF} \
                 B), so writes from several writers may interleave"
            )),
            Kind::Mq => {
                let limit = read_proc_usize("/proc/sys/fs/mqueue/msgsize_max").unwrap_or(8192);
                (max_size > limit && !has_cap_sys_resource()).then(|| {
                    format!(
                        "posix-mq: {max_size} B messages exceed \
                         /proc/sys/fs/mqueue/msgsize_max ({limit} B) and this process lacks \
                         CAP_SYS_RESOURCE to go beyond it"
                    )
                })
            }
            _ => None,
        }
    }
}

fn read_proc_usize(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn has_cap_sys_resource() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    // CAP_SYS_RESOURCE is capability 24.
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << 24) != 0)
}

/// What the parent set up for one run, passed to the children as a string.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// An atbus variant and a channel name.
    Atbus(Kind, String),
    /// A bus name and the reader endpoint's inbox size.
    Bus(String, usize),
    /// The shared-memory object name of a `limit` ring.
    Limit(String),
    /// An iceoryx2 service: its name, the largest message, the subscriber's buffer; in
    /// the parent, the service itself, kept alive for the run.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2 {
        name: String,
        max_size: usize,
        buffer: usize,
        _owner: Option<std::sync::Arc<crate::iox::Owner>>,
    },
    /// A socketpair: (reader fd, writer fd).
    UnixDgram(RawFd, RawFd),
    /// A pipe: (read fd, write fd).
    Pipe(RawFd, RawFd),
    /// A queue name and its message size.
    Mq(String, usize),
}

impl Endpoint {
    /// Creates the kernel object, channel or service for `kind`, for `writers` writers and
    /// messages up to `max_size` bytes.
    pub fn create(
        kind: Kind,
        tag: &str,
        writers: usize,
        max_size: usize,
        channel_size: usize,
    ) -> Result<Endpoint, String> {
        match kind {
            Kind::Atbus | Kind::AtbusZeroCopy | Kind::AtbusBatch | Kind::AtbusBatchSend => {
                let name = format!("/atbus-bench-cmp-{}-{tag}", std::process::id());
                crate::stress::create_channel(&name, channel_size, &atbus::Config::default())
                    .map_err(|e| format!("{e:?}"))?;
                Ok(Endpoint::Atbus(kind, name))
            }
            Kind::AtbusSendTo => {
                let name = format!("/atbus-bench-cmp-bus-{}-{tag}", std::process::id());
                atbus_bus::Bus::create(&name).map_err(|e| e.to_string())?;
                Ok(Endpoint::Bus(name, channel_size))
            }
            Kind::Limit => {
                let name = format!("/atbus-bench-cmp-limit-{}-{tag}", std::process::id());
                // The parent only creates it; the children map it by name.
                drop(Ring::create(&name, channel_size, max_size)?);
                Ok(Endpoint::Limit(name))
            }
            #[cfg(feature = "iceoryx2")]
            Kind::Iceoryx2 => {
                let name = format!("atbus-bench/compare/{}/{tag}", std::process::id());
                let buffer = crate::iox::buffer_size(writers, max_size, channel_size);
                let owner = crate::iox::create(&name, writers, buffer)?;
                Ok(Endpoint::Iceoryx2 {
                    name,
                    max_size,
                    buffer,
                    _owner: Some(owner),
                })
            }
            #[cfg(not(feature = "iceoryx2"))]
            Kind::Iceoryx2 => {
                let _ = writers;
                Err(Kind::Iceoryx2.cannot_carry(1, max_size).unwrap_or_default())
            }
            Kind::UnixDgram => {
                let mut fds = [0; 2];
                // SAFETY: socketpair writes two descriptors into fds. No CLOEXEC: the
                // children inherit them.
                let rc = unsafe {
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr())
                };
                if rc != 0 {
                    return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
                }
                Ok(Endpoint::UnixDgram(fds[0], fds[1]))
            }
            Kind::Pipe => {
                let mut fds = [0; 2];
                // SAFETY: pipe writes two descriptors into fds (inherited by children).
                if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
                    return Err(format!("pipe: {}", std::io::Error::last_os_error()));
                }
                Ok(Endpoint::Pipe(fds[0], fds[1]))
            }
            Kind::Mq => {
                let name = format!("/atbus-bench-cmp-{}-{tag}", std::process::id());
                let cname = CString::new(name.clone()).unwrap();
                // SAFETY: mq_attr is plain data.
                let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
                attr.mq_maxmsg = MQ_MAXMSG;
                attr.mq_msgsize = max_size as i64;
                // SAFETY: valid C string and attr; mode as the variadic argument.
                let q = unsafe {
                    libc::mq_open(
                        cname.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                        0o600 as libc::mode_t,
                        &attr as *const libc::mq_attr,
                    )
                };
                if q < 0 {
                    return Err(format!(
                        "mq_open({name}, maxmsg {MQ_MAXMSG}, msgsize {max_size}): {}",
                        std::io::Error::last_os_error()
                    ));
                }
                // SAFETY: closing our descriptor; children open the queue by name.
                unsafe { libc::mq_close(q) };
                Ok(Endpoint::Mq(name, max_size))
            }
        }
    }

    /// The string children parse.
    pub fn to_arg(&self) -> String {
        match self {
            Endpoint::Atbus(k, n) => format!("{}:{n}", k.name()),
            Endpoint::Bus(n, size) => format!("atbus-send-to:{size}:{n}"),
            Endpoint::Limit(n) => format!("limit:{n}"),
            #[cfg(feature = "iceoryx2")]
            Endpoint::Iceoryx2 {
                name,
                max_size,
                buffer,
                ..
            } => format!("iceoryx2:{max_size}:{buffer}:{name}"),
            Endpoint::UnixDgram(r, w) => format!("unix-dgram:{r}:{w}"),
            Endpoint::Pipe(r, w) => format!("pipe:{r}:{w}"),
            Endpoint::Mq(n, s) => format!("posix-mq:{n}:{s}"),
        }
    }

    /// Parses [`Endpoint::to_arg`].
    pub fn from_arg(s: &str) -> Result<Endpoint, String> {
        let bad = || format!("bad endpoint {s:?}");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let two = |rest: &str| -> Result<(i32, i32), String> {
            let (a, b) = rest.split_once(':').ok_or_else(bad)?;
            Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
        };
        Ok(match kind {
            "atbus" | "atbus-zc" | "atbus-batch" | "atbus-batch-send" => {
                Endpoint::Atbus(Kind::parse(kind)?, rest.into())
            }
            "atbus-send-to" => {
                let (size, n) = rest.split_once(':').ok_or_else(bad)?;
                Endpoint::Bus(n.into(), size.parse().map_err(|_| bad())?)
            }
            "limit" => Endpoint::Limit(rest.into()),
            #[cfg(feature = "iceoryx2")]
            "iceoryx2" => {
                let mut parts = rest.splitn(3, ':');
                let (Some(max_size), Some(buffer), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                Endpoint::Iceoryx2 {
                    name: name.into(),
                    max_size: max_size.parse().map_err(|_| bad())?,
                    buffer: buffer.parse().map_err(|_| bad())?,
                    _owner: None,
                }
            }
            "unix-dgram" => {
                let (r, w) = two(rest)?;
                Endpoint::UnixDgram(r, w)
            }
            "pipe" => {
                let (r, w) = two(rest)?;
                Endpoint::Pipe(r, w)
            }
            "posix-mq" => {
                let (n, size) = rest.rsplit_once(':').ok_or_else(bad)?;
                Endpoint::Mq(n.into(), size.parse().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        })
    }

    /// Removes names and closes the parent's descriptors.
    pub fn destroy(&self) {
        match self {
            Endpoint::Atbus(_, n) => {
                let _ = Channel::unlink(n);
            }
            Endpoint::Bus(n, _) => {
                let _ = atbus_bus::Bus::unlink(n);
            }
            Endpoint::Limit(n) => Ring::unlink(n),
            // The service goes when the last handle (the parent's `owner`) is dropped.
            #[cfg(feature = "iceoryx2")]
            Endpoint::Iceoryx2 { .. } => {}
            Endpoint::UnixDgram(r, w) | Endpoint::Pipe(r, w) => {
                // SAFETY: closing descriptors the parent created.
                unsafe {
                    libc::close(*r);
                    libc::close(*w);
                }
            }
            Endpoint::Mq(n, _) => {
                let c = CString::new(n.clone()).unwrap();
                // SAFETY: valid C string.
                unsafe { libc::mq_unlink(c.as_ptr()) };
            }
        }
    }

    /// Closes the parent's copies of the descriptors (the children have theirs).
    pub fn close_parent_fds(&self) {
        if let Endpoint::UnixDgram(r, w) | Endpoint::Pipe(r, w) = self {
            // SAFETY: closing descriptors the parent created and no longer uses.
            unsafe {
                libc::close(*r);
                libc::close(*w);
            }
        }
    }
}

/// Sends `msg` as one datagram on socket `fd`, retrying when a signal interrupts it.
pub fn send_datagram(fd: i32, msg: &[u8]) -> Result<(), String> {
    loop {
        // SAFETY: msg is a valid slice for msg.len() bytes; send only reads it.
        let n = unsafe { libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) };
        if n == msg.len() as isize {
            return Ok(());
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return Err(os_err("send"));
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn open_mq(name: &str, flags: i32) -> Result<libc::mqd_t, String> {
    let c = CString::new(name).unwrap();
    // SAFETY: valid C string; no O_CREAT, so no variadic arguments are read.
    let q = unsafe { libc::mq_open(c.as_ptr(), flags) };
    if q < 0 {
        return Err(os_err("mq_open"));
    }
    Ok(q)
}

/// The reader's endpoint name on an `atbus-send-to` bus.
const BUS_READER: &str = "reader";

/// Messages a writer of `atbus-batch-send` hands to one `try_send_batch` call.
pub const SEND_BATCH: usize = 16;

/// The sending side in a writer process.
// One sender lives for a whole run: its size does not matter, and boxing the bus endpoint
// would add a pointer chase to every send of the transport being measured.
#[allow(clippy::large_enum_variant)]
pub enum Sender {
    /// An atbus writer; `true`: zero-copy (`reserve` + `commit`).
    Atbus(atbus::Writer, bool),
    /// A bus endpoint of its own, sending to the reader's.
    Bus(atbus_bus::Endpoint),
    Limit(Ring),
    #[cfg(feature = "iceoryx2")]
    Iceoryx2(crate::iox::IoxSender),
    Fd(RawFd),
    Pipe(RawFd, Vec<u8>),
    Mq(libc::mqd_t),
}

impl Sender {
    /// Opens the writer side.
    pub fn open(ep: &Endpoint) -> Result<Sender, String> {
        Ok(match ep {
            Endpoint::Atbus(k, n) => {
                let ch = Channel::open(n).map_err(|e| e.to_string())?;
                Sender::Atbus(ch.writer(), *k == Kind::AtbusZeroCopy)
            }
            Endpoint::Bus(n, _) => {
                let bus = atbus_bus::Bus::open(n).map_err(|e| e.to_string())?;
                let me = format!("writer-{}", std::process::id());
                Sender::Bus(bus.join(&me).map_err(|e| e.to_string())?)
            }
            Endpoint::Limit(n) => Sender::Limit(Ring::open(n)?),
            #[cfg(feature = "iceoryx2")]
            Endpoint::Iceoryx2 { name, max_size, .. } => {
                Sender::Iceoryx2(crate::iox::IoxSender::open(name, *max_size)?)
            }
            Endpoint::UnixDgram(r, w) => {
                // SAFETY: closing the inherited reader end we do not use.
                unsafe { libc::close(*r) };
                Sender::Fd(*w)
            }
            Endpoint::Pipe(r, w) => {
                // SAFETY: as above.
                unsafe { libc::close(*r) };
                Sender::Pipe(*w, Vec::with_capacity(1 << 16))
            }
            Endpoint::Mq(n, _) => Sender::Mq(open_mq(n, libc::O_WRONLY)?),
        })
    }

    /// Sends one message of `len` bytes that `fill` writes: into the ring for a
    /// zero-copy atbus writer, else into `buf` (then sent from there). Waits while the
    /// transport is full.
    #[inline]
    pub fn send_with(
        &mut self,
        len: usize,
        buf: &mut [u8],
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), String> {
        if let Sender::Atbus(w, true) = self {
            let mut backoff = Backoff::new();
            loop {
                match w.reserve(len) {
                    Ok(mut slot) => {
                        fill(&mut slot);
                        return slot.commit().map_err(|e| e.to_string());
                    }
                    Err(Error::Full) => backoff.snooze(),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        fill(&mut buf[..len]);
        self.send(&buf[..len])
    }

    /// Sends `msgs` in order: an atbus writer with `try_send_batch` (one claim for as
    /// many as fit, waiting while the ring is full), any other transport one by one.
    pub fn send_batch(&mut self, msgs: &[&[u8]]) -> Result<(), String> {
        if let Sender::Atbus(w, _) = self {
            let mut rest = msgs;
            let mut backoff = Backoff::new();
            while !rest.is_empty() {
                match w.try_send_batch(rest) {
                    Ok(n) => {
                        rest = &rest[n..];
                        backoff = Backoff::new();
                    }
                    Err(Error::Full) => backoff.snooze(),
                    Err(e) => return Err(e.to_string()),
                }
            }
            return Ok(());
        }
        msgs.iter().try_for_each(|m| self.send(m))
    }

    /// Sends one message, waiting while the transport is full.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        match self {
            Sender::Atbus(w, _) => {
                let mut backoff = Backoff::new();
                loop {
                    match w.try_send(msg) {
                        Ok(()) => return Ok(()),
                        Err(Error::Full) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            // As the raw writer above: `try_*`, and `Backoff` while the inbox is full.
            Sender::Bus(ep) => {
                let mut backoff = Backoff::new();
                loop {
                    match ep.try_send_to(BUS_READER, msg) {
                        Ok(()) => return Ok(()),
                        Err(atbus_bus::Error::Full) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Sender::Limit(ring) => ring.send(msg),
            #[cfg(feature = "iceoryx2")]
            Sender::Iceoryx2(p) => p.send(msg),
            Sender::Fd(fd) => send_datagram(*fd, msg),
            Sender::Pipe(fd, frame) => {
                frame.clear();
                frame.extend_from_slice(&(msg.len() as u32).to_le_bytes());
                frame.extend_from_slice(msg);
                write_all(*fd, frame)
            }
            Sender::Mq(q) => loop {
                // SAFETY: msg is a valid slice; q is our queue.
                let rc = unsafe { libc::mq_send(*q, msg.as_ptr().cast(), msg.len(), 0) };
                if rc == 0 {
                    return Ok(());
                }
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(os_err("mq_send"));
            },
        }
    }
}

fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        // SAFETY: data is a valid slice; fd is our pipe.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os_err("write"));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// The receiving side in the reader process.
// One receiver lives for a whole run: its size does not matter, and boxing the atbus
// reader would add a pointer chase to every receive of the transport being measured.
#[allow(clippy::large_enum_variant)]
pub enum Receiver {
    /// An atbus reader and how it receives.
    Atbus(atbus::Reader, Kind),
    /// The reader's bus endpoint (payloads are checked in its receive buffer).
    Bus(atbus_bus::Endpoint),
    /// The `limit` ring's reader: messages are checked in their slot.
    Limit(RingReader),
    /// The iceoryx2 subscriber: samples are checked in shared memory.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2(crate::iox::IoxReceiver),
    Fd(RawFd),
    Pipe {
        fd: RawFd,
        buf: Vec<u8>,
        start: usize,
        end: usize,
    },
    Mq(libc::mqd_t, usize),
}

impl Receiver {
    /// Opens the reader side.
    pub fn open(ep: &Endpoint) -> Result<Receiver, String> {
        Ok(match ep {
            Endpoint::Atbus(_, n) => {
                let ch = Channel::open(n).map_err(|e| e.to_string())?;
                Receiver::Atbus(ch.reader().map_err(|e| e.to_string())?, kind_of(ep))
            }
            Endpoint::Bus(n, inbox_bytes) => {
                let bus = atbus_bus::Bus::open(n).map_err(|e| e.to_string())?;
                let ep = bus
                    .join_with(BUS_READER, *inbox_bytes)
                    .map_err(|e| e.to_string())?;
                Receiver::Bus(ep)
            }
            Endpoint::Limit(n) => Receiver::Limit(Ring::open(n)?.reader()),
            #[cfg(feature = "iceoryx2")]
            Endpoint::Iceoryx2 { name, buffer, .. } => {
                Receiver::Iceoryx2(crate::iox::IoxReceiver::open(name, *buffer)?)
            }
            Endpoint::UnixDgram(r, w) => {
                // SAFETY: closing the inherited writer end we do not use.
                unsafe { libc::close(*w) };
                Receiver::Fd(*r)
            }
            Endpoint::Pipe(r, w) => {
                // SAFETY: as above.
                unsafe { libc::close(*w) };
                Receiver::Pipe {
                    fd: *r,
                    buf: vec![0; 1 << 20],
                    start: 0,
                    end: 0,
                }
            }
            Endpoint::Mq(n, size) => Receiver::Mq(open_mq(n, libc::O_RDONLY)?, *size),
        })
    }

    /// Gets ready for `writers` writers before they send (connects iceoryx2's subscriber
    /// to their publishers; nothing for the others). Gives up when `abort` says so.
    pub fn prepare(&mut self, writers: usize, abort: impl Fn() -> bool) -> Result<(), String> {
        match self {
            #[cfg(feature = "iceoryx2")]
            Receiver::Iceoryx2(r) => r.connect(writers, abort),
            _ => {
                let _ = (writers, abort);
                Ok(())
            }
        }
    }

    /// Receives at least one message, handing each to `f`; returns how many. One at a
    /// time but for a batching atbus reader (up to [`BATCH`](crate::stress::BATCH));
    /// in the ring for a zero-copy one. Waits like [`recv`](Receiver::recv).
    #[inline]
    pub fn recv_some(
        &mut self,
        scratch: &mut [u8],
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        match self {
            Receiver::Atbus(r, Kind::AtbusBatch) => {
                let mut backoff = Backoff::new();
                loop {
                    match r.recv_batch(crate::stress::BATCH, &mut f) {
                        Ok(n) => return Ok(n),
                        Err(Error::Empty) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Receiver::Atbus(r, Kind::AtbusZeroCopy) => {
                let mut backoff = Backoff::new();
                loop {
                    // No faults in `compare`: `Damaged` (the bytes changed under `f`,
                    // which has already counted them) cannot happen and fails the run.
                    match r.try_recv_in_place(&mut f) {
                        Ok(()) => return Ok(1),
                        Err(Error::Empty) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            _ => self.recv(scratch, f).map(|()| 1),
        }
    }

    /// Receives the next message and hands it to `f`; returns what `f` returned.
    /// Waits (spin, yield, sleep for atbus and the shared-memory references; blocking for
    /// kernel transports).
    #[inline]
    pub fn recv<R>(&mut self, scratch: &mut [u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        match self {
            Receiver::Atbus(r, _) => {
                let mut backoff = Backoff::new();
                loop {
                    match r.try_recv(scratch) {
                        Ok(n) => return Ok(f(&scratch[..n])),
                        Err(Error::Empty) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Receiver::Bus(ep) => {
                let mut backoff = Backoff::new();
                let mut f = Some(f);
                loop {
                    // The payload where the endpoint received it (as `try_recv` into
                    // `scratch` above: one copy out of the ring). `f` runs at most once.
                    match ep.try_recv_with(|_, payload| f.take().map(|f| f(payload))) {
                        Ok(Some(r)) => return Ok(r),
                        Ok(None) => return Err("bus: a receive ran its closure twice".into()),
                        Err(atbus_bus::Error::Empty) => backoff.snooze(),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Receiver::Limit(r) => r.recv_with(f),
            #[cfg(feature = "iceoryx2")]
            Receiver::Iceoryx2(r) => r.recv_with(f),
            Receiver::Fd(fd) => loop {
                // SAFETY: scratch is a valid buffer; fd is our socket.
                let n = unsafe { libc::recv(*fd, scratch.as_mut_ptr().cast(), scratch.len(), 0) };
                if n >= 0 {
                    return Ok(f(&scratch[..n as usize]));
                }
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    return Err(os_err("recv"));
                }
            },
            Receiver::Pipe {
                fd,
                buf,
                start,
                end,
            } => loop {
                let have = *end - *start;
                if have >= PIPE_FRAME {
                    let len =
                        u32::from_le_bytes(buf[*start..*start + 4].try_into().unwrap()) as usize;
                    if len + PIPE_FRAME > buf.len() {
                        return Err(format!("pipe: frame of {len} bytes is garbage"));
                    }
                    if have >= PIPE_FRAME + len {
                        let m = *start + PIPE_FRAME;
                        *start = m + len;
                        return Ok(f(&buf[m..m + len]));
                    }
                }
                if *start > 0 {
                    buf.copy_within(*start..*end, 0);
                    *end -= *start;
                    *start = 0;
                }
                // SAFETY: reading into the free tail of our buffer.
                let n =
                    unsafe { libc::read(*fd, buf[*end..].as_mut_ptr().cast(), buf.len() - *end) };
                if n > 0 {
                    *end += n as usize;
                } else if n == 0 {
                    return Err("pipe: end of file before every writer finished".into());
                } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    return Err(os_err("read"));
                }
            },
            Receiver::Mq(q, size) => loop {
                let mut prio = 0u32;
                // SAFETY: scratch holds at least `size` bytes (checked by the caller).
                let n =
                    unsafe { libc::mq_receive(*q, scratch.as_mut_ptr().cast(), *size, &mut prio) };
                if n >= 0 {
                    return Ok(f(&scratch[..n as usize]));
                }
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    return Err(os_err("mq_receive"));
                }
            },
        }
    }
}

fn kind_of(ep: &Endpoint) -> Kind {
    match ep {
        Endpoint::Atbus(k, _) => *k,
        Endpoint::Bus(..) => Kind::AtbusSendTo,
        Endpoint::Limit(_) => Kind::Limit,
        #[cfg(feature = "iceoryx2")]
        Endpoint::Iceoryx2 { .. } => Kind::Iceoryx2,
        Endpoint::UnixDgram(..) => Kind::UnixDgram,
        Endpoint::Pipe(..) => Kind::Pipe,
        Endpoint::Mq(..) => Kind::Mq,
    }
}
