//! The one switch for concurrency primitives: std's atomics in the product, loom's under
//! `--cfg loom`, so the same ring code runs in both.

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic;

/// Gives the CPU to another thread (a model-checker thread under loom).
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
/// Gives the CPU to another thread (a model-checker thread under loom).
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;
