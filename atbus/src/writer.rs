//! The writer handle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::ring;
use crate::segment::Segment;
use crate::sync::atomic::{AtomicU64, Ordering};

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

    /// Sends one message, or fails at once:
    /// * `Full`: no room now (nothing was written; retry later or use [`send_timeout`]);
    /// * `TooLarge`: the message can never fit in this channel;
    /// * `Abandoned`: this writer stalled past the channel's timeout mid-send and the
    ///   reader skipped its block; the message was not delivered.
    ///
    /// [`send_timeout`]: Writer::send_timeout
    pub fn send(&self, message: &[u8]) -> Result<()> {
        ring::send(&self.seg, &self.cached_read, self.pid, message)
    }

    /// Sends one message, retrying while the channel is full for up to `timeout`
    /// (spinning briefly, then yielding, then sleeping). `Timeout` if it stays full.
    pub fn send_timeout(&self, message: &[u8], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new();
        loop {
            match self.send(message) {
                Err(Error::Full) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout);
                    }
                    backoff.snooze();
                }
                other => return other,
            }
        }
    }

    /// The largest message this channel accepts.
    pub fn max_message_len(&self) -> usize {
        ring::max_payload(&self.seg)
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
