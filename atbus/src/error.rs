//! The crate's one error type.

use std::fmt;
use std::io;

/// Everything that can go wrong in atbus. Each message says what happened and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The channel name is neither a POSIX shared-memory name nor a usable file path.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    InvalidConfig {
        /// What is wrong, with the value.
        reason: String,
    },
    /// `create` found a channel of that name already there.
    AlreadyExists {
        /// The channel name.
        name: String,
    },
    /// No channel of that name exists.
    NotFound {
        /// The channel name.
        name: String,
    },
    /// The operating system refused access to the channel.
    PermissionDenied {
        /// The channel name.
        name: String,
    },
    /// The file system holding the channel has no room for it.
    NoSpace {
        /// The channel name.
        name: String,
        /// Bytes requested.
        size: u64,
    },
    /// Another operating-system error.
    Io {
        /// What atbus was doing.
        op: &'static str,
        /// The channel name.
        name: String,
        /// The error the system returned.
        source: io::Error,
    },
    /// The object is smaller than its header says, or too small to be a segment.
    Truncated {
        /// The channel name.
        name: String,
        /// The object's real size.
        actual: u64,
        /// The size the header (or the minimum layout) requires.
        expected: u64,
    },
    /// The object does not start with the atbus magic.
    NotAtbus {
        /// The channel name.
        name: String,
    },
    /// The creator has not finished initialising the segment (its magic is not set yet).
    NotInitialized {
        /// The channel name.
        name: String,
    },
    /// The segment was made by an incompatible atbus build.
    Incompatible {
        /// The channel name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// A header field or a cursor holds a value no atbus process writes.
    Corrupt {
        /// The channel name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The ring has no room for the message now. Nothing was written.
    Full,
    /// No message is ready now.
    Empty,
    /// The operation did not complete within its timeout.
    Timeout,
    /// The message can never fit in this ring.
    TooLarge {
        /// The message length.
        len: usize,
        /// The largest payload this ring accepts.
        max: usize,
    },
    /// The caller's buffer is smaller than the next message, which stays in the ring.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// A live process holds the reader role.
    ReaderBusy {
        /// Its process id.
        pid: u32,
    },
    /// A message read in place failed its crc32c check after the closure saw it: a writer
    /// that had stalled past the timeout wrote into its nodes. The message is lost
    /// (counted in `crc_failures`); undo whatever the closure did with it.
    Damaged,
    /// This writer stalled past the torn-block timeout while writing; the reader skipped
    /// its block, so the message was not delivered.
    Abandoned {
        /// The block's operation sequence.
        seq: u64,
    },
    /// Opening for writing was refused: the object belongs to another user, or users
    /// other than its owner may write it, so whoever that is controls the memory this
    /// process would send into. Opt in with
    /// [`OpenOptions::allow_foreign_owner`](crate::OpenOptions::allow_foreign_owner).
    ForeignSegment {
        /// The channel name.
        name: String,
        /// The object's owner (from `fstat` on the opened descriptor).
        owner_uid: u32,
        /// The owner's user name, when the user database knows it.
        owner_name: Option<String>,
        /// The object's permission bits.
        mode: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// A file path named a symbolic link (its last component), which atbus does not
    /// follow: in a shared directory another user could plant one to point elsewhere.
    Symlink {
        /// The channel name.
        name: String,
    },
    /// Another process took the reader role from this reader (it judged this process
    /// dead, or a peer overwrote the role record). This reader stopped: it consumes no
    /// more messages and leaves the read cursor to the new owner.
    ReaderRoleLost {
        /// The reader-role record found: the new owner's pid (0 if nobody holds it).
        pid: u32,
    },
    /// [`Reader::commit`](crate::Reader::commit) was given a position outside what it
    /// may hand back: from the last commit to the reader's current position.
    InvalidCommit {
        /// The position given.
        position: u64,
        /// The last committed position (the lowest allowed).
        committed: u64,
        /// The reader's position (the highest allowed).
        received: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, name: &str, source: io::Error) -> Error {
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name: name.into() },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name: name.into() },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name: name.into() },
            _ => Error::Io {
                op,
                name: name.into(),
                source,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => write!(
                f,
                "invalid channel name {name:?}: {reason}; use a shared-memory name like \
                 \"/orders\" or a file path like /dev/shm/orders"
            ),
            Error::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            Error::AlreadyExists { name } => write!(
                f,
                "channel {name} already exists: open it, or unlink it first to create it anew"
            ),
            Error::NotFound { name } => write!(
                f,
                "channel {name} does not exist: create it first, or check the name"
            ),
            Error::PermissionDenied { name } => write!(
                f,
                "permission denied on channel {name}: run as its owner or create it with a \
                 wider mode"
            ),
            Error::NoSpace { name, size } => write!(
                f,
                "no room for channel {name} of {size} bytes: the file system holding it \
                 (/dev/shm for shared-memory names) is too small; enlarge it (e.g. \
                 `docker run --shm-size`) or ask for a smaller channel"
            ),
            Error::Io { op, name, source } => write!(f, "{op} {name} failed: {source}"),
            Error::Truncated {
                name,
                actual,
                expected,
            } => write!(
                f,
                "segment {name} is {actual} bytes, header says {expected}: not an atbus \
                 segment or truncated"
            ),
            Error::NotAtbus { name } => write!(
                f,
                "{name} is not an atbus segment (no atbus magic at offset 0)"
            ),
            Error::NotInitialized { name } => write!(
                f,
                "segment {name} is still being initialised by its creator (no magic yet): \
                 retry shortly; if its creator died, unlink it and create it again"
            ),
            Error::Incompatible { name, reason } => write!(
                f,
                "segment {name} was made by an incompatible atbus: {reason}; recreate it with \
                 this version"
            ),
            Error::Corrupt { name, reason } => write!(
                f,
                "segment {name} is corrupt: {reason}; inspect it with atbus-dump, then \
                 recreate it"
            ),
            Error::Full => write!(f, "channel is full: retry later, or use send or send_timeout, which wait for the reader to free space"),
            Error::Empty => write!(f, "no message ready"),
            Error::Timeout => write!(f, "timed out"),
            Error::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes can never fit: this channel takes at most {max} bytes; \
                 create a larger channel"
            ),
            Error::BufferTooSmall { needed } => write!(
                f,
                "buffer too small: the next message is {needed} bytes and stays in the ring; \
                 call again with a larger buffer"
            ),
            Error::ReaderBusy { pid } => write!(
                f,
                "the reader role is held by live process {pid}: a channel has one reader"
            ),
            Error::Damaged => write!(
                f,
                "message changed while it was read in place (a writer stalled past the \
                 timeout wrote into it): discard what was done with it; it is counted as a \
                 crc failure"
            ),
            Error::Abandoned { seq } => write!(
                f,
                "message (sequence {seq}) not delivered: this writer stalled past the \
                 torn-block timeout and the reader skipped its block; send it again"
            ),
            Error::ForeignSegment {
                name,
                owner_uid,
                owner_name,
                mode,
                euid,
            } => {
                let who = match owner_name {
                    Some(user) => format!("uid {owner_uid} ({user})"),
                    None => format!("uid {owner_uid}"),
                };
                let why = if owner_uid != euid {
                    format!("is owned by {who}, not by this process's user (uid {euid})")
                } else {
                    format!("is writable by users other than its owner {who}")
                };
                write!(
                    f,
                    "refusing to write to channel {name}: it {why} (mode {mode:04o}), so \
                     they control what this process would send; if that is intended, \
                     open it with atbus::OpenOptions::allow_foreign_owner(true) \
                     (C: atbus_open_ex with ATBUS_OPEN_ALLOW_FOREIGN; atbus-dump: \
                     --allow-foreign), otherwise unlink it and create it again"
                )
            }
            Error::Symlink { name } => write!(
                f,
                "channel path {name} is a symbolic link: atbus does not follow one (another \
                 user could plant it in a shared directory to redirect writers); use the \
                 path it points to"
            ),
            Error::ReaderRoleLost { pid } => write!(
                f,
                "this reader lost the reader role (the record now names process {pid}, \
                 which judged this one dead or overwrote the record): it stopped \
                 consuming; drop it, and take the role again only once the other reader \
                 is gone"
            ),
            Error::InvalidCommit {
                position,
                committed,
                received,
            } => write!(
                f,
                "cannot commit position {position}: a commit hands back what was received \
                 since the last one, positions {committed} to {received}; pass \
                 `Reader::position()` as it was after the last message to hand back"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
