//! # atbus: a multi-writer, single-reader message ring in shared memory
//!
//! Server processes on one Linux host pass messages many-to-one through a ring of
//! fixed-size nodes in POSIX shared memory. Any number of writers, in any processes,
//! claim space with a compare-exchange on a shared write cursor, write a block (header
//! with length, crc32c and sequence, then the payload) and publish it by flagging its
//! first node. Exactly one reader consumes, verifies the crc32c on its own copy, and skips
//! blocks torn by a writer that died or stalled mid-write, counting everything it skips.
//!
//! ```
//! # let name = format!("/atbus-doc-lib-{}", std::process::id());
//! use atbus::{Channel, Config};
//!
//! // One process creates the channel (16 MiB here) ...
//! let channel = Channel::create(&name, 16 << 20, &Config::default())?;
//! // ... writers in any process open it by name and send ...
//! let writer = Channel::open(&name)?.writer();
//! writer.send(b"order 42")?;
//! // ... and one reader receives.
//! let mut reader = channel.reader()?;
//! let mut buf = vec![0u8; 4096];
//! let n = reader.try_recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"order 42");
//! # drop(reader);
//! Channel::unlink(&name)?;
//! # Ok::<(), atbus::Error>(())
//! ```
//!
//! ## Delivery guarantees
//! * **Per-writer FIFO**: messages one writer handle sends in sequence are delivered in
//!   that order. Messages from different writers interleave in claim order.
//! * **Exactly once while the reader lives**: every `send` that returned `Ok` is
//!   delivered once, unless a later fault (below) destroys it, and then it is counted.
//!   A `send` that returned an error delivered nothing.
//! * **A killed writer** loses at most its in-flight message and no other writer's: the
//!   reader skips the torn block at once when the writer's process is gone, or after
//!   the channel's timeout when the writer is alive but stalled, and counts the skip
//!   (`dead_writer_blocks`, `timeout_blocks`, `bad_nodes`). A writer that stalls past the
//!   timeout and wakes gets [`Error::Abandoned`]: its message was not delivered.
//! * **Stalled writers cannot corrupt what is delivered**: a skipped writer that wakes
//!   checks its block before writing its header (and, from 1 KiB on, again between the
//!   halves of its payload), and stops with `Abandoned`. Only a writer descheduled in
//!   the middle of a copy writes on into nodes since reused; the damaged message then
//!   fails its crc32c (sealed with the block's sequence) or sequence check and is skipped
//!   and counted (`crc_failures`, `check_failures`). Its sender had been told `Ok`, so
//!   this is the one way a successful send is lost, and it needs a writer stalled past
//!   the timeout.
//! * **A reader that crashes** mid-message: the next reader (the role is taken over
//!   from a dead owner) resumes at the crashed reader's position and delivers at most
//!   the one message that was being read again. Messages it had fully consumed are not
//!   delivered twice.
//!
//! ## Torn-block policy and liveness
//! A descheduled writer is not a dead one. A block claimed but not yet written is waited
//! for; it is skipped at once when the process named in its header no longer exists
//! (judged from `/proc`, pid plus start time, never by heartbeats), and otherwise only
//! after the channel's timeout (default 1 s, far above the few milliseconds a busy
//! 2-core host deschedules a writer for). A writer that dies between claiming and
//! flagging its first node has not named itself yet; its nodes are skipped after the
//! timeout. Dead-writer detection assumes every process of a channel shares one pid
//! namespace and `/proc`; in containers run them in one pod or with a shared pid
//! namespace, or set [`Config::detect_dead_writers`] to false.
//!
//! ## Layout
//! The segment layout is documented, with a table of offsets, in [`layout`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::unnecessary_safety_comment
)]
// Atomics come from `sync` only (see clippy.toml and sync.rs).
#![deny(clippy::disallowed_types)]
// Under the model checker only the ring and its views are built; the handles built on
// mapped memory are not.
#![cfg_attr(loom, allow(dead_code, unused_imports, missing_docs))]

#[cfg(all(feature = "tokio", not(loom)))]
mod aio;
#[cfg(not(loom))]
mod backoff;
#[cfg(not(loom))]
mod channel;
mod config;
mod copy;
mod crc;
pub mod doorbell;
mod error;
mod futex;
#[cfg(not(loom))]
pub mod inspect;
// Not API: the byte layout and the liveness helpers are implementation. They stay
// reachable (hidden from the docs) only for the hostile-segment and multi-process tests,
// which forge segments byte by byte; tools go through `Inspector`.
#[doc(hidden)]
pub mod layout;
#[cfg(loom)]
pub mod model;
#[doc(hidden)]
pub mod process;
#[cfg(not(loom))]
mod reader;
mod ring;
#[cfg(not(loom))]
mod segment;
#[cfg(loom)]
#[path = "segment_model.rs"]
mod segment;
mod slots;
mod stats;
mod sync;
mod view;
mod wake;
#[cfg(not(loom))]
mod writer;

#[cfg(all(feature = "tokio", not(loom)))]
pub use aio::{AsyncReader, AsyncWriter};
#[cfg(not(loom))]
pub use backoff::Backoff;
#[cfg(not(loom))]
pub use channel::{Channel, OpenOptions};
pub use config::{Config, ConfigBuilder, DEFAULT_TIMEOUT};
pub use error::{Error, Result};
#[cfg(not(loom))]
pub use inspect::Inspector;
pub use layout::{BlockProblem, Head, MAGIC};
#[cfg(not(loom))]
pub use reader::{Arm, Meta, Reader};
#[cfg(all(feature = "fault-injection", not(loom)))]
pub use ring::{set_fault_hook, Step};
pub use stats::Stats;
#[cfg(not(loom))]
pub use writer::{Prefix, Reservation, Writer};
