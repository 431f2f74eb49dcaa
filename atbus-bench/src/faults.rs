//! Fault injection for `stress`: SIGKILL writers (possibly mid-write) and start fresh
//! incarnations, SIGSTOP writers past the channel's timeout, SIGKILL the reader and start
//! a new one that takes the role over.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::board;
use crate::procs::{self, Rng};
use crate::stress::Run;
use crate::units::{duration_arg, fmt_duration};

/// Fault options of `stress`.
#[derive(clap::Args, Clone, Debug)]
pub struct FaultArgs {
    /// SIGKILL a random writer this often and start a new incarnation in its place.
    #[arg(long, value_parser = duration_arg)]
    pub kill_writer_every: Option<Duration>,
    /// SIGSTOP a random writer this often, for --stall-for (then SIGCONT).
    #[arg(long, value_parser = duration_arg)]
    pub stall_writer_every: Option<Duration>,
    /// How long a stalled writer stays stopped; make it longer than --timeout so the
    /// reader skips its block.
    #[arg(long, value_parser = duration_arg, default_value = "200ms")]
    pub stall_for: Duration,
    /// SIGKILL the reader this often and start a new one, which takes the role over.
    #[arg(long, value_parser = duration_arg)]
    pub kill_reader_every: Option<Duration>,
}

impl FaultArgs {
    /// Checks the fault options.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("--kill-writer-every", self.kill_writer_every),
            ("--stall-writer-every", self.stall_writer_every),
            ("--kill-reader-every", self.kill_reader_every),
            ("--stall-for", Some(self.stall_for)),
        ] {
            if v.is_some_and(|d| d < Duration::from_millis(1)) {
                return Err(format!("{name} must be at least 1ms"));
            }
        }
        Ok(())
    }
}

/// Fault schedule and what was done.
pub struct Faults {
    args: FaultArgs,
    rng: Rng,
    next_kill: Option<Instant>,
    next_stall: Option<Instant>,
    next_reader_kill: Option<Instant>,
    killed: HashSet<usize>,
    incarnations: Vec<u64>,
    /// Writers SIGKILLed.
    pub writer_kills: u64,
    /// Of those, killed while inside a send (their message may or may not arrive).
    pub kills_in_flight: u64,
    /// Writers SIGSTOPped.
    pub stalls: u64,
    /// Readers SIGKILLed.
    pub reader_kills: u64,
}

impl Faults {
    /// A schedule from the options.
    pub fn new(args: &FaultArgs, seed: u64) -> Faults {
        Faults {
            args: args.clone(),
            rng: Rng::new(seed ^ 0xFA01_75FA_0175),
            next_kill: None,
            next_stall: None,
            next_reader_kill: None,
            killed: HashSet::new(),
            incarnations: Vec::new(),
            writer_kills: 0,
            kills_in_flight: 0,
            stalls: 0,
            reader_kills: 0,
        }
    }

    /// Starts the clocks.
    pub fn start(&mut self, t0: Instant) {
        self.next_kill = self.args.kill_writer_every.map(|d| t0 + d);
        self.next_stall = self.args.stall_writer_every.map(|d| t0 + d);
        self.next_reader_kill = self.args.kill_reader_every.map(|d| t0 + d);
    }

    /// For the start line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.args.kill_writer_every {
            parts.push(format!("kill a writer every {}", fmt_duration(d)));
        }
        if let Some(d) = self.args.stall_writer_every {
            parts.push(format!(
                "stall a writer every {} for {}",
                fmt_duration(d),
                fmt_duration(self.args.stall_for)
            ));
        }
        if let Some(d) = self.args.kill_reader_every {
            parts.push(format!("kill the reader every {}", fmt_duration(d)));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("; faults: {}", parts.join(", "))
        }
    }

    /// The options.
    pub fn args(&self) -> &FaultArgs {
        &self.args
    }

    /// True if stream `s` was SIGKILLed by us.
    pub fn was_killed(&self, s: usize) -> bool {
        self.killed.contains(&s)
    }

    /// Does whatever is due at `now`.
    pub fn tick(&mut self, run: &mut Run, now: Instant) -> Result<(), String> {
        for w in &mut run.writers {
            if w.stalled_until.is_some_and(|t| t <= now) {
                procs::signal(&w.child, Signal::SIGCONT);
                w.stalled_until = None;
            }
        }
        if let (Some(t), Some(every)) = (self.next_kill, self.args.kill_writer_every) {
            if t <= now && !run.writers.is_empty() {
                self.next_kill = Some(t + every);
                let i = self.rng.below(run.writers.len() as u64) as usize;
                let (id, stream) = (run.writers[i].id, run.writers[i].stream);
                procs::kill_and_reap(&mut run.writers[i].child);
                self.writer_kills += 1;
                self.killed.insert(stream);
                run.board
                    .w(stream, board::W_KILLED)
                    .store(1, Ordering::Relaxed);
                if run
                    .board
                    .w(stream, board::W_IN_SEND)
                    .load(Ordering::Relaxed)
                    != 0
                {
                    self.kills_in_flight += 1;
                }
                if self.incarnations.len() <= id {
                    self.incarnations.resize(id + 1, 1);
                }
                self.incarnations[id] += 1;
                let fresh = run.spawn_writer(id, self.incarnations[id])?;
                run.writers[i] = fresh;
            }
        }
        if let (Some(t), Some(every)) = (self.next_stall, self.args.stall_writer_every) {
            if t <= now {
                self.next_stall = Some(t + every);
                let running: Vec<usize> = (0..run.writers.len())
                    .filter(|&i| run.writers[i].stalled_until.is_none())
                    .collect();
                if !running.is_empty() {
                    let i = running[self.rng.below(running.len() as u64) as usize];
                    let w = &mut run.writers[i];
                    procs::signal(&w.child, Signal::SIGSTOP);
                    w.stalled_until = Some(now + self.args.stall_for);
                    board::bump(run.board.w(w.stream, board::W_STALLS), 1);
                    self.stalls += 1;
                }
            }
        }
        if let (Some(t), Some(every)) = (self.next_reader_kill, self.args.kill_reader_every) {
            if t <= now {
                self.next_reader_kill = Some(t + every);
                if let Some(r) = &mut run.reader {
                    // Reap before starting the next reader: the role is taken over only
                    // from a process that no longer exists.
                    procs::kill_and_reap(r);
                }
                self.reader_kills += 1;
                run.spawn_reader()?;
            }
        }
        Ok(())
    }
}
