//! Checkable message bytes, shared by the peer binary and the tests: every byte of a
//! message follows from (sender id, sequence number), so a receiver checks each one.

/// The message sender `id` sends as number `seq`: 8 bytes of id and seq, then 0 to 299
/// pattern bytes.
pub fn payload(id: u32, seq: u32) -> Vec<u8> {
    let len = 8 + (seq as usize * 37 + id as usize * 11) % 300;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    for k in 8..len {
        v.push((id as usize * 31 + seq as usize * 7 + k) as u8);
    }
    v
}

/// Sender id and sequence of a message, if every byte is what `payload` makes.
pub fn check(bytes: &[u8]) -> Option<(u32, u32)> {
    let id = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    (payload(id, seq) == bytes).then_some((id, seq))
}
