//! `stress`: N writer processes and one reader process over one channel, every byte of
//! every message predicted and checked, with optional fault injection (see
//! [`crate::faults`]).

use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use atbus::{Backoff, Channel, Config, Error};
use nix::sys::signal::Signal;

use crate::board::{self, bump, Board};
use crate::faults::{FaultArgs, Faults};
use crate::payload::{self, Checked, Sizes};
use crate::procs;
use crate::report::{self, Progress, Snapshot};
use crate::units::{bytes_arg, duration_arg};
use crate::Fail;

/// Options of `stress`.
#[derive(clap::Args, Clone, Debug)]
pub struct StressArgs {
    /// Writer processes.
    #[arg(long, default_value_t = 3)]
    pub writers: usize,
    /// Channel size (bytes; K/M/G suffixes).
    #[arg(long, value_parser = bytes_arg, default_value = "16MiB")]
    pub channel_size: usize,
    /// Node size (a power of two from 64 to 65536).
    #[arg(long, value_parser = bytes_arg, default_value = "128")]
    pub node_size: usize,
    /// Message sizes: a fixed size `N` or a uniform range `A-B` (e.g. 64, 8-2K).
    #[arg(long, default_value = "8-2K")]
    pub sizes: String,
    /// Torn-block timeout of the channel (default: the library's, 1 s).
    #[arg(long, value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// Run for this long (default 10 s; plain number = seconds).
    #[arg(long, value_parser = duration_arg, conflicts_with_all = ["messages", "forever"])]
    pub secs: Option<Duration>,
    /// Stop after this many messages in total.
    #[arg(long, conflicts_with = "forever")]
    pub messages: Option<u64>,
    /// Run until interrupted (Ctrl-C or SIGTERM).
    #[arg(long)]
    pub forever: bool,
    /// Progress line interval (default 1 s; 1 min with --forever).
    #[arg(long, value_parser = duration_arg)]
    pub progress_every: Option<Duration>,
    /// Print the final summary as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Seed of the payload and fault generators (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Pin the reader to this CPU.
    #[arg(long)]
    pub reader_cpu: Option<usize>,
    /// Pin writers to these CPUs, round robin (e.g. 0,1).
    #[arg(long, value_delimiter = ',')]
    pub writer_cpus: Vec<usize>,
    /// How the reader receives: `poll` (try_recv with backoff), `blocking`
    /// (recv_timeout), `batch` (recv_batch, 64 a call), `in-place` (try_recv_in_place) or
    /// `tokio` (AsyncReader::recv on a current-thread runtime, waiting on the doorbell).
    #[arg(long, value_enum, default_value_t = ReaderMode::Poll)]
    pub reader_mode: ReaderMode,
    /// Writers send with `reserve` + fill in place + `commit` instead of `send`.
    #[arg(long)]
    pub zero_copy: bool,
    /// Writers send 16 messages a call with `try_send_batch` (one claim for as many as
    /// fit) instead of `send`.
    #[arg(long, conflicts_with = "zero_copy")]
    pub batch_send: bool,
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// How the stress reader receives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderMode {
    /// `try_recv` into a buffer, with `Backoff` while empty.
    Poll,
    /// `recv_timeout` into a buffer (spin, yield, then sleep on the channel's futex).
    Blocking,
    /// `recv_batch`, up to [`BATCH`] messages a call.
    Batch,
    /// `try_recv_in_place`: checked inside the ring, committed only once the library
    /// confirms the crc after the closure.
    InPlace,
    /// `AsyncReader::recv` on a current-thread tokio runtime: arms the reader and waits
    /// in tokio for its doorbell.
    Tokio,
}

impl ReaderMode {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReaderMode::Poll => "poll",
            ReaderMode::Blocking => "blocking",
            ReaderMode::Batch => "batch",
            ReaderMode::InPlace => "in-place",
            ReaderMode::Tokio => "tokio",
        }
    }
}

/// Messages per `recv_batch` call in `--reader-mode batch`.
pub const BATCH: usize = 64;
/// How long one `recv_timeout` call of `--reader-mode blocking` waits before the reader
/// looks whether the run is over.
const BLOCKING_SLICE: Duration = Duration::from_millis(20);

/// Arguments of the hidden writer role.
#[derive(clap::Args, Clone, Debug)]
pub struct WriterRole {
    #[arg(long)]
    channel: String,
    #[arg(long)]
    board_fd: i32,
    #[arg(long)]
    stream: u32,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    sizes: String,
    #[arg(long)]
    parent: u32,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long)]
    zero_copy: bool,
    #[arg(long)]
    batch_send: bool,
}

/// Arguments of the hidden reader role.
#[derive(clap::Args, Clone, Debug)]
pub struct ReaderRole {
    #[arg(long)]
    channel: String,
    #[arg(long)]
    board_fd: i32,
    #[arg(long)]
    incarnation: u64,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    sizes: String,
    #[arg(long)]
    parent: u32,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long, value_enum, default_value_t = ReaderMode::Poll)]
    mode: ReaderMode,
}

/// Messages a writer takes from the shared budget at once (with `--messages`).
const BUDGET_BATCH: u64 = 256;

/// The writer role: sends predictable messages until told to stop.
pub fn writer_role(a: WriterRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    if let Some(cpu) = a.cpu {
        procs::pin_to(cpu)?;
    }
    let sizes = Sizes::parse(&a.sizes)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let channel = Channel::open(&a.channel).map_err(|e| e.to_string())?;
    let writer = channel.writer();
    let s = a.stream as usize;
    let stop = board.control(board::C_STOP);
    let mut budget = Budget {
        limit: board.control(board::C_LIMIT).load(Ordering::Relaxed),
        claimed: board.control(board::C_CLAIMED),
        left: 0,
    };
    if a.batch_send {
        return batch_writer(&a, &board, &writer, &sizes, &mut budget);
    }
    let mut buf = vec![0u8; sizes.max()];
    let mut tally = Tally::new(&board, s);
    let mut seq = 0u64;
    'messages: loop {
        if stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        if !budget.take() {
            break;
        }
        let word = payload::header_word(a.stream, seq);
        let n = sizes.size_for(a.seed, word);
        let msg = &mut buf[..n];
        if !a.zero_copy {
            payload::fill(msg, word, a.seed, 1);
        }
        let in_send = board.w(s, board::W_IN_SEND);
        let in_send_count = board.w(s, board::W_IN_SEND_COUNT);
        let mut backoff = Backoff::new();
        loop {
            // Marks the send call only (not the backoff between Full retries), so a kill
            // outside `send` is not counted as one that may have torn a block. With
            // --zero-copy the mark spans reserve, the fill in the ring and commit.
            in_send.store(seq + 1, Ordering::Relaxed);
            in_send_count.store(1, Ordering::Relaxed);
            let sent = if a.zero_copy {
                writer.reserve(n).and_then(|mut slot| {
                    payload::fill(&mut slot, word, a.seed, 1);
                    slot.commit()
                })
            } else {
                writer.try_send(msg)
            };
            match sent {
                Ok(()) => {
                    tally.sent(1, n as u64);
                    break;
                }
                Err(Error::Full) => {
                    in_send.store(0, Ordering::Relaxed);
                    tally.full();
                    if stop.load(Ordering::Relaxed) != 0 {
                        break 'messages;
                    }
                    backoff.snooze();
                }
                // Not delivered (the library's promise): send the same message again, so
                // the stream stays gap-free.
                Err(Error::Abandoned { .. }) => tally.abandoned(),
                Err(e) => return Err(format!("writer stream {s}: send failed: {e}")),
            }
        }
        in_send.store(0, Ordering::Relaxed);
        seq += 1;
    }
    Ok(())
}

/// A writer's counts, each mirrored on its board line (relaxed stores) for the parent.
struct Tally<'a> {
    board: &'a Board,
    stream: usize,
    ok: u64,
    bytes: u64,
    full: u64,
    abandoned: u64,
}

impl<'a> Tally<'a> {
    fn new(board: &'a Board, stream: usize) -> Tally<'a> {
        Tally {
            board,
            stream,
            ok: 0,
            bytes: 0,
            full: 0,
            abandoned: 0,
        }
    }

    /// `messages` sends of `bytes` bytes in all returned `Ok`.
    fn sent(&mut self, messages: u64, bytes: u64) {
        self.ok += messages;
        self.bytes += bytes;
        let w = |i| self.board.w(self.stream, i);
        w(board::W_OK).store(self.ok, Ordering::Relaxed);
        w(board::W_BYTES).store(self.bytes, Ordering::Relaxed);
    }

    /// A send returned `Full`.
    fn full(&mut self) {
        self.full += 1;
        let w = self.board.w(self.stream, board::W_FULL);
        w.store(self.full, Ordering::Relaxed);
    }

    /// A send returned `Abandoned`.
    fn abandoned(&mut self) {
        self.abandoned += 1;
        let w = self.board.w(self.stream, board::W_ABANDONED);
        w.store(self.abandoned, Ordering::Relaxed);
    }
}

/// The shared message budget of a `--messages` run: writers take it in steps of
/// [`BUDGET_BATCH`].
struct Budget<'a> {
    limit: u64,
    claimed: &'a std::sync::atomic::AtomicU64,
    left: u64,
}

impl Budget<'_> {
    /// Takes one message from the budget; `false` when it is spent (never without
    /// `--messages`).
    fn take(&mut self) -> bool {
        if self.limit == u64::MAX {
            return true;
        }
        if self.left == 0 {
            let b = self.claimed.fetch_add(BUDGET_BATCH, Ordering::Relaxed);
            if b >= self.limit {
                return false;
            }
            self.left = BUDGET_BATCH.min(self.limit - b);
        }
        self.left -= 1;
        true
    }
}

/// Messages a `--batch-send` writer hands to one `try_send_batch` call.
const SEND_BATCH: usize = 16;

/// `--batch-send`: the writer role's loop with `try_send_batch`. The board marks the
/// call (first sequence + 1 in `W_IN_SEND`, how many in `W_IN_SEND_COUNT`), so that a
/// writer killed mid-batch is allowed that many published but uncounted messages, and
/// `W_OK` counts every message the library reported sent. A batch cut short by
/// `Abandoned` goes on from the first unsent message: the stream stays gap-free.
fn batch_writer(
    a: &WriterRole,
    board: &Board,
    writer: &atbus::Writer,
    sizes: &Sizes,
    budget: &mut Budget<'_>,
) -> Result<(), String> {
    let s = a.stream as usize;
    let stop = board.control(board::C_STOP);
    let (in_send, in_send_count) = (
        board.w(s, board::W_IN_SEND),
        board.w(s, board::W_IN_SEND_COUNT),
    );
    let max = sizes.max();
    let mut store = vec![0u8; max * SEND_BATCH];
    let mut lens = [0usize; SEND_BATCH];
    let mut tally = Tally::new(board, s);
    let mut seq = 0u64;
    'batches: while stop.load(Ordering::Relaxed) == 0 {
        let mut count = 0;
        while count < SEND_BATCH && budget.take() {
            let word = payload::header_word(a.stream, seq + count as u64);
            let n = sizes.size_for(a.seed, word);
            payload::fill(&mut store[count * max..count * max + n], word, a.seed, 1);
            lens[count] = n;
            count += 1;
        }
        if count == 0 {
            break;
        }
        let mut done = 0;
        let mut backoff = Backoff::new();
        while done < count {
            let msgs: [&[u8]; SEND_BATCH] =
                std::array::from_fn(|i| &store[i * max..i * max + lens[i]]);
            in_send.store(seq + done as u64 + 1, Ordering::Relaxed);
            in_send_count.store((count - done) as u64, Ordering::Relaxed);
            match writer.try_send_batch(&msgs[done..count]) {
                Ok(k) => {
                    tally.sent(k as u64, lens[done..done + k].iter().sum::<usize>() as u64);
                    done += k;
                    backoff.reset();
                }
                Err(Error::Full) => {
                    in_send.store(0, Ordering::Relaxed);
                    tally.full();
                    if stop.load(Ordering::Relaxed) != 0 {
                        break 'batches;
                    }
                    backoff.snooze();
                }
                // None of the rest was delivered: sent again from `done` on.
                Err(Error::Abandoned { .. }) => tally.abandoned(),
                Err(e) => return Err(format!("writer stream {s}: send_batch failed: {e}")),
            }
        }
        in_send.store(0, Ordering::Relaxed);
        seq += count as u64;
    }
    Ok(())
}

/// The reader's memory of sequence gaps, to tell a late (reordered) message from a
/// duplicate. Bounded: a gap too large to remember is still counted as lost.
#[derive(Default)]
struct Gaps {
    ranges: Vec<(u32, u64, u64)>,
}

impl Gaps {
    const MAX: usize = 1 << 16;

    fn add(&mut self, stream: u32, lo: u64, hi: u64) {
        if self.ranges.len() < Self::MAX {
            self.ranges.push((stream, lo, hi));
        }
    }

    /// Removes `seq` of `stream` if it is in a remembered gap.
    fn take(&mut self, stream: u32, seq: u64) -> bool {
        let Some(i) = self
            .ranges
            .iter()
            .position(|&(s, lo, hi)| s == stream && lo <= seq && seq < hi)
        else {
            return false;
        };
        let (s, lo, hi) = self.ranges.swap_remove(i);
        if lo < seq {
            self.ranges.push((s, lo, seq));
        }
        if seq + 1 < hi {
            self.ranges.push((s, seq + 1, hi));
        }
        true
    }
}

/// The reader role: receives, checks every byte and every sequence, until the parent
/// says all writers are done and the ring is drained.
pub fn reader_role(a: ReaderRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    if let Some(cpu) = a.cpu {
        procs::pin_to(cpu)?;
    }
    let sizes = Sizes::parse(&a.sizes)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    if board.recover() {
        bump(board.global(board::G_JOURNAL_REPLAYS), 1);
    }
    bump(board.global(board::G_READERS), 1);
    take_in_hand(&board, a.incarnation);
    let channel = Channel::open(&a.channel).map_err(|e| e.to_string())?;
    let mut reader = channel.reader().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; channel.max_message_len().max(sizes.max())];
    let mut gaps = Gaps::default();
    let mut streams = 0usize;
    let done = board.control(board::C_WRITERS_DONE);
    // The run is over when the writers are done and every claimed node was consumed.
    let drained = |reader: &atbus::Reader| {
        done.load(Ordering::Acquire) != 0 && reader.position() == channel.stats().write_cursor
    };
    let me = a.incarnation;
    // Accounts one received message; `verdict` runs only after the message is noted as
    // in hand, so a reader killed while checking it is not mistaken for a loss.
    let mut deliver = |len: usize, word: Option<u64>, verdict: &mut dyn FnMut() -> Checked| {
        account(&board, len, word, verdict, &mut streams, &mut gaps, me)
    };
    if a.mode == ReaderMode::Tokio {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut reader = {
            let _enter = rt.enter();
            atbus::AsyncReader::new(reader).map_err(|e| e.to_string())?
        };
        loop {
            // A slice, so the reader looks whether the run is over while idle.
            let got = rt.block_on(async {
                tokio::time::timeout(BLOCKING_SLICE, reader.recv(&mut buf)).await
            });
            match got {
                Ok(Ok(n)) => {
                    let msg = &buf[..n];
                    deliver(n, header(msg), &mut || check(msg, &a, sizes));
                }
                Ok(Err(e)) => return Err(format!("reader: receive failed: {e}")),
                Err(_) if drained(reader.get_mut()) => break,
                Err(_) => {}
            }
        }
        return Ok(());
    }
    let mut backoff = Backoff::new();
    loop {
        let got = match a.mode {
            ReaderMode::Poll => reader.try_recv(&mut buf).map(|n| {
                let msg = &buf[..n];
                deliver(n, header(msg), &mut || check(msg, &a, sizes));
            }),
            ReaderMode::Blocking => match reader.recv_timeout(&mut buf, BLOCKING_SLICE) {
                Ok(n) => {
                    let msg = &buf[..n];
                    deliver(n, header(msg), &mut || check(msg, &a, sizes));
                    Ok(())
                }
                Err(Error::Timeout) if drained(&reader) => break,
                Err(Error::Timeout) => continue,
                Err(e) => Err(e),
            },
            ReaderMode::Batch => reader
                .recv_batch(BATCH, |msg| {
                    deliver(msg.len(), header(msg), &mut || check(msg, &a, sizes));
                })
                .map(|_| ()),
            ReaderMode::Tokio => unreachable!("handled above"),
            ReaderMode::InPlace => {
                // The verdict is only tentative inside the closure (the bytes are in the
                // ring): it is committed once the library has re-checked the crc.
                match reader
                    .try_recv_in_place(|msg| (msg.len(), header(msg), check(msg, &a, sizes)))
                {
                    Ok((len, word, verdict)) => {
                        deliver(len, word, &mut || verdict);
                        Ok(())
                    }
                    // Counted by the library in `crc_failures` (like a copy that fails
                    // its crc): the message is not delivered, and its loss is attributed
                    // to the stalled writer that overwrote it.
                    Err(Error::Damaged) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        match got {
            Ok(()) => backoff.reset(),
            Err(Error::Empty) => {
                if backoff.is_sleeping() && drained(&reader) {
                    break;
                }
                backoff.snooze();
            }
            Err(e) => return Err(format!("reader: receive failed: {e}")),
        }
    }
    Ok(())
}

/// The header word of a message (its stream and sequence), if it is long enough.
#[inline]
fn header(msg: &[u8]) -> Option<u64> {
    msg.get(..8)
        .map(|h| u64::from_le_bytes(h.try_into().unwrap()))
}

#[inline]
fn check(msg: &[u8], a: &ReaderRole, sizes: Sizes) -> Checked {
    payload::check(msg, a.seed, sizes, 1)
}

/// A killed reader may have received a message (the library consumed it) that it had
/// not yet checked and recorded: its header word is in `G_IN_HAND`. Count it as
/// delivered (unchecked), so the hand-over is not mistaken for a loss.
fn take_in_hand(board: &Board, me: u64) {
    let held = board.global(board::G_IN_HAND).load(Ordering::Acquire);
    if held == 0 {
        return;
    }
    let (stream, seq) = payload::split_word(held - 1);
    let s = stream as usize;
    let streams = board.control(board::C_STREAMS).load(Ordering::Acquire) as usize;
    if s < streams {
        let mut rec = board.read_record(s);
        if seq >= rec[board::R_NEXT] {
            rec[board::R_LOST] += seq - rec[board::R_NEXT];
            rec[board::R_NEXT] = seq + 1;
            rec[board::R_DELIVERED] += 1;
            rec[board::R_READER] = me;
            board.commit(s, &rec);
            bump(board.global(board::G_HANDOVER_UNCHECKED), 1);
        }
    }
    board.global(board::G_IN_HAND).store(0, Ordering::Release);
}

/// Checks one received message (`verdict` runs the check) and commits its verdict to
/// the board. `len` and `word` are the message's length and header word.
#[inline]
fn account(
    board: &Board,
    len: usize,
    word: Option<u64>,
    verdict: impl FnOnce() -> Checked,
    streams: &mut usize,
    gaps: &mut Gaps,
    me: u64,
) {
    bump(board.global(board::G_RECEIVED), 1);
    let in_hand = board.global(board::G_IN_HAND);
    if let Some(word) = word {
        in_hand.store(word.wrapping_add(1), Ordering::Release);
    }
    account_checked(board, len, verdict(), streams, gaps, me);
    in_hand.store(0, Ordering::Release);
}

#[inline]
fn account_checked(
    board: &Board,
    len: usize,
    verdict: Checked,
    streams: &mut usize,
    gaps: &mut Gaps,
    me: u64,
) {
    let (stream, seq, good) = match verdict {
        Checked::Good { stream, seq } => (stream, seq, true),
        Checked::Corrupt { stream, seq } => (stream, seq, false),
        Checked::Short => {
            bump(board.global(board::G_UNATTRIBUTED), 1);
            return;
        }
    };
    let s = stream as usize;
    if s >= *streams {
        *streams = board.control(board::C_STREAMS).load(Ordering::Acquire) as usize;
    }
    // The parent fills a stream's record before it publishes the count (release), so
    // every stream below the count is a real one; the writer's line is not touched here
    // (it changes with every send, and reading it would bounce it between cores).
    if s >= *streams {
        bump(board.global(board::G_UNATTRIBUTED), 1);
        return;
    }
    let mut rec = board.read_record(s);
    let first_here = rec[board::R_READER] != me;
    rec[board::R_READER] = me;
    if !good {
        rec[board::R_CORRUPT] += 1;
    } else {
        let next = rec[board::R_NEXT];
        if seq >= next {
            if seq > next {
                rec[board::R_LOST] += seq - next;
                gaps.add(stream, next, seq);
                if first_here && me > 1 {
                    bump(board.global(board::G_HANDOVER_LOST), seq - next);
                }
            }
            rec[board::R_DELIVERED] += 1;
            rec[board::R_BYTES] += len as u64;
            rec[board::R_NEXT] = seq + 1;
        } else if gaps.take(stream, seq) {
            rec[board::R_REORDER] += 1;
            rec[board::R_LOST] -= 1;
            rec[board::R_DELIVERED] += 1;
            rec[board::R_BYTES] += len as u64;
        } else {
            rec[board::R_DUP] += 1;
            if first_here && me > 1 {
                bump(board.global(board::G_HANDOVER_DUP), 1);
            }
        }
    }
    board.commit(s, &rec);
}

/// One writer slot in the parent.
pub(crate) struct WriterProc {
    /// Writer id (0-based).
    pub id: usize,
    /// Its current stream (incarnation record).
    pub stream: usize,
    pub child: Child,
    /// When a stalled (SIGSTOPped) writer is to be continued.
    pub stalled_until: Option<Instant>,
}

/// Everything the parent needs to run and account for the children.
pub(crate) struct Run {
    pub args: StressArgs,
    pub sizes: Sizes,
    pub seed: u64,
    pub channel: Channel,
    pub name: String,
    pub board: Board,
    pub writers: Vec<WriterProc>,
    pub reader: Option<Child>,
    pub reader_incarnation: u64,
    /// Stream records in use.
    pub streams: usize,
    pub started: Instant,
}

impl Run {
    fn base_args(&self) -> Vec<String> {
        vec![
            "--channel".into(),
            self.name.clone(),
            "--board-fd".into(),
            self.board.fd().to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--sizes".into(),
            self.sizes_arg(),
            "--parent".into(),
            std::process::id().to_string(),
        ]
    }

    fn sizes_arg(&self) -> String {
        match self.sizes {
            Sizes::Fixed(n) => n.to_string(),
            Sizes::Uniform(lo, hi) => format!("{lo}-{hi}"),
        }
    }

    /// Starts writer `id` with a fresh stream (incarnation).
    pub fn spawn_writer(&mut self, id: usize, incarnation: u64) -> Result<WriterProc, String> {
        if self.streams >= board::MAX_STREAMS {
            return Err(format!(
                "more than {} writer incarnations: the results board is full",
                board::MAX_STREAMS
            ));
        }
        let stream = self.streams;
        self.streams += 1;
        self.board
            .w(stream, board::W_ID)
            .store(id as u64 + 1, Ordering::Relaxed);
        self.board
            .w(stream, board::W_INCARNATION)
            .store(incarnation, Ordering::Relaxed);
        self.board
            .control(board::C_STREAMS)
            .store(self.streams as u64, Ordering::Release);
        let mut args = vec!["__stress-writer".to_string()];
        args.extend(self.base_args());
        args.extend(["--stream".into(), stream.to_string()]);
        if self.args.zero_copy {
            args.push("--zero-copy".into());
        }
        if self.args.batch_send {
            args.push("--batch-send".into());
        }
        if !self.args.writer_cpus.is_empty() {
            let cpu = self.args.writer_cpus[id % self.args.writer_cpus.len()];
            args.extend(["--cpu".into(), cpu.to_string()]);
        }
        let child = procs::spawn_self(&args).map_err(|e| format!("cannot start a writer: {e}"))?;
        self.board
            .w(stream, board::W_PID)
            .store(u64::from(child.id()), Ordering::Relaxed);
        Ok(WriterProc {
            id,
            stream,
            child,
            stalled_until: None,
        })
    }

    /// Starts a reader (the next incarnation).
    pub fn spawn_reader(&mut self) -> Result<(), String> {
        self.reader_incarnation += 1;
        let mut args = vec!["__stress-reader".to_string()];
        args.extend(self.base_args());
        args.extend(["--incarnation".into(), self.reader_incarnation.to_string()]);
        args.extend(["--mode".into(), self.args.reader_mode.name().into()]);
        if let Some(cpu) = self.args.reader_cpu {
            args.extend(["--cpu".into(), cpu.to_string()]);
        }
        let child =
            procs::spawn_self(&args).map_err(|e| format!("cannot start the reader: {e}"))?;
        self.reader = Some(child);
        Ok(())
    }

    /// Kills every child and reaps it (used on errors and a second interrupt).
    pub fn kill_all(&mut self) {
        for w in &mut self.writers {
            procs::kill_and_reap(&mut w.child);
        }
        if let Some(r) = &mut self.reader {
            procs::kill_and_reap(r);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::read(&self.board, self.streams, &self.channel)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.kill_all();
        let _ = Channel::unlink(&self.name);
    }
}

/// Checks the options; errors are usage errors (exit code 2).
fn validate(args: &StressArgs) -> Result<(Sizes, Config), Fail> {
    if args.writers == 0 {
        return Err(Fail::Usage("--writers must be at least 1".into()));
    }
    if args.writers > 1024 {
        return Err(Fail::Usage("--writers must be at most 1024".into()));
    }
    let sizes = Sizes::parse(&args.sizes).map_err(Fail::Usage)?;
    let mut config = Config::builder().node_size(args.node_size);
    if let Some(t) = args.timeout {
        config = config.timeout(t);
    }
    let config = config
        .build()
        .map_err(|e| Fail::Usage(format!("{e} (--node-size / --timeout)")))?;
    args.faults.validate().map_err(Fail::Usage)?;
    let cpus = procs::cpu_count();
    for &cpu in args.reader_cpu.iter().chain(&args.writer_cpus) {
        if cpu >= cpus {
            return Err(Fail::Usage(format!(
                "cpu {cpu} does not exist: this machine has cpus 0 to {}",
                cpus - 1
            )));
        }
    }
    Ok((sizes, config))
}

/// Creates the channel for a run, replacing a stale one of the same name.
pub fn create_channel(name: &str, size: usize, config: &Config) -> Result<Channel, Fail> {
    match Channel::create(name, size, config) {
        Err(Error::AlreadyExists { .. }) => {
            let _ = Channel::unlink(name);
            Channel::create(name, size, config)
        }
        other => other,
    }
    .map_err(|e| match e {
        Error::InvalidConfig { .. } | Error::Truncated { .. } | Error::TooLarge { .. } => {
            Fail::Usage(format!("{e} (--channel-size)"))
        }
        e => Fail::Run(format!("cannot create channel {name}: {e}")),
    })
}

/// Runs `stress`; returns the process exit code.
pub fn run(args: StressArgs) -> Result<i32, Fail> {
    let (sizes, config) = validate(&args)?;
    let seed = args.seed.unwrap_or_else(|| {
        payload::mix64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()),
        )
    });
    let name = format!("/atbus-bench-{}", std::process::id());
    procs::install_interrupt_handler();
    let channel = create_channel(&name, args.channel_size, &config)?;
    if channel.max_message_len() < sizes.max() {
        let max = channel.max_message_len();
        let _ = Channel::unlink(&name);
        return Err(Fail::Usage(format!(
            "channel of {} takes messages of at most {max} bytes, smaller than the largest \
             message size {}: use a larger --channel-size or smaller --sizes",
            crate::units::fmt_bytes(args.channel_size),
            sizes.max()
        )));
    }
    let board = match Board::create() {
        Ok(b) => b,
        Err(e) => {
            let _ = Channel::unlink(&name);
            return Err(Fail::Run(format!("cannot create the results board: {e}")));
        }
    };
    let limit = args.messages.unwrap_or(u64::MAX);
    board
        .control(board::C_LIMIT)
        .store(limit, Ordering::Relaxed);
    let duration = if args.forever || args.messages.is_some() {
        None
    } else {
        Some(args.secs.unwrap_or(Duration::from_secs(10)))
    };
    let progress_every = args.progress_every.unwrap_or(if args.forever {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(1)
    });
    let mut run = Run {
        sizes,
        seed,
        channel,
        name,
        board,
        writers: Vec::new(),
        reader: None,
        reader_incarnation: 0,
        streams: 0,
        started: Instant::now(),
        args,
    };
    let mut faults = Faults::new(&run.args.faults, seed);
    let mut out = Progress::new(run.args.json, progress_every);
    out.line(&format!(
        "atbus-bench stress: channel {} ({}, {} B nodes x {}, timeout {}), {} writers + 1 \
         reader ({}{}), sizes {}, {}, seed {}{}",
        run.name,
        crate::units::fmt_bytes(run.args.channel_size),
        run.channel.node_size(),
        run.channel.node_count(),
        crate::units::fmt_duration(run.channel.timeout()),
        run.args.writers,
        run.args.reader_mode.name(),
        if run.args.zero_copy {
            ", zero-copy writers"
        } else if run.args.batch_send {
            ", batch-sending writers"
        } else {
            ""
        },
        sizes.label(),
        match (duration, run.args.messages) {
            (Some(d), _) => format!("for {}", crate::units::fmt_duration(d)),
            (None, Some(m)) => format!("for {m} messages"),
            _ => "until interrupted".into(),
        },
        seed,
        faults.describe(),
    ));

    run.spawn_reader().map_err(Fail::Run)?;
    for id in 0..run.args.writers {
        let w = run.spawn_writer(id, 1).map_err(Fail::Run)?;
        run.writers.push(w);
    }
    run.started = Instant::now();
    faults.start(run.started);

    // The main loop: timers for faults and progress, watching the children.
    let mut failure: Option<String> = None;
    let mut interrupted = false;
    let tick = Duration::from_millis(5);
    loop {
        std::thread::sleep(tick);
        let now = Instant::now();
        if procs::interrupted() > 0 {
            interrupted = true;
            break;
        }
        if let Some(d) = duration {
            if now - run.started >= d {
                break;
            }
        }
        if let Some(msg) = check_children(&mut run) {
            failure = Some(msg);
            break;
        }
        if limit != u64::MAX
            && run
                .writers
                .iter_mut()
                .all(|w| w.child.try_wait().ok().flatten().is_some())
        {
            break;
        }
        if let Err(e) = faults.tick(&mut run, now) {
            failure = Some(e);
            break;
        }
        if out.due(now) {
            let snap = run.snapshot();
            out.progress(now - run.started, &snap, &faults);
        }
    }

    // Stop: continue stalled writers, tell writers to stop, wait for them, then let the
    // reader drain the ring.
    let writing_time = run.started.elapsed();
    let mut hung = Vec::new();
    if failure.is_none() {
        for w in &mut run.writers {
            if w.stalled_until.take().is_some() {
                procs::signal(&w.child, Signal::SIGCONT);
            }
        }
        run.board.control(board::C_STOP).store(1, Ordering::Release);
        let limit = Duration::from_secs(5) + 2 * run.channel.timeout();
        for w in &mut run.writers {
            match procs::wait_for(&mut w.child, limit) {
                Some(st) if st.success() || faults.was_killed(w.stream) => {}
                Some(st) => {
                    failure.get_or_insert(format!("writer {} exited with {st}", w.id));
                }
                None => {
                    hung.push(format!("writer {} (pid {})", w.id, w.child.id()));
                    procs::kill_and_reap(&mut w.child);
                }
            }
            if procs::interrupted() > 1 {
                break;
            }
        }
        run.board
            .control(board::C_WRITERS_DONE)
            .store(1, Ordering::Release);
        if let Some(r) = &mut run.reader {
            // The reader skips torn blocks after the timeout at most once per block run.
            let limit = Duration::from_secs(10) + 4 * run.channel.timeout();
            loop {
                if let Some(st) = procs::wait_for(r, Duration::from_millis(50)) {
                    if !st.success() {
                        failure.get_or_insert(format!("reader exited with {st}"));
                    }
                    break;
                }
                if procs::interrupted() > 1 || writing_time + limit < run.started.elapsed() {
                    hung.push(format!("reader (pid {})", r.id()));
                    procs::kill_and_reap(r);
                    break;
                }
            }
        }
    }
    if !hung.is_empty() {
        failure.get_or_insert(format!(
            "did not finish in time and were killed: {}",
            hung.join(", ")
        ));
    }
    run.kill_all();
    let elapsed = run.started.elapsed();
    let snap = run.snapshot();
    let _ = Channel::unlink(&run.name);
    out.finish_progress();
    let summary = report::summarize(&run, &snap, &faults, writing_time, elapsed);
    if run.args.json {
        println!(
            "{}",
            report::json(
                &run,
                &summary,
                &snap,
                &faults,
                interrupted,
                failure.as_deref()
            )
        );
    } else {
        print!("{}", report::text(&run, &summary, &snap, &faults));
        if interrupted {
            println!(
                "interrupted: stopped early, the channel {} was removed",
                run.name
            );
        }
    }
    if let Some(f) = &failure {
        eprintln!("atbus-bench: error: {f}");
        return Ok(1);
    }
    if summary.unexplained > 0 {
        return Ok(1);
    }
    Ok(if interrupted { 130 } else { 0 })
}

/// Looks for children that exited on their own: an error in a writer or the reader.
fn check_children(run: &mut Run) -> Option<String> {
    for w in &mut run.writers {
        if let Ok(Some(st)) = w.child.try_wait() {
            if run.args.messages.is_some() && st.success() {
                continue;
            }
            return Some(format!("writer {} exited unexpectedly with {st}", w.id));
        }
    }
    if let Some(r) = &mut run.reader {
        if let Ok(Some(st)) = r.try_wait() {
            return Some(format!("reader exited unexpectedly with {st}"));
        }
    }
    None
}
