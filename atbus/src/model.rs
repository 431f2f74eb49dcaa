//! The ring under the model checker: `RUSTFLAGS="--cfg loom"` builds this module, and
//! `atbus/tests/loom.rs` drives it. The claim, publish, check, skip, consume and release
//! code is the product's own (`ring.rs`), running over heap memory (`segment_model.rs`)
//! with loom's atomics; a writer can be stopped for good at any [`Step`], like a process
//! killed there, and the torn-block timeout can be made to expire at once.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
pub use crate::ring::Step;
use crate::ring::{self, ReadState};
pub use crate::segment::ModelFifo;
use crate::segment::{Segment, Settings};
use crate::stats::Stats;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;
use crate::wake;

/// A deliberate bug the wake-up code can be told to have, so that a test can show the
/// model catches it (each is a fence or a second look the handshakes need).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The reader announces its sleep without the fence before its second look.
    ReaderFence,
    /// The reader sleeps without looking at the ring again after announcing.
    ReaderRecheck,
    /// A writer looks for a sleeping reader without the fence after its publish.
    WriterFence,
    /// A writer waiting for space registers without the fence before its retry.
    SpaceFence,
    /// The reader looks for waiting writers without the fence after its release.
    ReleaseFence,
}

std::thread_local! {
    // Loom runs every model thread on the test's own OS thread: a std thread-local set
    // by the test is seen by all of them, and by no other test.
    static MUTATION: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// Runs `f` with the wake-up code carrying `mutation`.
pub fn with_mutation<R>(mutation: Mutation, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MUTATION.with(|m| m.set(None));
        }
    }
    MUTATION.with(|m| m.set(Some(mutation)));
    let _reset = Reset;
    f()
}

/// Whether the wake-up code is to carry `mutation`.
pub(crate) fn mutation(mutation: Mutation) -> bool {
    MUTATION.with(|m| m.get() == Some(mutation))
}

/// A sleep "for ever" in the model: the model's futex has no timeout anyway.
const FOREVER: Duration = Duration::from_secs(3600);

/// What a paused writer runs at its step: it returns when the writer may go on.
type Pause = Box<dyn Fn()>;

loom::thread_local! {
    static STOP_AT: Cell<Option<Step>> = Cell::new(None);
    static PAUSE_AT: std::cell::RefCell<Option<(Step, Pause)>> = std::cell::RefCell::new(None);
}

/// Whether the current model thread is to stop at `step`.
pub(crate) fn stops_at(step: Step) -> bool {
    STOP_AT.with(|s| s.get() == Some(step))
}

/// Runs the current model thread's pause, if it is to pause at `step`.
pub(crate) fn pause_at(step: Step) {
    PAUSE_AT.with(|p| {
        if let Some((at, pause)) = &*p.borrow() {
            if *at == step {
                pause();
            }
        }
    });
}

/// A ring in the model.
#[derive(Clone)]
pub struct ModelChannel {
    seg: Arc<Segment>,
}

impl ModelChannel {
    /// A ring of `node_count` nodes of `node_size` bytes. A zero `timeout` makes every
    /// unwritten block expire as soon as the reader has seen it once; `track_data`
    /// makes loom check every payload access (see `segment_model.rs`).
    pub fn new(node_size: usize, node_count: u64, timeout: Duration, track_data: bool) -> Self {
        let settings = Settings {
            timeout,
            write_retries: 1,
            protect_nodes: 0,
            detect_dead_writers: false,
            checksums: true,
        };
        ModelChannel {
            seg: Arc::new(Segment::new_model(
                node_size, node_count, settings, track_data,
            )),
        }
    }

    /// A writer.
    pub fn writer(&self) -> ModelWriter {
        let r = self.seg.header().read_cursor.load(Ordering::Acquire);
        ModelWriter {
            seg: self.seg.clone(),
            cached_read: AtomicU64::new(r),
        }
    }

    /// The reader.
    pub fn reader(&self) -> ModelReader {
        ModelReader {
            state: ReadState::new(&self.seg),
            seg: self.seg.clone(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats::read(self.seg.header())
    }

    /// Largest message.
    pub fn max_message_len(&self) -> usize {
        ring::max_payload(&self.seg)
    }
}

/// A writer in the model.
pub struct ModelWriter {
    seg: Arc<Segment>,
    cached_read: AtomicU64,
}

impl ModelWriter {
    /// `Writer::send`.
    pub fn send(&self, data: &[u8]) -> Result<()> {
        ring::send(&self.seg, &self.cached_read, 1, data)
    }

    /// `send`, but the writer runs `pause` at `step` (a test makes it wait there for a
    /// signal, as a process descheduled at that point would) and then goes on.
    pub fn send_pausing_at(
        &self,
        data: &[u8],
        step: Step,
        pause: impl Fn() + 'static,
    ) -> Result<()> {
        PAUSE_AT.with(|p| *p.borrow_mut() = Some((step, Box::new(pause))));
        let result = self.send(data);
        PAUSE_AT.with(|p| *p.borrow_mut() = None);
        result
    }

    /// `Writer::try_send_batch`.
    pub fn send_batch(&self, messages: &[&[u8]]) -> Result<usize> {
        ring::send_batch(&self.seg, &self.cached_read, 1, messages)
    }

    /// `send_batch`, but the writer dies at the first `step` it reaches.
    pub fn send_batch_and_die_at(&self, messages: &[&[u8]], step: Step) -> Result<usize> {
        STOP_AT.with(|s| s.set(Some(step)));
        let result = self.send_batch(messages);
        STOP_AT.with(|s| s.set(None));
        result
    }

    /// `Writer::send`: while the ring is full, waits for the reader to free space (the
    /// product's space handshake, `wake.rs`; in the model the sleep has no timeout).
    pub fn send_waiting(&self, data: &[u8]) -> Result<()> {
        let space = &self.seg.header().space;
        loop {
            match self.send(data) {
                Err(Error::Full) => {}
                other => return other,
            }
            if let Some(sent) = wake::wait_for_space_unless(space, || self.send(data), FOREVER) {
                return sent;
            }
        }
    }

    /// `send`, but the writer dies at `step`: it returns there (with `Timeout`) and
    /// leaves the ring as a killed process would.
    pub fn send_and_die_at(&self, data: &[u8], step: Step) -> Result<()> {
        STOP_AT.with(|s| s.set(Some(step)));
        let result = self.send(data);
        STOP_AT.with(|s| s.set(None));
        result
    }
}

/// The reader in the model.
pub struct ModelReader {
    seg: Arc<Segment>,
    state: ReadState,
}

impl ModelReader {
    /// `Reader::try_recv`.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.state.recv_into(&self.seg, Instant::now, buf)
    }

    /// `Reader::recv`: receives, and while the ring is empty sleeps on the futex until
    /// a writer wakes it (the product's handshake, `wake.rs`; no timeout in the model).
    pub fn recv_sleeping(&mut self, buf: &mut [u8]) -> Result<usize> {
        let seg = self.seg.clone();
        loop {
            match self.try_recv(buf) {
                Err(Error::Empty) => {}
                other => return other,
            }
            if let Some(got) =
                wake::sleep_unless(&seg.header().wake, || self.try_recv(buf), FOREVER)
            {
                return got;
            }
        }
    }

    /// What `Reader::new` does on taking the role over: clears a dead predecessor's
    /// armed flag.
    pub fn take_over(&self) {
        wake::reader_took_over(&self.seg.header().wake);
    }

    /// What the first `Reader::readiness_fd` or `arm` does: creates the doorbell FIFO
    /// (replacing any at the path) and bumps the epoch.
    pub fn create_doorbell(&self) -> Arc<ModelFifo> {
        let fifo = self.seg.create_doorbell();
        wake::new_doorbell(&self.seg.header().wake);
        fifo
    }

    /// `Reader::arm`: `true` when armed (nothing ready: wait on the doorbell), `false`
    /// when a message is ready.
    pub fn arm(&mut self) -> bool {
        let seg = self.seg.clone();
        let look = || self.state.poll(&seg, Instant::now).map(|_| ());
        wake::arm_unless(&seg.header().wake, look).is_none()
    }

    /// An event loop's receive on the doorbell: receive; while empty, `arm`, wait until
    /// the FIFO is readable (no timeout in the model), drain it and receive again.
    pub fn recv_on_doorbell(&mut self, fifo: &ModelFifo, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.try_recv(buf) {
                Err(Error::Empty) => {}
                other => return other,
            }
            if self.arm() {
                fifo.wait_and_drain();
                // The next receive disarms, as the product's does.
                wake::withdraw(&self.seg.header().wake);
            }
        }
    }

    /// `Reader::set_manual_commit`.
    pub fn set_manual_commit(&mut self, on: bool) {
        self.state.set_manual_commit(&self.seg, on);
    }

    /// `Reader::commit`: `false` when `position` is out of range.
    pub fn commit(&mut self, position: u64) -> bool {
        self.state.commit(&self.seg, position)
    }

    /// `Reader::position`.
    pub fn position(&self) -> u64 {
        self.state.position()
    }

    /// True when the reader has consumed every claimed node.
    pub fn caught_up(&self) -> bool {
        self.seg.header().write_cursor.load(Ordering::SeqCst) == self.state.position()
    }

    /// (shared read cursor, write cursor, reader position).
    pub fn cursors(&self) -> (u64, u64, u64) {
        let (r, w) = self.seg.cursors();
        (r, w, self.state.position())
    }
}
