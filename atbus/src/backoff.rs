//! Waiting that suits an oversubscribed host: spin briefly, then yield, then sleep.
//!
//! With three writers and a reader on two cores, a waiter that spins without end starves
//! the very process it waits for. [`Backoff`] spins for a few hundred nanoseconds, then
//! yields the CPU for a while, then sleeps in growing steps capped at 1 ms.

use std::time::Duration;

const SPIN_STEPS: u32 = 6;
const YIELD_STEPS: u32 = 10;
const MAX_SLEEP: Duration = Duration::from_millis(1);

/// Exponential backoff for retry loops.
///
/// ```
/// let mut backoff = atbus::Backoff::new();
/// for _ in 0..3 {
///     backoff.snooze(); // spin, later yield, later sleep
/// }
/// backoff.reset(); // after progress
/// ```
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    /// A fresh backoff, starting with the shortest spin.
    pub fn new() -> Backoff {
        Backoff { step: 0 }
    }

    /// Starts over, after progress was made.
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Waits a little, longer on each call.
    pub fn snooze(&mut self) {
        if self.step < SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                std::hint::spin_loop();
            }
        } else if self.step < SPIN_STEPS + YIELD_STEPS {
            std::thread::yield_now();
        } else {
            let exp = (self.step - SPIN_STEPS - YIELD_STEPS).min(10);
            let sleep = Duration::from_micros(10u64 << exp).min(MAX_SLEEP);
            std::thread::sleep(sleep);
        }
        self.step = self.step.saturating_add(1);
    }

    /// True once the backoff has moved on from spinning to sleeping.
    pub fn is_sleeping(&self) -> bool {
        self.step >= SPIN_STEPS + YIELD_STEPS
    }
}
