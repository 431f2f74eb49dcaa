//! `out`: forwards a channel into a JetStream stream, in channel order, losing nothing.
//!
//! The bridge holds the channel's reader role in manual-commit mode. Each message is
//! published with `Nats-Msg-Id` = channel id + block sequence, up to `window`
//! acknowledgements outstanding, and committed back to the ring once JetStream
//! acknowledged it, in order. So a bridge that dies leaves every unacknowledged
//! message in the ring for the next one, and JetStream drops what it had stored already
//! (by message id, within the stream's duplicate window; beyond it, by the check at
//! start-up against the last message stored for this channel).
//!
//! Order in the stream: every pipelined publish names its predecessor in
//! `Nats-Expected-Last-Msg-Id`, so JetStream stores a message only right after the one
//! before it. When a publish fails (server gone, acknowledgement lost), the publishes
//! after it fail too or land in order; the bridge then publishes the outstanding ones
//! again one at a time, each after the previous was acknowledged, and resumes the
//! pipeline. The messages of this channel in the stream are thus always a prefix of
//! the channel's messages, in channel order (and so in each writer's order).

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::watch;

use crate::counters::Counters;
use crate::nats::{self, BridgeError, Endpoint, Retry};

/// What `atbus-bridge out` is told.
#[derive(Clone, Debug)]
pub struct OutOptions {
    /// The channel to read.
    pub channel: String,
    /// The stream and subject to publish to.
    pub endpoint: Endpoint,
    /// Publishes whose acknowledgement may be outstanding.
    pub window: usize,
    /// The duplicate window of the stream, when the bridge creates it.
    pub duplicate_window: Duration,
}

/// A message published (or about to be) and not yet committed to the ring.
struct InFlight {
    id: String,
    seq: u64,
    writer_pid: u32,
    payload: Bytes,
    /// The reader's position after this message: committed once it is acknowledged.
    position: u64,
    /// The acknowledgement to wait for; `None` once settled or for a message found
    /// stored already at start-up.
    ack: Option<PublishAckFuture>,
    /// Found stored already at start-up: commit without publishing.
    stored: bool,
}

struct Out<'a> {
    js: jetstream::Context,
    subject: Subject,
    channel_id: u64,
    counters: &'a Counters,
    reader: atbus::AsyncReader,
    window: VecDeque<InFlight>,
    /// The id of the last message published in order: the next one names it as its
    /// predecessor. `None` at start and after a failure: publish the next one alone.
    chained: Option<String>,
    /// Messages of this channel with a sequence up to this are in the stream already.
    stored_upto: Option<u64>,
    /// The reader position after the last message settled and not yet committed.
    uncommitted: Option<u64>,
    /// Messages settled since the last commit.
    since_commit: u32,
}

/// Settled messages are committed to the ring in batches of this many, and whenever
/// nothing is in flight: each commit hands space back to writers and wakes those that
/// wait for it (a system call), so one per message would cost writers a wake-up per
/// message when the ring is full. A crash re-publishes at most this many more
/// (JetStream drops them).
pub const COMMIT_EVERY: u32 = 64;

/// Runs `atbus-bridge out` until `stop` turns true (then finishes the messages in flight)
/// or a fatal error.
pub async fn run(
    opts: &OutOptions,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let channel = atbus::Channel::open(&opts.channel)?;
    let client = nats::connect(&opts.endpoint.url).await?;
    let js = nats::jetstream(client, opts.window);
    let stream = nats::ensure_stream(&js, &opts.endpoint, opts.duplicate_window).await?;
    let channel_id = channel.id();
    let stored_upto = last_stored_seq(&stream, &opts.endpoint.subject, channel_id).await;

    let mut reader = channel.reader()?;
    reader.set_manual_commit(true)?;
    let mut out = Out {
        js,
        subject: Subject::from(opts.endpoint.subject.as_str()),
        channel_id,
        counters,
        reader: atbus::AsyncReader::new(reader)?,
        window: VecDeque::with_capacity(opts.window),
        chained: None,
        stored_upto,
        uncommitted: None,
        since_commit: 0,
    };
    let mut buf = vec![0u8; channel.max_message_len()];
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow() {
            stopping = true;
        }
        if !stopping && out.window.len() < opts.window.max(1) {
            match out.reader.get_mut().try_recv_meta(&mut buf) {
                Ok(meta) => {
                    out.forward(meta, &buf[..meta.len]).await?;
                    continue;
                }
                Err(atbus::Error::Empty) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !out.window.is_empty() {
            out.settle_front().await?;
            continue;
        }
        out.commit()?;
        if stopping {
            return Ok(());
        }
        // Nothing in flight and nothing to read: wait for a message or the stop.
        tokio::select! {
            got = out.reader.recv_meta(&mut buf) => {
                let meta = got?;
                out.forward(meta, &buf[..meta.len]).await?;
            }
            _ = stop.changed() => stopping = true,
        }
    }
}

/// The block sequence of the last message of channel `channel_id` in the stream under
/// `subject`, if that is the last message there. `None` when there is none or the
/// server cannot say (message ids then keep duplicates out within the duplicate window).
async fn last_stored_seq(stream: &stream::Stream, subject: &str, channel_id: u64) -> Option<u64> {
    let last = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    let id = last.headers.get("Nats-Msg-Id")?;
    let (channel, seq) = nats::parse_message_id(id.as_str())?;
    (channel == channel_id).then_some(seq)
}

impl Out<'_> {
    /// Publishes a message just received (pipelined when the chain is intact, alone and
    /// acknowledged at once otherwise), or queues its commit if it is stored already.
    async fn forward(&mut self, meta: atbus::Meta, payload: &[u8]) -> Result<(), BridgeError> {
        let mut item = InFlight {
            id: nats::message_id(self.channel_id, meta.seq),
            seq: meta.seq,
            writer_pid: meta.writer_pid,
            payload: Bytes::copy_from_slice(payload),
            position: self.reader.get_mut().position(),
            ack: None,
            stored: false,
        };
        Counters::add(&self.counters.forwarded, 1);
        Counters::add(&self.counters.bytes, payload.len() as u64);
        if self.stored_upto.is_some_and(|s| meta.seq <= s) {
            item.stored = true;
            self.window.push_back(item);
            return Ok(());
        }
        match self.chained.take() {
            Some(prev) => match self.publish(&item, Some(&prev)).await {
                Ok(ack) => {
                    item.ack = Some(ack);
                    self.chained = Some(item.id.clone());
                    self.window.push_back(item);
                }
                Err(e) => {
                    self.window.push_back(item);
                    self.recover(&e.to_string()).await?;
                }
            },
            None => {
                // Start, or just after a failure: everything before is settled (the
                // window drains before the chain is dropped). Publish this one alone.
                self.window.push_back(item);
                self.republish_window(false).await?;
            }
        }
        Ok(())
    }

    /// Waits for the oldest publish's acknowledgement and commits it, or recovers.
    async fn settle_front(&mut self) -> Result<(), BridgeError> {
        let front = self.window.front_mut().expect("caller checked");
        let result = match front.ack.take() {
            Some(ack) => ack.await.map(Some),
            None => Ok(None),
        };
        match result {
            Ok(ack) => {
                let item = self.window.pop_front().expect("front exists");
                self.settled(&item, ack.is_none_or(|a| a.duplicate))
            }
            Err(e) => self.recover(&e.to_string()).await,
        }
    }

    /// Counts an acknowledged (or found stored) message; commits it to the ring with
    /// the batch it completes.
    fn settled(&mut self, item: &InFlight, duplicate: bool) -> Result<(), BridgeError> {
        if duplicate {
            Counters::add(&self.counters.duplicates_dropped, 1);
        }
        Counters::add(&self.counters.acked, 1);
        self.uncommitted = Some(item.position);
        self.since_commit += 1;
        if self.since_commit >= COMMIT_EVERY {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits every message settled so far.
    fn commit(&mut self) -> Result<(), BridgeError> {
        if let Some(position) = self.uncommitted.take() {
            self.reader.get_mut().commit(position)?;
            self.since_commit = 0;
        }
        Ok(())
    }

    /// After a failed publish: publishes everything not yet acknowledged again, in
    /// order, one at a time, then resumes the pipeline.
    async fn recover(&mut self, why: &str) -> Result<(), BridgeError> {
        Counters::add(&self.counters.recoveries, 1);
        eprintln!(
            "atbus-bridge out: publish failed ({why}); publishing the {} unacknowledged \
             messages again, in order",
            self.window.len()
        );
        self.chained = None;
        self.republish_window(true).await
    }

    /// Publishes every message in the window alone, each once the one before is
    /// acknowledged, retrying with backoff until JetStream takes it; commits each.
    async fn republish_window(&mut self, again: bool) -> Result<(), BridgeError> {
        // Dropping the outstanding futures: their publishes may still land, but each
        // names its predecessor, so only in order; what landed comes back as duplicate.
        for item in self.window.iter_mut() {
            item.ack = None;
        }
        let mut first = true;
        while let Some(item) = self.window.pop_front() {
            if item.stored {
                self.settled(&item, true)?;
                continue;
            }
            let duplicate = self.publish_alone(&item, again || !first).await?;
            first = false;
            self.settled(&item, duplicate)?;
            self.chained = Some(item.id);
        }
        Ok(())
    }

    /// Publishes `item` with no predecessor named and waits for its acknowledgement,
    /// retrying until it comes. Returns whether JetStream had it already.
    async fn publish_alone(&mut self, item: &InFlight, again: bool) -> Result<bool, BridgeError> {
        let mut retry = Retry::default();
        let mut resend = again;
        loop {
            if resend {
                Counters::add(&self.counters.resent, 1);
            }
            resend = true;
            let failure = match self.publish(item, None).await {
                Ok(ack) => match ack.await {
                    Ok(ack) => return Ok(ack.duplicate),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if failure.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(BridgeError(format!(
                    "message {} of {} bytes is larger than the NATS server's max_payload: \
                     raise max_payload on the server (it is not forwarded)",
                    item.id,
                    item.payload.len()
                )));
            }
            retry.pause().await;
        }
    }

    /// Sends one publish; returns its acknowledgement future.
    async fn publish(
        &self,
        item: &InFlight,
        predecessor: Option<&str>,
    ) -> Result<PublishAckFuture, jetstream::context::PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", item.id.as_str());
        if let Some(prev) = predecessor {
            headers.insert("Nats-Expected-Last-Msg-Id", prev);
        }
        headers.insert(nats::HEADER_SEQ, item.seq.to_string().as_str());
        headers.insert(
            nats::HEADER_WRITER_PID,
            item.writer_pid.to_string().as_str(),
        );
        self.js
            .publish_with_headers(self.subject.clone(), headers, item.payload.clone())
            .await
    }
}
