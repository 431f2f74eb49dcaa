//! The bus's C ABI (`atbus_bus_*`, `atbus_endpoint_*`) from C, in real processes: a
//! request/reply server in an epoll loop (`tests/c/bus_server.c`) with client processes
//! (`tests/c/bus_client.c`), `ATBUS_ERR_PEER_GONE` when the server is killed while a
//! client waits, and the error paths (`tests/c/bus_errors.c`). The C programs check
//! every byte they receive; the test checks their exit, their output and what they
//! leave on the bus.

use std::io::{BufRead, BufReader, Read};
use std::process::{ChildStdout, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::atbus_bus::Bus;
use atbus_tests::child::ChildGuard;
use atbus_tests::length;
use ffi::*;

/// The C ABI's source compiled into this test, so that Rust can check its error codes
/// (see `c_abi.rs`).
#[path = "../../atbus-capi/src/ffi.rs"]
#[allow(dead_code)]
mod ffi;

mod c_build;

use c_build::*;

/// What `tests/c/bus_common.h` fixes: the writer ids of client k's requests and data
/// messages, and their lengths.
const REQUEST_ID: u64 = 1000;
const DATA_ID: u64 = 2000;
const MIN_LEN: usize = 16;
const MAX_LEN: usize = 2000;

/// A bus name unique to this process, unlinked (directory and inboxes) when dropped.
struct TestBus {
    name: String,
}

impl TestBus {
    fn new(tag: &str) -> TestBus {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("/atbus-cbus-{}-{tag}-{n}", std::process::id());
        let _ = Bus::unlink(&name);
        TestBus { name }
    }

    /// Objects of this bus in /dev/shm: the directory `NAME` and inboxes `NAME.*`.
    fn objects(&self) -> Vec<String> {
        let base = &self.name[1..];
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f == base || f.starts_with(&format!("{base}.")))
            .collect()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = Bus::unlink(&self.name);
    }
}

/// Starts a compiled C program with `args`, stdout piped, stderr forwarded to the test's
/// output; killed when the guard drops or the test binary dies.
fn start(program: &std::path::Path, args: &[&str]) -> ChildGuard {
    let mut cmd = c_program(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd).expect("spawn a C program");
    child.forward_stderr();
    child
}

/// The next line the program prints; fails if it exits first.
fn next_line(out: &mut BufReader<ChildStdout>, what: &str) -> String {
    let mut line = String::new();
    let n = out.read_line(&mut line).unwrap();
    assert!(
        n > 0,
        "{what} exited before printing a line (see its stderr above)"
    );
    line
}

/// Three client processes make 300 requests each to a C server in an epoll loop and
/// send it 250 data messages each; every request, reply and data message is checked
/// byte for byte in C (replies against what the server must answer), and the counts
/// and byte totals here.
#[test]
fn c_server_in_an_epoll_loop_answers_client_processes_every_byte_checked() {
    const CLIENTS: u64 = 3;
    const REQUESTS: u64 = 300;
    const DATA: u64 = 250;
    let scratch = Scratch::new("bus-rpc");
    let server_bin = compile(&scratch, "bus_server", Link::Dynamic);
    let client_bin = compile(&scratch, "bus_client", Link::Static);
    let bus = TestBus::new("rpc");
    let (clients, requests, data) = (CLIENTS.to_string(), REQUESTS.to_string(), DATA.to_string());
    let mut server = start(
        &server_bin,
        &[&bus.name, "server", &clients, &requests, &data],
    );
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    assert_eq!(next_line(&mut server_out, "the server"), "ready\n");

    let children: Vec<ChildGuard> = (0..CLIENTS)
        .map(|k| {
            start(
                &client_bin,
                &[&bus.name, "server", &k.to_string(), &requests, &data],
            )
        })
        .collect();
    let mut expected_bytes = 0;
    for (k, child) in (0..CLIENTS).zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "client {k} failed: {}", out.status);
        let request_lengths: Vec<usize> = (0..REQUESTS)
            .map(|i| length(REQUEST_ID + k, i, MIN_LEN, MAX_LEN))
            .collect();
        let data_bytes: usize = (0..DATA)
            .map(|i| length(DATA_ID + k, i, MIN_LEN, MAX_LEN))
            .sum();
        // Each reply is its request reversed and xored, plus a length byte.
        let reply_bytes: usize = request_lengths.iter().map(|len| len + 1).sum();
        assert_eq!(
            stdout(&out),
            format!("client {k} requests {REQUESTS} data {DATA} reply_bytes {reply_bytes}\n")
        );
        expected_bytes += request_lengths.iter().sum::<usize>() + data_bytes;
    }
    let mut rest = String::new();
    server_out.read_to_string(&mut rest).unwrap();
    assert!(server.wait().unwrap().success(), "the server failed");
    assert_eq!(
        rest,
        format!(
            "served {} requests {} data {expected_bytes} bytes\n",
            CLIENTS * REQUESTS,
            CLIENTS * DATA
        )
    );
    // Every endpoint left the bus: no record, and no inbox left in /dev/shm.
    assert!(Bus::open(&bus.name).unwrap().members().unwrap().is_empty());
    assert_eq!(bus.objects(), [&bus.name[1..]]);
}

/// A client waiting in `atbus_endpoint_request` for a server that never answers gets
/// `ATBUS_ERR_PEER_GONE` well within a second of the server's SIGKILL (the requester
/// looks at its peer every 100 ms), not after its 10 s timeout; the dead server's name
/// can be joined again.
#[test]
fn a_client_waiting_for_a_reply_gets_peer_gone_when_the_server_is_killed() {
    let scratch = Scratch::new("bus-peer-gone");
    let server_bin = compile(&scratch, "bus_server", Link::Static);
    let client_bin = compile(&scratch, "bus_client", Link::Static);
    let bus = TestBus::new("gone");
    let mut server = start(&server_bin, &[&bus.name, "mute", "1", "1", "0", "mute"]);
    let mut server_out = BufReader::new(server.stdout.take().unwrap());
    assert_eq!(next_line(&mut server_out, "the server"), "ready\n");
    let client = start(&client_bin, &[&bus.name, "mute", "0", "wait"]);
    // The server has the request: the client is waiting for its reply.
    assert_eq!(
        next_line(&mut server_out, "the server"),
        "request client-0\n"
    );
    let killed = Instant::now();
    server.kill().unwrap();
    let out = client.wait_with_output().unwrap();
    let after = killed.elapsed();
    eprintln!("PEER_GONE {} ms after the SIGKILL", after.as_millis());
    assert!(out.status.success(), "the client failed: {}", out.status);
    assert_eq!(stdout(&out), "peer gone\n");
    assert!(
        after < Duration::from_secs(1),
        "PEER_GONE came {after:?} after the server was killed"
    );
    server.wait().unwrap();
    // The dead server's record is reclaimed by the next join of its name.
    let b = Bus::open(&bus.name).unwrap();
    let again = b.join("mute").unwrap();
    assert_eq!(b.members().unwrap().len(), 1);
    drop(again);
}

/// `tests/c/bus_errors.c` reaches every error path of the bus calls a C program can:
/// bad arguments, NAME_TAKEN, NO_SUCH_ENDPOINT, EMPTY and FULL with timeout 0,
/// TIMEOUT, BUFFER_TOO_SMALL on recv, request and members (nothing lost), unlink.
#[test]
fn c_program_reaches_the_error_paths_of_the_bus() {
    let scratch = Scratch::new("bus-errors");
    let program = compile(&scratch, "bus_errors", Link::Static);
    let bus = TestBus::new("errors");
    let out = run(c_program(&program).arg(&bus.name));
    assert_eq!(stdout(&out), "bus errors ok\n");
    assert!(bus.objects().is_empty(), "{:?}", bus.objects());
}

#[test]
fn every_bus_error_maps_to_its_code() {
    use ::atbus_bus::Error as E;
    let n = || "x".to_string();
    let io = |errno| E::Io {
        op: "op",
        bus: n(),
        source: std::io::Error::from_raw_os_error(errno),
    };
    let cases = [
        (
            E::InvalidName {
                name: n(),
                reason: "r",
            },
            ATBUS_ERR_INVALID_ARGUMENT,
        ),
        (E::NotARequest, ATBUS_ERR_INVALID_ARGUMENT),
        (E::AlreadyExists { bus: n() }, ATBUS_ERR_EXISTS),
        (E::NotFound { bus: n() }, ATBUS_ERR_NOT_FOUND),
        (E::NotABus { bus: n() }, ATBUS_ERR_BAD_SEGMENT),
        (
            E::Incompatible {
                bus: n(),
                reason: n(),
            },
            ATBUS_ERR_BAD_SEGMENT,
        ),
        (
            E::Corrupt {
                bus: n(),
                reason: n(),
            },
            ATBUS_ERR_BAD_SEGMENT,
        ),
        (E::NotInitialized { bus: n() }, ATBUS_ERR_NOT_INITIALIZED),
        (
            E::ForeignDirectory {
                bus: n(),
                owner_uid: 1,
                mode: 0o600,
                euid: 0,
            },
            ATBUS_ERR_UNTRUSTED,
        ),
        (E::Symlink { bus: n() }, ATBUS_ERR_UNTRUSTED),
        (E::LockBusy { pid: 1 }, ATBUS_ERR_LOCK_BUSY),
        (E::DirectoryFull { capacity: 1 }, ATBUS_ERR_DIRECTORY_FULL),
        (E::NameTaken { name: n(), pid: 1 }, ATBUS_ERR_NAME_TAKEN),
        (E::NoSuchEndpoint { name: n() }, ATBUS_ERR_NO_SUCH_ENDPOINT),
        (E::PeerGone { name: n(), pid: 1 }, ATBUS_ERR_PEER_GONE),
        (E::ReadOnly { bus: n() }, ATBUS_ERR_PERMISSION),
        (E::Empty, ATBUS_ERR_EMPTY),
        (E::Full, ATBUS_ERR_FULL),
        (E::Timeout, ATBUS_ERR_TIMEOUT),
        (
            E::Channel(atbus::Error::TooLarge { len: 2, max: 1 }),
            ATBUS_ERR_TOO_LARGE,
        ),
        (
            E::Channel(atbus::Error::ReaderBusy { pid: 1 }),
            ATBUS_ERR_READER_BUSY,
        ),
        (io(libc::EACCES), ATBUS_ERR_PERMISSION),
        (io(libc::ENOSPC), ATBUS_ERR_NO_SPACE),
        (io(libc::EIO), ATBUS_ERR_IO),
    ];
    for (error, code) in cases {
        assert_eq!(bus_error_code(&error), code, "{error:?}");
    }
    // Every bus code has its own description.
    for code in [
        ATBUS_ERR_NAME_TAKEN,
        ATBUS_ERR_NO_SUCH_ENDPOINT,
        ATBUS_ERR_PEER_GONE,
        ATBUS_ERR_DIRECTORY_FULL,
        ATBUS_ERR_LOCK_BUSY,
    ] {
        // SAFETY: atbus_strerror returns a static NUL-terminated string.
        let text = unsafe { std::ffi::CStr::from_ptr(atbus_strerror(code)) };
        assert_ne!(text.to_str().unwrap(), "unknown atbus error code", "{code}");
    }
}

/// The bus example of `docs/c-api.md` is `tests/c/bus_example.c`, and it runs as shown
/// with both link lines, leaving nothing behind.
#[test]
fn documented_c_bus_example_compiles_and_runs() {
    let example = std::fs::read_to_string(root().join("tests/c/bus_example.c")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/c-api.md")).unwrap();
    let block = doc
        .split("```c\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("atbus_bus_open"))
        .expect("docs/c-api.md has a ```c block with the bus example");
    assert_eq!(
        block, example,
        "the bus example of docs/c-api.md differs from tests/c/bus_example.c: copy the file \
         into it"
    );
    let scratch = Scratch::new("bus-example");
    for link in [Link::Static, Link::Dynamic] {
        let program = compile(&scratch, "bus_example", link);
        let bus = TestBus::new("example");
        let out = run(c_program(&program).arg(&bus.name));
        assert_eq!(
            stdout(&out),
            "orders got \"buy 10\" from client\n\
             request to nobody: no endpoint of that name on the bus\n\
             2 members: orders client\n"
        );
        assert!(bus.objects().is_empty(), "{:?}", bus.objects());
    }
}
