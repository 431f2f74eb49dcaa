//! # atbus-bus: named endpoints on one host, over atbus channels
//!
//! A bus is a directory in shared memory (`/dev/shm/prod` for bus `/prod`) listing
//! endpoints by name. Each endpoint owns an inbox: an atbus channel named
//! `BUS.NAME.gGENERATION`, read by the endpoint only, written by anyone who sends to it.
//! Processes find each other by name, send data, make requests and answer them; a
//! process that crashes loses its name to the next process that joins it, judged by pid
//! and start time (the channels' liveness rules), never by heartbeats.
//!
//! ```
//! # let bus_name = format!("/atbus-doc-lib-{}", std::process::id());
//! use std::time::Duration;
//! use atbus_bus::{Bus, Kind};
//!
//! let bus = Bus::open_or_create(&bus_name)?;
//! let mut orders = bus.join("orders")?; // creates inbox /BUS.orders.g1
//! let mut client = bus.join("client")?;
//! client.send_to("orders", b"buy 10")?;
//! let msg = orders.recv_timeout(Duration::from_secs(5))?;
//! assert_eq!(msg.envelope.kind, Kind::Data);
//! assert_eq!(msg.envelope.from(), "client");
//! assert_eq!(msg.payload, b"buy 10");
//! # drop((orders, client));
//! # atbus_bus::Bus::unlink(&bus_name)?;
//! # Ok::<(), atbus_bus::Error>(())
//! ```
//!
//! ## The directory
//! A header (magic, version, capacity, epoch, lock word, generation counter) and a fixed
//! array of 384-byte endpoint records (name, owner pid and start time, generation,
//! state, inbox name). The layout table is in [`directory`]. Readers (`resolve`,
//! `members`) take no lock: a per-record sequence word detects a torn copy, which is
//! read again a bounded number of times. Joins, leaves and reclaims serialise on a lock
//! word holding its owner's pid and start time, taken over when that owner is dead.
//! Every value read from the directory is checked; a scribbled directory gives
//! [`Error::Corrupt`], never a panic, an out-of-bounds access or a hang.
//!
//! ## Join, leave, reclaim, and crashes at each step
//! **Join**: (1) take the lock (from a dead holder too; then repair: a record left
//! mid-claim, `seq` odd, is marked free: it has no inbox yet); (2) find the name: held by
//! a live process → `NameTaken`; held by a dead one → reclaim it (below); else take a
//! free record; (3) next generation from the header counter; (4) claim the record:
//! seqlock write of name, owner, generation, inbox name, state `CLAIMED`; bump the epoch;
//! unlock; (5) without the lock, create the inbox channel and take its reader role;
//! (6) lock again and, if the record still holds our claim, set it `LIVE`, bump the
//! epoch, unlock. A concurrent joiner of the name meanwhile finds it claimed by a live
//! process: `NameTaken`.
//!
//! **Leave** (dropping the [`Endpoint`]): lock; state `LEAVING`; give the reader role
//! back; unlink the inbox; state `FREE`; unlock.
//!
//! **Reclaim** of a dead owner's record: state `LEAVING`; unlink its inbox (absent is
//! fine); state `FREE`.
//!
//! Why the next process can always finish the job: a process that dies holding the lock
//! leaves its word in it, and the next locker takes the lock over (one compare-exchange
//! wins). Dying in step 4 leaves `seq` odd: repaired to free; no inbox existed. Dying
//! after step 4 (inbox made or not, live or not, lock held or not) or in the middle of
//! a leave or reclaim
//! leaves a record naming a dead owner and an inbox name derived from its generation:
//! the next join of that name (or [`Bus::sweep`]) unlinks that inbox, absent or not,
//! and frees the record. Inbox names carry a generation unique to the bus, so a
//! restarted endpoint never receives its predecessor's messages, and a sender holding
//! the old inbox open writes into an unlinked object nobody will read. Liveness is
//! `atbus::process::is_same_alive` (pid plus start time; a process that cannot be judged
//! counts as alive), so a live process is never robbed of its name.
//!
//! ## Messages
//! [`Endpoint::send_to`] / `try_send_to` / `send_to_timeout` resolve the destination
//! once and cache its writer; while the directory epoch is unchanged a send costs one
//! extra load. Each message carries a small envelope (kind, sender name and generation,
//! correlation id; 9 bytes for data from an endpoint named `client`; see [`envelope`]).
//! Messages from one endpoint to one destination arrive in the order sent.
//!
//! ## Request / reply
//! [`Endpoint::request`] sends a request with a fresh correlation id and waits for the
//! matching reply (polling for up to [`REQUEST_POLL`], 50 µs, before it sleeps: a quick
//! answer costs no wake-up; yielding the CPU after every poll from [`LONG_EXCHANGE`]
//! bytes), looking at the peer's record and process every
//! [`PEER_POLL`] (100 ms): a peer that leaves, dies or restarts gives
//! [`Error::PeerGone`]; a missing peer [`Error::NoSuchEndpoint`] at once. Replies that
//! come late, for another generation or from another endpoint are dropped and counted.
//! Data and requests that arrive while a request waits are held and returned by later
//! `recv` calls, in order.
//!
//! ## Membership, sweeps, event loops
//! [`Bus::watch`] gives a [`Watch`]: joined / left (cleanly or died) / restarted events,
//! from a blocking loop ([`Watch::wait`]) or an event loop (its timer fd, then
//! [`Watch::poll`]). Processes that wait on the bus (a receive, a request, a send
//! waiting for room, a watch) sweep it every [`SWEEP_PERIOD`] (1 s) between them (one
//! compare-exchange in the directory elects the sweeper): a dead endpoint's record and
//! inbox are reclaimed within a second while anyone waits. An endpoint's inbox has the
//! channel reader's `readiness_fd` and `arm`; with the `tokio` feature,
//! `AsyncEndpoint` receives, sends, requests and replies with `.await`.
//!
//! ## Operators and limits
//! Operators inspect and clean a bus with `atbus-dump bus` (see docs/bus.md).
//! Buses live in /dev/shm only (no file paths) and are created with mode 0600.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::unnecessary_safety_comment
)]

#[cfg(feature = "tokio")]
mod aio;
mod bus;
pub mod directory;
pub mod endpoint;
pub mod envelope;
mod error;
#[doc(hidden)]
pub mod fault;
mod name;
mod watch;

#[cfg(feature = "tokio")]
pub use aio::AsyncEndpoint;
pub use atbus::Arm;
pub use bus::{Bus, Member, OpenOptions, DEFAULT_INBOX_BYTES, SWEEP_PERIOD};
pub use directory::{DEFAULT_CAPACITY, MAX_CAPACITY};
pub use endpoint::{
    Endpoint, EndpointStats, Message, Received, LONG_EXCHANGE, PEER_POLL, REQUEST_POLL,
};
pub use envelope::{Envelope, Kind};
pub use error::{Error, Result};
pub use name::{inbox_name, Name, MAX_BUS_NAME, MAX_ENDPOINT_NAME};
pub use watch::{MemberEvent, Watch, WATCH_INTERVAL};
