//! Forwards an atbus channel into a NATS JetStream stream (`out`) and a stream into a
//! channel (`in`), so that the messages of one host reach readers on others through an
//! existing, replicated engine.
//!
//! Delivery, leg by leg (details in `docs/bridge.md`):
//! * **out**: a reader in [manual-commit](atbus::Reader::set_manual_commit) mode publishes
//!   each message with a `Nats-Msg-Id` made of the channel's id and the block's sequence,
//!   a window of acknowledgements outstanding, and commits a message back to the ring
//!   only once JetStream acknowledged it. Killed, it resumes from the last commit and
//!   JetStream drops what it stored already. Messages are chained with
//!   `Nats-Expected-Last-Msg-Id`, so the stream stores them in channel order even when
//!   a publish is retried.
//! * **in**: a durable pull consumer; each message is written into the channel (waiting
//!   for space, never dropping) and acknowledged after the send returned. Killed, the
//!   bridge writes again at most the window of messages it had written and not yet
//!   acknowledged, and counts them.
//!
//! The binary is a thin layer over [`cli::run`].

pub mod bench;
pub mod cli;
pub mod counters;
pub mod inbound;
pub mod nats;
pub mod outbound;

pub use counters::Counters;
pub use nats::{BridgeError, Endpoint};
