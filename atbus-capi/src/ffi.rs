//! The C ABI: every function of `include/atbus.h`, which cbindgen generates from this
//! file (the test `atbus-capi/header-check/tests/header.rs` fails when the committed header is stale).
//!
//! Conventions, for every function here:
//! * Functions return an `int32_t`: [`ATBUS_OK`] (0) or a negative `ATBUS_ERR_*` code.
//!   [`atbus_strerror`] names a code; [`atbus_last_error`] gives the full message of the
//!   last failure on the calling thread (which channel, what sizes, what to do next).
//! * Out-parameters are written on success only, except where a function says otherwise.
//! * A NULL pointer, a name that is not UTF-8, a bad configuration: an error code, never
//!   a crash. No Rust panic crosses into C: a panic becomes [`ATBUS_ERR_PANIC`].
//! * A handle (`atbus_channel *`) may be shared by threads: `atbus_send`,
//!   `atbus_get_stats` and the queries run concurrently; `atbus_recv` calls are serialised
//!   on a lock inside the handle. Only `atbus_close` must not race with any other call on
//!   the same handle.
//! * Handles do not survive `fork`: a child process opens the channel anew.
//! * The bus calls (`atbus_bus_*`, `atbus_endpoint_*`, in `bus.rs`) follow the same
//!   rules.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use atbus::{Channel, Config, Error, OpenOptions, Reader, Stats, Writer};

// The bus calls (`atbus_bus_*`, `atbus_endpoint_*`). The path is relative to this file,
// so the module is found however this file is compiled (also by `#[path]` from the
// tests); cbindgen follows it into the header.
#[path = "bus.rs"]
mod bus;
pub use bus::*;

/// Success.
pub const ATBUS_OK: i32 = 0;
/// No message is ready now (`atbus_recv`). Not a failure: call again later, or arm the
/// reader (`atbus_reader_arm`) and wait on `atbus_reader_fd`.
pub const ATBUS_ERR_EMPTY: i32 = -1;
/// The ring has no room for the message now; nothing was written. Retry later, or use
/// `atbus_send_timeout`.
pub const ATBUS_ERR_FULL: i32 = -2;
/// The message can never fit in this channel (see `atbus_max_message_len`).
pub const ATBUS_ERR_TOO_LARGE: i32 = -3;
/// The caller's buffer is smaller than the next message. `*out_len` holds the size
/// needed; the message stays in the ring.
pub const ATBUS_ERR_BUFFER_TOO_SMALL: i32 = -4;
/// A NULL or misaligned pointer, a name that is not UTF-8 or not a valid channel name,
/// or a configuration value out of range (node size, timeout, mode, channel size too
/// small for two nodes, protect area too large).
pub const ATBUS_ERR_INVALID_ARGUMENT: i32 = -5;
/// No channel of that name exists.
pub const ATBUS_ERR_NOT_FOUND: i32 = -6;
/// `atbus_create` found a channel of that name already there.
pub const ATBUS_ERR_EXISTS: i32 = -7;
/// The object is not a usable atbus segment: truncated, no atbus magic, made by an
/// incompatible atbus build, or holding values no atbus process writes.
pub const ATBUS_ERR_BAD_SEGMENT: i32 = -8;
/// The channel's creator has not finished initialising it. Retry shortly; if its creator
/// died, unlink the name and create it again.
pub const ATBUS_ERR_NOT_INITIALIZED: i32 = -9;
/// A live process (or another handle in this process) holds the reader role.
pub const ATBUS_ERR_READER_BUSY: i32 = -10;
/// `atbus_send_timeout`: the ring stayed full for the whole timeout;
/// `atbus_recv_timeout`: no message arrived within the timeout.
pub const ATBUS_ERR_TIMEOUT: i32 = -11;
/// This writer stalled past the channel's torn-block timeout while writing; the reader
/// skipped its block, so the message was not delivered. Send it again.
pub const ATBUS_ERR_ABANDONED: i32 = -12;
/// The operating system refused access to the channel.
pub const ATBUS_ERR_PERMISSION: i32 = -13;
/// The file system holding the channel (`/dev/shm` for shared-memory names) has no room
/// for a channel of that size.
pub const ATBUS_ERR_NO_SPACE: i32 = -14;
/// Another operating-system error; `atbus_last_error` says which.
pub const ATBUS_ERR_IO: i32 = -15;
/// A message read in place changed while it was read (Rust API only; the C functions
/// copy and never return it).
pub const ATBUS_ERR_DAMAGED: i32 = -16;
/// A bug inside atbus: a Rust panic was caught at the boundary. `atbus_last_error` holds
/// its message; please report it.
pub const ATBUS_ERR_PANIC: i32 = -17;
/// `atbus_open`/`atbus_open_ex`: the object is owned by another user, or writable by
/// group or others (so they control the memory this process would send into), or the
/// file path is a symbolic link. `atbus_last_error` says whose it is and its mode; pass
/// `ATBUS_OPEN_ALLOW_FOREIGN` to `atbus_open_ex` if that is intended.
pub const ATBUS_ERR_UNTRUSTED: i32 = -18;
/// `atbus_recv`/`atbus_recv_timeout`: another process took the reader role from this
/// handle (it judged this process dead, or the role record was overwritten). The handle
/// consumes nothing more; release it with `atbus_release_reader` or `atbus_close`.
pub const ATBUS_ERR_READER_ROLE_LOST: i32 = -19;
/// `atbus_bus_join`: the endpoint name is held by a live process (this one included).
/// `atbus_last_error` names its pid. Choose another name, or stop that process first; a
/// name held by a dead process is reclaimed and taken, never refused.
pub const ATBUS_ERR_NAME_TAKEN: i32 = -20;
/// No endpoint of that name is on the bus (never joined, left, or its process died and
/// its record was reclaimed). Returned at once: check the name or wait for it to join.
pub const ATBUS_ERR_NO_SUCH_ENDPOINT: i32 = -21;
/// The peer left the bus or its process died (or it restarted as a new generation) while
/// the call needed it: a waiting `atbus_endpoint_request` returns it within about
/// 100 ms of the death, not after its timeout. Retry once the peer has joined again.
pub const ATBUS_ERR_PEER_GONE: i32 = -22;
/// `atbus_bus_join`: every record of the bus directory is held by a live endpoint.
/// Leave with some endpoints, or recreate the bus with a larger capacity.
pub const ATBUS_ERR_DIRECTORY_FULL: i32 = -23;
/// The bus directory's lock is held by a live process and was not released within 2 s
/// (that process is stopped or stuck mid-join). Retry; continue the holder if it is
/// stopped. `atbus_last_error` names its pid.
pub const ATBUS_ERR_LOCK_BUSY: i32 = -24;

/// `atbus_open_ex` flag: open the channel even if its object is owned by another user
/// or writable by group or others. Only for channels shared between users on purpose:
/// each of them can forge messages and shrink the segment (SIGBUS in every process that
/// maps it).
pub const ATBUS_OPEN_ALLOW_FOREIGN: u32 = 1;

/// An open channel: the mapping, a writer, and (once `atbus_recv` has taken it) the
/// reader role. Opaque: create it with `atbus_create` or `atbus_open`, free it with
/// `atbus_close`.
pub struct atbus_channel {
    channel: Channel,
    writer: Writer,
    reader: Mutex<Option<Reader>>,
}

/// How a channel is created. Fill it with `atbus_config_init`, then change fields.
///
/// The struct can grow in later versions without breaking compiled programs: `size`
/// tells the library which version the caller was compiled against. The library reads
/// only the fields that fit in `size` bytes and uses the defaults for the rest; a size
/// too small for every field of this first version is refused with
/// `ATBUS_ERR_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct atbus_config {
    /// `sizeof(atbus_config)` as the caller compiled it. `atbus_config_init` sets it;
    /// set it yourself when filling the struct by hand.
    pub size: usize,
    /// Bytes per node: a power of two from 64 to 65536. Default 128. A message occupies
    /// `ceil((32 + len) / node_size)` nodes.
    pub node_size: usize,
    /// Torn-block timeout in milliseconds, 1 to 3600000: how long a block may stay
    /// claimed but unwritten before the reader skips it as the work of a stalled live
    /// writer. Default 1000. Keep it well above a scheduler slice.
    pub timeout_ms: u64,
    /// Failed claim compare-exchanges a writer retries before it yields the CPU.
    /// Default 4.
    pub write_retries: u32,
    /// File mode of the shared-memory object; must include 0600 and nothing beyond 0777.
    /// Default 0600. Anything wider than 0600 needs `allow_shared_mode`.
    pub mode: u32,
    /// Bytes writers always leave free (rounded up to whole nodes). Default 0.
    pub protect_bytes: usize,
    /// Skip a torn block at once when its writer's process no longer exists (needs every
    /// process of the channel in one pid namespace). Default true.
    pub detect_dead_writers: bool,
    /// Compute a crc32c of every payload (writers) and check it (the reader). Default
    /// true. Off saves ~0.7 us per 16 KiB on each side, but a writer that stalled past
    /// the timeout and woke to scribble on reused nodes can then get damaged bytes
    /// delivered: only for channels whose writers never stall that long.
    pub checksums: bool,
    /// Allow a `mode` wider than 0600 (group or others get access). Default false.
    /// Writers of other users then need `atbus_open_ex` with `ATBUS_OPEN_ALLOW_FOREIGN`.
    pub allow_shared_mode: bool,
}

/// Every counter of a channel (see `atbus_get_stats`). Each counter is read atomically;
/// the set is not one atomic snapshot while the channel is in use.
///
/// Set `size` before the call: `atbus_stats stats = { .size = sizeof stats };` (C) or
/// `atbus_stats stats{}; stats.size = sizeof stats;` (C++). The struct can grow in later
/// versions without breaking compiled programs: `atbus_get_stats` writes only the
/// counters that fit in the caller's `size`, so a program built against an older,
/// smaller struct gets no byte written past its end, and one built against a newer,
/// larger struct gets the counters this library knows, the rest left untouched.
/// Counters are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct atbus_stats {
    /// `sizeof(atbus_stats)` as the caller compiled it; set it before calling
    /// `atbus_get_stats`, which never changes it.
    pub size: usize,
    /// Messages writers published.
    pub messages_sent: u64,
    /// Payload bytes writers published.
    pub bytes_sent: u64,
    /// Sends that failed with `ATBUS_ERR_FULL`.
    pub full: u64,
    /// Claim compare-exchanges lost to another writer and retried.
    pub write_retries: u64,
    /// Sends that failed with `ATBUS_ERR_ABANDONED`.
    pub abandoned: u64,
    /// Padding blocks claimed at the end of the ring.
    pub padding_claims: u64,
    /// Messages the reader delivered.
    pub messages_received: u64,
    /// Payload bytes the reader delivered.
    pub bytes_received: u64,
    /// Torn blocks skipped after the timeout.
    pub timeout_blocks: u64,
    /// Torn blocks skipped at once because their writer process was gone.
    pub dead_writer_blocks: u64,
    /// Nodes skipped without delivery, for any reason but padding.
    pub bad_nodes: u64,
    /// Published blocks that failed a check (crc or header) and were skipped.
    pub bad_blocks: u64,
    /// Blocks whose crc32c did not match their payload.
    pub crc_failures: u64,
    /// Blocks whose length, node count or sequence did not check out.
    pub check_failures: u64,
    /// Padding blocks the reader skipped.
    pub padding_blocks: u64,
    /// Nodes a dead reader had consumed but not released, skipped by its successor.
    pub handover_nodes: u64,
    /// Times the reader role was taken over from a dead owner.
    pub reader_takeovers: u64,
    /// Reservations dropped without commit (Rust zero-copy sends), skipped by the reader.
    pub aborted_blocks: u64,
    /// Times a blocking reader (`atbus_recv_timeout`) went to sleep on the channel's
    /// futex, or a reader armed with `atbus_reader_arm` found nothing ready.
    pub reader_sleeps: u64,
    /// Wake-ups writers issued to a sleeping or armed reader (futex wakes and doorbell
    /// rings). Usually one per sleep, but it can exceed `reader_sleeps`: a writer that
    /// finds the reader arming rings even when `atbus_reader_arm` then returns 1
    /// (a message ready), which counts no sleep.
    pub wakeups: u64,
    /// The shared read cursor (released position, in nodes).
    pub read_cursor: u64,
    /// The write cursor (next position to claim, in nodes; a block's sequence is its
    /// position).
    pub write_cursor: u64,
}

// Every counter of both structs is a u64: equal sizes mean equal counter counts.
const _: () = assert!(
    std::mem::size_of::<Stats>() == std::mem::size_of::<atbus_stats>() - STATS_FIRST_COUNTER
);

/// Where the counters of `atbus_stats` start: after `size`.
const STATS_FIRST_COUNTER: usize = std::mem::offset_of!(atbus_stats, messages_sent);

/// The largest `atbus_stats.size` accepted: room for thousands of counters, so anything
/// larger is an uninitialised `size`, not a newer header.
const STATS_MAX_SIZE: usize = 4096;

impl From<Stats> for atbus_stats {
    fn from(s: Stats) -> atbus_stats {
        // `Stats` is `#[non_exhaustive]`, so outside atbus the pattern needs `..`; the
        // size assertion below fails to compile when `Stats` gains a counter that the C
        // struct does not carry.
        let Stats {
            messages_sent,
            bytes_sent,
            full,
            write_retries,
            abandoned,
            padding_claims,
            messages_received,
            bytes_received,
            timeout_blocks,
            dead_writer_blocks,
            bad_nodes,
            bad_blocks,
            crc_failures,
            check_failures,
            padding_blocks,
            handover_nodes,
            reader_takeovers,
            aborted_blocks,
            reader_sleeps,
            wakeups,
            read_cursor,
            write_cursor,
            ..
        } = s;
        atbus_stats {
            size: std::mem::size_of::<atbus_stats>(),
            messages_sent,
            bytes_sent,
            full,
            write_retries,
            abandoned,
            padding_claims,
            messages_received,
            bytes_received,
            timeout_blocks,
            dead_writer_blocks,
            bad_nodes,
            bad_blocks,
            crc_failures,
            check_failures,
            padding_blocks,
            handover_nodes,
            reader_takeovers,
            aborted_blocks,
            reader_sleeps,
            wakeups,
            read_cursor,
            write_cursor,
        }
    }
}

/// The smallest `size` accepted: the end of the last field of the first version of
/// `atbus_config` (`checksums`), so it stays put as the struct grows.
///
/// To grow the struct, append fields only, each starting at or after the first
/// version's `sizeof` (48 bytes on 64-bit targets; add an explicit padding field if
/// alignment would place a new field earlier): a caller built against the first header
/// passes `size` 48 and may leave the tail padding uninitialised, and bytes within its
/// `size` are read.
const CONFIG_MIN_SIZE: usize =
    std::mem::offset_of!(atbus_config, checksums) + std::mem::size_of::<bool>();

impl From<&Config> for atbus_config {
    fn from(c: &Config) -> atbus_config {
        atbus_config {
            size: std::mem::size_of::<atbus_config>(),
            node_size: c.node_size,
            timeout_ms: u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX),
            write_retries: c.write_retries,
            mode: c.mode,
            protect_bytes: c.protect_bytes,
            detect_dead_writers: c.detect_dead_writers,
            checksums: c.checksums,
            allow_shared_mode: c.allow_shared_mode,
        }
    }
}

impl TryFrom<&atbus_config> for Config {
    type Error = Error;

    /// The Rust configuration, if every field is in range.
    fn try_from(c: &atbus_config) -> Result<Config, Error> {
        Config::builder()
            .node_size(c.node_size)
            .timeout(Duration::from_millis(c.timeout_ms))
            .write_retries(c.write_retries)
            .protect_bytes(c.protect_bytes)
            .mode(c.mode)
            .detect_dead_writers(c.detect_dead_writers)
            .checksums(c.checksums)
            .allow_shared_mode(c.allow_shared_mode)
            .build()
    }
}

/// The C return code of an error.
pub fn error_code(e: &Error) -> i32 {
    // `Error` is `#[non_exhaustive]`: a variant added after this code was written is an
    // operating-system-style failure to C (its message in `atbus_last_error` says what).
    match e {
        Error::InvalidName { .. } | Error::InvalidConfig { .. } | Error::InvalidCommit { .. } => {
            ATBUS_ERR_INVALID_ARGUMENT
        }
        Error::AlreadyExists { .. } => ATBUS_ERR_EXISTS,
        Error::NotFound { .. } => ATBUS_ERR_NOT_FOUND,
        Error::PermissionDenied { .. } => ATBUS_ERR_PERMISSION,
        Error::NoSpace { .. } => ATBUS_ERR_NO_SPACE,
        Error::Io { .. } => ATBUS_ERR_IO,
        Error::Truncated { .. }
        | Error::NotAtbus { .. }
        | Error::Incompatible { .. }
        | Error::Corrupt { .. } => ATBUS_ERR_BAD_SEGMENT,
        Error::NotInitialized { .. } => ATBUS_ERR_NOT_INITIALIZED,
        Error::Full => ATBUS_ERR_FULL,
        Error::Empty => ATBUS_ERR_EMPTY,
        Error::Timeout => ATBUS_ERR_TIMEOUT,
        Error::TooLarge { .. } => ATBUS_ERR_TOO_LARGE,
        Error::BufferTooSmall { .. } => ATBUS_ERR_BUFFER_TOO_SMALL,
        Error::ReaderBusy { .. } => ATBUS_ERR_READER_BUSY,
        Error::Abandoned { .. } => ATBUS_ERR_ABANDONED,
        Error::Damaged => ATBUS_ERR_DAMAGED,
        Error::ForeignSegment { .. } | Error::Symlink { .. } => ATBUS_ERR_UNTRUSTED,
        Error::ReaderRoleLost { .. } => ATBUS_ERR_READER_ROLE_LOST,
        _ => ATBUS_ERR_IO,
    }
}

/// Why an entry point failed: its code and the message for `atbus_last_error`.
struct Failure {
    code: i32,
    message: Message,
}

/// The text of a failure.
enum Message {
    /// A fixed text: the hot-path outcomes `ATBUS_ERR_EMPTY` and `ATBUS_ERR_FULL`, which
    /// a polling caller meets millions of times a second, record it without allocating.
    Static(&'static CStr),
    /// A text naming the channel, the sizes, what to do.
    Owned(String),
}

/// `atbus_last_error()` after `ATBUS_ERR_EMPTY`.
const EMPTY_MESSAGE: &CStr = c"no message ready";
/// `atbus_last_error()` after `ATBUS_ERR_FULL`.
const FULL_MESSAGE: &CStr = c"channel is full: retry later (or use atbus_send_timeout)";

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let message = match e {
            Error::Empty => Message::Static(EMPTY_MESSAGE),
            Error::Full => Message::Static(FULL_MESSAGE),
            _ => Message::Owned(e.to_string()),
        };
        Failure {
            code: error_code(&e),
            message,
        }
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure {
        code: ATBUS_ERR_INVALID_ARGUMENT,
        message: Message::Owned(message.into()),
    }
}

/// The last failure's text on this thread.
enum LastError {
    Static(&'static CStr),
    Owned(CString),
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const { RefCell::new(LastError::Static(c"")) };
}

fn set_last_error(message: Message) {
    let message = match message {
        Message::Static(s) => LastError::Static(s),
        // A message never holds NUL, but make sure rather than drop it.
        Message::Owned(s) => {
            LastError::Owned(CString::new(s.replace('\0', "\\0")).unwrap_or_default())
        }
    };
    // try_with: during thread teardown the slot may be gone; the code still tells.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = message;
        }
    });
}

/// Runs one entry point: catches panics, turns the outcome into a code, and records the
/// message of a failure for `atbus_last_error`.
fn entry(f: impl FnOnce() -> Result<(), Failure>) -> i32 {
    // AssertUnwindSafe: after a panic the only state the caller can observe again is
    // the handle, whose reader sits behind a Mutex that the panic poisons (`lock_reader`
    // recovers from that by dropping the reader); writers and the channel keep no state
    // a panic can leave half-changed outside the shared segment, which is built to
    // survive a writer dying at any point.
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let failure = match outcome {
        Ok(Ok(())) => return ATBUS_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            // Dropping the payload could itself panic (a Drop impl that panics); a
            // panic here would unwind into C, so forget it instead.
            std::mem::forget(payload);
            Failure {
                code: ATBUS_ERR_PANIC,
                message: Message::Owned(format!(
                    "atbus panicked (a bug, please report it): {what}"
                )),
            }
        }
    };
    set_last_error(failure.message);
    failure.code
}

/// Checks an out-pointer: non-NULL and aligned for `T`.
fn check_out<T>(p: *mut T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(invalid(format!("{what} is not aligned for its type")));
    }
    Ok(())
}

/// Borrows a handle.
///
/// # Safety
/// `channel` is NULL or a live handle from `atbus_create`/`atbus_open`.
unsafe fn handle<'a>(channel: *const atbus_channel) -> Result<&'a atbus_channel, Failure> {
    if channel.is_null() {
        return Err(invalid("the channel handle is NULL"));
    }
    if !channel.is_aligned() {
        return Err(invalid("the channel handle is not a handle (misaligned)"));
    }
    // SAFETY: non-NULL and aligned; the caller promises it is a live handle, i.e. a
    // pointer from Box::into_raw not yet passed to atbus_close. Handles are only ever
    // shared (`&`): all mutation inside goes through Sync types.
    Ok(unsafe { &*channel })
}

/// Reads a channel name.
///
/// # Safety
/// `name` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<&'a str, Failure> {
    if name.is_null() {
        return Err(invalid("the channel name is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string valid for the
    // duration of the call; the borrow does not outlive the call.
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str()
        .map_err(|_| invalid(format!("the channel name {name:?} is not valid UTF-8")))
}

fn lock_reader(h: &atbus_channel) -> MutexGuard<'_, Option<Reader>> {
    h.reader.lock().unwrap_or_else(|poisoned| {
        // A panic inside a receive left the reader in an unknown state: drop it (giving
        // the role back as a crashed reader would) and take the role anew next time.
        let mut guard = poisoned.into_inner();
        *guard = None;
        h.reader.clear_poison();
        guard
    })
}

/// The reader in this handle's slot, taking the reader role first if the handle does not
/// hold it yet.
fn reader_role<'a>(
    h: &atbus_channel,
    slot: &'a mut Option<Reader>,
) -> atbus::Result<&'a mut Reader> {
    match slot {
        Some(reader) => Ok(reader),
        empty => Ok(empty.insert(h.channel.reader()?)),
    }
}

fn new_handle(channel: Channel) -> *mut atbus_channel {
    let writer = channel.writer();
    Box::into_raw(Box::new(atbus_channel {
        channel,
        writer,
        reader: Mutex::new(None),
    }))
}

/// Fills `*out` with the default configuration and sets `out->size` to
/// `sizeof(atbus_config)`: node size 128, timeout 1000 ms, 4 write retries, mode 0600,
/// no protect area, dead-writer detection and checksums on. Change fields afterwards.
///
/// Returns `ATBUS_OK`, or `ATBUS_ERR_INVALID_ARGUMENT` if `out` is NULL or misaligned.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `atbus_config`.
#[no_mangle]
pub unsafe extern "C" fn atbus_config_init(out: *mut atbus_config) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        // `write` does not read or drop the (possibly uninitialised) old value.
        unsafe { out.write(atbus_config::from(&Config::default())) };
        Ok(())
    })
}

/// The same as `atbus_config_init`, under its older name.
///
/// # Safety
/// As `atbus_config_init`.
#[no_mangle]
pub unsafe extern "C" fn atbus_config_default(out: *mut atbus_config) -> i32 {
    // SAFETY: the caller's promise is the one atbus_config_init needs.
    unsafe { atbus_config_init(out) }
}

/// The largest `size` an `atbus_config` is believed to have: anything larger is taken
/// for an uninitialised field rather than a struct from a newer header.
const CONFIG_MAX_SIZE: usize = 4096;

/// Reads the caller's configuration: the fields that fit in its `size` bytes, the
/// defaults for the rest.
///
/// # Safety
/// `config` is non-NULL and aligned, and points to an `atbus_config` of `config->size`
/// readable bytes as the caller's header declares it.
unsafe fn config_arg(config: *const atbus_config) -> Result<Config, Failure> {
    // SAFETY: non-NULL and aligned (the caller checked); every version of the struct
    // starts with its `size_t size`.
    let size = unsafe { config.cast::<usize>().read() };
    if size < CONFIG_MIN_SIZE {
        return Err(invalid(format!(
            "config->size is {size}, smaller than the first version of atbus_config \
             ({CONFIG_MIN_SIZE} bytes): fill the struct with atbus_config_init(), which \
             sets size, then change fields"
        )));
    }
    if size > CONFIG_MAX_SIZE {
        return Err(invalid(format!(
            "config->size is {size}, larger than any atbus_config: is the struct \
             uninitialised? Fill it with atbus_config_init(), then change fields"
        )));
    }
    let mut known = atbus_config::from(&Config::default());
    let len = size.min(std::mem::size_of::<atbus_config>());
    // SAFETY: the caller promises `size` >= `len` readable bytes at `config`; `known` is
    // a local of at least `len` bytes, so the two do not overlap. The bytes are fields
    // of the same types laid out by the same C rules (a prefix of this struct, ending on
    // a field boundary: see CONFIG_MIN_SIZE), so every field copied holds a value of its
    // type; the `size` copied over is overwritten below.
    unsafe {
        std::ptr::copy_nonoverlapping(config.cast::<u8>(), (&raw mut known).cast::<u8>(), len)
    };
    known.size = std::mem::size_of::<atbus_config>();
    Ok(Config::try_from(&known)?)
}

/// Creates channel `name` of `size` bytes (header and node heads included) and opens a
/// handle on it. The memory is reserved now, so a too-small `/dev/shm` fails here with
/// `ATBUS_ERR_NO_SPACE` rather than with SIGBUS later.
///
/// `name` is a POSIX shared-memory name: one leading slash and no other, like
/// `"/orders"`, at most 255 bytes, UTF-8. (A name with more slashes, like `"./orders"`,
/// is taken as a file path, e.g. on tmpfs or hugetlbfs; a name without any slash is
/// `ATBUS_ERR_INVALID_ARGUMENT`.) `config` NULL means the defaults.
///
/// On success `*out` is a new handle that the caller owns and frees with `atbus_close`;
/// on failure `*out` is set to NULL (if `out` is not NULL). Returns `ATBUS_OK`,
/// `ATBUS_ERR_EXISTS`, `ATBUS_ERR_INVALID_ARGUMENT` (bad name, bad config, size too
/// small for two nodes or too large for the address space), `ATBUS_ERR_NO_SPACE`,
/// `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO`. The channel exists until `atbus_unlink`,
/// even after every handle is closed.
///
/// `config->size` must be `sizeof(atbus_config)` (`atbus_config_init` sets it); a size
/// too small for every field of the first version, or above 4096, is
/// `ATBUS_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `config` is NULL or points to a valid
/// `atbus_config` whose `size` bytes are readable; `out` is NULL or points to writable
/// memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn atbus_create(
    name: *const c_char,
    size: usize,
    config: *const atbus_config,
    out: *mut *mut atbus_channel,
) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { name_arg(name) }?;
        let config = if config.is_null() {
            Config::default()
        } else {
            if !config.is_aligned() {
                return Err(invalid("config is not aligned for atbus_config"));
            }
            // SAFETY: non-NULL and aligned; the caller promises it points to a valid
            // atbus_config of `config->size` bytes. Copied out at once.
            unsafe { config_arg(config) }?
        };
        if size > isize::MAX as usize {
            // The core would fail resizing the object (an `off_t` is signed): say why.
            return Err(invalid(format!(
                "channel size {size} is beyond any address space; ask for at most a \
                 fraction of /dev/shm"
            )));
        }
        let channel = Channel::create(name, size, &config)?;
        // SAFETY: checked above; the handle's ownership passes to the caller.
        unsafe { out.write(new_handle(channel)) };
        Ok(())
    })
}

/// Opens existing channel `name` (same name rules as `atbus_create`), validating its
/// header. Waits up to 200 ms for a creator that is still initialising it.
///
/// On success `*out` is a new handle that the caller owns and frees with `atbus_close`;
/// on failure `*out` is set to NULL (if `out` is not NULL). Returns `ATBUS_OK`,
/// `ATBUS_ERR_NOT_FOUND`, `ATBUS_ERR_INVALID_ARGUMENT` (bad name),
/// `ATBUS_ERR_BAD_SEGMENT`, `ATBUS_ERR_NOT_INITIALIZED`, `ATBUS_ERR_PERMISSION` or
/// `ATBUS_ERR_IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or points to writable memory
/// for one pointer.
#[no_mangle]
pub unsafe extern "C" fn atbus_open(name: *const c_char, out: *mut *mut atbus_channel) -> i32 {
    // SAFETY: the caller's promises are the ones `atbus_open_ex` needs.
    unsafe { atbus_open_ex(name, 0, out) }
}

/// `atbus_open` with `flags`: 0, or `ATBUS_OPEN_ALLOW_FOREIGN` to open a channel whose
/// object is owned by another user or writable by group or others (refused by default
/// with `ATBUS_ERR_UNTRUSTED`). Unknown flag bits return `ATBUS_ERR_INVALID_ARGUMENT`.
/// `atbus_open(name, out)` is `atbus_open_ex(name, 0, out)`.
///
/// # Safety
/// As `atbus_open`.
#[no_mangle]
pub unsafe extern "C" fn atbus_open_ex(
    name: *const c_char,
    flags: u32,
    out: *mut *mut atbus_channel,
) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { name_arg(name) }?;
        if flags & !ATBUS_OPEN_ALLOW_FOREIGN != 0 {
            return Err(invalid(format!(
                "unknown atbus_open_ex flags {flags:#x}: pass 0 or ATBUS_OPEN_ALLOW_FOREIGN"
            )));
        }
        let channel = OpenOptions::new()
            .allow_foreign_owner(flags & ATBUS_OPEN_ALLOW_FOREIGN != 0)
            .open(name)?;
        // SAFETY: checked above; the handle's ownership passes to the caller.
        unsafe { out.write(new_handle(channel)) };
        Ok(())
    })
}

/// Closes a handle: gives back the reader role if it holds it and unmaps the channel.
/// The channel itself stays (see `atbus_unlink`). NULL is a no-op. This closes the
/// handle's readiness fd (`atbus_reader_fd`): remove it from your event loop first.
///
/// # Safety
/// `channel` is NULL or a handle from `atbus_create`/`atbus_open` not closed before, and
/// no other thread uses it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn atbus_close(channel: *mut atbus_channel) {
    if channel.is_null() {
        return;
    }
    // Nothing to report from a close; a panic (a bug) is swallowed, never unwound into C.
    let _ = entry(|| {
        // SAFETY: the caller promises this is a live handle made by Box::into_raw in
        // `new_handle`, closed only now and used by no one else: we own it again.
        drop(unsafe { Box::from_raw(channel) });
        Ok(())
    });
}

/// Removes channel `name`. Processes that have it open keep working on the old memory;
/// the name can be created anew at once.
///
/// Returns `ATBUS_OK`, `ATBUS_ERR_NOT_FOUND`, `ATBUS_ERR_INVALID_ARGUMENT` (bad name),
/// `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn atbus_unlink(name: *const c_char) -> i32 {
    entry(|| {
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { name_arg(name) }?;
        Channel::unlink(name)?;
        Ok(())
    })
}

/// Sends one message of `len` bytes from `data` (copied; the caller keeps `data`).
/// `data` may be NULL when `len` is 0: empty messages are messages too. Never blocks.
///
/// Returns `ATBUS_OK` (the message will be delivered), `ATBUS_ERR_FULL` (no room now;
/// nothing was written), `ATBUS_ERR_TOO_LARGE` (can never fit), `ATBUS_ERR_ABANDONED`
/// (this writer stalled past the channel's timeout and the message was not delivered) or
/// `ATBUS_ERR_INVALID_ARGUMENT`. Safe to call from several threads on one handle.
///
/// # Safety
/// `channel` is NULL or a live handle; `data` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn atbus_send(
    channel: *mut atbus_channel,
    data: *const c_void,
    len: usize,
) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        // SAFETY: the caller promises `data` is readable for `len` bytes.
        let message = unsafe { message_arg(h, data, len) }?;
        h.writer.try_send(message)?;
        Ok(())
    })
}

/// Like `atbus_send`, but while the ring is full waits up to `timeout_ms` milliseconds
/// for the reader to free space (polling briefly, then sleeping on a futex in the channel
/// that the reader signals when it frees space). Returns `ATBUS_ERR_TIMEOUT` if it stayed
/// full, otherwise as `atbus_send`. A timeout too long for the clock (e.g. `UINT64_MAX`)
/// waits as long as it takes.
///
/// # Safety
/// As `atbus_send`.
#[no_mangle]
pub unsafe extern "C" fn atbus_send_timeout(
    channel: *mut atbus_channel,
    data: *const c_void,
    len: usize,
    timeout_ms: u64,
) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        // SAFETY: the caller promises `data` is readable for `len` bytes.
        let message = unsafe { message_arg(h, data, len) }?;
        h.writer
            .send_timeout(message, Duration::from_millis(timeout_ms))?;
        Ok(())
    })
}

/// One message of a batch for `atbus_send_batch`: `len` bytes at `data` (`data` may be
/// NULL when `len` is 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct atbus_message {
    /// The message's bytes.
    pub data: *const c_void,
    /// How many.
    pub len: usize,
}

/// Messages `atbus_send_batch` takes in one call, at most.
pub const ATBUS_BATCH_MAX: usize = 64;

/// Sends several messages with one claim of space in the ring: a prefix of the `count`
/// messages at `messages` (at most `ATBUS_BATCH_MAX`, and as many as fit now), each
/// delivered as an ordinary message, in order. Sets `*sent` to how many were sent (at
/// least 1 on `ATBUS_OK`; call again with the rest). Never blocks.
///
/// Fails, with `*sent` = 0 and nothing sent, as `atbus_send` fails for the first message
/// (`ATBUS_ERR_FULL`, `ATBUS_ERR_TOO_LARGE`, `ATBUS_ERR_ABANDONED`,
/// `ATBUS_ERR_INVALID_ARGUMENT`); a later message too large for the channel ends the
/// prefix before it. `count` 0 sends nothing and returns `ATBUS_OK`.
///
/// # Safety
/// `channel` is NULL or a live handle; `messages` is NULL (only with `count` 0) or
/// readable for `count` `atbus_message`s, each of whose `data` is NULL or readable for
/// its `len` bytes; `sent` is NULL or points to writable memory for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn atbus_send_batch(
    channel: *mut atbus_channel,
    messages: *const atbus_message,
    count: usize,
    sent: *mut usize,
) -> i32 {
    entry(|| {
        check_out(sent, "sent")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { sent.write(0) };
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        if count == 0 {
            return Ok(());
        }
        if messages.is_null() || !messages.is_aligned() {
            return Err(invalid(format!(
                "messages is NULL or misaligned but count is {count}"
            )));
        }
        let max = h.writer.max_message_len();
        let mut batch: [&[u8]; ATBUS_BATCH_MAX] = [&[]; ATBUS_BATCH_MAX];
        let mut n = 0;
        for i in 0..count.min(ATBUS_BATCH_MAX) {
            // SAFETY: i < count, and the caller promises `count` readable messages.
            let m = unsafe { messages.add(i).read() };
            if i > 0 && m.len > max {
                break; // ends the prefix; the first one's error is reported as such
            }
            // SAFETY: the caller promises `data` is NULL or readable for `len` bytes.
            batch[n] = unsafe { message_arg(h, m.data, m.len) }?;
            n += 1;
        }
        let done = h.writer.try_send_batch(&batch[..n])?;
        // SAFETY: checked non-NULL and aligned above.
        unsafe { sent.write(done) };
        Ok(())
    })
}

/// The message argument of a send, checked.
///
/// # Safety
/// `data` is NULL or readable for `len` bytes for the life of the returned slice.
unsafe fn message_arg<'a>(
    h: &atbus_channel,
    data: *const c_void,
    len: usize,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid(format!("data is NULL but len is {len}")));
    }
    // Refuse before building a slice: a len beyond isize::MAX is no valid slice.
    let max = h.writer.max_message_len();
    if len > max {
        return Err(Error::TooLarge { len, max }.into());
    }
    // SAFETY: non-NULL; the caller promises `len` readable bytes that stay valid and
    // unchanged for the call; u8 has alignment 1; len <= max_message_len, which is below
    // the channel's mapped size and so below isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// Receives the next message into `buf` (capacity `cap` bytes) and sets `*out_len` to
/// its length. Never blocks.
///
/// The first call on a handle takes the channel's reader role, which the handle keeps
/// until `atbus_release_reader` or `atbus_close`; a channel has one reader across all
/// processes (the role of a dead process is taken over).
///
/// Returns:
/// * `ATBUS_OK`: `buf[0..*out_len]` holds the message;
/// * `ATBUS_ERR_EMPTY`: nothing ready now (`*out_len` = 0);
/// * `ATBUS_ERR_BUFFER_TOO_SMALL`: `*out_len` = the size needed; the message stays in the
///   ring, call again with a larger buffer (`buf` may be NULL with `cap` 0 to ask for
///   the size);
/// * `ATBUS_ERR_READER_BUSY`: another live process or handle holds the reader role;
/// * `ATBUS_ERR_INVALID_ARGUMENT`: NULL `channel` or `out_len`, or NULL `buf` with
///   `cap` > 0.
///
/// Torn, corrupt and padding blocks on the way are skipped and counted in the stats.
/// Calls from several threads on one handle are serialised.
///
/// # Safety
/// `channel` is NULL or a live handle; `buf` is NULL or writable for `cap` bytes;
/// `out_len` is NULL or points to writable memory for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn atbus_recv(
    channel: *mut atbus_channel,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: the caller's promises are the ones `recv` needs.
    entry(|| unsafe { recv(channel, buf, cap, out_len, None) })
}

/// Like `atbus_recv`, but waits up to `timeout_ms` milliseconds for a message: polls
/// a few times, then sleeps on a futex in the channel that writers signal (an
/// idle reader uses no CPU). Returns `ATBUS_ERR_TIMEOUT` (`*out_len` = 0) if nothing
/// arrived, otherwise as `atbus_recv`. A timeout too long for the clock (e.g.
/// `UINT64_MAX`) waits as long as it takes. While it waits, other `atbus_recv` calls on
/// the same handle wait for it.
///
/// # Safety
/// As `atbus_recv`.
#[no_mangle]
pub unsafe extern "C" fn atbus_recv_timeout(
    channel: *mut atbus_channel,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    timeout_ms: u64,
) -> i32 {
    let timeout = Duration::from_millis(timeout_ms);
    // SAFETY: the caller's promises are the ones `recv` needs.
    entry(|| unsafe { recv(channel, buf, cap, out_len, Some(timeout)) })
}

/// The body of `atbus_recv` (`timeout` None) and `atbus_recv_timeout`.
///
/// # Safety
/// As `atbus_recv`.
unsafe fn recv(
    channel: *mut atbus_channel,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    check_out(out_len, "out_len")?;
    // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
    unsafe { out_len.write(0) };
    // SAFETY: the caller promises NULL or a live handle.
    let h = unsafe { handle(channel) }?;
    let buf: &mut [u8] = if cap == 0 {
        &mut []
    } else if buf.is_null() {
        return Err(invalid(format!("buf is NULL but cap is {cap}")));
    } else {
        // A slice shorter than the caller's buffer is sound, one beyond isize::MAX is
        // not; no message is that long anyway.
        let cap = cap.min(isize::MAX as usize);
        // SAFETY: non-NULL; the caller promises `cap` writable bytes, not aliased by
        // anything we touch, valid for the call; u8 has alignment 1.
        unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) }
    };
    let mut slot = lock_reader(h);
    let reader = reader_role(h, &mut slot)?;
    let received = match timeout {
        None => reader.try_recv(buf),
        Some(timeout) => reader.recv_timeout(buf, timeout),
    };
    match received {
        Ok(n) => {
            // SAFETY: checked non-NULL and aligned above.
            unsafe { out_len.write(n) };
            Ok(())
        }
        Err(e) => {
            if let Error::BufferTooSmall { needed } = e {
                // SAFETY: checked non-NULL and aligned above.
                unsafe { out_len.write(needed) };
            }
            Err(e.into())
        }
    }
}

/// The reader's readiness fd, for an event loop (epoll, poll, select, libuv's `uv_poll`):
/// it becomes readable (POLLIN) when this handle's reader is armed with
/// `atbus_reader_arm` and a writer publishes, or when a block whose writer may have died
/// needs another look. Takes the reader role if this handle does not hold it yet.
///
/// The fd belongs to the handle: do not close it. It stays the same until
/// `atbus_release_reader` or `atbus_close`, which close it: remove it from your event
/// loop *before* either call (`epoll_ctl(EPOLL_CTL_DEL)`, `uv_poll_stop` and
/// `uv_close`; libuv forbids closing an fd it still watches, and a closed fd's number
/// may be reused at once by the next `open`).
/// The first call creates the channel's doorbell FIFO next to the segment
/// (`/dev/shm/NAME.bell` for `/NAME`), with the segment's permissions.
///
/// Returns the fd (>= 0), or a negative `ATBUS_ERR_*` code: `ATBUS_ERR_READER_BUSY`
/// (another live process or handle holds the role), `ATBUS_ERR_INVALID_ARGUMENT` (NULL
/// handle), `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO` (the FIFO could not be created; see
/// `atbus_last_error`).
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_reader_fd(channel: *mut atbus_channel) -> i32 {
    use std::os::fd::AsRawFd;
    let mut fd = -1;
    let code = entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        let mut slot = lock_reader(h);
        let reader = reader_role(h, &mut slot)?;
        fd = reader.readiness_fd()?.as_raw_fd();
        Ok(())
    });
    if code == ATBUS_OK {
        fd
    } else {
        code
    }
}

/// Arms the reader before the event loop waits on `atbus_reader_fd`: tells writers the
/// reader is going to sleep, then looks once more. Takes the reader role if this handle
/// does not hold it yet.
///
/// Returns:
/// * 0: armed; nothing is ready and it is safe to wait for POLLIN on the fd;
/// * 1: a message is ready: call `atbus_recv` (the reader is not armed);
/// * a negative `ATBUS_ERR_*` code, as `atbus_reader_fd`.
///
/// No wake-up is lost: a message published after the arm is either seen by its last look
/// (1) or makes the fd readable. After POLLIN, call `atbus_recv` until `ATBUS_ERR_EMPTY`
/// (that also drains the fd), then arm again. While the reader is not armed, writers
/// make no system call to notify it.
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_reader_arm(channel: *mut atbus_channel) -> i32 {
    let mut ready = false;
    let code = entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        let mut slot = lock_reader(h);
        let reader = reader_role(h, &mut slot)?;
        ready = reader.arm()? == atbus::Arm::Ready;
        Ok(())
    });
    if code == ATBUS_OK {
        i32::from(ready)
    } else {
        code
    }
}

/// Turns manual commit on (`on != 0`) or off for this handle's reader (taking the role if
/// the handle does not hold it yet). With it on, received messages stay in the ring and
/// the read cursor, where a successor reader starts after a crash or
/// `atbus_release_reader`, moves only on `atbus_reader_commit`: a reader that forwards
/// messages elsewhere commits once the other side acknowledged them. Turning it off
/// commits everything received. See `Reader::set_manual_commit` and docs/protocol.md.
///
/// Returns `ATBUS_OK` or a negative `ATBUS_ERR_*` code, as `atbus_reader_fd`.
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_reader_set_manual_commit(
    channel: *mut atbus_channel,
    on: i32,
) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        let mut slot = lock_reader(h);
        let reader = reader_role(h, &mut slot)?;
        Ok(reader.set_manual_commit(on != 0)?)
    })
}

/// The position after the last message this handle's reader received, for
/// `atbus_reader_commit`. Writes it to `*out`.
///
/// Returns `ATBUS_OK`, or `ATBUS_ERR_INVALID_ARGUMENT` for a NULL `channel` or `out` or
/// when the handle does not hold the reader role.
///
/// # Safety
/// `channel` is NULL or a live handle; `out` is NULL or points to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn atbus_reader_position(channel: *mut atbus_channel, out: *mut u64) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let slot = lock_reader(h);
        let Some(reader) = slot.as_ref() else {
            return Err(invalid("this handle does not hold the reader role"));
        };
        // SAFETY: non-NULL (checked), and the caller promises it is writable.
        unsafe { out.write(reader.position()) };
        Ok(())
    })
}

/// Hands every message received before `position` (a value `atbus_reader_position` gave
/// right after receiving the last message to hand back) to the writers for good and
/// moves the read cursor there; with manual commit on.
///
/// Returns `ATBUS_OK`, or `ATBUS_ERR_INVALID_ARGUMENT` for a NULL handle, a handle not
/// holding the reader role, or a position outside (last commit, current position]
/// (nothing changes then; `atbus_last_error` says which range was allowed).
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_reader_commit(channel: *mut atbus_channel, position: u64) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        let mut slot = lock_reader(h);
        let Some(reader) = slot.as_mut() else {
            return Err(invalid("this handle does not hold the reader role"));
        };
        Ok(reader.commit(position)?)
    })
}

/// Gives back the reader role if this handle holds it (releasing every consumed node to
/// the writers), so another handle or process can read. This closes the readiness fd
/// (`atbus_reader_fd`): remove it from your event loop first. The next `atbus_recv` on this
/// handle takes the role again. Returns `ATBUS_OK`, also when the handle did not hold
/// the role, or `ATBUS_ERR_INVALID_ARGUMENT` for a NULL handle.
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_release_reader(channel: *mut atbus_channel) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        *lock_reader(h) = None;
        Ok(())
    })
}

/// Fills `*out` with a snapshot of the channel's shared counters (those of every process
/// using the channel, not just this handle): the counters that fit in `out->size` bytes,
/// which the caller sets to `sizeof(atbus_stats)` before the call. Nothing past
/// `out->size` bytes is written, and nothing past the counters this library knows.
///
/// Returns `ATBUS_OK` or `ATBUS_ERR_INVALID_ARGUMENT`: NULL `channel` or `out`, or an
/// `out->size` that no header gives (less than room for one counter, not a multiple of
/// 8, or above 4096: usually a `size` left unset); nothing is written then.
///
/// # Safety
/// `channel` is NULL or a live handle; `out` is NULL or points to writable memory of
/// `out->size` bytes (an `atbus_stats` of the caller's header).
#[no_mangle]
pub unsafe extern "C" fn atbus_get_stats(
    channel: *const atbus_channel,
    out: *mut atbus_stats,
) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: non-NULL and aligned (checked); every header's struct starts with
        // `size`, which the caller promises to have set.
        let size = unsafe { std::ptr::addr_of!((*out).size).read() };
        let ours = std::mem::size_of::<atbus_stats>();
        if size < STATS_FIRST_COUNTER + 8 || size % 8 != 0 || size > STATS_MAX_SIZE {
            return Err(invalid(format!(
                "atbus_stats.size is {size}: set it to sizeof(atbus_stats) ({ours} with \
                 this library's header) before calling atbus_get_stats"
            )));
        }
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { handle(channel) }?;
        let stats = atbus_stats::from(h.channel.stats());
        let end = size.min(ours);
        // SAFETY: `out` is aligned and the caller promises `size` writable bytes there;
        // bytes STATS_FIRST_COUNTER..end lie within both `size` and our struct, so the
        // copy reads `stats` and writes `*out` in bounds, whole u64 counters only (both
        // ends are multiples of 8), and the two never overlap (one is on our stack).
        unsafe {
            let from = std::ptr::addr_of!(stats).cast::<u8>();
            std::ptr::copy_nonoverlapping(
                from.add(STATS_FIRST_COUNTER),
                out.cast::<u8>().add(STATS_FIRST_COUNTER),
                end - STATS_FIRST_COUNTER,
            );
        }
        Ok(())
    })
}

/// The largest message, in bytes, this channel accepts (half its ring), or 0 if
/// `channel` is NULL.
///
/// # Safety
/// `channel` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn atbus_max_message_len(channel: *const atbus_channel) -> usize {
    let mut len = 0;
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        len = unsafe { handle(channel) }?.channel.max_message_len();
        Ok(())
    });
    len
}

/// A static description of a return code, like "no message ready" for
/// `ATBUS_ERR_EMPTY`. Never NULL; an unknown code gives "unknown atbus error code". The
/// string is owned by the library and must not be freed.
#[no_mangle]
pub extern "C" fn atbus_strerror(code: i32) -> *const c_char {
    let s: &'static CStr = match code {
        ATBUS_OK => c"success",
        ATBUS_ERR_EMPTY => c"no message ready",
        ATBUS_ERR_FULL => c"channel is full",
        ATBUS_ERR_TOO_LARGE => c"message can never fit in this channel",
        ATBUS_ERR_BUFFER_TOO_SMALL => c"buffer too small for the next message",
        ATBUS_ERR_INVALID_ARGUMENT => c"invalid argument",
        ATBUS_ERR_NOT_FOUND => c"channel not found",
        ATBUS_ERR_EXISTS => c"channel already exists",
        ATBUS_ERR_BAD_SEGMENT => c"not a usable atbus segment",
        ATBUS_ERR_NOT_INITIALIZED => c"channel not initialised by its creator yet",
        ATBUS_ERR_READER_BUSY => c"the reader role is held by another live reader",
        ATBUS_ERR_TIMEOUT => c"timed out",
        ATBUS_ERR_ABANDONED => c"message abandoned: this writer stalled past the timeout",
        ATBUS_ERR_PERMISSION => c"permission denied",
        ATBUS_ERR_NO_SPACE => c"no space for the channel",
        ATBUS_ERR_IO => c"operating-system error",
        ATBUS_ERR_PANIC => c"internal error in atbus (a bug)",
        ATBUS_ERR_DAMAGED => c"message damaged while read in place",
        ATBUS_ERR_UNTRUSTED => {
            c"channel owned by another user, writable by others, or a symbolic link"
        }
        ATBUS_ERR_READER_ROLE_LOST => c"another process took the reader role from this handle",
        ATBUS_ERR_NAME_TAKEN => c"endpoint name held by a live process",
        ATBUS_ERR_NO_SUCH_ENDPOINT => c"no endpoint of that name on the bus",
        ATBUS_ERR_PEER_GONE => c"the peer endpoint left the bus or died",
        ATBUS_ERR_DIRECTORY_FULL => c"every record of the bus directory is in use",
        ATBUS_ERR_LOCK_BUSY => c"the bus directory lock is held by a live process",
        _ => c"unknown atbus error code",
    };
    s.as_ptr()
}

/// The full message of the last failure of an atbus function on the calling thread: what
/// failed, on which channel, and what to do next. Empty ("") if none failed yet; calls
/// that succeed leave it unchanged. Never NULL. The string is owned by the library and
/// stays valid until the next atbus call on this thread fails.
///
/// `ATBUS_ERR_EMPTY` and `ATBUS_ERR_FULL` are the hot path of a polling reader or a
/// writer racing a slow reader, so they record a fixed text without allocating:
/// "no message ready" and "channel is full: retry later (or use atbus_send_timeout)",
/// naming no channel.
#[no_mangle]
pub extern "C" fn atbus_last_error() -> *const c_char {
    static EMPTY: &CStr = c"";
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow().as_deref() {
            Ok(LastError::Static(s)) => s.as_ptr(),
            // The CString's heap buffer stays put until the slot is replaced, which only
            // a later failure on this same thread does.
            Ok(LastError::Owned(s)) => s.as_ptr(),
            Err(_) => EMPTY.as_ptr(),
        })
        .unwrap_or(EMPTY.as_ptr())
}
