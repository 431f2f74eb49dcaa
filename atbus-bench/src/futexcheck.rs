//! Two small measurements of the blocking receive's futex support:
//! * `idle`: a blocking reader with no writer (`recv_timeout` for N seconds) reports its
//!   own CPU time from `getrusage(RUSAGE_SELF)`;
//! * `fast-path`: this process writes N messages to a spinning reader in a child; run it
//!   under `strace -c` (without `-f`, so only the writer is counted) to see that the
//!   writer's send makes no system call while the reader is awake. It also prints the
//!   channel's `wakeups` counter (futex wakes by writers).

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use atbus::{Channel, Config, Error};

use crate::procs;
use crate::units::duration_arg;
use crate::Fail;

/// Options of `idle`.
#[derive(clap::Args, Clone, Debug)]
pub struct IdleArgs {
    /// How long the reader waits in one `recv_timeout` call.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub secs: Duration,
    /// How the reader waits: `block` (recv_timeout on the futex) or `tokio`
    /// (AsyncReader::recv on a current-thread runtime, under a tokio timeout).
    #[arg(long, default_value = "block")]
    pub reader: String,
}

/// Options of `space-wake`.
#[derive(clap::Args, Clone, Debug)]
pub struct SpaceWakeArgs {
    /// Samples: each fills the ring, parks a writer in a blocking `send`, and times how
    /// long after the reader frees space that send returns.
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
}

/// Options of `fast-path`.
#[derive(clap::Args, Clone, Debug)]
pub struct FastPathArgs {
    /// Messages to send.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Message size.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// Hidden role: the spinning reader of `fast-path`.
#[derive(clap::Args, Clone, Debug)]
pub struct SpinReaderRole {
    #[arg(long)]
    channel: String,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    parent: u32,
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `idle`.
pub fn idle(a: IdleArgs) -> Result<i32, Fail> {
    let name = format!("/atbus-bench-idle-{}", std::process::id());
    let channel = crate::stress::create_channel(&name, 1 << 20, &Config::default())?;
    let result = (|| {
        let mut reader = channel.reader().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let sleeps0 = channel.stats().reader_sleeps;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        match a.reader.as_str() {
            "block" => {
                let r = reader.recv_timeout(&mut buf, a.secs);
                if !matches!(r, Err(Error::Timeout)) {
                    return Err(format!("expected Timeout, got {r:?}"));
                }
            }
            "tokio" => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut r = {
                    let _enter = rt.enter();
                    atbus::AsyncReader::new(reader).map_err(|e| e.to_string())?
                };
                let got =
                    rt.block_on(async { tokio::time::timeout(a.secs, r.recv(&mut buf)).await });
                if got.is_ok() {
                    return Err(format!("expected the timeout, got {got:?}"));
                }
            }
            other => return Err(format!("--reader {other:?}: use block or tokio")),
        }
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        let sleeps = channel.stats().reader_sleeps - sleeps0;
        let pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
        println!(
            "idle {} reader: a {:.1} s wait with no writer timed out after {:.3} s; CPU time \
             (getrusage RUSAGE_SELF, user+system) {:.3} ms = {pct:.4}% of one CPU; {sleeps} \
             sleeps (futex waits or arms); target < 1% (tokio: < 0.1%): {}",
            a.reader,
            a.secs.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e3,
            if pct < if a.reader == "tokio" { 0.1 } else { 1.0 } {
                "met"
            } else {
                "missed"
            }
        );
        Ok(())
    })();
    let _ = Channel::unlink(&name);
    result.map(|()| 0).map_err(Fail::Run)
}

/// The spinning reader: busy-polls `try_recv` (never sleeps on the futex) until it has
/// `count` messages. Says "ready" on stdout once it holds the reader role.
pub fn spin_reader_role(a: SpinReaderRole) -> Result<(), String> {
    procs::child_setup(a.parent);
    let channel = Channel::open(&a.channel).map_err(|e| e.to_string())?;
    let mut reader = channel.reader().map_err(|e| e.to_string())?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; channel.max_message_len()];
    let mut got = 0;
    while got < a.count {
        match reader.try_recv(&mut buf) {
            Ok(_) => got += 1,
            Err(Error::Empty) => std::hint::spin_loop(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Runs `fast-path`: this process is the writer.
pub fn fast_path(a: FastPathArgs) -> Result<i32, Fail> {
    let name = format!("/atbus-bench-fast-{}", std::process::id());
    let channel = crate::stress::create_channel(&name, 16 << 20, &Config::default())?;
    let result = (|| {
        let mut child = procs::spawn_self_piped(&[
            "__spin-reader".into(),
            "--channel".into(),
            name.clone(),
            "--count".into(),
            a.messages.to_string(),
            "--parent".into(),
            std::process::id().to_string(),
        ])
        .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            procs::kill_and_reap(&mut child);
            return Err(format!("spinning reader did not start: {line:?}"));
        }
        let writer = channel.writer();
        let msg = vec![0x5au8; a.size];
        let before = channel.stats();
        let t0 = Instant::now();
        let mut full = 0u64;
        for _ in 0..a.messages {
            loop {
                match writer.try_send(&msg) {
                    Ok(()) => break,
                    // Spin, not Backoff: a yield or sleep would be a system call.
                    Err(Error::Full) => {
                        full += 1;
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        let dt = t0.elapsed();
        let after = channel.stats();
        let st = child.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("spinning reader exited with {st}"));
        }
        println!(
            "fast path: {} x {} B sent to a spinning reader in {:.3} s; Full {full}; channel \
             wakeups (futex wakes by writers) {}; reader futex sleeps {}",
            a.messages,
            a.size,
            dt.as_secs_f64(),
            after.wakeups - before.wakeups,
            after.reader_sleeps - before.reader_sleeps,
        );
        Ok(())
    })();
    let _ = Channel::unlink(&name);
    result.map(|()| 0).map_err(Fail::Run)
}

/// Options of `drain`.
#[derive(clap::Args, Clone, Debug)]
pub struct DrainArgs {
    /// Message size.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Rounds; each round fills the ring once per receive mode and times the drain.
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// Channel size.
    #[arg(long, value_parser = crate::units::bytes_arg, default_value = "16MiB")]
    pub channel_size: usize,
}

/// Runs `drain`: the reader's own cost per message, without a concurrent writer. One
/// process fills the ring until `Full` (timed too: the writer's own cost per `try_send`),
/// then drains it with `try_recv`, `recv_batch` (64 a call) or `try_recv_in_place`,
/// alternating the modes round by round. A ring that fits the core's cache (e.g.
/// `--channel-size 256KiB`) leaves the instructions alone: the least noisy measure of
/// the code's own cost on a shared host.
pub fn drain(a: DrainArgs) -> Result<i32, Fail> {
    if a.rounds == 0 || a.size < 8 {
        return Err(Fail::Usage("--rounds >= 1 and --size >= 8".into()));
    }
    let name = format!("/atbus-bench-drain-{}", std::process::id());
    let channel = crate::stress::create_channel(&name, a.channel_size, &Config::default())?;
    let result = (|| {
        let writer = channel.writer();
        let mut reader = channel.reader().map_err(|e| e.to_string())?;
        let msg = vec![0x5au8; a.size];
        let mut buf = vec![0u8; a.size];
        let modes = ["single", "batch", "in-place"];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let mut send_rates = Vec::new();
        for _ in 0..a.rounds {
            for (m, mode) in modes.iter().enumerate() {
                let mut n = 0u64;
                let t0 = Instant::now();
                while writer.try_send(&msg).is_ok() {
                    n += 1;
                }
                send_rates.push(n as f64 / t0.elapsed().as_secs_f64());
                let mut got = 0u64;
                let mut sum = 0u64;
                let t0 = Instant::now();
                while got < n {
                    let r = match *mode {
                        "single" => reader.try_recv(&mut buf).map(|k| {
                            sum += u64::from(buf[k - 1]);
                            1
                        }),
                        "batch" => reader.recv_batch(crate::stress::BATCH, |b| {
                            sum += u64::from(b[b.len() - 1]);
                        }),
                        _ => reader
                            .try_recv_in_place(|b| {
                                sum += u64::from(b[b.len() - 1]);
                            })
                            .map(|()| 1),
                    };
                    got += r.map_err(|e| format!("{mode}: {e}"))? as u64;
                }
                let dt = t0.elapsed().as_secs_f64();
                std::hint::black_box(sum);
                reader.release();
                rates[m].push(n as f64 / dt);
            }
        }
        let med = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(|x, y| x.total_cmp(y));
            (s[0], s[s.len() / 2], s[s.len() - 1])
        };
        println!(
            "drain {} B messages from a full {} ring, one process, {} rounds (modes alternate):",
            a.size,
            crate::units::fmt_bytes(a.channel_size),
            a.rounds
        );
        let rows = modes.iter().zip(&rates);
        for (mode, rates) in std::iter::once((&"send", &send_rates)).chain(rows) {
            let (lo, md, hi) = med(rates);
            println!(
                "  {mode:<8} {:.2} M / {:.2} M / {:.2} M msgs/s (min / median / max), {:.1} ns \
                 per message at the median",
                lo / 1e6,
                md / 1e6,
                hi / 1e6,
                1e9 / md
            );
        }
        for m in 1..modes.len() {
            let pairs: Vec<f64> = rates[m].iter().zip(&rates[0]).map(|(x, b)| x / b).collect();
            let (lo, md, hi) = med(&pairs);
            println!(
                "  {} ÷ single, paired by round: min {lo:.2}x / median {md:.2}x / max {hi:.2}x",
                modes[m]
            );
        }
        Ok(())
    })();
    let _ = Channel::unlink(&name);
    result.map(|()| 0).map_err(Fail::Run)
}

/// Whether thread `tid` of this process is asleep (state S in /proc).
fn thread_sleeping(tid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('S'))
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `space-wake`: how soon a writer parked in a blocking `send` on a full ring
/// resumes after the reader frees space. A writer thread fills a 16 KiB ring (128-byte
/// nodes) with 1 KiB messages, then calls `send` once more and, when it returns, sends
/// the time. The reader waits until that thread sleeps in the kernel, reads the clock,
/// and receives one message: a 1 KiB block is 9 nodes, more than a sixteenth of the
/// ring, so that receive releases the nodes (and wakes the writer). The figure is from
/// just before that receive (so it includes its copy, well under a microsecond) to just
/// after the writer's `send` returned.
pub fn space_wake(a: SpaceWakeArgs) -> Result<i32, Fail> {
    use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
    use std::sync::Arc;
    let name = format!("/atbus-bench-space-{}", std::process::id());
    let channel =
        crate::stress::create_channel(&name, 4096 + 4096 + 128 * 128, &Config::default())?;
    let result = (|| {
        let mut reader = channel.reader().map_err(|e| e.to_string())?;
        let writer = channel.writer();
        let tid = Arc::new(AtomicI32::new(0));
        let parked = Arc::new(AtomicU64::new(0));
        let samples = a.samples;
        let go = Arc::new(AtomicU64::new(0));
        let (t, p, g) = (tid.clone(), parked.clone(), go.clone());
        let thread = std::thread::spawn(move || -> Result<(), String> {
            // SAFETY: gettid has no preconditions.
            t.store(unsafe { libc::gettid() }, Ordering::Release);
            let msg = vec![0x11u8; 1024];
            for i in 0..samples as u64 {
                // Start each sample from an empty ring the reader has fully drained.
                while g.load(Ordering::Acquire) < i {
                    std::thread::yield_now();
                }
                while writer.try_send(&msg).is_ok() {}
                p.store(i + 1, Ordering::Release);
                writer.send(&msg).map_err(|e| e.to_string())?;
                let resumed = now_ns();
                writer
                    .send(&resumed.to_le_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 2048];
        for i in 0..samples as u64 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while parked.load(Ordering::Acquire) <= i
                || !thread_sleeping(tid.load(Ordering::Acquire))
            {
                if thread.is_finished() || Instant::now() > deadline {
                    let state = std::fs::read_to_string(format!(
                        "/proc/self/task/{}/stat",
                        tid.load(Ordering::Acquire)
                    ))
                    .unwrap_or_default();
                    return Err(format!(
                        "sample {i}: the writer never parked (parked {}, thread {state:?}, \
                         finished {})",
                        parked.load(Ordering::Acquire),
                        thread.is_finished()
                    ));
                }
                std::thread::yield_now();
            }
            // Asleep in the kernel: most likely in the futex wait; give it a moment to be
            // surely there rather than in a poll between tries.
            std::thread::sleep(Duration::from_millis(2));
            let freed = now_ns();
            reader.try_recv(&mut buf).map_err(|e| e.to_string())?;
            // Drain up to the time stamp (the ring's messages, the parked one, the stamp).
            loop {
                let n = reader
                    .recv_timeout(&mut buf, Duration::from_secs(10))
                    .map_err(|e| format!("sample {i}: {e}"))?;
                if n == 8 {
                    let resumed = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    let _ = hist.record(resumed.saturating_sub(freed).max(1));
                    break;
                }
            }
            if !matches!(reader.try_recv(&mut buf), Err(Error::Empty)) {
                return Err(format!("sample {i}: messages after the time stamp"));
            }
            go.store(i + 1, Ordering::Release);
        }
        thread
            .join()
            .map_err(|_| "writer thread panicked".to_string())??;
        let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "space wake-up: a writer parked in send on a full ring resumed after the reader \
             freed space: {} samples, p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, max {:.1} us; \
             target p50 <= 20 us: {}",
            hist.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            hist.max() as f64 / 1000.0,
            if q(0.5) <= 20.0 { "met" } else { "missed" }
        );
        Ok(())
    })();
    let _ = Channel::unlink(&name);
    result.map(|()| 0).map_err(Fail::Run)
}
