//! The bus across real processes: concurrent joins, reclaim after SIGKILL, send_to with
//! every byte and each sender's order checked, request/reply, and `PeerGone` when the
//! server dies or leaves while a request waits. Peers are `atbus-bus-peer` processes;
//! the tests synchronise on the lines they print.

mod common;

use std::time::{Duration, Instant};

use atbus_bus::{Bus, Error, Kind};
use common::{payload, shm_path, Peer, TempBus};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn of_many_processes_joining_one_name_at_once_exactly_one_wins() {
    for n in [2, 8, 16] {
        race(n);
    }
}

fn race(n: usize) {
    let tb = TempBus::new("race");
    let bus = Bus::create(&tb.name).unwrap();
    let mut peers: Vec<Peer> = (0..n)
        .map(|_| Peer::spawn(&["join", &tb.name, "svc"]))
        .collect();
    for p in &peers {
        p.expect("ready");
    }
    // Release them together: each joins as soon as its line arrives.
    for p in &mut peers {
        p.send_line("go");
    }
    let mut winners = Vec::new();
    let mut taken_by = Vec::new();
    for p in &peers {
        let line = p.line();
        if let Some(generation) = line.strip_prefix("joined ") {
            winners.push((p.pid, generation.parse::<u64>().unwrap()));
        } else if let Some(pid) = line.strip_prefix("taken ") {
            taken_by.push(pid.parse::<u32>().unwrap());
        } else {
            panic!("peer {} said {line:?}", p.pid);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let (winner, generation) = winners[0];
    assert_eq!(taken_by, vec![winner; n - 1]);
    let members = bus.members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (
            members[0].name.as_str(),
            members[0].pid,
            members[0].generation
        ),
        ("svc", winner, generation)
    );
    assert!(members[0].alive && members[0].ready);
    let inbox = members[0].inbox();
    assert!(shm_path(&inbox).exists());
    // The losers exit on their own; the winner leaves when its stdin closes.
    for p in &mut peers {
        p.close_stdin();
        assert!(p.wait().success());
    }
    assert!(bus.members().unwrap().is_empty());
    assert!(!shm_path(&inbox).exists(), "{inbox} left behind");
}

#[test]
fn a_sigkilled_endpoint_is_reclaimed_by_the_next_join_and_its_inbox_removed() {
    let tb = TempBus::new("reclaim");
    let bus = Bus::create(&tb.name).unwrap();
    let mut holder = Peer::spawn(&["hold", &tb.name, "orders"]);
    let joined = holder.expect("joined");
    let (generation, old_inbox) = joined.split_once(' ').unwrap();
    let old_generation: u64 = generation.parse().unwrap();
    assert!(shm_path(old_inbox).exists());

    // Held by a live process: refused, naming it.
    match bus.join("orders") {
        Err(Error::NameTaken { pid, .. }) => assert_eq!(pid, holder.pid),
        other => panic!("expected NameTaken, got {other:?}"),
    }

    holder.kill();
    let members = bus.members().unwrap();
    assert_eq!(members.len(), 1);
    assert!(!members[0].alive, "{members:?}");
    assert_eq!(members[0].pid, holder.pid);

    let endpoint = bus.join("orders").unwrap();
    assert!(endpoint.generation() > old_generation);
    assert!(
        !shm_path(old_inbox).exists(),
        "old inbox {old_inbox} left behind"
    );
    assert!(!shm_path(&format!("{old_inbox}.bell")).exists());
    assert!(shm_path(endpoint.inbox()).exists());
    let members = bus.members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].pid, members[0].generation, members[0].alive),
        (std::process::id(), endpoint.generation(), true)
    );
    let inbox = endpoint.inbox().to_string();
    drop(endpoint);
    assert!(!shm_path(&inbox).exists());
    assert!(bus.members().unwrap().is_empty());
}

#[test]
fn send_to_across_processes_delivers_every_byte_in_each_senders_order() {
    const SENDERS: u32 = 3;
    const COUNT: u32 = 3000;
    let tb = TempBus::new("send");
    let bus = Bus::create(&tb.name).unwrap();
    // A small inbox, so senders also wait for room.
    let mut sink = bus.join_with("sink", 64 << 10).unwrap();
    let mut peers: Vec<Peer> = (0..SENDERS)
        .map(|id| {
            Peer::spawn(&[
                "send",
                &tb.name,
                &format!("src-{id}"),
                "sink",
                &id.to_string(),
                &COUNT.to_string(),
            ])
        })
        .collect();
    let mut next = vec![0u32; SENDERS as usize];
    let mut generations = vec![None; SENDERS as usize];
    for _ in 0..SENDERS * COUNT {
        let msg = sink.recv_timeout(WAIT).unwrap();
        let (id, seq) = payload::check(&msg.payload)
            .unwrap_or_else(|| panic!("damaged message {:?}", msg.payload));
        let i = id as usize;
        assert!(i < SENDERS as usize, "unknown sender {id}");
        assert_eq!(seq, next[i], "sender {id} out of order");
        next[i] += 1;
        let env = msg.envelope;
        assert_eq!(env.kind, Kind::Data);
        assert_eq!(env.from(), format!("src-{id}"));
        assert_eq!(env.from_pid, peers[i].pid);
        assert_eq!(env.correlation, 0);
        // One generation per sender for the whole run.
        assert_eq!(
            *generations[i].get_or_insert(env.from_generation),
            env.from_generation
        );
    }
    assert_eq!(next, vec![COUNT; SENDERS as usize]);
    for p in &mut peers {
        p.expect("done");
        assert!(p.wait().success());
    }
    assert!(matches!(sink.try_recv(), Err(Error::Empty)));
    let stats = sink.stats();
    assert_eq!((stats.malformed, stats.dropped_replies), (0, 0));
}

#[test]
fn requests_across_processes_get_their_replies_and_data_meanwhile_is_kept_in_order() {
    const REQUESTS: u32 = 200;
    let tb = TempBus::new("rpc");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = Peer::spawn(&["serve", &tb.name, "svc"]);
    let server_generation: u64 = server.expect("ready").parse().unwrap();
    let mut client = bus.join("client").unwrap();
    let mut into = Vec::new();
    for i in 0..REQUESTS {
        let mut request = payload::payload(7, i);
        if i % 10 == 9 {
            // A long one: its requester yields after every poll for the reply.
            let long = atbus_bus::LONG_EXCHANGE + i as usize;
            request.extend((request.len()..long).map(|k| (k * 13 + i as usize) as u8));
        }
        // The three ways of waiting for a reply, in turn; the last two give its envelope.
        let (reply, envelope) = match i % 3 {
            0 => (client.request("svc", &request, WAIT).unwrap(), None),
            1 => {
                let e = client
                    .request_into("svc", &request, &mut into, WAIT)
                    .unwrap();
                (into.clone(), Some(e))
            }
            _ => {
                let (e, bytes) = client
                    .request_with("svc", &request, WAIT, |e, p| (*e, p.to_vec()))
                    .unwrap();
                (bytes, Some(e))
            }
        };
        let mut expected = request.clone();
        expected.reverse();
        assert_eq!(reply, expected, "request {i}");
        if let Some(e) = envelope {
            assert_eq!(
                (e.kind, e.from(), e.from_generation, e.correlation),
                (Kind::Reply, "svc", server_generation, u64::from(i) + 1),
                "request {i}"
            );
        }
    }
    // Each request's server sent a data note before its reply: all were held, in order.
    assert_eq!(client.stats().held, REQUESTS as usize);
    let mut payload = Vec::new();
    for corr in 1..=u64::from(REQUESTS) {
        // Both ways of receiving take held messages first, in order.
        let (envelope, bytes) = if corr % 2 == 0 {
            let note = client.try_recv().unwrap();
            (note.envelope, note.payload)
        } else {
            (client.try_recv_into(&mut payload).unwrap(), payload.clone())
        };
        assert_eq!(envelope.kind, Kind::Data);
        assert_eq!(envelope.from(), "svc");
        assert_eq!(envelope.from_generation, server_generation);
        assert_eq!(bytes, format!("note {corr}").into_bytes());
    }
    assert!(matches!(client.try_recv(), Err(Error::Empty)));
    assert_eq!(client.stats().dropped_replies, 0);
    client.send_to("svc", b"stop").unwrap();
    server.expect("stopped");
    assert!(server.wait().success());
}

/// Runs a request to `svc` on another thread; returns when it ended, and its result.
fn request_in_background(
    bus: &Bus,
    timeout: Duration,
) -> std::thread::JoinHandle<(Instant, atbus_bus::Result<Vec<u8>>)> {
    let mut client = bus.join("client").unwrap();
    std::thread::spawn(move || {
        let result = client.request("svc", b"hello", timeout);
        (Instant::now(), result)
    })
}

#[test]
fn a_server_killed_while_a_request_waits_gives_peer_gone_within_a_second() {
    let tb = TempBus::new("gone");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = Peer::spawn(&["silent", &tb.name, "svc"]);
    server.expect("ready");
    let waiting = request_in_background(&bus, Duration::from_secs(30));
    assert_eq!(server.expect("got"), "1");
    let killed = Instant::now();
    server.kill();
    let (ended, result) = waiting.join().unwrap();
    let took = ended - killed;
    eprintln!("PeerGone {took:?} after SIGKILL");
    match result {
        Err(Error::PeerGone { name, pid }) => assert_eq!((name.as_str(), pid), ("svc", server.pid)),
        other => panic!("expected PeerGone, got {other:?}"),
    }
    // The bound the design gives is PEER_POLL (100 ms) plus a look; a loaded 2-core
    // host may deschedule us, so assert generously and report the figure.
    assert!(took < Duration::from_secs(3), "PeerGone took {took:?}");
}

#[test]
fn a_server_leaving_while_a_request_waits_gives_peer_gone() {
    let tb = TempBus::new("leave");
    let bus = Bus::create(&tb.name).unwrap();
    let mut server = Peer::spawn(&["hold", &tb.name, "svc"]);
    server.expect("joined");
    let waiting = request_in_background(&bus, Duration::from_secs(30));
    // Wait until the request is in the server's inbox (it never reads it).
    let inbox = bus.lookup("svc").unwrap().unwrap().inbox();
    let channel = atbus::Channel::open(&inbox).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut backoff = atbus::Backoff::new();
    while channel.stats().messages_sent == 0 {
        assert!(Instant::now() < deadline, "request never sent");
        backoff.snooze();
    }
    let left = Instant::now();
    server.close_stdin();
    assert!(server.wait().success());
    let (ended, result) = waiting.join().unwrap();
    eprintln!("PeerGone {:?} after leave", ended - left);
    assert!(
        matches!(result, Err(Error::PeerGone { .. })),
        "expected PeerGone, got {result:?}"
    );
    assert!(ended - left < Duration::from_secs(3));
}
