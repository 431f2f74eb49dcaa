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
//!
//! Stopping (SIGINT/SIGTERM): the bridge reads nothing more and waits for the
//! acknowledgements outstanding, for at most [`STOP_GRACE`]; then it commits what was
//! acknowledged and leaves. Whatever JetStream has not acknowledged by then (all of
//! it while the server is away) stays uncommitted in the ring for the next run.

use std::cell::Cell;
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
    /// When to give up on the acknowledgements outstanding once told to stop.
    stop: Stop,
}

/// How long a stopping bridge waits for the acknowledgements outstanding (and retries
/// publishes) before it leaves the rest uncommitted in the ring.
pub const STOP_GRACE: Duration = Duration::from_millis(500);

/// Why the bridge's work ended early.
enum Halt {
    /// Told to stop, and [`STOP_GRACE`] has passed: leave, committing what was settled.
    Stopped,
    /// A failure that ends the bridge.
    Failed(BridgeError),
}

impl From<BridgeError> for Halt {
    fn from(e: BridgeError) -> Halt {
        Halt::Failed(e)
    }
}

impl From<atbus::Error> for Halt {
    fn from(e: atbus::Error) -> Halt {
        Halt::Failed(e.into())
    }
}

/// The stop request and the deadline it sets for the work in flight.
struct Stop {
    requested: watch::Receiver<bool>,
    /// [`STOP_GRACE`] after the stop was first seen.
    deadline: Cell<Option<tokio::time::Instant>>,
}

impl Stop {
    /// Completes once a stop was requested and [`STOP_GRACE`] has passed since: every
    /// wait of the bridge that may last (an acknowledgement, a retry while the server is
    /// away) races it.
    async fn expired(&self) {
        let mut requested = self.requested.clone();
        if requested.wait_for(|stop| *stop).await.is_err() {
            // Nobody can ask any more: never.
            std::future::pending::<()>().await;
        }
        let deadline = match self.deadline.get() {
            Some(d) => d,
            None => {
                let d = tokio::time::Instant::now() + STOP_GRACE;
                self.deadline.set(Some(d));
                d
            }
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// Settled messages are committed to the ring in batches of this many, and whenever
/// nothing is in flight: each commit hands space back to writers and wakes those that
/// wait for it (a system call), so one per message would cost writers a wake-up per
/// message when the ring is full. A crash re-publishes at most this many more
/// (JetStream drops them).
pub const COMMIT_EVERY: u32 = 64;

/// Runs `atbus-bridge out` until `stop` turns true or a fatal error. Once stopped, it
/// waits up to [`STOP_GRACE`] for the acknowledgements outstanding, commits what was
/// acknowledged and returns `Ok`; the rest stays in the ring for the next run.
pub async fn run(
    opts: &OutOptions,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let channel = atbus::Channel::open(&opts.channel)?;
    // Until the reader role is taken nothing is read: a stop simply ends the start-up
    // (which may wait for a server that does not answer).
    let setup = async {
        let client = nats::connect(&opts.endpoint.url).await?;
        let js = nats::jetstream(client, opts.window);
        let stream = nats::ensure_stream(&js, &opts.endpoint, opts.duplicate_window).await?;
        let stored_upto = last_stored_seq(&stream, &opts.endpoint.subject, channel.id()).await;
        Ok::<_, BridgeError>((js, stored_upto))
    };
    let (js, stored_upto) = tokio::select! {
        setup = setup => setup?,
        _ = stop.wait_for(|stop| *stop) => return Ok(()),
    };
    let channel_id = channel.id();

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
        stop: Stop {
            requested: stop.clone(),
            deadline: Cell::new(None),
        },
    };
    match out
        .forward_until_stopped(opts, &mut stop, channel.max_message_len())
        .await
    {
        Ok(()) => Ok(()),
        Err(Halt::Stopped) => {
            // Acknowledged and not yet committed: commit. Unacknowledged: left in the
            // ring (the reader drops without committing them).
            out.commit()?;
            if !out.window.is_empty() {
                eprintln!(
                    "atbus-bridge out: stopped with {} messages not acknowledged by \
                     JetStream; they stay in the channel for the next run",
                    out.window.len()
                );
            }
            Ok(())
        }
        Err(Halt::Failed(e)) => Err(e),
    }
}

impl Out<'_> {
    /// Reads, publishes and commits until stopped (with nothing in flight, or
    /// [`Halt::Stopped`] once the grace has passed) or a failure.
    async fn forward_until_stopped(
        &mut self,
        opts: &OutOptions,
        stop: &mut watch::Receiver<bool>,
        max_message_len: usize,
    ) -> Result<(), Halt> {
        let out = self;
        let mut buf = vec![0u8; max_message_len];
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
    async fn forward(&mut self, meta: atbus::Meta, payload: &[u8]) -> Result<(), Halt> {
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
            // A publish waits while `window` acknowledgements are outstanding.
            Some(prev) => match self
                .until_stop_expires(self.publish(&item, Some(&prev)))
                .await?
            {
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
    async fn settle_front(&mut self) -> Result<(), Halt> {
        let front = self.window.front_mut().expect("caller checked");
        let ack = front.ack.take();
        let result = match ack {
            Some(ack) => self.until_stop_expires(ack).await?.map(Some),
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
    fn settled(&mut self, item: &InFlight, duplicate: bool) -> Result<(), Halt> {
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
    async fn recover(&mut self, why: &str) -> Result<(), Halt> {
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
    async fn republish_window(&mut self, again: bool) -> Result<(), Halt> {
        // Dropping the outstanding futures: their publishes may still land, but each
        // names its predecessor, so only in order; what landed comes back as duplicate.
        for item in self.window.iter_mut() {
            item.ack = None;
        }
        let mut first = true;
        while let Some(item) = self.window.front() {
            if item.stored {
                let item = self.window.pop_front().expect("front exists");
                self.settled(&item, true)?;
                continue;
            }
            // Stays in the window until acknowledged: a stop meanwhile leaves it (and
            // all after it) uncommitted.
            let duplicate = self.publish_alone(item, again || !first).await?;
            first = false;
            let item = self.window.pop_front().expect("front exists");
            self.settled(&item, duplicate)?;
            self.chained = Some(item.id);
        }
        Ok(())
    }

    /// Publishes `item` with no predecessor named and waits for its acknowledgement,
    /// retrying until it comes (or until a stop's grace expires). Returns whether
    /// JetStream had it already.
    async fn publish_alone(&self, item: &InFlight, again: bool) -> Result<bool, Halt> {
        let mut retry = Retry::default();
        let mut resend = again;
        loop {
            if resend {
                Counters::add(&self.counters.resent, 1);
            }
            resend = true;
            let attempt = async {
                match self.publish(item, None).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                }
            };
            let failure = match self.until_stop_expires(attempt).await? {
                Ok(ack) => return Ok(ack.duplicate),
                Err(e) => e,
            };
            if failure.kind() == PublishErrorKind::MaxPayloadExceeded {
                return Err(Halt::Failed(BridgeError(format!(
                    "message {} of {} bytes is larger than the NATS server's max_payload: \
                     raise max_payload on the server (it is not forwarded)",
                    item.id,
                    item.payload.len()
                ))));
            }
            self.until_stop_expires(retry.pause()).await?;
        }
    }

    /// Runs `work`, unless the bridge was told to stop and [`STOP_GRACE`] passes first.
    async fn until_stop_expires<T>(
        &self,
        work: impl std::future::IntoFuture<Output = T>,
    ) -> Result<T, Halt> {
        let work = work.into_future();
        tokio::select! {
            done = work => Ok(done),
            _ = self.stop.expired() => Err(Halt::Stopped),
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
