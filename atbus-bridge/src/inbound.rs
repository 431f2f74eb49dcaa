//! `in`: writes a JetStream stream into a channel, in stream order, losing nothing.
//!
//! A durable pull consumer delivers the subject's messages; each is written into the
//! channel (waiting for space when the ring is full, never dropping) and acknowledged
//! after the send returned. The bridge writes messages in stream order only: it checks
//! that deliveries come in the consumer's order, and when one does not (a delivery lost
//! in a reconnect, a redelivery after the acknowledgement wait, a server restart) it
//! starts a fresh consumer exactly after the last message it wrote. Redeliveries of
//! messages it wrote already are acknowledged and dropped.
//!
//! Consumers are generations of one durable: `DURABLE`, then `DURABLE-r1`, `DURABLE-r2`,
//! …; the bridge creates the next generation before it deletes the previous one, so a
//! bridge killed in between finds both and takes the newest. Each generation records
//! its owner in its description ([`description`]: durable and generation), and the
//! bridge touches only consumers that name its durable there: `--durable orders` and
//! `--durable orders-r1` on one stream share names (`orders-r1` is both the first's
//! generation 1 and the second's generation 0), so a name alone proves nothing. A
//! generation whose name another durable's consumer holds is skipped. Consumers made
//! before owners were recorded (no description at all) are still recognised by name.
//!
//! A bridge that dies after writing messages and before their acknowledgements reached
//! the server writes them again when it comes back (at most `window` messages, the
//! consumer's `max_ack_pending`): counted in `possible_duplicates`.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::counters::Counters;
use crate::nats::{self, BridgeError, Endpoint, Retry};

/// What `atbus-bridge in` is told.
#[derive(Clone, Debug)]
pub struct InOptions {
    /// The stream and subject to consume.
    pub endpoint: Endpoint,
    /// The durable consumer's name (generations add `-rN`).
    pub durable: String,
    /// The channel to write into.
    pub channel: String,
    /// Messages delivered and not yet acknowledged, at most.
    pub window: usize,
    /// The duplicate window of the stream, when the bridge creates it.
    pub duplicate_window: Duration,
}

/// How long the server waits for an acknowledgement before delivering a message again.
/// Long: a redelivery costs a new consumer (see the module doc), and a full ring may
/// hold the bridge for a while.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Heartbeats of the pull requests: a silent server is noticed within two of them.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The consumer generation in use and where the bridge stands in the stream.
struct Position {
    generation: u64,
    /// The stream sequence of the last message written into the channel (or known to
    /// be written, at start: the consumer's acknowledgement floor).
    written_upto: u64,
    /// Messages up to this stream sequence may have been written by a previous run.
    maybe_written_upto: u64,
    /// The consumer sequence of the last delivery seen, to notice a lost one.
    last_delivery: Option<u64>,
}

/// Runs `atbus-bridge in` until `stop` turns true (it finishes the message in hand) or a
/// fatal error.
pub async fn run(
    opts: &InOptions,
    counters: &Counters,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let channel = atbus::Channel::open(&opts.channel)?;
    let writer = atbus::AsyncWriter::new(channel.writer());
    let max_len = channel.max_message_len();
    let client = nats::connect(&opts.endpoint.url).await?;
    let js = nats::jetstream(client.clone(), 1);
    let stream = nats::ensure_stream(&js, &opts.endpoint, opts.duplicate_window).await?;
    let mut pos = attach(&stream, opts).await?;

    'consumer: loop {
        if *stop.borrow() {
            break;
        }
        let mut messages = match open_messages(&stream, opts, &pos).await {
            Ok(m) => m,
            Err(e) => {
                pos = resync(&stream, opts, pos, counters, &e, &mut stop).await?;
                continue;
            }
        };
        loop {
            if *stop.borrow() {
                break 'consumer;
            }
            let next = tokio::select! {
                next = messages.next() => next,
                _ = stop.changed() => break 'consumer,
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    drop(messages);
                    pos = resync(&stream, opts, pos, counters, &e.to_string(), &mut stop).await?;
                    continue 'consumer;
                }
                None => {
                    drop(messages);
                    let why = "the consumer's message stream ended";
                    pos = resync(&stream, opts, pos, counters, why, &mut stop).await?;
                    continue 'consumer;
                }
            };
            let (stream_seq, delivery, delivered) = match msg.info() {
                Ok(i) => (i.stream_sequence, i.consumer_sequence, i.delivered),
                Err(e) => {
                    drop(messages);
                    let why = format!("a delivery without JetStream metadata ({e})");
                    pos = resync(&stream, opts, pos, counters, &why, &mut stop).await?;
                    continue 'consumer;
                }
            };
            let in_order = pos.last_delivery.is_none_or(|d| delivery == d + 1);
            pos.last_delivery = Some(delivery);
            if stream_seq <= pos.written_upto {
                // Written already (a redelivery): acknowledge and drop it.
                Counters::add(&counters.duplicates_dropped, 1);
                let _ = msg.ack().await;
                continue;
            }
            if !in_order || delivered > 1 {
                // A delivery went missing before this one: earlier messages may come
                // later. Start again right after the last one written.
                drop(messages);
                let why = format!(
                    "delivery {delivery} (stream sequence {stream_seq}, attempt {delivered}) \
                     out of order"
                );
                pos = resync(&stream, opts, pos, counters, &why, &mut stop).await?;
                continue 'consumer;
            }
            if msg.payload.len() > max_len {
                return Err(BridgeError(format!(
                    "message {stream_seq} of stream {} is {} bytes, more than channel {} \
                     takes ({max_len}): create the channel with a larger size",
                    opts.endpoint.stream,
                    msg.payload.len(),
                    opts.channel
                )));
            }
            if !write(&writer, &msg.payload, &mut stop).await? {
                break 'consumer; // stopped while the ring was full: not written, not acked
            }
            pos.written_upto = stream_seq;
            if stream_seq <= pos.maybe_written_upto {
                Counters::add(&counters.possible_duplicates, 1);
            }
            Counters::add(&counters.forwarded, 1);
            Counters::add(&counters.bytes, msg.payload.len() as u64);
            // A lost acknowledgement brings the message back later: dropped then.
            if msg.ack().await.is_ok() {
                Counters::add(&counters.acked, 1);
            }
        }
    }
    // Stopping: make sure the acknowledgements left, and move the consumer to right
    // after the last message written, so that the next run writes nothing twice even for
    // messages delivered to this one and not written.
    let _ = client.flush().await;
    let _ = new_generation(&stream, opts, &pos).await;
    Ok(())
}

/// Writes `payload` into the channel, waiting while the ring is full. `false` if `stop`
/// came first (nothing was written). A send the reader skipped as stalled (`Abandoned`:
/// nothing delivered) is sent again.
async fn write(
    writer: &atbus::AsyncWriter,
    payload: &[u8],
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, BridgeError> {
    loop {
        let sent = tokio::select! {
            sent = writer.send(payload) => sent,
            _ = stop.changed() => return Ok(false),
        };
        match sent {
            Ok(()) => return Ok(true),
            Err(atbus::Error::Abandoned { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The name of consumer generation `generation`.
fn consumer_name(durable: &str, generation: u64) -> String {
    if generation == 0 {
        durable.to_string()
    } else {
        format!("{durable}-r{generation}")
    }
}

/// The description recording that consumer generation `generation` belongs to
/// `durable` (durable names hold no spaces).
fn description(durable: &str, generation: u64) -> String {
    format!("atbus-bridge in: durable {durable} generation {generation}")
}

/// The generation of `durable` that consumer `name`, described `described`, is; `None`
/// if it is not `durable`'s. A description from [`description`] decides (and must match
/// the name); a consumer with no description at all (made by a bridge that recorded no
/// owner) is judged by its name.
fn owned_generation(durable: &str, name: &str, described: Option<&str>) -> Option<u64> {
    let Some(text) = described else {
        return generation_of(durable, name);
    };
    let rest = text.strip_prefix("atbus-bridge in: durable ")?;
    let (owner, generation) = rest.split_once(" generation ")?;
    let generation: u64 = generation.parse().ok()?;
    (owner == durable && name == consumer_name(durable, generation)).then_some(generation)
}

/// The generation a consumer name is, if it is one of `durable`'s.
fn generation_of(durable: &str, name: &str) -> Option<u64> {
    if name == durable {
        return Some(0);
    }
    let n = name.strip_prefix(durable)?.strip_prefix("-r")?;
    n.parse::<u64>()
        .ok()
        .filter(|&g| g > 0 && n == g.to_string())
}

/// Finds (or creates) the newest consumer generation and where it stands. A consumer
/// that still has unacknowledged deliveries (the previous run died) is replaced by one
/// starting after its acknowledgement floor.
async fn attach(stream: &stream::Stream, opts: &InOptions) -> Result<Position, BridgeError> {
    let mut consumers = stream.consumers();
    let mut ours = Vec::new();
    while let Some(info) = consumers.next().await {
        let info = info.map_err(|e| {
            BridgeError(format!(
                "cannot list the consumers of stream {}: {e}",
                opts.endpoint.stream
            ))
        })?;
        let described = info.config.description.as_deref();
        if let Some(g) = owned_generation(&opts.durable, &info.name, described) {
            ours.push(g);
        }
    }
    ours.sort_unstable();
    let Some(&newest) = ours.last() else {
        let generation = create_generation(stream, opts, 0, DeliverPolicy::All).await?;
        return Ok(Position {
            generation,
            written_upto: 0,
            maybe_written_upto: 0,
            last_delivery: None,
        });
    };
    for &old in &ours[..ours.len() - 1] {
        let _ = stream
            .delete_consumer(&consumer_name(&opts.durable, old))
            .await;
    }
    let name = consumer_name(&opts.durable, newest);
    let info = stream
        .consumer_info(&name)
        .await
        .map_err(|e| BridgeError(format!("cannot read consumer {name}: {e}")))?;
    if info.config.filter_subject != opts.endpoint.subject {
        return Err(BridgeError(format!(
            "consumer config conflict: consumer {name} of stream {} takes subject {:?}, not {}; \
             use another --durable",
            opts.endpoint.stream, info.config.filter_subject, opts.endpoint.subject
        )));
    }
    let start = match info.config.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
        _ => 1,
    };
    let floor = info.ack_floor.stream_sequence.max(start.saturating_sub(1));
    let mut pos = Position {
        generation: newest,
        written_upto: floor,
        maybe_written_upto: floor,
        last_delivery: Some(info.delivered.consumer_sequence),
    };
    if info.num_ack_pending > 0 || info.delivered.stream_sequence > floor {
        // The previous run died with deliveries unacknowledged: they may or may not be
        // in the channel. Write them again (counted) from a fresh consumer, in order.
        pos.maybe_written_upto = info.delivered.stream_sequence;
        pos.generation = new_generation(stream, opts, &pos).await?;
        pos.last_delivery = None;
    }
    Ok(pos)
}

/// Creates the next consumer generation, starting right after `pos.written_upto`, then
/// deletes the current one. Returns the new generation.
async fn new_generation(
    stream: &stream::Stream,
    opts: &InOptions,
    pos: &Position,
) -> Result<u64, BridgeError> {
    let start = DeliverPolicy::ByStartSequence {
        start_sequence: pos.written_upto + 1,
    };
    let next = create_generation(stream, opts, pos.generation + 1, start).await?;
    let _ = stream
        .delete_consumer(&consumer_name(&opts.durable, pos.generation))
        .await;
    Ok(next)
}

/// Creates the first generation from `from` on whose name no consumer holds yet (one
/// that does may be another durable's, see the module doc: never touched), recording
/// this durable as its owner. Returns the generation.
async fn create_generation(
    stream: &stream::Stream,
    opts: &InOptions,
    from: u64,
    deliver_policy: DeliverPolicy,
) -> Result<u64, BridgeError> {
    use async_nats::jetstream::context::ConsumerInfoErrorKind;
    let mut generation = from;
    loop {
        let name = consumer_name(&opts.durable, generation);
        match stream.consumer_info(&name).await {
            Ok(_) => generation += 1,
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                create_consumer(stream, opts, generation, deliver_policy).await?;
                return Ok(generation);
            }
            Err(e) => return Err(BridgeError(format!("cannot look up consumer {name}: {e}"))),
        }
    }
}

async fn create_consumer(
    stream: &stream::Stream,
    opts: &InOptions,
    generation: u64,
    deliver_policy: DeliverPolicy,
) -> Result<(), BridgeError> {
    let name = consumer_name(&opts.durable, generation);
    let config = pull::Config {
        durable_name: Some(name.clone()),
        description: Some(description(&opts.durable, generation)),
        filter_subject: opts.endpoint.subject.clone(),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: opts.window.max(1) as i64,
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map(drop)
        .map_err(|e| BridgeError(format!("cannot create consumer {name}: {e}")))
}

async fn open_messages(
    stream: &stream::Stream,
    opts: &InOptions,
    pos: &Position,
) -> Result<pull::Stream, String> {
    let name = consumer_name(&opts.durable, pos.generation);
    let consumer: PullConsumer = stream
        .get_consumer(&name)
        .await
        .map_err(|e| e.to_string())?;
    consumer
        .stream()
        .max_messages_per_batch(opts.window.max(1))
        .heartbeat(HEARTBEAT)
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// Starts a new consumer generation right after the last message written, retrying with
/// backoff while the server is away (or until `stop`).
async fn resync(
    stream: &stream::Stream,
    opts: &InOptions,
    mut pos: Position,
    counters: &Counters,
    why: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<Position, BridgeError> {
    Counters::add(&counters.recoveries, 1);
    eprintln!(
        "atbus-bridge in: {why}; consuming again from stream sequence {}",
        pos.written_upto + 1
    );
    let mut retry = Retry::default();
    loop {
        match new_generation(stream, opts, &pos).await {
            Ok(next) => {
                pos.generation = next;
                pos.last_delivery = None;
                return Ok(pos);
            }
            Err(_) if *stop.borrow() => return Ok(pos),
            Err(_) => {
                tokio::select! {
                    _ = retry.pause() => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_generations_are_named_and_recognised() {
        assert_eq!(consumer_name("b", 0), "b");
        assert_eq!(consumer_name("b", 3), "b-r3");
        assert_eq!(generation_of("b", "b"), Some(0));
        assert_eq!(generation_of("b", "b-r3"), Some(3));
        assert_eq!(generation_of("b", "b-r03"), None);
        assert_eq!(generation_of("b", "b-r0"), None);
        assert_eq!(generation_of("b", "bb-r1"), None);
        assert_eq!(generation_of("b", "b-rx"), None);
    }

    #[test]
    fn a_consumer_is_ours_only_if_its_description_names_our_durable() {
        let ours = description("orders", 1);
        assert_eq!(
            owned_generation("orders", "orders-r1", Some(&ours)),
            Some(1)
        );
        // The same name, made by `--durable orders-r1` (its generation 0).
        let theirs = description("orders-r1", 0);
        assert_eq!(owned_generation("orders", "orders-r1", Some(&theirs)), None);
        assert_eq!(
            owned_generation("orders-r1", "orders-r1", Some(&theirs)),
            Some(0)
        );
        assert_eq!(
            owned_generation("orders-r1", "orders-r1", Some(&ours)),
            None
        );
        // A description that does not match the name, or is not ours at all.
        assert_eq!(owned_generation("orders", "orders-r2", Some(&ours)), None);
        assert_eq!(owned_generation("orders", "orders", Some("by hand")), None);
        // Made before owners were recorded: by name, as then.
        assert_eq!(owned_generation("orders", "orders-r3", None), Some(3));
    }
}
