//! The ring under the model checker: `RUSTFLAGS="--cfg loom"` builds this module, and
//! `atbus/tests/loom.rs` drives it. The claim, publish, check, skip, consume and release
//! code is the product's own (`ring.rs`), running over heap memory (`segment_model.rs`)
//! with loom's atomics; a writer can be stopped for good at any [`Step`], like a process
//! killed there, and the torn-block timeout can be made to expire at once.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
pub use crate::ring::Step;
use crate::ring::{self, ReadState};
use crate::segment::{Segment, Settings};
use crate::stats::Stats;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;

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
