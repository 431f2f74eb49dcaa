//! The membership watch and the periodic sweep, with endpoints in other processes that
//! join, leave cleanly, crash and restart.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use atbus_bus::{Bus, Error, MemberEvent, Watch};
use common::{shm_path, Peer, TempBus, PEER_WAIT};

/// Polls until `n` events came (bounded by `PEER_WAIT`).
fn events(watch: &mut Watch, n: usize) -> Vec<MemberEvent> {
    let deadline = Instant::now() + PEER_WAIT;
    let mut all = Vec::new();
    while all.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {} of {n} events: {all:?}", all.len());
        all.extend(watch.wait(left).expect("watch"));
    }
    assert_eq!(all.len(), n, "more events than expected: {all:?}");
    all
}

/// `(name, generation) -> died` of the `Left` events; panics on any other kind.
fn lefts(events: &[MemberEvent]) -> BTreeMap<(String, u64), bool> {
    events
        .iter()
        .map(|e| match e {
            MemberEvent::Left { member, died } => {
                ((member.name.to_string(), member.generation), *died)
            }
            other => panic!("expected only Left events, got {other:?}"),
        })
        .collect()
}

#[test]
fn the_first_look_reports_every_member_and_later_looks_only_changes() {
    let bus_name = TempBus::new("first");
    let bus = Bus::create(&bus_name.name).unwrap();
    let a = bus.join("a").unwrap();
    let b = bus.join("b").unwrap();
    let mut watch = bus.watch().unwrap();
    let first = watch.poll().unwrap();
    let joined: Vec<(String, u64)> = first
        .iter()
        .map(|e| match e {
            MemberEvent::Joined(m) => {
                assert!(m.alive && m.ready, "{m:?}");
                assert_eq!(m.pid, std::process::id());
                (m.name.to_string(), m.generation)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        joined,
        [("a".into(), a.generation()), ("b".into(), b.generation())]
    );
    assert_eq!(watch.poll().unwrap(), []);
    drop(a);
    let after = watch.poll().unwrap();
    assert_eq!(lefts(&after), BTreeMap::from([(("a".into(), 1), false)]));
    let names: Vec<&str> = watch.members().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    drop(b);
}

#[test]
fn clean_leaves_and_crashes_of_other_processes_are_told_apart() {
    let bus_name = TempBus::new("apart");
    let bus = Bus::create(&bus_name.name).unwrap();
    let mut watch = bus.watch().unwrap();
    watch.set_interval(Duration::from_millis(20)).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let mut peers: Vec<(Peer, u64)> = names
        .iter()
        .map(|n| {
            let p = Peer::spawn(&["hold", &bus_name.name, n]);
            let generation = p
                .expect("joined")
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (p, generation)
        })
        .collect();
    let joined = events(&mut watch, 8);
    for (e, (peer, generation)) in joined.iter().zip(&peers) {
        match e {
            MemberEvent::Joined(m) => assert_eq!((m.pid, m.generation), (peer.pid, *generation)),
            other => panic!("{other:?}"),
        }
    }
    // Even ones leave cleanly and exit at once (before the watch looks: the record's
    // clean-leave mark must tell); odd ones are killed.
    let mut expected = BTreeMap::new();
    for (i, (peer, generation)) in peers.iter_mut().enumerate() {
        let crash = i % 2 == 1;
        if crash {
            peer.kill();
        } else {
            peer.close_stdin();
            assert!(peer.wait().success());
        }
        expected.insert((names[i].clone(), *generation), crash);
    }
    assert_eq!(lefts(&events(&mut watch, 8)), expected);
    assert_eq!(watch.members().count(), 0);
}

#[test]
fn a_name_that_crashes_and_joins_again_between_looks_is_reported_restarted() {
    let bus_name = TempBus::new("restart");
    let bus = Bus::create(&bus_name.name).unwrap();
    let mut watch = bus.watch().unwrap();
    let mut first = Peer::spawn(&["hold", &bus_name.name, "svc"]);
    first.expect("joined");
    assert!(matches!(&watch.poll().unwrap()[..], [MemberEvent::Joined(m)] if m.pid == first.pid));
    for crash in [true, false] {
        if crash {
            first.kill();
        } else {
            first.close_stdin();
            assert!(first.wait().success());
        }
        let second = Peer::spawn(&["hold", &bus_name.name, "svc"]);
        second.expect("joined");
        match &watch.poll().unwrap()[..] {
            [MemberEvent::Restarted { old, new, died }] => {
                assert_eq!((old.pid, new.pid), (first.pid, second.pid));
                assert!(new.generation > old.generation);
                assert_eq!(*died, crash, "{old:?} -> {new:?}");
                assert_eq!(old.alive, !crash);
            }
            other => panic!("{other:?}"),
        }
        first = second;
    }
}

#[test]
fn the_watch_fd_becomes_readable_for_an_event_loop() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let bus_name = TempBus::new("fd");
    let bus = Bus::create(&bus_name.name).unwrap();
    let mut watch = bus.watch().unwrap();
    watch.set_interval(Duration::from_millis(10)).unwrap();
    let _a = bus.join("a").unwrap();
    let mut fds = [PollFd::new(watch.fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(ready, 1, "the watch fd did not become readable within 10 s");
    assert!(matches!(&watch.poll().unwrap()[..], [MemberEvent::Joined(m)] if m.name == "a"));
}

#[test]
fn a_process_waiting_on_the_bus_reclaims_a_dead_endpoint_within_the_sweep_period() {
    let bus_name = TempBus::new("sweep");
    let bus = Bus::create(&bus_name.name).unwrap();
    let mut waiter = bus.join("waiter").unwrap();
    let mut dead = Peer::spawn(&["hold", &bus_name.name, "doomed"]);
    let inbox = dead.expect("joined").split(' ').nth(1).unwrap().to_string();
    dead.kill();
    assert!(bus.lookup("doomed").unwrap().is_some_and(|m| !m.alive));
    let started = Instant::now();
    // Nothing arrives: the wait runs in slices of SWEEP_PERIOD with a sweep between.
    let waited = atbus_bus::SWEEP_PERIOD + Duration::from_millis(500);
    assert!(matches!(waiter.recv_timeout(waited), Err(Error::Timeout)));
    assert!(started.elapsed() >= waited);
    assert_eq!(
        bus.lookup("doomed").unwrap(),
        None,
        "the dead record was not swept"
    );
    assert!(
        !shm_path(&inbox).exists(),
        "the dead endpoint's inbox is left"
    );
    assert_eq!(bus.sweep().unwrap(), 0);
}

#[test]
fn a_watcher_under_churn_ends_with_the_member_set_of_members() {
    let bus_name = TempBus::new("churn");
    let bus = Bus::create(&bus_name.name).unwrap();
    let mut watch = bus.watch().unwrap();
    watch.set_interval(Duration::from_millis(5)).unwrap();
    let mut set: BTreeMap<String, u64> = BTreeMap::new();
    let apply = |events: Vec<MemberEvent>, set: &mut BTreeMap<String, u64>| {
        for e in events {
            match e {
                MemberEvent::Joined(m) => {
                    assert!(
                        set.insert(m.name.to_string(), m.generation).is_none(),
                        "joined twice"
                    );
                }
                MemberEvent::Left { member, .. } => {
                    assert_eq!(set.remove(member.name.as_str()), Some(member.generation));
                }
                MemberEvent::Restarted { old, new, .. } => {
                    assert_eq!(
                        set.insert(new.name.to_string(), new.generation),
                        Some(old.generation)
                    );
                }
            }
        }
    };
    let mut live: Vec<Peer> = Vec::new();
    // 60 steps over 6 names: join (a new process), leave cleanly, or crash, with looks
    // in between at every other step.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for step in 0..60 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let name = format!("n{}", rng % 6);
        if rng.is_multiple_of(3) || live.is_empty() {
            let mut p = Peer::spawn(&["join", &bus_name.name, &name]);
            p.expect("ready");
            p.send_line("go");
            let said = p.line();
            if said.starts_with("joined") {
                live.push(p);
            } else {
                assert!(said.starts_with("taken"), "{said}");
            }
        } else {
            let mut p = live.swap_remove((rng as usize / 3) % live.len());
            if rng.is_multiple_of(2) {
                p.close_stdin();
                assert!(p.wait().success());
            } else {
                p.kill();
            }
        }
        if step % 2 == 0 {
            apply(watch.poll().unwrap(), &mut set);
        }
    }
    // Crashed endpoints are judged dead at once (by pid and start time), so one more
    // look sees exactly the members that are alive and ready.
    apply(watch.poll().unwrap(), &mut set);
    let members: BTreeMap<String, u64> = bus
        .members()
        .unwrap()
        .into_iter()
        .filter(|m| m.alive && m.ready)
        .map(|m| (m.name.to_string(), m.generation))
        .collect();
    assert_eq!(set, members);
    assert_eq!(members.len(), live.len());
}
