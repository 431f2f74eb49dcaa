//! The one switch for concurrency primitives: std's atomics in the product, loom's under
//! `--cfg loom`, so the same ring code runs in both.

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic;
