//! A watch of a bus's membership: which endpoints joined, left (cleanly or by dying) or
//! restarted since the last look, usable from a blocking loop or an event loop.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use atbus::process;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::bus::{member, Bus, Member};
use crate::directory::{state, Snapshot};
use crate::error::{Error, Result};

/// How often a [`Watch`] looks unless [`Watch::set_interval`] says otherwise.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A change in the bus's membership, as a [`Watch`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// An endpoint joined (its inbox takes messages).
    Joined(Member),
    /// An endpoint left: `died` if its process died (or was judged dead) instead of
    /// leaving cleanly.
    Left {
        /// The endpoint as it was while joined (`alive: false` if it died).
        member: Member,
        /// Whether its process died rather than leaving the bus.
        died: bool,
    },
    /// A name left and joined again (a new generation, often a new process) between
    /// two looks of the watch.
    Restarted {
        /// The previous generation.
        old: Member,
        /// The new one.
        new: Member,
        /// Whether the previous generation's process died rather than leaving.
        died: bool,
    },
}

/// Watches a bus's membership. Each look ([`poll`](Watch::poll)) compares the endpoints
/// that are joined and alive now with those of the last look and returns the changes;
/// the first look reports every member as `Joined`, so a set built from the events is
/// the membership. Dead endpoints are found by pid and start time, never heartbeats, and
/// reclaimed by the sweep every look runs when one is due ([`Bus::sweep_if_due`]).
///
/// Event loops wait on [`fd`](Watch::fd) (a timer, readable every
/// [`interval`](Watch::set_interval)) and call `poll`; blocking code calls
/// [`wait`](Watch::wait).
///
/// ```
/// # let bus_name = format!("/atbus-doc-watch-{}", std::process::id());
/// use std::time::Duration;
/// use atbus_bus::{Bus, MemberEvent};
///
/// let bus = Bus::create(&bus_name)?;
/// let mut watch = bus.watch()?;
/// let orders = bus.join("orders")?;
/// match &watch.wait(Duration::from_secs(5))?[..] {
///     [MemberEvent::Joined(m)] => assert_eq!(m.name, "orders"),
///     other => panic!("{other:?}"),
/// }
/// drop(orders);
/// match &watch.wait(Duration::from_secs(5))?[..] {
///     [MemberEvent::Left { member, died: false }] => assert_eq!(member.name, "orders"),
///     other => panic!("{other:?}"),
/// }
/// # Bus::unlink(&bus_name)?;
/// # Ok::<(), atbus_bus::Error>(())
/// ```
pub struct Watch {
    bus: Bus,
    /// Members at the last look: joined, alive, by record order of first sight.
    known: Vec<Known>,
    timer: TimerFd,
    interval: Duration,
}

/// A member as the watch knows it.
struct Known {
    member: Member,
    index: usize,
    start: u64,
}

impl Watch {
    pub(crate) fn new(bus: Bus) -> Result<Watch> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| Error::io("create the watch timer of", bus.name(), e.into()))?;
        let mut watch = Watch {
            bus,
            known: Vec::new(),
            timer,
            interval: WATCH_INTERVAL,
        };
        watch.set_interval(WATCH_INTERVAL)?;
        Ok(watch)
    }

    /// Sets how often the fd becomes readable (and [`wait`](Watch::wait) looks): at
    /// least 1 ms. A death is reported one interval after it at most.
    pub fn set_interval(&mut self, interval: Duration) -> Result<()> {
        let interval = interval.max(Duration::from_millis(1));
        self.timer
            .set(
                Expiration::Interval(TimeSpec::from_duration(interval)),
                TimerSetTimeFlags::empty(),
            )
            .map_err(|e| Error::io("set the watch timer of", self.bus.name(), e.into()))?;
        self.interval = interval;
        Ok(())
    }

    /// A timer fd, readable every interval: an event loop waits on it for readability
    /// and then calls [`poll`](Watch::poll) (which reads it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.timer.as_fd()
    }

    /// The bus watched.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The members as of the last look (joined and alive), in the order first seen.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.known.iter().map(|k| &k.member)
    }

    /// Looks now: sweeps the bus if a sweep is due, reads the directory and returns what
    /// changed since the last look (nothing: an empty vector). Never blocks.
    pub fn poll(&mut self) -> Result<Vec<MemberEvent>> {
        // Reset the timer's readiness; EAGAIN (not expired yet) is fine.
        let _ = self.timer.wait();
        // Best effort: a sweep that cannot take the lock is for the next look.
        let _ = self.bus.sweep_if_due();
        let dir = self.bus.dir();
        let mut verdicts = Verdicts::default();
        let now: Vec<Snapshot> = dir
            .snapshot()?
            .into_iter()
            .filter(|s| s.state == state::LIVE && verdicts.alive(s.owner_pid, s.owner_start))
            .collect();
        let mut events = Vec::new();
        // Gone or replaced since the last look.
        let mut kept = Vec::with_capacity(self.known.len());
        for k in std::mem::take(&mut self.known) {
            let current = now.iter().find(|s| s.name.as_str() == k.member.name);
            match current {
                Some(s) if s.generation == k.member.generation => kept.push(k),
                Some(s) => {
                    let died = self.died(&k, &mut verdicts);
                    let new = member(s.clone(), true);
                    kept.push(Known {
                        member: new.clone(),
                        index: s.index,
                        start: s.owner_start,
                    });
                    events.push(MemberEvent::Restarted {
                        old: gone(k.member, died),
                        new,
                        died,
                    });
                }
                None => {
                    let died = self.died(&k, &mut verdicts);
                    events.push(MemberEvent::Left {
                        member: gone(k.member, died),
                        died,
                    });
                }
            }
        }
        // New since the last look.
        for s in now {
            if !kept.iter().any(|k| k.member.name == s.name.as_str()) {
                let (index, start) = (s.index, s.owner_start);
                let m = member(s, true);
                events.push(MemberEvent::Joined(m.clone()));
                kept.push(Known {
                    member: m,
                    index,
                    start,
                });
            }
        }
        self.known = kept;
        Ok(events)
    }

    /// Looks every interval until something changed or `timeout` passed: the changes,
    /// or an empty vector on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<MemberEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let events = self.poll()?;
            if !events.is_empty() {
                return Ok(events);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(events);
            }
            self.wait_for_tick(left)?;
        }
    }

    /// Waits until the timer ticks or `at_most` passed.
    fn wait_for_tick(&self, at_most: Duration) -> Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = at_most.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.timer.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(Error::io(
                "wait for the watch timer of",
                self.bus.name(),
                e.into(),
            )),
        }
    }

    /// Whether a member no longer joined died (rather than left cleanly): it left cleanly
    /// if its record says so (a hint written by the leaver), or if its process still
    /// lives (only a dead owner's record is ever reclaimed).
    fn died(&self, k: &Known, verdicts: &mut Verdicts) -> bool {
        if self.bus.dir().left_generation(k.index) == k.member.generation {
            return false;
        }
        !verdicts.alive(k.member.pid, k.start)
    }
}

impl AsFd for Watch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.timer.as_fd()
    }
}

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.timer.as_fd().as_raw_fd()
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("bus", &self.bus.name())
            .field("members", &self.known.len())
            .field("interval", &self.interval)
            .finish()
    }
}

fn gone(mut m: Member, died: bool) -> Member {
    m.alive = !died;
    m.ready = false;
    m
}

/// Liveness verdicts of one look, one per process (a look at /proc costs microseconds;
/// a process with many endpoints is common, and its records often follow one another).
#[derive(Default)]
pub(crate) struct Verdicts {
    all: HashMap<(u32, u64), bool>,
    last: Option<(u32, u64, bool)>,
}

impl Verdicts {
    /// Whether process `pid` started at `start` is alive ("cannot tell" = alive).
    pub(crate) fn alive(&mut self, pid: u32, start: u64) -> bool {
        if let Some((p, s, alive)) = self.last {
            if (p, s) == (pid, start) {
                return alive;
            }
        }
        let alive = *self
            .all
            .entry((pid, start))
            .or_insert_with(|| process::is_same_alive(pid, start as u32));
        self.last = Some((pid, start, alive));
        alive
    }
}
