//! The C ABI of the bus (`atbus-bus`): a bus of named endpoints on one host, `send_to`,
//! request/reply and membership, declared in `include/atbus.h` with the channel calls
//! and following the same conventions (see `ffi.rs`): `int32_t` results, `ATBUS_OK` or
//! a negative `ATBUS_ERR_*` code, `atbus_last_error` for the full message, NULL pointers
//! and bad names refused with `ATBUS_ERR_INVALID_ARGUMENT`, no panic unwinding into C.
//!
//! Timeouts: `timeout_ms` 0 does not wait (`ATBUS_ERR_EMPTY` / `ATBUS_ERR_FULL`),
//! `UINT64_MAX` waits as long as it takes, anything else at most that many milliseconds
//! (`ATBUS_ERR_TIMEOUT`).

use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

// `::` because the handle type `atbus_bus` shadows the crate's name.
use ::atbus_bus::{
    Arm, Bus, Endpoint, Envelope, Error as BusError, Kind, Message as BusMessage, Name,
};

use super::{
    check_out, entry, error_code, invalid, Failure, Message, ATBUS_ERR_BAD_SEGMENT,
    ATBUS_ERR_BUFFER_TOO_SMALL, ATBUS_ERR_DIRECTORY_FULL, ATBUS_ERR_EMPTY, ATBUS_ERR_EXISTS,
    ATBUS_ERR_FULL, ATBUS_ERR_INVALID_ARGUMENT, ATBUS_ERR_IO, ATBUS_ERR_LOCK_BUSY,
    ATBUS_ERR_NAME_TAKEN, ATBUS_ERR_NOT_FOUND, ATBUS_ERR_NOT_INITIALIZED, ATBUS_ERR_NO_SPACE,
    ATBUS_ERR_NO_SUCH_ENDPOINT, ATBUS_ERR_PEER_GONE, ATBUS_ERR_PERMISSION, ATBUS_ERR_TIMEOUT,
    ATBUS_ERR_UNTRUSTED, ATBUS_OK,
};

/// `atbus_bus_open` flag: create the bus if there is none (with room for 256 endpoints).
pub const ATBUS_BUS_CREATE: u32 = 1u32;

/// `atbus_envelope.kind`: a plain message from `atbus_endpoint_send_to`.
pub const ATBUS_MSG_DATA: u32 = 0u32;
/// `atbus_envelope.kind`: a request from `atbus_endpoint_request`; answer it with
/// `atbus_endpoint_reply`.
pub const ATBUS_MSG_REQUEST: u32 = 1u32;
/// `atbus_envelope.kind`: a reply. `atbus_endpoint_recv` returns one only when it did not
/// fit the buffer given to `atbus_endpoint_request` (see there); other replies go to the
/// request waiting for them, and replies no request waits for are dropped (counted in
/// the endpoint's Rust `EndpointStats`, not yet visible from C).
pub const ATBUS_MSG_REPLY: u32 = 2u32;

/// An open bus: a directory of named endpoints in shared memory. Opaque: open it with
/// `atbus_bus_open`, free it with `atbus_bus_close`. May be used by several threads at
/// once.
pub struct atbus_bus {
    bus: Bus,
}

/// An endpoint joined to a bus: a name with its own inbox. Opaque: made by
/// `atbus_bus_join`, freed (leaving the bus) by `atbus_endpoint_close`.
///
/// Calls on one endpoint from several threads take turns: a call that waits (a request
/// waiting for its reply, a receive with a timeout) holds up the others on the same
/// endpoint until it returns.
pub struct atbus_endpoint {
    state: Mutex<EndpointState>,
}

// Both handles may be used by several threads at once (the docs above say so).
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<atbus_bus>();
    shareable::<atbus_endpoint>();
};

/// What an endpoint handle holds behind its lock.
struct EndpointState {
    endpoint: Endpoint,
    /// Messages taken from the inbox but not yet handed to C, oldest first: one too
    /// large for the buffer given to `atbus_endpoint_recv`, or a reply too large for the
    /// buffer given to `atbus_endpoint_request`. `atbus_endpoint_recv` returns them
    /// before anything else.
    held: VecDeque<BusMessage>,
}

/// Who sent a received message and what it is. Filled by `atbus_endpoint_recv`; pass a
/// request's envelope to `atbus_endpoint_reply` to answer it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct atbus_envelope {
    /// `ATBUS_MSG_DATA`, `ATBUS_MSG_REQUEST` or `ATBUS_MSG_REPLY`.
    pub kind: u32,
    /// The sender's pid (from its inbox block header, as trusted as the processes that
    /// may write the inbox).
    pub from_pid: u32,
    /// The request id for `ATBUS_MSG_REQUEST` and `ATBUS_MSG_REPLY`, 0 for data.
    pub correlation: u64,
    /// The sender's generation: unique per bus and join, so a restarted sender is told
    /// from its predecessor.
    pub from_generation: u64,
    /// The sender's endpoint name (1 to 63 bytes), NUL-terminated, NUL-padded.
    pub from: [c_char; 64],
}

/// The C return code of a bus error.
pub fn bus_error_code(e: &BusError) -> i32 {
    use BusError as E;
    // `Error` is `#[non_exhaustive]`: a variant added later is an operating-system-style
    // failure to C (its message in `atbus_last_error` says what).
    match e {
        E::InvalidName { .. } | E::NotARequest => ATBUS_ERR_INVALID_ARGUMENT,
        E::AlreadyExists { .. } => ATBUS_ERR_EXISTS,
        E::NotFound { .. } => ATBUS_ERR_NOT_FOUND,
        E::NotABus { .. } | E::Incompatible { .. } | E::Corrupt { .. } => ATBUS_ERR_BAD_SEGMENT,
        E::NotInitialized { .. } => ATBUS_ERR_NOT_INITIALIZED,
        E::ForeignDirectory { .. } | E::Symlink { .. } => ATBUS_ERR_UNTRUSTED,
        E::LockBusy { .. } => ATBUS_ERR_LOCK_BUSY,
        E::DirectoryFull { .. } => ATBUS_ERR_DIRECTORY_FULL,
        E::NameTaken { .. } => ATBUS_ERR_NAME_TAKEN,
        E::NoSuchEndpoint { .. } => ATBUS_ERR_NO_SUCH_ENDPOINT,
        E::PeerGone { .. } => ATBUS_ERR_PEER_GONE,
        E::ReadOnly { .. } => ATBUS_ERR_PERMISSION,
        E::Empty => ATBUS_ERR_EMPTY,
        E::Full => ATBUS_ERR_FULL,
        E::Timeout => ATBUS_ERR_TIMEOUT,
        E::Channel(e) => error_code(e),
        E::Io { source, .. } => match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => ATBUS_ERR_PERMISSION,
            Some(libc::ENOSPC) => ATBUS_ERR_NO_SPACE,
            _ => ATBUS_ERR_IO,
        },
        _ => ATBUS_ERR_IO,
    }
}

/// `atbus_last_error()` after `ATBUS_ERR_EMPTY` from a bus call.
const EMPTY_MESSAGE: &CStr = c"no message ready";
/// `atbus_last_error()` after `ATBUS_ERR_FULL` from a bus call.
const FULL_MESSAGE: &CStr =
    c"the destination's inbox is full: retry later, or pass a timeout_ms to wait for room";

impl From<BusError> for Failure {
    fn from(e: BusError) -> Failure {
        use BusError as E;
        let code = bus_error_code(&e);
        let message = match e {
            // The hot path of an event loop (receive until empty): no allocation.
            E::Empty => Message::Static(EMPTY_MESSAGE),
            E::Full => Message::Static(FULL_MESSAGE),
            E::ForeignDirectory { .. } => Message::Owned(format!(
                "{e} (from C: the bus can only be opened by its owner; unlink it and create \
                 it again)"
            )),
            _ => Message::Owned(e.to_string()),
        };
        Failure { code, message }
    }
}

/// How long a call may wait, from its `timeout_ms`.
enum Wait {
    Now,
    For(Duration),
    Forever,
}

impl Wait {
    fn from_ms(timeout_ms: u64) -> Wait {
        match timeout_ms {
            0 => Wait::Now,
            u64::MAX => Wait::Forever,
            ms => Wait::For(Duration::from_millis(ms)),
        }
    }
}

/// `ATBUS_ERR_BUFFER_TOO_SMALL` for a message of `len` bytes and a buffer of `cap`.
fn too_small(len: usize, cap: usize, what: &str) -> Failure {
    Failure {
        code: ATBUS_ERR_BUFFER_TOO_SMALL,
        message: Message::Owned(format!(
            "the {what} has {len} bytes but the buffer holds {cap}: call \
             atbus_endpoint_recv with a buffer of at least {len} bytes, which returns it \
             (it is kept, ahead of later messages)"
        )),
    }
}

/// Borrows a bus handle.
///
/// # Safety
/// `bus` is NULL or a live handle from `atbus_bus_open`.
unsafe fn bus_handle<'a>(bus: *const atbus_bus) -> Result<&'a atbus_bus, Failure> {
    if bus.is_null() {
        return Err(invalid("the bus handle is NULL"));
    }
    if !bus.is_aligned() {
        return Err(invalid("the bus handle is not a handle (misaligned)"));
    }
    // SAFETY: non-NULL and aligned; the caller promises a live handle (from
    // Box::into_raw, not yet passed to atbus_bus_close). Only ever shared: `Bus` is Sync.
    Ok(unsafe { &*bus })
}

/// Borrows an endpoint handle.
///
/// # Safety
/// `ep` is NULL or a live handle from `atbus_bus_join`.
unsafe fn endpoint_handle<'a>(ep: *const atbus_endpoint) -> Result<&'a atbus_endpoint, Failure> {
    if ep.is_null() {
        return Err(invalid("the endpoint handle is NULL"));
    }
    if !ep.is_aligned() {
        return Err(invalid("the endpoint handle is not a handle (misaligned)"));
    }
    // SAFETY: non-NULL and aligned; the caller promises a live handle (from
    // Box::into_raw, not yet passed to atbus_endpoint_close). Only ever shared: all
    // mutation goes through the Mutex inside.
    Ok(unsafe { &*ep })
}

/// Locks an endpoint's state. A panic inside an earlier call (a bug, reported as
/// `ATBUS_ERR_PANIC`) poisons the lock; the endpoint is kept (dropping it would make
/// this process leave the bus behind the caller's back) and used again.
fn lock(h: &atbus_endpoint) -> MutexGuard<'_, EndpointState> {
    h.state.lock().unwrap_or_else(|poisoned| {
        h.state.clear_poison();
        poisoned.into_inner()
    })
}

/// Reads a NUL-terminated UTF-8 argument (a bus or endpoint name).
///
/// # Safety
/// `text` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn text_arg<'a>(text: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string valid for the
    // duration of the call; the borrow does not outlive the call.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str()
        .map_err(|_| invalid(format!("{what} {text:?} is not valid UTF-8")))
}

/// The bytes of a message to send.
///
/// # Safety
/// `data` is NULL or readable for `len` bytes for the life of the returned slice.
unsafe fn bytes_arg<'a>(data: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(invalid(format!(
            "{what} has length {len}, beyond any address space"
        )));
    }
    // SAFETY: non-NULL; the caller promises `len` readable bytes that stay valid and
    // unchanged for the call; u8 has alignment 1; len <= isize::MAX (checked).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// The caller's receive buffer.
///
/// # Safety
/// `buf` is NULL or writable for `cap` bytes, not aliased, for the life of the slice.
unsafe fn buffer_arg<'a>(
    buf: *mut c_void,
    cap: usize,
    what: &str,
) -> Result<&'a mut [u8], Failure> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(invalid(format!("{what} is NULL but its capacity is {cap}")));
    }
    // A slice shorter than the caller's buffer is sound, one beyond isize::MAX is not;
    // no message is that long anyway.
    let cap = cap.min(isize::MAX as usize);
    // SAFETY: non-NULL; the caller promises `cap` writable bytes, not aliased by anything
    // we touch, valid for the call; u8 has alignment 1.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) })
}

/// An envelope as C sees it.
fn c_envelope(e: &Envelope) -> atbus_envelope {
    let kind = match e.kind {
        Kind::Data => ATBUS_MSG_DATA,
        Kind::Request => ATBUS_MSG_REQUEST,
        Kind::Reply => ATBUS_MSG_REPLY,
    };
    atbus_envelope {
        kind,
        from_pid: e.from_pid,
        correlation: e.correlation,
        from_generation: e.from_generation,
        from: c_name(e.from.as_bytes()),
    }
}

/// A name as a NUL-terminated, NUL-padded 64-byte C array (at most 63 bytes kept; names
/// never have more).
fn c_name(name: &[u8]) -> [c_char; 64] {
    let mut out = [0 as c_char; 64];
    for (o, &b) in out.iter_mut().zip(name.iter().take(63)) {
        *o = b as c_char;
    }
    out
}

/// Hands the oldest held message to the caller if it fits `buf`.
///
/// # Safety
/// `out_len` and `env` are non-NULL, aligned and writable.
unsafe fn deliver_held(
    s: &mut EndpointState,
    buf: &mut [u8],
    out_len: *mut usize,
    env: *mut atbus_envelope,
) -> Result<(), Failure> {
    let Some(front) = s.held.front() else {
        return Err(BusError::Empty.into()); // not reached: called with a message held
    };
    let len = front.payload.len();
    if len > buf.len() {
        // SAFETY: the caller promises `out_len` is valid.
        unsafe { out_len.write(len) };
        return Err(too_small(len, buf.len(), "next message"));
    }
    let m = s.held.pop_front().expect("looked at above");
    buf[..len].copy_from_slice(&m.payload);
    // SAFETY: the caller promises both are valid.
    unsafe {
        env.write(c_envelope(&m.envelope));
        out_len.write(len);
    }
    Ok(())
}

/// Opens bus `bus` (a shared-memory name: one leading slash, then 1 to 150 ASCII letters,
/// digits, `-`, `_` or `.`, like `"/prod"`). `flags` is 0 or `ATBUS_BUS_CREATE` (create
/// the bus if there is none; of several processes creating it at once, one creates and
/// the others open it).
///
/// On success `*out` is a new handle, freed with `atbus_bus_close`; on failure `*out` is
/// NULL (if `out` is not NULL). Returns `ATBUS_OK`, `ATBUS_ERR_NOT_FOUND` (no such bus,
/// without `ATBUS_BUS_CREATE`), `ATBUS_ERR_INVALID_ARGUMENT` (NULL pointer, bad name,
/// unknown flag), `ATBUS_ERR_BAD_SEGMENT` (not a bus directory, incompatible, corrupt),
/// `ATBUS_ERR_NOT_INITIALIZED`, `ATBUS_ERR_UNTRUSTED` (owned by another user, writable by
/// others, or a symbolic link), `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO`. The bus exists
/// until `atbus_bus_unlink`, even after every handle is closed.
///
/// # Safety
/// `bus` is NULL or a NUL-terminated string; `out` is NULL or points to writable memory
/// for one pointer.
#[no_mangle]
pub unsafe extern "C" fn atbus_bus_open(
    bus: *const c_char,
    flags: u32,
    out: *mut *mut atbus_bus,
) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = unsafe { text_arg(bus, "the bus name") }?;
        if flags & !ATBUS_BUS_CREATE != 0 {
            return Err(invalid(format!(
                "unknown atbus_bus_open flags {flags:#x}: pass 0 or ATBUS_BUS_CREATE"
            )));
        }
        let bus = if flags & ATBUS_BUS_CREATE != 0 {
            Bus::open_or_create(name)?
        } else {
            Bus::open(name)?
        };
        let handle = Box::into_raw(Box::new(atbus_bus { bus }));
        // SAFETY: checked above; the handle's ownership passes to the caller.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Closes a bus handle. Endpoints joined through it stay joined (each keeps the bus
/// open until `atbus_endpoint_close`); the bus itself stays until `atbus_bus_unlink`.
/// NULL is a no-op.
///
/// # Safety
/// `bus` is NULL or a handle from `atbus_bus_open` not closed before, and no other thread
/// uses it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn atbus_bus_close(bus: *mut atbus_bus) {
    if bus.is_null() {
        return;
    }
    // Nothing to report from a close; a panic (a bug) is swallowed, never unwound into C.
    let _ = entry(|| {
        // SAFETY: the caller promises a live handle made by Box::into_raw in
        // atbus_bus_open, closed only now and used by no one else: we own it again.
        drop(unsafe { Box::from_raw(bus) });
        Ok(())
    });
}

/// Removes bus `bus`: the inbox of every endpoint its directory lists, then the directory.
/// Processes still using it keep their mappings (their endpoints can no longer be found
/// by name); the name can be created anew at once. A directory too damaged to read is
/// removed all the same.
///
/// Returns `ATBUS_OK`, `ATBUS_ERR_NOT_FOUND`, `ATBUS_ERR_INVALID_ARGUMENT` (NULL or bad
/// name), `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO`.
///
/// # Safety
/// `bus` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn atbus_bus_unlink(bus: *const c_char) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = unsafe { text_arg(bus, "the bus name") }?;
        Ok(Bus::unlink(name)?)
    })
}

/// Joins the bus as endpoint `name` (1 to 63 ASCII letters, digits, `-`, `_` or `.`),
/// creating its inbox (a 1 MiB atbus channel named `BUS.NAME.gGENERATION`).
///
/// On success `*out` is a new endpoint, which leaves the bus when freed with
/// `atbus_endpoint_close`; on failure `*out` is NULL (if `out` is not NULL). Returns
/// `ATBUS_OK`, `ATBUS_ERR_NAME_TAKEN` (a live process holds the name; a dead one's is
/// reclaimed and taken), `ATBUS_ERR_DIRECTORY_FULL`, `ATBUS_ERR_LOCK_BUSY`,
/// `ATBUS_ERR_INVALID_ARGUMENT` (NULL pointer, bad name), `ATBUS_ERR_BAD_SEGMENT` (corrupt
/// directory), `ATBUS_ERR_NO_SPACE`, `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO`. Of many
/// processes joining one name at once, exactly one succeeds.
///
/// # Safety
/// `bus` is NULL or a live bus handle; `name` is NULL or a NUL-terminated string; `out`
/// is NULL or points to writable memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn atbus_bus_join(
    bus: *mut atbus_bus,
    name: *const c_char,
    out: *mut *mut atbus_endpoint,
) -> i32 {
    entry(|| {
        check_out(out, "out")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { bus_handle(bus) }?;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let name = unsafe { text_arg(name, "the endpoint name") }?;
        let endpoint = h.bus.join(name)?;
        let handle = Box::into_raw(Box::new(atbus_endpoint {
            state: Mutex::new(EndpointState {
                endpoint,
                held: VecDeque::new(),
            }),
        }));
        // SAFETY: checked above; the handle's ownership passes to the caller.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Leaves the bus and frees the endpoint: its record is freed and its inbox unlinked
/// (messages still in it, and any held for `atbus_endpoint_recv`, are dropped). Closes the
/// endpoint's readiness fd (`atbus_endpoint_fd`): remove it from your event loop first.
/// NULL is a no-op.
///
/// # Safety
/// `ep` is NULL or a handle from `atbus_bus_join` not closed before, and no other thread
/// uses it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_close(ep: *mut atbus_endpoint) {
    if ep.is_null() {
        return;
    }
    let _ = entry(|| {
        // SAFETY: the caller promises a live handle made by Box::into_raw in
        // atbus_bus_join, closed only now and used by no one else: we own it again.
        drop(unsafe { Box::from_raw(ep) });
        Ok(())
    });
}

/// Sends `len` bytes from `data` (copied; `data` may be NULL when `len` is 0) to endpoint
/// `to` as a data message (`ATBUS_MSG_DATA`). Messages one endpoint sends to one
/// destination arrive in the order sent.
///
/// `timeout_ms`: 0 sends only if the destination's inbox has room now
/// (`ATBUS_ERR_FULL` otherwise; nothing was sent), `UINT64_MAX` waits for room as long as
/// the destination lives, anything else waits at most that long (`ATBUS_ERR_TIMEOUT`).
///
/// Returns `ATBUS_OK`, `ATBUS_ERR_NO_SUCH_ENDPOINT` (at once: no endpoint `to` on the
/// bus), `ATBUS_ERR_PEER_GONE` (it left or died, also while this call waited for room),
/// `ATBUS_ERR_FULL`, `ATBUS_ERR_TIMEOUT`, `ATBUS_ERR_TOO_LARGE` (can never fit its
/// inbox) or `ATBUS_ERR_INVALID_ARGUMENT` (NULL handle or name, bad name, NULL `data`
/// with `len` > 0).
///
/// # Safety
/// `ep` is NULL or a live endpoint; `to` is NULL or a NUL-terminated string; `data` is
/// NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_send_to(
    ep: *mut atbus_endpoint,
    to: *const c_char,
    data: *const c_void,
    len: usize,
    timeout_ms: u64,
) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let to = unsafe { text_arg(to, "the destination name") }?;
        // SAFETY: the caller promises `data` is NULL or readable for `len` bytes.
        let message = unsafe { bytes_arg(data, len, "data") }?;
        let mut s = lock(h);
        match Wait::from_ms(timeout_ms) {
            Wait::Now => s.endpoint.try_send_to(to, message)?,
            Wait::For(timeout) => s.endpoint.send_to_timeout(to, message, timeout)?,
            Wait::Forever => s.endpoint.send_to(to, message)?,
        }
        Ok(())
    })
}

/// Receives the next message into `buf` (capacity `cap` bytes): sets `*out_len` to its
/// length and fills `*env` with its envelope (kind, sender, correlation id). Data and
/// requests come in arrival order, those that arrived while an `atbus_endpoint_request`
/// waited first.
///
/// `timeout_ms`: 0 does not wait (`ATBUS_ERR_EMPTY` if nothing is ready), `UINT64_MAX`
/// waits as long as it takes, anything else at most that long (`ATBUS_ERR_TIMEOUT`).
///
/// Returns:
/// * `ATBUS_OK`: `buf[0..*out_len]` holds the message, `*env` its envelope;
/// * `ATBUS_ERR_EMPTY` / `ATBUS_ERR_TIMEOUT`: nothing arrived (`*out_len` = 0);
/// * `ATBUS_ERR_BUFFER_TOO_SMALL`: the next message has `*out_len` bytes, more than `cap`.
///   It is not lost: the endpoint keeps it and the next `atbus_endpoint_recv` returns it
///   (ahead of everything else; `atbus_endpoint_arm` returns 1 meanwhile). Call again
///   with a buffer of at least `*out_len` bytes (`buf` may be NULL with `cap` 0 to ask
///   for the size). `*env` is not written;
/// * `ATBUS_ERR_INVALID_ARGUMENT`: NULL handle, `out_len` or `env`, or NULL `buf` with
///   `cap` > 0.
///
/// Messages whose envelope does not decode, and replies no request waits for (late, or
/// for an earlier generation of this endpoint), are dropped, never returned.
///
/// # Safety
/// `ep` is NULL or a live endpoint; `buf` is NULL or writable for `cap` bytes; `out_len`
/// is NULL or points to a writable `size_t`; `env` is NULL or points to a writable
/// `atbus_envelope`.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_recv(
    ep: *mut atbus_endpoint,
    buf: *mut c_void,
    cap: usize,
    out_len: *mut usize,
    env: *mut atbus_envelope,
    timeout_ms: u64,
) -> i32 {
    entry(|| {
        check_out(out_len, "out_len")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { out_len.write(0) };
        check_out(env, "env")?;
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        // SAFETY: the caller promises `buf` is NULL or writable for `cap` bytes.
        let buf = unsafe { buffer_arg(buf, cap, "buf") }?;
        let mut guard = lock(h);
        let s = &mut *guard;
        if s.held.is_empty() {
            // Straight from the endpoint's buffer into `buf` when it fits (one copy);
            // otherwise kept for the next call, never lost.
            let mut take = |envelope: &Envelope, payload: &[u8]| match buf.get_mut(..payload.len())
            {
                Some(to) => {
                    to.copy_from_slice(payload);
                    Ok((*envelope, payload.len()))
                }
                None => Err(BusMessage {
                    envelope: *envelope,
                    payload: payload.to_vec(),
                }),
            };
            let taken = match Wait::from_ms(timeout_ms) {
                Wait::Now => s.endpoint.try_recv_with(&mut take)?,
                Wait::For(timeout) => s.endpoint.recv_with_timeout(timeout, &mut take)?,
                // A timeout beyond the clock's range waits for ever.
                Wait::Forever => s.endpoint.recv_with_timeout(Duration::MAX, &mut take)?,
            };
            match taken {
                Ok((envelope, len)) => {
                    // SAFETY: both checked non-NULL and aligned above; the caller
                    // promises they are writable.
                    unsafe {
                        env.write(c_envelope(&envelope));
                        out_len.write(len);
                    }
                    return Ok(());
                }
                Err(message) => s.held.push_back(message),
            }
        }
        // SAFETY: out_len and env were checked non-NULL and aligned; the caller promises
        // they are writable.
        unsafe { deliver_held(s, buf, out_len, env) }
    })
}

/// Sends request `req` (`req_len` bytes; `req` may be NULL when `req_len` is 0) to
/// endpoint `to` and waits for its reply, which goes into `reply` (capacity `cap`) with
/// its length in `*reply_len`. Each request has a fresh correlation id, never reused.
///
/// `timeout_ms` bounds the whole call (room in `to`'s inbox, then the reply):
/// `UINT64_MAX` waits as long as the peer lives; 0 is `ATBUS_ERR_INVALID_ARGUMENT` (a
/// request waits for its reply by nature).
///
/// Returns:
/// * `ATBUS_OK`: `reply[0..*reply_len]` holds the reply;
/// * `ATBUS_ERR_NO_SUCH_ENDPOINT`: at once, no endpoint `to` on the bus;
/// * `ATBUS_ERR_PEER_GONE`: the peer left, died or restarted while the request waited;
///   reported within about 100 ms of it, not after the timeout;
/// * `ATBUS_ERR_TIMEOUT`: no reply in time (also when `to`'s inbox stayed full); a reply
///   that comes later is dropped, never returned to a later request;
/// * `ATBUS_ERR_BUFFER_TOO_SMALL`: the reply has `*reply_len` bytes, more than `cap`. It
///   is not lost: the endpoint keeps it, and `atbus_endpoint_recv` returns it (with a
///   buffer large enough) as an `ATBUS_MSG_REPLY` whose envelope names the peer and the
///   request's correlation id;
/// * `ATBUS_ERR_TOO_LARGE`, `ATBUS_ERR_INVALID_ARGUMENT` (NULL handle, name or
///   `reply_len`, bad name, NULL `req` or `reply` with a nonzero length).
///
/// Data and requests that arrive while it waits are kept and returned by later
/// `atbus_endpoint_recv` calls, in arrival order.
///
/// # Safety
/// `ep` is NULL or a live endpoint; `to` is NULL or a NUL-terminated string; `req` is
/// NULL or readable for `req_len` bytes; `reply` is NULL or writable for `cap` bytes;
/// `reply_len` is NULL or points to a writable `size_t`.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature the issue fixes
pub unsafe extern "C" fn atbus_endpoint_request(
    ep: *mut atbus_endpoint,
    to: *const c_char,
    req: *const c_void,
    req_len: usize,
    reply: *mut c_void,
    cap: usize,
    reply_len: *mut usize,
    timeout_ms: u64,
) -> i32 {
    entry(|| {
        check_out(reply_len, "reply_len")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { reply_len.write(0) };
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        // SAFETY: the caller promises NULL or a NUL-terminated string.
        let to = unsafe { text_arg(to, "the destination name") }?;
        // SAFETY: the caller promises `req` is NULL or readable for `req_len` bytes.
        let request = unsafe { bytes_arg(req, req_len, "req") }?;
        // SAFETY: the caller promises `reply` is NULL or writable for `cap` bytes.
        let reply = unsafe { buffer_arg(reply, cap, "reply") }?;
        let timeout = match Wait::from_ms(timeout_ms) {
            Wait::Now => {
                return Err(invalid(
                    "atbus_endpoint_request with timeout_ms 0: a request waits for its \
                     reply; pass how long it may wait, or UINT64_MAX",
                ))
            }
            Wait::For(timeout) => timeout,
            Wait::Forever => Duration::MAX,
        };
        let mut s = lock(h);
        let cap = reply.len();
        // Straight into `reply` when it fits (one copy); otherwise kept for recv.
        let answer =
            s.endpoint
                .request_with(to, request, timeout, |envelope, payload| {
                    match reply.get_mut(..payload.len()) {
                        Some(to) => {
                            to.copy_from_slice(payload);
                            Ok(payload.len())
                        }
                        None => Err(BusMessage {
                            envelope: *envelope,
                            payload: payload.to_vec(),
                        }),
                    }
                })?;
        let len = match &answer {
            Ok(len) => *len,
            Err(kept) => kept.payload.len(),
        };
        // SAFETY: checked non-NULL and aligned above.
        unsafe { reply_len.write(len) };
        if let Err(kept) = answer {
            s.held.push_back(kept);
            return Err(too_small(len, cap, "reply"));
        }
        Ok(())
    })
}

/// Answers a request received by `atbus_endpoint_recv` (`request` is its envelope, kind
/// `ATBUS_MSG_REQUEST`): sends `len` bytes from `data` to the requester's exact
/// generation, waiting for room in its inbox while it lives.
///
/// Returns `ATBUS_OK`, `ATBUS_ERR_PEER_GONE` (the requester left, died or restarted: its
/// new generation never gets the old one's reply), `ATBUS_ERR_TOO_LARGE`, or
/// `ATBUS_ERR_INVALID_ARGUMENT` (NULL handle or `request`, an envelope that is not a
/// request's or whose `from` is not a NUL-terminated endpoint name, NULL `data` with
/// `len` > 0).
///
/// # Safety
/// `ep` is NULL or a live endpoint; `request` is NULL or points to a readable
/// `atbus_envelope`; `data` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_reply(
    ep: *mut atbus_endpoint,
    request: *const atbus_envelope,
    data: *const c_void,
    len: usize,
) -> i32 {
    entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        if request.is_null() || !request.is_aligned() {
            return Err(invalid("request is NULL or misaligned"));
        }
        // SAFETY: non-NULL and aligned; the caller promises a readable atbus_envelope,
        // and every bit pattern is a valid one (integers and chars only).
        let r = unsafe { request.read() };
        if r.kind != ATBUS_MSG_REQUEST {
            return Err(invalid(format!(
                "request->kind is {}, not ATBUS_MSG_REQUEST: only requests are answered",
                r.kind
            )));
        }
        let bytes: Vec<u8> = r.from.iter().map(|&c| c as u8).collect();
        let name_len = bytes.iter().position(|&b| b == 0).ok_or_else(|| {
            invalid(
                "request->from is not NUL-terminated: pass the envelope atbus_endpoint_recv filled",
            )
        })?;
        let from = std::str::from_utf8(&bytes[..name_len])
            .ok()
            .and_then(Name::parse)
            .ok_or_else(|| {
                invalid(format!(
                    "request->from {:?} is not an endpoint name: pass the envelope \
                     atbus_endpoint_recv filled",
                    String::from_utf8_lossy(&bytes[..name_len])
                ))
            })?;
        // SAFETY: the caller promises `data` is NULL or readable for `len` bytes.
        let message = unsafe { bytes_arg(data, len, "data") }?;
        let envelope = Envelope {
            kind: Kind::Request,
            from,
            from_generation: r.from_generation,
            from_pid: r.from_pid,
            correlation: r.correlation,
            to_generation: 0,
        };
        lock(h).endpoint.reply(&envelope, message)?;
        Ok(())
    })
}

/// The endpoint's readiness fd, for an event loop (as `atbus_reader_fd` for a channel):
/// it becomes readable (POLLIN) after `atbus_endpoint_arm` returned 0 and a message
/// arrived. The fd belongs to the endpoint: do not close it; `atbus_endpoint_close`
/// closes it, so remove it from your event loop first.
///
/// Returns the fd (>= 0), or a negative `ATBUS_ERR_*` code: `ATBUS_ERR_INVALID_ARGUMENT`
/// (NULL handle), `ATBUS_ERR_PERMISSION` or `ATBUS_ERR_IO` (the inbox's doorbell FIFO
/// could not be created).
///
/// # Safety
/// `ep` is NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_fd(ep: *mut atbus_endpoint) -> i32 {
    let mut fd = -1;
    let code = entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        fd = lock(h).endpoint.readiness_fd()?.as_raw_fd();
        Ok(())
    });
    if code == ATBUS_OK {
        fd
    } else {
        code
    }
}

/// Arms the endpoint before the event loop waits on `atbus_endpoint_fd` (as
/// `atbus_reader_arm`). Returns:
/// * 0: armed; nothing is ready and it is safe to wait for POLLIN on the fd;
/// * 1: a message is ready (in the inbox, or kept by the endpoint): call
///   `atbus_endpoint_recv` with `timeout_ms` 0 until `ATBUS_ERR_EMPTY`, then arm again;
/// * a negative `ATBUS_ERR_*` code, as `atbus_endpoint_fd`.
///
/// # Safety
/// `ep` is NULL or a live endpoint.
#[no_mangle]
pub unsafe extern "C" fn atbus_endpoint_arm(ep: *mut atbus_endpoint) -> i32 {
    let mut ready = false;
    let code = entry(|| {
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { endpoint_handle(ep) }?;
        let mut s = lock(h);
        ready = !s.held.is_empty() || s.endpoint.arm()? == Arm::Ready;
        Ok(())
    });
    if code == ATBUS_OK {
        i32::from(ready)
    } else {
        code
    }
}

/// Writes the names of the bus's live members (joined, ready, and owned by a process
/// that is alive), in directory order, into `names`: up to `cap` NUL-terminated names of
/// 64 bytes each (NUL-padded), one after another, and sets `*count` to how many.
///
/// Returns `ATBUS_OK`, or `ATBUS_ERR_BUFFER_TOO_SMALL` with `*count` = the number of live
/// members, more than `cap` (nothing written to `names`; `names` may be NULL with `cap`
/// 0 to ask for the count; members may join before the next call, so loop),
/// `ATBUS_ERR_INVALID_ARGUMENT` (NULL handle or `count`, NULL `names` with `cap` > 0),
/// or `ATBUS_ERR_BAD_SEGMENT` (corrupt directory).
///
/// # Safety
/// `bus` is NULL or a live bus handle; `names` is NULL or writable for `cap` arrays of
/// 64 chars; `count` is NULL or points to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn atbus_bus_members(
    bus: *mut atbus_bus,
    names: *mut [c_char; 64],
    cap: usize,
    count: *mut usize,
) -> i32 {
    entry(|| {
        check_out(count, "count")?;
        // SAFETY: checked non-NULL and aligned; the caller promises it is writable.
        unsafe { count.write(0) };
        // SAFETY: the caller promises NULL or a live handle.
        let h = unsafe { bus_handle(bus) }?;
        if cap > 0 && names.is_null() {
            return Err(invalid(format!("names is NULL but cap is {cap}")));
        }
        let live: Vec<_> = h
            .bus
            .members()?
            .into_iter()
            .filter(|m| m.alive && m.ready)
            .collect();
        // SAFETY: checked non-NULL and aligned above.
        unsafe { count.write(live.len()) };
        if live.len() > cap {
            return Err(Failure {
                code: ATBUS_ERR_BUFFER_TOO_SMALL,
                message: Message::Owned(format!(
                    "the bus has {} live members but names holds {cap}: call again with \
                     room for at least {} (more may join meanwhile)",
                    live.len(),
                    live.len()
                )),
            });
        }
        for (i, m) in live.iter().enumerate() {
            // SAFETY: i < live.len() <= cap, and the caller promises `cap` writable
            // arrays at `names` (non-NULL: cap > 0 here); [c_char; 64] has alignment 1.
            unsafe { names.add(i).write(c_name(m.name.as_bytes())) };
        }
        Ok(())
    })
}
