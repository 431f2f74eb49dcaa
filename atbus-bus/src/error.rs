//! The bus's one error type.

use std::fmt;
use std::io;

/// Everything that can go wrong on a bus. Each message says what happened and what to do.
///
/// The expected outcomes of the non-waiting and bounded calls are variants too:
/// [`Error::Empty`] (`try_recv`: nothing yet), [`Error::Full`] (`try_send_to`: no room
/// now) and [`Error::Timeout`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A bus or endpoint name is not usable.
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// `Bus::create` found a bus of that name already there.
    AlreadyExists {
        /// The bus name.
        bus: String,
    },
    /// No bus of that name exists.
    NotFound {
        /// The bus name.
        bus: String,
    },
    /// The directory object is not an atbus bus directory (wrong magic, not a regular
    /// object, or too small to hold a header).
    NotABus {
        /// The bus name.
        bus: String,
    },
    /// The creator has not finished initialising the directory.
    NotInitialized {
        /// The bus name.
        bus: String,
    },
    /// The directory was made by an incompatible build.
    Incompatible {
        /// The bus name.
        bus: String,
        /// What differs.
        reason: String,
    },
    /// A directory field holds a value no atbus-bus process writes.
    Corrupt {
        /// The bus name.
        bus: String,
        /// What is wrong, and where.
        reason: String,
    },
    /// Opening was refused: the directory belongs to another user or is writable by group
    /// or others, so whoever that is controls where this process's messages go.
    ForeignDirectory {
        /// The bus name.
        bus: String,
        /// The object's owner (from `fstat` on the opened descriptor).
        owner_uid: u32,
        /// The object's permission bits.
        mode: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The bus name is a symbolic link in /dev/shm, which is not followed.
    Symlink {
        /// The bus name.
        bus: String,
    },
    /// The directory's lock is held by a live process and was not released in time.
    LockBusy {
        /// The holder's pid.
        pid: u32,
    },
    /// Every record of the directory is in use by a live endpoint.
    DirectoryFull {
        /// Records in the directory.
        capacity: usize,
    },
    /// The endpoint name is held by a live process.
    NameTaken {
        /// The endpoint name.
        name: String,
        /// The process holding it.
        pid: u32,
    },
    /// No endpoint of that name is on the bus.
    NoSuchEndpoint {
        /// The endpoint name.
        name: String,
    },
    /// The peer left the bus or its process died (or it restarted as a new generation)
    /// while this call needed it.
    PeerGone {
        /// The endpoint name.
        name: String,
        /// The pid of the process that held it.
        pid: u32,
    },
    /// The bus was opened read-only (`Bus::open_read_only`): it cannot be changed.
    ReadOnly {
        /// The bus name.
        bus: String,
    },
    /// `reply` was given the envelope of a message that is not a request.
    NotARequest,
    /// No message is ready now.
    Empty,
    /// The destination's inbox has no room now. Nothing was sent.
    Full,
    /// The call did not complete in time.
    Timeout,
    /// A channel (an endpoint's inbox) failed.
    Channel(atbus::Error),
    /// Another operating-system error.
    Io {
        /// What was being done.
        op: &'static str,
        /// The bus name.
        bus: String,
        /// The error the system returned.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, bus: &str, source: io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound { bus: bus.into() },
            Some(libc::EEXIST) => Error::AlreadyExists { bus: bus.into() },
            Some(libc::ELOOP) => Error::Symlink { bus: bus.into() },
            _ => Error::Io {
                op,
                bus: bus.into(),
                source,
            },
        }
    }
}

impl From<atbus::Error> for Error {
    fn from(e: atbus::Error) -> Error {
        match e {
            atbus::Error::Empty => Error::Empty,
            atbus::Error::Full => Error::Full,
            atbus::Error::Timeout => Error::Timeout,
            other => Error::Channel(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => write!(f, "invalid name {name:?}: {reason}"),
            Error::AlreadyExists { bus } => write!(
                f,
                "bus {bus} already exists: open it, or unlink it first to create it anew"
            ),
            Error::NotFound { bus } => write!(
                f,
                "bus {bus} does not exist: create it first, or check the name"
            ),
            Error::NotABus { bus } => write!(
                f,
                "{bus} is not an atbus bus directory: check the name (a channel is not a bus)"
            ),
            Error::NotInitialized { bus } => write!(
                f,
                "bus {bus} is still being initialised by its creator: retry shortly; if its \
                 creator died, unlink the bus and create it again"
            ),
            Error::Incompatible { bus, reason } => write!(
                f,
                "bus {bus} was made by an incompatible atbus-bus: {reason}; recreate it with \
                 this version"
            ),
            Error::Corrupt { bus, reason } => write!(
                f,
                "bus directory {bus} is corrupt: {reason}; stop its processes, unlink the bus \
                 and create it again"
            ),
            Error::ForeignDirectory {
                bus,
                owner_uid,
                mode,
                euid,
            } => {
                let why = if owner_uid != euid {
                    format!("is owned by uid {owner_uid}, not by this process's user (uid {euid})")
                } else {
                    format!("is writable by users other than its owner uid {owner_uid}")
                };
                write!(
                    f,
                    "refusing to use bus {bus}: its directory {why} (mode {mode:04o}), so they \
                     control where messages go; if that is intended, open it with \
                     atbus_bus::OpenOptions::allow_foreign_owner(true), otherwise unlink it \
                     and create it again"
                )
            }
            Error::Symlink { bus } => write!(
                f,
                "bus {bus} is a symbolic link in /dev/shm, which is not followed: remove it"
            ),
            Error::LockBusy { pid } => write!(
                f,
                "the bus directory's lock is held by live process {pid} and was not released \
                 in time: retry; if that process is stopped (SIGSTOP, debugger), continue it"
            ),
            Error::DirectoryFull { capacity } => write!(
                f,
                "all {capacity} endpoint records of the bus are held by live processes: \
                 leave with some endpoints, or create the bus with a larger capacity"
            ),
            Error::NameTaken { name, pid } => write!(
                f,
                "endpoint name {name:?} is held by live process {pid}: choose another name, \
                 or stop that process first"
            ),
            Error::NoSuchEndpoint { name } => write!(
                f,
                "no endpoint {name:?} on the bus: check the name, or wait for it to join"
            ),
            Error::PeerGone { name, pid } => write!(
                f,
                "endpoint {name:?} (process {pid}) left the bus or died: retry once it has \
                 joined again"
            ),
            Error::ReadOnly { bus } => write!(
                f,
                "bus {bus} was opened read-only: open it with Bus::open to join or sweep"
            ),
            Error::NotARequest => write!(
                f,
                "reply needs the envelope of a request (kind Request); this message was \
                 data or a reply: answer requests only"
            ),
            Error::Empty => write!(f, "no message ready"),
            Error::Full => write!(
                f,
                "the destination's inbox is full: retry later, or use send_to or \
                 send_to_timeout, which wait for room"
            ),
            Error::Timeout => write!(f, "timed out"),
            Error::Channel(e) => write!(f, "inbox channel: {e}"),
            Error::Io { op, bus, source } => write!(f, "{op} {bus} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Channel(e) => Some(e),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
