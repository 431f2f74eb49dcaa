//! Generated load for `send --count` and its check in `recv --check-seq`: payloads whose
//! every byte follows from their first 8, and, with `--seq`, those 8 bytes carry a
//! sender id and a sequence number, so a reader can tell a gap, a repeat or a damaged
//! byte.
//!
//! A message of `send --count N --seq --sender S` with sequence `q` is the little-endian
//! u64 `S << 48 | q`, then bytes of an xorshift stream seeded by that word; its length,
//! within `--size`, also follows from the word.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Bytes of the sequence header.
pub const HEADER: usize = 8;

/// Sequences live in the header's low 48 bits.
pub const SEQ_BITS: u32 = 48;

/// The largest sequence number.
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;

/// A message size or a range of them: `64`, `8-2048`, `1KiB-16KiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest size in bytes.
    pub min: usize,
    /// Largest size in bytes.
    pub max: usize,
}

impl SizeRange {
    /// Parses `N` or `MIN-MAX` (each with an optional unit, like `--size` of `create`).
    pub fn parse(text: &str) -> Result<SizeRange, String> {
        let one = |t: &str| {
            crate::units::parse_size(t.trim())
                .and_then(|n| usize::try_from(n).map_err(|_| format!("size {t:?} is too large")))
        };
        let (min, max) = match text.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => (one(text)?, one(text)?),
        };
        if min == 0 || min > max {
            return Err(format!(
                "sizes {text:?}: give N or MIN-MAX with 1 <= MIN <= MAX"
            ));
        }
        Ok(SizeRange { min, max })
    }

    /// The length of the message whose header word is `word`.
    fn len_of(self, word: u64) -> usize {
        let span = (self.max - self.min) as u64 + 1;
        self.min + (mix(word ^ 0x5EED) % span) as usize
    }
}

/// The header word of `seq` from `sender` (the word alone when there is no header).
pub fn word(sender: u16, seq: u64) -> u64 {
    u64::from(sender) << SEQ_BITS | (seq & MAX_SEQ)
}

/// Writes into `out` the message with header word `word` and a length within `sizes`;
/// with `header`, its first [`HEADER`] bytes are the word (then `sizes.min >= HEADER`).
pub fn fill(out: &mut Vec<u8>, sizes: SizeRange, word: u64, header: bool) {
    let len = sizes.len_of(word);
    out.clear();
    if header {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let mut stream = Stream::new(word);
    out.extend((out.len()..len).map(|_| stream.next_byte()));
}

/// The bytes after the header: an xorshift64 stream seeded by the word.
struct Stream(u64);

impl Stream {
    fn new(word: u64) -> Stream {
        Stream(mix(word) | 1)
    }

    fn next_byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as u8
    }
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Checks messages of `send --seq` as they arrive: per sender, sequences consecutive
/// from the first one seen (which [`summary`](SeqCheck::summary) shows), and every byte
/// as sent.
#[derive(Debug, Default)]
pub struct SeqCheck {
    /// Per sender: the next sequence expected and the first one seen.
    senders: BTreeMap<u16, (u64, u64)>,
    messages: u64,
    missing: u64,
    repeated: u64,
    damaged: u64,
    problem_messages: u64,
}

impl SeqCheck {
    /// A check that has seen nothing.
    pub fn new() -> SeqCheck {
        SeqCheck::default()
    }

    /// Checks one message; returns what is wrong with it, if anything.
    pub fn observe(&mut self, msg: &[u8]) -> Option<String> {
        self.messages += 1;
        let problem = self.problem_in(msg);
        if problem.is_some() {
            self.problem_messages += 1;
        }
        problem
    }

    fn problem_in(&mut self, msg: &[u8]) -> Option<String> {
        let Some(head) = msg.first_chunk::<HEADER>() else {
            self.damaged += 1;
            return Some(format!(
                "a message of {} bytes is too short for a sequence header ({HEADER} bytes)",
                msg.len()
            ));
        };
        let word = u64::from_le_bytes(*head);
        let sender = (word >> SEQ_BITS) as u16;
        let seq = word & MAX_SEQ;
        let mut stream = Stream::new(word);
        if let Some(at) = msg[HEADER..].iter().position(|&b| b != stream.next_byte()) {
            self.damaged += 1;
            return Some(format!(
                "sender {sender} seq {seq} ({} bytes): byte {} is not as sent",
                msg.len(),
                HEADER + at
            ));
        }
        let (next, _) = self.senders.entry(sender).or_insert((seq, seq));
        let expected = *next;
        if seq == expected {
            *next = seq + 1;
            None
        } else if seq > expected {
            self.missing += seq - expected;
            *next = seq + 1;
            Some(format!(
                "sender {sender}: seq {seq} where {expected} was due: {} missing",
                seq - expected
            ))
        } else {
            self.repeated += 1;
            Some(format!(
                "sender {sender}: seq {seq} again or out of order ({expected} was due)"
            ))
        }
    }

    /// How many messages had a problem so far (gaps count once per message that showed
    /// them).
    pub fn problems(&self) -> u64 {
        self.problem_messages
    }

    /// Whether every message so far was as sent, in order, without a gap.
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.repeated == 0 && self.damaged == 0
    }

    /// One line: the messages checked, each sender's sequences, and the verdict.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "checked {} message{} from {} sender{}",
            self.messages,
            plural(self.messages),
            self.senders.len(),
            plural(self.senders.len() as u64)
        );
        for (i, (sender, (next, first))) in self.senders.iter().enumerate() {
            let sep = if i == 0 { " (" } else { ", " };
            let _ = write!(
                line,
                "{sep}{sender}: seq {first}-{}",
                next.saturating_sub(1)
            );
        }
        if !self.senders.is_empty() {
            line.push(')');
        }
        if self.ok() {
            line.push_str(": in order, none missing, every byte as sent");
        } else {
            let _ = write!(
                line,
                ": {} missing, {} repeated or out of order, {} damaged",
                self.missing, self.repeated, self.damaged
            );
        }
        line
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_one_or_a_range() {
        assert_eq!(SizeRange::parse("64"), Ok(SizeRange { min: 64, max: 64 }));
        assert_eq!(
            SizeRange::parse("8-2KiB"),
            Ok(SizeRange { min: 8, max: 2048 })
        );
        assert!(SizeRange::parse("10-5").is_err());
        assert!(SizeRange::parse("0").is_err());
        assert!(SizeRange::parse("8-").is_err());
    }

    #[test]
    fn generated_messages_pass_the_check_in_order_and_fail_it_otherwise() {
        let sizes = SizeRange { min: 8, max: 300 };
        let mut msg = Vec::new();
        let mut check = SeqCheck::new();
        let mut lens = std::collections::BTreeSet::new();
        for seq in 0..1000 {
            fill(&mut msg, sizes, word(3, seq), true);
            assert!((8..=300).contains(&msg.len()));
            lens.insert(msg.len());
            assert_eq!(check.observe(&msg), None, "seq {seq}");
        }
        assert!(lens.len() > 100, "lengths vary: {}", lens.len());
        assert!(check.ok());
        assert_eq!(
            check.summary(),
            "checked 1000 messages from 1 sender (3: seq 0-999): in order, none missing, \
             every byte as sent"
        );
        // A gap, a repeat, a damaged byte.
        fill(&mut msg, sizes, word(3, 1002), true);
        assert!(check.observe(&msg).unwrap().contains("2 missing"));
        fill(&mut msg, sizes, word(3, 5), true);
        assert!(check.observe(&msg).unwrap().contains("out of order"));
        fill(
            &mut msg,
            SizeRange { min: 64, max: 64 },
            word(3, 1003),
            true,
        );
        msg[40] ^= 1;
        assert!(check.observe(&msg).unwrap().contains("byte 40"));
        assert!(!check.ok());
        assert!(check
            .summary()
            .ends_with(": 2 missing, 1 repeated or out of order, 1 damaged"));
    }
}
