//! The writer handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ring::{self, Claimed};
use crate::segment::Segment;
use crate::slots;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;
use crate::wake;

/// Polls of a full ring before a waiting send sleeps.
const SPACE_SPINS: u32 = 10;
/// Longest single sleep of a waiting send: the reader wakes it when it frees space; the
/// slice only bounds the wait should a wake-up never come (a reader built before the
/// space wait existed).
pub(crate) const SPACE_SLICE: Duration = Duration::from_millis(100);

/// Sends messages into a channel. Any number of writers, in any processes, may send at
/// once. Cheap to clone; usable from several threads (`Send + Sync`).
///
/// Create writers in the process that uses them: a writer records its process id, which
/// the reader uses to tell a dead writer from a slow one, so do not carry one across
/// `fork`.
///
/// ```
/// # let name = format!("/atbus-doc-writer-{}", std::process::id());
/// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
/// let writer = channel.writer();
/// writer.send(b"hello")?;
/// writer.send(b"")?; // empty messages are messages too
/// let big = vec![0u8; 1 << 20];
/// assert!(matches!(writer.send(&big), Err(atbus::Error::TooLarge { .. })));
/// # atbus::Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
pub struct Writer {
    seg: Arc<Segment>,
    /// This handle's copy of the read cursor: re-read from the segment only when it says
    /// the ring is full, so writers rarely touch the reader's cache line.
    cached_read: AtomicU64,
    pid: u32,
}

impl Writer {
    pub(crate) fn new(seg: Arc<Segment>) -> Writer {
        let r = seg.header().read_cursor.load(Ordering::Acquire);
        Writer {
            seg,
            cached_read: AtomicU64::new(r),
            pid: std::process::id(),
        }
    }

    /// Sends one message, waiting as long as it takes for the reader to free space when
    /// the ring is full (woken by the reader, not polling). Fails with
    /// * `TooLarge`: the message can never fit in this channel;
    /// * `Abandoned`: this writer stalled past the channel's timeout mid-send and the
    ///   reader skipped its block; the message was not delivered.
    ///
    /// With no reader consuming, a full ring makes this wait for ever: use
    /// [`try_send`](Writer::try_send) or [`send_timeout`](Writer::send_timeout) when that
    /// must not happen.
    pub fn send(&self, message: &[u8]) -> Result<()> {
        self.send_waiting(message, None)
    }

    /// Sends one message, or fails at once:
    /// * `Full`: no room now (nothing was written; retry later, or use [`send`] or
    ///   [`send_timeout`], which wait for the reader to free space);
    /// * `TooLarge`, `Abandoned`: as for [`send`].
    ///
    /// This is the writer's fast path: no system call, ever.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-try-send-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 64 << 10, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// let msg = [7u8; 1000];
    /// let mut sent = 0;
    /// while writer.try_send(&msg).is_ok() {
    ///     sent += 1;
    /// }
    /// assert!(matches!(writer.try_send(&msg), Err(atbus::Error::Full)));
    /// assert!(sent > 0);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    ///
    /// [`send`]: Writer::send
    /// [`send_timeout`]: Writer::send_timeout
    pub fn try_send(&self, message: &[u8]) -> Result<()> {
        ring::send(&self.seg, &self.cached_read, self.pid, message)
    }

    /// Sends one message made of `parts` laid end to end, as if they were one slice (the
    /// reader receives one message of their total length), without gathering them into
    /// a buffer first: a header in front of a payload costs no extra copy. Fails as
    /// [`try_send`](Writer::try_send).
    ///
    /// ```
    /// # let name = format!("/atbus-doc-send-parts-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// writer.try_send_parts(&[b"header:", b"body"])?;
    /// assert_eq!(channel.reader()?.try_recv_vec()?, b"header:body");
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn try_send_parts(&self, parts: &[&[u8]]) -> Result<()> {
        ring::send_parts(&self.seg, &self.cached_read, self.pid, parts)
    }

    /// [`try_send_parts`](Writer::try_send_parts), waiting up to `timeout` for the reader
    /// to free space as [`send_timeout`](Writer::send_timeout) does.
    pub fn send_parts_timeout(&self, parts: &[&[u8]], timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_for_space(deadline, || self.try_send_parts(parts))
    }

    /// Sends one message: `prefix`'s bytes, then `body` (the reader receives one message
    /// of their total length). The prefix's crc was computed once, when it was made, so
    /// a header sent in front of many bodies costs a copy of its bytes and nothing more.
    /// Fails as [`try_send`](Writer::try_send).
    ///
    /// ```
    /// # let name = format!("/atbus-doc-send-prefixed-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// let header = atbus::Prefix::new(b"from=7;");
    /// writer.try_send_prefixed(&header, b"hello")?;
    /// writer.try_send_prefixed(&header, b"again")?;
    /// let mut reader = channel.reader()?;
    /// assert_eq!(reader.try_recv_vec()?, b"from=7;hello");
    /// assert_eq!(reader.try_recv_vec()?, b"from=7;again");
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    #[inline]
    pub fn try_send_prefixed(&self, prefix: &Prefix, body: &[u8]) -> Result<()> {
        ring::send_prefixed(
            &self.seg,
            &self.cached_read,
            self.pid,
            &prefix.bytes,
            prefix.crc,
            body,
        )
    }

    /// [`try_send_prefixed`](Writer::try_send_prefixed), waiting up to `timeout` for the
    /// reader to free space as [`send_timeout`](Writer::send_timeout) does.
    pub fn send_prefixed_timeout(
        &self,
        prefix: &Prefix,
        body: &[u8],
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_for_space(deadline, || self.try_send_prefixed(prefix, body))
    }

    /// Sends several messages with one claim of space: a prefix of `messages`, as many
    /// as fit now in one claim (at most the largest message the channel takes, in
    /// nodes). Returns how many were sent, at least one; call again with the rest. Fails,
    /// with nothing sent, as [`try_send`](Writer::try_send) fails for the first message
    /// (`Full`, `TooLarge`, `Abandoned`); a later message too large for the channel ends
    /// the prefix before it. An empty slice sends nothing and returns 0.
    ///
    /// The reader receives ordinary messages, each checked by its own crc32c, in order; a
    /// writer that dies mid-batch loses the messages it had not published, which the
    /// reader skips (and counts) as it skips any torn block. Where one `try_send` costs
    /// a compare-exchange to claim and one to publish, a batch of `n` costs `n + 1`, and
    /// one look for a sleeping reader.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-batch-send-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// let batch: Vec<&[u8]> = vec![b"one", b"two", b"three"];
    /// assert_eq!(writer.try_send_batch(&batch)?, 3);
    /// let mut reader = channel.reader()?;
    /// assert_eq!(reader.try_recv_vec()?, b"one");
    /// assert_eq!(reader.try_recv_vec()?, b"two");
    /// assert_eq!(reader.try_recv_vec()?, b"three");
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn try_send_batch(&self, messages: &[&[u8]]) -> Result<usize> {
        ring::send_batch(&self.seg, &self.cached_read, self.pid, messages)
    }

    /// Sends every message of `messages`, in order, in as few claims as the room in the
    /// ring allows ([`try_send_batch`](Writer::try_send_batch)), waiting for the reader
    /// to free space as [`send`](Writer::send) does. Fails as `send` does; on an error,
    /// the messages before the one that failed were sent (the error says nothing about
    /// how many: use `try_send_batch` to know).
    pub fn send_batch(&self, messages: &[&[u8]]) -> Result<()> {
        let mut rest = messages;
        while !rest.is_empty() {
            let sent = self.wait_for_space(None, || self.try_send_batch(rest))?;
            rest = &rest[sent..];
        }
        Ok(())
    }

    /// Sends one message, waiting up to `timeout` for the reader to free space when the
    /// ring is full, like [`send`](Writer::send). `Timeout` if it stays full. A timeout
    /// too long to add to the clock (e.g. `Duration::MAX`) waits as long as it takes.
    pub fn send_timeout(&self, message: &[u8], timeout: Duration) -> Result<()> {
        // None (no deadline) when the deadline is past what Instant can hold.
        self.send_waiting(message, Instant::now().checked_add(timeout))
    }

    /// `try_send` until it is not `Full`, sleeping on the segment's space futex between
    /// tries; `Timeout` after `deadline`.
    fn send_waiting(&self, message: &[u8], deadline: Option<Instant>) -> Result<()> {
        self.wait_for_space(deadline, || self.try_send(message))
    }

    /// Runs `attempt` until it is not `Full`, sleeping on the segment's space futex
    /// between tries; `Timeout` after `deadline`.
    fn wait_for_space<R>(
        &self,
        deadline: Option<Instant>,
        attempt: impl Fn() -> Result<R>,
    ) -> Result<R> {
        let mut spins = 0;
        loop {
            match attempt() {
                Err(Error::Full) => {}
                other => return other,
            }
            // The reader frees space a sixteenth of the ring at a time: a few polls catch
            // a release that is already under way, then sleep.
            if spins < SPACE_SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => return Err(Error::Timeout),
                Some(d) => d - now,
                None => SPACE_SLICE,
            };
            // The handshake (wake.rs): announce, try once more, sleep only if still full;
            // the reader wakes us when it frees space.
            let space = &self.seg.header().space;
            if let Some(done) = wake::wait_for_space_unless(space, &attempt, left.min(SPACE_SLICE))
            {
                return done;
            }
            spins = 0;
        }
    }

    /// Claims space for a message of exactly `len` bytes and hands it out to be written in
    /// place (zero-copy). [`Reservation::commit`] publishes it; dropping the reservation
    /// without committing aborts it, and the reader skips its nodes at once. Fails like
    /// [`try_send`](Writer::try_send) (`Full`, `TooLarge`): it does not wait.
    ///
    /// Commit promptly: until then the reader waits at this block, and after the
    /// channel's timeout it skips it and `commit` returns `Abandoned`.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-reserve-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// let mut slot = writer.reserve(5)?;
    /// slot.copy_from_slice(b"hello"); // a `&mut [u8]` inside the ring
    /// slot.commit()?;
    /// drop(writer.reserve(100)?); // aborted: the reader skips it
    /// let mut reader = channel.reader()?;
    /// assert_eq!(reader.try_recv_vec()?, b"hello");
    /// assert!(matches!(reader.try_recv_vec(), Err(atbus::Error::Empty)));
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_>> {
        ring::check_len(&self.seg, len)?;
        let counters = slots::for_thread(self.seg.header());
        let block = ring::claim_block(&self.seg, &counters, &self.cached_read, self.pid, len)?;
        Ok(Reservation {
            writer: self,
            block,
        })
    }

    /// The largest message this channel accepts.
    pub fn max_message_len(&self) -> usize {
        ring::max_payload(&self.seg)
    }

    /// The mapped segment.
    #[cfg(feature = "tokio")]
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }
}

impl Clone for Writer {
    fn clone(&self) -> Writer {
        Writer {
            seg: self.seg.clone(),
            cached_read: AtomicU64::new(self.cached_read.load(Ordering::Acquire)),
            pid: self.pid,
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("channel", &self.seg.name())
            .field("pid", &self.pid)
            .finish()
    }
}

/// Bytes sent in front of many messages (a protocol header, an envelope) with their
/// crc32c computed once: see [`Writer::try_send_prefixed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    bytes: Box<[u8]>,
    crc: u32,
}

impl Prefix {
    /// A prefix of `bytes` (copied).
    pub fn new(bytes: &[u8]) -> Prefix {
        Prefix {
            bytes: bytes.into(),
            crc: crate::crc::crc32c(0, bytes),
        }
    }

    /// The prefix's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Space for one message inside the ring, from [`Writer::reserve`]. Dereferences to the
/// message's `&mut [u8]` (initially holding whatever the nodes held before).
pub struct Reservation<'a> {
    writer: &'a Writer,
    block: Claimed,
}

impl Reservation<'_> {
    /// Publishes the message (computing its crc32c over the bytes in the ring).
    /// `Abandoned` if this took longer than the channel's timeout and the reader skipped
    /// the block.
    pub fn commit(self) -> Result<()> {
        // Not dropped: dropping aborts. (The block is read in place, not moved out of an
        // `Option`: that move went through the stack, a store-forwarding stall per
        // message.)
        let this = std::mem::ManuallyDrop::new(self);
        let (seg, block) = (&this.writer.seg, &this.block);
        let crc = if seg.settings().checksums {
            seg.crc32(slice(seg, block))
        } else {
            0
        };
        ring::publish(seg, &slots::for_thread(seg.header()), block, crc, false)
    }

    /// The operation sequence of the reserved block.
    pub fn seq(&self) -> u64 {
        self.block.seq()
    }
}

fn slice<'s>(seg: &'s Segment, block: &Claimed) -> &'s [u8] {
    // SAFETY: the claimed block lies inside the data area (claim_block keeps it there)
    // and the mapping lives as long as `seg`. See `DerefMut` for why these bytes are ours.
    unsafe { std::slice::from_raw_parts(block.payload_ptr(seg), block.len()) }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        slice(&self.writer.seg, &self.block)
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let block = &self.block;
        // SAFETY: in bounds as in `slice`. Exclusive: our START CAS succeeded, so by the
        // protocol no other writer of this lap writes these bytes, and the reader reads
        // them only after we publish, which needs `self` by value (so this borrow has
        // ended). The one exception is a fault, not the protocol: a writer of an earlier
        // lap that stalled past the timeout and wakes could write here too; the crc
        // check then rejects the message. `&mut self` makes the slice unique in-process.
        unsafe { std::slice::from_raw_parts_mut(block.payload_ptr(&self.writer.seg), block.len()) }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Abort (commit does not drop): mark the block so the reader skips it at once.
        // If the reader already skipped it as torn, there is nothing left to do (counted
        // as abandoned).
        let seg = &self.writer.seg;
        let _ = ring::publish(seg, &slots::for_thread(seg.header()), &self.block, 0, true);
    }
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("seq", &self.seq())
            .field("len", &self.block.len())
            .finish()
    }
}
