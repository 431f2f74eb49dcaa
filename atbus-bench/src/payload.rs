//! Predictable payloads: every byte of a message follows from its header word and the
//! run's seed, so a reader can check every byte without being told what was sent.
//!
//! A message is at least 8 bytes:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | header word, little endian: `stream << 40 \| seq` |
//! | 8.. | word *i* (counting the header as word 0) is `key ^ (i * GOLDEN)`, little endian, where `key = mix64(header ^ seed)`; a partial last word is truncated |
//!
//! A *stream* is one writer incarnation: the harness maps stream numbers to (writer id,
//! incarnation). The sequence restarts at 0 in every stream. The message length is part
//! of the prediction too: [`Sizes::size_for`] derives it from the header word.

/// The smallest message the harness sends: the header word.
pub const MIN_SIZE: usize = 8;
/// Bits of the header word that hold the sequence number.
pub const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The header word of message `seq` of `stream`.
#[inline]
pub fn header_word(stream: u32, seq: u64) -> u64 {
    (u64::from(stream) << SEQ_BITS) | (seq & SEQ_MASK)
}

/// Splits a header word into (stream, seq).
#[inline]
pub fn split_word(word: u64) -> (u32, u64) {
    ((word >> SEQ_BITS) as u32, word & SEQ_MASK)
}

/// splitmix64's finaliser: a fast, well-mixing bijection.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A message-size distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Every message has this many bytes.
    Fixed(usize),
    /// Uniform in `lo..=hi` bytes.
    Uniform(usize, usize),
}

impl Sizes {
    /// Parses `N` or `A-B`, each a byte count with an optional K/KiB/M/MiB suffix.
    pub fn parse(s: &str) -> Result<Sizes, String> {
        let sizes = match s.split_once('-') {
            Some((a, b)) => {
                let (lo, hi) = (crate::units::parse_bytes(a)?, crate::units::parse_bytes(b)?);
                if lo > hi {
                    return Err(format!("size range {s}: {lo} is above {hi}"));
                }
                if lo == hi {
                    Sizes::Fixed(lo)
                } else {
                    Sizes::Uniform(lo, hi)
                }
            }
            None => Sizes::Fixed(crate::units::parse_bytes(s)?),
        };
        if sizes.min() < MIN_SIZE {
            return Err(format!(
                "message size {} is below {MIN_SIZE} bytes: every message carries an \
                 8-byte header",
                sizes.min()
            ));
        }
        Ok(sizes)
    }

    /// The smallest size.
    pub fn min(self) -> usize {
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(lo, _) => lo,
        }
    }

    /// The largest size.
    pub fn max(self) -> usize {
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(_, hi) => hi,
        }
    }

    /// The size of the message with header `word` in a run seeded with `seed`.
    #[inline]
    pub fn size_for(self, seed: u64, word: u64) -> usize {
        match self {
            Sizes::Fixed(n) => n,
            Sizes::Uniform(lo, hi) => {
                let r = mix64(word ^ seed.rotate_left(23) ^ 0x5151_5151_5151_5151);
                lo + (r % (hi - lo + 1) as u64) as usize
            }
        }
    }

    /// How it was given on the command line.
    pub fn label(self) -> String {
        match self {
            Sizes::Fixed(n) => crate::units::fmt_bytes(n),
            Sizes::Uniform(lo, hi) => {
                format!(
                    "{}-{}",
                    crate::units::fmt_bytes(lo),
                    crate::units::fmt_bytes(hi)
                )
            }
        }
    }
}

/// Writes the message with header `word` into `buf` (whose length is the message size,
/// at least 8). Words before `first_word` (counting the header as word 0) are left for
/// the caller (the latency test puts a timestamp in word 1).
#[inline]
pub fn fill(buf: &mut [u8], word: u64, seed: u64, first_word: usize) {
    debug_assert!(buf.len() >= MIN_SIZE);
    buf[..8].copy_from_slice(&word.to_le_bytes());
    let key = mix64(word ^ seed);
    let start = first_word.max(1);
    let from = (start * 8).min(buf.len());
    let body = &mut buf[from..];
    let mut i = start as u64;
    // Eight words at a time, each `key ^ (base + k * GOLDEN)`: adds and xors the
    // compiler turns into vector instructions. Word by word (a multiply each) the
    // harness spent more time filling and checking a 16 KiB message than atbus spent
    // moving it.
    let mut blocks = body.chunks_exact_mut(64);
    for block in &mut blocks {
        let base = i.wrapping_mul(GOLDEN);
        for (k, c) in block.chunks_exact_mut(8).enumerate() {
            c.copy_from_slice(&(key ^ base.wrapping_add(STEPS[k])).to_le_bytes());
        }
        i += 8;
    }
    let mut chunks = blocks.into_remainder().chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&(key ^ i.wrapping_mul(GOLDEN)).to_le_bytes());
        i += 1;
    }
    // Byte by byte (at most 7): a slice copy of variable length is a libc call, which
    // at 64-byte messages cost the harness more than the transport under test.
    let last = (key ^ i.wrapping_mul(GOLDEN)).to_le_bytes();
    for (b, v) in chunks.into_remainder().iter_mut().zip(last) {
        *b = v;
    }
}

/// `k * GOLDEN` for the eight words of a block: word `i + k` is `key ^ (i * GOLDEN +
/// STEPS[k])`, the same value as `key ^ ((i + k) * GOLDEN)` (wrapping arithmetic).
const STEPS: [u64; 8] = {
    let mut s = [0u64; 8];
    let mut k = 0;
    while k < 8 {
        s[k] = (k as u64).wrapping_mul(GOLDEN);
        k += 1;
    }
    s
};

/// Light variant (for measuring large messages without the cost of generating and
/// checking every byte): only the header word and a trailer word (the message's last 8
/// bytes, `mix64(header ^ seed)`) change per message; the bytes between are whatever the
/// buffer held. A message shorter than 16 bytes has no room for the trailer: it is
/// written (and checked) in full.
#[inline]
pub fn fill_light(buf: &mut [u8], word: u64, seed: u64) {
    let n = buf.len();
    if n < 16 {
        // No room for a trailer word: every byte, as `fill` (a few at most).
        return fill(buf, word, seed, 1);
    }
    buf[..8].copy_from_slice(&word.to_le_bytes());
    buf[n - 8..].copy_from_slice(&mix64(word ^ seed).to_le_bytes());
}

/// Checks what [`fill_light`] wrote: header, length and trailer.
#[inline]
pub fn check_light(msg: &[u8], seed: u64, sizes: Sizes) -> Checked {
    if msg.len() < MIN_SIZE {
        return Checked::Short;
    }
    let n = msg.len();
    if n < 16 {
        return check(msg, seed, sizes, 1);
    }
    let word = u64::from_le_bytes(msg[..8].try_into().unwrap());
    let (stream, seq) = split_word(word);
    let trailer_ok = msg[n - 8..] == mix64(word ^ seed).to_le_bytes();
    if sizes.size_for(seed, word) != n || !trailer_ok {
        return Checked::Corrupt { stream, seq };
    }
    Checked::Good { stream, seq }
}

/// What a checked message was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Every byte as predicted.
    Good {
        /// Stream number.
        stream: u32,
        /// Sequence number within the stream.
        seq: u64,
    },
    /// The header names a stream, but the length or a body byte is wrong.
    Corrupt {
        /// Stream number (from a header that may itself be damaged).
        stream: u32,
        /// Sequence number.
        seq: u64,
    },
    /// Too short to hold a header.
    Short,
}

/// Checks a received message against the prediction from its own header word.
#[inline]
pub fn check(msg: &[u8], seed: u64, sizes: Sizes, first_word: usize) -> Checked {
    if msg.len() < MIN_SIZE {
        return Checked::Short;
    }
    let word = u64::from_le_bytes(msg[..8].try_into().unwrap());
    let (stream, seq) = split_word(word);
    if sizes.size_for(seed, word) != msg.len() || !body_ok(msg, word, seed, first_word) {
        return Checked::Corrupt { stream, seq };
    }
    Checked::Good { stream, seq }
}

/// True when the body (from `first_word`) is as predicted.
#[inline]
pub fn body_ok(msg: &[u8], word: u64, seed: u64, first_word: usize) -> bool {
    let key = mix64(word ^ seed);
    let start = first_word.max(1);
    let body = &msg[(start * 8).min(msg.len())..];
    let mut i = start as u64;
    let mut diff = 0u64;
    // Eight words at a time, as in `fill`.
    let mut blocks = body.chunks_exact(64);
    for block in &mut blocks {
        let base = i.wrapping_mul(GOLDEN);
        for (k, c) in block.chunks_exact(8).enumerate() {
            let got = u64::from_le_bytes(c.try_into().unwrap());
            diff |= got ^ key ^ base.wrapping_add(STEPS[k]);
        }
        i += 8;
    }
    let mut chunks = blocks.remainder().chunks_exact(8);
    for c in &mut chunks {
        diff |= u64::from_le_bytes(c.try_into().unwrap()) ^ key ^ i.wrapping_mul(GOLDEN);
        i += 1;
    }
    // Byte by byte, as in `fill`: no libc memcmp call for the (at most 7) tail bytes.
    let expect = (key ^ i.wrapping_mul(GOLDEN)).to_le_bytes();
    for (b, e) in chunks.remainder().iter().zip(expect) {
        diff |= u64::from(b ^ e);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_byte_matters() {
        let sizes = Sizes::Uniform(8, 300);
        for seq in 0..200u64 {
            let word = header_word(7, seq);
            let n = sizes.size_for(42, word);
            let mut buf = vec![0u8; n];
            fill(&mut buf, word, 42, 1);
            assert_eq!(check(&buf, 42, sizes, 1), Checked::Good { stream: 7, seq });
            for i in 0..n {
                buf[i] ^= 0x10;
                assert!(!matches!(check(&buf, 42, sizes, 1), Checked::Good { .. }));
                buf[i] ^= 0x10;
            }
            assert!(!matches!(check(&buf, 43, sizes, 1), Checked::Good { .. }));
        }
    }

    /// The layout in the module docs, word by word, as the reference for the block-wise
    /// `fill` and `body_ok`.
    fn reference(len: usize, word: u64, seed: u64, first_word: usize) -> Vec<u8> {
        let key = mix64(word ^ seed);
        let mut v = word.to_le_bytes().to_vec();
        v.resize(first_word.max(1) * 8, 0xAA);
        let mut i = first_word.max(1) as u64;
        while v.len() < len {
            v.extend_from_slice(&(key ^ i.wrapping_mul(GOLDEN)).to_le_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    #[test]
    fn fill_matches_the_documented_layout() {
        for first_word in [1, 2] {
            for len in 16..700 {
                let word = header_word(3, len as u64);
                let mut buf = vec![0xAAu8; len];
                fill(&mut buf, word, 99, first_word);
                assert_eq!(
                    buf,
                    reference(len, word, 99, first_word),
                    "{len} {first_word}"
                );
                assert!(body_ok(&buf, word, 99, first_word));
                if len > first_word * 8 {
                    buf[len - 1] ^= 0x80;
                    assert!(!body_ok(&buf, word, 99, first_word), "{len}");
                }
            }
        }
    }

    #[test]
    fn light_checks_header_length_and_trailer() {
        let sizes = Sizes::Fixed(64);
        let mut buf = vec![0u8; 64];
        fill_light(&mut buf, header_word(2, 9), 5);
        assert_eq!(
            check_light(&buf, 5, sizes),
            Checked::Good { stream: 2, seq: 9 }
        );
        buf[60] ^= 1;
        assert!(!matches!(check_light(&buf, 5, sizes), Checked::Good { .. }));
        assert!(!matches!(
            check_light(&buf[..56], 5, sizes),
            Checked::Good { .. }
        ));
    }

    #[test]
    fn light_checks_of_messages_without_room_for_a_trailer_check_every_byte() {
        for n in 8..16 {
            let sizes = Sizes::Fixed(n);
            let mut buf = vec![0u8; n];
            fill_light(&mut buf, header_word(1, 3), 7);
            assert_eq!(
                check_light(&buf, 7, sizes),
                Checked::Good { stream: 1, seq: 3 }
            );
            for i in 8..n {
                buf[i] ^= 1;
                assert!(
                    !matches!(check_light(&buf, 7, sizes), Checked::Good { .. }),
                    "{n} {i}"
                );
                buf[i] ^= 1;
            }
        }
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(Sizes::parse("64"), Ok(Sizes::Fixed(64)));
        assert_eq!(Sizes::parse("8-2K"), Ok(Sizes::Uniform(8, 2048)));
        assert_eq!(Sizes::parse("16KiB"), Ok(Sizes::Fixed(16384)));
        assert!(Sizes::parse("4").is_err());
        assert!(Sizes::parse("9-8").is_err());
        assert!(Sizes::parse("x").is_err());
    }
}
