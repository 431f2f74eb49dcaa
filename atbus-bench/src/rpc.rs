//! `rpc`: request/reply round trips between client processes and one server process,
//! over the bus (`atbus_bus::Endpoint::request` / `reply`) with the server spinning
//! (`try_recv_into` with [`PollWait`]) or in an event loop (`poll(2)` on the endpoint's
//! readiness fd after `arm`), beside two references in the same run, alternating: a
//! length-prefixed RPC over Unix stream sockets (a `poll(2)` server, blocking clients)
//! and iceoryx2's request-response of `[u8]` slices (`crate::iox_rpc`, feature
//! `iceoryx2`); and, as what the bus's round trip could reach, raw atbus channels
//! without the bus (`channel-spin`, `channel-fd`: the same servers, clients that poll for
//! the reply for up to [`CLIENT_SPIN`] before they sleep on the futex).
//!
//! Each client sends a request, waits for its reply, checks it, and sends the next; it
//! times every round trip with the monotonic clock into an HDR histogram, which the
//! parent merges over the clients (and the rounds). The reply has the request's length;
//! the server flips the first 8 bytes (the request's sequence number) with [`MARK`], and
//! for payloads of 16 bytes or more the last 8 bytes carry the sequence number too, so a
//! reply to another request, a truncated one or a request echoed back unanswered fails
//! the run.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atbus::{Backoff, Channel, Config};
use atbus_bus::Bus;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::board::{self, Board};
use crate::procs;
use crate::units::{bytes_arg, duration_arg, fmt_bytes};
use crate::Fail;

/// Options of `rpc`.
#[derive(clap::Args, Clone, Debug)]
pub struct RpcArgs {
    /// Request (and reply) payload sizes, comma separated; at least 8 bytes.
    #[arg(long, value_delimiter = ',', value_parser = bytes_arg,
          default_value = "8,1KiB,16KiB")]
    pub sizes: Vec<usize>,
    /// Numbers of client processes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub clients: Vec<usize>,
    /// Only these transports (comma separated): atbus-spin, atbus-fd (`atbus`: both),
    /// unix-stream, iceoryx2, channel-spin, channel-fd (`channel`: both).
    #[arg(long, value_delimiter = ',')]
    pub transports: Vec<String>,
    /// How long the clients make requests in each run.
    #[arg(long, value_parser = duration_arg, default_value = "1s")]
    pub secs: Duration,
    /// Rounds: every transport runs every (size, clients) once per round, alternating.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// CI mode: one round of 0.2 s runs (checks every reply, measures little).
    #[arg(long)]
    pub quick: bool,
    /// Print results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Hidden role of an rpc server or client process.
#[derive(clap::Args, Clone, Debug)]
pub struct RpcRole {
    #[arg(long)]
    transport: String,
    /// What the parent set up: the bus name, the socket descriptors or the iceoryx2
    /// service name (see [`Setup::arg`]).
    #[arg(long)]
    setup: String,
    #[arg(long)]
    board_fd: i32,
    #[arg(long)]
    client: usize,
    #[arg(long)]
    clients: usize,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    parent: u32,
}

/// How the requests travel, and how the server waits for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The bus; the server polls `try_recv_into` with [`PollWait`].
    AtbusSpin,
    /// The bus; the server waits in `poll(2)` on the endpoint's readiness fd.
    AtbusFd,
    /// Length-prefixed messages over Unix stream socketpairs; the server waits in
    /// `poll(2)` on all of them, clients block in `read`.
    UnixStream,
    /// iceoryx2 request-response (feature `iceoryx2`); server and clients poll.
    Iceoryx2,
    /// Raw atbus channels, no bus: one request channel into the server, one reply
    /// channel per client (the server finds it from the client index in the sequence
    /// number). The server is `atbus-fd`'s event loop; a client polls its reply channel
    /// for up to [`CLIENT_SPIN`], then sleeps on its futex (`recv_timeout`), where the
    /// bus's `request` polls 10 times before it sleeps.
    ChannelFd,
    /// As `channel-fd`, with `atbus-spin`'s server (`try_recv` and [`PollWait`]).
    ChannelSpin,
}

impl Transport {
    /// Every transport, in the order runs alternate.
    const ALL: [Transport; 6] = [
        Transport::AtbusSpin,
        Transport::AtbusFd,
        Transport::UnixStream,
        Transport::Iceoryx2,
        Transport::ChannelSpin,
        Transport::ChannelFd,
    ];

    /// Short name (also on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Transport::AtbusSpin => "atbus-spin",
            Transport::AtbusFd => "atbus-fd",
            Transport::UnixStream => "unix-stream",
            Transport::Iceoryx2 => "iceoryx2",
            Transport::ChannelFd => "channel-fd",
            Transport::ChannelSpin => "channel-spin",
        }
    }

    fn parse_one(s: &str) -> Result<Transport, String> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown transport {s:?} (atbus-spin, atbus-fd, atbus for both, \
                     unix-stream, iceoryx2, channel-spin, channel-fd, channel for both)"
                )
            })
    }

    /// Parses a `--transports` item; `atbus` and `channel` are both server modes.
    fn parse(s: &str) -> Result<Vec<Transport>, String> {
        match s {
            "atbus" => return Ok(vec![Transport::AtbusSpin, Transport::AtbusFd]),
            "channel" => return Ok(vec![Transport::ChannelSpin, Transport::ChannelFd]),
            _ => {}
        }
        Transport::parse_one(s).map(|t| vec![t])
    }
}

/// Why `iceoryx2` cannot run in a build without its feature, and how to get it.
pub const NO_ICEORYX2: &str = "iceoryx2: this atbus-bench was built without its `iceoryx2` \
     feature; build it with `--features iceoryx2` (`cargo run --release -p atbus-bench \
     --features iceoryx2 -- rpc ...`)";

/// The server's endpoint name on the bus.
const SERVER: &str = "server";
/// XORed into a request's first 8 bytes (its sequence number) by the server.
pub const MARK: u64 = 0x5245_504c_595f_4f4b;
/// Round trips each client makes before the measured run (page faults, connections,
/// the bus's destination cache), not recorded.
const WARMUP: u64 = 50;
/// A round trip that takes longer fails the run (a lost request or reply).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server's event loops wait before they look at the stop flag.
const STOP_POLL_MS: i32 = 100;
/// Board control words of an rpc run (`board::C_STOP` stops the clients).
const C_SERVER_READY: usize = 5;
const C_GO: usize = 6;
const C_SERVER_STOP: usize = 7;
/// Board global: clients that finished their warm-up.
const G_CLIENTS_READY: usize = 0;

/// How long a polling server (or iceoryx2 client) goes on yielding after its last
/// message before it starts sleeping.
const YIELD_FOR: Duration = Duration::from_micros(200);

/// How a polling side waits while nothing comes: 64 polls spinning, then a
/// `sched_yield` before every poll (any other process on the core runs first) until
/// [`YIELD_FOR`] has passed without a message, then `atbus::Backoff`'s sleeps (10 µs
/// growing to 1 ms). Plain `Backoff` sleeps after ten yields, a few microseconds: a
/// request/reply server whose next request comes a little later (the client was woken,
/// checked a 16 KiB reply, built the next) then sleeps, and a 10 µs sleep lasts about
/// 60 µs with Linux's default 50 µs timer slack; the late answer makes the client sleep
/// too, and the next request is late again (measured: p50 77 µs at 16 KiB, one
/// `clock_nanosleep` per round trip).
struct PollWait {
    polls: u32,
    idle_since: Option<Instant>,
    backoff: Backoff,
}

impl PollWait {
    /// A fresh wait.
    fn new() -> PollWait {
        PollWait {
            polls: 0,
            idle_since: None,
            backoff: Backoff::new(),
        }
    }

    /// After a message: start over.
    fn reset(&mut self) {
        *self = PollWait::new();
    }

    /// Nothing came: wait a little, longer the longer nothing comes.
    fn idle(&mut self) {
        self.polls = self.polls.saturating_add(1);
        if self.polls <= 64 {
            std::hint::spin_loop();
            return;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < YIELD_FOR {
            std::thread::yield_now();
        } else {
            self.backoff.snooze();
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Waits (with [`Backoff`]) until board control word `i` is set; fails if the clients'
/// stop flag is set first (the run was abandoned).
fn wait_for_flag(board: &Board, i: usize, what: &str) -> Result<(), String> {
    let mut backoff = Backoff::new();
    // Acquire: pairs with the parent's or the server's release store.
    while board.control(i).load(Ordering::Acquire) == 0 {
        // Relaxed: the stop flag only ends the wait.
        if board.control(board::C_STOP).load(Ordering::Relaxed) != 0 {
            return Err(format!("the run ended before {what}"));
        }
        backoff.snooze();
    }
    Ok(())
}

/// Writes request number `seq` into `req`: the first 8 bytes, and the last 8 too when
/// they do not overlap.
fn stamp(req: &mut [u8], seq: u64) {
    let n = req.len();
    req[..8].copy_from_slice(&seq.to_le_bytes());
    if n >= 16 {
        req[n - 8..].copy_from_slice(&seq.to_le_bytes());
    }
}

/// The server's answer, in place: the request with its first 8 bytes flipped by
/// [`MARK`]. Shorter messages stay as they are (the client then refuses the reply).
fn answer(msg: &mut [u8]) {
    if let Some(head) = msg.get_mut(..8) {
        let word = u64::from_le_bytes(head.try_into().expect("8 bytes")) ^ MARK;
        head.copy_from_slice(&word.to_le_bytes());
    }
}

/// Checks the reply to request `seq` of `size` bytes.
fn check_reply(reply: &[u8], seq: u64, size: usize) -> Result<(), String> {
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let ok = reply.len() == size
        && word(&reply[..8]) == seq ^ MARK
        && (size < 16 || word(&reply[size - 8..]) == seq);
    if ok {
        Ok(())
    } else {
        let answers = reply
            .get(..8)
            .map_or("none".to_string(), |h| format!("{:#x}", word(h) ^ MARK));
        Err(format!(
            "wrong reply to request {seq:#x} of {size} bytes: {} bytes, its head answering \
             request {answers}",
            reply.len()
        ))
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Parses `a,b,c` into descriptors.
fn parse_fds(s: &str) -> Result<Vec<RawFd>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|_| format!("bad descriptor list {s:?}")))
        .collect()
}

/// The unix-stream setup string `SERVER_FDS;CLIENT_FDS`: (server ends, client ends).
fn parse_unix_setup(s: &str) -> Result<(Vec<RawFd>, Vec<RawFd>), String> {
    let (server, client) = s
        .split_once(';')
        .ok_or_else(|| format!("bad unix-stream setup {s:?}"))?;
    Ok((parse_fds(server)?, parse_fds(client)?))
}

/// Closes inherited descriptors this process does not use.
fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: closing descriptors inherited from the parent that nothing in this
        // process has wrapped or uses.
        unsafe { libc::close(fd) };
    }
}

/// Waits up to [`STOP_POLL_MS`] for `fds` to be readable; returns how many are
/// (0 on timeout or a signal).
fn poll_in(pfds: &mut [libc::pollfd]) -> Result<usize, String> {
    for p in pfds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    // SAFETY: a valid array of pollfds on the caller's side, its true length.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, STOP_POLL_MS) };
    if n < 0 {
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(os_err("poll"));
    }
    Ok(n as usize)
}

// ------------------------------------------------------------------------- client

/// A client's connection to the server.
// One per client process for a whole run: its size does not matter, and boxing the
// endpoint would add a pointer chase to every round trip being measured.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Atbus(atbus_bus::Endpoint),
    Unix(UnixStream, Vec<u8>),
    #[cfg(feature = "iceoryx2")]
    Iceoryx2(crate::iox_rpc::IoxClient),
    /// The server's request channel, this client's reply channel, a receive buffer.
    Channel(atbus::Writer, atbus::Reader, Vec<u8>),
}

impl Conn {
    fn open(t: Transport, a: &RpcRole) -> Result<Conn, String> {
        Ok(match t {
            Transport::AtbusSpin | Transport::AtbusFd => {
                let bus = Bus::open(&a.setup).map_err(|e| e.to_string())?;
                let ep = bus
                    .join(&format!("client-{}", a.client))
                    .map_err(|e| e.to_string())?;
                Conn::Atbus(ep)
            }
            Transport::UnixStream => {
                let (server, client) = parse_unix_setup(&a.setup)?;
                let mine = *client
                    .get(a.client)
                    .ok_or_else(|| format!("no socket for client {}", a.client))?;
                close_all(&server);
                close_all(
                    &client
                        .iter()
                        .copied()
                        .filter(|&fd| fd != mine)
                        .collect::<Vec<_>>(),
                );
                // SAFETY: `mine` is this client's inherited end of its socketpair, owned
                // by nothing else in this process from here.
                let sock = unsafe { UnixStream::from_raw_fd(mine) };
                Conn::Unix(sock, Vec::with_capacity(4 + a.size))
            }
            #[cfg(feature = "iceoryx2")]
            Transport::Iceoryx2 => {
                Conn::Iceoryx2(crate::iox_rpc::IoxClient::open(&a.setup, a.size)?)
            }
            #[cfg(not(feature = "iceoryx2"))]
            Transport::Iceoryx2 => return Err(NO_ICEORYX2.into()),
            Transport::ChannelSpin | Transport::ChannelFd => {
                let open = |n: &str| Channel::open(n).map_err(|e| format!("{n}: {e}"));
                let requests = open(&server_channel(&a.setup))?.writer();
                let replies = open(&client_channel(&a.setup, a.client))?
                    .reader()
                    .map_err(|e| e.to_string())?;
                Conn::Channel(requests, replies, vec![0; a.size])
            }
        })
    }

    /// Sends `req`, waits for the reply and puts it into `reply`.
    #[inline]
    fn round_trip(&mut self, req: &[u8], reply: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Conn::Atbus(ep) => {
                ep.request_into(SERVER, req, reply, REQUEST_TIMEOUT)
                    .map_err(|e| format!("request: {e}"))?;
                Ok(())
            }
            Conn::Unix(sock, frame) => {
                frame.clear();
                frame.extend_from_slice(&(req.len() as u32).to_le_bytes());
                frame.extend_from_slice(req);
                sock.write_all(frame).map_err(|e| format!("write: {e}"))?;
                let mut len = [0u8; 4];
                sock.read_exact(&mut len)
                    .map_err(|e| format!("read of a reply's length: {e}"))?;
                let len = u32::from_le_bytes(len) as usize;
                if len > req.len() {
                    return Err(format!(
                        "a reply of {len} bytes to a request of {}",
                        req.len()
                    ));
                }
                reply.resize(len, 0);
                sock.read_exact(reply)
                    .map_err(|e| format!("read of a reply: {e}"))
            }
            #[cfg(feature = "iceoryx2")]
            Conn::Iceoryx2(c) => c.round_trip(req, reply, REQUEST_TIMEOUT),
            Conn::Channel(requests, replies, buf) => {
                requests.send(req).map_err(|e| format!("send: {e}"))?;
                let start = Instant::now();
                let mut polls = 0u32;
                let n = loop {
                    match replies.try_recv(buf) {
                        Ok(n) => break n,
                        Err(atbus::Error::Empty) => {}
                        Err(e) => return Err(format!("receive: {e}")),
                    }
                    polls += 1;
                    // Every 64 polls: a clock read (it costs as much as a poll), and a
                    // yield, which hands the core to the server if the scheduler put
                    // both on one.
                    if polls.is_multiple_of(64) {
                        if start.elapsed() >= CLIENT_SPIN {
                            break replies
                                .recv_timeout(buf, REQUEST_TIMEOUT)
                                .map_err(|e| format!("receive: {e}"))?;
                        }
                        std::thread::yield_now();
                    }
                    std::hint::spin_loop();
                };
                reply.clear();
                reply.extend_from_slice(&buf[..n]);
                Ok(())
            }
        }
    }
}

/// Client process: warm-up round trips, then timed ones until told to stop; prints one
/// JSON line: `{"round_trips": N, "histogram": [[ns, count], ...]}`.
pub fn client_role(a: RpcRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    let t = Transport::parse_one(&a.transport)?;
    if a.size < 8 {
        return Err(format!("payload of {} bytes: at least 8", a.size));
    }
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    wait_for_flag(&board, C_SERVER_READY, "the server was ready")?;
    let mut conn = Conn::open(t, &a)?;
    let mut req: Vec<u8> = (0..a.size).map(|i| i as u8).collect();
    let mut reply = Vec::with_capacity(a.size);
    let base = (a.client as u64) << 48;
    let mut seq = base;
    let who = format!("{} client {}", t.name(), a.client);
    for _ in 0..WARMUP {
        seq += 1;
        stamp(&mut req, seq);
        conn.round_trip(&req, &mut reply)
            .map_err(|e| format!("{who}: {e}"))?;
        check_reply(&reply, seq, a.size).map_err(|e| format!("{who}: {e}"))?;
    }
    // Release: pairs with the parent's acquire load of the count.
    board
        .global(G_CLIENTS_READY)
        .fetch_add(1, Ordering::Release);
    wait_for_flag(&board, C_GO, "the start")?;
    let stop: &AtomicU64 = board.control(board::C_STOP);
    let mut hist = histogram();
    let mut count = 0u64;
    // Relaxed: the flag only ends the loop; nothing is read after it that it publishes.
    while stop.load(Ordering::Relaxed) == 0 {
        seq += 1;
        stamp(&mut req, seq);
        let t0 = Instant::now();
        conn.round_trip(&req, &mut reply)
            .map_err(|e| format!("{who}: {e}"))?;
        let dt = t0.elapsed();
        check_reply(&reply, seq, a.size).map_err(|e| format!("{who}: {e}"))?;
        let _ = hist.record((dt.as_nanos() as u64).max(1));
        count += 1;
    }
    let buckets: Vec<[u64; 2]> = hist
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect();
    println!("{}", json!({ "round_trips": count, "histogram": buckets }));
    Ok(())
}

// ------------------------------------------------------------------------- server

/// Server process: answers every request until the server stop flag is set.
pub fn server_role(a: RpcRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    let t = Transport::parse_one(&a.transport)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let stop = board.control(C_SERVER_STOP);
    // Release: the server exists (joined, listening) before clients look for it.
    let ready = || board.control(C_SERVER_READY).store(1, Ordering::Release);
    let who = format!("{} server", t.name());
    let r = match t {
        Transport::AtbusSpin | Transport::AtbusFd => {
            let bus = Bus::open(&a.setup).map_err(|e| e.to_string())?;
            let mut ep = bus.join(SERVER).map_err(|e| e.to_string())?;
            ready();
            if t == Transport::AtbusSpin {
                serve_spin(&mut ep, stop)
            } else {
                serve_fd(&mut ep, stop)
            }
        }
        Transport::UnixStream => {
            let (server, client) = parse_unix_setup(&a.setup)?;
            close_all(&client);
            ready();
            serve_unix(&server, stop, a.size)
        }
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2 => {
            let mut server = crate::iox_rpc::IoxServer::open(&a.setup, a.size)?;
            ready();
            let mut wait = PollWait::new();
            // Relaxed: the flag only ends the loop.
            while stop.load(Ordering::Relaxed) == 0 {
                if server.serve_ready(|_, response| answer(response))? > 0 {
                    wait.reset();
                } else {
                    wait.idle();
                }
            }
            Ok(())
        }
        #[cfg(not(feature = "iceoryx2"))]
        Transport::Iceoryx2 => Err(NO_ICEORYX2.into()),
        Transport::ChannelSpin | Transport::ChannelFd => {
            let open = |n: &str| Channel::open(n).map_err(|e| format!("{n}: {e}"));
            let mut requests = open(&server_channel(&a.setup))?
                .reader()
                .map_err(|e| e.to_string())?;
            let replies = (0..a.clients)
                .map(|i| open(&client_channel(&a.setup, i)).map(|c| c.writer()))
                .collect::<Result<Vec<_>, _>>()?;
            ready();
            let spin = t == Transport::ChannelSpin;
            serve_channels(&mut requests, &replies, stop, a.size, spin)
        }
    };
    r.map_err(|e| format!("{who}: {e}"))
}

/// Answers a request where the endpoint received it: changed in place, sent back from
/// there (one copy in, one out, as the raw channels' server makes).
fn answer_request(mut request: atbus_bus::Received<'_>) -> Result<(), String> {
    answer(request.payload_mut());
    request
        .reply_in_place()
        .map_err(|e| format!("reply to {}: {e}", request.envelope().from()))
}

/// The spinning server: `try_recv_ref`, and while nothing comes, [`PollWait`] (spin,
/// then `sched_yield` for up to 200 µs, then sleeps), reset after every request: the
/// clients' processes share the two cores.
fn serve_spin(ep: &mut atbus_bus::Endpoint, stop: &AtomicU64) -> Result<(), String> {
    let mut wait = PollWait::new();
    // Relaxed: the flag only ends the loop.
    while stop.load(Ordering::Relaxed) == 0 {
        match ep.try_recv_ref() {
            Ok(request) => {
                answer_request(request)?;
                wait.reset();
            }
            Err(atbus_bus::Error::Empty) => wait.idle(),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    Ok(())
}

/// The event-loop server: receive until `Empty`, `arm`, `poll(2)` on the readiness fd.
fn serve_fd(ep: &mut atbus_bus::Endpoint, stop: &AtomicU64) -> Result<(), String> {
    let fd = ep
        .readiness_fd()
        .map_err(|e| format!("readiness fd: {e}"))?
        .as_raw_fd();
    let mut pfd = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        loop {
            match ep.try_recv_ref() {
                Ok(request) => answer_request(request)?,
                Err(atbus_bus::Error::Empty) => break,
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
        // Relaxed: the flag only ends the loop.
        if stop.load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        if ep.arm().map_err(|e| format!("arm: {e}"))? == atbus::Arm::Armed {
            poll_in(&mut pfd)?;
        }
    }
}

/// The Unix-socket server: `poll(2)` on every client's socket; a readable one has a
/// whole request (its client wrote it in one `write` and waits), read with blocking
/// reads and answered with one `write`. A client that closed its end is dropped.
fn serve_unix(fds: &[RawFd], stop: &AtomicU64, size: usize) -> Result<(), String> {
    let mut socks: Vec<Option<UnixStream>> = fds
        .iter()
        // SAFETY: the server ends of the socketpairs, inherited, owned by nothing else
        // in this process from here.
        .map(|&fd| Some(unsafe { UnixStream::from_raw_fd(fd) }))
        .collect();
    let mut frame = vec![0u8; 4 + size];
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(fds.len());
    let mut which: Vec<usize> = Vec::with_capacity(fds.len());
    // Relaxed: the flag only ends the loop.
    while stop.load(Ordering::Relaxed) == 0 {
        pfds.clear();
        which.clear();
        for (i, s) in socks.iter().enumerate() {
            if let Some(s) = s {
                pfds.push(libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                which.push(i);
            }
        }
        if poll_in(&mut pfds)? == 0 {
            continue;
        }
        for (p, &i) in pfds.iter().zip(&which) {
            if p.revents == 0 {
                continue;
            }
            let sock = socks[i].as_mut().expect("polled sockets are open");
            let mut len = [0u8; 4];
            match sock.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    socks[i] = None; // the client is done
                    continue;
                }
                Err(e) => return Err(format!("read of a request's length: {e}")),
            }
            let n = u32::from_le_bytes(len) as usize;
            if n > size {
                return Err(format!("a request of {n} bytes, more than {size}"));
            }
            frame[..4].copy_from_slice(&len);
            sock.read_exact(&mut frame[4..4 + n])
                .map_err(|e| format!("read of a request: {e}"))?;
            answer(&mut frame[4..4 + n]);
            sock.write_all(&frame[..4 + n])
                .map_err(|e| format!("write of a reply: {e}"))?;
        }
    }
    Ok(())
}

/// The server of the raw channels: answers every request waiting now, each reply to the
/// channel of the client its sequence number names; returns how many.
fn answer_channel_requests(
    requests: &mut atbus::Reader,
    replies: &[atbus::Writer],
    buf: &mut [u8],
) -> Result<usize, String> {
    let mut answered = 0;
    loop {
        match requests.try_recv(buf) {
            Ok(n) => {
                let msg = &mut buf[..n];
                let seq = msg
                    .get(..8)
                    .map_or(u64::MAX, |h| u64::from_le_bytes(h.try_into().expect("8")));
                let client = (seq >> 48) as usize;
                let out = replies
                    .get(client)
                    .ok_or_else(|| format!("a request from client {client}, who is not"))?;
                answer(msg);
                out.send(msg).map_err(|e| format!("reply: {e}"))?;
                answered += 1;
            }
            Err(atbus::Error::Empty) => return Ok(answered),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// `channel-spin`'s and `channel-fd`'s server: `atbus-spin`'s loop ([`PollWait`] while
/// nothing comes) or `atbus-fd`'s event loop, on the raw request channel.
fn serve_channels(
    requests: &mut atbus::Reader,
    replies: &[atbus::Writer],
    stop: &AtomicU64,
    size: usize,
    spin: bool,
) -> Result<(), String> {
    let mut buf = vec![0u8; size];
    if spin {
        let mut wait = PollWait::new();
        // Relaxed: the flag only ends the loop.
        while stop.load(Ordering::Relaxed) == 0 {
            if answer_channel_requests(requests, replies, &mut buf)? > 0 {
                wait.reset();
            } else {
                wait.idle();
            }
        }
        return Ok(());
    }
    let fd = requests
        .readiness_fd()
        .map_err(|e| format!("readiness fd: {e}"))?
        .as_raw_fd();
    let mut pfd = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        answer_channel_requests(requests, replies, &mut buf)?;
        // Relaxed: the flag only ends the loop.
        if stop.load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        if requests.arm().map_err(|e| format!("arm: {e}"))? == atbus::Arm::Armed {
            poll_in(&mut pfd)?;
        }
    }
}

/// The raw channels' request channel, from the run's name prefix.
fn server_channel(prefix: &str) -> String {
    format!("{prefix}-server")
}

/// The raw channels' reply channel of client `i`.
fn client_channel(prefix: &str, i: usize) -> String {
    format!("{prefix}-client{i}")
}

/// A p99 this many times the p50 or more, with several clients, means the clients took
/// turns in bursts (one of them running many round trips in a row while the others
/// waited for the CPU): the p50 then says how often that happened, not what a round trip
/// costs. On the 2-vCPU AMD EPYC VM such rows had p99 ÷ p50 of 87-250 (`channel-fd` at
/// 16 KiB × 8, iceoryx2 at 1 KiB × 8); rows whose clients were served in turn 1.4-7.5
/// (`atbus-fd` at every size × 8, `unix-stream`).
const BURSTS: f64 = 20.0;

/// How long a `channel-spin` or `channel-fd` client polls for its reply before it
/// sleeps: longer than a server's wake-up and answer take on an idle core (5 to 15 µs on
/// the 2-vCPU VMs), so a reply normally finds the client awake.
const CLIENT_SPIN: Duration = Duration::from_micros(50);

/// Size of the raw channels: as a bus endpoint's inbox.
const CHANNEL_BYTES: usize = atbus_bus::DEFAULT_INBOX_BYTES;

// ------------------------------------------------------------------------- parent

/// What the parent sets up for one run.
enum Setup {
    /// A bus, by name.
    Bus(String),
    /// One Unix stream socketpair per client: (server ends, client ends), inherited by
    /// the children; emptied once the parent has closed its copies.
    Unix(Vec<RawFd>, Vec<RawFd>),
    /// An iceoryx2 service, kept alive by the parent for the run.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2 {
        name: String,
        _owner: std::sync::Arc<crate::iox_rpc::Owner>,
    },
    /// The raw channels: their name prefix and how many clients.
    Channels(String, usize),
}

impl Setup {
    fn create(t: Transport, clients: usize, tag: &str) -> Result<Setup, String> {
        match t {
            Transport::AtbusSpin | Transport::AtbusFd => {
                let name = format!("/atbus-bench-rpc-{}-{tag}", std::process::id());
                // A leftover of a killed earlier run with our pid: remove it.
                let _ = Bus::unlink(&name);
                Bus::create(&name).map_err(|e| e.to_string())?;
                Ok(Setup::Bus(name))
            }
            Transport::UnixStream => {
                let mut setup = Setup::Unix(Vec::new(), Vec::new());
                for _ in 0..clients {
                    let mut fds = [0; 2];
                    // SAFETY: socketpair writes two descriptors into fds. No CLOEXEC:
                    // the children inherit them.
                    let rc = unsafe {
                        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr())
                    };
                    if rc != 0 {
                        let e = os_err("socketpair");
                        setup.close_fds();
                        return Err(e);
                    }
                    if let Setup::Unix(server, client) = &mut setup {
                        server.push(fds[0]);
                        client.push(fds[1]);
                    }
                }
                Ok(setup)
            }
            #[cfg(feature = "iceoryx2")]
            Transport::Iceoryx2 => {
                let name = format!("atbus-bench/rpc/{}/{tag}", std::process::id());
                let _owner = crate::iox_rpc::create(&name, clients)?;
                Ok(Setup::Iceoryx2 { name, _owner })
            }
            #[cfg(not(feature = "iceoryx2"))]
            Transport::Iceoryx2 => Err(NO_ICEORYX2.into()),
            Transport::ChannelSpin | Transport::ChannelFd => {
                let prefix = format!("/atbus-bench-rpcch-{}-{tag}", std::process::id());
                let setup = Setup::Channels(prefix.clone(), clients);
                let config = Config::default();
                let names = std::iter::once(server_channel(&prefix))
                    .chain((0..clients).map(|i| client_channel(&prefix, i)));
                for name in names {
                    if let Err(e) = crate::stress::create_channel(&name, CHANNEL_BYTES, &config) {
                        setup.destroy();
                        return Err(match e {
                            Fail::Usage(m) | Fail::Run(m) => m,
                        });
                    }
                }
                Ok(setup)
            }
        }
    }

    /// The string the children parse.
    fn arg(&self) -> String {
        let list = |fds: &[RawFd]| {
            fds.iter()
                .map(|fd| fd.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Setup::Bus(name) => name.clone(),
            Setup::Unix(server, client) => format!("{};{}", list(server), list(client)),
            #[cfg(feature = "iceoryx2")]
            Setup::Iceoryx2 { name, .. } => name.clone(),
            Setup::Channels(prefix, _) => prefix.clone(),
        }
    }

    /// Closes the parent's copies of the sockets (the children have theirs).
    fn close_fds(&mut self) {
        if let Setup::Unix(server, client) = self {
            close_all(&std::mem::take(server));
            close_all(&std::mem::take(client));
        }
    }

    /// Removes the bus (and its inboxes), closes descriptors, drops the service.
    fn destroy(mut self) {
        self.close_fds();
        match &self {
            Setup::Bus(name) => {
                let _ = Bus::unlink(name);
            }
            Setup::Channels(prefix, clients) => {
                let _ = Channel::unlink(&server_channel(prefix));
                for i in 0..*clients {
                    let _ = Channel::unlink(&client_channel(prefix, i));
                }
            }
            _ => {}
        }
    }
}

/// The children of one run; any still running when this is dropped are killed.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if !matches!(c.try_wait(), Ok(Some(_))) {
                procs::kill_and_reap(c);
            }
        }
    }
}

impl Children {
    /// The first child that has exited, if any: `who exited with STATUS`.
    fn exited(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|(who, c)| match c.try_wait() {
            Ok(Some(st)) => Some(format!("{who} exited early with {st}")),
            _ => None,
        })
    }
}

/// One measured run: the merged histogram (ns), round trips and the time they took.
struct Sample {
    hist: Histogram<u64>,
    round_trips: u64,
    secs: f64,
}

fn run_one(
    t: Transport,
    size: usize,
    clients: usize,
    secs: Duration,
    tag: &str,
) -> Result<Sample, String> {
    let mut setup = Setup::create(t, clients, tag)?;
    let result = run_on(t, &mut setup, size, clients, secs);
    setup.destroy();
    result
}

fn run_on(
    t: Transport,
    setup: &mut Setup,
    size: usize,
    clients: usize,
    secs: Duration,
) -> Result<Sample, String> {
    let board = Board::create().map_err(|e| format!("board: {e}"))?;
    let setup_arg = setup.arg();
    let role = |role: &str, client: usize| -> Vec<String> {
        vec![
            role.to_string(),
            "--transport".into(),
            t.name().into(),
            "--setup".into(),
            setup_arg.clone(),
            "--board-fd".into(),
            board.fd().to_string(),
            "--client".into(),
            client.to_string(),
            "--clients".into(),
            clients.to_string(),
            "--size".into(),
            size.to_string(),
            "--parent".into(),
            std::process::id().to_string(),
        ]
    };
    let mut children = Children(Vec::new());
    let server = procs::spawn_self(&role("__rpc-server", 0)).map_err(|e| format!("spawn: {e}"))?;
    children.0.push(("the server".into(), server));
    let mut outputs = Vec::new();
    for i in 0..clients {
        let mut c =
            procs::spawn_self_piped(&role("__rpc-client", i)).map_err(|e| format!("spawn: {e}"))?;
        let mut out = c.stdout.take().expect("piped stdout");
        // A thread per client reads its output, so a client never blocks on a full pipe.
        outputs.push(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }));
        children.0.push((format!("client {i}"), c));
    }
    setup.close_fds();
    // Each failure path stops the children (the guard kills what is left). The stop
    // flags publish nothing else: Release only to match the other stores of the board.
    let fail = |why: String| {
        board.control(board::C_STOP).store(1, Ordering::Release);
        board.control(C_SERVER_STOP).store(1, Ordering::Release);
        Err(why)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Acquire: pairs with each client's release increment after its warm-up.
    while board.global(G_CLIENTS_READY).load(Ordering::Acquire) < clients as u64 {
        if let Some(why) = children.exited() {
            return fail(why);
        }
        if procs::interrupted() > 0 {
            return fail("interrupted".into());
        }
        if Instant::now() >= deadline {
            return fail("the clients were not ready (warm-up done) within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    // Release: the clients start timing once they see it.
    board.control(C_GO).store(1, Ordering::Release);
    while t0.elapsed() < secs {
        std::thread::sleep(Duration::from_millis(5).min(secs));
        if let Some(why) = children.exited() {
            return fail(why);
        }
        if procs::interrupted() > 0 {
            return fail("interrupted".into());
        }
    }
    // Release as above; the clients' loads are Relaxed (the flag only ends their loop).
    board.control(board::C_STOP).store(1, Ordering::Release);
    let elapsed = t0.elapsed().as_secs_f64();
    let mut failure = None;
    // Clients first (their last round trips need the server), then the server.
    for (who, c) in children.0.iter_mut().skip(1) {
        match procs::wait_for(c, Duration::from_secs(20)) {
            Some(st) if st.success() => {}
            Some(st) => {
                failure.get_or_insert(format!("{who} exited with {st}"));
            }
            None => {
                failure.get_or_insert(format!("{who} hung and was killed"));
            }
        }
    }
    // Release as above; the server's loads are Relaxed (the flag only ends its loop).
    board.control(C_SERVER_STOP).store(1, Ordering::Release);
    let (who, server) = &mut children.0[0];
    match procs::wait_for(server, Duration::from_secs(20)) {
        Some(st) if st.success() => {}
        Some(st) => {
            failure.get_or_insert(format!("{who} exited with {st}"));
        }
        None => {
            failure.get_or_insert(format!("{who} hung and was killed"));
        }
    }
    drop(children);
    let outputs: Vec<String> = outputs
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    if let Some(f) = failure {
        return Err(f);
    }
    let mut hist = histogram();
    let mut round_trips = 0;
    for (i, out) in outputs.iter().enumerate() {
        let v: Value = out
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("client {i} printed no result: {out:?}"))?;
        round_trips += v["round_trips"].as_u64().unwrap_or(0);
        for b in v["histogram"].as_array().into_iter().flatten() {
            let (Some(ns), Some(n)) = (b[0].as_u64(), b[1].as_u64()) else {
                return Err(format!("client {i}: bad histogram entry {b}"));
            };
            hist.record_n(ns, n)
                .map_err(|e| format!("client {i}: histogram entry {b}: {e:?}"))?;
        }
    }
    Ok(Sample {
        hist,
        round_trips,
        secs: elapsed,
    })
}

/// Results of one (size, clients, transport) over all rounds.
struct Cell {
    size: usize,
    clients: usize,
    transport: Transport,
    hist: Histogram<u64>,
    round_trips: u64,
    rates: Vec<f64>,
    p50s: Vec<f64>,
    skipped: Option<String>,
    failure: Option<String>,
}

impl Cell {
    fn quantile_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    fn ran(&self) -> bool {
        self.skipped.is_none() && self.failure.is_none() && !self.hist.is_empty()
    }

    fn mean_us(&self) -> f64 {
        self.hist.mean() / 1000.0
    }

    /// Whether the clients took turns in bursts: a p99 at least [`BURSTS`] times the
    /// p50 (see there).
    fn turns_in_bursts(&self) -> bool {
        self.clients > 1 && self.quantile_us(0.99) >= BURSTS * self.quantile_us(0.5)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A target line: `what: value (target ...: met|missed)`.
fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

/// Runs `rpc`; returns the exit code.
pub fn run(args: RpcArgs) -> Result<i32, Fail> {
    let (rounds, secs) = if args.quick {
        (1, Duration::from_millis(200))
    } else {
        (args.rounds, args.secs)
    };
    if rounds == 0 {
        return Err(Fail::Usage("--rounds must be at least 1".into()));
    }
    if secs.is_zero() {
        return Err(Fail::Usage("--secs must be more than 0".into()));
    }
    if let Some(&s) = args.sizes.iter().find(|&&s| !(8..=1 << 20).contains(&s)) {
        return Err(Fail::Usage(format!(
            "--sizes {s}: payloads of 8 bytes to 1 MiB (the sequence number takes 8)"
        )));
    }
    if let Some(&c) = args.clients.iter().find(|&&c| !(1..=64).contains(&c)) {
        return Err(Fail::Usage(format!("--clients {c}: 1 to 64 clients")));
    }
    let mut transports: Vec<Transport> = Vec::new();
    if args.transports.is_empty() {
        transports = Transport::ALL.to_vec();
    } else {
        for t in &args.transports {
            for t in Transport::parse(t).map_err(Fail::Usage)? {
                if !transports.contains(&t) {
                    transports.push(t);
                }
            }
        }
    }
    // Asked for by name, iceoryx2 must run: say how to build it in (the default list only
    // marks its rows as skipped).
    if cfg!(not(feature = "iceoryx2"))
        && !args.transports.is_empty()
        && transports.contains(&Transport::Iceoryx2)
    {
        return Err(Fail::Usage(NO_ICEORYX2.into()));
    }
    procs::install_interrupt_handler();
    let mut cells = Vec::new();
    for &size in &args.sizes {
        for &clients in &args.clients {
            for &transport in &transports {
                let skipped = (transport == Transport::Iceoryx2 && cfg!(not(feature = "iceoryx2")))
                    .then(|| NO_ICEORYX2.to_string());
                cells.push(Cell {
                    size,
                    clients,
                    transport,
                    hist: histogram(),
                    round_trips: 0,
                    rates: Vec::new(),
                    p50s: Vec::new(),
                    skipped,
                    failure: None,
                });
            }
        }
    }
    let total_runs = cells.iter().filter(|c| c.skipped.is_none()).count() * rounds;
    let (cpu, vendor) = crate::compare::cpu_model();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    if !args.json {
        println!(
            "cpu: {cpu} ({vendor}, {} CPUs); load average at the start: {loadavg}",
            procs::cpu_count()
        );
        println!(
            "atbus-bench rpc: {} sizes x {} client counts x {} transports, {rounds} rounds of \
             {:.1} s runs ({total_runs} runs, alternating transports); every reply checked \
             (length, sequence number)",
            args.sizes.len(),
            args.clients.len(),
            transports.len(),
            secs.as_secs_f64()
        );
    }
    let mut done = 0;
    'rounds: for round in 0..rounds {
        for (ci, cell) in cells.iter_mut().enumerate() {
            if cell.skipped.is_some() || cell.failure.is_some() {
                continue;
            }
            if procs::interrupted() > 0 {
                break 'rounds;
            }
            done += 1;
            let tag = format!("{round}-{ci}");
            match run_one(cell.transport, cell.size, cell.clients, secs, &tag) {
                Ok(s) => {
                    let rate = s.round_trips as f64 / s.secs.max(1e-9);
                    let p50 = s.hist.value_at_quantile(0.5) as f64 / 1000.0;
                    if !args.json {
                        eprint!(
                            "\r[{done}/{total_runs}] {:>6} x{:<2} {:<12} p50 {:>8.2} us \
                             {:>10.0} round trips/s\x1b[K",
                            fmt_bytes(cell.size),
                            cell.clients,
                            cell.transport.name(),
                            p50,
                            rate
                        );
                    }
                    cell.hist
                        .add(&s.hist)
                        .map_err(|e| Fail::Run(format!("merging histograms: {e:?}")))?;
                    cell.round_trips += s.round_trips;
                    cell.rates.push(rate);
                    cell.p50s.push(p50);
                }
                Err(_) if procs::interrupted() > 0 => break 'rounds,
                Err(e) => cell.failure = Some(e),
            }
        }
    }
    if !args.json {
        eprintln!();
    }
    let interrupted = procs::interrupted() > 0;
    report(
        &args,
        &cells,
        rounds,
        secs,
        &cpu,
        &vendor,
        &loadavg,
        interrupted,
    )
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &RpcArgs,
    cells: &[Cell],
    rounds: usize,
    secs: Duration,
    cpu: &str,
    vendor: &str,
    loadavg: &str,
    interrupted: bool,
) -> Result<i32, Fail> {
    use std::fmt::Write as _;
    let bad = cells.iter().any(|c| c.failure.is_some());
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| payload | clients | transport | round trips | p50 µs | p99 µs | p99.9 µs | mean µs \
         | round trips/s (median of rounds) | checks |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|---|");
    let mut bursts = Vec::new();
    let mut rows = Vec::new();
    for c in cells {
        let checks = if let Some(s) = &c.skipped {
            format!("skipped: {s}")
        } else if let Some(f) = &c.failure {
            format!("FAILED: {f}")
        } else {
            "ok".to_string()
        };
        let rate = median(&c.rates);
        if c.ran() {
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {checks} |",
                fmt_bytes(c.size),
                c.clients,
                c.transport.name(),
                c.round_trips,
                c.quantile_us(0.5),
                c.quantile_us(0.99),
                c.quantile_us(0.999),
                c.mean_us(),
                rate
            );
            if c.turns_in_bursts() {
                bursts.push(format!(
                    "{} x{} {}: p99 is {:.0}x its p50 (mean {:.1} us): its clients took turns \
                     in bursts, one making many round trips while the others waited, so its \
                     p50 is not what a round trip costs",
                    fmt_bytes(c.size),
                    c.clients,
                    c.transport.name(),
                    c.quantile_us(0.99) / c.quantile_us(0.5),
                    c.mean_us()
                ));
            }
        } else {
            let _ = writeln!(
                table,
                "| {} | {} | {} | — | — | — | — | — | — | {checks} |",
                fmt_bytes(c.size),
                c.clients,
                c.transport.name()
            );
        }
        let q = |p: f64| c.ran().then(|| c.quantile_us(p));
        rows.push(json!({
            "size": c.size,
            "clients": c.clients,
            "transport": c.transport.name(),
            "round_trips": c.round_trips,
            "p50_us": q(0.5),
            "p90_us": q(0.9),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": c.ran().then(|| c.hist.max() as f64 / 1000.0),
            "mean_us": c.ran().then(|| c.mean_us()),
            "turns_in_bursts": c.ran() && c.turns_in_bursts(),
            "round_trips_per_s": c.ran().then_some(rate),
            "round_trips_per_s_per_round": c.rates,
            "p50_us_per_round": c.p50s,
            "skipped": c.skipped,
            "failure": c.failure,
        }));
    }
    // The targets, from the merged histograms.
    let p50 = |size: usize, clients: usize, t: Transport| {
        cells
            .iter()
            .find(|c| c.size == size && c.clients == clients && c.transport == t && c.ran())
            .map(|c| c.quantile_us(0.5))
    };
    let mut targets = Vec::new();
    let mut lines = Vec::new();
    for &size in &args.sizes {
        for &clients in &args.clients {
            let at = format!("{} x{clients}", fmt_bytes(size));
            if let Some(fd) = p50(size, clients, Transport::AtbusFd) {
                for (reference, limit) in [(Transport::UnixStream, 0.5), (Transport::Iceoryx2, 1.0)]
                {
                    if let Some(r) = p50(size, clients, reference) {
                        let ratio = fd / r;
                        lines.push(format!(
                            "{at}: atbus-fd p50 ÷ {} p50 = {fd:.2} / {r:.2} us = {ratio:.2} \
                             (target <= {limit}: {})",
                            reference.name(),
                            verdict(ratio <= limit)
                        ));
                        targets.push(json!({
                            "size": size, "clients": clients, "what": "atbus-fd p50 / reference p50",
                            "reference": reference.name(), "value": ratio, "target_max": limit,
                            "met": ratio <= limit,
                        }));
                    }
                }
            }
            if size == 8 {
                if let Some(spin) = p50(size, clients, Transport::AtbusSpin) {
                    lines.push(format!(
                        "{at}: atbus-spin p50 = {spin:.2} us (target <= 2 us: {})",
                        verdict(spin <= 2.0)
                    ));
                    targets.push(json!({
                        "size": size, "clients": clients, "what": "atbus-spin p50 us",
                        "value": spin, "target_max": 2.0, "met": spin <= 2.0,
                    }));
                }
            }
        }
    }
    if args.json {
        println!(
            "{}",
            json!({
                "command": "rpc",
                "schema": 1,
                "ok": !bad && !interrupted,
                "rounds": rounds,
                "secs_per_run": secs.as_secs_f64(),
                "cpu_model": cpu,
                "cpu_vendor": vendor,
                "cpus": procs::cpu_count(),
                "load_average_at_start": loadavg,
                "results": rows,
                "targets": targets,
            })
        );
    } else {
        print!("{table}");
        for l in lines.iter().chain(&bursts) {
            println!("{l}");
        }
        crate::report::print_verdict(
            (cpu, vendor),
            interrupted,
            bad.then_some("FAILED: a run failed (a wrong reply, a client or server error)"),
            "every reply passed its checks",
        );
    }
    Ok(if bad {
        1
    } else if interrupted {
        130
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_answer_to_the_request_passes_the_check() {
        for size in [8usize, 15, 16, 1024] {
            let mut req: Vec<u8> = (0..size).map(|i| i as u8).collect();
            stamp(&mut req, 7);
            let mut reply = req.clone();
            // The request echoed back unanswered is refused.
            assert!(check_reply(&reply, 7, size).is_err(), "{size}");
            answer(&mut reply);
            assert_eq!(check_reply(&reply, 7, size), Ok(()), "{size}");
            // The answer to another request, a truncated or a longer one, is refused.
            assert!(check_reply(&reply, 8, size).is_err(), "{size}");
            assert!(check_reply(&reply[..size - 1], 7, size).is_err(), "{size}");
            let mut longer = reply.clone();
            longer.push(0);
            assert!(check_reply(&longer, 7, size).is_err(), "{size}");
            if size >= 16 {
                // A reply whose tail belongs to another request is refused.
                let mut mixed = reply.clone();
                mixed[size - 8..].copy_from_slice(&9u64.to_le_bytes());
                assert!(check_reply(&mixed, 7, size).is_err(), "{size}");
            }
        }
        // A reply shorter than the sequence number does not panic.
        assert!(check_reply(&[1, 2, 3], 7, 8).is_err());
    }
}
