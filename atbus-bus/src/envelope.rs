//! The envelope: a few bytes in front of every payload saying what kind of message it
//! is, who sent it, and which request it belongs to.
//!
//! Wire format (integers are LEB128 varints, at most 10 bytes each):
//!
//! | field             | bytes  | present for          |
//! |-------------------|--------|----------------------|
//! | kind              | 1      | all: 0 data, 1 request, 2 reply; + 0x80 if padded |
//! | sender name length| 1      | all (1 to 63)        |
//! | sender name       | 1..=63 | all                  |
//! | sender generation | varint | all                  |
//! | correlation id    | varint | request, reply       |
//! | addressee generation | varint | reply             |
//! | padding length    | 1      | padded (0 to 31)     |
//! | padding           | 0..=31 | padded (zeros, ignored) |
//! | payload           | rest   | all                  |
//!
//! Plain data from endpoint `client` of generation 5 costs 1 + 1 + 6 + 1 = 9 bytes. A
//! payload of `ALIGN_BODY_FROM` (256) bytes or more gets a padded envelope, a multiple of 32
//! bytes long (at most 96), so that the payload starts where the ring's payload starts, on
//! a 32-byte boundary: its copies in and out of the ring then load and store whole
//! aligned 32-byte words, no access split across two cache lines. The
//! name travels in the message (not a record index) so a message stays attributable
//! after its sender left the bus. Everything is untrusted on receipt: a message that
//! does not decode is dropped and counted (`malformed`), never a panic.

use crate::name::{Name, HEAD_BYTES};

/// Payloads of this many bytes and more go after a padded envelope (see the module's
/// doc); below it, the up to 31 bytes of padding would cost more than the split accesses.
pub(crate) const ALIGN_BODY_FROM: usize = 256;
/// What a padded envelope's length is a multiple of: the ring's payload alignment.
const BODY_ALIGN: usize = 32;
/// The kind byte's flag of a padded envelope.
const PADDED: u8 = 0x80;
/// The longest envelope: a padded one after a 63-byte name and three 10-byte varints
/// (2 + 63 + 30 = 95 bytes, + 1, rounded up to 32).
pub(crate) const MAX_ENVELOPE: usize = 96;

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A plain message from `send_to`.
    Data,
    /// A request from `request`: answer it with `reply`.
    Request,
    /// A reply to a request.
    Reply,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Request => 1,
            Kind::Reply => 2,
        }
    }
}

/// Where a received message came from and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Data, request or reply.
    pub kind: Kind,
    /// The sender's endpoint name.
    pub from: Name,
    /// The sender's generation: tells a restarted sender from its predecessor.
    pub from_generation: u64,
    /// The sender's pid, as its inbox block header says (not checksummed: as trusted as
    /// the processes that may write the inbox).
    pub from_pid: u32,
    /// The request id for requests and replies; 0 for data.
    pub correlation: u64,
    /// For a reply: the generation of the endpoint it is addressed to. 0 otherwise.
    pub to_generation: u64,
}

impl Envelope {
    /// The sender's endpoint name.
    pub fn from(&self) -> &str {
        self.from.as_str()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None; // overflows 64 bits
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Writes the envelope for a message into `out` (cleared first); the payload goes after.
/// `padded`: a multiple of [`BODY_ALIGN`] bytes long (for payloads of
/// [`ALIGN_BODY_FROM`] bytes and more).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    from: &str,
    from_generation: u64,
    correlation: u64,
    to_generation: u64,
    padded: bool,
) {
    out.clear();
    out.push(kind.byte());
    out.push(from.len() as u8);
    out.extend_from_slice(from.as_bytes());
    put_varint(out, from_generation);
    match kind {
        Kind::Data => {}
        Kind::Request => put_varint(out, correlation),
        Kind::Reply => {
            put_varint(out, correlation);
            put_varint(out, to_generation);
        }
    }
    if padded {
        out[0] |= PADDED;
        let pad = (BODY_ALIGN - (out.len() + 1) % BODY_ALIGN) % BODY_ALIGN;
        out.push(pad as u8);
        out.resize(out.len() + pad, 0);
    }
}

/// Decodes the envelope at the start of the message `buf[..len]`: the envelope (with
/// `from_pid` as given) and the payload's offset, or `None` if the message is not a
/// well-formed envelope. Bytes of `buf` after the message, if any, are read (and
/// ignored) to take the sender's name from a fixed-size head: give a buffer of at
/// least [`HEAD_BYTES`] and the name is read without a byte loop. `known` is the last
/// sender's name, kept by the caller: see [`Name::from_head`].
#[inline(always)]
pub(crate) fn decode(
    buf: &[u8],
    len: usize,
    from_pid: u32,
    known: &mut Name,
) -> Option<(Envelope, usize)> {
    let bytes = buf.get(..len)?;
    let first = *bytes.first()?;
    let kind = match first & !PADDED {
        0 => Kind::Data,
        1 => Kind::Request,
        2 => Kind::Reply,
        _ => return None,
    };
    let name_len = usize::from(*bytes.get(1)?);
    let name = bytes.get(2..2 + name_len)?;
    let from = match buf.get(..HEAD_BYTES).and_then(|h| h.try_into().ok()) {
        Some(head) => Name::from_head(head, name_len, known)?,
        None => Name::new(name)?,
    };
    let mut at = 2 + name_len;
    let from_generation = get_varint(bytes, &mut at)?;
    let (correlation, to_generation) = match kind {
        Kind::Data => (0, 0),
        Kind::Request => (get_varint(bytes, &mut at)?, 0),
        Kind::Reply => (get_varint(bytes, &mut at)?, get_varint(bytes, &mut at)?),
    };
    if first & PADDED != 0 {
        // Any length the message holds is accepted; the payload starts after it.
        at += 1 + usize::from(*bytes.get(at)?);
        if at > len {
            return None;
        }
    }
    let envelope = Envelope {
        kind,
        from,
        from_generation,
        from_pid,
        correlation,
        to_generation,
    };
    Some((envelope, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::MAX_ENDPOINT_NAME;

    #[test]
    fn every_kind_round_trips_and_data_costs_a_few_bytes() {
        let mut buf = Vec::new();
        for (kind, corr, to) in [
            (Kind::Data, 0, 0),
            (Kind::Request, u64::MAX, 0),
            (Kind::Reply, 300, u64::MAX),
        ] {
            encode(&mut buf, kind, "client", 5, corr, to, false);
            let header = buf.len();
            buf.extend_from_slice(b"payload");
            let (env, at) = decode(&buf, buf.len(), 42, &mut { Name::NONE }).unwrap();
            assert_eq!(at, header);
            assert_eq!(&buf[at..], b"payload");
            assert_eq!(
                (env.kind, env.from(), env.from_generation, env.from_pid),
                (kind, "client", 5, 42)
            );
            assert_eq!((env.correlation, env.to_generation), (corr, to));
        }
        encode(&mut buf, Kind::Data, "client", 5, 0, 0, false);
        assert_eq!(buf.len(), 9);
    }

    #[test]
    fn the_sender_name_is_the_same_read_through_the_window_or_not() {
        // A buffer longer than the message (as an endpoint's receive buffer is): the
        // name is taken as a fixed-size window that runs past it into stale bytes.
        // `known` carries the last good name from one decode to the next, as an
        // endpoint's receive does: a name equal to it skips validation.
        let mut known = Name::NONE;
        for name in ["a", "client", &"n".repeat(MAX_ENDPOINT_NAME)] {
            let mut msg = Vec::new();
            encode(&mut msg, Kind::Request, name, 9, 77, 0, false);
            msg.extend_from_slice(b"xy");
            let short = decode(&msg, msg.len(), 3, &mut { Name::NONE }).unwrap();
            for stale in [0u8, b'/', 0xff, b'z'] {
                let mut buf = msg.clone();
                buf.resize(msg.len().max(HEAD_BYTES), stale);
                let windowed = decode(&buf, msg.len(), 3, &mut known).unwrap();
                assert_eq!(windowed, short, "{name} {stale}");
                assert_eq!(windowed.0.from(), name);
                assert_eq!(windowed.0.from, Name::parse(name).unwrap());
                assert_eq!(&buf[windowed.1..msg.len()], b"xy");
            }
        }
        // A bad byte inside the name is refused either way; one just after it is not
        // part of the name.
        let mut msg = Vec::new();
        encode(&mut msg, Kind::Data, "ab", 1, 0, 0, false);
        let mut good = msg.clone();
        good.resize(msg.len() + 80, b'a');
        assert_eq!(
            decode(&good, msg.len(), 1, &mut known).unwrap().0.from(),
            "ab"
        );
        assert_eq!(known, Name::parse("ab").unwrap());
        let mut bad = msg.clone();
        bad[3] = b'/';
        bad.resize(msg.len() + 80, b'a');
        assert!(decode(&bad, msg.len(), 1, &mut known).is_none());
        assert!(decode(&bad[..msg.len()], msg.len(), 1, &mut known).is_none());
        // The refused name did not replace the known one.
        assert_eq!(known, Name::parse("ab").unwrap());
        assert_eq!(
            decode(&good, msg.len(), 1, &mut known).unwrap().0.from(),
            "ab"
        );
        // "a" followed by a 'b' (its generation, 98) is "a", though "ab" is known.
        let mut a = Vec::new();
        encode(&mut a, Kind::Data, "a", u64::from(b'b'), 0, 0, false);
        assert_eq!(&a[2..4], b"ab");
        let len = a.len();
        a.resize(HEAD_BYTES, 0);
        let (env, at) = decode(&a, len, 1, &mut known).unwrap();
        assert_eq!((env.from(), env.from_generation, at), ("a", 98, len));
        assert_eq!(known, Name::parse("a").unwrap());
    }

    #[test]
    fn a_padded_envelope_is_a_multiple_of_32_bytes_and_decodes_the_same() {
        let long = "n".repeat(MAX_ENDPOINT_NAME);
        for name in ["a", "client", "abcdefghijklmnopqrstuvwxyz", long.as_str()] {
            for (kind, corr, to) in [
                (Kind::Data, 0, 0),
                (Kind::Request, 1, 0),
                (Kind::Request, u64::MAX, 0),
                (Kind::Reply, 300, u64::MAX),
                (Kind::Reply, u64::MAX, u64::MAX),
            ] {
                for generation in [1, 1 << 20, u64::MAX] {
                    let mut plain = Vec::new();
                    encode(&mut plain, kind, name, generation, corr, to, false);
                    let mut buf = Vec::new();
                    encode(&mut buf, kind, name, generation, corr, to, true);
                    let header = buf.len();
                    assert!(
                        header % BODY_ALIGN == 0 && header <= MAX_ENVELOPE,
                        "{header}"
                    );
                    assert!(header > plain.len() && header - plain.len() <= BODY_ALIGN);
                    buf.extend_from_slice(b"payload");
                    plain.extend_from_slice(b"payload");
                    let (env, at) = decode(&buf, buf.len(), 7, &mut { Name::NONE }).unwrap();
                    let (want, _) = decode(&plain, plain.len(), 7, &mut { Name::NONE }).unwrap();
                    assert_eq!((env, at), (want, header));
                    assert_eq!(&buf[at..], b"payload");
                    // Cut anywhere inside the padding or its length: refused.
                    for cut in plain.len() - 7..header {
                        assert!(decode(&buf, cut, 7, &mut { Name::NONE }).is_none());
                    }
                }
            }
        }
        // A padding length that runs past the message is refused.
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Data, "ab", 1, 0, 0, true);
        let pad_at = 2 + 2 + 1;
        buf[pad_at] = 200;
        assert!(decode(&buf, buf.len(), 1, &mut { Name::NONE }).is_none());
        // The longest envelope there is, padded, fits `MAX_ENVELOPE` exactly.
        encode(
            &mut buf,
            Kind::Reply,
            &long,
            u64::MAX,
            u64::MAX,
            u64::MAX,
            true,
        );
        assert_eq!(buf.len(), MAX_ENVELOPE);
    }

    #[test]
    fn malformed_envelopes_are_refused_without_panicking() {
        let bad: [&[u8]; 8] = [
            b"",
            b"\x03\x01a\x01",
            b"\x00",
            b"\x00\x00\x01",
            b"\x00\x40aaaa",
            b"\x00\x01/\x01",
            b"\x00\x01a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02",
            b"\x02\x01a\x01\x01",
        ];
        for bytes in bad {
            assert!(
                decode(bytes, bytes.len(), 1, &mut { Name::NONE }).is_none(),
                "{bytes:?}"
            );
        }
        // Every prefix of a good reply is refused too.
        let mut buf = Vec::new();
        encode(&mut buf, Kind::Reply, "abc", 1 << 40, 1 << 50, 7, false);
        for cut in 0..buf.len() {
            assert!(decode(&buf, cut, 1, &mut { Name::NONE }).is_none(), "{cut}");
        }
    }

    #[test]
    fn a_remembered_name_never_changes_what_a_message_decodes_to() {
        // Envelopes from a few senders, some mutated at random (the name, its length, the
        // bytes after it), decoded one after another with the name cache an endpoint
        // keeps, and each also with no name known: the answers must be the same.
        let names = ["a", "ab", "abc", "client-7", &"n".repeat(MAX_ENDPOINT_NAME)];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut known = Name::NONE;
        let mut accepted = 0;
        for _ in 0..50_000 {
            let r = next();
            let name = names[(r % names.len() as u64) as usize];
            let kind = [Kind::Data, Kind::Request, Kind::Reply][(r >> 8) as usize % 3];
            let mut msg = Vec::new();
            encode(
                &mut msg,
                kind,
                name,
                r >> 16 & 0xffff,
                r >> 32,
                r >> 40,
                r & 1 << 6 != 0,
            );
            msg.extend_from_slice(&r.to_le_bytes()[..(r >> 60) as usize % 8]);
            let len = msg.len();
            for _ in 0..(r >> 56) % 3 {
                let at = (next() % len as u64) as usize;
                msg[at] = next() as u8;
            }
            // Stale bytes after the message, as in an endpoint's buffer.
            msg.resize(len.max(HEAD_BYTES) + (r >> 62) as usize, next() as u8);
            let cached = decode(&msg, len, 9, &mut known);
            assert_eq!(cached, decode(&msg, len, 9, &mut { Name::NONE }), "{msg:?}");
            assert_eq!(cached, decode(&msg[..len], len, 9, &mut { Name::NONE }));
            accepted += usize::from(cached.is_some());
        }
        // Both outcomes were exercised.
        assert!((10_000..50_000).contains(&accepted), "{accepted}");
    }
}
