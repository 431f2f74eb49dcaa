//! Hostile directories: a property test that builds a bus with two endpoints, overwrites
//! header and record fields (or any bytes) with arbitrary values, then opens the bus,
//! lists and resolves members, joins, sends, sweeps, leaves and unlinks. Whatever the
//! bytes, every call returns (an error is fine): no panic, no out-of-bounds access, no
//! hang (each case runs under a watchdog), and no object outside the bus's own inbox
//! names is ever removed.
//!
//! `HOSTILE_DIR_CASES` sets the number of cases (default 64).

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::Duration;

use atbus_bus::directory::{object_size, offsets, HEADER_SIZE, RECORD_SIZE};
use atbus_bus::Bus;
use common::{shm_path, TempBus};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

const CAPACITY: usize = 4;
/// A case that has not finished after this long hangs.
const WATCHDOG: Duration = Duration::from_secs(60);

/// (offset, width) of every header field and of every record field.
const HEADER_FIELDS: [(usize, usize); 8] = [
    (offsets::MAGIC, 8),
    (offsets::VERSION, 4),
    (offsets::RECORD_SIZE, 4),
    (offsets::CAPACITY, 4),
    (offsets::EPOCH, 8),
    (offsets::LOCK, 8),
    (offsets::NEXT_GENERATION, 8),
    (offsets::CREATED_UNIX_NS, 8),
];
const RECORD_FIELDS: [(usize, usize); 11] = [
    (offsets::R_SEQ, 8),
    (offsets::R_STATE, 4),
    (offsets::R_NAME_LEN, 4),
    (offsets::R_OWNER_PID, 4),
    (offsets::R_INBOX_LEN, 4),
    (offsets::R_OWNER_START, 8),
    (offsets::R_GENERATION, 8),
    (offsets::R_JOINED_UNIX_NS, 8),
    (offsets::R_NAME, 8),
    (offsets::R_INBOX, 8),
    (offsets::R_INBOX + 8, 8),
];

#[derive(Clone, Debug)]
enum Scribble {
    Header {
        field: usize,
        value: u64,
    },
    Record {
        record: usize,
        field: usize,
        value: u64,
    },
    Bytes {
        offset: usize,
        bytes: Vec<u8>,
    },
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0..8u64,
        Just(u64::MAX),
        Just(u64::from(u32::MAX)),
        0..400u64,
        Just(u64::from(std::process::id())),
    ]
}

fn scribble() -> impl Strategy<Value = Scribble> {
    prop_oneof![
        (0..HEADER_FIELDS.len(), value())
            .prop_map(|(field, value)| Scribble::Header { field, value }),
        (0..CAPACITY, 0..RECORD_FIELDS.len(), value()).prop_map(|(record, field, value)| {
            Scribble::Record {
                record,
                field,
                value,
            }
        }),
        (
            0..object_size(CAPACITY),
            prop::collection::vec(any::<u8>(), 1..24)
        )
            .prop_map(|(offset, bytes)| Scribble::Bytes { offset, bytes }),
    ]
}

fn apply(bus: &str, s: &Scribble) {
    let file = OpenOptions::new().write(true).open(shm_path(bus)).unwrap();
    let (offset, bytes) = match s {
        Scribble::Header { field, value } => {
            let (off, width) = HEADER_FIELDS[*field];
            (off, value.to_le_bytes()[..width].to_vec())
        }
        Scribble::Record {
            record,
            field,
            value,
        } => {
            let (off, width) = RECORD_FIELDS[*field];
            (
                HEADER_SIZE + record * RECORD_SIZE + off,
                value.to_le_bytes()[..width].to_vec(),
            )
        }
        Scribble::Bytes { offset, bytes } => (*offset, bytes.clone()),
    };
    let end = (offset + bytes.len()).min(object_size(CAPACITY));
    file.write_all_at(&bytes[..end - offset], offset as u64)
        .unwrap();
}

/// One case: build, scribble, use. Every call may fail; none may panic or hang.
fn run_case(scribbles: Vec<Scribble>) {
    // Scribbles often leave a lock word naming a live process (pid 1, start "unknown"):
    // every lock attempt then ends in `LockBusy` after this bound, not two seconds.
    atbus_bus::fault::set_lock_wait(Duration::from_millis(20));
    let tb = TempBus::new("hostile");
    let bus = Bus::create_with_capacity(&tb.name, CAPACITY).unwrap();
    let mut a = bus.join("a").unwrap();
    let b = bus.join("b").unwrap();
    let gone = bus.join("gone").unwrap();
    drop(gone);
    // A witness outside the bus's names: nothing may remove it.
    let witness = format!("{}-witness", tb.name);
    std::fs::write(shm_path(&witness), b"w").unwrap();

    for s in &scribbles {
        apply(&tb.name, s);
    }

    if let Ok(other) = Bus::open(&tb.name) {
        let _ = other.members();
        let _ = other.lookup("a");
        let _ = other.join("c");
    }
    let _ = bus.members();
    let _ = bus.lookup("a");
    let _ = bus.lookup("b");
    let _ = bus.join("a");
    let _ = bus.join("d");
    let _ = a.try_send_to("b", b"hello");
    let _ = a.try_send_to("a", b"self");
    let _ = a.try_recv();
    let _ = a.request("nobody", b"?", Duration::from_millis(1));
    let _ = bus.sweep();
    drop((a, b));
    let _ = Bus::unlink(&tb.name);
    assert_eq!(std::fs::read(shm_path(&witness)).unwrap(), b"w");
    std::fs::remove_file(shm_path(&witness)).unwrap();
}

#[test]
fn hostile_directories_never_panic_hang_or_reach_outside_the_bus() {
    let cases = std::env::var("HOSTILE_DIR_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    let strategy = prop::collection::vec(scribble(), 1..6);
    runner
        .run(&strategy, |scribbles| {
            let (done, finished) = mpsc::channel();
            let shown = format!("{scribbles:?}");
            let worker = std::thread::spawn(move || {
                run_case(scribbles);
                let _ = done.send(());
            });
            match finished.recv_timeout(WATCHDOG) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Not joined: the worker hangs. Fail (the process ends with the test).
                    return Err(TestCaseError::fail(format!("hang with {shown}")));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            worker
                .join()
                .map_err(|_| TestCaseError::fail(format!("panic with {shown}")))
        })
        .unwrap();
}

#[test]
fn a_directory_of_random_bytes_is_refused_or_used_without_panicking() {
    // Whole-object garbage, with a valid magic and size so validation goes deeper.
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    runner
        .run(
            &prop::collection::vec(any::<u8>(), object_size(CAPACITY)),
            |mut bytes| {
                let tb = TempBus::new("garbage");
                drop(Bus::create_with_capacity(&tb.name, CAPACITY).unwrap());
                bytes[..8].copy_from_slice(b"ATBUSDIR");
                bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
                bytes[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
                bytes[16..20].copy_from_slice(&(CAPACITY as u32).to_le_bytes());
                std::fs::write(shm_path(&tb.name), &bytes).unwrap();
                if let Ok(bus) = Bus::open(&tb.name) {
                    let _ = bus.members();
                    let _ = bus.lookup("a");
                    if let Ok(mut e) = bus.join("z") {
                        let _ = e.try_send_to("z", b"x");
                        let _ = e.try_recv();
                    }
                    let _ = bus.sweep();
                }
                Ok(())
            },
        )
        .unwrap();
}
