//! A snapshot of a channel's shared counters.

use crate::layout::Header;
use crate::sync::atomic::Ordering;

/// Every counter of a channel, read at one moment (each counter atomically; the set is
/// not one atomic snapshot while the channel is in use).
///
/// The values come from shared memory and are not validated: a faulty or hostile
/// process with write access can make them anything. Sums over writer slots wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages writers published.
    pub messages_sent: u64,
    /// Payload bytes writers published.
    pub bytes_sent: u64,
    /// `send` calls that returned `Full`.
    pub full: u64,
    /// Claim compare-exchanges lost to another writer and retried.
    pub write_retries: u64,
    /// Sends that failed with `Abandoned` (their writer stalled past the timeout).
    pub abandoned: u64,
    /// Padding blocks claimed at the end of the ring.
    pub padding_claims: u64,
    /// Messages the reader delivered.
    pub messages_received: u64,
    /// Payload bytes the reader delivered.
    pub bytes_received: u64,
    /// Torn blocks skipped after the timeout.
    pub timeout_blocks: u64,
    /// Torn blocks skipped at once because their writer process was gone.
    pub dead_writer_blocks: u64,
    /// Nodes skipped without delivery, for any reason but padding.
    pub bad_nodes: u64,
    /// Published blocks that failed a check (crc or header) and were skipped.
    pub bad_blocks: u64,
    /// Blocks whose crc32c did not match their payload.
    pub crc_failures: u64,
    /// Blocks whose length, node count or sequence did not check out.
    pub check_failures: u64,
    /// Padding blocks the reader skipped.
    pub padding_blocks: u64,
    /// Nodes a dead reader had consumed but not released, skipped by its successor.
    pub handover_nodes: u64,
    /// Times the reader role was taken over from a dead owner.
    pub reader_takeovers: u64,
    /// Reservations dropped without commit, skipped by the reader.
    pub aborted_blocks: u64,
    /// Times a blocking reader went to sleep on the channel's futex, or an event-loop
    /// reader armed its readiness fd and found nothing ready.
    pub reader_sleeps: u64,
    /// Wake-ups writers issued to a sleeping or armed reader: futex wakes and doorbell
    /// rings (one per sleep: the first writer to publish after the reader slept rings).
    pub wakeups: u64,
    /// The shared read cursor (released position).
    pub read_cursor: u64,
    /// The write cursor (next position to claim; a block's sequence is its position).
    pub write_cursor: u64,
}

impl Stats {
    pub(crate) fn read(h: &Header) -> Stats {
        let r = Ordering::Relaxed;
        // Sum of the writer slots (each counter atomically; the sum is not one snapshot).
        let sum = |f: fn(&crate::layout::WriterCounters) -> &crate::sync::atomic::AtomicU64| {
            h.writer_slots
                .iter()
                .map(|s| f(s).load(r))
                .fold(0u64, u64::wrapping_add)
        };
        let rc = &h.reader_counters;
        Stats {
            messages_sent: sum(|c| &c.messages_sent),
            bytes_sent: sum(|c| &c.bytes_sent),
            full: sum(|c| &c.full),
            write_retries: sum(|c| &c.write_retries),
            abandoned: sum(|c| &c.abandoned),
            padding_claims: sum(|c| &c.padding_blocks),
            messages_received: rc.messages_received.load(r),
            bytes_received: rc.bytes_received.load(r),
            timeout_blocks: rc.timeout_blocks.load(r),
            dead_writer_blocks: rc.dead_writer_blocks.load(r),
            bad_nodes: rc.bad_nodes.load(r),
            bad_blocks: rc.bad_blocks.load(r),
            crc_failures: rc.crc_failures.load(r),
            check_failures: rc.check_failures.load(r),
            padding_blocks: rc.padding_blocks.load(r),
            handover_nodes: rc.handover_nodes.load(r),
            reader_takeovers: h.reader.takeovers.load(r),
            aborted_blocks: rc.aborted_blocks.load(r),
            reader_sleeps: rc.sleeps.load(r),
            wakeups: sum(|c| &c.wakeups),
            read_cursor: h.read_cursor.load(r),
            write_cursor: h.write_cursor.load(r),
        }
    }

    /// Messages published but not (yet) delivered, skipped or abandoned — an estimate
    /// while the channel is busy.
    ///
    /// The counters live in shared memory, where any process that can write the segment
    /// can set them to anything: the arithmetic saturates (0 when more were received
    /// than sent, never a panic or a wrapped-around huge value).
    pub fn in_flight(&self) -> u64 {
        self.messages_sent
            .saturating_sub(self.messages_received.saturating_add(self.bad_blocks))
    }
}
