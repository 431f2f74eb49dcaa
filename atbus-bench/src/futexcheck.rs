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
        let r = reader.recv_timeout(&mut buf, a.secs);
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        if !matches!(r, Err(Error::Timeout)) {
            return Err(format!("expected Timeout, got {r:?}"));
        }
        let sleeps = channel.stats().reader_sleeps - sleeps0;
        let pct = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
        println!(
            "idle blocking reader: recv_timeout({:.1} s) with no writer returned Timeout after \
             {:.3} s; CPU time (getrusage RUSAGE_SELF, user+system) {:.3} ms = {pct:.4}% of one \
             CPU; {sleeps} futex sleeps; target < 1%: {}",
            a.secs.as_secs_f64(),
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e3,
            if pct < 1.0 { "met" } else { "missed" }
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
                match writer.send(&msg) {
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
