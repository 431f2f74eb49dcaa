//! An endpoint for tokio (cargo feature `tokio`): `recv().await`, `request().await`.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use atbus::Arm;

use crate::bus::SWEEP_PERIOD;
use crate::endpoint::{Endpoint, Message, Wait, PEER_POLL};
use crate::envelope::Envelope;
use crate::error::{Error, Result};

/// Longest pause between two attempts of a send that found the destination's inbox full.
const MAX_SEND_PAUSE: Duration = Duration::from_millis(20);

/// An [`Endpoint`] for tokio: waits for its inbox's readiness fd through tokio's
/// `AsyncFd`, so a task waits for messages and replies without blocking the runtime or
/// a thread of its own. Needs a runtime with I/O and time enabled.
///
/// Receiving is cancel-safe (a message is taken only in the poll that returns it). A
/// send that finds the destination's inbox full tries again after a pause (1 ms, then
/// doubling to 20 ms) and looks at the peer every [`PEER_POLL`], as the blocking calls
/// do. A waiting receive sweeps the bus every [`SWEEP_PERIOD`] when a sweep is due.
///
/// ```
/// # let bus_name = format!("/atbus-doc-async-endpoint-{}", std::process::id());
/// use std::time::Duration;
/// use atbus_bus::{AsyncEndpoint, Bus};
///
/// let bus = Bus::create(&bus_name)?;
/// let mut server = bus.join("echo")?; // a blocking server, in a thread here
/// let served = std::thread::spawn(move || -> atbus_bus::Result<()> {
///     let msg = server.recv_timeout(Duration::from_secs(5))?;
///     server.reply(&msg.envelope, &msg.payload)
/// });
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let answer = rt.block_on(async {
///     let mut client = AsyncEndpoint::new(bus.join("client")?)?;
///     client.request("echo", b"ping", Duration::from_secs(5)).await
/// })?;
/// assert_eq!(answer, b"ping");
/// served.join().unwrap()?;
/// # Bus::unlink(&bus_name)?;
/// # Ok::<(), atbus_bus::Error>(())
/// ```
pub struct AsyncEndpoint {
    /// A duplicate of the inbox's readiness fd, registered with tokio and closed with
    /// this handle.
    fd: AsyncFd<OwnedFd>,
    endpoint: Endpoint,
}

impl AsyncEndpoint {
    /// Wraps an endpoint, registering its inbox's readiness fd with the current tokio
    /// runtime. Panics outside a runtime with I/O enabled (as tokio's `AsyncFd::new`).
    pub fn new(mut endpoint: Endpoint) -> Result<AsyncEndpoint> {
        let inbox = endpoint.inbox().to_string();
        let dup = endpoint
            .readiness_fd()?
            .try_clone_to_owned()
            .map_err(|e| Error::io("duplicate the readiness fd of", &inbox, e))?;
        // SAFETY: `dup` is an OwnedFd: it stays open, and is the same fd, for as long as
        // the AsyncFd that owns it lives (the I/O safety `register_with_interest` asks).
        let fd = unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) }
            .map_err(|e| {
                Error::io(
                    "register with tokio the readiness fd of",
                    &inbox,
                    e.into_parts().1,
                )
            })?;
        Ok(AsyncEndpoint { fd, endpoint })
    }

    /// The wrapped endpoint, for its non-waiting calls (`try_send_to`, `stats`, ...).
    pub fn get_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// Gives the endpoint back.
    pub fn into_inner(self) -> Endpoint {
        self.endpoint
    }

    /// Receives the next message, waiting as long as it takes (as
    /// [`Endpoint::recv`]: held messages first; stray replies dropped and counted).
    pub async fn recv(&mut self) -> Result<Message> {
        loop {
            match self.endpoint.try_recv() {
                Err(Error::Empty) => {}
                other => return other,
            }
            if self.endpoint.arm()? == Arm::Ready {
                continue;
            }
            self.wait_readable(SWEEP_PERIOD).await?;
        }
    }

    /// Sends `message` to `to`, waiting while its inbox is full and its endpoint lives
    /// (see [`Endpoint::send_to`]).
    pub async fn send_to(&mut self, to: &str, message: &[u8]) -> Result<()> {
        self.with_room(to, None, |e| e.try_send_to(to, message))
            .await
    }

    /// Answers a request (see [`Endpoint::reply`]), waiting while the requester's inbox
    /// is full and it lives.
    pub async fn reply(&mut self, request: &Envelope, message: &[u8]) -> Result<()> {
        let to = request.from().to_string();
        self.with_room(&to, None, |e| e.try_reply(request, message))
            .await
    }

    /// Sends `request` to `to` and waits up to `timeout` for its reply, with the
    /// failures of [`Endpoint::request`] (`NoSuchEndpoint`, `PeerGone` within about
    /// [`PEER_POLL`], `Timeout`). Dropping the future abandons the request: a reply
    /// that comes later is dropped and counted.
    pub async fn request(
        &mut self,
        to: &str,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut pending = self
            .with_room(to, deadline, |e| e.send_request(to, request, Wait::Now))
            .await?;
        loop {
            loop {
                match self.endpoint.receive(Wait::Now) {
                    Ok(Some(m)) => {
                        if let Some(reply) = self.endpoint.take_reply(&pending, m) {
                            return Ok(reply.payload);
                        }
                    }
                    Ok(None) => {}
                    Err(Error::Empty) => break,
                    Err(e) => return Err(e),
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            self.endpoint.look_at_peer(&mut pending)?;
            if self.endpoint.arm_inbox()? == Arm::Ready {
                continue;
            }
            let mut until = pending.next_look;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            self.wait_readable(until.saturating_duration_since(now))
                .await?;
        }
    }

    /// Waits until the inbox's fd is readable or `at_most` passed (then sweeps the bus
    /// if a sweep is due). Tokio's readiness is cleared before the caller's next
    /// attempt drains the fd, so a ring that comes after is not lost.
    async fn wait_readable(&mut self, at_most: Duration) -> Result<()> {
        match tokio::time::timeout(at_most, self.fd.readable()).await {
            Ok(Ok(mut guard)) => {
                guard.clear_ready();
                Ok(())
            }
            Ok(Err(e)) => Err(Error::io(
                "wait on the readiness fd of",
                self.endpoint.inbox(),
                e,
            )),
            Err(_elapsed) => {
                let _ = self.endpoint.bus().sweep_if_due(); // best effort
                Ok(())
            }
        }
    }

    /// Runs `attempt` until it finds room in `to`'s inbox: between attempts, pauses (1
    /// ms doubling to [`MAX_SEND_PAUSE`]) and looks at the peer every [`PEER_POLL`];
    /// `Timeout` after `deadline`.
    async fn with_room<T>(
        &mut self,
        to: &str,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut Endpoint) -> Result<T>,
    ) -> Result<T> {
        let mut pause = Duration::from_millis(1);
        let mut next_look = Instant::now() + PEER_POLL;
        loop {
            match attempt(&mut self.endpoint) {
                Err(Error::Full) => {}
                other => return other,
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            if now >= next_look {
                self.endpoint.check_destination(to)?;
                next_look = now + PEER_POLL;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_SEND_PAUSE);
        }
    }
}

impl std::fmt::Debug for AsyncEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEndpoint")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}
