//! Bus and endpoint names, and the inbox name derived from them.

use crate::error::{Error, Result};

/// Longest endpoint name, in bytes.
pub const MAX_ENDPOINT_NAME: usize = 63;
/// Longest bus name after its leading slash, in bytes: leaves room in a shared-memory
/// name (255 bytes) for the inbox names `BUS.NAME.gGENERATION` and their `.bell` FIFOs.
pub const MAX_BUS_NAME: usize = 150;

/// The bytes names may hold: ASCII letters, digits, `-`, `_` and `.`. Nothing that a
/// path or a shell would read specially.
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Checks a bus name: `/` and then 1 to [`MAX_BUS_NAME`] allowed bytes (a POSIX
/// shared-memory name; the directory lives in /dev/shm).
pub fn check_bus(bus: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: bus.into(),
            reason,
        })
    };
    let Some(rest) = bus.strip_prefix('/') else {
        return invalid("a bus name is a shared-memory name: one leading slash, as \"/prod\"");
    };
    if rest.is_empty() || rest.len() > MAX_BUS_NAME {
        return invalid("a bus name has 1 to 150 bytes after its slash");
    }
    if rest == "." || rest == ".." || !rest.bytes().all(allowed) {
        return invalid("a bus name holds only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Checks an endpoint name: 1 to 63 bytes of ASCII letters, digits, `-`, `_` and `.`.
pub fn check_endpoint(name: &str) -> Result<()> {
    if is_endpoint_name(name.as_bytes()) {
        return Ok(());
    }
    Err(Error::InvalidName {
        name: name.into(),
        reason: "an endpoint name has 1 to 63 bytes: ASCII letters, digits, '-', '_' and '.'",
    })
}

/// Whether `bytes` is a valid endpoint name.
pub(crate) fn is_endpoint_name(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_ENDPOINT_NAME && bytes.iter().all(|&b| allowed(b))
}

/// The name of an endpoint's inbox channel: `BUS.NAME.gGENERATION`, e.g. `/prod.orders.g7`.
/// The generation makes it unique for the life of the directory, so an endpoint that
/// restarts never inherits its predecessor's messages. At most 1 + 150 + 1 + 63 + 2 + 20
/// = 237 bytes.
pub fn inbox_name(bus: &str, name: &str, generation: u64) -> String {
    format!("{bus}.{name}.g{generation}")
}

/// Whether `bytes` is exactly [`inbox_name`]`(bus, name, generation)`, compared piece by
/// piece (no allocation: directory reads check every record's inbox name).
pub(crate) fn is_inbox_name(bytes: &[u8], bus: &str, name: &[u8], generation: u64) -> bool {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut g = generation;
    loop {
        at -= 1;
        digits[at] = b'0' + (g % 10) as u8;
        g /= 10;
        if g == 0 {
            break;
        }
    }
    let pieces: [&[u8]; 5] = [bus.as_bytes(), b".", name, b".g", &digits[at..]];
    let mut rest = bytes;
    for piece in pieces {
        match rest.strip_prefix(piece) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// An endpoint name held inline (no allocation): what an [`Envelope`](crate::Envelope)
/// carries. Always a valid endpoint name.
//
// The name's bytes, then zeros, then its length in the last byte: 64 bytes that
// `from_head` compares in registers with a received message's bytes. Equality compares
// the whole array: the bytes between the name and the length are always zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    raw: [u8; NAME_BYTES],
}

/// The size of a [`Name`]: the longest name and its length byte.
pub(crate) const NAME_BYTES: usize = MAX_ENDPOINT_NAME + 1;

/// How much of a received message [`Name::from_head`] reads: the kind and length bytes
/// and the longest name, rounded up to whole 8-byte words.
pub(crate) const HEAD_BYTES: usize = NAME_BYTES + 8;

impl Name {
    /// `bytes` as a name, if it is a valid endpoint name.
    pub(crate) fn new(bytes: &[u8]) -> Option<Name> {
        if !is_endpoint_name(bytes) {
            return None;
        }
        let mut raw = [0; NAME_BYTES];
        raw[..bytes.len()].copy_from_slice(bytes);
        raw[MAX_ENDPOINT_NAME] = bytes.len() as u8;
        Some(Name { raw })
    }

    /// The sender's name of a received message whose first [`HEAD_BYTES`] bytes are
    /// `head` (a kind byte, the name's length `len`, the name, then anything), if it is
    /// a valid endpoint name. A name equal to `known` (a name this function returned
    /// before, or [`Name::NONE`]) is returned without validating it again: an inbox
    /// sees the same few senders over and over (the caller keeps one `known` per
    /// sender pid slot). A name that validates becomes `known`.
    ///
    /// `head` is read in aligned 8-byte words, shifted into place, masked and compared
    /// with `known` in registers: the receive that calls this has just stored `head`
    /// with 16-byte stores, and a load across two of them would wait for both.
    #[inline]
    pub(crate) fn from_head(head: &[u8; HEAD_BYTES], len: usize, known: &mut Name) -> Option<Name> {
        if len == 0 || len > MAX_ENDPOINT_NAME {
            return None;
        }
        let word = |bytes: &[u8], j: usize| {
            u64::from_le_bytes(bytes[8 * j..8 * j + 8].try_into().unwrap())
        };
        let mut differs = 0;
        for i in 0..NAME_BYTES / 8 {
            // Bytes 8i..8i+8 of the name: head bytes 2+8i..10+8i.
            let w = (word(head, i) >> 16) | (word(head, i + 1) << 48);
            let kept = len.saturating_sub(8 * i).min(8);
            let mut w = if kept == 8 {
                w
            } else {
                w & ((1 << (8 * kept)) - 1)
            };
            if i == NAME_BYTES / 8 - 1 {
                w |= (len as u64) << 56; // the length byte, as `raw` keeps it
            }
            differs |= w ^ word(&known.raw, i);
        }
        if differs == 0 {
            return Some(*known);
        }
        let name = Name::new(&head[2..2 + len])?;
        *known = name;
        Some(name)
    }

    /// Whether this is the name `s`: the lengths, then the bytes in a few overlapping
    /// words, in registers and without a loop over bytes (a slice comparison called
    /// `memcmp`, 5 % of a 64-byte bus send and receive; a byte loop mispredicted).
    #[inline]
    pub(crate) fn is(&self, s: &str) -> bool {
        let a = s.as_bytes();
        let n = a.len();
        // A name's length byte is 1 to MAX_ENDPOINT_NAME (0 in `NONE`, which is no
        // name): an empty or longer `s` differs here.
        if n == 0 || n != usize::from(self.raw[MAX_ENDPOINT_NAME]) {
            return false;
        }
        let Some(b) = self.raw.get(..n) else {
            return false;
        };
        if n >= 8 {
            let word = |x: &[u8], at: usize| u64::from_ne_bytes(x[at..at + 8].try_into().unwrap());
            // The last 8 bytes, then whole words from the start (overlapping it).
            let mut differs = word(a, n - 8) ^ word(b, n - 8);
            for at in (0..n - 8).step_by(8) {
                differs |= word(a, at) ^ word(b, at);
            }
            differs == 0
        } else if n >= 4 {
            let word = |x: &[u8], at: usize| u32::from_ne_bytes(x[at..at + 4].try_into().unwrap());
            (word(a, 0) ^ word(b, 0)) | (word(a, n - 4) ^ word(b, n - 4)) == 0
        } else {
            (a[0] ^ b[0]) | (a[n / 2] ^ b[n / 2]) | (a[n - 1] ^ b[n - 1]) == 0
        }
    }

    /// No name: its length byte is 0, which no valid name has, so it equals none.
    pub(crate) const NONE: Name = Name {
        raw: [0; NAME_BYTES],
    };

    /// `name` as a `Name`, if it is a valid endpoint name.
    pub fn parse(name: &str) -> Option<Name> {
        Name::new(name.as_bytes())
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        let len = usize::from(self.raw[MAX_ENDPOINT_NAME]).min(MAX_ENDPOINT_NAME);
        &self.raw[..len]
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`), so this never fails.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Name` reads as the `str` it holds: `&name` where a `&str` is expected, `name.len()`.
impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Hashed and ordered as its `str`, so a `Name` key is found by a `&str`.
impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.is(other)
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.is(other)
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        other.is(self)
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        other.is(self)
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_exactly_the_strings_of_its_bytes() {
        let chars = b"abcdefghijklmnopqrstuvwxyz0123456789-_.";
        for len in 1..=MAX_ENDPOINT_NAME {
            let text: String = (0..len)
                .map(|i| chars[(i * 7 + len) % chars.len()] as char)
                .collect();
            let name = Name::parse(&text).unwrap();
            assert!(name.is(&text) && name == *text.as_str(), "{text}");
            // One byte changed anywhere, one byte fewer or more: another name.
            for at in 0..len {
                let mut other = text.clone().into_bytes();
                other[at] = if other[at] == b'a' { b'b' } else { b'a' };
                let other = String::from_utf8(other).unwrap();
                assert!(!name.is(&other), "{text} is not {other}");
            }
            assert!(!name.is(&text[..len - 1]), "{text}");
            assert!(!name.is(&format!("{text}a")), "{text}");
            assert!(!name.is(&format!("{text}\0")), "{text}");
        }
        assert!(!Name::NONE.is(""));
        assert!(!Name::parse("a").unwrap().is(&"a".repeat(200)));
    }

    #[test]
    fn bus_names_are_checked() {
        for good in ["/prod", "/a", "/x-y_z.1", &format!("/{}", "b".repeat(150))] {
            assert!(check_bus(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "/",
            "prod",
            "/a/b",
            "/..",
            "/.",
            "/sp ace",
            "/nul\0",
            &format!("/{}", "b".repeat(151)),
        ] {
            assert!(
                matches!(check_bus(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn endpoint_names_are_checked_and_held_inline() {
        for good in ["orders", "a", "svc-1.v2_x", &"n".repeat(63)] {
            assert!(check_endpoint(good).is_ok(), "{good:?}");
            assert_eq!(Name::new(good.as_bytes()).unwrap().as_str(), good);
        }
        for bad in ["", "a/b", "sp ace", "é", &"n".repeat(64)] {
            assert!(check_endpoint(bad).is_err(), "{bad:?}");
            assert!(Name::new(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_longest_inbox_name_fits_a_shared_memory_name_with_its_doorbell() {
        let bus = format!("/{}", "b".repeat(MAX_BUS_NAME));
        let inbox = inbox_name(&bus, &"n".repeat(MAX_ENDPOINT_NAME), u64::MAX);
        assert!(inbox.len() + ".bell".len() <= 255, "{}", inbox.len());
        assert_eq!(inbox_name("/prod", "orders", 7), "/prod.orders.g7");
    }

    #[test]
    fn an_inbox_name_matches_exactly_the_one_inbox_name_gives() {
        for (bus, name, g) in [
            ("/p", "o", 0),
            ("/prod", "orders", 7),
            ("/b.x", "n-1", u64::MAX),
        ] {
            let good = inbox_name(bus, name, g);
            assert!(
                is_inbox_name(good.as_bytes(), bus, name.as_bytes(), g),
                "{good}"
            );
            let mut longer = good.clone().into_bytes();
            longer.push(b'0');
            let shorter = &good.as_bytes()[..good.len() - 1];
            for bad in [
                &longer[..],
                shorter,
                b"",
                inbox_name(bus, name, g ^ 1).as_bytes(),
            ] {
                assert!(
                    !is_inbox_name(bad, bus, name.as_bytes(), g),
                    "{:?}",
                    String::from_utf8_lossy(bad)
                );
            }
            assert!(!is_inbox_name(good.as_bytes(), bus, b"other", g));
            assert!(!is_inbox_name(good.as_bytes(), "/q", name.as_bytes(), g));
        }
    }
}
