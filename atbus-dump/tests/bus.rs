//! `atbus-dump bus`: the listing, `--check` and `--reclaim`, against a real bus with a
//! live endpoint, a record left by a dead process and an orphan inbox.

#![forbid(unsafe_code)]

use std::os::unix::fs::FileExt;
use std::process::{Command, Output};

use atbus_bus::directory::{offsets, HEADER_SIZE, RECORD_SIZE};
use atbus_bus::Bus;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_atbus-dump");

fn dump(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run atbus-dump")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm{name}")).exists()
}

/// A bus name removed (with its inboxes) on drop.
struct TempBus(String);

impl Drop for TempBus {
    fn drop(&mut self) {
        let _ = Bus::unlink(&self.0);
    }
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
fn bus_lists_endpoints_check_finds_dead_records_and_orphans_and_reclaim_removes_them() {
    let tb = TempBus(format!("/atbus-dump-test-bus-{}", std::process::id()));
    let name = tb.0.as_str();
    let _ = Bus::unlink(name);
    let bus = Bus::create(name).unwrap();
    let mut alive = bus.join("alive").unwrap();
    alive.send_to("alive", b"one").unwrap();
    // A record left by a process that died: its owner is a pid no process has. The
    // endpoint is forgotten, not dropped, so its inbox stays as a crash leaves it.
    let ghost = bus.join("ghost").unwrap();
    let ghost_inbox = ghost.inbox().to_string();
    std::mem::forget(ghost);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{name}"))
        .unwrap();
    let ghost_record = HEADER_SIZE + RECORD_SIZE;
    file.write_all_at(
        &dead_pid().to_le_bytes(),
        (ghost_record + offsets::R_OWNER_PID) as u64,
    )
    .unwrap();
    // An inbox no record names.
    let stray = format!("{name}.stray.g999");
    drop(atbus::Channel::create(&stray, 64 << 10, &atbus::Config::default()).unwrap());

    let out = dump(&["bus", name]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("bus {name}: 2 of 256 records used")),
        "{text}"
    );
    let line = |n: &str| text.lines().find(|l| l.starts_with(n)).unwrap().to_string();
    assert!(line("alive ").contains(" alive "), "{text}");
    assert!(line("ghost ").contains(" DEAD "), "{text}");

    let out = dump(&["bus", name, "--check", "--json"]);
    assert_eq!(code(&out), 1);
    let report = json(&out);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].as_str().unwrap().contains("dead process"));
    assert!(problems[1].as_str().unwrap().contains(&stray));
    let members = report["members"].as_array().unwrap();
    assert_eq!(members[0]["name"], "alive");
    assert_eq!(members[0]["alive"], true);
    assert_eq!(members[0]["pid"], std::process::id());
    assert_eq!(members[0]["inbox_in_flight"], 1);
    assert_eq!(members[1]["name"], "ghost");
    assert_eq!(members[1]["alive"], false);

    let out = dump(&["bus", name, "--reclaim", "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["reclaimed_records"], 1);
    assert_eq!(report["removed_inboxes"], serde_json::json!([stray]));
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(report["members"].as_array().unwrap().len(), 1);
    assert!(!exists(&ghost_inbox) && !exists(&stray));
    assert!(exists(alive.inbox()));
    assert_eq!(alive.try_recv().unwrap().payload, b"one");

    let out = dump(&["bus", name, "--check"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("check: clean"));
}

#[test]
fn bus_on_a_missing_bus_or_a_channel_fails_with_one_line_and_exit_2() {
    let out = dump(&["bus", "/atbus-dump-test-no-such-bus"]);
    assert_eq!(code(&out), 2);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");

    let channel = format!("/atbus-dump-test-not-a-bus-{}", std::process::id());
    let _c = atbus::Channel::create(&channel, 64 << 10, &atbus::Config::default()).unwrap();
    let out = dump(&["bus", &channel]);
    let _ = atbus::Channel::unlink(&channel);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("not an atbus bus"));
}
