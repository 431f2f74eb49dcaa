//! The bus directory: one shared-memory object per bus (`/dev/shm/prod` for bus `/prod`)
//! holding a header and a fixed array of endpoint records. This module owns the mapping
//! and all of the crate's `unsafe` but the tokio registration in `aio.rs`; it hands out typed views, reads records without a
//! lock (a per-record sequence word detects torn reads) and serialises changes on a lock
//! word that names its owner.
//!
//! # Layout (version 2, all fields little-endian atomics)
//!
//! Version 2 has version 1's layout. The version also stands for the bus's message
//! format: from version 2, payloads of 256 bytes and more follow a padded envelope
//! (`envelope.rs`), which a version-1 process would drop as malformed; it is refused at
//! open instead.
//!
//! Header, 128 bytes at offset 0:
//!
//! | offset | size | field             | meaning                                              |
//! |-------:|-----:|-------------------|------------------------------------------------------|
//! |      0 |    8 | `magic`           | `b"ATBUSDIR"`, stored last at creation (release)      |
//! |      8 |    4 | `version`         | [`VERSION`]                                          |
//! |     12 |    4 | `record_size`     | [`RECORD_SIZE`]                                      |
//! |     16 |    4 | `capacity`        | number of records, 1 to [`MAX_CAPACITY`]             |
//! |     20 |    4 | reserved          | 0                                                    |
//! |     24 |    8 | `epoch`           | bumped after every record change (cache check)       |
//! |     32 |    8 | `lock`            | 0 = free, else owner `pid \| start_time_low << 32`    |
//! |     40 |    8 | `lock_takeovers`  | times the lock was taken from a dead owner           |
//! |     48 |    8 | `next_generation` | last generation handed out (one counter per bus)     |
//! |     56 |    8 | `created_unix_ns` | creation time                                        |
//! |     64 |    8 | `last_sweep_ns`   | `CLOCK_MONOTONIC` time of the last periodic sweep     |
//! |     72 |   56 | reserved          | 0                                                    |
//!
//! Record `i`, [`RECORD_SIZE`] = 384 bytes at offset `128 + 384 * i`:
//!
//! | offset | size | field            | meaning                                               |
//! |-------:|-----:|------------------|-------------------------------------------------------|
//! |      0 |    8 | `seq`            | odd while the identity fields below are rewritten     |
//! |      8 |    4 | `state`          | 0 free, 1 claimed, 2 live, 3 leaving                  |
//! |     12 |    4 | `name_len`       | 1 to 63                                               |
//! |     16 |    4 | `owner_pid`      | the endpoint's process                                |
//! |     20 |    4 | `inbox_len`      | 1 to 255                                              |
//! |     24 |    8 | `owner_start`    | its start time (clock ticks after boot; 0 = unknown)  |
//! |     32 |    8 | `generation`     | unique per bus, never 0                               |
//! |     40 |    8 | `joined_unix_ns` | when the record was claimed                           |
//! |     48 |    8 | `left_generation`| last generation that left this record cleanly (watch) |
//! |     56 |    8 | reserved         | 0                                                     |
//! |     64 |   64 | `name`           | endpoint name bytes                                   |
//! |    128 |  256 | `inbox`          | inbox channel name, `BUS.NAME.gGENERATION`            |
//!
//! The object is `128 + 384 * capacity` bytes (98,432 for the default 256 records).
//!
//! # Concurrency
//! * **Identity fields** (name, owner, generation, joined-at, inbox) are written only by
//!   the lock holder, only while claiming a record, inside a seqlock write: `seq` made
//!   odd, fields stored, `state` set to claimed, `seq` made even again.
//! * **State** changes after the claim (claimed → live → leaving → free) are single
//!   stores of `state` by the lock holder; they do not touch `seq`.
//! * **Readers** take no lock: they load `seq` (acquire), skip an odd value, copy the
//!   fields, fence (acquire) and load `seq` again; a different value means a torn copy,
//!   read again. After [`READ_TRIES`] tries (a writer descheduled mid-claim, or one that
//!   died there) they take the lock once, which repairs the record, and read again.
//! * **The lock** is a compare-exchange of 0 to the caller's owner word. A holder that is
//!   judged dead ([`atbus::process::is_same_alive`]: pid plus start time, "cannot tell"
//!   counts as alive) is replaced by compare-exchange of its word, so exactly one taker
//!   wins. Every acquisition then repairs: a record whose `seq` is odd was being claimed
//!   by a holder that died mid-write; it had no inbox yet (inboxes are created after
//!   the claim), so it is simply marked free. A live holder that keeps the lock past
//!   [`LOCK_WAIT`] makes the caller fail with `LockBusy`, never hang.
//! * Every value read is untrusted: a state, length, generation or inbox name that no
//!   atbus-bus process writes is reported as [`Error::Corrupt`]; the inbox name must be
//!   exactly the one derived from bus, name and generation, so a scribbled record can
//!   never make a process open or unlink any other object.

use std::fs::File;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use atbus::{process, Backoff};
use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};
use crate::name::{self, Name};

/// `b"ATBUSDIR"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ATBUSDIR");
/// The layout (and message format) version this build reads and writes.
pub const VERSION: u32 = 2;
/// Bytes of the directory header.
pub const HEADER_SIZE: usize = 128;
/// Bytes of one endpoint record.
pub const RECORD_SIZE: usize = 384;
/// Records a bus has unless created with another capacity.
pub const DEFAULT_CAPACITY: usize = 256;
/// The most records a directory may have (a 24 MiB object).
pub const MAX_CAPACITY: usize = 65536;
/// Bytes of a record's name field.
pub const NAME_FIELD: usize = 64;
/// Bytes of a record's inbox-name field.
pub const INBOX_FIELD: usize = 256;

/// Record states.
pub mod state {
    /// Unused: the other fields mean nothing.
    pub const FREE: u32 = 0;
    /// Claimed by a joiner that is creating the inbox; not yet resolvable.
    pub const CLAIMED: u32 = 1;
    /// Joined: the inbox exists and takes messages.
    pub const LIVE: u32 = 2;
    /// Leaving or being reclaimed: the inbox is being unlinked.
    pub const LEAVING: u32 = 3;
}

/// Lock-free tries of a record before a reader falls back to the lock.
pub const READ_TRIES: u32 = 40;
/// How long the lock is waited for while a live process holds it.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long `open` waits for a creator that is still initialising the directory.
const INIT_WAIT: Duration = Duration::from_millis(200);

/// The directory header. All atomics: valid for any bits, shared with other processes.
#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    record_size: AtomicU32,
    capacity: AtomicU32,
    reserved_20: AtomicU32,
    epoch: AtomicU64,
    lock: AtomicU64,
    lock_takeovers: AtomicU64,
    next_generation: AtomicU64,
    created_unix_ns: AtomicU64,
    last_sweep_ns: AtomicU64,
    reserved_72: [AtomicU64; 7],
}

/// One endpoint record. All atomics: valid for any bits.
#[repr(C)]
pub struct Record {
    seq: AtomicU64,
    state: AtomicU32,
    name_len: AtomicU32,
    owner_pid: AtomicU32,
    inbox_len: AtomicU32,
    owner_start: AtomicU64,
    generation: AtomicU64,
    joined_unix_ns: AtomicU64,
    left_generation: AtomicU64,
    reserved_56: AtomicU64,
    name: [AtomicU64; NAME_FIELD / 8],
    inbox: [AtomicU64; INBOX_FIELD / 8],
}

/// Header field offsets (for tests and tools that read the object byte by byte).
pub mod offsets {
    #![allow(missing_docs)]
    use super::{offset_of, Header, Record};
    pub const MAGIC: usize = offset_of!(Header, magic);
    pub const VERSION: usize = offset_of!(Header, version);
    pub const RECORD_SIZE: usize = offset_of!(Header, record_size);
    pub const CAPACITY: usize = offset_of!(Header, capacity);
    pub const EPOCH: usize = offset_of!(Header, epoch);
    pub const LOCK: usize = offset_of!(Header, lock);
    pub const LOCK_TAKEOVERS: usize = offset_of!(Header, lock_takeovers);
    pub const NEXT_GENERATION: usize = offset_of!(Header, next_generation);
    pub const CREATED_UNIX_NS: usize = offset_of!(Header, created_unix_ns);
    pub const LAST_SWEEP_NS: usize = offset_of!(Header, last_sweep_ns);
    pub const R_SEQ: usize = offset_of!(Record, seq);
    pub const R_STATE: usize = offset_of!(Record, state);
    pub const R_NAME_LEN: usize = offset_of!(Record, name_len);
    pub const R_OWNER_PID: usize = offset_of!(Record, owner_pid);
    pub const R_INBOX_LEN: usize = offset_of!(Record, inbox_len);
    pub const R_OWNER_START: usize = offset_of!(Record, owner_start);
    pub const R_GENERATION: usize = offset_of!(Record, generation);
    pub const R_JOINED_UNIX_NS: usize = offset_of!(Record, joined_unix_ns);
    pub const R_LEFT_GENERATION: usize = offset_of!(Record, left_generation);
    pub const R_NAME: usize = offset_of!(Record, name);
    pub const R_INBOX: usize = offset_of!(Record, inbox);
}

const _: () = {
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(size_of::<Record>() == RECORD_SIZE);
    assert!(offsets::MAGIC == 0);
    assert!(offsets::VERSION == 8);
    assert!(offsets::RECORD_SIZE == 12);
    assert!(offsets::CAPACITY == 16);
    assert!(offsets::EPOCH == 24);
    assert!(offsets::LOCK == 32);
    assert!(offsets::LOCK_TAKEOVERS == 40);
    assert!(offsets::NEXT_GENERATION == 48);
    assert!(offsets::CREATED_UNIX_NS == 56);
    assert!(offsets::LAST_SWEEP_NS == 64);
    assert!(offsets::R_SEQ == 0);
    assert!(offsets::R_STATE == 8);
    assert!(offsets::R_NAME_LEN == 12);
    assert!(offsets::R_OWNER_PID == 16);
    assert!(offsets::R_INBOX_LEN == 20);
    assert!(offsets::R_OWNER_START == 24);
    assert!(offsets::R_GENERATION == 32);
    assert!(offsets::R_JOINED_UNIX_NS == 40);
    assert!(offsets::R_LEFT_GENERATION == 48);
    assert!(offsets::R_NAME == 64);
    assert!(offsets::R_INBOX == 128);
    assert!(RECORD_SIZE.is_multiple_of(8) && HEADER_SIZE.is_multiple_of(8));
};

/// The object size for `capacity` records.
pub fn object_size(capacity: usize) -> usize {
    HEADER_SIZE + RECORD_SIZE * capacity
}

/// The lock-word value for a process: pid and the low 32 bits of its start time (the
/// same packing as a channel's reader record).
pub fn owner_word(pid: u32, start_time: u64) -> u64 {
    u64::from(pid) | (u64::from(start_time as u32) << 32)
}

/// Splits a lock word into pid and the low 32 bits of the start time.
pub fn split_owner(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// A consistent copy of one record that is not free, checked field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Record index.
    pub index: usize,
    /// The record's `seq` when copied: identifies this claim of the record.
    pub seq: u64,
    /// [`state`] value (never `FREE`).
    pub state: u32,
    /// Endpoint name.
    pub name: Name,
    /// Owner pid.
    pub owner_pid: u32,
    /// Owner start time (clock ticks after boot; 0 = unknown).
    pub owner_start: u64,
    /// Generation.
    pub generation: u64,
    /// When the record was claimed, nanoseconds since the Unix epoch.
    pub joined_unix_ns: u64,
    /// The bus name, which the inbox channel's name starts with.
    pub(crate) bus: Arc<str>,
}

impl Snapshot {
    /// The endpoint's inbox channel name. The record stores it too; reads check that it
    /// is exactly [`inbox_name`](crate::inbox_name) of the bus, name and generation.
    pub fn inbox(&self) -> String {
        name::inbox_name(&self.bus, self.name.as_str(), self.generation)
    }

    /// Whether the owner process is alive, as far as can be told ("cannot tell" = alive).
    pub fn owner_alive(&self) -> bool {
        process::is_same_alive(self.owner_pid, self.owner_start as u32)
    }

    /// The lock word of the owner.
    pub fn owner_word(&self) -> u64 {
        owner_word(self.owner_pid, self.owner_start)
    }
}

/// Plain copies of a record's fields.
#[derive(Clone)]
struct RawRecord {
    seq: u64,
    state: u32,
    name_len: u32,
    owner_pid: u32,
    inbox_len: u32,
    owner_start: u64,
    generation: u64,
    joined_unix_ns: u64,
    name: [u8; NAME_FIELD],
    inbox: [u8; INBOX_FIELD],
}

impl RawRecord {
    const EMPTY: RawRecord = RawRecord {
        seq: 0,
        state: 0,
        name_len: 0,
        owner_pid: 0,
        inbox_len: 0,
        owner_start: 0,
        generation: 0,
        joined_unix_ns: 0,
        name: [0; NAME_FIELD],
        inbox: [0; INBOX_FIELD],
    };
}

/// A mapped, validated directory.
pub struct Directory {
    /// Shared with every [`Snapshot`] read from it (their inbox names derive from it).
    bus: Arc<str>,
    map: MmapRaw,
    /// Validated against the object's size at open; never re-read from the header.
    capacity: usize,
    /// This process's lock word.
    me: u64,
    /// This process's pid and full start time (0 = unknown), stored in claimed records.
    pid: u32,
    start: u64,
    /// Mapped `PROT_READ` (tools): the lock is never taken, nothing is ever written.
    read_only: bool,
    /// Owner uid and permission bits of the object, from `fstat` at open.
    owner: (u32, u32),
}

// SAFETY: the mapping is shared memory that other processes mutate anyway; every access
// goes through atomics on `&Header` / `&Record` views (sound for any bits), never `&mut`.
unsafe impl Send for Directory {}
// SAFETY: as above.
unsafe impl Sync for Directory {}

/// Refusal of an object this process should not trust, unless opted in.
fn check_owner(bus: &str, file: &File, allow_foreign: bool) -> Result<(u64, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().map_err(|e| Error::io("stat", bus, e))?;
    if !m.file_type().is_file() {
        return Err(Error::NotABus { bus: bus.into() });
    }
    let euid = nix::unistd::geteuid().as_raw();
    let mode = m.mode() & 0o7777;
    if !allow_foreign && (m.uid() != euid || mode & 0o022 != 0) {
        return Err(Error::ForeignDirectory {
            bus: bus.into(),
            owner_uid: m.uid(),
            mode,
            euid,
        });
    }
    Ok((m.size(), m.uid(), mode))
}

fn shm_open(bus: &str, flags: OFlag, mode: Mode) -> Result<File> {
    // glibc's shm_open adds O_NOFOLLOW: a symbolic link planted in /dev/shm fails with
    // ELOOP (reported as `Symlink`) instead of redirecting us.
    nix::sys::mman::shm_open(bus, flags, mode)
        .map(File::from)
        .map_err(|e| Error::io("open", bus, e.into()))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the host.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec() as u64)
    })
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Directory {
    /// Creates directory `bus` with `capacity` records, mode 0600. `AlreadyExists` if
    /// the name is taken. Leaves nothing behind on failure.
    pub fn create(bus: &str, capacity: usize) -> Result<Directory> {
        name::check_bus(bus)?;
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::InvalidName {
                name: bus.into(),
                reason: "a bus holds 1 to 65536 endpoint records",
            });
        }
        let file = shm_open(
            bus,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        )?;
        let made = Self::init(bus, &file, capacity);
        if made.is_err() {
            let _ = nix::sys::mman::shm_unlink(bus);
        }
        made
    }

    fn init(bus: &str, file: &File, capacity: usize) -> Result<Directory> {
        // The mode given to shm_open is filtered by the umask: set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("chmod", bus, e))?;
        let size = object_size(capacity);
        file.set_len(size as u64)
            .map_err(|e| Error::io("resize", bus, e))?;
        let map = MmapOptions::new()
            .len(size)
            .populate()
            .map_raw(file)
            .map_err(|e| Error::io("map", bus, e))?;
        let dir = Directory::new(bus, map, capacity);
        let h = dir.header();
        // Relaxed: nothing is visible to openers before the release store of the magic.
        // The object is fresh (ftruncate zero-fills), so every record is free, seq 0.
        let r = Ordering::Relaxed;
        h.version.store(VERSION, r);
        h.record_size.store(RECORD_SIZE as u32, r);
        h.capacity.store(capacity as u32, r);
        h.created_unix_ns.store(now_unix_ns(), r);
        // Release: an opener that acquires the magic sees the fields above.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(dir)
    }

    fn new(bus: &str, map: MmapRaw, capacity: usize) -> Directory {
        let (pid, start) = process::current();
        Directory {
            bus: bus.into(),
            map,
            capacity,
            me: owner_word(pid, start),
            pid,
            start,
            read_only: false,
            owner: (nix::unistd::geteuid().as_raw(), 0o600),
        }
    }

    /// Opens directory `bus`, validating its header against the object's size. Refuses an
    /// object owned by another user or writable by group or others unless
    /// `allow_foreign`.
    pub fn open(bus: &str, allow_foreign: bool) -> Result<Directory> {
        Self::open_with(bus, allow_foreign, false)
    }

    /// Opens directory `bus` read-only (`PROT_READ`), whoever owns it: for tools that
    /// only look. Reads never fall back to the lock; `lock` fails with `ReadOnly`.
    pub fn open_read_only(bus: &str) -> Result<Directory> {
        Self::open_with(bus, true, true)
    }

    fn open_with(bus: &str, allow_foreign: bool, read_only: bool) -> Result<Directory> {
        name::check_bus(bus)?;
        let flags = if read_only {
            OFlag::O_RDONLY
        } else {
            OFlag::O_RDWR
        };
        let file = shm_open(bus, flags, Mode::empty())?;
        let (size, uid, mode) = check_owner(bus, &file, allow_foreign)?;
        if size < HEADER_SIZE as u64 || size > object_size(MAX_CAPACITY) as u64 {
            return Err(Error::NotABus { bus: bus.into() });
        }
        let mut opts = MmapOptions::new();
        opts.len(size as usize);
        let map = if read_only {
            opts.map_raw_read_only(&file)
        } else {
            opts.map_raw(&file)
        }
        .map_err(|e| Error::io("map", bus, e))?;
        // Capacity 0 until validated: `header` needs none, `record` is never called.
        let mut dir = Directory::new(bus, map, 0);
        dir.read_only = read_only;
        dir.owner = (uid, mode);
        let h = dir.header();
        let deadline = Instant::now() + INIT_WAIT;
        let magic = loop {
            // Acquire: pairs with the creator's release store of the magic.
            let m = h.magic.load(Ordering::Acquire);
            if m != 0 || Instant::now() >= deadline {
                break m;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if magic == 0 {
            return Err(Error::NotInitialized { bus: bus.into() });
        }
        if magic != MAGIC {
            return Err(Error::NotABus { bus: bus.into() });
        }
        let incompatible = |reason: String| {
            Err(Error::Incompatible {
                bus: bus.into(),
                reason,
            })
        };
        // Relaxed: written before the magic, which we acquired.
        let version = h.version.load(Ordering::Relaxed);
        if version != VERSION {
            return incompatible(format!(
                "directory layout version {version}, this build reads {VERSION}"
            ));
        }
        let record_size = h.record_size.load(Ordering::Relaxed);
        if record_size as usize != RECORD_SIZE {
            return incompatible(format!(
                "record size {record_size}, this build uses {RECORD_SIZE}"
            ));
        }
        let capacity = h.capacity.load(Ordering::Relaxed) as usize;
        if capacity == 0 || capacity > MAX_CAPACITY || object_size(capacity) as u64 != size {
            return Err(Error::Corrupt {
                bus: bus.into(),
                reason: format!(
                    "header says {capacity} records, which does not match the object's \
                     {size} bytes"
                ),
            });
        }
        dir.capacity = capacity;
        Ok(dir)
    }

    /// The bus name.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Records in the directory.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// This process's lock word.
    pub fn me(&self) -> u64 {
        self.me
    }

    /// The object's owner uid and permission bits, from `fstat` at open.
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// Whether this handle maps the directory read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (create sizes it so, open
        // checks the object's size) and page aligned; `Header` is all atomics, valid for
        // any bits, so a shared reference is sound while other processes write it. The
        // mapping lives as long as `self`.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn record(&self, index: usize) -> &Record {
        assert!(index < self.capacity, "record index out of bounds");
        // SAFETY: index < capacity, and the mapping holds HEADER_SIZE + capacity *
        // RECORD_SIZE bytes (checked at open, sized so at create), so the record lies
        // inside it; offsets are multiples of 8 from a page-aligned base, so aligned for
        // `Record`'s atomics, which are valid for any bits.
        unsafe {
            &*(self
                .map
                .as_ptr()
                .add(HEADER_SIZE + index * RECORD_SIZE)
                .cast::<Record>())
        }
    }

    /// The change counter.
    pub fn epoch(&self) -> u64 {
        // Acquire: a sender that sees a new epoch then sees the record changes before it.
        self.header().epoch.load(Ordering::Acquire)
    }

    /// The last generation that left record `index` cleanly (0 if none; untrusted: a
    /// hint for [`Watch`](crate::Watch)'s clean-or-died verdict only).
    pub fn left_generation(&self, index: usize) -> u64 {
        if index >= self.capacity {
            return 0;
        }
        // Acquire: pairs with the leaver's release store, made before it freed the record.
        self.record(index).left_generation.load(Ordering::Acquire)
    }

    /// Whether a periodic sweep is due (none for `period` by any process) and this
    /// caller won the right to run it: one compare-exchange of the header's
    /// `last_sweep_ns`, so of many processes waiting on the bus one sweeps per period.
    /// A time in the future (scribbled) counts as due.
    pub fn claim_sweep(&self, period: Duration) -> bool {
        if self.read_only {
            return false;
        }
        let now = monotonic_ns();
        let last_sweep = &self.header().last_sweep_ns;
        // Relaxed: only a time stamp; the sweep itself takes the lock for any change.
        let last = last_sweep.load(Ordering::Relaxed);
        if now.wrapping_sub(last) < period.as_nanos() as u64 {
            return false;
        }
        last_sweep
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The lock word now (0 = free).
    pub fn lock_word(&self) -> u64 {
        self.header().lock.load(Ordering::Relaxed)
    }

    /// Times the lock was taken over from a dead owner.
    pub fn lock_takeovers(&self) -> u64 {
        self.header().lock_takeovers.load(Ordering::Relaxed)
    }

    /// One seqlock read of record `index` into `raw` (reused: a record is 400 bytes to
    /// copy; only what the lengths cover is written); `false` when torn (odd or changed
    /// `seq`).
    fn read_once(&self, index: usize, raw: &mut RawRecord) -> bool {
        let rec = self.record(index);
        // Acquire: pairs with the writer's release store of the even seq, so the fields
        // read below are at least those of that claim.
        let seq = rec.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return false;
        }
        let r = Ordering::Relaxed;
        raw.seq = seq;
        raw.state = rec.state.load(r);
        raw.name_len = rec.name_len.load(r);
        raw.owner_pid = rec.owner_pid.load(r);
        raw.inbox_len = rec.inbox_len.load(r);
        raw.owner_start = rec.owner_start.load(r);
        raw.generation = rec.generation.load(r);
        raw.joined_unix_ns = rec.joined_unix_ns.load(r);
        // A free record's other fields mean nothing: skip copying them. Of the name and
        // inbox fields, only the words their (untrusted, so clamped) lengths cover: the
        // rest is never looked at.
        if raw.state != state::FREE {
            let words = |len: u32, field: usize| (len as usize).min(field).div_ceil(8);
            for (i, w) in rec
                .name
                .iter()
                .take(words(raw.name_len, NAME_FIELD))
                .enumerate()
            {
                raw.name[i * 8..i * 8 + 8].copy_from_slice(&w.load(r).to_le_bytes());
            }
            for (i, w) in rec
                .inbox
                .iter()
                .take(words(raw.inbox_len, INBOX_FIELD))
                .enumerate()
            {
                raw.inbox[i * 8..i * 8 + 8].copy_from_slice(&w.load(r).to_le_bytes());
            }
        }
        // Acquire fence: the relaxed loads above are ordered before the re-load of seq;
        // if any of them saw a store of a later claim, that claim's odd seq store
        // (ordered before its field stores by its release fence) is visible now.
        fence(Ordering::Acquire);
        rec.seq.load(Ordering::Relaxed) == seq
    }

    /// Checks a consistent copy: `None` for a free record, the snapshot for a valid one,
    /// `Corrupt` for values no atbus-bus process writes.
    fn validate(&self, index: usize, raw: &RawRecord) -> Result<Option<Snapshot>> {
        let corrupt = |what: String| {
            Err(Error::Corrupt {
                bus: self.bus.to_string(),
                reason: format!("record {index}: {what}"),
            })
        };
        match raw.state {
            state::FREE => return Ok(None),
            state::CLAIMED | state::LIVE | state::LEAVING => {}
            other => return corrupt(format!("state {other} is none of 0 to 3")),
        }
        let name_len = raw.name_len as usize;
        let Some(name) = raw.name.get(..name_len).and_then(Name::new) else {
            return corrupt(format!("name of {name_len} bytes is not a valid name"));
        };
        if raw.generation == 0 {
            return corrupt("generation 0".into());
        }
        let inbox_len = raw.inbox_len as usize;
        let inbox = raw.inbox.get(..inbox_len).unwrap_or(&[]);
        if !name::is_inbox_name(inbox, &self.bus, name.as_bytes(), raw.generation) {
            let expected = name::inbox_name(&self.bus, name.as_str(), raw.generation);
            return corrupt(format!(
                "inbox name is not {expected:?}, the one its name and generation give"
            ));
        }
        Ok(Some(Snapshot {
            index,
            seq: raw.seq,
            state: raw.state,
            name,
            owner_pid: raw.owner_pid,
            owner_start: raw.owner_start,
            generation: raw.generation,
            joined_unix_ns: raw.joined_unix_ns,
            bus: self.bus.clone(),
        }))
    }

    /// Reads record `index` without the lock: `None` if it is free. Retries torn copies;
    /// after [`READ_TRIES`] falls back to taking the lock once (which repairs a record
    /// left mid-claim by a dead process) and reads again. Never hangs: bounded by the
    /// tries and [`LOCK_WAIT`].
    pub fn read(&self, index: usize) -> Result<Option<Snapshot>> {
        let mut raw = RawRecord::EMPTY;
        self.read_with(index, &mut raw)
    }

    /// [`read`](Directory::read), with the caller's scratch copy.
    fn read_with(&self, index: usize, raw: &mut RawRecord) -> Result<Option<Snapshot>> {
        if index >= self.capacity {
            return Ok(None);
        }
        let mut backoff = Backoff::new();
        for _ in 0..READ_TRIES {
            if self.read_once(index, raw) {
                return self.validate(index, raw);
            }
            backoff.snooze();
        }
        if self.read_only {
            return Err(Error::Corrupt {
                bus: self.bus.to_string(),
                reason: format!(
                    "record {index} stayed mid-update through {READ_TRIES} reads (a writer \
                     descheduled or dead mid-claim; the next join repairs it)"
                ),
            });
        }
        let guard = self.lock()?;
        guard.read(index)
    }

    /// Every record that is not free, in index order.
    pub fn snapshot(&self) -> Result<Vec<Snapshot>> {
        let mut all = Vec::with_capacity(self.records_in_use());
        self.for_each_record(|s| all.push(s))?;
        Ok(all)
    }

    /// How many records are not free now: a relaxed count to size a vector, which may
    /// be out of date by the time the records are read.
    pub fn records_in_use(&self) -> usize {
        (0..self.capacity)
            .filter(|&i| self.record(i).state.load(Ordering::Relaxed) != state::FREE)
            .count()
    }

    /// Hands every record that is not free to `f`, in index order, read as
    /// [`snapshot`](Directory::snapshot) reads them, without collecting them.
    pub fn for_each_record(&self, mut f: impl FnMut(Snapshot)) -> Result<()> {
        let mut raw = RawRecord::EMPTY;
        for i in 0..self.capacity {
            if let Some(s) = self.read_with(i, &mut raw)? {
                f(s);
            }
        }
        Ok(())
    }

    /// The live record named `name`, if any (lock-free).
    pub fn resolve(&self, name: &str) -> Result<Option<Snapshot>> {
        for i in 0..self.capacity {
            // Relaxed pre-check: a record that is free now is not what we look for (a
            // record being claimed now is not live yet either). Saves the copy.
            if self.record(i).state.load(Ordering::Relaxed) == state::FREE {
                continue;
            }
            if let Some(s) = self.read(i)? {
                if s.state == state::LIVE && s.name.is(name) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// Takes the directory lock: waits while a live process holds it (up to
    /// [`LOCK_WAIT`], then `LockBusy`), takes it over from a dead holder, then repairs
    /// records left mid-claim.
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        if self.read_only {
            return Err(Error::ReadOnly {
                bus: self.bus.to_string(),
            });
        }
        let lock = &self.header().lock;
        let deadline = Instant::now() + crate::fault::lock_wait();
        let mut backoff = Backoff::new();
        loop {
            // Acquire (load and successful CAS): the previous holder's record stores,
            // made before its release of the lock, are visible to us.
            let current = lock.load(Ordering::Acquire);
            if current == 0 {
                if lock
                    .compare_exchange(0, self.me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            let (pid, start_low) = split_owner(current);
            if current != self.me && !process::is_same_alive(pid, start_low) {
                // Exactly one taker replaces the dead holder's word.
                if lock
                    .compare_exchange(current, self.me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.header().lock_takeovers.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::LockBusy { pid });
            }
            backoff.snooze();
        }
        let guard = LockGuard { dir: self };
        guard.repair();
        Ok(guard)
    }
}

/// The directory lock, held. Released on drop. Only the holder writes records.
pub struct LockGuard<'d> {
    dir: &'d Directory,
}

impl LockGuard<'_> {
    /// Marks free every record whose `seq` is odd: with the lock held nobody else is
    /// writing one, so an odd `seq` was left by a holder that died mid-claim (before it
    /// created an inbox) or by a scribbler.
    fn repair(&self) {
        let mut repaired = false;
        for i in 0..self.dir.capacity {
            let rec = self.dir.record(i);
            let seq = rec.seq.load(Ordering::Relaxed);
            if seq & 1 == 1 {
                rec.state.store(state::FREE, Ordering::Relaxed);
                // Release: readers that see the even seq see the record free.
                rec.seq.store(seq.wrapping_add(1), Ordering::Release);
                repaired = true;
            }
        }
        if repaired {
            self.bump_epoch();
        }
    }

    /// Reads record `index` under the lock (nobody else writes it): `None` if free.
    pub fn read(&self, index: usize) -> Result<Option<Snapshot>> {
        if index >= self.dir.capacity {
            return Ok(None);
        }
        let mut raw = RawRecord::EMPTY;
        match self.dir.read_once(index, &mut raw) {
            true => self.dir.validate(index, &raw),
            // Only a process writing without the lock (a scribbler) can cause this.
            false => Err(Error::Corrupt {
                bus: self.dir.bus.to_string(),
                reason: format!("record {index} changes while the lock is held"),
            }),
        }
    }

    /// Hands out the next generation.
    pub fn next_generation(&self) -> Result<u64> {
        let h = self.dir.header();
        // Relaxed: only the lock holder writes it; the lock orders holders.
        let last = h.next_generation.load(Ordering::Relaxed);
        let Some(next) = last.checked_add(1) else {
            return Err(Error::Corrupt {
                bus: self.dir.bus.to_string(),
                reason: "the generation counter is exhausted".into(),
            });
        };
        h.next_generation.store(next, Ordering::Relaxed);
        Ok(next)
    }

    /// Claims free record `index` for `name` (seqlock write of the identity fields, state
    /// `CLAIMED`). Returns the record's new (even) `seq`.
    pub fn claim(&self, index: usize, name: &str, generation: u64, inbox: &str) -> u64 {
        let rec = self.dir.record(index);
        let (pid, start) = (self.dir.pid, self.dir.start);
        let odd = rec.seq.load(Ordering::Relaxed) | 1;
        rec.seq.store(odd, Ordering::Relaxed);
        // Release fence: the odd seq is ordered before the field stores below, so a
        // reader that copies any of them sees the odd seq on its re-check.
        fence(Ordering::Release);
        let r = Ordering::Relaxed;
        rec.name_len.store(name.len() as u32, r);
        store_bytes(&rec.name, name.as_bytes());
        crate::fault::point(crate::fault::CrashPoint::JoinMidClaim);
        rec.owner_pid.store(pid, r);
        rec.owner_start.store(start, r);
        rec.generation.store(generation, r);
        rec.joined_unix_ns.store(now_unix_ns(), r);
        rec.inbox_len.store(inbox.len() as u32, r);
        store_bytes(&rec.inbox, inbox.as_bytes());
        rec.state.store(state::CLAIMED, r);
        let even = odd.wrapping_add(1);
        // Release: a reader that acquires the even seq sees every field above.
        rec.seq.store(even, Ordering::Release);
        even
    }

    /// Sets record `index`'s state.
    pub fn set_state(&self, index: usize, to: u32) {
        // Release: a state word is a single store readers take as it is; release orders
        // it after the inbox creation or unlink that preceded it, for readers that
        // acquire the epoch bumped after it.
        self.dir.record(index).state.store(to, Ordering::Release);
    }

    /// Notes that generation `generation` leaves record `index` cleanly (before it is
    /// freed): a watcher that finds the record gone tells a clean leave from a death.
    pub fn mark_left(&self, index: usize, generation: u64) {
        // Release: a watcher that acquires it after finding the record free or reused
        // sees it (the hint only; nothing else depends on it).
        self.dir
            .record(index)
            .left_generation
            .store(generation, Ordering::Release);
    }

    /// Bumps the epoch so cached resolutions look again.
    pub fn bump_epoch(&self) {
        // Release: a sender that acquires the new epoch sees the change before it.
        self.dir.header().epoch.fetch_add(1, Ordering::Release);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Release: our record stores happen-before the next holder's acquire. Fails only
        // if someone took the lock from us (judged us dead, or scribbled): leave theirs.
        let _ = self.dir.header().lock.compare_exchange(
            self.dir.me,
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

/// Stores `bytes` into `words`, zero-padded.
fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let mut chunk = [0u8; 8];
        let from = (i * 8).min(bytes.len());
        let to = (i * 8 + 8).min(bytes.len());
        chunk[..to - from].copy_from_slice(&bytes[from..to]);
        w.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
    }
}
