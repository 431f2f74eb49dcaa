//! The reader handle and the reader role.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::doorbell::Doorbell;
use crate::error::{Error, Result};
use crate::process;
use crate::ring::{ReadState, Ready};
use crate::segment::Segment;
use crate::sync::atomic::Ordering;
use crate::view::SegmentView;
use crate::wake;

/// Longest single futex sleep: the reader wakes this often even when idle, to notice a
/// writer that died between its claim and its block header (cost: ~10 wake-ups a second).
const IDLE_SLICE: Duration = Duration::from_millis(100);
/// Futex sleep while a claimed block is unwritten: its writer's publish wakes us, but if
/// it died nobody will, so look again soon.
const TORN_SLICE: Duration = Duration::from_millis(1);
/// Empty polls a blocking receive spins through before it sleeps (well under a
/// microsecond). Longer hurts: measured with `atbus-bench latency --reader
/// block,unix-dgram` (10 k msgs/s, sleeping writer), 100 polls (a few microseconds) gave
/// a p50 wake-up of 10-11 us against 6-7 us for 10 polls, while the spin caught a
/// message only when they came microseconds apart anyway.
const SPIN_POLLS: u32 = 10;
/// Empty polls [`Reader::arm`] spins through before it arms (a few microseconds, about
/// what a sleep and a wake-up cost the kernel). Measured with `atbus-bench rpc`, event-loop
/// server, and `latency --reader fd` (AMD EPYC, 2 vCPUs), p50: 10 polls took 8 B round
/// trips from 8.5 to 1.4 us but left 1 KiB ones at 3.9 us (the server still slept between
/// most); 30 made those 2.7 us, 100 also 16 KiB ones 20 -> 13 us and the one-way latency
/// at 100 k msgs/s 7.0 -> 3.6 us; 300 did no better. At 10 k msgs/s (nothing to catch) the
/// latency stayed 4.7 us.
const ARM_SPIN_POLLS: u32 = 100;

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
    /// The role, checked before every use, and the doorbell that only its holder may
    /// create or remove.
    role: Role,
    scratch: Vec<u8>,
    clock: fn() -> Instant,
    /// Whether we set `sleeping` to `ARMED_DOORBELL` and have not taken it back yet.
    armed: bool,
    /// Disarmed since the doorbell was last drained: drain it when a receive next finds
    /// the ring empty (off the path from a wake-up to its message).
    drain_due: bool,
}

/// The reader role as a handle holds it. Everything that needs the role goes through
/// [`Role::check`]: receiving, and the doorbell, which only the holder may create (the
/// path is the channel's, and creating it bumps the epoch writers ring by) or remove.
/// [`Role::give_back`] does the order of things on drop.
struct Role {
    seg: Arc<Segment>,
    /// Our reader-record word. The record must still hold it: a reader whose role was
    /// taken must not consume on beside the new owner, nor touch its doorbell.
    owner: u64,
    /// Set once the record was found to name another process: this reader is done.
    lost: bool,
    /// The doorbell FIFO and fd, created on the first `arm` or `readiness_fd`.
    bell: Option<Doorbell>,
}

impl Role {
    /// Takes the role: refuses if a live process holds it, takes it over if the holder
    /// no longer exists.
    fn take(seg: Arc<Segment>) -> Result<Role> {
        let owner = take_role(&seg)?;
        // A dead predecessor may have left itself armed.
        wake::reader_took_over(&seg.header().wake);
        Ok(Role {
            seg,
            owner,
            lost: false,
            bell: None,
        })
    }

    /// `ReaderRoleLost` once the reader record names another process than this reader
    /// (someone judged us dead and took the role, or overwrote the record). Sticky.
    #[inline]
    fn check(&mut self) -> Result<()> {
        // Relaxed: a look at a word only role changes write (its line stays in our
        // cache); nothing is synchronised through this load. A role taken between this
        // look and the end of the call is noticed at the next call.
        let current = self.seg.header().reader.owner.load(Ordering::Relaxed);
        if current == self.owner && !self.lost {
            return Ok(());
        }
        self.lost = true;
        Err(Error::ReaderRoleLost {
            pid: split_owner(current).0,
        })
    }

    /// The doorbell, created on first use, only while the role is ours.
    fn bell(&mut self) -> Result<&mut Doorbell> {
        self.check()?;
        if self.bell.is_none() {
            self.bell = Some(Doorbell::create(self.seg.name(), self.seg.mode())?);
            // A new FIFO: writers holding an older one must open the path again.
            wake::new_doorbell(&self.seg.header().wake);
        }
        Ok(self.bell.as_mut().expect("created above"))
    }

    /// The doorbell if it exists (no role check: draining and the timer touch only
    /// our own descriptors).
    fn existing_bell(&mut self) -> Option<&mut Doorbell> {
        self.bell.as_mut()
    }

    /// Gives the role back, `release` first publishing the read cursor. A reader whose
    /// role was taken touches neither the role, the read cursor nor the doorbell's path:
    /// they are another reader's now.
    fn give_back(&mut self, release: impl FnOnce()) {
        let bell = self.bell.take();
        if self.check().is_err() {
            drop(bell); // closing our descriptors is all
            return;
        }
        // Before giving the role back: once it is back, a new reader may create the path
        // (and bump the epoch, so writers holding our FIFO open theirs instead). Only our
        // own FIFO is removed, never one created there since.
        if let Some(bell) = bell {
            bell.unlink();
        }
        release();
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

/// What [`Reader::arm`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Nothing is ready and the reader is armed: wait until the
    /// [readiness fd](Reader::readiness_fd) is readable, then receive.
    Armed,
    /// A message is ready: receive it now (the reader is not armed).
    Ready,
}

/// Where a message came from, from [`Reader::try_recv_meta`] and [`Reader::recv_meta_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Payload length: the message is `buf[..len]`.
    pub len: usize,
    /// The process id of the writer, as it wrote it into the block header. Not covered
    /// by the checksum: trust it as far as you trust the processes that may write the
    /// channel.
    pub writer_pid: u32,
    /// The block's sequence number: unique per block within the channel and increasing
    /// in the order writers claimed their blocks; a bridge can use it to spot a message
    /// it forwarded twice (after a reader crash) or a gap.
    pub seq: u64,
}

impl Reader {
    pub(crate) fn new(seg: Arc<Segment>) -> Result<Reader> {
        let role = Role::take(seg.clone())?;
        let state = ReadState::new(&seg);
        Ok(Reader {
            seg,
            state,
            role,
            scratch: Vec::new(),
            clock: Instant::now,
            armed: false,
            drain_due: false,
        })
    }

    /// The fd an event loop waits on (epoll, poll, select, tokio's `AsyncFd`, mio, libuv's
    /// `uv_poll`): it becomes readable when the reader is [armed](Reader::arm) and a
    /// writer publishes, or when a block whose writer may have died needs another look.
    /// The first call creates the channel's doorbell FIFO (`/dev/shm/NAME.bell` for
    /// `/NAME`, `PATH.bell` for a file), which those who may write the segment may open;
    /// the fd lives as long as the reader. See [`arm`](Reader::arm) for the loop.
    /// `ReaderRoleLost` if the role was taken (the doorbell is then the new reader's).
    pub fn readiness_fd(&mut self) -> Result<BorrowedFd<'_>> {
        Ok(self.role.bell()?.fd())
    }

    /// The doorbell's FIFO and timerfd, which together make up the readiness fd.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn wait_fds(&mut self) -> Result<[BorrowedFd<'_>; 2]> {
        Ok(self.role.bell()?.wait_fds())
    }

    /// Prepares to wait on the [readiness fd](Reader::readiness_fd): tells writers the
    /// reader is going to sleep, then looks once more. `Armed`: nothing is ready and it is
    /// safe to wait until the fd is readable; `Ready`: a message is ready, receive it.
    ///
    /// First it polls for a few microseconds, about what a sleep and a wake-up cost: an
    /// event loop whose next message is that close (a request/reply server whose client
    /// answers at once) goes on without either.
    ///
    /// No wake-up is lost: a message published after the flag is set either is seen by
    /// the last look (`Ready`) or makes its writer ring the doorbell. While the reader is
    /// not armed, writers make no system call. Any receive call disarms the reader and,
    /// when a writer rang, drains the doorbell, so after the fd turns readable, receive
    /// until `Empty`, then arm again:
    ///
    /// ```
    /// # let name = format!("/atbus-doc-arm-{}", std::process::id());
    /// use std::os::fd::AsRawFd;
    /// use atbus::Arm;
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let mut reader = channel.reader()?;
    /// let fd = reader.readiness_fd()?.as_raw_fd();
    /// assert_eq!(reader.arm()?, Arm::Armed);
    /// channel.writer().send(b"ding")?; // the writer sees the reader armed: it rings
    /// let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    /// // SAFETY: one valid pollfd.
    /// assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
    /// assert_eq!(reader.try_recv_vec()?, b"ding");
    /// assert!(matches!(reader.try_recv_vec(), Err(atbus::Error::Empty)));
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn arm(&mut self) -> Result<Arm> {
        self.wake_up();
        for _ in 0..ARM_SPIN_POLLS {
            match self.poll() {
                Err(Error::Empty) => std::hint::spin_loop(),
                Ok(_) => return Ok(Arm::Ready),
                Err(e) => return Err(e),
            }
        }
        self.role.bell()?;
        if self.drain_due {
            self.drain_now();
        }
        self.armed = true;
        let seg = self.seg.clone();
        // The handshake (wake.rs): announce, look once more, stay armed only if that
        // found nothing; writers then ring the doorbell.
        match wake::arm_unless(&seg.header().wake, || self.poll().map(|_| ())) {
            Some(Ok(())) => {
                self.armed = false;
                self.drain_due = true;
                Ok(Arm::Ready)
            }
            Some(Err(e)) => {
                self.armed = false;
                self.drain_due = true;
                Err(e)
            }
            None => {
                // A claimed block not yet written: its writer rings when it publishes,
                // but if it died nobody will, so have the timer ring instead (the next
                // receive skips the block once it is judged dead or timed out).
                if self.state.claimed_ahead(&self.seg) {
                    if let Some(bell) = self.role.existing_bell() {
                        bell.set_timer(TORN_SLICE);
                    }
                }
                crate::ring::bump(&self.seg.header().reader_counters.sleeps, 1);
                Ok(Arm::Armed)
            }
        }
    }

    /// Takes back an [`arm`](Reader::arm) before receiving; free when not armed.
    #[inline]
    fn wake_up(&mut self) {
        if self.armed {
            self.disarm();
        }
    }

    #[cold]
    fn disarm(&mut self) {
        self.armed = false;
        wake::withdraw(&self.seg.header().wake);
        // The doorbell is drained later, when a receive finds the ring empty: a wake-up
        // goes to its message first.
        self.drain_due = true;
    }

    /// Passes a receive's result through, draining the doorbell first when the result is
    /// `Empty` and a disarm left it undrained: after that, the fd is readable only when
    /// a writer rings again (or one that took the flag before the disarm sends late,
    /// which costs one empty wake-up).
    #[inline]
    fn settle<T>(&mut self, result: Result<T>) -> Result<T> {
        if self.drain_due && matches!(result, Err(Error::Empty)) {
            self.drain_now();
        }
        result
    }

    #[cold]
    fn drain_now(&mut self) {
        self.drain_due = false;
        if let Some(bell) = self.role.existing_bell() {
            bell.drain();
        }
    }

    /// Receives the next message into `buf` like [`try_recv`](Reader::try_recv), and says
    /// where it came from: the writer's pid and the block's sequence.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-meta-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let mut reader = channel.reader()?;
    /// channel.writer().send(b"from me")?;
    /// let mut buf = [0u8; 64];
    /// let meta = reader.try_recv_meta(&mut buf)?;
    /// assert_eq!(&buf[..meta.len], b"from me");
    /// assert_eq!(meta.writer_pid, std::process::id());
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    #[inline]
    pub fn try_recv_meta(&mut self, buf: &mut [u8]) -> Result<Meta> {
        self.role.check()?;
        self.wake_up();
        let received = self
            .state
            .recv_with(&self.seg, self.clock, buf, |seg, ready| Meta {
                len: ready.len,
                // Relaxed: published with the block (the writer stored it before its release
                // store of the header's seq and its release publish CAS, which `poll` acquired).
                writer_pid: seg
                    .block_header(ready.index())
                    .writer_pid
                    .load(Ordering::Relaxed),
                seq: ready.seq(),
            });
        self.settle(received)
    }

    /// Like [`try_recv_meta`](Reader::try_recv_meta), waiting up to `timeout` for a
    /// message as [`recv_timeout`](Reader::recv_timeout) does.
    pub fn recv_meta_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Meta> {
        self.block_on(Instant::now().checked_add(timeout), |r| {
            r.try_recv_meta(buf)
        })
    }

    /// Receives the next message into `buf` and returns its length.
    /// * `Empty`: nothing is ready (a writer may be mid-write; call again);
    /// * `BufferTooSmall { needed }`: the message stays in the ring; call again with a
    ///   buffer of `needed` bytes.
    ///
    /// Torn, corrupt and padding blocks on the way are skipped and counted in
    /// [`Stats`](crate::Stats); the call then goes on to the next message.
    ///
    /// Every receive method first checks that this reader still holds the role and
    /// otherwise fails with [`Error::ReaderRoleLost`] (for good: drop the reader).
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.role.check()?;
        self.wake_up();
        let received = self.state.recv_into(&self.seg, self.clock, buf);
        self.settle(received)
    }

    /// Receives the next message into a new `Vec`.
    pub fn try_recv_vec(&mut self) -> Result<Vec<u8>> {
        self.wake_up();
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
        self.wake_up();
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

    /// Receives the next message into `buf`, waiting as long as it takes. Like
    /// [`recv_timeout`](Reader::recv_timeout) without the timeout.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.block_on(None, |r| r.try_recv(buf))
    }

    /// Receives the next message into `buf`, waiting up to `timeout` for one: polls a
    /// few times, then sleeps on a futex in the segment that writers signal after
    /// publishing. An idle reader uses no CPU. `Timeout` if nothing arrives. A timeout
    /// too long to add to the clock (e.g. `Duration::MAX`) waits forever, like
    /// [`recv`](Reader::recv).
    ///
    /// ```
    /// # let name = format!("/atbus-doc-recv-timeout-{}", std::process::id());
    /// use std::time::Duration;
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let mut reader = channel.reader()?;
    /// let mut buf = [0u8; 16];
    /// let err = reader.recv_timeout(&mut buf, Duration::from_millis(20)).unwrap_err();
    /// assert!(matches!(err, atbus::Error::Timeout));
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        // None (wait forever) when the deadline is past what Instant can hold.
        self.block_on(Instant::now().checked_add(timeout), |r| r.try_recv(buf))
    }

    /// Hands the next message to `f` as a slice *inside the ring* (no copy), then frees
    /// its nodes. `Empty` when nothing is ready.
    ///
    /// The crc32c is checked after `f` returns, on the same bytes: the bytes can change
    /// under `f` only if a writer that stalled past the channel's timeout (and whose
    /// block the reader therefore skipped) wakes and writes into nodes since reused by
    /// this message. Then `f` may have seen any mix of the two messages' bytes, and the
    /// call returns `Damaged` (counted in `crc_failures`) instead of `f`'s result: treat
    /// what `f` saw as tentative until this returns `Ok`. With checksums turned off for
    /// the channel there is no such check.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-in-place-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let mut reader = channel.reader()?;
    /// channel.writer().send(b"in place")?;
    /// let len = reader.try_recv_in_place(|msg| msg.len())?;
    /// assert_eq!(len, 8);
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn try_recv_in_place<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.wake_up();
        let ready = self.poll()?;
        self.state
            .take_in_place(&self.seg, ready, f)
            .ok_or(Error::Damaged)
    }

    /// Receives up to `max` messages, handing each to `f` in order, and hands their
    /// nodes back to writers once for the whole batch. Returns how many were received;
    /// `Empty` if none was ready. Skips on the way are counted as in `try_recv`.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-batch-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// let writer = channel.writer();
    /// for i in 0..5u8 {
    ///     writer.send(&[i; 3])?;
    /// }
    /// let mut reader = channel.reader()?;
    /// let mut seen = Vec::new();
    /// assert_eq!(reader.recv_batch(4, |msg| seen.push(msg[0]))?, 4);
    /// assert_eq!(reader.recv_batch(4, |msg| seen.push(msg[0]))?, 1);
    /// assert_eq!(seen, [0, 1, 2, 3, 4]);
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize> {
        self.role.check()?;
        self.wake_up();
        let mut n = 0;
        while n < max {
            // The common case first, so that `Ready` stays in registers (see `poll_fast`).
            let ready = match self.state.poll_fast(&self.seg) {
                Some(ready) => ready,
                None => match self.state.poll_slow(&self.seg, self.clock) {
                    Ok(ready) => ready,
                    Err(Error::Empty) => break,
                    Err(e) => {
                        self.state.finish_batch(&self.seg);
                        return Err(e);
                    }
                },
            };
            if self.scratch.len() < ready.len {
                self.scratch.resize(ready.len, 0);
            }
            if self.state.take_batched(&self.seg, ready, &mut self.scratch) {
                f(&self.scratch[..ready.len]);
                n += 1;
            }
        }
        self.state.finish_batch(&self.seg);
        if n == 0 {
            return self.settle(Err(Error::Empty));
        }
        Ok(n)
    }

    /// Hands consumed nodes back to writers now. The reader does this by itself every
    /// 1/16 of the ring and whenever it finds the ring empty. Does nothing once the role
    /// was lost (the read cursor is the new owner's), nor with
    /// [manual commit](Reader::set_manual_commit), where [`commit`](Reader::commit) does it.
    pub fn release(&mut self) {
        if self.role.check().is_ok() {
            self.state.release(&self.seg);
        }
    }

    /// Manual commit (`true`): messages stay in the ring after they are received, and the
    /// read cursor — where the next reader starts if this one dies or is dropped — moves
    /// only on [`commit`](Reader::commit). A reader that forwards messages elsewhere (the
    /// NATS bridge) commits once the other side acknowledged them, so a crash loses
    /// nothing: its successor receives the uncommitted messages again. Writers find the
    /// ring full when it holds a ring's worth of uncommitted messages. `false` (the
    /// default) commits what was received and goes back to consuming as it receives.
    ///
    /// ```
    /// # let name = format!("/atbus-doc-commit-{}", std::process::id());
    /// let channel = atbus::Channel::create(&name, 1 << 20, &atbus::Config::default())?;
    /// for m in [&b"one"[..], b"two", b"three"] {
    ///     channel.writer().send(m)?;
    /// }
    /// let mut reader = channel.reader()?;
    /// reader.set_manual_commit(true)?;
    /// assert_eq!(reader.try_recv_vec()?, b"one");
    /// reader.commit(reader.position())?; // "one" is handed back for good
    /// assert_eq!(reader.try_recv_vec()?, b"two");
    /// drop(reader); // "two" was not committed
    ///
    /// let mut reader = channel.reader()?;
    /// assert_eq!(reader.try_recv_vec()?, b"two");
    /// assert_eq!(reader.try_recv_vec()?, b"three");
    /// # drop(reader);
    /// # atbus::Channel::unlink(&name)?;
    /// # Ok::<(), atbus::Error>(())
    /// ```
    pub fn set_manual_commit(&mut self, on: bool) -> Result<()> {
        self.role.check()?;
        self.state.set_manual_commit(&self.seg, on);
        Ok(())
    }

    /// Hands every message received before `position` back to writers for good and
    /// moves the read cursor there (with [manual commit](Reader::set_manual_commit)).
    /// `position` is [`position()`](Reader::position) as it was right after receiving the
    /// last message to commit; it must lie between the last commit and the current
    /// position, or the call fails with `InvalidCommit` and changes nothing.
    pub fn commit(&mut self, position: u64) -> Result<()> {
        self.role.check()?;
        if self.state.commit(&self.seg, position) {
            return Ok(());
        }
        Err(Error::InvalidCommit {
            position,
            committed: self.state.committed(),
            received: self.state.position(),
        })
    }

    /// The read cursor as last published: with manual commit, the last committed
    /// position, where a successor reader would start.
    pub fn committed(&self) -> u64 {
        self.state.committed()
    }

    /// Runs `attempt` until it returns something other than `Empty`, backing off and
    /// then sleeping on the channel's futex; `Timeout` after `deadline`.
    fn block_on<R>(
        &mut self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut(&mut Self) -> Result<R>,
    ) -> Result<R> {
        self.wake_up();
        let mut spins = 0;
        loop {
            match attempt(self) {
                Err(Error::Empty) => {}
                other => return other,
            }
            // Poll a few times (SPIN_POLLS), then sleep. No yield phase: on a busy host a
            // yield hands the core to another process for a whole slice, which is what a
            // blocking receive must not cost. No clock read while spinning either (a
            // clock read costs as much as a poll in a VM): the deadline is looked at
            // before each sleep, so a timeout is late by the spin at most.
            if spins < SPIN_POLLS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => return Err(Error::Timeout),
                Some(d) => d - now,
                None => IDLE_SLICE,
            };
            let slice = if self.state.claimed_ahead(&self.seg) {
                TORN_SLICE
            } else {
                IDLE_SLICE
            };
            let seg = self.seg.clone();
            // The handshake (wake.rs): announce, look once more, sleep only if that found
            // nothing; a writer that publishes meanwhile wakes the futex.
            let look = || attempt(self);
            if let Some(got) = wake::sleep_unless(&seg.header().wake, look, slice.min(left)) {
                return got;
            }
            crate::ring::bump(&seg.header().reader_counters.sleeps, 1);
            spins = 0;
        }
    }

    /// The name the channel was opened by.
    #[cfg(feature = "tokio")]
    pub(crate) fn channel_name(&self) -> &str {
        self.seg.name()
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

    /// The next ready block, or why there is none. The common case is matched before the
    /// slow path is called, and the function inlined, so that `Ready` reaches the caller
    /// in registers (see `ReadState::poll_fast`).
    #[inline(always)]
    fn poll(&mut self) -> Result<Ready> {
        self.role.check()?;
        match self.state.poll_fast(&self.seg) {
            Some(ready) => Ok(ready),
            None => {
                let polled = self.state.poll_slow(&self.seg, self.clock);
                self.settle(polled)
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.wake_up();
        let (state, seg) = (&mut self.state, &self.seg);
        self.role.give_back(|| state.release(seg));
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
