//! The channel handle: create, open, unlink, and hand out writers and the reader.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::reader::Reader;
use crate::ring;
use crate::segment::{self, Segment};
use crate::stats::Stats;
use crate::sync::atomic::Ordering;
use crate::view::SegmentView;
use crate::writer::Writer;

/// A channel: one mapped segment. Cheap to clone; writers and the reader keep the
/// mapping alive after the channel handle is dropped.
///
/// ```
/// # let name = format!("/atbus-doc-channel-{}", std::process::id());
/// use atbus::{Channel, Config, Error};
/// let config = Config::builder().node_size(256).build()?;
/// let channel = Channel::create(&name, 1 << 20, &config)?;
/// assert_eq!(channel.node_size(), 256);
/// assert!(matches!(Channel::create(&name, 1 << 20, &config), Err(Error::AlreadyExists { .. })));
/// let again = Channel::open(&name)?;
/// assert_eq!(again.node_count(), channel.node_count());
/// Channel::unlink(&name)?;
/// assert!(matches!(Channel::open(&name), Err(Error::NotFound { .. })));
/// # Ok::<(), atbus::Error>(())
/// ```
#[derive(Clone)]
pub struct Channel {
    seg: Arc<Segment>,
}

impl Channel {
    /// Creates channel `name` of `size` bytes (including the header and node heads).
    ///
    /// `name` is a POSIX shared-memory name (`"/orders"`: one leading slash, no other) or
    /// a file path with a slash in it (`"./orders"`, `"/dev/hugepages/orders"`: on tmpfs
    /// or hugetlbfs). A name without a slash (`"orders"`) is refused with
    /// `InvalidName`, which says how to write either. The memory is reserved and pre-faulted
    /// now, so a too-small `/dev/shm` fails here with [`Error::NoSpace`](crate::Error)
    /// rather than with SIGBUS later. Fails with `AlreadyExists` if the name is taken.
    pub fn create(name: &str, size: usize, config: &Config) -> Result<Channel> {
        Ok(Channel {
            seg: Arc::new(Segment::create(name, size, config)?),
        })
    }

    /// Opens an existing channel, validating its header against the object's real size.
    /// Waits up to 200 ms for a creator that is still initialising it, then fails with
    /// `NotInitialized`.
    ///
    /// Refuses with [`Error::ForeignSegment`](crate::Error) an object owned by another
    /// user, or writable by group or others: whoever that is controls the memory this
    /// process sends into. [`OpenOptions`] opts in. Same as `OpenOptions::new().open(name)`.
    pub fn open(name: &str) -> Result<Channel> {
        OpenOptions::new().open(name)
    }

    /// Removes channel `name` (and its reader's doorbell FIFO, if a reader created one).
    /// Processes that have it open keep working on the old memory; the name can be
    /// created anew at once.
    pub fn unlink(name: &str) -> Result<()> {
        let unlinked = segment::unlink(name);
        crate::doorbell::unlink(name);
        unlinked
    }

    /// A new writer handle.
    pub fn writer(&self) -> Writer {
        Writer::new(self.seg.clone())
    }

    /// Takes the reader role. `ReaderBusy` if a live process holds it; the role of a
    /// process that no longer exists is taken over.
    pub fn reader(&self) -> Result<Reader> {
        Reader::new(self.seg.clone())
    }

    /// A snapshot of the shared counters.
    pub fn stats(&self) -> Stats {
        Stats::read(self.seg.header())
    }

    /// The name the channel was opened by.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The channel's id: random, chosen when the channel was created, the same in every
    /// process that opens it. With a message's sequence ([`Meta::seq`](crate::Meta)) it
    /// names that message uniquely (the NATS bridge's message ids are built this way).
    pub fn id(&self) -> u64 {
        // Relaxed: written once at creation, before the segment was marked initialised
        // (which opening acquires).
        self.seg.header().channel_id.load(Ordering::Relaxed)
    }

    /// Bytes per node.
    pub fn node_size(&self) -> usize {
        self.seg.geometry().node_size
    }

    /// Nodes in the ring.
    pub fn node_count(&self) -> u64 {
        self.seg.geometry().node_count
    }

    /// The largest message this channel accepts: half the usable ring, so a message
    /// always fits after the padding at the end of the ring.
    pub fn max_message_len(&self) -> usize {
        ring::max_payload(&self.seg)
    }

    /// The torn-block timeout the channel was created with.
    pub fn timeout(&self) -> std::time::Duration {
        self.seg.settings().timeout
    }
}

/// How to open an existing channel. [`Channel::open`] is `OpenOptions::new().open(name)`.
///
/// ```
/// # let name = format!("/atbus-doc-open-options-{}", std::process::id());
/// use atbus::{Channel, Config, OpenOptions};
/// let config = Config::builder().mode(0o660).allow_shared_mode(true).build()?;
/// let _created = Channel::create(&name, 1 << 20, &config)?;
/// // Group-writable: refused by default, opened after an explicit opt-in.
/// assert!(matches!(Channel::open(&name), Err(atbus::Error::ForeignSegment { .. })));
/// let channel = OpenOptions::new().allow_foreign_owner(true).open(&name)?;
/// channel.writer().send(b"trusted")?;
/// # Channel::unlink(&name)?;
/// # Ok::<(), atbus::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    allow_foreign_owner: bool,
}

impl OpenOptions {
    /// The defaults: refuse another user's object, or one that others may write.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Open the channel even if its object is owned by another user than this
    /// process's effective uid, or writable by group or others. Only for channels
    /// shared between users on purpose (created with
    /// [`Config::allow_shared_mode`](crate::Config::allow_shared_mode)): every user who
    /// may write the object can forge what the reader receives and can shrink it, which
    /// kills every process that has it mapped with SIGBUS. See docs/security.md.
    pub fn allow_foreign_owner(&mut self, allow: bool) -> &mut OpenOptions {
        self.allow_foreign_owner = allow;
        self
    }

    /// Opens channel `name` read-write with these options (see [`Channel::open`]).
    pub fn open(&self, name: &str) -> Result<Channel> {
        Ok(Channel {
            seg: Arc::new(Segment::open(name, self.allow_foreign_owner)?),
        })
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name())
            .field("node_size", &self.node_size())
            .field("node_count", &self.node_count())
            .finish()
    }
}
