//! What a bridge counts, read by its progress line while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bridge's counters. Relaxed atomics: each is written by the bridge task alone and
/// read for reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages forwarded: published to JetStream (`out`) or written into the channel (`in`).
    pub forwarded: AtomicU64,
    /// Messages acknowledged: by JetStream and then committed to the ring (`out`), or
    /// acknowledged to JetStream after their send returned (`in`).
    pub acked: AtomicU64,
    /// Publishes sent again after a failure or a lost acknowledgement (`out`).
    pub resent: AtomicU64,
    /// Messages JetStream already held and dropped as duplicates (`out`), or redeliveries
    /// of messages the bridge had written already and dropped (`in`).
    pub duplicates_dropped: AtomicU64,
    /// Messages a previous run of the bridge had delivered and not acknowledged, which
    /// this run writes again (`in`): each may reach the channel twice.
    pub possible_duplicates: AtomicU64,
    /// Times the bridge re-established its JetStream position after an error.
    pub recoveries: AtomicU64,
    /// Payload bytes forwarded.
    pub bytes: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters on one line.
    pub fn line(&self) -> String {
        format!(
            "forwarded {} ({} bytes), acked {}, re-sent {}, duplicates dropped {}, possible \
             duplicates {}, recoveries {}",
            Self::get(&self.forwarded),
            Self::get(&self.bytes),
            Self::get(&self.acked),
            Self::get(&self.resent),
            Self::get(&self.duplicates_dropped),
            Self::get(&self.possible_duplicates),
            Self::get(&self.recoveries),
        )
    }

    /// The counters as a JSON object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "forwarded": Self::get(&self.forwarded),
            "bytes": Self::get(&self.bytes),
            "acked": Self::get(&self.acked),
            "resent": Self::get(&self.resent),
            "duplicates_dropped": Self::get(&self.duplicates_dropped),
            "possible_duplicates": Self::get(&self.possible_duplicates),
            "recoveries": Self::get(&self.recoveries),
        })
    }
}
