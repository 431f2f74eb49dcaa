//! The C ABI from C and C++: the programs in `tests/c/` are compiled with the system
//! compiler (`$CC`, default `cc`; `$CXX`, default `c++`) against `include/atbus.h` and
//! linked to a `libatbus.a` / `libatbus.so` built from the current source. Two codes
//! no C program can provoke (a writer stalled past the timeout, a panic inside atbus)
//! are reached through the same `extern "C"` functions from Rust, with fault injection.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::{c_void, CStr, CString};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atbus::{Backoff, Channel, Config, Error, Step};
use atbus_tests::child::ChildGuard;
use atbus_tests::{check_payload, length, payload, TestChannel};
use ffi::*;

/// The C ABI's source compiled into this test, so that Rust can call the very functions
/// of `libatbus` with this crate's `atbus` (built with fault injection). The C programs
/// link the real `libatbus.a` / `libatbus.so` instead; see `lib_dir`. (`atbus-capi` is
/// not a Rust dependency: a package that builds a cdylib has unhashed artefact names, so
/// builds with and without fault injection would overwrite each other's rlib.)
#[path = "../../atbus-capi/src/ffi.rs"]
#[allow(dead_code)]
mod ffi;

mod c_build;
mod common;

use c_build::*;

#[test]
fn header_compiles_as_cpp11_and_matches_the_rust_layout() {
    use std::mem::{offset_of, size_of};
    let scratch = Scratch::new("cpp");
    let defines = [
        ("RUST_CONFIG_SIZE", size_of::<atbus_config>()),
        ("RUST_CONFIG_NODE_SIZE", offset_of!(atbus_config, node_size)),
        (
            "RUST_CONFIG_TIMEOUT_MS",
            offset_of!(atbus_config, timeout_ms),
        ),
        (
            "RUST_CONFIG_WRITE_RETRIES",
            offset_of!(atbus_config, write_retries),
        ),
        ("RUST_CONFIG_MODE", offset_of!(atbus_config, mode)),
        (
            "RUST_CONFIG_PROTECT_BYTES",
            offset_of!(atbus_config, protect_bytes),
        ),
        (
            "RUST_CONFIG_DETECT_DEAD_WRITERS",
            offset_of!(atbus_config, detect_dead_writers),
        ),
        ("RUST_CONFIG_CHECKSUMS", offset_of!(atbus_config, checksums)),
        (
            "RUST_CONFIG_ALLOW_SHARED_MODE",
            offset_of!(atbus_config, allow_shared_mode),
        ),
        ("RUST_STATS_SIZE", size_of::<atbus_stats>()),
        ("RUST_ENVELOPE_SIZE", size_of::<atbus_envelope>()),
        (
            "RUST_ENVELOPE_FROM_PID",
            offset_of!(atbus_envelope, from_pid),
        ),
        (
            "RUST_ENVELOPE_CORRELATION",
            offset_of!(atbus_envelope, correlation),
        ),
        (
            "RUST_ENVELOPE_FROM_GENERATION",
            offset_of!(atbus_envelope, from_generation),
        ),
        ("RUST_ENVELOPE_FROM", offset_of!(atbus_envelope, from)),
        (
            "RUST_STATS_MESSAGES_SENT",
            offset_of!(atbus_stats, messages_sent),
        ),
    ];
    let mut cmd = Command::new(tool("CXX", "c++"));
    cmd.args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-c"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests/c/header_compiles.cpp"))
        .arg("-o")
        .arg(scratch.path("header_compiles.o"));
    for (name, value) in defines {
        cmd.arg(format!("-D{name}={value}"));
    }
    run(&mut cmd);
    // `size`, then u64 counters only, so the size pins the count: 22 counters.
    assert_eq!(size_of::<atbus_stats>(), 8 + 22 * 8);
    // The layout the issue fixes for C users: two u32, two u64, 64 chars.
    assert_eq!(
        (
            size_of::<atbus_envelope>(),
            offset_of!(atbus_envelope, correlation),
            offset_of!(atbus_envelope, from)
        ),
        (88, 8, 24)
    );
}

#[test]
fn c_round_trip_linked_statically_and_dynamically() {
    let scratch = Scratch::new("roundtrip");
    for link in [Link::Static, Link::Dynamic] {
        let program = compile(&scratch, "roundtrip", link);
        let ch = TestChannel::new("c-roundtrip");
        let out = run(c_program(&program).arg(&ch.name));
        assert!(
            stdout(&out).starts_with("roundtrip ok: 3075 messages"),
            "{out:?}"
        );
        // The program unlinked its channel itself.
        assert!(matches!(
            Channel::open(&ch.name),
            Err(Error::NotFound { .. })
        ));
    }
}

/// The example of `docs/c-api.md` is `tests/c/example.c`, and it runs as shown with
/// both link lines.
#[test]
fn documented_c_example_compiles_and_runs() {
    let example = std::fs::read_to_string(root().join("tests/c/example.c")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/c-api.md"))
        .expect("docs/c-api.md documents the C API");
    let block = doc
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/c-api.md has a ```c block");
    assert_eq!(
        block, example,
        "the C example of docs/c-api.md differs from tests/c/example.c: copy the file into it"
    );
    let scratch = Scratch::new("example");
    for link in [Link::Static, Link::Dynamic] {
        let program = compile(&scratch, "example", link);
        let ch = TestChannel::new("c-example");
        let out = run(c_program(&program).arg(&ch.name));
        assert_eq!(stdout(&out), "received hello\nsent 1, received 1\n");
    }
}

/// Channels `errors.c` names after its prefix, removed even when it fails.
struct ErrorChannels(String);

impl Drop for ErrorChannels {
    fn drop(&mut self) {
        for what in [
            "args",
            "exists",
            "ring",
            "busy",
            "perm",
            "untrusted",
            "huge",
            "nospace",
        ] {
            let _ = Channel::unlink(&format!("{}-{what}", self.0));
        }
    }
}

#[test]
fn c_program_reaches_every_error_code_it_can() {
    let scratch = Scratch::new("errors");
    let program = compile(&scratch, "errors", Link::Static);
    let ch = TestChannel::new("c-errors");
    let _cleanup = ErrorChannels(ch.name.clone());
    let files = scratch.path("files");
    std::fs::create_dir(&files).unwrap();
    let out = run(c_program(&program).arg(&ch.name).arg(&files));
    assert_eq!(stdout(&out), "errors ok\n");
}

#[test]
fn c_reader_with_manual_commit_leaves_the_uncommitted_to_its_successor() {
    let scratch = Scratch::new("commit");
    let program = compile(&scratch, "commit", Link::Static);
    let ch = TestChannel::new("c-commit");
    let out = run(c_program(&program).arg(&ch.name));
    assert_eq!(stdout(&out), "commit ok\n");
}

/// Per-writer order and byte checks for a stream of `atbus_tests::payload` messages.
struct Tally {
    next: Vec<u64>,
    first_id: u64,
    messages: u64,
    bytes: u64,
}

impl Tally {
    fn new(first_id: u64, writers: usize) -> Tally {
        Tally {
            next: vec![0; writers],
            first_id,
            messages: 0,
            bytes: 0,
        }
    }

    fn add(&mut self, msg: &[u8]) {
        let (id, seq) = check_payload(msg).unwrap_or_else(|e| panic!("{e}"));
        let slot = id
            .checked_sub(self.first_id)
            .and_then(|i| self.next.get_mut(i as usize))
            .unwrap_or_else(|| panic!("message from unknown writer {id}"));
        assert_eq!(seq, *slot, "writer {id}: message {seq} out of order");
        assert_eq!(
            msg.len(),
            length(id, seq, 16, 2000),
            "writer {id} message {seq}"
        );
        *slot += 1;
        self.messages += 1;
        self.bytes += msg.len() as u64;
    }
}

/// Fails with the child's stderr if it exited unsuccessfully.
fn check_child(child: &mut Child, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("{what} failed ({status}): {stderr}");
        }
    }
}

#[test]
fn c_writer_threads_feed_a_rust_reader_every_byte_checked() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 20_000;
    let scratch = Scratch::new("c-writer");
    let program = compile(&scratch, "writer", Link::Static);
    let ch = TestChannel::new("c-writer");
    // A small ring: the writers wait for the reader and the ring wraps many times.
    let channel = Channel::create(&ch.name, 256 << 10, &Config::default()).unwrap();
    let mut reader = channel.reader().unwrap();
    let mut child = ChildGuard::spawn(
        c_program(&program)
            .args([
                &ch.name,
                "100",
                &THREADS.to_string(),
                &PER_THREAD.to_string(),
                "16",
                "2000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut tally = Tally::new(100, THREADS);
    let mut buf = vec![0u8; 4096];
    let mut last = Instant::now();
    while tally.messages < THREADS as u64 * PER_THREAD {
        match reader.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => {
                tally.add(&buf[..n]);
                last = Instant::now();
            }
            Err(Error::Timeout) => {
                check_child(&mut child, "the C writer");
                assert!(
                    last.elapsed() < Duration::from_secs(60),
                    "no message for 60 s"
                );
            }
            Err(e) => panic!("receive failed: {e}"),
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("sent {}\n", THREADS as u64 * PER_THREAD)
    );
    assert!(matches!(reader.try_recv(&mut buf), Err(Error::Empty)));
    let s = channel.stats();
    assert_eq!(s.messages_sent, tally.messages);
    assert_eq!(s.bytes_sent, tally.bytes);
    assert_eq!(s.bad_nodes + s.bad_blocks, 0, "{s:?}");
}

#[test]
fn rust_writers_feed_a_c_reader_every_byte_checked() {
    const WRITERS: u64 = 3;
    const PER_WRITER: u64 = 20_000;
    let scratch = Scratch::new("c-reader");
    let program = compile(&scratch, "reader", Link::Dynamic);
    let ch = TestChannel::new("c-reader");
    let channel = Channel::create(&ch.name, 256 << 10, &Config::default()).unwrap();
    let child = ChildGuard::spawn(
        c_program(&program)
            .args([
                &ch.name,
                "200",
                &WRITERS.to_string(),
                &PER_WRITER.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let bytes: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let writer = channel.writer();
                s.spawn(move || {
                    let id = 200 + w;
                    let mut bytes = 0;
                    for seq in 0..PER_WRITER {
                        let msg = payload(id, seq, length(id, seq, 16, 2000));
                        writer
                            .send_timeout(&msg, Duration::from_secs(60))
                            .unwrap_or_else(|e| panic!("writer {id} message {seq}: {e}"));
                        bytes += msg.len() as u64;
                    }
                    bytes
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the C reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        format!("received {} bytes {bytes}\n", WRITERS * PER_WRITER)
    );
    let s = channel.stats();
    assert_eq!(s.messages_received, WRITERS * PER_WRITER);
    assert_eq!(s.bad_nodes + s.bad_blocks, 0, "{s:?}");
}

#[test]
fn c_event_loop_waits_on_two_channels_and_a_timer_with_epoll() {
    // tests/c/evloop.c: epoll over both channels' readiness fds and a timer fd; two
    // writer processes per channel. Every byte and each writer's order is checked in C.
    const WRITERS: u64 = 2;
    const PER_WRITER: u64 = 5_000;
    let scratch = Scratch::new("c-evloop");
    let program = compile(&scratch, "evloop", Link::Dynamic);
    let a = TestChannel::new("c-evloop-a");
    let b = TestChannel::new("c-evloop-b");
    let channels =
        [&a, &b].map(|t| Channel::create(&t.name, 256 << 10, &Config::default()).unwrap());
    let child = ChildGuard::spawn(
        c_program(&program)
            .args([
                &a.name,
                &b.name,
                "400",
                &WRITERS.to_string(),
                &PER_WRITER.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    // The writers start once the C reader holds both roles (its fd calls take them).
    for ch in &channels {
        let view = atbus::Inspector::open(ch.name()).unwrap();
        let mut backoff = Backoff::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while view.reader_owner().is_none() {
            assert!(
                Instant::now() < deadline,
                "the C reader did not take the role"
            );
            backoff.snooze();
        }
    }
    let writers: Vec<ChildGuard> = (0..2u64)
        .flat_map(|c| (0..WRITERS).map(move |w| (c, 400 + c * WRITERS + w)))
        .map(|(c, id)| {
            let name = if c == 0 { &a.name } else { &b.name };
            common::peer(&[
                "writer",
                name,
                &id.to_string(),
                &PER_WRITER.to_string(),
                "16",
                "2000",
            ])
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the C event loop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout(&out);
    eprintln!("{}", line.trim());
    let total = WRITERS * PER_WRITER;
    assert!(
        line.starts_with(&format!("received {total} {total} waits ")),
        "{line}"
    );
    for ch in &channels {
        let s = ch.stats();
        assert_eq!(s.messages_sent, total);
        assert_eq!(s.messages_received, total);
        assert_eq!(s.bad_nodes + s.bad_blocks, 0, "{s:?}");
    }
    // The doorbell FIFOs went away with the reader; unlink removes the rest.
    assert!(!atbus::doorbell::exists(&a.name));
}

// ---------------------------------------------------------------------------------------
// The same functions called from Rust: codes that need a writer stopped inside atbus.

/// What the fault hook does on this thread at `MidPayload`; other threads and tests in
/// this binary are unaffected.
enum Fault {
    Panic,
    Stall {
        stalled: mpsc::Sender<()>,
        resume: mpsc::Receiver<()>,
    },
}

thread_local! {
    static FAULT: std::cell::RefCell<Option<Fault>> = const { std::cell::RefCell::new(None) };
}

fn hook(step: Step) {
    if step != Step::MidPayload {
        return;
    }
    match FAULT.with(|f| f.borrow_mut().take()) {
        None => {}
        Some(Fault::Panic) => panic!("injected panic in the middle of a send"),
        Some(Fault::Stall { stalled, resume }) => {
            stalled.send(()).unwrap();
            // Err when the test failed and dropped the sender: go on rather than hang.
            let _ = resume.recv();
        }
    }
}

/// A handle made with `atbus_create`, closed when dropped.
struct Handle(*mut atbus_channel);

// SAFETY: an atbus_channel handle may be used from any thread (its parts are Sync);
// the tests close it only after every thread using it has been joined.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

impl Handle {
    fn create(name: &str, config: &atbus_config) -> Handle {
        let cname = CString::new(name).unwrap();
        let mut h = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name, a valid config and a valid out-pointer.
        let rc = unsafe { atbus_create(cname.as_ptr(), 1 << 20, config, &mut h) };
        assert_eq!(rc, ATBUS_OK, "{}", last_error());
        Handle(h)
    }

    fn send(&self, msg: &[u8]) -> i32 {
        // SAFETY: a live handle; `msg` is readable for its length.
        unsafe { atbus_send(self.0, msg.as_ptr().cast::<c_void>(), msg.len()) }
    }

    fn recv(&self, buf: &mut [u8]) -> (i32, usize) {
        let mut len = 0;
        // SAFETY: a live handle; `buf` is writable for its length; `len` is a usize.
        let rc = unsafe { atbus_recv(self.0, buf.as_mut_ptr().cast(), buf.len(), &mut len) };
        (rc, len)
    }

    fn stats(&self) -> atbus_stats {
        let mut s = atbus_stats {
            size: std::mem::size_of::<atbus_stats>(),
            ..Default::default()
        };
        // SAFETY: a live handle and a valid out-pointer with its size set.
        assert_eq!(unsafe { atbus_get_stats(self.0, &mut s) }, ATBUS_OK);
        s
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: made by atbus_create, closed once, no thread uses it any more.
        unsafe { atbus_close(self.0) };
    }
}

fn last_error() -> String {
    // SAFETY: atbus_last_error returns a NUL-terminated string valid until the next
    // failing atbus call on this thread; it is copied at once.
    unsafe { CStr::from_ptr(atbus_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn config_with_timeout_ms(ms: u64) -> atbus_config {
    let mut config = std::mem::MaybeUninit::<atbus_config>::uninit();
    // SAFETY: a valid out-pointer; atbus_config_init initialises all of it on OK.
    assert_eq!(unsafe { atbus_config_init(config.as_mut_ptr()) }, ATBUS_OK);
    // SAFETY: initialised by atbus_config_init above.
    let mut config = unsafe { config.assume_init() };
    config.timeout_ms = ms;
    config
}

#[test]
fn writer_stalled_past_the_timeout_gets_abandoned_through_the_abi() {
    atbus::set_fault_hook(hook);
    let ch = TestChannel::new("c-abandoned");
    let handle = Handle::create(&ch.name, &config_with_timeout_ms(1));
    let (stalled_tx, stalled_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    std::thread::scope(|s| {
        // Moved in, so that a failing assertion drops it and the writer goes on.
        let resume_tx = resume_tx;
        let handle = &handle;
        let writer = s.spawn(move || {
            FAULT.with(|f| {
                *f.borrow_mut() = Some(Fault::Stall {
                    stalled: stalled_tx,
                    resume: resume_rx,
                })
            });
            let rc = handle.send(&payload(1, 0, 500));
            (rc, last_error())
        });
        stalled_rx.recv().unwrap();
        // The same handle reads on this thread while its writer is stopped mid-send:
        // after the 1 ms timeout it skips the torn block.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 1024];
        let mut backoff = Backoff::new();
        while handle.stats().timeout_blocks == 0 {
            assert_eq!(handle.recv(&mut buf).0, ATBUS_ERR_EMPTY);
            assert!(
                Instant::now() < deadline,
                "the torn block was never skipped"
            );
            backoff.snooze();
        }
        resume_tx.send(()).unwrap();
        let (rc, message) = writer.join().unwrap();
        assert_eq!(rc, ATBUS_ERR_ABANDONED, "{message}");
        assert!(message.contains("not delivered"), "{message}");
        assert_eq!(handle.recv(&mut buf).0, ATBUS_ERR_EMPTY);
    });
    let s = handle.stats();
    assert_eq!(
        (s.abandoned, s.timeout_blocks, s.messages_received),
        (1, 1, 0)
    );
    // The channel goes on working.
    assert_eq!(handle.send(b"after"), ATBUS_OK);
    let mut buf = [0u8; 16];
    assert_eq!(handle.recv(&mut buf), (ATBUS_OK, 5));
}

#[test]
fn a_panic_inside_atbus_becomes_a_code_not_an_unwind_into_c() {
    atbus::set_fault_hook(hook);
    let ch = TestChannel::new("c-panic");
    let handle = Handle::create(&ch.name, &config_with_timeout_ms(1));
    FAULT.with(|f| *f.borrow_mut() = Some(Fault::Panic));
    assert_eq!(handle.send(&payload(2, 0, 100)), ATBUS_ERR_PANIC);
    let message = last_error();
    assert!(message.contains("injected panic"), "{message}");
    // SAFETY: atbus_strerror returns a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(atbus_strerror(ATBUS_ERR_PANIC)) };
    assert_eq!(text.to_str().unwrap(), "internal error in atbus (a bug)");
    // The handle still works: the half-written block is skipped after the timeout.
    assert_eq!(handle.send(&payload(2, 1, 100)), ATBUS_OK);
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(30);
    let len = loop {
        match handle.recv(&mut buf) {
            (ATBUS_OK, len) => break len,
            (ATBUS_ERR_EMPTY, _) => assert!(Instant::now() < deadline),
            (rc, _) => panic!("recv returned {rc}: {}", last_error()),
        }
    };
    assert_eq!(check_payload(&buf[..len]), Ok((2, 1)));
}

#[test]
fn every_error_maps_to_its_code() {
    let io = || std::io::Error::other("x");
    let n = || "/n".to_string();
    let cases = [
        (
            Error::InvalidName {
                name: n(),
                reason: "r",
            },
            ATBUS_ERR_INVALID_ARGUMENT,
        ),
        (
            Error::InvalidConfig { reason: n() },
            ATBUS_ERR_INVALID_ARGUMENT,
        ),
        (Error::AlreadyExists { name: n() }, ATBUS_ERR_EXISTS),
        (Error::NotFound { name: n() }, ATBUS_ERR_NOT_FOUND),
        (Error::PermissionDenied { name: n() }, ATBUS_ERR_PERMISSION),
        (Error::NoSpace { name: n(), size: 1 }, ATBUS_ERR_NO_SPACE),
        (
            Error::Io {
                op: "op",
                name: n(),
                source: io(),
            },
            ATBUS_ERR_IO,
        ),
        (
            Error::Truncated {
                name: n(),
                actual: 1,
                expected: 2,
            },
            ATBUS_ERR_BAD_SEGMENT,
        ),
        (Error::NotAtbus { name: n() }, ATBUS_ERR_BAD_SEGMENT),
        (
            Error::NotInitialized { name: n() },
            ATBUS_ERR_NOT_INITIALIZED,
        ),
        (
            Error::Incompatible {
                name: n(),
                reason: n(),
            },
            ATBUS_ERR_BAD_SEGMENT,
        ),
        (
            Error::Corrupt {
                name: n(),
                reason: n(),
            },
            ATBUS_ERR_BAD_SEGMENT,
        ),
        (Error::Full, ATBUS_ERR_FULL),
        (Error::Empty, ATBUS_ERR_EMPTY),
        (Error::Timeout, ATBUS_ERR_TIMEOUT),
        (Error::TooLarge { len: 2, max: 1 }, ATBUS_ERR_TOO_LARGE),
        (
            Error::BufferTooSmall { needed: 1 },
            ATBUS_ERR_BUFFER_TOO_SMALL,
        ),
        (Error::ReaderBusy { pid: 1 }, ATBUS_ERR_READER_BUSY),
        (Error::Damaged, ATBUS_ERR_DAMAGED),
        (Error::Abandoned { seq: 1 }, ATBUS_ERR_ABANDONED),
        (
            Error::ForeignSegment {
                name: n(),
                owner_uid: 1,
                owner_name: None,
                mode: 0o600,
                euid: 0,
            },
            ATBUS_ERR_UNTRUSTED,
        ),
        (Error::Symlink { name: n() }, ATBUS_ERR_UNTRUSTED),
        (Error::ReaderRoleLost { pid: 1 }, ATBUS_ERR_READER_ROLE_LOST),
    ];
    for (error, code) in cases {
        assert_eq!(error_code(&error), code, "{error:?}");
    }
}

#[test]
fn stats_carry_every_counter_of_channel_stats() {
    let ch = TestChannel::new("c-stats");
    let handle = Handle::create(&ch.name, &config_with_timeout_ms(1000));
    for i in 0..50u64 {
        assert_eq!(handle.send(&payload(3, i, 16 + i as usize * 37)), ATBUS_OK);
    }
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        assert_eq!(handle.recv(&mut buf).0, ATBUS_OK);
    }
    let c = handle.stats();
    let r = Channel::open(&ch.name).unwrap().stats();
    let pairs = [
        (c.messages_sent, r.messages_sent),
        (c.bytes_sent, r.bytes_sent),
        (c.full, r.full),
        (c.write_retries, r.write_retries),
        (c.abandoned, r.abandoned),
        (c.padding_claims, r.padding_claims),
        (c.messages_received, r.messages_received),
        (c.bytes_received, r.bytes_received),
        (c.timeout_blocks, r.timeout_blocks),
        (c.dead_writer_blocks, r.dead_writer_blocks),
        (c.bad_nodes, r.bad_nodes),
        (c.bad_blocks, r.bad_blocks),
        (c.crc_failures, r.crc_failures),
        (c.check_failures, r.check_failures),
        (c.padding_blocks, r.padding_blocks),
        (c.handover_nodes, r.handover_nodes),
        (c.reader_takeovers, r.reader_takeovers),
        (c.aborted_blocks, r.aborted_blocks),
        (c.reader_sleeps, r.reader_sleeps),
        (c.wakeups, r.wakeups),
        (c.read_cursor, r.read_cursor),
        (c.write_cursor, r.write_cursor),
    ];
    assert_eq!(8 + pairs.len() * 8, std::mem::size_of::<atbus_stats>());
    assert_eq!(c.size, std::mem::size_of::<atbus_stats>());
    for (i, (from_c, from_rust)) in pairs.into_iter().enumerate() {
        assert_eq!(from_c, from_rust, "counter {i} of atbus_stats");
    }
    assert_eq!((c.messages_sent, c.messages_received), (50, 20));
}

/// `pkg-config --cflags --libs atbus` finds the `atbus.pc` that building `atbus-capi`
/// writes next to the libraries, and its flags build and link a working program.
#[test]
fn pkg_config_flags_build_the_example() {
    let lib = lib_dir();
    let pc = lib.join("atbus.pc");
    assert!(
        pc.is_file(),
        "`cargo build -p atbus-capi` wrote no {}: atbus-capi/build.rs writes it from \
         atbus-capi/atbus.pc.in",
        pc.display()
    );
    let out = installed_tool(
        Command::new("pkg-config")
            .args(["--cflags", "--libs", "atbus"])
            .env("PKG_CONFIG_PATH", &lib),
        "pkg-config",
    );
    assert!(out.status.success(), "pkg-config failed: {out:?}");
    let flags = stdout(&out);
    assert!(
        flags.contains(&format!("-L{}", lib.display())) && flags.contains("-latbus"),
        "pkg-config --libs atbus gave {flags:?}"
    );
    let scratch = Scratch::new("pkg-config");
    let program = scratch.path("example");
    run(Command::new(tool("CC", "cc"))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        .arg(root().join("tests/c/example.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&program));
    let ch = TestChannel::new("c-pkg-config");
    let out = run(c_program(&program).arg(&ch.name));
    assert_eq!(stdout(&out), "received hello\nsent 1, received 1\n");
    assert!(
        needed_libraries(&program).contains("libatbus.so"),
        "linked with `pkg-config --libs atbus`, the program should load libatbus.so"
    );
}

/// The `NEEDED` entries of an ELF program's dynamic section (`readelf -d`), one a line.
fn needed_libraries(program: &Path) -> String {
    let out = installed_tool(Command::new("readelf").arg("-d").arg(program), "binutils");
    assert!(out.status.success(), "readelf failed: {out:?}");
    stdout(&out)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `pkg-config --static --cflags --libs atbus` links the static library: the program
/// runs and does not depend on `libatbus.so` (a plain `-latbus` there would pick the
/// shared library, which the linker prefers).
#[test]
fn pkg_config_static_flags_link_the_static_library() {
    let lib = lib_dir();
    let out = installed_tool(
        Command::new("pkg-config")
            .args(["--static", "--cflags", "--libs", "atbus"])
            .env("PKG_CONFIG_PATH", &lib),
        "pkg-config",
    );
    assert!(out.status.success(), "pkg-config failed: {out:?}");
    let flags = stdout(&out);
    let scratch = Scratch::new("pkg-config-static");
    let program = scratch.path("example");
    run(Command::new(tool("CC", "cc"))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        .arg(root().join("tests/c/example.c"))
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&program));
    let needed = needed_libraries(&program);
    assert!(
        !needed.contains("libatbus"),
        "`pkg-config --static --libs atbus` gave {flags:?}, and the program still needs:\n{needed}"
    );
    let ch = TestChannel::new("c-pkg-config-static");
    let out = run(c_program(&program).arg(&ch.name));
    assert_eq!(stdout(&out), "received hello\nsent 1, received 1\n");
}

/// `libatbus.so` exports exactly the functions `include/atbus.h` declares.
#[test]
fn the_shared_library_exports_every_function_of_the_header() {
    let header = std::fs::read_to_string(root().join("include/atbus.h")).unwrap();
    let declared: BTreeSet<String> = header
        .lines()
        .filter(|line| !line.trim_start().starts_with(['*', '/', '#']))
        .filter_map(|line| {
            let start = line.find("atbus_")?;
            let name: String = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            line[start + name.len()..].starts_with('(').then_some(name)
        })
        .collect();
    assert!(
        declared.len() >= 15 && declared.contains("atbus_config_init"),
        "{declared:?}"
    );
    let out = installed_tool(
        Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(lib_dir().join("libatbus.so")),
        "binutils",
    );
    assert!(out.status.success(), "nm failed: {out:?}");
    let exported: BTreeSet<String> = stdout(&out)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|name| name.starts_with("atbus_"))
        .map(str::to_string)
        .collect();
    assert_eq!(exported, declared, "libatbus.so exports vs include/atbus.h");
}

/// A struct from a newer header (larger `size`, a field this library does not know) is
/// accepted, and the fields this library knows are read from it.
#[test]
fn a_config_from_a_newer_header_is_read_up_to_the_fields_it_knows() {
    #[repr(C)]
    struct Newer {
        config: atbus_config,
        field_of_a_later_version: u64,
    }
    let mut newer = Newer {
        config: config_with_timeout_ms(250),
        field_of_a_later_version: 7,
    };
    newer.config.size = std::mem::size_of::<Newer>();
    newer.config.node_size = 256;
    let ch = TestChannel::new("c-newer-config");
    let handle = Handle::create(&ch.name, &newer.config);
    let channel = Channel::open(&ch.name).unwrap();
    assert_eq!(channel.node_size(), 256);
    assert_eq!(channel.timeout(), Duration::from_millis(250));
    drop(handle);
}

thread_local! {
    /// Allocations made by this thread (see `CountingAllocator`).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each thread's allocations, so a test can show that a
/// call allocates nothing.
struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a const-initialised thread-local Cell, which itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's promises about `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// `ATBUS_ERR_EMPTY` and `ATBUS_ERR_FULL`, met in tight polling loops, record a fixed
/// `atbus_last_error` text and allocate nothing.
#[test]
fn empty_and_full_allocate_nothing_and_leave_a_fixed_last_error() {
    let ch = TestChannel::new("c-hot-path");
    let handle = Handle::create(&ch.name, &config_with_timeout_ms(1000));
    let mut buf = [0u8; 64];
    // The first receive takes the reader role.
    assert_eq!(handle.recv(&mut buf).0, ATBUS_ERR_EMPTY);
    // The counter sees what a failure with a formatted message allocates.
    let before = allocations();
    // SAFETY: a live handle; NULL data with a nonzero length is the argument refused.
    let rc = unsafe { atbus_send(handle.0, std::ptr::null(), 1) };
    assert_eq!(rc, ATBUS_ERR_INVALID_ARGUMENT);
    assert!(
        allocations() > before,
        "the allocation counter counts nothing"
    );

    let before = allocations();
    for _ in 0..1000 {
        assert_eq!(handle.recv(&mut buf).0, ATBUS_ERR_EMPTY);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 1000 empty receives"
    );
    assert_eq!(last_error(), "no message ready");

    let msg = [7u8; 1000];
    while handle.send(&msg) == ATBUS_OK {}
    let before = allocations();
    for _ in 0..1000 {
        assert_eq!(handle.send(&msg), ATBUS_ERR_FULL);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 1000 sends to a full ring"
    );
    assert_eq!(
        last_error(),
        "channel is full: retry later (or use atbus_send_timeout)"
    );
}
