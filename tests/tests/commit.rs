//! Manual commit: a reader whose received messages stay in the ring until it commits,
//! so that a reader killed before its commit loses nothing to its successor.

use std::io::{BufRead, BufReader};

use atbus::{Channel, Config, Error};
use atbus_tests::{check_payload, payload, TestChannel};
use nix::sys::signal::Signal;

mod common;
use common::{peer, signal};

#[test]
fn a_reader_killed_before_its_commit_leaves_the_uncommitted_messages_to_its_successor() {
    let ch = TestChannel::new("commit-kill");
    let channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let w = channel.writer();
    for seq in 0..10 {
        w.try_send(&payload(7, seq, 300)).unwrap();
    }
    // The other process receives 6 messages, commits after the first 3, and is killed.
    let mut holder = peer(&["commit-reader", &ch.name, "6", "3"]);
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    for seq in 0..6 {
        assert_eq!(lines.next().unwrap().unwrap(), format!("got=7:{seq}"));
    }
    assert_eq!(lines.next().unwrap().unwrap(), "holding");
    signal(&holder, Signal::SIGKILL);
    holder.wait().unwrap();

    // The successor starts at the commit: messages 3..6 again, then the rest, every
    // byte checked, none skipped.
    let mut r = channel.reader().unwrap();
    for seq in 3..10 {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((7, seq)));
    }
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = channel.stats();
    assert_eq!(s.reader_takeovers, 1);
    assert_eq!(
        (s.bad_nodes, s.handover_nodes, s.crc_failures),
        (0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn uncommitted_messages_hold_their_space_until_the_commit() {
    let ch = TestChannel::new("commit-space");
    let channel = Channel::create(&ch.name, 1 << 16, &Config::default()).unwrap();
    let w = channel.writer();
    let mut r = channel.reader().unwrap();
    r.set_manual_commit(true).unwrap();
    let mut sent = 0u64;
    while w.try_send(&payload(1, sent, 200)).is_ok() {
        sent += 1;
    }
    assert!(
        sent > 10,
        "a 64 KiB ring holds more than 10 messages of 200 bytes"
    );
    // Receiving everything frees nothing: the ring stays full.
    let mut marks = Vec::new();
    for seq in 0..sent {
        assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((1, seq)));
        marks.push(r.position());
    }
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    assert!(matches!(
        w.try_send(&payload(1, sent, 200)),
        Err(Error::Full)
    ));
    assert_eq!(r.committed(), 0);

    // Positions outside (last commit, position] are refused and change nothing.
    let past = r.position() + 1;
    match r.commit(past) {
        Err(Error::InvalidCommit {
            position,
            committed,
            received,
        }) => assert_eq!((position, committed, received), (past, 0, r.position())),
        other => panic!("{other:?}"),
    }
    r.commit(marks[4]).unwrap();
    assert!(matches!(
        r.commit(marks[3]),
        Err(Error::InvalidCommit { .. })
    ));
    assert_eq!(r.committed(), marks[4]);

    // Five committed messages made room for at least one more.
    w.try_send(&payload(1, sent, 200)).unwrap();
    // Going back to automatic commit commits the rest.
    r.set_manual_commit(false).unwrap();
    assert_eq!(r.committed(), r.position());
    assert_eq!(check_payload(&r.try_recv_vec().unwrap()), Ok((1, sent)));
    drop(r);

    // Nothing is delivered twice to the next reader.
    let mut r = channel.reader().unwrap();
    assert!(matches!(r.try_recv_vec(), Err(Error::Empty)));
    let s = channel.stats();
    assert_eq!(s.messages_received, sent + 1);
    assert_eq!((s.bad_nodes, s.handover_nodes), (0, 0), "{s:?}");
}

#[test]
fn a_reader_dropped_part_way_through_redelivers_only_what_it_did_not_commit() {
    let ch = TestChannel::new("commit-drop");
    let channel = Channel::create(&ch.name, 1 << 20, &Config::default()).unwrap();
    let w = channel.writer();
    // Mixed sizes: blocks of one and of many nodes.
    for seq in 0..100 {
        w.try_send(&payload(2, seq, 20 + (seq as usize * 97) % 3000))
            .unwrap();
    }
    let mut next = 0;
    for round in 0..5 {
        let mut r = channel.reader().unwrap();
        r.set_manual_commit(true).unwrap();
        let mut commit_at = None;
        // Receive 30, commit after the 20th; the other 10 come again next round.
        for i in 0..30 {
            let Ok(msg) = r.try_recv_vec() else { break };
            assert_eq!(check_payload(&msg), Ok((2, next + i)), "round {round}");
            if i == 19 {
                commit_at = Some(r.position());
            }
        }
        if let Some(p) = commit_at {
            r.commit(p).unwrap();
            next += 20;
        } else {
            r.commit(r.position()).unwrap();
            next = 100;
        }
    }
    assert_eq!(next, 100);
    let s = channel.stats();
    assert_eq!(
        (s.bad_nodes, s.handover_nodes, s.crc_failures),
        (0, 0, 0),
        "{s:?}"
    );
}
