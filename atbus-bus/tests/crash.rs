//! Crash safety of join, leave and reclaim: a peer process kills itself (SIGKILL) at each
//! step, and the next process to join the name must finish the job: take the lock over,
//! repair or reclaim the record, and leave no inbox behind.

mod common;

use std::os::unix::process::ExitStatusExt;

use atbus_bus::fault::CrashPoint;
use atbus_bus::Bus;
use common::{Peer, TempBus};

/// Names of the objects in /dev/shm that belong to bus `bus` (its inboxes and their
/// doorbells), sorted.
fn leftovers(bus: &str) -> Vec<String> {
    let prefix = format!("{}.", bus.trim_start_matches('/'));
    let mut found: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    found.sort();
    found
}

#[test]
fn a_crash_at_any_step_of_join_leave_or_reclaim_is_finished_by_the_next_joiner() {
    for (step, point) in CrashPoint::ALL {
        let tb = TempBus::new(point);
        let bus = Bus::create(&tb.name).unwrap();
        if point.starts_with("reclaim") {
            // A dead endpoint for the crashing peer to reclaim.
            let mut holder = Peer::spawn(&["hold", &tb.name, "svc"]);
            holder.expect("joined");
            holder.kill();
            assert_eq!(leftovers(&tb.name).len(), 1, "{point}");
        }
        let mut crasher = Peer::spawn(&["crash", &tb.name, "svc", point]);
        let status = crasher.wait();
        assert_eq!(status.signal(), Some(9), "{point}: {status:?}");
        // All steps but the inbox's creation run under the directory lock: the crasher
        // died holding it, and the next joiner takes it over.
        assert_eq!(bus.lock_holder().is_some(), step.holds_lock(), "{point}");
        let takeovers = bus.lock_takeovers();

        let endpoint = bus.join("svc").unwrap();
        let expected = takeovers + u64::from(step.holds_lock());
        assert_eq!(bus.lock_takeovers(), expected, "{point}");
        let inbox = endpoint.inbox().trim_start_matches('/').to_string();
        assert_eq!(leftovers(&tb.name), vec![inbox], "{point}");
        let members = bus.members().unwrap();
        assert_eq!(members.len(), 1, "{point}: {members:?}");
        assert_eq!(members[0].pid, std::process::id(), "{point}");
        drop(endpoint);
        assert!(leftovers(&tb.name).is_empty(), "{point}");
        assert!(bus.members().unwrap().is_empty(), "{point}");
    }
}
