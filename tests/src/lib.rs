//! Helpers shared by the multi-process tests: predictable payloads, unique channel
//! names, child processes that die with their test, and a NATS server for the bridge tests.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod child;
pub mod nats;
pub mod nats_release;

/// Message `seq` of writer `id` with `len` bytes (len >= 16): writer id and sequence as
/// little-endian u64s, then bytes from an xorshift generator seeded by both. Every byte is
/// predictable, so a reader can check all of them.
pub fn payload(id: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    fill_payload(&mut v, id, seq, len);
    v
}

/// Like [`payload`], reusing `out`.
pub fn fill_payload(out: &mut Vec<u8>, id: u64, seq: u64, len: usize) {
    assert!(len >= 16, "payloads carry a 16-byte id/sequence prefix");
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let mut x = (id << 40 ^ seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend((16..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
}

/// Length of message `seq` of writer `id`, uniform-ish in `min..=max`.
pub fn length(id: u64, seq: u64, min: usize, max: usize) -> usize {
    let mut x = (id.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ seq).wrapping_add(0x9E37_79B9);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    min + (x % (max - min + 1) as u64) as usize
}

/// Splits a received message into (writer id, sequence) and checks every byte.
pub fn check_payload(msg: &[u8]) -> Result<(u64, u64), String> {
    if msg.len() < 16 {
        return Err(format!("message of {} bytes is too short", msg.len()));
    }
    let id = u64::from_le_bytes(msg[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    let expect = payload(id, seq, msg.len());
    if expect != msg {
        let at = expect
            .iter()
            .zip(msg)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "writer {id} message {seq} ({} bytes) differs at byte {at}",
            msg.len()
        ));
    }
    Ok((id, seq))
}

/// A channel name unique to this process, unlinked when dropped.
pub struct TestChannel {
    /// The name.
    pub name: String,
}

impl TestChannel {
    /// A fresh name (any stale object of that name is removed).
    pub fn new(tag: &str) -> TestChannel {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("/atbus-mp-{}-{tag}-{n}", std::process::id());
        let _ = atbus::Channel::unlink(&name);
        TestChannel { name }
    }
}

impl Drop for TestChannel {
    fn drop(&mut self) {
        let _ = atbus::Channel::unlink(&self.name);
    }
}

/// Exit code of a writer whose message was abandoned (skipped as stalled).
pub const EXIT_ABANDONED: i32 = 3;

/// Overwrites the reader-role record of shared-memory channel `name` (`/NAME`) through
/// its file, as a hostile or confused peer with write access could, or as a killed
/// reader's successor finds it (a word naming a process that cannot exist:
/// `i32::MAX as u64`).
pub fn overwrite_reader_owner(name: &str, word: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    let offset = std::mem::offset_of!(atbus::layout::Header, reader)
        + std::mem::offset_of!(atbus::layout::ReaderRecord, owner);
    file.write_all_at(&word.to_le_bytes(), offset as u64)
        .unwrap();
}
