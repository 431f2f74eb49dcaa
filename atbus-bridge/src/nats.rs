//! What both directions share: the NATS connection, the stream, message ids and headers.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Header carrying the message's block sequence in its channel.
pub const HEADER_SEQ: &str = "Atbus-Seq";
/// Header carrying the pid of the process that wrote the message into its channel.
pub const HEADER_WRITER_PID: &str = "Atbus-Writer-Pid";

/// A failure that stops the bridge: one line saying what happened and what to do.
#[derive(Debug)]
pub struct BridgeError(pub String);

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BridgeError {}

impl From<atbus::Error> for BridgeError {
    fn from(e: atbus::Error) -> Self {
        BridgeError(e.to_string())
    }
}

/// Where the messages go to or come from on the NATS side.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream.
    pub stream: String,
    /// The subject the bridge publishes to or consumes from.
    pub subject: String,
}

/// The `Nats-Msg-Id` of the message with block sequence `seq` in the channel with id
/// `channel_id`: unique per message and the same every time it is published.
pub fn message_id(channel_id: u64, seq: u64) -> String {
    format!("{channel_id:016x}-{seq}")
}

/// The channel id and block sequence a [`message_id`] names.
pub fn parse_message_id(id: &str) -> Option<(u64, u64)> {
    let (channel, seq) = id.split_once('-')?;
    if channel.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(channel, 16).ok()?, seq.parse().ok()?))
}

/// How long a JetStream request (a publish acknowledgement, a stream lookup) may take
/// before the bridge treats it as failed and retries.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url`. Refuses at once with a clear error when no server answers (so a
/// wrong URL is reported, not retried for ever); once connected, the client reconnects
/// by itself for as long as it takes after the server goes away.
pub async fn connect(url: &str) -> Result<async_nats::Client, BridgeError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 10 ms doubling to 2 s: a restarted local server is found within a few ms
            // of coming back, a remote outage costs a request every 2 s.
            Duration::from_millis(10u64 << attempts.min(8)).min(Duration::from_secs(2))
        })
        .connect(url)
        .await
        .map_err(|e| {
            BridgeError(format!(
                "cannot reach the NATS server at {url}: {e}; start it (nats-server -js) or \
                 check --nats"
            ))
        })
}

/// A JetStream context whose publishes may have `window` acknowledgements outstanding.
pub fn jetstream(client: async_nats::Client, window: usize) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(window.max(1))
        .backpressure_on_inflight(true)
        .build(client)
}

/// How long the bridge keeps asking at start when JetStream does not answer (a server
/// still starting JetStream, or too busy to answer within [`REQUEST_TIMEOUT`]).
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// How a start-up request to JetStream ended, when not with its answer.
enum Unsettled {
    /// No answer (timed out, or nobody serves the JetStream API yet): ask again.
    Unanswered(BridgeError),
    /// An answer that stops the bridge.
    Failed(BridgeError),
}

/// The stream `endpoint.stream`, created with `endpoint.subject` if missing; an
/// existing stream must already take that subject. Asks again while JetStream does not
/// answer, for up to [`STARTUP_PATIENCE`].
pub async fn ensure_stream(
    js: &jetstream::Context,
    endpoint: &Endpoint,
    duplicate_window: Duration,
) -> Result<stream::Stream, BridgeError> {
    let deadline = std::time::Instant::now() + STARTUP_PATIENCE;
    let mut retry = Retry::default();
    loop {
        match ensure_stream_once(js, endpoint, duplicate_window).await {
            Ok(s) => return Ok(s),
            Err(Unsettled::Unanswered(e)) if std::time::Instant::now() < deadline => {
                eprintln!("atbus-bridge: JetStream did not answer ({e}); asking again");
                retry.pause().await;
            }
            Err(Unsettled::Unanswered(e) | Unsettled::Failed(e)) => return Err(e),
        }
    }
}

/// `s` (stream `name`), if its subjects take `subject`.
async fn takes_subject(
    mut s: stream::Stream,
    name: &str,
    subject: &str,
) -> Result<stream::Stream, Unsettled> {
    let info = s.info().await.map_err(|e| {
        Unsettled::Unanswered(BridgeError(format!(
            "cannot read the configuration of stream {name}: {e}"
        )))
    })?;
    let subjects = &info.config.subjects;
    if !subjects.iter().any(|s| subject_matches(s, subject)) {
        return Err(Unsettled::Failed(BridgeError(format!(
            "stream config conflict: stream {name} exists with subjects {subjects:?}, \
             which do not take {subject}; use another --stream or --subject, or add \
             the subject to the stream"
        ))));
    }
    Ok(s)
}

async fn ensure_stream_once(
    js: &jetstream::Context,
    endpoint: &Endpoint,
    duplicate_window: Duration,
) -> Result<stream::Stream, Unsettled> {
    let name = &endpoint.stream;
    let subject = &endpoint.subject;
    match js.get_stream(name).await {
        Ok(s) => takes_subject(s, name, subject).await,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                duplicate_window,
                ..Default::default()
            };
            let created = js.create_stream(config).await;
            let e = match created {
                Ok(s) => return Ok(s),
                Err(e) => e,
            };
            use jetstream::context::CreateStreamErrorKind as Kind;
            let unanswered = matches!(e.kind(), Kind::TimedOut | Kind::JetStreamUnavailable);
            if !unanswered {
                // Another bridge may have created it between our look-up and our create
                // (an `out` and an `in` bridge started together): if the stream is there
                // now and takes our subject, it is ours to use.
                if let Ok(s) = js.get_stream(name).await {
                    return takes_subject(s, name, subject).await;
                }
            }
            let e = BridgeError(format!(
                "stream config conflict: cannot create stream {name} for {subject}: {e}; \
                 another stream may already take that subject"
            ));
            Err(if unanswered {
                Unsettled::Unanswered(e)
            } else {
                Unsettled::Failed(e)
            })
        }
        Err(e) => {
            let unanswered = matches!(e.kind(), jetstream::context::GetStreamErrorKind::Request);
            let e = BridgeError(format!(
                "cannot look up stream {name}: {e}; is JetStream enabled on the server \
                 (nats-server -js)?"
            ));
            Err(if unanswered {
                Unsettled::Unanswered(e)
            } else {
                Unsettled::Failed(e)
            })
        }
    }
}

/// Whether the stream subject (which may hold `*` and `>` wildcards) takes `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Backoff between retries while the server is away: 10 ms doubling to 2 s.
#[derive(Debug, Default)]
pub struct Retry {
    attempts: u32,
}

impl Retry {
    /// Sleeps before the next attempt.
    pub async fn pause(&mut self) {
        let ms = (10u64 << self.attempts.min(8)).min(2000);
        self.attempts += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches("orders", "orders"));
        assert!(subject_matches("orders.*", "orders.eu"));
        assert!(subject_matches("orders.>", "orders.eu.fr"));
        assert!(!subject_matches("orders.*", "orders.eu.fr"));
        assert!(!subject_matches("orders", "orders.eu"));
        assert!(!subject_matches("orders.eu", "orders"));
    }

    #[test]
    fn message_ids_name_channel_and_sequence() {
        assert_eq!(message_id(0xab, 42), "00000000000000ab-42");
        assert_ne!(message_id(1, 23), message_id(12, 3));
        assert_eq!(
            parse_message_id(&message_id(u64::MAX, 7)),
            Some((u64::MAX, 7))
        );
        assert_eq!(parse_message_id("ab-7"), None);
        assert_eq!(parse_message_id("00000000000000ab-x"), None);
    }
}
