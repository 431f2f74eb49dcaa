//! The bus in one process: names, leave, request/reply failure paths, the lock and
//! record repair after a dead holder, and the directory's security checks.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use atbus::{Backoff, Channel};
use atbus_bus::directory::{offsets, state, HEADER_SIZE, RECORD_SIZE};
use atbus_bus::{Bus, Error, Kind};
use common::{shm_path, TempBus};

const WAIT: Duration = Duration::from_secs(10);

fn poke(bus: &str, offset: usize, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(shm_path(bus)).unwrap();
    file.write_all_at(bytes, offset as u64).unwrap();
}

fn record(i: usize) -> usize {
    HEADER_SIZE + RECORD_SIZE * i
}

/// A pid no process has: above the kernel's pid_max.
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304);
    max + 1
}

#[test]
fn leaving_frees_the_record_and_unlinks_the_inbox_and_generations_never_repeat() {
    let tb = TempBus::new("leave");
    let bus = Bus::create(&tb.name).unwrap();
    let epoch = bus.epoch();
    let a = bus.join("a").unwrap();
    assert!(bus.epoch() > epoch);
    let (first, inbox) = (a.generation(), a.inbox().to_string());
    assert_eq!(inbox, format!("{}.a.g{first}", tb.name));
    assert!(shm_path(&inbox).exists());
    // A member's name compares with a &str and orders as one; its inbox is the endpoint's.
    let b = bus.join("b").unwrap();
    let members = bus.members().unwrap();
    assert_eq!(members.len(), 2);
    assert!(members[0].name == "a" && "b" == members[1].name && members[0].name < members[1].name);
    assert_eq!(
        (members[0].inbox(), members[1].inbox()),
        (inbox.clone(), b.inbox().to_string())
    );
    assert_eq!(members[1].generation, b.generation());
    assert_eq!(bus.lookup("b").unwrap().unwrap(), members[1]);
    drop(b);
    let meta = std::fs::metadata(shm_path(&tb.name)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    drop(a);
    assert!(!shm_path(&inbox).exists());
    assert!(bus.members().unwrap().is_empty());
    assert!(bus.lookup("a").unwrap().is_none());
    let again = bus.join("a").unwrap();
    assert!(again.generation() > first);
    assert_ne!(again.inbox(), inbox);
}

#[test]
fn a_name_is_refused_while_this_process_holds_it_and_bad_names_are_refused() {
    let tb = TempBus::new("names");
    let bus = Bus::create(&tb.name).unwrap();
    let _a = bus.join("a").unwrap();
    match bus.join("a") {
        Err(Error::NameTaken { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    for bad in ["", "a/b", "with space", &"x".repeat(64)] {
        assert!(
            matches!(bus.join(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    for bad in ["prod", "/a/b", "/"] {
        assert!(
            matches!(Bus::create(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Bus::create(&tb.name),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Bus::open("/atbus-bus-test-no-such-bus"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_full_directory_refuses_a_join_until_a_member_leaves() {
    let tb = TempBus::new("full");
    let bus = Bus::create_with_capacity(&tb.name, 2).unwrap();
    let a = bus.join("a").unwrap();
    let _b = bus.join("b").unwrap();
    assert!(matches!(
        bus.join("c"),
        Err(Error::DirectoryFull { capacity: 2 })
    ));
    drop(a);
    bus.join("c").unwrap();
}

#[test]
fn a_request_to_a_missing_endpoint_fails_at_once() {
    let tb = TempBus::new("missing");
    let bus = Bus::create(&tb.name).unwrap();
    let mut client = bus.join("client").unwrap();
    let start = Instant::now();
    match client.request("nobody", b"?", Duration::from_secs(30)) {
        Err(Error::NoSuchEndpoint { name }) => assert_eq!(name, "nobody"),
        other => panic!("expected NoSuchEndpoint, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        client.send_to("nobody", b"x"),
        Err(Error::NoSuchEndpoint { .. })
    ));
}

#[test]
fn a_reply_after_its_request_timed_out_is_dropped_and_counted_never_delivered() {
    let tb = TempBus::new("late");
    let bus = Bus::create(&tb.name).unwrap();
    let mut client = bus.join("client").unwrap();
    let mut server = bus.join("server").unwrap();
    assert!(matches!(
        client.request("server", b"first", Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let first = server.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (first.envelope.kind, first.envelope.from()),
        (Kind::Request, "client")
    );
    server.reply(&first.envelope, b"late").unwrap();
    // A reply is not a request: it cannot be answered.
    client.send_to("server", b"data").unwrap();
    let data = server.recv_timeout(WAIT).unwrap();
    assert!(matches!(
        server.reply(&data.envelope, b"x"),
        Err(Error::NotARequest)
    ));

    // The late reply does not answer the next request, whose own reply does.
    let handle = std::thread::spawn(move || {
        let second = server.recv_timeout(WAIT).unwrap();
        assert_eq!(second.payload, b"second");
        assert!(second.envelope.correlation > first.envelope.correlation);
        server.reply(&second.envelope, b"on time").unwrap();
        server
    });
    assert_eq!(
        client.request("server", b"second", WAIT).unwrap(),
        b"on time"
    );
    assert_eq!(client.stats().dropped_replies, 1);
    assert!(matches!(client.try_recv(), Err(Error::Empty)));
    drop(handle.join().unwrap());
}

#[test]
fn a_reply_to_a_requester_that_restarted_is_refused_and_never_reaches_the_new_one() {
    let tb = TempBus::new("restart");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = bus.join("server").unwrap();
    let mut client = bus.join("client").unwrap();
    assert!(matches!(
        client.request("server", b"q", Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    drop(client);
    let mut client = bus.join("client").unwrap();
    let request = server.recv_timeout(WAIT).unwrap();
    assert!(matches!(
        server.reply(&request.envelope, b"a"),
        Err(Error::PeerGone { .. })
    ));
    assert!(matches!(client.try_recv(), Err(Error::Empty)));
}

#[test]
fn try_send_to_a_full_inbox_is_full_and_send_to_timeout_times_out() {
    let tb = TempBus::new("fullbox");
    let bus = Bus::create(&tb.name).unwrap();
    let mut sink = bus.join_with("sink", 64 << 10).unwrap();
    let mut src = bus.join("src").unwrap();
    let msg = [9u8; 1000];
    let mut sent = 0;
    loop {
        match src.try_send_to("sink", &msg) {
            Ok(()) => sent += 1,
            Err(Error::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 10);
    assert!(matches!(
        src.send_to_timeout("sink", &msg, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    let mut payload = Vec::new();
    for i in 0..sent {
        if i % 2 == 0 {
            assert_eq!(sink.try_recv().unwrap().payload, msg);
        } else {
            let envelope = sink.try_recv_into(&mut payload).unwrap();
            assert_eq!((envelope.kind, envelope.from()), (Kind::Data, "src"));
            assert_eq!(payload, msg);
        }
    }
    assert!(matches!(sink.try_recv(), Err(Error::Empty)));
    assert!(matches!(
        sink.try_recv_into(&mut payload),
        Err(Error::Empty)
    ));
}

#[test]
fn mutual_requests_between_full_inboxes_end_in_timeouts_not_a_hang() {
    let tb = TempBus::new("mutual");
    let bus = Bus::create(&tb.name).unwrap();
    let mut a = bus.join_with("a", 64 << 10).unwrap();
    let mut b = bus.join_with("b", 64 << 10).unwrap();
    let filler = [0u8; 1000];
    while a.try_send_to("b", &filler).is_ok() {}
    while b.try_send_to("a", &filler).is_ok() {}
    let other = std::thread::spawn(move || {
        let r = b.request("a", b"?", Duration::from_millis(300));
        (r, b)
    });
    let start = Instant::now();
    let mine = a.request("b", b"?", Duration::from_millis(300));
    let (theirs, _b) = other.join().unwrap();
    assert!(matches!(mine, Err(Error::Timeout)), "{mine:?}");
    assert!(matches!(theirs, Err(Error::Timeout)), "{theirs:?}");
    assert!(start.elapsed() < WAIT);
}

#[test]
fn the_lock_of_a_dead_holder_is_taken_over_and_a_record_left_mid_claim_is_freed() {
    let tb = TempBus::new("takeover");
    let bus = Bus::create(&tb.name).unwrap();
    // A holder that died holding the lock, in the middle of claiming record 0.
    poke(
        &tb.name,
        offsets::LOCK,
        &u64::from(dead_pid()).to_le_bytes(),
    );
    poke(&tb.name, record(0) + offsets::R_SEQ, &7u64.to_le_bytes());
    poke(
        &tb.name,
        record(0) + offsets::R_STATE,
        &state::CLAIMED.to_le_bytes(),
    );
    poke(
        &tb.name,
        record(0) + offsets::R_NAME_LEN,
        &200u32.to_le_bytes(),
    );
    let joined = bus.join("x").unwrap();
    assert_eq!(bus.lock_takeovers(), 1);
    let members = bus.members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "x");
    drop(joined);
    assert!(bus.members().unwrap().is_empty());
}

#[test]
fn a_lock_held_by_a_live_process_makes_join_fail_with_lock_busy_not_hang() {
    let tb = TempBus::new("busy");
    let bus = Bus::create(&tb.name).unwrap();
    // PID 1 is alive; no start time recorded beside it matches, but the word is checked
    // against /proc as the lock's owner: use its real start time.
    let start = atbus::process::stat(1).map_or(0, |s| s.start_time);
    let word = 1u64 | (u64::from(start as u32) << 32);
    poke(&tb.name, offsets::LOCK, &word.to_le_bytes());
    let t = Instant::now();
    match bus.join("x") {
        Err(Error::LockBusy { pid }) => assert_eq!(pid, 1),
        other => panic!("expected LockBusy, got {other:?}"),
    }
    assert!(t.elapsed() < WAIT);
    // Readers take no lock.
    assert!(bus.members().unwrap().is_empty());
}

#[test]
fn a_scribbled_record_is_reported_corrupt_and_cannot_name_a_foreign_object() {
    let tb = TempBus::new("corrupt");
    let bus = Bus::create(&tb.name).unwrap();
    let _a = bus.join("a").unwrap();
    // Point record 0's inbox at some other object: refused, never opened or unlinked.
    let victim = format!("/atbus-bus-test-victim-{}", std::process::id());
    let victim_path = shm_path(&victim);
    std::fs::write(&victim_path, b"keep me").unwrap();
    poke(&tb.name, record(0) + offsets::R_INBOX, victim.as_bytes());
    poke(
        &tb.name,
        record(0) + offsets::R_INBOX_LEN,
        &(victim.len() as u32).to_le_bytes(),
    );
    assert!(matches!(bus.members(), Err(Error::Corrupt { .. })));
    assert!(matches!(bus.lookup("a"), Err(Error::Corrupt { .. })));
    assert!(matches!(bus.join("b"), Err(Error::Corrupt { .. })));
    Bus::unlink(&tb.name).unwrap();
    assert_eq!(std::fs::read(&victim_path).unwrap(), b"keep me");
    std::fs::remove_file(&victim_path).unwrap();
}

#[test]
fn a_directory_others_may_write_or_a_symlink_is_refused_unless_opted_in() {
    let tb = TempBus::new("foreign");
    let _bus = Bus::create(&tb.name).unwrap();
    let path = shm_path(&tb.name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    match Bus::open(&tb.name) {
        Err(e @ Error::ForeignDirectory { .. }) => {
            assert!(e.to_string().contains("allow_foreign_owner"), "{e}")
        }
        other => panic!("expected ForeignDirectory, got {other:?}"),
    }
    atbus_bus::OpenOptions::new()
        .allow_foreign_owner(true)
        .open(&tb.name)
        .unwrap();

    let link = TempBus::new("link");
    std::os::unix::fs::symlink(&path, shm_path(&link.name)).unwrap();
    assert!(matches!(Bus::open(&link.name), Err(Error::Symlink { .. })));
    std::fs::remove_file(shm_path(&link.name)).unwrap();
}

#[test]
fn lock_free_readers_never_see_a_torn_record_while_endpoints_churn() {
    // Every record a reader returns is checked (its inbox name must be the one its name
    // and generation give), so a torn copy — a name from one claim, an inbox from
    // another — would surface as `Corrupt`. Names of different lengths make tears likely.
    let tb = TempBus::new("churn");
    let bus = Bus::create_with_capacity(&tb.name, 1).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (bus, stop) = (bus.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let members = bus.members().unwrap();
                assert!(members.len() <= 1);
                for m in &members {
                    assert!(m.name == "a" || m.name == "a-much-longer-name-than-the-other");
                    seen += 1;
                }
                if let Some(m) = bus.lookup("a").unwrap() {
                    assert_eq!(m.name, "a");
                }
            }
            seen
        })
    };
    for i in 0..3000 {
        let name = if i % 2 == 0 {
            "a"
        } else {
            "a-much-longer-name-than-the-other"
        };
        drop(bus.join_with(name, 16 << 10).unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.join().unwrap();
    assert!(seen > 0, "the reader never saw a member");
}

/// The bytes of a reply envelope, as `envelope.rs` lays it out (LEB128 varints).
fn forged_reply(from: &str, from_generation: u64, correlation: u64, to_generation: u64) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = vec![2, from.len() as u8];
    out.extend_from_slice(from.as_bytes());
    varint(&mut out, from_generation);
    varint(&mut out, correlation);
    varint(&mut out, to_generation);
    out.extend_from_slice(b"forged");
    out
}

#[test]
fn replies_for_another_generation_and_malformed_messages_are_dropped_and_counted() {
    let tb = TempBus::new("forged");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = bus.join("server").unwrap();
    let client = bus.join("client").unwrap();
    let client_inbox = atbus::Channel::open(client.inbox()).unwrap().writer();
    let client_generation = client.generation();
    let waiting = std::thread::spawn(move || {
        let mut client = client;
        let reply = client.request("server", b"q", WAIT);
        (reply, client)
    });
    let request = server.recv_timeout(WAIT).unwrap();
    let (corr, server_generation) = (request.envelope.correlation, server.generation());
    // Garbage, then a reply with the right id for the requester's previous generation,
    // then one from the right sender name but another generation; then the real reply.
    client_inbox.send(b"\xffnot an envelope").unwrap();
    client_inbox
        .send(&forged_reply(
            "server",
            server_generation,
            corr,
            client_generation - 1,
        ))
        .unwrap();
    client_inbox
        .send(&forged_reply(
            "server",
            server_generation + 7,
            corr,
            client_generation,
        ))
        .unwrap();
    server.reply(&request.envelope, b"real").unwrap();
    let (reply, mut client) = waiting.join().unwrap();
    assert_eq!(reply.unwrap(), b"real");
    let stats = client.stats();
    assert_eq!(
        (stats.malformed, stats.dropped_replies, stats.held),
        (1, 2, 0)
    );
    assert!(matches!(client.try_recv(), Err(Error::Empty)));
}

/// Overwrites record `index`'s owner with `pid` started at `start` (clock ticks).
fn forge_owner(bus: &str, index: usize, pid: u32, start: u64) {
    poke(
        bus,
        record(index) + offsets::R_OWNER_PID,
        &pid.to_le_bytes(),
    );
    poke(
        bus,
        record(index) + offsets::R_OWNER_START,
        &start.to_le_bytes(),
    );
}

#[test]
fn a_record_of_a_reused_pid_is_dead_and_one_of_another_users_live_process_is_alive() {
    let tb = TempBus::new("liveness");
    let bus = Bus::create(&tb.name).unwrap();
    // Record 0 names this process's pid with another start time: the pid was reused.
    let x = bus.join("x").unwrap();
    let (pid, start) = atbus::process::current();
    forge_owner(&tb.name, 0, pid, start + 1);
    let members = bus.members().unwrap();
    assert_eq!((members[0].pid, members[0].alive), (pid, false));
    let again = bus.join("x").unwrap();
    assert!(again.generation() > x.generation());
    drop(again);
    std::mem::forget(x); // its record is gone; dropping it would only unlink its inbox

    // Record 0 now names a live process of another user (uid nobody; the tests run as
    // root): alive, so its name is refused.
    let mut other = std::process::Command::new("cat")
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn cat as uid 65534");
    let other_start = atbus::process::stat(other.id()).unwrap().start_time;
    let y = bus.join("y").unwrap();
    forge_owner(&tb.name, 0, other.id(), other_start);
    let members = bus.members().unwrap();
    assert_eq!((members[0].pid, members[0].alive), (other.id(), true));
    match bus.join("y") {
        Err(Error::NameTaken { pid, .. }) => assert_eq!(pid, other.id()),
        r => panic!("expected NameTaken, got {r:?}"),
    }
    drop(other.stdin.take());
    other.wait().unwrap();
    assert!(!bus.members().unwrap()[0].alive);
    bus.join("y").unwrap();
    std::mem::forget(y);
}

#[test]
fn interleaved_senders_of_one_process_are_told_apart_by_every_receive() {
    // One process, so one pid: the receive's cache of known sender names (by pid) misses
    // at every change of sender and must never hand out the previous sender's name.
    let tb = TempBus::new("interleaved");
    let bus = Bus::create(&tb.name).unwrap();
    let mut sink = bus.join("sink").unwrap();
    let names = ["a", "ab", "abc", "a-much-longer-endpoint-name", "b"];
    let mut senders: Vec<_> = names.iter().map(|n| bus.join(n).unwrap()).collect();
    let expected: Vec<(usize, Vec<u8>)> = (0..200)
        .map(|i: usize| ((i * 7 + i / 3) % names.len(), format!("m{i}").into_bytes()))
        .collect();
    for (who, msg) in &expected {
        senders[*who].try_send_to("sink", msg).unwrap();
    }
    let mut payload = Vec::new();
    for (i, (who, msg)) in expected.iter().enumerate() {
        let generation = senders[*who].generation();
        let (from, from_generation, pid, body) = match i % 3 {
            0 => sink
                .try_recv_with(|e, p| {
                    (
                        e.from().to_string(),
                        e.from_generation,
                        e.from_pid,
                        p.to_vec(),
                    )
                })
                .unwrap(),
            1 => {
                let e = sink.try_recv_into(&mut payload).unwrap();
                (
                    e.from().to_string(),
                    e.from_generation,
                    e.from_pid,
                    payload.clone(),
                )
            }
            _ => {
                let m = sink.try_recv().unwrap();
                let e = m.envelope;
                (
                    e.from().to_string(),
                    e.from_generation,
                    e.from_pid,
                    m.payload,
                )
            }
        };
        assert_eq!(
            (from.as_str(), from_generation, pid, &body),
            (names[*who], generation, std::process::id(), msg),
            "message {i}"
        );
    }
    assert!(matches!(sink.try_recv_with(|_, _| ()), Err(Error::Empty)));
    assert_eq!(sink.stats().malformed, 0);
}

/// `n` bytes of message `i`: every byte differs between messages and positions.
fn pattern(i: usize, n: usize) -> Vec<u8> {
    (0..n).map(|j| (i * 131 + j * 7 + j / 251) as u8).collect()
}

/// What the in-place servers below make of a request: every byte's bits inverted.
fn answered(request: &[u8]) -> Vec<u8> {
    request.iter().map(|b| !b).collect()
}

#[test]
fn a_request_lent_in_place_is_answered_with_its_changed_payload() {
    let tb = TempBus::new("in-place");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = bus.join("server").unwrap();
    let mut client = bus.join("client").unwrap();
    // Around the endpoint's first receive buffer (4096 bytes) and up to the largest.
    let max = server.max_payload_len();
    let sizes = [0, 1, 31, 32, 33, 1000, 4000, 4096, 4097, 20_000, max];
    std::thread::scope(|scope| {
        let served = scope.spawn(move || {
            // A data message first: lent like any other, but not a request to answer.
            let mut data = server.recv_ref_timeout(WAIT).unwrap();
            assert_eq!(data.envelope().kind, Kind::Data);
            assert_eq!(data.payload(), b"data first");
            assert!(matches!(data.try_reply_in_place(), Err(Error::NotARequest)));
            assert_eq!(data.to_message().payload, b"data first");
            drop(data);
            for _ in sizes {
                let mut request = server.recv_ref_timeout(WAIT).unwrap();
                assert_eq!(request.envelope().kind, Kind::Request);
                assert_eq!(request.envelope().from(), "client");
                for b in request.payload_mut() {
                    *b = !*b;
                }
                request.reply_in_place().unwrap();
            }
            assert!(matches!(server.try_recv_ref(), Err(Error::Empty)));
            server.stats()
        });
        client.send_to("server", b"data first").unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let request = pattern(i, n);
            let reply = client.request("server", &request, WAIT).unwrap();
            assert!(reply == answered(&request), "reply {i} ({n} bytes)");
        }
        let stats = served.join().unwrap();
        assert_eq!((stats.malformed, stats.dropped_replies), (0, 0));
    });
}

#[test]
fn a_request_held_while_another_waited_is_lent_and_answered_in_place() {
    let tb = TempBus::new("held-in-place");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = bus.join("server").unwrap();
    let mut upstream = bus.join("upstream").unwrap();
    let mut client = bus.join("client").unwrap();
    let inbox = Channel::open(server.inbox()).unwrap();
    let held_request = pattern(7, 5000);
    std::thread::scope(|scope| {
        let asked = scope.spawn(|| client.request("server", &held_request, WAIT).unwrap());
        let upstream = scope.spawn(move || {
            let mut request = upstream.recv_ref_timeout(WAIT).unwrap();
            request.payload_mut().reverse();
            request.reply_in_place().unwrap();
        });
        // The client's request is in the server's inbox before the server asks
        // upstream: the server's wait for its own reply must hold it.
        let mut backoff = Backoff::new();
        while inbox.stats().messages_sent == 0 {
            backoff.snooze();
        }
        let reply = server.request("upstream", b"abc", WAIT).unwrap();
        assert_eq!(reply, b"cba");
        assert_eq!(server.stats().held, 1);
        let mut request = server.try_recv_ref().unwrap();
        assert_eq!(request.envelope().kind, Kind::Request);
        assert!(request.payload() == held_request.as_slice());
        for b in request.payload_mut() {
            *b = !*b;
        }
        request.reply_in_place().unwrap();
        drop(request);
        assert!(asked.join().unwrap() == answered(&held_request));
        upstream.join().unwrap();
        assert!(matches!(server.try_recv_ref(), Err(Error::Empty)));
    });
}

#[test]
fn a_bus_of_another_version_is_refused_with_what_to_do() {
    let tb = TempBus::new("version");
    drop(Bus::create(&tb.name).unwrap());
    // Version 1: the same layout, the envelope without padding.
    poke(&tb.name, offsets::VERSION, &1u32.to_le_bytes());
    let err = Bus::open(&tb.name).unwrap_err();
    assert!(matches!(err, Error::Incompatible { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("version 1, this build reads 2") && text.contains("recreate"),
        "{text}"
    );
    // Recreated, it opens.
    Bus::unlink(&tb.name).unwrap();
    drop(Bus::create(&tb.name).unwrap());
    Bus::open(&tb.name).unwrap();
}
