//! Where the host put the CPUs a run uses: how long one cache line takes to go from one
//! to the other.
//!
//! On the 2-vCPU AMD EPYC VM the two vCPUs sit either on cores that share a cache (a line
//! passes in 30-40 ns) or on cores that do not (190-240 ns), and move between the two
//! within seconds. Every 1->1 rate depends on it (docs/benchmarks.md, "Small messages and
//! where the cache lines are"), so `compare` measures it before and after its runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Timed turns of the ping-pong: 2 x 100,000 one-way transfers, about 50 ms at 240 ns.
const TURNS: u64 = 100_000;
/// Untimed turns first, for this long: cores that were idle start slow (measured
/// 320-380 ns at the start of a run against 210-230 ns after it without this).
const WARM_UP: Duration = Duration::from_millis(50);
/// At most this long in all, warm-up included, however few turns that is (on a busy
/// host).
const BUDGET: Duration = Duration::from_millis(250);
/// What the leading thread writes to end the game.
const STOP: u64 = u64::MAX;

/// The one-way time of a cache line between the first two CPUs this process may run on.
#[derive(Clone, Copy, Debug)]
pub struct LineTransfer {
    /// The two CPUs.
    pub cpus: (usize, usize),
    /// Nanoseconds, each way.
    pub ns: f64,
}

/// Measures [`LineTransfer`]: two threads pinned to the first two allowed CPUs take turns
/// writing one word, each waiting for the other's value, for [`TURNS`] turns or
/// [`BUDGET`], whichever ends first. `Err` says why not (one CPU allowed, or pinning
/// refused); the caller reports it instead of a figure.
pub fn line_transfer() -> Result<LineTransfer, String> {
    let allowed = allowed_cpus()?;
    let (Some(&a), Some(&b)) = (allowed.first(), allowed.get(1)) else {
        return Err(format!(
            "this process may run on {} CPU(s) only: no line passes between two",
            allowed.len()
        ));
    };
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let pinned = [AtomicBool::new(false), AtomicBool::new(false)];
    let both_pinned = Barrier::new(2);
    // Two new threads, so that the caller's own affinity (which the processes it starts
    // inherit) stays as it was. Each pins itself and says so before the barrier; after it
    // both know whether both are pinned, and play only then (neither waits for a partner
    // that is not coming). The leader ends the game with STOP, so the other never waits
    // for a turn that will not come.
    let ns = std::thread::scope(|s| {
        s.spawn(|| {
            // Relaxed: the barrier orders these flags before the reads after it.
            pinned[1].store(pin_to(b), Ordering::Relaxed);
            both_pinned.wait();
            if !pinned.iter().all(|p| p.load(Ordering::Relaxed)) {
                return;
            }
            // Answer each odd value with the next even one, until told to stop.
            // Acquire/release: a plain hand-over of the word between two threads.
            let mut next = 1;
            loop {
                match line.0.load(Ordering::Acquire) {
                    STOP => return,
                    v if v == next => {
                        line.0.store(next + 1, Ordering::Release);
                        next += 2;
                    }
                    _ => {}
                }
            }
        });
        s.spawn(|| {
            pinned[0].store(pin_to(a), Ordering::Relaxed);
            both_pinned.wait();
            if !pinned.iter().all(|p| p.load(Ordering::Relaxed)) {
                return None;
            }
            let game = Instant::now();
            // The turns of the first WARM_UP are not timed: they wake both cores up.
            let mut timed_from = game;
            let mut turns = 0;
            let mut warm_up = u64::MAX;
            while turns < warm_up.saturating_add(TURNS) {
                if turns % 256 == 0 {
                    let t = game.elapsed();
                    // On a busy host the partner may wait for a time slice on every
                    // turn: stop after BUDGET, with the turns done so far.
                    if t >= BUDGET {
                        break;
                    }
                    if warm_up == u64::MAX && t >= WARM_UP {
                        warm_up = turns;
                        timed_from = Instant::now();
                    }
                }
                line.0.store(2 * turns + 1, Ordering::Release);
                while line.0.load(Ordering::Acquire) != 2 * turns + 2 {}
                turns += 1;
            }
            let elapsed = timed_from.elapsed();
            line.0.store(STOP, Ordering::Release);
            let timed = turns.saturating_sub(warm_up);
            (timed > 0).then(|| elapsed.as_nanos() as f64 / (2 * timed) as f64)
        })
        .join()
        .ok()
        .flatten()
    });
    match ns {
        Some(ns) => Ok(LineTransfer { cpus: (a, b), ns }),
        None => Err(format!("could not pin threads to CPUs {a} and {b}")),
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Result<Vec<usize>, String> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer of the size given.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(format!(
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: CPU_ISSET reads the set we own, for indices below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`; false if the kernel refuses.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (cpu < CPU_SETSIZE, it came
    // from allowed_cpus); sched_setaffinity reads the set for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
