//! The reader handle and the reader role.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::process;
use crate::ring::{ReadState, Ready};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;

/// Receives messages from a channel. There is exactly one reader per channel across all
/// processes: [`Channel::reader`](crate::Channel::reader) takes the role, and dropping the
/// reader gives it back. If the process holding the role dies, the next process to ask
/// takes it over and resumes where the dead reader released.
///
/// ```
/// # let name = format!("/atbus-doc-reader-{}", std::process::id());
/// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
/// let writer = channel.writer();
/// let mut reader = channel.reader()?;
/// writer.send(b"one")?;
/// writer.send(b"two")?;
///
/// let mut buf = [0u8; 64];
/// let n = reader.try_recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"one");
/// assert_eq!(reader.try_recv_vec()?, b"two");
/// assert!(matches!(reader.try_recv(&mut buf), Err(atbus::Error::Empty)));
/// # drop(reader);
/// # atbus::Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
pub struct Reader {
    seg: Arc<Segment>,
    state: ReadState,
    owner: u64,
    scratch: Vec<u8>,
    clock: fn() -> Instant,
}

impl Reader {
    pub(crate) fn new(seg: Arc<Segment>) -> Result<Reader> {
        let owner = take_role(&seg)?;
        let state = ReadState::new(&seg);
        Ok(Reader {
            seg,
            state,
            owner,
            scratch: Vec::new(),
            clock: Instant::now,
        })
    }

    /// Receives the next message into `buf` and returns its length.
    /// * `Empty`: nothing is ready (a writer may be mid-write; call again);
    /// * `BufferTooSmall { needed }`: the message stays in the ring; call again with a
    ///   buffer of `needed` bytes.
    ///
    /// Torn, corrupt and padding blocks on the way are skipped and counted in
    /// [`Stats`](crate::Stats); the call then goes on to the next message.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            let ready = self.poll()?;
            if buf.len() < ready.len {
                return Err(Error::BufferTooSmall { needed: ready.len });
            }
            if self.state.take(&self.seg, ready, buf) {
                return Ok(ready.len);
            }
        }
    }

    /// Receives the next message into a new `Vec`.
    pub fn try_recv_vec(&mut self) -> Result<Vec<u8>> {
        loop {
            let ready = self.poll()?;
            let mut v = vec![0u8; ready.len];
            if self.state.take(&self.seg, ready, &mut v) {
                return Ok(v);
            }
        }
    }

    /// Receives the next message and hands it to `f` as a slice of a buffer the reader
    /// owns and reuses (no allocation once it has grown to the largest message).
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        loop {
            let ready = self.poll()?;
            if self.scratch.len() < ready.len {
                self.scratch.resize(ready.len, 0);
            }
            if self.state.take(&self.seg, ready, &mut self.scratch) {
                return Ok(f(&self.scratch[..ready.len]));
            }
        }
    }

    /// Hands consumed nodes back to writers now. The reader does this by itself every
    /// 1/16 of the ring and whenever it finds the ring empty.
    pub fn release(&mut self) {
        self.state.release(&self.seg);
    }

    /// The position of the next message in the ring.
    pub fn position(&self) -> u64 {
        self.state.position()
    }

    /// Replaces the monotonic clock the torn-block timeout is measured on (tests).
    #[doc(hidden)]
    pub fn set_clock(&mut self, clock: fn() -> Instant) {
        self.clock = clock;
    }

    fn poll(&mut self) -> Result<Ready> {
        self.state.poll(&self.seg, self.clock)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.state.release(&self.seg);
        // Release: our last release of the read cursor happens-before the next owner's
        // acquire of the role. Fails only if someone took the role from us, which happens
        // only if they judged us dead: leave their record alone.
        let _ = self.seg.header().reader.owner.compare_exchange(
            self.owner,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("channel", &self.seg.name())
            .field("position", &self.state.position())
            .finish()
    }
}

/// The reader-record value for a process.
pub(crate) fn owner_word(pid: u32, start_time: u64) -> u64 {
    u64::from(pid) | (u64::from(start_time as u32) << 32)
}

/// Splits a reader-record value into pid and the low 32 bits of the start time.
pub(crate) fn split_owner(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// Takes the reader role: refuses if a live process holds it, takes it over if the
/// holder no longer exists.
fn take_role(seg: &Segment) -> Result<u64> {
    let (pid, start) = process::current();
    let me = owner_word(pid, start);
    let record = &seg.header().reader;
    loop {
        // Acquire: if the previous owner released the role, its read-cursor release
        // happens-before our start.
        let current = record.owner.load(Ordering::Acquire);
        if current != 0 {
            let (owner_pid, owner_start) = split_owner(current);
            if current == me || process::is_same_alive(owner_pid, owner_start) {
                return Err(Error::ReaderBusy { pid: owner_pid });
            }
        }
        if record
            .owner
            .compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if current != 0 {
                record.takeovers.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(me);
        }
    }
}
