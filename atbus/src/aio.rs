//! Async readers and writers for tokio (cargo feature `tokio`).
//!
//! [`AsyncReader`] waits on the two fds behind the reader's
//! [readiness fd](crate::Reader::readiness_fd) (the doorbell FIFO and its timerfd)
//! through tokio's `AsyncFd`: no thread of its own, no polling loop. It arms the reader
//! only when the ring is empty, so writers make no system call while it keeps up.
//! [`AsyncWriter`] sends without waiting while there is room and, when the ring is
//! full, waits for the reader to free space (woken by the reader, as the blocking
//! [`Writer::send`](crate::Writer::send) is).

use std::future::poll_fn;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};
use crate::reader::{Arm, Meta, Reader};
use crate::segment::Segment;
use crate::view::SegmentView;
use crate::wake;
use crate::writer::Writer;

/// A reader for tokio: `recv(&mut buf).await`, [`recv_batch`](AsyncReader::recv_batch),
/// and a [`Stream`](futures_core::Stream) of messages.
///
/// Every method is cancel-safe: a message is consumed only inside the poll that returns
/// it, so dropping a pending future loses nothing (the reader stays armed until the
/// next call, which disarms it).
///
/// ```
/// # let name = format!("/atbus-doc-async-reader-{}", std::process::id());
/// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
/// rt.block_on(async {
///     let mut reader = atbus::AsyncReader::new(channel.reader()?)?;
///     let writer = channel.writer();
///     let sender = std::thread::spawn(move || writer.send(b"later"));
///     let mut buf = [0u8; 64];
///     let n = reader.recv(&mut buf).await?; // sleeps until the writer rings
///     assert_eq!(&buf[..n], b"later");
///     sender.join().unwrap()
/// })?;
/// # atbus::Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
pub struct AsyncReader {
    /// Duplicates of the doorbell's FIFO and timerfd, registered with tokio directly
    /// (not the epoll fd holding them: one level of epoll less per wake-up) and closed
    /// with this handle.
    fds: [AsyncFd<OwnedFd>; 2],
    reader: Reader,
    /// The last poll returned `Pending` waiting for the fds.
    waited: bool,
}

impl AsyncReader {
    /// Wraps a reader, creating its doorbell and registering the doorbell's fds with the
    /// current tokio runtime. Panics outside a tokio runtime with I/O enabled (as
    /// tokio's `AsyncFd::new` does); fails like [`Reader::readiness_fd`].
    pub fn new(mut reader: Reader) -> Result<AsyncReader> {
        let name = reader.channel_name().to_string();
        let register = |fd: std::os::fd::BorrowedFd<'_>| -> Result<AsyncFd<OwnedFd>> {
            let dup = fd
                .try_clone_to_owned()
                .map_err(|e| Error::io("duplicate the doorbell fds of", &name, e))?;
            // SAFETY: `dup` is an OwnedFd: it stays open, and is the same fd, for as long
            // as the AsyncFd that owns it lives (I/O safety, as `register` requires).
            unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) }.map_err(
                |e| {
                    Error::io(
                        "register with tokio the doorbell fds of",
                        &name,
                        e.into_parts().1,
                    )
                },
            )
        };
        let [fifo, timer] = reader.wait_fds()?;
        let fds = [register(fifo)?, register(timer)?];
        Ok(AsyncReader {
            fds,
            reader,
            waited: false,
        })
    }

    /// The wrapped reader, for its synchronous calls (`try_recv`, `position`, ...).
    pub fn get_mut(&mut self) -> &mut Reader {
        &mut self.reader
    }

    /// Gives the reader back (deregistering its fd from tokio).
    pub fn into_inner(self) -> Reader {
        let AsyncReader { fds, reader, .. } = self;
        drop(fds);
        reader
    }

    /// Receives the next message into `buf`, waiting as long as it takes. Errors as
    /// [`Reader::try_recv`] (`BufferTooSmall` leaves the message in the ring), never
    /// `Empty`.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut attempt = |r: &mut Reader| r.try_recv(buf);
        poll_fn(|cx| self.poll_with(cx, &mut attempt)).await
    }

    /// Receives the next message into a new `Vec`, waiting as long as it takes.
    pub async fn recv_vec(&mut self) -> Result<Vec<u8>> {
        poll_fn(|cx| self.poll_with(cx, &mut Reader::try_recv_vec)).await
    }

    /// Receives the next message into `buf` with its origin (writer pid, block sequence),
    /// waiting as long as it takes. See [`Reader::try_recv_meta`].
    pub async fn recv_meta(&mut self, buf: &mut [u8]) -> Result<Meta> {
        let mut attempt = |r: &mut Reader| r.try_recv_meta(buf);
        poll_fn(|cx| self.poll_with(cx, &mut attempt)).await
    }

    /// Waits until at least one message is ready, then receives up to `max`, handing
    /// each to `f` in order, as [`Reader::recv_batch`]. Returns how many.
    pub async fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        let mut attempt = |r: &mut Reader| r.recv_batch(max, &mut f);
        poll_fn(|cx| self.poll_with(cx, &mut attempt)).await
    }

    /// Runs `attempt` until it returns something other than `Empty`; between attempts,
    /// arms the reader and waits for its fd.
    fn poll_with<R>(
        &mut self,
        cx: &mut Context<'_>,
        attempt: &mut impl FnMut(&mut Reader) -> Result<R>,
    ) -> Poll<Result<R>> {
        if self.waited {
            // Woken after a wait: take tokio's readiness for that ring now, before the
            // attempt drains the fds, or the next wait would find it stale and arm twice.
            self.waited = false;
            for fd in &self.fds {
                if let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready(cx) {
                    guard.clear_ready();
                }
            }
        }
        loop {
            match attempt(&mut self.reader) {
                Err(Error::Empty) => {}
                other => return Poll::Ready(other),
            }
            match self.reader.arm() {
                Ok(Arm::Ready) => continue,
                Ok(Arm::Armed) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Wait for either fd (a pending poll registers the waker with each).
            let mut rang = false;
            for fd in &self.fds {
                match fd.poll_read_ready(cx) {
                    Poll::Pending => {}
                    // Clear tokio's readiness *before* the next attempt drains the fd: a
                    // ring that lands after the clear sets it again (at worst one empty
                    // wake-up); clearing after the drain could swallow a ring that came
                    // in between.
                    Poll::Ready(Ok(mut guard)) => {
                        guard.clear_ready();
                        rang = true;
                    }
                    Poll::Ready(Err(e)) => {
                        let name = reader_name(&self.reader).to_string();
                        return Poll::Ready(Err(Error::io(
                            "wait on the doorbell fds of",
                            &name,
                            e,
                        )));
                    }
                }
            }
            if !rang {
                self.waited = true;
                return Poll::Pending;
            }
        }
    }
}

fn reader_name(reader: &Reader) -> &str {
    reader.channel_name()
}

/// The messages, each as a new `Vec`, for ever: the stream never ends by itself. An
/// error is an item, and the stream goes on after it.
impl futures_core::Stream for AsyncReader {
    type Item = Result<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_with(cx, &mut Reader::try_recv_vec)
            .map(Some)
    }
}

impl std::fmt::Debug for AsyncReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncReader")
            .field("reader", &self.reader)
            .finish()
    }
}

/// A writer for tokio: [`send`](AsyncWriter::send) waits for the reader to free space
/// when the ring is full, without blocking the runtime.
///
/// The wait itself sleeps on the channel's space futex in tokio's blocking pool
/// (`spawn_blocking`), only while the ring is full; a send that finds room makes no
/// system call. Cancel-safe: dropping a pending `send` sends nothing.
///
/// ```
/// # let name = format!("/atbus-doc-async-writer-{}", std::process::id());
/// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
/// let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
/// let writer = atbus::AsyncWriter::new(channel.writer());
/// rt.block_on(writer.send(b"async hello"))?;
/// assert_eq!(channel.reader()?.try_recv_vec()?, b"async hello");
/// # atbus::Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct AsyncWriter {
    writer: Writer,
}

impl AsyncWriter {
    /// Wraps a writer.
    pub fn new(writer: Writer) -> AsyncWriter {
        AsyncWriter { writer }
    }

    /// The wrapped writer, for its synchronous calls.
    pub fn get_ref(&self) -> &Writer {
        &self.writer
    }

    /// Sends without waiting, as [`Writer::try_send`].
    pub fn try_send(&self, message: &[u8]) -> Result<()> {
        self.writer.try_send(message)
    }

    /// Sends one message, waiting as long as it takes for the reader to free space when
    /// the ring is full. Fails as [`Writer::send`].
    pub async fn send(&self, message: &[u8]) -> Result<()> {
        loop {
            match self.writer.try_send(message) {
                Err(Error::Full) => {}
                other => return other,
            }
            // The space handshake (wake.rs), with the sleep in tokio's blocking pool:
            // announce, try once more, and sleep only if still full.
            let seg = self.writer.segment().clone();
            let ticket = wake::announce_space_wait(&seg.header().space);
            let registered = Registered(seg.clone());
            match self.writer.try_send(message) {
                Err(Error::Full) => {}
                other => return other, // `registered` ends the wait on drop
            }
            // If this future is dropped meanwhile, the task still ends within the slice
            // and ends the wait.
            let _ = tokio::task::spawn_blocking(move || {
                let space = &registered.0.header().space;
                wake::sleep_for_space(space, ticket, crate::writer::SPACE_SLICE);
                drop(registered);
            })
            .await;
        }
    }
}

/// A registration in the channel's space waiters, taken back on drop.
struct Registered(Arc<Segment>);

impl Drop for Registered {
    fn drop(&mut self) {
        wake::end_space_wait(&self.0.header().space);
    }
}
