//! The mapping: create, open, validate and unlink a segment, and hand out typed views of
//! its header, node heads and data area. This module and `copy` hold the crate's unsafe
//! code; the ring protocol above is written against the views.
//!
//! The size of a segment is fixed at creation. It is mapped once, for the life of the
//! handle, and never resized or remapped: a pointer into it stays valid as long as the
//! `Segment` lives.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::config::Config;
use crate::copy::copy_bytes;
use crate::crc::Crc32c;
use crate::error::{Error, Result};
use crate::layout::{self, BlockHeader, Geometry, Header, NodeState, HEADER_SIZE};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::view::SegmentView;
pub use crate::view::Settings;

/// How long `open` waits for a creator that is still initialising a segment.
pub const INIT_WAIT: Duration = Duration::from_millis(200);

/// Where a channel lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A POSIX shared-memory object (`shm_open`), named like `/orders`.
    Shm(CString),
    /// A file, on tmpfs or hugetlbfs for speed.
    File(PathBuf),
}

impl Location {
    /// Parses a channel name: one leading slash and no other is a shared-memory name
    /// (`/orders`); any other name with a slash is a file path (`./orders`,
    /// `/dev/shm/orders`, `dir/orders`). A name without a slash (`orders`) is refused:
    /// it looks like a shared-memory name but would be a file in the current directory.
    pub fn parse(name: &str) -> Result<Location> {
        let invalid = |reason| Error::InvalidName {
            name: name.into(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if name.contains('\0') {
            return Err(invalid("the name contains a NUL byte"));
        }
        if let Some(rest) = name.strip_prefix('/') {
            if !rest.contains('/') {
                if rest.is_empty() || rest == "." || rest == ".." {
                    return Err(invalid("a shared-memory name needs a name after the slash"));
                }
                if name.len() > 255 {
                    return Err(invalid("a shared-memory name is at most 255 bytes"));
                }
                return Ok(Location::Shm(CString::new(name).expect("checked for NUL")));
            }
        }
        if !name.contains('/') {
            return Err(invalid(
                "a name without a slash is neither kind: name a shared-memory object with \
                 one leading slash (\"/orders\"), or a file with a path (\"./orders\", or \
                 an absolute path)",
            ));
        }
        if name.ends_with('/') {
            return Err(invalid("a file path must name a file, not a directory"));
        }
        Ok(Location::File(PathBuf::from(name)))
    }

    fn open(&self, name: &str, create: Option<u32>, write: bool) -> Result<File> {
        let op = if create.is_some() { "create" } else { "open" };
        match self {
            Location::Shm(cname) => {
                let mut flags = if write {
                    OFlag::O_RDWR
                } else {
                    OFlag::O_RDONLY
                };
                if create.is_some() {
                    flags |= OFlag::O_CREAT | OFlag::O_EXCL;
                }
                let mode = Mode::from_bits_truncate(create.unwrap_or(0) as libc::mode_t);
                let fd: OwnedFd = nix::sys::mman::shm_open(cname.as_c_str(), flags, mode)
                    .map_err(|e| Error::io(op, name, e.into()))?;
                Ok(File::from(fd))
            }
            Location::File(path) => {
                let mut o = OpenOptions::new();
                // O_NOFOLLOW: a link planted in a shared directory (another user's) does
                // not redirect us. O_NONBLOCK: opening a FIFO planted there does not hang
                // (it is then refused as not a regular file). std sets O_CLOEXEC too.
                o.read(true)
                    .write(write)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
                if let Some(mode) = create {
                    o.create_new(true).mode(mode);
                }
                o.open(path).map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) => Error::Symlink { name: name.into() },
                    _ => Error::io(op, name, e),
                })
            }
        }
    }

    /// Removes the name. Processes that have the segment mapped keep using it.
    pub fn unlink(&self, name: &str) -> Result<()> {
        match self {
            Location::Shm(cname) => nix::sys::mman::shm_unlink(cname.as_c_str())
                .map_err(|e| Error::io("unlink", name, e.into())),
            Location::File(path) => {
                std::fs::remove_file(path).map_err(|e| Error::io("unlink", name, e))
            }
        }
    }
}

/// Who owns a segment's object, who may write it, and its size: `fstat` on the opened
/// descriptor (not a `stat` of the name, which another process could swap meanwhile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes now.
    pub size: u64,
    /// Whether it is a regular file (shared-memory objects are).
    pub regular: bool,
}

impl ObjectMeta {
    /// `fstat` of `file`.
    pub fn of(file: &File, name: &str) -> Result<ObjectMeta> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().map_err(|e| Error::io("stat", name, e))?;
        Ok(ObjectMeta {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            size: m.size(),
            regular: m.file_type().is_file(),
        })
    }

    /// Refuses, unless `allow_foreign`, an object this process should not write into:
    /// one owned by another user than the effective uid, or writable by group or others.
    fn check_writable_by_us(&self, name: &str, allow_foreign: bool) -> Result<()> {
        let euid = nix::unistd::geteuid().as_raw();
        if allow_foreign || (self.uid == euid && self.mode & 0o022 == 0) {
            return Ok(());
        }
        Err(Error::ForeignSegment {
            name: name.into(),
            owner_uid: self.uid,
            owner_name: user_name(self.uid),
            mode: self.mode,
            euid,
        })
    }
}

/// The user name of `uid`, when the user database knows it.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// A mapped, validated segment.
pub struct Segment {
    name: String,
    map: MmapRaw,
    geo: Geometry,
    settings: Settings,
    /// How this CPU computes crc32s (detected once: per call it was a tenth of a 64-byte
    /// crc's instructions).
    crc: Crc32c,
    /// The object's permission bits at create or open (`fstat`), for the doorbell's mode.
    mode: u32,
    /// This process's open doorbell FIFO, for writers ringing the reader; closed with
    /// the last handle of this mapping.
    bell: crate::doorbell::BellCache,
}

// SAFETY: the mapping is shared memory that other processes mutate anyway; every access
// to it goes through atomics or raw-pointer copies whose soundness is argued where they
// happen, never through `&mut`. Sharing the handle between threads adds nothing new.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// Calls `prefetch` with the address of every cache line of nodes
    /// `index..index + nodes` (clamped to the ring's end): addresses inside the data area.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn each_line(&self, index: u64, nodes: u64, prefetch: impl Fn(*const u8)) {
        if index < self.geo.node_count {
            let nodes = nodes.min(self.geo.node_count - index) as usize;
            let start = self.node_ptr(index) as *const u8;
            let mut off = 0;
            while off < nodes * self.geo.node_size {
                prefetch(start.wrapping_add(off));
                off += 64;
            }
        }
    }

    /// Creates a new segment of `size` bytes. Fails if the name exists.
    pub fn create(name: &str, size: usize, config: &Config) -> Result<Segment> {
        config.validate()?;
        let loc = Location::parse(name)?;
        if libc::off_t::try_from(size).is_err() {
            return Err(Error::InvalidConfig {
                reason: format!("a channel of {size} bytes is larger than any file can be"),
            });
        }
        let geo =
            Geometry::for_size(size, config.node_size).ok_or_else(|| Error::InvalidConfig {
                reason: format!(
                    "a channel of {size} bytes holds fewer than 2 nodes of {} bytes; \
                     ask for at least {} bytes",
                    config.node_size,
                    HEADER_SIZE + 2 * config.node_size
                ),
            })?;
        let protect_nodes = config.protect_bytes.div_ceil(config.node_size) as u64;
        if protect_nodes + 2 > geo.node_count {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "protect area of {} bytes leaves no room in a ring of {} nodes",
                    config.protect_bytes, geo.node_count
                ),
            });
        }
        let file = loc.open(name, Some(config.mode), true)?;
        let seg = Self::init(name, &file, size, geo, protect_nodes, config);
        if seg.is_err() {
            // Leave nothing half-made behind.
            let _ = loc.unlink(name);
        }
        seg
    }

    fn init(
        name: &str,
        file: &File,
        size: usize,
        geo: Geometry,
        protect_nodes: u64,
        config: &Config,
    ) -> Result<Segment> {
        // The mode passed to open is filtered by the umask; set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(config.mode))
            .map_err(|e| Error::io("chmod", name, e))?;
        file.set_len(size as u64)
            .map_err(|e| Error::io("resize", name, e))?;
        // Reserve the memory now, so a too-small /dev/shm fails here and not with SIGBUS
        // on some later write.
        match nix::fcntl::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) {
            Ok(()) => {}
            Err(nix::errno::Errno::ENOSPC) => {
                return Err(Error::NoSpace {
                    name: name.into(),
                    size: size as u64,
                })
            }
            // Some file systems cannot reserve; pre-faulting below still catches most.
            Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(Error::io("reserve memory for", name, e.into())),
        }
        let map = MmapOptions::new()
            .len(size)
            .populate()
            .map_raw(file)
            .map_err(|e| Error::io("map", name, e))?;
        let seg = Segment {
            name: name.into(),
            map,
            geo,
            crc: Crc32c::detect(),
            mode: config.mode & 0o777,
            bell: Default::default(),
            settings: Settings {
                timeout: config.timeout,
                write_retries: config.write_retries,
                protect_nodes,
                detect_dead_writers: config.detect_dead_writers,
                checksums: config.checksums,
            },
        };
        let h = seg.header();
        // Relaxed stores: nothing is published until the release store of the magic.
        let r = Ordering::Relaxed;
        h.version.store(layout::VERSION, r);
        h.abi_tag.store(layout::ABI_TAG, r);
        h.header_size.store(HEADER_SIZE as u32, r);
        h.node_size.store(geo.node_size as u32, r);
        h.node_count.store(geo.node_count, r);
        h.total_size.store(size as u64, r);
        h.reserved_40.store(0, r);
        h.data_offset.store(geo.data_offset as u64, r);
        h.timeout_ns.store(config.timeout.as_nanos() as u64, r);
        h.write_retries.store(config.write_retries, r);
        let mut flags = 0;
        if config.detect_dead_writers {
            flags |= layout::FLAG_DETECT_DEAD_WRITERS;
        }
        if !config.checksums {
            flags |= layout::FLAG_NO_CHECKSUM;
        }
        h.flags.store(flags, r);
        h.protect_nodes.store(protect_nodes, r);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        h.created_unix_ns.store(now, r);
        h.channel_id.store(random_id(now), r);
        for i in 0..geo.node_count {
            seg.head(i).store(NodeState::free(i).0, r);
        }
        // Release: a process that sees the magic (acquire) sees every store above.
        h.magic.store(layout::MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Opens an existing segment read-write, validating it completely. Refuses
    /// ([`Error::ForeignSegment`]) an object owned by another user or writable by group
    /// or others unless `allow_foreign`.
    pub fn open(name: &str, allow_foreign: bool) -> Result<Segment> {
        Self::open_with(name, true, allow_foreign).map(|(seg, _, _)| seg)
    }

    /// Opens an existing segment read-only: the mapping is `PROT_READ`, so nothing done
    /// through it can write to the segment. Anyone's segment may be opened so. Also
    /// returns the open descriptor and what `fstat` said of it at open.
    pub fn open_read_only(name: &str) -> Result<(Segment, File, ObjectMeta)> {
        Self::open_with(name, false, true)
    }

    fn open_with(
        name: &str,
        write: bool,
        allow_foreign: bool,
    ) -> Result<(Segment, File, ObjectMeta)> {
        let loc = Location::parse(name)?;
        let file = loc.open(name, None, write)?;
        let meta = ObjectMeta::of(&file, name)?;
        if !meta.regular {
            return Err(Error::NotAtbus { name: name.into() });
        }
        if write {
            meta.check_writable_by_us(name, allow_foreign)?;
        }
        let actual = meta.size;
        if actual < HEADER_SIZE as u64 {
            return Err(Error::Truncated {
                name: name.into(),
                actual,
                expected: HEADER_SIZE as u64,
            });
        }
        let len = usize::try_from(actual).map_err(|_| Error::Truncated {
            name: name.into(),
            actual,
            expected: usize::MAX as u64,
        })?;
        let mut opts = MmapOptions::new();
        opts.len(len);
        let map = if write {
            opts.populate().map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| Error::io("map", name, e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked above) and page
        // aligned; `Header` is all atomics, valid for any bit pattern, so a shared
        // reference to it is sound even though other processes write it concurrently.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        let deadline = Instant::now() + INIT_WAIT;
        let magic = loop {
            // Acquire: pairs with the creator's release store of the magic, so the
            // fields read below are the ones it wrote before.
            let m = h.magic.load(Ordering::Acquire);
            if m != 0 || Instant::now() >= deadline {
                break m;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let incompatible = |reason: String| Error::Incompatible {
            name: name.into(),
            reason,
        };
        let corrupt = |reason: String| Error::Corrupt {
            name: name.into(),
            reason,
        };
        if magic == 0 {
            return Err(Error::NotInitialized { name: name.into() });
        }
        if magic != layout::MAGIC {
            return Err(Error::NotAtbus { name: name.into() });
        }
        let r = Ordering::Relaxed;
        let version = h.version.load(r);
        if version != layout::VERSION {
            return Err(incompatible(format!(
                "layout version {version}, this build reads version {}",
                layout::VERSION
            )));
        }
        let tag = h.abi_tag.load(r);
        if tag != layout::ABI_TAG {
            return Err(incompatible(format!(
                "endianness/word-size tag {tag:#x}, this build is {:#x}",
                layout::ABI_TAG
            )));
        }
        let header_size = h.header_size.load(r);
        if header_size as usize != HEADER_SIZE {
            return Err(corrupt(format!(
                "header size {header_size}, expected {HEADER_SIZE}"
            )));
        }
        let node_size = h.node_size.load(r) as usize;
        if !layout::valid_node_size(node_size) {
            return Err(corrupt(format!(
                "node size {node_size} is not a power of two in 64..=65536"
            )));
        }
        let node_count = h.node_count.load(r);
        if node_count < 2 {
            return Err(corrupt(format!("node count {node_count} is below 2")));
        }
        let total = h.total_size.load(r);
        let geo = Geometry::with_count(node_size, node_count)
            .filter(|g| g.used_size as u64 <= total)
            .ok_or_else(|| {
                corrupt(format!(
                    "{node_count} nodes of {node_size} bytes do not fit in the {total} bytes \
                     the header declares"
                ))
            })?;
        if total > actual {
            return Err(Error::Truncated {
                name: name.into(),
                actual,
                expected: total,
            });
        }
        let data = h.data_offset.load(r);
        if data != geo.data_offset as u64 {
            return Err(corrupt(format!(
                "data area at {data}, the layout puts it at {}",
                geo.data_offset
            )));
        }
        let protect_nodes = h.protect_nodes.load(r);
        if protect_nodes.saturating_add(2) > node_count {
            return Err(corrupt(format!(
                "protect area of {protect_nodes} nodes leaves no room in {node_count} nodes"
            )));
        }
        let settings = Settings {
            timeout: Duration::from_nanos(h.timeout_ns.load(r)),
            write_retries: h.write_retries.load(r),
            protect_nodes,
            detect_dead_writers: h.flags.load(r) & layout::FLAG_DETECT_DEAD_WRITERS != 0,
            checksums: h.flags.load(r) & layout::FLAG_NO_CHECKSUM == 0,
        };
        let seg = Segment {
            name: name.into(),
            map,
            geo,
            settings,
            crc: Crc32c::detect(),
            mode: meta.mode & 0o777,
            bell: Default::default(),
        };
        Ok((seg, file, meta))
    }

    /// Bytes mapped (the object's size at open).
    pub fn mapped_len(&self) -> usize {
        self.map.len()
    }

    /// The object's permission bits when this process created or opened it.
    pub(crate) fn mode(&self) -> u32 {
        self.mode
    }

    /// Rings the doorbell of the reader that created it in `epoch` (see `doorbell`).
    pub(crate) fn ring_doorbell(&self, epoch: u32) {
        self.bell.ring(&self.name, epoch);
    }

    /// Pointer to payload byte `offset` of the block at `index`, after checking that
    /// `len` bytes from there stay inside the ring.
    fn payload_range(&self, index: u64, offset: usize, len: usize) -> *mut u8 {
        let g = &self.geo;
        let room = (g.node_count.saturating_sub(index) as usize) * g.node_size;
        let end = crate::layout::BLOCK_HEADER_SIZE
            .checked_add(offset)
            .and_then(|x| x.checked_add(len));
        assert!(
            end.is_some_and(|e| e <= room),
            "payload range out of the ring"
        );
        self.node_ptr(index)
            .wrapping_add(crate::layout::BLOCK_HEADER_SIZE + offset)
    }
}

impl SegmentView for Segment {
    /// crc32c of `data` (see [`crate::layout::payload_crc`]).
    #[inline]
    fn crc32(&self, data: &[u8]) -> u32 {
        self.crc.checksum(data)
    }

    /// The channel name this segment was opened by.
    fn name(&self) -> &str {
        &self.name
    }

    /// The validated sizes.
    fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The settings read at open.
    fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The header.
    fn header(&self) -> &Header {
        // SAFETY: every mapping is at least HEADER_SIZE bytes (checked at create/open),
        // page aligned (so aligned for Header), and lives as long as `self`. Header is
        // all atomics: any bit pattern is valid and concurrent writes by other
        // processes are atomic writes, so a shared reference is sound.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    /// The head of node `index`: the first word of the node.
    #[inline]
    fn head(&self, index: u64) -> &AtomicU64 {
        &self.block_header(index).head
    }

    /// Pointer to the first byte of node `index`'s data. Panics if `index` is out of
    /// range (callers reduce positions modulo the node count first).
    #[inline]
    fn node_ptr(&self, index: u64) -> *mut u8 {
        assert!(index < self.geo.node_count, "node index out of range");
        let offset = self.geo.data_offset + index as usize * self.geo.node_size;
        // SAFETY: index < node_count, so offset + node_size <= used_size <= mapped
        // length: the pointer stays inside the mapping.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    /// Asks the CPU to start loading nodes `index..index + nodes` (clamped to the ring's
    /// end) into its cache. A hint only: nothing happens on other architectures.
    #[inline]
    fn prefetch_nodes(&self, index: u64, nodes: u64) {
        #[cfg(target_arch = "x86_64")]
        self.each_line(index, nodes, |p| {
            // SAFETY: a prefetch is a hint: it never faults and changes no memory; the
            // address is inside the data area (each_line).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            }
        });
    }

    /// As `prefetch_nodes`, asking for the lines in a state this core can write
    /// (PREFETCHW, where the CPU has it; a plain prefetch otherwise). Out of line: the
    /// one-node send path pays only the test for it.
    #[inline(never)]
    fn prefetch_nodes_for_write(&self, index: u64, nodes: u64) {
        #[cfg(target_arch = "x86_64")]
        if self.crc.prefetchw() {
            // SAFETY: the CPU has PREFETCHW (`prefetchw()`); a prefetch never faults and
            // changes no memory; the address is inside the data area (each_line).
            self.each_line(index, nodes, |p| unsafe {
                crate::crc::prefetch_for_write(p)
            });
        } else {
            self.prefetch_nodes(index, nodes);
        }
    }

    /// The 32 bytes at the start of node `index`: its head and, on a block's first
    /// node, the block header.
    #[inline]
    fn block_header(&self, index: u64) -> &BlockHeader {
        // SAFETY: node_ptr is in bounds and node-size aligned (>= 64), so 32 bytes of
        // BlockHeader fit and are aligned. BlockHeader is all atomics, valid for any bits.
        // Inside a block these bytes are also payload, written by the block's writer with
        // plain copies and read by the reader with plain copies; the protocol orders those
        // copies and the atomic accesses of the same bytes with the head's release and
        // acquire operations (see ring.rs), and a faulty process racing on them can only
        // change their values, never make an atomic access unsound on this platform.
        unsafe { &*(self.node_ptr(index) as *const BlockHeader) }
    }

    /// Copies `data` into the payload of the block at node `index`, `offset` bytes in.
    /// Panics if that would run past the end of the ring.
    ///
    /// Callers own the bytes by the ring protocol: a writer between its START CAS and its
    /// publish. Another process may still write them in a fault (a writer that stalled
    /// past the timeout and wakes); the reader's crc check catches that.
    fn write_payload(&self, index: u64, offset: usize, data: &[u8]) {
        let at = self.payload_range(index, offset, data.len());
        // SAFETY: payload_range checked that the range lies in the data area of the
        // mapping, which lives as long as `self`; `data` is caller memory, distinct from
        // the mapping. Concurrent writers of these bytes exist only in the fault above:
        // another process's stores can make the bytes anything, never unsound for u8.
        unsafe { copy_bytes(data.as_ptr(), at, data.len()) };
    }

    /// [`write_payload`](Self::write_payload), returning the crc32c of `data` continued from
    /// `crc` (0 for the payload's first bytes).
    fn write_payload_crc(&self, index: u64, offset: usize, data: &[u8], crc: u32) -> u32 {
        let at = self.payload_range(index, offset, data.len());
        // SAFETY: as in write_payload.
        unsafe { self.crc.copy(at, data.as_ptr(), data.len(), crc) }
    }

    /// [`read_payload`](Self::read_payload), returning the crc32c of the bytes it stored in
    /// `buf` (even if a faulty writer changed the ring meanwhile).
    fn read_payload_crc(&self, index: u64, buf: &mut [u8]) -> u32 {
        let at = self.payload_range(index, 0, buf.len());
        // SAFETY: as in read_payload.
        unsafe { self.crc.copy(buf.as_mut_ptr(), at, buf.len(), 0) }
    }

    /// Copies the first `buf.len()` payload bytes of the block at node `index` into `buf`.
    /// Panics if that would run past the end of the ring.
    fn read_payload(&self, index: u64, buf: &mut [u8]) {
        let at = self.payload_range(index, 0, buf.len());
        // SAFETY: as in write_payload: the range is inside the mapping and `buf` is the
        // caller's own memory. Bytes a faulty writer changes under us are caught by the
        // caller's crc check on `buf`.
        unsafe { copy_bytes(at, buf.as_mut_ptr(), buf.len()) };
    }

    /// Whether a block of `nodes` nodes starting at node `index` ends inside the ring.
    fn block_in_bounds(&self, index: u64, nodes: u64) -> bool {
        index < self.geo.node_count && nodes <= self.geo.node_count - index
    }
}

/// A random channel id: from the kernel's random source, or, should that fail, mixed
/// from the creation time and the process id (unique enough to tell channels apart).
fn random_id(now_ns: u64) -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == bytes.len() as isize {
        return u64::from_le_bytes(bytes);
    }
    (now_ns ^ u64::from(std::process::id()) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Removes a channel by name.
pub fn unlink(name: &str) -> Result<()> {
    Location::parse(name)?.unlink(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed() {
        assert!(matches!(Location::parse("/orders"), Ok(Location::Shm(_))));
        assert!(matches!(
            Location::parse("/dev/shm/orders"),
            Ok(Location::File(_))
        ));
        for file in [
            "./ring.bus",
            "dir/ring.bus",
            "../ring.bus",
            "/tmp/dir/ring.bus",
        ] {
            assert_eq!(
                Location::parse(file).unwrap(),
                Location::File(PathBuf::from(file)),
                "{file:?}"
            );
        }
        for bad in [
            "",
            "/",
            "/..",
            "a\0b",
            "/tmp/dir/",
            "ring.bus",
            "orders",
            ".",
            "..",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let e = Location::parse("orders").unwrap_err().to_string();
        for hint in ["\"orders\"", "\"/orders\"", "\"./orders\"", "absolute path"] {
            assert!(e.contains(hint), "{e:?} lacks {hint}");
        }
        let long = format!("/{}", "x".repeat(255));
        assert!(matches!(
            Location::parse(&long),
            Err(Error::InvalidName { .. })
        ));
    }
}
