//! The one switch for concurrency primitives: std's atomics in the product, loom's under
//! `--cfg loom`, so the same ring code runs in both.
//!
//! Every other module of the crate takes its atomics from here. The rule is enforced:
//! `clippy.toml` lists std's atomic types under `disallowed-types`, and `lib.rs` denies
//! `clippy::disallowed_types`, so naming `std::sync::atomic::AtomicU64` anywhere else in
//! the crate fails clippy. The types are aliases, not re-exports: the lint sees through
//! a `use` to the std type but not through an alias, so only the aliases below need the
//! exemption.

/// Atomics: std's in the product, loom's under `--cfg loom`.
pub(crate) mod atomic {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{fence, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{fence, Ordering};

    /// A 32-bit atomic (std's, or loom's under `--cfg loom`).
    #[cfg(not(loom))]
    #[allow(clippy::disallowed_types)]
    pub(crate) type AtomicU32 = std::sync::atomic::AtomicU32;
    /// A 32-bit atomic (std's, or loom's under `--cfg loom`).
    #[cfg(loom)]
    pub(crate) type AtomicU32 = loom::sync::atomic::AtomicU32;

    /// A 64-bit atomic (std's, or loom's under `--cfg loom`).
    #[cfg(not(loom))]
    #[allow(clippy::disallowed_types)]
    pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;
    /// A 64-bit atomic (std's, or loom's under `--cfg loom`).
    #[cfg(loom)]
    pub(crate) type AtomicU64 = loom::sync::atomic::AtomicU64;
}

/// Gives the CPU to another thread (a model-checker thread under loom).
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
/// Gives the CPU to another thread (a model-checker thread under loom).
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;
