//! `bus`: the endpoint records of an atbus-bus directory, with each owner's liveness and
//! each inbox's traffic; `--check` reports what a crash may leave behind, `--reclaim`
//! cleans it up.
//!
//! Listing and checking map the directory read-only (`PROT_READ`) and never take its
//! lock. `--reclaim` opens it read-write (so refuses another user's directory), reclaims
//! every record of a dead owner (unlinking its inbox) and unlinks orphan inboxes: atbus
//! channels named `BUS.NAME.gGENERATION` that no record names.

use std::io::Write;
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use atbus::Inspector;
use atbus_bus::{Bus, Member};

use crate::{print_json, Failure, Outcome};

/// One record in `bus --json`.
#[derive(Serialize)]
struct Row {
    name: String,
    generation: u64,
    pid: u32,
    /// The owner's liveness verdict (pid plus start time; "cannot tell" = alive).
    alive: bool,
    /// "live" (takes messages) or "joining/leaving".
    state: &'static str,
    joined_unix_ms: u64,
    inbox: String,
    /// Inbox counters (null when the inbox cannot be opened, e.g. it is gone).
    inbox_in_flight: Option<u64>,
    inbox_sent: Option<u64>,
    inbox_received: Option<u64>,
}

/// The whole of `bus --json`.
#[derive(Serialize)]
struct Report {
    bus: String,
    capacity: usize,
    owner_uid: u32,
    /// Permission bits, in octal ("0600").
    mode: String,
    epoch: u64,
    lock_holder: Option<u32>,
    lock_takeovers: u64,
    members: Vec<Row>,
    /// With --check (or after --reclaim): what needs cleaning; empty when clean.
    problems: Option<Vec<String>>,
    /// With --reclaim: dead records reclaimed and orphan inboxes removed.
    reclaimed_records: Option<usize>,
    removed_inboxes: Option<Vec<String>>,
}

fn bus_error(e: atbus_bus::Error) -> Failure {
    Failure::Message(e.to_string())
}

fn row(m: &Member) -> Row {
    let inbox = m.inbox();
    let stats = Inspector::open(&inbox).ok().map(|i| i.stats());
    Row {
        name: m.name.to_string(),
        generation: m.generation,
        pid: m.pid,
        alive: m.alive,
        state: if m.ready { "live" } else { "joining/leaving" },
        joined_unix_ms: m
            .joined_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        inbox,
        inbox_in_flight: stats.as_ref().map(|s| s.in_flight()),
        inbox_sent: stats.as_ref().map(|s| s.messages_sent),
        inbox_received: stats.as_ref().map(|s| s.messages_received),
    }
}

/// Inbox-shaped objects of `bus` in /dev/shm (`BUS.NAME.gN`, and the `.bell` FIFOs of
/// such names) that no record names, as channel names.
fn orphan_inboxes(bus: &str, members: &[Member]) -> Vec<String> {
    let prefix = format!("{}.", bus.trim_start_matches('/'));
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let named: std::collections::HashSet<String> = members.iter().map(|m| m.inbox()).collect();
    let mut orphans: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|file| {
            let inbox = file.strip_suffix(".bell").unwrap_or(&file);
            let rest = inbox.strip_prefix(&prefix)?;
            let (endpoint, generation) = rest.rsplit_once(".g")?;
            generation.parse::<u64>().ok()?;
            atbus_bus::Name::parse(endpoint)?;
            Some(format!("/{inbox}"))
        })
        .filter(|inbox| !named.contains(inbox))
        .collect();
    orphans.sort();
    orphans.dedup();
    orphans
}

/// Removes an orphan inbox: only an atbus channel (or the doorbell left of one).
fn remove_orphan(inbox: &str) -> bool {
    if Inspector::open(inbox).is_ok() {
        return atbus::Channel::unlink(inbox).is_ok();
    }
    let bell = format!("/dev/shm{inbox}.bell");
    let channel_gone = !std::path::Path::new(&format!("/dev/shm{inbox}")).exists();
    channel_gone && std::fs::remove_file(bell).is_ok()
}

fn problems(bus: &str, members: &[Member]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if members[..i].iter().any(|o| o.name == m.name) {
            found.push(format!(
                "duplicate name {:?} (generation {})",
                m.name, m.generation
            ));
        }
        if !m.alive {
            found.push(format!(
                "{:?} (generation {}) is held by dead process {}: run --reclaim",
                m.name, m.generation, m.pid
            ));
        }
    }
    for inbox in orphan_inboxes(bus, members) {
        found.push(format!(
            "orphan inbox {inbox}: no record names it; run --reclaim"
        ));
    }
    found
}

pub fn run(out: &mut impl Write, name: &str, check: bool, reclaim: bool, json: bool) -> Outcome {
    let (mut reclaimed_records, mut removed_inboxes) = (None, None);
    let bus = if reclaim {
        let bus = Bus::open(name).map_err(bus_error)?;
        reclaimed_records = Some(bus.sweep().map_err(bus_error)?);
        let members = bus.members().map_err(bus_error)?;
        let removed: Vec<String> = orphan_inboxes(name, &members)
            .into_iter()
            .filter(|inbox| remove_orphan(inbox))
            .collect();
        removed_inboxes = Some(removed);
        bus
    } else {
        Bus::open_read_only(name).map_err(bus_error)?
    };
    let members = bus.members().map_err(bus_error)?;
    let found = (check || reclaim).then(|| problems(name, &members));
    let (owner_uid, mode) = bus.owner();
    let report = Report {
        bus: name.into(),
        capacity: bus.capacity(),
        owner_uid,
        mode: format!("{mode:04o}"),
        epoch: bus.epoch(),
        lock_holder: bus.lock_holder(),
        lock_takeovers: bus.lock_takeovers(),
        members: members.iter().map(row).collect(),
        problems: found,
        reclaimed_records,
        removed_inboxes,
    };
    if json {
        print_json(out, &report)?;
    } else {
        print_text(out, &report)?;
    }
    let dirty = report.problems.as_ref().is_some_and(|p| !p.is_empty());
    Ok(if dirty {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(out: &mut impl Write, r: &Report) -> Result<(), Failure> {
    let lock = match r.lock_holder {
        Some(pid) => format!("held by pid {pid}"),
        None => "free".into(),
    };
    writeln!(
        out,
        "bus {}: {} of {} records used, epoch {}, lock {lock} ({} takeovers), owner uid {} mode {}",
        r.bus,
        r.members.len(),
        r.capacity,
        r.epoch,
        r.lock_takeovers,
        r.owner_uid,
        r.mode
    )?;
    if let (Some(n), Some(removed)) = (r.reclaimed_records, &r.removed_inboxes) {
        writeln!(
            out,
            "reclaimed {n} records of dead processes; removed {} orphan inboxes",
            removed.len()
        )?;
        for inbox in removed {
            writeln!(out, "  removed {inbox}")?;
        }
    }
    if !r.members.is_empty() {
        writeln!(
            out,
            "{:<24} {:>6} {:>8} {:<6} {:<15} {:>9} {:>10} {:>10}  INBOX",
            "NAME", "GEN", "PID", "OWNER", "STATE", "IN-FLIGHT", "SENT", "RECEIVED"
        )?;
    }
    let num = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for m in &r.members {
        writeln!(
            out,
            "{:<24} {:>6} {:>8} {:<6} {:<15} {:>9} {:>10} {:>10}  {}",
            m.name,
            m.generation,
            m.pid,
            if m.alive { "alive" } else { "DEAD" },
            m.state,
            num(m.inbox_in_flight),
            num(m.inbox_sent),
            num(m.inbox_received),
            m.inbox
        )?;
    }
    if let Some(problems) = &r.problems {
        if problems.is_empty() {
            writeln!(out, "check: clean")?;
        } else {
            writeln!(out, "check: {} problems", problems.len())?;
            for p in problems {
                writeln!(out, "  {p}")?;
            }
        }
    }
    Ok(())
}
