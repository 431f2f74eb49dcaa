//! `compare`: the same workloads over atbus, the references (the `limit` ring, iceoryx2),
//! Unix datagram sockets, a pipe and POSIX message queues, with the same payload checks, alternating
//! transports for several rounds; plus memcpy bandwidth as the ceiling for large messages.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use atbus::Backoff;
use serde_json::json;

use crate::board::{self, Board};
use crate::payload::{self, Checked, Sizes};
use crate::placement::LineTransfer;
use crate::procs;
use crate::transport::{Endpoint, Kind, Receiver, Sender, SEND_BATCH};
use crate::units::{bytes_arg, duration_arg};
use crate::Fail;

/// Options of `compare`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// Rounds: every transport runs every workload once per round, alternating.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// How long writers send in each run.
    #[arg(long, value_parser = duration_arg, default_value = "1s")]
    pub secs: Duration,
    /// CI mode: one round of 0.2 s runs (checks every transport, measures little).
    #[arg(long)]
    pub quick: bool,
    /// Only these transports (comma separated: atbus,atbus-zc,atbus-batch,
    /// atbus-batch-send,atbus-send-to,limit,iceoryx2,unix-dgram,pipe,posix-mq).
    #[arg(long, value_delimiter = ',')]
    pub transports: Vec<String>,
    /// Only these workloads (comma separated, e.g. 1x64,3x8-2K; WRITERSxSIZES).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// atbus channel size.
    #[arg(long, value_parser = bytes_arg, default_value = "16MiB")]
    pub channel_size: usize,
    /// Payload checks: `full` generates and checks every byte (the default); `light`
    /// checks header, length and a trailer word only: the transports as a reader that
    /// does little per message sees them; `both` runs all rounds with full checks, then
    /// all with light ones, and prints both tables (`--json`: one object, `modes`).
    #[arg(long, default_value = "full")]
    pub check: String,
    /// Print results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Hidden role of a compare writer or reader process.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareRole {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    board_fd: i32,
    #[arg(long)]
    stream: u32,
    #[arg(long)]
    writers: usize,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    sizes: String,
    #[arg(long)]
    parent: u32,
    #[arg(long)]
    light: bool,
}

/// The header word of the end marker each writer sends last.
const END: u64 = u64::MAX;
/// Board control word the reader sets once it can receive: iceoryx2 delivers a sample
/// only to a subscriber that has connected to the publisher, so writers wait for it
/// (on every transport, so they all start alike).
const C_READY: usize = 4;
/// Board globals of a compare run.
const G_T_FIRST: usize = 8;
const G_T_LAST: usize = 9;
const G_ERROR: usize = 10;

/// A workload: writers and a size distribution.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub writers: usize,
    pub sizes: Sizes,
}

impl Workload {
    fn label(&self) -> String {
        format!("{}->1 {}", self.writers, self.sizes.label())
    }

    fn parse(s: &str) -> Result<Workload, String> {
        let (w, sizes) = s
            .split_once('x')
            .ok_or_else(|| format!("workload {s:?}: use WRITERSxSIZES, e.g. 3x8-2K"))?;
        let writers: usize = w
            .parse()
            .map_err(|_| format!("workload {s:?}: bad writers"))?;
        if writers == 0 {
            return Err(format!("workload {s:?}: at least 1 writer"));
        }
        Ok(Workload {
            writers,
            sizes: Sizes::parse(sizes)?,
        })
    }
}

fn default_workloads() -> Vec<Workload> {
    let mut v = Vec::new();
    for writers in [1, 3] {
        for sizes in [
            Sizes::Fixed(64),
            Sizes::Fixed(1024),
            Sizes::Fixed(16384),
            Sizes::Uniform(8, 2048),
        ] {
            v.push(Workload { writers, sizes });
        }
    }
    v
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writer process: sends predictable messages until told to stop, then an end marker.
pub fn writer_role(a: CompareRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    let sizes = Sizes::parse(&a.sizes)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let ep = Endpoint::from_arg(&a.endpoint)?;
    let mut tx = Sender::open(&ep)?;
    let stop = board.control(board::C_STOP);
    let ready = board.control(C_READY);
    let mut backoff = Backoff::new();
    // Acquire: pairs with the reader's release store once its receiver exists.
    while ready.load(Ordering::Acquire) == 0 {
        if stop.load(Ordering::Relaxed) != 0 {
            return Err("the run ended before the reader was ready".into());
        }
        backoff.snooze();
    }
    let s = a.stream as usize;
    let mut buf = vec![0u8; sizes.max()];
    let mut seq = 0u64;
    if matches!(ep, Endpoint::Atbus(Kind::AtbusBatchSend, _)) {
        // SEND_BATCH messages built side by side, then handed over in one call.
        let max = sizes.max();
        let mut store = vec![0u8; max * SEND_BATCH];
        while stop.load(Ordering::Relaxed) == 0 {
            let mut lens = [0usize; SEND_BATCH];
            for (i, (slot, len)) in store.chunks_mut(max).zip(&mut lens).enumerate() {
                let word = payload::header_word(a.stream, seq + i as u64);
                *len = sizes.size_for(a.seed, word);
                if a.light {
                    payload::fill_light(&mut slot[..*len], word, a.seed);
                } else {
                    payload::fill(&mut slot[..*len], word, a.seed, 1);
                }
            }
            let msgs: [&[u8]; SEND_BATCH] =
                std::array::from_fn(|i| &store[i * max..i * max + lens[i]]);
            tx.send_batch(&msgs)?;
            seq += SEND_BATCH as u64;
        }
    }
    while stop.load(Ordering::Relaxed) == 0 {
        let word = payload::header_word(a.stream, seq);
        let n = sizes.size_for(a.seed, word);
        let (light, seed) = (a.light, a.seed);
        tx.send_with(n, &mut buf, |msg| {
            if light {
                payload::fill_light(msg, word, seed);
            } else {
                payload::fill(msg, word, seed, 1);
            }
        })?;
        seq += 1;
    }
    board.w(s, board::W_OK).store(seq, Ordering::Relaxed);
    let end = END.to_le_bytes();
    tx.send(&end)?;
    Ok(())
}

/// Reader process: receives and checks until every writer's end marker arrived.
pub fn reader_role(a: CompareRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    let sizes = Sizes::parse(&a.sizes)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let ep = Endpoint::from_arg(&a.endpoint)?;
    let mut rx = Receiver::open(&ep)?;
    let stop = board.control(board::C_STOP);
    rx.prepare(a.writers, || stop.load(Ordering::Relaxed) != 0)?;
    // Release: the receiver (a subscriber, for iceoryx2) exists before writers send.
    board.control(C_READY).store(1, Ordering::Release);
    let mut scratch = vec![0u8; sizes.max().max(64 << 10)];
    let mut recs = vec![[0u64; board::R_FIELDS]; a.writers];
    let mut ends = 0usize;
    let mut first = 0u64;
    let mut unattributed = 0u64;
    let seed = a.seed;
    let light = a.light;
    while ends < a.writers {
        rx.recv_some(&mut scratch, |msg| {
            if msg.len() == 8 && msg == END.to_le_bytes() {
                ends += 1;
                return;
            }
            let checked = if light {
                payload::check_light(msg, seed, sizes)
            } else {
                payload::check(msg, seed, sizes, 1)
            };
            if first == 0 {
                first = monotonic_ns();
            }
            let (stream, seq, good) = match checked {
                Checked::Good { stream, seq } => (stream, seq, true),
                Checked::Corrupt { stream, seq } => (stream, seq, false),
                Checked::Short => (u32::MAX, 0, false),
            };
            let Some(rec) = recs.get_mut(stream as usize) else {
                unattributed += 1;
                return;
            };
            if !good {
                rec[board::R_CORRUPT] += 1;
            } else if seq >= rec[board::R_NEXT] {
                rec[board::R_LOST] += seq - rec[board::R_NEXT];
                rec[board::R_NEXT] = seq + 1;
                rec[board::R_DELIVERED] += 1;
                rec[board::R_BYTES] += msg.len() as u64;
            } else {
                rec[board::R_DUP] += 1;
            }
        })?;
    }
    let last = monotonic_ns();
    for (s, rec) in recs.iter().enumerate() {
        board.commit(s, rec);
    }
    board
        .global(board::G_UNATTRIBUTED)
        .store(unattributed, Ordering::Relaxed);
    board.global(G_T_FIRST).store(first, Ordering::Relaxed);
    board.global(G_T_LAST).store(last, Ordering::Relaxed);
    Ok(())
}

/// One measured run.
#[derive(Clone, Debug)]
struct Sample {
    msgs_per_s: f64,
    mib_per_s: f64,
    delivered: u64,
    errors: u64,
}

/// Results of one (workload, transport) over all rounds.
struct Cell {
    workload: usize,
    kind: Kind,
    samples: Vec<Sample>,
    skipped: Option<String>,
    failure: Option<String>,
}

struct RunSpec {
    secs: Duration,
    channel_size: usize,
    seed: u64,
    light: bool,
}

fn run_one(kind: Kind, w: &Workload, spec: &RunSpec, tag: &str) -> Result<Sample, String> {
    let ep = Endpoint::create(kind, tag, w.writers, w.sizes.max(), spec.channel_size)?;
    let result = run_on(&ep, w, spec);
    ep.destroy();
    result
}

fn run_on(ep: &Endpoint, w: &Workload, spec: &RunSpec) -> Result<Sample, String> {
    let (secs, seed) = (spec.secs, spec.seed);
    let board = Board::create().map_err(|e| format!("board: {e}"))?;
    let base = |role: &str, stream: usize| -> Vec<String> {
        let mut v = vec![
            role.to_string(),
            "--endpoint".into(),
            ep.to_arg(),
            "--board-fd".into(),
            board.fd().to_string(),
            "--stream".into(),
            stream.to_string(),
            "--writers".into(),
            w.writers.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--sizes".into(),
            match w.sizes {
                Sizes::Fixed(n) => n.to_string(),
                Sizes::Uniform(a, b) => format!("{a}-{b}"),
            },
            "--parent".into(),
            std::process::id().to_string(),
        ];
        if spec.light {
            v.push("--light".into());
        }
        v
    };
    let mut children = Vec::new();
    let spawn = |args: Vec<String>| procs::spawn_self(&args).map_err(|e| format!("spawn: {e}"));
    let reader = spawn(base("__compare-reader", 0))?;
    children.push(reader);
    for s in 0..w.writers {
        match spawn(base("__compare-writer", s)) {
            Ok(c) => children.push(c),
            Err(e) => {
                for c in &mut children {
                    procs::kill_and_reap(c);
                }
                return Err(e);
            }
        }
    }
    ep.close_parent_fds();
    let start = Instant::now();
    let mut failure = None;
    while start.elapsed() < secs {
        std::thread::sleep(Duration::from_millis(5));
        if procs::interrupted() > 0 {
            failure = Some("interrupted".to_string());
            break;
        }
        if children
            .iter_mut()
            .any(|c| c.try_wait().ok().flatten().is_some())
        {
            failure = Some("a child exited early".to_string());
            break;
        }
    }
    board.control(board::C_STOP).store(1, Ordering::Release);
    for (i, c) in children.iter_mut().enumerate() {
        match procs::wait_for(c, Duration::from_secs(20)) {
            Some(st) if st.success() => {}
            Some(st) => {
                failure.get_or_insert(format!(
                    "{} exited with {st}",
                    if i == 0 { "reader" } else { "a writer" }
                ));
            }
            None => {
                procs::kill_and_reap(c);
                failure.get_or_insert("a child hung and was killed".into());
            }
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let mut delivered = 0;
    let mut bytes = 0;
    let mut errors = board.global(board::G_UNATTRIBUTED).load(Ordering::Relaxed)
        + board.global(G_ERROR).load(Ordering::Relaxed);
    for s in 0..w.writers {
        let rec = board.read_record(s);
        let sent = board.w(s, board::W_OK).load(Ordering::Relaxed);
        delivered += rec[board::R_DELIVERED];
        bytes += rec[board::R_BYTES];
        errors += rec[board::R_LOST] + rec[board::R_DUP] + rec[board::R_CORRUPT];
        errors += sent.saturating_sub(rec[board::R_DELIVERED]);
    }
    let t0 = board.global(G_T_FIRST).load(Ordering::Relaxed);
    let t1 = board.global(G_T_LAST).load(Ordering::Relaxed);
    let dt = (t1.saturating_sub(t0)).max(1) as f64 / 1e9;
    Ok(Sample {
        msgs_per_s: delivered as f64 / dt,
        mib_per_s: bytes as f64 / dt / (1u64 << 20) as f64,
        delivered,
        errors,
    })
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (s[0], med, s[n - 1])
}

/// The CPU this ran on: `model name` from /proc/cpuinfo and the vendor in one word
/// (`Intel`, `AMD`, or the `vendor_id` as given).
pub(crate) fn cpu_model() -> (String, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let model = field("model name");
    let vendor = match field("vendor_id").as_str() {
        "GenuineIntel" => "Intel".to_string(),
        "AuthenticAMD" | "HygonGenuine" => "AMD".to_string(),
        "" if model.contains("Intel") => "Intel".to_string(),
        "" if model.contains("AMD") => "AMD".to_string(),
        "" => "unknown vendor".to_string(),
        other => other.to_string(),
    };
    let model = if model.is_empty() {
        "unknown model (no `model name` in /proc/cpuinfo)".to_string()
    } else {
        model
    };
    (model, vendor)
}

fn medians(c: &Cell) -> f64 {
    stats(&c.samples.iter().map(|s| s.msgs_per_s).collect::<Vec<_>>()).1
}

/// `num ÷ den` per round (the runs of one round are next to each other in time, so the
/// ratio of a pair sees the same machine load), and the ratio of the medians.
struct Paired {
    per_round: Vec<f64>,
    num_median: f64,
    den_median: f64,
}

impl Paired {
    fn of(num: &Cell, den: &Cell) -> Option<Paired> {
        let per_round: Vec<f64> = den
            .samples
            .iter()
            .zip(&num.samples)
            .filter(|(d, _)| d.msgs_per_s > 0.0)
            .map(|(d, n)| n.msgs_per_s / d.msgs_per_s)
            .collect();
        if per_round.is_empty() {
            return None;
        }
        Some(Paired {
            per_round,
            num_median: medians(num),
            den_median: medians(den),
        })
    }

    fn ratio_of_medians(&self) -> f64 {
        self.num_median / self.den_median.max(1e-9)
    }

    /// `medians A / B msgs/s = Rx; paired by round: min / median / max (n rounds)`.
    fn describe(&self) -> String {
        let (lo, med, hi) = stats(&self.per_round);
        format!(
            "medians {:.3} M / {:.3} M msgs/s = {:.2}x; paired by round: min {lo:.2}x / \
             median {med:.2}x / max {hi:.2}x ({} rounds)",
            self.num_median / 1e6,
            self.den_median / 1e6,
            self.ratio_of_medians(),
            self.per_round.len(),
        )
    }

    fn to_json(&self) -> serde_json::Value {
        let (lo, med, hi) = stats(&self.per_round);
        json!({
            "ratio_of_medians": self.ratio_of_medians(),
            "ratio_per_round": self.per_round,
            "ratio_per_round_min": lo,
            "ratio_per_round_median": med,
            "ratio_per_round_max": hi,
        })
    }
}

/// The references every atbus figure is divided by.
const REFERENCES: [Kind; 2] = [Kind::Limit, Kind::Iceoryx2];

/// memcpy bandwidth: 16 KiB pieces from a 16 MiB ring into one buffer (what a reader
/// does), in GB/s; and the same with both buffers hot in cache. Both buffers are
/// 64-byte aligned, so glibc's `rep movsb` alignment cliff does not apply.
fn memcpy_bandwidth(secs: f64) -> (f64, f64) {
    let piece = 16 << 10;
    let ring_len = 16 << 20;
    let mut ring_mem = vec![0x5au8; ring_len + 64];
    let mut dst_mem = vec![0u8; piece + 64];
    let ring_off = ring_mem.as_ptr().align_offset(64);
    let dst_off = dst_mem.as_ptr().align_offset(64);
    let ring = &mut ring_mem[ring_off..ring_off + ring_len];
    let dst = &mut dst_mem[dst_off..dst_off + piece];
    let mut run = |hot: bool| {
        let start = Instant::now();
        let mut bytes = 0u64;
        let mut off = 0;
        while start.elapsed().as_secs_f64() < secs {
            for _ in 0..256 {
                let src = if hot {
                    &ring[..piece]
                } else {
                    &ring[off..off + piece]
                };
                dst.copy_from_slice(std::hint::black_box(src));
                std::hint::black_box(&mut *dst);
                off = (off + piece) % ring_len;
                bytes += piece as u64;
            }
        }
        bytes as f64 / start.elapsed().as_secs_f64() / 1e9
    };
    let ring_gbs = run(false);
    let hot_gbs = run(true);
    (ring_gbs, hot_gbs)
}

/// The cache-line ping-pong before and after the runs, for `--json`: `{"cpus": [a, b],
/// "before_ns": x, "after_ns": y}`, or `{"why_not": "..."}` when it could not be measured.
fn line_transfer_json(
    before: &Result<LineTransfer, String>,
    after: &Result<LineTransfer, String>,
) -> serde_json::Value {
    match (before, after) {
        (Ok(b), Ok(a)) => json!({
            "cpus": [b.cpus.0, b.cpus.1],
            "before_ns": b.ns,
            "after_ns": a.ns,
        }),
        (Err(why), _) | (_, Err(why)) => json!({ "why_not": why }),
    }
}

/// The same, one line for the text report.
fn line_transfer_line(
    before: &Result<LineTransfer, String>,
    after: &Result<LineTransfer, String>,
) -> String {
    match (before, after) {
        (Ok(b), Ok(a)) => format!(
            "cache line between CPU {} and CPU {}: {:.0} ns each way before the runs, {:.0} ns \
             after (1->1 rates depend on it; 30-40 ns: cores that share a cache)",
            b.cpus.0, b.cpus.1, b.ns, a.ns
        ),
        (Err(why), _) | (_, Err(why)) => {
            format!("cache line between two CPUs: not measured ({why})")
        }
    }
}

/// Runs `compare`; returns the exit code.
pub fn run(args: CompareArgs) -> Result<i32, Fail> {
    let (rounds, secs) = if args.quick {
        (1, Duration::from_millis(200))
    } else {
        (args.rounds, args.secs)
    };
    if rounds == 0 {
        return Err(Fail::Usage("--rounds must be at least 1".into()));
    }
    let kinds: Vec<Kind> = if args.transports.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.transports
            .iter()
            .map(|t| Kind::parse(t))
            .collect::<Result<_, _>>()
            .map_err(Fail::Usage)?
    };
    // Asked for by name, iceoryx2 must run: say how to build it in (the default list only
    // marks its rows as skipped).
    if cfg!(not(feature = "iceoryx2"))
        && !args.transports.is_empty()
        && kinds.contains(&Kind::Iceoryx2)
    {
        return Err(Fail::Usage(crate::transport::NO_ICEORYX2.into()));
    }
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        default_workloads()
    } else {
        args.workloads
            .iter()
            .map(|w| Workload::parse(w))
            .collect::<Result<_, _>>()
            .map_err(Fail::Usage)?
    };
    let modes: &[bool] = match args.check.as_str() {
        "full" => &[false],
        "light" => &[true],
        "both" => &[false, true],
        other => {
            return Err(Fail::Usage(format!(
                "--check {other:?}: use full, light or both"
            )))
        }
    };
    procs::install_interrupt_handler();
    let mut outcome = Outcome::Passed;
    let mut reports = Vec::new();
    for &light in modes {
        let spec = RunSpec {
            secs,
            channel_size: args.channel_size,
            seed: payload::mix64(monotonic_ns()),
            light,
        };
        let (o, report) = measure(&args, &kinds, &workloads, &spec, rounds)?;
        outcome = outcome.max(o);
        reports.push(report);
        if o == Outcome::Interrupted {
            break;
        }
    }
    if args.json {
        let report = match &reports[..] {
            [one] => one.clone(),
            many => json!({
                "command": "compare",
                "schema": 1,
                "check": "both",
                "ok": outcome == Outcome::Passed,
                "modes": many,
            }),
        };
        println!("{report}");
    }
    Ok(match outcome {
        Outcome::Passed => 0,
        Outcome::Failed => 1,
        Outcome::Interrupted => 130,
    })
}

/// How a `compare` run ended; the worst of its modes counts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    Interrupted,
    Failed,
}

/// Runs every transport on every workload `rounds` times with `spec`'s checks, prints
/// the table (unless `--json`) and returns the outcome and the JSON report.
fn measure(
    args: &CompareArgs,
    kinds: &[Kind],
    workloads: &[Workload],
    spec: &RunSpec,
    rounds: usize,
) -> Result<(Outcome, serde_json::Value), Fail> {
    let (secs, light) = (spec.secs, spec.light);
    let mut cells: Vec<Cell> = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for &kind in kinds.iter().filter(|k| k.measures(w.sizes.max())) {
            cells.push(Cell {
                workload: wi,
                kind,
                samples: Vec::new(),
                skipped: kind.cannot_carry(w.writers, w.sizes.max()),
                failure: None,
            });
        }
    }
    let total_runs = cells.iter().filter(|c| c.skipped.is_none()).count() * rounds;
    let (cpu, vendor) = cpu_model();
    let line_before = crate::placement::line_transfer();
    if !args.json {
        println!("cpu: {cpu} ({vendor}, {} CPUs)", procs::cpu_count());
        println!(
            "atbus-bench compare: {} workloads x {} transports (atbus-zc: reserve/commit + \
             try_recv_in_place; atbus-batch: recv_batch of {}; atbus-batch-send: try_send_batch of {}; \
             atbus-send-to: bus endpoints, try_send_to + try_recv_with; the last three \
             messages up to 1 KiB), {} rounds of {:.1} s runs \
             ({} runs, alternating transports), {}",
            workloads.len(),
            kinds.len(),
            crate::stress::BATCH,
            crate::transport::SEND_BATCH,
            rounds,
            secs.as_secs_f64(),
            total_runs,
            if light {
                "light checks (header, length, trailer word of every message)"
            } else {
                "every byte of every message checked"
            }
        );
    }
    let mut done = 0;
    'rounds: for round in 0..rounds {
        for cell in cells.iter_mut() {
            if cell.skipped.is_some() || cell.failure.is_some() {
                continue;
            }
            if procs::interrupted() > 0 {
                break 'rounds;
            }
            let w = workloads[cell.workload];
            let tag = format!("{round}-{}", cell.workload);
            done += 1;
            match run_one(cell.kind, &w, spec, &tag) {
                Ok(s) => {
                    if !args.json {
                        eprint!(
                            "\r[{done}/{total_runs}] {:<14} {:<10} {:>8.3} M msgs/s {:>9.1} MiB/s{}\x1b[K",
                            w.label(),
                            cell.kind.name(),
                            s.msgs_per_s / 1e6,
                            s.mib_per_s,
                            if s.errors > 0 { "  ERRORS" } else { "" }
                        );
                    }
                    cell.samples.push(s);
                }
                Err(_) if procs::interrupted() > 0 => break 'rounds,
                Err(e) => cell.failure = Some(e),
            }
        }
    }
    if !args.json {
        eprintln!();
    }
    let (ring_gbs, hot_gbs) = memcpy_bandwidth(if args.quick { 0.1 } else { 0.5 });
    let line_after = crate::placement::line_transfer();
    let interrupted = procs::interrupted() > 0;

    // Report.
    let mut bad = false;
    let mut rows = Vec::new();
    let mut table = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        table,
        "| workload | transport | msgs/s min / median / max | MiB/s median | atbus ÷ this (median) | this ÷ limit (median) | this ÷ iceoryx2 (median) | checks |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|");
    for (wi, w) in workloads.iter().enumerate() {
        let atbus_med = cells
            .iter()
            .find(|c| c.workload == wi && c.kind == Kind::Atbus)
            .map(|c| stats(&c.samples.iter().map(|s| s.msgs_per_s).collect::<Vec<_>>()).1);
        // The references' medians at this workload (runs that failed have none).
        let ref_med = |k: Kind| {
            cells
                .iter()
                .find(|c| c.workload == wi && c.kind == k && c.failure.is_none())
                .filter(|c| !c.samples.is_empty())
                .map(medians)
        };
        let refs = REFERENCES.map(ref_med);
        for c in cells.iter().filter(|c| c.workload == wi) {
            let msgs: Vec<f64> = c.samples.iter().map(|s| s.msgs_per_s).collect();
            let mibs: Vec<f64> = c.samples.iter().map(|s| s.mib_per_s).collect();
            let (lo, med, hi) = stats(&msgs);
            let (_, mib_med, _) = stats(&mibs);
            let errors: u64 = c.samples.iter().map(|s| s.errors).sum();
            let delivered: u64 = c.samples.iter().map(|s| s.delivered).sum();
            if errors > 0 || c.failure.is_some() {
                bad = true;
            }
            let ratio = match atbus_med {
                Some(a) if med > 0.0 && !c.kind.is_atbus() => Some(a / med),
                _ => None,
            };
            // This transport's median over each reference's (not on the reference's row).
            let over_refs: [Option<f64>; 2] = std::array::from_fn(|i| match refs[i] {
                Some(r) if r > 0.0 && c.kind != REFERENCES[i] && !c.samples.is_empty() => {
                    Some(med / r)
                }
                _ => None,
            });
            let fmt_ratio = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}x"));
            let checks = if let Some(s) = &c.skipped {
                format!("skipped: {s}")
            } else if let Some(f) = &c.failure {
                format!("FAILED: {f}")
            } else if errors > 0 {
                format!("{errors} ERRORS in {delivered} msgs")
            } else {
                format!("ok ({delivered} msgs)")
            };
            if c.skipped.is_some() || c.samples.is_empty() {
                let _ = writeln!(
                    table,
                    "| {} | {} | — | — | — | — | — | {checks} |",
                    w.label(),
                    c.kind.name()
                );
            } else {
                let _ = writeln!(
                    table,
                    "| {} | {} | {:.3} M / **{:.3} M** / {:.3} M | {:.0} | {} | {} | {} | {checks} |",
                    w.label(),
                    c.kind.name(),
                    lo / 1e6,
                    med / 1e6,
                    hi / 1e6,
                    mib_med,
                    ratio.map_or("—".into(), |r| format!("{r:.1}x")),
                    fmt_ratio(over_refs[0]),
                    fmt_ratio(over_refs[1]),
                );
            }
            rows.push(json!({
                "workload": w.label(),
                "writers": w.writers,
                "size_min": w.sizes.min(),
                "size_max": w.sizes.max(),
                "transport": c.kind.name(),
                "msgs_per_s": msgs,
                "mib_per_s": mibs,
                "msgs_per_s_min": lo,
                "msgs_per_s_median": med,
                "msgs_per_s_max": hi,
                "mib_per_s_median": mib_med,
                "atbus_ratio_median": ratio,
                "limit_ratio_median": over_refs[0],
                "iceoryx2_ratio_median": over_refs[1],
                "delivered": delivered,
                "errors": errors,
                "skipped": c.skipped,
                "failure": c.failure,
            }));
        }
    }
    // The atbus variants against copying atbus, and atbus against the references, per
    // round (the runs of one round are next to each other in time, so the ratio of a pair
    // sees the same machine load).
    let mut variants = Vec::new();
    let mut variant_rows = Vec::new();
    let mut references = Vec::new();
    let mut reference_rows = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        let find = |k: Kind| {
            cells
                .iter()
                .find(|c| c.workload == wi && c.kind == k && c.failure.is_none())
        };
        if let Some(base) = find(Kind::Atbus) {
            for (kind, what) in [
                (Kind::AtbusZeroCopy, "zero-copy ÷ copying"),
                (Kind::AtbusBatch, "batch ÷ single receive"),
                (Kind::AtbusBatchSend, "batch ÷ single send"),
                (Kind::AtbusSendTo, "send_to ÷ raw channel"),
            ] {
                let Some(p) = find(kind).and_then(|v| Paired::of(v, base)) else {
                    continue;
                };
                variants.push(format!("atbus {what}, {}: {}", w.label(), p.describe()));
                let mut row = p.to_json();
                row["workload"] = json!(w.label());
                row["variant"] = json!(kind.name());
                row["baseline"] = json!(Kind::Atbus.name());
                variant_rows.push(row);
            }
        }
        for reference in REFERENCES {
            let Some(r) = find(reference) else { continue };
            for kind in [Kind::Atbus, Kind::AtbusZeroCopy] {
                let Some(p) = find(kind).and_then(|v| Paired::of(v, r)) else {
                    continue;
                };
                references.push(format!(
                    "{} ÷ {}, {}: {}",
                    kind.name(),
                    reference.name(),
                    w.label(),
                    p.describe()
                ));
                let mut row = p.to_json();
                row["workload"] = json!(w.label());
                row["transport"] = json!(kind.name());
                row["reference"] = json!(reference.name());
                reference_rows.push(row);
            }
        }
    }
    // Large messages against memcpy.
    let mut large = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        if w.sizes.min() < 8192 {
            continue;
        }
        if let Some(c) = cells
            .iter()
            .find(|c| c.workload == wi && c.kind == Kind::Atbus && !c.samples.is_empty())
        {
            let (_, med, _) = stats(&c.samples.iter().map(|s| s.mib_per_s).collect::<Vec<_>>());
            let gbs = med * (1u64 << 20) as f64 / 1e9;
            large.push(format!(
                "atbus {}: {:.2} GB/s median = {:.0}% of memcpy from a 16 MiB ring ({:.1} GB/s), \
                 {:.0}% of cache-hot memcpy ({:.1} GB/s); each message is copied twice \
                 (writer in, reader out) and crc32-checked twice",
                w.label(),
                gbs,
                100.0 * gbs / ring_gbs,
                ring_gbs,
                100.0 * gbs / hot_gbs,
                hot_gbs
            ));
        }
    }
    let report = json!({
        "command": "compare",
        "schema": 1,
        "ok": !bad && !interrupted,
        "rounds": rounds,
        "secs_per_run": secs.as_secs_f64(),
        "check": if light { "light" } else { "full" },
        "memcpy_ring_gb_per_s": ring_gbs,
        "memcpy_hot_gb_per_s": hot_gbs,
        "line_transfer": line_transfer_json(&line_before, &line_after),
        "mq_maxmsg": crate::transport::MQ_MAXMSG,
        "cpu_model": cpu,
        "cpu_vendor": vendor,
        "cpus": procs::cpu_count(),
        "results": rows,
        "atbus_variants": variant_rows,
        "references": reference_rows,
        "large_messages": large,
    });
    if !args.json {
        print!("{table}");
        for l in &variants {
            println!("{l}");
        }
        for l in &references {
            println!("{l}");
        }
        println!(
            "memcpy ceiling: {ring_gbs:.1} GB/s (16 KiB pieces out of a 16 MiB ring), \
             {hot_gbs:.1} GB/s (cache-hot)"
        );
        println!("{}", line_transfer_line(&line_before, &line_after));
        for l in &large {
            println!("{l}");
        }
        crate::report::print_verdict(
            (&cpu, &vendor),
            interrupted,
            bad.then_some(
                "FAILED: a transport lost, duplicated or corrupted messages, or a run failed",
            ),
            "every delivered message passed its checks",
        );
    }
    let outcome = if bad {
        Outcome::Failed
    } else if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Passed
    };
    Ok((outcome, report))
}
