//! The tokio endpoint of the bus (`atbus_bus::AsyncEndpoint`) with peers in other
//! processes: requests to a server process, an async server answering client processes,
//! a server killed while a request waits, data held while a request waits, and a send
//! that waits for room.

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::time::{Duration, Instant};

use atbus_bus::{AsyncEndpoint, Bus, Error, Kind};
use atbus_tests::child::ChildGuard;
use atbus_tests::{check_payload, payload};

mod common;
use common::peer;

/// A current-thread tokio runtime with I/O and timers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A bus name for one test, unlinked (with its inboxes) on drop.
struct TempBus(String);

impl TempBus {
    fn new(tag: &str) -> TempBus {
        let name = format!("/atbus-async-bus-{}-{tag}", std::process::id());
        let _ = Bus::unlink(&name);
        TempBus(name)
    }
}

impl Drop for TempBus {
    fn drop(&mut self) {
        let _ = Bus::unlink(&self.0);
    }
}

/// The first line the child prints (bounded: the child dies with the test otherwise).
fn first_line(child: &mut ChildGuard) -> (String, BufReader<ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (line.trim().to_string(), out)
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn async_requests_to_a_server_process_get_every_reply_and_keep_its_data_in_order() {
    const COUNT: u64 = 200;
    let bus = TempBus::new("requests");
    let b = Bus::create(&bus.0).unwrap();
    let mut server = peer(&["bus-serve", &bus.0, "server", &COUNT.to_string()]);
    let (ready, mut out) = first_line(&mut server);
    assert_eq!(ready, "ready");
    runtime().block_on(async {
        let mut client = AsyncEndpoint::new(b.join("client").unwrap()).unwrap();
        for seq in 0..COUNT {
            let request = payload(7, seq, 16 + (seq as usize * 37) % 3000);
            let reply = client.request("server", &request, LIMIT).await.unwrap();
            let mut expected = request.clone();
            expected.reverse();
            assert_eq!(reply, expected, "reply {seq}");
        }
        // The server's notes (data sent before each reply) were held, in order.
        assert_eq!(client.get_mut().stats().held, COUNT as usize);
        for seq in 0..COUNT {
            let note = client.recv().await.unwrap();
            assert_eq!(note.envelope.kind, Kind::Data);
            assert_eq!(note.envelope.from(), "server");
            assert_eq!(note.payload, format!("note {}", seq + 1).as_bytes());
        }
        assert_eq!(client.get_mut().stats().dropped_replies, 0);
    });
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "served");
    assert!(server.wait().unwrap().success());
}

#[test]
fn an_async_server_answers_three_client_processes_byte_for_byte() {
    const CLIENTS: u64 = 3;
    const COUNT: u64 = 300;
    let bus = TempBus::new("server");
    let b = Bus::create(&bus.0).unwrap();
    runtime().block_on(async {
        let mut server = AsyncEndpoint::new(b.join("server").unwrap()).unwrap();
        let clients: Vec<ChildGuard> = (0..CLIENTS)
            .map(|id| {
                let name = format!("client{id}");
                let len = (100 + id * 900).to_string();
                peer(&[
                    "bus-request",
                    &bus.0,
                    &name,
                    "server",
                    &id.to_string(),
                    &COUNT.to_string(),
                    &len,
                ])
            })
            .collect();
        let mut next = [0u64; CLIENTS as usize];
        for _ in 0..CLIENTS * COUNT {
            let msg = tokio::time::timeout(LIMIT, server.recv())
                .await
                .expect("no request for 60 s")
                .unwrap();
            assert_eq!(msg.envelope.kind, Kind::Request);
            let (id, seq) = check_payload(&msg.payload).unwrap();
            assert_eq!(msg.envelope.from(), format!("client{id}"));
            assert_eq!(
                seq, next[id as usize],
                "client {id}'s requests out of order"
            );
            next[id as usize] += 1;
            let mut answer = msg.payload;
            answer.reverse();
            server.reply(&msg.envelope, &answer).await.unwrap();
        }
        for client in clients {
            let out = client.wait_with_output().unwrap();
            assert!(out.status.success(), "client failed: {:?}", out.status);
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
        }
    });
}

#[test]
fn an_async_request_whose_server_is_killed_ends_with_peer_gone_within_a_second() {
    let bus = TempBus::new("gone");
    let b = Bus::create(&bus.0).unwrap();
    // A server that is stopped (SIGSTOP: alive, never answers) once it is ready.
    let mut server = peer(&["bus-serve", &bus.0, "server", "1000000"]);
    let (ready, _out) = first_line(&mut server);
    assert_eq!(ready, "ready");
    let rt = runtime();
    rt.block_on(async {
        let mut client = AsyncEndpoint::new(b.join("client").unwrap()).unwrap();
        // No such endpoint: at once.
        let started = Instant::now();
        let missing = client.request("nobody", b"x", LIMIT).await;
        assert!(
            matches!(missing, Err(Error::NoSuchEndpoint { .. })),
            "{missing:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        // The request is sent, waits; then the server is killed: PeerGone within a
        // second of the kill (the killer waits for the request in the server's inbox).
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server.id() as i32),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        let pid = server.id();
        let inbox = b.lookup("server").unwrap().expect("server joined").inbox();
        let killer = tokio::task::spawn_blocking(move || {
            let inspector = atbus::Inspector::open(&inbox).unwrap();
            let deadline = Instant::now() + LIMIT;
            while inspector.cursors().used_nodes == 0 {
                assert!(
                    Instant::now() < deadline,
                    "the request never reached the inbox"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            let killed = Instant::now();
            server.kill().unwrap();
            server.wait().unwrap();
            killed
        });
        let result = client.request("server", b"ping", LIMIT).await;
        let ended = Instant::now();
        let killed = killer.await.unwrap();
        match result {
            Err(Error::PeerGone { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected PeerGone, got {other:?}"),
        }
        let after = ended.duration_since(killed);
        assert!(
            after < Duration::from_secs(1),
            "PeerGone {after:?} after the kill"
        );
    });
}

#[test]
fn an_async_send_waits_for_room_and_loses_nothing() {
    const COUNT: u64 = 2000;
    let bus = TempBus::new("room");
    let b = Bus::create(&bus.0).unwrap();
    let mut sink = b.join_with("sink", 64 << 10).unwrap();
    runtime().block_on(async {
        let mut sender = AsyncEndpoint::new(b.join("sender").unwrap()).unwrap();
        // The sink drains in another thread while the sender fills its inbox.
        let drain = std::thread::spawn(move || {
            for seq in 0..COUNT {
                let m = sink.recv_timeout(LIMIT).unwrap();
                assert_eq!(check_payload(&m.payload).unwrap(), (1, seq));
            }
            sink
        });
        let mut full_seen = false;
        for seq in 0..COUNT {
            let msg = payload(1, seq, 1000);
            if !full_seen {
                full_seen = matches!(sender.get_mut().try_send_to("sink", &msg), Err(Error::Full));
                if !full_seen {
                    continue;
                }
            }
            sender.send_to("sink", &msg).await.unwrap();
        }
        assert!(full_seen, "the inbox never filled: the test proves nothing");
        drop(drain.join().unwrap());
    });
}
