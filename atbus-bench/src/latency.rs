//! `latency`: one writer sends 64-byte messages at a fixed rate, each with a
//! CLOCK_MONOTONIC timestamp; the reader records one-way latency in an HDR histogram.
//! Two variants by default: 100 k msgs/s with the writer spinning between sends, and
//! 10 k msgs/s with the writer sleeping (the latency target).

use std::io::{BufRead, BufReader};
use std::sync::atomic::Ordering;
use std::time::Duration;

use atbus::{Channel, Config, Error};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::board::Board;
use crate::payload::{self, Sizes};
use crate::procs;
use crate::units::duration_arg;
use crate::Fail;

/// Options of `latency`.
#[derive(clap::Args, Clone, Debug)]
pub struct LatencyArgs {
    /// Messages per second; with neither --rate nor --sleep, runs both default variants
    /// (100k/s spinning writer, 10k/s sleeping writer).
    #[arg(long)]
    pub rate: Option<u64>,
    /// The writer sleeps between sends (clock_nanosleep) instead of spinning.
    #[arg(long)]
    pub sleep: bool,
    /// How long each variant runs.
    #[arg(long, value_parser = duration_arg, default_value = "5s")]
    pub secs: Duration,
    /// Message size (at least 16: header word and timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// How the reader waits: spin (busy-poll try_recv), backoff (spin, yield, sleep),
    /// block (Reader::recv_timeout, futex wake-up), fd (arm, then poll(2) on the reader's
    /// readiness fd), tokio (AsyncReader::recv on a current-thread runtime), unix-dgram
    /// (not atbus: a Unix datagram socketpair, blocking recv), tokio-dgram (not atbus: the
    /// same socketpair, tokio's `UnixDatagram::recv` on a current-thread runtime: the
    /// runtime's own cost of a wake-up). Several, comma separated, run one after the other
    /// in each round (e.g. spin,block,unix-dgram).
    #[arg(long, value_delimiter = ',', default_value = "spin")]
    pub reader: Vec<String>,
    /// Rounds: every reader runs every variant once per round, alternating.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Pin the reader to this CPU.
    #[arg(long)]
    pub reader_cpu: Option<usize>,
    /// Pin the writer to this CPU.
    #[arg(long)]
    pub writer_cpu: Option<usize>,
    /// Run writer and reader under SCHED_FIFO (priority 10; needs CAP_SYS_NICE) so other
    /// load on the host does not deschedule them. The kernel's RT throttling still
    /// leaves 5% of each second to other tasks.
    #[arg(long)]
    pub rt: bool,
    /// Print results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Hidden role of a latency writer or reader.
#[derive(clap::Args, Clone, Debug)]
pub struct LatencyRole {
    #[arg(long)]
    channel: String,
    #[arg(long)]
    board_fd: i32,
    #[arg(long)]
    rate: u64,
    #[arg(long)]
    sleep: bool,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    reader: String,
    #[arg(long)]
    parent: u32,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long)]
    rt: bool,
    /// `unix-dgram`: the socketpair's descriptors, `READ:WRITE` (inherited).
    #[arg(long)]
    fds: Option<String>,
}

/// The inherited socketpair of a `unix-dgram` run: (read end, write end).
fn fds(a: &LatencyRole) -> Result<(i32, i32), String> {
    let f = a.fds.as_deref().ok_or("unix-dgram without --fds")?;
    let (r, w) = f.split_once(':').ok_or("bad --fds")?;
    Ok((
        r.parse().map_err(|_| "bad --fds")?,
        w.parse().map_err(|_| "bad --fds")?,
    ))
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// How one latency run's messages travel.
enum Tx {
    Atbus(atbus::Writer),
    Dgram(i32),
}

impl Tx {
    fn send(&self, msg: &[u8]) -> Result<(), String> {
        match self {
            Tx::Atbus(w) => loop {
                match w.try_send(msg) {
                    Ok(()) => return Ok(()),
                    Err(Error::Full) => std::hint::spin_loop(),
                    Err(e) => return Err(e.to_string()),
                }
            },
            Tx::Dgram(fd) => crate::transport::send_datagram(*fd, msg),
        }
    }
}

const G_READY: usize = 11;
/// Messages at the start not recorded (page faults, caches, the reader catching up).
const WARMUP: u64 = 2000;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn setup(a: &LatencyRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    if let Some(cpu) = a.cpu {
        procs::pin_to(cpu)?;
    }
    if a.rt {
        let p = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain syscall on this process with a valid parameter.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
            return Err(format!(
                "SCHED_FIFO refused: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn sleep_until(t_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (t_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (t_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; absolute monotonic deadline; EINTR just returns early.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// One receive through the readiness fd: try, arm, poll(2), repeat. `Empty` never.
fn fd_recv(reader: &mut atbus::Reader, fd: i32, buf: &mut [u8]) -> atbus::Result<usize> {
    loop {
        match reader.try_recv(buf) {
            Err(Error::Empty) => {}
            other => return other,
        }
        if reader.arm()? == atbus::Arm::Armed {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd on our stack; the timeout only bounds a lost run.
            if unsafe { libc::poll(&mut pfd, 1, 10_000) } == 0 {
                return Err(Error::Timeout);
            }
        }
    }
}

/// Writer: `count` messages at `rate`, each stamped just before `send`.
pub fn writer_role(a: LatencyRole) -> Result<(), String> {
    setup(&a)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let tx = if is_dgram(&a.reader) {
        let (r, w) = fds(&a)?;
        // SAFETY: closing the inherited read end we do not use.
        unsafe { libc::close(r) };
        Tx::Dgram(w)
    } else {
        Tx::Atbus(
            Channel::open(&a.channel)
                .map_err(|e| e.to_string())?
                .writer(),
        )
    };
    let ready = board.global(G_READY);
    let mut backoff = atbus::Backoff::new();
    while ready.load(Ordering::Acquire) == 0 {
        backoff.snooze();
    }
    let period = 1_000_000_000 / a.rate.max(1);
    let mut buf = vec![0u8; a.size];
    let start = now_ns() + 1_000_000;
    for seq in 0..a.count {
        let word = payload::header_word(0, seq);
        payload::fill(&mut buf, word, a.seed, 2);
        let due = start + seq * period;
        if a.sleep {
            sleep_until(due);
        } else {
            while now_ns() < due {
                std::hint::spin_loop();
            }
        }
        buf[8..16].copy_from_slice(&now_ns().to_le_bytes());
        tx.send(&buf)?;
    }
    Ok(())
}

/// The modes that are not atbus: a Unix datagram socketpair, read blocking or in tokio.
fn is_dgram(mode: &str) -> bool {
    mode == "unix-dgram" || mode == "tokio-dgram"
}

/// Reader: records `now - timestamp` of every message after the warm-up; prints one
/// JSON line with the percentiles.
pub fn reader_role(a: LatencyRole) -> Result<(), String> {
    setup(&a)?;
    let board = Board::map(a.board_fd).map_err(|e| format!("board: {e}"))?;
    let mode = a.reader.as_str();
    let (mut reader, dgram) = if is_dgram(mode) {
        let (r, w) = fds(&a)?;
        // SAFETY: closing the inherited write end we do not use.
        unsafe { libc::close(w) };
        (None, r)
    } else {
        let channel = Channel::open(&a.channel).map_err(|e| e.to_string())?;
        (Some(channel.reader().map_err(|e| e.to_string())?), -1)
    };
    // `tokio`: the reader moves into an AsyncReader on a current-thread runtime, and
    // each receive is one `block_on` (the runtime parks in epoll while it waits).
    let rt = if mode == "tokio" || mode == "tokio-dgram" {
        Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    use std::os::fd::FromRawFd;
    let tokio_dgram = match (&rt, mode) {
        (Some(rt), "tokio-dgram") => {
            let _enter = rt.enter();
            // SAFETY: `dgram` is the inherited read end, owned by nobody else from here.
            let sock = unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(dgram) };
            sock.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(tokio::net::UnixDatagram::from_std(sock).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let mut async_reader = match (&rt, mode) {
        (Some(rt), "tokio") => {
            let _enter = rt.enter();
            let r = reader.take().ok_or("tokio without a reader")?;
            Some(atbus::AsyncReader::new(r).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let fd = match (&mut reader, mode) {
        (Some(r), "fd") => {
            use std::os::fd::AsRawFd;
            r.readiness_fd().map_err(|e| e.to_string())?.as_raw_fd()
        }
        _ => -1,
    };
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; a.size.max(64)];
    let sizes = Sizes::Fixed(a.size);
    let (mut next, mut errors) = (0u64, 0u64);
    board.global(G_READY).store(1, Ordering::Release);
    let mut backoff = atbus::Backoff::new();
    while next < a.count {
        let r = match (&mut reader, mode) {
            // The wait ends with a message; the timeout only bounds a lost run.
            (Some(reader), "block") => reader.recv_timeout(&mut buf, Duration::from_secs(10)),
            (Some(reader), "fd") => fd_recv(reader, fd, &mut buf),
            (Some(reader), _) => reader.try_recv(&mut buf),
            (None, "tokio") => {
                let (rt, r) = (rt.as_ref().unwrap(), async_reader.as_mut().unwrap());
                rt.block_on(r.recv(&mut buf))
            }
            (None, "tokio-dgram") => {
                let (rt, sock) = (rt.as_ref().unwrap(), tokio_dgram.as_ref().unwrap());
                match rt.block_on(sock.recv(&mut buf)) {
                    Ok(0) => return Err("tokio-dgram: the writer closed its end early".into()),
                    Ok(n) => Ok(n),
                    Err(e) => return Err(format!("tokio-dgram: recv: {e}")),
                }
            }
            (None, _) => {
                // SAFETY: buf is a valid buffer; dgram is our end of the socketpair.
                let n = unsafe { libc::recv(dgram, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(os_err("recv"));
                }
                if n == 0 {
                    return Err("unix-dgram: the writer closed its end early".into());
                }
                Ok(n as usize)
            }
        };
        match r {
            Ok(n) => {
                let t = now_ns();
                let msg = &buf[..n];
                let word = u64::from_le_bytes(msg[..8].try_into().unwrap());
                let sent = u64::from_le_bytes(msg[8..16].try_into().unwrap());
                let (_, seq) = payload::split_word(word);
                if n != sizes.max() || !payload::body_ok(msg, word, a.seed, 2) || seq != next {
                    errors += 1;
                }
                if seq >= WARMUP {
                    let _ = hist.record(t.saturating_sub(sent).max(1));
                }
                next = seq + 1;
                backoff.reset();
            }
            Err(Error::Empty) => {
                if mode == "backoff" {
                    backoff.snooze();
                } else {
                    std::hint::spin_loop();
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    drop(async_reader);
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "{}",
        json!({
            "count": hist.len(),
            "errors": errors,
            "p50_us": q(0.5),
            "p90_us": q(0.9),
            "p99_us": q(0.99),
            "p999_us": q(0.999),
            "max_us": hist.max() as f64 / 1000.0,
            "mean_us": hist.mean() / 1000.0,
        })
    );
    Ok(())
}

fn run_variant(a: &LatencyArgs, rate: u64, sleep: bool, mode: &str) -> Result<Value, String> {
    let name = format!("/atbus-bench-lat-{}", std::process::id());
    let channel = crate::stress::create_channel(&name, 16 << 20, &Config::default())
        .map_err(|e| format!("{e:?}"))?;
    let mut pair = [-1; 2];
    if is_dgram(mode) {
        // SAFETY: socketpair writes two descriptors (no CLOEXEC: the children inherit
        // them).
        if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr()) } != 0 {
            let _ = Channel::unlink(&name);
            return Err(os_err("socketpair"));
        }
    }
    let close_pair = || {
        for fd in pair {
            if fd >= 0 {
                // SAFETY: closing the parent's copies of descriptors it created.
                unsafe { libc::close(fd) };
            }
        }
    };
    let result = (|| {
        let board = Board::create().map_err(|e| format!("board: {e}"))?;
        let count = WARMUP + (a.secs.as_secs_f64() * rate as f64) as u64;
        let base = |role: &str, cpu: Option<usize>| {
            let mut v = vec![
                role.to_string(),
                "--channel".into(),
                name.clone(),
                "--board-fd".into(),
                board.fd().to_string(),
                "--rate".into(),
                rate.to_string(),
                "--count".into(),
                count.to_string(),
                "--size".into(),
                a.size.to_string(),
                "--seed".into(),
                "7".into(),
                "--reader".into(),
                mode.to_string(),
                "--parent".into(),
                std::process::id().to_string(),
            ];
            if sleep {
                v.push("--sleep".into());
            }
            if a.rt {
                v.push("--rt".into());
            }
            if let Some(c) = cpu {
                v.extend(["--cpu".into(), c.to_string()]);
            }
            if pair[0] >= 0 {
                v.extend(["--fds".into(), format!("{}:{}", pair[0], pair[1])]);
            }
            v
        };
        let mut reader = procs::spawn_self_piped(&base("__latency-reader", a.reader_cpu))
            .map_err(|e| e.to_string())?;
        let mut writer = procs::spawn_self(&base("__latency-writer", a.writer_cpu))
            .map_err(|e| e.to_string())?;
        close_pair();
        let mut line = String::new();
        let out = reader.stdout.take().unwrap();
        let read = BufReader::new(out).read_line(&mut line);
        let ws = writer.wait().map_err(|e| e.to_string())?;
        let rs = reader.wait().map_err(|e| e.to_string())?;
        let _ = &channel;
        if !ws.success() || !rs.success() || read.is_err() {
            return Err(format!("latency run failed: writer {ws}, reader {rs}"));
        }
        let mut v: Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
        v["rate"] = json!(rate);
        v["writer"] = json!(if sleep { "sleeping" } else { "spinning" });
        v["reader"] = json!(mode);
        v["transport"] = json!(if is_dgram(mode) { mode } else { "atbus" });
        v["size"] = json!(a.size);
        v["sched_fifo"] = json!(a.rt);
        Ok(v)
    })();
    if result.is_err() {
        close_pair();
    }
    let _ = Channel::unlink(&name);
    result
}

/// Runs `latency`; returns the exit code.
pub fn run(a: LatencyArgs) -> Result<i32, Fail> {
    if a.size < 16 {
        return Err(Fail::Usage(
            "--size must be at least 16 (header word and timestamp)".into(),
        ));
    }
    if let Some(bad) = a.reader.iter().find(|r| {
        ![
            "spin",
            "backoff",
            "block",
            "fd",
            "tokio",
            "unix-dgram",
            "tokio-dgram",
        ]
        .contains(&r.as_str())
    }) {
        return Err(Fail::Usage(format!(
            "--reader {bad:?}: use spin, backoff, block, fd, tokio, unix-dgram or tokio-dgram"
        )));
    }
    if a.rounds == 0 {
        return Err(Fail::Usage("--rounds must be at least 1".into()));
    }
    let cpus = procs::cpu_count();
    if let Some(cpu) = a
        .reader_cpu
        .into_iter()
        .chain(a.writer_cpu)
        .find(|&c| c >= cpus)
    {
        return Err(Fail::Usage(format!(
            "cpu {cpu} does not exist: this machine has cpus 0 to {}",
            cpus - 1
        )));
    }
    if a.rate == Some(0) {
        return Err(Fail::Usage("--rate must be at least 1".into()));
    }
    let variants: Vec<(u64, bool)> = match (a.rate, a.sleep) {
        (None, false) => vec![(100_000, false), (10_000, true)],
        (None, true) => vec![(10_000, true)],
        (Some(r), s) => vec![(r, s)],
    };
    // Ctrl-C lets the running variant finish (a few seconds), then removes its channel.
    procs::install_interrupt_handler();
    let mut results = Vec::new();
    let mut failed = false;
    for (rate, sleep) in &variants {
        let (rate, sleep) = (*rate, *sleep);
        for round in 0..a.rounds {
            for mode in &a.reader {
                if procs::interrupted() > 0 {
                    return Ok(130);
                }
                let mut v = run_variant(&a, rate, sleep, mode).map_err(Fail::Run)?;
                v["round"] = json!(round);
                if v["errors"].as_u64() != Some(0) {
                    failed = true;
                }
                if !a.json {
                    println!(
                        "latency {} B, {rate} msgs/s, writer {}, reader {mode}{}: {} samples, \
                         p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.1} \
                         us, errors {}",
                        a.size,
                        v["writer"].as_str().unwrap_or(""),
                        if a.rt { " (SCHED_FIFO)" } else { "" },
                        v["count"],
                        v["p50_us"].as_f64().unwrap_or(0.0),
                        v["p90_us"].as_f64().unwrap_or(0.0),
                        v["p99_us"].as_f64().unwrap_or(0.0),
                        v["p999_us"].as_f64().unwrap_or(0.0),
                        v["max_us"].as_f64().unwrap_or(0.0),
                        v["errors"],
                    );
                    if sleep && rate == 10_000 && !is_dgram(mode) {
                        let (p50, p99) = (
                            v["p50_us"].as_f64().unwrap_or(f64::MAX),
                            v["p99_us"].as_f64().unwrap_or(f64::MAX),
                        );
                        println!(
                            "  target at 10k/s, sleeping writer: p50 <= 1.5 us ({}), p99 <= \
                             20 us ({})",
                            if p50 <= 1.5 { "met" } else { "missed" },
                            if p99 <= 20.0 { "met" } else { "missed" }
                        );
                    }
                }
                results.push(v);
            }
        }
    }
    let summary = summarize(&a, &variants, &results);
    if !a.json {
        for l in &summary {
            println!("{l}");
        }
    }
    if a.json {
        println!(
            "{}",
            json!({"command": "latency", "schema": 1, "ok": !failed, "results": results,
                   "summary": summary})
        );
    }
    Ok(if failed { 1 } else { 0 })
}

/// Medians over rounds per (variant, reader), and blocking atbus against blocking Unix
/// datagram sockets when both ran.
fn summarize(a: &LatencyArgs, variants: &[(u64, bool)], results: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    if a.rounds == 1 && a.reader.len() == 1 {
        return out;
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    for &(rate, sleep) in variants {
        let writer = if sleep { "sleeping" } else { "spinning" };
        let mut p50s = Vec::new();
        for mode in &a.reader {
            let runs: Vec<&Value> = results
                .iter()
                .filter(|v| v["rate"] == rate && v["writer"] == writer && v["reader"] == *mode)
                .collect();
            let col = |k: &str| -> Vec<f64> { runs.iter().filter_map(|v| v[k].as_f64()).collect() };
            let mut cols: Vec<Vec<f64>> = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]
                .iter()
                .map(|k| col(k))
                .collect();
            let p50 = cols[0].clone();
            let (lo, hi) = p50
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            let m: Vec<f64> = cols.iter_mut().map(med).collect();
            out.push(format!(
                "median of {} rounds, {rate} msgs/s, writer {writer}, reader {mode}: p50 {:.2} \
                 us (range {lo:.2}-{hi:.2}), p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.1} us",
                runs.len(),
                m[0],
                m[1],
                m[2],
                m[3],
                m[4]
            ));
            p50s.push((mode.as_str(), m[0]));
        }
        let get = |m: &str| p50s.iter().find(|(k, _)| *k == m).map(|&(_, v)| v);
        for m in ["fd", "tokio"] {
            if let Some(x) = get(m) {
                let vs_block = get("block").map_or(String::new(), |b| {
                    format!(
                        "; vs block p50 {b:.2} us: {:.2}x (target <= 1.3x: {})",
                        x / b,
                        if x <= 1.3 * b { "met" } else { "missed" }
                    )
                });
                let vs_dgram = get("unix-dgram").map_or(String::new(), |u| {
                    format!(
                        "; vs unix-dgram p50 {u:.2} us (target <=: {})",
                        if x <= u { "met" } else { "missed" }
                    )
                });
                out.push(format!("  {m} p50 {x:.2} us{vs_block}{vs_dgram}"));
            }
        }
        if let (Some(t), Some(d)) = (get("tokio"), get("tokio-dgram")) {
            out.push(format!(
                "  tokio p50 {t:.2} us vs tokio's own Unix datagram p50 {d:.2} us: {:.2}x",
                t / d
            ));
        }
        if let (Some(b), Some(u)) = (get("block"), get("unix-dgram")) {
            out.push(format!(
                "  blocking atbus p50 {b:.2} us vs blocking unix-dgram p50 {u:.2} us (medians): \
                 atbus no worse: {}",
                if b <= u { "met" } else { "missed" }
            ));
        }
    }
    out
}

/// Options of the hidden `__hot-loop` command: send + recv of one size in one process,
/// for profilers (`valgrind --tool=callgrind atbus-bench __hot-loop --size 16384`).
#[derive(clap::Args, Clone, Debug)]
pub struct HotLoopArgs {
    /// Message size.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Send + recv pairs.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Offset of the caller's buffers from a 64-byte boundary.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Channel size.
    #[arg(long, value_parser = crate::units::bytes_arg, default_value = "16MiB")]
    pub channel_size: usize,
    /// Create the channel with checksums off (to see what crc32 costs).
    #[arg(long)]
    pub no_checksums: bool,
}

/// Runs the hot loop and prints the time per pair.
pub fn hot_loop(a: HotLoopArgs) -> Result<i32, Fail> {
    let name = format!("/atbus-bench-hot-{}", std::process::id());
    let config = Config::builder()
        .checksums(!a.no_checksums)
        .build()
        .map_err(|e| Fail::Usage(e.to_string()))?;
    let ch = crate::stress::create_channel(&name, a.channel_size, &config)?;
    let w = ch.writer();
    let mut r = ch.reader().map_err(|e| Fail::Run(e.to_string()))?;
    let mut src_mem = vec![0x5Au8; a.size + 128];
    let mut dst_mem = vec![0u8; a.size + 128];
    let so = src_mem.as_ptr().align_offset(64) + a.offset;
    let dof = dst_mem.as_ptr().align_offset(64) + a.offset;
    let src = &mut src_mem[so..so + a.size];
    let dst = &mut dst_mem[dof..dof + a.size];
    let t0 = std::time::Instant::now();
    for _ in 0..a.count {
        w.try_send(src).map_err(|e| Fail::Run(e.to_string()))?;
        r.try_recv(dst).map_err(|e| Fail::Run(e.to_string()))?;
    }
    let dt = t0.elapsed();
    drop(r);
    let _ = Channel::unlink(&name);
    println!(
        "{} x send+recv of {} B: {:.1} ns per pair, {:.2} GB/s",
        a.count,
        a.size,
        dt.as_nanos() as f64 / a.count as f64,
        (a.size as u64 * a.count) as f64 / dt.as_secs_f64() / 1e9
    );
    Ok(0)
}
