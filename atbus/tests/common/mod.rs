//! Shared by the single-process tests of the library.

#![allow(dead_code)] // each test file uses its own subset

use std::sync::atomic::{AtomicU64, Ordering};

/// A channel name unique to this process and test, unlinked on drop.
pub struct Named(pub String);

impl Named {
    /// A fresh `/atbus-t-PID-TAG-N` name (any stale object of that name is removed).
    pub fn new(tag: &str) -> Named {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("/atbus-t-{}-{tag}-{n}", std::process::id());
        let _ = atbus::Channel::unlink(&name);
        Named(name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = atbus::Channel::unlink(&self.0);
    }
}
