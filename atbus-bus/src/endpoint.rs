//! An endpoint: a name on the bus with its own inbox. Sends to other endpoints by name,
//! receives with an envelope, makes requests and answers them.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use atbus::{Arm, Channel, Reader, Writer};

use crate::bus::{Bus, SWEEP_PERIOD};
use crate::directory::state;
use crate::envelope::{self, Envelope, Kind, ALIGN_BODY_FROM, MAX_ENVELOPE};
use crate::error::{Error, Result};
use crate::fault::{self, CrashPoint};
use crate::name::{self, Name, HEAD_BYTES};

/// How often a waiting call looks at its peer's record and process: a peer that dies or
/// leaves is reported (`PeerGone`) this long after at most, plus the look itself.
pub const PEER_POLL: Duration = Duration::from_millis(100);
/// How long [`Endpoint::request`] polls for its reply before it sleeps on its inbox.
pub const REQUEST_POLL: Duration = Duration::from_micros(50);
/// While a request of at least this many bytes (or one whose last reply was this long)
/// waits for its reply, it yields the CPU after every poll instead of every 64: its
/// server needs a core for a while to copy such messages, and a requester spinning on a
/// shared core takes it away. Measured with `atbus-bench rpc` on 2 vCPUs: 8 clients of
/// 16 KiB requests made 1.4-1.5x the round trips, p99 from 1.4 ms to under 0.1 ms; at
/// 1 KiB and 4 KiB yielding cost 10-30 % of the round trips (docs/benchmarks.md, "Long
/// requests yield").
pub const LONG_EXCHANGE: usize = 8 << 10;
/// Destinations whose resolved writer an endpoint keeps; beyond, the oldest is dropped.
const MAX_TARGETS: usize = 64;
/// How many recent senders' names a receive remembers (see `Endpoint::known_senders`).
const KNOWN_SENDERS: usize = 8;

/// A received message: its envelope and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Kind, sender, correlation id.
    pub envelope: Envelope,
    /// The payload, exactly as sent.
    pub payload: Vec<u8>,
}

/// Counters of what an endpoint dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Replies that matched no waiting request: late (after their request timed out),
    /// addressed to another generation, or from another endpoint than the one asked.
    pub dropped_replies: u64,
    /// Messages whose envelope did not decode.
    pub malformed: u64,
    /// Messages received while a request waited, held for `recv`.
    pub held: usize,
}

/// Which envelope goes in front of a message's body.
#[derive(Clone, Copy)]
enum Head {
    /// The endpoint's data envelope, built once.
    Data,
    /// The one just built into `out` (a request's or a reply's).
    Built,
}

/// What a message that arrives while a request waits is (see `Endpoint::sort`).
enum Sorted {
    Reply,
    Hold,
    Dropped,
}

/// A request sent and waiting for its reply.
pub(crate) struct Pending {
    correlation: u64,
    peer: Name,
    peer_generation: u64,
    /// When to look at the peer's record and process next.
    pub(crate) next_look: Instant,
}

/// How long a call may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    Now,
    Until(Instant),
    Forever,
}

impl Wait {
    fn after(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// A destination as last resolved.
struct Target {
    name: Name,
    writer: Writer,
    index: usize,
    /// The record's seq at resolution: identifies the claim.
    seq: u64,
    generation: u64,
    pid: u32,
    /// The directory epoch the resolution is good for.
    epoch: u64,
}

/// A joined endpoint: owns its inbox's reader. Dropping it leaves the bus (inbox
/// unlinked, record freed). Made by [`Bus::join`].
///
/// Use it in the process that joined: the record names that process (pid and start
/// time), so do not carry an endpoint, or a [`Bus`], across `fork`.
///
/// ```
/// # let bus_name = format!("/atbus-doc-endpoint-{}", std::process::id());
/// use std::time::Duration;
/// use atbus_bus::{Bus, Kind};
///
/// let bus = Bus::create(&bus_name)?;
/// let mut server = bus.join("echo")?;
/// let mut client = bus.join("client")?;
///
/// // A request waits for its reply; a server answers from its receive loop.
/// let handle = std::thread::spawn(move || -> atbus_bus::Result<()> {
///     let msg = server.recv_timeout(Duration::from_secs(5))?;
///     assert_eq!(msg.envelope.kind, Kind::Request);
///     let mut answer = msg.payload.clone();
///     answer.reverse();
///     server.reply(&msg.envelope, &answer)
/// });
/// let answer = client.request("echo", b"ping", Duration::from_secs(5))?;
/// assert_eq!(answer, b"gnip");
/// handle.join().unwrap()?;
/// # drop(client);
/// # atbus_bus::Bus::unlink(&bus_name)?;
/// # Ok::<(), atbus_bus::Error>(())
/// ```
pub struct Endpoint {
    bus: Bus,
    name: Name,
    index: usize,
    seq: u64,
    generation: u64,
    inbox: String,
    channel: Channel,
    /// Always `Some` until drop, which gives the reader role back before unlinking.
    reader: Option<Reader>,
    targets: Vec<Target>,
    /// The outgoing message being built: envelope, then payload.
    out: Vec<u8>,
    /// The envelope of every data message this endpoint sends (it never changes), with
    /// its crc: a data message's crc pass covers the body alone.
    data_prefix: atbus::Prefix,
    /// The same, padded: for bodies of [`ALIGN_BODY_FROM`] bytes and more.
    aligned_data_prefix: atbus::Prefix,
    /// The incoming message being received.
    buf: Vec<u8>,
    /// Recent senders' names, by their pid modulo [`KNOWN_SENDERS`]: a name found here
    /// is not validated again (several senders interleave in a busy inbox).
    known_senders: [Name; KNOWN_SENDERS],
    /// Messages that arrived while a request waited, in arrival order.
    held: VecDeque<Message>,
    next_correlation: u64,
    /// The payload length of the last reply a request got (see `poll_for_reply`).
    last_reply_len: usize,
    stats: EndpointStats,
}

impl Endpoint {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        bus: Bus,
        name: Name,
        index: usize,
        seq: u64,
        generation: u64,
        inbox: String,
        channel: Channel,
        reader: Reader,
    ) -> Endpoint {
        let data_prefix = |padded| {
            let mut head = Vec::new();
            envelope::encode(
                &mut head,
                Kind::Data,
                name.as_str(),
                generation,
                0,
                0,
                padded,
            );
            atbus::Prefix::new(&head)
        };
        Endpoint {
            data_prefix: data_prefix(false),
            aligned_data_prefix: data_prefix(true),
            bus,
            name,
            index,
            seq,
            generation,
            inbox,
            channel,
            reader: Some(reader),
            targets: Vec::new(),
            out: Vec::with_capacity(256),
            buf: vec![0; 4096],
            known_senders: [Name::NONE; KNOWN_SENDERS],
            last_reply_len: 0,
            held: VecDeque::new(),
            next_correlation: 1,
            stats: EndpointStats::default(),
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The endpoint's generation: unique on this bus, new at every join.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The name of the endpoint's inbox channel.
    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    /// The bus the endpoint is on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// What the endpoint dropped, and what it holds for `recv`.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            held: self.held.len(),
            ..self.stats
        }
    }

    /// The largest payload this endpoint's inbox accepts from a sender whose name has
    /// 63 bytes (other inboxes may differ).
    pub fn max_payload_len(&self) -> usize {
        self.channel.max_message_len().saturating_sub(MAX_ENVELOPE)
    }

    fn reader(&mut self) -> &mut Reader {
        self.reader.as_mut().expect("the reader lives until drop")
    }

    // ------------------------------------------------------------------ sending

    /// Sends `message` to endpoint `to`, waiting for room in its inbox as long as it
    /// takes while the peer lives. `NoSuchEndpoint` if no endpoint of that name is
    /// ready; `PeerGone` if it leaves or dies meanwhile (noticed within [`PEER_POLL`]).
    /// Messages one endpoint sends to one destination arrive in the order sent.
    pub fn send_to(&mut self, to: &str, message: &[u8]) -> Result<()> {
        self.deliver(to, None, Wait::Forever, Head::Data, message)
            .map(drop)
    }

    /// Sends `message` to `to`, or fails at once: `Full` when its inbox has no room now
    /// (nothing was sent). No system call when the destination is cached.
    pub fn try_send_to(&mut self, to: &str, message: &[u8]) -> Result<()> {
        self.deliver(to, None, Wait::Now, Head::Data, message)
            .map(drop)
    }

    /// Sends `message` to `to`, waiting up to `timeout` for room: `Timeout` if the inbox
    /// stays full.
    pub fn send_to_timeout(&mut self, to: &str, message: &[u8], timeout: Duration) -> Result<()> {
        self.deliver(to, None, Wait::after(timeout), Head::Data, message)
            .map(drop)
    }

    /// Sends an envelope (`head`) followed by `body` as one message to `to` (of
    /// generation `expect`, if given), the two written into the ring in place
    /// (`Writer::try_send_prefixed` for data, whose envelope's crc is known;
    /// `Writer::try_send_parts` for the others); returns the target.
    fn deliver(
        &mut self,
        to: &str,
        expect: Option<u64>,
        wait: Wait,
        head: Head,
        body: &[u8],
    ) -> Result<usize> {
        let i = self.target(to)?;
        let t = &self.targets[i];
        if expect.is_some_and(|g| g != t.generation) {
            return Err(Error::PeerGone {
                name: to.into(),
                pid: t.pid,
            });
        }
        let parts = [&self.out[..], body];
        let prefix = if body.len() >= ALIGN_BODY_FROM {
            &self.aligned_data_prefix
        } else {
            &self.data_prefix
        };
        let send = |slice: Option<Duration>| match (head, slice) {
            (Head::Data, None) => t.writer.try_send_prefixed(prefix, body),
            (Head::Data, Some(slice)) => t.writer.send_prefixed_timeout(prefix, body, slice),
            (Head::Built, None) => t.writer.try_send_parts(&parts),
            (Head::Built, Some(slice)) => t.writer.send_parts_timeout(&parts, slice),
        };
        match send(None) {
            Err(atbus::Error::Full) => {}
            other => return other.map(|()| i).map_err(Error::from),
        }
        loop {
            let slice = match wait {
                Wait::Now => return Err(Error::Full),
                Wait::Forever => PEER_POLL,
                Wait::Until(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout);
                    }
                    (deadline - now).min(PEER_POLL)
                }
            };
            match send(Some(slice)) {
                Err(atbus::Error::Timeout) => {}
                other => return other.map(|()| i).map_err(Error::from),
            }
            self.check_peer(t)?;
            let _ = self.bus.sweep_if_due(); // best effort, as in `receive_raw`
        }
    }

    /// The cached target for `to`, resolved again when the directory's epoch moved (one
    /// load per send otherwise).
    fn target(&mut self, to: &str) -> Result<usize> {
        let dir = self.bus.dir();
        let epoch = dir.epoch();
        if let Some(i) = self.targets.iter().position(|t| t.name.is(to)) {
            if self.targets[i].epoch == epoch {
                return Ok(i);
            }
            let t = &self.targets[i];
            match dir.resolve(to)? {
                Some(s) if s.seq == t.seq && s.generation == t.generation => {
                    self.targets[i].epoch = epoch;
                    return Ok(i);
                }
                _ => {
                    self.targets.remove(i);
                }
            }
        }
        name::check_endpoint(to)?;
        let Some(s) = dir.resolve(to)? else {
            return Err(Error::NoSuchEndpoint { name: to.into() });
        };
        let gone = || Error::PeerGone {
            name: to.into(),
            pid: s.owner_pid,
        };
        if !s.owner_alive() {
            return Err(gone());
        }
        let channel = match Channel::open(&s.inbox()) {
            Ok(channel) => channel,
            // Unlinked between our look at the record and now: it left.
            Err(atbus::Error::NotFound { .. }) => return Err(gone()),
            Err(e) => return Err(e.into()),
        };
        if self.targets.len() >= MAX_TARGETS {
            self.targets.remove(0);
        }
        self.targets.push(Target {
            name: s.name,
            writer: channel.writer(),
            index: s.index,
            seq: s.seq,
            generation: s.generation,
            pid: s.owner_pid,
            epoch,
        });
        Ok(self.targets.len() - 1)
    }

    /// `PeerGone` unless the target's record still holds the same live claim and its
    /// process is alive.
    fn check_peer(&self, t: &Target) -> Result<()> {
        match self.bus.dir().read(t.index)? {
            Some(s)
                if s.seq == t.seq
                    && s.generation == t.generation
                    && s.state == state::LIVE
                    && s.owner_alive() =>
            {
                Ok(())
            }
            _ => Err(Error::PeerGone {
                name: t.name.as_str().into(),
                pid: t.pid,
            }),
        }
    }

    // ---------------------------------------------------------------- receiving

    /// Receives the next message, waiting as long as it takes. Messages that arrived
    /// while a [`request`](Endpoint::request) waited come first, in arrival order.
    /// Replies that match no waiting request are dropped and counted.
    pub fn recv(&mut self) -> Result<Message> {
        self.next(Wait::Forever)
    }

    /// Receives the next message, or `Empty` if none is ready now.
    pub fn try_recv(&mut self) -> Result<Message> {
        self.next(Wait::Now)
    }

    /// Receives the next message, waiting up to `timeout`: `Timeout` if none arrives.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message> {
        self.next(Wait::after(timeout))
    }

    fn next(&mut self, wait: Wait) -> Result<Message> {
        if let Some(m) = self.held.pop_front() {
            return Ok(m);
        }
        loop {
            match self.receive(wait)? {
                Some(m) if m.envelope.kind == Kind::Reply => self.stats.dropped_replies += 1,
                Some(m) => return Ok(m),
                None => {}
            }
        }
    }

    /// One message from the inbox: `None` if it was malformed (counted).
    pub(crate) fn receive(&mut self, wait: Wait) -> Result<Option<Message>> {
        Ok(self.receive_raw(wait)?.map(|(envelope, at, len)| Message {
            envelope,
            payload: self.buf[at..len].to_vec(),
        }))
    }

    /// One message from the inbox into `self.buf`: its envelope and where its payload
    /// lies (`self.buf[at..len]`); `None` if it was malformed (counted).
    #[inline(always)]
    fn receive_raw(&mut self, wait: Wait) -> Result<Option<(Envelope, usize, usize)>> {
        loop {
            // A long wait goes in slices of SWEEP_PERIOD, sweeping the bus between them
            // (one load unless a sweep is due).
            let (slice, sliced) = match wait {
                Wait::Now => (Duration::ZERO, false),
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    (left.min(SWEEP_PERIOD), left > SWEEP_PERIOD)
                }
                Wait::Forever => (SWEEP_PERIOD, true),
            };
            // Not `self.reader()`: `self.buf` is borrowed beside it.
            let reader = self.reader.as_mut().expect("the reader lives until drop");
            // The result is matched where the call left it (no move of it first: each
            // copy of a just-returned struct costs a stall reading it back).
            match if matches!(wait, Wait::Now) {
                reader.try_recv_meta(&mut self.buf)
            } else {
                reader.recv_meta_timeout(&mut self.buf, slice)
            } {
                Err(atbus::Error::Timeout) if sliced => {
                    // Best effort: a busy lock or a damaged record is for the next sweep
                    // (or the operator's `atbus-dump bus --check`), not this receive.
                    let _ = self.bus.sweep_if_due();
                }
                Ok(meta) => {
                    let Some((envelope, at)) = envelope::decode(
                        &self.buf,
                        meta.len,
                        meta.writer_pid,
                        &mut self.known_senders[meta.writer_pid as usize % KNOWN_SENDERS],
                    ) else {
                        self.stats.malformed += 1;
                        return Ok(None);
                    };
                    return Ok(Some((envelope, at, meta.len)));
                }
                Err(atbus::Error::BufferTooSmall { needed }) => {
                    // At least `decode`'s fixed-size head, however short the message.
                    self.buf.resize(needed.max(HEAD_BYTES), 0)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Like [`try_recv`](Endpoint::try_recv), but puts the payload into `payload`
    /// (cleared first, its capacity reused) and returns the envelope: no allocation once
    /// `payload` has grown to the largest message.
    pub fn try_recv_into(&mut self, payload: &mut Vec<u8>) -> Result<Envelope> {
        self.next_into(Wait::Now, payload)
    }

    /// Like [`recv_timeout`](Endpoint::recv_timeout), into `payload` as
    /// [`try_recv_into`](Endpoint::try_recv_into) does.
    pub fn recv_into_timeout(
        &mut self,
        payload: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<Envelope> {
        self.next_into(Wait::after(timeout), payload)
    }

    fn next_into(&mut self, wait: Wait, payload: &mut Vec<u8>) -> Result<Envelope> {
        if let Some(m) = self.held.pop_front() {
            *payload = m.payload;
            return Ok(m.envelope);
        }
        self.next_with(wait, |envelope, bytes| {
            payload.clear();
            payload.extend_from_slice(bytes);
            *envelope
        })
    }

    /// Receives the next message and hands its envelope and payload to `f` where they
    /// lie in the endpoint's receive buffer: no copy into a buffer of yours and no
    /// allocation. Returns `f`'s result, or `Empty` if no message is ready now. The
    /// cheapest receive: take from the payload what you need inside `f`.
    ///
    /// ```
    /// # let bus_name = format!("/atbus-doc-with-{}", std::process::id());
    /// # let bus = atbus_bus::Bus::create(&bus_name)?;
    /// let mut sink = bus.join("sink")?;
    /// let mut src = bus.join("src")?;
    /// src.try_send_to("sink", b"12345")?;
    /// let (from, sum) = sink.try_recv_with(|envelope, payload| {
    ///     (envelope.from().to_string(), payload.iter().map(|&b| u32::from(b - b'0')).sum::<u32>())
    /// })?;
    /// assert_eq!((from.as_str(), sum), ("src", 15));
    /// # drop((sink, src));
    /// # atbus_bus::Bus::unlink(&bus_name)?;
    /// # Ok::<(), atbus_bus::Error>(())
    /// ```
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&Envelope, &[u8]) -> R) -> Result<R> {
        self.held_or_next_with(Wait::Now, f)
    }

    /// Like [`try_recv_with`](Endpoint::try_recv_with), waiting up to `timeout` for a
    /// message: `Timeout` if none arrives.
    pub fn recv_with_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&Envelope, &[u8]) -> R,
    ) -> Result<R> {
        self.held_or_next_with(Wait::after(timeout), f)
    }

    fn held_or_next_with<R>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&Envelope, &[u8]) -> R,
    ) -> Result<R> {
        if let Some(m) = self.held.pop_front() {
            return Ok(f(&m.envelope, &m.payload));
        }
        self.next_with(wait, f)
    }

    /// Receives the next message and lends it where it lies, in the endpoint's receive
    /// buffer: read or change its payload, then answer a request with it in place
    /// ([`Received::reply_in_place`]) or with another message. An echo-like server then
    /// copies a request once on its way in and once on its way out, no more. `Empty` if
    /// no message is ready now.
    ///
    /// ```
    /// # let bus_name = format!("/atbus-doc-ref-{}", std::process::id());
    /// use std::time::Duration;
    /// let bus = atbus_bus::Bus::create(&bus_name)?;
    /// let mut server = bus.join("upper")?;
    /// let mut client = bus.join("client")?;
    /// let handle = std::thread::spawn(move || -> atbus_bus::Result<()> {
    ///     let mut request = server.recv_ref_timeout(Duration::from_secs(5))?;
    ///     request.payload_mut().make_ascii_uppercase();
    ///     request.reply_in_place()
    /// });
    /// assert_eq!(client.request("upper", b"ping", Duration::from_secs(5))?, b"PING");
    /// handle.join().unwrap()?;
    /// # drop(client);
    /// # atbus_bus::Bus::unlink(&bus_name)?;
    /// # Ok::<(), atbus_bus::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Result<Received<'_>> {
        self.next_ref(Wait::Now)
    }

    /// Like [`try_recv_ref`](Endpoint::try_recv_ref), waiting up to `timeout` for a
    /// message: `Timeout` if none arrives.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Received<'_>> {
        self.next_ref(Wait::after(timeout))
    }

    fn next_ref(&mut self, wait: Wait) -> Result<Received<'_>> {
        if let Some(m) = self.held.pop_front() {
            return Ok(Received {
                envelope: m.envelope,
                place: Place::Held(m.payload),
                endpoint: self,
            });
        }
        loop {
            match self.receive_raw(wait)? {
                Some((e, _, _)) if e.kind == Kind::Reply => self.stats.dropped_replies += 1,
                Some((envelope, at, len)) => {
                    return Ok(Received {
                        envelope,
                        place: Place::Buffer { at, len },
                        endpoint: self,
                    })
                }
                None => {}
            }
        }
    }

    /// The next message from the inbox (not from `held`) handed to `f` in place; replies
    /// that match no request are dropped and counted.
    #[inline(always)]
    fn next_with<R>(&mut self, wait: Wait, f: impl FnOnce(&Envelope, &[u8]) -> R) -> Result<R> {
        loop {
            match self.receive_raw(wait)? {
                Some((e, _, _)) if e.kind == Kind::Reply => self.stats.dropped_replies += 1,
                Some((envelope, at, len)) => return Ok(f(&envelope, &self.buf[at..len])),
                None => {}
            }
        }
    }

    // ----------------------------------------------------------- request/reply

    /// Sends `request` to `to` and waits up to `timeout` for its reply.
    ///
    /// * `NoSuchEndpoint` at once if `to` is not on the bus;
    /// * `PeerGone` within about [`PEER_POLL`] of the peer leaving or dying (or
    ///   restarting as a new generation) while the request waits;
    /// * `Timeout` if no reply came in time (also when `to`'s inbox stayed full); a
    ///   reply that comes later is dropped and counted, never returned to a later
    ///   request: correlation ids are never reused by an endpoint.
    ///
    /// Data and requests that arrive meanwhile are held and returned by later `recv`
    /// calls in arrival order. One request waits at a time per endpoint (`&mut self`).
    pub fn request(&mut self, to: &str, request: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.request_message(to, request, timeout)
            .map(|reply| reply.payload)
    }

    /// Like [`request`](Endpoint::request), but returns the whole reply: its envelope
    /// (sender generation and pid, correlation id) with the payload.
    pub fn request_message(
        &mut self,
        to: &str,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Message> {
        self.request_with(to, request, timeout, |envelope, payload| Message {
            envelope: *envelope,
            payload: payload.to_vec(),
        })
    }

    /// Like [`request`](Endpoint::request), but puts the reply's payload into `reply`
    /// (cleared first, its capacity reused) and returns its envelope: no allocation once
    /// `reply` has grown to the largest reply.
    pub fn request_into(
        &mut self,
        to: &str,
        request: &[u8],
        reply: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<Envelope> {
        self.request_with(to, request, timeout, |envelope, payload| {
            reply.clear();
            reply.extend_from_slice(payload);
            *envelope
        })
    }

    /// Like [`request`](Endpoint::request), but hands the reply's envelope and payload
    /// to `f` where the endpoint received them (as
    /// [`try_recv_with`](Endpoint::try_recv_with) does) and returns what `f` returns.
    /// The C ABI uses it to copy a reply straight into the caller's buffer, or to keep
    /// one too large for it.
    pub fn request_with<R>(
        &mut self,
        to: &str,
        request: &[u8],
        timeout: Duration,
        f: impl FnOnce(&Envelope, &[u8]) -> R,
    ) -> Result<R> {
        let wait = Wait::after(timeout);
        let mut pending = self.send_request(to, request, wait)?;
        let bytes = request.len().max(self.last_reply_len);
        if let Some((envelope, at, len)) = self.poll_for_reply(&pending, wait, bytes)? {
            self.last_reply_len = len - at;
            return Ok(f(&envelope, &self.buf[at..len]));
        }
        loop {
            let slice = match wait {
                Wait::Until(deadline) => Wait::Until(deadline.min(pending.next_look)),
                _ => Wait::Until(pending.next_look),
            };
            match self.receive_raw(slice) {
                Ok(Some((envelope, at, len))) => {
                    if self.is_reply(&pending, &envelope, at, len) {
                        self.last_reply_len = len - at;
                        return Ok(f(&envelope, &self.buf[at..len]));
                    }
                }
                Ok(None) | Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
            if matches!(wait, Wait::Until(deadline) if Instant::now() >= deadline) {
                return Err(Error::Timeout);
            }
            self.look_at_peer(&mut pending)?;
        }
    }

    /// Polls the inbox for `pending`'s reply for up to [`REQUEST_POLL`] (or until
    /// `wait` ends), yielding the CPU every 64 polls so that a server on the same core
    /// can answer: a reply that comes within that time costs neither side a futex sleep
    /// and wake-up, which are most of a short round trip. The reply's envelope and where
    /// it lies in `self.buf`, or `None` if it did not come.
    ///
    /// A long exchange (`bytes`, the larger of the request and the last reply, at least
    /// [`LONG_EXCHANGE`]) yields after every poll.
    fn poll_for_reply(
        &mut self,
        pending: &Pending,
        wait: Wait,
        bytes: usize,
    ) -> Result<Option<(Envelope, usize, usize)>> {
        let start = Instant::now();
        let budget = match wait {
            Wait::Until(deadline) => deadline.saturating_duration_since(start).min(REQUEST_POLL),
            _ => REQUEST_POLL,
        };
        let yield_every = if bytes >= LONG_EXCHANGE { 1 } else { 64 };
        for polls in 1u32.. {
            match self.receive_raw(Wait::Now) {
                Ok(Some((envelope, at, len))) => {
                    if self.is_reply(pending, &envelope, at, len) {
                        return Ok(Some((envelope, at, len)));
                    }
                }
                Ok(None) => {}
                Err(Error::Empty) => std::hint::spin_loop(),
                Err(e) => return Err(e),
            }
            if polls.is_multiple_of(yield_every) {
                if start.elapsed() >= budget {
                    break;
                }
                std::thread::yield_now();
            }
        }
        Ok(None)
    }

    /// Sends a request with a fresh correlation id (ids are never reused, also when the
    /// send fails) and returns what its reply must match.
    pub(crate) fn send_request(&mut self, to: &str, request: &[u8], wait: Wait) -> Result<Pending> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        envelope::encode(
            &mut self.out,
            Kind::Request,
            self.name.as_str(),
            self.generation,
            correlation,
            0,
            request.len() >= ALIGN_BODY_FROM,
        );
        let i = self.deliver(to, None, wait, Head::Built, request)?;
        Ok(Pending {
            correlation,
            peer: self.targets[i].name,
            peer_generation: self.targets[i].generation,
            next_look: Instant::now() + PEER_POLL,
        })
    }

    /// `m` if it is `pending`'s reply. Otherwise holds `m` for `recv` (data, requests)
    /// or drops and counts it (a reply to something else). (The async endpoint's.)
    #[cfg(feature = "tokio")]
    pub(crate) fn take_reply(&mut self, pending: &Pending, m: Message) -> Option<Message> {
        match self.sort(pending, &m.envelope) {
            Sorted::Reply => return Some(m),
            Sorted::Hold => self.held.push_back(m),
            Sorted::Dropped => {}
        }
        None
    }

    /// Whether the message received into `self.buf[at..len]` is `pending`'s reply;
    /// if not, it is held for `recv` or dropped and counted, as in `take_reply`.
    fn is_reply(&mut self, pending: &Pending, envelope: &Envelope, at: usize, len: usize) -> bool {
        match self.sort(pending, envelope) {
            Sorted::Reply => return true,
            Sorted::Hold => self.held.push_back(Message {
                envelope: *envelope,
                payload: self.buf[at..len].to_vec(),
            }),
            Sorted::Dropped => {}
        }
        false
    }

    /// What a message that arrives while `pending` waits is: its reply, one to hold
    /// (data, requests), or a reply to something else (counted here).
    fn sort(&mut self, pending: &Pending, e: &Envelope) -> Sorted {
        if e.kind != Kind::Reply {
            Sorted::Hold
        } else if e.correlation == pending.correlation
            && e.to_generation == self.generation
            && e.from == pending.peer
            && e.from_generation == pending.peer_generation
        {
            Sorted::Reply
        } else {
            self.stats.dropped_replies += 1;
            Sorted::Dropped
        }
    }

    /// Once per [`PEER_POLL`]: `PeerGone` if the peer of `pending` left, died or
    /// restarted; sweeps the bus if a sweep is due.
    pub(crate) fn look_at_peer(&mut self, pending: &mut Pending) -> Result<()> {
        let now = Instant::now();
        if now < pending.next_look {
            return Ok(());
        }
        // The target may have been dropped from the cache meanwhile (by a send to
        // another destination): look at the record directly then.
        let peer = self.targets.iter().find(|t| t.name == pending.peer);
        match peer {
            Some(t) if t.generation == pending.peer_generation => self.check_peer(t)?,
            _ => self.check_by_name(pending.peer, pending.peer_generation)?,
        }
        let _ = self.bus.sweep_if_due(); // best effort, as in `receive_raw`
        pending.next_look = now + PEER_POLL;
        Ok(())
    }

    fn check_by_name(&self, name: Name, generation: u64) -> Result<()> {
        match self.bus.dir().resolve(name.as_str())? {
            Some(s) if s.generation == generation && s.owner_alive() => Ok(()),
            other => Err(Error::PeerGone {
                name: name.as_str().into(),
                pid: other.map_or(0, |s| s.owner_pid),
            }),
        }
    }

    /// Answers a request received by `recv`: sends `message` to the requester's
    /// generation, waiting for room while it lives. `PeerGone` if the requester left,
    /// died or restarted (its new generation never gets the old one's reply);
    /// `NotARequest` if `request` is not a request's envelope.
    pub fn reply(&mut self, request: &Envelope, message: &[u8]) -> Result<()> {
        self.reply_with(request, message, Wait::Forever)
    }

    /// Like [`reply`](Endpoint::reply), or fails at once: `Full` when the requester's
    /// inbox has no room now (nothing was sent).
    pub fn try_reply(&mut self, request: &Envelope, message: &[u8]) -> Result<()> {
        self.reply_with(request, message, Wait::Now)
    }

    fn reply_with(&mut self, request: &Envelope, message: &[u8], wait: Wait) -> Result<()> {
        if request.kind != Kind::Request {
            return Err(Error::NotARequest);
        }
        envelope::encode(
            &mut self.out,
            Kind::Reply,
            self.name.as_str(),
            self.generation,
            request.correlation,
            request.from_generation,
            message.len() >= ALIGN_BODY_FROM,
        );
        let from_generation = Some(request.from_generation);
        match self.deliver(request.from(), from_generation, wait, Head::Built, message) {
            Ok(_) => Ok(()),
            Err(Error::NoSuchEndpoint { name }) => Err(Error::PeerGone {
                name,
                pid: request.from_pid,
            }),
            Err(e) => Err(e),
        }
    }

    /// `PeerGone` unless endpoint `to` (as this endpoint resolved it) still holds its
    /// claim and its process lives; `NoSuchEndpoint` if it is not on the bus. For
    /// callers that wait for room in `to`'s inbox themselves (the async endpoint).
    #[cfg(feature = "tokio")]
    pub(crate) fn check_destination(&mut self, to: &str) -> Result<()> {
        let i = self.target(to)?;
        self.check_peer(&self.targets[i])
    }

    /// Arms the inbox reader, whatever messages are held (a request waiting for its
    /// reply looks at the inbox only).
    #[cfg(feature = "tokio")]
    pub(crate) fn arm_inbox(&mut self) -> Result<Arm> {
        Ok(self.reader().arm()?)
    }

    // ---------------------------------------------------------------- event loop

    /// The inbox reader's readiness fd (see `atbus::Reader::readiness_fd`): readable
    /// after [`arm`](Endpoint::arm) returned `Armed` and a message arrived.
    pub fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.reader().readiness_fd()?)
    }

    /// Prepares to wait on the readiness fd: `Ready` if a message (or a held one) is
    /// ready now, `Armed` if it is safe to wait. Receive with `try_recv` until `Empty`.
    pub fn arm(&mut self) -> Result<Arm> {
        if !self.held.is_empty() {
            return Ok(Arm::Ready);
        }
        Ok(self.reader().arm()?)
    }
}

/// Where a [`Received`] message's payload lies.
enum Place {
    /// `buf[at..len]` of the endpoint.
    Buffer { at: usize, len: usize },
    /// Its own buffer: a message held while a request waited.
    Held(Vec<u8>),
}

/// A message lent where the endpoint received it, by
/// [`try_recv_ref`](Endpoint::try_recv_ref): its envelope, its payload (which may be
/// changed in place) and the replies to it. The endpoint is borrowed until it is dropped.
pub struct Received<'a> {
    endpoint: &'a mut Endpoint,
    envelope: Envelope,
    place: Place,
}

impl Received<'_> {
    /// Kind, sender, correlation id.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The payload, exactly as sent (unless changed through
    /// [`payload_mut`](Received::payload_mut)).
    pub fn payload(&self) -> &[u8] {
        match &self.place {
            Place::Buffer { at, len } => &self.endpoint.buf[*at..*len],
            Place::Held(payload) => payload,
        }
    }

    /// The payload, to change in place before [`reply_in_place`](Received::reply_in_place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        match &mut self.place {
            Place::Buffer { at, len } => &mut self.endpoint.buf[*at..*len],
            Place::Held(payload) => payload,
        }
    }

    /// The message, copied out of the endpoint's buffer.
    pub fn to_message(&self) -> Message {
        Message {
            envelope: self.envelope,
            payload: self.payload().to_vec(),
        }
    }

    /// Answers the request with `message`, as [`Endpoint::reply`] does.
    pub fn reply(&mut self, message: &[u8]) -> Result<()> {
        self.endpoint.reply(&self.envelope, message)
    }

    /// Answers the request with its own payload as it is now (see
    /// [`payload_mut`](Received::payload_mut)): waits for room while the requester
    /// lives, fails as [`Endpoint::reply`] does.
    pub fn reply_in_place(&mut self) -> Result<()> {
        self.reply_payload(Wait::Forever)
    }

    /// Like [`reply_in_place`](Received::reply_in_place), or fails at once: `Full` when
    /// the requester's inbox has no room now (nothing was sent; the message is still
    /// here to answer again).
    pub fn try_reply_in_place(&mut self) -> Result<()> {
        self.reply_payload(Wait::Now)
    }

    fn reply_payload(&mut self, wait: Wait) -> Result<()> {
        let ep = &mut *self.endpoint;
        match &self.place {
            Place::Held(payload) => ep.reply_with(&self.envelope, payload, wait),
            Place::Buffer { at, len } => {
                // Out of the endpoint for the send (which needs the endpoint mutable but
                // never its receive buffer), and back. Three words moved, no copy; were
                // the send to panic, the endpoint would grow a new buffer on its next
                // receive.
                let buf = std::mem::take(&mut ep.buf);
                let sent = ep.reply_with(&self.envelope, &buf[*at..*len], wait);
                ep.buf = buf;
                sent
            }
        }
    }
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("envelope", &self.envelope)
            .field("len", &self.payload().len())
            .finish()
    }
}

impl Drop for Endpoint {
    /// Leaves the bus: under the directory lock, marks the record leaving, gives the
    /// reader role back, unlinks the inbox and frees the record. If the lock cannot be
    /// had (`LockBusy`) or the record is unreadable, unlinks the inbox only; the record
    /// is then reclaimed after this process exits.
    fn drop(&mut self) {
        let bus = self.bus.clone();
        let dir = bus.dir();
        let guard = dir.lock().ok();
        // Ours unless someone judged this process dead and reclaimed the record (or the
        // record was scribbled): then leave the record alone.
        let ours = guard.as_ref().is_some_and(|g| {
            matches!(g.read(self.index), Ok(Some(s))
                if s.seq == self.seq
                    && s.generation == self.generation
                    && s.owner_word() == dir.me())
        });
        if let (Some(g), true) = (&guard, ours) {
            g.set_state(self.index, state::LEAVING);
            g.bump_epoch();
            fault::point(CrashPoint::LeaveMarked);
        }
        drop(self.reader.take());
        // The inbox's name carries our generation: it is ours to unlink in every case
        // (if the record was reclaimed, it is gone already and this does nothing).
        let _ = Channel::unlink(&self.inbox);
        fault::point(CrashPoint::LeaveUnlinked);
        if let (Some(g), true) = (&guard, ours) {
            g.mark_left(self.index, self.generation);
            g.set_state(self.index, state::FREE);
            g.bump_epoch();
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("bus", &self.bus.name())
            .field("name", &self.name.as_str())
            .field("generation", &self.generation)
            .field("inbox", &self.inbox)
            .finish()
    }
}
